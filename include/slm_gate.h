/* slm gate — the one door every inference passes through, whatever its front end.
 *
 * A call (one API request: a chat, a completion, an embedding, a task) runs an ordered pipeline:
 *   admit (credentials, scopes, limits) → input policy → route → backend → output policy → record.
 * Stages are plugged in per phase (governance, the router, retrieval add theirs); backends sit
 * behind one interface (the local engine is backend 0; a remote API is another). A phase with no
 * stage costs one empty loop. Front ends build a call, admit it when the credentials are known
 * (before reading a body), submit it, and finish it when the response is complete. */
#ifndef SLM_GATE_H
#define SLM_GATE_H

#include <stdbool.h>
#include <stddef.h>

#include "slm.h"
#include "slm_engine.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SLM_GATE_MAX_STAGES 16
#define SLM_GATE_MAX_BACKENDS 8

typedef enum { SLM_PHASE_ADMIT, SLM_PHASE_INPUT, SLM_PHASE_ROUTE, SLM_PHASE_OUTPUT, SLM_PHASE_RECORD, SLM_PHASES } slm_gate_phase;

typedef enum { SLM_CALL_GENERATE, SLM_CALL_EMBED, SLM_CALL_TASK } slm_call_kind;

typedef struct slm_gate_call slm_gate_call;
/* A transformation of the generated text (restoring masked values, masking leaked data), set by an
 * input stage. feed appends what may be shown now to *out (a malloc'd buffer the caller owns,
 * *out_len its length); flush appends the rest at the end. Both return 0, or -1 when out of memory. */
typedef struct slm_gate_filter {
    int (*feed)(void *state, const char *piece, size_t len, char **out, size_t *out_len);
    int (*flush)(void *state, char **out, size_t *out_len);
    void *state;
} slm_gate_filter;
/* A task call's work, run by the local backend: classify/extract/summarize on the engine.
 * Returns 0 or a SLM_TASK_* code; it fills what the front end needs through `user`. */
typedef int (*slm_call_task_fn)(slm_engine *engine, slm_gate_call *call, void *user);

/* One API request on its way through the gate. The front end fills the input part; stages and
 * backends fill the rest. */
struct slm_gate_call {
    /* input */
    slm_call_kind kind;
    const char *front_end;   /* "http", "cli" */
    const char *endpoint;    /* e.g. "/v1/chat/completions", "run" */
    const char *client;      /* peer address or "" */
    const char *credential;  /* the secret as presented (never logged or stored), or NULL */
    const char *model;       /* the model the caller named ("" = default) */
    slm_request *request;    /* GENERATE / EMBED: the engine request (borrowed) */
    /* GENERATE: the caller's text as a remote backend must see it (after input policy). A chat
     * has messages; a completion has prompt. Input stages may replace them (slm_gate_inspect). */
    slm_chat_message *messages;
    size_t n_messages;
    const char *prompt;
    bool stream;             /* the client reads the reply as it is generated */
    bool exceeds_local;      /* the prompt does not fit the local model's context (only a remote backend can serve it) */
    bool inspected;          /* the input phase has run */
    bool finished;           /* slm_gate_finish has run (it runs once) */
    slm_call_task_fn task;   /* TASK */
    void *task_user;
    /* decisions */
    char request_id[40];     /* set by slm_gate_call_init; responses carry it */
    char principal[64];      /* who is calling, set by an admit stage (a key's name), "" = anonymous */
    bool admin;              /* the principal may manage keys and read the ledger */
    bool local_only;         /* the principal's calls never leave the machine */
    void *policy;            /* the governance stages' per-call state (theirs to free at record) */
    slm_gate_filter filter;  /* generated text passes through it when feed is set */
    int retry_after_s;       /* with a 429: when the client may try again */
    int backend;             /* chosen by the route phase; 0 = the local engine */
    const char *route;       /* "local" or "upstream": where the call ran (set by slm_gate_submit) */
    void *backend_state;     /* a remote backend's per-call state (its own to free in cancel/finish) */
    const char *route_reason; /* why the route stage chose the backend (static string), NULL = no decision */
    double route_score;      /* the learned router's score when it decided, else -1 */
    int task_rc;             /* TASK: what the task returned */
    /* outcome: a stage or backend that refuses sets status (an HTTP status) and error */
    int status;
    const char *error_code;  /* machine-readable, e.g. "invalid_api_key" */
    char error[256];
    double t_start, t_end;
    int prompt_tokens, completion_tokens; /* filled by the front end before slm_gate_finish */
    double cost_usd, frontier_cost_usd;   /* set by the record stage (at the configured prices) */
};

