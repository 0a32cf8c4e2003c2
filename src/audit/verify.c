/* The audit log's readers: verify (the whole chain, signatures, HEAD) and query (filtered records). */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "audit/audit_impl.h"
#include "util/err.h"

/* A torn region declared by a recovery record of the same file. */
typedef struct torn_decl {
    uint64_t offset, bytes;
    size_t decl_line_start; /* where the declaring record begins */
    uint64_t decl_seq;
    char sha256[AUDIT_HASH_HEX + 1];
} torn_decl;

/* Finds the recovery records of a file (lines mentioning "recovered" that are valid records naming
 * this file). Cheap: one memmem pass over the buffer. Returns the count (malloc'd *out), -1 on OOM. */
static long collect_decls(const char *buf, size_t len, const char *name, torn_decl **out) {
    static const char needle[] = "\"recovered\":{";
    *out = NULL;
    long n = 0, cap = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *hit = memmem(buf + pos, len - pos, needle, sizeof needle - 1);
        if (!hit) break;
        size_t at = (size_t)(hit - buf);
        const char *ls = at ? memrchr(buf, '\n', at) : NULL;
        size_t start = ls ? (size_t)(ls - buf) + 1 : 0;
        const char *nl = memchr(hit, '\n', len - at);
        size_t end = nl ? (size_t)(nl - buf) : len;
        audit_rec r;
        char why[8];
        if (nl && audit_parse_line(buf + start, end - start, &r, why, sizeof why) == 0 && r.has_recovered &&
            strcmp(r.rec_file, name) == 0) {
            if (n == cap) {
                cap = cap ? cap * 2 : 4;
                torn_decl *g = realloc(*out, (size_t)cap * sizeof **out);
                if (!g) {
                    free(*out);
                    *out = NULL;
                    return -1;
                }
                *out = g;
            }
            torn_decl *d = &(*out)[n++];
            d->offset = r.rec_offset;
            d->bytes = r.rec_bytes;
            d->decl_line_start = start;
            d->decl_seq = r.seq;
            memcpy(d->sha256, r.rec_sha256, sizeof d->sha256);
        }
        pos = end + 1;
    }
    return n;
}

static const torn_decl *decl_at(const torn_decl *d, long n, uint64_t offset) {
    for (long i = 0; i < n; i++)
        if (d[i].offset == offset) return &d[i];
    return NULL;
}

static size_t count_newlines(const char *p, size_t n) {
    size_t c = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))); p++) c++;
    return c;
}

typedef struct verifier {
    FILE *report;
    const char *data_dir;
    bool have_pk;
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    char pk_signer[AUDIT_SIGNER_HEX + 1];
    uint64_t expect_seq;
    char prev_hash[AUDIT_HASH_HEX + 1];
    bool seen_signed;
    uint64_t records, torn, files;
    bool have_head;
    audit_head head;
} verifier;

__attribute__((format(printf, 2, 3))) static void say(verifier *v, const char *fmt, ...) {
    if (!v->report) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(v->report, fmt, ap);
    va_end(ap);
    fputc('\n', v->report);
}

