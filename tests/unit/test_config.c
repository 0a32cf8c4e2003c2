/* The YAML config: the documented shape parses into the right values; every kind of mistake is
 * refused with the place it is at. Also the state store's keys, budgets and rate limits. */
#include <unistd.h>

#include "govern/limits.h"
#include "slm_config.h"
#include "slm_govern.h"
#include "slm_store.h"
#include "test.h"

static const char good[] =
    "server:\n"
    "  port: 9090\n"
    "  air_gapped: true\n"
    "  pii: mask\n"
    "models:\n"
    "  local: { path: model.gguf, price: { input: 0.1, output: 0.4 } }\n"
    "upstreams:\n"
    "  frontier:\n"
    "    url: https://api.example.com/v1\n"
    "    model: gpt-4o\n"
    "    key_env: FRONTIER_API_KEY\n"
    "    price: { input: 2.5, output: 10.0 }\n"
    "routes:\n"
    "  auto:\n"
    "    local: local\n"
    "    upstream: frontier\n"
    "    router: default\n"
    "    frontier_share: 0.25\n"
    "    pii: mask\n"
    "    on_upstream_error: error\n";

static void expect_error(const char *yaml, const char *needle) {
    slm_config *c = NULL;
    char err[512] = "";
    int rc = slm_config_parse(yaml, strlen(yaml), "t.yaml", &c, err, sizeof err);
    CHECKF(rc != 0 && c == NULL && strstr(err, needle) != NULL, "yaml [%s]: err [%s], want [%s]", yaml, err, needle);
    slm_config_free(c);
}

static void test_config(void) {
    slm_config *c = NULL;
    char err[512] = "";
    CHECKF(slm_config_parse(good, strlen(good), "t.yaml", &c, err, sizeof err) == 0, "%s", err);
    if (!c) return;
    CHECK(c->port == 9090 && c->air_gapped == 1 && c->audit_sign == -1 && strcmp(c->pii, "mask") == 0);
    CHECK(c->n_models == 1 && strcmp(c->models[0].path, "model.gguf") == 0 && c->models[0].price.output == 0.4);
    CHECK(c->n_upstreams == 1 && strcmp(c->upstreams[0].key_env, "FRONTIER_API_KEY") == 0 &&
          c->upstreams[0].price.input == 2.5 && c->upstreams[0].max_retries == -1);
    CHECK(c->n_routes == 1 && c->routes[0].frontier_share == 0.25 && c->routes[0].pii == SLM_ROUTE_PII_MASK &&
          !c->routes[0].fallback_local && !c->routes[0].cascade);
    slm_config_free(c);

    expect_error("models: [1, 2\n", "t.yaml:");
    expect_error("modles: {}\n", "t.yaml:1:1: unknown top-level key 'modles'");
    expect_error("models:\n  a: {path: x, size: 3}\n", "t.yaml:2:");
    expect_error("models:\n  a: {path: x}\nroutes:\n  r: {local: b}\n", "local model 'b' is not defined");
    expect_error("models:\n  a: {path: x}\nroutes:\n  r: {local: a, upstream: u}\n", "upstream 'u' is not defined");
    expect_error("models:\n  a: {path: x}\nroutes:\n  r: {local: a, frontier_share: 1.5}\n", "must be in [0, 1]");
    expect_error("models:\n  a: {path: x}\nroutes:\n  r: {local: a, pii: maybe}\n", "one of local, mask, block");
    expect_error("upstreams:\n  u: {url: ftp://x, model: m}\n", "http:// or https://");
    expect_error("upstreams:\n  u: {url: http://x/v1, model: m, key: sk-123}\n", "do not belong in the config file");
    expect_error("models:\n  a: {path: x}\n  a: {path: y}\n", "'a' is given twice");
    expect_error("models:\n  a: {path: x}\nupstreams:\n  a: {url: http://x, model: m}\n", "name 'a' is used twice");
    expect_error("server: {port: 70000}\n", "'port' must be in [0, 65535]");
    expect_error("server: {port: 80.5}\n", "whole number");
    expect_error("", "empty");
    expect_error("models: {}\n---\nmodels: {}\n", "only one YAML document");
}

