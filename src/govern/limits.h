/* Per-key rate limits: requests and tokens in the last minute, in memory (limits reset when the
 * server restarts; budgets, which must survive restarts, are summed from the ledger instead). */
#ifndef SLM_GOVERN_LIMITS_H
#define SLM_GOVERN_LIMITS_H

#include <stdbool.h>

typedef struct rate_limits rate_limits;

rate_limits *rate_limits_new(void);
void rate_limits_free(rate_limits *rl);
/* Admits one request of `key` at time now (seconds) unless it would exceed rpm requests or tpm
 * tokens in the trailing 60 s (0 = no limit). When refused, *retry_after is the whole seconds
 * until it would be admitted and *which names the limit ("rpm"/"tpm"). */
bool rate_limits_admit(rate_limits *rl, const char *key, int rpm, int tpm, double now, int *retry_after,
                       const char **which);
/* Charges tokens used by an admitted request of `key` at time now. */
void rate_limits_charge(rate_limits *rl, const char *key, int tokens, double now);

#endif
