/* JSON Schema → grammar → validator, on the corpus in tests/schemas:
 *  - every schema converts and compiles;
 *  - random byte-level walks through each grammar always produce JSON that validates;
 *  - a fake "model" that picks uniformly random allowed tokens from the real SmolLM2 vocabulary
 *    (the hardest case: multi-byte tokens, UTF-8 split across tokens) always produces JSON that
 *    validates; µs per mask is reported for the 49152- and 151936-token vocabularies;
 *  - unsupported keywords fail naming the keyword; invalid instances fail validation. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <time.h>

#include "sample/grammar.h"
#include "sample/json_schema.h"
#include "sample/json_validate.h"
#include "test.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static char *read_file(const char *path) { return test_read_file(path, NULL); }

typedef struct schema_file {
    char name[128];
    char *text;
} schema_file;

static int load_corpus(schema_file **out) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/schemas", SLM_SOURCE_DIR);
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    schema_file *files = calloc((size_t)(n > 0 ? n : 1), sizeof *files);
    int k = 0;
    for (int i = 0; i < n; i++) {
        const char *nm = list[i]->d_name;
        size_t l = strlen(nm);
        if (l > 5 && !strcmp(nm + l - 5, ".json")) {
            char path[2048];
            snprintf(path, sizeof path, "%s/%s", dir, nm);
            snprintf(files[k].name, sizeof files[k].name, "%s", nm);
            files[k].text = read_file(path);
            if (files[k].text) k++;
        }
        free(list[i]);
    }
    free(list);
    *out = files;
    return k;
}

/* Random walk over bytes: at each step a uniformly random byte among those the grammar accepts;
 * stops (when complete) with growing probability. Returns the text length, or -1 if stuck. */
static int byte_walk(slm_grammar *g, char *buf, int cap) {
    slm_grammar_reset(g);
    int n = 0;
    while (n < cap - 1) {
        if (slm_grammar_is_done(g) && (int)(rnd() % 100) < 30 + n / 20) break;
        uint8_t ok[256];
        int k = 0;
        for (int b = 0; b < 256; b++) {
            char c = (char)b;
            if (slm_grammar_bytes_allowed(g, &c, 1)) ok[k++] = (uint8_t)b;
        }
        if (k == 0) return slm_grammar_is_done(g) ? n : -1;
        /* favour structure over string contents so walks finish: closing quotes/brackets often */
        uint8_t pick = ok[rnd() % (uint64_t)k];
        for (int i = 0; i < k; i++)
            if ((ok[i] == '"' || ok[i] == '}' || ok[i] == ']') && rnd() % 4 == 0) pick = ok[i];
        buf[n++] = (char)pick;
        slm_grammar_accept_bytes(g, (const char *)&pick, 1);
    }
    return slm_grammar_is_done(g) ? n : -1;
}

static void test_corpus_bytes(schema_file *files, int n) {
    CHECKF(n >= 40, "only %d schemas in tests/schemas", n);
    int walks = 0, finished = 0;
    for (int i = 0; i < n; i++) {
        char err[512] = "";
        char *gbnf = NULL;
        int rc = slm_json_schema_to_gbnf(files[i].text, &gbnf, err, sizeof err);
        CHECKF(rc == 0, "%s: %s", files[i].name, err);
        if (rc) continue;
        slm_grammar *g = NULL;
        rc = slm_grammar_compile_vocab(gbnf, strlen(gbnf), 0, NULL, NULL, NULL, &g, err, sizeof err);
        CHECKF(rc == 0, "%s: generated grammar: %s\n%s", files[i].name, err, gbnf);
        free(gbnf);
        if (rc) continue;
        static char text[8192];
        for (int w = 0; w < 12; w++) {
            int len = byte_walk(g, text, (int)sizeof text);
            walks++;
            if (len < 0) continue;
            finished++;
            CHECKF(slm_grammar_matches(g, text, (size_t)len), "%s: replay", files[i].name);
            rc = slm_json_validate(files[i].text, text, (size_t)len, err, sizeof err);
            CHECKF(rc == 0, "%s: generated %.*s\n  invalid: %s", files[i].name, len, text, err);
        }
        slm_grammar_free(g);
    }
    fprintf(stderr, "byte walks: %d of %d finished within the length cap, all validated\n", finished, walks);
    CHECK(finished > walks / 2);
}

static void expect_schema_error(const char *schema, const char *want) {
    char err[512] = "";
    char *gbnf = NULL;
    int rc = slm_json_schema_to_gbnf(schema, &gbnf, err, sizeof err);
    CHECKF(rc != 0 && strstr(err, want), "schema %s: rc %d err '%s', want '%s'", schema, rc, err, want);
    free(gbnf);
}

