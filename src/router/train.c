/* Training: logistic regression with AdaGrad and L2 over the features of features.c.
 * The features of every example are extracted once (sparse rows: bucket, value), then the model is
 * fitted several times: 5 times on 4/5 of the rows to get out-of-fold scores for the stored score
 * quantiles (in-sample scores are over-confident and would mis-set the threshold for a share), and
 * once on everything for the weights. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/router_impl.h"
#include "util/buf.h"
#include "util/err.h"

#define CALIBRATION_FOLDS 5

void slm_router_train_defaults(slm_router_train_opts *o, int kind) {
    *o = (slm_router_train_opts){0};
    o->kind = kind;
    if (kind == SLM_ROUTER_CASCADE) {
        o->features = SLM_RF_DENSE | SLM_RF_ANSWER;
        o->hash_bits = 10; /* no hashed group by default: the smallest table */
        o->l2 = 1e-3;
        o->label = SLM_RL_NEEDS_FRONTIER;
        o->hashed_scale = 1.0;
    } else {
        /* chosen by leave-subjects-out cross-validation on MMLU (scripts/router_cv.py mmlu): form
         * features (dense, shapes, chars) and the P(local wrong) label transfer best to subjects
         * the router has not seen; topic words do worse than these */
        o->features = SLM_RF_DENSE | SLM_RF_SHAPES | SLM_RF_CHARS;
        o->hash_bits = 18;
        o->l2 = 1e-3;
        o->label = SLM_RL_LOCAL_WRONG;
        o->hashed_scale = 0.5;
    }
    o->epochs = 8;
    o->lr = 0.05;
    o->balance_sources = true;
    o->seed = 1;
}

bool slm_router_parse_features(const char *list, unsigned *bits) {
    static const struct { const char *name; unsigned bit; } names[] = {
        {"words", SLM_RF_WORDS},   {"chars", SLM_RF_CHARS},   {"shapes", SLM_RF_SHAPES},
        {"dense", SLM_RF_DENSE},   {"answer", SLM_RF_ANSWER}, {"answer-words", SLM_RF_ANSWER_WORDS},
    };
    unsigned out = 0;
    const char *p = list;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        bool found = false;
        for (size_t i = 0; i < sizeof names / sizeof *names; i++)
            if (strlen(names[i].name) == len && memcmp(names[i].name, p, len) == 0) out |= names[i].bit, found = true;
        if (!found) return false;
        p += len;
        if (*p == ',') p++;
    }
    if (!out) return false;
    *bits = out;
    return true;
}

/* ---- the extracted training set ---- */

typedef struct train_set {
    size_t n;
    int nd;
    size_t *off;      /* n + 1 */
    uint32_t *bucket; /* sparse hashed features, sorted and merged per row */
    float *value;
    size_t nnz, cap;
    float *dense;     /* n * nd, standardised */
    float *y, *weight;
} train_set;

typedef struct collect_sink {
    rt_sink base;
    uint32_t *b;
    float *sign;
    size_t n, cap, group_start;
    float scale;
    bool oom;
} collect_sink;

static void collect_emit(rt_sink *s, uint32_t bucket, float sign) {
    collect_sink *c = (collect_sink *)s;
    if (c->oom) return;
    if (c->n == c->cap) {
        size_t cap_b = c->cap, cap_s = c->cap;
        if (!slm_grow((void **)&c->b, &cap_b, c->n + 1, sizeof *c->b, 1024) ||
            !slm_grow((void **)&c->sign, &cap_s, c->n + 1, sizeof *c->sign, 1024)) {
            c->oom = true;
            return;
        }
        c->cap = cap_b < cap_s ? cap_b : cap_s;
    }
    c->b[c->n] = bucket;
    c->sign[c->n++] = sign;
}
static void collect_end_group(rt_sink *s) {
    collect_sink *c = (collect_sink *)s;
    if (c->oom) return;
    size_t k = c->n - c->group_start;
    for (size_t i = c->group_start; i < c->n; i++) c->sign[i] *= c->scale / (float)sqrt((double)k);
    c->group_start = c->n;
}

