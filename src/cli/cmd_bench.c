/* slm bench: prompt-processing and generation speed measured the way llama-bench does it
 * (pp = one batch of p tokens from an empty cache, tg = n single-token decodes from an empty
 * cache, one warm-up run, mean ± sd of tokens/s over r runs), plus peak RSS and the fraction of
 * the memory-bandwidth limit the generation reaches. Uses only the public API. */
#include <jansson.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <time.h>

#include "cli.h"
#include "slm.h"

#define VERB "bench"

typedef struct bench_opts {
    const char *model_path;
    int n_prompt, n_gen, n_threads, reps;
    bool json;
    double bandwidth_gbs; /* 0 = measure */
} bench_opts;

typedef struct bench_result {
    int n_prompt, n_gen;
    double *samples_ns;
    double avg_ns, stddev_ns, avg_ts, stddev_ts;
} bench_result;

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ---- memory bandwidth: every thread streams its share of a buffer larger than any cache ---- */

typedef struct bw_job {
    const uint64_t *data;
    size_t n_words;
    int ith, nth;
    uint64_t sink;
} bw_job;

static void *bw_read(void *p) {
    bw_job *job = p;
    size_t begin = job->n_words * (size_t)job->ith / (size_t)job->nth & ~(size_t)7;
    size_t end = job->n_words * (size_t)(job->ith + 1) / (size_t)job->nth & ~(size_t)7;
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    for (size_t i = begin; i < end; i += 8) {
        a0 += job->data[i];
        a1 += job->data[i + 1];
        a2 += job->data[i + 2];
        a3 += job->data[i + 3];
        a4 += job->data[i + 4];
        a5 += job->data[i + 5];
        a6 += job->data[i + 6];
        a7 += job->data[i + 7];
    }
    job->sink = a0 ^ a1 ^ a2 ^ a3 ^ a4 ^ a5 ^ a6 ^ a7;
    return NULL;
}

/* Best of a few passes of a multi-threaded read, in GB/s (1e9 bytes); 0 on failure. */
static double measure_bandwidth(int n_threads) {
    const size_t bytes = (size_t)512 << 20;
    uint64_t *data = malloc(bytes);
    if (!data) return 0;
    const size_t n_words = bytes / sizeof *data;
    for (size_t i = 0; i < n_words; i++) data[i] = i * 0x9e3779b97f4a7c15ull;
    bw_job jobs[64];
    pthread_t threads[64];
    if (n_threads > 64) n_threads = 64;
    double best = 0;
    uint64_t sink = 0;
    for (int pass = 0; pass < 4; pass++) {
        double t0 = now_ns();
        int started = 0;
        for (int i = 0; i < n_threads; i++) {
            jobs[i] = (bw_job){data, n_words, i, n_threads, 0};
            if (i > 0 && pthread_create(&threads[i], NULL, bw_read, &jobs[i]) == 0) started = i;
            else if (i > 0) break;
        }
        bw_read(&jobs[0]);
        for (int i = 1; i <= started; i++) pthread_join(threads[i], NULL);
        double dt = now_ns() - t0;
        if (started != n_threads - 1) break;
        for (int i = 0; i < n_threads; i++) sink ^= jobs[i].sink;
        double gbs = (double)bytes / dt;
        if (gbs > best) best = gbs;
    }
    free(data);
    if (sink == 42) fputc(' ', stderr); /* keeps the reads observable */
    return best;
}

/* The probe in a child process, so its buffer never counts in this process's peak RSS and it can
 * run right next to the decode test (the machine's bandwidth drifts within seconds). Falls back to
 * probing here if there is no child. */
static double measure_bandwidth_isolated(int n_threads) {
    int fds[2];
    if (pipe(fds) != 0) return measure_bandwidth(n_threads);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return measure_bandwidth(n_threads);
    }
    if (pid == 0) {
        close(fds[0]);
        double gbs = measure_bandwidth(n_threads);
        ssize_t wr = write(fds[1], &gbs, sizeof gbs);
        _exit(wr == (ssize_t)sizeof gbs ? 0 : 1);
    }
    close(fds[1]);
    double gbs = 0;
    if (read(fds[0], &gbs, sizeof gbs) != (ssize_t)sizeof gbs) gbs = 0;
    close(fds[0]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    return gbs;
}

