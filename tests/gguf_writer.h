/* A small GGUF v3 writer for tests that build their own models: metadata of the common value types
 * and tensors stored as F32, F16 or Q8_0 from f32 values. It encodes the tensor types itself (not
 * through the library under test) and hands back the value every element decodes to, so a test's
 * reference computation uses exactly the weights the file holds.
 *
 * Header-only (static inline functions). Out of memory aborts (tests only).
 *
 *   gguf_writer w;
 *   gw_init(&w);
 *   gw_kv_str(&w, "general.architecture", "llama");
 *   gw_tensor(&w, "token_embd.weight", GW_TYPE_F16, 2, (uint64_t[]){32, 300}, values, decoded);
 *   gw_write_file(&w, path);
 *   gw_free(&w);
 */
#ifndef SLM_TESTS_GGUF_WRITER_H
#define SLM_TESTS_GGUF_WRITER_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Tensor type ids, as ggml numbers them. */
enum { GW_TYPE_F32 = 0, GW_TYPE_F16 = 1, GW_TYPE_Q8_0 = 8 };
enum { GW_QK8_0 = 32 }; /* elements per Q8_0 block: f16 scale + 32 int8 */

/* Metadata value type ids of the GGUF format. */
enum {
    GW_UINT8 = 0, GW_INT8 = 1, GW_UINT16 = 2, GW_INT16 = 3, GW_UINT32 = 4, GW_INT32 = 5, GW_FLOAT32 = 6,
    GW_BOOL = 7, GW_STRING = 8, GW_ARRAY = 9, GW_UINT64 = 10, GW_INT64 = 11, GW_FLOAT64 = 12
};

typedef struct gw_buf {
    uint8_t *p;
    size_t len, cap;
} gw_buf;

typedef struct gguf_writer {
    gw_buf kv, info, data; /* the three sections, joined by gw_finish */
    uint64_t n_kv, n_tensors;
    uint32_t alignment;
} gguf_writer;

static inline void gw_buf_put(gw_buf *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n) cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) abort();
        b->p = np;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}
static inline void gw_buf_u32(gw_buf *b, uint32_t v) { gw_buf_put(b, &v, 4); }
static inline void gw_buf_u64(gw_buf *b, uint64_t v) { gw_buf_put(b, &v, 8); }
static inline void gw_buf_str(gw_buf *b, const char *s) {
    gw_buf_u64(b, strlen(s));
    gw_buf_put(b, s, strlen(s));
}
static inline void gw_buf_pad(gw_buf *b, size_t align) {
    static const uint8_t zero[64];
    while (b->len % align) gw_buf_put(b, zero, 1);
}

static inline void gw_init(gguf_writer *w) {
    memset(w, 0, sizeof *w);
    w->alignment = 32;
}

static inline void gw_free(gguf_writer *w) {
    free(w->kv.p);
    free(w->info.p);
    free(w->data.p);
    memset(w, 0, sizeof *w);
}

/* ---- f16 and Q8_0 encoding, independent of the library ---- */

/* Nearest f16 (ties to even), with overflow to infinity and gradual underflow. */
static inline uint16_t gw_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t abs = x & 0x7fffffffu;
    if (abs >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0)); /* inf/nan */
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past the largest f16 */
    if (abs < 0x38800000u) { /* f16 subnormal or zero: value / 2^-24, rounded to even */
        float a;
        memcpy(&a, &abs, 4);
        float scaled = a * 16777216.0f; /* exact: a power-of-two scale of a small number */
        uint32_t q = (uint32_t)nearbyintf(scaled);
        return (uint16_t)(sign | q);
    }
    uint32_t mant = abs & 0x7fffffu;
    int32_t exp = (int32_t)(abs >> 23) - 127 + 15;
    uint32_t h = ((uint32_t)exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++; /* a carry into the exponent is still right */
    return (uint16_t)(sign | h);
}

static inline float gw_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    float v;
    if (exp == 0) {
        v = ldexpf((float)mant, -24);
    } else if (exp == 31) {
        v = mant ? NAN : INFINITY;
    } else {
        v = ldexpf((float)(mant | 0x400u), (int)exp - 25);
    }
    uint32_t bits;
    memcpy(&bits, &v, 4);
    bits |= sign;
    memcpy(&v, &bits, 4);
    return v;
}

/* Bytes of one row of n elements. 0 if the type is not supported or n does not fit its blocks. */
static inline size_t gw_row_bytes(uint32_t type, uint64_t n) {
    switch (type) {
    case GW_TYPE_F32: return (size_t)n * 4;
    case GW_TYPE_F16: return (size_t)n * 2;
    case GW_TYPE_Q8_0: return n % GW_QK8_0 ? 0 : (size_t)(n / GW_QK8_0) * (2 + GW_QK8_0);
    default: return 0;
    }
}

/* Encodes n values (a multiple of the block size) to `type` into out; decoded[i] (optional) gets
 * the value element i reads back as. */
static inline void gw_encode(uint32_t type, const float *x, uint64_t n, uint8_t *out, float *decoded) {
    if (type == GW_TYPE_F32) {
        memcpy(out, x, (size_t)n * 4);
        if (decoded) memcpy(decoded, x, (size_t)n * 4);
    } else if (type == GW_TYPE_F16) {
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h = gw_f32_to_f16(x[i]);
            memcpy(out + 2 * i, &h, 2);
            if (decoded) decoded[i] = gw_f16_to_f32(h);
        }
    } else if (type == GW_TYPE_Q8_0) {
        for (uint64_t b = 0; b < n / GW_QK8_0; b++) {
            const float *xb = x + b * GW_QK8_0;
            float amax = 0;
            for (int i = 0; i < GW_QK8_0; i++) amax = fmaxf(amax, fabsf(xb[i]));
            uint16_t dh = gw_f32_to_f16(amax / 127.0f);
            float d = gw_f16_to_f32(dh);
            uint8_t *blk = out + b * (2 + GW_QK8_0);
            memcpy(blk, &dh, 2);
            for (int i = 0; i < GW_QK8_0; i++) {
                float q = d > 0 ? roundf(xb[i] / d) : 0.0f;
                if (q > 127) q = 127;
                if (q < -127) q = -127;
                int8_t qi = (int8_t)q;
                memcpy(blk + 2 + i, &qi, 1);
                if (decoded) decoded[b * GW_QK8_0 + i] = d * (float)qi;
            }
        }
    } else {
        abort();
    }
}

