/* The audit log: chain format (bytes checked independently with libsodium), rotation, every kind
 * of tampering named by verify, signatures, torn-tail recovery, HEAD, concurrency and group commit,
 * query filters, time parsing. */
#include <ftw.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit_impl.h"
#include "slm_audit.h"
#include "slm_store.h"
#include "test.h"

static char err[512];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
    (void)st, (void)flag, (void)f;
    return remove(p);
}
static void rm_rf(const char *p) { nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static char *mk_tmp(void) {
    const char *base = getenv("TMPDIR");
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/slm-audit-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(p)) {
        perror("mkdtemp");
        exit(1);
    }
    return p;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    b[got] = 0;
    if (len) *len = got;
    return b;
}

static void write_file(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fwrite(data, 1, len, f);
    fclose(f);
}

static void append_file(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "ab");
    fwrite(data, 1, len, f);
    fclose(f);
}

static const char *log_file(const char *dir, unsigned num) {
    static char p[4][4200];
    static int k;
    char *out = p[k++ % 4];
    snprintf(out, 4200, "%s/audit/audit-%06u.jsonl", dir, num);
    return out;
}

/* Runs verify; the report goes into `report`. */
static int verify(const char *dir, char *report, size_t cap) {
    FILE *f = fmemopen(report, cap, "w");
    int rc = slm_audit_verify(dir, f, err, sizeof err);
    fclose(f);
    return rc;
}

static int append_n(slm_audit *a, int from, int n) {
    for (int i = from; i < from + n; i++) {
        char rec[256];
        snprintf(rec, sizeof rec,
                 "{\"request_id\":\"req-%d\",\"key\":\"%s\",\"route\":\"%s\",\"status\":200,\"prompt_tokens\":%d}", i,
                 i % 2 ? "alice" : "bob", i % 3 ? "local" : "upstream", i);
        if (slm_audit_append(a, rec, err, sizeof err) != 0) return -1;
    }
    return 0;
}

/* A fresh log of n records (rotate_bytes 0 = default). */
static char *make_log(int n, size_t rotate, bool sign) {
    char *dir = mk_tmp();
    slm_audit *a;
    slm_audit_options o = {.sign = sign, .rotate_bytes = rotate};
    if (slm_audit_open(dir, &o, &a, err, sizeof err) != 0) {
        fprintf(stderr, "open: %s\n", err);
        exit(1);
    }
    if (append_n(a, 1, n)) fprintf(stderr, "append: %s\n", err);
    slm_audit_close(a);
    return dir;
}

/* The lines of a file (pointers into a malloc'd copy). */
typedef struct lines {
    char *buf;
    char *line[256];
    int n;
} lines;
static void split_lines(const char *path, lines *L) {
    L->buf = read_all(path, NULL);
    L->n = 0;
    for (char *p = L->buf, *nl; (nl = strchr(p, '\n')); p = nl + 1) {
        *nl = 0;
        L->line[L->n++] = p;
    }
}
static void join_lines(const char *path, lines *L) {
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < L->n; i++)
        if (L->line[i]) fprintf(f, "%s\n", L->line[i]);
    fclose(f);
    free(L->buf);
}

