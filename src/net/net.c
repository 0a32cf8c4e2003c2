/* The network client: every outbound connection of slm starts here (see slm_net.h).
 *
 * One transfer = one curl easy handle driven by a private multi handle on the caller's thread. The
 * multi loop wakes at least every 20 ms, which is what makes cancellation, the deadline and the
 * first-byte / idle timeouts act promptly without signals or extra threads. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include "slm_engine.h" /* slm_now */
#include "slm_net.h"

#define NET_POLL_MS 20
#define NET_DEFAULT_CONNECT_S 10.0
#define NET_DEFAULT_MAX_BODY (16u << 20)
#define NET_MAX_HEADERS 64
#define NET_MAX_RESPONSE_HEADERS (64u << 10)

/* ---------- air-gapped mode ---------- */

static atomic_bool air_gapped;

void slm_net_set_air_gapped(bool on) {
    if (on) atomic_store(&air_gapped, true); /* a latch: never switched off again */
}

bool slm_net_air_gapped(void) { return atomic_load(&air_gapped); }

/* ---------- helpers ---------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;
/* Name lookups and TLS sessions are shared by every transfer of the process (a resumed TLS session
 * saves a round trip per call). Connections are not: libcurl does not support sharing its
 * connection cache between threads. */
static CURLSH *share;
static pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *user) {
    (void)h;
    (void)access;
    (void)user;
    if (data >= 0 && data < CURL_LOCK_DATA_LAST) pthread_mutex_lock(&share_mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *user) {
    (void)h;
    (void)user;
    if (data >= 0 && data < CURL_LOCK_DATA_LAST) pthread_mutex_unlock(&share_mu[data]);
}

static void curl_init(void) {
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (curl_init_rc != CURLE_OK) return;
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++) pthread_mutex_init(&share_mu[i], NULL);
    share = curl_share_init();
    if (share && (curl_share_setopt(share, CURLSHOPT_LOCKFUNC, share_lock) != CURLSHE_OK ||
                  curl_share_setopt(share, CURLSHOPT_UNLOCKFUNC, share_unlock) != CURLSHE_OK ||
                  curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) != CURLSHE_OK ||
                  curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION) != CURLSHE_OK)) {
        curl_share_cleanup(share); /* works without: every transfer then resolves and handshakes afresh */
        share = NULL;
    }
}

const char *slm_net_result_name(slm_net_result r) {
    switch (r) {
    case SLM_NET_OK: return "ok";
    case SLM_NET_AIR_GAPPED: return "air-gapped";
    case SLM_NET_INVALID: return "invalid";
    case SLM_NET_CONNECT: return "connect";
    case SLM_NET_TLS: return "tls";
    case SLM_NET_TIMEOUT: return "timeout";
    case SLM_NET_BROKEN: return "broken";
    case SLM_NET_CANCELLED: return "cancelled";
    case SLM_NET_ABORTED: return "aborted";
    case SLM_NET_TOO_LARGE: return "too-large";
    case SLM_NET_NOMEM: return "out-of-memory";
    case SLM_NET_ERROR: return "error";
    }
    return "error";
}