static void test_errors(void) {
    expect_schema_error("{\"allOf\":[{\"type\":\"string\"}]}", "unsupported keyword 'allOf'");
    expect_schema_error("{\"type\":\"object\",\"properties\":{\"a\":{\"not\":{}}}}", "'not' is supported on");
    /* contradictions and invalid values name the keyword */
    expect_schema_error("{\"type\":\"object\",\"minProperties\":3,\"maxProperties\":2}", "maxProperties is below minProperties");
    expect_schema_error("{\"type\":\"array\",\"contains\":{},\"minContains\":3,\"maxContains\":2}",
                        "minContains 3 is above maxContains 2");
    expect_schema_error("{\"type\":\"number\",\"multipleOf\":0}", "'multipleOf' must be a number above 0");
    expect_schema_error("{\"type\":\"integer\",\"multipleOf\":-2}", "'multipleOf' must be a number above 0");
    expect_schema_error("{\"type\":\"integer\",\"multipleOf\":\"2\"}", "'multipleOf' must be a number above 0");
    expect_schema_error("{\"type\":\"number\",\"multipleOf\":1e-9}", "'multipleOf' 1e-09 is not supported");
    expect_schema_error("{\"type\":\"integer\",\"minimum\":1,\"maximum\":4,\"multipleOf\":5}", "no multiple of 5");
    expect_schema_error("{\"type\":\"array\",\"items\":{\"enum\":[1,2]},\"uniqueItems\":true,\"minItems\":3}",
                        "uniqueItems with minItems 3, but the items allow only 2 distinct values");
    expect_schema_error("{\"type\":\"array\",\"uniqueItems\":1}", "'uniqueItems' must be a boolean");
    expect_schema_error("{\"type\":\"array\",\"prefixItems\":{}}", "'prefixItems' must be an array");
    expect_schema_error("{\"type\":\"array\",\"prefixItems\":[true],\"items\":false,\"minItems\":2}",
                        "minItems 2 is above the 1 prefixItems");
    expect_schema_error("{\"type\":\"object\",\"properties\":{\"a\":{}},\"minProperties\":2}",
                        "minProperties 2 is above the 1 declared properties");
    expect_schema_error("{\"type\":\"object\",\"properties\":{\"a\":{},\"b\":{}},\"required\":[\"a\",\"b\"],\"maxProperties\":1}",
                        "maxProperties 1 is below the 2 required properties");
    expect_schema_error("{\"type\":\"object\",\"additionalProperties\":false,\"minProperties\":1}",
                        "minProperties 1 cannot be met");
    expect_schema_error("{\"type\":\"object\",\"dependentRequired\":{\"a\":\"b\"}}", "'dependentRequired' must be");
    expect_schema_error("{\"type\":\"object\",\"properties\":{\"a\":{}},\"additionalProperties\":false,"
                        "\"dependentRequired\":{\"a\":[\"zz\"]}}", "property 'zz' is not allowed by additionalProperties false");
    expect_schema_error("{\"type\":\"object\",\"properties\":{\"abc\":{}},\"required\":[\"abc\"],"
                        "\"propertyNames\":{\"maxLength\":2}}", "required property 'abc' does not match propertyNames");
    expect_schema_error("{\"type\":\"object\",\"patternProperties\":{\"a\":{\"type\":\"string\"},\"b\":{\"type\":\"integer\"}}}",
                        "patternProperties whose patterns may overlap");
    expect_schema_error("{\"type\":\"string\",\"if\":{\"minLength\":3},\"then\":{\"maxLength\":5}}", "'if' is supported");
    expect_schema_error("{\"enum\":[1,2],\"not\":{\"enum\":[1,2]}}", "'not' excludes every value");
    expect_schema_error("{\"type\":\"string\",\"not\":{\"type\":\"string\"}}", "'not' excludes every type");
    expect_schema_error("{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"contains\":{\"type\":\"integer\"}}",
                        "'contains' together with 'items' is supported");
    expect_schema_error("{\"type\":\"string\",\"format\":\"uri\"}", "unsupported string format 'uri'");
    expect_schema_error("{\"type\":\"string\",\"pattern\":\"(?=a)b\"}", "pattern: unsupported");
    expect_schema_error("{\"type\":\"string\",\"pattern\":\"a\\\\1\"}", "pattern: unsupported escape");
    expect_schema_error("{\"$ref\":\"#/$defs/missing\"}", "does not resolve");
    expect_schema_error("{\"$ref\":\"http://x/y\"}", "only local refs");
    expect_schema_error("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", "integer range is empty");
    expect_schema_error("{\"type\":\"strin\"}", "unknown type 'strin'");
    expect_schema_error("{\"type\":\"object\"", "invalid JSON");
    expect_schema_error("{\"$defs\":{\"a\":{\"type\":\"object\",\"properties\":{\"x\":{\"$ref\":\"#/$defs/a\"}},"
                        "\"required\":[\"x\"]}},\"$ref\":\"#/$defs/a\"}",
                        "no finite valid value");
}

static void expect_invalid(const char *schema, const char *text, const char *want) {
    char err[512] = "";
    int rc = slm_json_validate(schema, text, strlen(text), err, sizeof err);
    CHECKF(rc != 0 && strstr(err, want), "validate %s against %s: rc %d err '%s', want '%s'", text, schema, rc, err, want);
}

