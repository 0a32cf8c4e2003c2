/* slm router — train, evaluate, inspect and time the request router (local model vs frontier API). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "slm_router.h"

#define VERB "router"
#define MAX_FILES 1024

static const char *const usage_text =
    "usage: slm router train [--kind prompt|cascade] --data FILE.csv... -o ROUTER [--seed N]\n"
    "                        [--local-col NAME] [--frontier-col NAME] [--fold I/K]\n"
    "                        [--label needs-frontier|local-wrong] [--features LIST] [--epochs N]\n"
    "                        [--lr X] [--l2 X] [--hash-bits B] [--no-balance]\n"
    "       slm router eval --router ROUTER --data FILE.csv... [--fold I/K] [--json]\n"
    "       slm router info ROUTER [--share X]...\n"
    "       slm router bench --router ROUTER --data FILE.csv... [--json]\n"
    "\n"
    "Data: RouteLLM's CSV form: a 'prompt' column, a True/False column for the local model and one\n"
    "for the frontier model (--local-col/--frontier-col, default the 2nd and 3rd columns), and for a\n"
    "cascade router the local model's answers in '<local column>_response'.\n"
    "Score: P(needs frontier) = P(the local model fails where the frontier model succeeds).\n"
    "--fold I/K: rows are split into K folds by a hash of the prompt; train uses every fold but I,\n"
    "  eval and bench use fold I only (cross-validation on one file).\n"
    "--features: comma list of words, chars, shapes, dense (prompt), answer, answer-words (cascade).\n"
    "  Defaults: prompt = dense,shapes,chars (label local-wrong, --hashed-scale 0.5);\n"
    "  cascade = dense,answer (label needs-frontier).\n"
    "eval prints RouteLLM's metrics for the router and for a random router (exact expectation):\n"
    "  apgr (average performance gap recovered), cpt50/cpt80 (frontier share reaching 50%/80% of the\n"
    "  quality gap), share_at_95 (frontier share reaching 95% of all-frontier accuracy), curve.\n"
    "info prints the router's kind, features and the thresholds for frontier shares.\n"
    "bench times slm_router_score on every prompt: wall and thread-CPU microseconds per decision.\n";

typedef struct data_args {
    const char *files[MAX_FILES];
    int nfiles;
    const char *local_col, *frontier_col;
    int fold, folds;
} data_args;

static bool parse_fold(const char *s, data_args *d) {
    int i, k;
    char tail;
    if (!s || sscanf(s, "%d/%d%c", &i, &k, &tail) != 2 || k < 2 || k > 1000 || i < 0 || i >= k) {
        cli_fail(VERB, "--fold wants I/K with 0 <= I < K, 2 <= K <= 1000 (got '%s')", s ? s : "");
        return false;
    }
    d->fold = i;
    d->folds = k;
    return true;
}

/* --data takes every following argument up to the next option. Returns the index consumed. */
static int take_files(int argc, char **argv, int i, data_args *d) {
    int j = i + 1;
    while (j < argc && argv[j][0] != '-') {
        if (d->nfiles == MAX_FILES) {
            cli_fail(VERB, "more than %d data files", MAX_FILES);
            return -1;
        }
        d->files[d->nfiles++] = argv[j++];
    }
    if (j == i + 1) {
        cli_fail(VERB, "--data needs at least one CSV file");
        return -1;
    }
    return j - 1;
}

/* Handles the options every subcommand shares; 1 = consumed (i advanced), 0 = not ours, -1 = error. */
static int data_option(int argc, char **argv, int *i, data_args *d) {
    const char *a = argv[*i];
    if (strcmp(a, "--data") == 0) {
        int j = take_files(argc, argv, *i, d);
        if (j < 0) return -1;
        *i = j;
        return 1;
    }
    if (strcmp(a, "--local-col") == 0 || strcmp(a, "--frontier-col") == 0 || strcmp(a, "--fold") == 0) {
        if (*i + 1 >= argc) {
            cli_fail(VERB, "%s needs a value", a);
            return -1;
        }
        const char *v = argv[++*i];
        if (strcmp(a, "--local-col") == 0) d->local_col = v;
        else if (strcmp(a, "--frontier-col") == 0) d->frontier_col = v;
        else if (!parse_fold(v, d)) return -1;
        return 1;
    }
    return 0;
}

