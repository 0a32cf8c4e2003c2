/* slm_quantize_file: reads a GGUF model, picks each tensor's type (quant/plan.c), converts and
 * quantizes its rows on a pool of threads while the GGUF writer streams the output (each tensor is
 * produced by the writer's fill callback, so only one tensor's output is in memory at a time). */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "gguf/gguf_write.h"
#include "quant/kquants.h"
#include "quant/quant_impl.h"
#include "slm_quant.h"
#include "tensor/quant.h"
#include "tensor/types.h"
#include "util/err.h"

#define QUANT_VERSION 2 /* general.quantization_version: ggml's block formats */

static const struct {
    const char *name;
    int ftype;
} ftype_names[] = {
    {"Q4_0", SLM_FTYPE_Q4_0},     {"Q4_1", SLM_FTYPE_Q4_1},     {"Q5_0", SLM_FTYPE_Q5_0},
    {"Q5_1", SLM_FTYPE_Q5_1},     {"Q2_K", SLM_FTYPE_Q2_K},     {"Q3_K_S", SLM_FTYPE_Q3_K_S},
    {"Q3_K_M", SLM_FTYPE_Q3_K_M}, {"Q3_K_L", SLM_FTYPE_Q3_K_L}, {"Q4_K_S", SLM_FTYPE_Q4_K_S},
    {"Q4_K_M", SLM_FTYPE_Q4_K_M}, {"Q5_K_S", SLM_FTYPE_Q5_K_S}, {"Q5_K_M", SLM_FTYPE_Q5_K_M},
    {"Q6_K", SLM_FTYPE_Q6_K},     {"Q8_0", SLM_FTYPE_Q8_0},     {"IQ4_NL", SLM_FTYPE_IQ4_NL},
    {"F16", SLM_FTYPE_F16},       {"BF16", SLM_FTYPE_BF16},     {"F32", SLM_FTYPE_ALL_F32},
    /* llama-quantize's aliases */
    {"Q3_K", SLM_FTYPE_Q3_K_M},   {"Q4_K", SLM_FTYPE_Q4_K_M},   {"Q5_K", SLM_FTYPE_Q5_K_M},
};
#define N_FTYPE_NAMES (sizeof ftype_names / sizeof ftype_names[0])

int slm_ftype_from_name(const char *name) {
    for (size_t i = 0; i < N_FTYPE_NAMES; i++)
        if (!strcasecmp(name, ftype_names[i].name)) return ftype_names[i].ftype;
    return -1;
}

const char *slm_ftype_name(int ftype) {
    for (size_t i = 0; i < N_FTYPE_NAMES; i++)
        if (ftype_names[i].ftype == ftype) return ftype_names[i].name;
    return NULL;
}

const char *slm_ftype_names(void) {
    return "Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 IQ4_NL F16 BF16 F32";
}

/* ---- the work of one tensor, shared by the pool ---- */

typedef struct quant_job {
    const quant_tensor *qt;
    const uint8_t *src;
    size_t src_row_bytes, dst_row_bytes;
    uint8_t *dst;
    int64_t n_rows, n_per_row, rows_per_matrix, rows_per_chunk;
    const float *importance; /* n_per_row * ne[2] values, or NULL */
    bool fast;               /* the CPU runs quant/kquants_avx2.c */
    atomic_int_fast64_t next_row;
    atomic_int failed;        /* first failure wins: row + 1 of a non-finite value */
    atomic_int_fast64_t bad_row;
} quant_job;

typedef struct progress {
    bool on;                                            /* the bar on stderr */
    bool (*callback)(void *user, uint64_t done, uint64_t total); /* slm_quantize_params.on_progress */
    void *user;
    atomic_bool cancelled;                              /* the callback said stop */
    uint64_t total, done_before; /* elements of all tensors to write; of the finished tensors */
    atomic_int_fast64_t done_rows;
    int64_t n_per_row;
    double last_draw;
    int index, n_tensors;
    const char *name;
} progress;

typedef struct quant_run {
    const gguf_file *in;
    quant_tensor *plan;
    int64_t n_tensors;
    int n_threads;
    const slm_imatrix *imatrix;
    float *importance_buf;
    progress prog;
    slm_quantize_stats stats;
} quant_run;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void progress_draw(progress *p, bool force) {
    if (!p->on && !p->callback) return;
    double t = now_seconds();
    if (!force && t - p->last_draw < 0.1) return;
    p->last_draw = t;
    uint64_t done = p->done_before + (uint64_t)atomic_load(&p->done_rows) * (uint64_t)p->n_per_row;
    if (p->callback && !p->callback(p->user, done < p->total ? done : p->total, p->total)) atomic_store(&p->cancelled, true);
    if (!p->on) return;
    double frac = p->total ? (double)done / (double)p->total : 1.0;
    if (frac > 1) frac = 1;
    char bar[31];
    int filled = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < filled ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r[%s] %5.1f%% %4d/%d %-40.40s", bar, frac * 100, p->index, p->n_tensors, p->name ? p->name : "");
    fflush(stderr);
}

