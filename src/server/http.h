/* Internals shared by the HTTP layer and the API handlers: the server state, per-request
 * connection state, reply helpers that speak each API's error format, and the streaming glue. */
#ifndef SLM_SERVER_HTTP_H
#define SLM_SERVER_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "server/metrics.h"
#include "server/server.h"
#include "slm.h"
#include "slm_engine.h"
#include "slm_gate.h"
#include "util/buf.h"

typedef enum { SRV_API_PLAIN, SRV_API_OPENAI, SRV_API_OLLAMA } srv_api;

/* One model the engine serves, as the handlers see it. */
typedef struct srv_model {
    int index;              /* in the engine */
    const slm_model *model;
    char id[256];           /* the name clients send as "model" */
    char template_name[64]; /* "" = the model's own template */
    int n_ctx, n_batch, n_seq, n_vocab, n_embd;
    long long created;      /* unix time the model was loaded */
} srv_model;

typedef struct srv_server {
    srv_config cfg;
    slm_engine *engine;     /* owns the models, their contexts and the kernel pool */
    slm_gate *gate;         /* every call goes through it */
    srv_model models[SRV_MAX_MODELS];
    int n_models;
    srv_metrics metrics;
    struct MHD_Daemon *daemon;
    atomic_bool ready;
    atomic_bool draining;
    char bound_host[128];
    int bound_port;
    atomic_ullong id_counter;
    atomic_int live_conns; /* requests whose response is not yet complete */
} srv_server;

/* Per HTTP request (MHD's con_cls). */
typedef struct srv_conn {
    srv_server *srv;
    struct MHD_Connection *mhd;
    const char *method;
    const char *url;
    slm_buf body; /* at most cfg.max_body_bytes */
    bool body_too_large;
    bool replied;
    int status;
    const char *route; /* metrics label */
    const srv_model *model; /* the model the request named (srv_pick_model) */
    slm_gate_call call;     /* this request's way through the gate */
    char client[64];        /* peer address */
    srv_api api;
    double t_start;
    char cors_allow[256]; /* value of Access-Control-Allow-Origin, "" = send none */
} srv_conn;

/* Field-level failure from a parser: HTTP status, the offending field and one line. */
typedef struct srv_fail {
    int status;
    const char *code; /* OpenAI error code or NULL */
    char param[96];
    char msg[384];
} srv_fail;

__attribute__((format(printf, 5, 6))) bool srv_failf(srv_fail *f, int status, const char *code, const char *param,
                                                      const char *fmt, ...);

/* ---------- replies (each returns MHD_YES/MHD_NO for the access handler) ---------- */

enum MHD_Result srv_reply_bytes(srv_conn *c, int status, const char *content_type, const char *body, size_t len);
/* Steals `obj`. */
enum MHD_Result srv_reply_json(srv_conn *c, int status, json_t *obj);
/* The error body of c->api: OpenAI {"error":{message,type,param,code}}, Ollama {"error":msg}. */
enum MHD_Result srv_reply_error(srv_conn *c, int status, const char *code, const char *param, const char *msg);
enum MHD_Result srv_reply_fail(srv_conn *c, const srv_fail *f);
/* The served model a request's "model" field names (absent = the first); NULL after a 404 reply. */
const srv_model *srv_pick_model(srv_conn *c, const char *name);
/* The error for a request that ended other than stop/length: 504 timeout, 503 shutdown, else 500. */
enum MHD_Result srv_reply_finish_error(srv_conn *c, const slm_request *r);

/* ---------- generation plumbing ---------- */

/* Tokenizes text into a malloc'd array; fails (400, naming `field`) if longer than the slot context. */
bool srv_tokenize(const srv_model *m, const char *text, bool add_special, bool parse_special, const char *field,
                  int limit, slm_token **out, int *n_out, srv_fail *f);
/* Renders chat messages with the served template. */
bool srv_render_chat(const srv_model *m, const slm_chat_message *msgs, size_t n, char **out, srv_fail *f);
/* Deadline, then through the gate to a backend: replies itself (503 full or draining, or what a
 * gate stage refused) and returns false when the request was not taken. */
bool srv_submit(srv_conn *c, slm_request *r);
/* A task call through the gate (the local backend runs fn); false with the reply sent when refused. */
bool srv_submit_task(srv_conn *c, slm_call_task_fn fn, void *user);
uint64_t srv_random_seed(srv_server *s);
/* New id like "chatcmpl-<hex>". */
void srv_new_id(srv_server *s, const char *prefix, char *out, size_t cap);

/* The client closed its end of the connection. */
bool srv_conn_gone(srv_conn *c);
/* Blocks until the request is done; false if the client hung up meanwhile (the request is then
 * cancelled and nothing should be sent). */
bool srv_wait_done(srv_conn *c, slm_request *r);

/* A slice of new output handed to a stream formatter (read under r->mu). */
typedef struct srv_delta {
    const char *text;
    size_t text_len;
    const slm_token_info *infos;
    int n_infos;
    bool done; /* r->finish and counts are final */
} srv_delta;

