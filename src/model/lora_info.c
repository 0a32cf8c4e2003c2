/* `slm show` of a LoRA adapter: what it is for and what it changes, read from its GGUF alone (an
 * adapter has no vocabulary, so the model loader refuses it). */
#include <stdio.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tensor/types.h"
#include "slm.h"
#include "util/err.h"

int slm_lora_print_info(const char *path, void *fp_out, char *err, size_t err_len) {
    FILE *fp = fp_out;
    gguf_file *f;
    if (gguf_open(path, &f, err, err_len)) return -1;
    gguf_str type, at, arch;
    int rc = 0;
    if (gguf_get_str(f, "general.type", &type, NULL, 0) != 0 || !gguf_str_eq(type, "adapter") ||
        gguf_get_str(f, "adapter.type", &at, NULL, 0) != 0 || !gguf_str_eq(at, "lora")) {
        rc = slm_err(err, err_len, "%s: not a LoRA adapter (general.type \"adapter\", adapter.type \"lora\")", path);
        goto out;
    }
    if (gguf_get_str(f, "general.architecture", &arch, NULL, 0) != 0) arch = (gguf_str){"?", 1};
    float alpha = 0;
    bool has_alpha = gguf_get_f32(f, "adapter.lora.alpha", &alpha, NULL, 0) == 0;
    int64_t n = gguf_n_tensors(f);
    int64_t rank_min = 0, rank_max = 0, pairs = 0, params = 0;
    for (int64_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        int64_t elems = 1;
        for (int d = 0; d < t->n_dims; d++) elems *= t->ne[d];
        params += elems;
        static const char suffix[] = ".lora_a";
        if (t->name.len > sizeof suffix - 1 &&
            memcmp(t->name.ptr + t->name.len - (sizeof suffix - 1), suffix, sizeof suffix - 1) == 0) {
            int64_t rank = t->ne[1]; /* lora_a is [n_in, rank] */
            rank_min = pairs == 0 || rank < rank_min ? rank : rank_min;
            rank_max = rank > rank_max ? rank : rank_max;
            pairs++;
        }
    }
    fprintf(fp, "LoRA adapter for %.*s models\n", (int)arch.len, arch.ptr);
    if (has_alpha) fprintf(fp, "  alpha           %g\n", (double)alpha);
    else fprintf(fp, "  alpha           (none: the scale applies as given)\n");
    if (rank_min == rank_max) fprintf(fp, "  rank            %lld\n", (long long)rank_max);
    else fprintf(fp, "  rank            %lld to %lld\n", (long long)rank_min, (long long)rank_max);
    fprintf(fp, "  adapted weights %lld\n  parameters      %lld\n\n", (long long)pairs, (long long)params);
    fprintf(fp, "  %-40s %-6s %s\n", "tensor", "type", "shape");
    for (int64_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        fprintf(fp, "  %-40.*s %-6s", (int)t->name.len, t->name.ptr, slm_type_name(t->type));
        for (int d = 0; d < t->n_dims; d++) fprintf(fp, "%s%lld", d ? " x " : " ", (long long)t->ne[d]);
        fputc('\n', fp);
    }
out:
    gguf_close(f);
    return rc;
}