void slm_net_scrub(char *text, const char *secret) {
    if (!text || !secret || !*secret) return;
    size_t n = strlen(text), m = strlen(secret);
    size_t min_run = m < 8 ? m : 8;
    if (n < min_run) return;
    unsigned char *mark = calloc(n, 1);
    if (!mark) { /* cannot tell which part is safe: withhold the whole text */
        snprintf(text, n + 1, "%s", n >= 22 ? "[error text withheld]" : "");
        return;
    }
    for (size_t i = 0; i + min_run <= n; i++) {
        for (size_t j = 0; j + min_run <= m; j++) {
            size_t len = 0;
            while (i + len < n && j + len < m && text[i + len] == secret[j + len]) len++;
            if (len >= min_run) memset(mark + i, 1, len);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (mark[i]) text[i] = '*';
    free(mark);
}

char *slm_net_url_host(const char *url, char *out, size_t out_len) {
    if (!out || !out_len) return out;
    out[0] = 0;
    if (!url) return out;
    pthread_once(&curl_once, curl_init);
    CURLU *h = curl_url();
    char *host = NULL;
    if (h && curl_url_set(h, CURLUPART_URL, url, 0) == CURLUE_OK && curl_url_get(h, CURLUPART_HOST, &host, 0) == CURLUE_OK)
        snprintf(out, out_len, "%s", host);
    curl_free(host);
    curl_url_cleanup(h);
    return out;
}

/* The scheme of url (lower case) into out; false when it does not parse. */
static bool url_scheme(const char *url, char *out, size_t out_len) {
    CURLU *h = curl_url();
    char *scheme = NULL;
    bool ok = h && curl_url_set(h, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK;
    if (ok) snprintf(out, out_len, "%s", scheme);
    curl_free(scheme);
    curl_url_cleanup(h);
    return ok;
}

static bool has_line_break(const char *s) { return s && strpbrk(s, "\r\n") != NULL; }

/* ---------- one transfer ---------- */

typedef struct xfer {
    const slm_net_request *rq;
    slm_net_response *rs;
    double t_last;         /* last response byte (header or body) */
    bool got_byte;
    bool aborted;          /* on_body said stop */
    bool too_large;
    bool nomem;
    size_t max_body;
    FILE *upload;          /* rq->body_file, open while sending */
} xfer;

static void note_byte(xfer *x) {
    double now = slm_now();
    if (!x->got_byte) {
        x->got_byte = true;
        x->rs->t_first_byte = now;
    }
    x->t_last = now;
}

static void keep_header_line(xfer *x, const char *data, size_t n);

static size_t on_header(char *data, size_t size, size_t nmemb, void *user) {
    xfer *x = user;
    size_t n = size * nmemb;
    note_byte(x);
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) { /* a new response (after 100 Continue, say) */
        const char *sp = memchr(data, ' ', n);
        x->rs->status = sp ? atoi(sp + 1) : 0;
        x->rs->content_type[0] = 0;
        x->rs->retry_after_s = -1;
        x->rs->headers_len = 0; /* only the final response's headers are kept */
        if (x->rs->headers) x->rs->headers[0] = 0;
        return n;
    }
    keep_header_line(x, data, n);
    const char *colon = memchr(data, ':', n);
    if (!colon) return n;
    size_t name_len = (size_t)(colon - data);
    const char *v = colon + 1;
    const char *end = data + n;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t')) end--;
    char value[128];
    size_t vlen = (size_t)(end - v);
    if (vlen >= sizeof value) vlen = sizeof value - 1;
    memcpy(value, v, vlen);
    value[vlen] = 0;
    if (name_len == 12 && strncasecmp(data, "Content-Type", 12) == 0) {
        snprintf(x->rs->content_type, sizeof x->rs->content_type, "%s", value);
    } else if (name_len == 11 && strncasecmp(data, "Retry-After", 11) == 0) {
        char *num_end = NULL;
        double secs = strtod(value, &num_end);
        if (num_end != value && *num_end == 0 && secs >= 0) {
            x->rs->retry_after_s = secs;
        } else {
            time_t when = curl_getdate(value, NULL);
            if (when > 0) {
                double delta = difftime(when, time(NULL));
                x->rs->retry_after_s = delta > 0 ? delta : 0;
            }
        }
    }
    return n;
}

/* Appends one header line to rs->headers (lines past the cap are dropped: callers look up what
 * they need, and a server sending 64 KiB of headers gets nothing more kept). */
static void keep_header_line(xfer *x, const char *data, size_t n) {
    slm_net_response *rs = x->rs;
    if (n == 0 || rs->headers_len + n + 1 > NET_MAX_RESPONSE_HEADERS) return;
    char *grown = realloc(rs->headers, rs->headers_len + n + 1);
    if (!grown) return;
    memcpy(grown + rs->headers_len, data, n);
    rs->headers = grown;
    rs->headers_len += n;
    rs->headers[rs->headers_len] = 0;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *user) {
    xfer *x = user;
    size_t n = fread(buf, 1, size * nmemb, x->upload);
    if (n == 0 && ferror(x->upload)) return CURL_READFUNC_ABORT;
    return n;
}

static bool buffer_body(xfer *x, const char *data, size_t n) {
    slm_net_response *rs = x->rs;
    if (rs->body_len + n > x->max_body) {
        x->too_large = true;
        return false;
    }
    char *grown = realloc(rs->body, rs->body_len + n + 1);
    if (!grown) {
        x->nomem = true;
        return false;
    }
    memcpy(grown + rs->body_len, data, n);
    rs->body = grown;
    rs->body_len += n;
    rs->body[rs->body_len] = 0;
    return true;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *user) {
    xfer *x = user;
    size_t n = size * nmemb;
    note_byte(x);
    x->rs->bytes_received += n;
    bool success = x->rs->status >= 200 && x->rs->status < 300;
    if (success && x->rq->on_body) {
        if (!x->rq->on_body(x->rq->user, data, n)) {
            x->aborted = true;
            return 0; /* makes curl stop with CURLE_WRITE_ERROR */
        }
        return n;
    }
    if (!buffer_body(x, data, n)) {
        /* an error body only has to carry the server's message: its start is enough */
        if (!success && x->too_large) {
            x->too_large = false;
            return n;
        }
        return 0;
    }
    return n;
}

static curl_socket_t open_socket(void *user, curlsocktype purpose, struct curl_sockaddr *a) {
    (void)user;
    (void)purpose;
    if (slm_net_air_gapped()) return CURL_SOCKET_BAD; /* the latch flipped while resolving */
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

__attribute__((format(printf, 3, 4))) static slm_net_result fail(slm_net_response *rs, slm_net_result r,
                                                                  const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rs->error, sizeof rs->error, fmt, ap);
    va_end(ap);
    return r;
}

static slm_net_result classify_curl(CURLcode c) {
    switch (c) {
    case CURLE_OK: return SLM_NET_OK;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT: return SLM_NET_CONNECT;
    case CURLE_OPERATION_TIMEDOUT: return SLM_NET_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED: return SLM_NET_TLS;
    case CURLE_OUT_OF_MEMORY: return SLM_NET_NOMEM;
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT: return SLM_NET_INVALID;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_WEIRD_SERVER_REPLY: return SLM_NET_BROKEN;
    default: return SLM_NET_ERROR;
    }
}

/* The transfer proper, once the request is valid and allowed. */
static slm_net_result run(const slm_net_request *rq, slm_net_response *rs, const char *host) {
    xfer x = {.rq = rq, .rs = rs, .max_body = rq->max_body_bytes ? rq->max_body_bytes : NET_DEFAULT_MAX_BODY};
    char errbuf[CURL_ERROR_SIZE] = "";
    struct curl_slist *hdrs = NULL;
    char *auth = NULL;
    CURL *e = curl_easy_init();
    CURLM *m = curl_multi_init();
    slm_net_result result = SLM_NET_OK;
    if (!e || !m) {
        result = fail(rs, SLM_NET_NOMEM, "cannot create an HTTP client (out of memory)");
        goto done;
    }
    for (int i = 0; i < rq->n_headers; i++) {
        struct curl_slist *grown = curl_slist_append(hdrs, rq->headers[i]);
        if (!grown) goto nomem;
        hdrs = grown;
    }
    if (rq->bearer_token && *rq->bearer_token) {
        size_t len = strlen(rq->bearer_token) + 32;
        if (!(auth = malloc(len))) goto nomem;
        snprintf(auth, len, "Authorization: Bearer %s", rq->bearer_token);
        struct curl_slist *grown = curl_slist_append(hdrs, auth);
        if (!grown) goto nomem;
        hdrs = grown;
    }
    { /* no "Expect: 100-continue" round trip before large bodies */
        struct curl_slist *grown = curl_slist_append(hdrs, "Expect:");
        if (!grown) goto nomem;
        hdrs = grown;
    }
    double connect_s = rq->connect_timeout_s > 0 ? rq->connect_timeout_s : NET_DEFAULT_CONNECT_S;
    const char *method = rq->method ? rq->method : (rq->body || rq->body_file) ? "POST" : "GET";
    bool post = strcmp(method, "POST") == 0;
    bool with_body = post || strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
    curl_off_t upload_size = 0;
    if (rq->body_file) {
        if (!with_body) {
            result = fail(rs, SLM_NET_INVALID, "a %.16s request carries no body", method);
            goto done;
        }
        x.upload = fopen(rq->body_file, "rb");
        struct stat sb;
        if (!x.upload || fstat(fileno(x.upload), &sb) != 0) {
            result = fail(rs, SLM_NET_INVALID, "cannot read the body file %.200s", rq->body_file);
            goto done;
        }
        upload_size = (curl_off_t)sb.st_size;
    }
    CURLcode set = CURLE_OK;
#define SET(opt, val) \
    if (set == CURLE_OK) set = curl_easy_setopt(e, opt, val)
    SET(CURLOPT_URL, rq->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_FOLLOWLOCATION, 0L); /* a redirect could carry the key to another host */
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (rq->ca_file) SET(CURLOPT_CAINFO, rq->ca_file);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)(connect_s * 1000.0 + 0.5));
    SET(CURLOPT_HTTPHEADER, hdrs);
    SET(CURLOPT_USERAGENT, "slm");
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, &x);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, &x);
    SET(CURLOPT_ERRORBUFFER, errbuf);
    SET(CURLOPT_OPENSOCKETFUNCTION, open_socket);
    SET(CURLOPT_OPENSOCKETDATA, NULL);
    SET(CURLOPT_TCP_KEEPALIVE, 1L);
    if (share) SET(CURLOPT_SHARE, share);
    if (with_body && x.upload) {
        /* a streamed body: curl's upload mode (a PUT), renamed when another method was asked */
        SET(CURLOPT_UPLOAD, 1L);
        SET(CURLOPT_READFUNCTION, on_read);
        SET(CURLOPT_READDATA, &x);
        SET(CURLOPT_INFILESIZE_LARGE, upload_size);
        if (strcmp(method, "PUT") != 0) SET(CURLOPT_CUSTOMREQUEST, method);
    } else if (with_body) {
        SET(CURLOPT_POST, 1L);
        SET(CURLOPT_POSTFIELDS, rq->body ? rq->body : "");
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(rq->body ? rq->body_len : 0));
        if (!post) SET(CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "DELETE") == 0) {
        SET(CURLOPT_CUSTOMREQUEST, "DELETE");
    } else {
        result = fail(rs, SLM_NET_INVALID, "unsupported HTTP method '%.16s'", method);
        goto done;
    }
