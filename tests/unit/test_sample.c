/* Sampler: greedy ties, each filter on hand-made logits, exact penalty math, logit bias, seeded
 * determinism, the empirical distribution against softmax, non-finite logits, and speed at a
 * 151936-token vocabulary. */
#include <float.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "sample/grammar.h"
#include "sample/sample.h"
#include "test.h"

static slm_sampler_params plain_params(float temperature) {
    slm_sampler_params p = slm_sampler_default_params();
    p.temperature = temperature;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    return p;
}

static slm_sampler *make(int n_vocab, const slm_sampler_params *p) {
    char err[256] = "";
    slm_sampler *s = NULL;
    int rc = slm_sampler_new_for_vocab(n_vocab, p, &s, err, sizeof err);
    CHECKF(rc == 0 && s, "sampler_new: %s", err);
    return s;
}

/* Sorted copy of the candidate ids, so sets can be compared. */
static int candidates_sorted(slm_sampler *s, const float *logits, slm_token *ids, int cap) {
    int n = slm_sampler_candidates(s, logits, ids, cap);
    for (int i = 1; i < n && i < cap; i++)
        for (int j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            slm_token t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    return n;
}

static bool same_set(slm_sampler *s, const float *logits, const slm_token *expected, int n_expected) {
    slm_token got[64];
    int n = candidates_sorted(s, logits, got, 64);
    if (n != n_expected) {
        fprintf(stderr, "  candidate count %d, expected %d\n", n, n_expected);
        return false;
    }
    for (int i = 0; i < n; i++)
        if (got[i] != expected[i]) {
            fprintf(stderr, "  candidate %d is %d, expected %d\n", i, got[i], expected[i]);
            return false;
        }
    return true;
}

static void test_greedy(void) {
    slm_sampler_params p = plain_params(0.0f);
    slm_sampler *s = make(6, &p);
    float ties[6] = {1, 3, 3, 2, 3, -1};
    CHECK(slm_sampler_sample(s, ties) == 1);
    float nan_mixed[6] = {NAN, 2, NAN, 5, 5, NAN};
    CHECK(slm_sampler_sample(s, nan_mixed) == 3);
    float infs[6] = {1, INFINITY, INFINITY, 2, -INFINITY, NAN};
    CHECK(slm_sampler_sample(s, infs) == 1);
    float none[6] = {NAN, -INFINITY, NAN, -INFINITY, NAN, NAN};
    CHECK(slm_sampler_sample(s, none) == -1);
    float negative[6] = {-5, -4, -4.5f, -10, -4, -7};
    CHECK(slm_sampler_sample(s, negative) == 1);
    slm_sampler_free(s);

    p.temperature = -1.0f; /* any temperature <= 0 is greedy */
    s = make(6, &p);
    CHECK(slm_sampler_sample(s, ties) == 1);
    slm_sampler_free(s);
}

/* probs 0.5, 0.3, 0.15, 0.05 as logits (ids 0..3), plus ids 4..7 at 1/8 of id 3's odds. */
static void quarter_logits(float *l) {
    const double probs[8] = {0.5, 0.3, 0.15, 0.05, 0.05 / 8, 0.05 / 8, 0.05 / 8, 0.05 / 8};
    for (int i = 0; i < 8; i++) l[i] = (float)log(probs[i]);
}

static void test_top_k(void) {
    float l[10] = {0.1f, 2.0f, -1.0f, 3.0f, 2.5f, 0.0f, 1.0f, -3.0f, 2.0f, 0.5f};
    slm_sampler_params p = plain_params(1.0f);
    p.top_k = 3;
    slm_sampler *s = make(10, &p);
    CHECK(same_set(s, l, (slm_token[]){1, 3, 4}, 3)); /* 3.0, 2.5, then 2.0 at ids 1 and 8: lowest id */
    for (int i = 0; i < 2000; i++) {
        slm_token t = slm_sampler_sample(s, l);
        CHECKF(t == 1 || t == 3 || t == 4, "top-k 3 drew %d", t);
        if (!(t == 1 || t == 3 || t == 4)) break;
    }
    slm_sampler_free(s);

    p.top_k = 1;
    s = make(10, &p);
    for (int i = 0; i < 200; i++) CHECK(slm_sampler_sample(s, l) == 3);
    slm_sampler_free(s);

    /* k larger than the vocabulary, or the finite logits: everything finite survives. */
    p.top_k = 50;
    s = make(10, &p);
    float some_banned[10] = {0, -INFINITY, 1, NAN, 2, -INFINITY, 3, 4, 5, 6};
    CHECK(same_set(s, some_banned, (slm_token[]){0, 2, 4, 6, 7, 8, 9}, 7));
    slm_sampler_free(s);
    p.top_k = 8; /* < n_vocab but > number of finite logits */
    s = make(10, &p);
    float mostly_banned[10] = {-INFINITY, 1, NAN, -INFINITY, -INFINITY, 2, NAN, NAN, -INFINITY, 0};
    CHECK(same_set(s, mostly_banned, (slm_token[]){1, 5, 9}, 3));
    slm_sampler_free(s);

    /* All equal: the k lowest ids. */
    p.top_k = 2;
    s = make(10, &p);
    float flat[10] = {0};
    CHECK(same_set(s, flat, (slm_token[]){0, 1}, 2));
    slm_sampler_free(s);
}

static void check_top_p(int top_k) {
    float l[8];
    quarter_logits(l);
    slm_sampler_params p = plain_params(1.0f);
    p.top_k = top_k;
    p.top_p = 0.75f; /* 0.5 < 0.75 <= 0.8 */
    slm_sampler *s = make(8, &p);
    CHECKF(same_set(s, l, (slm_token[]){0, 1}, 2), "top_p 0.75, top_k %d", top_k);
    slm_sampler_free(s);
    p.top_p = 0.85f; /* 0.8 < 0.85 <= 0.95 */
    s = make(8, &p);
    CHECKF(same_set(s, l, (slm_token[]){0, 1, 2}, 3), "top_p 0.85, top_k %d", top_k);
    slm_sampler_free(s);
    p.top_p = 0.4f; /* the best token alone already reaches it */
    s = make(8, &p);
    CHECKF(same_set(s, l, (slm_token[]){0}, 1), "top_p 0.4, top_k %d", top_k);
    slm_sampler_free(s);
    p.top_p = 1e-7f; /* tiny p: argmax only */
    s = make(8, &p);
    for (int i = 0; i < 100; i++) CHECK(slm_sampler_sample(s, l) == 0);
    slm_sampler_free(s);
    p.top_p = 1.0f; /* off: top-k alone decides (ties among ids 4..7 keep the lowest) */
    s = make(8, &p);
    CHECKF(same_set(s, l, (slm_token[]){0, 1, 2, 3, 4, 5, 6, 7}, top_k > 0 && top_k < 8 ? top_k : 8), "top_k %d",
           top_k);
    slm_sampler_free(s);
}

/* NaN and -inf logits carry no probability mass: the top-p cut is the same as without them. */
static void check_top_p_non_finite(int top_k) {
    float l[12];
    quarter_logits(l);
    l[8] = NAN;
    l[9] = -INFINITY;
    l[10] = NAN;
    l[11] = -INFINITY;
    slm_sampler_params p = plain_params(1.0f);
    p.top_k = top_k;
    p.top_p = 0.75f;
    slm_sampler *s = make(12, &p);
    CHECKF(same_set(s, l, (slm_token[]){0, 1}, 2), "top_p 0.75 with NaN, top_k %d", top_k);
    slm_sampler_free(s);
    p.top_p = 0.85f;
    s = make(12, &p);
    CHECKF(same_set(s, l, (slm_token[]){0, 1, 2}, 3), "top_p 0.85 with NaN, top_k %d", top_k);
    slm_sampler_free(s);
}

/* top-p without top-k over a larger vocabulary against a brute-force reference (sort + cumulate). */
static void test_top_p_large(void) {
    enum { V = 3000 };
    static float l[V];
    static int order[V];
    uint64_t x = 12345;
    for (int i = 0; i < V; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        l[i] = (float)((double)(x >> 40) / (double)(1 << 24) * 8.0 - 4.0);
        order[i] = i;
    }
    l[17] = l[18]; /* a tie, broken by lower id */
    for (int i = 1; i < V; i++) /* insertion sort: best first, ties by id */
        for (int j = i; j > 0 && (l[order[j]] > l[order[j - 1]] ||
                                  (l[order[j]] == l[order[j - 1]] && order[j] < order[j - 1]));
             j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    const float ps[] = {0.01f, 0.3f, 0.5f, 0.9f, 0.999f};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        double sum = 0, max = l[order[0]];
        for (int i = 0; i < V; i++) sum += expf((float)(l[i] - max));
        double target = ps[k] * sum, cum = 0;
        int n_ref = 0;
        while (n_ref < V) {
            cum += expf((float)(l[order[n_ref]] - max));
            n_ref++;
            if (cum >= target) break;
        }
        slm_sampler_params p = plain_params(1.0f);
        p.top_p = ps[k];
        slm_sampler *s = make(V, &p);
        static slm_token ids[V];
        int n = slm_sampler_candidates(s, l, ids, V);
        /* Summation order differs from the reference: allow the cut to move by one token. */
        CHECKF(n >= n_ref - 1 && n <= n_ref + 1, "top_p %g: %d candidates, reference %d", (double)ps[k], n, n_ref);
        static bool in_ref[V];
        memset(in_ref, 0, sizeof in_ref);
        for (int i = 0; i < n_ref + 1 && i < V; i++) in_ref[order[i]] = true;
        int outside = 0;
        for (int i = 0; i < n; i++) outside += !in_ref[ids[i]];
        CHECKF(outside == 0, "top_p %g: %d candidates outside the best-first prefix", (double)ps[k], outside);
        slm_sampler_free(s);
    }
}

static void check_min_p(int top_k) {
    float l[8];
    quarter_logits(l);
    slm_sampler_params p = plain_params(1.0f);
    p.top_k = top_k;
    p.min_p = 0.2f; /* keeps p >= 0.1 */
    slm_sampler *s = make(8, &p);
    CHECKF(same_set(s, l, (slm_token[]){0, 1, 2}, 3), "min_p 0.2, top_k %d", top_k);
    slm_sampler_free(s);
    p.min_p = 0.7f; /* keeps p >= 0.35 */
    s = make(8, &p);
    CHECKF(same_set(s, l, (slm_token[]){0}, 1), "min_p 0.7, top_k %d", top_k);
    slm_sampler_free(s);
    p.min_p = 0.05f; /* keeps p >= 0.025: not the 1/160 ones */
    s = make(8, &p);
    CHECKF(same_set(s, l, (slm_token[]){0, 1, 2, 3}, 4), "min_p 0.05, top_k %d", top_k);
    slm_sampler_free(s);
    /* Combined with top-p: the smaller best-first prefix wins either way round. */
    p.min_p = 0.2f;
    p.top_p = 0.75f;
    s = make(8, &p);
    CHECKF(same_set(s, l, (slm_token[]){0, 1}, 2), "min_p 0.2 + top_p 0.75, top_k %d", top_k);
    slm_sampler_free(s);
    p.min_p = 0.7f;
    p.top_p = 0.85f;
    s = make(8, &p);
    CHECKF(same_set(s, l, (slm_token[]){0}, 1), "min_p 0.7 + top_p 0.85, top_k %d", top_k);
    slm_sampler_free(s);
}

static void test_penalties(void) {
    float l[6] = {2.0f, -2.0f, 1.0f, 0.5f, 0.0f, 3.0f};
    slm_sampler_params p = plain_params(0.0f);
    p.repeat_penalty = 2.0f;
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    slm_sampler *s = make(6, &p);
    /* No history yet: logits pass through untouched. */
    CHECK(slm_sampler_adjusted_logits(s, l) == l);
    slm_sampler_accept(s, 0);
    slm_sampler_accept_prompt(s, 0);
    slm_sampler_accept(s, 1);
    slm_sampler_accept(s, 4);
    slm_sampler_accept(s, 99); /* out of range: ignored */
    slm_sampler_accept(s, -1);
    const float *a = slm_sampler_adjusted_logits(s, l);
    CHECK(a != l);
    CHECKF(a[0] == 2.0f / 2.0f - (2 * 0.5f + 0.25f), "token 0: %g", (double)a[0]);  /* positive: divided */
    CHECKF(a[1] == -2.0f * 2.0f - (1 * 0.5f + 0.25f), "token 1: %g", (double)a[1]); /* negative: multiplied */
    CHECKF(a[4] == 0.0f * 2.0f - (1 * 0.5f + 0.25f), "token 4: %g", (double)a[4]);  /* zero counts as <= 0 */
    CHECK(a[2] == 1.0f && a[3] == 0.5f && a[5] == 3.0f);
    CHECK(l[0] == 2.0f && l[1] == -2.0f); /* the caller's logits are untouched */
    slm_sampler_reset(s);
    CHECK(slm_sampler_adjusted_logits(s, l) == l);
    slm_sampler_free(s);

    /* Window: only the last N accepted tokens count. */
    p.penalty_last_n = 2;
    p.frequency_penalty = 1.0f;
    p.presence_penalty = 0.0f;
    p.repeat_penalty = 1.0f;
    s = make(6, &p);
    slm_sampler_accept(s, 5);
    slm_sampler_accept(s, 5);
    slm_sampler_accept(s, 2);
    a = slm_sampler_adjusted_logits(s, l);
    CHECKF(a[5] == 2.0f && a[2] == 0.0f, "window 2 after 5,5,2: %g %g", (double)a[5], (double)a[2]);
    slm_sampler_accept(s, 2);
    a = slm_sampler_adjusted_logits(s, l);
    CHECKF(a[5] == 3.0f && a[2] == -1.0f, "window 2 after 5,5,2,2: %g %g", (double)a[5], (double)a[2]);
    slm_sampler_free(s);

    /* Whole history. */
    p.penalty_last_n = -1;
    s = make(6, &p);
    for (int i = 0; i < 1000; i++) slm_sampler_accept(s, 3);
    a = slm_sampler_adjusted_logits(s, l);
    CHECK(a[3] == 0.5f - 1000.0f);
    slm_sampler_free(s);

    /* Default window (0 = 64). */
    p.penalty_last_n = 0;
    s = make(6, &p);
    for (int i = 0; i < 100; i++) slm_sampler_accept(s, 3);
    a = slm_sampler_adjusted_logits(s, l);
    CHECK(a[3] == 0.5f - 64.0f);
    slm_sampler_free(s);

    /* The penalty changes the greedy choice. */
    p = plain_params(0.0f);
    p.repeat_penalty = 1.5f;
    s = make(6, &p);
    float close[6] = {0, 0, 1.4f, 0, 0, 2.0f};
    CHECK(slm_sampler_sample(s, close) == 5);
    slm_sampler_accept(s, 5); /* 2.0 / 1.5 = 1.33 < 1.4 */
    CHECK(slm_sampler_sample(s, close) == 2);
    slm_sampler_free(s);
}

static void test_logit_bias(void) {
    float l[5] = {1.0f, 4.0f, 2.0f, 3.0f, 0.0f};
    slm_logit_bias bias[] = {{1, -INFINITY}, {4, 2.5f}};
    slm_sampler_params p = plain_params(0.0f);
    p.logit_bias = bias;
    p.n_logit_bias = 2;
    slm_sampler *s = make(5, &p);
    bias[0].bias = 0; /* the sampler keeps its own copy */
    const float *a = slm_sampler_adjusted_logits(s, l);
    CHECK(a[1] == -INFINITY && a[4] == 2.5f && a[3] == 3.0f);
    CHECK(slm_sampler_sample(s, l) == 3); /* 1 is banned */
    slm_sampler_free(s);

    /* A ban holds under sampling too: only the unbanned token is ever drawn. */
    slm_logit_bias bans[] = {{0, -INFINITY}, {1, -INFINITY}, {2, -INFINITY}, {4, -INFINITY}};
    p = plain_params(1.0f);
    p.logit_bias = bans;
    p.n_logit_bias = 4;
    s = make(5, &p);
    for (int i = 0; i < 500; i++) CHECK(slm_sampler_sample(s, l) == 3);
    slm_sampler_free(s);

    slm_logit_bias all[] = {{0, -INFINITY}, {1, -INFINITY}};
    p.logit_bias = all;
    p.n_logit_bias = 2;
    s = make(2, &p);
    float two[2] = {1, 2};
    CHECK(slm_sampler_sample(s, two) == -1); /* nothing left */
    slm_sampler_free(s);
}

static void test_validation(void) {
    char err[256];
    slm_sampler *s = (slm_sampler *)1;
    slm_sampler_params p = slm_sampler_default_params();
    slm_logit_bias bad_token[] = {{7, 1.0f}};
    p.logit_bias = bad_token;
    p.n_logit_bias = 1;
    CHECK(slm_sampler_new_for_vocab(5, &p, &s, err, sizeof err) < 0 && s == NULL);
    CHECKF(strstr(err, "token 7"), "%s", err);
    slm_logit_bias nan_bias[] = {{1, NAN}};
    p.logit_bias = nan_bias;
    CHECK(slm_sampler_new_for_vocab(5, &p, &s, err, sizeof err) < 0);
    p = slm_sampler_default_params();
    p.n_logit_bias = 3; /* no array */
    CHECK(slm_sampler_new_for_vocab(5, &p, &s, err, sizeof err) < 0);
    p = slm_sampler_default_params();
    p.repeat_penalty = 0;
    CHECK(slm_sampler_new_for_vocab(5, &p, &s, err, sizeof err) < 0);
    CHECKF(strstr(err, "repeat_penalty"), "%s", err);
    p = slm_sampler_default_params();
    p.temperature = NAN;
    CHECK(slm_sampler_new_for_vocab(5, &p, &s, err, sizeof err) < 0);
    p = slm_sampler_default_params();
    p.penalty_last_n = -2;
    CHECK(slm_sampler_new_for_vocab(5, &p, &s, err, sizeof err) < 0);
    CHECK(slm_sampler_new_for_vocab(0, NULL, &s, err, sizeof err) < 0);
    CHECK(slm_sampler_new(NULL, NULL, &s, err, sizeof err) < 0);
    /* NULL params = defaults. */
    CHECK(slm_sampler_new_for_vocab(5, NULL, &s, err, sizeof err) == 0 && s);
    slm_sampler_free(s);
    slm_sampler_free(NULL);
    CHECK(slm_sampler_sample(NULL, NULL) == -1);
    CHECK(!slm_sampler_grammar_done(NULL));
}

static void draw_many(slm_sampler *s, const float *l, slm_token *out, int n) {
    for (int i = 0; i < n; i++) out[i] = slm_sampler_sample(s, l);
}

static void test_determinism(void) {
    enum { V = 50, N = 1000 };
    float l[V];
    for (int i = 0; i < V; i++) l[i] = (float)(i % 7) * 0.1f; /* nearly flat */
    slm_sampler_params p = plain_params(1.0f);
    p.seed = 42;
    slm_sampler *a = make(V, &p), *b = make(V, &p);
    p.seed = 43;
    slm_sampler *c = make(V, &p);
    static slm_token ta[N], tb[N], tc[N], tr[N];
    /* Interleave a and b: each sampler's stream is its own. */
    for (int i = 0; i < N; i++) {
        ta[i] = slm_sampler_sample(a, l);
        tb[i] = slm_sampler_sample(b, l);
        (void)slm_sampler_sample(b, l);
    }
    slm_sampler_free(b);
    b = make(V, &(slm_sampler_params){.temperature = 1.0f, .top_p = 1.0f, .repeat_penalty = 1.0f, .seed = 42});
    draw_many(b, l, tb, N);
    CHECK(memcmp(ta, tb, sizeof ta) == 0);
    draw_many(c, l, tc, N);
    int differ = 0;
    for (int i = 0; i < N; i++) differ += ta[i] != tc[i];
    CHECKF(differ > N / 2, "seeds 42 and 43 agree on %d of %d draws", N - differ, N);
    /* Reset replays the stream from the seed. */
    slm_sampler_reset(a);
    draw_many(a, l, tr, N);
    CHECK(memcmp(ta, tr, sizeof ta) == 0);
    slm_sampler_free(a);
    slm_sampler_free(b);
    slm_sampler_free(c);
}

/* Chi-square of the draw counts against softmax(logits / T); 7 degrees of freedom. */
static double chi_square(float temperature, int top_k, uint64_t seed) {
    enum { V = 8, N = 200000 };
    float l[V] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, -1.0f, 0.25f, 1.5f};
    slm_sampler_params p = plain_params(temperature);
    p.top_k = top_k;
    p.seed = seed;
    slm_sampler *s = make(V, &p);
    long counts[V] = {0};
    for (int i = 0; i < N; i++) {
        slm_token t = slm_sampler_sample(s, l);
        if (t >= 0 && t < V) counts[t]++;
    }
    slm_sampler_free(s);
    double z = 0, expected[V];
    for (int i = 0; i < V; i++) z += (expected[i] = exp(l[i] / temperature));
    double chi = 0;
    for (int i = 0; i < V; i++) {
        double e = expected[i] / z * N;
        chi += (counts[i] - e) * (counts[i] - e) / e;
    }
    return chi;
}

