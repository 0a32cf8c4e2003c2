/* libFuzzer target for the GGUF reader: parse the input, then read every value, string, array
 * element and tensor byte range the parser claims is valid, so a bounds mistake in the parser
 * shows up as an ASan report here rather than later in the model loader. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tensor/quant.h"
#include "tensor/types.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static void touch(const void *p, uint64_t n) {
    const uint8_t *b = p;
    uint64_t acc = 0;
    for (uint64_t i = 0; i < n; i++) acc += b[i];
    sink += acc;
}

/* Copies a name from the file into a NUL-terminated buffer for the lookup functions. */
static const char *c_name(gguf_str s, char *buf, size_t cap) {
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(buf, s.ptr, n);
    buf[n] = 0;
    return buf;
}

static void exercise_kv(const gguf_file *f, const gguf_kv *kv) {
    char key[256], err[256];
    touch(kv->key.ptr, kv->key.len);
    c_name(kv->key, key, sizeof key);
    /* Keys with embedded NULs or over 255 bytes cannot be looked up by C string; the rest must be
     * found again, and the typed getters must not overread whatever the type is. */
    const gguf_kv *again = gguf_find(f, key);
    if (kv->key.len < sizeof key && memchr(kv->key.ptr, 0, kv->key.len) == NULL && again != kv) __builtin_trap();
    uint32_t u32;
    int64_t i64;
    float f32;
    bool b;
    gguf_str s;
    const gguf_str *strs;
    uint64_t n;
    const gguf_kv *arr;
    sink += (uint64_t)gguf_get_u32(f, key, &u32, err, sizeof err);
    sink += (uint64_t)gguf_get_i64(f, key, &i64, err, sizeof err);
    sink += (uint64_t)gguf_get_f32(f, key, &f32, err, sizeof err);
    sink += (uint64_t)gguf_get_bool(f, key, &b, err, sizeof err);
    if (gguf_get_str(f, key, &s, err, sizeof err) == 0) touch(s.ptr, s.len);
    if (gguf_get_str_arr(f, key, &strs, &n, err, sizeof err) == 0)
        for (uint64_t i = 0; i < n; i++) touch(strs[i].ptr, strs[i].len);
    if (gguf_get_arr(f, key, &arr, err, sizeof err) == 0) {
        for (uint64_t i = 0; i < arr->arr_n; i++) {
            sink += (uint64_t)gguf_arr_i64(arr, i);
            sink += (uint64_t)(gguf_arr_f64(arr, i) != 0.0);
        }
    }
    if (kv->type != GGUF_TYPE_ARRAY && kv->type != GGUF_TYPE_STRING) touch(kv->data, gguf_type_size(kv->type));
}

/* Decode small tensors of weight types: arbitrary bytes (NaN scales, any quant bits) must decode
 * without undefined behaviour. Copied to aligned storage first: alignment of tensor data is the
 * loader's contract, not the dequantizer's. */
static void dequantize_small(const gguf_tensor *t, int64_t n_elem) {
    enum { MAX_BYTES = 1 << 16 };
    static _Alignas(64) uint8_t raw[MAX_BYTES];
    static float out[MAX_BYTES * 4];
    const slm_type_info *ti = slm_type_info_get(t->type);
    if (!ti || !ti->weight_type || t->n_bytes > MAX_BYTES || (uint64_t)n_elem > sizeof out / sizeof out[0]) return;
    memcpy(raw, t->data, t->n_bytes);
    slm_dequantize_row(t->type, raw, out, n_elem);
    sink += (uint64_t)(out[n_elem - 1] != out[n_elem - 1]);
}

static void exercise_tensor(const gguf_file *f, const gguf_tensor *t) {
    char name[256];
    touch(t->name.ptr, t->name.len);
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS) __builtin_trap();
    int64_t n_elem = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) {
        if (t->ne[d] < 1) __builtin_trap();
        n_elem *= t->ne[d];
    }
    /* The byte size the parser computed must agree with the type table. */
    if (slm_row_bytes(t->type, n_elem) != t->n_bytes) __builtin_trap();
    touch(t->data, t->n_bytes < 4096 ? t->n_bytes : 64);
    if (t->n_bytes) touch((const uint8_t *)t->data + t->n_bytes - 1, 1);
    dequantize_small(t, n_elem);
    c_name(t->name, name, sizeof name);
    const gguf_tensor *again = gguf_find_tensor(f, name);
    if (t->name.len < sizeof name && memchr(t->name.ptr, 0, t->name.len) == NULL && again != t) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file *f = NULL;
    char err[512];
    if (gguf_open_memory(data, size, "fuzz.gguf", &f, err, sizeof err) != 0) {
        /* Errors are one line. */
        if (err[0] == 0 || strchr(err, '\n')) __builtin_trap();
        return 0;
    }
    sink += gguf_version(f) + gguf_file_size(f);
    for (int64_t i = 0; i < gguf_n_kv(f); i++) exercise_kv(f, gguf_kv_at(f, i));
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) exercise_tensor(f, gguf_tensor_at(f, i));
    gguf_close(f);
    return 0;
}
