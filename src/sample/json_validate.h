/* Validation of JSON texts against the JSON Schema subset slm_json_schema_to_gbnf supports: every
 * constrained result passes through here before it is returned. */
#ifndef SLM_SAMPLE_JSON_VALIDATE_H
#define SLM_SAMPLE_JSON_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

/* 0 if `text` (len bytes) is one JSON value valid against `schema_json`; else -1 with err naming
 * the first violation and where, e.g. "$.items[2].price: 12.5 is above the maximum 10". The schema
 * {"type":"json_object"} accepts any JSON object. */
int slm_json_validate(const char *schema_json, const char *text, size_t len, char *err, size_t err_len);

/* Copies jansson's error text (which quotes the input near the error, raw) into buf with control
 * characters written as \n, \t or \xHH, so an error about hostile input stays on one line.
 * Returns buf. */
const char *slm_json_error_line(const char *text, char *buf, size_t cap);

struct json_t;
/* Does a schema's "type" (a name such as "integer", or an array of names; NULL = any) admit the
 * value? An integer-valued real counts as an integer; unknown names admit nothing. */
bool slm_json_has_type(const struct json_t *types, const struct json_t *value);
/* The node a local $ref ("#", "#/$defs/a", "#/items/0"; ~0 and ~1 escapes) points to in root, or
 * NULL if it is not local or does not resolve. */
const struct json_t *slm_json_pointer(const struct json_t *root, const char *ref);

#endif
