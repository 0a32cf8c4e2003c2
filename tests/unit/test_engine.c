/* The engine's scheduler, driven pass by pass (slm_engine_step) on the real stories260K model:
 *  1. admission and queueing: free sequences first, then the queue, then FULL; FIFO order;
 *  2. fairness: a short prompt admitted beside a long one gets its first token in the first pass;
 *  3. cancellation, running and queued: the sequence frees at once, nothing more is generated;
 *  4. prefix reuse: a prompt extending an earlier one reuses its KV;
 *  5. a task's SCORE request and a chat request batched in the same forward pass, the score
 *     equal to log P(continuation) computed by hand with slm_decode;
 *  6. two models in one engine, each request answered by its own model, greedy output equal to
 *     argmax by hand;
 *  7. the gate: stages run in phase order, a refusing admit stage stops the call;
 *  8. models on demand: a loader's models load on first acquire, a held model is never unloaded,
 *     the least recently used idle one makes room, a model too large for the bound and a bound held
 *     by models in use are refused, keep_alive runs out on the scheduler thread, and many threads
 *     acquiring at once load each model once.
 * Also the threaded engine (slm_engine_start) finishing concurrent requests. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <time.h>

#include "slm.h"
#include "slm_engine.h"
#include "slm_gate.h"
#include "test.h"

static char model_path[4096];

/* Counts forward passes and what each contained. */
typedef struct pass_log {
    int passes;
    int last_prompt, last_gen, last_embed;
    int both_in_one; /* passes that fed prompt/score tokens and generated a token */
} pass_log;

static void on_forward(void *user, int n_prompt, int n_gen, int n_embed) {
    pass_log *l = user;
    l->passes++;
    l->last_prompt = n_prompt;
    l->last_gen = n_gen;
    l->last_embed = n_embed;
    if (n_prompt > 0 && n_gen > 0) l->both_in_one++;
}

static slm_engine *new_engine(slm_model *m, int n_seq, int n_ctx, int n_batch, int queue_cap, pass_log *log) {
    slm_engine_params ep = {.n_threads = 1, .queue_cap = queue_cap};
    if (log) ep.observer = (slm_engine_observer){.user = log, .forward = on_forward};
    slm_engine *e = NULL;
    char err[256];
    if (slm_engine_new(&ep, &e, err, sizeof err) != 0) {
        CHECKF(0, "%s", err);
        return NULL;
    }
    slm_context_params cp = slm_context_default_params();
    cp.n_seq = n_seq;
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    if (slm_engine_add_model(e, "stories", m, &cp, false, err, sizeof err) != 0) {
        CHECKF(0, "%s", err);
        slm_engine_free(e);
        return NULL;
    }
    return e;
}

static slm_token *tokens_of(slm_model *m, const char *text, int *n) {
    slm_token *t = malloc(sizeof *t * (strlen(text) + 8));
    char err[256];
    *n = slm_tokenize(m, text, strlen(text), true, false, t, (int)strlen(text) + 8, err, sizeof err);
    CHECKF(*n > 0, "tokenize: %s", err);
    return t;
}

/* A greedy GENERATE request for `text` (max_tokens, EOS ignored so lengths are predictable). */
static slm_request *gen_request(slm_model *m, const char *text, int max_tokens) {
    slm_request *r = slm_request_new(SLM_REQ_GENERATE);
    r->prompt = tokens_of(m, text, &r->n_prompt);
    r->gen.max_tokens = max_tokens;
    r->gen.ignore_eos = true;
    r->gen.sampling.temperature = 0;
    return r;
}

static slm_request *gen_request_ids(const slm_token *ids, int n, int max_tokens) {
    slm_request *r = slm_request_new(SLM_REQ_GENERATE);
    r->prompt = malloc(sizeof *r->prompt * (size_t)n);
    memcpy(r->prompt, ids, sizeof *ids * (size_t)n);
    r->n_prompt = n;
    r->gen.max_tokens = max_tokens;
    r->gen.sampling.temperature = 0; /* greedy, EOG allowed: comparable with argmax by hand */
    return r;
}

static bool is_done(slm_request *r) {
    pthread_mutex_lock(&r->mu);
    bool d = r->done;
    pthread_mutex_unlock(&r->mu);
    return d;
}

static void step_until_done(slm_engine *e, slm_request **rs, int n) {
    for (int guard = 0; guard < 10000; guard++) {
        bool all = true;
        for (int i = 0; i < n; i++) all &= is_done(rs[i]);
        if (all) return;
        slm_engine_step(e);
    }
    CHECKF(0, "requests did not finish");
}

