/* Request-field validation: the JSON body and typed fields; a failure names its field. */
#ifndef SLM_SERVER_FIELDS_H
#define SLM_SERVER_FIELDS_H

#include <jansson.h>
#include <stdbool.h>

#include "state.h"

/* srv_fail.status for "the client is gone (or the work was cancelled for it): send nothing". */
#define SRV_STATUS_GONE 499

/* Field-level failure from a parser: HTTP status, the offending field and one line. */
typedef struct srv_fail {
    int status;
    const char *code; /* OpenAI error code or NULL */
    char param[96];
    char msg[384];
} srv_fail;

__attribute__((format(printf, 5, 6))) bool srv_failf(srv_fail *f, int status, const char *code, const char *param,
                                                      const char *fmt, ...);

/* ---------- JSON field helpers: false + srv_fail naming the field on a type/range error ---------- */

bool srv_json_string(json_t *obj, const char *key, const char **out, srv_fail *f);
bool srv_json_bool(json_t *obj, const char *key, bool *out, srv_fail *f);
bool srv_json_int(json_t *obj, const char *key, long long lo, long long hi, long long *out, bool *present, srv_fail *f);
bool srv_json_number(json_t *obj, const char *key, double lo, double hi, double *out, bool *present, srv_fail *f);
/* Copies a JSON array of token ids into out (room for its size); false if any is not an integer
 * in [0, n_vocab). */
bool srv_json_token_ids(json_t *arr, int n_vocab, slm_token *out);
/* Parses the body as a JSON object; fails 400 with position on a syntax error. */
json_t *srv_parse_body(srv_conn *c, srv_fail *f);

#endif
