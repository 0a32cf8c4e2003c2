/* Replies in each API's format (OpenAI / Ollama errors, JSON bodies) and streamed responses. */
#ifndef SLM_SERVER_REPLIES_H
#define SLM_SERVER_REPLIES_H

#include <jansson.h>
#include <microhttpd.h>

#include "fields.h"
#include "state.h"

/* ---------- replies (each returns MHD_YES/MHD_NO for the access handler) ---------- */

/* Headers every response carries (nosniff, CORS, request id, Retry-After on 503, …). */
void srv_add_common_headers(srv_conn *c, struct MHD_Response *resp, int status);
/* The reply for a call the gate or its backend refused (c->call.status and error). */
enum MHD_Result srv_reply_refused(srv_conn *c);
enum MHD_Result srv_reply_bytes(srv_conn *c, int status, const char *content_type, const char *body, size_t len);
/* Steals `obj`. */
enum MHD_Result srv_reply_json(srv_conn *c, int status, json_t *obj);
/* The error body of c->api: OpenAI {"error":{message,type,param,code}}, Ollama {"error":msg}. */
enum MHD_Result srv_reply_error(srv_conn *c, int status, const char *code, const char *param, const char *msg);
enum MHD_Result srv_reply_fail(srv_conn *c, const srv_fail *f);
/* The error for a request that ended other than stop/length: 504 timeout, 503 shutdown, 400 when
 * the request itself asked the impossible (ERROR with error_is_client), else 500. */
enum MHD_Result srv_reply_finish_error(srv_conn *c, const slm_request *r);
/* The HTTP status srv_reply_finish_error would answer for r (streams put it in their error event). */
int srv_finish_status(const slm_request *r);
/* Drops streams whose client left more than cfg.stream_buffer_bytes unread (caller holds
 * socks_mu); returns how many. */
int srv_streams_check(srv_server *s);

/* Queues a 200 whose body a callback produces (a stream): its content type, no caching or proxy
 * buffering, the common headers; the response is released and the connection marked answered. */
enum MHD_Result srv_queue_stream(srv_conn *c, struct MHD_Response *resp, const char *content_type);

/* Finishes the connection's gate call (record: ledger, audit) with the response's status and
 * the request's token counts, before the response's last bytes leave. */
void srv_finish_call(srv_server *s, slm_gate_call *call, int status);

/* Blocks until the request is done; false if the client hung up meanwhile (the request is then
 * cancelled and nothing should be sent). */
bool srv_wait_done(srv_conn *c, slm_request *r);
/* The client closed its end of the connection. */
bool srv_conn_gone(srv_conn *c);

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
    slm_gate_call *origin; /* the connection's call: output filter, and finished before the last bytes */
    char *filtered;        /* output filter scratch */
    size_t filtered_len;
    int fd;
    srv_emit_fn emit;
    void *user; /* formatter state, freed with free() after user_cleanup(user) if set */
    void (*user_cleanup)(void *user);
    slm_buf out;    /* wire bytes not yet handed to MHD, from out_off on */
    size_t out_off;
    size_t text_seen;
    int infos_seen;
    bool finished, sent_first;
    atomic_size_t out_pending; /* out.len - out_off, readable by the watchdog */
    atomic_bool dropped;       /* cut by the watchdog: the client stopped reading */
    struct srv_stream *s_prev, *s_next; /* srv_server.streams, under socks_mu */
};

bool srv_stream_write(srv_stream *st, const char *bytes, size_t n);
/* Appends text (valid UTF-8) as a JSON string literal, escaped exactly as jansson dumps it, with
 * no allocation: the per-token path of the stream formatters. */
bool srv_stream_write_json_string(srv_stream *st, const char *text, size_t n);
/* Appends json (compact) framed as prefix + json + suffix; steals obj. */
bool srv_stream_write_json(srv_stream *st, const char *prefix, json_t *obj, const char *suffix);
/* The stream's pieces, public for the fuzz target: libmicrohttpd's content reader (blocks until
 * there is output, the request is done or the client left), the free callback (unregisters,
 * cancels, releases), the registry the watchdog checks, and the backlog it measures. */
ssize_t srv_stream_read(void *cls, uint64_t pos, char *buf, size_t max);
void srv_stream_free(void *cls);
void srv_stream_register(srv_server *s, srv_stream *st);
size_t srv_stream_backlog(srv_stream *st);
/* Starts a chunked streaming response driven by `emit`; takes ownership of user. */
enum MHD_Result srv_reply_stream(srv_conn *c, slm_request *r, const char *content_type, srv_emit_fn emit, void *user);
/* A built-in HTML page (static text), with a Content-Security-Policy that allows only its own inline
 * script and style (by hash) and connections to this server. */
enum MHD_Result srv_reply_page(srv_conn *c, const char *html);
/* The same for formatter state that owns more memory: user_cleanup(user) runs before free(user),
 * whether the stream completed or the client left. */
enum MHD_Result srv_reply_stream_owning(srv_conn *c, slm_request *r, const char *content_type, srv_emit_fn emit, void *user,
                                        void (*user_cleanup)(void *user));

#endif
