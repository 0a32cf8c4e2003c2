/* slm_models_pull: a GGUF over HTTP(S) into the model store, resumable, verified before visible. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slm_engine.h"
#include "slm_models.h"
#include "slm_net.h"
#include "store/store_impl.h"
#include "util/err.h"

typedef struct pull_sink {
    int fd;
    uint64_t have, got;
    bool failed;
    slm_models_progress_fn progress;
    void *user;
    double t0, last;
} pull_sink;

static bool on_body(void *user, const char *data, size_t n) {
    pull_sink *s = user;
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
    if (s->progress && now - s->last >= 0.2) {
        s->last = now;
        s->progress(s->user, s->have + s->got, s->got / (now - s->t0 > 1e-3 ? now - s->t0 : 1e-3));
    }
    return true;
}

/* sha256 of a file, streamed. */
static int hash_file(const char *path, char *hex, char *err, size_t err_len) {
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

int slm_models_pull(const char *data_dir, const char *url, const char *ref, const char *want_sha256,
                    slm_models_progress_fn progress, void *user, slm_model_entry *entry, char *err, size_t err_len) {
    char name[72], tag[72];
    if (slm_models_parse_name(ref, name, sizeof name, tag, sizeof tag, err, err_len)) return -1;
    if (want_sha256 && (strlen(want_sha256) != 64 || strspn(want_sha256, "0123456789abcdef") != 64))
        return slm_err(err, err_len, "--sha256 must be 64 lower-case hex digits");
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return slm_err(err, err_len, "'%.200s' is not an http(s) URL (Hugging Face and OCI references are not supported yet)",
                       url);
    if (sodium_init() < 0) return slm_err(err, err_len, "libsodium failed to start");
    /* the partial download is named after the URL, so a new run after a crash finds and resumes it */
    unsigned char d[32];
    crypto_hash_sha256(d, (const unsigned char *)url, strlen(url));
    char dir[PATH_MAX], partial[PATH_MAX + 96];
    snprintf(dir, sizeof dir, "%s/models/blobs", data_dir);
    if (store_mkdirs(dir, err, err_len)) return -1;
    snprintf(partial, sizeof partial, "%s/.pull-", dir);
    for (int i = 0; i < 16; i++) snprintf(partial + strlen(partial), 3, "%02x", d[i]);
    int fd = open(partial, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return slm_err(err, err_len, "cannot create %s: %s", partial, strerror(errno));
    struct stat sb;
    fstat(fd, &sb);
    pull_sink sink = {.fd = fd, .have = (uint64_t)sb.st_size, .progress = progress, .user = user, .t0 = slm_now()};
    char range[64];
    const char *headers[1];
    int n_headers = 0;
    if (sink.have > 0) {
        snprintf(range, sizeof range, "Range: bytes=%llu-", (unsigned long long)sink.have);
        headers[n_headers++] = range;
    }
    slm_net_request req = {.method = "GET", .url = url, .headers = headers, .n_headers = n_headers,
                           .first_byte_timeout_s = 60, .idle_timeout_s = 60, .on_body = on_body, .user = &sink};
    slm_net_response resp;
    slm_net_result r = slm_net_perform(&req, &resp);
    int rc = 0;
    if (r == SLM_NET_OK && resp.status == 200 && sink.have > 0) {
        /* the server ignored the range: what arrived is the whole file, after the old bytes */
        close(fd);
        slm_net_response_free(&resp);
        unlink(partial);
        return slm_models_pull(data_dir, url, ref, want_sha256, progress, user, entry, err, err_len);
    }
    if (sink.failed) rc = slm_err(err, err_len, "cannot write %s: %s", partial, strerror(errno));
    else if (r != SLM_NET_OK)
        rc = slm_err(err, err_len, "download of %.200s %s: %s (the %llu bytes so far are kept: run the pull again to resume)",
                     url, slm_net_result_name(r), resp.error, (unsigned long long)(sink.have + sink.got));
    else if (resp.status == 416 && sink.have > 0)
        rc = 0; /* nothing left to fetch: the partial file is complete */
    else if (resp.status != 200 && resp.status != 206)
        rc = slm_err(err, err_len, "download of %.200s: HTTP %d", url, resp.status);
    slm_net_response_free(&resp);
    if (rc == 0 && fsync(fd) != 0) rc = slm_err(err, err_len, "cannot sync %s", partial);
    close(fd);
    if (rc) return -1;
    char hex[65];
    if (hash_file(partial, hex, err, err_len)) return -1;
    if (want_sha256 && strcmp(hex, want_sha256) != 0) {
        unlink(partial); /* a wrong file is no use to resume */
        return slm_err(err, err_len, "download of %.200s: sha256 %s does not match the expected %s; nothing was kept",
                       url, hex, want_sha256);
    }
    char final[PATH_MAX + 96], digest[72];
    snprintf(final, sizeof final, "%s/sha256-%s", dir, hex);
    snprintf(digest, sizeof digest, "sha256:%s", hex);
    chmod(partial, 0644);
    bool existed = access(final, F_OK) == 0; /* another name already holds this exact file */
    if (rename(partial, final) != 0) return slm_err(err, err_len, "cannot store %s: %s", final, strerror(errno));
    if (slm_models_tag_blob(data_dir, digest, ref, entry, err, err_len)) {
        if (!existed) unlink(final); /* not a GGUF slm can read: nothing stays */
        return -1;
    }
    return 0;
}
