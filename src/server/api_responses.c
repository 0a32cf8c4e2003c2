/* The OpenAI Responses API: POST /v1/responses (JSON or server-sent events), GET and DELETE
 * /v1/responses/{id}.
 *
 * A request is turned into the chat request it means (input items → messages, function tools →
 * chat tools, text.format → response_format, max_output_tokens → max_tokens) and goes through the
 * chat machinery: the same sampling fields, tool grammar, template rendering, gate and engine. The
 * reply's text is split into output items (a message, function calls) by the tool parser, as it
 * streams or at the end. Stored responses (store, default true) keep their conversation as input
 * items in the state store (slm_store_responses.h), so previous_response_id continues it; a key
 * sees only the responses it created. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calls.h"
#include "handlers.h"
#include "messages.h"
#include "params.h"
#include "replies.h"
#include "slm_store_responses.h"
#include "tools.h"

#define RESP_KEEP_SECONDS (30 * 86400) /* stored responses older than this are deleted */
#define RESP_MAX_ITEMS 4096 /* the conversation's items, stored ones included (as chat messages) */

/* ---------- ids and the store ---------- */

static void new_id(srv_server *s, const char *prefix, char *out, size_t cap) {
    snprintf(out, cap, "%s_%016llx%016llx", prefix, (unsigned long long)srv_random_seed(s),
             (unsigned long long)srv_random_seed(s));
}

