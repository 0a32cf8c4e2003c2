/* Router features: hashed n-grams of the prompt (and the local answer) and dense features.
 *
 * Why these: difficulty does not transfer across MMLU subjects from topic words (a classifier of
 * words learns "law words are hard" and then misroutes an easy law-flavoured subject), so besides
 * words the router sees the *form* of a request: word shapes (notation: x^2, Z_5, (1, 2)), digits,
 * operators, option formats, question forms. For a cascade the local answer says most: whether it
 * reached a final number, whether its own arithmetic checks out, whether it hedges. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/router_impl.h"

enum { SEED_WORD1 = 11, SEED_WORD2 = 12, SEED_CHAR = 13, SEED_SHAPE1 = 14, SEED_SHAPE2 = 15, SEED_SHAPE3 = 16,
       SEED_AWORD1 = 17, SEED_AWORD2 = 18 };

/* A text window: the whole text, or its first and last RT_TEXT_WINDOW/2 bytes. */
typedef struct text_view {
    const char *a;
    size_t alen;
    const char *b;
    size_t blen;
} text_view;

static text_view view_of(const char *s) {
    size_t n = s ? strlen(s) : 0;
    text_view v = {s ? s : "", n, "", 0};
    if (n > RT_TEXT_WINDOW) {
        v.alen = RT_TEXT_WINDOW / 2;
        v.b = s + n - RT_TEXT_WINDOW / 2;
        v.blen = RT_TEXT_WINDOW / 2;
    }
    return v;
}
static inline size_t view_len(const text_view *v) { return v->alen + v->blen; }
static inline unsigned char view_at(const text_view *v, size_t i) {
    return (unsigned char)(i < v->alen ? v->a[i] : v->b[i - v->alen]);
}

static inline bool is_word_byte(unsigned char c) { return isalnum(c) || c >= 0x80; }

static inline void emit_hash(rt_sink *s, uint64_t h, int bits) {
    s->emit(s, (uint32_t)(h & ((1u << bits) - 1)), (h >> 63) ? -1.0f : 1.0f);
}

/* Words (lower-cased; a number becomes its digit-count class) as unigrams and bigrams. */
static void word_ngrams(const text_view *v, int bits, uint64_t seed1, uint64_t seed2, rt_sink *s) {
    size_t n = view_len(v);
    uint64_t prev = 0;
    bool have_prev = false;
    char word[64];
    for (size_t i = 0; i < n;) {
        if (!is_word_byte(view_at(v, i))) {
            i++;
            continue;
        }
        size_t len = 0;
        bool all_digits = true;
        while (i < n && is_word_byte(view_at(v, i))) {
            unsigned char c = view_at(v, i);
            if (!isdigit(c)) all_digits = false;
            if (len < sizeof word) word[len++] = (char)tolower(c);
            i++;
        }
        if (all_digits) {
            size_t digits = len;
            len = (size_t)snprintf(word, sizeof word, "#%zu", digits > 4 ? 4 : digits);
        }
        uint64_t h = rt_hash_bytes(word, len, seed1);
        emit_hash(s, h, bits);
        if (have_prev) emit_hash(s, rt_mix64(prev * 31 + h + seed2), bits);
        prev = h;
        have_prev = true;
    }
    s->end_group(s);
}

/* Character 3..5-grams of the text lower-cased, digits as '0', whitespace runs as one space. */
static void char_ngrams(const text_view *v, int bits, rt_sink *s) {
    size_t n = view_len(v);
    unsigned char ring[5] = {0};
    size_t have = 0;
    bool last_space = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = view_at(v, i);
        if (isspace(c)) {
            if (last_space) continue;
            c = ' ';
            last_space = true;
        } else {
            last_space = false;
            c = isdigit(c) ? '0' : (unsigned char)tolower(c);
        }
        memmove(ring, ring + 1, 4);
        ring[4] = c;
        if (have < 5) have++;
        for (size_t k = 3; k <= have; k++) emit_hash(s, rt_hash_bytes(ring + 5 - k, k, SEED_CHAR + k), bits);
    }
    s->end_group(s);
}

