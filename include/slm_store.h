/* slm store — the one owner of persistent state: a SQLite database (WAL) in the data directory.
 *
 * It holds API keys (only their hashes), the per-request ledger (usage, cost and the cost the
 * frontier would have charged), and later retrieval collections. Every SQL statement of slm lives
 * in src/store/; callers see plain C structs, so another backend (PostgreSQL for several replicas)
 * can implement this header. Thread-safe: one connection behind a mutex; other processes (the CLI
 * creating a key while the server runs) see each other's writes through SQLite's locking. */
#ifndef SLM_STORE_H
#define SLM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct slm_store slm_store;

/* The data directory when none is given: $SLM_HOME, else $XDG_DATA_HOME/slm, else ~/.local/share/slm
 * (root: /var/lib/slm). Written into buf; returns buf, or NULL when it does not fit. */
const char *slm_data_dir_default(char *buf, size_t cap);
/* Opens (creating with mode 0700) data_dir and its state.db, and migrates the schema to the
 * newest version. A database from a newer slm is refused rather than misread. */
int slm_store_open(const char *data_dir, slm_store **out, char *err, size_t err_len);
void slm_store_close(slm_store *s);
const char *slm_store_dir(const slm_store *s);
int slm_store_schema_version(slm_store *s);

/* ---------- API keys ---------- */

#define SLM_KEY_NAME_MAX 64
#define SLM_KEY_MODELS_MAX 512

typedef enum { SLM_BUDGET_NONE, SLM_BUDGET_DAY, SLM_BUDGET_WEEK, SLM_BUDGET_MONTH, SLM_BUDGET_TOTAL } slm_budget_period;

typedef struct slm_key_info {
    char name[SLM_KEY_NAME_MAX];
    char models[SLM_KEY_MODELS_MAX]; /* comma-separated model/upstream names the key may use; "" = all */
    bool local_only;                 /* never routed to an upstream */
    bool admin;                      /* may manage keys and read the ledger over HTTP */
    int rpm, tpm;                    /* requests / tokens per minute; 0 = unlimited */
    double budget_usd;               /* spend allowed per budget_period; used when period != NONE */
    slm_budget_period budget_period;
    char prefix[16];                 /* the secret's first characters, to recognise it in lists */
    char pii[8];                     /* PII policy for this key: "detect" | "mask" | "block", "" = the server's */
    char collections[SLM_KEY_MODELS_MAX]; /* comma-separated retrieval collections the key may use; "" = all */
    double created;                  /* unix seconds */
    double revoked;                  /* unix seconds, 0 = active */
} slm_key_info;

/* Stores a key under the hash of its secret. Fails when an active key has that name. */
int slm_store_key_add(slm_store *s, const slm_key_info *key, const char *secret_hash, char *err, size_t err_len);
/* The active key whose secret hashes to secret_hash: 1 found (out filled), 0 none, -1 error. */
int slm_store_key_lookup(slm_store *s, const char *secret_hash, slm_key_info *out, char *err, size_t err_len);
/* Every key, active and revoked, oldest first (*out malloc'd). Returns the count or -1. */
int slm_store_key_list(slm_store *s, slm_key_info **out, char *err, size_t err_len);
/* Revokes the active key called name: 1 revoked, 0 no such active key, -1 error. */
int slm_store_key_revoke(slm_store *s, const char *name, char *err, size_t err_len);
/* Number of active keys (-1 on error). Once it is > 0, every request needs a key. */
int slm_store_key_count(slm_store *s);

/* ---------- the ledger: one row per request that reached a backend ---------- */

typedef struct slm_ledger_entry {
    const char *request_id;
    double time;              /* unix seconds */
    const char *key;          /* principal name, "" = anonymous */
    const char *model;
    const char *route;        /* "local" / "upstream" */
    int prompt_tokens, completion_tokens;
    double cost;              /* USD at the configured prices */
    double frontier_cost;     /* USD had it gone to the frontier */
    double latency_ms;
    int status;               /* HTTP status */
} slm_ledger_entry;

int slm_store_ledger_add(slm_store *s, const slm_ledger_entry *e, char *err, size_t err_len);
/* USD spent by key since `since` (unix seconds); -1 on error. */
double slm_store_spend(slm_store *s, const char *key, double since);

typedef struct slm_ledger_totals {
    char group[256];          /* the group's value ("" for the overall totals) */
    long long requests, prompt_tokens, completion_tokens, local_requests;
    double cost, frontier_cost;
} slm_ledger_totals;
/* Totals since `since`, overall (by = NULL) or per "key" | "route" | "model" (*out malloc'd,
 * one row per group). Returns the row count or -1. */
int slm_store_ledger_totals(slm_store *s, double since, const char *by, slm_ledger_totals **out, char *err,
                            size_t err_len);

/* One time bucket of the ledger, for the dashboard's plots. */
typedef struct slm_ledger_bucket {
    double start;                   /* unix seconds, a multiple of the bucket width */
    long long requests, local_requests, prompt_tokens, completion_tokens;
    double cost, frontier_cost;
    double latency_p50_ms, latency_p95_ms; /* over the bucket's requests */
    double completion_tokens_per_s; /* sum of completion tokens / sum of latency */
} slm_ledger_bucket;
/* The ledger since `since` in buckets of `width` seconds (oldest first; empty buckets omitted;
 * *out malloc'd). Returns the bucket count or -1. */
int slm_store_ledger_series(slm_store *s, double since, double width, slm_ledger_bucket **out, char *err,
                            size_t err_len);

#ifdef __cplusplus
}
#endif
#endif
