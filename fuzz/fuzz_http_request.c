/* libFuzzer target for the server's request path (src/server), without sockets. The first input
 * byte picks what the rest drives:
 *
 *  - a request body for one of the endpoints (OpenAI chat/completions/embeddings, Ollama
 *    chat/generate/embed): the same pure steps the handlers run, in the same order
 *    (srv_parse_body, the sampling/option parsers with structured-output constraints compiled
 *    within their limits, the tools and tool_choice with the calls' grammar compiled, srv_parse_messages
 *    with tool calls and results written in the tools' format, srv_chat_tokenize / srv_tokenize,
 *    srv_build_embed_request). A failure carries a 4xx/5xx and a one-line message; a success is a
 *    request within the documented limits. Every path frees what it built (LeakSanitizer).
 *  - the connection bookkeeping (transport.c): connections opening, changing phase, closing and
 *    the clock moving, as a script. After every step: the list is intact, nothing not cut is past
 *    its deadline after a sweep, and opening past max_connections - reserve cuts exactly one
 *    older connection that is not being answered (when there is one).
 *  - a streamed response (replies.c): text arriving, libmicrohttpd's reader taking it in pieces of
 *    any size, the watchdog measuring the backlog. A stream is dropped exactly when its backlog
 *    passes the bound; what the client got is the text, in order (all of it unless dropped).
 *  - the request-log escaping and the server-wide body budget.
 *  - generated text read for tool calls (src/chat/tools.c): fed in pieces of any size, the parser
 *    reports the same content, calls and arguments as when fed at once; slm_tool_parse never
 *    returns a call whose arguments are not a JSON object valid against its tool.
 *
 * The model is a vocab-only GGUF: $SLM_FUZZ_VOCAB, else smollm2-135m-vocab.gguf in
 * $SLM_TEST_MODELS (default <source>/build/testdata). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_server.h"
#include "server/calls.h"
#include "server/fields.h"
#include "server/messages.h"
#include "server/params.h"
#include "server/replies.h"
#include "server/tools.h"
#include "server/transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    EP_OPENAI_CHAT,
    EP_OPENAI_COMPLETIONS,
    EP_OPENAI_EMBEDDINGS,
    EP_OLLAMA_CHAT,
    EP_OLLAMA_GENERATE,
    EP_OLLAMA_EMBED,
    MODE_CONNECTIONS,
    MODE_STREAM,
    MODE_LOG_AND_BUDGET,
    MODE_TOOL_OUTPUT,
    MODE_COUNT
};

static srv_server server;

static void setup(void) { fuzz_server_setup(&server, "fuzz_http_request"); }

static void check_fail(const srv_fail *f) { fuzz_check_fail(f); }

/* A parsed generation request is inside the limits the parsers promise. */
static void check_gen(const srv_model *M, const slm_gen_params *p) {
    const slm_sampler_params *sp = &p->sampling;
    if (!(sp->temperature >= 0 && sp->temperature <= 100)) __builtin_trap();
    if (!(sp->top_p > 0 && sp->top_p <= 1)) __builtin_trap();
    if (sp->top_k < 0 || !(sp->min_p >= 0 && sp->min_p <= 1)) __builtin_trap();
    if (!(sp->repeat_penalty > 0 && sp->repeat_penalty <= 100)) __builtin_trap();
    if (!isfinite(sp->presence_penalty) || !isfinite(sp->frequency_penalty)) __builtin_trap();
    if (p->max_tokens < 0 || p->max_tokens > (1 << 24) || p->min_tokens < 0) __builtin_trap();
    if (p->n_stop < 0 || p->n_stop > SLM_MAX_STOP) __builtin_trap();
    for (int i = 0; i < p->n_stop; i++) {
        size_t n = strlen(p->stop[i]);
        if (n == 0 || n > 256) __builtin_trap();
    }
    if (p->top_logprobs < 0 || p->top_logprobs > SLM_MAX_TOP_LOGPROBS) __builtin_trap();
    if (sp->n_logit_bias < 0 || sp->n_logit_bias > 1024) __builtin_trap();
    if (sp->n_logit_bias > 0 && sp->logit_bias != p->logit_bias) __builtin_trap();
    int banned = 0;
    for (int i = 0; i < sp->n_logit_bias; i++) {
        const slm_logit_bias *b = &sp->logit_bias[i];
        if (b->token < 0 || b->token >= M->n_vocab) __builtin_trap();
        if (!(b->bias >= -100 && b->bias <= 100) && b->bias != -INFINITY) __builtin_trap();
        banned += isinf(b->bias) != 0;
    }
    if (banned >= M->n_vocab) __builtin_trap(); /* must have been a 400 */
}

