/* slm embed: one embedding per input line, as llama-embedding computes it: the line tokenized with
 * the model's special tokens ([CLS] ... [SEP] for BERT vocabularies), the model's pooling (CLS or
 * mean from the GGUF metadata; the mean for decoder models), L2-normalised. Lines go to the engine
 * through the gate as embedding requests of up to 256 inputs, encoded 8 side by side per pass. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "slm.h"
#include "slm_engine.h"
#include "slm_gate.h"

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
    /* a whole input goes through one forward pass: the batch is at least as large as the context */
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
        o.n_batch = n > 0 && n < 8192 ? (n < 2048 ? 2048 : n) : 4096; /* room for several inputs per pass */
    }
    /* the engine encodes up to EMBED_SEQS lines side by side; lines are read in groups so that
     * the output follows the input line by line without holding all of it */
    enum { EMBED_SEQS = 8, EMBED_GROUP = 256 };
    char err[512];
    slm_engine *engine = NULL;
    slm_gate *gate = NULL;
    slm_model_params mp = {0};
    int rc = 0, line_no = 0;
    char *line = NULL;
    size_t cap = 0;
    long len = 0;
    float *vec = NULL;
    if (slm_model_load(o.model_path, &mp, &model, err, sizeof err)) return cli_fail("embed", "%s", err);
    slm_context_params cp = slm_context_default_params();
    cp.n_ctx = o.n_ctx;
    cp.n_batch = o.n_batch;
    cp.n_seq = EMBED_SEQS;
    cp.exact = o.exact;
    cp.embeddings = true;
    bool owned = false; /* by the engine, once added */
    if (slm_engine_new(&(slm_engine_params){.n_threads = o.n_threads, .queue_cap = -1}, &engine, err, sizeof err) ||
        !(owned = slm_engine_add_model(engine, "model", model, &cp, true, err, sizeof err) == 0) ||
        slm_gate_new(engine, &gate, err, sizeof err)) {
        if (!owned) slm_model_free(model);
        rc = cli_fail("embed", "%s", err);
        goto out;
    }
    const slm_context *ctx = slm_engine_context_at(engine, 0);
    int n_ctx = slm_context_n_ctx(ctx), n_batch = slm_context_n_batch(ctx), E = slm_model_n_embd(model);
    int limit = n_ctx < n_batch ? n_ctx : n_batch;
    while (rc == 0 && len >= 0) {
        slm_request *r = slm_request_new(SLM_REQ_EMBED);
        if (!r || !(r->embed_inputs = calloc(EMBED_GROUP, sizeof *r->embed_inputs)) ||
            !(r->embed_lens = calloc(EMBED_GROUP, sizeof *r->embed_lens))) {
            slm_request_release(r);
            rc = cli_fail("embed", "out of memory");
            break;
        }
        int first_line = line_no + 1;
        while (r->n_embed < EMBED_GROUP && (len = cli_read_line("embed", stdin, CLI_MAX_LINE_BYTES, &line, &cap)) >= 0) {
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
                            : cli_fail("embed", "line %d has %d tokens, more than the context of %d (-c)", line_no, n,
                                       limit);
                break;
            }
            r->embed_inputs[r->n_embed] = ids;
            r->embed_lens[r->n_embed++] = n;
        }
        if (len == -2) rc = 1;
        if (rc == 0 && r->n_embed > 0) {
            r->n_embd = E;
            if (!(r->embeddings = calloc((size_t)r->n_embed * (size_t)E, sizeof *r->embeddings))) {
                rc = cli_fail("embed", "out of memory");
            } else {
                slm_gate_call call;
                slm_gate_call_init(&call, SLM_CALL_EMBED, "cli", "embed");
                call.request = r;
                if (!slm_gate_admit(gate, &call) || !slm_gate_submit(gate, &call)) {
                    rc = cli_fail("embed", "%s", call.error);
                } else if (slm_engine_wait(engine, r, NULL, NULL, NULL) != SLM_FINISH_STOP) {
                    rc = cli_fail("embed", "lines %d-%d: %s", first_line, line_no, slm_finish_message(r));
                    slm_gate_refuse(&call, 500, "engine_error", "%s", slm_finish_message(r));
                }
                call.prompt_tokens = r->n_embed_tokens;
                slm_gate_finish(gate, &call);
                for (int i = 0; rc == 0 && i < r->n_embed; i++) {
                    vec = r->embeddings + (size_t)i * (size_t)E;
                    fputs(json ? "{\"embedding\": [" : "", stdout);
                    for (int k = 0; k < E; k++) printf(k ? (json ? ", %.9g" : " %.9g") : "%.9g", (double)vec[k]);
                    fputs(json ? "]}\n" : "\n", stdout);
                }
            }
        }
        slm_request_release(r);
    }
    if (fflush(stdout) != 0) rc = cli_fail("embed", "cannot write the output");
out:
    free(line);
    slm_gate_free(gate);
    slm_engine_free(engine);
    return rc;
}