static void test_format(void) {
    char *dir = make_log(3, 0, false);
    lines L;
    split_lines(log_file(dir, 1), &L);
    CHECK(L.n == 3);
    char prev[65] = AUDIT_ZERO_HASH;
    for (int i = 0; i < L.n; i++) {
        const char *line = L.line[i];
        char want_start[64];
        snprintf(want_start, sizeof want_start, "{\"seq\":%d,\"time\":\"", i + 1);
        CHECKF(strncmp(line, want_start, strlen(want_start)) == 0, "%s", line);
        /* caller fields sorted, then prev, then the hash of the bytes before it */
        CHECK(strstr(line, "\"key\":") < strstr(line, "\"prompt_tokens\":"));
        const char *h = strstr(line, ",\"hash\":\"");
        CHECK(h && strlen(h) == 9 + 64 + 2);
        char body[512];
        size_t blen = (size_t)(h - line);
        memcpy(body, line, blen);
        body[blen] = '}';
        unsigned char dig[32];
        crypto_hash_sha256(dig, (unsigned char *)body, blen + 1);
        char hex[65];
        audit_to_hex(dig, 32, hex);
        CHECKF(strncmp(h + 9, hex, 64) == 0, "line %d hash", i + 1);
        char want_prev[80];
        snprintf(want_prev, sizeof want_prev, ",\"prev\":\"%s\"", prev);
        CHECKF(strstr(line, want_prev) != NULL, "line %d prev", i + 1);
        memcpy(prev, hex, 65);
        /* time is RFC 3339 UTC with milliseconds */
        const char *t = line + strlen(want_start);
        CHECK(t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z' && t[24] == '"');
    }
    free(L.buf);
    char rep[2048];
    CHECK(verify(dir, rep, sizeof rep) == 0);
    CHECKF(strstr(rep, "ok: 3 records in 1 file") != NULL, "%s", rep);
    /* HEAD and the file modes: records may hold personal data */
    char p[4200];
    snprintf(p, sizeof p, "%s/audit/HEAD", dir);
    size_t hl;
    char *head = read_all(p, &hl);
    CHECK(head && hl == 1024 && strstr(head, "\"seq\":3,"));
    free(head);
    struct stat st;
    CHECK(stat(log_file(dir, 1), &st) == 0 && (st.st_mode & 0777) == 0600);
    snprintf(p, sizeof p, "%s/audit", dir);
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0700);
    rm_rf(dir);
    free(dir);
}

static void test_bad_input(void) {
    char *dir = mk_tmp();
    slm_audit *a;
    CHECK(slm_audit_open(dir, NULL, &a, err, sizeof err) == 0);
    CHECK(slm_audit_append(a, "{\"seq\":5}", err, sizeof err) == -1 && strstr(err, "'seq' is reserved"));
    CHECK(slm_audit_append(a, "{\"hash\":\"x\"}", err, sizeof err) == -1 && strstr(err, "reserved"));
    CHECK(slm_audit_append(a, "[1,2]", err, sizeof err) == -1 && strstr(err, "not a JSON object"));
    CHECK(slm_audit_append(a, "{\"a\":", err, sizeof err) == -1 && strstr(err, "not valid JSON"));
    CHECK(slm_audit_append(a, "{\"a\":1,\"a\":2}", err, sizeof err) == -1);
    CHECK(slm_audit_append(a, "{}", err, sizeof err) == 0);
    CHECK(slm_audit_append(a, NULL, err, sizeof err) == -1);
    CHECK(slm_audit_append(a, "{\"text\":\"line\\nbreak \\u00e9\"}", err, sizeof err) == 0);
    /* a second writer on the same log is refused */
    slm_audit *b;
    CHECK(slm_audit_open(dir, NULL, &b, err, sizeof err) == -1 && strstr(err, "in use"));
    slm_audit_close(a);
    char rep[2048];
    CHECKF(verify(dir, rep, sizeof rep) == 0 && strstr(rep, "ok: 2 records"), "%s", rep);
    size_t len;
    char *log = read_all(log_file(dir, 1), &len);
    int newlines = 0;
    for (size_t i = 0; i < len; i++) newlines += log[i] == '\n';
    CHECK(newlines == 2 && strstr(log, "\"text\":\"line\\nbreak \u00e9\"")); /* escaped newline, UTF-8 kept */
    free(log);
    rm_rf(dir);
    free(dir);
}

