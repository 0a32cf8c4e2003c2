/* Internals shared by the grammar parser (grammar_parse.c) and the runtime (grammar.c).
 *
 * A compiled grammar is a flat program: every rule is a list of alternatives, every alternative a
 * run of elements ended by GRAM_END. Terminals match one Unicode code point (GRAM_CHAR: exactly
 * `value`; GRAM_CLASS: any code point in class `value`). Groups and repetitions are desugared into
 * generated rules, so the runtime only knows terminals, rule references and ends. */
#ifndef SLM_SAMPLE_GRAMMAR_IMPL_H
#define SLM_SAMPLE_GRAMMAR_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sample/grammar.h"
#include "slm.h"

enum { GRAM_END = 0, GRAM_CHAR = 1, GRAM_CLASS = 2, GRAM_RULE = 3 };

typedef struct gram_elem {
    uint32_t type;
    uint32_t value;
} gram_elem;

typedef struct gram_range {
    uint32_t lo, hi; /* inclusive code points; sorted, disjoint, never covering surrogates */
} gram_range;

typedef struct gram_class {
    uint32_t begin, end; /* slice of gram_program.ranges */
    uint64_t ascii[2];   /* membership bitmap of code points < 128 (the hot case) */
} gram_class;

typedef struct gram_program {
    gram_elem *elems;
    uint32_t n_elems;
    uint32_t *alt_start;      /* element index where each alternative begins */
    uint32_t *rule_alt_begin; /* n_rules + 1 entries: alternatives of rule r are [begin[r], begin[r+1]) */
    uint32_t n_rules;
    uint32_t root;
    gram_range *ranges;
    uint32_t n_ranges;
    gram_class *classes;
    uint32_t n_classes;
    uint8_t *open_flags; /* per element: GRAM_FLAG_* of a marked '[' or '{'; NULL when none is */
} gram_program;

/* Semantic checks beyond a context-free grammar (grammar_json.c): the opening bracket of an
 * alternative of a rule whose name ends in GRAM_SUFFIX_UNIQUE_ITEMS starts a JSON array whose
 * items must differ (uniqueItems); GRAM_SUFFIX_UNIQUE_KEYS, an object whose keys must differ (maps:
 * the grammar alone can repeat a key). Inside such a value every nested object is key-checked too. */
#define GRAM_SUFFIX_UNIQUE_ITEMS "-unique-items"
#define GRAM_SUFFIX_UNIQUE_KEYS "-unique-keys"
enum { GRAM_FLAG_UNIQUE_ITEMS = 1, GRAM_FLAG_UNIQUE_KEYS = 2 };

typedef struct gram_json gram_json;
gram_json *gram_json_new(void);
void gram_json_free(gram_json *j);
void gram_json_reset(gram_json *j);
/* Would the bytes (flags[i]: the GRAM_FLAG_* of byte i when it opens a marked value) keep every
 * check satisfied? Nothing changes. */
bool gram_json_check(gram_json *j, const char *bytes, size_t n, const uint8_t *flags);
/* gram_json_check, then on success takes the bytes in; false (nothing changed) otherwise. */
bool gram_json_accept(gram_json *j, const char *bytes, size_t n, const uint8_t *flags);
/* True when no marked value is open and the bytes contain no bracket: the check is trivially true. */
bool gram_json_idle_for(const gram_json *j, const char *bytes, size_t n);
/* gram_json_check that also tells whether, after the bytes, the item or key being written is a
 * prefix of an earlier sibling (a duplicate may be unavoidable: the caller looks ahead). */
bool gram_json_check_ex(gram_json *j, const char *bytes, size_t n, const uint8_t *flags, bool *risk);
/* at_risk for the current state (no bytes). */
bool gram_json_at_risk(const gram_json *j);
/* True while a marked value is open. */
bool gram_json_active(const gram_json *j);

/* Limits that keep hostile grammars from exhausting memory or time. */
#define GRAM_MAX_ELEMS (4u << 20)
#define GRAM_MAX_REPEAT 100000u
#define GRAM_MAX_NESTING 100
/* Defaults of slm_grammar_limits (0 fields); elements can never exceed GRAM_MAX_ELEMS. */
#define GRAM_DEFAULT_MAX_RULES (1u << 20)
#define GRAM_DEFAULT_MAX_ALTS (2u << 20)

/* The resolved form of slm_grammar_limits, shared by every stage of one compile. Long loops call
 * gram_guard_ok, which polls the cancel callback and the clock every 1024 calls (a few µs apart). */
typedef struct gram_guard {
    uint32_t max_rules, max_alts, max_elems;
    double deadline; /* CLOCK_MONOTONIC seconds, 0 = none */
    bool (*cancel)(void *user);
    void *cancel_user;
    uint32_t tick;
    int status; /* 0 while running; SLM_GRAMMAR_TOO_LARGE (deadline) or SLM_GRAMMAR_CANCELLED once stopped */
} gram_guard;

/* Fills g from l (NULL = defaults), clamping to the hard limits. */
void gram_guard_init(gram_guard *g, const slm_grammar_limits *l);
/* Polls cancel and the deadline now; false (status set) when compiling must stop. */
bool gram_guard_poll(gram_guard *g);
static inline bool gram_guard_ok(gram_guard *g) { return g->status == 0 && ((++g->tick & 1023) || gram_guard_poll(g)); }
/* "compile cancelled" or the deadline message, for a stopped guard. */
const char *gram_guard_message(const gram_guard *g);
/* CLOCK_MONOTONIC in seconds. */
double gram_now(void);

/* Parses GBNF text (docs/grammar.md) into a program and checks it: undefined rules, a missing
 * root, left recursion and rules that derive no finite string are errors. Errors tied to a place in
 * the text read "line L, column C: message". Returns 0, SLM_GRAMMAR_INVALID, SLM_GRAMMAR_TOO_LARGE
 * (a limit of `guard` or its deadline) or SLM_GRAMMAR_CANCELLED; guard NULL = default limits. */
int gram_parse(const char *src, size_t len, gram_guard *guard, gram_program *out, char *err, size_t err_len);
void gram_program_free(gram_program *p);

/* The static checks of grammar_check.c. */
enum { GRAM_CHECK_OOM = -2, GRAM_CHECK_STOPPED = -3 };
/* Least fixpoint of "an alternative whose every element is satisfied": nullable rules
 * (productive = false) or rules that can finish (true); 0 or a GRAM_CHECK_* code. */
int gram_fixpoint(const gram_program *g, bool *flag, bool productive, gram_guard *guard);
/* A rule on a left-recursive cycle, -1 if none, or a GRAM_CHECK_* code. */
long gram_find_left_recursion(const gram_program *g, const bool *nullable, gram_guard *guard);

/* slm_grammar_compile_vocab for an already parsed program (taken over: freed on failure too). */
int gram_grammar_new(gram_program *prog, gram_guard *guard, int n_vocab, slm_grammar_piece_fn piece,
                     slm_grammar_eog_fn is_eog, void *user, slm_grammar **out, char *err, size_t err_len);
/* gram_grammar_new with the model's vocabulary. */
int gram_grammar_new_for_model(gram_program *prog, gram_guard *guard, const slm_model *model, slm_grammar **out,
                               char *err, size_t err_len);

#endif
