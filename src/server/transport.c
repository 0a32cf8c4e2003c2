/* libmicrohttpd glue: the access handler (limits, origin checks, credentials handed to the gate's
 * admit phase, routing) and the end-of-request bookkeeping (metrics, log line, the gate's record
 * phase). Runs one thread per connection. */
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ondemand.h"
#include "replies.h"
#include "routes.h"

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
    srv_add_common_headers(c, resp, 204);
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type, X-Api-Key");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    enum MHD_Result ret = MHD_queue_response(c->mhd, 204, resp);
    MHD_destroy_response(resp);
    c->replied = true;
    c->status = 204;
    return ret;
}

/* ---------- connections: absolute deadlines, the reserve, the body budget ---------- */

/* The connection whose request this thread is handling (thread per connection): lets the MHD
 * logger turn libmicrohttpd's own 500 for a malformed body into our 400. */
static _Thread_local srv_conn *tls_conn;

/* Writes a complete error response straight to the socket (only while libmicrohttpd has queued
 * nothing for this request) and shuts the connection down, so nothing else follows it. For the
 * cases libmicrohttpd cannot answer itself: a body cut off part-way, a malformed chunk line. */
static void raw_reply_and_close(srv_conn *c, int status, const char *reason, const char *code, const char *msg) {
    int fd = c->sock ? c->sock->fd : -1;
    if (fd < 0) return;
    char body[512], head[512];
    int bl;
    if (c->api == SRV_API_OLLAMA)
        bl = snprintf(body, sizeof body, "{\"error\":\"%s\"}", msg);
    else
        bl = snprintf(body, sizeof body, "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"%s\"}}",
                      msg, code);
    if (bl < 0 || (size_t)bl >= sizeof body) return;
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
                      "%s%s%sContent-Length: %d\r\n\r\n",
                      status, reason, c->call.request_id[0] ? "x-request-id: " : "", c->call.request_id,
                      c->call.request_id[0] ? "\r\n" : "", bl);
    if (hl < 0 || (size_t)hl >= sizeof head) return;
    /* best effort, never blocking for long: the socket is the client's */
    struct timeval tv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    (void)!send(fd, head, (size_t)hl, MSG_NOSIGNAL);
    (void)!send(fd, body, (size_t)bl, MSG_NOSIGNAL);
    shutdown(fd, SHUT_RDWR);
    c->replied = true;
    c->status = status;
}

static srv_sock *conn_sock(struct MHD_Connection *mhd) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? (srv_sock *)ci->socket_context : NULL;
}

void srv_sock_set_phase(srv_server *s, srv_sock *k, srv_sock_phase phase, double deadline) {
    if (!k) return;
    pthread_mutex_lock(&s->socks_mu);
    k->phase = phase;
    k->deadline = deadline;
    pthread_mutex_unlock(&s->socks_mu);
}

/* Cuts a connection (caller holds socks_mu): its thread sees end-of-file and closes it. */
static void sock_cut(srv_server *s, srv_sock *k) {
    if (k->cut) return;
    k->cut = true;
    shutdown(k->fd, SHUT_RDWR);
    atomic_fetch_add(&s->n_shed, 1);
}

static int reserve_slots(const srv_config *cfg) {
    if (cfg->reserve_connections > 0) return cfg->reserve_connections < cfg->max_connections ? cfg->reserve_connections : cfg->max_connections - 1;
    int r = cfg->max_connections / 8;
    if (r < 4) r = 4;
    return r < cfg->max_connections ? r : cfg->max_connections - 1;
}

void srv_sock_opened(srv_server *s, srv_sock *k, double now) {
    k->phase = SRV_SOCK_HEADERS;
    k->deadline = now + s->cfg.header_timeout_s;
    pthread_mutex_lock(&s->socks_mu);
    /* append: the list stays oldest first (head->prev is the tail) */
    k->next = NULL;
    if (s->socks) {
        srv_sock *last = s->socks->prev;
        last->next = k;
        k->prev = last;
        s->socks->prev = k;
    } else {
        s->socks = k;
        k->prev = k;
    }
    s->n_socks++;
    /* Keep the reserve: past max_connections - reserve, the oldest connection still sending
     * headers or a body (or idle between requests) makes room. Requests being answered and
     * running streams are never shed. */
    if (s->n_socks > s->cfg.max_connections - reserve_slots(&s->cfg)) {
        for (srv_sock *o = s->socks; o && o != k; o = o->next)
            if (!o->cut && o->phase != SRV_SOCK_BUSY) {
                sock_cut(s, o);
                break;
            }
    }
    pthread_mutex_unlock(&s->socks_mu);
}

