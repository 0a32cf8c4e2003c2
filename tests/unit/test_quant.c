/* Half-float conversions, dequantizers (against the Python reference via a committed fixture) and
 * the reference quantizers (bit patterns, round-trip error). */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/quant.h"
#include "tensor/types.h"
#include "test.h"

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Distance in representable float32 steps; 0 for two NaNs, huge for NaN vs number. */
static uint64_t ulp_distance(float a, float b) {
    if (isnan(a) || isnan(b)) return (isnan(a) && isnan(b)) ? 0 : UINT64_MAX;
    int64_t ia = (int32_t)f32_bits(a), ib = (int32_t)f32_bits(b);
    if (ia < 0) ia = (int64_t)INT32_MIN - ia; /* map to a monotonic integer line */
    if (ib < 0) ib = (int64_t)INT32_MIN - ib;
    return (uint64_t)(ia > ib ? ia - ib : ib - ia);
}

/* ---- half conversions ---- */

static void test_fp16_to_fp32(void) {
    static const struct { uint16_t h; uint32_t f; } cases[] = {
        {0x0000, 0x00000000}, {0x8000, 0x80000000}, /* signed zeros */
        {0x3c00, 0x3f800000}, {0xc000, 0xc0000000}, /* 1, -2 */
        {0x7bff, 0x477fe000},                       /* 65504, largest finite */
        {0x0400, 0x38800000},                       /* smallest normal 2^-14 */
        {0x0001, 0x33800000},                       /* smallest subnormal 2^-24 */
        {0x03ff, 0x387fc000},                       /* largest subnormal */
        {0x8200, 0xb8000000},                       /* -2^-15 subnormal */
        {0x7c00, 0x7f800000}, {0xfc00, 0xff800000}, /* infinities */
        {0x3555, 0x3eaaa000},                       /* ~1/3 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECKF(f32_bits(slm_fp16_to_fp32(cases[i].h)) == cases[i].f, "fp16 %04x -> %08x, want %08x",
               cases[i].h, f32_bits(slm_fp16_to_fp32(cases[i].h)), cases[i].f);
    CHECK(isnan(slm_fp16_to_fp32(0x7e00)));
    CHECK(isnan(slm_fp16_to_fp32(0xfc01)));
    /* Every finite half survives the round trip through float. */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue; /* nan payloads */
        if (slm_fp32_to_fp16(slm_fp16_to_fp32((uint16_t)h)) != h) bad++;
    }
    CHECKF(bad == 0, "%d halves do not round-trip", bad);
}

