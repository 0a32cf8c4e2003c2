/* slm embed: one embedding per input line, as llama-embedding computes it: the line tokenized with
 * the model's special tokens ([CLS] ... [SEP] for BERT vocabularies), one forward pass, the model's
 * pooling (CLS or mean from the GGUF metadata; the mean for decoder models), L2-normalised. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "slm.h"

int cmd_embed(int argc, char **argv);

static const char usage_text[] =
    "usage: slm embed MODEL [--json] [-t THREADS] [-c CTX] [--exact] < lines.txt\n"
    "\n"
    "Reads one input per line from standard input and writes one L2-normalised embedding per line:\n"
    "the values separated by spaces, or with --json {\"embedding\": [...]}. Embedding models (bert,\n"
    "nomic-bert) pool as their GGUF metadata says (CLS or mean); other models give the mean of their\n"
    "final hidden states. An input longer than the context is an error.\n"
    "\n"
    "  --json          one JSON object per line\n"
    "  -t, --threads N threads (default: all cores)\n"
    "  -c, --ctx-size N  positions per input (default: the model's, at most 4096)\n"
    "  --exact         the f32 reference path\n";

int cmd_embed(int argc, char **argv) {
    int status;
    if (cli_usage(argc, argv, usage_text, &status)) return status;
    cli_engine_opts o = {0};
    bool json = false;
    for (int i = 1; i < argc; i++) {
        int r = cli_engine_opt("embed", argc, argv, &i, &o);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (cli_is_help(argv[i])) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--json") == 0) json = true;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_fail("embed", "unknown option '%s'", argv[i]);
        else if (!o.model_path) o.model_path = argv[i];
        else return cli_fail("embed", "unexpected argument '%s' (inputs are read from standard input)", argv[i]);
    }
    if (!o.model_path) return cli_fail("embed", "no model given (slm embed MODEL < lines.txt)");
    slm_model *model = NULL;
    slm_context *ctx = NULL;
    /* a whole input goes through one forward pass: the batch is as large as the context */
    if (!o.n_batch) {
        int n = o.n_ctx;
        slm_model_params mp = {.vocab_only = true};
        char err[512], key[96];
        slm_model *probe;
        if (!n && slm_model_load(o.model_path, &mp, &probe, err, sizeof err) == 0) {
            const char *arch = slm_model_meta(probe, "general.architecture");
            snprintf(key, sizeof key, "%.64s.context_length", arch ? arch : "");
            const char *v = slm_model_meta(probe, key);
            long train = v ? strtol(v, NULL, 10) : 0;
            n = train > 0 && train < 4096 ? (int)train : 4096;
            slm_model_free(probe);
        }
        o.n_batch = n > 0 && n < 8192 ? n : 4096;
    }
    if (cli_engine_open("embed", &o, true, &model, &ctx)) return 1;
    int n_ctx = slm_context_n_ctx(ctx), n_batch = slm_context_n_batch(ctx), E = slm_model_n_embd(model);
    int limit = n_ctx < n_batch ? n_ctx : n_batch;
    float *vec = malloc(sizeof(float) * (size_t)E);
    int8_t *none = calloc((size_t)limit, 1);
    char *line = NULL;
    size_t cap = 0;
    long len;
    int rc = 0, line_no = 0;
    if (!vec || !none) {
        rc = cli_fail("embed", "out of memory");
        goto out;
    }
    while ((len = cli_read_line("embed", stdin, CLI_MAX_LINE_BYTES, &line, &cap)) >= 0) {
        line_no++;
        if (len > 0 && line[len - 1] == '\r') line[--len] = 0;
        slm_token *ids = NULL;
        int n = 0;
        if (cli_tokenize("embed", model, line, (size_t)len, true, false, &ids, &n)) {
            rc = 1;
            break;
        }
        if (n == 0 || n > limit) {
            free(ids);
            rc = n == 0 ? cli_fail("embed", "line %d gives no tokens", line_no)
                        : cli_fail("embed", "line %d has %d tokens, more than the context of %d (-c)", line_no, n, limit);
            break;
        }
        char err[512];
        slm_kv_seq_truncate(ctx, 0, 0);
        slm_batch b = {n, ids, NULL, NULL, none};
        int bad = slm_decode(ctx, &b, err, sizeof err) || slm_embedding(ctx, 0, vec, err, sizeof err);
        free(ids);
        if (bad) {
            rc = cli_fail("embed", "line %d: %s", line_no, err);
            break;
        }
        fputs(json ? "{\"embedding\": [" : "", stdout);
        for (int i = 0; i < E; i++) printf(i ? (json ? ", %.9g" : " %.9g") : "%.9g", (double)vec[i]);
        fputs(json ? "]}\n" : "\n", stdout);
    }
    if (len == -2) rc = 1;
    if (fflush(stdout) != 0) rc = cli_fail("embed", "cannot write the output");
out:
    free(line);
    free(vec);
    free(none);
    slm_context_free(ctx);
    slm_model_free(model);
    return rc;
}
