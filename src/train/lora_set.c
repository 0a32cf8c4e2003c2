/* The trained LoRA parameters: which matrices are adapted, where each A and B sits in one flat
 * vector, their initialisation, and the target list of the command line. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_impl.h"
#include "util/err.h"

static const char *const target_short[SLM_LORAT_N_TARGETS] = {"q", "k", "v", "o", "gate", "up", "down"};

/* The public mask (slm_train.h) has a bit per target of the model's enum, in its order. */
_Static_assert(SLM_LORA_Q == 1 << SLM_LORAT_Q && SLM_LORA_K == 1 << SLM_LORAT_K && SLM_LORA_V == 1 << SLM_LORAT_V &&
                   SLM_LORA_O == 1 << SLM_LORAT_O && SLM_LORA_GATE == 1 << SLM_LORAT_GATE &&
                   SLM_LORA_UP == 1 << SLM_LORAT_UP && SLM_LORA_DOWN == 1 << SLM_LORAT_DOWN &&
                   SLM_LORA_ALL == (1 << SLM_LORAT_N_TARGETS) - 1,
               "SLM_LORA_* bits follow enum slm_lora_target");

int slm_lora_targets_parse(const char *list, unsigned *mask, char *err, size_t err_len) {
    if (!list || !*list) return slm_err(err, err_len, "empty target list (use some of q,k,v,o,gate,up,down)");
    if (strcmp(list, "all") == 0) {
        *mask = SLM_LORA_ALL;
        return 0;
    }
    unsigned out = 0;
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        int found = -1;
        for (int t = 0; t < SLM_LORAT_N_TARGETS; t++) {
            size_t a = strlen(target_short[t]), b = strlen(slm_lora_target_tensor(t));
            if ((n == a && strncmp(p, target_short[t], n) == 0) || (n == b && strncmp(p, slm_lora_target_tensor(t), n) == 0))
                found = t;
        }
        if (found < 0)
            return slm_err(err, err_len, "unknown LoRA target '%.*s' (use some of q,k,v,o,gate,up,down)", (int)(n > 40 ? 40 : n),
                           p);
        if (out & (1u << found)) return slm_err(err, err_len, "LoRA target '%s' is listed twice", target_short[found]);
        out |= 1u << found;
        if (!end) break;
        p = end + 1;
    }
    *mask = out;
    return 0;
}

void lora_set_free(lora_set *s) {
    if (!s) return;
    free(s->pairs);
    free(s->index);
    free(s->w);
    free(s->g);
    free(s);
}

lora_set *lora_set_new(const slm_model *m, int rank, float alpha, unsigned targets, char *err, size_t err_len) {
    if (rank < 1 || rank > 1024) {
        slm_err(err, err_len, "LoRA rank %d (must be 1 to 1024)", rank);
        return NULL;
    }
    if (!(alpha > 0) || !isfinite(alpha)) {
        slm_err(err, err_len, "LoRA alpha %g (must be a positive number)", (double)alpha);
        return NULL;
    }
    if (!(targets & SLM_LORA_ALL) || (targets & ~(unsigned)SLM_LORA_ALL)) {
        slm_err(err, err_len, "no valid LoRA target selected");
        return NULL;
    }
    lora_set *s = calloc(1, sizeof *s);
    int L = m->hp.n_layer;
    if (!s || !(s->pairs = calloc((size_t)L * SLM_LORAT_N_TARGETS, sizeof *s->pairs)) ||
        !(s->index = calloc((size_t)L, sizeof *s->index)))
        goto oom;
    s->rank = rank, s->alpha = alpha, s->scale = alpha / (float)rank, s->targets = targets, s->n_layer = L;
    size_t off = 0;
    for (int l = 0; l < L; l++)
        for (int t = 0; t < SLM_LORAT_N_TARGETS; t++) {
            s->index[l][t] = -1;
            if (!(targets & (1u << t))) continue;
            const slm_weight *w = slm_lora_target_weight(m, l, t);
            if (!w->data) continue;
            lora_pair *p = &s->pairs[s->n_pairs];
            p->layer = l, p->target = t, p->n_in = (int)w->k, p->n_out = (int)w->m;
            p->off_a = off;
            off += (size_t)rank * (size_t)w->k;
            p->off_b = off;
            off += (size_t)rank * (size_t)w->m;
            s->index[l][t] = s->n_pairs++;
        }
    s->n_params = off;
    if (!(s->w = calloc(off ? off : 1, sizeof(float))) || !(s->g = calloc(off ? off : 1, sizeof(float)))) goto oom;
    return s;
oom:
    lora_set_free(s);
    slm_err(err, err_len, "out of memory for the LoRA parameters (rank %d)", rank);
    return NULL;
}

uint64_t train_rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double train_rng_uniform(uint64_t *state) { return (double)(train_rng_next(state) >> 11) * 0x1.0p-53; }

void lora_set_init(lora_set *s, uint64_t seed) {
    uint64_t rng = seed ^ 0x4C6F5241ull; /* "LoRA": keeps the init stream apart from the shuffling one */
    for (int i = 0; i < s->n_pairs; i++) {
        const lora_pair *p = &s->pairs[i];
        float bound = 1.0f / sqrtf((float)p->n_in);
        float *a = s->w + p->off_a;
        for (size_t j = 0; j < (size_t)s->rank * (size_t)p->n_in; j++)
            a[j] = (float)((2.0 * train_rng_uniform(&rng) - 1.0) * bound);
        memset(s->w + p->off_b, 0, sizeof(float) * (size_t)s->rank * (size_t)p->n_out);
    }
    memset(s->g, 0, sizeof(float) * s->n_params);
}
