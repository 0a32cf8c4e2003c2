/* Text → token ids: special-token partitioning, then SentencePiece-style merging by score (SPM),
 * byte-level BPE by merge rank after a regex pre-tokenizer (BPE), or greedy longest-match
 * WordPiece (WPM). All work memory belongs to one call, so a vocab can be shared by threads. */
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/vocab_impl.h"
#include "util/buf.h"
#include "util/err.h"

#define SPACE_MARK "\xE2\x96\x81"

/* ---------- growable arrays ---------- */

typedef struct tokvec {
    slm_token *ids;
    size_t n, cap;
} tokvec;

static bool grow(void **ptr, size_t *cap, size_t need, size_t elem) { return slm_grow(ptr, cap, need, elem, 64); }

static bool push_token(tokvec *t, slm_token id) {
    if (!grow((void **)&t->ids, &t->cap, t->n + 1, sizeof *t->ids)) return false;
    t->ids[t->n++] = id;
    return true;
}

/* ---------- special-token partitioning ---------- */

typedef struct fragment {
    int32_t token; /* >= 0: a special token; -1: raw text [off, off + len) */
    size_t off, len;
} fragment;

typedef struct fragvec {
    fragment *f;
    size_t n, cap;
} fragvec;

static bool push_frag(fragvec *v, int32_t token, size_t off, size_t len) {
    if (!grow((void **)&v->f, &v->cap, v->n + 1, sizeof *v->f)) return false;
    v->f[v->n++] = (fragment){token, off, len};
    return true;
}

/* True if [off, off + len) overlaps one of the plain spans (ascending, non-overlapping). */
static bool in_plain(const slm_text_span *plain, size_t n_plain, size_t off, size_t len) {
    size_t lo = 0, hi = n_plain; /* first span ending after off */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (plain[mid].off + plain[mid].len <= off) lo = mid + 1;
        else hi = mid;
    }
    return lo < n_plain && plain[lo].off < off + len;
}

/* The first match of the special token at or after `from` that may become the token: any match
 * for user-defined tokens and with parse_special outside the plain spans; control and unknown
 * tokens never match across or inside a plain span (there they are text). */
static const char *find_special(const char *text, size_t from, size_t end, const char *tt, size_t tl, bool restricted,
                                const slm_text_span *plain, size_t n_plain) {
    while (from < end) {
        const char *m = memmem(text + from, end - from, tt, tl);
        if (!m || !restricted || !in_plain(plain, n_plain, (size_t)(m - text), tl)) return m;
        from = (size_t)(m - text) + 1;
    }
    return NULL;
}

/* Splits the text around special tokens, longest token first, as llama.cpp's
 * tokenizer_st_partition: control and unknown tokens only with parse_special (and outside the
 * plain spans), user-defined tokens always. */
static int partition(const slm_vocab *v, const char *text, size_t len, bool parse_special, const slm_text_span *plain,
                     size_t n_plain, fragvec *cur) {
    fragvec next = {0};
    cur->n = 0;
    if (len == 0) return 0;
    if (!push_frag(cur, -1, 0, len)) return -1;
    for (int s = 0; s < v->n_special; s++) {
        const int32_t id = v->special_tokens[s];
        const uint32_t attr = v->tok_attr[id];
        const bool restricted = (attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN)) != 0;
        if (!parse_special && restricted) continue;
        const char *tt = v->tok_text[id];
        const size_t tl = v->tok_len[id];
        bool found = false;
        for (size_t i = 0; i < cur->n && !found; i++)
            found = cur->f[i].token < 0 && find_special(text, cur->f[i].off, cur->f[i].off + cur->f[i].len, tt, tl,
                                                        restricted, plain, n_plain) != NULL;
        if (!found) continue;
        next.n = 0;
        for (size_t i = 0; i < cur->n; i++) {
            fragment fr = cur->f[i];
            if (fr.token >= 0) {
                if (!push_frag(&next, fr.token, 0, 0)) goto oom;
                continue;
            }
            size_t base = fr.off, blen = fr.len;
            while (blen > 0) {
                const char *m = find_special(text, base, base + blen, tt, tl, restricted, plain, n_plain);
                if (!m) {
                    if (!push_frag(&next, -1, base, blen)) goto oom;
                    break;
                }
                size_t mo = (size_t)(m - text);
                if (mo > base) {
                    size_t left = mo - base;
                    if (attr & TOK_ATTR_LSTRIP)
                        while (left > 0 && isspace((unsigned char)text[base + left - 1])) left--;
                    if (left > 0 && !push_frag(&next, -1, base, left)) goto oom;
                }
                if (!push_frag(&next, id, 0, 0)) goto oom;
                size_t ro = mo + tl, rl = base + blen - ro;
                if (attr & TOK_ATTR_RSTRIP)
                    while (rl > 0 && isspace((unsigned char)text[ro])) ro++, rl--;
                base = ro;
                blen = rl;
            }
        }
        fragvec tmp = *cur;
        *cur = next;
        next = tmp;
    }
    free(next.f);
    return 0;
