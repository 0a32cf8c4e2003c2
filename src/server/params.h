/* Generation fields shared by the wire formats: sampling, stop strings, constraints. */
#ifndef SLM_SERVER_PARAMS_H
#define SLM_SERVER_PARAMS_H

#include <jansson.h>
#include <stdbool.h>

#include "fields.h"
#include "state.h"

/* ---------- sampling fields ---------- */

/* OpenAI + llama.cpp/vLLM extension fields of a chat or completion request. */
bool srv_parse_openai_sampling(srv_conn *c, const srv_model *m, json_t *req, bool chat, slm_gen_params *p, srv_fail *f);
/* OpenAI's "n": choices generated together, from 1 to the model's sequence slots (at most
 * SRV_MAX_CHOICES); beyond, a 400 naming n. */
bool srv_parse_choices(const srv_model *m, json_t *req, int *n, srv_fail *f);
/* Ollama's "options" object plus the top-level "format". */
bool srv_parse_ollama_options(srv_conn *c, const srv_model *m, json_t *req, slm_gen_params *p, srv_fail *f);
/* Structured output: response_format / format / grammar. */
bool srv_parse_constraint(srv_conn *c, const srv_model *m, json_t *req, srv_api api, slm_gen_params *p, srv_fail *f);

#endif
