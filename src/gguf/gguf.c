/* GGUF reader. The file is mapped read-only; the parser walks it with a bounds-checked cursor and
 * keeps pointers into the mapping, so nothing but small index arrays is allocated. */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor/types.h"
#include "util/err.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_KEY_LEN 65535
#define GGUF_MAX_TENSOR_NAME_LEN 1024

struct gguf_file {
    char *name;
    const uint8_t *data;
    size_t size;
    bool mapped;
    uint32_t version;
    int64_t n_kv;
    gguf_kv *kvs;
    int64_t n_tensors;
    gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset;
    /* Open-addressing hash indexes so lookups by name are O(1) even for big files. */
    uint32_t *kv_index, *tensor_index;
    uint64_t kv_index_cap, tensor_index_cap;
};

typedef struct cursor {
    const uint8_t *base;
    size_t size, pos;
    const char *file;
    char *err;
    size_t err_len;
} cursor;

static size_t remaining(const cursor *c) { return c->size - c->pos; }

static int read_bytes(cursor *c, void *dst, size_t n, const char *what) {
    if (remaining(c) < n)
        return slm_err(c->err, c->err_len, "%s: truncated file: %s needs %zu bytes at offset %zu, file has %zu",
                       c->file, what, n, c->pos, c->size);
    memcpy(dst, c->base + c->pos, n);
    c->pos += n;
    return 0;
}

static int read_u32(cursor *c, uint32_t *v, const char *what) { return read_bytes(c, v, 4, what); }
static int read_u64(cursor *c, uint64_t *v, const char *what) { return read_bytes(c, v, 8, what); }

static int read_str(cursor *c, gguf_str *s, uint64_t max_len, const char *what) {
    uint64_t len = 0;
    if (read_u64(c, &len, what)) return -1;
    if (len > remaining(c))
        return slm_err(c->err, c->err_len, "%s: %s: string length %" PRIu64 " at offset %zu runs past end of file (%zu)",
                       c->file, what, len, c->pos - 8, c->size);
    if (len > max_len)
        return slm_err(c->err, c->err_len, "%s: %s: string length %" PRIu64 " exceeds the limit %" PRIu64, c->file,
                       what, len, max_len);
    s->ptr = (const char *)(c->base + c->pos);
    s->len = len;
    c->pos += len;
    return 0;
}

size_t gguf_type_size(uint32_t type) {
    switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_type_name(uint32_t type) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"};
    return type < GGUF_TYPE_COUNT ? names[type] : "invalid";
}

bool gguf_str_eq(gguf_str a, const char *s) {
    size_t n = strlen(s);
    return a.len == n && memcmp(a.ptr, s, n) == 0;
}

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static uint64_t index_capacity(int64_t n) {
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2) cap <<= 1;
    return cap;
}

/* Inserts item i (1-based stored, 0 = empty); returns the index of an existing item with the same
 * name, or -1 if inserted. */
static int64_t index_insert(uint32_t *index, uint64_t cap, gguf_str name, uint32_t item, const gguf_str *(*name_of)(const gguf_file *, uint32_t),
                            const gguf_file *f) {
    uint64_t h = hash_bytes(name.ptr, name.len) & (cap - 1);
    while (index[h]) {
        const gguf_str *other = name_of(f, index[h] - 1);
        if (other->len == name.len && memcmp(other->ptr, name.ptr, name.len) == 0) return index[h] - 1;
        h = (h + 1) & (cap - 1);
    }
    index[h] = item + 1;
    return -1;
}

static int64_t index_find(const uint32_t *index, uint64_t cap, const char *name,
                          const gguf_str *(*name_of)(const gguf_file *, uint32_t), const gguf_file *f) {
    if (!index) return -1;
    size_t n = strlen(name);
    uint64_t h = hash_bytes(name, n) & (cap - 1);
    while (index[h]) {
        const gguf_str *other = name_of(f, index[h] - 1);
        if (other->len == n && memcmp(other->ptr, name, n) == 0) return index[h] - 1;
        h = (h + 1) & (cap - 1);
    }
    return -1;
}

