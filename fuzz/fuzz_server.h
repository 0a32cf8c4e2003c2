/* What the fuzz targets of the server's request path share: a server with one vocab-only model
 * ($SLM_FUZZ_VOCAB, else smollm2-135m-vocab.gguf in $SLM_TEST_MODELS, default
 * <source>/build/testdata) and the check every refusal must pass. */
#ifndef SLM_FUZZ_SERVER_H
#define SLM_FUZZ_SERVER_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/fields.h"
#include "server/state.h"

/* Fills *server once (later calls do nothing); aborts naming `target` when the model is missing. */
static inline void fuzz_server_setup(srv_server *server, const char *target) {
    static bool done;
    if (done) return;
    done = true;
    char path[2048];
    const char *env = getenv("SLM_FUZZ_VOCAB");
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        const char *models = getenv("SLM_TEST_MODELS");
        snprintf(path, sizeof path, "%s/smollm2-135m-vocab.gguf", models && *models ? models : SLM_SOURCE_DIR "/build/testdata");
    }
    slm_model_params mp = {.vocab_only = true};
    char err[512];
    slm_model *model = NULL;
    if (slm_model_load(path, &mp, &model, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s (set SLM_FUZZ_VOCAB to a vocab-only GGUF)\n", target, err);
        abort();
    }
    srv_config_defaults(&server->cfg);
    pthread_mutex_init(&server->socks_mu, NULL);
    srv_model *m = &server->models[0];
    m->model = model;
    snprintf(m->id, sizeof m->id, "fuzz-model");
    m->n_vocab = slm_model_n_vocab(model);
    m->n_ctx = 512;
    m->n_batch = 256;
    m->n_seq = 1;
    m->n_embd = 8;
    server->n_models = 1;
}

/* A refusal: an HTTP error status and one line. */
static inline void fuzz_check_fail(const srv_fail *f) {
    if (f->status < 400 || f->status > 599) __builtin_trap();
    if (f->msg[0] == 0 || strchr(f->msg, '\n')) __builtin_trap();
}

#endif
