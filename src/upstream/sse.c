/* SSE framing and OpenAI chunk interpretation for the upstream backend (see sse.h). */
#include "upstream/sse.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- SSE framing ---------- */

static int dispatch(up_sse *p, up_sse_event_fn fn, void *user) {
    int rc = 0;
    if (p->has_data) {
        const char *data = p->data.s ? p->data.s : "";
        rc = fn(user, p->event[0] ? p->event : "message", data, p->data.len);
    }
    slm_buf_clear(&p->data);
    p->has_data = false;
    p->event[0] = 0;
    return rc;
}

/* One complete line (without its terminator). */
static int take_line(up_sse *p, const char *line, size_t len, up_sse_event_fn fn, void *user) {
    if (len == 0) return dispatch(p, fn, user);
    if (line[0] == ':') return 0; /* comment / keep-alive */
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon ? (size_t)(colon - line) : len;
    const char *value = colon ? colon + 1 : line + len;
    size_t value_len = colon ? len - name_len - 1 : 0;
    if (value_len && value[0] == ' ') value++, value_len--;
    if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        if (p->data.len + value_len + 1 > UP_SSE_MAX_LINE) {
            snprintf(p->error, sizeof p->error, "upstream event longer than %u bytes", UP_SSE_MAX_LINE);
            return -1;
        }
        if ((p->has_data && !slm_buf_append(&p->data, "\n", 1)) || !slm_buf_append(&p->data, value, value_len)) {
            snprintf(p->error, sizeof p->error, "out of memory reading the upstream stream");
            return -1;
        }
        p->has_data = true;
    } else if (name_len == 5 && memcmp(line, "event", 5) == 0) {
        size_t n = value_len < sizeof p->event - 1 ? value_len : sizeof p->event - 1;
        memcpy(p->event, value, n);
        p->event[n] = 0;
    } /* id:, retry: and unknown fields mean nothing here */
    return 0;
}

int up_sse_feed(up_sse *p, const char *bytes, size_t n, up_sse_event_fn fn, void *user) {
    size_t i = 0;
    while (i < n) {
        if (p->after_cr && bytes[i] == '\n') { /* the LF of a CRLF split across reads */
            p->after_cr = false;
            i++;
            continue;
        }
        p->after_cr = false;
        size_t j = i;
        while (j < n && bytes[j] != '\n' && bytes[j] != '\r') j++;
        if (p->line.len + (j - i) > UP_SSE_MAX_LINE) {
            snprintf(p->error, sizeof p->error, "upstream sent a line longer than %u bytes", UP_SSE_MAX_LINE);
            return -1;
        }
        if (j == n) { /* no terminator yet: keep the piece for the next read */
            if (!slm_buf_append(&p->line, bytes + i, j - i)) {
                snprintf(p->error, sizeof p->error, "out of memory reading the upstream stream");
                return -1;
            }
            break;
        }
        int rc;
        if (p->line.len) {
            if (!slm_buf_append(&p->line, bytes + i, j - i)) {
                snprintf(p->error, sizeof p->error, "out of memory reading the upstream stream");
                return -1;
            }
            rc = take_line(p, p->line.s, p->line.len, fn, user);
            slm_buf_clear(&p->line);
        } else {
            rc = take_line(p, bytes + i, j - i, fn, user);
        }
        if (bytes[j] == '\r') {
            if (j + 1 < n && bytes[j + 1] == '\n') j++;
            else if (j + 1 == n) p->after_cr = true;
        }
        i = j + 1;
        if (rc) return rc;
    }
    return 0;
}

void up_sse_free(up_sse *p) {
    slm_buf_free(&p->line);
    slm_buf_free(&p->data);
}

/* ---------- OpenAI chunks ---------- */

/* Copies text to out collapsing runs of whitespace (newlines included) into one space, trimmed,
 * cut at a UTF-8 boundary with "…" when it does not fit. */
static void one_line(const char *text, size_t len, char *out, size_t out_len) {
    if (!out_len) return;
    size_t o = 0;
    bool space = false, cut = false;
    for (size_t i = 0; i < len && text[i]; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            space = o > 0;
            continue;
        }
        if (c < 0x20 || c == 0x7f) c = '?';
        size_t need = (space ? 1u : 0u) + 1;
        if (o + need + 4 > out_len) { /* keep room for "…" and the NUL */
            cut = true;
            break;
        }
        if (space) out[o++] = ' ';
        space = false;
        out[o++] = (char)c;
    }
    if (cut) {
        while (o > 0 && ((unsigned char)out[o - 1] & 0xC0) == 0x80) o--;     /* continuation bytes */
        if (o > 0 && ((unsigned char)out[o - 1] & 0xC0) == 0xC0) o--;        /* their lead byte */
        memcpy(out + o, "\xE2\x80\xA6", 3);
        o += 3;
    }
    out[o] = 0;
}

