/* Server counters rendered as Prometheus text. Updated by HTTP handlers and the scheduler; one
 * mutex, touched a few times per request and once per forward pass, never per byte. */
#ifndef SLM_SERVER_METRICS_H
#define SLM_SERVER_METRICS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm_engine.h"

enum { SRV_TTFT_BUCKETS = 10, SRV_RATE_WINDOW = 10 };

typedef struct srv_metrics {
    pthread_mutex_t mu;
    /* requests_total by route and status: a small table filled on first use */
    struct {
        char route[32];
        int status;
        uint64_t count;
    } requests[64];
    int n_requests;
    uint64_t prompt_tokens, prompt_tokens_cached, generated_tokens, embedded_tokens;
    uint64_t rejected_overload;
    double ttft_sum;
    uint64_t ttft_count;
    uint64_t ttft_buckets[SRV_TTFT_BUCKETS];
    /* tokens processed per whole second, last SRV_RATE_WINDOW seconds, for the tok/s gauges */
    int64_t rate_second[SRV_RATE_WINDOW];
    uint64_t rate_prompt[SRV_RATE_WINDOW], rate_gen[SRV_RATE_WINDOW];
    uint64_t forward_passes;
    /* the hybrid router: calls per route, tokens and spend, and the frontier counterfactual */
    uint64_t route_calls[2], route_prompt_tokens[2], route_completion_tokens[2]; /* [0] local, [1] upstream */
    double cost_usd, frontier_cost_usd;
} srv_metrics;

void srv_metrics_init(srv_metrics *m);
void srv_metrics_destroy(srv_metrics *m);
void srv_metrics_request(srv_metrics *m, const char *route, int status);
void srv_metrics_overload(srv_metrics *m);
/* A call that reached a backend: where it ran, its tokens, what it cost and would have cost. */
void srv_metrics_call(srv_metrics *m, bool upstream, int prompt_tokens, int completion_tokens, double cost,
                      double frontier_cost);
/* One forward pass: prompt tokens fed (cached ones are counted at admission), tokens generated. */
void srv_metrics_forward(srv_metrics *m, int n_prompt, int n_gen, int n_embed);
void srv_metrics_prompt_cached(srv_metrics *m, int n_cached);
void srv_metrics_ttft(srv_metrics *m, double seconds);
/* The engine hooks that feed these counters (forward passes, cached prompt tokens, first tokens). */
slm_engine_observer srv_metrics_observer(srv_metrics *m);
/* Appends the exposition text to a malloc'd buffer; gauges passed in by the caller. */
char *srv_metrics_render(srv_metrics *m, int queue_depth, int slots_busy, int slots_total, int n_ctx_slot);

#endif
