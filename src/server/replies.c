/* Replies: each API's error format, JSON bodies, and the streamed responses (SSE / NDJSON) fed
 * from a request's channel. Runs on the connection's own thread (thread per connection). */
#include "replies.h"

#include "calls.h"

#include <linux/sockios.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

void srv_add_common_headers(srv_conn *c, struct MHD_Response *resp, int status) {
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (c->cors_allow[0]) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", c->cors_allow);
        MHD_add_response_header(resp, "Vary", "Origin");
    }
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE) MHD_add_response_header(resp, "Retry-After", "1");
    if (status == MHD_HTTP_UNAUTHORIZED) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (c->call.request_id[0]) MHD_add_response_header(resp, "x-request-id", c->call.request_id);
    if (c->call.route) MHD_add_response_header(resp, "x-slm-route", c->call.route);
    if (status == 429 && c->call.retry_after_s > 0) {
        char secs[16];
        snprintf(secs, sizeof secs, "%d", c->call.retry_after_s);
        MHD_add_response_header(resp, "Retry-After", secs);
    }
    if (c->close_after) MHD_add_response_header(resp, "Connection", "close");
}

void srv_finish_call(srv_server *s, slm_gate_call *call, int status) {
    if (call->finished || !s->gate) return;
    slm_request *r = call->request;
    if (r) {
        pthread_mutex_lock(&r->mu);
        srv_usage(s, r, &call->prompt_tokens, &call->completion_tokens);
        pthread_mutex_unlock(&r->mu);
    }
    if (call->status == 0) call->status = status;
    slm_gate_finish(s->gate, call);
    if (call->route)
        srv_metrics_call(&s->metrics, call->backend != 0, call->prompt_tokens, call->completion_tokens, call->cost_usd,
                         call->frontier_cost_usd);
}

enum MHD_Result srv_reply_bytes(srv_conn *c, int status, const char *content_type, const char *body, size_t len) {
    /* the record is durable before the client holds the answer */
    srv_finish_call(c->srv, &c->call, status);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", content_type);
    srv_add_common_headers(c, resp, status);
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
        /* OpenAI's shapes: an exhausted budget is type and code insufficient_quota */
        const char *type = status != 429 ? openai_error_type(status)
                           : code && strcmp(code, "insufficient_quota") == 0 ? "insufficient_quota"
                           : code && strcmp(code, "rate_limit_exceeded") == 0 ? "rate_limit_error"
                                                                              : "overloaded_error";
        json_t *e = json_pack("{s:s, s:s}", "message", msg, "type", type);
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
    if (f->status == SRV_STATUS_GONE) return MHD_NO; /* the client left: close without an answer */
    return srv_reply_error(c, f->status ? f->status : 400, f->code, f->param, f->msg);
}

/* The reply for a call the gate or its backend refused. */
enum MHD_Result srv_reply_refused(srv_conn *c) {
    const slm_gate_call *call = &c->call;
    if (call->status == 503 && call->error_code && strcmp(call->error_code, "overloaded") == 0)
        srv_metrics_overload(&c->srv->metrics);
    return srv_reply_error(c, call->status ? call->status : 500, call->error_code, NULL,
                           call->error[0] ? call->error : "refused");
}

int srv_finish_status(const slm_request *r) {
    switch (r->finish) {
    case SLM_FINISH_TIMEOUT: return 504;
    case SLM_FINISH_CANCELLED: return 503;
    case SLM_FINISH_ERROR: return r->error_is_client ? 400 : 500;
    default: return 500;
    }
}

enum MHD_Result srv_reply_finish_error(srv_conn *c, const slm_request *r) {
    /* the request asked the impossible (every token banned by logit_bias and the grammar): its fault */
    if (r->finish == SLM_FINISH_ERROR && r->error_is_client)
        return srv_reply_error(c, 400, "no_token_possible", NULL, slm_finish_message(r));
    switch (r->finish) {
    case SLM_FINISH_TIMEOUT: return srv_reply_error(c, 504, "timeout", NULL, slm_finish_message(r));
    case SLM_FINISH_CANCELLED: return srv_reply_error(c, 503, "shutting_down", NULL, slm_finish_message(r));
    default: return srv_reply_error(c, 500, "engine_error", NULL, slm_finish_message(r));
    }
}