typedef struct srv_stream srv_stream;
/* Appends wire bytes for `d` with srv_stream_write; false on failure (ends the stream). */
typedef bool (*srv_emit_fn)(srv_stream *st, slm_request *r, const srv_delta *d);

struct srv_stream {
    srv_server *srv;
    slm_request *r;
    slm_gate_call call; /* backend and request, to cancel at the right place */
    int fd;
    srv_emit_fn emit;
    void *user; /* formatter state, freed with free() */
    slm_buf out;    /* wire bytes not yet handed to MHD, from out_off on */
    size_t out_off;
    size_t text_seen;
    int infos_seen;
    bool finished, sent_first;
};

bool srv_stream_write(srv_stream *st, const char *bytes, size_t n);
/* Appends text (valid UTF-8) as a JSON string literal, escaped exactly as jansson dumps it, with
 * no allocation: the per-token path of the stream formatters. */
bool srv_stream_write_json_string(srv_stream *st, const char *text, size_t n);
/* Appends json (compact) framed as prefix + json + suffix; steals obj. */
bool srv_stream_write_json(srv_stream *st, const char *prefix, json_t *obj, const char *suffix);
/* Starts a chunked streaming response driven by `emit`; takes ownership of user. */
enum MHD_Result srv_reply_stream(srv_conn *c, slm_request *r, const char *content_type, srv_emit_fn emit, void *user);

/* ---------- JSON field helpers: false + srv_fail naming the field on a type/range error ---------- */

bool srv_json_string(json_t *obj, const char *key, const char **out, srv_fail *f);
bool srv_json_bool(json_t *obj, const char *key, bool *out, srv_fail *f);
bool srv_json_int(json_t *obj, const char *key, long long lo, long long hi, long long *out, bool *present, srv_fail *f);
bool srv_json_number(json_t *obj, const char *key, double lo, double hi, double *out, bool *present, srv_fail *f);
/* Copies a JSON array of token ids into out (room for its size); false if any is not an integer
 * in [0, n_vocab). */
bool srv_json_token_ids(json_t *arr, int n_vocab, slm_token *out);
/* Parses the body as a JSON object; fails 400 with position on a syntax error. */
json_t *srv_parse_body(srv_conn *c, srv_fail *f);

/* ---------- sampling fields ---------- */

/* OpenAI + llama.cpp/vLLM extension fields of a chat or completion request. */
bool srv_parse_openai_sampling(srv_server *s, const srv_model *m, json_t *req, bool chat, slm_gen_params *p, srv_fail *f);
/* Ollama's "options" object plus the top-level "format". */
bool srv_parse_ollama_options(srv_server *s, const srv_model *m, json_t *req, slm_gen_params *p, srv_fail *f);
/* Structured output: response_format / format / grammar. */
bool srv_parse_constraint(const srv_model *m, json_t *req, srv_api api, slm_gen_params *p, srv_fail *f);

/* Chat messages read from a request (OpenAI and Ollama share the shape). */
typedef struct srv_chat_msgs {
    slm_chat_message *msgs;
    char **owned;
    size_t n;
} srv_chat_msgs;
/* "messages": roles system/developer/user/assistant, content a string or text parts; images and
 * tool calls are refused. */
bool srv_parse_messages(json_t *req, srv_chat_msgs *out, srv_fail *f);
void srv_chat_msgs_free(srv_chat_msgs *m);
/* Tokenizes embedding inputs (a string or an array of strings; token arrays too when allow_tokens)
 * into an embed request, each input at most one batch. */
bool srv_build_embed_request(const srv_model *m, json_t *inputs, const char *field, bool allow_tokens, slm_request **out,
                             srv_fail *f);

/* ---------- handlers ---------- */

enum MHD_Result srv_openai_chat(srv_conn *c);
enum MHD_Result srv_openai_completions(srv_conn *c);
enum MHD_Result srv_openai_embeddings(srv_conn *c);
enum MHD_Result srv_openai_models(srv_conn *c, const char *id /* NULL = list */);
enum MHD_Result srv_ollama_chat(srv_conn *c);
enum MHD_Result srv_ollama_generate(srv_conn *c);
enum MHD_Result srv_ollama_embed(srv_conn *c, bool legacy);
enum MHD_Result srv_ollama_tags(srv_conn *c, bool running);
enum MHD_Result srv_ollama_show(srv_conn *c);
enum MHD_Result srv_ollama_version(srv_conn *c);
enum MHD_Result srv_task_classify(srv_conn *c);
enum MHD_Result srv_task_extract(srv_conn *c);
enum MHD_Result srv_task_summarize(srv_conn *c);

extern const char srv_webpage_html[];

struct sockaddr;
/* Starts libmicrohttpd on `addr` (thread per connection). */
struct MHD_Daemon *srv_http_start(srv_server *s, const struct sockaddr *addr, char *err, size_t err_len);

#endif
