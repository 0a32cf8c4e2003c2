/* Error reporting: every failing function writes one readable line into the caller's buffer. */
#ifndef SLM_UTIL_ERR_H
#define SLM_UTIL_ERR_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

/* Formats into err (if non-NULL) and returns -1 so callers can `return slm_err(...)`. */
__attribute__((format(printf, 3, 4))) static inline int slm_err(char *err, size_t err_len, const char *fmt, ...) {
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#endif
