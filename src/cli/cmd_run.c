/* slm run: one prompt in, the generated text streamed to stdout (diagnostics to stderr). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "common.h"
#include "sampling_opts.h"
#include "slm.h"
#include "slm_buf.h"

static const char *run_help =
    "usage: slm run MODEL -p TEXT [options]\n"
    "\n"
    "Generates a continuation of TEXT and streams only the generated text to stdout.\n"
    "\n"
    "  -p, --prompt TEXT       the prompt, raw: no chat template; BOS as the model asks; special-token texts\n"
    "                          such as <|im_start|> stay text unless --special\n"
    "  -f, --file FILE         read the prompt from FILE ('-' = stdin); a file too large to fit the context\n"
    "                          (or over 16 MiB) is refused before it is read\n"
    "  -n, --n-predict N       tokens to generate (default: until end of generation or the context is full)\n"
    "      --stop TEXT         stop before this text (repeatable)\n"
    "      --ignore-eos        keep generating past end-of-generation tokens\n"
    "      --special           parse special-token texts in the prompt into control tokens (the explicit\n"
    "                          opt-in for a hand-written template; never for untrusted text)\n"
    "      --json-schema FILE  constrain the output to JSON matching the schema (file of at most 4 MiB)\n"
    "      --grammar FILE      constrain the output with a GBNF grammar (docs/grammar.md; at most 4 MiB)\n"
    "%s"
    "  -t, --threads N         threads (default: all cores)\n"
    "  -c, --ctx-size N        context size (default: min(trained, 4096))\n"
    "      --exact             f32 reference path (slow; for checking)\n" CLI_LORA_HELP;

/* Streams to stdout, or, for schema-constrained output, keeps everything until it is validated. */
typedef struct output_sink {
    bool hold;
    slm_buf held;
} output_sink;

