/* Shared by the route stage and the cascade backend. */
#ifndef SLM_ROUTE_IMPL_H
#define SLM_ROUTE_IMPL_H

#include "slm_gate.h"

/* The text a router judges: the last user turn (earlier turns are context, not the ask). */
const char *route_question(const slm_gate_call *call);

#endif
