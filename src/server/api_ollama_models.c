/* Ollama's model management API over the model store (include/slm_models.h):
 *   POST /api/pull, /api/push    NDJSON progress as Ollama streams it (stream:false = one object)
 *   DELETE /api/delete, POST /api/copy
 *   POST /api/create             a model from an uploaded GGUF blob (files) or another model (from),
 *                                with template, system and parameters
 *   HEAD/POST /api/blobs/sha256:<hex>   is the blob there / upload it (checked against the digest)
 * Admin callers only (an admin key; on a server without keys, a caller on loopback), and only with
 * a data directory. Store names are NAME[:TAG]: a registry reference HOST/NS/REPO:TAG names the
 * local model REPO:TAG, in pull and push alike. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_lora.h"
#include "fields.h"
#include "handlers.h"
#include "ollama_create_quantize.h"
#include "ndjson_job.h"
#include "replies.h"
#include "slm_models.h"
#include "slm_net.h"
#include "slm_store.h"

/* The data directory the store lives in, or NULL (with the reply sent) when there is none. */
static const char *store_dir(srv_conn *c, char *buf, size_t cap) {
    srv_server *s = c->srv;
    if (s->cfg.no_data_dir) {
        srv_reply_error(c, 404, "no_data_dir", NULL, "this server runs without a data directory (no model store)");
        return NULL;
    }
    const char *dir = s->store ? slm_store_dir(s->store) : s->cfg.data_dir ? s->cfg.data_dir : slm_data_dir_default(buf, cap);
    if (!dir) srv_reply_error(c, 500, NULL, NULL, "cannot work out the data directory");
    return dir;
}

static bool admin_only(srv_conn *c) {
    if (c->call.admin) return true;
    srv_reply_error(c, 403, "admin_only", NULL, "managing models needs an admin key (slm keys create --admin)");
    return false;
}

/* "model" (current Ollama) or "name" (older clients and ollama-js's pull/push/delete). */
static const char *model_field(json_t *req, srv_fail *f) {
    const char *model = NULL, *name = NULL;
    if (!srv_json_string(req, "model", &model, f) || !srv_json_string(req, "name", &name, f)) return NULL;
    const char *v = model && *model ? model : name;
    if (!v || !*v) {
        srv_failf(f, 400, NULL, "model", "'model' is required");
        return NULL;
    }
    return v;
}

/* A name as clients send it to a local store name: a registry reference HOST/NS/REPO:TAG names
 * REPO:TAG; anything else stays as it is (and the store checks it). */
static void local_name(const char *name, char *out, size_t cap) {
    const char *slash = slm_models_source_kind_of(name) == SLM_SOURCE_OCI ? strrchr(name, '/') : NULL;
    snprintf(out, cap, "%s", slash ? slash + 1 : name);
}

/* The HTTP status of a failed pull or push, from what failed. */
static int failure_status(const char *source, const char *err) {
    if (slm_net_air_gapped() || strstr(err, "air-gapped")) return 403;
    if (strstr(err, "expected ") || strstr(err, "is not valid") || strstr(err, "must be") || strstr(err, "not supported") ||
        strstr(err, "model name") || strstr(err, "not a registry reference") || slm_models_source_kind_of(source) == SLM_SOURCE_INVALID)
        return 400;
    if (strstr(err, " has no ") || strstr(err, "no model named") || strstr(err, "not found")) return 404;
    return 502; /* the registry or the network failed us */
}

/* ---------- pull and push: a worker thread writes NDJSON into a pipe the response reads ---------- */

typedef struct transfer {
    srv_ndjson_job job; /* first: the NDJSON stream's worker */
    char data_dir[PATH_MAX];
    char source[1024]; /* pull: the source; push: the registry reference */
    char local[160];   /* push: the store name */
    bool push, insecure;
} transfer;

static void transfer_free(srv_ndjson_job *j) { free(j); }

static bool write_line(transfer *t, json_t *o) { return srv_ndjson_send(&t->job, o); }

static void on_event(void *user, const slm_models_event *ev) {
    transfer *t = user;
    json_t *o = json_pack("{s:s}", "status", ev->status);
    if (o && ev->digest) {
        json_object_set_new(o, "digest", json_string(ev->digest));
        json_object_set_new(o, "total", json_integer((json_int_t)ev->total));
        json_object_set_new(o, "completed", json_integer((json_int_t)ev->completed));
    }
    write_line(t, o);
}

static bool should_cancel(void *user) {
    transfer *t = user;
    return atomic_load(&t->job.cancel);
}

