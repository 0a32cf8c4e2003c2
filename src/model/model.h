/* Model internals shared with other layers of the library (not part of the public API). */
#ifndef SLM_MODEL_H
#define SLM_MODEL_H

#include "gguf/gguf.h"
#include "slm.h"
#include "tokenizer/vocab.h"

const gguf_file *slm_model_gguf(const slm_model *model);

#endif
