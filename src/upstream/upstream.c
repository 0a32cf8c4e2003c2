/* The upstream backend: GENERATE calls on an OpenAI-compatible API (see slm_upstream.h).
 *
 * Threads: one detached worker per call. The worker owns a reference to the call's request and
 * never touches the call itself except to set call->route on a fallback, and only while the call is
 * still registered (cancel unregisters it under u->mu). slm_upstream_free waits for the workers. */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "slm_net.h"
#include "slm_upstream.h"
#include "upstream/sse.h"
#include "util/err.h"

#define UP_BACKOFF_CAP_S 8.0
#define UP_MAX_JSON_BODY (16u << 20)
#define UP_MAX_TEXT (32u << 20) /* default: a hostile upstream cannot grow a request's text without bound */

typedef struct up_job up_job;

struct slm_upstream {
    char *name, *url, *model, *api_key, *ca_file;
    char *chat_url, *completions_url;
    double timeout_s, first_byte_s, idle_s, connect_s, retry_base_s, retry_after_max_s, cooldown_s;
    int max_retries, breaker_threshold, max_in_flight;
    size_t max_text;
    slm_engine *fallback;

    pthread_mutex_t mu;
    pthread_cond_t cv;   /* broadcast when a job ends or a call is cancelled (wakes backoff sleeps) */
    up_job *jobs;        /* in flight */
    int n_jobs;
    bool closing;
    /* circuit breaker */
    int consecutive_failures;
    bool tripped;        /* opened and not yet closed by a success */
    double open_until;   /* while tripped: refuse until then */
    bool trial_in_flight;
    slm_upstream_stats stats;
    /* learned from the upstream's 400s, so later calls go out right the first time */
    atomic_bool no_stream_options;     /* it rejects stream_options: usage is then counted here */
    atomic_bool max_completion_tokens; /* it wants max_completion_tokens instead of max_tokens */
};

struct up_job {
    slm_upstream *u;
    slm_request *r;
    slm_gate_call *call; /* NULL once the call was cancelled (it may be gone); under u->mu */
    up_job *next;
    char *body;
    size_t body_len;
    const char *url;
    bool trial;          /* the breaker's half-open trial call */
    bool client_streams; /* call->stream: text in the request may already have reached the client */
    uint64_t rng;
    /* the attempt in progress */
    slm_net_response *rs;
    bool json_body;      /* the upstream answered with one JSON document instead of a stream */
    slm_buf json;
    up_sse sse;
    bool saw_done, saw_finish;
    char finish_reason[32];
    bool has_usage;
    long prompt_tokens, completion_tokens;
    char stream_error[256];
    size_t delivered;    /* text bytes appended to the request, over all attempts */
};

/* ---------- small helpers ---------- */

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static bool net_should_cancel(void *user) {
    up_job *j = user;
    if (atomic_load(&j->r->cancelled)) return true;
    pthread_mutex_lock(&j->u->mu);
    bool closing = j->u->closing;
    pthread_mutex_unlock(&j->u->mu);
    return closing;
}