static const char *json_str(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The message of an "error" member (object with message, or a string). */
static bool error_member(json_t *root, char *out, size_t out_len) {
    json_t *e = json_object_get(root, "error");
    if (!e || json_is_null(e)) return false;
    const char *msg = json_is_string(e) ? json_string_value(e) : json_str(e, "message");
    if (!msg) msg = "upstream reported an error without a message";
    one_line(msg, strlen(msg), out, out_len);
    return true;
}

void up_error_message(const char *body, size_t len, char *out, size_t out_len) {
    if (!out_len) return;
    out[0] = 0;
    if (!body || !len) return;
    json_t *root = json_loadb(body, len, 0, NULL);
    if (root && json_is_object(root)) {
        if (!error_member(root, out, out_len)) {
            const char *msg = json_str(root, "message");
            if (!msg) msg = json_str(root, "detail");
            if (msg) one_line(msg, strlen(msg), out, out_len);
        }
    }
    json_decref(root);
    if (!out[0]) one_line(body, len, out, out_len);
}

void up_chunk_parse(const char *event, const char *data, size_t len, up_chunk *out) {
    memset(out, 0, sizeof *out);
    out->kind = UP_CHUNK_OK;
    while (len && (data[len - 1] == ' ' || data[len - 1] == '\t')) len--;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        out->kind = UP_CHUNK_DONE;
        return;
    }
    json_error_t jerr;
    json_t *root = json_loadb(data, len, 0, &jerr);
    if (!root || !json_is_object(root)) {
        out->kind = UP_CHUNK_ERROR;
        if (event && strcmp(event, "error") == 0)
            one_line(data, len, out->error, sizeof out->error);
        else
            snprintf(out->error, sizeof out->error, "upstream sent a malformed stream chunk (%.120s)",
                     root ? "not a JSON object" : jerr.text);
        json_decref(root);
        return;
    }
    if (error_member(root, out->error, sizeof out->error) || (event && strcmp(event, "error") == 0)) {
        out->kind = UP_CHUNK_ERROR;
        if (!out->error[0]) up_error_message(data, len, out->error, sizeof out->error);
        json_decref(root);
        return;
    }
    json_t *choices = json_object_get(root, "choices");
    if (choices && !json_is_array(choices)) {
        out->kind = UP_CHUNK_ERROR;
        snprintf(out->error, sizeof out->error, "upstream chunk has a 'choices' that is not an array");
        json_decref(root);
        return;
    }
    size_t n_choices = json_array_size(choices);
    for (size_t i = 0; i < n_choices; i++) {
        json_t *c = json_array_get(choices, i);
        json_t *index = json_object_get(c, "index");
        if (!json_is_object(c) || (index && json_integer_value(index) != 0)) continue; /* we ask for one choice */
        json_t *text = json_object_get(json_object_get(c, "delta"), "content");
        if (!text) text = json_object_get(json_object_get(c, "message"), "content");
        if (!text) text = json_object_get(c, "text");
        if (json_is_string(text) && json_string_length(text) > 0) {
            size_t n = json_string_length(text);
            out->text = malloc(n + 1);
            if (!out->text) {
                out->kind = UP_CHUNK_ERROR;
                snprintf(out->error, sizeof out->error, "out of memory reading the upstream stream");
                break;
            }
            memcpy(out->text, json_string_value(text), n + 1);
            out->text_len = n;
        }
        const char *fr = json_str(c, "finish_reason");
        if (fr) snprintf(out->finish_reason, sizeof out->finish_reason, "%s", fr[0] ? fr : "stop");
        break;
    }
    json_t *usage = json_object_get(root, "usage");
    if (json_is_object(usage)) {
        json_t *pt = json_object_get(usage, "prompt_tokens"), *ct = json_object_get(usage, "completion_tokens");
        if (json_is_integer(pt) && json_is_integer(ct) && json_integer_value(pt) >= 0 && json_integer_value(ct) >= 0) {
            out->has_usage = true;
            out->prompt_tokens = (long)json_integer_value(pt);
            out->completion_tokens = (long)json_integer_value(ct);
        }
    }
    json_decref(root);
}

void up_chunk_free(up_chunk *c) {
    free(c->text);
    c->text = NULL;
}