static void test_validator(void) {
    const char *person = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\","
                         "\"minimum\":0,\"maximum\":150}},\"required\":[\"name\",\"age\"],\"additionalProperties\":false}";
    char err[256];
    const char *ann = "{\"name\":\"Ann\",\"age\":31}";
    CHECKF(slm_json_validate(person, ann, strlen(ann), err, sizeof err) == 0, "%s", err);
    expect_invalid(person, "{\"name\":\"Ann\",\"age\":200}", "$.age: 200 is above the maximum 150");
    expect_invalid(person, "{\"name\":\"Ann\"}", "required property 'age' is missing");
    expect_invalid(person, "{\"name\":\"Ann\",\"age\":3,\"x\":1}", "property 'x' is not allowed");
    expect_invalid(person, "{\"name\":\"Ann\",\"age\":3", "not valid JSON");
    expect_invalid("{\"type\":\"string\",\"format\":\"date\"}", "\"2023-02-29\"", "not a valid date");
    expect_invalid("{\"type\":\"string\",\"pattern\":\"^[a-z]+$\"}", "\"abC\"", "does not match the pattern");
    expect_invalid("{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", "5", "matches 2 of oneOf");
    expect_invalid("{\"type\":\"json_object\"}", "[1]", "not a JSON object");
    expect_invalid("{\"type\":\"string\",\"maxLength\":2}", "\"h\xc3\xa9h\"", "longer than maxLength");
    CHECK(slm_json_validate("{\"type\":\"string\",\"maxLength\":3}", "\"h\xc3\xa9h\"", 6, err, sizeof err) == 0);
    /* the keywords of issue 18 */
    expect_invalid("{\"uniqueItems\":true}", "[1,{\"a\":1,\"b\":2},1.0]", "items 0 and 2 are equal (uniqueItems)");
    expect_invalid("{\"uniqueItems\":true}", "[{\"a\":1,\"b\":2},{\"b\":2,\"a\":1}]", "items 0 and 1 are equal");
    CHECK(slm_json_validate("{\"uniqueItems\":true}", "[1,\"1\",[1],true]", 16, err, sizeof err) == 0);
    expect_invalid("{\"multipleOf\":0.1}", "0.35", "is not a multiple of 0.1");
    CHECK(slm_json_validate("{\"multipleOf\":0.1}", "0.3", 3, err, sizeof err) == 0);
    expect_invalid("{\"type\":\"integer\",\"multipleOf\":7}", "15", "not a multiple of 7");
    expect_invalid("{\"minProperties\":2}", "{\"a\":1}", "fewer than minProperties 2");
    expect_invalid("{\"maxProperties\":1}", "{\"a\":1,\"b\":2}", "more than maxProperties 1");
    expect_invalid("{\"propertyNames\":{\"pattern\":\"^[a-z]+$\"}}", "{\"aB\":1}", "$.aB: \"aB\" does not match the pattern");
    expect_invalid("{\"patternProperties\":{\"^n_\":{\"type\":\"integer\"}},\"additionalProperties\":false}",
                   "{\"n_a\":1,\"x\":2}", "property 'x' is not allowed");
    expect_invalid("{\"patternProperties\":{\"^n_\":{\"type\":\"integer\"}}}", "{\"n_a\":\"s\"}", "$.n_a: \"s\" is not of type");
    expect_invalid("{\"prefixItems\":[{\"type\":\"integer\"}],\"items\":{\"type\":\"string\"}}", "[1,2]",
                   "$[1]: 2 is not of type");
    expect_invalid("{\"prefixItems\":[{\"type\":\"integer\"}],\"items\":false}", "[1,2]", "$[1]: no value is allowed");
    expect_invalid("{\"contains\":{\"const\":2}}", "[1,3]", "0 items match 'contains', fewer than 1");
    expect_invalid("{\"contains\":{\"const\":2},\"maxContains\":1}", "[2,2]", "more than maxContains 1");
    CHECK(slm_json_validate("{\"contains\":{\"const\":2},\"minContains\":0}", "[]", 2, err, sizeof err) == 0);
    expect_invalid("{\"dependentRequired\":{\"a\":[\"b\"]}}", "{\"a\":1}", "property 'a' requires 'b'");
    const char *ite = "{\"if\":{\"properties\":{\"c\":{\"const\":\"US\"}}},\"then\":{\"required\":[\"zip\"]},"
                      "\"else\":{\"required\":[\"post\"]}}";
    expect_invalid(ite, "{\"c\":\"US\",\"post\":1}", "required property 'zip' is missing");
    expect_invalid(ite, "{\"c\":\"DE\",\"zip\":1}", "required property 'post' is missing");
    expect_invalid("{\"not\":{\"type\":\"string\"}}", "\"x\"", "matches the 'not' schema");
    expect_invalid("{\"type\":\"object\"}", "{\"a\":1,\"a\":2}", "duplicate object key");
}

