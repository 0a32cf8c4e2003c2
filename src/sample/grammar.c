/* The grammar constraint at run time.
 *
 * Parse state: the set of parse stacks still alive plus the partial UTF-8 code point the text so
 * far ends with (all stacks have consumed the same bytes, so it is shared). A stack is a list of
 * element positions; its top is always a terminal (an empty stack means "sentence complete").
 *
 * Speed: states are interned (hash-consed) and transitions on a byte are memoised, so stepping is a
 * table lookup once warm. Masking walks a preorder trie of all token byte strings with the state,
 * skipping whole subtrees when a prefix dies; the resulting allowed-token bitmap is cached per
 * state, so revisiting a state (the common case inside JSON strings) costs one pass over the
 * logits. All tables are allocated at compile time; when they fill up they are flushed, never grown. */
#include "sample/grammar.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sample/grammar_impl.h"
#include "util/buf.h"
#include "util/err.h"

#define MAX_STACKS 512
#define MAX_DEPTH 256
#define MAX_STATE_WORDS 16384
#define HDR_WORDS 4 /* partial value, bytes still missing, minimum code point, stack count */
#define MAX_STATES 4096
#define HASH_SLOTS 16384
#define ARENA_WORDS (1u << 20)
#define MASK_SLOTS 16
#define EXPAND_BUDGET 200000
#define WORK_WORDS (1u << 18)
#define SEEN_SLOTS 8192 /* stacks with a rule on top already expanded in one step (half filled at most) */
#define SEEN_WORDS (1u << 18)

#define T_UNKNOWN (-1)
#define T_DEAD (-2)
#define T_FULL (-3)

typedef struct trie_node {
    uint32_t subtree_end; /* index of the first node after this node's subtree */
    uint32_t tok_begin, tok_end;
    uint16_t depth; /* 1-based: length of the byte string this node spells */
    uint8_t byte;
} trie_node;

struct slm_grammar {
    gram_program prog;

    /* vocabulary */
    int n_vocab;
    char *pieces;
    uint32_t *piece_off; /* n_vocab + 1 */
    uint8_t *is_eog;
    slm_token *eog_tokens;
    int n_eog;
    trie_node *nodes;
    uint32_t n_nodes;
    slm_token *node_tokens;
    int32_t *levels; /* per trie depth during a walk */
    uint32_t max_piece;

    /* memo: interned states, transitions, mask cache */
    uint32_t *arena;
    uint32_t arena_used;
    uint32_t *st_off, *st_len;
    int32_t *st_mask;
    int32_t *trans; /* MAX_STATES * 256 */
    uint32_t *hash_tab;
    uint32_t n_states;
    uint64_t *mask_bits; /* MASK_SLOTS bitmaps */
    int32_t mask_owner[MASK_SLOTS];
    uint32_t mask_next;
    uint64_t *walk_bits;
    uint32_t bits_words;

    /* current parse state (always interned as cur_sid) */
    uint32_t *cur_words;
    uint32_t cur_len;
    int32_t cur_sid;
    uint32_t root_len;
    uint32_t *root_words;
    bool open_ended; /* slm_grammar_set_open_ended: finished only when nothing can follow */

    /* semantic checks (grammar_json.c), when the program marks JSON values to check */
    gram_json *json;
    uint8_t *tok_class; /* per token: 1 = has '[' or '{', 2 = has '"', ',', ']' or '}' */

    /* scratch for one step */
    uint32_t *step_out;
    uint32_t *carry; /* a state kept across a flush in run_bytes */
    uint32_t *work;
    uint32_t *emit;
    uint32_t emit_used;
    uint32_t emit_off[MAX_STACKS], emit_hash[MAX_STACKS];
    uint32_t n_emit;
    uint32_t cur_stack[MAX_DEPTH + 1];
    /* the stacks expand() has already opened in this step: an ambiguous grammar (root ::= [a] root*)
     * reaches the same stack from many others, and expanding each again multiplies the work */
    uint32_t *seen;
    uint32_t seen_used, n_seen, seen_gen;
    uint32_t seen_slot_gen[SEEN_SLOTS], seen_slot_off[SEEN_SLOTS];
};

/* ---------- terminals ---------- */

/* Does class c have a range overlapping [lo, hi]? Binary search for the first range ending at or
 * after lo. */
static bool class_overlaps(const gram_program *p, const gram_class *c, uint32_t lo, uint32_t hi) {
    uint32_t a = c->begin, b = c->end;
    while (a < b) {
        uint32_t mid = (a + b) / 2;
        if (p->ranges[mid].hi < lo) a = mid + 1;
        else b = mid;
    }
    return a < c->end && p->ranges[a].lo <= hi;
}

static bool term_matches(const gram_program *p, const gram_elem *e, uint32_t cp) {
    if (e->type == GRAM_CHAR) return e->value == cp;
    const gram_class *c = &p->classes[e->value];
    if (cp < 128) return (c->ascii[cp >> 6] >> (cp & 63)) & 1;
    return class_overlaps(p, c, cp, cp);
}

/* Can the terminal match some code point in [lo, hi]? (For a code point still being decoded.) */
static bool term_intersects(const gram_program *p, const gram_elem *e, uint32_t lo, uint32_t hi) {
    if (e->type == GRAM_CHAR) return e->value >= lo && e->value <= hi;
    return class_overlaps(p, &p->classes[e->value], lo, hi);
}

/* ---------- stack sets ---------- */