/* Ids this server hands out and may look up: letters, digits, '_' and '-'. */
static bool plausible_id(const char *id) {
    size_t n = strlen(id);
    if (n == 0 || n >= SLM_RESPONSE_ID_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

static slm_responses_db *open_db(srv_server *s, srv_fail *f) {
    if (!s->store) {
        srv_failf(f, 400, "store_unavailable", "store", "this server keeps no state (started without a data directory)");
        return NULL;
    }
    slm_responses_db *db = NULL;
    char err[512];
    if (slm_responses_open(slm_store_dir(s->store), &db, err, sizeof err) != 0) {
        srv_failf(f, 500, NULL, NULL, "%s", err);
        return NULL;
    }
    return db;
}

/* ---------- input items → chat messages ---------- */

static bool item_fail(srv_fail *f, const char *where, size_t i, const char *sub, const char *fmt, const char *detail) {
    char field[96], msg[300];
    snprintf(field, sizeof field, "%s[%zu]%s%s", where, i, sub[0] ? "." : "", sub);
    snprintf(msg, sizeof msg, fmt, field, detail ? detail : "");
    return srv_failf(f, 400, NULL, field, "%s", msg);
}

/* Text of a content value: a string, or parts of type input_text / output_text / text. */
static bool content_text(json_t *content, const char *where, size_t i, slm_buf *out, srv_fail *f) {
    if (json_is_string(content)) return slm_buf_append(out, json_string_value(content), json_string_length(content)) || srv_failf(f, 500, NULL, NULL, "out of memory");
    if (!json_is_array(content)) return item_fail(f, where, i, "content", "'%s' must be a string or an array of text parts%s", NULL);
    size_t k;
    json_t *part;
    json_array_foreach(content, k, part) {
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        const char *t = json_is_string(type) ? json_string_value(type) : "";
        if (strcmp(t, "input_text") != 0 && strcmp(t, "output_text") != 0 && strcmp(t, "text") != 0) {
            char sub[48];
            snprintf(sub, sizeof sub, "content[%zu].type", k);
            return item_fail(f, where, i, sub, "'%s' must be input_text or output_text (images and files are not served; got '%.40s')", t);
        }
        if (!json_is_string(text)) {
            char sub[48];
            snprintf(sub, sizeof sub, "content[%zu].text", k);
            return item_fail(f, where, i, sub, "'%s' must be a string%s", NULL);
        }
        slm_buf_append(out, json_string_value(text), json_string_length(text));
    }
    return !out->oom || srv_failf(f, 500, NULL, NULL, "out of memory");
}

/* Checks one input item and returns it in the stored form (messages with content parts, calls and
 * their outputs with strings), or NULL with f set. `calls` holds the call ids seen so far. */
static json_t *normalize_item(json_t *it, const char *where, size_t i, json_t *calls, srv_fail *f) {
    if (!json_is_object(it)) {
        item_fail(f, where, i, "", "'%s' must be an object%s", NULL);
        return NULL;
    }
    json_t *type = json_object_get(it, "type");
    const char *t = json_is_string(type) ? json_string_value(type) : NULL;
    if (type && !json_is_null(type) && !t) {
        item_fail(f, where, i, "type", "'%s' must be a string%s", NULL);
        return NULL;
    }
    if (!t || strcmp(t, "message") == 0) {
        json_t *role = json_object_get(it, "role");
        const char *r = json_is_string(role) ? json_string_value(role) : "";
        bool assistant = strcmp(r, "assistant") == 0;
        if (!assistant && strcmp(r, "user") != 0 && strcmp(r, "system") != 0 && strcmp(r, "developer") != 0) {
            item_fail(f, where, i, "role", "'%s' must be user, assistant, system or developer (got '%.40s')", r);
            return NULL;
        }
        slm_buf text = {0};
        if (!content_text(json_object_get(it, "content"), where, i, &text, f)) {
            slm_buf_free(&text);
            return NULL;
        }
        json_t *part = assistant ? json_pack("{s:s, s:s%, s:[]}", "type", "output_text", "text", text.s ? text.s : "", text.len, "annotations")
                                 : json_pack("{s:s, s:s%}", "type", "input_text", "text", text.s ? text.s : "", text.len);
        slm_buf_free(&text);
        json_t *out = json_pack("{s:s, s:s, s:[o]}", "type", "message", "role", r, "content", part);
        json_t *id = json_object_get(it, "id");
        if (out && json_is_string(id)) json_object_set(out, "id", id);
        return out;
    }
    if (strcmp(t, "function_call") == 0) {
        json_t *call_id = json_object_get(it, "call_id"), *name = json_object_get(it, "name"), *args = json_object_get(it, "arguments");
        if (!json_is_string(call_id) || !json_string_length(call_id) || json_string_length(call_id) > 128) {
            item_fail(f, where, i, "call_id", "'%s' must be a non-empty string of at most 128 bytes%s", NULL);
            return NULL;
        }
        if (!json_is_string(name) || !json_string_length(name) || json_string_length(name) > 64) {
            item_fail(f, where, i, "name", "'%s' must be a function name (1 to 64 characters)%s", NULL);
            return NULL;
        }
        json_error_t je;
        json_t *parsed = json_is_string(args) ? json_loads(json_string_value(args), 0, &je) : NULL;
        bool object = json_is_object(parsed);
        json_decref(parsed);
        if (!object) {
            item_fail(f, where, i, "arguments", "'%s' must be a JSON object encoded as a string%s", NULL);
            return NULL;
        }
        json_array_append(calls, call_id);
        json_t *out = json_pack("{s:s, s:O, s:O, s:O}", "type", "function_call", "call_id", call_id, "name", name, "arguments", args);
        json_t *id = json_object_get(it, "id");
        if (out && json_is_string(id)) json_object_set(out, "id", id);
        return out;
    }
    if (strcmp(t, "function_call_output") == 0) {
        json_t *call_id = json_object_get(it, "call_id"), *output = json_object_get(it, "output");
        if (!json_is_string(call_id)) {
            item_fail(f, where, i, "call_id", "'%s' must be the call_id of an earlier function_call%s", NULL);
            return NULL;
        }
        size_t k;
        json_t *seen;
        bool found = false;
        json_array_foreach(calls, k, seen) found = found || json_equal(seen, call_id);
        if (!found) {
            item_fail(f, where, i, "call_id", "'%s' '%.64s' matches no earlier function_call item", json_string_value(call_id));
            return NULL;
        }
        slm_buf text = {0};
        if (!json_is_string(output) && !json_is_array(output)) {
            item_fail(f, where, i, "output", "'%s' must be a string or an array of text parts%s", NULL);
            return NULL;
        }
        if (!content_text(output, where, i, &text, f)) {
            slm_buf_free(&text);
            return NULL;
        }
        json_t *out = json_pack("{s:s, s:O, s:s%}", "type", "function_call_output", "call_id", call_id, "output",
                                text.s ? text.s : "", text.len);
        slm_buf_free(&text);
        json_t *id = json_object_get(it, "id");
        if (out && json_is_string(id)) json_object_set(out, "id", id);
        return out;
    }
    item_fail(f, where, i, "type", "'%s' must be message, function_call or function_call_output (got '%.40s')", t);
    return NULL;
}

static const char *str_of(json_t *v) { return json_is_string(v) ? json_string_value(v) : ""; }

/* The conversation's items (already normalized) as chat messages after the instructions. */
static json_t *items_to_messages(json_t *items, const char *instructions) {
    json_t *msgs = json_array();
    if (instructions && *instructions) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", instructions));
    json_t *last_assistant = NULL; /* function calls attach to the assistant turn right before them */
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        const char *t = str_of(json_object_get(it, "type"));
        if (strcmp(t, "message") == 0) {
            const char *role = str_of(json_object_get(it, "role"));
            json_t *part = json_array_get(json_object_get(it, "content"), 0);
            json_t *m = json_pack("{s:s, s:O}", "role", role, "content", json_object_get(part, "text"));
            json_array_append_new(msgs, m);
            last_assistant = strcmp(role, "assistant") == 0 ? m : NULL;
        } else if (strcmp(t, "function_call") == 0) {
            if (!last_assistant) {
                last_assistant = json_pack("{s:s, s:n}", "role", "assistant", "content");
                json_array_append_new(msgs, last_assistant);
            }
            json_t *list = json_object_get(last_assistant, "tool_calls");
            if (!list) {
                list = json_array();
                json_object_set_new(last_assistant, "tool_calls", list);
            }
            json_array_append_new(list, json_pack("{s:O, s:s, s:{s:O, s:O}}", "id", json_object_get(it, "call_id"), "type",
                                                  "function", "function", "name", json_object_get(it, "name"), "arguments",
                                                  json_object_get(it, "arguments")));
        } else {
            json_array_append_new(msgs, json_pack("{s:s, s:O, s:O}", "role", "tool", "tool_call_id", json_object_get(it, "call_id"),
                                                  "content", json_object_get(it, "output")));
            last_assistant = NULL;
        }
    }
    return msgs;
}

/* ---------- the request → the chat request it means ---------- */

typedef struct resp_req {
    json_t *chat;      /* the chat completions request */
    json_t *items;     /* the conversation so far: stored items, then this request's input */
    const char *model, *instructions, *previous_id;
    bool stream, store;
    json_t *tools_echo, *tool_choice_echo, *text_echo, *metadata_echo;
    long long max_output_tokens;
    bool have_max;
    bool parallel;
} resp_req;

static void resp_req_free(resp_req *q) {
    json_decref(q->chat);
    json_decref(q->items);
    json_decref(q->tools_echo);
    json_decref(q->tool_choice_echo);
    json_decref(q->text_echo);
    json_decref(q->metadata_echo);
    memset(q, 0, sizeof *q);
}

/* Parameters named as the chat request calls them, as the Responses API calls them. */
static void responses_param(srv_fail *f) {
    static const struct {
        const char *chat, *resp;
    } map[] = {{"messages", "input"},
               {"response_format", "text.format"},
               {"max_tokens", "max_output_tokens"},
               {"tool_choice.function.name", "tool_choice.name"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        size_t n = strlen(map[i].chat);
        if (strncmp(f->param, map[i].chat, n) == 0) {
            char rest[96];
            snprintf(rest, sizeof rest, "%s", f->param + n);
            snprintf(f->param, sizeof f->param, "%s%s", map[i].resp, strcmp(map[i].chat, "messages") == 0 ? "" : rest);
            return;
        }
    }
}

static bool parse_tools(json_t *req, resp_req *q, srv_fail *f) {
    json_t *tools = json_object_get(req, "tools");
    q->tools_echo = json_array();
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) return srv_failf(f, 400, NULL, "tools", "'tools' must be an array of tool definitions");
        if (json_array_size(tools) > SRV_MAX_TOOLS)
            return srv_failf(f, 400, "too_many_tools", "tools", "'tools' has %zu entries; at most %d are allowed", json_array_size(tools),
                             SRV_MAX_TOOLS);
        json_t *list = json_array();
        json_object_set_new(q->chat, "tools", list);
        size_t i;
        json_t *d;
        json_array_foreach(tools, i, d) {
            json_t *type = json_object_get(d, "type");
            const char *t = json_is_string(type) ? json_string_value(type) : "";
            if (!json_is_object(d) || strcmp(t, "function") != 0)
                return srv_failf(f, 400, "unsupported", "tools", "'tools[%zu].type' must be \"function\" (the only tool type served; got '%.40s')", i, t);
            json_t *fn = json_object();
            const char *keys[] = {"name", "description", "parameters", "strict"};
            for (size_t k = 0; k < 4; k++)
                if (json_object_get(d, keys[k])) json_object_set(fn, keys[k], json_object_get(d, keys[k]));
            json_array_append_new(list, json_pack("{s:s, s:o}", "type", "function", "function", fn));
            json_t *echo = json_deep_copy(d);
            if (!json_object_get(echo, "strict")) json_object_set_new(echo, "strict", json_true());
            json_array_append_new(q->tools_echo, echo);
        }
    }
    json_t *choice = json_object_get(req, "tool_choice");
    q->tool_choice_echo = choice && !json_is_null(choice) ? json_incref(choice) : json_string("auto");
    if (json_is_object(choice)) {
        json_t *type = json_object_get(choice, "type"), *name = json_object_get(choice, "name");
        if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0 || !json_is_string(name))
            return srv_failf(f, 400, NULL, "tool_choice", "'tool_choice' as an object must be {\"type\":\"function\",\"name\":...}");
        json_object_set_new(q->chat, "tool_choice", json_pack("{s:s, s:{s:O}}", "type", "function", "function", "name", name));
    } else if (choice) {
        json_object_set(q->chat, "tool_choice", choice);
    }
    q->parallel = true;
    if (!srv_json_bool(req, "parallel_tool_calls", &q->parallel, f)) return false;
    json_object_set_new(q->chat, "parallel_tool_calls", json_boolean(q->parallel));
    return true;
}

