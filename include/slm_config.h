/* slm config — the server's YAML file (`slm serve --config slm.yaml`, docs/config.md).
 *
 *   server:    { host, port, data_dir, air_gapped, audit_content, audit_sign, pii, pii_output, api_keys }
 *   models:    NAME: { path, price: { input, output } }          USD per 1M tokens
 *   upstreams: NAME: { url, model, key_env, price, timeout, max_retries, ca_file }
 *   routes:    NAME: { local, upstream, router, frontier_share, pii, on_upstream_error,
 *                      cascade: { threshold } }
 *
 * Every key is checked: an unknown key, a wrong type, a route naming a model or upstream that is
 * not defined, or an out-of-range number is refused with the file, line and column. */
#ifndef SLM_CONFIG_H
#define SLM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLM_CONFIG_MAX 16

typedef struct slm_config_price {
    double input, output; /* USD per 1M tokens */
} slm_config_price;

typedef struct slm_config_model {
    char *name;
    char *path;
    slm_config_price price;
} slm_config_model;

typedef struct slm_config_upstream {
    char *name;
    char *url;       /* OpenAI-compatible base URL, including /v1 */
    char *model;     /* the upstream's model name */
    char *key_env;   /* environment variable holding its API key (never the key itself) */
    char *ca_file;
    slm_config_price price;
    double timeout_s;
    int max_retries; /* -1 = the default */
} slm_config_upstream;

typedef enum { SLM_ROUTE_PII_LOCAL, SLM_ROUTE_PII_MASK, SLM_ROUTE_PII_BLOCK } slm_route_pii;

typedef struct slm_config_route {
    char *name;            /* what clients send as "model" */
    char *local;           /* a models: name */
    char *upstream;        /* an upstreams: name */
    char *router;          /* "default", or a router file */
    double frontier_share; /* share of requests the threshold is calibrated to send upstream */
    slm_route_pii pii;     /* personal data found: stay local, mask before sending, or refuse */
    bool fallback_local;   /* on_upstream_error: local (else error) */
    bool cascade;          /* answer locally first, escalate below the confidence threshold */
    double cascade_threshold; /* -1: the threshold the router calibrated for frontier_share */
} slm_config_route;

typedef struct slm_config {
    /* server: NULL / -1 = not set (flags and defaults apply) */
    char *host;
    int port;
    char *data_dir;
    int air_gapped;        /* -1 unset, 0, 1 */
    char *audit_content;
    int audit_sign;
    char *pii;
    int pii_output;
    char *api_keys_env;    /* environment variable with comma-separated static keys */
    slm_config_model models[SLM_CONFIG_MAX];
    int n_models;
    slm_config_upstream upstreams[SLM_CONFIG_MAX];
    int n_upstreams;
    slm_config_route routes[SLM_CONFIG_MAX];
    int n_routes;
} slm_config;

/* Parses YAML text (name is used in errors); 0, or -1 with "NAME:LINE:COL: what is wrong". */
int slm_config_parse(const char *text, size_t len, const char *name, slm_config **out, char *err, size_t err_len);
/* Reads and parses a file (at most 1 MiB). Relative model paths are taken from the file's folder. */
int slm_config_load(const char *path, slm_config **out, char *err, size_t err_len);
void slm_config_free(slm_config *c);

#ifdef __cplusplus
}
#endif
#endif
