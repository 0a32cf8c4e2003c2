/* The server's shared state: the served models, the server, one HTTP request (connection state). */
#ifndef SLM_SERVER_STATE_H
#define SLM_SERVER_STATE_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"
#include "server.h"
#include "slm.h"
#include "slm_engine.h"
#include "slm_gate.h"
#include "slm_buf.h"

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

#endif
