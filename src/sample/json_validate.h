/* Validation of JSON texts against the JSON Schema subset slm_json_schema_to_gbnf supports: every
 * constrained result passes through here before it is returned. The public part, slm_json_validate
 * and slm_json_error_line, is declared in slm.h; these are the internal helpers on jansson values. */
#ifndef SLM_SAMPLE_JSON_VALIDATE_H
#define SLM_SAMPLE_JSON_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#include "slm.h"

struct json_t;
/* Does a schema's "type" (a name such as "integer", or an array of names; NULL = any) admit the
 * value? An integer-valued real counts as an integer; unknown names admit nothing. */
bool slm_json_has_type(const struct json_t *types, const struct json_t *value);
/* The node a local $ref ("#", "#/$defs/a", "#/items/0"; ~0 and ~1 escapes) points to in root, or
 * NULL if it is not local or does not resolve. */
const struct json_t *slm_json_pointer(const struct json_t *root, const char *ref);

/* JSON Schema equality (const, enum, uniqueItems): numbers by value, objects in any key order. */
bool slm_json_equal(const struct json_t *a, const struct json_t *b);
/* Is x an integer multiple of m (> 0), to a relative 1e-9 (decimal multipleOf values are inexact
 * in binary)? */
bool slm_json_is_multiple(double x, double m);
/* Does x pass `schema` (a node inside `root`, which $refs resolve against)? No message. */
bool slm_json_valid_node(const struct json_t *root, const struct json_t *schema, const struct json_t *x);
/* PCRE2 search of an ECMA-style pattern (unanchored), as the validator applies 'pattern'. */
bool slm_json_regex_search(const char *pat, const char *s, size_t n);

#endif