static void test_rotation(void) {
    /* each record is ~330 bytes: 700 bytes per file = 3 records per file */
    char *dir = make_log(10, 700, false);
    char rep[2048];
    CHECKF(verify(dir, rep, sizeof rep) == 0 && strstr(rep, "ok: 10 records in 4 files"), "%s", rep);
    lines L1, L2;
    split_lines(log_file(dir, 1), &L1);
    split_lines(log_file(dir, 2), &L2);
    CHECK(L1.n == 3 && L2.n == 3);
    /* the chain crosses the file boundary */
    const char *h = strstr(L1.line[2], ",\"hash\":\"");
    char want[100];
    snprintf(want, sizeof want, ",\"prev\":\"%.64s\"", h + 9);
    CHECK(strncmp(L2.line[0], "{\"seq\":4,", 9) == 0 && strstr(L2.line[0], want));
    free(L1.buf);
    free(L2.buf);
    /* reopening continues in the newest file */
    slm_audit *a;
    slm_audit_options o = {.rotate_bytes = 700};
    CHECK(slm_audit_open(dir, &o, &a, err, sizeof err) == 0);
    CHECK(append_n(a, 11, 3) == 0);
    slm_audit_close(a);
    CHECKF(verify(dir, rep, sizeof rep) == 0 && strstr(rep, "ok: 13 records in 5 files"), "%s", rep);
    rm_rf(dir);
    free(dir);
}

/* A log of 12 records in 4 files of 3, tampered by `how`; verify must fail naming `want`. */
static void tamper_case(const char *what, bool sign, void (*how)(const char *dir), const char *want) {
    char *dir = make_log(12, 700, sign);
    char rep[4096];
    CHECKF(verify(dir, rep, sizeof rep) == 0, "%s: before tampering: %s", what, rep);
    how(dir);
    int rc = verify(dir, rep, sizeof rep);
    CHECKF(rc == 1, "%s: verify returned %d: %s %s", what, rc, rep, err);
    CHECKF(strstr(rep, want) != NULL, "%s: report lacks '%s': %s", what, want, rep);
    rm_rf(dir);
    free(dir);
}

static void edit_byte(const char *dir) { /* seq 5 is line 2 of file 2: its prompt_tokens 5 -> 6 */
    lines L;
    split_lines(log_file(dir, 2), &L);
    char *p = strstr(L.line[1], "\"prompt_tokens\":5");
    if (p) p[16] = '6';
    join_lines(log_file(dir, 2), &L);
}
static void edit_whitespace(const char *dir) { /* same JSON value, other bytes */
    lines L;
    split_lines(log_file(dir, 2), &L);
    char *p = strstr(L.line[1], "\"status\":200");
    char buf[1024];
    size_t k = (size_t)(p - L.line[1]) + 9;
    snprintf(buf, sizeof buf, "%.*s %s", (int)k, L.line[1], L.line[1] + k);
    L.line[1] = buf;
    join_lines(log_file(dir, 2), &L);
}
static void delete_middle(const char *dir) {
    lines L;
    split_lines(log_file(dir, 2), &L);
    L.line[1] = NULL;
    join_lines(log_file(dir, 2), &L);
}
static void reorder(const char *dir) {
    lines L;
    split_lines(log_file(dir, 2), &L);
    char *t = L.line[1];
    L.line[1] = L.line[2];
    L.line[2] = t;
    join_lines(log_file(dir, 2), &L);
}
static void truncate_file(const char *dir) { /* file 2 cut after its first record */
    lines L;
    split_lines(log_file(dir, 2), &L);
    L.n = 1;
    join_lines(log_file(dir, 2), &L);
}
static void empty_file(const char *dir) { write_file(log_file(dir, 2), "", 0); }
static void delete_file(const char *dir) { remove(log_file(dir, 2)); }
static void delete_first_file(const char *dir) { remove(log_file(dir, 1)); }
static void delete_tail(const char *dir) { /* the last two records */
    lines L;
    split_lines(log_file(dir, 4), &L);
    L.n = 1;
    join_lines(log_file(dir, 4), &L);
}
static void delete_last_file(const char *dir) { remove(log_file(dir, 4)); }
static void delete_head(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/audit/HEAD", dir);
    remove(p);
}
static void damage_head(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/audit/HEAD", dir);
    write_file(p, "{\"seq\":12}", 10);
}
static void copy_record(const char *dir) { /* a valid line of file 1 pasted into file 3 */
    lines L;
    split_lines(log_file(dir, 1), &L);
    char line[1024];
    snprintf(line, sizeof line, "%s\n", L.line[0]);
    free(L.buf);
    lines M;
    split_lines(log_file(dir, 3), &M);
    M.line[M.n] = M.line[M.n - 1];
    M.line[M.n - 1] = line;
    line[strlen(line) - 1] = 0;
    M.n++;
    join_lines(log_file(dir, 3), &M);
}
static void strip_newline(const char *dir) { /* the last line of file 2 loses its newline */
    size_t len;
    char *b = read_all(log_file(dir, 2), &len);
    write_file(log_file(dir, 2), b, len - 1);
    free(b);
}
static void edit_sig(const char *dir) {
    lines L;
    split_lines(log_file(dir, 2), &L);
    char *p = strstr(L.line[1], ",\"sig\":\"");
    if (p) p[8] = p[8] == 'a' ? 'b' : 'a';
    join_lines(log_file(dir, 2), &L);
}
static void strip_sig(const char *dir) {
    lines L;
    split_lines(log_file(dir, 2), &L);
    char *p = strstr(L.line[1], ",\"sig\":\"");
    if (p) strcpy(p, "}");
    join_lines(log_file(dir, 2), &L);
}
static void other_pub(const char *dir) {
    unsigned char pk[32], sk[64];
    crypto_sign_keypair(pk, sk);
    char hex[66], p[4200];
    audit_to_hex(pk, 32, hex);
    strcat(hex, "\n");
    snprintf(p, sizeof p, "%s/audit.pub", dir);
    write_file(p, hex, strlen(hex));
}
static void delete_pub(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/audit.pub", dir);
    remove(p);
}

