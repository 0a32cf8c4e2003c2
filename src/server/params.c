/* Request fields that steer generation, for both wire formats: sampling, limits, stop strings,
 * logprobs and structured-output constraints. Every bad value is a 400 naming its field. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"
#include "api_lora.h"

#include "calls.h"
#include "replies.h"

static bool add_stop(slm_gen_params *p, const char *s, const char *field, srv_fail *f) {
    if (!*s) return srv_failf(f, 400, NULL, field, "'%s' entries must not be empty", field);
    if (strlen(s) > 256) return srv_failf(f, 400, NULL, field, "'%s' entries must be at most 256 bytes", field);
    if (p->n_stop >= SLM_MAX_STOP) return srv_failf(f, 400, NULL, field, "'%s' has more than %d entries", field, SLM_MAX_STOP);
    if (!(p->stop[p->n_stop] = strdup(s))) return srv_failf(f, 500, NULL, field, "out of memory");
    p->n_stop++;
    return true;
}

static bool parse_stop(json_t *v, const char *field, slm_gen_params *p, srv_fail *f) {
    if (!v || json_is_null(v)) return true;
    if (json_is_string(v)) return add_stop(p, json_string_value(v), field, f);
    if (!json_is_array(v)) return srv_failf(f, 400, NULL, field, "'%s' must be a string or an array of strings", field);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e)) return srv_failf(f, 400, NULL, field, "'%s' must contain only strings", field);
        if (!add_stop(p, json_string_value(e), field, f)) return false;
    }
    return true;
}

static bool parse_logit_bias(const srv_model *M, json_t *v, slm_gen_params *p, srv_fail *f) {
    if (!v || json_is_null(v)) return true;
    if (!json_is_object(v)) return srv_failf(f, 400, NULL, "logit_bias", "'logit_bias' must be an object of token id -> bias");
    size_t n = json_object_size(v);
    if (n > 1024) return srv_failf(f, 400, NULL, "logit_bias", "'logit_bias' has more than 1024 entries");
    if (n == 0) return true;
    p->logit_bias = calloc(n, sizeof *p->logit_bias);
    if (!p->logit_bias) return srv_failf(f, 500, NULL, "logit_bias", "out of memory");
    const char *key;
    json_t *val;
    int k = 0;
    json_object_foreach(v, key, val) {
        char *end;
        long id = strtol(key, &end, 10);
        if (!*key || *end || id < 0 || id >= M->n_vocab)
            return srv_failf(f, 400, NULL, "logit_bias", "'logit_bias' key '%.64s' is not a token id in [0, %d)", key, M->n_vocab);
        if (!json_is_number(val)) return srv_failf(f, 400, NULL, "logit_bias", "'logit_bias' values must be numbers");
        double b = json_number_value(val);
        if (b < -100 || b > 100) return srv_failf(f, 400, NULL, "logit_bias", "'logit_bias' values must be in [-100, 100]");
        p->logit_bias[k].token = (slm_token)id;
        p->logit_bias[k].bias = b <= -100 ? -INFINITY : (float)b;
        k++;
    }
    /* keys are distinct token ids (a JSON object, duplicates refused): banning as many as the
     * vocabulary holds leaves no token to sample */
    int banned = 0;
    for (int i = 0; i < k; i++) banned += isinf(p->logit_bias[i].bias) != 0;
    if (banned >= M->n_vocab)
        return srv_failf(f, 400, "no_token_possible", "logit_bias", "no token is possible: 'logit_bias' bans every token of the vocabulary");
    p->sampling.logit_bias = p->logit_bias;
    p->sampling.n_logit_bias = k;
    return true;
}

/* Fields that would change the output in ways this server does not implement: refuse them
 * rather than silently ignore them. */
static bool refuse_unsupported(json_t *req, srv_fail *f) {
    /* "tools" and "tool_choice" are read by tools.c; the legacy function-calling fields are not served */
    static const char *const non_empty_refused[] = {"functions", "function_call", "images", "suffix"};
    for (size_t i = 0; i < sizeof non_empty_refused / sizeof non_empty_refused[0]; i++) {
        json_t *v = json_object_get(req, non_empty_refused[i]);
        if (!v || json_is_null(v)) continue;
        bool empty = (json_is_array(v) && json_array_size(v) == 0) || (json_is_string(v) && !*json_string_value(v)) ||
                     (json_is_string(v) && strcmp(json_string_value(v), "none") == 0);
        if (!empty) return srv_failf(f, 400, "unsupported", non_empty_refused[i], "'%s' is not supported by this server", non_empty_refused[i]);
    }
    return true;
}

