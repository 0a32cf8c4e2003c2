/* slm upstream — an OpenAI-compatible API as a backend of the request gate.
 *
 * A GENERATE call routed here is sent to {url}/chat/completions (call->messages) or
 * {url}/completions (call->prompt), always streamed (stream_options.include_usage), and its text is
 * appended to the call's slm_request exactly as the local engine would (r->text under r->mu, cv
 * broadcast, finish/usage/done), so front ends read both routes the same way.
 *
 * Each call runs on its own worker thread, which drives the transfer through slm_net (the only
 * outbound client). Failures before any text reached the request (refused, timeout, 429, 5xx,
 * broken stream) are retried with exponential backoff and jitter (429 waits Retry-After, up to a
 * cap); after the first byte of text reached a streaming client (call->stream) there is no retry:
 * the request ends with SLM_FINISH_ERROR, the text so far kept. For a client that does not stream
 * (it reads r->text only once r->done), the partial text is discarded and the call retried or
 * handed to the fallback like any failure before output. A circuit breaker stops trying after
 * consecutive failed calls. When a local fallback engine is set, a call that fails before any text
 * (or is refused by the breaker or the air gap) is handed to it instead and call->route becomes
 * "local"; a timed-out attempt is then not retried (a hung upstream would cost a whole time limit
 * per try). */
#ifndef SLM_UPSTREAM_H
#define SLM_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "slm_engine.h"
#include "slm_gate.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct slm_upstream_config {
    const char *name;            /* e.g. "frontier" (errors name it) */
    const char *url;             /* base URL including /v1, e.g. http://127.0.0.1:8081/v1 */
    const char *model;           /* the upstream's model name sent in requests */
    const char *api_key;         /* may be NULL; sent as Authorization: Bearer; never logged or in errors */
    double timeout_s;            /* total per attempt; 0 = 120 */
    double first_byte_timeout_s; /* from the start of an attempt to the first response byte; 0 = 30 */
    double idle_timeout_s;       /* longest silence between response bytes; 0 = first_byte_timeout_s */
    double connect_timeout_s;    /* 0 = 10 (never more than first_byte_timeout_s) */
    int max_retries;             /* retries before any output was delivered; 0 = 2, < 0 = none */
    double retry_base_s;         /* first backoff (doubling, with jitter, at most 8 s); 0 = 0.5 */
    double retry_after_max_s;    /* a 429's Retry-After is honoured up to this; longer = give up; 0 = 30 */
    int breaker_threshold;       /* consecutive failed calls that open the circuit; 0 = 5 */
    double breaker_cooldown_s;   /* how long an open circuit refuses before one trial call; 0 = 30 */
    const char *ca_file;         /* PEM CA bundle for https; NULL = the system's (verification is always on) */
    size_t max_text_bytes;       /* text one call may receive; more ends it with an error; 0 = 32 MiB */
    int max_in_flight;           /* calls running at once (one worker thread each); more are refused
                                  * (503 upstream_busy) or go to the fallback; 0 = 256 */
} slm_upstream_config;

typedef struct slm_upstream slm_upstream;

/* Validates and copies cfg (url must be http:// or https:// with a host; model non-empty; an
 * empty name becomes "upstream"). */
int slm_upstream_new(const slm_upstream_config *cfg, slm_upstream **out, char *err, size_t err_len);
/* Cancels in-flight calls (their requests finish CANCELLED) and joins their workers. Free it
 * before the fallback engine: a worker may hand its request to the engine until it is joined. */
void slm_upstream_free(slm_upstream *u);
const char *slm_upstream_name(const slm_upstream *u);

/* A gate backend (add it with slm_gate_add_backend) that runs GENERATE calls on the upstream.
 * submit refuses (false, status/error set) with 400 unsupported_call (not GENERATE, no
 * messages/prompt), 400 invalid_request (text that is not UTF-8), 400 unsupported_parameter (a
 * grammar/JSON schema, logprobs or logit_bias: local-engine features), 403 air_gapped, 503
 * upstream_unavailable (circuit open), 503 upstream_busy (max_in_flight reached), 503
 * shutting_down, unless a fallback takes the call; cancel marks the request cancelled and wakes its worker. The call must stay alive until
 * its request is done or slm_gate_cancel returned; read call->route after r->done (or after the
 * first text, under r->mu). */
slm_gate_backend slm_upstream_backend(slm_upstream *u);

/* Local fallback (on_upstream_error: local): calls that fail before any output reached the request
 * go to `engine` (which must run its scheduler thread, slm_engine_start, and outlive u); the
 * request's model field picks the local model ("" = the engine's first). NULL = none: the request
 * finishes with SLM_FINISH_ERROR and a clear error. Set before serving. */
void slm_upstream_set_fallback(slm_upstream *u, slm_engine *engine);

/* True while the circuit breaker refuses calls (cooldown running, or its one trial in flight). */
bool slm_upstream_is_open(const slm_upstream *u);

/* Counters since creation, for metrics. */
typedef struct slm_upstream_stats {
    long calls;          /* calls taken by submit (not refused) */
    long attempts;       /* HTTP attempts, retries included */
    long retries;
    long failures;       /* calls that failed upstream (whether or not a fallback then served them) */
    long fallbacks;      /* calls handed to the local fallback */
    long breaker_opens;  /* times the circuit opened */
    long refused_open;   /* calls refused or diverted because the circuit was open */
    long refused_busy;   /* calls refused or diverted because max_in_flight were running */
    long in_flight;      /* calls running now (a server draining for shutdown waits for 0) */
} slm_upstream_stats;
void slm_upstream_get_stats(const slm_upstream *u, slm_upstream_stats *out);

#ifdef __cplusplus
}
#endif
#endif