static uint32_t hash_words(const uint32_t *w, uint32_t n) {
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < n; i++) {
        h ^= w[i];
        h *= 16777619u;
        h ^= h >> 15;
    }
    return h;
}

static void emit_reset(slm_grammar *g) {
    g->n_emit = 0;
    g->emit_used = 0;
    g->seen_used = 0;
    g->n_seen = 0;
    if (++g->seen_gen == 0) { /* wrapped: no slot may look current */
        memset(g->seen_slot_gen, 0, sizeof g->seen_slot_gen);
        g->seen_gen = 1;
    }
}

/* Was this stack already expanded in this step? If not, it is recorded (while there is room; when
 * full, stacks are expanded again, which gives the same stacks, only slower). */
static bool seen_before(slm_grammar *g, const uint32_t *stk, uint32_t depth) {
    uint32_t slot = (hash_words(stk, depth) ^ (depth * 0x9E3779B9u)) & (SEEN_SLOTS - 1);
    for (;; slot = (slot + 1) & (SEEN_SLOTS - 1)) {
        if (g->seen_slot_gen[slot] != g->seen_gen) break;
        const uint32_t *o = &g->seen[g->seen_slot_off[slot]];
        if (o[0] == depth && !memcmp(o + 1, stk, depth * sizeof *stk)) return true;
    }
    if (g->n_seen >= SEEN_SLOTS / 2 || g->seen_used + depth + 1 > SEEN_WORDS) return false;
    g->seen_slot_gen[slot] = g->seen_gen;
    g->seen_slot_off[slot] = g->seen_used;
    g->seen[g->seen_used] = depth;
    memcpy(&g->seen[g->seen_used + 1], stk, depth * sizeof *stk);
    g->seen_used += depth + 1;
    g->n_seen++;
    return false;
}

/* Adds a stack to the set being built, dropping duplicates; past the caps the stack is dropped
 * (the language shrinks but every accepted text stays valid). */
static void emit_stack(slm_grammar *g, const uint32_t *stk, uint32_t depth) {
    if (g->n_emit >= MAX_STACKS) return; /* full: dropped whether or not it is a duplicate */
    uint32_t h = hash_words(stk, depth) ^ depth;
    for (uint32_t i = 0; i < g->n_emit; i++) {
        if (g->emit_hash[i] != h) continue;
        const uint32_t *o = &g->emit[g->emit_off[i]];
        if (o[0] == depth && !memcmp(o + 1, stk, depth * sizeof *stk)) return;
    }
    if (g->n_emit >= MAX_STACKS || g->emit_used + depth + 1 + HDR_WORDS > MAX_STATE_WORDS) return;
    g->emit_off[g->n_emit] = g->emit_used;
    g->emit_hash[g->n_emit] = h;
    g->emit[g->emit_used] = depth;
    memcpy(&g->emit[g->emit_used + 1], stk, depth * sizeof *stk);
    g->emit_used += depth + 1;
    g->n_emit++;
}

/* Expands rule references on top of `stk` until every resulting stack has a terminal on top (or
 * is empty), emitting each. Left recursion was rejected at compile time, so this terminates; the
 * budget still bounds pathological ambiguity. */
static void expand(slm_grammar *g, const uint32_t *stk, uint32_t depth, uint32_t *budget) {
    const gram_program *p = &g->prog;
    uint32_t *work = g->work, top = 0;
    memcpy(work, stk, depth * sizeof *stk);
    work[depth] = depth;
    top = depth + 1;
    uint32_t *cur = g->cur_stack;
    while (top > 0 && g->n_emit < MAX_STACKS) { /* once the set is full nothing more can be emitted */
        uint32_t d = work[top - 1];
        top -= d + 1;
        memcpy(cur, &work[top], d * sizeof *cur);
        if (*budget == 0) return;
        (*budget)--;
        if (d == 0 || p->elems[cur[d - 1]].type != GRAM_RULE) {
            emit_stack(g, cur, d);
            continue;
        }
        if (seen_before(g, cur, d)) continue; /* its stacks are emitted or on the work stack */
        uint32_t pos = cur[d - 1];
        uint32_t rule = p->elems[pos].value;
        d--;
        if (p->elems[pos + 1].type != GRAM_END) cur[d++] = pos + 1;
        for (uint32_t a = p->rule_alt_begin[rule + 1]; a-- > p->rule_alt_begin[rule];) {
            uint32_t start = p->alt_start[a];
            bool empty = p->elems[start].type == GRAM_END;
            uint32_t nd = d + (empty ? 0 : 1);
            if (nd > MAX_DEPTH || top + nd + 1 > WORK_WORDS) continue;
            memcpy(&work[top], cur, d * sizeof *cur);
            if (!empty) work[top + d] = start;
            work[top + nd] = nd;
            top += nd + 1;
        }
    }
}