static const gguf_str *kv_name(const gguf_file *f, uint32_t i) { return &f->kvs[i].key; }
static const gguf_str *tensor_name(const gguf_file *f, uint32_t i) { return &f->tensors[i].name; }

/* Printable, bounded rendering of a name from the file for error messages. */
static const char *printable(gguf_str s, char *buf, size_t cap) {
    size_t o = 0;
    for (uint64_t i = 0; i < s.len && o + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch >= 32 && ch < 127 && ch != '\'') buf[o++] = (char)ch;
        else o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
    }
    if (s.len > 0 && o + 5 >= cap && o + 4 <= cap) { memcpy(buf + o, "...", 3); o += 3; }
    buf[o < cap ? o : cap - 1] = 0;
    return buf;
}

static int parse_value(gguf_file *f, cursor *c, gguf_kv *kv, const char *key) {
    if (kv->type >= GGUF_TYPE_COUNT)
        return slm_err(c->err, c->err_len, "%s: key '%s' has invalid value type %u", c->file, key, kv->type);
    kv->data = c->base + c->pos;
    if (kv->type == GGUF_TYPE_STRING) {
        gguf_str *s = malloc(sizeof *s);
        if (!s) return slm_err(c->err, c->err_len, "%s: out of memory", c->file);
        kv->strs = s;
        return read_str(c, s, UINT64_MAX, key);
    }
    if (kv->type != GGUF_TYPE_ARRAY) {
        size_t sz = gguf_type_size(kv->type);
        if (remaining(c) < sz)
            return slm_err(c->err, c->err_len, "%s: truncated file: value of key '%s' at offset %zu", c->file, key, c->pos);
        c->pos += sz;
        return 0;
    }
    if (read_u32(c, &kv->arr_type, key) || read_u64(c, &kv->arr_n, key)) return -1;
    kv->data = c->base + c->pos;
    if (kv->arr_type == GGUF_TYPE_ARRAY || kv->arr_type >= GGUF_TYPE_COUNT)
        return slm_err(c->err, c->err_len, "%s: key '%s' is an array of unsupported element type %u", c->file, key,
                       kv->arr_type);
    if (kv->arr_type == GGUF_TYPE_STRING) {
        /* Each string takes at least its 8-byte length, which bounds the allocation by the file size. */
        if (kv->arr_n > remaining(c) / 8)
            return slm_err(c->err, c->err_len, "%s: key '%s': array of %" PRIu64 " strings cannot fit in the %zu bytes left",
                           c->file, key, kv->arr_n, remaining(c));
        gguf_str *strs = malloc((kv->arr_n ? kv->arr_n : 1) * sizeof *strs);
        if (!strs) return slm_err(c->err, c->err_len, "%s: out of memory for key '%s'", c->file, key);
        kv->strs = strs;
        for (uint64_t i = 0; i < kv->arr_n; i++)
            if (read_str(c, &strs[i], UINT64_MAX, key)) return -1;
        return 0;
    }
    size_t sz = gguf_type_size(kv->arr_type);
    if (kv->arr_n > remaining(c) / sz)
        return slm_err(c->err, c->err_len, "%s: key '%s': array of %" PRIu64 " %s runs past end of file", c->file, key,
                       kv->arr_n, gguf_type_name(kv->arr_type));
    c->pos += (size_t)(kv->arr_n * sz);
    (void)f;
    return 0;
}

