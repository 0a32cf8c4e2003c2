/* The training pass of a llama-family decoder (llama, qwen2 and others with the same graph): the
 * forward pass with f32 LoRA terms on the adapted matrices, softmax cross-entropy, and the backward
 * pass through the output head, RMSNorm, SwiGLU, causal grouped-query attention, RoPE and the
 * residual stream, into the LoRA gradients. The base weights stay frozen in whatever type the file
 * holds: y = W x goes through the model's own matmul, dx = W^T dy dequantizes a tile of rows at a
 * time (never the whole matrix).
 *
 * Memory is bounded per layer: the forward pass keeps only each layer's input (the residual
 * stream); the backward pass recomputes one layer's activations from it, then walks back through
 * that layer. Every sum has a fixed order that does not depend on the thread count (work is split
 * by tokens or heads, never by a reduction), so a run is reproducible. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/types.h"
#include "train/train_impl.h"
#include "util/err.h"

enum { TILE_ROWS = 32 };

struct train_ws {
    const slm_model *m;
    lora_set *set;
    slm_pool *pool;
    int n_threads;
    bool exact;
    int ctx, E, F, H, HKV, HD, Dq, Dkv, R, L, V, half, head_chunk;
    float attn_scale;
    double min_parallel_work;   /* see run() */
    float *rope_cos, *rope_sin; /* [ctx][half] */
    float *resid;               /* [L+1][ctx][E]: each layer's input, then the final state */
    /* one layer's activations */
    float *xa, *x1, *xf, *rs1, *rs2, *q, *k, *v, *att, *lse, *g, *u, *h, *tmp_e;
    float *ua[SLM_LORAT_N_TARGETS];  /* A x of each adapted matrix [ctx][R] */
    /* gradients */
    float *dx, *dxa, *dq, *dk, *dv, *datt, *dh, *dg, *du, *dua, *delta;
    /* output head */
    float *xo, *rs_out, *head_in, *logits, *dhead;
    int *head_rows;
    float *tiles;               /* [n_threads][TILE_ROWS][max k] for W^T dy */
    float *wt, *dyt, *dxt;      /* a transposed tile of W, dy's columns for it, its product */
    size_t wt_floats;
    size_t tile_stride;
    float *scores;              /* [n_threads][ctx] */
};

/* ---------- small ops ---------- */

/* out = x * r * w with r = 1/rms(x) (the sum of squares in double, as the inference pass does). */
static void rmsnorm_fwd(float *out, float *r_out, const float *x, const float *w, int T, int n, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * n;
        double ss = 0;
        for (int i = 0; i < n; i++) ss += (double)xr[i] * (double)xr[i];
        float r = 1.0f / sqrtf((float)(ss / n) + eps);
        r_out[t] = r;
        for (int i = 0; i < n; i++) out[(size_t)t * n + i] = xr[i] * r * w[i];
    }
}

/* dx += d(x r w)/dx . dy: r w dy - x r^3/n sum(w dy x). */
static void rmsnorm_bwd(float *dx, const float *x, const float *w, const float *r, const float *dy, int T, int n) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * n, *dyr = dy + (size_t)t * n;
        float *dxr = dx + (size_t)t * n;
        double dot = 0;
        for (int i = 0; i < n; i++) dot += (double)w[i] * dyr[i] * xr[i];
        float rt = r[t], c = (float)(dot * rt * rt * rt / n);
        for (int i = 0; i < n; i++) dxr[i] += rt * w[i] * dyr[i] - c * xr[i];
    }
}

static void rope_tables(train_ws *ws) {
    const slm_hparams *hp = &ws->m->hp;
    float theta_scale = powf(hp->rope_base, -2.0f / (float)hp->rope_dim);
    const float *factors = ws->m->rope_freq_factors;
    for (int t = 0; t < ws->ctx; t++) {
        float theta = (float)t;
        for (int i = 0; i < ws->half; i++) {
            float th = theta;
            if (factors) th /= factors[i];
            th *= hp->rope_freq_scale;
            ws->rope_cos[(size_t)t * ws->half + i] = cosf(th) * hp->rope_attn_factor;
            ws->rope_sin[(size_t)t * ws->half + i] = sinf(th) * hp->rope_attn_factor;
            theta *= theta_scale;
        }
    }
}

