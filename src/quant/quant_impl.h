/* Internals of the quantization layer: the per-tensor type plan and the row quantizers. */
#ifndef SLM_QUANT_IMPL_H
#define SLM_QUANT_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf/gguf.h"

/* What the type rules need to know about the model (llama.cpp's hparams). */
typedef struct quant_model_info {
    char arch[64];
    int n_layer;
    int n_head, n_head_kv;
    int n_expert;
    bool is_falcon, is_70b;
} quant_model_info;

enum quant_category {
    QCAT_OTHER, QCAT_OUTPUT, QCAT_TOKEN_EMBD, QCAT_ATTN_QKV, QCAT_ATTN_KV_B, QCAT_ATTN_V, QCAT_ATTN_K,
    QCAT_ATTN_Q, QCAT_ATTN_OUTPUT, QCAT_FFN_UP, QCAT_FFN_GATE, QCAT_FFN_DOWN
};

/* One tensor of the plan, in output order. */
typedef struct quant_tensor {
    const gguf_tensor *src;
    char name[1040];
    int layer; /* from "blk.N." or -1 */
    enum quant_category category;
    bool allows_quantization;
    uint32_t new_type;
    bool fell_back; /* the chosen k-quant did not fit the row length */
} quant_tensor;

/* Reads the hyper-parameters the rules use. 0 or -1 with err. */
int quant_model_info_read(const gguf_file *f, quant_model_info *info, char *err, size_t err_len);
/* Orders the tensors as llama-quantize writes them and picks each one's type. has_imatrix changes a
 * few choices, as in llama-quantize. Returns the array (free()) or NULL with err. */
quant_tensor *quant_plan(const gguf_file *f, const quant_model_info *info, int ftype, bool has_imatrix, int64_t *n_out,
                         char *err, size_t err_len);

/* Quantizes n_rows rows of n_per_row values to `type`; importance (n_per_row weights, or NULL) steers
 * the types that take it, exactly like ggml's quantize_* functions. 0, or -1 for an unsupported type. */
int quant_rows(uint32_t type, const float *src, void *dst, int64_t n_rows, int64_t n_per_row, const float *importance);
/* True for the types quant_rows weighs by an importance matrix. */
bool quant_type_uses_importance(uint32_t type);

#endif
