/* Long jobs answered as NDJSON progress (Ollama's pull, push, create with quantize): a worker
 * thread writes lines into a pipe the response reads, so the job runs at its own pace and a client
 * that leaves stops it (its next write fails, and `cancel` is set). */
#ifndef SLM_SERVER_NDJSON_JOB_H
#define SLM_SERVER_NDJSON_JOB_H

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "state.h"

/* The first member of a job's struct. */
typedef struct srv_ndjson_job {
    void (*run)(struct srv_ndjson_job *j);      /* the work, on the worker thread: writes lines, ends */
    void (*free_job)(struct srv_ndjson_job *j); /* frees the whole job struct */
    int wfd, rfd;          /* wfd < 0: no stream (the job runs on the handler's thread, lines go nowhere) */
    atomic_bool cancel;    /* the client left, or a write failed: the job should stop */
    pthread_t thread;
} srv_ndjson_job;

/* Sets the job up to run without a stream (srv_ndjson_start makes the stream). */
void srv_ndjson_init(srv_ndjson_job *j, void (*run)(srv_ndjson_job *), void (*free_job)(srv_ndjson_job *));
/* Writes one JSON value as a line (takes the reference); false once the client is gone (and
 * without a stream: false only when cancelled). */
bool srv_ndjson_send(srv_ndjson_job *j, json_t *line);
/* Starts j->run on its own thread and answers 200 with what it writes; when the response ends
 * (done, or the client gone) the job is cancelled, joined and freed. Also frees j on failure. */
enum MHD_Result srv_ndjson_start(srv_conn *c, srv_ndjson_job *j);

#endif
