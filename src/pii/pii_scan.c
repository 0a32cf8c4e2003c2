/* The PII detector: structured types (EMAIL, URL, SECRET, IBAN, CREDIT_CARD, US_SSN, IP_ADDRESS,
 * PHONE, DATE_OF_BIRTH) found by hand-written scanners with checksums and context words, plus the
 * candidate list and overlap resolution shared with the name/place rules (pii_names.c).
 *
 * Every rule reads the text through pii_at() past its start, so that in a partial text (the
 * streaming filter) a rule that ran into the end marks its entity as undecided; rules look back at
 * most PII_MAX_LOOKBEHIND bytes. Together these make a scan of a window equal to a one-shot scan. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pii/pii_internal.h"

/* ---------- helpers ---------- */

void pii_add(pii_scan *x, size_t start, size_t end, int kind, int prio) {
    if (start < x->from || end <= start) return;
    if (x->nc == x->capc) {
        size_t cap = x->capc ? x->capc * 2 : 32;
        pii_cand *c = realloc(x->c, cap * sizeof *c);
        if (!c) {
            x->oom = true;
            return;
        }
        x->c = c;
        x->capc = cap;
    }
    x->c[x->nc++] = (pii_cand){start, end, kind, prio};
}

size_t pii_back(size_t pos, size_t window) { return pos > window ? pos - window : 0; }

/* Keyword lists for context windows: per list, the words' lengths and a table of their first
 * bytes, so a window is searched in one pass (most positions fail the first-byte test). */
#define MAX_KW_LISTS 24
typedef struct {
    const char *const *list;
    size_t n;
    unsigned char len[96];
    bool first[256];
} kw_list;
static kw_list kw_lists[MAX_KW_LISTS];
static size_t n_kw_lists;

static void kw_register(const char *const *list) {
    if (n_kw_lists == MAX_KW_LISTS) return;
    kw_list *k = &kw_lists[n_kw_lists];
    size_t n = 0;
    while (list[n] && n < sizeof k->len) {
        k->len[n] = (unsigned char)strlen(list[n]);
        k->first[(unsigned char)list[n][0]] = true;
        n++;
    }
    if (list[n]) return; /* too long a list: the plain search below handles it */
    k->list = list;
    k->n = n;
    n_kw_lists++;
}

static const kw_list *kw_find(const char *const *list) {
    for (size_t i = 0; i < n_kw_lists; i++)
        if (kw_lists[i].list == list) return &kw_lists[i];
    return NULL;
}

/* The last position in low[lo..hi) where a keyword starts (at a word start when word_start),
 * or SIZE_MAX. */
static size_t kw_last(const pii_scan *x, size_t lo, size_t hi, const char *const *words, bool at_word_start) {
    if (hi > x->n) hi = x->n;
    if (lo >= hi) return (size_t)-1;
    const kw_list *k = kw_find(words);
    for (size_t i = hi; i-- > lo;) {
        unsigned char c = (unsigned char)x->low[i];
        if (k && !k->first[c]) continue;
        if (at_word_start && i > 0 && pii_is_alpha((unsigned char)x->low[i - 1])) continue;
        for (size_t w = 0; k ? w < k->n : words[w] != NULL; w++) {
            size_t len = k ? k->len[w] : strlen(words[w]);
            if ((unsigned char)words[w][0] == c && i + len <= hi && memcmp(x->low + i, words[w], len) == 0) return i;
        }
    }
    return (size_t)-1;
}

bool pii_ctx_any(const pii_scan *x, size_t lo, size_t hi, const char *const *words) {
    return kw_last(x, lo, hi, words, false) != (size_t)-1;
}

bool pii_ctx_word_any(const pii_scan *x, size_t lo, size_t hi, const char *const *words) {
    return kw_last(x, lo, hi, words, true) != (size_t)-1;
}

/* prev byte is not a letter/digit (or the text starts at p) */
static bool word_start(const pii_scan *x, size_t p) { return p == 0 || !pii_is_word_at(x->s, x->n, p - 1); }

/* ---------- EMAIL ---------- */

