/* slm extract: text in, JSON valid against a schema out (constrained generation + validation). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "task_opts.h"
#include "slm.h"

static const char *extract_help =
    "usage: slm extract MODEL --schema FILE [-p TEXT | -f FILE] [options]\n"
    "\n"
    "Writes one JSON value valid against the JSON Schema (docs/grammar.md) to stdout. The input text\n"
    "comes from -p, -f FILE or stdin. Exit status 1 with one error line if the schema is unsupported,\n"
    "the input does not fit the context, or the output was cut by -n before it was complete.\n"
    "\n"
    "      --schema FILE       JSON Schema, or {\"type\":\"json_object\"} for any object (required; at most 4 MiB)\n"
    "  -p, --prompt TEXT       the input text\n"
    "  -f, --file FILE         read the input text from FILE ('-' = stdin, the default; at most 16 MiB)\n"
    "  -n, --n-predict N       token cap (default 512)\n"
    "      --temp T            temperature (default 0: greedy)\n"
    "  -s, --seed N            seed for temperature > 0\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "  -c, --ctx-size N        context size (default: min(trained, 4096))\n";

typedef struct extract_job {
    const slm_task_params *tp;
    const char *input, *schema;
    slm_task_result *res;
    char *err;
    size_t err_len;
} extract_job;

static int run_extract(slm_engine *e, slm_gate_call *call, void *user) {
    (void)call;
    extract_job *j = user;
    return slm_task_extract(e, j->tp, j->input, j->schema, j->res, j->err, j->err_len);
}

int cmd_extract(int argc, char **argv) {
    const char *verb = "extract";
    int status;
    if (cli_usage(argc, argv, extract_help, &status)) return status;
    cli_engine_opts eo = {.model_path = argv[1]};
    const char *schema_file = NULL;
    cli_task_input in = {NULL, "-"};
    slm_task_params tp = {0};
    for (int i = 2; i < argc; i++) {
        int r = cli_engine_opt(verb, argc, argv, &i, &eo);
        if (r == 0) r = cli_task_opt(verb, argc, argv, &i, &in, &tp);
        if (r < 0) return 1;
        if (r > 0) continue;
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--schema") && val) schema_file = val, i++;
        else {
            return cli_fail(verb, "unknown option or missing value '%s' (see 'slm extract --help')", a);
        }
    }
    if (!schema_file) return cli_fail(verb, "--schema is required");
    char *schema = cli_read_text(verb, schema_file, CLI_MAX_CONSTRAINT_BYTES, "the 4 MiB limit for a JSON Schema");
    if (!schema) return 1;
    char *input = cli_task_read_input(verb, &in);
    status = 1;
    const slm_model *m = NULL;
    slm_engine *engine = NULL;
    slm_gate *gate = NULL;
    slm_task_result res = {0};
    if (!input || cli_engine_start(verb, &eo, &engine, &gate, &m)) goto out;
    char err[1024];
    extract_job job = {&tp, input, schema, &res, err, sizeof err};
    int rc = slm_gate_run_task(gate, "cli", "extract", run_extract, &job, err, sizeof err);
    if (rc) {
        cli_fail(verb, "%s", err);
        goto out;
    }
    fputs(res.text, stdout);
    fputc('\n', stdout);
    fprintf(stderr, "extract: %d prompt tokens, %d generated, valid\n", res.n_prompt, res.n_generated);
    status = 0;
out:
    slm_task_result_free(&res);
    free(schema);
    free(input);
    slm_gate_free(gate);
    slm_engine_free(engine);
    return status;
}