static void test_distribution(void) {
    /* 7 dof: P(chi2 > 24.3) = 0.001. Fixed seeds, so the values are reproducible. */
    double c1 = chi_square(1.0f, 0, 1), c2 = chi_square(1.0f, 8, 2), c3 = chi_square(0.5f, 0, 3),
           c4 = chi_square(2.0f, 0, 4);
    CHECKF(c1 < 24.3, "T=1 chi2 %.2f", c1);
    CHECKF(c2 < 24.3, "T=1 (top-k path) chi2 %.2f", c2);
    CHECKF(c3 < 24.3, "T=0.5 chi2 %.2f", c3);
    CHECKF(c4 < 24.3, "T=2 chi2 %.2f", c4);
    /* And the test has teeth: counts at T=1 are far from softmax at T=0.5. */
    enum { V = 8, N = 20000 };
    float l[V] = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, -1.0f, 0.25f, 1.5f};
    slm_sampler_params p = plain_params(1.0f);
    slm_sampler *s = make(V, &p);
    long counts[V] = {0};
    for (int i = 0; i < N; i++) counts[slm_sampler_sample(s, l)]++;
    slm_sampler_free(s);
    double z = 0, chi = 0;
    for (int i = 0; i < V; i++) z += exp(l[i] / 0.5);
    for (int i = 0; i < V; i++) {
        double e = exp(l[i] / 0.5) / z * N;
        chi += (counts[i] - e) * (counts[i] - e) / e;
    }
    CHECKF(chi > 100, "T=1 draws look like T=0.5 (chi2 %.2f)", chi);
    fprintf(stderr, "chi2 (7 dof, 200k draws): T=1 %.2f, T=1 top-k %.2f, T=0.5 %.2f, T=2 %.2f\n", c1, c2, c3, c4);
}