static int cmp_stacks(const uint32_t *a, const uint32_t *b) {
    if (a[0] != b[0]) return a[0] < b[0] ? -1 : 1;
    for (uint32_t i = 1; i <= a[0]; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
}

/* Writes the emitted stacks in canonical (sorted) order after a header; returns the length. */
static uint32_t emit_finish(slm_grammar *g, uint32_t *out, uint32_t pv, uint32_t rem, uint32_t minc) {
    for (uint32_t i = 1; i < g->n_emit; i++) {
        uint32_t off = g->emit_off[i];
        uint32_t j = i;
        while (j > 0 && cmp_stacks(&g->emit[g->emit_off[j - 1]], &g->emit[off]) > 0) {
            g->emit_off[j] = g->emit_off[j - 1];
            j--;
        }
        g->emit_off[j] = off;
    }
    out[0] = pv;
    out[1] = rem;
    out[2] = minc;
    out[3] = g->n_emit;
    uint32_t n = HDR_WORDS;
    for (uint32_t i = 0; i < g->n_emit; i++) {
        const uint32_t *s = &g->emit[g->emit_off[i]];
        memcpy(&out[n], s, (s[0] + 1) * sizeof *s);
        n += s[0] + 1;
    }
    return n;
}

/* The state after consuming one more byte; 0 if no parse survives, else the new length in out. */
static uint32_t compute_step(slm_grammar *g, const uint32_t *st, uint8_t b, uint32_t *out) {
    const gram_program *p = &g->prog;
    uint32_t pv = st[0], rem = st[1], minc = st[2], ns = st[3];
    bool complete = false;
    if (rem == 0) {
        if (b < 0x80) {
            pv = b;
            complete = true;
        } else if ((b & 0xE0) == 0xC0) {
            pv = b & 0x1F, rem = 1, minc = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            pv = b & 0x0F, rem = 2, minc = 0x800;
        } else if ((b & 0xF8) == 0xF0 && b <= 0xF4) {
            pv = b & 0x07, rem = 3, minc = 0x10000;
        } else {
            return 0;
        }
    } else {
        if ((b & 0xC0) != 0x80) return 0;
        pv = (pv << 6) | (b & 0x3F);
        rem--;
        if (rem == 0) {
            if (pv < minc || pv > 0x10FFFF || (pv >= 0xD800 && pv <= 0xDFFF)) return 0;
            complete = true;
        }
    }
    const uint32_t *s = st + HDR_WORDS;
    if (!complete) {
        uint32_t lo = pv << (6 * rem), hi = lo | ((1u << (6 * rem)) - 1);
        if (lo < minc) lo = minc;
        if (hi > 0x10FFFF) hi = 0x10FFFF;
        if (lo > hi) return 0;
        uint32_t n = HDR_WORDS, kept = 0;
        for (uint32_t i = 0; i < ns; i++) {
            uint32_t d = s[0];
            if (d > 0 && term_intersects(p, &p->elems[s[d]], lo, hi)) {
                memcpy(&out[n], s, (d + 1) * sizeof *s);
                n += d + 1;
                kept++;
            }
            s += d + 1;
        }
        if (!kept) return 0;
        out[0] = pv, out[1] = rem, out[2] = minc, out[3] = kept;
        return n;
    }
    emit_reset(g);
    uint32_t budget = EXPAND_BUDGET;
    uint32_t tmp[MAX_DEPTH + 1];
    for (uint32_t i = 0; i < ns; i++) {
        uint32_t d = s[0];
        if (d > 0 && term_matches(p, &p->elems[s[d]], pv)) {
            memcpy(tmp, s + 1, d * sizeof *tmp);
            uint32_t pos = tmp[d - 1];
            d--;
            if (p->elems[pos + 1].type != GRAM_END) tmp[d++] = pos + 1;
            expand(g, tmp, d, &budget);
        }
        s += s[0] + 1;
    }
    if (g->n_emit == 0) return 0;
    return emit_finish(g, out, 0, 0, 0);
}

static bool state_done(const uint32_t *st) {
    if (st[1] != 0) return false;
    const uint32_t *s = st + HDR_WORDS;
    for (uint32_t i = 0; i < st[3]; i++) {
        if (s[0] == 0) return true;
        s += s[0] + 1;
    }
    return false;
}

/* Complete and nothing can follow: every stack is empty (an open-ended grammar ends here, or at EOG). */
static bool state_final(const uint32_t *st) {
    if (st[1] != 0 || st[3] == 0) return false;
    const uint32_t *s = st + HDR_WORDS;
    for (uint32_t i = 0; i < st[3]; i++) {
        if (s[0] != 0) return false;
        s += s[0] + 1;
    }
    return true;
}

/* ---------- memo ---------- */

static int32_t intern(slm_grammar *g, const uint32_t *w, uint32_t n) {
    uint32_t h = hash_words(w, n);
    uint32_t slot = h & (HASH_SLOTS - 1);
    for (;;) {
        uint32_t v = g->hash_tab[slot];
        if (v == 0) break;
        uint32_t sid = v - 1;
        if (g->st_len[sid] == n && !memcmp(&g->arena[g->st_off[sid]], w, n * sizeof *w)) return (int32_t)sid;
        slot = (slot + 1) & (HASH_SLOTS - 1);
    }
    if (g->n_states >= MAX_STATES || g->arena_used + n > ARENA_WORDS) return T_FULL;
    uint32_t sid = g->n_states++;
    g->st_off[sid] = g->arena_used;
    g->st_len[sid] = n;
    g->st_mask[sid] = -1;
    memcpy(&g->arena[g->arena_used], w, n * sizeof *w);
    g->arena_used += n;
    for (int b = 0; b < 256; b++) g->trans[(size_t)sid * 256 + b] = T_UNKNOWN;
    g->hash_tab[slot] = sid + 1;
    return (int32_t)sid;
}

static void flush(slm_grammar *g) {
    g->n_states = 0;
    g->arena_used = 0;
    memset(g->hash_tab, 0, HASH_SLOTS * sizeof *g->hash_tab);
    for (int i = 0; i < MASK_SLOTS; i++) g->mask_owner[i] = -1;
    g->cur_sid = intern(g, g->cur_words, g->cur_len); /* always fits in an empty table */
}

/* An ASCII byte enters a state only through which stack tops it matches: every other ASCII byte
 * that matches the same tops leads to the same state (all of [a-z] inside a string, say), so its
 * transition is filled in now instead of being computed again. Per top, the ASCII bytes it
 * matches are a 128-bit set; the bytes equivalent to b are those inside every set b is in and
 * outside every set it is not. */
static void share_ascii(slm_grammar *g, int32_t sid, uint8_t b, int32_t to) {
    const uint32_t *st = &g->arena[g->st_off[sid]];
    if (b >= 0x80 || st[1] != 0) return;
    uint64_t same[2] = {~0ull, ~0ull};
    const uint32_t *s = st + HDR_WORDS;
    for (uint32_t i = 0; i < st[3]; i++) {
        uint32_t d = s[0];
        if (d > 0) {
            const gram_elem *e = &g->prog.elems[s[d]];
            uint64_t m[2] = {0, 0};
            if (e->type == GRAM_CHAR) {
                if (e->value < 0x80) m[e->value >> 6] = 1ull << (e->value & 63);
            } else {
                memcpy(m, g->prog.classes[e->value].ascii, sizeof m);
            }
            bool in = (m[b >> 6] >> (b & 63)) & 1;
            same[0] &= in ? m[0] : ~m[0];
            same[1] &= in ? m[1] : ~m[1];
        }
        s += d + 1;
    }
    int32_t *t = &g->trans[(size_t)sid * 256];
    for (int w = 0; w < 2; w++)
        for (uint64_t bits = same[w]; bits; bits &= bits - 1) {
            int c = w * 64 + __builtin_ctzll(bits);
            if (t[c] == T_UNKNOWN) t[c] = to;
        }
}

/* The memo's miss path, kept out of line so that the hit path inlines into the trie walk. */
static __attribute__((noinline)) int32_t step_miss(slm_grammar *g, int32_t sid, uint8_t b) {
    uint32_t n = compute_step(g, &g->arena[g->st_off[sid]], b, g->step_out);
    int32_t ns = n == 0 ? T_DEAD : intern(g, g->step_out, n);
    if (ns == T_FULL) return T_FULL;
    g->trans[(size_t)sid * 256 + b] = ns;
    share_ascii(g, sid, b, ns);
    return ns;
}

static inline int32_t step(slm_grammar *g, int32_t sid, uint8_t b) {
    int32_t t = g->trans[(size_t)sid * 256 + b];
    return t != T_UNKNOWN ? t : step_miss(g, sid, b);
}

/* Runs bytes from the current state; the resulting state id, or T_DEAD. When the memo fills up
 * part-way, the state reached so far is carried over a flush, so a long text (slm_grammar_matches
 * on a whole output) may pass through any number of states. */
/* GRAM_FLAG_* of byte b run from state sid: the marks of the terminals that consume it. */
static uint8_t open_flag(const slm_grammar *g, int32_t sid, uint8_t b) {
    if (b != '[' && b != '{') return 0;
    const uint32_t *st = &g->arena[g->st_off[sid]];
    if (st[1] != 0) return 0;
    uint8_t f = 0;
    const uint32_t *s = st + HDR_WORDS;
    for (uint32_t i = 0; i < st[3]; i++) {
        uint32_t d = s[0];
        if (d > 0) {
            const gram_elem *e = &g->prog.elems[s[d]];
            if (e->type == GRAM_CHAR && e->value == b) f |= g->prog.open_flags[s[d]];
        }
        s += d + 1;
    }
    return f;
}

static int32_t run_bytes_flags(slm_grammar *g, const char *s, size_t n, uint8_t *flags) {
    int32_t sid = g->cur_sid;
    for (size_t i = 0; i < n; i++) {
        if (flags) flags[i] = open_flag(g, sid, (uint8_t)s[i]);
        int32_t next = step(g, sid, (uint8_t)s[i]);
        if (next == T_FULL) {
            uint32_t len = g->st_len[sid];
            memcpy(g->carry, &g->arena[g->st_off[sid]], len * sizeof *g->carry);
            flush(g);
            sid = intern(g, g->carry, len); /* an empty table holds the current state and this one */
            if (sid < 0) return T_DEAD;
            next = step(g, sid, (uint8_t)s[i]);
            if (next == T_FULL) return T_DEAD;
        }
        if (next < 0) return next;
        sid = next;
    }
    return sid;
}

static int32_t run_bytes(slm_grammar *g, const char *s, size_t n) { return run_bytes_flags(g, s, n, NULL); }

#define LOOKAHEAD_BYTES 48
#define LOOKAHEAD_BUDGET 64 /* byte checks per look-ahead: bounds the cost of one token's test */

/* The bytes in path[0, len) (from the current state) pass the grammar and the checks but leave an
 * item or key that is a prefix of an earlier one: is there a way to finish it as a new value?
 * Depth-first over the bytes the grammar allows, delimiters first; an exhausted budget answers yes
 * (the check at completion still refuses a duplicate, so this only risks a later dead end). */
static bool can_finish_distinct(slm_grammar *g, char *path, size_t len, uint8_t *flags, int *budget) {
    static const uint8_t first[] = {'"', ']', '}', ','};
    if (len >= LOOKAHEAD_BYTES || *budget <= 0) return true;
    int32_t sid = run_bytes(g, path, len);
    if (sid < 0) return false;
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < (pass ? 256 : 4); k++) {
            uint8_t b = pass ? (uint8_t)k : first[k];
            if (pass && (b == '"' || b == ']' || b == '}' || b == ',')) continue;
            int32_t next = step(g, sid, b);
            if (next < 0) continue;
            path[len] = (char)b;
            if (--*budget < 0) return true;
            if (run_bytes_flags(g, path, len + 1, flags) < 0) continue;
            bool risk;
            if (!gram_json_check_ex(g->json, path, len + 1, flags, &risk)) continue;
            if (!risk || can_finish_distinct(g, path, len + 1, flags, budget)) return true;
            if (*budget < 0) return true;
            sid = run_bytes(g, path, len); /* the memo may have been flushed */
            if (sid < 0) return false;
        }
    return false;
}

