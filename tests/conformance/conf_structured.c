/* Structured output end to end: real models (stories260K and the synthetic random-weight models,
 * which stress the constraint hardest) sample at temperature 1 with many seeds under every schema
 * of tests/schemas through slm_generate; every run that stops must have completed the grammar and
 * its text must parse and validate. Runs cut by max_tokens are reported as "length", never valid. */
#include <dirent.h>
#include <stdint.h>

#include "sample/grammar.h"
#include "sample/json_validate.h"
#include "test.h"

typedef struct text_buf {
    char s[1 << 15];
    size_t n;
} text_buf;

static bool collect(void *user, const char *text, size_t len) {
    text_buf *b = user;
    if (b->n + len >= sizeof b->s) return false;
    memcpy(b->s + b->n, text, len);
    b->n += len;
    return true;
}

static char *read_file(const char *path) { return test_read_file(path, NULL); }

static int run_model(const char *path, int seeds, char **schemas, char **names, int n_schemas) {
    slm_model *m = NULL;
    char err[512];
    if (slm_model_load(path, NULL, &m, err, sizeof err) != 0) {
        fprintf(stderr, "skip %s: %s\n", path, err);
        return 0;
    }
    slm_context_params cp = slm_context_default_params();
    cp.n_ctx = 512;
    cp.n_threads = 2;
    slm_context *ctx = NULL;
    if (slm_context_new(m, &cp, &ctx, err, sizeof err) != 0) {
        CHECKF(0, "%s: %s", path, err);
        slm_model_free(m);
        return 0;
    }
    slm_token prompt[64];
    const char *ptxt = "Output JSON:";
    int np = slm_tokenize(m, ptxt, strlen(ptxt), true, false, prompt, 64, err, sizeof err);
    CHECKF(np > 0, "%s", err);
    static text_buf out;
    int runs = 0, stopped = 0, valid = 0;
    double gen_ms = 0;
    long gen_tokens = 0;
    for (int i = 0; i < n_schemas && np > 0; i++) {
        slm_grammar *g = NULL;
        if (slm_grammar_from_json_schema(m, schemas[i], &g, err, sizeof err) != 0) {
            CHECKF(0, "%s: %s", names[i], err);
            continue;
        }
        for (int seed = 1; seed <= seeds; seed++) {
            slm_sampler_params sp = slm_sampler_default_params();
            sp.temperature = 1.0f;
            sp.top_k = 0;
            sp.top_p = 1.0f;
            sp.min_p = 0.0f;
            sp.seed = (uint64_t)seed * 7919u + (uint64_t)i;
            slm_sampler *s = NULL;
            if (slm_sampler_new(m, &sp, &s, err, sizeof err) != 0) {
                CHECKF(0, "%s", err);
                break;
            }
            slm_sampler_set_grammar(s, g);
            slm_generate_params gp = {.max_tokens = 384};
            slm_generate_result res;
            out.n = 0;
            int rc = slm_generate(ctx, s, prompt, np, &gp, collect, &out, &res, err, sizeof err);
            CHECKF(rc == 0, "%s seed %d: %s", names[i], seed, err);
            runs++;
            gen_ms += res.gen_ms;
            gen_tokens += res.n_generated;
            if (rc == 0 && !strcmp(res.finish_reason, "stop")) {
                stopped++;
                CHECKF(slm_sampler_grammar_done(s), "%s seed %d: stopped before the grammar completed: %.*s", names[i],
                       seed, (int)out.n, out.s);
                if (slm_json_validate(schemas[i], out.s, out.n, err, sizeof err) == 0) valid++;
                else CHECKF(0, "%s seed %d: %.*s\n  invalid: %s", names[i], seed, (int)out.n, out.s, err);
            } else if (rc == 0) {
                CHECKF(!strcmp(res.finish_reason, "length"), "finish %s", res.finish_reason);
            }
            slm_sampler_free(s);
        }
        slm_grammar_free(g);
    }
    fprintf(stderr, "%s: %d runs, %d finished (all %d validated), %d cut by max_tokens; %.0f tok/s constrained\n", path,
            runs, stopped, valid, runs - stopped, gen_ms > 0 ? gen_tokens / (gen_ms / 1000.0) : 0.0);
    slm_context_free(ctx);
    slm_model_free(m);
    return runs;
}

int main(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/schemas", SLM_SOURCE_DIR);
    struct dirent **list;
    int nl = scandir(dir, &list, NULL, alphasort);
    char *schemas[256], *names[256];
    int n = 0;
    for (int i = 0; i < nl; i++) {
        size_t l = strlen(list[i]->d_name);
        if (n < 256 && l > 5 && !strcmp(list[i]->d_name + l - 5, ".json")) {
            char path[2048];
            snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name);
            schemas[n] = read_file(path);
            names[n] = strdup(list[i]->d_name);
            if (schemas[n]) n++;
        }
        free(list[i]);
    }
    free(list);
    /* 3 seeds x 46 schemas x 4 models is ~550 constrained generations; the sanitizer pass does 1 seed. */
    bool quick = getenv("SLM_TEST_QUICK") && atoi(getenv("SLM_TEST_QUICK"));
    int seeds = getenv("SLM_STRUCTURED_SEEDS") ? atoi(getenv("SLM_STRUCTURED_SEEDS")) : quick ? 1 : 3;
    int runs = 0;
    const char *shared = test_shared_dir();
    char path[8192];
    if (shared) {
        snprintf(path, sizeof path, "%s/models/stories260K.gguf", shared);
        runs += run_model(path, seeds, schemas, names, n);
    }
    const char *models[] = {"tiny-smollm2-q8_0.gguf", "tiny-smollm2-f32.gguf", "tiny256-smollm2-q4_k.gguf"};
    for (size_t k = 0; k < sizeof models / sizeof *models; k++) {
        snprintf(path, sizeof path, "%s/%s", test_models_dir(), models[k]);
        runs += run_model(path, seeds, schemas, names, n);
    }
    for (int i = 0; i < n; i++) {
        free(schemas[i]);
        free(names[i]);
    }
    if (runs == 0) {
        fprintf(stderr, "no models found: skipped\n");
        return TEST_SKIP_CODE;
    }
    return test_report("conf_structured");
}