/* ---- the runs ---- */

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* One timed test from an empty cache: a prompt batch, or n single-token decodes. */
static int run_once(slm_context *ctx, const slm_model *model, int n_prompt, int n_gen, slm_token *tokens,
                    uint64_t *rng, double *elapsed_ns, char *err, size_t err_len) {
    const int n_vocab = slm_model_n_vocab(model);
    slm_token bos = slm_token_bos(model);
    slm_kv_seq_truncate(ctx, 0, 0);
    double t0 = now_ns();
    if (n_prompt > 0) {
        for (int i = 0; i < n_prompt; i++) tokens[i] = (slm_token)(rng_next(rng) % (uint64_t)n_vocab);
        if (bos >= 0) tokens[0] = bos;
        slm_batch batch = {.n_tokens = n_prompt, .tokens = tokens};
        if (slm_decode(ctx, &batch, err, err_len) != 0) return -1;
    }
    slm_token tok = bos >= 0 ? bos : 0;
    for (int i = 0; i < n_gen; i++) {
        slm_batch batch = {.n_tokens = 1, .tokens = &tok};
        if (slm_decode(ctx, &batch, err, err_len) != 0) return -1;
        if (!slm_logits(ctx, 0)) {
            snprintf(err, err_len, "decode returned no logits");
            return -1;
        }
        tok = (slm_token)(rng_next(rng) % (uint64_t)n_vocab);
    }
    *elapsed_ns = now_ns() - t0;
    return 0;
}

static int run_test(slm_context *ctx, const slm_model *model, const bench_opts *o, int n_prompt, int n_gen,
                    slm_token *tokens, bench_result *res, char *err, size_t err_len) {
    uint64_t rng = 0x2545f4914f6cdd1dull;
    double warm;
    memset(res, 0, sizeof *res);
    res->n_prompt = n_prompt;
    res->n_gen = n_gen;
    res->samples_ns = calloc((size_t)o->reps, sizeof(double));
    if (!res->samples_ns) return snprintf(err, err_len, "out of memory"), -1;
    if (run_once(ctx, model, n_prompt, n_gen, tokens, &rng, &warm, err, err_len) != 0) return -1;
    const double n_tokens = (double)(n_prompt + n_gen);
    double sum_ns = 0, sum_ts = 0;
    for (int r = 0; r < o->reps; r++) {
        if (run_once(ctx, model, n_prompt, n_gen, tokens, &rng, &res->samples_ns[r], err, err_len) != 0) return -1;
        sum_ns += res->samples_ns[r];
        sum_ts += n_tokens * 1e9 / res->samples_ns[r];
    }
    res->avg_ns = sum_ns / o->reps;
    res->avg_ts = sum_ts / o->reps;
    double var_ns = 0, var_ts = 0;
    for (int r = 0; r < o->reps; r++) {
        double ts = n_tokens * 1e9 / res->samples_ns[r];
        var_ns += (res->samples_ns[r] - res->avg_ns) * (res->samples_ns[r] - res->avg_ns);
        var_ts += (ts - res->avg_ts) * (ts - res->avg_ts);
    }
    res->stddev_ns = o->reps > 1 ? sqrt(var_ns / (o->reps - 1)) : 0;
    res->stddev_ts = o->reps > 1 ? sqrt(var_ts / (o->reps - 1)) : 0;
    return 0;
}

static long peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return ru.ru_maxrss * 1024L;
}

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static void print_usage(FILE *fp) {
    fprintf(fp, "usage: slm bench MODEL [-p N] [-n N] [-t N] [-r N] [--json] [--bandwidth GB/s]\n"
                "  -p N            prompt tokens processed as one batch (default 512; 0 skips pp)\n"
                "  -n N            tokens generated one at a time (default 128; 0 skips tg)\n"
                "  -t N            threads (default 2)\n"
                "  -r N            repetitions averaged (default 5)\n"
                "  --json          one JSON array, one object per test (llama-bench field names)\n"
                "  --bandwidth X   DRAM bandwidth in GB/s for the %%-of-limit column (default: measured)\n");
}