static void *quant_worker(void *arg) {
    void **args = arg;
    quant_job *job = args[0];
    progress *prog = args[1];
    const bool draws = args[2] != NULL;
    float *row = malloc((size_t)job->n_per_row * sizeof *row);
    if (!row) {
        atomic_store(&job->failed, 2);
        return NULL;
    }
    for (;;) {
        int64_t first = atomic_fetch_add(&job->next_row, job->rows_per_chunk);
        if (first >= job->n_rows || atomic_load(&job->failed) || atomic_load(&prog->cancelled)) break;
        int64_t last = first + job->rows_per_chunk < job->n_rows ? first + job->rows_per_chunk : job->n_rows;
        for (int64_t r = first; r < last; r++) {
            const uint8_t *src_row = job->src + (size_t)r * job->src_row_bytes;
            if (job->qt->src->type == SLM_TYPE_F16 && job->fast)
                kq_f16_to_f32_avx2((const uint16_t *)src_row, row, job->n_per_row);
            else
                slm_dequantize_row(job->qt->src->type, src_row, row, job->n_per_row);
            for (int64_t j = 0; j < job->n_per_row; j++)
                if (!isfinite(row[j])) {
                    atomic_store(&job->bad_row, r);
                    atomic_store(&job->failed, 1);
                    goto done;
                }
            const float *imp = NULL;
            if (job->importance) imp = job->importance + (r / job->rows_per_matrix) * job->n_per_row;
            if (quant_rows(job->qt->new_type, row, job->dst + (size_t)r * job->dst_row_bytes, 1, job->n_per_row, imp)) {
                atomic_store(&job->failed, 3);
                goto done;
            }
        }
        atomic_fetch_add(&prog->done_rows, last - first);
        if (draws) progress_draw(prog, false);
    }
done:
    free(row);
    return NULL;
}

/* The importance values of a tensor (per expert slice), or NULL with *err set if they do not fit. */
static const float *importance_for(quant_run *run, const quant_tensor *qt, char *err, size_t err_len, int *rc) {
    *rc = 0;
    if (!run->imatrix || !quant_type_uses_importance(qt->new_type)) return NULL;
    const slm_imatrix_entry *e = slm_imatrix_find(run->imatrix, qt->name);
    if (!e) return NULL;
    const int64_t want = qt->src->ne[0] * qt->src->ne[2];
    if (e->n != want) {
        /* the token embedding is looked up, not multiplied: its entry (if any) never fits, and is ignored */
        if (!strcmp(qt->name, "token_embd.weight") || !strcmp(qt->name, "per_layer_token_embd.weight")) return NULL;
        *rc = slm_err(err, err_len, "imatrix entry '%s' has %" PRId64 " values, the tensor needs %" PRId64, qt->name, e->n,
                      want);
        return NULL;
    }
    return e->values;
}

