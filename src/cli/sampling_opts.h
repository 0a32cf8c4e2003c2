/* Sampling flags shared by run and chat. */
#ifndef SLM_CLI_SAMPLING_OPTS_H
#define SLM_CLI_SAMPLING_OPTS_H

#include <stdbool.h>

#include "slm.h"

typedef struct cli_sampling_opts {
    slm_sampler_params params;
    bool seed_given;
} cli_sampling_opts;

extern const char *cli_sampling_help;

/* llama.cpp's defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05. */
void cli_sampling_defaults(cli_sampling_opts *o);
/* Consumes a sampling flag at argv[*i]: 1 consumed, 0 not a sampling flag, -1 bad value (printed). */
int cli_sampling_opt(const char *verb, int argc, char **argv, int *i, cli_sampling_opts *o);

#endif
