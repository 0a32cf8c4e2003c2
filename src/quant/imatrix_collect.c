/* Computing an importance matrix the way llama-imatrix does: per weight matrix, per input column,
 * the sum of the squared activations entering it and the number of activation rows summed. The
 * weights collected are llama-imatrix's: every matrix in the blocks ("blk.*"), and output.weight
 * only on request (--process-output; a tied output is token_embd.weight, which it never collects).
 * Sums are f32, added token after token as llama-imatrix adds them. The files written are its GGUF
 * format (sorted "<name>.in_sum2" and "<name>.counts" tensors, imatrix.* keys) or its legacy .dat. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf_write.h"
#include "slm_quant.h"
#include "tensor/types.h"
#include "util/err.h"

typedef struct collected {
    char *name;
    float *sums;   /* n_cols */
    int64_t n_cols;
    int64_t count; /* activation rows summed */
} collected;

struct slm_imatrix_collector {
    collected *entries;
    int64_t n, cap;
    int64_t next;  /* where the last lookup ended: the calls come in the same order every pass */
    int chunk_size;
    bool process_output;
    char error[256];
};

slm_imatrix_collector *slm_imatrix_collector_new(int chunk_size, bool process_output) {
    if (chunk_size < 1) return NULL;
    slm_imatrix_collector *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->chunk_size = chunk_size;
    c->process_output = process_output;
    return c;
}

void slm_imatrix_collector_free(slm_imatrix_collector *c) {
    if (!c) return;
    for (int64_t i = 0; i < c->n; i++) {
        free(c->entries[i].name);
        free(c->entries[i].sums);
    }
    free(c->entries);
    free(c);
}

const char *slm_imatrix_collector_error(const slm_imatrix_collector *c) { return c->error[0] ? c->error : NULL; }

int64_t slm_imatrix_collector_n_entries(const slm_imatrix_collector *c) { return c->n; }

int64_t slm_imatrix_collector_n_chunks(const slm_imatrix_collector *c) {
    int64_t max = 0;
    for (int64_t i = 0; i < c->n; i++)
        if (c->entries[i].count > max) max = c->entries[i].count;
    return max / c->chunk_size;
}

bool slm_imatrix_collects(const slm_imatrix_collector *c, const char *name) {
    return !strncmp(name, "blk.", 4) || (c->process_output && !strcmp(name, "output.weight"));
}

static collected *find_or_add(slm_imatrix_collector *c, const char *name, int64_t n_cols) {
    for (int64_t k = 0; k < c->n; k++) {
        const int64_t i = (c->next + k) % c->n;
        if (!strcmp(c->entries[i].name, name)) {
            c->next = (i + 1) % c->n;
            return &c->entries[i];
        }
    }
    if (c->n == c->cap) {
        const int64_t cap = c->cap ? c->cap * 2 : 64;
        collected *bigger = realloc(c->entries, (size_t)cap * sizeof *bigger);
        if (!bigger) return NULL;
        c->entries = bigger;
        c->cap = cap;
    }
    collected e = {strdup(name), calloc((size_t)n_cols, sizeof(float)), n_cols, 0};
    if (!e.name || !e.sums) {
        free(e.name);
        free(e.sums);
        return NULL;
    }
    c->entries[c->n] = e;
    c->next = 0;
    return &c->entries[c->n++];
}

