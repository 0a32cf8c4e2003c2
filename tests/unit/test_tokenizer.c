/* Tokenizer unit tests on small vocabularies built in memory (no shared data): SPM merging by
 * score with byte fallback, byte-level BPE merging by rank, WordPiece, special-token parsing,
 * detokenization rules, error messages, and the speed on a 100 KB text. */
#include <limits.h>
#include <stdint.h>
#include <time.h>

#include "gguf/gguf.h"
#include "gguf_writer.h"
#include "test.h"
#include "tokenizer/vocab_impl.h"

/* Vocabularies are metadata-only GGUFs written with tests/gguf_writer.h. */

typedef struct loaded {
    unsigned char *bytes;
    gguf_file *f;
    slm_vocab *v;
} loaded;

/* Opens the file `kvs` describes and loads its vocabulary; frees the writer. */
static int load(gguf_writer *kvs, loaded *l, char *err, size_t err_len) {
    size_t size;
    l->bytes = gw_finish(kvs, &size);
    gw_free(kvs);
    l->v = NULL;
    l->f = NULL;
    if (gguf_open_memory(l->bytes, size, "test.gguf", &l->f, err, err_len)) return -1;
    return slm_vocab_load(l->f, &l->v, err, err_len);
}

static void unload(loaded *l) {
    slm_vocab_free(l->v);
    if (l->f) gguf_close(l->f);
    free(l->bytes);
}

/* The vocabulary of `kvs`, or NULL (the test failed with the error, nothing is left loaded). */
static const slm_vocab *must_load(gguf_writer *kvs, loaded *l) {
    char err[256];
    CHECKF(load(kvs, l, err, sizeof err) == 0, "%s", err);
    if (!l->v) unload(l);
    return l->v;
}

static bool ids_eq(const slm_token *got, int n_got, const slm_token *want, int n_want) {
    if (n_got != n_want) {
        fprintf(stderr, "  got %d tokens, want %d:", n_got, n_want);
        for (int i = 0; i < n_got && i < 32; i++) fprintf(stderr, " %d", got[i]);
        fputc('\n', stderr);
        return false;
    }
    for (int i = 0; i < n_got; i++)
        if (got[i] != want[i]) {
            fprintf(stderr, "  token %d: got %d, want %d\n", i, got[i], want[i]);
            return false;
        }
    return true;
}

static int tok(const slm_vocab *v, const char *text, bool add, bool parse, slm_token *out, int cap) {
    char err[256];
    int n = slm_vocab_tokenize(v, text, strlen(text), add, parse, out, cap, err, sizeof err);
    if (n < 0) fprintf(stderr, "  tokenize('%s') = %d: %s\n", text, n, err);
    return n;
}

static bool detok_is(const slm_vocab *v, const slm_token *ids, int n, bool remove, bool render, const char *want) {
    char buf[512];
    int k = slm_vocab_detokenize(v, ids, n, remove, render, buf, sizeof buf);
    if (k < 0 || (size_t)k != strlen(want) || memcmp(buf, want, (size_t)k) != 0) {
        fprintf(stderr, "  detokenize: got '%.*s' (%d), want '%s'\n", k < 0 ? 0 : k, buf, k, want);
        return false;
    }
    return true;
}

/* ---------- pieces that need no vocab ---------- */

static void test_strmap(void) {
    strmap m;
    CHECK(strmap_init(&m, 4) == 0);
    const char *keys[] = {"a", "ab", "a b", "", "longer key"};
    for (int i = 0; i < 5; i++) CHECK(strmap_put(&m, keys[i], strlen(keys[i]), i, NULL) == 0);
    int32_t prev = -1;
    CHECK(strmap_put(&m, "ab", 2, 99, &prev) == 1 && prev == 1);
    for (int i = 0; i < 5; i++) CHECK(strmap_get(&m, keys[i], strlen(keys[i])) == i);
    CHECK(strmap_get(&m, "b", 1) == -1);
    strmap_part parts[3] = {{"a", 1}, {" ", 1}, {"b", 1}};
    CHECK(strmap_get_parts(&m, parts, 3) == 2);
    parts[2].ptr = "c";
    CHECK(strmap_get_parts(&m, parts, 3) == -1);
    strmap_free(&m);
}

