/* The audit log's formats: record lines, file names, HEAD slots, key files and times. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "audit/audit_impl.h"
#include "util/err.h"

void audit_to_hex(const unsigned char *bin, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bin[i] >> 4];
        out[2 * i + 1] = digits[bin[i] & 15];
    }
    out[2 * n] = 0;
}

bool audit_is_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static bool from_hex(const char *s, size_t n_hex, unsigned char *out) {
    if (!audit_is_hex(s, n_hex)) return false;
    for (size_t i = 0; i < n_hex / 2; i++) {
        int hi = s[2 * i] <= '9' ? s[2 * i] - '0' : s[2 * i] - 'a' + 10;
        int lo = s[2 * i + 1] <= '9' ? s[2 * i + 1] - '0' : s[2 * i + 1] - 'a' + 10;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

void audit_sha256_hex(const void *data, size_t len, char out[AUDIT_HASH_HEX + 1]) {
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, data, len);
    audit_to_hex(h, sizeof h, out);
}

void audit_signer_of(const unsigned char pk[crypto_sign_PUBLICKEYBYTES], char out[AUDIT_SIGNER_HEX + 1]) {
    audit_to_hex(pk, AUDIT_SIGNER_HEX / 2, out);
}

/* ---- times ---- */

void audit_time_now(char out[32]) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    /* strftime has no bound warnings to dodge; the milliseconds are appended */
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03uZ", (unsigned)(ts.tv_nsec / 1000000) % 1000u);
}

/* Reads exactly n digits into *v. */
static bool digits(const char **p, int n, int *v) {
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i])) return false;
        x = x * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *v = x;
    return true;
}

int slm_audit_parse_time(const char *s, double *out) {
    if (!s || !*s) return -1;
    size_t n = strlen(s);
    if (strspn(s, "0123456789.") == n) { /* unix seconds */
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (errno || *end || !isfinite(v)) return -1;
        *out = v;
        return 0;
    }
    const char *p = s;
    int year, mon, day, hour = 0, min = 0, sec = 0;
    double frac = 0;
    if (!digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &mon) || *p++ != '-' || !digits(&p, 2, &day)) return -1;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (mon < 1 || mon > 12 || day < 1 || day > mdays[mon - 1]) return -1;
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (mon == 2 && day == 29 && !leap) return -1;
    int offset_s = 0;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (!digits(&p, 2, &hour) || *p++ != ':' || !digits(&p, 2, &min)) return -1;
        if (*p == ':') {
            p++;
            if (!digits(&p, 2, &sec)) return -1;
            if (*p == '.') {
                p++;
                double scale = 0.1;
                if (!isdigit((unsigned char)*p)) return -1;
                for (int i = 0; isdigit((unsigned char)*p); p++, i++) {
                    if (i < 9) frac += (*p - '0') * scale;
                    scale /= 10;
                }
            }
        }
        if (hour > 23 || min > 59 || sec > 60) return -1;
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1, oh, om;
            if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om) || oh > 23 || om > 59) return -1;
            offset_s = sign * (oh * 3600 + om * 60);
        }
    }
    if (*p) return -1;
    struct tm tm = {0};
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    time_t t = timegm(&tm);
    *out = (double)t - offset_s + frac;
    return 0;
}

/* ---- record lines ---- */

static const char HASH_KEY[] = ",\"hash\":\""; /* 9 bytes */
static const char SIG_KEY[] = "\",\"sig\":\""; /* 9 bytes: closes the hash string */
#define KEY_LEN 9

static const char *hex_field(json_t *obj, const char *name, size_t n_hex) {
    json_t *v = json_object_get(obj, name);
    if (!json_is_string(v) || json_string_length(v) != n_hex || !audit_is_hex(json_string_value(v), n_hex)) return NULL;
    return json_string_value(v);
}

