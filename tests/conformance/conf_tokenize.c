/* Tokenization against llama.cpp: for every shared/reference/<model>/tokenize.jsonl line,
 * slm_vocab_tokenize(text, add_special, parse_special) must give exactly `ids`, and
 * slm_vocab_detokenize(ids, remove_special=false, render_special=true) exactly `detok`. The vocab
 * comes from the model's GGUF: a real file in shared/models, a synthetic one in $SLM_TEST_MODELS,
 * or, for the big presets, the vocab-only file scripts/gen-test-models.sh writes. model.json's
 * bos / eos / add_bos / eog_ids are checked too. */
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <time.h>

#include "gguf/gguf.h"
#include "test.h"
#include "tokenizer/vocab.h"

/* Seconds the ~100 KB speed check may take: 0.5 in a normal build (SPM vocabularies of 32k tokens
 * take ~0.2 s); ASan/UBSan builds run several times slower, more so on a busy machine. */
#if defined(__SANITIZE_ADDRESS__)
#define SPEED_LIMIT_S 2.0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SPEED_LIMIT_S 2.0
#endif
#endif
#ifndef SPEED_LIMIT_S
#define SPEED_LIMIT_S 0.5
#endif

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Picks the GGUF holding the model's tokenizer; false if none is available. */
static bool find_gguf(const char *shared, const char *id, json_t *model_json, char *path, size_t cap) {
    if (snprintf(path, cap, "%s/models/%s.gguf", shared, id) < (int)cap && file_exists(path)) return true;
    if (snprintf(path, cap, "%s/%s.gguf", test_models_dir(), id) < (int)cap && file_exists(path)) return true;
    const char *preset = json_string_value(json_object_get(model_json, "preset"));
    if (!preset) return false;
    const char *vocab_file = NULL;
    if (strcmp(preset, "smollm2-135m") == 0) vocab_file = "smollm2-135m-vocab.gguf";
    else if (strcmp(preset, "qwen2.5-0.5b") == 0) vocab_file = "qwen2.5-0.5b-vocab.gguf";
    else if (strcmp(preset, "llama3.2-1b") == 0) vocab_file = "llama3-vocab.gguf";
    if (!vocab_file) return false;
    return snprintf(path, cap, "%s/%s", test_models_dir(), vocab_file) < (int)cap && file_exists(path);
}

static void check_special_ids(const char *id, const slm_vocab *v, json_t *mj) {
    json_t *bos = json_object_get(mj, "bos"), *eos = json_object_get(mj, "eos"), *add_bos = json_object_get(mj, "add_bos");
    if (json_is_integer(bos))
        CHECKF(slm_vocab_bos(v) == json_integer_value(bos), "%s: bos %d, llama.cpp %lld", id, slm_vocab_bos(v),
               json_integer_value(bos));
    if (json_is_integer(eos))
        CHECKF(slm_vocab_eos(v) == json_integer_value(eos), "%s: eos %d, llama.cpp %lld", id, slm_vocab_eos(v),
               json_integer_value(eos));
    if (json_is_boolean(add_bos))
        CHECKF(slm_vocab_get_add_bos(v) == json_is_true(add_bos), "%s: add_bos differs", id);
    json_t *eog = json_object_get(mj, "eog_ids");
    if (json_is_array(eog)) {
        const slm_token *ids;
        int n = slm_vocab_eog_ids(v, &ids);
        bool same = (size_t)n == json_array_size(eog);
        for (int i = 0; same && i < n; i++) same = ids[i] == json_integer_value(json_array_get(eog, (size_t)i));
        CHECKF(same, "%s: EOG set differs (%d ids here, %zu in llama.cpp)", id, n, json_array_size(eog));
        for (int i = 0; i < n; i++) CHECK(slm_vocab_is_eog(v, ids[i]));
    }
}

/* ~100 KB of stories: tokenizing must take well under a second, and detokenizing gives the text
 * back byte for byte. */
