/* The fine-tuning loop: data, epochs of shuffled batches, AdamW with warmup and decay, gradient
 * clipping, validation, checkpoints and resume, and the adapter file at the end. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gguf/gguf_write.h"
#include "tensor/types.h"
#include "train/train_data.h"
#include "train/train_impl.h"
#include "util/err.h"

#define BETA1 0.9f
#define BETA2 0.999f
#define ADAM_EPS 1e-8f

slm_finetune_params slm_finetune_default_params(void) {
    slm_finetune_params p = {0};
    p.val_fraction = 0.1f;
    p.rank = 8;
    p.alpha = 16.0f;
    p.targets = SLM_LORA_ALL;
    p.epochs = 1;
    p.lr = 2e-4f;
    p.schedule = SLM_LR_COSINE;
    p.warmup_steps = -1;
    p.grad_clip = 1.0f;
    p.batch = 4;
    p.seed = 42;
    return p;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double lr_at(const slm_finetune_params *p, int64_t step, int64_t total, int64_t warmup) {
    if (step < warmup) return p->lr * (double)(step + 1) / (double)warmup;
    if (p->schedule == SLM_LR_CONSTANT || total <= warmup) return p->lr;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    if (p->schedule == SLM_LR_LINEAR) return p->lr * (1.0 - progress);
    return p->lr * 0.5 * (1.0 + cos(M_PI * progress));
}

/* The order of the windows in an epoch: a shuffle that depends only on the seed and the epoch, so a
 * resumed run sees the same batches. */
static void epoch_order(size_t *order, size_t n, uint64_t seed, int epoch) {
    for (size_t i = 0; i < n; i++) order[i] = i;
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch + 1;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(train_rng_next(&rng) % i);
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

static double evaluate(train_ws *ws, slm_pool *pool, const train_data *d) {
    if (!d || d->n == 0) return NAN;
    double loss = 0;
    size_t counted = 0;
    slm_pool_lock(pool);
    for (size_t i = 0; i < d->n; i++) {
        int n = 0;
        loss += train_seq(ws, d->tokens + d->start[i], d->weight + d->start[i], d->len[i], false, 1.0f, &n);
        counted += (size_t)n;
    }
    slm_pool_unlock(pool);
    return counted ? loss / (double)counted : NAN;
}

/* ---------- checkpoints ---------- */

static const char ckpt_magic[8] = {'S', 'L', 'M', 'L', 'O', 'R', 'A', 'C'};
enum { CKPT_VERSION = 1 };

typedef struct ckpt_header {
    char magic[8];
    uint32_t version, rank;
    uint64_t fingerprint, n_params;
    int64_t step, adam_t;
} ckpt_header;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001B3ull;
    return h;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w <= 0) return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Header, parameters, AdamW's moments, then an FNV-1a of all of it; written to path.tmp, synced and
 * renamed, so a crash mid-write keeps the previous checkpoint. */
