/* GGUF v2/v3 reader over a read-only mapping. Every count, length, type, rank, dimension product,
 * offset and alignment is checked against the file before it is used; a bad file yields one error
 * line naming the key or tensor. Nothing here knows about models. */
#ifndef SLM_GGUF_H
#define SLM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum gguf_value_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
};

/* A string inside the file: not NUL-terminated, may contain any bytes. */
typedef struct gguf_str {
    const char *ptr;
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    uint32_t type;          /* enum gguf_value_type */
    uint32_t arr_type;      /* element type when type == ARRAY */
    uint64_t arr_n;         /* element count when type == ARRAY */
    const uint8_t *data;    /* the value (or first array element) in the file; may be unaligned */
    const gguf_str *strs;   /* for string values (1) and string arrays (arr_n), parsed up front */
} gguf_kv;

#define GGUF_MAX_DIMS 4

typedef struct gguf_tensor {
    gguf_str name;
    uint32_t type;          /* enum slm_type */
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused dims are 1 */
    uint64_t offset;        /* relative to the data section */
    uint64_t n_bytes;
    const void *data;       /* in the mapping */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Maps and parses `path`. The error names the file. */
int gguf_open(const char *path, gguf_file **out, char *err, size_t err_len);
/* Parses a buffer the caller keeps alive (tests, fuzzing). `name` is used in messages. */
int gguf_open_memory(const void *data, size_t size, const char *name, gguf_file **out, char *err, size_t err_len);
void gguf_close(gguf_file *f);
/* Says the caller will not read [p, p+n) of a mapped file soon: its whole pages leave the process's
 * memory (they are read back from the file if touched again). Does nothing for in-memory files. */
void gguf_release_pages(gguf_file *f, const void *p, size_t n);

uint32_t gguf_version(const gguf_file *f);
size_t gguf_file_size(const gguf_file *f);
const char *gguf_name(const gguf_file *f);

int64_t gguf_n_kv(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, int64_t i);
/* NULL if absent. */
const gguf_kv *gguf_find(const gguf_file *f, const char *key);

/* Typed getters. Return 0 on success, -1 if the key is absent (out untouched), -2 if present with
 * an incompatible type or out of range (err filled, naming the key). Integer getters accept any
 * integer type whose value fits. */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, char *err, size_t err_len);
int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, char *err, size_t err_len);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, char *err, size_t err_len);
int gguf_get_bool(const gguf_file *f, const char *key, bool *out, char *err, size_t err_len);
int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, char *err, size_t err_len);
/* Array getters: check the element type (numeric getters accept any numeric element type). */
int gguf_get_str_arr(const gguf_file *f, const char *key, const gguf_str **out, uint64_t *n, char *err, size_t err_len);
int gguf_get_arr(const gguf_file *f, const char *key, const gguf_kv **out, char *err, size_t err_len);
/* Element i of a numeric array as double / int64 (converted from its stored type). */
double gguf_arr_f64(const gguf_kv *kv, uint64_t i);
int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i);

int64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

/* Size in bytes of one value of a scalar type; 0 for STRING/ARRAY/unknown. */
size_t gguf_type_size(uint32_t type);
const char *gguf_type_name(uint32_t type);

/* True if the gguf_str equals the NUL-terminated s. */
bool gguf_str_eq(gguf_str a, const char *s);

#endif