static void test_fp32_to_fp16(void) {
    static const struct { uint32_t f; uint16_t h; } cases[] = {
        {0x3f800000, 0x3c00},                       /* 1 */
        {0x3f801000, 0x3c00},                       /* 1 + half ulp: tie, to even (down) */
        {0x3f803000, 0x3c02},                       /* 1 + 1.5 ulp: tie, to even (up) */
        {0x3f801001, 0x3c01},                       /* just above the tie */
        {0x477fe000, 0x7bff},                       /* 65504 */
        {0x477fefff, 0x7bff},                       /* just below the overflow threshold */
        {0x477ff000, 0x7c00},                       /* 65520 rounds to inf */
        {0x7f7fffff, 0x7c00}, {0xff7fffff, 0xfc00}, /* float max -> inf */
        {0x7f800000, 0x7c00}, {0xff800000, 0xfc00},
        {0x38800000, 0x0400},                       /* smallest normal */
        {0x387fc000, 0x03ff},                       /* largest subnormal */
        {0x33800000, 0x0001},                       /* 2^-24 */
        {0x33000000, 0x0000},                       /* 2^-25: tie between 0 and 2^-24, to even */
        {0x33000001, 0x0001},                       /* just above: rounds up */
        {0x33c00000, 0x0002},                       /* 1.5 * 2^-24: tie, to even (2) */
        {0x34200000, 0x0002},                       /* 2.5 * 2^-24: tie, to even (2) */
        {0x387fe000, 0x0400},                       /* rounds up from subnormal into the normals */
        {0x80000000, 0x8000}, {0xb3800000, 0x8001},
        {0x3eaaaaab, 0x3555},                       /* 1/3 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = slm_fp32_to_fp16(bits_f32(cases[i].f));
        CHECKF(got == cases[i].h, "fp32 %08x -> %04x, want %04x", cases[i].f, got, cases[i].h);
    }
    uint16_t nan_half = slm_fp32_to_fp16(bits_f32(0x7fc00000));
    CHECK((nan_half & 0x7c00) == 0x7c00 && (nan_half & 0x3ff) != 0);
    uint16_t snan_half = slm_fp32_to_fp16(bits_f32(0x7f800001)); /* payload only in low bits */
    CHECK((snan_half & 0x7c00) == 0x7c00 && (snan_half & 0x3ff) != 0);
}

static void test_bf16(void) {
    CHECK(f32_bits(slm_bf16_to_fp32(0x3f80)) == 0x3f800000);
    CHECK(f32_bits(slm_bf16_to_fp32(0x0001)) == 0x00010000); /* subnormal stays subnormal */
    CHECK(f32_bits(slm_bf16_to_fp32(0xff80)) == 0xff800000);
    static const struct { uint32_t f; uint16_t h; } cases[] = {
        {0x3f800000, 0x3f80}, {0x3f808000, 0x3f80}, /* tie, to even (down) */
        {0x3f818000, 0x3f82},                       /* tie, to even (up) */
        {0x3f808001, 0x3f81}, {0x3f807fff, 0x3f80},
        {0x7f7fffff, 0x7f80},                       /* rounds up to inf */
        {0x7f800000, 0x7f80}, {0xff800000, 0xff80},
        {0x00008000, 0x0000}, {0x00018000, 0x0002}, /* subnormal ties */
        {0x80000000, 0x8000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t got = slm_fp32_to_bf16(bits_f32(cases[i].f));
        CHECKF(got == cases[i].h, "fp32 %08x -> bf16 %04x, want %04x", cases[i].f, got, cases[i].h);
    }
    /* NaN stays NaN even when its payload sits only in the bits that are dropped. */
    CHECK(isnan(slm_bf16_to_fp32(slm_fp32_to_bf16(bits_f32(0x7f800001)))));
    CHECK(isnan(slm_bf16_to_fp32(slm_fp32_to_bf16(bits_f32(0xffc00000)))));
}

/* ---- dequantization against the Python reference ---- */

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n)) != NULL) {
            if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
                free(buf);
                buf = NULL;
            } else {
                *len = (size_t)n;
            }
        }
    }
    fclose(f);
    return buf;
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void test_dequant_fixture(void) {
    const char *path = SLM_SOURCE_DIR "/tests/data/dequant_fixture.bin";
    size_t len = 0;
    uint8_t *buf = read_file(path, &len);
    CHECKF(buf != NULL, "cannot read %s", path);
    if (!buf) return;
    CHECK(len >= 12 && memcmp(buf, "SLMDQFX1", 8) == 0);
    uint32_t n_records = le32(buf + 8);
    size_t pos = 12;
    uint64_t worst[SLM_TYPE_COUNT] = {0};
    int64_t elems[SLM_TYPE_COUNT] = {0};
    for (uint32_t r = 0; r < n_records; r++) {
        if (pos + 12 > len) break;
        uint32_t type = le32(buf + pos), n = le32(buf + pos + 4), nbytes = le32(buf + pos + 8);
        pos += 12;
        const slm_type_info *ti = slm_type_info_get(type);
        CHECKF(ti != NULL && slm_row_bytes(type, n) == nbytes, "record %u: type %u n %u bytes %u", r,
               type, n, nbytes);
        if (!ti || pos + nbytes + (size_t)n * 4 > len) break;
        const uint8_t *raw = buf + pos;
        const uint8_t *want = raw + nbytes;
        pos += nbytes + (size_t)n * 4;
        /* Copy to aligned storage: the block structs need their natural alignment. */
        void *src = malloc(nbytes ? nbytes : 1);
        float *got = malloc((size_t)n * sizeof *got);
        memcpy(src, raw, nbytes);
        slm_dequantize_row(type, src, got, n);
        for (uint32_t i = 0; i < n; i++) {
            float w;
            memcpy(&w, want + 4 * (size_t)i, 4);
            uint64_t d = ulp_distance(got[i], w);
            if (d > worst[type]) worst[type] = d;
            if (d > 1) {
                CHECKF(0, "%s record %u element %u: got %.9g (%08x) want %.9g (%08x)", ti->name, r, i,
                       got[i], f32_bits(got[i]), w, f32_bits(w));
                break;
            }
        }
        elems[type] += n;
        free(src);
        free(got);
    }
    CHECKF(pos == len, "fixture not consumed exactly (%zu of %zu bytes)", pos, len);
    static const uint32_t required[] = {SLM_TYPE_F32,  SLM_TYPE_F16,  SLM_TYPE_BF16, SLM_TYPE_Q4_0,
                                        SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0,
                                        SLM_TYPE_Q2_K, SLM_TYPE_Q3_K, SLM_TYPE_Q4_K, SLM_TYPE_Q5_K,
                                        SLM_TYPE_Q6_K, SLM_TYPE_IQ4_NL};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        uint32_t t = required[i];
        CHECKF(elems[t] > 0, "fixture has no %s data", slm_type_name(t));
        fprintf(stderr, "dequant %-6s %6lld elements, max %llu ulp from the Python reference\n",
                slm_type_name(t), (long long)elems[t], (unsigned long long)worst[t]);
    }
    free(buf);
}