#undef SET
    if (set != CURLE_OK) {
        result = fail(rs, classify_curl(set) == SLM_NET_NOMEM ? SLM_NET_NOMEM : SLM_NET_ERROR,
                      "cannot configure the HTTP client: %s", curl_easy_strerror(set));
        goto done;
    }
    if (curl_multi_add_handle(m, e) != CURLM_OK) goto nomem;

    double t_start = slm_now();
    CURLcode code = CURLE_OK;
    bool finished = false;
    while (!finished) {
        int running = 0;
        CURLMcode mc = curl_multi_perform(m, &running);
        if (mc != CURLM_OK) {
            result = fail(rs, SLM_NET_ERROR, "%s: %s", host, curl_multi_strerror(mc));
            break;
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)))
            if (msg->msg == CURLMSG_DONE) {
                code = msg->data.result;
                finished = true;
            }
        if (finished || running == 0) {
            finished = true;
            break;
        }
        double now = slm_now();
        if (rq->should_cancel && rq->should_cancel(rq->user)) {
            result = fail(rs, SLM_NET_CANCELLED, "request to %s cancelled", host);
            break;
        }
        slm_net_timeout why = SLM_NET_TIMEOUT_NONE;
        double limit = 0;
        if (rq->deadline > 0 && now >= rq->deadline) why = SLM_NET_TIMEOUT_DEADLINE;
        else if (rq->total_timeout_s > 0 && now - t_start >= rq->total_timeout_s)
            why = SLM_NET_TIMEOUT_TOTAL, limit = rq->total_timeout_s;
        else if (!x.got_byte && rq->first_byte_timeout_s > 0 && now - t_start >= rq->first_byte_timeout_s)
            why = SLM_NET_TIMEOUT_FIRST_BYTE, limit = rq->first_byte_timeout_s;
        else if (x.got_byte && rq->idle_timeout_s > 0 && now - x.t_last >= rq->idle_timeout_s)
            why = SLM_NET_TIMEOUT_IDLE, limit = rq->idle_timeout_s;
        if (why != SLM_NET_TIMEOUT_NONE) {
            rs->timeout = why;
            if (why == SLM_NET_TIMEOUT_DEADLINE) result = fail(rs, SLM_NET_TIMEOUT, "request to %s: deadline passed", host);
            else if (why == SLM_NET_TIMEOUT_TOTAL)
                result = fail(rs, SLM_NET_TIMEOUT, "request to %s took longer than %.1f s", host, limit);
            else if (why == SLM_NET_TIMEOUT_FIRST_BYTE)
                result = fail(rs, SLM_NET_TIMEOUT, "no response from %s within %.1f s", host, limit);
            else
                result = fail(rs, SLM_NET_TIMEOUT, "%s sent nothing for %.1f s", host, limit);
            break;
        }
        curl_multi_poll(m, NULL, 0, NET_POLL_MS, NULL);
    }
    if (finished) {
        if (x.aborted) result = fail(rs, SLM_NET_ABORTED, "transfer from %s stopped by its reader", host);
        else if (x.nomem) result = fail(rs, SLM_NET_NOMEM, "out of memory reading the response of %s", host);
        else if (x.too_large)
            result = fail(rs, SLM_NET_TOO_LARGE, "response of %s is larger than %zu bytes", host, x.max_body);
        else if (code != CURLE_OK) {
            result = classify_curl(code);
            if (result == SLM_NET_TIMEOUT) rs->timeout = SLM_NET_TIMEOUT_CONNECT;
            fail(rs, result, "%s: %s", host, errbuf[0] ? errbuf : curl_easy_strerror(code));
        }
    }
    curl_multi_remove_handle(m, e);
    goto done;
