/* Ollama wire format: /api/chat and /api/generate (NDJSON streaming by default), /api/embed,
 * /api/embeddings, /api/tags, /api/ps, /api/show, /api/version. Errors are {"error": "..."}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_lora.h"
#include "calls.h"
#include "ondemand.h"
#include "slm_models.h"
#include "handlers.h"
#include "messages.h"
#include "params.h"
#include "rag_chat.h"
#include "replies.h"
#include "tools.h"

typedef struct oll_calls {
    json_t *list;
    slm_buf args;
    json_t *cur; /* the function object being filled */
} oll_calls;

typedef struct oll_state {
    bool chat;
    char model[280];
    srv_server *srv;
    char line_head[2048]; /* {"model":<model>,"created_at":" dumped once; "" if it did not fit */
    size_t line_head_len;
    slm_tool_format tool_format;
    slm_tool_stream *calls; /* chat with tools: the output parsed for calls (memory after this struct) */
    oll_calls found;        /* the calls seen so far in the streamed (filtered) output */
    const char *route;      /* where the gate sent the call, for the last line */
    void *rag;              /* chat with "rag": the sources' citations (memory after this struct) */
} oll_state;

static void rfc3339_now(char *out, size_t cap) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, cap, "%s.%09ldZ", base, ts.tv_nsec);
}

