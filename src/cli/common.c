#include <limits.h>
#include "common.h"
#include "slm_models.h"
#include "slm_store.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "slm_buf.h"

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
    } else if (!strcmp(a, "--lora")) {
        if (!val) return cli_fail(verb, "--lora needs FILE[:SCALE]"), -1;
        if (o->n_lora >= SLM_LORA_MAX) return cli_fail(verb, "at most %d --lora adapters", SLM_LORA_MAX), -1;
        if (cli_parse_lora(verb, argv[*i + 1], &o->lora[o->n_lora], &o->lora_scale[o->n_lora])) return -1;
        o->n_lora++;
    } else {
        return 0;
    }
    (*i)++;
    return 1;
}

int cli_model_load(const char *verb, const char *arg, const slm_model_params *mp, slm_model **model) {
    char path[PATH_MAX], def[PATH_MAX], err[PATH_MAX + 512];
    const char *dir = slm_data_dir_default(def, sizeof def);
    if (slm_models_resolve(dir, arg, path, sizeof path, err, sizeof err)) return cli_fail(verb, "%s", err), -1;
    if (slm_model_load(path, mp, model, err, sizeof err)) return cli_fail(verb, "%s", err), -1;
    return 0;
}

int cli_parse_lora(const char *verb, char *arg, const char **path, float *scale) {
    *path = arg;
    *scale = 1.0f;
    char *colon = strrchr(arg, ':');
    if (colon && colon[1]) {
        char *end;
        errno = 0;
        float v = strtof(colon + 1, &end);
        if (*end == 0 && errno == 0) {
            if (!isfinite(v)) return cli_fail(verb, "--lora %s: the scale is not a finite number", arg), -1;
            *colon = 0;
            *scale = v;
        }
    }
    if (!**path) return cli_fail(verb, "--lora: no file name"), -1;
    return 0;
}

int cli_resolve_adapter(const char *verb, const char *arg, char *path, size_t cap) {
    char def[PATH_MAX], err[PATH_MAX + 512];
    if (strchr(arg, '/') || access(arg, F_OK) == 0) { /* a path: its own error if it cannot be read */
        snprintf(path, cap, "%s", arg);
        return 0;
    }
    if (slm_models_resolve(slm_data_dir_default(def, sizeof def), arg, path, cap, err, sizeof err))
        return cli_fail(verb, "--lora %s: %s", arg, err), -1;
    return 0;
}

/* The adapters cli_engine_open loaded: the verbs free their model themselves, the adapters go at exit. */
static slm_lora *cli_loras[SLM_LORA_MAX];
static int cli_n_loras;

static void cli_free_loras(void) {
    for (int i = 0; i < cli_n_loras; i++) slm_lora_free(cli_loras[i]);
    cli_n_loras = 0;
}

/* Loads o's adapters for `model` and sets them on sequence 0 of ctx. */
static int cli_apply_loras(const char *verb, const cli_engine_opts *o, slm_model *model, slm_context *ctx) {
    char err[1024];
    slm_lora_use uses[SLM_LORA_MAX];
    static bool registered;
    if (o->n_lora == 0) return 0;
    if (!registered) atexit(cli_free_loras);
    registered = true;
    char path[PATH_MAX];
    for (int i = 0; i < o->n_lora; i++) {
        if (cli_resolve_adapter(verb, o->lora[i], path, sizeof path)) return -1;
        if (slm_lora_load(model, path, &uses[i].lora, err, sizeof err)) return cli_fail(verb, "%s", err), -1;
        cli_loras[cli_n_loras++] = uses[i].lora;
        uses[i].scale = o->lora_scale[i];
    }
    if (slm_context_set_lora(ctx, 0, uses, o->n_lora, err, sizeof err)) return cli_fail(verb, "%s", err), -1;
    return 0;
}

int cli_engine_open(const char *verb, const cli_engine_opts *o, bool embeddings, slm_model **model, slm_context **ctx) {
    char err[512];
    *model = NULL;
    *ctx = NULL;
    if (!o->model_path) return cli_fail(verb, "no model given (see 'slm %s --help')", verb), -1;
    if (cli_model_load(verb, o->model_path, NULL, model)) return -1;
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
    if (cli_apply_loras(verb, o, *model, *ctx)) {
        cli_free_loras();
        slm_context_free(*ctx);
        slm_model_free(*model);
        *ctx = NULL;
        *model = NULL;
        return -1;
    }
    return 0;
}