static void test_non_finite(void) {
    const int top_ks[] = {0, 3};
    for (size_t k = 0; k < 2; k++) {
        slm_sampler_params p = plain_params(0.8f);
        p.top_k = top_ks[k];
        p.top_p = 0.9f;
        p.min_p = 0.01f;
        slm_sampler *s = make(6, &p);
        float l[6] = {NAN, 1.0f, INFINITY, INFINITY, -INFINITY, 50.0f};
        for (int i = 0; i < 200; i++) {
            slm_token t = slm_sampler_sample(s, l);
            CHECKF(t == 2 || t == 3, "top_k %d: +inf logits must win, drew %d", top_ks[k], t);
        }
        float none[6] = {NAN, NAN, -INFINITY, NAN, -INFINITY, NAN};
        CHECK(slm_sampler_sample(s, none) == -1);
        float one[6] = {NAN, NAN, -INFINITY, 7.0f, -INFINITY, NAN};
        CHECK(slm_sampler_sample(s, one) == 3);
        float huge[6] = {FLT_MAX, -FLT_MAX, 0, FLT_MAX, 1e30f, -1e30f};
        for (int i = 0; i < 50; i++) {
            slm_token t = slm_sampler_sample(s, huge);
            CHECKF(t == 0 || t == 3, "drew %d", t);
        }
        slm_sampler_free(s);
    }
    /* Extreme temperatures stay well defined. */
    float l[4] = {1, 2, 3, 2.5f};
    slm_sampler_params p = plain_params(1e-30f);
    slm_sampler *s = make(4, &p);
    for (int i = 0; i < 50; i++) CHECK(slm_sampler_sample(s, l) == 2);
    slm_sampler_free(s);
    p = plain_params(1e30f);
    s = make(4, &p);
    bool seen[4] = {0};
    for (int i = 0; i < 400; i++) {
        slm_token t = slm_sampler_sample(s, l);
        if (t >= 0 && t < 4) seen[t] = true;
    }
    CHECK(seen[0] && seen[1] && seen[2] && seen[3]);
    slm_sampler_free(s);
}

