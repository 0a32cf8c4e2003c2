/* slm engine — the one way to run a model: a continuous-batching scheduler over the loaded models,
 * the requests it serves, and the tasks (classify / extract / summarize) built on it.
 *
 * Every front end (the CLI verbs, every HTTP endpoint) builds an slm_request and submits it to an
 * slm_engine; nothing else decodes. An engine either runs its own scheduler thread
 * (slm_engine_start: the server) or is driven by the thread that waits (slm_engine_wait steps it:
 * the CLI, tests). Results flow back through the request under its mutex. */
#ifndef SLM_ENGINE_H
#define SLM_ENGINE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SLM_MAX_TOP_LOGPROBS 20
#define SLM_MAX_STOP 16
#define SLM_MAX_SCORE 64

/* ---------- requests ---------- */

typedef enum {
    SLM_REQ_GENERATE, /* prompt → sampled tokens and text */
    SLM_REQ_EMBED,    /* each input → one pooled embedding */
    SLM_REQ_SCORE,    /* prompt → log P(continuation) for each of several continuations */
} slm_request_kind;

typedef enum {
    SLM_FINISH_NONE = 0,
    SLM_FINISH_STOP,      /* end-of-generation token, stop string or completed grammar */
    SLM_FINISH_LENGTH,    /* max_tokens or the sequence's context is full */
    SLM_FINISH_CANCELLED, /* the client went away, or the engine shut down */
    SLM_FINISH_TIMEOUT,   /* the request's deadline passed */
    SLM_FINISH_ERROR,     /* `error` says what; `error_is_client` when the request itself asked the impossible */
} slm_finish;

/* Probability facts about one generated token (kept only when logprobs are asked for). */
typedef struct slm_token_info {
    slm_token token;
    float logprob;
    int n_top;
    slm_token top_tokens[SLM_MAX_TOP_LOGPROBS];
    float top_logprobs[SLM_MAX_TOP_LOGPROBS];
} slm_token_info;

/* What to generate and how. The request owns logit_bias, stop strings and the grammar. */
typedef struct slm_gen_params {
    slm_sampler_params sampling; /* sampling.logit_bias points into logit_bias below */
    slm_logit_bias *logit_bias;
    int max_tokens;              /* <= 0: until EOG or the sequence's context is full */
    int min_tokens;              /* EOG is banned before this many tokens */
    bool ignore_eos;
    char *stop[SLM_MAX_STOP];    /* malloc'd; empty strings are ignored */
    int n_stop;
    bool logprobs;
    int top_logprobs;
    slm_grammar *grammar;        /* NULL = unconstrained */
    bool raw_bytes;              /* deliver token bytes as they are; else invalid UTF-8 becomes U+FFFD */
} slm_gen_params;

/* One job for the engine. Fields above `mu` are the input, immutable once submitted; fields below
 * are written by the engine under `mu` (signalling `cv`) and read by the submitter under `mu`.
 * Reference counted: whichever side lets go last frees it. */
typedef struct slm_request {
    atomic_int refs;
    slm_request_kind kind;
    char model[256];         /* name of the engine model to run on; "" = the first one */

    slm_token *prompt;       /* GENERATE, SCORE: malloc'd */
    int n_prompt;
    slm_token **embed_inputs; /* EMBED: one malloc'd token list per input */
    int *embed_lens;
    int n_embed;
    slm_token *score_conts[SLM_MAX_SCORE]; /* SCORE: malloc'd continuations, each scored after the prompt */
    int score_lens[SLM_MAX_SCORE];
    int n_score;
    slm_gen_params gen;
    slm_sampler *sampler;    /* optional, borrowed: used instead of one built from gen.sampling (slm_generate) */
    int seq;                 /* -1 = any free sequence; else exactly this one (slm_generate) */
    slm_lora_use lora[SLM_LORA_MAX]; /* LoRA adapters this request applies (slm_request_add_lora: a reference each) */
    int n_lora;
    double t_submit;         /* monotonic seconds (slm_now) */
    double deadline;         /* 0 = none */

    atomic_bool cancelled;   /* set through slm_engine_cancel */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *text;              /* released text: never part of a stop string */
    size_t text_len, text_cap;
    slm_token *tokens;       /* generated tokens (EOG excluded) */
    int n_tokens;
    size_t tokens_cap;
    slm_token_info *infos;   /* one per generated token when gen.logprobs */
    int n_infos;
    size_t infos_cap;
    float *embeddings;       /* n_embed × n_embd */
    int n_embd;
    int n_embed_done;
    int n_embed_tokens;
    double scores[SLM_MAX_SCORE]; /* SCORE: log P(continuation i | prompt) */
    int n_scored;
    bool started;
    bool done;
    slm_finish finish;
    bool error_is_client;    /* ERROR caused by what the request asked (a 4xx), not by the engine */
    char error[256];
    int n_prompt_cached;
    int remote_prompt_tokens;     /* usage as a remote backend reported it (0 = count the tokens here) */
    int remote_completion_tokens;
    double t_start, t_first, t_end; /* sequence assigned, first token, finished */
} slm_request;

