/* Chat templates: recognise the template text stored in a GGUF and render messages with fixed code
 * per family (as llama.cpp's llama_chat_apply_template does), no Jinja engine. */
#ifndef SLM_CHAT_H
#define SLM_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "slm.h"

enum slm_chat_template {
    SLM_CHAT_UNKNOWN = -1,
    SLM_CHAT_CHATML = 0,
    SLM_CHAT_LLAMA3,
    SLM_CHAT_LLAMA2,
    SLM_CHAT_PHI3,
    SLM_CHAT_GEMMA,
    SLM_CHAT_MISTRAL,
    SLM_CHAT_ZEPHYR,
    SLM_CHAT_COUNT
};

/* Family of a Jinja template text (tokenizer.chat_template); SLM_CHAT_UNKNOWN if not recognised. */
enum slm_chat_template slm_chat_template_detect(const char *template_text);
/* Family by name ("chatml", "llama3", ...); SLM_CHAT_UNKNOWN if not a known name. */
enum slm_chat_template slm_chat_template_from_name(const char *name);
const char *slm_chat_template_name(enum slm_chat_template t);
/* Renders; *out is malloc'd, NUL-terminated. */
int slm_chat_apply(enum slm_chat_template t, const slm_chat_message *msgs, size_t n_msgs, bool add_generation_prompt,
                   char **out, char *err, size_t err_len);

#endif