void slm_imatrix_collector_add(slm_imatrix_collector *c, const char *name, const float *x, int n_tokens, int n_cols) {
    if (c->error[0] || n_tokens < 1 || n_cols < 1 || !slm_imatrix_collects(c, name)) return;
    collected *e = find_or_add(c, name, n_cols);
    if (!e) {
        snprintf(c->error, sizeof c->error, "out of memory collecting '%s'", name);
        return;
    }
    if (e->n_cols != n_cols) {
        snprintf(c->error, sizeof c->error, "'%s' had %" PRId64 " input columns, now %d", name, e->n_cols, n_cols);
        return;
    }
    float *restrict sums = e->sums;
    for (int t = 0; t < n_tokens; t++) {
        const float *row = x + (size_t)t * (size_t)n_cols;
        for (int j = 0; j < n_cols; j++) sums[j] += row[j] * row[j];
    }
    e->count += n_tokens;
    for (int j = 0; j < n_cols; j++)
        if (!isfinite(sums[j])) {
            snprintf(c->error, sizeof c->error, "'%s': the sum of squared activations of column %d is %s", name, j,
                     isnan(sums[j]) ? "NaN" : "infinite");
            return;
        }
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(const collected *const *)a)->name, (*(const collected *const *)b)->name);
}

/* The entries in llama-imatrix's order (byte-wise by name). NULL when out of memory. */
static const collected **sorted_entries(const slm_imatrix_collector *c) {
    const collected **v = malloc((size_t)(c->n ? c->n : 1) * sizeof *v);
    if (!v) return NULL;
    for (int64_t i = 0; i < c->n; i++) v[i] = &c->entries[i];
    qsort(v, (size_t)c->n, sizeof *v, by_name);
    return v;
}

static int save_gguf(const slm_imatrix_collector *c, const collected **v, const char *path, const char *dataset, char *err,
                     size_t err_len) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return slm_err(err, err_len, "%s: out of memory", path);
    float *counts = malloc((size_t)(c->n ? c->n : 1) * sizeof *counts);
    char name[4096 + 16];
    int rc = -1;
    const uint64_t n_datasets = dataset ? 1 : 0;
    const char *datasets[1] = {dataset};
    if (!counts || gguf_writer_set_str(w, "general.type", "imatrix") ||
        gguf_writer_set_str_arr(w, "imatrix.datasets", datasets, NULL, n_datasets) ||
        gguf_writer_set_u32(w, "imatrix.chunk_count", (uint32_t)slm_imatrix_collector_n_chunks(c)) ||
        gguf_writer_set_u32(w, "imatrix.chunk_size", (uint32_t)c->chunk_size)) {
        slm_err(err, err_len, "%s: out of memory", path);
        goto out;
    }
    for (int64_t i = 0; i < c->n; i++) {
        const collected *e = v[i];
        counts[i] = (float)e->count;
        const int64_t ne_sums[1] = {e->n_cols}, ne_counts[1] = {1};
        if (strlen(e->name) > 4096) {
            slm_err(err, err_len, "%s: tensor name too long", path);
            goto out;
        }
        snprintf(name, sizeof name, "%s.in_sum2", e->name);
        if (gguf_writer_add_tensor(w, name, SLM_TYPE_F32, 1, ne_sums, e->sums, NULL, NULL)) goto declare_failed;
        snprintf(name, sizeof name, "%s.counts", e->name);
        if (gguf_writer_add_tensor(w, name, SLM_TYPE_F32, 1, ne_counts, &counts[i], NULL, NULL)) goto declare_failed;
    }
    rc = gguf_writer_write(w, path, err, err_len);
    goto out;
declare_failed:
    slm_err(err, err_len, "%s: tensor '%s' cannot be declared", path, name);
out:
    gguf_writer_free(w);
    free(counts);
    return rc;
}

/* Appends n bytes to a growing buffer; false when out of memory. */
typedef struct out_buf {
    uint8_t *p;
    size_t len, cap;
    bool oom;
} out_buf;

static void put(out_buf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + n) cap *= 2;
        uint8_t *bigger = realloc(b->p, cap);
        if (!bigger) {
            b->oom = true;
            return;
        }
        b->p = bigger;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_i32(out_buf *b, int32_t v) { put(b, &v, 4); }

