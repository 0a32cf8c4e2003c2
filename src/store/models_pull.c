/* Pulls into the model store: the resumable, verified download every source uses, plain URLs, and
 * the choice of source (slm_models_pull_source). */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slm_engine.h"
#include "slm_models.h"
#include "slm_net.h"
#include "store/models_impl.h"
#include "store/store_impl.h"
#include "util/err.h"

#define MAX_REDIRECTS 5

void models_emit(const slm_models_pull_opts *o, const char *status, const char *digest, uint64_t total,
                 uint64_t completed, double rate) {
    if (!o || !o->on_event) return;
    slm_models_event ev = {.status = status, .digest = digest, .total = total, .completed = completed, .bytes_per_s = rate};
    o->on_event(o->user, &ev);
}

void models_one_line(char *err) {
    for (unsigned char *p = (unsigned char *)err; p && *p; p++)
        if (*p < 0x20 || *p == 0x7f) *p = '?';
}

void models_hash_bytes(const void *data, size_t n, char *hex) {
    unsigned char d[32];
    crypto_hash_sha256(d, data, n);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

int models_hash_file(const char *path, char *hex, char *err, size_t err_len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return slm_err(err, err_len, "cannot open %s: %s", path, strerror(errno));
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    unsigned char *buf = malloc((size_t)1 << 20);
    int rc = buf ? 0 : slm_err(err, err_len, "out of memory");
    for (ssize_t n; !rc && (n = read(fd, buf, (size_t)1 << 20)) != 0;) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = slm_err(err, err_len, "cannot read %s: %s", path, strerror(errno));
        else crypto_hash_sha256_update(&st, buf, (unsigned long long)n);
    }
    free(buf);
    close(fd);
    if (rc) return -1;
    unsigned char d[32];
    crypto_hash_sha256_final(&st, d);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    return 0;
}

bool models_url_escape(const char *s, bool keep_slash, char *out, size_t cap) {
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool plain = isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~' || (keep_slash && *p == '/');
        if (o + (plain ? 1 : 3) >= cap) return false;
        if (plain) out[o++] = (char)*p;
        else o += (size_t)snprintf(out + o, cap - o, "%%%02X", *p);
    }
    if (o >= cap) return false;
    out[o] = 0;
    return true;
}

bool models_name_from(const char *text, size_t n, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; i < n && o < 64 && o + 1 < cap; i++) {
        char c = text[i];
        bool ok = isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-';
        out[o++] = ok ? c : '-';
    }
    out[o] = 0;
    while (o > 0 && (out[0] == '.' || out[0] == '-')) memmove(out, out + 1, o--); /* names start with a letter or digit */
    return o > 0;
}

int models_partial_path(const char *data_dir, const char *key, char *out, size_t cap, char *err, size_t err_len) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/models/blobs", data_dir);
    if (store_mkdirs(dir, err, err_len)) return -1;
    if (strlen(key) == 64 && strspn(key, "0123456789abcdef") == 64) {
        snprintf(out, cap, "%s/.pull-%s", dir, key);
    } else {
        char hex[65];
        models_hash_bytes(key, strlen(key), hex);
        snprintf(out, cap, "%s/.pull-url-%.32s", dir, hex);
    }
    return 0;
}

int models_adopt_blob(const char *data_dir, const char *partial, const char *hex, char *err, size_t err_len) {
    char final[PATH_MAX + 96];
    snprintf(final, sizeof final, "%s/models/blobs/sha256-%s", data_dir, hex);
    chmod(partial, 0644);
    if (rename(partial, final) != 0) return slm_err(err, err_len, "cannot store %s: %s", final, strerror(errno));
    return 0;
}

/* ---------- the resumable download ---------- */

typedef struct sink {
    int fd;
    uint64_t have, got, limit;
    bool failed, too_long;
    const models_fetch *f;
    const slm_net_response *resp; /* its status is known before the first body byte */
    bool checked;
    double t0, last;
} sink;