static void rfc3339_time(long long t, char *out, size_t cap) {
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The name to echo back: Ollama clients expect "name:tag". */
static void echo_id(const char *id, char *out, size_t cap) { snprintf(out, cap, strchr(id, ':') ? "%s" : "%s:latest", id); }
static void echo_name(const srv_model *M, char *out, size_t cap) { echo_id(M->id, out, cap); }

static json_t *line_base(const oll_state *u) {
    char ts[48];
    rfc3339_now(ts, sizeof ts);
    return json_pack("{s:s, s:s}", "model", u->model, "created_at", ts);
}

/* Durations in nanoseconds, as Ollama reports them. */
static void add_stats(json_t *o, const slm_request *r) {
    double end = r->t_end > 0 ? r->t_end : slm_now();
    double first = r->t_first > 0 ? r->t_first : end;
    json_object_set_new(o, "total_duration", json_integer((json_int_t)((end - r->t_submit) * 1e9)));
    json_object_set_new(o, "load_duration", json_integer(0));
    json_object_set_new(o, "prompt_eval_count", json_integer(r->n_prompt - r->n_prompt_cached));
    json_object_set_new(o, "prompt_eval_duration", json_integer((json_int_t)((first - (r->t_start > 0 ? r->t_start : first)) * 1e9)));
    json_object_set_new(o, "eval_count", json_integer(r->n_tokens));
    json_object_set_new(o, "eval_duration", json_integer((json_int_t)((end - first) * 1e9)));
}

static json_t *context_tokens(const slm_request *r) {
    json_t *a = json_array();
    for (int i = 0; i < r->n_prompt; i++) json_array_append_new(a, json_integer(r->prompt[i]));
    for (int i = 0; i < r->n_tokens; i++) json_array_append_new(a, json_integer(r->tokens[i]));
    return a;
}

static json_t *final_object(const oll_state *u, slm_request *r, const char *text, size_t len) {
    json_t *o = line_base(u);
    if (u->chat)
        json_object_set_new(o, "message", json_pack("{s:s, s:s%}", "role", "assistant", "content", text, len));
    else
        json_object_set_new(o, "response", json_stringn(text, len));
    json_object_set_new(o, "done", json_true());
    json_object_set_new(o, "done_reason", json_string(slm_finish_name(r->finish)));
    if (!u->chat) json_object_set_new(o, "context", context_tokens(r));
    if (u->rag) srv_rag_reply_citations(u->rag, o, r->text, r->text_len); /* the answer is complete: read unlocked */
    add_stats(o, r);
    if (u->route) json_object_set_new(o, "route", json_string(u->route));
    return o;
}

static void make_line_head(oll_state *u) {
    json_t *obj = json_pack("{s:s}", "model", u->model);
    char *base = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    static const char created[] = ",\"created_at\":\"";
    size_t n = base ? strlen(base) : 0;
    if (n >= 2 && n - 1 + sizeof created < sizeof u->line_head) {
        memcpy(u->line_head, base, n - 1);
        memcpy(u->line_head + n - 1, created, sizeof created);
        u->line_head_len = n - 1 + sizeof created - 1;
    }
    free(base);
}

/* A text line written straight into the stream (the per-token path allocates nothing); the same
 * bytes as line_base + message/response + done:false through jansson. */
static bool emit_text_line(srv_stream *st, const oll_state *u, const srv_delta *d) {
    static const char chat_mid[] = "\",\"message\":{\"role\":\"assistant\",\"content\":";
    static const char gen_mid[] = "\",\"response\":";
    char ts[48];
    rfc3339_now(ts, sizeof ts);
    return srv_stream_write(st, u->line_head, u->line_head_len) && srv_stream_write(st, ts, strlen(ts)) &&
           (u->chat ? srv_stream_write(st, chat_mid, sizeof chat_mid - 1) : srv_stream_write(st, gen_mid, sizeof gen_mid - 1)) &&
           srv_stream_write_json_string(st, d->text, d->text_len) &&
           (u->chat ? srv_stream_write(st, "},\"done\":false}\n", 16) : srv_stream_write(st, ",\"done\":false}\n", 15));
}

/* Ollama's tool_calls: [{"function": {"name", "arguments": object}}], collected from the output's
 * call events (calls of a grammar-constrained reply; the parse stops at anything else). */

static void oll_calls_close(oll_calls *oc) {
    if (!oc->cur) return;
    json_error_t je;
    json_t *a = json_loadb(oc->args.s ? oc->args.s : "{}", oc->args.len ? oc->args.len : 2, 0, &je);
    json_object_set_new(oc->cur, "arguments", json_is_object(a) ? a : json_object());
    if (!json_is_object(a)) json_decref(a);
    oc->cur = NULL;
    slm_buf_clear(&oc->args);
}

static bool on_oll_call(void *user, slm_tool_event_kind kind, int index, const char *text, size_t len) {
    (void)index;
    oll_calls *oc = user;
    if (kind == SLM_TOOL_EV_CALL) {
        oll_calls_close(oc);
        oc->cur = json_pack("{s:s%}", "name", text, len);
        json_array_append_new(oc->list, json_pack("{s:O}", "function", oc->cur));
        json_decref(oc->cur); /* the list holds it */
    } else if (kind == SLM_TOOL_EV_ARGUMENTS) {
        slm_buf_append(&oc->args, text, len);
    }
    return true;
}

typedef struct oll_emit {
    srv_stream *st;
    oll_state *u;
} oll_emit;

/* Content streams as it comes; calls are collected from the same (output-filtered) text. */
static bool on_oll_event(void *user, slm_tool_event_kind kind, int index, const char *text, size_t len) {
    oll_emit *oe = user;
    if (kind != SLM_TOOL_EV_CONTENT) return on_oll_call(&oe->u->found, kind, index, text, len);
    json_t *o = line_base(oe->u);
    json_object_set_new(o, "message", json_pack("{s:s, s:s%}", "role", "assistant", "content", text, len));
    json_object_set_new(o, "done", json_false());
    return srv_stream_write_json(oe->st, "", o, "\n");
}

static void oll_state_cleanup(void *user) {
    oll_state *u = user;
    json_decref(u->found.list);
    slm_buf_free(&u->found.args);
}

/* With tools: text before the calls streams as content; the calls follow in one line when the
 * output is complete, as Ollama sends them. */
static bool emit_ollama_tools(srv_stream *st, slm_request *r, const srv_delta *d) {
    oll_state *u = st->user;
    oll_emit oe = {st, u};
    bool failed = d->done && r->finish != SLM_FINISH_STOP && r->finish != SLM_FINISH_LENGTH;
    bool ok = true;
    if (d->text_len > 0 || (d->done && !failed)) ok = slm_tool_stream_feed(u->calls, d->text, d->text_len, d->done, on_oll_event, &oe);
    if (ok && d->done) {
        if (failed)
            return srv_stream_write_json(st, "", json_pack("{s:s, s:i}", "error", slm_finish_message(r), "status", srv_finish_status(r)), "\n");
        oll_calls_close(&u->found);
        bool complete = false;
        if (r->finish == SLM_FINISH_STOP && slm_tool_stream_calls(u->calls, &complete) > 0 && complete &&
            json_array_size(u->found.list) > 0) {
            json_t *o = line_base(u);
            json_object_set_new(o, "message", json_pack("{s:s, s:s, s:O}", "role", "assistant", "content", "", "tool_calls", u->found.list));
            json_object_set_new(o, "done", json_false());
            ok = srv_stream_write_json(st, "", o, "\n");
        }
        if (ok) ok = srv_stream_write_json(st, "", final_object(u, r, "", 0), "\n");
    }
    return ok;
}

static bool emit_ollama(srv_stream *st, slm_request *r, const srv_delta *d) {
    oll_state *u = st->user;
    bool ok = true;
    if (d->text_len > 0 && u->line_head_len) {
        ok = emit_text_line(st, u, d);
    } else if (d->text_len > 0) {
        json_t *o = line_base(u);
        if (u->chat)
            json_object_set_new(o, "message", json_pack("{s:s, s:s%}", "role", "assistant", "content", d->text, d->text_len));
        else
            json_object_set_new(o, "response", json_stringn(d->text, d->text_len));
        json_object_set_new(o, "done", json_false());
        ok = srv_stream_write_json(st, "", o, "\n");
    }
    if (ok && d->done) {
        if (r->finish != SLM_FINISH_STOP && r->finish != SLM_FINISH_LENGTH)
            return srv_stream_write_json(st, "", json_pack("{s:s, s:i}", "error", slm_finish_message(r), "status", srv_finish_status(r)), "\n");
        ok = srv_stream_write_json(st, "", final_object(u, r, "", 0), "\n");
    }
    return ok;
}

/* Answer to a request without a prompt: Ollama's way of loading a model. */
static enum MHD_Result reply_load(srv_conn *c, const oll_state *u) {
    json_t *o = line_base(u);
    if (u->chat) json_object_set_new(o, "message", json_pack("{s:s, s:s}", "role", "assistant", "content", ""));
    else json_object_set_new(o, "response", json_string(""));
    json_object_set_new(o, "done", json_true());
    /* keep_alive 0 with nothing to generate is Ollama's way to unload: the hold ending does it */
    json_object_set_new(o, "done_reason", json_string(c->keep_alive == 0 ? "unload" : "load"));
    return srv_reply_json(c, 200, o);
}

static enum MHD_Result ollama_generate(srv_conn *c, bool chat) {
    srv_server *s = c->srv;
    srv_fail f = {0};
    json_t *req = srv_parse_body(c, &f);
    slm_request *r = NULL;
    srv_chat_msgs msgs = {0};
    srv_tools tools = {0};
    srv_rag_chat *rag = NULL;
    void *rag_reply = NULL;
    slm_chat_message gen_msgs[2]; /* /api/generate's system + prompt, as the gate sees them */
    slm_token *fresh = NULL;
    enum MHD_Result ret;
    if (!req) return srv_reply_fail(c, &f);
    const char *model = NULL, *prompt = "", *system = NULL, *tmpl = NULL;
    bool stream = true, raw = false;
    if (!srv_json_string(req, "model", &model, &f) || !srv_json_bool(req, "stream", &stream, &f) ||
        !srv_json_string(req, "template", &tmpl, &f) || !srv_parse_keep_alive(c, req, &f))
        goto fail;
    const srv_model *M = srv_pick_generative(c, model);
    if (!M) {
        ret = MHD_YES;
        goto out;
    }
    if (tmpl && *tmpl) {
        srv_failf(&f, 400, NULL, "template", "'template' is not supported: the model's chat template is used");
        goto fail;
    }
    oll_state u = {.chat = chat, .srv = s};
    echo_name(M, u.model, sizeof u.model);
    r = slm_request_new(SLM_REQ_GENERATE);
    if (!r) {
        srv_failf(&f, 500, NULL, NULL, "out of memory");
        goto fail;
    }
    if (!srv_parse_ollama_options(c, M, req, &r->gen, &f)) goto fail;
    if (!srv_lora_parse(c, M, json_object_get(req, "lora"), &f)) goto fail; /* llama-server's per-request adapters */
    int limit = srv_prompt_limit(c, M);
    if (chat) {
        if (!srv_parse_tools(M, req, &tools, &f) || !srv_tools_constrain(c, M, &tools, &r->gen, &f)) goto fail;
        srv_model_system_default(M, req);
        if (!srv_parse_messages(req, SRV_API_OLLAMA, &tools, &msgs, &f)) goto fail;
        if (msgs.n == 0) {
            ret = reply_load(c, &u);
            goto out;
        }
        if (!srv_rag_chat_begin(c, M, req, &msgs, &tools, &r->gen, &rag, &f)) goto fail;
        if (!srv_inspect(c, msgs.msgs, msgs.n, NULL, stream)) {
            ret = MHD_YES;
            goto out;
        }
        if (!srv_chat_tokenize(M, msgs.msgs, msgs.n, true, "messages", limit, &r->prompt, &r->n_prompt, &f)) goto fail;
    } else {
        if (!srv_json_string(req, "prompt", &prompt, &f) || !srv_json_string(req, "system", &system, &f) ||
            !srv_json_bool(req, "raw", &raw, &f))
            goto fail;
        json_t *rg = json_object_get(req, "rag");
        if (rg && !json_is_null(rg)) {
            srv_failf(&f, 400, "unsupported", "rag", "'rag' is served on /api/chat, not /api/generate");
            goto fail;
        }
        if (!system && M->system) system = M->system; /* the request's "system" overrides the model's */
        json_t *ctx = json_object_get(req, "context");
        size_t n_ctx_in = json_is_array(ctx) ? json_array_size(ctx) : 0;
        if (ctx && !json_is_null(ctx) && !json_is_array(ctx)) {
            srv_failf(&f, 400, NULL, "context", "'context' must be an array of token ids");
            goto fail;
        }
        if (!*prompt && n_ctx_in == 0) {
            ret = reply_load(c, &u);
            goto out;
        }
        if (n_ctx_in > (size_t)limit) {
            srv_failf(&f, 400, NULL, "context", "'context' has %zu tokens; the context per slot is %d", n_ctx_in, M->n_ctx);
            goto fail;
        }
        int n_fresh = 0;
        if (!raw && *prompt) { /* the prompt is a user message: text, never control tokens */
            size_t n = 0;
            if (system && *system) gen_msgs[n++] = (slm_chat_message){"system", system};
            gen_msgs[n++] = (slm_chat_message){"user", prompt};
            if (!srv_inspect(c, gen_msgs, n, NULL, stream)) {
                ret = MHD_YES;
                goto out;
            }
            if (!srv_chat_tokenize(M, gen_msgs, n, n_ctx_in == 0, "prompt", limit, &fresh, &n_fresh, &f)) goto fail;
        } else if (*prompt) { /* "raw": true is the documented opt-in for a prompt with control tokens */
            if (!srv_inspect(c, NULL, 0, prompt, stream)) {
                ret = MHD_YES;
                goto out;
            }
            if (!srv_tokenize(M, c->call.prompt, n_ctx_in == 0, true, "prompt", limit, &fresh, &n_fresh, &f)) goto fail;
        }
        if (n_ctx_in + (size_t)n_fresh > (size_t)limit) {
            srv_failf(&f, 400, NULL, "prompt", "'context' plus 'prompt' is %zu tokens; the context per slot is %d (never truncated)",
                      n_ctx_in + (size_t)n_fresh, M->n_ctx);
            goto fail;
        }
        r->n_prompt = (int)n_ctx_in + n_fresh;
        r->prompt = malloc((size_t)(r->n_prompt ? r->n_prompt : 1) * sizeof *r->prompt);
        if (!r->prompt) {
            srv_failf(&f, 500, NULL, NULL, "out of memory");
            goto fail;
        }
        if (n_ctx_in && !srv_json_token_ids(ctx, M->n_vocab, r->prompt)) {
            srv_failf(&f, 400, NULL, "context", "'context' must hold token ids in [0, %d)", M->n_vocab);
            goto fail;
        }
        if (n_fresh) memcpy(r->prompt + n_ctx_in, fresh, (size_t)n_fresh * sizeof *fresh);
    }
    if (r->n_prompt == 0) {
        srv_failf(&f, 400, NULL, chat ? "messages" : "prompt", "the prompt has no tokens");
        goto fail;
    }
    srv_mark_prompt(c, M, r->n_prompt);
    if (!srv_submit(c, r)) {
        ret = MHD_YES;
        goto out;
    }
    bool with_tools = chat && srv_tools_active(&tools);
    u.tool_format = tools.format;
    u.route = c->call.route;
    if (stream) {
        size_t tools_size = with_tools ? slm_tool_stream_size() : 0;
        oll_state *us = malloc(sizeof *us + tools_size + srv_rag_reply_size(rag));
        if (!us) {
            atomic_store(&r->cancelled, true);
            srv_failf(&f, 500, NULL, NULL, "out of memory");
            goto fail;
        }
        *us = u;
        us->rag = srv_rag_reply_init((char *)(us + 1) + tools_size, rag);
        if (with_tools) {
            us->calls = slm_tool_stream_init(us + 1, tools.format);
            us->found.list = json_array();
        }
        make_line_head(us);
        ret = srv_reply_stream_owning(c, r, "application/x-ndjson", with_tools ? emit_ollama_tools : emit_ollama, us,
                                      oll_state_cleanup);
        goto out;
    }
    if (!srv_wait_done(c, r)) {
        ret = MHD_NO;
        goto out;
    }
    if (r->finish != SLM_FINISH_STOP && r->finish != SLM_FINISH_LENGTH) {
        ret = srv_reply_finish_error(c, r);
        goto out;
    }
    if (rag && (rag_reply = malloc(srv_rag_reply_size(rag)))) u.rag = srv_rag_reply_init(rag_reply, rag);
    size_t text_len;
    char *text = srv_final_text(c, r, &text_len);
    if (!text) {
        ret = srv_reply_error(c, 500, NULL, NULL, "out of memory");
        goto out;
    }
    char *content = NULL, terr[256];
    slm_tool_call *calls = NULL;
    size_t n_calls = 0;
    /* masked by the output filter: the arguments no longer need to match the schema the generated ones did */
    bool filtered = text_len != r->text_len || (text_len > 0 && memcmp(text, r->text, text_len) != 0);
    slm_tool *any = with_tools && filtered ? calloc(tools.n ? tools.n : 1, sizeof *any) : NULL;
    for (size_t i = 0; any && i < tools.n; i++) any[i] = (slm_tool){tools.tools[i].name, tools.tools[i].description, NULL};
    if (with_tools && r->finish == SLM_FINISH_STOP && (!filtered || any) &&
        slm_tool_parse(tools.format, any ? any : tools.tools, tools.n, text, text_len, &content, &calls, &n_calls, terr,
                       sizeof terr) == 0 &&
        n_calls > 0) {
        json_t *o = final_object(&u, r, content, strlen(content));
        json_t *list = json_array();
        for (size_t i = 0; i < n_calls; i++) {
            json_error_t je;
            json_t *args = json_loads(calls[i].arguments, 0, &je);
            json_array_append_new(list, json_pack("{s:{s:s, s:o}}", "function", "name", calls[i].name, "arguments",
                                                  json_is_object(args) ? args : json_object()));
            if (args && !json_is_object(args)) json_decref(args);
        }
        json_object_set_new(json_object_get(o, "message"), "tool_calls", list);
        ret = srv_reply_json(c, 200, o);
    } else {
        ret = srv_reply_json(c, 200, final_object(&u, r, text, text_len));
    }
    free(any);
    free(content);
    slm_tool_calls_free(calls, n_calls);
    free(text);
    goto out;
fail:
    ret = srv_reply_fail(c, &f);
out:
    srv_forget_texts(c);
    free(fresh);
    free(rag_reply);
    srv_rag_chat_end(rag, &msgs);
    srv_chat_msgs_free(&msgs);
    srv_tools_free(&tools);
    slm_request_release(r);
    json_decref(req);
    return ret;
}

enum MHD_Result srv_ollama_chat(srv_conn *c) { return ollama_generate(c, true); }
enum MHD_Result srv_ollama_generate(srv_conn *c) { return ollama_generate(c, false); }

enum MHD_Result srv_ollama_embed(srv_conn *c, bool legacy) {
    srv_fail f = {0};
    json_t *req = srv_parse_body(c, &f);
    slm_request *r = NULL;
    enum MHD_Result ret;
    if (!req) return srv_reply_fail(c, &f);
    const char *model = NULL;
    if (!srv_json_string(req, "model", &model, &f) || !srv_parse_keep_alive(c, req, &f)) goto fail;
    const srv_model *M = srv_pick_model(c, model);
    if (!M) {
        ret = MHD_YES;
        goto out;
    }
    const char *field = legacy ? "prompt" : "input";
    json_t *input = json_object_get(req, field);
    if (!input || (legacy && !json_is_string(input))) {
        srv_failf(&f, 400, NULL, field, "'%s' is required%s", field, legacy ? " and must be a string" : "");
        goto fail;
    }
    if (!srv_embed_run(c, M, input, field, false, &r, &f, &ret)) {
        if (f.status) goto fail;
        goto out;
    }
    json_t *all = json_array();
    for (int i = 0; i < r->n_embed; i++) {
        json_t *v = json_array();
        for (int k = 0; k < M->n_embd; k++) json_array_append_new(v, json_real(r->embeddings[(size_t)i * (size_t)M->n_embd + (size_t)k]));
        json_array_append_new(all, v);
    }
    if (legacy) {
        json_t *one = json_incref(json_array_get(all, 0));
        json_decref(all);
        ret = srv_reply_json(c, 200, json_pack("{s:o}", "embedding", one));
    } else {
        char name[280];
        echo_name(M, name, sizeof name);
        json_t *o = json_pack("{s:s, s:o}", "model", name, "embeddings", all);
        json_object_set_new(o, "total_duration", json_integer((json_int_t)((r->t_end - r->t_submit) * 1e9)));
        json_object_set_new(o, "load_duration", json_integer(0));
        json_object_set_new(o, "prompt_eval_count", json_integer(r->n_embed_tokens));
        ret = srv_reply_json(c, 200, o);
    }
    goto out;
fail:
    ret = srv_reply_fail(c, &f);
out:
    slm_request_release(r);
    json_decref(req);
    return ret;
}

/* Ollama's "details" from the model's description ("llama 135M Q8_0": words 2 and 3). */
static json_t *details_of(const char *arch, const char *desc) {
    char params[32] = "", quant[32] = "";
    sscanf(desc, "%*s %31s %31s", params, quant);
    return json_pack("{s:s, s:s, s:s, s:[s], s:s, s:s}", "parent_model", "", "format", "gguf", "family", arch, "families",
                     arch, "parameter_size", params, "quantization_level", quant);
}

static json_t *details_json(const srv_model *M) { return details_of(slm_model_arch(M->model), slm_model_desc(M->model)); }


static const char *store_of(const srv_server *s) { return s->store ? slm_store_dir(s->store) : NULL; }

/* The store's digest of a model name, without "sha256:" as Ollama shows it ("" when not stored). */
static void digest_of(const srv_server *s, const char *name, char *out, size_t cap) {
    out[0] = 0;
    slm_model_entry e;
    char err[256];
    if (store_of(s) && slm_models_find(store_of(s), name, &e, NULL, err, sizeof err) == 1)
        snprintf(out, cap, "%s", strncmp(e.digest, "sha256:", 7) == 0 ? e.digest + 7 : e.digest);
}

/* /api/ps: what is resident now, and when each on-demand model will be unloaded. */
static enum MHD_Result list_running(srv_conn *c) {
    srv_server *s = c->srv;
    slm_engine_model_info info[SLM_ENGINE_MAX_MODELS];
    int n = slm_engine_models(s->engine, info, SLM_ENGINE_MAX_MODELS);
    json_t *models = json_array();
    for (int i = 0; i < n; i++) {
        char name[280], expires[40], digest[128];
        echo_id(info[i].name, name, sizeof name);
        if (info[i].expires_unix > 0)
            rfc3339_time((long long)info[i].expires_unix, expires, sizeof expires);
        else
            snprintf(expires, sizeof expires, "9999-12-31T23:59:59Z"); /* --model ones and keep_alive -1: until the server stops */
        digest_of(s, info[i].name, digest, sizeof digest);
        json_array_append_new(models, json_pack("{s:s, s:s, s:I, s:s, s:o, s:s, s:i, s:i, s:b}", "name", name, "model",
                                                name, "size", (json_int_t)info[i].bytes, "digest", digest, "details",
                                                details_of(info[i].arch, info[i].desc), "expires_at", expires,
                                                "size_vram", 0, "context_length", info[i].n_ctx, "pinned",
                                                info[i].pinned));
    }
    return srv_reply_json(c, 200, json_pack("{s:o}", "models", models));
}

/* /api/tags: every model a request may name: the --model ones and everything in the store. */
enum MHD_Result srv_ollama_tags(srv_conn *c, bool running) {
    if (running) return list_running(c);
    srv_server *s = c->srv;
    json_t *models = json_array();
    for (int i = 0; i < s->n_models; i++) {
        const srv_model *M = &s->models[i];
        char name[280], modified[40], digest[128];
        echo_name(M, name, sizeof name);
        rfc3339_time(M->created, modified, sizeof modified);
        digest_of(s, M->id, digest, sizeof digest);
        json_array_append_new(models, json_pack("{s:s, s:s, s:I, s:s, s:o, s:s}", "name", name, "model", name, "size",
                                                (json_int_t)slm_model_size_bytes(M->model), "digest", digest, "details",
                                                details_json(M), "modified_at", modified));
    }
    slm_model_entry *stored = NULL;
    char err[256];
    int n = store_of(s) ? slm_models_list(store_of(s), &stored, err, sizeof err) : 0;
    for (int i = 0; i < n; i++) {
        char name[160], modified[40];
        snprintf(name, sizeof name, "%s:%s", stored[i].name, stored[i].tag);
        bool listed = false;
        for (int k = 0; k < s->n_models && !listed; k++) {
            char shown[280];
            echo_name(&s->models[k], shown, sizeof shown);
            listed = strcmp(shown, name) == 0;
        }
        if (listed || strcmp(stored[i].kind, "adapter") == 0) continue; /* adapters are no model to name */
        rfc3339_time((long long)stored[i].created, modified, sizeof modified);
        const char *digest = strncmp(stored[i].digest, "sha256:", 7) == 0 ? stored[i].digest + 7 : stored[i].digest;
        json_array_append_new(models, json_pack("{s:s, s:s, s:I, s:s, s:o, s:s}", "name", name, "model", name, "size",
                                                (json_int_t)stored[i].size, "digest", digest, "details",
                                                details_of(stored[i].arch, ""), "modified_at", modified));
    }
    free(stored);
    return srv_reply_json(c, 200, json_pack("{s:o}", "models", models));
}

enum MHD_Result srv_ollama_show(srv_conn *c) {
    srv_fail f = {0};
    json_t *req = srv_parse_body(c, &f);
    if (!req) return srv_reply_fail(c, &f);
    const char *model = NULL, *name = NULL;
    if (!srv_json_string(req, "model", &model, &f) || !srv_json_string(req, "name", &name, &f)) {
        json_decref(req);
        return srv_reply_fail(c, &f);
    }
    const char *want = model ? model : name;
    if (!want || !*want) {
        json_decref(req);
        return srv_reply_error(c, 400, NULL, "model", "'model' is required");
    }
    const srv_model *M = srv_pick_model(c, want);
    json_decref(req);
    if (!M) return MHD_YES;
    const char *arch = slm_model_arch(M->model);
    json_t *info = json_object();
    json_object_set_new(info, "general.architecture", json_string(arch));
    char key[128];
    snprintf(key, sizeof key, "%s.context_length", arch);
    json_object_set_new(info, key, json_integer(slm_model_n_ctx_train(M->model)));
    snprintf(key, sizeof key, "%s.embedding_length", arch);
    json_object_set_new(info, key, json_integer(M->n_embd));
    const char *mname = slm_model_meta(M->model, "general.name");
    if (mname) json_object_set_new(info, "general.name", json_string(mname));
    const char *tmpl = slm_model_meta(M->model, "tokenizer.chat_template");
    char params[160];
    snprintf(params, sizeof params, "num_ctx %d", M->n_ctx);
    return srv_reply_json(c, 200,
                          json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "modelfile", "", "parameters", params, "template",
                                    tmpl ? tmpl : "", "details", details_json(M), "model_info", info, "capabilities",
                                    slm_model_is_embedding(M->model) ? json_pack("[s, s]", "completion", "embedding")
                                                                     : json_pack("[s, s, s]", "completion", "embedding", "tools")));
}

enum MHD_Result srv_ollama_version(srv_conn *c) { return srv_reply_json(c, 200, json_pack("{s:s}", "version", SLM_VERSION)); }