/* Greedy continuation by hand: slm_decode one token at a time on a fresh context. */
static void greedy_by_hand(slm_model *m, const slm_token *prompt, int n, int steps, slm_token *out) {
    slm_context_params cp = slm_context_default_params();
    cp.n_ctx = 256;
    cp.n_threads = 1;
    slm_context *c = NULL;
    char err[256];
    if (slm_context_new(m, &cp, &c, err, sizeof err) != 0) {
        CHECKF(0, "%s", err);
        return;
    }
    slm_batch b = {n, prompt, NULL, NULL, NULL};
    CHECK(slm_decode(c, &b, err, sizeof err) == 0);
    int nv = slm_model_n_vocab(m);
    for (int s = 0; s < steps; s++) {
        const float *l = slm_logits(c, 0);
        int best = 0;
        for (int i = 1; i < nv; i++)
            if (l[i] > l[best]) best = i;
        out[s] = best;
        slm_batch one = {1, &out[s], NULL, NULL, NULL};
        CHECK(slm_decode(c, &one, err, sizeof err) == 0);
    }
    slm_context_free(c);
}

static void test_admission(slm_model *m) {
    slm_engine *e = new_engine(m, 2, 128, 64, 1, NULL);
    if (!e) return;
    slm_request *r[4];
    for (int i = 0; i < 4; i++) r[i] = gen_request(m, "Once upon a time", 4);
    /* two free sequences and one queue place: the fourth is refused */
    CHECK(slm_engine_submit(e, r[0]) == SLM_SUBMIT_OK);
    CHECK(slm_engine_submit(e, r[1]) == SLM_SUBMIT_OK);
    CHECK(slm_engine_submit(e, r[2]) == SLM_SUBMIT_OK);
    CHECK(slm_engine_submit(e, r[3]) == SLM_SUBMIT_FULL);
    int queued, busy;
    slm_engine_counts(e, -1, &queued, &busy);
    CHECKF(queued == 3 && busy == 0, "before the first pass: %d queued, %d busy", queued, busy);
    slm_engine_step(e);
    slm_engine_counts(e, -1, &queued, &busy);
    CHECKF(queued == 1 && busy == 2, "after one pass: %d queued, %d busy", queued, busy);
    CHECK(r[0]->started && r[1]->started && !r[2]->started);
    step_until_done(e, r, 3);
    for (int i = 0; i < 3; i++)
        CHECKF(r[i]->finish == SLM_FINISH_LENGTH && r[i]->n_tokens == 4, "request %d: %s, %d tokens", i,
               slm_finish_name(r[i]->finish), r[i]->n_tokens);
    /* FIFO: the queued one started after both others */
    CHECK(r[2]->t_start >= r[0]->t_start && r[2]->t_start >= r[1]->t_start);
    /* a request for a model the engine does not have */
    snprintf(r[3]->model, sizeof r[3]->model, "nope");
    CHECK(slm_engine_submit(e, r[3]) == SLM_SUBMIT_NO_MODEL);
    /* waiting on a request never submitted returns instead of spinning */
    slm_request *stray = gen_request(m, "x", 2);
    CHECK(slm_engine_wait(e, stray, NULL, NULL, NULL) == SLM_FINISH_ERROR && !stray->done);
    slm_request_release(stray);
    /* an empty prompt is an error of that request only */
    slm_request *bad = slm_request_new(SLM_REQ_GENERATE);
    CHECK(slm_engine_submit(e, bad) == SLM_SUBMIT_OK);
    step_until_done(e, &bad, 1);
    CHECK(bad->finish == SLM_FINISH_ERROR && bad->error_is_client && strstr(bad->error, "empty"));
    slm_request_release(bad);
    for (int i = 0; i < 4; i++) slm_request_release(r[i]);
    slm_engine_free(e);
}

