/* libFuzzer target for the upstream stream reader: hostile bytes from a remote API, split at
 * positions the input chooses, through the SSE parser and the OpenAI chunk interpreter. The events
 * must not depend on how the bytes were split, and nothing may crash or leak. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct events {
    char log[1 << 14];
    size_t len;
} events;

static int on_event(void *user, const char *event, const char *payload, size_t len) {
    events *ev = user;
    up_chunk c;
    up_chunk_parse(event, payload, len, &c);
    /* a digest of what the stream said, to compare the two feeds */
    unsigned h = 2166136261u;
    for (size_t i = 0; i < c.text_len; i++) h = (h ^ (unsigned char)c.text[i]) * 16777619u;
    if (ev->len + 32 < sizeof ev->log)
        ev->len += (size_t)snprintf(ev->log + ev->len, sizeof ev->log - ev->len, "%d:%zu:%x:%s|", (int)c.kind,
                                    c.text_len, h, c.finish_reason);
    up_chunk_free(&c);
    return c.kind == UP_CHUNK_DONE ? 1 : 0;
}

static int feed(const uint8_t *data, size_t size, size_t step, events *ev) {
    up_sse p;
    memset(&p, 0, sizeof p);
    int rc = 0;
    for (size_t off = 0; rc == 0 && off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        rc = up_sse_feed(&p, (const char *)data + off, n, on_event, ev);
    }
    up_sse_free(&p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    size_t step = (size_t)data[0] % 7 + 1;
    static events whole, pieces;
    whole.len = pieces.len = 0;
    int a = feed(data + 1, size - 1, size, &whole);
    int b = feed(data + 1, size - 1, step, &pieces);
    assert(a == b);
    assert(whole.len == pieces.len && memcmp(whole.log, pieces.log, whole.len) == 0);
    char msg[128];
    up_error_message((const char *)data, size, msg, sizeof msg);
    assert(strlen(msg) < sizeof msg);
    return 0;
}
