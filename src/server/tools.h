/* Tool calling on the wire: the request's "tools", "tool_choice" and "parallel_tool_calls"
 * (OpenAI and Ollama share the shape), the grammar that constrains the calls, and the ids. */
#ifndef SLM_SERVER_TOOLS_H
#define SLM_SERVER_TOOLS_H

#include <jansson.h>
#include <stdbool.h>

#include "fields.h"
#include "state.h"

#define SRV_MAX_TOOLS 128                 /* tools one request may define */
#define SRV_MAX_TOOL_SCHEMA_BYTES (256 << 10) /* their parameter schemas together, compact JSON */

typedef enum { SRV_TOOLS_NONE, SRV_TOOLS_AUTO, SRV_TOOLS_REQUIRED, SRV_TOOLS_NAMED } srv_tool_choice;

typedef struct srv_tools {
    slm_tool *tools; /* names and descriptions point into the request JSON; parameters are owned */
    size_t n;
    slm_tool_format format; /* the served model's */
    srv_tool_choice choice;
    int named;     /* SRV_TOOLS_NAMED: index of the tool */
    bool parallel; /* parallel_tool_calls (default true) */
} srv_tools;

/* Reads and checks tools / tool_choice / parallel_tool_calls: each bad value is a 400 (param
 * "tools" for anything inside the list, the message naming the exact place, e.g.
 * 'tools[3].function.name'). With no tools, choice is NONE. */
bool srv_parse_tools(const srv_model *m, json_t *req, srv_tools *t, srv_fail *f);
/* True when the reply must be parsed for calls (tools given and choice is not none). */
bool srv_tools_active(const srv_tools *t);
/* Compiles the calls' grammar into p->grammar (within the structured-output time limit,
 * cancelled when the client leaves); a schema the compiler refuses is a 400 naming the tool. */
bool srv_tools_constrain(srv_conn *c, const srv_model *m, const srv_tools *t, slm_gen_params *p, srv_fail *f);
void srv_tools_free(srv_tools *t);
/* A new call id: "call_" and 24 hex digits. */
void srv_tool_call_id(srv_server *s, char *out, size_t cap);

#endif