static int run_transfer(transfer *t, bool stream, char *err, size_t err_len) {
    slm_models_pull_opts o = {.insecure = t->insecure, .on_event = stream ? on_event : NULL, .should_cancel = should_cancel, .user = t};
    if (t->push) return slm_models_push(t->data_dir, t->local, t->source, &o, err, err_len);
    slm_model_entry e;
    return slm_models_pull_source(t->data_dir, t->source, &o, &e, err, err_len);
}

static void transfer_run(srv_ndjson_job *j) {
    transfer *t = (transfer *)j;
    char err[1024];
    if (run_transfer(t, true, err, sizeof err)) write_line(t, json_pack("{s:s}", "error", err));
}

static enum MHD_Result start_transfer(srv_conn *c, transfer *t, bool stream) {
    if (!stream) {
        char err[1024];
        int rc = run_transfer(t, false, err, sizeof err);
        enum MHD_Result r = rc ? srv_reply_error(c, failure_status(t->source, err), NULL, "model", err)
                               : srv_reply_json(c, 200, json_pack("{s:s}", "status", "success"));
        free(t);
        return r;
    }
    return srv_ndjson_start(c, &t->job);
}

static enum MHD_Result pull_or_push(srv_conn *c, const char *dir, bool push) {
    if (slm_net_air_gapped()) /* one clear refusal, before a stream starts */
        return srv_reply_error(c, 403, "air_gapped", NULL,
                               push ? "air-gapped mode: pushing models is disabled (carry them out with slm bundle export)"
                                    : "air-gapped mode: pulling models is disabled (bring them in with slm bundle import)");
    srv_fail f = {0};
    json_t *req = srv_parse_body(c, &f);
    if (!req) return srv_reply_fail(c, &f);
    const char *model = model_field(req, &f);
    bool stream = true, insecure = false;
    if (!model || !srv_json_bool(req, "stream", &stream, &f) || !srv_json_bool(req, "insecure", &insecure, &f)) {
        json_decref(req);
        return srv_reply_fail(c, &f);
    }
    transfer *t = calloc(1, sizeof *t);
    if (!t) {
        json_decref(req);
        return srv_reply_error(c, 500, NULL, NULL, "out of memory");
    }
    srv_ndjson_init(&t->job, transfer_run, transfer_free);
    t->push = push;
    t->insecure = insecure;
    snprintf(t->data_dir, sizeof t->data_dir, "%s", dir);
    slm_models_source_kind kind = slm_models_source_kind_of(model);
    char msg[1400];
    bool too_long = strlen(model) >= sizeof t->source - 32;
    if (!too_long && !push && kind == SLM_SOURCE_INVALID && !strchr(model, '/')) {
        /* Ollama's short names live in its public library */
        snprintf(t->source, sizeof t->source, "registry.ollama.ai/library/%.960s", model);
    } else {
        snprintf(t->source, sizeof t->source, "%s", model);
    }
    if (push) local_name(model, t->local, sizeof t->local);
    json_decref(req);
    if (too_long || (push && kind != SLM_SOURCE_OCI) || slm_models_source_kind_of(t->source) == SLM_SOURCE_INVALID) {
        snprintf(msg, sizeof msg, "'%.200s' is not a %s", t->source,
                 push ? "registry reference (HOST[:PORT]/NAMESPACE/REPO[:TAG])"
                      : "model to pull (HOST[:PORT]/NAMESPACE/REPO[:TAG], hf.co/ORG/REPO[:QUANT], an http(s) URL or a library name)");
        free(t);
        return srv_reply_error(c, 400, NULL, "model", msg);
    }
    return start_transfer(c, t, stream);
}

/* ---------- delete, copy ---------- */

static enum MHD_Result delete_model(srv_conn *c, const char *dir) {
    srv_fail f = {0};
    json_t *req = srv_parse_body(c, &f);
    if (!req) return srv_reply_fail(c, &f);
    const char *model = model_field(req, &f);
    if (!model) {
        json_decref(req);
        return srv_reply_fail(c, &f);
    }
    char name[300], err[512], msg[400];
    local_name(model, name, sizeof name);
    json_decref(req);
    int r = slm_models_rm(dir, name, err, sizeof err);
    if (r < 0) return srv_reply_error(c, strstr(err, "expected NAME") ? 400 : 500, NULL, "model", err);
    if (r == 0) {
        snprintf(msg, sizeof msg, "model '%.200s' not found", name);
        return srv_reply_error(c, 404, NULL, "model", msg);
    }
    return srv_reply_bytes(c, 200, "application/json", "", 0);
}

