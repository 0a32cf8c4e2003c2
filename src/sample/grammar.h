/* The grammar constraint as the sampler sees it. A compiled slm_grammar carries its own parse
 * state (one grammar object per sampler). Implemented in grammar*.c. */
#ifndef SLM_SAMPLE_GRAMMAR_H
#define SLM_SAMPLE_GRAMMAR_H

#include <stdbool.h>

#include "slm.h"

/* Restarts the parse at the grammar's root. */
void slm_grammar_reset(slm_grammar *g);
/* True if `token` can continue the current parse (EOG tokens: only when the parse is complete). */
bool slm_grammar_allows(const slm_grammar *g, slm_token token);
/* Sets logits[t] = -INFINITY for every token that cannot continue the parse. */
void slm_grammar_mask(const slm_grammar *g, float *logits, int n_vocab);
/* Advances the parse by the token's bytes; the token must be allowed. */
void slm_grammar_accept(slm_grammar *g, slm_token token);
/* True if the text so far is a complete sentence of the grammar. */
bool slm_grammar_is_done(const slm_grammar *g);

#endif
