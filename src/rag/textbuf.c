/* The text builder the HTML, PDF and docx extractors share. */
#include <stdlib.h>
#include <string.h>

#include "extract_formats.h"
#include "util/err.h"

static void put(rag_textbuf *b, const char *s, size_t len) {
    if (b->oom || b->over) return;
    if (b->n + len > b->max) {
        b->over = true;
        return;
    }
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + len + 1) cap *= 2;
        char *p = realloc(b->d, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->d = p;
        b->cap = cap;
    }
    memcpy(b->d + b->n, s, len);
    b->n += len;
}

static bool ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static void flush_pending(rag_textbuf *b) {
    if (b->n > 0 && b->breaks > 0) put(b, "\n\n", (size_t)b->breaks);
    else if (b->n > 0 && b->space && b->d[b->n - 1] != '\n' && b->d[b->n - 1] != '\f') put(b, " ", 1);
    b->breaks = 0;
    b->space = false;
}

void rag_textbuf_add(rag_textbuf *b, const char *s, size_t len, bool collapse) {
    size_t i = 0;
    while (i < len) {
        if (collapse && ws(s[i])) {
            b->space = true;
            while (i < len && ws(s[i])) i++;
            continue;
        }
        size_t j = i;
        while (j < len && !(collapse && ws(s[j]))) j++;
        flush_pending(b);
        put(b, s + i, j - i);
        i = j;
    }
}

void rag_textbuf_break(rag_textbuf *b, int newlines) {
    if (newlines > b->breaks) b->breaks = newlines > 2 ? 2 : newlines;
    b->space = false;
}

void rag_textbuf_page(rag_textbuf *b) {
    b->breaks = 0;
    b->space = false;
    put(b, "\f", 1);
}

int rag_textbuf_finish(rag_textbuf *b, const char *what, rag_text *out, char *err, size_t err_len) {
    memset(out, 0, sizeof *out);
    if (b->oom) return free(b->d), slm_err(err, err_len, "out of memory");
    if (b->over) return free(b->d), slm_err(err, err_len, "%s text larger than the %zu MiB limit", what, b->max >> 20);
    for (size_t i = 0; i < b->n; i++) {
        unsigned char c = (unsigned char)b->d[i];
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\f') || c == 0x7f) b->d[i] = ' ';
    }
    if (!rag_text_plausible(b->d ? b->d : "", b->n)) return free(b->d), slm_err(err, err_len, "%s text is not valid UTF-8", what);
    put(b, "", 0);
    if (!b->d && !(b->d = malloc(1))) return slm_err(err, err_len, "out of memory");
    if (b->n + 1 > b->cap) {
        char *p = realloc(b->d, b->n + 1);
        if (!p) return free(b->d), slm_err(err, err_len, "out of memory");
        b->d = p;
    }
    b->d[b->n] = 0;
    out->data = b->d;
    out->len = b->n;
    b->d = NULL;
    return 0;
}
