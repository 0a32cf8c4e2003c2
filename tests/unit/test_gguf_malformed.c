/* Hostile GGUF input: builds files in memory with a small writer, damages them in every way the
 * format allows, and checks that gguf_open_memory and gguf_open refuse each one with a single
 * error line naming the culprit — without crashing, hanging or allocating beyond reason.
 * Also checks that a valid file parses to exactly the values written. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "gguf_writer.h"
#include "tensor/types.h"
#include "test.h"

/* Under ASan, make any single allocation above 256 MiB fail (return NULL) instead of succeeding
 * lazily: the parser then reports "out of memory", which the checks below treat as a defect. */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_HAVE_ASAN 1
#endif
#endif
#ifdef TEST_HAVE_ASAN
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "max_allocation_size_mb=256:allocator_may_return_null=1"; }
#else
#include <sys/resource.h>
/* Without ASan, cap the address space instead so a huge allocation fails the same way. */
static void limit_memory(void) {
    struct rlimit rl = {(rlim_t)1 << 30, (rlim_t)1 << 30};
    setrlimit(RLIMIT_AS, &rl);
}
#endif

/* ---- a minimal GGUF writer ---- */

/* One byte stream, written in order, so a test can damage any field: gguf_writer.h's growable
 * section buffer. */
typedef gw_buf writer;

static void w_bytes(writer *w, const void *p, size_t n) { gw_buf_put(w, p, n); }
static void w_u8(writer *w, uint8_t v) { w_bytes(w, &v, 1); }
static void w_u32(writer *w, uint32_t v) { w_bytes(w, &v, 4); }
static void w_u64(writer *w, uint64_t v) { w_bytes(w, &v, 8); }
static void w_strn(writer *w, const char *s, uint64_t len) {
    w_u64(w, len);
    w_bytes(w, s, (size_t)len);
}
static void w_str(writer *w, const char *s) { w_strn(w, s, strlen(s)); }
static void w_header(writer *w, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    w_bytes(w, "GGUF", 4);
    w_u32(w, version);
    w_u64(w, n_tensors);
    w_u64(w, n_kv);
}
static void w_kv_u32(writer *w, const char *key, uint32_t v) {
    w_str(w, key);
    w_u32(w, GGUF_TYPE_UINT32);
    w_u32(w, v);
}
static void w_kv_str(writer *w, const char *key, const char *v) {
    w_str(w, key);
    w_u32(w, GGUF_TYPE_STRING);
    w_str(w, v);
}
static void w_tensor(writer *w, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                     uint64_t offset) {
    w_str(w, name);
    w_u32(w, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) w_u64(w, ne[d]);
    w_u32(w, type);
    w_u64(w, offset);
}
static void w_pad(writer *w, size_t align) {
    while (w->len % align) w_u8(w, 0);
}
static void w_free(writer *w) {
    free(w->p);
    memset(w, 0, sizeof *w);
}

/* ---- the valid reference file ---- */

enum { T0_ELEMS = 8, T1_ROWS = 2 };

/* Every value type, string arrays with an empty string, a numeric array, three tensors of
 * different types whose data end exactly at the end of the file (so every truncation is an
 * error). Alignment 64 to check that general.alignment is honoured. */
