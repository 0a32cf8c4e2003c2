/* The quantize layer's pieces: the vectorized k-quant rows equal the reference quantizers byte for
 * byte (random rows, and the edge cases: zeros, a constant, one spike, tiny and huge magnitudes);
 * IQ4_NL rows dequantize close to their input; the importance-matrix reader takes both formats and
 * refuses broken files in one line; the file-type names round-trip. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "quant/kquants.h"
#include "quant/quant_impl.h"
#include "quant/weighted.h"
#include "slm_quant.h"
#include "tensor/quant.h"
#include "tensor/types.h"
#include "test.h"

static uint32_t rng = 12345;
static float frand(void) {
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

static void fill_case(float *x, int n, int kind) {
    for (int i = 0; i < n; i++) {
        switch (kind) {
        case 0: x[i] = frand(); break;
        case 1: x[i] = 0.0f; break;
        case 2: x[i] = 0.25f; break;
        case 3: x[i] = i == 77 ? 5.0f : frand() * 1e-3f; break;
        case 4: x[i] = frand() * 1e-20f; break;
        case 5: x[i] = frand() * 3e4f; break;
        case 6: x[i] = fabsf(frand()) + 0.5f; break; /* all positive: min clamps to 0 */
        default: x[i] = -fabsf(frand()); break;      /* all negative */
        }
    }
}

static void test_fast_kquants_equal_reference(void) {
    if (!kq_available()) {
        fprintf(stderr, "no AVX2/FMA/F16C: the fast k-quant rows are not used here\n");
        return;
    }
    const uint32_t types[] = {SLM_TYPE_Q4_0, SLM_TYPE_Q8_0, SLM_TYPE_Q2_K, SLM_TYPE_Q4_K, SLM_TYPE_Q5_K, SLM_TYPE_Q6_K};
    float x[1024];
    uint8_t a[2048], b[2048];
    int mismatches = 0;
    for (int kind = 0; kind < 8; kind++) {
        for (int rep = 0; rep < (kind == 0 ? 200 : 3); rep++) {
            fill_case(x, 1024, kind);
            for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
                const size_t bytes = slm_row_bytes(types[t], 1024);
                memset(a, 0xaa, sizeof a);
                memset(b, 0x55, sizeof b);
                CHECK(slm_quantize_row(types[t], x, a, 1024) == 0);
                CHECK(kq_quantize_row(types[t], x, b, 1024));
                if (memcmp(a, b, bytes) != 0 && mismatches++ < 5)
                    fprintf(stderr, "type %s, case %d, rep %d: fast row differs from the reference\n", slm_type_name(types[t]), kind,
                            rep);
            }
        }
    }
    CHECKF(mismatches == 0, "%d mismatching rows", mismatches);
    /* f16 conversion: every half value, exactly */
    static uint16_t h[65536];
    static float f[65536];
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    kq_f16_to_f32_avx2(h, f, 65536);
    int bad = 0;
    for (int i = 0; i < 65536; i++) {
        const float r = slm_fp16_to_fp32(h[i]);
        if (!(isnan(r) && isnan(f[i])) && memcmp(&r, &f[i], 4) != 0) bad++;
    }
    CHECKF(bad == 0, "%d half values convert differently", bad);
}

static void test_iq4_nl_rows(void) {
    float x[256], y[256];
    fill_case(x, 256, 0);
    block_iq4_nl q[8];
    quant_row_iq4_nl(x, q, 256, NULL);
    slm_dequantize_row(SLM_TYPE_IQ4_NL, q, y, 256);
    double err = 0, ref = 0;
    for (int i = 0; i < 256; i++) {
        err += (x[i] - y[i]) * (x[i] - y[i]);
        ref += x[i] * x[i];
    }
    CHECKF(sqrt(err / ref) < 0.12, "iq4_nl relative rms error %.4f", sqrt(err / ref));
    /* an all-zero block stores scale 0 and decodes to zeros */
    memset(x, 0, sizeof x);
    quant_row_iq4_nl(x, q, 32, NULL);
    slm_dequantize_row(SLM_TYPE_IQ4_NL, q, y, 32);
    for (int i = 0; i < 32; i++) CHECK(y[i] == 0.0f);
    /* importance steers the error toward the heavy columns */
    fill_case(x, 256, 0);
    float imp[256];
    for (int i = 0; i < 256; i++) imp[i] = i % 32 < 4 ? 100.0f : 0.01f;
    quant_row_iq4_nl(x, q, 256, imp);
    slm_dequantize_row(SLM_TYPE_IQ4_NL, q, y, 256);
    double heavy = 0, light = 0;
    for (int i = 0; i < 256; i++) {
        if (i % 32 < 4) heavy += fabs(x[i] - y[i]);
        else light += fabs(x[i] - y[i]);
    }
    CHECKF(heavy / 32 < light / 224, "weighted columns are not favoured: %.4f vs %.4f", heavy / 32, light / 224);
}

