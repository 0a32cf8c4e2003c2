/* The text stream rule every generation path shares: which bytes of the generated-but-unreleased
 * text are final. Never part of a (possible) stop string, never a partial UTF-8 character. */
#ifndef SLM_ENGINE_TEXTSTREAM_H
#define SLM_ENGINE_TEXTSTREAM_H

#include <stdbool.h>
#include <stddef.h>

/* How many leading bytes of pending[0..len) may be released now. When a stop string occurs, returns
 * the bytes before its first occurrence and sets *stopped (the rest is dropped by the caller). At
 * the end of generation (at_end) everything not cut by a stop string is final. Empty stop strings
 * are ignored. */
size_t slm_text_final_len(const char *pending, size_t len, const char *const *stop, int n_stop, bool at_end,
                          bool *stopped);

#endif
