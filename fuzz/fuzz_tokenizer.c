/* libFuzzer target for the tokenizers (SPM, byte-level BPE with every shipped pre-tokenizer
 * family, WordPiece). The first input byte picks a vocabulary, the rest is the text. Vocabularies
 * are loaded once: the paths in $SLM_FUZZ_VOCAB (colon-separated vocab GGUFs) or else llama.cpp's
 * vocab files under $SLM_TEST_DATA/models/vocab (default <source>/../shared) plus the generated
 * *-vocab.gguf files in $SLM_TEST_MODELS (default <source>/build/testdata).
 *
 * For every add_special/parse_special combination:
 *   - tokenizing never fails, ids are in range, and a too-small buffer reports the exact count;
 *   - add_special only adds BOS/CLS in front and EOS/SEP at the end of the plain tokenization;
 *   - every token renders, and a too-small piece or detokenize buffer reports the needed size;
 * and for SPM and byte-level BPE on valid UTF-8 without special-token parsing, detokenizing gives
 * the text back byte for byte (except where llama.cpp's rules change it by design: SPM turns
 * U+2581 into a space, gpt-2 style clean-up drops the space before ?!., and ' contractions,
 * a byte the vocabulary has no token for is dropped, and user-defined token texts are matched as
 * tokens even without parse_special). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "tokenizer/vocab.h"
#include "tokenizer/vocab_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_VOCABS 32
#define MAX_TEXT 2048
#define TOK_CAP (MAX_TEXT * 2 + 8)

typedef struct fuzz_vocab {
    char path[1024];
    gguf_file *file;
    slm_vocab *v;
    bool byte_covered[256]; /* the byte has a token of its own, so no text containing it loses it */
} fuzz_vocab;

static fuzz_vocab vocabs[MAX_VOCABS];
static int n_vocabs;

