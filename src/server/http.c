/* libmicrohttpd glue: the access handler (limits, auth, origin checks, routing), reply helpers in
 * each API's error format, and the blocking wait / streaming used by generation handlers. Runs
 * one thread per connection, so waiting for tokens may block the connection's own thread. */
#include "sample/json_validate.h"
#include "server/http.h"

#include <arpa/inet.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

bool srv_failf(srv_fail *f, int status, const char *code, const char *param, const char *fmt, ...) {
    f->status = status;
    f->code = code;
    snprintf(f->param, sizeof f->param, "%s", param ? param : "");
    char raw[sizeof f->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* Messages may quote client text: escape control bytes so an error stays one line. */
    slm_json_error_line(raw, f->msg, sizeof f->msg);
    return false;
}

/* ---------- replies ---------- */

static void add_common_headers(srv_conn *c, struct MHD_Response *resp, int status) {
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (c->cors_allow[0]) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", c->cors_allow);
        MHD_add_response_header(resp, "Vary", "Origin");
    }
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE) MHD_add_response_header(resp, "Retry-After", "1");
    if (status == MHD_HTTP_UNAUTHORIZED) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (c->call.request_id[0]) MHD_add_response_header(resp, "x-request-id", c->call.request_id);
}

enum MHD_Result srv_reply_bytes(srv_conn *c, int status, const char *content_type, const char *body, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", content_type);
    add_common_headers(c, resp, status);
    enum MHD_Result ret = MHD_queue_response(c->mhd, (unsigned)status, resp);
    MHD_destroy_response(resp);
    c->replied = true;
    c->status = status;
    return ret;
}

enum MHD_Result srv_reply_json(srv_conn *c, int status, json_t *obj) {
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text) {
        static const char oom[] = "{\"error\":\"out of memory\"}";
        return srv_reply_bytes(c, 500, "application/json", oom, sizeof oom - 1);
    }
    enum MHD_Result r = srv_reply_bytes(c, status, "application/json", text, strlen(text));
    free(text);
    return r;
}

static const char *openai_error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "invalid_request_error";
    case 429:
    case 503: return "overloaded_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

enum MHD_Result srv_reply_error(srv_conn *c, int status, const char *code, const char *param, const char *msg) {
    /* Messages quote client text and are cut to fixed sizes, possibly inside a UTF-8 character;
     * JSON needs valid UTF-8, or the client would get a 500 instead of this status. */
    size_t len = slm_utf8_complete_prefix(msg, strlen(msg));
    char *clean = malloc(3 * len + 1);
    if (!clean) return srv_reply_json(c, 500, NULL);
    clean[slm_utf8_sanitize(msg, len, clean)] = 0;
    msg = clean;
    json_t *o;
    if (c->api == SRV_API_OLLAMA) {
        o = json_pack("{s:s}", "error", msg);
    } else {
        json_t *e = json_pack("{s:s, s:s}", "message", msg, "type", openai_error_type(status));
        if (e) {
            json_object_set_new(e, "param", param && *param ? json_string(param) : json_null());
            json_object_set_new(e, "code", code ? json_string(code) : json_null());
        }
        o = e ? json_pack("{s:o}", "error", e) : NULL;
    }
    free(clean);
    return srv_reply_json(c, status, o);
}

enum MHD_Result srv_reply_fail(srv_conn *c, const srv_fail *f) {
    return srv_reply_error(c, f->status ? f->status : 400, f->code, f->param, f->msg);
}

