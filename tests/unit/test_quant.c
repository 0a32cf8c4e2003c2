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

int main(void) {
    test_fp16_to_fp32();
    test_fp32_to_fp16();
    test_bf16();
    test_dequant_fixture();
    return test_report("test_quant");
}
