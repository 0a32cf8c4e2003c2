/* The task layer on real models: classify probabilities are a distribution and do not depend on
 * what the sequence's KV cache held before (prefix reuse is exact); extract returns validated JSON
 * or reports the output incomplete; summarize splits an input longer than the context; inputs
 * that do not fit are errors, not truncations. */
#include <math.h>

#include "sample/json_validate.h"
#include "slm_engine.h"
#include "test.h"

static void run(const char *path) {
    slm_model *m = NULL;
    char err[1024];
    if (slm_model_load(path, NULL, &m, err, sizeof err) != 0) {
        fprintf(stderr, "skip %s: %s\n", path, err);
        return;
    }
    slm_context_params cp = slm_context_default_params();
    cp.n_ctx = 512;
    slm_engine *ctx = NULL; /* the tasks run on an engine, stepped by this thread */
    if (slm_engine_new(&(slm_engine_params){.n_threads = 2}, &ctx, err, sizeof err) != 0 ||
        slm_engine_add_model(ctx, "m", m, &cp, false, err, sizeof err) != 0) {
        slm_engine_free(ctx);
        CHECKF(0, "%s", err);
        slm_model_free(m);
        return;
    }
    slm_task_params tp = {0};
    const char *labels[] = {"sport", "politics", "cooking"};
    double p1[3], p2[3], p3[3];
    CHECKF(slm_task_classify(ctx, &tp, "The team won the match.", labels, 3, false, p1, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(fabs(p1[0] + p1[1] + p1[2] - 1.0) < 1e-9);
    /* something else in the cache, then the same question again: identical answer */
    CHECKF(slm_task_classify(ctx, &tp, "Bake the bread for an hour.", labels, 3, false, p2, NULL, err, sizeof err) == 0, "%s", err);
    CHECKF(slm_task_classify(ctx, &tp, "The team won the match.", labels, 3, false, p3, NULL, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < 3; i++) CHECKF(fabs(p1[i] - p3[i]) < 1e-4, "label %d: %f vs %f", i, p1[i], p3[i]);
    CHECK(fabs(p1[0] - p2[0]) > 1e-6 || fabs(p1[1] - p2[1]) > 1e-6);
    CHECKF(slm_task_classify(ctx, &tp, "x", labels, 3, true, p2, NULL, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < 3; i++) CHECK(p2[i] > 0 && p2[i] < 1);
    const char *dup[] = {"a", "a"};
    CHECK(slm_task_classify(ctx, &tp, "x", dup, 2, false, p2, NULL, err, sizeof err) != 0 && strstr(err, "repeated"));
    /* an input longer than the context is an error naming the sizes */
    char *big = malloc(20000);
    for (int i = 0; i < 19999; i++) big[i] = "abc def. "[i % 9];
    big[19999] = 0;
    CHECK(slm_task_classify(ctx, &tp, big, labels, 3, false, p2, NULL, err, sizeof err) != 0 && strstr(err, "context holds"));

    const char *schema = "{\"type\":\"object\",\"properties\":{\"sentiment\":{\"enum\":[\"pos\",\"neg\"]},"
                         "\"score\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":5}},\"required\":[\"sentiment\",\"score\"],"
                         "\"additionalProperties\":false}";
    int valid = 0;
    for (int seed = 1; seed <= 6; seed++) {
        slm_task_result r;
        tp.temperature = 1.0f;
        tp.seed = (uint64_t)seed;
        tp.max_tokens = 200;
        int rc = slm_task_extract(ctx, &tp, "Great food.", schema, &r, err, sizeof err);
        CHECKF(rc == 0 || rc == SLM_TASK_INCOMPLETE, "extract: %s", err);
        if (rc == 0) {
            valid++;
            CHECK(slm_json_validate(schema, r.text, strlen(r.text), err, sizeof err) == 0);
            CHECK(!strcmp(r.finish_reason, "stop"));
        } else if (rc == SLM_TASK_INCOMPLETE) {
            CHECK(!strcmp(r.finish_reason, "length"));
        }
        slm_task_result_free(&r);
    }
    CHECK(valid > 0);
    slm_task_result r;
    tp = (slm_task_params){.max_tokens = 4};
    CHECK(slm_task_extract(ctx, &tp, "x", "{\"type\":\"object\",\"not\":{}}", &r, err, sizeof err) == -1 &&
          strstr(err, "'not'"));
    slm_task_result_free(&r);

    tp = (slm_task_params){.max_tokens = 24};
    int rc = slm_task_summarize(ctx, &tp, big, 10, NULL, &r, err, sizeof err);
    CHECKF(rc == 0, "summarize: %s", err);
    if (rc == 0) {
        CHECKF(r.n_chunks > 1 && r.n_rounds > r.n_chunks, "chunks %d rounds %d", r.n_chunks, r.n_rounds);
        CHECK(r.text != NULL);
    }
    slm_task_result_free(&r);
    free(big);
    fprintf(stderr, "%s: classify %.3f/%.3f/%.3f, extract %d/6 valid (rest reported incomplete)\n", path, p1[0], p1[1],
            p1[2], valid);
    slm_engine_free(ctx);
    slm_model_free(m);
}

int main(void) {
    char path[8192];
    snprintf(path, sizeof path, "%s/tiny-smollm2-q8_0.gguf", test_models_dir());
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "no %s (scripts/gen-test-models.sh): skipped\n", path);
        return TEST_SKIP_CODE;
    }
    fclose(f);
    run(path);
    const char *shared = test_shared_dir();
    if (shared) {
        snprintf(path, sizeof path, "%s/models/stories260K.gguf", shared);
        run(path);
    }
    return test_report("conf_structured_tasks");
}
