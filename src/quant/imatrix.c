/* Importance matrices in llama.cpp's two formats. The GGUF one (current llama-imatrix) holds, per
 * weight, a tensor "<name>.in_sum2" of summed squared activations (one row per expert) and
 * "<name>.counts" of how many activations each row summed; the legacy .dat holds per weight the
 * mean times the number of calls. Both become per-column means here, as llama-quantize uses them.
 * Every length and count is checked against the file. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "slm_quant.h"
#include "tensor/types.h"
#include "util/err.h"

#define IMATRIX_MAX_NAME 4096

void slm_imatrix_free(slm_imatrix *im) {
    if (!im) return;
    for (int64_t i = 0; i < im->n_entries; i++) {
        free(im->entries[i].name);
        free(im->entries[i].values);
    }
    free(im->entries);
    free(im->dataset);
    free(im);
}

const slm_imatrix_entry *slm_imatrix_find(const slm_imatrix *im, const char *name) {
    for (int64_t i = 0; i < im->n_entries; i++)
        if (!strcmp(im->entries[i].name, name)) return &im->entries[i];
    return NULL;
}

static char *dup_bytes(const void *p, size_t n) {
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

/* Adds an entry (takes name and values). */
static int add_entry(slm_imatrix *im, int64_t *cap, char *name, float *values, int64_t n, int64_t n_calls) {
    if (!name || !values) {
        free(name);
        free(values);
        return -1;
    }
    if (im->n_entries == *cap) {
        int64_t nc = *cap ? *cap * 2 : 64;
        slm_imatrix_entry *ne = realloc(im->entries, (size_t)nc * sizeof *ne);
        if (!ne) {
            free(name);
            free(values);
            return -1;
        }
        im->entries = ne;
        *cap = nc;
    }
    im->entries[im->n_entries++] = (slm_imatrix_entry){name, values, n, n_calls};
    return 0;
}

static int check_finite(const slm_imatrix *im, const char *file, char *err, size_t err_len) {
    for (int64_t i = 0; i < im->n_entries; i++)
        for (int64_t j = 0; j < im->entries[i].n; j++)
            if (!isfinite(im->entries[i].values[j]))
                return slm_err(err, err_len, "%s: entry '%s' holds a NaN or infinity", file, im->entries[i].name);
    return 0;
}

/* Legacy format: i32 n_entries; per entry i32 name_len, name, i32 ncall, i32 nval, f32 values[nval];
 * optionally i32 chunk count, i32 dataset_len, dataset. */