const srv_model *srv_pick_model(srv_conn *c, const char *name) {
    srv_server *s = c->srv;
    int k = slm_engine_find(s->engine, name);
    if (k >= 0 && k < s->n_models) return c->model = &s->models[k];
    char list[300] = "";
    for (int i = 0; i < s->n_models; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s'%.100s'", i ? ", " : "", s->models[i].id);
    char msg[600];
    snprintf(msg, sizeof msg, "model '%.200s' %s; this server serves %s", name,
             c->api == SRV_API_OLLAMA ? "not found" : "does not exist", list);
    srv_reply_error(c, 404, "model_not_found", "model", msg);
    return NULL;
}

enum MHD_Result srv_reply_finish_error(srv_conn *c, const slm_request *r) {
    switch (r->finish) {
    case SLM_FINISH_TIMEOUT: return srv_reply_error(c, 504, "timeout", NULL, slm_finish_message(r));
    case SLM_FINISH_CANCELLED: return srv_reply_error(c, 503, "shutting_down", NULL, slm_finish_message(r));
    default: return srv_reply_error(c, 500, "engine_error", NULL, slm_finish_message(r));
    }
}

/* ---------- JSON helpers ---------- */

json_t *srv_parse_body(srv_conn *c, srv_fail *f) {
    if (c->body.len == 0) {
        srv_failf(f, 400, NULL, NULL, "request body is empty; expected a JSON object");
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadb(c->body.s, c->body.len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        srv_failf(f, 400, NULL, NULL, "invalid JSON at line %d, column %d: %s", je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        srv_failf(f, 400, NULL, NULL, "request body must be a JSON object");
        return NULL;
    }
    return root;
}

bool srv_json_string(json_t *obj, const char *key, const char **out, srv_fail *f) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_string(v)) return srv_failf(f, 400, NULL, key, "'%s' must be a string", key);
    *out = json_string_value(v);
    return true;
}

bool srv_json_bool(json_t *obj, const char *key, bool *out, srv_fail *f) {
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) return srv_failf(f, 400, NULL, key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return true;
}

bool srv_json_int(json_t *obj, const char *key, long long lo, long long hi, long long *out, bool *present, srv_fail *f) {
    json_t *v = json_object_get(obj, key);
    if (present) *present = false;
    if (!v || json_is_null(v)) return true;
    long long x;
    if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v)) {
        /* 3.0 is accepted as 3; range-check before converting (1e308 does not fit a long long) */
        double d = json_real_value(v);
        if (d < (double)lo || d > (double)hi)
            return srv_failf(f, 400, NULL, key, "'%s' must be between %lld and %lld", key, lo, hi);
        x = (long long)d;
    } else {
        return srv_failf(f, 400, NULL, key, "'%s' must be an integer", key);
    }
    if (x < lo || x > hi) return srv_failf(f, 400, NULL, key, "'%s' must be between %lld and %lld", key, lo, hi);
    *out = x;
    if (present) *present = true;
    return true;
}

bool srv_json_number(json_t *obj, const char *key, double lo, double hi, double *out, bool *present, srv_fail *f) {
    json_t *v = json_object_get(obj, key);
    if (present) *present = false;
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) return srv_failf(f, 400, NULL, key, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return srv_failf(f, 400, NULL, key, "'%s' must be between %g and %g", key, lo, hi);
    *out = x;
    if (present) *present = true;
    return true;
}

bool srv_json_token_ids(json_t *arr, int n_vocab, slm_token *out) {
    size_t i;
    json_t *t;
    json_array_foreach(arr, i, t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= n_vocab) return false;
        out[i] = (slm_token)json_integer_value(t);
    }
    return true;
}

/* ---------- generation plumbing ---------- */

bool srv_tokenize(const srv_model *s, const char *text, bool add_special, bool parse_special, const char *field, int limit,
                  slm_token **out, int *n_out, srv_fail *f) {
    size_t len = strlen(text);
    /* A token is at least one byte, plus BOS/EOS: this bound always suffices. */
    size_t cap = len + 8;
    if (cap > (size_t)1 << 26) return srv_failf(f, 413, NULL, field, "'%s' is too long", field);
    slm_token *toks = malloc(cap * sizeof *toks);
    if (!toks) return srv_failf(f, 500, NULL, field, "out of memory");
    char err[256];
    int n = slm_tokenize(s->model, text, len, add_special, parse_special, toks, (int)cap, err, sizeof err);
    if (n < 0) {
        free(toks);
        return srv_failf(f, 400, NULL, field, "'%s' cannot be tokenized: %s", field, n < -(int)cap ? "too long" : err);
    }
    if (n > limit) {
        free(toks);
        return srv_failf(f, 400, "context_length_exceeded", field,
                         "'%s' has %d tokens but this server allows at most %d (context per slot is %d; "
                         "prompts are never truncated)",
                         field, n, limit, s->n_ctx);
    }
    *out = toks;
    *n_out = n;
    return true;
}

