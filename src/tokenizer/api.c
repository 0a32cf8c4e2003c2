/* The public vocabulary functions of slm.h, forwarding to the model's vocab. */
#include "tokenizer/vocab_impl.h"
#include "util/err.h"

slm_token slm_token_bos(const slm_model *model) { return slm_vocab_bos(slm_model_vocab(model)); }

slm_token slm_token_eos(const slm_model *model) { return slm_vocab_eos(slm_model_vocab(model)); }

bool slm_token_is_eog(const slm_model *model, slm_token token) {
    return slm_vocab_is_eog(slm_model_vocab(model), token);
}

bool slm_token_is_control(const slm_model *model, slm_token token) {
    return slm_vocab_is_control(slm_model_vocab(model), token);
}

bool slm_vocab_add_bos(const slm_model *model) { return slm_vocab_get_add_bos(slm_model_vocab(model)); }

int slm_tokenize(const slm_model *model, const char *text, size_t len, bool add_special, bool parse_special,
                 slm_token *out, int cap, char *err, size_t err_len) {
    return slm_vocab_tokenize(slm_model_vocab(model), text, len, add_special, parse_special, out, cap, err, err_len);
}

int slm_token_to_piece(const slm_model *model, slm_token token, bool render_special, char *buf, int cap) {
    return slm_vocab_token_to_piece(slm_model_vocab(model), token, render_special, buf, cap);
}

int slm_detokenize(const slm_model *model, const slm_token *tokens, int n, bool remove_special, bool render_special,
                   char *buf, int cap) {
    return slm_vocab_detokenize(slm_model_vocab(model), tokens, n, remove_special, render_special, buf, cap);
}

int slm_tokenize_plain(const slm_model *model, const char *text, size_t len, bool add_special, bool parse_special,
                       const slm_text_span *plain, size_t n_plain, slm_token *out, int cap, char *err, size_t err_len) {
    return slm_vocab_tokenize_plain(slm_model_vocab(model), text, len, add_special, parse_special, plain, n_plain, out,
                                    cap, err, err_len);
}

size_t slm_tokenize_max_bytes(const slm_model *model, bool parse_special, int n_tokens) {
    return slm_vocab_max_text_bytes(slm_model_vocab(model), parse_special, n_tokens);
}