static void test_fairness(slm_model *m) {
    pass_log log = {0};
    slm_engine *e = new_engine(m, 2, 256, 32, 4, &log);
    if (!e) return;
    /* a long prompt first, then a short one: both admitted in the same pass */
    char long_text[4096] = "";
    for (int i = 0; i < 16; i++) strcat(long_text, "The cat sat on the mat. ");
    slm_request *lr = gen_request(m, long_text, 2);
    slm_request *sr = gen_request(m, "Once upon a time", 2);
    CHECKF(lr->n_prompt > 100 && lr->n_prompt < 200, "long prompt has %d tokens", lr->n_prompt);
    CHECK(slm_engine_submit(e, lr) == SLM_SUBMIT_OK);
    CHECK(slm_engine_submit(e, sr) == SLM_SUBMIT_OK);
    slm_engine_step(e);
    /* the budget of 32 was shared: the short prompt (fewer than 16 tokens) is in and sampled */
    CHECKF(sr->n_tokens == 1, "short request after the first pass: %d tokens", sr->n_tokens);
    CHECKF(lr->n_tokens == 0, "long request after the first pass: %d tokens", lr->n_tokens);
    CHECKF(log.last_prompt == 32, "first pass fed %d prompt tokens (budget 32)", log.last_prompt);
    slm_engine_step(e);
    /* the short request decodes its token every pass while the long one is still prefilling */
    CHECKF(sr->done && sr->n_tokens == 2, "short request after two passes: %d tokens, done %d", sr->n_tokens, sr->done);
    CHECK(!lr->done);
    slm_request *both[2] = {lr, sr};
    step_until_done(e, both, 2);
    CHECKF(lr->finish == SLM_FINISH_LENGTH && lr->n_tokens == 2, "long request: %s (%s), %d tokens",
           slm_finish_name(lr->finish), lr->error, lr->n_tokens);
    /* the long prompt took about n/32 passes, not more: nothing starved it */
    CHECKF(log.passes <= lr->n_prompt / 32 + 4, "%d passes for a %d-token prompt", log.passes, lr->n_prompt);
    slm_request_release(lr);
    slm_request_release(sr);
    slm_engine_free(e);
}

static void test_cancel(slm_model *m) {
    slm_engine *e = new_engine(m, 1, 256, 64, 4, NULL);
    if (!e) return;
    slm_request *run = gen_request(m, "Once upon a time", 200);
    slm_request *wait = gen_request(m, "The dog", 200);
    CHECK(slm_engine_submit(e, run) == SLM_SUBMIT_OK);
    CHECK(slm_engine_submit(e, wait) == SLM_SUBMIT_OK);
    for (int i = 0; i < 5; i++) slm_engine_step(e);
    int before = run->n_tokens;
    CHECKF(before == 5, "5 passes gave %d tokens", before);
    slm_engine_cancel(e, run);
    slm_engine_cancel(e, wait); /* still queued: it never starts */
    slm_engine_step(e);
    CHECK(run->done && run->finish == SLM_FINISH_CANCELLED && run->n_tokens == before);
    CHECK(wait->done && wait->finish == SLM_FINISH_CANCELLED && !wait->started && wait->n_tokens == 0);
    int queued, busy;
    slm_engine_counts(e, -1, &queued, &busy);
    CHECK(queued == 0 && busy == 0);
    /* a deadline in the past: timed out without a token */
    slm_request *late = gen_request(m, "Once", 10);
    late->deadline = slm_now() - 1;
    CHECK(slm_engine_submit(e, late) == SLM_SUBMIT_OK);
    slm_engine_step(e);
    CHECK(late->done && late->finish == SLM_FINISH_TIMEOUT && late->n_tokens == 0);
    slm_request_release(late);
    slm_request_release(run);
    slm_request_release(wait);
    slm_engine_free(e);
}

static void test_prefix_reuse(slm_model *m) {
    slm_engine *e = new_engine(m, 2, 256, 64, 4, NULL);
    if (!e) return;
    int n = 0;
    slm_token *p = tokens_of(m, "Once upon a time there was a little girl named Lily. She", &n);
    slm_request *a = gen_request_ids(p, n, 3);
    CHECK(slm_engine_submit(e, a) == SLM_SUBMIT_OK);
    step_until_done(e, &a, 1);
    CHECK(a->n_prompt_cached == 0);
    /* the same prompt plus what was generated: everything before the last token is reused */
    slm_token *q = malloc(sizeof *q * (size_t)(n + 3));
    memcpy(q, p, sizeof *p * (size_t)n);
    memcpy(q + n, a->tokens, sizeof *q * 3);
    slm_request *b = gen_request_ids(q, n + 3, 3);
    CHECK(slm_engine_submit(e, b) == SLM_SUBMIT_OK);
    step_until_done(e, &b, 1);
    CHECKF(b->n_prompt_cached == n + 2, "reused %d of %d prompt tokens", b->n_prompt_cached, n + 3);
    /* and the continuation is the one a fresh context computes */
    slm_token want[6];
    greedy_by_hand(m, p, n, 6, want);
    CHECK(memcmp(a->tokens, want, sizeof want[0] * 3) == 0);
    CHECK(memcmp(b->tokens, want + 3, sizeof want[0] * 3) == 0);
    free(p);
    free(q);
    slm_request_release(a);
    slm_request_release(b);
    slm_engine_free(e);
}