static int parse_legacy(const uint8_t *p, size_t size, const char *file, slm_imatrix *im, char *err, size_t err_len) {
    size_t pos = 0;
#define TAKE(dst, n, what)                                                                                         \
    do {                                                                                                           \
        if (size - pos < (size_t)(n))                                                                              \
            return slm_err(err, err_len, "%s: truncated importance matrix: %s at offset %zu", file, what, pos);   \
        memcpy((dst), p + pos, (n));                                                                               \
        pos += (n);                                                                                                \
    } while (0)
    int32_t n_entries = 0;
    TAKE(&n_entries, 4, "entry count");
    if (n_entries < 1) return slm_err(err, err_len, "%s: not an importance matrix (GGUF or legacy .dat): entry count %d", file, n_entries);
    /* an entry takes at least 16 bytes */
    if ((size_t)n_entries > (size - pos) / 16)
        return slm_err(err, err_len, "%s: not an importance matrix: %d entries cannot fit in %zu bytes", file, n_entries, size);
    int64_t cap = 0;
    for (int32_t i = 0; i < n_entries; i++) {
        int32_t len = 0, ncall = 0, nval = 0;
        TAKE(&len, 4, "name length");
        if (len < 1 || len > IMATRIX_MAX_NAME || (size_t)len > size - pos)
            return slm_err(err, err_len, "%s: entry %d: bad name length %d", file, i, len);
        if (memchr(p + pos, 0, (size_t)len))
            return slm_err(err, err_len, "%s: entry %d: the name contains a NUL byte", file, i);
        char *name = dup_bytes(p + pos, (size_t)len);
        pos += (size_t)len;
        if (size - pos < 8) {
            free(name);
            return slm_err(err, err_len, "%s: truncated importance matrix at entry %d", file, i);
        }
        memcpy(&ncall, p + pos, 4);
        memcpy(&nval, p + pos + 4, 4);
        pos += 8;
        if (nval < 1 || (size_t)nval > (size - pos) / 4) {
            free(name);
            return slm_err(err, err_len, "%s: entry %d: %d values do not fit in the file", file, i, nval);
        }
        if (ncall < 0) {
            free(name);
            return slm_err(err, err_len, "%s: entry %d: negative call count %d", file, i, ncall);
        }
        float *values = malloc((size_t)nval * sizeof *values);
        if (values) {
            memcpy(values, p + pos, (size_t)nval * 4);
            /* stored as mean x ncall */
            if (ncall > 0)
                for (int32_t j = 0; j < nval; j++) values[j] /= (float)ncall;
        }
        pos += (size_t)nval * 4;
        if (name && slm_imatrix_find(im, name)) {
            slm_err(err, err_len, "%s: duplicate entry '%s'", file, name);
            free(name);
            free(values);
            return -1;
        }
        if (add_entry(im, &cap, name, values, nval, ncall)) return slm_err(err, err_len, "%s: out of memory", file);
    }
    if (size - pos >= 4) {
        int32_t chunks = 0;
        memcpy(&chunks, p + pos, 4);
        pos += 4;
        im->n_chunks = chunks > 0 ? chunks : 0;
        int32_t len = 0;
        if (size - pos >= 4) {
            memcpy(&len, p + pos, 4);
            pos += 4;
            if (len > 0 && (size_t)len <= size - pos) {
                const uint8_t *nul = memchr(p + pos, 0, (size_t)len);
                im->dataset = dup_bytes(p + pos, nul ? (size_t)(nul - (p + pos)) : (size_t)len);
            }
        }
    }
#undef TAKE
    return 0;
}

static bool remove_suffix(char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    if (n <= m || strcmp(s + n - m, suffix)) return false;
    s[n - m] = 0;
    return true;
}

