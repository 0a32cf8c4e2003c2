/* Tool definitions and tool_choice from a request, and the grammar that makes every call valid. */
#include "tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calls.h"
#include "replies.h"

void srv_tools_free(srv_tools *t) {
    for (size_t i = 0; i < t->n; i++) free((char *)t->tools[i].parameters);
    free(t->tools);
    memset(t, 0, sizeof *t);
}

bool srv_tools_active(const srv_tools *t) { return t->n > 0 && t->choice != SRV_TOOLS_NONE; }

void srv_tool_call_id(srv_server *s, char *out, size_t cap) {
    snprintf(out, cap, "call_%016llx%08llx", (unsigned long long)srv_random_seed(s),
             (unsigned long long)(srv_random_seed(s) & 0xffffffffull));
}

static bool valid_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool srv_parse_tools(const srv_model *M, json_t *req, srv_tools *t, srv_fail *f) {
    memset(t, 0, sizeof *t);
    t->parallel = true;
    t->named = -1;
    json_t *tools = json_object_get(req, "tools");
    json_t *choice = json_object_get(req, "tool_choice");
    if (!srv_json_bool(req, "parallel_tool_calls", &t->parallel, f)) return false;
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) return srv_failf(f, 400, NULL, "tools", "'tools' must be an array of tool definitions");
        size_t n = json_array_size(tools);
        if (n > SRV_MAX_TOOLS)
            return srv_failf(f, 400, "too_many_tools", "tools", "'tools' has %zu entries; at most %d are allowed", n,
                             SRV_MAX_TOOLS);
        t->tools = calloc(n ? n : 1, sizeof *t->tools);
        if (!t->tools) return srv_failf(f, 500, NULL, "tools", "out of memory");
        size_t schema_bytes = 0;
        for (size_t i = 0; i < n; i++) {
            json_t *d = json_array_get(tools, i);
            char field[96];
            snprintf(field, sizeof field, "tools[%zu]", i);
            if (!json_is_object(d)) return srv_failf(f, 400, NULL, "tools", "'%s' must be an object", field);
            json_t *type = json_object_get(d, "type");
            snprintf(field, sizeof field, "tools[%zu].type", i);
            if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0)
                return srv_failf(f, 400, "unsupported", "tools", "'%s' must be \"function\" (the only tool type served)", field);
            json_t *fn = json_object_get(d, "function");
            snprintf(field, sizeof field, "tools[%zu].function", i);
            if (!json_is_object(fn)) return srv_failf(f, 400, NULL, "tools", "'%s' must be an object", field);
            json_t *name = json_object_get(fn, "name");
            snprintf(field, sizeof field, "tools[%zu].function.name", i);
            if (!json_is_string(name) || !valid_name(json_string_value(name)))
                return srv_failf(f, 400, NULL, "tools", "'%s' must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -", field);
            const char *nm = json_string_value(name);
            for (size_t k = 0; k < i; k++)
                if (strcmp(t->tools[k].name, nm) == 0)
                    return srv_failf(f, 400, "duplicate_tool", "tools", "'%s': the function name '%s' is already defined by tools[%zu]",
                                     field, nm, k);
            json_t *desc = json_object_get(fn, "description");
            snprintf(field, sizeof field, "tools[%zu].function.description", i);
            if (desc && !json_is_null(desc) && !json_is_string(desc)) return srv_failf(f, 400, NULL, "tools", "'%s' must be a string", field);
            json_t *params = json_object_get(fn, "parameters");
            snprintf(field, sizeof field, "tools[%zu].function.parameters", i);
            if (params && !json_is_null(params) && !json_is_object(params))
                return srv_failf(f, 400, NULL, "tools", "'%s' must be a JSON Schema object", field);
            json_t *strict = json_object_get(fn, "strict");
            if (strict && !json_is_null(strict) && !json_is_boolean(strict)) {
                snprintf(field, sizeof field, "tools[%zu].function.strict", i);
                return srv_failf(f, 400, NULL, "tools", "'%s' must be a boolean", field);
            }
            char *schema = params && !json_is_null(params) ? json_dumps(params, JSON_COMPACT | JSON_PRESERVE_ORDER)
                                                         : strdup("{\"type\":\"object\",\"properties\":{}}");
            if (!schema) return srv_failf(f, 500, NULL, field, "out of memory");
            t->tools[i].parameters = schema;
            t->tools[i].name = nm;
            t->tools[i].description = json_is_string(desc) ? json_string_value(desc) : NULL;
            t->n = i + 1;
            schema_bytes += strlen(schema) + (t->tools[i].description ? strlen(t->tools[i].description) : 0);
            if (schema_bytes > SRV_MAX_TOOL_SCHEMA_BYTES)
                return srv_failf(f, 400, "tools_too_large", "tools",
                                 "'tools' schemas and descriptions exceed %d bytes together (at tools[%zu])",
                                 SRV_MAX_TOOL_SCHEMA_BYTES, i);
        }
    }
    t->choice = t->n ? SRV_TOOLS_AUTO : SRV_TOOLS_NONE;
    if (choice && !json_is_null(choice)) {
        if (json_is_string(choice)) {
            const char *c = json_string_value(choice);
            if (strcmp(c, "none") == 0) t->choice = SRV_TOOLS_NONE;
            else if (strcmp(c, "auto") == 0) t->choice = t->n ? SRV_TOOLS_AUTO : SRV_TOOLS_NONE;
            else if (strcmp(c, "required") == 0) t->choice = SRV_TOOLS_REQUIRED;
            else return srv_failf(f, 400, NULL, "tool_choice", "'tool_choice' must be none, auto, required or {\"type\":\"function\",\"function\":{\"name\":...}}");
        } else if (json_is_object(choice)) {
            json_t *type = json_object_get(choice, "type"), *fn = json_object_get(choice, "function");
            json_t *name = json_is_object(fn) ? json_object_get(fn, "name") : NULL;
            if (!json_is_string(type) || strcmp(json_string_value(type), "function") != 0 || !json_is_string(name))
                return srv_failf(f, 400, NULL, "tool_choice", "'tool_choice' as an object must be {\"type\":\"function\",\"function\":{\"name\":...}}");
            for (size_t k = 0; k < t->n && t->named < 0; k++)
                if (strcmp(t->tools[k].name, json_string_value(name)) == 0) t->named = (int)k;
            if (t->named < 0)
                return srv_failf(f, 400, NULL, "tool_choice.function.name", "'tool_choice.function.name' '%.64s' names no tool in 'tools'",
                                 json_string_value(name));
            t->choice = SRV_TOOLS_NAMED;
        } else {
            return srv_failf(f, 400, NULL, "tool_choice", "'tool_choice' must be a string or an object");
        }
        if ((t->choice == SRV_TOOLS_REQUIRED) && t->n == 0)
            return srv_failf(f, 400, NULL, "tool_choice", "'tool_choice' is 'required' but 'tools' is empty");
    }
    t->format = slm_tool_format_for(M->model, M->template_name[0] ? M->template_name : NULL);
    return true;
}

