/* slm net — the one place in slm that opens outbound connections (an HTTP(S) client on libcurl).
 *
 * Everything that talks to another machine (the upstream backend, a future model pull) goes through
 * slm_net_perform, so two rules hold in one place: air-gapped mode refuses every connection before a
 * socket (or a DNS lookup) exists, and TLS is always verified (only the CA file can be chosen).
 * Secrets (a bearer token) are sent as headers and scrubbed from every error text.
 *
 * A transfer runs on the calling thread (a private curl multi handle polled every few ms), so
 * cancellation, deadlines and the idle timeout act within ~20 ms. */
#ifndef SLM_NET_H
#define SLM_NET_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Process-wide air-gapped mode. It is a latch: once on, every outbound connection is refused for
 * the rest of the process (slm_net_set_air_gapped(false) afterwards is ignored), so no later code
 * path or reload can reopen the network. */
void slm_net_set_air_gapped(bool on);
bool slm_net_air_gapped(void);

typedef enum {
    SLM_NET_OK = 0,      /* a complete HTTP response arrived (any status: check resp->status) */
    SLM_NET_AIR_GAPPED,  /* refused before any socket: air-gapped mode */
    SLM_NET_INVALID,     /* the request itself is unusable (bad URL, scheme other than http/https) */
    SLM_NET_CONNECT,     /* name resolution or connection failed (refused, unreachable) */
    SLM_NET_TLS,         /* TLS handshake or certificate verification failed */
    SLM_NET_TIMEOUT,     /* a time limit fired: resp->timeout says which */
    SLM_NET_BROKEN,      /* the connection broke or the response was cut short */
    SLM_NET_CANCELLED,   /* should_cancel said so */
    SLM_NET_ABORTED,     /* on_body returned false */
    SLM_NET_TOO_LARGE,   /* a buffered body exceeded max_body_bytes */
    SLM_NET_NOMEM,
    SLM_NET_ERROR,       /* anything else curl reports */
} slm_net_result;

/* Which limit ended a transfer with SLM_NET_TIMEOUT. */
typedef enum {
    SLM_NET_TIMEOUT_NONE = 0,
    SLM_NET_TIMEOUT_CONNECT,    /* no connection within connect_timeout_s */
    SLM_NET_TIMEOUT_FIRST_BYTE, /* no response byte within first_byte_timeout_s of the start */
    SLM_NET_TIMEOUT_IDLE,       /* silence longer than idle_timeout_s after the first byte */
    SLM_NET_TIMEOUT_TOTAL,      /* total_timeout_s elapsed */
    SLM_NET_TIMEOUT_DEADLINE,   /* the absolute deadline passed */
} slm_net_timeout;

typedef struct slm_net_request {
    const char *method;           /* "GET", "POST", "HEAD", "PUT", "PATCH" or "DELETE"; NULL = POST when body is set, else GET */
    const char *url;              /* http:// or https:// only; redirects are not followed */
    const char *const *headers;   /* extra request headers, "Name: value" each (no CR/LF inside) */
    int n_headers;
    const char *bearer_token;     /* sent as "Authorization: Bearer …"; scrubbed from every error text */
    const char *body;             /* request body (not copied; must outlive the call) */
    size_t body_len;
    const char *ca_file;          /* PEM bundle of trusted CAs; NULL = the system's. Verification is always on */
    double connect_timeout_s;     /* 0 = 10 */
    double first_byte_timeout_s;  /* from the start to the first response byte; 0 = none */
    double idle_timeout_s;        /* longest silence between response bytes; 0 = none */
    double total_timeout_s;       /* whole transfer; 0 = none */
    double deadline;              /* absolute slm_now() time; 0 = none */
    size_t max_body_bytes;        /* cap on a buffered body (a non-2xx one, or any when on_body is NULL); 0 = 16 MiB */
    /* Streaming: a 2xx response's body goes to on_body piece by piece as it arrives (it is not
     * buffered); return false to stop the transfer (SLM_NET_ABORTED). A non-2xx body is always
     * buffered into resp->body so the caller can read the server's error message. */
    bool (*on_body)(void *user, const char *data, size_t n);
    /* Polled every few milliseconds; true stops the transfer (SLM_NET_CANCELLED). May be NULL. */
    bool (*should_cancel)(void *user);
    void *user;
    /* The request body streamed from this file (its whole content, read as it is sent) instead of
     * body: uploads of model blobs that need not fit in memory. */
    const char *body_file;
} slm_net_request;

typedef struct slm_net_response {
    int status;                  /* HTTP status of the final response; 0 when none arrived */
    char content_type[128];      /* Content-Type header ("" when absent) */
    double retry_after_s;        /* Retry-After in seconds (delta or HTTP date); -1 when absent */
    char *body;                  /* malloc'd, NUL-terminated buffered body (see on_body); NULL when none */
    size_t body_len;
    size_t bytes_received;       /* body bytes received (streamed or buffered) */
    double t_first_byte;         /* slm_now() of the first response byte; 0 = none */
    slm_net_timeout timeout;     /* with SLM_NET_TIMEOUT */
    char error[256];             /* one line when the result is not SLM_NET_OK; never holds the token */
    char *headers;               /* malloc'd header lines of the final response ("Name: value\r\n"…), at most 64 KiB */
    size_t headers_len;
} slm_net_response;

/* Runs one HTTP exchange. Fills resp (free it with slm_net_response_free whatever the result). */
slm_net_result slm_net_perform(const slm_net_request *req, slm_net_response *resp);
void slm_net_response_free(slm_net_response *resp);
/* The value of the response header name (case-insensitive; the first one), trimmed, into out.
 * false when absent or longer than cap - 1 (never truncated silently). */
bool slm_net_response_header(const slm_net_response *resp, const char *name, char *out, size_t cap);
/* "ok", "air-gapped", "invalid", "connect", "tls", "timeout", "broken", "cancelled", "aborted",
 * "too-large", "out-of-memory", "error". */
const char *slm_net_result_name(slm_net_result r);

/* Copies the host of url into out ("" when it has none or cannot be parsed); returns out. */
char *slm_net_url_host(const char *url, char *out, size_t out_len);
/* Overwrites, in place, every run of 8 or more characters of text that also occurs in secret (the
 * whole secret when it is shorter) with '*'. For error texts that might echo a key. */
void slm_net_scrub(char *text, const char *secret);

#ifdef __cplusplus
}
#endif
#endif
