/* Chat templates: recognise the template text stored in a GGUF and render messages with fixed code
 * per family (as llama.cpp's llama_chat_apply_template does), no Jinja engine. */
#ifndef SLM_CHAT_H
#define SLM_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "slm.h"

/* One entry per output format. Several entries are variants of one family (Llama-2, Mistral) that
 * differ only in spacing, BOS placement or trimming, exactly as llama.cpp distinguishes them. */
enum slm_chat_template {
    SLM_CHAT_UNKNOWN = -1,
    SLM_CHAT_CHATML = 0,
    SLM_CHAT_LLAMA3,
    SLM_CHAT_LLAMA2,           /* [INST] without <<SYS>>: a system message is prepended to the user turn */
    SLM_CHAT_LLAMA2_SYS,       /* <<SYS>> block */
    SLM_CHAT_LLAMA2_SYS_BOS,   /* <<SYS>> block, "<s>" before every later [INST] */
    SLM_CHAT_LLAMA2_SYS_STRIP, /* <<SYS>> block, every content trimmed */
    SLM_CHAT_MISTRAL_V1,
    SLM_CHAT_MISTRAL_V3,
    SLM_CHAT_MISTRAL_V3_TEKKEN,
    SLM_CHAT_MISTRAL_V7,
    SLM_CHAT_PHI3,
    SLM_CHAT_PHI4,
    SLM_CHAT_GEMMA,
    SLM_CHAT_ZEPHYR,
    SLM_CHAT_FALCON3,
    SLM_CHAT_MONARCH,
    SLM_CHAT_ORION,
    SLM_CHAT_OPENCHAT,
    SLM_CHAT_VICUNA,
    SLM_CHAT_VICUNA_ORCA,
    SLM_CHAT_DEEPSEEK,
    SLM_CHAT_DEEPSEEK2,
    SLM_CHAT_DEEPSEEK3,
    SLM_CHAT_COMMAND_R,
    SLM_CHAT_CHATGLM3,
    SLM_CHAT_CHATGLM4,
    SLM_CHAT_GLMEDGE,
    SLM_CHAT_MINICPM,
    SLM_CHAT_EXAONE3,
    SLM_CHAT_RWKV_WORLD,
    SLM_CHAT_GRANITE,
    SLM_CHAT_GIGACHAT,
    SLM_CHAT_MEGREZ,
    SLM_CHAT_TINYLLAMA, /* Zephyr layout closed by eos_token </s> (TinyLlama-Chat, zephyr-7b) */
    SLM_CHAT_COUNT
};

/* Family of a Jinja template text (tokenizer.chat_template), or of a bare template name; the same
 * heuristics and precedence as llama.cpp (c392e509). SLM_CHAT_UNKNOWN if not recognised. */
enum slm_chat_template slm_chat_template_detect(const char *template_text);
/* Family by name ("chatml", "llama3", "mistral-v7", ...); SLM_CHAT_UNKNOWN if not a known name. */
enum slm_chat_template slm_chat_template_from_name(const char *name);
/* Name of a family, NULL for SLM_CHAT_UNKNOWN or out of range. */
const char *slm_chat_template_name(enum slm_chat_template t);
/* All names, comma-separated, in enum order (static storage). */
const char *slm_chat_known_names(void);
/* Renders; *out is malloc'd, NUL-terminated. Roles must be "system", "user" or "assistant" and
 * contents non-NULL; anything else is an error naming the message. */
int slm_chat_apply(enum slm_chat_template t, const slm_chat_message *msgs, size_t n_msgs, bool add_generation_prompt,
                   char **out, char *err, size_t err_len);
/* slm_chat_apply that also reports the byte ranges of *out that hold message contents (each
 * message's possibly trimmed content; empty ones omitted): *spans malloc'd, ascending, or NULL.
 * spans / n_spans may be NULL. */
int slm_chat_apply_spans(enum slm_chat_template t, const slm_chat_message *msgs, size_t n_msgs,
                         bool add_generation_prompt, char **out, slm_text_span **spans, size_t *n_spans, char *err,
                         size_t err_len);

#endif
