/* GGUF v3 writer. Key/values are kept serialized (the bytes that follow the key's type field), so a
 * copied entry is reproduced exactly and the header is one walk over the list. The layout matches
 * ggml's gguf writer: header, key/values, tensor records, zero padding to the alignment, then each
 * tensor's bytes padded with zeros to the alignment (the last one too). */
#include "gguf/gguf_write.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor/types.h"
#include "util/err.h"

#define GGUF_WRITE_DEFAULT_ALIGNMENT 32u
#define GGUF_WRITE_MAX_NAME 1024

typedef struct writer_kv {
    char *key;
    size_t key_len;
    uint32_t type;
    uint8_t *value; /* serialized value: scalar bytes, u64 length + bytes, or arr_type + n + elements */
    size_t value_len;
} writer_kv;

typedef struct writer_tensor {
    char *name;
    uint32_t type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t n_bytes;
    uint64_t offset;
    const void *data;
    gguf_tensor_fill_fn fill;
    void *user;
} writer_tensor;

struct gguf_writer {
    writer_kv *kvs;
    size_t n_kv, cap_kv;
    writer_tensor *tensors;
    size_t n_tensors, cap_tensors;
    uint32_t alignment;
    bool failed; /* an add failed (out of memory / invalid): write refuses */
    char first_error[256];
};

/* A growable byte string used to serialize values. */
typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} bytes;

static void bytes_put(bytes *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n) {
            if (cap > SIZE_MAX / 2) { b->oom = true; return; }
            cap *= 2;
        }
        uint8_t *np = realloc(b->p, cap);
        if (!np) { b->oom = true; return; }
        b->p = np;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void bytes_u32(bytes *b, uint32_t v) { bytes_put(b, &v, 4); }
static void bytes_u64(bytes *b, uint64_t v) { bytes_put(b, &v, 8); }
static void bytes_str(bytes *b, const char *s, uint64_t len) {
    bytes_u64(b, len);
    bytes_put(b, s, (size_t)len);
}

gguf_writer *gguf_writer_new(void) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = GGUF_WRITE_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        free(w->kvs[i].value);
    }
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->kvs);
    free(w->tensors);
    free(w);
}

static int fail(gguf_writer *w, const char *fmt, const char *what) {
    if (!w->failed) snprintf(w->first_error, sizeof w->first_error, fmt, what);
    w->failed = true;
    return -1;
}

static writer_kv *find_kv(gguf_writer *w, const char *key, size_t key_len) {
    for (size_t i = 0; i < w->n_kv; i++)
        if (w->kvs[i].key_len == key_len && memcmp(w->kvs[i].key, key, key_len) == 0) return &w->kvs[i];
    return NULL;
}

/* Takes ownership of value (a bytes buffer) in every case. */
static int put_kv(gguf_writer *w, const char *key, size_t key_len, uint32_t type, bytes *value) {
    if (value->oom) {
        free(value->p);
        return fail(w, "out of memory for key '%s'", key);
    }
    if (key_len == 0 || key_len > 65535) {
        free(value->p);
        return fail(w, "invalid key length for key '%.64s'", key);
    }
    writer_kv *kv = find_kv(w, key, key_len);
    if (kv) { /* replace in place: keeps the key's position */
        free(kv->value);
        kv->type = type;
        kv->value = value->p;
        kv->value_len = value->len;
        return 0;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        writer_kv *nk = realloc(w->kvs, cap * sizeof *nk);
        if (!nk) {
            free(value->p);
            return fail(w, "out of memory for key '%s'", key);
        }
        w->kvs = nk;
        w->cap_kv = cap;
    }
    char *k = malloc(key_len + 1);
    if (!k) {
        free(value->p);
        return fail(w, "out of memory for key '%s'", key);
    }
    memcpy(k, key, key_len);
    k[key_len] = 0;
    w->kvs[w->n_kv++] = (writer_kv){k, key_len, type, value->p, value->len};
    return 0;
}

int gguf_writer_set_scalar(gguf_writer *w, const char *key, uint32_t type, const void *value) {
    size_t sz = gguf_type_size(type);
    if (!sz) return fail(w, "key '%s': not a scalar type", key);
    bytes b = {0};
    bytes_put(&b, value, sz);
    return put_kv(w, key, strlen(key), type, &b);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *value) {
    bytes b = {0};
    bytes_str(&b, value, strlen(value));
    return put_kv(w, key, strlen(key), GGUF_TYPE_STRING, &b);
}
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t value) {
    return gguf_writer_set_scalar(w, key, GGUF_TYPE_UINT32, &value);
}
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t value) {
    return gguf_writer_set_scalar(w, key, GGUF_TYPE_INT32, &value);
}
int gguf_writer_set_f32(gguf_writer *w, const char *key, float value) {
    return gguf_writer_set_scalar(w, key, GGUF_TYPE_FLOAT32, &value);
}
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool value) {
    uint8_t v = value ? 1 : 0;
    return gguf_writer_set_scalar(w, key, GGUF_TYPE_BOOL, &v);
}