/* Word shapes: letters as X/x, digits as d, runs longer than two shortened ("Hello" -> Xxx,
 * "Z_5" -> X _ d); punctuation bytes are their own shape, line breaks "NL". 1..3-grams. */
static void shape_ngrams(const text_view *v, int bits, rt_sink *s) {
    size_t n = view_len(v);
    uint64_t h1 = 0, h2 = 0;
    int have = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = view_at(v, i);
        char shape[8];
        size_t len = 0;
        if (c == '\n') {
            memcpy(shape, "NL", 2);
            len = 2;
            i++;
        } else if (isspace(c)) {
            i++;
            continue;
        } else if (is_word_byte(c)) {
            char last = 0;
            int run = 0;
            while (i < n && is_word_byte(view_at(v, i))) {
                unsigned char w = view_at(v, i++);
                char k = isdigit(w) ? 'd' : isupper(w) ? 'X' : 'x';
                run = k == last ? run + 1 : 1;
                last = k;
                if (run <= 2 && len < sizeof shape) shape[len++] = k;
            }
        } else {
            shape[len++] = (char)c;
            i++;
        }
        uint64_t h = rt_hash_bytes(shape, len, SEED_SHAPE1);
        emit_hash(s, h, bits);
        if (have >= 1) emit_hash(s, rt_mix64(h1 * 31 + h + SEED_SHAPE2), bits);
        if (have >= 2) emit_hash(s, rt_mix64((h2 * 31 + h1) * 31 + h + SEED_SHAPE3), bits);
        h2 = h1;
        h1 = h;
        if (have < 2) have++;
    }
    s->end_group(s);
}

void rt_hashed_features(unsigned features, int hash_bits, const char *prompt, const char *answer, rt_sink *sink) {
    text_view p = view_of(prompt);
    if (features & SLM_RF_WORDS) word_ngrams(&p, hash_bits, SEED_WORD1, SEED_WORD2, sink);
    if (features & SLM_RF_CHARS) char_ngrams(&p, hash_bits, sink);
    if (features & SLM_RF_SHAPES) shape_ngrams(&p, hash_bits, sink);
    if (features & SLM_RF_ANSWER_WORDS) {
        text_view a = view_of(answer);
        word_ngrams(&a, hash_bits, SEED_AWORD1, SEED_AWORD2, sink);
    }
}

/* ---- dense features ---- */

/* The window as one flat NUL-terminated string, as is or lower-cased (for the phrase searches:
 * one memmem per phrase instead of a byte-by-byte view walk). */
typedef struct flat_text {
    char raw[RT_TEXT_WINDOW + 1], lower[RT_TEXT_WINDOW + 1];
    size_t len;
} flat_text;

static void flatten(const text_view *v, flat_text *f) {
    memcpy(f->raw, v->a, v->alen);
    memcpy(f->raw + v->alen, v->b, v->blen);
    f->len = v->alen + v->blen;
    f->raw[f->len] = 0;
    for (size_t i = 0; i < f->len; i++) f->lower[i] = (char)tolower((unsigned char)f->raw[i]);
    f->lower[f->len] = 0;
}

/* Non-overlapping occurrences of needle (lower-case needles for fold_case). */
static size_t count_of(const flat_text *f, const char *needle, bool fold_case) {
    const char *hay = fold_case ? f->lower : f->raw, *end = hay + f->len;
    size_t m = strlen(needle), count = 0;
    for (const char *p = hay; p < end;) {
        const char *hit = memmem(p, (size_t)(end - p), needle, m);
        if (!hit) break;
        count++;
        p = hit + m;
    }
    return count;
}

static bool contains(const flat_text *f, const char *needle, bool fold_case) {
    return memmem(fold_case ? f->lower : f->raw, f->len, needle, strlen(needle)) != NULL;
}