int audit_parse_line(const char *line, size_t len, audit_rec *r, char *why, size_t why_len) {
    memset(r, 0, sizeof *r);
    const size_t tail_plain = KEY_LEN + AUDIT_HASH_HEX + 2;                 /* ,"hash":"H"} */
    const size_t tail_signed = KEY_LEN + AUDIT_HASH_HEX + KEY_LEN + AUDIT_SIG_HEX + 2; /* ,"hash":"H","sig":"S"} */
    if (len < 2 || line[0] != '{' || line[len - 1] != '}' || line[len - 2] != '"')
        return slm_err(why, why_len, "not a record line (it must be a JSON object ending with its hash)");
    const char *hash_at, *sig_at = NULL;
    if (len > tail_signed && memcmp(line + len - tail_signed, HASH_KEY, KEY_LEN) == 0 &&
        memcmp(line + len - 2 - AUDIT_SIG_HEX - KEY_LEN, SIG_KEY, KEY_LEN) == 0) {
        hash_at = line + len - tail_signed;
        sig_at = line + len - 2 - AUDIT_SIG_HEX;
    } else if (len > tail_plain && memcmp(line + len - tail_plain, HASH_KEY, KEY_LEN) == 0) {
        hash_at = line + len - tail_plain;
    } else {
        return slm_err(why, why_len, "not a record line (no hash field at its end)");
    }
    r->body_len = (size_t)(hash_at - line);
    const char *hash_hex = hash_at + KEY_LEN;
    if (!audit_is_hex(hash_hex, AUDIT_HASH_HEX)) return slm_err(why, why_len, "the hash is not 64 lowercase hex digits");
    memcpy(r->hash, hash_hex, AUDIT_HASH_HEX);
    if (sig_at) {
        if (!audit_is_hex(sig_at, AUDIT_SIG_HEX)) return slm_err(why, why_len, "the signature is not 128 lowercase hex digits");
        memcpy(r->sig, sig_at, AUDIT_SIG_HEX);
        r->has_sig = true;
    }
    /* the hash covers the body exactly as stored, closed by '}' */
    crypto_hash_sha256_state st;
    unsigned char h[crypto_hash_sha256_BYTES];
    char hex[AUDIT_HASH_HEX + 1];
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)line, r->body_len);
    crypto_hash_sha256_update(&st, (const unsigned char *)"}", 1);
    crypto_hash_sha256_final(&st, h);
    audit_to_hex(h, sizeof h, hex);
    if (memcmp(hex, r->hash, AUDIT_HASH_HEX) != 0)
        return slm_err(why, why_len, "hash mismatch (the record's bytes were changed)");

    json_error_t jerr;
    json_t *obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!obj) return slm_err(why, why_len, "not valid JSON: %s", jerr.text);
    int rc = -1;
    if (!json_is_object(obj)) {
        slm_err(why, why_len, "not a JSON object");
        goto done;
    }
    json_t *seq = json_object_get(obj, "seq");
    if (!json_is_integer(seq) || json_integer_value(seq) < 1) {
        slm_err(why, why_len, "no valid seq");
        goto done;
    }
    r->seq = (uint64_t)json_integer_value(seq);
    json_t *t = json_object_get(obj, "time");
    if (!json_is_string(t) || slm_audit_parse_time(json_string_value(t), &r->time) != 0) {
        slm_err(why, why_len, "seq %llu: no valid time", (unsigned long long)r->seq);
        goto done;
    }
    const char *prev = hex_field(obj, "prev", AUDIT_HASH_HEX);
    if (!prev) {
        slm_err(why, why_len, "seq %llu: no valid prev", (unsigned long long)r->seq);
        goto done;
    }
    memcpy(r->prev, prev, AUDIT_HASH_HEX);
    const char *hash_field = hex_field(obj, "hash", AUDIT_HASH_HEX);
    if (!hash_field || memcmp(hash_field, r->hash, AUDIT_HASH_HEX) != 0) {
        slm_err(why, why_len, "seq %llu: the hash field is malformed", (unsigned long long)r->seq);
        goto done;
    }
    if (json_object_get(obj, "signer")) {
        const char *signer = hex_field(obj, "signer", AUDIT_SIGNER_HEX);
        if (!signer) {
            slm_err(why, why_len, "seq %llu: malformed signer", (unsigned long long)r->seq);
            goto done;
        }
        memcpy(r->signer, signer, AUDIT_SIGNER_HEX);
        r->has_signer = true;
    }
    if (r->has_signer != r->has_sig) {
        slm_err(why, why_len, "seq %llu: %s", (unsigned long long)r->seq,
                r->has_signer ? "names a signer but has no signature (removed?)" : "has a signature but names no signer");
        goto done;
    }
    json_t *rec = json_object_get(obj, "recovered");
    if (rec) {
        json_t *file = json_object_get(rec, "file"), *off = json_object_get(rec, "offset"),
               *bytes = json_object_get(rec, "bytes");
        const char *sha = json_is_object(rec) ? hex_field(rec, "sha256", AUDIT_HASH_HEX) : NULL;
        if (!json_is_object(rec) || !json_is_string(file) || !audit_file_number(json_string_value(file)) ||
            !json_is_integer(off) || json_integer_value(off) < 0 || !json_is_integer(bytes) ||
            json_integer_value(bytes) < 1 || !sha) {
            slm_err(why, why_len, "seq %llu: malformed recovered field", (unsigned long long)r->seq);
            goto done;
        }
        r->has_recovered = true;
        snprintf(r->rec_file, sizeof r->rec_file, "%s", json_string_value(file));
        r->rec_offset = (uint64_t)json_integer_value(off);
        r->rec_bytes = (uint64_t)json_integer_value(bytes);
        memcpy(r->rec_sha256, sha, AUDIT_HASH_HEX);
    }
    rc = 0;