/* $ref is resolved by one JSON-pointer reader for the grammar and the validator: keys of any length,
 * ~0/~1 escapes, strict array indices; both sides agree on what resolves. */
static void test_refs(void) {
    char key[400];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = 0;
    char schema[1024];
    snprintf(schema, sizeof schema, "{\"$defs\":{\"%s\":{\"type\":\"integer\"},\"a/b~c\":{\"type\":\"string\"}},"
             "\"type\":\"object\",\"properties\":{\"n\":{\"$ref\":\"#/$defs/%s\"},"
             "\"s\":{\"$ref\":\"#/$defs/a~1b~0c\"}},\"required\":[\"n\",\"s\"]}", key, key);
    char err[512] = "";
    char *gbnf = NULL;
    CHECKF(slm_json_schema_to_gbnf(schema, &gbnf, err, sizeof err) == 0, "long/escaped ref keys: %s", err);
    free(gbnf);
    const char *ok = "{\"n\":3,\"s\":\"x\"}";
    CHECKF(slm_json_validate(schema, ok, strlen(ok), err, sizeof err) == 0, "long/escaped ref keys: %s", err);
    expect_invalid(schema, "{\"n\":\"x\",\"s\":\"x\"}", "$.n: \"x\" is not of type");
    const char *bad_index = "{\"$defs\":{\"l\":[{\"type\":\"integer\"}]},\"$ref\":\"#/$defs/l/x\"}";
    expect_schema_error(bad_index, "does not resolve");
    expect_invalid(bad_index, "1", "$ref does not resolve");
    const char *index0 = "{\"$defs\":{\"l\":[{\"type\":\"integer\"}]},\"$ref\":\"#/$defs/l/0\"}";
    CHECKF(slm_json_validate(index0, "1", 1, err, sizeof err) == 0, "index ref: %s", err);
    expect_schema_error("{\"$ref\":\"#defs\"}", "not a JSON pointer");
}

/* Errors quote hostile input (jansson's "near '...'", property names, paths): control characters
 * are escaped so every message stays one line (fuzz_json_schema found the raw newline). */
static void test_errors_one_line(void) {
    char err[512] = "";
    char *gbnf = NULL;
    const char *broken = "{\n \"type\": \"string\",\n \"pattern\": \"^\\\n";
    CHECK(slm_json_schema_to_gbnf(broken, &gbnf, err, sizeof err) != 0 && gbnf == NULL);
    CHECKF(strchr(err, '\n') == NULL && strstr(err, "invalid JSON at line 4") && strstr(err, "\\n"), "err '%s'", err);
    const char *keyword = "{\"type\":\"string\",\"maxL\\ngth\":7}"; /* found by fuzz_http_request */
    CHECK(slm_json_schema_to_gbnf(keyword, &gbnf, err, sizeof err) != 0);
    CHECKF(strchr(err, '\n') == NULL && strstr(err, "unsupported keyword 'maxL\\ngth'"), "err '%s'", err);
    const char *closed = "{\"type\":\"object\",\"additionalProperties\":false}";
    const char *text = "{\"a\\nb\\u0001\":1}";
    CHECK(slm_json_validate(closed, text, strlen(text), err, sizeof err) != 0);
    CHECKF(strchr(err, '\n') == NULL && strstr(err, "property 'a\\nb\\x01' is not allowed"), "err '%s'", err);
    const char *bad_text = "[1,\n\t\x01]";
    CHECK(slm_json_validate(closed, bad_text, strlen(bad_text), err, sizeof err) != 0);
    CHECKF(strchr(err, '\n') == NULL && strncmp(err, "output is not valid JSON (line 2", 32) == 0, "err '%s'", err);
    CHECK(slm_json_validate("{\"type\":\n", "1", 1, err, sizeof err) != 0);
    CHECKF(strchr(err, '\n') == NULL && strstr(err, "schema is not valid JSON"), "err '%s'", err);
}

/* ---- token-level: a fake model choosing random allowed tokens from a real vocabulary ---- */