/* Rotates (or with inverse, rotates back: the transpose, for the gradient) every head of T rows. */
static void rope(const train_ws *ws, float *x, int T, int n_heads, bool inverse) {
    bool neox = ws->m->arch->rope_style == SLM_ROPE_NEOX;
    int dim = n_heads * ws->HD;
    for (int t = 0; t < T; t++) {
        const float *cs = ws->rope_cos + (size_t)t * ws->half, *sn = ws->rope_sin + (size_t)t * ws->half;
        for (int hh = 0; hh < n_heads; hh++) {
            float *v = x + (size_t)t * dim + (size_t)hh * ws->HD;
            for (int i = 0; i < ws->half; i++) {
                int a = neox ? i : 2 * i, b = neox ? i + ws->half : 2 * i + 1;
                float x0 = v[a], x1 = v[b], s = inverse ? -sn[i] : sn[i];
                v[a] = x0 * cs[i] - x1 * s;
                v[b] = x0 * s + x1 * cs[i];
            }
        }
    }
}

static void add_bias(float *y, const float *b, int T, int n) {
    if (!b) return;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++) y[(size_t)t * n + i] += b[i];
}

/* ---------- matmuls ---------- */

/* Shares fn out over the pool when there are about `work` multiply-adds or more of it: waking the
 * threads costs more than small steps, and a lot more on a busy machine where each wake-up waits for
 * a time slice. The tasks split without changing any sum, so the results are the same either way. */
static void run(train_ws *ws, slm_task_fn fn, void *arg, double work) {
    if (ws->n_threads > 1 && work >= ws->min_parallel_work) slm_pool_run(ws->pool, fn, arg);
    else fn(arg, 0, 1);
}


typedef struct wt_job {
    train_ws *ws;
    const slm_weight *w;
    const float *dy;
    float *dx;
    int T;
    bool accumulate;
} wt_job;

/* dx[t] (+)= sum over rows r of dy[t][r] * W[r]: this thread's tokens, rows dequantized TILE_ROWS at
 * a time; each dx element sums the rows in ascending order whichever thread owns it. */
static void wt_task(void *arg, int ith, int nth) {
    const wt_job *j = arg;
    int t0 = j->T * ith / nth, t1 = j->T * (ith + 1) / nth;
    if (t0 >= t1) return;
    int64_t k = j->w->k, m = j->w->m;
    float *tile = j->ws->tiles + (size_t)ith * j->ws->tile_stride;
    if (!j->accumulate) memset(j->dx + (size_t)t0 * k, 0, sizeof(float) * (size_t)(t1 - t0) * (size_t)k);
    for (int64_t r0 = 0; r0 < m; r0 += TILE_ROWS) {
        int nr = m - r0 < TILE_ROWS ? (int)(m - r0) : TILE_ROWS;
        for (int i = 0; i < nr; i++) slm_weight_row_f32(j->w, r0 + i, tile + (size_t)i * k);
        for (int t = t0; t < t1; t++) {
            float *d = j->dx + (size_t)t * k;
            const float *g = j->dy + (size_t)t * m + r0;
            for (int i = 0; i < nr; i++)
                if (g[i] != 0.0f) slm_vec_axpy_f32(k, d, g[i], tile + (size_t)i * k);
        }
    }
}

typedef struct transpose_job {
    train_ws *ws;
    const slm_weight *w;
    int64_t r0;
    int nr;
} transpose_job;

/* ws->wt[j][i] = W[r0 + i][j]: each thread dequantizes groups of 16 rows of its share, then writes
 * them out 16 consecutive floats at a time. */
static void transpose_task(void *arg, int ith, int nth) {
    const transpose_job *j = arg;
    int64_t k = j->w->k;
    float *rows = j->ws->tiles + (size_t)ith * j->ws->tile_stride;
    int groups = (j->nr + 15) / 16;
    for (int gi = groups * ith / nth; gi < groups * (ith + 1) / nth; gi++) {
        int i0 = gi * 16, n = j->nr - i0 < 16 ? j->nr - i0 : 16;
        for (int i = 0; i < n; i++) slm_weight_row_f32(j->w, j->r0 + i0 + i, rows + (size_t)i * k);
        for (int64_t c = 0; c < k; c++) {
            float *dst = j->ws->wt + (size_t)c * (size_t)j->nr + (size_t)i0;
            for (int i = 0; i < n; i++) dst[i] = rows[(size_t)i * k + c];
        }
    }
}

/* dx (+)= W^T dy. The fast way: a tile of W's rows, dequantized and transposed into an f32 matrix,
 * goes through the model's own float GEMM (dx = W_tile^T . dy_tile); tiles add up in row order.
 * The exact path (and a single token) uses the row-by-row sum above. Both are independent of the
 * thread count. */
