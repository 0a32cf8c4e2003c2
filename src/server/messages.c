/* Chat messages and embedding inputs, parsed the same way for the OpenAI and Ollama formats. */
#include "messages.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calls.h"

/* Message content: a string, or an array of {type:"text", text} parts (joined). */
static bool message_content(json_t *content, int idx, char **out, srv_fail *f) {
    char field[64];
    snprintf(field, sizeof field, "messages[%d].content", idx);
    *out = NULL;
    if (json_is_string(content)) {
        *out = strdup(json_string_value(content));
        return *out ? true : srv_failf(f, 500, NULL, field, "out of memory");
    }
    if (json_is_null(content) || !content) {
        *out = strdup("");
        return *out ? true : srv_failf(f, 500, NULL, field, "out of memory");
    }
    if (!json_is_array(content)) return srv_failf(f, 400, NULL, field, "'%s' must be a string or an array of text parts", field);
    size_t i;
    json_t *part;
    slm_buf joined = {0};
    json_array_foreach(content, i, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 || !json_is_string(text)) {
            slm_buf_free(&joined);
            return srv_failf(f, 400, "unsupported", field, "'%s[%zu]': only {\"type\":\"text\",\"text\":...} parts are supported", field, i);
        }
        slm_buf_append(&joined, json_string_value(text), json_string_length(text));
    }
    *out = slm_buf_take(&joined);
    return *out ? true : srv_failf(f, 500, NULL, field, "out of memory");
}

void srv_chat_msgs_free(srv_chat_msgs *m) {
    for (size_t i = 0; i < m->n; i++) free(m->owned[i]);
    free(m->owned);
    free(m->msgs);
}

bool srv_parse_messages(json_t *req, srv_chat_msgs *out, srv_fail *f) {
    memset(out, 0, sizeof *out);
    json_t *msgs = json_object_get(req, "messages");
    if (!json_is_array(msgs)) return srv_failf(f, 400, NULL, "messages", "'messages' must be an array");
    size_t n = json_array_size(msgs);
    if (n > 4096) return srv_failf(f, 400, NULL, "messages", "'messages' has more than 4096 entries");
    out->msgs = calloc(n ? n : 1, sizeof *out->msgs);
    out->owned = calloc(n ? n : 1, sizeof *out->owned);
    if (!out->msgs || !out->owned) return srv_failf(f, 500, NULL, "messages", "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        char field[64];
        snprintf(field, sizeof field, "messages[%zu]", i);
        if (!json_is_object(m)) return srv_failf(f, 400, NULL, field, "'%s' must be an object", field);
        json_t *role = json_object_get(m, "role");
        const char *r = json_is_string(role) ? json_string_value(role) : NULL;
        snprintf(field, sizeof field, "messages[%zu].role", i);
        if (!r) return srv_failf(f, 400, NULL, field, "'%s' must be a string", field);
        if (strcmp(r, "developer") == 0) r = "system";
        if (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0)
            return srv_failf(f, 400, "unsupported", field, "'%s' must be system, user or assistant (got '%.40s')", field, r);
        json_t *images = json_object_get(m, "images");
        if (images && !json_is_null(images) && !(json_is_array(images) && json_array_size(images) == 0)) {
            snprintf(field, sizeof field, "messages[%zu].images", i);
            return srv_failf(f, 400, "unsupported", field, "'%s': images are not supported", field);
        }
        json_t *calls = json_object_get(m, "tool_calls");
        if (calls && !json_is_null(calls) && !(json_is_array(calls) && json_array_size(calls) == 0)) {
            snprintf(field, sizeof field, "messages[%zu].tool_calls", i);
            return srv_failf(f, 400, "unsupported", field, "'%s': tool calls are not supported", field);
        }
        if (!message_content(json_object_get(m, "content"), (int)i, &out->owned[i], f)) return false;
        out->msgs[i].role = r;
        out->msgs[i].content = out->owned[i];
        out->n = i + 1;
    }
    return true;
}

bool srv_build_embed_request(const srv_model *M, json_t *inputs, const char *field, bool allow_tokens, slm_request **out, srv_fail *f) {
    *out = NULL;
    json_t *list = inputs;
    bool single = json_is_string(inputs) ||
                  (allow_tokens && json_is_array(inputs) && json_array_size(inputs) > 0 && json_is_integer(json_array_get(inputs, 0)));
    if (!single && !json_is_array(inputs))
        return srv_failf(f, 400, NULL, field, "'%s' must be a string or an array of strings%s", field,
                         allow_tokens ? " or token ids" : "");
    size_t n = single ? 1 : json_array_size(list);
    if (n == 0) return srv_failf(f, 400, NULL, field, "'%s' is empty", field);
    if (n > 512) return srv_failf(f, 400, NULL, field, "'%s' has more than 512 inputs", field);
    slm_request *r = slm_request_new(SLM_REQ_EMBED);
    if (!r) return srv_failf(f, 500, NULL, field, "out of memory");
    r->embed_inputs = calloc(n, sizeof *r->embed_inputs);
    r->embed_lens = calloc(n, sizeof *r->embed_lens);
    r->embeddings = calloc(n * (size_t)M->n_embd, sizeof *r->embeddings);
    r->n_embd = M->n_embd;
    if (!r->embed_inputs || !r->embed_lens || !r->embeddings) {
        slm_request_release(r);
        return srv_failf(f, 500, NULL, field, "out of memory");
    }
    int limit = M->n_batch < M->n_ctx ? M->n_batch : M->n_ctx;
    for (size_t i = 0; i < n; i++) {
        json_t *e = single ? inputs : json_array_get(list, i);
        char name[64];
        if (single)
            snprintf(name, sizeof name, "%s", field);
        else
            snprintf(name, sizeof name, "%s[%zu]", field, i);
        r->n_embed = (int)i + 1; /* so release frees what exists */
        if (json_is_string(e)) {
            if (!*json_string_value(e)) {
                slm_request_release(r);
                return srv_failf(f, 400, NULL, name, "'%s' is an empty string", name);
            }
            if (!srv_tokenize(M, json_string_value(e), true, false, name, limit, &r->embed_inputs[i], &r->embed_lens[i], f)) {
                slm_request_release(r);
                return false;
            }
        } else if (allow_tokens && json_is_array(e)) { /* also the single flat token list: e is inputs then */
            size_t len = json_array_size(e);
            if (len == 0 || len > (size_t)limit) {
                slm_request_release(r);
                return srv_failf(f, 400, len ? "context_length_exceeded" : NULL, name,
                                 "'%s' must have between 1 and %d tokens (got %zu)", name, limit, len);
            }
            r->embed_inputs[i] = malloc(len * sizeof(slm_token));
            if (!r->embed_inputs[i]) {
                slm_request_release(r);
                return srv_failf(f, 500, NULL, name, "out of memory");
            }
            if (!srv_json_token_ids(e, M->n_vocab, r->embed_inputs[i])) {
                slm_request_release(r);
                return srv_failf(f, 400, NULL, name, "'%s' must hold token ids in [0, %d)", name, M->n_vocab);
            }
            r->embed_lens[i] = (int)len;
        } else {
            slm_request_release(r);
            return srv_failf(f, 400, NULL, name, "'%s' must be a string%s", name, allow_tokens ? " or an array of token ids" : "");
        }
        if (r->embed_lens[i] == 0) {
            slm_request_release(r);
            return srv_failf(f, 400, NULL, name, "'%s' has no tokens", name);
        }
    }
    *out = r;
    return true;
}

