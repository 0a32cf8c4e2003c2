/* LoRA adapters in the server: one registry per process (there is one server), ids handed out in
 * load order and never reused, so an id a client holds never silently means another adapter.
 * Requests take their own reference to each adapter they apply (slm_request_add_lora), so an
 * unload while they run only drops the registry's. */
#include "api_lora.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handlers.h"
#include "replies.h"
#include "slm_models.h"
#include "slm_store.h"

typedef struct adapter {
    bool present;
    char name[128];
    char path[PATH_MAX];
    slm_lora *lora;
    int model;   /* index of the served model it belongs to */
    float scale; /* applied to requests that name no adapters (llama-server's global scale) */
} adapter;

static struct {
    pthread_mutex_t mu;
    adapter a[SRV_LORA_MAX];
    int n; /* ids handed out */
    struct {
        char path[PATH_MAX];
        float scale;
    } pre[SRV_LORA_MAX];
    int n_pre;
    bool started;
} reg = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Adapters that are part of a store model (slm_models_create, Ollama's /api/create "adapters"),
 * loaded the first time a request for that model arrives and applied to every request for it.
 * Keyed by everything that identifies the loaded model, since an on-demand model may be evicted
 * and another loaded at the same engine index (or address). */
typedef struct builtin {
    const slm_model *model;
    long long created;
    char model_id[256];
    char base_digest[72], digest[72];
    slm_lora *lora;
} builtin;

static struct {
    pthread_mutex_t mu;
    builtin b[SRV_LORA_MAX];
    int n;
} builtins = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* What the request being handled on this thread asked for (see api_lora.h). */
static _Thread_local struct {
    bool chosen; /* "lora" given or an adapter named as the model: exactly these, no global defaults */
    int n;
    int ids[SLM_LORA_MAX];
    float scales[SLM_LORA_MAX];
} want;

int srv_lora_preload(const char *path, float scale, char *err, size_t err_len) {
    if (reg.n_pre >= SLM_LORA_MAX) return snprintf(err, err_len, "at most %d --lora", SLM_LORA_MAX), -1;
    if (strlen(path) >= sizeof reg.pre[0].path) return snprintf(err, err_len, "--lora: path too long"), -1;
    snprintf(reg.pre[reg.n_pre].path, sizeof reg.pre[0].path, "%s", path);
    reg.pre[reg.n_pre++].scale = scale;
    return 0;
}

static int first_generative(const srv_server *s) {
    for (int i = 0; i < s->n_models; i++)
        if (!slm_model_is_embedding(s->models[i].model)) return i;
    return -1;
}

/* Loads `arg` (a file, or a model-store name) for model k under `name` (NULL = the file stem or
 * the store name). Caller holds reg.mu. Returns the id, -1 (err) or -2 (err: the name is taken). */
static int load_locked(srv_server *s, int k, const char *arg, const char *name, float scale, char *err, size_t err_len) {
    char path[PATH_MAX], def[PATH_MAX], rerr[PATH_MAX + 256];
    if (k < 0) return snprintf(err, err_len, "no generative model is served to apply an adapter to"), -1;
    if (reg.n >= SRV_LORA_MAX) return snprintf(err, err_len, "at most %d adapters may be loaded", SRV_LORA_MAX), -1;
    const char *dir = s->store ? slm_store_dir(s->store) : s->cfg.data_dir ? s->cfg.data_dir : slm_data_dir_default(def, sizeof def);
    bool is_file = access(arg, F_OK) == 0;
    if (slm_models_resolve(dir, arg, path, sizeof path, rerr, sizeof rerr)) return snprintf(err, err_len, "%.900s", rerr), -1;
    slm_lora *lora;
    if (slm_lora_load(s->models[k].model, path, &lora, err, err_len)) return -1;
    const char *shown = name ? name : is_file ? slm_lora_name(lora) : arg;
    for (int i = 0; i < reg.n; i++)
        if (reg.a[i].present && !strcmp(reg.a[i].name, shown)) {
            slm_lora_free(lora);
            return snprintf(err, err_len, "an adapter named '%.100s' is already loaded (id %d)", shown, i), -2;
        }
    adapter *a = &reg.a[reg.n];
    *a = (adapter){.present = true, .lora = lora, .model = k, .scale = scale};
    snprintf(a->name, sizeof a->name, "%s", shown);
    snprintf(a->path, sizeof a->path, "%s", path);
    return reg.n++;
}

void srv_lora_startup(srv_server *s) {
    pthread_mutex_lock(&reg.mu);
    if (!reg.started) {
        reg.started = true;
        for (int i = 0; i < reg.n_pre; i++) {
            char err[1024];
            if (load_locked(s, first_generative(s), reg.pre[i].path, NULL, reg.pre[i].scale, err, sizeof err) < 0) {
                /* a start-up argument that cannot work: stop before serving anything with it */
                fprintf(stderr, "slm serve: --lora %s: %s\n", reg.pre[i].path, err);
                fflush(stderr);
                _exit(1);
            }
            fprintf(stderr, "slm serve: LoRA adapter %d '%s' (rank %d, %d matrices) for '%s', scale %g\n", i,
                    reg.a[i].name, slm_lora_rank(reg.a[i].lora), slm_lora_n_pairs(reg.a[i].lora),
                    s->models[reg.a[i].model].id, reg.a[i].scale);
        }
    }
    pthread_mutex_unlock(&reg.mu);
}

void srv_lora_shutdown(void) {
    pthread_mutex_lock(&builtins.mu);
    for (int i = 0; i < builtins.n; i++) slm_lora_free(builtins.b[i].lora);
    builtins.n = 0;
    pthread_mutex_unlock(&builtins.mu);
    pthread_mutex_lock(&reg.mu);
    for (int i = 0; i < reg.n; i++)
        if (reg.a[i].present) slm_lora_free(reg.a[i].lora);
    memset(reg.a, 0, sizeof reg.a);
    reg.n = 0;
    reg.started = false;
    pthread_mutex_unlock(&reg.mu);
}

/* ---------- per request ---------- */

void srv_lora_forget(void) {
    want.chosen = false;
    want.n = 0;
}

static int find_name_locked(const char *name, int model) {
    for (int i = 0; i < reg.n; i++)
        if (reg.a[i].present && (model < 0 || reg.a[i].model == model) && !strcmp(reg.a[i].name, name)) return i;
    return -1;
}

static void names_locked(int model, char *out, size_t cap) {
    out[0] = 0;
    for (int i = 0; i < reg.n; i++)
        if (reg.a[i].present && reg.a[i].model == model)
            snprintf(out + strlen(out), cap - strlen(out), "%s'%.60s'", out[0] ? ", " : "", reg.a[i].name);
    if (!out[0]) snprintf(out, cap, "none");
}

int srv_lora_pick_name(srv_conn *c, const char *name) {
    srv_server *s = c->srv;
    if (!name || !*name) return -1;
    srv_lora_startup(s);
    int found = -1, model = -1;
    char list[400] = "";
    const char *colon = strrchr(name, ':');
    pthread_mutex_lock(&reg.mu);
    if (colon && colon != name && colon[1]) { /* "base:adapter" */
        char base[256];
        snprintf(base, sizeof base, "%.*s", (int)(colon - name < 255 ? colon - name : 255), name);
        model = slm_engine_find(s->engine, base);
        if (model >= 0) {
            found = find_name_locked(colon + 1, model);
            if (found < 0) names_locked(model, list, sizeof list);
        }
    }
    if (model < 0 && (found = find_name_locked(name, -1)) >= 0) model = reg.a[found].model; /* vLLM: the adapter's name alone */
    pthread_mutex_unlock(&reg.mu);
    if (found < 0 && model >= 0) {
        char msg[800];
        snprintf(msg, sizeof msg, "model '%.200s': '%.100s' is no LoRA adapter of '%.200s' (loaded: %s)", name, colon + 1,
                 s->models[model].id, list);
        srv_reply_error(c, 400, "invalid_lora", "model", msg);
        return -2;
    }
    if (found < 0) return -1;
    want.chosen = true;
    want.ids[0] = found;
    want.scales[0] = 1.0f;
    want.n = 1;
    return model;
}

bool srv_lora_parse(srv_conn *c, const srv_model *m, json_t *v, srv_fail *f) {
    if (!v || json_is_null(v)) return true;
    srv_lora_startup(c->srv);
    if (!json_is_array(v))
        return srv_failf(f, 400, "invalid_lora", "lora", "'lora' must be an array of {\"id\": N, \"scale\": S}");
    if (json_array_size(v) + (size_t)want.n > SLM_LORA_MAX)
        return srv_failf(f, 400, "invalid_lora", "lora", "'lora' lists more than %d adapters", SLM_LORA_MAX);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        json_t *id = json_object_get(e, "id"), *sc = json_object_get(e, "scale");
        if (!json_is_object(e) || !json_is_integer(id))
            return srv_failf(f, 400, "invalid_lora", "lora", "'lora'[%zu] needs an integer \"id\"", i);
        double scale = 1.0;
        if (sc && !json_is_null(sc)) {
            if (!json_is_number(sc) || !isfinite(json_number_value(sc)) || fabs(json_number_value(sc)) > 1e4)
                return srv_failf(f, 400, "invalid_lora", "lora", "'lora'[%zu].scale must be a number in [-10000, 10000]", i);
            scale = json_number_value(sc);
        }
        long long n = json_integer_value(id);
        pthread_mutex_lock(&reg.mu);
        bool known = n >= 0 && n < reg.n && reg.a[n].present;
        bool ours = known && m && reg.a[n].model == m->index;
        pthread_mutex_unlock(&reg.mu);
        if (!known) return srv_failf(f, 400, "invalid_lora", "lora", "'lora'[%zu]: no adapter has id %lld (GET /lora-adapters lists them)", i, n);
        if (!ours) return srv_failf(f, 400, "invalid_lora", "lora", "'lora'[%zu]: adapter %lld belongs to another model", i, n);
        want.ids[want.n] = (int)n;
        want.scales[want.n++] = (float)scale;
    }
    want.chosen = true;
    return true;
}