static void matmul_t(train_ws *ws, const slm_weight *w, const float *dy, int T, float *dx, bool accumulate) {
    if (ws->exact || T < 2) {
        wt_job job = {ws, w, dy, dx, T, accumulate};
        if (T >= 2) run(ws, wt_task, &job, (double)T * (double)w->m * (double)w->k);
        else wt_task(&job, 0, 1);
        return;
    }
    int64_t k = w->k, m = w->m;
    int64_t tile = (int64_t)(ws->wt_floats / (size_t)k) & ~(int64_t)15;
    if (tile < 16) tile = 16;
    for (int64_t r0 = 0; r0 < m; r0 += tile) {
        int nr = m - r0 < tile ? (int)(m - r0) : (int)tile;
        transpose_job tj = {ws, w, r0, nr};
        run(ws, transpose_task, &tj, (double)nr * (double)k);
        for (int t = 0; t < T; t++)
            memcpy(ws->dyt + (size_t)t * nr, dy + (size_t)t * m + r0, sizeof(float) * (size_t)nr);
        slm_weight wt = {.type = SLM_TYPE_F32, .k = nr, .m = k, .data = ws->wt, .row_bytes = sizeof(float) * (size_t)nr};
        bool direct = r0 == 0 && !accumulate;
        slm_matmul(ws->pool, &wt, ws->dyt, T, direct ? dx : ws->dxt, false);
        if (!direct)
            for (size_t i = 0; i < (size_t)T * (size_t)k; i++) dx[i] += ws->dxt[i];
    }
}

static const lora_pair *pair_of(const train_ws *ws, int layer, int target) {
    int i = ws->set->index[layer][target];
    return i < 0 ? NULL : &ws->set->pairs[i];
}

typedef struct lora_job {
    train_ws *ws;
    const lora_pair *p;
    int target, T;
    const float *x, *dy;
    float *y, *dx;
} lora_job;

/* ua[t] = A x[t]; y[t] += s B ua[t]: split by tokens. */
static void lora_fwd_task(void *arg, int ith, int nth) {
    const lora_job *j = arg;
    const lora_pair *p = j->p;
    int R = j->ws->R;
    const float *A = j->ws->set->w + p->off_a, *B = j->ws->set->w + p->off_b;
    float *ua = j->ws->ua[j->target], s = j->ws->set->scale;
    for (int t = j->T * ith / nth; t < j->T * (ith + 1) / nth; t++) {
        const float *xt = j->x + (size_t)t * p->n_in;
        float *ut = ua + (size_t)t * R;
        for (int r = 0; r < R; r++) ut[r] = slm_vec_dot_f32(p->n_in, A + (size_t)r * p->n_in, xt);
        float *yt = j->y + (size_t)t * p->n_out;
        for (int o = 0; o < p->n_out; o++) {
            const float *br = B + (size_t)o * R;
            float acc = 0;
            for (int r = 0; r < R; r++) acc += br[r] * ut[r];
            yt[o] += s * acc;
        }
    }
}

/* du[t] = s B^T dy[t] and dx[t] += A^T du[t]: split by tokens. */
static void lora_bwd_tok_task(void *arg, int ith, int nth) {
    const lora_job *j = arg;
    const lora_pair *p = j->p;
    int R = j->ws->R;
    const float *A = j->ws->set->w + p->off_a, *B = j->ws->set->w + p->off_b;
    float s = j->ws->set->scale;
    for (int t = j->T * ith / nth; t < j->T * (ith + 1) / nth; t++) {
        const float *dyt = j->dy + (size_t)t * p->n_out;
        float *dut = j->ws->dua + (size_t)t * R;
        for (int r = 0; r < R; r++) dut[r] = 0;
        for (int o = 0; o < p->n_out; o++) {
            float a = s * dyt[o];
            const float *br = B + (size_t)o * R;
            for (int r = 0; r < R; r++) dut[r] += a * br[r];
        }
        if (j->dx)
            for (int r = 0; r < R; r++)
                slm_vec_axpy_f32(p->n_in, j->dx + (size_t)t * p->n_in, dut[r], A + (size_t)r * p->n_in);
    }
}

/* gB[o] += s sum_t dy[t][o] ua[t] (split by rows o) and gA[r] += sum_t du[t][r] x[t] (split by
 * rows r): every element adds its tokens in order whichever thread owns it. */
