/* slm_matmul: the exact reference path and the driver of the fast (quantized-activation) path. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm_big.h"
#include "kernels/kernels_impl.h"

/* Elements dequantized at a time on the exact path: a multiple of every block size, small enough
 * for the stack, so the exact path needs no heap at all. */
#define EXACT_CHUNK 256

typedef struct exact_job {
    const slm_weight *w;
    const float *x;
    int n_tok;
    float *y;
} exact_job;

static void split_range(int64_t n, int ith, int nth, int64_t *begin, int64_t *end) {
    *begin = n * ith / nth;
    *end = n * (ith + 1) / nth;
}

/* Eight independent f32 partial sums: still plain f32 math (the oracle needs no fast-math), but
 * without one long dependency chain, so the reference path of a 1B model takes seconds, not minutes. */
static float dot_f32(const float *a, const float *b, int64_t n) {
    float acc[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += a[i + j] * b[i + j];
    float sum = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

static void exact_task(void *arg, int ith, int nth) {
    const exact_job *job = arg;
    const slm_weight *w = job->w;
    const int64_t k = w->k, m = w->m;
    float buf[EXACT_CHUNK];
    int64_t r0, r1;
    split_range(m, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
        for (int t = 0; t < job->n_tok; t++) job->y[(int64_t)t * m + r] = 0.0f;
        for (int64_t c0 = 0; c0 < k; c0 += EXACT_CHUNK) {
            int64_t n = k - c0 < EXACT_CHUNK ? k - c0 : EXACT_CHUNK;
            slm_dequantize_row(w->type, row + slm_row_bytes(w->type, c0), buf, n);
            for (int t = 0; t < job->n_tok; t++)
                job->y[(int64_t)t * m + r] += dot_f32(buf, job->x + (int64_t)t * k + c0, n);
        }
    }
}

static void matmul_exact(slm_pool *pool, const slm_weight *w, const float *x, int n_tok, float *y) {
    exact_job job = {w, x, n_tok, y};
    slm_pool_run(pool, exact_task, &job);
}

slm_quantize_act_fn slm_act_quantizer(const slm_kernel_table *t, slm_act_kind kind) {
    switch (kind) {
    case SLM_ACT_Q8: return t->quantize_q8;
    case SLM_ACT_Q8K: return t->quantize_q8k;
    case SLM_ACT_Q8P: return t->quantize_q8p;
    case SLM_ACT_Q8PS: return t->quantize_q8ps;
    default: return NULL;
    }
}

size_t slm_act_row_bytes(slm_act_kind kind, int64_t k) {
    switch (kind) {
    case SLM_ACT_Q8: return (size_t)(k / SLM_QK) * sizeof(slm_act_q8);
    case SLM_ACT_Q8K: return (size_t)(k / SLM_QK_K) * sizeof(block_q8_K);
    case SLM_ACT_Q8P:
    case SLM_ACT_Q8PS: return ((size_t)k + (size_t)(k / SLM_QK) * 12 + 63) & ~(size_t)63;
    case SLM_ACT_I16: return ((size_t)k * sizeof(int16_t) + (size_t)(k / SLM_I16_BLOCK) * sizeof(float) + 63) & ~(size_t)63;
    case SLM_ACT_F32:
    default: return (size_t)k * sizeof(float);
    }
}

/* Rows handed out per grab: enough work to amortise the atomic, small enough that both threads
 * finish together even when one of them is interrupted. */
#define ROW_TILE 16
#define TOKEN_TILE 64

#define MAX_FUSED 4
/* Below this many tokens the per-row unpacking of the batched GEMM does not pay off. */
#define BIG_GEMM_MIN_TOKENS 8
/* 64-element steps per k block of the batched GEMM (a multiple of 4): 4 weight + 4 activation
 * rows of 2048 elements (u8 values + f32 lane scales) are 32 KiB, within L1. */
#define BIG_K_STEPS 32

/* The float-weight GEMM (slm_float_gemm) takes batches of 12 tokens or more. Converting the rows
 * costs about as much as 12 tokens of per-token dots (bench_kernels float, F16 3072 x 768, one
 * thread, AVX-512: 0.48x the per-token dots at 4 tokens, 0.77x at 8, 1.14x at 16, 2.4x at 128), so
 * below that the dots stay: a server decoding 2-11 sequences of a float-weight model must not pay
 * for prefill's speed. The two paths add in different orders, so a short input encoded alone and
 * the same input in a big batch differ by rounding (7e-5 on a normalised embedding, measured;
 * conf_embed and test_model allow 1e-4 / 5e-4 on the fast path and stay strict on --exact). */
#define FGEMM_MIN_TOKENS 12
#define FGEMM_K_BLOCK 128
/* A multiple of every ISA's token tile (AVX-512 12, AVX2 6, scalar 4), so no block ends in a
 * short tile: 256 left a 4-token AVX-512 tail in every block. */
#define FGEMM_TOKEN_BLOCK 264
#define FGEMM_TILE_ROWS (2 * SLM_FGEMM_GROUP)
/* The converted rows of one chunk, at most (the panel is written once and read per token block). */
#define FGEMM_PANEL_BYTES (512 * 1024)
/* The int16 GEMM: 256 columns of 32 rows (16 KiB) stay in L1 while a token block streams past. */
#define I16_K_BLOCK 256

typedef struct fast_job {
    int n_w;
    const slm_weight *w[MAX_FUSED];
    float *y[MAX_FUSED];
    int64_t first_chunk[MAX_FUSED + 1]; /* chunk index where weight i starts */
    slm_act_kind act_kind;              /* all fused weights share the activation format */
    const slm_type_kernels *kern_of[MAX_FUSED];
    slm_packed_gemm_fn packed_of[MAX_FUSED]; /* non-NULL: weight i is read through its R16 copy */
    const slm_kernel_table *table;
    slm_pool *pool;
    const float *x;
    int64_t k;
    const uint8_t *act; /* quantized activations, or x itself when the kernel takes f32 */
    const slm_gemm_big *big; /* non-NULL: the batched GEMM path with canonical rows */
    bool fgemm;              /* float weights through table->fgemm */
    bool i16;                /* F16 weights through their int16 copies and table->i16 */
    uint8_t *xact;           /* canonical activation rows for it */
    size_t xrow_bytes;
    size_t act_stride;
    int n_tok;
    int64_t rows_per_chunk;
    _Atomic int64_t next_chunk;
} fast_job;

static void quantize_task(void *arg, int ith, int nth) {
    fast_job *job = arg;
    int64_t t0, t1;
    split_range(job->n_tok, ith, nth, &t0, &t1);
    slm_quantize_act_fn quantize = slm_act_quantizer(job->table, job->act_kind);
    for (int64_t t = t0; t < t1; t++) {
        uint8_t *a = (uint8_t *)job->act + t * job->act_stride;
        if (job->i16) {
            job->table->i16.quantize(job->k, job->x + t * job->k, a);
            continue;
        }
        quantize(job->k, job->x + t * job->k, a);
        if (job->big) job->big->convert_act(job->act_kind, job->k, a, job->xact + (size_t)t * job->xrow_bytes);
    }
}

/* Rows r0..r1 of weight wi through the batched GEMM: unpack them once into this thread's scratch,
 * then sweep token tiles small enough to stay in L2 with them. */
static bool compute_rows_big(const fast_job *job, int wi, int64_t r0, int64_t r1, int ith) {
    const slm_weight *w = job->w[wi];
    const slm_gemm_big *big = job->big;
    const size_t rb = job->xrow_bytes;
    uint8_t *wbuf = slm_pool_scratch(job->pool, ith, rb * (size_t)(r1 - r0));
    if (!wbuf) return false;
    for (int64_t r = r0; r < r1; r++)
        big->unpack_row(w->type, w->k, (const uint8_t *)w->data + (size_t)r * w->row_bytes, wbuf + (size_t)(r - r0) * rb);
    int tt = (int)((512 * 1024) / rb);
    tt = tt < SLM_GEMM_BIG_TILE ? SLM_GEMM_BIG_TILE : tt / SLM_GEMM_BIG_TILE * SLM_GEMM_BIG_TILE;
    const int64_t m = w->m, n_steps = big->steps(w->k);
    for (int tb = 0; tb < job->n_tok; tb += tt) {
        int te = tb + tt < job->n_tok ? tb + tt : job->n_tok;
        /* k blocks keep the rows of one 4x4 tile within L1 */
        for (int64_t p0 = 0; p0 < n_steps; p0 += BIG_K_STEPS) {
            int64_t p1 = p0 + BIG_K_STEPS < n_steps ? p0 + BIG_K_STEPS : n_steps;
            for (int64_t r = r0; r < r1; r += SLM_GEMM_BIG_TILE) {
                int nr = r1 - r < SLM_GEMM_BIG_TILE ? (int)(r1 - r) : SLM_GEMM_BIG_TILE;
                for (int t = tb; t < te; t += SLM_GEMM_BIG_TILE) {
                    int nt = te - t < SLM_GEMM_BIG_TILE ? te - t : SLM_GEMM_BIG_TILE;
                    big->tile(w->k, wbuf + (size_t)(r - r0) * rb, rb, nr, job->xact + (size_t)t * rb, rb, nt,
                              job->y[wi] + (int64_t)t * m + r, (size_t)m, p0, p1, p0 > 0);
                }
            }
        }
    }
    return true;
}

/* Rows r0..r1 of a float weight through the float GEMM: convert them once into this thread's
 * scratch (groups of 16 rows, k-major), then per token block and column block let each 32-row
 * slice of the panel meet every token of the block. */
static bool compute_rows_float(const fast_job *job, int wi, int64_t r0, int64_t r1, int ith) {
    const slm_weight *w = job->w[wi];
    const slm_float_gemm *fg = &job->table->fgemm;
    const int64_t k = w->k, m = w->m;
    const size_t group_floats = (size_t)k * SLM_FGEMM_GROUP;
    const int64_t n_groups = (r1 - r0 + SLM_FGEMM_GROUP - 1) / SLM_FGEMM_GROUP;
    float *panel = slm_pool_scratch(job->pool, ith, group_floats * sizeof(float) * (size_t)n_groups);
    if (!panel) return false;
    for (int64_t g = 0; g < n_groups; g++) {
        const int64_t r = r0 + g * SLM_FGEMM_GROUP;
        const int nr = r1 - r < SLM_FGEMM_GROUP ? (int)(r1 - r) : SLM_FGEMM_GROUP;
        fg->pack(w->type, k, (const uint8_t *)w->data + (size_t)r * w->row_bytes, w->row_bytes, nr,
                 panel + (size_t)g * group_floats);
    }
    for (int tb = 0; tb < job->n_tok; tb += FGEMM_TOKEN_BLOCK) {
        const int nt = job->n_tok - tb < FGEMM_TOKEN_BLOCK ? job->n_tok - tb : FGEMM_TOKEN_BLOCK;
        for (int64_t k0 = 0; k0 < k; k0 += FGEMM_K_BLOCK) {
            const int64_t kb = k - k0 < FGEMM_K_BLOCK ? k - k0 : FGEMM_K_BLOCK;
            for (int64_t r = r0; r < r1; r += FGEMM_TILE_ROWS) {
                const int nr = r1 - r < FGEMM_TILE_ROWS ? (int)(r1 - r) : FGEMM_TILE_ROWS;
                fg->tile(kb, panel + (size_t)((r - r0) / SLM_FGEMM_GROUP) * group_floats + (size_t)k0 * SLM_FGEMM_GROUP,
                         group_floats, nr, job->x + (size_t)tb * (size_t)k + (size_t)k0, (size_t)k, nt,
                         job->y[wi] + (size_t)tb * (size_t)m + (size_t)r, (size_t)m, k0 > 0);
            }
        }
    }
    return true;
}

/* Rows r0..r1 (whole groups of 16) of an F16 weight through its int16 copy: as compute_rows_float,
 * with the panel made at load. Every (row, token) sum runs over the same column blocks in the same
 * order whatever the batch, so a token's result does not depend on the tokens beside it. */
static void compute_rows_i16(const fast_job *job, int wi, int64_t r0, int64_t r1) {
    const slm_weight *w = job->w[wi];
    const slm_i16_gemm *ig = &job->table->i16;
    const int64_t k = w->k, m = w->m;
    const size_t group_bytes = slm_i16_group_bytes(k);
    const uint8_t *panel = (const uint8_t *)w->packed + (size_t)(r0 / SLM_I16_GROUP) * group_bytes;
    for (int tb = 0; tb < job->n_tok; tb += FGEMM_TOKEN_BLOCK) {
        const int nt = job->n_tok - tb < FGEMM_TOKEN_BLOCK ? job->n_tok - tb : FGEMM_TOKEN_BLOCK;
        for (int64_t k0 = 0; k0 < k; k0 += I16_K_BLOCK) {
            const int64_t kb = k - k0 < I16_K_BLOCK ? k - k0 : I16_K_BLOCK;
            for (int64_t r = r0; r < r1; r += FGEMM_TILE_ROWS) {
                const int nr = r1 - r < FGEMM_TILE_ROWS ? (int)(r1 - r) : FGEMM_TILE_ROWS;
                ig->tile(k, k0, kb, panel + (size_t)((r - r0) / SLM_I16_GROUP) * group_bytes, group_bytes, nr,
                         job->act + (size_t)tb * job->act_stride, job->act_stride, nt,
                         job->y[wi] + (size_t)tb * (size_t)m + (size_t)r, (size_t)m, k0 > 0);
            }
        }
    }
}

/* Rows r0..r1 (whole groups of 16) of a packed weight: each token tile meets every group of the
 * chunk, so the chunk's weights are read from L2 once per tile and the tile stays in L1. */
static void compute_rows_packed(const fast_job *job, int wi, int64_t r0, int64_t r1) {
    const slm_weight *w = job->w[wi];
    const size_t gb = slm_packed_group_bytes(w->type, w->k);
    const uint8_t *packed = w->packed;
    for (int t = 0; t < job->n_tok; t += SLM_PACKED_MAX_TOKENS) {
        int nt = job->n_tok - t < SLM_PACKED_MAX_TOKENS ? job->n_tok - t : SLM_PACKED_MAX_TOKENS;
        const uint8_t *act = job->act + (size_t)t * job->act_stride;
        float *y = job->y[wi] + (int64_t)t * w->m;
        int64_t r = r0;
        for (; r + SLM_PACKED_ROWS <= r1; r += SLM_PACKED_ROWS)
            job->packed_of[wi](w->k, packed + (size_t)(r / SLM_PACKED_ROWS) * gb, act, job->act_stride, nt, y + r,
                               (size_t)w->m);
        if (r < r1) { /* the zero-padded last group: its 16 outputs go through a tile, the real ones on */
            float tile[SLM_PACKED_MAX_TOKENS * SLM_PACKED_ROWS];
            job->packed_of[wi](w->k, packed + (size_t)(r / SLM_PACKED_ROWS) * gb, act, job->act_stride, nt, tile,
                               SLM_PACKED_ROWS);
            for (int i = 0; i < nt; i++)
                memcpy(y + (int64_t)i * w->m + r, tile + i * SLM_PACKED_ROWS, sizeof(float) * (size_t)(r1 - r));
        }
    }
}

static void compute_rows(const fast_job *job, int wi, int64_t r0, int64_t r1) {
    const slm_weight *w = job->w[wi];
    float *y = job->y[wi];
    const int64_t m = w->m;
    slm_vec_dot_fn vec_dot = job->kern_of[wi]->vec_dot;
    slm_gemm_fn gemm = job->kern_of[wi]->gemm;
    if (job->n_tok == 1) {
        for (int64_t r = r0; r < r1; r++)
            y[r] = vec_dot(w->k, (const uint8_t *)w->data + (size_t)r * w->row_bytes, job->act);
        return;
    }
    /* GEMM order: a tile of weight rows stays in L1/L2 while it meets a tile of tokens. */
    for (int64_t rb = r0; rb < r1; rb += ROW_TILE) {
        int64_t re = rb + ROW_TILE < r1 ? rb + ROW_TILE : r1;
        for (int tb = 0; tb < job->n_tok; tb += TOKEN_TILE) {
            int te = tb + TOKEN_TILE < job->n_tok ? tb + TOKEN_TILE : job->n_tok;
            for (int64_t r = rb; r < re; r++) {
                const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
                if (gemm) {
                    for (int t = tb; t < te; t += SLM_GEMM_MAX_TOKENS) {
                        int nt = te - t < SLM_GEMM_MAX_TOKENS ? te - t : SLM_GEMM_MAX_TOKENS;
                        gemm(w->k, row, job->act + (size_t)t * job->act_stride, job->act_stride, nt,
                             y + (int64_t)t * m + r, (size_t)m);
                    }
                } else {
                    for (int t = tb; t < te; t++)
                        y[(int64_t)t * m + r] = vec_dot(w->k, row, job->act + (size_t)t * job->act_stride);
                }
            }
        }
    }
}

static void compute_task(void *arg, int ith, int nth) {
    fast_job *job = arg;
    (void)nth;
    int wi = 0;
    for (;;) {
        int64_t c = atomic_fetch_add_explicit(&job->next_chunk, 1, memory_order_relaxed);
        if (c >= job->first_chunk[job->n_w]) break;
        while (c >= job->first_chunk[wi + 1]) wi++;
        int64_t r0 = (c - job->first_chunk[wi]) * job->rows_per_chunk;
        int64_t r1 = r0 + job->rows_per_chunk < job->w[wi]->m ? r0 + job->rows_per_chunk : job->w[wi]->m;
        if (job->i16) compute_rows_i16(job, wi, r0, r1);
        else if (job->packed_of[wi]) compute_rows_packed(job, wi, r0, r1);
        else if (job->fgemm && compute_rows_float(job, wi, r0, r1, ith)) continue;
        else if (!job->big || !compute_rows_big(job, wi, r0, r1, ith)) compute_rows(job, wi, r0, r1);
    }
}

static bool is_float_weight(uint32_t type) {
    return type == SLM_TYPE_F32 || type == SLM_TYPE_F16 || type == SLM_TYPE_BF16;
}

static slm_packed_gemm_fn packed_kernel(const slm_kernel_table *table, const slm_weight *w) {
    return w->packed && w->type < SLM_TYPE_COUNT ? table->packed_gemm[w->type] : NULL;
}

/* An F16 weight's packed copy is its int16 one (slm_weight_pack); without the int16 kernels (a
 * lower ISA forced by a test) such a weight is read from its mapped F16 rows like any other. */
static bool i16_copy(const slm_kernel_table *table, const slm_weight *w) {
    return w->packed && w->type == SLM_TYPE_F16 && table->i16.tile && table->i16.quantize && w->k % SLM_I16_BLOCK == 0;
}

/* The activation format w is multiplied with: the packed kernels read the in-order planar one. */
static slm_act_kind act_kind_of(const slm_kernel_table *table, const slm_weight *w) {
    if (i16_copy(table, w)) return SLM_ACT_I16;
    return packed_kernel(table, w) ? SLM_ACT_Q8P : table->types[w->type].act;
}

/* Returns false (having done nothing) if the pool has no memory for the activations. */
static bool matmul_fast(slm_pool *pool, const slm_kernel_table *table, const slm_weight *const *w, int n_w,
                        const float *x, int n_tok, float *const *y) {
    fast_job job = {.n_w = n_w, .table = table, .pool = pool, .x = x, .k = w[0]->k, .n_tok = n_tok};
    job.act_kind = act_kind_of(table, w[0]);
    int64_t total_rows = 0;
    bool any_packed = false;
    for (int i = 0; i < n_w; i++) {
        job.w[i] = w[i];
        job.y[i] = y[i];
        job.kern_of[i] = &table->types[w[i]->type];
        job.packed_of[i] = packed_kernel(table, w[i]);
        any_packed |= job.packed_of[i] != NULL;
        total_rows += w[i]->m;
    }
    if (job.act_kind == SLM_ACT_I16) { /* every batch size: the F16 rows may have been released */
        job.i16 = true;
        job.act_stride = slm_act_row_bytes(SLM_ACT_I16, job.k);
        uint8_t *act = slm_pool_shared_scratch(pool, job.act_stride * (size_t)n_tok);
        if (!act) return false;
        job.act = act;
        if (n_tok >= 4) slm_pool_run(pool, quantize_task, &job);
        else quantize_task(&job, 0, 1);
    } else if (job.act_kind == SLM_ACT_F32) {
        job.act = (const uint8_t *)x;
        job.act_stride = (size_t)job.k * sizeof(float);
        job.fgemm = n_tok >= FGEMM_MIN_TOKENS && table->fgemm.pack && table->fgemm.tile && !any_packed;
        for (int i = 0; job.fgemm && i < n_w; i++) job.fgemm = is_float_weight(w[i]->type);
    } else {
        job.act_stride = slm_act_row_bytes(job.act_kind, job.k);
        size_t act_bytes = (job.act_stride * (size_t)n_tok + 63) & ~(size_t)63;
        bool big = table->big && n_tok >= BIG_GEMM_MIN_TOKENS && !any_packed;
        for (int i = 0; big && i < n_w; i++) big = table->big->type_supported(w[i]->type);
        size_t xrow = big ? table->big->row_bytes(job.k) : 0;
        uint8_t *act = slm_pool_shared_scratch(pool, act_bytes + xrow * (size_t)n_tok);
        if (!act) return false;
        job.act = act;
        if (big) {
            job.big = table->big;
            job.xact = act + act_bytes;
            job.xrow_bytes = xrow;
        }
        if (n_tok >= 4) {
            slm_pool_run(pool, quantize_task, &job);
        } else {
            quantize_task(&job, 0, 1);
        }
    }
    int nth = slm_pool_size(pool);
    /* About eight chunks per thread, in whole row tiles. */
    int64_t per = (total_rows + (int64_t)nth * 8 - 1) / ((int64_t)nth * 8);
    per = (per + ROW_TILE - 1) / ROW_TILE * ROW_TILE;
    if (per < ROW_TILE) per = ROW_TILE;
    if (job.big) { /* the unpacked rows of a chunk should stay in L2 while the token tiles stream by */
        int64_t cap = (int64_t)((384 * 1024) / job.xrow_bytes) / SLM_GEMM_BIG_TILE * SLM_GEMM_BIG_TILE;
        if (cap < SLM_GEMM_BIG_TILE) cap = SLM_GEMM_BIG_TILE;
        if (per > cap) per = cap;
    }
    if (any_packed && n_tok > SLM_PACKED_MAX_TOKENS) { /* a chunk's packed rows stay in L2 across token tiles */
        int64_t cap = (int64_t)((256 * 1024) / slm_packed_group_bytes(w[0]->type, job.k)) * SLM_PACKED_ROWS;
        if (cap < SLM_PACKED_ROWS) cap = SLM_PACKED_ROWS;
        if (per > cap) per = cap;
    }
    if (job.fgemm || job.i16) { /* whole 32-row tiles, and the converted rows of a chunk stay in L2 */
        /* twice as many chunks: a chunk is a long run of FMAs here, and a thread the machine
         * preempts should leave less behind for the others to wait on */
        per = (total_rows + (int64_t)nth * 16 - 1) / ((int64_t)nth * 16);
        const size_t row_bytes = (size_t)job.k * (job.i16 ? sizeof(int16_t) : sizeof(float));
        int64_t cap = (int64_t)(FGEMM_PANEL_BYTES / row_bytes) / FGEMM_TILE_ROWS * FGEMM_TILE_ROWS;
        if (cap < FGEMM_TILE_ROWS) cap = FGEMM_TILE_ROWS;
        per = (per + FGEMM_TILE_ROWS - 1) / FGEMM_TILE_ROWS * FGEMM_TILE_ROWS;
        if (per > cap) per = cap;
    }
    job.rows_per_chunk = per;
    job.first_chunk[0] = 0;
    for (int i = 0; i < n_w; i++) job.first_chunk[i + 1] = job.first_chunk[i] + (w[i]->m + per - 1) / per;
    atomic_init(&job.next_chunk, 0);
    slm_pool_run(pool, compute_task, &job);
    return true;
}

static bool fast_path_usable(slm_pool *pool, const slm_kernel_table *table, const slm_weight *w) {
    return pool && table && w->type < SLM_TYPE_COUNT && table->types[w->type].vec_dot;
}

void slm_matmul_with(slm_pool *pool, const slm_kernel_table *table, const slm_weight *w, const float *x, int n_tok,
                     float *y) {
    if (n_tok <= 0 || w->m <= 0) return;
    if (!fast_path_usable(pool, table, w) || !matmul_fast(pool, table, &w, 1, x, n_tok, &y))
        matmul_exact(pool, w, x, n_tok, y);
}

void slm_matmul(slm_pool *pool, const slm_weight *w, const float *x, int n_tok, float *y, bool exact) {
    if (n_tok <= 0 || w->m <= 0) return;
    if (exact) {
        matmul_exact(pool, w, x, n_tok, y);
        return;
    }
    slm_matmul_with(pool, slm_kernels_active(), w, x, n_tok, y);
}

void slm_matmul_multi_with(slm_pool *pool, const slm_kernel_table *table, const slm_weight *const *w, int n_w,
                           const float *x, int n_tok, float *const *y) {
    if (n_tok <= 0 || n_w <= 0) return;
    bool fusable = n_w <= MAX_FUSED && table;
    for (int i = 0; fusable && i < n_w; i++)
        fusable = fast_path_usable(pool, table, w[i]) && w[i]->k == w[0]->k && w[i]->m > 0 &&
                  act_kind_of(table, w[i]) == act_kind_of(table, w[0]);
    if (fusable && matmul_fast(pool, table, w, n_w, x, n_tok, y)) return;
    for (int i = 0; i < n_w; i++) slm_matmul_with(pool, table, w[i], x, n_tok, y[i]);
}

void slm_matmul_multi(slm_pool *pool, const slm_weight *const *w, int n_w, const float *x, int n_tok, float *const *y,
                      bool exact) {
    if (exact) {
        for (int i = 0; i < n_w; i++) slm_matmul(pool, w[i], x, n_tok, y[i], true);
        return;
    }
    slm_matmul_multi_with(pool, slm_kernels_active(), w, n_w, x, n_tok, y);
}

void slm_weight_row_f32(const slm_weight *w, int64_t row, float *dst) {
    /* the source pages may have been released; an F16 weight's copy is the int16 one, which is
     * not the weights, so its row is read back from the mapping */
    if (w->packed && w->type != SLM_TYPE_F16) {
        slm_packed_row_f32(w, row, dst);
        return;
    }
    slm_dequantize_row(w->type, (const uint8_t *)w->data + (size_t)row * w->row_bytes, dst, w->k);
}
