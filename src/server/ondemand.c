/* Models by name on demand (see ondemand.h). The engine decides what stays resident; this file
 * tells it how to find and load a store model, and keeps the handlers' view of each one. */
#include "ondemand.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "replies.h"
#include "slm_models.h"

/* ---------- the loader ---------- */

static const char *store_dir(const srv_server *s) { return s->store ? slm_store_dir(s->store) : NULL; }

static long long meta_int(const slm_model *m, const char *arch, const char *suffix, long long def) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    const char *v = slm_model_meta(m, key);
    if (!v) return def;
    char *end;
    long long n = strtoll(v, &end, 10);
    return end != v && n > 0 && n <= (1 << 24) ? n : def; /* hostile sizes cannot wrap the estimate; the loader refuses them */
}

/* The context a model gets: the server's flags, as for the --model ones. */
static slm_context_params serving_params(const srv_server *s) {
    slm_context_params cp = slm_context_default_params();
    cp.n_seq = s->cfg.parallel;
    cp.n_ctx = s->cfg.ctx_size;
    cp.n_batch = s->cfg.batch_size;
    cp.embeddings = true;
    return cp;
}

/* What the model will hold: its tensors, an F16 KV cache for every slot and the pass's scratch (read
 * from the metadata alone, so nothing is loaded before there is room). */
static uint64_t estimate_bytes(const srv_server *s, const char *path, uint64_t file_size) {
    slm_model_params mp = {.vocab_only = true};
    slm_model *m = NULL;
    char err[256];
    if (slm_model_load(path, &mp, &m, err, sizeof err) != 0) return file_size;
    const char *arch = slm_model_meta(m, "general.architecture"); /* a vocab-only load leaves the family unset */
    if (!arch) arch = "";
    long long n_layer = meta_int(m, arch, "block_count", 1), n_embd = meta_int(m, arch, "embedding_length", 1);
    long long n_head = meta_int(m, arch, "attention.head_count", 1);
    long long n_kv = meta_int(m, arch, "attention.head_count_kv", n_head);
    long long head_dim = meta_int(m, arch, "attention.key_length", n_embd / n_head);
    long long train = meta_int(m, arch, "context_length", 4096);
    long long n_ff = meta_int(m, arch, "feed_forward_length", 4 * n_embd), n_vocab = slm_model_n_vocab(m);
    slm_model_free(m);
    slm_context_params cp = serving_params(s);
    long long n_ctx = cp.n_ctx > 0 ? cp.n_ctx : train < 4096 ? train : 4096;
    long long n_seq = cp.n_seq > 0 ? cp.n_seq : 1;
    uint64_t kv = 2ull * (uint64_t)n_layer * (uint64_t)n_ctx * (uint64_t)n_seq * (uint64_t)(n_kv * head_dim) * 2u;
    /* a full batch's f32 activations (residual, attention and feed-forward rows) and a row of
     * logits per sequence: small for a decode step, all of it for a long prompt */
    long long n_batch = cp.n_batch > 0 ? cp.n_batch : 512;
    uint64_t scratch = 4ull * (uint64_t)n_batch * (uint64_t)(4 * n_embd + 2 * n_ff) + 4ull * (uint64_t)n_vocab * (uint64_t)n_seq;
    return file_size + kv + scratch;
}

static int probe_store(void *user, const char *name, char *canonical, size_t cap, uint64_t *bytes, char *err,
                       size_t err_len) {
    srv_server *s = user;
    const char *dir = store_dir(s);
    if (!dir || !name || !*name) return 0;
    char ref_name[80], tag[80], perr[256];
    if (slm_models_parse_name(name, ref_name, sizeof ref_name, tag, sizeof tag, perr, sizeof perr) != 0) return 0;
    slm_model_entry e;
    char path[PATH_MAX];
    int found = slm_models_find(dir, name, &e, path, err, err_len);
    if (found <= 0) return found;
    if (strcmp(e.kind, "adapter") == 0) {
        snprintf(err, err_len,
                 "'%s' is a LoRA adapter for %s models, not a model: apply it to a model with \"lora\" or "
                 "\"MODEL:ADAPTER\", or make a model of both with /api/create's \"adapters\"",
                 name, e.arch);
        return -2;
    }
    if (strcmp(e.tag, "latest") == 0)
        snprintf(canonical, cap, "%s", e.name);
    else
        snprintf(canonical, cap, "%s:%s", e.name, e.tag);
    *bytes = estimate_bytes(s, path, e.size);
    return 1;
}

