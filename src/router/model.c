/* The router model: a logistic regression over the features of features.c.
 *
 * File format (little-endian), version 1:
 *   "SLMROUTR" | u32 version | u32 kind | u32 features | u32 hash_bits | u32 n_dense | u32 n_quantiles
 *   | f32 bias | f32 hashed_scale | f32 dense_mean[n_dense] | f32 dense_std[n_dense]
 *   | f32 w_dense[n_dense] | f32 quantiles[n_quantiles] | f32 w_hash[1 << hash_bits]
 *   | u64 checksum (rt_hash_bytes of every byte before it)
 * Every field is checked on load: a hostile or damaged file is one error line, never a crash. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "router/router_impl.h"
#include "util/buf.h"
#include "util/err.h"

#define HEADER_BYTES (8 + 6 * 4 + 2 * 4)
#define MAX_FILE_BYTES ((size_t)64 << 20)

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static float get_f32(const unsigned char *p) {
    uint32_t u = get_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint64_t get_u64(const unsigned char *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

static size_t file_bytes(int hash_bits, int n_dense) {
    return HEADER_BYTES + 4 * (3 * (size_t)n_dense + RT_N_QUANTILES + ((size_t)1 << hash_bits)) + 8;
}

void slm_router_free(slm_router *r) {
    if (!r) return;
    free(r->w_hash);
    free(r);
}

int slm_router_kind(const slm_router *r) { return r ? r->kind : 0; }

slm_router *slm_router_load_memory(const void *data, size_t size, char *err, size_t err_len) {
    const unsigned char *p = data;
    if (size < HEADER_BYTES + 8 || memcmp(p, RT_MAGIC, 8) != 0) {
        slm_err(err, err_len, size >= 8 && memcmp(p, RT_MAGIC, 8) == 0 ? "router file truncated (%zu bytes)"
                                                                      : "not a router file (no SLMROUTR magic)", size);
        return NULL;
    }
    uint32_t version = get_u32(p + 8), kind = get_u32(p + 12), features = get_u32(p + 16);
    uint32_t hash_bits = get_u32(p + 20), n_dense = get_u32(p + 24), n_quant = get_u32(p + 28);
    if (version != RT_VERSION) {
        slm_err(err, err_len, "router file version %u; this build reads version %u", version, RT_VERSION);
        return NULL;
    }
    if (kind != SLM_ROUTER_PROMPT && kind != SLM_ROUTER_CASCADE) {
        slm_err(err, err_len, "router file: unknown kind %u", kind);
        return NULL;
    }
    if (features == 0 || (features & ~RT_ALL_FEATURES) ||
        (kind == SLM_ROUTER_PROMPT && (features & (SLM_RF_ANSWER | SLM_RF_ANSWER_WORDS)))) {
        slm_err(err, err_len, "router file: invalid feature set 0x%x for its kind", features);
        return NULL;
    }
    if (hash_bits < RT_MIN_HASH_BITS || hash_bits > RT_MAX_HASH_BITS) {
        slm_err(err, err_len, "router file: hash_bits %u outside [%d, %d]", hash_bits, RT_MIN_HASH_BITS, RT_MAX_HASH_BITS);
        return NULL;
    }
    if (n_dense != (uint32_t)rt_dense_count(features) || n_quant != RT_N_QUANTILES) {
        slm_err(err, err_len, "router file: %u dense features and %u quantiles, expected %d and %d", n_dense, n_quant,
                rt_dense_count(features), RT_N_QUANTILES);
        return NULL;
    }
    size_t want = file_bytes((int)hash_bits, (int)n_dense);
    if (size != want) {
        slm_err(err, err_len, "router file is %zu bytes, its header says %zu (%s)", size, want,
                size < want ? "truncated" : "trailing bytes");
        return NULL;
    }
    if (get_u64(p + size - 8) != rt_hash_bytes(p, size - 8, 0)) {
        slm_err(err, err_len, "router file checksum mismatch (damaged file)");
        return NULL;
    }
    slm_router *r = calloc(1, sizeof *r);
    if (r) r->w_hash = malloc(((size_t)1 << hash_bits) * sizeof(float));
    if (!r || !r->w_hash) {
        slm_router_free(r);
        slm_err(err, err_len, "out of memory loading a router");
        return NULL;
    }
    r->kind = (int)kind;
    r->features = features;
    r->hash_bits = (int)hash_bits;
    r->n_dense = (int)n_dense;
    const unsigned char *q = p + 32;
    r->bias = get_f32(q), q += 4;
    r->hashed_scale = get_f32(q), q += 4;
    bool finite = isfinite(r->bias) && isfinite(r->hashed_scale), std_ok = true, quant_ok = true;
    for (uint32_t i = 0; i < n_dense; i++) r->dense_mean[i] = get_f32(q), q += 4, finite &= isfinite(r->dense_mean[i]);
    for (uint32_t i = 0; i < n_dense; i++) r->dense_std[i] = get_f32(q), q += 4, std_ok &= r->dense_std[i] > 0 && isfinite(r->dense_std[i]);
    for (uint32_t i = 0; i < n_dense; i++) r->w_dense[i] = get_f32(q), q += 4, finite &= isfinite(r->w_dense[i]);
    for (uint32_t i = 0; i < n_quant; i++) {
        float v = get_f32(q);
        q += 4;
        quant_ok &= v >= 0 && v <= 1 && (i == 0 || v >= r->quantiles[i - 1]);
        r->quantiles[i] = v;
    }
    size_t nh = (size_t)1 << hash_bits;
    for (size_t i = 0; i < nh; i++) r->w_hash[i] = get_f32(q), q += 4, finite &= isfinite(r->w_hash[i]);
    if (!finite || !std_ok || !quant_ok) {
        slm_router_free(r);
        slm_err(err, err_len, "router file: %s", !finite ? "a weight is not a finite number"
                                                 : !std_ok ? "a feature scale is not positive"
                                                           : "score quantiles are not non-decreasing in [0, 1]");
        return NULL;
    }
    return r;
}

slm_router *slm_router_load(const char *path, char *err, size_t err_len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        slm_err(err, err_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > MAX_FILE_BYTES) {
        fclose(f);
        slm_err(err, err_len, "%s: not a router file (not a regular file, or larger than %zu bytes)", path, MAX_FILE_BYTES);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    unsigned char *data = malloc(size ? size : 1);
    if (!data) {
        fclose(f);
        slm_err(err, err_len, "%s: out of memory", path);
        return NULL;
    }
    bool ok = fread(data, 1, size, f) == size && !ferror(f);
    fclose(f);
    if (!ok) {
        free(data);
        slm_err(err, err_len, "%s: read error", path);
        return NULL;
    }
    char inner[200];
    slm_router *r = slm_router_load_memory(data, size, inner, sizeof inner);
    free(data);
    if (!r) slm_err(err, err_len, "%s: %s", path, inner);
    return r;
}

static void put_u32(slm_buf *b, uint32_t v) {
    char c[4] = {(char)(v & 255), (char)(v >> 8 & 255), (char)(v >> 16 & 255), (char)(v >> 24)};
    slm_buf_append(b, c, 4);
}
static void put_f32(slm_buf *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put_u32(b, u);
}

int slm_router_save(const slm_router *r, const char *path, char *err, size_t err_len) {
    slm_buf b = {0};
    slm_buf_append(&b, RT_MAGIC, 8);
    put_u32(&b, RT_VERSION);
    put_u32(&b, (uint32_t)r->kind);
    put_u32(&b, r->features);
    put_u32(&b, (uint32_t)r->hash_bits);
    put_u32(&b, (uint32_t)r->n_dense);
    put_u32(&b, RT_N_QUANTILES);
    put_f32(&b, r->bias);
    put_f32(&b, r->hashed_scale);
    for (int i = 0; i < r->n_dense; i++) put_f32(&b, r->dense_mean[i]);
    for (int i = 0; i < r->n_dense; i++) put_f32(&b, r->dense_std[i]);
    for (int i = 0; i < r->n_dense; i++) put_f32(&b, r->w_dense[i]);
    for (int i = 0; i < RT_N_QUANTILES; i++) put_f32(&b, r->quantiles[i]);
    size_t nh = (size_t)1 << r->hash_bits;
    for (size_t i = 0; i < nh; i++) put_f32(&b, r->w_hash[i]);
    if (b.oom) {
        slm_buf_free(&b);
        return slm_err(err, err_len, "out of memory writing a router");
    }
    uint64_t sum = rt_hash_bytes(b.s, b.len, 0);
    put_u32(&b, (uint32_t)sum);
    put_u32(&b, (uint32_t)(sum >> 32));
    /* written beside the target, then renamed: a reader never sees half a router */
    slm_buf tmp = {0};
    slm_buf_printf(&tmp, "%s.tmp%ld", path, (long)getpid());
    FILE *f = tmp.oom ? NULL : fopen(tmp.s, "wb");
    bool ok = f && !b.oom && fwrite(b.s, 1, b.len, f) == b.len;
    if (f) ok &= fclose(f) == 0;
    if (ok) ok = rename(tmp.s, path) == 0;
    int saved = errno;
    if (!ok && tmp.s) remove(tmp.s);
    slm_buf_free(&tmp);
    slm_buf_free(&b);
    if (!ok) return slm_err(err, err_len, "%s: cannot write: %s", path, strerror(saved));
    return 0;
}