static int checkpoint_save(const char *path, const ckpt_header *h, const lora_set *s, const adamw *o, char *err,
                           size_t err_len) {
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return slm_err(err, err_len, "checkpoint path too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return slm_err(err, err_len, "cannot write checkpoint %s: %s", tmp, strerror(errno));
    size_t bytes = sizeof(float) * s->n_params;
    uint64_t sum = fnv(0xCBF29CE484222325ull, h, sizeof *h);
    sum = fnv(sum, s->w, bytes);
    sum = fnv(sum, o->m, bytes);
    sum = fnv(sum, o->v, bytes);
    int rc = write_all(fd, h, sizeof *h) || write_all(fd, s->w, bytes) || write_all(fd, o->m, bytes) ||
             write_all(fd, o->v, bytes) || write_all(fd, &sum, sizeof sum) || fsync(fd);
    if (close(fd)) rc = -1;
    if (rc || rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return slm_err(err, err_len, "cannot write checkpoint %s: %s", path, strerror(e));
    }
    return 0;
}

static int checkpoint_load(const char *path, uint64_t fingerprint, lora_set *s, adamw *o, int64_t *step, char *err,
                           size_t err_len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return slm_err(err, err_len, "cannot open checkpoint %s: %s", path, strerror(errno));
    ckpt_header h;
    size_t bytes = sizeof(float) * s->n_params;
    int rc = -1;
    if (fread(&h, sizeof h, 1, fp) != 1 || memcmp(h.magic, ckpt_magic, sizeof ckpt_magic) != 0) {
        slm_err(err, err_len, "%s is not an slm fine-tuning checkpoint", path);
        goto out;
    }
    if (h.version != CKPT_VERSION) {
        slm_err(err, err_len, "%s: checkpoint version %u (this slm reads %d)", path, h.version, CKPT_VERSION);
        goto out;
    }
    if (h.fingerprint != fingerprint || h.n_params != s->n_params || h.rank != (uint32_t)s->rank) {
        slm_err(err, err_len,
                "%s was made for another base model, data or settings (rank, alpha, targets, ctx, batch, seed must match)",
                path);
        goto out;
    }
    if (h.step < 0 || h.adam_t < 0 || h.adam_t > h.step) {
        slm_err(err, err_len, "%s: corrupt checkpoint (step %lld)", path, (long long)h.step);
        goto out;
    }
    uint64_t sum_file = 0;
    if (fread(s->w, 1, bytes, fp) != bytes || fread(o->m, 1, bytes, fp) != bytes || fread(o->v, 1, bytes, fp) != bytes ||
        fread(&sum_file, sizeof sum_file, 1, fp) != 1 || fgetc(fp) != EOF) {
        slm_err(err, err_len, "%s: truncated or oversized checkpoint", path);
        goto out;
    }
    uint64_t sum = fnv(0xCBF29CE484222325ull, &h, sizeof h);
    sum = fnv(sum, s->w, bytes);
    sum = fnv(sum, o->m, bytes);
    sum = fnv(sum, o->v, bytes);
    if (sum != sum_file) {
        slm_err(err, err_len, "%s: checksum mismatch (corrupt checkpoint)", path);
        goto out;
    }
    for (size_t i = 0; i < s->n_params; i++)
        if (!isfinite(s->w[i]) || !isfinite(o->m[i]) || !(o->v[i] >= 0) || !isfinite(o->v[i])) {
            slm_err(err, err_len, "%s: non-finite values in the checkpoint", path);
            goto out;
        }
    o->t = h.adam_t;
    *step = h.step;
    rc = 0;
out:
    fclose(fp);
    return rc;
}

/* ---------- the adapter file ---------- */

int train_write_adapter(const slm_model *m, const lora_set *s, const char *path, char *err, size_t err_len) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return slm_err(err, err_len, "out of memory");
    int rc = 0;
    rc |= gguf_writer_set_str(w, "general.architecture", slm_model_arch(m));
    rc |= gguf_writer_set_str(w, "general.type", "adapter");
    rc |= gguf_writer_set_str(w, "general.name", "slm finetune");
    rc |= gguf_writer_set_str(w, "adapter.type", "lora");
    rc |= gguf_writer_set_f32(w, "adapter.lora.alpha", s->alpha);
    for (int i = 0; i < s->n_pairs && !rc; i++) {
        const lora_pair *p = &s->pairs[i];
        char name[128];
        int64_t ne_a[2] = {p->n_in, s->rank}, ne_b[2] = {s->rank, p->n_out};
        snprintf(name, sizeof name, "blk.%d.%s.weight.lora_a", p->layer, slm_lora_target_tensor(p->target));
        rc |= gguf_writer_add_tensor(w, name, SLM_TYPE_F32, 2, ne_a, s->w + p->off_a, NULL, NULL);
        snprintf(name, sizeof name, "blk.%d.%s.weight.lora_b", p->layer, slm_lora_target_tensor(p->target));
        rc |= gguf_writer_add_tensor(w, name, SLM_TYPE_F32, 2, ne_b, s->w + p->off_b, NULL, NULL);
    }
    if (rc) {
        gguf_writer_free(w);
        return slm_err(err, err_len, "out of memory building the adapter %s", path);
    }
    rc = gguf_writer_write(w, path, err, err_len);
    gguf_writer_free(w);
    return rc;
}

