/* slm logits: teacher-forced logits of every prompt position as JSON lines, in the format of
 * ../shared/reference/<model>/logits.jsonl. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "slm.h"

static const char *logits_help =
    "usage: slm logits MODEL (--ids 1,2,3 | -p TEXT) [--top K] --json [--exact] [-t N] [-c N]\n"
    "\n"
    "Runs the whole prompt through one forward pass and prints, for every position p, one JSON line\n"
    "{\"pos\":p,\"token\":id,\"top\":[[id,logit],...],\"logsumexp\":x}: the K largest logits (default 40,\n"
    "sorted by logit then id) predicting token p+1, and log(sum(exp(logits))) over the vocabulary.\n"
    "  -p TEXT is tokenized with BOS as the model asks; --special parses special-token texts.\n" CLI_LORA_HELP;

static int parse_ids(const char *s, slm_token **out, int *n) {
    int cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    slm_token *ids = malloc(sizeof(slm_token) * (size_t)cap);
    if (!ids) return -1;
    int k = 0;
    const char *p = s;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 0x7fffffff || (*end && *end != ',')) {
            free(ids);
            return -1;
        }
        ids[k++] = (slm_token)v;
        p = *end ? end + 1 : end;
    }
    *out = ids;
    *n = k;
    return k > 0 ? 0 : (free(ids), -1);
}

typedef struct scored {
    int id;
    float logit;
} scored;

/* Keeps the `top` best (logit desc, id asc) with insertion into a small sorted array. */
static int top_logits(const float *logits, int n_vocab, int top, scored *best) {
    int n = 0;
    for (int i = 0; i < n_vocab; i++) {
        float v = logits[i];
        if (n == top && !(v > best[n - 1].logit)) continue;
        int j = n < top ? n++ : n - 1;
        while (j > 0 && v > best[j - 1].logit) {
            best[j] = best[j - 1];
            j--;
        }
        best[j].id = i;
        best[j].logit = v;
    }
    return n;
}

int cmd_logits(int argc, char **argv) {
    const char *verb = "logits";
    int status;
    if (cli_usage(argc, argv, logits_help, &status)) return status;
    cli_engine_opts eo = {.model_path = argv[1]};
    const char *ids_arg = NULL, *prompt = NULL;
    long top = 40;
    bool json = false, parse_special = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int r = cli_engine_opt(verb, argc, argv, &i, &eo);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(a, "--ids") && val) ids_arg = argv[++i];
        else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && val) prompt = argv[++i];
        else if (!strcmp(a, "--top")) {
            if (!cli_parse_int(verb, a, val, 1, 1 << 20, &top)) return 1;
            i++;
        } else if (!strcmp(a, "--json")) json = true;
        else if (!strcmp(a, "--special")) parse_special = true;
        else return cli_fail(verb, "unknown option or missing value '%s' (see 'slm logits --help')", a);
    }
    if (!json) return cli_fail(verb, "only --json output exists; pass --json");
    if (!!ids_arg == !!prompt) return cli_fail(verb, "give exactly one of --ids and -p");
    slm_model *m;
    slm_context *ctx;
    slm_token *ids = NULL;
    int n = 0;
    if (ids_arg && parse_ids(ids_arg, &ids, &n)) return cli_fail(verb, "--ids: expected comma-separated token ids");
    if (eo.n_batch == 0) eo.n_batch = n > 512 ? n : 512;
    if (cli_engine_open(verb, &eo, false, &m, &ctx)) {
        free(ids);
        return 1;
    }
    status = 1;
    scored *best = NULL;
    int8_t *want = NULL;
    if (prompt && cli_tokenize(verb, m, prompt, strlen(prompt), true, parse_special, &ids, &n)) goto out;
    if (n == 0) { cli_fail(verb, "no tokens"); goto out; }
    if (n > slm_context_n_batch(ctx)) {
        cli_fail(verb, "%d tokens exceed the batch size %d (raise -b)", n, slm_context_n_batch(ctx));
        goto out;
    }
    int n_vocab = slm_model_n_vocab(m);
    if (top > n_vocab) top = n_vocab;
    best = malloc(sizeof *best * (size_t)top);
    want = malloc((size_t)n);
    if (!best || !want) { cli_fail(verb, "out of memory"); goto out; }
    memset(want, 1, (size_t)n);
    char err[512];
    slm_batch b = {n, ids, NULL, NULL, want};
    if (slm_decode(ctx, &b, err, sizeof err)) { cli_fail(verb, "%s", err); goto out; }
    for (int p = 0; p < n; p++) {
        const float *lg = slm_logits(ctx, p);
        float max = -INFINITY;
        for (int i = 0; i < n_vocab; i++) if (lg[i] > max) max = lg[i];
        double sum = 0;
        for (int i = 0; i < n_vocab; i++) sum += exp((double)lg[i] - max);
        int k = top_logits(lg, n_vocab, (int)top, best);
        printf("{\"pos\":%d,\"token\":%d,\"top\":[", p, ids[p]);
        for (int j = 0; j < k; j++) printf("%s[%d,%.9g]", j ? "," : "", best[j].id, (double)best[j].logit);
        printf("],\"logsumexp\":%.9g}\n", max + log(sum));
    }
    status = 0;
out:
    free(best);
    free(want);
    free(ids);
    slm_context_free(ctx);
    slm_model_free(m);
    return status;
}
