#include "util/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool slm_grow(void **ptr, size_t *cap, size_t need, size_t elem, size_t min_cap) {
    if (need <= *cap) return true;
    if (elem == 0 || need > SIZE_MAX / elem) return false;
    size_t ncap = *cap > min_cap ? *cap : min_cap ? min_cap : 1;
    while (ncap < need) ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    if (ncap > SIZE_MAX / elem) ncap = need;
    void *p = realloc(*ptr, ncap * elem);
    if (!p) return false;
    *ptr = p;
    *cap = ncap;
    return true;
}

bool slm_buf_append(slm_buf *b, const char *text, size_t len) {
    if (b->oom) return false;
    if (len > SIZE_MAX - b->len - 1 || !slm_grow((void **)&b->s, &b->cap, b->len + len + 1, 1, 256)) {
        b->oom = true;
        return false;
    }
    if (len) memcpy(b->s + b->len, text, len);
    b->len += len;
    b->s[b->len] = 0;
    return true;
}

bool slm_buf_puts(slm_buf *b, const char *text) {
    return slm_buf_append(b, text, strlen(text));
}

bool slm_buf_printf(slm_buf *b, const char *fmt, ...) {
    if (b->oom) return false;
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return false;
    }
    if ((size_t)n < sizeof small) return slm_buf_append(b, small, (size_t)n);
    if (!slm_grow((void **)&b->s, &b->cap, b->len + (size_t)n + 1, 1, 256)) {
        b->oom = true;
        return false;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return true;
}

char *slm_buf_take(slm_buf *b) {
    if (b->oom) {
        slm_buf_free(b);
        return NULL;
    }
    char *s = b->s ? b->s : calloc(1, 1);
    *b = (slm_buf){0};
    return s;
}

void slm_buf_clear(slm_buf *b) {
    b->len = 0;
    b->oom = false;
    if (b->s) b->s[0] = 0;
}

void slm_buf_free(slm_buf *b) {
    free(b->s);
    *b = (slm_buf){0};
}
