/* libFuzzer target for the router's hostile inputs: the RFC 4180 CSV reader (rt_csv_parse), the
 * router file loader (slm_router_load_memory) and the feature extractor behind slm_router_score.
 *
 * Input: CSV bytes. Checks:
 *   - a refusal is one non-empty line and leaves the table empty;
 *   - an accepted table is rectangular, its line numbers rise, and writing it back as RFC 4180
 *     (every field quoted, quotes doubled, CRLF) and parsing again gives the same table;
 *   - every field, as a prompt and as a local answer, scores a finite value in [0, 1] with a router
 *     using every feature group (word/char/shape n-grams, dense, answer arithmetic);
 *   - the same bytes as a router file load or fail with one line (an input starting with the magic
 *     reaches the field checks). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "router/csv.h"
#include "router/router_impl.h"
#include "slm_buf.h"
#include "slm_router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool one_line(const char *err) { return err[0] != 0 && strchr(err, '\n') == NULL; }

static slm_router *all_features_router(void) {
    static slm_router *r;
    if (r) return r;
    r = calloc(1, sizeof *r);
    r->kind = SLM_ROUTER_CASCADE;
    r->features = RT_ALL_FEATURES;
    r->hash_bits = RT_MIN_HASH_BITS;
    r->n_dense = rt_dense_count(r->features);
    r->hashed_scale = 1;
    r->w_hash = calloc((size_t)1 << r->hash_bits, sizeof *r->w_hash);
    for (size_t i = 0; i < ((size_t)1 << r->hash_bits); i++) r->w_hash[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1;
    for (int i = 0; i < r->n_dense; i++) r->dense_std[i] = 1, r->w_dense[i] = (float)(i % 7) - 3;
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512] = "";
    rt_csv t;
    if (rt_csv_parse((const char *)data, size, &t, err, sizeof err) != 0) {
        if (!one_line(err) || t.rows != 0 || t.cell != NULL) abort();
    } else {
        if (t.rows == 0 || t.cols == 0) abort();
        for (size_t r = 1; r < t.rows; r++)
            if (t.line[r] <= t.line[r - 1]) abort();
        slm_buf out = {0};
        for (size_t r = 0; r < t.rows; r++) {
            for (size_t c = 0; c < t.cols; c++) {
                const char *cell = rt_csv_get(&t, r, c);
                slm_buf_puts(&out, c ? ",\"" : "\"");
                for (const char *p = cell; *p; p++) {
                    slm_buf_append(&out, p, 1);
                    if (*p == '"') slm_buf_append(&out, "\"", 1); /* a quote is doubled */
                }
                slm_buf_puts(&out, "\"");
            }
            slm_buf_puts(&out, "\r\n");
        }
        if (out.oom) abort();
        rt_csv back;
        if (rt_csv_parse(out.s, out.len, &back, err, sizeof err) != 0) abort();
        if (back.rows != t.rows || back.cols != t.cols) abort();
        for (size_t i = 0; i < t.rows * t.cols; i++)
            if (strcmp(back.cell[i], t.cell[i]) != 0) abort();
        rt_csv_free(&back);
        slm_buf_free(&out);

        slm_router *r = all_features_router();
        for (size_t i = 0; i < t.rows * t.cols && i < 64; i++) {
            double s1 = slm_router_score(r, t.cell[i], i + 1 < t.rows * t.cols ? t.cell[i + 1] : NULL);
            double s2 = slm_router_score(r, "", t.cell[i]);
            if (!(s1 >= 0 && s1 <= 1) || !(s2 >= 0 && s2 <= 1)) abort();
        }
        rt_csv_free(&t);
    }
    err[0] = 0;
    slm_router *loaded = slm_router_load_memory(data, size, err, sizeof err);
    if (!loaded && !one_line(err)) abort();
    if (loaded) {
        double s = slm_router_score(loaded, "What is 2+2?", "<<2+2=4>>4\n#### 4");
        if (!(s >= 0 && s <= 1)) abort();
        slm_router_free(loaded);
    }
    return 0;
}