/* ---- metadata ---- */

static inline void gw_key(gguf_writer *w, const char *key, uint32_t type) {
    gw_buf_str(&w->kv, key);
    gw_buf_u32(&w->kv, type);
    w->n_kv++;
}
static inline void gw_kv_str(gguf_writer *w, const char *key, const char *v) {
    gw_key(w, key, GW_STRING);
    gw_buf_str(&w->kv, v);
}
static inline void gw_kv_u32(gguf_writer *w, const char *key, uint32_t v) {
    gw_key(w, key, GW_UINT32);
    gw_buf_u32(&w->kv, v);
}
static inline void gw_kv_i32(gguf_writer *w, const char *key, int32_t v) {
    gw_key(w, key, GW_INT32);
    gw_buf_put(&w->kv, &v, 4);
}
static inline void gw_kv_f32(gguf_writer *w, const char *key, float v) {
    gw_key(w, key, GW_FLOAT32);
    gw_buf_put(&w->kv, &v, 4);
}
static inline void gw_kv_bool(gguf_writer *w, const char *key, bool v) {
    gw_key(w, key, GW_BOOL);
    uint8_t b = v ? 1 : 0;
    gw_buf_put(&w->kv, &b, 1);
}
static inline void gw_kv_str_arr(gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
    gw_key(w, key, GW_ARRAY);
    gw_buf_u32(&w->kv, GW_STRING);
    gw_buf_u64(&w->kv, n);
    for (uint64_t i = 0; i < n; i++) gw_buf_str(&w->kv, v[i]);
}
static inline void gw_kv_f32_arr(gguf_writer *w, const char *key, const float *v, uint64_t n) {
    gw_key(w, key, GW_ARRAY);
    gw_buf_u32(&w->kv, GW_FLOAT32);
    gw_buf_u64(&w->kv, n);
    gw_buf_put(&w->kv, v, (size_t)n * 4);
}
static inline void gw_kv_i32_arr(gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    gw_key(w, key, GW_ARRAY);
    gw_buf_u32(&w->kv, GW_INT32);
    gw_buf_u64(&w->kv, n);
    gw_buf_put(&w->kv, v, (size_t)n * 4);
}
/* Sets the data alignment and records it as general.alignment (a power of two). */
static inline void gw_set_alignment(gguf_writer *w, uint32_t alignment) {
    w->alignment = alignment;
    gw_kv_u32(w, "general.alignment", alignment);
}

/* ---- tensors ---- */

/* Adds a tensor of raw bytes (already in `type`'s layout). */
static inline void gw_tensor_raw(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                          const void *bytes, size_t n_bytes) {
    gw_buf_pad(&w->data, w->alignment);
    gw_buf_str(&w->info, name);
    gw_buf_u32(&w->info, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) gw_buf_u64(&w->info, ne[d]);
    gw_buf_u32(&w->info, type);
    gw_buf_u64(&w->info, w->data.len);
    gw_buf_put(&w->data, bytes, n_bytes);
    w->n_tensors++;
}

/* Adds a tensor holding `values` (ne[0] x ne[1] x ... floats, row-major with ne[0] fastest) encoded
 * as `type`; decoded (optional, same count) receives what each element decodes to. */
static inline void gw_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                      const float *values, float *decoded) {
    uint64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) n *= ne[d];
    size_t row = gw_row_bytes(type, ne[0]);
    if (!row) abort(); /* a test bug: unsupported type or a row that does not fill its blocks */
    size_t n_bytes = row * (size_t)(n / ne[0]);
    uint8_t *bytes = malloc(n_bytes ? n_bytes : 1);
    if (!bytes) abort();
    gw_encode(type, values, n, bytes, decoded);
    gw_tensor_raw(w, name, type, n_dims, ne, bytes, n_bytes);
    free(bytes);
}

/* ---- output ---- */

/* The whole file in one malloc'd buffer (caller frees); *len gets its size. */
static inline uint8_t *gw_finish(const gguf_writer *w, size_t *len) {
    gw_buf out = {0};
    gw_buf_put(&out, "GGUF", 4);
    gw_buf_u32(&out, 3);
    gw_buf_u64(&out, w->n_tensors);
    gw_buf_u64(&out, w->n_kv);
    gw_buf_put(&out, w->kv.p, w->kv.len);
    gw_buf_put(&out, w->info.p, w->info.len);
    if (w->n_tensors) {
        gw_buf_pad(&out, w->alignment);
        gw_buf_put(&out, w->data.p, w->data.len);
    }
    *len = out.len;
    return out.p;
}

/* Writes the file; 0 on success, -1 (errno set) on failure. */
static inline int gw_write_file(const gguf_writer *w, const char *path) {
    size_t len;
    uint8_t *buf = gw_finish(w, &len);
    FILE *fp = fopen(path, "wb");
    int rc = -1;
    if (fp) {
        rc = fwrite(buf, 1, len, fp) == len ? 0 : -1;
        if (fclose(fp) != 0) rc = -1;
    }
    free(buf);
    return rc;
}

#endif
