/* The model store: content-addressed blobs and name:tag manifests (see slm_models.h). */
#include "slm_models.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "slm.h"
#include "store/store_impl.h"
#include "util/err.h"

#define COPY_CHUNK ((size_t)1 << 20)

static bool name_ok(const char *s, size_t n) {
    if (n == 0 || n > 64 || s[0] == '.' || s[0] == '-') return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

int slm_models_parse_name(const char *ref, char *name, size_t name_cap, char *tag, size_t tag_cap, char *err,
                          size_t err_len) {
    const char *colon = ref ? strchr(ref, ':') : NULL;
    size_t n = colon ? (size_t)(colon - ref) : (ref ? strlen(ref) : 0);
    const char *t = colon ? colon + 1 : "latest";
    if (!ref || !name_ok(ref, n) || !name_ok(t, strlen(t)) || n >= name_cap || strlen(t) >= tag_cap)
        return slm_err(err, err_len,
                       "model name '%.80s': expected NAME[:TAG], each 1-64 of letters, digits, '.', '_', '-'",
                       ref ? ref : "");
    memcpy(name, ref, n);
    name[n] = 0;
    snprintf(tag, tag_cap, "%s", t);
    return 0;
}

bool slm_models_blob_path(const char *data_dir, const char *digest, char *path, size_t cap) {
    const char *hex = digest && strncmp(digest, "sha256:", 7) == 0 ? digest + 7 : NULL;
    if (!hex || strlen(hex) != 64 || strspn(hex, "0123456789abcdef") != 64) {
        if (cap) path[0] = 0;
        return false;
    }
    snprintf(path, cap, "%s/models/blobs/sha256-%s", data_dir, hex);
    return access(path, R_OK) == 0;
}

static void manifest_path(const char *data_dir, const char *name, const char *tag, char *out, size_t cap) {
    snprintf(out, cap, "%s/models/manifests/%s/%s.json", data_dir, name, tag);
}

static void hex_of(const unsigned char *d, char *out) {
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* What a GGUF is: a LoRA adapter (general.type = "adapter": its metadata names the base
 * architecture; the loader would refuse it, having no vocabulary) or a model, whose architecture is
 * read through the model loader (vocab only: cheap), which also proves slm can read the file. */
static int gguf_identity(const char *path, char *arch, size_t cap, char *kind, size_t kind_cap, char *err, size_t err_len) {
    gguf_file *f;
    char e[400];
    if (gguf_open(path, &f, e, sizeof e) == 0) {
        gguf_str type, a;
        bool adapter = gguf_get_str(f, "general.type", &type, NULL, 0) == 0 && gguf_str_eq(type, "adapter");
        int rc = 0;
        if (adapter) {
            gguf_str at;
            if (gguf_get_str(f, "adapter.type", &at, NULL, 0) != 0 || !gguf_str_eq(at, "lora"))
                rc = slm_err(err, err_len, "%s: an adapter, but not a LoRA one (adapter.type is not \"lora\")", path);
            else if (gguf_get_str(f, "general.architecture", &a, NULL, 0) != 0 || a.len == 0 || a.len >= cap)
                rc = slm_err(err, err_len, "%s: a LoRA adapter without a valid general.architecture", path);
            else if (gguf_n_tensors(f) == 0)
                rc = slm_err(err, err_len, "%s: a LoRA adapter with no tensors", path);
            else {
                snprintf(arch, cap, "%.*s", (int)a.len, a.ptr);
                snprintf(kind, kind_cap, "adapter");
            }
        }
        gguf_close(f);
        if (adapter) return rc;
    }
    slm_model_params mp = {0};
    mp.vocab_only = true;
    slm_model *m;
    if (slm_model_load(path, &mp, &m, e, sizeof e) != 0) return slm_err(err, err_len, "%s", e);
    const char *a = slm_model_meta(m, "general.architecture"); /* a vocab-only load leaves slm_model_arch unset */
    if (!a || !*a) a = slm_model_arch(m);
    snprintf(arch, cap, "%s", a && *a ? a : "unknown");
    snprintf(kind, kind_cap, "model");
    slm_model_free(m);
    return 0;
}

/* Checks the extras: sizes, UTF-8 (jansson refuses anything else), params a JSON object. */
static int extras_ok(const slm_model_extras *x, char *err, size_t err_len) {
    if (!x) return 0;
    const char *what[3] = {"template", "system", "params"};
    const char *v[3] = {x->template_text, x->system, x->params};
    for (int i = 0; i < 3; i++) {
        if (!v[i]) continue;
        size_t n = strlen(v[i]);
        if (n > SLM_MODELS_MAX_EXTRA) return slm_err(err, err_len, "the %s is larger than %u bytes", what[i], SLM_MODELS_MAX_EXTRA);
        json_t *probe = json_stringn(v[i], n);
        if (!probe) return slm_err(err, err_len, "the %s is not valid UTF-8 text", what[i]);
        json_decref(probe);
    }
    if (x->params) {
        json_error_t je;
        json_t *o = json_loads(x->params, JSON_REJECT_DUPLICATES, &je);
        bool obj = json_is_object(o);
        json_decref(o);
        if (!obj) return slm_err(err, err_len, "the params must be a JSON object");
    }
    return 0;
}

static int write_manifest(const char *data_dir, const slm_model_entry *e, const slm_model_extras *x,
                          const slm_model_adapters *ad, char *err, size_t err_len) {
    char dir[PATH_MAX], path[PATH_MAX + 80], tmp[PATH_MAX + 96];
    snprintf(dir, sizeof dir, "%s/models/manifests/%s", data_dir, e->name);
    if (store_mkdirs(dir, err, err_len)) return -1;
    manifest_path(data_dir, e->name, e->tag, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    json_t *o = json_pack("{s:i, s:s, s:s, s:s, s:I, s:f, s:s, s:s}", "schema", 1, "name", e->name, "tag", e->tag, "digest",
                          e->digest, "size", (json_int_t)e->size, "created", e->created, "format", "gguf", "arch", e->arch);
    /* the extras are kept as their exact text, so a push sends the bytes a pull received */
    if (o && x && x->template_text) json_object_set_new(o, "template", json_string(x->template_text));
    if (o && x && x->system) json_object_set_new(o, "system", json_string(x->system));
    if (o && x && x->params) json_object_set_new(o, "params", json_string(x->params));
    /* written only when they say something, so a plain model's manifest stays as it was */
    if (o && !strcmp(e->kind, "adapter")) json_object_set_new(o, "kind", json_string("adapter"));
    if (o && ad && ad->n > 0) {
        json_t *arr = json_array();
        for (int i = 0; i < ad->n; i++)
            json_array_append_new(arr, json_pack("{s:s, s:f}", "digest", ad->digest[i], "scale", (double)ad->scale[i]));
        json_object_set_new(o, "adapters", arr);
    }
    int rc = o ? json_dump_file(o, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) : -1;
    json_decref(o);
    if (rc != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return slm_err(err, err_len, "cannot write the manifest %s: %s", path, strerror(errno));
    }
    return 0;
}

/* ad (may be NULL) gets the adapters a model made with slm_models_create applies. */
static int read_manifest(const char *path, slm_model_entry *e, slm_model_adapters *ad, char *err, size_t err_len) {
    json_error_t je;
    json_t *o = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    const char *name, *tag, *digest, *arch = "unknown", *kind = "model";
    json_int_t size = 0;
    double created = 0;
    json_t *adapters = NULL;
    if (!o || json_unpack_ex(o, &je, 0, "{s:s, s:s, s:s, s:I, s?F, s?s, s?s, s?o}", "name", &name, "tag", &tag, "digest",
                             &digest, "size", &size, "created", &created, "arch", &arch, "kind", &kind, "adapters",
                             &adapters) != 0) {
        json_decref(o);
        return slm_err(err, err_len, "manifest %s is damaged: %s", path, je.text);
    }
    memset(e, 0, sizeof *e);
    if (ad) memset(ad, 0, sizeof *ad);
    if (strcmp(kind, "model") && strcmp(kind, "adapter")) {
        json_decref(o);
        return slm_err(err, err_len, "manifest %s is damaged: kind \"%.40s\"", path, kind);
    }
    snprintf(e->kind, sizeof e->kind, "%s", kind);
    if (adapters && (!json_is_array(adapters) || json_array_size(adapters) > SLM_MODELS_MAX_ADAPTERS)) {
        json_decref(o);
        return slm_err(err, err_len, "manifest %s is damaged: 'adapters'", path);
    }
    size_t ai;
    json_t *av;
    json_array_foreach(adapters, ai, av) {
        const char *d = NULL;
        double sc = 1.0;
        if (json_unpack(av, "{s:s, s?F}", "digest", &d, "scale", &sc) != 0 || strncmp(d, "sha256:", 7) ||
            strlen(d) != 71 || !isfinite(sc)) {
            json_decref(o);
            return slm_err(err, err_len, "manifest %s is damaged: 'adapters'[%zu]", path, ai);
        }
        if (ad) {
            snprintf(ad->digest[ai], sizeof ad->digest[ai], "%s", d);
            ad->scale[ai] = (float)sc;
            ad->n++;
        }
        e->n_adapters++;
    }
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->tag, sizeof e->tag, "%s", tag);
    snprintf(e->digest, sizeof e->digest, "%s", digest);
    snprintf(e->arch, sizeof e->arch, "%s", arch);
    e->size = size > 0 ? (uint64_t)size : 0;
    e->created = created;
    json_decref(o);
    return 0;
}

/* Copies src into a temporary blob while hashing it, then renames it to its digest. */
static int store_blob(const char *data_dir, const char *src, char *digest, uint64_t *size, char *err, size_t err_len) {
    char dir[PATH_MAX], tmp[PATH_MAX + 32], final[PATH_MAX + 96];
    snprintf(dir, sizeof dir, "%s/models/blobs", data_dir);
    if (store_mkdirs(dir, err, err_len)) return -1;
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return slm_err(err, err_len, "cannot open %s: %s", src, strerror(errno));
    snprintf(tmp, sizeof tmp, "%s/.partial-XXXXXX", dir);
    int out = mkstemp(tmp);
    if (out < 0) {
        close(in);
        return slm_err(err, err_len, "cannot create a file in %s: %s", dir, strerror(errno));
    }
    unsigned char *buf = malloc(COPY_CHUNK);
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    uint64_t total = 0;
    int rc = buf ? 0 : slm_err(err, err_len, "out of memory");
    while (rc == 0) {
        ssize_t n = read(in, buf, COPY_CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = slm_err(err, err_len, "cannot read %s: %s", src, strerror(errno));
        if (n <= 0) break;
        crypto_hash_sha256_update(&st, buf, (unsigned long long)n);
        for (ssize_t off = 0; rc == 0 && off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) rc = slm_err(err, err_len, "cannot write to %s: %s", dir, w < 0 ? strerror(errno) : "disk full");
            else off += w;
        }
        total += (uint64_t)n;
    }
    free(buf);
    close(in);
    if (rc == 0 && fsync(out) != 0) rc = slm_err(err, err_len, "cannot sync %s: %s", tmp, strerror(errno));
    close(out);
    if (rc == 0) {
        unsigned char d[32];
        crypto_hash_sha256_final(&st, d);
        char hex[65];
        hex_of(d, hex);
        snprintf(digest, 72, "sha256:%s", hex);
        snprintf(final, sizeof final, "%s/sha256-%s", dir, hex);
        chmod(tmp, 0644);
        if (rename(tmp, final) != 0) rc = slm_err(err, err_len, "cannot store the blob %s: %s", final, strerror(errno));
        *size = total;
    }
    if (rc) unlink(tmp);
    return rc;
}

int slm_models_put_blob(const char *data_dir, const char *digest, const void *data, size_t len, char *err,
                        size_t err_len) {
    char final[PATH_MAX + 96];
    if (!digest || strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 71 || strspn(digest + 7, "0123456789abcdef") != 64)
        return slm_err(err, err_len, "digest '%.80s' is not sha256:<64 lower-case hex>", digest ? digest : "");
    if (sodium_init() < 0) return slm_err(err, err_len, "libsodium failed to start");
    unsigned char d[32];
    char hex[65];
    crypto_hash_sha256(d, data, len);
    hex_of(d, hex);
    if (strcmp(hex, digest + 7) != 0)
        return slm_err(err, err_len, "the bytes hash to sha256:%s, not %s", hex, digest);
    if (slm_models_blob_path(data_dir, digest, final, sizeof final)) return 0;
    char dir[PATH_MAX], tmp[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/models/blobs", data_dir);
    if (store_mkdirs(dir, err, err_len)) return -1;
    snprintf(tmp, sizeof tmp, "%s/.partial-XXXXXX", dir);
    int fd = mkstemp(tmp);
    if (fd < 0) return slm_err(err, err_len, "cannot create a file in %s: %s", dir, strerror(errno));
    int rc = 0;
    for (size_t off = 0; rc == 0 && off < len;) {
        ssize_t w = write(fd, (const char *)data + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) rc = slm_err(err, err_len, "cannot write to %s: %s", dir, w < 0 ? strerror(errno) : "disk full");
        else off += (size_t)w;
    }
    if (rc == 0 && fsync(fd) != 0) rc = slm_err(err, err_len, "cannot sync %s: %s", tmp, strerror(errno));
    close(fd);
    chmod(tmp, 0644);
    if (rc == 0 && rename(tmp, final) != 0) rc = slm_err(err, err_len, "cannot store the blob %s: %s", final, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}

int slm_models_tag_blob(const char *data_dir, const char *digest, const char *ref, slm_model_entry *entry, char *err,
                        size_t err_len) {
    return slm_models_tag_blob_extras(data_dir, digest, ref, NULL, entry, err, err_len);
}

int slm_models_tag_blob_extras(const char *data_dir, const char *digest, const char *ref, const slm_model_extras *x,
                               slm_model_entry *entry, char *err, size_t err_len) {
    slm_model_entry e = {0};
    if (extras_ok(x, err, err_len)) return -1;
    char path[PATH_MAX + 96];
    if (slm_models_parse_name(ref, e.name, sizeof e.name, e.tag, sizeof e.tag, err, err_len)) return -1;
    if (!slm_models_blob_path(data_dir, digest, path, sizeof path))
        return slm_err(err, err_len, "no blob %s in the store", digest);
    struct stat sb;
    if (stat(path, &sb) != 0) return slm_err(err, err_len, "cannot stat %s: %s", path, strerror(errno));
    if (gguf_identity(path, e.arch, sizeof e.arch, e.kind, sizeof e.kind, err, err_len)) return -1;
    snprintf(e.digest, sizeof e.digest, "%s", digest);
    e.size = (uint64_t)sb.st_size;
    e.created = (double)time(NULL);
    if (write_manifest(data_dir, &e, x, NULL, err, err_len)) return -1;
    if (entry) *entry = e;
    return 0;
}

int slm_models_create(const char *data_dir, const char *ref, const char *base_digest, const char *const *adapter_digests,
                      const float *scales, int n_adapters, const slm_model_extras *x, slm_model_entry *entry, char *err,
                      size_t err_len) {
    if (n_adapters < 0 || n_adapters > SLM_MODELS_MAX_ADAPTERS)
        return slm_err(err, err_len, "%d adapters (at most %d)", n_adapters, SLM_MODELS_MAX_ADAPTERS);
    slm_model_entry e = {0};
    slm_model_adapters ad = {0};
    if (extras_ok(x, err, err_len)) return -1;
    if (slm_models_parse_name(ref, e.name, sizeof e.name, e.tag, sizeof e.tag, err, err_len)) return -1;
    char path[PATH_MAX + 96];
    struct stat sb;
    if (!slm_models_blob_path(data_dir, base_digest, path, sizeof path) || stat(path, &sb) != 0)
        return slm_err(err, err_len, "no blob %s in the store", base_digest);
    if (gguf_identity(path, e.arch, sizeof e.arch, e.kind, sizeof e.kind, err, err_len)) return -1;
    if (strcmp(e.kind, "model")) return slm_err(err, err_len, "%s is a LoRA adapter, not a base model", base_digest);
    for (int i = 0; i < n_adapters; i++) {
        char apath[PATH_MAX + 96], aarch[32], akind[16];
        float sc = scales ? scales[i] : 1.0f;
        if (!isfinite(sc)) return slm_err(err, err_len, "adapter %d: the scale is not a finite number", i);
        if (!slm_models_blob_path(data_dir, adapter_digests[i], apath, sizeof apath) || access(apath, R_OK) != 0)
            return slm_err(err, err_len, "no blob %s in the store", adapter_digests[i]);
        if (gguf_identity(apath, aarch, sizeof aarch, akind, sizeof akind, err, err_len)) return -1;
        if (strcmp(akind, "adapter")) return slm_err(err, err_len, "%s is not a LoRA adapter", adapter_digests[i]);
        if (strcmp(aarch, e.arch))
            return slm_err(err, err_len, "the adapter %s is for architecture \"%s\", the base is \"%s\"", adapter_digests[i],
                           aarch, e.arch);
        snprintf(ad.digest[i], sizeof ad.digest[i], "%s", adapter_digests[i]);
        ad.scale[i] = sc;
    }
    e.n_adapters = ad.n = n_adapters;
    snprintf(e.digest, sizeof e.digest, "%s", base_digest);
    e.size = (uint64_t)sb.st_size;
    e.created = (double)time(NULL);
    if (write_manifest(data_dir, &e, x, &ad, err, err_len)) return -1;
    if (entry) *entry = e;
    return 0;
}

int slm_models_get_adapters(const char *data_dir, const char *ref, slm_model_adapters *out, char *err, size_t err_len) {
    char name[72], tag[72], mpath[PATH_MAX + 160];
    memset(out, 0, sizeof *out);
    if (slm_models_parse_name(ref, name, sizeof name, tag, sizeof tag, err, err_len)) return -1;
    manifest_path(data_dir, name, tag, mpath, sizeof mpath);
    if (access(mpath, F_OK) != 0) return 0;
    slm_model_entry e;
    return read_manifest(mpath, &e, out, err, err_len) ? -1 : 1;
}

int slm_models_import(const char *data_dir, const char *gguf_path, const char *ref, slm_model_entry *entry, char *err,
                      size_t err_len) {
    char name[72], tag[72], arch[32], kind[16], digest[72];
    uint64_t size = 0;
    if (slm_models_parse_name(ref, name, sizeof name, tag, sizeof tag, err, err_len)) return -1;
    if (gguf_identity(gguf_path, arch, sizeof arch, kind, sizeof kind, err, err_len)) return -1;
    if (sodium_init() < 0) return slm_err(err, err_len, "libsodium failed to start");
    if (store_blob(data_dir, gguf_path, digest, &size, err, err_len)) return -1;
    return slm_models_tag_blob(data_dir, digest, ref, entry, err, err_len);
}

static int cmp_entry(const void *a, const void *b) {
    const slm_model_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->tag, y->tag);
}

int slm_models_list(const char *data_dir, slm_model_entry **out, char *err, size_t err_len) {
    *out = NULL;
    char root[PATH_MAX + 32];
    snprintf(root, sizeof root, "%s/models/manifests", data_dir);
    DIR *d = opendir(root);
    if (!d) return errno == ENOENT ? 0 : slm_err(err, err_len, "cannot read %s: %s", root, strerror(errno));
    slm_model_entry *v = NULL;
    int n = 0, cap = 0, rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char sub[PATH_MAX + 400];
        snprintf(sub, sizeof sub, "%s/%s", root, de->d_name);
        DIR *t = opendir(sub);
        if (!t) continue;
        struct dirent *te;
        while (rc == 0 && (te = readdir(t))) {
            size_t len = strlen(te->d_name);
            if (te->d_name[0] == '.' || len < 6 || strcmp(te->d_name + len - 5, ".json") != 0) continue;
            char path[PATH_MAX + 800];
            snprintf(path, sizeof path, "%s/%s", sub, te->d_name);
            if (n == cap) {
                cap = cap ? 2 * cap : 16;
                slm_model_entry *g = realloc(v, sizeof *g * (size_t)cap);
                if (!g) {
                    rc = slm_err(err, err_len, "out of memory");
                    break;
                }
                v = g;
            }
            if (read_manifest(path, &v[n], NULL, err, err_len) == 0) n++;
            else rc = -1;
        }
        closedir(t);
    }
    closedir(d);
    if (rc) {
        free(v);
        return -1;
    }
    if (n > 1) qsort(v, (size_t)n, sizeof *v, cmp_entry); /* v is NULL when there are none */
    *out = v;
    return n;
}

int slm_models_find(const char *data_dir, const char *ref, slm_model_entry *entry, char *path, char *err,
                    size_t err_len) {
    char name[72], tag[72], mpath[PATH_MAX + 160];
    if (slm_models_parse_name(ref, name, sizeof name, tag, sizeof tag, err, err_len)) return -1;
    manifest_path(data_dir, name, tag, mpath, sizeof mpath);
    if (access(mpath, F_OK) != 0) return 0;
    slm_model_entry e;
    if (read_manifest(mpath, &e, NULL, err, err_len)) return -1;
    char blob[PATH_MAX + 96];
    if (!slm_models_blob_path(data_dir, e.digest, blob, sizeof blob))
        return slm_err(err, err_len, "model %s:%s names blob %s, which is missing from the store", name, tag, e.digest);
    size_t blob_len = strlen(blob);
    if (blob_len >= PATH_MAX) return slm_err(err, err_len, "the store's path is too long");
    if (path) memcpy(path, blob, blob_len + 1);
    if (entry) *entry = e;
    return 1;
}

/* Removes every blob no manifest names (partial downloads older than a day too). */
static void collect_garbage(const char *data_dir) {
    slm_model_entry *v = NULL;
    char err[256];
    int n = slm_models_list(data_dir, &v, err, sizeof err);
    if (n < 0) return;
    char dir[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/models/blobs", data_dir);
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (strncmp(de->d_name, "sha256-", 7) != 0) continue;
            bool used = false;
            for (int i = 0; i < n && !used; i++) {
                used = strcmp(v[i].digest + 7, de->d_name + 7) == 0;
                char ref[160];
                slm_model_adapters ad;
                snprintf(ref, sizeof ref, "%s:%s", v[i].name, v[i].tag);
                if (!used && v[i].n_adapters > 0 && slm_models_get_adapters(data_dir, ref, &ad, NULL, 0) == 1)
                    for (int k = 0; k < ad.n && !used; k++) used = strcmp(ad.digest[k] + 7, de->d_name + 7) == 0;
            }
            if (!used) {
                char p[PATH_MAX + 400];
                snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
                unlink(p);
            }
        }
        closedir(d);
    }
    free(v);
}

int slm_models_rm(const char *data_dir, const char *ref, char *err, size_t err_len) {
    char name[72], tag[72], mpath[PATH_MAX + 160];
    if (slm_models_parse_name(ref, name, sizeof name, tag, sizeof tag, err, err_len)) return -1;
    manifest_path(data_dir, name, tag, mpath, sizeof mpath);
    if (unlink(mpath) != 0) {
        if (errno == ENOENT) return 0;
        return slm_err(err, err_len, "cannot remove %s: %s", mpath, strerror(errno));
    }
    char dir[PATH_MAX + 100];
    snprintf(dir, sizeof dir, "%s/models/manifests/%s", data_dir, name);
    rmdir(dir); /* only when it was the last tag */
    collect_garbage(data_dir);
    return 1;
}

int slm_models_cp(const char *data_dir, const char *src, const char *dst, char *err, size_t err_len) {
    slm_model_entry e;
    int found = slm_models_find(data_dir, src, &e, NULL, err, err_len);
    if (found <= 0) return found == 0 ? slm_err(err, err_len, "no model named '%s' in the store", src) : -1;
    slm_model_entry d = e;
    if (slm_models_parse_name(dst, d.name, sizeof d.name, d.tag, sizeof d.tag, err, err_len)) return -1;
    d.created = (double)time(NULL);
    slm_model_extras x = {0};
    slm_model_adapters ad;
    if (slm_models_get_adapters(data_dir, src, &ad, err, err_len) < 0) return -1;
    if (slm_models_get_extras(data_dir, src, &x, err, err_len) < 0) return -1;
    int rc = write_manifest(data_dir, &d, &x, &ad, err, err_len);
    slm_models_extras_free(&x);
    return rc;
}

void slm_models_extras_free(slm_model_extras *x) {
    if (!x) return;
    free(x->template_text);
    free(x->system);
    free(x->params);
    memset(x, 0, sizeof *x);
}

int slm_models_get_extras(const char *data_dir, const char *ref, slm_model_extras *x, char *err, size_t err_len) {
    memset(x, 0, sizeof *x);
    char name[72], tag[72], mpath[PATH_MAX + 160];
    if (slm_models_parse_name(ref, name, sizeof name, tag, sizeof tag, err, err_len)) return -1;
    manifest_path(data_dir, name, tag, mpath, sizeof mpath);
    if (access(mpath, F_OK) != 0) return 0;
    json_error_t je;
    json_t *o = json_load_file(mpath, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(o)) {
        json_decref(o);
        return slm_err(err, err_len, "manifest %s is damaged: %s", mpath, je.text);
    }
    const char *keys[3] = {"template", "system", "params"};
    char **dst[3] = {&x->template_text, &x->system, &x->params};
    int rc = 1;
    for (int i = 0; i < 3 && rc == 1; i++) {
        json_t *v = json_object_get(o, keys[i]);
        if (!v) continue;
        if (!json_is_string(v)) rc = slm_err(err, err_len, "manifest %s: '%s' is not a string", mpath, keys[i]);
        else if (!(*dst[i] = strdup(json_string_value(v)))) rc = slm_err(err, err_len, "out of memory");
    }
    json_decref(o);
    if (rc != 1) slm_models_extras_free(x);
    return rc;
}

int slm_models_resolve(const char *data_dir, const char *arg, char *out, size_t cap, char *err, size_t err_len) {
    struct stat sb;
    if (stat(arg, &sb) == 0 && S_ISREG(sb.st_mode)) {
        snprintf(out, cap, "%s", arg);
        return 0;
    }
    char e2[300] = "";
    char path[PATH_MAX];
    int found = data_dir ? slm_models_find(data_dir, arg, NULL, path, e2, sizeof e2) : 0;
    if (found == 1) {
        snprintf(out, cap, "%s", path);
        return 0;
    }
    if (found < 0 && strstr(e2, "expected NAME[:TAG]") == NULL) return slm_err(err, err_len, "%s", e2);
    return slm_err(err, err_len, "model '%.200s' is neither a file nor a model in the store%s%s", arg,
                   data_dir ? " at " : "", data_dir ? data_dir : "");
}

/* ---------- bundles ---------- */

static int add_file(struct archive *a, const char *name, const char *path, char *err, size_t err_len) {
    struct stat sb;
    if (stat(path, &sb) != 0) return slm_err(err, err_len, "cannot stat %s: %s", path, strerror(errno));
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, name);
    archive_entry_set_size(e, sb.st_size);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, sb.st_mtime, 0);
    int rc = archive_write_header(a, e) == ARCHIVE_OK ? 0 : slm_err(err, err_len, "%s", archive_error_string(a));
    archive_entry_free(e);
    int fd = rc ? -1 : open(path, O_RDONLY | O_CLOEXEC);
    if (!rc && fd < 0) rc = slm_err(err, err_len, "cannot open %s: %s", path, strerror(errno));
    char *buf = rc ? NULL : malloc(COPY_CHUNK);
    if (!rc && !buf) rc = slm_err(err, err_len, "out of memory");
    while (!rc) {
        ssize_t n = read(fd, buf, COPY_CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = slm_err(err, err_len, "cannot read %s: %s", path, strerror(errno));
        if (n <= 0) break;
        if (archive_write_data(a, buf, (size_t)n) != n) rc = slm_err(err, err_len, "%s", archive_error_string(a));
    }
    free(buf);
    if (fd >= 0) close(fd);
    return rc;
}