oom:
    free(next.f);
    return -1;
}

/* ---------- shared merge machinery ---------- */

typedef struct symbol {
    size_t start, n; /* bytes in the word being merged; n == 0 once merged away */
    int prev, next;
} symbol;

typedef struct bigram {
    float score; /* SPM: higher first */
    int rank;    /* BPE: lower first */
    int left, right;
    size_t size;
} bigram;

typedef struct scratch {
    char *buf;
    size_t buf_cap;
    char *word;
    size_t word_cap;
    symbol *sym;
    size_t sym_cap;
    bigram *heap;
    size_t heap_cap, heap_n;
    pretok_work pretok;
} scratch;

static void scratch_free(scratch *s) {
    free(s->buf);
    free(s->word);
    free(s->sym);
    free(s->heap);
    pretok_work_free(&s->pretok);
}

/* a goes before b: SPM by higher score, BPE by lower rank; then the leftmost pair. */
static bool before(const bigram *a, const bigram *b, bool by_rank) {
    if (by_rank) {
        if (a->rank != b->rank) return a->rank < b->rank;
    } else if (a->score != b->score) {
        return a->score > b->score;
    }
    return a->left < b->left;
}

static bool heap_push(scratch *s, bigram b, bool by_rank) {
    if (!grow((void **)&s->heap, &s->heap_cap, s->heap_n + 1, sizeof *s->heap)) return false;
    size_t i = s->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&b, &s->heap[parent], by_rank)) break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = b;
    return true;
}

static bigram heap_pop(scratch *s, bool by_rank) {
    bigram top = s->heap[0];
    bigram last = s->heap[--s->heap_n];
    size_t i = 0, n = s->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(&s->heap[c + 1], &s->heap[c], by_rank)) c++;
        if (!before(&s->heap[c], &last, by_rank)) break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (n) s->heap[i] = last;
    return top;
}

/* Cuts `word` into UTF-8 characters the way llama.cpp does (length from the lead byte). */
static int split_chars(scratch *s, const char *word, size_t len) {
    size_t n = 0;
    for (size_t off = 0; off < len; n++) {
        if (!grow((void **)&s->sym, &s->sym_cap, n + 1, sizeof *s->sym)) return -1;
        size_t cl = utf8_len_from_lead((unsigned char)word[off]);
        if (cl > len - off) cl = len - off;
        s->sym[n] = (symbol){off, cl, (int)n - 1, off + cl == len ? -1 : (int)n + 1};
        off += cl;
    }
    if (n > INT_MAX / 4) return -1;
    return (int)n;
}

static void merge_pair(scratch *s, int left, int right) {
    symbol *l = &s->sym[left], *r = &s->sym[right];
    l->n += r->n;
    r->n = 0;
    l->next = r->next;
    if (r->next >= 0) s->sym[r->next].prev = left;
}