static void lora_bwd_grad_task(void *arg, int ith, int nth) {
    const lora_job *j = arg;
    const lora_pair *p = j->p;
    int R = j->ws->R;
    const float *ua = j->ws->ua[j->target];
    float *gA = j->ws->set->g + p->off_a, *gB = j->ws->set->g + p->off_b, s = j->ws->set->scale;
    for (int o = p->n_out * ith / nth; o < p->n_out * (ith + 1) / nth; o++) {
        float *gbr = gB + (size_t)o * R;
        for (int t = 0; t < j->T; t++) {
            float a = s * j->dy[(size_t)t * p->n_out + o];
            const float *ut = ua + (size_t)t * R;
            for (int r = 0; r < R; r++) gbr[r] += a * ut[r];
        }
    }
    for (int r = R * ith / nth; r < R * (ith + 1) / nth; r++)
        for (int t = 0; t < j->T; t++)
            slm_vec_axpy_f32(p->n_in, gA + (size_t)r * p->n_in, j->ws->dua[(size_t)t * R + r], j->x + (size_t)t * p->n_in);
}

/* y = W x (+ s B A x, keeping A x in ua). */
static void linear_fwd(train_ws *ws, int layer, int target, const float *x, int T, float *y) {
    const slm_weight *w = slm_lora_target_weight(ws->m, layer, target);
    slm_matmul(ws->pool, w, x, T, y, ws->exact);
    const lora_pair *p = pair_of(ws, layer, target);
    if (!p) return;
    lora_job job = {ws, p, target, T, x, NULL, y, NULL};
    run(ws, lora_fwd_task, &job, (double)T * ws->R * (p->n_in + p->n_out));
}

/* Given dy of y = W x + s B A x: the LoRA gradients, and dx (+)= W^T dy + A^T (s B^T dy) unless dx
 * is NULL (the first layer's input needs no gradient). */
static void linear_bwd(train_ws *ws, int layer, int target, const float *x, const float *dy, int T, float *dx,
                       bool accumulate) {
    const slm_weight *w = slm_lora_target_weight(ws->m, layer, target);
    if (dx) matmul_t(ws, w, dy, T, dx, accumulate);
    const lora_pair *p = pair_of(ws, layer, target);
    if (!p) return;
    lora_job job = {ws, p, target, T, x, dy, NULL, dx};
    double work = (double)T * ws->R * (p->n_in + p->n_out);
    run(ws, lora_bwd_tok_task, &job, work);
    run(ws, lora_bwd_grad_task, &job, work);
}

/* ---------- attention ---------- */

typedef struct attn_job {
    train_ws *ws;
    int T;
} attn_job;

/* Causal attention, one (token, head) pair at a time: att = softmax(scale q.K) V; lse kept for the
 * backward pass. */
static void attn_fwd_task(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    train_ws *ws = j->ws;
    float *sc = ws->scores + (size_t)ith * ws->ctx;
    int group = ws->H / ws->HKV, total = j->T * ws->H;
    for (int i = ith; i < total; i += nth) {
        int t = i / ws->H, hh = i % ws->H, g = hh / group;
        const float *q = ws->q + (size_t)t * ws->Dq + (size_t)hh * ws->HD;
        float max = -INFINITY;
        for (int s = 0; s <= t; s++) {
            sc[s] = ws->attn_scale * slm_vec_dot_f32(ws->HD, q, ws->k + (size_t)s * ws->Dkv + (size_t)g * ws->HD);
            if (sc[s] > max) max = sc[s];
        }
        double sum = 0;
        for (int s = 0; s <= t; s++) {
            sc[s] = expf(sc[s] - max);
            sum += sc[s];
        }
        float inv = (float)(1.0 / sum);
        float *out = ws->att + (size_t)t * ws->Dq + (size_t)hh * ws->HD;
        memset(out, 0, sizeof(float) * (size_t)ws->HD);
        for (int s = 0; s <= t; s++)
            slm_vec_axpy_f32(ws->HD, out, sc[s] * inv, ws->v + (size_t)s * ws->Dkv + (size_t)g * ws->HD);
        ws->lse[(size_t)t * ws->H + hh] = max + logf((float)sum);
    }
}

/* dq of each (token, head): scale sum_s p (dO.v_s - delta) k_s, with delta = dO.O. */
static void attn_bwd_q_task(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    train_ws *ws = j->ws;
    int group = ws->H / ws->HKV, total = j->T * ws->H;
    for (int i = ith; i < total; i += nth) {
        int t = i / ws->H, hh = i % ws->H, g = hh / group;
        size_t qo = (size_t)t * ws->Dq + (size_t)hh * ws->HD;
        const float *q = ws->q + qo, *dout = ws->datt + qo;
        float lse = ws->lse[(size_t)t * ws->H + hh], delta = ws->delta[(size_t)t * ws->H + hh];
        float *dq = ws->dq + qo;
        memset(dq, 0, sizeof(float) * (size_t)ws->HD);
        for (int s = 0; s <= t; s++) {
            const float *kr = ws->k + (size_t)s * ws->Dkv + (size_t)g * ws->HD;
            const float *vr = ws->v + (size_t)s * ws->Dkv + (size_t)g * ws->HD;
            float p = expf(ws->attn_scale * slm_vec_dot_f32(ws->HD, q, kr) - lse);
            float ds = p * (slm_vec_dot_f32(ws->HD, dout, vr) - delta);
            slm_vec_axpy_f32(ws->HD, dq, ws->attn_scale * ds, kr);
        }
    }
}

