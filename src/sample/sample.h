/* Sampler internals for the library and its tests (the public API is in slm.h). */
#ifndef SLM_SAMPLE_SAMPLE_H
#define SLM_SAMPLE_SAMPLE_H

#include "slm.h"

/* slm_sampler_new for a vocabulary size instead of a model (what slm_sampler_new calls). It does
 * not refuse a logit_bias that bans every token (slm_sampler_new does), so tests can reach the
 * SLM_NO_TOKEN path of slm_sampler_sample. */
int slm_sampler_new_for_vocab(int n_vocab, const slm_sampler_params *params, slm_sampler **out, char *err,
                              size_t err_len);

/* For tests: the logits after penalties and logit bias (s's work buffer or `logits` itself when
 * nothing applies). Valid until the next call on s. */
const float *slm_sampler_adjusted_logits(slm_sampler *s, const float *logits);
/* For tests: the ids that survive penalties, bias, top-k, top-p and min-p (the draw's support), in
 * the sampler's internal order. Returns their number; writes at most `cap`. */
int slm_sampler_candidates(slm_sampler *s, const float *logits, slm_token *ids, int cap);

#endif
