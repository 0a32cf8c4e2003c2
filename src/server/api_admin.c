/* The admin API: keys (list, create, revoke) and the ledger summary. Admin keys only (or, on a
 * server with no key at all, a caller on loopback); the gate's admit stage decided which. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fields.h"
#include "handlers.h"
#include "replies.h"
#include "slm_engine.h"
#include "slm_govern.h"
#include "slm_store.h"

static bool admin_only(srv_conn *c) {
    if (!c->srv->store) {
        srv_reply_error(c, 404, "no_data_dir", NULL, "this server runs without a data directory (no keys, no ledger)");
        return false;
    }
    if (!c->call.admin) {
        srv_reply_error(c, 403, "admin_only", NULL, "this endpoint needs an admin key (slm keys create --admin)");
        return false;
    }
    return true;
}

static enum MHD_Result reply_text_json(srv_conn *c, int status, char *text, const char *err) {
    if (!text) return srv_reply_error(c, 500, NULL, NULL, err && *err ? err : "out of memory");
    enum MHD_Result r = srv_reply_bytes(c, status, "application/json", text, strlen(text));
    free(text);
    return r;
}

enum MHD_Result srv_admin_keys(srv_conn *c) {
    if (!admin_only(c)) return MHD_YES;
    char err[512] = "";
    slm_store *store = c->srv->store;
    if (strcmp(c->method, "POST") != 0) {
        char *list = slm_key_list_json(store, err, sizeof err);
        if (!list) return reply_text_json(c, 500, NULL, err);
        size_t n = strlen(list) + 64;
        char *body = malloc(n);
        if (body) snprintf(body, n, "{\"object\":\"list\",\"data\":%s}", list);
        free(list);
        return reply_text_json(c, 200, body, err);
    }
    slm_key_info key;
    if (slm_key_from_json(c->body.s ? c->body.s : "", c->body.len, &key, err, sizeof err))
        return srv_reply_error(c, 400, NULL, NULL, err);
    char secret[SLM_KEY_SECRET_LEN + 1];
    if (slm_key_create(store, &key, secret, err, sizeof err))
        return srv_reply_error(c, strstr(err, "already exists") ? 409 : 400, NULL, "name", err);
    char *desc = slm_key_json(&key);
    json_t *o = desc ? json_loads(desc, 0, NULL) : NULL;
    free(desc);
    if (o) json_object_set_new(o, "key", json_string(secret));
    memset(secret, 0, sizeof secret);
    return o ? srv_reply_json(c, 201, o) : srv_reply_error(c, 500, NULL, NULL, "out of memory");
}

enum MHD_Result srv_admin_key_revoke(srv_conn *c, const char *name) {
    if (!admin_only(c)) return MHD_YES;
    char err[512];
    int r = slm_store_key_revoke(c->srv->store, name, err, sizeof err);
    if (r < 0) return srv_reply_error(c, 500, NULL, NULL, err);
    if (r == 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "no active key named '%.100s'", name);
        return srv_reply_error(c, 404, "key_not_found", NULL, msg);
    }
    return srv_reply_json(c, 200, json_pack("{s:s, s:b}", "name", name, "revoked", 1));
}

static json_t *totals_json(const slm_ledger_totals *t) {
    double saved = t->frontier_cost - t->cost;
    return json_pack("{s:I, s:I, s:I, s:f, s:f, s:f, s:f}", "requests", (json_int_t)t->requests, "prompt_tokens",
                     (json_int_t)t->prompt_tokens, "completion_tokens", (json_int_t)t->completion_tokens, "cost", t->cost,
                     "frontier_cost", t->frontier_cost, "savings", saved, "local_share",
                     t->requests ? (double)t->local_requests / (double)t->requests : 0.0);
}

enum MHD_Result srv_admin_ledger(srv_conn *c) {
    if (!admin_only(c)) return MHD_YES;
    const char *since_s = MHD_lookup_connection_value(c->mhd, MHD_GET_ARGUMENT_KIND, "since");
    const char *by = MHD_lookup_connection_value(c->mhd, MHD_GET_ARGUMENT_KIND, "by");
    double since = 0;
    if (since_s) {
        char *end;
        since = strtod(since_s, &end);
        if (end == since_s || *end || !isfinite(since) || since < 0)
            return srv_reply_error(c, 400, NULL, "since", "'since' must be unix seconds");
    }
    char err[512];
    slm_ledger_totals *all = NULL, *groups = NULL;
    int n_all = slm_store_ledger_totals(c->srv->store, since, NULL, &all, err, sizeof err);
    if (n_all < 0) return srv_reply_error(c, 500, NULL, NULL, err);
    slm_ledger_totals zero = {0};
    json_t *o = totals_json(n_all ? &all[0] : &zero);
    free(all);
    if (by && *by) {
        int n = slm_store_ledger_totals(c->srv->store, since, by, &groups, err, sizeof err);
        if (n < 0) {
            json_decref(o);
            return srv_reply_error(c, 400, NULL, "by", err);
        }
        json_t *g = json_object();
        for (int i = 0; i < n; i++) {
            /* a group is whatever was recorded (a model name a client sent, say): bytes that are not
             * UTF-8 become U+FFFD rather than the group vanishing from the answer */
            char name[3 * sizeof groups[i].group + 16];
            size_t len = slm_utf8_sanitize(groups[i].group, strnlen(groups[i].group, sizeof groups[i].group), name);
            name[len] = 0;
            for (int k = 2; json_object_get(g, name); k++) snprintf(name + len, sizeof name - len, " (%d)", k);
            json_object_set_new(g, name, totals_json(&groups[i]));
        }
        free(groups);
        json_object_set_new(o, "by", json_string(by));
        json_object_set_new(o, "groups", g);
    }
    return srv_reply_json(c, 200, o);
}

enum MHD_Result srv_admin_ledger_series(srv_conn *c) {
    if (!admin_only(c)) return MHD_YES;
    const char *since_s = MHD_lookup_connection_value(c->mhd, MHD_GET_ARGUMENT_KIND, "since");
    const char *width_s = MHD_lookup_connection_value(c->mhd, MHD_GET_ARGUMENT_KIND, "bucket");
    double since = 0, width = 60;
    char *end;
    if (since_s && ((since = strtod(since_s, &end)), end == since_s || *end || !isfinite(since) || since < 0))
        return srv_reply_error(c, 400, NULL, "since", "'since' must be unix seconds");
    if (width_s && ((width = strtod(width_s, &end)), end == width_s || *end || !(width >= 1 && width <= 31 * 86400)))
        return srv_reply_error(c, 400, NULL, "bucket", "'bucket' must be seconds in [1, 2678400]");
    char err[512];
    slm_ledger_bucket *b = NULL;
    int n = slm_store_ledger_series(c->srv->store, since, width, &b, err, sizeof err);
    if (n < 0) return srv_reply_error(c, 500, NULL, NULL, err);
    json_t *data = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(
            data, json_pack("{s:f, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f}", "start", b[i].start, "requests",
                            (json_int_t)b[i].requests, "local_requests", (json_int_t)b[i].local_requests, "prompt_tokens",
                            (json_int_t)b[i].prompt_tokens, "completion_tokens", (json_int_t)b[i].completion_tokens, "cost",
                            b[i].cost, "frontier_cost", b[i].frontier_cost, "latency_p50_ms", b[i].latency_p50_ms,
                            "latency_p95_ms", b[i].latency_p95_ms, "tokens_per_s", b[i].completion_tokens_per_s));
    free(b);
    return srv_reply_json(c, 200, json_pack("{s:s, s:f, s:o}", "object", "list", "bucket", width, "data", data));
}