/* ---- quantizers ---- */

static uint16_t le16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* Equal as numbers (-0 == 0), reporting the first difference. */
static int same_values(const float *a, const float *b, int n) {
    for (int i = 0; i < n; i++) {
        if (a[i] != b[i]) {
            fprintf(stderr, "  element %d: %.9g != %.9g\n", i, a[i], b[i]);
            return 0;
        }
    }
    return 1;
}

/* Vectors whose quantization can be worked out by hand: scales come out as exactly 1 (or -1). */
static void test_quantize_known_vectors(void) {
    float x[SLM_QK_K];

    /* q8_0: amax 127 gives d = 1, so every integer maps to itself. */
    for (int j = 0; j < SLM_QK; j++) x[j] = (float)(j * 8 - 127 + (j == 0 ? 0 : 0));
    x[31] = 127.0f;
    block_q8_0 q8;
    CHECK(slm_quantize_row(SLM_TYPE_Q8_0, x, &q8, SLM_QK) == 0);
    CHECK(q8.d == 0x3c00);
    int ok = 1;
    for (int j = 0; j < SLM_QK; j++) ok &= q8.qs[j] == (int8_t)x[j];
    CHECK(ok);
    /* Half-way values round away from zero (roundf), unlike the k-quants' nearest-even. */
    for (int j = 0; j < SLM_QK; j++) x[j] = 0.0f;
    x[0] = 127.0f;
    x[1] = 2.5f;
    x[2] = -2.5f;
    x[3] = 3.5f;
    CHECK(slm_quantize_row(SLM_TYPE_Q8_0, x, &q8, SLM_QK) == 0);
    CHECK(q8.qs[1] == 3 && q8.qs[2] == -3 && q8.qs[3] == 4);

    /* q4_0: the extreme value -8 gives d = 1 (max / -8); q = x + 8, with +8 clamped to 15. */
    for (int j = 0; j < SLM_QK; j++) x[j] = (float)(j % 16 - 8);
    x[17] = 7.4f;  /* truncation after +8.5: 15.9 -> 15 */
    x[18] = -0.6f; /* 7.9 -> 7 */
    block_q4_0 q4;
    CHECK(slm_quantize_row(SLM_TYPE_Q4_0, x, &q4, SLM_QK) == 0);
    CHECK(q4.d == 0x3c00);
    CHECKF(q4.qs[0] == 0x00 && q4.qs[1] == 0xf1 && q4.qs[2] == 0x72 && q4.qs[15] == 0xff, "%02x %02x %02x %02x",
           q4.qs[0], q4.qs[1], q4.qs[2], q4.qs[15]);
    /* With +8 as the extreme, d = -1 and the quants are mirrored: 8 -> 0, -8 -> 16 clamps to 15. */
    for (int j = 0; j < SLM_QK; j++) x[j] = 0.0f;
    x[0] = 8.0f;
    x[1] = -8.0f;
    x[2] = 3.0f;
    CHECK(slm_quantize_row(SLM_TYPE_Q4_0, x, &q4, SLM_QK) == 0);
    CHECK(q4.d == 0xbc00);
    CHECK((q4.qs[0] & 0x0f) == 0 && (q4.qs[1] & 0x0f) == 15 && (q4.qs[2] & 0x0f) == 5 && (q4.qs[3] & 0x0f) == 8);

    /* q4_1: min -1, max 14 -> d = 1, m = -1, q = x + 1. */
    for (int j = 0; j < SLM_QK; j++) x[j] = (float)(j % 16 - 1);
    block_q4_1 q41;
    CHECK(slm_quantize_row(SLM_TYPE_Q4_1, x, &q41, SLM_QK) == 0);
    CHECK(q41.d == 0x3c00 && q41.m == 0xbc00);
    ok = 1;
    for (int j = 0; j < 16; j++) ok &= q41.qs[j] == (uint8_t)(j | j << 4);
    CHECK(ok);

    /* q5_0: extreme -16 -> d = 1, q = x + 16; the fifth bit of element j sits in qh bit j. */
    for (int j = 0; j < SLM_QK; j++) x[j] = (float)(j - 16);
    block_q5_0 q5;
    CHECK(slm_quantize_row(SLM_TYPE_Q5_0, x, &q5, SLM_QK) == 0);
    CHECK(q5.d == 0x3c00);
    CHECKF(le32(q5.qh) == 0xffff0000u, "qh %08x", le32(q5.qh)); /* elements 16..31 have q >= 16 */
    ok = 1;
    for (int j = 0; j < 16; j++) ok &= q5.qs[j] == (uint8_t)(j | j << 4);
    CHECK(ok);

    /* q5_1: 0..31 -> d = 1, m = 0, q = x. */
    for (int j = 0; j < SLM_QK; j++) x[j] = (float)((j * 7) % 32);
    block_q5_1 q51;
    CHECK(slm_quantize_row(SLM_TYPE_Q5_1, x, &q51, SLM_QK) == 0);
    CHECK(q51.d == 0x3c00 && q51.m == 0x0000);
    float back[SLM_QK_K];
    slm_dequantize_row(SLM_TYPE_Q5_1, &q51, back, SLM_QK);
    CHECK(same_values(back, x, SLM_QK));

    /* iq4_nl: inputs exactly on the levels with extreme -127 give d = 1 and the level indices. */
    static const int8_t levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    for (int j = 0; j < SLM_QK; j++) x[j] = levels[(j * 5) % 16];
    block_iq4_nl nl;
    CHECK(slm_quantize_row(SLM_TYPE_IQ4_NL, x, &nl, SLM_QK) == 0);
    CHECKF(nl.d == 0x3c00, "iq4_nl d %04x", nl.d);
    ok = 1;
    for (int j = 0; j < 16; j++) ok &= nl.qs[j] == (uint8_t)(((j * 5) % 16) | (((j + 16) * 5) % 16) << 4);
    CHECK(ok);

    /* q8_K: the first largest-magnitude value (+127) maps to -127 (scale -1/127 * max): q = -x. */
    for (int j = 0; j < SLM_QK_K; j++) x[j] = (float)(127 - (j % 255));
    block_q8_K k8;
    CHECK(slm_quantize_row(SLM_TYPE_Q8_K, x, &k8, SLM_QK_K) == 0);
    CHECK(k8.d == -1.0f);
    ok = 1;
    for (int j = 0; j < SLM_QK_K; j++) ok &= k8.qs[j] == (int8_t)-x[j];
    CHECK(ok);
    ok = 1;
    for (int g = 0; g < 16; g++) {
        int sum = 0;
        for (int l = 0; l < 16; l++) sum -= (int)x[16 * g + l];
        ok &= k8.bsums[g] == sum;
    }
    CHECK(ok);
    slm_dequantize_row(SLM_TYPE_Q8_K, &k8, back, SLM_QK_K);
    CHECK(same_values(back, x, SLM_QK_K));
    /* q8_K rounds ties to even (nearest_int), and never produces -128. */
    for (int j = 0; j < SLM_QK_K; j++) x[j] = 0.0f;
    x[0] = -127.0f; /* iscale = 1 */
    x[1] = 2.5f;
    x[2] = 3.5f;
    x[3] = -0.5f;
    CHECK(slm_quantize_row(SLM_TYPE_Q8_K, x, &k8, SLM_QK_K) == 0);
    CHECK(k8.d == 1.0f && k8.qs[0] == -127 && k8.qs[1] == 2 && k8.qs[2] == 4 && k8.qs[3] == 0);
    CHECK(k8.bsums[0] == -127 + 2 + 4);

    /* q6_K: integers in [-31, 31] with -32 as every sub-block's extreme fit with sub-block scale 1
     * exactly; the super-block then stores d = -1/128 and scales -128, so the values come back. */
    for (int j = 0; j < SLM_QK_K; j++) x[j] = j % 16 == 0 ? -32.0f : (float)((j * 13) % 63 - 31);
    block_q6_K k6;
    CHECK(slm_quantize_row(SLM_TYPE_Q6_K, x, &k6, SLM_QK_K) == 0);
    slm_dequantize_row(SLM_TYPE_Q6_K, &k6, back, SLM_QK_K);
    CHECK(same_values(back, x, SLM_QK_K));
    CHECK(le16(&k6.d) == 0xa000); /* -2^-7 */
    CHECK(k6.scales[0] == -128 && k6.scales[15] == -128);
}