/* A new request of `kind` (refs = 1, seq = -1) or NULL when memory runs out. */
slm_request *slm_request_new(slm_request_kind kind);
void slm_request_retain(slm_request *r);
/* Drops a reference; the last one frees the request and everything it owns. */
void slm_request_release(slm_request *r);
/* With r->mu held: waits up to ms milliseconds for the engine to add output or finish r. */
void slm_request_wait(slm_request *r, int ms);
/* For backends that produce a request's results (the engine, a remote API, the cascade):
 * with r->mu held, append text / a token (false only when memory runs out); then finish it once,
 * which wakes its waiters (takes the lock itself). */
bool slm_request_append_text(slm_request *r, const char *s, size_t n);
bool slm_request_append_token(slm_request *r, slm_token t, const slm_token_info *info);
void slm_request_finish(slm_request *r, slm_finish why, const char *error);
/* Adds a LoRA adapter at `scale` to r before it is submitted (the request keeps a reference); the
 * engine refuses a request whose adapter belongs to another model (a client error). */
int slm_request_add_lora(slm_request *r, slm_lora *lora, float scale, char *err, size_t err_len);
/* Fills gen with defaults (slm_sampler_default_params, no limits). */
void slm_gen_params_init(slm_gen_params *p);
/* Frees what gen owns and resets it to zeros. */
void slm_gen_params_free(slm_gen_params *p);
/* "stop", "length", "cancelled", "timeout", "error". */
const char *slm_finish_name(slm_finish f);
/* One line for a request that did not end with stop/length. */
const char *slm_finish_message(const slm_request *r);
/* Monotonic clock in seconds, the time base of t_submit and deadline. */
double slm_now(void);
/* Length of the longest prefix of s[0..n) that ends on a complete UTF-8 character. */
size_t slm_utf8_complete_prefix(const char *s, size_t n);
/* Copies s[0..n) to out replacing invalid UTF-8 by U+FFFD (out needs 3n bytes); returns bytes written. */
size_t slm_utf8_sanitize(const char *s, size_t n, char *out);

/* ---------- the engine ---------- */

typedef struct slm_engine slm_engine;

/* Events the engine reports as they happen (the server's metrics); every hook may be NULL. Called
 * from the scheduling thread: keep them short. */
typedef struct slm_engine_observer {
    void *user;
    void (*forward)(void *user, int n_prompt, int n_generated, int n_embedded); /* one forward pass */
    void (*prompt_cached)(void *user, int n_cached); /* prompt tokens reused from the KV at admission */
    void (*first_token)(void *user, double seconds); /* time from submission to a request's first token */
} slm_engine_observer;

typedef struct slm_engine_params {
    int n_threads;  /* kernel threads of the one pool every model shares; 0 = all CPUs */
    int queue_cap;  /* requests that may wait beyond the free sequences, per model; < 0 = none, 0 = 64 */
    slm_engine_observer observer;
} slm_engine_params;

/* An empty engine; add models, then start it (server) or drive it with slm_engine_wait (CLI). */
int slm_engine_new(const slm_engine_params *params, slm_engine **out, char *err, size_t err_len);
/* Cancels what still runs, stops the scheduler thread, frees every context and owned model. */
void slm_engine_free(slm_engine *e);
/* Adds `model` under `name` with its own context (cparams.n_seq sequences); take_ownership makes
 * the engine free the model. n_threads in cparams is ignored: the engine's pool is used. */
int slm_engine_add_model(slm_engine *e, const char *name, slm_model *model, const slm_context_params *cparams,
                         bool take_ownership, char *err, size_t err_len);