static void add_vocab(const char *path) {
    if (n_vocabs >= MAX_VOCABS) return;
    fuzz_vocab *fv = &vocabs[n_vocabs];
    char err[512];
    if (gguf_open(path, &fv->file, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_tokenizer: skipping %s: %s\n", path, err);
        return;
    }
    if (slm_vocab_load(fv->file, &fv->v, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_tokenizer: skipping %s: %s\n", path, err);
        gguf_close(fv->file);
        return;
    }
    snprintf(fv->path, sizeof fv->path, "%s", path);
    for (int b = 0; b < 256; b++) {
        if (fv->v->kind == VOCAB_SPM) {
            fv->byte_covered[b] = fv->v->spm_byte_token[b] >= 0;
        } else {
            char enc[4];
            size_t n = utf8_encode(bytes_to_unicode((uint8_t)b), enc);
            fv->byte_covered[b] = slm_vocab_find(fv->v, enc, n) >= 0;
        }
    }
    fprintf(stderr, "fuzz_tokenizer: vocab %d = %s (%s/%s, %d tokens)\n", n_vocabs, path, slm_vocab_model_name(fv->v),
            slm_vocab_pre_name(fv->v), slm_vocab_n_tokens(fv->v));
    n_vocabs++;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Adds every file in `dir` whose name ends in `suffix`, sorted so vocab indices are stable. */
static void add_dir(const char *dir, const char *suffix) {
    DIR *d = opendir(dir);
    if (!d) return;
    char *names[256];
    int n = 0;
    struct dirent *e;
    size_t sl = strlen(suffix);
    while ((e = readdir(d)) && n < 256) {
        size_t l = strlen(e->d_name);
        if (l > sl && strcmp(e->d_name + l - sl, suffix) == 0) names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        add_vocab(path);
        free(names[i]);
    }
}

static void load_vocabs(void) {
    const char *list = getenv("SLM_FUZZ_VOCAB");
    if (list && *list) {
        char *copy = strdup(list), *save = NULL;
        for (char *p = strtok_r(copy, ":", &save); p; p = strtok_r(NULL, ":", &save)) add_vocab(p);
        free(copy);
    } else {
        char dir[2048];
        const char *shared = getenv("SLM_TEST_DATA");
        snprintf(dir, sizeof dir, "%s/models/vocab", shared && *shared ? shared : SLM_SOURCE_DIR "/../shared");
        add_dir(dir, ".gguf");
        const char *models = getenv("SLM_TEST_MODELS");
        add_dir(models && *models ? models : SLM_SOURCE_DIR "/build/testdata", "-vocab.gguf");
    }
    if (n_vocabs == 0) {
        fprintf(stderr, "fuzz_tokenizer: no vocabulary loaded (set SLM_FUZZ_VOCAB or SLM_TEST_DATA)\n");
        abort();
    }
}

/* Strict UTF-8: no overlongs, surrogates or code points past U+10FFFF. */
static bool valid_utf8(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (len == 0 || i + len > n) return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return false;
        if (c == 0xE0 && s[i + 1] < 0xA0) return false;
        if (c == 0xED && s[i + 1] >= 0xA0) return false;
        if (c == 0xF0 && s[i + 1] < 0x90) return false;
        if (c == 0xF4 && s[i + 1] >= 0x90) return false;
        i += len;
    }
    return true;
}

/* Texts the detokenizer's clean_up_tokenization_spaces rewrites on purpose. */
static bool clean_up_would_touch(const char *s, size_t n) {
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == ' ' && strchr("?!.,'", s[i + 1]) && s[i + 1] != 0) return true;
    return false;
}

static void check_pieces(const slm_vocab *v, const slm_token *ids, int n) {
    char buf[512];
    for (int i = 0; i < n; i++)
        for (int render = 0; render < 2; render++) {
            int len = slm_vocab_token_to_piece(v, ids[i], render, buf, sizeof buf);
            if (len < 0) continue; /* a piece over 512 bytes: the negative length is the contract */
            if (len > 0 && slm_vocab_token_to_piece(v, ids[i], render, buf, len - 1) != -len) __builtin_trap();
        }
}

/* detokenize with a generous buffer, then with exactly the size it asked for: same bytes. */
static int detok_checked(const slm_vocab *v, const slm_token *ids, int n, bool remove, bool render, char *out, int cap) {
    int len = slm_vocab_detokenize(v, ids, n, remove, render, out, cap);
    if (len < 0) __builtin_trap(); /* cap is always enough here */
    int need = slm_vocab_detokenize(v, ids, n, remove, render, NULL, 0);
    if (need > 0) __builtin_trap();
    need = -need;
    if (need < len) __builtin_trap();
    if (need > 0) {
        char *exact = malloc((size_t)need);
        if (!exact) return len;
        int again = slm_vocab_detokenize(v, ids, n, remove, render, exact, need);
        if (again != len || memcmp(exact, out, (size_t)len) != 0) __builtin_trap();
        free(exact);
    }
    return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (n_vocabs == 0) load_vocabs();
    if (size < 1 || size > MAX_TEXT + 1) return 0;
    const fuzz_vocab *fv = &vocabs[data[0] % n_vocabs];
    const slm_vocab *v = fv->v;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int n_tokens = slm_vocab_n_tokens(v);

    static slm_token plain[2][TOK_CAP], with_special[TOK_CAP];
    static char back[MAX_TEXT * 64];
    char err[256];
    int n_plain[2];
    for (int parse = 0; parse < 2; parse++) {
        for (int add = 0; add < 2; add++) {
            slm_token *out = add ? with_special : plain[parse];
            err[0] = 0;
            int n = slm_vocab_tokenize(v, text, len, add, parse, out, TOK_CAP, err, sizeof err);
            if (n < 0) {
                fprintf(stderr, "%s: tokenize(add_special=%d, parse_special=%d) failed: %d %s\n", fv->path, add, parse, n,
                        err);
                __builtin_trap();
            }
            for (int i = 0; i < n; i++)
                if (out[i] < 0 || out[i] >= n_tokens) __builtin_trap();
            if (n > 0) {
                slm_token small[1];
                if (slm_vocab_tokenize(v, text, len, add, parse, n > 1 ? small : NULL, n > 1 ? 1 : 0, err, sizeof err) !=
                    -n)
                    __builtin_trap();
            }
            check_pieces(v, out, n);
            for (int combo = 0; combo < 4; combo++)
                detok_checked(v, out, n, combo & 1, combo & 2, back, sizeof back);
            if (!add) {
                n_plain[parse] = n;
                continue;
            }
            /* add_special wraps the plain tokenization and changes nothing inside it */
            int lead = v->kind == VOCAB_WPM || v->add_bos;
            int trail = v->kind == VOCAB_WPM || v->add_eos;
            if (n != n_plain[parse] + lead + trail) __builtin_trap();
            if (lead && out[0] != v->bos) __builtin_trap();
            if (trail && out[n - 1] != (v->kind == VOCAB_WPM ? v->sep : v->eos)) __builtin_trap();
            if (memcmp(out + lead, plain[parse], (size_t)n_plain[parse] * sizeof *out) != 0) __builtin_trap();
        }
    }

    if (v->kind == VOCAB_WPM || !valid_utf8(data + 1, len)) return 0;
    /* like llama.cpp, a byte without a token of its own is dropped (smollm2's vocab lacks 0x04,
     * 0x06, 0x13, 0x14, 0x16 and 0x1D) */
    for (size_t i = 0; i < len; i++)
        if (!fv->byte_covered[(uint8_t)text[i]]) return 0;
    if (v->kind == VOCAB_SPM && memmem(text, len, "\xe2\x96\x81", 3)) return 0;
    if (v->clean_spaces && clean_up_would_touch(text, len)) return 0;
    /* user-defined tokens are matched even without parse_special (as in llama.cpp), and SPM then
     * starts the following text with a space prefix again */
    for (int i = 0; i < v->n_special; i++) {
        slm_token id = v->special_tokens[i];
        if ((v->tok_attr[id] & TOK_ATTR_USER_DEFINED) && memmem(text, len, v->tok_text[id], v->tok_len[id])) return 0;
    }
    int k = detok_checked(v, plain[0], n_plain[0], false, false, back, sizeof back);
    if (k != (int)len || memcmp(back, text, len) != 0) {
        fprintf(stderr, "%s: round trip of %zu bytes gave %d bytes: '%.*s'\n", fv->path, len, k, k, back);
        __builtin_trap();
    }
    return 0;
}