static void test_tampering(void) {
    tamper_case("edited byte", false, edit_byte, "bad: audit-000002.jsonl line 2 (offset");
    tamper_case("edited byte, hash named", false, edit_byte, "where seq 5 was expected: hash mismatch");
    tamper_case("whitespace", false, edit_whitespace, "where seq 5 was expected: hash mismatch");
    tamper_case("deleted record", false, delete_middle, "bad: record seq 5 (audit-000002.jsonl line 2");
    tamper_case("deleted record, reason", false, delete_middle, "seq 6 where seq 5 was expected (records are missing)");
    tamper_case("reordered", false, reorder, "bad: record seq 5 (audit-000002.jsonl line 2");
    tamper_case("truncated middle file", false, truncate_file, "bad: record seq 5 (audit-000003.jsonl line 1");
    tamper_case("emptied middle file", false, empty_file, "bad: record seq 4 (audit-000003.jsonl line 1");
    tamper_case("deleted middle file", false, delete_file, "bad: record seq 4: audit-000002.jsonl is missing");
    tamper_case("deleted first file", false, delete_first_file, "seq 4 where seq 1 was expected");
    tamper_case("deleted tail", false, delete_tail, "the log ends at seq 10 but HEAD records seq 12");
    tamper_case("deleted last file", false, delete_last_file, "the log ends at seq 9 but HEAD records seq 12");
    tamper_case("deleted HEAD", false, delete_head, "HEAD is missing");
    tamper_case("damaged HEAD", false, damage_head, "HEAD is damaged: no valid slot");
    tamper_case("copied record", false, copy_record, "bad: record seq 9 (audit-000003.jsonl line 3");
    tamper_case("newline removed", false, strip_newline, "audit-000002.jsonl line 3");
    tamper_case("edited signature", true, edit_sig, "bad: record seq 4 (audit-000002.jsonl line 2, offset"); /* signed: 2 per file */
    tamper_case("edited signature, reason", true, edit_sig, "the signature does not verify");
    tamper_case("stripped signature", true, strip_sig, "names a signer but has no signature");
    tamper_case("other public key", true, other_pub, "bad: record seq 1 (audit-000001.jsonl line 1, offset 0): signed by key");
    tamper_case("deleted public key", true, delete_pub, "audit.pub is missing");
}

