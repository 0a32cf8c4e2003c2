/* Uploads over HTTP: a multipart/form-data body (RFC 7578) read into the document's name, format
 * and bytes (see slm_rag_multipart_parse in slm_rag.h). Every byte comes from a client: bounds are
 * checked on every step, the parts point into the body (nothing is copied but the short fields). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "slm_rag.h"
#include "util/err.h"

/* The value of a parameter of a header line ("boundary", "name", "filename"), quoted (with
 * backslash escapes) or not; false when absent, or (*malformed set) unterminated, longer than
 * cap - 1 or holding control characters. */
static bool header_param(const char *h, size_t hlen, const char *param, char *out, size_t cap, bool *malformed) {
    size_t plen = strlen(param);
    for (size_t i = 0; i < hlen; i++) {
        /* a parameter starts the line or follows ';' (and blanks) */
        if (i > 0 && h[i - 1] != ';' && h[i - 1] != ' ' && h[i - 1] != '\t') continue;
        if (i + plen + 1 > hlen || strncasecmp(h + i, param, plen) != 0 || h[i + plen] != '=') continue;
        size_t j = i + plen + 1, o = 0;
        if (j < hlen && h[j] == '"') {
            for (j++; j < hlen && h[j] != '"'; j++) {
                if (h[j] == '\\' && j + 1 < hlen) j++;
                if (o + 1 >= cap) return *malformed = true, false;
                out[o++] = h[j];
            }
            if (j >= hlen) return *malformed = true, false; /* unterminated quote */
        } else {
            for (; j < hlen && h[j] != ';' && h[j] != ' ' && h[j] != '\t' && h[j] != '\r' && h[j] != '\n'; j++) {
                if (o + 1 >= cap) return *malformed = true, false;
                out[o++] = h[j];
            }
        }
        out[o] = 0;
        /* control characters in a name would break the one-line errors that quote it */
        for (size_t k = 0; k < o; k++)
            if ((unsigned char)out[k] < 0x20 || out[k] == 0x7f) return *malformed = true, false;
        return true;
    }
    return false;
}

static int fail(const char **field, const char *which, char *err, size_t err_len, const char *msg) {
    *field = which;
    return slm_err(err, err_len, "%s", msg);
}

int slm_rag_multipart_parse(const char *content_type, const void *body_bytes, size_t blen, slm_rag_upload *u,
                            const char **field, char *err, size_t err_len) {
    memset(u, 0, sizeof *u);
    *field = "file";
    char boundary[80];
    bool bad = false;
    if (!content_type || !header_param(content_type, strlen(content_type), "boundary", boundary, sizeof boundary, &bad) ||
        !boundary[0])
        return fail(field, "file", err, err_len, "multipart/form-data without a usable boundary (1-70 characters)");
    char delim[96];
    size_t dlen = (size_t)snprintf(delim, sizeof delim, "\r\n--%s", boundary);
    const char *body = body_bytes ? body_bytes : "";
    const char *end = body + blen, *p;
    /* the first delimiter may open the body without the CRLF */
    if (blen >= dlen - 2 && memcmp(body, delim + 2, dlen - 2) == 0) p = body + dlen - 2;
    else if ((p = memmem(body, blen, delim, dlen))) p += dlen;
    else return fail(field, "file", err, err_len, "the multipart body has no part (its boundary is not in it)");
    bool have_file = false;
    for (;;) {
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') break; /* the closing delimiter */
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return fail(field, "file", err, err_len, "malformed multipart body");
        p += 2;
        const char *hend = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
        const char *content;
        if (hend) content = hend + 4;
        else if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') hend = p, content = p + 2; /* a part without headers */
        else return fail(field, "file", err, err_len, "a multipart part's headers do not end");
        char name[64] = "", filename[256] = "";
        bool have_name = false, have_filename = false;
        for (const char *line = p; line < hend;) {
            const char *eol = memmem(line, (size_t)(hend - line), "\r\n", 2);
            if (!eol) eol = hend;
            size_t llen = (size_t)(eol - line);
            static const char cd[] = "content-disposition:";
            if (llen > sizeof cd - 1 && strncasecmp(line, cd, sizeof cd - 1) == 0) {
                const char *v = line + sizeof cd - 1;
                size_t vlen = llen - (sizeof cd - 1);
                bool name_bad = false, file_bad = false;
                have_name = header_param(v, vlen, "name", name, sizeof name, &name_bad);
                have_filename = header_param(v, vlen, "filename", filename, sizeof filename, &file_bad);
                if (name_bad) return fail(field, "file", err, err_len, "a form field's name is malformed or too long");
                if (file_bad)
                    return fail(field, "name", err, err_len, "the uploaded file's name is malformed or longer than 255 bytes");
            }
            line = eol + 2;
        }
        const char *next = memmem(content, (size_t)(end - content), delim, dlen);
        if (!next) return fail(field, "file", err, err_len, "the multipart body is cut short (no closing boundary)");
        size_t clen = (size_t)(next - content);
        if (!have_name || !name[0]) return fail(field, "file", err, err_len, "a multipart part has no Content-Disposition name");
        if (strcmp(name, "file") == 0) {
            if (have_file) return fail(field, "file", err, err_len, "one document per request: more than one 'file' part");
            have_file = true;
            u->data = content;
            u->len = clen;
            if (have_filename && !u->name_given) snprintf(u->name, sizeof u->name, "%s", filename);
        } else if (strcmp(name, "name") == 0 || strcmp(name, "format") == 0) {
            bool is_name = name[0] == 'n';
            char *dst = is_name ? u->name : u->format;
            size_t cap = is_name ? sizeof u->name : sizeof u->format;
            if (clen >= cap || memchr(content, 0, clen))
                return fail(field, is_name ? "name" : "format", err, err_len, "a form field is too long or holds a NUL byte");
            memcpy(dst, content, clen);
            dst[clen] = 0;
            if (is_name) u->name_given = true;
        } else {
            snprintf(u->unknown, sizeof u->unknown, "%s", name);
            *field = u->unknown;
            return slm_err(err, err_len, "unknown form field '%.60s' (file, name, format)", name);
        }
        p = next + dlen;
    }
    if (!have_file) return fail(field, "file", err, err_len, "the form has no 'file' part");
    *field = NULL;
    return 0;
}