/* Deterministic pseudo-random normal-ish values (sum of uniforms), with a few outliers, as real
 * weights have. */
static void fill_weights(float *x, int n, uint32_t seed) {
    uint32_t s = seed;
    for (int i = 0; i < n; i++) {
        float acc = 0.0f;
        for (int k = 0; k < 4; k++) {
            s = s * 1664525u + 1013904223u;
            acc += (float)(s >> 8) / 16777216.0f - 0.5f;
        }
        x[i] = acc * 0.05f;
        if (i % 97 == 0) x[i] *= 6.0f;
    }
}

static void test_round_trip(void) {
    static const struct { uint32_t type; double max_rel_rms; } cases[] = {
        {SLM_TYPE_F16, 0.001},   {SLM_TYPE_BF16, 0.005},  {SLM_TYPE_Q8_0, 0.01},  {SLM_TYPE_Q8_K, 0.025},
        {SLM_TYPE_Q6_K, 0.03},   {SLM_TYPE_Q5_0, 0.08},   {SLM_TYPE_Q5_1, 0.05},  {SLM_TYPE_Q5_K, 0.05},
        {SLM_TYPE_Q4_0, 0.15},   {SLM_TYPE_Q4_1, 0.10},   {SLM_TYPE_Q4_K, 0.10},  {SLM_TYPE_IQ4_NL, 0.11},
        {SLM_TYPE_Q3_K, 0.22},   {SLM_TYPE_Q2_K, 0.45},
    };
    enum { N = 8192 };
    static float x[N], y[N];
    static uint8_t q[N * 2];
    fill_weights(x, N, 12345);
    double sum2 = 0;
    for (int i = 0; i < N; i++) sum2 += (double)x[i] * x[i];
    const double rms = sqrt(sum2 / N);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const uint32_t t = cases[c].type;
        CHECK(slm_row_bytes(t, N) <= sizeof q);
        memset(q, 0xa5, sizeof q);
        CHECKF(slm_quantize_row(t, x, q, N) == 0, "%s quantize failed", slm_type_name(t));
        slm_dequantize_row(t, q, y, N);
        double err2 = 0, max_err = 0;
        for (int i = 0; i < N; i++) {
            const double e = fabs((double)y[i] - x[i]);
            err2 += e * e;
            if (e > max_err) max_err = e;
        }
        const double rel = sqrt(err2 / N) / rms;
        fprintf(stderr, "round trip %-6s rms error %.5f of signal rms, max abs error %.5f\n", slm_type_name(t), rel,
                max_err);
        CHECKF(rel <= cases[c].max_rel_rms && isfinite(rel), "%s: relative rms error %.5f above %.3f",
               slm_type_name(t), rel, cases[c].max_rel_rms);
    }
}

