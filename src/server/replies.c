/* Replies: each API's error format, JSON bodies, and the streamed responses (SSE / NDJSON) fed
 * from a request's channel. Runs on the connection's own thread (thread per connection). */
#include "replies.h"

#include <poll.h>
#include <stdio.h>
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
}

enum MHD_Result srv_reply_bytes(srv_conn *c, int status, const char *content_type, const char *body, size_t len) {
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

/* The reply for a call the gate or its backend refused. */
enum MHD_Result srv_reply_refused(srv_conn *c) {
    const slm_gate_call *call = &c->call;
    if (call->status == 503 && call->error_code && strcmp(call->error_code, "overloaded") == 0)
        srv_metrics_overload(&c->srv->metrics);
    return srv_reply_error(c, call->status ? call->status : 500, call->error_code, NULL,
                           call->error[0] ? call->error : "refused");
}

enum MHD_Result srv_reply_finish_error(srv_conn *c, const slm_request *r) {
    switch (r->finish) {
    case SLM_FINISH_TIMEOUT: return srv_reply_error(c, 504, "timeout", NULL, slm_finish_message(r));
    case SLM_FINISH_CANCELLED: return srv_reply_error(c, 503, "shutting_down", NULL, slm_finish_message(r));
    default: return srv_reply_error(c, 500, "engine_error", NULL, slm_finish_message(r));
    }
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
    srv_add_common_headers(c, resp, 200);
    enum MHD_Result ret = MHD_queue_response(c->mhd, 200, resp);
    MHD_destroy_response(resp);
    c->replied = true;
    c->status = 200;
    return ret;
}