static void token_walks(const char *vocab_path, schema_file *files, int n, int walks_per_schema, const char *label) {
    slm_model_params mp = {.vocab_only = true};
    slm_model *m = NULL;
    char err[512];
    if (slm_model_load(vocab_path, &mp, &m, err, sizeof err) != 0) {
        fprintf(stderr, "%s: skipped (%s)\n", label, err);
        return;
    }
    int nv = slm_model_n_vocab(m);
    float *logits = malloc((size_t)nv * sizeof *logits);
    int *allowed = malloc((size_t)nv * sizeof *allowed);
    char *text = malloc(1 << 16);
    double mask_us = 0, cold_us = 0, compile_us = 0;
    long masks = 0, colds = 0, total = 0, finished = 0;
    for (int i = 0; i < n; i++) {
        slm_grammar *g = NULL;
        double t0 = now_us();
        int rc = slm_grammar_from_json_schema(m, files[i].text, &g, err, sizeof err);
        compile_us += now_us() - t0;
        CHECKF(rc == 0, "%s: %s", files[i].name, err);
        if (rc) continue;
        for (int w = 0; w < walks_per_schema; w++) {
            slm_grammar_reset(g);
            size_t len = 0;
            bool ended = false;
            for (int step = 0; step < 400 && !ended; step++) {
                for (int t = 0; t < nv; t++) logits[t] = 0.0f;
                double t1 = now_us();
                slm_grammar_mask(g, logits, nv);
                double dt = now_us() - t1;
                mask_us += dt;
                masks++;
                if (step == 0 && w == 0) cold_us += dt, colds++;
                int k = 0;
                bool eog_ok = false;
                for (int t = 0; t < nv; t++)
                    if (!isinf(logits[t])) {
                        if (slm_token_is_eog(m, t)) eog_ok = true;
                        else allowed[k++] = t;
                    }
                CHECKF(k > 0 || eog_ok, "%s: dead end after %.*s", files[i].name, (int)len, text);
                if (eog_ok && (k == 0 || rnd() % 3 == 0)) {
                    ended = true;
                    break;
                }
                if (k == 0) break;
                slm_token t = allowed[rnd() % (uint64_t)k];
                CHECK(slm_grammar_allows(g, t));
                char piece[256];
                int pl = slm_token_to_piece(m, t, false, piece, sizeof piece);
                if (pl > 0 && len + (size_t)pl < (1 << 16)) {
                    memcpy(text + len, piece, (size_t)pl);
                    len += (size_t)pl;
                }
                slm_grammar_accept(g, t);
            }
            total++;
            if (!ended) continue; /* length cap: the output is incomplete, which the task layer reports */
            finished++;
            CHECKF(slm_grammar_is_done(g), "%s: EOG allowed before completion", files[i].name);
            rc = slm_json_validate(files[i].text, text, len, err, sizeof err);
            CHECKF(rc == 0, "%s (%s): generated %.*s\n  invalid: %s", files[i].name, label, (int)len, text, err);
        }
        slm_grammar_free(g);
    }
    fprintf(stderr,
            "%s (%d tokens): %ld of %ld token walks finished, all validated; compile %.1f ms/schema; "
            "mask %.1f us avg over %ld masks, first mask of a grammar %.0f us avg\n",
            label, nv, finished, total, compile_us / 1000.0 / n, mask_us / (double)(masks ? masks : 1), masks,
            cold_us / (colds ? colds : 1));
    CHECK(finished > total / 3);
    free(logits);
    free(allowed);
    free(text);
    slm_model_free(m);
}

/* ---- compile cost, limits and cancellation: a 60000-branch anyOf (~1 MB) ---- */

static char *big_anyof(int n) {
    char *s = malloc((size_t)n * 24 + 64);
    size_t k = (size_t)sprintf(s, "{\"anyOf\":[");
    for (int i = 0; i < n; i++) k += (size_t)sprintf(s + k, "%s{\"const\":%d}", i ? "," : "", i);
    sprintf(s + k, "]}");
    return s;
}

static int js_polls;
static bool js_cancel_always(void *user) {
    (void)user;
    js_polls++;
    return true;
}
static bool js_cancel_after_3(void *user) {
    int *n = user;
    return ++*n > 3;
}