/* dk and dv of each (key position, kv head): sums over the query heads of its group and the
 * positions t >= s that see it, in that fixed order. */
static void attn_bwd_kv_task(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    train_ws *ws = j->ws;
    int group = ws->H / ws->HKV, total = j->T * ws->HKV;
    for (int i = ith; i < total; i += nth) {
        int s = i / ws->HKV, g = i % ws->HKV;
        size_t ko = (size_t)s * ws->Dkv + (size_t)g * ws->HD;
        const float *kr = ws->k + ko, *vr = ws->v + ko;
        float *dk = ws->dk + ko, *dv = ws->dv + ko;
        memset(dk, 0, sizeof(float) * (size_t)ws->HD);
        memset(dv, 0, sizeof(float) * (size_t)ws->HD);
        for (int hh = g * group; hh < (g + 1) * group; hh++)
            for (int t = s; t < j->T; t++) {
                size_t qo = (size_t)t * ws->Dq + (size_t)hh * ws->HD;
                const float *q = ws->q + qo, *dout = ws->datt + qo;
                float p = expf(ws->attn_scale * slm_vec_dot_f32(ws->HD, q, kr) - ws->lse[(size_t)t * ws->H + hh]);
                float ds = p * (slm_vec_dot_f32(ws->HD, dout, vr) - ws->delta[(size_t)t * ws->H + hh]);
                slm_vec_axpy_f32(ws->HD, dk, ws->attn_scale * ds, q);
                slm_vec_axpy_f32(ws->HD, dv, p, dout);
            }
    }
}

static double attn_work(const train_ws *ws, int T) { return (double)T * (T + 1) * ws->H * ws->HD; }

/* ---------- layers ---------- */

/* One decoder layer from x (T rows) into xout, leaving its activations in the workspace. */
static void layer_fwd(train_ws *ws, int l, const float *x, float *xout, int T) {
    const slm_layer *L = &ws->m->layers[l];
    const slm_hparams *hp = &ws->m->hp;
    int E = ws->E;
    rmsnorm_fwd(ws->xa, ws->rs1, x, L->attn_norm, T, E, hp->rms_eps);
    linear_fwd(ws, l, SLM_LORAT_Q, ws->xa, T, ws->q);
    linear_fwd(ws, l, SLM_LORAT_K, ws->xa, T, ws->k);
    linear_fwd(ws, l, SLM_LORAT_V, ws->xa, T, ws->v);
    add_bias(ws->q, L->bq, T, ws->Dq);
    add_bias(ws->k, L->bk, T, ws->Dkv);
    add_bias(ws->v, L->bv, T, ws->Dkv);
    rope(ws, ws->q, T, ws->H, false);
    rope(ws, ws->k, T, ws->HKV, false);
    attn_job aj = {ws, T};
    run(ws, attn_fwd_task, &aj, attn_work(ws, T));
    linear_fwd(ws, l, SLM_LORAT_O, ws->att, T, ws->tmp_e);
    for (size_t i = 0; i < (size_t)T * E; i++) ws->x1[i] = x[i] + ws->tmp_e[i];
    rmsnorm_fwd(ws->xf, ws->rs2, ws->x1, L->ffn_norm, T, E, hp->rms_eps);
    linear_fwd(ws, l, SLM_LORAT_GATE, ws->xf, T, ws->g);
    linear_fwd(ws, l, SLM_LORAT_UP, ws->xf, T, ws->u);
    for (size_t i = 0; i < (size_t)T * ws->F; i++) {
        float gv = ws->g[i];
        ws->h[i] = gv / (1.0f + expf(-gv)) * ws->u[i];
    }
    linear_fwd(ws, l, SLM_LORAT_DOWN, ws->h, T, ws->tmp_e);
    for (size_t i = 0; i < (size_t)T * E; i++) xout[i] = ws->x1[i] + ws->tmp_e[i];
}

/* With ws->dx = d(layer output) and the layer's activations in place (input x): the LoRA gradients,
 * and ws->dx becomes d(layer input) if need_dx. */
