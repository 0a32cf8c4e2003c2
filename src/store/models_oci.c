/* Registries: pull and push over the distribution API v2 (what Ollama's registry speaks), with
 * Ollama's media types, anonymous bearer tokens, and every blob checked against its digest. */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slm_models.h"
#include "slm_net.h"
#include "store/models_impl.h"
#include "util/err.h"

#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_CONFIG "application/vnd.docker.container.image.v1+json"
#define MT_MODEL "application/vnd.ollama.image.model"
#define MT_TEMPLATE "application/vnd.ollama.image.template"
#define MT_SYSTEM "application/vnd.ollama.image.system"
#define MT_PARAMS "application/vnd.ollama.image.params"
#define MAX_MANIFEST_BYTES (4u << 20)
#define MAX_BLOB_SIZE ((uint64_t)1 << 50)

/* ---------- the manifest (hostile input) ---------- */

static bool digest_ok(const char *d) {
    return strncmp(d, "sha256:", 7) == 0 && strlen(d + 7) == 64 && strspn(d + 7, "0123456789abcdef") == 64;
}

static int parse_descriptor(json_t *o, const char *what, slm_oci_layer *l, char *err, size_t err_len) {
    if (!json_is_object(o)) return slm_err(err, err_len, "registry manifest: %s is not an object", what);
    json_t *mt = json_object_get(o, "mediaType"), *dg = json_object_get(o, "digest"), *sz = json_object_get(o, "size");
    if (!json_is_string(mt) || !json_is_string(dg) || !json_is_integer(sz))
        return slm_err(err, err_len, "registry manifest: %s needs mediaType, digest and size", what);
    const char *m = json_string_value(mt), *d = json_string_value(dg);
    size_t mlen = json_string_length(mt);
    if (mlen == 0 || mlen >= sizeof l->media_type || strlen(m) != mlen)
        return slm_err(err, err_len, "registry manifest: %s has an unusable mediaType", what);
    for (size_t i = 0; i < mlen; i++)
        if (m[i] < 0x21 || m[i] > 0x7e) return slm_err(err, err_len, "registry manifest: %s has an unusable mediaType", what);
    if (!digest_ok(d) || json_string_length(dg) != 71)
        return slm_err(err, err_len, "registry manifest: %s has digest '%.80s' (only sha256:<64 lower-case hex> is supported)",
                       what, d);
    json_int_t size = json_integer_value(sz);
    if (size < 0 || (uint64_t)size > MAX_BLOB_SIZE) return slm_err(err, err_len, "registry manifest: %s has an impossible size", what);
    snprintf(l->media_type, sizeof l->media_type, "%s", m);
    snprintf(l->digest, sizeof l->digest, "%s", d);
    l->size = (uint64_t)size;
    return 0;
}

