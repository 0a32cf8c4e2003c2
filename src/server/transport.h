/* The HTTP transport (libmicrohttpd): listening, limits, origin checks, credentials. */
#ifndef SLM_SERVER_TRANSPORT_H
#define SLM_SERVER_TRANSPORT_H

#include <microhttpd.h>

#include "state.h"

struct sockaddr;
/* Starts libmicrohttpd on `addr` (thread per connection). */
struct MHD_Daemon *srv_http_start(srv_server *s, const struct sockaddr *addr, char *err, size_t err_len);
/* Stops libmicrohttpd (s->daemon) and the connection watchdog. */
void srv_http_stop(srv_server *s);


/* ---------- connection bookkeeping (pure; the fuzz target drives it without sockets) ---------- */

/* A new connection at time `now`: its headers are due by now + header_timeout_s; past
 * max_connections - reserve the oldest connection not being answered is cut. */
void srv_sock_opened(srv_server *s, srv_sock *k, double now);
void srv_sock_closed(srv_server *s, srv_sock *k);
void srv_sock_set_phase(srv_server *s, srv_sock *k, srv_sock_phase phase, double deadline);
/* Cuts connections past their deadline and streams past cfg.stream_buffer_bytes; returns how many. */
int srv_socks_sweep(srv_server *s, double now);
/* Takes `more` bytes of the server-wide body budget (cfg.max_body_total) for c; false when spent. */
bool srv_body_take(srv_conn *c, size_t more);
/* Frees c's body and gives its bytes back to the budget. */
void srv_body_release(srv_conn *c);
/* Copies text for the request log with control bytes, DEL, backslash and non-ASCII as \xHH. */
const char *srv_log_clean(const char *text, char *buf, size_t cap);

#endif
