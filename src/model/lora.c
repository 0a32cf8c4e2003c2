/* LoRA adapters in llama.cpp's GGUF format, applied per sequence.
 *
 * An adapter holds, for some weight matrices W of its base model, two small matrices A (rank rows of
 * n_in) and B (n_out rows of rank); a sequence that uses the adapter at user scale u computes
 * W x + s·B·(A·x) with s = u × alpha / rank (u alone when alpha is 0), which is what llama.cpp does
 * (A·x first, then B·, then the scale, then the add, all in float). Unlike llama.cpp, every sequence
 * of a batch carries its own list of adapters: the forward pass calls slm_lora_apply after each
 * decoder matmul, and the rows of each sequence get only their own adapters' terms.
 *
 * Adapters are converted to f32 at load (they are small: rank × (n_in + n_out) per matrix): the exact
 * path sums those in plain scalar order. The fast path uses 8-bit copies with a scale per 32 values
 * (kernels/lora_q8.h): a batch of sequences with different adapters streams every sequence's own
 * adapters each step, so their bytes, not the arithmetic, are what adapters cost. */
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf_write.h"
#include "kernels/lora_q8.h"
#include "model/model_impl.h"
#include "tensor/quant.h"
#include "tensor/types.h"
#include "util/err.h"

#define LORA_MAX_RANK 256
/* rows × (n_in + n_out) × 8 from which the product is shared out over the pool: a decode step of a
 * few sequences already streams megabytes of adapters, worth both cores' bandwidth. (Keeping decode
 * steps on the calling thread, which saves the pool's barriers, measured worse: 8 streams × 8
 * adapters on 2 loaded cores gave a median 0.66x the wall-clock throughput without adapters,
 * against 0.90x pooled.) */
#define LORA_POOL_MIN_WORK (64 * 1024)

/* One A/B pair as the file has it: the base tensor it adapts, whole (fused matrices unsplit). */
typedef struct lora_pair {
    char name[96];
    const float *a, *b;
    int rank;
    int64_t n_in, n_out;
} lora_pair;

/* One adapted matrix as the forward pass sees it (a fused matrix's part points into its pair's B). */
typedef struct lora_target {
    const float *a; /* rank × n_in, row-major */
    const float *b; /* n_out × rank, row-major (the oracle path: llama.cpp's dot per output) */
    slm_lora_q8 q8;  /* the fast path's 8-bit copies of A and of this part's rows of B */
    int rank;
    int64_t n_in, n_out;
    float alpha;    /* of the adapter; the per-use scale is derived from it and the rank */
} lora_target;

struct slm_lora {
    atomic_int refs;
    uint64_t serial;          /* unique per load: compares adapter sets without trusting freed pointers */
    const slm_model *model;
    char name[128];           /* file stem */
    float alpha;
    int max_rank, n_pairs;
    void **owned;             /* the f32 A and B, and the 8-bit copies */
    int n_owned;
    lora_target *targets;     /* [(n_layer) × SLM_LORAT_N_TARGETS + 1]: the last one is output.weight; rank 0 = none */
    lora_pair *pairs;         /* by base tensor name, for merging */
};

/* What each sequence of a context applies. */
typedef struct lora_seq {
    int n;
    slm_lora_use use[SLM_LORA_MAX];
    uint64_t serial[SLM_LORA_MAX];
} lora_seq;

struct slm_lora_state {
    lora_seq *seqs; /* [n_seq] */
    int n_active;   /* sequences with at least one adapter */
};

static atomic_uint_fast64_t next_serial = 1;

/* ---------- loading ---------- */

static const char *const target_tensor[SLM_LORAT_N_TARGETS] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                                              "ffn_gate", "ffn_up", "ffn_down"};

const char *slm_lora_target_tensor(int target) {
    return target >= 0 && target < SLM_LORAT_N_TARGETS ? target_tensor[target] : NULL;
}

const slm_weight *slm_lora_target_weight(const slm_model *m, int layer, int target) {
    if (layer < 0) return &m->output;
    const slm_layer *L = &m->layers[layer];
    switch (target) {
    case SLM_LORAT_Q: return &L->wq;
    case SLM_LORAT_K: return &L->wk;
    case SLM_LORAT_V: return &L->wv;
    case SLM_LORAT_O: return &L->wo;
    case SLM_LORAT_GATE: return &L->w_gate;
    case SLM_LORAT_UP: return &L->w_up;
    default: return &L->w_down;
    }
}