/* Queues the pair (left, right) if it may merge; false only when out of memory. */
typedef bool (*add_bigram_fn)(const slm_vocab *v, scratch *s, const char *word, int left, int right);

/* Merges the n symbols of `word`, best pair first (SPM: by score, BPE: by rank), until no
 * adjacent pair can merge. */
static int merge_symbols(const slm_vocab *v, scratch *s, const char *word, int n, bool by_rank, add_bigram_fn add) {
    s->heap_n = 0;
    for (int i = 1; i < n; i++)
        if (!add(v, s, word, i - 1, i)) return -1;
    while (s->heap_n) {
        bigram b = heap_pop(s, by_rank);
        const symbol *l = &s->sym[b.left], *r = &s->sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale: a side merged since */
        merge_pair(s, b.left, b.right);
        if (!add(v, s, word, s->sym[b.left].prev, b.left) || !add(v, s, word, b.left, s->sym[b.left].next))
            return -1;
    }
    return 0;
}

/* Emits the token of each merged symbol; a symbol that is no token becomes the byte_token of
 * each of its bytes (unk where there is none; nothing if unk is -1 too). */
static int emit_symbols(const slm_vocab *v, const scratch *s, const char *word, const int32_t byte_token[256],
                        slm_token unk, tokvec *out) {
    for (int i = 0; i != -1; i = s->sym[i].next) {
        const symbol *sy = &s->sym[i];
        int32_t id = strmap_get(&v->token_to_id, word + sy->start, sy->n);
        if (id >= 0) {
            if (!push_token(out, id)) return -1;
            continue;
        }
        for (size_t k = 0; k < sy->n; k++) {
            int32_t bt = byte_token[(unsigned char)word[sy->start + k]];
            if (bt < 0) bt = unk;
            if (bt >= 0 && !push_token(out, bt)) return -1;
        }
    }
    return 0;
}

/* ---------- SPM ---------- */

static bool spm_try_bigram(const slm_vocab *v, scratch *s, const char *word, int left, int right) {
    if (left < 0 || right < 0) return true;
    size_t size = s->sym[left].n + s->sym[right].n;
    int32_t id = strmap_get(&v->token_to_id, word + s->sym[left].start, size);
    if (id < 0) return true;
    return heap_push(s, (bigram){v->tok_score[id], 0, left, right, size}, false);
}

static int spm_tokenize(const slm_vocab *v, scratch *s, const char *text, size_t len, bool prefix_space,
                        tokvec *out) {
    /* spaces become U+2581, with one in front when the fragment starts the text or follows a
     * special token */
    size_t need = (len + 1) * 3;
    if (!grow((void **)&s->word, &s->word_cap, need, 1)) return -1;
    char *w = s->word;
    size_t wl = 0;
    if (prefix_space) {
        memcpy(w, SPACE_MARK, 3);
        wl = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(w + wl, SPACE_MARK, 3);
            wl += 3;
        } else {
            w[wl++] = text[i];
        }
    }
    int n = split_chars(s, w, wl);
    if (n < 0) return -1;
    if (n == 0) return 0;
    if (merge_symbols(v, s, w, n, false, spm_try_bigram) < 0) return -1;
    /* a symbol that is not a token falls back to <0xXX> (or the raw byte, or unk) per byte */
    return emit_symbols(v, s, w, v->spm_byte_token, v->unk, out);
}

/* ---------- BPE ---------- */

static bool bpe_add_bigram(const slm_vocab *v, scratch *s, const char *word, int left, int right) {
    if (left < 0 || right < 0) return true;
    const symbol *l = &s->sym[left], *r = &s->sym[right];
    strmap_part parts[3] = {{word + l->start, l->n}, {" ", 1}, {word + r->start, r->n}};
    int32_t rank = strmap_get_parts(&v->merges, parts, 3);
    if (rank < 0) return true;
    return heap_push(s, (bigram){0, rank, left, right, l->n + r->n}, true);
}