static double lg(double x) { return log1p(x > 0 ? x : 0); }

static void prompt_dense(const char *prompt, double *out) {
    text_view v = view_of(prompt);
    static _Thread_local flat_text flat; /* 64 KiB: per thread, not on a server thread's stack */
    flatten(&v, &flat);
    size_t n = view_len(&v);
    size_t full_len = prompt ? strlen(prompt) : 0;
    size_t digits = 0, numbers = 0, ops = 0, letters = 0, upper = 0, brackets = 0, qmarks = 0, sentences = 0;
    size_t lines = 1, words = 0, word_bytes = 0, long_words = 0, capitalized = 0, single_vars = 0, money = 0;
    size_t option_lines = 0, option_digit_lines = 0, option_bytes = 0, stem_len = n;
    bool at_line_start = true;
    for (size_t i = 0; i < n;) {
        unsigned char c = view_at(&v, i);
        if (at_line_start && c >= 'A' && c <= 'J' && i + 1 < n && view_at(&v, i + 1) == '.') {
            /* an option line "A. ..." */
            if (option_lines == 0) stem_len = i;
            option_lines++;
            size_t j = i + 2;
            bool digit = false;
            while (j < n && view_at(&v, j) != '\n') digit |= isdigit(view_at(&v, j)) != 0, j++;
            option_bytes += j - i - 2;
            option_digit_lines += digit;
        }
        at_line_start = false;
        if (c == '\n') {
            lines++;
            at_line_start = true;
            i++;
            continue;
        }
        if (strchr("+*/=^<>|\\", c) && c) ops++;
        if (strchr("()[]{}", c) && c) brackets++;
        if (c == '?') qmarks++;
        if (c == '$' || c == '%') money++;
        if (c == '.' && (i + 1 == n || isspace(view_at(&v, i + 1)))) sentences++;
        if (is_word_byte(c)) {
            size_t start = i, wl = 0;
            bool all_digits = true, first_upper = isupper(c) != 0;
            while (i < n && is_word_byte(view_at(&v, i))) {
                unsigned char w = view_at(&v, i);
                if (isdigit(w)) digits++;
                else all_digits = false;
                if (isalpha(w)) letters++;
                if (isupper(w)) upper++;
                wl++;
                i++;
            }
            words++;
            word_bytes += wl;
            if (all_digits) numbers++;
            if (wl >= 10) long_words++;
            if (first_upper) capitalized++;
            if (wl == 1 && isalpha(view_at(&v, start))) {
                unsigned char l = view_at(&v, start);
                bool option_letter = l >= 'A' && l <= 'J' && i < n && view_at(&v, i) == '.';
                if (l != 'a' && l != 'A' && l != 'I' && !option_letter) single_vars++;
            }
            continue;
        }
        i++;
    }
    double nn = n ? (double)n : 1.0, nw = words ? (double)words : 1.0;
    out[0] = lg((double)full_len);
    out[1] = lg((double)words);
    out[2] = (double)digits / nn;
    out[3] = lg((double)numbers);
    out[4] = lg((double)ops);
    out[5] = contains(&flat, "statement 1", true);
    out[6] = contains(&flat, " NOT ", false) || contains(&flat, "EXCEPT", false) || contains(&flat, " LEAST ", false);
    out[7] = lg((double)option_lines);
    out[8] = option_lines ? (double)option_digit_lines / (double)option_lines : 0;
    out[9] = option_lines ? lg((double)option_bytes / (double)option_lines) : 0;
    out[10] = lg((double)stem_len);
    out[11] = contains(&flat, "refers to the following", true);
    out[12] = letters ? (double)upper / (double)letters : 0;
    out[13] = lg((double)brackets);
    out[14] = lg((double)single_vars);
    out[15] = lg((double)qmarks);
    out[16] = contains(&flat, "which of the following", true);
    out[17] = (double)long_words / nw;
    out[18] = (double)word_bytes / nw;
    out[19] = lg((double)sentences);
    out[20] = lg((double)money);
    out[21] = lg((double)lines);
    out[22] = (double)capitalized / nw;
    out[23] = contains(&flat, "most likely", true) || contains(&flat, " best ", true) || contains(&flat, "most appropriate", true);
    /* asks for a computation, whatever the subject */
    static const char *const compute[] = {"calculate", "compute", "how many", "how much", "what is the value",
                                          "solve", "evaluate", "simplify", "probability", "determine the",
                                          "find the", "what is the minimum", "what is the maximum", "equal to"};
    size_t compute_hits = 0;
    for (size_t k = 0; k < sizeof compute / sizeof *compute; k++) compute_hits += count_of(&flat, compute[k], true);
    out[24] = lg((double)compute_hits);
    /* looks like code: statement punctuation and keywords */
    static const char *const code[] = {";", "{", "}", "==", "def ", "return", "print", "for (", "while ", "else"};
    size_t code_hits = 0;
    for (size_t k = 0; k < sizeof code / sizeof *code; k++) code_hits += count_of(&flat, code[k], false);
    out[25] = lg((double)code_hits);
}