/* ---- scoring ---- */

typedef struct score_sink {
    rt_sink base;
    const float *w;
    double group_sum, total;
    size_t group_n;
} score_sink;

static void score_emit(rt_sink *s, uint32_t bucket, float sign) {
    score_sink *ss = (score_sink *)s;
    ss->group_sum += sign * ss->w[bucket];
    ss->group_n++;
}
static void score_end_group(rt_sink *s) {
    score_sink *ss = (score_sink *)s;
    if (ss->group_n) ss->total += ss->group_sum / sqrt((double)ss->group_n);
    ss->group_sum = 0;
    ss->group_n = 0;
}

double rt_standardize(double x, float mean, float std) {
    double z = (x - mean) / std;
    if (isnan(z)) return 0;
    return z > 8 ? 8 : z < -8 ? -8 : z;
}

double slm_router_score(const slm_router *r, const char *prompt, const char *local_answer) {
    if (!prompt) prompt = "";
    score_sink s = {{score_emit, score_end_group}, r->w_hash, 0, 0, 0};
    rt_hashed_features(r->features, r->hash_bits, prompt, local_answer, &s.base);
    double z = r->bias + r->hashed_scale * s.total;
    double dense[RT_MAX_DENSE];
    int nd = rt_dense_features(r->features, prompt, local_answer, dense);
    for (int i = 0; i < nd; i++) z += r->w_dense[i] * rt_standardize(dense[i], r->dense_mean[i], r->dense_std[i]);
    return 1.0 / (1.0 + exp(-z));
}

double slm_router_threshold_for_share(const slm_router *r, double share) {
    if (!(share > 0)) return INFINITY; /* also NaN: never upstream */
    if (share >= 1) return 0.0;
    /* P(score >= t) = share  <=>  t = quantile(1 - share), interpolated between stored quantiles */
    double pos = (1 - share) * (RT_N_QUANTILES - 1);
    size_t i = (size_t)pos;
    if (i >= RT_N_QUANTILES - 1) return r->quantiles[RT_N_QUANTILES - 1];
    double f = pos - (double)i;
    return r->quantiles[i] + f * (r->quantiles[i + 1] - r->quantiles[i]);
}
