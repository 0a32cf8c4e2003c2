/* Packing weights into the row-interleaved R16 layout (see packed.h), and the public entry points
 * that give a weight its packed copy. Plain byte moves: the layout is the same on every ISA, only
 * the kernels that read it are ISA-specific. */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels_impl.h"
#include "kernels/packed.h"
#include "kernels/pool.h"
#include "kernels/unpack.h"

bool slm_packed_layout_exists(uint32_t type, int64_t k, int64_t m) {
    const bool kquant = type == SLM_TYPE_Q4_K || type == SLM_TYPE_Q5_K || type == SLM_TYPE_Q6_K;
    const int64_t block = kquant ? SLM_QK_K : SLM_QK;
    return (kquant || type == SLM_TYPE_Q8_0 || type == SLM_TYPE_Q4_0 || type == SLM_TYPE_Q5_0) && k > 0 &&
           k % block == 0 && m > 0;
}

size_t slm_packed_group_bytes(uint32_t type, int64_t k) {
    if (type == SLM_TYPE_Q4_K) return (size_t)(k / SLM_QK_K) * SLM_PACKED_Q4_K_BYTES;
    if (type == SLM_TYPE_Q5_K) return (size_t)(k / SLM_QK_K) * SLM_PACKED_Q5_K_BYTES;
    if (type == SLM_TYPE_Q6_K) return (size_t)(k / SLM_QK_K) * SLM_PACKED_Q6_K_BYTES;
    const size_t pairs = (size_t)(k / SLM_QK + 1) / 2;
    return pairs * (2 * slm_packed_block_bytes(type) + 64);
}

/* Rows of group g that exist: the last group of a matrix whose rows are not a multiple of 16 is
 * padded with zero rows (weights and scales 0), whose outputs the driver drops. */
static int group_rows(const slm_weight *w, int64_t g) {
    const int64_t left = w->m - g * SLM_PACKED_ROWS;
    return left < SLM_PACKED_ROWS ? (int)left : SLM_PACKED_ROWS;
}

/* Q4_K and Q5_K share one layout: pairs of sub-blocks (Q5_K's followed by their fifth-bit masks),
 * then the scales, minimums, d and dmin of the 16 rows. */
typedef struct kpair_layout {
    size_t sb_bytes, pair, scales, mins, d, dmin;
} kpair_layout;

static kpair_layout kpair_layout_of(uint32_t type) {
    if (type == SLM_TYPE_Q5_K)
        return (kpair_layout){SLM_PACKED_Q5_K_BYTES, SLM_PACKED_Q5_K_PAIR, SLM_PACKED_Q5_K_SCALES,
                              SLM_PACKED_Q5_K_MINS, SLM_PACKED_Q5_K_D, SLM_PACKED_Q5_K_DMIN};
    return (kpair_layout){SLM_PACKED_Q4_K_BYTES, 512, SLM_PACKED_Q4_K_SCALES, SLM_PACKED_Q4_K_MINS,
                          SLM_PACKED_Q4_K_D, SLM_PACKED_Q4_K_DMIN};
}

/* Q4_K / Q5_K rows into the pair layout. Q5_K's fifth bit of element 32s + l, bit s of qh[l], goes
 * to its pair's mask; the masks are ORed in row by row, so the group starts zeroed. */