nomem:
    result = fail(rs, SLM_NET_NOMEM, "out of memory preparing a request to %s", host);
done:
    if (m) curl_multi_cleanup(m);
    if (e) curl_easy_cleanup(e);
    curl_slist_free_all(hdrs);
    if (x.upload) fclose(x.upload);
    if (auth) {
        /* the header held the key: do not leave it in freed memory */
        volatile char *p = auth;
        while (*p) *p++ = 0;
        free(auth);
    }
    return result;
}

slm_net_result slm_net_perform(const slm_net_request *rq, slm_net_response *rs) {
    memset(rs, 0, sizeof *rs);
    rs->retry_after_s = -1;
    if (!rq || !rq->url || !*rq->url) return fail(rs, SLM_NET_INVALID, "no URL to connect to");
    pthread_once(&curl_once, curl_init);
    char host[256];
    slm_net_url_host(rq->url, host, sizeof host);
    /* the air gap comes before everything else that might touch the network, DNS included */
    if (slm_net_air_gapped())
        return fail(rs, SLM_NET_AIR_GAPPED, "air-gapped mode: outbound connection to %s refused", host[0] ? host : "(unknown host)");
    if (curl_init_rc != CURLE_OK) return fail(rs, SLM_NET_ERROR, "libcurl failed to initialise");
    char scheme[16];
    if (!host[0] || !url_scheme(rq->url, scheme, sizeof scheme))
        return fail(rs, SLM_NET_INVALID, "invalid URL (expected http://host[:port]/path or https://…)");
    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)
        return fail(rs, SLM_NET_INVALID, "unsupported URL scheme '%s' (only http and https)", scheme);
    if (rq->n_headers < 0 || rq->n_headers > NET_MAX_HEADERS || (rq->n_headers > 0 && !rq->headers))
        return fail(rs, SLM_NET_INVALID, "invalid header list (at most %d headers)", NET_MAX_HEADERS);
    for (int i = 0; i < rq->n_headers; i++)
        if (!rq->headers[i] || has_line_break(rq->headers[i]) || !strchr(rq->headers[i], ':'))
            return fail(rs, SLM_NET_INVALID, "request header %d is not a single 'Name: value' line", i);
    if (has_line_break(rq->bearer_token)) return fail(rs, SLM_NET_INVALID, "the API key contains a line break");
    slm_net_result r = run(rq, rs, host);
    slm_net_scrub(rs->error, rq->bearer_token);
    return r;
}

void slm_net_response_free(slm_net_response *rs) {
    if (!rs) return;
    free(rs->body);
    rs->body = NULL;
    rs->body_len = 0;
    free(rs->headers);
    rs->headers = NULL;
    rs->headers_len = 0;
}

bool slm_net_response_header(const slm_net_response *rs, const char *name, char *out, size_t cap) {
    if (!rs || !rs->headers || !name || !out || cap == 0) return false;
    size_t name_len = strlen(name);
    for (const char *line = rs->headers; *line;) {
        const char *eol = strchr(line, '\n');
        const char *end = eol ? eol : line + strlen(line);
        if ((size_t)(end - line) > name_len && strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
            const char *v = line + name_len + 1;
            while (v < end && (*v == ' ' || *v == '\t')) v++;
            const char *ve = end;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            size_t len = (size_t)(ve - v);
            if (len >= cap) return false;
            memcpy(out, v, len);
            out[len] = 0;
            return true;
        }
        if (!eol) break;
        line = eol + 1;
    }
    return false;
}