bool srv_render_chat(const srv_model *s, const slm_chat_message *msgs, size_t n, char **out, srv_fail *f) {
    char err[256];
    if (slm_chat_render(s->model, s->template_name[0] ? s->template_name : NULL, msgs, n, true, out, err, sizeof err) !=
        0)
        return srv_failf(f, 400, NULL, "messages", "cannot render the chat template: %s", err);
    return true;
}

uint64_t srv_random_seed(srv_server *s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (atomic_fetch_add(&s->id_counter, 1) << 17);
    /* splitmix64 finaliser */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void srv_new_id(srv_server *s, const char *prefix, char *out, size_t cap) {
    snprintf(out, cap, "%s-%016llx", prefix, (unsigned long long)srv_random_seed(s));
}

/* The reply for a call the gate or its backend refused. */
static void reply_refused(srv_conn *c) {
    const slm_gate_call *call = &c->call;
    if (call->status == 503 && call->error_code && strcmp(call->error_code, "overloaded") == 0)
        srv_metrics_overload(&c->srv->metrics);
    srv_reply_error(c, call->status ? call->status : 500, call->error_code, NULL,
                    call->error[0] ? call->error : "refused");
}

static bool gate_submit(srv_conn *c) {
    srv_server *s = c->srv;
    if (atomic_load(&s->draining)) {
        srv_reply_error(c, 503, "shutting_down", NULL, "server is shutting down");
        return false;
    }
    c->call.model = c->model ? c->model->id : "";
    if (slm_gate_submit(s->gate, &c->call)) return true;
    reply_refused(c);
    return false;
}

bool srv_submit(srv_conn *c, slm_request *r) {
    srv_server *s = c->srv;
    r->t_submit = slm_now();
    r->deadline = r->t_submit + s->cfg.request_timeout_s;
    if (c->model) snprintf(r->model, sizeof r->model, "%s", c->model->id);
    c->call.kind = r->kind == SLM_REQ_EMBED ? SLM_CALL_EMBED : SLM_CALL_GENERATE;
    if (c->call.request) slm_request_release(c->call.request);
    slm_request_retain(r); /* the call keeps it for the record phase */
    c->call.request = r;
    return gate_submit(c);
}

bool srv_submit_task(srv_conn *c, slm_call_task_fn fn, void *user) {
    c->call.kind = SLM_CALL_TASK;
    c->call.task = fn;
    c->call.task_user = user;
    return gate_submit(c);
}

static int conn_fd(srv_conn *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

/* The peer closed its end (we never expect more request bytes while answering). */
static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

bool srv_conn_gone(srv_conn *c) { return client_gone(conn_fd(c)); }

static void timed_wait(slm_request *r, int ms) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long)ms * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&r->cv, &r->mu, &until);
}

static void cancel_call(srv_server *s, slm_gate_call *call) { slm_gate_cancel(s->gate, call); }

bool srv_wait_done(srv_conn *c, slm_request *r) {
    int fd = conn_fd(c);
    pthread_mutex_lock(&r->mu);
    while (!r->done) {
        timed_wait(r, 50);
        if (!r->done && client_gone(fd)) {
            pthread_mutex_unlock(&r->mu);
            cancel_call(c->srv, &c->call);
            return false;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return true;
}

/* ---------- streaming ---------- */

bool srv_stream_write(srv_stream *st, const char *bytes, size_t n) {
    return slm_buf_append(&st->out, bytes, n);
}

bool srv_stream_write_json_string(srv_stream *st, const char *text, size_t n) {
    bool ok = srv_stream_write(st, "\"", 1);
    size_t run = 0; /* start of the bytes that need no escape */
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
        char esc[8];
        size_t len = 2;
        esc[0] = '\\';
        switch (ch) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default: len = (size_t)snprintf(esc, sizeof esc, "\\u%04X", ch);
        }
        ok = srv_stream_write(st, text + run, i - run) && srv_stream_write(st, esc, len);
        run = i + 1;
    }
    return ok && srv_stream_write(st, text + run, n - run) && srv_stream_write(st, "\"", 1);
}

