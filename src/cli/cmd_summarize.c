/* slm summarize: text in, summary out; input longer than the context is split (map-reduce). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "task_opts.h"
#include "slm.h"

static const char *summarize_help =
    "usage: slm summarize MODEL [-p TEXT | -f FILE] [options]\n"
    "\n"
    "Writes a summary of the input (from -p, -f FILE or stdin) to stdout. An input longer than the\n"
    "context is split into parts that are summarised and then combined; it is never truncated.\n"
    "\n"
    "      --max-words N       target length (default 100)\n"
    "      --style TEXT        e.g. \"bullet points\", \"one sentence\"\n"
    "  -p, --prompt TEXT       the input text\n"
    "  -f, --file FILE         read the input from FILE ('-' = stdin, the default; at most 16 MiB)\n"
    "  -n, --n-predict N       token cap per generation (default 2 * max-words + 32)\n"
    "      --temp T            temperature (default 0: greedy)\n"
    "  -s, --seed N            seed for temperature > 0\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "  -c, --ctx-size N        context size (default: min(trained, 4096))\n";

typedef struct summarize_job {
    const slm_task_params *tp;
    const char *input, *style;
    int max_words;
    slm_task_result *res;
    char *err;
    size_t err_len;
} summarize_job;

static int run_summarize(slm_engine *e, slm_gate_call *call, void *user) {
    (void)call;
    summarize_job *j = user;
    return slm_task_summarize(e, j->tp, j->input, j->max_words, j->style, j->res, j->err, j->err_len);
}

int cmd_summarize(int argc, char **argv) {
    const char *verb = "summarize";
    int status;
    if (cli_usage(argc, argv, summarize_help, &status)) return status;
    cli_engine_opts eo = {.model_path = argv[1]};
    const char *style = NULL;
    cli_task_input in = {NULL, "-"};
    long max_words = 100;
    slm_task_params tp = {0};
    for (int i = 2; i < argc; i++) {
        int r = cli_engine_opt(verb, argc, argv, &i, &eo);
        if (r == 0) r = cli_task_opt(verb, argc, argv, &i, &in, &tp);
        if (r < 0) return 1;
        if (r > 0) continue;
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--max-words")) {
            if (!cli_parse_int(verb, a, val, 1, 2000, &max_words)) return 1;
            i++;
        } else if (!strcmp(a, "--style") && val) style = val, i++;
        else {
            return cli_fail(verb, "unknown option or missing value '%s' (see 'slm summarize --help')", a);
        }
    }
    char *input = cli_task_read_input(verb, &in);
    status = 1;
    const slm_model *m = NULL;
    slm_engine *engine = NULL;
    slm_gate *gate = NULL;
    slm_task_result res = {0};
    if (!input || cli_engine_start(verb, &eo, &engine, &gate, &m)) goto out;
    char err[1024];
    summarize_job job = {&tp, input, style, (int)max_words, &res, err, sizeof err};
    int rc = slm_gate_run_task(gate, "cli", "summarize", run_summarize, &job, err, sizeof err);
    if (rc) {
        if (rc == SLM_TASK_INCOMPLETE && res.text) fprintf(stdout, "%s\n", res.text);
        cli_fail(verb, "%s", err);
        goto out;
    }
    fprintf(stdout, "%s\n", res.text);
    if (strcmp(res.finish_reason, "stop") != 0)
        fprintf(stderr, "summarize: warning: the summary was cut by the token cap (finish_reason %s)\n", res.finish_reason);
    fprintf(stderr, "summarize: %d part(s), %d generation round(s), %d prompt tokens, %d generated\n", res.n_chunks,
            res.n_rounds, res.n_prompt, res.n_generated);
    status = 0;
out:
    slm_task_result_free(&res);
    free(input);
    slm_gate_free(gate);
    slm_engine_free(engine);
    return status;
}
