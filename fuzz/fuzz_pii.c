/* libFuzzer target for the PII guard: slm_pii_scan, masking and the streaming filter.
 *
 * Input: the first byte picks the filter mode and how pieces are cut; the rest is the text (any
 * bytes: invalid UTF-8, NUL). Checks:
 *   - spans are sorted, non-overlapping, non-empty and inside the text;
 *   - masking replaces exactly the spans: the masked text is the text outside the spans with a
 *     well-formed placeholder for each, and masking the same text again gives the same bytes;
 *   - restoring placeholders in the masked text gives the original text back (when the text has
 *     no '[' of its own, which could spell a placeholder);
 *   - the streaming filter, fed in pieces cut at positions derived from the input (anywhere,
 *     even inside a UTF-8 character), emits exactly the one-shot transformation. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slm_pii.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static slm_pii *det;

static void fail(const char *what) {
    fprintf(stderr, "fuzz_pii: %s\n", what);
    abort();
}

static char *stream(slm_pii_mask *m, unsigned flags, const char *t, size_t len, uint32_t seed, size_t *out_len) {
    slm_pii_filter *f = slm_pii_filter_new(det, m, flags);
    if (!f) fail("filter_new failed");
    char *out = NULL;
    *out_len = 0;
    size_t pos = 0;
    while (pos < len) {
        seed = seed * 1103515245u + 12345u;
        size_t step = 1 + (seed >> 16) % 23;
        if (step > len - pos) step = len - pos;
        if (slm_pii_filter_feed(f, t + pos, step, &out, out_len) != 0) fail("feed failed");
        pos += step;
    }
    if (slm_pii_filter_flush(f, &out, out_len) != 0) fail("flush failed");
    int counts[SLM_PII_TYPES];
    slm_pii_filter_counts(f, counts);
    for (int i = 0; i < SLM_PII_TYPES; i++)
        if (counts[i] < 0) fail("negative count");
    slm_pii_filter_free(f);
    if (!out) out = calloc(1, 1);
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!det) det = slm_pii_new(NULL, 0);
    if (!det) fail("slm_pii_new failed");
    if (size == 0 || size > 4096) return 0;
    unsigned mode = data[0];
    const char *t = (const char *)data + 1;
    size_t len = size - 1;

    slm_pii_span *sp = NULL;
    int n = slm_pii_scan(det, t, len, &sp);
    if (n < 0) fail("scan failed");
    for (int i = 0; i < n; i++) {
        if (sp[i].start >= sp[i].end || sp[i].end > len) fail("span out of range");
        if (i && sp[i].start < sp[i - 1].end) fail("spans overlap or are unsorted");
        if ((unsigned)sp[i].type >= SLM_PII_TYPES) fail("bad type");
    }

    slm_pii_mask *m = slm_pii_mask_new();
    size_t ml = 0, ml2 = 0;
    char *masked = slm_pii_mask_apply(m, t, len, sp, n, &ml);
    char *again = slm_pii_mask_apply(m, t, len, sp, n, &ml2);
    if (!masked || !again) fail("mask failed");
    if (ml != ml2 || memcmp(masked, again, ml) != 0) fail("masking the same text twice differs");
    /* the masked text: outside bytes unchanged, a placeholder per span */
    size_t pos = 0, mp = 0;
    for (int i = 0; i < n; i++) {
        size_t gap = sp[i].start - pos;
        if (mp + gap > ml || memcmp(masked + mp, t + pos, gap) != 0) fail("text outside a span changed");
        mp += gap;
        const char *close = memchr(masked + mp, ']', ml - mp);
        if (masked[mp] != '[' || !close) fail("no placeholder");
        size_t vl = 0;
        const char *v = slm_pii_mask_lookup(m, masked + mp, (size_t)(close + 1 - (masked + mp)), &vl);
        if (!v || vl != sp[i].end - sp[i].start || memcmp(v, t + sp[i].start, vl) != 0)
            fail("placeholder does not map to the value");
        mp = (size_t)(close + 1 - masked);
        pos = sp[i].end;
    }
    if (ml - mp != len - pos || memcmp(masked + mp, t + pos, len - pos) != 0) fail("tail changed");

    /* restore(mask(text)) == text */
    if (!memchr(t, '[', len)) {
        size_t rl = 0;
        char *r = stream(m, SLM_PII_FILTER_RESTORE, masked, ml, mode * 2654435761u, &rl);
        if (rl != len || memcmp(r, t, len) != 0) fail("restore did not give the text back");
        free(r);
    }

    /* streaming == one-shot, for the chosen mode, with a mask that knows the text's values */
    unsigned flags = 1 + mode % 3;
    slm_pii_mask *m1 = slm_pii_mask_new(), *m2 = slm_pii_mask_new();
    char *x1 = slm_pii_mask_apply(m1, t, len, sp, n, NULL), *x2 = slm_pii_mask_apply(m2, t, len, sp, n, NULL);
    size_t ol = 0, sl = 0;
    char *one = slm_pii_filter_oneshot(det, m1, flags, t, len, &ol);
    char *str = stream(m2, flags, t, len, mode * 40503u + (uint32_t)len, &sl);
    if (!one || ol != sl || memcmp(one, str, ol) != 0) fail("streamed output differs from the one-shot output");
    free(x1);
    free(x2);
    free(one);
    free(str);
    slm_pii_mask_free(m1);
    slm_pii_mask_free(m2);
    free(masked);
    free(again);
    slm_pii_mask_free(m);
    free(sp);
    return 0;
}
