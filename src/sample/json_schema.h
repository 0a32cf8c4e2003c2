/* JSON Schema (a documented subset, docs/grammar.md) → GBNF grammar text. */
#ifndef SLM_SAMPLE_JSON_SCHEMA_H
#define SLM_SAMPLE_JSON_SCHEMA_H

#include <stddef.h>

#include "slm.h"

/* Converts schema text to GBNF (malloc'd, NUL-terminated) whose sentences are compact JSON texts
 * valid against the schema. The schema {"type":"json_object"} means "any JSON object". An
 * unsupported keyword or construct is an error naming it. */
int slm_json_schema_to_gbnf(const char *schema_json, char **gbnf_out, char *err, size_t err_len);
/* slm_json_schema_to_gbnf within `limits` (NULL = defaults), the same checks as
 * slm_grammar_from_json_schema_limited; returns 0 or an SLM_GRAMMAR_* code. */
int slm_json_schema_to_gbnf_limited(const char *schema_json, const slm_grammar_limits *limits, char **gbnf_out,
                                    char *err, size_t err_len);

#endif
