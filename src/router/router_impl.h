/* Router internals shared by the feature extractor, the model (load/save/score/train) and tests. */
#ifndef SLM_ROUTER_IMPL_H
#define SLM_ROUTER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm_router.h"

#define RT_MAGIC "SLMROUTR"
#define RT_VERSION 1u
#define RT_N_QUANTILES 1001 /* score quantiles at 0, 0.001, ..., 1 */
#define RT_PROMPT_DENSE 26
#define RT_ANSWER_DENSE 20
#define RT_MAX_DENSE (RT_PROMPT_DENSE + RT_ANSWER_DENSE)
#define RT_MIN_HASH_BITS 10
#define RT_MAX_HASH_BITS 22
#define RT_ALL_FEATURES 63u
/* Texts longer than this are read as their first and last halves of it: bounds the decision time
 * whatever the request (the dense length features still see the whole length). */
#define RT_TEXT_WINDOW 32768

struct slm_router {
    int kind;
    unsigned features;
    int hash_bits;
    int n_dense;
    float bias;
    float hashed_scale;
    float dense_mean[RT_MAX_DENSE], dense_std[RT_MAX_DENSE], w_dense[RT_MAX_DENSE];
    float quantiles[RT_N_QUANTILES]; /* non-decreasing */
    float *w_hash;                   /* 1 << hash_bits */
};

/* 64-bit hash of bytes (FNV-1a, then a final mix so low bits are usable as bucket indices). */
static inline uint64_t rt_mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
static inline uint64_t rt_hash_bytes(const void *data, size_t len, uint64_t seed) {
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull ^ rt_mix64(seed);
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return rt_mix64(h);
}

/* Receives the hashed features of one text, group by group: emit(bucket, sign) for every n-gram
 * occurrence, then end_group() (each group is scaled by 1/sqrt(occurrences), so a long prompt
 * weighs like a short one). */
typedef struct rt_sink {
    void (*emit)(struct rt_sink *s, uint32_t bucket, float sign);
    void (*end_group)(struct rt_sink *s);
} rt_sink;

/* Emits the hashed groups selected by features (SLM_RF_WORDS/CHARS/SHAPES/ANSWER_WORDS). */
void rt_hashed_features(unsigned features, int hash_bits, const char *prompt, const char *answer, rt_sink *sink);
/* Writes the raw dense features (prompt block, then answer block, as selected); returns their count. */
int rt_dense_features(unsigned features, const char *prompt, const char *answer, double *out);
int rt_dense_count(unsigned features);

/* (x - mean) / std, clipped to [-8, 8] so one outlandish request cannot dominate its score. */
double rt_standardize(double x, float mean, float std);

/* Arithmetic of a "<<expr=result>>" annotation: evaluates expr (numbers, + - * / parentheses,
 * unary minus); false if it does not parse. Exposed for the unit tests. */
bool rt_eval_arith(const char *s, size_t len, double *out);

#endif