static void test_byte_alphabet(void) {
    bool seen[512] = {false};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = bytes_to_unicode((uint8_t)b);
        CHECK(cp < 512 && !seen[cp]);
        if (cp < 512) seen[cp] = true;
        CHECK(unicode_to_byte(cp) == b);
    }
    CHECK(bytes_to_unicode(' ') == 0x120); /* 'Ġ' */
    CHECK(bytes_to_unicode('\n') == 0x10A); /* 'Ċ' */
    CHECK(bytes_to_unicode('a') == 'a');
    CHECK(unicode_to_byte(0x2581) == -1);
    size_t used;
    CHECK(utf8_decode_lenient((const unsigned char *)"\xC3\xA9", 2, &used) == 0xE9 && used == 2);
    CHECK(utf8_decode_lenient((const unsigned char *)"\xC3", 1, &used) == 0xFFFD && used == 1);
    CHECK(utf8_decode_lenient((const unsigned char *)"\xED\xA0\x80", 3, &used) == 0xFFFD && used == 1);
    CHECK(cp_is_whitespace(0x3000) && cp_is_whitespace('\v') && !cp_is_whitespace(0x200B));
}

/* ---------- SPM ---------- */

static void build_spm(gguf_writer *b, const char *model) {
    static char names[256][8];
    const char *toks[300];
    float scores[300];
    int32_t types[300];
    int n = 0;
    toks[n] = "<unk>", scores[n] = 0, types[n++] = 2;
    toks[n] = "<s>", scores[n] = 0, types[n++] = 3;
    toks[n] = "</s>", scores[n] = 0, types[n++] = 3;
    for (int i = 0; i < 256; i++) {
        snprintf(names[i], sizeof names[i], "<0x%02X>", i);
        toks[n] = names[i], scores[n] = 0, types[n++] = 6;
    }
    const struct {
        const char *t;
        float s;
    } normal[] = {{"\xE2\x96\x81", -1}, {"a", -2}, {"b", -2}, {"c", -2}, {"\342\226\201a", -1.5f},
                  {"ab", -1}, {"\342\226\201ab", -0.5f}};
    for (size_t i = 0; i < sizeof normal / sizeof *normal; i++) toks[n] = normal[i].t, scores[n] = normal[i].s, types[n++] = 1;
    gw_kv_str(b, "tokenizer.ggml.model", model);
    gw_kv_str_arr(b, "tokenizer.ggml.tokens", toks, n);
    gw_kv_f32_arr(b, "tokenizer.ggml.scores", scores, n);
    gw_kv_i32_arr(b, "tokenizer.ggml.token_type", types, n);
}

enum { SPM_SPACE = 259, SPM_A, SPM_B, SPM_C, SPM_SPACE_A, SPM_AB, SPM_SPACE_AB };

