/* Token sampler: penalties → logit bias → top-k → top-p → min-p → temperature → seeded draw, in
 * llama.cpp's order, with an optional grammar constraint. Greedy (temperature <= 0) is the argmax
 * after penalties and bias, lowest id on ties. Every buffer is sized for the vocabulary in
 * slm_sampler_new, so sampling never allocates. Top-k (and greedy) is one SIMD-filtered pass with a
 * bounded heap; top-p without top-k finds its cut with a mass-weighted quickselect: no path sorts
 * the whole vocabulary. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "sample/grammar.h"
#include "sample/sample.h"
#include "util/err.h"

#define DEFAULT_PENALTY_WINDOW 64
#define MAX_PENALTY_WINDOW (1 << 24)

typedef struct {
    float logit;
    float weight; /* unnormalised probability, relative to the candidates' max */
    int32_t id;
} candidate;

struct slm_sampler {
    slm_sampler_params params; /* logit_bias points at bias_copy */
    int n_vocab;
    slm_logit_bias *bias_copy;

    float *work;      /* n_vocab: logits after penalties / bias / grammar mask */
    candidate *cand;  /* n_vocab */

    /* Penalty history: counts per token over the window, the distinct tokens in it (so applying the
     * penalties costs O(distinct), not O(n_vocab)), and a ring of the window's tokens. */
    int32_t *counts;      /* n_vocab */
    int32_t *distinct;    /* n_vocab */
    int32_t *distinct_at; /* n_vocab: index in distinct, valid while counts > 0 */
    int n_distinct;
    slm_token *ring; /* window tokens; NULL when the window is the whole history */
    int window, ring_len, ring_head;

    /* Overlay of penalised / biased logits for the current sample. */
    int32_t *overlay_ids;  /* n_vocab */
    float *overlay_vals;   /* n_vocab */
    int32_t *overlay_at;   /* n_vocab: index in overlay_ids, valid where overlay_mark is set */
    uint8_t *overlay_mark; /* n_vocab */
    int n_overlay;
    const slm_token *banned; /* borrowed, see slm_sampler_set_banned */
    int n_banned;

    uint64_t rng[4];
    slm_grammar *grammar;
};

/* ---------- PRNG: xoshiro256**, seeded through splitmix64 ---------- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void rng_seed(uint64_t s[4], uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(uint64_t s[4]) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

/* ---------- parameters ---------- */

slm_sampler_params slm_sampler_default_params(void) {
    slm_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.8f;
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    p.penalty_last_n = DEFAULT_PENALTY_WINDOW;
    p.seed = 0x5eed;
    return p;
}

static int validate(const slm_sampler_params *p, int n_vocab, char *err, size_t err_len) {
    if (isnan(p->temperature)) return slm_err(err, err_len, "sampler: temperature is NaN");
    if (isnan(p->top_p)) return slm_err(err, err_len, "sampler: top_p is NaN");
    if (isnan(p->min_p)) return slm_err(err, err_len, "sampler: min_p is NaN");
    if (p->min_p > 1) return slm_err(err, err_len, "sampler: min_p %g is above 1", (double)p->min_p);
    if (!(p->repeat_penalty > 0) || isinf(p->repeat_penalty))
        return slm_err(err, err_len, "sampler: repeat_penalty must be a positive number (got %g)",
                       (double)p->repeat_penalty);
    if (!isfinite(p->frequency_penalty) || !isfinite(p->presence_penalty))
        return slm_err(err, err_len, "sampler: frequency and presence penalties must be finite");
    if (p->penalty_last_n < -1 || p->penalty_last_n > MAX_PENALTY_WINDOW)
        return slm_err(err, err_len, "sampler: penalty_last_n %d is outside [-1, %d]", p->penalty_last_n,
                       MAX_PENALTY_WINDOW);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return slm_err(err, err_len, "sampler: invalid logit bias list (%d entries)", p->n_logit_bias);
    for (int i = 0; i < p->n_logit_bias; i++) {
        const slm_logit_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab)
            return slm_err(err, err_len, "sampler: logit bias token %d is outside the vocabulary (0..%d)", b->token,
                           n_vocab - 1);
        if (isnan(b->bias) || b->bias == INFINITY)
            return slm_err(err, err_len, "sampler: logit bias for token %d must be finite or -inf", b->token);
    }
    return 0;
}

