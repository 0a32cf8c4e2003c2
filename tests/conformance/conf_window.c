/* Sliding-window attention (gemma2: even layers) with the ring-buffer KV cache of local layers.
 * 1. KV memory: at n_ctx 8192 the local layers of tiny-gemma2 hold window + n_batch - 1 positions,
 *    the global ones n_ctx (slm_context_kv_bytes); gemma2-2b's numbers are printed when present.
 * 2. The ring gives the same logits as a cache that keeps everything: tiny-gemma2-f32 with its
 *    window patched down to 8 (a copy of the file), fed 48 tokens in batches of 4 into a context
 *    whose local layers hold 11 positions, against the same batches into a full cache (both with the
 *    window mask), on the exact and the fast path; then truncation and sequence copy, which must
 *    recompute what the ring lost, and one token at a time across the ring's wrap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slm.h"
#include "test.h"

#define N_TOK 48

/* Copies `src` to a temporary file with gemma2.attention.sliding_window set to `window`. */
static bool patch_window(const char *src, char *dst, size_t cap, uint32_t window) {
    FILE *in = fopen(src, "rb");
    if (!in) return false;
    fseek(in, 0, SEEK_END);
    long n = ftell(in);
    fseek(in, 0, SEEK_SET);
    char *buf = n > 0 ? malloc((size_t)n) : NULL;
    bool ok = buf && fread(buf, 1, (size_t)n, in) == (size_t)n;
    fclose(in);
    static const char key[] = "gemma2.attention.sliding_window";
    char *at = NULL;
    for (long i = 0; ok && i + (long)sizeof key + 8 < n && i < (1 << 22); i++)
        if (memcmp(buf + i, key, sizeof key - 1) == 0) {
            at = buf + i + sizeof key - 1;
            break;
        }
    uint32_t type = 0;
    if (at) memcpy(&type, at, 4);
    ok = ok && at && type == 4; /* GGUF_TYPE_UINT32 */
    if (ok) memcpy(at + 4, &window, 4);
    snprintf(dst, cap, "/tmp/conf_window_XXXXXX");
    int fd = ok ? mkstemp(dst) : -1;
    FILE *out = fd >= 0 ? fdopen(fd, "wb") : NULL;
    ok = out && fwrite(buf, 1, (size_t)n, out) == (size_t)n;
    if (out) ok = fclose(out) == 0 && ok;
    free(buf);
    return ok;
}

/* Feeds tokens [from, to) to `seq` in batches of `step`, keeping the logits of every token. */
static bool feed(slm_context *c, int seq, const slm_token *toks, int from, int to, int step, float *logits, int n_vocab) {
    char err[256];
    int8_t want[64];
    int32_t seqs[64];
    memset(want, 1, sizeof want);
    for (int i = 0; i < 64; i++) seqs[i] = seq;
    for (int i = from; i < to; i += step) {
        int n = to - i < step ? to - i : step;
        slm_batch b = {n, toks + i, NULL, seqs, want};
        if (slm_decode(c, &b, err, sizeof err)) {
            CHECKF(0, "decode: %s", err);
            return false;
        }
        for (int k = 0; k < n; k++) memcpy(logits + (size_t)(i + k) * n_vocab, slm_logits(c, k), sizeof(float) * (size_t)n_vocab);
    }
    return true;
}

static double max_diff(const float *a, const float *b, int from, int to, int n_vocab) {
    double m = 0;
    for (size_t i = (size_t)from * n_vocab; i < (size_t)to * n_vocab; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (d > m) m = d;
    }
    return m;
}

