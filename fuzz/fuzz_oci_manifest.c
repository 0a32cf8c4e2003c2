/* libFuzzer target for registry manifests (slm_models_oci_manifest_parse): what a registry sends is
 * hostile. Any bytes either parse into a manifest whose every field is in range (1..16 layers, the
 * GGUF layer and the extras' indices inside them and of the right media types, sha256 digests of
 * 64 lower-case hex digits, extras no larger than SLM_MODELS_MAX_EXTRA) or fail with one line. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "slm_models.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_digest(const char *d) {
    assert(strncmp(d, "sha256:", 7) == 0 && strlen(d) == 71 && strspn(d + 7, "0123456789abcdef") == 64);
}

static void check_extra(const slm_oci_manifest *m, int index, const char *media_type) {
    if (index < 0) return;
    assert(index < m->n_layers && index != m->model_layer);
    assert(strcmp(m->layers[index].media_type, media_type) == 0);
    assert(m->layers[index].size <= SLM_MODELS_MAX_EXTRA);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    slm_oci_manifest m;
    char err[512] = "";
    if (slm_models_oci_manifest_parse((const char *)data, size, &m, err, sizeof err) != 0) {
        assert(err[0] && !strchr(err, '\n'));
        assert(m.n_layers == 0 && m.model_layer == -1);
        return 0;
    }
    assert(m.n_layers >= 1 && m.n_layers <= SLM_OCI_MAX_LAYERS);
    assert(m.model_layer >= 0 && m.model_layer < m.n_layers);
    check_digest(m.config.digest);
    for (int i = 0; i < m.n_layers; i++) {
        check_digest(m.layers[i].digest);
        size_t n = strlen(m.layers[i].media_type);
        assert(n > 0 && n < sizeof m.layers[i].media_type);
    }
    check_extra(&m, m.template_layer, "application/vnd.ollama.image.template");
    check_extra(&m, m.system_layer, "application/vnd.ollama.image.system");
    check_extra(&m, m.params_layer, "application/vnd.ollama.image.params");
    return 0;
}
