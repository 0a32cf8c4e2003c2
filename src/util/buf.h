/* The library's buffers are public API (include/slm_buf.h); library code includes them from here. */
#ifndef SLM_UTIL_BUF_H
#define SLM_UTIL_BUF_H
#include "slm_buf.h"
#endif
