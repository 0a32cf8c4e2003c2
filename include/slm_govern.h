/* slm governance — who may do what, what personal data may leave, and the record of what happened.
 *
 * Everything here is a set of request-gate stages (slm_gate.h), installed once before serving:
 *   admit:  the caller's key (static --api-key keys or keys in the state store), its rate limits
 *           (rpm/tpm, 429 with Retry-After) and its budget (429 insufficient_quota);
 *   input:  the PII guard on the request's texts (detect / mask / block, per key or server-wide),
 *           which also sets the call's output filter (placeholders restored, leaks masked);
 *   route:  the key's scope (models it may name, local-only) checked against where the call goes;
 *   record: the ledger row (tokens, cost, counterfactual frontier cost) and the audit record. */
#ifndef SLM_GOVERN_H
#define SLM_GOVERN_H

#include <stdbool.h>
#include <stddef.h>

#include "slm_gate.h"
#include "slm_store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------- key secrets ---------- */

#define SLM_KEY_SECRET_LEN 48 /* "slm-" + 44 base62 characters (~261 bits) */
#define SLM_KEY_HASH_LEN 64   /* hex sha256 */

/* A fresh random secret (libsodium's CSPRNG) into out[SLM_KEY_SECRET_LEN + 1]; 0 or -1. */
int slm_key_new_secret(char *out);
/* hex sha256 of the secret into out[SLM_KEY_HASH_LEN + 1]; secrets are random, so a fast hash
 * is enough (no dictionary to attack). */
void slm_key_hash(const char *secret, char *out);
/* "5/day", "20/week", "100/month", "50/total" (USD) → usd and period; 0 or -1 with err. */
int slm_budget_parse(const char *text, double *usd, slm_budget_period *period, char *err, size_t err_len);
const char *slm_budget_period_name(slm_budget_period p);
/* Unix time the current period began (UTC day, ISO week from Monday, calendar month; 0 for total). */
double slm_budget_period_start(slm_budget_period p, double now);
/* A key name: 1-63 of [A-Za-z0-9._-]; 0 or -1 with err. */
int slm_key_name_check(const char *name, char *err, size_t err_len);

/* ---------- managing keys (the CLI's `slm keys` and the admin HTTP API share these) ---------- */

/* Checks the key's fields, makes a secret, stores its hash. secret_out[SLM_KEY_SECRET_LEN + 1]
 * receives the secret: the only time it exists outside the caller's hands. */
int slm_key_create(slm_store *s, slm_key_info *key, char *secret_out, char *err, size_t err_len);
/* A key's description as a JSON object text (no secret, no hash); malloc'd, NULL when out of memory. */
char *slm_key_json(const slm_key_info *key);
/* Every key as a JSON array text; malloc'd, NULL with err. */
char *slm_key_list_json(slm_store *s, char *err, size_t err_len);
/* A key from a JSON object {"name", "models": [..] | "a,b", "local_only", "admin", "rpm", "tpm",
 * "budget": "5/day", "pii"}; unknown fields are refused. 0 or -1 with err. */
int slm_key_from_json(const char *json, size_t len, slm_key_info *key, char *err, size_t err_len);

/* ---------- the stages ---------- */

typedef enum { SLM_PII_POLICY_OFF, SLM_PII_POLICY_DETECT, SLM_PII_POLICY_MASK, SLM_PII_POLICY_BLOCK } slm_pii_policy;
typedef enum { SLM_AUDIT_CONTENT_NONE, SLM_AUDIT_CONTENT_HASH, SLM_AUDIT_CONTENT_REDACTED, SLM_AUDIT_CONTENT_FULL } slm_audit_content;

/* "off" | "detect" | "mask" | "block" → policy, -1 when unknown. */
int slm_pii_policy_parse(const char *name);
const char *slm_pii_policy_name(slm_pii_policy p);
/* "none" | "hash" | "redacted" | "full" → setting, -1 when unknown. */
int slm_audit_content_parse(const char *name);

struct slm_pii;
struct slm_audit;

/* What a call cost: USD for tokens on model (route "local"/"upstream"), and what the frontier would
 * have charged for the same tokens. NULL = everything is free. */
typedef double (*slm_cost_fn)(void *user, const char *model, const char *route, int prompt_tokens, int completion_tokens,
                              double *frontier_cost);

typedef struct slm_govern_config {
    slm_store *store;                /* keys and the ledger; NULL = static keys only, no ledger */
    const char *const *static_keys;  /* --api-key / SLM_API_KEYS (borrowed; admin rights) */
    int n_static_keys;
    struct slm_audit *audit;         /* NULL = no audit log */
    slm_audit_content audit_content;
    const struct slm_pii *pii;       /* NULL = no PII guard */
    slm_pii_policy pii_policy;       /* for keys without their own policy */
    bool pii_output;                 /* also mask PII found in generated text (DLP) */
    slm_cost_fn cost;
    void *cost_user;
} slm_govern_config;

/* For the route stage: how many pieces of personal data the input stage found in the call's
 * texts, or -1 when it did not look (no detector, policy off). */
int slm_govern_pii_found(const slm_gate_call *call);
/* Masks the call's texts now (unless already masked) and sets the output filter that restores the
 * values in the reply: what a route does before sending personal data upstream. 0, or -1 when the
 * call cannot be masked (no governance state, out of memory). */
int slm_govern_mask_call(slm_gate_call *call);

/* Adds the governance stages to the gate (config is copied; what it points to is borrowed and must
 * outlive the gate). Without a store and static keys every caller is admitted anonymously. */
int slm_govern_install(slm_gate *g, const slm_govern_config *cfg, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif
#endif