static void check_speed_and_round_trip(const char *shared, const char *id, const slm_vocab *v) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/reference/texts/stories260K-samples.txt", shared) >= (int)sizeof path) return;
    FILE *fp = fopen(path, "rb");
    if (!fp) return;
    static char one[1 << 16];
    size_t n1 = fread(one, 1, sizeof one, fp);
    fclose(fp);
    size_t len = 0, cap = 5 * n1;
    char *text = malloc(cap + 1);
    slm_token *ids = malloc(cap * sizeof *ids);
    char *back = malloc(2 * cap + 1);
    if (!text || !ids || !back || n1 == 0) goto out;
    for (int k = 0; k < 5; k++, len += n1) memcpy(text + len, one, n1);
    char err[256];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int n = slm_vocab_tokenize(v, text, len, false, false, ids, (int)cap, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    CHECKF(n > 0, "%s: %s", id, err);
    CHECKF(secs < SPEED_LIMIT_S, "%s: %zu bytes took %.3f s", id, len, secs);
    int k = n > 0 ? slm_vocab_detokenize(v, ids, n, false, false, back, (int)(2 * cap)) : -1;
    if (strcmp(slm_vocab_model_name(v), "bert") == 0) {
        /* WordPiece lower-cases and splits punctuation, so the text cannot come back; its
         * detokenized text must tokenize to the same ids instead. */
        slm_token *again = k >= 0 ? malloc(cap * sizeof *again) : NULL;
        int n2 = again ? slm_vocab_tokenize(v, back, (size_t)k, false, false, again, (int)cap, err, sizeof err) : -1;
        bool same = n2 == n && memcmp(again, ids, (size_t)n * sizeof *ids) == 0;
        CHECKF(same, "%s: re-tokenizing the detokenized %zu bytes gives other ids", id, len);
        fprintf(stderr, "%s: %zu bytes -> %d tokens in %.3f s, detokenized text re-tokenizes %s\n", id, len, n, secs,
                same ? "to the same ids" : "DIFFERENTLY");
        free(again);
        goto out;
    }
    CHECKF(k >= 0 && (size_t)k == len && memcmp(back, text, len) == 0, "%s: round trip of %zu bytes differs", id, len);
    fprintf(stderr, "%s: %zu bytes -> %d tokens in %.3f s, round trip %s\n", id, len, n, secs,
            k >= 0 && (size_t)k == len && memcmp(back, text, len) == 0 ? "exact" : "DIFFERS");
out:
    free(text);
    free(ids);
    free(back);
}