static void pack_kpair_group(const slm_weight *w, int64_t g, uint8_t *dst) {
    const bool q5 = w->type == SLM_TYPE_Q5_K;
    const kpair_layout L = kpair_layout_of(w->type);
    const int64_t nsb = w->k / SLM_QK_K;
    if (q5 || group_rows(w, g) < SLM_PACKED_ROWS) memset(dst, 0, slm_packed_group_bytes(w->type, w->k));
    for (int r = 0; r < group_rows(w, g); r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)(g * SLM_PACKED_ROWS + r) * w->row_bytes;
        for (int64_t s = 0; s < nsb; s++) {
            const block_q4_K *b4 = q5 ? NULL : (const block_q4_K *)row + s;
            const block_q5_K *b5 = q5 ? (const block_q5_K *)row + s : NULL;
            const uint8_t *qs = q5 ? b5->qs : b4->qs, *scales = q5 ? b5->scales : b4->scales;
            const slm_half d = q5 ? b5->d : b4->d, dmin = q5 ? b5->dmin : b4->dmin;
            uint8_t *sb = dst + (size_t)s * L.sb_bytes;
            for (int p = 0; p < 4; p++) {
                uint8_t *pair = sb + p * L.pair;
                for (int j = 0; j < 8; j++) memcpy(pair + j * SLM_PACKED_ROWS * 4 + r * 4, qs + 32 * p + 4 * j, 4);
                for (int h = 0; q5 && h < 2; h++)
                    for (int j = 0; j < 8; j++) {
                        uint64_t mask;
                        memcpy(&mask, pair + 512 + 8 * (8 * h + j), 8);
                        for (int i = 0; i < 4; i++)
                            if (b5->qh[4 * j + i] >> (2 * p + h) & 1) mask |= (uint64_t)1 << (4 * r + i);
                        memcpy(pair + 512 + 8 * (8 * h + j), &mask, 8);
                    }
            }
            for (int j = 0; j < 8; j++) {
                int sc, mn;
                slm_kquant_scale_min(j, scales, &sc, &mn);
                sb[L.scales + j * SLM_PACKED_ROWS + r] = (uint8_t)sc;
                sb[L.mins + j * SLM_PACKED_ROWS + r] = (uint8_t)mn;
            }
            memcpy(sb + L.d + r * 2, &d, 2);
            memcpy(sb + L.dmin + r * 2, &dmin, 2);
        }
    }
}

static inline uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Four bytes at a time: element e = 128n + 32c + l of a source block has its low four bits in
 * ql[64n + 32(c%2) + l] (low nibble for c < 2, high for c >= 2) and its top two in bits 2c of
 * qh[32n + l]. Block b of the packed layout holds elements 32b..32b+31, so c = b % 4. */
static void pack_q6_K_group(const slm_weight *w, int64_t g, uint8_t *dst) {
    const int64_t nsb = w->k / SLM_QK_K;
    memset(dst, 0, slm_packed_group_bytes(w->type, w->k)); /* the padding */
    for (int r = 0; r < group_rows(w, g); r++) {
        const block_q6_K *row = (const block_q6_K *)((const uint8_t *)w->data + (size_t)(g * SLM_PACKED_ROWS + r) * w->row_bytes);
        for (int64_t s = 0; s < nsb; s++) {
            const block_q6_K *src = &row[s];
            uint8_t *sb = dst + (size_t)s * SLM_PACKED_Q6_K_BYTES;
            for (int b = 0; b < 8; b++) {
                const int n = b / 4, c = b % 4;
                const uint8_t *ql = src->ql + 64 * n + 32 * (c % 2), *qh = src->qh + 32 * n;
                uint8_t *nib = sb + b * SLM_PACKED_Q6_K_BLOCK + r * 4, *top = nib + 256;
                for (int j = 0; j < 4; j++) {
                    const uint32_t lo = load_u32(ql + 4 * j) >> (4 * (c / 2)) & 0x0f0f0f0fu;
                    const uint32_t hi = load_u32(ql + 16 + 4 * j) >> (4 * (c / 2)) & 0x0f0f0f0fu;
                    const uint32_t word = lo | hi << 4;
                    memcpy(nib + j * 64, &word, 4);
                }
                for (int half = 0; half < 2; half++) {
                    uint32_t word = 0;
                    for (int j = 0; j < 4; j++) word |= (load_u32(qh + 16 * half + 4 * j) >> (2 * c) & 0x03030303u) << (2 * j);
                    memcpy(top + half * 64, &word, 4);
                }
            }
            for (int j = 0; j < 16; j++) sb[SLM_PACKED_Q6_K_SCALES + j * SLM_PACKED_ROWS + r] = (uint8_t)src->scales[j];
            memcpy(sb + SLM_PACKED_Q6_K_D + r * 2, &src->d, 2);
        }
    }
}