static int parse_args(int argc, char **argv, bench_opts *o) {
    *o = (bench_opts){.n_prompt = 512, .n_gen = 128, .n_threads = 2, .reps = 5};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long v;
        if (cli_is_help(a)) {
            print_usage(stdout);
            return 1;
        } else if (strcmp(a, "-p") == 0 || strcmp(a, "--n-prompt") == 0) {
            if (!cli_parse_int(VERB, a, i + 1 < argc ? argv[++i] : NULL, 0, 8192, &v)) return -1;
            o->n_prompt = (int)v;
        } else if (strcmp(a, "-n") == 0 || strcmp(a, "--n-gen") == 0) {
            if (!cli_parse_int(VERB, a, i + 1 < argc ? argv[++i] : NULL, 0, 100000, &v)) return -1;
            o->n_gen = (int)v;
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
            if (!cli_parse_int(VERB, a, i + 1 < argc ? argv[++i] : NULL, 1, 256, &v)) return -1;
            o->n_threads = (int)v;
        } else if (strcmp(a, "-r") == 0 || strcmp(a, "--repetitions") == 0) {
            if (!cli_parse_int(VERB, a, i + 1 < argc ? argv[++i] : NULL, 1, 1000, &v)) return -1;
            o->reps = (int)v;
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if (strcmp(a, "--bandwidth") == 0) {
            double bw;
            if (!cli_parse_float(VERB, a, i + 1 < argc ? argv[++i] : NULL, &bw)) return -1;
            if (bw <= 0) return cli_fail(VERB, "--bandwidth must be positive"), -1;
            o->bandwidth_gbs = bw;
        } else if (a[0] == '-' && a[1]) {
            cli_fail(VERB, "unknown option '%s' (see slm bench --help)", a);
            return -1;
        } else if (!o->model_path) {
            o->model_path = a;
        } else {
            cli_fail(VERB, "more than one model given ('%s' and '%s')", o->model_path, a);
            return -1;
        }
    }
    if (!o->model_path) {
        print_usage(stderr);
        cli_fail(VERB, "no model given");
        return -1;
    }
    if (o->n_prompt == 0 && o->n_gen == 0) {
        cli_fail(VERB, "nothing to measure: -p and -n are both 0");
        return -1;
    }
    return 0;
}

static json_t *result_json(const bench_opts *o, const slm_model *model, const bench_result *r, double bw_gbs,
                           const double bw_probe[2], double bw_fraction, long rss) {
    json_t *obj = json_object();
    json_t *samples_ns = json_array(), *samples_ts = json_array();
    const double n_tokens = (double)(r->n_prompt + r->n_gen);
    for (int i = 0; i < o->reps; i++) {
        json_array_append_new(samples_ns, json_integer((json_int_t)r->samples_ns[i]));
        json_array_append_new(samples_ts, json_real(n_tokens * 1e9 / r->samples_ns[i]));
    }
    json_object_set_new(obj, "build_commit", json_string("slm " SLM_VERSION));
    json_object_set_new(obj, "cpu_info", json_string(slm_isa_name()));
    json_object_set_new(obj, "backends", json_string("CPU"));
    json_object_set_new(obj, "model_filename", json_string(o->model_path));
    json_object_set_new(obj, "model_type", json_string(slm_model_desc(model)));
    json_object_set_new(obj, "model_size", json_integer((json_int_t)slm_model_size_bytes(model)));
    json_object_set_new(obj, "n_batch", json_integer(o->n_prompt > 0 ? o->n_prompt : 1));
    json_object_set_new(obj, "n_threads", json_integer(o->n_threads));
    json_object_set_new(obj, "n_prompt", json_integer(r->n_prompt));
    json_object_set_new(obj, "n_gen", json_integer(r->n_gen));
    json_object_set_new(obj, "avg_ns", json_integer((json_int_t)r->avg_ns));
    json_object_set_new(obj, "stddev_ns", json_integer((json_int_t)r->stddev_ns));
    json_object_set_new(obj, "avg_ts", json_real(r->avg_ts));
    json_object_set_new(obj, "stddev_ts", json_real(r->stddev_ts));
    json_object_set_new(obj, "samples_ns", samples_ns);
    json_object_set_new(obj, "samples_ts", samples_ts);
    json_object_set_new(obj, "peak_rss_bytes", json_integer(rss));
    json_object_set_new(obj, "bandwidth_gbs", json_real(bw_gbs));
    if (bw_probe[0] > 0 || bw_probe[1] > 0)
        json_object_set_new(obj, "bandwidth_probes_gbs", json_pack("[f,f]", bw_probe[0], bw_probe[1]));
    if (r->n_gen > 0 && r->n_prompt == 0) json_object_set_new(obj, "bandwidth_fraction", json_real(bw_fraction));
    return obj;
}