/* log P(cont | prompt) by hand on a fresh context. */
static double logprob_by_hand(slm_model *m, const slm_token *prompt, int n, const slm_token *cont, int k) {
    slm_context_params cp = slm_context_default_params();
    cp.n_ctx = 256;
    cp.n_threads = 1;
    slm_context *c = NULL;
    char err[256];
    if (slm_context_new(m, &cp, &c, err, sizeof err) != 0) return NAN;
    slm_batch b = {n, prompt, NULL, NULL, NULL};
    slm_decode(c, &b, err, sizeof err);
    int nv = slm_model_n_vocab(m);
    double lp = 0;
    for (int j = 0; j < k; j++) {
        const float *l = slm_logits(c, 0);
        double mx = -INFINITY, s = 0;
        for (int i = 0; i < nv; i++) mx = l[i] > mx ? l[i] : mx;
        for (int i = 0; i < nv; i++) s += exp(l[i] - mx);
        lp += l[cont[j]] - mx - log(s);
        slm_batch one = {1, &cont[j], NULL, NULL, NULL};
        slm_decode(c, &one, err, sizeof err);
    }
    slm_context_free(c);
    return lp;
}

static void test_score_with_chat(slm_model *m) {
    pass_log log = {0};
    slm_engine *e = new_engine(m, 2, 256, 64, 4, &log);
    if (!e) return;
    slm_request *chat = gen_request(m, "Once upon a time", 8);
    CHECK(slm_engine_submit(e, chat) == SLM_SUBMIT_OK);
    slm_engine_step(e); /* the chat request is decoding from now on */
    slm_request *score = slm_request_new(SLM_REQ_SCORE);
    score->prompt = tokens_of(m, "The little dog was", &score->n_prompt);
    const char *conts[2] = {" happy", " very sad today"};
    for (int i = 0; i < 2; i++) {
        slm_token tmp[32];
        char err[256];
        int k = slm_tokenize(m, conts[i], strlen(conts[i]), false, false, tmp, 32, err, sizeof err);
        CHECK(k > 0);
        score->score_conts[i] = malloc(sizeof *tmp * (size_t)k);
        memcpy(score->score_conts[i], tmp, sizeof *tmp * (size_t)k);
        score->score_lens[i] = k;
    }
    score->n_score = 2;
    CHECK(slm_engine_submit(e, score) == SLM_SUBMIT_OK);
    int gen_before = chat->n_tokens, passes_before = log.passes;
    slm_request *both[2] = {chat, score};
    while (!score->done) slm_engine_step(e);
    /* the score needed one pass per continuation, and the chat request generated in each of them */
    CHECKF(log.passes - passes_before <= 3, "score took %d passes", log.passes - passes_before);
    CHECKF(chat->n_tokens - gen_before == log.passes - passes_before, "chat generated %d tokens in %d passes",
           chat->n_tokens - gen_before, log.passes - passes_before);
    CHECKF(log.both_in_one >= 1, "no pass mixed scoring and generation");
    CHECK(score->finish == SLM_FINISH_STOP && score->n_scored == 2);
    for (int i = 0; i < 2; i++) {
        double want = logprob_by_hand(m, score->prompt, score->n_prompt, score->score_conts[i], score->score_lens[i]);
        CHECKF(fabs(score->scores[i] - want) < 1e-3 * (1 + fabs(want)), "score %d: %.6f, by hand %.6f", i,
               score->scores[i], want);
    }
    step_until_done(e, both, 2);
    slm_request_release(chat);
    slm_request_release(score);
    slm_engine_free(e);
}