int gguf_writer_set_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n) {
    size_t sz = gguf_type_size(elem_type);
    if (!sz) return fail(w, "key '%s': array element type is not a scalar type", key);
    if (n > SIZE_MAX / sz) return fail(w, "key '%s': array too large", key);
    bytes b = {0};
    bytes_u32(&b, elem_type);
    bytes_u64(&b, n);
    bytes_put(&b, data, (size_t)(n * sz));
    return put_kv(w, key, strlen(key), GGUF_TYPE_ARRAY, &b);
}

int gguf_writer_set_str_arr(gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n) {
    bytes b = {0};
    bytes_u32(&b, GGUF_TYPE_STRING);
    bytes_u64(&b, n);
    for (uint64_t i = 0; i < n && !b.oom; i++) bytes_str(&b, strs[i], lens ? lens[i] : strlen(strs[i]));
    return put_kv(w, key, strlen(key), GGUF_TYPE_ARRAY, &b);
}

int gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv) {
    bytes b = {0};
    char key[96];
    snprintf(key, sizeof key, "%.*s", (int)(kv->key.len < 80 ? kv->key.len : 80), kv->key.ptr);
    if (kv->type == GGUF_TYPE_STRING) {
        bytes_str(&b, kv->strs[0].ptr, kv->strs[0].len);
    } else if (kv->type == GGUF_TYPE_ARRAY) {
        bytes_u32(&b, kv->arr_type);
        bytes_u64(&b, kv->arr_n);
        if (kv->arr_type == GGUF_TYPE_STRING) {
            for (uint64_t i = 0; i < kv->arr_n && !b.oom; i++) bytes_str(&b, kv->strs[i].ptr, kv->strs[i].len);
        } else {
            size_t sz = gguf_type_size(kv->arr_type);
            if (!sz) {
                free(b.p);
                return fail(w, "key '%s': unsupported array element type", key);
            }
            bytes_put(&b, kv->data, (size_t)(kv->arr_n * sz));
        }
    } else {
        size_t sz = gguf_type_size(kv->type);
        if (!sz) return fail(w, "key '%s': unsupported value type", key);
        bytes_put(&b, kv->data, sz);
    }
    return put_kv(w, kv->key.ptr, (size_t)kv->key.len, kv->type, &b);
}

int gguf_writer_copy_all_kv(gguf_writer *w, const gguf_file *f) {
    for (int64_t i = 0; i < gguf_n_kv(f); i++)
        if (gguf_writer_copy_kv(w, gguf_kv_at(f, i))) return -1;
    return 0;
}

int gguf_writer_remove_kv(gguf_writer *w, const char *key) {
    writer_kv *kv = find_kv(w, key, strlen(key));
    if (!kv) return -1;
    size_t i = (size_t)(kv - w->kvs);
    free(kv->key);
    free(kv->value);
    memmove(&w->kvs[i], &w->kvs[i + 1], (w->n_kv - i - 1) * sizeof *w->kvs);
    w->n_kv--;
    return 0;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                           const void *data, gguf_tensor_fill_fn fill, void *user) {
    size_t name_len = strlen(name);
    if (name_len == 0 || name_len > GGUF_WRITE_MAX_NAME) return fail(w, "tensor '%.64s': invalid name length", name);
    const slm_type_info *ti = slm_type_info_get(type);
    if (!ti) return fail(w, "tensor '%s': unknown type", name);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) return fail(w, "tensor '%s': 1 to 4 dimensions are supported", name);
    if (!data == !fill) return fail(w, "tensor '%s': give either its bytes or a fill callback", name);
    uint64_t n_elem = 1;
    writer_tensor t = {0};
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t.ne[d] = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || (uint64_t)ne[d] > (uint64_t)INT64_MAX / n_elem) return fail(w, "tensor '%s': invalid dimensions", name);
        n_elem *= (uint64_t)ne[d];
        t.ne[d] = ne[d];
    }
    if (ne[0] % ti->block_size != 0) return fail(w, "tensor '%s': row length is not a multiple of the type's block size", name);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0) return fail(w, "duplicate tensor name '%s'", name);
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        writer_tensor *nt = realloc(w->tensors, cap * sizeof *nt);
        if (!nt) return fail(w, "out of memory for tensor '%s'", name);
        w->tensors = nt;
        w->cap_tensors = cap;
    }
    t.name = strdup(name);
    if (!t.name) return fail(w, "out of memory for tensor '%s'", name);
    t.type = type;
    t.n_dims = n_dims;
    t.n_bytes = n_elem / (uint64_t)ti->block_size * (uint64_t)ti->type_size;
    t.data = data;
    t.fill = fill;
    t.user = user;
    w->tensors[w->n_tensors++] = t;
    return 0;
}

void gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
        fail(w, "alignment %s is not a power of two", "");
        return;
    }
    w->alignment = alignment;
    /* readers take the alignment from general.alignment only */
    if (alignment != GGUF_WRITE_DEFAULT_ALIGNMENT || find_kv(w, "general.alignment", 17))
        gguf_writer_set_u32(w, "general.alignment", alignment);
}

