#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "slm.h"

int cmd_show(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        fprintf(argc < 2 ? stderr : stdout, "usage: slm show MODEL\n\nPrints the model's metadata, hyper-parameters and tensor table.\n");
        return argc < 2;
    }
    if (argc > 2) return cli_fail("show", "unexpected argument '%s'", argv[2]);
    slm_model *m;
    char err[512];
    slm_model_params mp = {0};
    if (slm_model_load(argv[1], &mp, &m, err, sizeof err)) {
        /* A vocab-only file (no tensors) is still worth showing. */
        mp.vocab_only = true;
        char err2[512];
        if (strstr(err, "has no tensors") == NULL || slm_model_load(argv[1], &mp, &m, err2, sizeof err2))
            return cli_fail("show", "%s", err);
    }
    slm_model_print_info(m, stdout);
    slm_model_free(m);
    return 0;
}