static enum MHD_Result copy_model(srv_conn *c, const char *dir) {
    srv_fail f = {0};
    json_t *req = srv_parse_body(c, &f);
    if (!req) return srv_reply_fail(c, &f);
    const char *src = NULL, *dst = NULL;
    if (!srv_json_string(req, "source", &src, &f) || !srv_json_string(req, "destination", &dst, &f)) {
        json_decref(req);
        return srv_reply_fail(c, &f);
    }
    if (!src || !*src || !dst || !*dst) {
        json_decref(req);
        return srv_reply_error(c, 400, NULL, src && *src ? "destination" : "source", "'source' and 'destination' are required");
    }
    char s[300], d[300], err[512];
    local_name(src, s, sizeof s);
    local_name(dst, d, sizeof d);
    json_decref(req);
    if (slm_models_cp(dir, s, d, err, sizeof err))
        return srv_reply_error(c, strstr(err, "no model named") ? 404 : strstr(err, "expected NAME") ? 400 : 500, NULL, "source", err);
    return srv_reply_bytes(c, 200, "application/json", "", 0);
}

/* ---------- create ---------- */

/* The one GGUF of "files" ({"name.gguf": "sha256:…"}); NULL with f set otherwise. */
static const char *create_digest(json_t *files, srv_fail *f) {
    if (!json_is_object(files)) {
        srv_failf(f, 400, NULL, "files", "'files' must be an object of file name to sha256 digest");
        return NULL;
    }
    const char *key, *digest = NULL;
    json_t *v;
    json_object_foreach(files, key, v) {
        size_t n = strlen(key);
        if (!json_is_string(v)) {
            srv_failf(f, 400, NULL, "files", "files['%.100s'] must be a digest string", key);
            return NULL;
        }
        if (n < 5 || strcmp(key + n - 5, ".gguf") != 0) {
            srv_failf(f, 400, NULL, "files", "only a GGUF file is supported in 'files' ('%.100s' is not one)", key);
            return NULL;
        }
        if (digest) {
            srv_failf(f, 400, NULL, "files", "several GGUF files (adapters, split models) are not supported");
            return NULL;
        }
        digest = json_string_value(v);
    }
    if (!digest) srv_failf(f, 400, NULL, "files", "'files' names no GGUF");
    return digest;
}

