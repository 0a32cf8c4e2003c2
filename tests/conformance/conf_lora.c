/* LoRA adapters against llama.cpp (../shared/reference/lora-*): the synthetic adapters, regenerated
 * with synth_gguf.py --adapter-for, applied on the f32 oracle path (logits_exact*.jsonl: max |Δlogit|
 * and |Δlogsumexp| <= 1e-3 σ) and the normal path (logits*.jsonl: max <= 0.05 σ, mean <= 0.006 σ),
 * top-1 identical except near ties, at both scales. Then what llama.cpp cannot do: one batch whose
 * sequences use the adapter at 1.0, at 0.5 and not at all, each matching its own reference. Last,
 * the oracle path with the adapter equals the base with W + s·B·A merged into its f32 weights
 * (float64 sums here) within the f32 tolerance, over the whole vocabulary, and the normal path with
 * the adapter equals it within the normal tolerance (this covers phi3's fused matrices, whose parts
 * get 8-bit copies of their own). The normal-path checks run again in a child process per lower
 * kernel path this CPU has (SLM_ISA=avx2, scalar): each ISA has its own LoRA kernel. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "kernels/kernels_impl.h"
#include "slm.h"
#include "test.h"

typedef struct lora_case {
    const char *id;         /* reference folder */
    const char *base_path;  /* filled at run time */
    const char *gen_args;   /* synth_gguf.py arguments after --adapter-for */
    bool has_half;          /* logits_scale0.5 / logits_exact_scale0.5 exist */
    bool merged_only;       /* no llama.cpp references: only adapter == merged weights (id = the base's folder) */
} lora_case;

static char tmpdir[] = "/tmp/conf_lora_XXXXXX";
static bool fast_only; /* a child for one lower ISA: only the normal-path checks */

static json_t *load_jsonl(const char *path) {
    FILE *fp = fopen(path, "r");
    if (!fp) return NULL;
    json_t *arr = json_array();
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, fp) > 0) {
        json_error_t je;
        json_t *j = json_loads(line, 0, &je);
        if (j) json_array_append_new(arr, j);
    }
    free(line);
    fclose(fp);
    return arr;
}

typedef struct stats {
    double max_d, sum_d, max_lse;
    long n_d, clear_miss;
} stats;

/* Compares the logits of `seq`'s tokens (logit rows lg_row0 + pos) against the reference lines of `prompt`. */
static void compare_rows(const slm_context *ctx, int n_vocab, json_t *ref, int prompt, int lg_row0, int n_pos,
                         double tie_gap, stats *st) {
    size_t i;
    json_t *line;
    json_array_foreach(ref, i, line) {
        if (json_integer_value(json_object_get(line, "prompt")) != prompt) continue;
        int pos = (int)json_integer_value(json_object_get(line, "pos"));
        if (pos < 0 || pos >= n_pos) continue;
        const float *lg = slm_logits(ctx, lg_row0 + pos);
        if (!lg) {
            st->clear_miss++;
            continue;
        }
        float max = -INFINITY;
        int arg = 0;
        for (int t = 0; t < n_vocab; t++)
            if (lg[t] > max) max = lg[t], arg = t;
        double s = 0;
        for (int t = 0; t < n_vocab; t++) s += exp((double)lg[t] - max);
        double dl = fabs(max + log(s) - json_number_value(json_object_get(line, "logsumexp")));
        if (dl > st->max_lse) st->max_lse = dl;
        json_t *top = json_object_get(line, "top");
        size_t k;
        json_t *pair;
        json_array_foreach(top, k, pair) {
            double d = fabs(lg[json_integer_value(json_array_get(pair, 0))] - json_number_value(json_array_get(pair, 1)));
            if (d > st->max_d) st->max_d = d;
            st->sum_d += d;
            st->n_d++;
        }
        int ref_top1 = (int)json_integer_value(json_array_get(json_array_get(top, 0), 0));
        double gap = json_number_value(json_array_get(json_array_get(top, 0), 1)) -
                     json_number_value(json_array_get(json_array_get(top, 1), 1));
        if (gap >= tie_gap && arg != ref_top1) st->clear_miss++;
    }
}

