/* Chat-template conformance against llama.cpp: for every reference model with a chat.jsonl, the
 * template text from model.json is detected and each conversation rendered; the result must equal
 * llama_chat_apply_template's `prompt` byte for byte. */
#include <dirent.h>
#include <jansson.h>

#include "chat/chat.h"
#include "test.h"

typedef struct {
    int models, conversations;
} conf_stats;

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
        free(got);
        free(msgs);
        json_decref(rec);
    }
    free(line);
    fclose(chat_file);
    json_decref(model_json);
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
    fprintf(stderr, "conf_chat: %d models, %d conversations compared\n", stats.models, stats.conversations);
    CHECKF(stats.models >= 20, "expected the 23 reference models with a template, found %d", stats.models);
    return test_report("conf_chat");
}
