/* slm perplexity: llama-perplexity's method, so the numbers compare one to one. The text is
 * tokenized with BOS first; each chunk of n_ctx tokens starts from an empty cache with its first
 * token replaced by BOS, and only the second half of each chunk is scored. The text streams: it is
 * read and tokenized in pieces of PPL_PIECE bytes cut at line ends, and each chunk is scored and
 * dropped as soon as its tokens are there, so memory does not grow with the text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "common.h"
#include "slm.h"
#include "slm_buf.h"
#include "slm_quant.h"

/* A text up to this size is tokenized in one piece, exactly as llama-perplexity does. */
#define PPL_PIECE ((size_t)2 << 20)

static const char *ppl_help =
    "usage: slm perplexity MODEL -f FILE [-c CTX] [-t N] [-b N] [--exact] [--kl-divergence-base BASE.gguf]\n"
    "\n"
    "Perplexity of FILE ('-' = stdin) the way llama-perplexity computes it: chunks of CTX tokens\n"
    "(default 512), each from an empty cache with BOS first; the logits of positions CTX/2..CTX-2 score\n"
    "the next token. Prints the running estimate after each chunk and the final PPL +/- its standard error.\n"
    "The text streams in 2 MiB pieces cut at line ends, so any length runs in bounded memory; up to\n"
    "2 MiB it is tokenized whole as llama-perplexity does, beyond that the tokens at a cut may differ.\n"
    "A NUL byte in the text is an error.\n"
    "  --kl-divergence-base BASE.gguf  also run BASE (e.g. the F16 model MODEL was quantized from) on the\n"
    "                  same chunks and report the KL divergence of MODEL from it, PPL(Q)/PPL(base) and how\n"
    "                  often the top token agrees (\"Same top p\"), with llama-perplexity's statistics.\n" CLI_LORA_HELP;

/* Where to end a piece of `n` bytes that is not the end of the text: after the last newline, else
 * before the last space, else at the last UTF-8 character boundary. Always in 1..n. */
static size_t piece_end(const char *buf, size_t n) {
    for (size_t i = n; i > 0; i--)
        if (buf[i - 1] == '\n') return i;
    for (size_t i = n - 1; i > 0; i--)
        if (buf[i] == ' ') return i;
    for (size_t i = n - 1; i > 0; i--)
        if (((unsigned char)buf[i] & 0xC0) != 0x80) return i;
    return n;
}

typedef struct ppl_state {
    int n_ctx, n_batch, n_vocab, first;
    int8_t *want;
    double nll_sum, nll2_sum;
    long count;
    int n_chunks;
    slm_context *base_ctx; /* --kl-divergence-base: the base model's context, else NULL */
    slm_kld_stats *kld;
} ppl_state;

/* Scores one chunk of n_ctx tokens (chunk[0] is replaced by BOS as llama-perplexity does). */
static int score_chunk(const char *verb, slm_context *ctx, const slm_model *m, ppl_state *st, slm_token *chunk) {
    char err[512];
    slm_token bos = slm_token_bos(m);
    if (slm_vocab_add_bos(m) && bos >= 0) chunk[0] = bos;
    slm_kv_seq_truncate(ctx, 0, 0);
    if (st->base_ctx) slm_kv_seq_truncate(st->base_ctx, 0, 0);
    for (int start = 0; start < st->n_ctx; start += st->n_batch) {
        int n = st->n_ctx - start < st->n_batch ? st->n_ctx - start : st->n_batch;
        for (int j = 0; j < n; j++) st->want[j] = start + j >= st->first && start + j < st->n_ctx - 1;
        slm_batch b = {n, chunk + start, NULL, NULL, st->want};
        if (slm_decode(ctx, &b, err, sizeof err)) return cli_fail(verb, "%s", err), -1;
        if (st->base_ctx && slm_decode(st->base_ctx, &b, err, sizeof err)) return cli_fail(verb, "base: %s", err), -1;
        int row = 0;
        for (int j = 0; j < n; j++) {
            if (!st->want[j]) continue;
            if (st->base_ctx &&
                slm_kld_add(st->kld, slm_logits(ctx, row), slm_logits(st->base_ctx, row), st->n_vocab, chunk[start + j + 1]))
                return cli_fail(verb, "out of memory"), -1;
            const float *lg = slm_logits(ctx, row++);
            float max = -INFINITY;
            for (int i = 0; i < st->n_vocab; i++)
                if (lg[i] > max) max = lg[i];
            double sum = 0;
            for (int i = 0; i < st->n_vocab; i++) sum += exp((double)lg[i] - max);
            double nll = max + log(sum) - lg[chunk[start + j + 1]];
            st->nll_sum += nll;
            st->nll2_sum += nll * nll;
            st->count++;
        }
    }
    st->n_chunks++;
    if (st->base_ctx) {
        if (st->n_chunks == 1)
            printf("chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p\n");
        slm_kld_print_chunk(st->kld, st->n_chunks, stdout);
        fflush(stdout);
        return 0;
    }
    printf("[%d]%.4f,", st->n_chunks, exp(st->nll_sum / st->count));
    fflush(stdout);
    return 0;
}

