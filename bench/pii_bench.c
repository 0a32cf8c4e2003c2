/* PII detector throughput: MB/s of slm_pii_scan over the texts of a JSONL file ({"text": ...} per
 * line), each text scanned on its own (one message at a time, as the request gate does), the set
 * repeated until at least --mb megabytes were scanned; the median of --runs runs. Also reports
 * the streaming filter (redact) fed in 16-byte pieces, as generated text would arrive. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slm_pii.h"

/* CPU time of this thread: MB/s per core, unaffected by other processes on a shared machine
 * (wall-clock rates there are lower by the share of the core we get). */
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *path = NULL;
    double mb = 8;
    int runs = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--mb") == 0 && i + 1 < argc) mb = atof(argv[++i]);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) runs = atoi(argv[++i]);
        else if (argv[i][0] != '-') path = argv[i];
        else {
            fprintf(stderr, "usage: pii_bench FILE.jsonl [--mb N] [--runs N]\n");
            return 2;
        }
    }
    if (!path || mb <= 0 || runs < 1 || runs > 99) {
        fprintf(stderr, "usage: pii_bench FILE.jsonl [--mb N] [--runs N]\n");
        return 2;
    }
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return 1;
    }
    char **texts = NULL;
    size_t *lens = NULL, n = 0, total = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *doc = json_loads(line, JSON_ALLOW_NUL, NULL);
        json_t *t = doc ? json_object_get(doc, "text") : NULL;
        if (json_is_string(t)) {
            texts = realloc(texts, (n + 1) * sizeof *texts);
            lens = realloc(lens, (n + 1) * sizeof *lens);
            if (!texts || !lens) return 1;
            lens[n] = json_string_length(t);
            texts[n] = malloc(lens[n] + 1);
            memcpy(texts[n], json_string_value(t), lens[n] + 1);
            total += lens[n];
            n++;
        }
        json_decref(doc);
    }
    free(line);
    fclose(f);
    if (n == 0) {
        fprintf(stderr, "%s: no {\"text\": ...} lines\n", path);
        return 1;
    }
    slm_pii *d = slm_pii_new(NULL, 0);
    size_t reps = (size_t)(mb * 1e6 / (double)total) + 1;
    double rate[99], frate[99];
    long spans = 0;
    for (int r = 0; r < runs; r++) {
        spans = 0;
        double t0 = now();
        for (size_t k = 0; k < reps; k++)
            for (size_t i = 0; i < n; i++) {
                slm_pii_span *sp;
                int c = slm_pii_scan(d, texts[i], lens[i], &sp);
                if (c < 0) return 1;
                spans += c;
                free(sp);
            }
        rate[r] = (double)(total * reps) / (now() - t0) / 1e6;
    }
    size_t freps = reps / 8 + 1;
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        for (size_t k = 0; k < freps; k++)
            for (size_t i = 0; i < n; i++) {
                slm_pii_filter *fl = slm_pii_filter_new(d, NULL, SLM_PII_FILTER_REDACT);
                char *out = NULL;
                size_t out_len = 0;
                for (size_t p = 0; p < lens[i]; p += 16)
                    slm_pii_filter_feed(fl, texts[i] + p, lens[i] - p < 16 ? lens[i] - p : 16, &out, &out_len);
                slm_pii_filter_flush(fl, &out, &out_len);
                free(out);
                slm_pii_filter_free(fl);
            }
        frate[r] = (double)(total * freps) / (now() - t0) / 1e6;
    }
    qsort(rate, (size_t)runs, sizeof *rate, cmp_double);
    qsort(frate, (size_t)runs, sizeof *frate, cmp_double);
    printf("pii_bench: %zu texts, %.1f KB, avg %.0f bytes/text; scanned %.1f MB per run, %d runs\n", n,
           (double)total / 1e3, (double)total / (double)n, (double)(total * reps) / 1e6, runs);
    printf("scan:   median %.1f MB/s per core-second (min %.1f, max %.1f), %.1f spans/text\n", rate[runs / 2], rate[0], rate[runs - 1],
           (double)spans / (double)(reps * n));
    printf("filter: median %.1f MB/s (redact, 16-byte pieces)\n", frate[runs / 2]);
    for (size_t i = 0; i < n; i++) free(texts[i]);
    free(texts);
    free(lens);
    slm_pii_free(d);
    return 0;
}