done:
    json_decref(obj);
    return rc;
}

bool audit_check_sig(const audit_rec *r, const unsigned char pk[crypto_sign_PUBLICKEYBYTES]) {
    if (!r->has_sig) return false;
    unsigned char sig[crypto_sign_BYTES];
    if (!from_hex(r->sig, AUDIT_SIG_HEX, sig)) return false;
    char msg[sizeof AUDIT_RECORD_SIG_PREFIX + AUDIT_HASH_HEX];
    int n = snprintf(msg, sizeof msg, "%s%s", AUDIT_RECORD_SIG_PREFIX, r->hash);
    return crypto_sign_verify_detached(sig, (const unsigned char *)msg, (unsigned long long)n, pk) == 0;
}

/* ---- files ---- */

void audit_file_name(unsigned num, char out[AUDIT_NAME_MAX]) {
    snprintf(out, AUDIT_NAME_MAX, AUDIT_FILE_PREFIX "%06u" AUDIT_FILE_SUFFIX, num);
}

unsigned audit_file_number(const char *name) {
    size_t plen = strlen(AUDIT_FILE_PREFIX);
    if (strncmp(name, AUDIT_FILE_PREFIX, plen) != 0) return 0;
    const char *d = name + plen;
    size_t nd = strspn(d, "0123456789");
    if (nd < 6 || nd > 9 || strcmp(d + nd, AUDIT_FILE_SUFFIX) != 0) return 0;
    unsigned long v = strtoul(d, NULL, 10);
    char canon[AUDIT_NAME_MAX];
    audit_file_name((unsigned)v, canon);
    return v >= 1 && strcmp(canon, name) == 0 ? (unsigned)v : 0; /* one spelling per number */
}

static int cmp_unsigned(const void *a, const void *b) {
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return x < y ? -1 : x > y;
}

int audit_list_files(const char *dir, unsigned **nums, size_t *n, char *err, size_t err_len) {
    *nums = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return slm_err(err, err_len, "cannot read %s: %s", dir, strerror(errno));
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned num = audit_file_number(e->d_name);
        if (!num) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            unsigned *grown = realloc(*nums, cap * sizeof **nums);
            if (!grown) {
                closedir(d);
                free(*nums);
                *nums = NULL;
                return slm_err(err, err_len, "out of memory listing %s", dir);
            }
            *nums = grown;
        }
        (*nums)[(*n)++] = num;
    }
    closedir(d);
    if (*n) qsort(*nums, *n, sizeof **nums, cmp_unsigned);
    return 0;
}

int audit_read_file(const char *path, uint64_t offset, char **buf, size_t *len, char *err, size_t err_len) {
    *buf = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return slm_err(err, err_len, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return slm_err(err, err_len, "%s is not a regular file", path);
    }
    uint64_t size = (uint64_t)st.st_size;
    if (offset > size) offset = size;
    if (size - offset > (uint64_t)SIZE_MAX / 2) {
        close(fd);
        return slm_err(err, err_len, "%s is too large to read", path);
    }
    size_t want = (size_t)(size - offset);
    char *b = malloc(want + 1);
    if (!b) {
        close(fd);
        return slm_err(err, err_len, "out of memory reading %s (%zu bytes)", path, want);
    }
    size_t got = 0;
    while (got < want) {
        ssize_t k = pread(fd, b + got, want - got, (off_t)(offset + got));
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            int e = errno;
            free(b);
            close(fd);
            return slm_err(err, err_len, "cannot read %s: %s", path, strerror(e));
        }
        if (k == 0) break; /* shrank meanwhile: what is there */
        got += (size_t)k;
    }
    close(fd);
    b[got] = 0;
    *buf = b;
    *len = got;
    return 0;
}

/* ---- HEAD ---- */

static void head_message(uint64_t seq, const char *hash, char *out, size_t cap) {
    snprintf(out, cap, "%s%llu:%s", AUDIT_HEAD_SIG_PREFIX, (unsigned long long)seq, hash);
}

