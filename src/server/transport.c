/* libmicrohttpd glue: the access handler (limits, origin checks, credentials handed to the gate's
 * admit phase, routing) and the end-of-request bookkeeping (metrics, log line, the gate's record
 * phase). Runs one thread per connection. */
#include "transport.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

/* First call for a request: everything decidable from the headers alone. Returns true when the
 * request may proceed to read its body. */
static bool screen_headers(srv_conn *c, const srv_route **route_out) {
    srv_server *s = c->srv;
    bool known = false;
    const srv_route *rt = srv_find_route(c->method, c->url, &known);
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
        const srv_route *rt;
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
    const srv_route *rt = srv_find_route(method, url, &known);
    if (!rt) return srv_reply_error(c, 404, NULL, NULL, "no such route");
    return srv_dispatch(c, rt);
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
