/* Byte-level BPE pre-tokenizers: the split regexes of each tokenizer.ggml.pre name, compiled with
 * PCRE2 (UTF + UCP, JIT). As in llama.cpp, a pre-tokenizer is a list of regexes; each one splits
 * every piece left by the previous ones, and both its matches and the text between them become
 * pieces, so a lookahead never sees past the end of the piece it runs on. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <limits.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/vocab_impl.h"
#include "util/buf.h"
#include "util/err.h"

/* llama.cpp's whitespace set (its \s): ASCII \t..\r and space plus the Unicode spaces. Written out
 * because PCRE2's \s differs from it on U+0085 and U+180E-like edge cases. */
#define WS_SET "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_CONTRACTIONS_ANYCASE "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
#define RE_LLAMA3                                                                                             \
    RE_CONTRACTIONS_ANYCASE "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|" \
                            "\\s+(?!\\S)|\\s+"
#define RE_QWEN2                                                                                          \
    RE_CONTRACTIONS_ANYCASE "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|" \
                            "\\s+(?!\\S)|\\s+"
#define RE_CJK_DEEPSEEK "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"
/* Cased letters as the deepseek-llm tokenizer.json lists them. */
#define RE_DEEPSEEK_LETTERS                                                                                      \
    "\\s?[\\x{41}-\\x{5A}\\x{61}-\\x{7A}\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"    \
    "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}"         \
    "\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-"       \
    "\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"     \
    "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-"   \
    "\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-"     \
    "\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-"     \
    "\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}"      \
    "\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}"      \
    "\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}"     \
    "\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-"     \
    "\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}"     \
    "\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}"     \
    "\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+"
#define RE_PORO " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{0964}\\x{06D4}\\x{060C})]+"
#define RE_MIXED_CASE_WORDS(contraction)                                                              \
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+" contraction                 \
    "|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*" contraction

typedef struct pre_def {
    const char *names[8];
    const char *regex[PRETOK_MAX_REGEX + 1];
    bool keep_clean_spaces; /* false: detokenize without clean_up_tokenization_spaces */
    bool ignore_merges;     /* a word that is a whole token is not merged */
    bool add_bos;           /* default add_bos before tokenizer.ggml.add_bos_token */
    bool no_bos;            /* the BOS id is dropped */
} pre_def;