void srv_sock_closed(srv_server *s, srv_sock *k) {
    pthread_mutex_lock(&s->socks_mu);
    if (k == s->socks) {
        s->socks = k->next;
        if (s->socks) s->socks->prev = k->prev;
    } else {
        k->prev->next = k->next;
        if (k->next)
            k->next->prev = k->prev;
        else
            s->socks->prev = k->prev;
    }
    s->n_socks--;
    pthread_mutex_unlock(&s->socks_mu);
}

int srv_socks_sweep(srv_server *s, double now) {
    int cut = 0;
    pthread_mutex_lock(&s->socks_mu);
    for (srv_sock *k = s->socks; k; k = k->next)
        if (!k->cut && k->deadline > 0 && now > k->deadline) {
            sock_cut(s, k);
            cut++;
        }
    cut += srv_streams_check(s);
    pthread_mutex_unlock(&s->socks_mu);
    return cut;
}

static void on_connection(void *cls, struct MHD_Connection *mhd, void **socket_context, enum MHD_ConnectionNotificationCode code) {
    srv_server *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        srv_sock *k = calloc(1, sizeof *k);
        if (!k) return;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mhd, MHD_CONNECTION_INFO_CONNECTION_FD);
        k->mhd = mhd;
        k->fd = ci ? ci->connect_fd : -1;
        srv_sock_opened(s, k, slm_now());
        *socket_context = k;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        srv_sock *k = *socket_context;
        if (!k) return;
        srv_sock_closed(s, k);
        free(k);
        *socket_context = NULL;
    }
}

/* Cuts what is past its deadline and streams whose client stopped reading; every 100 ms. */
static void *watchdog_main(void *arg) {
    srv_server *s = arg;
    while (!atomic_load(&s->stopping)) {
        struct timespec tick = {0, 100 * 1000000L};
        nanosleep(&tick, NULL);
        srv_socks_sweep(s, slm_now());
    }
    return NULL;
}

/* Takes `more` bytes of the server-wide body budget for c; false when it is spent. */
bool srv_body_take(srv_conn *c, size_t more) {
    srv_server *s = c->srv;
    size_t cur = atomic_load(&s->body_bytes);
    do {
        if (more > s->cfg.max_body_total || cur > s->cfg.max_body_total - more) return false;
    } while (!atomic_compare_exchange_weak(&s->body_bytes, &cur, cur + more));
    c->body_reserved += more;
    return true;
}

void srv_body_release(srv_conn *c) {
    if (c->body_reserved) atomic_fetch_sub(&c->srv->body_bytes, c->body_reserved);
    c->body_reserved = 0;
    slm_buf_free(&c->body);
}

static enum MHD_Result reply_body_budget(srv_conn *c) {
    srv_metrics_overload(&c->srv->metrics);
    char msg[200];
    snprintf(msg, sizeof msg, "the server holds as many request bodies as it may (--max-body-total %zu bytes); retry shortly",
             c->srv->cfg.max_body_total);
    return srv_reply_error(c, 503, "overloaded", NULL, msg);
}

typedef struct header_count {
    int content_length;
    int transfer_encoding;
} header_count;

static enum MHD_Result count_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    (void)value;
    header_count *h = cls;
    if (strcasecmp(key, "Content-Length") == 0) h->content_length++;
    if (strcasecmp(key, "Transfer-Encoding") == 0) h->transfer_encoding++;
    return MHD_YES;
}

/* A reply after which the connection closes (the request's framing cannot be trusted). */
static void reply_error_close(srv_conn *c, int status, const char *code, const char *msg) {
    c->close_after = true;
    srv_reply_error(c, status, code, NULL, msg);
}

/* First call for a request: everything decidable from the headers alone. Returns true when the
 * request may proceed to read its body. */
