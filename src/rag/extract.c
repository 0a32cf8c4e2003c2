/* Text extraction: plain text and markdown as they are (checked to be text), HTML, PDF and docx
 * through their libraries (extract_html.c, extract_pdf.c, extract_docx.c). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "extract_formats.h"
#include "rag_internal.h"
#include "util/err.h"

const char *rag_format_of(const char *name) {
    const char *slash = strrchr(name, '/');
    const char *dot = strrchr(slash ? slash + 1 : name, '.');
    if (!dot || dot[1] == 0) return NULL;
    static const struct {
        const char *ext, *format;
    } map[] = {{"txt", "txt"}, {"text", "txt"}, {"md", "md"},     {"markdown", "md"}, {"html", "html"},
               {"htm", "html"}, {"pdf", "pdf"},  {"docx", "docx"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcasecmp(dot + 1, map[i].ext) == 0) return map[i].format;
    return NULL;
}

bool rag_text_plausible(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f') return false;
            i++;
            continue;
        }
        int len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
        if (!len || i + (size_t)len > n) return false;
        unsigned cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
        for (int k = 1; k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (p[i + k] & 0x3F);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        i += (size_t)len;
    }
    return true;
}

void rag_text_free(rag_text *t) {
    if (!t) return;
    free(t->data);
    memset(t, 0, sizeof *t);
}

int rag_extract(const char *format, const void *bytes, size_t len, size_t max_text, rag_text *out, char *err,
                size_t err_len) {
    memset(out, 0, sizeof *out);
    if (!format) return slm_err(err, err_len, "unsupported format");
    if (strcmp(format, "txt") == 0 || strcmp(format, "md") == 0) {
        const char *s = bytes;
        if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3, len -= 3; /* a byte order mark is not text */
        if (len > max_text) return slm_err(err, err_len, "text larger than the %zu MiB limit", max_text >> 20);
        if (!rag_text_plausible(s, len)) return slm_err(err, err_len, "binary data or invalid UTF-8, not %s text", format);
        if (!(out->data = malloc(len + 1))) return slm_err(err, err_len, "out of memory");
        memcpy(out->data, s, len);
        out->data[len] = 0;
        out->len = len;
        return 0;
    }
    int rc;
    if (strcmp(format, "html") == 0) rc = rag_extract_html(bytes, len, max_text, out, err, err_len);
    else if (strcmp(format, "pdf") == 0) rc = rag_extract_pdf(bytes, len, max_text, out, err, err_len);
    else if (strcmp(format, "docx") == 0) rc = rag_extract_docx(bytes, len, max_text, out, err, err_len);
    else return slm_err(err, err_len, "unsupported format '%s'", format);
    if (rc && err && err_len) { /* the libraries' messages may hold newlines: one line, no trailing blanks */
        for (char *p = err; *p; p++)
            if ((unsigned char)*p < 0x20) *p = ' ';
        for (size_t n = strlen(err); n > 0 && err[n - 1] == ' ';) err[--n] = 0;
    }
    return rc;
}