/* A pipeline stage: returns true to go on, false to stop the call (after setting status/error). */
typedef struct slm_gate_stage {
    const char *name;
    slm_gate_phase phase;
    bool (*run)(void *state, slm_gate_call *call);
    void *state;
} slm_gate_stage;

/* Where a call is executed. submit returns true when the call was taken (GENERATE/EMBED: its
 * request will finish through the engine's channel; TASK: it has run), false with status/error set. */
typedef struct slm_gate_backend {
    const char *name;
    bool (*submit)(void *state, slm_gate_call *call);
    void (*cancel)(void *state, slm_gate_call *call);
    void *state;
} slm_gate_backend;

typedef struct slm_gate slm_gate;

/* A gate whose backend 0 is `engine` (borrowed; it must outlive the gate). */
int slm_gate_new(slm_engine *engine, slm_gate **out, char *err, size_t err_len);
void slm_gate_free(slm_gate *g);
/* The local engine behind the gate. */
slm_engine *slm_gate_engine(const slm_gate *g);
/* Appends a stage to its phase (stages of a phase run in the order added). Before serving only. */
int slm_gate_add_stage(slm_gate *g, const slm_gate_stage *stage, char *err, size_t err_len);
/* Adds a backend; returns its index (for route stages to choose), or -1 with err. Before serving only. */
int slm_gate_add_backend(slm_gate *g, const slm_gate_backend *backend, char *err, size_t err_len);

/* Runs fn(arg) when the gate is freed (stage state that owns more than memory). */
int slm_gate_on_free(slm_gate *g, void (*fn)(void *), void *arg);
/* Zeroed memory of `size` bytes that lives as long as the gate (stage state); NULL when out of memory. */
void *slm_gate_keep(slm_gate *g, size_t size);
/* Adds the admit stage for static keys (--api-key): every admitted call must present one of
 * keys[0..n) (borrowed; they must outlive the gate). n = 0 adds nothing. */
int slm_gate_add_static_keys(slm_gate *g, const char *const *keys, int n, char *err, size_t err_len);

/* Prepares a call: zeroes the outcome, stamps t_start and a fresh request id. */
void slm_gate_call_init(slm_gate_call *call, slm_call_kind kind, const char *front_end, const char *endpoint);
/* Runs the admit phase; false with call->status (401/403/429…) and error set. */
bool slm_gate_admit(slm_gate *g, slm_gate_call *call);
/* Runs the input policy phase on the call's texts (messages / prompt), which stages may rewrite;
 * false with status/error (e.g. 400 when policy blocks). Front ends call it before tokenizing.
 * slm_gate_submit runs it itself when the front end did not. */
bool slm_gate_inspect(slm_gate *g, slm_gate_call *call);
/* Runs input policy (unless inspected), then route, then hands the call to the chosen backend;
 * false with status/error. */
bool slm_gate_submit(slm_gate *g, slm_gate_call *call);
/* Passes generated text through the call's output filter (a copy when there is none): appends
 * what may be shown now to *out (malloc'd, caller frees; *out_len its length). end = true after the
 * last piece flushes what the filter held back. Returns 0, or -1 when out of memory. */
int slm_gate_output(slm_gate_call *call, const char *piece, size_t len, bool end, char **out, size_t *out_len);
/* Cancels the call at its backend (client gone). */
void slm_gate_cancel(slm_gate *g, slm_gate_call *call);
/* When the response is ready to be sent, before its last bytes (or failed, with call->status set):
 * output policy, then record (so the audit record is durable before the client sees the end).
 * Runs once; later calls do nothing. */
void slm_gate_finish(slm_gate *g, slm_gate_call *call);
/* A whole task call at once (the CLI's task verbs): init, admit, submit (the local backend runs
 * fn), finish. Returns fn's result, or -1 with err when the gate refused the call. */
int slm_gate_run_task(slm_gate *g, const char *front_end, const char *endpoint, slm_call_task_fn fn, void *user,
                      char *err, size_t err_len);
/* Sets status and a formatted error on the call; returns false (for stages to return). */
bool slm_gate_refuse(slm_gate_call *call, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#ifdef __cplusplus
}
#endif
#endif
