/* Semantic checks on generated JSON that a context-free grammar cannot express: the items of a
 * uniqueItems array differ, and the keys of an object differ. The grammar marks where such a value
 * opens (grammar_impl.h); from there this follows the compact JSON text byte by byte (the grammar
 * already guarantees its syntax) and refuses the byte that would complete a duplicate: the closing
 * quote of a repeated string or key, the ']' / '}' of a repeated container, the delimiter after a
 * repeated number or literal. Alternatives stay open (a longer string, another digit), so the
 * constrained sampler masks the duplicate instead of reaching a dead end.
 *
 * Items compare by JSON value (1 equals 1.0, objects in any key order): each completed item of a
 * unique array is kept in a canonical form. Keys compare by their raw bytes (the grammars written
 * by json_schema.c escape nothing that has two spellings). */
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sample/grammar_impl.h"

typedef struct jframe {
    uint32_t item_start; /* text offset where the current item (array) begins */
    uint32_t items_begin, keys_begin;
    uint8_t kind;  /* '[' or '{' */
    uint8_t flags; /* GRAM_FLAG_* */
    bool expect_key;
} jframe;

typedef struct span {
    uint32_t off, len;
    uint32_t depth; /* of the frame it belongs to (a check leaves closed frames' entries in place) */
    uint32_t raw_off, raw_len; /* items: the text as written (keys: off/len are already raw) */
} span;

struct gram_json {
    char *text; /* every byte since the last reset (offsets in frames point here) */
    size_t len, cap;
    jframe *frames;
    size_t depth, cap_frames;
    bool in_str, esc, str_key, in_scalar;
    bool checking; /* inside gram_json_check: closing a frame keeps its pool entries (they may be the caller's) */
    uint32_t str_start;
    /* canonical items of the open unique arrays (a stack: inner arrays above outer ones) */
    char *canon;
    size_t canon_len, canon_cap;
    span *items;
    size_t n_items, cap_items;
    span *keys; /* keys of the open objects, spans of text */
    size_t n_keys, cap_keys;
    /* scratch for gram_json_check */
    jframe *saved;
    size_t cap_saved;
};

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t n = *cap ? *cap : 16;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return false;
    *p = q;
    *cap = n;
    return true;
}

gram_json *gram_json_new(void) { return calloc(1, sizeof(gram_json)); }

void gram_json_free(gram_json *j) {
    if (!j) return;
    free(j->text);
    free(j->frames);
    free(j->canon);
    free(j->items);
    free(j->keys);
    free(j->saved);
    free(j);
}

void gram_json_reset(gram_json *j) {
    if (!j) return;
    j->len = 0;
    j->depth = 0;
    j->in_str = j->esc = j->str_key = j->in_scalar = false;
    j->canon_len = j->n_items = j->n_keys = 0;
}

/* Integral reals become integers so 1.0 and 1 print alike; object keys print sorted. */
static json_t *normalise(json_t *v) {
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (floor(d) == d && fabs(d) < 9e15) {
            json_t *i = json_integer((json_int_t)d);
            json_decref(v);
            return i;
        }
        return v;
    }
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            json_array_set_new(v, i, normalise(json_incref(json_array_get(v, i))));
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) json_object_set_new(v, k, normalise(json_incref(x)));
    }
    return v;
}

/* The item text[from, to) of a unique array: false if it equals an earlier item, else it is kept. */
static bool item_done(gram_json *j, const jframe *f, size_t from, size_t to) {
    json_t *v = json_loadb(j->text + from, to - from, JSON_DECODE_ANY, NULL);
    if (!v) return true; /* not JSON on its own: nothing to compare (the grammar decides validity) */
    v = normalise(v);
    char *c = v ? json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
    json_decref(v);
    if (!c) return true;
    size_t n = strlen(c);
    bool dup = false;
    for (size_t i = f->items_begin; i < j->n_items && !dup; i++)
        dup = j->items[i].depth == j->depth && j->items[i].len == n && !memcmp(j->canon + j->items[i].off, c, n);
    if (!dup && grow((void **)&j->canon, &j->canon_cap, j->canon_len + n, 1) &&
        grow((void **)&j->items, &j->cap_items, j->n_items + 1, sizeof *j->items)) {
        memcpy(j->canon + j->canon_len, c, n);
        j->items[j->n_items++] =
            (span){(uint32_t)j->canon_len, (uint32_t)n, (uint32_t)j->depth, (uint32_t)from, (uint32_t)(to - from)};
        j->canon_len += n;
    }
    free(c);
    return !dup;
}