int cmd_perplexity(int argc, char **argv) {
    const char *verb = "perplexity";
    int status;
    if (cli_usage(argc, argv, ppl_help, &status)) return status;
    cli_engine_opts eo = {.model_path = argv[1]};
    const char *file = NULL, *kld_base = NULL;
    for (int i = 2; i < argc; i++) {
        int r = cli_engine_opt(verb, argc, argv, &i, &eo);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(argv[i], "-f") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "--kl-divergence-base") && i + 1 < argc) kld_base = argv[++i];
        else return cli_fail(verb, "unknown option or missing value '%s'", argv[i]);
    }
    if (!file) return cli_fail(verb, "no text: give -f FILE");
    if (eo.n_ctx == 0) eo.n_ctx = 512;
    if (eo.n_ctx < 4) return cli_fail(verb, "context %d is too small to score anything", eo.n_ctx);
    if (eo.n_batch == 0) eo.n_batch = eo.n_ctx;
    bool from_stdin = !strcmp(file, "-");
    const char *name = from_stdin ? "stdin" : file;
    FILE *fp = from_stdin ? stdin : fopen(file, "rb");
    if (!fp) return cli_fail(verb, "%s: cannot open", file);
    struct stat sb;
    if (fstat(fileno(fp), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (!from_stdin) fclose(fp);
        return cli_fail(verb, "%s: is a directory, not a file", name);
    }
    slm_model *m = NULL;
    slm_context *ctx = NULL;
    slm_model *base_model = NULL;
    char *buf = NULL;
    slm_token *pending = NULL, *toks = NULL;
    size_t n_pending = 0, cap_pending = 0;
    ppl_state st = {.n_ctx = eo.n_ctx};
    status = 1;
    if (cli_engine_open(verb, &eo, false, &m, &ctx)) goto out;
    st.n_vocab = slm_model_n_vocab(m);
    if (kld_base) {
        cli_engine_opts base_eo = eo;
        base_eo.model_path = kld_base;
        base_eo.n_lora = 0;
        if (cli_engine_open(verb, &base_eo, false, &base_model, &st.base_ctx)) goto out;
        if (slm_model_n_vocab(base_model) != st.n_vocab) {
            cli_fail(verb, "%s has %d tokens in its vocabulary, %s has %d: not the same model", kld_base,
                     slm_model_n_vocab(base_model), eo.model_path, st.n_vocab);
            goto out;
        }
        if (slm_context_n_batch(st.base_ctx) < slm_context_n_batch(ctx)) {
            cli_fail(verb, "the base model's batch is smaller than the model's");
            goto out;
        }
        if (!(st.kld = slm_kld_new())) {
            cli_fail(verb, "out of memory");
            goto out;
        }
    }
    st.n_batch = slm_context_n_batch(ctx);
    st.first = st.n_ctx / 2;
    buf = malloc(PPL_PIECE + 1);
    st.want = malloc((size_t)st.n_batch);
    if (!buf || !st.want) {
        cli_fail(verb, "out of memory");
        goto out;
    }
    size_t have = 0, offset = 0; /* bytes held in buf; bytes of the text before buf[0] */
    long n_tok_total = 0;
    bool eof = false, first_piece = true;
    for (;;) {
        if (!eof) {
            size_t room = PPL_PIECE - have, got = fread(buf + have, 1, room, fp);
            if (got < room) {
                if (ferror(fp)) {
                    cli_fail(verb, "%s: read error", name);
                    goto out;
                }
                eof = true;
            }
            const char *nul = memchr(buf + have, 0, got);
            if (nul) {
                cli_fail(verb, "%s: contains a NUL byte at offset %zu; expected text", name,
                         offset + (size_t)(nul - buf));
                goto out;
            }
            have += got;
        }
        size_t cut = eof ? have : piece_end(buf, have);
        int n = 0;
        if (cli_tokenize(verb, m, buf, cut, first_piece, false, &toks, &n)) goto out;
        first_piece = false;
        n_tok_total += n;
        if (!slm_grow((void **)&pending, &cap_pending, n_pending + (size_t)n, sizeof *pending, (size_t)st.n_ctx)) {
            cli_fail(verb, "out of memory");
            goto out;
        }
        if (n) memcpy(pending + n_pending, toks, (size_t)n * sizeof *toks);
        n_pending += (size_t)n;
        free(toks);
        toks = NULL;
        size_t used = 0;
        for (; n_pending - used >= (size_t)st.n_ctx; used += (size_t)st.n_ctx)
            if (score_chunk(verb, ctx, m, &st, pending + used)) goto out;
        memmove(pending, pending + used, (n_pending - used) * sizeof *pending);
        n_pending -= used;
        memmove(buf, buf + cut, have - cut);
        have -= cut;
        offset += cut;
        if (eof && have == 0) break;
    }
    if (st.n_chunks < 1) {
        cli_fail(verb, "%s has %ld tokens, fewer than one chunk of %d", name, n_tok_total, st.n_ctx);
        goto out;
    }
    double mean = st.nll_sum / st.count, var = st.nll2_sum / st.count - mean * mean;
    double ppl = exp(mean);
    double err_ppl = st.count > 1 ? ppl * sqrt(var / (st.count - 1)) : 0;
    printf("\nFinal estimate: PPL = %.4f +/- %.5f\n", ppl, err_ppl);
    if (st.kld) {
        printf("\n");
        slm_kld_print_summary(st.kld, stdout);
    }
    fprintf(stderr, "perplexity: %ld tokens, %d chunks of %d\n", n_tok_total, st.n_chunks, st.n_ctx);
    status = 0;
out:
    if (fp && fp != stdin) fclose(fp);
    free(st.want);
    free(pending);
    free(toks);
    free(buf);
    slm_context_free(ctx);
    slm_model_free(m);
    slm_kld_free(st.kld);
    slm_context_free(st.base_ctx);
    slm_model_free(base_model);
    return status;
}