static int fill_tensor(void *user, int64_t index, void *dst, size_t n_bytes, char *err, size_t err_len) {
    quant_run *run = user;
    const quant_tensor *qt = &run->plan[index];
    const gguf_tensor *t = qt->src;
    progress *p = &run->prog;
    p->index = (int)index + 1;
    p->name = qt->name;
    const int64_t n_per_row = t->ne[0];
    const int64_t n_rows = t->ne[1] * t->ne[2] * t->ne[3];
    atomic_store(&p->done_rows, 0);
    p->n_per_row = n_per_row;
    run->stats.n_tensors++;
    run->stats.bytes_in += t->n_bytes;
    run->stats.bytes_out += n_bytes;
    run->stats.n_elements += (uint64_t)(n_per_row * n_rows);
    if (qt->new_type == t->type) {
        if (n_bytes != t->n_bytes) return slm_err(err, err_len, "internal: size mismatch");
        memcpy(dst, t->data, n_bytes);
        p->done_before += (uint64_t)(n_per_row * n_rows);
        progress_draw(p, false);
        return 0;
    }
    if (t->type != SLM_TYPE_F32 && t->type != SLM_TYPE_F16 && t->type != SLM_TYPE_BF16)
        return slm_err(err, err_len, "is %s: requantizing an already quantized tensor is not supported (start from the F16/BF16/F32 model)",
                       slm_type_name(t->type));
    int rc;
    const float *imp = importance_for(run, qt, err, err_len, &rc);
    if (rc) return -1;
    run->stats.n_quantized++;
    quant_job job = {
        .qt = qt,
        .src = t->data,
        .src_row_bytes = slm_row_bytes(t->type, n_per_row),
        .dst_row_bytes = slm_row_bytes(qt->new_type, n_per_row),
        .dst = dst,
        .n_rows = n_rows,
        .n_per_row = n_per_row,
        .rows_per_matrix = t->ne[1],
        .importance = imp,
        .fast = kq_available(),
    };
    /* chunks of about 16k values, as llama-quantize splits its work */
    job.rows_per_chunk = n_per_row >= 16384 ? 1 : (16384 + n_per_row - 1) / n_per_row;
    int64_t n_chunks = (n_rows + job.rows_per_chunk - 1) / job.rows_per_chunk;
    int n_threads = run->n_threads;
    if (n_threads > n_chunks) n_threads = (int)n_chunks;
    if (n_threads < 1) n_threads = 1;
    pthread_t tids[256];
    void *args[256][3];
    int started = 0;
    for (int i = 1; i < n_threads && i < 256; i++) {
        args[i][0] = &job;
        args[i][1] = p;
        args[i][2] = NULL;
        if (pthread_create(&tids[i], NULL, quant_worker, args[i]) != 0) break;
        started++;
    }
    args[0][0] = &job;
    args[0][1] = p;
    args[0][2] = (void *)1;
    quant_worker(args[0]);
    for (int i = 1; i <= started; i++) pthread_join(tids[i], NULL);
    p->done_before += (uint64_t)(n_per_row * n_rows);
    if (atomic_load(&p->cancelled)) return slm_err(err, err_len, "cancelled");
    switch (atomic_load(&job.failed)) {
    case 0: return 0;
    case 1: return slm_err(err, err_len, "row %" PRId64 " holds a NaN or infinity", (int64_t)atomic_load(&job.bad_row));
    case 2: return slm_err(err, err_len, "out of memory");
    default: return slm_err(err, err_len, "cannot quantize to %s", slm_type_name(qt->new_type));
    }
}

static int online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

static void print_plan(const quant_tensor *plan, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const quant_tensor *q = &plan[i];
        printf("%s\t%s\t%s%s\n", q->name, slm_type_name(q->src->type), slm_type_name(q->new_type),
               q->fell_back ? "\tfallback" : "");
    }
}

int slm_quantize_check(const char *in_path, const slm_quantize_params *params, int *src_ftype, char *err, size_t err_len) {
    if (src_ftype) *src_ftype = -1;
    if (!slm_ftype_name(params->ftype))
        return slm_err(err, err_len, "unsupported quantization type %d (supported: %s)", params->ftype, slm_ftype_names());
    gguf_file *in = NULL;
    if (gguf_open(in_path, &in, err, err_len)) return -1;
    int rc = -1;
    uint32_t ftype = 0;
    char ignored[64];
    const bool has_ftype = gguf_find(in, "general.file_type") && !gguf_get_u32(in, "general.file_type", &ftype, ignored, sizeof ignored);
    if (src_ftype && has_ftype && ftype < 1024) *src_ftype = (int)ftype;
    uint64_t largest = 0;
    for (int64_t i = 0; i < gguf_n_tensors(in); i++) {
        const gguf_tensor *t = gguf_tensor_at(in, i);
        if (t->type == SLM_TYPE_F32 || t->type == SLM_TYPE_F16 || t->type == SLM_TYPE_BF16) {
            /* without general.file_type, the largest tensor's type names the file's */
            if (src_ftype && !has_ftype && t->n_bytes > largest) {
                largest = t->n_bytes;
                *src_ftype = t->type == SLM_TYPE_F32 ? SLM_FTYPE_ALL_F32 : t->type == SLM_TYPE_F16 ? SLM_FTYPE_F16 : SLM_FTYPE_BF16;
            }
            continue;
        }
        const char *what = has_ftype && slm_ftype_name((int)ftype) ? slm_ftype_name((int)ftype) : slm_type_name(t->type);
        slm_err(err, err_len, "quantization is only supported for F16, BF16 and F32 models (this one is %s)", what);
        goto out;
    }
    quant_model_info info;
    if (quant_model_info_read(in, &info, err, err_len)) goto out;
    int64_t n = 0;
    quant_tensor *plan = quant_plan(in, &info, params->ftype, params->imatrix_path != NULL, &n, err, err_len);
    if (!plan) goto out;
    free(plan);
    rc = 0;
out:
    gguf_close(in);
    return rc;
}