/* A value ended at text offset `end` inside the top frame. */
static bool value_done(gram_json *j, size_t end) {
    if (j->depth == 0) return true;
    jframe *f = &j->frames[j->depth - 1];
    if (f->kind == '[' && (f->flags & GRAM_FLAG_UNIQUE_ITEMS)) return item_done(j, f, f->item_start, end);
    return true;
}

static bool key_done(gram_json *j, size_t from, size_t to) {
    jframe *f = &j->frames[j->depth - 1];
    size_t n = to - from;
    for (size_t i = f->keys_begin; i < j->n_keys; i++)
        if (j->keys[i].depth == j->depth && j->keys[i].len == n && !memcmp(j->text + j->keys[i].off, j->text + from, n)) return false;
    if (grow((void **)&j->keys, &j->cap_keys, j->n_keys + 1, sizeof *j->keys))
        j->keys[j->n_keys++] = (span){(uint32_t)from, (uint32_t)n, (uint32_t)j->depth, (uint32_t)from, (uint32_t)n};
    return true;
}

/* One byte at text offset pos (already stored); false if it completes a duplicate. */
static bool feed(gram_json *j, size_t pos, uint8_t flag) {
    char b = j->text[pos];
    if (j->in_str) {
        if (j->esc) {
            j->esc = false;
        } else if (b == '\\') {
            j->esc = true;
        } else if (b == '"') {
            j->in_str = false;
            return j->str_key ? key_done(j, j->str_start + 1, pos) : value_done(j, pos + 1);
        }
        return true;
    }
    if (j->in_scalar) {
        if (b != ',' && b != ']' && b != '}') return true;
        j->in_scalar = false;
        if (!value_done(j, pos)) return false;
    }
    if (j->depth == 0 && !((b == '[' || b == '{') && flag)) return true; /* outside any marked value */
    jframe *top = j->depth ? &j->frames[j->depth - 1] : NULL;
    switch (b) {
    case '"':
        j->in_str = true;
        j->str_start = (uint32_t)pos;
        j->str_key = top->kind == '{' && top->expect_key;
        return true;
    case '[':
    case '{':
        if (!grow((void **)&j->frames, &j->cap_frames, j->depth + 1, sizeof *j->frames)) return true;
        j->frames[j->depth++] = (jframe){.item_start = (uint32_t)pos + 1,
                                         .items_begin = (uint32_t)j->n_items,
                                         .keys_begin = (uint32_t)j->n_keys,
                                         .kind = (uint8_t)b,
                                         .flags = flag,
                                         .expect_key = b == '{'};
        return true;
    case ']':
    case '}':
        if (!j->checking) {
            j->n_items = top->items_begin;
            j->canon_len = j->n_items ? j->items[j->n_items - 1].off + j->items[j->n_items - 1].len : 0;
            j->n_keys = top->keys_begin;
        }
        j->depth--;
        return value_done(j, pos + 1);
    case ',':
        if (top->kind == '{') top->expect_key = true;
        else top->item_start = (uint32_t)pos + 1;
        return true;
    case ':':
        top->expect_key = false;
        return true;
    default:
        j->in_scalar = true;
        return true;
    }
}

bool gram_json_active(const gram_json *j) { return j && j->depth > 0; }

bool gram_json_idle_for(const gram_json *j, const char *bytes, size_t n) {
    if (j->depth) return false;
    return !memchr(bytes, '[', n) && !memchr(bytes, '{', n);
}

/* Feeds the bytes; on a duplicate stops and returns false (the state is then inconsistent: the
 * callers restore or never use it). */
static bool run(gram_json *j, const char *bytes, size_t n, const uint8_t *flags) {
    if (!grow((void **)&j->text, &j->cap, j->len + n, 1)) return true; /* out of memory: no check */
    memcpy(j->text + j->len, bytes, n);
    for (size_t i = 0; i < n; i++) {
        j->len++;
        if (!feed(j, j->len - 1, flags ? flags[i] : 0)) return false;
    }
    return true;
}

/* Is the item or key being written a prefix of an earlier sibling's text? Then it may be heading
 * for a duplicate, and the caller looks ahead for a completion that is not one. */