int slm_models_bundle_export(const char *data_dir, const char *const *refs, int n_refs, const char *tar_path, char *err,
                             size_t err_len) {
    if (n_refs <= 0) return slm_err(err, err_len, "no model to export");
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.partial", tar_path);
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    if (archive_write_open_filename(a, tmp) != ARCHIVE_OK) {
        slm_err(err, err_len, "cannot write %s: %s", tmp, archive_error_string(a));
        archive_write_free(a);
        return -1;
    }
    int rc = 0;
    for (int i = 0; rc == 0 && i < n_refs; i++) {
        slm_model_entry e;
        char blob[PATH_MAX], mpath[PATH_MAX + 160], name[300];
        int found = slm_models_find(data_dir, refs[i], &e, blob, err, err_len);
        if (found <= 0) {
            rc = found == 0 ? slm_err(err, err_len, "no model named '%s' in the store", refs[i]) : -1;
            break;
        }
        manifest_path(data_dir, e.name, e.tag, mpath, sizeof mpath);
        snprintf(name, sizeof name, "manifests/%s/%s.json", e.name, e.tag);
        rc = add_file(a, name, mpath, err, err_len);
        bool seen = false; /* a blob shared by two names goes in once */
        for (int j = 0; j < i && !seen; j++) {
            slm_model_entry o;
            if (slm_models_find(data_dir, refs[j], &o, NULL, NULL, 0) == 1) seen = strcmp(o.digest, e.digest) == 0;
        }
        snprintf(name, sizeof name, "blobs/sha256-%.64s", e.digest + 7);
        if (!rc && !seen) rc = add_file(a, name, blob, err, err_len);
        slm_model_adapters ad = {0};
        if (!rc && e.n_adapters > 0 && slm_models_get_adapters(data_dir, refs[i], &ad, err, err_len) < 0) rc = -1;
        for (int k = 0; k < ad.n && !rc; k++) { /* a model made with adapters carries them */
            char apath[PATH_MAX + 96];
            bool again = false;
            for (int j = 0; j < k; j++) again |= strcmp(ad.digest[j], ad.digest[k]) == 0;
            if (again || !slm_models_blob_path(data_dir, ad.digest[k], apath, sizeof apath)) continue;
            snprintf(name, sizeof name, "blobs/sha256-%.64s", ad.digest[k] + 7);
            rc = add_file(a, name, apath, err, err_len);
        }
    }
    if (archive_write_close(a) != ARCHIVE_OK && rc == 0) rc = slm_err(err, err_len, "%s", archive_error_string(a));
    archive_write_free(a);
    if (rc == 0 && rename(tmp, tar_path) != 0) rc = slm_err(err, err_len, "cannot write %s: %s", tar_path, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}

/* Extracts one blob entry into the store's blob folder, checking it hashes to its name. */
static int import_blob(struct archive *a, const char *data_dir, const char *hex, char *err, size_t err_len) {
    char dir[PATH_MAX + 32], tmp[PATH_MAX + 64], final[PATH_MAX + 128];
    snprintf(dir, sizeof dir, "%s/models/blobs", data_dir);
    if (store_mkdirs(dir, err, err_len)) return -1;
    snprintf(tmp, sizeof tmp, "%s/.partial-XXXXXX", dir);
    int fd = mkstemp(tmp);
    if (fd < 0) return slm_err(err, err_len, "cannot create a file in %s: %s", dir, strerror(errno));
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    int rc = 0;
    const void *buf;
    size_t size;
    la_int64_t off;
    for (;;) {
        int r = archive_read_data_block(a, &buf, &size, &off);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK) {
            rc = slm_err(err, err_len, "bundle: %s", archive_error_string(a));
            break;
        }
        crypto_hash_sha256_update(&st, buf, size);
        if (pwrite(fd, buf, size, off) != (ssize_t)size) {
            rc = slm_err(err, err_len, "cannot write %s: %s", tmp, strerror(errno));
            break;
        }
    }
    if (rc == 0 && fsync(fd) != 0) rc = slm_err(err, err_len, "cannot sync %s", tmp);
    close(fd);
    if (rc == 0) {
        unsigned char d[32];
        char got[65];
        crypto_hash_sha256_final(&st, d);
        hex_of(d, got);
        if (strcmp(got, hex) != 0)
            rc = slm_err(err, err_len, "bundle: blob sha256-%.16s… is corrupt (its content hashes to %.16s…)", hex, got);
    }
    snprintf(final, sizeof final, "%s/sha256-%s", dir, hex);
    if (rc == 0) {
        chmod(tmp, 0644);
        if (rename(tmp, final) != 0) rc = slm_err(err, err_len, "cannot store %s: %s", final, strerror(errno));
    }
    if (rc) unlink(tmp);
    return rc;
}