static void layer_bwd(train_ws *ws, int l, const float *x, int T, bool need_dx) {
    const slm_layer *L = &ws->m->layers[l];
    int E = ws->E, F = ws->F;
    /* feed-forward: x2 = x1 + down(silu(gate xf) * up xf) */
    linear_bwd(ws, l, SLM_LORAT_DOWN, ws->h, ws->dx, T, ws->dh, false);
    for (size_t i = 0; i < (size_t)T * F; i++) {
        float gv = ws->g[i], sg = 1.0f / (1.0f + expf(-gv));
        ws->du[i] = ws->dh[i] * gv * sg;
        ws->dg[i] = ws->dh[i] * ws->u[i] * sg * (1.0f + gv * (1.0f - sg));
    }
    linear_bwd(ws, l, SLM_LORAT_GATE, ws->xf, ws->dg, T, ws->dxa, false);
    linear_bwd(ws, l, SLM_LORAT_UP, ws->xf, ws->du, T, ws->dxa, true);
    rmsnorm_bwd(ws->dx, ws->x1, L->ffn_norm, ws->rs2, ws->dxa, T, E); /* dx = d x1 now */
    /* attention: x1 = x + o(attn(rope(q xa), rope(k xa), v xa)) */
    linear_bwd(ws, l, SLM_LORAT_O, ws->att, ws->dx, T, ws->datt, false);
    for (int t = 0; t < T; t++)
        for (int hh = 0; hh < ws->H; hh++) {
            size_t o = (size_t)t * ws->Dq + (size_t)hh * ws->HD;
            ws->delta[(size_t)t * ws->H + hh] = slm_vec_dot_f32(ws->HD, ws->datt + o, ws->att + o);
        }
    attn_job aj = {ws, T};
    run(ws, attn_bwd_q_task, &aj, 2 * attn_work(ws, T));
    run(ws, attn_bwd_kv_task, &aj, 2 * attn_work(ws, T));
    rope(ws, ws->dq, T, ws->H, true);
    rope(ws, ws->dk, T, ws->HKV, true);
    float *dxa = need_dx ? ws->dxa : NULL;
    linear_bwd(ws, l, SLM_LORAT_Q, ws->xa, ws->dq, T, dxa, false);
    linear_bwd(ws, l, SLM_LORAT_K, ws->xa, ws->dk, T, dxa, true);
    linear_bwd(ws, l, SLM_LORAT_V, ws->xa, ws->dv, T, dxa, true);
    if (need_dx) rmsnorm_bwd(ws->dx, x, L->attn_norm, ws->rs1, ws->dxa, T, E);
}

/* ---------- output head and loss ---------- */

/* Cross-entropy over the rows that have a target; with backward, ws->dx = d loss / d final state. */
static double head(train_ws *ws, const slm_token *tokens, const uint8_t *weight, int T, bool backward, float loss_scale,
                   int *n_counted) {
    const slm_model *m = ws->m;
    int E = ws->E, V = ws->V;
    const float *xl = ws->resid + (size_t)ws->L * ws->ctx * E;
    rmsnorm_fwd(ws->xo, ws->rs_out, xl, m->output_norm, T, E, m->hp.rms_eps);
    if (backward) memset(ws->dhead, 0, sizeof(float) * (size_t)T * E);
    double loss = 0;
    int counted = 0;
    for (int t0 = 0; t0 < T - 1;) {
        int n = 0, t = t0;
        for (; t < T - 1 && n < ws->head_chunk; t++) {
            if (weight && !weight[t + 1]) continue;
            ws->head_rows[n] = t;
            memcpy(ws->head_in + (size_t)n * E, ws->xo + (size_t)t * E, sizeof(float) * (size_t)E);
            n++;
        }
        t0 = t;
        if (n == 0) continue;
        slm_matmul(ws->pool, &m->output, ws->head_in, n, ws->logits, ws->exact);
        for (int i = 0; i < n; i++) {
            float *lg = ws->logits + (size_t)i * V;
            int target = tokens[ws->head_rows[i] + 1];
            float max = -INFINITY;
            for (int c = 0; c < V; c++)
                if (lg[c] > max) max = lg[c];
            double sum = 0;
            for (int c = 0; c < V; c++) sum += exp((double)lg[c] - max);
            double lse = max + log(sum);
            loss += lse - lg[target];
            counted++;
            if (backward) {
                for (int c = 0; c < V; c++) lg[c] = (float)exp((double)lg[c] - lse) * loss_scale;
                lg[target] -= loss_scale;
            }
        }
        if (backward) {
            matmul_t(ws, &m->output, ws->logits, n, ws->head_in, false);
            for (int i = 0; i < n; i++)
                memcpy(ws->dhead + (size_t)ws->head_rows[i] * E, ws->head_in + (size_t)i * E, sizeof(float) * (size_t)E);
        }
    }
    if (backward) {
        memset(ws->dx, 0, sizeof(float) * (size_t)T * E);
        rmsnorm_bwd(ws->dx, xl, m->output_norm, ws->rs_out, ws->dhead, T, E);
    }
    *n_counted = counted;
    return loss;
}