static void check_tokens(const srv_model *M, const slm_token *t, int n, int limit) {
    if (n < 0 || n > limit) __builtin_trap();
    for (int i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= M->n_vocab) __builtin_trap();
}

static bool chat_prompt(const srv_model *M, json_t *req, srv_api api, const srv_tools *tools, slm_request *r,
                        srv_chat_msgs *msgs, srv_fail *f) {
    if (!srv_parse_messages(req, api, tools, msgs, f)) return false;
    for (size_t i = 0; i < msgs->n; i++)
        if (!msgs->msgs[i].role || !msgs->msgs[i].content) __builtin_trap();
    if (msgs->n == 0) return true;
    if (!srv_chat_tokenize(M, msgs->msgs, msgs->n, true, "messages", M->n_ctx - 1, &r->prompt, &r->n_prompt, f)) return false;
    check_tokens(M, r->prompt, r->n_prompt, M->n_ctx - 1);
    return true;
}

static bool generate(srv_conn *c, json_t *req, int endpoint, srv_fail *f) {
    const srv_model *M = &c->srv->models[0];
    slm_request *r = slm_request_new(SLM_REQ_GENERATE);
    if (!r) return srv_failf(f, 500, NULL, NULL, "out of memory");
    srv_chat_msgs msgs = {0};
    srv_tools tools = {0};
    bool chat = endpoint == EP_OPENAI_CHAT || endpoint == EP_OLLAMA_CHAT;
    bool ok = endpoint == EP_OLLAMA_CHAT || endpoint == EP_OLLAMA_GENERATE
                  ? srv_parse_ollama_options(c, M, req, &r->gen, f)
                  : srv_parse_openai_sampling(c, M, req, chat, &r->gen, f);
    if (ok) {
        check_gen(M, &r->gen);
        if (chat) {
            ok = srv_parse_tools(M, req, &tools, f) && srv_tools_constrain(c, M, &tools, &r->gen, f);
            if (ok && srv_tools_active(&tools) && (!r->gen.grammar || tools.n > SRV_MAX_TOOLS)) __builtin_trap();
            if (ok) ok = chat_prompt(M, req, c->api, &tools, r, &msgs, f);
        } else {
            json_t *prompt = json_object_get(req, "prompt");
            if (json_is_string(prompt)) {
                ok = srv_tokenize(M, json_string_value(prompt), true, false, "prompt", M->n_ctx - 1, &r->prompt, &r->n_prompt, f);
                if (ok) check_tokens(M, r->prompt, r->n_prompt, M->n_ctx - 1);
            }
        }
    }
    srv_chat_msgs_free(&msgs);
    srv_tools_free(&tools);
    slm_request_release(r);
    return ok;
}

/* ---------- tool calls read back from generated text ---------- */

typedef struct tool_events {
    slm_buf content, names, args; /* names: "|index:name" per call; args: "|" + its pieces per call */
} tool_events;

static bool on_tool_event(void *user, slm_tool_event_kind kind, int index, const char *text, size_t len) {
    tool_events *e = user;
    if (kind == SLM_TOOL_EV_CONTENT) return slm_buf_append(&e->content, text, len);
    /* the pieces of one call's arguments join; a new call starts a new entry in both lists */
    if (kind == SLM_TOOL_EV_CALL)
        return slm_buf_printf(&e->names, "|%d:", index) && slm_buf_append(&e->names, text, len) && slm_buf_puts(&e->args, "|");
    return slm_buf_append(&e->args, text, len);
}

