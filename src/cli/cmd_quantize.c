/* slm quantize: llama-quantize's file types and per-tensor choices (slm_quant.h). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "slm_quant.h"

static const char *quantize_help =
    "usage: slm quantize IN.gguf OUT.gguf TYPE [--imatrix FILE] [--threads N] [--dry-run]\n"
    "\n"
    "Writes OUT.gguf with the weights of IN.gguf (F32, F16 or BF16) quantized to TYPE, one of\n"
    "  Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 IQ4_NL F16 BF16 F32\n"
    "(Q3_K, Q4_K, Q5_K are the _M mixes). Each tensor gets the type llama-quantize gives it: norms stay\n"
    "F32, the output (or tied token embedding) gets Q6_K, the _M mixes give attn_v and ffn_down more bits\n"
    "in some layers, and a k-quant whose 256-value block does not divide a row falls back to a\n"
    "32-value type. Without an importance matrix the bytes equal llama-quantize's.\n"
    "  --imatrix FILE  weigh rounding errors by an importance matrix (slm imatrix / llama-imatrix;\n"
    "                  GGUF or legacy .dat format); used by Q2_K Q3_K Q4_K Q5_K Q6_K Q4_0 Q4_1 Q5_0 Q5_1\n"
    "                  IQ4_NL tensors, byte-identical to llama-quantize --imatrix\n"
    "  --threads N     worker threads (default: every CPU)\n"
    "  --dry-run       print each tensor's name, type and new type; write nothing\n"
    "The output is written to OUT.gguf.tmp and renamed when complete: a failed run leaves no file.\n";

int cmd_quantize(int argc, char **argv) {
    const char *verb = "quantize";
    if (argc >= 2 && cli_is_help(argv[1])) {
        fputs(quantize_help, stdout);
        return 0;
    }
    const char *pos[3] = {0};
    int n_pos = 0;
    slm_quantize_params p = {.progress = isatty(2)};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--imatrix")) {
            if (i + 1 >= argc) return cli_fail(verb, "--imatrix needs a file");
            p.imatrix_path = argv[++i];
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            long n;
            if (!cli_parse_int(verb, a, i + 1 < argc ? argv[++i] : NULL, 1, 256, &n)) return 1;
            p.n_threads = (int)n;
        } else if (!strcmp(a, "--dry-run")) {
            p.dry_run = true;
        } else if (cli_is_help(a)) {
            fputs(quantize_help, stdout);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            return cli_fail(verb, "unknown option '%s' (see slm quantize --help)", a);
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            return cli_fail(verb, "unexpected argument '%s'", a);
        }
    }
    /* with --dry-run the output path may be left out */
    if (p.dry_run && n_pos == 2) {
        pos[2] = pos[1];
        pos[1] = NULL;
    } else if (n_pos != 3) {
        fputs(quantize_help, stderr);
        return 1;
    }
    p.ftype = slm_ftype_from_name(pos[2]);
    if (p.ftype < 0) return cli_fail(verb, "unknown type '%s' (one of: %s)", pos[2], slm_ftype_names());
    if (pos[1] && !strcmp(pos[0], pos[1])) return cli_fail(verb, "the output would overwrite the input %s", pos[0]);
    char err[1024];
    slm_quantize_stats st;
    if (slm_quantize_file(pos[0], pos[1], &p, &st, err, sizeof err)) return cli_fail(verb, "%s", err);
    if (!p.dry_run) {
        fprintf(stderr, "slm quantize: %s -> %s (%s): %d tensors, %d quantized%s; %.2f MiB -> %.2f MiB (%.2f bits per weight)\n",
                pos[0], pos[1], slm_ftype_name(p.ftype), st.n_tensors, st.n_quantized,
                st.n_fallback ? ", some with a fallback type" : "", st.bytes_in / 1048576.0, st.bytes_out / 1048576.0,
                st.n_elements ? st.bytes_out * 8.0 / (double)st.n_elements : 0.0);
    }
    return 0;
}
