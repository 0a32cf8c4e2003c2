/* slm ledger report — what the requests cost, what they would have cost had every one gone to the
 * frontier API, and the share served locally (issue 14). Reads the ledger of a data directory's state
 * store; the JSON form is the same object as the admin endpoint GET /v1/ledger/summary. Exit codes:
 * 0 fine, 1 the ledger cannot be read, 2 a usage error. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "cli.h"
#include "slm_audit.h"
#include "slm_store.h"

#define EXIT_UNREADABLE 1
#define EXIT_USAGE 2

static const char usage_text[] =
    "usage: slm ledger report [--since T] [--by key|route|model] [--json] [--data-dir D]\n"
    "\n"
    "Totals of the ledger (one row per request a backend answered): requests, prompt and completion\n"
    "tokens, the cost at the configured prices, the cost had every request gone to the frontier API\n"
    "(the first upstream's price), the savings, and the share of requests served locally.\n"
    "\n"
    "  --since T    only requests at or after T (default: all). T is one of\n"
    "                 unix seconds            1764915218\n"
    "                 an RFC 3339 date/time   2026-12-05, 2026-12-05T06:13:38Z, 2026-12-05 08:13+02:00\n"
    "                                         (a date is midnight UTC; no offset = UTC)\n"
    "                 a span back from now    90s, 30m, 24h, 7d, 2w\n"
    "                 all                     the whole ledger\n"
    "  --by G       also the same totals per key, route (local/upstream) or model\n"
    "  --json       one JSON object: requests, prompt_tokens, completion_tokens, cost, frontier_cost,\n"
    "               savings, local_share (0..1), and with --by: by, groups {name: {same fields}} —\n"
    "               the shape of GET /v1/ledger/summary\n"
    "  --data-dir D the data directory (default: $SLM_HOME, else $XDG_DATA_HOME/slm, else\n"
    "               ~/.local/share/slm; /var/lib/slm for root)\n"
    "\n"
    "Costs are USD. Exit status: 0 fine, 1 the ledger cannot be read, 2 a usage error.\n";

static int usage_error(const char *fmt, const char *arg) {
    fputs("slm ledger: ", stderr);
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return EXIT_USAGE;
}

/* A span back from now: a positive whole number and one unit letter (s, m, h, d, w). */
static bool parse_span(const char *s, double now, double *out) {
    size_t n = strlen(s);
    if (n < 2 || strspn(s, "0123456789") != n - 1) return false;
    double unit;
    switch (s[n - 1]) {
    case 's': unit = 1; break;
    case 'm': unit = 60; break;
    case 'h': unit = 3600; break;
    case 'd': unit = 86400; break;
    case 'w': unit = 7 * 86400; break;
    default: return false;
    }
    errno = 0;
    unsigned long long count = strtoull(s, NULL, 10);
    if (errno || count == 0) return false;
    double since = now - (double)count * unit;
    /* a span reaching before 1970 means "everything": say so rather than compute a negative time */
    *out = since < 0 ? 0 : since;
    return true;
}

/* --since: unix seconds, RFC 3339 (as `slm audit query` reads it), a span back from now, or "all". */
static bool parse_since(const char *s, double *out) {
    if (!strcmp(s, "all")) {
        *out = 0;
        return true;
    }
    if (parse_span(s, (double)time(NULL), out)) return true;
    double t;
    if (slm_audit_parse_time(s, &t) != 0 || !isfinite(t) || t < 0) return false;
    *out = t;
    return true;
}

/* The same object as the server's totals_json (src/server/api_admin.c), so both agree field by field. */
static json_t *totals_json(const slm_ledger_totals *t) {
    double saved = t->frontier_cost - t->cost;
    return json_pack("{s:I, s:I, s:I, s:f, s:f, s:f, s:f}", "requests", (json_int_t)t->requests, "prompt_tokens",
                     (json_int_t)t->prompt_tokens, "completion_tokens", (json_int_t)t->completion_tokens, "cost", t->cost,
                     "frontier_cost", t->frontier_cost, "savings", saved, "local_share",
                     t->requests ? (double)t->local_requests / (double)t->requests : 0.0);
}

/* The length of the valid UTF-8 sequence at s (shortest form, no surrogates, at most U+10FFFF) and
 * its code point; 0 when the bytes there are not UTF-8. */
static size_t utf8_seq(const unsigned char *s, unsigned *cp) {
    size_t n = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3 : (s[0] & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 0) return 0;
    unsigned v = n == 1 ? s[0] : s[0] & (0x7fu >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3fu);
    }
    static const unsigned shortest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < shortest[n] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return n;
}