static void check_ring(const char *path) {
    char err[512];
    slm_model *m;
    if (slm_model_load(path, NULL, &m, err, sizeof err)) {
        CHECKF(0, "%s", err);
        return;
    }
    int V = slm_model_n_vocab(m);
    slm_token toks[N_TOK];
    for (int i = 0; i < N_TOK; i++) toks[i] = (slm_token)(1000 + (i * 7919) % 20000);
    float *full = malloc(sizeof(float) * N_TOK * (size_t)V), *ring = malloc(sizeof(float) * N_TOK * (size_t)V);
    float *ref = malloc(sizeof(float) * N_TOK * (size_t)V); /* exact path, full cache: fast paths stay near it */
    for (int exact = 1; exact >= 0 && full && ring; exact--) {
        const char *what = exact ? "exact" : "fast";
        double tol = exact ? 1e-5 : 5e-3; /* fast: f16 KV + the f16 GELU table turn last-bit sum differences into ~1e-3 */
        slm_context_params cp = slm_context_default_params();
        cp.n_ctx = 64;
        cp.n_batch = 64; /* ring of 8 + 63 >= 64 positions: a full cache */
        cp.exact = exact;
        cp.n_seq = 2;
        slm_context *a = NULL, *r = NULL;
        CHECKF(slm_context_new(m, &cp, &a, err, sizeof err) == 0, "%s", err);
        cp.n_batch = 4; /* local layers: 8 + 3 = 11 positions */
        CHECKF(slm_context_new(m, &cp, &r, err, sizeof err) == 0, "%s", err);
        if (!a || !r) goto next;
        CHECK(slm_context_kv_bytes(r) < slm_context_kv_bytes(a));
        /* same batch shapes on both sides, so only the cache layout differs (the fast kernels round
         * a batch of 64 differently from a batch of 4) */
        if (!feed(a, 0, toks, 0, N_TOK, 4, full, V) || !feed(r, 0, toks, 0, N_TOK, 4, ring, V)) goto next;
        double d = max_diff(full, ring, 0, N_TOK, V);
        if (exact) memcpy(ref, full, sizeof(float) * N_TOK * (size_t)V);
        if (!exact)
            fprintf(stderr, "fast path vs exact path: full cache %.3g, ring %.3g\n", max_diff(full, ref, 0, N_TOK, V),
                    max_diff(ring, ref, 0, N_TOK, V));
        if (getenv("CONF_WINDOW_DEBUG"))
            for (int i = 0; i < N_TOK; i++) fprintf(stderr, "  pos %d: %.3g\n", i, max_diff(full, ring, i, i + 1, V));
        fprintf(stderr, "window 8, %s path: ring (11 slots, batches of 4) vs full cache: max |dlogit| %.2e\n", what, d);
        CHECKF(d <= tol, "%s: ring cache differs from the full cache by %.3g", what, d);
        /* truncation back past the ring's reach recomputes, then continues identically */
        slm_kv_seq_truncate(r, 0, 20);
        CHECK(slm_kv_seq_len(r, 0) == 20);
        if (!feed(r, 0, toks, 20, N_TOK, 4, ring, V)) goto next;
        d = max_diff(full, ring, 20, N_TOK, V);
        fprintf(stderr, "window 8, %s path: truncate 48 -> 20 and refeed: max |dlogit| %.2e\n", what, d);
        CHECKF(d <= tol, "%s: after truncation the ring cache differs by %.3g", what, d);
        /* copy a prefix to sequence 1 (needs recomputation: the ring moved on), continue one by one */
        slm_kv_seq_copy(r, 1, 0, 30);
        CHECK(slm_kv_seq_len(r, 1) == 30);
        if (!feed(r, 1, toks, 30, N_TOK, 1, ring, V)) goto next;
        d = max_diff(full, ring, 30, N_TOK, V);
        fprintf(stderr, "window 8, %s path: copy 30 positions to seq 1, then one token at a time: max |dlogit| %.2e\n", what, d);
        CHECKF(d <= tol, "%s: copied sequence differs by %.3g", what, d);
        /* a copy the ring still covers is a plain copy */
        slm_kv_seq_copy(r, 1, 0, N_TOK - 2);
        CHECK(slm_kv_seq_len(r, 1) == N_TOK - 2);
        if (!feed(r, 1, toks, N_TOK - 2, N_TOK, 1, ring, V)) goto next;
        d = max_diff(full, ring, N_TOK - 2, N_TOK, V);
        CHECKF(d <= tol, "%s: recent copy differs by %.3g", what, d);
    next:
        slm_context_free(a);
        slm_context_free(r);
    }
    free(full);
    free(ring);
    free(ref);
    slm_model_free(m);
}

