/* libFuzzer target for the importance-matrix reader (GGUF and legacy .dat formats): parse the
 * input, then read every value of every entry and look each one up by name, so a bounds or count
 * mistake shows up as an ASan report here rather than in a quantize run. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "slm_quant.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile float sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    slm_imatrix *im = NULL;
    if (slm_imatrix_parse(data, size, "fuzz", &im, err, sizeof err) != 0) {
        /* a refusal must say why */
        if (err[0] == 0) __builtin_trap();
        return 0;
    }
    float acc = 0;
    for (int64_t i = 0; i < im->n_entries; i++) {
        const slm_imatrix_entry *e = &im->entries[i];
        if (e->n < 1 || !e->name) __builtin_trap();
        for (int64_t j = 0; j < e->n; j++) {
            if (!isfinite(e->values[j])) __builtin_trap(); /* the reader refuses non-finite values */
            acc += e->values[j];
        }
        if (slm_imatrix_find(im, e->name) != e) __builtin_trap(); /* names are unique */
    }
    if (im->dataset) acc += (float)strlen(im->dataset);
    sink = acc;
    slm_imatrix_free(im);
    return 0;
}
