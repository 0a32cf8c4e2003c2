/* Real generation under every schema of tests/schemas: stories260K (and the random llama-2-tiny,
 * another vocabulary) at temperature 1, several seeds, a short token budget. Every output that
 * finishes must validate against its schema (the validator is the oracle); an output cut by the
 * token budget must still be a prefix the grammar accepts, and the constrained sampler must never
 * run out of tokens (a dead end would be SLM_NO_TOKEN). */
#include <dirent.h>

#include "sample/grammar.h"
#include "sample/json_validate.h"
#include "test.h"

typedef struct out_buf {
    char text[8192];
    size_t len;
} out_buf;

static bool collect(void *user, const char *text, size_t len) {
    out_buf *o = user;
    if (o->len + len >= sizeof o->text) return false;
    memcpy(o->text + o->len, text, len);
    o->len += len;
    return true;
}

static char *read_file(const char *path) { return test_read_file(path, NULL); }

/* Generates from every schema whose file name sorts at or after `from`; returns finished outputs. */
static int run_model(const char *model_path, const char *label, int seeds, int max_tokens, const char *from) {
    slm_model *m = NULL;
    char err[512];
    if (slm_model_load(model_path, NULL, &m, err, sizeof err) != 0) {
        fprintf(stderr, "%s: cannot load: %s\n", label, err);
        test_failures++;
        return 0;
    }
    slm_context_params cp = slm_context_default_params();
    cp.n_ctx = 512;
    cp.n_threads = 1;
    slm_context *ctx = NULL;
    CHECKF(slm_context_new(m, &cp, &ctx, err, sizeof err) == 0, "%s: %s", label, err);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/schemas", SLM_SOURCE_DIR);
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    int runs = 0, finished = 0, valid = 0, schemas = 0;
    slm_token prompt[8];
    int n_prompt = slm_tokenize(m, "Once", 4, true, false, prompt, 8, err, sizeof err);
    CHECK(n_prompt > 0);
    for (int i = 0; i < n && ctx && n_prompt > 0; i++) {
        const char *nm = list[i]->d_name;
        size_t l = strlen(nm);
        if (l <= 5 || strcmp(nm + l - 5, ".json") || strcmp(nm, from) < 0) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, nm);
        char *schema = read_file(path);
        if (!schema) continue;
        slm_grammar *g = NULL;
        int rc = slm_grammar_from_json_schema(m, schema, &g, err, sizeof err);
        CHECKF(rc == 0, "%s %s: %s", label, nm, err);
        schemas++;
        for (int seed = 1; seed <= seeds && rc == 0; seed++) {
            slm_sampler_params sp = slm_sampler_default_params();
            sp.temperature = 1.0f;
            sp.seed = (uint64_t)seed * 7919u;
            slm_sampler *smp = NULL;
            if (slm_sampler_new(m, &sp, &smp, err, sizeof err) != 0) {
                CHECKF(0, "%s", err);
                break;
            }
            slm_sampler_set_grammar(smp, g);
            static out_buf o;
            o.len = 0;
            slm_generate_params gp = {.max_tokens = max_tokens};
            slm_generate_result res = {0};
            rc = slm_generate(ctx, smp, prompt, n_prompt, &gp, collect, &o, &res, err, sizeof err);
            CHECKF(rc == 0, "%s %s seed %d: %s", label, nm, seed, err);
            runs++;
            bool done = slm_sampler_grammar_done(smp);
            if (rc == 0 && res.finish_reason && !strcmp(res.finish_reason, "stop")) {
                CHECKF(done, "%s %s seed %d: stopped before the value was complete: %.*s", label, nm, seed, (int)o.len,
                       o.text);
                finished++;
                rc = slm_json_validate(schema, o.text, o.len, err, sizeof err);
                CHECKF(rc == 0, "%s %s seed %d: %.*s\n  invalid: %s", label, nm, seed, (int)o.len, o.text, err);
                valid += rc == 0;
                rc = 0;
            } else if (rc == 0) {
                CHECKF(!strcmp(res.finish_reason, "length"), "%s %s seed %d: finish %s", label, nm, seed,
                       res.finish_reason);
                /* cut by the budget: still a prefix of a sentence */
                slm_grammar_reset(g);
                CHECKF(slm_grammar_accept_bytes(g, o.text, o.len), "%s %s seed %d: not a grammar prefix: %.*s", label,
                       nm, seed, (int)o.len, o.text);
            }
            slm_sampler_free(smp);
        }
        slm_grammar_free(g);
        free(schema);
    }
    for (int i = 0; i < n; i++) free(list[i]);
    free(list);
    fprintf(stderr, "%s: %d schemas, %d runs at temperature 1, %d finished within %d tokens, %d of them valid\n",
            label, schemas, runs, finished, max_tokens, valid);
    CHECK(finished == valid);
    CHECK(finished > 0);
    slm_context_free(ctx);
    slm_model_free(m);
    return finished;
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return TEST_SKIP_CODE;
    char path[4096];
    snprintf(path, sizeof path, "%.4000s/models/stories260K.gguf", shared);
    run_model(path, "stories260K", 5, 160, "");
    snprintf(path, sizeof path, "%.4000s/models/llama-2-tiny-random.gguf", shared);
    run_model(path, "llama-2-tiny-random", 2, 160, "");
    return test_report("test_json_schema_gen");
}