static int conn_fd(srv_conn *c) {
    if (!c->mhd) return -1;
    if (c->sock) return c->sock->fd;
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

static void cancel_call(srv_server *s, slm_gate_call *call) { slm_gate_cancel(s->gate, call); }

bool srv_wait_done(srv_conn *c, slm_request *r) {
    int fd = conn_fd(c);
    pthread_mutex_lock(&r->mu);
    while (!r->done) {
        slm_request_wait(r, 50);
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

ssize_t srv_stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    srv_stream *st = cls;
    slm_request *r = st->r;
    for (;;) {
        if (st->dropped) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (st->out_off < st->out.len) {
            size_t n = st->out.len - st->out_off;
            if (n > max) n = max;
            memcpy(buf, st->out.s + st->out_off, n);
            st->out_off += n;
            atomic_store(&st->out_pending, st->out.len - st->out_off);
            return (ssize_t)n;
        }
        st->out_off = 0;
        slm_buf_clear(&st->out);
        if (st->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&r->mu);
        while (!r->done && r->text_len == st->text_seen && r->n_infos == st->infos_seen && st->sent_first) {
            slm_request_wait(r, 50);
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
        bool ok = true;
        if (st->origin && st->origin->filter.feed) {
            /* what the client may see: masked values restored, leaked personal data masked */
            st->filtered_len = 0;
            if (st->filtered) st->filtered[0] = 0;
            ok = slm_gate_output(st->origin, d.text, d.text_len, d.done, &st->filtered, &st->filtered_len) == 0;
            d.text = st->filtered ? st->filtered : "";
            d.text_len = st->filtered_len;
        }
        if (ok && d.done && st->origin) {
            /* the record is durable before the stream's last bytes leave */
            pthread_mutex_unlock(&r->mu);
            bool fine = r->finish == SLM_FINISH_STOP || r->finish == SLM_FINISH_LENGTH;
            srv_finish_call(st->srv, st->origin, fine ? 200 : srv_finish_status(r));
            pthread_mutex_lock(&r->mu);
        }
        if (ok) ok = st->emit(st, r, &d);
        st->text_seen = r->text_len;
        st->infos_seen = r->n_infos;
        st->sent_first = true;
        if (r->done) st->finished = true;
        pthread_mutex_unlock(&r->mu);
        atomic_store(&st->out_pending, st->out.len);
        if (!ok) {
            cancel_call(st->srv, &st->call);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

/* Output a stream holds for a client that does not read it: engine text and token facts not yet
 * formatted, wire bytes not yet handed over, and what waits in the socket's send queue. Caller
 * holds socks_mu (the stream cannot be freed meanwhile). */
static size_t stream_backlog(srv_stream *st) {
    slm_request *r = st->r;
    pthread_mutex_lock(&r->mu);
    size_t n = (r->text_len - st->text_seen) + (size_t)(r->n_infos - st->infos_seen) * sizeof(slm_token_info);
    pthread_mutex_unlock(&r->mu);
    n += atomic_load(&st->out_pending);
    int outq = 0;
    if (st->fd >= 0 && ioctl(st->fd, SIOCOUTQ, &outq) == 0 && outq > 0) n += (size_t)outq;
    return n;
}

int srv_streams_check(srv_server *s) {
    int n = 0;
    for (srv_stream *st = s->streams; st; st = st->s_next) {
        if (st->dropped || stream_backlog(st) <= s->cfg.stream_buffer_bytes) continue;
        /* the client stopped reading: free its sequence and its buffers now */
        st->dropped = true;
        if (s->gate) slm_gate_cancel(s->gate, &st->call);
        if (st->fd >= 0) shutdown(st->fd, SHUT_RDWR);
        atomic_fetch_add(&s->n_shed, 1);
        n++;
    }
    return n;
}

size_t srv_stream_backlog(srv_stream *st) { return stream_backlog(st); }

void srv_stream_register(srv_server *s, srv_stream *st) {
    pthread_mutex_lock(&s->socks_mu);
    st->s_prev = NULL;
    st->s_next = s->streams;
    if (s->streams) s->streams->s_prev = st;
    s->streams = st;
    pthread_mutex_unlock(&s->socks_mu);
}

static void stream_unlink(srv_stream *st) {
    srv_server *s = st->srv;
    pthread_mutex_lock(&s->socks_mu);
    if (st->s_prev)
        st->s_prev->s_next = st->s_next;
    else if (s->streams == st)
        s->streams = st->s_next;
    if (st->s_next) st->s_next->s_prev = st->s_prev;
    st->s_prev = st->s_next = NULL;
    pthread_mutex_unlock(&s->socks_mu);
}

void srv_stream_free(void *cls) {
    srv_stream *st = cls;
    stream_unlink(st);
    /* Harmless when finished; when the client vanished mid-stream this frees the slot now. */
    cancel_call(st->srv, &st->call);
    slm_request_release(st->r);
    if (st->user_cleanup && st->user) st->user_cleanup(st->user);
    free(st->user);
    free(st->filtered);
    slm_buf_free(&st->out);
    free(st);
}

enum MHD_Result srv_reply_stream(srv_conn *c, slm_request *r, const char *content_type, srv_emit_fn emit, void *user) {
    return srv_reply_stream_owning(c, r, content_type, emit, user, NULL);
}

enum MHD_Result srv_reply_stream_owning(srv_conn *c, slm_request *r, const char *content_type, srv_emit_fn emit, void *user,
                                        void (*user_cleanup)(void *user)) {
    srv_stream *st = calloc(1, sizeof *st);
    if (!st) {
        if (user_cleanup && user) user_cleanup(user);
        free(user);
        cancel_call(c->srv, &c->call);
        return srv_reply_error(c, 500, NULL, NULL, "out of memory");
    }
    st->srv = c->srv;
    st->r = r;
    st->call = (slm_gate_call){.kind = c->call.kind, .request = r, .backend = c->call.backend};
    st->origin = &c->call;
    slm_request_retain(r);
    st->fd = conn_fd(c);
    st->emit = emit;
    st->user = user;
    st->user_cleanup = user_cleanup;
    if (st->fd >= 0) {
        /* the kernel's share of a stalled client's backlog stays a fraction of the bound */
        int sndbuf = (int)(c->srv->cfg.stream_buffer_bytes / 4);
        if (sndbuf < 4096) sndbuf = 4096;
        setsockopt(st->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    }
    srv_stream_register(c->srv, st);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, srv_stream_read, st, srv_stream_free);
    if (!resp) {
        srv_stream_free(st);
        return MHD_NO;
    }
    return srv_queue_stream(c, resp, content_type);
}

enum MHD_Result srv_queue_stream(srv_conn *c, struct MHD_Response *resp, const char *content_type) {
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    srv_add_common_headers(c, resp, 200);
    enum MHD_Result ret = MHD_queue_response(c->mhd, 200, resp);
    MHD_destroy_response(resp);
    c->replied = true;
    c->status = 200;
    return ret;
}


/* 'sha256-…' of the text between the first `open` tag and `close` in html ("" when absent). */
static void inline_hash(const char *html, const char *open, const char *close, char *out, size_t cap) {
    out[0] = 0;
    const char *a = strstr(html, open);
    if (!a) return;
    a += strlen(open);
    const char *b = strstr(a, close);
    if (!b) return;
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, (const unsigned char *)a, (unsigned long long)(b - a));
    char b64[sodium_base64_ENCODED_LEN(crypto_hash_sha256_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(b64, sizeof b64, digest, sizeof digest, sodium_base64_VARIANT_ORIGINAL);
    snprintf(out, cap, "'sha256-%s'", b64);
}

enum MHD_Result srv_reply_page(srv_conn *c, const char *html) {
    /* The pages are built in: only their own inline script and style run, they talk only to this
     * server, and no other site may frame them (a page that holds an admin key must not be
     * clickjacked or have script injected through a name in the ledger). */
    char script[64], style[64], csp[512];
    inline_hash(html, "<script>", "</script>", script, sizeof script);
    inline_hash(html, "<style>", "</style>", style, sizeof style);
    snprintf(csp, sizeof csp,
             "default-src 'none'; script-src %s; style-src %s; connect-src 'self'; img-src 'none'; "
             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
             script[0] ? script : "'none'", style[0] ? style : "'none'");
    srv_finish_call(c->srv, &c->call, 200);
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(html), (void *)html, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "text/html; charset=utf-8");
    MHD_add_response_header(resp, "Content-Security-Policy", csp);
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    srv_add_common_headers(c, resp, 200);
    enum MHD_Result ret = MHD_queue_response(c->mhd, 200, resp);
    MHD_destroy_response(resp);
    c->replied = true;
    c->status = 200;
    return ret;
}