void slm_packed_pack_group(const slm_weight *w, int64_t g, uint8_t *dst) {
    if (w->type == SLM_TYPE_Q4_K || w->type == SLM_TYPE_Q5_K) {
        pack_kpair_group(w, g, dst);
        return;
    }
    if (w->type == SLM_TYPE_Q6_K) {
        pack_q6_K_group(w, g, dst);
        return;
    }
    const int64_t nb = w->k / SLM_QK;
    const size_t wbytes = slm_packed_block_bytes(w->type);
    memset(dst, 0, slm_packed_group_bytes(w->type, w->k)); /* the unused half of an odd last pair, the masks */
    for (int r = 0; r < group_rows(w, g); r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)(g * SLM_PACKED_ROWS + r) * w->row_bytes;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *qs;
            slm_half d;
            uint32_t qh = 0;
            if (w->type == SLM_TYPE_Q8_0) {
                const block_q8_0 *blk = (const block_q8_0 *)row + b;
                qs = (const uint8_t *)blk->qs;
                d = blk->d;
            } else if (w->type == SLM_TYPE_Q5_0) {
                const block_q5_0 *blk = (const block_q5_0 *)row + b;
                qs = blk->qs;
                d = blk->d;
                memcpy(&qh, blk->qh, 4);
            } else {
                const block_q4_0 *blk = (const block_q4_0 *)row + b;
                qs = blk->qs;
                d = blk->d;
            }
            uint8_t *out = dst + slm_packed_weights_at(wbytes, b);
            const int steps = w->type == SLM_TYPE_Q8_0 ? 8 : 4;
            for (int j = 0; j < steps; j++) {
                uint8_t *o = out + (size_t)j * SLM_PACKED_ROWS * 4 + (size_t)r * 4;
                memcpy(o, qs + 4 * j, 4);
                if (w->type == SLM_TYPE_Q8_0)
                    for (int i = 0; i < 4; i++) o[i] ^= 0x80;
            }
            if (w->type == SLM_TYPE_Q5_0) {
                for (int h = 0; h < 8; h++) {
                    uint64_t mask;
                    memcpy(&mask, out + 256 + 8 * h, 8);
                    const int first = h < 4 ? 4 * h : 16 + 4 * (h - 4);
                    for (int i = 0; i < 4; i++)
                        if (qh >> (first + i) & 1) mask |= (uint64_t)1 << (4 * r + i);
                    memcpy(out + 256 + 8 * h, &mask, 8);
                }
            }
            memcpy(dst + slm_packed_scales_at(wbytes, b) + (size_t)r * sizeof d, &d, sizeof d);
        }
    }
}

typedef struct pack_job {
    const slm_weight *w;
    uint8_t *dst;
    size_t group_bytes;
    int64_t g0, g1;            /* the groups of this slice */
    const slm_i16_gemm *i16;   /* non-NULL: an F16 weight's int16 copy */
} pack_job;

static void pack_task(void *arg, int ith, int nth) {
    const pack_job *job = arg;
    const slm_weight *w = job->w;
    const int64_t n = job->g1 - job->g0;
    for (int64_t g = job->g0 + n * ith / nth; g < job->g0 + n * (ith + 1) / nth; g++) {
        uint8_t *dst = job->dst + (size_t)g * job->group_bytes;
        if (job->i16)
            job->i16->pack(w->k, (const uint8_t *)w->data + (size_t)g * SLM_I16_GROUP * w->row_bytes, w->row_bytes,
                           SLM_I16_GROUP, dst);
        else
            slm_packed_pack_group(w, g, dst);
    }
}