/* Returns 1 if tested, 0 if skipped. */
static int run_model(const char *shared, const char *id) {
    char path[4096], gguf_path[4096], err[512];
    if (snprintf(path, sizeof path, "%s/reference/%s/model.json", shared, id) >= (int)sizeof path) return 0;
    json_error_t jerr;
    json_t *mj = json_load_file(path, 0, &jerr);
    if (!mj) {
        CHECKF(0, "%s: %s", path, jerr.text);
        return 1;
    }
    if (!find_gguf(shared, id, mj, gguf_path, sizeof gguf_path)) {
        fprintf(stderr, "%s: SKIP (no GGUF with its tokenizer; run scripts/gen-test-models.sh)\n", id);
        json_decref(mj);
        return 0;
    }
    gguf_file *f = NULL;
    slm_vocab *v = NULL;
    CHECKF(gguf_open(gguf_path, &f, err, sizeof err) == 0, "%s", err);
    if (f) CHECKF(slm_vocab_load(f, &v, err, sizeof err) == 0, "%s: %s", gguf_path, err);
    if (!v) {
        if (f) gguf_close(f);
        json_decref(mj);
        return 1;
    }
    check_special_ids(id, v, mj);
    json_decref(mj);

    if (snprintf(path, sizeof path, "%s/reference/%s/tokenize.jsonl", shared, id) >= (int)sizeof path) return 0;
    FILE *fp = fopen(path, "rb");
    CHECKF(fp != NULL, "cannot open %s", path);
    int n_lines = 0, ids_ok = 0, detok_ok = 0;
    static char line[1 << 20];
    enum { CAP = 1 << 16 };
    static slm_token got[CAP], want[CAP];
    static char text_buf[1 << 20];
    while (fp && fgets(line, sizeof line, fp)) {
        json_t *row = json_loads(line, 0, &jerr);
        if (!row) {
            CHECKF(0, "%s line %d: %s", path, n_lines + 1, jerr.text);
            continue;
        }
        n_lines++;
        json_t *jtext = json_object_get(row, "text"), *jids = json_object_get(row, "ids");
        const char *text = json_string_value(jtext);
        size_t text_len = json_string_length(jtext);
        bool add_special = json_is_true(json_object_get(row, "add_special"));
        bool parse_special = json_is_true(json_object_get(row, "parse_special"));
        const char *detok = json_string_value(json_object_get(row, "detok"));
        size_t detok_len = json_string_length(json_object_get(row, "detok"));
        int n_want = (int)json_array_size(jids);
        for (int i = 0; i < n_want && i < CAP; i++) want[i] = (slm_token)json_integer_value(json_array_get(jids, (size_t)i));

        int n_got = slm_vocab_tokenize(v, text, text_len, add_special, parse_special, got, CAP, err, sizeof err);
        bool same = n_got == n_want && (n_got == 0 || memcmp(got, want, (size_t)n_got * sizeof *got) == 0);
        ids_ok += same;
        CHECK(same);
        if (!same) {
            fprintf(stderr, "%s: ids differ for %.60s (add_special %d, parse_special %d)\n  want:", id, text,
                    add_special, parse_special);
            for (int i = 0; i < n_want && i < 40; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n  got: ");
            for (int i = 0; i < n_got && i < 40; i++) fprintf(stderr, " %d", got[i]);
            fprintf(stderr, "%s\n", n_got < 0 ? err : "");
        }
        int n_text = slm_vocab_detokenize(v, want, n_want, false, true, text_buf, (int)sizeof text_buf);
        bool dsame = n_text >= 0 && (size_t)n_text == detok_len && memcmp(text_buf, detok, detok_len) == 0;
        detok_ok += dsame;
        CHECK(dsame);
        if (!dsame)
            fprintf(stderr, "%s: detok differs for %.60s\n  want: '%s'\n  got:  '%.*s'\n", id, text, detok,
                    n_text < 0 ? 0 : n_text, text_buf);
        json_decref(row);
    }
    if (fp) fclose(fp);
    CHECKF(n_lines > 0, "%s: no lines", path);
    fprintf(stderr, "%s: ids %d/%d, detok %d/%d (%s)\n", id, ids_ok, n_lines, detok_ok, n_lines, gguf_path);

    /* chat.jsonl: the rendered prompts, tokenized with add_special and parse_special */
    if (snprintf(path, sizeof path, "%s/reference/%s/chat.jsonl", shared, id) < (int)sizeof path &&
        (fp = fopen(path, "rb")) != NULL) {
        int n_chat = 0, chat_ok = 0;
        while (fgets(line, sizeof line, fp)) {
            json_t *row = json_loads(line, 0, &jerr);
            if (!row) continue;
            json_t *jprompt = json_object_get(row, "prompt"), *jids = json_object_get(row, "prompt_ids");
            if (json_is_string(jprompt) && json_is_array(jids)) {
                n_chat++;
                int n_want = (int)json_array_size(jids);
                for (int i = 0; i < n_want && i < CAP; i++)
                    want[i] = (slm_token)json_integer_value(json_array_get(jids, (size_t)i));
                int n_got = slm_vocab_tokenize(v, json_string_value(jprompt), json_string_length(jprompt), true, true,
                                               got, CAP, err, sizeof err);
                bool same = n_got == n_want && (n_got == 0 || memcmp(got, want, (size_t)n_got * sizeof *got) == 0);
                chat_ok += same;
                CHECKF(same, "%s: chat prompt %d tokenizes differently", id, n_chat);
            }
            json_decref(row);
        }
        fclose(fp);
        fprintf(stderr, "%s: chat prompts %d/%d\n", id, chat_ok, n_chat);
    }
    check_speed_and_round_trip(shared, id, v);
    slm_vocab_free(v);
    gguf_close(f);
    return 1;
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return TEST_SKIP_CODE;
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s/reference", shared) >= (int)sizeof dir) return TEST_SKIP_CODE;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "no %s\n", dir);
        return TEST_SKIP_CODE;
    }
    char *names[128];
    int n_names = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n_names < 128) {
        char p[4096];
        if (e->d_name[0] == '.') continue;
        if (snprintf(p, sizeof p, "%s/%s/tokenize.jsonl", dir, e->d_name) < (int)sizeof p && file_exists(p))
            names[n_names++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n_names, sizeof *names, cmp_str);
    int tested = 0;
    for (int i = 0; i < n_names; i++) {
        tested += run_model(shared, names[i]);
        free(names[i]);
    }
    if (tested == 0) {
        fprintf(stderr, "no model could be tested\n");
        return TEST_SKIP_CODE;
    }
    fprintf(stderr, "%d of %d reference models tested\n", tested, n_names);
    return test_report("conf_tokenize");
}