static void test_signed(void) {
    char *dir = make_log(4, 0, true);
    char rep[2048], p[4200];
    CHECKF(verify(dir, rep, sizeof rep) == 0 && strstr(rep, "ok: 4 records in 1 file, signed by key "), "%s", rep);
    snprintf(p, sizeof p, "%s/audit.key", dir);
    struct stat st;
    CHECK(stat(p, &st) == 0 && (st.st_mode & 0777) == 0600);
    /* signing stays on when reopened without asking */
    slm_audit *a;
    CHECK(slm_audit_open(dir, NULL, &a, err, sizeof err) == 0);
    slm_audit_stats s;
    slm_audit_get_stats(a, &s);
    CHECK(s.signing && s.last_seq == 4);
    CHECK(append_n(a, 5, 1) == 0);
    slm_audit_close(a);
    lines L;
    split_lines(log_file(dir, 1), &L);
    CHECK(L.n == 5 && strstr(L.line[4], ",\"sig\":\"") && strstr(L.line[4], "\"signer\":\""));
    free(L.buf);
    CHECKF(verify(dir, rep, sizeof rep) == 0, "%s", rep);
    /* a trusted copy of the public key: a replaced key pair is caught */
    char trusted[4200], pub[4200];
    snprintf(pub, sizeof pub, "%s/audit.pub", dir);
    snprintf(trusted, sizeof trusted, "%s/trusted.pub", dir);
    size_t pl;
    char *pk = read_all(pub, &pl);
    write_file(trusted, pk, pl);
    free(pk);
    FILE *f = fmemopen(rep, sizeof rep, "w");
    CHECK(slm_audit_verify_with_key(dir, trusted, f, err, sizeof err) == 0);
    fclose(f);
    other_pub(dir);
    f = fmemopen(rep, sizeof rep, "w");
    CHECK(slm_audit_verify_with_key(dir, trusted, f, err, sizeof err) == 1);
    fclose(f);
    CHECKF(strstr(rep, "is not the trusted key") != NULL, "%s", rep);
    remove(pub); /* without the data directory's copy the trusted key still checks every record */
    f = fmemopen(rep, sizeof rep, "w");
    CHECK(slm_audit_verify_with_key(dir, trusted, f, err, sizeof err) == 0);
    fclose(f);
    CHECKF(strstr(rep, "ok: 5 records in 1 file, signed by key ") != NULL, "%s", rep);
    CHECK(slm_audit_verify_with_key(dir, "/nonexistent.pub", NULL, err, sizeof err) == -1 && strstr(err, "does not exist"));
    pk = read_all(trusted, &pl);
    write_file(pub, pk, pl);
    free(pk);
    /* a key readable by others is refused */
    chmod(p, 0644);
    CHECK(slm_audit_open(dir, NULL, &a, err, sizeof err) == -1 && strstr(err, "chmod 600"));
    rm_rf(dir);
    free(dir);
}