static int prompt_ids(json_t *ref, int prompt, slm_token *ids, int cap) {
    size_t i;
    json_t *line;
    json_array_foreach(ref, i, line) {
        if (json_integer_value(json_object_get(line, "prompt")) != prompt) continue;
        json_t *arr = json_object_get(line, "prompt_ids");
        int n = 0;
        size_t k;
        json_t *v;
        json_array_foreach(arr, k, v) if (n < cap) ids[n++] = (slm_token)json_integer_value(v);
        return n;
    }
    return 0;
}

static void check_stats(const char *what, const stats *st, double sigma, bool exact) {
    double max_s = st->max_d / sigma, mean_s = st->n_d ? st->sum_d / (double)st->n_d / sigma : 1e9,
           lse_s = st->max_lse / sigma;
    fprintf(stderr, "%-44s max|d| %.6f sigma  mean %.6f sigma  lse %.6f sigma  (%ld clear top-1 misses)\n", what, max_s,
            mean_s, lse_s, st->clear_miss);
    CHECKF(st->n_d > 0, "%s: nothing compared", what);
    if (exact) {
        CHECKF(max_s <= 1e-3, "%s: max |dlogit| %.6f sigma > 1e-3", what, max_s);
        CHECKF(lse_s <= 1e-3, "%s: |dlse| %.6f sigma > 1e-3", what, lse_s);
    } else {
        CHECKF(max_s <= 0.05, "%s: max |dlogit| %.5f sigma > 0.05", what, max_s);
        CHECKF(mean_s <= 0.006, "%s: mean |dlogit| %.5f sigma > 0.006", what, mean_s);
    }
    CHECKF(st->clear_miss == 0, "%s: top-1 differs at %ld positions that are not near ties", what, st->clear_miss);
}

/* One reference file, each prompt alone in the batch, the adapter at `scale` (0 = none). */
static void run_file(slm_model *m, slm_lora *lora, const char *dir, const char *file, bool exact, float scale,
                     double sigma, const char *id) {
    char path[4600], what[256], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    json_t *ref = load_jsonl(path);
    snprintf(what, sizeof what, "%s %s", id, file);
    if (!ref) {
        CHECKF(0, "%s: cannot read", path);
        return;
    }
    slm_context_params cp = slm_context_default_params();
    cp.n_ctx = 256;
    cp.n_batch = 256;
    cp.exact = exact;
    slm_context *ctx;
    if (slm_context_new(m, &cp, &ctx, err, sizeof err)) {
        CHECKF(0, "%s: context: %s", what, err);
        json_decref(ref);
        return;
    }
    slm_lora_use use = {lora, scale};
    CHECKF(slm_context_set_lora(ctx, 0, &use, scale != 0 ? 1 : 0, err, sizeof err) == 0, "%s: %s", what, err);
    stats st = {0};
    for (int prompt = 0; prompt < 3; prompt++) {
        slm_token ids[256];
        int8_t want[256];
        int n = prompt_ids(ref, prompt, ids, 256);
        if (n == 0) continue;
        memset(want, 1, (size_t)n);
        slm_kv_seq_truncate(ctx, 0, 0);
        slm_batch b = {n, ids, NULL, NULL, want};
        if (slm_decode(ctx, &b, err, sizeof err)) {
            CHECKF(0, "%s: decode: %s", what, err);
            continue;
        }
        compare_rows(ctx, slm_model_n_vocab(m), ref, prompt, 0, n, 2 * (exact ? 1e-3 : 0.05) * sigma, &st);
    }
    check_stats(what, &st, sigma, exact);
    slm_context_free(ctx);
    json_decref(ref);
}