static void put32(uint8_t **p, int32_t v) {
    memcpy(*p, &v, 4);
    *p += 4;
}

static void test_imatrix_legacy(void) {
    uint8_t buf[512], *p = buf;
    put32(&p, 2);
    put32(&p, 5);
    memcpy(p, "a.wgt", 5), p += 5;
    put32(&p, 4); /* ncall */
    put32(&p, 2); /* nval */
    float v[2] = {8.0f, 2.0f};
    memcpy(p, v, 8), p += 8;
    put32(&p, 1);
    memcpy(p, "b", 1), p += 1;
    put32(&p, 0);
    put32(&p, 1);
    float w = 3.0f;
    memcpy(p, &w, 4), p += 4;
    put32(&p, 7); /* chunks */
    put32(&p, 4);
    memcpy(p, "data", 4), p += 4;
    char err[256] = "";
    slm_imatrix *im = NULL;
    CHECKF(slm_imatrix_parse(buf, (size_t)(p - buf), "t.dat", &im, err, sizeof err) == 0, "%s", err);
    if (im) {
        CHECK(im->n_entries == 2 && im->n_chunks == 7 && im->dataset && !strcmp(im->dataset, "data"));
        const slm_imatrix_entry *e = slm_imatrix_find(im, "a.wgt");
        CHECK(e && e->n == 2 && e->values[0] == 2.0f && e->values[1] == 0.5f); /* divided by ncall */
        e = slm_imatrix_find(im, "b");
        CHECK(e && e->n == 1 && e->values[0] == 3.0f); /* ncall 0: as stored */
        CHECK(slm_imatrix_find(im, "c") == NULL);
        slm_imatrix_free(im);
    }
    /* every truncation is refused with a message */
    for (size_t cut = 0; cut < 30; cut++) {
        err[0] = 0;
        im = NULL;
        CHECK(slm_imatrix_parse(buf, cut, "t.dat", &im, err, sizeof err) == -1 && im == NULL && err[0]);
    }
    /* a huge value count, a negative name length, a NaN */
    uint8_t bad[64];
    memcpy(bad, buf, 64);
    int32_t huge = 0x7fffffff;
    memcpy(bad + 4 + 4 + 5 + 4, &huge, 4);
    CHECK(slm_imatrix_parse(bad, 64, "t.dat", &im, err, sizeof err) == -1 && strstr(err, "do not fit"));
    memcpy(bad, buf, 64);
    int32_t neg = -5;
    memcpy(bad + 4, &neg, 4);
    CHECK(slm_imatrix_parse(bad, 64, "t.dat", &im, err, sizeof err) == -1 && strstr(err, "name length"));
    memcpy(bad, buf, 64);
    float nan = NAN;
    memcpy(bad + 4 + 4 + 5 + 8, &nan, 4);
    CHECK(slm_imatrix_parse(bad, (size_t)(p - buf), "t.dat", &im, err, sizeof err) == -1 && strstr(err, "NaN"));
}

