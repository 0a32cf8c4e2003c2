#include "secret.h"

#include <sodium.h>
#include <string.h>

bool slm_secret_equal(const char *presented, const char *expected) {
    unsigned char a[crypto_generichash_BYTES], b[crypto_generichash_BYTES];
    crypto_generichash(a, sizeof a, (const unsigned char *)presented, strlen(presented), NULL, 0);
    crypto_generichash(b, sizeof b, (const unsigned char *)expected, strlen(expected), NULL, 0);
    return sodium_memcmp(a, b, sizeof a) == 0;
}