static bool write_output(void *user, const char *text, size_t len) {
    output_sink *s = user;
    if (s->hold) return slm_buf_append(&s->held, text, len);
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

int cmd_run(int argc, char **argv) {
    const char *verb = "run";
    if (argc < 2 || cli_is_help(argv[1])) {
        fprintf(argc < 2 ? stderr : stdout, run_help, cli_sampling_help);
        return argc < 2;
    }
    cli_engine_opts eo = {.model_path = argv[1]};
    cli_sampling_opts so;
    cli_sampling_defaults(&so);
    const char *prompt = NULL, *prompt_file = NULL, *schema_file = NULL, *grammar_file = NULL;
    long n_predict = -1;
    bool ignore_eos = false, parse_special = false;
    const char **stops = calloc((size_t)argc, sizeof *stops);
    int n_stop = 0;
    int status = 1;
    slm_model *m = NULL;
    slm_context *ctx = NULL;
    slm_sampler *smp = NULL;
    slm_grammar *grammar = NULL;
    slm_token *ids = NULL;
    char *prompt_buf = NULL, *constraint_text = NULL;
    if (!stops) return cli_fail(verb, "out of memory");
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int r = cli_engine_opt(verb, argc, argv, &i, &eo);
        if (r < 0) goto out;
        if (r > 0) continue;
        r = cli_sampling_opt(verb, argc, argv, &i, &so);
        if (r < 0) goto out;
        if (r > 0) continue;
        if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!val) { cli_fail(verb, "%s needs a value", a); goto out; }
            prompt = val;
            i++;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!val) { cli_fail(verb, "%s needs a value", a); goto out; }
            prompt_file = val;
            i++;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            if (!cli_parse_int(verb, a, val, -1, 1 << 24, &n_predict)) goto out;
            if (n_predict == 0) {
                cli_fail(verb, "-n 0 would generate nothing: give -1 (until the end) or a positive count");
                goto out;
            }
            i++;
        } else if (!strcmp(a, "--stop")) {
            if (!val || !*val) { cli_fail(verb, "--stop needs a non-empty value"); goto out; }
            stops[n_stop++] = val;
            i++;
        } else if (!strcmp(a, "--json-schema") || !strcmp(a, "--grammar")) {
            if (!val) { cli_fail(verb, "%s needs a file", a); goto out; }
            if (schema_file || grammar_file) { cli_fail(verb, "give only one of --json-schema and --grammar"); goto out; }
            if (!strcmp(a, "--grammar")) grammar_file = val;
            else schema_file = val;
            i++;
        } else if (!strcmp(a, "--ignore-eos")) {
            ignore_eos = true;
        } else if (!strcmp(a, "--special")) {
            parse_special = true;
        } else if (cli_is_help(a)) {
            printf(run_help, cli_sampling_help);
            status = 0;
            goto out;
        } else {
            cli_fail(verb, "unknown option '%s' (see 'slm run --help')", a);
            goto out;
        }
    }
    if (!prompt && !prompt_file) { cli_fail(verb, "no prompt: give -p TEXT or -f FILE"); goto out; }
    if (prompt && prompt_file) { cli_fail(verb, "give only one of -p and -f"); goto out; }
    size_t prompt_len = 0;
    if (cli_engine_open(verb, &eo, false, &m, &ctx)) goto out;
    if (prompt_file) {
        /* refuse a file that cannot fit the context before reading or tokenizing it */
        int n_ctx = slm_context_n_ctx(ctx);
        size_t fit = slm_tokenize_max_bytes(m, parse_special, n_ctx);
        char why[160], limit[32];
        if (fit < CLI_MAX_TEXT_BYTES)
            snprintf(why, sizeof why, "%zu bytes, the most that can fit the %d-token context with this vocabulary",
                     fit, n_ctx);
        else
            snprintf(why, sizeof why, "the %s limit for a prompt file",
                     cli_format_bytes(CLI_MAX_TEXT_BYTES, limit, sizeof limit));
        if (!(prompt_buf = cli_read_file(verb, prompt_file, fit < CLI_MAX_TEXT_BYTES ? fit : CLI_MAX_TEXT_BYTES, why,
                                         &prompt_len)))
            goto out;
        prompt = prompt_buf;
    } else {
        prompt_len = strlen(prompt);
    }
    int n_ids;
    if (cli_tokenize(verb, m, prompt, prompt_len, true, parse_special, &ids, &n_ids)) goto out;
    if (n_ids == 0) { cli_fail(verb, "the prompt has no tokens"); goto out; }
    char err[512];
    if (!so.seed_given) so.params.seed = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 20);
    if (slm_sampler_new(m, &so.params, &smp, err, sizeof err)) { cli_fail(verb, "%s", err); goto out; }
    if (schema_file || grammar_file) {
        if (!(constraint_text = cli_read_text(verb, schema_file ? schema_file : grammar_file, CLI_MAX_CONSTRAINT_BYTES,
                                              schema_file ? "the 4 MiB limit for a JSON Schema"
                                                          : "the 4 MiB limit for a grammar")))
            goto out;
        int rc = schema_file ? slm_grammar_from_json_schema(m, constraint_text, &grammar, err, sizeof err)
                             : slm_grammar_compile(m, constraint_text, &grammar, err, sizeof err);
        if (rc) { cli_fail(verb, "%s: %s", schema_file ? schema_file : grammar_file, err); goto out; }
        slm_sampler_set_grammar(smp, grammar);
    }
    slm_generate_params gp = {.max_tokens = (int)n_predict, .ignore_eos = ignore_eos, .stop = stops, .n_stop = n_stop};
    output_sink sink = {.hold = schema_file != NULL};
    slm_generate_result res;
    int grc = slm_generate(ctx, smp, ids, n_ids, &gp, write_output, &sink, &res, err, sizeof err);
    if (grc || sink.held.oom) {
        slm_buf_free(&sink.held);
        cli_fail(verb, "%s", grc ? err : "out of memory");
        goto out;
    }
    if (grammar && !slm_sampler_grammar_done(smp)) {
        slm_buf_free(&sink.held);
        cli_fail(verb, "output incomplete: generation ended (%s) before the grammar was satisfied", res.finish_reason);
        goto out;
    }
    if (schema_file) {
        const slm_buf *out = &sink.held;
        int bad = slm_json_validate(constraint_text, out->s ? out->s : "", out->len, err, sizeof err);
        if (!bad) fwrite(out->s ? out->s : "", 1, out->len, stdout);
        slm_buf_free(&sink.held);
        if (bad) {
            cli_fail(verb, "output does not validate against %s: %s", schema_file, err);
            goto out;
        }
    }
    fprintf(stderr, "\n[%s] prompt %d tokens %.1f ms (%.1f tok/s), generated %d tokens %.1f ms (%.1f tok/s), finish: %s%s\n",
            slm_model_desc(m), res.n_prompt, res.prompt_ms,
            res.prompt_ms > 0 ? (res.n_prompt - res.n_prompt_cached) * 1e3 / res.prompt_ms : 0.0, res.n_generated,
            res.gen_ms, res.gen_ms > 0 ? res.n_generated * 1e3 / res.gen_ms : 0.0, res.finish_reason,
            so.seed_given || so.params.temperature <= 0 ? "" : " (random seed)");
    status = 0;
out:
    free(stops);
    free(ids);
    free(prompt_buf);
    free(constraint_text);
    slm_sampler_free(smp);
    slm_grammar_free(grammar);
    slm_context_free(ctx);
    slm_model_free(m);
    return status;
}
