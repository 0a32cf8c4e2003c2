/* The engine's side of a request: appending results and finishing it. */
#ifndef SLM_ENGINE_REQUEST_IMPL_H
#define SLM_ENGINE_REQUEST_IMPL_H

#include "slm_engine.h"

/* The producer calls (slm_request_append_text, _append_token, _finish) are public in
 * slm_engine.h, for remote backends too. */

#endif
