#include "sampling_opts.h"

#include <string.h>

#include "cli.h"

const char *cli_sampling_help =
    "      --temp T            temperature (default 0.8; 0 = greedy)\n"
    "      --top-k K           keep the K most likely tokens (default 40; 0 = off)\n"
    "      --top-p P           nucleus sampling (default 0.95; 1 = off)\n"
    "      --min-p P           drop tokens below P x the top probability (default 0.05; 0 = off)\n"
    "      --repeat-penalty R  penalise recent tokens (default 1 = off)\n"
    "      --repeat-last-n N   window of the penalties (default 64; -1 = all)\n"
    "      --frequency-penalty F, --presence-penalty P   OpenAI-style penalties (default 0)\n"
    "      --seed S            random seed (same seed, same text; default random)\n";

void cli_sampling_defaults(cli_sampling_opts *o) {
    o->params = slm_sampler_default_params();
    o->params.temperature = 0.8f;
    o->params.top_k = 40;
    o->params.top_p = 0.95f;
    o->params.min_p = 0.05f;
    o->seed_given = false;
}

int cli_sampling_opt(const char *verb, int argc, char **argv, int *i, cli_sampling_opts *o) {
    const char *a = argv[*i], *val = *i + 1 < argc ? argv[*i + 1] : NULL;
    double d;
    long n;
    slm_sampler_params *p = &o->params;
    if (!strcmp(a, "--temp")) {
        if (!cli_parse_float(verb, a, val, &d)) return -1;
        if (d < 0) return cli_fail(verb, "--temp must be >= 0"), -1;
        p->temperature = (float)d;
    } else if (!strcmp(a, "--top-k")) {
        if (!cli_parse_int(verb, a, val, 0, 1 << 24, &n)) return -1;
        p->top_k = (int)n;
    } else if (!strcmp(a, "--top-p")) {
        if (!cli_parse_float(verb, a, val, &d)) return -1;
        if (d <= 0 || d > 1) return cli_fail(verb, "--top-p must be in (0, 1]"), -1;
        p->top_p = (float)d;
    } else if (!strcmp(a, "--min-p")) {
        if (!cli_parse_float(verb, a, val, &d)) return -1;
        if (d < 0 || d > 1) return cli_fail(verb, "--min-p must be in [0, 1]"), -1;
        p->min_p = (float)d;
    } else if (!strcmp(a, "--repeat-penalty")) {
        if (!cli_parse_float(verb, a, val, &d)) return -1;
        if (d <= 0) return cli_fail(verb, "--repeat-penalty must be > 0"), -1;
        p->repeat_penalty = (float)d;
    } else if (!strcmp(a, "--repeat-last-n")) {
        if (!cli_parse_int(verb, a, val, -1, 1 << 24, &n)) return -1;
        p->penalty_last_n = (int)n;
    } else if (!strcmp(a, "--frequency-penalty")) {
        if (!cli_parse_float(verb, a, val, &d)) return -1;
        p->frequency_penalty = (float)d;
    } else if (!strcmp(a, "--presence-penalty")) {
        if (!cli_parse_float(verb, a, val, &d)) return -1;
        p->presence_penalty = (float)d;
    } else if (!strcmp(a, "--seed")) {
        if (!cli_parse_int(verb, a, val, 0, 0x7fffffffffffffffL, &n)) return -1;
        p->seed = (uint64_t)n;
        o->seed_given = true;
    } else {
        return 0;
    }
    (*i)++;
    return 1;
}
