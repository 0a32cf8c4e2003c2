/* slm audit — verify and query the tamper-evident audit log (issue 13). Exit codes: 0 fine,
 * 1 the chain is broken (verify), 2 a usage or I/O error. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "slm_audit.h"
#include "slm_store.h"

static const char usage_text[] =
    "usage: slm audit verify [--pub FILE] [--data-dir D]\n"
    "       slm audit query [--since T] [--key NAME] [--route local|upstream] [--json] [--data-dir D]\n"
    "\n"
    "verify  checks the whole log in D/audit: every record's hash, its link to the previous record,\n"
    "        the sequence numbers across files, the signatures (D/audit.pub) and HEAD (the newest\n"
    "        durable record). Prints a report; exit 0 intact (torn records from crashes are listed\n"
    "        as warnings), 1 broken (the first bad record is named), 2 usage or I/O error.\n"
    "  --pub FILE    check signatures against this public key (a copy of D/audit.pub kept\n"
    "                elsewhere) instead of trusting D/audit.pub\n"
    "query   prints the records matching every filter given, oldest first:\n"
    "  --since T     records at or after T: unix seconds or an RFC 3339 date/time\n"
    "                (2026-12-05, 2026-12-05T06:13:38Z, 2026-12-05 08:13+02:00; no offset = UTC)\n"
    "  --key NAME    records of this key (principal name)\n"
    "  --route R     local or upstream\n"
    "  --json        one record per line exactly as stored (with its request_id); default: a table\n"
    "\n"
    "--data-dir D  the data directory (default: $SLM_HOME, else $XDG_DATA_HOME/slm, else\n"
    "              ~/.local/share/slm; /var/lib/slm for root)\n"
    "\n"
    "testing: slm audit append-bench --data-dir D [--threads N] [--records M] [--sign]\n"
    "         [--rotate-bytes B] [--quiet] appends M records per thread, printing \"<seq> <request_id>\"\n"
    "         as soon as each is durable, and the rate to stderr.\n";

#define EXIT_BROKEN 1
#define EXIT_USAGE 2

static int fail(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "slm audit: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return EXIT_USAGE;
}

static const char *data_dir_or_default(const char *given, char *buf, size_t cap) {
    if (given) return given;
    return slm_data_dir_default(buf, cap);
}

static int do_verify(int argc, char **argv) {
    const char *dir = NULL, *pub = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--data-dir") == 0 && i + 1 < argc) dir = argv[++i];
        else if (strcmp(argv[i], "--pub") == 0 && i + 1 < argc) pub = argv[++i];
        else return fail("verify: unknown or incomplete option '%s'%s (see slm audit --help)", argv[i], "");
    }
    char buf[4096], err[512];
    if (!(dir = data_dir_or_default(dir, buf, sizeof buf))) return fail("%s%s", "no data directory: give --data-dir", "");
    int rc = slm_audit_verify_with_key(dir, pub, stdout, err, sizeof err);
    fflush(stdout);
    if (rc < 0) return fail("verify: %s%s", err, "");
    return rc == 0 ? 0 : EXIT_BROKEN;
}

/* ---- query ---- */

typedef struct table {
    bool json;
    unsigned long rows;
    bool header;
} table;

/* A JSON field as table text: strings without control characters, cut to `width` with a visible "…"
 * (width 0: the whole text, the last column). */
static void cell(json_t *o, const char *name, int width, bool right) {
    json_t *v = json_object_get(o, name);
    char text[256];
    if (json_is_string(v)) {
        size_t k = 0;
        const unsigned char *p = (const unsigned char *)json_string_value(v);
        for (; *p && k < sizeof text - 8; p++) text[k++] = *p < 0x20 || *p == 0x7f ? '?' : (char)*p;
        if (*p) { /* longer than a cell can ever show: cut at a character boundary, visibly */
            while (k > 0 && (*p & 0xC0) == 0x80) k--, p--;
            memcpy(text + k, "…", 3), k += 3;
        }
        text[k] = 0;
    } else if (json_is_integer(v)) {
        snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        snprintf(text, sizeof text, "%.1f", json_real_value(v));
    } else if (json_is_boolean(v)) {
        snprintf(text, sizeof text, "%s", json_is_true(v) ? "true" : "false");
    } else {
        snprintf(text, sizeof text, "%s", v ? "…" : "-");
    }
    if (width == 0) {
        fputs(text, stdout);
        return;
    }
    /* count code points (UTF-8 lead bytes) to keep columns straight */
    int cps = 0;
    size_t cut = strlen(text);
    for (size_t i = 0; text[i]; i++)
        if (((unsigned char)text[i] & 0xC0) != 0x80) {
            if (cps == width - 1 && width > 1) cut = i;
            cps++;
        }
    if (cps > width) {
        printf("%.*s…", (int)cut, text);
        cps = width;
    } else {
        cut = strlen(text);
        if (right) printf("%*s", width - cps, "");
        printf("%s", text);
        if (right) cps = width;
    }
    if (!right) printf("%*s", width - cps, "");
    putchar(' ');
}