/* The adapter blob `digest` for the served model m (whose store entry names base_digest), loaded
 * once; NULL with err. */
static slm_lora *builtin_for(const srv_model *m, const char *dir, const char *base_digest, const char *digest, char *err,
                             size_t err_len) {
    pthread_mutex_lock(&builtins.mu);
    slm_lora *found = NULL;
    for (int i = 0; i < builtins.n && !found; i++) {
        builtin *b = &builtins.b[i];
        if (b->model == m->model && b->created == m->created && !strcmp(b->model_id, m->id) &&
            !strcmp(b->base_digest, base_digest) && !strcmp(b->digest, digest))
            found = b->lora;
    }
    if (!found) {
        char path[PATH_MAX + 96];
        /* drop what belongs to models no longer loaded as they were (evicted, reloaded, re-created) */
        int kept = 0;
        for (int i = 0; i < builtins.n; i++) {
            builtin *b = &builtins.b[i];
            bool same_load = b->model == m->model && b->created == m->created && !strcmp(b->model_id, m->id) &&
                             !strcmp(b->base_digest, base_digest);
            bool stale = (!strcmp(b->model_id, m->id) || b->model == m->model) && !same_load;
            if (stale) slm_lora_free(b->lora);
            else builtins.b[kept++] = *b;
        }
        builtins.n = kept;
        if (builtins.n >= SRV_LORA_MAX) snprintf(err, err_len, "too many adapters of store models are loaded");
        else if (!slm_models_blob_path(dir, digest, path, sizeof path)) snprintf(err, err_len, "adapter %s is missing from the store", digest);
        else if (slm_lora_load(m->model, path, &found, err, err_len) == 0) {
            builtin *b = &builtins.b[builtins.n++];
            *b = (builtin){.model = m->model, .created = m->created, .lora = found};
            snprintf(b->model_id, sizeof b->model_id, "%s", m->id);
            snprintf(b->base_digest, sizeof b->base_digest, "%s", base_digest);
            snprintf(b->digest, sizeof b->digest, "%s", digest);
            fprintf(stderr, "slm serve: '%s' applies its LoRA adapter %s (rank %d)\n", m->id, digest, slm_lora_rank(found));
        }
    }
    pthread_mutex_unlock(&builtins.mu);
    return found;
}

