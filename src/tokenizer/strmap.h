/* Open-addressing hash map from byte strings to non-negative int32 values (token ids, merge
 * ranks). Keys are not copied: they must stay valid as long as the map (the vocab keeps them in
 * its own arenas). A key can be looked up as the concatenation of several slices, which lets the
 * BPE merge table be probed with "left right" without building that string. */
#ifndef SLM_TOKENIZER_STRMAP_H
#define SLM_TOKENIZER_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct strmap_slot {
    const char *key;
    uint32_t len;
    uint32_t hash;
    int32_t value; /* < 0: empty slot */
} strmap_slot;

typedef struct strmap {
    strmap_slot *slots;
    uint32_t mask; /* capacity - 1, capacity a power of two */
    uint32_t count;
} strmap;

typedef struct strmap_part {
    const char *ptr;
    size_t len;
} strmap_part;

/* Sizes the table for `expected` keys (it never grows). Returns -1 on allocation failure. */
int strmap_init(strmap *m, size_t expected);
void strmap_free(strmap *m);
/* Inserts key → value (value >= 0). Returns 0 if inserted, 1 if the key was already there (its
 * value is left unchanged and written to *existing), -1 if the table is full. */
int strmap_put(strmap *m, const char *key, size_t len, int32_t value, int32_t *existing);
/* The value of the key, or -1. */
int32_t strmap_get(const strmap *m, const char *key, size_t len);
/* The value of the key made of the concatenated parts, or -1. */
int32_t strmap_get_parts(const strmap *m, const strmap_part *parts, int n_parts);

#endif
