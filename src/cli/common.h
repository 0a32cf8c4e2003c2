/* Options shared by the verbs that load a model and run it. */
#ifndef SLM_CLI_COMMON_H
#define SLM_CLI_COMMON_H

#include <stdbool.h>

#include "slm.h"

typedef struct cli_engine_opts {
    const char *model_path;
    int n_threads;  /* 0 = all cores */
    int n_ctx;      /* 0 = model default */
    int n_batch;    /* 0 = default */
    bool exact;     /* f32 reference path */
} cli_engine_opts;

/* Consumes argv[*i] (and its value) if it is -t/--threads, -c/--ctx-size, -b/--batch-size or --exact.
 * Returns 1 if consumed, 0 if not an engine option, -1 on a bad value (message printed). */
int cli_engine_opt(const char *verb, int argc, char **argv, int *i, cli_engine_opts *o);
/* Loads the model and makes a context; prints one error line and returns -1 on failure. */
int cli_engine_open(const char *verb, const cli_engine_opts *o, bool embeddings, slm_model **model, slm_context **ctx);
/* Tokenizes into a malloc'd array; prints one error line and returns -1 on failure. */
int cli_tokenize(const char *verb, const slm_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                 slm_token **out, int *n);
/* Reads a whole file (or stdin for "-") into a malloc'd NUL-terminated buffer. */
char *cli_read_file(const char *verb, const char *path, size_t *len);
/* The same for text used as a C string (schemas, grammars, task inputs): a NUL byte inside is an
 * error, never a silent cut. */
char *cli_read_text(const char *verb, const char *path);
/* With no arguments after the verb or -h/--help first, prints `help` (to stderr for the former),
 * sets *status (1 / 0) and returns true: the verb returns *status. */
bool cli_usage(int argc, char **argv, const char *help, int *status);

#endif