static int bpe_word(const slm_vocab *v, scratch *s, const char *word, size_t wl, tokvec *out) {
    if (v->ignore_merges) {
        int32_t id = strmap_get(&v->token_to_id, word, wl);
        if (id >= 0) return push_token(out, id) ? 0 : -1;
    }
    int n = split_chars(s, word, wl);
    if (n <= 0) return n;
    if (merge_symbols(v, s, word, n, true, bpe_add_bigram) < 0) return -1;
    /* llama.cpp falls back to the single bytes of the encoded text that are tokens */
    return emit_symbols(v, s, word, v->char_token, -1, out);
}

static int bpe_tokenize(const slm_vocab *v, scratch *s, const char *text, size_t len, tokvec *out, char *err,
                        size_t err_len) {
    /* invalid UTF-8 becomes U+FFFD, as llama.cpp's code point conversion does */
    if (!grow((void **)&s->buf, &s->buf_cap, len * 3 + 1, 1)) return slm_err(err, err_len, "out of memory");
    size_t cl = 0;
    for (size_t i = 0; i < len;) {
        size_t used;
        uint32_t cp = utf8_decode_lenient((const unsigned char *)text + i, len - i, &used);
        cl += utf8_encode(cp, s->buf + cl);
        i += used;
    }
    int n_spans = pretok_split(&v->pretok, s->buf, cl, &s->pretok, err, err_len);
    if (n_spans < 0) return -1;
    for (int k = 0; k < n_spans; k++) {
        const char *piece = s->buf + s->pretok.spans[k].start;
        size_t pl = s->pretok.spans[k].len;
        if (!grow((void **)&s->word, &s->word_cap, pl * 2 + 1, 1)) return slm_err(err, err_len, "out of memory");
        size_t wl = 0;
        for (size_t i = 0; i < pl; i++) wl += utf8_encode(bytes_to_unicode((uint8_t)piece[i]), s->word + wl);
        if (bpe_word(v, s, s->word, wl, out) < 0) return slm_err(err, err_len, "out of memory");
    }
    return 0;
}

/* ---------- WordPiece ---------- */

static bool is_chinese_char(uint32_t cp) {
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) ||
           (cp >= 0x2B920 && cp <= 0x2CEAF) || /* sic: HF uses 0x2B920 */
           (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* Greedy longest match over "▁" + word; a word with an unmatchable position becomes [UNK]. */
static int wpm_word(const slm_vocab *v, const char *word, size_t len, char *buf, tokvec *out) {
    if (len == 0) return 0;
    memcpy(buf, SPACE_MARK, 3);
    memcpy(buf + 3, word, len);
    const size_t n = len + 3;
    const size_t start = out->n;
    for (size_t i = 0; i < n; i++) {
        bool match = false;
        size_t hi = i + (size_t)v->max_token_len + 1;
        if (hi > n) hi = n;
        for (size_t j = hi; j > i; j--) {
            int32_t id = strmap_get(&v->token_to_id, buf + i, j - i);
            if (id >= 0) {
                if (!push_token(out, id)) return -1;
                match = true;
                i = j - 1;
                break;
            }
        }
        if (!match) {
            out->n = start;
            break;
        }
    }
    if (out->n == start && v->unk >= 0 && !push_token(out, v->unk)) return -1;
    return 0;
}

static int wpm_tokenize(const slm_vocab *v, scratch *s, const char *text, size_t len, tokvec *out) {
    /* normalised text is at most 4 bytes per input byte; the word buffer also needs "▁" */
    if (!grow((void **)&s->buf, &s->buf_cap, len * 4 + 8, 1) || !grow((void **)&s->word, &s->word_cap, len * 4 + 8, 1))
        return -1;
    char *word = s->buf;
    size_t wl = 0;
    for (size_t i = 0; i < len;) {
        size_t used;
        uint32_t cp = utf8_decode_lenient((const unsigned char *)text + i, len - i, &used);
        i += used;
        if (v->strip_accents) {
            /* llama.cpp keeps only the first code point of the canonical decomposition */
            utf8proc_int32_t dec[8];
            int last = 0;
            utf8proc_ssize_t nd = utf8proc_decompose_char((utf8proc_int32_t)cp, dec, 8, UTF8PROC_DECOMPOSE, &last);
            if (nd > 0) cp = (uint32_t)dec[0];
        }
        if (cp_is_whitespace(cp)) {
            if (wpm_word(v, word, wl, s->word, out) < 0) return -1;
            wl = 0;
            continue;
        }
        utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)cp);
        if (cp == 0 || cp == 0xFFFD || cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CF ||
            cat == UTF8PROC_CATEGORY_CS || cat == UTF8PROC_CATEGORY_CO)
            continue;
        /* Combining marks that are not part of a precomposed character (Devanagari vowel signs,
         * a combining acute after its letter) stay in the word, as in llama.cpp: such a word then
         * usually has no WordPiece split and becomes [UNK]. */
        uint32_t lc = v->lowercase ? (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp) : cp;
        bool punct = cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO;
        bool symbol = cat >= UTF8PROC_CATEGORY_SM && cat <= UTF8PROC_CATEGORY_SO;
        if (punct || (cp < 0x7F && symbol) || is_chinese_char(cp)) {
            if (wpm_word(v, word, wl, s->word, out) < 0) return -1;
            char one[4];
            size_t ol = utf8_encode(lc, one);
            if (wpm_word(v, one, ol, s->word, out) < 0) return -1;
            wl = 0;
            continue;
        }
        wl += utf8_encode(lc, word + wl);
    }
    return wpm_word(v, word, wl, s->word, out);
}