static int load_store(void *user, const char *canonical, slm_model **model, slm_context_params *cp, char *err,
                      size_t err_len) {
    srv_server *s = user;
    char path[PATH_MAX];
    slm_model_entry e;
    int found = slm_models_find(store_dir(s), canonical, &e, path, err, err_len);
    if (found == 0) snprintf(err, err_len, "model '%s' was removed from the store", canonical);
    if (found <= 0) return -1;
    double t0 = slm_now();
    if (slm_model_load(path, NULL, model, err, err_len) != 0) return -1;
    *cp = serving_params(s);
    fprintf(stderr, "slm serve: loaded '%s' on demand (%s) in %.2f s\n", canonical, slm_model_desc(*model),
            slm_now() - t0);
    return 0;
}

void srv_ondemand_install(srv_server *s) {
    pthread_mutex_init(&s->models_mu, NULL);
    if (!store_dir(s)) return;
    slm_engine_loader l = {.user = s, .probe = probe_store, .load = load_store};
    slm_engine_set_loader(s->engine, &l, s->cfg.max_memory);
}

/* ---------- the handlers' view ---------- */

/* The model's own template if it renders, else chatml (as llama.cpp does), said out loud. */
static void choose_template(const srv_config *cfg, srv_model *m) {
    if (cfg->chat_template) {
        snprintf(m->template_name, sizeof m->template_name, "%s", cfg->chat_template);
        return;
    }
    slm_chat_message probe[2] = {{"system", "s"}, {"user", "u"}};
    char *out = NULL, err[256];
    if (slm_chat_render(m->model, NULL, probe, 2, true, &out, err, sizeof err) == 0) {
        free(out);
        m->template_name[0] = 0;
        return;
    }
    snprintf(m->template_name, sizeof m->template_name, "chatml");
    char *semi = strchr(err, ';'); /* keep the reason, not the list of names */
    if (semi) *semi = 0;
    fprintf(stderr, "slm serve: %s: %s; using chatml for chat requests (--chat-template to choose)\n", m->id, err);
}

/* The store's extras of the model called M->id: system prompt and default options. */
static void load_extras(srv_server *s, srv_model *M) {
    free(M->system);
    json_decref(M->params);
    M->system = NULL;
    M->params = NULL;
    slm_model_extras x = {0};
    char err[256];
    if (!store_dir(s) || slm_models_get_extras(store_dir(s), M->id, &x, err, sizeof err) <= 0) return;
    M->system = x.system;
    x.system = NULL;
    if (x.params) {
        json_t *p = json_loads(x.params, 0, NULL);
        if (json_is_object(p))
            M->params = p;
        else
            json_decref(p);
    }
    slm_models_extras_free(&x);
}

void srv_model_system_default(const srv_model *M, json_t *req) {
    json_t *msgs = json_object_get(req, "messages");
    if (!M->system || !json_is_array(msgs) || json_array_size(msgs) == 0) return;
    json_t *role = json_object_get(json_array_get(msgs, 0), "role");
    if (json_is_string(role) && strcmp(json_string_value(role), "system") == 0) return;
    json_array_insert_new(msgs, 0, json_pack("{s:s, s:s}", "role", "system", "content", M->system));
}

void srv_model_fill(srv_server *s, srv_model *M, int k, const char *path) {
    const slm_context *ctx = slm_engine_context_at(s->engine, k);
    M->index = k;
    M->model = slm_engine_model_at(s->engine, k);
    M->n_ctx = slm_context_n_ctx(ctx);
    M->n_seq = slm_context_n_seq(ctx);
    M->n_batch = slm_context_n_batch(ctx);
    M->n_vocab = slm_model_n_vocab(M->model);
    M->n_embd = slm_model_n_embd(M->model);
    struct stat st;
    M->created = path && stat(path, &st) == 0 ? (long long)st.st_mtime : (long long)time(NULL);
    choose_template(&s->cfg, M);
    load_extras(s, M);
}