/* Adds a context the caller keeps owning (slm_generate); the engine only schedules on it. */
int slm_engine_add_context(slm_engine *e, const char *name, slm_context *ctx, char *err, size_t err_len);
/* Number of models and the i-th one's name, model and context; NULL past the end. */
int slm_engine_n_models(const slm_engine *e);
const char *slm_engine_model_name(const slm_engine *e, int i);
const slm_model *slm_engine_model_at(const slm_engine *e, int i);
const slm_context *slm_engine_context_at(const slm_engine *e, int i);
/* Index of the model called `name` ("" or NULL = 0; "name:latest" matches "name"), or -1. */
int slm_engine_find(const slm_engine *e, const char *name);
/* Starts the scheduler thread (once); without it, slm_engine_wait drives the engine. */
int slm_engine_start(slm_engine *e, char *err, size_t err_len);

/* ---------- models on demand ----------
 * Besides the models its owner adds (pinned: they stay), an engine with a loader loads a model the
 * first time a front end asks for it by name, keeps it while it is held and for its keep_alive after
 * the last hold, and unloads the least recently used idle model when a new one needs the room
 * (max_memory). Indexes stay valid while the model is held. */

#define SLM_ENGINE_MAX_MODELS 32

typedef struct slm_engine_loader {
    void *user;
    /* Whether `name` is a model the loader can load: 1 yes (canonical gets the name to serve it under,
     * bytes what it will hold resident: weights and KV cache), 0 no such model, -1 error (err), -2
     * something that cannot be served as a model (err says what it is). */
    int (*probe)(void *user, const char *name, char *canonical, size_t canonical_cap, uint64_t *bytes, char *err,
                 size_t err_len);
    /* Loads `canonical`: the model (the engine takes ownership) and its context parameters. 0 or -1. */
    int (*load)(void *user, const char *canonical, slm_model **model, slm_context_params *cparams, char *err,
                size_t err_len);
} slm_engine_loader;

/* Installs the loader; max_memory bounds the bytes of every resident model together (0 = no bound). */
void slm_engine_set_loader(slm_engine *e, const slm_engine_loader *loader, uint64_t max_memory);

typedef enum {
    SLM_ACQUIRE_OK = 0,
    SLM_ACQUIRE_NOT_FOUND, /* neither resident nor known to the loader */
    SLM_ACQUIRE_TOO_LARGE, /* needs more than max_memory even alone (a client error) */
    SLM_ACQUIRE_BUSY,      /* the room is held by models in use, still after wait_s seconds */
    SLM_ACQUIRE_FAILED,    /* loading failed (err says why) */
    SLM_ACQUIRE_NOT_MODEL, /* the name is something else, e.g. a LoRA adapter (a client error) */
} slm_acquire_status;

#define SLM_KEEP_ALIVE_FOREVER (-1.0)

/* Holds the model called `name`, loading it first if needed (waiting up to wait_s for room); *index
 * gets its index. keep_alive (seconds; < 0 for ever; 0 = unload once idle) applies after the last
 * hold ends, replacing the model's previous one; pinned models ignore it. */
slm_acquire_status slm_engine_acquire(slm_engine *e, const char *name, double keep_alive, double wait_s, int *index,
                                      char *err, size_t err_len);
/* Ends one hold taken by slm_engine_acquire. */
void slm_engine_release(slm_engine *e, int index);
/* Asks for `name` to be unloaded as soon as it is idle (keep_alive 0); 1 if it is resident (and not
 * pinned), 0 if not. */
int slm_engine_unload(slm_engine *e, const char *name);

typedef struct slm_engine_model_info {
    char name[256];
    int index;
    bool pinned;
    int holds, busy, queued;
    double expires_unix; /* unix time it may be unloaded; 0 = not while held, never when pinned or for ever */
    double loaded_unix;
    uint64_t bytes;
    char desc[96];   /* slm_model_desc */
    char arch[32];
    int n_ctx;       /* per sequence */
    bool embedding;  /* an embedding-only model */
} slm_engine_model_info;

/* A snapshot of the resident models (at most cap); returns how many were written. */
int slm_engine_models(slm_engine *e, slm_engine_model_info *out, int cap);
/* Bytes held by resident models, the bound, and how many loads and unloads happened. */
void slm_engine_residency(slm_engine *e, uint64_t *resident, uint64_t *max_memory, uint64_t *loads, uint64_t *unloads);

typedef enum {
    SLM_SUBMIT_OK = 0,
    SLM_SUBMIT_FULL,      /* the model's admission queue is at capacity */
    SLM_SUBMIT_DRAINING,  /* shutting down */
    SLM_SUBMIT_NO_MODEL,  /* r->model names no model of this engine */
} slm_submit_status;

