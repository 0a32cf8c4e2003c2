/* The governance stages of the gate: keys, limits and budgets (admit), the PII guard (input), the
 * key's scope (route), the ledger and the audit record (record). See slm_govern.h. */
#include <arpa/inet.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "limits.h"
#include "slm_audit.h"
#include "slm_govern.h"
#include "slm_pii.h"
#include "util/err.h"
#include "util/secret.h"

typedef struct govern {
    slm_govern_config cfg;
    rate_limits *limits;
} govern;

/* What the stages learn about one call, from admit to record. */
typedef struct call_policy {
    struct govern *gv;
    bool scanned;                 /* the input stage looked for personal data */
    bool has_key;
    slm_key_info key;
    slm_pii_policy pii_policy;
    int pii_found[SLM_PII_TYPES]; /* in the request's texts */
    const char *pii_action;       /* "detected", "masked", "blocked", NULL = nothing found */
    slm_pii_mask *mask;
    slm_pii_filter *filter;
    char **owned; /* masked message texts */
    int n_owned;
    json_t *content; /* the request's texts for the audit record, taken when policy ran */
    char requested[256]; /* the model the caller named, before routing resolved it */
} call_policy;

static double unix_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static bool is_loopback(const char *addr) {
    if (!addr || !*addr) return true; /* in-process callers (the CLI) */
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, addr, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, addr, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
        if (IN6_IS_ADDR_V4MAPPED(&a6)) return a6.s6_addr[12] == 127;
    }
    return false;
}

static call_policy *policy_of(govern *gv, slm_gate_call *call) {
    if (!call->policy) {
        call_policy *p = calloc(1, sizeof *p);
        if (p) {
            p->gv = gv;
            p->pii_policy = gv->cfg.pii_policy;
        }
        call->policy = p;
    }
    return call->policy;
}

/* ---------- admit: key, rate limits, budget ---------- */

static bool admit(void *state, slm_gate_call *call) {
    govern *gv = state;
    call_policy *p = policy_of(gv, call);
    if (!p) return slm_gate_refuse(call, 500, "out_of_memory", "out of memory");
    int stored = gv->cfg.store ? slm_store_key_count(gv->cfg.store) : 0;
    if (stored < 0)
        return slm_gate_refuse(call, 503, "store_unavailable", "the state store cannot be read; refusing rather than guessing");
    if (stored == 0 && gv->cfg.n_static_keys == 0) {
        /* no key configured anywhere: an open server; only a local caller may administer it */
        call->admin = is_loopback(call->client);
        return true;
    }
    const char *secret = call->credential;
    if (!secret || !*secret)
        return slm_gate_refuse(call, 401, "invalid_api_key", "missing API key (send 'Authorization: Bearer <key>')");
    bool static_ok = false;
    for (int i = 0; i < gv->cfg.n_static_keys; i++) static_ok |= slm_secret_equal(secret, gv->cfg.static_keys[i]);
    if (static_ok) {
        snprintf(call->principal, sizeof call->principal, "static-key");
        call->admin = true;
        return true;
    }
    if (stored == 0) return slm_gate_refuse(call, 401, "invalid_api_key", "invalid API key");
    char hash[SLM_KEY_HASH_LEN + 1], err[256];
    slm_key_hash(secret, hash);
    int found = slm_store_key_lookup(gv->cfg.store, hash, &p->key, err, sizeof err);
    if (found < 0) return slm_gate_refuse(call, 503, "store_unavailable", "%s", err);
    if (found == 0) return slm_gate_refuse(call, 401, "invalid_api_key", "invalid or revoked API key");
    p->has_key = true;
    snprintf(call->principal, sizeof call->principal, "%s", p->key.name);
    call->admin = p->key.admin;
    call->local_only = p->key.local_only;
    int pii = slm_pii_policy_parse(p->key.pii);
    if (pii >= 0) p->pii_policy = (slm_pii_policy)pii;

    double now = unix_now();
    int retry = 0;
    const char *which = "";
    if (!rate_limits_admit(gv->limits, p->key.name, p->key.rpm, p->key.tpm, slm_now(), &retry, &which)) {
        call->retry_after_s = retry;
        return slm_gate_refuse(call, 429, "rate_limit_exceeded",
                               "key '%s' is over its limit of %d %s; retry in %d s", p->key.name,
                               strcmp(which, "rpm") == 0 ? p->key.rpm : p->key.tpm,
                               strcmp(which, "rpm") == 0 ? "requests per minute" : "tokens per minute", retry);
    }
    if (p->key.budget_period != SLM_BUDGET_NONE && gv->cfg.store) {
        double since = slm_budget_period_start(p->key.budget_period, now);
        double spent = slm_store_spend(gv->cfg.store, p->key.name, since);
        if (spent < 0) return slm_gate_refuse(call, 503, "store_unavailable", "the ledger cannot be read");
        if (spent >= p->key.budget_usd)
            return slm_gate_refuse(call, 429, "insufficient_quota",
                                   "key '%s' has used its budget of $%.2f per %s ($%.4f spent); it renews with the next %s",
                                   p->key.name, p->key.budget_usd, slm_budget_period_name(p->key.budget_period), spent,
                                   slm_budget_period_name(p->key.budget_period));
    }
    return true;
}