/* The grammar and the semantic checks both allow the bytes: the state they lead to, or T_DEAD.
 * With `take`, the checks take the bytes in (the caller then moves the grammar there). Without it,
 * bytes that would leave only duplicates to finish with are refused too. */
static int32_t run_checked(slm_grammar *g, const char *s, size_t n, bool take) {
    if (!g->json || gram_json_idle_for(g->json, s, n)) {
        int32_t sid = run_bytes(g, s, n);
        if (sid >= 0 && take && g->json) gram_json_accept(g->json, s, n, NULL);
        return sid;
    }
    uint8_t local[LOOKAHEAD_BYTES + 256], *flags = n + LOOKAHEAD_BYTES <= sizeof local ? local : malloc(n + LOOKAHEAD_BYTES);
    if (!flags) return T_DEAD;
    int32_t sid = run_bytes_flags(g, s, n, flags);
    bool risk = false;
    if (sid >= 0 && !(take ? gram_json_accept(g->json, s, n, flags) : gram_json_check_ex(g->json, s, n, flags, &risk)))
        sid = T_DEAD;
    if (sid >= 0 && risk) {
        char *path = malloc(n + LOOKAHEAD_BYTES + 1);
        uint8_t *pflags = malloc(n + LOOKAHEAD_BYTES + 1);
        int budget = LOOKAHEAD_BUDGET;
        if (path && pflags) {
            memcpy(path, s, n);
            if (!can_finish_distinct(g, path, n, pflags, &budget)) sid = T_DEAD;
            else sid = run_bytes(g, s, n);
        }
        free(path);
        free(pflags);
    }
    if (flags != local) free(flags);
    return sid;
}