static void test_two_models(slm_model *m1, slm_model *m2) {
    slm_engine *e = NULL;
    char err[256];
    CHECK(slm_engine_new(&(slm_engine_params){.n_threads = 1}, &e, err, sizeof err) == 0);
    slm_context_params cp = slm_context_default_params();
    cp.n_seq = 2;
    cp.n_ctx = 128;
    CHECK(slm_engine_add_model(e, "first", m1, &cp, false, err, sizeof err) == 0);
    CHECK(slm_engine_add_model(e, "second", m2, &cp, false, err, sizeof err) == 0);
    CHECK(slm_engine_add_model(e, "second", m2, &cp, false, err, sizeof err) != 0 && strstr(err, "already"));
    CHECK(slm_engine_n_models(e) == 2 && slm_engine_find(e, "second:latest") == 1 && slm_engine_find(e, "") == 0);
    slm_request *a = gen_request(m1, "Once upon a time", 5);
    slm_request *b = gen_request(m2, "Once upon a time", 5);
    snprintf(a->model, sizeof a->model, "first");
    snprintf(b->model, sizeof b->model, "second");
    CHECK(slm_engine_submit(e, a) == SLM_SUBMIT_OK && slm_engine_submit(e, b) == SLM_SUBMIT_OK);
    slm_engine_step(e);
    CHECK(a->n_tokens == 1 && b->n_tokens == 1); /* one pass served both models */
    slm_request *rs[2] = {a, b};
    step_until_done(e, rs, 2);
    slm_token want1[5], want2[5];
    greedy_by_hand(m1, a->prompt, a->n_prompt, 5, want1);
    greedy_by_hand(m2, b->prompt, b->n_prompt, 5, want2);
    CHECK(a->n_tokens == 5 && memcmp(a->tokens, want1, sizeof want1) == 0);
    CHECK(b->n_tokens == 5 && memcmp(b->tokens, want2, sizeof want2) == 0);
    slm_request_release(a);
    slm_request_release(b);
    slm_engine_free(e);
}

static void *submit_and_wait(void *arg) {
    void **args = arg;
    slm_engine *e = args[0];
    slm_request *r = args[1];
    if (slm_engine_submit(e, r) == SLM_SUBMIT_OK) slm_engine_wait(e, r, NULL, NULL, NULL);
    return NULL;
}

static void test_threaded(slm_model *m) {
    slm_engine *e = new_engine(m, 4, 128, 64, 8, NULL);
    if (!e) return;
    char err[256];
    CHECK(slm_engine_start(e, err, sizeof err) == 0);
    enum { N = 6 };
    slm_request *r[N];
    pthread_t th[N];
    void *args[N][2];
    for (int i = 0; i < N; i++) {
        r[i] = gen_request(m, i % 2 ? "Once upon a time" : "The cat", 6 + i);
        args[i][0] = e;
        args[i][1] = r[i];
        pthread_create(&th[i], NULL, submit_and_wait, args[i]);
    }
    for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < N; i++)
        CHECKF(r[i]->done && r[i]->finish == SLM_FINISH_LENGTH && r[i]->n_tokens == 6 + i, "threaded %d: %s %d", i,
               slm_finish_name(r[i]->finish), r[i]->n_tokens);
    CHECK(slm_engine_drain(e, 1) == 0);
    slm_request *late = gen_request(m, "x", 2);
    CHECK(slm_engine_submit(e, late) == SLM_SUBMIT_DRAINING);
    slm_request_release(late);
    for (int i = 0; i < N; i++) slm_request_release(r[i]);
    slm_engine_free(e);
}

/* One EMBED request with more inputs than sequences: its inputs borrow the free sequences, so a
 * pass encodes several; each embedding equals the one a single-input forward pass gives. */
static void test_embed_batching(slm_model *m) {
    pass_log log = {0};
    slm_engine_params ep = {.n_threads = 1, .observer = {.user = &log, .forward = on_forward}};
    slm_engine *e = NULL;
    char err[256];
    slm_context_params cp = slm_context_default_params();
    cp.n_seq = 4;
    cp.n_ctx = 64;
    cp.n_batch = 256;
    cp.embeddings = true;
    if (slm_engine_new(&ep, &e, err, sizeof err) != 0 || slm_engine_add_model(e, "m", m, &cp, false, err, sizeof err) != 0) {
        CHECKF(0, "%s", err);
        slm_engine_free(e);
        return;
    }
    const char *texts[6] = {"Once upon a time", "The cat sat", "A dog", "Lily went to the park to play", "Tom", "Hello there"};
    slm_request *r = slm_request_new(SLM_REQ_EMBED);
    r->n_embed = 6;
    r->embed_inputs = calloc(6, sizeof *r->embed_inputs);
    r->embed_lens = calloc(6, sizeof *r->embed_lens);
    int E = slm_model_n_embd(m);
    r->embeddings = calloc((size_t)6 * (size_t)E, sizeof(float));
    r->n_embd = E;
    for (int i = 0; i < 6; i++) r->embed_inputs[i] = tokens_of(m, texts[i], &r->embed_lens[i]);
    CHECK(slm_engine_submit(e, r) == SLM_SUBMIT_OK);
    slm_engine_step(e);
    CHECKF(r->n_embed_done == 4, "first pass encoded %d inputs (4 sequences)", r->n_embed_done);
    step_until_done(e, &r, 1);
    CHECKF(r->finish == SLM_FINISH_STOP && log.passes == 2, "%s after %d passes", slm_finish_name(r->finish), log.passes);
    slm_context *c = NULL;
    cp.n_seq = 1;
    cp.n_threads = 1;
    CHECK(slm_context_new(m, &cp, &c, err, sizeof err) == 0);
    float *want = malloc(sizeof(float) * (size_t)E);
    for (int i = 0; c && i < 6; i++) {
        slm_kv_seq_truncate(c, 0, 0);
        slm_batch b = {r->embed_lens[i], r->embed_inputs[i], NULL, NULL, NULL};
        CHECK(slm_decode(c, &b, err, sizeof err) == 0 && slm_embedding(c, 0, want, err, sizeof err) == 0);
        double d = 0;
        for (int k = 0; k < E; k++) d = fmax(d, fabs(want[k] - r->embeddings[(size_t)i * (size_t)E + (size_t)k]));
        CHECKF(d < 1e-4, "input %d: embedding differs from a single-input pass by %g", i, d);
    }
    free(want);
    slm_context_free(c);
    slm_request_release(r);
    slm_engine_free(e);
}

