/* Vocabulary and tokenizers: SentencePiece-style (llama), byte-level BPE with pre-tokenizers
 * (gpt2, llama3, qwen2, smollm, starcoder, deepseek, falcon, mpt, refact), WordPiece (bert).
 * The public slm_tokenize/slm_token_to_piece/slm_detokenize forward here. */
#ifndef SLM_TOKENIZER_VOCAB_H
#define SLM_TOKENIZER_VOCAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "slm.h"

typedef struct slm_vocab slm_vocab;
/* The vocabulary a model owns (defined by the model, which loads it): the tokenizer's way in
 * from the public API without depending on the model layer. */
const slm_vocab *slm_model_vocab(const slm_model *model);

/* Reads tokenizer.ggml.* from the file; an unsupported model/pre-tokenizer is an error naming it. */
int slm_vocab_load(const gguf_file *f, slm_vocab **out, char *err, size_t err_len);
void slm_vocab_free(slm_vocab *v);

int slm_vocab_n_tokens(const slm_vocab *v);
slm_token slm_vocab_bos(const slm_vocab *v);
slm_token slm_vocab_eos(const slm_vocab *v);
slm_token slm_vocab_eot(const slm_vocab *v);
bool slm_vocab_get_add_bos(const slm_vocab *v);
bool slm_vocab_is_eog(const slm_vocab *v, slm_token t);
bool slm_vocab_is_control(const slm_vocab *v, slm_token t);
/* The token's text as stored in the vocab (e.g. "▁the" or "Ġthe"), not decoded. */
const char *slm_vocab_token_text(const slm_vocab *v, slm_token t, size_t *len);

/* Extras beyond the public API (chat templates, grammar, the CLI and tests use them). */
slm_token slm_vocab_eom(const slm_vocab *v);
slm_token slm_vocab_unk(const slm_vocab *v);
slm_token slm_vocab_sep(const slm_vocab *v);
slm_token slm_vocab_pad(const slm_vocab *v);
bool slm_vocab_get_add_eos(const slm_vocab *v);
/* tokenizer.ggml.model ("llama", "gpt2", "bert") and tokenizer.ggml.pre ("" if absent). */
const char *slm_vocab_model_name(const slm_vocab *v);
const char *slm_vocab_pre_name(const slm_vocab *v);
/* All end-of-generation ids, ascending; returns their count. */
int slm_vocab_eog_ids(const slm_vocab *v, const slm_token **ids);
/* llama_token_attr bits: 1 unknown, 2 unused, 4 normal, 8 control, 16 user-defined, 32 byte,
 * 128 lstrip, 256 rstrip. 0 for an invalid id. */
uint32_t slm_vocab_token_attr(const slm_vocab *v, slm_token t);
float slm_vocab_token_score(const slm_vocab *v, slm_token t);
/* The id whose stored text is exactly these bytes, or -1. */
slm_token slm_vocab_find(const slm_vocab *v, const char *text, size_t len);

/* slm_vocab_tokenize returns SLM_TOKENIZE_ERROR (slm.h) on invalid input, like slm_tokenize. */

/* Same contracts as slm_tokenize / slm_token_to_piece / slm_detokenize in slm.h. Invalid ids
 * render as "". Safe to call from several threads on one vocab. */
int slm_vocab_tokenize(const slm_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                       slm_token *out, int cap, char *err, size_t err_len);
/* slm_vocab_tokenize where special-token texts inside the `plain` byte ranges (ascending,
 * non-overlapping) are text, as with parse_special false (see slm_tokenize_plain in slm.h). */
int slm_vocab_tokenize_plain(const slm_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                             const slm_text_span *plain, size_t n_plain, slm_token *out, int cap, char *err,
                             size_t err_len);
/* See slm_tokenize_max_bytes in slm.h. */
size_t slm_vocab_max_text_bytes(const slm_vocab *v, bool parse_special, int n_tokens);
int slm_vocab_token_to_piece(const slm_vocab *v, slm_token t, bool render_special, char *buf, int cap);
int slm_vocab_detokenize(const slm_vocab *v, const slm_token *tokens, int n, bool remove_special,
                         bool render_special, char *buf, int cap);

#endif