/* ---------- input: the PII guard ---------- */

static json_t *request_content(govern *gv, const slm_gate_call *call);

static void count_spans(call_policy *p, const slm_pii_span *spans, int n) {
    for (int i = 0; i < n; i++)
        if (spans[i].type >= 0 && spans[i].type < SLM_PII_TYPES) p->pii_found[spans[i].type]++;
}

static void found_list(const call_policy *p, char *out, size_t cap) {
    out[0] = 0;
    for (int t = 0; t < SLM_PII_TYPES; t++)
        if (p->pii_found[t])
            snprintf(out + strlen(out), cap - strlen(out), "%s%s x%d", out[0] ? ", " : "", slm_pii_type_name(t),
                     p->pii_found[t]);
}

static bool keep_owned(call_policy *p, char *text) {
    char **grown = realloc(p->owned, sizeof *grown * (size_t)(p->n_owned + 1));
    if (!grown) return false;
    p->owned = grown;
    p->owned[p->n_owned++] = text;
    return true;
}

/* Scans one text; with `mask`, replaces *text by its masked copy (kept by the policy). */
static bool guard_text(govern *gv, call_policy *p, const char **text, bool mask) {
    if (!*text || !**text) return true;
    slm_pii_span *spans = NULL;
    int n = slm_pii_scan(gv->cfg.pii, *text, strlen(*text), &spans);
    if (n < 0) return false;
    count_spans(p, spans, n);
    bool ok = true;
    if (mask && n > 0) {
        size_t len = 0;
        char *masked = slm_pii_mask_apply(p->mask, *text, strlen(*text), spans, n, &len);
        if (!masked || !keep_owned(p, masked)) {
            free(masked);
            ok = false;
        } else {
            *text = masked;
        }
    }
    free(spans);
    return ok;
}

static int filter_feed(void *state, const char *piece, size_t len, char **out, size_t *out_len) {
    return slm_pii_filter_feed(state, piece, len, out, out_len);
}

static int filter_flush(void *state, char **out, size_t *out_len) { return slm_pii_filter_flush(state, out, out_len); }