/* Does the semantic check refuse this (grammar-allowed, non-EOG) token? `risky`: the current item
 * or key is a prefix of an earlier one, so any token may lead to a duplicate. */
static bool token_refused(slm_grammar *g, slm_token t, bool risky) {
    uint8_t cls = g->tok_class[t];
    if (!risky && (!(cls & 2) || (!(cls & 1) && !gram_json_active(g->json)))) return false;
    uint32_t len = g->piece_off[t + 1] - g->piece_off[t];
    return run_checked(g, g->pieces + g->piece_off[t], len, false) < 0;
}

static void set_current(slm_grammar *g, int32_t sid) {
    g->cur_len = g->st_len[sid];
    memcpy(g->cur_words, &g->arena[g->st_off[sid]], g->cur_len * sizeof *g->cur_words);
    g->cur_sid = sid;
}

/* ---------- public hooks ---------- */

void slm_grammar_reset(slm_grammar *g) {
    if (!g) return;
    memcpy(g->cur_words, g->root_words, g->root_len * sizeof *g->root_words);
    g->cur_len = g->root_len;
    g->cur_sid = intern(g, g->cur_words, g->cur_len);
    if (g->cur_sid < 0) flush(g);
    gram_json_reset(g->json);
}

bool slm_grammar_is_done(const slm_grammar *g) { return g && state_done(g->cur_words); }

void slm_grammar_set_open_ended(slm_grammar *g, bool on) {
    if (g) g->open_ended = on;
}

bool slm_grammar_is_finished(const slm_grammar *g) {
    if (!g) return false;
    return g->open_ended ? state_final(g->cur_words) : state_done(g->cur_words);
}

bool slm_grammar_accept_bytes(slm_grammar *g, const char *s, size_t n) {
    int32_t sid = run_checked(g, s, n, true);
    if (sid < 0) return false;
    set_current(g, sid);
    return true;
}

bool slm_grammar_bytes_allowed(const slm_grammar *cg, const char *s, size_t n) {
    return run_checked((slm_grammar *)cg, s, n, false) >= 0;
}

bool slm_grammar_matches(slm_grammar *g, const char *s, size_t n) {
    slm_grammar_reset(g);
    bool ok = slm_grammar_accept_bytes(g, s, n) && slm_grammar_is_done(g);
    slm_grammar_reset(g);
    return ok;
}

bool slm_grammar_allows(const slm_grammar *cg, slm_token token) {
    slm_grammar *g = (slm_grammar *)cg; /* the memo tables are a cache: logically const */
    if (!g || token < 0 || token >= g->n_vocab) return false;
    if (g->is_eog[token]) return state_done(g->cur_words);
    uint32_t len = g->piece_off[token + 1] - g->piece_off[token];
    if (len == 0) return false;
    return run_checked(g, g->pieces + g->piece_off[token], len, false) >= 0;
}

void slm_grammar_accept(slm_grammar *g, slm_token token) {
    if (!g || token < 0 || token >= g->n_vocab || g->is_eog[token]) return;
    uint32_t len = g->piece_off[token + 1] - g->piece_off[token];
    int32_t sid = run_checked(g, g->pieces + g->piece_off[token], len, true);
    if (sid >= 0) set_current(g, sid);
}