static bool parse_text_format(json_t *req, resp_req *q, srv_fail *f) {
    json_t *text = json_object_get(req, "text");
    if (!text || json_is_null(text)) {
        q->text_echo = json_pack("{s:{s:s}}", "format", "type", "text");
        return true;
    }
    if (!json_is_object(text)) return srv_failf(f, 400, NULL, "text", "'text' must be an object");
    json_t *fmt = json_object_get(text, "format");
    q->text_echo = json_deep_copy(text);
    if (!fmt || json_is_null(fmt)) {
        json_object_set_new(q->text_echo, "format", json_pack("{s:s}", "type", "text"));
        return true;
    }
    json_t *type = json_object_get(fmt, "type");
    const char *t = json_is_string(type) ? json_string_value(type) : NULL;
    if (!json_is_object(fmt) || !t) return srv_failf(f, 400, NULL, "text.format", "'text.format' must be an object with a 'type'");
    if (strcmp(t, "text") == 0) return true;
    if (strcmp(t, "json_object") == 0) {
        json_object_set_new(q->chat, "response_format", json_pack("{s:s}", "type", "json_object"));
        return true;
    }
    if (strcmp(t, "json_schema") != 0)
        return srv_failf(f, 400, NULL, "text.format.type", "'text.format.type' must be text, json_object or json_schema");
    json_t *schema = json_object_get(fmt, "schema"), *name = json_object_get(fmt, "name"), *strict = json_object_get(fmt, "strict");
    if (!json_is_object(schema))
        return srv_failf(f, 400, NULL, "text.format.schema", "'text.format.schema' must be a JSON schema object");
    if (name && !json_is_string(name)) return srv_failf(f, 400, NULL, "text.format.name", "'text.format.name' must be a string");
    if (strict && !json_is_null(strict) && !json_is_boolean(strict))
        return srv_failf(f, 400, NULL, "text.format.strict", "'text.format.strict' must be a boolean");
    json_object_set_new(q->chat, "response_format",
                        json_pack("{s:s, s:{s:O, s:s}}", "type", "json_schema", "json_schema", "schema", schema, "name",
                                  json_is_string(name) ? json_string_value(name) : "response"));
    return true;
}

/* The request's own fields into q (the conversation comes after). */
static bool parse_fields(json_t *req, resp_req *q, srv_fail *f) {
    memset(q, 0, sizeof *q);
    q->chat = json_object();
    q->store = true;
    if (!q->chat) return srv_failf(f, 500, NULL, NULL, "out of memory");
    if (!srv_json_string(req, "model", &q->model, f) || !srv_json_string(req, "instructions", &q->instructions, f) ||
        !srv_json_string(req, "previous_response_id", &q->previous_id, f) || !srv_json_bool(req, "stream", &q->stream, f) ||
        !srv_json_bool(req, "store", &q->store, f) ||
        !srv_json_int(req, "max_output_tokens", 1, 1 << 24, &q->max_output_tokens, &q->have_max, f))
        return false;
    bool background = false;
    if (!srv_json_bool(req, "background", &background, f)) return false;
    if (background) return srv_failf(f, 400, "unsupported", "background", "'background' responses are not served");
    const char *truncation = "disabled";
    if (!srv_json_string(req, "truncation", &truncation, f)) return false;
    if (strcmp(truncation, "disabled") != 0)
        return srv_failf(f, 400, "unsupported", "truncation", "'truncation' must be \"disabled\": input is never truncated");
    json_t *meta = json_object_get(req, "metadata");
    if (meta && !json_is_null(meta) && !json_is_object(meta)) return srv_failf(f, 400, NULL, "metadata", "'metadata' must be an object");
    q->metadata_echo = json_is_object(meta) ? json_incref(meta) : json_object();
    return true;
}

