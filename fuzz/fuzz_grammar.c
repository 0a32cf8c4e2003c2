/* libFuzzer target for the GBNF engine. The input is GBNF text, optionally followed by a NUL and
 * "choice" bytes (without a NUL the grammar bytes themselves are the choices). When the grammar
 * compiles against a small fixed vocabulary, the choices drive a few hundred mask/accept steps,
 * and at every step the grammar must agree with itself:
 *   - mask, allows, count_allowed and bytes_allowed give the same answer for every token;
 *   - end-of-generation is allowed exactly when the parse is done;
 *   - rejected raw bytes leave the state unchanged;
 *   - the text accepted so far is a sentence (slm_grammar_matches) exactly when the parse is done;
 *   - reset brings back the initial allowed set. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sample/grammar.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_STEPS 300
#define MAX_TEXT 4096

/* Every single byte (ids 0..255) so any live parse can always move, then multi-byte tokens that
 * cross code point boundaries, an empty control-like token and one end-of-generation token. */
static const char *const multi_pieces[] = {
    "{\"", "\":", "\"}", "true", "null", "false", "ab", "abc", "  ", "\n\n", "\xc3\xa9", "\xa9\"", "\xe2\x82",
    "\xac\"", "\xf0\x9f\x98\x80", "0123", "-1", "[]", "{}", "\\n", "\\\"", ", ", "x\xc3", "",
};
#define N_MULTI ((int)(sizeof multi_pieces / sizeof *multi_pieces))
#define TOK_EMPTY (256 + N_MULTI - 1)
#define TOK_EOG (256 + N_MULTI)
#define N_VOCAB (TOK_EOG + 1)

static int piece_len(slm_token t) {
    if (t < 256) return 1;
    if (t == TOK_EOG) return 0;
    return (int)strlen(multi_pieces[t - 256]);
}

static const char *piece_ptr(slm_token t) {
    static char bytes[256];
    static int init;
    if (!init) {
        for (int i = 0; i < 256; i++) bytes[i] = (char)i;
        init = 1;
    }
    if (t < 256) return &bytes[t];
    if (t == TOK_EOG) return "";
    return multi_pieces[t - 256];
}

static int fuzz_piece(void *user, slm_token t, char *buf, int cap) {
    (void)user;
    if (t < 0 || t >= N_VOCAB) return 0;
    int n = piece_len(t);
    if (n > cap) return -n;
    memcpy(buf, piece_ptr(t), (size_t)n);
    return n;
}

static bool fuzz_eog(void *user, slm_token t) {
    (void)user;
    return t == TOK_EOG;
}

/* The allowed set, checked four ways against each other; returns how many tokens are allowed. */
static int check_allowed_set(slm_grammar *g, bool allowed[N_VOCAB]) {
    float logits[N_VOCAB];
    for (int t = 0; t < N_VOCAB; t++) logits[t] = 0.0f;
    slm_grammar_mask(g, logits, N_VOCAB);
    int n = 0;
    bool done = slm_grammar_is_done(g);
    for (int t = 0; t < N_VOCAB; t++) {
        allowed[t] = !isinf(logits[t]);
        if (allowed[t] != slm_grammar_allows(g, t)) __builtin_trap();
        n += allowed[t];
        if (t == TOK_EOG) {
            if (allowed[t] != done) __builtin_trap();
        } else if (t == TOK_EMPTY) {
            if (allowed[t]) __builtin_trap(); /* an empty piece never advances a parse */
        } else if (allowed[t] != slm_grammar_bytes_allowed(g, piece_ptr(t), (size_t)piece_len(t))) {
            __builtin_trap();
        }
    }
    if (n != slm_grammar_count_allowed(g)) __builtin_trap();
    return n;
}

