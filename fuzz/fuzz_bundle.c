/* libFuzzer target for model bundles (tar + manifests + blobs): any bytes either import (every
 * manifest names a blob that hashes to its digest) or fail with one line and leave no model and no
 * blob behind. */
#include <assert.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slm_models.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char root[64];
    if (!root[0]) {
        snprintf(root, sizeof root, "/tmp/slm-fuzz-bundle-XXXXXX");
        if (!mkdtemp(root)) abort();
    }
    char tar[128], dir[128];
    snprintf(tar, sizeof tar, "%s/in.tar", root);
    snprintf(dir, sizeof dir, "%s/data", root);
    FILE *fp = fopen(tar, "wb");
    if (!fp) abort();
    fwrite(data, 1, size, fp);
    fclose(fp);
    char err[512] = "";
    int n = slm_models_bundle_import(dir, tar, err, sizeof err);
    slm_model_entry *v = NULL;
    int listed = slm_models_list(dir, &v, NULL, 0);
    if (n < 0) {
        assert(err[0] && !strchr(err, '\n'));
        assert(listed <= 0); /* nothing from a refused bundle is visible */
    } else {
        assert(listed == n || listed < n); /* names may repeat inside one bundle */
    }
    free(v);
    nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