static void test_compile_cost(void) {
    char *schema = big_anyof(60000);
    CHECK(strlen(schema) > 900000);
    char err[512] = "";
    char *gbnf = NULL;
    double t0 = now_us();
    int rc = slm_json_schema_to_gbnf(schema, &gbnf, err, sizeof err);
    CHECKF(rc == 0 && gbnf, "60000-branch anyOf: %s", err);
    slm_grammar *g = NULL;
    if (gbnf) rc = slm_grammar_compile_vocab(gbnf, strlen(gbnf), 0, NULL, NULL, NULL, &g, err, sizeof err);
    double dt = (now_us() - t0) / 1e6;
    CHECKF(rc == 0 && g, "60000-branch anyOf grammar: %s", err);
    CHECKF(dt < 5.0, "60000-branch anyOf took %.2f s to convert and compile", dt); /* was 23-77 s */
    fprintf(stderr, "60000-branch anyOf (%zu bytes): converted and compiled in %.3f s\n", strlen(schema), dt);
    if (g) {
        CHECK(slm_grammar_matches(g, "17", 2));
        CHECK(!slm_grammar_matches(g, "17.5", 4));
        slm_grammar_free(g);
    }
    free(gbnf);
    gbnf = NULL;

    slm_grammar_limits lim = {.max_rules = 10000};
    t0 = now_us();
    rc = slm_json_schema_to_gbnf_limited(schema, &lim, &gbnf, err, sizeof err);
    CHECKF(rc == SLM_GRAMMAR_TOO_LARGE && !gbnf && strstr(err, "json schema: grammar has more than 10000 rules (limit)"),
           "max_rules: rc %d err '%s'", rc, err);
    CHECKF((now_us() - t0) / 1e6 < 5.0, "the rule limit took %.2f s", (now_us() - t0) / 1e6);
    lim = (slm_grammar_limits){.max_elements = 100000};
    rc = slm_json_schema_to_gbnf_limited(schema, &lim, &gbnf, err, sizeof err);
    CHECKF(rc == SLM_GRAMMAR_TOO_LARGE && !gbnf && strstr(err, "more than 100000 elements"), "max_elements: rc %d err '%s'",
           rc, err);
    lim = (slm_grammar_limits){.deadline = slm_grammar_now() - 1};
    rc = slm_json_schema_to_gbnf_limited(schema, &lim, &gbnf, err, sizeof err);
    CHECKF(rc == SLM_GRAMMAR_TOO_LARGE && !gbnf && strstr(err, "json schema: ") && strstr(err, "time limit"),
           "deadline: rc %d err '%s'", rc, err);

    js_polls = 0;
    lim = (slm_grammar_limits){.cancel = js_cancel_always};
    rc = slm_json_schema_to_gbnf_limited(schema, &lim, &gbnf, err, sizeof err);
    CHECKF(rc == SLM_GRAMMAR_CANCELLED && !gbnf && !strcmp(err, "json schema: compile cancelled") && js_polls == 1,
           "cancel before: rc %d err '%s' polls %d", rc, err, js_polls);
    int polls = 0;
    lim = (slm_grammar_limits){.cancel = js_cancel_after_3, .cancel_user = &polls};
    t0 = now_us();
    rc = slm_json_schema_to_gbnf_limited(schema, &lim, &gbnf, err, sizeof err);
    CHECKF(rc == SLM_GRAMMAR_CANCELLED && !gbnf && strstr(err, "cancelled") && polls == 4, "cancel during: rc %d err '%s' polls %d",
           rc, err, polls);
    CHECKF((now_us() - t0) / 1e6 < 5.0, "cancel took %.2f s", (now_us() - t0) / 1e6);
    /* an unsupported schema stays SLM_GRAMMAR_INVALID under limits */
    rc = slm_json_schema_to_gbnf_limited("{\"not\":{}}", &(slm_grammar_limits){.max_rules = 10}, &gbnf, err, sizeof err);
    CHECK(rc == SLM_GRAMMAR_INVALID && !gbnf);

    /* with a real vocabulary: the public entry points */
    char path[2048];
    snprintf(path, sizeof path, "%s/smollm2-135m-vocab.gguf", test_models_dir());
    slm_model_params mp = {.vocab_only = true};
    slm_model *m = NULL;
    if (slm_model_load(path, &mp, &m, err, sizeof err) == 0) {
        t0 = now_us();
        rc = slm_grammar_from_json_schema_limited(m, schema, NULL, &g, err, sizeof err);
        dt = (now_us() - t0) / 1e6;
        CHECKF(rc == 0 && g, "from_json_schema_limited: %s", err);
        CHECKF(dt < 5.0, "60000-branch anyOf with a 49152-token vocabulary took %.2f s", dt);
        if (g) {
            t0 = now_us();
            CHECK(slm_grammar_count_allowed(g) > 0);
            CHECKF((now_us() - t0) / 1e6 < 5.0, "first mask took %.2f s", (now_us() - t0) / 1e6);
            slm_grammar_free(g);
            g = NULL;
        }
        polls = 0;
        lim = (slm_grammar_limits){.cancel = js_cancel_after_3, .cancel_user = &polls};
        rc = slm_grammar_from_json_schema_limited(m, schema, &lim, &g, err, sizeof err);
        CHECKF(rc == SLM_GRAMMAR_CANCELLED && !g && !strcmp(err, "json schema: compile cancelled"), "rc %d err '%s'", rc, err);
        lim = (slm_grammar_limits){.max_rules = 1000};
        rc = slm_grammar_from_json_schema_limited(m, schema, &lim, &g, err, sizeof err);
        CHECKF(rc == SLM_GRAMMAR_TOO_LARGE && !g && strstr(err, "more than 1000 rules (limit)"), "rc %d err '%s'", rc, err);
        slm_model_free(m);
    } else {
        fprintf(stderr, "compile cost with a vocabulary: skipped (%s)\n", err);
    }
    free(schema);

    /* 20000 properties, all required: the required list is matched by hash, not by scanning */
    size_t cap = 20000 * 48 + 64, k = 0;
    char *wide = malloc(cap);
    k += (size_t)sprintf(wide + k, "{\"type\":\"object\",\"properties\":{");
    for (int i = 0; i < 20000; i++) k += (size_t)sprintf(wide + k, "%s\"p%d\":{\"type\":\"integer\"}", i ? "," : "", i);
    k += (size_t)sprintf(wide + k, "},\"required\":[");
    for (int i = 19999; i >= 0; i--) k += (size_t)sprintf(wide + k, "\"p%d\"%s", i, i ? "," : "");
    sprintf(wide + k, "]}");
    t0 = now_us();
    rc = slm_json_schema_to_gbnf(wide, &gbnf, err, sizeof err);
    dt = (now_us() - t0) / 1e6;
    CHECKF(rc == 0, "20000 required properties: %s", err);
    CHECKF(dt < 5.0, "20000 required properties took %.2f s", dt);
    free(gbnf);
    free(wide);
}