/* ---------- entry ---------- */

int slm_vocab_tokenize(const slm_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                        slm_token *out, int cap, char *err, size_t err_len) {
    return slm_vocab_tokenize_plain(v, text, len, add_special, parse_special, NULL, 0, out, cap, err, err_len);
}

int slm_vocab_tokenize_plain(const slm_vocab *v, const char *text, size_t len, bool add_special, bool parse_special,
                             const slm_text_span *plain, size_t n_plain, slm_token *out, int cap, char *err,
                             size_t err_len) {
    if (!text && len) return slm_err(err, err_len, "tokenize: NULL text"), INT_MIN;
    if (cap < 0 || (cap > 0 && !out)) return slm_err(err, err_len, "tokenize: bad output buffer"), INT_MIN;
    if (len > (size_t)1 << 30) return slm_err(err, err_len, "tokenize: text of %zu bytes is too long", len), INT_MIN;
    if (n_plain && !plain) return slm_err(err, err_len, "tokenize: %zu plain spans but no span array", n_plain), INT_MIN;
    for (size_t i = 0; i < n_plain; i++) {
        if (plain[i].off > len || plain[i].len > len - plain[i].off)
            return slm_err(err, err_len, "tokenize: plain span %zu [%zu, +%zu) lies outside the %zu-byte text", i,
                           plain[i].off, plain[i].len, len),
                   INT_MIN;
        if (i && plain[i].off < plain[i - 1].off + plain[i - 1].len)
            return slm_err(err, err_len, "tokenize: plain span %zu overlaps or precedes span %zu", i, i - 1), INT_MIN;
    }

    tokvec toks = {0};
    fragvec frags = {0};
    scratch s = {0};
    int rc = 0;
    bool failed = false;
    if (partition(v, text, len, parse_special, plain, n_plain, &frags) < 0) goto oom;
    const bool lead = add_special && (v->kind == VOCAB_WPM || v->add_bos);
    if (lead && !push_token(&toks, v->bos)) goto oom;
    bool prev_special = true;
    for (size_t i = 0; i < frags.n; i++) {
        const fragment *fr = &frags.f[i];
        if (fr->token >= 0) {
            if (!push_token(&toks, fr->token)) goto oom;
            prev_special = true;
            continue;
        }
        const char *t = text + fr->off;
        switch (v->kind) {
        case VOCAB_SPM:
            if (spm_tokenize(v, &s, t, fr->len, v->add_space_prefix && prev_special, &toks) < 0) goto oom;
            break;
        case VOCAB_BPE:
            if (bpe_tokenize(v, &s, t, fr->len, &toks, err, err_len) < 0) {
                failed = true;
                goto done;
            }
            break;
        case VOCAB_WPM:
            if (wpm_tokenize(v, &s, t, fr->len, &toks) < 0) goto oom;
            break;
        }
        prev_special = false;
    }
    if (add_special) {
        if (v->kind == VOCAB_WPM) {
            if (!push_token(&toks, v->sep)) goto oom;
        } else if (v->add_eos && !push_token(&toks, v->eos)) {
            goto oom;
        }
    }
    if (toks.n > (size_t)INT_MAX) {
        slm_err(err, err_len, "tokenize: too many tokens");
        failed = true;
        goto done;
    }
    if (toks.n > (size_t)cap) {
        rc = -(int)toks.n;
        goto done;
    }
    if (toks.n) memcpy(out, toks.ids, toks.n * sizeof *out);
    rc = (int)toks.n;
    goto done;
oom:
    slm_err(err, err_len, "out of memory while tokenizing");
    failed = true;
done:
    free(toks.ids);
    free(frags.f);
    scratch_free(&s);
    return failed ? INT_MIN : rc;
}

