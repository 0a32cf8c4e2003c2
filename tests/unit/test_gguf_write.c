/* The GGUF writer: every value type, arrays and tensors read back byte for byte by the reader; a
 * real model's key/values and tensors copied reproduce the file; a failed write leaves no file. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "gguf/gguf_write.h"
#include "tensor/quant.h"
#include "tensor/types.h"
#include "test.h"

static char dir[256];

static bool file_exists(const char *p) { return access(p, F_OK) == 0; }

/* Number of entries in dir besides . and .. (a failed write must leave no temporary file). */
static int dir_entries(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    if (d) closedir(d);
    return n;
}

static uint8_t *read_whole(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

typedef struct fill_ctx {
    const float *values;
    int64_t n;
    int calls;
    bool fail;
} fill_ctx;

static int fill_q4_k(void *user, int64_t index, void *dst, size_t n_bytes, char *err, size_t err_len) {
    fill_ctx *c = user;
    c->calls++;
    if (c->fail) {
        snprintf(err, err_len, "refusing tensor %lld", (long long)index);
        return -1;
    }
    if (n_bytes != slm_row_bytes(SLM_TYPE_Q4_K, c->n)) return -1;
    return slm_quantize_row(SLM_TYPE_Q4_K, c->values, dst, c->n);
}

static void test_every_type(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/all.gguf", dir);
    gguf_writer *w = gguf_writer_new();
    CHECK(w != NULL);
    uint8_t u8 = 200;
    int8_t i8 = -7;
    uint16_t u16 = 65000;
    int16_t i16 = -30000;
    uint64_t u64 = 0xfedcba9876543210ull;
    int64_t i64 = -1234567890123ll;
    double f64 = 3.25e100;
    CHECK(gguf_writer_set_str(w, "general.architecture", "llama") == 0);
    CHECK(gguf_writer_set_scalar(w, "t.u8", GGUF_TYPE_UINT8, &u8) == 0);
    CHECK(gguf_writer_set_scalar(w, "t.i8", GGUF_TYPE_INT8, &i8) == 0);
    CHECK(gguf_writer_set_scalar(w, "t.u16", GGUF_TYPE_UINT16, &u16) == 0);
    CHECK(gguf_writer_set_scalar(w, "t.i16", GGUF_TYPE_INT16, &i16) == 0);
    CHECK(gguf_writer_set_u32(w, "t.u32", 4000000000u) == 0);
    CHECK(gguf_writer_set_i32(w, "t.i32", -2000000000) == 0);
    CHECK(gguf_writer_set_f32(w, "t.f32", 1.5f) == 0);
    CHECK(gguf_writer_set_bool(w, "t.bool", true) == 0);
    CHECK(gguf_writer_set_scalar(w, "t.u64", GGUF_TYPE_UINT64, &u64) == 0);
    CHECK(gguf_writer_set_scalar(w, "t.i64", GGUF_TYPE_INT64, &i64) == 0);
    CHECK(gguf_writer_set_scalar(w, "t.f64", GGUF_TYPE_FLOAT64, &f64) == 0);
    const int32_t ints[5] = {1, -2, 3, -4, 5};
    const float floats[3] = {0.5f, -0.25f, 1e-30f};
    CHECK(gguf_writer_set_arr(w, "t.arr_i32", GGUF_TYPE_INT32, ints, 5) == 0);
    CHECK(gguf_writer_set_arr(w, "t.arr_f32", GGUF_TYPE_FLOAT32, floats, 3) == 0);
    CHECK(gguf_writer_set_arr(w, "t.arr_empty", GGUF_TYPE_UINT8, NULL, 0) == 0);
    const char *strs[4] = {"hello", "", "with\0nul", "\xe2\x96\x81tok"};
    const uint64_t lens[4] = {5, 0, 8, 6};
    CHECK(gguf_writer_set_str_arr(w, "t.strs", strs, lens, 4) == 0);
    CHECK(gguf_writer_set_str(w, "t.removed", "x") == 0);
    CHECK(gguf_writer_remove_kv(w, "t.removed") == 0);
    CHECK(gguf_writer_remove_kv(w, "t.absent") == -1);
    /* replacing keeps the first position and takes the new type */
    CHECK(gguf_writer_set_u32(w, "general.architecture", 7) == 0);
    CHECK(gguf_writer_set_str(w, "general.architecture", "gpt2") == 0);

    /* tensors: given bytes (F32, F16, Q8_0) and produced by a callback (Q4_K) */
    float f32v[3 * 8];
    for (int i = 0; i < 24; i++) f32v[i] = (float)i * 0.5f - 3.0f;
    uint16_t f16v[5];
    for (int i = 0; i < 5; i++) f16v[i] = slm_fp32_to_fp16((float)i);
    float src[256 * 2];
    for (int i = 0; i < 512; i++) src[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    block_q8_0 q8[2];
    CHECK(slm_quantize_row(SLM_TYPE_Q8_0, src, q8, 64) == 0);
    fill_ctx fc = {src, 512, 0, false};
    CHECK(gguf_writer_add_tensor(w, "a.f32", SLM_TYPE_F32, 2, (int64_t[]){8, 3}, f32v, NULL, NULL) == 0);
    CHECK(gguf_writer_add_tensor(w, "b.f16", SLM_TYPE_F16, 1, (int64_t[]){5}, f16v, NULL, NULL) == 0);
    CHECK(gguf_writer_add_tensor(w, "c.q8", SLM_TYPE_Q8_0, 2, (int64_t[]){32, 2}, q8, NULL, NULL) == 0);
    CHECK(gguf_writer_add_tensor(w, "d.q4k", SLM_TYPE_Q4_K, 3, (int64_t[]){256, 1, 2}, NULL, fill_q4_k, &fc) == 0);
    CHECK(gguf_writer_write(w, path, NULL, 0) == 0);
    CHECK(fc.calls == 1);
    gguf_writer_free(w);

    gguf_file *f = NULL;
    char err[256] = "";
    CHECKF(gguf_open(path, &f, err, sizeof err) == 0, "%s", err);
    if (!f) return;
    CHECK(gguf_version(f) == 3);
    CHECK(gguf_n_kv(f) == 16);
    const gguf_kv *kv0 = gguf_kv_at(f, 0);
    CHECK(gguf_str_eq(kv0->key, "general.architecture") && kv0->type == GGUF_TYPE_STRING && gguf_str_eq(kv0->strs[0], "gpt2"));
    CHECK(gguf_find(f, "t.removed") == NULL);
#define SCALAR_IS(key, T, var) do { const gguf_kv *kv = gguf_find(f, key); T v; \
        CHECK(kv && kv->type == T##_ID); if (kv) { memcpy(&v, kv->data, sizeof v); CHECK(memcmp(&v, &var, sizeof v) == 0); } } while (0)
    typedef uint8_t u8_t; enum { u8_t_ID = GGUF_TYPE_UINT8 };
    typedef int8_t i8_t; enum { i8_t_ID = GGUF_TYPE_INT8 };
    typedef uint16_t u16_t; enum { u16_t_ID = GGUF_TYPE_UINT16 };
    typedef int16_t i16_t; enum { i16_t_ID = GGUF_TYPE_INT16 };
    typedef uint64_t u64_t; enum { u64_t_ID = GGUF_TYPE_UINT64 };
    typedef int64_t i64_t; enum { i64_t_ID = GGUF_TYPE_INT64 };
    typedef double f64_t; enum { f64_t_ID = GGUF_TYPE_FLOAT64 };
    SCALAR_IS("t.u8", u8_t, u8);
    SCALAR_IS("t.i8", i8_t, i8);
    SCALAR_IS("t.u16", u16_t, u16);
    SCALAR_IS("t.i16", i16_t, i16);
    SCALAR_IS("t.u64", u64_t, u64);
    SCALAR_IS("t.i64", i64_t, i64);
    SCALAR_IS("t.f64", f64_t, f64);
    uint32_t u32 = 0;
    CHECK(gguf_get_u32(f, "t.u32", &u32, err, sizeof err) == 0 && u32 == 4000000000u);
    int64_t i32 = 0;
    CHECK(gguf_get_i64(f, "t.i32", &i32, err, sizeof err) == 0 && i32 == -2000000000);
    float fv = 0;
    CHECK(gguf_get_f32(f, "t.f32", &fv, err, sizeof err) == 0 && fv == 1.5f);
    bool bv = false;
    CHECK(gguf_get_bool(f, "t.bool", &bv, err, sizeof err) == 0 && bv);
    const gguf_kv *arr = NULL;
    CHECK(gguf_get_arr(f, "t.arr_i32", &arr, err, sizeof err) == 0 && arr->arr_type == GGUF_TYPE_INT32 && arr->arr_n == 5 &&
          memcmp(arr->data, ints, sizeof ints) == 0);
    CHECK(gguf_get_arr(f, "t.arr_f32", &arr, err, sizeof err) == 0 && arr->arr_n == 3 && memcmp(arr->data, floats, 12) == 0);
    CHECK(gguf_get_arr(f, "t.arr_empty", &arr, err, sizeof err) == 0 && arr->arr_n == 0 && arr->arr_type == GGUF_TYPE_UINT8);
    const gguf_str *ss = NULL;
    uint64_t ns = 0;
    CHECK(gguf_get_str_arr(f, "t.strs", &ss, &ns, err, sizeof err) == 0 && ns == 4);
    for (uint64_t i = 0; ss && i < ns && i < 4; i++) CHECK(ss[i].len == lens[i] && memcmp(ss[i].ptr, strs[i], lens[i]) == 0);

    CHECK(gguf_n_tensors(f) == 4);
    const gguf_tensor *t = gguf_find_tensor(f, "a.f32");
    CHECK(t && t->type == SLM_TYPE_F32 && t->n_dims == 2 && t->ne[0] == 8 && t->ne[1] == 3 && memcmp(t->data, f32v, sizeof f32v) == 0);
    t = gguf_find_tensor(f, "b.f16");
    CHECK(t && t->type == SLM_TYPE_F16 && t->n_dims == 1 && t->n_bytes == 10 && memcmp(t->data, f16v, 10) == 0);
    t = gguf_find_tensor(f, "c.q8");
    CHECK(t && t->type == SLM_TYPE_Q8_0 && t->n_bytes == sizeof q8 && memcmp(t->data, q8, sizeof q8) == 0);
    t = gguf_find_tensor(f, "d.q4k");
    CHECK(t && t->type == SLM_TYPE_Q4_K && t->n_dims == 3 && t->ne[2] == 2 && t->n_bytes == 2 * sizeof(block_q4_K));
    if (t) {
        block_q4_K expect[2];
        slm_quantize_row(SLM_TYPE_Q4_K, src, expect, 512);
        CHECK(memcmp(t->data, expect, sizeof expect) == 0);
    }
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) CHECK(gguf_tensor_at(f, i)->offset % 32 == 0);
    /* every tensor is padded to the alignment, the last one too */
    CHECK(gguf_file_size(f) % 32 == 0);
    gguf_close(f);
    unlink(path);
}

static void test_alignment(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/aligned.gguf", dir);
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_alignment(w, 256);
    float v[3] = {1, 2, 3};
    CHECK(gguf_writer_add_tensor(w, "x", SLM_TYPE_F32, 1, (int64_t[]){3}, v, NULL, NULL) == 0);
    CHECK(gguf_writer_add_tensor(w, "y", SLM_TYPE_F32, 1, (int64_t[]){3}, v, NULL, NULL) == 0);
    CHECK(gguf_writer_write(w, path, NULL, 0) == 0);
    gguf_writer_free(w);
    gguf_file *f = NULL;
    char err[256];
    CHECKF(gguf_open(path, &f, err, sizeof err) == 0, "%s", err);
    if (f) {
        uint32_t a = 0;
        CHECK(gguf_get_u32(f, "general.alignment", &a, err, sizeof err) == 0 && a == 256);
        CHECK(gguf_find_tensor(f, "y")->offset == 256);
        CHECK(gguf_file_size(f) % 256 == 0);
        gguf_close(f);
    }
    unlink(path);
}

static void test_failures_leave_nothing(void) {
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/failed.gguf", dir);
    float src[256] = {0};
    fill_ctx fc = {src, 256, 0, true};
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    float v[4] = {0};
    gguf_writer_add_tensor(w, "first", SLM_TYPE_F32, 1, (int64_t[]){4}, v, NULL, NULL);
    gguf_writer_add_tensor(w, "second", SLM_TYPE_Q4_K, 1, (int64_t[]){256}, NULL, fill_q4_k, &fc);
    CHECK(gguf_writer_write(w, path, err, sizeof err) == -1);
    CHECKF(strstr(err, "second") && strstr(err, "refusing tensor 1"), "%s", err);
    CHECK(!file_exists(path));
    CHECK(dir_entries() == 0);
    /* an existing file at the target survives a failed write */
    FILE *keep = fopen(path, "wb");
    fputs("old", keep);
    fclose(keep);
    CHECK(gguf_writer_write(w, path, err, sizeof err) == -1);
    size_t len = 0;
    uint8_t *old = read_whole(path, &len);
    CHECK(old && len == 3 && memcmp(old, "old", 3) == 0);
    free(old);
    unlink(path);
    gguf_writer_free(w);

    /* a missing directory */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no/such/dir/out.gguf", dir);
    w = gguf_writer_new();
    CHECK(gguf_writer_write(w, missing, err, sizeof err) == -1);
    CHECKF(strstr(err, "out.gguf") != NULL, "%s", err);
    gguf_writer_free(w);

    /* invalid declarations make the write refuse with the first reason */
    w = gguf_writer_new();
    uint8_t u8 = 1;
    CHECK(gguf_writer_set_scalar(w, "t.bad", GGUF_TYPE_STRING, &u8) == -1); /* not a scalar */
    CHECK(gguf_writer_add_tensor(w, "odd", SLM_TYPE_Q4_0, 1, (int64_t[]){33}, v, NULL, NULL) == -1);
    CHECK(gguf_writer_add_tensor(w, "ok", SLM_TYPE_F32, 1, (int64_t[]){4}, v, NULL, NULL) == 0);
    CHECK(gguf_writer_add_tensor(w, "ok", SLM_TYPE_F32, 1, (int64_t[]){4}, v, NULL, NULL) == -1);
    CHECK(gguf_writer_add_tensor(w, "bad_type", 999, 1, (int64_t[]){4}, v, NULL, NULL) == -1);
    CHECK(gguf_writer_add_tensor(w, "zero_dim", SLM_TYPE_F32, 2, (int64_t[]){4, 0}, v, NULL, NULL) == -1);
    CHECK(gguf_writer_write(w, path, err, sizeof err) == -1);
    CHECKF(strstr(err, "t.bad") != NULL, "%s", err);
    CHECK(!file_exists(path));
    CHECK(dir_entries() == 0);
    gguf_writer_free(w);
}

/* Copying every key/value and tensor of a real model (written by llama.cpp's gguf writer) gives the
 * same file, byte for byte. */
static void test_copy_real_model(void) {
    const char *shared = test_shared_dir();
    if (!shared) return;
    char in[4200], out[512], err[512] = "";
    snprintf(in, sizeof in, "%s/models/stories260K.gguf", shared);
    snprintf(out, sizeof out, "%s/copy.gguf", dir);
    gguf_file *f = NULL;
    if (gguf_open(in, &f, err, sizeof err)) {
        fprintf(stderr, "skipping the real-model copy: %s\n", err);
        return;
    }
    gguf_writer *w = gguf_writer_new();
    CHECK(gguf_writer_copy_all_kv(w, f) == 0);
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char name[1100];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        CHECK(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data, NULL, NULL) == 0);
    }
    CHECKF(gguf_writer_write(w, out, err, sizeof err) == 0, "%s", err);
    gguf_writer_free(w);
    size_t a_len = 0, b_len = 0;
    uint8_t *a = read_whole(in, &a_len), *b = read_whole(out, &b_len);
    CHECK(a && b);
    if (a && b) {
        /* the key/value section: from after the 24-byte header to the first tensor record */
        const gguf_kv *last = gguf_kv_at(f, gguf_n_kv(f) - 1);
        (void)last;
        CHECKF(a_len == b_len, "%zu vs %zu", a_len, b_len);
        size_t first_diff = 0;
        while (first_diff < a_len && first_diff < b_len && a[first_diff] == b[first_diff]) first_diff++;
        CHECKF(first_diff == a_len && a_len == b_len, "first difference at byte %zu", first_diff);
    }
    free(a);
    free(b);
    gguf_close(f);
    unlink(out);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/test_gguf_write.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_every_type();
    test_alignment();
    test_failures_leave_nothing();
    test_copy_real_model();
    rmdir(dir);
    return test_report("test_gguf_write");
}