/* Checks one file; 0 = fine, 1 = broken (reported), -1 = I/O error. */
static int verify_file(verifier *v, const char *dir, unsigned num, bool newest, char *err, size_t err_len) {
    char name[AUDIT_NAME_MAX], path[PATH_MAX + AUDIT_NAME_MAX];
    audit_file_name(num, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *buf;
    size_t len;
    if (audit_read_file(path, 0, &buf, &len, err, err_len)) return -1;
    torn_decl *decls;
    long n_decls = collect_decls(buf, len, name, &decls);
    if (n_decls < 0) {
        free(buf);
        return slm_err(err, err_len, "out of memory verifying %s", path);
    }
    int rc = 0;
    size_t pos = 0, line_no = 1;
    while (pos < len) {
        const torn_decl *d = decl_at(decls, n_decls, pos);
        if (d) {
            char sha[AUDIT_HASH_HEX + 1];
            bool fits = d->bytes <= len - pos && d->decl_line_start == pos + d->bytes;
            if (fits) audit_sha256_hex(buf + pos, (size_t)d->bytes, sha);
            if (!fits || strcmp(sha, d->sha256) != 0) {
                say(v, "bad: %s line %zu (offset %zu): record seq %llu declares %llu torn bytes here, but they %s", name,
                    line_no, pos, (unsigned long long)d->decl_seq, (unsigned long long)d->bytes,
                    fits ? "differ (changed after the recovery)" : "do not end where it begins");
                rc = 1;
                break;
            }
            say(v, "warning: %s line %zu (offset %zu): %llu bytes of a torn record (an append cut short by a crash, "
                   "never acknowledged), declared by the recovery record seq %llu",
                name, line_no, pos, (unsigned long long)d->bytes, (unsigned long long)d->decl_seq);
            v->torn++;
            line_no += count_newlines(buf + pos, (size_t)d->bytes);
            pos += (size_t)d->bytes;
            continue;
        }
        const char *nl = memchr(buf + pos, '\n', len - pos);
        size_t line_len = nl ? (size_t)(nl - (buf + pos)) : len - pos;
        audit_rec r;
        char why[300];
        int bad = audit_parse_line(buf + pos, line_len, &r, why, sizeof why);
        if (!bad && !nl) {
            snprintf(why, sizeof why, "the record has no newline (cut short)");
            bad = 1;
        }
        if (bad) {
            /* a torn tail: only invalid lines up to the end of the newest file (a crash, not reopened yet) */
            bool tail = newest;
            for (size_t p = pos; tail && p < len;) {
                const char *e = memchr(buf + p, '\n', len - p);
                if (!e) break;
                audit_rec t;
                char w[8];
                if (audit_parse_line(buf + p, (size_t)(e - (buf + p)), &t, w, sizeof w) == 0) tail = false;
                p = (size_t)(e - buf) + 1;
            }
            if (tail) {
                say(v, "warning: %s line %zu (offset %zu): the last %zu bytes are a torn record (an append cut short "
                       "by a crash, never acknowledged); the next open of the log declares them",
                    name, line_no, pos, len - pos);
                v->torn++;
                break;
            }
            say(v, "bad: %s line %zu (offset %zu), where seq %llu was expected: %s", name, line_no, pos,
                (unsigned long long)v->expect_seq, why);
            rc = 1;
            break;
        }
        const char *problem = NULL;
        char detail[200];
        if (r.seq != v->expect_seq) {
            snprintf(detail, sizeof detail, "seq %llu where seq %llu was expected (%s)", (unsigned long long)r.seq,
                     (unsigned long long)v->expect_seq,
                     r.seq > v->expect_seq ? "records are missing" : "a record is repeated or out of order");
            problem = detail;
        } else if (strcmp(r.prev, v->prev_hash) != 0) {
            problem = v->expect_seq == 1 ? "the first record's prev is not all zeros (records before it were removed)"
                                         : "prev does not match the previous record's hash (it was changed or removed)";
        } else if (r.has_signer) {
            if (!v->have_pk) {
                snprintf(detail, sizeof detail, "signed by key %s but %s/audit.pub is missing", r.signer, v->data_dir);
                problem = detail;
            } else if (strcmp(r.signer, v->pk_signer) != 0) {
                snprintf(detail, sizeof detail, "signed by key %s but audit.pub is key %s", r.signer, v->pk_signer);
                problem = detail;
            } else if (!audit_check_sig(&r, v->pk)) {
                problem = "the signature does not verify";
            }
            v->seen_signed = true;
        } else if (v->seen_signed) {
            problem = "not signed, though earlier records are (signatures were stripped?)";
        }
        if (!problem && v->have_head && r.seq == v->head.seq && strcmp(r.hash, v->head.hash) != 0)
            problem = "its hash differs from the one HEAD recorded for this seq";
        if (problem) {
            say(v, "bad: record seq %llu (%s line %zu, offset %zu): %s", (unsigned long long)v->expect_seq, name,
                line_no, pos, problem);
            rc = 1;
            break;
        }
        v->expect_seq++;
        memcpy(v->prev_hash, r.hash, sizeof v->prev_hash);
        v->records++;
        pos += line_len + 1;
        line_no++;
    }
    free(decls);
    free(buf);
    return rc;
}

int slm_audit_verify(const char *data_dir, FILE *report, char *err, size_t err_len) {
    return slm_audit_verify_with_key(data_dir, NULL, report, err, err_len);
}

int slm_audit_verify_with_key(const char *data_dir, const char *pub_path, FILE *report, char *err, size_t err_len) {
    if (!data_dir || !*data_dir) return slm_err(err, err_len, "no data directory");
    if (sodium_init() < 0) return slm_err(err, err_len, "libsodium failed to initialise");
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s/audit", data_dir) >= (int)sizeof dir) return slm_err(err, err_len, "path too long");
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return slm_err(err, err_len, "no audit log in %s (%s is not a directory)", data_dir, dir);
    verifier v = {.report = report, .data_dir = data_dir, .expect_seq = 1};
    memcpy(v.prev_hash, AUDIT_ZERO_HASH, sizeof v.prev_hash);
    char perr[400];
    int pub = audit_load_pub(data_dir, v.pk, perr, sizeof perr);
    if (pub < 0) {
        say(&v, "bad: %s", perr);
        return 1;
    }
    if (pub_path) { /* a key kept apart: whoever rewrote the log and its key pair cannot match it */
        unsigned char trusted[crypto_sign_PUBLICKEYBYTES];
        int t = audit_load_pub_file(pub_path, trusted, err, err_len);
        if (t == 0) return slm_err(err, err_len, "%s does not exist", pub_path);
        if (t < 0) return -1;
        if (pub == 1 && memcmp(trusted, v.pk, sizeof trusted) != 0) {
            say(&v, "bad: %s/audit.pub is not the trusted key %s (the key pair was replaced)", data_dir, pub_path);
            return 1;
        }
        memcpy(v.pk, trusted, sizeof trusted);
        pub = 1;
    }
    v.have_pk = pub == 1;
    if (v.have_pk) audit_signer_of(v.pk, v.pk_signer);

    /* HEAD first: the files read afterwards can only be longer than what it records */
    char head_path[PATH_MAX + 8];
    snprintf(head_path, sizeof head_path, "%s/HEAD", dir);
    char head_problem[PATH_MAX + 600] = "";
    bool head_damaged = false; /* a crash never damages both slots: always bad, unlike a missing HEAD of an empty log */
    if (access(head_path, F_OK) == 0) {
        char *hb;
        size_t hl;
        if (audit_read_file(head_path, 0, &hb, &hl, err, err_len)) return -1;
        char why[400];
        if (audit_head_parse(hb, hl, v.have_pk ? v.pk : NULL, &v.head, why, sizeof why) == 0) v.have_head = true;
        else {
            snprintf(head_problem, sizeof head_problem, "%s is damaged: %s", head_path, why);
            head_damaged = true;
        }
        free(hb);
    } else {
        snprintf(head_problem, sizeof head_problem, "%s is missing: records removed from the tail would go unnoticed",
                 head_path);
    }

    unsigned *nums;
    size_t n;
    if (audit_list_files(dir, &nums, &n, err, err_len)) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i > 0 && nums[i] != nums[i - 1] + 1) {
            char missing[AUDIT_NAME_MAX], next[AUDIT_NAME_MAX];
            audit_file_name(nums[i - 1] + 1, missing);
            audit_file_name(nums[i], next);
            say(&v, "bad: record seq %llu: %s is missing (the log skips from it to %s)", (unsigned long long)v.expect_seq,
                missing, next);
            rc = 1;
            break;
        }
        rc = verify_file(&v, dir, nums[i], i == n - 1, err, err_len);
        v.files++;
    }
    free(nums);
    if (rc) return rc;
    uint64_t last = v.expect_seq - 1;
    if (head_problem[0]) {
        if (last > 0 || v.torn || head_damaged) {
            say(&v, "bad: %s", head_problem);
            return 1;
        }
    } else if (v.head.seq > last) {
        say(&v, "bad: the log ends at seq %llu but HEAD records seq %llu: records at the tail were removed",
            (unsigned long long)last, (unsigned long long)v.head.seq);
        return 1;
    }
    if (v.torn)
        say(&v, "warning: %llu torn record(s) from crashes (never acknowledged; listed above)", (unsigned long long)v.torn);
    char extra[160] = "";
    if (v.have_pk) snprintf(extra, sizeof extra, ", signed by key %s", v.pk_signer);
    if (v.have_head && v.head.seq < last)
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra), ", HEAD at seq %llu (behind: a crash)",
                 (unsigned long long)v.head.seq);
    say(&v, "ok: %llu records in %llu file%s%s", (unsigned long long)last, (unsigned long long)v.files,
        v.files == 1 ? "" : "s", extra);
    return 0;
}