/* The conversation previous_response_id continues (*stored; NULL without one): a response this
 * key stored, else a 400 as OpenAI answers an unknown id. */
static bool load_previous(srv_conn *c, const resp_req *q, json_t **stored, srv_fail *f) {
    *stored = NULL;
    if (!q->previous_id) return true;
    if (!plausible_id(q->previous_id))
        return srv_failf(f, 400, "previous_response_not_found", "previous_response_id", "Previous response with id '%.80s' not found.",
                         q->previous_id);
    slm_responses_db *db = open_db(c->srv, f);
    if (!db) {
        if (f->status == 400)
            srv_failf(f, 400, "previous_response_not_found", "previous_response_id",
                      "Previous response with id '%.80s' not found (this server keeps no state).", q->previous_id);
        return false;
    }
    slm_stored_response prev;
    char err[512];
    int got = slm_responses_get(db, q->previous_id, c->call.principal, &prev, err, sizeof err);
    slm_responses_close(db);
    if (got < 0) return srv_failf(f, 500, NULL, NULL, "%s", err);
    if (got == 0)
        return srv_failf(f, 400, "previous_response_not_found", "previous_response_id", "Previous response with id '%.80s' not found.",
                         q->previous_id);
    json_error_t je;
    *stored = json_loads(prev.items, 0, &je);
    slm_stored_response_clear(&prev);
    if (!json_is_array(*stored)) {
        json_decref(*stored);
        *stored = NULL;
        return srv_failf(f, 500, NULL, NULL, "stored response '%.80s' has unreadable items", q->previous_id);
    }
    return true;
}

/* q->items (the stored conversation, steals `stored`, then the input) and the chat request. */
static bool build_conversation(json_t *req, resp_req *q, json_t *stored, srv_fail *f) {
    q->items = json_array();
    json_t *calls = json_array(); /* call ids of the conversation, for function_call_output */
    bool ok = false;
    size_t i;
    json_t *it;
    if (!q->items || !calls) {
        srv_failf(f, 500, NULL, NULL, "out of memory");
        goto out;
    }
    /* the stored items are checked like input: a damaged row is an error, not a garbled prompt */
    json_array_foreach(stored, i, it) {
        json_t *norm = normalize_item(it, "stored", i, calls, f);
        if (!norm) {
            srv_failf(f, 500, NULL, "previous_response_id", "the stored conversation of '%.80s' is damaged at item %zu",
                      q->previous_id ? q->previous_id : "", i);
            goto out;
        }
        json_array_append_new(q->items, norm);
    }
    json_t *input = json_object_get(req, "input");
    size_t n_input = json_is_array(input) ? json_array_size(input) : 1;
    if (json_array_size(q->items) + n_input > RESP_MAX_ITEMS) {
        srv_failf(f, 400, NULL, "input", "the conversation has more than %d items", RESP_MAX_ITEMS);
        goto out;
    }
    if (json_is_string(input)) {
        json_array_append_new(q->items, json_pack("{s:s, s:s, s:[{s:s, s:O}]}", "type", "message", "role", "user", "content", "type",
                                                  "input_text", "text", input));
    } else if (json_is_array(input)) {
        json_array_foreach(input, i, it) {
            json_t *norm = normalize_item(it, "input", i, calls, f);
            if (!norm) goto out;
            json_array_append_new(q->items, norm);
        }
    } else {
        srv_failf(f, 400, NULL, "input", "'input' must be a string or an array of input items");
        goto out;
    }
    if (json_array_size(q->items) == 0) {
        srv_failf(f, 400, NULL, "input", "'input' must not be empty");
        goto out;
    }
    json_object_set_new(q->chat, "messages", items_to_messages(q->items, q->instructions));
    /* sampling fields the Responses API shares with chat completions */
    static const char *const same[] = {"temperature", "top_p", "seed", "top_k", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty", "logit_bias"};
    for (size_t k = 0; k < sizeof same / sizeof same[0]; k++)
        if (json_object_get(req, same[k])) json_object_set(q->chat, same[k], json_object_get(req, same[k]));
    if (q->have_max) json_object_set_new(q->chat, "max_tokens", json_integer(q->max_output_tokens));
    ok = parse_tools(req, q, f) && parse_text_format(req, q, f);
out:
    json_decref(calls);
    json_decref(stored);
    return ok;
}

/* Reads the request (and the stored conversation it continues) into q. */
static bool parse_request(srv_conn *c, json_t *req, resp_req *q, srv_fail *f) {
    json_t *stored = NULL;
    return parse_fields(req, q, f) && load_previous(c, q, &stored, f) && build_conversation(req, q, stored, f);
}

/* For fuzz/fuzz_http_responses.c (declared there): the chat completions request a Responses
 * request means, continuing `stored` (a conversation as stored; borrowed; NULL = none). NULL with
 * f set when the request is refused. */
json_t *srv_responses_chat_request(json_t *req, json_t *stored, srv_fail *f);
json_t *srv_responses_chat_request(json_t *req, json_t *stored, srv_fail *f) {
    resp_req q;
    json_t *chat = NULL;
    if (parse_fields(req, &q, f) && build_conversation(req, &q, stored ? json_deep_copy(stored) : NULL, f)) chat = json_incref(q.chat);
    resp_req_free(&q);
    return chat;
}

/* ---------- output items, streamed as events or collected ---------- */

typedef enum { OPEN_NONE, OPEN_MESSAGE, OPEN_CALL } open_kind;

/* Builds the output of one response from its text (and writes the events when streaming). */
typedef struct resp_out {
    srv_server *srv;
    srv_stream *st;      /* NULL when not streaming */
    long long seq;       /* sequence_number of the next event */
    json_t *response;    /* the response object; output and usage filled at the end */
    json_t *output;      /* finished output items */
    json_t *items;       /* the conversation before this response */
    bool failed_write;
    open_kind open;
    char item_id[64], call_id[64], call_name[72];
    slm_buf text;        /* the open message's text, or the open call's arguments */
    /* for storing */
    bool store;
    char store_dir[4096];
    char key[64], model[256], previous_id[SLM_RESPONSE_ID_MAX];
    slm_tool_stream *calls; /* with tools: the output parsed for calls (memory after this struct) */
} resp_out;

static void resp_out_cleanup(void *p) {
    resp_out *o = p;
    json_decref(o->response);
    json_decref(o->output);
    json_decref(o->items);
    slm_buf_free(&o->text);
    o->response = o->output = o->items = NULL;
}

/* One event: "event: <type>" and its JSON with type and sequence_number (steals obj). */
static void event(resp_out *o, const char *type, json_t *obj) {
    if (!o->st || o->failed_write) {
        json_decref(obj);
        return;
    }
    json_object_set_new(obj, "type", json_string(type));
    json_object_set_new(obj, "sequence_number", json_integer(o->seq++));
    char head[96];
    snprintf(head, sizeof head, "event: %s\ndata: ", type);
    if (!srv_stream_write_json(o->st, head, obj, "\n\n")) o->failed_write = true;
}

static json_t *text_part(const char *text, size_t len) {
    return json_pack("{s:s, s:s%, s:[], s:[]}", "type", "output_text", "text", text, len, "annotations", "logprobs");
}

static json_t *open_item_json(resp_out *o, const char *status) {
    if (o->open == OPEN_MESSAGE)
        return json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", o->item_id, "type", "message", "status", status, "role", "assistant",
                         "content", strcmp(status, "in_progress") == 0 ? json_array()
                                                                       : json_pack("[o]", text_part(o->text.s ? o->text.s : "", o->text.len)));
    return json_pack("{s:s, s:s, s:s, s:s, s:s%, s:s}", "id", o->item_id, "type", "function_call", "call_id", o->call_id, "name",
                     o->call_name, "arguments", o->text.s ? o->text.s : "", o->text.len, "status", status);
}

