/* slm chat: an interactive conversation rendered with the model's chat template. Each turn
 * re-renders the whole history; the generation loop reuses the cached prefix, so only the new
 * turn is computed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "sampling_opts.h"
#include "slm.h"
#include "slm_buf.h"

static const char *chat_help =
    "usage: slm chat MODEL [--system TEXT] [--chat-template NAME] [-n N] [sampling options]\n"
    "\n"
    "Reads one user message per line from stdin and streams the assistant's reply to stdout.\n"
    "Lines '/reset' (forget the conversation) and '/exit' are commands. Messages are text: special-token\n"
    "texts in them (e.g. <|im_end|>) never become control tokens, only the template's own markers do.\n"
    "A line longer than 4 MiB ends the session with an error.\n"
    "  --chat-template NAME  override the model's template (%s)\n"
    "  -n N                  at most N tokens per reply\n"
    "%s"
    "  -t N, -c N            threads, context size\n" CLI_LORA_HELP;

/* Streams the reply and keeps it for the history. */
static bool on_reply_text(void *user, const char *text, size_t len) {
    if (!slm_buf_append(user, text, len)) return false;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

static void free_history(slm_chat_message *h, size_t n) {
    for (size_t i = 0; i < n; i++) free((char *)h[i].content);
}

int cmd_chat(int argc, char **argv) {
    const char *verb = "chat";
    if (argc < 2 || cli_is_help(argv[1])) {
        fprintf(argc < 2 ? stderr : stdout, chat_help, slm_chat_template_names(), cli_sampling_help);
        return argc < 2;
    }
    cli_engine_opts eo = {.model_path = argv[1]};
    cli_sampling_opts so;
    cli_sampling_defaults(&so);
    const char *system = NULL, *tmpl = NULL;
    long n_predict = -1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int r = cli_engine_opt(verb, argc, argv, &i, &eo);
        if (r < 0) return 1;
        if (r > 0) continue;
        r = cli_sampling_opt(verb, argc, argv, &i, &so);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(a, "--system") && val) system = argv[++i];
        else if (!strcmp(a, "--chat-template") && val) tmpl = argv[++i];
        else if (!strcmp(a, "-n") && val) {
            if (!cli_parse_int(verb, a, val, -1, 1 << 24, &n_predict)) return 1;
            if (n_predict == 0) return cli_fail(verb, "-n 0 would generate nothing: give -1 or a positive count");
            i++;
        } else return cli_fail(verb, "unknown option or missing value '%s' (see 'slm chat --help')", a);
    }
    if (tmpl && !cli_check_chat_template(verb, tmpl)) return 1;
    slm_model *m;
    slm_context *ctx;
    if (cli_engine_open(verb, &eo, false, &m, &ctx)) return 1;
    char err[512];
    slm_sampler *smp = NULL;
    if (!so.seed_given) so.params.seed = (uint64_t)time(NULL);
    if (slm_sampler_new(m, &so.params, &smp, err, sizeof err)) {
        slm_context_free(ctx);
        slm_model_free(m);
        return cli_fail(verb, "%s", err);
    }
    size_t cap = 16, n = 0;
    slm_chat_message *hist = malloc(sizeof *hist * cap);
    char *line = NULL, *rendered = NULL;
    slm_token *ids = NULL;
    size_t line_cap = 0;
    int status = 1;
    bool tty = isatty(0);
    if (!hist) goto out;
    /* Check the template once up front so a model without one fails before the first prompt. */
    slm_chat_message probe = {"user", "hi"};
    if (slm_chat_render(m, tmpl, &probe, 1, true, &rendered, err, sizeof err)) {
        cli_fail(verb, "%s", err);
        goto out;
    }
    free(rendered);
    rendered = NULL;
    if (system && !(hist[n++] = (slm_chat_message){"system", strdup(system)}).content) goto out;
    for (;;) {
        if (tty) fputs("> ", stderr);
        long got = cli_read_line(verb, stdin, CLI_MAX_LINE_BYTES, &line, &line_cap);
        if (got == -2) goto out;
        if (got < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (!strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset")) {
            size_t keep = system ? 1 : 0;
            free_history(hist + keep, n - keep);
            n = keep;
            continue;
        }
        if (got == 0) continue;
        if (strlen(line) != (size_t)got) {
            cli_fail(verb, "the line holds a NUL byte; not sent");
            continue;
        }
        if (!slm_grow((void **)&hist, &cap, n + 2, sizeof *hist, 16) ||
            !(hist[n] = (slm_chat_message){"user", strdup(line)}).content) {
            cli_fail(verb, "out of memory");
            goto out;
        }
        n++;
        /* the template's markers are special tokens, the messages plain text */
        int n_ids;
        if (slm_chat_tokenize(m, tmpl, hist, n, true, true, &ids, &n_ids, NULL, err, sizeof err)) {
            cli_fail(verb, "%s", err);
            goto out;
        }
        slm_buf rep = {0};
        slm_generate_params gp = {.max_tokens = (int)n_predict};
        slm_generate_result res;
        int rc = slm_generate(ctx, smp, ids, n_ids, &gp, on_reply_text, &rep, &res, err, sizeof err);
        free(ids);
        ids = NULL;
        fputc('\n', stdout);
        fflush(stdout);
        if (rc || rep.oom) {
            slm_buf_free(&rep);
            cli_fail(verb, "%s", rc ? err : "out of memory");
            n--; /* drop the turn that did not fit; the conversation goes on */
            free((char *)hist[n].content);
            continue;
        }
        hist[n++] = (slm_chat_message){"assistant", slm_buf_take(&rep)};
        if (!hist[n - 1].content) {
            cli_fail(verb, "out of memory");
            goto out;
        }
    }
    status = 0;
out:
    free_history(hist, n);
    free(hist);
    free(line);
    free(rendered);
    free(ids);
    slm_sampler_free(smp);
    slm_context_free(ctx);
    slm_model_free(m);
    return status;
}