static void build_valid(writer *w) {
    w_header(w, 3, 3, 15);
    w_kv_str(w, "general.architecture", "llama");
    w_kv_u32(w, "general.alignment", 64);
    w_str(w, "v.u8"); w_u32(w, GGUF_TYPE_UINT8); w_u8(w, 200);
    w_str(w, "v.i8"); w_u32(w, GGUF_TYPE_INT8); w_u8(w, (uint8_t)-5);
    w_str(w, "v.u16"); w_u32(w, GGUF_TYPE_UINT16); { uint16_t v = 65000; w_bytes(w, &v, 2); }
    w_str(w, "v.i16"); w_u32(w, GGUF_TYPE_INT16); { int16_t v = -300; w_bytes(w, &v, 2); }
    w_str(w, "v.i32"); w_u32(w, GGUF_TYPE_INT32); { int32_t v = -70000; w_bytes(w, &v, 4); }
    w_str(w, "v.f32"); w_u32(w, GGUF_TYPE_FLOAT32); { float v = 1.5f; w_bytes(w, &v, 4); }
    w_str(w, "v.bool"); w_u32(w, GGUF_TYPE_BOOL); w_u8(w, 1);
    w_str(w, "v.u64"); w_u32(w, GGUF_TYPE_UINT64); w_u64(w, 5000000000ull);
    w_str(w, "v.i64"); w_u32(w, GGUF_TYPE_INT64); w_u64(w, (uint64_t)-7);
    w_str(w, "v.f64"); w_u32(w, GGUF_TYPE_FLOAT64); { double v = -0.25; w_bytes(w, &v, 8); }
    w_str(w, "tokenizer.ggml.tokens"); w_u32(w, GGUF_TYPE_ARRAY); w_u32(w, GGUF_TYPE_STRING); w_u64(w, 3);
    w_str(w, "a"); w_str(w, ""); w_strn(w, "b\0c", 3);
    w_str(w, "v.arr_i32"); w_u32(w, GGUF_TYPE_ARRAY); w_u32(w, GGUF_TYPE_INT32); w_u64(w, 4);
    for (int32_t i = 0; i < 4; i++) { int32_t v = i * 10 - 15; w_bytes(w, &v, 4); }
    w_str(w, "v.empty_arr"); w_u32(w, GGUF_TYPE_ARRAY); w_u32(w, GGUF_TYPE_FLOAT32); w_u64(w, 0);

    const uint64_t ne0[1] = {T0_ELEMS}, ne1[2] = {32, T1_ROWS}, ne2[4] = {2, 1, 3, 1};
    w_tensor(w, "tok_embd.weight", 1, ne0, SLM_TYPE_F32, 0);             /* 32 bytes */
    w_tensor(w, "blk.0.attn_q.weight", 2, ne1, SLM_TYPE_Q8_0, 64);       /* 68 bytes */
    w_tensor(w, "output_norm.weight", 4, ne2, SLM_TYPE_F16, 192);         /* 12 bytes */
    w_pad(w, 64);
    size_t data = w->len;
    for (int i = 0; i < T0_ELEMS; i++) { float v = (float)i + 0.5f; w_bytes(w, &v, 4); }
    w_pad(w, 64);
    for (int r = 0; r < T1_ROWS; r++) {
        uint16_t d = 0x3c00;
        w_bytes(w, &d, 2);
        for (int j = 0; j < 32; j++) w_u8(w, (uint8_t)(r * 32 + j));
    }
    while (w->len < data + 192) w_u8(w, 0);
    for (int i = 0; i < 6; i++) { uint16_t h = (uint16_t)(0x3c00 + i); w_bytes(w, &h, 2); }
}