/* The adapters m's store entry carries (a model made with adapters), added to r. */
static bool attach_builtin(srv_conn *c, const srv_model *m, slm_request *r) {
    const char *dir = c->srv->store ? slm_store_dir(c->srv->store) : NULL;
    if (!dir) return true;
    slm_model_entry e;
    slm_model_adapters ad;
    char err[1024];
    if (slm_models_find(dir, m->id, &e, NULL, err, sizeof err) != 1 || e.n_adapters == 0) return true;
    if (slm_models_get_adapters(dir, m->id, &ad, err, sizeof err) != 1) ad.n = 0;
    for (int i = 0; i < ad.n; i++) {
        slm_lora *l = builtin_for(m, dir, e.digest, ad.digest[i], err, sizeof err);
        if (!l) {
            srv_reply_error(c, 500, "invalid_lora", "model", err);
            return false;
        }
        if (ad.scale[i] != 0 && slm_request_add_lora(r, l, ad.scale[i], err, sizeof err) != 0) {
            srv_reply_error(c, 400, "invalid_lora", "model", err);
            return false;
        }
    }
    return true;
}

bool srv_lora_attach(srv_conn *c, slm_request *r) {
    const srv_model *m = c->model;
    bool ok = true;
    int gone = -1;
    if (!m || c->target) { /* a route or upstream answers: local adapters do not apply */
        srv_lora_forget();
        return true;
    }
    pthread_mutex_lock(&reg.mu);
    if (want.chosen) {
        for (int i = 0; i < want.n && ok; i++) {
            adapter *a = &reg.a[want.ids[i]];
            if (!a->present) {
                ok = false;
                gone = want.ids[i];
            } else if (want.scales[i] != 0) {
                ok = slm_request_add_lora(r, a->lora, want.scales[i], NULL, 0) == 0;
            }
        }
    } else {
        for (int i = 0; i < reg.n && ok; i++)
            if (reg.a[i].present && reg.a[i].model == m->index && reg.a[i].scale != 0)
                ok = slm_request_add_lora(r, reg.a[i].lora, reg.a[i].scale, NULL, 0) == 0;
    }
    pthread_mutex_unlock(&reg.mu);
    srv_lora_forget();
    if (ok) return attach_builtin(c, m, r);
    char msg[200];
    if (gone >= 0) snprintf(msg, sizeof msg, "LoRA adapter %d was unloaded while the request was read", gone);
    else snprintf(msg, sizeof msg, "more than %d LoRA adapters apply to this request", SLM_LORA_MAX);
    srv_reply_error(c, 400, "invalid_lora", "lora", msg);
    return false;
}

