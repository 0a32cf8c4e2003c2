/* libFuzzer target for JSON Schema support: the converter to GBNF (slm_json_schema_to_gbnf, the
 * core of slm_grammar_from_json_schema) and the validator (slm_json_validate).
 *
 * Input: schema bytes, optionally followed by a NUL and a candidate JSON text. Checks:
 *   - the validator never crashes on any schema/text pair and explains every rejection in one line;
 *   - a schema the converter accepts yields a grammar that compiles;
 *   - the converter never emits malformed GBNF (its own compile check would hide that as a
 *     "no finite valid value" error, so those messages are inspected);
 *   - every text the grammar generates (a random byte walk chosen by the input) validates against
 *     the schema: the promise structured output rests on.
 * $SLM_FUZZ_VOCAB (a vocab-only GGUF) additionally runs slm_grammar_from_json_schema for that
 * model's vocabulary; it is off by default because a 50k-token mask is slow per input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/grammar.h"
#include "sample/json_schema.h"
#include "sample/json_validate.h"
#include "slm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_WALK 1500

static bool one_line(const char *err) { return err[0] != 0 && strchr(err, '\n') == NULL; }

/* Messages of the GBNF parser that mean the text itself is malformed (never the schema's fault). */
static bool is_gbnf_syntax_error(const char *err) {
    static const char *const syntax[] = {"unexpected character", "unterminated", "unknown escape", "undefined rule",
                                         "defined twice",        "expected '::='", "is reversed",  "max below min",
                                         "no 'root' rule",       "expected"};
    for (size_t i = 0; i < sizeof syntax / sizeof *syntax; i++)
        if (strstr(err, syntax[i])) return true;
    return false;
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* A random sentence of the grammar, bytes chosen by the seeded generator; -1 if it did not finish. */
static int byte_walk(slm_grammar *g, uint64_t *rng, char *buf, int cap) {
    slm_grammar_reset(g);
    int n = 0;
    while (n < cap) {
        if (slm_grammar_is_done(g) && (int)(rng_next(rng) % 100) < 20 + n / 8) break;
        uint8_t ok[256];
        int k = 0;
        for (int b = 0; b < 256; b++) {
            char c = (char)b;
            if (slm_grammar_bytes_allowed(g, &c, 1)) ok[k++] = (uint8_t)b;
        }
        if (k == 0) break;
        uint8_t pick = ok[rng_next(rng) % (uint64_t)k];
        /* lean towards closing strings and containers so walks end within the cap */
        for (int i = 0; i < k; i++)
            if ((ok[i] == '"' || ok[i] == '}' || ok[i] == ']') && rng_next(rng) % 3 == 0) pick = ok[i];
        if (!slm_grammar_accept_bytes(g, (const char *)&pick, 1)) __builtin_trap();
        buf[n++] = (char)pick;
    }
    return slm_grammar_is_done(g) ? n : -1;
}

static slm_model *fuzz_model(void) {
    static slm_model *model;
    static bool tried;
    if (tried) return model;
    tried = true;
    const char *path = getenv("SLM_FUZZ_VOCAB");
    if (!path || !*path) return NULL;
    slm_model_params mp = {.vocab_only = true};
    char err[256];
    if (slm_model_load(path, &mp, &model, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_json_schema: SLM_FUZZ_VOCAB: %s\n", err);
        abort();
    }
    return model;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 32768) return 0;
    const uint8_t *nul = memchr(data, 0, size);
    size_t schema_len = nul ? (size_t)(nul - data) : size;
    char *schema = malloc(schema_len + 1);
    if (!schema) return 0;
    memcpy(schema, data, schema_len);
    schema[schema_len] = 0;
    char err[512];

    if (nul) {
        const char *text = (const char *)nul + 1;
        size_t text_len = size - schema_len - 1;
        err[0] = 0;
        if (slm_json_validate(schema, text, text_len, err, sizeof err) != 0 && !one_line(err)) __builtin_trap();
    }

    char *gbnf = NULL;
    err[0] = 0;
    int rc = slm_json_schema_to_gbnf(schema, &gbnf, err, sizeof err);
    /* Small limits change only where the conversion stops: what fits gives the same grammar, an
     * error found before any limit is the same error, a crossed limit is SLM_GRAMMAR_TOO_LARGE. */
    slm_grammar_limits lim = {.max_rules = 4 + (int)(size % 64), .max_alternatives = 64, .max_elements = 256};
    char lerr[512] = "";
    char *lgbnf = NULL;
    int lrc = slm_json_schema_to_gbnf_limited(schema, &lim, &lgbnf, lerr, sizeof lerr);
    if ((lrc == 0) != (lgbnf != NULL)) __builtin_trap();
    if (lrc == 0 && (rc != 0 || strcmp(gbnf, lgbnf) != 0)) __builtin_trap();
    if (lrc == SLM_GRAMMAR_INVALID && (rc != SLM_GRAMMAR_INVALID || strcmp(err, lerr) != 0)) __builtin_trap();
    if (lrc == SLM_GRAMMAR_TOO_LARGE && !strstr(lerr, "(limit)") && !strstr(lerr, "elements after expanding"))
        __builtin_trap();
    if (lrc != 0 && lrc != SLM_GRAMMAR_INVALID && lrc != SLM_GRAMMAR_TOO_LARGE) __builtin_trap();
    free(lgbnf);
    if (rc != 0) {
        if (gbnf || !one_line(err)) __builtin_trap();
        static const char gbnf_check[] = "json schema: the schema has no finite valid value or is too large (";
        if (strncmp(err, gbnf_check, sizeof gbnf_check - 1) == 0 && is_gbnf_syntax_error(err + sizeof gbnf_check - 1))
            __builtin_trap();
        free(schema);
        return 0;
    }
    if (!gbnf) __builtin_trap();
    slm_grammar *g = NULL;
    if (slm_grammar_compile_vocab(gbnf, strlen(gbnf), 0, NULL, NULL, NULL, &g, err, sizeof err) != 0) __builtin_trap();

    uint64_t rng = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < size; i++) rng = (rng ^ data[i]) * 0x100000001b3ull;
    static char text[MAX_WALK];
    for (int walk = 0; walk < 3; walk++) {
        int len = byte_walk(g, &rng, text, MAX_WALK);
        if (len < 0) continue;
        if (!slm_grammar_matches(g, text, (size_t)len)) __builtin_trap();
        err[0] = 0;
        /* documented subset gap (docs/grammar.md): oneOf is generated like anyOf, so overlapping
         * branches can both match */
        if (slm_json_validate(schema, text, (size_t)len, err, sizeof err) != 0 && !strstr(err, "of oneOf (exactly one")) {
            fprintf(stderr, "generated text does not validate: %s\nschema: %s\ntext: %.*s\n", err, schema, len, text);
            __builtin_trap();
        }
    }
    slm_grammar_free(g);

    slm_model *model = fuzz_model();
    if (model) {
        slm_grammar *mg = NULL;
        if (slm_grammar_from_json_schema(model, schema, &mg, err, sizeof err) != 0) __builtin_trap();
        if (slm_grammar_count_allowed(mg) <= 0) __builtin_trap();
        slm_grammar_free(mg);
    }
    free(gbnf);
    free(schema);
    return 0;
}