bool srv_parse_openai_sampling(srv_conn *c, const srv_model *M, json_t *req, bool chat, slm_gen_params *p, srv_fail *f) {
    srv_server *s = c->srv;
    slm_sampler_params *sp = &p->sampling;
    /* OpenAI's documented defaults: plain temperature-1 sampling over the whole distribution. */
    sp->temperature = 1.0f;
    sp->top_k = 0;
    sp->top_p = 1.0f;
    sp->min_p = 0.0f;
    sp->repeat_penalty = 1.0f;
    sp->penalty_last_n = 64;
    if (!refuse_unsupported(req, f)) return false;
    double d;
    long long n;
    bool have;
    if (!srv_json_number(req, "temperature", 0, 2, &d, &have, f)) return false;
    if (have) sp->temperature = (float)d;
    if (!srv_json_number(req, "top_p", 0, 1, &d, &have, f)) return false;
    if (have) sp->top_p = d <= 0 ? 1e-9f : (float)d;
    if (!srv_json_int(req, "top_k", -1, 1 << 20, &n, &have, f)) return false;
    if (have) sp->top_k = n < 0 ? 0 : (int)n;
    if (!srv_json_number(req, "min_p", 0, 1, &d, &have, f)) return false;
    if (have) sp->min_p = (float)d;
    if (!srv_json_number(req, "repeat_penalty", 1e-3, 100, &d, &have, f)) return false;
    if (have) sp->repeat_penalty = (float)d;
    if (!srv_json_number(req, "repetition_penalty", 1e-3, 100, &d, &have, f)) return false; /* vLLM spelling */
    if (have) sp->repeat_penalty = (float)d;
    if (!srv_json_int(req, "repeat_last_n", -1, 1 << 20, &n, &have, f)) return false;
    if (have) sp->penalty_last_n = (int)n;
    if (!srv_json_number(req, "presence_penalty", -2, 2, &d, &have, f)) return false;
    if (have) sp->presence_penalty = (float)d;
    if (!srv_json_number(req, "frequency_penalty", -2, 2, &d, &have, f)) return false;
    if (have) sp->frequency_penalty = (float)d;
    if (!srv_json_int(req, "seed", -(1LL << 62), 1LL << 62, &n, &have, f)) return false;
    sp->seed = have ? (uint64_t)n : srv_random_seed(s);

    p->max_tokens = 0;
    if (!srv_json_int(req, "max_tokens", 1, 1 << 24, &n, &have, f)) return false;
    if (have) p->max_tokens = (int)n;
    if (!srv_json_int(req, "max_completion_tokens", 1, 1 << 24, &n, &have, f)) return false;
    if (have) p->max_tokens = (int)n;
    if (!srv_json_int(req, "n_predict", -1, 1 << 24, &n, &have, f)) return false; /* llama.cpp spelling */
    if (have && n > 0) p->max_tokens = (int)n;
    if (!srv_json_int(req, "min_tokens", 0, 1 << 24, &n, &have, f)) return false;
    if (have) p->min_tokens = (int)n;
    if (!srv_json_bool(req, "ignore_eos", &p->ignore_eos, f)) return false;
    if (!parse_stop(json_object_get(req, "stop"), "stop", p, f)) return false;
    if (!parse_logit_bias(M, json_object_get(req, "logit_bias"), p, f)) return false;
    if (!srv_lora_parse(c, M, json_object_get(req, "lora"), f)) return false; /* llama-server's per-request adapters */

    if (!srv_json_int(req, "best_of", 1, 1, &n, &have, f)) return srv_failf(f, 400, NULL, "best_of", "'best_of' must be 1");
    if (chat) {
        bool lp = false;
        if (!srv_json_bool(req, "logprobs", &lp, f)) return false;
        if (!srv_json_int(req, "top_logprobs", 0, SLM_MAX_TOP_LOGPROBS, &n, &have, f)) return false;
        if (have && !lp) return srv_failf(f, 400, NULL, "top_logprobs", "'top_logprobs' requires 'logprobs': true");
        p->logprobs = lp;
        p->top_logprobs = have ? (int)n : 0;
    } else {
        if (!srv_json_int(req, "logprobs", 0, 5, &n, &have, f)) return false;
        p->logprobs = have;
        p->top_logprobs = have ? (int)n : 0;
        bool echo = false;
        if (!srv_json_bool(req, "echo", &echo, f)) return false;
        if (echo) return srv_failf(f, 400, "unsupported", "echo", "'echo' is not supported by this server");
    }
    return srv_parse_constraint(c, M, req, SRV_API_OPENAI, p, f);
}

