/* Options shared by the verbs that load a model and run it. */
#ifndef SLM_CLI_COMMON_H
#define SLM_CLI_COMMON_H

#include <stdbool.h>
#include <stdio.h>

#include "slm.h"
#include "slm_engine.h"
#include "slm_gate.h"

typedef struct cli_engine_opts {
    const char *model_path;
    int n_threads;  /* 0 = all cores */
    int n_ctx;      /* 0 = model default */
    int n_batch;    /* 0 = default */
    bool exact;     /* f32 reference path */
    const char *lora[SLM_LORA_MAX]; /* --lora FILE|NAME[:SCALE] (repeatable): adapters applied by cli_engine_open */
    float lora_scale[SLM_LORA_MAX];
    int n_lora;
} cli_engine_opts;

/* The --lora line of the verbs' help. */
#define CLI_LORA_HELP                                                                                              \
    "      --lora FILE[:SCALE]  apply a LoRA adapter (llama.cpp GGUF, or an adapter's name in the store) at SCALE\n" \
    "                           (default 1); repeatable\n"
/* Parses FILE[:SCALE] (a suffix that is not a number belongs to the file name): writes the NUL over
 * the ':' of `arg`. Returns 0, or -1 after one error line. */
int cli_parse_lora(const char *verb, char *arg, const char **path, float *scale);
/* An adapter argument (after cli_parse_lora) as a file path: a path is itself, a name is looked up
 * in the model store. 0, or -1 after printing the error line. */
int cli_resolve_adapter(const char *verb, const char *arg, char *path, size_t cap);

/* Consumes argv[*i] (and its value) if it is -t/--threads, -c/--ctx-size, -b/--batch-size, --exact or --lora.
 * Returns 1 if consumed, 0 if not an engine option, -1 on a bad value (message printed). */
int cli_engine_opt(const char *verb, int argc, char **argv, int *i, cli_engine_opts *o);
/* Loads a model given as a file path or a store name (slm import / pull); one error line and -1 on failure. */
int cli_model_load(const char *verb, const char *arg, const slm_model_params *mp, slm_model **model);
/* Loads the model and makes a context (with o's adapters on sequence 0: they live until exit);
 * prints one error line and returns -1 on failure. */
int cli_engine_open(const char *verb, const cli_engine_opts *o, bool embeddings, slm_model **model, slm_context **ctx);
/* Loads the model into a new engine (which owns it) with one sequence, behind a gate the verb's
 * calls go through; prints one error line and returns -1 on failure. The engine is stepped by
 * whoever waits on it. Free the gate, then the engine. */
int cli_engine_start(const char *verb, const cli_engine_opts *o, slm_engine **engine, slm_gate **gate,
                     const slm_model **model);
/* Tokenizes into a malloc'd array; prints one error line and returns -1 on failure. */
int cli_tokenize(const char *verb, const slm_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                 slm_token **out, int *n);
/* Most bytes a verb reads from one file: a JSON Schema or grammar, and any other text (prompt,
 * task input, perplexity text) when no tighter bound is known. Stated in the verbs' --help. */
#define CLI_MAX_CONSTRAINT_BYTES ((size_t)4 << 20)
#define CLI_MAX_TEXT_BYTES ((size_t)16 << 20)
/* Longest line that chat and classify read from stdin. */
#define CLI_MAX_LINE_BYTES ((size_t)4 << 20)

/* Reads a whole file (or stdin for "-") into a malloc'd NUL-terminated buffer of at most `max`
 * bytes. A larger regular file is refused before reading (its size is known), a pipe or device as
 * soon as more than `max` bytes arrived: one error line naming the file and "why" (the limit, e.g.
 * "the 4 MiB limit for a schema"). */
char *cli_read_file(const char *verb, const char *path, size_t max, const char *why, size_t *len);
/* The same for text used as a C string (schemas, grammars, task inputs): a NUL byte inside is an
 * error, never a silent cut. */
char *cli_read_text(const char *verb, const char *path, size_t max, const char *why);
/* One line of `fp` without its '\n' into *line (malloc'd, grown; NUL-terminated). Returns its
 * length, -1 at the end of the input, -2 after printing one error line (read error, out of memory,
 * or a line longer than `max` bytes, of which nothing more is read). */
long cli_read_line(const char *verb, FILE *fp, size_t max, char **line, size_t *cap);
/* "4 MiB", "512 KiB" or "1234 bytes" into buf. */
const char *cli_format_bytes(size_t n, char *buf, size_t cap);
/* True if `name` is a chat template name slm knows; else prints one error line listing them. */
bool cli_check_chat_template(const char *verb, const char *name);
/* With no arguments after the verb or -h/--help first, prints `help` (to stderr for the former),
 * sets *status (1 / 0) and returns true: the verb returns *status. */
bool cli_usage(int argc, char **argv, const char *help, int *status);

#endif