static void close_item(resp_out *o) {
    if (o->open == OPEN_NONE) return;
    int index = (int)json_array_size(o->output);
    const char *text = o->text.s ? o->text.s : "";
    if (o->open == OPEN_MESSAGE) {
        event(o, "response.output_text.done",
              json_pack("{s:s, s:i, s:i, s:s%, s:[]}", "item_id", o->item_id, "output_index", index, "content_index", 0, "text", text,
                        o->text.len, "logprobs"));
        event(o, "response.content_part.done",
              json_pack("{s:s, s:i, s:i, s:o}", "item_id", o->item_id, "output_index", index, "content_index", 0, "part",
                        text_part(text, o->text.len)));
    } else {
        event(o, "response.function_call_arguments.done",
              json_pack("{s:s, s:i, s:s, s:s%}", "item_id", o->item_id, "output_index", index, "name", o->call_name, "arguments", text,
                        o->text.len));
    }
    json_t *item = open_item_json(o, "completed");
    event(o, "response.output_item.done", json_pack("{s:i, s:O}", "output_index", index, "item", item));
    json_array_append_new(o->output, item);
    o->open = OPEN_NONE;
    slm_buf_clear(&o->text);
}

static void open_message(resp_out *o) {
    new_id(o->srv, "msg", o->item_id, sizeof o->item_id);
    o->open = OPEN_MESSAGE;
    int index = (int)json_array_size(o->output);
    event(o, "response.output_item.added", json_pack("{s:i, s:o}", "output_index", index, "item", open_item_json(o, "in_progress")));
    event(o, "response.content_part.added",
          json_pack("{s:s, s:i, s:i, s:o}", "item_id", o->item_id, "output_index", index, "content_index", 0, "part", text_part("", 0)));
}

static void add_text(resp_out *o, const char *text, size_t len) {
    if (len == 0) return;
    if (o->open == OPEN_CALL) close_item(o);
    if (o->open == OPEN_NONE) open_message(o);
    slm_buf_append(&o->text, text, len);
    event(o, "response.output_text.delta",
          json_pack("{s:s, s:i, s:i, s:s%, s:[]}", "item_id", o->item_id, "output_index", (int)json_array_size(o->output),
                    "content_index", 0, "delta", text, len, "logprobs"));
}

static void add_call(resp_out *o, const char *name, size_t len) {
    close_item(o);
    new_id(o->srv, "fc", o->item_id, sizeof o->item_id);
    srv_tool_call_id(o->srv, o->call_id, sizeof o->call_id);
    snprintf(o->call_name, sizeof o->call_name, "%.*s", (int)(len < 64 ? len : 64), name);
    o->open = OPEN_CALL;
    event(o, "response.output_item.added",
          json_pack("{s:i, s:o}", "output_index", (int)json_array_size(o->output), "item", open_item_json(o, "in_progress")));
}

static void add_arguments(resp_out *o, const char *text, size_t len) {
    if (o->open != OPEN_CALL || len == 0) return;
    slm_buf_append(&o->text, text, len);
    event(o, "response.function_call_arguments.delta",
          json_pack("{s:s, s:i, s:s%}", "item_id", o->item_id, "output_index", (int)json_array_size(o->output), "delta", text, len));
}

