/* The server's shared state: the served models, the server, one HTTP request (connection state). */
#ifndef SLM_SERVER_STATE_H
#define SLM_SERVER_STATE_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"
#include "server.h"
#include "slm.h"
#include "slm_engine.h"
#include "slm_gate.h"
#include "slm_store.h"
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
    char *system;           /* the store model's system prompt (Ollama's SYSTEM), NULL = none */
    json_t *params;         /* its default options (Ollama's PARAMETER lines as JSON), NULL = none */
} srv_model;

typedef struct srv_server {
    srv_config cfg;
    slm_engine *engine;     /* owns the models, their contexts and the kernel pool */
    slm_gate *gate;         /* every call goes through it */
    slm_store *store;       /* the data directory's state store (keys, ledger); NULL without one */
    struct slm_audit *audit; /* the audit log; NULL when off */
    struct slm_pii *pii;    /* the PII detector; NULL when the guard is off */
    struct srv_rag *rag;    /* the retrieval store (rag_chat.h); NULL without a data directory */
    struct slm_upstream *upstreams[SRV_MAX_MODELS]; /* the config's upstream APIs, gate backends 1.. */
    int n_upstreams;
    struct slm_router *routers[SRV_MAX_MODELS];     /* the routes' learned routers */
    int n_routers;
    struct slm_cascade *cascades[SRV_MAX_MODELS];   /* the routes' cascade backends */
    int n_cascades;
    struct slm_route_table *routes; /* names clients may send besides the models: routes, upstreams */
    srv_model models[SLM_ENGINE_MAX_MODELS]; /* by engine index: the --model ones first, then those loaded on demand */
    int n_models;                            /* the --model ones (pinned) */
    pthread_mutex_t models_mu;               /* refreshing an entry for a model loaded on demand */
    srv_metrics metrics;
    struct MHD_Daemon *daemon;
    atomic_bool ready;
    atomic_bool draining;
    char bound_host[128];
    int bound_port;
    atomic_ullong id_counter;
    atomic_int live_conns; /* requests whose response is not yet complete */
    /* Connections (transport.c): every open socket with its absolute deadline, the streams with
     * their buffered output, and the bytes of request bodies held in memory. */
    pthread_mutex_t socks_mu;
    struct srv_sock *socks;   /* open connections, oldest first */
    int n_socks;
    struct srv_stream *streams; /* streamed responses in flight */
    pthread_t watchdog;
    bool watchdog_running;
    atomic_bool stopping;
    atomic_size_t body_bytes; /* request bodies held, all connections (at most cfg.max_body_total) */
    atomic_ullong n_shed;     /* connections cut: header/body deadline, shed for the reserve, stalled readers */
} srv_server;

/* Where a connection is in its life, for the watchdog (transport.c). */
typedef enum {
    SRV_SOCK_HEADERS, /* waiting for (the rest of) a request's headers, or idle between requests */
    SRV_SOCK_BODY,    /* headers in, reading the body */
    SRV_SOCK_BUSY,    /* request being answered: never shed */
} srv_sock_phase;

/* One TCP connection (MHD's socket_context); lives from accept to close. */
typedef struct srv_sock {
    struct srv_sock *prev, *next;
    struct MHD_Connection *mhd;
    int fd;
    srv_sock_phase phase;
    double deadline; /* slm_now() time the phase must be over by; 0 = none */
    bool cut;        /* shut down by the watchdog or to keep the reserve */
} srv_sock;

/* Per HTTP request (MHD's con_cls). */
typedef struct srv_conn {
    srv_server *srv;
    struct MHD_Connection *mhd;
    const char *method;
    const char *url;
    slm_buf body; /* at most cfg.max_body_bytes */
    size_t body_reserved; /* bytes of srv_server.body_bytes this request holds */
    bool body_too_large;
    bool body_over_budget; /* the server-wide body budget was full */
    size_t discarded;      /* body bytes dropped after an early answer or past a limit */
    bool close_after;      /* the reply carries Connection: close */
    srv_sock *sock;        /* its connection (NULL in the fuzz target) */
    bool replied;
    int status;
    const char *route; /* metrics label */
    const srv_model *model; /* the model the request named (srv_pick_model) */
    bool holds_model;       /* it holds engine model held_model (srv_pick_model) until it completes */
    int held_model;
    double keep_alive;      /* Ollama's keep_alive for the model it loads (seconds; < 0 = for ever) */
    const char *target; /* the route or upstream the request named (its "model"), NULL = a local model */
    slm_gate_call call;     /* this request's way through the gate */
    char client[64];        /* peer address */
    srv_api api;
    double t_start;
    char cors_allow[256]; /* value of Access-Control-Allow-Origin, "" = send none */
} srv_conn;

#endif