int slm_models_bundle_import(const char *data_dir, const char *tar_path, char *err, size_t err_len) {
    if (sodium_init() < 0) return slm_err(err, err_len, "libsodium failed to start");
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, tar_path, 1 << 16) != ARCHIVE_OK) {
        slm_err(err, err_len, "cannot read bundle %s: %s", tar_path, archive_error_string(a));
        archive_read_free(a);
        return -1;
    }
    /* manifests are kept in memory until every blob is in and checked */
    enum { MAX_MODELS = 256 };
    slm_model_entry *entries = calloc(MAX_MODELS, sizeof *entries);
    slm_model_extras *extras = calloc(MAX_MODELS, sizeof *extras); /* template, system, params travel along */
    int n = 0, rc = entries && extras ? 0 : slm_err(err, err_len, "out of memory");
    struct archive_entry *e;
    while (rc == 0) {
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK) {
            rc = slm_err(err, err_len, "bundle %s: %s", tar_path, archive_error_string(a));
            break;
        }
        const char *p = archive_entry_pathname(e);
        if (!p || archive_entry_filetype(e) != AE_IFREG) continue;
        if (strncmp(p, "blobs/sha256-", 13) == 0 && strlen(p + 13) == 64 && strspn(p + 13, "0123456789abcdef") == 64) {
            char hex[65];
            snprintf(hex, sizeof hex, "%s", p + 13);
            rc = import_blob(a, data_dir, hex, err, err_len);
        } else if (strncmp(p, "manifests/", 10) == 0) {
            if (archive_entry_size(e) > 65536) {
                rc = slm_err(err, err_len, "bundle: manifest %.100s is too large", p);
                break;
            }
            char text[65537];
            la_ssize_t got = archive_read_data(a, text, sizeof text - 1);
            if (got < 0) {
                rc = slm_err(err, err_len, "bundle: %s", archive_error_string(a));
                break;
            }
            text[got] = 0;
            json_error_t je;
            json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &je);
            const char *name = NULL, *tag = NULL, *digest = NULL;
            if (!o || json_unpack(o, "{s:s, s:s, s:s}", "name", &name, "tag", &tag, "digest", &digest) != 0) {
                json_decref(o);
                rc = slm_err(err, err_len, "bundle: manifest %.100s is not valid", p);
                break;
            }
            if (n == MAX_MODELS) {
                json_decref(o);
                rc = slm_err(err, err_len, "bundle: more than %d models", MAX_MODELS);
                break;
            }
            char ref[160];
            snprintf(ref, sizeof ref, "%s:%s", name, tag);
            if (slm_models_parse_name(ref, entries[n].name, sizeof entries[n].name, entries[n].tag,
                                      sizeof entries[n].tag, err, err_len) != 0) {
                json_decref(o);
                rc = -1;
                break;
            }
            if (strlen(digest) >= sizeof entries[n].digest) { /* said, not a silent -1: found by fuzz_bundle */
                json_decref(o);
                rc = slm_err(err, err_len, "bundle: manifest %.100s: digest is too long", p);
                break;
            }
            const char *keys[3] = {"template", "system", "params"};
            char **dst[3] = {&extras[n].template_text, &extras[n].system, &extras[n].params};
            for (int k = 0; k < 3 && rc == 0; k++) {
                json_t *v = json_object_get(o, keys[k]);
                if (v && !json_is_string(v)) rc = slm_err(err, err_len, "bundle: manifest %.100s: '%s' is not a string", p, keys[k]);
                else if (v && !(*dst[k] = strdup(json_string_value(v)))) rc = slm_err(err, err_len, "out of memory");
            }
            snprintf(entries[n++].digest, sizeof entries[0].digest, "%s", digest);
            json_decref(o);
        } else {
            rc = slm_err(err, err_len, "bundle: unexpected entry '%.100s' (only manifests/ and blobs/)", p);
        }
    }
    archive_read_free(a);
    /* every manifest's blob must be present and verified before any name appears */
    char blob[PATH_MAX + 96];
    for (int i = 0; rc == 0 && i < n; i++)
        if (!slm_models_blob_path(data_dir, entries[i].digest, blob, sizeof blob))
            rc = slm_err(err, err_len, "bundle: model %s:%s needs blob %s, which the bundle does not hold", entries[i].name,
                         entries[i].tag, entries[i].digest);
    for (int i = 0; rc == 0 && i < n; i++) {
        char ref[160];
        snprintf(ref, sizeof ref, "%s:%s", entries[i].name, entries[i].tag);
        rc = slm_models_tag_blob_extras(data_dir, entries[i].digest, ref, &extras[i], NULL, err, err_len);
    }
    for (int i = 0; extras && i < n; i++) slm_models_extras_free(&extras[i]);
    free(extras);
    free(entries);
    if (rc) {
        collect_garbage(data_dir); /* blobs this import brought in and nothing names */
        return -1;
    }
    return n;
}