static bool on_tool_event(void *user, slm_tool_event_kind kind, int index, const char *text, size_t len) {
    (void)index;
    resp_out *o = user;
    if (kind == SLM_TOOL_EV_CONTENT)
        add_text(o, text, len);
    else if (kind == SLM_TOOL_EV_CALL)
        add_call(o, text, len);
    else
        add_arguments(o, text, len);
    return !o->failed_write;
}

/* New generated text: through the tool parser when tools are active, else straight to the message. */
static void feed(resp_out *o, const char *text, size_t len, bool end) {
    if (o->calls)
        slm_tool_stream_feed(o->calls, text, len, end, on_tool_event, o);
    else
        add_text(o, text, len);
}

/* Keeps the finished response (its conversation: the items before it, then its output). */
static void store_response(resp_out *o) {
    if (!o->store || !o->store_dir[0]) return;
    json_t *items = json_deep_copy(o->items);
    size_t i;
    json_t *it;
    json_array_foreach(o->output, i, it) json_array_append(items, it);
    char *items_text = json_dumps(items, JSON_COMPACT);
    char *resp_text = json_dumps(o->response, JSON_COMPACT);
    json_decref(items);
    slm_responses_db *db = NULL;
    char err[512];
    if (items_text && resp_text && slm_responses_open(o->store_dir, &db, err, sizeof err) == 0) {
        slm_stored_response row = {.id = (char *)json_string_value(json_object_get(o->response, "id")),
                                   .key = o->key,
                                   .model = o->model,
                                   .previous_id = o->previous_id,
                                   .response = resp_text,
                                   .items = items_text};
        if (slm_responses_put(db, &row, err, sizeof err) != 0) fprintf(stderr, "slm serve: responses: %s\n", err);
        /* kept 30 days, as OpenAI keeps them */
        else if (slm_responses_expire(db, (double)time(NULL) - RESP_KEEP_SECONDS, err, sizeof err) < 0)
            fprintf(stderr, "slm serve: responses: %s\n", err);
    } else {
        fprintf(stderr, "slm serve: responses: cannot store a response: %s\n", items_text && resp_text ? err : "out of memory");
    }
    slm_responses_close(db);
    free(items_text);
    free(resp_text);
}

/* The end: status, output and usage into the response object; stored; the last event. */
static void finish(resp_out *o, const slm_request *r, bool completed_stream) {
    close_item(o);
    if (json_array_size(o->output) == 0 && r->finish != SLM_FINISH_ERROR) {
        open_message(o); /* an empty reply is still one (empty) message */
        close_item(o);
    }
    int prompt, completion;
    srv_usage(o->srv, r, &prompt, &completion);
    bool incomplete = r->finish == SLM_FINISH_LENGTH;
    json_object_set_new(o->response, "status", json_string(incomplete ? "incomplete" : "completed"));
    if (incomplete) json_object_set_new(o->response, "incomplete_details", json_pack("{s:s}", "reason", "max_output_tokens"));
    json_object_set(o->response, "output", o->output);
    json_object_set_new(o->response, "usage",
                        json_pack("{s:i, s:{s:i}, s:i, s:{s:i}, s:i}", "input_tokens", prompt, "input_tokens_details", "cached_tokens",
                                  r->n_prompt_cached, "output_tokens", completion, "output_tokens_details", "reasoning_tokens", 0,
                                  "total_tokens", prompt + completion));
    store_response(o);
    if (completed_stream)
        event(o, incomplete ? "response.incomplete" : "response.completed", json_pack("{s:O}", "response", o->response));
}

/* The response object as it starts (status in_progress, no output yet). */
static json_t *response_skeleton(const char *id, const resp_req *q, const srv_model *M, const slm_request *r) {
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:b, s:n, s:n, s:s?, s:o, s:n, s:s, s:[], s:b, s:s?, s:{s:n, s:n}, s:s, s:b, "
                          "s:f, s:O, s:O, s:O, s:i, s:f, s:s, s:n, s:n, s:O}",
                          "id", id, "object", "response", "created_at", (json_int_t)time(NULL), "status", "in_progress", "background",
                          false, "error", "incomplete_details", "instructions", q->instructions, "max_output_tokens",
                          q->have_max ? json_integer(q->max_output_tokens) : json_null(), "max_tool_calls", "model", M->id, "output",
                          "parallel_tool_calls", q->parallel, "previous_response_id", q->previous_id, "reasoning", "effort",
                          "summary", "service_tier", "default", "store", q->store, "temperature",
                          (double)r->gen.sampling.temperature, "text", q->text_echo, "tool_choice", q->tool_choice_echo, "tools",
                          q->tools_echo, "top_logprobs", 0, "top_p", (double)r->gen.sampling.top_p, "truncation", "disabled", "usage",
                          "user", "metadata", q->metadata_echo);
    if (o && !q->instructions) json_object_set_new(o, "instructions", json_null());
    if (o && !q->previous_id) json_object_set_new(o, "previous_response_id", json_null());
    return o;
}

/* ---------- streaming ---------- */

static bool emit_responses(srv_stream *st, slm_request *r, const srv_delta *d) {
    resp_out *o = st->user;
    o->st = st;
    if (!st->sent_first) {
        event(o, "response.created", json_pack("{s:O}", "response", o->response));
        event(o, "response.in_progress", json_pack("{s:O}", "response", o->response));
    }
    bool failed = d->done && r->finish != SLM_FINISH_STOP && r->finish != SLM_FINISH_LENGTH;
    if (d->text_len > 0 || (d->done && !failed)) feed(o, d->text, d->text_len, d->done && !failed);
    if (d->done) {
        if (failed) {
            int status = srv_finish_status(r);
            json_object_set_new(o->response, "status", json_string("failed"));
            json_object_set_new(o->response, "error", json_pack("{s:s, s:s}", "code", status == 400 ? "invalid_prompt" : "server_error",
                                                                 "message", slm_finish_message(r)));
            event(o, "response.failed", json_pack("{s:O}", "response", o->response));
        } else {
            finish(o, r, true);
        }
    }
    return !o->failed_write;
}

