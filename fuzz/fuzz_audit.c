/* libFuzzer target for the audit log's readers and its crash recovery.
 *
 * Input: up to three NUL-separated parts, written as <dir>/audit/audit-000001.jsonl,
 * audit-000002.jsonl and HEAD (a missing part = no file). Checks:
 *   - slm_audit_verify never crashes, returns 0, 1 or -1, and its report's last line starts with
 *     "ok: " (0) or its first non-warning line with "bad: " (1);
 *   - slm_audit_query streams only NUL-free lines without newlines;
 *   - a log that verifies (0) can be opened (recovering a torn tail), appended to, and still
 *     verifies: recovery and verify agree on what a torn record is.
 * Files go to a directory under /dev/shm when it exists (fdatasync there costs nothing). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "slm_audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char root[256];

static void setup(void) {
    if (root[0]) return;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(root, sizeof root, "%s/slm-fuzz-audit-XXXXXX", base);
    if (!mkdtemp(root)) abort();
}

static void path_of(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/audit/%s", root, name); }

static void put(const char *name, const uint8_t *p, size_t n) {
    char path[512];
    path_of(path, sizeof path, name);
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(p, 1, n, f) != n) abort();
    fclose(f);
}

/* Empties <root>/audit and <root> of everything a previous input left (files only; no subfolders). */
static void reset(void) {
    static const char *const names[] = {"audit-000001.jsonl", "audit-000002.jsonl", "audit-000003.jsonl", "HEAD", "LOCK"};
    char path[512];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        path_of(path, sizeof path, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/audit", root);
    mkdir(path, 0700);
}

static int check_line(void *user, const char *line) {
    (void)user;
    if (strchr(line, '\n')) abort();
    return 0;
}

static int run_verify(char **report, size_t *len) {
    char err[512];
    FILE *f = open_memstream(report, len);
    int rc = slm_audit_verify(root, f, err, sizeof err);
    fclose(f);
    if (rc != 0 && rc != 1 && rc != -1) abort();
    if (rc == -1 && (!err[0] || strchr(err, '\n'))) abort();
    if (rc == 0) {
        /* the last line is the verdict */
        const char *last = *report;
        for (const char *p = *report; *p; p++)
            if (*p == '\n' && p[1]) last = p + 1;
        if (strncmp(last, "ok: ", 4) != 0) abort();
    } else if (rc == 1) {
        const char *p = *report;
        while (strncmp(p, "warning: ", 9) == 0 && strchr(p, '\n')) p = strchr(p, '\n') + 1;
        if (strncmp(p, "bad: ", 5) != 0) abort();
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    reset();
    const char *names[3] = {"audit-000001.jsonl", "audit-000002.jsonl", "HEAD"};
    size_t start = 0;
    for (int part = 0; part < 3 && start <= size; part++) {
        const uint8_t *nul = start < size ? memchr(data + start, 0, size - start) : NULL;
        size_t end = nul ? (size_t)(nul - data) : size;
        if (end > start || part == 0) put(names[part], data + start, end - start);
        start = end + 1;
        if (!nul) break;
    }
    char *report = NULL;
    size_t len = 0;
    int rc = run_verify(&report, &len);
    free(report);

    char err[512];
    slm_audit_filter f = {.key = "k", .route = "local", .since = 1.0};
    slm_audit_query(root, &f, check_line, NULL, err, sizeof err);
    slm_audit_query(root, NULL, check_line, NULL, err, sizeof err);

    if (rc == 0) {
        slm_audit *a;
        if (slm_audit_open(root, NULL, &a, err, sizeof err) != 0) {
            fprintf(stderr, "a log that verifies failed to open: %s\n", err);
            abort();
        }
        if (slm_audit_append(a, "{\"request_id\":\"fuzz\"}", err, sizeof err) != 0) {
            fprintf(stderr, "append after open failed: %s\n", err);
            abort();
        }
        slm_audit_close(a);
        report = NULL;
        if (run_verify(&report, &len) != 0) {
            fprintf(stderr, "verify failed after open + append:\n%s", report);
            abort();
        }
        free(report);
    }
    return 0;
}
