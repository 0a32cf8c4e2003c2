/* Tool calling: how each template family describes tools and writes calls, the grammar that
 * makes every started call complete into a valid one, and the (incremental) parser that reads calls
 * back out of generated text. The formats are documented in docs/server.md ("Tools"). */
#include <ctype.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/chat.h"
#include "sample/json_schema.h"
#include "util/buf.h"
#include "util/err.h"


/* How one format writes a call: trigger + open + {"name": NAME, "<key>": ARGS} + close, calls
 * separated by sep. An empty trigger means the call is the whole reply (it starts with '{'). A list
 * format writes trigger + open once, the calls separated by sep, then close, and gives every call
 * an id: {"name": NAME, "arguments": ARGS, "id": "<9 alphanumerics>"}. */
typedef struct fmt_spec {
    const char *name;
    const char *trigger, *open, *close, *sep, *args_key;
    bool spaced; /* {"name": "f", "arguments": ...} rather than {"name":"f","arguments":...} */
    bool list;
} fmt_spec;

static const fmt_spec FORMATS[] = {
    [SLM_TOOL_FORMAT_GENERIC] = {"generic", "<tool_call>", "", "</tool_call>", "\n", "arguments", false, false},
    [SLM_TOOL_FORMAT_HERMES] = {"hermes", "<tool_call>", "\n", "\n</tool_call>", "\n", "arguments", true, false},
    [SLM_TOOL_FORMAT_LLAMA3] = {"llama3", "", "", "", "\n", "parameters", true, false},
    [3] = {"mistral", "[TOOL_CALLS]", " [", "]", ", ", "arguments", true, true},
};

#define MISTRAL_ID_LEN 9

/* Mistral's templates require call ids of 9 alphanumerics: the last 9 alphanumerics of the id
 * (calls and their results map alike), completed from a hash of the whole id when shorter. */