static void test_spm(void) {
    gguf_writer b = {0};
    build_spm(&b, "llama");
    loaded l;
    char err[256];
    const slm_vocab *v = must_load(&b, &l);
    if (!v) return;
    slm_token out[64];
    CHECK(slm_vocab_bos(v) == 1 && slm_vocab_eos(v) == 2 && slm_vocab_get_add_bos(v));
    CHECK(slm_vocab_is_eog(v, 2) && !slm_vocab_is_eog(v, 1) && slm_vocab_is_control(v, 1));

    /* "ab" → "▁ab": "ab" (-1) merges before "▁a" (-1.5), then "▁ab" */
    int n = tok(v, "ab", true, false, out, 64);
    CHECK(ids_eq(out, n, (slm_token[]){1, SPM_SPACE_AB}, 2));
    n = tok(v, "ab", false, false, out, 64);
    CHECK(ids_eq(out, n, (slm_token[]){SPM_SPACE_AB}, 1));
    /* "é" is not a token: bytes <0xC3> <0xA9> */
    n = tok(v, "\xC3\xA9", false, false, out, 64);
    CHECK(ids_eq(out, n, (slm_token[]){SPM_SPACE, 3 + 0xC3, 3 + 0xA9}, 3));
    /* the byte pieces concatenate to the character; the leading space goes in detokenize */
    char a[8], c[8];
    CHECK(slm_vocab_token_to_piece(v, 3 + 0xC3, false, a, 8) == 1 && (unsigned char)a[0] == 0xC3);
    CHECK(slm_vocab_token_to_piece(v, 3 + 0xA9, false, c, 8) == 1 && (unsigned char)c[0] == 0xA9);
    CHECK(detok_is(v, out, n, false, true, "\xC3\xA9"));
    /* special tokens: <s> only with parse_special; the text after it gets the space prefix */
    n = tok(v, "<s>ab", false, true, out, 64);
    CHECK(ids_eq(out, n, (slm_token[]){1, SPM_SPACE_AB}, 2));
    n = tok(v, "<s>", false, false, out, 64);
    CHECK(ids_eq(out, n, (slm_token[]){SPM_SPACE, 3 + '<', 3 + 's', 3 + '>'}, 4));
    n = tok(v, "<unk>", false, true, out, 64);
    CHECK(ids_eq(out, n, (slm_token[]){0}, 1));
    /* detokenize: BOS rendered or removed, the SPM leading space */
    slm_token seq[] = {1, SPM_SPACE_AB, SPM_SPACE_A};
    CHECK(detok_is(v, seq, 3, false, true, "<s> ab a"));
    CHECK(detok_is(v, seq, 3, false, false, " ab a"));
    CHECK(detok_is(v, seq, 3, true, false, " ab a"));
    CHECK(detok_is(v, seq + 1, 2, false, false, "ab a"));
    /* buffer too small: negated length */
    char tiny[2];
    CHECK(slm_vocab_detokenize(v, seq, 3, false, true, tiny, 2) == -8);
    CHECK(slm_vocab_token_to_piece(v, SPM_SPACE_AB, true, tiny, 2) == -3);
    CHECK(slm_vocab_token_to_piece(v, 1, false, tiny, 2) == 0);
    CHECK(slm_vocab_token_to_piece(v, -5, true, tiny, 2) == 0);
    CHECK(slm_vocab_token_to_piece(v, 100000, true, tiny, 2) == 0);
    /* output too small: negated count, then exact */
    CHECK(slm_vocab_tokenize(v, "ab ab", 5, true, false, out, 1, err, sizeof err) == -3);
    CHECK(slm_vocab_tokenize(v, "ab ab", 5, true, false, out, 3, err, sizeof err) == 3);
    CHECK(slm_vocab_tokenize(v, "", 0, true, false, out, 64, err, sizeof err) == 1 && out[0] == 1);
    CHECK(slm_vocab_tokenize(v, "", 0, false, false, out, 64, err, sizeof err) == 0);
    CHECK(slm_vocab_tokenize(v, NULL, 3, false, false, out, 64, err, sizeof err) == SLM_TOKENIZE_ERROR);
    unload(&l);
}

/* ---------- BPE ---------- */

static char bpe_names[256][4];

static void build_bpe(gguf_writer *b, const char *pre) {
    const char *toks[300];
    int32_t types[300];
    int n = 0;
    for (int i = 0; i < 256; i++) {
        size_t k = utf8_encode(bytes_to_unicode((uint8_t)i), bpe_names[i]);
        bpe_names[i][k] = 0;
        toks[n] = bpe_names[i], types[n++] = 1;
    }
    const char *extra[] = {"he", "ll", "hell", "hello", "\xC4\xA0h", "\xC4\xA0he"};
    for (int i = 0; i < 6; i++) toks[n] = extra[i], types[n++] = 1;
    toks[n] = "<|endoftext|>", types[n++] = 3;
    toks[n] = "<tool>", types[n++] = 4;
    const char *merges[] = {"h e", "l l", "he ll", "hell o", "\xC4\xA0 h", "\xC4\xA0h e"};
    gw_kv_str(b, "tokenizer.ggml.model", "gpt2");
    if (pre) gw_kv_str(b, "tokenizer.ggml.pre", pre);
    gw_kv_str_arr(b, "tokenizer.ggml.tokens", toks, n);
    gw_kv_i32_arr(b, "tokenizer.ggml.token_type", types, n);
    gw_kv_str_arr(b, "tokenizer.ggml.merges", merges, 6);
    gw_kv_u32(b, "tokenizer.ggml.bos_token_id", 262);
    gw_kv_u32(b, "tokenizer.ggml.eos_token_id", 262);
}