/* For the symmetric absmax formats every element is within half a step of its input (plus the fp16
 * rounding of the scale, which moves the extreme element by at most 2^-11 relative). */
static void test_per_element_bounds(void) {
    enum { N = 1024 };
    float x[N], y[N];
    uint8_t q[N * 2];
    fill_weights(x, N, 777);
    static const struct { uint32_t type; int block; float steps; } cases[] = {
        {SLM_TYPE_Q8_0, 32, 127.0f}, {SLM_TYPE_Q4_0, 32, 8.0f}, {SLM_TYPE_Q5_0, 32, 16.0f}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        CHECK(slm_quantize_row(cases[c].type, x, q, N) == 0);
        slm_dequantize_row(cases[c].type, q, y, N);
        int bad = 0;
        for (int b = 0; b < N; b += cases[c].block) {
            float amax = 0;
            for (int j = 0; j < cases[c].block; j++) amax = fmaxf(amax, fabsf(x[b + j]));
            const float step = amax / cases[c].steps;
            for (int j = 0; j < cases[c].block; j++) {
                /* q4_0/q5_0 clamp the top quant (+8 -> 7 steps) only for the side opposite the
                 * extreme, where values are at most amax, so one full step bounds the error there. */
                const float bound = (cases[c].type == SLM_TYPE_Q8_0 ? 0.5f : 1.0f) * step + amax / 1024.0f;
                if (fabsf(y[b + j] - x[b + j]) > bound) bad++;
            }
        }
        CHECKF(bad == 0, "%s: %d elements beyond the per-element bound", slm_type_name(cases[c].type), bad);
    }
}

