/* libFuzzer target for the Responses API's request path (src/server/api_responses.c), without
 * sockets or a store. Input: a request body, optionally "\0" and a stored conversation (the items
 * column of a stored response, as previous_response_id loads it). Named fuzz_http_* so that CMake
 * builds it with the server sources.
 *
 * The body goes through srv_parse_body and srv_responses_chat_request (input items → messages,
 * function tools → chat tools, text.format → response_format); the chat request it yields then
 * through the chat steps the handler runs (srv_parse_openai_sampling with its constraint, the
 * tools and their grammar, srv_parse_messages, the chat template, tokenizing). Checks: a refusal
 * has a 4xx/5xx status and one line naming a parameter; an accepted request has a non-empty
 * messages array whose roles are system/user/assistant/tool, at most 4096 + 1 of them, and every
 * chat step either accepts it or refuses it the same way; nothing leaks.
 *
 * The model is a vocab-only GGUF: $SLM_FUZZ_VOCAB, else smollm2-135m-vocab.gguf in
 * $SLM_TEST_MODELS (default <source>/build/testdata). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_server.h"
#include "server/calls.h"
#include "server/fields.h"
#include "server/messages.h"
#include "server/params.h"
#include "server/tools.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
json_t *srv_responses_chat_request(json_t *req, json_t *stored, srv_fail *f); /* api_responses.c */

static srv_server server;

static void setup(void) { fuzz_server_setup(&server, "fuzz_http_responses"); }

static void check_fail(const srv_fail *f) { fuzz_check_fail(f); }

/* The accepted request's messages are what a chat request may hold. */
static void check_messages(json_t *chat) {
    json_t *msgs = json_object_get(chat, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0 || json_array_size(msgs) > 4097) __builtin_trap();
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role) __builtin_trap();
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "tool")) __builtin_trap();
    }
}

static void run_chat(srv_conn *c, json_t *chat) {
    const srv_model *M = &server.models[0];
    srv_fail f = {0};
    slm_request *r = slm_request_new(SLM_REQ_GENERATE);
    if (!r) return;
    srv_chat_msgs msgs = {0};
    srv_tools tools = {0};
    bool ok = srv_parse_openai_sampling(c, M, chat, true, &r->gen, &f) && srv_parse_tools(M, chat, &tools, &f) &&
              srv_tools_constrain(c, M, &tools, &r->gen, &f) && srv_parse_messages(chat, SRV_API_OPENAI, &tools, &msgs, &f);
    if (ok && msgs.n > 0)
        ok = srv_chat_tokenize(M, msgs.msgs, msgs.n, true, "input", M->n_ctx - 1, &r->prompt, &r->n_prompt, &f);
    if (!ok) check_fail(&f);
    srv_chat_msgs_free(&msgs);
    srv_tools_free(&tools);
    slm_request_release(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    if (size > 65536) return 0;
    const uint8_t *nul = memchr(data, 0, size);
    size_t body_len = nul ? (size_t)(nul - data) : size;
    srv_conn c = {.srv = &server, .api = SRV_API_OPENAI};
    if (!slm_buf_append(&c.body, (const char *)data, body_len) && body_len) return 0;
    json_t *stored = NULL;
    if (nul) {
        json_error_t je;
        stored = json_loadb((const char *)nul + 1, size - body_len - 1, 0, &je);
        if (!json_is_array(stored)) {
            json_decref(stored);
            stored = NULL;
        }
    }
    srv_fail f = {0};
    json_t *req = srv_parse_body(&c, &f);
    if (!req) {
        check_fail(&f);
    } else {
        json_t *chat = srv_responses_chat_request(req, stored, &f);
        if (!chat) {
            check_fail(&f);
            if (!f.param[0]) __builtin_trap(); /* every refusal names its field */
        } else {
            check_messages(chat);
            run_chat(&c, chat);
            json_decref(chat);
        }
        json_decref(req);
    }
    json_decref(stored);
    slm_buf_free(&c.body);
    return 0;
}
