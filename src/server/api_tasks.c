/* Task endpoints: POST /v1/classify, /v1/extract, /v1/summarize. The tasks submit ordinary requests
 * to the engine (see slm_engine.h), so they batch with chat traffic, queue like any request, and
 * are cancelled when the client disconnects or the server shuts down. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calls.h"
#include "handlers.h"
#include "replies.h"

#define TASK_MAX_INPUTS 64
#define TASK_MAX_LABELS 64
#define TASK_MAX_INPUT_BYTES (256u << 10)

static bool task_should_cancel(void *user) {
    srv_conn *c = user;
    return atomic_load(&c->srv->draining) || srv_conn_gone(c);
}

/* Common fields: model, temperature, seed, max_tokens; picks the model (404 replied if unknown). */
static bool task_common(srv_conn *c, json_t *req, slm_task_params *tp, srv_fail *f, bool *model_ok) {
    srv_server *s = c->srv;
    const char *model = NULL;
    *model_ok = true;
    if (!srv_json_string(req, "model", &model, f)) return false;
    const srv_model *M = srv_pick_generative(c, model);
    if (!M) {
        *model_ok = false;
        return false;
    }
    memset(tp, 0, sizeof *tp);
    tp->model = M->id;
    tp->template_name = c->srv->cfg.chat_template; /* as the CLI verbs: the model's own template, else a plain prompt */
    tp->deadline = slm_now() + s->cfg.request_timeout_s;
    tp->should_cancel = task_should_cancel;
    tp->cancel_user = c;
    double d;
    long long n;
    bool have;
    if (!srv_json_number(req, "temperature", 0, 2, &d, &have, f)) return false;
    if (have) tp->temperature = (float)d;
    if (!srv_json_int(req, "seed", 0, 1LL << 62, &n, &have, f)) return false;
    tp->seed = have ? (uint64_t)n : srv_random_seed(s);
    if (!srv_json_int(req, "max_tokens", 1, M->n_ctx, &n, &have, f)) return false;
    if (have) tp->max_tokens = (int)n;
    return true;
}

/* A task the engine did not run to the end: 503 (full or shutting down), 504 (time limit), or
 * nothing at all for a client that is gone. */
static enum MHD_Result reply_refused(srv_conn *c, const slm_task_result *res) {
    if (res->refused_why == SLM_FINISH_TIMEOUT)
        return srv_reply_error(c, 504, "timeout", NULL, "request exceeded the server's time limit");
    if (res->refused_why == SLM_FINISH_CANCELLED && !atomic_load(&c->srv->draining)) return MHD_NO;
    if (atomic_load(&c->srv->draining)) return srv_reply_error(c, 503, "shutting_down", NULL, "server is shutting down");
    srv_metrics_overload(&c->srv->metrics);
    return srv_reply_error(c, 503, "overloaded", NULL, "server is at capacity (all slots busy and the queue is full); retry shortly");
}

/* The task calls the local backend runs (through the gate); results go back through the struct. */
typedef struct task_job {
    slm_task_params tp;
    const char *input;
    const char *const *labels; /* classify */
    int n_labels;
    bool multi;
    double *probs;
    const char *schema;        /* extract */
    int max_words;             /* summarize */
    const char *style;
    slm_task_result res;
    char err[384];
} task_job;

static int run_classify(slm_engine *e, slm_gate_call *call, void *user) {
    (void)call;
    task_job *j = user;
    return slm_task_classify(e, &j->tp, j->input, j->labels, j->n_labels, j->multi, j->probs, &j->res, j->err, sizeof j->err);
}

static int run_extract(slm_engine *e, slm_gate_call *call, void *user) {
    (void)call;
    task_job *j = user;
    return slm_task_extract(e, &j->tp, j->input, j->schema, &j->res, j->err, sizeof j->err);
}

static int run_summarize(slm_engine *e, slm_gate_call *call, void *user) {
    (void)call;
    task_job *j = user;
    return slm_task_summarize(e, &j->tp, j->input, j->max_words, j->style, &j->res, j->err, sizeof j->err);
}

/* Runs a task call through the gate; false when refused (the reply is sent). */
static bool run_task(srv_conn *c, slm_call_task_fn fn, task_job *j, int *rc) {
    if (!srv_submit_task(c, fn, j)) return false;
    *rc = c->call.task_rc;
    c->call.prompt_tokens += j->res.n_prompt;
    c->call.completion_tokens += j->res.n_generated;
    return true;
}