enum { BPE_HE = 256, BPE_LL, BPE_HELL, BPE_HELLO, BPE_SP_H, BPE_SP_HE, BPE_EOT, BPE_TOOL };

static void test_bpe(void) {
    gguf_writer b = {0};
    build_bpe(&b, "gpt-2");
    loaded l;
    char err[256];
    const slm_vocab *v = must_load(&b, &l);
    if (!v) return;
    slm_token out[256];
    CHECK(!slm_vocab_get_add_bos(v) && slm_vocab_is_eog(v, BPE_EOT));
    int n = tok(v, "hello", true, false, out, 256);
    CHECK(ids_eq(out, n, (slm_token[]){BPE_HELLO}, 1));
    /* "Ġhello": "h e" (rank 0) beats "Ġ h" (rank 4), so Ġ stays alone */
    n = tok(v, " hello", false, false, out, 256);
    CHECK(ids_eq(out, n, (slm_token[]){' ', BPE_HELLO}, 2));
    /* "Ġhe" in one word: "h e" first, then no "Ġ he" merge */
    n = tok(v, " he", false, false, out, 256);
    CHECK(ids_eq(out, n, (slm_token[]){' ', BPE_HE}, 2));
    /* the gpt-2 split: contractions, letters, digits, punctuation, spaces */
    n = tok(v, "it's 42!!", false, false, out, 256);
    CHECK(ids_eq(out, n, (slm_token[]){'i', 't', '\'', 's', ' ', '4', '2', '!', '!'}, 9));
    /* user-defined tokens are always split out; control ones only with parse_special */
    n = tok(v, "hi<tool>hi", false, false, out, 256);
    CHECK(ids_eq(out, n, (slm_token[]){'h', 'i', BPE_TOOL, 'h', 'i'}, 5));
    n = tok(v, "<|endoftext|>", false, true, out, 256);
    CHECK(ids_eq(out, n, (slm_token[]){BPE_EOT}, 1));
    n = tok(v, "<|endoftext|>", false, false, out, 256);
    CHECK(n == 13 && out[0] == '<' && out[1] == '|');
    /* invalid UTF-8 becomes U+FFFD (EF BF BD) */
    n = tok(v, "\xFF", false, false, out, 256);
    CHECK(ids_eq(out, n, (slm_token[]){0xEF, 0xBF, 0xBD}, 3));
    /* byte-level pieces: a split character comes back byte by byte */
    n = tok(v, "\xC3\xA9", false, false, out, 256);
    CHECK(ids_eq(out, n, (slm_token[]){0xC3, 0xA9}, 2));
    char p1[4], p2[4];
    CHECK(slm_vocab_token_to_piece(v, out[0], false, p1, 4) == 1 && (unsigned char)p1[0] == 0xC3);
    CHECK(slm_vocab_token_to_piece(v, out[1], false, p2, 4) == 1 && (unsigned char)p2[0] == 0xA9);
    /* detokenize with gpt-2's clean_up_tokenization_spaces */
    CHECK(detok_is(v, (slm_token[]){' ', BPE_HELLO, ' ', ','}, 4, false, true, " hello,"));
    CHECK(detok_is(v, (slm_token[]){BPE_HELLO, BPE_EOT}, 2, false, true, "hello<|endoftext|>"));
    CHECK(detok_is(v, (slm_token[]){BPE_HELLO, BPE_EOT}, 2, false, false, "hello"));
    CHECK(detok_is(v, (slm_token[]){BPE_HELLO, BPE_TOOL}, 2, false, false, "hello<tool>"));

    /* 100 KB of mixed text must tokenize in well under a second, linearly */
    size_t big_len = 100 * 1024;
    char *big = malloc(big_len + 1);
    static const char chunk[] = "hello world, it's 2024!\n\t  caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD hellohello ";
    for (size_t i = 0; i < big_len; i++) big[i] = chunk[i % (sizeof chunk - 1)];
    big[big_len] = 0;
    slm_token *ids = malloc(big_len * sizeof *ids);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    n = slm_vocab_tokenize(v, big, big_len, true, true, ids, (int)big_len, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    fprintf(stderr, "BPE: 100 KB -> %d tokens in %.3f s\n", n, secs);
    CHECK(n > 0 && secs < 0.5);
    /* the bytes come back exactly */
    char *back = malloc(big_len * 2);
    int k = slm_vocab_detokenize(v, ids, n, false, false, back, (int)big_len * 2);
    CHECK(k > 0);
    /* whitespace runs alone are unchanged by clean-up since no " ," etc. occur in the chunk */
    CHECK((size_t)k == big_len && memcmp(back, big, big_len) == 0);
    /* a long run without spaces and a long run of spaces stay linear too */
    memset(big, 'x', big_len);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    n = slm_vocab_tokenize(v, big, big_len, false, false, ids, (int)big_len, err, sizeof err);
    memset(big, ' ', big_len);
    big[big_len - 1] = 'x';
    int n2 = slm_vocab_tokenize(v, big, big_len, false, false, ids, (int)big_len, err, sizeof err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    fprintf(stderr, "BPE: 2 x 100 KB degenerate runs in %.3f s\n", secs);
    CHECK(n == (int)big_len && n2 == (int)big_len && secs < 1.0);
    free(back);
    free(ids);
    free(big);
    unload(&l);
}

/* ---------- WordPiece ---------- */

static void test_wpm(void) {
    gguf_writer b = {0};
    const char *toks[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "\xE2\x96\x81hello", "\xE2\x96\x81world",
                          "\xE2\x96\x81hel", "lo", "\xE2\x96\x81!", "\xE2\x96\x81,", "\342\226\201cafe"};
    int32_t types[] = {3, 2, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1};
    gw_kv_str(&b, "tokenizer.ggml.model", "bert");
    gw_kv_str(&b, "tokenizer.ggml.pre", "bert-bge");
    gw_kv_str_arr(&b, "tokenizer.ggml.tokens", toks, 12);
    gw_kv_i32_arr(&b, "tokenizer.ggml.token_type", types, 12);
    gw_kv_u32(&b, "tokenizer.ggml.unknown_token_id", 1);
    gw_kv_u32(&b, "tokenizer.ggml.cls_token_id", 2);
    gw_kv_u32(&b, "tokenizer.ggml.seperator_token_id", 3);
    gw_kv_u32(&b, "tokenizer.ggml.padding_token_id", 0);
    loaded l;
    const slm_vocab *v = must_load(&b, &l);
    if (!v) return;
    slm_token out[64];
    int n = tok(v, "Hello, WORLD!", true, false, out, 64);
    CHECK(ids_eq(out, n, (slm_token[]){2, 5, 10, 6, 9, 3}, 6));
    n = tok(v, "Caf\xC3\xA9", false, false, out, 64); /* accents stripped after NFD */
    CHECK(ids_eq(out, n, (slm_token[]){11}, 1));
    n = tok(v, "Cafe\xCC\x81 hello", false, false, out, 64); /* a combining acute stays (llama.cpp): [UNK] */
    CHECK(ids_eq(out, n, (slm_token[]){1, 5}, 2));
    n = tok(v, "helo hello", false, false, out, 64); /* "▁hel" + unmatched "o" → [UNK] */
    CHECK(ids_eq(out, n, (slm_token[]){1, 5}, 2));
    n = tok(v, "hello\xE2\x80\x8Bworld", false, false, out, 64); /* U+200B (Cf) is dropped, no split */
    CHECK(ids_eq(out, n, (slm_token[]){1}, 1));
    CHECK(detok_is(v, (slm_token[]){5, 6}, 2, false, false, " hello world"));
    unload(&l);
}

/* ---------- hostile input ---------- */

/* Random bytes (invalid UTF-8, NULs, fragments of special tokens) through every tokenizer type:
 * never an error, and byte-level BPE gives valid UTF-8 input back exactly. */
static void test_random_input(void) {
    char err[256];
    gguf_writer b1 = {0}, b2 = {0};
    build_spm(&b1, "llama");
    build_bpe(&b2, "llama-bpe");
    loaded spm, bpe;
    CHECKF(load(&b1, &spm, err, sizeof err) == 0, "%s", err);
    CHECKF(load(&b2, &bpe, err, sizeof err) == 0, "%s", err);
    /* whole characters, so non-raw texts are valid UTF-8; no "'" or ",.!?" that the
     * clean-up of llama-bpe's detokenizer would touch */
    static const char *const alphabet[] = {"a", "b", " ", "<", ">", "|", "s", "/", "\\", "\xc3\xa9", "\xe4\xbd\xa0",
                                           "\xf0\x9f\x98\x80", "\n", "\t", "0", "7", "\xc2\xa0", "\xe3\x80\x80"};
    const size_t n_alpha = sizeof alphabet / sizeof *alphabet;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    slm_token out[1024];
    char text[200], back[2048];
    int bad = 0, mismatched = 0;
    for (int iter = 0; iter < 3000 && spm.v && bpe.v; iter++) {
        size_t len = 0, want = (size_t)(rng % 150);
        bool raw = iter % 3 == 0;
        while (len < want) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            if (raw) {
                text[len++] = (char)(rng >> 56);
            } else {
                const char *ch = alphabet[(rng >> 33) % n_alpha];
                size_t cl = strlen(ch);
                if (len + cl > want) break;
                memcpy(text + len, ch, cl);
                len += cl;
            }
        }
    bool parse = iter & 1;
        int n1 = slm_vocab_tokenize(spm.v, text, len, true, parse, out, 1024, err, sizeof err);
        int n2 = slm_vocab_tokenize(bpe.v, text, len, false, parse, out, 1024, err, sizeof err);
        if (n1 < 0 || n2 < 0) bad++;
        if (n2 >= 0 && !raw && !parse) {
            /* the alphabet's multi-byte characters are whole, so the text is valid UTF-8 */
            int k = slm_vocab_detokenize(bpe.v, out, n2, false, false, back, sizeof back);
            if (k != (int)len || memcmp(back, text, len) != 0) mismatched++;
        }
    }
    CHECKF(bad == 0, "%d random inputs failed to tokenize", bad);
    CHECKF(mismatched == 0, "%d random inputs did not round-trip", mismatched);
    unload(&spm);
    unload(&bpe);
}

/* ---------- errors ---------- */

static void test_errors(void) {
    char err[256];
    loaded l;
    gguf_writer b = {0};
    build_spm(&b, "t5");
    CHECK(load(&b, &l, err, sizeof err) < 0 && strstr(err, "'t5'") != NULL);
    unload(&l);

    b = (gguf_writer){0};
    build_bpe(&b, "no-such-pre");
    CHECK(load(&b, &l, err, sizeof err) < 0 && strstr(err, "'no-such-pre'") != NULL);
    unload(&l);

    b = (gguf_writer){0};
    gw_kv_str(&b, "tokenizer.ggml.model", "llama");
    CHECK(load(&b, &l, err, sizeof err) < 0 && strstr(err, "tokenizer.ggml.tokens") != NULL);
    unload(&l);

    b = (gguf_writer){0};
    const char *dup[] = {"a", "b", "a"};
    gw_kv_str(&b, "tokenizer.ggml.model", "llama");
    gw_kv_str_arr(&b, "tokenizer.ggml.tokens", dup, 3);
    CHECK(load(&b, &l, err, sizeof err) < 0 && strstr(err, "duplicate") != NULL);
    unload(&l);

    b = (gguf_writer){0};
    const char *two[] = {"a", "b"};
    float one_score[] = {0};
    gw_kv_str(&b, "tokenizer.ggml.model", "llama");
    gw_kv_str_arr(&b, "tokenizer.ggml.tokens", two, 2);
    gw_kv_f32_arr(&b, "tokenizer.ggml.scores", one_score, 1);
    CHECK(load(&b, &l, err, sizeof err) < 0 && strstr(err, "scores") != NULL);
    unload(&l);

    b = (gguf_writer){0};
    gw_kv_str(&b, "tokenizer.ggml.model", "gpt2");
    gw_kv_str_arr(&b, "tokenizer.ggml.tokens", two, 2);
    CHECK(load(&b, &l, err, sizeof err) < 0 && strstr(err, "merges") != NULL);
    unload(&l);

    /* add_bos without a usable BOS id (the default 1 exists here, so point it out of range) */
    b = (gguf_writer){0};
    gw_kv_str(&b, "tokenizer.ggml.model", "gpt2");
    gw_kv_str_arr(&b, "tokenizer.ggml.tokens", two, 2);
    gw_kv_str_arr(&b, "tokenizer.ggml.merges", (const char *[]){"a b"}, 1);
    gw_kv_bool(&b, "tokenizer.ggml.add_bos_token", true);
    CHECK(load(&b, &l, err, sizeof err) < 0 && strstr(err, "add_bos_token") != NULL);
    unload(&l);

    /* A BPE token of characters outside the byte alphabet renders as one [UNK_BYTE_0x...<whole
     * token>] per character: 20000 of them (60 KB) would be a 1.2 GB piece. One clear error,
     * not a giant allocation or a piece detokenize has to drop. */
    enum { N_WIDE = 20000 };
    char *wide = malloc(3 * N_WIDE + 1);
    if (wide) {
        for (int i = 0; i < N_WIDE; i++) memcpy(wide + 3 * i, "\xE4\xB8\xAD", 3); /* U+4E2D */
        wide[3 * N_WIDE] = 0;
        b = (gguf_writer){0};
        gw_kv_str(&b, "tokenizer.ggml.model", "gpt2");
        gw_kv_str_arr(&b, "tokenizer.ggml.tokens", (const char *[]){"a", "b", wide}, 3);
        gw_kv_str_arr(&b, "tokenizer.ggml.merges", (const char *[]){"a b"}, 1);
        CHECKF(load(&b, &l, err, sizeof err) < 0 && strstr(err, "token 2 renders to") != NULL, "%s", err);
        unload(&l);
        free(wide);
    }
}

/* ---------- plain spans and the size bound ---------- */

/* Inside plain spans a control token's text is text (as with parse_special false), user-defined
 * tokens still match; outside, parse_special decides as before. */
static void test_plain_spans(void) {
    gguf_writer b = {0};
    build_bpe(&b, "gpt-2");
    loaded l;
    char err[256];
    const slm_vocab *v = must_load(&b, &l);
    if (!v) return;
    const char *text = "he<|endoftext|>ll<tool>o<|endoftext|>";
    size_t len = strlen(text);
    slm_token a[64], c[64];
    int n_plain_all = slm_vocab_tokenize_plain(v, text, len, false, true, &(slm_text_span){0, len}, 1, a, 64, err,
                                               sizeof err);
    int n_raw = slm_vocab_tokenize(v, text, len, false, false, c, 64, err, sizeof err);
    CHECK(n_plain_all > 0 && ids_eq(a, n_plain_all, c, n_raw));
    bool has_tool = false, has_eot = false;
    for (int i = 0; i < n_plain_all; i++) has_tool |= a[i] == BPE_TOOL, has_eot |= a[i] == BPE_EOT;
    CHECK(has_tool && !has_eot);
    /* a span over the first marker only: the second is still special */
    int n = slm_vocab_tokenize_plain(v, text, len, false, true, &(slm_text_span){2, 13}, 1, a, 64, err, sizeof err);
    CHECK(n > 2 && a[n - 1] == BPE_EOT && a[0] == BPE_HE);
    for (int i = 0; i < n - 1; i++) CHECK(a[i] != BPE_EOT);
    /* no spans: the same as slm_vocab_tokenize */
    n = slm_vocab_tokenize_plain(v, text, len, false, true, NULL, 0, a, 64, err, sizeof err);
    int n2 = slm_vocab_tokenize(v, text, len, false, true, c, 64, err, sizeof err);
    CHECK(ids_eq(a, n, c, n2));
    /* a span ending inside a marker keeps that marker text (it is not matched across the edge) */
    n = slm_vocab_tokenize_plain(v, text, len, false, true, &(slm_text_span){0, 3}, 1, a, 64, err, sizeof err);
    CHECK(n > 0 && a[n - 1] == BPE_EOT);
    for (int i = 0; i < n - 1; i++) CHECK(a[i] != BPE_EOT);
    /* malformed spans are one error, never a crash */
    CHECK(slm_vocab_tokenize_plain(v, text, len, false, true, &(slm_text_span){len, 1}, 1, a, 64, err, sizeof err) ==
          SLM_TOKENIZE_ERROR);
    CHECK(slm_vocab_tokenize_plain(v, text, len, false, true, &(slm_text_span){SIZE_MAX, 2}, 1, a, 64, err,
                                   sizeof err) == SLM_TOKENIZE_ERROR);
    CHECK(slm_vocab_tokenize_plain(v, text, len, false, true, (slm_text_span[]){{4, 2}, {1, 1}}, 2, a, 64, err,
                                   sizeof err) == SLM_TOKENIZE_ERROR);
    unload(&l);
}

/* Random texts one byte longer than the bound always give more than n tokens. */
static void check_bound(const slm_vocab *v, const char *what, int n_tokens) {
    char err[256];
    size_t bound = slm_vocab_max_text_bytes(v, true, n_tokens);
    CHECKF(bound != SIZE_MAX && bound == (size_t)n_tokens * (size_t)v->max_token_len, "%s: bound %zu", what, bound);
    if (bound == SIZE_MAX) return;
    char *text = malloc(bound + 1);
    slm_token *out = malloc(sizeof *out * (bound * 4 + 8));
    uint32_t seed = 12345;
    static const char alphabet[] = "abhello <|endoftext|><tool>\n\xC3\xA9\xE2\x96\x81";
    for (int round = 0; text && out && round < 200; round++) {
        for (size_t i = 0; i <= bound; i++) {
            seed = seed * 1664525u + 1013904223u;
            text[i] = round % 2 ? (char)(seed >> 24) : alphabet[(seed >> 24) % (sizeof alphabet - 1)];
        }
        int n = slm_vocab_tokenize(v, text, bound + 1, false, true, out, (int)(bound * 4 + 8), err, sizeof err);
        CHECKF(n > n_tokens, "%s: %zu bytes gave %d tokens, bound for %d", what, bound + 1, n, n_tokens);
    }
    free(text);
    free(out);
}

static void test_max_text_bytes(void) {
    gguf_writer b = {0};
    loaded l;
    build_spm(&b, "llama");
    const slm_vocab *v = must_load(&b, &l);
    if (v) {
        check_bound(v, "spm", 10);
        CHECK(slm_vocab_max_text_bytes(v, false, INT32_MAX) == (size_t)INT32_MAX * (size_t)v->max_token_len);
        CHECK(slm_vocab_max_text_bytes(v, false, -1) == SIZE_MAX);
        unload(&l);
    }
    b = (gguf_writer){0};
    build_bpe(&b, "gpt-2");
    if ((v = must_load(&b, &l))) {
        check_bound(v, "bpe", 7);
        unload(&l);
    }
    /* WordPiece drops whitespace and control characters: no bound */
    b = (gguf_writer){0};
    const char *toks[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "\xE2\x96\x81\x61"};
    int32_t types[] = {3, 2, 3, 3, 1};
    gw_kv_str(&b, "tokenizer.ggml.model", "bert");
    gw_kv_str_arr(&b, "tokenizer.ggml.tokens", toks, 5);
    gw_kv_i32_arr(&b, "tokenizer.ggml.token_type", types, 5);
    gw_kv_u32(&b, "tokenizer.ggml.unknown_token_id", 1);
    gw_kv_u32(&b, "tokenizer.ggml.cls_token_id", 2);
    gw_kv_u32(&b, "tokenizer.ggml.seperator_token_id", 3);
    if ((v = must_load(&b, &l))) {
        CHECK(slm_vocab_max_text_bytes(v, false, 10) == SIZE_MAX);
        unload(&l);
    }
}

int main(void) {
    test_plain_spans();
    test_max_text_bytes();
    test_strmap();
    test_byte_alphabet();
    test_spm();
    test_bpe();
    test_wpm();
    test_random_input();
    test_errors();
    return test_report("test_tokenizer");
}