static void lora_destroy(slm_lora *l) {
    if (!l) return;
    for (int i = 0; i < l->n_owned; i++) free(l->owned[i]);
    free(l->owned);
    free(l->targets);
    free(l->pairs);
    free(l);
}

/* A tensor of the adapter as rows × cols f32 (dequantized), or NULL with err filled. */
static float *tensor_f32(const gguf_tensor *t, const char *file, char *err, size_t err_len) {
    char name[160];
    snprintf(name, sizeof name, "%.*s", (int)(t->name.len < 150 ? t->name.len : 150), t->name.ptr);
    const slm_type_info *ti = slm_type_info_get(t->type);
    int64_t cols = t->ne[0], rows = t->ne[1];
    if (!ti || (t->type != SLM_TYPE_F32 && t->type != SLM_TYPE_F16 && t->type != SLM_TYPE_BF16 && !ti->weight_type)) {
        slm_err(err, err_len, "%s: tensor '%s' has type %s, which a LoRA adapter cannot use", file, name,
                slm_type_name(t->type));
        return NULL;
    }
    size_t row_bytes = slm_row_bytes(t->type, cols);
    if (row_bytes == 0 || (uint64_t)row_bytes * (uint64_t)rows != t->n_bytes) {
        slm_err(err, err_len, "%s: tensor '%s' of type %s has %" PRId64 " columns, not a whole number of blocks", file,
                name, slm_type_name(t->type), cols);
        return NULL;
    }
    float *out = malloc(sizeof(float) * (size_t)cols * (size_t)rows);
    if (!out) {
        slm_err(err, err_len, "out of memory for LoRA tensor '%s'", name);
        return NULL;
    }
    for (int64_t r = 0; r < rows; r++)
        slm_dequantize_row(t->type, (const uint8_t *)t->data + (size_t)r * row_bytes, out + (size_t)r * cols, cols);
    for (size_t i = 0; i < (size_t)cols * (size_t)rows; i++)
        if (!isfinite(out[i])) {
            slm_err(err, err_len, "%s: tensor '%s' holds a non-finite value at %zu", file, name, i);
            free(out);
            return NULL;
        }
    return out;
}

static bool ends_with(gguf_str s, const char *suffix) {
    size_t n = strlen(suffix);
    return s.len >= n && memcmp(s.ptr + s.len - n, suffix, n) == 0;
}

static const char *file_stem(const char *path, char *out, size_t cap) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    snprintf(out, cap, "%s", base);
    char *dot = strrchr(out, '.');
    if (dot && dot != out && !strcmp(dot, ".gguf")) *dot = 0;
    return out;
}

/* Checks the metadata that says this is a LoRA adapter for the model's architecture. */
static int check_metadata(const gguf_file *f, const slm_model *model, const char *fn, float *alpha, char *err,
                          size_t err_len) {
    gguf_str s;
    int rc = gguf_get_str(f, "general.type", &s, err, err_len);
    if (rc == -1)
        return slm_err(err, err_len, "%s: not a LoRA adapter (no general.type = \"adapter\"; is it a model file?)", fn);
    if (rc) return -1;
    if (!gguf_str_eq(s, "adapter"))
        return slm_err(err, err_len, "%s: not a LoRA adapter (general.type is \"%.*s\", not \"adapter\")", fn,
                       (int)(s.len < 64 ? s.len : 64), s.ptr);
    rc = gguf_get_str(f, "adapter.type", &s, err, err_len);
    if (rc == -1) return slm_err(err, err_len, "%s: adapter.type is missing (want \"lora\")", fn);
    if (rc) return -1;
    if (!gguf_str_eq(s, "lora"))
        return slm_err(err, err_len, "%s: adapter.type is \"%.*s\"; only \"lora\" adapters are supported", fn,
                       (int)(s.len < 64 ? s.len : 64), s.ptr);
    rc = gguf_get_str(f, "general.architecture", &s, err, err_len);
    if (rc == -1) return slm_err(err, err_len, "%s: general.architecture is missing", fn);
    if (rc) return -1;
    if (!gguf_str_eq(s, slm_model_arch(model)))
        return slm_err(err, err_len, "%s: the adapter is for architecture \"%.*s\", the model is \"%s\"", fn,
                       (int)(s.len < 64 ? s.len : 64), s.ptr, slm_model_arch(model));
    *alpha = 0;
    rc = gguf_get_f32(f, "adapter.lora.alpha", alpha, err, err_len);
    if (rc == -2) return -1;
    if (!isfinite(*alpha)) return slm_err(err, err_len, "%s: adapter.lora.alpha is not a finite number", fn);
    return 0;
}

