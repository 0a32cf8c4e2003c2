#include "engine/textstream.h"

#include <string.h>

#include "slm_engine.h"

/* Longest suffix of text that is a proper prefix of some stop string: it may still become one. */
static size_t stop_prefix_hold(const char *text, size_t len, const char *const *stop, int n_stop) {
    size_t hold = 0;
    for (int s = 0; s < n_stop; s++) {
        size_t sl = strlen(stop[s]);
        /* only suffixes of the pending text can match: a long stop string costs nothing per token */
        size_t k = sl > 1 ? sl - 1 : 0;
        if (k > len) k = len;
        for (; k > hold; k--)
            if (memcmp(text + len - k, stop[s], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

size_t slm_text_final_len(const char *pending, size_t len, const char *const *stop, int n_stop, bool at_end,
                          bool *stopped) {
    size_t emit = len;
    *stopped = false;
    if (len == 0) return 0;
    for (int s = 0; s < n_stop; s++) {
        if (!stop[s][0]) continue;
        /* memmem, not strstr: byte tokens can put a NUL in the text before the stop string */
        const char *hit = memmem(pending, len, stop[s], strlen(stop[s]));
        if (hit && (size_t)(hit - pending) < emit) {
            emit = (size_t)(hit - pending);
            *stopped = true;
        }
    }
    if (*stopped || at_end) return emit;
    emit -= stop_prefix_hold(pending, len, stop, n_stop);
    return slm_utf8_complete_prefix(pending, emit);
}