double train_seq(train_ws *ws, const slm_token *tokens, const uint8_t *weight, int n, bool backward, float loss_scale,
                 int *n_counted) {
    *n_counted = 0;
    if (n < 2 || n > ws->ctx) return 0;
    const slm_model *m = ws->m;
    int E = ws->E;
    size_t stride = (size_t)ws->ctx * E;
    for (int t = 0; t < n; t++) slm_weight_row_f32(&m->tok_embd, tokens[t], ws->resid + (size_t)t * E);
    for (int l = 0; l < ws->L; l++) layer_fwd(ws, l, ws->resid + l * stride, ws->resid + (l + 1) * stride, n);
    double loss = head(ws, tokens, weight, n, backward, loss_scale, n_counted);
    if (!backward || *n_counted == 0) return loss;
    for (int l = ws->L - 1; l >= 0; l--) {
        /* the last layer's activations are still in place from the forward pass */
        if (l != ws->L - 1) layer_fwd(ws, l, ws->resid + l * stride, ws->tmp_e, n);
        layer_bwd(ws, l, ws->resid + l * stride, n, l > 0);
    }
    return loss;
}

/* ---------- set-up ---------- */

static const char *unsupported(const slm_model *m) {
    const slm_arch *a = m->arch;
    if (a->encoder) return "an encoder (embedding model)";
    if (a->fused_qkv || a->fused_gate_up) return "fused projection matrices";
    if (a->gelu || !a->ffn_gated) return "a GELU feed-forward";
    if (a->q_prescale || a->embd_scale || a->post_norms || a->softcap || a->alt_swa || a->learned_pos)
        return "a graph the trainer does not implement (scaled queries/embeddings, post-norms, soft-caps, windows)";
    if (m->rope_long) return "LongRoPE factors";
    for (int l = 0; l < m->hp.n_layer; l++)
        if (m->layers[l].window || m->layers[l].bo || m->layers[l].b_up || m->layers[l].b_down)
            return "sliding windows or output biases";
    if (m->hp.final_softcap > 0 || m->hp.attn_softcap > 0) return "soft-caps";
    return NULL;
}

void train_ws_set_min_parallel_work(train_ws *ws, double work) { ws->min_parallel_work = work; }

void train_ws_free(train_ws *ws) {
    if (!ws) return;
    float **bufs[] = {&ws->rope_cos, &ws->rope_sin, &ws->resid, &ws->xa, &ws->x1, &ws->xf, &ws->rs1, &ws->rs2,
                      &ws->q, &ws->k, &ws->v, &ws->att, &ws->lse, &ws->g, &ws->u, &ws->h, &ws->tmp_e, &ws->dx,
                      &ws->dxa, &ws->dq, &ws->dk, &ws->dv, &ws->datt, &ws->dh, &ws->dg, &ws->du, &ws->dua,
                      &ws->delta, &ws->xo, &ws->rs_out, &ws->head_in, &ws->logits, &ws->dhead, &ws->tiles,
                      &ws->scores, &ws->wt, &ws->dyt, &ws->dxt};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(*bufs[i]);
    for (int t = 0; t < SLM_LORAT_N_TARGETS; t++) free(ws->ua[t]);
    free(ws->head_rows);
    free(ws);
}