/* Random logits sprinkled with NaN / ±inf under random settings: the result is always -1 (only when
 * nothing is usable) or a token whose logit is usable, and never a banned one. */
static void test_random_robustness(void) {
    enum { V = 257 };
    static float l[V];
    uint64_t x = 2024;
#define NEXT() (x = x * 6364136223846793005ULL + 1442695040888963407ULL, x >> 33)
    for (int round = 0; round < 400; round++) {
        int usable = 0;
        for (int i = 0; i < V; i++) {
            unsigned r = (unsigned)(NEXT() % 100);
            l[i] = r < 5 ? NAN : r < 10 ? -INFINITY : r == 10 && round % 7 == 0 ? INFINITY
                                                     : (float)((int)(NEXT() % 2000) - 1000) / 50.0f;
            usable += l[i] > -INFINITY;
        }
        if (round % 50 == 0)
            for (int i = 0; i < V; i++) l[i] = NAN; /* nothing usable */
        slm_logit_bias ban = {(slm_token)(NEXT() % V), -INFINITY};
        slm_sampler_params p = plain_params((float)(NEXT() % 4) * 0.5f);
        p.top_k = (int)(NEXT() % 4) * 20;
        p.top_p = (float)(NEXT() % 11) / 10.0f + 0.001f;
        p.min_p = (float)(NEXT() % 5) / 10.0f;
        p.repeat_penalty = 1.0f + (float)(NEXT() % 3) * 0.2f;
        p.presence_penalty = (float)(NEXT() % 3) * 0.5f;
        p.logit_bias = &ban;
        p.n_logit_bias = 1;
        p.seed = (uint64_t)round;
        slm_sampler *s = make(V, &p);
        if (!s) return;
        for (int i = 0; i < 30; i++) slm_sampler_accept(s, (slm_token)(NEXT() % V));
        for (int i = 0; i < 20; i++) {
            slm_token t = slm_sampler_sample(s, l);
            bool ok = t == -1 ? round % 50 == 0 || usable <= 1
                              : t >= 0 && t < V && l[t] > -INFINITY && t != ban.token;
            CHECKF(ok, "round %d: drew %d (logit %g, ban %d)", round, t, t >= 0 && t < V ? (double)l[t] : 0.0,
                   ban.token);
            if (!ok) break;
            if (t >= 0) slm_sampler_accept(s, t);
        }
        slm_sampler_free(s);
    }
#undef NEXT
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Speed at Qwen2.5's vocabulary; printed for the record (sanitizer builds are much slower, so the
 * bound only guards against an accidental full sort of the vocabulary). */