int cmd_bench(int argc, char **argv) {
    bench_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) return rc > 0 ? 0 : 1;

    char err[512];
    slm_model *model = NULL;
    if (slm_model_load(o.model_path, NULL, &model, err, sizeof err) != 0) return cli_fail(VERB, "%s", err);
    slm_context_params cp = slm_context_default_params();
    cp.n_threads = o.n_threads;
    cp.n_batch = o.n_prompt > 0 ? o.n_prompt : 1;
    cp.n_ctx = (o.n_prompt > o.n_gen ? o.n_prompt : o.n_gen) + 1;
    slm_context *ctx = NULL;
    if (slm_context_new(model, &cp, &ctx, err, sizeof err) != 0) {
        slm_model_free(model);
        return cli_fail(VERB, "%s", err);
    }
    slm_token *tokens = calloc((size_t)(o.n_prompt > 0 ? o.n_prompt : 1), sizeof *tokens);
    bench_result results[2];
    int n_results = 0;
    int status = 0;
    if (!tokens) {
        status = cli_fail(VERB, "out of memory");
        goto done;
    }
    if (o.n_prompt > 0) {
        if (run_test(ctx, model, &o, o.n_prompt, 0, tokens, &results[n_results++], err, sizeof err) != 0) {
            status = cli_fail(VERB, "pp%d: %s", o.n_prompt, err);
            goto done;
        }
    }
    /* Probed right before and right after the decode test; the limit is the better of the two, so
     * a dip in the machine's bandwidth during one probe cannot flatter the fraction. */
    double bw = o.bandwidth_gbs, bw_probe[2] = {0, 0};
    if (!(bw > 0) && o.n_gen > 0) bw_probe[0] = measure_bandwidth_isolated(o.n_threads);
    if (o.n_gen > 0) {
        if (run_test(ctx, model, &o, 0, o.n_gen, tokens, &results[n_results++], err, sizeof err) != 0) {
            status = cli_fail(VERB, "tg%d: %s", o.n_gen, err);
            goto done;
        }
    }
    long rss = peak_rss_bytes();
    if (!(bw > 0)) {
        bw_probe[1] = measure_bandwidth_isolated(o.n_threads);
        bw = bw_probe[0] > bw_probe[1] ? bw_probe[0] : bw_probe[1];
    }
    /* Decoding reads every weight once per token: the limit is bandwidth / model bytes. */
    double model_gb = (double)slm_model_size_bytes(model) / 1e9;

    if (o.json) {
        json_t *arr = json_array();
        for (int i = 0; i < n_results; i++) {
            double frac = bw > 0 ? results[i].avg_ts * model_gb / bw : 0;
            json_array_append_new(arr, result_json(&o, model, &results[i], bw, bw_probe, frac, rss));
        }
        char *text = json_dumps(arr, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        if (text) {
            puts(text);
            free(text);
        }
        json_decref(arr);
    } else {
        printf("| %-28s | %10s | %-12s | %7s | %8s | %20s | %9s | %8s |\n", "model", "size", "backend", "threads",
               "test", "t/s", "peak RSS", "% of BW");
        printf("| %.28s | %.10s | %.12s | %.7s | %.8s | %.20s | %.9s | %.8s |\n", "----------------------------",
               "----------", "------------", "-------", "--------", "--------------------", "---------",
               "--------");
        for (int i = 0; i < n_results; i++) {
            const bench_result *r = &results[i];
            char test[32], ts[48], size[32], backend[32], rss_s[32], frac_s[32];
            if (r->n_prompt > 0) snprintf(test, sizeof test, "pp%d", r->n_prompt);
            else snprintf(test, sizeof test, "tg%d", r->n_gen);
            snprintf(ts, sizeof ts, "%.2f ± %.2f", r->avg_ts, r->stddev_ts);
            snprintf(size, sizeof size, "%.2f MiB", (double)slm_model_size_bytes(model) / (1024.0 * 1024.0));
            snprintf(backend, sizeof backend, "CPU %s", slm_isa_name());
            snprintf(rss_s, sizeof rss_s, "%.1f MiB", (double)rss / (1024.0 * 1024.0));
            if (r->n_gen > 0 && bw > 0) snprintf(frac_s, sizeof frac_s, "%.1f%%", 100.0 * r->avg_ts * model_gb / bw);
            else snprintf(frac_s, sizeof frac_s, "-");
            printf("| %-28.28s | %10s | %-12s | %7d | %8s | %20s | %9s | %8s |\n", slm_model_desc(model), size, backend,
                   o.n_threads, test, ts, rss_s, frac_s);
        }
        if (o.bandwidth_gbs > 0)
            printf("\nmodel %s; DRAM read bandwidth %.1f GB/s (given)\n", base_name(o.model_path), bw);
        else
            printf("\nmodel %s; DRAM read bandwidth %.1f GB/s (best of probes %.1f before and %.1f after the decode "
                   "test, %d threads)\n", base_name(o.model_path), bw, bw_probe[0], bw_probe[1], o.n_threads);
    }
done:
    for (int i = 0; i < n_results; i++) free(results[i].samples_ns);
    free(tokens);
    slm_context_free(ctx);
    slm_model_free(model);
    return status;
}