/* ---------- HTTP ---------- */

static json_t *list_json(void) {
    json_t *arr = json_array();
    pthread_mutex_lock(&reg.mu);
    for (int i = 0; i < reg.n; i++) {
        const adapter *a = &reg.a[i];
        if (!a->present) continue;
        json_array_append_new(arr, json_pack("{s:i, s:s, s:s, s:f, s:i, s:f, s:i}", "id", i, "name", a->name, "path",
                                              a->path, "scale", (double)a->scale, "rank", slm_lora_rank(a->lora),
                                              "alpha", (double)slm_lora_alpha(a->lora), "model_index", a->model));
    }
    pthread_mutex_unlock(&reg.mu);
    return arr;
}

static bool admin_only(srv_conn *c) {
    if (c->call.admin) return true;
    srv_reply_error(c, 403, "admin_only", NULL, "changing LoRA adapters needs an admin key");
    return false;
}

/* POST /lora-adapters: [{"id": N, "scale": S}, ...]; adapters not listed get scale 0 (llama-server). */
static enum MHD_Result set_scales(srv_conn *c) {
    json_error_t je;
    json_t *body = json_loadb(c->body.s ? c->body.s : "", c->body.len, 0, &je);
    if (!body || !json_is_array(body)) {
        json_decref(body);
        return srv_reply_error(c, 400, "invalid_request_error", NULL,
                               "the body must be a JSON array of {\"id\": N, \"scale\": S}");
    }
    float scales[SRV_LORA_MAX] = {0};
    size_t i;
    json_t *e;
    char msg[300] = "";
    pthread_mutex_lock(&reg.mu);
    json_array_foreach(body, i, e) {
        json_t *id = json_object_get(e, "id"), *sc = json_object_get(e, "scale");
        long long n = json_is_integer(id) ? json_integer_value(id) : -1;
        if (n < 0 || n >= reg.n || !reg.a[n].present) {
            snprintf(msg, sizeof msg, "[%zu]: no adapter has this id", i);
            break;
        }
        double v = sc && !json_is_null(sc) ? json_number_value(sc) : 1.0;
        if ((sc && !json_is_null(sc) && !json_is_number(sc)) || !isfinite(v) || fabs(v) > 1e4) {
            snprintf(msg, sizeof msg, "[%zu].scale must be a number in [-10000, 10000]", i);
            break;
        }
        scales[n] = (float)v;
    }
    if (!msg[0])
        for (int k = 0; k < reg.n; k++) reg.a[k].scale = scales[k];
    pthread_mutex_unlock(&reg.mu);
    json_decref(body);
    if (msg[0]) return srv_reply_error(c, 400, "invalid_lora", "id", msg);
    return srv_reply_json(c, 200, json_pack("{s:b}", "success", 1));
}