/* Which target of which layer the base tensor `base` is; -1 with err when the engine cannot adapt it. */
static int locate(const slm_model *m, const char *base, const char *fn, int *layer, int *target, bool *fused,
                  char *err, size_t err_len) {
    *fused = false;
    if (!strcmp(base, "output.weight")) {
        *layer = -1;
        *target = 0;
        return 0;
    }
    int l = -1, used = 0;
    if (sscanf(base, "blk.%d.%n", &l, &used) == 1 && used > 0 && l >= 0 && l < m->hp.n_layer) {
        const char *suffix = base + used;
        *layer = l;
        if (!strcmp(suffix, "attn_qkv.weight")) { /* fused Q | K | V */
            *target = SLM_LORAT_Q;
            *fused = true;
            return 0;
        }
        for (int t = 0; t < SLM_LORAT_N_TARGETS; t++) {
            size_t n = strlen(target_tensor[t]);
            if (!strncmp(suffix, target_tensor[t], n) && !strcmp(suffix + n, ".weight")) {
                *target = t;
                *fused = t == SLM_LORAT_UP && m->arch->fused_gate_up; /* phi3's gate | up */
                return 0;
            }
        }
    }
    return slm_err(err, err_len, "%s: adapting '%s' is not supported (only the attention, feed-forward and output matrices)",
                   fn, base);
}

static int add_owned(slm_lora *l, void *p) {
    void **bigger = realloc(l->owned, sizeof(void *) * (size_t)(l->n_owned + 1));
    if (!bigger) return -1;
    l->owned = bigger;
    l->owned[l->n_owned++] = p;
    return 0;
}

/* Fills the targets of one pair (a fused matrix splits B's rows over its parts), each part with its
 * own 8-bit copy so a part's blocks of outputs start at its first row. */
static int place(slm_lora *l, const slm_model *m, int layer, int target, bool fused, const float *a, const float *b,
                 int rank, int64_t n_in, int64_t n_out) {
    lora_target *t = layer < 0 ? &l->targets[(size_t)m->hp.n_layer * SLM_LORAT_N_TARGETS] :
                                 &l->targets[(size_t)layer * SLM_LORAT_N_TARGETS];
    int64_t part_rows[3] = {n_out, 0, 0};
    int parts[3] = {layer < 0 ? 0 : target, -1, -1}, n_parts = 1;
    if (fused && target == SLM_LORAT_Q) { /* attn_qkv: Q | K | V rows */
        int64_t q = (int64_t)m->hp.n_head * m->hp.head_dim, kv = (int64_t)m->hp.n_head_kv * m->hp.head_dim;
        part_rows[0] = q, part_rows[1] = kv, part_rows[2] = kv;
        parts[1] = SLM_LORAT_K, parts[2] = SLM_LORAT_V, n_parts = 3;
    } else if (fused) { /* phi3's ffn_up: gate | up rows */
        part_rows[0] = part_rows[1] = m->hp.n_ff;
        parts[0] = SLM_LORAT_GATE, parts[1] = SLM_LORAT_UP, n_parts = 2;
    }
    int64_t row0 = 0;
    for (int i = 0; i < n_parts; i++) {
        const float *b_part = b + (size_t)row0 * (size_t)rank;
        size_t bytes = slm_lora_q8_bytes(rank, n_in, part_rows[i]);
        void *mem = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        if (!mem || add_owned(l, mem)) {
            free(mem);
            return -1;
        }
        t[parts[i]] = (lora_target){.a = a, .b = b_part, .rank = rank, .n_in = n_in, .n_out = part_rows[i], .alpha = l->alpha};
        slm_lora_q8_quantize(rank, n_in, part_rows[i], a, b_part, (size_t)rank, mem, &t[parts[i]].q8);
        row0 += part_rows[i];
    }
    return 0;
}