static void mistral_id(const char *id, char out[MISTRAL_ID_LEN + 1]) {
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    size_t n = 0;
    for (const char *p = id ? id : ""; *p; p++) n += isalnum((unsigned char)*p) != 0;
    uint64_t h = 1469598103934665603ull;
    for (const char *p = id ? id : ""; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    size_t skip = n > MISTRAL_ID_LEN ? n - MISTRAL_ID_LEN : 0, k = 0;
    for (const char *p = id ? id : ""; *p && k < MISTRAL_ID_LEN; p++) {
        if (!isalnum((unsigned char)*p)) continue;
        if (skip) {
            skip--;
            continue;
        }
        out[k++] = *p;
    }
    while (k < MISTRAL_ID_LEN) {
        out[k++] = alnum[h % (sizeof alnum - 1)];
        h = h / (sizeof alnum - 1) + 0x9E3779B97F4A7C15ull * (k + 1);
    }
    out[MISTRAL_ID_LEN] = 0;
}

static const fmt_spec *spec(slm_tool_format f) {
    return (int)f >= 0 && (size_t)f < sizeof FORMATS / sizeof FORMATS[0] ? &FORMATS[f] : &FORMATS[0];
}

const char *slm_tool_format_name(slm_tool_format f) { return spec(f)->name; }

slm_tool_format slm_tool_format_for(const slm_model *model, const char *template_name) {
    const char *text = model ? slm_model_meta(model, "tokenizer.chat_template") : NULL;
    enum slm_chat_template t = template_name ? slm_chat_template_from_name(template_name)
                                             : text ? slm_chat_template_detect(text) : SLM_CHAT_UNKNOWN;
    if (t == SLM_CHAT_LLAMA3) return SLM_TOOL_FORMAT_LLAMA3;
    if (t == SLM_CHAT_MISTRAL_V3 || t == SLM_CHAT_MISTRAL_V3_TEKKEN || t == SLM_CHAT_MISTRAL_V7 ||
        (text && strstr(text, "[TOOL_CALLS]")))
        return SLM_TOOL_FORMAT_MISTRAL;
    const char *arch = model ? slm_model_meta(model, "general.architecture") : NULL;
    /* Qwen2 models are tuned on Hermes-style calls; so are templates that spell out <tool_call> */
    if (t == SLM_CHAT_CHATML && ((arch && strncmp(arch, "qwen2", 5) == 0) || (text && strstr(text, "<tool_call>"))))
        return SLM_TOOL_FORMAT_HERMES;
    return SLM_TOOL_FORMAT_GENERIC;
}

/* ---------- the prompt ---------- */

/* {"type": "function", "function": {name, description, parameters}} as Qwen's template lists it. */
static bool put_tool_json(slm_buf *b, const slm_tool *t, char *err, size_t err_len) {
    json_t *params = NULL;
    if (t->parameters) {
        json_error_t je;
        params = json_loads(t->parameters, 0, &je);
        if (!json_is_object(params)) {
            json_decref(params);
            slm_err(err, err_len, "tool '%.64s': parameters are not a JSON object", t->name ? t->name : "");
            return false;
        }
    } else {
        params = json_pack("{s:s}", "type", "object");
    }
    json_t *fn = json_pack("{s:s}", "name", t->name ? t->name : "");
    if (t->description && fn) json_object_set_new(fn, "description", json_string(t->description));
    if (fn) json_object_set_new(fn, "parameters", params);
    else json_decref(params);
    json_t *o = fn ? json_pack("{s:s, s:o}", "type", "function", "function", fn) : NULL;
    char *s = o ? json_dumps(o, JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (!s) {
        slm_err(err, err_len, "tools: out of memory");
        return false;
    }
    slm_buf_puts(b, s);
    free(s);
    return true;
}

static const char QWEN_DEFAULT_SYSTEM[] = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

/* The tools block for the system message (without the system text before it). */
static bool put_tools_text(slm_buf *b, slm_tool_format f, const slm_tool *tools, size_t n, char *err, size_t err_len) {
    if (f == SLM_TOOL_FORMAT_HERMES) {
        slm_buf_puts(b, "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
        for (size_t i = 0; i < n; i++) {
            slm_buf_puts(b, "\n");
            if (!put_tool_json(b, &tools[i], err, err_len)) return false;
        }
        slm_buf_puts(b, "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
                        "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, "
                        "\"arguments\": <args-json-object>}\n</tool_call>");
    } else if (f == SLM_TOOL_FORMAT_MISTRAL) {
        /* as Mistral's v3 template: [AVAILABLE_TOOLS] [tool, tool][/AVAILABLE_TOOLS] */
        slm_buf_puts(b, "[AVAILABLE_TOOLS] [");
        for (size_t i = 0; i < n; i++) {
            if (i) slm_buf_puts(b, ", ");
            if (!put_tool_json(b, &tools[i], err, err_len)) return false;
        }
        slm_buf_puts(b, "][/AVAILABLE_TOOLS]");
    } else if (f == SLM_TOOL_FORMAT_LLAMA3) {
        slm_buf_puts(b, "You have access to the following functions. To call a function, respond with only a JSON "
                        "object of the form {\"name\": function name, \"parameters\": dictionary of argument name and "
                        "its value}. Do not use variables.\n");
        for (size_t i = 0; i < n; i++) {
            slm_buf_puts(b, "\n");
            if (!put_tool_json(b, &tools[i], err, err_len)) return false;
        }
    } else {
        slm_buf_puts(b, "You can call the following tools. Each is a JSON object on its own line: its name, what it "
                        "does and a JSON Schema of its arguments.\n");
        for (size_t i = 0; i < n; i++) {
            slm_buf_puts(b, "\n");
            if (!put_tool_json(b, &tools[i], err, err_len)) return false;
        }
        slm_buf_puts(b, "\n\nTo call a tool, reply with <tool_call>{\"name\":\"<tool name>\",\"arguments\":{<arguments as "
                        "JSON>}}</tool_call> (one such block per call, nothing after them). Tool results come back as "
                        "<tool_response>...</tool_response>.");
    }
    return true;
}

/* A call as the format writes it; `arguments` must be a JSON object text. */
static bool put_call(slm_buf *b, const fmt_spec *fs, const slm_tool_call *c, char *err, size_t err_len) {
    json_error_t je;
    json_t *args = json_loads(c->arguments ? c->arguments : "{}", 0, &je);
    json_t *name = json_string(c->name ? c->name : "");
    char *a = json_is_object(args) ? json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    char *n = name ? json_dumps(name, JSON_ENCODE_ANY) : NULL;
    bool ok = a && n;
    if (!json_is_object(args))
        slm_err(err, err_len, "tool call '%.64s': arguments are not a JSON object", c->name ? c->name : "");
    else if (!ok)
        slm_err(err, err_len, "tools: out of memory");
    if (ok) {
        slm_buf_puts(b, fs->trigger);
        slm_buf_puts(b, fs->open);
        slm_buf_printf(b, fs->spaced ? "{\"name\": %s, \"%s\": %s}" : "{\"name\":%s,\"%s\":%s}", n, fs->args_key, a);
        slm_buf_puts(b, fs->close);
    }
    json_decref(args);
    json_decref(name);
    free(a);
    free(n);
    return ok;
}

void slm_tool_prompt_free(slm_tool_prompt *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_owned; i++) free(p->owned[i]);
    free(p->owned);
    free(p->msgs);
    memset(p, 0, sizeof *p);
}

static bool own(slm_tool_prompt *p, slm_buf *b, const char **dst) {
    char *s = slm_buf_take(b);
    if (!s) return false;
    p->owned[p->n_owned++] = s;
    *dst = s;
    return true;
}

/* One Mistral call: {"name": NAME, "arguments": ARGS, "id": "<9 alphanumerics>"} (ARGS spaced as
 * Python's json.dumps writes them, as the template's tojson does). */
static bool put_mistral_call(slm_buf *b, const slm_tool_call *c, char *err, size_t err_len) {
    json_error_t je;
    json_t *args = json_loads(c->arguments ? c->arguments : "{}", 0, &je);
    json_t *name = json_string(c->name ? c->name : "");
    char *a = json_is_object(args) ? json_dumps(args, JSON_PRESERVE_ORDER) : NULL;
    char *n = name ? json_dumps(name, JSON_ENCODE_ANY) : NULL;
    bool ok = a && n;
    if (!json_is_object(args))
        slm_err(err, err_len, "tool call '%.64s': arguments are not a JSON object", c->name ? c->name : "");
    else if (!ok)
        slm_err(err, err_len, "tools: out of memory");
    if (ok) {
        char id[MISTRAL_ID_LEN + 1];
        mistral_id(c->id, id);
        slm_buf_printf(b, "{\"name\": %s, \"arguments\": %s, \"id\": \"%s\"}", n, a, id);
    }
    json_decref(args);
    json_decref(name);
    free(a);
    free(n);
    return ok;
}

/* Mistral v3: the tools block opens the last user message (the template renders it before that
 * turn's [INST]), calls are one [TOOL_CALLS] list, each tool result is its own [TOOL_RESULTS]
 * message carrying the id of the call it answers (by name among the preceding assistant's calls,
 * else by position). chat.c's Mistral renderer lays these messages out as the template does. */
static int mistral_prompt_build(const slm_tool *tools, size_t n_tools, const slm_tool_message *msgs, size_t n_msgs,
                                slm_tool_prompt *out, char *err, size_t err_len) {
    size_t last_user = n_msgs;
    for (size_t i = 0; i < n_msgs; i++)
        if (msgs[i].role && strcmp(msgs[i].role, "user") == 0) last_user = i;
    slm_buf b = {0};
    const slm_tool_message *caller = NULL; /* the assistant turn the tool results answer */
    bool *used = NULL;
    size_t run = 0;
    for (size_t i = 0; i < n_msgs; i++) {
        const slm_tool_message *m = &msgs[i];
        if (!m->role || !m->content) {
            slm_err(err, err_len, "tools: message %zu has no role or content", i);
            goto fail;
        }
        slm_buf_clear(&b);
        const char *role = m->role;
        if (strcmp(m->role, "tool") == 0) {
            const char *call_id = NULL;
            if (caller) {
                for (size_t k = 0; k < caller->n_calls && !call_id; k++)
                    if (!used[k] && m->tool_name && caller->calls[k].name && !strcmp(caller->calls[k].name, m->tool_name))
                        call_id = caller->calls[k].id, used[k] = true;
                for (size_t k = 0; k < caller->n_calls && !call_id; k++)
                    if (!used[k] && run <= k) call_id = caller->calls[k].id, used[k] = true;
            }
            run++;
            char id[MISTRAL_ID_LEN + 1];
            mistral_id(call_id ? call_id : m->tool_name, id);
            slm_buf_puts(&b, "[TOOL_RESULTS] {\"content\": ");
            slm_buf_puts(&b, m->content);
            slm_buf_printf(&b, ", \"call_id\": \"%s\"}[/TOOL_RESULTS]", id);
            role = "user";
        } else if (strcmp(m->role, "assistant") == 0 && m->n_calls > 0) {
            slm_buf_puts(&b, "[TOOL_CALLS] [");
            for (size_t k = 0; k < m->n_calls; k++) {
                if (k) slm_buf_puts(&b, ", ");
                if (!put_mistral_call(&b, &m->calls[k], err, err_len)) goto fail;
            }
            slm_buf_puts(&b, "]");
            caller = m;
            run = 0;
            free(used);
            used = calloc(m->n_calls, sizeof *used);
            if (!used) goto oom;
        } else if (i == last_user && n_tools > 0) {
            if (!put_tools_text(&b, SLM_TOOL_FORMAT_MISTRAL, tools, n_tools, err, err_len)) goto fail;
            slm_buf_puts(&b, m->content);
        } else {
            out->msgs[out->n].role = m->role;
            out->msgs[out->n].content = m->content;
            out->n++;
            continue;
        }
        out->msgs[out->n].role = role;
        if (!own(out, &b, &out->msgs[out->n].content)) goto oom;
        out->n++;
    }
    if (n_tools > 0 && last_user == n_msgs) { /* no user turn: the block alone opens the prompt */
        slm_buf_clear(&b);
        if (!put_tools_text(&b, SLM_TOOL_FORMAT_MISTRAL, tools, n_tools, err, err_len)) goto fail;
        out->msgs[out->n].role = "user";
        if (!own(out, &b, &out->msgs[out->n].content)) goto oom;
        out->n++;
    }
    if (b.oom) goto oom;
    slm_buf_free(&b);
    free(used);
    return 0;
oom:
    slm_err(err, err_len, "tools: out of memory");
fail:
    free(used);
    slm_buf_free(&b);
    slm_tool_prompt_free(out);
    return -1;
}

int slm_tool_prompt_build(slm_tool_format f, const slm_tool *tools, size_t n_tools, const slm_tool_message *msgs,
                          size_t n_msgs, slm_tool_prompt *out, char *err, size_t err_len) {
    if (!out) return slm_err(err, err_len, "tools: no output");
    memset(out, 0, sizeof *out);
    if (f == SLM_TOOL_FORMAT_MISTRAL) {
        out->msgs = calloc(n_msgs + 1, sizeof *out->msgs);
        out->owned = calloc(n_msgs + 1, sizeof *out->owned);
        if (!out->msgs || !out->owned) {
            slm_tool_prompt_free(out);
            return slm_err(err, err_len, "tools: out of memory");
        }
        return mistral_prompt_build(tools, n_tools, msgs, n_msgs, out, err, err_len);
    }
    const fmt_spec *fs = spec(f);
    size_t cap = n_msgs + 1;
    out->msgs = calloc(cap, sizeof *out->msgs);
    out->owned = calloc(cap, sizeof *out->owned);
    if (!out->msgs || !out->owned) {
        slm_tool_prompt_free(out);
        return slm_err(err, err_len, "tools: out of memory");
    }
    slm_buf b = {0};
    size_t i = 0;
    if (n_tools > 0) {
        bool has_system = n_msgs > 0 && msgs[0].role && strcmp(msgs[0].role, "system") == 0;
        if (has_system) {
            slm_buf_puts(&b, msgs[0].content ? msgs[0].content : "");
            slm_buf_puts(&b, "\n\n");
            i = 1;
        } else if (f == SLM_TOOL_FORMAT_HERMES) {
            slm_buf_puts(&b, QWEN_DEFAULT_SYSTEM);
            slm_buf_puts(&b, "\n\n");
        }
        if (!put_tools_text(&b, f, tools, n_tools, err, err_len)) goto fail;
        out->msgs[out->n].role = "system";
        if (!own(out, &b, &out->msgs[out->n].content)) goto oom;
        out->n++;
    }
    for (; i < n_msgs; i++) {
        const slm_tool_message *m = &msgs[i];
        if (!m->role || !m->content) {
            slm_err(err, err_len, "tools: message %zu has no role or content", i);
            goto fail;
        }
        if (strcmp(m->role, "tool") == 0) {
            /* consecutive results go back in one user turn, as Qwen's template does */
            slm_buf_clear(&b);
            size_t j = i;
            for (; j < n_msgs && msgs[j].role && strcmp(msgs[j].role, "tool") == 0; j++) {
                if (j > i) slm_buf_puts(&b, "\n");
                if (f == SLM_TOOL_FORMAT_LLAMA3) {
                    slm_buf_puts(&b, msgs[j].content ? msgs[j].content : "");
                } else {
                    slm_buf_puts(&b, "<tool_response>\n");
                    slm_buf_puts(&b, msgs[j].content ? msgs[j].content : "");
                    slm_buf_puts(&b, "\n</tool_response>");
                }
            }
            out->msgs[out->n].role = "user";
            if (!own(out, &b, &out->msgs[out->n].content)) goto oom;
            out->n++;
            i = j - 1;
        } else if (strcmp(m->role, "assistant") == 0 && m->n_calls > 0) {
            slm_buf_clear(&b);
            slm_buf_puts(&b, m->content);
            for (size_t k = 0; k < m->n_calls; k++) {
                if (k > 0 ? true : *m->content != 0) slm_buf_puts(&b, k > 0 ? fs->sep : "\n");
                if (!put_call(&b, fs, &m->calls[k], err, err_len)) goto fail;
            }
            out->msgs[out->n].role = "assistant";
            if (!own(out, &b, &out->msgs[out->n].content)) goto oom;
            out->n++;
        } else {
            out->msgs[out->n].role = m->role;
            out->msgs[out->n].content = m->content;
            out->n++;
        }
    }
    if (b.oom) goto oom;
    slm_buf_free(&b);
    return 0;
oom:
    slm_err(err, err_len, "tools: out of memory");
fail:
    slm_buf_free(&b);
    slm_tool_prompt_free(out);
    return -1;
}

/* ---------- the grammar ---------- */

/* A GBNF literal of s: every byte outside [A-Za-z0-9 ] as \xHH, so nothing needs thought. */
static void put_lit(slm_buf *b, const char *s) {
    slm_buf_puts(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == ' ' || c == '_') slm_buf_append(b, (const char *)&c, 1);
        else slm_buf_printf(b, "\\x%02X", c);
    }
    slm_buf_puts(b, "\"");
}

/* Copies a schema's GBNF with every rule name prefixed by `prefix` (literals, classes, counts and
 * comments untouched), so several schemas live in one grammar. */
static void put_prefixed(slm_buf *b, const char *g, const char *prefix) {
    const char *p = g;
    while (*p) {
        char c = *p;
        if (c == '"' || c == '[') {
            char close = c == '"' ? '"' : ']';
            const char *q = p + 1;
            while (*q && *q != close) q += (*q == '\\' && q[1]) ? 2 : 1;
            if (*q) q++;
            slm_buf_append(b, p, (size_t)(q - p));
            p = q;
        } else if (c == '{') {
            const char *q = strchr(p, '}');
            q = q ? q + 1 : p + strlen(p);
            slm_buf_append(b, p, (size_t)(q - p));
            p = q;
        } else if (c == '#') {
            const char *q = strchr(p, '\n');
            q = q ? q : p + strlen(p);
            p = q;
        } else if (isalnum((unsigned char)c) || c == '_' || c == '-') {
            const char *q = p;
            while (isalnum((unsigned char)*q) || *q == '_' || *q == '-') q++;
            slm_buf_puts(b, prefix);
            slm_buf_append(b, p, (size_t)(q - p));
            p = q;
        } else {
            slm_buf_append(b, p, 1);
            p++;
        }
    }
    if (b->len && b->s[b->len - 1] != '\n') slm_buf_puts(b, "\n");
}

/* Rules nt0..nt<k-1>: texts that never contain `t` (state i = the last i bytes match t's first i;
 * reaching k is impossible). Works on bytes; multi-byte characters pass through the negated class. */
static void put_no_trigger(slm_buf *b, const char *t) {
    size_t k = strlen(t);
    char distinct[64];
    size_t nd = 0;
    for (size_t i = 0; i < k && nd < sizeof distinct; i++)
        if (!memchr(distinct, t[i], nd)) distinct[nd++] = t[i];
    for (size_t i = 0; i < k; i++) {
        slm_buf_printf(b, "nt%zu ::= ([^", i);
        for (size_t d = 0; d < nd; d++) slm_buf_printf(b, "\\x%02X", (unsigned char)distinct[d]);
        slm_buf_puts(b, "] nt0");
        for (size_t d = 0; d < nd; d++) {
            /* next state: the longest prefix of t that ends the matched text + this byte */
            char s[128];
            size_t len = i < sizeof s - 1 ? i : sizeof s - 2;
            memcpy(s, t, len);
            s[len] = distinct[d];
            size_t next = 0;
            for (size_t j = len + 1; j > 0; j--)
                if (memcmp(t, s + len + 1 - j, j) == 0) {
                    next = j;
                    break;
                }
            if (next >= k) continue; /* the whole trigger: not free text */
            slm_buf_printf(b, " | \"\\x%02X\" nt%zu", (unsigned char)distinct[d], next);
        }
        slm_buf_puts(b, ")?\n");
    }
}

static bool valid_tool_name(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '-') return false;
    return true;
}

