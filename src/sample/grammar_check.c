/* Static checks on a flattened grammar program, the ones that keep the runtime from looping:
 * which rules can match the empty string (nullable), which can finish at all (productive), and
 * left recursion. Linear in the program size; polled by the compile guard. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sample/grammar_impl.h"

/* The least fixpoint of "rule r has an alternative whose every element is satisfied", where a rule
 * reference is satisfied once its rule is flagged and a terminal only when `productive` (nullable:
 * never). A worklist over the reverse index "rule → alternatives referring to it" keeps this linear
 * in the program size. 0, GRAM_CHECK_OOM or GRAM_CHECK_STOPPED. */
int gram_fixpoint(const gram_program *g, bool *flag, bool productive, gram_guard *guard) {
    uint32_t n_alts = g->rule_alt_begin[g->n_rules];
    uint32_t *need = malloc(((size_t)n_alts + 1) * sizeof *need);
    uint32_t *alt_rule = malloc(((size_t)n_alts + 1) * sizeof *alt_rule);
    uint32_t *occ_begin = calloc((size_t)g->n_rules + 2, sizeof *occ_begin);
    uint32_t *queue = malloc(((size_t)g->n_rules + 1) * sizeof *queue);
    uint32_t *occ = NULL;
    int rc = GRAM_CHECK_OOM;
    if (!need || !alt_rule || !occ_begin || !queue) goto done;
    for (uint32_t r = 0; r < g->n_rules; r++)
        for (uint32_t a = g->rule_alt_begin[r]; a < g->rule_alt_begin[r + 1]; a++) {
            alt_rule[a] = r;
            uint32_t n = 0;
            bool blocked = false; /* a terminal when computing nullable: never satisfied */
            for (const gram_elem *e = &g->elems[g->alt_start[a]]; e->type != GRAM_END; e++) {
                if (e->type == GRAM_RULE) {
                    n++;
                    occ_begin[e->value + 2]++;
                } else if (!productive) {
                    blocked = true;
                }
            }
            need[a] = n + blocked;
        }
    for (uint32_t r = 0; r < g->n_rules; r++) occ_begin[r + 2] += occ_begin[r + 1];
    occ = malloc(((size_t)occ_begin[g->n_rules + 1] + 1) * sizeof *occ);
    if (!occ) goto done;
    /* occ_begin[r + 1] is the fill cursor of rule r; afterwards occ_begin[r] .. occ_begin[r + 1] */
    for (uint32_t a = 0; a < n_alts; a++)
        for (const gram_elem *e = &g->elems[g->alt_start[a]]; e->type != GRAM_END; e++)
            if (e->type == GRAM_RULE) occ[occ_begin[e->value + 1]++] = a;
    uint32_t head = 0, tail = 0;
    for (uint32_t a = 0; a < n_alts; a++)
        if (need[a] == 0 && !flag[alt_rule[a]]) {
            flag[alt_rule[a]] = true;
            queue[tail++] = alt_rule[a];
        }
    while (head < tail) {
        if (!gram_guard_ok(guard)) {
            rc = GRAM_CHECK_STOPPED;
            goto done;
        }
        uint32_t s = queue[head++];
        for (uint32_t i = occ_begin[s]; i < occ_begin[s + 1]; i++) {
            uint32_t a = occ[i];
            if (--need[a] == 0 && !flag[alt_rule[a]]) {
                flag[alt_rule[a]] = true;
                queue[tail++] = alt_rule[a];
            }
        }
    }
    rc = 0;
done:
    free(need);
    free(alt_rule);
    free(occ_begin);
    free(queue);
    free(occ);
    return rc;
}

/* Finds a cycle in the "can start with" graph; returns a rule on it, -1 when there is none, or
 * GRAM_CHECK_OOM / GRAM_CHECK_STOPPED. Iterative DFS so a long chain of rules cannot overflow the C
 * stack. */
long gram_find_left_recursion(const gram_program *g, const bool *nullable, gram_guard *guard) {
    uint8_t *color = calloc(g->n_rules, 1);
    uint32_t *stack_rule = malloc((size_t)g->n_rules * sizeof *stack_rule);
    uint32_t *stack_alt = malloc((size_t)g->n_rules * sizeof *stack_alt);
    uint32_t *stack_elem = malloc((size_t)g->n_rules * sizeof *stack_elem);
    long found = GRAM_CHECK_OOM;
    if (!color || !stack_rule || !stack_alt || !stack_elem) goto done;
    found = -1;
    for (uint32_t start = 0; start < g->n_rules && found < 0; start++) {
        if (color[start]) continue;
        uint32_t sp = 0;
        stack_rule[0] = start;
        stack_alt[0] = g->rule_alt_begin[start];
        stack_elem[0] = g->rule_alt_begin[start] < g->rule_alt_begin[start + 1] ? g->alt_start[stack_alt[0]] : 0;
        color[start] = 1;
        sp = 1;
        while (sp && found < 0) {
            if (!gram_guard_ok(guard)) {
                found = GRAM_CHECK_STOPPED;
                break;
            }
            uint32_t r = stack_rule[sp - 1];
            uint32_t *a = &stack_alt[sp - 1], *e = &stack_elem[sp - 1];
            if (*a >= g->rule_alt_begin[r + 1]) {
                color[r] = 2;
                sp--;
                continue;
            }
            const gram_elem *el = &g->elems[*e];
            if (el->type != GRAM_RULE) { /* alternative done (END or a terminal stops the left edge) */
                (*a)++;
                if (*a < g->rule_alt_begin[r + 1]) *e = g->alt_start[*a];
                continue;
            }
            uint32_t s = el->value;
            /* advance past this element only if it can be empty */
            if (nullable[s]) {
                (*e)++;
            } else {
                (*a)++;
                if (*a < g->rule_alt_begin[r + 1]) *e = g->alt_start[*a];
            }
            if (color[s] == 1) {
                found = s;
            } else if (color[s] == 0) {
                color[s] = 1;
                stack_rule[sp] = s;
                stack_alt[sp] = g->rule_alt_begin[s];
                stack_elem[sp] = g->rule_alt_begin[s] < g->rule_alt_begin[s + 1] ? g->alt_start[stack_alt[sp]] : 0;
                sp++;
            }
        }
    }
done:
    free(color);
    free(stack_rule);
    free(stack_alt);
    free(stack_elem);
    return found;
}
