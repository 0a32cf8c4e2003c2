/* Internals shared by the files of the tokenizer layer (not used outside src/tokenizer). */
#ifndef SLM_TOKENIZER_VOCAB_IMPL_H
#define SLM_TOKENIZER_VOCAB_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tokenizer/strmap.h"
#include "tokenizer/vocab.h"

/* Token attributes, as llama.cpp derives them from tokenizer.ggml.token_type. */
enum {
    TOK_ATTR_UNDEFINED = 0,
    TOK_ATTR_UNKNOWN = 1 << 0,
    TOK_ATTR_UNUSED = 1 << 1,
    TOK_ATTR_NORMAL = 1 << 2,
    TOK_ATTR_CONTROL = 1 << 3,
    TOK_ATTR_USER_DEFINED = 1 << 4,
    TOK_ATTR_BYTE = 1 << 5,
    TOK_ATTR_LSTRIP = 1 << 7,
    TOK_ATTR_RSTRIP = 1 << 8,
};

enum vocab_kind { VOCAB_SPM, VOCAB_BPE, VOCAB_WPM };

#define PRETOK_MAX_REGEX 6

/* A pre-tokenizer: regexes applied one after another, each splitting the pieces the previous
 * ones produced (matches and the text between matches both become pieces). */
typedef struct pretokenizer {
    int n_regex;
    void *code[PRETOK_MAX_REGEX]; /* pcre2_code_8 * */
} pretokenizer;

struct slm_vocab {
    enum vocab_kind kind;
    char model_name[32];
    char pre_name[64];

    int32_t n_tokens;
    char *text_arena;       /* every token text, back to back */
    const char **tok_text;  /* into text_arena */
    uint32_t *tok_len;
    float *tok_score;
    uint32_t *tok_attr;
    int max_token_len;
    strmap token_to_id;

    char *merge_arena;      /* "left right" merge strings */
    strmap merges;          /* "left right" → rank */

    slm_token bos, eos, eot, eom, unk, sep, pad, mask;
    slm_token fim_pre, fim_suf, fim_mid, fim_pad, fim_rep, fim_sep;

    bool add_space_prefix, add_bos, add_eos, ignore_merges, clean_spaces;
    bool lowercase, strip_accents; /* WordPiece normaliser */

    int32_t *special_tokens; /* control / user-defined / unknown ids, longest text first */
    int n_special;

    uint8_t *is_eog;         /* per token */
    slm_token *eog_list;
    int n_eog;

    char *piece_arena;       /* each token rendered as text (special tokens included) */
    uint32_t *piece_off, *piece_len;

    int32_t spm_byte_token[256]; /* SPM byte fallback: <0xXX> or the raw byte, -1 if none */
    int32_t char_token[256];     /* BPE: the token whose text is this single byte, -1 if none */

    pretokenizer pretok;
};

/* pretok.c */
/* Compiles the regexes of a byte-level BPE pre-tokenizer; sets the flags llama.cpp ties to it.
 * Returns -1 (err names the pre-tokenizer) if it is unknown. */
int pretok_init(slm_vocab *v, const char *pre_name, char *err, size_t err_len);
void pretok_free(pretokenizer *p);

/* A piece of text: [start, start + len) bytes. */
typedef struct text_span {
    size_t start, len;
} text_span;

/* Work memory of pretok_split, kept across calls so a prompt made of many fragments does not
 * allocate per fragment. Zero-initialise; free with pretok_work_free. */
typedef struct pretok_work {
    text_span *spans, *next; /* the result, and the buffer the next regex splits into */
    size_t spans_cap, next_cap;
    void *match_data; /* pcre2_match_data_8 * */
} pretok_work;

/* Splits `text` (valid UTF-8) into w->spans. Returns the number of spans, or -1 on error (err
 * filled). */
int pretok_split(const pretokenizer *p, const char *text, size_t len, pretok_work *w, char *err, size_t err_len);
void pretok_work_free(pretok_work *w);

/* GPT-2 byte-level alphabet: byte → code point and back. */
uint32_t bytes_to_unicode(uint8_t b);
int unicode_to_byte(uint32_t cp); /* -1 if cp is not in the alphabet */

/* utf8 helpers */
/* Length llama.cpp gives a UTF-8 sequence from its first byte (1 for stray continuation bytes). */
static inline size_t utf8_len_from_lead(unsigned char c) {
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}
/* Encodes cp (<= 0x10FFFF) into out (4 bytes room); returns the byte count. */
size_t utf8_encode(uint32_t cp, char *out);
/* Decodes one code point the lenient way llama.cpp does: an invalid sequence consumes one byte
 * and yields U+FFFD. Surrogates and values past U+10FFFF also become U+FFFD here (llama.cpp would
 * throw on re-encoding those). */
uint32_t utf8_decode_lenient(const unsigned char *s, size_t len, size_t *consumed);

/* llama.cpp's whitespace set (tab..CR, space, NEL, NBSP, U+1680, U+2000..200A, U+2028/9, U+202F,
 * U+205F, U+3000). */
bool cp_is_whitespace(uint32_t cp);

#endif