static int print_record(void *user, const char *line) {
    table *t = user;
    t->rows++;
    if (t->json) {
        puts(line);
        return ferror(stdout) ? 1 : 0;
    }
    if (!t->header) {
        printf("%8s %-24s %-12s %-8s %-16s %6s %8s %8s %9s %s\n", "SEQ", "TIME", "KEY", "ROUTE", "MODEL", "STATUS", "IN_TOK",
               "OUT_TOK", "LAT_MS", "REQUEST_ID");
        t->header = true;
    }
    json_t *o = json_loads(line, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return 0;
    }
    cell(o, "seq", 8, true);
    cell(o, "time", 24, false);
    cell(o, "key", 12, false);
    cell(o, "route", 8, false);
    cell(o, "model", 16, false);
    cell(o, "status", 6, true);
    cell(o, "prompt_tokens", 8, true);
    cell(o, "completion_tokens", 8, true);
    cell(o, "latency_ms", 9, true);
    if (json_object_get(o, "request_id")) cell(o, "request_id", 0, false);
    else if (json_object_get(o, "event")) cell(o, "event", 0, false);
    else printf("-");
    putchar('\n');
    json_decref(o);
    return ferror(stdout) ? 1 : 0;
}

static int do_query(int argc, char **argv) {
    const char *dir = NULL;
    slm_audit_filter f = {0};
    table t = {0};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            t.json = true;
            continue;
        }
        if (strcmp(a, "--data-dir") && strcmp(a, "--since") && strcmp(a, "--key") && strcmp(a, "--route"))
            return fail("query: unknown option '%s'%s (see slm audit --help)", a, "");
        if (!v) return fail("query: %s needs a value%s", a, "");
        i++;
        if (strcmp(a, "--data-dir") == 0) {
            dir = v;
        } else if (strcmp(a, "--since") == 0) {
            if (slm_audit_parse_time(v, &f.since) != 0)
                return fail("query: --since '%s' is not unix seconds or an RFC 3339 date/time%s", v, "");
        } else if (strcmp(a, "--key") == 0) {
            f.key = v;
        } else {
            if (strcmp(v, "local") && strcmp(v, "upstream"))
                return fail("query: --route '%s' is not local or upstream%s", v, "");
            f.route = v;
        }
    }
    char buf[4096], err[512];
    if (!(dir = data_dir_or_default(dir, buf, sizeof buf))) return fail("%s%s", "no data directory: give --data-dir", "");
    if (slm_audit_query(dir, &f, print_record, &t, err, sizeof err) != 0) return fail("query: %s%s", err, "");
    if (fflush(stdout) != 0 || ferror(stdout)) return fail("query: cannot write the output: %s%s", strerror(errno), "");
    if (!t.json) fprintf(stderr, "%lu record%s\n", t.rows, t.rows == 1 ? "" : "s");
    return 0;
}

/* ---- append-bench: the crash test's load and the throughput benchmark ---- */

typedef struct bench_worker {
    slm_audit *audit;
    int id;
    long records;
    bool quiet;
    int failed;
} bench_worker;

