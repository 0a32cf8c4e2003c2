/* The audit log's writer: open (with crash recovery), append with group commit, rotation, HEAD. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "audit/audit_impl.h"
#include "util/err.h"

unsigned audit_test_sync_delay_us = 0;

/* A growable byte buffer for the batch being assembled. */
typedef struct batch_buf {
    char *p;
    size_t len, cap;
} batch_buf;

struct slm_audit {
    char data_dir[PATH_MAX];
    char dir[PATH_MAX]; /* <data_dir>/audit */
    int dir_fd, lock_fd, fd, head_fd;
    unsigned file_no;    /* the file being appended to */
    uint64_t file_size;  /* its size (only the leader touches fd and file_size) */
    size_t rotate_bytes;
    bool sign;
    unsigned char sk[crypto_sign_SECRETKEYBYTES], pk[crypto_sign_PUBLICKEYBYTES];
    char signer[AUDIT_SIGNER_HEX + 1];
    unsigned head_slot;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* under mu: */
    uint64_t last_seq;                  /* last seq assigned (queued or durable) */
    char last_hash[AUDIT_HASH_HEX + 1]; /* its hash: the next record's prev */
    batch_buf pending, spare;           /* lines queued for the next group commit; the leader's buffer */
    bool flushing;                      /* a leader is writing a batch */
    uint64_t durable_seq;
    bool failed;
    char failed_msg[300];
    slm_audit_stats stats;
};

