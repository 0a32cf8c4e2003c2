/* From a parsed request to a gate call: the model it names, its tokens, submission through the
 * gate (and the reply when the gate refuses). */
#include "calls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_lora.h"
#include "messages.h"
#include "ondemand.h"
#include "replies.h"
#include "setup.h"
#include "slm_route.h"

const srv_model *srv_pick_model(srv_conn *c, const char *name) {
    srv_server *s = c->srv;
    srv_lora_forget(); /* a new request: no adapters chosen yet */
    const slm_route_target *t = name && *name && slm_engine_find(s->engine, name) < 0 ? srv_find_target(s, name) : NULL;
    const char *local = name;
    if (t) {
        /* a route or an upstream: the local model tokenizes (limits, usage) and serves what stays */
        c->target = t->name;
        local = t->is_route ? t->local_name : s->models[0].id;
        for (int i = 0; !t->is_route && i < s->n_models; i++)
            if (!slm_model_is_embedding(s->models[i].model)) {
                local = s->models[i].id;
                break;
            }
    }
    bool not_found = false;
    const srv_model *M = srv_hold_model(c, local, &not_found);
    if (M) return c->model = M;
    if (!not_found) return NULL; /* replied: too large, busy, failed to load */
    int k = t ? -1 : srv_lora_pick_name(c, name); /* "base:adapter" (vLLM) */
    if (k == -2) return NULL;
    if (k >= 0 && k < s->n_models) return c->model = &s->models[k];
    char list[300] = "";
    for (int i = 0; i < s->n_models; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s'%.100s'", i ? ", " : "", s->models[i].id);
    char msg[700];
    snprintf(msg, sizeof msg, "model '%.200s' %s; this server serves %s%s", name ? name : "",
             c->api == SRV_API_OLLAMA ? "not found" : "does not exist", list,
             s->store ? " and the models in its store (slm list)" : "");
    srv_reply_error(c, 404, "model_not_found", "model", msg);
    return NULL;
}

const srv_model *srv_pick_generative(srv_conn *c, const char *name) {
    const srv_model *M = srv_pick_model(c, name);
    if (M && slm_model_is_embedding(M->model)) {
        char msg[400];
        snprintf(msg, sizeof msg, "model '%.200s' is an embedding model: it has no logits to generate from (use %s)", M->id,
                 c->api == SRV_API_OLLAMA ? "/api/embed" : "/v1/embeddings");
        srv_reply_error(c, 400, "model_not_generative", "model", msg);
        return NULL;
    }
    return M;
}

static bool too_long(const srv_model *s, const char *field, int n, int limit, srv_fail *f) {
    return srv_failf(f, 400, "context_length_exceeded", field,
                     "'%s' has %d tokens but this server allows at most %d (context per slot is %d; "
                     "prompts are never truncated)",
                     field, n, limit, s->n_ctx);
}

bool srv_tokenize(const srv_model *s, const char *text, bool add_special, bool parse_special, const char *field, int limit,
                  slm_token **out, int *n_out, srv_fail *f) {
    size_t len = strlen(text);
    /* A token is at least one byte, plus BOS/EOS: this bound always suffices. */
    size_t cap = len + 8;
    if (cap > (size_t)1 << 26) return srv_failf(f, 413, NULL, field, "'%s' is too long", field);
    slm_token *toks = malloc(cap * sizeof *toks);
    if (!toks) return srv_failf(f, 500, NULL, field, "out of memory");
    char err[256];
    int n = slm_tokenize(s->model, text, len, add_special, parse_special, toks, (int)cap, err, sizeof err);
    if (n < 0) {
        free(toks);
        return srv_failf(f, 400, NULL, field, "'%s' cannot be tokenized: %s", field, n < -(int)cap ? "too long" : err);
    }
    if (n > limit) {
        free(toks);
        return too_long(s, field, n, limit, f);
    }
    *out = toks;
    *n_out = n;
    return true;
}

bool srv_chat_tokenize(const srv_model *s, const slm_chat_message *msgs, size_t n, bool add_special, const char *field,
                       int limit, slm_token **out, int *n_out, srv_fail *f) {
    char err[256];
    slm_token *ids = NULL;
    int n_ids = 0;
    if (slm_chat_tokenize(s->model, s->template_name[0] ? s->template_name : NULL, msgs, n, true, add_special, &ids,
                          &n_ids, NULL, err, sizeof err) != 0)
        return srv_failf(f, 400, NULL, field, "cannot render the chat template: %s", err);
    if (n_ids > limit) {
        free(ids);
        return too_long(s, field, n_ids, limit, f);
    }
    *out = ids;
    *n_out = n_ids;
    return true;
}

void srv_usage(const srv_server *s, const slm_request *r, int *prompt_tokens, int *completion_tokens) {
    *prompt_tokens = r->kind == SLM_REQ_EMBED ? r->n_embed_tokens
                     : r->remote_prompt_tokens > 0 ? r->remote_prompt_tokens
                                                   : r->n_prompt;
    *completion_tokens = r->remote_completion_tokens > 0 ? r->remote_completion_tokens : r->n_tokens;
    if (*completion_tokens == 0 && r->text_len > 0 && r->kind == SLM_REQ_GENERATE) {
        /* text from an upstream that sent no usage: count it with the local tokenizer */
        int k = slm_engine_find(s->engine, r->model);
        const slm_model *m = k >= 0 && k < s->n_models ? s->models[k].model : NULL;
        if (m) {
            int n = slm_tokenize(m, r->text, r->text_len, false, false, NULL, 0, NULL, 0);
            *completion_tokens = n == SLM_TOKENIZE_ERROR ? 0 : n < 0 ? -n : n;
        }
    }
}

bool srv_embed_run(srv_conn *c, const srv_model *M, json_t *input, const char *field, bool allow_tokens,
                   slm_request **out, srv_fail *f, enum MHD_Result *ret) {
    *out = NULL;
    json_t *guarded = NULL; /* the inputs after the personal-data policy */
    if (!srv_inspect_inputs(c, input, &guarded)) {
        *ret = MHD_YES;
        return false;
    }
    bool built = srv_build_embed_request(M, guarded, field, allow_tokens, out, f);
    json_decref(guarded);
    if (!built) return false;
    if (!srv_submit(c, *out)) {
        *ret = MHD_YES;
        return false;
    }
    if (!srv_wait_done(c, *out)) {
        *ret = MHD_NO;
        return false;
    }
    if ((*out)->finish != SLM_FINISH_STOP) {
        *ret = srv_reply_finish_error(c, *out);
        return false;
    }
    return true;
}

uint64_t srv_random_seed(srv_server *s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (atomic_fetch_add(&s->id_counter, 1) << 17);
    /* splitmix64 finaliser */
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

void srv_new_id(srv_server *s, const char *prefix, char *out, size_t cap) {
    snprintf(out, cap, "%s-%016llx", prefix, (unsigned long long)srv_random_seed(s));
}

static bool gate_submit(srv_conn *c) {
    srv_server *s = c->srv;
    if (atomic_load(&s->draining)) {
        srv_reply_error(c, 503, "shutting_down", NULL, "server is shutting down");
        return false;
    }
    if (!c->call.inspected) c->call.model = c->target ? c->target : c->model ? c->model->id : "";
    if (slm_gate_submit(s->gate, &c->call)) return true;
    srv_reply_refused(c);
    return false;
}

bool srv_inspect(srv_conn *c, slm_chat_message *msgs, size_t n, const char *prompt, bool stream) {
    srv_server *s = c->srv;
    c->call.model = c->target ? c->target : c->model ? c->model->id : "";
    c->call.messages = msgs;
    c->call.n_messages = n;
    c->call.prompt = prompt;
    c->call.stream = stream;
    if (slm_gate_inspect(s->gate, &c->call)) return true;
    srv_reply_refused(c);
    return false;
}

bool srv_inspect_inputs(srv_conn *c, json_t *inputs, json_t **out) {
    *out = NULL;
    bool single = json_is_string(inputs);
    size_t n = single ? 1 : json_is_array(inputs) ? json_array_size(inputs) : 0;
    slm_chat_message *msgs = calloc(n ? n : 1, sizeof *msgs);
    if (!msgs) {
        srv_reply_error(c, 500, NULL, NULL, "out of memory");
        return false;
    }
    size_t n_texts = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *e = single ? inputs : json_array_get(inputs, i);
        msgs[i] = (slm_chat_message){"user", json_is_string(e) ? json_string_value(e) : NULL};
        n_texts += msgs[i].content != NULL;
    }
    bool ok = true, changed = false;
    if (n_texts > 0) {
        /* token-id inputs carry no text to scan: they stay as they are */
        slm_chat_message *texts = calloc(n_texts, sizeof *texts);
        size_t k = 0;
        for (size_t i = 0; texts && i < n; i++)
            if (msgs[i].content) texts[k++] = msgs[i];
        if (!texts) {
            srv_reply_error(c, 500, NULL, NULL, "out of memory");
            free(msgs);
            return false;
        }
        ok = srv_inspect(c, texts, n_texts, NULL, false);
        k = 0;
        for (size_t i = 0; ok && i < n; i++)
            if (msgs[i].content) {
                changed |= texts[k].content != msgs[i].content;
                msgs[i].content = texts[k++].content;
            }
        if (ok && changed) {
            *out = single ? json_string(msgs[0].content) : json_array();
            for (size_t i = 0; !single && *out && i < n; i++)
                json_array_append_new(*out, msgs[i].content ? json_string(msgs[i].content) : json_deep_copy(json_array_get(inputs, i)));
        }
        /* the inputs are not kept for the audit record (the masked copies are the gate's until the call ends) */
        srv_forget_texts(c);
        free(texts);
    }
    free(msgs);
    if (ok && !*out) *out = json_incref(inputs);
    if (ok && !*out) {
        srv_reply_error(c, 500, NULL, NULL, "out of memory");
        return false;
    }
    return ok;
}

int srv_prompt_limit(const srv_conn *c, const srv_model *M) {
    const slm_route_target *t = c->target ? srv_find_target(c->srv, c->target) : NULL;
    if (t && t->upstream_backend >= 0) return 1 << 22;
    return M->n_ctx - 1;
}

void srv_mark_prompt(srv_conn *c, const srv_model *M, int n_prompt) {
    c->call.exceeds_local = n_prompt > M->n_ctx - 1;
}

void srv_forget_texts(srv_conn *c) {
    c->call.messages = NULL;
    c->call.n_messages = 0;
    c->call.prompt = NULL;
}

char *srv_final_text(srv_conn *c, slm_request *r, size_t *len) {
    char *out = NULL;
    *len = 0;
    pthread_mutex_lock(&r->mu);
    int rc = slm_gate_output(&c->call, r->text ? r->text : "", r->text_len, true, &out, len);
    pthread_mutex_unlock(&r->mu);
    if (rc != 0) {
        free(out);
        return NULL;
    }
    return out;
}

bool srv_submit(srv_conn *c, slm_request *r) {
    srv_server *s = c->srv;
    r->t_submit = slm_now();
    r->deadline = r->t_submit + s->cfg.request_timeout_s;
    if (c->model) snprintf(r->model, sizeof r->model, "%s", c->model->id);
    if (!srv_lora_attach(c, r)) return false; /* the adapters the request chose, else the default scales */
    c->call.kind = r->kind == SLM_REQ_EMBED ? SLM_CALL_EMBED : SLM_CALL_GENERATE;
    if (c->call.request) slm_request_release(c->call.request);
    slm_request_retain(r); /* the call keeps it for the record phase */
    c->call.request = r;
    return gate_submit(c);
}

bool srv_submit_task(srv_conn *c, slm_call_task_fn fn, void *user) {
    c->call.kind = SLM_CALL_TASK;
    c->call.task = fn;
    c->call.task_user = user;
    return gate_submit(c);
}


/* ---------- n choices ---------- */

typedef struct choices_join {
    slm_engine *engine;
    slm_request *joined;
    int n;
    slm_request *rs[SRV_MAX_CHOICES];
    size_t seen_text[SRV_MAX_CHOICES];
    int seen_infos[SRV_MAX_CHOICES];
    bool seen_done[SRV_MAX_CHOICES];
} choices_join;

/* The joined request once every choice is done: counts, times, texts, the first failure. */
static void join_finish(choices_join *j) {
    slm_request *J = j->joined;
    slm_finish why = SLM_FINISH_STOP;
    char error[sizeof J->error] = "";
    bool client = false;
    pthread_mutex_lock(&J->mu);
    J->n_tokens = 0;
    J->n_prompt_cached = j->rs[0]->n_prompt_cached;
    J->t_start = J->t_first = 0;
    for (int i = 0; i < j->n; i++) {
        slm_request *r = j->rs[i];
        pthread_mutex_lock(&r->mu);
        J->n_tokens += r->n_tokens;
        if (r->n_prompt_cached < J->n_prompt_cached) J->n_prompt_cached = r->n_prompt_cached;
        if (r->t_start > 0 && (J->t_start == 0 || r->t_start < J->t_start)) J->t_start = r->t_start;
        if (r->t_first > 0 && (J->t_first == 0 || r->t_first < J->t_first)) J->t_first = r->t_first;
        /* the text the record (audit) keeps and the output filter reads: every choice, separated */
        if (i > 0) slm_request_append_text(J, (const char[]){SRV_CHOICE_SEPARATOR}, 1);
        for (size_t at = 0; at < r->text_len;) {
            const char *sep = memchr(r->text + at, SRV_CHOICE_SEPARATOR, r->text_len - at);
            size_t run = sep ? (size_t)(sep - r->text) - at : r->text_len - at;
            slm_request_append_text(J, r->text + at, run);
            if (sep) slm_request_append_text(J, "\xEF\xBF\xBD", 3);
            at += run + (sep ? 1 : 0);
        }
        bool fine = r->finish == SLM_FINISH_STOP || r->finish == SLM_FINISH_LENGTH;
        if (fine && r->finish == SLM_FINISH_LENGTH && why == SLM_FINISH_STOP) why = SLM_FINISH_LENGTH;
        if (!fine && !error[0]) {
            why = r->finish;
            snprintf(error, sizeof error, "%s", r->error[0] ? r->error : slm_finish_name(r->finish));
            client = r->error_is_client;
        }
        pthread_mutex_unlock(&r->mu);
    }
    J->error_is_client = client;
    pthread_mutex_unlock(&J->mu);
    slm_request_finish(J, why, error[0] ? error : NULL);
}

/* Watches the choices: a token on the joined request for each round in which one of them moved,
 * their cancellation when it is cancelled, its finish when they are all done. */
static void *join_run(void *arg) {
    choices_join *j = arg;
    slm_request *J = j->joined;
    static const slm_token_info tick = {0};
    bool cancelled = false;
    for (;;) {
        if (!cancelled && atomic_load(&J->cancelled)) {
            cancelled = true;
            for (int i = 0; i < j->n; i++) slm_engine_cancel(j->engine, j->rs[i]);
        }
        bool moved = false, all_done = true;
        int pending = -1;
        for (int i = 0; i < j->n; i++) {
            slm_request *r = j->rs[i];
            pthread_mutex_lock(&r->mu);
            if (r->text_len != j->seen_text[i] || r->n_infos != j->seen_infos[i] || r->done != j->seen_done[i]) moved = true;
            j->seen_text[i] = r->text_len;
            j->seen_infos[i] = r->n_infos;
            j->seen_done[i] = r->done;
            if (!r->done) {
                all_done = false;
                if (pending < 0) pending = i;
            }
            pthread_mutex_unlock(&r->mu);
        }
        if (all_done) break;
        if (moved) {
            pthread_mutex_lock(&J->mu);
            slm_request_append_token(J, 0, &tick);
            pthread_cond_broadcast(&J->cv);
            pthread_mutex_unlock(&J->mu);
        }
        /* woken at once by the first unfinished choice, the others looked at every 2 ms */
        slm_request *p = j->rs[pending];
        pthread_mutex_lock(&p->mu);
        if (!p->done && p->text_len == j->seen_text[pending] && p->n_infos == j->seen_infos[pending]) slm_request_wait(p, 2);
        pthread_mutex_unlock(&p->mu);
    }
    join_finish(j);
    for (int i = 0; i < j->n; i++) slm_request_release(j->rs[i]);
    slm_request_release(J);
    free(j);
    return NULL;
}

slm_request *srv_submit_choices(srv_conn *c, slm_request **rs, int n) {
    srv_server *s = c->srv;
    if (n < 1 || n > SRV_MAX_CHOICES) {
        srv_reply_error(c, 400, NULL, "n", "'n' is out of range");
        return NULL;
    }
    if (!srv_submit(c, rs[0])) return NULL;
    if (c->call.backend != 0) {
        slm_gate_cancel(s->gate, &c->call);
        srv_reply_error(c, 400, "unsupported", "n", "'n' > 1 is served by local models only (this call was routed upstream)");
        return NULL;
    }
    slm_request *J = slm_request_new(SLM_REQ_GENERATE);
    choices_join *j = calloc(1, sizeof *j);
    if (!J || !j) {
        slm_request_release(J);
        free(j);
        slm_gate_cancel(s->gate, &c->call);
        srv_reply_error(c, 500, NULL, NULL, "out of memory");
        return NULL;
    }
    /* the adapters srv_submit attached to the first choice apply to every choice */
    for (int i = 1; i < n; i++)
        for (int k = 0; k < rs[0]->n_lora; k++)
            if (slm_request_add_lora(rs[i], rs[0]->lora[k].lora, rs[0]->lora[k].scale, NULL, 0) != 0) break;
    int submitted = 1;
    slm_submit_status st = SLM_SUBMIT_OK;
    for (int i = 1; i < n && st == SLM_SUBMIT_OK; i++) {
        slm_request *r = rs[i];
        r->t_submit = rs[0]->t_submit;
        r->deadline = rs[0]->deadline;
        snprintf(r->model, sizeof r->model, "%s", rs[0]->model);
        st = slm_engine_submit(s->engine, r);
        if (st == SLM_SUBMIT_OK) submitted++;
    }
    if (st != SLM_SUBMIT_OK) {
        slm_gate_cancel(s->gate, &c->call);
        for (int i = 1; i < submitted; i++) slm_engine_cancel(s->engine, rs[i]);
        slm_request_release(J);
        free(j);
        if (st == SLM_SUBMIT_DRAINING)
            srv_reply_error(c, 503, "shutting_down", NULL, "server is shutting down");
        else
            srv_reply_error(c, 503, "server_busy", "n", "the request queue has no room for all 'n' choices; retry later");
        return NULL;
    }
    j->engine = s->engine;
    j->joined = J;
    j->n = n;
    J->n_prompt = rs[0]->n_prompt;
    J->t_submit = rs[0]->t_submit;
    snprintf(J->model, sizeof J->model, "%s", rs[0]->model);
    for (int i = 0; i < n; i++) {
        slm_request_retain(rs[i]);
        j->rs[i] = rs[i];
    }
    slm_request_retain(J); /* the watcher's */
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, join_run, j);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        slm_gate_cancel(s->gate, &c->call);
        for (int i = 0; i < n; i++) {
            slm_engine_cancel(s->engine, rs[i]);
            slm_request_release(rs[i]);
        }
        slm_request_release(J);
        slm_request_release(J);
        free(j);
        srv_reply_error(c, 500, NULL, NULL, "cannot start a thread for the choices");
        return NULL;
    }
    /* the call stands for every choice now: cancelled, counted and recorded through J */
    slm_request_release(c->call.request);
    slm_request_retain(J);
    c->call.request = J;
    return J;
}

int srv_split_choices(const char *text, size_t len, int n, const char **starts, size_t *lens) {
    int k = 0;
    size_t at = 0;
    while (k < n) {
        const char *sep = at < len ? memchr(text + at, SRV_CHOICE_SEPARATOR, len - at) : NULL;
        size_t end = sep ? (size_t)(sep - text) : len;
        starts[k] = text + at;
        lens[k++] = end - at;
        if (!sep) break;
        at = end + 1;
    }
    return k;
}
