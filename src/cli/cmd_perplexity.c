/* slm perplexity: llama-perplexity's method, so the numbers compare one to one. The text is
 * tokenized once (BOS first); each chunk of n_ctx tokens starts from an empty cache with its first
 * token replaced by BOS, and only the second half of each chunk is scored. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/common.h"
#include "slm.h"

static const char *ppl_help =
    "usage: slm perplexity MODEL -f FILE [-c CTX] [-t N] [-b N] [--exact]\n"
    "\n"
    "Perplexity of FILE the way llama-perplexity computes it: chunks of CTX tokens (default 512),\n"
    "each from an empty cache with BOS first; the logits of positions CTX/2..CTX-2 score the next token.\n"
    "Prints the running estimate after each chunk and the final PPL +/- its standard error.\n"
    "FILE holds at most 16 MiB (it is tokenized whole, as llama-perplexity does; split a longer text).\n";

int cmd_perplexity(int argc, char **argv) {
    const char *verb = "perplexity";
    int status;
    if (cli_usage(argc, argv, ppl_help, &status)) return status;
    cli_engine_opts eo = {.model_path = argv[1]};
    const char *file = NULL;
    for (int i = 2; i < argc; i++) {
        int r = cli_engine_opt(verb, argc, argv, &i, &eo);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(argv[i], "-f") && i + 1 < argc) file = argv[++i];
        else return cli_fail(verb, "unknown option or missing value '%s'", argv[i]);
    }
    if (!file) return cli_fail(verb, "no text: give -f FILE");
    if (eo.n_ctx == 0) eo.n_ctx = 512;
    if (eo.n_ctx < 4) return cli_fail(verb, "context %d is too small to score anything", eo.n_ctx);
    if (eo.n_batch == 0) eo.n_batch = eo.n_ctx;
    size_t len;
    char *text = cli_read_file(verb, file, CLI_MAX_TEXT_BYTES, "the 16 MiB limit for a perplexity text", &len);
    if (!text) return 1;
    slm_model *m;
    slm_context *ctx;
    if (cli_engine_open(verb, &eo, false, &m, &ctx)) {
        free(text);
        return 1;
    }
    status = 1;
    int n_tok = 0, n_ctx = eo.n_ctx;
    slm_token *toks = NULL;
    int8_t *want = NULL;
    if (cli_tokenize(verb, m, text, len, true, false, &toks, &n_tok)) goto out;
    int n_chunks = n_tok / n_ctx;
    if (n_chunks < 1) {
        cli_fail(verb, "%s has %d tokens, fewer than one chunk of %d", file, n_tok, n_ctx);
        goto out;
    }
    fprintf(stderr, "perplexity: %d tokens, %d chunks of %d\n", n_tok, n_chunks, n_ctx);
    int n_vocab = slm_model_n_vocab(m), n_batch = slm_context_n_batch(ctx), first = n_ctx / 2;
    want = malloc((size_t)n_batch);
    if (!want) { cli_fail(verb, "out of memory"); goto out; }
    double nll_sum = 0, nll2_sum = 0;
    long count = 0;
    char err[512];
    slm_token bos = slm_token_bos(m);
    for (int c = 0; c < n_chunks; c++) {
        slm_token *chunk = toks + (size_t)c * n_ctx;
        slm_token saved = chunk[0];
        if (slm_vocab_add_bos(m) && bos >= 0) chunk[0] = bos;
        slm_kv_seq_truncate(ctx, 0, 0);
        for (int start = 0; start < n_ctx; start += n_batch) {
            int n = n_ctx - start < n_batch ? n_ctx - start : n_batch;
            for (int j = 0; j < n; j++) want[j] = start + j >= first && start + j < n_ctx - 1;
            slm_batch b = {n, chunk + start, NULL, NULL, want};
            if (slm_decode(ctx, &b, err, sizeof err)) {
                cli_fail(verb, "%s", err);
                goto out;
            }
            int row = 0;
            for (int j = 0; j < n; j++) {
                if (!want[j]) continue;
                const float *lg = slm_logits(ctx, row++);
                float max = -INFINITY;
                for (int i = 0; i < n_vocab; i++) if (lg[i] > max) max = lg[i];
                double sum = 0;
                for (int i = 0; i < n_vocab; i++) sum += exp((double)lg[i] - max);
                double nll = max + log(sum) - lg[chunk[start + j + 1]];
                nll_sum += nll;
                nll2_sum += nll * nll;
                count++;
            }
        }
        chunk[0] = saved;
        printf("[%d]%.4f,", c + 1, exp(nll_sum / count));
        fflush(stdout);
    }
    double mean = nll_sum / count, var = nll2_sum / count - mean * mean;
    double ppl = exp(mean);
    double err_ppl = count > 1 ? ppl * sqrt(var / (count - 1)) : 0;
    printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", ppl, err_ppl);
    status = 0;
out:
    free(want);
    free(toks);
    free(text);
    slm_context_free(ctx);
    slm_model_free(m);
    return status;
}
