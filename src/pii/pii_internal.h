/* Internals shared by the PII detector (pii_scan.c, pii_names.c) and the masking/filter code. */
#ifndef SLM_PII_INTERNAL_H
#define SLM_PII_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "slm_pii.h"

/* An internal candidate kind beyond the public types: a placeholder of the mask being restored. */
#define PII_KIND_PLACEHOLDER SLM_PII_TYPES

typedef struct {
    size_t start, end;
    int kind;  /* slm_pii_type, or PII_KIND_PLACEHOLDER */
    int prio;  /* overlap resolution: higher wins, then longer, then earlier */
} pii_cand;

/* Left context any rule may read before a candidate's start: the filter keeps this much already
 * emitted text so that a candidate is decided exactly as in a one-shot scan. */
#define PII_MAX_LOOKBEHIND 200
#define PII_FILTER_CONTEXT 512
/* The filter holds back at most this much: beyond it the pending text is decided as if it ended
 * there (an entity longer than this, a pathological single token, may be masked in parts). */
#define PII_FILTER_MAX_HOLD 16384
/* No entity is longer than this without whitespace (links are capped at 4096 bytes), so the last
 * word is held back only this far. */
#define PII_MAX_WORD_ENTITY 4608

typedef struct pii_scan pii_scan;
struct pii_scan {
    const slm_pii *d;
    const unsigned char *s; /* text */
    size_t n;               /* its length */
    char *low;              /* ASCII-lowercased copy, for keyword search */
    size_t from;            /* candidates starting before this are not wanted */
    bool final;             /* the text is complete (false: more may follow, in the filter) */
    size_t attempt;         /* start of the entity the current rule is deciding */
    size_t stable;          /* in a partial text: the earliest start of an undecided entity */
    pii_cand *c;
    size_t nc, capc;
    bool oom;
};

/* Byte at i, or 0 past the end; past the end of a partial text, marks the current attempt as
 * undecided (its outcome may change when more text arrives). */
static inline unsigned pii_at(pii_scan *x, size_t i) {
    if (i < x->n) return x->s[i];
    if (!x->final && x->attempt < x->stable) x->stable = x->attempt;
    return 0;
}

void pii_add(pii_scan *x, size_t start, size_t end, int kind, int prio);
/* Runs every rule over x->s[0..n) and appends candidates starting at >= x->from. */
void pii_scan_all(pii_scan *x);
/* Rules for names, places and postal addresses (pii_names.c), run at each word start. */
void pii_scan_names(pii_scan *x);
/* Resolves overlaps (priority, then length, then position); returns the winners sorted by start,
 * with their count in *n_out; NULL with *n_out 0 when there are none; sets x->oom on failure. */
pii_cand *pii_resolve(pii_scan *x, const pii_cand *c, size_t nc, size_t *n_out);

/* Keyword search in the lowercased text: does any of words occur in low[lo..hi)? */
bool pii_ctx_any(const pii_scan *x, size_t lo, size_t hi, const char *const *words);
/* The same, matching only at the start of a word ("tel" not inside "Bestellung"). */
bool pii_ctx_word_any(const pii_scan *x, size_t lo, size_t hi, const char *const *words);
size_t pii_back(size_t pos, size_t window);

/* Gazetteers (pii_gazetteer_data.c): sorted lower-case keys. */
typedef enum { GZ_FIRST, GZ_LAST, GZ_CITY, GZ_CITY_PREFIX, GZ_CITY_SUFFIX, GZ_STREET, GZ_COUNTRY, GZ_COUNT } pii_gz;
/* Is the word (any case; folded here) in the list? */
bool pii_gz_has(pii_gz list, const unsigned char *w, size_t len);
/* Folds ASCII and Latin-1 capitals to lower case into out (at most cap bytes); returns the length,
 * or 0 when the word does not fit. */
size_t pii_fold(const unsigned char *w, size_t len, char *out, size_t cap);

/* Character classes of a byte, one table lookup (pii.c). */
enum { PII_C_DIGIT = 1, PII_C_UPPER = 2, PII_C_LOWER = 4, PII_C_HEX = 8, PII_C_SPACE = 16, PII_C_LATIN_LEAD = 32 };
extern const unsigned char pii_ctype[256];
static inline bool pii_is_digit(unsigned c) { return c < 256 && (pii_ctype[c] & PII_C_DIGIT); }
static inline bool pii_is_upper(unsigned c) { return c < 256 && (pii_ctype[c] & PII_C_UPPER); }
static inline bool pii_is_lower(unsigned c) { return c < 256 && (pii_ctype[c] & PII_C_LOWER); }
static inline bool pii_is_alpha(unsigned c) { return c < 256 && (pii_ctype[c] & (PII_C_UPPER | PII_C_LOWER)); }
static inline bool pii_is_alnum(unsigned c) {
    return c < 256 && (pii_ctype[c] & (PII_C_UPPER | PII_C_LOWER | PII_C_DIGIT));
}
static inline bool pii_is_space(unsigned c) { return c < 256 && (pii_ctype[c] & PII_C_SPACE); }
static inline bool pii_is_hex(unsigned c) { return c < 256 && (pii_ctype[c] & PII_C_HEX); }
/* A word character: ASCII letter/digit or a byte of a multi-byte Latin letter (lead bytes C3-C9
 * and their continuation bytes); other non-ASCII (dashes, quotes, NBSP, currency) is punctuation. */
static inline bool pii_is_word_at(const unsigned char *s, size_t n, size_t i) {
    if (i >= n) return false;
    unsigned c = s[i];
    if (c < 0x80) return pii_is_alnum(c);
    if (c >= 0xC3 && c <= 0xC9) return true;
    if (c >= 0x80 && c <= 0xBF && i > 0 && s[i - 1] >= 0xC3 && s[i - 1] <= 0xC9) return true;
    return false;
}



/* Word lists as hash sets (exact bytes): registered once by slm_pii_new, then read-only. */
void pii_sets_register(const char *const *list);
void pii_sets_register_n(const char *const *list, size_t n);
bool pii_in_set(const char *const *list, const char *w, size_t len);
/* Is w the last word (after the last space) of one of the list's phrases? */
bool pii_in_set_last_word(const char *const *list, const char *w, size_t len);
void pii_scan_register_sets(void);
void pii_names_register_sets(void);

bool pii_scan_init(pii_scan *x, const slm_pii *d, const char *s, size_t n, size_t from, bool final);
void pii_scan_done(pii_scan *x);
#endif
