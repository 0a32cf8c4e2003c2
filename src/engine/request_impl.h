/* The engine's side of a request: appending results and finishing it. */
#ifndef SLM_ENGINE_REQUEST_IMPL_H
#define SLM_ENGINE_REQUEST_IMPL_H

#include "slm_engine.h"

/* Caller holds r->mu. Return false only when memory runs out. */
bool slm_request_append_text(slm_request *r, const char *s, size_t n);
bool slm_request_append_token(slm_request *r, slm_token t, const slm_token_info *info);
/* Marks the request finished (once) and wakes its waiters; takes the lock itself. */
void slm_request_finish(slm_request *r, slm_finish why, const char *error);

#endif