/* ---------- the gate ---------- */

typedef struct stage_trace {
    char order[16];
    int n;
    bool refuse_admit;
} stage_trace;

static bool trace_stage(stage_trace *t, char c) {
    if (t->n < 15) t->order[t->n++] = c;
    return true;
}
static bool st_admit(void *s, slm_gate_call *call) {
    stage_trace *t = s;
    trace_stage(t, 'a');
    return t->refuse_admit ? slm_gate_refuse(call, 403, "forbidden", "not for you") : true;
}
static bool st_input(void *s, slm_gate_call *call) { (void)call; return trace_stage(s, 'i'); }
static bool st_route(void *s, slm_gate_call *call) { (void)call; return trace_stage(s, 'r'); }
static bool st_output(void *s, slm_gate_call *call) { (void)call; return trace_stage(s, 'o'); }
static bool st_record(void *s, slm_gate_call *call) { (void)call; return trace_stage(s, 'c'); }

static int task_echo(slm_engine *e, slm_gate_call *call, void *user) {
    (void)call;
    *(slm_engine **)user = e;
    return 7;
}

static void test_gate(slm_model *m) {
    slm_engine *e = new_engine(m, 1, 128, 64, 4, NULL);
    slm_gate *g = NULL;
    char err[256];
    if (!e || slm_gate_new(e, &g, err, sizeof err) != 0) {
        CHECKF(0, "gate: %s", err);
        slm_engine_free(e);
        return;
    }
    stage_trace t = {0};
    /* added out of order: the phases decide the order */
    slm_gate_stage stages[] = {{"rec", SLM_PHASE_RECORD, st_record, &t}, {"out", SLM_PHASE_OUTPUT, st_output, &t},
                               {"route", SLM_PHASE_ROUTE, st_route, &t}, {"in", SLM_PHASE_INPUT, st_input, &t},
                               {"admit", SLM_PHASE_ADMIT, st_admit, &t}};
    for (int i = 0; i < 5; i++) CHECK(slm_gate_add_stage(g, &stages[i], err, sizeof err) == 0);
    slm_gate_call call;
    slm_gate_call_init(&call, SLM_CALL_GENERATE, "test", "generate");
    CHECK(strncmp(call.request_id, "req_", 4) == 0 && strlen(call.request_id) == 20);
    slm_request *r = gen_request(m, "Once upon a time", 3);
    call.request = r;
    CHECK(slm_gate_admit(g, &call) && slm_gate_submit(g, &call));
    CHECK(slm_engine_wait(e, r, NULL, NULL, NULL) == SLM_FINISH_LENGTH && r->n_tokens == 3);
    slm_gate_finish(g, &call);
    CHECKF(strcmp(t.order, "airoc") == 0, "stage order '%s'", t.order);
    /* a refusing admit stage: nothing else runs but the record */
    memset(&t, 0, sizeof t);
    t.refuse_admit = true;
    slm_gate_call c2;
    slm_gate_call_init(&c2, SLM_CALL_GENERATE, "test", "generate");
    CHECK(strcmp(c2.request_id, call.request_id) != 0);
    CHECK(!slm_gate_admit(g, &c2) && c2.status == 403 && strcmp(c2.error, "not for you") == 0);
    slm_gate_finish(g, &c2);
    CHECKF(strcmp(t.order, "ac") == 0, "stage order after a refusal '%s'", t.order);
    /* a task call runs on the engine behind the gate */
    slm_engine *seen = NULL;
    t.refuse_admit = false;
    CHECK(slm_gate_run_task(g, "test", "task", task_echo, &seen, err, sizeof err) == 7 && seen == e);
    /* static keys: only the listed secret passes */
    slm_gate *g2 = NULL;
    const char *keys[] = {"sekret"};
    CHECK(slm_gate_new(e, &g2, err, sizeof err) == 0 && slm_gate_add_static_keys(g2, keys, 1, err, sizeof err) == 0);
    slm_gate_call k;
    slm_gate_call_init(&k, SLM_CALL_GENERATE, "test", "x");
    k.credential = "sekreT";
    CHECK(!slm_gate_admit(g2, &k) && k.status == 401);
    slm_gate_call_init(&k, SLM_CALL_GENERATE, "test", "x");
    k.credential = "sekret";
    CHECK(slm_gate_admit(g2, &k) && strcmp(k.principal, "static-key") == 0);
    slm_gate_free(g2);
    slm_request_release(r);
    slm_gate_free(g);
    slm_engine_free(e);
}


