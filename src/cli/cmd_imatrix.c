/* slm imatrix: an importance matrix the way llama-imatrix computes it, in its file formats. The text
 * is tokenized whole with BOS first (a final newline dropped, as llama's -f does); each chunk of CTX
 * tokens runs from an empty cache with its first token replaced by BOS, and every token of every
 * chunk adds its activations to the matrices (slm_imatrix_collector, fed by the context's matmul
 * observer). Like llama-imatrix it also reports the perplexity of the chunks' second halves. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "slm.h"
#include "slm_quant.h"

static const char *imatrix_help =
    "usage: slm imatrix MODEL -f TEXT [-o FILE] [--output-format gguf|dat] [--chunks N] [-c|--ctx N]\n"
    "                   [-t|--threads N] [--process-output] [--no-ppl] [--exact]\n"
    "\n"
    "Computes an importance matrix for `slm quantize --imatrix` (or llama-quantize) the way llama-imatrix\n"
    "does: TEXT (up to 16 MiB) is tokenized with BOS first and cut into chunks of CTX tokens (default\n"
    "512; at least 2 chunks' worth of text is needed); each chunk runs from an empty cache with BOS as\n"
    "its first token, and for every weight matrix in the blocks the squares of the activations entering\n"
    "each input column are summed over all tokens, with the number of tokens (except, as llama-imatrix\n"
    "with its -b 2048 -ub 512, the last few positions of a chunk its batching would put in a ubatch of\n"
    "fewer than 16 tokens).\n"
    "  -o FILE                  output (default imatrix.gguf); written whole or not at all\n"
    "  --output-format gguf|dat llama-imatrix's GGUF format (default) or its legacy .dat\n"
    "  --chunks N               use at most N chunks (default: all of the text)\n"
    "  --process-output         collect output.weight too (a tied output is never collected)\n"
    "  --no-ppl                 do not report the perplexity of each chunk's second half\n"
    "  -t, --threads N          worker threads (default: every CPU)    --exact  the f32 reference path\n"
    "Decoder models only. On a terminal a progress bar shows the chunks done and the time left.\n";

/* llama-imatrix (its defaults -b 2048 -ub 512) decodes max(1, 2048 / CTX) chunks per llama_decode,
 * at most 2048 positions of each; llama.cpp splits such a batch into ubatches of at most 512 tokens
 * with the same number of positions of each chunk, and the collector skips a ubatch of fewer than 16
 * tokens. So of a chunk decoded beside k - 1 others, a last piece shorter than that is never
 * collected (e.g. CTX 516 alone: its last 4 positions). How many leading positions count: */
static int llama_collected_positions(int n_ctx, int k) {
    const int last_batch = (n_ctx - 1) % 2048 + 1;
    const int per_ubatch = 512 / k > 1 ? 512 / k : 1;
    const int piece = last_batch % per_ubatch;
    return piece && k * piece < 16 ? n_ctx - piece : n_ctx;
}

typedef struct collect_target {
    slm_imatrix_collector *collector;
    int n_rows; /* rows of the current chunk that count (the first ones) */
} collect_target;