static bool guard_input(void *state, slm_gate_call *call) {
    govern *gv = state;
    call_policy *p = policy_of(gv, call);
    if (!p) return slm_gate_refuse(call, 500, "out_of_memory", "out of memory");
    snprintf(p->requested, sizeof p->requested, "%s", call->model ? call->model : "");
    if (!gv->cfg.pii || p->pii_policy == SLM_PII_POLICY_OFF) {
        if (gv->cfg.audit) p->content = request_content(gv, call);
        return true;
    }
    bool mask = p->pii_policy == SLM_PII_POLICY_MASK;
    if (mask && !(p->mask = slm_pii_mask_new())) return slm_gate_refuse(call, 500, "out_of_memory", "out of memory");
    bool ok = true;
    for (size_t i = 0; ok && i < call->n_messages; i++) ok = guard_text(gv, p, &call->messages[i].content, mask);
    if (ok) ok = guard_text(gv, p, &call->prompt, mask);
    if (!ok) return slm_gate_refuse(call, 500, "out_of_memory", "out of memory while checking for personal data");
    p->scanned = true;
    int total = 0;
    for (int t = 0; t < SLM_PII_TYPES; t++) total += p->pii_found[t];
    /* the front end frees its texts before the call ends: the record keeps its own copy */
    if (gv->cfg.audit) p->content = request_content(gv, call);
    if (total > 0) {
        p->pii_action = p->pii_policy == SLM_PII_POLICY_BLOCK ? "blocked" : mask ? "masked" : "detected";
        if (p->pii_policy == SLM_PII_POLICY_BLOCK) {
            char list[256];
            found_list(p, list, sizeof list);
            return slm_gate_refuse(call, 400, "pii_blocked", "request blocked by the personal-data policy: it contains %s",
                                   list);
        }
    }
    unsigned flags = (p->mask ? SLM_PII_FILTER_RESTORE : 0) | (gv->cfg.pii_output ? SLM_PII_FILTER_REDACT : 0);
    if (flags && call->kind == SLM_CALL_GENERATE) {
        p->filter = slm_pii_filter_new(gv->cfg.pii, p->mask, flags);
        if (!p->filter) return slm_gate_refuse(call, 500, "out_of_memory", "out of memory");
        call->filter = (slm_gate_filter){.feed = filter_feed, .flush = filter_flush, .state = p->filter};
    }
    return true;
}

int slm_govern_pii_found(const slm_gate_call *call) {
    const call_policy *p = call->policy;
    if (!p || !p->scanned) return -1;
    int total = 0;
    for (int t = 0; t < SLM_PII_TYPES; t++) total += p->pii_found[t];
    return total;
}

int slm_govern_mask_call(slm_gate_call *call) {
    call_policy *p = call->policy;
    if (!p || !p->gv->cfg.pii) return -1;
    if (p->mask) return 0; /* the key's policy masked them already */
    if (!(p->mask = slm_pii_mask_new())) return -1;
    int before[SLM_PII_TYPES];
    memcpy(before, p->pii_found, sizeof before);
    bool ok = true;
    for (size_t i = 0; ok && i < call->n_messages; i++) ok = guard_text(p->gv, p, &call->messages[i].content, true);
    if (ok) ok = guard_text(p->gv, p, &call->prompt, true);
    memcpy(p->pii_found, before, sizeof before); /* counted once, by the input stage */
    if (!ok) return -1;
    p->pii_action = "masked";
    slm_pii_filter_free(p->filter);
    unsigned flags = SLM_PII_FILTER_RESTORE | (p->gv->cfg.pii_output ? SLM_PII_FILTER_REDACT : 0);
    if (!(p->filter = slm_pii_filter_new(p->gv->cfg.pii, p->mask, flags))) return -1;
    call->filter = (slm_gate_filter){.feed = filter_feed, .flush = filter_flush, .state = p->filter};
    return 0;
}

/* ---------- route: the key's scope ---------- */

static bool in_list(const char *list, const char *name) {
    size_t n = strlen(name);
    if (n > 7 && strcmp(name + n - 7, ":latest") == 0) n -= 7;
    for (const char *s = list; *s;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (len == n && strncmp(s, name, n) == 0) return true;
        if (!comma) break;
        s = comma + 1;
    }
    return false;
}

static bool check_scope(void *state, slm_gate_call *call) {
    (void)state;
    call_policy *p = call->policy;
    if (!p || !p->has_key) return true;
    /* the name the caller sent (a route such as "auto") or what it resolved to may be in scope */
    if (p->key.models[0] && !in_list(p->key.models, p->requested) && !in_list(p->key.models, call->model ? call->model : ""))
        return slm_gate_refuse(call, 403, "model_not_allowed", "key '%s' may not use model '%.200s' (allowed: %s)",
                               p->key.name, call->model ? call->model : "", p->key.models);
    if (call->local_only && call->backend != 0)
        return slm_gate_refuse(call, 403, "local_only",
                               "key '%s' is local-only: its requests may not be sent to an upstream API", p->key.name);
    return true;
}

/* ---------- record: ledger and audit ---------- */

