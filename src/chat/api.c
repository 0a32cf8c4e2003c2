/* Public chat-template entry points: pick the family (by name or from the model's template text)
 * and render. Never falls back silently to a default family. */
#include <string.h>

#include "chat/chat.h"
#include "util/err.h"

const char *slm_chat_template_names(void) { return slm_chat_known_names(); }

int slm_chat_render(const slm_model *model, const char *template_name, const slm_chat_message *msgs, size_t n_msgs,
                    bool add_generation_prompt, char **out, char *err, size_t err_len) {
    if (out) *out = NULL;
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
    return slm_chat_apply(t, msgs, n_msgs, add_generation_prompt, out, err, err_len);
}