static bool on_body(void *user, const char *data, size_t n) {
    sink *s = user;
    if (!s->checked) {
        s->checked = true;
        if (s->resp->status == 200 && s->have > 0) {
            /* the server ignored the range and sends the whole file: start the partial file over */
            if (ftruncate(s->fd, 0) != 0) {
                s->failed = true;
                return false;
            }
            s->have = 0;
        }
    }
    if (s->limit && s->have + s->got + n > s->limit) {
        s->too_long = true;
        return false;
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = write(s->fd, data + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            s->failed = true;
            return false;
        }
        off += (size_t)w;
    }
    s->got += n;
    double now = slm_now();
    if (now - s->last >= 0.2) {
        s->last = now;
        char status[96]; /* Ollama's words: "pulling" and the digest's first 12 hex digits */
        snprintf(status, sizeof status, "pulling %.12s", s->f->label ? s->f->label + 7 : "file");
        models_emit(s->f->o, status, s->f->label, s->f->expect_size, s->have + s->got,
                    (double)s->got / (now - s->t0 > 1e-3 ? now - s->t0 : 1e-3));
    }
    return true;
}

static bool sink_cancel(void *user) {
    const sink *s = user;
    const slm_models_pull_opts *o = s->f->o;
    return o && o->should_cancel && o->should_cancel(o->user);
}

/* Joins a Location header to the URL it answered (absolute, or a path on the same origin). */
static int join_location(const char *base, const char *loc, char *out, size_t cap) {
    if (strncmp(loc, "http://", 7) == 0 || strncmp(loc, "https://", 8) == 0) {
        if (strlen(loc) >= cap) return -1;
        snprintf(out, cap, "%s", loc);
        return 0;
    }
    const char *scheme_end = strstr(base, "://");
    if (!scheme_end || loc[0] != '/') return -1;
    const char *path = strchr(scheme_end + 3, '/');
    size_t origin = path ? (size_t)(path - base) : strlen(base);
    if (origin + strlen(loc) >= cap) return -1;
    memcpy(out, base, origin);
    snprintf(out + origin, cap - origin, "%s", loc);
    return 0;
}

