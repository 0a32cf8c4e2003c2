/* Key secrets, names and budget periods (see slm_govern.h). */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "slm_govern.h"
#include "util/err.h"

int slm_key_new_secret(char *out) {
    static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    if (sodium_init() < 0) return -1;
    memcpy(out, "slm-", 4);
    for (int i = 4; i < SLM_KEY_SECRET_LEN; i++) out[i] = alphabet[randombytes_uniform(62)];
    out[SLM_KEY_SECRET_LEN] = 0;
    return 0;
}

void slm_key_hash(const char *secret, char *out) {
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, (const unsigned char *)secret, strlen(secret));
    for (size_t i = 0; i < sizeof digest; i++) snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

int slm_key_name_check(const char *name, char *err, size_t err_len) {
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n >= SLM_KEY_NAME_MAX) return slm_err(err, err_len, "a key name has 1 to %d characters", SLM_KEY_NAME_MAX - 1);
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return slm_err(err, err_len, "key name '%.80s': only letters, digits, '.', '_' and '-' are allowed", name);
    }
    return 0;
}

static const char *const period_names[] = {"none", "day", "week", "month", "total"};

const char *slm_budget_period_name(slm_budget_period p) {
    return p >= SLM_BUDGET_NONE && p <= SLM_BUDGET_TOTAL ? period_names[p] : "none";
}

int slm_budget_parse(const char *text, double *usd, slm_budget_period *period, char *err, size_t err_len) {
    const char *slash = text ? strchr(text, '/') : NULL;
    if (!slash) return slm_err(err, err_len, "budget '%.80s': expected USD/PERIOD, e.g. 5/day, 100/month", text ? text : "");
    char *end;
    double v = strtod(text[0] == '$' ? text + 1 : text, &end);
    if (end != slash || !isfinite(v) || v < 0 || v > 1e12)
        return slm_err(err, err_len, "budget '%.80s': '%.*s' is not an amount of USD", text, (int)(slash - text), text);
    for (int p = SLM_BUDGET_DAY; p <= SLM_BUDGET_TOTAL; p++)
        if (strcmp(slash + 1, period_names[p]) == 0) {
            *usd = v;
            *period = (slm_budget_period)p;
            return 0;
        }
    return slm_err(err, err_len, "budget '%.80s': the period is day, week, month or total", text);
}

double slm_budget_period_start(slm_budget_period p, double now) {
    time_t t = (time_t)now;
    struct tm tm;
    gmtime_r(&t, &tm);
    tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
    switch (p) {
    case SLM_BUDGET_DAY: break;
    case SLM_BUDGET_WEEK: tm.tm_mday -= (tm.tm_wday + 6) % 7; break; /* back to Monday */
    case SLM_BUDGET_MONTH: tm.tm_mday = 1; break;
    default: return 0;
    }
    return (double)timegm(&tm);
}

int slm_pii_policy_parse(const char *name) {
    static const char *const names[] = {"off", "detect", "mask", "block"};
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, names[i]) == 0) return i;
    return -1;
}

const char *slm_pii_policy_name(slm_pii_policy p) {
    static const char *const names[] = {"off", "detect", "mask", "block"};
    return p >= SLM_PII_POLICY_OFF && p <= SLM_PII_POLICY_BLOCK ? names[p] : "off";
}

int slm_audit_content_parse(const char *name) {
    static const char *const names[] = {"none", "hash", "redacted", "full"};
    for (int i = 0; i < 4; i++)
        if (name && strcmp(name, names[i]) == 0) return i;
    return -1;
}