int slm_lora_load(const slm_model *model, const char *path, slm_lora **out, char *err, size_t err_len) {
    *out = NULL;
    if (!model || !path) return slm_err(err, err_len, "LoRA: no model or no path");
    if (model->vocab_only || !model->layers) return slm_err(err, err_len, "%s: the model was loaded without weights", path);
    if (model->arch->encoder)
        return slm_err(err, err_len, "%s: LoRA adapters apply to generative models; %s is an embedding model", path,
                       model->arch->name);
    gguf_file *f;
    if (gguf_open(path, &f, err, err_len)) return -1;
    const char *fn = path;
    slm_lora *l = calloc(1, sizeof *l);
    size_t n_targets = (size_t)model->hp.n_layer * SLM_LORAT_N_TARGETS + 1;
    if (l) l->targets = calloc(n_targets, sizeof *l->targets);
    if (!l || !l->targets) {
        lora_destroy(l);
        gguf_close(f);
        return slm_err(err, err_len, "out of memory loading %s", path);
    }
    atomic_init(&l->refs, 1);
    l->serial = atomic_fetch_add(&next_serial, 1);
    l->model = model;
    file_stem(path, l->name, sizeof l->name);
    int rc = check_metadata(f, model, fn, &l->alpha, err, err_len);
    const gguf_file *base = slm_model_gguf(model);
    for (int64_t i = 0; rc == 0 && i < gguf_n_tensors(f); i++) {
        const gguf_tensor *ta = gguf_tensor_at(f, i);
        if (ends_with(ta->name, "_norm.weight")) continue; /* llama.cpp skips trained norms too */
        bool is_a = ends_with(ta->name, ".lora_a"), is_b = ends_with(ta->name, ".lora_b");
        if (!is_a && !is_b) {
            rc = slm_err(err, err_len, "%s: tensor '%.*s' is neither a .lora_a nor a .lora_b tensor", fn,
                         (int)(ta->name.len < 120 ? ta->name.len : 120), ta->name.ptr);
            break;
        }
        if (!is_a) continue; /* each pair is handled from its A */
        char wname[256], bname[264];
        if (ta->name.len - 7 >= sizeof wname) {
            rc = slm_err(err, err_len, "%s: tensor name of %" PRIu64 " bytes is too long", fn, ta->name.len);
            break;
        }
        memcpy(wname, ta->name.ptr, ta->name.len - 7);
        wname[ta->name.len - 7] = 0;
        if (strlen(wname) != ta->name.len - 7) {
            rc = slm_err(err, err_len, "%s: a tensor name holds a NUL byte", fn);
            break;
        }
        snprintf(bname, sizeof bname, "%s.lora_b", wname);
        const gguf_tensor *tb = gguf_find_tensor(f, bname);
        if (!tb) {
            rc = slm_err(err, err_len, "%s: '%s.lora_a' has no matching '%s'", fn, wname, bname);
            break;
        }
        const gguf_tensor *w = gguf_find_tensor(base, wname);
        if (!w) {
            rc = slm_err(err, err_len, "%s: the base model has no tensor '%s' to adapt", fn, wname);
            break;
        }
        int layer = 0, target = 0;
        bool fused = false;
        if ((rc = locate(model, wname, fn, &layer, &target, &fused, err, err_len))) break;
        if (model->arch->fused_gate_up && layer >= 0 && target == SLM_LORAT_GATE) {
            rc = slm_err(err, err_len, "%s: the base has no separate '%s'", fn, wname);
            break;
        }
        /* ggml shapes: W [n_in, n_out], A [n_in, rank], B [rank, n_out] */
        int64_t n_in = w->ne[0], n_out = w->ne[1], rank = tb->ne[0];
        if (ta->n_dims > 2 || tb->n_dims > 2 || ta->ne[0] != n_in || tb->ne[1] != n_out || ta->ne[1] != rank) {
            rc = slm_err(err, err_len,
                         "%s: '%s' has lora_a [%" PRId64 ", %" PRId64 "] and lora_b [%" PRId64 ", %" PRId64
                         "]; the base matrix [%" PRId64 ", %" PRId64 "] needs lora_a [%" PRId64 ", rank] and lora_b "
                         "[rank, %" PRId64 "]",
                         fn, wname, ta->ne[0], ta->ne[1], tb->ne[0], tb->ne[1], n_in, n_out, n_in, n_out);
            break;
        }
        if (rank < 1 || rank > LORA_MAX_RANK) {
            rc = slm_err(err, err_len, "%s: '%s' has rank %" PRId64 " (supported: 1 to %d)", fn, wname, rank,
                         LORA_MAX_RANK);
            break;
        }
        lora_target *slot = layer < 0 ? &l->targets[n_targets - 1] :
                                        &l->targets[(size_t)layer * SLM_LORAT_N_TARGETS + (size_t)target];
        if (slot->rank) {
            rc = slm_err(err, err_len, "%s: '%s' is adapted twice", fn, wname);
            break;
        }
        float *a = tensor_f32(ta, fn, err, err_len);
        float *b = a ? tensor_f32(tb, fn, err, err_len) : NULL;
        if (!a || !b || add_owned(l, a) || add_owned(l, b)) {
            if (a && b) slm_err(err, err_len, "out of memory loading %s", path);
            bool a_owned = l->n_owned > 0 && l->owned[l->n_owned - 1] == a;
            if (!a_owned) free(a);
            free(b); /* add_owned(b) failed or never ran */
            rc = -1;
            break;
        }
        lora_pair *pairs = realloc(l->pairs, sizeof *pairs * (size_t)(l->n_pairs + 1));
        if (!pairs || strlen(wname) >= sizeof pairs->name) {
            if (pairs) l->pairs = pairs;
            rc = slm_err(err, err_len, "%s: out of memory or a tensor name too long ('%s')", fn, wname);
            break;
        }
        l->pairs = pairs;
        lora_pair *pr = &pairs[l->n_pairs];
        memcpy(pr->name, wname, strlen(wname) + 1); /* length checked above */
        pr->a = a;
        pr->b = b;
        pr->rank = (int)rank;
        pr->n_in = n_in;
        pr->n_out = n_out;
        if (place(l, model, layer, target, fused, a, b, (int)rank, n_in, n_out)) {
            rc = slm_err(err, err_len, "out of memory loading %s", path);
            break;
        }
        if (rank > l->max_rank) l->max_rank = (int)rank;
        l->n_pairs++;
    }
    /* every B must have had its A */
    for (int64_t i = 0; rc == 0 && i < gguf_n_tensors(f); i++) {
        const gguf_tensor *tb = gguf_tensor_at(f, i);
        if (!ends_with(tb->name, ".lora_b")) continue;
        char aname[264];
        snprintf(aname, sizeof aname, "%.*s.lora_a", (int)(tb->name.len - 7 < 250 ? tb->name.len - 7 : 250), tb->name.ptr);
        if (!gguf_find_tensor(f, aname))
            rc = slm_err(err, err_len, "%s: '%.*s' has no matching lora_a", fn, (int)(tb->name.len < 200 ? tb->name.len : 200),
                         tb->name.ptr);
    }
    if (rc == 0 && l->n_pairs == 0) rc = slm_err(err, err_len, "%s: the adapter holds no LoRA tensors", fn);
    gguf_close(f);
    if (rc) {
        lora_destroy(l);
        return -1;
    }
    *out = l;
    return 0;
}