bool srv_stream_write_json(srv_stream *st, const char *prefix, json_t *obj, const char *suffix) {
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!text) return false;
    bool ok = srv_stream_write(st, prefix, strlen(prefix)) && srv_stream_write(st, text, strlen(text)) &&
              srv_stream_write(st, suffix, strlen(suffix));
    free(text);
    return ok;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    srv_stream *st = cls;
    slm_request *r = st->r;
    for (;;) {
        if (st->out_off < st->out.len) {
            size_t n = st->out.len - st->out_off;
            if (n > max) n = max;
            memcpy(buf, st->out.s + st->out_off, n);
            st->out_off += n;
            return (ssize_t)n;
        }
        st->out_off = 0;
        slm_buf_clear(&st->out);
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&r->mu);
        while (!r->done && r->text_len == st->text_seen && r->n_infos == st->infos_seen && st->sent_first) {
            timed_wait(r, 50);
            if (client_gone(st->fd)) {
                pthread_mutex_unlock(&r->mu);
                cancel_call(st->srv, &st->call);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
        }
        /* text and infos stay NULL until the first token: no pointer arithmetic on them before */
        srv_delta d = {.text = r->text ? r->text + st->text_seen : "",
                       .text_len = r->text_len - st->text_seen,
                       .infos = r->infos ? r->infos + st->infos_seen : NULL,
                       .n_infos = r->n_infos - st->infos_seen,
                       .done = r->done};
        bool ok = st->emit(st, r, &d);
        st->text_seen = r->text_len;
        st->infos_seen = r->n_infos;
        st->sent_first = true;
        if (r->done) st->finished = true;
        pthread_mutex_unlock(&r->mu);
        if (!ok) {
            cancel_call(st->srv, &st->call);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void stream_free(void *cls) {
    srv_stream *st = cls;
    /* Harmless when finished; when the client vanished mid-stream this frees the slot now. */
    cancel_call(st->srv, &st->call);
    slm_request_release(st->r);
    free(st->user);
    slm_buf_free(&st->out);
    free(st);
}

enum MHD_Result srv_reply_stream(srv_conn *c, slm_request *r, const char *content_type, srv_emit_fn emit, void *user) {
    srv_stream *st = calloc(1, sizeof *st);
    if (!st) {
        free(user);
        cancel_call(c->srv, &c->call);
        return srv_reply_error(c, 500, NULL, NULL, "out of memory");
    }
    st->srv = c->srv;
    st->r = r;
    st->call = (slm_gate_call){.kind = c->call.kind, .request = r, .backend = c->call.backend};
    slm_request_retain(r);
    st->fd = conn_fd(c);
    st->emit = emit;
    st->user = user;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, st, stream_free);
    if (!resp) {
        stream_free(st);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    add_common_headers(c, resp, 200);
    enum MHD_Result ret = MHD_queue_response(c->mhd, 200, resp);
    MHD_destroy_response(resp);
    c->replied = true;
    c->status = 200;
    return ret;
}

/* ---------- routing ---------- */

typedef enum {
    R_PAGE,
    R_HEALTH,
    R_METRICS,
    R_OAI_CHAT,
    R_OAI_COMPLETIONS,
    R_OAI_EMBEDDINGS,
    R_OAI_MODELS,
    R_OAI_MODEL,
    R_OLL_CHAT,
    R_OLL_GENERATE,
    R_OLL_EMBED,
    R_OLL_EMBEDDINGS,
    R_OLL_TAGS,
    R_OLL_PS,
    R_OLL_SHOW,
    R_OLL_VERSION,
    R_TASK_CLASSIFY,
    R_TASK_EXTRACT,
    R_TASK_SUMMARIZE,
} route_id;

static const struct route {
    const char *method;
    const char *path; /* trailing '*' = prefix */
    route_id id;
    const char *label;
    bool is_public;
    bool needs_model;
} routes[] = {
    {"GET", "/", R_PAGE, "/", true, false},
    {"GET", "/health", R_HEALTH, "/health", true, false},
    {"GET", "/metrics", R_METRICS, "/metrics", false, false},
    {"POST", "/v1/chat/completions", R_OAI_CHAT, "/v1/chat/completions", false, true},
    {"POST", "/v1/completions", R_OAI_COMPLETIONS, "/v1/completions", false, true},
    {"POST", "/v1/embeddings", R_OAI_EMBEDDINGS, "/v1/embeddings", false, true},
    {"GET", "/v1/models", R_OAI_MODELS, "/v1/models", false, true},
    {"GET", "/v1/models/*", R_OAI_MODEL, "/v1/models/{id}", false, true},
    {"POST", "/api/chat", R_OLL_CHAT, "/api/chat", false, true},
    {"POST", "/api/generate", R_OLL_GENERATE, "/api/generate", false, true},
    {"POST", "/api/embed", R_OLL_EMBED, "/api/embed", false, true},
    {"POST", "/api/embeddings", R_OLL_EMBEDDINGS, "/api/embeddings", false, true},
    {"GET", "/api/tags", R_OLL_TAGS, "/api/tags", false, true},
    {"GET", "/api/ps", R_OLL_PS, "/api/ps", false, true},
    {"POST", "/api/show", R_OLL_SHOW, "/api/show", false, true},
    {"GET", "/api/version", R_OLL_VERSION, "/api/version", false, false},
    {"POST", "/v1/classify", R_TASK_CLASSIFY, "/v1/classify", false, true},
    {"POST", "/v1/extract", R_TASK_EXTRACT, "/v1/extract", false, true},
    {"POST", "/v1/summarize", R_TASK_SUMMARIZE, "/v1/summarize", false, true},
};

static bool path_matches(const char *pattern, const char *url) {
    size_t n = strlen(pattern);
    if (pattern[n - 1] == '*') return strncmp(url, pattern, n - 1) == 0 && url[n - 1] != 0;
    return strcmp(url, pattern) == 0;
}

/* Finds the route; *known_path tells a wrong method (405) from an unknown path (404). */
static const struct route *find_route(const char *method, const char *url, bool *known_path) {
    *known_path = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (!path_matches(routes[i].path, url)) continue;
        *known_path = true;
        if (strcmp(routes[i].method, method) == 0 || (strcmp(method, "HEAD") == 0 && strcmp(routes[i].method, "GET") == 0))
            return &routes[i];
    }
    return NULL;
}

/* The credential as the client sent it: "Authorization: Bearer KEY" or "x-api-key: KEY". */
static const char *presented_key(struct MHD_Connection *mhd) {
    const char *h = MHD_lookup_connection_value(mhd, MHD_HEADER_KIND, "Authorization");
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        const char *key = h + 7;
        while (*key == ' ') key++;
        return key;
    }
    return MHD_lookup_connection_value(mhd, MHD_HEADER_KIND, "x-api-key");
}