/* ---------- the loop ---------- */

static int check_params(const slm_finetune_params *p, char *err, size_t err_len) {
    if (!p->data_path || !*p->data_path) return slm_err(err, err_len, "no training data (--data FILE)");
    if (!p->out_path || !*p->out_path) return slm_err(err, err_len, "no output adapter path (-o FILE)");
    if (p->epochs < 1 || p->epochs > 100000) return slm_err(err, err_len, "epochs %d (must be 1 to 100000)", p->epochs);
    if (p->batch < 1 || p->batch > 65536) return slm_err(err, err_len, "batch %d (must be 1 to 65536)", p->batch);
    if (!(p->lr > 0) || !isfinite(p->lr) || p->lr > 10)
        return slm_err(err, err_len, "learning rate %g (must be above 0, at most 10)", (double)p->lr);
    if (!(p->weight_decay >= 0) || !isfinite(p->weight_decay))
        return slm_err(err, err_len, "weight decay %g (must be 0 or more)", (double)p->weight_decay);
    if (!(p->grad_clip >= 0) || !isfinite(p->grad_clip))
        return slm_err(err, err_len, "gradient clip %g (must be 0 or more)", (double)p->grad_clip);
    if (!(p->val_fraction >= 0 && p->val_fraction < 1))
        return slm_err(err, err_len, "validation fraction %g (must be in [0, 1))", (double)p->val_fraction);
    if (p->max_steps < 0 || p->checkpoint_every < 0) return slm_err(err, err_len, "negative step count");
    if (p->schedule < SLM_LR_COSINE || p->schedule > SLM_LR_CONSTANT) return slm_err(err, err_len, "unknown schedule");
    return 0;
}