/* Fills walk_bits with every token the current state allows. */
static void walk_trie(slm_grammar *g) {
    bool restarted = false;
restart:
    memset(g->walk_bits, 0, g->bits_words * sizeof *g->walk_bits);
    g->levels[0] = g->cur_sid;
    for (uint32_t i = 0; i < g->n_nodes;) {
        const trie_node *nd = &g->nodes[i];
        int32_t s = step(g, g->levels[nd->depth - 1], nd->byte);
        if (s == T_FULL) {
            if (!restarted) {
                flush(g);
                restarted = true;
                goto restart;
            }
            s = T_DEAD; /* one token's worth of states exceeds the table: drop (never unsound) */
        }
        if (s < 0) {
            i = nd->subtree_end;
            continue;
        }
        g->levels[nd->depth] = s;
        for (uint32_t k = nd->tok_begin; k < nd->tok_end; k++) {
            slm_token t = g->node_tokens[k];
            g->walk_bits[t >> 6] |= 1ull << (t & 63);
        }
        i++;
    }
    if (state_done(g->cur_words))
        for (int k = 0; k < g->n_eog; k++) g->walk_bits[g->eog_tokens[k] >> 6] |= 1ull << (g->eog_tokens[k] & 63);
}

static const uint64_t *current_mask(slm_grammar *g) {
    if (g->n_states > MAX_STATES * 3 / 4 || g->arena_used > ARENA_WORDS * 3 / 4) flush(g);
    int32_t slot = g->st_mask[g->cur_sid];
    if (slot >= 0 && g->mask_owner[slot] == g->cur_sid) return &g->mask_bits[(size_t)slot * g->bits_words];
    walk_trie(g);
    slot = (int32_t)(g->mask_next++ % MASK_SLOTS);
    if (g->mask_owner[slot] >= 0 && (uint32_t)g->mask_owner[slot] < g->n_states) g->st_mask[g->mask_owner[slot]] = -1;
    g->mask_owner[slot] = g->cur_sid;
    g->st_mask[g->cur_sid] = slot;
    uint64_t *bits = &g->mask_bits[(size_t)slot * g->bits_words];
    memcpy(bits, g->walk_bits, g->bits_words * sizeof *bits);
    return bits;
}

void slm_grammar_mask(const slm_grammar *cg, float *logits, int n_vocab) {
    slm_grammar *g = (slm_grammar *)cg;
    if (!g) return;
    const uint64_t *bits = current_mask(g);
    int n = n_vocab < g->n_vocab ? n_vocab : g->n_vocab;
    for (int w = 0; w * 64 < n; w++) {
        uint64_t m = bits[w];
        if (m == ~0ull && (w + 1) * 64 <= n) continue;
        int end = (w + 1) * 64 < n ? (w + 1) * 64 : n;
        for (int t = w * 64; t < end; t++)
            if (!((m >> (t & 63)) & 1)) logits[t] = -INFINITY;
    }
    for (int t = n; t < n_vocab; t++) logits[t] = -INFINITY;
    if (!g->json) return;
    /* the semantic checks, on the few allowed tokens that could complete a checked value (all of
     * them while the value being written could still become a duplicate) */
    bool risky = gram_json_at_risk(g->json);
    for (int t = 0; t < n; t++)
        if (!isinf(logits[t]) && !g->is_eog[t] && token_refused(g, t, risky)) logits[t] = -INFINITY;
}

int slm_grammar_count_allowed(const slm_grammar *cg) {
    slm_grammar *g = (slm_grammar *)cg;
    const uint64_t *bits = current_mask(g);
    int n = 0;
    for (uint32_t w = 0; w < g->bits_words; w++) n += __builtin_popcountll(bits[w]);
    if (g->json) {
        uint64_t *copy = malloc(g->bits_words * sizeof *copy); /* checking may evict the cached mask */
        if (!copy) return n;
        memcpy(copy, bits, g->bits_words * sizeof *copy);
        bool risky = gram_json_at_risk(g->json);
        for (int t = 0; t < g->n_vocab; t++)
            if (((copy[t >> 6] >> (t & 63)) & 1) && !g->is_eog[t] && token_refused(g, t, risky)) n--;
        free(copy);
    }
    return n;
}

/* ---------- construction ---------- */

typedef struct piece_ref {
    const char *p;
    uint32_t len;
    slm_token tok;
} piece_ref;

static int cmp_piece(const void *a, const void *b) {
    const piece_ref *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->tok < y->tok ? -1 : x->tok > y->tok;
}