static int write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) {
            errno = EIO;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int buf_reserve(batch_buf *b, size_t more) {
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void buf_put(batch_buf *b, const char *s, size_t n) {
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* mkdir -p, mode 0700 for what it creates. */
static int make_dirs(const char *path, char *err, size_t err_len) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return slm_err(err, err_len, "path too long: %s", path);
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
                return slm_err(err, err_len, "cannot create directory %s: %s", tmp, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return slm_err(err, err_len, "%s is not a directory", path);
    return 0;
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Writes `content` to dir/name without ever exposing a partial file: a temporary file, synced, then
 * linked into place (link, not rename: an existing file is never replaced). */
static int create_file_durably(const char *dir, const char *name, const char *content, mode_t mode, char *err,
                               size_t err_len) {
    char path[PATH_MAX], tmp[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path ||
        snprintf(tmp, sizeof tmp, "%s/.%s.tmp", dir, name) >= (int)sizeof tmp)
        return slm_err(err, err_len, "path too long in %s", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) return slm_err(err, err_len, "cannot create %s: %s", tmp, strerror(errno));
    if (fchmod(fd, mode) != 0 || write_all(fd, content, strlen(content)) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return slm_err(err, err_len, "cannot write %s: %s", tmp, strerror(e));
    }
    close(fd);
    if (link(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return slm_err(err, err_len, "cannot create %s: %s", path, strerror(e));
    }
    unlink(tmp);
    if (fsync_path(dir) != 0) return slm_err(err, err_len, "cannot sync %s: %s", dir, strerror(errno));
    return 0;
}

/* Loads <data_dir>/audit.key (signing stays on for a log that has one) or creates a key pair when
 * asked to sign. */
static int setup_keys(slm_audit *a, bool want_sign, char *err, size_t err_len) {
    char key_path[PATH_MAX + 16];
    snprintf(key_path, sizeof key_path, "%s/audit.key", a->data_dir);
    unsigned char pub[crypto_sign_PUBLICKEYBYTES];
    char perr[300];
    int have_pub = audit_load_pub(a->data_dir, pub, perr, sizeof perr);
    if (have_pub < 0) return slm_err(err, err_len, "%s", perr);
    int fd = open(key_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno != ENOENT) return slm_err(err, err_len, "cannot open %s: %s", key_path, strerror(errno));
    if (fd >= 0) {
        struct stat st;
        char hex[2 * crypto_sign_SECRETKEYBYTES + 2];
        ssize_t n = fstat(fd, &st) == 0 ? read(fd, hex, sizeof hex) : -1;
        close(fd);
        if (n < 0) return slm_err(err, err_len, "cannot read %s", key_path);
        if (st.st_mode & 077)
            return slm_err(err, err_len, "%s is accessible by group or others (mode %03o): chmod 600 it", key_path,
                           (unsigned)(st.st_mode & 0777));
        const size_t want = 2 * crypto_sign_SECRETKEYBYTES;
        if ((size_t)n < want || (size_t)n > want + 1 || ((size_t)n == want + 1 && hex[want] != '\n') ||
            !audit_is_hex(hex, want))
            return slm_err(err, err_len, "%s is not an audit signing key (128 lowercase hex digits)", key_path);
        for (size_t i = 0; i < crypto_sign_SECRETKEYBYTES; i++) {
            char pair[3] = {hex[2 * i], hex[2 * i + 1], 0};
            a->sk[i] = (unsigned char)strtoul(pair, NULL, 16);
        }
        crypto_sign_ed25519_sk_to_pk(a->pk, a->sk);
        unsigned char seed[crypto_sign_SEEDBYTES], pk2[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];
        crypto_sign_ed25519_sk_to_seed(seed, a->sk);
        crypto_sign_seed_keypair(pk2, sk2, seed);
        bool consistent = memcmp(pk2, a->pk, sizeof pk2) == 0;
        sodium_memzero(seed, sizeof seed);
        sodium_memzero(sk2, sizeof sk2);
        if (!consistent) return slm_err(err, err_len, "%s is damaged (its public half does not match)", key_path);
        if (have_pub && memcmp(pub, a->pk, sizeof pub) != 0)
            return slm_err(err, err_len, "%s/audit.pub does not match %s", a->data_dir, key_path);
        if (!have_pub) {
            char line[2 * crypto_sign_PUBLICKEYBYTES + 2];
            audit_to_hex(a->pk, sizeof a->pk, line);
            strcat(line, "\n");
            if (create_file_durably(a->data_dir, "audit.pub", line, 0644, err, err_len)) return -1;
        }
        a->sign = true;
    } else if (want_sign) {
        if (have_pub)
            return slm_err(err, err_len,
                           "%s/audit.pub exists but audit.key does not: refusing to replace the key that signed this log",
                           a->data_dir);
        crypto_sign_keypair(a->pk, a->sk);
        char line[2 * crypto_sign_SECRETKEYBYTES + 2];
        audit_to_hex(a->sk, sizeof a->sk, line);
        strcat(line, "\n");
        int rc = create_file_durably(a->data_dir, "audit.key", line, 0600, err, err_len);
        sodium_memzero(line, sizeof line);
        if (rc) return -1;
        audit_to_hex(a->pk, sizeof a->pk, line);
        strcat(line, "\n");
        if (create_file_durably(a->data_dir, "audit.pub", line, 0644, err, err_len)) return -1;
        a->sign = true;
    }
    if (a->sign) audit_signer_of(a->pk, a->signer);
    return 0;
}

/* ---- appending ---- */

/* Queues one record (under mu): `inner` is the caller's fields without the braces (may be empty);
 * `lead` bytes (the newline closing a torn record) go before it. */
static int queue_record(slm_audit *a, const char *lead, const char *inner, size_t inner_len, uint64_t *seq_out) {
    char time_s[32];
    audit_time_now(time_s);
    size_t need = strlen(lead) + inner_len + 600;
    if (buf_reserve(&a->pending, need)) return -1;
    batch_buf *b = &a->pending;
    buf_put(b, lead, strlen(lead));
    size_t start = b->len;
    uint64_t seq = a->last_seq + 1;
    b->len += (size_t)snprintf(b->p + b->len, b->cap - b->len, "{\"seq\":%llu,\"time\":\"%s\"", (unsigned long long)seq,
                               time_s);
    if (inner_len) {
        buf_put(b, ",", 1);
        buf_put(b, inner, inner_len);
    }
    if (a->sign) b->len += (size_t)snprintf(b->p + b->len, b->cap - b->len, ",\"signer\":\"%s\"", a->signer);
    b->len += (size_t)snprintf(b->p + b->len, b->cap - b->len, ",\"prev\":\"%s\"", a->last_hash);
    crypto_hash_sha256_state st;
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)b->p + start, b->len - start);
    crypto_hash_sha256_update(&st, (const unsigned char *)"}", 1);
    crypto_hash_sha256_final(&st, h);
    char hash[AUDIT_HASH_HEX + 1];
    audit_to_hex(h, sizeof h, hash);
    b->len += (size_t)snprintf(b->p + b->len, b->cap - b->len, ",\"hash\":\"%s\"", hash);
    if (a->sign) {
        char msg[sizeof AUDIT_RECORD_SIG_PREFIX + AUDIT_HASH_HEX], sig_hex[AUDIT_SIG_HEX + 1];
        unsigned char sig[crypto_sign_BYTES];
        int n = snprintf(msg, sizeof msg, "%s%s", AUDIT_RECORD_SIG_PREFIX, hash);
        crypto_sign_detached(sig, NULL, (const unsigned char *)msg, (unsigned long long)n, a->sk);
        audit_to_hex(sig, sizeof sig, sig_hex);
        b->len += (size_t)snprintf(b->p + b->len, b->cap - b->len, ",\"sig\":\"%s\"", sig_hex);
    }
    buf_put(b, "}\n", 2);
    a->last_seq = seq;
    memcpy(a->last_hash, hash, sizeof hash);
    a->stats.records++;
    *seq_out = seq;
    return 0;
}

/* Starts the next file (the current one is synced by the caller). Leader only. */
static int rotate(slm_audit *a, char *err, size_t err_len) {
    char name[AUDIT_NAME_MAX], path[PATH_MAX + AUDIT_NAME_MAX];
    audit_file_name(a->file_no + 1, name);
    snprintf(path, sizeof path, "%s/%s", a->dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return slm_err(err, err_len, "cannot create %s: %s", path, strerror(errno));
    if (fsync(a->dir_fd) != 0) {
        int e = errno;
        close(fd);
        return slm_err(err, err_len, "cannot sync %s: %s", a->dir, strerror(e));
    }
    close(a->fd);
    a->fd = fd;
    a->file_no++;
    a->file_size = 0;
    return 0;
}

/* Writes a batch of whole lines and makes it durable, starting new files as they fill up.
 * Leader only (no lock held). *fsyncs counts the fdatasync calls made. */
static int write_batch(slm_audit *a, const char *buf, size_t len, unsigned *fsyncs, char *err, size_t err_len) {
    size_t pos = 0;
    bool dirty = false;
    char name[AUDIT_NAME_MAX];
    while (pos < len) {
        if (a->file_size > 0 && a->file_size >= a->rotate_bytes) {
            if (dirty) {
                if (fdatasync(a->fd) != 0) goto io_error;
                ++*fsyncs;
                dirty = false;
            }
            if (rotate(a, err, err_len)) return -1;
        }
        /* whole lines until this file reaches its size */
        size_t end = pos;
        uint64_t size = a->file_size;
        do {
            const char *nl = memchr(buf + end, '\n', len - end);
            size_t next = nl ? (size_t)(nl - buf) + 1 : len;
            size += next - end;
            end = next;
        } while (end < len && size < a->rotate_bytes);
        if (write_all(a->fd, buf + pos, end - pos) != 0) goto io_error;
        a->file_size += end - pos;
        dirty = true;
        pos = end;
    }
    if (dirty) {
        if (audit_test_sync_delay_us) usleep(audit_test_sync_delay_us);
        if (fdatasync(a->fd) != 0) goto io_error;
        ++*fsyncs;
    }
    return 0;
io_error:
    audit_file_name(a->file_no, name);
    return slm_err(err, err_len, "cannot write %s/%s: %s", a->dir, name, strerror(errno));
}

/* Records the newest durable record in HEAD (one slot, alternating; not synced: after a power loss
 * HEAD may lag behind the log, never run ahead of it). Leader only. */
static void write_head(slm_audit *a, uint64_t seq, const char *hash) {
    char slot[AUDIT_HEAD_SLOT];
    audit_head_format(seq, hash, a->sign ? a->sk : NULL, slot);
    off_t at = (off_t)(a->head_slot++ % 2) * AUDIT_HEAD_SLOT;
    ssize_t k = pwrite(a->head_fd, slot, sizeof slot, at);
    (void)k; /* a failed HEAD update only weakens tail-truncation evidence; the records are durable */
}

/* Waits (under mu) until record `seq` is durable, flushing as the leader when nobody else is. */
static int commit_until(slm_audit *a, uint64_t seq, char *err, size_t err_len) {
    while (a->durable_seq < seq && !a->failed) {
        if (a->flushing) {
            pthread_cond_wait(&a->cv, &a->mu);
            continue;
        }
        a->flushing = true;
        batch_buf batch = a->pending;
        a->pending = a->spare;
        a->pending.len = 0;
        uint64_t batch_seq = a->last_seq;
        char batch_hash[AUDIT_HASH_HEX + 1];
        memcpy(batch_hash, a->last_hash, sizeof batch_hash);
        pthread_mutex_unlock(&a->mu);

        char werr[300];
        unsigned fsyncs = 0;
        int rc = write_batch(a, batch.p, batch.len, &fsyncs, werr, sizeof werr);
        if (rc == 0) write_head(a, batch_seq, batch_hash);

        pthread_mutex_lock(&a->mu);
        batch.len = 0;
        a->spare = batch;
        a->stats.fsyncs += fsyncs;
        if (rc) {
            a->failed = true;
            snprintf(a->failed_msg, sizeof a->failed_msg, "%s", werr);
        } else {
            a->durable_seq = batch_seq;
            a->stats.commits++;
        }
        a->flushing = false;
        pthread_cond_broadcast(&a->cv);
    }
    if (a->durable_seq < seq)
        return slm_err(err, err_len, "audit log failed, appends refused until it is reopened: %s", a->failed_msg);
    return 0;
}

static const char *const reserved_fields[] = {"seq", "time", "prev", "hash", "sig", "signer", "recovered"};

int slm_audit_append_seq(slm_audit *a, const char *record_json, uint64_t *seq_out, char *err, size_t err_len) {
    if (!a || !record_json) return slm_err(err, err_len, "audit append: no log or no record");
    size_t len = strlen(record_json);
    if (len > SLM_AUDIT_MAX_RECORD_BYTES)
        return slm_err(err, err_len, "audit record of %zu bytes exceeds the %zu MiB limit", len,
                       SLM_AUDIT_MAX_RECORD_BYTES >> 20);
    json_error_t jerr;
    json_t *obj = json_loadb(record_json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj) return slm_err(err, err_len, "audit record is not valid JSON: %s (at %d)", jerr.text, jerr.position);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return slm_err(err, err_len, "audit record is not a JSON object");
    }
    for (size_t i = 0; i < sizeof reserved_fields / sizeof *reserved_fields; i++)
        if (json_object_get(obj, reserved_fields[i])) {
            json_decref(obj);
            return slm_err(err, err_len, "audit record field '%s' is reserved for the log", reserved_fields[i]);
        }
    /* compact with sorted keys: a record's text does not depend on the caller's field order */
    char *text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(obj);
    if (!text) return slm_err(err, err_len, "out of memory formatting an audit record");
    size_t tlen = strlen(text); /* "{...}": the fields are between the braces */

    pthread_mutex_lock(&a->mu);
    uint64_t seq = 0;
    int rc;
    if (a->failed)
        rc = slm_err(err, err_len, "audit log failed, appends refused until it is reopened: %s", a->failed_msg);
    else if (queue_record(a, "", text + 1, tlen - 2, &seq))
        rc = slm_err(err, err_len, "out of memory queueing an audit record");
    else
        rc = commit_until(a, seq, err, err_len);
    pthread_mutex_unlock(&a->mu);
    free(text);
    if (rc == 0 && seq_out) *seq_out = seq;
    return rc;
}

int slm_audit_append(slm_audit *a, const char *record_json, char *err, size_t err_len) {
    return slm_audit_append_seq(a, record_json, NULL, err, err_len);
}

void slm_audit_get_stats(slm_audit *a, slm_audit_stats *out) {
    pthread_mutex_lock(&a->mu);
    *out = a->stats;
    out->last_seq = a->durable_seq;
    out->signing = a->sign;
    pthread_mutex_unlock(&a->mu);
}

/* ---- opening and recovery ---- */

/* The last newline-terminated line of buf[0..len) that is a valid record (lines starting at 0 are
 * considered only when `from_start`: otherwise the window may have cut them). Returns true with
 * *end = the offset after its newline. */
static bool last_valid_line(const char *buf, size_t len, bool from_start, audit_rec *r, size_t *end) {
    size_t e = len;
    for (;;) {
        const char *nl = e ? memrchr(buf, '\n', e) : NULL;
        if (!nl) return false;
        const char *prev_nl = memrchr(buf, '\n', (size_t)(nl - buf));
        size_t start = prev_nl ? (size_t)(prev_nl - buf) + 1 : 0;
        if (start == 0 && !from_start) return false;
        char why[8];
        if (audit_parse_line(buf + start, (size_t)(nl - buf) - start, r, why, sizeof why) == 0) {
            *end = (size_t)(nl - buf) + 1;
            return true;
        }
        e = start;
    }
}

/* Finds the last valid record of a file: 1 = found (*end = offset after it), 0 = none, -1 = I/O error. */
static int scan_file_tail(const char *path, uint64_t size, audit_rec *r, uint64_t *end, char *err, size_t err_len) {
    const uint64_t window = (uint64_t)1 << 20;
    uint64_t from = size > window ? size - window : 0;
    for (;;) {
        char *buf;
        size_t len;
        if (audit_read_file(path, from, &buf, &len, err, err_len)) return -1;
        size_t e;
        bool found = last_valid_line(buf, len, from == 0, r, &e);
        free(buf);
        if (found) {
            *end = from + e;
            return 1;
        }
        if (from == 0) return 0;
        from = 0; /* a record longer than the window, or junk: read it all */
    }
}

static uint64_t file_size_of(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Where the log ends: the last valid record (seq/hash, or 0/zeros for an empty log) and the torn
 * bytes after it in the newest file, [*junk_from, *junk_to) of file *junk_file (0 = none). */
static int find_tail(slm_audit *a, const unsigned *nums, size_t n, uint64_t *seq, char *hash, unsigned *junk_file,
                     uint64_t *junk_from, uint64_t *junk_to, char *err, size_t err_len) {
    *seq = 0;
    memcpy(hash, AUDIT_ZERO_HASH, AUDIT_HASH_HEX + 1);
    *junk_file = 0;
    for (size_t i = n; i-- > 0;) {
        char name[AUDIT_NAME_MAX], path[PATH_MAX + AUDIT_NAME_MAX];
        audit_file_name(nums[i], name);
        snprintf(path, sizeof path, "%s/%s", a->dir, name);
        uint64_t size = file_size_of(path);
        if (size == 0) continue;
        audit_rec r;
        uint64_t end = 0;
        int found = scan_file_tail(path, size, &r, &end, err, err_len);
        if (found < 0) return -1;
        if (end < size) {
            if (i != n - 1)
                return slm_err(err, err_len,
                               "%s ends with %llu bytes that are not a record, and newer files follow: the log is "
                               "damaged (run slm audit verify)",
                               path, (unsigned long long)(size - end));
            *junk_file = nums[i];
            *junk_from = end;
            *junk_to = size;
        }
        if (found) {
            *seq = r.seq;
            memcpy(hash, r.hash, AUDIT_HASH_HEX + 1);
            return 0;
        }
    }
    return 0;
}

/* Declares the torn bytes [from, to) of the newest file with a recovery record, so verify can
 * account for them, and the chain continues from the last good record. */
static int recover_torn(slm_audit *a, unsigned file, uint64_t from, uint64_t to, char *err, size_t err_len) {
    char name[AUDIT_NAME_MAX], path[PATH_MAX + AUDIT_NAME_MAX];
    audit_file_name(file, name);
    snprintf(path, sizeof path, "%s/%s", a->dir, name);
    char *junk;
    size_t len;
    if (audit_read_file(path, from, &junk, &len, err, err_len)) return -1;
    if (len != to - from) {
        free(junk);
        return slm_err(err, err_len, "%s changed while it was being recovered", path);
    }
    bool needs_newline = junk[len - 1] != '\n';
    crypto_hash_sha256_state st;
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)junk, len);
    if (needs_newline) crypto_hash_sha256_update(&st, (const unsigned char *)"\n", 1);
    crypto_hash_sha256_final(&st, h);
    free(junk);
    char sha[AUDIT_HASH_HEX + 1], inner[400];
    audit_to_hex(h, sizeof h, sha);
    int n = snprintf(inner, sizeof inner,
                     "\"event\":\"audit.recovered\",\"recovered\":{\"bytes\":%llu,\"file\":\"%s\",\"offset\":%llu,"
                     "\"sha256\":\"%s\"}",
                     (unsigned long long)(len + needs_newline), name, (unsigned long long)from, sha);
    /* the recovery record must follow the torn bytes in the same file, however full it is */
    size_t rotate_bytes = a->rotate_bytes;
    a->rotate_bytes = SIZE_MAX;
    pthread_mutex_lock(&a->mu);
    uint64_t seq;
    int rc = queue_record(a, needs_newline ? "\n" : "", inner, (size_t)n, &seq);
    if (rc) rc = slm_err(err, err_len, "out of memory");
    else rc = commit_until(a, seq, err, err_len);
    pthread_mutex_unlock(&a->mu);
    a->rotate_bytes = rotate_bytes;
    return rc;
}

int slm_audit_open(const char *data_dir, const slm_audit_options *opt, slm_audit **out, char *err, size_t err_len) {
    *out = NULL;
    if (!data_dir || !*data_dir) return slm_err(err, err_len, "audit log: no data directory");
    if (sodium_init() < 0) return slm_err(err, err_len, "audit log: libsodium failed to initialise");
    slm_audit *a = calloc(1, sizeof *a);
    if (!a) return slm_err(err, err_len, "out of memory");
    a->dir_fd = a->lock_fd = a->fd = a->head_fd = -1;
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    memcpy(a->last_hash, AUDIT_ZERO_HASH, sizeof a->last_hash);
    a->rotate_bytes = opt && opt->rotate_bytes ? opt->rotate_bytes : AUDIT_DEFAULT_ROTATE;
    unsigned *nums = NULL;
    size_t n = 0;
    char head_path[PATH_MAX + 8];
    char *head_buf = NULL;

    if (snprintf(a->data_dir, sizeof a->data_dir, "%s", data_dir) >= (int)sizeof a->data_dir ||
        snprintf(a->dir, sizeof a->dir, "%s/audit", data_dir) >= (int)sizeof a->dir) {
        slm_err(err, err_len, "audit log: data directory path too long");
        goto fail;
    }
    if (make_dirs(a->dir, err, err_len)) goto fail;
    a->dir_fd = open(a->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (a->dir_fd < 0) {
        slm_err(err, err_len, "cannot open %s: %s", a->dir, strerror(errno));
        goto fail;
    }
    char lock_path[PATH_MAX + 8];
    snprintf(lock_path, sizeof lock_path, "%s/LOCK", a->dir);
    a->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (a->lock_fd < 0) {
        slm_err(err, err_len, "cannot open %s: %s", lock_path, strerror(errno));
        goto fail;
    }
    if (flock(a->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        slm_err(err, err_len, "audit log %s is in use by another process", a->dir);
        goto fail;
    }
    if (setup_keys(a, opt && opt->sign, err, err_len)) goto fail;
    if (audit_list_files(a->dir, &nums, &n, err, err_len)) goto fail;

    uint64_t tail_seq, junk_from = 0, junk_to = 0;
    char tail_hash[AUDIT_HASH_HEX + 1];
    unsigned junk_file;
    if (find_tail(a, nums, n, &tail_seq, tail_hash, &junk_file, &junk_from, &junk_to, err, err_len)) goto fail;

    /* HEAD never runs ahead of the durable records: if it does, records were removed */
    snprintf(head_path, sizeof head_path, "%s/HEAD", a->dir);
    size_t head_len = 0;
    bool head_exists = access(head_path, F_OK) == 0;
    if (!head_exists && errno != ENOENT) {
        slm_err(err, err_len, "cannot access %s: %s", head_path, strerror(errno));
        goto fail;
    }
    if (head_exists) {
        if (audit_read_file(head_path, 0, &head_buf, &head_len, err, err_len)) goto fail;
        audit_head h;
        char why[400];
        if (audit_head_parse(head_buf, head_len, NULL, &h, why, sizeof why)) {
            slm_err(err, err_len, "%s is damaged (%s): run slm audit verify", head_path, why);
            goto fail;
        }
        if (h.seq > tail_seq || (h.seq == tail_seq && strcmp(h.hash, tail_hash) != 0)) {
            slm_err(err, err_len,
                    "%s records seq %llu but the log ends at seq %llu%s: records were removed or changed (run slm "
                    "audit verify; move the audit folder aside to start a new log)",
                    head_path, (unsigned long long)h.seq, (unsigned long long)tail_seq,
                    h.seq == tail_seq ? " with another hash" : "");
            goto fail;
        }
    } else {
        if (tail_seq > 0 || junk_file) {
            slm_err(err, err_len,
                    "%s is missing but the log has records: records at its tail may have been removed (run slm audit "
                    "verify; move the audit folder aside to start a new log)",
                    head_path);
            goto fail;
        }
        char slots[2 * AUDIT_HEAD_SLOT + 1];
        audit_head_format(0, AUDIT_ZERO_HASH, a->sign ? a->sk : NULL, slots);
        audit_head_format(0, AUDIT_ZERO_HASH, a->sign ? a->sk : NULL, slots + AUDIT_HEAD_SLOT);
        slots[2 * AUDIT_HEAD_SLOT] = 0;
        if (create_file_durably(a->dir, "HEAD", slots, 0600, err, err_len)) goto fail;
    }
    a->head_fd = open(head_path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (a->head_fd < 0) {
        slm_err(err, err_len, "cannot open %s: %s", head_path, strerror(errno));
        goto fail;
    }

    /* the file to append to: the newest, or a first one */
    char name[AUDIT_NAME_MAX], path[PATH_MAX + AUDIT_NAME_MAX];
    a->file_no = n ? nums[n - 1] : 1;
    audit_file_name(a->file_no, name);
    snprintf(path, sizeof path, "%s/%s", a->dir, name);
    a->fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW | (n ? 0 : O_CREAT | O_EXCL), 0600);
    if (a->fd < 0) {
        slm_err(err, err_len, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    if (!n && fsync(a->dir_fd) != 0) {
        slm_err(err, err_len, "cannot sync %s: %s", a->dir, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(a->fd, &st) != 0) {
        slm_err(err, err_len, "cannot stat %s: %s", path, strerror(errno));
        goto fail;
    }
    a->file_size = (uint64_t)st.st_size;
    a->last_seq = a->durable_seq = tail_seq;
    memcpy(a->last_hash, tail_hash, sizeof tail_hash);
    if (junk_file && recover_torn(a, junk_file, junk_from, junk_to, err, err_len)) goto fail;

    /* both HEAD slots at the tail, synced: HEAD starts every session exact */
    char slot[AUDIT_HEAD_SLOT];
    audit_head_format(a->last_seq, a->last_hash, a->sign ? a->sk : NULL, slot);
    if (pwrite(a->head_fd, slot, sizeof slot, 0) != (ssize_t)sizeof slot ||
        pwrite(a->head_fd, slot, sizeof slot, AUDIT_HEAD_SLOT) != (ssize_t)sizeof slot || fsync(a->head_fd) != 0) {
        slm_err(err, err_len, "cannot write %s: %s", head_path, strerror(errno));
        goto fail;
    }
    free(nums);
    free(head_buf);
    *out = a;
    return 0;
fail:
    free(nums);
    free(head_buf);
    slm_audit_close(a);
    return -1;
}

void slm_audit_close(slm_audit *a) {
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    while (a->flushing) pthread_cond_wait(&a->cv, &a->mu);
    pthread_mutex_unlock(&a->mu);
    if (a->fd >= 0) close(a->fd);
    if (a->head_fd >= 0) close(a->head_fd);
    if (a->dir_fd >= 0) close(a->dir_fd);
    if (a->lock_fd >= 0) close(a->lock_fd); /* releases the lock */
    sodium_memzero(a->sk, sizeof a->sk);
    free(a->pending.p);
    free(a->spare.p);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
}