void slm_lora_retain(slm_lora *l) {
    if (l) atomic_fetch_add(&l->refs, 1);
}

void slm_lora_free(slm_lora *l) {
    if (l && atomic_fetch_sub(&l->refs, 1) == 1) lora_destroy(l);
}

const char *slm_lora_name(const slm_lora *l) { return l ? l->name : ""; }
float slm_lora_alpha(const slm_lora *l) { return l ? l->alpha : 0; }
int slm_lora_rank(const slm_lora *l) { return l ? l->max_rank : 0; }
int slm_lora_n_pairs(const slm_lora *l) { return l ? l->n_pairs : 0; }
const slm_model *slm_lora_model(const slm_lora *l) { return l ? l->model : NULL; }

/* llama.cpp's multiplier: scale × alpha / rank in float, the scale alone when alpha is 0. */
static inline float lora_multiplier(float scale, float alpha, int rank) {
    return alpha != 0 ? scale * alpha / (float)rank : scale;
}

/* ---------- per-sequence adapter lists ---------- */

static int lora_state(slm_context *c, char *err, size_t err_len) {
    if (c->lora) return 0;
    c->lora = calloc(1, sizeof *c->lora);
    if (c->lora) c->lora->seqs = calloc((size_t)c->n_seq, sizeof *c->lora->seqs);
    if (!c->lora || !c->lora->seqs) {
        slm_lora_context_free(c);
        return slm_err(err, err_len, "out of memory for the context's adapter lists");
    }
    return 0;
}

void slm_lora_context_free(slm_context *c) {
    if (!c->lora) return;
    free(c->lora->seqs);
    free(c->lora);
    c->lora = NULL;
}

