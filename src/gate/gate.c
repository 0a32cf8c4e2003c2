/* The gate: phases of stages around a set of backends (see slm_gate.h). Stages and backends are
 * fixed before serving, so running a call reads them without locks. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slm_gate.h"
#include "util/err.h"

struct slm_gate {
    slm_engine *engine;
    slm_gate_stage stages[SLM_PHASES][SLM_GATE_MAX_STAGES];
    int n_stages[SLM_PHASES];
    slm_gate_backend backends[SLM_GATE_MAX_BACKENDS];
    int n_backends;
    void **kept; /* slm_gate_keep allocations */
    int n_kept;
    struct {
        void (*fn)(void *);
        void *arg;
    } on_free[SLM_GATE_MAX_STAGES];
    int n_on_free;
};

/* ---------- the local backend: the engine ---------- */

static bool local_submit(void *state, slm_gate_call *call) {
    slm_engine *e = state;
    if (call->kind == SLM_CALL_TASK) {
        call->task_rc = call->task ? call->task(e, call, call->task_user) : -1;
        return true;
    }
    slm_request *r = call->request;
    if (!r) return slm_gate_refuse(call, 500, "engine_error", "call has no request");
    if (call->model && !r->model[0]) snprintf(r->model, sizeof r->model, "%s", call->model);
    switch (slm_engine_submit(e, r)) {
    case SLM_SUBMIT_OK: return true;
    case SLM_SUBMIT_FULL:
        return slm_gate_refuse(call, 503, "overloaded",
                               "server is at capacity (all slots busy and the queue is full); retry shortly");
    case SLM_SUBMIT_DRAINING: return slm_gate_refuse(call, 503, "shutting_down", "server is shutting down");
    case SLM_SUBMIT_NO_MODEL: break;
    }
    return slm_gate_refuse(call, 404, "model_not_found", "model '%.200s' is not loaded", r->model);
}

static void local_cancel(void *state, slm_gate_call *call) {
    if (call->request) slm_engine_cancel(state, call->request);
}

/* ---------- building ---------- */

int slm_gate_new(slm_engine *engine, slm_gate **out, char *err, size_t err_len) {
    *out = NULL;
    if (!engine) return slm_err(err, err_len, "the gate needs an engine");
    slm_gate *g = calloc(1, sizeof *g);
    if (!g) return slm_err(err, err_len, "out of memory");
    g->engine = engine;
    g->backends[0] = (slm_gate_backend){.name = "local", .submit = local_submit, .cancel = local_cancel, .state = engine};
    g->n_backends = 1;
    *out = g;
    return 0;
}

void slm_gate_free(slm_gate *g) {
    if (!g) return;
    for (int i = g->n_on_free - 1; i >= 0; i--) g->on_free[i].fn(g->on_free[i].arg);
    for (int i = 0; i < g->n_kept; i++) free(g->kept[i]);
    free(g->kept);
    free(g);
}

void *slm_gate_keep(slm_gate *g, size_t size) {
    void **grown = realloc(g->kept, sizeof *grown * (size_t)(g->n_kept + 1));
    if (!grown) return NULL;
    g->kept = grown;
    void *p = calloc(1, size ? size : 1);
    if (p) g->kept[g->n_kept++] = p;
    return p;
}

slm_engine *slm_gate_engine(const slm_gate *g) { return g->engine; }

int slm_gate_on_free(slm_gate *g, void (*fn)(void *), void *arg) {
    if (g->n_on_free == SLM_GATE_MAX_STAGES) return -1;
    g->on_free[g->n_on_free].fn = fn;
    g->on_free[g->n_on_free++].arg = arg;
    return 0;
}

int slm_gate_add_stage(slm_gate *g, const slm_gate_stage *stage, char *err, size_t err_len) {
    if (!stage || !stage->run || stage->phase < 0 || stage->phase >= SLM_PHASES)
        return slm_err(err, err_len, "invalid gate stage");
    if (g->n_stages[stage->phase] == SLM_GATE_MAX_STAGES)
        return slm_err(err, err_len, "too many gate stages in one phase (at most %d)", SLM_GATE_MAX_STAGES);
    g->stages[stage->phase][g->n_stages[stage->phase]++] = *stage;
    return 0;
}

int slm_gate_add_backend(slm_gate *g, const slm_gate_backend *backend, char *err, size_t err_len) {
    if (!backend || !backend->submit) return slm_err(err, err_len, "invalid gate backend");
    if (g->n_backends == SLM_GATE_MAX_BACKENDS)
        return slm_err(err, err_len, "too many gate backends (at most %d)", SLM_GATE_MAX_BACKENDS);
    g->backends[g->n_backends] = *backend;
    return g->n_backends++;
}

