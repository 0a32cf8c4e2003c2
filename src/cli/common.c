#include "cli/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "util/buf.h"

int cli_engine_opt(const char *verb, int argc, char **argv, int *i, cli_engine_opts *o) {
    const char *a = argv[*i];
    const char *val = *i + 1 < argc ? argv[*i + 1] : NULL;
    long v;
    if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        if (!cli_parse_int(verb, a, val, 1, 256, &v)) return -1;
        o->n_threads = (int)v;
    } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
        if (!cli_parse_int(verb, a, val, 1, 1 << 24, &v)) return -1;
        o->n_ctx = (int)v;
    } else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) {
        if (!cli_parse_int(verb, a, val, 1, 8192, &v)) return -1;
        o->n_batch = (int)v;
    } else if (!strcmp(a, "--exact")) {
        o->exact = true;
        return 1;
    } else {
        return 0;
    }
    (*i)++;
    return 1;
}

int cli_engine_open(const char *verb, const cli_engine_opts *o, bool embeddings, slm_model **model, slm_context **ctx) {
    char err[512];
    *model = NULL;
    *ctx = NULL;
    if (!o->model_path) return cli_fail(verb, "no model given (see 'slm %s --help')", verb), -1;
    if (slm_model_load(o->model_path, NULL, model, err, sizeof err)) return cli_fail(verb, "%s", err), -1;
    slm_context_params cp = slm_context_default_params();
    cp.n_threads = o->n_threads;
    cp.n_ctx = o->n_ctx;
    cp.n_batch = o->n_batch;
    cp.exact = o->exact;
    cp.embeddings = embeddings;
    if (slm_context_new(*model, &cp, ctx, err, sizeof err)) {
        slm_model_free(*model);
        *model = NULL;
        return cli_fail(verb, "%s", err), -1;
    }
    return 0;
}

int cli_tokenize(const char *verb, const slm_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                 slm_token **out, int *n) {
    char err[512];
    int cap = (int)(len < 1000000 ? len : 1000000) + 8;
    for (;;) {
        slm_token *ids = malloc(sizeof(slm_token) * (size_t)cap);
        if (!ids) return cli_fail(verb, "out of memory"), -1;
        err[0] = 0;
        int k = slm_tokenize(m, text, len, add_special, parse_special, ids, cap, err, sizeof err);
        if (k >= 0) {
            *out = ids;
            *n = k;
            return 0;
        }
        free(ids);
        if (err[0]) return cli_fail(verb, "%s", err), -1;
        if (-k <= cap) return cli_fail(verb, "tokenizer failed"), -1;
        cap = -k;
    }
}

char *cli_read_file(const char *verb, const char *path, size_t *len) {
    FILE *fp = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!fp) return cli_fail(verb, "%s: cannot open", path), NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    bool ok = true;
    for (;;) {
        if (!slm_grow((void **)&buf, &cap, n + (1 << 16) + 1, 1, 1 << 16)) {
            cli_fail(verb, "%s: out of memory", path);
            ok = false;
            break;
        }
        n += fread(buf + n, 1, cap - n - 1, fp);
        if (n + 1 < cap) { /* a short read: end of file or an error */
            if (ferror(fp)) {
                cli_fail(verb, "%s: read error", path);
                ok = false;
            }
            break;
        }
    }
    if (fp != stdin) fclose(fp);
    if (!ok) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

char *cli_read_text(const char *verb, const char *path) {
    size_t len;
    char *text = cli_read_file(verb, path, &len);
    if (text && strlen(text) != len) {
        cli_fail(verb, "%s: contains a NUL byte at offset %zu; expected text", strcmp(path, "-") ? path : "stdin",
                 strlen(text));
        free(text);
        return NULL;
    }
    return text;
}

bool cli_usage(int argc, char **argv, const char *help, int *status) {
    if (argc >= 2 && !cli_is_help(argv[1])) return false;
    fputs(help, argc < 2 ? stderr : stdout);
    *status = argc < 2;
    return true;
}