static void test_store(void) {
    char dir[] = "/tmp/slm-test-store-XXXXXX";
    if (!mkdtemp(dir)) return;
    slm_store *s = NULL;
    char err[512];
    CHECKF(slm_store_open(dir, &s, err, sizeof err) == 0, "%s", err);
    if (!s) return;
    CHECK(slm_store_schema_version(s) >= 1 && slm_store_key_count(s) == 0);
    slm_key_info k = {0};
    snprintf(k.name, sizeof k.name, "app");
    snprintf(k.models, sizeof k.models, "a,b");
    k.rpm = 7;
    char secret[SLM_KEY_SECRET_LEN + 1], hash[SLM_KEY_HASH_LEN + 1];
    CHECK(slm_key_create(s, &k, secret, err, sizeof err) == 0 && strlen(secret) == SLM_KEY_SECRET_LEN);
    char again[SLM_KEY_SECRET_LEN + 1];
    CHECK(slm_key_create(s, &k, again, err, sizeof err) != 0 && strstr(err, "already exists") && again[0] == 0);
    slm_key_hash(secret, hash);
    slm_key_info got;
    CHECK(slm_store_key_lookup(s, hash, &got, err, sizeof err) == 1 && strcmp(got.models, "a,b") == 0 && got.rpm == 7);
    CHECK(slm_store_key_lookup(s, "00", &got, err, sizeof err) == 0);
    /* the ledger sums what a key spent since a time */
    slm_ledger_entry e = {.request_id = "r1", .time = 1000, .key = "app", .model = "a", .route = "local", .cost = 0.25};
    CHECK(slm_store_ledger_add(s, &e, err, sizeof err) == 0);
    e.time = 2000;
    e.route = "upstream";
    CHECK(slm_store_ledger_add(s, &e, err, sizeof err) == 0);
    CHECK(fabs(slm_store_spend(s, "app", 0) - 0.5) < 1e-12 && fabs(slm_store_spend(s, "app", 1500) - 0.25) < 1e-12);
    e.latency_ms = 0;
    slm_ledger_totals *t = NULL;
    int n = slm_store_ledger_totals(s, 0, "route", &t, err, sizeof err);
    CHECK(n == 2 && strcmp(t[0].group, "local") == 0 && t[0].local_requests == 1 && t[1].local_requests == 0);
    free(t);
    CHECK(slm_store_ledger_totals(s, 0, "colour", &t, err, sizeof err) < 0);
    e.time = 2500;
    e.latency_ms = 100;
    e.completion_tokens = 30;
    CHECK(slm_store_ledger_add(s, &e, err, sizeof err) == 0);
    slm_ledger_bucket *b = NULL;
    n = slm_store_ledger_series(s, 0, 1000, &b, err, sizeof err);
    CHECK(n == 2 && b[0].start == 1000 && b[0].requests == 1 && b[0].local_requests == 1 && b[1].start == 2000 &&
          b[1].requests == 2 && b[1].local_requests == 0 && b[1].latency_p95_ms == 100 && b[1].latency_p50_ms == 100 &&
          fabs(b[1].completion_tokens_per_s - 300) < 1e-9);
    free(b);
    CHECK(slm_store_key_revoke(s, "app", err, sizeof err) == 1 && slm_store_key_revoke(s, "app", err, sizeof err) == 0);
    CHECK(slm_store_key_lookup(s, hash, &got, err, sizeof err) == 0 && slm_store_key_count(s) == 0);
    /* a name can be reused once revoked; the old secret stays dead */
    CHECK(slm_key_create(s, &k, again, err, sizeof err) == 0 && slm_store_key_count(s) == 1);
    CHECK(slm_store_key_lookup(s, hash, &got, err, sizeof err) == 0);
    slm_store_close(s);
    /* reopening migrates nothing and keeps the keys */
    CHECK(slm_store_open(dir, &s, err, sizeof err) == 0 && slm_store_key_count(s) == 1);
    slm_store_close(s);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void test_budget_and_limits(void) {
    double usd;
    slm_budget_period p;
    char err[256];
    CHECK(slm_budget_parse("5/day", &usd, &p, err, sizeof err) == 0 && usd == 5 && p == SLM_BUDGET_DAY);
    CHECK(slm_budget_parse("$0.5/month", &usd, &p, err, sizeof err) == 0 && usd == 0.5 && p == SLM_BUDGET_MONTH);
    CHECK(slm_budget_parse("5", &usd, &p, err, sizeof err) != 0);
    CHECK(slm_budget_parse("-1/day", &usd, &p, err, sizeof err) != 0);
    CHECK(slm_budget_parse("5/fortnight", &usd, &p, err, sizeof err) != 0);
    /* 2026-12-05 (a Saturday) 13:14:15 UTC: day, ISO week (Monday 11-30) and month starts */
    double t = 1796476455;
    CHECK(slm_budget_period_start(SLM_BUDGET_DAY, t) == 1796428800);
    CHECK(slm_budget_period_start(SLM_BUDGET_WEEK, t) == 1796428800 - 5 * 86400);
    CHECK(slm_budget_period_start(SLM_BUDGET_MONTH, t) == 1796428800 - 4 * 86400);
    CHECK(slm_budget_period_start(SLM_BUDGET_TOTAL, t) == 0);

    rate_limits *rl = rate_limits_new();
    int retry = 0;
    const char *which = "";
    CHECK(rate_limits_admit(rl, "k", 2, 0, 100.0, &retry, &which));
    CHECK(rate_limits_admit(rl, "k", 2, 0, 110.0, &retry, &which));
    CHECK(!rate_limits_admit(rl, "k", 2, 0, 120.0, &retry, &which) && strcmp(which, "rpm") == 0 && retry == 40);
    CHECK(rate_limits_admit(rl, "other", 2, 0, 120.0, &retry, &which)); /* per key */
    CHECK(rate_limits_admit(rl, "k", 2, 0, 160.5, &retry, &which));     /* the first left the window */
    rate_limits_charge(rl, "t", 600, 200.0);
    rate_limits_charge(rl, "t", 500, 230.0);
    CHECK(!rate_limits_admit(rl, "t", 0, 1000, 240.0, &retry, &which) && strcmp(which, "tpm") == 0 && retry == 20);
    CHECK(rate_limits_admit(rl, "t", 0, 1000, 260.5, &retry, &which));
    rate_limits_free(rl);
}

int main(void) {
    test_config();
    test_store();
    test_budget_and_limits();
    return test_report("test_config");
}