static void run_tool_output(const uint8_t *data, size_t size) {
    if (size < 2) return;
    slm_tool_format fmt = (slm_tool_format)(data[0] % 3);
    size_t cut_seed = data[1];
    const char *text = (const char *)data + 2;
    size_t n = size - 2;
    tool_events whole = {0}, parts = {0};
    slm_tool_stream *a = slm_tool_stream_new(fmt), *b = slm_tool_stream_new(fmt);
    if (!a || !b || !slm_tool_stream_feed(a, text, n, true, on_tool_event, &whole)) __builtin_trap();
    size_t off = 0;
    do { /* pieces of 1..13 bytes; the last one ends the text */
        size_t piece = 1 + (cut_seed * 7 + off) % 13;
        if (piece > n - off) piece = n - off;
        if (!slm_tool_stream_feed(b, text + off, piece, off + piece == n, on_tool_event, &parts)) __builtin_trap();
        off += piece;
    } while (off < n);
    bool ca, cb;
    int na = slm_tool_stream_calls(a, &ca), nb = slm_tool_stream_calls(b, &cb);
    /* the hold buffer may decide differently only for heads longer than it (not a call of ours) */
    if (n < 900 && (na != nb || ca != cb || whole.content.len != parts.content.len ||
                    (whole.content.len && memcmp(whole.content.s, parts.content.s, whole.content.len) != 0) ||
                    whole.names.len != parts.names.len ||
                    (whole.names.len && memcmp(whole.names.s, parts.names.s, whole.names.len) != 0) ||
                    whole.args.len != parts.args.len ||
                    (whole.args.len && memcmp(whole.args.s, parts.args.s, whole.args.len) != 0)))
        __builtin_trap();
    static const slm_tool tools[2] = {{"f", NULL, "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}"},
                                      {"g", "second", NULL}};
    char *content = NULL, err[256];
    slm_tool_call *calls = NULL;
    size_t n_calls = 0;
    if (slm_tool_parse(fmt, tools, 2, text, n, &content, &calls, &n_calls, err, sizeof err) == 0) {
        for (size_t i = 0; i < n_calls; i++) {
            const slm_tool *t = strcmp(calls[i].name, "f") == 0 ? &tools[0] : &tools[1];
            if (slm_json_validate(t->parameters ? t->parameters : "{\"type\":\"object\"}", calls[i].arguments,
                                  strlen(calls[i].arguments), err, sizeof err) != 0)
                __builtin_trap();
        }
        free(content);
        slm_tool_calls_free(calls, n_calls);
    } else if (content || calls) {
        __builtin_trap();
    }
    slm_tool_stream_free(a);
    slm_tool_stream_free(b);
    slm_buf_free(&whole.content);
    slm_buf_free(&whole.names);
    slm_buf_free(&whole.args);
    slm_buf_free(&parts.content);
    slm_buf_free(&parts.names);
    slm_buf_free(&parts.args);
}

static bool embed(srv_conn *c, json_t *req, bool allow_tokens, srv_fail *f) {
    const srv_model *M = &c->srv->models[0];
    json_t *inputs = json_object_get(req, "input");
    if (!inputs) return true; /* the handlers answer 400 themselves */
    slm_request *r = NULL;
    if (!srv_build_embed_request(M, inputs, "input", allow_tokens, &r, f)) {
        if (r) __builtin_trap();
        return false;
    }
    if (!r || r->kind != SLM_REQ_EMBED || r->n_embed < 1) __builtin_trap();
    for (int i = 0; i < r->n_embed; i++) check_tokens(M, r->embed_inputs[i], r->embed_lens[i], M->n_ctx);
    slm_request_release(r);
    return true;
}

static void run_body(int endpoint, const uint8_t *data, size_t size) {
    srv_conn c = {.srv = &server};
    c.api = endpoint >= EP_OLLAMA_CHAT ? SRV_API_OLLAMA : SRV_API_OPENAI;
    if (!slm_buf_append(&c.body, (const char *)data, size) && size) return;
    srv_fail f = {0};
    json_t *req = srv_parse_body(&c, &f);
    if (!req) {
        check_fail(&f);
    } else {
        bool ok = endpoint == EP_OPENAI_EMBEDDINGS || endpoint == EP_OLLAMA_EMBED
                      ? embed(&c, req, endpoint == EP_OPENAI_EMBEDDINGS, &f)
                      : generate(&c, req, endpoint, &f);
        if (!ok) check_fail(&f);
        json_decref(req);
    }
    slm_buf_free(&c.body);
}