/* ---- arithmetic of "<<expr=result>>" ---- */

typedef struct arith {
    const char *s;
    size_t len, pos;
    int depth;
    bool ok;
} arith;

static void arith_space(arith *a) {
    while (a->pos < a->len && (a->s[a->pos] == ' ' || a->s[a->pos] == '$')) a->pos++;
}
static double arith_sum(arith *a);
static double arith_atom(arith *a) {
    arith_space(a);
    if (a->pos >= a->len) return a->ok = false, 0;
    char c = a->s[a->pos];
    if (c == '-' || c == '+') {
        a->pos++;
        if (++a->depth > 64) return a->ok = false, 0;
        double v = arith_atom(a);
        a->depth--;
        return c == '-' ? -v : v;
    }
    if (c == '(') {
        a->pos++;
        if (++a->depth > 64) return a->ok = false, 0;
        double v = arith_sum(a);
        a->depth--;
        arith_space(a);
        if (a->pos >= a->len || a->s[a->pos] != ')') return a->ok = false, 0;
        a->pos++;
        return v;
    }
    if (isdigit((unsigned char)c) || c == '.') {
        double v = 0, scale = 0;
        bool any = false;
        while (a->pos < a->len) {
            char d = a->s[a->pos];
            if (isdigit((unsigned char)d)) {
                any = true;
                if (scale > 0) v += (d - '0') * scale, scale /= 10;
                else v = v * 10 + (d - '0');
            } else if (d == '.' && scale == 0) {
                scale = 0.1;
            } else if (d == ',' && scale == 0 && any && a->pos + 1 < a->len && isdigit((unsigned char)a->s[a->pos + 1])) {
                /* thousands separator: 1,200 */
            } else {
                break;
            }
            a->pos++;
        }
        if (!any) a->ok = false;
        arith_space(a);
        if (a->pos < a->len && a->s[a->pos] == '%') a->pos++, v /= 100;
        return v;
    }
    return a->ok = false, 0;
}
static double arith_product(arith *a) {
    double v = arith_atom(a);
    for (;;) {
        arith_space(a);
        if (!a->ok || a->pos >= a->len) return v;
        char c = a->s[a->pos];
        if (c != '*' && c != '/' && c != 'x') return v;
        a->pos++;
        double r = arith_atom(a);
        if (c == '/') {
            if (r == 0) return a->ok = false, 0;
            v /= r;
        } else {
            v *= r;
        }
    }
}
static double arith_sum(arith *a) {
    double v = arith_product(a);
    for (;;) {
        arith_space(a);
        if (!a->ok || a->pos >= a->len) return v;
        char c = a->s[a->pos];
        if (c != '+' && c != '-') return v;
        a->pos++;
        double r = arith_product(a);
        v = c == '+' ? v + r : v - r;
    }
}