size_t slm_weight_i16_bytes_for(const slm_kernel_table *table, const slm_weight *w) {
    if (!table || !table->i16.pack || !table->i16.tile || w->type != SLM_TYPE_F16 || w->k <= 0 ||
        w->k % SLM_I16_BLOCK || w->m <= 0 || w->m % SLM_I16_GROUP)
        return 0;
    return slm_i16_group_bytes(w->k) * (size_t)(w->m / SLM_I16_GROUP);
}

static bool env_set(const char *name) {
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

size_t slm_weight_i16_bytes(const slm_weight *w) {
    if (env_set("SLM_NO_PACK") || env_set("SLM_NO_I16")) return 0;
    return slm_weight_i16_bytes_for(slm_kernels_active(), w);
}

size_t slm_weight_packed_bytes_for(const slm_kernel_table *table, const slm_weight *w) {
    if (!table || w->type >= SLM_TYPE_COUNT || !table->packed_gemm[w->type] || !slm_packed_layout_exists(w->type, w->k, w->m))
        return 0;
    return slm_packed_group_bytes(w->type, w->k) * (size_t)((w->m + SLM_PACKED_ROWS - 1) / SLM_PACKED_ROWS);
}

size_t slm_weight_packed_bytes(const slm_weight *w) {
    const char *off = getenv("SLM_NO_PACK");
    if (off && *off && strcmp(off, "0") != 0) return 0;
    return slm_weight_packed_bytes_for(slm_kernels_active(), w);
}

/* Rows packed per pool operation: enough to keep the threads busy, small enough that the source
 * pages can be given back as we go (packing never holds two copies of a big matrix). */
#define PACK_SLICE_BYTES (4u << 20)

void slm_weight_pack(slm_pool *pool, slm_weight *w, void *dst, void (*consumed)(void *ctx, const void *p, size_t n),
                     void *ctx) {
    pack_job job = {w, dst, 0, 0, 0, NULL};
    if (w->type == SLM_TYPE_F16) {
        const slm_kernel_table *table = slm_kernels_active();
        if (!slm_weight_i16_bytes_for(table, w)) return; /* no int16 kernels here: w stays unpacked */
        job.i16 = &table->i16;
        job.group_bytes = slm_i16_group_bytes(w->k);
    } else {
        job.group_bytes = slm_packed_group_bytes(w->type, w->k);
    }
    const int64_t groups = (w->m + SLM_PACKED_ROWS - 1) / SLM_PACKED_ROWS; /* the int16 copy: m % 32 == 0 */
    int64_t per = (int64_t)(PACK_SLICE_BYTES / job.group_bytes);
    if (per < 1) per = 1;
    for (int64_t g = 0; g < groups; g += per) {
        job.g0 = g;
        job.g1 = g + per < groups ? g + per : groups;
        slm_pool_run(pool, pack_task, &job);
        if (consumed) {
            const int64_t r0 = job.g0 * SLM_PACKED_ROWS, r1 = job.g1 * SLM_PACKED_ROWS < w->m ? job.g1 * SLM_PACKED_ROWS : w->m;
            consumed(ctx, (const uint8_t *)w->data + (size_t)r0 * w->row_bytes, (size_t)(r1 - r0) * w->row_bytes);
        }
    }
    w->packed = dst;
}

void slm_packed_row_f32(const slm_weight *w, int64_t row, float *dst) {
    const uint8_t *group = (const uint8_t *)w->packed + (size_t)(row / SLM_PACKED_ROWS) * slm_packed_group_bytes(w->type, w->k);
    const int lane = (int)(row % SLM_PACKED_ROWS);
    if (w->type == SLM_TYPE_Q4_K || w->type == SLM_TYPE_Q5_K) { /* slm_dequantize_row's arithmetic */
        const bool q5 = w->type == SLM_TYPE_Q5_K;
        const kpair_layout L = kpair_layout_of(w->type);
        for (int64_t s = 0; s < w->k / SLM_QK_K; s++) {
            const uint8_t *sb = group + (size_t)s * L.sb_bytes;
            slm_half hd, hm;
            memcpy(&hd, sb + L.d + lane * 2, 2);
            memcpy(&hm, sb + L.dmin + lane * 2, 2);
            const float d = slm_fp16_to_fp32(hd), dmin = slm_fp16_to_fp32(hm);
            for (int j = 0; j < 8; j++) {
                const float dj = d * (float)sb[L.scales + j * SLM_PACKED_ROWS + lane];
                const float mj = dmin * (float)sb[L.mins + j * SLM_PACKED_ROWS + lane];
                const uint8_t *pair = sb + (j / 2) * L.pair;
                for (int l = 0; l < 32; l++) {
                    const uint8_t byte = pair[(l / 4) * SLM_PACKED_ROWS * 4 + lane * 4 + l % 4];
                    int q = j % 2 ? byte >> 4 : byte & 0x0f;
                    if (q5) {
                        uint64_t mask;
                        memcpy(&mask, pair + 512 + 8 * (8 * (j % 2) + l / 4), 8);
                        q |= (int)(mask >> (4 * lane + l % 4) & 1) << 4;
                    }
                    dst[s * SLM_QK_K + j * 32 + l] = dj * (float)q - mj;
                }
            }
        }
        return;
    }
    if (w->type == SLM_TYPE_Q6_K) { /* d * sc * (q - 32), as slm_dequantize_row computes it */
        for (int64_t s = 0; s < w->k / SLM_QK_K; s++) {
            const uint8_t *sb = group + (size_t)s * SLM_PACKED_Q6_K_BYTES;
            slm_half hd;
            memcpy(&hd, sb + SLM_PACKED_Q6_K_D + lane * 2, 2);
            const float d = slm_fp16_to_fp32(hd);
            for (int e = 0; e < SLM_QK_K; e++) {
                const uint8_t *nib = sb + (e / 32) * SLM_PACKED_Q6_K_BLOCK, *top = nib + 256;
                const int half = (e % 32) / 16, j = (e % 16) / 4, i = e % 4;
                const int q = (nib[j * 64 + lane * 4 + i] >> (4 * half) & 0x0f) |
                              (top[half * 64 + lane * 4 + i] >> (2 * j) & 3) << 4;
                const float sc = (float)(int8_t)sb[SLM_PACKED_Q6_K_SCALES + (e / 16) * SLM_PACKED_ROWS + lane];
                dst[s * SLM_QK_K + e] = d * sc * (float)(q - 32);
            }
        }
        return;
    }
    const int64_t nb = w->k / SLM_QK;
    const size_t wbytes = slm_packed_block_bytes(w->type);
    for (int64_t b = 0; b < nb; b++) {
        slm_half h;
        memcpy(&h, group + slm_packed_scales_at(wbytes, b) + (size_t)lane * sizeof h, sizeof h);
        const float d = slm_fp16_to_fp32(h);
        const uint8_t *blk = group + slm_packed_weights_at(wbytes, b);
        float *out = dst + b * SLM_QK;
        for (int i = 0; i < SLM_QK; i++) {
            if (w->type == SLM_TYPE_Q8_0) {
                out[i] = d * (float)(int8_t)(blk[(i / 4) * SLM_PACKED_ROWS * 4 + lane * 4 + i % 4] ^ 0x80);
                continue;
            }
            const int j = i % 16; /* nibble i of the block: low half first, then high */
            const uint8_t byte = blk[(j / 4) * SLM_PACKED_ROWS * 4 + lane * 4 + j % 4];
            int q = i < 16 ? byte & 0x0f : byte >> 4;
            if (w->type == SLM_TYPE_Q5_0) {
                uint64_t mask;
                memcpy(&mask, blk + 256 + 8 * ((i < 16 ? 0 : 4) + j / 4), 8);
                q |= (int)(mask >> (4 * lane + j % 4) & 1) << 4;
                out[i] = d * (float)(q - 16);
            } else {
                out[i] = d * (float)(q - 8);
            }
        }
    }
}