int slm_tool_gbnf(slm_tool_format f, const slm_tool *tools, size_t n_tools, slm_tool_mode mode, int only,
                  bool parallel, const slm_grammar_limits *limits, char **gbnf_out, int *bad_tool, char *err,
                  size_t err_len) {
    if (bad_tool) *bad_tool = -1;
    if (!gbnf_out) return slm_err(err, err_len, "tools: no output pointer");
    *gbnf_out = NULL;
    if (n_tools == 0 || !tools) return slm_err(err, err_len, "tools: no tools");
    if (only >= (int)n_tools) return slm_err(err, err_len, "tools: tool %d does not exist", only);
    const fmt_spec *fs = spec(f);
    slm_buf b = {0};
    if (mode == SLM_TOOL_MODE_REQUIRED) {
        slm_buf_puts(&b, "root ::= calls\n");
    } else if (*fs->trigger) {
        slm_buf_puts(&b, "root ::= nt0 calls?\n");
        put_no_trigger(&b, fs->trigger);
    } else {
        /* the call is the whole reply: free text is anything not starting with '{' */
        slm_buf_puts(&b, "root ::= calls | free?\nfree ::= [^{] .*\n");
    }
    char opening[64];
    snprintf(opening, sizeof opening, "%s%s", fs->trigger, fs->open);
    if (fs->list) { /* trigger + open, the calls, close */
        slm_buf_puts(&b, "calls ::= ");
        put_lit(&b, opening);
        slm_buf_puts(&b, " call");
        if (parallel) {
            slm_buf_puts(&b, " (");
            put_lit(&b, fs->sep);
            slm_buf_printf(&b, " call){0,%d}", SLM_TOOL_MAX_PARALLEL - 1);
        }
        slm_buf_puts(&b, " ");
        put_lit(&b, fs->close);
        slm_buf_puts(&b, "\n");
    } else if (parallel) {
        slm_buf_puts(&b, "calls ::= call (");
        put_lit(&b, fs->sep);
        slm_buf_printf(&b, " call){0,%d}\n", SLM_TOOL_MAX_PARALLEL - 1);
    } else {
        slm_buf_puts(&b, "calls ::= call\n");
    }
    slm_buf_puts(&b, "call ::= ");
    if (!fs->list) put_lit(&b, opening);
    slm_buf_puts(&b, " (");
    bool first = true;
    for (size_t i = 0; i < n_tools; i++) {
        if (only >= 0 && (size_t)only != i) continue;
        slm_buf_printf(&b, "%sc%zu", first ? "" : " | ", i);
        first = false;
    }
    slm_buf_puts(&b, ") ");
    if (!fs->list) put_lit(&b, fs->close);
    slm_buf_puts(&b, "\n");
    for (size_t i = 0; i < n_tools; i++) {
        if (only >= 0 && (size_t)only != i) continue;
        if (!valid_tool_name(tools[i].name)) {
            slm_buf_free(&b);
            if (bad_tool) *bad_tool = (int)i;
            return slm_err(err, err_len, "tool name '%.64s' must be 1 to 64 of [A-Za-z0-9_-]",
                           tools[i].name ? tools[i].name : "");
        }
        char *g = NULL, serr[320];
        int rc = slm_json_schema_to_gbnf_limited(tools[i].parameters ? tools[i].parameters : "{\"type\":\"object\"}",
                                                 limits, &g, serr, sizeof serr);
        if (rc != 0) {
            slm_buf_free(&b);
            if (bad_tool) *bad_tool = (int)i;
            slm_err(err, err_len, "%s", serr);
            return rc;
        }
        char head[160];
        snprintf(head, sizeof head, fs->spaced ? "{\"name\": \"%s\", \"%s\": " : "{\"name\":\"%s\",\"%s\":", tools[i].name,
                 fs->args_key);
        slm_buf_printf(&b, "c%zu ::= ", i);
        put_lit(&b, head);
        if (fs->list) /* , "id": "<9 alphanumerics>"} */
            slm_buf_printf(&b, " t%zu-root \", \\\"id\\\": \\\"\" [a-zA-Z0-9]{%d} \"\\\"}\"\n", i, MISTRAL_ID_LEN);
        else
            slm_buf_printf(&b, " t%zu-root \"}\"\n", i);
        char prefix[32];
        snprintf(prefix, sizeof prefix, "t%zu-", i);
        put_prefixed(&b, g, prefix);
        free(g);
    }
    if (b.oom) {
        slm_buf_free(&b);
        return slm_err(err, err_len, "tools: out of memory");
    }
    *gbnf_out = slm_buf_take(&b);
    return *gbnf_out ? 0 : slm_err(err, err_len, "tools: out of memory");
}