int slm_finetune(slm_model *model, const slm_finetune_params *p, slm_finetune_result *res, char *err, size_t err_len) {
    slm_finetune_result r = {0};
    r.val_loss_before = r.val_loss_after = NAN;
    if (res) *res = r;
    if (!model || !p) return slm_err(err, err_len, "no model or parameters");
    if (check_params(p, err, err_len)) return -1;
    if (slm_model_is_embedding(model)) return slm_err(err, err_len, "an embedding model cannot be fine-tuned for text");
    int ctx = p->ctx > 0 ? p->ctx : 256;
    int n_ctx_train = slm_model_n_ctx_train(model);
    if (p->ctx <= 0 && n_ctx_train > 1 && ctx > n_ctx_train) ctx = n_ctx_train;
    if (ctx < 2 || ctx > 65536) return slm_err(err, err_len, "context %d (must be 2 to 65536)", ctx);
    int threads = p->n_threads > 0 ? p->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (threads > 256) return slm_err(err, err_len, "%d threads (at most 256)", threads);

    {
        /* fail now, not after hours of training, if the adapter cannot be written there */
        char dir[4096];
        const char *slash = strrchr(p->out_path, '/');
        size_t n = slash ? (size_t)(slash - p->out_path) : 0;
        if (n >= sizeof dir) return slm_err(err, err_len, "output path too long");
        memcpy(dir, slash ? p->out_path : ".", slash ? n : 1);
        dir[slash ? (n ? n : 1) : 1] = 0;
        if (slash && n == 0) dir[0] = '/';
        if (access(dir, W_OK | X_OK) != 0)
            return slm_err(err, err_len, "cannot write %s: directory %s: %s", p->out_path, dir, strerror(errno));
    }
    int rc = -1;
    train_data train = {0}, val = {0};
    lora_set *set = NULL;
    train_ws *ws = NULL;
    adamw opt = {0};
    size_t *order = NULL;
    slm_pool *pool = NULL;
    char *ckpt_default = NULL;

    set = lora_set_new(model, p->rank, p->alpha, p->targets, err, err_len);
    if (!set) goto out;
    if (set->n_pairs == 0) {
        slm_err(err, err_len, "the model has none of the selected target matrices");
        goto out;
    }
    pool = slm_pool_acquire(threads);
    if (!pool) {
        slm_err(err, err_len, "cannot start %d threads", threads);
        goto out;
    }
    ws = train_ws_new(model, set, ctx, pool, p->exact, err, err_len);
    if (!ws) goto out;
    if (train_data_load(model, p->data_path, ctx, p->chat_template, &train, err, err_len)) goto out;
    if (p->val_path) {
        if (train_data_load(model, p->val_path, ctx, p->chat_template, &val, err, err_len)) goto out;
    } else if (p->val_fraction > 0 && train.n >= 2) {
        int64_t n_val = (int64_t)ceil((double)train.n * p->val_fraction);
        if (train_data_split(&train, n_val, &val)) {
            slm_err(err, err_len, "out of memory");
            goto out;
        }
    }
    if (train.n_targets == 0) {
        slm_err(err, err_len, "%s: no training tokens left after the validation split", p->data_path);
        goto out;
    }
    if (adamw_init(&opt, set->n_params) || !(order = malloc(sizeof *order * train.n))) {
        slm_err(err, err_len, "out of memory for the optimizer state");
        goto out;
    }
    lora_set_init(set, p->seed);

    int64_t steps_per_epoch = ((int64_t)train.n + p->batch - 1) / p->batch;
    int64_t total = steps_per_epoch * p->epochs;
    if (p->max_steps > 0 && p->max_steps < total) total = p->max_steps;
    int64_t warmup = p->warmup_steps >= 0 ? p->warmup_steps : total / 10 < 100 ? total / 10 : 100;
    const char *ckpt_path = p->checkpoint_path;
    if (!ckpt_path && p->checkpoint_every > 0) {
        size_t n = strlen(p->out_path) + 6;
        if (!(ckpt_default = malloc(n))) goto out;
        snprintf(ckpt_default, n, "%s.ckpt", p->out_path);
        ckpt_path = ckpt_default;
    }
    /* what a checkpoint must agree on to continue this run exactly */
    uint64_t fp = 0xCBF29CE484222325ull;
    int64_t cfg[] = {p->rank, (int64_t)p->targets, ctx, p->batch, (int64_t)p->seed, slm_model_n_embd(model),
                     slm_model_n_vocab(model), (int64_t)set->n_params, (int64_t)slm_model_size_bytes(model)};
    fp = fnv(fp, cfg, sizeof cfg);
    fp = fnv(fp, &p->alpha, sizeof p->alpha);
    fp = train_data_hash(&train, fp);

    int64_t step = 0;
    if (p->resume_path && checkpoint_load(p->resume_path, fp, set, &opt, &step, err, err_len)) goto out;
    if (step > total) {
        slm_err(err, err_len, "%s is at step %lld, past this run's %lld steps", p->resume_path, (long long)step,
                (long long)total);
        goto out;
    }

    r.train_windows = (int64_t)train.n;
    r.val_windows = (int64_t)val.n;
    r.train_tokens = (int64_t)train.n_targets;
    r.n_params = set->n_params;
    r.val_loss_before = evaluate(ws, pool, &val);

    double t0 = now_s(), tokens_done = 0, eval_s = 0; /* throughput counts training time only */
    int64_t step0 = step;
    int epoch = -1;
    while (step < total) {
        int e = (int)(step / steps_per_epoch);
        if (e != epoch) {
            epoch = e;
            epoch_order(order, train.n, p->seed, epoch);
        }
        int64_t in_epoch = step % steps_per_epoch;
        size_t first = (size_t)(in_epoch * p->batch), last = first + (size_t)p->batch;
        if (last > train.n) last = train.n;
        size_t counted = 0;
        for (size_t i = first; i < last; i++) {
            size_t wi = order[i];
            for (int t = 1; t < train.len[wi]; t++) counted += train.weight[train.start[wi] + (size_t)t] != 0;
        }
        memset(set->g, 0, sizeof(float) * set->n_params);
        double loss = 0;
        if (counted) {
            float scale = 1.0f / (float)counted;
            slm_pool_lock(pool);
            for (size_t i = first; i < last; i++) {
                size_t wi = order[i];
                int n = 0;
                loss += train_seq(ws, train.tokens + train.start[wi], train.weight + train.start[wi], train.len[wi], true,
                                  scale, &n);
            }
            slm_pool_unlock(pool);
            loss /= (double)counted;
            tokens_done += (double)counted;
        }
        if (!isfinite(loss)) {
            slm_err(err, err_len, "the training loss became %g at step %lld (lower --lr)", loss, (long long)step + 1);
            goto out;
        }
        double norm = grad_norm(set->g, set->n_params);
        if (p->grad_clip > 0 && norm > p->grad_clip) {
            float c = (float)(p->grad_clip / norm);
            for (size_t i = 0; i < set->n_params; i++) set->g[i] *= c;
        }
        double lr = lr_at(p, step, total, warmup);
        adamw_step(&opt, set->w, set->g, (float)lr, BETA1, BETA2, ADAM_EPS, p->weight_decay);
        step++;
        double el = now_s() - t0 - eval_s;
        bool epoch_end = step % steps_per_epoch == 0 || step == total;
        if (p->progress) {
            slm_finetune_progress pr = {.step = step, .total_steps = total, .epoch = epoch + 1, .epochs = p->epochs,
                                        .loss = loss, .lr = lr, .val_loss = NAN};
            pr.tokens_per_s = el > 0 ? tokens_done / el : 0;
            pr.eta_s = el / (double)(step - step0) * (double)(total - step);
            p->progress(p->progress_user, &pr);
        }
        if (epoch_end) {
            double te = now_s();
            double vl = evaluate(ws, pool, &val);
            eval_s += now_s() - te;
            r.val_loss_after = vl;
            if (p->progress) {
                slm_finetune_progress pr = {.step = step, .total_steps = total, .epoch = epoch + 1, .epochs = p->epochs,
                                            .loss = loss, .lr = lr, .epoch_end = true, .val_loss = vl};
                pr.tokens_per_s = el > 0 ? tokens_done / el : 0;
                p->progress(p->progress_user, &pr);
            }
        }
        if (ckpt_path && p->checkpoint_every > 0 && step % p->checkpoint_every == 0 && step < total) {
            ckpt_header h = {.version = CKPT_VERSION, .rank = (uint32_t)set->rank, .fingerprint = fp,
                             .n_params = set->n_params, .step = step, .adam_t = opt.t};
            memcpy(h.magic, ckpt_magic, sizeof ckpt_magic);
            if (checkpoint_save(ckpt_path, &h, set, &opt, err, err_len)) goto out;
        }
    }
    if (train_write_adapter(model, set, p->out_path, err, err_len)) goto out;
    r.steps = step;
    r.seconds = now_s() - t0 - eval_s;
    r.tokens_per_s = r.seconds > 0 ? tokens_done / r.seconds : 0;
    if (isnan(r.val_loss_after)) r.val_loss_after = evaluate(ws, pool, &val);
    rc = 0;
out:
    if (res) *res = r;
    free(ckpt_default);
    free(order);
    adamw_free(&opt);
    train_ws_free(ws);
    lora_set_free(set);
    train_data_free(&train);
    train_data_free(&val);
    if (pool) slm_pool_release(pool);
    return rc;
}