/* One batch, three sequences: the adapter at 1.0, at 0.5 and none, all of prompt 1, on the oracle path. */
static void run_mixed(slm_model *m, slm_lora *lora, const char *dir, double sigma, const char *id) {
    const char *files[3] = {"logits_exact.jsonl", "logits_exact_scale0.5.jsonl", "logits_base_exact.jsonl"};
    float scales[3] = {1.0f, 0.5f, 0.0f};
    json_t *refs[3];
    char path[4600], err[512];
    for (int s = 0; s < 3; s++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[s]);
        refs[s] = load_jsonl(path);
        CHECKF(refs[s] != NULL, "%s: cannot read", path);
    }
    slm_context_params cp = slm_context_default_params();
    cp.n_ctx = 256;
    cp.n_batch = 256;
    cp.n_seq = 3;
    cp.exact = true;
    slm_context *ctx = NULL;
    if (refs[0] && refs[1] && refs[2] && slm_context_new(m, &cp, &ctx, err, sizeof err) == 0) {
        slm_token ids[256], toks[768];
        int32_t seqs[768];
        int8_t want[768];
        int n = prompt_ids(refs[0], 1, ids, 256);
        for (int s = 0; s < 3; s++) {
            slm_lora_use use = {lora, scales[s]};
            CHECKF(slm_context_set_lora(ctx, s, &use, 1, err, sizeof err) == 0, "set_lora: %s", err);
            for (int t = 0; t < n; t++) { /* interleaved: rows of different adapters side by side */
                toks[t * 3 + s] = ids[t];
                seqs[t * 3 + s] = s;
                want[t * 3 + s] = 1;
            }
        }
        CHECK(slm_context_lora_matches(ctx, 0, &(slm_lora_use){lora, 1.0f}, 1));
        CHECK(!slm_context_lora_matches(ctx, 0, &(slm_lora_use){lora, 0.5f}, 1));
        CHECK(slm_context_lora_matches(ctx, 2, NULL, 0));
        slm_batch b = {3 * n, toks, NULL, seqs, want};
        if (slm_decode(ctx, &b, err, sizeof err) == 0) {
            for (int s = 0; s < 3; s++) {
                /* logits rows are in batch order: row t*3+s is sequence s's position t */
                stats st = {0};
                size_t i;
                json_t *line;
                json_array_foreach(refs[s], i, line) {
                    if (json_integer_value(json_object_get(line, "prompt")) != 1) continue;
                    int pos = (int)json_integer_value(json_object_get(line, "pos"));
                    if (pos < 0 || pos >= n) continue;
                    json_t *one = json_array();
                    json_array_append(one, line);
                    /* compare_rows reads row lg_row0 + pos: aim it at row pos*3+s */
                    compare_rows(ctx, slm_model_n_vocab(m), one, 1, pos * 3 + s - pos, pos + 1, 2e-3 * sigma, &st);
                    json_decref(one);
                }
                char what[200];
                snprintf(what, sizeof what, "%s mixed batch, scale %.1f", id, scales[s]);
                check_stats(what, &st, sigma, true);
            }
        } else {
            CHECKF(0, "mixed decode: %s", err);
        }
    }
    slm_context_free(ctx);
    for (int s = 0; s < 3; s++) json_decref(refs[s]);
}

/* Reads a whole file. */
static void *slurp(const char *path, size_t *size) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    void *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (buf && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    *size = (size_t)n;
    return buf;
}