static void test_quantize_edge_inputs(void) {
    static const uint32_t types[] = {SLM_TYPE_Q4_0, SLM_TYPE_Q4_1, SLM_TYPE_Q5_0, SLM_TYPE_Q5_1, SLM_TYPE_Q8_0,
                                     SLM_TYPE_Q8_1, SLM_TYPE_IQ4_NL, SLM_TYPE_Q2_K, SLM_TYPE_Q3_K, SLM_TYPE_Q4_K,
                                     SLM_TYPE_Q5_K, SLM_TYPE_Q6_K, SLM_TYPE_Q8_K};
    static float x[SLM_QK_K], y[SLM_QK_K];
    static uint8_t q[1024];
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const char *name = slm_type_name(types[t]);
        /* All zeros decode to exact zeros, not NaN. */
        memset(x, 0, sizeof x);
        memset(q, 0xff, sizeof q);
        CHECK(slm_quantize_row(types[t], x, q, SLM_QK_K) == 0);
        if (types[t] != SLM_TYPE_Q8_1) {
            slm_dequantize_row(types[t], q, y, SLM_QK_K);
            int nonzero = 0;
            for (int i = 0; i < SLM_QK_K; i++) nonzero += y[i] != 0.0f;
            CHECKF(nonzero == 0, "%s: zero input decodes to %d non-zeros", name, nonzero);
        }
        /* A constant block (max == min for the affine formats) decodes close to the constant. */
        for (int i = 0; i < SLM_QK_K; i++) x[i] = 0.25f;
        CHECK(slm_quantize_row(types[t], x, q, SLM_QK_K) == 0);
        if (types[t] != SLM_TYPE_Q8_1) {
            slm_dequantize_row(types[t], q, y, SLM_QK_K);
            float worst = 0;
            for (int i = 0; i < SLM_QK_K; i++) worst = fmaxf(worst, fabsf(y[i] - 0.25f));
            CHECKF(worst <= 0.25f * 0.02f, "%s: constant 0.25 decodes with error %g", name, worst);
        }
        /* Non-finite and huge inputs must not trigger undefined behaviour (checked under UBSan). */
        for (int i = 0; i < SLM_QK_K; i++) x[i] = (float)(i % 7) - 3.0f;
        x[3] = NAN;
        x[40] = INFINITY;
        x[100] = -INFINITY;
        x[200] = 3e38f;
        CHECK(slm_quantize_row(types[t], x, q, SLM_QK_K) == 0);
        slm_dequantize_row(types[t], q, y, SLM_QK_K);
    }
    CHECK(slm_quantize_row(SLM_TYPE_Q4_0, x, q, 31) == -1); /* not a whole block */
    CHECK(slm_quantize_row(SLM_TYPE_Q4_K, x, q, 32) == -1);
    CHECK(slm_quantize_row(99, x, q, 32) == -1);
    CHECK(slm_quantize_row(4, x, q, 32) == -1); /* removed q4_2 id */
}

/* Re-quantizing a k-quant's own output must be stable enough that values stay within one step:
 * catches layout mismatches between quantizer and dequantizer that a loose rms bound could miss. */