/* ---------- parsing ---------- */

enum { M_TEXT, M_PLAIN, M_HEAD, M_ARGS, M_TAIL, M_BETWEEN };

/* Fixed size, no allocation: a front end keeps it inside its own per-stream state and frees that
 * alone. What is held back is short (a possible trigger, a call's head, its closer). */
#define HOLD_CAP 1024
struct slm_tool_stream {
    const fmt_spec *fs;
    int mode;
    int n_calls;
    bool last_complete;
    bool any_output;
    int depth;
    bool in_str, esc;
    size_t len;
    char ids[SLM_TOOL_MAX_PARALLEL][16]; /* list formats: the ids the calls carry */
    char hold[HOLD_CAP]; /* received, not yet handed out */
};

size_t slm_tool_stream_size(void) { return sizeof(slm_tool_stream); }

slm_tool_stream *slm_tool_stream_init(void *mem, slm_tool_format f) {
    slm_tool_stream *st = mem;
    if (!st) return NULL;
    memset(st, 0, sizeof *st);
    st->fs = spec(f);
    return st;
}

slm_tool_stream *slm_tool_stream_new(slm_tool_format f) { return slm_tool_stream_init(malloc(sizeof(slm_tool_stream)), f); }

void slm_tool_stream_free(slm_tool_stream *st) { free(st); }

