/* Internals shared by the grammar parser (grammar_parse.c) and the runtime (grammar.c).
 *
 * A compiled grammar is a flat program: every rule is a list of alternatives, every alternative a
 * run of elements ended by GRAM_END. Terminals match one Unicode code point (GRAM_CHAR: exactly
 * `value`; GRAM_CLASS: any code point in class `value`). Groups and repetitions are desugared into
 * generated rules, so the runtime only knows terminals, rule references and ends. */
#ifndef SLM_SAMPLE_GRAMMAR_IMPL_H
#define SLM_SAMPLE_GRAMMAR_IMPL_H

#include <stddef.h>
#include <stdint.h>

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
} gram_program;

/* Parses GBNF text (docs/grammar.md) into a program and checks it: undefined rules, a missing
 * root, left recursion and rules that derive no finite string are errors. Errors tied to a place in
 * the text read "line L, column C: message". */
int gram_parse(const char *src, size_t len, gram_program *out, char *err, size_t err_len);
void gram_program_free(gram_program *p);

/* Limits that keep hostile grammars from exhausting memory or time. */
#define GRAM_MAX_ELEMS (4u << 20)
#define GRAM_MAX_REPEAT 100000u
#define GRAM_MAX_NESTING 100

#endif