/* Writes bytes to path.tmp, syncs, renames into place: no partial file on any failure. */
static int write_file(const char *path, const uint8_t *p, size_t n, char *err, size_t err_len) {
    char tmp[4096 + 8];
    if (strlen(path) > 4096) return slm_err(err, err_len, "%s: path too long", path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return slm_err(err, err_len, "%s: cannot create %s: %s", path, tmp, strerror(errno));
    size_t done = 0;
    while (done < n) {
        ssize_t k = write(fd, p + done, n - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        done += (size_t)k;
    }
    int saved = errno;
    if (done < n || fsync(fd) != 0) {
        if (done == n) saved = errno;
        close(fd);
        unlink(tmp);
        return slm_err(err, err_len, "%s: write failed: %s", path, strerror(saved ? saved : EIO));
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        saved = errno;
        unlink(tmp);
        return slm_err(err, err_len, "%s: cannot write: %s", path, strerror(saved));
    }
    return 0;
}

/* Legacy .dat: per entry the mean times ncall = ceil(count / chunk size), then the chunk count and
 * the dataset's name. */
static int save_dat(const slm_imatrix_collector *c, const collected **v, const char *path, const char *dataset, char *err,
                    size_t err_len) {
    out_buf b = {0};
    int32_t n_entries = 0;
    for (int64_t i = 0; i < c->n; i++) n_entries += v[i]->count > 0;
    put_i32(&b, n_entries);
    float *tmp = NULL;
    size_t tmp_cap = 0;
    for (int64_t i = 0; i < c->n && !b.oom; i++) {
        const collected *e = v[i];
        if (e->count == 0) continue;
        if (e->n_cols > INT32_MAX || strlen(e->name) > INT32_MAX || (e->count + c->chunk_size - 1) / c->chunk_size > INT32_MAX) {
            free(b.p);
            free(tmp);
            return slm_err(err, err_len, "%s: '%s' is too large for the legacy format", path, e->name);
        }
        put_i32(&b, (int32_t)strlen(e->name));
        put(&b, e->name, strlen(e->name));
        const int32_t ncall = (int32_t)((e->count + c->chunk_size - 1) / c->chunk_size);
        put_i32(&b, ncall);
        put_i32(&b, (int32_t)e->n_cols);
        if ((size_t)e->n_cols > tmp_cap) {
            float *bigger = realloc(tmp, (size_t)e->n_cols * sizeof *tmp);
            if (!bigger) {
                b.oom = true;
                break;
            }
            tmp = bigger;
            tmp_cap = (size_t)e->n_cols;
        }
        const float count = (float)e->count;
        for (int64_t j = 0; j < e->n_cols; j++) tmp[j] = (e->sums[j] / count) * (float)ncall;
        put(&b, tmp, (size_t)e->n_cols * sizeof *tmp);
    }
    free(tmp);
    put_i32(&b, (int32_t)slm_imatrix_collector_n_chunks(c));
    const size_t ds_len = dataset ? strlen(dataset) : 0;
    put_i32(&b, (int32_t)(ds_len > INT32_MAX ? 0 : ds_len));
    if (ds_len <= INT32_MAX) put(&b, dataset ? dataset : "", ds_len);
    if (b.oom) {
        free(b.p);
        return slm_err(err, err_len, "%s: out of memory", path);
    }
    int rc = write_file(path, b.p, b.len, err, err_len);
    free(b.p);
    return rc;
}

int slm_imatrix_collector_save(const slm_imatrix_collector *c, const char *path, enum slm_imatrix_format format,
                               const char *dataset, char *err, size_t err_len) {
    if (c->error[0]) return slm_err(err, err_len, "%s", c->error);
    if (c->n == 0) return slm_err(err, err_len, "%s: nothing was collected (no weight matrix saw an activation)", path);
    const collected **v = sorted_entries(c);
    if (!v) return slm_err(err, err_len, "%s: out of memory", path);
    int rc = format == SLM_IMATRIX_DAT ? save_dat(c, v, path, dataset, err, err_len)
                                       : save_gguf(c, v, path, dataset, err, err_len);
    free(v);
    return rc;
}
