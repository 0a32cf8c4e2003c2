/* Vocabulary and tokenizers: SentencePiece-style (llama), byte-level BPE with pre-tokenizers
 * (gpt2, llama3, qwen2, smollm, starcoder, deepseek, falcon, mpt, refact), WordPiece (bert).
 * The public slm_tokenize/slm_token_to_piece/slm_detokenize forward here. */
#ifndef SLM_TOKENIZER_VOCAB_H
#define SLM_TOKENIZER_VOCAB_H

#include <stdbool.h>
#include <stddef.h>

#include "gguf/gguf.h"
#include "slm.h"

typedef struct slm_vocab slm_vocab;

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

/* Same contracts as slm_tokenize / slm_token_to_piece / slm_detokenize in slm.h. */
int slm_vocab_tokenize(const slm_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                       slm_token *out, int cap, char *err, size_t err_len);
int slm_vocab_token_to_piece(const slm_vocab *v, slm_token t, bool render_special, char *buf, int cap);
int slm_vocab_detokenize(const slm_vocab *v, const slm_token *tokens, int n, bool remove_special,
                         bool render_special, char *buf, int cap);

#endif