/* The entry for engine index k, refreshed when another model took that place since. */
static const srv_model *view_of(srv_server *s, int k) {
    pthread_mutex_lock(&s->models_mu);
    srv_model *M = &s->models[k];
    const char *name = slm_engine_model_name(s->engine, k);
    if (M->model != slm_engine_model_at(s->engine, k) || strcmp(M->id, name) != 0) {
        free(M->system);
        json_decref(M->params);
        memset(M, 0, sizeof *M);
        snprintf(M->id, sizeof M->id, "%s", name);
        srv_model_fill(s, M, k, NULL);
    }
    pthread_mutex_unlock(&s->models_mu);
    return M;
}

void srv_release_model(srv_conn *c) {
    if (!c->holds_model) return;
    c->holds_model = false;
    slm_engine_release(c->srv->engine, c->held_model);
}

const srv_model *srv_hold_model(srv_conn *c, const char *name, bool *not_found) {
    srv_server *s = c->srv;
    *not_found = false;
    srv_release_model(c); /* a handler that picks twice holds only its last choice */
    int k = -1;
    char err[512] = "";
    slm_acquire_status st = slm_engine_acquire(s->engine, name ? name : "", c->keep_alive, s->cfg.load_wait_s, &k, err,
                                               sizeof err);
    switch (st) {
    case SLM_ACQUIRE_OK:
        c->holds_model = true;
        c->held_model = k;
        return view_of(s, k);
    case SLM_ACQUIRE_NOT_FOUND: *not_found = true; return NULL;
    case SLM_ACQUIRE_TOO_LARGE: srv_reply_error(c, 400, "model_too_large", "model", err); return NULL;
    case SLM_ACQUIRE_NOT_MODEL: srv_reply_error(c, 400, "not_a_model", "model", err); return NULL;
    case SLM_ACQUIRE_BUSY: srv_reply_error(c, 503, "models_busy", "model", err); return NULL;
    case SLM_ACQUIRE_FAILED:
    default: srv_reply_error(c, 500, "model_load_failed", "model", err); return NULL;
    }
}

/* ---------- keep_alive ---------- */

bool srv_parse_duration(const char *text, double *seconds) {
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    if (!*p) return false;
    bool negative = *p == '-';
    if (*p == '-' || *p == '+') p++;
    double total = 0;
    bool any = false;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !isfinite(v) || v < 0) return false;
        p = end;
        double unit = 1;
        if (strncmp(p, "ns", 2) == 0) unit = 1e-9, p += 2;
        else if (strncmp(p, "us", 2) == 0 || strncmp(p, "\xc2\xb5s", 3) == 0) unit = 1e-6, p += (*p == 'u' ? 2 : 3);
        else if (strncmp(p, "ms", 2) == 0) unit = 1e-3, p += 2;
        else if (*p == 's') unit = 1, p++;
        else if (*p == 'm') unit = 60, p++;
        else if (*p == 'h') unit = 3600, p++;
        else if (*p == 0 && !any) unit = 1; /* a bare number is seconds */
        else return false;
        total += v * unit;
        any = true;
    }
    if (!any || total > 1e12) return false;
    *seconds = negative ? (total == 0 ? 0 : SLM_KEEP_ALIVE_FOREVER) : total;
    return true;
}

bool srv_parse_keep_alive(srv_conn *c, json_t *req, srv_fail *f) {
    json_t *v = json_object_get(req, "keep_alive");
    if (!v || json_is_null(v)) return true;
    double secs;
    if (json_is_number(v)) {
        double n = json_number_value(v);
        if (!isfinite(n) || n > 1e12) return srv_failf(f, 400, NULL, "keep_alive", "'keep_alive' is out of range");
        secs = n < 0 ? SLM_KEEP_ALIVE_FOREVER : n;
    } else if (!json_is_string(v) || !srv_parse_duration(json_string_value(v), &secs)) {
        return srv_failf(f, 400, NULL, "keep_alive",
                         "'keep_alive' must be a duration like \"5m\", \"30s\", \"1h\", \"-1\" (for ever) or \"0\" "
                         "(unload now), or a number of seconds");
    }
    c->keep_alive = secs;
    return true;
}