static int parse_gguf(const gguf_file *f, const char *file, slm_imatrix *im, char *err, size_t err_len) {
    const int64_t n_tensors = gguf_n_tensors(f);
    if (n_tensors < 1) return slm_err(err, err_len, "%s: the importance matrix has no entries", file);
    if (!gguf_find(f, "imatrix.datasets") || !gguf_find(f, "imatrix.chunk_count") || !gguf_find(f, "imatrix.chunk_size"))
        return slm_err(err, err_len, "%s: a GGUF file without the imatrix.* metadata: not an importance matrix", file);
    uint32_t chunks = 0;
    if (gguf_get_u32(f, "imatrix.chunk_count", &chunks, err, err_len)) return -1;
    im->n_chunks = chunks;
    const gguf_str *ds = NULL;
    uint64_t n_ds = 0;
    if (gguf_get_str_arr(f, "imatrix.datasets", &ds, &n_ds, err, err_len) == -2) return -1;
    if (n_ds > 0) {
        const char *nul = memchr(ds[0].ptr, 0, ds[0].len);
        im->dataset = dup_bytes(ds[0].ptr, nul ? (size_t)(nul - ds[0].ptr) : ds[0].len);
    }
    int64_t cap = 0;
    for (int64_t i = 0; i < n_tensors; i++) {
        const gguf_tensor *sums = gguf_tensor_at(f, i);
        char name[IMATRIX_MAX_NAME + 16];
        if (sums->name.len == 0 || sums->name.len >= sizeof name - 8) continue;
        memcpy(name, sums->name.ptr, sums->name.len);
        name[sums->name.len] = 0;
        if (strlen(name) != sums->name.len) return slm_err(err, err_len, "%s: tensor %" PRId64 ": name holds a NUL byte", file, i);
        if (!remove_suffix(name, ".in_sum2")) continue;
        char counts_name[sizeof name + 8]; /* name less ".in_sum2", plus ".counts" */
        snprintf(counts_name, sizeof counts_name, "%s.counts", name);
        const gguf_tensor *counts = gguf_find_tensor(f, counts_name);
        if (!counts) return slm_err(err, err_len, "%s: '%s' has sums but no counts", file, name);
        if (sums->type != SLM_TYPE_F32 || counts->type != SLM_TYPE_F32)
            return slm_err(err, err_len, "%s: '%s': sums and counts must be f32", file, name);
        const int64_t nval = sums->ne[0] * sums->ne[1] * sums->ne[2] * sums->ne[3];
        const int64_t ncounts = counts->ne[0] * counts->ne[1] * counts->ne[2] * counts->ne[3];
        if (ncounts < 1 || nval % ncounts != 0)
            return slm_err(err, err_len, "%s: '%s': %" PRId64 " sums do not split into %" PRId64 " experts", file, name, nval, ncounts);
        const int64_t ne0 = nval / ncounts;
        float *values = malloc((size_t)nval * sizeof *values);
        if (!values) return slm_err(err, err_len, "%s: out of memory", file);
        const uint8_t *sp = sums->data, *cp = counts->data;
        int64_t max_count = 0;
        for (int64_t e = 0; e < ncounts; e++) {
            float c;
            memcpy(&c, cp + e * 4, 4);
            if (!isfinite(c) || c < 0 || c > 9.0e18f) {
                free(values);
                return slm_err(err, err_len, "%s: '%s': bad count", file, name);
            }
            const float count = (float)llroundf(c);
            if ((int64_t)count > max_count) max_count = (int64_t)count;
            for (int64_t j = 0; j < ne0; j++) {
                float s;
                memcpy(&s, sp + (e * ne0 + j) * 4, 4);
                /* a weight no token reached: every column equally important */
                values[e * ne0 + j] = count > 0.0f ? s / count : 1.0f;
            }
        }
        if (slm_imatrix_find(im, name)) {
            free(values);
            return slm_err(err, err_len, "%s: duplicate entry '%s'", file, name);
        }
        if (add_entry(im, &cap, dup_bytes(name, strlen(name)), values, nval, max_count))
            return slm_err(err, err_len, "%s: out of memory", file);
    }
    /* a counts tensor without sums is as broken as the reverse */
    for (int64_t i = 0; i < n_tensors; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char name[IMATRIX_MAX_NAME + 16];
        if (t->name.len == 0 || t->name.len >= sizeof name - 8) continue;
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = 0;
        if (remove_suffix(name, ".counts") && !slm_imatrix_find(im, name))
            return slm_err(err, err_len, "%s: '%s' has counts but no sums", file, name);
    }
    if (im->n_entries == 0) return slm_err(err, err_len, "%s: the importance matrix has no entries", file);
    return 0;
}

int slm_imatrix_parse(const void *data, size_t size, const char *name, slm_imatrix **out, char *err, size_t err_len) {
    *out = NULL;
    slm_imatrix *im = calloc(1, sizeof *im);
    if (!im) return slm_err(err, err_len, "%s: out of memory", name);
    int rc;
    if (size >= 4 && memcmp(data, "GGUF", 4) == 0) {
        gguf_file *f = NULL;
        rc = gguf_open_memory(data, size, name, &f, err, err_len);
        if (!rc) rc = parse_gguf(f, name, im, err, err_len);
        gguf_close(f);
    } else {
        rc = parse_legacy(data, size, name, im, err, err_len);
    }
    if (!rc) rc = check_finite(im, name, err, err_len);
    if (rc) {
        slm_imatrix_free(im);
        return -1;
    }
    *out = im;
    return 0;
}

int slm_imatrix_load(const char *path, slm_imatrix **out, char *err, size_t err_len) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return slm_err(err, err_len, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return slm_err(err, err_len, "%s: not a regular file", path);
    }
    if (st.st_size < 4) {
        close(fd);
        return slm_err(err, err_len, "%s: too small to be an importance matrix", path);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return slm_err(err, err_len, "%s: mmap failed: %s", path, strerror(errno));
    int rc = slm_imatrix_parse(map, (size_t)st.st_size, path, out, err, err_len);
    munmap(map, (size_t)st.st_size);
    return rc;
}