static void *bench_thread(void *arg) {
    bench_worker *w = arg;
    for (long i = 0; i < w->records; i++) {
        char rec[512], err[512], out[128];
        snprintf(rec, sizeof rec,
                 "{\"request_id\":\"bench-%ld-%d-%ld\",\"key\":\"bench\",\"client\":\"127.0.0.1\",\"model\":\"bench\","
                 "\"route\":\"local\",\"prompt_tokens\":%ld,\"completion_tokens\":%ld,\"latency_ms\":%.1f,"
                 "\"status\":200,\"pii\":{\"EMAIL\":1},\"content\":\"[EMAIL_1] asked for a summary\"}",
                 (long)getpid(), w->id, i, 10 + i % 50, 20 + i % 70, 12.5 + (double)(i % 9));
        uint64_t seq;
        if (slm_audit_append_seq(w->audit, rec, &seq, err, sizeof err) != 0) {
            fprintf(stderr, "slm audit: append-bench: %s\n", err);
            w->failed = 1;
            return NULL;
        }
        if (!w->quiet) {
            /* one write(2) per line, so a kill -9 never leaves a line half printed */
            int n = snprintf(out, sizeof out, "%llu bench-%ld-%d-%ld\n", (unsigned long long)seq, (long)getpid(), w->id, i);
            if (write(1, out, (size_t)n) != n) {
                w->failed = 1;
                return NULL;
            }
        }
    }
    return NULL;
}

static int do_append_bench(int argc, char **argv) {
    const char *dir = NULL;
    long threads = 1, records = 1000, rotate = 0;
    bool quiet = false;
    slm_audit_options o = {0};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quiet") == 0) quiet = true;
        else if (strcmp(a, "--sign") == 0) o.sign = true;
        else if (strcmp(a, "--data-dir") == 0 && v) dir = argv[++i];
        else if (strcmp(a, "--threads") == 0) {
            if (!cli_parse_int("audit", a, v, 1, 256, &threads)) return EXIT_USAGE;
            i++;
        } else if (strcmp(a, "--records") == 0) {
            if (!cli_parse_int("audit", a, v, 0, 100000000, &records)) return EXIT_USAGE;
            i++;
        } else if (strcmp(a, "--rotate-bytes") == 0) {
            if (!cli_parse_int("audit", a, v, 0, 1L << 40, &rotate)) return EXIT_USAGE;
            i++;
        } else return fail("append-bench: unknown or incomplete option '%s'%s", a, "");
    }
    if (!dir) return fail("append-bench: --data-dir is required%s%s", "", "");
    o.rotate_bytes = (size_t)rotate;
    char err[512];
    slm_audit *audit;
    if (slm_audit_open(dir, &o, &audit, err, sizeof err) != 0) return fail("append-bench: %s%s", err, "");
    bench_worker *w = calloc((size_t)threads, sizeof *w);
    pthread_t *th = calloc((size_t)threads, sizeof *th);
    if (!w || !th) {
        slm_audit_close(audit);
        free(w);
        free(th);
        return fail("append-bench: out of memory%s%s", "", "");
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long t = 0; t < threads; t++) {
        w[t] = (bench_worker){.audit = audit, .id = (int)t, .records = records, .quiet = quiet};
        pthread_create(&th[t], NULL, bench_thread, &w[t]);
    }
    int failed = 0;
    for (long t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        failed |= w[t].failed;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    slm_audit_stats s;
    slm_audit_get_stats(audit, &s);
    slm_audit_close(audit);
    free(w);
    free(th);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr,
            "append-bench: %llu records, %ld thread%s%s, %.3f s, %.0f appends/s, %llu group commits (%.1f records "
            "each), %llu fsyncs\n",
            (unsigned long long)s.records, threads, threads == 1 ? "" : "s", s.signing ? ", signed" : "", secs,
            secs > 0 ? (double)s.records / secs : 0.0, (unsigned long long)s.commits,
            s.commits ? (double)s.records / (double)s.commits : 0.0, (unsigned long long)s.fsyncs);
    return failed ? EXIT_USAGE : 0;
}

int cmd_audit(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : 0;
    }
    for (int i = 2; i < argc; i++)
        if (cli_is_help(argv[i])) {
            fputs(usage_text, stdout);
            return 0;
        }
    const char *sub = argv[1];
    if (strcmp(sub, "verify") == 0) return do_verify(argc - 2, argv + 2);
    if (strcmp(sub, "query") == 0) return do_query(argc - 2, argv + 2);
    if (strcmp(sub, "append-bench") == 0) return do_append_bench(argc - 2, argv + 2);
    return fail("unknown subcommand '%s'%s: verify or query (see slm audit --help)", sub, "");
}