static void test_speed(void) {
    enum { V = 151936 };
    static float l[V];
    uint64_t x = 99;
    for (int i = 0; i < V; i++) { /* roughly normal logits, sigma ~1 */
        double sum = 0;
        for (int j = 0; j < 4; j++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            sum += (double)(x >> 11) * 0x1.0p-53;
        }
        l[i] = (float)((sum - 2.0) * 1.7);
    }
    struct {
        const char *name;
        slm_sampler_params p;
    } configs[5];
    configs[0].name = "defaults (T 0.8, top-k 40, top-p 0.95, min-p 0.05, repeat 1.1 over 64)";
    configs[0].p = slm_sampler_default_params();
    configs[0].p.repeat_penalty = 1.1f;
    configs[1].name = "greedy";
    configs[1].p = plain_params(0.0f);
    configs[2].name = "no top-k: top-p 0.95 + min-p 0.05";
    configs[2].p = plain_params(0.8f);
    configs[2].p.top_p = 0.95f;
    configs[2].p.min_p = 0.05f;
    configs[3].name = "no top-k: top-p 0.95 only";
    configs[3].p = plain_params(0.8f);
    configs[3].p.top_p = 0.95f;
    configs[4].name = "plain T 1 over the whole vocabulary";
    configs[4].p = plain_params(1.0f);
    for (int c = 0; c < 5; c++) {
        slm_sampler *s = make(V, &configs[c].p);
        if (!s) continue;
        for (int i = 0; i < 64; i++) slm_sampler_accept(s, (i * 7919) % V);
        int iters = c == 0 || c == 1 ? 2000 : 200;
        double t0 = now_us();
        long checksum = 0;
        for (int i = 0; i < iters; i++) checksum += slm_sampler_sample(s, l);
        double us = (now_us() - t0) / iters;
        fprintf(stderr, "sample n_vocab %d, %s: %.1f us/sample (checksum %ld)\n", V, configs[c].name, us, checksum);
        CHECKF(us < 100000, "%s: %.0f us per sample", configs[c].name, us);
        slm_sampler_free(s);
    }
}