static int load_data(const data_args *a, bool need_answers, bool keep_fold, slm_router_data *d) {
    *d = (slm_router_data){0};
    if (a->nfiles == 0) return cli_fail(VERB, "no --data files");
    char err[512];
    for (int i = 0; i < a->nfiles; i++)
        if (slm_router_data_load(d, a->files[i], a->local_col, a->frontier_col, need_answers, err, sizeof err)) {
            slm_router_data_free(d);
            return cli_fail(VERB, "%s", err);
        }
    if (a->folds) slm_router_data_split(d, a->fold, a->folds, keep_fold);
    if (d->n == 0) {
        slm_router_data_free(d);
        return cli_fail(VERB, "no rows left to use (check --fold)");
    }
    return 0;
}

static int cmd_train(int argc, char **argv) {
    data_args da = {0};
    slm_router_train_opts o;
    int kind = SLM_ROUTER_PROMPT;
    const char *out = NULL, *features = NULL, *label = NULL;
    long seed = -1, epochs = -1, hash_bits = -1;
    double lr = -1, l2 = -1, hashed_scale = -1;
    bool no_balance = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r = data_option(argc, argv, &i, &da);
        if (r < 0) return 1;
        if (r > 0) continue;
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--kind") == 0) {
            if (v && strcmp(v, "prompt") == 0) kind = SLM_ROUTER_PROMPT;
            else if (v && strcmp(v, "cascade") == 0) kind = SLM_ROUTER_CASCADE;
            else return cli_fail(VERB, "--kind is prompt or cascade");
            i++;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (!v) return cli_fail(VERB, "%s needs a file name", a);
            out = v, i++;
        } else if (strcmp(a, "--seed") == 0) {
            if (!cli_parse_int(VERB, a, v, 0, 2147483647L, &seed)) return 1;
            i++;
        } else if (strcmp(a, "--epochs") == 0) {
            if (!cli_parse_int(VERB, a, v, 1, 1000, &epochs)) return 1;
            i++;
        } else if (strcmp(a, "--hash-bits") == 0) {
            if (!cli_parse_int(VERB, a, v, 10, 22, &hash_bits)) return 1;
            i++;
        } else if (strcmp(a, "--lr") == 0 || strcmp(a, "--l2") == 0 || strcmp(a, "--hashed-scale") == 0) {
            double x;
            if (!cli_parse_float(VERB, a, v, &x)) return 1;
            if (x < 0 || (x == 0 && strcmp(a, "--l2") != 0)) return cli_fail(VERB, "%s must be positive", a);
            *(strcmp(a, "--lr") == 0 ? &lr : strcmp(a, "--l2") == 0 ? &l2 : &hashed_scale) = x;
            i++;
        } else if (strcmp(a, "--features") == 0) {
            if (!v) return cli_fail(VERB, "--features needs a list");
            features = v, i++;
        } else if (strcmp(a, "--label") == 0) {
            if (!v) return cli_fail(VERB, "--label needs a value");
            label = v, i++;
        } else if (strcmp(a, "--no-balance") == 0) {
            no_balance = true;
        } else {
            return cli_fail(VERB, "train: unknown option '%s' (see slm router --help)", a);
        }
    }
    if (!out) return cli_fail(VERB, "train needs -o ROUTER");
    slm_router_train_defaults(&o, kind);
    if (features && !slm_router_parse_features(features, &o.features))
        return cli_fail(VERB, "--features: unknown name in '%s' (words, chars, shapes, dense, answer, answer-words)", features);
    if (label) {
        if (strcmp(label, "needs-frontier") == 0) o.label = SLM_RL_NEEDS_FRONTIER;
        else if (strcmp(label, "local-wrong") == 0) o.label = SLM_RL_LOCAL_WRONG;
        else return cli_fail(VERB, "--label is needs-frontier or local-wrong");
    }
    if (seed >= 0) o.seed = (unsigned long)seed;
    if (epochs > 0) o.epochs = (int)epochs;
    if (hash_bits > 0) o.hash_bits = (int)hash_bits;
    if (lr > 0) o.lr = lr;
    if (l2 >= 0) o.l2 = l2;
    if (hashed_scale > 0) o.hashed_scale = hashed_scale;
    if (no_balance) o.balance_sources = false;
    slm_router_data d;
    if (load_data(&da, kind == SLM_ROUTER_CASCADE, false, &d)) return 1;
    char err[512];
    slm_router *r = slm_router_train(&d, &o, err, sizeof err);
    slm_router_data_free(&d);
    if (!r) return cli_fail(VERB, "%s", err);
    int rc = slm_router_save(r, out, err, sizeof err);
    slm_router_free(r);
    if (rc) return cli_fail(VERB, "%s", err);
    return 0;
}

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *metrics_json(const slm_router_metrics *m, bool with_n) {
    json_t *o = json_object();
    if (with_n) json_object_set_new(o, "n", json_integer((json_int_t)m->n));
    json_object_set_new(o, "local_acc", num(m->local_acc));
    json_object_set_new(o, "frontier_acc", num(m->frontier_acc));
    json_object_set_new(o, "apgr", num(m->apgr));
    json_object_set_new(o, "cpt50", num(m->cpt50));
    json_object_set_new(o, "cpt80", num(m->cpt80));
    json_object_set_new(o, "share_at_95", num(m->share_at_95));
    json_t *curve = json_array();
    for (int i = 0; i < SLM_ROUTER_CURVE_POINTS; i++) {
        json_t *pt = json_array();
        json_array_append_new(pt, json_real(m->curve[i][0]));
        json_array_append_new(pt, json_real(m->curve[i][1]));
        json_array_append_new(curve, pt);
    }
    json_object_set_new(o, "curve", curve);
    return o;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static slm_router *load_router(const char *path) {
    if (!path) {
        cli_fail(VERB, "--router ROUTER is required");
        return NULL;
    }
    char err[512];
    slm_router *r = slm_router_load(path, err, sizeof err);
    if (!r) cli_fail(VERB, "%s", err);
    return r;
}

static int cmd_eval_or_bench(int argc, char **argv, bool bench) {
    data_args da = {0};
    const char *router_path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        int r = data_option(argc, argv, &i, &da);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (strcmp(argv[i], "--router") == 0 && i + 1 < argc) router_path = argv[++i];
        else if (strcmp(argv[i], "--json") == 0) json = true;
        else return cli_fail(VERB, "%s: unknown option '%s' (see slm router --help)", bench ? "bench" : "eval", argv[i]);
    }
    slm_router *router = load_router(router_path);
    if (!router) return 1;
    bool cascade = slm_router_kind(router) == SLM_ROUTER_CASCADE;
    slm_router_data d;
    if (load_data(&da, cascade, true, &d)) {
        slm_router_free(router);
        return 1;
    }
    double *scores = malloc(d.n * sizeof *scores), *cpu = malloc(d.n * sizeof *cpu);
    bool *lok = malloc(d.n * sizeof *lok), *fok = malloc(d.n * sizeof *fok);
    if (!scores || !cpu || !lok || !fok) {
        free(scores), free(cpu), free(lok), free(fok);
        slm_router_data_free(&d);
        slm_router_free(router);
        return cli_fail(VERB, "out of memory");
    }
    for (size_t i = 0; i < d.n; i++) {
        struct timespec t0, t1, c0, c1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
        double s = slm_router_score(router, d.ex[i].prompt, d.ex[i].local_answer);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        /* bench keeps the wall time in scores[] (decisions are timed one by one) and the thread's
         * CPU time in cpu[]: on a busy machine the wall tail is the scheduler, the CPU time is ours */
        scores[i] = bench ? (double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e3 : s;
        cpu[i] = (double)(c1.tv_sec - c0.tv_sec) * 1e6 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e3;
        lok[i] = d.ex[i].local_ok;
        fok[i] = d.ex[i].frontier_ok;
    }
    int rc = 0;
    if (bench) {
        size_t n = d.n;
        qsort(scores, n, sizeof *scores, cmp_double);
        qsort(cpu, n, sizeof *cpu, cmp_double);
        double median = n % 2 ? scores[n / 2] : (scores[n / 2 - 1] + scores[n / 2]) / 2;
        double p99 = scores[(size_t)((double)(n - 1) * 0.99)];
        double cpu_median = n % 2 ? cpu[n / 2] : (cpu[n / 2 - 1] + cpu[n / 2]) / 2;
        double cpu_p99 = cpu[(size_t)((double)(n - 1) * 0.99)];
        if (json)
            printf("{\"n\": %zu, \"median_us\": %.3f, \"p99_us\": %.3f, \"max_us\": %.3f, \"cpu_median_us\": %.3f, "
                   "\"cpu_p99_us\": %.3f, \"cpu_max_us\": %.3f}\n", n, median, p99, scores[n - 1], cpu_median, cpu_p99, cpu[n - 1]);
        else
            printf("%zu decisions: wall median %.1f us, p99 %.1f us, max %.1f us; CPU median %.1f us, p99 %.1f us, max %.1f us\n",
                   n, median, p99, scores[n - 1], cpu_median, cpu_p99, cpu[n - 1]);
    } else {
        slm_router_metrics m, rnd;
        char err[256];
        if (slm_router_evaluate(scores, lok, fok, d.n, &m, &rnd, err, sizeof err)) {
            rc = cli_fail(VERB, "%s", err);
        } else if (json) {
            json_t *o = metrics_json(&m, true);
            json_object_set_new(o, "random", metrics_json(&rnd, false));
            char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
            json_decref(o);
            if (!text) rc = cli_fail(VERB, "out of memory");
            else puts(text), free(text);
        } else {
            printf("n %zu  local acc %.4f  frontier acc %.4f\n", m.n, m.local_acc, m.frontier_acc);
            printf("%-8s %8s %8s %8s %12s\n", "", "apgr", "cpt50", "cpt80", "share_at_95");
            printf("%-8s %8.4f %8.4f %8.4f %12.4f\n", "router", m.apgr, m.cpt50, m.cpt80, m.share_at_95);
            printf("%-8s %8.4f %8.4f %8.4f %12.4f\n", "random", rnd.apgr, rnd.cpt50, rnd.cpt80, rnd.share_at_95);
        }
    }
    free(scores), free(cpu), free(lok), free(fok);
    slm_router_data_free(&d);
    slm_router_free(router);
    return rc;
}

static int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    double shares[64];
    int nshares = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--share") == 0) {
            double x;
            if (!cli_parse_float(VERB, "--share", i + 1 < argc ? argv[i + 1] : NULL, &x)) return 1;
            if (x < 0 || x > 1) return cli_fail(VERB, "--share is in [0, 1]");
            if (nshares == 64) return cli_fail(VERB, "at most 64 --share values");
            shares[nshares++] = x;
            i++;
        } else if (argv[i][0] != '-' && !path) {
            path = argv[i];
        } else {
            return cli_fail(VERB, "info: unexpected argument '%s'", argv[i]);
        }
    }
    slm_router *r = load_router(path);
    if (!r) return 1;
    if (nshares == 0) {
        static const double defaults[] = {0.1, 0.2, 0.3, 0.5, 0.8};
        for (int i = 0; i < 5; i++) shares[nshares++] = defaults[i];
    }
    printf("kind %s\n", slm_router_kind(r) == SLM_ROUTER_CASCADE ? "cascade" : "prompt");
    for (int i = 0; i < nshares; i++)
        printf("frontier share %.3f: threshold %.6f\n", shares[i], slm_router_threshold_for_share(r, shares[i]));
    slm_router_free(r);
    return 0;
}

int cmd_router(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    for (int i = 2; i < argc; i++)
        if (cli_is_help(argv[i])) {
            fputs(usage_text, stdout);
            return 0;
        }
    const char *sub = argv[1];
    if (strcmp(sub, "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(sub, "eval") == 0) return cmd_eval_or_bench(argc - 1, argv + 1, false);
    if (strcmp(sub, "bench") == 0) return cmd_eval_or_bench(argc - 1, argv + 1, true);
    if (strcmp(sub, "info") == 0) return cmd_info(argc - 1, argv + 1);
    return cli_fail(VERB, "unknown subcommand '%s' (train, eval, info, bench)", sub);
}
