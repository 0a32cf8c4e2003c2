#include "metrics.h"
#include "slm_buf.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const double ttft_bounds[SRV_TTFT_BUCKETS] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

void srv_metrics_init(srv_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void srv_metrics_destroy(srv_metrics *m) { pthread_mutex_destroy(&m->mu); }

void srv_metrics_request(srv_metrics *m, const char *route, int status) {
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_requests && !(m->requests[i].status == status && strcmp(m->requests[i].route, route) == 0)) i++;
    if (i == m->n_requests && i < (int)(sizeof m->requests / sizeof m->requests[0])) {
        snprintf(m->requests[i].route, sizeof m->requests[i].route, "%s", route);
        m->requests[i].status = status;
        m->requests[i].count = 0;
        m->n_requests++;
    }
    if (i < m->n_requests) m->requests[i].count++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_overload(srv_metrics *m) {
    pthread_mutex_lock(&m->mu);
    m->rejected_overload++;
    pthread_mutex_unlock(&m->mu);
}

static int64_t now_second(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

/* The bucket for `sec`, cleared if it last held an older second. */
static int rate_bucket(srv_metrics *m, int64_t sec) {
    int b = (int)(sec % SRV_RATE_WINDOW);
    if (m->rate_second[b] != sec) {
        m->rate_second[b] = sec;
        m->rate_prompt[b] = m->rate_gen[b] = 0;
    }
    return b;
}

void srv_metrics_forward(srv_metrics *m, int n_prompt, int n_gen, int n_embed) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += (uint64_t)n_prompt;
    m->generated_tokens += (uint64_t)n_gen;
    m->embedded_tokens += (uint64_t)n_embed;
    m->forward_passes++;
    int b = rate_bucket(m, now_second());
    m->rate_prompt[b] += (uint64_t)(n_prompt + n_embed);
    m->rate_gen[b] += (uint64_t)n_gen;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_prompt_cached(srv_metrics *m, int n_cached) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens_cached += (uint64_t)n_cached;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_ttft(srv_metrics *m, double seconds) {
    pthread_mutex_lock(&m->mu);
    m->ttft_sum += seconds;
    m->ttft_count++;
    for (int i = 0; i < SRV_TTFT_BUCKETS; i++)
        if (seconds <= ttft_bounds[i]) m->ttft_buckets[i]++;
    pthread_mutex_unlock(&m->mu);
}

void srv_metrics_call(srv_metrics *m, bool upstream, int prompt_tokens, int completion_tokens, double cost,
                      double frontier_cost) {
    pthread_mutex_lock(&m->mu);
    m->route_calls[upstream]++;
    m->route_prompt_tokens[upstream] += (uint64_t)(prompt_tokens > 0 ? prompt_tokens : 0);
    m->route_completion_tokens[upstream] += (uint64_t)(completion_tokens > 0 ? completion_tokens : 0);
    m->cost_usd += cost;
    m->frontier_cost_usd += frontier_cost;
    pthread_mutex_unlock(&m->mu);
}

char *srv_metrics_render(srv_metrics *m, int queue_depth, int slots_busy, int slots_total, int n_ctx_slot) {
    slm_buf sb = {0};
    pthread_mutex_lock(&m->mu);
    slm_buf_printf(&sb, "# HELP slm_requests_total HTTP requests by route and status.\n# TYPE slm_requests_total counter\n");
    for (int i = 0; i < m->n_requests; i++)
        slm_buf_printf(&sb, "slm_requests_total{route=\"%s\",code=\"%d\"} %llu\n", m->requests[i].route,
                  m->requests[i].status, (unsigned long long)m->requests[i].count);
    slm_buf_printf(&sb,
              "# HELP slm_rejected_overload_total Requests refused with 503 because the queue was full.\n"
              "# TYPE slm_rejected_overload_total counter\nslm_rejected_overload_total %llu\n",
              (unsigned long long)m->rejected_overload);
    slm_buf_printf(&sb,
              "# HELP slm_prompt_tokens_total Prompt tokens evaluated (excluding cache hits).\n"
              "# TYPE slm_prompt_tokens_total counter\nslm_prompt_tokens_total %llu\n"
              "# HELP slm_prompt_tokens_cached_total Prompt tokens reused from the prefix cache.\n"
              "# TYPE slm_prompt_tokens_cached_total counter\nslm_prompt_tokens_cached_total %llu\n"
              "# HELP slm_generated_tokens_total Tokens generated.\n"
              "# TYPE slm_generated_tokens_total counter\nslm_generated_tokens_total %llu\n"
              "# HELP slm_embedding_tokens_total Tokens embedded.\n"
              "# TYPE slm_embedding_tokens_total counter\nslm_embedding_tokens_total %llu\n"
              "# HELP slm_forward_passes_total Batched forward passes run by the scheduler.\n"
              "# TYPE slm_forward_passes_total counter\nslm_forward_passes_total %llu\n",
              (unsigned long long)m->prompt_tokens, (unsigned long long)m->prompt_tokens_cached,
              (unsigned long long)m->generated_tokens, (unsigned long long)m->embedded_tokens,
              (unsigned long long)m->forward_passes);
    slm_buf_printf(&sb, "# HELP slm_route_calls_total Calls served, by where they ran.\n# TYPE slm_route_calls_total counter\n");
    for (int u = 0; u < 2; u++)
        slm_buf_printf(&sb, "slm_route_calls_total{route=\"%s\"} %llu\n", u ? "upstream" : "local",
                       (unsigned long long)m->route_calls[u]);
    slm_buf_printf(&sb, "# HELP slm_route_tokens_total Tokens of served calls, by route and kind.\n# TYPE slm_route_tokens_total counter\n");
    for (int u = 0; u < 2; u++)
        slm_buf_printf(&sb, "slm_route_tokens_total{route=\"%s\",kind=\"prompt\"} %llu\nslm_route_tokens_total{route=\"%s\",kind=\"completion\"} %llu\n",
                       u ? "upstream" : "local", (unsigned long long)m->route_prompt_tokens[u], u ? "upstream" : "local",
                       (unsigned long long)m->route_completion_tokens[u]);
    slm_buf_printf(&sb,
                   "# HELP slm_cost_usd_total Spend at the configured prices.\n# TYPE slm_cost_usd_total counter\nslm_cost_usd_total %.9f\n"
                   "# HELP slm_frontier_cost_usd_total What the same calls would have cost on the frontier API.\n"
                   "# TYPE slm_frontier_cost_usd_total counter\nslm_frontier_cost_usd_total %.9f\n",
                   m->cost_usd, m->frontier_cost_usd);
    /* Rates over the last full seconds of the window (the current second is still filling). */
    int64_t now = now_second();
    uint64_t sum_p = 0, sum_g = 0;
    for (int b = 0; b < SRV_RATE_WINDOW; b++) {
        int64_t s = m->rate_second[b];
        if (s < now && s >= now - (SRV_RATE_WINDOW - 1)) {
            sum_p += m->rate_prompt[b];
            sum_g += m->rate_gen[b];
        }
    }
    double span = SRV_RATE_WINDOW - 1;
    slm_buf_printf(&sb,
              "# HELP slm_prompt_tokens_per_second Prompt evaluation rate over the last %d s.\n"
              "# TYPE slm_prompt_tokens_per_second gauge\nslm_prompt_tokens_per_second %.2f\n"
              "# HELP slm_generation_tokens_per_second Generation rate over the last %d s.\n"
              "# TYPE slm_generation_tokens_per_second gauge\nslm_generation_tokens_per_second %.2f\n",
              SRV_RATE_WINDOW - 1, (double)sum_p / span, SRV_RATE_WINDOW - 1, (double)sum_g / span);
    slm_buf_printf(&sb,
              "# HELP slm_time_to_first_token_seconds From arrival to the first generated token.\n"
              "# TYPE slm_time_to_first_token_seconds histogram\n");
    for (int i = 0; i < SRV_TTFT_BUCKETS; i++)
        slm_buf_printf(&sb, "slm_time_to_first_token_seconds_bucket{le=\"%g\"} %llu\n", ttft_bounds[i],
                  (unsigned long long)m->ttft_buckets[i]);
    slm_buf_printf(&sb,
              "slm_time_to_first_token_seconds_bucket{le=\"+Inf\"} %llu\n"
              "slm_time_to_first_token_seconds_sum %.6f\nslm_time_to_first_token_seconds_count %llu\n",
              (unsigned long long)m->ttft_count, m->ttft_sum, (unsigned long long)m->ttft_count);
    pthread_mutex_unlock(&m->mu);
    slm_buf_printf(&sb,
              "# HELP slm_queue_depth Requests waiting for a slot.\n# TYPE slm_queue_depth gauge\nslm_queue_depth %d\n"
              "# HELP slm_slots_busy Slots generating or prefilling.\n# TYPE slm_slots_busy gauge\nslm_slots_busy %d\n"
              "# HELP slm_slots_total Slots (parallel sequences).\n# TYPE slm_slots_total gauge\nslm_slots_total %d\n"
              "# HELP slm_slot_context_tokens Context positions per slot.\n# TYPE slm_slot_context_tokens gauge\n"
              "slm_slot_context_tokens %d\n",
              queue_depth, slots_busy, slots_total, n_ctx_slot);
    return slm_buf_take(&sb);
}

static void observe_forward(void *user, int n_prompt, int n_gen, int n_embed) { srv_metrics_forward(user, n_prompt, n_gen, n_embed); }
static void observe_cached(void *user, int n) { srv_metrics_prompt_cached(user, n); }
static void observe_ttft(void *user, double s) { srv_metrics_ttft(user, s); }

slm_engine_observer srv_metrics_observer(srv_metrics *m) {
    return (slm_engine_observer){.user = m, .forward = observe_forward, .prompt_cached = observe_cached, .first_token = observe_ttft};
}
