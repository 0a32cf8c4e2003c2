/* Packing weights into the row-interleaved R16 layout (see packed.h), and the public entry points
 * that give a weight its packed copy. Plain byte moves: the layout is the same on every ISA, only
 * the kernels that read it are ISA-specific. */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels_impl.h"
#include "kernels/packed.h"
#include "kernels/pool.h"

bool slm_packed_layout_exists(uint32_t type, int64_t k, int64_t m) {
    return (type == SLM_TYPE_Q8_0 || type == SLM_TYPE_Q4_0) && k > 0 && k % SLM_QK == 0 && m > 0 &&
           m % SLM_PACKED_ROWS == 0;
}

size_t slm_packed_group_bytes(uint32_t type, int64_t k) {
    const size_t pairs = (size_t)(k / SLM_QK + 1) / 2;
    return pairs * (2 * slm_packed_block_bytes(type) + 64);
}

void slm_packed_pack_group(const slm_weight *w, int64_t g, uint8_t *dst) {
    const int64_t nb = w->k / SLM_QK;
    const size_t wbytes = slm_packed_block_bytes(w->type);
    const int steps = (int)(wbytes / (SLM_PACKED_ROWS * 4));
    memset(dst, 0, slm_packed_group_bytes(w->type, w->k)); /* the unused half of an odd last pair */
    for (int r = 0; r < SLM_PACKED_ROWS; r++) {
        const uint8_t *row = (const uint8_t *)w->data + (size_t)(g * SLM_PACKED_ROWS + r) * w->row_bytes;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *qs;
            slm_half d;
            if (w->type == SLM_TYPE_Q8_0) {
                const block_q8_0 *blk = (const block_q8_0 *)row + b;
                qs = (const uint8_t *)blk->qs;
                d = blk->d;
            } else {
                const block_q4_0 *blk = (const block_q4_0 *)row + b;
                qs = blk->qs;
                d = blk->d;
            }
            uint8_t *out = dst + slm_packed_weights_at(wbytes, b) + (size_t)r * 4;
            for (int j = 0; j < steps; j++) {
                uint8_t *o = out + (size_t)j * SLM_PACKED_ROWS * 4;
                memcpy(o, qs + 4 * j, 4);
                if (w->type == SLM_TYPE_Q8_0)
                    for (int i = 0; i < 4; i++) o[i] ^= 0x80;
            }
            memcpy(dst + slm_packed_scales_at(wbytes, b) + (size_t)r * sizeof d, &d, sizeof d);
        }
    }
}

typedef struct pack_job {
    const slm_weight *w;
    uint8_t *dst;
    size_t group_bytes;
    int64_t g0, g1; /* the groups of this slice */
} pack_job;

static void pack_task(void *arg, int ith, int nth) {
    const pack_job *job = arg;
    const int64_t n = job->g1 - job->g0;
    for (int64_t g = job->g0 + n * ith / nth; g < job->g0 + n * (ith + 1) / nth; g++)
        slm_packed_pack_group(job->w, g, job->dst + (size_t)g * job->group_bytes);
}

size_t slm_weight_packed_bytes_for(const slm_kernel_table *table, const slm_weight *w) {
    if (!table || w->type >= SLM_TYPE_COUNT || !table->packed_gemm[w->type] || !slm_packed_layout_exists(w->type, w->k, w->m))
        return 0;
    return slm_packed_group_bytes(w->type, w->k) * (size_t)(w->m / SLM_PACKED_ROWS);
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
    pack_job job = {w, dst, slm_packed_group_bytes(w->type, w->k), 0, 0};
    const int64_t groups = w->m / SLM_PACKED_ROWS;
    int64_t per = (int64_t)(PACK_SLICE_BYTES / job.group_bytes);
    if (per < 1) per = 1;
    for (int64_t g = 0; g < groups; g += per) {
        job.g0 = g;
        job.g1 = g + per < groups ? g + per : groups;
        slm_pool_run(pool, pack_task, &job);
        if (consumed)
            consumed(ctx, (const uint8_t *)w->data + (size_t)job.g0 * SLM_PACKED_ROWS * w->row_bytes,
                     (size_t)(job.g1 - job.g0) * SLM_PACKED_ROWS * w->row_bytes);
    }
    w->packed = dst;
}

void slm_packed_row_f32(const slm_weight *w, int64_t row, float *dst) {
    const int64_t nb = w->k / SLM_QK;
    const size_t wbytes = slm_packed_block_bytes(w->type);
    const uint8_t *group = (const uint8_t *)w->packed + (size_t)(row / SLM_PACKED_ROWS) * slm_packed_group_bytes(w->type, w->k);
    const int lane = (int)(row % SLM_PACKED_ROWS);
    for (int64_t b = 0; b < nb; b++) {
        slm_half h;
        memcpy(&h, group + slm_packed_scales_at(wbytes, b) + (size_t)lane * sizeof h, sizeof h);
        const float d = slm_fp16_to_fp32(h);
        const uint8_t *blk = group + slm_packed_weights_at(wbytes, b) + (size_t)lane * 4;
        float *out = dst + b * SLM_QK;
        for (int i = 0; i < SLM_QK; i++) {
            if (w->type == SLM_TYPE_Q8_0) {
                out[i] = d * (float)(int8_t)(blk[(i / 4) * SLM_PACKED_ROWS * 4 + i % 4] ^ 0x80);
            } else {
                const int j = i % 16; /* nibble i of the block: low half first, then high */
                const uint8_t byte = blk[(j / 4) * SLM_PACKED_ROWS * 4 + j % 4];
                out[i] = d * (float)((i < 16 ? byte & 0x0f : byte >> 4) - 8);
            }
        }
    }
}