int slm_tool_stream_calls(const slm_tool_stream *st, bool *last_complete) {
    if (last_complete) *last_complete = st ? st->last_complete : false;
    return st ? st->n_calls : 0;
}

static void consume(slm_tool_stream *st, size_t n) {
    memmove(st->hold, st->hold + n, st->len - n);
    st->len -= n;
}

/* Length of the longest suffix of s[0..n) that is a proper prefix of t. */
static size_t partial_suffix(const char *s, size_t n, const char *t) {
    size_t k = strlen(t);
    for (size_t len = k - 1 < n ? k - 1 : n; len > 0; len--)
        if (memcmp(s + n - len, t, len) == 0) return len;
    return 0;
}

static const char *find_bytes(const char *s, size_t n, const char *t) {
    size_t k = strlen(t);
    for (size_t i = 0; k <= n && i <= n - k; i++)
        if (memcmp(s + i, t, k) == 0) return s + i;
    return NULL;
}

static size_t skip_ws(const char *s, size_t i, size_t n) {
    while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) i++;
    return i;
}

static bool process(slm_tool_stream *st, bool end, slm_tool_event_fn fn, void *user);

bool slm_tool_stream_feed(slm_tool_stream *st, const char *text, size_t len, bool end, slm_tool_event_fn fn, void *user) {
    if (!st) return false;
    do { /* in slices that fit the hold buffer; each pass leaves it nearly empty */
        size_t room = sizeof st->hold - st->len, take = len < room ? len : room;
        if (take) memcpy(st->hold + st->len, text, take);
        st->len += take;
        text += take;
        len -= take;
        if (!process(st, end && len == 0, fn, user)) return false;
        if (st->len == sizeof st->hold) st->mode = M_PLAIN; /* a head this long is no call of ours */
    } while (len > 0);
    return true;
}

