/* Ollama's /api/create with "quantize": the F16/BF16/F32 source blob quantized into a new blob. */
#ifndef SLM_SERVER_OLLAMA_CREATE_QUANTIZE_H
#define SLM_SERVER_OLLAMA_CREATE_QUANTIZE_H

#include <stdbool.h>

#include "handlers.h"
#include "slm_models.h"

/* Quantizes the blob `digest` of the store in `dir` to `type` (llama-quantize's names, any case) and
 * names the result `name` with the extras *x (taken over, freed here). What cannot work (an unknown
 * type, a source already quantized, a tensor no type fits) is a 400 before anything starts; then
 * Ollama's NDJSON progress ("quantizing F16 model to Q4_K_M" with total/completed, "verifying
 * conversion", "creating new layer sha256:…", "writing manifest", "success"), or with stream false
 * one {"status":"success"}. The quantization runs on a worker thread; a client that leaves stops it. */
enum MHD_Result srv_ollama_create_quantize(srv_conn *c, const char *dir, const char *name, const char *digest,
                                           const char *type, slm_model_extras *x, bool stream);

#endif