/* The newest file with a torn last record (bytes `tail` appended), as a kill -9 mid-write leaves it. */
static void torn_case(const char *what, const char *tail) {
    char *dir = make_log(5, 0, false);
    size_t before;
    free(read_all(log_file(dir, 1), &before));
    append_file(log_file(dir, 1), tail, strlen(tail));
    char rep[4096];
    /* before recovery: a warning, not a failure */
    int rc = verify(dir, rep, sizeof rep);
    CHECKF(rc == 0 && strstr(rep, "warning: audit-000001.jsonl line 6") && strstr(rep, "torn record") &&
               strstr(rep, "ok: 5 records"),
           "%s: before open: rc %d: %s", what, rc, rep);
    /* open recovers: a recovery record declares the torn bytes, which stay in place */
    slm_audit *a;
    CHECKF(slm_audit_open(dir, NULL, &a, err, sizeof err) == 0, "%s: %s", what, err);
    CHECK(append_n(a, 6, 2) == 0);
    slm_audit_close(a);
    size_t after;
    char *log = read_all(log_file(dir, 1), &after);
    CHECKF(memmem(log, after, tail, strlen(tail)) != NULL, "%s: torn bytes kept", what);
    char decl[200];
    snprintf(decl, sizeof decl, "\"recovered\":{\"bytes\":%zu,\"file\":\"audit-000001.jsonl\",\"offset\":%zu,",
             strlen(tail) + (tail[strlen(tail) - 1] != '\n'), before);
    CHECKF(strstr(log, decl) != NULL, "%s: no declaration %s", what, decl);
    free(log);
    rc = verify(dir, rep, sizeof rep);
    CHECKF(rc == 0 && strstr(rep, "declared by the recovery record seq 6") && strstr(rep, "ok: 8 records"),
           "%s: after recovery: rc %d: %s", what, rc, rep);
    /* changing the declared torn bytes afterwards is caught */
    log = read_all(log_file(dir, 1), &after);
    log[before] ^= 1;
    write_file(log_file(dir, 1), log, after);
    free(log);
    rc = verify(dir, rep, sizeof rep);
    CHECKF(rc == 1 && strstr(rep, "differ"), "%s: edited torn bytes: %s", what, rep);
    rm_rf(dir);
    free(dir);
}

static void test_torn(void) {
    torn_case("half a record", "{\"seq\":6,\"time\":\"2026-01-01T00:00:00.000Z\",\"key\":\"al");
    torn_case("one byte", "{");
    /* a whole record but its newline: never acknowledged, so still torn */
    char *dir = make_log(6, 0, false);
    lines L;
    split_lines(log_file(dir, 1), &L);
    char last[1024];
    snprintf(last, sizeof last, "%s", L.line[5]);
    free(L.buf);
    rm_rf(dir);
    free(dir);
    torn_case("record without newline", last);
    /* a crash during the recovery itself: torn bytes, the newline, part of the recovery record */
    torn_case("torn recovery", "{\"seq\":6,\"ti\n{\"seq\":6,\"time\":\"2026");
    torn_case("binary junk", "\x01\x02\xff\xfe\n\x00zz");

    /* the first record of a new file torn */
    dir = make_log(4, 700, false);
    append_file(log_file(dir, 3), "{\"seq\":5,", 9);
    slm_audit *a;
    CHECKF(slm_audit_open(dir, &(slm_audit_options){.rotate_bytes = 700}, &a, err, sizeof err) == 0, "%s", err);
    CHECK(append_n(a, 5, 1) == 0);
    slm_audit_close(a);
    char rep[4096];
    CHECKF(verify(dir, rep, sizeof rep) == 0 && strstr(rep, "warning: audit-000003.jsonl line 1 (offset 0)") &&
               strstr(rep, "ok: 6 records in 3 files"),
           "%s", rep);

    rm_rf(dir);
    free(dir);

    /* a torn record after a full file: the recovery record stays beside it, the next goes to a new file */
    dir = make_log(6, 700, false);
    append_file(log_file(dir, 2), "{\"seq\":7,", 9);
    CHECKF(slm_audit_open(dir, &(slm_audit_options){.rotate_bytes = 700}, &a, err, sizeof err) == 0, "%s", err);
    CHECK(append_n(a, 7, 1) == 0);
    slm_audit_close(a);
    lines R;
    split_lines(log_file(dir, 2), &R);
    CHECK(R.n == 5 && strstr(R.line[4], "\"event\":\"audit.recovered\""));
    free(R.buf);
    CHECKF(verify(dir, rep, sizeof rep) == 0 && strstr(rep, "ok: 8 records in 3 files"), "%s", rep);

    /* a changed record that HEAD covers is not taken for a torn one: open refuses */
    lines M;
    split_lines(log_file(dir, 3), &M);
    CHECK(M.n == 1);
    char *p = strstr(M.line[M.n - 1], "\"status\":200");
    p[9] = '5';
    join_lines(log_file(dir, 3), &M);
    CHECKF(slm_audit_open(dir, NULL, &a, err, sizeof err) == -1 && strstr(err, "HEAD records seq 8"), "%s", err);
    CHECK(verify(dir, rep, sizeof rep) == 1);
    rm_rf(dir);
    free(dir);
}