/* KV bytes at n_ctx 8192, n_batch 512: local layers bounded by window + n_batch - 1. */
static void check_memory(const char *path, bool required) {
    char err[512];
    slm_model *m;
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        if (required) CHECKF(0, "%s absent (scripts/gen-test-models.sh)", path);
        return;
    }
    fclose(probe);
    if (slm_model_load(path, NULL, &m, err, sizeof err)) {
        CHECKF(0, "%s", err);
        return;
    }
    const char *v_swa = slm_model_meta(m, "gemma2.attention.sliding_window");
    const char *v_layers = slm_model_meta(m, "gemma2.block_count");
    const char *v_kv = slm_model_meta(m, "gemma2.attention.head_count_kv");
    const char *v_kl = slm_model_meta(m, "gemma2.attention.key_length");
    long window = v_swa ? atol(v_swa) : 0, layers = v_layers ? atol(v_layers) : 0;
    long kv_dim = (v_kv ? atol(v_kv) : 0) * (v_kl ? atol(v_kl) : 0);
    slm_context_params cp = slm_context_default_params();
    cp.n_ctx = 8192;
    cp.n_batch = 512;
    slm_context *c;
    if (slm_context_new(m, &cp, &c, err, sizeof err) == 0) {
        size_t got = slm_context_kv_bytes(c);
        size_t per_pos = (size_t)kv_dim * 2 /* f16 */ * 2 /* K and V */;
        size_t global = (size_t)(layers / 2) * 8192 * per_pos, local = (size_t)(layers - layers / 2) * (size_t)(window + 511) * per_pos;
        size_t unbounded = (size_t)layers * 8192 * per_pos;
        fprintf(stderr, "%s at n_ctx 8192 (n_batch 512): KV %.1f MiB = %ld global layers x 8192 + %ld local x %ld positions "
                        "(%.1f MiB if every layer kept the context)\n",
                path, got / 1048576.0, layers / 2, layers - layers / 2, window + 511, unbounded / 1048576.0);
        CHECKF(got == global + local, "KV bytes %zu, expected %zu", got, global + local);
        slm_context_free(c);
        /* at 16384 (past the trained context: refused) -- and at 4096 no layer needs a ring */
        cp.n_ctx = 4096;
        if (slm_context_new(m, &cp, &c, err, sizeof err) == 0) {
            CHECK(slm_context_kv_bytes(c) == (size_t)layers * 4096 * per_pos);
            slm_context_free(c);
        }
    } else {
        CHECKF(0, "%s", err);
    }
    slm_model_free(m);
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return TEST_SKIP_CODE;
    char src[4096], tmp[64];
    snprintf(src, sizeof src, "%s/tiny-gemma2-q8_0.gguf", test_models_dir());
    check_memory(src, true);
    snprintf(src, sizeof src, "%s/gemma2-2b-q4_0.gguf", test_models_dir());
    if (!(getenv("SLM_TEST_QUICK") && atoi(getenv("SLM_TEST_QUICK")))) check_memory(src, false);
    /* f32 weights: the fast path has no 8-bit activations whose rounding would amplify the
     * last-bit difference of splitting a wrapped window in two sums */
    snprintf(src, sizeof src, "%s/tiny-gemma2-f32.gguf", test_models_dir());
    if (patch_window(src, tmp, sizeof tmp, 8)) {
        check_ring(tmp);
        unlink(tmp);
    } else {
        CHECKF(0, "cannot write a copy of %s with a window of 8", src);
    }
    return test_report("conf_window");
}