/* POST /v1/lora/adapters {"name", "path", "scale"?, "model"?}: hot load. */
static enum MHD_Result load_adapter(srv_conn *c) {
    srv_fail f = {0};
    json_t *body = srv_parse_body(c, &f);
    if (!body) return srv_reply_fail(c, &f);
    const char *name = NULL, *path = NULL, *model = NULL;
    double scale = 0;
    bool have_scale = false;
    enum MHD_Result res;
    if (!srv_json_string(body, "name", &name, &f) || !srv_json_string(body, "path", &path, &f) ||
        !srv_json_string(body, "model", &model, &f) || !srv_json_number(body, "scale", -1e4, 1e4, &scale, &have_scale, &f)) {
        res = srv_reply_fail(c, &f);
    } else if (!path || !*path) {
        res = srv_reply_error(c, 400, "invalid_request_error", "path", "'path' (an adapter GGUF file or a store name) is required");
    } else if (name && (!*name || strlen(name) > 100 || strchr(name, '/') || strchr(name, ':'))) {
        res = srv_reply_error(c, 400, "invalid_request_error", "name", "'name' must be 1 to 100 characters without '/' or ':'");
    } else {
        int k = model ? slm_engine_find(c->srv->engine, model) : first_generative(c->srv);
        if (model && k < 0) {
            res = srv_reply_error(c, 404, "model_not_found", "model", "'model' names no served model");
        } else {
            char err[1024];
            pthread_mutex_lock(&reg.mu);
            int id = load_locked(c->srv, k, path, name, have_scale ? (float)scale : 0.0f, err, sizeof err);
            json_t *o = id >= 0 ? json_pack("{s:i, s:s, s:i}", "id", id, "name", reg.a[id].name, "rank",
                                            slm_lora_rank(reg.a[id].lora))
                                : NULL;
            pthread_mutex_unlock(&reg.mu);
            if (id >= 0) fprintf(stderr, "slm serve: LoRA adapter %d '%s' loaded from %s\n", id, json_string_value(json_object_get(o, "name")), path);
            res = id >= 0 ? srv_reply_json(c, 201, o)
                          : srv_reply_error(c, id == -2 ? 409 : 400, "invalid_lora", id == -2 ? "name" : "path", err);
        }
    }
    json_decref(body);
    return res;
}

/* DELETE /v1/lora/adapters/{name or id} */
static enum MHD_Result unload_adapter(srv_conn *c, const char *which) {
    pthread_mutex_lock(&reg.mu);
    int id = find_name_locked(which, -1);
    if (id < 0) {
        char *end;
        long n = strtol(which, &end, 10);
        if (*which && !*end && n >= 0 && n < reg.n && reg.a[n].present) id = (int)n;
    }
    slm_lora *drop = NULL;
    if (id >= 0) {
        drop = reg.a[id].lora;
        reg.a[id].present = false;
        reg.a[id].lora = NULL;
    }
    pthread_mutex_unlock(&reg.mu);
    if (id < 0) return srv_reply_error(c, 404, "not_found", "name", "no LoRA adapter has this name or id");
    slm_lora_free(drop); /* requests still applying it hold their own references */
    fprintf(stderr, "slm serve: LoRA adapter %d unloaded\n", id);
    return srv_reply_json(c, 200, json_pack("{s:i, s:b}", "id", id, "deleted", 1));
}

