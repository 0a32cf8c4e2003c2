/* RouteLLM's quality-cost metrics (routellm/evals/evaluate.py), computed on the exact curve.
 *
 * RouteLLM sweeps ~10 score quantiles as thresholds, plots accuracy against the share of strong
 * (frontier) calls, and reports APGR = (AUC - weak AUC) / (strong AUC - weak AUC) by the trapezoid
 * rule, and CPT(x) = the share at which accuracy reaches weak + x (strong - weak) (np.interp on the
 * curve). Here every threshold is a point (k of n prompts upstream, k = 0..n), so the trapezoid
 * area is the exact area under the curve, the limit of RouteLLM's sweep; ties between scores are
 * taken in random order, whose expected accuracy is linear across the tie. CPT is the smallest
 * share reaching the target, which equals np.interp's answer when the curve rises monotonically
 * and stays defined when it does not. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "router/router_impl.h"
#include "util/err.h"

typedef struct vertex {
    double share, acc;
} vertex;

/* Accuracy at a share on the piecewise-linear curve through v[0..nv). */
static double curve_at(const vertex *v, size_t nv, double s) {
    if (s <= v[0].share) return v[0].acc;
    for (size_t i = 1; i < nv; i++)
        if (s <= v[i].share) {
            double w = v[i].share - v[i - 1].share;
            return w > 0 ? v[i - 1].acc + (s - v[i - 1].share) / w * (v[i].acc - v[i - 1].acc) : v[i].acc;
        }
    return v[nv - 1].acc;
}

/* The smallest share whose accuracy reaches target (1 if none; the last vertex is share 1). */
static double share_reaching(const vertex *v, size_t nv, double target) {
    const double tol = 1e-12;
    if (v[0].acc >= target - tol) return v[0].share;
    for (size_t i = 1; i < nv; i++)
        if (v[i].acc >= target - tol) {
            double rise = v[i].acc - v[i - 1].acc;
            double f = rise > 0 ? (target - v[i - 1].acc) / rise : 1;
            if (f < 0) f = 0;
            if (f > 1) f = 1;
            return v[i - 1].share + f * (v[i].share - v[i - 1].share);
        }
    return 1.0;
}

static void metrics_of(const vertex *v, size_t nv, size_t n, double weak, double strong, slm_router_metrics *m) {
    m->n = n;
    m->local_acc = weak;
    m->frontier_acc = strong;
    double area = 0;
    for (size_t i = 1; i < nv; i++) area += (v[i].share - v[i - 1].share) * (v[i].acc + v[i - 1].acc) / 2;
    double gap = strong - weak;
    if (gap > 0) {
        m->apgr = (area - weak) / gap;
        m->cpt50 = share_reaching(v, nv, weak + 0.5 * gap);
        m->cpt80 = share_reaching(v, nv, weak + 0.8 * gap);
    } else {
        m->apgr = m->cpt50 = m->cpt80 = NAN;
    }
    m->share_at_95 = strong > 0 ? share_reaching(v, nv, 0.95 * strong) : 0;
    for (int i = 0; i < SLM_ROUTER_CURVE_POINTS; i++) {
        double s = (double)i / (SLM_ROUTER_CURVE_POINTS - 1);
        m->curve[i][0] = s;
        m->curve[i][1] = curve_at(v, nv, s);
    }
}

typedef struct ranked {
    double score;
    size_t i;
} ranked;

static int by_score_desc(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

int slm_router_evaluate(const double *scores, const bool *local_ok, const bool *frontier_ok, size_t n,
                        slm_router_metrics *router, slm_router_metrics *random, char *err, size_t err_len) {
    if (n == 0) return slm_err(err, err_len, "no prompts to evaluate");
    size_t weak_correct = 0, strong_correct = 0;
    for (size_t i = 0; i < n; i++) weak_correct += local_ok[i], strong_correct += frontier_ok[i];
    double weak = (double)weak_correct / (double)n, strong = (double)strong_correct / (double)n;
    if (random) {
        vertex line[2] = {{0, weak}, {1, strong}};
        metrics_of(line, 2, n, weak, strong, random);
    }
    if (!router) return 0;
    ranked *r = malloc(n * sizeof *r);
    vertex *v = malloc((n + 1) * sizeof *v);
    if (!r || !v) {
        free(r);
        free(v);
        return slm_err(err, err_len, "out of memory evaluating a router");
    }
    for (size_t i = 0; i < n; i++) r[i] = (ranked){isnan(scores[i]) ? -INFINITY : scores[i], i};
    qsort(r, n, sizeof *r, by_score_desc);
    size_t nv = 0;
    long correct = (long)weak_correct;
    v[nv++] = (vertex){0, weak};
    for (size_t k = 0; k < n;) {
        size_t end = k;
        while (end < n && r[end].score == r[k].score) {
            size_t i = r[end].i;
            correct += (long)frontier_ok[i] - (long)local_ok[i];
            end++;
        }
        v[nv++] = (vertex){(double)end / (double)n, (double)correct / (double)n};
        k = end;
    }
    metrics_of(v, nv, n, weak, strong, router);
    free(r);
    free(v);
    return 0;
}
