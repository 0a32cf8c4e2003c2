/* Private to the JSON Schema → GBNF converter (json_schema*.c): the conversion state and the
 * pieces that live in their own files (integer/number ranges, the pattern regex subset). */
#ifndef SLM_SAMPLE_JSON_SCHEMA_IMPL_H
#define SLM_SAMPLE_JSON_SCHEMA_IMPL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sample/grammar_impl.h"
#include "util/buf.h"

#define INT_LIMIT 9999999999999999LL /* 16 digits: integers jansson reads exactly */
#define NUM_INT_LIMIT 999999999LL    /* bounded decimals: 9 + 6 digits stay exact in a double */

typedef struct ref_entry {
    const json_t *node;
    char name[32];
} ref_entry;

typedef struct conv {
    json_t *root;
    slm_buf out;
    int n_rules;
    ref_entry *refs;
    size_t n_refs, cap_refs;
    uint32_t *ref_tab; /* open-addressing hash of refs by node: index + 1, 0 = empty */
    size_t ref_tab_cap; /* power of two */
    int depth;
    bool failed;
    int code; /* SLM_GRAMMAR_* once failed */
    gram_guard *guard;
    json_t *derived; /* schema nodes built while converting (if/then/else branches, filtered enums): kept alive here */
    char *err;
    size_t err_len;
} conv;

/* Records the first error (later ones are ignored); the message is escaped to one line. */
__attribute__((format(printf, 2, 3))) void js_fail(conv *c, const char *fmt, ...);
/* GBNF string literal for raw bytes. */
void js_put_literal(slm_buf *b, const char *s, size_t n);

/* json_schema_range.c: "integer" / "number" with minimum, maximum and their exclusive forms. */
void js_gen_integer(conv *c, const json_t *s, slm_buf *b);
void js_gen_number(conv *c, const json_t *s, slm_buf *b);
/* multipleOf (with the bounds) for "integer" or "number"; js_gen_integer/js_gen_number call it. */
void js_gen_multiple(conv *c, const json_t *s, slm_buf *b, bool integer);

/* json_schema_regex.c: a JSON string whose content matches `pat` (docs/grammar.md subset). */
void js_gen_pattern(conv *c, const char *pat, size_t len, slm_buf *b);

#endif
