/* slm buffers — growable memory shared by every layer and the front ends: a NUL-terminated text buffer and array growth. A failed
 * allocation is remembered (text) or reported (arrays), never a crash and never a silent cut. */
#ifndef SLM_BUF_H
#define SLM_BUF_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#ifdef __cplusplus
}
#endif
#endif

/* Text that grows as it is appended to; s is NUL-terminated once anything was appended (NULL
 * before). After an allocation failure, oom is set, later appends do nothing and the text so far
 * stays as it was: check oom once at the end. Zero-initialise; free with slm_buf_free. */
typedef struct slm_buf {
    char *s;
    size_t len, cap;
    bool oom;
} slm_buf;

bool slm_buf_append(slm_buf *b, const char *text, size_t len); /* false if out of memory (now or before) */
bool slm_buf_puts(slm_buf *b, const char *text);
__attribute__((format(printf, 2, 3))) bool slm_buf_printf(slm_buf *b, const char *fmt, ...);
/* Hands the text to the caller (an empty string if nothing was appended; NULL if out of memory)
 * and leaves b empty. */
char *slm_buf_take(slm_buf *b);
void slm_buf_clear(slm_buf *b); /* keeps the memory, forgets the text and the oom flag */
void slm_buf_free(slm_buf *b);

/* Makes *ptr (an array of elem-byte items with room for *cap) hold at least need items, doubling
 * from at least min_cap; false (and *ptr untouched) on overflow or allocation failure. */
bool slm_grow(void **ptr, size_t *cap, size_t need, size_t elem, size_t min_cap);

#ifdef __cplusplus
}
#endif
#endif
