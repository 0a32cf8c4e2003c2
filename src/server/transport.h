/* The HTTP transport (libmicrohttpd): listening, limits, origin checks, credentials. */
#ifndef SLM_SERVER_TRANSPORT_H
#define SLM_SERVER_TRANSPORT_H

#include <microhttpd.h>

#include "state.h"

struct sockaddr;
/* Starts libmicrohttpd on `addr` (thread per connection). */
struct MHD_Daemon *srv_http_start(srv_server *s, const struct sockaddr *addr, char *err, size_t err_len);

#endif