/* The alignment the file will be read with: general.alignment when present. */
static int effective_alignment(gguf_writer *w, uint32_t *out, char *err, size_t err_len, const char *path) {
    writer_kv *kv = find_kv(w, "general.alignment", 17);
    if (!kv) {
        *out = w->alignment;
        return 0;
    }
    uint32_t a = 0;
    if (kv->type != GGUF_TYPE_UINT32 || kv->value_len != 4)
        return slm_err(err, err_len, "%s: key 'general.alignment' must be u32", path);
    memcpy(&a, kv->value, 4);
    if (a == 0 || (a & (a - 1)) != 0)
        return slm_err(err, err_len, "%s: key 'general.alignment' is %u, not a power of two", path, a);
    *out = a;
    return 0;
}

static uint64_t pad_to(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

static int write_all(FILE *fp, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, fp) == n ? 0 : -1; }

static int write_zeros(FILE *fp, uint64_t n) {
    static const uint8_t zeros[64];
    while (n) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (write_all(fp, zeros, k)) return -1;
        n -= k;
    }
    return 0;
}

int gguf_writer_write(gguf_writer *w, const char *path, char *err, size_t err_len) {
    if (w->failed) return slm_err(err, err_len, "%s: not written: %s", path, w->first_error);
    uint32_t alignment = GGUF_WRITE_DEFAULT_ALIGNMENT;
    if (effective_alignment(w, &alignment, err, err_len, path)) return -1;

    /* Header, key/values and tensor records, built in memory (they are small). */
    bytes h = {0};
    bytes_put(&h, "GGUF", 4);
    bytes_u32(&h, 3);
    bytes_u64(&h, w->n_tensors);
    bytes_u64(&h, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        bytes_str(&h, w->kvs[i].key, w->kvs[i].key_len);
        bytes_u32(&h, w->kvs[i].type);
        bytes_put(&h, w->kvs[i].value, w->kvs[i].value_len);
    }
    uint64_t offset = 0, max_fill = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        writer_tensor *t = &w->tensors[i];
        bytes_str(&h, t->name, strlen(t->name));
        bytes_u32(&h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) bytes_u64(&h, (uint64_t)t->ne[d]);
        bytes_u32(&h, t->type);
        t->offset = offset;
        bytes_u64(&h, offset);
        offset += pad_to(t->n_bytes, alignment);
        if (t->fill && t->n_bytes > max_fill) max_fill = t->n_bytes;
    }
    if (h.oom) {
        free(h.p);
        return slm_err(err, err_len, "%s: out of memory building the header", path);
    }
    uint8_t *fill_buf = NULL;
    if (max_fill) {
        if (max_fill > SIZE_MAX || !(fill_buf = malloc((size_t)max_fill))) {
            free(h.p);
            return slm_err(err, err_len, "%s: out of memory for a %" PRIu64 "-byte tensor", path, max_fill);
        }
    }

    size_t tmp_len = strlen(path) + 5;
    char *tmp = malloc(tmp_len);
    if (!tmp) {
        free(h.p);
        free(fill_buf);
        return slm_err(err, err_len, "%s: out of memory", path);
    }
    snprintf(tmp, tmp_len, "%s.tmp", path);
    int rc = -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FILE *fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!fp) {
        slm_err(err, err_len, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        goto done;
    }
    setvbuf(fp, NULL, _IOFBF, 1 << 20);
    if (write_all(fp, h.p, h.len) || write_zeros(fp, pad_to(h.len, alignment) - h.len)) goto io_error;
    for (size_t i = 0; i < w->n_tensors; i++) {
        writer_tensor *t = &w->tensors[i];
        const void *src = t->data;
        if (t->fill) {
            char ferr[256] = "";
            if (t->fill(t->user, (int64_t)i, fill_buf, (size_t)t->n_bytes, ferr, sizeof ferr)) {
                slm_err(err, err_len, "%s: tensor '%s': %s", path, t->name, ferr[0] ? ferr : "could not be produced");
                goto cleanup;
            }
            src = fill_buf;
        }
        if (write_all(fp, src, (size_t)t->n_bytes) || write_zeros(fp, pad_to(t->n_bytes, alignment) - t->n_bytes))
            goto io_error;
    }
    if (fflush(fp) != 0 || fsync(fileno(fp)) != 0) goto io_error;
    if (fclose(fp) != 0) {
        fp = NULL;
        goto io_error;
    }
    fp = NULL;
    if (rename(tmp, path) != 0) {
        slm_err(err, err_len, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        goto cleanup;
    }
    rc = 0;
    goto done;
io_error:
    slm_err(err, err_len, "%s: write failed: %s", path, strerror(errno ? errno : EIO));
cleanup:
    if (fp) fclose(fp);
    unlink(tmp);
done:
    free(tmp);
    free(h.p);
    free(fill_buf);
    return rc;
}