static int parse(gguf_file *f, char *err, size_t err_len) {
    cursor c = {f->data, f->size, 0, f->name, err, err_len};
    char magic[4];
    if (read_bytes(&c, magic, 4, "magic")) return -1;
    if (memcmp(magic, "GGUF", 4) != 0) return slm_err(err, err_len, "%s: not a GGUF file (bad magic)", f->name);
    if (read_u32(&c, &f->version, "version")) return -1;
    if (f->version != 2 && f->version != 3)
        return slm_err(err, err_len, "%s: unsupported GGUF version %u (2 and 3 are supported)", f->name, f->version);
    uint64_t n_tensors = 0, n_kv = 0;
    if (read_u64(&c, &n_tensors, "tensor count") || read_u64(&c, &n_kv, "metadata count")) return -1;
    /* A key-value pair takes at least 13 bytes, a tensor record at least 28: bound counts by the file. */
    if (n_kv > remaining(&c) / 13)
        return slm_err(err, err_len, "%s: metadata count %" PRIu64 " cannot fit in a %zu-byte file", f->name, n_kv, f->size);
    if (n_tensors > remaining(&c) / 28)
        return slm_err(err, err_len, "%s: tensor count %" PRIu64 " cannot fit in a %zu-byte file", f->name, n_tensors,
                       f->size);
    /* the name indexes store item + 1 in 32 bits */
    if (n_kv >= UINT32_MAX || n_tensors >= UINT32_MAX)
        return slm_err(err, err_len, "%s: %" PRIu64 " metadata entries and %" PRIu64 " tensors are more than supported",
                       f->name, n_kv, n_tensors);

    f->kvs = calloc(n_kv ? n_kv : 1, sizeof *f->kvs);
    f->kv_index_cap = index_capacity((int64_t)n_kv);
    f->kv_index = calloc(f->kv_index_cap, sizeof *f->kv_index);
    if (!f->kvs || !f->kv_index) return slm_err(err, err_len, "%s: out of memory", f->name);
    char name[160];
    for (uint64_t i = 0; i < n_kv; i++) {
        gguf_kv *kv = &f->kvs[i];
        char what[64];
        snprintf(what, sizeof what, "key of metadata entry %" PRIu64, i);
        if (read_str(&c, &kv->key, GGUF_MAX_KEY_LEN, what)) return -1;
        f->n_kv = (int64_t)i + 1; /* so gguf_close frees this entry's arrays */
        printable(kv->key, name, sizeof name);
        if (kv->key.len == 0) return slm_err(err, err_len, "%s: metadata entry %" PRIu64 " has an empty key", f->name, i);
        if (read_u32(&c, &kv->type, name)) return -1;
        if (parse_value(f, &c, kv, name)) return -1;
        if (index_insert(f->kv_index, f->kv_index_cap, kv->key, (uint32_t)i, kv_name, f) >= 0)
            return slm_err(err, err_len, "%s: duplicate metadata key '%s'", f->name, name);
    }

    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *al = gguf_find(f, "general.alignment");
    if (al) {
        if (al->type != GGUF_TYPE_UINT32)
            return slm_err(err, err_len, "%s: key 'general.alignment' must be u32, is %s", f->name, gguf_type_name(al->type));
        uint32_t a;
        memcpy(&a, al->data, 4);
        if (a == 0 || (a & (a - 1)) != 0)
            return slm_err(err, err_len, "%s: key 'general.alignment' is %u, not a power of two", f->name, a);
        f->alignment = a;
    }

    f->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *f->tensors);
    f->tensor_index_cap = index_capacity((int64_t)n_tensors);
    f->tensor_index = calloc(f->tensor_index_cap, sizeof *f->tensor_index);
    if (!f->tensors || !f->tensor_index) return slm_err(err, err_len, "%s: out of memory", f->name);
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        char what[64];
        snprintf(what, sizeof what, "name of tensor %" PRIu64, i);
        if (read_str(&c, &t->name, GGUF_MAX_TENSOR_NAME_LEN, what)) return -1;
        f->n_tensors = (int64_t)i + 1;
        printable(t->name, name, sizeof name);
        uint32_t n_dims = 0;
        if (read_u32(&c, &n_dims, name)) return -1;
        if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
            return slm_err(err, err_len, "%s: tensor '%s' has %u dimensions (1 to %d supported)", f->name, name, n_dims,
                           GGUF_MAX_DIMS);
        t->n_dims = (int)n_dims;
        uint64_t n_elem = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < n_dims; d++) {
            uint64_t ne = 0;
            if (read_u64(&c, &ne, name)) return -1;
            if (ne == 0 || ne > (uint64_t)INT64_MAX)
                return slm_err(err, err_len, "%s: tensor '%s' has invalid dimension %u = %" PRIu64, f->name, name, d, ne);
            if (n_elem > (uint64_t)INT64_MAX / ne)
                return slm_err(err, err_len, "%s: tensor '%s': element count overflows", f->name, name);
            n_elem *= ne;
            t->ne[d] = (int64_t)ne;
        }
        if (read_u32(&c, &t->type, name)) return -1;
        const slm_type_info *ti = slm_type_info_get(t->type);
        if (!ti) return slm_err(err, err_len, "%s: tensor '%s' has unknown type %u", f->name, name, t->type);
        if (t->ne[0] % ti->block_size != 0)
            return slm_err(err, err_len, "%s: tensor '%s': row length %" PRId64 " is not a multiple of the %s block size %d",
                           f->name, name, t->ne[0], ti->name, ti->block_size);
        uint64_t n_blocks = n_elem / (uint64_t)ti->block_size;
        if (n_blocks > UINT64_MAX / (uint64_t)ti->type_size)
            return slm_err(err, err_len, "%s: tensor '%s': byte size overflows", f->name, name);
        t->n_bytes = n_blocks * (uint64_t)ti->type_size;
        if (read_u64(&c, &t->offset, name)) return -1;
        if (t->offset % f->alignment != 0)
            return slm_err(err, err_len, "%s: tensor '%s': offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                           f->name, name, t->offset, f->alignment);
        if (index_insert(f->tensor_index, f->tensor_index_cap, t->name, (uint32_t)i, tensor_name, f) >= 0)
            return slm_err(err, err_len, "%s: duplicate tensor name '%s'", f->name, name);
    }

    uint64_t data_offset = ((uint64_t)c.pos + f->alignment - 1) / f->alignment * f->alignment;
    if (n_tensors > 0 && data_offset > f->size)
        return slm_err(err, err_len, "%s: truncated file: tensor data would start at %" PRIu64 ", file has %zu bytes",
                       f->name, data_offset, f->size);
    f->data_offset = data_offset;
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        uint64_t avail = f->size - data_offset;
        if (t->offset > avail || t->n_bytes > avail - t->offset)
            return slm_err(err, err_len,
                           "%s: tensor '%s' extends past end of file (data offset %" PRIu64 " + %" PRIu64 ", size %" PRIu64
                           ", file %zu)",
                           f->name, printable(t->name, name, sizeof name), data_offset, t->offset, t->n_bytes, f->size);
        /* Kernels read blocks and floats with typed loads: an oddly aligned file would be undefined behaviour. */
        if ((data_offset + t->offset) % 8 != 0)
            return slm_err(err, err_len, "%s: tensor '%s' data at file offset %" PRIu64 " is not 8-byte aligned", f->name,
                           printable(t->name, name, sizeof name), data_offset + t->offset);
        t->data = f->data + data_offset + t->offset;
    }
    return 0;
}

