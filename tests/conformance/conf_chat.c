/* Chat-template conformance against llama.cpp: for every reference model with a chat.jsonl, the
 * template text from model.json is detected and each conversation rendered; the result must equal
 * llama_chat_apply_template's `prompt` byte for byte. Where the model's GGUF is in $SLM_TEST_MODELS,
 * the same goes through slm_chat_render (template from the file) and slm_tokenize must give `prompt_ids`. */
#include <dirent.h>
#include <jansson.h>

#include "chat/chat.h"
#include "test.h"

typedef struct {
    int models, conversations, models_tokenized, conversations_tokenized;
} conf_stats;

/* The model's GGUF in $SLM_TEST_MODELS, loaded vocab-only (template + tokenizer); NULL with a note when absent. */
static slm_model *load_vocab(const char *model_id) {
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s.gguf", test_models_dir(), model_id);
    if (n < 0 || (size_t)n >= sizeof path) return NULL;
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "conf_chat: %s absent, prompt_ids of %s not checked (scripts/gen-test-models.sh all)\n", path,
                model_id);
        return NULL;
    }
    slm_model_params mp = {.vocab_only = true};
    slm_model *m = NULL;
    char err[512] = "";
    int rc = slm_model_load(path, &mp, &m, err, sizeof err);
    CHECKF(rc == 0, "%s: %s", path, err);
    return rc == 0 ? m : NULL;
}

/* Through the public API: template detected from the model's own metadata, then tokenized with
 * add_special and parse_special as llama.cpp's chat examples do. */
static void check_with_model(slm_model *m, const char *model_id, int line_no, const slm_chat_message *msgs, size_t n,
                             bool add_gen, const char *expected, json_t *expected_ids, conf_stats *stats) {
    char err[512] = "";
    char *got = NULL;
    int rc = slm_chat_render(m, NULL, msgs, n, add_gen, &got, err, sizeof err);
    CHECKF(rc == 0, "%s line %d: slm_chat_render: %s", model_id, line_no, err);
    if (rc != 0) return;
    CHECKF(strcmp(got, expected) == 0, "%s line %d: slm_chat_render differs from llama.cpp", model_id, line_no);
    size_t n_expected = json_array_size(expected_ids);
    int cap = (int)strlen(got) + 8;
    slm_token *ids = malloc((size_t)cap * sizeof *ids);
    int n_ids = ids ? slm_tokenize(m, got, strlen(got), true, true, ids, cap, err, sizeof err) : -1;
    CHECKF(n_ids >= 0, "%s line %d: tokenize: %s", model_id, line_no, err);
    if (n_ids >= 0) {
        bool same = (size_t)n_ids == n_expected;
        for (size_t i = 0; same && i < n_expected; i++)
            same = ids[i] == (slm_token)json_integer_value(json_array_get(expected_ids, i));
        CHECKF(same, "%s line %d: prompt_ids differ (%d ids, expected %zu)", model_id, line_no, n_ids, n_expected);
        stats->conversations_tokenized++;
    }
    free(ids);
    free(got);
}

/* Joins path parts; false (and a failed check) if the result does not fit. */
static bool join_path(char *out, size_t cap, const char *a, const char *b, const char *c) {
    int n = snprintf(out, cap, "%s/%s%s", a, b, c);
    CHECKF(n >= 0 && (size_t)n < cap, "path too long: %s/%s%s", a, b, c);
    return n >= 0 && (size_t)n < cap;
}

