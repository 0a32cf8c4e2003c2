/* GBNF grammar constraint: placeholder so the sampler links; the engine replaces it. */
#include "sample/grammar.h"

#include <math.h>
#include <stdlib.h>

#include "util/err.h"

struct slm_grammar {
    int unused;
};

int slm_grammar_compile(const slm_model *model, const char *gbnf, slm_grammar **out, char *err, size_t err_len) {
    (void)model;
    (void)gbnf;
    *out = NULL;
    return slm_err(err, err_len, "grammar: not implemented yet");
}

int slm_grammar_from_json_schema(const slm_model *model, const char *schema_json, slm_grammar **out, char *err,
                                 size_t err_len) {
    (void)model;
    (void)schema_json;
    *out = NULL;
    return slm_err(err, err_len, "json schema: not implemented yet");
}

void slm_grammar_free(slm_grammar *g) { free(g); }
void slm_grammar_reset(slm_grammar *g) { (void)g; }
bool slm_grammar_allows(const slm_grammar *g, slm_token token) {
    (void)g;
    (void)token;
    return true;
}
void slm_grammar_mask(const slm_grammar *g, float *logits, int n_vocab) {
    (void)g;
    (void)logits;
    (void)n_vocab;
}
void slm_grammar_accept(slm_grammar *g, slm_token token) {
    (void)g;
    (void)token;
}
bool slm_grammar_is_done(const slm_grammar *g) {
    (void)g;
    return false;
}