static bool is_local_char(unsigned c) { return pii_is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-'; }

/* Reserved documentation / test names (RFC 2606, 6761): never PII. */
static bool reserved_host(const char *low, size_t len) {
    static const char *const names[] = {"example.com", "example.org", "example.net", "localhost", NULL};
    static const char *const tlds[] = {".example", ".test", ".invalid", ".localhost", ".local", NULL};
    for (const char *const *w = names; *w; w++) {
        size_t k = strlen(*w);
        if (len == k && memcmp(low, *w, k) == 0) return true;
        if (len > k && memcmp(low + len - k, *w, k) == 0 && low[len - k - 1] == '.') return true;
    }
    for (const char *const *w = tlds; *w; w++) {
        size_t k = strlen(*w);
        if (len >= k && memcmp(low + len - k, *w, k) == 0) return true;
    }
    if (len == 7 && memcmp(low, "example", 7) == 0) return true;
    return false;
}

/* A domain at p: labels of [A-Za-z0-9-] joined by dots, an alphabetic TLD of 2+ letters.
 * Returns its end (0 when none); the trailing dot of a sentence is not part of it. */
static size_t scan_domain(pii_scan *x, size_t p) {
    size_t i = p, end = 0, labels = 0;
    while (i - p < 255) {
        size_t ls = i;
        while (pii_is_alnum(pii_at(x, i)) || pii_at(x, i) == '-') i++;
        if (i == ls || i - ls > 63) break;
        labels++;
        bool alpha_tld = i - ls >= 2;
        for (size_t k = ls; k < i && alpha_tld; k++) alpha_tld = pii_is_alpha(x->s[k]);
        if (labels >= 2 && alpha_tld) end = i;
        if (pii_at(x, i) == '.' && pii_is_alnum(pii_at(x, i + 1)))
            i++;
        else
            break;
    }
    return end;
}

static void scan_email(pii_scan *x, size_t at) {
    size_t l = at;
    while (l > 0 && at - l < 64 && is_local_char(x->s[l - 1])) l--;
    while (l < at && (x->s[l] == '.' || x->s[l] == '-')) l++;
    if (l == at) return;
    x->attempt = l;
    size_t end = scan_domain(x, at + 1);
    if (!end) return;
    if (pii_is_alnum(pii_at(x, end)) || pii_at(x, end) == '@') return;
    if (reserved_host(x->low + at + 1, end - at - 1)) return;
    pii_add(x, l, end, SLM_PII_EMAIL, 88);
}

/* ---------- URL ---------- */

static bool is_url_char(unsigned c) {
    return c > 0x20 && c < 0x7f && c != '<' && c != '>' && c != '"' && c != '`' && c != '\\' && c != '{' &&
           c != '}' && c != '|' && c != '^';
}

static bool host_is_ip(const char *h, size_t len) {
    size_t dots = 0;
    for (size_t i = 0; i < len; i++) {
        if (h[i] == '.') dots++;
        else if (!pii_is_digit((unsigned char)h[i])) return h[0] == '[';
    }
    return dots == 3;
}

static void scan_url(pii_scan *x, size_t p) {
    size_t host;
    if (p + 7 <= x->n && memcmp(x->low + p, "http://", 7) == 0) host = p + 7;
    else if (p + 8 <= x->n && memcmp(x->low + p, "https://", 8) == 0) host = p + 8;
    else if (p + 4 <= x->n && memcmp(x->low + p, "www.", 4) == 0) host = p;
    else return;
    if (!pii_is_alnum(pii_at(x, host)) && pii_at(x, host) != '[') return;
    size_t e = host;
    while (is_url_char(pii_at(x, e)) && e - host < 4096) e++;
    if (e - host >= 4096) return; /* not a link anyone types; keeps the scan linear */
    /* trailing punctuation belongs to the sentence; a closing bracket only when unbalanced */
    for (;;) {
        unsigned c = x->s[e - 1];
        if (e <= host + 1) return;
        if (strchr(".,;:!?'*", (int)c)) { e--; continue; }
        if (c == ')' || c == ']') {
            unsigned open = c == ')' ? '(' : '[';
            int bal = 0;
            for (size_t k = host; k < e; k++) bal += x->s[k] == open ? 1 : x->s[k] == c ? -1 : 0;
            if (bal < 0) { e--; continue; }
        }
        break;
    }
    /* the host: after the scheme, up to / ? # or :port; skip user info */
    size_t hs = host, he = host;
    while (he < e && x->s[he] != '/' && x->s[he] != '?' && x->s[he] != '#') he++;
    for (size_t k = hs; k < he; k++)
        if (x->s[k] == '@') hs = k + 1;
    if (hs >= he) return; /* user info and no host after it ("www.example@"): not a link */
    size_t hp = hs;
    while (hp < he && x->s[hp] != ':') hp++;
    if (x->s[hs] == '[') hp = he;
    if (reserved_host(x->low + hs, hp - hs)) return;
    if (host_is_ip(x->low + hs, hp - hs)) return; /* the address is marked as IP_ADDRESS on its own */
    pii_add(x, p, e, SLM_PII_URL, 90);
}

/* ---------- SECRET ---------- */

/* Longest credential body looked at: longer runs are not keys, and the bound keeps a hostile
 * text of one endless token linear. */
#define MAX_RUN 1024

static size_t run_of_max(pii_scan *x, size_t p, const char *set_extra, size_t max) {
    size_t i = p;
    char e0 = set_extra[0], e1 = e0 ? set_extra[1] : 0;
    for (; i - p < max;) {
        unsigned c = pii_at(x, i);
        if (pii_is_alnum(c) || (c && (c == (unsigned char)e0 || c == (unsigned char)e1))) i++;
        else break;
    }
    return i;
}

static size_t run_of(pii_scan *x, size_t p, const char *set_extra) { return run_of_max(x, p, set_extra, MAX_RUN); }

/* A real key, not a placeholder: letters and digits mixed, no long run of one character, no "xxxx". */
static bool looks_random(const pii_scan *x, size_t a, size_t b) {
    int up = 0, lo = 0, dg = 0, run = 1, maxrun = 1;
    for (size_t i = a; i < b; i++) {
        unsigned c = x->s[i];
        up += pii_is_upper(c);
        lo += pii_is_lower(c);
        dg += pii_is_digit(c);
        run = i > a && x->s[i - 1] == c ? run + 1 : 1;
        if (run > maxrun) maxrun = run;
    }
    if (maxrun >= 5) return false;
    if (memmem(x->low + a, b - a, "xxxx", 4) || memmem(x->low + a, b - a, "your", 4) ||
        memmem(x->low + a, b - a, "example", 7) || memmem(x->low + a, b - a, "dummy", 5) ||
        memmem(x->low + a, b - a, "placeholder", 11) ||
        memmem(x->low + a, b - a, "here", 4) || memmem(x->low + a, b - a, "token", 5))
        return false;
    return dg > 0 && (up + lo) > 0;
}

static bool prefix_at(const pii_scan *x, size_t p, const char *pre) {
    size_t k = strlen(pre);
    return p + k <= x->n && memcmp(x->s + p, pre, k) == 0;
}

static void add_secret(pii_scan *x, size_t p, size_t body, size_t end, size_t min_body) {
    if (end - body < min_body) return;
    if (!looks_random(x, body, end)) return;
    pii_add(x, p, end, SLM_PII_SECRET, 95);
}

static void scan_pem(pii_scan *x, size_t p) {
    /* -----BEGIN [A-Z ]*PRIVATE KEY----- ... -----END ...----- */
    size_t i = p + 11;
    while (pii_is_upper(pii_at(x, i)) || pii_at(x, i) == ' ') i++;
    if (i - p < 11 + 11 || memcmp(x->s + i - 11, "PRIVATE KEY", 11) != 0) return;
    for (int k = 0; k < 5; k++)
        if (pii_at(x, i + k) != '-') return;
    i += 5;
    size_t last = i; /* end of the last base64 line */
    for (size_t lim = i + 8192; i < lim;) {
        unsigned c = pii_at(x, i);
        if (c == 0 && i >= x->n) break;
        if (c == '-' && pii_at(x, i + 1) == '-' && pii_at(x, i + 2) == '-' && pii_at(x, i + 3) == '-' &&
            pii_at(x, i + 4) == '-' && i + 9 <= x->n && memcmp(x->s + i + 5, "END ", 4) == 0) {
            size_t e = i + 9;
            while (pii_is_upper(pii_at(x, e)) || pii_at(x, e) == ' ') e++;
            size_t d = 0;
            while (pii_at(x, e + d) == '-') d++;
            pii_add(x, p, e + d, SLM_PII_SECRET, 99);
            return;
        }
        if (pii_is_alnum(c) || c == '+' || c == '/' || c == '=') {
            i++;
            last = i;
        } else if (c == '\n' || c == '\r' || c == ' ' || c == '\t' || (c == ':' ) || c == '-' || c == ',') {
            if (c == '\n' && pii_at(x, i + 1) == '\n') break; /* a blank line ends an unterminated block */
            i++;
        } else
            break;
    }
    if (last > p + 40) pii_add(x, p, last, SLM_PII_SECRET, 99);
}

static void scan_jwt(pii_scan *x, size_t p) {
    size_t a = run_of(x, p, "_-");
    if (a - p < 10 || pii_at(x, a) != '.') return;
    size_t b = run_of(x, a + 1, "_-");
    if (b - a - 1 < 10 || pii_at(x, b) != '.') return;
    size_t c = run_of(x, b + 1, "_-");
    if (c - b - 1 < 10) return;
    pii_add(x, p, c, SLM_PII_SECRET, 95);
}

static const char *const SECRET_WORDS[] = {"secre", "aws_secret", NULL};

static void scan_aws_secret(pii_scan *x, size_t p) {
    size_t e = run_of_max(x, p, "/+", 41);
    if (e - p != 40) return;
    unsigned nx = pii_at(x, e);
    if (nx == '=' || nx == '_' || nx == '-' || nx == '.' ) {
        if (pii_is_alnum(pii_at(x, e + 1))) return;
    }
    int up = 0, lo = 0, dg = 0;
    for (size_t i = p; i < e; i++) {
        up += pii_is_upper(x->s[i]);
        lo += pii_is_lower(x->s[i]);
        dg += pii_is_digit(x->s[i]);
    }
    if (!up || !lo || !dg) return; /* hex digests and git hashes are single-case */
    if (memmem(x->low + p, 40, "example", 7)) return; /* the AWS documentation's sample key */
    if (!pii_ctx_any(x, pii_back(p, 80), p, SECRET_WORDS)) return;
    pii_add(x, p, e, SLM_PII_SECRET, 94);
}

static void scan_secret(pii_scan *x, size_t p) {
    const unsigned char *s = x->s;
    unsigned c = s[p];
    if (c == '-' && prefix_at(x, p, "-----BEGIN ")) {
        scan_pem(x, p);
        return;
    }
    if (c == 's' || c == 'r') {
        if (prefix_at(x, p, "sk-proj-") || prefix_at(x, p, "sk-ant-") || prefix_at(x, p, "sk-svcacct-")) {
            size_t body = p + (s[p + 3] == 'p' ? 8 : s[p + 3] == 'a' ? 7 : 11);
            add_secret(x, p, body, run_of(x, body, "_-"), 20);
            return;
        }
        if (prefix_at(x, p, "sk-")) {
            add_secret(x, p, p + 3, run_of(x, p + 3, "_-"), 20);
            return;
        }
        if (prefix_at(x, p, "sk_live_") || prefix_at(x, p, "rk_live_") || prefix_at(x, p, "sk_test_") ||
            prefix_at(x, p, "rk_test_")) {
            add_secret(x, p, p + 8, run_of(x, p + 8, ""), 16);
            return;
        }
    }
    if (c == 'A') {
        if (prefix_at(x, p, "AKIA") || prefix_at(x, p, "ASIA")) {
            size_t e = p + 4;
            while (pii_is_upper(pii_at(x, e)) || pii_is_digit(pii_at(x, e))) e++;
            if (e - p == 20 && !pii_is_alnum(pii_at(x, e)) && !memmem(x->low + p, 20, "example", 7))
                pii_add(x, p, e, SLM_PII_SECRET, 95);
            return;
        }
        if (prefix_at(x, p, "AIza")) {
            add_secret(x, p, p + 4, run_of(x, p + 4, "_-"), 30);
            return;
        }
    }
    if (c == 'g') {
        if (prefix_at(x, p, "github_pat_")) {
            add_secret(x, p, p + 11, run_of(x, p + 11, "_"), 30);
            return;
        }
        if ((prefix_at(x, p, "ghp_") || prefix_at(x, p, "gho_") || prefix_at(x, p, "ghu_") ||
             prefix_at(x, p, "ghs_") || prefix_at(x, p, "ghr_"))) {
            add_secret(x, p, p + 4, run_of(x, p + 4, ""), 30);
            return;
        }
        if (prefix_at(x, p, "glpat-")) {
            add_secret(x, p, p + 6, run_of(x, p + 6, "_-"), 20);
            return;
        }
    }
    if (c == 'x' && p + 5 <= x->n && s[p + 1] == 'o' && s[p + 2] == 'x' && strchr("abposr", s[p + 3]) &&
        s[p + 4] == '-') {
        add_secret(x, p, p + 5, run_of(x, p + 5, "-"), 15);
        return;
    }
    if (c == 'h' && prefix_at(x, p, "hf_")) {
        add_secret(x, p, p + 3, run_of(x, p + 3, ""), 30);
        return;
    }
    if (c == 'e' && prefix_at(x, p, "eyJ")) {
        scan_jwt(x, p);
        return;
    }
    if (pii_is_alnum(c) || c == '/' || c == '+') scan_aws_secret(x, p);
}

/* ---------- numbers: IBAN, card, SSN, IPv4/IPv6, phone, dates ---------- */

static const struct {
    char cc[3];
    unsigned char len;
} IBAN_LEN[] = {
    {"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16}, {"BG", 22}, {"BH", 22},
    {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28}, {"CZ", 24}, {"DE", 22}, {"DK", 18}, {"DO", 28},
    {"EE", 20}, {"EG", 29}, {"ES", 24}, {"FI", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23},
    {"GL", 18}, {"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23}, {"IS", 26},
    {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32}, {"LI", 21}, {"LT", 20}, {"LU", 20},
    {"LV", 21}, {"MC", 27}, {"MD", 24}, {"ME", 22}, {"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18},
    {"NO", 15}, {"PK", 24}, {"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24},
    {"SC", 31}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"ST", 25}, {"SV", 28}, {"TL", 23}, {"TN", 24},
    {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
};

static int iban_country_len(const char *cc) {
    for (size_t i = 0; i < sizeof IBAN_LEN / sizeof *IBAN_LEN; i++)
        if (IBAN_LEN[i].cc[0] == cc[0] && IBAN_LEN[i].cc[1] == cc[1]) return IBAN_LEN[i].len;
    return 0;
}

static bool iban_mod97(const char *v, size_t len) {
    unsigned rem = 0;
    for (size_t k = 0; k < len; k++) {
        char c = v[(k + 4) % len];
        if (pii_is_digit((unsigned char)c)) rem = (rem * 10 + (unsigned)(c - '0')) % 97;
        else rem = (rem * 100 + (unsigned)(c - 'A' + 10)) % 97;
    }
    return rem == 1;
}

static unsigned mod97_digits(const char *v, size_t len) {
    unsigned rem = 0;
    for (size_t k = 0; k < len; k++) rem = (rem * 10 + (unsigned)(v[k] - '0')) % 97;
    return rem;
}

/* French RIB key: 97 - (89*bank + 15*branch + 3*account) mod 97, letters mapped to digits. */
static bool fr_rib_ok(const char *bban) {
    char d[23];
    for (int i = 0; i < 23; i++) {
        char c = bban[i];
        if (pii_is_digit((unsigned char)c)) d[i] = c;
        else if (c >= 'A' && c <= 'I') d[i] = (char)('1' + (c - 'A'));
        else if (c >= 'J' && c <= 'R') d[i] = (char)('1' + (c - 'J'));
        else if (c >= 'S' && c <= 'Z') d[i] = (char)('2' + (c - 'S'));
        else return false;
    }
    unsigned bank = mod97_digits(d, 5), branch = mod97_digits(d + 5, 5), acct = mod97_digits(d + 10, 11);
    unsigned key = (unsigned)((d[21] - '0') * 10 + (d[22] - '0'));
    return key == 97 - (89 * bank + 15 * branch + 3 * acct) % 97;
}

/* Spanish CCC: two control digits over "00"+bank+branch and over the account. */
static bool es_ccc_ok(const char *bban) {
    static const int w[10] = {1, 2, 4, 8, 5, 10, 9, 7, 3, 6};
    for (int i = 0; i < 20; i++)
        if (!pii_is_digit((unsigned char)bban[i])) return false;
    char first[10] = {'0', '0'};
    memcpy(first + 2, bban, 8);
    int d[2];
    const char *parts[2] = {first, bban + 10};
    for (int j = 0; j < 2; j++) {
        int sum = 0;
        for (int i = 0; i < 10; i++) sum += (parts[j][i] - '0') * w[i];
        int c = 11 - sum % 11;
        d[j] = c == 11 ? 0 : c == 10 ? 1 : c;
    }
    return bban[8] - '0' == d[0] && bban[9] - '0' == d[1];
}

static void scan_iban(pii_scan *x, size_t p) {
    const unsigned char *s = x->s;
    if (!(pii_is_upper(s[p]) && pii_is_upper(pii_at(x, p + 1)) && pii_is_digit(pii_at(x, p + 2)) &&
          pii_is_digit(pii_at(x, p + 3))))
        return;
    char v[40];
    size_t ends[40];
    size_t nv = 0, i = p, group = 0;
    while (nv < 34) {
        unsigned c = pii_at(x, i);
        if (pii_is_upper(c) || pii_is_digit(c)) {
            v[nv] = (char)c;
            ends[nv++] = i + 1;
            group++;
            i++;
        } else if (c == ' ' && group == 4 && (pii_is_upper(pii_at(x, i + 1)) || pii_is_digit(pii_at(x, i + 1)))) {
            group = 0;
            i++;
        } else
            break;
    }
    int want = iban_country_len(v);
    /* the registered length first; then any length (generators and new countries get it wrong,
     * and a random string passes mod 97 once in 97) */
    for (int pass = 0; pass < 2; pass++)
    for (size_t len = nv; len >= 15; len--) {
        if (pass == 0 && want && (int)len != want) continue;
        if (pass == 0 && !want) continue;
        /* the IBAN must end at a boundary: not inside a longer run of letters/digits */
        size_t e = ends[len - 1];
        if (pii_is_alnum(pii_at(x, e))) continue;
        if (e < x->n && e + 1 < x->n && x->s[e] == ' ' && len < nv) {
            /* a grouped IBAN continuing with another group is longer than this length */
            if (ends[len] == e + 2) continue;
        }
        if (!iban_mod97(v, len)) continue;
        if (v[0] == 'F' && v[1] == 'R' && !fr_rib_ok(v + 4)) continue;
        if (v[0] == 'E' && v[1] == 'S' && !es_ccc_ok(v + 4)) continue;
        pii_add(x, p, e, SLM_PII_IBAN, 80);
        return;
    }
}

/* Digit groups from p separated by single separators from seps (the same one throughout). */
typedef struct {
    size_t end;        /* end of the last group */
    int ndig;          /* digits in all */
    int ngroups;
    int glen[12];
    char sep;          /* 0 when compact */
    char digits[24];
} digit_groups;

static void parse_groups(pii_scan *x, size_t p, const char *seps, digit_groups *g) {
    memset(g, 0, sizeof *g);
    size_t i = p;
    for (;;) {
        int len = 0;
        while (pii_is_digit(pii_at(x, i))) {
            if (g->ndig < 23) g->digits[g->ndig] = (char)x->s[i];
            g->ndig++;
            len++;
            i++;
        }
        if (len == 0 || g->ngroups == 12) break;
        g->glen[g->ngroups++] = len;
        g->end = i;
        unsigned c = pii_at(x, i);
        if (c && strchr(seps, (int)c) && (g->sep == 0 || g->sep == (char)c) && pii_is_digit(pii_at(x, i + 1))) {
            if (g->ngroups == 1 && g->sep == 0) g->sep = (char)c;
            i++;
        } else
            break;
    }
    if (g->ndig > 23) g->ndig = 24; /* too long for any type here */
}

static bool luhn_ok(const char *d, int n) {
    int sum = 0;
    for (int i = 0; i < n; i++) {
        int v = d[n - 1 - i] - '0';
        if (i & 1) {
            v *= 2;
            if (v > 9) v -= 9;
        }
        sum += v;
    }
    return sum % 10 == 0;
}

static bool card_prefix_ok(const char *d, int n) {
    int p2 = (d[0] - '0') * 10 + (d[1] - '0');
    int p4 = p2 * 100 + (d[2] - '0') * 10 + (d[3] - '0');
    int p3 = p4 / 10;
    if (d[0] == '4') return n == 13 || n == 16 || n == 19;
    if (p2 >= 51 && p2 <= 55) return n == 16;
    if (p4 >= 2221 && p4 <= 2720) return n == 16;
    if (p2 == 34 || p2 == 37) return n == 15;
    if (p4 == 6011 || p2 == 65 || (p3 >= 644 && p3 <= 649)) return n >= 16 && n <= 19;
    if (p2 == 35) return n >= 16 && n <= 19;                       /* JCB */
    if (p2 == 36 || p2 == 38 || (p3 >= 300 && p3 <= 305)) return n == 14; /* Diners */
    return false;
}

static const char *const CARD_NEG[] = {"tracking", "sendung", "suivi", "reference", "référence", "referenz", "order",
                                       "bestell", "commande", "invoice", "rechnung", "facture", "not a card", "isbn",
                                       "ticket", "serial", NULL};
static const char *const CARD_POS[] = {"card", "karte", "carte", "visa", "mastercard", "amex", "tarjeta", "carta",
                                       NULL};

static bool left_boundary_num(const pii_scan *x, size_t p) {
    if (p == 0) return true;
    unsigned c = x->s[p - 1];
    if (pii_is_word_at(x->s, x->n, p - 1)) return false;
    if ((c == '-' || c == '.' || c == '/' || c == '_' || c == ',') && p >= 2 && pii_is_alnum(x->s[p - 2])) return false;
    if (c == '#') return false;
    /* not the second group of a longer grouped number ("tracking 4016 0846 5179 4740") */
    if ((c == ' ' || c == '-') && p >= 2 && pii_is_digit(x->s[p - 2])) return false;
    return true;
}

static void scan_card(pii_scan *x, size_t p, const digit_groups *g) {
    if (g->ndig < 13 || g->ndig > 19) return;
    if (g->sep && g->ngroups < 3) return;
    unsigned nx = pii_at(x, g->end);
    if (pii_is_alnum(nx)) return;
    if (!luhn_ok(g->digits, g->ndig) || !card_prefix_ok(g->digits, g->ndig)) return;
    size_t lo = pii_back(p, 48);
    if (pii_ctx_any(x, lo, p, CARD_NEG) && !pii_ctx_any(x, pii_back(p, 24), p, CARD_POS)) return;
    pii_add(x, p, g->end, SLM_PII_CREDIT_CARD, 78);
}

static const char *const SSN_CTX[] = {"ssn", "social security", "ss#", "ss no", "ssa", "taxpayer", "tin:", NULL};
static const char *const SSN_NEG[] = {"order", "invoice", "ticket", "tracking", "isbn", "ref", "case", "phone",
                                      "tel", "call", NULL};

static void scan_ssn(pii_scan *x, size_t p, const digit_groups *g) {
    if (g->ndig != 9) return;
    bool dashed = g->sep == '-' && g->ngroups == 3 && g->glen[0] == 3 && g->glen[1] == 2 && g->glen[2] == 4;
    bool spaced = g->sep == ' ' && g->ngroups == 3 && g->glen[0] == 3 && g->glen[1] == 2 && g->glen[2] == 4;
    bool compact = g->ngroups == 1;
    if (!dashed && !spaced && !compact) return;
    unsigned nx = pii_at(x, g->end);
    if (pii_is_alnum(nx) || ((nx == '-' || nx == '.') && pii_is_digit(pii_at(x, g->end + 1)))) return;
    const char *d = g->digits;
    int area = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');
    if (area == 0 || area == 666 || area >= 900) return;
    if (d[3] == '0' && d[4] == '0') return;
    if (d[5] == '0' && d[6] == '0' && d[7] == '0' && d[8] == '0') return;
    bool ctx = pii_ctx_any(x, pii_back(p, 40), p, SSN_CTX);
    if (!ctx) {
        if (!dashed) return;
        if (pii_ctx_any(x, pii_back(p, 32), p, SSN_NEG)) return;
    }
    pii_add(x, p, g->end, SLM_PII_US_SSN, 76);
}

static const char *const VERSION_WORDS[] = {"version", "firmware", "section", "release", "build", "patch", "rev.",
                                            "revision", "kapitel", "abschnitt", "chapitre", "paragraphe", "§",
                                            "chapter", "clause", "v.", "ver.", "versión", "versione", "versie",
                                            "fixes", "update", "upgrade", "sdk", "driver", "treiber", "pin ", "==",
                                            "paragraph", "para", "item", "step", "article", "art.", "appendix",
                                            "anhang", "absatz", "ziffer", "figure", "fig.", "table", "rfc", "iso",
                                            "release", "kernel", "package", "version", "rev", "edition",
                                            "mise à jour", "actualización", "aggiornamento", "versão",
                                            "aktualisierung", "bijwerking", "versjon", "wersja", NULL};

static void scan_ipv4(pii_scan *x, size_t p) {
    size_t i = p;
    for (int part = 0; part < 4; part++) {
        if (part) {
            if (pii_at(x, i) != '.') return;
            i++;
        }
        size_t st = i;
        unsigned v = 0;
        while (pii_is_digit(pii_at(x, i)) && i - st < 4) v = v * 10 + (x->s[i++] - '0');
        if (i == st || i - st > 3 || v > 255) return;
        if (i - st > 1 && x->s[st] == '0') return;
    }
    unsigned nx = pii_at(x, i);
    if (pii_is_alnum(nx) || ((nx == '.' || nx == '-') && pii_is_digit(pii_at(x, i + 1)))) return;
    if (pii_ctx_any(x, pii_back(p, 28), p, VERSION_WORDS)) return;
    /* loopback and "any" are localhost, not anyone's address */
    if ((x->s[p] == '1' && i - p >= 7 && memcmp(x->s + p, "127.", 4) == 0) || (i - p == 7 && memcmp(x->s + p, "0.0.0.0", 7) == 0))
        return;
    pii_add(x, p, i, SLM_PII_IP_ADDRESS, 74);
}

/* An IPv6 address (RFC 4291 text forms, with an optional dotted IPv4 tail). */
static bool ipv6_valid(const unsigned char *s, size_t len) {
    int groups = 0;
    bool compressed = false;
    size_t i = 0;
    if (len >= 2 && s[0] == ':' && s[1] == ':') {
        compressed = true;
        i = 2;
        if (i == len) return false; /* "::" alone is not worth marking */
    } else if (len && s[0] == ':')
        return false;
    while (i < len) {
        size_t st = i;
        while (i < len && pii_is_hex(s[i]) && i - st <= 4) i++;
        if (i < len && s[i] == '.') {
            /* IPv4 tail */
            int parts = 0;
            i = st;
            while (i < len) {
                unsigned v = 0;
                size_t ds = i;
                while (i < len && pii_is_digit(s[i]) && i - ds < 4) v = v * 10 + (s[i++] - '0');
                if (i == ds || i - ds > 3 || v > 255) return false;
                parts++;
                if (i < len) {
                    if (s[i] != '.') return false;
                    i++;
                }
            }
            if (parts != 4) return false;
            groups += 2;
            break;
        }
        if (i == st || i - st > 4) return false;
        groups++;
        if (i == len) break;
        if (s[i] != ':') return false;
        i++;
        if (i < len && s[i] == ':') {
            if (compressed) return false;
            compressed = true;
            i++;
        } else if (i == len)
            return false;
    }
    return compressed ? groups <= 7 && groups >= 2 : groups == 8;
}

static void scan_ipv6(pii_scan *x, size_t p) {
    size_t e = p;
    int colons = 0;
    while (e - p < 46) {
        unsigned c = pii_at(x, e);
        if (pii_is_hex(c) || c == '.') e++;
        else if (c == ':') {
            colons++;
            e++;
        } else
            break;
    }
    if (colons < 2) return;
    if (pii_is_alnum(pii_at(x, e))) return;
    /* trailing sentence punctuation or a ":port"-less colon */
    while (e > p && (x->s[e - 1] == '.' || (x->s[e - 1] == ':' && !(e - p >= 2 && x->s[e - 2] == ':')))) e--;
    if (!ipv6_valid(x->s + p, e - p)) return;
    if (e - p == 3 && memcmp(x->s + p, "::1", 3) == 0) return; /* loopback */
    int letters = 0;
    for (size_t i = p; i < e; i++) letters += pii_is_alpha(x->s[i]);
    (void)letters;
    pii_add(x, p, e, SLM_PII_IP_ADDRESS, 74);
}

/* ---------- PHONE ---------- */

static const char *const PHONE_POS[] = {"phone", "tel", "call", "contact", "reach", "mobile", "cell", "sms", "text me",
                                        "whatsapp", "fax", "ring", "telefon", "rückruf", "handy", "mobil", "erreich",
                                        "anruf", "numéro", "téléphone", "tél", "portable", "appel", "joindre", "móvil",
                                        "teléfono", "telefono", "cellulare", "bellen", "number", "nummer", "reply", "text",
                                        "stop to", "dial", "kontakt", "appeler", "rappel", "llamar", "chiamare",
                                        "tlf", "tfn", "ph.", "ph:", "mob", "nº tel", NULL};
/* Words that make a number a phone even right after a reference word ("order line phone ..."). */
static const char *const PHONE_STRONG[] = {"phone", "tel", "call", "mobile", "cell", "telefon", "handy", "rückruf",
                                           "téléphone", "tél", "portable", "teléfono", "telefono", "cellulare",
                                           "fax", "whatsapp", "sms", NULL};
static const char *const PHONE_NEG[] = {"order", "invoice", "ticket", "tracking", "reference", "ref ", "ref:", "ref.",
                                        "isbn", "version", "build", "account", "acct", "konto", "iban", "bestell",
                                        "rechnung", "sendung", "commande", "facture", "suivi", "référence", "case",
                                        "serial", "id ", "id:", "no.", "nr.", "kunden", "customer number", "client n",
                                        "dossier", "auftrag", "vertrag", "contract", "policy", "claim", "booking",
                                        "reservation", "confirmation", "transaction", "shipment", "parcel", "package",
                                        "route", "ssn", "social security", "amount", "total", "balance", "sku", "po number",
                                        "po#", "purchase order", "confirmation code", "code", "tracking id",
                                        "aktenzeichen", "vorgang", "bon de commande", "numéro de commande",
                                        "item", "article", "artikel", "ean", "upc", "batch", "lot ", "série", NULL};

static void scan_phone(pii_scan *x, size_t p) {
    size_t i = p;
    bool plus = false, paren = false, ext = false;
    int digits = 0, seps = 0, groups = 0, glen[16] = {0};
    char sepkind = 0, first_sep = 0;
    bool mixed = false;
    int paren_depth = 0;
    if (x->s[p] == '+') {
        plus = true;
        i++;
        if (!pii_is_digit(pii_at(x, i))) return;
    }
    size_t end = 0;
    unsigned prev = 0; /* 0 start, 'd' digit, 's' separator */
    for (;;) {
        unsigned c = pii_at(x, i);
        if (pii_is_digit(c)) {
            if (prev != 'd') {
                if (groups == 16) return;
                groups++;
            }
            glen[groups - 1]++;
            digits++;
            if (digits > 15) return;
            i++;
            prev = 'd';
            end = i;
            if (paren_depth == 0) end = i;
            continue;
        }
        if (c == '(' && paren_depth == 0 && !paren) {
            unsigned nx = pii_at(x, i + 1);
            if (!pii_is_digit(nx)) break;
            paren_depth = 1;
            paren = true;
            i++;
            prev = 's';
            continue;
        }
        if (c == ')' && paren_depth == 1 && prev == 'd') {
            paren_depth = 0;
            i++;
            end = i;
            prev = 's';
            if (pii_at(x, i) == ' ' || pii_at(x, i) == '-') i++;
            if (!pii_is_digit(pii_at(x, i))) break;
            continue;
        }
        if ((c == ' ' || c == '-' || c == '.' || c == '/') && prev == 'd') {
            unsigned nx = pii_at(x, i + 1);
            if (!(pii_is_digit(nx) || (nx == '(' && c == ' '))) break;
            if (c == '.' && seps > 0 && sepkind != '.') break;
            if (sepkind && sepkind != (char)c) mixed = true;
            sepkind = (char)c;
            if (!first_sep) first_sep = (char)c;
            seps++;
            i++;
            prev = 's';
            continue;
        }
        if (c == 'x' && prev == 'd' && digits >= 10 && pii_is_digit(pii_at(x, i + 1))) {
            size_t k = i + 1;
            while (pii_is_digit(pii_at(x, k)) && k - i <= 5) k++;
            if (k - i <= 6 && !pii_is_alnum(pii_at(x, k))) {
                ext = true;
                end = k;
                i = k;
            }
            break;
        }
        break;
    }
    if (paren_depth) return;
    if (end == 0) return;
    x->attempt = p;
    unsigned nx = pii_at(x, end);
    if (pii_is_alnum(nx) || nx == '@' || nx == '_') return;
    if ((nx == '.' || nx == '-' || nx == '/' || nx == ',') && pii_is_digit(pii_at(x, end + 1))) return;
    (void)mixed;
    if (digits < 8) return;
    if (digits == 8 && !(plus || pii_ctx_word_any(x, pii_back(p, 24), p, PHONE_POS))) return;
    bool strong = plus || paren || ext ||
                  (digits >= 11 && x->s[p] == '0' && x->s[p + 1] == '0' && seps > 0);
    if (sepkind == '.' && !paren && !plus) {
        /* dotted: US 3.3.4 or French pairs only (other dotted numbers are versions and references) */
        bool us = groups == 3 && glen[0] == 3 && glen[1] == 3 && glen[2] == 4;
        bool fr = groups == 5 && glen[0] == 2 && glen[1] == 2 && glen[2] == 2 && glen[3] == 2 && glen[4] == 2;
        if (!us && !fr) return;
    }
    if (!plus && groups > 1) {
        for (int k = 0; k < groups; k++)
            if (glen[k] > 8) return;
        /* a date followed by a number ("2021-06-24 1234") is not a phone */
        if (groups >= 3 && first_sep != ' ') {
            /* the first three groups as numbers: a date ("2026-12-05 08", "05.12.2026 10") is no phone */
            int v[3] = {0, 0, 0}, g = 0;
            for (size_t k = p; k < end && g < 3; k++) {
                if (pii_is_digit(x->s[k])) v[g] = v[g] * 10 + (x->s[k] - '0');
                else if (k > p && pii_is_digit(x->s[k - 1])) g++;
            }
            if (glen[0] == 4 && glen[1] <= 2 && glen[2] <= 2 && v[0] >= 1900 && v[0] <= 2099 && v[1] >= 1 &&
                v[1] <= 12 && v[2] >= 1 && v[2] <= 31)
                return;
            if (glen[0] <= 2 && glen[1] <= 2 && glen[2] == 4 && v[2] >= 1900 && v[2] <= 2099 && v[0] >= 1 &&
                v[0] <= 31 && v[1] >= 1 && v[1] <= 31)
                return;
        }
    }
    size_t lo = pii_back(p, 36);
    /* reference words count within the number's own sentence only */
    for (size_t k = p; k > lo + 1; k--)
        if ((x->s[k - 2] == '.' || x->s[k - 2] == '?' || x->s[k - 2] == '!' || x->s[k - 2] == ';') && x->s[k - 1] == ' ') {
            lo = k;
            break;
        }
    bool neg = pii_ctx_word_any(x, lo, p, PHONE_NEG);
    bool pos = pii_ctx_word_any(x, pii_back(p, 40), p, PHONE_POS);
    if (neg && !(pos && pii_ctx_word_any(x, pii_back(p, 16), p, PHONE_STRONG))) return;
    if (!strong && groups == 1) {
        /* a bare run of digits: a phone only when called one, or in a national format with a
         * trunk prefix */
        if (!pos && !(x->s[p] == '0' && digits >= 10 && digits <= 11)) return;
        if (digits > 12) return;
    }
    if (groups > 1 && !strong && digits > 13) return;
    pii_add(x, p, end, SLM_PII_PHONE, 60);
}

/* ---------- DATE_OF_BIRTH ---------- */

static const char *const DOB_WORDS[] = {"birth", "dob", "d.o.b", "born", "bday", "b-day", "geboren", "geb.", "geb ",
                                        "geburt", "né le", "née le", "né(e)", "né ", "née ", "naissance", "nacid",
                                        "nacimiento", "nato il", "nata il", "nato a", "nata a", "nascita",
                                        "geboortedatum", "geboren op", "nascimento", "nascid", "urodz", "född",
                                        "födelse", "født", "fødsels", "syntym", "date de naiss", "dn :", "dn:",
                                        NULL};

static const char *const MONTHS[] = {
    "january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november",
    "december", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "januar",
    "februar", "märz", "maerz", "mai", "juni", "juli", "oktober", "dezember", "jänner", "janvier", "février",
    "fevrier", "mars", "avril", "juin", "juillet", "août", "aout", "septembre", "octobre", "novembre", "décembre",
    "decembre", "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
    "noviembre", "diciembre", "gennaio", "febbraio", "aprile", "maggio", "giugno", "luglio", "settembre", "ottobre",
    "dicembre", "januari", "februari", "maart", "mei", "augustus", "janeiro", "fevereiro", "março", "maio", "junho",
    "julho", "setembro", "outubro", "novembro", "dezembro", NULL};

/* A month name at p (lowercased text), returning its end (with an abbreviation's dot), or 0. */
static bool month_shape[26][16]; /* (first letter, length) pairs of the month names */

static size_t month_at(pii_scan *x, size_t p) {
    unsigned c0 = (unsigned char)x->low[p];
    if (c0 < 'a' || c0 > 'z') return 0;
    size_t e = p;
    while (pii_is_word_at(x->s, x->n, e) && e - p < 12) e++;
    if (e == x->n) pii_at(x, e); /* undecided: the word runs to the end of a partial text */
    if (e - p >= 16 || !month_shape[c0 - 'a'][e - p]) return 0;
    if (pii_is_word_at(x->s, x->n, e) || !pii_in_set(MONTHS, x->low + p, e - p)) return 0;
    size_t best = e;
    if (pii_at(x, best) == '.') best++;
    return best;
}

static size_t digits_at(pii_scan *x, size_t p, int lo, int hi, int *val) {
    size_t i = p;
    int v = 0;
    while (pii_is_digit(pii_at(x, i)) && (int)(i - p) < hi) v = v * 10 + (x->s[i++] - '0');
    if ((int)(i - p) < lo || pii_is_digit(pii_at(x, i))) return 0;
    *val = v;
    return i;
}

static size_t skip_spaces(pii_scan *x, size_t i) {
    while (pii_at(x, i) == ' ') i++;
    return i;
}

/* A date at p in any of the supported forms; returns its end or 0. */
static size_t date_at(pii_scan *x, size_t p) {
    int a, b, c;
    size_t i;
    if (pii_is_digit(x->s[p])) {
        /* yyyy-mm-dd, yyyy/mm/dd, yyyy.mm.dd */
        if ((i = digits_at(x, p, 4, 4, &a)) && (pii_at(x, i) == '-' || pii_at(x, i) == '/' || pii_at(x, i) == '.')) {
            unsigned sep = x->s[i];
            size_t j = digits_at(x, i + 1, 1, 2, &b);
            if (j && pii_at(x, j) == sep) {
                size_t k = digits_at(x, j + 1, 1, 2, &c);
                if (k && a >= 1890 && a <= 2030 && b >= 1 && b <= 12 && c >= 1 && c <= 31) return k;
            }
            return 0;
        }
        if (!(i = digits_at(x, p, 1, 2, &a))) return 0;
        unsigned sep = pii_at(x, i);
        /* "12-Mar-1985", "12/Mar/1985" */
        if ((sep == '-' || sep == '/' || sep == ' ') && pii_is_alpha(pii_at(x, i + 1))) {
            size_t m = month_at(x, i + 1);
            if (m && pii_at(x, m) == sep && sep != ' ') {
                size_t y = digits_at(x, m + 1, 2, 4, &c);
                if (y && y - m - 1 != 3 && a >= 1 && a <= 31) return y;
                return 0;
            }
        }
        if (sep == '/' || sep == '.' || sep == '-') {
            size_t j = digits_at(x, i + 1, 1, 2, &b);
            if (j && pii_at(x, j) == sep) {
                size_t k = digits_at(x, j + 1, 2, 4, &c);
                if (!k || (k - j - 1 == 3)) return 0;
                if (a >= 1 && b >= 1 && a <= 31 && b <= 31 && (a <= 12 || b <= 12)) return k;
                return 0;
            }
            if (sep == '.' && pii_at(x, i + 1) == ' ') i++; /* "12. März 1985" */
            else return 0;
        }
        /* day [st|nd|rd|th|er] [de|of] month [de] year */
        size_t j = i;
        if (pii_at(x, j) == '.') j++;
        if (j + 2 <= x->n && (memcmp(x->low + j, "st", 2) == 0 || memcmp(x->low + j, "nd", 2) == 0 ||
                              memcmp(x->low + j, "rd", 2) == 0 || memcmp(x->low + j, "th", 2) == 0 ||
                              memcmp(x->low + j, "er", 2) == 0))
            j += 2;
        if (pii_at(x, j) != ' ') return 0;
        j = skip_spaces(x, j);
        if (j + 3 <= x->n && (memcmp(x->low + j, "de ", 3) == 0 || memcmp(x->low + j, "of ", 3) == 0)) j += 3;
        size_t m = month_at(x, j);
        if (!m || a < 1 || a > 31) return 0;
        size_t k = m;
        if (pii_at(x, k) == ',') k++;
        if (pii_at(x, k) != ' ') return 0;
        k = skip_spaces(x, k);
        if (k + 3 <= x->n && (memcmp(x->low + k, "de ", 3) == 0)) k += 3;
        size_t y = digits_at(x, k, 4, 4, &c);
        if (!y || c < 1890 || c > 2030) return 0;
        return y;
    }
    /* month day[,] year */
    size_t m = month_at(x, p);
    if (!m || pii_at(x, m) != ' ') return 0;
    i = skip_spaces(x, m);
    size_t j = digits_at(x, i, 1, 2, &a);
    if (!j || a < 1 || a > 31) return 0;
    if (j + 2 <= x->n && (memcmp(x->low + j, "st", 2) == 0 || memcmp(x->low + j, "nd", 2) == 0 ||
                          memcmp(x->low + j, "rd", 2) == 0 || memcmp(x->low + j, "th", 2) == 0))
        j += 2;
    if (pii_at(x, j) == ',') j++;
    if (pii_at(x, j) != ' ') return 0;
    j = skip_spaces(x, j);
    size_t y = digits_at(x, j, 4, 4, &c);
    if (!y || c < 1890 || c > 2030) return 0;
    return y;
}

/* ---------- the scan ---------- */

typedef struct {
    size_t last_date_end;
} scan_state;

static void scan_date(pii_scan *x, size_t p, scan_state *st) {
    (void)st;
    size_t e = date_at(x, p);
    if (!e) return;
    if (pii_is_alnum(pii_at(x, e))) return;
    /* a birth keyword shortly before, with no other year in between ("born 1980 ... meeting on
     * 2024-05-01" is not a birth date) */
    size_t k = kw_last(x, pii_back(p, 56), p, DOB_WORDS, false);
    if (k == (size_t)-1) return;
    for (size_t i = k; i + 4 <= p; i++)
        if (pii_is_digit(x->s[i]) && pii_is_digit(x->s[i + 1]) && pii_is_digit(x->s[i + 2]) &&
            pii_is_digit(x->s[i + 3]))
            return;
    pii_add(x, p, e, SLM_PII_DATE_OF_BIRTH, 70);
}

void pii_scan_all(pii_scan *x) {
    const unsigned char *s = x->s;
    size_t n = x->n;
    scan_state st = {0};
    size_t begin = x->from > PII_MAX_LOOKBEHIND ? x->from - PII_MAX_LOOKBEHIND : 0;
    (void)begin;
    for (size_t p = x->from; p < n; p++) {
        unsigned c = s[p];
        if (c == ' ' || c == '\n') continue;
        x->attempt = p;
        if (c == '@') {
            scan_email(x, p);
            continue;
        }
        bool ws = word_start(x, p);
        if (pii_is_digit(c)) {
            if (!ws) continue;
            if (!left_boundary_num(x, p)) {
                /* still an IPv6 group after a letter boundary is impossible; nothing to do */
                continue;
            }
            digit_groups g;
            parse_groups(x, p, " -", &g);
            x->attempt = p;
            scan_card(x, p, &g);
            x->attempt = p;
            scan_ssn(x, p, &g);
            x->attempt = p;
            scan_ipv4(x, p);
            x->attempt = p;
            scan_ipv6(x, p);
            x->attempt = p;
            scan_date(x, p, &st);
            x->attempt = p;
            scan_phone(x, p);
            x->attempt = p;
            scan_aws_secret(x, p);
            continue;
        }
        if (c == '+' || c == '(') {
            if (p > 0 && pii_is_alnum(s[p - 1])) continue;
            if (c == '(' && !pii_is_digit(pii_at(x, p + 1))) continue;
            scan_phone(x, p);
            continue;
        }
        if (c == ':' && pii_at(x, p + 1) == ':' && (p == 0 || !pii_is_hex(s[p - 1])) && (p == 0 || s[p - 1] != ':')) {
            scan_ipv6(x, p);
            continue;
        }
        if (c == '-' && (p == 0 || s[p - 1] != '-')) {
            scan_secret(x, p);
            continue;
        }
        if (!ws) continue;
        if (pii_is_alpha(c)) {
            scan_secret(x, p);
            x->attempt = p;
            if (c == 'h' || c == 'H' || c == 'w' || c == 'W') scan_url(x, p);
            x->attempt = p;
            if (pii_is_upper(c)) scan_iban(x, p);
            x->attempt = p;
            if (pii_is_hex(c)) scan_ipv6(x, p);
            x->attempt = p;
            scan_date(x, p, &st);
        } else if (c == '/' || c == '+') {
            scan_aws_secret(x, p);
        }
    }
    x->attempt = x->from;
    pii_scan_names(x);
}

void pii_scan_register_sets(void) {
    pii_sets_register(MONTHS);
    for (const char *const *m = MONTHS; *m; m++) {
        size_t len = 0; /* in bytes, as the text is measured */
        while ((*m)[len]) len++;
        unsigned c = (unsigned char)(*m)[0];
        if (c >= 'a' && c <= 'z' && len < 16) month_shape[c - 'a'][len] = true;
    }
    kw_register(SECRET_WORDS);
    kw_register(CARD_NEG);
    kw_register(CARD_POS);
    kw_register(SSN_CTX);
    kw_register(SSN_NEG);
    kw_register(VERSION_WORDS);
    kw_register(PHONE_POS);
    kw_register(PHONE_NEG);
    kw_register(PHONE_STRONG);
    kw_register(DOB_WORDS);
}
