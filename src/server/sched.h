/* The scheduler: one thread owns the slm_context and runs continuous batching over its sequences
 * ("slots"). Each forward pass mixes one decode token of every generating slot, whole embedding
 * inputs and prompt chunks of newly admitted requests. A new request reuses the longest cached
 * prompt prefix found in any slot's KV. */
#ifndef SLM_SERVER_SCHED_H
#define SLM_SERVER_SCHED_H

#include <stdbool.h>
#include <stddef.h>

#include "server/metrics.h"
#include "server/request.h"
#include "slm.h"

typedef struct srv_sched srv_sched;

typedef enum { SRV_SUBMIT_OK = 0, SRV_SUBMIT_FULL, SRV_SUBMIT_DRAINING } srv_submit_status;

/* Starts the scheduler thread. The model and context stay owned by the caller and must outlive it. */
/* queue_cap: requests that may wait beyond the slots that are free. */
int srv_sched_new(slm_model *model, slm_context *ctx, srv_metrics *metrics, int queue_cap, srv_sched **out, char *err,
                  size_t err_len);
/* Cancels whatever still runs, stops and joins the thread. */
void srv_sched_free(srv_sched *s);

/* Queues a request (the scheduler takes its own reference). FULL: the admission queue is at capacity;
 * DRAINING: the server is shutting down. */
srv_submit_status srv_sched_submit(srv_sched *s, srv_request *r);
/* Tells the scheduler a request was cancelled so it frees its slot or queue place right away. */
void srv_sched_notify_cancel(srv_sched *s);
/* Stops admitting, waits up to `timeout_s` for queued and running requests to finish, then
 * cancels the rest. Returns the number of requests that had to be cancelled. */
int srv_sched_drain(srv_sched *s, double timeout_s);
void srv_sched_counts(srv_sched *s, int *queued, int *busy);

#endif