/* ---- query ---- */

static bool matches(const char *line, size_t len, const slm_audit_filter *f) {
    json_error_t jerr;
    json_t *o = json_loadb(line, len, 0, &jerr);
    if (!o) return false;
    bool ok = json_is_object(o) && json_is_integer(json_object_get(o, "seq"));
    if (ok && f && f->since > 0) {
        double t;
        json_t *tv = json_object_get(o, "time");
        ok = json_is_string(tv) && slm_audit_parse_time(json_string_value(tv), &t) == 0 && t >= f->since;
    }
    if (ok && f && f->key) {
        json_t *k = json_object_get(o, "key");
        ok = json_is_string(k) && strcmp(json_string_value(k), f->key) == 0;
    }
    if (ok && f && f->route) {
        json_t *r = json_object_get(o, "route");
        ok = json_is_string(r) && strcmp(json_string_value(r), f->route) == 0;
    }
    json_decref(o);
    return ok;
}

int slm_audit_query(const char *data_dir, const slm_audit_filter *f, slm_audit_record_fn fn, void *user, char *err,
                    size_t err_len) {
    if (!data_dir || !*data_dir || !fn) return slm_err(err, err_len, "audit query: no data directory or callback");
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s/audit", data_dir) >= (int)sizeof dir) return slm_err(err, err_len, "path too long");
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return slm_err(err, err_len, "no audit log in %s (%s is not a directory)", data_dir, dir);
    unsigned *nums;
    size_t n;
    if (audit_list_files(dir, &nums, &n, err, err_len)) return -1;
    int rc = 0;
    bool stop = false;
    for (size_t i = 0; i < n && !stop && rc == 0; i++) {
        char name[AUDIT_NAME_MAX], path[PATH_MAX + AUDIT_NAME_MAX];
        audit_file_name(nums[i], name);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        char *buf;
        size_t len;
        if (audit_read_file(path, 0, &buf, &len, err, err_len)) {
            rc = -1;
            break;
        }
        torn_decl *decls;
        long n_decls = collect_decls(buf, len, name, &decls);
        if (n_decls < 0) {
            free(buf);
            rc = slm_err(err, err_len, "out of memory reading %s", path);
            break;
        }
        size_t pos = 0;
        while (pos < len && !stop) {
            const torn_decl *d = decl_at(decls, n_decls, pos);
            if (d && d->bytes <= len - pos) { /* a torn record: not a record */
                pos += (size_t)d->bytes;
                continue;
            }
            char *nl = memchr(buf + pos, '\n', len - pos);
            if (!nl) break; /* torn tail */
            *nl = 0;
            if (matches(buf + pos, (size_t)(nl - (buf + pos)), f) && fn(user, buf + pos) != 0) stop = true;
            pos = (size_t)(nl - buf) + 1;
        }
        free(decls);
        free(buf);
    }
    free(nums);
    return rc;
}
