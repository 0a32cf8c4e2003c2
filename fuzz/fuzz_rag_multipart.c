/* libFuzzer target for upload bodies (slm_rag_multipart_parse, what POST
 * /v1/rag/collections/{name}/documents reads): the input's first line is the Content-Type header,
 * the rest the body. A body either parses, with the file's bytes inside the body and the name and
 * format NUL-terminated within their fields, or fails with one line and the field at fault. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slm_rag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nl = memchr(data, '\n', size < 200 ? size : 200);
    if (!nl) return 0;
    size_t ct_len = (size_t)(nl - data);
    char content_type[201];
    memcpy(content_type, data, ct_len);
    content_type[ct_len] = 0;
    /* the body in a buffer of its own size, so any read past it is caught */
    size_t len = size - ct_len - 1;
    uint8_t *body = malloc(len ? len : 1);
    if (!body) return 0;
    memcpy(body, nl + 1, len);
    slm_rag_upload u;
    const char *field = NULL;
    char err[512];
    err[0] = 0;
    if (slm_rag_multipart_parse(content_type, body, len, &u, &field, err, sizeof err) != 0) {
        assert(err[0] && !strchr(err, '\n'));
        assert(field && *field);
    } else {
        assert(field == NULL);
        assert(u.data >= (const void *)body && (const uint8_t *)u.data + u.len <= body + len);
        assert(memchr(u.name, 0, sizeof u.name) && memchr(u.format, 0, sizeof u.format));
    }
    free(body);
    return 0;
}
