/* Task endpoints on top of src/tasks: POST /v1/classify, /v1/extract, /v1/summarize.
 *
 * The tasks drive slm_decode themselves on a (context, sequence) they own for the whole task, so
 * they cannot share the scheduler's batched context. They run on a second, single-sequence context
 * created on first use, one task at a time (a mutex), with the same context size per slot. A task
 * is not interrupted by a client disconnect; its input is bounded instead. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/http.h"
#include "tasks/tasks.h"

#define TASK_MAX_INPUTS 64
#define TASK_MAX_LABELS 64
#define TASK_MAX_INPUT_BYTES (256u << 10)

static pthread_mutex_t task_mu = PTHREAD_MUTEX_INITIALIZER;
static slm_context *task_ctx; /* guarded by task_mu; freed with the process */
static atomic_int task_waiting;

/* Takes the task context (creating it on first use); false with a reply already sent. */
static bool task_enter(srv_conn *c) {
    srv_server *s = c->srv;
    if (atomic_load(&s->draining)) {
        srv_reply_error(c, 503, "shutting_down", NULL, "server is shutting down");
        return false;
    }
    if (atomic_fetch_add(&task_waiting, 1) >= (s->cfg.queue_size > 0 ? s->cfg.queue_size : 1)) {
        atomic_fetch_sub(&task_waiting, 1);
        srv_metrics_overload(&s->metrics);
        srv_reply_error(c, 503, "overloaded", NULL, "too many task requests waiting; retry shortly");
        return false;
    }
    pthread_mutex_lock(&task_mu);
    atomic_fetch_sub(&task_waiting, 1);
    if (!task_ctx) {
        slm_context_params cp = slm_context_default_params();
        cp.n_seq = 1;
        cp.n_ctx = s->n_ctx;
        cp.n_batch = s->n_batch;
        cp.n_threads = s->cfg.threads;
        char err[256];
        if (slm_context_new(s->model, &cp, &task_ctx, err, sizeof err) != 0) {
            task_ctx = NULL;
            pthread_mutex_unlock(&task_mu);
            srv_reply_error(c, 500, "engine_error", NULL, err);
            return false;
        }
    }
    return true;
}

static void task_leave(void) { pthread_mutex_unlock(&task_mu); }

void srv_tasks_free(void) {
    pthread_mutex_lock(&task_mu);
    if (task_ctx) slm_context_free(task_ctx);
    task_ctx = NULL;
    pthread_mutex_unlock(&task_mu);
}

/* Common fields: model, input (string; an array of strings where allowed), temperature, seed, max_tokens. */
static bool task_common(srv_conn *c, json_t *req, slm_task_params *tp, srv_fail *f, bool *model_ok) {
    srv_server *s = c->srv;
    const char *model = NULL;
    *model_ok = true;
    if (!srv_json_string(req, "model", &model, f)) return false;
    if (!srv_model_matches(s, model)) {
        *model_ok = false;
        srv_reply_model_not_found(c, model);
        return false;
    }
    memset(tp, 0, sizeof *tp);
    tp->seq = 0;
    tp->template_name = s->cfg.chat_template;
    double d;
    long long n;
    bool have;
    if (!srv_json_number(req, "temperature", 0, 2, &d, &have, f)) return false;
    if (have) tp->temperature = (float)d;
    if (!srv_json_int(req, "seed", 0, 1LL << 62, &n, &have, f)) return false;
    tp->seed = have ? (uint64_t)n : srv_random_seed(s);
    if (!srv_json_int(req, "max_tokens", 1, s->n_ctx, &n, &have, f)) return false;
    if (have) tp->max_tokens = (int)n;
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
    srv_server *s = c->srv;
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
    if (!task_enter(c)) {
        ret = MHD_YES;
        goto out;
    }
    for (size_t i = 0; i < n_inputs; i++) {
        char err[384];
        if (slm_task_classify(task_ctx, &tp, texts[i], labels, (int)n_labels, multi, probs, err, sizeof err) != 0) {
            task_leave();
            srv_failf(&f, 400, NULL, json_is_array(input) ? "input" : "input", "classification failed: %s", err);
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
    task_leave();
    ret = srv_reply_json(c, 200, json_pack("{s:s, s:s, s:b, s:O}", "object", "classification", "model", s->model_id,
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
    srv_server *s = c->srv;
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
    if (!task_enter(c)) {
        ret = MHD_YES;
        goto out;
    }
    char err[384];
    int rc = slm_task_extract(task_ctx, &tp, input, schema_text, &res, err, sizeof err);
    task_leave();
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
                         json_pack("{s:s, s:s, s:o, s:s, s:o}", "object", "extraction", "model", s->model_id, "data", obj,
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
    srv_server *s = c->srv;
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
    if (!task_enter(c)) {
        ret = MHD_YES;
        goto out;
    }
    char err[384];
    int rc = slm_task_summarize(task_ctx, &tp, input, (int)max_words, style, &res, err, sizeof err);
    task_leave();
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
    len = srv_utf8_sanitize(res.text ? res.text : "", len, clean);
    ret = srv_reply_json(c, 200,
                         json_pack("{s:s, s:s, s:s%, s:s, s:i, s:i, s:o}", "object", "summary", "model", s->model_id, "summary",
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