/* ---------- models on demand ---------- */

typedef struct fake_store {
    int loads[3]; /* per model m0..m2 */
    pthread_mutex_t mu;
} fake_store;

static uint64_t unit; /* what one model is accounted for: above what it really holds */

static int fake_probe(void *user, const char *name, char *canonical, size_t cap, uint64_t *bytes, char *err,
                      size_t err_len) {
    (void)user, (void)err, (void)err_len;
    if (strcmp(name, "m0") && strcmp(name, "m1") && strcmp(name, "m2") && strcmp(name, "huge")) return 0;
    snprintf(canonical, cap, "%s", name);
    *bytes = strcmp(name, "huge") == 0 ? 10 * unit : unit;
    return 1;
}

static int fake_load(void *user, const char *name, slm_model **model, slm_context_params *cp, char *err, size_t err_len) {
    fake_store *st = user;
    pthread_mutex_lock(&st->mu);
    st->loads[name[1] - '0']++;
    pthread_mutex_unlock(&st->mu);
    cp->n_ctx = 64;
    cp->n_seq = 1;
    return slm_model_load(model_path, NULL, model, err, err_len);
}

static int resident_count(slm_engine *e, const char *name) {
    slm_engine_model_info info[SLM_ENGINE_MAX_MODELS];
    int n = slm_engine_models(e, info, SLM_ENGINE_MAX_MODELS), found = 0;
    for (int i = 0; i < n; i++) found += !name || strcmp(info[i].name, name) == 0;
    return found;
}

typedef struct racer {
    slm_engine *e;
    const char *name;
    slm_acquire_status st;
} racer;

static void *race_acquire(void *arg) {
    racer *r = arg;
    int k;
    char err[256];
    r->st = slm_engine_acquire(r->e, r->name, 60, 5, &k, err, sizeof err);
    if (r->st == SLM_ACQUIRE_OK) slm_engine_release(r->e, k);
    return NULL;
}