static bool screen_headers(srv_conn *c, const srv_route **route_out) {
    srv_server *s = c->srv;
    bool known = false;
    const srv_route *rt = srv_find_route(c->method, c->url, &known);
    *route_out = rt;
    c->route = rt ? rt->label : "other";
    /* Framing first, on every path: two Content-Length headers, or one with Transfer-Encoding,
     * is how requests are smuggled past a proxy that reads them differently. */
    header_count hc = {0};
    MHD_get_connection_values(c->mhd, MHD_HEADER_KIND, count_header, &hc);
    if (hc.content_length > 1) {
        reply_error_close(c, 400, "bad_request", "more than one Content-Length header");
        return false;
    }
    if (hc.content_length && hc.transfer_encoding) {
        reply_error_close(c, 400, "bad_request", "both Content-Length and Transfer-Encoding given");
        return false;
    }
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
        srv_reply_refused(c);
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
        if (!*cl || *end || v > s->cfg.max_body_bytes) {
            char msg[160];
            snprintf(msg, sizeof msg, "request body larger than the limit of %zu bytes", s->cfg.max_body_bytes);
            srv_reply_error(c, 413, "request_too_large", NULL, msg);
            return false;
        }
        /* the whole body is known: hold its place in the budget now, or refuse before reading it */
        if (v > 0) {
            if (!srv_body_take(c, (size_t)v + 1)) {
                reply_body_budget(c);
                return false;
            }
            if (!slm_grow((void **)&c->body.s, &c->body.cap, (size_t)v + 1, 1, 64)) {
                srv_reply_error(c, 503, "overloaded", NULL, "out of memory for the request body; retry shortly");
                return false;
            }
            c->body.s[0] = 0;
        }
    }
    return true;
}

/* Escapes what goes into the one-line request log: control bytes, DEL, backslash and every
 * non-ASCII byte become \xHH, so a path holding %0a or %1b cannot forge a line or drive a terminal. */