static void check_model(const char *ref_dir, const char *model_id, conf_stats *stats) {
    char path[4096];
    if (!join_path(path, sizeof path, ref_dir, model_id, "/chat.jsonl")) return;
    FILE *chat_file = fopen(path, "r");
    if (!chat_file) return; /* models without a template have no chat.jsonl */

    char model_json_path[4096];
    if (!join_path(model_json_path, sizeof model_json_path, ref_dir, model_id, "/model.json")) {
        fclose(chat_file);
        return;
    }
    json_error_t jerr;
    json_t *model_json = json_load_file(model_json_path, 0, &jerr);
    CHECKF(model_json != NULL, "%s: %s", model_json_path, jerr.text);
    if (!model_json) {
        fclose(chat_file);
        return;
    }
    const char *template_text = json_string_value(json_object_get(model_json, "chat_template"));
    CHECKF(template_text != NULL, "%s: chat.jsonl present but no chat_template", model_id);
    enum slm_chat_template family = slm_chat_template_detect(template_text);
    CHECKF(family != SLM_CHAT_UNKNOWN, "%s: template not recognised", model_id);
    if (!template_text || family == SLM_CHAT_UNKNOWN) {
        json_decref(model_json);
        fclose(chat_file);
        return;
    }
    stats->models++;
    slm_model *model = load_vocab(model_id);
    if (model) stats->models_tokenized++;

    char *line = NULL;
    size_t cap = 0;
    int line_no = 0;
    while (getline(&line, &cap, chat_file) > 0) {
        line_no++;
        json_t *rec = json_loads(line, 0, &jerr);
        CHECKF(rec != NULL, "%s line %d: %s", path, line_no, jerr.text);
        if (!rec) continue;
        json_t *messages = json_object_get(rec, "messages");
        const char *expected = json_string_value(json_object_get(rec, "prompt"));
        bool add_gen = json_is_true(json_object_get(rec, "add_generation_prompt"));
        size_t n = json_array_size(messages);
        slm_chat_message *msgs = calloc(n ? n : 1, sizeof *msgs);
        for (size_t i = 0; msgs && i < n; i++) {
            json_t *m = json_array_get(messages, i);
            msgs[i].role = json_string_value(json_object_get(m, "role"));
            msgs[i].content = json_string_value(json_object_get(m, "content"));
        }
        char err[512] = "";
        char *got = NULL;
        int rc = msgs ? slm_chat_apply(family, msgs, n, add_gen, &got, err, sizeof err) : -1;
        CHECKF(rc == 0, "%s line %d: %s", model_id, line_no, err);
        CHECKF(expected != NULL, "%s line %d: no prompt", model_id, line_no);
        if (rc == 0 && expected) {
            bool same = strcmp(got, expected) == 0;
            CHECKF(same, "%s line %d (%s): rendered prompt differs from llama.cpp", model_id, line_no,
                   slm_chat_template_name(family));
            if (!same) fprintf(stderr, "  expected: %s\n  got:      %s\n", expected, got);
            stats->conversations++;
        }
        if (model && msgs && expected)
            check_with_model(model, model_id, line_no, msgs, n, add_gen, expected, json_object_get(rec, "prompt_ids"),
                             stats);
        free(got);
        free(msgs);
        json_decref(rec);
    }
    free(line);
    fclose(chat_file);
    json_decref(model_json);
    slm_model_free(model);
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return TEST_SKIP_CODE;
    char ref_dir[4096];
    if (!join_path(ref_dir, sizeof ref_dir, shared, "reference", "")) return test_report("conf_chat");
    DIR *d = opendir(ref_dir);
    if (!d) {
        fprintf(stderr, "conf_chat: cannot open %s\n", ref_dir);
        return TEST_SKIP_CODE;
    }
    char *names[256];
    size_t n_names = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n_names < sizeof names / sizeof names[0]) {
        if (e->d_name[0] == '.') continue;
        names[n_names++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n_names, sizeof names[0], compare_names);

    conf_stats stats = {0};
    for (size_t i = 0; i < n_names; i++) {
        check_model(ref_dir, names[i], &stats);
        free(names[i]);
    }
    fprintf(stderr, "conf_chat: %d models, %d conversations compared; %d models (%d conversations) also through "
                    "slm_chat_render + slm_tokenize\n",
            stats.models, stats.conversations, stats.models_tokenized, stats.conversations_tokenized);
    CHECKF(stats.models >= 20, "expected the 23 reference models with a template, found %d", stats.models);
    return test_report("conf_chat");
}
