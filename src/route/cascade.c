/* The cascade backend (see slm_route.h): the local model answers first, on a private copy of the
 * request; the cascade router scores (question, local answer); a confident answer is handed to the
 * caller's request, a doubtful one is re-run on the upstream. One worker thread per call. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slm_route.h"
#include "slm_router.h"
#include "route/route_impl.h"
#include "util/err.h"

struct slm_cascade {
    slm_engine *engine;
    slm_gate_backend upstream;
    const slm_router *router;
    double threshold;
    pthread_mutex_t mu;
    pthread_cond_t idle;
    int in_flight; /* worker threads running: freeing waits for them */
};

typedef struct cascade_call {
    slm_cascade *cascade;
    slm_gate_call *call;
    slm_request *r;     /* the caller's request (a reference) */
    slm_request *local; /* the local attempt */
    char *question;
} cascade_call;

/* The local attempt: the same prompt and sampling; constraints (grammar, logit bias) never reach
 * the cascade (the route stage sends those calls to one backend directly). */
static slm_request *local_copy(const slm_request *r) {
    slm_request *c = slm_request_new(SLM_REQ_GENERATE);
    if (!c) return NULL;
    c->prompt = malloc(sizeof *c->prompt * (size_t)(r->n_prompt ? r->n_prompt : 1));
    if (!c->prompt) {
        slm_request_release(c);
        return NULL;
    }
    memcpy(c->prompt, r->prompt, sizeof *c->prompt * (size_t)r->n_prompt);
    c->n_prompt = r->n_prompt;
    snprintf(c->model, sizeof c->model, "%s", r->model);
    c->gen.sampling = r->gen.sampling;
    c->gen.sampling.logit_bias = NULL;
    c->gen.sampling.n_logit_bias = 0;
    c->gen.max_tokens = r->gen.max_tokens;
    c->gen.min_tokens = r->gen.min_tokens;
    c->gen.ignore_eos = r->gen.ignore_eos;
    c->gen.raw_bytes = r->gen.raw_bytes;
    for (int i = 0; i < r->gen.n_stop; i++)
        if (r->gen.stop[i] && (c->gen.stop[c->gen.n_stop] = strdup(r->gen.stop[i]))) c->gen.n_stop++;
    c->t_submit = r->t_submit;
    c->deadline = r->deadline;
    return c;
}

/* Moves the local attempt's results into the caller's request and finishes it. */
static void hand_over(slm_request *from, slm_request *to) {
    pthread_mutex_lock(&from->mu);
    pthread_mutex_lock(&to->mu);
    bool ok = slm_request_append_text(to, from->text ? from->text : "", from->text_len);
    for (int i = 0; ok && i < from->n_tokens; i++) ok = slm_request_append_token(to, from->tokens[i], NULL);
    to->started = true;
    to->t_start = from->t_start;
    to->t_first = from->t_first;
    to->n_prompt_cached = from->n_prompt_cached;
    slm_finish why = ok ? from->finish : SLM_FINISH_ERROR;
    char error[sizeof from->error];
    snprintf(error, sizeof error, "%s", ok ? from->error : "out of memory");
    to->error_is_client = from->error_is_client;
    pthread_mutex_unlock(&to->mu);
    pthread_mutex_unlock(&from->mu);
    slm_request_finish(to, why, error[0] ? error : NULL);
}

