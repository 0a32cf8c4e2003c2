/* `slm serve`: the HTTP server's entry point, called by the CLI with parsed flags. */
#ifndef SLM_SERVER_H
#define SLM_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#define SRV_MAX_API_KEYS 64
#define SRV_MAX_MODELS 8

typedef struct srv_config {
    const char *model_paths[SRV_MAX_MODELS]; /* --model, repeatable: one engine serves them all */
    int n_models;
    const char *alias;         /* id of the first model; NULL = file name without .gguf */
    const char *model_names[SRV_MAX_MODELS]; /* ids from the config file (NULL = as above) */
    const struct slm_config *file; /* --config: upstreams, routes and prices (borrowed) */
    const char *chat_template; /* NULL = the model's own (chatml if it has none) */
    const char *host;          /* default 127.0.0.1 */
    int port;                  /* default 8080; 0 = any free port */
    int parallel;              /* slots */
    int ctx_size;              /* positions per slot; 0 = min(n_ctx_train, 4096) */
    int batch_size;            /* tokens per forward pass */
    int threads;               /* 0 = all CPUs */
    const char *api_keys[SRV_MAX_API_KEYS];
    int n_api_keys;
    bool insecure_no_auth;
    const char *cors_origin;   /* NULL = no CORS headers at all */
    size_t max_body_bytes;
    size_t max_header_bytes;
    size_t max_body_total;     /* request bodies held in memory, all connections together (503 over it) */
    int header_timeout_s;      /* absolute: a request's headers must be in this long after it starts */
    int body_timeout_s;        /* absolute: its body must be in this long after the headers */
    size_t stream_buffer_bytes; /* output a streaming client may leave unread before it is dropped */
    int reserve_connections;   /* connection slots kept free of slow clients (shed oldest first) */
    int request_timeout_s;     /* whole request, queueing included */
    int idle_timeout_s;        /* idle connection */
    int queue_size;            /* requests waiting for a slot before 503 */
    int max_connections;
    int drain_timeout_s;       /* SIGTERM: how long in-flight requests may take to finish */
    bool log_requests;
    const char *port_file;     /* if set, the bound port is written here once listening (tests) */
    /* governance (slm_govern.h) */
    const char *data_dir;      /* NULL = the default (slm_data_dir_default) */
    bool no_data_dir;          /* stateless: no stored keys, ledger or audit log */
    bool no_audit;
    bool audit_sign;
    int audit_content;         /* slm_audit_content */
    int pii_policy;            /* slm_pii_policy for keys without their own */
    bool pii_output;           /* mask personal data found in generated text */
    bool air_gapped;           /* no outbound connection whatsoever */
    struct {
        const char *model;         /* a served model's id */
        double input, output;      /* USD per 1M tokens */
    } prices[SRV_MAX_MODELS];
    int n_prices;
    /* models on demand (the data directory's store) */
    unsigned long long max_memory; /* bytes every resident model may hold together; 0 = no bound */
    double keep_alive_s;       /* how long an on-demand model stays after its last request; < 0 = for ever */
    double load_wait_s;        /* how long a request waits for models in use to free the room */
} srv_config;

/* A duration as Go and Ollama write them ("300ms", "30s", "5m", "1h30m"; a bare number is seconds;
 * negative = for ever, returned as -1) into seconds; false when it is not one. */
bool srv_parse_duration(const char *text, double *seconds);
/* Fills safe defaults. */
void srv_config_defaults(srv_config *c);
/* Loads the model, listens, serves until SIGTERM/SIGINT, drains; returns the process exit status.
 * Errors are printed as one line to stderr. */
int srv_run(const srv_config *c);

#endif