bool srv_parse_choices(const srv_model *M, json_t *req, int *n_out, srv_fail *f) {
    /* generated together: no more than the model has sequences to run them side by side */
    int most = M->n_seq < SRV_MAX_CHOICES ? M->n_seq : SRV_MAX_CHOICES;
    if (most < 1) most = 1;
    long long n = 1;
    bool have;
    if (!srv_json_int(req, "n", 1, most, &n, &have, f))
        return srv_failf(f, 400, NULL, "n", "'n' must be an integer from 1 to %d (the choices are generated together, one per sequence slot)", most);
    *n_out = (int)n;
    return true;
}

bool srv_parse_ollama_options(srv_conn *c, const srv_model *M, json_t *req, slm_gen_params *p, srv_fail *f) {
    srv_server *s = c->srv;
    slm_sampler_params *sp = &p->sampling;
    /* Ollama's defaults. */
    sp->temperature = 0.8f;
    sp->top_k = 40;
    sp->top_p = 0.9f;
    sp->min_p = 0.0f;
    sp->repeat_penalty = 1.1f;
    sp->penalty_last_n = 64;
    sp->seed = srv_random_seed(s);
    if (!refuse_unsupported(req, f)) return false;
    json_t *o = json_object_get(req, "options");
    json_t *merged = NULL; /* the model's stored parameters, then the request's options over them */
    if (M->params && (!o || json_is_null(o) || json_is_object(o))) {
        merged = json_deep_copy(M->params);
        if (merged && json_is_object(o)) json_object_update(merged, o);
        if (merged) {
            json_object_set_new(req, "options", merged); /* req owns it now; o was replaced */
            o = merged;
        }
    }
    if (o && !json_is_null(o)) {
        if (!json_is_object(o)) return srv_failf(f, 400, NULL, "options", "'options' must be an object");
        double d;
        long long n;
        bool have;
        /* field names inside options are reported as options.<name> */
        srv_fail inner = {0};
#define OPT(call)                                                                                \
    do {                                                                                         \
        if (!(call)) {                                                                           \
            char param[128];                                                                     \
            snprintf(param, sizeof param, "options.%.80s", inner.param);                         \
            return srv_failf(f, inner.status, inner.code, param, "options: %s", inner.msg);      \
        }                                                                                        \
    } while (0)
        OPT(srv_json_number(o, "temperature", 0, 100, &d, &have, &inner));
        if (have) sp->temperature = (float)d;
        OPT(srv_json_int(o, "top_k", 0, 1 << 20, &n, &have, &inner));
        if (have) sp->top_k = (int)n;
        OPT(srv_json_number(o, "top_p", 0, 1, &d, &have, &inner));
        if (have) sp->top_p = d <= 0 ? 1e-9f : (float)d;
        OPT(srv_json_number(o, "min_p", 0, 1, &d, &have, &inner));
        if (have) sp->min_p = (float)d;
        OPT(srv_json_number(o, "repeat_penalty", 1e-3, 100, &d, &have, &inner));
        if (have) sp->repeat_penalty = (float)d;
        OPT(srv_json_int(o, "repeat_last_n", -1, 1 << 20, &n, &have, &inner));
        if (have) sp->penalty_last_n = n == 0 ? 1 : (int)n;
        if (have && n == 0) sp->repeat_penalty = 1.0f; /* Ollama: 0 disables the window */
        OPT(srv_json_number(o, "presence_penalty", -100, 100, &d, &have, &inner));
        if (have) sp->presence_penalty = (float)d;
        OPT(srv_json_number(o, "frequency_penalty", -100, 100, &d, &have, &inner));
        if (have) sp->frequency_penalty = (float)d;
        OPT(srv_json_int(o, "seed", -(1LL << 62), 1LL << 62, &n, &have, &inner));
        if (have && n >= 0) sp->seed = (uint64_t)n; /* Ollama: a negative seed means random */
        OPT(srv_json_int(o, "num_predict", -2, 1 << 24, &n, &have, &inner));
        if (have && n > 0) p->max_tokens = (int)n;
        if (have && n == 0) return srv_failf(f, 400, NULL, "options.num_predict", "options: 'num_predict' must not be 0");
        OPT(srv_json_int(o, "num_ctx", 1, 1 << 24, &n, &have, &inner));
        OPT(srv_json_int(o, "mirostat", 0, 0, &n, &have, &inner));
        json_t *stop = json_object_get(o, "stop");
        if (!parse_stop(stop, "options.stop", p, f)) return false;
#undef OPT
    }
    return srv_parse_constraint(c, M, req, SRV_API_OLLAMA, p, f);
}

#define SRV_CONSTRAINT_SECONDS 5.0

/* Compiling stops when the client hangs up or the server drains. */
static bool constraint_cancel(void *user) {
    srv_conn *c = user;
    return atomic_load(&c->srv->draining) || srv_conn_gone(c);
}