/* A hand-made vocabulary for the grammar hook; id 8 is end-of-generation. */
static const char *const toy_vocab[] = {"y", "es", "yes", "no", "n", "o", "x", "maybe", ""};
#define TOY_N 9
#define TOY_EOG 8

static int toy_piece(void *user, slm_token t, char *buf, int cap) {
    (void)user;
    int n = (int)strlen(toy_vocab[t]);
    if (n > cap) return -n;
    memcpy(buf, toy_vocab[t], (size_t)n);
    return n;
}

static bool toy_eog(void *user, slm_token t) {
    (void)user;
    return t == TOY_EOG;
}

static void test_grammar(void) {
    char err[256];
    slm_grammar *g = NULL;
    const char *src = "root ::= \"yes\" | \"no\"";
    if (slm_grammar_compile_vocab(src, strlen(src), TOY_N, toy_piece, toy_eog, NULL, &g, err, sizeof err) != 0) {
        CHECKF(0, "grammar compile: %s", err);
        return;
    }
    /* Greedy: the best allowed token, though disallowed ones score higher. */
    slm_sampler_params p = plain_params(0.0f);
    slm_sampler *s = make(TOY_N, &p);
    slm_sampler_set_grammar(s, g);
    float l[TOY_N] = {3, 0, 5, 4, 0, 0, 9, 10, 20};
    CHECK(!slm_sampler_grammar_done(s));
    CHECK(slm_sampler_sample(s, l) == 2);
    slm_sampler_accept(s, 2);
    CHECK(slm_sampler_grammar_done(s));
    CHECK(slm_sampler_sample(s, l) == TOY_EOG); /* only EOG continues a complete parse */
    /* Without the grammar the same logits give the unconstrained argmax. */
    slm_sampler_set_grammar(s, NULL);
    CHECK(slm_sampler_sample(s, l) == TOY_EOG);
    float no_eog[TOY_N] = {3, 0, 5, 4, 0, 0, 9, 10, -1};
    CHECK(slm_sampler_sample(s, no_eog) == 7);
    slm_sampler_free(s);

    /* Sampling: every run spells a sentence of the grammar, whatever the logits favour. */
    p = plain_params(1.5f);
    p.seed = 7;
    s = make(TOY_N, &p);
    slm_sampler_set_grammar(s, g);
    int seen_yes = 0, seen_no = 0, bad = 0;
    uint64_t x = 1;
    for (int run = 0; run < 300; run++) {
        slm_sampler_reset(s); /* restarts the grammar too */
        char text[64] = "";
        for (int step = 0; step < 8; step++) {
            for (int i = 0; i < TOY_N; i++) {
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                l[i] = (float)((x >> 40) % 1000) / 100.0f;
            }
            l[6] += 5; /* "x" is the model's favourite, never allowed */
            slm_token t = slm_sampler_sample(s, l);
            if (t < 0) {
                bad++;
                break;
            }
            slm_sampler_accept(s, t);
            if (t == TOY_EOG) break;
            if (strlen(text) + strlen(toy_vocab[t]) < sizeof text) strcat(text, toy_vocab[t]);
        }
        if (!strcmp(text, "yes")) seen_yes++;
        else if (!strcmp(text, "no")) seen_no++;
        else {
            bad++;
            fprintf(stderr, "  grammar run %d produced \"%s\"\n", run, text);
        }
    }
    CHECKF(bad == 0 && seen_yes > 0 && seen_no > 0, "yes %d, no %d, bad %d", seen_yes, seen_no, bad);
    slm_sampler_free(s);
    slm_grammar_free(g);
}