int cli_engine_start(const char *verb, const cli_engine_opts *o, slm_engine **engine, slm_gate **gate,
                     const slm_model **model) {
    char err[512];
    *engine = NULL;
    *gate = NULL;
    *model = NULL;
    if (!o->model_path) return cli_fail(verb, "no model given (see 'slm %s --help')", verb), -1;
    slm_model *m = NULL;
    if (cli_model_load(verb, o->model_path, NULL, &m)) return -1;
    slm_context_params cp = slm_context_default_params();
    cp.n_ctx = o->n_ctx;
    cp.n_batch = o->n_batch;
    cp.exact = o->exact;
    if (slm_engine_new(&(slm_engine_params){.n_threads = o->n_threads}, engine, err, sizeof err) ||
        slm_engine_add_model(*engine, "model", m, &cp, true, err, sizeof err) ||
        slm_gate_new(*engine, gate, err, sizeof err)) {
        slm_gate_free(*gate);
        *gate = NULL;
        slm_engine_free(*engine);
        *engine = NULL;
        slm_model_free(m);
        return cli_fail(verb, "%s", err), -1;
    }
    *model = m;
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

const char *cli_format_bytes(size_t n, char *buf, size_t cap) {
    if (n >= (1u << 20) && n % (1u << 20) == 0) snprintf(buf, cap, "%zu MiB", n >> 20);
    else if (n >= 1024 && n % 1024 == 0) snprintf(buf, cap, "%zu KiB", n >> 10);
    else snprintf(buf, cap, "%zu bytes", n);
    return buf;
}

char *cli_read_file(const char *verb, const char *path, size_t max, const char *why, size_t *len) {
    bool from_stdin = !strcmp(path, "-");
    const char *name = from_stdin ? "stdin" : path;
    FILE *fp = from_stdin ? stdin : fopen(path, "rb");
    if (!fp) return cli_fail(verb, "%s: cannot open: %s", path, strerror(errno)), NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0, first = (size_t)1 << 16;
    bool ok = false;
    struct stat st;
    if (fstat(fileno(fp), &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            cli_fail(verb, "%s: is a directory, not a file", name);
            goto done;
        }
        /* a regular file says its size: refuse it before reading a byte */
        if (S_ISREG(st.st_mode) && st.st_size > 0) {
            if ((uintmax_t)st.st_size > max) {
                cli_fail(verb, "%s: %jd bytes, more than %s", name, (intmax_t)st.st_size, why);
                goto done;
            }
            first = (size_t)st.st_size + 1; /* one read, and one byte to see the end */
        }
    }
    for (;;) {
        /* never more than max + 1 bytes: the extra byte tells a too-long input */
        size_t want = n + first;
        if (want > max + 1 || want < n) want = max + 1;
        if (!slm_grow((void **)&buf, &cap, want + 1, 1, first + 1)) {
            cli_fail(verb, "%s: out of memory", name);
            goto done;
        }
        size_t room = (cap - 1 < max + 1 ? cap - 1 : max + 1) - n;
        size_t got = fread(buf + n, 1, room, fp);
        n += got;
        if (n > max) {
            cli_fail(verb, "%s: more than %s", name, why);
            goto done;
        }
        if (got < room) { /* a short read: end of file or an error */
            if (ferror(fp)) {
                cli_fail(verb, "%s: read error: %s", name, strerror(errno));
                goto done;
            }
            break;
        }
        first = n; /* doubling */
    }
    ok = true;
done:
    if (fp != stdin) fclose(fp);
    if (!ok) {
        free(buf);
        return NULL;
    }
    if (!buf && !(buf = malloc(1))) return cli_fail(verb, "%s: out of memory", name), NULL;
    buf[n] = 0;
    *len = n;
    return buf;
}

char *cli_read_text(const char *verb, const char *path, size_t max, const char *why) {
    size_t len;
    char *text = cli_read_file(verb, path, max, why, &len);
    if (text && strlen(text) != len) {
        cli_fail(verb, "%s: contains a NUL byte at offset %zu; expected text", strcmp(path, "-") ? path : "stdin",
                 strlen(text));
        free(text);
        return NULL;
    }
    return text;
}

long cli_read_line(const char *verb, FILE *fp, size_t max, char **line, size_t *cap) {
    size_t n = 0;
    int c = EOF;
    flockfile(fp);
    while ((c = getc_unlocked(fp)) != EOF && c != '\n') {
        if (n == max) {
            funlockfile(fp);
            char limit[32];
            return cli_fail(verb, "an input line is longer than %s; stopping", cli_format_bytes(max, limit, sizeof limit)),
                   -2;
        }
        if (n + 2 > *cap && !slm_grow((void **)line, cap, n + 2, 1, 256)) {
            funlockfile(fp);
            return cli_fail(verb, "out of memory for an input line of %zu bytes", n), -2;
        }
        (*line)[n++] = (char)c;
    }
    funlockfile(fp);
    if (c == EOF && ferror(fp)) return cli_fail(verb, "read error on the input: %s", strerror(errno)), -2;
    if (c == EOF && n == 0) return -1;
    if (!*line && !slm_grow((void **)line, cap, 1, 1, 256)) return cli_fail(verb, "out of memory"), -2;
    (*line)[n] = 0;
    return (long)n;
}

bool cli_check_chat_template(const char *verb, const char *name) {
    static const slm_chat_message probe = {"user", "hi"};
    char err[1024], *out = NULL;
    if (slm_chat_render(NULL, name, &probe, 1, true, &out, err, sizeof err) == 0) {
        free(out);
        return true;
    }
    cli_fail(verb, "--chat-template: %s", err);
    return false;
}

bool cli_usage(int argc, char **argv, const char *help, int *status) {
    if (argc >= 2 && !cli_is_help(argv[1])) return false;
    fputs(help, argc < 2 ? stderr : stdout);
    *status = argc < 2;
    return true;
}