static void hash_hex(const char *text, size_t len, char out[65]) {
    unsigned char d[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(d, (const unsigned char *)text, len);
    for (size_t i = 0; i < sizeof d; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Content for the audit record at the configured retention; never raw personal data unless "full". */
static json_t *content_value(govern *gv, const char *text, size_t len) {
    switch (gv->cfg.audit_content) {
    case SLM_AUDIT_CONTENT_FULL: return json_stringn(text, len);
    case SLM_AUDIT_CONTENT_HASH: {
        char h[65];
        hash_hex(text, len, h);
        return json_string(h);
    }
    case SLM_AUDIT_CONTENT_REDACTED: {
        if (!gv->cfg.pii) return json_string("[unredactable: no PII guard]");
        slm_pii_span *spans = NULL;
        int n = slm_pii_scan(gv->cfg.pii, text, len, &spans);
        if (n < 0) return json_string("[redaction failed]");
        slm_pii_mask *m = slm_pii_mask_new();
        size_t out_len = 0;
        char *masked = m ? slm_pii_mask_apply(m, text, len, spans, n, &out_len) : NULL;
        json_t *v = masked ? json_stringn(masked, out_len) : json_string("[redaction failed]");
        free(masked);
        slm_pii_mask_free(m);
        free(spans);
        return v ? v : json_string("[not valid UTF-8]");
    }
    default: return NULL;
    }
}

static json_t *request_content(govern *gv, const slm_gate_call *call) {
    if (gv->cfg.audit_content == SLM_AUDIT_CONTENT_NONE) return NULL;
    json_t *content = json_object();
    if (!content) return NULL;
    if (call->n_messages) {
        json_t *msgs = json_array();
        for (size_t i = 0; i < call->n_messages; i++) {
            const char *t = call->messages[i].content ? call->messages[i].content : "";
            json_array_append_new(msgs, json_pack("{s:s, s:o*}", "role", call->messages[i].role ? call->messages[i].role : "",
                                                  "content", content_value(gv, t, strlen(t))));
        }
        json_object_set_new(content, "messages", msgs);
    } else if (call->prompt) {
        json_t *v = content_value(gv, call->prompt, strlen(call->prompt));
        if (v) json_object_set_new(content, "prompt", v);
    }
    return content;
}

static void add_content(govern *gv, json_t *rec, const slm_gate_call *call, call_policy *p) {
    if (gv->cfg.audit_content == SLM_AUDIT_CONTENT_NONE) return;
    json_t *content = p && p->content ? json_incref(p->content) : json_object();
    if (!content) return;
    slm_request *r = call->request;
    if (r && r->kind == SLM_REQ_GENERATE) {
        pthread_mutex_lock(&r->mu);
        json_t *v = content_value(gv, r->text ? r->text : "", r->text_len);
        pthread_mutex_unlock(&r->mu);
        if (v) json_object_set_new(content, "response", v);
    }
    json_object_set_new(rec, "content", content);
}

static void write_audit(govern *gv, const slm_gate_call *call, const call_policy *p, double cost) {
    json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:f, s:i}", "request_id", call->request_id, "key",
                            call->principal, "client", call->client ? call->client : "", "front_end",
                            call->front_end ? call->front_end : "", "endpoint", call->endpoint ? call->endpoint : "",
                            "model", call->model ? call->model : "", "prompt_tokens", call->prompt_tokens,
                            "completion_tokens", call->completion_tokens, "latency_ms",
                            (call->t_end - call->t_start) * 1e3, "status", call->status ? call->status : 200);
    if (!rec) return;
    json_object_set_new(rec, "route", call->route ? json_string(call->route) : json_null());
    if (call->error_code) json_object_set_new(rec, "error", json_string(call->error_code));
    if (cost > 0) json_object_set_new(rec, "cost_usd", json_real(cost));
    if (p) {
        json_t *pii = json_object();
        json_t *found = json_object();
        for (int t = 0; t < SLM_PII_TYPES; t++)
            if (p->pii_found[t]) json_object_set_new(found, slm_pii_type_name(t), json_integer(p->pii_found[t]));
        if (p->filter) {
            int out_counts[SLM_PII_TYPES] = {0};
            slm_pii_filter_counts(p->filter, out_counts);
            json_t *out = json_object();
            for (int t = 0; t < SLM_PII_TYPES; t++)
                if (out_counts[t]) json_object_set_new(out, slm_pii_type_name(t), json_integer(out_counts[t]));
            json_object_set_new(pii, "output", out);
        }
        json_object_set_new(pii, "policy", json_string(slm_pii_policy_name(p->pii_policy)));
        json_object_set_new(pii, "found", found);
        if (p->pii_action) json_object_set_new(pii, "action", json_string(p->pii_action));
        json_object_set_new(rec, "pii", pii);
    }
    add_content(gv, rec, call, (call_policy *)p);
    char *line = json_dumps(rec, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(rec);
    char err[256];
    if (!line || slm_audit_append(gv->cfg.audit, line, err, sizeof err) != 0)
        fprintf(stderr, "slm: audit: cannot record request %s: %s\n", call->request_id, line ? err : "out of memory");
    free(line);
}

static void free_policy(call_policy *p) {
    if (!p) return;
    slm_pii_filter_free(p->filter);
    slm_pii_mask_free(p->mask);
    for (int i = 0; i < p->n_owned; i++) free(p->owned[i]);
    free(p->owned);
    json_decref(p->content);
    free(p);
}

static bool record(void *state, slm_gate_call *call) {
    govern *gv = state;
    call_policy *p = call->policy;
    if (!p) return true; /* never admitted: a public route (the page, /health), not a call */
    int tokens = call->prompt_tokens + call->completion_tokens;
    if (p && p->has_key) rate_limits_charge(gv->limits, p->key.name, tokens, slm_now());
    double cost = 0, frontier = 0;
    if (call->route && gv->cfg.cost)
        cost = gv->cfg.cost(gv->cfg.cost_user, call->model ? call->model : "", call->route, call->prompt_tokens,
                            call->completion_tokens, &frontier);
    call->cost_usd = cost;
    call->frontier_cost_usd = frontier;
    if (call->route && gv->cfg.store) {
        slm_ledger_entry e = {.request_id = call->request_id,
                              .time = unix_now(),
                              .key = call->principal,
                              .model = call->model ? call->model : "",
                              .route = call->route,
                              .prompt_tokens = call->prompt_tokens,
                              .completion_tokens = call->completion_tokens,
                              .cost = cost,
                              .frontier_cost = frontier,
                              .latency_ms = (call->t_end - call->t_start) * 1e3,
                              .status = call->status ? call->status : 200};
        char err[256];
        if (slm_store_ledger_add(gv->cfg.store, &e, err, sizeof err) != 0) fprintf(stderr, "slm: ledger: %s\n", err);
    }
    if (gv->cfg.audit) write_audit(gv, call, p, cost);
    call->filter = (slm_gate_filter){0};
    free_policy(p);
    call->policy = NULL;
    return true;
}

/* ---------- install ---------- */

static void free_govern(void *state) { rate_limits_free(((govern *)state)->limits); }

int slm_govern_install(slm_gate *g, const slm_govern_config *cfg, char *err, size_t err_len) {
    govern *gv = slm_gate_keep(g, sizeof *gv);
    if (!gv || sodium_init() < 0) return slm_err(err, err_len, "out of memory");
    gv->cfg = *cfg;
    gv->limits = rate_limits_new();
    if (!gv->limits) return slm_err(err, err_len, "out of memory");
    if (slm_gate_on_free(g, free_govern, gv)) {
        rate_limits_free(gv->limits);
        return slm_err(err, err_len, "too many gate cleanups");
    }
    const slm_gate_stage stages[] = {
        {.name = "keys", .phase = SLM_PHASE_ADMIT, .run = admit, .state = gv},
        {.name = "pii-guard", .phase = SLM_PHASE_INPUT, .run = guard_input, .state = gv},
        {.name = "scope", .phase = SLM_PHASE_ROUTE, .run = check_scope, .state = gv},
        {.name = "ledger-audit", .phase = SLM_PHASE_RECORD, .run = record, .state = gv},
    };
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++)
        if (slm_gate_add_stage(g, &stages[i], err, err_len)) return -1;
    return 0;
}