typedef struct worker {
    slm_audit *a;
    int id, n;
    uint64_t seqs[200];
    int fails;
} worker;

static void *work(void *arg) {
    worker *w = arg;
    for (int i = 0; i < w->n; i++) {
        char rec[128], e[256];
        snprintf(rec, sizeof rec, "{\"request_id\":\"t%d-%d\"}", w->id, i);
        if (slm_audit_append_seq(w->a, rec, &w->seqs[i], e, sizeof e) != 0) w->fails++;
    }
    return NULL;
}

static void test_concurrent(void) {
    char *dir = mk_tmp();
    slm_audit *a;
    CHECK(slm_audit_open(dir, &(slm_audit_options){.rotate_bytes = 8192}, &a, err, sizeof err) == 0);
    audit_test_sync_delay_us = 2000; /* every commit is slow: appenders must meet in batches */
    enum { T = 4, N = 100 };
    worker w[T];
    pthread_t th[T];
    for (int t = 0; t < T; t++) {
        w[t] = (worker){.a = a, .id = t, .n = N};
        pthread_create(&th[t], NULL, work, &w[t]);
    }
    for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
    audit_test_sync_delay_us = 0;
    slm_audit_stats s;
    slm_audit_get_stats(a, &s);
    slm_audit_close(a);
    /* every seq handed out exactly once */
    static char seen[T * N + 1];
    int fails = 0, dup = 0;
    for (int t = 0; t < T; t++) {
        fails += w[t].fails;
        for (int i = 0; i < N; i++) {
            uint64_t q = w[t].seqs[i];
            if (q >= 1 && q <= T * N) dup += seen[q]++;
            else dup++;
        }
    }
    CHECK(fails == 0 && dup == 0);
    CHECK(s.records == T * N && s.last_seq == T * N);
    /* group commit: far fewer commits than records (each slow commit gathers the other threads) */
    fprintf(stderr, "concurrent: %d records, %llu commits, %llu fsyncs\n", T * N, (unsigned long long)s.commits,
            (unsigned long long)s.fsyncs);
    CHECKF(s.commits <= T * N / 2, "%llu commits for %d records", (unsigned long long)s.commits, T * N);
    CHECK(s.fsyncs >= s.commits);
    char rep[2048];
    CHECKF(verify(dir, rep, sizeof rep) == 0 && strstr(rep, "ok: 400 records"), "%s", rep);
    rm_rf(dir);
    free(dir);
}

typedef struct collected {
    int n;
    char first[512];
    int stop_after;
} collected;
static int collect(void *user, const char *line) {
    collected *c = user;
    if (c->n++ == 0) snprintf(c->first, sizeof c->first, "%s", line);
    return c->stop_after && c->n >= c->stop_after;
}