/* ---------- input reader ---------- */

typedef struct input {
    const uint8_t *p;
    size_t n;
} input;

static int next(input *in) {
    if (!in->n) return -1;
    in->n--;
    return *in->p++;
}

/* ---------- connection bookkeeping ---------- */

#define MAX_SOCKS 64

static void check_list(srv_server *s, const bool *open, const srv_sock *socks) {
    int n = 0, want = 0;
    const srv_sock *prev = NULL;
    for (const srv_sock *k = s->socks; k; k = k->next) {
        if (k < socks || k >= socks + MAX_SOCKS || !open[k - socks]) __builtin_trap();
        if (prev && k->prev != prev) __builtin_trap();
        prev = k;
        if (++n > MAX_SOCKS) __builtin_trap();
    }
    if (s->socks && s->socks->prev != prev) __builtin_trap(); /* head->prev is the tail */
    for (int i = 0; i < MAX_SOCKS; i++) want += open[i];
    if (n != want || s->n_socks != want) __builtin_trap();
}

static void run_connections(input *in) {
    static srv_server s;
    static srv_sock socks[MAX_SOCKS];
    static bool inited;
    if (!inited) {
        pthread_mutex_init(&s.socks_mu, NULL);
        inited = true;
    }
    srv_config_defaults(&s.cfg);
    s.socks = NULL;
    s.n_socks = 0;
    s.streams = NULL;
    bool open[MAX_SOCKS] = {0};
    int b;
    s.cfg.max_connections = 2 + ((b = next(in)) < 0 ? 0 : b % 40);
    s.cfg.reserve_connections = (b = next(in)) < 0 ? 0 : b % 8;
    s.cfg.header_timeout_s = 1 + ((b = next(in)) < 0 ? 0 : b % 5);
    s.cfg.body_timeout_s = 1 + ((b = next(in)) < 0 ? 0 : b % 5);
    s.cfg.idle_timeout_s = 1 + ((b = next(in)) < 0 ? 0 : b % 5);
    double now = 1000;
    int op;
    while ((op = next(in)) >= 0) {
        int arg = next(in);
        if (arg < 0) arg = 0;
        srv_sock *k = &socks[arg % MAX_SOCKS];
        bool is_open = open[arg % MAX_SOCKS];
        switch (op % 6) {
        case 0: { /* open */
            if (is_open) break;
            memset(k, 0, sizeof *k);
            k->fd = -1;
            int before = 0, candidates = 0;
            for (srv_sock *o = s.socks; o; o = o->next) {
                before += o->cut;
                candidates += !o->cut && o->phase != SRV_SOCK_BUSY;
            }
            srv_sock_opened(&s, k, now);
            open[arg % MAX_SOCKS] = true;
            int after = 0;
            for (srv_sock *o = s.socks; o; o = o->next) after += o->cut;
            int reserve = s.cfg.reserve_connections > 0 ? s.cfg.reserve_connections : s.cfg.max_connections / 8 < 4 ? 4 : s.cfg.max_connections / 8;
            if (reserve >= s.cfg.max_connections) reserve = s.cfg.max_connections - 1;
            bool over = s.n_socks > s.cfg.max_connections - reserve;
            if (after != before + (over && candidates > 0)) __builtin_trap();
            if (k->cut || k->phase != SRV_SOCK_HEADERS || k->deadline != now + s.cfg.header_timeout_s) __builtin_trap();
            break;
        }
        case 1: /* close */
            if (!is_open) break;
            srv_sock_closed(&s, k);
            open[arg % MAX_SOCKS] = false;
            break;
        case 2: /* headers in: the body's deadline */
            if (is_open) srv_sock_set_phase(&s, k, SRV_SOCK_BODY, now + s.cfg.body_timeout_s);
            break;
        case 3: /* being answered */
            if (is_open) srv_sock_set_phase(&s, k, SRV_SOCK_BUSY, 0);
            break;
        case 4: /* answered: keep-alive, waiting for the next headers */
            if (is_open) srv_sock_set_phase(&s, k, SRV_SOCK_HEADERS, now + s.cfg.idle_timeout_s);
            break;
        case 5: { /* the clock moves, the watchdog sweeps */
            now += (arg % 64) / 8.0;
            srv_socks_sweep(&s, now);
            for (srv_sock *o = s.socks; o; o = o->next)
                if (!o->cut && o->deadline > 0 && now > o->deadline) __builtin_trap();
            break;
        }
        }
        check_list(&s, open, socks);
    }
    for (int i = 0; i < MAX_SOCKS; i++)
        if (open[i]) srv_sock_closed(&s, &socks[i]);
    if (s.socks || s.n_socks) __builtin_trap();
}