const char *srv_log_clean(const char *text, char *buf, size_t cap) {
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)(text ? text : ""); *p && o + 5 < cap; p++) {
        if (*p < 0x20 || *p >= 0x7f || *p == '\\')
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", *p);
        else
            buf[o++] = (char)*p;
    }
    buf[o] = 0;
    return buf;
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
        c->sock = conn_sock(mhd);
        tls_conn = c;
        c->api = strncmp(url, "/api/", 5) == 0 ? SRV_API_OLLAMA : SRV_API_OPENAI;
        c->keep_alive = s->cfg.keep_alive_s;
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
        /* headers are in: the body has its own absolute deadline */
        srv_sock_set_phase(s, c->sock, SRV_SOCK_BODY, slm_now() + s->cfg.body_timeout_s);
        const srv_route *rt;
        if (!screen_headers(c, &rt)) return c->replied ? MHD_YES : MHD_NO;
        return MHD_YES;
    }
    if (c->replied) { /* answered early: drop whatever body still arrives, up to a bound */
        size_t n = *upload_size;
        *upload_size = 0;
        c->discarded += n;
        /* an endless (chunked) body is not read forever: past the limit the connection closes */
        if (c->discarded > s->cfg.max_body_bytes) return MHD_NO;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (c->body_too_large || c->body_over_budget) {
            c->discarded += n;
            if (c->discarded <= s->cfg.max_body_bytes) return MHD_YES;
            /* a chunked body that does not end: answer now and close rather than read forever */
            char msg[160];
            if (c->body_over_budget) {
                snprintf(msg, sizeof msg, "server body budget (--max-body-total %zu bytes) is full; retry shortly", s->cfg.max_body_total);
                raw_reply_and_close(c, 503, "Service Unavailable", "overloaded", msg);
            } else {
                snprintf(msg, sizeof msg, "request body larger than the limit of %zu bytes", s->cfg.max_body_bytes);
                raw_reply_and_close(c, 413, "Content Too Large", "request_too_large", msg);
            }
            return MHD_NO;
        }
        if (n > s->cfg.max_body_bytes - c->body.len) {
            c->body_too_large = true;
            c->discarded = c->body.len + n;
            srv_body_release(c);
            return MHD_YES;
        }
        if (c->body.len + n + 1 > c->body_reserved && !srv_body_take(c, c->body.len + n + 1 - c->body_reserved)) {
            c->body_over_budget = true;
            c->discarded = c->body.len + n;
            srv_body_release(c);
            return MHD_YES;
        }
        return slm_buf_append(&c->body, upload_data, n) ? MHD_YES : MHD_NO;
    }
    srv_sock_set_phase(s, c->sock, SRV_SOCK_BUSY, 0);
    if (c->body_too_large) {
        char msg[160];
        snprintf(msg, sizeof msg, "request body larger than the limit of %zu bytes", s->cfg.max_body_bytes);
        return srv_reply_error(c, 413, "request_too_large", NULL, msg);
    }
    if (c->body_over_budget) return reply_body_budget(c);
    bool known;
    const srv_route *rt = srv_find_route(method, url, &known);
    if (!rt) return srv_reply_error(c, 404, NULL, NULL, "no such route");
    enum MHD_Result ret = srv_dispatch(c, rt);
    srv_body_release(c); /* parsed: the handlers keep no pointer into the body */
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *mhd, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)mhd;
    srv_server *s = cls;
    srv_conn *c = *con_cls;
    if (!c) return;
    if (tls_conn == c) tls_conn = NULL;
    int status = c->replied ? c->status : 499; /* 499: the client left before an answer */
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && c->status == 200) status = 499;
    if (!c->replied && c->sock) { /* its deadline passed, or shed for the reserve */
        pthread_mutex_lock(&s->socks_mu);
        if (c->sock->cut) status = 408;
        pthread_mutex_unlock(&s->socks_mu);
    }
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
    if (s->cfg.log_requests) {
        char m[64], u[1024];
        fprintf(stderr, "%s %s %d %.1f ms\n", srv_log_clean(c->method, m, sizeof m), srv_log_clean(c->url, u, sizeof u), status,
                (slm_now() - c->t_start) * 1e3);
    }
    srv_body_release(c);
    srv_release_model(c);
    /* keep-alive: the next request's headers have an absolute deadline too */
    if (c->sock) {
        int wait = s->cfg.idle_timeout_s > s->cfg.header_timeout_s ? s->cfg.idle_timeout_s : s->cfg.header_timeout_s;
        srv_sock_set_phase(s, c->sock, SRV_SOCK_HEADERS, slm_now() + wait);
    }
    free(c);
    *con_cls = NULL;
    atomic_fetch_sub(&s->live_conns, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char line[512], clean[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    /* libmicrohttpd answers a body it cannot parse (a chunk line longer than its buffer: a huge
     * chunk extension) with its own 500; the client sent it, so answer 400 first and close. */
    srv_conn *c = tls_conn;
    if (c && !c->replied && strstr(line, "Error processing request (HTTP response code is 500"))
        raw_reply_and_close(c, 400, "Bad Request", "bad_request", "malformed request body (a chunk line is too long)");
    size_t n = strlen(line);
    while (n && line[n - 1] == '\n') line[--n] = 0;
    fprintf(stderr, "slm serve: http: %s\n", srv_log_clean(line, clean, sizeof clean));
}

struct MHD_Daemon *srv_http_start(srv_server *s, const struct sockaddr *addr, char *err, size_t err_len) {
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    if (addr->sa_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_SOCK_ADDR, addr, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->cfg.max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)s->cfg.idle_timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT, s->cfg.max_header_bytes,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)1 << 20, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_END);
    if (!d) {
        snprintf(err, err_len, "cannot listen on %s:%d (address in use or not permitted?)", s->cfg.host, s->cfg.port);
        return NULL;
    }
    if (pthread_create(&s->watchdog, NULL, watchdog_main, s) != 0) {
        MHD_stop_daemon(d);
        snprintf(err, err_len, "cannot start the connection watchdog thread");
        return NULL;
    }
    s->watchdog_running = true;
    return d;
}

void srv_http_stop(srv_server *s) {
    if (s->daemon) MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
    atomic_store(&s->stopping, true);
    if (s->watchdog_running) pthread_join(s->watchdog, NULL);
    s->watchdog_running = false;
}
