/* The PII guard's public entry points: type names, the detector object, one-shot scans and the
 * overlap resolution shared with the streaming filter. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pii/pii_internal.h"

const unsigned char pii_ctype[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0, 0, 0,
    0, 10, 10, 10, 10, 10, 10, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0,
    0, 12, 12, 12, 12, 12, 12, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 32, 32, 32, 32, 32, 32, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* ---------- word sets: the rules' word lists, built once ----------
 * One lexicon holds every word and phrase of every list with a bit per list, so the several
 * questions the rules ask about one word ("a first name? a street word? a month?") cost one hash
 * lookup, and the last answer is memoised per thread. A Bloom filter answers most misses. */

#define MAX_SETS 64
typedef struct {
    const char *const *list;
    /* the last word of every phrase (after its last space), to reject a phrase search at once */
    const char **last_keys;
    uint32_t *last_lens;
    size_t last_mask;
} word_set;
static word_set sets[MAX_SETS];
static size_t n_sets;
static bool sets_oom;

typedef struct {
    uint64_t hash; /* compared first: the key itself is read only on a probable hit */
    const char *key;
    uint32_t len;
    uint64_t lists; /* bit i: in sets[i] */
} lex_entry;
static lex_entry *lex;
static size_t lex_mask, lex_count;
static uint64_t *bloom;
static size_t bloom_mask;

static uint64_t hash_bytes(const char *w, size_t len) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)w[i]) * 1099511628211ull;
    h ^= h >> 29;
    return h ? h : 1; /* 0 marks an empty cache slot */
}

/* list pointer -> set index, open addressing on the pointer's bits */
#define SLOT_BITS 8
static int slot_of[1 << SLOT_BITS];

static size_t ptr_slot(const void *p) { return (size_t)(((uintptr_t)p >> 3) * 0x9E3779B1u) >> 4 & ((1u << SLOT_BITS) - 1); }

static int set_index(const char *const *list) {
    for (size_t slot = ptr_slot(list); slot_of[slot]; slot = (slot + 1) & ((1u << SLOT_BITS) - 1))
        if (sets[slot_of[slot] - 1].list == list) return slot_of[slot] - 1;
    return -1;
}

static bool lex_grow(void) {
    size_t cap = lex_mask ? (lex_mask + 1) * 2 : 1 << 16;
    lex_entry *t = calloc(cap, sizeof *t);
    if (!t) return false;
    for (size_t i = 0; lex && i <= lex_mask; i++) {
        if (!lex[i].key) continue;
        size_t h = (size_t)hash_bytes(lex[i].key, lex[i].len) & (cap - 1);
        while (t[h].key) h = (h + 1) & (cap - 1);
        t[h] = lex[i];
    }
    free(lex);
    lex = t;
    lex_mask = cap - 1;
    return true;
}

static void lex_add(const char *w, size_t len, int id) {
    if ((lex_count + 1) * 2 > lex_mask + 1 && !lex_grow()) {
        sets_oom = true;
        return;
    }
    size_t h = (size_t)hash_bytes(w, len) & lex_mask;
    while (lex[h].key && !(lex[h].len == len && memcmp(lex[h].key, w, len) == 0)) h = (h + 1) & lex_mask;
    if (!lex[h].key) {
        lex[h].key = w;
        lex[h].len = (uint32_t)len;
        lex[h].hash = hash_bytes(w, len);
        lex_count++;
    }
    lex[h].lists |= 1ull << id;
}

/* A one-word entry is its own last word. */
static void lex_lists_bit_also_last(const char *w, size_t len, int id) { lex_add(w, len, id + 32); }

void pii_sets_register(const char *const *list) {
    size_t n = 0;
    while (list[n]) n++;
    pii_sets_register_n(list, n);
}

