#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <math.h>

#include "cli.h"
#include "slm.h"

int cmd_embed(int argc, char **argv); /* cmd_embed.c */

static const struct verb {
    const char *name;
    slm_verb_fn fn;
    const char *summary;
} verbs[] = {
    {"run", cmd_run, "generate text from a prompt"},
    {"chat", cmd_chat, "interactive chat with the model's template"},
    {"serve", cmd_serve, "OpenAI- and Ollama-compatible HTTP server"},
    {"show", cmd_show, "print a model's metadata and tensors"},
    {"tokenize", cmd_tokenize, "print the tokens of a text"},
    {"embed", cmd_embed, "L2-normalised embeddings of input lines (bert, nomic-bert, any model)"},
    {"logits", cmd_logits, "teacher-forced logits of every position, as JSON lines"},
    {"perplexity", cmd_perplexity, "perplexity of a text file (llama-perplexity's method)"},
    {"lora", cmd_lora, "merge LoRA adapters into a model (slm lora merge)"},
    {"quantize", cmd_quantize, "quantize a GGUF model (llama-quantize's types and mixes)"},
    {"imatrix", cmd_imatrix, "compute an importance matrix for quantize (llama-imatrix's method and formats)"},
    {"bench", cmd_bench, "prompt and generation speed"},
    {"classify", cmd_classify, "pick labels for inputs (JSONL in, JSONL out)"},
    {"extract", cmd_extract, "extract JSON matching a schema"},
    {"summarize", cmd_summarize, "summarize a text"},
    {"keys", cmd_keys, "create, list and revoke API keys (scopes, limits, budgets)"},
    {"ledger", cmd_ledger, "what requests cost, local vs upstream, and the savings"},
    {"list", cmd_list, "the models in the store"},
    {"import", cmd_import, "copy a GGUF file into the store under a name"},
    {"rm", cmd_rm, "remove a model from the store"},
    {"cp", cmd_cp, "give a stored model another name"},
    {"bundle", cmd_bundle, "export / import models as a verified tar (air-gapped sites)"},
    {"pull", cmd_pull, "download a model into the store: URL, hf.co/ORG/REPO, registry (resumable, verified)"},
    {"push", cmd_push, "upload a model of the store to a registry (OCI, Ollama layout)"},
    {"finetune", cmd_finetune, "train a LoRA adapter on the CPU (QLoRA-style over any weight type)"},
    {"redact", cmd_redact, "find and mask personal data in text (JSONL or plain text)"},
    {"audit", cmd_audit, "verify and query the tamper-evident audit log"},
    {"router", cmd_router, "train and evaluate the request router (local model vs frontier API)"},
    {"rag", cmd_rag, "retrieval: collections, ingest, search, answers with citations"},
};

static void usage(FILE *fp) {
    fprintf(fp, "slm %s — run small language models privately\n\nusage: slm <verb> [options]\n\nverbs:\n",
            SLM_VERSION);
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        fprintf(fp, "  %-11s %s\n", verbs[i].name, verbs[i].summary);
    fprintf(fp, "\n'slm <verb> --help' describes each verb.\n");
}

int cli_fail(const char *verb, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "slm %s: ", verb);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

bool cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

bool cli_parse_int(const char *verb, const char *flag, const char *s, long lo, long hi, long *out) {
    if (!s) {
        cli_fail(verb, "%s needs a value", flag);
        return false;
    }
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        cli_fail(verb, "%s: '%s' is not an integer in [%ld, %ld]", flag, s, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

bool cli_parse_float(const char *verb, const char *flag, const char *s, double *out) {
    if (!s) {
        cli_fail(verb, "%s needs a value", flag);
        return false;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) {
        cli_fail(verb, "%s: '%s' is not a number", flag, s);
        return false;
    }
    *out = v;
    return true;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 1;
    }
    if (cli_is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("slm %s (%s)\n", SLM_VERSION, slm_isa_name());
        return 0;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(argv[1], verbs[i].name) == 0) return verbs[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "slm: unknown verb '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}