static void test_valid_file(const uint8_t *buf, size_t len) {
    gguf_file *f = NULL;
    char err[512] = "";
    int rc = gguf_open_memory(buf, len, "valid.gguf", &f, err, sizeof err);
    CHECKF(rc == 0 && f, "valid file rejected: %s", err);
    if (rc) return;
    CHECK(gguf_version(f) == 3);
    CHECK(gguf_n_kv(f) == 15);
    CHECK(gguf_n_tensors(f) == 3);
    gguf_str s;
    CHECK(gguf_get_str(f, "general.architecture", &s, err, sizeof err) == 0 && gguf_str_eq(s, "llama"));
    uint32_t u32 = 0;
    CHECK(gguf_get_u32(f, "general.alignment", &u32, err, sizeof err) == 0 && u32 == 64);
    CHECK(gguf_get_u32(f, "v.u8", &u32, err, sizeof err) == 0 && u32 == 200);
    CHECK(gguf_get_u32(f, "v.u16", &u32, err, sizeof err) == 0 && u32 == 65000);
    int64_t i64 = 0;
    CHECK(gguf_get_i64(f, "v.i8", &i64, err, sizeof err) == 0 && i64 == -5);
    CHECK(gguf_get_i64(f, "v.i16", &i64, err, sizeof err) == 0 && i64 == -300);
    CHECK(gguf_get_i64(f, "v.i32", &i64, err, sizeof err) == 0 && i64 == -70000);
    CHECK(gguf_get_i64(f, "v.u64", &i64, err, sizeof err) == 0 && i64 == 5000000000ll);
    CHECK(gguf_get_i64(f, "v.i64", &i64, err, sizeof err) == 0 && i64 == -7);
    /* Out-of-range and wrong-type reads fail with -2 and name the key; absent keys give -1. */
    err[0] = 0;
    CHECK(gguf_get_u32(f, "v.i32", &u32, err, sizeof err) == -2 && strstr(err, "v.i32"));
    err[0] = 0;
    CHECK(gguf_get_u32(f, "v.u64", &u32, err, sizeof err) == -2 && strstr(err, "v.u64"));
    err[0] = 0;
    CHECK(gguf_get_str(f, "v.u8", &s, err, sizeof err) == -2 && strstr(err, "v.u8"));
    CHECK(gguf_get_u32(f, "no.such.key", &u32, err, sizeof err) == -1);
    float f32 = 0;
    CHECK(gguf_get_f32(f, "v.f32", &f32, err, sizeof err) == 0 && f32 == 1.5f);
    CHECK(gguf_get_f32(f, "v.f64", &f32, err, sizeof err) == 0 && f32 == -0.25f);
    bool b = false;
    CHECK(gguf_get_bool(f, "v.bool", &b, err, sizeof err) == 0 && b);
    const gguf_str *toks = NULL;
    uint64_t n = 0;
    CHECK(gguf_get_str_arr(f, "tokenizer.ggml.tokens", &toks, &n, err, sizeof err) == 0 && n == 3);
    if (toks && n == 3) {
        CHECK(gguf_str_eq(toks[0], "a"));
        CHECK(toks[1].len == 0);
        CHECK(toks[2].len == 3 && memcmp(toks[2].ptr, "b\0c", 3) == 0);
    }
    const gguf_kv *arr = NULL;
    CHECK(gguf_get_arr(f, "v.arr_i32", &arr, err, sizeof err) == 0 && arr && arr->arr_n == 4);
    if (arr) {
        CHECK(gguf_arr_i64(arr, 0) == -15 && gguf_arr_i64(arr, 3) == 15);
        CHECK(gguf_arr_f64(arr, 2) == 5.0);
    }
    CHECK(gguf_get_arr(f, "v.empty_arr", &arr, err, sizeof err) == 0 && arr && arr->arr_n == 0);
    /* Every getter refuses the wrong shape with -2, names the key and what it wanted, and leaves
     * its output as it was. */
    err[0] = 0;
    b = false;
    CHECK(gguf_get_bool(f, "v.u8", &b, err, sizeof err) == -2 && strstr(err, "'v.u8' should be a bool") && !b);
    err[0] = 0;
    f32 = 7.0f;
    CHECK(gguf_get_f32(f, "v.bool", &f32, err, sizeof err) == -2 && strstr(err, "v.bool") && f32 == 7.0f);
    err[0] = 0;
    i64 = 42;
    CHECK(gguf_get_i64(f, "v.f32", &i64, err, sizeof err) == -2 && strstr(err, "should be an integer") && i64 == 42);
    err[0] = 0;
    toks = NULL;
    CHECK(gguf_get_str_arr(f, "v.arr_i32", &toks, &n, err, sizeof err) == -2 && strstr(err, "an array of strings") &&
          !toks);
    err[0] = 0;
    arr = NULL;
    CHECK(gguf_get_arr(f, "tokenizer.ggml.tokens", &arr, err, sizeof err) == -2 &&
          strstr(err, "'tokenizer.ggml.tokens' should be a numeric array, is an array") && !arr);
    CHECK(gguf_get_arr(f, "no.such.key", &arr, err, sizeof err) == -1 && !arr);

    const gguf_tensor *t0 = gguf_find_tensor(f, "tok_embd.weight");
    const gguf_tensor *t1 = gguf_find_tensor(f, "blk.0.attn_q.weight");
    const gguf_tensor *t2 = gguf_find_tensor(f, "output_norm.weight");
    CHECK(t0 && t1 && t2 && !gguf_find_tensor(f, "tok_embd"));
    if (t0 && t1 && t2) {
        CHECK(t0->type == SLM_TYPE_F32 && t0->n_dims == 1 && t0->ne[0] == T0_ELEMS && t0->ne[1] == 1);
        CHECK(t0->n_bytes == 32);
        float v;
        memcpy(&v, (const uint8_t *)t0->data + 4 * 3, 4);
        CHECK(v == 3.5f);
        CHECK(((uintptr_t)t0->data - (uintptr_t)buf) % 64 == 0);
        CHECK(t1->type == SLM_TYPE_Q8_0 && t1->n_dims == 2 && t1->ne[0] == 32 && t1->ne[1] == T1_ROWS);
        CHECK(t1->n_bytes == 68 && t1->offset == 64);
        CHECK(((const uint8_t *)t1->data)[34 + 2 + 5] == 32 + 5);
        CHECK(t2->n_dims == 4 && t2->ne[0] == 2 && t2->ne[2] == 3 && t2->n_bytes == 12);
        CHECK((const uint8_t *)t2->data + t2->n_bytes == buf + len);
    }
    gguf_close(f);
}

/* ---- error checks ---- */

static char tmp_dir[256];