static int build_vocab(slm_grammar *g, int n_vocab, slm_grammar_piece_fn piece, slm_grammar_eog_fn is_eog, void *user,
                       gram_guard *guard, char *err, size_t err_len) {
    g->n_vocab = n_vocab;
    g->piece_off = malloc(((size_t)n_vocab + 1) * sizeof *g->piece_off);
    g->is_eog = calloc((size_t)n_vocab + 1, 1);
    if (!g->piece_off || !g->is_eog) return slm_err(err, err_len, "grammar: out of memory");
    size_t cap = (size_t)n_vocab * 8 + 64, used = 0;
    g->pieces = malloc(cap);
    if (!g->pieces) return slm_err(err, err_len, "grammar: out of memory");
    char buf[1024];
    for (int t = 0; t < n_vocab; t++) {
        if (!gram_guard_ok(guard)) {
            slm_err(err, err_len, "grammar: %s", gram_guard_message(guard));
            return guard->status;
        }
        g->piece_off[t] = (uint32_t)used;
        if (is_eog(user, t)) {
            g->is_eog[t] = 1;
            g->n_eog++;
            continue;
        }
        int n = piece(user, t, buf, (int)sizeof buf);
        if (n < 0) n = 0; /* a piece longer than 1 KiB is never allowed */
        if (!slm_grow((void **)&g->pieces, &cap, used + (size_t)n, 1, 64))
            return slm_err(err, err_len, "grammar: out of memory");
        memcpy(g->pieces + used, buf, (size_t)n);
        used += (size_t)n;
        if ((uint32_t)n > g->max_piece) g->max_piece = (uint32_t)n;
    }
    g->piece_off[n_vocab] = (uint32_t)used;
    g->eog_tokens = malloc(((size_t)g->n_eog + 1) * sizeof *g->eog_tokens);
    piece_ref *refs = malloc(((size_t)n_vocab + 1) * sizeof *refs);
    if (!g->eog_tokens || !refs) {
        free(refs);
        return slm_err(err, err_len, "grammar: out of memory");
    }
    int n_refs = 0, k = 0;
    for (int t = 0; t < n_vocab; t++) {
        if (g->is_eog[t]) {
            g->eog_tokens[k++] = t;
            continue;
        }
        uint32_t len = g->piece_off[t + 1] - g->piece_off[t];
        if (len) refs[n_refs++] = (piece_ref){g->pieces + g->piece_off[t], len, t};
    }
    qsort(refs, (size_t)n_refs, sizeof *refs, cmp_piece);
    size_t total = 0;
    for (int i = 0; i < n_refs; i++) total += refs[i].len;
    /* the trie has at most one node per piece byte */
    g->nodes = malloc((total + 1) * sizeof *g->nodes);
    g->node_tokens = malloc(((size_t)n_refs + 1) * sizeof *g->node_tokens);
    g->levels = malloc(((size_t)g->max_piece + 2) * sizeof *g->levels);
    uint32_t *open = malloc(((size_t)g->max_piece + 2) * sizeof *open);
    if (!g->nodes || !g->node_tokens || !g->levels || !open) {
        free(refs);
        free(open);
        return slm_err(err, err_len, "grammar: out of memory");
    }
    uint32_t n_nodes = 0, depth = 0;
    const piece_ref *prev = NULL;
    for (int i = 0; i < n_refs; i++) {
        const piece_ref *r = &refs[i];
        uint32_t lcp = 0;
        if (prev)
            while (lcp < prev->len && lcp < r->len && prev->p[lcp] == r->p[lcp]) lcp++;
        while (depth > lcp) g->nodes[open[depth--]].subtree_end = n_nodes;
        while (depth < r->len) {
            depth++;
            trie_node *nd = &g->nodes[n_nodes];
            nd->depth = (uint16_t)depth;
            nd->byte = (uint8_t)r->p[depth - 1];
            nd->tok_begin = nd->tok_end = (uint32_t)i;
            open[depth] = n_nodes++;
        }
        g->node_tokens[i] = r->tok;
        g->nodes[open[depth]].tok_end = (uint32_t)i + 1;
        prev = r;
    }
    while (depth > 0) g->nodes[open[depth--]].subtree_end = n_nodes;
    g->n_nodes = n_nodes;
    free(open);
    free(refs);
    return 0;
}

static bool no_eog(void *user, slm_token t) {
    (void)user;
    (void)t;
    return false;
}

static int no_piece(void *user, slm_token t, char *buf, int cap) {
    (void)user;
    (void)t;
    (void)buf;
    (void)cap;
    return 0;
}

int gram_grammar_new(gram_program *prog, gram_guard *guard, int n_vocab, slm_grammar_piece_fn piece,
                     slm_grammar_eog_fn is_eog, void *user, slm_grammar **out, char *err, size_t err_len) {
    *out = NULL;
    slm_grammar *g = calloc(1, sizeof *g);
    if (!g) {
        gram_program_free(prog);
        return slm_err(err, err_len, "grammar: out of memory");
    }
    g->prog = *prog;
    memset(prog, 0, sizeof *prog);
    int rc = build_vocab(g, n_vocab, piece ? piece : no_piece, is_eog ? is_eog : no_eog, user, guard, err, err_len);
    if (rc != 0) {
        slm_grammar_free(g);
        return rc;
    }
    g->bits_words = ((uint32_t)n_vocab + 63) / 64 + 1;
    g->arena = malloc(ARENA_WORDS * sizeof *g->arena);
    g->st_off = malloc(MAX_STATES * sizeof *g->st_off);
    g->st_len = malloc(MAX_STATES * sizeof *g->st_len);
    g->st_mask = malloc(MAX_STATES * sizeof *g->st_mask);
    g->trans = malloc((size_t)MAX_STATES * 256 * sizeof *g->trans);
    g->hash_tab = calloc(HASH_SLOTS, sizeof *g->hash_tab);
    g->mask_bits = malloc((size_t)MASK_SLOTS * g->bits_words * sizeof *g->mask_bits);
    g->walk_bits = malloc(g->bits_words * sizeof *g->walk_bits);
    g->cur_words = malloc(MAX_STATE_WORDS * sizeof *g->cur_words);
    g->root_words = malloc(MAX_STATE_WORDS * sizeof *g->root_words);
    g->step_out = malloc(MAX_STATE_WORDS * sizeof *g->step_out);
    g->carry = malloc(MAX_STATE_WORDS * sizeof *g->carry);
    g->work = malloc(WORK_WORDS * sizeof *g->work);
    g->emit = malloc(MAX_STATE_WORDS * sizeof *g->emit);
    g->seen = malloc(SEEN_WORDS * sizeof *g->seen);
    if (!g->seen || !g->arena || !g->st_off || !g->st_len || !g->st_mask || !g->trans || !g->hash_tab || !g->mask_bits ||
        !g->walk_bits || !g->cur_words || !g->root_words || !g->step_out || !g->carry || !g->work || !g->emit) {
        slm_grammar_free(g);
        return slm_err(err, err_len, "grammar: out of memory");
    }
    for (int i = 0; i < MASK_SLOTS; i++) g->mask_owner[i] = -1;
    if (g->prog.open_flags) {
        g->json = gram_json_new();
        g->tok_class = calloc((size_t)n_vocab + 1, 1);
        if (!g->json || !g->tok_class) {
            slm_grammar_free(g);
            return slm_err(err, err_len, "grammar: out of memory");
        }
        for (int t = 0; t < n_vocab; t++)
            for (uint32_t i = g->piece_off[t]; i < g->piece_off[t + 1]; i++) {
                char ch = g->pieces[i];
                if (ch == '[' || ch == '{') g->tok_class[t] |= 1;
                if (ch == '"' || ch == ',' || ch == ']' || ch == '}') g->tok_class[t] |= 2;
            }
    }
    /* the initial state: the root rule expanded */
    emit_reset(g);
    uint32_t budget = EXPAND_BUDGET;
    const gram_program *p = &g->prog;
    for (uint32_t a = p->rule_alt_begin[p->root]; a < p->rule_alt_begin[p->root + 1]; a++) {
        uint32_t start = p->alt_start[a];
        if (p->elems[start].type == GRAM_END) expand(g, &start, 0, &budget);
        else expand(g, &start, 1, &budget);
    }
    if (g->n_emit == 0) {
        slm_grammar_free(g);
        return slm_err(err, err_len, "grammar: the root rule matches nothing");
    }
    g->root_len = emit_finish(g, g->root_words, 0, 0, 0);
    slm_grammar_reset(g);
    *out = g;
    return 0;
}

