/* Chat messages and embedding inputs as OpenAI and Ollama requests both carry them. */
#ifndef SLM_SERVER_MESSAGES_H
#define SLM_SERVER_MESSAGES_H

#include <jansson.h>
#include <stdbool.h>

#include "fields.h"
#include "state.h"
#include "tools.h"

/* Chat messages read from a request (OpenAI and Ollama share the shape). */
typedef struct srv_chat_msgs {
    slm_chat_message *msgs; /* what the template renders (prompt.msgs when tools are involved) */
    char **owned;
    size_t n;
    size_t n_owned_total;   /* entries of owned to free */
    slm_chat_message *parsed; /* the messages as parsed, when msgs is prompt.msgs */
    slm_tool_prompt prompt; /* tools described, calls and results written in the model's format */
    void **extra;           /* other allocations (call lists, argument texts) */
    size_t n_extra, cap_extra;
} srv_chat_msgs;
/* "messages": roles system/developer/user/assistant/tool, content a string or text parts; an
 * assistant's "tool_calls" (arguments a JSON string, or an object for Ollama) and "tool" results
 * (OpenAI: "tool_call_id" must name an earlier call) are written in the tools' format, and the
 * active tools are described in the system message. Images are refused. */
bool srv_parse_messages(json_t *req, srv_api api, const srv_tools *tools, srv_chat_msgs *out, srv_fail *f);
void srv_chat_msgs_free(srv_chat_msgs *m);
/* Tokenizes embedding inputs (a string or an array of strings; token arrays too when allow_tokens)
 * into an embed request, each input at most one batch. */
bool srv_build_embed_request(const srv_model *m, json_t *inputs, const char *field, bool allow_tokens, slm_request **out,
                             srv_fail *f);

#endif
