#include "task_opts.h"

#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"

int cli_task_opt(const char *verb, int argc, char **argv, int *i, cli_task_input *in, slm_task_params *tp) {
    const char *a = argv[*i], *val = *i + 1 < argc ? argv[*i + 1] : NULL;
    long v;
    double d;
    if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && val) {
        in->text = val;
    } else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && val) {
        in->file = val;
    } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
        if (!cli_parse_int(verb, a, val, 1, 1 << 20, &v)) return -1;
        tp->max_tokens = (int)v;
    } else if (!strcmp(a, "--temp")) {
        if (!cli_parse_float(verb, a, val, &d)) return -1;
        if (d < 0 || d > 100) return cli_fail(verb, "--temp must be in [0, 100]"), -1;
        tp->temperature = (float)d;
    } else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) {
        if (!cli_parse_int(verb, a, val, 0, 0x7fffffffL, &v)) return -1;
        tp->seed = (uint64_t)v;
    } else {
        return 0;
    }
    (*i)++;
    return 1;
}

char *cli_task_read_input(const char *verb, const cli_task_input *in) {
    if (!in->text)
        return cli_read_text(verb, in->file ? in->file : "-", CLI_MAX_TEXT_BYTES, "the 16 MiB limit for an input text");
    char *copy = strdup(in->text);
    if (!copy) cli_fail(verb, "out of memory");
    return copy;
}
