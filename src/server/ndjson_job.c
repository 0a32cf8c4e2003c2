/* Long jobs answered as NDJSON progress (see ndjson_job.h). */
#include "ndjson_job.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replies.h"

void srv_ndjson_init(srv_ndjson_job *j, void (*run)(srv_ndjson_job *), void (*free_job)(srv_ndjson_job *)) {
    j->run = run;
    j->free_job = free_job;
    j->wfd = j->rfd = -1;
    atomic_store(&j->cancel, false);
}

bool srv_ndjson_send(srv_ndjson_job *j, json_t *line) {
    if (j->wfd < 0) {
        json_decref(line);
        return !atomic_load(&j->cancel);
    }
    char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    json_decref(line);
    if (!text) return false;
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps' NUL becomes the line end; the length is known */
    bool ok = true;
    for (size_t off = 0; ok && off < n + 1;) {
        ssize_t w = write(j->wfd, text + off, n + 1 - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) ok = false; /* the reader is gone (EPIPE): stop the job */
        else off += (size_t)w;
    }
    free(text);
    if (!ok) atomic_store(&j->cancel, true);
    return ok;
}

static void *job_main(void *arg) {
    srv_ndjson_job *j = arg;
    j->run(j);
    close(j->wfd); /* the response sees the end */
    j->wfd = -1;
    return NULL;
}

static ssize_t job_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    srv_ndjson_job *j = cls;
    for (;;) {
        ssize_t n = read(j->rfd, buf, max);
        if (n > 0) return n;
        if (n == 0) return MHD_CONTENT_READER_END_OF_STREAM;
        if (errno != EINTR) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
}

static void job_end(void *cls) {
    srv_ndjson_job *j = cls;
    atomic_store(&j->cancel, true);
    close(j->rfd); /* a worker still writing gets EPIPE and stops */
    pthread_join(j->thread, NULL);
    j->free_job(j);
}

enum MHD_Result srv_ndjson_start(srv_conn *c, srv_ndjson_job *j) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        j->free_job(j);
        return srv_reply_error(c, 500, NULL, NULL, "cannot create a pipe");
    }
    j->rfd = fds[0];
    j->wfd = fds[1];
    if (pthread_create(&j->thread, NULL, job_main, j) != 0) {
        close(fds[0]);
        close(fds[1]);
        j->free_job(j);
        return srv_reply_error(c, 500, NULL, NULL, "cannot start the job");
    }
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, job_read, j, job_end);
    if (!resp) {
        job_end(j);
        return MHD_NO;
    }
    srv_finish_call(c->srv, &c->call, 200);
    return srv_queue_stream(c, resp, "application/x-ndjson");
}