/* Structured output, compiled within limits: at most SRV_CONSTRAINT_SECONDS (or the request's time
 * limit if smaller), cancelled when the client leaves or the server drains. */
bool srv_parse_constraint(srv_conn *c, const srv_model *M, json_t *req, srv_api api, slm_gen_params *p, srv_fail *f) {
    const char *schema_text = NULL, *gbnf = NULL, *field = NULL;
    char *schema_owned = NULL;
    if (api == SRV_API_OLLAMA) {
        json_t *fmt = json_object_get(req, "format");
        if (fmt && !json_is_null(fmt) && !(json_is_string(fmt) && !*json_string_value(fmt))) {
            field = "format";
            if (json_is_string(fmt) && strcmp(json_string_value(fmt), "json") == 0)
                schema_text = "{\"type\":\"object\"}";
            else if (json_is_object(fmt))
                schema_text = schema_owned = json_dumps(fmt, JSON_COMPACT);
            else
                return srv_failf(f, 400, NULL, "format", "'format' must be \"json\" or a JSON schema object");
        }
    } else {
        json_t *rf = json_object_get(req, "response_format");
        if (rf && !json_is_null(rf)) {
            field = "response_format";
            json_t *type = json_object_get(rf, "type");
            const char *t = json_is_string(type) ? json_string_value(type) : NULL;
            if (!json_is_object(rf) || !t)
                return srv_failf(f, 400, NULL, "response_format", "'response_format' must be an object with a 'type'");
            if (strcmp(t, "text") == 0) {
                field = NULL;
            } else if (strcmp(t, "json_object") == 0) {
                schema_text = "{\"type\":\"object\"}";
            } else if (strcmp(t, "json_schema") == 0) {
                json_t *js = json_object_get(rf, "json_schema");
                json_t *schema = json_is_object(js) ? json_object_get(js, "schema") : NULL;
                if (!json_is_object(schema))
                    return srv_failf(f, 400, NULL, "response_format.json_schema.schema",
                                     "'response_format.json_schema.schema' must be a JSON schema object");
                schema_text = schema_owned = json_dumps(schema, JSON_COMPACT);
            } else {
                return srv_failf(f, 400, NULL, "response_format.type",
                                 "'response_format.type' must be text, json_object or json_schema");
            }
        }
        json_t *g = json_object_get(req, "grammar");
        if (g && !json_is_null(g)) {
            if (!json_is_string(g)) return srv_failf(f, 400, NULL, "grammar", "'grammar' must be a GBNF string");
            if (field) {
                free(schema_owned);
                return srv_failf(f, 400, NULL, "grammar", "give only one of 'grammar' and 'response_format'");
            }
            field = "grammar";
            gbnf = json_string_value(g);
        }
        json_t *js = json_object_get(req, "json_schema"); /* llama.cpp extension */
        if (js && !json_is_null(js)) {
            if (field) {
                free(schema_owned);
                return srv_failf(f, 400, NULL, "json_schema", "give only one of 'json_schema', 'grammar' and 'response_format'");
            }
            if (!json_is_object(js)) return srv_failf(f, 400, NULL, "json_schema", "'json_schema' must be an object");
            field = "json_schema";
            schema_text = schema_owned = json_dumps(js, JSON_COMPACT);
        }
    }
    if (!field) return true;
    if (!schema_text && !gbnf) return srv_failf(f, 500, NULL, field, "out of memory");
    char err[384];
    double budget = SRV_CONSTRAINT_SECONDS;
    if (c->srv->cfg.request_timeout_s > 0 && c->srv->cfg.request_timeout_s < budget) budget = c->srv->cfg.request_timeout_s;
    slm_grammar_limits lim = {0}; /* zero sizes: the defaults */
    lim.deadline = slm_grammar_now() + budget;
    lim.cancel = constraint_cancel;
    lim.cancel_user = c;
    int rc = gbnf ? slm_grammar_compile_limited(M->model, gbnf, &lim, &p->grammar, err, sizeof err)
                  : slm_grammar_from_json_schema_limited(M->model, schema_text, &lim, &p->grammar, err, sizeof err);
    free(schema_owned);
    if (rc == 0) return true;
    p->grammar = NULL;
    if (rc == SLM_GRAMMAR_CANCELLED) {
        if (atomic_load(&c->srv->draining)) return srv_failf(f, 503, "shutting_down", NULL, "server is shutting down");
        return srv_failf(f, SRV_STATUS_GONE, NULL, field, "client gone while compiling '%s'", field);
    }
    if (rc == SLM_GRAMMAR_TOO_LARGE)
        return srv_failf(f, 400, "constraint_too_large", field, "'%s' is too large to compile: %s", field, err);
    return srv_failf(f, 400, "invalid_constraint", field, "'%s': %s", field, err);
}