/* An f32 base with W + s·B·A merged in (float64 sums), written to `out`. Returns 0 on success. */
static int write_merged(const char *base_path, const char *adapter_path, double s, const char *out) {
    size_t size = 0, asize = 0;
    uint8_t *buf = slurp(base_path, &size);
    void *abuf = slurp(adapter_path, &asize);
    gguf_file *bf = NULL, *af = NULL;
    char err[512];
    int rc = -1;
    if (!buf || !abuf || gguf_open_memory(buf, size, "base", &bf, err, sizeof err) ||
        gguf_open_memory(abuf, asize, "adapter", &af, err, sizeof err))
        goto done;
    for (int64_t i = 0; i < gguf_n_tensors(af); i++) {
        const gguf_tensor *ta = gguf_tensor_at(af, i);
        if (ta->name.len < 8 || memcmp(ta->name.ptr + ta->name.len - 7, ".lora_a", 7)) continue;
        char wname[256], bname[270];
        snprintf(wname, sizeof wname, "%.*s", (int)ta->name.len - 7, ta->name.ptr);
        snprintf(bname, sizeof bname, "%s.lora_b", wname);
        const gguf_tensor *tb = gguf_find_tensor(af, bname), *w = gguf_find_tensor(bf, wname);
        if (!tb || !w || w->type != 0 || ta->type != 0 || tb->type != 0) goto done;
        int64_t n_in = w->ne[0], n_out = w->ne[1], rank = tb->ne[0];
        float *wd = (float *)(uintptr_t)w->data; /* our own copy of the file */
        const float *a = ta->data, *b = tb->data;
        for (int64_t o = 0; o < n_out; o++)
            for (int64_t k = 0; k < n_in; k++) {
                double d = 0;
                for (int64_t r = 0; r < rank; r++) d += (double)b[o * rank + r] * (double)a[r * n_in + k];
                wd[o * n_in + k] = (float)((double)wd[o * n_in + k] + s * d);
            }
    }
    FILE *fp = fopen(out, "wb");
    if (fp && fwrite(buf, 1, size, fp) == size) rc = 0;
    if (fp) fclose(fp);
done:
    gguf_close(bf);
    gguf_close(af);
    free(buf);
    free(abuf);
    return rc;
}

/* The oracle path with the adapter vs the merged base, all positions of prompt 2, whole vocabulary. */
static void run_merged(slm_model *m, slm_lora *lora, const char *base_path, const char *adapter_path, float scale,
                       double sigma, const char *id) {
    char merged[512], err[512];
    snprintf(merged, sizeof merged, "%s/merged.gguf", tmpdir);
    double s = scale * slm_lora_alpha(lora) / slm_lora_rank(lora);
    if (write_merged(base_path, adapter_path, s, merged)) {
        CHECKF(0, "%s: cannot write the merged model", id);
        return;
    }
    slm_model *mm;
    if (slm_model_load(merged, NULL, &mm, err, sizeof err)) {
        CHECKF(0, "merged: %s", err);
        return;
    }
    slm_context_params cp = slm_context_default_params();
    cp.n_ctx = 256;
    cp.n_batch = 256;
    cp.exact = true;
    slm_context *c1 = NULL, *c2 = NULL, *c3 = NULL;
    slm_context_params fast = cp;
    fast.exact = false;
    if (slm_context_new(m, &cp, &c1, err, sizeof err) || slm_context_new(mm, &cp, &c2, err, sizeof err) ||
        slm_context_new(m, &fast, &c3, err, sizeof err)) {
        CHECKF(0, "merged contexts: %s", err);
    } else {
        slm_lora_use use = {lora, scale};
        slm_context_set_lora(c1, 0, &use, 1, err, sizeof err);
        slm_context_set_lora(c3, 0, &use, 1, err, sizeof err);
        slm_token ids[48];
        int8_t want[48];
        for (int i = 0; i < 48; i++) ids[i] = (slm_token)((i * 7919 + 13) % slm_model_n_vocab(m)), want[i] = 1;
        slm_batch b = {48, ids, NULL, NULL, want};
        double max_d = 0;
        bool decoded = !slm_decode(c1, &b, err, sizeof err) && !slm_decode(c2, &b, err, sizeof err) &&
                       !slm_decode(c3, &b, err, sizeof err);
        if (!decoded) {
            CHECKF(0, "merged decode: %s", err);
        } else {
            double max_fast = 0;
            for (int p = 0; p < 48; p++) {
                const float *l3 = slm_logits(c3, p), *l2 = slm_logits(c2, p);
                for (int t = 0; t < slm_model_n_vocab(m); t++)
                    if (fabs(l3[t] - l2[t]) > max_fast) max_fast = fabs(l3[t] - l2[t]);
            }
            fprintf(stderr, "%-44s normal path vs merged max|d| %.6f sigma\n", id, max_fast / sigma);
            CHECKF(max_fast / sigma <= 0.05, "%s: normal path with the adapter vs merged max |dlogit| %.5f sigma > 0.05", id,
                   max_fast / sigma);
        }
        if (decoded && !fast_only) {
            for (int p = 0; p < 48; p++) {
                const float *l1 = slm_logits(c1, p), *l2 = slm_logits(c2, p);
                for (int t = 0; t < slm_model_n_vocab(m); t++)
                    if (fabs(l1[t] - l2[t]) > max_d) max_d = fabs(l1[t] - l2[t]);
            }
            fprintf(stderr, "%-44s max|d| %.7f sigma (48 positions x whole vocabulary)\n", id, max_d / sigma);
            CHECKF(max_d / sigma <= 1e-3, "%s: adapter vs merged max |dlogit| %.6f sigma > 1e-3", id, max_d / sigma);
            /* and the adapter matters: without it the logits differ clearly */
            slm_context_set_lora(c1, 0, NULL, 0, err, sizeof err);
            slm_kv_seq_truncate(c1, 0, 0);
            slm_decode(c1, &b, err, sizeof err);
            double moved = 0;
            for (int t = 0; t < slm_model_n_vocab(m); t++)
                if (fabs(slm_logits(c1, 47)[t] - slm_logits(c2, 47)[t]) > moved)
                    moved = fabs(slm_logits(c1, 47)[t] - slm_logits(c2, 47)[t]);
            CHECKF(moved / sigma > 0.05, "%s: the adapter moves the logits only %.5f sigma", id, moved / sigma);
        }
    }
    slm_context_free(c1);
    slm_context_free(c2);
    slm_context_free(c3);
    slm_model_free(mm);
    unlink(merged);
}