/* Queues r for its model (the engine takes its own reference). */
slm_submit_status slm_engine_submit(slm_engine *e, slm_request *r);
/* Marks r cancelled and wakes the scheduler so its sequence or queue place frees at once. */
void slm_engine_cancel(slm_engine *e, slm_request *r);
/* Asked every few milliseconds while waiting; true cancels the request (client gone, shutdown). */
typedef bool (*slm_cancel_fn)(void *user);
/* Waits until r is done, handing each new piece of text to on_text (may be NULL). Steps the
 * engine itself when no scheduler thread runs. Returns r->finish; SLM_FINISH_ERROR (r untouched)
 * when the engine is idle without ever having finished r (it was not submitted to this engine). */
slm_finish slm_engine_wait(slm_engine *e, slm_request *r, slm_text_fn on_text, slm_cancel_fn should_cancel, void *user);
/* One scheduling pass (admission, one forward pass per model with work, sampling); returns the
 * number of tokens it processed. For engines without a thread, and for tests. */
int slm_engine_step(slm_engine *e);
/* Stops admitting, waits up to timeout_s for everything queued or running, then cancels the rest;
 * returns how many requests had to be cancelled. */
int slm_engine_drain(slm_engine *e, double timeout_s);
/* Requests waiting and sequences busy, over all models (model < 0) or one. */
void slm_engine_counts(slm_engine *e, int model, int *queued, int *busy);

/* ---------- tasks: classify / extract / summarize on the engine ----------
 * Each task submits ordinary requests (SCORE for classify, GENERATE for extract and summarize), so
 * tasks batch with chat traffic and are cancelled like any request. They use the model's chat
 * template when it has one, else a plain-text prompt. Nothing is truncated silently. */

/* Returned when generation hit max_tokens or the context end before the output was complete (the
 * result's finish_reason is "length"); the partial text is in the result but is not valid. */
#define SLM_TASK_INCOMPLETE (-2)
/* Returned when the engine refused or dropped a request (full queue, cancel, deadline): err says which. */
#define SLM_TASK_REFUSED (-3)

typedef struct slm_task_params {
    const char *model;         /* engine model name; NULL = the first */
    int max_tokens;            /* generation cap; 0 = task default (extract 512, summarize from max_words) */
    float temperature;         /* 0 = greedy (default) */
    uint64_t seed;
    const char *template_name; /* NULL = the model's chat template */
    double deadline;           /* slm_now() time after which the task stops; 0 = none */
    slm_cancel_fn should_cancel; /* polled while waiting; NULL = never */
    void *cancel_user;
} slm_task_params;

typedef struct slm_task_result {
    char *text;                /* malloc'd: the JSON (extract) or the summary (summarize) */
    const char *finish_reason; /* "stop" or "length" */
    int n_prompt, n_generated; /* summed over all generations of the task */
    int n_chunks;              /* summarize: input parts (1 = no split) */
    int n_rounds;              /* summarize: generation rounds (map + reduce levels) */
    slm_finish refused_why;    /* with SLM_TASK_REFUSED: CANCELLED, TIMEOUT, or NONE for a full queue */
} slm_task_result;

void slm_task_result_free(slm_task_result *r);

/* Label probabilities from the model's own token log-probabilities, not from parsing text.
 * Single-label: for each label, log P(label tokens, end-of-turn | prompt); probs are the softmax over
 * labels (sum to 1). multi_label: each label is an independent yes/no question and probs[i] =
 * P(yes) / (P(yes) + P(no)). `probs` has n_labels entries; labels must be non-empty and distinct. */
int slm_task_classify(slm_engine *e, const slm_task_params *p, const char *input, const char *const *labels,
                      int n_labels, bool multi_label, double *probs, slm_task_result *usage, char *err, size_t err_len);

/* A JSON object that validates against `schema_json` (a JSON Schema or {"type":"json_object"}),
 * generated under the schema's grammar and validated before returning 0. */
int slm_task_extract(slm_engine *e, const slm_task_params *p, const char *input, const char *schema_json,
                     slm_task_result *out, char *err, size_t err_len);

/* A summary of at most about max_words words (0 = 100) in `style` (NULL = plain prose). Input
 * longer than the context is split at sentence or line boundaries, the parts summarised together
 * in one batch, and the summaries combined (repeatedly if needed). */
int slm_task_summarize(slm_engine *e, const slm_task_params *p, const char *input, int max_words, const char *style,
                       slm_task_result *out, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif
#endif