int slm_quantize_file(const char *in_path, const char *out_path, const slm_quantize_params *params,
                      slm_quantize_stats *stats, char *err, size_t err_len) {
    if (stats) memset(stats, 0, sizeof *stats);
    if (!slm_ftype_name(params->ftype))
        return slm_err(err, err_len, "unsupported file type %d (supported: %s)", params->ftype, slm_ftype_names());
    gguf_file *in = NULL;
    if (gguf_open(in_path, &in, err, err_len)) return -1;
    quant_run run = {.in = in, .n_threads = params->n_threads > 0 ? params->n_threads : online_cpus()};
    if (run.n_threads > 256) run.n_threads = 256;
    gguf_writer *w = NULL;
    slm_imatrix *im = NULL;
    int rc = -1;
    quant_model_info info;
    if (quant_model_info_read(in, &info, err, err_len)) goto out;
    if (params->imatrix_path) {
        if (slm_imatrix_load(params->imatrix_path, &im, err, err_len)) goto out;
        run.imatrix = im;
    }
    run.plan = quant_plan(in, &info, params->ftype, im != NULL, &run.n_tensors, err, err_len);
    if (!run.plan) goto out;
    if (params->dry_run) {
        print_plan(run.plan, run.n_tensors);
        rc = 0;
        goto out;
    }
    w = gguf_writer_new();
    if (!w) {
        slm_err(err, err_len, "out of memory");
        goto out;
    }
    if (gguf_writer_copy_all_kv(w, in)) {
        slm_err(err, err_len, "%s: cannot copy the metadata", in_path);
        goto out;
    }
    /* like llama-quantize: these two go (again) at the end, the split keys do not survive */
    gguf_writer_remove_kv(w, "general.quantization_version");
    gguf_writer_set_u32(w, "general.quantization_version", QUANT_VERSION);
    gguf_writer_remove_kv(w, "general.file_type");
    gguf_writer_set_u32(w, "general.file_type", (uint32_t)params->ftype);
    gguf_writer_remove_kv(w, "split.no");
    gguf_writer_remove_kv(w, "split.count");
    gguf_writer_remove_kv(w, "split.tensors.count");
    if (im) {
        /* llama-quantize records where the importance matrix came from */
        gguf_writer_remove_kv(w, "quantize.imatrix.file");
        gguf_writer_set_str(w, "quantize.imatrix.file", params->imatrix_path);
        if (im->dataset) {
            gguf_writer_remove_kv(w, "quantize.imatrix.dataset");
            gguf_writer_set_str(w, "quantize.imatrix.dataset", im->dataset);
        }
        gguf_writer_remove_kv(w, "quantize.imatrix.entries_count");
        gguf_writer_set_u32(w, "quantize.imatrix.entries_count", (uint32_t)im->n_entries);
        gguf_writer_remove_kv(w, "quantize.imatrix.chunks_count");
        gguf_writer_set_u32(w, "quantize.imatrix.chunks_count", (uint32_t)im->n_chunks);
    }
    for (int64_t i = 0; i < run.n_tensors; i++) {
        const quant_tensor *q = &run.plan[i];
        run.prog.total += (uint64_t)(q->src->ne[0] * q->src->ne[1] * q->src->ne[2] * q->src->ne[3]);
        if (gguf_writer_add_tensor(w, q->name, q->new_type, q->src->n_dims, q->src->ne, NULL, fill_tensor, &run)) {
            slm_err(err, err_len, "%s: tensor '%s' cannot be declared", out_path, q->name);
            goto out;
        }
    }
    run.prog.on = params->progress;
    run.prog.callback = params->on_progress;
    run.prog.user = params->progress_user;
    run.prog.n_tensors = (int)run.n_tensors;
    if (gguf_writer_write(w, out_path, err, err_len)) goto out;
    if (run.prog.on || run.prog.callback) progress_draw(&run.prog, true);
    if (run.prog.on) fputc('\n', stderr);
    for (int64_t i = 0; i < run.n_tensors; i++) run.stats.n_fallback += run.plan[i].fell_back;
    if (stats) *stats = run.stats;
    rc = 0;
out:
    if (rc && run.prog.on && run.prog.index) fputc('\n', stderr);
    gguf_writer_free(w);
    free(run.plan);
    slm_imatrix_free(im);
    gguf_close(in);
    return rc;
}