/* Banned tokens are never sampled, whatever their logit or the temperature; lifting the ban (or a
 * list with an id outside the vocabulary, ignored whole) restores them; the logits are not modified. */
static void test_banned(void) {
    float logits[6] = {0.1f, 9.0f, 0.2f, 8.5f, -1.0f, 0.0f};
    const slm_token eog[2] = {1, 3}, bad[2] = {1, 6};
    slm_sampler_params p = slm_sampler_default_params();
    p.temperature = 0.0f;
    slm_sampler *s = make(6, &p);
    CHECK(slm_sampler_sample(s, logits) == 1);
    slm_sampler_set_banned(s, eog, 2);
    CHECK(slm_sampler_sample(s, logits) == 2);
    CHECK(logits[1] == 9.0f && logits[3] == 8.5f);
    slm_sampler_set_banned(s, bad, 2);
    CHECK(slm_sampler_sample(s, logits) == 1);
    slm_sampler_set_banned(s, NULL, 0);
    CHECK(slm_sampler_sample(s, logits) == 1);
    slm_sampler_free(s);
    p.temperature = 5.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    s = make(6, &p);
    slm_sampler_set_banned(s, eog, 2);
    int hits = 0;
    for (int i = 0; i < 2000; i++) {
        slm_token t = slm_sampler_sample(s, logits);
        hits += t == 1 || t == 3;
    }
    CHECKF(hits == 0, "banned tokens sampled %d times in 2000 draws", hits);
    slm_sampler_free(s);
}

/* No possible token: logit_bias (and the grammar) forbid everything → SLM_NO_TOKEN, never an id;
 * slm_sampler_new refuses a logit_bias that bans the whole vocabulary up front. */