/* Up front what slm_sampler_sample would find at every step: logit_bias bans every token. */
static int check_not_all_banned(const slm_sampler_params *p, int n_vocab, char *err, size_t err_len) {
    if (p->n_logit_bias < n_vocab) return 0;
    uint8_t *banned = calloc((size_t)n_vocab, 1);
    if (!banned) return slm_err(err, err_len, "sampler: out of memory");
    int n_banned = 0;
    for (int i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias[i].bias == -INFINITY && !banned[p->logit_bias[i].token]) {
            banned[p->logit_bias[i].token] = 1;
            n_banned++;
        }
    free(banned);
    if (n_banned == n_vocab)
        return slm_err(err, err_len, "sampler: no token is possible: logit_bias bans all %d tokens", n_vocab);
    return 0;
}

int slm_sampler_new(const slm_model *model, const slm_sampler_params *params, slm_sampler **out, char *err,
                    size_t err_len) {
    if (out) *out = NULL;
    if (!model) return slm_err(err, err_len, "sampler: no model");
    int n_vocab = slm_model_n_vocab(model);
    slm_sampler_params p = params ? *params : slm_sampler_default_params();
    if (n_vocab > 0 && validate(&p, n_vocab, err, err_len) == 0 && check_not_all_banned(&p, n_vocab, err, err_len))
        return -1;
    return slm_sampler_new_for_vocab(n_vocab, params, out, err, err_len);
}

int slm_sampler_new_for_vocab(int n_vocab, const slm_sampler_params *params, slm_sampler **out, char *err,
                              size_t err_len) {
    if (!out) return slm_err(err, err_len, "sampler: no output pointer");
    *out = NULL;
    if (n_vocab <= 0) return slm_err(err, err_len, "sampler: empty vocabulary (%d tokens)", n_vocab);
    slm_sampler_params p = params ? *params : slm_sampler_default_params();
    if (validate(&p, n_vocab, err, err_len)) return -1;

    slm_sampler *s = calloc(1, sizeof *s);
    if (!s) return slm_err(err, err_len, "sampler: out of memory");
    s->n_vocab = n_vocab;
    s->window = p.penalty_last_n == 0 ? DEFAULT_PENALTY_WINDOW : p.penalty_last_n;
    size_t v = (size_t)n_vocab;
    s->work = malloc(v * sizeof *s->work);
    s->cand = malloc(v * sizeof *s->cand);
    s->counts = calloc(v, sizeof *s->counts);
    s->distinct = malloc(v * sizeof *s->distinct);
    s->distinct_at = malloc(v * sizeof *s->distinct_at);
    s->overlay_ids = malloc(v * sizeof *s->overlay_ids);
    s->overlay_vals = malloc(v * sizeof *s->overlay_vals);
    s->overlay_at = malloc(v * sizeof *s->overlay_at);
    s->overlay_mark = calloc(v, 1);
    if (s->window > 0) s->ring = malloc((size_t)s->window * sizeof *s->ring);
    if (p.n_logit_bias > 0) {
        s->bias_copy = malloc((size_t)p.n_logit_bias * sizeof *s->bias_copy);
        if (s->bias_copy) memcpy(s->bias_copy, p.logit_bias, (size_t)p.n_logit_bias * sizeof *s->bias_copy);
    }
    if (!s->work || !s->cand || !s->counts || !s->distinct || !s->distinct_at || !s->overlay_ids ||
        !s->overlay_vals || !s->overlay_at || !s->overlay_mark || (s->window > 0 && !s->ring) ||
        (p.n_logit_bias > 0 && !s->bias_copy)) {
        slm_sampler_free(s);
        return slm_err(err, err_len, "sampler: out of memory for a %d-token vocabulary", n_vocab);
    }
    p.logit_bias = s->bias_copy;
    s->params = p;
    rng_seed(s->rng, p.seed);
    *out = s;
    return 0;
}

void slm_sampler_free(slm_sampler *s) {
    if (!s) return;
    free(s->work);
    free(s->cand);
    free(s->counts);
    free(s->distinct);
    free(s->distinct_at);
    free(s->overlay_ids);
    free(s->overlay_vals);
    free(s->overlay_at);
    free(s->overlay_mark);
    free(s->ring);
    free(s->bias_copy);
    free(s);
}

