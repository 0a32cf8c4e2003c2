/* Comparing secrets (API keys) without leaking through timing. */
#ifndef SLM_UTIL_SECRET_H
#define SLM_UTIL_SECRET_H

#include <stdbool.h>

/* True if the NUL-terminated secrets are equal. Both are hashed first and the digests compared in
 * constant time, so how long it takes says nothing about a common prefix or the expected length. */
bool slm_secret_equal(const char *presented, const char *expected);

#endif