/* ---------- a streamed response ---------- */

/* The simplest formatter: the text as it is, then one end marker. */
static bool emit_plain(srv_stream *st, slm_request *r, const srv_delta *d) {
    (void)r;
    if (d->text_len && !srv_stream_write(st, d->text, d->text_len)) return false;
    return !d->done || srv_stream_write(st, "<END>", 5);
}

static bool can_progress(srv_stream *st) {
    slm_request *r = st->r;
    pthread_mutex_lock(&r->mu);
    bool ok = st->out_off < st->out.len || r->text_len > st->text_seen || r->done || atomic_load(&st->dropped);
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static void run_stream(input *in) {
    static srv_server s;
    static bool inited;
    if (!inited) {
        pthread_mutex_init(&s.socks_mu, NULL);
        inited = true;
    }
    srv_config_defaults(&s.cfg);
    s.streams = NULL;
    int b = next(in);
    s.cfg.stream_buffer_bytes = 1 + (size_t)(b < 0 ? 0 : b) * 4;
    slm_request *r = slm_request_new(SLM_REQ_GENERATE);
    srv_stream *st = calloc(1, sizeof *st);
    if (!r || !st) {
        slm_request_release(r);
        free(st);
        return;
    }
    st->srv = &s;
    st->r = r;
    st->call.backend = -1;
    st->fd = -1;
    st->emit = emit_plain;
    slm_request_retain(r);
    srv_stream_register(&s, st);
    slm_buf sent = {0}, got = {0};
    char buf[128];
    bool ended = false, dropped = false;
    int op;
    while (!ended && (op = next(in)) >= 0) {
        int arg = next(in);
        if (arg < 0) arg = 0;
        switch (op % 4) {
        case 0: { /* the engine releases text */
            size_t n = (size_t)arg % 48;
            if (n > in->n) n = in->n;
            pthread_mutex_lock(&r->mu);
            if (!r->done && slm_grow((void **)&r->text, &r->text_cap, r->text_len + n + 1, 1, 64)) {
                memcpy(r->text + r->text_len, in->p, n);
                r->text_len += n;
                r->text[r->text_len] = 0;
                slm_buf_append(&sent, (const char *)in->p, n);
            }
            pthread_mutex_unlock(&r->mu);
            in->p += n;
            in->n -= n;
            break;
        }
        case 1: { /* libmicrohttpd asks for up to `max` bytes */
            if (!can_progress(st)) break;
            size_t max = 1 + (size_t)arg % sizeof buf;
            ssize_t n = srv_stream_read(st, 0, buf, max);
            if (n > 0) {
                if ((size_t)n > max) __builtin_trap();
                slm_buf_append(&got, buf, (size_t)n);
            } else if (n == MHD_CONTENT_READER_END_OF_STREAM) {
                ended = true;
            } else if (n == MHD_CONTENT_READER_END_WITH_ERROR) {
                if (!atomic_load(&st->dropped)) __builtin_trap(); /* only a dropped stream ends so here */
                ended = dropped = true;
            } else {
                __builtin_trap();
            }
            if (atomic_load(&st->out_pending) != st->out.len - st->out_off) __builtin_trap();
            break;
        }
        case 2: { /* the watchdog: dropped exactly when the backlog passes the bound */
            bool was = atomic_load(&st->dropped);
            size_t backlog = srv_stream_backlog(st);
            srv_socks_sweep(&s, 0);
            if (!was && atomic_load(&st->dropped) != (backlog > s.cfg.stream_buffer_bytes)) __builtin_trap();
            break;
        }
        case 3: /* the request finishes */
            pthread_mutex_lock(&r->mu);
            r->done = true;
            r->finish = SLM_FINISH_STOP;
            pthread_mutex_unlock(&r->mu);
            break;
        }
    }
    if (!ended) {
        pthread_mutex_lock(&r->mu);
        r->done = true;
        r->finish = SLM_FINISH_STOP;
        pthread_mutex_unlock(&r->mu);
        for (int guard = 0; !ended && guard < 1 << 20; guard++) {
            ssize_t n = srv_stream_read(st, 0, buf, sizeof buf);
            if (n > 0)
                slm_buf_append(&got, buf, (size_t)n);
            else
                ended = true, dropped = n == MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (!ended) __builtin_trap();
    }
    /* the client got the text in order: all of it and the end marker, or a prefix if dropped */
    if (!sent.oom && !got.oom) {
        if (got.len > sent.len + 5) __builtin_trap();
        if (!dropped && (got.len != sent.len + 5 || memcmp(got.s + sent.len, "<END>", 5))) __builtin_trap();
        size_t common = got.len < sent.len ? got.len : sent.len;
        if (common && memcmp(got.s, sent.s, common)) __builtin_trap();
    }
    srv_stream_free(st);
    if (s.streams) __builtin_trap();
    slm_request_release(r);
    slm_buf_free(&sent);
    slm_buf_free(&got);
}

/* ---------- log escaping, body budget ---------- */

static void run_log_and_budget(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return;
    memcpy(text, data, size);
    text[size] = 0;
    char out[256];
    srv_log_clean(text, out, sizeof out);
    size_t n = strlen(out), j = 0;
    if (n >= sizeof out) __builtin_trap();
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)out[i];
        if (ch < 0x20 || ch >= 0x7f) __builtin_trap(); /* one line, no terminal escapes */
        /* and it decodes back to a prefix of the input */
        int byte = ch;
        if (ch == '\\') {
            unsigned v;
            if (i + 3 >= n || out[i + 1] != 'x' || sscanf(out + i + 2, "%2x", &v) != 1) __builtin_trap();
            byte = (int)v;
            i += 3;
        }
        if ((unsigned char)text[j++] != byte) __builtin_trap();
    }
    free(text);

    /* budget: takes and releases in any order never exceed the total and always add up */
    static srv_server s;
    srv_config_defaults(&s.cfg);
    s.cfg.max_body_total = 1 + (size > 0 ? data[0] : 0) * 1000;
    atomic_store(&s.body_bytes, 0);
    srv_conn conns[8];
    memset(conns, 0, sizeof conns);
    for (int i = 0; i < 8; i++) conns[i].srv = &s;
    for (size_t i = 1; i + 1 < size; i += 2) {
        srv_conn *c = &conns[data[i] % 8];
        if (data[i] & 0x80) {
            srv_body_release(c);
        } else {
            size_t want = (size_t)data[i + 1] * 97;
            size_t before = atomic_load(&s.body_bytes);
            bool ok = srv_body_take(c, want);
            if (ok != (before + want <= s.cfg.max_body_total)) __builtin_trap();
        }
        size_t sum = 0;
        for (int k = 0; k < 8; k++) sum += conns[k].body_reserved;
        if (sum != atomic_load(&s.body_bytes) || sum > s.cfg.max_body_total) __builtin_trap();
    }
    for (int i = 0; i < 8; i++) srv_body_release(&conns[i]);
    if (atomic_load(&s.body_bytes) != 0) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    if (size < 1 || size > 65536) return 0;
    int mode = data[0] % MODE_COUNT;
    input in = {data + 1, size - 1};
    switch (mode) {
    case MODE_CONNECTIONS: run_connections(&in); break;
    case MODE_STREAM: run_stream(&in); break;
    case MODE_LOG_AND_BUDGET: run_log_and_budget(data + 1, size - 1); break;
    case MODE_TOOL_OUTPUT: run_tool_output(data + 1, size - 1); break;
    default: run_body(mode, data + 1, size - 1); break;
    }
    return 0;
}