static void *cascade_main(void *arg) {
    cascade_call *cc = arg;
    slm_cascade *c = cc->cascade;
    slm_request *local = cc->local, *r = cc->r;
    /* wait for the local answer, passing a cancellation on */
    pthread_mutex_lock(&local->mu);
    while (!local->done) {
        slm_request_wait(local, 50);
        if (atomic_load(&r->cancelled) && !atomic_load(&local->cancelled)) {
            pthread_mutex_unlock(&local->mu);
            slm_engine_cancel(c->engine, local);
            pthread_mutex_lock(&local->mu);
        }
    }
    bool answered = local->finish == SLM_FINISH_STOP || local->finish == SLM_FINISH_LENGTH;
    char *answer = answered ? strndup(local->text ? local->text : "", local->text_len) : NULL;
    pthread_mutex_unlock(&local->mu);
    double score = answer ? slm_router_score(c->router, cc->question, answer) : -1;
    free(answer);
    cc->call->route_score = score;
    bool escalate = answered && score >= c->threshold && !atomic_load(&r->cancelled);
    if (escalate) {
        /* the caller's request has seen nothing yet: the upstream fills it as if it had been first */
        cc->call->route_reason = "cascade_upstream";
        cc->call->route = "upstream";
        cc->call->model = c->upstream.name;
        if (c->upstream.submit(c->upstream.state, cc->call)) goto done;
        cc->call->status = 0; /* refused: keep the local answer rather than fail */
        cc->call->error_code = NULL;
        cc->call->error[0] = 0;
    }
    cc->call->route_reason = "cascade_local";
    cc->call->route = "local";
    hand_over(local, r);
done:
    slm_request_release(local);
    slm_request_release(r);
    free(cc->question);
    free(cc);
    pthread_mutex_lock(&c->mu);
    if (--c->in_flight == 0) pthread_cond_broadcast(&c->idle);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static bool cascade_submit(void *state, slm_gate_call *call) {
    slm_cascade *c = state;
    slm_request *r = call->request;
    if (call->kind != SLM_CALL_GENERATE || !r)
        return slm_gate_refuse(call, 500, "gate_error", "the cascade serves generation calls only");
    cascade_call *cc = calloc(1, sizeof *cc);
    slm_request *local = local_copy(r);
    char *question = strdup(route_question(call));
    if (!cc || !local || !question) {
        free(cc);
        free(question);
        if (local) slm_request_release(local);
        return slm_gate_refuse(call, 500, "out_of_memory", "out of memory");
    }
    *cc = (cascade_call){.cascade = c, .call = call, .r = r, .local = local, .question = question};
    switch (slm_engine_submit(c->engine, local)) {
    case SLM_SUBMIT_OK: break;
    case SLM_SUBMIT_FULL:
        slm_request_release(local);
        free(question);
        free(cc);
        return slm_gate_refuse(call, 503, "overloaded", "server is at capacity (all slots busy and the queue is full)");
    default:
        slm_request_release(local);
        free(question);
        free(cc);
        return slm_gate_refuse(call, 503, "shutting_down", "the local model is not accepting requests");
    }
    slm_request_retain(r);
    pthread_mutex_lock(&c->mu);
    c->in_flight++;
    pthread_mutex_unlock(&c->mu);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, cascade_main, cc);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_lock(&c->mu);
        c->in_flight--;
        pthread_mutex_unlock(&c->mu);
        slm_engine_cancel(c->engine, local);
        slm_request_release(local);
        slm_request_release(r);
        free(question);
        free(cc);
        return slm_gate_refuse(call, 503, "overloaded", "cannot start the cascade's worker thread");
    }
    return true;
}

static void cascade_cancel(void *state, slm_gate_call *call) {
    slm_cascade *c = state;
    /* the worker sees the flag and cancels the local attempt; an upstream attempt watches it too */
    if (call->request) atomic_store(&call->request->cancelled, true);
    if (c->upstream.cancel) c->upstream.cancel(c->upstream.state, call);
}

slm_cascade *slm_cascade_new(slm_engine *engine, slm_gate_backend upstream, const struct slm_router *router,
                             double threshold, char *err, size_t err_len) {
    if (!engine || !upstream.submit || !router) {
        slm_err(err, err_len, "a cascade needs the local engine, an upstream and a cascade router");
        return NULL;
    }
    slm_cascade *c = calloc(1, sizeof *c);
    if (!c) {
        slm_err(err, err_len, "out of memory");
        return NULL;
    }
    *c = (slm_cascade){.engine = engine, .upstream = upstream, .router = router, .threshold = threshold};
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->idle, NULL);
    return c;
}

void slm_cascade_free(slm_cascade *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    while (c->in_flight > 0) pthread_cond_wait(&c->idle, &c->mu);
    pthread_mutex_unlock(&c->mu);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->idle);
    free(c);
}

slm_gate_backend slm_cascade_backend(slm_cascade *c) {
    return (slm_gate_backend){.name = "cascade", .submit = cascade_submit, .cancel = cascade_cancel, .state = c};
}