/* Writes buf to a temp file and opens it with gguf_open; returns its rc, err filled. */
static int open_as_file(const uint8_t *buf, size_t len, char *err, size_t err_len) {
    char path[300];
    snprintf(path, sizeof path, "%s/case.gguf", tmp_dir);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(buf, 1, len, fp) != len) {
        if (fp) fclose(fp);
        snprintf(err, err_len, "test could not write %s", path);
        return 0; /* reported as a failure by the caller */
    }
    fclose(fp);
    gguf_file *f = NULL;
    int rc = gguf_open(path, &f, err, err_len);
    if (rc == 0) gguf_close(f);
    unlink(path);
    return rc;
}

static int err_is_one_line(const char *err) {
    return err[0] != 0 && strchr(err, '\n') == NULL && strlen(err) < 400;
}

/* The buffer must be rejected, by memory and by file, with one line containing `needle`. */
static void expect_reject(const char *what, const uint8_t *buf, size_t len, const char *needle) {
    gguf_file *f = NULL;
    char err[512];
    memset(err, 0, sizeof err);
    int rc = gguf_open_memory(buf, len, "bad.gguf", &f, err, sizeof err);
    CHECKF(rc != 0 && f == NULL, "%s: accepted by gguf_open_memory", what);
    if (rc == 0) gguf_close(f);
    CHECKF(err_is_one_line(err), "%s: error is not one non-empty line: '%s'", what, err);
    CHECKF(!strstr(err, "out of memory"), "%s: tried a huge allocation: %s", what, err);
    CHECKF(!needle || strstr(err, needle), "%s: error does not mention '%s': %s", what, needle, err);
    if (getenv("SLM_TEST_VERBOSE")) fprintf(stderr, "%-40s -> %s\n", what, err);

    memset(err, 0, sizeof err);
    rc = open_as_file(buf, len, err, sizeof err);
    CHECKF(rc != 0, "%s: accepted by gguf_open (%s)", what, err);
    CHECKF(err_is_one_line(err), "%s: gguf_open error is not one line: '%s'", what, err);
    CHECKF(!strstr(err, "out of memory"), "%s: gguf_open tried a huge allocation: %s", what, err);
    CHECKF(!needle || len < 24 || strstr(err, needle), "%s: gguf_open error does not mention '%s': %s", what,
           needle, err);
}

static void test_truncations(const uint8_t *buf, size_t len) {
    for (size_t cut = 0; cut < len; cut++) {
        char what[64];
        snprintf(what, sizeof what, "truncated at %zu of %zu", cut, len);
        gguf_file *f = NULL;
        char err[512] = "";
        int rc = gguf_open_memory(buf, cut, "cut.gguf", &f, err, sizeof err);
        CHECKF(rc != 0, "%s: accepted", what);
        if (rc == 0) gguf_close(f);
        CHECKF(err_is_one_line(err), "%s: bad error '%s'", what, err);
        CHECKF(!strstr(err, "out of memory"), "%s: %s", what, err);
    }
    /* The file path too, on a sample of cut points (every byte would be slow on a busy disk). */
    for (size_t cut = 0; cut < len; cut += (cut < 64 ? 1 : 7)) {
        char err[512] = "";
        CHECKF(open_as_file(buf, cut, err, sizeof err) != 0, "file truncated at %zu accepted", cut);
        CHECKF(err_is_one_line(err), "file truncated at %zu: bad error '%s'", cut, err);
    }
}

/* Builds: header with given counts, then `body` writes the rest. */
typedef void (*body_fn)(writer *w, uint64_t arg);

static void reject_case(const char *what, uint32_t version, uint64_t n_tensors, uint64_t n_kv, body_fn body,
                        uint64_t arg, const char *needle) {
    writer w = {0};
    w_header(&w, version, n_tensors, n_kv);
    if (body) body(&w, arg);
    expect_reject(what, w.p, w.len, needle);
    w_free(&w);
}

/* Some trailing bytes so "cannot fit" checks are not satisfied by a tiny file alone. */
static void pad_kb(writer *w) {
    for (int i = 0; i < 1024; i++) w_u8(w, 0);
}

static void body_pad(writer *w, uint64_t arg) { (void)arg; pad_kb(w); }

static void body_key_len(writer *w, uint64_t len) {
    w_u64(w, len);
    w_bytes(w, "abcdefgh", 8);
    pad_kb(w);
}

static void body_str_value_len(writer *w, uint64_t len) {
    w_str(w, "general.name");
    w_u32(w, GGUF_TYPE_STRING);
    w_u64(w, len);
    w_bytes(w, "xyz", 3);
    pad_kb(w);
}

static void body_value_type(writer *w, uint64_t type) {
    w_str(w, "bad.type");
    w_u32(w, (uint32_t)type);
    w_u64(w, 0);
    pad_kb(w);
}

