/* From a parsed request to a gate call: the model it names, tokens, submission through the gate. */
#ifndef SLM_SERVER_CALLS_H
#define SLM_SERVER_CALLS_H

#include <stdbool.h>
#include <stdint.h>

#include "fields.h"
#include "state.h"

/* The served model a request's "model" field names (absent = the first); NULL after a 404 reply. */
const srv_model *srv_pick_model(srv_conn *c, const char *name);
/* srv_pick_model for generation and tasks: an embedding-only model is a 400 (NULL, replied). */
const srv_model *srv_pick_generative(srv_conn *c, const char *name);
/* Tokenizes text into a malloc'd array; fails (400, naming `field`) if longer than the slot context. */
bool srv_tokenize(const srv_model *m, const char *text, bool add_special, bool parse_special, const char *field,
                  int limit, slm_token **out, int *n_out, srv_fail *f);
/* Renders chat messages with the served template and tokenizes them: only the template's own
 * markers become control tokens, message contents stay text (a user cannot forge a turn). Fails
 * (400, naming `field`) past `limit` tokens. */
bool srv_chat_tokenize(const srv_model *m, const slm_chat_message *msgs, size_t n, bool add_special, const char *field,
                       int limit, slm_token **out, int *n_out, srv_fail *f);
/* Deadline, then through the gate to a backend: replies itself (503 full or draining, or what a
 * gate stage refused) and returns false when the request was not taken. */
bool srv_submit(srv_conn *c, slm_request *r);
/* A task call through the gate (the local backend runs fn); false with the reply sent when refused. */
bool srv_submit_task(srv_conn *c, slm_call_task_fn fn, void *user);
/* Runs the gate's input policy on a generation's texts before they are tokenized (chat: msgs, which
 * a stage may rewrite in place, e.g. masking personal data; completion: prompt, then read
 * c->call.prompt). Replies itself and returns false when policy refuses the call. */
bool srv_inspect(srv_conn *c, slm_chat_message *msgs, size_t n, const char *prompt, bool stream);
/* The handler's texts are about to be freed: the call stops pointing at them (the gate's stages
 * copied what they keep). */
void srv_forget_texts(srv_conn *c);
/* Embedding inputs (a string, or an array of strings and token-id lists) through the gate's input
 * stage: *out is the inputs to embed — the same, or with personal data masked per the policy (a
 * new reference either way; json_decref it). false: refused (blocked), the reply is sent. */
bool srv_inspect_inputs(srv_conn *c, json_t *inputs, json_t **out);
/* The most prompt tokens a generation may have: the local slot's context less one, or, when the
 * request named a route with an upstream, far more (a prompt too long for the local model is the
 * route's to send upstream). */
int srv_prompt_limit(const srv_conn *c, const srv_model *M);
/* After tokenizing: marks the call when its prompt only fits an upstream. */
void srv_mark_prompt(srv_conn *c, const srv_model *M, int n_prompt);
/* The generated text of r as the client may see it (through the call's output filter); malloc'd,
 * *len set; NULL when out of memory. Call with r done. */
char *srv_final_text(srv_conn *c, slm_request *r, size_t *len);
/* Token counts of a finished (or finishing) request, as the API reports them: a remote backend's own
 * usage when it sent one, else the tokens generated here, else the reply text tokenized with the
 * local model. Call with r->mu held. */
void srv_usage(const srv_server *s, const slm_request *r, int *prompt_tokens, int *completion_tokens);
/* ---------- n choices (OpenAI's "n"): requests generated together ---------- */
#define SRV_MAX_CHOICES 16
/* Submits rs[0] through the gate (srv_submit) and rs[1..n) right after it to the same backend, which
 * must be the local engine (they batch in the same forward passes). Returns a request that stands
 * for all of them (the caller owns one reference; it is also the call's request, so the record
 * counts every choice): it is never run itself, it gains a token whenever any choice made progress
 * (streams wake on it), and it finishes when all have, with the prompt once and the completion
 * tokens summed, the texts of the choices one after the other, and the first failure's finish if
 * one failed. Cancelling it cancels them all. NULL when refused, with the reply sent. */
slm_request *srv_submit_choices(srv_conn *c, slm_request **rs, int n);
/* In the joined request's text the choices are separated by this byte (one of a choice's own
 * becomes U+FFFD there): the call's output filter, which reads one text once, reads them all
 * together, and srv_split_choices cuts its output back into the n choices. */
#define SRV_CHOICE_SEPARATOR '\x1e'
/* Cuts text at SRV_CHOICE_SEPARATOR into at most n pieces (starts, lens); returns how many. */
int srv_split_choices(const char *text, size_t len, int n, const char **starts, size_t *lens);
/* An embeddings call from its inputs to the finished request, as both APIs run it: the personal-data
 * stage on the inputs, the request built (srv_build_embed_request), submitted and waited for. true
 * with *out finished; false with f set (reply it), or with f->status 0 and *ret the reply already
 * sent (refused, client gone, the request failed). */
bool srv_embed_run(srv_conn *c, const srv_model *M, json_t *input, const char *field, bool allow_tokens,
                   slm_request **out, srv_fail *f, enum MHD_Result *ret);
uint64_t srv_random_seed(srv_server *s);
/* New id like "chatcmpl-<hex>". */
void srv_new_id(srv_server *s, const char *prefix, char *out, size_t cap);

#endif