static bool at_risk(const gram_json *j) {
    if (!j->depth) return false;
    const jframe *top = &j->frames[j->depth - 1];
    if (j->in_str && j->str_key) {
        size_t from = j->str_start + 1, n = j->len - from;
        for (size_t i = top->keys_begin; i < j->n_keys; i++)
            if (j->keys[i].depth == j->depth && j->keys[i].len >= n && !memcmp(j->text + j->keys[i].off, j->text + from, n))
                return true;
        /* not heading for a repeated key, but the object may be an item heading for a repeated item */
    }
    size_t u = j->depth;
    while (u-- > 0)
        if (j->frames[u].kind == '[' && (j->frames[u].flags & GRAM_FLAG_UNIQUE_ITEMS)) break;
    if (u == (size_t)-1) return false;
    if (u == j->depth - 1 && !j->in_str && !j->in_scalar) return false; /* between items */
    const jframe *f = &j->frames[u];
    size_t from = f->item_start, n = j->len - from;
    for (size_t i = f->items_begin; i < j->n_items; i++)
        if (j->items[i].depth == u + 1 && j->items[i].raw_len >= n && !memcmp(j->text + j->items[i].raw_off, j->text + from, n))
            return true;
    return false;
}

/* Could the next bytes start or continue a duplicate? at_risk, or about to start an item of a
 * unique array that has items, or a key of an object that has keys. */
bool gram_json_at_risk(const gram_json *j) {
    if (!j || !j->depth) return false;
    if (at_risk(j)) return true;
    if (j->in_str || j->in_scalar) return false;
    const jframe *top = &j->frames[j->depth - 1];
    if (top->kind == '[') return (top->flags & GRAM_FLAG_UNIQUE_ITEMS) && j->n_items > top->items_begin;
    return top->expect_key && j->n_keys > top->keys_begin;
}

bool gram_json_check_ex(gram_json *j, const char *bytes, size_t n, const uint8_t *flags, bool *risk) {
    *risk = false;
    if (!j || gram_json_idle_for(j, bytes, n)) return true;
    if (!grow((void **)&j->saved, &j->cap_saved, j->depth + 1, sizeof *j->saved)) return true;
    size_t depth = j->depth, len = j->len, canon_len = j->canon_len, n_items = j->n_items, n_keys = j->n_keys;
    bool in_str = j->in_str, esc = j->esc, str_key = j->str_key, in_scalar = j->in_scalar;
    uint32_t str_start = j->str_start;
    if (depth) memcpy(j->saved, j->frames, depth * sizeof *j->frames);
    j->checking = true;
    bool ok = run(j, bytes, n, flags);
    if (ok) *risk = at_risk(j);
    j->checking = false;
    if (depth) memcpy(j->frames, j->saved, depth * sizeof *j->frames);
    j->depth = depth, j->len = len, j->canon_len = canon_len, j->n_items = n_items, j->n_keys = n_keys;
    j->in_str = in_str, j->esc = esc, j->str_key = str_key, j->in_scalar = in_scalar, j->str_start = str_start;
    return ok;
}

bool gram_json_check(gram_json *j, const char *bytes, size_t n, const uint8_t *flags) {
    if (!j || gram_json_idle_for(j, bytes, n)) return true;
    /* Nothing can complete without one of these bytes (a string ends at '"', a container at its
     * bracket, a number or literal at the delimiter after it). */
    bool may_complete = false;
    for (size_t i = 0; i < n && !may_complete; i++)
        may_complete = bytes[i] == '"' || bytes[i] == ',' || bytes[i] == ']' || bytes[i] == '}';
    if (!may_complete) return true;
    /* run on a copy of the small state; the pools only grow above their saved lengths */
    if (!grow((void **)&j->saved, &j->cap_saved, j->depth + 1, sizeof *j->saved)) return true;
    size_t depth = j->depth, len = j->len, canon_len = j->canon_len, n_items = j->n_items, n_keys = j->n_keys;
    bool in_str = j->in_str, esc = j->esc, str_key = j->str_key, in_scalar = j->in_scalar;
    uint32_t str_start = j->str_start;
    if (depth) memcpy(j->saved, j->frames, depth * sizeof *j->frames);
    j->checking = true;
    bool ok = run(j, bytes, n, flags);
    j->checking = false;
    if (depth) memcpy(j->frames, j->saved, depth * sizeof *j->frames);
    j->depth = depth, j->len = len, j->canon_len = canon_len, j->n_items = n_items, j->n_keys = n_keys;
    j->in_str = in_str, j->esc = esc, j->str_key = str_key, j->in_scalar = in_scalar, j->str_start = str_start;
    return ok;
}

bool gram_json_accept(gram_json *j, const char *bytes, size_t n, const uint8_t *flags) {
    if (!j) return true;
    if (!gram_json_check(j, bytes, n, flags)) return false;
    run(j, bytes, n, flags);
    return true;
}