static const pre_def k_pre_defs[] = {
    {{"default"},
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
     true, false, false, false},
    {{"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"}, {RE_LLAMA3}, true, true, true, false},
    {{"dbrx", "smaug-bpe"}, {RE_LLAMA3}, true, false, false, false},
    {{"deepseek-llm"},
     {"[\r\n]", RE_DEEPSEEK_LETTERS,
      "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+", "\\s+$",
      RE_CJK_DEEPSEEK, "\\p{N}+"},
     false, false, false, false},
    {{"deepseek-coder"},
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RE_CJK_DEEPSEEK, "\\p{N}"},
     false, false, false, false},
    {{"deepseek-v3"},
     {"\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| "
      "?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
     false, false, false, false},
    {{"falcon"},
     {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RE_GPT2, "[0-9][0-9][0-9]"},
     true, false, false, false},
    {{"starcoder", "refact", "codeshell", "exaone", "minerva-7b"}, {"\\p{N}", RE_GPT2}, true, false, false, false},
    {{"smollm", "command-r"}, {"\\p{N}", RE_GPT2}, false, false, false, false},
    {{"gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "mpt"},
     {RE_GPT2},
     true, false, false, false},
    {{"olmo", "jais"}, {RE_GPT2}, true, false, false, false},
    {{"qwen2", "deepseek-r1-qwen"}, {RE_QWEN2}, false, false, false, false},
    {{"stablelm2", "megrez"}, {RE_QWEN2}, true, false, false, false},
    {{"poro-chat"}, {RE_PORO}, false, false, false, false},
    {{"bloom", "gpt3-finnish"}, {RE_PORO}, true, false, false, false},
    {{"viking"}, {RE_PORO, "\\p{N}"}, false, false, false, false},
    {{"chatglm-bpe"}, {RE_LLAMA3}, true, false, false, true},
    {{"tekken"},
     {RE_MIXED_CASE_WORDS("") "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     false, true, true, false},
    {{"chameleon"},
     {"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}",
      "[\\p{P}!-/:-@\\[-`{-~]", RE_GPT2},
     false, false, true, false},
    {{"gpt-4o"},
     {RE_MIXED_CASE_WORDS(RE_CONTRACTIONS_ANYCASE "?") "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|"
                                                      "\\s+(?!\\S)|\\s+"},
     false, false, false, false},
};

/* Rewrites \s and \S into llama.cpp's whitespace set. Returns a malloc'd pattern or NULL. */
static char *expand_whitespace(const char *pattern) {
    size_t n = strlen(pattern), extra = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (pattern[i] == '\\') {
            if (pattern[i + 1] == 's' || pattern[i + 1] == 'S') extra += sizeof(WS_SET) + 4;
            i++;
        }
    char *out = malloc(n + extra + 1);
    if (!out) return NULL;
    size_t o = 0;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = pattern[i];
        if (c == '\\' && i + 1 < n) {
            char e = pattern[i + 1];
            i++;
            if (e == 's' || e == 'S') {
                if (in_class && e == 'S') { /* no pattern needs a negated set inside a class */
                    free(out);
                    return NULL;
                }
                const char *open = in_class ? "" : (e == 's' ? "[" : "[^");
                o += (size_t)sprintf(out + o, "%s%s%s", open, WS_SET, in_class ? "" : "]");
                continue;
            }
            out[o++] = c;
            out[o++] = e;
            continue;
        }
        if (c == '[' && !in_class) in_class = true;
        else if (c == ']' && in_class) in_class = false;
        out[o++] = c;
    }
    out[o] = 0;
    return out;
}

static const pre_def *find_pre(const char *name) {
    for (size_t d = 0; d < sizeof k_pre_defs / sizeof k_pre_defs[0]; d++)
        for (int k = 0; k < 8 && k_pre_defs[d].names[k]; k++)
            if (strcmp(k_pre_defs[d].names[k], name) == 0) return &k_pre_defs[d];
    return NULL;
}

int pretok_init(slm_vocab *v, const char *pre_name, char *err, size_t err_len) {
    const pre_def *def = find_pre(pre_name[0] ? pre_name : "default");
    if (!def) return slm_err(err, err_len, "unsupported pre-tokenizer '%s' (tokenizer.ggml.pre)", pre_name);
    v->clean_spaces = def->keep_clean_spaces;
    v->ignore_merges = def->ignore_merges;
    if (def->add_bos) v->add_bos = true;
    if (def->no_bos) v->bos = -1;
    pretokenizer *p = &v->pretok;
    p->n_regex = 0;
    for (int r = 0; r < PRETOK_MAX_REGEX && def->regex[r]; r++) {
        char *pattern = expand_whitespace(def->regex[r]);
        if (!pattern) {
            pretok_free(p);
            return slm_err(err, err_len, "pre-tokenizer '%s': cannot prepare regex %d", pre_name, r);
        }
        int code_err;
        PCRE2_SIZE err_off;
        pcre2_code *code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                         PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &code_err, &err_off, NULL);
        free(pattern);
        if (!code) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(code_err, msg, sizeof msg);
            pretok_free(p);
            return slm_err(err, err_len, "pre-tokenizer '%s': regex %d does not compile at %zu: %s", pre_name, r,
                           (size_t)err_off, (const char *)msg);
        }
        /* JIT is an optimisation only: without it pcre2_match interprets. */
        (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
        p->code[p->n_regex++] = code;
    }
    return 0;
}

void pretok_free(pretokenizer *p) {
    for (int r = 0; r < p->n_regex; r++) pcre2_code_free((pcre2_code *)p->code[r]);
    p->n_regex = 0;
}

static bool push_span(text_span **spans, size_t *cap, size_t *n, size_t start, size_t len) {
    if (!slm_grow((void **)spans, cap, *n + 1, sizeof **spans, 64)) return false;
    (*spans)[(*n)++] = (text_span){start, len};
    return true;
}

void pretok_work_free(pretok_work *w) {
    free(w->spans);
    free(w->next);
    pcre2_match_data_free((pcre2_match_data *)w->match_data);
    *w = (pretok_work){0};
}

int pretok_split(const pretokenizer *p, const char *text, size_t len, pretok_work *w, char *err, size_t err_len) {
    size_t n = 0;
    if (len == 0) return 0;
    if (!push_span(&w->spans, &w->spans_cap, &n, 0, len)) return slm_err(err, err_len, "out of memory");
    if (p->n_regex == 0) return (int)n;
    if (!w->match_data && !(w->match_data = pcre2_match_data_create(8, NULL)))
        return slm_err(err, err_len, "out of memory");
    pcre2_match_data *md = w->match_data;
    for (int r = 0; r < p->n_regex; r++) {
        const pcre2_code *code = p->code[r];
        size_t n_next = 0;
        for (size_t s = 0; s < n; s++) {
            const size_t base = w->spans[s].start, span_len = w->spans[s].len;
            const PCRE2_SPTR subject = (PCRE2_SPTR)(text + base);
            size_t pos = 0, last = 0;
            while (pos < span_len) {
                int rc = pcre2_match(code, subject, span_len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
                if (rc == PCRE2_ERROR_NOMATCH) break;
                if (rc < 0) {
                    PCRE2_UCHAR msg[160];
                    pcre2_get_error_message(rc, msg, sizeof msg);
                    return slm_err(err, err_len, "pre-tokenizer regex failed: %s", (const char *)msg);
                }
                const PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                size_t ms = ov[0], me = ov[1];
                if (me <= ms) { /* an empty match splits nothing: look again one character on */
                    pos = ms + utf8_len_from_lead((unsigned char)text[base + ms]);
                    continue;
                }
                if ((ms > last && !push_span(&w->next, &w->next_cap, &n_next, base + last, ms - last)) ||
                    !push_span(&w->next, &w->next_cap, &n_next, base + ms, me - ms))
                    return slm_err(err, err_len, "out of memory");
                last = pos = me;
            }
            if (last < span_len && !push_span(&w->next, &w->next_cap, &n_next, base + last, span_len - last))
                return slm_err(err, err_len, "out of memory");
        }
        /* the pieces of this regex are what the next one splits */
        text_span *tmp = w->spans;
        size_t tmp_cap = w->spans_cap;
        w->spans = w->next;
        w->spans_cap = w->next_cap;
        w->next = tmp;
        w->next_cap = tmp_cap;
        n = n_next;
    }
    if (n > INT_MAX) return slm_err(err, err_len, "pre-tokenizer: text splits into too many pieces");
    return (int)n;
}