static void body_array(writer *w, uint64_t packed) { /* elem type in high 32 bits, count low */
    w_str(w, "bad.array");
    w_u32(w, GGUF_TYPE_ARRAY);
    w_u32(w, (uint32_t)(packed >> 32));
    w_u64(w, packed & 0xffffffffu ? (packed & 0xffffffffu) : UINT64_MAX);
    pad_kb(w);
}

static void body_array_count(writer *w, uint64_t count) { /* u64 elements: count * 8 may overflow */
    w_str(w, "huge.array");
    w_u32(w, GGUF_TYPE_ARRAY);
    w_u32(w, GGUF_TYPE_UINT64);
    w_u64(w, count);
    pad_kb(w);
}

static void body_string_array_count(writer *w, uint64_t count) {
    w_str(w, "huge.strings");
    w_u32(w, GGUF_TYPE_ARRAY);
    w_u32(w, GGUF_TYPE_STRING);
    w_u64(w, count);
    pad_kb(w);
}

static void body_string_in_array_len(writer *w, uint64_t len) {
    w_str(w, "tokenizer.ggml.tokens");
    w_u32(w, GGUF_TYPE_ARRAY);
    w_u32(w, GGUF_TYPE_STRING);
    w_u64(w, 2);
    w_str(w, "ok");
    w_u64(w, len);
    pad_kb(w);
}

static void body_nested_array(writer *w, uint64_t arg) {
    (void)arg;
    w_str(w, "nested");
    w_u32(w, GGUF_TYPE_ARRAY);
    w_u32(w, GGUF_TYPE_ARRAY);
    w_u64(w, 1);
    w_u32(w, GGUF_TYPE_UINT8);
    w_u64(w, 1);
    w_u8(w, 7);
    pad_kb(w);
}

static void body_duplicate_key(writer *w, uint64_t arg) {
    (void)arg;
    w_kv_u32(w, "llama.block_count", 2);
    w_kv_u32(w, "llama.block_count", 3);
}

static void body_empty_key(writer *w, uint64_t arg) {
    (void)arg;
    w_strn(w, "", 0);
    w_u32(w, GGUF_TYPE_UINT32);
    w_u32(w, 1);
}

static void body_long_key(writer *w, uint64_t len) {
    char *k = malloc((size_t)len);
    memset(k, 'k', (size_t)len);
    w_strn(w, k, len);
    free(k);
    w_u32(w, GGUF_TYPE_UINT32);
    w_u32(w, 1);
}

static void body_alignment(writer *w, uint64_t a) {
    w_kv_u32(w, "general.alignment", (uint32_t)a);
    const uint64_t ne[1] = {32};
    w_tensor(w, "t", 1, ne, SLM_TYPE_F32, 0);
    pad_kb(w);
}

static void body_alignment_type(writer *w, uint64_t arg) {
    (void)arg;
    w_str(w, "general.alignment");
    w_u32(w, GGUF_TYPE_UINT64);
    w_u64(w, 32);
    pad_kb(w);
}

/* One tensor described by a small spec packed into globals (the body signature takes one arg). */
static struct {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[8];
    uint32_t type;
    uint64_t offset;
    size_t data_bytes;
} tspec;

static void body_tensor(writer *w, uint64_t arg) {
    (void)arg;
    w_str(w, tspec.name);
    w_u32(w, tspec.n_dims);
    for (uint32_t d = 0; d < tspec.n_dims && d < 8; d++) w_u64(w, tspec.ne[d]);
    w_u32(w, tspec.type);
    w_u64(w, tspec.offset);
    w_pad(w, 32);
    for (size_t i = 0; i < tspec.data_bytes; i++) w_u8(w, 0);
}

static void reject_tensor(const char *what, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type,
                          uint64_t offset, size_t data_bytes, const char *needle) {
    memset(&tspec, 0, sizeof tspec);
    tspec.name = name;
    tspec.n_dims = n_dims;
    for (uint32_t d = 0; d < n_dims && d < 5; d++) tspec.ne[d] = ne[d]; /* callers pass >= min(n_dims, 5) */
    tspec.type = type;
    tspec.offset = offset;
    tspec.data_bytes = data_bytes;
    reject_case(what, 3, 1, 0, body_tensor, 0, needle);
}

static void body_two_tensors_same_name(writer *w, uint64_t arg) {
    (void)arg;
    const uint64_t ne[1] = {8};
    w_tensor(w, "blk.0.ffn_up.weight", 1, ne, SLM_TYPE_F32, 0);
    w_tensor(w, "blk.0.ffn_up.weight", 1, ne, SLM_TYPE_F32, 32);
    w_pad(w, 32);
    for (int i = 0; i < 64; i++) w_u8(w, 0);
}