int slm_models_oci_manifest_parse(const char *json, size_t len, slm_oci_manifest *m, char *err, size_t err_len) {
    memset(m, 0, sizeof *m);
    m->model_layer = m->template_layer = m->system_layer = m->params_layer = -1;
    json_error_t je;
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    int rc = 0;
    if (!json_is_object(o)) {
        json_decref(o);
        return slm_err(err, err_len, "registry manifest is not a JSON object (%s)", je.text);
    }
    json_t *sv = json_object_get(o, "schemaVersion"), *mt = json_object_get(o, "mediaType");
    const char *media = json_is_string(mt) ? json_string_value(mt) : "";
    if (!json_is_integer(sv) || json_integer_value(sv) != 2)
        rc = slm_err(err, err_len, "registry manifest: schemaVersion must be 2 (schema 1 manifests are not supported)");
    else if (strcmp(media, MT_DOCKER_LIST) == 0 || strcmp(media, MT_OCI_INDEX) == 0 || json_object_get(o, "manifests"))
        rc = slm_err(err, err_len, "registry manifest is an index of several images, not a model");
    else if (mt && !json_is_string(mt))
        rc = slm_err(err, err_len, "registry manifest: mediaType is not a string");
    else if (*media && strcmp(media, MT_DOCKER_MANIFEST) != 0 && strcmp(media, MT_OCI_MANIFEST) != 0)
        rc = slm_err(err, err_len, "registry manifest has media type '%.100s' (expected an image manifest)", media);
    json_t *layers = json_object_get(o, "layers");
    if (!rc) rc = parse_descriptor(json_object_get(o, "config"), "config", &m->config, err, err_len);
    if (!rc && (!json_is_array(layers) || json_array_size(layers) == 0 || json_array_size(layers) > SLM_OCI_MAX_LAYERS))
        rc = slm_err(err, err_len, "registry manifest: layers must be an array of 1 to %d", SLM_OCI_MAX_LAYERS);
    for (size_t i = 0; !rc && i < json_array_size(layers); i++) {
        char what[32];
        snprintf(what, sizeof what, "layer %zu", i);
        slm_oci_layer *l = &m->layers[i];
        rc = parse_descriptor(json_array_get(layers, i), what, l, err, err_len);
        if (rc) break;
        m->n_layers = (int)i + 1;
        int *slot = NULL;
        if (strcmp(l->media_type, MT_MODEL) == 0) slot = &m->model_layer;
        else if (strcmp(l->media_type, MT_TEMPLATE) == 0) slot = &m->template_layer;
        else if (strcmp(l->media_type, MT_SYSTEM) == 0) slot = &m->system_layer;
        else if (strcmp(l->media_type, MT_PARAMS) == 0) slot = &m->params_layer;
        else if (strcmp(l->media_type, "application/vnd.ollama.image.adapter") == 0 ||
                 strcmp(l->media_type, "application/vnd.ollama.image.projector") == 0)
            rc = slm_err(err, err_len, "registry manifest: %s layers are not supported", l->media_type + 25);
        if (rc || !slot) continue;
        if (*slot >= 0) rc = slm_err(err, err_len, "registry manifest: two %s layers", l->media_type);
        else if (slot != &m->model_layer && l->size > SLM_MODELS_MAX_EXTRA)
            rc = slm_err(err, err_len, "registry manifest: the %s layer is larger than %u bytes", l->media_type + 25,
                         SLM_MODELS_MAX_EXTRA);
        else *slot = (int)i;
    }
    /* a plain OCI artifact of one file is taken as the GGUF */
    if (!rc && m->model_layer < 0 && m->n_layers == 1 && !strstr(m->layers[0].media_type, "tar") && m->template_layer < 0 &&
        m->system_layer < 0 && m->params_layer < 0) /* never a lone template, system or params layer */
        m->model_layer = 0;
    if (!rc && m->model_layer < 0)
        rc = slm_err(err, err_len, "registry manifest has no GGUF layer (%s)", MT_MODEL);
    json_decref(o);
    if (rc) memset(m, 0, sizeof *m), m->model_layer = m->template_layer = m->system_layer = m->params_layer = -1;
    if (rc && err_len) models_one_line(err);
    return rc;
}

/* ---------- references ---------- */

typedef struct oci_ref {
    char host[256];  /* host[:port] */
    char repo[256];  /* namespace/repo */
    char tag[129];
    char base[300];  /* scheme://host */
    char last[72];   /* the repo's last component: the default store name */
} oci_ref;

static bool loopback_host(const char *host) {
    size_t n = strcspn(host, ":");
    return (n == 9 && strncmp(host, "localhost", 9) == 0) || strncmp(host, "127.", 4) == 0;
}