int models_fetch_file(models_fetch *f, char *hex_out, char *err, size_t err_len) {
    f->linked_etag[0] = 0;
    if (slm_net_air_gapped())
        return slm_err(err, err_len, "air-gapped mode: pulling models is disabled (bring them in with slm bundle import)");
    int fd = open(f->partial, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return slm_err(err, err_len, "cannot create %s: %s", f->partial, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        return slm_err(err, err_len, "another pull of the same file is running (%s)", f->partial);
    }
    char url[4096], host0[256], host[256];
    snprintf(url, sizeof url, "%s", f->url);
    slm_net_url_host(f->url, host0, sizeof host0);
    int rc = 0;
    for (int hop = 0;; hop++) {
        struct stat sb;
        if (fstat(fd, &sb) != 0) {
            rc = slm_err(err, err_len, "cannot stat %s: %s", f->partial, strerror(errno));
            break;
        }
        slm_net_response resp;
        sink s = {.fd = fd, .have = (uint64_t)sb.st_size, .limit = f->expect_size, .f = f, .resp = &resp, .t0 = slm_now()};
        if (f->expect_size && s.have == f->expect_size) break; /* complete already: only the hash is left */
        if (f->expect_size && s.have > f->expect_size) { /* longer than the blob: not a prefix of it */
            if (ftruncate(fd, 0) != 0) {
                rc = slm_err(err, err_len, "cannot truncate %s: %s", f->partial, strerror(errno));
                break;
            }
            s.have = 0;
        }
        char range[64];
        const char *headers[1];
        int n_headers = 0;
        if (s.have > 0) {
            snprintf(range, sizeof range, "Range: bytes=%llu-", (unsigned long long)s.have);
            headers[n_headers++] = range;
        }
        /* the token goes to the host it was issued for, never along a redirect to another one */
        bool same_host = strcmp(slm_net_url_host(url, host, sizeof host), host0) == 0;
        slm_net_request req = {.method = "GET", .url = url, .headers = headers, .n_headers = n_headers,
                               .bearer_token = same_host ? f->bearer : NULL, .first_byte_timeout_s = 60,
                               .idle_timeout_s = 60, .on_body = on_body, .should_cancel = sink_cancel, .user = &s};
        slm_net_result r = slm_net_perform(&req, &resp);
        if (hop == 0) {
            char etag[160];
            if (slm_net_response_header(&resp, "X-Linked-ETag", etag, sizeof etag)) {
                char *e = etag;
                if (e[0] == 'W' && e[1] == '/') e += 2;
                size_t n = strlen(e);
                if (n >= 2 && e[0] == '"' && e[n - 1] == '"') e[n - 1] = 0, e++;
                snprintf(f->linked_etag, sizeof f->linked_etag, "%s", e);
            }
        }
        int status = resp.status;
        char loc[4096] = "";
        bool redirect = r == SLM_NET_OK && (status == 301 || status == 302 || status == 303 || status == 307 || status == 308);
        if (redirect && !slm_net_response_header(&resp, "Location", loc, sizeof loc)) loc[0] = 0;
        if (s.failed) rc = slm_err(err, err_len, "cannot write %s: %s", f->partial, strerror(errno));
        else if (s.too_long)
            rc = slm_err(err, err_len, "%s sent more than the %llu bytes expected", host,
                         (unsigned long long)f->expect_size);
        else if (r != SLM_NET_OK)
            rc = slm_err(err, err_len, "download from %s %s: %s (the %llu bytes so far are kept: pull again to resume)",
                         host, slm_net_result_name(r), resp.error, (unsigned long long)(s.have + s.got));
        else if (redirect) {
            char next[4096];
            if (hop >= MAX_REDIRECTS) rc = slm_err(err, err_len, "download from %s: more than %d redirects", host0, MAX_REDIRECTS);
            else if (!loc[0] || join_location(url, loc, next, sizeof next))
                rc = slm_err(err, err_len, "download from %s: HTTP %d without a usable Location", host, status);
            else snprintf(url, sizeof url, "%s", next);
        } else if (status == 416 && s.have > 0) {
            /* nothing left to fetch: the partial file is complete (the hash will tell) */
        } else if (status == 404) {
            rc = slm_err(err, err_len, "download from %s: not found (HTTP 404)", host);
        } else if (status == 401 || status == 403) {
            rc = slm_err(err, err_len, "download from %s: access denied (HTTP %d)", host, status);
        } else if (status != 200 && status != 206) {
            rc = slm_err(err, err_len, "download from %s: HTTP %d", host, status);
        }
        slm_net_response_free(&resp);
        if (rc || !redirect) break;
    }
    if (rc == 0 && fsync(fd) != 0) rc = slm_err(err, err_len, "cannot sync %s", f->partial);
    close(fd);
    if (rc) return -1;
    if (models_hash_file(f->partial, hex_out, err, err_len)) return -1;
    if (f->want_hex && strcmp(hex_out, f->want_hex) != 0) {
        unlink(f->partial); /* a wrong file is no use to resume */
        return slm_err(err, err_len, "sha256 %s does not match the expected %s; nothing was kept", hex_out, f->want_hex);
    }
    return 0;
}

/* ---------- plain URLs ---------- */

/* A store name from the URL's file name (without .gguf). */
static bool name_from_url(const char *url, char *out, size_t cap) {
    const char *end = url + strcspn(url, "?#");
    const char *slash = end;
    while (slash > url && slash[-1] != '/') slash--;
    size_t n = (size_t)(end - slash);
    if (n > 5 && strncasecmp(end - 5, ".gguf", 5) == 0) n -= 5;
    return models_name_from(slash, n, out, cap);
}

int slm_models_source_name(const char *source, char *out, size_t cap, char *err, size_t err_len) {
    switch (slm_models_source_kind_of(source)) {
    case SLM_SOURCE_URL:
        return name_from_url(source, out, cap) ? 0 : slm_err(err, err_len, "cannot make a model name from '%.200s'", source);
    case SLM_SOURCE_HF: return models_hf_default_name(source, out, cap, err, err_len);
    case SLM_SOURCE_OCI: return models_oci_default_name(source, out, cap, err, err_len);
    default: return slm_err(err, err_len, "'%.200s' is not a URL, hf.co/ORG/REPO or HOST/NS/REPO[:TAG]", source);
    }
}

static int pull_url(const char *data_dir, const char *url, const slm_models_pull_opts *o, slm_model_entry *entry,
                    char *err, size_t err_len) {
    const char *want = o ? o->want_sha256 : NULL;
    if (want && (strlen(want) != 64 || strspn(want, "0123456789abcdef") != 64))
        return slm_err(err, err_len, "--sha256 must be 64 lower-case hex digits");
    char ref[160];
    if (o && o->name) snprintf(ref, sizeof ref, "%s", o->name);
    else if (!name_from_url(url, ref, sizeof ref))
        return slm_err(err, err_len, "cannot make a model name from '%.200s': give --name", url);
    char name[72], tag[72];
    if (slm_models_parse_name(ref, name, sizeof name, tag, sizeof tag, err, err_len)) return -1;
    char partial[PATH_MAX + 96], hex[65];
    /* the partial download is named after the URL, so a new run after a crash finds and resumes it */
    if (models_partial_path(data_dir, url, partial, sizeof partial, err, err_len)) return -1;
    models_fetch f = {.url = url, .partial = partial, .want_hex = want, .o = o};
    char e2[900];
    if (models_fetch_file(&f, hex, e2, sizeof e2))
        return slm_err(err, err_len, "download of %.200s: %s", url, e2);
    models_emit(o, "verifying sha256 digest", NULL, 0, 0, 0);
    char final[PATH_MAX + 96], digest[72];
    snprintf(final, sizeof final, "%s/models/blobs/sha256-%s", data_dir, hex);
    snprintf(digest, sizeof digest, "sha256:%s", hex);
    bool existed = access(final, F_OK) == 0; /* another name already holds this exact file */
    if (models_adopt_blob(data_dir, partial, hex, err, err_len)) return -1;
    models_emit(o, "writing manifest", NULL, 0, 0, 0);
    if (slm_models_tag_blob(data_dir, digest, ref, entry, err, err_len)) {
        if (!existed) unlink(final); /* not a GGUF slm can read: nothing stays */
        return -1;
    }
    models_emit(o, "success", NULL, 0, 0, 0);
    return 0;
}

slm_models_source_kind slm_models_source_kind_of(const char *s) {
    if (!s || !*s) return SLM_SOURCE_INVALID;
    if (strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0) return SLM_SOURCE_URL;
    if (strncmp(s, "hf.co/", 6) == 0 || strncmp(s, "huggingface.co/", 15) == 0) return SLM_SOURCE_HF;
    const char *slash = strchr(s, '/');
    if (!slash || slash == s) return SLM_SOURCE_INVALID;
    size_t host_len = (size_t)(slash - s);
    bool hostish = memchr(s, '.', host_len) || memchr(s, ':', host_len) ||
                   (host_len == 9 && strncmp(s, "localhost", 9) == 0);
    /* a host name starts with a letter or digit and holds only those, '.', '-' and a ":port" */
    hostish &= isalnum((unsigned char)s[0]) != 0;
    for (size_t i = 0; i < host_len; i++) hostish &= isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-' || s[i] == ':';
    return hostish ? SLM_SOURCE_OCI : SLM_SOURCE_INVALID;
}

int slm_models_pull_source(const char *data_dir, const char *source, const slm_models_pull_opts *o,
                           slm_model_entry *entry, char *err, size_t err_len) {
    if (sodium_init() < 0) return slm_err(err, err_len, "libsodium failed to start");
    slm_models_source_kind kind = slm_models_source_kind_of(source);
    if (kind == SLM_SOURCE_INVALID)
        return slm_err(err, err_len,
                       "'%.200s' is not a source to pull: expected an http(s) URL of a GGUF, hf.co/ORG/REPO[:QUANT] or "
                       "HOST[:PORT]/NAMESPACE/REPO[:TAG]",
                       source ? source : "");
    if (slm_net_air_gapped())
        return slm_err(err, err_len, "air-gapped mode: pulling models is disabled (bring them in with slm bundle import)");
    if (kind != SLM_SOURCE_URL && o && o->want_sha256)
        return slm_err(err, err_len, "--sha256 is for plain URLs: Hugging Face and registry sources carry their own digests");
    int rc = kind == SLM_SOURCE_URL  ? pull_url(data_dir, source, o, entry, err, err_len)
             : kind == SLM_SOURCE_HF ? models_pull_hf(data_dir, source, o, entry, err, err_len)
                                     : models_pull_oci(data_dir, source, o, entry, err, err_len);
    if (rc && err_len) models_one_line(err);
    return rc;
}

/* The first interface: a plain URL with a progress callback of bytes and speed. */
typedef struct legacy_progress {
    slm_models_progress_fn fn;
    void *user;
} legacy_progress;

static void legacy_event(void *user, const slm_models_event *ev) {
    legacy_progress *p = user;
    if (ev->digest || strncmp(ev->status, "pulling ", 8) == 0) p->fn(p->user, ev->completed, ev->bytes_per_s);
}

int slm_models_pull(const char *data_dir, const char *url, const char *ref, const char *want_sha256,
                    slm_models_progress_fn progress, void *user, slm_model_entry *entry, char *err, size_t err_len) {
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return slm_err(err, err_len, "'%.200s' is not an http(s) URL", url);
    legacy_progress lp = {progress, user};
    slm_models_pull_opts o = {.name = ref, .want_sha256 = want_sha256, .on_event = progress ? legacy_event : NULL,
                              .user = &lp};
    return slm_models_pull_source(data_dir, url, &o, entry, err, err_len);
}
