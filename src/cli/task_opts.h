/* Flags shared by the task verbs (extract, summarize): where the input comes from and how to sample. */
#ifndef SLM_CLI_TASK_OPTS_H
#define SLM_CLI_TASK_OPTS_H

#include "slm_engine.h"

typedef struct cli_task_input {
    const char *text; /* -p TEXT, or NULL */
    const char *file; /* -f FILE, default "-" (stdin) */
} cli_task_input;

/* Consumes -p/-f/-n/--temp/--seed at argv[*i]: 1 consumed, 0 not one of them, -1 bad value (printed). */
int cli_task_opt(const char *verb, int argc, char **argv, int *i, cli_task_input *in, slm_task_params *tp);
/* The input text, malloc'd (NULL with a message printed on failure). */
char *cli_task_read_input(const char *verb, const cli_task_input *in);

#endif