static int parse_ref(const char *s, bool insecure, oci_ref *r, char *err, size_t err_len) {
    memset(r, 0, sizeof *r);
    const char *slash = strchr(s, '/');
    size_t host_len = slash ? (size_t)(slash - s) : 0;
    if (!slash || host_len == 0 || host_len >= sizeof r->host)
        return slm_err(err, err_len, "registry reference '%.200s': expected HOST[:PORT]/NAMESPACE/REPO[:TAG]", s);
    memcpy(r->host, s, host_len);
    const char *colon = strchr(r->host, ':');
    size_t name_len = colon ? (size_t)(colon - r->host) : host_len;
    bool ok = name_len > 0;
    for (size_t i = 0; i < name_len; i++) ok &= isalnum((unsigned char)r->host[i]) || r->host[i] == '.' || r->host[i] == '-';
    if (colon) {
        size_t pl = strlen(colon + 1);
        ok &= pl >= 1 && pl <= 5 && strspn(colon + 1, "0123456789") == pl && atoi(colon + 1) > 0 && atoi(colon + 1) < 65536;
    }
    if (!ok) return slm_err(err, err_len, "registry reference '%.200s': '%s' is not a HOST[:PORT]", s, r->host);
    const char *rest = slash + 1;
    if (strchr(rest, '@')) return slm_err(err, err_len, "registry reference '%.200s': pulling by digest is not supported; give a tag", s);
    const char *last_slash = strrchr(rest, '/');
    const char *tag = strchr(last_slash ? last_slash : rest, ':');
    size_t repo_len = tag ? (size_t)(tag - rest) : strlen(rest);
    if (repo_len == 0 || repo_len >= sizeof r->repo)
        return slm_err(err, err_len, "registry reference '%.200s': the repository name is missing or too long", s);
    memcpy(r->repo, rest, repo_len);
    /* distribution's grammar: lower-case components of [a-z0-9] joined by '.', '_', '-', split by '/' */
    for (const char *c = r->repo; *c; c++) {
        bool start = c == r->repo || c[-1] == '/';
        bool end = c[1] == 0 || c[1] == '/';
        bool alnum = (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9');
        bool sep = *c == '.' || *c == '_' || *c == '-';
        if (!(alnum || ((sep || *c == '/') && !start && !end)) || (*c == '/' && start))
            return slm_err(err, err_len,
                           "registry reference '%.200s': repository '%s' must be lower-case letters, digits and . _ - "
                           "in /-separated parts",
                           s, r->repo);
    }
    const char *t = tag ? tag + 1 : "latest";
    size_t tl = strlen(t);
    bool tag_ok = tl >= 1 && tl <= 128 && (isalnum((unsigned char)t[0]) || t[0] == '_');
    for (size_t i = 0; i < tl; i++) tag_ok &= isalnum((unsigned char)t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-';
    if (!tag_ok) return slm_err(err, err_len, "registry reference '%.200s': tag '%.130s' is not valid", s, t);
    snprintf(r->tag, sizeof r->tag, "%s", t);
    const char *last = strrchr(r->repo, '/');
    snprintf(r->last, sizeof r->last, "%.64s", last ? last + 1 : r->repo);
    /* plain http only where no one else can listen in: loopback, or when the user says so */
    snprintf(r->base, sizeof r->base, "%s://%s", insecure || loopback_host(r->host) ? "http" : "https", r->host);
    return 0;
}

/* ---------- the registry client ---------- */

typedef struct oci_client {
    oci_ref ref;
    char *token;
    bool token_tried;
    const char *actions; /* "pull" or "pull,push" */
    const slm_models_pull_opts *o;
} oci_client;

/* "CODE: message" of a registry's error body, or "" */
static void registry_error(const slm_net_response *resp, char *out, size_t cap) {
    out[0] = 0;
    json_t *o = resp->body ? json_loadb(resp->body, resp->body_len, 0, NULL) : NULL;
    json_t *e0 = json_array_get(json_object_get(o, "errors"), 0);
    const char *code = json_string_value(json_object_get(e0, "code")), *msg = json_string_value(json_object_get(e0, "message"));
    if (code || msg) snprintf(out, cap, " (%.60s%s%.160s)", code ? code : "", code && msg ? ": " : "", msg ? msg : "");
    json_decref(o);
}

/* Reads one key="value" parameter of a WWW-Authenticate challenge. */
static bool challenge_param(const char *h, const char *key, char *out, size_t cap) {
    size_t kl = strlen(key);
    for (const char *p = h; (p = strstr(p, key)); p += kl) {
        if ((p != h && p[-1] != ' ' && p[-1] != ',') || p[kl] != '=') continue;
        const char *v = p + kl + 1;
        size_t n;
        if (*v == '"') {
            v++;
            const char *q = strchr(v, '"');
            if (!q) return false;
            n = (size_t)(q - v);
        } else {
            n = strcspn(v, ", ");
        }
        if (n >= cap) return false;
        memcpy(out, v, n);
        out[n] = 0;
        return true;
    }
    return false;
}

/* Answers a Bearer challenge: asks the realm for an anonymous token for the repository. */
static int fetch_token(oci_client *cl, const char *challenge, char *err, size_t err_len) {
    char realm[1024], service[256] = "", scope[512] = "", url[3600], esc_service[800], esc_scope[1600];
    if (strncasecmp(challenge, "Bearer ", 7) != 0 || !challenge_param(challenge + 7, "realm", realm, sizeof realm) ||
        (strncmp(realm, "http://", 7) != 0 && strncmp(realm, "https://", 8) != 0))
        return slm_err(err, err_len, "registry %s asks for credentials slm cannot give (%.120s); set SLM_REGISTRY_TOKEN",
                       cl->ref.host, challenge);
    challenge_param(challenge + 7, "service", service, sizeof service);
    if (!challenge_param(challenge + 7, "scope", scope, sizeof scope))
        snprintf(scope, sizeof scope, "repository:%s:%s", cl->ref.repo, cl->actions);
    if (!models_url_escape(service, false, esc_service, sizeof esc_service) ||
        !models_url_escape(scope, false, esc_scope, sizeof esc_scope))
        return slm_err(err, err_len, "registry %s: its token challenge is too long", cl->ref.host);
    snprintf(url, sizeof url, "%s%sservice=%s&scope=%s", realm, strchr(realm, '?') ? "&" : "?", esc_service, esc_scope);
    slm_net_request req = {.method = "GET", .url = url, .first_byte_timeout_s = 30, .idle_timeout_s = 30,
                           .max_body_bytes = 1 << 16};
    slm_net_response resp;
    slm_net_result r = slm_net_perform(&req, &resp);
    int rc = 0;
    json_t *o = NULL;
    if (r != SLM_NET_OK) rc = slm_err(err, err_len, "registry token from %.200s: %s", realm, resp.error);
    else if (resp.status != 200) rc = slm_err(err, err_len, "registry token from %.200s: HTTP %d", realm, resp.status);
    else {
        o = json_loadb(resp.body ? resp.body : "", resp.body_len, 0, NULL);
        const char *tok = json_string_value(json_object_get(o, "token"));
        if (!tok) tok = json_string_value(json_object_get(o, "access_token"));
        if (!tok || !*tok || strpbrk(tok, "\r\n")) rc = slm_err(err, err_len, "registry token from %.200s: no token in the answer", realm);
        else if (!(cl->token = strdup(tok))) rc = slm_err(err, err_len, "out of memory");
    }
    json_decref(o);
    slm_net_response_free(&resp);
    return rc;
}

static bool client_cancel(void *user) {
    const oci_client *cl = user;
    return cl->o && cl->o->should_cancel && cl->o->should_cancel(cl->o->user);
}

/* One request to the registry with the token; a 401 with a Bearer challenge gets a token and one retry. */
static slm_net_result registry_call(oci_client *cl, slm_net_request *req, slm_net_response *resp, char *err,
                                    size_t err_len) {
    req->should_cancel = client_cancel;
    req->user = cl;
    if (!req->connect_timeout_s) req->connect_timeout_s = 10;
    if (!req->first_byte_timeout_s) req->first_byte_timeout_s = 60;
    if (!req->idle_timeout_s) req->idle_timeout_s = 60;
    for (;;) {
        req->bearer_token = cl->token;
        slm_net_result r = slm_net_perform(req, resp);
        if (r != SLM_NET_OK) {
            slm_err(err, err_len, "registry %s: %s", cl->ref.host, resp->error);
            return r;
        }
        char challenge[2048];
        if (resp->status != 401 || cl->token_tried || !slm_net_response_header(resp, "WWW-Authenticate", challenge, sizeof challenge))
            return r;
        cl->token_tried = true;
        free(cl->token);
        cl->token = NULL;
        if (fetch_token(cl, challenge, err, err_len)) {
            resp->status = -1; /* the caller reports err */
            return SLM_NET_OK;
        }
        slm_net_response_free(resp);
    }
}

static int client_init(oci_client *cl, const char *source, bool insecure, const char *actions,
                       const slm_models_pull_opts *o, char *err, size_t err_len) {
    memset(cl, 0, sizeof *cl);
    cl->actions = actions;
    cl->o = o;
    if (parse_ref(source, insecure, &cl->ref, err, err_len)) return -1;
    const char *tok = getenv("SLM_REGISTRY_TOKEN");
    if (tok && *tok && !(cl->token = strdup(tok))) return slm_err(err, err_len, "out of memory");
    return 0;
}

static void client_free(oci_client *cl) {
    if (cl->token) {
        volatile char *p = cl->token; /* a secret: do not leave it in freed memory */
        while (*p) *p++ = 0;
        free(cl->token);
    }
    cl->token = NULL;
}

/* ---------- pull ---------- */

/* A small layer (template, system, params) into memory, checked against its digest. */
static int fetch_small(oci_client *cl, const slm_oci_layer *l, char **out, char *err, size_t err_len) {
    char url[700];
    snprintf(url, sizeof url, "%s/v2/%s/blobs/%s", cl->ref.base, cl->ref.repo, l->digest);
    slm_net_request req = {.method = "GET", .url = url, .max_body_bytes = (size_t)l->size + 1};
    slm_net_response resp;
    int rc = 0;
    if (registry_call(cl, &req, &resp, err, err_len) != SLM_NET_OK || resp.status < 0) rc = -1;
    else if (resp.status != 200) {
        char why[240];
        registry_error(&resp, why, sizeof why);
        rc = slm_err(err, err_len, "registry %s: blob %.19s…: HTTP %d%s", cl->ref.host, l->digest, resp.status, why);
    } else {
        char hex[65];
        models_hash_bytes(resp.body ? resp.body : "", resp.body_len, hex);
        if (resp.body_len != l->size || strcmp(hex, l->digest + 7) != 0)
            rc = slm_err(err, err_len, "registry %s: blob %.19s… is corrupt (its content hashes to sha256:%.12s…); nothing was kept",
                         cl->ref.host, l->digest, hex);
        else if (memchr(resp.body ? resp.body : "", 0, resp.body_len))
            rc = slm_err(err, err_len, "registry %s: the %s layer holds a NUL byte", cl->ref.host, l->media_type + 25);
        else if (!(*out = strndup(resp.body ? resp.body : "", resp.body_len)))
            rc = slm_err(err, err_len, "out of memory");
    }
    slm_net_response_free(&resp);
    return rc;
}

int models_oci_default_name(const char *source, char *out, size_t cap, char *err, size_t err_len) {
    oci_ref r;
    if (parse_ref(source, true, &r, err, err_len)) return -1;
    snprintf(out, cap, "%s:%s", r.last, r.tag);
    return 0;
}

int models_pull_oci(const char *data_dir, const char *source, const slm_models_pull_opts *o, slm_model_entry *entry,
                    char *err, size_t err_len) {
    oci_client cl;
    if (client_init(&cl, source, o && o->insecure, "pull", o, err, err_len)) {
        client_free(&cl);
        return -1;
    }
    char ref[256], name[72], tag[72];
    if (o && o->name) snprintf(ref, sizeof ref, "%s", o->name);
    else if (models_oci_default_name(source, ref, sizeof ref, err, err_len)) {
        client_free(&cl);
        return -1;
    }
    if (slm_models_parse_name(ref, name, sizeof name, tag, sizeof tag, err, err_len)) {
        client_free(&cl);
        return -1;
    }
    models_emit(o, "pulling manifest", NULL, 0, 0, 0);
    char url[700];
    snprintf(url, sizeof url, "%s/v2/%s/manifests/%s", cl.ref.base, cl.ref.repo, cl.ref.tag);
    const char *accept[] = {"Accept: " MT_DOCKER_MANIFEST ", " MT_OCI_MANIFEST ", " MT_DOCKER_LIST ", " MT_OCI_INDEX};
    slm_net_request req = {.method = "GET", .url = url, .headers = accept, .n_headers = 1, .max_body_bytes = MAX_MANIFEST_BYTES};
    slm_net_response resp;
    slm_oci_manifest m;
    slm_model_extras x = {0};
    int rc = 0;
    char e2[700];
    if (registry_call(&cl, &req, &resp, e2, sizeof e2) != SLM_NET_OK || resp.status < 0) {
        rc = slm_err(err, err_len, "%s", e2);
    } else if (resp.status == 404) {
        char why[240];
        registry_error(&resp, why, sizeof why);
        rc = slm_err(err, err_len, "registry %s has no %s:%s%s", cl.ref.host, cl.ref.repo, cl.ref.tag, why);
    } else if (resp.status != 200) {
        char why[240];
        registry_error(&resp, why, sizeof why);
        rc = slm_err(err, err_len, "registry %s: manifest of %s:%s: HTTP %d%s", cl.ref.host, cl.ref.repo, cl.ref.tag,
                     resp.status, why);
    } else {
        char said[128], hex[65];
        models_hash_bytes(resp.body ? resp.body : "", resp.body_len, hex);
        if (slm_net_response_header(&resp, "Docker-Content-Digest", said, sizeof said) && digest_ok(said) &&
            strcmp(said + 7, hex) != 0)
            rc = slm_err(err, err_len, "registry %s: the manifest of %s:%s does not hash to its Docker-Content-Digest",
                         cl.ref.host, cl.ref.repo, cl.ref.tag);
        else rc = slm_models_oci_manifest_parse(resp.body ? resp.body : "", resp.body_len, &m, err, err_len);
    }
    slm_net_response_free(&resp);
    /* the GGUF, resumable */
    const slm_oci_layer *ml = rc ? NULL : &m.layers[m.model_layer];
    char blob[PATH_MAX + 96];
    bool existed = ml && slm_models_blob_path(data_dir, ml->digest, blob, sizeof blob);
    char status[64];
    if (ml) snprintf(status, sizeof status, "pulling %.12s", ml->digest + 7);
    if (ml && existed) {
        models_emit(o, status, ml->digest, ml->size, ml->size, 0);
    } else if (ml) {
        char partial[PATH_MAX + 96], hex[65], blob_url[700];
        snprintf(blob_url, sizeof blob_url, "%s/v2/%s/blobs/%s", cl.ref.base, cl.ref.repo, ml->digest);
        rc = models_partial_path(data_dir, ml->digest + 7, partial, sizeof partial, err, err_len);
        models_emit(o, status, ml->digest, ml->size, 0, 0);
        models_fetch f = {.url = blob_url, .bearer = cl.token, .partial = partial, .want_hex = ml->digest + 7,
                          .label = ml->digest, .expect_size = ml->size, .o = o};
        if (!rc && models_fetch_file(&f, hex, e2, sizeof e2))
            rc = slm_err(err, err_len, "registry %s: blob %.19s…: %s", cl.ref.host, ml->digest,
                         strstr(e2, "does not match") ? "is corrupt: its content has another sha256; nothing was kept" : e2);
        if (!rc) models_emit(o, status, ml->digest, ml->size, ml->size, 0);
        if (!rc) rc = models_adopt_blob(data_dir, partial, hex, err, err_len);
    }
    if (!rc && m.template_layer >= 0) rc = fetch_small(&cl, &m.layers[m.template_layer], &x.template_text, err, err_len);
    if (!rc && m.system_layer >= 0) rc = fetch_small(&cl, &m.layers[m.system_layer], &x.system, err, err_len);
    if (!rc && m.params_layer >= 0) rc = fetch_small(&cl, &m.layers[m.params_layer], &x.params, err, err_len);
    if (!rc) models_emit(o, "verifying sha256 digest", NULL, 0, 0, 0);
    if (!rc) models_emit(o, "writing manifest", NULL, 0, 0, 0);
    if (!rc && slm_models_tag_blob_extras(data_dir, ml->digest, ref, &x, entry, err, err_len)) {
        rc = -1;
        if (!existed && slm_models_blob_path(data_dir, ml->digest, blob, sizeof blob)) {
            /* not a GGUF slm can read: nothing stays, unless another name uses it */
            slm_model_entry *v = NULL;
            int n = slm_models_list(data_dir, &v, NULL, 0);
            bool used = false;
            for (int i = 0; i < n; i++) used |= strcmp(v[i].digest, ml->digest) == 0;
            free(v);
            if (!used) unlink(blob);
        }
    }
    if (!rc) models_emit(o, "success", NULL, 0, 0, 0);
    slm_models_extras_free(&x);
    client_free(&cl);
    return rc;
}

/* ---------- push ---------- */

typedef struct push_blob {
    const char *media_type;
    char digest[72];
    uint64_t size;
    const char *file; /* the body: a file … */
    const char *data; /* … or bytes */
} push_blob;

static int upload_blob(oci_client *cl, const push_blob *b, char *err, size_t err_len) {
    char url[4200], status[64];
    snprintf(status, sizeof status, "pushing %.12s", b->digest + 7);
    models_emit(cl->o, status, b->digest, b->size, 0, 0);
    snprintf(url, sizeof url, "%s/v2/%s/blobs/%s", cl->ref.base, cl->ref.repo, b->digest);
    slm_net_request head = {.method = "HEAD", .url = url};
    slm_net_response resp;
    if (registry_call(cl, &head, &resp, err, err_len) != SLM_NET_OK || resp.status < 0) {
        slm_net_response_free(&resp);
        return -1;
    }
    int st = resp.status;
    slm_net_response_free(&resp);
    if (st == 200) { /* the registry has it already */
        models_emit(cl->o, status, b->digest, b->size, b->size, 0);
        return 0;
    }
    snprintf(url, sizeof url, "%s/v2/%s/blobs/uploads/", cl->ref.base, cl->ref.repo);
    slm_net_request start = {.method = "POST", .url = url, .body = "", .body_len = 0};
    char loc[4096] = "", why[240] = "";
    int rc = 0;
    if (registry_call(cl, &start, &resp, err, err_len) != SLM_NET_OK || resp.status < 0) rc = -1;
    else if (resp.status != 202 || !slm_net_response_header(&resp, "Location", loc, sizeof loc)) {
        registry_error(&resp, why, sizeof why);
        rc = slm_err(err, err_len, "registry %s refused to start an upload to %s: HTTP %d%s", cl->ref.host, cl->ref.repo,
                     resp.status, why);
    }
    slm_net_response_free(&resp);
    if (rc) return -1;
    /* monolithic: one PUT to the upload's location with the digest */
    char put_url[4200];
    if (loc[0] == '/') snprintf(put_url, sizeof put_url, "%s%s", cl->ref.base, loc);
    else if (strncmp(loc, "http://", 7) == 0 || strncmp(loc, "https://", 8) == 0) snprintf(put_url, sizeof put_url, "%s", loc);
    else return slm_err(err, err_len, "registry %s: unusable upload location '%.100s'", cl->ref.host, loc);
    size_t n = strlen(put_url);
    if (n + 90 >= sizeof put_url) return slm_err(err, err_len, "registry %s: upload location too long", cl->ref.host);
    snprintf(put_url + n, sizeof put_url - n, "%sdigest=sha256%%3A%s", strchr(put_url, '?') ? "&" : "?", b->digest + 7);
    const char *hdr[] = {"Content-Type: application/octet-stream"};
    slm_net_request put = {.method = "PUT", .url = put_url, .headers = hdr, .n_headers = 1, .body_file = b->file,
                           .body = b->file ? NULL : b->data, .body_len = b->file ? 0 : (size_t)b->size};
    if (registry_call(cl, &put, &resp, err, err_len) != SLM_NET_OK || resp.status < 0) rc = -1;
    else if (resp.status != 201) {
        registry_error(&resp, why, sizeof why);
        rc = slm_err(err, err_len, "registry %s refused blob %.19s…: HTTP %d%s", cl->ref.host, b->digest, resp.status, why);
    }
    slm_net_response_free(&resp);
    if (!rc) models_emit(cl->o, status, b->digest, b->size, b->size, 0);
    return rc;
}

static void blob_of_text(push_blob *b, const char *media_type, const char *text) {
    *b = (push_blob){.media_type = media_type, .data = text, .size = strlen(text)}; /* no file: the bytes are the body */
    char hex[65];
    models_hash_bytes(text, b->size, hex);
    snprintf(b->digest, sizeof b->digest, "sha256:%s", hex);
}

static json_t *descriptor(const push_blob *b) {
    return json_pack("{s:s, s:s, s:I}", "mediaType", b->media_type, "digest", b->digest, "size", (json_int_t)b->size);
}

int slm_models_push(const char *data_dir, const char *ref, const char *oci_ref, const slm_models_pull_opts *o, char *err,
                    size_t err_len) {
    if (slm_net_air_gapped())
        return slm_err(err, err_len, "air-gapped mode: pushing models is disabled (carry them out with slm bundle export)");
    slm_model_entry e;
    char path[PATH_MAX];
    int found = slm_models_find(data_dir, ref, &e, path, err, err_len);
    if (found <= 0) return found == 0 ? slm_err(err, err_len, "no model named '%s' in the store", ref) : -1;
    oci_client cl;
    slm_model_extras x = {0};
    char *config = NULL, *manifest = NULL;
    int rc = client_init(&cl, oci_ref, o && o->insecure, "pull,push", o, err, err_len);
    if (!rc && slm_models_get_extras(data_dir, ref, &x, err, err_len) < 0) rc = -1;
    push_blob blobs[5];
    int n = 0;
    if (!rc) {
        blobs[n++] = (push_blob){.media_type = MT_MODEL, .size = e.size, .file = path};
        snprintf(blobs[0].digest, sizeof blobs[0].digest, "%s", e.digest);
        if (x.template_text) blob_of_text(&blobs[n++], MT_TEMPLATE, x.template_text);
        if (x.system) blob_of_text(&blobs[n++], MT_SYSTEM, x.system);
        if (x.params) blob_of_text(&blobs[n++], MT_PARAMS, x.params);
        /* the config Ollama writes: what the model is, and the layers' digests */
        json_t *diff = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(diff, json_string(blobs[i].digest));
        json_t *c = json_pack("{s:s, s:s, s:[s], s:s, s:s, s:s, s:s, s:{s:s, s:o}}", "model_format", "gguf", "model_family",
                              e.arch, "model_families", e.arch, "model_type", "", "file_type", "", "architecture", "amd64",
                              "os", "linux", "rootfs", "type", "layers", "diff_ids", diff);
        config = c ? json_dumps(c, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(c);
        if (!config) rc = slm_err(err, err_len, "out of memory");
    }
    push_blob cfg;
    if (!rc) blob_of_text(&cfg, MT_CONFIG, config);
    if (!rc) rc = upload_blob(&cl, &cfg, err, err_len);
    for (int i = 0; !rc && i < n; i++) rc = upload_blob(&cl, &blobs[i], err, err_len);
    if (!rc) {
        json_t *layers = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(layers, descriptor(&blobs[i]));
        json_t *mo = json_pack("{s:i, s:s, s:o, s:o}", "schemaVersion", 2, "mediaType", MT_DOCKER_MANIFEST, "config",
                               descriptor(&cfg), "layers", layers);
        manifest = mo ? json_dumps(mo, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        json_decref(mo);
        if (!manifest) rc = slm_err(err, err_len, "out of memory");
    }
    if (!rc) {
        models_emit(o, "pushing manifest", NULL, 0, 0, 0);
        char url[700], why[240];
        snprintf(url, sizeof url, "%s/v2/%s/manifests/%s", cl.ref.base, cl.ref.repo, cl.ref.tag);
        const char *hdr[] = {"Content-Type: " MT_DOCKER_MANIFEST};
        slm_net_request put = {.method = "PUT", .url = url, .headers = hdr, .n_headers = 1, .body = manifest,
                               .body_len = strlen(manifest)};
        slm_net_response resp;
        if (registry_call(&cl, &put, &resp, err, err_len) != SLM_NET_OK || resp.status < 0) rc = -1;
        else if (resp.status != 201) {
            registry_error(&resp, why, sizeof why);
            rc = slm_err(err, err_len, "registry %s refused the manifest of %s:%s: HTTP %d%s", cl.ref.host, cl.ref.repo,
                         cl.ref.tag, resp.status, why);
        }
        slm_net_response_free(&resp);
    }
    if (!rc) models_emit(o, "success", NULL, 0, 0, 0);
    if (rc && err_len) models_one_line(err);
    free(config);
    free(manifest);
    slm_models_extras_free(&x);
    client_free(&cl);
    return rc;
}