void pii_sets_register_n(const char *const *list, size_t n) {
    if (n_sets == 32 || set_index(list) >= 0) { /* bits 0-31: in the list; 32-63: last word of a phrase */
        sets_oom |= n_sets == 32;
        return;
    }
    size_t cap = 16;
    while (cap < n * 2) cap *= 2;
    word_set *ws = &sets[n_sets];
    ws->last_keys = calloc(cap, sizeof *ws->last_keys);
    ws->last_lens = calloc(cap, sizeof *ws->last_lens);
    if (!ws->last_keys || !ws->last_lens) {
        sets_oom = true;
        return;
    }
    ws->list = list;
    ws->last_mask = cap - 1;
    size_t slot = ptr_slot(list);
    while (slot_of[slot]) slot = (slot + 1) & ((1u << SLOT_BITS) - 1);
    slot_of[slot] = (int)n_sets + 1;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(list[i]);
        lex_add(list[i], len, (int)n_sets);
        const char *sp = strrchr(list[i], ' ');
        const char *lw = sp ? sp + 1 : list[i];
        size_t ll = strlen(lw);
        size_t g = (size_t)hash_bytes(lw, ll) & ws->last_mask;
        while (ws->last_keys[g] && !(ws->last_lens[g] == ll && memcmp(ws->last_keys[g], lw, ll) == 0))
            g = (g + 1) & ws->last_mask;
        ws->last_keys[g] = lw;
        ws->last_lens[g] = (uint32_t)ll;
        if (sp) lex_add(lw, ll, (int)n_sets + 32);
        else lex_lists_bit_also_last(list[i], len, (int)n_sets);
    }
    n_sets++;
}

static void bloom_build(void) {
    size_t bits = 1 << 16;
    while (bits < lex_count * 10) bits *= 2;
    bloom = calloc(bits / 64, sizeof *bloom);
    if (!bloom) {
        sets_oom = true;
        return;
    }
    bloom_mask = bits - 1;
    for (size_t i = 0; i <= lex_mask; i++) {
        if (!lex[i].key) continue;
        uint64_t h = hash_bytes(lex[i].key, lex[i].len);
        size_t b1 = (size_t)(h >> 20) & bloom_mask, b2 = (size_t)(h >> 40) & bloom_mask;
        bloom[b1 / 64] |= 1ull << (b1 % 64);
        bloom[b2 / 64] |= 1ull << (b2 % 64);
    }
}

/* The lists a word is in (bit per set), memoised for the last word asked on this thread. */
static uint64_t lex_lists(const char *w, size_t len) {
    /* a small per-thread cache of recent answers keyed by the 64-bit hash (the rules ask about
     * the same few words again and again); the big table is touched on a cache miss only */
    static _Thread_local struct {
        uint64_t hash, lists;
    } recent[256];
    uint64_t h = hash_bytes(w, len), lists = 0;
    if (h == 0) h = 1;
    if (recent[h & 255].hash == h) return recent[h & 255].lists;
    size_t b1 = (size_t)(h >> 20) & bloom_mask, b2 = (size_t)(h >> 40) & bloom_mask;
    if ((bloom[b1 / 64] >> (b1 % 64) & 1) && (bloom[b2 / 64] >> (b2 % 64) & 1)) {
        for (size_t k = (size_t)h & lex_mask; lex[k].key; k = (k + 1) & lex_mask)
            if (lex[k].hash == h && lex[k].len == len && memcmp(lex[k].key, w, len) == 0) {
                lists = lex[k].lists;
                break;
            }
    }
    recent[h & 255].hash = h;
    recent[h & 255].lists = lists;
    return lists;
}

bool pii_in_set(const char *const *list, const char *w, size_t len) {
    int id = set_index(list);
    if (id < 0) {
        /* not registered (a programming error the tests catch): a plain scan */
        for (const char *const *l = list; *l; l++)
            if (strlen(*l) == len && memcmp(*l, w, len) == 0) return true;
        return false;
    }
    return lex_lists(w, len) >> id & 1;
}

bool pii_in_set_last_word(const char *const *list, const char *w, size_t len) {
    int id = set_index(list);
    if (id < 0) return true;
    return lex_lists(w, len) >> (32 + id) & 1;
}

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
static void tables_init(void) {
    pii_scan_register_sets();
    pii_names_register_sets();
    bloom_build();
}

struct slm_pii {
    int unused; /* the rules and gazetteers are static data; the object keeps the API future-proof */
};

static const char *const TYPE_NAMES[SLM_PII_TYPES] = {
    "PERSON", "PHONE", "EMAIL", "SECRET", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS", "URL", "ADDRESS",
    "LOCATION", "DATE_OF_BIRTH"};

const char *slm_pii_type_name(slm_pii_type t) {
    return (unsigned)t < SLM_PII_TYPES ? TYPE_NAMES[t] : "?";
}