static void test_k_quant_layout_consistency(void) {
    static const uint32_t types[] = {SLM_TYPE_Q2_K, SLM_TYPE_Q3_K, SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K};
    enum { N = 2 * SLM_QK_K };
    static float x[N], y[N], z[N];
    static uint8_t q[N];
    fill_weights(x, N, 4242);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        CHECK(slm_quantize_row(types[t], x, q, N) == 0);
        slm_dequantize_row(types[t], q, y, N);
        CHECK(slm_quantize_row(types[t], y, q, N) == 0);
        slm_dequantize_row(types[t], q, z, N);
        double e2 = 0, s2 = 0;
        for (int i = 0; i < N; i++) {
            e2 += (double)(z[i] - y[i]) * (z[i] - y[i]);
            s2 += (double)y[i] * y[i];
        }
        /* Already-quantized values lie on a grid the fit can find again almost exactly. */
        CHECKF(sqrt(e2 / s2) < 0.05, "%s: re-quantization moved values by %.4f relative", slm_type_name(types[t]),
               sqrt(e2 / s2));
    }
}

/* tests/data/quantize_fixture.bin holds four 512-value input rows (weights with outliers, values
 * on a 1/8 grid that hit rounding ties, an offset distribution, a sparse row) and, for every
 * quantizable type, the bytes ggml's quantize_row_*_ref produced for them (ggml d99724f2, x86-64,
 * no FMA). Layout: "SLMQFX01", u32 n_inputs, u32 n, n_inputs*n f32, u32 n_records, then per record
 * u32 type, u32 input index, u32 byte count, bytes. Matching it byte for byte means a model
 * quantized by `slm quantize` is identical to one from llama-quantize without an imatrix. */
static void test_quantize_matches_ggml(void) {
    const char *path = SLM_SOURCE_DIR "/tests/data/quantize_fixture.bin";
    size_t len = 0;
    uint8_t *buf = read_file(path, &len);
    CHECKF(buf != NULL, "cannot read %s", path);
    if (!buf) return;
    CHECK(len > 20 && memcmp(buf, "SLMQFX01", 8) == 0);
    const uint32_t n_inputs = le32(buf + 8), n = le32(buf + 12);
    size_t pos = 16 + (size_t)n_inputs * n * 4;
    if (n_inputs > 16 || n > 4096 || pos + 4 > len) {
        CHECKF(0, "fixture header is corrupt");
        free(buf);
        return;
    }
    float *inputs = malloc((size_t)n_inputs * n * sizeof(float));
    memcpy(inputs, buf + 16, (size_t)n_inputs * n * 4);
    const uint32_t n_records = le32(buf + pos);
    pos += 4;
    uint8_t *out = malloc((size_t)n * 2);
    int types_seen[SLM_TYPE_COUNT] = {0};
    for (uint32_t r = 0; r < n_records && pos + 12 <= len; r++) {
        const uint32_t type = le32(buf + pos), input = le32(buf + pos + 4), nbytes = le32(buf + pos + 8);
        pos += 12;
        if (input >= n_inputs || nbytes != slm_row_bytes(type, n) || pos + nbytes > len) {
            CHECKF(0, "record %u is corrupt", r);
            break;
        }
        memset(out, 0xcc, (size_t)n * 2);
        CHECKF(slm_quantize_row(type, inputs + (size_t)input * n, out, n) == 0, "%s has no quantizer",
               slm_type_name(type));
        size_t first = nbytes;
        for (size_t i = 0; i < nbytes; i++)
            if (out[i] != buf[pos + i]) {
                first = i;
                break;
            }
        const slm_type_info *ti = slm_type_info_get(type);
        CHECKF(first == nbytes, "%s input %u: differs from ggml in block %zu (byte %zu of the block)",
               slm_type_name(type), input, first / (size_t)ti->type_size, first % (size_t)ti->type_size);
        types_seen[type] = 1;
        pos += nbytes;
    }
    CHECKF(pos == len, "fixture not consumed exactly (%zu of %zu bytes)", pos, len);
    int n_types = 0;
    for (int t = 0; t < SLM_TYPE_COUNT; t++) n_types += types_seen[t];
    CHECKF(n_types == 13, "fixture covers %d quantized types, expected 13", n_types);
    free(out);
    free(inputs);
    free(buf);
}

int main(void) {
    test_fp16_to_fp32();
    test_fp32_to_fp16();
    test_bf16();
    test_dequant_fixture();
    test_quantize_known_vectors();
    test_quantize_matches_ggml();
    test_round_trip();
    test_per_element_bounds();
    test_quantize_edge_inputs();
    test_k_quant_layout_consistency();
    return test_report("test_quant");
}
