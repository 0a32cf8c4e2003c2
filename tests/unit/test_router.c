/* The router: the RFC 4180 CSV reader's edge cases and refusals, RouteLLM's metrics on tiny
 * hand-computed curves, the annotation arithmetic, and a train -> save -> load -> score round trip
 * with hostile router files. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "router/csv.h"
#include "router/router_impl.h"
#include "slm_buf.h"
#include "slm_router.h"
#include "test.h"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)

static int parse(const char *text, size_t len, rt_csv *t, char *err) { return rt_csv_parse(text, len, t, err, 256); }

static void test_csv_ok(void) {
    rt_csv t;
    char err[256];
    const char text[] = "prompt,a,b\r\n\"x, \"\"quoted\"\"\nline two\",True,False\r\nplain,,\n";
    CHECKF(parse(text, sizeof text - 1, &t, err) == 0, "%s", err);
    CHECK(t.rows == 3 && t.cols == 3);
    CHECK(strcmp(rt_csv_get(&t, 0, 0), "prompt") == 0);
    CHECK(strcmp(rt_csv_get(&t, 1, 0), "x, \"quoted\"\nline two") == 0);
    CHECK(strcmp(rt_csv_get(&t, 1, 2), "False") == 0);
    CHECK(strcmp(rt_csv_get(&t, 2, 1), "") == 0 && strcmp(rt_csv_get(&t, 2, 2), "") == 0);
    CHECK(t.line[1] == 2 && t.line[2] == 4); /* the quoted line break counts */
    rt_csv_free(&t);

    /* BOM skipped, no final line break, trailing comma = empty last field, CRLF inside quotes kept */
    const char bom[] = "\xEF\xBB\xBF" "h1,h2\n\"a\r\nb\",";
    CHECKF(parse(bom, sizeof bom - 1, &t, err) == 0, "%s", err);
    CHECK(t.rows == 2 && strcmp(rt_csv_get(&t, 0, 0), "h1") == 0);
    CHECK(strcmp(rt_csv_get(&t, 1, 0), "a\r\nb") == 0 && strcmp(rt_csv_get(&t, 1, 1), "") == 0);
    rt_csv_free(&t);

    /* an empty quoted field and a quoted field that is only a doubled quote */
    const char q[] = "a,b\n\"\",\"\"\"\"\n";
    CHECKF(parse(q, sizeof q - 1, &t, err) == 0, "%s", err);
    CHECK(strcmp(rt_csv_get(&t, 1, 0), "") == 0 && strcmp(rt_csv_get(&t, 1, 1), "\"") == 0);
    rt_csv_free(&t);
}

static void expect_csv_error(const char *text, size_t len, const char *needle) {
    rt_csv t;
    char err[256] = "";
    int rc = parse(text, len, &t, err);
    CHECKF(rc == -1 && strstr(err, needle) && !strchr(err, '\n'), "want error '%s', got rc %d '%s'", needle, rc, err);
    CHECK(t.rows == 0 && t.cell == NULL);
}

static void test_csv_errors(void) {
    expect_csv_error("", 0, "empty");
    expect_csv_error("\xEF\xBB\xBF", 3, "empty");
    expect_csv_error("a,b\n\"open,1\n", 12, "line 2: quoted field never closed");
    expect_csv_error("a,b\nx\"y,1\n", 10, "line 2: quote inside an unquoted field");
    expect_csv_error("a,b\n\"x\"y,1\n", 11, "line 2: unexpected character after a closing quote");
    expect_csv_error("a,b\nx\ry,1\n", 10, "bare CR");
    expect_csv_error("a,b\n\"x\"\r,1\n", 11, "after a closing quote");
    expect_csv_error("a,b\nx\0y,1\n", 10, "NUL byte");
    expect_csv_error("a,b\nx,1,2\n", 10, "line 2: 3 fields, the header has 2");
    expect_csv_error("a,b\n\n", 5, "line 2: 1 field, the header has 2");
    expect_csv_error("a,b\n\"multi\nline\",1\nonly\n", 24, "line 4: 1 field");
}