/* ---------- POST /v1/responses ---------- */

static enum MHD_Result create(srv_conn *c) {
    srv_server *s = c->srv;
    srv_fail f = {0};
    json_t *req = srv_parse_body(c, &f);
    slm_request *r = NULL;
    srv_chat_msgs msgs = {0};
    srv_tools tools = {0};
    resp_req q = {0};
    resp_out *o = NULL;
    enum MHD_Result ret;
    if (!req) return srv_reply_fail(c, &f);
    if (!parse_request(c, req, &q, &f)) goto fail;
    const srv_model *M = srv_pick_generative(c, q.model);
    if (!M) {
        ret = MHD_YES;
        goto out;
    }
    r = slm_request_new(SLM_REQ_GENERATE);
    if (!r) {
        srv_failf(&f, 500, NULL, NULL, "out of memory");
        goto fail;
    }
    if (!srv_parse_openai_sampling(c, M, q.chat, true, &r->gen, &f) || !srv_parse_tools(M, q.chat, &tools, &f) ||
        !srv_tools_constrain(c, M, &tools, &r->gen, &f) || !srv_parse_messages(q.chat, SRV_API_OPENAI, &tools, &msgs, &f))
        goto fail_mapped;
    if (!srv_inspect(c, msgs.msgs, msgs.n, NULL, q.stream)) {
        ret = MHD_YES;
        goto out;
    }
    int limit = srv_prompt_limit(c, M);
    if (!srv_chat_tokenize(M, msgs.msgs, msgs.n, true, "input", limit, &r->prompt, &r->n_prompt, &f)) goto fail;
    if (r->n_prompt == 0) {
        srv_failf(&f, 400, NULL, "input", "the prompt has no tokens");
        goto fail;
    }
    srv_mark_prompt(c, M, r->n_prompt);
    if (limit == M->n_ctx - 1 && r->gen.max_tokens > 0 && r->n_prompt + r->gen.max_tokens > M->n_ctx) {
        srv_failf(&f, 400, "context_length_exceeded", "max_output_tokens",
                  "the context per slot is %d tokens, but %d were requested (%d in the prompt, %d to generate)", M->n_ctx,
                  r->n_prompt + r->gen.max_tokens, r->n_prompt, r->gen.max_tokens);
        goto fail;
    }
    bool with_tools = srv_tools_active(&tools);
    o = calloc(1, sizeof *o + (with_tools ? slm_tool_stream_size() : 0));
    if (!o) {
        srv_failf(&f, 500, NULL, NULL, "out of memory");
        goto fail;
    }
    o->srv = s;
    /* every item of a stored conversation has an id (input_items lists them by id) */
    size_t k;
    json_t *item;
    json_array_foreach(q.items, k, item) if (!json_is_string(json_object_get(item, "id"))) {
        const char *t = str_of(json_object_get(item, "type"));
        char item_id[64];
        new_id(s, strcmp(t, "message") == 0 ? "msg" : strcmp(t, "function_call") == 0 ? "fc" : "fco", item_id, sizeof item_id);
        json_object_set_new(item, "id", json_string(item_id));
    }
    char id[64];
    new_id(s, "resp", id, sizeof id);
    o->response = response_skeleton(id, &q, M, r);
    o->output = json_array();
    o->items = json_incref(q.items);
    if (!o->response || !o->output) {
        srv_failf(&f, 500, NULL, NULL, "out of memory");
        goto fail;
    }
    o->store = q.store && s->store;
    if (!s->store) json_object_set_new(o->response, "store", json_false());
    if (o->store) snprintf(o->store_dir, sizeof o->store_dir, "%s", slm_store_dir(s->store));
    snprintf(o->key, sizeof o->key, "%s", c->call.principal);
    snprintf(o->model, sizeof o->model, "%s", M->id);
    snprintf(o->previous_id, sizeof o->previous_id, "%s", q.previous_id ? q.previous_id : "");
    if (with_tools) o->calls = slm_tool_stream_init(o + 1, tools.format);
    if (!srv_submit(c, r)) {
        ret = MHD_YES;
        goto out;
    }
    if (q.stream) {
        resp_out *owned = o;
        o = NULL;
        ret = srv_reply_stream_owning(c, r, "text/event-stream", emit_responses, owned, resp_out_cleanup);
        goto out;
    }
    if (!srv_wait_done(c, r)) {
        ret = MHD_NO; /* client is gone: close without an answer */
        goto out;
    }
    if (r->finish != SLM_FINISH_STOP && r->finish != SLM_FINISH_LENGTH) {
        ret = srv_reply_finish_error(c, r);
        goto out;
    }
    size_t text_len;
    char *text = srv_final_text(c, r, &text_len);
    if (!text) {
        ret = srv_reply_error(c, 500, NULL, NULL, "out of memory");
        goto out;
    }
    feed(o, text, text_len, true);
    free(text);
    pthread_mutex_lock(&r->mu);
    finish(o, r, false);
    pthread_mutex_unlock(&r->mu);
    ret = srv_reply_json(c, 200, json_incref(o->response));
    goto out;
fail_mapped:
    responses_param(&f);
fail:
    ret = srv_reply_fail(c, &f);
out:
    if (o) {
        resp_out_cleanup(o);
        free(o);
    }
    srv_forget_texts(c);
    srv_chat_msgs_free(&msgs);
    srv_tools_free(&tools);
    slm_request_release(r);
    resp_req_free(&q);
    json_decref(req);
    return ret;
}

/* ---------- GET / DELETE /v1/responses/{id} ---------- */