static void body_long_tensor_name(writer *w, uint64_t len) {
    char *k = malloc((size_t)len);
    memset(k, 'n', (size_t)len);
    w_strn(w, k, len);
    free(k);
    w_u32(w, 1);
    w_u64(w, 8);
    w_u32(w, SLM_TYPE_F32);
    w_u64(w, 0);
    pad_kb(w);
}

static void test_malformed(void) {
    /* Header. */
    {
        writer w = {0};
        build_valid(&w);
        memcpy(w.p, "GGUX", 4);
        expect_reject("wrong magic", w.p, w.len, "magic");
        memcpy(w.p, "FUGG", 4); /* byte-swapped (big-endian) magic */
        expect_reject("swapped magic", w.p, w.len, "magic");
        w_free(&w);
    }
    reject_case("version 1", 1, 0, 0, body_pad, 0, "version");
    reject_case("version 4", 4, 0, 0, body_pad, 0, "version");
    reject_case("version 0x03000000 (big-endian)", 0x03000000u, 0, 0, body_pad, 0, "version");
    reject_case("version max", UINT32_MAX, 0, 0, body_pad, 0, "version");
    reject_case("huge kv count", 3, 0, UINT64_MAX, body_pad, 0, "metadata count");
    reject_case("kv count 2^40", 3, 0, (uint64_t)1 << 40, body_pad, 0, "metadata count");
    reject_case("huge tensor count", 3, UINT64_MAX, 0, body_pad, 0, "tensor count");
    reject_case("tensor count 2^33", 3, (uint64_t)1 << 33, 0, body_pad, 0, "tensor count");
    reject_case("kv count larger than entries", 3, 0, 40, body_pad, 0, NULL);

    /* Keys and values. */
    reject_case("key length max", 3, 0, 1, body_key_len, UINT64_MAX, "metadata entry 0");
    reject_case("key length 2^63", 3, 0, 1, body_key_len, (uint64_t)1 << 63, "metadata entry 0");
    reject_case("key length past end", 3, 0, 1, body_key_len, 1024 + 9, "metadata entry 0");
    reject_case("key length over limit", 3, 0, 1, body_long_key, 70000, "metadata entry 0");
    reject_case("empty key", 3, 0, 1, body_empty_key, 0, "empty key");
    reject_case("string value length max", 3, 0, 1, body_str_value_len, UINT64_MAX, "general.name");
    reject_case("string value length past end", 3, 0, 1, body_str_value_len, 2000, "general.name");
    reject_case("value type 13", 3, 0, 1, body_value_type, 13, "bad.type");
    reject_case("value type max", 3, 0, 1, body_value_type, UINT32_MAX, "bad.type");
    reject_case("array of type 13", 3, 0, 1, body_array, (uint64_t)13 << 32 | 1, "bad.array");
    reject_case("array of type max", 3, 0, 1, body_array, (uint64_t)UINT32_MAX << 32 | 1, "bad.array");
    reject_case("nested array", 3, 0, 1, body_nested_array, 0, "nested");
    reject_case("u8 array count max", 3, 0, 1, body_array, (uint64_t)GGUF_TYPE_UINT8 << 32, "bad.array");
    reject_case("u64 array count overflowing bytes", 3, 0, 1, body_array_count, ((uint64_t)1 << 61) + 1, "huge.array");
    reject_case("u64 array count 2^40", 3, 0, 1, body_array_count, (uint64_t)1 << 40, "huge.array");
    reject_case("u64 array count past end by one", 3, 0, 1, body_array_count, 1024 / 8 + 1, "huge.array");
    reject_case("string array count max", 3, 0, 1, body_string_array_count, UINT64_MAX, "huge.strings");
    reject_case("string array count 2^40", 3, 0, 1, body_string_array_count, (uint64_t)1 << 40, "huge.strings");
    reject_case("string array count 2^32", 3, 0, 1, body_string_array_count, (uint64_t)1 << 32, "huge.strings");
    reject_case("string in array too long", 3, 0, 1, body_string_in_array_len, UINT64_MAX, "tokenizer.ggml.tokens");
    reject_case("duplicate key", 3, 0, 2, body_duplicate_key, 0, "llama.block_count");
    reject_case("alignment 0", 3, 1, 1, body_alignment, 0, "general.alignment");
    reject_case("alignment 3", 3, 1, 1, body_alignment, 3, "general.alignment");
    reject_case("alignment 48", 3, 1, 1, body_alignment, 48, "general.alignment");
    reject_case("alignment 2^31+1", 3, 1, 1, body_alignment, 0x80000001u, "general.alignment");
    reject_case("alignment as u64", 3, 0, 1, body_alignment_type, 0, "general.alignment");

    /* Tensors. */
    const uint64_t ne8[5] = {8, 1, 1, 1, 1};
    reject_tensor("rank 0", "blk.0.rank0", 0, ne8, SLM_TYPE_F32, 0, 64, "blk.0.rank0");
    reject_tensor("rank 5", "blk.0.rank5", 5, (const uint64_t[]){8, 1, 1, 1, 1}, SLM_TYPE_F32, 0, 64, "blk.0.rank5");
    reject_tensor("rank max", "blk.0.rankmax", UINT32_MAX, ne8, SLM_TYPE_F32, 0, 64, "blk.0.rankmax");
    reject_tensor("zero dim", "zero.dim", 2, (const uint64_t[]){8, 0}, SLM_TYPE_F32, 0, 64, "zero.dim");
    reject_tensor("negative dim", "neg.dim", 2, (const uint64_t[]){8, UINT64_MAX}, SLM_TYPE_F32, 0, 64, "neg.dim");
    reject_tensor("dim 2^63", "big.dim", 1, (const uint64_t[]){(uint64_t)1 << 63}, SLM_TYPE_F32, 0, 64, "big.dim");
    reject_tensor("dim product overflow", "prod.overflow", 2, (const uint64_t[]){(uint64_t)1 << 32, (uint64_t)1 << 32},
                  SLM_TYPE_F32, 0, 64, "prod.overflow");
    reject_tensor("dim product overflow 4d", "prod4.overflow", 4,
                  (const uint64_t[]){1 << 16, 1 << 16, 1 << 16, 1 << 16}, SLM_TYPE_F32, 0, 64, "prod4.overflow");
    reject_tensor("n_bytes overflow", "bytes.overflow", 1, (const uint64_t[]){(uint64_t)1 << 62}, SLM_TYPE_F32, 0, 64,
                  "bytes.overflow");
    reject_tensor("n_bytes huge q8_0", "bytes.huge", 2, (const uint64_t[]){32, (uint64_t)1 << 57}, SLM_TYPE_Q8_0, 0,
                  64, "bytes.huge");
    reject_tensor("offset past end", "off.past", 1, ne8, SLM_TYPE_F32, 4096, 64, "off.past");
    reject_tensor("data one byte short", "short.data", 1, ne8, SLM_TYPE_F32, 0, 31, "short.data");
    reject_tensor("offset + size overflow", "off.overflow", 1, ne8, SLM_TYPE_F32, UINT64_MAX - 31, 64,
                  "off.overflow");
    reject_tensor("misaligned offset", "off.misaligned", 1, ne8, SLM_TYPE_F32, 4, 64, "off.misaligned");
    reject_tensor("unknown type 4", "type.q4_2", 1, (const uint64_t[]){32}, 4, 0, 64, "type.q4_2");
    reject_tensor("unknown type 19", "type.19", 1, (const uint64_t[]){256}, 19, 0, 1024, "type.19");
    reject_tensor("unknown type 39", "type.39", 1, ne8, 39, 0, 64, "type.39");
    reject_tensor("unknown type max", "type.max", 1, ne8, UINT32_MAX, 0, 64, "type.max");
    reject_tensor("row not a block multiple", "q8.row33", 2, (const uint64_t[]){33, 2}, SLM_TYPE_Q8_0, 0, 128,
                  "q8.row33");
    reject_tensor("k-quant row of 128", "q4k.row128", 1, (const uint64_t[]){128}, SLM_TYPE_Q4_K, 0, 256,
                  "q4k.row128");
    reject_case("duplicate tensor name", 3, 2, 0, body_two_tensors_same_name, 0, "blk.0.ffn_up.weight");
    reject_case("tensor name length max", 3, 1, 0, body_key_len, UINT64_MAX, "tensor 0");
    reject_case("tensor name over limit", 3, 1, 0, body_long_tensor_name, 5000, "tensor 0");

    /* Non-files. */
    {
        gguf_file *f = NULL;
        char err[512] = "";
        CHECK(gguf_open("/nonexistent/dir/model.gguf", &f, err, sizeof err) != 0 && f == NULL);
        CHECK(err_is_one_line(err) && strstr(err, "/nonexistent/dir/model.gguf"));
        err[0] = 0;
        CHECK(gguf_open(tmp_dir, &f, err, sizeof err) != 0 && err_is_one_line(err));
        err[0] = 0;
        CHECK(gguf_open_memory(NULL, 0, "empty", &f, err, sizeof err) != 0 && err_is_one_line(err));
    }
}

