#include "tensor/types.h"

#include <stdio.h>

static const slm_type_info type_table[SLM_TYPE_COUNT] = {
    [SLM_TYPE_F32] = {"f32", 1, 4, true},
    [SLM_TYPE_F16] = {"f16", 1, 2, true},
    [SLM_TYPE_BF16] = {"bf16", 1, 2, true},
    [SLM_TYPE_Q4_0] = {"q4_0", 32, 18, true},
    [SLM_TYPE_Q4_1] = {"q4_1", 32, 20, true},
    [SLM_TYPE_Q5_0] = {"q5_0", 32, 22, true},
    [SLM_TYPE_Q5_1] = {"q5_1", 32, 24, true},
    [SLM_TYPE_Q8_0] = {"q8_0", 32, 34, true},
    [SLM_TYPE_Q8_1] = {"q8_1", 32, 36, false},
    [SLM_TYPE_Q2_K] = {"q2_K", 256, 84, true},
    [SLM_TYPE_Q3_K] = {"q3_K", 256, 110, true},
    [SLM_TYPE_Q4_K] = {"q4_K", 256, 144, true},
    [SLM_TYPE_Q5_K] = {"q5_K", 256, 176, true},
    [SLM_TYPE_Q6_K] = {"q6_K", 256, 210, true},
    [SLM_TYPE_Q8_K] = {"q8_K", 256, 292, false},
    [SLM_TYPE_IQ4_NL] = {"iq4_nl", 32, 18, true},
};

const slm_type_info *slm_type_info_get(uint32_t type) {
    if (type >= SLM_TYPE_COUNT || type_table[type].name == NULL) return NULL;
    return &type_table[type];
}

const char *slm_type_name(uint32_t type) {
    const slm_type_info *ti = slm_type_info_get(type);
    return ti ? ti->name : "unknown";
}

size_t slm_row_bytes(uint32_t type, int64_t n) {
    const slm_type_info *ti = slm_type_info_get(type);
    if (!ti || n < 0 || n % ti->block_size != 0) return 0;
    return (size_t)(n / ti->block_size) * (size_t)ti->type_size;
}