/* ---------- penalty history ---------- */

static void count_add(slm_sampler *s, slm_token t) {
    if (s->counts[t]++ == 0) {
        s->distinct_at[t] = s->n_distinct;
        s->distinct[s->n_distinct++] = t;
    }
}

static void count_remove(slm_sampler *s, slm_token t) {
    if (--s->counts[t] == 0) {
        int at = s->distinct_at[t];
        slm_token last = s->distinct[--s->n_distinct];
        s->distinct[at] = last;
        s->distinct_at[last] = at;
    }
}

void slm_sampler_accept_prompt(slm_sampler *s, slm_token token) {
    if (!s || token < 0 || token >= s->n_vocab) return;
    if (!s->ring) { /* whole history */
        count_add(s, token);
        return;
    }
    if (s->ring_len == s->window) {
        count_remove(s, s->ring[s->ring_head]);
        s->ring[s->ring_head] = token;
        s->ring_head = (s->ring_head + 1) % s->window;
    } else {
        s->ring[(s->ring_head + s->ring_len) % s->window] = token;
        s->ring_len++;
    }
    count_add(s, token);
}

void slm_sampler_accept(slm_sampler *s, slm_token token) {
    if (!s || token < 0 || token >= s->n_vocab) return;
    slm_sampler_accept_prompt(s, token);
    /* The grammar's precondition is an allowed token; a caller-forced one (e.g. EOG) is not fed to it. */
    if (s->grammar && slm_grammar_allows(s->grammar, token)) slm_grammar_accept(s->grammar, token);
}

void slm_sampler_reset(slm_sampler *s) {
    if (!s) return;
    for (int i = 0; i < s->n_distinct; i++) s->counts[s->distinct[i]] = 0;
    s->n_distinct = 0;
    s->ring_len = s->ring_head = 0;
    rng_seed(s->rng, s->params.seed);
    if (s->grammar) slm_grammar_reset(s->grammar);
}

void slm_sampler_set_banned(slm_sampler *s, const slm_token *ids, int n) {
    if (!s) return;
    int kept = 0;
    for (int i = 0; ids && i < n; i++) kept += ids[i] >= 0 && ids[i] < s->n_vocab;
    /* out-of-vocabulary ids cannot be sampled anyway; keeping the list whole keeps it borrowed */
    s->banned = kept == n ? ids : NULL;
    s->n_banned = kept == n && ids ? n : 0;
}

void slm_sampler_set_grammar(slm_sampler *s, slm_grammar *g) {
    if (!s) return;
    s->grammar = g;
    if (g) slm_grammar_reset(g);
}

bool slm_sampler_grammar_done(const slm_sampler *s) { return s && s->grammar && slm_grammar_is_finished(s->grammar); }

/* ---------- the pipeline ---------- */

/* Penalties and logit bias touch few tokens, so they are kept as an overlay (token → adjusted
 * logit) instead of a modified copy of the whole vocabulary; the top-k / greedy scan reads the
 * caller's logits, skips overlaid tokens and then offers the overlay's values. */