/* Flipping single bytes of the valid file's header region must never crash; when a flipped file
 * is accepted, every tensor must still lie inside the buffer. */
static void test_byte_flips(const uint8_t *valid, size_t len) {
    uint8_t *buf = malloc(len);
    int accepted = 0, rejected = 0;
    for (size_t pos = 0; pos < len; pos++) {
        static const uint8_t xors[] = {0x01, 0x80, 0xff, 0x40};
        for (size_t k = 0; k < sizeof xors; k++) {
            memcpy(buf, valid, len);
            buf[pos] ^= xors[k];
            gguf_file *f = NULL;
            char err[512] = "";
            if (gguf_open_memory(buf, len, "flip.gguf", &f, err, sizeof err) == 0) {
                accepted++;
                for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
                    const gguf_tensor *t = gguf_tensor_at(f, i);
                    const uint8_t *p = t->data;
                    CHECKF(p >= buf && p + t->n_bytes <= buf + len, "flip at %zu: tensor outside the buffer", pos);
                }
                gguf_close(f);
            } else {
                rejected++;
                CHECKF(err_is_one_line(err), "flip at %zu: bad error '%s'", pos, err);
                CHECKF(!strstr(err, "out of memory"), "flip at %zu: %s", pos, err);
            }
        }
    }
    CHECK(accepted > 0 && rejected > 0);
    free(buf);
}