void audit_head_format(uint64_t seq, const char *hash, const unsigned char *sk, char out[AUDIT_HEAD_SLOT]) {
    char msg[128], check[AUDIT_HASH_HEX + 1], sig_hex[AUDIT_SIG_HEX + 1] = "";
    head_message(seq, hash, msg, sizeof msg);
    audit_sha256_hex(msg, strlen(msg), check);
    if (sk) {
        unsigned char sig[crypto_sign_BYTES];
        crypto_sign_detached(sig, NULL, (const unsigned char *)msg, strlen(msg), sk);
        audit_to_hex(sig, sizeof sig, sig_hex);
    }
    int n = snprintf(out, AUDIT_HEAD_SLOT, "{\"seq\":%llu,\"hash\":\"%s\",\"check\":\"%s\"%s%s%s}",
                     (unsigned long long)seq, hash, check, sk ? ",\"sig\":\"" : "", sig_hex, sk ? "\"" : "");
    memset(out + n, ' ', AUDIT_HEAD_SLOT - 1 - (size_t)n);
    out[AUDIT_HEAD_SLOT - 1] = '\n';
}

static int head_slot_parse(const char *slot, const unsigned char *pk, audit_head *h, char *why, size_t why_len) {
    size_t n = AUDIT_HEAD_SLOT;
    while (n > 0 && (slot[n - 1] == ' ' || slot[n - 1] == '\n')) n--;
    json_error_t jerr;
    json_t *o = json_loadb(slot, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!o) return slm_err(why, why_len, "not JSON: %s", jerr.text);
    int rc = -1;
    json_t *seq = json_object_get(o, "seq");
    const char *hash = json_is_object(o) ? hex_field(o, "hash", AUDIT_HASH_HEX) : NULL;
    const char *check = json_is_object(o) ? hex_field(o, "check", AUDIT_HASH_HEX) : NULL;
    if (!json_is_integer(seq) || json_integer_value(seq) < 0 || !hash || !check) {
        slm_err(why, why_len, "missing seq, hash or check");
        goto done;
    }
    h->seq = (uint64_t)json_integer_value(seq);
    memcpy(h->hash, hash, AUDIT_HASH_HEX + 1);
    char msg[128], want[AUDIT_HASH_HEX + 1];
    head_message(h->seq, h->hash, msg, sizeof msg);
    audit_sha256_hex(msg, strlen(msg), want);
    if (strcmp(want, check) != 0) {
        slm_err(why, why_len, "check mismatch");
        goto done;
    }
    const char *sig_hex = hex_field(o, "sig", AUDIT_SIG_HEX);
    h->signed_ = sig_hex != NULL;
    if (pk) {
        unsigned char sig[crypto_sign_BYTES];
        if (!sig_hex || !from_hex(sig_hex, AUDIT_SIG_HEX, sig) ||
            crypto_sign_verify_detached(sig, (const unsigned char *)msg, strlen(msg), pk) != 0) {
            slm_err(why, why_len, sig_hex ? "bad signature" : "not signed");
            goto done;
        }
    }
    rc = 0;
done:
    json_decref(o);
    return rc;
}

int audit_head_parse(const char *buf, size_t len, const unsigned char *pk, audit_head *out, char *why, size_t why_len) {
    bool found = false;
    char reason[2][160] = {"missing", "missing"};
    for (int s = 0; s < 2; s++) {
        if (len < (size_t)(s + 1) * AUDIT_HEAD_SLOT) continue;
        audit_head h = {0};
        if (head_slot_parse(buf + (size_t)s * AUDIT_HEAD_SLOT, pk, &h, reason[s], sizeof reason[s]) != 0) continue;
        if (!found || h.seq > out->seq) *out = h;
        found = true;
    }
    if (!found) return slm_err(why, why_len, "no valid slot (slot 1: %s; slot 2: %s)", reason[0], reason[1]);
    return 0;
}

/* ---- keys ---- */

int audit_load_pub_file(const char *path, unsigned char pk[crypto_sign_PUBLICKEYBYTES], char *err, size_t err_len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return 0;
        return slm_err(err, err_len, "cannot open %s: %s", path, strerror(errno));
    }
    char buf[2 * crypto_sign_PUBLICKEYBYTES + 2];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    if (n < 2 * crypto_sign_PUBLICKEYBYTES || n > 2 * crypto_sign_PUBLICKEYBYTES + 1 ||
        (n == 2 * crypto_sign_PUBLICKEYBYTES + 1 && buf[n - 1] != '\n') ||
        !from_hex(buf, 2 * crypto_sign_PUBLICKEYBYTES, pk))
        return slm_err(err, err_len, "%s is not a public key (64 lowercase hex digits and a newline)", path);
    return 1;
}

int audit_load_pub(const char *data_dir, unsigned char pk[crypto_sign_PUBLICKEYBYTES], char *err, size_t err_len) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/audit.pub", data_dir) >= (int)sizeof path)
        return slm_err(err, err_len, "data directory path too long");
    return audit_load_pub_file(path, pk, err, err_len);
}
