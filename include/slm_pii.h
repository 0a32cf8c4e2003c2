/* PII guard: detection of personal data and credentials in text, per-request masking with
 * placeholders, and a streaming filter for generated text (restore placeholders, redact PII).
 *
 * Detection is rules + checksums + context words + compiled-in gazetteers (names, places, street
 * words from Faker's locales); no data files, no model. All offsets are UTF-8 byte offsets, end
 * exclusive; slm_pii_cp_offset converts them to code points. Any bytes are accepted (invalid
 * UTF-8, NUL): they are never part of an entity but never crash the scan. */
#ifndef SLM_PII_H
#define SLM_PII_H

#include <stddef.h>

typedef enum {
    SLM_PII_PERSON,
    SLM_PII_PHONE,
    SLM_PII_EMAIL,
    SLM_PII_SECRET,
    SLM_PII_CREDIT_CARD,
    SLM_PII_IBAN,
    SLM_PII_US_SSN,
    SLM_PII_IP_ADDRESS,
    SLM_PII_URL,
    SLM_PII_ADDRESS,
    SLM_PII_LOCATION,
    SLM_PII_DATE_OF_BIRTH,
    SLM_PII_TYPES
} slm_pii_type;

typedef struct {
    size_t start, end; /* UTF-8 byte offsets, end exclusive */
    slm_pii_type type;
} slm_pii_span;

/* "EMAIL", "PERSON", ... exactly the labels of the PII dataset; "?" for an out-of-range value. */
const char *slm_pii_type_name(slm_pii_type t);
/* The type of a label (case-sensitive), or -1 when unknown. */
int slm_pii_type_parse(const char *name);

/* A detector: immutable after creation, so one detector may scan from many threads at once. */
typedef struct slm_pii slm_pii;
slm_pii *slm_pii_new(char *err, size_t err_len);
void slm_pii_free(slm_pii *d);

/* Spans of text[0..len), sorted by start, non-overlapping; returns their count, or -1 when out of
 * memory. *spans is malloc'd (NULL when the count is 0); the caller frees it. */
int slm_pii_scan(const slm_pii *d, const char *text, size_t len, slm_pii_span **spans);

/* Number of code points in text[0..byte_off): what byte offsets become for Python-style indices.
 * Counts the bytes that do not continue a UTF-8 sequence (so invalid bytes count as one each). */
size_t slm_pii_cp_offset(const char *text, size_t byte_off);

/* Per-request masking: the same value gets the same placeholder ("[EMAIL_1]", "[PERSON_2]") within
 * one mask object, across all the texts of a request. Not thread-safe (one request, one mask). */
typedef struct slm_pii_mask slm_pii_mask;
slm_pii_mask *slm_pii_mask_new(void);
void slm_pii_mask_free(slm_pii_mask *m);
/* text with the spans (sorted, non-overlapping, inside [0,len)) replaced by placeholders;
 * malloc'd and NUL-terminated, *out_len set (may be NULL); NULL when out of memory or the spans
 * are not sorted/non-overlapping/in range. */
char *slm_pii_mask_apply(slm_pii_mask *m, const char *text, size_t len, const slm_pii_span *spans, int n,
                         size_t *out_len);
/* The original value of a placeholder of m ("[EMAIL_1]" with its brackets), or NULL; *value_len set. */
const char *slm_pii_mask_lookup(const slm_pii_mask *m, const char *placeholder, size_t len, size_t *value_len);
/* Number of distinct values masked so far. */
int slm_pii_mask_count(const slm_pii_mask *m);

/* Streaming output filter for generated text arriving in arbitrary pieces (split anywhere, even
 * inside a UTF-8 character):
 *  - SLM_PII_FILTER_RESTORE: placeholders of m found in the output are replaced by the original
 *    values (m may be NULL: nothing to restore);
 *  - SLM_PII_FILTER_REDACT: PII detected in the output itself is masked, with placeholders from m
 *    (or from the filter's own mask when m is NULL). Restored values are never re-redacted.
 * Only a possible prefix of a placeholder or entity is held back; everything else is emitted at
 * once and the rest at flush. The concatenated output equals slm_pii_filter_oneshot on the whole
 * text, wherever the pieces were split. */
typedef struct slm_pii_filter slm_pii_filter;
enum { SLM_PII_FILTER_RESTORE = 1, SLM_PII_FILTER_REDACT = 2 };
/* d may be NULL for RESTORE alone; NULL when out of memory or REDACT is asked without a detector.
 * The filter keeps the last 512 bytes it emitted as context and holds back at most 16 KB (an
 * endless token beyond that is decided as if the text ended there). */
slm_pii_filter *slm_pii_filter_new(const slm_pii *d, slm_pii_mask *m, unsigned flags);
void slm_pii_filter_free(slm_pii_filter *f);
/* Appends the text now safe to emit to *out (malloc'd/realloc'd buffer owned by the caller, *out_len
 * its length; *out may be NULL with *out_len 0). Returns 0, or -1 when out of memory. */
int slm_pii_filter_feed(slm_pii_filter *f, const char *piece, size_t len, char **out, size_t *out_len);
/* Emits everything still held back; the filter accepts no more text afterwards (feed returns -1). */
int slm_pii_filter_flush(slm_pii_filter *f, char **out, size_t *out_len);
/* Counts per type of the PII the filter redacted so far (for the audit record). */
void slm_pii_filter_counts(const slm_pii_filter *f, int counts[SLM_PII_TYPES]);
/* The whole-text transformation the filter performs, in one call (the reference the streaming
 * output equals). malloc'd, NUL-terminated, *out_len set; NULL when out of memory. */
char *slm_pii_filter_oneshot(const slm_pii *d, slm_pii_mask *m, unsigned flags, const char *text, size_t len,
                             size_t *out_len);

#endif