static enum MHD_Result by_id(srv_conn *c, const char *id, bool remove) {
    srv_fail f = {0};
    if (!plausible_id(id)) {
        char msg[200];
        snprintf(msg, sizeof msg, "Response with id '%.80s' not found.", id);
        return srv_reply_error(c, 404, "not_found", "response_id", msg);
    }
    slm_responses_db *db = open_db(c->srv, &f);
    if (!db) {
        if (f.status != 400) return srv_reply_fail(c, &f);
        char msg[200];
        snprintf(msg, sizeof msg, "Response with id '%.80s' not found (this server keeps no state).", id);
        return srv_reply_error(c, 404, "not_found", "response_id", msg);
    }
    char err[512];
    slm_stored_response row = {0};
    int rc = remove ? slm_responses_delete(db, id, c->call.principal, err, sizeof err)
                    : slm_responses_get(db, id, c->call.principal, &row, err, sizeof err);
    slm_responses_close(db);
    enum MHD_Result ret;
    if (rc < 0) {
        ret = srv_reply_error(c, 500, NULL, NULL, err);
    } else if (rc == 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "Response with id '%.80s' not found.", id);
        ret = srv_reply_error(c, 404, "not_found", "response_id", msg);
    } else if (remove) {
        ret = srv_reply_json(c, 200, json_pack("{s:s, s:s, s:b}", "id", id, "object", "response.deleted", "deleted", true));
    } else {
        ret = srv_reply_bytes(c, 200, "application/json", row.response, strlen(row.response));
    }
    slm_stored_response_clear(&row);
    return ret;
}

/* GET /v1/responses/{id}/input_items: the items the response was generated from (its stored
 * conversation without its output), paged as OpenAI pages them (limit 1..100, order desc|asc,
 * after = an item id). */
static enum MHD_Result input_items(srv_conn *c, const char *id) {
    srv_fail f = {0};
    const char *limit_s = MHD_lookup_connection_value(c->mhd, MHD_GET_ARGUMENT_KIND, "limit");
    const char *order = MHD_lookup_connection_value(c->mhd, MHD_GET_ARGUMENT_KIND, "order");
    const char *after = MHD_lookup_connection_value(c->mhd, MHD_GET_ARGUMENT_KIND, "after");
    long limit = 20;
    if (limit_s) {
        char *end;
        limit = strtol(limit_s, &end, 10);
        if (!*limit_s || *end || limit < 1 || limit > 100) return srv_reply_error(c, 400, NULL, "limit", "'limit' must be an integer from 1 to 100");
    }
    if (order && strcmp(order, "asc") != 0 && strcmp(order, "desc") != 0)
        return srv_reply_error(c, 400, NULL, "order", "'order' must be asc or desc");
    bool desc = !order || strcmp(order, "desc") == 0;
    char msg[200];
    snprintf(msg, sizeof msg, "Response with id '%.80s' not found.", id);
    if (!plausible_id(id)) return srv_reply_error(c, 404, "not_found", "response_id", msg);
    slm_responses_db *db = open_db(c->srv, &f);
    if (!db) return f.status == 400 ? srv_reply_error(c, 404, "not_found", "response_id", msg) : srv_reply_fail(c, &f);
    char err[512];
    slm_stored_response row;
    int rc = slm_responses_get(db, id, c->call.principal, &row, err, sizeof err);
    slm_responses_close(db);
    if (rc < 0) return srv_reply_error(c, 500, NULL, NULL, err);
    if (rc == 0) return srv_reply_error(c, 404, "not_found", "response_id", msg);
    json_error_t je;
    json_t *items = json_loads(row.items, 0, &je), *resp = json_loads(row.response, 0, &je);
    slm_stored_response_clear(&row);
    size_t n_out = json_array_size(json_object_get(resp, "output"));
    json_decref(resp);
    size_t n = json_array_size(items) >= n_out ? json_array_size(items) - n_out : 0;
    json_t *data = json_array();
    bool started = !after, more = false;
    for (size_t k = 0; k < n; k++) {
        json_t *it = json_array_get(items, desc ? n - 1 - k : k);
        if (!started) {
            started = strcmp(str_of(json_object_get(it, "id")), after) == 0;
            continue;
        }
        if (json_array_size(data) == (size_t)limit) {
            more = true;
            break;
        }
        json_array_append(data, it);
    }
    json_decref(items);
    size_t got = json_array_size(data);
    json_t *first = got ? json_object_get(json_array_get(data, 0), "id") : NULL;
    json_t *last = got ? json_object_get(json_array_get(data, got - 1), "id") : NULL;
    return srv_reply_json(c, 200,
                          json_pack("{s:s, s:o, s:O?, s:O?, s:b}", "object", "list", "data", data, "first_id", first, "last_id", last,
                                    "has_more", more));
}

enum MHD_Result srv_responses_dispatch(srv_conn *c) {
    static const char base[] = "/v1/responses";
    const char *rest = strncmp(c->url, base, sizeof base - 1) == 0 ? c->url + sizeof base - 1 : NULL;
    if (rest && *rest == 0) {
        if (strcmp(c->method, "POST") == 0) return create(c);
        return srv_reply_error(c, 405, NULL, NULL, "method not allowed on this route");
    }
    static const char items_suffix[] = "/input_items";
    const char *slash = rest && *rest == '/' ? strchr(rest + 1, '/') : NULL;
    if (slash && strcmp(slash, items_suffix) == 0 && slash - rest - 1 < SLM_RESPONSE_ID_MAX) {
        if (strcmp(c->method, "GET") != 0) return srv_reply_error(c, 405, NULL, NULL, "method not allowed on this route");
        char id[SLM_RESPONSE_ID_MAX];
        snprintf(id, sizeof id, "%.*s", (int)(slash - rest - 1), rest + 1);
        return input_items(c, id);
    }
    if (!rest || *rest != '/' || !rest[1] || slash) return srv_reply_error(c, 404, "unknown_route", NULL, "no such route");
    if (strcmp(c->method, "GET") == 0) return by_id(c, rest + 1, false);
    if (strcmp(c->method, "DELETE") == 0) return by_id(c, rest + 1, true);
    return srv_reply_error(c, 405, NULL, NULL, "method not allowed on this route");
}