static bool penalties_active(const slm_sampler *s) {
    const slm_sampler_params *p = &s->params;
    return s->n_distinct > 0 &&
           (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
}

static void overlay_clear(slm_sampler *s) {
    for (int i = 0; i < s->n_overlay; i++) s->overlay_mark[s->overlay_ids[i]] = 0;
    s->n_overlay = 0;
}

static void overlay_build(slm_sampler *s, const float *logits) {
    const slm_sampler_params *p = &s->params;
    overlay_clear(s);
    if (penalties_active(s)) {
        for (int i = 0; i < s->n_distinct; i++) {
            slm_token t = s->distinct[i];
            float l = logits[t];
            /* llama.cpp: shrink positive logits, push negative ones further down. */
            l = l <= 0 ? l * p->repeat_penalty : l / p->repeat_penalty;
            l -= (float)s->counts[t] * p->frequency_penalty + p->presence_penalty;
            s->overlay_at[t] = s->n_overlay;
            s->overlay_mark[t] = 1;
            s->overlay_ids[s->n_overlay] = t;
            s->overlay_vals[s->n_overlay++] = l;
        }
    }
    for (int i = 0; i < p->n_logit_bias; i++) {
        slm_token t = p->logit_bias[i].token;
        if (!s->overlay_mark[t]) {
            s->overlay_at[t] = s->n_overlay;
            s->overlay_mark[t] = 1;
            s->overlay_ids[s->n_overlay] = t;
            s->overlay_vals[s->n_overlay++] = logits[t];
        }
        s->overlay_vals[s->overlay_at[t]] += p->logit_bias[i].bias;
    }
    for (int i = 0; i < s->n_banned; i++) {
        slm_token t = s->banned[i];
        if (!s->overlay_mark[t]) {
            s->overlay_at[t] = s->n_overlay;
            s->overlay_mark[t] = 1;
            s->overlay_ids[s->n_overlay++] = t;
        }
        s->overlay_vals[s->overlay_at[t]] = -INFINITY;
    }
}

/* The whole vocabulary with the overlay applied, in s->work. */
static const float *overlay_materialize(slm_sampler *s, const float *logits) {
    if (s->n_overlay == 0) return logits;
    memcpy(s->work, logits, (size_t)s->n_vocab * sizeof *s->work);
    for (int i = 0; i < s->n_overlay; i++) s->work[s->overlay_ids[i]] = s->overlay_vals[i];
    return s->work;
}

/* Candidate order: higher logit first, then lower id. */
static inline bool better(const candidate *a, const candidate *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

/* +inf would turn softmax into inf - inf; it ranks above FLT_MAX but weighs the same. */
static inline float clamp_inf(float l) { return l > FLT_MAX ? FLT_MAX : l; }

/* Min-heap of the k best seen so far (worst at the root). */
static void heap_sift_down(candidate *h, int n, int i) {
    for (;;) {
        int worst = i, l = 2 * i + 1, r = l + 1;
        if (l < n && better(&h[worst], &h[l])) worst = l;
        if (r < n && better(&h[worst], &h[r])) worst = r;
        if (worst == i) return;
        candidate tmp = h[i];
        h[i] = h[worst];
        h[worst] = tmp;
        i = worst;
    }
}

/* In-place heapsort to best-first order (qsort may allocate for large k). */
static void sort_best_first(candidate *h, int n) {
    for (int i = n / 2 - 1; i >= 0; i--) heap_sift_down(h, n, i);
    for (int end = n - 1; end > 0; end--) { /* the worst goes to the back */
        candidate tmp = h[0];
        h[0] = h[end];
        h[end] = tmp;
        heap_sift_down(h, end, 0);
    }
}

/* Offers token t (raw logit x) to a full heap; ids arrive in increasing order, so an equal logit
 * never displaces the root and ties keep the lowest ids. */
static inline void heap_offer_scanned(slm_sampler *s, candidate *h, int k, const float *l, int t) {
    float x = l[t];
    if (x > h[0].logit && !s->overlay_mark[t]) {
        h[0] = (candidate){x, 0, t};
        heap_sift_down(h, k, 0);
    }
}

/* The k best logits of (l + overlay), sorted best first; NaN and -inf never qualify. Returns how
 * many (fewer than k when fewer are usable). Raw values are kept, so +inf beats FLT_MAX. */
static int select_top_k(slm_sampler *s, const float *l, int k, candidate *h) {
    int n_vocab = s->n_vocab, n = 0, t = 0;
    for (; t < n_vocab && n < k; t++)
        if (l[t] > -INFINITY && !s->overlay_mark[t]) h[n++] = (candidate){l[t], 0, t};
    if (n == k) {
        for (int i = k / 2 - 1; i >= 0; i--) heap_sift_down(h, k, i);
#ifdef __SSE2__
        /* 16 logits per step against the root; NaN compares false, so it is skipped for free. */
        __m128 root = _mm_set1_ps(h[0].logit);
        for (; t + 16 <= n_vocab; t += 16) {
            __m128 a = _mm_cmpgt_ps(_mm_loadu_ps(l + t), root);
            __m128 b = _mm_cmpgt_ps(_mm_loadu_ps(l + t + 4), root);
            __m128 c = _mm_cmpgt_ps(_mm_loadu_ps(l + t + 8), root);
            __m128 d = _mm_cmpgt_ps(_mm_loadu_ps(l + t + 12), root);
            if (_mm_movemask_ps(_mm_or_ps(_mm_or_ps(a, b), _mm_or_ps(c, d)))) {
                for (int j = 0; j < 16; j++) heap_offer_scanned(s, h, k, l, t + j);
                root = _mm_set1_ps(h[0].logit);
            }
        }
#endif
        for (; t < n_vocab; t++) heap_offer_scanned(s, h, k, l, t);
    }
    for (int i = 0; i < s->n_overlay; i++) {
        candidate c = {s->overlay_vals[i], 0, s->overlay_ids[i]};
        if (!(c.logit > -INFINITY)) continue;
        if (n < k) {
            h[n++] = c;
            if (n == k)
                for (int j = k / 2 - 1; j >= 0; j--) heap_sift_down(h, k, j);
        } else if (better(&c, &h[0])) {
            h[0] = c;
            heap_sift_down(h, k, 0);
        }
    }
    sort_best_first(h, n);
    return n;
}

#ifdef __SSE2__
/* exp for 4 floats (Cephes-style range reduction + degree-6 polynomial, within ~2 ulp of expf);
 * NaN, -inf and anything below -87.3 give exactly 0, as the softmax wants. */
static inline __m128 exp4(__m128 x) {
    const __m128 lo = _mm_set1_ps(-87.3f), hi = _mm_set1_ps(88.3f);
    __m128 keep = _mm_cmpge_ps(x, lo); /* false for NaN too */
    x = _mm_min_ps(_mm_max_ps(x, lo), hi);
    __m128 fx = _mm_add_ps(_mm_mul_ps(x, _mm_set1_ps(1.44269504088896341f)), _mm_set1_ps(0.5f));
    __m128i n = _mm_cvttps_epi32(fx);
    __m128 nf = _mm_cvtepi32_ps(n);
    __m128 fix = _mm_and_ps(_mm_cmpgt_ps(nf, fx), _mm_set1_ps(1.0f)); /* truncation → floor */
    nf = _mm_sub_ps(nf, fix);
    n = _mm_cvttps_epi32(nf);
    x = _mm_sub_ps(x, _mm_mul_ps(nf, _mm_set1_ps(0.693359375f)));
    x = _mm_sub_ps(x, _mm_mul_ps(nf, _mm_set1_ps(-2.12194440e-4f)));
    __m128 y = _mm_set1_ps(1.9875691500e-4f);
    y = _mm_add_ps(_mm_mul_ps(y, x), _mm_set1_ps(1.3981999507e-3f));
    y = _mm_add_ps(_mm_mul_ps(y, x), _mm_set1_ps(8.3334519073e-3f));
    y = _mm_add_ps(_mm_mul_ps(y, x), _mm_set1_ps(4.1665795894e-2f));
    y = _mm_add_ps(_mm_mul_ps(y, x), _mm_set1_ps(1.6666665459e-1f));
    y = _mm_add_ps(_mm_mul_ps(y, x), _mm_set1_ps(5.0000001201e-1f));
    y = _mm_add_ps(_mm_mul_ps(_mm_mul_ps(y, x), x), _mm_add_ps(x, _mm_set1_ps(1.0f)));
    __m128i e = _mm_slli_epi32(_mm_add_epi32(n, _mm_set1_epi32(127)), 23);
    return _mm_and_ps(_mm_mul_ps(y, _mm_castsi128_ps(e)), keep);
}
#endif

/* c[i].weight = exp((c[i].logit - max) / temp) for all i; returns their sum. */
static double set_weights(candidate *c, int n, float max, float temp) {
    double sum = 0;
    int i = 0;
#ifdef __SSE2__
    __m128 vmax = _mm_set1_ps(max), vt = _mm_set1_ps(temp);
    float w[4];
    for (; i + 4 <= n; i += 4) {
        __m128 x = _mm_set_ps(c[i + 3].logit, c[i + 2].logit, c[i + 1].logit, c[i].logit);
        _mm_storeu_ps(w, exp4(_mm_div_ps(_mm_sub_ps(x, vmax), vt)));
        for (int j = 0; j < 4; j++) sum += (c[i + j].weight = w[j]);
    }
#endif
    for (; i < n; i++) sum += (c[i].weight = expf((c[i].logit - max) / temp));
    return sum;
}

/* Largest value of l[0..n) ignoring NaN (-inf if none). */
static float max_logit(const float *l, int n) {
    int t = 0;
    float m = -INFINITY;
#ifdef __SSE2__
    /* maxps returns its second operand when the first is NaN, so NaN never enters the maximum. */
    __m128 m0 = _mm_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    for (; t + 16 <= n; t += 16) {
        m0 = _mm_max_ps(_mm_loadu_ps(l + t), m0);
        m1 = _mm_max_ps(_mm_loadu_ps(l + t + 4), m1);
        m2 = _mm_max_ps(_mm_loadu_ps(l + t + 8), m2);
        m3 = _mm_max_ps(_mm_loadu_ps(l + t + 12), m3);
    }
    float lanes[4];
    _mm_storeu_ps(lanes, _mm_max_ps(_mm_max_ps(m0, m1), _mm_max_ps(m2, m3)));
    for (int i = 0; i < 4; i++)
        if (lanes[i] > m) m = lanes[i];
#endif
    for (; t < n; t++)
        if (l[t] > m) m = l[t];
    return m;
}

/* Reorders c[0..n) so that c[0..k) is the shortest best-first prefix whose weight reaches `target`,
 * and returns k; expected O(n). Requires sum of weights >= target > 0. */
static int select_top_mass(candidate *c, int n, double target) {
    int lo = 0, hi = n;
    double acc = 0; /* weight of c[0..lo), all of which is kept */
    while (hi - lo > 1) {
        /* Median-of-three pivot moved to c[hi-1]. */
        int mid = lo + (hi - lo) / 2;
        candidate *a = &c[lo], *b = &c[mid], *z = &c[hi - 1];
        candidate *pv = better(a, b) ? (better(b, z) ? b : (better(a, z) ? z : a))
                                     : (better(a, z) ? a : (better(b, z) ? z : b));
        candidate tmp = *pv;
        *pv = c[hi - 1];
        c[hi - 1] = tmp;
        const candidate pivot = c[hi - 1];
        int m = lo;
        double upper = 0;
        for (int i = lo; i < hi - 1; i++) {
            if (better(&c[i], &pivot)) {
                upper += c[i].weight;
                candidate t = c[i];
                c[i] = c[m];
                c[m] = t;
                m++;
            }
        }
        c[hi - 1] = c[m];
        c[m] = pivot;
        if (acc + upper >= target) {
            if (m == lo) return lo > 0 ? lo : 1; /* only reachable through rounding */
            hi = m;
        } else if (acc + upper + pivot.weight >= target) {
            return m + 1;
        } else {
            acc += upper + pivot.weight;
            lo = m + 1;
        }
    }
    return hi > lo ? hi : (lo > 0 ? lo : 1);
}

/* top-k, top-p and min-p over (l + overlay): leaves the survivors in s->cand[0..n) with clamped
 * logits and returns n, their best logit in *max_out. */
static int filter_candidates(slm_sampler *s, const float *l, float *max_out) {
    const slm_sampler_params *p = &s->params;
    int n_vocab = s->n_vocab;
    candidate *c = s->cand;
    bool top_p_on = p->top_p < 1.0f;
    bool min_p_on = p->min_p > 0.0f;
    int n;
    float max;

    if (p->top_k > 0 && p->top_k < n_vocab) {
        n = select_top_k(s, l, p->top_k, c);
        if (n == 0) return 0;
        for (int i = 0; i < n; i++) c[i].logit = clamp_inf(c[i].logit);
        max = c[0].logit;
        if (top_p_on) {
            double sum = set_weights(c, n, max, 1.0f);
            double target = (double)p->top_p * sum, cum = 0;
            for (int i = 0; i < n; i++) {
                cum += c[i].weight;
                if (cum >= target) {
                    n = i + 1;
                    break;
                }
            }
        }
        if (min_p_on) {
            float threshold = max + logf(p->min_p);
            int kept = 1;
            while (kept < n && c[kept].logit >= threshold) kept++; /* sorted: a prefix survives */
            n = kept;
        }
    } else {
        l = overlay_materialize(s, l);
        max = clamp_inf(max_logit(l, n_vocab));
        if (max == -INFINITY) return 0;
        /* min-p keeps a best-first prefix and so does top-p, so applying the logit threshold while
         * collecting gives the same set as applying it after top-p; top-p still normalises over all. */
        float threshold = min_p_on ? max + logf(p->min_p) : -INFINITY;
        double sum = 0;
        n = 0;
        int t = 0;
#ifdef __SSE2__
        if (top_p_on) {
            __m128 vmax = _mm_set1_ps(max), vcap = _mm_set1_ps(FLT_MAX);
            float w[4];
            for (; t + 4 <= n_vocab; t += 4) {
                /* minps returns its second operand unless the first is smaller: +inf becomes
                 * FLT_MAX while NaN stays NaN, and exp4 gives NaN a weight of 0. */
                __m128 x = _mm_min_ps(vcap, _mm_loadu_ps(l + t));
                _mm_storeu_ps(w, exp4(_mm_sub_ps(x, vmax)));
                for (int j = 0; j < 4; j++) {
                    float xj = clamp_inf(l[t + j]);
                    sum += w[j];
                    if (xj > -INFINITY && xj >= threshold) c[n++] = (candidate){xj, w[j], t + j};
                }
            }
        }
#endif
        for (; t < n_vocab; t++) {
            float x = clamp_inf(l[t]);
            if (!(x > -INFINITY)) continue;
            float w = top_p_on ? expf(x - max) : 0.0f;
            sum += w;
            if (x >= threshold) c[n++] = (candidate){x, w, t};
        }
        if (top_p_on) {
            double target = (double)p->top_p * sum, kept_mass = 0;
            for (int i = 0; i < n; i++) kept_mass += c[i].weight;
            if (kept_mass >= target && target > 0) n = select_top_mass(c, n, target);
        }
    }
    *max_out = max;
    return n;
}

static slm_token sample_stochastic(slm_sampler *s, const float *l) {
    candidate *c = s->cand;
    float max = 0;
    int n = filter_candidates(s, l, &max);
    if (n == 0) return SLM_NO_TOKEN;
    /* Temperature, softmax over the survivors, draw. Divide (not multiply by 1/T): a denormal T
     * would turn 0 * inf into NaN for the best token. */
    double sum = set_weights(c, n, max, s->params.temperature);
    if (!(sum > 0)) return c[0].id; /* only reachable through extreme temperatures: keep the best */
    double u = rng_uniform(s->rng) * sum, cum = 0;
    for (int i = 0; i < n; i++) {
        cum += c[i].weight;
        if (u < cum) return c[i].id;
    }
    return c[n - 1].id;
}

/* Greedy: the best of top-1, so penalties, bias and the lowest-id tie rule come for free. */
static slm_token pick(slm_sampler *s, const float *l) {
    if (s->params.temperature > 0) return sample_stochastic(s, l);
    return select_top_k(s, l, 1, s->cand) == 1 ? s->cand[0].id : SLM_NO_TOKEN;
}

slm_token slm_sampler_sample(slm_sampler *s, const float *logits) {
    if (!s || !logits) return SLM_NO_TOKEN;
    overlay_build(s, logits);
    slm_token tok = pick(s, logits);
    if (s->grammar && (tok < 0 || !slm_grammar_allows(s->grammar, tok))) {
        /* Rejected: mask everything the grammar forbids on a full copy and choose again. */
        const float *adjusted = overlay_materialize(s, logits);
        if (adjusted != s->work) memcpy(s->work, logits, (size_t)s->n_vocab * sizeof *s->work);
        overlay_clear(s);
        slm_grammar_mask(s->grammar, s->work, s->n_vocab);
        tok = pick(s, s->work);
    }
    overlay_clear(s);
    return tok;
}

const float *slm_sampler_adjusted_logits(slm_sampler *s, const float *logits) {
    overlay_build(s, logits);
    const float *l = overlay_materialize(s, logits);
    overlay_clear(s);
    return l;
}

int slm_sampler_candidates(slm_sampler *s, const float *logits, slm_token *ids, int cap) {
    float max = 0;
    overlay_build(s, logits);
    int n = filter_candidates(s, logits, &max);
    overlay_clear(s);
    for (int i = 0; i < n && i < cap; i++) ids[i] = s->cand[i].id;
    return n;
}
