#include "tokenizer/strmap.h"

#include <stdlib.h>
#include <string.h>

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static uint64_t fnv_update(uint64_t h, const char *p, size_t n) {
    const unsigned char *s = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Folds the 64-bit FNV state so both halves influence the slot index. */
static uint32_t fnv_finish(uint64_t h) { return (uint32_t)(h ^ (h >> 32)); }

int strmap_init(strmap *m, size_t expected) {
    size_t cap = 16;
    /* Load factor at most 3/4 keeps probe chains short. */
    while (cap < expected + expected / 3 + 1) {
        cap <<= 1;
        if (cap > ((size_t)1 << 31)) return -1;
    }
    m->slots = malloc(cap * sizeof *m->slots);
    if (!m->slots) return -1;
    for (size_t i = 0; i < cap; i++) m->slots[i].value = -1;
    m->mask = (uint32_t)(cap - 1);
    m->count = 0;
    return 0;
}

void strmap_free(strmap *m) {
    free(m->slots);
    m->slots = NULL;
    m->mask = 0;
    m->count = 0;
}

int strmap_put(strmap *m, const char *key, size_t len, int32_t value, int32_t *existing) {
    if ((size_t)m->count + 1 > (size_t)m->mask) return -1;
    uint32_t h = fnv_finish(fnv_update(FNV_OFFSET, key, len));
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        strmap_slot *s = &m->slots[i];
        if (s->value < 0) {
            s->key = key;
            s->len = (uint32_t)len;
            s->hash = h;
            s->value = value;
            m->count++;
            return 0;
        }
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
            if (existing) *existing = s->value;
            return 1;
        }
    }
}

int32_t strmap_get(const strmap *m, const char *key, size_t len) {
    strmap_part part = {key, len};
    return strmap_get_parts(m, &part, 1);
}

int32_t strmap_get_parts(const strmap *m, const strmap_part *parts, int n_parts) {
    if (!m->slots) return -1;
    uint64_t h64 = FNV_OFFSET;
    size_t total = 0;
    for (int p = 0; p < n_parts; p++) {
        h64 = fnv_update(h64, parts[p].ptr, parts[p].len);
        total += parts[p].len;
    }
    uint32_t h = fnv_finish(h64);
    for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
        const strmap_slot *s = &m->slots[i];
        if (s->value < 0) return -1;
        if (s->hash != h || s->len != total) continue;
        const char *k = s->key;
        int same = 1;
        for (int p = 0; p < n_parts && same; p++) {
            if (parts[p].len && memcmp(k, parts[p].ptr, parts[p].len) != 0) same = 0;
            k += parts[p].len;
        }
        if (same) return s->value;
    }
}