/* Numeric arrays read through the converting accessors: values no int64 can hold (huge floats,
 * NaN, u64 above INT64_MAX) saturate instead of invoking undefined behaviour (found by fuzz_gguf). */
static void test_array_conversions(void) {
    writer w = {0};
    w_header(&w, 3, 0, 2);
    w_str(&w, "token_type_as_f64");
    w_u32(&w, GGUF_TYPE_ARRAY);
    w_u32(&w, GGUF_TYPE_FLOAT64);
    w_u64(&w, 5);
    const double dv[5] = {1e30, -1e30, 0.0 / 0.0, 3.75, -2.5};
    w_bytes(&w, dv, sizeof dv);
    w_str(&w, "big_u64");
    w_u32(&w, GGUF_TYPE_ARRAY);
    w_u32(&w, GGUF_TYPE_UINT64);
    w_u64(&w, 2);
    w_u64(&w, UINT64_MAX);
    w_u64(&w, 42);
    gguf_file *f = NULL;
    char err[256] = "";
    CHECKF(gguf_open_memory(w.p, w.len, "conv.gguf", &f, err, sizeof err) == 0, "%s", err);
    if (f) {
        const gguf_kv *a = NULL;
        CHECK(gguf_get_arr(f, "token_type_as_f64", &a, err, sizeof err) == 0 && a);
        if (a) {
            CHECK(gguf_arr_i64(a, 0) == INT64_MAX);
            CHECK(gguf_arr_i64(a, 1) == INT64_MIN);
            CHECK(gguf_arr_i64(a, 2) == 0);
            CHECK(gguf_arr_i64(a, 3) == 3 && gguf_arr_i64(a, 4) == -2);
            CHECK(gguf_arr_i64(a, 5) == 0); /* past the end */
            CHECK(gguf_arr_f64(a, 3) == 3.75);
        }
        CHECK(gguf_get_arr(f, "big_u64", &a, err, sizeof err) == 0 && a);
        if (a) {
            CHECK(gguf_arr_i64(a, 0) == INT64_MAX);
            CHECK(gguf_arr_i64(a, 1) == 42);
        }
        gguf_close(f);
    }
    w_free(&w);
}

int main(void) {
#ifndef TEST_HAVE_ASAN
    limit_memory();
#endif
    const char *tmp = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/slm-gguf-test-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(tmp_dir)) {
        fprintf(stderr, "cannot create a temp dir: %s\n", strerror(errno));
        return 1;
    }
    writer w = {0};
    build_valid(&w);
    test_valid_file(w.p, w.len);
    /* A file of exactly the header with no entries is valid too. */
    {
        writer e = {0};
        w_header(&e, 2, 0, 0);
        gguf_file *f = NULL;
        char err[256] = "";
        CHECKF(gguf_open_memory(e.p, e.len, "empty.gguf", &f, err, sizeof err) == 0, "%s", err);
        if (f) {
            CHECK(gguf_n_kv(f) == 0 && gguf_n_tensors(f) == 0 && gguf_version(f) == 2);
            gguf_close(f);
        }
        w_free(&e);
    }
    test_truncations(w.p, w.len);
    test_malformed();
    test_byte_flips(w.p, w.len);
    test_array_conversions();
    w_free(&w);
    rmdir(tmp_dir);
    return test_report("test_gguf_malformed");
}