static void test_query(void) {
    char *dir = make_log(12, 700, false);
    collected c = {0};
    CHECK(slm_audit_query(dir, &(slm_audit_filter){0}, collect, &c, err, sizeof err) == 0 && c.n == 12);
    CHECK(strncmp(c.first, "{\"seq\":1,", 9) == 0 && strstr(c.first, "\"request_id\":\"req-1\"") &&
          !strchr(c.first, '\n'));
    c = (collected){0};
    CHECK(slm_audit_query(dir, &(slm_audit_filter){.key = "alice"}, collect, &c, err, sizeof err) == 0 && c.n == 6);
    c = (collected){0};
    CHECK(slm_audit_query(dir, &(slm_audit_filter){.route = "upstream"}, collect, &c, err, sizeof err) == 0 && c.n == 4);
    c = (collected){0};
    CHECK(slm_audit_query(dir, &(slm_audit_filter){.key = "alice", .route = "upstream"}, collect, &c, err, sizeof err) ==
              0 &&
          c.n == 2 && strstr(c.first, "req-3"));
    c = (collected){0};
    CHECK(slm_audit_query(dir, &(slm_audit_filter){.since = 4102444800.0}, collect, &c, err, sizeof err) == 0 && c.n == 0);
    c = (collected){0};
    CHECK(slm_audit_query(dir, &(slm_audit_filter){.since = 1.0}, collect, &c, err, sizeof err) == 0 && c.n == 12);
    c = (collected){.stop_after = 3};
    CHECK(slm_audit_query(dir, NULL, collect, &c, err, sizeof err) == 0 && c.n == 3);
    /* torn bytes are not records */
    append_file(log_file(dir, 4), "{\"seq\":13", 9);
    slm_audit *a;
    CHECK(slm_audit_open(dir, NULL, &a, err, sizeof err) == 0);
    slm_audit_close(a);
    append_file(log_file(dir, 4), "{\"seq\":14}", 10);
    c = (collected){0};
    CHECK(slm_audit_query(dir, NULL, collect, &c, err, sizeof err) == 0 && c.n == 13); /* 12 + the recovery record */
    CHECK(slm_audit_query("/nonexistent/slm", NULL, collect, &c, err, sizeof err) == -1 && strstr(err, "no audit log"));
    rm_rf(dir);
    free(dir);
}

static void test_time(void) {
    double t;
    CHECK(slm_audit_parse_time("1764915218", &t) == 0 && t == 1764915218.0);
    CHECK(slm_audit_parse_time("1764915218.5", &t) == 0 && t == 1764915218.5);
    CHECK(slm_audit_parse_time("1970-01-02", &t) == 0 && t == 86400);
    CHECK(slm_audit_parse_time("2026-12-05T06:13:38Z", &t) == 0 && t == 1796451218);
    CHECK(slm_audit_parse_time("2026-12-05T06:13:38.250Z", &t) == 0 && t == 1796451218.25);
    CHECK(slm_audit_parse_time("2026-12-05 08:13:38+02:00", &t) == 0 && t == 1796451218);
    CHECK(slm_audit_parse_time("2026-12-05T06:13", &t) == 0 && t == 1796451180);
    CHECK(slm_audit_parse_time("2024-02-29", &t) == 0);
    CHECK(slm_audit_parse_time("2025-02-29", &t) == -1);
    CHECK(slm_audit_parse_time("2026-13-01", &t) == -1);
    CHECK(slm_audit_parse_time("2026-12-05T25:00", &t) == -1);
    CHECK(slm_audit_parse_time("2026-12-05Tx", &t) == -1);
    CHECK(slm_audit_parse_time("yesterday", &t) == -1);
    CHECK(slm_audit_parse_time("", &t) == -1);
    CHECK(slm_audit_parse_time("1.2.3", &t) == -1);
    char buf[64];
    setenv("SLM_HOME", "/srv/slm", 1);
    CHECK(slm_data_dir_default(buf, sizeof buf) && strcmp(buf, "/srv/slm") == 0);
    CHECK(slm_data_dir_default(buf, 4) == NULL);
    unsetenv("SLM_HOME");
    if (getuid() != 0) {
        setenv("XDG_DATA_HOME", "/x/data", 1);
        CHECK(slm_data_dir_default(buf, sizeof buf) && strcmp(buf, "/x/data/slm") == 0);
        unsetenv("XDG_DATA_HOME");
        setenv("HOME", "/home/u", 1);
        CHECK(slm_data_dir_default(buf, sizeof buf) && strcmp(buf, "/home/u/.local/share/slm") == 0);
    }
}

int main(void) {
    if (sodium_init() < 0) return 1;
    test_format();
    test_bad_input();
    test_rotation();
    test_tampering();
    test_signed();
    test_torn();
    test_concurrent();
    test_query();
    test_time();
    return test_report("test_audit");
}
