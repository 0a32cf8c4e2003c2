/* The grammar constraint as the sampler sees it. A compiled slm_grammar carries its own parse
 * state (one grammar object per sampler). Implemented in grammar*.c; the format is docs/grammar.md. */
#ifndef SLM_SAMPLE_GRAMMAR_H
#define SLM_SAMPLE_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>

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
/* When generation should stop: slm_grammar_is_done, or for an open-ended grammar
 * (slm_grammar_set_open_ended) only when nothing can follow; otherwise it ends at EOG. */
bool slm_grammar_is_finished(const slm_grammar *g);

/* ---- beyond the sampler hooks: compiling without a loaded model, and byte-level access ---- */

/* Bytes of token t (as slm_token_to_piece with render_special = false): length, or negative. */
typedef int (*slm_grammar_piece_fn)(void *user, slm_token t, char *buf, int cap);
typedef bool (*slm_grammar_eog_fn)(void *user, slm_token t);

/* Compiles `len` bytes of GBNF for a vocabulary given by callbacks (n_vocab may be 0: then only
 * the byte-level functions below are useful). slm_grammar_compile is this with the model's vocab. */
int slm_grammar_compile_vocab(const char *gbnf, size_t len, int n_vocab, slm_grammar_piece_fn piece,
                              slm_grammar_eog_fn is_eog, void *user, slm_grammar **out, char *err, size_t err_len);
/* slm_grammar_compile_vocab within `limits` (NULL = defaults); returns 0 or an SLM_GRAMMAR_* code. */
int slm_grammar_compile_vocab_limited(const char *gbnf, size_t len, const slm_grammar_limits *limits, int n_vocab,
                                      slm_grammar_piece_fn piece, slm_grammar_eog_fn is_eog, void *user,
                                      slm_grammar **out, char *err, size_t err_len);
/* Advances the parse by raw bytes; false (state unchanged) if they cannot continue it. */
bool slm_grammar_accept_bytes(slm_grammar *g, const char *bytes, size_t n);
/* True if the bytes could continue the parse (nothing is consumed). */
bool slm_grammar_bytes_allowed(const slm_grammar *g, const char *bytes, size_t n);
/* True if the whole text is a sentence of the grammar; leaves the parse reset. */
bool slm_grammar_matches(slm_grammar *g, const char *text, size_t n);
/* Number of tokens the current state allows (EOG included when complete). */
int slm_grammar_count_allowed(const slm_grammar *g);

#endif
