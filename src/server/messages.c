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
    for (size_t i = 0; i < m->n_owned_total; i++) free(m->owned[i]);
    free(m->owned);
    if (m->prompt.msgs) {
        free(m->parsed);
        slm_tool_prompt_free(&m->prompt);
    } else {
        free(m->msgs);
    }
    for (size_t i = 0; i < m->n_extra; i++) free(m->extra[i]);
    free(m->extra);
    memset(m, 0, sizeof *m);
}

static bool keep(srv_chat_msgs *m, void *p) {
    if (!p) return false;
    if (!slm_grow((void **)&m->extra, &m->cap_extra, m->n_extra + 1, sizeof *m->extra, 8)) {
        free(p);
        return false;
    }
    m->extra[m->n_extra++] = p;
    return true;
}

/* An assistant message's "tool_calls": ids remembered for the tool results that follow. */
static bool parse_calls(srv_chat_msgs *out, json_t *calls, size_t i, srv_api api, slm_tool_message *tm,
                        const char ***ids, const char ***id_names, size_t *n_ids, size_t *cap_ids, srv_fail *f) {
    char field[96];
    snprintf(field, sizeof field, "messages[%zu].tool_calls", i);
    if (!json_is_array(calls)) return srv_failf(f, 400, NULL, field, "'%s' must be an array", field);
    size_t n = json_array_size(calls);
    if (n > SRV_MAX_TOOLS) return srv_failf(f, 400, NULL, field, "'%s' has more than %d calls", field, SRV_MAX_TOOLS);
    slm_tool_call *list = calloc(n ? n : 1, sizeof *list);
    if (!keep(out, list)) return srv_failf(f, 500, NULL, field, "out of memory");
    for (size_t k = 0; k < n; k++) {
        json_t *c = json_array_get(calls, k);
        snprintf(field, sizeof field, "messages[%zu].tool_calls[%zu]", i, k);
        if (!json_is_object(c)) return srv_failf(f, 400, NULL, field, "'%s' must be an object", field);
        json_t *id = json_object_get(c, "id"), *type = json_object_get(c, "type"), *fn = json_object_get(c, "function");
        if (type && !json_is_null(type) && !(json_is_string(type) && strcmp(json_string_value(type), "function") == 0)) {
            snprintf(field, sizeof field, "messages[%zu].tool_calls[%zu].type", i, k);
            return srv_failf(f, 400, "unsupported", field, "'%s' must be \"function\"", field);
        }
        if (api == SRV_API_OPENAI && !json_is_string(id)) {
            snprintf(field, sizeof field, "messages[%zu].tool_calls[%zu].id", i, k);
            return srv_failf(f, 400, NULL, field, "'%s' must be a string", field);
        }
        json_t *name = json_is_object(fn) ? json_object_get(fn, "name") : NULL;
        if (!json_is_string(name) || !*json_string_value(name) || json_string_length(name) > 64) {
            snprintf(field, sizeof field, "messages[%zu].tool_calls[%zu].function.name", i, k);
            return srv_failf(f, 400, NULL, field, "'%s' must be a function name (1 to 64 characters)", field);
        }
        json_t *args = json_object_get(fn, "arguments");
        snprintf(field, sizeof field, "messages[%zu].tool_calls[%zu].function.arguments", i, k);
        json_t *parsed = NULL;
        if (json_is_string(args)) {
            json_error_t je;
            parsed = json_loads(json_string_value(args), 0, &je);
        } else if (json_is_object(args) || !args || json_is_null(args)) {
            parsed = args && json_is_object(args) ? json_incref(args) : json_object();
        }
        if (!json_is_object(parsed)) {
            json_decref(parsed);
            return srv_failf(f, 400, NULL, field, "'%s' must be a JSON object%s", field,
                             api == SRV_API_OPENAI ? " encoded as a string" : "");
        }
        char *text = json_dumps(parsed, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(parsed);
        if (!keep(out, text)) return srv_failf(f, 500, NULL, field, "out of memory");
        list[k].name = (char *)json_string_value(name);
        list[k].arguments = text;
        list[k].id = json_is_string(id) ? (char *)json_string_value(id) : NULL;
        if (list[k].id) {
            size_t cap_names = *cap_ids; /* both lists grow together */
            if (!slm_grow((void **)ids, cap_ids, *n_ids + 1, sizeof **ids, 8) ||
                !slm_grow((void **)id_names, &cap_names, *cap_ids, sizeof **id_names, 8))
                return srv_failf(f, 500, NULL, field, "out of memory");
            (*ids)[*n_ids] = list[k].id;
            (*id_names)[(*n_ids)++] = list[k].name;
        }
    }
    tm->calls = list;
    tm->n_calls = n;
    return true;
}

bool srv_parse_messages(json_t *req, srv_api api, const srv_tools *tools, srv_chat_msgs *out, srv_fail *f) {
    memset(out, 0, sizeof *out);
    json_t *msgs = json_object_get(req, "messages");
    if (!json_is_array(msgs)) return srv_failf(f, 400, NULL, "messages", "'messages' must be an array");
    size_t n = json_array_size(msgs);
    if (n > 4096) return srv_failf(f, 400, NULL, "messages", "'messages' has more than 4096 entries");
    out->msgs = calloc(n ? n : 1, sizeof *out->msgs);
    out->owned = calloc(n ? n : 1, sizeof *out->owned);
    slm_tool_message *tm = calloc(n ? n : 1, sizeof *tm);
    if (!out->msgs || !out->owned || !keep(out, tm)) return srv_failf(f, 500, NULL, "messages", "out of memory");
    const char **ids = NULL, **id_names = NULL; /* earlier calls' ids and their function names */
    size_t n_ids = 0, cap_ids = 0;
    bool uses_tools = tools && srv_tools_active(tools);
    bool ok = false;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(msgs, i);
        char field[64];
        snprintf(field, sizeof field, "messages[%zu]", i);
        if (!json_is_object(m)) {
            srv_failf(f, 400, NULL, field, "'%s' must be an object", field);
            goto out;
        }
        json_t *role = json_object_get(m, "role");
        const char *r = json_is_string(role) ? json_string_value(role) : NULL;
        snprintf(field, sizeof field, "messages[%zu].role", i);
        if (!r) {
            srv_failf(f, 400, NULL, field, "'%s' must be a string", field);
            goto out;
        }
        if (strcmp(r, "developer") == 0) r = "system";
        if (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0 && strcmp(r, "tool") != 0) {
            srv_failf(f, 400, "unsupported", field, "'%s' must be system, user, assistant or tool (got '%.40s')", field, r);
            goto out;
        }
        json_t *images = json_object_get(m, "images");
        if (images && !json_is_null(images) && !(json_is_array(images) && json_array_size(images) == 0)) {
            snprintf(field, sizeof field, "messages[%zu].images", i);
            srv_failf(f, 400, "unsupported", field, "'%s': images are not supported", field);
            goto out;
        }
        if (!message_content(json_object_get(m, "content"), (int)i, &out->owned[i], f)) goto out;
        out->n_owned_total = i + 1;
        tm[i].role = r;
        tm[i].content = out->owned[i];
        json_t *calls = json_object_get(m, "tool_calls");
        if (calls && !json_is_null(calls) && !(json_is_array(calls) && json_array_size(calls) == 0)) {
            if (strcmp(r, "assistant") != 0) {
                snprintf(field, sizeof field, "messages[%zu].tool_calls", i);
                srv_failf(f, 400, NULL, field, "'%s': only assistant messages carry tool calls", field);
                goto out;
            }
            if (!parse_calls(out, calls, i, api, &tm[i], &ids, &id_names, &n_ids, &cap_ids, f)) goto out;
            uses_tools = true;
        }
        if (strcmp(r, "tool") == 0) {
            uses_tools = true;
            json_t *id = json_object_get(m, "tool_call_id");
            snprintf(field, sizeof field, "messages[%zu].tool_call_id", i);
            if ((id && !json_is_null(id)) || api == SRV_API_OPENAI) {
                if (!json_is_string(id)) {
                    srv_failf(f, 400, NULL, field, "'%s' must be the id of an earlier tool call", field);
                    goto out;
                }
                size_t k = 0;
                while (k < n_ids && strcmp(ids[k], json_string_value(id)) != 0) k++;
                if (k == n_ids) {
                    srv_failf(f, 400, "unknown_tool_call_id", field, "'%s' '%.64s' matches no tool call of an earlier assistant message",
                              field, json_string_value(id));
                    goto out;
                }
                tm[i].tool_name = id_names[k];
            } else {
                json_t *tn = json_object_get(m, "tool_name");
                if (json_is_string(tn)) tm[i].tool_name = json_string_value(tn);
            }
        }
        out->msgs[i].role = r;
        out->msgs[i].content = out->owned[i];
        out->n = i + 1;
    }
    if (uses_tools) {
        char err[256];
        bool listed = tools && srv_tools_active(tools);
        if (slm_tool_prompt_build(tools ? tools->format : SLM_TOOL_FORMAT_GENERIC, listed ? tools->tools : NULL,
                                  listed ? tools->n : 0, tm, n, &out->prompt, err, sizeof err) != 0) {
            srv_failf(f, 400, NULL, "messages", "cannot write the conversation with its tool calls: %s", err);
            goto out;
        }
        out->parsed = out->msgs;
        out->msgs = out->prompt.msgs;
        out->n = out->prompt.n;
    }
    ok = true;
out:
    free(ids);
    free(id_names);
    return ok;
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