/* The new keywords, bytes in and out: what the compiled grammar (with its JSON checks) accepts. */
static void expect_match(const char *schema, const char *text, bool want) {
    char err[512] = "";
    char *gbnf = NULL;
    slm_grammar *g = NULL;
    int rc = slm_json_schema_to_gbnf(schema, &gbnf, err, sizeof err);
    if (rc == 0) rc = slm_grammar_compile_vocab(gbnf, strlen(gbnf), 0, NULL, NULL, NULL, &g, err, sizeof err);
    CHECKF(rc == 0, "%s: %s", schema, err);
    if (g) {
        bool got = slm_grammar_matches(g, text, strlen(text));
        CHECKF(got == want, "%s: %s should %sbe generated", schema, text, want ? "" : "not ");
        if (got) CHECKF(slm_json_validate(schema, text, strlen(text), err, sizeof err) == 0, "%s: %s: %s", schema, text, err);
    }
    slm_grammar_free(g);
    free(gbnf);
}

static void test_keywords_exact(void) {
    const char *uniq = "{\"type\":\"array\",\"items\":{\"type\":[\"integer\",\"string\"]},\"uniqueItems\":true}";
    expect_match(uniq, "[1,2,\"1\"]", true);
    expect_match(uniq, "[1,2,1]", false);
    expect_match(uniq, "[\"a\",\"ab\",\"b\"]", true);
    expect_match(uniq, "[\"ab\",\"a\",\"ab\"]", false);
    const char *nested = "{\"type\":\"array\",\"uniqueItems\":true,\"items\":{\"type\":\"object\",\"properties\":"
                         "{\"x\":{\"type\":\"integer\"},\"y\":{\"type\":\"integer\"}}}}";
    expect_match(nested, "[{\"x\":1},{\"x\":1,\"y\":2},{\"y\":1}]", true);
    expect_match(nested, "[{\"x\":1,\"y\":2},{\"x\":1,\"y\":2}]", false);
    const char *map = "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"},\"minProperties\":2}";
    expect_match(map, "{\"a\":1,\"b\":1}", true);
    expect_match(map, "{\"a\":1,\"a\":2}", false);
    expect_match(map, "{\"a\":1}", false);
    expect_match("{\"type\":\"integer\",\"multipleOf\":7}", "-21", true);
    expect_match("{\"type\":\"integer\",\"multipleOf\":7}", "15", false);
    expect_match("{\"type\":\"number\",\"multipleOf\":0.25}", "1.75", true);
    expect_match("{\"type\":\"number\",\"multipleOf\":0.25}", "1.7", false);
    expect_match("{\"type\":\"number\",\"minimum\":0,\"maximum\":1,\"multipleOf\":0.3}", "0.9", true);
    expect_match("{\"type\":\"number\",\"minimum\":0,\"maximum\":1,\"multipleOf\":0.3}", "1.2", false);
    const char *counted = "{\"type\":\"object\",\"properties\":{\"a\":{},\"b\":{},\"c\":{}},\"minProperties\":2,"
                          "\"maxProperties\":2}";
    expect_match(counted, "{\"a\":1,\"c\":2}", true);
    expect_match(counted, "{\"a\":1}", false);
    expect_match(counted, "{\"a\":1,\"b\":2,\"c\":3}", false);
    const char *tuple = "{\"prefixItems\":[{\"type\":\"integer\"},{\"type\":\"string\"}],\"items\":false}";
    expect_match(tuple, "[1,\"x\"]", true);
    expect_match(tuple, "[1]", true);
    expect_match(tuple, "[1,2]", false);
    expect_match(tuple, "[1,\"x\",3]", false);
    const char *cont = "{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]},\"contains\":{\"const\":\"b\"},\"maxContains\":2}";
    expect_match(cont, "[\"b\"]", true);
    expect_match(cont, "[]", false);
    expect_match(cont, "[\"b\",\"b\",\"b\"]", false);
    const char *dep = "{\"type\":\"object\",\"properties\":{\"card\":{\"type\":\"integer\"},\"cvv\":{\"type\":\"integer\"}},"
                      "\"dependentRequired\":{\"card\":[\"cvv\"]}}";
    expect_match(dep, "{}", true);
    expect_match(dep, "{\"cvv\":1}", true);
    expect_match(dep, "{\"card\":1,\"cvv\":2}", true);
    expect_match(dep, "{\"card\":1}", false);
    char path[2048];
    snprintf(path, sizeof path, "%s/tests/schemas/60_if_then_else.json", SLM_SOURCE_DIR);
    char *ite = read_file(path);
    if (ite) {
        expect_match(ite, "{\"country\":\"US\",\"postal\":\"12345\"}", true);
        expect_match(ite, "{\"country\":\"US\",\"postal\":\"A1B\"}", false);
        expect_match(ite, "{\"country\":\"CA\",\"postal\":\"A1B\"}", true);
        expect_match(ite, "{\"country\":\"DE\",\"postal\":\"12345\"}", false);
    }
    free(ite);
    expect_match("{\"enum\":[1,2,3],\"not\":{\"const\":2}}", "3", true);
    expect_match("{\"enum\":[1,2,3],\"not\":{\"const\":2}}", "2", false);
    expect_match("{\"not\":{\"type\":[\"string\",\"object\"]}}", "[true]", true);
    expect_match("{\"not\":{\"type\":[\"string\",\"object\"]}}", "\"s\"", false);
    const char *pp = "{\"type\":\"object\",\"patternProperties\":{\"^s_\":{\"type\":\"string\"},\"^n_\":{\"type\":\"integer\"}},"
                     "\"additionalProperties\":false}";
    expect_match(pp, "{\"s_a\":\"x\",\"n_b\":2}", true);
    expect_match(pp, "{\"s_a\":2}", false);
    expect_match(pp, "{\"x\":2}", false);
    /* a started item that could only finish as a duplicate is refused before it is written (no dead
     * end): both {"x":3,...} objects are taken, so x=3 cannot start a third (fuzz_json_schema) */
    {
        char err[256];
        char *gbnf = NULL;
        slm_grammar *g = NULL;
        const char *objs = "{\"type\":\"array\",\"uniqueItems\":true,\"items\":{\"type\":\"object\",\"properties\":"
                           "{\"x\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":3},\"on\":{\"type\":\"boolean\"}},"
                           "\"required\":[\"x\",\"on\"]}}";
        if (slm_json_schema_to_gbnf(objs, &gbnf, err, sizeof err) == 0)
            slm_grammar_compile_vocab(gbnf, strlen(gbnf), 0, NULL, NULL, NULL, &g, err, sizeof err);
        CHECK(g != NULL);
        if (g) {
            const char *taken = "[{\"x\":3,\"on\":false},{\"x\":3,\"on\":true},";
            CHECK(slm_grammar_accept_bytes(g, taken, strlen(taken)));
            CHECK(!slm_grammar_bytes_allowed(g, "{\"x\":3", 6));
            CHECK(slm_grammar_bytes_allowed(g, "{\"x\":2", 6));
            CHECK(slm_grammar_accept_bytes(g, "{\"x\":2,\"on\":", 12));
            CHECK(slm_grammar_bytes_allowed(g, "true}", 5));
        }
        slm_grammar_free(g);
        free(gbnf);
    }
    /* free-form objects (any value, a required name without a schema, items of any type) repeat no
     * key, at any depth (fuzz_json_schema found {"a":0,"a":0} from the generic object rule) */
    expect_match("{}", "{\"a\":0,\"b\":{\"a\":1}}", true);
    expect_match("{}", "{\"a\":0,\"a\":0}", false);
    expect_match("{}", "[{\"k\":1},{\"k\":2,\"k\":3}]", false);
    expect_match("{\"type\":\"object\",\"properties\":{\"p\":{}},\"required\":[\"p\",\"q\"]}",
                 "{\"p\":{\"x\":1,\"x\":1},\"q\":0}", false);
    expect_match("{\"type\":\"object\",\"properties\":{\"p\":{}},\"required\":[\"p\",\"q\"]}",
                 "{\"p\":1,\"q\":{\"y\":[],\"y\":[]}}", false);
    expect_match("{\"type\":\"array\",\"items\":{}}", "[{\"a\":1,\"b\":{\"a\":2}}]", true);
    expect_match("{\"type\":\"array\",\"items\":{}}", "[[{\"a\":1,\"a\":2}]]", false);
    const char *names = "{\"type\":\"object\",\"propertyNames\":{\"enum\":[\"w\",\"h\"]}}";
    expect_match(names, "{\"w\":1,\"h\":[]}", true);
    expect_match(names, "{\"d\":1}", false);
}

int main(void) {
    schema_file *files = NULL;
    int n = load_corpus(&files);
    test_corpus_bytes(files, n);
    test_errors();
    test_validator();
    test_keywords_exact();
    test_refs();
    test_errors_one_line();
    test_compile_cost();
    char path[2048];
    snprintf(path, sizeof path, "%s/smollm2-135m-vocab.gguf", test_models_dir());
    token_walks(path, files, n, 6, "smollm2 vocab");
    snprintf(path, sizeof path, "%s/qwen2.5-0.5b-vocab.gguf", test_models_dir());
    token_walks(path, files, n, 2, "qwen2.5 vocab");
    for (int i = 0; i < n; i++) free(files[i].text);
    free(files);
    return test_report("test_json_schema");
}