#define SRV_TOOLS_COMPILE_SECONDS 5.0

static bool compile_cancel(void *user) {
    srv_conn *c = user;
    return atomic_load(&c->srv->draining) || srv_conn_gone(c);
}

bool srv_tools_constrain(srv_conn *c, const srv_model *M, const srv_tools *t, slm_gen_params *p, srv_fail *f) {
    if (!srv_tools_active(t)) return true;
    if (p->grammar) {
        slm_grammar_free(p->grammar);
        p->grammar = NULL;
        return srv_failf(f, 400, NULL, "tool_choice",
                         "tool calls cannot be combined with 'response_format', 'grammar' or 'json_schema' (use tool_choice \"none\")");
    }
    double budget = SRV_TOOLS_COMPILE_SECONDS;
    if (c->srv->cfg.request_timeout_s > 0 && c->srv->cfg.request_timeout_s < budget) budget = c->srv->cfg.request_timeout_s;
    slm_grammar_limits lim = {0};
    lim.deadline = slm_grammar_now() + budget;
    lim.cancel = compile_cancel;
    lim.cancel_user = c;
    slm_tool_mode mode = t->choice == SRV_TOOLS_AUTO ? SLM_TOOL_MODE_AUTO : SLM_TOOL_MODE_REQUIRED;
    char *gbnf = NULL, err[384];
    int bad = -1;
    int rc = slm_tool_gbnf(t->format, t->tools, t->n, mode, t->choice == SRV_TOOLS_NAMED ? t->named : -1, t->parallel, &lim,
                           &gbnf, &bad, err, sizeof err);
    if (rc == 0) {
        rc = slm_grammar_compile_limited(M->model, gbnf, &lim, &p->grammar, err, sizeof err);
        free(gbnf);
        if (rc == 0) {
            slm_grammar_set_open_ended(p->grammar, mode == SLM_TOOL_MODE_AUTO || t->parallel);
            return true;
        }
    }
    p->grammar = NULL;
    if (rc == SLM_GRAMMAR_CANCELLED) {
        if (atomic_load(&c->srv->draining)) return srv_failf(f, 503, "shutting_down", NULL, "server is shutting down");
        return srv_failf(f, SRV_STATUS_GONE, NULL, "tools", "client gone while compiling 'tools'");
    }
    char field[96];
    if (bad >= 0)
        snprintf(field, sizeof field, "tools[%d].function.parameters", bad);
    else
        snprintf(field, sizeof field, "tools");
    if (rc == SLM_GRAMMAR_TOO_LARGE)
        return srv_failf(f, 400, "constraint_too_large", "tools", "'%s'%s%s is too large to compile: %s", field,
                         bad >= 0 ? " of " : "", bad >= 0 ? t->tools[bad].name : "", err);
    return srv_failf(f, 400, "invalid_tool_schema", "tools", "'%s'%s%s: %s", field, bad >= 0 ? " of tool " : "",
                     bad >= 0 ? t->tools[bad].name : "", err);
}
