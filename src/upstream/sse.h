/* Server-sent events (the WHATWG EventSource wire format) read incrementally, and the OpenAI
 * streaming chunks carried in them. Bytes may arrive split anywhere (inside a line, between CR and
 * LF); lines end with LF, CRLF or CR; ':' lines are comments; an empty line dispatches the event. */
#ifndef SLM_UPSTREAM_SSE_H
#define SLM_UPSTREAM_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "slm_buf.h"

#define UP_SSE_MAX_LINE (1u << 20) /* a longer line (or event) is an error, not a memory hog */

/* Called per dispatched event with its type ("message" unless an event: field said otherwise) and
 * its data lines joined by '\n'. Returns 0 to go on, anything else to stop feeding (returned). */
typedef int (*up_sse_event_fn)(void *user, const char *event, const char *data, size_t len);

typedef struct up_sse {
    slm_buf line;
    slm_buf data;
    bool has_data;     /* a data: field was seen in the current event (even an empty one) */
    char event[64];
    bool after_cr;     /* the last byte was CR: an LF right after it ends nothing more */
    char error[160];
} up_sse;

/* Feeds bytes; returns 0, a non-zero value the callback returned, or -1 with p->error set (an
 * over-long line or event, out of memory). After a non-zero return, stop feeding. */
int up_sse_feed(up_sse *p, const char *bytes, size_t n, up_sse_event_fn fn, void *user);
void up_sse_free(up_sse *p);

/* ---------- OpenAI streaming chunks ---------- */

typedef enum { UP_CHUNK_OK, UP_CHUNK_DONE, UP_CHUNK_ERROR } up_chunk_kind;

/* What one data payload said. text points into a buffer owned by the caller (see up_chunk_parse). */
typedef struct up_chunk {
    up_chunk_kind kind;
    char *text;                /* malloc'd content delta of choice 0 (NULL when none) */
    size_t text_len;
    char finish_reason[32];    /* "" while the choice goes on */
    bool has_usage;
    long prompt_tokens, completion_tokens;
    char error[256];           /* UP_CHUNK_ERROR: what went wrong (malformed JSON, an error object) */
} up_chunk;

/* Interprets one event's data: "[DONE]", a chat.completion.chunk (choices[0].delta.content), a
 * text_completion chunk (choices[0].text), a whole non-streamed response (choices[0].message.content
 * or .text), or an error ({"error": {...}} or event type "error"). Free with up_chunk_free. */
void up_chunk_parse(const char *event, const char *data, size_t len, up_chunk *out);
void up_chunk_free(up_chunk *c);

/* The message of an OpenAI-style error body ({"error":{"message":…}} or {"error":"…"} or
 * {"message":…}), else the body's first line; whitespace collapsed and trimmed to fit out. */
void up_error_message(const char *body, size_t len, char *out, size_t out_len);

#endif