/* Host names a loopback listener answers to; anything else is a DNS-rebinding attempt. */
static bool host_is_loopback_name(const char *host) {
    char name[256];
    size_t n = strlen(host);
    if (n == 0 || n >= sizeof name) return false;
    memcpy(name, host, n + 1);
    if (name[0] == '[') {
        char *end = strchr(name, ']');
        if (!end) return false;
        *end = 0;
        return strcmp(name + 1, "::1") == 0;
    }
    char *colon = strchr(name, ':');
    if (colon) *colon = 0;
    if (strcasecmp(name, "localhost") == 0) return true;
    struct in_addr a;
    return inet_pton(AF_INET, name, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

static bool bound_to_loopback(const srv_server *s) { return host_is_loopback_name(s->bound_host); }

/* Checks Host/Origin and decides the CORS header; false with a 403 already sent. */
static bool check_origin(srv_conn *c) {
    srv_server *s = c->srv;
    const char *host = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Host");
    if (host && bound_to_loopback(s) && !host_is_loopback_name(host)) {
        srv_reply_error(c, 403, "forbidden_host", NULL, "Host header names a non-loopback host; refused (DNS rebinding protection)");
        return false;
    }
    const char *origin = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Origin");
    if (!origin) return true;
    const char *allow = s->cfg.cors_origin;
    if (allow && (strcmp(allow, "*") == 0 || strcmp(allow, origin) == 0)) {
        snprintf(c->cors_allow, sizeof c->cors_allow, "%s", strcmp(allow, "*") == 0 ? "*" : origin);
        return true;
    }
    /* Our own page: same origin as the Host it was served from. */
    char self[300];
    if (host && (snprintf(self, sizeof self, "http://%s", host), strcmp(self, origin) == 0)) return true;
    srv_reply_error(c, 403, "forbidden_origin", NULL, "cross-origin request refused (start the server with --cors-origin to allow it)");
    return false;
}

static enum MHD_Result reply_preflight(srv_conn *c) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    add_common_headers(c, resp, 204);
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type, X-Api-Key");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    enum MHD_Result ret = MHD_queue_response(c->mhd, 204, resp);
    MHD_destroy_response(resp);
    c->replied = true;
    c->status = 204;
    return ret;
}

static enum MHD_Result reply_health(srv_conn *c) {
    srv_server *s = c->srv;
    if (!atomic_load(&s->ready)) return srv_reply_json(c, 503, json_pack("{s:s}", "status", "loading"));
    int queued, busy, slots = 0;
    slm_engine_counts(s->engine, -1, &queued, &busy);
    json_t *models = json_array();
    for (int i = 0; i < s->n_models; i++) {
        slots += s->models[i].n_seq;
        json_array_append_new(models, json_string(s->models[i].id));
    }
    return srv_reply_json(c, 200,
                          json_pack("{s:s, s:s, s:o, s:i, s:i, s:i, s:i}", "status",
                                    atomic_load(&s->draining) ? "draining" : "ok", "model", s->models[0].id, "models",
                                    models, "slots_total", slots, "slots_busy", busy, "queue_depth", queued,
                                    "n_ctx_per_slot", s->models[0].n_ctx));
}

static enum MHD_Result reply_metrics(srv_conn *c) {
    srv_server *s = c->srv;
    int queued = 0, busy = 0, slots = 0;
    if (atomic_load(&s->ready)) slm_engine_counts(s->engine, -1, &queued, &busy);
    for (int i = 0; i < s->n_models; i++) slots += s->models[i].n_seq;
    char *text = srv_metrics_render(&s->metrics, queued, busy, slots, s->n_models ? s->models[0].n_ctx : 0);
    if (!text) return srv_reply_error(c, 500, NULL, NULL, "out of memory");
    enum MHD_Result r = srv_reply_bytes(c, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
    free(text);
    return r;
}

static enum MHD_Result dispatch(srv_conn *c, route_id id) {
    switch (id) {
    case R_PAGE: return srv_reply_bytes(c, 200, "text/html; charset=utf-8", srv_webpage_html, strlen(srv_webpage_html));
    case R_HEALTH: return reply_health(c);
    case R_METRICS: return reply_metrics(c);
    case R_OAI_CHAT: return srv_openai_chat(c);
    case R_OAI_COMPLETIONS: return srv_openai_completions(c);
    case R_OAI_EMBEDDINGS: return srv_openai_embeddings(c);
    case R_OAI_MODELS: return srv_openai_models(c, NULL);
    case R_OAI_MODEL: return srv_openai_models(c, c->url + strlen("/v1/models/"));
    case R_OLL_CHAT: return srv_ollama_chat(c);
    case R_OLL_GENERATE: return srv_ollama_generate(c);
    case R_OLL_EMBED: return srv_ollama_embed(c, false);
    case R_OLL_EMBEDDINGS: return srv_ollama_embed(c, true);
    case R_OLL_TAGS: return srv_ollama_tags(c, false);
    case R_OLL_PS: return srv_ollama_tags(c, true);
    case R_OLL_SHOW: return srv_ollama_show(c);
    case R_OLL_VERSION: return srv_ollama_version(c);
    case R_TASK_CLASSIFY: return srv_task_classify(c);
    case R_TASK_EXTRACT: return srv_task_extract(c);
    case R_TASK_SUMMARIZE: return srv_task_summarize(c);
    }
    return srv_reply_error(c, 404, NULL, NULL, "unknown route");
}

/* First call for a request: everything decidable from the headers alone. Returns true when the
 * request may proceed to read its body. */
static bool screen_headers(srv_conn *c, const struct route **route_out) {
    srv_server *s = c->srv;
    bool known = false;
    const struct route *rt = find_route(c->method, c->url, &known);
    *route_out = rt;
    c->route = rt ? rt->label : "other";
    if (!check_origin(c)) return false;
    if (strcmp(c->method, "OPTIONS") == 0) {
        if (s->cfg.cors_origin && c->cors_allow[0])
            reply_preflight(c);
        else
            srv_reply_error(c, 405, NULL, NULL, "OPTIONS is only answered when CORS is enabled (--cors-origin)");
        return false;
    }
    if (!rt) {
        if (known)
            srv_reply_error(c, 405, NULL, NULL, "method not allowed on this route");
        else
            srv_reply_error(c, 404, "unknown_route", NULL, "no such route");
        return false;
    }
    c->call.endpoint = rt->label;
    c->call.credential = presented_key(c->mhd);
    if (!rt->is_public && !slm_gate_admit(s->gate, &c->call)) {
        reply_refused(c);
        return false;
    }
    if (rt->needs_model && !atomic_load(&s->ready)) {
        srv_reply_error(c, 503, "loading", NULL, "model is still loading");
        return false;
    }
    const char *cl = MHD_lookup_connection_value(c->mhd, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end;
        unsigned long long v = strtoull(cl, &end, 10);
        if (*end || v > s->cfg.max_body_bytes) {
            char msg[160];
            snprintf(msg, sizeof msg, "request body larger than the limit of %zu bytes", s->cfg.max_body_bytes);
            srv_reply_error(c, 413, "request_too_large", NULL, msg);
            return false;
        }
    }
    return true;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mhd, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    srv_server *s = cls;
    srv_conn *c = *con_cls;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) return MHD_NO;
        atomic_fetch_add(&s->live_conns, 1);
        *con_cls = c;
        c->srv = s;
        c->mhd = mhd;
        c->method = method;
        c->url = url;
        c->t_start = slm_now();
        c->api = strncmp(url, "/api/", 5) == 0 ? SRV_API_OLLAMA : SRV_API_OPENAI;
        slm_gate_call_init(&c->call, SLM_CALL_GENERATE, "http", "other");
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->client, sizeof c->client);
            else if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->client, sizeof c->client);
        }
        c->call.client = c->client;
        const struct route *rt;
        if (!screen_headers(c, &rt)) return c->replied ? MHD_YES : MHD_NO;
        return MHD_YES;
    }
    if (c->replied) { /* answered early: drop whatever body still arrives */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (c->body_too_large) return MHD_YES;
        if (n > c->srv->cfg.max_body_bytes - c->body.len) {
            c->body_too_large = true;
            return MHD_YES;
        }
        return slm_buf_append(&c->body, upload_data, n) ? MHD_YES : MHD_NO;
    }
    if (c->body_too_large) {
        char msg[160];
        snprintf(msg, sizeof msg, "request body larger than the limit of %zu bytes", s->cfg.max_body_bytes);
        return srv_reply_error(c, 413, "request_too_large", NULL, msg);
    }
    bool known;
    const struct route *rt = find_route(method, url, &known);
    if (!rt) return srv_reply_error(c, 404, NULL, NULL, "no such route");
    return dispatch(c, rt->id);
}