static bool process(slm_tool_stream *st, bool end, slm_tool_event_fn fn, void *user) {
    const fmt_spec *fs = st->fs;
    for (;;) {
        char *s = st->hold;
        size_t n = st->len;
        if (n == 0) return true;
        switch (st->mode) {
        case M_TEXT: {
            if (!*fs->trigger) { /* the reply is a call when it starts with '{' */
                if (!st->any_output && s[0] == '{') {
                    st->mode = M_HEAD;
                } else {
                    st->mode = M_PLAIN;
                }
                st->any_output = true;
                continue;
            }
            const char *at = find_bytes(s, n, fs->trigger);
            if (at) {
                size_t pre = (size_t)(at - s);
                if (pre && !fn(user, SLM_TOOL_EV_CONTENT, -1, s, pre)) return false;
                consume(st, pre + strlen(fs->trigger));
                st->mode = M_HEAD;
                continue;
            }
            size_t keep = end ? 0 : partial_suffix(s, n, fs->trigger);
            if (n - keep && !fn(user, SLM_TOOL_EV_CONTENT, -1, s, n - keep)) return false;
            consume(st, n - keep);
            return true;
        }
        case M_PLAIN:
            if (!fn(user, SLM_TOOL_EV_CONTENT, -1, s, n)) return false;
            consume(st, n);
            return true;
        case M_HEAD: {
            /* {"name": "NAME", "<key>": then the arguments */
            char key[32];
            snprintf(key, sizeof key, "\"%s\"", fs->args_key);
            const char *k = find_bytes(s, n, key);
            const char *colon = k ? memchr(k, ':', n - (size_t)(k - s)) : NULL;
            if (!colon) return true; /* wait for more */
            const char *nm = find_bytes(s, (size_t)(k - s), "\"name\"");
            const char *q1 = nm ? memchr(nm + 6, '"', (size_t)(k - nm) - 6) : NULL;
            const char *q2 = q1 ? memchr(q1 + 1, '"', (size_t)(k - q1) - 1) : NULL;
            st->n_calls++;
            st->last_complete = false;
            if (!fn(user, SLM_TOOL_EV_CALL, st->n_calls - 1, q2 ? q1 + 1 : "", q2 ? (size_t)(q2 - q1 - 1) : 0))
                return false;
            consume(st, (size_t)(colon - s) + 1); /* blanks before the arguments: M_ARGS */
            st->mode = M_ARGS;
            st->depth = 0;
            st->in_str = st->esc = false;
            continue;
        }
        case M_ARGS: {
            size_t i = 0, from = 0;
            bool done = false;
            if (st->depth == 0) { /* before the object: skip blanks; anything else is not a call */
                from = i = skip_ws(s, 0, n);
                if (i == n) { /* blanks are held until it is clear what follows them */
                    if (end) consume(st, n);
                    return true;
                }
                if (s[i] != '{') {
                    st->mode = M_PLAIN;
                    continue;
                }
            }
            for (; i < n && !done; i++) {
                char c = s[i];
                if (st->in_str) {
                    if (st->esc) st->esc = false;
                    else if (c == '\\') st->esc = true;
                    else if (c == '"') st->in_str = false;
                } else if (c == '"') {
                    st->in_str = true;
                } else if (c == '{' || c == '[') {
                    st->depth++;
                } else if (c == '}' || c == ']') {
                    if (--st->depth <= 0) done = true;
                }
            }
            if (i > from && !fn(user, SLM_TOOL_EV_ARGUMENTS, st->n_calls - 1, s + from, i - from)) return false;
            consume(st, i);
            if (!done) return true;
            st->mode = M_TAIL;
            continue;
        }
        case M_TAIL: {
            /* "}" + close */
            size_t i = skip_ws(s, 0, n);
            if (i == n) return true;
            if (fs->list) {
                /* , "id": "ID"} then ", " and the next call, or the closing "]" */
                const char *rb = memchr(s + i, '}', n - i);
                const char *after = NULL;
                if (rb) {
                    size_t j = skip_ws(s, (size_t)(rb - s) + 1, n);
                    if (j < n) after = s + j;
                }
                if (!after) {
                    if (end || n == sizeof st->hold) st->mode = M_PLAIN;
                    else return true;
                    continue;
                }
                const char *idk = find_bytes(s + i, (size_t)(rb - s) - i, "\"id\"");
                if (s[i] != '}' && (s[i] != ',' || !idk)) {
                    st->mode = M_PLAIN;
                    continue;
                }
                if (idk && st->n_calls > 0 && st->n_calls <= SLM_TOOL_MAX_PARALLEL) {
                    const char *q1 = memchr(idk + 4, '"', (size_t)(rb - idk) - 4);
                    const char *q2 = q1 ? memchr(q1 + 1, '"', (size_t)(rb - q1) - 1) : NULL;
                    size_t idn = q2 ? (size_t)(q2 - q1 - 1) : 0;
                    if (idn >= sizeof st->ids[0]) idn = sizeof st->ids[0] - 1;
                    if (q2) memcpy(st->ids[st->n_calls - 1], q1 + 1, idn);
                    st->ids[st->n_calls - 1][idn] = 0;
                }
                if (*after != ',' && *after != ']') {
                    st->mode = M_PLAIN;
                    continue;
                }
                bool more = *after == ',';
                consume(st, (size_t)(after - s) + 1);
                st->last_complete = true;
                st->mode = more ? M_HEAD : M_BETWEEN;
                continue;
            }
            if (s[i] != '}') { /* not the format: what is left is text */
                st->mode = M_PLAIN;
                continue;
            }
            size_t cl = strlen(fs->close);
            if (n - i - 1 < cl) {
                if (memcmp(s + i + 1, fs->close, n - i - 1) != 0) st->mode = M_PLAIN;
                else if (!end) return true;
                else st->mode = M_PLAIN;
                continue;
            }
            if (memcmp(s + i + 1, fs->close, cl) != 0) {
                st->mode = M_PLAIN;
                continue;
            }
            consume(st, i + 1 + cl);
            st->last_complete = true;
            st->mode = M_BETWEEN;
            continue;
        }
        case M_BETWEEN: {
            size_t i = skip_ws(s, 0, n);
            if (i == n) { /* blanks are held until it is clear what follows them */
                if (end) consume(st, n);
                return true;
            }
            const char *t = *fs->trigger ? fs->trigger : "{";
            size_t tl = strlen(t);
            if (n - i < tl && memcmp(s + i, t, n - i) == 0 && !end) return true;
            if (n - i >= tl && memcmp(s + i, t, tl) == 0) {
                consume(st, i + (*fs->trigger ? tl : 0));
                st->mode = M_HEAD;
            } else {
                st->mode = M_PLAIN;
            }
            continue;
        }
        default: return false;
        }
    }
}

