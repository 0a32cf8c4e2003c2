/* JSON Schema → GBNF. */
#include "sample/json_schema.h"

#include <stdlib.h>
#include <string.h>

#include "sample/grammar.h"
#include "util/err.h"

int slm_json_schema_to_gbnf(const char *schema_json, char **gbnf_out, char *err, size_t err_len) {
    (void)schema_json;
    *gbnf_out = NULL;
    return slm_err(err, err_len, "json schema: not implemented yet");
}

int slm_grammar_from_json_schema(const slm_model *model, const char *schema_json, slm_grammar **out, char *err,
                                 size_t err_len) {
    if (!out) return slm_err(err, err_len, "json schema: no output pointer");
    *out = NULL;
    char *gbnf = NULL;
    if (slm_json_schema_to_gbnf(schema_json, &gbnf, err, err_len) != 0) return -1;
    int rc = slm_grammar_compile(model, gbnf, out, err, err_len);
    free(gbnf);
    return rc;
}
