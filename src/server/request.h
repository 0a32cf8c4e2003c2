/* One generation or embedding job as the scheduler sees it, and the channel its results flow back
 * through. The HTTP handler builds the request, the scheduler thread fills the output under `mu`
 * and signals `cv`; the handler reads what is new. Shared by reference count: whichever side
 * lets go last frees it. */
#ifndef SLM_SERVER_REQUEST_H
#define SLM_SERVER_REQUEST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "slm.h"

#define SRV_MAX_TOP_LOGPROBS 20
#define SRV_MAX_STOP 16

typedef enum { SRV_TASK_GENERATE, SRV_TASK_EMBED } srv_task_kind;

typedef enum {
    SRV_FINISH_NONE = 0,
    SRV_FINISH_STOP,      /* end-of-generation token or stop string */
    SRV_FINISH_LENGTH,    /* max_tokens or the slot's context is full */
    SRV_FINISH_CANCELLED, /* client went away */
    SRV_FINISH_TIMEOUT,   /* request time limit */
    SRV_FINISH_ERROR,     /* engine failure; `error` says what */
} srv_finish;

/* Probability facts about one generated token (only kept when logprobs were asked for). */
typedef struct srv_token_info {
    slm_token token;
    float logprob;
    int n_top;
    slm_token top_tokens[SRV_MAX_TOP_LOGPROBS];
    float top_logprobs[SRV_MAX_TOP_LOGPROBS];
} srv_token_info;

/* What to generate and how; filled by the wire-format parsers. */
typedef struct srv_gen_params {
    slm_sampler_params sampling; /* sampling.logit_bias points into logit_bias below */
    slm_logit_bias *logit_bias;  /* owned */
    int max_tokens;              /* <= 0: until EOG or the slot's context is full */
    int min_tokens;
    bool ignore_eos;
    char *stop[SRV_MAX_STOP]; /* owned */
    int n_stop;
    bool logprobs;
    int top_logprobs;
    slm_grammar *grammar; /* owned; NULL = unconstrained */
} srv_gen_params;

typedef struct srv_request {
    atomic_int refs;
    srv_task_kind kind;

    /* input: immutable once submitted */
    slm_token *prompt; /* generate: the whole prompt */
    int n_prompt;
    slm_token **embed_inputs; /* embed: one token list per input */
    int *embed_lens;
    int n_embed;
    srv_gen_params gen;
    double t_submit; /* seconds, monotonic */
    double deadline;

    atomic_bool cancelled; /* set by the handler when the client is gone */

    /* output: guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char *text; /* released text: valid UTF-8, never part of a stop string */
    size_t text_len, text_cap;
    slm_token *tokens; /* generated tokens (EOG excluded) */
    int n_tokens;
    size_t tokens_cap;
    srv_token_info *infos; /* one per generated token when gen.logprobs */
    int n_infos;
    size_t infos_cap;
    float *embeddings; /* n_embed × n_embd */
    int n_embd;
    int n_embed_done;
    int n_embed_tokens;
    bool started;
    bool done;
    srv_finish finish;
    char error[256];
    int n_prompt_cached;
    double t_start, t_first, t_end; /* slot assigned, first token, finished */
} srv_request;

srv_request *srv_request_new(srv_task_kind kind);
void srv_request_retain(srv_request *r);
void srv_request_release(srv_request *r);
void srv_gen_params_init(srv_gen_params *p);
void srv_gen_params_free(srv_gen_params *p);

/* Scheduler side (caller holds r->mu). Return false only when memory runs out. */
bool srv_request_append_text(srv_request *r, const char *s, size_t n);
bool srv_request_append_token(srv_request *r, slm_token t, const srv_token_info *info);
/* Marks the request finished and wakes the handler. Takes the lock itself. */
void srv_request_finish(srv_request *r, srv_finish why, const char *error);

const char *srv_finish_name(srv_finish f);
/* One line for a request that did not end with stop/length (timeout, shutdown, engine error). */
const char *srv_finish_message(const srv_request *r);
double srv_now(void);

/* Length of the longest prefix of s[0..n) that ends on a complete UTF-8 character. */
size_t srv_utf8_complete_prefix(const char *s, size_t n);
/* Copies s[0..n) to out replacing every invalid UTF-8 sequence by U+FFFD; out needs 3n bytes.
 * Returns the bytes written. */
size_t srv_utf8_sanitize(const char *s, size_t n, char *out);

#endif