int gguf_open_memory(const void *data, size_t size, const char *name, gguf_file **out, char *err, size_t err_len) {
    *out = NULL;
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return slm_err(err, err_len, "%s: out of memory", name);
    f->name = strdup(name ? name : "<memory>");
    f->data = data;
    f->size = size;
    if (!f->name || parse(f, err, err_len)) {
        gguf_close(f);
        return -1;
    }
    *out = f;
    return 0;
}

int gguf_open(const char *path, gguf_file **out, char *err, size_t err_len) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return slm_err(err, err_len, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return slm_err(err, err_len, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return slm_err(err, err_len, "%s: not a regular file", path);
    }
    if (st.st_size < 24) {
        close(fd);
        return slm_err(err, err_len, "%s: too small to be a GGUF file (%lld bytes)", path, (long long)st.st_size);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return slm_err(err, err_len, "%s: mmap failed: %s", path, strerror(e));
    if (gguf_open_memory(map, (size_t)st.st_size, path, out, err, err_len)) {
        munmap(map, (size_t)st.st_size);
        return -1;
    }
    (*out)->mapped = true;
    return 0;
}

void gguf_release_pages(gguf_file *f, const void *p, size_t n) {
    const uintptr_t base = (uintptr_t)f->data, end = base + f->size;
    uintptr_t lo = (uintptr_t)p, hi = lo + n;
    if (!f->mapped || lo < base || hi > end || hi < lo) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    lo = (lo + page - 1) / page * page; /* only pages wholly inside the range */
    hi = hi / page * page;
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    for (int64_t i = 0; i < f->n_kv; i++) free((void *)f->kvs[i].strs);
    free(f->kvs);
    free(f->tensors);
    free(f->kv_index);
    free(f->tensor_index);
    if (f->mapped) munmap((void *)f->data, f->size);
    free(f->name);
    free(f);
}

uint32_t gguf_version(const gguf_file *f) { return f->version; }
size_t gguf_file_size(const gguf_file *f) { return f->size; }
const char *gguf_name(const gguf_file *f) { return f->name; }
int64_t gguf_n_kv(const gguf_file *f) { return f->n_kv; }
const gguf_kv *gguf_kv_at(const gguf_file *f, int64_t i) { return i >= 0 && i < f->n_kv ? &f->kvs[i] : NULL; }
int64_t gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i) {
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_kv *gguf_find(const gguf_file *f, const char *key) {
    int64_t i = index_find(f->kv_index, f->kv_index_cap, key, kv_name, f);
    return i >= 0 ? &f->kvs[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    int64_t i = index_find(f->tensor_index, f->tensor_index_cap, name, tensor_name, f);
    return i >= 0 ? &f->tensors[i] : NULL;
}

/* Reads element i of a numeric value stored at p with type `type`. */
static bool load_number(uint32_t type, const uint8_t *p, double *d, int64_t *i, bool *is_int) {
    union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32; uint64_t u64; int64_t i64; double f64; } v;
    size_t sz = gguf_type_size(type);
    if (!sz) return false;
    memcpy(&v, p, sz);
    *is_int = true;
    switch (type) {
    case GGUF_TYPE_UINT8: *i = v.u8; break;
    case GGUF_TYPE_INT8: *i = v.i8; break;
    case GGUF_TYPE_BOOL: *i = v.u8 != 0; break;
    case GGUF_TYPE_UINT16: *i = v.u16; break;
    case GGUF_TYPE_INT16: *i = v.i16; break;
    case GGUF_TYPE_UINT32: *i = v.u32; break;
    case GGUF_TYPE_INT32: *i = v.i32; break;
    case GGUF_TYPE_INT64: *i = v.i64; break;
    case GGUF_TYPE_UINT64:
        if (v.u64 > (uint64_t)INT64_MAX) { *is_int = false; *d = (double)v.u64; return true; }
        *i = (int64_t)v.u64;
        break;
    case GGUF_TYPE_FLOAT32: *is_int = false; *d = v.f32; return true;
    case GGUF_TYPE_FLOAT64: *is_int = false; *d = v.f64; return true;
    default: return false;
    }
    *d = (double)*i;
    return true;
}

double gguf_arr_f64(const gguf_kv *kv, uint64_t i) {
    double d = 0;
    int64_t n = 0;
    bool is_int;
    if (kv->type != GGUF_TYPE_ARRAY || i >= kv->arr_n) return 0;
    load_number(kv->arr_type, kv->data + i * gguf_type_size(kv->arr_type), &d, &n, &is_int);
    return d;
}

int64_t gguf_arr_i64(const gguf_kv *kv, uint64_t i) {
    double d = 0;
    int64_t n = 0;
    bool is_int = true;
    if (kv->type != GGUF_TYPE_ARRAY || i >= kv->arr_n) return 0;
    load_number(kv->arr_type, kv->data + i * gguf_type_size(kv->arr_type), &d, &n, &is_int);
    if (is_int) return n;
    /* Saturate: converting an out-of-range or NaN double to int64 is undefined behaviour. */
    if (d != d) return 0;
    if (d <= -9223372036854775808.0) return INT64_MIN;
    if (d >= 9223372036854775808.0) return INT64_MAX;
    return (int64_t)d;
}

static bool is_number(const gguf_kv *kv) { return kv->type != GGUF_TYPE_BOOL && gguf_type_size(kv->type) != 0; }
static bool is_integer(const gguf_kv *kv) {
    double d;
    int64_t i;
    bool is_int = false;
    return is_number(kv) && load_number(kv->type, kv->data, &d, &i, &is_int) && is_int;
}
static bool is_bool(const gguf_kv *kv) { return kv->type == GGUF_TYPE_BOOL; }
static bool is_string(const gguf_kv *kv) { return kv->type == GGUF_TYPE_STRING; }
static bool is_string_array(const gguf_kv *kv) {
    return kv->type == GGUF_TYPE_ARRAY && kv->arr_type == GGUF_TYPE_STRING;
}
static bool is_numeric_array(const gguf_kv *kv) {
    return kv->type == GGUF_TYPE_ARRAY && kv->arr_type != GGUF_TYPE_STRING;
}

/* The entry of `key` in *kv: 0 if `accepts` takes it, -1 if absent, -2 (err names the key and
 * what it should be) otherwise. */
static int find_as(const gguf_file *f, const char *key, bool (*accepts)(const gguf_kv *), const char *want,
                   const gguf_kv **kv, char *err, size_t err_len) {
    *kv = gguf_find(f, key);
    if (!*kv) return -1;
    if (accepts(*kv)) return 0;
    slm_err(err, err_len, "%s: key '%s' should be %s, is %s", f->name, key, want,
            (*kv)->type == GGUF_TYPE_ARRAY ? "an array" : gguf_type_name((*kv)->type));
    return -2;
}

int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, char *err, size_t err_len) {
    const gguf_kv *kv;
    int rc = find_as(f, key, is_integer, "an integer", &kv, err, err_len);
    if (rc) return rc;
    double d;
    bool is_int;
    load_number(kv->type, kv->data, &d, out, &is_int);
    return 0;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, char *err, size_t err_len) {
    int64_t v;
    int rc = gguf_get_i64(f, key, &v, err, err_len);
    if (rc) return rc;
    if (v < 0 || v > UINT32_MAX) {
        slm_err(err, err_len, "%s: key '%s' = %" PRId64 " is out of range", f->name, key, v);
        return -2;
    }
    *out = (uint32_t)v;
    return 0;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, char *err, size_t err_len) {
    const gguf_kv *kv;
    int rc = find_as(f, key, is_number, "a number", &kv, err, err_len);
    if (rc) return rc;
    double d;
    int64_t i;
    bool is_int;
    load_number(kv->type, kv->data, &d, &i, &is_int);
    *out = (float)d;
    return 0;
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out, char *err, size_t err_len) {
    const gguf_kv *kv;
    int rc = find_as(f, key, is_bool, "a bool", &kv, err, err_len);
    if (rc) return rc;
    *out = kv->data[0] != 0;
    return 0;
}

int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, char *err, size_t err_len) {
    const gguf_kv *kv;
    int rc = find_as(f, key, is_string, "a string", &kv, err, err_len);
    if (rc) return rc;
    *out = kv->strs[0];
    return 0;
}

int gguf_get_str_arr(const gguf_file *f, const char *key, const gguf_str **out, uint64_t *n, char *err, size_t err_len) {
    const gguf_kv *kv;
    int rc = find_as(f, key, is_string_array, "an array of strings", &kv, err, err_len);
    if (rc) return rc;
    *out = kv->strs;
    *n = kv->arr_n;
    return 0;
}

int gguf_get_arr(const gguf_file *f, const char *key, const gguf_kv **out, char *err, size_t err_len) {
    const gguf_kv *kv;
    int rc = find_as(f, key, is_numeric_array, "a numeric array", &kv, err, err_len);
    if (rc) return rc;
    *out = kv;
    return 0;
}