/* ---------- running a call ---------- */

bool slm_gate_refuse(slm_gate_call *call, int status, const char *code, const char *fmt, ...) {
    call->status = status;
    call->error_code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->error, sizeof call->error, fmt, ap);
    va_end(ap);
    return false;
}

void slm_gate_call_init(slm_gate_call *call, slm_call_kind kind, const char *front_end, const char *endpoint) {
    static atomic_ullong counter;
    memset(call, 0, sizeof *call);
    call->kind = kind;
    call->front_end = front_end ? front_end : "";
    call->endpoint = endpoint ? endpoint : "";
    call->client = "";
    call->model = "";
    call->t_start = slm_now();
    /* unique within the process and unlikely to repeat across restarts: time, pid-free counter */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    x ^= atomic_fetch_add(&counter, 1) * 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 31)) * 0xBF58476D1CE4E5B9ull;
    snprintf(call->request_id, sizeof call->request_id, "req_%016llx", (unsigned long long)(x ^ (x >> 29)));
}

static bool run_phase(slm_gate *g, slm_gate_phase phase, slm_gate_call *call) {
    for (int i = 0; i < g->n_stages[phase]; i++) {
        const slm_gate_stage *st = &g->stages[phase][i];
        if (!st->run(st->state, call)) {
            if (call->status == 0) slm_gate_refuse(call, 500, "gate_error", "stage '%s' refused the call", st->name);
            return false;
        }
    }
    return true;
}

bool slm_gate_admit(slm_gate *g, slm_gate_call *call) { return run_phase(g, SLM_PHASE_ADMIT, call); }

bool slm_gate_inspect(slm_gate *g, slm_gate_call *call) {
    call->inspected = true;
    return run_phase(g, SLM_PHASE_INPUT, call);
}

bool slm_gate_submit(slm_gate *g, slm_gate_call *call) {
    call->backend = 0;
    if (!call->inspected && !slm_gate_inspect(g, call)) return false;
    if (!run_phase(g, SLM_PHASE_ROUTE, call)) return false;
    if (call->backend < 0 || call->backend >= g->n_backends)
        return slm_gate_refuse(call, 500, "gate_error", "route chose backend %d, which does not exist", call->backend);
    const slm_gate_backend *b = &g->backends[call->backend];
    call->route = call->backend == 0 ? "local" : "upstream";
    return b->submit(b->state, call);
}

static int append(char **out, size_t *out_len, const char *s, size_t n) {
    char *grown = realloc(*out, *out_len + n + 1);
    if (!grown) return -1;
    memcpy(grown + *out_len, s, n);
    *out_len += n;
    grown[*out_len] = 0;
    *out = grown;
    return 0;
}

int slm_gate_output(slm_gate_call *call, const char *piece, size_t len, bool end, char **out, size_t *out_len) {
    if (!call->filter.feed) return append(out, out_len, piece ? piece : "", len);
    if (len && call->filter.feed(call->filter.state, piece, len, out, out_len) != 0) return -1;
    if (end && call->filter.flush && call->filter.flush(call->filter.state, out, out_len) != 0) return -1;
    if (!*out) return append(out, out_len, "", 0);
    return 0;
}

void slm_gate_cancel(slm_gate *g, slm_gate_call *call) {
    if (call->backend < 0 || call->backend >= g->n_backends) return;
    const slm_gate_backend *b = &g->backends[call->backend];
    if (b->cancel) b->cancel(b->state, call);
}

void slm_gate_finish(slm_gate *g, slm_gate_call *call) {
    if (call->finished) return;
    call->finished = true;
    call->t_end = slm_now();
    if (call->status == 0 || call->status < 400) run_phase(g, SLM_PHASE_OUTPUT, call);
    run_phase(g, SLM_PHASE_RECORD, call);
}

int slm_gate_run_task(slm_gate *g, const char *front_end, const char *endpoint, slm_call_task_fn fn, void *user,
                      char *err, size_t err_len) {
    slm_gate_call call;
    slm_gate_call_init(&call, SLM_CALL_TASK, front_end, endpoint);
    call.task = fn;
    call.task_user = user;
    int rc = -1;
    if (slm_gate_admit(g, &call) && slm_gate_submit(g, &call))
        rc = call.task_rc;
    else
        slm_err(err, err_len, "%s", call.error);
    slm_gate_finish(g, &call);
    return rc;
}