static void test_no_token(void) {
    _Static_assert(SLM_NO_TOKEN < 0, "SLM_NO_TOKEN is not a token id");
    slm_logit_bias all[TOY_N];
    for (int t = 0; t < TOY_N; t++) all[t] = (slm_logit_bias){t, -INFINITY};
    float l[TOY_N] = {3, 0, 5, 4, 0, 0, 9, 10, 20};
    for (int mode = 0; mode < 3; mode++) {
        slm_sampler_params p = mode == 0 ? plain_params(0.0f) : mode == 1 ? plain_params(1.0f) : slm_sampler_default_params();
        p.logit_bias = all;
        p.n_logit_bias = TOY_N;
        slm_sampler *s = make(TOY_N, &p);
        if (!s) continue;
        CHECKF(slm_sampler_sample(s, l) == SLM_NO_TOKEN, "all banned, mode %d", mode);
        slm_sampler_free(s);
    }

    /* the grammar allows "yes", "y", "n", "no" (ids 0, 2, 3, 4); logit_bias bans exactly those */
    char err[256];
    slm_grammar *g = NULL;
    const char *src = "root ::= \"yes\" | \"no\"";
    if (slm_grammar_compile_vocab(src, strlen(src), TOY_N, toy_piece, toy_eog, NULL, &g, err, sizeof err) != 0) {
        CHECKF(0, "grammar compile: %s", err);
        return;
    }
    slm_logit_bias grammar_ok[] = {{0, -INFINITY}, {2, -INFINITY}, {3, -INFINITY}, {4, -INFINITY}};
    for (int mode = 0; mode < 3; mode++) {
        slm_sampler_params p = mode == 0 ? plain_params(0.0f) : mode == 1 ? plain_params(1.0f) : slm_sampler_default_params();
        p.logit_bias = grammar_ok;
        p.n_logit_bias = 4;
        slm_sampler *s = make(TOY_N, &p);
        if (!s) continue;
        slm_token free_pick = slm_sampler_sample(s, l); /* without the grammar: some unbanned token */
        CHECK(free_pick >= 0 && free_pick != 0 && free_pick != 2 && free_pick != 3 && free_pick != 4);
        slm_sampler_set_grammar(s, g);
        for (int i = 0; i < 20; i++) CHECKF(slm_sampler_sample(s, l) == SLM_NO_TOKEN, "grammar ∧ bias, mode %d", mode);
        slm_sampler_free(s);
    }
    slm_logit_bias all_but_n[] = {{0, -INFINITY}, {2, -INFINITY}, {3, -INFINITY}};
    slm_sampler_params p = plain_params(0.0f);
    p.logit_bias = all_but_n;
    p.n_logit_bias = 3;
    slm_sampler *s = make(TOY_N, &p);
    if (s) {
        slm_sampler_set_grammar(s, g);
        CHECK(slm_sampler_sample(s, l) == 4); /* "n": the only allowed, unbanned token */
        slm_sampler_free(s);
    }
    slm_grammar_free(g);

    /* slm_sampler_new (a model): every token banned is an error up front; all but one is fine */
    char path[2048];
    snprintf(path, sizeof path, "%s/smollm2-135m-vocab.gguf", test_models_dir());
    slm_model_params mp = {.vocab_only = true};
    slm_model *m = NULL;
    if (slm_model_load(path, &mp, &m, err, sizeof err) != 0) {
        fprintf(stderr, "sampler_new ban check: skipped (%s)\n", err);
        return;
    }
    int nv = slm_model_n_vocab(m);
    slm_logit_bias *bans = malloc((size_t)(nv + 1) * sizeof *bans);
    for (int t = 0; t < nv; t++) bans[t] = (slm_logit_bias){(slm_token)(nv - 1 - t), -INFINITY};
    bans[nv] = (slm_logit_bias){5, 2.0f}; /* a finite bias on top does not lift a ban */
    p = slm_sampler_default_params();
    p.logit_bias = bans;
    p.n_logit_bias = nv + 1;
    s = NULL;
    err[0] = 0;
    CHECK(slm_sampler_new(m, &p, &s, err, sizeof err) != 0 && !s);
    CHECKF(strstr(err, "no token is possible") != NULL, "err '%s'", err);
    bans[0].bias = -1000.0f; /* token nv-1 now only discouraged */
    CHECKF(slm_sampler_new(m, &p, &s, err, sizeof err) == 0 && s, "%s", err);
    if (s) {
        float *ll = calloc((size_t)nv, sizeof *ll);
        CHECK(slm_sampler_sample(s, ll) == nv - 1);
        free(ll);
        slm_sampler_free(s);
    }
    free(bans);
    slm_model_free(m);
}

int main(void) {
    test_banned();
    test_greedy();
    test_top_k();
    check_top_p(0);
    check_top_p(5);
    check_top_p_non_finite(0);
    check_top_p_non_finite(10);
    test_top_p_large();
    check_min_p(0);
    check_min_p(6);
    test_penalties();
    test_logit_bias();
    test_validation();
    test_determinism();
    test_distribution();
    test_non_finite();
    test_grammar();
    test_no_token();
    test_random_robustness();
    test_speed();
    return test_report("test_sample");
}