train_ws *train_ws_new(const slm_model *m, lora_set *set, int ctx, slm_pool *pool, bool exact, char *err,
                       size_t err_len) {
    const char *why = unsupported(m);
    if (why) {
        slm_err(err, err_len, "fine-tuning supports llama-family decoders; this %s model has %s", m->arch->name, why);
        return NULL;
    }
    if (ctx < 2) {
        slm_err(err, err_len, "context of %d tokens (at least 2)", ctx);
        return NULL;
    }
    train_ws *ws = calloc(1, sizeof *ws);
    if (!ws) goto oom;
    const slm_hparams *hp = &m->hp;
    ws->m = m, ws->set = set, ws->pool = pool, ws->exact = exact, ws->ctx = ctx;
    ws->n_threads = pool ? slm_pool_size(pool) : 1;
    if (ws->n_threads < 1) ws->n_threads = 1;
    ws->E = hp->n_embd, ws->F = hp->n_ff, ws->H = hp->n_head, ws->HKV = hp->n_head_kv, ws->HD = hp->head_dim;
    ws->Dq = ws->H * ws->HD, ws->Dkv = ws->HKV * ws->HD, ws->R = set->rank, ws->L = hp->n_layer, ws->V = hp->n_vocab;
    ws->half = hp->rope_dim / 2;
    ws->attn_scale = 1.0f / sqrtf((float)ws->HD);
    ws->min_parallel_work = 1 << 17;
    ws->head_chunk = (int)((4u << 20) / (unsigned)ws->V);
    if (ws->head_chunk < 1) ws->head_chunk = 1;
    if (ws->head_chunk > ctx) ws->head_chunk = ctx;
    size_t T = (size_t)ctx, E = (size_t)ws->E, F = (size_t)ws->F;
    size_t maxk = E > F ? E : F;
    if ((size_t)ws->Dq > maxk) maxk = (size_t)ws->Dq;
    ws->tile_stride = (size_t)TILE_ROWS * maxk;
#define ALLOC(p, n) \
    if (!((p) = malloc(sizeof(float) * (size_t)(n)))) goto oom;
    ALLOC(ws->rope_cos, T * (size_t)(ws->half ? ws->half : 1));
    ALLOC(ws->rope_sin, T * (size_t)(ws->half ? ws->half : 1));
    ALLOC(ws->resid, (size_t)(ws->L + 1) * T * E);
    ALLOC(ws->xa, T * E);
    ALLOC(ws->x1, T * E);
    ALLOC(ws->xf, T * E);
    ALLOC(ws->tmp_e, T * E);
    ALLOC(ws->dx, T * E);
    ALLOC(ws->dxa, T * E);
    ALLOC(ws->xo, T * E);
    ALLOC(ws->dhead, T * E);
    ALLOC(ws->rs1, T);
    ALLOC(ws->rs2, T);
    ALLOC(ws->rs_out, T);
    ALLOC(ws->q, T * (size_t)ws->Dq);
    ALLOC(ws->att, T * (size_t)ws->Dq);
    ALLOC(ws->dq, T * (size_t)ws->Dq);
    ALLOC(ws->datt, T * (size_t)ws->Dq);
    ALLOC(ws->k, T * (size_t)ws->Dkv);
    ALLOC(ws->v, T * (size_t)ws->Dkv);
    ALLOC(ws->dk, T * (size_t)ws->Dkv);
    ALLOC(ws->dv, T * (size_t)ws->Dkv);
    ALLOC(ws->lse, T * (size_t)ws->H);
    ALLOC(ws->delta, T * (size_t)ws->H);
    ALLOC(ws->g, T * F);
    ALLOC(ws->u, T * F);
    ALLOC(ws->h, T * F);
    ALLOC(ws->dh, T * F);
    ALLOC(ws->dg, T * F);
    ALLOC(ws->du, T * F);
    ALLOC(ws->dua, T * (size_t)ws->R);
    for (int t = 0; t < SLM_LORAT_N_TARGETS; t++) ALLOC(ws->ua[t], T * (size_t)ws->R);
    ALLOC(ws->head_in, (size_t)ws->head_chunk * E);
    ALLOC(ws->logits, (size_t)ws->head_chunk * (size_t)ws->V);
    ALLOC(ws->tiles, (size_t)ws->n_threads * ws->tile_stride);
    ALLOC(ws->scores, (size_t)ws->n_threads * T);
    ws->wt_floats = (size_t)1 << 20;
    if (ws->wt_floats < 16 * maxk) ws->wt_floats = 16 * maxk;
    ALLOC(ws->wt, ws->wt_floats);
    {
        /* a tile has at most max(16, wt_floats / k) of a matrix's m rows */
        size_t mink = E < F ? E : F, maxm = (size_t)ws->V;
        if ((size_t)ws->Dq < mink) mink = (size_t)ws->Dq;
        if ((size_t)ws->Dkv < mink) mink = (size_t)ws->Dkv;
        if (F > maxm) maxm = F;
        if (E > maxm) maxm = E;
        if ((size_t)ws->Dq > maxm) maxm = (size_t)ws->Dq;
        size_t rows = ws->wt_floats / (mink ? mink : 1);
        if (rows < 16) rows = 16;
        ALLOC(ws->dyt, T * (rows < maxm ? rows : maxm));
    }
    ALLOC(ws->dxt, T * maxk);
#undef ALLOC
    if (!(ws->head_rows = malloc(sizeof(int) * (size_t)ws->head_chunk))) goto oom;
    rope_tables(ws);
    return ws;
oom:
    train_ws_free(ws);
    slm_err(err, err_len, "out of memory for the training buffers (context %d)", ctx);
    return NULL;
}