int slm_pii_type_parse(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < SLM_PII_TYPES; i++)
        if (strcmp(name, TYPE_NAMES[i]) == 0) return i;
    return -1;
}

slm_pii *slm_pii_new(char *err, size_t err_len) {
    pthread_once(&tables_once, tables_init);
    slm_pii *d = sets_oom ? NULL : calloc(1, sizeof *d);
    if (!d && err && err_len) {
        strncpy(err, "out of memory", err_len - 1);
        err[err_len - 1] = 0;
    }
    return d;
}

void slm_pii_free(slm_pii *d) { free(d); }

size_t slm_pii_cp_offset(const char *text, size_t byte_off) {
    size_t n = 0;
    if (!text) return 0;
    for (size_t i = 0; i < byte_off; i++) n += ((unsigned char)text[i] & 0xC0) != 0x80;
    return n;
}

static int cand_order(const void *a, const void *b) {
    const pii_cand *x = a, *y = b;
    if (x->prio != y->prio) return y->prio - x->prio;
    size_t lx = x->end - x->start, ly = y->end - y->start;
    if (lx != ly) return lx > ly ? -1 : 1;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->kind - y->kind;
}

static int cand_by_start(const void *a, const void *b) {
    const pii_cand *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

pii_cand *pii_resolve(pii_scan *x, const pii_cand *c, size_t nc, size_t *n_out) {
    *n_out = 0;
    if (nc == 0) return NULL;
    pii_cand *all = malloc(nc * sizeof *all), *win = malloc(nc * sizeof *win);
    if (!all || !win) {
        free(all);
        free(win);
        x->oom = true;
        return NULL;
    }
    memcpy(all, c, nc * sizeof *all);
    qsort(all, nc, sizeof *all, cand_order);
    size_t nw = 0;
    /* winners are kept sorted by start so each overlap test is a binary search */
    for (size_t i = 0; i < nc; i++) {
        size_t lo = 0, hi = nw;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (win[mid].start < all[i].start) lo = mid + 1;
            else hi = mid;
        }
        bool clash = (lo < nw && win[lo].start < all[i].end) || (lo > 0 && win[lo - 1].end > all[i].start);
        if (clash) continue;
        memmove(win + lo + 1, win + lo, (nw - lo) * sizeof *win);
        win[lo] = all[i];
        nw++;
    }
    free(all);
    (void)cand_by_start;
    *n_out = nw;
    return win;
}

/* Prepares a scan of s[0..n): the lowercased copy. */
bool pii_scan_init(pii_scan *x, const slm_pii *d, const char *s, size_t n, size_t from, bool final) {
    memset(x, 0, sizeof *x);
    x->d = d;
    x->s = (const unsigned char *)s;
    x->n = n;
    x->from = from;
    x->final = final;
    x->stable = n;
    x->low = malloc(n + 1);
    if (!x->low) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        x->low[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    x->low[n] = 0;
    return true;
}

void pii_scan_done(pii_scan *x) {
    free(x->low);
    free(x->c);
    x->low = NULL;
    x->c = NULL;
}

int slm_pii_scan(const slm_pii *d, const char *text, size_t len, slm_pii_span **spans) {
    *spans = NULL;
    if (!d || (!text && len)) return -1;
    if (len == 0) return 0;
    pii_scan x;
    if (!pii_scan_init(&x, d, text, len, 0, true)) return -1;
    pii_scan_all(&x);
    size_t nw = 0;
    pii_cand *w = x.oom ? NULL : pii_resolve(&x, x.c, x.nc, &nw);
    if (x.oom) {
        free(w);
        pii_scan_done(&x);
        return -1;
    }
    pii_scan_done(&x);
    if (nw == 0) {
        free(w);
        return 0;
    }
    if (nw > (size_t)(int)(((unsigned)-1) >> 1)) nw = (size_t)(((unsigned)-1) >> 1);
    slm_pii_span *out = malloc(nw * sizeof *out);
    if (!out) {
        free(w);
        return -1;
    }
    for (size_t i = 0; i < nw; i++) out[i] = (slm_pii_span){w[i].start, w[i].end, (slm_pii_type)w[i].kind};
    free(w);
    *spans = out;
    return (int)nw;
}
