/* llama.cpp's tokenizer test vectors (shared/models/vocab/ *.inp and *.out, made with the HF tokenizers):
 * every string tokenized the way test-tokenizer-0 does it (add_special false, parse_special false)
 * must give exactly the listed ids. ggml-vocab-llama-bpe uses $SLM_TEST_MODELS/llama3-vocab.gguf. */
#include <dirent.h>
#include <limits.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "test.h"
#include "tokenizer/vocab.h"

#define SEPARATOR "\n__ggml_vocab_test__\n"

static char *read_file(const char *path, size_t *len) { return test_read_file(path, len); }

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Returns 1 if the vocab was tested, 0 if its GGUF is absent. */
static int run_vocab(const char *dir, const char *inp_name, const char *models_dir) {
    char inp_path[4096], out_path[4096], gguf_path[4096];
    size_t base_len = strlen(inp_name) - 4; /* without ".inp" */
    int k1 = snprintf(inp_path, sizeof inp_path, "%s/%s", dir, inp_name);
    int k2 = snprintf(out_path, sizeof out_path, "%s/%.*s.out", dir, (int)base_len, inp_name);
    int k3;
    if (strncmp(inp_name, "ggml-vocab-llama-bpe.gguf", base_len) == 0)
        k3 = snprintf(gguf_path, sizeof gguf_path, "%s/llama3-vocab.gguf", models_dir);
    else
        k3 = snprintf(gguf_path, sizeof gguf_path, "%s/%.*s", dir, (int)base_len, inp_name);
    if (k1 >= (int)sizeof inp_path || k2 >= (int)sizeof out_path || k3 >= (int)sizeof gguf_path) {
        CHECKF(0, "path too long for %s", inp_name);
        return 1;
    }

    struct stat st;
    if (stat(gguf_path, &st) != 0) {
        fprintf(stderr, "%.*s: SKIP (no %s; run scripts/gen-test-models.sh)\n", (int)base_len, inp_name, gguf_path);
        return 0;
    }
    char err[512];
    gguf_file *f = NULL;
    slm_vocab *v = NULL;
    CHECKF(gguf_open(gguf_path, &f, err, sizeof err) == 0, "%s", err);
    if (!f) return 1;
    CHECKF(slm_vocab_load(f, &v, err, sizeof err) == 0, "%s", err);
    if (!v) {
        gguf_close(f);
        return 1;
    }

    size_t inp_len, out_len;
    char *inp = read_file(inp_path, &inp_len), *outp = read_file(out_path, &out_len);
    CHECK(inp && outp);
    int n_pass = 0, n_total = 0;
    char *cursor = inp, *line = outp;
    while (inp && outp && *cursor) {
        char *sep = strstr(cursor, SEPARATOR);
        size_t text_len = sep ? (size_t)(sep - cursor) : strlen(cursor);
        char *eol = strchr(line, '\n');
        if (!eol) {
            CHECKF(0, "%s: .out has fewer lines than .inp has strings", inp_name);
            break;
        }
        *eol = 0;
        slm_token want[4096];
        int n_want = 0;
        for (char *p = line; *p;) {
            char *end;
            long id = strtol(p, &end, 10);
            if (end == p) break;
            if (n_want < 4096) want[n_want++] = (slm_token)id;
            p = end;
        }
        slm_token got[4096];
        int n_got = slm_vocab_tokenize(v, cursor, text_len, false, false, got, 4096, err, sizeof err);
        n_total++;
        bool same = n_got == n_want && (n_got == 0 || memcmp(got, want, (size_t)n_got * sizeof *got) == 0);
        if (same) {
            n_pass++;
        } else {
            fprintf(stderr, "%s: string %d '%.*s'\n  want:", inp_name, n_total, (int)(text_len > 80 ? 80 : text_len),
                    cursor);
            for (int i = 0; i < n_want; i++) fprintf(stderr, " %d", want[i]);
            fprintf(stderr, "\n  got: ");
            for (int i = 0; i < n_got; i++) fprintf(stderr, " %d", got[i]);
            fprintf(stderr, "%s\n", n_got < 0 ? err : "");
        }
        CHECK(same);
        line = eol + 1;
        if (!sep) break;
        cursor = sep + strlen(SEPARATOR);
    }
    fprintf(stderr, "%.*s: %d/%d strings match\n", (int)base_len, inp_name, n_pass, n_total);
    CHECK(n_total > 0);
    free(inp);
    free(outp);
    slm_vocab_free(v);
    gguf_close(f);
    return 1;
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return TEST_SKIP_CODE;
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s/models/vocab", shared) >= (int)sizeof dir) return TEST_SKIP_CODE;
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "no %s\n", dir);
        return TEST_SKIP_CODE;
    }
    char *names[64];
    int n_names = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n_names < 64) {
        size_t n = strlen(e->d_name);
        if (n > 4 && strcmp(e->d_name + n - 4, ".inp") == 0) names[n_names++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n_names, sizeof *names, cmp_str);
    int tested = 0;
    for (int i = 0; i < n_names; i++) {
        tested += run_vocab(dir, names[i], test_models_dir());
        free(names[i]);
    }
    if (tested == 0) {
        fprintf(stderr, "no vocab could be tested\n");
        return TEST_SKIP_CODE;
    }
    return test_report("conf_vocab_vectors");
}
