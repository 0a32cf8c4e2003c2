/* LoRA adapters served beside the models (api_lora.c): the adapters `slm serve --lora` loads (ids
 * 0..N-1), those loaded and unloaded over HTTP, their default scales, and which of them each
 * request applies (llama-server's "lora": [{"id", "scale"}], vLLM's model "base:adapter"). */
#ifndef SLM_SERVER_API_LORA_H
#define SLM_SERVER_API_LORA_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>

#include "fields.h"
#include "slm_models.h"
#include "state.h"

/* At most this many adapters are loaded at once (ids are never reused). */
#define SRV_LORA_MAX 64

/* `slm serve --lora FILE[:SCALE]`: remembered before the server starts; loaded for the first
 * generative model when the models are (srv_lora_startup). 0, or -1 with err when the list is full. */
int srv_lora_preload(const char *path, float scale, char *err, size_t err_len);
/* Loads the --lora adapters right after the models (run.c, before the server is ready); a file that does not load ends the process
 * with one error line (it is a start-up argument). Cheap after the first call. */
void srv_lora_startup(srv_server *s);
/* Frees every adapter (after the engine, at shutdown). */
void srv_lora_shutdown(void);

/* Per request, on the handler's thread: srv_pick_model starts afresh (srv_lora_forget), resolves a
 * model name naming an adapter (returns the model index, -1 when the name is no adapter, -2 after
 * replying 400 for an unknown adapter of a served model); the sampling parser reads "lora"; and
 * srv_submit attaches the adapters to the request (false after replying when one is gone). */
void srv_lora_forget(void);
int srv_lora_pick_name(srv_conn *c, const char *name);
bool srv_lora_parse(srv_conn *c, const srv_model *m, json_t *lora, srv_fail *f);
bool srv_lora_attach(srv_conn *c, slm_request *r);

/* GET|POST /lora-adapters (llama-server: list, global scales), GET|POST /v1/lora/adapters (list,
 * hot load {"name","path"}), DELETE /v1/lora/adapters/{name} (unload); changes need an admin. */
enum MHD_Result srv_lora_dispatch(srv_conn *c);

/* /v1/models: each loaded adapter as "base:adapter" (the name a request may send), with its base as
 * "parent" (vLLM's listing of LoRA modules). */
void srv_lora_append_models(srv_server *s, json_t *data);

/* Ollama's /api/create "adapters" ({"file.gguf": "sha256:…"}, uploaded blobs): parsed into out
 * (out->n = 0 when absent); false with f set. srv_lora_store_create then names digest's blob as
 * name with those adapters (slm_models_create), or without any as slm_models_tag_blob_extras. A
 * request for that name applies them (srv_lora_attach). */
bool srv_lora_parse_create(const char *dir, json_t *adapters, slm_model_adapters *out, srv_fail *f);
int srv_lora_store_create(const char *dir, const char *digest, const char *name, const slm_model_extras *x,
                          const slm_model_adapters *ad, slm_model_entry *e, char *err, size_t err_len);

#endif