bool rt_eval_arith(const char *s, size_t len, double *out) {
    arith a = {s, len, 0, 0, true};
    double v = arith_sum(&a);
    arith_space(&a);
    if (!a.ok || a.pos != a.len || !isfinite(v)) return false;
    *out = v;
    return true;
}

/* Parses a number at s (digits with optional thousands commas and one decimal point). */
static bool number_at(const char *s, size_t n, size_t *pos, double *out) {
    size_t i = *pos;
    if (i >= n || !isdigit((unsigned char)s[i])) return false;
    char buf[64];
    size_t k = 0;
    bool dot = false;
    while (i < n && k + 1 < sizeof buf) {
        char c = s[i];
        if (isdigit((unsigned char)c)) buf[k++] = c;
        else if (c == ',' && i + 1 < n && isdigit((unsigned char)s[i + 1]) && !dot) { /* thousands separator */ }
        else if (c == '.' && !dot && i + 1 < n && isdigit((unsigned char)s[i + 1])) buf[k++] = c, dot = true;
        else break;
        i++;
    }
    while (i < n && (isdigit((unsigned char)s[i]) || s[i] == ',')) i++; /* overlong: skip the rest */
    buf[k] = 0;
    *out = strtod(buf, NULL);
    *pos = i;
    return true;
}

static bool same_number(double a, double b) { return fabs(a - b) <= 1e-6 * fmax(1.0, fmax(fabs(a), fabs(b))); }

#define MAX_TRACKED 256