static void run_case(const lora_case *lc, const char *shared, const char *synth) {
    char dir[4400], adapter[600], cmd[10000], err[512];
    snprintf(dir, sizeof dir, "%s/reference/%s", shared, lc->id);
    snprintf(adapter, sizeof adapter, "%s/%s.gguf", tmpdir, lc->id);
    snprintf(cmd, sizeof cmd, "python3 '%s' --adapter-for %s -o '%s' >/dev/null", synth, lc->gen_args, adapter);
    if (system(cmd) != 0) {
        CHECKF(0, "%s: cannot generate the adapter (%s)", lc->id, cmd);
        return;
    }
    json_error_t je;
    char mj_path[4600];
    snprintf(mj_path, sizeof mj_path, "%s/model.json", dir);
    json_t *mj = json_load_file(mj_path, 0, &je);
    double sigma = mj ? json_number_value(json_object_get(mj, "logit_std")) : 0;
    json_decref(mj);
    CHECKF(sigma > 0, "%s: no logit_std", lc->id);
    if (!(sigma > 0)) return;
    slm_model *m;
    if (slm_model_load(lc->base_path, NULL, &m, err, sizeof err)) {
        CHECKF(0, "%s: %s", lc->id, err);
        return;
    }
    slm_lora *lora;
    if (slm_lora_load(m, adapter, &lora, err, sizeof err)) {
        CHECKF(0, "%s: %s", lc->id, err);
        slm_model_free(m);
        return;
    }
    if (!lc->merged_only) {
        if (!fast_only) run_file(m, lora, dir, "logits_exact.jsonl", true, 1.0f, sigma, lc->id);
        run_file(m, lora, dir, "logits.jsonl", false, 1.0f, sigma, lc->id);
        if (!fast_only) run_file(m, lora, dir, "logits_base_exact.jsonl", true, 0.0f, sigma, lc->id);
    }
    if (lc->has_half) {
        if (!fast_only) run_file(m, lora, dir, "logits_exact_scale0.5.jsonl", true, 0.5f, sigma, lc->id);
        run_file(m, lora, dir, "logits_scale0.5.jsonl", false, 0.5f, sigma, lc->id);
        if (!fast_only) run_mixed(m, lora, dir, sigma, lc->id);
    }
    run_merged(m, lora, lc->base_path, adapter, 1.0f, sigma, lc->id);
    slm_lora_free(lora);
    slm_model_free(m);
    unlink(adapter);
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return TEST_SKIP_CODE;
    fast_only = getenv("CONF_LORA_CHILD") != NULL;
    if (system("python3 -c 'pass' 2>/dev/null") != 0) {
        fprintf(stderr, "conf_lora: python3 absent (needed to regenerate the adapters) — skipped\n");
        return TEST_SKIP_CODE;
    }
    const char *models = test_models_dir();
    char synth[4200], tiny[4200], stories[4200], phi3[4200];
    snprintf(synth, sizeof synth, "%s/tools/synth_gguf.py", shared);
    snprintf(tiny, sizeof tiny, "%s/tiny-smollm2-f32.gguf", models);
    snprintf(stories, sizeof stories, "%s/models/stories260K.gguf", shared);
    snprintf(phi3, sizeof phi3, "%s/tiny-phi3-f32.gguf", models);
    if (access(tiny, R_OK) != 0) {
        fprintf(stderr, "conf_lora: %s absent (run scripts/gen-test-models.sh small) — skipped\n", tiny);
        return TEST_SKIP_CODE;
    }
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "conf_lora: mkdtemp failed\n");
        return 1;
    }
    char stories_args[4400];
    snprintf(stories_args, sizeof stories_args, "'%s' --rank 4 --alpha 8 --targets q,v --seed 1 --lora-rel 0.5", stories);
    lora_case cases[] = {
        {"lora-tiny-smollm2-r8", tiny,
         "tiny-smollm2 --rank 8 --alpha 16 --targets q,k,v,o,gate,up,down --seed 1 --lora-rel 0.25", true, false},
        {"lora-stories260K-r4", stories, stories_args, false, false},
        /* phi3's fused attn_qkv and gate|up ffn_up: the adapter's B rows split over the parts */
        {"tiny-phi3-f32", phi3, "tiny-phi3 --rank 8 --alpha 16 --targets qkv,o,up,down --seed 3 --lora-rel 0.25", false, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (access(cases[i].base_path, R_OK) != 0) {
            fprintf(stderr, "%s: %s absent (scripts/gen-test-models.sh small) — not checked\n", cases[i].id, cases[i].base_path);
            continue;
        }
        run_case(&cases[i], shared, synth);
    }
    rmdir(tmpdir);
    /* the lower kernel paths, each in a child of its own (the ISA is chosen once per process) */
    if (!getenv("CONF_LORA_CHILD") && !getenv("SLM_ISA"))
        for (int isa = SLM_ISA_AVX2; isa >= SLM_ISA_SCALAR; isa--) {
            if ((int)slm_isa_supported() <= isa) continue;
            const char *name = isa == SLM_ISA_AVX2 ? "avx2" : "scalar";
            fprintf(stderr, "conf_lora: the normal path again with SLM_ISA=%s\n", name);
            fflush(stderr);
            pid_t pid = fork();
            if (pid == 0) {
                setenv("SLM_ISA", name, 1);
                setenv("CONF_LORA_CHILD", "1", 1);
                execl("/proc/self/exe", "conf_lora", (char *)NULL);
                _exit(127);
            }
            int status = 0;
            CHECKF(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
                   "conf_lora with SLM_ISA=%s failed", name);
        }
    return test_report(fast_only ? "conf_lora (normal path, lower ISA)" : "conf_lora");
}