int slm_context_set_lora(slm_context *c, int seq, const slm_lora_use *uses, int n, char *err, size_t err_len) {
    if (seq < 0 || seq >= c->n_seq) return slm_err(err, err_len, "sequence %d is outside [0, %d)", seq, c->n_seq);
    if (n < 0 || n > SLM_LORA_MAX) return slm_err(err, err_len, "%d adapters on one sequence (at most %d)", n, SLM_LORA_MAX);
    int kept = 0;
    for (int i = 0; i < n; i++) {
        if (!uses[i].lora) return slm_err(err, err_len, "adapter %d is NULL", i);
        if (uses[i].lora->model != c->model)
            return slm_err(err, err_len, "adapter \"%s\" was loaded for another model", uses[i].lora->name);
        if (!isfinite(uses[i].scale))
            return slm_err(err, err_len, "adapter \"%s\": the scale is not a finite number", uses[i].lora->name);
        if (uses[i].scale != 0) kept++;
    }
    if (kept == 0 && !c->lora) return 0;
    if (lora_state(c, err, err_len)) return -1;
    lora_seq *s = &c->lora->seqs[seq];
    bool was_active = s->n > 0;
    s->n = 0;
    for (int i = 0; i < n; i++) {
        if (uses[i].scale == 0) continue; /* adds nothing: llama.cpp's result is the same */
        s->use[s->n] = uses[i];
        s->serial[s->n] = uses[i].lora->serial;
        s->n++;
    }
    c->lora->n_active += (s->n > 0) - was_active;
    return 0;
}

bool slm_context_lora_matches(const slm_context *c, int seq, const slm_lora_use *uses, int n) {
    if (seq < 0 || seq >= c->n_seq) return false;
    int have = c->lora ? c->lora->seqs[seq].n : 0, j = 0;
    for (int i = 0; i < n; i++) {
        if (!uses[i].lora || uses[i].scale == 0) continue;
        if (j >= have) return false;
        const lora_seq *s = &c->lora->seqs[seq];
        if (s->serial[j] != uses[i].lora->serial || s->use[j].scale != uses[i].scale) return false;
        j++;
    }
    return j == have;
}

/* ---------- applying ---------- */

/* Up to 3 targets that read the same input (q, k, v; gate, up): one pool operation for all. */
#define LORA_MAX_SHARED 3

typedef struct apply_job {
    slm_context *c;
    int n_targets;
    size_t target[LORA_MAX_SHARED]; /* index into each adapter's targets */
    float *y[LORA_MAX_SHARED];
    int64_t m[LORA_MAX_SHARED];     /* the base weight's n_out */
    const float *x;
    int64_t k;                      /* the base weights' n_in */
    int n;
    const int *rows;
} apply_job;