/* A group name as table text: key and model names are user data, so control characters (a terminal
 * escape, C1 controls such as CSI) and bytes that are not UTF-8 are shown as \xNN / \uNNNN instead
 * of reaching the terminal. */
static void printable(const char *name, char *out, size_t cap) {
    const unsigned char *s = (const unsigned char *)(*name ? name : "(none)");
    size_t o = 0;
    while (*s && o + 8 < cap) {
        unsigned cp = 0;
        size_t n = utf8_seq(s, &cp);
        if (n == 0 || cp < 0x20 || cp == 0x7f) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", *s);
            n = 1;
        } else if (cp >= 0x80 && cp <= 0x9f) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", cp);
        } else {
            memcpy(out + o, s, n);
            o += n;
        }
        s += n;
    }
    out[o] = '\0';
}

/* A group name as a JSON object key: JSON text is UTF-8, so bytes that are not are replaced by U+FFFD
 * (jansson would refuse the key and the group would vanish from the report). */
static char *json_name(const char *name) {
    size_t len = strlen(name);
    char *out = malloc(3 * len + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (const unsigned char *s = (const unsigned char *)name; *s;) {
        unsigned cp;
        size_t n = utf8_seq(s, &cp);
        if (n == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            s++;
        } else {
            memcpy(out + o, s, n);
            o += n;
            s += n;
        }
    }
    out[o] = '\0';
    return out;
}

static void print_money(char *out, size_t cap, double usd) {
    /* enough decimals for the per-token prices of small models (a millionth of a dollar) */
    snprintf(out, cap, "$%.6f", usd);
}

static void print_summary(const slm_ledger_totals *t, const char *dir, const char *since_text, double since) {
    char when[64] = "the beginning";
    if (since > 0) {
        time_t secs = (time_t)since;
        struct tm tm;
        if (gmtime_r(&secs, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    }
    printf("ledger of %s since %s%s%s%s\n", dir, when, since_text ? " (" : "", since_text ? since_text : "",
           since_text ? ")" : "");
    long long local = t->local_requests, upstream = t->requests - t->local_requests;
    printf("  requests           %lld (local %lld, upstream %lld)\n", t->requests, local, upstream);
    printf("  prompt tokens      %lld\n", t->prompt_tokens);
    printf("  completion tokens  %lld\n", t->completion_tokens);
    char cost[48], frontier[48], saved[48];
    print_money(cost, sizeof cost, t->cost);
    print_money(frontier, sizeof frontier, t->frontier_cost);
    print_money(saved, sizeof saved, t->frontier_cost - t->cost);
    printf("  cost               %s\n", cost);
    printf("  all-frontier cost  %s\n", frontier);
    if (t->frontier_cost > 0)
        printf("  savings            %s (%.1f%%)\n", saved, 100.0 * (t->frontier_cost - t->cost) / t->frontier_cost);
    else
        printf("  savings            %s (no frontier price configured)\n", saved);
    if (t->requests)
        printf("  served locally     %.1f%%\n", 100.0 * (double)local / (double)t->requests);
    else
        printf("  served locally     - (no requests)\n");
}

static void print_groups(const char *by, const slm_ledger_totals *g, int n) {
    char name[4 * sizeof g->group + 8]; /* every byte escaped as \xNN still fits: no name is cut */
    int width = (int)strlen(by);
    for (int i = 0; i < n; i++) {
        printable(g[i].group, name, sizeof name);
        int w = (int)strlen(name);
        if (w > width) width = w;
    }
    printf("\n%-*s %9s %12s %12s %14s %14s %14s %7s %7s\n", width, by, "REQUESTS", "PROMPT_TOK", "COMPL_TOK", "COST",
           "FRONTIER", "SAVINGS", "SAVED%", "LOCAL%");
    for (int i = 0; i < n; i++) {
        const slm_ledger_totals *t = &g[i];
        char cost[48], frontier[48], saved[48], saved_pct[16] = "-", local_pct[16] = "-";
        printable(t->group, name, sizeof name);
        print_money(cost, sizeof cost, t->cost);
        print_money(frontier, sizeof frontier, t->frontier_cost);
        print_money(saved, sizeof saved, t->frontier_cost - t->cost);
        if (t->frontier_cost > 0)
            snprintf(saved_pct, sizeof saved_pct, "%.1f", 100.0 * (t->frontier_cost - t->cost) / t->frontier_cost);
        if (t->requests) snprintf(local_pct, sizeof local_pct, "%.1f", 100.0 * (double)t->local_requests / (double)t->requests);
        printf("%-*s %9lld %12lld %12lld %14s %14s %14s %7s %7s\n", width, name, t->requests, t->prompt_tokens,
               t->completion_tokens, cost, frontier, saved, saved_pct, local_pct);
    }
}

static int report(int argc, char **argv) {
    const char *dir = NULL, *by = NULL, *since_text = NULL;
    double since = 0;
    bool json = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (cli_is_help(a)) {
            fputs(usage_text, stdout);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--data-dir") || !strcmp(a, "--since") || !strcmp(a, "--by")) {
            if (!v) return usage_error("report: %s needs a value", a);
            i++;
            if (!strcmp(a, "--data-dir")) {
                if (!*v) return usage_error("report: --data-dir is empty%s", "");
                dir = v;
            } else if (!strcmp(a, "--since")) {
                if (!parse_since(v, &since))
                    return usage_error("report: --since '%.200s' is not unix seconds, an RFC 3339 date/time, a span "
                                       "like 24h or 7d, or 'all'",
                                       v);
                since_text = v;
            } else {
                if (strcmp(v, "key") && strcmp(v, "route") && strcmp(v, "model"))
                    return usage_error("report: --by '%.200s' is not key, route or model", v);
                by = v;
            }
        } else {
            return usage_error("report: unknown option '%.200s' (see slm ledger --help)", a);
        }
    }
    char def[PATH_MAX];
    if (!dir && !(dir = slm_data_dir_default(def, sizeof def)))
        return usage_error("report: cannot work out the data directory%s: give --data-dir", "");
    /* opening the store would create the directory and an empty database: a report must not */
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "slm ledger: no data directory at %s (%s); give --data-dir where slm serve keeps its state\n",
                dir, stat(dir, &st) != 0 ? strerror(errno) : "not a directory");
        return EXIT_UNREADABLE;
    }
    char db[PATH_MAX + 16];
    snprintf(db, sizeof db, "%s/state.db", dir);
    if (stat(db, &st) != 0) {
        fprintf(stderr, "slm ledger: %s holds no state store (state.db): no server has recorded a ledger there\n", dir);
        return EXIT_UNREADABLE;
    }
    slm_store *store;
    char err[512];
    if (slm_store_open(dir, &store, err, sizeof err)) {
        fprintf(stderr, "slm ledger: %s\n", err);
        return EXIT_UNREADABLE;
    }
    slm_ledger_totals *all = NULL, *groups = NULL;
    int n_groups = 0, rc = EXIT_UNREADABLE;
    int n_all = slm_store_ledger_totals(store, since, NULL, &all, err, sizeof err);
    if (n_all >= 0 && by) n_groups = slm_store_ledger_totals(store, since, by, &groups, err, sizeof err);
    if (n_all < 0 || n_groups < 0) {
        fprintf(stderr, "slm ledger: %s\n", err);
        goto out;
    }
    slm_ledger_totals zero;
    memset(&zero, 0, sizeof zero);
    const slm_ledger_totals *total = n_all ? &all[0] : &zero;
    if (json) {
        json_t *o = totals_json(total);
        if (o && by) {
            json_t *g = json_object();
            for (int i = 0; g && i < n_groups; i++) {
                char *name = json_name(groups[i].group);
                if (!name || json_object_set_new(g, name, totals_json(&groups[i])) != 0) {
                    free(name);
                    json_decref(g);
                    g = NULL;
                    break;
                }
                free(name);
            }
            if (!g) {
                json_decref(o);
                fprintf(stderr, "slm ledger: out of memory\n");
                goto out;
            }
            json_object_set_new(o, "by", json_string(by));
            json_object_set_new(o, "groups", g);
        }
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!text) {
            fprintf(stderr, "slm ledger: out of memory\n");
            goto out;
        }
        puts(text);
        free(text);
    } else {
        print_summary(total, slm_store_dir(store), since_text, since);
        if (by) print_groups(by, groups, n_groups);
    }
    rc = fflush(stdout) == 0 ? 0 : EXIT_UNREADABLE;
    if (rc) fprintf(stderr, "slm ledger: cannot write the report: %s\n", strerror(errno));
out:
    free(all);
    free(groups);
    slm_store_close(store);
    return rc;
}

int cmd_ledger(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    if (cli_is_help(argv[1])) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "report")) return report(argc - 2, argv + 2);
    return usage_error("unknown sub-command '%.200s' (slm ledger report; see slm ledger --help)", argv[1]);
}