static void test_metrics(void) {
    /* 4 prompts: needs-frontier only at index 1 (local wrong, frontier right) */
    const bool local_ok[4] = {true, false, false, true}, frontier_ok[4] = {true, true, false, true};
    const double scores[4] = {0.1, 0.9, 0.5, 0.2};
    slm_router_metrics m, r;
    char err[128];
    CHECK(slm_router_evaluate(scores, local_ok, frontier_ok, 4, &m, &r, err, sizeof err) == 0);
    CHECK(m.n == 4 && NEAR(m.local_acc, 0.5) && NEAR(m.frontier_acc, 0.75));
    /* curve: (0,.5) (.25,.75) then flat; area .15625 + .5625 = .71875 -> APGR (.71875-.5)/.25 */
    CHECKF(NEAR(m.apgr, 0.875), "apgr %f", m.apgr);
    CHECKF(NEAR(m.cpt50, 0.125) && NEAR(m.cpt80, 0.2), "cpt50 %f cpt80 %f", m.cpt50, m.cpt80);
    CHECKF(NEAR(m.share_at_95, 0.2125), "share_at_95 %f", m.share_at_95); /* 0.95*.75 = .7125 */
    CHECK(NEAR(m.curve[0][1], 0.5) && NEAR(m.curve[1][0], 0.05) && NEAR(m.curve[1][1], 0.55) && NEAR(m.curve[20][1], 0.75));
    /* random: the straight line, exactly */
    CHECK(NEAR(r.apgr, 0.5) && NEAR(r.cpt50, 0.5) && NEAR(r.cpt80, 0.8) && NEAR(r.share_at_95, 0.85));
    CHECK(NEAR(r.curve[10][1], 0.625));

    /* a reversed router: the gain comes last */
    const double reversed[4] = {0.9, 0.1, 0.5, 0.8};
    CHECK(slm_router_evaluate(reversed, local_ok, frontier_ok, 4, &m, NULL, err, sizeof err) == 0);
    CHECKF(NEAR(m.apgr, 0.125) && NEAR(m.cpt50, 0.875), "reversed apgr %f cpt50 %f", m.apgr, m.cpt50);

    /* all scores tied: random order, whose expectation is the random router's line */
    const double tied[4] = {0.3, 0.3, 0.3, 0.3};
    CHECK(slm_router_evaluate(tied, local_ok, frontier_ok, 4, &m, NULL, err, sizeof err) == 0);
    CHECK(NEAR(m.apgr, 0.5) && NEAR(m.cpt50, 0.5) && NEAR(m.cpt80, 0.8));

    /* no gap to recover: APGR/CPT undefined, share_at_95 0 */
    const bool same[2] = {true, false};
    const double two[2] = {0.2, 0.7};
    CHECK(slm_router_evaluate(two, same, same, 2, &m, NULL, err, sizeof err) == 0);
    CHECK(isnan(m.apgr) && isnan(m.cpt50) && m.share_at_95 == 0);
    CHECK(slm_router_evaluate(two, same, same, 0, &m, NULL, err, sizeof err) == -1 && strstr(err, "no prompts"));
}

static void test_arith(void) {
    double v = 0;
    CHECK(rt_eval_arith("3*60", 4, &v) && v == 180);
    CHECK(rt_eval_arith("80000+50000", 11, &v) && v == 130000);
    CHECK(rt_eval_arith("5*10*1.2", 8, &v) && NEAR(v, 60));
    CHECK(rt_eval_arith("(1+2)*3 - -1", 12, &v) && v == 10);
    CHECK(rt_eval_arith("$1,200/4", 8, &v) && v == 300);
    CHECK(rt_eval_arith("50%*8", 5, &v) && v == 4);
    CHECK(!rt_eval_arith("1/0", 3, &v));
    CHECK(!rt_eval_arith("2+", 2, &v));
    CHECK(!rt_eval_arith("(2", 2, &v));
    CHECK(!rt_eval_arith("a+1", 3, &v));
    char deep[300];
    memset(deep, '(', sizeof deep);
    CHECK(!rt_eval_arith(deep, sizeof deep, &v)); /* depth-limited, no stack overflow */
}