static enum MHD_Result create_model(srv_conn *c, const char *dir) {
    srv_fail f = {0};
    json_t *req = srv_parse_body(c, &f);
    if (!req) return srv_reply_fail(c, &f);
    const char *model = model_field(req, &f), *from = NULL, *template_text = NULL, *system = NULL, *quantize = NULL,
               *quantization = NULL;
    bool stream = true;
    json_t *params = json_object_get(req, "parameters"), *files = json_object_get(req, "files");
    slm_model_extras x = {0};
    char digest[80] = "", err[1024] = "", name[300];
    if (!model || !srv_json_string(req, "from", &from, &f) || !srv_json_string(req, "template", &template_text, &f) ||
        !srv_json_string(req, "system", &system, &f) || !srv_json_string(req, "quantize", &quantize, &f) ||
        !srv_json_string(req, "quantization", &quantization, &f) || !srv_json_bool(req, "stream", &stream, &f))
        goto fail;
    if (!quantize || !*quantize) quantize = quantization; /* Ollama's older spelling */
    if (params && !json_is_object(params)) {
        srv_failf(&f, 400, NULL, "parameters", "'parameters' must be an object");
        goto fail;
    }
    local_name(model, name, sizeof name);
    slm_model_adapters adapters; /* "adapters": a base + LoRA model (api_lora.c) */
    if (!srv_lora_parse_create(dir, json_object_get(req, "adapters"), &adapters, &f)) goto fail;
    if (files) {
        const char *d = create_digest(files, &f);
        if (!d) goto fail;
        char blob_path[PATH_MAX + 96];
        if (strlen(d) >= sizeof digest || !slm_models_blob_path(dir, d, blob_path, sizeof blob_path)) {
            srv_failf(&f, 400, NULL, "files", "blob %.80s is not on the server: upload it first with POST /api/blobs/%.80s", d, d);
            goto fail;
        }
        snprintf(digest, sizeof digest, "%s", d);
    } else if (from && *from) {
        char src[300];
        slm_model_entry e;
        local_name(from, src, sizeof src);
        int found = slm_models_find(dir, src, &e, NULL, err, sizeof err);
        if (found <= 0) {
            srv_failf(&f, found == 0 ? 404 : 400, NULL, "from", "%s", found == 0 ? "the 'from' model is not in the store" : err);
            goto fail;
        }
        snprintf(digest, sizeof digest, "%s", e.digest);
        if (slm_models_get_extras(dir, src, &x, err, sizeof err) < 0) {
            srv_failf(&f, 500, NULL, NULL, "%s", err);
            goto fail;
        }
    } else {
        srv_failf(&f, 400, NULL, "files", "give 'files' (an uploaded GGUF) or 'from' (a model in the store)");
        goto fail;
    }
    /* what the request gives replaces what 'from' had */
    if (template_text) free(x.template_text), x.template_text = strdup(template_text);
    if (system) free(x.system), x.system = strdup(system);
    if (params) free(x.params), x.params = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
    if ((template_text && !x.template_text) || (system && !x.system) || (params && !x.params)) {
        srv_failf(&f, 500, NULL, NULL, "out of memory");
        goto fail;
    }
    if (quantize && *quantize) { /* a new blob from this one (ollama_create_quantize.c takes the extras) */
        if (adapters.n > 0) {
            srv_failf(&f, 400, NULL, "quantize", "quantize and adapters together: merge the adapters first (slm lora merge)");
            goto fail;
        }
        enum MHD_Result r = srv_ollama_create_quantize(c, dir, name, digest, quantize, &x, stream);
        json_decref(req);
        return r;
    }
    json_decref(req);
    req = NULL;
    slm_model_entry e;
    if (srv_lora_store_create(dir, digest, name, &x, &adapters, &e, err, sizeof err)) {
        slm_models_extras_free(&x);
        return srv_reply_error(c, 400, NULL, "model", err);
    }
    slm_models_extras_free(&x);
    if (!stream) return srv_reply_json(c, 200, json_pack("{s:s}", "status", "success"));
    char lines[512];
    int n = snprintf(lines, sizeof lines,
                     "{\"status\":\"parsing GGUF\"}\n{\"status\":\"using existing layer %s\"}\n"
                     "{\"status\":\"writing manifest\"}\n{\"status\":\"success\"}\n",
                     digest);
    return srv_reply_bytes(c, 200, "application/x-ndjson", lines, (size_t)n);
fail:
    json_decref(req);
    slm_models_extras_free(&x);
    return srv_reply_fail(c, &f);
}

/* ---------- blobs ---------- */

static enum MHD_Result blob(srv_conn *c, const char *dir) {
    const char *digest = c->url + strlen("/api/blobs/");
    char path[PATH_MAX + 96], err[512];
    bool valid = strncmp(digest, "sha256:", 7) == 0 && strlen(digest) == 71 && strspn(digest + 7, "0123456789abcdef") == 64;
    if (!valid) return srv_reply_error(c, 400, NULL, "digest", "expected /api/blobs/sha256:<64 lower-case hex>");
    bool have = slm_models_blob_path(dir, digest, path, sizeof path);
    if (strcmp(c->method, "HEAD") == 0) return srv_reply_bytes(c, have ? 200 : 404, "application/json", "", 0);
    if (c->body_too_large) return srv_reply_error(c, 413, NULL, NULL, "blob larger than --max-body-bytes");
    if (slm_models_put_blob(dir, digest, c->body.s ? c->body.s : "", c->body.len, err, sizeof err))
        return srv_reply_error(c, strstr(err, "hash to") ? 400 : 500, NULL, "digest", err);
    return srv_reply_bytes(c, 201, "application/json", "", 0);
}

enum MHD_Result srv_ollama_models_dispatch(srv_conn *c) {
    if (!admin_only(c)) return MHD_YES;
    char def[PATH_MAX];
    const char *dir = store_dir(c, def, sizeof def);
    if (!dir) return MHD_YES;
    const char *u = c->url, *m = c->method;
    if (strcmp(u, "/api/pull") == 0) return pull_or_push(c, dir, false);
    if (strcmp(u, "/api/push") == 0) return pull_or_push(c, dir, true);
    if (strcmp(u, "/api/delete") == 0) return delete_model(c, dir);
    if (strcmp(u, "/api/copy") == 0) return copy_model(c, dir);
    if (strcmp(u, "/api/create") == 0) return create_model(c, dir);
    if (strncmp(u, "/api/blobs/", 11) == 0 && (strcmp(m, "HEAD") == 0 || strcmp(m, "POST") == 0)) return blob(c, dir);
    return srv_reply_error(c, 404, NULL, NULL, "unknown route");
}