/* The observer hands every weight's input rows to the collector (one chunk per decode: row = position). */
static void collect(void *user, const char *weight_name, const float *x, int n_tokens, int n_cols) {
    collect_target *t = user;
    slm_imatrix_collector_add(t->collector, weight_name, x, n_tokens < t->n_rows ? n_tokens : t->n_rows, n_cols);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void draw_progress(int done, int total, double elapsed) {
    char bar[31];
    const int filled = total ? done * 30 / total : 30;
    for (int i = 0; i < 30; i++) bar[i] = i < filled ? '#' : '.';
    bar[30] = 0;
    const double per_chunk = done ? elapsed / done : 0;
    const double left = per_chunk * (total - done);
    fprintf(stderr, "\r[%s] %d/%d chunks, %.2f s per chunk, %d:%02d left ", bar, done, total, per_chunk, (int)left / 60,
            (int)left % 60);
    fflush(stderr);
}

int cmd_imatrix(int argc, char **argv) {
    const char *verb = "imatrix";
    int status;
    if (cli_usage(argc, argv, imatrix_help, &status)) return status;
    cli_engine_opts eo = {.model_path = argv[1]};
    const char *text_path = NULL, *out_path = "imatrix.gguf";
    enum slm_imatrix_format format = SLM_IMATRIX_GGUF;
    bool format_given = false, process_output = false, ppl = true;
    long max_chunks = -1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int r = cli_engine_opt(verb, argc, argv, &i, &eo);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(a, "--ctx")) { /* llama-imatrix's -c, spelt out */
            long n;
            if (!cli_parse_int(verb, a, val, 1, 1 << 24, &n)) return 1;
            eo.n_ctx = (int)n;
            i++;
        } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
            if (!val) return cli_fail(verb, "%s needs a file", a);
            text_path = argv[++i];
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!val) return cli_fail(verb, "%s needs a file", a);
            out_path = argv[++i];
        } else if (!strcmp(a, "--output-format")) {
            if (!val || (strcmp(val, "gguf") && strcmp(val, "dat")))
                return cli_fail(verb, "--output-format takes gguf or dat, not '%s'", val ? val : "");
            format = strcmp(argv[++i], "dat") ? SLM_IMATRIX_GGUF : SLM_IMATRIX_DAT;
            format_given = true;
        } else if (!strcmp(a, "--chunks")) {
            if (!cli_parse_int(verb, a, val, 1, 1L << 30, &max_chunks)) return 1;
            i++;
        } else if (!strcmp(a, "--process-output")) {
            process_output = true;
        } else if (!strcmp(a, "--no-ppl")) {
            ppl = false;
        } else if (cli_is_help(a)) {
            fputs(imatrix_help, stdout);
            return 0;
        } else {
            return cli_fail(verb, "unknown option or missing value '%s' (see slm imatrix --help)", a);
        }
    }
    if (!text_path) return cli_fail(verb, "no text: give -f FILE");
    if (eo.n_lora) return cli_fail(verb, "--lora is not supported: merge the adapter first (slm lora merge)");
    if (eo.n_ctx == 0) eo.n_ctx = 512;
    if (eo.n_ctx < 16) return cli_fail(verb, "a context of %d tokens is too small (at least 16)", eo.n_ctx);
    eo.n_batch = eo.n_ctx; /* one pass per chunk */
    if (!format_given) {
        size_t n = strlen(out_path);
        if (n < 5 || strcmp(out_path + n - 5, ".gguf"))
            fprintf(stderr, "slm imatrix: note: writing %s in the GGUF format (--output-format dat for the legacy one)\n",
                    out_path);
    }

    struct stat out_st, in_st;
    if (stat(out_path, &out_st) == 0)
        for (int k = 0; k < 2; k++) {
            const char *in = k ? text_path : eo.model_path;
            if (stat(in, &in_st) == 0 && in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino)
                return cli_fail(verb, "-o %s would overwrite the %s", out_path, k ? "text" : "model");
        }
    /* a run may take hours: find out now that the output cannot be written, not at the end */
    char probe[4096 + 16];
    if (strlen(out_path) > 4096) return cli_fail(verb, "%s: path too long", out_path);
    snprintf(probe, sizeof probe, "%s.tmp", out_path);
    FILE *pf = fopen(probe, "wb");
    if (!pf) return cli_fail(verb, "%s: cannot create %s: %s", out_path, probe, strerror(errno));
    fclose(pf);
    unlink(probe);

    slm_model *m = NULL;
    slm_context *ctx = NULL;
    slm_imatrix_collector *coll = NULL;
    slm_token *toks = NULL, *chunk = NULL;
    int8_t *want = NULL;
    status = 1;
    char *text = cli_read_text(verb, text_path, CLI_MAX_TEXT_BYTES, "the 16 MiB limit for a text");
    if (!text) return 1;
    size_t len = strlen(text);
    if (len && text[len - 1] == '\n') text[--len] = 0; /* as llama's -f */
    if (cli_engine_open(verb, &eo, false, &m, &ctx)) goto out;
    if (slm_model_is_embedding(m)) {
        cli_fail(verb, "%s is an encoder-only embedding model; importance matrices are computed for decoder models",
                 eo.model_path);
        goto out;
    }
    int n_tok = 0;
    if (cli_tokenize(verb, m, text, len, true, false, &toks, &n_tok)) goto out;
    const int n_ctx = eo.n_ctx;
    if (n_tok < 2 * n_ctx) {
        cli_fail(verb, "%s has %d tokens; a context of %d needs at least %d (as llama-imatrix)", text_path, n_tok, n_ctx,
                 2 * n_ctx);
        goto out;
    }
    int n_chunks = n_tok / n_ctx;
    if (max_chunks > 0 && max_chunks < n_chunks) n_chunks = (int)max_chunks;
    coll = slm_imatrix_collector_new(n_ctx, process_output);
    chunk = malloc((size_t)n_ctx * sizeof *chunk);
    want = malloc((size_t)n_ctx);
    if (!coll || !chunk || !want) {
        cli_fail(verb, "out of memory");
        goto out;
    }
    /* logits: the second half for the perplexity, every token when output.weight is collected */
    const int first = n_ctx / 2;
    for (int j = 0; j < n_ctx; j++) want[j] = process_output || (ppl && j >= first && j < n_ctx - 1);
    collect_target target = {coll, n_ctx};
    slm_context_set_matmul_observer(ctx, collect, &target);
    const int chunks_per_decode = 2048 / n_ctx > 1 ? 2048 / n_ctx : 1; /* llama-imatrix's grouping */
    const int n_vocab = slm_model_n_vocab(m);
    const slm_token bos = slm_token_bos(m);
    const bool add_bos = slm_vocab_add_bos(m) && bos >= 0;
    const bool bar = isatty(2);
    fprintf(stderr, "slm imatrix: %d tokens, %d chunks of %d\n", n_tok, n_chunks, n_ctx);
    double nll = 0, nll2 = 0;
    long count = 0;
    const double t0 = now_seconds();
    if (bar) draw_progress(0, n_chunks, 0);
    for (int c = 0; c < n_chunks; c++) {
        char err[512];
        memcpy(chunk, toks + (size_t)c * n_ctx, (size_t)n_ctx * sizeof *chunk);
        const int group_start = c / chunks_per_decode * chunks_per_decode;
        const int in_group = n_chunks - group_start < chunks_per_decode ? n_chunks - group_start : chunks_per_decode;
        target.n_rows = llama_collected_positions(n_ctx, in_group);
        if (add_bos) chunk[0] = bos;
        slm_kv_seq_truncate(ctx, 0, 0);
        slm_batch b = {n_ctx, chunk, NULL, NULL, want};
        if (slm_decode(ctx, &b, err, sizeof err)) {
            if (bar) fputc('\n', stderr);
            cli_fail(verb, "chunk %d: %s", c + 1, err);
            goto out;
        }
        if (slm_imatrix_collector_error(coll)) {
            if (bar) fputc('\n', stderr);
            cli_fail(verb, "chunk %d: %s", c + 1, slm_imatrix_collector_error(coll));
            goto out;
        }
        if (ppl) {
            int row = 0;
            for (int j = 0; j < n_ctx; j++) {
                if (!want[j]) continue;
                const float *lg = slm_logits(ctx, row++);
                if (j < first || j >= n_ctx - 1) continue;
                float max = -INFINITY;
                for (int v = 0; v < n_vocab; v++)
                    if (lg[v] > max) max = lg[v];
                double sum = 0;
                for (int v = 0; v < n_vocab; v++) sum += exp((double)lg[v] - max);
                const double x = max + log(sum) - lg[chunk[j + 1]];
                nll += x;
                nll2 += x * x;
                count++;
            }
        }
        if (bar) {
            draw_progress(c + 1, n_chunks, now_seconds() - t0);
        } else if (ppl) {
            printf("[%d]%.4f,", c + 1, exp(nll / (double)count));
            fflush(stdout);
        }
    }
    if (bar) fputc('\n', stderr);
    char err[1024];
    if (slm_imatrix_collector_save(coll, out_path, format, text_path, err, sizeof err)) {
        cli_fail(verb, "%s", err);
        goto out;
    }
    if (ppl && count > 0) {
        const double mean = nll / (double)count, var = nll2 / (double)count - mean * mean;
        const double p = exp(mean);
        if (!bar) printf("\n");
        printf("Final estimate: PPL = %.4f +/- %.5f\n", p, count > 1 && var > 0 ? p * sqrt(var / (double)(count - 1)) : 0.0);
    }
    fprintf(stderr, "slm imatrix: %lld entries from %d chunks of %d tokens -> %s (%s, %.2f s)\n",
            (long long)slm_imatrix_collector_n_entries(coll), n_chunks, n_ctx, out_path,
            format == SLM_IMATRIX_DAT ? "legacy .dat" : "GGUF", now_seconds() - t0);
    status = 0;
out:
    slm_context_free(ctx);
    slm_model_free(m);
    slm_imatrix_collector_free(coll);
    free(text);
    free(toks);
    free(chunk);
    free(want);
    return status;
}
