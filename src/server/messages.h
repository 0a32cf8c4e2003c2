/* Chat messages and embedding inputs as OpenAI and Ollama requests both carry them. */
#ifndef SLM_SERVER_MESSAGES_H
#define SLM_SERVER_MESSAGES_H

#include <jansson.h>
#include <stdbool.h>

#include "fields.h"
#include "state.h"

/* Chat messages read from a request (OpenAI and Ollama share the shape). */
typedef struct srv_chat_msgs {
    slm_chat_message *msgs;
    char **owned;
    size_t n;
} srv_chat_msgs;
/* "messages": roles system/developer/user/assistant, content a string or text parts; images and
 * tool calls are refused. */
bool srv_parse_messages(json_t *req, srv_chat_msgs *out, srv_fail *f);
void srv_chat_msgs_free(srv_chat_msgs *m);
/* Tokenizes embedding inputs (a string or an array of strings; token arrays too when allow_tokens)
 * into an embed request, each input at most one batch. */
bool srv_build_embed_request(const srv_model *m, json_t *inputs, const char *field, bool allow_tokens, slm_request **out,
                             srv_fail *f);

#endif