static void on_completed(void *cls, struct MHD_Connection *mhd, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)mhd;
    srv_server *s = cls;
    srv_conn *c = *con_cls;
    if (!c) return;
    int status = c->replied ? c->status : 499; /* 499: the client left before an answer */
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && c->status == 200) status = 499;
    srv_metrics_request(&s->metrics, c->route ? c->route : "other", status);
    slm_request *r = c->call.request;
    if (r) {
        pthread_mutex_lock(&r->mu);
        c->call.prompt_tokens = r->kind == SLM_REQ_EMBED ? r->n_embed_tokens : r->n_prompt;
        c->call.completion_tokens = r->n_tokens;
        pthread_mutex_unlock(&r->mu);
    }
    if (c->call.status == 0) c->call.status = status;
    if (s->gate) slm_gate_finish(s->gate, &c->call);
    slm_request_release(r);
    if (s->cfg.log_requests)
        fprintf(stderr, "%s %s %d %.1f ms\n", c->method, c->url, status, (slm_now() - c->t_start) * 1e3);
    slm_buf_free(&c->body);
    free(c);
    *con_cls = NULL;
    atomic_fetch_sub(&s->live_conns, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    fprintf(stderr, "slm serve: http: ");
    vfprintf(stderr, fmt, ap);
}

struct MHD_Daemon *srv_http_start(srv_server *s, const struct sockaddr *addr, char *err, size_t err_len) {
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    if (addr->sa_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_SOCK_ADDR, addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->cfg.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)s->cfg.idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, s->cfg.max_header_bytes,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)1 << 20, MHD_OPTION_END);
    if (!d) snprintf(err, err_len, "cannot listen on %s:%d (address in use or not permitted?)", s->cfg.host, s->cfg.port);
    return d;
}