static void drive(slm_grammar *g, const uint8_t *choices, size_t n_choices) {
    static char text[MAX_TEXT + 64];
    bool allowed[N_VOCAB];
    size_t len = 0;
    int initial = check_allowed_set(g, allowed);
    size_t c = 0;
    for (int step = 0; step < MAX_STEPS && n_choices > 0; step++) {
        uint8_t pick = choices[c++ % n_choices];
        uint8_t how = choices[c++ % n_choices];
        int n_allowed = check_allowed_set(g, allowed);
        bool done = slm_grammar_is_done(g);
        /* A compiled grammar derives only finite strings, so a live parse can always move or end.
         * (The engine's stack caps may drop parses; that would show up here as a dead end.) */
        if (n_allowed == 0 && !done) __builtin_trap();
        if (how % 8 == 0) {
            /* raw bytes that may or may not continue the parse: a refusal changes nothing */
            char raw[4];
            size_t nr = 1 + how / 64;
            for (size_t i = 0; i < nr; i++) raw[i] = (char)choices[(c + i) % n_choices];
            c += nr;
            bool could = slm_grammar_bytes_allowed(g, raw, nr);
            bool took = slm_grammar_accept_bytes(g, raw, nr);
            if (could != took) __builtin_trap();
            if (took) {
                if (len + nr > MAX_TEXT) break;
                memcpy(text + len, raw, nr);
                len += nr;
            } else if (slm_grammar_is_done(g) != done || slm_grammar_count_allowed(g) != n_allowed) {
                __builtin_trap();
            }
            continue;
        }
        if (n_allowed == 0) break;
        if (done && allowed[TOK_EOG] && how % 8 == 1) break; /* the model chose to stop */
        int k = pick % n_allowed, t = 0;
        for (t = 0; t < N_VOCAB; t++)
            if (allowed[t] && k-- == 0) break;
        if (t == TOK_EOG) break;
        int pl = piece_len(t);
        if (len + (size_t)pl > MAX_TEXT) break;
        memcpy(text + len, piece_ptr(t), (size_t)pl);
        len += (size_t)pl;
        slm_grammar_accept(g, t);
    }
    bool done = slm_grammar_is_done(g);
    /* a done grammar stays done while nothing is accepted, and only EOG-consistent masks follow */
    check_allowed_set(g, allowed);
    if (slm_grammar_is_done(g) != done) __builtin_trap();
    /* replaying the accepted bytes from the root agrees with the incremental parse */
    if (slm_grammar_matches(g, text, len) != done) __builtin_trap();
    slm_grammar_reset(g);
    if (check_allowed_set(g, allowed) != initial) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 16384) return 0; /* larger grammars only slow the search down */
    const uint8_t *nul = memchr(data, 0, size);
    size_t gbnf_len = nul ? (size_t)(nul - data) : size;
    const uint8_t *choices = nul ? nul + 1 : data;
    size_t n_choices = nul ? size - gbnf_len - 1 : size;

    char err[256] = "";
    slm_grammar *g = NULL;
    int rc = slm_grammar_compile_vocab((const char *)data, gbnf_len, N_VOCAB, fuzz_piece, fuzz_eog, NULL, &g, err,
                                       sizeof err);
    /* Small limits change only where the compile stops: what fits compiles the same, an error found
     * before any limit is the same error, and a crossed limit is SLM_GRAMMAR_TOO_LARGE naming it. */
    slm_grammar_limits lim = {.max_rules = 8 + (int)(size % 32), .max_alternatives = 16, .max_elements = 64};
    char lerr[256] = "";
    slm_grammar *lg = NULL;
    int lrc = slm_grammar_compile_vocab_limited((const char *)data, gbnf_len, &lim, N_VOCAB, fuzz_piece, fuzz_eog, NULL,
                                                &lg, lerr, sizeof lerr);
    if ((lrc == 0) != (lg != NULL)) __builtin_trap();
    if (lrc == 0 && rc != 0) __builtin_trap();
    if (lrc == SLM_GRAMMAR_INVALID && (rc != SLM_GRAMMAR_INVALID || strcmp(err, lerr) != 0)) __builtin_trap();
    if (lrc == SLM_GRAMMAR_TOO_LARGE && !strstr(lerr, "(limit)") && !strstr(lerr, "elements after expanding"))
        __builtin_trap();
    if (lrc != 0 && lrc != SLM_GRAMMAR_INVALID && lrc != SLM_GRAMMAR_TOO_LARGE) __builtin_trap();
    slm_grammar_free(lg);
    if (rc != 0) {
        /* refused with one line of error and nothing allocated */
        if (g || err[0] == 0 || strchr(err, '\n') || (rc != SLM_GRAMMAR_INVALID && rc != SLM_GRAMMAR_TOO_LARGE))
            __builtin_trap();
        return 0;
    }
    if (!g) __builtin_trap();
    drive(g, choices, n_choices);
    slm_grammar_free(g);
    return 0;
}