/* Synthetic data: prompts mentioning "integral" are the ones the local model fails. */
static void make_data(slm_router_data *d, bool answers) {
    *d = (slm_router_data){0};
    const char *words[] = {"river", "history", "poem", "city", "music", "garden"};
    for (int i = 0; i < 200; i++) {
        bool hard = i % 3 == 0;
        char p[160], a[80];
        snprintf(p, sizeof p, "Question %d about the %s: %s?", i, words[i % 6], hard ? "compute the integral" : "name it");
        snprintf(a, sizeof a, hard ? "It is hard, however roughly" : "The answer is 4.\n#### %d", i);
        slm_grow((void **)&d->ex, &d->cap, d->n + 1, sizeof *d->ex, 16);
        d->ex[d->n++] = (slm_router_example){strdup(p), answers ? strdup(a) : NULL, !hard, true, 0};
    }
    d->sources = 1;
}

typedef struct thread_arg {
    const slm_router *r;
    double sum;
} thread_arg;

static void *score_many(void *p) {
    thread_arg *a = p;
    for (int i = 0; i < 200; i++) a->sum += slm_router_score(a->r, i % 2 ? "compute the integral now" : "name the river", NULL);
    return NULL;
}

static void test_train_roundtrip(void) {
    slm_router_data d;
    make_data(&d, false);
    slm_router_train_opts o;
    slm_router_train_defaults(&o, SLM_ROUTER_PROMPT);
    o.hash_bits = 12;
    char err[256] = "";
    slm_router *r = slm_router_train(&d, &o, err, sizeof err);
    CHECKF(r != NULL, "%s", err);
    if (!r) return;
    double hard = slm_router_score(r, "Question 999 about the city: compute the integral?", NULL);
    double easy = slm_router_score(r, "Question 999 about the city: name it?", NULL);
    CHECKF(hard > 0.6 && easy < 0.4, "hard %f easy %f", hard, easy);
    CHECK(slm_router_kind(r) == SLM_ROUTER_PROMPT);
    double t10 = slm_router_threshold_for_share(r, 0.1), t50 = slm_router_threshold_for_share(r, 0.5);
    CHECK(t10 >= t50 && t50 > 0 && t10 <= 1);
    CHECK(isinf(slm_router_threshold_for_share(r, 0)) && slm_router_threshold_for_share(r, 1) == 0);
    /* about a third of the training prompts are hard: a 0.2 share threshold sends only hard ones */
    double t20 = slm_router_threshold_for_share(r, 0.2);
    CHECKF(hard >= t20 && easy < t20, "t20 %f", t20);

    /* two threads scoring at once agree with one */
    thread_arg a1 = {r, 0}, a2 = {r, 0}, solo = {r, 0};
    pthread_t th1, th2;
    pthread_create(&th1, NULL, score_many, &a1);
    pthread_create(&th2, NULL, score_many, &a2);
    pthread_join(th1, NULL);
    pthread_join(th2, NULL);
    score_many(&solo);
    CHECK(a1.sum == solo.sum && a2.sum == solo.sum);

    char path[] = "/tmp/slm-test-router-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECKF(slm_router_save(r, path, err, sizeof err) == 0, "%s", err);
    slm_router *back = slm_router_load(path, err, sizeof err);
    CHECKF(back != NULL, "%s", err);
    if (back) {
        CHECK(slm_router_score(back, "compute the integral", NULL) == slm_router_score(r, "compute the integral", NULL));
        CHECK(slm_router_threshold_for_share(back, 0.3) == slm_router_threshold_for_share(r, 0.3));
        slm_router_free(back);
    }
    /* hostile files: each a single clear line */
    FILE *f = fopen(path, "rb");
    static unsigned char buf[1 << 16];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    CHECK(n > 100 && n < sizeof buf);
    struct { size_t len; size_t flip; const char *want; } cases[] = {
        {n - 1, 0, "truncated"}, {40, 0, "truncated"}, {7, 0, "not a router file"},
        {n, 3, "not a router file"}, {n, 8, "version"}, {n, 12, "kind"}, {n, 20, "hash_bits"},
        {n, 24, "dense features"}, {n, 200, "checksum"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        unsigned char copy[1 << 16];
        memcpy(copy, buf, n);
        if (cases[i].flip) copy[cases[i].flip] ^= 0x41;
        err[0] = 0;
        slm_router *bad = slm_router_load_memory(copy, cases[i].len, err, sizeof err);
        CHECKF(bad == NULL && strstr(err, cases[i].want) && !strchr(err, '\n'), "case %zu: '%s'", i, err);
        slm_router_free(bad);
    }
    CHECK(slm_router_load("/nonexistent/router.bin", err, sizeof err) == NULL && strstr(err, "/nonexistent/router.bin"));
    unlink(path);
    slm_router_free(r);
    slm_router_data_free(&d);

    /* cascade: the answer decides; a prompt router refuses answer features */
    make_data(&d, true);
    slm_router_train_defaults(&o, SLM_ROUTER_CASCADE);
    r = slm_router_train(&d, &o, err, sizeof err);
    CHECKF(r != NULL, "%s", err);
    if (r) {
        double bad = slm_router_score(r, "Question 1 about the city: name it?", "It is hard, however roughly");
        double good = slm_router_score(r, "Question 1 about the city: name it?", "The answer is 4.\n#### 1");
        CHECKF(bad > 0.6 && good < 0.4, "bad %f good %f", bad, good);
        CHECK(slm_router_score(r, NULL, NULL) >= 0); /* NULLs are empty texts */
        slm_router_free(r);
    }
    o.kind = SLM_ROUTER_PROMPT;
    CHECK(slm_router_train(&d, &o, err, sizeof err) == NULL && strstr(err, "cascade"));
    slm_router_data_free(&d);
}

static void test_data_load(void) {
    char path[] = "/tmp/slm-test-router-csv-XXXXXX";
    int fd = mkstemp(path);
    const char text[] = "prompt,weak,strong,weak_response\n\"a, b\",True,False,\"x\"\nc,false,1,y\n";
    CHECK(fd >= 0 && write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);
    slm_router_data d = {0};
    char err[256] = "";
    CHECKF(slm_router_data_load(&d, path, NULL, NULL, true, err, sizeof err) == 0, "%s", err);
    CHECK(d.n == 2 && strcmp(d.ex[0].prompt, "a, b") == 0 && d.ex[0].local_ok && !d.ex[0].frontier_ok);
    CHECK(d.ex[1].frontier_ok && !d.ex[1].local_ok && strcmp(d.ex[1].local_answer, "y") == 0);
    /* columns by name, swapped */
    CHECK(slm_router_data_load(&d, path, "strong", "weak", false, err, sizeof err) == 0 && d.n == 4);
    CHECK(d.ex[2].local_ok == false && d.ex[2].local_answer == NULL && d.ex[2].source == 1);
    CHECK(slm_router_data_load(&d, path, "nope", NULL, false, err, sizeof err) == -1 && strstr(err, "no column named 'nope'"));
    CHECK(slm_router_data_load(&d, path, "strong", "weak", true, err, sizeof err) == -1 && strstr(err, "strong_response"));
    CHECK(slm_router_data_load(&d, path, "strong", NULL, false, err, sizeof err) == -1 && strstr(err, "three different"));
    CHECK(d.n == 4);
    slm_router_data_free(&d);

    fd = open(path, O_WRONLY | O_TRUNC);
    const char bad[] = "prompt,weak,strong\nq,maybe,True\n";
    CHECK(fd >= 0 && write(fd, bad, sizeof bad - 1) == (ssize_t)(sizeof bad - 1));
    close(fd);
    CHECK(slm_router_data_load(&d, path, NULL, NULL, false, err, sizeof err) == -1 && strstr(err, "line 2") &&
          strstr(err, "True or False") && d.n == 0);
    slm_router_data_free(&d);
    unlink(path);

    unsigned bits = 0;
    CHECK(slm_router_parse_features("dense,chars", &bits) && bits == (SLM_RF_DENSE | SLM_RF_CHARS));
    CHECK(!slm_router_parse_features("dense,bogus", &bits) && !slm_router_parse_features("", &bits));
}

int main(void) {
    test_csv_ok();
    test_csv_errors();
    test_metrics();
    test_arith();
    test_data_load();
    test_train_roundtrip();
    return test_report("test_router");
}