static void test_imatrix_files(void) {
    char path[4096], err[512] = "";
    snprintf(path, sizeof path, "%s/tests/data/quantize/tiny256-smollm2.imatrix", SLM_SOURCE_DIR);
    slm_imatrix *g = NULL, *d = NULL;
    CHECKF(slm_imatrix_load(path, &g, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s/tests/data/quantize/tiny256-smollm2.imatrix.dat", SLM_SOURCE_DIR);
    CHECKF(slm_imatrix_load(path, &d, err, sizeof err) == 0, "%s", err);
    if (g && d) {
        /* the two formats of one run hold the same means */
        CHECK(g->n_entries == d->n_entries && g->n_entries >= 14);
        for (int64_t i = 0; i < g->n_entries; i++) {
            const slm_imatrix_entry *a = &g->entries[i], *b = slm_imatrix_find(d, a->name);
            CHECKF(b && b->n == a->n, "%s", a->name);
            for (int64_t j = 0; b && j < a->n && j < b->n; j++)
                CHECK(fabsf(a->values[j] - b->values[j]) <= 1e-5f * fabsf(a->values[j]) + 1e-30f);
        }
        const slm_imatrix_entry *q = slm_imatrix_find(g, "blk.0.attn_q.weight");
        CHECK(q && q->n == 256);
    }
    slm_imatrix_free(g);
    slm_imatrix_free(d);
}

static void test_ftype_names(void) {
    const char *names = slm_ftype_names();
    char buf[512];
    snprintf(buf, sizeof buf, "%s", names);
    int n = 0;
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
        const int ft = slm_ftype_from_name(tok);
        CHECKF(ft >= 0 && !strcmp(slm_ftype_name(ft), tok), "%s", tok);
        n++;
    }
    CHECK(n == 18);
    CHECK(slm_ftype_from_name("q4_k") == SLM_FTYPE_Q4_K_M);
    CHECK(slm_ftype_from_name("Q3_K") == SLM_FTYPE_Q3_K_M);
    CHECK(slm_ftype_from_name("Q4_K_XL") == -1);
    CHECK(slm_ftype_from_name("") == -1);
}

/* The whole driver on a synthetic model (when the build made it): types per tensor, the metadata
 * llama-quantize sets, the thread count not changing a byte, a refused run leaving nothing. */
static void test_quantize_file(void) {
    char in[4096], out[4096], out1[4096], err[1024] = "";
    snprintf(in, sizeof in, "%s/tiny256-smollm2-f16.gguf", test_models_dir());
    if (access(in, R_OK) != 0) {
        fprintf(stderr, "skipping the driver checks: %s absent\n", in);
        return;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(out, sizeof out, "%s/test_quantize_%d.gguf", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    snprintf(out1, sizeof out1, "%s/test_quantize_%d_1.gguf", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    slm_quantize_params p = {.ftype = SLM_FTYPE_Q4_K_M, .n_threads = 3};
    slm_quantize_stats st;
    CHECKF(slm_quantize_file(in, out, &p, &st, err, sizeof err) == 0, "%s", err);
    CHECK(st.n_tensors == 20 && st.n_quantized == 15 && st.bytes_out < st.bytes_in);
    p.n_threads = 1;
    CHECKF(slm_quantize_file(in, out1, &p, NULL, err, sizeof err) == 0, "%s", err);
    gguf_file *f = NULL, *g = NULL;
    CHECKF(gguf_open(out, &f, err, sizeof err) == 0, "%s", err);
    CHECKF(gguf_open(out1, &g, err, sizeof err) == 0, "%s", err);
    if (f && g) {
        CHECK(gguf_file_size(f) == gguf_file_size(g));
        uint32_t v = 0;
        CHECK(gguf_get_u32(f, "general.file_type", &v, err, sizeof err) == 0 && v == SLM_FTYPE_Q4_K_M);
        CHECK(gguf_get_u32(f, "general.quantization_version", &v, err, sizeof err) == 0 && v == 2);
        /* the two keys go last, as llama-quantize writes them */
        CHECK(gguf_str_eq(gguf_kv_at(f, gguf_n_kv(f) - 1)->key, "general.file_type"));
        const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
        CHECK(t && t->type == SLM_TYPE_Q6_K); /* tied embedding: the output's type */
        t = gguf_find_tensor(f, "blk.1.ffn_down.weight");
        CHECK(t && t->type == SLM_TYPE_Q6_K); /* Q4_K_M's more-bits layer */
        t = gguf_find_tensor(f, "blk.0.attn_q.weight");
        CHECK(t && t->type == SLM_TYPE_Q4_K);
        t = gguf_find_tensor(f, "blk.0.attn_norm.weight");
        CHECK(t && t->type == SLM_TYPE_F32);
        for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
            const gguf_tensor *a = gguf_tensor_at(f, i), *b = gguf_tensor_at(g, i);
            CHECK(a->n_bytes == b->n_bytes && memcmp(a->data, b->data, a->n_bytes) == 0);
        }
    }
    gguf_close(f);
    gguf_close(g);
    unlink(out1);
    /* an already quantized input is refused, and nothing is left behind */
    err[0] = 0;
    p.ftype = SLM_FTYPE_Q8_0;
    CHECK(slm_quantize_file(out, out1, &p, NULL, err, sizeof err) == -1 && strstr(err, "requantizing"));
    CHECK(access(out1, F_OK) != 0);
    snprintf(out1 + strlen(out1), sizeof out1 - strlen(out1), ".tmp");
    CHECK(access(out1, F_OK) != 0);
    p.ftype = 5; /* removed Q4_2 */
    CHECK(slm_quantize_file(in, out, &p, NULL, err, sizeof err) == -1 && strstr(err, "unsupported file type"));
    unlink(out);
}

int main(void) {
    test_fast_kquants_equal_reference();
    test_iq4_nl_rows();
    test_imatrix_legacy();
    test_imatrix_files();
    test_ftype_names();
    test_quantize_file();
    return test_report("test_quantize");
}