int slm_grammar_compile_vocab_limited(const char *gbnf, size_t len, const slm_grammar_limits *limits, int n_vocab,
                                      slm_grammar_piece_fn piece, slm_grammar_eog_fn is_eog, void *user,
                                      slm_grammar **out, char *err, size_t err_len) {
    *out = NULL;
    if (!gbnf) return slm_err(err, err_len, "grammar: no grammar text");
    if (n_vocab < 0) return slm_err(err, err_len, "grammar: negative vocabulary size");
    gram_guard guard;
    gram_guard_init(&guard, limits);
    gram_program prog;
    int rc = gram_parse(gbnf, len, &guard, &prog, err, err_len);
    if (rc != 0) return rc;
    return gram_grammar_new(&prog, &guard, n_vocab, piece, is_eog, user, out, err, err_len);
}

int slm_grammar_compile_vocab(const char *gbnf, size_t len, int n_vocab, slm_grammar_piece_fn piece,
                              slm_grammar_eog_fn is_eog, void *user, slm_grammar **out, char *err, size_t err_len) {
    return slm_grammar_compile_vocab_limited(gbnf, len, NULL, n_vocab, piece, is_eog, user, out, err, err_len);
}

void slm_grammar_free(slm_grammar *g) {
    if (!g) return;
    gram_program_free(&g->prog);
    free(g->pieces);
    free(g->piece_off);
    free(g->is_eog);
    free(g->eog_tokens);
    free(g->nodes);
    free(g->node_tokens);
    free(g->levels);
    free(g->arena);
    free(g->st_off);
    free(g->st_len);
    free(g->st_mask);
    free(g->trans);
    free(g->hash_tab);
    free(g->mask_bits);
    free(g->walk_bits);
    free(g->cur_words);
    free(g->root_words);
    free(g->step_out);
    free(g->carry);
    free(g->work);
    free(g->emit);
    free(g->seen);
    gram_json_free(g->json);
    free(g->tok_class);
    free(g);
}

/* ---------- model front door ---------- */

static int model_piece(void *user, slm_token t, char *buf, int cap) {
    return slm_token_to_piece((const slm_model *)user, t, false, buf, cap);
}

static bool model_eog(void *user, slm_token t) { return slm_token_is_eog((const slm_model *)user, t); }

int slm_grammar_compile_limited(const slm_model *model, const char *gbnf, const slm_grammar_limits *limits,
                                slm_grammar **out, char *err, size_t err_len) {
    if (!out) return slm_err(err, err_len, "grammar: no output pointer");
    *out = NULL;
    if (!model) return slm_err(err, err_len, "grammar: no model");
    if (!gbnf) return slm_err(err, err_len, "grammar: no grammar text");
    return slm_grammar_compile_vocab_limited(gbnf, strlen(gbnf), limits, slm_model_n_vocab(model), model_piece,
                                             model_eog, (void *)model, out, err, err_len);
}

int slm_grammar_compile(const slm_model *model, const char *gbnf, slm_grammar **out, char *err, size_t err_len) {
    return slm_grammar_compile_limited(model, gbnf, NULL, out, err, err_len);
}

/* model_piece / model_eog for the JSON Schema front door (json_schema.c). */
int gram_grammar_new_for_model(gram_program *prog, gram_guard *guard, const slm_model *model, slm_grammar **out,
                               char *err, size_t err_len) {
    return gram_grammar_new(prog, guard, slm_model_n_vocab(model), model_piece, model_eog, (void *)model, out, err,
                            err_len);
}