static int cmp_pair(const void *a, const void *b) {
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void train_set_free(train_set *t) {
    free(t->off);
    free(t->bucket);
    free(t->value);
    free(t->dense);
    free(t->y);
    free(t->weight);
    *t = (train_set){0};
}

static int build_set(const slm_router_data *d, const slm_router_train_opts *o, train_set *t, float *mean, float *std,
                     char *err, size_t err_len) {
    *t = (train_set){.n = d->n, .nd = rt_dense_count(o->features)};
    t->off = calloc(d->n + 1, sizeof *t->off);
    t->dense = calloc(d->n * (size_t)(t->nd ? t->nd : 1), sizeof *t->dense);
    t->y = calloc(d->n, sizeof *t->y);
    t->weight = calloc(d->n, sizeof *t->weight);
    double *raw = calloc(d->n * (size_t)(t->nd ? t->nd : 1), sizeof *raw);
    uint64_t *pairs = NULL;
    size_t pairs_cap = 0;
    collect_sink c = {{collect_emit, collect_end_group}, NULL, NULL, 0, 0, 0, (float)o->hashed_scale, false};
    if (!t->off || !t->dense || !t->y || !t->weight || !raw) goto oom;
    size_t *per_source = calloc((size_t)(d->sources > 0 ? d->sources : 1), sizeof *per_source);
    if (!per_source) goto oom;
    for (size_t i = 0; i < d->n; i++)
        if (d->ex[i].source >= 0 && d->ex[i].source < d->sources) per_source[d->ex[i].source]++;
    int used_sources = 0;
    for (int s = 0; s < d->sources; s++) used_sources += per_source[s] > 0;
    for (size_t i = 0; i < d->n; i++) {
        const slm_router_example *e = &d->ex[i];
        t->y[i] = o->label == SLM_RL_LOCAL_WRONG ? !e->local_ok : (!e->local_ok && e->frontier_ok);
        t->weight[i] = 1.0f;
        if (o->balance_sources && used_sources > 1 && e->source >= 0 && e->source < d->sources)
            t->weight[i] = (float)((double)d->n / ((double)used_sources * (double)per_source[e->source]));
        c.n = c.group_start = 0;
        rt_hashed_features(o->features, o->hash_bits, e->prompt, e->local_answer, &c.base);
        if (c.oom || !slm_grow((void **)&pairs, &pairs_cap, c.n + 1, sizeof *pairs, 1024)) {
            free(per_source);
            goto oom;
        }
        /* sort by bucket, merge repeats: one AdaGrad step per weight per example */
        for (size_t k = 0; k < c.n; k++) pairs[k] = (uint64_t)c.b[k] << 32 | k;
        qsort(pairs, c.n, sizeof *pairs, cmp_pair);
        if (!slm_grow((void **)&t->bucket, &t->cap, t->nnz + c.n + 1, sizeof *t->bucket, 4096)) {
            free(per_source);
            goto oom;
        }
        size_t cap_v = t->cap;
        float *nv = realloc(t->value, cap_v * sizeof *t->value);
        if (!nv) {
            free(per_source);
            goto oom;
        }
        t->value = nv;
        for (size_t k = 0; k < c.n; k++) {
            uint32_t b = (uint32_t)(pairs[k] >> 32);
            float v = c.sign[pairs[k] & 0xffffffffu];
            if (t->nnz > t->off[i] && t->bucket[t->nnz - 1] == b) t->value[t->nnz - 1] += v;
            else t->bucket[t->nnz] = b, t->value[t->nnz++] = v;
        }
        t->off[i + 1] = t->nnz;
        rt_dense_features(o->features, e->prompt, e->local_answer, raw + i * (size_t)t->nd);
    }
    free(per_source);
    for (int j = 0; j < t->nd; j++) {
        double s = 0, s2 = 0;
        for (size_t i = 0; i < d->n; i++) s += raw[i * (size_t)t->nd + (size_t)j];
        double m = s / (double)d->n;
        for (size_t i = 0; i < d->n; i++) {
            double x = raw[i * (size_t)t->nd + (size_t)j] - m;
            s2 += x * x;
        }
        double sd = sqrt(s2 / (double)d->n);
        mean[j] = (float)m;
        std[j] = sd > 1e-6 ? (float)sd : 1.0f; /* a constant feature: any positive scale */
        for (size_t i = 0; i < d->n; i++)
            t->dense[i * (size_t)t->nd + (size_t)j] = (float)rt_standardize(raw[i * (size_t)t->nd + (size_t)j], mean[j], std[j]);
    }
    free(raw);
    free(pairs);
    free(c.b);
    free(c.sign);
    return 0;
oom:
    free(raw);
    free(pairs);
    free(c.b);
    free(c.sign);
    train_set_free(t);
    return slm_err(err, err_len, "out of memory extracting router features");
}

static uint64_t rng_next(uint64_t *s) {
    *s += 0x9E3779B97F4A7C15ull;
    return rt_mix64(*s);
}

typedef struct weights {
    float *w_hash, *g_hash;
    float w_dense[RT_MAX_DENSE], g_dense[RT_MAX_DENSE];
    float bias, g_bias;
} weights;

static double row_z(const train_set *t, const weights *w, size_t i) {
    double z = w->bias;
    for (size_t k = t->off[i]; k < t->off[i + 1]; k++) z += w->w_hash[t->bucket[k]] * t->value[k];
    const float *x = t->dense + i * (size_t)t->nd;
    for (int j = 0; j < t->nd; j++) z += w->w_dense[j] * x[j];
    return z;
}

/* AdaGrad on the rows listed in rows[0..nrows); L2 on the weights an example touches. */
static void fit(const train_set *t, size_t *rows, size_t nrows, const slm_router_train_opts *o, weights *w, size_t nh,
                uint64_t seed) {
    memset(w->w_hash, 0, nh * sizeof *w->w_hash);
    memset(w->g_hash, 0, nh * sizeof *w->g_hash);
    memset(w->w_dense, 0, sizeof w->w_dense);
    memset(w->g_dense, 0, sizeof w->g_dense);
    /* start the bias at the base rate's log-odds */
    double pos = 0, tot = 0;
    for (size_t r = 0; r < nrows; r++) pos += t->y[rows[r]] * t->weight[rows[r]], tot += t->weight[rows[r]];
    double base = tot > 0 ? (pos + 0.5) / (tot + 1) : 0.5;
    w->bias = (float)log(base / (1 - base));
    w->g_bias = 0;
    const float eps = 1e-6f, lr = (float)o->lr;
    const float l2 = (float)o->l2;
    uint64_t rng = seed;
    for (int epoch = 0; epoch < o->epochs; epoch++) {
        for (size_t r = nrows; r > 1; r--) { /* Fisher-Yates shuffle */
            size_t k = (size_t)(rng_next(&rng) % r);
            size_t tmp = rows[r - 1];
            rows[r - 1] = rows[k];
            rows[k] = tmp;
        }
        for (size_t r = 0; r < nrows; r++) {
            size_t i = rows[r];
            double z = row_z(t, w, i);
            double p = 1.0 / (1.0 + exp(-z));
            float g = (float)((p - t->y[i]) * t->weight[i]);
            for (size_t k = t->off[i]; k < t->off[i + 1]; k++) {
                uint32_t b = t->bucket[k];
                float grad = g * t->value[k] + l2 * w->w_hash[b];
                w->g_hash[b] += grad * grad;
                w->w_hash[b] -= lr * grad / sqrtf(w->g_hash[b] + eps);
            }
            const float *x = t->dense + i * (size_t)t->nd;
            for (int j = 0; j < t->nd; j++) {
                float grad = g * x[j] + l2 * w->w_dense[j];
                w->g_dense[j] += grad * grad;
                w->w_dense[j] -= lr * grad / sqrtf(w->g_dense[j] + eps);
            }
            w->g_bias += g * g;
            w->bias -= lr * g / sqrtf(w->g_bias + eps);
        }
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

slm_router *slm_router_train(const slm_router_data *d, const slm_router_train_opts *o, char *err, size_t err_len) {
    if (o->kind != SLM_ROUTER_PROMPT && o->kind != SLM_ROUTER_CASCADE) {
        slm_err(err, err_len, "unknown router kind %d", o->kind);
        return NULL;
    }
    if (!o->features || (o->features & ~RT_ALL_FEATURES) ||
        (o->kind == SLM_ROUTER_PROMPT && (o->features & (SLM_RF_ANSWER | SLM_RF_ANSWER_WORDS)))) {
        slm_err(err, err_len, "the answer features need a cascade router (--kind cascade)");
        return NULL;
    }
    if (o->hash_bits < RT_MIN_HASH_BITS || o->hash_bits > RT_MAX_HASH_BITS || o->epochs < 1 || o->epochs > 1000 ||
        !(o->lr > 0) || !(o->l2 >= 0) || !(o->hashed_scale > 0) || !isfinite(o->lr) || !isfinite(o->l2) ||
        !isfinite(o->hashed_scale)) {
        slm_err(err, err_len, "invalid training options");
        return NULL;
    }
    if (d->n < 2 * CALIBRATION_FOLDS) {
        slm_err(err, err_len, "%zu labelled prompts; at least %d are needed", d->n, 2 * CALIBRATION_FOLDS);
        return NULL;
    }
    if (o->kind == SLM_ROUTER_CASCADE)
        for (size_t i = 0; i < d->n; i++)
            if (!d->ex[i].local_answer) {
                slm_err(err, err_len, "a cascade router needs the local model's answers (a <local>_response column)");
                return NULL;
            }
    slm_router *r = calloc(1, sizeof *r);
    size_t nh = (size_t)1 << o->hash_bits;
    weights w = {0};
    train_set t = {0};
    size_t *rows = malloc(d->n * sizeof *rows);
    double *oof = malloc(d->n * sizeof *oof);
    w.w_hash = malloc(nh * sizeof *w.w_hash);
    w.g_hash = malloc(nh * sizeof *w.g_hash);
    if (!r || !rows || !oof || !w.w_hash || !w.g_hash) {
        slm_err(err, err_len, "out of memory training a router");
        goto fail;
    }
    r->kind = o->kind;
    r->features = o->features;
    r->hash_bits = o->hash_bits;
    r->n_dense = rt_dense_count(o->features);
    r->hashed_scale = (float)o->hashed_scale; /* training folds it into the values (collect_end_group) */
    if (build_set(d, o, &t, r->dense_mean, r->dense_std, err, err_len)) goto fail;
    /* out-of-fold scores for the quantiles: folds by a seeded permutation */
    uint64_t rng = o->seed * 0x2545F4914F6CDD1Dull + 7;
    size_t *perm = malloc(d->n * sizeof *perm);
    if (!perm) {
        slm_err(err, err_len, "out of memory training a router");
        goto fail;
    }
    for (size_t i = 0; i < d->n; i++) perm[i] = i;
    for (size_t i = d->n; i > 1; i--) {
        size_t k = (size_t)(rng_next(&rng) % i), tmp = perm[i - 1];
        perm[i - 1] = perm[k];
        perm[k] = tmp;
    }
    for (int f = 0; f < CALIBRATION_FOLDS; f++) {
        size_t nr = 0;
        for (size_t i = 0; i < d->n; i++)
            if ((int)(i % CALIBRATION_FOLDS) != f) rows[nr++] = perm[i];
        fit(&t, rows, nr, o, &w, nh, o->seed + (uint64_t)f + 1);
        for (size_t i = 0; i < d->n; i++)
            if ((int)(i % CALIBRATION_FOLDS) == f) oof[perm[i]] = 1.0 / (1.0 + exp(-row_z(&t, &w, perm[i])));
    }
    free(perm);
    qsort(oof, d->n, sizeof *oof, cmp_double);
    for (int q = 0; q < RT_N_QUANTILES; q++) {
        double pos = (double)q / (RT_N_QUANTILES - 1) * (double)(d->n - 1);
        size_t i = (size_t)pos;
        double v = i + 1 < d->n ? oof[i] + (pos - (double)i) * (oof[i + 1] - oof[i]) : oof[d->n - 1];
        r->quantiles[q] = (float)v;
        if (q > 0 && r->quantiles[q] < r->quantiles[q - 1]) r->quantiles[q] = r->quantiles[q - 1];
    }
    for (size_t i = 0; i < d->n; i++) rows[i] = i;
    fit(&t, rows, d->n, o, &w, nh, o->seed);
    r->bias = w.bias;
    memcpy(r->w_dense, w.w_dense, sizeof r->w_dense);
    r->w_hash = w.w_hash;
    w.w_hash = NULL;
    bool finite = isfinite(r->bias);
    for (size_t i = 0; i < nh; i++) finite &= isfinite(r->w_hash[i]);
    if (!finite) {
        slm_err(err, err_len, "training diverged (non-finite weights): lower --lr");
        goto fail;
    }
    train_set_free(&t);
    free(w.g_hash);
    free(rows);
    free(oof);
    return r;
fail:
    train_set_free(&t);
    free(w.w_hash);
    free(w.g_hash);
    free(rows);
    free(oof);
    slm_router_free(r);
    return NULL;
}