typedef struct collect {
    slm_buf content;
    slm_buf *args;
    char **names;
    size_t n, cap;
    bool oom;
} collect;

static bool on_collect(void *user, slm_tool_event_kind kind, int index, const char *text, size_t len) {
    collect *c = user;
    if (kind == SLM_TOOL_EV_CONTENT) return slm_buf_append(&c->content, text, len);
    if (kind == SLM_TOOL_EV_CALL) {
        if (c->n == c->cap) {
            size_t cap = c->cap ? c->cap * 2 : 4;
            slm_buf *a = realloc(c->args, cap * sizeof *a);
            if (!a) return false;
            c->args = a;
            char **nm = realloc(c->names, cap * sizeof *nm);
            if (!nm) return false;
            c->names = nm;
            c->cap = cap;
        }
        memset(&c->args[c->n], 0, sizeof c->args[c->n]);
        c->names[c->n] = strndup(text, len);
        if (!c->names[c->n]) return false;
        c->n++;
        return true;
    }
    if (index < 0 || (size_t)index >= c->n) return false;
    return slm_buf_append(&c->args[index], text, len);
}

void slm_tool_calls_free(slm_tool_call *calls, size_t n) {
    if (!calls) return;
    for (size_t i = 0; i < n; i++) {
        free(calls[i].id);
        free(calls[i].name);
        free(calls[i].arguments);
    }
    free(calls);
}

