/* Public chat-template entry points: pick the family (by name or from the model's template text)
 * and render. Never falls back silently to a default family. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "tokenizer/vocab.h"
#include "util/err.h"

const char *slm_chat_template_names(void) { return slm_chat_known_names(); }

int slm_chat_render(const slm_model *model, const char *template_name, const slm_chat_message *msgs, size_t n_msgs,
                    bool add_generation_prompt, char **out, char *err, size_t err_len) {
    return slm_chat_render_spans(model, template_name, msgs, n_msgs, add_generation_prompt, out, NULL, NULL, err,
                                 err_len);
}

int slm_chat_render_spans(const slm_model *model, const char *template_name, const slm_chat_message *msgs,
                          size_t n_msgs, bool add_generation_prompt, char **out, slm_text_span **spans, size_t *n_spans,
                          char *err, size_t err_len) {
    if (out) *out = NULL;
    if (spans) *spans = NULL;
    if (n_spans) *n_spans = 0;
    enum slm_chat_template t;
    if (template_name) {
        t = slm_chat_template_from_name(template_name);
        if (t == SLM_CHAT_UNKNOWN)
            return slm_err(err, err_len, "chat template '%.100s%s' is not a known name; known templates: %s",
                           template_name, strlen(template_name) > 100 ? "..." : "", slm_chat_known_names());
    } else {
        if (!model)
            return slm_err(err, err_len, "chat: no model and no template name; known templates: %s",
                           slm_chat_known_names());
        const char *text = slm_model_meta(model, "tokenizer.chat_template");
        if (!text || !*text)
            return slm_err(err, err_len,
                           "model has no chat template (tokenizer.chat_template); choose one of: %s",
                           slm_chat_known_names());
        t = slm_chat_template_detect(text);
        if (t == SLM_CHAT_UNKNOWN)
            return slm_err(err, err_len,
                           "the model's chat template (tokenizer.chat_template) is not recognised; choose one of: %s",
                           slm_chat_known_names());
    }
    return slm_chat_apply_spans(t, msgs, n_msgs, add_generation_prompt, out, spans, n_spans, err, err_len);
}

int slm_chat_tokenize(const slm_model *model, const char *template_name, const slm_chat_message *msgs, size_t n_msgs,
                      bool add_generation_prompt, bool add_special, slm_token **out, int *n_out, char **rendered_out,
                      char *err, size_t err_len) {
    if (rendered_out) *rendered_out = NULL;
    if (!out || !n_out) return slm_err(err, err_len, "chat: no output pointer");
    *out = NULL;
    *n_out = 0;
    if (!model) return slm_err(err, err_len, "chat: tokenizing needs a model");
    char *text = NULL;
    slm_text_span *spans = NULL;
    size_t n_spans = 0;
    if (slm_chat_render_spans(model, template_name, msgs, n_msgs, add_generation_prompt, &text, &spans, &n_spans, err,
                              err_len))
        return -1;
    size_t len = strlen(text);
    /* one token per byte plus BOS/EOS always suffices; ask again with the exact count otherwise */
    int cap = len < (size_t)INT_MAX - 16 ? (int)len + 16 : INT_MAX;
    if (cap > 1 << 20) cap = 1 << 20;
    slm_token *ids = NULL;
    int n = -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        ids = malloc(sizeof *ids * (size_t)cap);
        if (!ids) {
            n = slm_err(err, err_len, "chat: out of memory for %d tokens", cap);
            break;
        }
        n = slm_tokenize_plain(model, text, len, add_special, true, spans, n_spans, ids, cap, err, err_len);
        if (n >= 0 || n == SLM_TOKENIZE_ERROR || -n <= cap) break;
        cap = -n;
        free(ids);
        ids = NULL;
    }
    free(spans);
    if (n < 0) {
        if (n != SLM_TOKENIZE_ERROR && ids) slm_err(err, err_len, "chat: tokenizer size mismatch");
        free(ids);
        free(text);
        return -1;
    }
    *out = ids;
    *n_out = n;
    if (rendered_out) *rendered_out = text;
    else free(text);
    return 0;
}