enum MHD_Result srv_lora_dispatch(srv_conn *c) {
    srv_lora_startup(c->srv);
    bool v1 = !strncmp(c->url, "/v1/lora/adapters", 17);
    if (!strcmp(c->method, "GET") || !strcmp(c->method, "HEAD")) {
        json_t *list = list_json();
        return srv_reply_json(c, 200, v1 ? json_pack("{s:s, s:o}", "object", "list", "data", list) : list);
    }
    if (!admin_only(c)) return MHD_YES;
    if (!strcmp(c->method, "DELETE")) return unload_adapter(c, c->url + strlen("/v1/lora/adapters/"));
    return v1 ? load_adapter(c) : set_scales(c);
}

/* ---------- adapters in the model lists, the store ---------- */

void srv_lora_append_models(srv_server *s, json_t *data) {
    srv_lora_startup(s);
    pthread_mutex_lock(&reg.mu);
    for (int i = 0; i < reg.n; i++) {
        const adapter *a = &reg.a[i];
        if (!a->present || a->model < 0 || a->model >= SLM_ENGINE_MAX_MODELS) continue;
        const srv_model *M = &s->models[a->model];
        char id[400];
        snprintf(id, sizeof id, "%s:%s", M->id, a->name);
        /* vLLM lists a LoRA module with its base as "parent" */
        json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:{s:s, s:i, s:i, s:f, s:f}}", "id", id,
                                              "object", "model", "created", (json_int_t)M->created, "owned_by", "slm",
                                              "parent", M->id, "root", a->path, "meta", "kind", "lora", "lora_id", i,
                                              "rank", slm_lora_rank(a->lora), "alpha", (double)slm_lora_alpha(a->lora),
                                              "scale", (double)a->scale));
    }
    pthread_mutex_unlock(&reg.mu);
}

bool srv_lora_parse_create(const char *dir, json_t *adapters, slm_model_adapters *out, srv_fail *f) {
    memset(out, 0, sizeof *out);
    if (!adapters || json_is_null(adapters)) return true;
    if (!json_is_object(adapters))
        return srv_failf(f, 400, NULL, "adapters", "'adapters' must be an object of file name to sha256 digest");
    const char *key;
    json_t *v;
    json_object_foreach(adapters, key, v) {
        const char *d = json_string_value(v);
        char path[PATH_MAX + 96];
        size_t n = strlen(key);
        if (!d) return srv_failf(f, 400, NULL, "adapters", "adapters['%.100s'] must be a digest string", key);
        if (n < 5 || strcmp(key + n - 5, ".gguf") != 0)
            return srv_failf(f, 400, NULL, "adapters", "only GGUF LoRA adapters are supported ('%.100s' is not a .gguf)", key);
        if (out->n >= SLM_MODELS_MAX_ADAPTERS)
            return srv_failf(f, 400, NULL, "adapters", "at most %d adapters", SLM_MODELS_MAX_ADAPTERS);
        if (strlen(d) != 71 || !slm_models_blob_path(dir, d, path, sizeof path))
            return srv_failf(f, 400, NULL, "adapters", "blob %.80s is not on the server: upload it first with POST /api/blobs/%.80s",
                             d, d);
        snprintf(out->digest[out->n], sizeof out->digest[0], "%s", d);
        out->scale[out->n++] = 1.0f;
    }
    return true;
}

int srv_lora_store_create(const char *dir, const char *digest, const char *name, const slm_model_extras *x,
                          const slm_model_adapters *ad, slm_model_entry *e, char *err, size_t err_len) {
    if (!ad || ad->n == 0) return slm_models_tag_blob_extras(dir, digest, name, x, e, err, err_len);
    const char *digests[SLM_MODELS_MAX_ADAPTERS];
    for (int i = 0; i < ad->n; i++) digests[i] = ad->digest[i];
    return slm_models_create(dir, name, digest, digests, ad->scale, ad->n, x, e, err, err_len);
}