static bool input_string(json_t *v, const char *field, const char **out, srv_fail *f) {
    if (!json_is_string(v)) return srv_failf(f, 400, NULL, field, "'%s' must be a string", field);
    if (json_string_length(v) == 0) return srv_failf(f, 400, NULL, field, "'%s' is empty", field);
    if (json_string_length(v) > TASK_MAX_INPUT_BYTES)
        return srv_failf(f, 413, NULL, field, "'%s' is longer than %u bytes", field, TASK_MAX_INPUT_BYTES);
    *out = json_string_value(v);
    return true;
}

static json_t *usage_json(const slm_task_result *r) {
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", r->n_prompt, "completion_tokens", r->n_generated, "total_tokens",
                     r->n_prompt + r->n_generated);
}

enum MHD_Result srv_task_classify(srv_conn *c) {
    srv_fail f = {0};
    json_t *req = srv_parse_body(c, &f);
    if (!req) return srv_reply_fail(c, &f);
    enum MHD_Result ret;
    slm_task_params tp;
    bool model_ok, multi = false;
    const char *labels[TASK_MAX_LABELS];
    double *probs = NULL;
    json_t *data = NULL;
    if (!task_common(c, req, &tp, &f, &model_ok)) goto fail;
    if (!srv_json_bool(req, "multi_label", &multi, &f)) goto fail;
    json_t *jl = json_object_get(req, "labels");
    size_t n_labels = json_is_array(jl) ? json_array_size(jl) : 0;
    if (n_labels < 1 || n_labels > TASK_MAX_LABELS) {
        srv_failf(&f, 400, NULL, "labels", "'labels' must be an array of 1 to %d strings", TASK_MAX_LABELS);
        goto fail;
    }
    for (size_t i = 0; i < n_labels; i++) {
        json_t *l = json_array_get(jl, i);
        if (!json_is_string(l) || !*json_string_value(l)) {
            srv_failf(&f, 400, NULL, "labels", "'labels[%zu]' must be a non-empty string", i);
            goto fail;
        }
        labels[i] = json_string_value(l);
        for (size_t k = 0; k < i; k++)
            if (strcmp(labels[k], labels[i]) == 0) {
                srv_failf(&f, 400, NULL, "labels", "'labels' has '%.64s' twice", labels[i]);
                goto fail;
            }
    }
    json_t *input = json_object_get(req, "input");
    size_t n_inputs = json_is_array(input) ? json_array_size(input) : 1;
    if (!input || n_inputs < 1 || n_inputs > TASK_MAX_INPUTS) {
        srv_failf(&f, 400, NULL, "input", "'input' must be a string or an array of 1 to %d strings", TASK_MAX_INPUTS);
        goto fail;
    }
    const char *texts[TASK_MAX_INPUTS];
    for (size_t i = 0; i < n_inputs; i++) {
        char field[32];
        snprintf(field, sizeof field, json_is_array(input) ? "input[%zu]" : "input", i);
        if (!input_string(json_is_array(input) ? json_array_get(input, i) : input, field, &texts[i], &f)) goto fail;
    }
    probs = calloc(n_labels, sizeof *probs);
    data = json_array();
    if (!probs || !data) {
        srv_failf(&f, 500, NULL, NULL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n_inputs; i++) {
        task_job j = {.tp = tp, .input = texts[i], .labels = labels, .n_labels = (int)n_labels, .multi = multi, .probs = probs};
        int rc;
        if (!run_task(c, run_classify, &j, &rc)) {
            ret = MHD_YES;
            goto out;
        }
        if (rc == SLM_TASK_REFUSED) {
            ret = reply_refused(c, &j.res);
            goto out;
        }
        if (rc != 0) {
            srv_failf(&f, 400, NULL, "input", "classification failed: %s", j.err);
            goto fail;
        }
        size_t best = 0;
        json_t *scores = json_array();
        for (size_t k = 0; k < n_labels; k++) {
            if (probs[k] > probs[best]) best = k;
            json_array_append_new(scores, json_pack("{s:s, s:f}", "label", labels[k], "score", probs[k]));
        }
        json_array_append_new(data, json_pack("{s:i, s:s, s:o}", "index", (int)i, "label", labels[best], "scores", scores));
    }
    ret = srv_reply_json(c, 200, json_pack("{s:s, s:s, s:b, s:O}", "object", "classification", "model", c->model->id,
                                           "multi_label", multi, "data", data));
    goto out;
fail:
    ret = model_ok ? srv_reply_fail(c, &f) : MHD_YES;
out:
    json_decref(data);
    free(probs);
    json_decref(req);
    return ret;
}

enum MHD_Result srv_task_extract(srv_conn *c) {
    srv_fail f = {0};
    json_t *req = srv_parse_body(c, &f);
    if (!req) return srv_reply_fail(c, &f);
    enum MHD_Result ret;
    slm_task_params tp;
    bool model_ok;
    char *schema_text = NULL;
    const char *input;
    slm_task_result res = {0};
    if (!task_common(c, req, &tp, &f, &model_ok)) goto fail;
    if (!input_string(json_object_get(req, "input"), "input", &input, &f)) goto fail;
    json_t *schema = json_object_get(req, "schema");
    if (!json_is_object(schema)) {
        srv_failf(&f, 400, NULL, "schema", "'schema' must be a JSON Schema object");
        goto fail;
    }
    schema_text = json_dumps(schema, JSON_COMPACT);
    if (!schema_text) {
        srv_failf(&f, 500, NULL, NULL, "out of memory");
        goto fail;
    }
    task_job j = {.tp = tp, .input = input, .schema = schema_text};
    int rc;
    if (!run_task(c, run_extract, &j, &rc)) {
        ret = MHD_YES;
        goto out;
    }
    res = j.res;
    const char *err = j.err;
    if (rc == SLM_TASK_REFUSED) {
        ret = reply_refused(c, &res);
        goto out;
    }
    if (rc == SLM_TASK_INCOMPLETE) {
        ret = srv_reply_error(c, 422, "incomplete_output", "max_tokens",
                              "the output reached max_tokens or the context end before the JSON was complete");
        goto out;
    }
    if (rc != 0) {
        srv_failf(&f, 400, NULL, "schema", "extraction failed: %s", err);
        goto fail;
    }
    json_error_t je;
    json_t *obj = json_loads(res.text, 0, &je);
    if (!obj) { /* the task validated it; failing here would be an engine bug, not the client's */
        ret = srv_reply_error(c, 500, "engine_error", NULL, "extracted text is not JSON");
        goto out;
    }
    ret = srv_reply_json(c, 200,
                         json_pack("{s:s, s:s, s:o, s:s, s:o}", "object", "extraction", "model", c->model->id, "data", obj,
                                   "finish_reason", res.finish_reason ? res.finish_reason : "stop", "usage", usage_json(&res)));
    goto out;
fail:
    ret = model_ok ? srv_reply_fail(c, &f) : MHD_YES;
out:
    slm_task_result_free(&res);
    free(schema_text);
    json_decref(req);
    return ret;
}

enum MHD_Result srv_task_summarize(srv_conn *c) {
    srv_fail f = {0};
    json_t *req = srv_parse_body(c, &f);
    if (!req) return srv_reply_fail(c, &f);
    enum MHD_Result ret;
    slm_task_params tp;
    bool model_ok, have;
    const char *input, *style = NULL;
    long long max_words = 0;
    slm_task_result res = {0};
    if (!task_common(c, req, &tp, &f, &model_ok)) goto fail;
    if (!input_string(json_object_get(req, "input"), "input", &input, &f)) goto fail;
    if (!srv_json_string(req, "style", &style, &f) || !srv_json_int(req, "max_words", 1, 2000, &max_words, &have, &f))
        goto fail;
    task_job j = {.tp = tp, .input = input, .max_words = (int)max_words, .style = style};
    int rc;
    if (!run_task(c, run_summarize, &j, &rc)) {
        ret = MHD_YES;
        goto out;
    }
    res = j.res;
    const char *err = j.err;
    if (rc == SLM_TASK_REFUSED) {
        ret = reply_refused(c, &res);
        goto out;
    }
    if (rc != 0) {
        srv_failf(&f, 400, NULL, "input", "summarization failed: %s", err);
        goto fail;
    }
    size_t len = res.text ? strlen(res.text) : 0;
    char *clean = malloc(3 * len + 1);
    if (!clean) {
        srv_failf(&f, 500, NULL, NULL, "out of memory");
        goto fail;
    }
    len = slm_utf8_sanitize(res.text ? res.text : "", len, clean);
    ret = srv_reply_json(c, 200,
                         json_pack("{s:s, s:s, s:s%, s:s, s:i, s:i, s:o}", "object", "summary", "model", c->model->id, "summary",
                                   clean, len, "finish_reason", res.finish_reason ? res.finish_reason : "stop",
                                   "chunks", res.n_chunks, "rounds", res.n_rounds, "usage", usage_json(&res)));
    free(clean);
    goto out;
fail:
    ret = model_ok ? srv_reply_fail(c, &f) : MHD_YES;
out:
    slm_task_result_free(&res);
    json_decref(req);
    return ret;
}