/* ---------- a size bound for callers that must not tokenize unbounded input ---------- */

/* Every input byte ends up inside some token's text (never dropped) and no token text is longer
 * than max_token_len, so a text of more than n * max_token_len bytes has more than n tokens. That
 * holds unless the vocabulary can drop input: WordPiece (whitespace, control characters), special
 * tokens that strip the whitespace next to them, SPM without byte fallback or unk, byte-level BPE
 * without a token for every byte or with a merge whose result is no token. */
size_t slm_vocab_max_text_bytes(const slm_vocab *v, bool parse_special, int n_tokens) {
    if (!v || n_tokens < 0 || v->max_token_len <= 0) return SIZE_MAX;
    if (v->kind == VOCAB_WPM) return SIZE_MAX;
    for (int s = 0; s < v->n_special; s++) {
        uint32_t attr = v->tok_attr[v->special_tokens[s]];
        if (!parse_special && (attr & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN))) continue;
        if (attr & (TOK_ATTR_LSTRIP | TOK_ATTR_RSTRIP)) return SIZE_MAX;
    }
    if (v->kind == VOCAB_SPM) {
        if (v->unk < 0)
            for (int b = 0; b < 256; b++)
                if (v->spm_byte_token[b] < 0) return SIZE_MAX;
    } else {
        for (int b = 0; b < 256; b++) {
            char one[4];
            size_t n = utf8_encode(bytes_to_unicode((uint8_t)b), one);
            if (strmap_get(&v->token_to_id, one, n) < 0) return SIZE_MAX;
        }
        for (uint32_t i = 0; v->merges.slots && i <= v->merges.mask; i++) {
            const strmap_slot *sl = &v->merges.slots[i];
            if (sl->value < 0) continue;
            const char *sp = memchr(sl->key, ' ', sl->len);
            if (!sp || memchr(sp + 1, ' ', sl->len - (size_t)(sp - sl->key) - 1)) continue; /* can never match */
            strmap_part parts[2] = {{sl->key, (size_t)(sp - sl->key)}, {sp + 1, sl->len - (size_t)(sp - sl->key) - 1}};
            if (strmap_get_parts(&v->token_to_id, parts, 2) < 0) return SIZE_MAX;
        }
    }
    if ((size_t)n_tokens > SIZE_MAX / (size_t)v->max_token_len) return SIZE_MAX;
    return (size_t)n_tokens * (size_t)v->max_token_len;
}