static void test_on_demand(void) {
    fake_store st = {.mu = PTHREAD_MUTEX_INITIALIZER};
    slm_engine *e = NULL;
    char err[512];
    slm_engine_params ep = {.n_threads = 1};
    CHECK(slm_engine_new(&ep, &e, err, sizeof err) == 0);
    slm_engine_loader l = {.user = &st, .probe = fake_probe, .load = fake_load};
    slm_model *probe = NULL;
    CHECK(slm_model_load(model_path, NULL, &probe, err, sizeof err) == 0);
    unit = 2 * slm_model_size_bytes(probe) + (1 << 20); /* weights, KV cache of 64 positions and more */
    slm_model_free(probe);
    slm_engine_set_loader(e, &l, unit * 5 / 2); /* two models fit, not three */
    CHECK(slm_engine_start(e, err, sizeof err) == 0);
    int k0, k1, k2, k;
    CHECK(slm_engine_acquire(e, "nope", 60, 0, &k, err, sizeof err) == SLM_ACQUIRE_NOT_FOUND);
    CHECK(slm_engine_acquire(e, "m0", 60, 0, &k0, err, sizeof err) == SLM_ACQUIRE_OK);
    CHECK(slm_engine_acquire(e, "m1", 60, 0, &k1, err, sizeof err) == SLM_ACQUIRE_OK);
    CHECK(k0 != k1 && strcmp(slm_engine_model_name(e, k1), "m1") == 0 && slm_engine_model_at(e, k1) != NULL);
    /* both held: m2 has no room, and waiting 0.1 s does not change that */
    double t0 = slm_now();
    CHECK(slm_engine_acquire(e, "m2", 60, 0.1, &k2, err, sizeof err) == SLM_ACQUIRE_BUSY);
    CHECK(slm_now() - t0 >= 0.09);
    CHECKF(strstr(err, "in use") != NULL, "%s", err);
    CHECK(slm_engine_acquire(e, "huge", 60, 0, &k, err, sizeof err) == SLM_ACQUIRE_TOO_LARGE);
    /* m0 released first, then m1 used again: m0 is the least recently used and makes room for m2 */
    slm_engine_release(e, k0);
    slm_engine_release(e, k1);
    CHECK(slm_engine_acquire(e, "m1", 60, 0, &k1, err, sizeof err) == SLM_ACQUIRE_OK && st.loads[1] == 1);
    slm_engine_release(e, k1);
    CHECK(slm_engine_acquire(e, "m2", 60, 0, &k2, err, sizeof err) == SLM_ACQUIRE_OK);
    CHECK(resident_count(e, "m0") == 0 && resident_count(e, "m1") == 1 && resident_count(e, "m2") == 1);
    uint64_t resident, max, loads, unloads;
    slm_engine_residency(e, &resident, &max, &loads, &unloads);
    CHECKF(resident <= max && loads == 3 && unloads == 1, "resident %llu max %llu loads %llu unloads %llu",
           (unsigned long long)resident, (unsigned long long)max, (unsigned long long)loads, (unsigned long long)unloads);
    /* a request runs on a model loaded on demand */
    slm_request *r = slm_request_new(SLM_REQ_GENERATE);
    snprintf(r->model, sizeof r->model, "m2");
    r->prompt = malloc(sizeof(slm_token) * 2);
    r->prompt[0] = 1;
    r->prompt[1] = 100;
    r->n_prompt = 2;
    r->gen.max_tokens = 4;
    r->gen.ignore_eos = true;
    CHECK(slm_engine_submit(e, r) == SLM_SUBMIT_OK);
    CHECK(slm_engine_wait(e, r, NULL, NULL, NULL) == SLM_FINISH_LENGTH && r->n_tokens == 4);
    slm_request_release(r);
    /* keep_alive: m2 released with 0.05 s goes on the scheduler thread; m1 (60 s) stays */
    slm_engine_release(e, k2);
    CHECK(slm_engine_acquire(e, "m2", 0.05, 0, &k2, err, sizeof err) == SLM_ACQUIRE_OK);
    slm_engine_release(e, k2);
    for (int i = 0; i < 100 && resident_count(e, "m2"); i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK(resident_count(e, "m2") == 0 && resident_count(e, "m1") == 1);
    CHECK(slm_engine_unload(e, "m1") == 1);
    for (int i = 0; i < 100 && resident_count(e, "m1"); i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK(resident_count(e, NULL) == 0);
    /* eight threads at once over two models: each loads once, all succeed */
    memset(st.loads, 0, sizeof st.loads);
    racer rs[8];
    pthread_t th[8];
    for (int i = 0; i < 8; i++) {
        rs[i] = (racer){.e = e, .name = i % 2 ? "m0" : "m1"};
        pthread_create(&th[i], NULL, race_acquire, &rs[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        CHECK(rs[i].st == SLM_ACQUIRE_OK);
    }
    CHECKF(st.loads[0] == 1 && st.loads[1] == 1, "loads %d %d", st.loads[0], st.loads[1]);
    slm_engine_free(e);
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return TEST_SKIP_CODE;
    snprintf(model_path, sizeof model_path, "%.4000s/models/stories260K.gguf", shared);
    slm_model *m = NULL, *m2 = NULL;
    char err[512];
    char path2[4096];
    snprintf(path2, sizeof path2, "%.4000s/models/llama-2-tiny-random.gguf", shared); /* another model, another vocab */
    if (slm_model_load(model_path, NULL, &m, err, sizeof err) != 0 || slm_model_load(path2, NULL, &m2, err, sizeof err) != 0) {
        fprintf(stderr, "test_engine: %s\n", err);
        return 1;
    }
    test_admission(m);
    test_fairness(m);
    test_cancel(m);
    test_prefix_reuse(m);
    test_score_with_chat(m);
    test_two_models(m, m2);
    test_threaded(m);
    test_embed_batching(m);
    test_gate(m);
    test_on_demand();
    slm_model_free(m);
    slm_model_free(m2);
    return test_report("test_engine");
}
