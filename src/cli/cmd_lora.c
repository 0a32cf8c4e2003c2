/* slm lora: LoRA adapters outside serving. `merge` writes a model with adapters merged into its
 * weights, like llama-export-lora. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "slm.h"
#include "slm_models.h"
#include "slm_store.h"

static const char *lora_help =
    "usage: slm lora merge BASE ADAPTER[:SCALE]... -o OUT.gguf\n"
    "\n"
    "Writes BASE with each adapter merged into its weights: W' = W + SCALE x alpha / rank x B.A (sums in\n"
    "double), like llama-export-lora. Every other tensor and key/value is copied as it is; each merged\n"
    "matrix keeps its type (a quantized one is re-quantized with the reference quantizer, which may lose a\n"
    "little more than the original quantization). Adapters are llama.cpp GGUF LoRA files (SCALE default 1);\n"
    "each is checked against BASE first. BASE and each ADAPTER are files or names in the store (slm import).\n"
    "The output appears only once it is completely written.\n";

int cmd_lora(int argc, char **argv) {
    const char *verb = "lora";
    int status;
    if (cli_usage(argc, argv, lora_help, &status)) return status;
    if (strcmp(argv[1], "merge") != 0) return cli_fail(verb, "unknown subcommand '%s' (only 'merge'; see 'slm lora --help')", argv[1]);
    verb = "lora merge";
    const char *base = NULL, *out = NULL, *paths[SLM_LORA_MAX];
    float scales[SLM_LORA_MAX];
    int n = 0;
    for (int i = 2; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(lora_help, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) {
            if (i + 1 >= argc || !*argv[i + 1]) return cli_fail(verb, "%s needs a file", argv[i]);
            out = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_fail(verb, "unknown option '%s' (see 'slm lora --help')", argv[i]);
        } else if (!base) {
            base = argv[i];
        } else {
            if (n == SLM_LORA_MAX) return cli_fail(verb, "at most %d adapters", SLM_LORA_MAX);
            if (cli_parse_lora(verb, argv[i], &paths[n], &scales[n])) return 1;
            n++;
        }
    }
    if (!base) return cli_fail(verb, "no base model (see 'slm lora --help')");
    if (n == 0) return cli_fail(verb, "no adapter to merge");
    if (!out) return cli_fail(verb, "no output: give -o OUT.gguf");
    char err[PATH_MAX + 512], note[400], path[PATH_MAX], def[PATH_MAX];
    if (slm_models_resolve(slm_data_dir_default(def, sizeof def), base, path, sizeof path, err, sizeof err))
        return cli_fail(verb, "%s", err);
    base = path;
    static char adapter_paths[SLM_LORA_MAX][PATH_MAX]; /* a file, or an adapter in the store */
    for (int i = 0; i < n; i++) {
        if (cli_resolve_adapter(verb, paths[i], adapter_paths[i], PATH_MAX)) return 1;
        paths[i] = adapter_paths[i];
    }
    if (slm_lora_merge(base, paths, scales, n, out, note, sizeof note, err, sizeof err)) return cli_fail(verb, "%s", err);
    fprintf(stderr, "slm lora merge: wrote %s: %s\n", out, note);
    return 0;
}
