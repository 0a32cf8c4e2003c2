/* /api/create with "quantize": slm_quantize_file over the source blob into a temporary file in the
 * store's folder, slm_models_import of the result, then the extras on its manifest. Streams as
 * Ollama does: a worker thread writes NDJSON lines into a pipe the response reads, so a slow
 * quantization never holds the response, and a client that hangs up stops the work (the next
 * progress line fails to write, and the progress callback says stop). */
#include "ollama_create_quantize.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ndjson_job.h"
#include "replies.h"
#include "slm_quant.h"

typedef struct quantize_job {
    srv_ndjson_job job; /* first: the NDJSON stream's worker */
    char data_dir[PATH_MAX];
    char src_path[PATH_MAX];
    char tmp_path[PATH_MAX];
    char name[300];
    char src_type[16], new_type[16];
    slm_quantize_params params;
    slm_model_extras extras; /* owned */
    uint64_t src_bytes;
} quantize_job;

static void job_free(srv_ndjson_job *nj) {
    quantize_job *j = (quantize_job *)nj;
    if (j->tmp_path[0]) unlink(j->tmp_path);
    slm_models_extras_free(&j->extras);
    free(j);
}

/* One NDJSON line (takes o); false once the reader is gone. */
static bool send_line(quantize_job *j, json_t *o) { return srv_ndjson_send(&j->job, o); }

static bool send_status(quantize_job *j, const char *status) { return send_line(j, json_pack("{s:s}", "status", status)); }

/* Ollama's progress line: the same status with a placeholder digest, so clients draw one bar. */
static bool on_progress(void *user, uint64_t done, uint64_t total) {
    quantize_job *j = user;
    char status[64];
    snprintf(status, sizeof status, "quantizing %s model to %s", j->src_type, j->new_type);
    const uint64_t completed = total ? (uint64_t)((double)j->src_bytes * ((double)done / (double)total)) : j->src_bytes;
    return send_line(j, json_pack("{s:s,s:s,s:I,s:I}", "status", status, "digest", "0000000000000000000", "total",
                                  (json_int_t)j->src_bytes, "completed", (json_int_t)completed)) &&
           !atomic_load(&j->job.cancel);
}

/* The quantization and the store's side. 0, or -1 with err and *status (the HTTP status it means). */
static int run_job(quantize_job *j, char *err, size_t err_len, int *status) {
    *status = 500;
    slm_quantize_stats st;
    if (slm_quantize_file(j->src_path, j->tmp_path, &j->params, &st, err, err_len)) return -1;
    if (!send_status(j, "verifying conversion")) {
        snprintf(err, err_len, "cancelled");
        return -1;
    }
    slm_model_entry e;
    if (slm_models_import(j->data_dir, j->tmp_path, j->name, &e, err, err_len)) return -1;
    const bool has_extras = j->extras.template_text || j->extras.system || j->extras.params;
    if (has_extras && slm_models_tag_blob_extras(j->data_dir, e.digest, j->name, &j->extras, &e, err, err_len)) return -1;
    char line[128];
    snprintf(line, sizeof line, "creating new layer %s", e.digest);
    send_status(j, line);
    send_status(j, "writing manifest");
    return 0;
}

static void job_run(srv_ndjson_job *nj) {
    quantize_job *j = (quantize_job *)nj;
    char err[1024];
    int status;
    if (run_job(j, err, sizeof err, &status)) send_line(j, json_pack("{s:s}", "error", err));
    else send_status(j, "success");
}

/* A name for the output next to the blobs (<data_dir>/models/.quantize-XXXXXX): the same file
 * system, outside blobs/ where the store collects unnamed files. */
static int reserve_tmp(quantize_job *j, const char *blob_path, char *err, size_t err_len) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", blob_path);
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir) {
            snprintf(err, err_len, "unexpected blob path %.512s", blob_path);
            return -1;
        }
        *slash = 0;
    }
    if ((size_t)snprintf(j->tmp_path, sizeof j->tmp_path, "%s/.quantize-XXXXXX", dir) >= sizeof j->tmp_path) {
        j->tmp_path[0] = 0;
        snprintf(err, err_len, "path too long");
        return -1;
    }
    int fd = mkstemp(j->tmp_path);
    if (fd < 0) {
        int e = errno;
        j->tmp_path[0] = 0;
        snprintf(err, err_len, "cannot create a file in %.512s: %s", dir, strerror(e));
        return -1;
    }
    close(fd);
    return 0;
}

enum MHD_Result srv_ollama_create_quantize(srv_conn *c, const char *dir, const char *name, const char *digest,
                                           const char *type, slm_model_extras *x, bool stream) {
    quantize_job *j = calloc(1, sizeof *j);
    if (!j) {
        slm_models_extras_free(x);
        return srv_reply_error(c, 500, NULL, NULL, "out of memory");
    }
    j->extras = *x;
    memset(x, 0, sizeof *x);
    srv_ndjson_init(&j->job, job_run, job_free);
    char err[1024];
    const int ftype = slm_ftype_from_name(type);
    if (ftype < 0) {
        snprintf(err, sizeof err, "unsupported quantization type %.40s (one of: %s)", type, slm_ftype_names());
        job_free(&j->job);
        return srv_reply_error(c, 400, NULL, "quantize", err);
    }
    slm_model_entry existing;
    if (slm_models_find(dir, name, &existing, NULL, err, sizeof err) < 0) { /* a bad name: say so before the work */
        job_free(&j->job);
        return srv_reply_error(c, 400, NULL, "model", err);
    }
    if (!slm_models_blob_path(dir, digest, j->src_path, sizeof j->src_path)) {
        job_free(&j->job);
        return srv_reply_error(c, 404, NULL, "model", "the source model's blob is not in the store");
    }
    snprintf(j->data_dir, sizeof j->data_dir, "%s", dir);
    snprintf(j->name, sizeof j->name, "%s", name);
    snprintf(j->new_type, sizeof j->new_type, "%s", slm_ftype_name(ftype));
    j->params = (slm_quantize_params){.ftype = ftype, .n_threads = c->srv->cfg.threads, .on_progress = on_progress,
                                      .progress_user = j};
    int src_ftype = -1;
    if (slm_quantize_check(j->src_path, &j->params, &src_ftype, err, sizeof err)) {
        job_free(&j->job);
        return srv_reply_error(c, 400, NULL, "quantize", err);
    }
    snprintf(j->src_type, sizeof j->src_type, "%s", slm_ftype_name(src_ftype) ? slm_ftype_name(src_ftype) : "float");
    struct stat sb;
    j->src_bytes = stat(j->src_path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    if (reserve_tmp(j, j->src_path, err, sizeof err)) {
        job_free(&j->job);
        return srv_reply_error(c, 500, NULL, NULL, err);
    }
    if (!stream) {
        int status;
        int rc = run_job(j, err, sizeof err, &status);
        job_free(&j->job);
        return rc ? srv_reply_error(c, status, NULL, NULL, err) : srv_reply_json(c, 200, json_pack("{s:s}", "status", "success"));
    }
    return srv_ndjson_start(c, &j->job);
}
