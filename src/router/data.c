/* Labelled routing data from RouteLLM-style CSV files. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/csv.h"
#include "router/router_impl.h"
#include "slm_router.h"
#include "util/buf.h"
#include "util/err.h"

static int parse_bool(const char *s, bool *out) {
    static const char *const yes[] = {"True", "true", "TRUE", "1"};
    static const char *const no[] = {"False", "false", "FALSE", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(s, yes[i]) == 0) return *out = true, 0;
        if (strcmp(s, no[i]) == 0) return *out = false, 0;
    }
    return -1;
}

static long find_col(const rt_csv *t, const char *name) {
    for (size_t c = 0; c < t->cols; c++)
        if (strcmp(rt_csv_get(t, 0, c), name) == 0) return (long)c;
    return -1;
}

/* A header name quoted for an error line: control bytes escaped, long names cut with "...". */
static void quote_name(const char *name, char *out, size_t cap) {
    size_t o = 0;
    for (size_t i = 0; name[i] && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
        else out[o++] = (char)c;
        if (i >= 60) {
            o += (size_t)snprintf(out + o, cap - o, "...");
            break;
        }
    }
    out[o < cap ? o : cap - 1] = 0;
}

int slm_router_data_load(slm_router_data *d, const char *path, const char *local_col, const char *frontier_col,
                         bool need_answers, char *err, size_t err_len) {
    rt_csv t;
    if (rt_csv_read_file(path, &t, err, err_len)) return -1;
    int rc = -1;
    char q[96];
    long prompt_c = find_col(&t, "prompt");
    if (prompt_c < 0) {
        slm_err(err, err_len, "%s: no 'prompt' column in the header", path);
        goto done;
    }
    long local_c = local_col ? find_col(&t, local_col) : 1;
    long frontier_c = frontier_col ? find_col(&t, frontier_col) : 2;
    if (local_c < 0 || frontier_c < 0) {
        quote_name(local_c < 0 ? local_col : frontier_col, q, sizeof q);
        slm_err(err, err_len, "%s: no column named '%s' in the header", path, q);
        goto done;
    }
    if ((size_t)local_c >= t.cols || (size_t)frontier_c >= t.cols) {
        slm_err(err, err_len, "%s: %zu columns; need prompt, local and frontier correctness columns", path, t.cols);
        goto done;
    }
    if (local_c == frontier_c || local_c == prompt_c || frontier_c == prompt_c) {
        slm_err(err, err_len, "%s: the prompt, local and frontier columns must be three different columns", path);
        goto done;
    }
    long answer_c = -1;
    {
        slm_buf name = {0};
        slm_buf_printf(&name, "%s_response", rt_csv_get(&t, 0, (size_t)local_c));
        if (name.oom) {
            slm_buf_free(&name);
            slm_err(err, err_len, "out of memory");
            goto done;
        }
        answer_c = find_col(&t, name.s);
        slm_buf_free(&name);
    }
    if (need_answers && answer_c < 0) {
        quote_name(rt_csv_get(&t, 0, (size_t)local_c), q, sizeof q);
        slm_err(err, err_len, "%s: a cascade router needs the local model's answers: no '%s_response' column", path, q);
        goto done;
    }
    if (t.rows < 2) {
        slm_err(err, err_len, "%s: no rows after the header", path);
        goto done;
    }
    size_t first = d->n;
    for (size_t r = 1; r < t.rows; r++) {
        bool lok, fok;
        if (parse_bool(rt_csv_get(&t, r, (size_t)local_c), &lok) ||
            parse_bool(rt_csv_get(&t, r, (size_t)frontier_c), &fok)) {
            slm_err(err, err_len, "%s: line %zu: the correctness columns must be True or False", path, t.line[r]);
            goto undo;
        }
        if (!slm_grow((void **)&d->ex, &d->cap, d->n + 1, sizeof *d->ex, 256)) goto oom;
        slm_router_example *e = &d->ex[d->n];
        *e = (slm_router_example){.local_ok = lok, .frontier_ok = fok, .source = d->sources};
        e->prompt = strdup(rt_csv_get(&t, r, (size_t)prompt_c));
        e->local_answer = answer_c >= 0 ? strdup(rt_csv_get(&t, r, (size_t)answer_c)) : NULL;
        d->n++;
        if (!e->prompt || (answer_c >= 0 && !e->local_answer)) goto oom;
    }
    d->sources++;
    rc = 0;
    goto done;
oom:
    slm_err(err, err_len, "%s: out of memory", path);
undo:
    while (d->n > first) {
        d->n--;
        free(d->ex[d->n].prompt);
        free(d->ex[d->n].local_answer);
    }
done:
    rt_csv_free(&t);
    return rc;
}

void slm_router_data_split(slm_router_data *d, int fold, int folds, bool keep_fold) {
    if (folds < 2) return;
    size_t w = 0;
    for (size_t i = 0; i < d->n; i++) {
        const char *p = d->ex[i].prompt;
        bool in_fold = (int)(rt_hash_bytes(p, strlen(p), 0x5f0c1d) % (uint64_t)folds) == fold;
        if (in_fold == keep_fold) {
            d->ex[w++] = d->ex[i];
        } else {
            free(d->ex[i].prompt);
            free(d->ex[i].local_answer);
        }
    }
    d->n = w;
}

void slm_router_data_free(slm_router_data *d) {
    for (size_t i = 0; i < d->n; i++) {
        free(d->ex[i].prompt);
        free(d->ex[i].local_answer);
    }
    free(d->ex);
    *d = (slm_router_data){0};
}
