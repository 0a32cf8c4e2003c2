/* Fine-tuning data on stories260K's tokenizer: plain text windows overlap by one token so every
 * token after the first is a target exactly once; chat JSONL carries loss on the assistant turns
 * only (their content and end-of-turn marker, never the prompt); the held-out split moves the
 * last windows; hostile lines give one error naming the line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "train/train_data.h"

static char dir[] = "/tmp/slm_train_data_XXXXXX";

static const char *write_file(const char *name, const char *text) {
    static char path[4][512];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 512, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
    return p;
}

/* The text of the loss-bearing tokens of window w, joined. */
static void weighted_text(const slm_model *m, const train_data *d, size_t w, char *out, size_t cap) {
    slm_token tok[512];
    int n = 0;
    for (int i = 0; i < d->len[w] && n < 512; i++)
        if (d->weight[d->start[w] + (size_t)i]) tok[n++] = d->tokens[d->start[w] + (size_t)i];
    int len = slm_detokenize(m, tok, n, false, true, out, (int)cap - 1);
    out[len < 0 ? 0 : len] = 0;
}

int main(void) {
    const char *shared = test_shared_dir();
    if (!shared) return TEST_SKIP_CODE;
    char path[4200];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", shared);
    char err[512];
    slm_model *m = NULL;
    if (slm_model_load(path, NULL, &m, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (!mkdtemp(dir)) return 1;

    /* plain text: windows of 8 tokens overlapping by one cover every token once as a target */
    const char *text = "Once upon a time there was a little owl who liked to hum. Tra-la, tra-lo, said the owl.";
    const char *tp = write_file("t.txt", text);
    train_data d;
    CHECK(train_data_load(m, tp, 8, NULL, &d, err, sizeof err) == 0);
    slm_token all[256];
    int n_all = slm_tokenize(m, text, strlen(text), true, false, all, 256, err, sizeof err);
    CHECK(n_all > 16);
    CHECKF(d.n_targets == (size_t)(n_all - 1), "%zu targets for %d tokens", d.n_targets, n_all);
    CHECKF(d.n == (size_t)((n_all - 1 + 6) / 7), "%zu windows", d.n);
    for (size_t w = 0; w < d.n; w++) {
        CHECK(d.len[w] >= 2 && d.len[w] <= 8);
        CHECK(d.start[w] == w * 7);
        CHECK(memcmp(d.tokens + d.start[w], all + w * 7, sizeof(slm_token) * (size_t)d.len[w]) == 0);
    }
    /* held-out split: the last 2 windows move, the target count follows */
    train_data v;
    size_t n_before = d.n, targets_before = d.n_targets;
    CHECK(train_data_split(&d, 2, &v) == 0);
    CHECK(d.n == n_before - 2 && v.n == 2 && d.n_targets + v.n_targets == targets_before);
    CHECK(v.len[1] == d.len[0] || v.len[1] < 8); /* the last window may be short */
    train_data_free(&v);
    CHECK(train_data_split(&d, (int64_t)d.n, &v) == 0 && v.n == 0); /* never every window */
    train_data_free(&d);

    /* chat JSONL: loss on the assistant turns (content + end marker), not on system/user text */
    const char *jp = write_file("c.jsonl",
                                "{\"messages\": [{\"role\": \"system\", \"content\": \"Be kind.\"}, {\"role\": \"user\", "
                                "\"content\": \"Who hums?\"}, {\"role\": \"assistant\", \"content\": \"The owl hums.\"}, "
                                "{\"role\": \"user\", \"content\": \"Why?\"}, {\"role\": \"assistant\", \"content\": "
                                "\"It is glad.\"}]}\n\n  \n"
                                "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", "
                                "\"content\": \"Tra-la.\"}]}\r\n");
    CHECKF(train_data_load(m, jp, 256, "chatml", &d, err, sizeof err) == 0, "%s", err);
    CHECKF(d.n == 2 && d.chat, "%zu conversations", d.n);
    if (d.n == 2) {
        char got[1024];
        weighted_text(m, &d, 0, got, sizeof got);
        CHECKF(strcmp(got, "The owl hums.<|im_end|>\nIt is glad.<|im_end|>\n") == 0, "weighted text '%s'", got);
        weighted_text(m, &d, 1, got, sizeof got);
        CHECKF(strcmp(got, "Tra-la.<|im_end|>\n") == 0, "weighted text '%s'", got);
    }
    train_data_free(&d);

    /* hostile inputs: one error naming the file and line */
    struct {
        const char *body, *want;
    } bad[] = {
        {"{\"messages\": []}\n", "line 1: expected an object with a non-empty \"messages\" array"},
        {"\n[1, 2]\n", "line 2: expected an object"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": 5}]}\n", "line 1: message 1 needs string"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\\u0000b\"}, {\"role\": \"assistant\", \"content\": \"x\"}]}\n",
         "NUL"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n", "no assistant message"},
        {"{\"messages\": [{\"role\": \"assistant\", \"content\": \"hi\"}], \"messages\": []}\n", "not JSON"},
        {"", "no conversations"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *bp = write_file("bad.jsonl", bad[i].body);
        err[0] = 0;
        CHECKF(train_data_load(m, bp, 128, "chatml", &d, err, sizeof err) != 0 && strstr(err, bad[i].want) &&
                   strstr(err, "bad.jsonl"),
               "case %zu: '%s'", i, err);
    }
    const char *long_conv = write_file("long.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"a long "
                                                     "question about owls and hills\"}, {\"role\": \"assistant\", "
                                                     "\"content\": \"a long answer\"}]}\n");
    CHECK(train_data_load(m, long_conv, 8, "chatml", &d, err, sizeof err) != 0 && strstr(err, "more than the context"));
    CHECK(train_data_load(m, write_file("e.txt", ""), 8, NULL, &d, err, sizeof err) != 0 && strstr(err, "too little"));

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    slm_model_free(m);
    return test_report("test_train_data");
}
