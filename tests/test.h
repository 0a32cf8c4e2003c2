/* Minimal test harness: CHECK macros that count failures, and the location of shared test data. */
#ifndef SLM_TEST_H
#define SLM_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int test_failures = 0;
static int test_checks = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        test_checks++;                                                               \
        if (!(cond)) {                                                               \
            test_failures++;                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                            \
    } while (0)

#define CHECKF(cond, ...)                                                  \
    do {                                                                   \
        test_checks++;                                                     \
        if (!(cond)) {                                                     \
            test_failures++;                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

/* Exit code ctest reports as "skipped" (SKIP_RETURN_CODE). */
#define TEST_SKIP_CODE 77

static inline int test_report(const char *name) {
    fprintf(stderr, "%s: %d checks, %d failures\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

static inline int test_is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The shared data folder (models, reference outputs): $SLM_TEST_DATA, else ../shared beside the
 * source tree. NULL (with a message) if absent. */
static inline const char *test_shared_dir(void) {
    const char *d = getenv("SLM_TEST_DATA");
    if (d && *d) {
        if (test_is_dir(d)) return d;
        fprintf(stderr, "SLM_TEST_DATA=%s is not a directory\n", d);
        return NULL;
    }
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/../shared", SLM_SOURCE_DIR);
    if (test_is_dir(buf)) return buf;
    fprintf(stderr, "shared test data absent: set SLM_TEST_DATA to the folder with models/ and reference/ "
                    "(looked for %s)\n", buf);
    return NULL;
}

/* A whole file, NUL-terminated (malloc'd; *len its length when len is not NULL), or NULL. */
static inline char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0, k;
    char *buf = malloc(cap + 1);
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            char *grown = realloc(buf, cap * 2 + 1);
            if (!grown) free(buf);
            buf = grown;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = 0;
    if (buf && len) *len = n;
    return buf;
}

/* Folder of generated synthetic models: $SLM_TEST_MODELS, else <build>/testdata. */
static inline const char *test_models_dir(void) {
    const char *d = getenv("SLM_TEST_MODELS");
    if (d && *d) return d;
    return SLM_BINARY_DIR "/testdata";
}

#endif