int slm_tool_parse(slm_tool_format f, const slm_tool *tools, size_t n_tools, const char *text, size_t len,
                   char **content, slm_tool_call **calls, size_t *n_calls, char *err, size_t err_len) {
    if (!content || !calls || !n_calls) return slm_err(err, err_len, "tools: no output pointer");
    *content = NULL;
    *calls = NULL;
    *n_calls = 0;
    slm_tool_stream *st = slm_tool_stream_new(f);
    collect c = {0};
    int rc = -1;
    if (!st || !slm_tool_stream_feed(st, text ? text : "", len, true, on_collect, &c)) {
        slm_err(err, err_len, "tools: out of memory");
        goto out;
    }
    bool complete;
    int started = slm_tool_stream_calls(st, &complete);
    if (started > 0 && !complete) {
        slm_err(err, err_len, "the output ends inside tool call %d", started - 1);
        goto out;
    }
    slm_tool_call *out = calloc(c.n ? c.n : 1, sizeof *out);
    if (!out) {
        slm_err(err, err_len, "tools: out of memory");
        goto out;
    }
    for (size_t i = 0; i < c.n; i++) {
        const slm_tool *t = NULL;
        for (size_t k = 0; k < n_tools && !t; k++)
            if (tools[k].name && strcmp(tools[k].name, c.names[i]) == 0) t = &tools[k];
        const char *a = c.args[i].s ? c.args[i].s : "";
        char verr[256];
        if (!t) {
            slm_err(err, err_len, "tool call %zu names no tool ('%.64s')", i, c.names[i]);
        } else if (slm_json_validate(t->parameters ? t->parameters : "{\"type\":\"object\"}", a, c.args[i].len, verr,
                                     sizeof verr) != 0) {
            slm_err(err, err_len, "tool call %zu (%s): arguments invalid: %s", i, t->name, verr);
            t = NULL;
        } else {
            json_error_t je;
            json_t *v = json_loadb(a, c.args[i].len, 0, &je);
            out[i].arguments = json_is_object(v) ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
            json_decref(v);
            out[i].name = strdup(t->name);
            bool id_ok = !(st->fs->list && i < SLM_TOOL_MAX_PARALLEL && st->ids[i][0]) || (out[i].id = strdup(st->ids[i]));
            if (!id_ok) {
                slm_err(err, err_len, "tools: out of memory");
                t = NULL;
            } else if (!out[i].arguments || !out[i].name) {
                slm_err(err, err_len, "tool call %zu (%s): arguments are not a JSON object", i, t->name);
                t = NULL;
            }
        }
        if (!t) {
            slm_tool_calls_free(out, c.n);
            goto out;
        }
    }
    *content = slm_buf_take(&c.content);
    if (!*content) *content = strdup("");
    if (!*content) {
        slm_tool_calls_free(out, c.n);
        slm_err(err, err_len, "tools: out of memory");
        goto out;
    }
    *calls = out;
    *n_calls = c.n;
    rc = 0;
out:
    for (size_t i = 0; i < c.n; i++) {
        slm_buf_free(&c.args[i]);
        free(c.names[i]);
    }
    free(c.args);
    free(c.names);
    slm_buf_free(&c.content);
    slm_tool_stream_free(st);
    return rc;
}
