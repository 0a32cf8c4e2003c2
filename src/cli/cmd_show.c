#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "slm.h"
#include "slm_models.h"
#include "slm_store.h"

int cmd_show(int argc, char **argv) {
    const char *data_dir = NULL;
    if (argc == 4 && strcmp(argv[2], "--data-dir") == 0) {
        data_dir = argv[3];
        argc = 2;
    } else if (argc == 4 && strcmp(argv[1], "--data-dir") == 0) {
        data_dir = argv[2];
        argv[1] = argv[3];
        argc = 2;
    }
    if (argc < 2 || cli_is_help(argv[1])) {
        fprintf(argc < 2 ? stderr : stdout, "usage: slm show MODEL [--data-dir D]\n\nPrints the model's metadata, hyper-parameters and tensor table.\n");
        return argc < 2;
    }
    if (argc > 2) return cli_fail("show", "unexpected argument '%s'", argv[2]);
    slm_model *m;
    char err[PATH_MAX + 512], path[PATH_MAX], def[PATH_MAX];
    slm_model_params mp = {0};
    /* a file, or a model in the store (slm import, slm pull) */
    if (slm_models_resolve(data_dir ? data_dir : slm_data_dir_default(def, sizeof def), argv[1], path, sizeof path, err,
                           sizeof err))
        return cli_fail("show", "%s", err);
    char lerr[64];
    if (slm_lora_print_info(path, stdout, lerr, sizeof lerr) == 0) return 0; /* an adapter: no vocabulary to load */
    if (slm_model_load(path, &mp, &m, err, sizeof err)) {
        /* A vocab-only file (no tensors) is still worth showing. */
        mp.vocab_only = true;
        char err2[512];
        if (strstr(err, "has no tensors") == NULL || slm_model_load(path, &mp, &m, err2, sizeof err2))
            return cli_fail("show", "%s", err);
    }
    slm_model_print_info(m, stdout);
    slm_model_free(m);
    return 0;
}
