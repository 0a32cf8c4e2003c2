/* slm router — the learned part of the hybrid router (issue 14): a score P(the request needs the
 * frontier model), i.e. the local model would fail where the frontier model succeeds.
 *
 * Two kinds: a *prompt* router decides from the prompt alone, before anything runs; a *cascade*
 * router decides after the local model has answered, from the prompt and that answer. Both are a
 * logistic regression over hashed word / character / word-shape n-grams and a few dense features
 * (lengths, numbers, question form; for the cascade the answer's final number, its arithmetic
 * checks, hedging), trained in C with AdaGrad and L2. A router file is versioned binary (magic
 * "SLMROUTR", version, checksum), about 1 MB, validated on load.
 *
 * Threads: a loaded router is read-only; slm_router_score may be called from any number of
 * threads at once. */
#ifndef SLM_ROUTER_H
#define SLM_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct slm_router slm_router;

enum slm_router_kind { SLM_ROUTER_PROMPT = 1, SLM_ROUTER_CASCADE = 2 };

/* Loads and validates a router file; NULL with one line in err on any defect (missing, truncated,
 * wrong magic/version, inconsistent sizes, non-finite weights, checksum). */
slm_router *slm_router_load(const char *path, char *err, size_t err_len);
slm_router *slm_router_load_memory(const void *data, size_t size, char *err, size_t err_len);
void slm_router_free(slm_router *r);
int slm_router_kind(const slm_router *r); /* enum slm_router_kind */

/* P(needs frontier) in [0, 1]. local_answer is ignored by prompt routers; a cascade router given
 * NULL scores as if the answer were empty (no final number: a likely failure). prompt NULL = "". */
double slm_router_score(const slm_router *r, const char *prompt, const char *local_answer);

/* The threshold t such that about frontier_share (clamped to [0, 1]) of the router's training
 * prompts score >= t, from the score quantiles stored in the file (out-of-fold scores, so they
 * match unseen prompts better than in-sample ones). Send a request upstream when score >= t.
 * A share of 0 gives +INFINITY (never), 1 gives 0 (always). */
double slm_router_threshold_for_share(const slm_router *r, double frontier_share);

/* ---- labelled data (RouteLLM's CSV form) ---- */

typedef struct slm_router_example {
    char *prompt;
    char *local_answer; /* NULL when the file has no <local column>_response column */
    bool local_ok, frontier_ok;
    int source;         /* index of the file it came from (0, 1, ... in load order) */
} slm_router_example;

typedef struct slm_router_data {
    slm_router_example *ex;
    size_t n, cap;
    int sources;
} slm_router_data;

/* Appends one CSV file's rows to d (zero-initialise d first). The prompt column is the one named
 * "prompt"; the local and frontier columns are named by local_col / frontier_col, or (NULL) are the
 * 2nd and 3rd columns; their values are True/False (also true/false/1/0). The local answer is the
 * column "<local column>_response" if present; need_answers makes its absence an error. */
int slm_router_data_load(slm_router_data *d, const char *path, const char *local_col, const char *frontier_col,
                         bool need_answers, char *err, size_t err_len);
/* Keeps only the rows of fold `fold` of `folds` (keep_fold) or only the others (!keep_fold); a row's
 * fold is a hash of its prompt, so a split is the same on every run and machine. */
void slm_router_data_split(slm_router_data *d, int fold, int folds, bool keep_fold);
void slm_router_data_free(slm_router_data *d);

/* ---- training ---- */

enum slm_router_feature {
    SLM_RF_WORDS = 1,        /* prompt word unigrams + bigrams (numbers by shape) */
    SLM_RF_CHARS = 2,        /* prompt character 3..5-grams */
    SLM_RF_SHAPES = 4,       /* prompt word-shape 1..3-grams (Xxx, x, d, ^ ...): notation, not topic */
    SLM_RF_DENSE = 8,        /* prompt dense features: lengths, numbers, operators, question form */
    SLM_RF_ANSWER = 16,      /* cascade: the answer's dense features */
    SLM_RF_ANSWER_WORDS = 32 /* cascade: the answer's word unigrams + bigrams */
};

enum slm_router_label {
    SLM_RL_NEEDS_FRONTIER = 0, /* positive = local wrong and frontier right */
    SLM_RL_LOCAL_WRONG = 1     /* positive = local wrong */
};

typedef struct slm_router_train_opts {
    int kind;            /* enum slm_router_kind */
    unsigned features;   /* enum slm_router_feature bits */
    int label;           /* enum slm_router_label */
    int hash_bits;       /* 2^hash_bits hashed weights, 10..22 */
    int epochs;
    double lr, l2;       /* AdaGrad step, L2 per example (scaled by 1/n) */
    double hashed_scale; /* weight of the hashed groups against the dense features */
    bool balance_sources; /* each source file weighs the same in total */
    unsigned long seed;
} slm_router_train_opts;

void slm_router_train_defaults(slm_router_train_opts *o, int kind);
/* Parses "words,chars,shapes,dense,answer,answer-words" into bits; false if a name is unknown. */
bool slm_router_parse_features(const char *list, unsigned *bits);
slm_router *slm_router_train(const slm_router_data *d, const slm_router_train_opts *o, char *err, size_t err_len);
int slm_router_save(const slm_router *r, const char *path, char *err, size_t err_len);

/* ---- evaluation (RouteLLM's quality-cost curve) ---- */

#define SLM_ROUTER_CURVE_POINTS 21 /* frontier share 0, 0.05, ..., 1 */

typedef struct slm_router_metrics {
    size_t n;
    double local_acc, frontier_acc; /* all-local and all-frontier accuracy */
    /* APGR: area under the (share -> (acc - local)/(frontier - local)) curve over [0, 1];
     * CPT(x): the smallest frontier share whose accuracy reaches local + x (frontier - local);
     * share_at_95: the smallest share reaching 0.95 * frontier accuracy (0 if all-local does).
     * NaN when frontier_acc <= local_acc (no gap to recover). */
    double apgr, cpt50, cpt80, share_at_95;
    double curve[SLM_ROUTER_CURVE_POINTS][2]; /* [share, accuracy] */
} slm_router_metrics;

/* The router's curve: the highest-scoring k of n go to the frontier, for every k; tied scores are
 * taken in random order, so the curve is their exact expectation (linear across a tie). random
 * gets the expected curve of a random router (the straight line), exactly. Either output may be
 * NULL. -1 (with err) if n == 0 or out of memory. */
int slm_router_evaluate(const double *scores, const bool *local_ok, const bool *frontier_ok, size_t n,
                        slm_router_metrics *router, slm_router_metrics *random, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif
#endif