static float dot_exact(const float *a, const float *b, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static const lora_seq *row_seq(const apply_job *j, int r) {
    return &j->c->lora->seqs[j->c->batch_seq[j->rows ? j->rows[r] : r]];
}

/* The position of one term in a thread's share: row r, target t of the job, adapter u of the row. */
typedef struct apply_pos {
    int r, t, u;
} apply_pos;

/* Moves *p to the next term with work (an adapter that has the target), from *p itself on; false
 * when the share [.., end) has no more. */
static bool next_term(const apply_job *j, int end, apply_pos *p) {
    for (; p->r < end; p->r++, p->t = 0, p->u = 0) {
        const lora_seq *s = row_seq(j, p->r);
        for (; p->t < j->n_targets; p->t++, p->u = 0)
            for (; p->u < s->n; p->u++)
                if (s->use[p->u].lora->targets[j->target[p->t]].rank) return true;
    }
    return false;
}

static const lora_target *term_target(const apply_job *j, apply_pos p) {
    return &row_seq(j, p.r)->use[p.u].lora->targets[j->target[p.t]];
}

static void apply_rows(void *arg, int ith, int nth) {
    const apply_job *j = arg;
    const bool exact = j->c->exact;
    float ax[LORA_MAX_RANK];
    int end = j->n * (ith + 1) / nth;
    apply_pos p = {j->n * ith / nth, 0, 0};
    bool have = next_term(j, end, &p);
    if (have && !exact) slm_lora_q8_prefetch(&term_target(j, p)->q8);
    while (have) {
        const lora_seq *s = row_seq(j, p.r);
        const lora_target *lt = term_target(j, p);
        const float *x = j->x + (size_t)p.r * (size_t)j->k;
        float *y = j->y[p.t] + (size_t)p.r * (size_t)j->m[p.t];
        float mult = lora_multiplier(s->use[p.u].scale, lt->alpha, lt->rank);
        apply_pos next = {p.r, p.t, p.u + 1};
        have = next_term(j, end, &next);
        if (exact) { /* llama.cpp's order: A·x, B·(A·x) per output, times s, added */
            for (int q = 0; q < lt->rank; q++) ax[q] = dot_exact(lt->a + (size_t)q * (size_t)lt->n_in, x, lt->n_in);
            for (int64_t o = 0; o < lt->n_out; o++)
                y[o] += dot_exact(lt->b + (size_t)o * (size_t)lt->rank, ax, lt->rank) * mult;
        } else {
            /* fast: 8-bit copies, f32 sums (lora_q8.h); the next term's bytes are on their way meanwhile */
            if (have) slm_lora_q8_prefetch(&term_target(j, next)->q8);
            slm_lora_q8_apply(&lt->q8, x, mult, y);
        }
        p = next;
    }
}

void slm_lora_apply_multi(slm_context *c, int layer, const int *targets, int n_targets, const float *x, int n,
                          const int *rows, float *const *y) {
    if (!c->lora || c->lora->n_active == 0 || n <= 0 || n_targets < 1 || n_targets > LORA_MAX_SHARED) return;
    const slm_model *m = c->model;
    apply_job job = {.c = c, .x = x, .n = n, .rows = rows};
    int64_t work = 0;
    for (int i = 0; i < n_targets; i++) {
        int target = targets[i];
        const slm_weight *w = slm_lora_target_weight(m, layer, target); /* the shapes validated at load */
        job.target[i] = layer < 0 ? (size_t)m->hp.n_layer * SLM_LORAT_N_TARGETS
                                  : (size_t)layer * SLM_LORAT_N_TARGETS + (size_t)target;
        job.y[i] = y[i];
        job.m[i] = w->m;
        job.k = w->k;
        work += (int64_t)n * (w->k + w->m) * 8;
    }
    job.n_targets = n_targets;
    /* any row with work at all? (most passes of a server with few adapter users have none here) */
    apply_pos first = {0, 0, 0};
    if (!next_term(&job, n, &first)) return;
    if (work >= LORA_POOL_MIN_WORK) slm_pool_run(c->pool, apply_rows, &job);
    else apply_rows(&job, 0, 1);
}

void slm_lora_apply(slm_context *c, int layer, int target, const float *x, int n, const int *rows, float *y) {
    slm_lora_apply_multi(c, layer, &target, 1, x, n, rows, &y);
}

/* ---------- merging (slm lora merge) ---------- */

typedef struct merge_tensor {
    const gguf_tensor *t;
    uint32_t out_type;
    int n_terms;
    const lora_pair *pair[SLM_LORA_MAX];
    double mult[SLM_LORA_MAX];
} merge_tensor;

/* Rows of W + Σ s·B·A (sums in double) in the tensor's output type. */
static int merge_fill(void *user, int64_t index, void *dst, size_t n_bytes, char *err, size_t err_len) {
    const merge_tensor *mt = &((const merge_tensor *)user)[index];
    const gguf_tensor *t = mt->t;
    int64_t n_in = t->ne[0], rows = t->n_bytes / slm_row_bytes(t->type, n_in);
    size_t in_bytes = slm_row_bytes(t->type, n_in), out_bytes = slm_row_bytes(mt->out_type, n_in);
    if (out_bytes * (size_t)rows != n_bytes) return slm_err(err, err_len, "merge: '%.90s': size mismatch", t->name.ptr);
    float *row = malloc(sizeof(float) * (size_t)n_in);
    double *acc = malloc(sizeof(double) * (size_t)n_in);
    if (!row || !acc) {
        free(row);
        free(acc);
        return slm_err(err, err_len, "out of memory merging a tensor");
    }
    for (int64_t o = 0; o < rows; o++) {
        slm_dequantize_row(t->type, (const uint8_t *)t->data + (size_t)o * in_bytes, row, n_in);
        for (int64_t k = 0; k < n_in; k++) acc[k] = row[k];
        for (int j = 0; j < mt->n_terms; j++) {
            const lora_pair *p = mt->pair[j];
            const float *b = p->b + (size_t)o * (size_t)p->rank;
            for (int r = 0; r < p->rank; r++) {
                double c = mt->mult[j] * (double)b[r];
                const float *a = p->a + (size_t)r * (size_t)n_in;
                for (int64_t k = 0; k < n_in; k++) acc[k] += c * (double)a[k];
            }
        }
        for (int64_t k = 0; k < n_in; k++) row[k] = (float)acc[k];
        if (slm_quantize_row(mt->out_type, row, (uint8_t *)dst + (size_t)o * out_bytes, n_in) != 0) {
            free(row);
            free(acc);
            return slm_err(err, err_len, "merge: cannot write type %s", slm_type_name(mt->out_type));
        }
    }
    free(row);
    free(acc);
    return 0;
}

int slm_lora_merge(const char *base_path, const char *const *adapter_paths, const float *scales, int n,
                   const char *out_path, char *note, size_t note_len, char *err, size_t err_len) {
    if (n < 1 || n > SLM_LORA_MAX) return slm_err(err, err_len, "merge: 1 to %d adapters", SLM_LORA_MAX);
    slm_model *m = NULL;
    slm_lora *loras[SLM_LORA_MAX] = {0};
    merge_tensor *mts = NULL;
    char (*names)[256] = NULL;
    gguf_writer *w = NULL;
    int rc = -1, n_merged = 0, n_requant = 0, n_widened = 0;
    if (slm_model_load(base_path, NULL, &m, err, err_len)) return -1;
    for (int i = 0; i < n; i++) {
        if (!isfinite(scales[i])) {
            slm_err(err, err_len, "%s: the scale is not a finite number", adapter_paths[i]);
            goto done;
        }
        if (slm_lora_load(m, adapter_paths[i], &loras[i], err, err_len)) goto done;
    }
    const gguf_file *f = slm_model_gguf(m);
    int64_t nt = gguf_n_tensors(f);
    mts = calloc((size_t)(nt ? nt : 1), sizeof *mts);
    names = calloc((size_t)(nt ? nt : 1), sizeof *names);
    w = gguf_writer_new();
    if (!mts || !names || !w || gguf_writer_copy_all_kv(w, f)) {
        slm_err(err, err_len, "out of memory preparing %s", out_path);
        goto done;
    }
    uint32_t alignment;
    if (gguf_get_u32(f, "general.alignment", &alignment, NULL, 0) == 0) gguf_writer_set_alignment(w, alignment);
    for (int64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        merge_tensor *mt = &mts[i];
        mt->t = t;
        mt->out_type = t->type;
        snprintf(names[i], sizeof names[i], "%.*s", (int)(t->name.len < 255 ? t->name.len : 255), t->name.ptr);
        for (int j = 0; j < n; j++)
            for (int p = 0; p < loras[j]->n_pairs; p++)
                if (!strcmp(loras[j]->pairs[p].name, names[i]) && scales[j] != 0) {
                    const lora_pair *pr = &loras[j]->pairs[p];
                    mt->pair[mt->n_terms] = pr;
                    mt->mult[mt->n_terms++] = lora_multiplier(scales[j], loras[j]->alpha, pr->rank);
                }
        int st;
        if (mt->n_terms == 0) {
            st = gguf_writer_add_tensor(w, names[i], t->type, t->n_dims, t->ne, t->data, NULL, NULL);
        } else {
            /* the base's own type when slm can write it (quantized: re-quantized), else f32 */
            size_t probe_bytes = slm_row_bytes(t->type, t->ne[0]);
            float *zeros = calloc((size_t)t->ne[0], sizeof(float));
            void *probe = probe_bytes ? malloc(probe_bytes) : NULL;
            bool writable = zeros && probe && slm_quantize_row(t->type, zeros, probe, t->ne[0]) == 0;
            free(zeros);
            free(probe);
            if (!writable) {
                mt->out_type = SLM_TYPE_F32;
                n_widened++;
            } else if (t->type != SLM_TYPE_F32 && t->type != SLM_TYPE_F16 && t->type != SLM_TYPE_BF16) {
                n_requant++;
            }
            n_merged++;
            st = gguf_writer_add_tensor(w, names[i], mt->out_type, t->n_dims, t->ne, NULL, merge_fill, mts);
        }
        if (st) {
            slm_err(err, err_len, "cannot add tensor '%s' to %s", names[i], out_path);
            goto done;
        }
    }
    if (gguf_writer_write(w, out_path, err, err_len)) goto done;
    if (note && note_len) {
        size_t k = (size_t)snprintf(note, note_len, "%d matrices merged from %d adapter%s", n_merged, n, n == 1 ? "" : "s");
        if (n_requant && k < note_len)
            k += (size_t)snprintf(note + k, note_len - k,
                                  "; %d re-quantized to their own type (reference quantizer, no importance matrix)", n_requant);
        if (n_widened && k < note_len)
            snprintf(note + k, note_len - k, "; %d written as F32 (slm has no quantizer for their type)", n_widened);
    }
    rc = 0;
done:
    gguf_writer_free(w);
    free(mts);
    free(names);
    for (int i = 0; i < n; i++) slm_lora_free(loras[i]);
    slm_model_free(m);
    return rc;
}