static double rand01(up_job *j) { /* xorshift64*: jitter only, no need for quality */
    j->rng ^= j->rng >> 12;
    j->rng ^= j->rng << 25;
    j->rng ^= j->rng >> 27;
    return (double)((j->rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

/* Finishes r (once) with error_is_client when the request itself was at fault. */
static void finish_request(slm_request *r, slm_finish why, const char *error, bool client_fault) {
    pthread_mutex_lock(&r->mu);
    if (!r->done) r->error_is_client = client_fault;
    pthread_mutex_unlock(&r->mu);
    slm_request_finish(r, why, error);
}

/* ---------- circuit breaker (under u->mu) ---------- */

/* Whether a new call may go upstream now; marks it the trial when the cooldown has passed. */
static bool breaker_admit(slm_upstream *u, bool *trial, double *wait_s) {
    *trial = false;
    *wait_s = 0;
    if (!u->tripped) return true;
    double now = slm_now();
    if (now < u->open_until) {
        *wait_s = u->open_until - now;
        return false;
    }
    if (u->trial_in_flight) return false;
    u->trial_in_flight = true;
    *trial = true;
    return true;
}

typedef enum { UP_HEALTH_OK, UP_HEALTH_FAILED, UP_HEALTH_UNKNOWN } up_health;

static void breaker_report(slm_upstream *u, up_job *j, up_health h) {
    pthread_mutex_lock(&u->mu);
    if (j->trial) u->trial_in_flight = false;
    if (h == UP_HEALTH_OK) {
        u->consecutive_failures = 0;
        u->tripped = false;
    } else if (h == UP_HEALTH_FAILED) {
        u->consecutive_failures++;
        u->stats.failures++;
        if (j->trial || (!u->tripped && u->consecutive_failures >= u->breaker_threshold)) {
            u->tripped = true;
            u->open_until = slm_now() + u->cooldown_s;
            u->stats.breaker_opens++;
        }
    }
    pthread_mutex_unlock(&u->mu);
}

/* ---------- receiving ---------- */

/* Appends text to the request and wakes its readers. */
static bool deliver(up_job *j, const char *text, size_t n) {
    slm_request *r = j->r;
    pthread_mutex_lock(&r->mu);
    bool ok = slm_request_append_text(r, text, n);
    if (ok && r->t_first == 0) r->t_first = slm_now();
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (ok) j->delivered += n;
    return ok;
}

/* Applies one parsed chunk; returns 0 to go on, 1 when the stream is complete, -1 on error. */
static int apply_chunk(up_job *j, up_chunk *c) {
    if (c->kind == UP_CHUNK_DONE) {
        j->saw_done = true;
        return 1;
    }
    if (c->kind == UP_CHUNK_ERROR) {
        snprintf(j->stream_error, sizeof j->stream_error, "%s", c->error);
        return -1;
    }
    if (c->text_len > j->u->max_text - j->delivered) {
        snprintf(j->stream_error, sizeof j->stream_error, "upstream sent more than %zu bytes of text (max_text_bytes)",
                 j->u->max_text);
        return -1;
    }
    if (c->text_len && !deliver(j, c->text, c->text_len)) {
        snprintf(j->stream_error, sizeof j->stream_error, "out of memory storing the upstream's text");
        return -1;
    }
    if (c->finish_reason[0]) {
        j->saw_finish = true;
        snprintf(j->finish_reason, sizeof j->finish_reason, "%s", c->finish_reason);
    }
    if (c->has_usage) {
        j->has_usage = true;
        j->prompt_tokens = c->prompt_tokens;
        j->completion_tokens = c->completion_tokens;
    }
    return 0;
}

static int on_event(void *user, const char *event, const char *data, size_t len) {
    up_job *j = user;
    up_chunk c;
    up_chunk_parse(event, data, len, &c);
    int rc = apply_chunk(j, &c);
    up_chunk_free(&c);
    return rc < 0 ? -1 : rc;
}

static bool on_body(void *user, const char *data, size_t n) {
    up_job *j = user;
    if (j->saw_done) return true; /* whatever follows [DONE] is ignored */
    if (j->rs->content_type[0] && strstr(j->rs->content_type, "json")) j->json_body = true;
    if (j->json_body) {
        if (j->json.len + n > UP_MAX_JSON_BODY) {
            snprintf(j->stream_error, sizeof j->stream_error, "upstream response larger than %u bytes", UP_MAX_JSON_BODY);
            return false;
        }
        if (!slm_buf_append(&j->json, data, n)) {
            snprintf(j->stream_error, sizeof j->stream_error, "out of memory reading the upstream response");
            return false;
        }
        return true;
    }
    int rc = up_sse_feed(&j->sse, data, n, on_event, j);
    if (rc == -1 && !j->stream_error[0]) snprintf(j->stream_error, sizeof j->stream_error, "%s", j->sse.error);
    return rc >= 0; /* 1 ([DONE]) lets the transfer end on its own */
}

/* ---------- one attempt ---------- */

typedef enum {
    UP_ATTEMPT_OK,
    UP_ATTEMPT_RETRY,     /* transient: worth another try if nothing was delivered */
    UP_ATTEMPT_FATAL,     /* retrying cannot help */
    UP_ATTEMPT_CANCELLED,
    UP_ATTEMPT_DEADLINE,
} up_attempt;

typedef struct up_outcome {
    up_attempt kind;
    int status;             /* HTTP status of an answer; 0 when none came */
    up_health health;
    bool client_fault;      /* the upstream blamed the request (400, 413, 422) */
    bool timed_out;         /* a time limit of the attempt fired */
    double retry_after_s;   /* 429: how long the upstream asked to wait; -1 = not said */
    char error[256];
} up_outcome;

static void reset_attempt(up_job *j) {
    up_sse_free(&j->sse);
    memset(&j->sse, 0, sizeof j->sse);
    slm_buf_free(&j->json);
    j->json_body = false;
    j->saw_done = j->saw_finish = false;
    j->finish_reason[0] = 0;
    j->has_usage = false;
    j->stream_error[0] = 0;
}

static void attempt(up_job *j, up_outcome *o) {
    slm_upstream *u = j->u;
    memset(o, 0, sizeof *o);
    o->retry_after_s = -1;
    reset_attempt(j);
    static const char *const headers[] = {"Content-Type: application/json", "Accept: text/event-stream"};
    slm_net_request rq = {
        .method = "POST",
        .url = j->url,
        .headers = headers,
        .n_headers = 2,
        .bearer_token = u->api_key,
        .body = j->body,
        .body_len = j->body_len,
        .ca_file = u->ca_file,
        .connect_timeout_s = u->connect_s,
        .first_byte_timeout_s = u->first_byte_s,
        .idle_timeout_s = u->idle_s,
        .total_timeout_s = u->timeout_s,
        .deadline = j->r->deadline,
        .max_body_bytes = 64u << 10, /* error bodies: their start carries the message */
        .on_body = on_body,
        .should_cancel = net_should_cancel,
        .user = j,
    };
    slm_net_response rs;
    j->rs = &rs;
    slm_net_result nr = slm_net_perform(&rq, &rs);
    j->rs = NULL;
    pthread_mutex_lock(&u->mu);
    u->stats.attempts++;
    pthread_mutex_unlock(&u->mu);

    if (nr == SLM_NET_CANCELLED || (nr != SLM_NET_OK && net_should_cancel(j))) {
        o->kind = UP_ATTEMPT_CANCELLED;
        o->health = UP_HEALTH_UNKNOWN;
        snprintf(o->error, sizeof o->error, "cancelled");
    } else if (nr == SLM_NET_TIMEOUT && rs.timeout == SLM_NET_TIMEOUT_DEADLINE) {
        o->kind = UP_ATTEMPT_DEADLINE;
        o->health = UP_HEALTH_UNKNOWN;
        snprintf(o->error, sizeof o->error, "request deadline passed");
    } else if (nr == SLM_NET_ABORTED) { /* our reader stopped: the stream itself was bad */
        o->kind = UP_ATTEMPT_RETRY;
        o->health = UP_HEALTH_FAILED;
        snprintf(o->error, sizeof o->error, "%s", j->stream_error[0] ? j->stream_error : rs.error);
    } else if (nr != SLM_NET_OK) {
        bool transient = nr == SLM_NET_CONNECT || nr == SLM_NET_TIMEOUT || nr == SLM_NET_BROKEN || nr == SLM_NET_ERROR;
        o->timed_out = nr == SLM_NET_TIMEOUT;
        o->kind = transient ? UP_ATTEMPT_RETRY : UP_ATTEMPT_FATAL;
        o->health = UP_HEALTH_FAILED;
        snprintf(o->error, sizeof o->error, "%s", rs.error);
    } else if (rs.status >= 200 && rs.status < 300) {
        if (j->json_body) {
            up_chunk c;
            up_chunk_parse(NULL, j->json.s ? j->json.s : "", j->json.len, &c);
            int rc = apply_chunk(j, &c);
            up_chunk_free(&c);
            if (rc == 0 && !j->saw_finish) snprintf(j->finish_reason, sizeof j->finish_reason, "stop");
            j->saw_finish = rc == 0 || j->saw_finish;
        }
        if (j->stream_error[0]) {
            o->kind = UP_ATTEMPT_RETRY;
            o->health = UP_HEALTH_FAILED;
            snprintf(o->error, sizeof o->error, "%s", j->stream_error);
        } else if (!j->saw_done && !j->saw_finish) {
            o->kind = UP_ATTEMPT_RETRY;
            o->health = UP_HEALTH_FAILED;
            snprintf(o->error, sizeof o->error, "upstream stream ended without [DONE] or a finish_reason");
        } else {
            o->kind = UP_ATTEMPT_OK;
            o->health = UP_HEALTH_OK;
        }
    } else {
        char msg[200];
        up_error_message(rs.body, rs.body_len, msg, sizeof msg);
        slm_net_scrub(msg, u->api_key);
        snprintf(o->error, sizeof o->error, "HTTP %d%s%s", rs.status, msg[0] ? ": " : "", msg);
        o->status = rs.status;
        if (rs.status == 429 || rs.status == 408 || rs.status >= 500) {
            o->kind = UP_ATTEMPT_RETRY;
            o->health = UP_HEALTH_FAILED;
            o->retry_after_s = rs.status == 429 || rs.status == 503 ? rs.retry_after_s : -1;
        } else {
            o->kind = UP_ATTEMPT_FATAL;
            o->client_fault = rs.status == 400 || rs.status == 413 || rs.status == 422;
            /* the upstream answered and blamed the request: it is alive */
            o->health = o->client_fault ? UP_HEALTH_OK : UP_HEALTH_FAILED;
        }
    }
    slm_net_response_free(&rs);
    slm_net_scrub(o->error, u->api_key);
}

/* Sleeps up to seconds, waking early on cancel or shutdown; false when woken by those. */
static bool backoff_sleep(up_job *j, double seconds) {
    slm_upstream *u = j->u;
    double until = slm_now() + seconds;
    pthread_mutex_lock(&u->mu);
    while (!atomic_load(&j->r->cancelled) && !u->closing) {
        double left = until - slm_now();
        if (left <= 0) break;
        if (left > 0.05) left = 0.05; /* also re-check cancelled, set without u->mu */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long ns = ts.tv_nsec + (long)(left * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&u->cv, &u->mu, &ts);
    }
    bool ok = !atomic_load(&j->r->cancelled) && !u->closing;
    pthread_mutex_unlock(&u->mu);
    return ok;
}

/* Some OpenAI-compatible APIs reject parts of a standard request with a 400 naming them: servers
 * without stream_options, and models that want max_completion_tokens instead of max_tokens. The
 * body is adapted once and resent (not counted as a retry); the upstream remembers it. Returns true
 * when the body changed. */
static bool adapt_body(up_job *j, const char *error) {
    json_t *o = json_loadb(j->body, j->body_len, 0, NULL);
    if (!o) return false;
    bool changed = false;
    if (strstr(error, "stream_options") && json_object_get(o, "stream_options")) {
        changed = json_object_del(o, "stream_options") == 0;
        atomic_store(&j->u->no_stream_options, true);
    } else if (strstr(error, "max_completion_tokens") && json_object_get(o, "max_tokens")) {
        changed = json_object_set(o, "max_completion_tokens", json_object_get(o, "max_tokens")) == 0 &&
                  json_object_del(o, "max_tokens") == 0;
        atomic_store(&j->u->max_completion_tokens, true);
    }
    char *text = changed ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(o);
    if (!text) return false;
    free(j->body);
    j->body = text;
    j->body_len = strlen(text);
    return true;
}

/* ---------- the worker ---------- */

/* Forgets the text of a failed attempt (a client that does not stream has not seen any of it). */
static void discard_text(up_job *j) {
    slm_request *r = j->r;
    pthread_mutex_lock(&r->mu);
    r->text_len = 0;
    if (r->text) r->text[0] = 0;
    r->t_first = 0;
    pthread_mutex_unlock(&r->mu);
    j->delivered = 0;
}

static void job_free(up_job *j) {
    reset_attempt(j);
    free(j->body);
    free(j);
}

/* Hands the request to the local engine; true when it took it. */
static bool hand_to_fallback(up_job *j, const char *why) {
    slm_upstream *u = j->u;
    slm_request *r = j->r;
    pthread_mutex_lock(&r->mu);
    r->started = false;
    r->t_start = r->t_first = 0;
    r->remote_prompt_tokens = r->remote_completion_tokens = 0;
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&u->mu);
    bool closing = u->closing;
    if (j->call && !closing) j->call->route = "local";
    if (!closing) u->stats.fallbacks++;
    pthread_mutex_unlock(&u->mu);
    if (closing) { /* shutting down: the engine may be going too */
        finish_request(r, SLM_FINISH_CANCELLED, NULL, false);
        return false;
    }
    slm_submit_status st = slm_engine_submit(u->fallback, r);
    if (st == SLM_SUBMIT_OK) return true;
    char msg[256];
    snprintf(msg, sizeof msg, "%.150s; the local fallback refused it: %s", why,
             st == SLM_SUBMIT_FULL       ? "at capacity"
             : st == SLM_SUBMIT_DRAINING ? "shutting down"
                                         : "no such local model");
    finish_request(r, SLM_FINISH_ERROR, msg, false);
    return false;
}

static void *worker(void *arg) {
    up_job *j = arg;
    slm_upstream *u = j->u;
    slm_request *r = j->r;
    pthread_mutex_lock(&r->mu);
    r->started = true;
    r->t_start = slm_now();
    pthread_mutex_unlock(&r->mu);

    up_outcome o = {0};
    int tries = 0, adaptations = 0;
    for (;;) {
        if (net_should_cancel(j)) { /* before the first attempt too: no connection for a call already gone */
            o.kind = UP_ATTEMPT_CANCELLED;
            break;
        }
        tries++;
        attempt(j, &o);
        if (o.kind == UP_ATTEMPT_OK || o.kind == UP_ATTEMPT_CANCELLED || o.kind == UP_ATTEMPT_DEADLINE) break;
        if (j->delivered > 0 && !j->client_streams) discard_text(j); /* nobody has seen it: start afresh */
        if (o.status == 400 && j->delivered == 0 && adaptations < 2 && adapt_body(j, o.error)) {
            adaptations++;
            tries--;
            continue;
        }
        if (j->delivered > 0 || o.kind == UP_ATTEMPT_FATAL || tries > u->max_retries) break;
        /* a hung upstream costs a whole time limit per try: the local engine answers sooner */
        if (o.timed_out && u->fallback) break;
        double delay = u->retry_base_s * pow(2.0, tries - 1);
        if (delay > UP_BACKOFF_CAP_S) delay = UP_BACKOFF_CAP_S;
        delay *= 0.5 + 0.5 * rand01(j);
        if (o.retry_after_s >= 0) {
            if (o.retry_after_s > u->retry_after_max_s) { /* longer than we are willing to wait */
                size_t len = strlen(o.error);
                snprintf(o.error + len, sizeof o.error - len, " (retry after %.0f s, longer than the %.0f s cap)",
                         o.retry_after_s, u->retry_after_max_s);
                break;
            }
            delay = o.retry_after_s;
        }
        if (r->deadline > 0 && slm_now() + delay >= r->deadline) break;
        pthread_mutex_lock(&u->mu);
        u->stats.retries++;
        pthread_mutex_unlock(&u->mu);
        if (!backoff_sleep(j, delay)) {
            o.kind = UP_ATTEMPT_CANCELLED;
            break;
        }
    }

    char msg[512]; /* r->error keeps 255 bytes of it */
    if (o.kind == UP_ATTEMPT_OK) {
        breaker_report(u, j, UP_HEALTH_OK);
        pthread_mutex_lock(&r->mu);
        if (j->has_usage) {
            r->remote_prompt_tokens = j->prompt_tokens > INT32_MAX ? INT32_MAX : (int)j->prompt_tokens;
            r->remote_completion_tokens = j->completion_tokens > INT32_MAX ? INT32_MAX : (int)j->completion_tokens;
        }
        pthread_mutex_unlock(&r->mu);
        finish_request(r, strcmp(j->finish_reason, "length") == 0 ? SLM_FINISH_LENGTH : SLM_FINISH_STOP, NULL, false);
    } else if (o.kind == UP_ATTEMPT_CANCELLED) {
        breaker_report(u, j, UP_HEALTH_UNKNOWN);
        finish_request(r, SLM_FINISH_CANCELLED, NULL, false);
    } else if (j->delivered > 0) {
        /* text already reached the client: a retry or a fallback would repeat or contradict it */
        breaker_report(u, j, o.kind == UP_ATTEMPT_DEADLINE ? UP_HEALTH_UNKNOWN : UP_HEALTH_FAILED);
        snprintf(msg, sizeof msg, "upstream stream broke after %zu bytes: %.200s", j->delivered, o.error);
        finish_request(r, o.kind == UP_ATTEMPT_DEADLINE ? SLM_FINISH_TIMEOUT : SLM_FINISH_ERROR, msg, false);
    } else if (o.kind == UP_ATTEMPT_DEADLINE) {
        breaker_report(u, j, UP_HEALTH_UNKNOWN);
        finish_request(r, SLM_FINISH_TIMEOUT, NULL, false);
    } else {
        breaker_report(u, j, o.health);
        snprintf(msg, sizeof msg, "upstream '%.40s' failed%s: %.190s", u->name,
                 tries > 1 ? " on every attempt" : "", o.error);
        if (u->fallback)
            hand_to_fallback(j, msg); /* finishes the request itself when the engine refuses */
        else
            finish_request(r, SLM_FINISH_ERROR, msg, o.client_fault);
    }

    slm_request_release(r);
    pthread_mutex_lock(&u->mu);
    for (up_job **p = &u->jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            break;
        }
    u->n_jobs--;
    job_free(j);
    pthread_cond_broadcast(&u->cv);
    pthread_mutex_unlock(&u->mu); /* nothing of u is touched after this */
    return NULL;
}

/* ---------- the request body ---------- */

/* Rounds a float parameter to 6 significant digits so 0.7f goes out as 0.7, not 0.699999988. */
static json_t *json_param(float v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.6g", (double)v);
    return json_real(strtod(buf, NULL));
}

static bool set_new(json_t *o, const char *key, json_t *v) { return v && json_object_set_new(o, key, v) == 0; }

static char *build_body(const slm_upstream *u, const slm_gate_call *call, size_t *len, char *err, size_t err_len) {
    const slm_gen_params *g = &call->request->gen;
    json_t *o = json_object();
    bool ok = o && set_new(o, "model", json_string(u->model));
    if (ok && call->messages && call->n_messages > 0) {
        json_t *msgs = json_array();
        ok = set_new(o, "messages", msgs);
        for (size_t i = 0; ok && i < call->n_messages; i++) {
            const slm_chat_message *m = &call->messages[i];
            json_t *jm = json_object();
            ok = json_array_append_new(msgs, jm) == 0 && jm &&
                 set_new(jm, "role", json_string(m->role && m->role[0] ? m->role : "user")) &&
                 set_new(jm, "content", json_string(m->content ? m->content : ""));
            if (!ok) slm_err(err, err_len, "message %zu is not valid UTF-8 text", i);
        }
    } else if (ok) {
        ok = set_new(o, "prompt", json_string(call->prompt));
        if (!ok) slm_err(err, err_len, "the prompt is not valid UTF-8 text");
    }
    ok = ok && set_new(o, "stream", json_true());
    if (ok && !atomic_load(&u->no_stream_options)) {
        json_t *opts = json_object();
        ok = set_new(o, "stream_options", opts) && set_new(opts, "include_usage", json_true());
    }
    if (ok && g->max_tokens > 0)
        ok = set_new(o, atomic_load(&u->max_completion_tokens) ? "max_completion_tokens" : "max_tokens",
                     json_integer(g->max_tokens));
    if (ok) ok = set_new(o, "temperature", json_param(g->sampling.temperature > 0 ? g->sampling.temperature : 0.0f));
    if (ok && g->sampling.top_p > 0 && g->sampling.top_p < 1) ok = set_new(o, "top_p", json_param(g->sampling.top_p));
    if (ok && g->sampling.frequency_penalty != 0)
        ok = set_new(o, "frequency_penalty", json_param(g->sampling.frequency_penalty));
    if (ok && g->sampling.presence_penalty != 0)
        ok = set_new(o, "presence_penalty", json_param(g->sampling.presence_penalty));
    if (ok) ok = set_new(o, "seed", json_integer((json_int_t)(g->sampling.seed & INT64_MAX)));
    if (ok && g->n_stop > 0) {
        json_t *stop = json_array();
        ok = set_new(o, "stop", stop);
        for (int i = 0; ok && i < g->n_stop && i < SLM_MAX_STOP; i++)
            if (g->stop[i] && g->stop[i][0]) {
                ok = json_array_append_new(stop, json_string(g->stop[i])) == 0;
                if (!ok) slm_err(err, err_len, "stop string %d is not valid UTF-8 text", i);
            }
    }
    char *text = ok ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(o);
    if (ok && !text) slm_err(err, err_len, "out of memory building the upstream request");
    if (!ok && err && !err[0]) slm_err(err, err_len, "out of memory building the upstream request");
    if (text) *len = strlen(text);
    return text;
}

/* ---------- the gate backend ---------- */

/* The local fallback takes the call at once (breaker open, air gap). */
static bool submit_local(slm_upstream *u, slm_gate_call *call) {
    call->route = "local";
    pthread_mutex_lock(&u->mu);
    u->stats.fallbacks++;
    pthread_mutex_unlock(&u->mu);
    switch (slm_engine_submit(u->fallback, call->request)) {
    case SLM_SUBMIT_OK: return true;
    case SLM_SUBMIT_FULL:
        return slm_gate_refuse(call, 503, "overloaded",
                               "server is at capacity (all slots busy and the queue is full); retry shortly");
    case SLM_SUBMIT_DRAINING: return slm_gate_refuse(call, 503, "shutting_down", "server is shutting down");
    case SLM_SUBMIT_NO_MODEL: break;
    }
    return slm_gate_refuse(call, 404, "model_not_found", "model '%.200s' is not loaded", call->request->model);
}

static bool up_submit(void *state, slm_gate_call *call) {
    slm_upstream *u = state;
    if (call->kind != SLM_CALL_GENERATE)
        return slm_gate_refuse(call, 400, "unsupported_call", "upstream '%.40s' runs chat and completion calls only", u->name);
    if (!call->request) return slm_gate_refuse(call, 500, "gate_error", "call has no request");
    bool chat = call->messages && call->n_messages > 0;
    if (!chat && !call->prompt)
        return slm_gate_refuse(call, 400, "unsupported_call", "call has neither messages nor a prompt for the upstream");
    /* what only the local engine can do (token ids of its own vocabulary, its grammar sampler) is
     * not silently dropped on the way out */
    const slm_gen_params *g = &call->request->gen;
    const char *local_only = g->grammar                    ? "a grammar or JSON schema (response_format)"
                             : g->logprobs                 ? "logprobs"
                             : g->sampling.n_logit_bias > 0 ? "logit_bias"
                                                           : NULL;
    if (local_only) {
        if (u->fallback) return submit_local(u, call);
        return slm_gate_refuse(call, 400, "unsupported_parameter", "upstream '%.40s' cannot honour %s; use a local model",
                               u->name, local_only);
    }
    if (slm_net_air_gapped()) {
        if (u->fallback) return submit_local(u, call);
        char host[128];
        slm_net_url_host(u->url, host, sizeof host);
        return slm_gate_refuse(call, 403, "air_gapped", "air-gapped mode: outbound connection to %s refused", host);
    }
    char err[256] = "";
    size_t body_len = 0;
    char *body = build_body(u, call, &body_len, err, sizeof err);
    if (!body) return slm_gate_refuse(call, 400, "invalid_request", "%s", err);
    up_job *j = calloc(1, sizeof *j);
    if (!j) {
        free(body);
        return slm_gate_refuse(call, 503, "overloaded", "out of memory");
    }
    j->u = u;
    j->r = call->request;
    j->call = call;
    j->body = body;
    j->body_len = body_len;
    j->url = chat ? u->chat_url : u->completions_url;
    j->client_streams = call->stream;
    j->rng = (uint64_t)(uintptr_t)j ^ (uint64_t)(slm_now() * 1e9) ^ 0x9E3779B97F4A7C15ull;
    if (!j->rng) j->rng = 1;

    pthread_mutex_lock(&u->mu);
    double wait_s = 0;
    bool closing = u->closing, busy = !closing && u->n_jobs >= u->max_in_flight;
    bool admitted = !closing && !busy && breaker_admit(u, &j->trial, &wait_s);
    if (busy) u->stats.refused_busy++;
    else if (!admitted && !closing) u->stats.refused_open++;
    if (admitted) { /* registered in the same critical section, so max_in_flight holds exactly */
        slm_request_retain(j->r);
        j->next = u->jobs;
        u->jobs = j;
        u->n_jobs++;
        u->stats.calls++;
    }
    pthread_mutex_unlock(&u->mu);
    if (!admitted) {
        job_free(j);
        if (closing) return slm_gate_refuse(call, 503, "shutting_down", "server is shutting down");
        if (u->fallback) return submit_local(u, call);
        if (busy)
            return slm_gate_refuse(call, 503, "upstream_busy", "upstream '%.40s' has %d calls running, its limit; retry shortly",
                                   u->name, u->max_in_flight);
        return slm_gate_refuse(call, 503, "upstream_unavailable",
                               "upstream '%.40s' is unavailable after repeated failures; retrying it in %.0f s",
                               u->name, ceil(wait_s));
    }

    pthread_attr_t attr;
    pthread_t th;
    bool started = pthread_attr_init(&attr) == 0;
    if (started) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        started = pthread_create(&th, &attr, worker, j) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!started) {
        pthread_mutex_lock(&u->mu);
        for (up_job **p = &u->jobs; *p; p = &(*p)->next)
            if (*p == j) {
                *p = j->next;
                break;
            }
        u->n_jobs--;
        u->stats.calls--;
        if (j->trial) u->trial_in_flight = false;
        pthread_cond_broadcast(&u->cv);
        pthread_mutex_unlock(&u->mu);
        slm_request_release(j->r);
        job_free(j);
        return slm_gate_refuse(call, 503, "overloaded", "cannot start an upstream worker thread");
    }
    return true;
}

static void up_cancel(void *state, slm_gate_call *call) {
    slm_upstream *u = state;
    slm_request *r = call->request;
    pthread_mutex_lock(&u->mu);
    for (up_job *j = u->jobs; j; j = j->next)
        if (j->call == call) j->call = NULL; /* the worker must not touch it any more */
    pthread_cond_broadcast(&u->cv);
    pthread_mutex_unlock(&u->mu);
    if (!r) return;
    if (u->fallback)
        slm_engine_cancel(u->fallback, r); /* marks it cancelled and wakes the engine if it went local */
    else
        atomic_store(&r->cancelled, true);
}

slm_gate_backend slm_upstream_backend(slm_upstream *u) {
    return (slm_gate_backend){.name = u->name, .submit = up_submit, .cancel = up_cancel, .state = u};
}

/* ---------- lifetime ---------- */

int slm_upstream_new(const slm_upstream_config *cfg, slm_upstream **out, char *err, size_t err_len) {
    *out = NULL;
    if (!cfg) return slm_err(err, err_len, "no upstream configuration");
    const char *name = cfg->name && cfg->name[0] ? cfg->name : "upstream";
    if (!cfg->url || !cfg->url[0]) return slm_err(err, err_len, "upstream '%.40s': no url", name);
    if (strncasecmp(cfg->url, "http://", 7) != 0 && strncasecmp(cfg->url, "https://", 8) != 0)
        return slm_err(err, err_len, "upstream '%.40s': url must start with http:// or https://", name);
    char host[256];
    if (!slm_net_url_host(cfg->url, host, sizeof host)[0])
        return slm_err(err, err_len, "upstream '%.40s': url '%.100s' has no host", name, cfg->url);
    if (!cfg->model || !cfg->model[0]) return slm_err(err, err_len, "upstream '%.40s': no model", name);
    if (cfg->api_key && strpbrk(cfg->api_key, "\r\n"))
        return slm_err(err, err_len, "upstream '%.40s': the API key contains a line break", name);
    if (cfg->timeout_s < 0 || cfg->first_byte_timeout_s < 0 || cfg->idle_timeout_s < 0 || cfg->connect_timeout_s < 0 ||
        cfg->retry_base_s < 0 || cfg->retry_after_max_s < 0 || cfg->breaker_cooldown_s < 0 || cfg->breaker_threshold < 0 ||
        cfg->max_in_flight < 0 ||
        !isfinite(cfg->timeout_s) || !isfinite(cfg->first_byte_timeout_s) || !isfinite(cfg->idle_timeout_s) ||
        !isfinite(cfg->connect_timeout_s) || !isfinite(cfg->retry_base_s) || !isfinite(cfg->retry_after_max_s) ||
        !isfinite(cfg->breaker_cooldown_s))
        return slm_err(err, err_len, "upstream '%.40s': timeouts, delays and the breaker threshold must be >= 0", name);
    slm_upstream *u = calloc(1, sizeof *u);
    if (!u) return slm_err(err, err_len, "out of memory");
    pthread_mutex_init(&u->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&u->cv, &ca);
    pthread_condattr_destroy(&ca);
    size_t url_len = strlen(cfg->url);
    while (url_len > 0 && cfg->url[url_len - 1] == '/') url_len--;
    u->name = strdup(name);
    u->url = strndup(cfg->url, url_len);
    u->model = strdup(cfg->model);
    u->api_key = cfg->api_key && cfg->api_key[0] ? strdup(cfg->api_key) : NULL;
    u->ca_file = dup_or_null(cfg->ca_file);
    u->chat_url = malloc(url_len + 32);
    u->completions_url = malloc(url_len + 32);
    if (!u->name || !u->url || !u->model || (cfg->api_key && cfg->api_key[0] && !u->api_key) ||
        (cfg->ca_file && !u->ca_file) || !u->chat_url || !u->completions_url) {
        slm_upstream_free(u);
        return slm_err(err, err_len, "out of memory");
    }
    snprintf(u->chat_url, url_len + 32, "%s/chat/completions", u->url);
    snprintf(u->completions_url, url_len + 32, "%s/completions", u->url);
    u->timeout_s = cfg->timeout_s > 0 ? cfg->timeout_s : 120;
    u->first_byte_s = cfg->first_byte_timeout_s > 0 ? cfg->first_byte_timeout_s : 30;
    u->idle_s = cfg->idle_timeout_s > 0 ? cfg->idle_timeout_s : u->first_byte_s;
    u->connect_s = cfg->connect_timeout_s > 0 ? cfg->connect_timeout_s : 10;
    if (u->connect_s > u->first_byte_s) u->connect_s = u->first_byte_s;
    u->max_retries = cfg->max_retries > 0 ? cfg->max_retries : cfg->max_retries < 0 ? 0 : 2;
    u->retry_base_s = cfg->retry_base_s > 0 ? cfg->retry_base_s : 0.5;
    u->retry_after_max_s = cfg->retry_after_max_s > 0 ? cfg->retry_after_max_s : 30;
    u->breaker_threshold = cfg->breaker_threshold > 0 ? cfg->breaker_threshold : 5;
    u->cooldown_s = cfg->breaker_cooldown_s > 0 ? cfg->breaker_cooldown_s : 30;
    u->max_in_flight = cfg->max_in_flight > 0 ? cfg->max_in_flight : 256;
    u->max_text = cfg->max_text_bytes > 0 ? cfg->max_text_bytes : UP_MAX_TEXT;
    *out = u;
    return 0;
}

void slm_upstream_free(slm_upstream *u) {
    if (!u) return;
    pthread_mutex_lock(&u->mu);
    u->closing = true; /* workers see it within ~20 ms and finish their requests CANCELLED */
    pthread_cond_broadcast(&u->cv);
    while (u->n_jobs > 0) pthread_cond_wait(&u->cv, &u->mu);
    pthread_mutex_unlock(&u->mu);
    pthread_mutex_destroy(&u->mu);
    pthread_cond_destroy(&u->cv);
    if (u->api_key) {
        volatile char *p = u->api_key;
        while (*p) *p++ = 0;
    }
    free(u->name);
    free(u->url);
    free(u->model);
    free(u->api_key);
    free(u->ca_file);
    free(u->chat_url);
    free(u->completions_url);
    free(u);
}

const char *slm_upstream_name(const slm_upstream *u) { return u->name; }

void slm_upstream_set_fallback(slm_upstream *u, slm_engine *engine) { u->fallback = engine; }

bool slm_upstream_is_open(const slm_upstream *u) {
    slm_upstream *m = (slm_upstream *)u; /* the lock is not part of the logical state */
    pthread_mutex_lock(&m->mu);
    bool open = m->tripped && (slm_now() < m->open_until || m->trial_in_flight);
    pthread_mutex_unlock(&m->mu);
    return open;
}

void slm_upstream_get_stats(const slm_upstream *u, slm_upstream_stats *out) {
    slm_upstream *m = (slm_upstream *)u;
    pthread_mutex_lock(&m->mu);
    *out = m->stats;
    out->in_flight = m->n_jobs;
    pthread_mutex_unlock(&m->mu);
}