static void answer_dense(const char *prompt, const char *answer, double *out) {
    if (!answer) answer = "";
    size_t full_len = strlen(answer);
    /* the answer's window: its last RT_TEXT_WINDOW bytes hold the conclusion */
    const char *s = full_len > RT_TEXT_WINDOW ? answer + full_len - RT_TEXT_WINDOW : answer;
    size_t n = full_len > RT_TEXT_WINDOW ? RT_TEXT_WINDOW : full_len;

    double results[MAX_TRACKED];
    size_t nresults = 0, annotations = 0, wrong = 0, numbers = 0, lines = 1;
    double last_number = 0, last_eq_number = 0;
    bool have_last = false, have_eq = false;
    for (size_t i = 0; i < n;) {
        if (s[i] == '<' && i + 1 < n && s[i + 1] == '<') {
            size_t j = i + 2;
            while (j + 1 < n && !(s[j] == '>' && s[j + 1] == '>') && s[j] != '\n') j++;
            if (j + 1 < n && s[j] == '>') {
                annotations++;
                const char *body = s + i + 2;
                size_t blen = j - i - 2;
                const char *eq = NULL;
                for (size_t k = 0; k < blen; k++)
                    if (body[k] == '=') eq = body + k;
                double lhs, rhs;
                bool ok = eq && rt_eval_arith(body, (size_t)(eq - body), &lhs) &&
                          rt_eval_arith(eq + 1, blen - (size_t)(eq + 1 - body), &rhs) && same_number(lhs, rhs);
                if (!ok) wrong++;
                else if (nresults < MAX_TRACKED) results[nresults++] = rhs;
                i = j + 2;
                continue;
            }
        }
        if (s[i] == '\n') lines++;
        if (isdigit((unsigned char)s[i]) && (i == 0 || !isalnum((unsigned char)s[i - 1]))) {
            double v;
            size_t p = i;
            if (number_at(s, n, &p, &v)) {
                numbers++;
                last_number = v;
                have_last = true;
                size_t b = i;
                while (b > 0 && (s[b - 1] == ' ' || s[b - 1] == '$')) b--;
                if (b > 0 && s[b - 1] == '=') last_eq_number = v, have_eq = true;
                i = p;
                continue;
            }
        }
        i++;
    }
    /* the final answer: the number after the last "####", else the last number */
    const char *marker = NULL;
    size_t markers = 0;
    for (size_t i = 0; i + 4 <= n; i++)
        if (memcmp(s + i, "####", 4) == 0) marker = s + i, markers++, i += 3;
    double final = 0;
    bool have_final = false, text_after_final = false;
    if (marker) {
        size_t p = (size_t)(marker - s) + 4;
        while (p < n && (s[p] == ' ' || s[p] == '$')) p++;
        bool neg = p < n && s[p] == '-';
        if (neg) p++;
        if (number_at(s, n, &p, &final)) {
            have_final = true;
            if (neg) final = -final;
            while (p < n && isspace((unsigned char)s[p])) p++;
            text_after_final = p < n;
        }
    } else if (have_last) {
        final = last_number;
        have_final = true;
    }
    bool in_results = false;
    for (size_t k = 0; k < nresults; k++) in_results |= have_final && same_number(results[k], final);
    /* numbers of the prompt the answer uses */
    size_t prompt_numbers = 0, used = 0;
    if (prompt) {
        size_t pn = strlen(prompt);
        if (pn > RT_TEXT_WINDOW) pn = RT_TEXT_WINDOW;
        for (size_t i = 0; i < pn && prompt_numbers < MAX_TRACKED;) {
            double v;
            size_t p = i;
            if ((i == 0 || !isalnum((unsigned char)prompt[i - 1])) && number_at(prompt, pn, &p, &v)) {
                prompt_numbers++;
                char buf[64];
                snprintf(buf, sizeof buf, "%.*s", (int)(p - i < 63 ? p - i : 63), prompt + i);
                if (strstr(s, buf)) used++;
                i = p;
                continue;
            }
            i++;
        }
    }
    static const char *const hedges[] = {"however", "approximately", "assum", "actually", "cannot", "not possible",
                                         "impossible", "round", "unclear", "wait", "mistake", "not enough",
                                         "doesn't make sense", "does not make sense", "estimate", "about "};
    text_view av = view_of(answer);
    static _Thread_local flat_text flat;
    flatten(&av, &flat);
    size_t hedge_count = 0;
    for (size_t k = 0; k < sizeof hedges / sizeof *hedges; k++) hedge_count += count_of(&flat, hedges[k], true);
    size_t end = n;
    while (end > 0 && isspace((unsigned char)s[end - 1])) end--;
    bool abrupt = !marker && end > 0 && s[end - 1] != '.' && s[end - 1] != '!';

    out[0] = lg((double)full_len);
    out[1] = marker != NULL;
    out[2] = have_final;
    out[3] = have_final && same_number(final, round(final));
    out[4] = lg((double)annotations);
    out[5] = lg((double)wrong);
    out[6] = wrong > 0;
    out[7] = have_final && nresults > 0 && same_number(results[nresults - 1], final);
    out[8] = in_results;
    out[9] = lg((double)hedge_count);
    out[10] = text_after_final;
    out[11] = lg((double)lines);
    out[12] = have_final && final < 0;
    out[13] = have_final ? log10(1 + fabs(final)) : 0;
    out[14] = prompt_numbers ? (double)used / (double)prompt_numbers : 1;
    out[15] = lg((double)prompt_numbers);
    out[16] = abrupt;
    out[17] = have_final && have_eq && same_number(last_eq_number, final);
    out[18] = markers > 1;
    out[19] = lg((double)numbers);
}

int rt_dense_count(unsigned features) {
    return ((features & SLM_RF_DENSE) ? RT_PROMPT_DENSE : 0) + ((features & SLM_RF_ANSWER) ? RT_ANSWER_DENSE : 0);
}

int rt_dense_features(unsigned features, const char *prompt, const char *answer, double *out) {
    int k = 0;
    if (features & SLM_RF_DENSE) prompt_dense(prompt, out), k += RT_PROMPT_DENSE;
    if (features & SLM_RF_ANSWER) answer_dense(prompt, answer, out + k), k += RT_ANSWER_DENSE;
    return k;
}
