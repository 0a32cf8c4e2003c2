/* The admit stage for keys given on the command line (--api-key, SLM_API_KEYS): a call must
 * present one of them (compared by slm_secret_equal, so response timing leaks nothing). */
#include <stdlib.h>
#include <string.h>

#include "slm_gate.h"
#include "util/err.h"
#include "util/secret.h"

typedef struct static_keys {
    const char *const *keys;
    int n;
} static_keys;

static bool admit_static_key(void *state, slm_gate_call *call) {
    const static_keys *sk = state;
    const char *key = call->credential;
    bool ok = false;
    if (key && *key)
        for (int i = 0; i < sk->n; i++) ok |= slm_secret_equal(key, sk->keys[i]);
    if (!ok)
        return slm_gate_refuse(call, 401, "invalid_api_key",
                               "missing or invalid API key (send 'Authorization: Bearer <key>')");
    memcpy(call->principal, "static-key", sizeof "static-key");
    return true;
}

int slm_gate_add_static_keys(slm_gate *g, const char *const *keys, int n, char *err, size_t err_len) {
    if (n <= 0) return 0; /* no keys configured: the stage would admit everyone, so it is not added */
    static_keys *sk = slm_gate_keep(g, sizeof *sk);
    if (!sk) return slm_err(err, err_len, "out of memory");
    sk->keys = keys;
    sk->n = n;
    slm_gate_stage st = {.name = "static-keys", .phase = SLM_PHASE_ADMIT, .run = admit_static_key, .state = sk};
    return slm_gate_add_stage(g, &st, err, err_len);
}
