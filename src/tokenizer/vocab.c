/* Loading a vocabulary from tokenizer.ggml.*, the special-token bookkeeping llama.cpp does
 * (defaults per tokenizer type, EOG set, text-detected EOT/EOM/FIM tokens), and the rendering of
 * tokens back to text (token_to_piece, detokenize). */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/vocab_impl.h"
#include "util/err.h"

#define SPACE_MARK "\xE2\x96\x81" /* U+2581, SentencePiece's escaped space */

static void copy_gguf_str(char *dst, size_t cap, gguf_str s) {
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(dst, s.ptr, n);
    dst[n] = 0;
    /* names go into messages: keep them printable */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)dst[i] < 0x20) dst[i] = '?';
}

static int32_t find_text(const slm_vocab *v, const char *s) { return strmap_get(&v->token_to_id, s, strlen(s)); }

/* ---------- token table ---------- */

static int load_tokens(slm_vocab *v, const gguf_file *f, char *err, size_t err_len) {
    const gguf_str *strs;
    uint64_t n;
    int rc = gguf_get_str_arr(f, "tokenizer.ggml.tokens", &strs, &n, err, err_len);
    if (rc == -1) return slm_err(err, err_len, "%s: no tokenizer vocabulary (tokenizer.ggml.tokens)", gguf_name(f));
    if (rc) return -1;
    if (n == 0 || n > (uint64_t)INT32_MAX / 2)
        return slm_err(err, err_len, "%s: tokenizer.ggml.tokens has %llu entries", gguf_name(f), (unsigned long long)n);
    v->n_tokens = (int32_t)n;

    const gguf_kv *scores = NULL, *types = NULL;
    rc = gguf_get_arr(f, "tokenizer.ggml.scores", &scores, err, err_len);
    if (rc == -2) return -1;
    if (scores && ((scores->arr_type != GGUF_TYPE_FLOAT32 && scores->arr_type != GGUF_TYPE_INT32) || scores->arr_n < n))
        return slm_err(err, err_len, "%s: tokenizer.ggml.scores must be %llu float32 or int32 values", gguf_name(f),
                       (unsigned long long)n);
    rc = gguf_get_arr(f, "tokenizer.ggml.token_type", &types, err, err_len);
    if (rc == -2) return -1;
    if (types && (types->arr_type != GGUF_TYPE_INT32 || types->arr_n < n))
        return slm_err(err, err_len, "%s: tokenizer.ggml.token_type must be %llu int32 values", gguf_name(f),
                       (unsigned long long)n);

    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (strs[i].len > (uint64_t)INT32_MAX)
            return slm_err(err, err_len, "%s: token %llu is too long", gguf_name(f), (unsigned long long)i);
        total += strs[i].len ? (size_t)strs[i].len : 24; /* room for "[EMPTY_<i>]" */
    }
    v->text_arena = malloc(total + 1);
    v->tok_text = malloc(n * sizeof *v->tok_text);
    v->tok_len = malloc(n * sizeof *v->tok_len);
    v->tok_score = malloc(n * sizeof *v->tok_score);
    v->tok_attr = malloc(n * sizeof *v->tok_attr);
    if (!v->text_arena || !v->tok_text || !v->tok_len || !v->tok_score || !v->tok_attr ||
        strmap_init(&v->token_to_id, n) < 0)
        return slm_err(err, err_len, "out of memory loading %llu tokens", (unsigned long long)n);

    char *p = v->text_arena;
    for (uint64_t i = 0; i < n; i++) {
        size_t len = (size_t)strs[i].len;
        if (len)
            memcpy(p, strs[i].ptr, len);
        else /* llama.cpp names empty tokens so they stay distinct */
            len = (size_t)sprintf(p, "[EMPTY_%llu]", (unsigned long long)i);
        v->tok_text[i] = p;
        v->tok_len[i] = (uint32_t)len;
        p += len;
        if ((int)len > v->max_token_len) v->max_token_len = (int)len;
        v->tok_score[i] = scores ? (float)gguf_arr_f64(scores, i) : 0.0f;
        uint32_t attr = TOK_ATTR_NORMAL;
        if (types) {
            switch (gguf_arr_i64(types, i)) {
            case 1: attr = TOK_ATTR_NORMAL; break;
            case 2: attr = TOK_ATTR_UNKNOWN; break;
            case 3: attr = TOK_ATTR_CONTROL; break;
            case 4: attr = TOK_ATTR_USER_DEFINED; break;
            case 5: attr = TOK_ATTR_UNUSED; break;
            case 6: attr = TOK_ATTR_BYTE; break;
            default: attr = TOK_ATTR_UNDEFINED; break;
            }
        }
        v->tok_attr[i] = attr;
        int32_t prev;
        rc = strmap_put(&v->token_to_id, v->tok_text[i], len, (int32_t)i, &prev);
        if (rc < 0) return slm_err(err, err_len, "out of memory indexing tokens");
        if (rc == 1)
            return slm_err(err, err_len, "%s: duplicate token in vocabulary: ids %d and %llu have the same text",
                           gguf_name(f), prev, (unsigned long long)i);
    }
    return 0;
}

static int load_merges(slm_vocab *v, const gguf_file *f, char *err, size_t err_len) {
    const gguf_str *strs;
    uint64_t n;
    int rc = gguf_get_str_arr(f, "tokenizer.ggml.merges", &strs, &n, err, err_len);
    if (rc == -1) return slm_err(err, err_len, "%s: BPE vocabulary without tokenizer.ggml.merges", gguf_name(f));
    if (rc) return -1;
    if (n > (uint64_t)INT32_MAX / 2)
        return slm_err(err, err_len, "%s: too many merges (%llu)", gguf_name(f), (unsigned long long)n);
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) total += (size_t)strs[i].len;
    v->merge_arena = malloc(total + 1);
    if (!v->merge_arena || strmap_init(&v->merges, n) < 0) return slm_err(err, err_len, "out of memory loading merges");
    char *p = v->merge_arena;
    for (uint64_t i = 0; i < n; i++) {
        size_t len = (size_t)strs[i].len;
        /* "left right", split at the first space after the first byte; a line without one can
         * never match a pair, so it is left out */
        if (len < 2 || !memchr(strs[i].ptr + 1, ' ', len - 1)) continue;
        memcpy(p, strs[i].ptr, len);
        if (strmap_put(&v->merges, p, len, (int32_t)i, NULL) < 0) return slm_err(err, err_len, "out of memory");
        p += len;
    }
    return 0;
}

/* ---------- special tokens ---------- */

static void read_special_id(slm_vocab *v, const gguf_file *f, const char *key, slm_token *id) {
    if (*id >= v->n_tokens) *id = -1;
    uint32_t val;
    char ignore[8];
    /* a wrong type or an out-of-range id keeps the default, as llama.cpp does */
    if (gguf_get_u32(f, key, &val, ignore, sizeof ignore) == 0 && val < (uint32_t)v->n_tokens) *id = (slm_token)val;
}

static int read_flag(const gguf_file *f, const char *key, bool *flag, char *err, size_t err_len) {
    int rc = gguf_get_bool(f, key, flag, err, err_len);
    return rc == -2 ? -1 : 0;
}

static void force_control(slm_vocab *v, int32_t id) { v->tok_attr[id] |= TOK_ATTR_CONTROL; }

/* Tokens llama.cpp recognises by their text when the file does not name them. */
static void detect_by_text(slm_vocab *v) {
    static const char *const eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                            "<EOT>", "<\357\275\234end\342\226\201of\342\226\201sentence\357\275\234>"};
    static const char *const fim_pre[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<PRE>", "\xE2\x96\x81<PRE>"};
    static const char *const fim_suf[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<SUF>", "\xE2\x96\x81<SUF>"};
    static const char *const fim_mid[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<MID>", "\xE2\x96\x81<MID>"};
    static const char *const fim_pad[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>"};
    static const char *const fim_rep[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>"};
    static const char *const fim_sep[] = {"<|file_sep|>"};
    struct {
        slm_token *id;
        const char *const *texts;
        size_t n;
    } groups[] = {
        {&v->eot, eot_texts, sizeof eot_texts / sizeof *eot_texts},
        {&v->fim_pre, fim_pre, sizeof fim_pre / sizeof *fim_pre},
        {&v->fim_suf, fim_suf, sizeof fim_suf / sizeof *fim_suf},
        {&v->fim_mid, fim_mid, sizeof fim_mid / sizeof *fim_mid},
        {&v->fim_pad, fim_pad, sizeof fim_pad / sizeof *fim_pad},
        {&v->fim_rep, fim_rep, sizeof fim_rep / sizeof *fim_rep},
        {&v->fim_sep, fim_sep, sizeof fim_sep / sizeof *fim_sep},
    };
    /* llama.cpp walks its hash map, so which of several candidates wins there depends on hashing;
     * here the lowest id wins, which is deterministic. */
    for (size_t g = 0; g < sizeof groups / sizeof *groups; g++) {
        if (*groups[g].id >= 0) continue;
        int32_t best = -1;
        for (size_t k = 0; k < groups[g].n; k++) {
            int32_t id = find_text(v, groups[g].texts[k]);
            if (id >= 0 && (best < 0 || id < best)) best = id;
        }
        if (best >= 0) {
            *groups[g].id = best;
            force_control(v, best);
        }
    }
    if (v->eom < 0) {
        int32_t id = find_text(v, "<|eom_id|>");
        if (id >= 0) {
            v->eom = id;
            force_control(v, id);
        }
    }
    /* control tokens named "unused" are unused */
    for (int32_t i = 0; i < v->n_tokens; i++) {
        if (!(v->tok_attr[i] & TOK_ATTR_CONTROL) || (v->tok_attr[i] & TOK_ATTR_UNUSED)) continue;
        if (v->tok_len[i] >= 6 && memmem(v->tok_text[i], v->tok_len[i], "unused", 6)) v->tok_attr[i] |= TOK_ATTR_UNUSED;
    }
}

static void add_eog(slm_vocab *v, slm_token id) {
    if (id < 0 || id >= v->n_tokens || v->is_eog[id]) return;
    v->is_eog[id] = 1;
    v->eog_list[v->n_eog++] = id;
}

static int build_eog(slm_vocab *v) {
    static const char *const eog_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                            "<|eom_id|>", "<EOT>", "_<EOT>"};
    v->is_eog = calloc((size_t)v->n_tokens, 1);
    v->eog_list = malloc(32 * sizeof *v->eog_list);
    if (!v->is_eog || !v->eog_list) return -1;
    add_eog(v, v->fim_pad);
    add_eog(v, v->fim_rep);
    add_eog(v, v->fim_sep);
    for (size_t k = 0; k < sizeof eog_texts / sizeof *eog_texts; k++) {
        int32_t id = find_text(v, eog_texts[k]);
        if (id < 0) continue;
        add_eog(v, id);
        force_control(v, id);
    }
    add_eog(v, v->eos);
    add_eog(v, v->eot);
    add_eog(v, v->eom);
    /* keep the list sorted like llama.cpp's std::set */
    for (int i = 1; i < v->n_eog; i++)
        for (int j = i; j > 0 && v->eog_list[j - 1] > v->eog_list[j]; j--) {
            slm_token t = v->eog_list[j];
            v->eog_list[j] = v->eog_list[j - 1];
            v->eog_list[j - 1] = t;
        }
    return 0;
}

typedef struct special_entry {
    uint32_t len;
    int32_t id;
} special_entry;

/* Longest text first so a special token is never split by a shorter one inside it; equal
 * lengths by id, to be deterministic. */
static int cmp_special(const void *a, const void *b) {
    const special_entry *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

static int build_special_cache(slm_vocab *v) {
    int n = 0;
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (v->tok_attr[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN)) n++;
    special_entry *e = malloc((size_t)(n ? n : 1) * sizeof *e);
    v->special_tokens = malloc((size_t)(n ? n : 1) * sizeof *v->special_tokens);
    if (!e || !v->special_tokens) {
        free(e);
        return -1;
    }
    n = 0;
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (v->tok_attr[i] & (TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN))
            e[n++] = (special_entry){v->tok_len[i], i};
    qsort(e, (size_t)n, sizeof *e, cmp_special);
    for (int i = 0; i < n; i++) v->special_tokens[i] = e[i].id;
    v->n_special = n;
    free(e);
    return 0;
}

/* Model-specific attribute tweaks llama.cpp applies by name. */
static void apply_name_quirks(slm_vocab *v, const gguf_file *f) {
    char name[128] = "";
    gguf_str s;
    char ignore[8];
    if (gguf_get_str(f, "general.name", &s, ignore, sizeof ignore) == 0) copy_gguf_str(name, sizeof name, s);
    for (char *c = name; *c; c++) *c = (char)tolower((unsigned char)*c);
    if (strstr(v->pre_name, "jina-v2-de") || strstr(v->pre_name, "jina-v2-es") || strstr(v->pre_name, "jina-v2-code")) {
        int32_t id = find_text(v, "<mask>");
        if (id >= 0) v->tok_attr[id] |= TOK_ATTR_LSTRIP;
    } else if (strstr(name, "phi-3") || strstr(name, "phi3")) {
        for (int i = 0; i < v->n_special; i++) v->tok_attr[v->special_tokens[i]] |= TOK_ATTR_RSTRIP;
        int32_t id = find_text(v, "</s>");
        if (id >= 0) v->tok_attr[id] |= TOK_ATTR_RSTRIP;
        static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (int k = 0; k < 3; k++) {
            id = find_text(v, keep[k]);
            if (id >= 0) v->tok_attr[id] &= ~(uint32_t)TOK_ATTR_RSTRIP;
        }
    }
}

/* ---------- pieces ---------- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return 0;
}

/* The byte of a <0xXX> token. */
static unsigned char token_byte(const slm_vocab *v, int32_t id) {
    if (v->tok_len[id] < 5) return 0;
    return (unsigned char)(hexval(v->tok_text[id][3]) * 16 + hexval(v->tok_text[id][4]));
}

/* Renders token `id` with special tokens shown, into out (NULL: only measure). */
static size_t render_piece(const slm_vocab *v, int32_t id, char *out) {
    const uint32_t attr = v->tok_attr[id];
    const char *text = v->tok_text[id];
    const size_t len = v->tok_len[id];
    if (attr & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED)) {
        if (out) memcpy(out, text, len);
        return len;
    }
    if (attr & TOK_ATTR_NORMAL) {
        size_t o = 0;
        if (v->kind != VOCAB_BPE) {
            for (size_t i = 0; i < len;) {
                if (i + 3 <= len && memcmp(text + i, SPACE_MARK, 3) == 0) {
                    if (out) out[o] = ' ';
                    o++;
                    i += 3;
                } else {
                    if (out) out[o] = text[i];
                    o++;
                    i++;
                }
            }
            return o;
        }
        for (size_t i = 0; i < len;) {
            size_t used;
            uint32_t cp = utf8_decode_lenient((const unsigned char *)text + i, len - i, &used);
            int b = unicode_to_byte(cp);
            if (b >= 0) {
                if (out) out[o] = (char)b;
                o++;
            } else { /* llama.cpp's marker for a character outside the byte alphabet */
                char enc[4], tmp[64];
                size_t n = utf8_encode(cp, enc);
                size_t t = (size_t)snprintf(tmp, sizeof tmp, "[UNK_BYTE_0x");
                for (size_t k = 0; k < n; k++) t += (size_t)snprintf(tmp + t, sizeof tmp - t, "%02x", (unsigned char)enc[k]);
                if (out) {
                    memcpy(out + o, tmp, t);
                    memcpy(out + o + t, text, len);
                    out[o + t + len] = ']';
                }
                o += t + len + 1;
            }
            i += used;
        }
        return o;
    }
    if (attr & TOK_ATTR_BYTE) {
        if (out) out[0] = (char)token_byte(v, id);
        return 1;
    }
    return 0;
}

/* Renders every token once, so token_to_piece and detokenize only copy. A piece must fit the int
 * lengths of the rendering API (copy_piece would otherwise have to drop it). */
static int build_pieces(slm_vocab *v, const gguf_file *f, char *err, size_t err_len) {
    size_t total = 0;
    v->piece_off = malloc((size_t)v->n_tokens * sizeof *v->piece_off);
    v->piece_len = malloc((size_t)v->n_tokens * sizeof *v->piece_len);
    if (!v->piece_off || !v->piece_len) return slm_err(err, err_len, "out of memory building the token pieces");
    for (int32_t i = 0; i < v->n_tokens; i++) {
        size_t n = render_piece(v, i, NULL);
        if (n > (size_t)INT_MAX / 2 || total + n > UINT32_MAX)
            return slm_err(err, err_len, "%s: token %d renders to %zu bytes; the token texts are too long",
                           gguf_name(f), i, n);
        v->piece_off[i] = (uint32_t)total;
        v->piece_len[i] = (uint32_t)n;
        total += n;
    }
    v->piece_arena = malloc(total + 1);
    if (!v->piece_arena) return slm_err(err, err_len, "out of memory building the token pieces");
    for (int32_t i = 0; i < v->n_tokens; i++) render_piece(v, i, v->piece_arena + v->piece_off[i]);
    return 0;
}

static void build_byte_tables(slm_vocab *v) {
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char name[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
        int32_t id = strmap_get(&v->token_to_id, name, 6);
        char c = (char)b;
        int32_t raw = strmap_get(&v->token_to_id, &c, 1);
        v->spm_byte_token[b] = id >= 0 ? id : raw;
        v->char_token[b] = raw;
    }
}

/* ---------- load ---------- */

int slm_vocab_load(const gguf_file *f, slm_vocab **out, char *err, size_t err_len) {
    *out = NULL;
    slm_vocab *v = calloc(1, sizeof *v);
    if (!v) return slm_err(err, err_len, "out of memory");
    gguf_str s;
    int rc = gguf_get_str(f, "tokenizer.ggml.model", &s, err, err_len);
    if (rc == -1) {
        slm_vocab_free(v);
        return slm_err(err, err_len, "%s: no tokenizer (tokenizer.ggml.model is missing)", gguf_name(f));
    }
    if (rc) goto fail;
    copy_gguf_str(v->model_name, sizeof v->model_name, s);
    if (gguf_get_str(f, "tokenizer.ggml.pre", &s, err, err_len) == 0) copy_gguf_str(v->pre_name, sizeof v->pre_name, s);

    v->bos = v->eos = v->eot = v->eom = v->unk = v->sep = v->pad = v->mask = -1;
    v->fim_pre = v->fim_suf = v->fim_mid = v->fim_pad = v->fim_rep = v->fim_sep = -1;
    if (strcmp(v->model_name, "llama") == 0) {
        v->kind = VOCAB_SPM;
        v->bos = 1, v->eos = 2, v->unk = 0;
        v->add_space_prefix = true, v->add_bos = true;
    } else if (strcmp(v->model_name, "gpt2") == 0) {
        v->kind = VOCAB_BPE;
        v->bos = 11, v->eos = 11;
        v->clean_spaces = true;
    } else if (strcmp(v->model_name, "bert") == 0) {
        v->kind = VOCAB_WPM;
        v->bos = 101, v->unk = 100, v->sep = 102, v->pad = 0, v->mask = 103;
        v->clean_spaces = true, v->add_bos = true;
        v->lowercase = v->strip_accents = true;
    } else {
        slm_err(err, err_len, "%s: unsupported tokenizer model '%s' (tokenizer.ggml.model)", gguf_name(f),
                v->model_name);
        goto fail;
    }
    if (read_flag(f, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err, err_len) < 0) goto fail;
    if (load_tokens(v, f, err, err_len) < 0) goto fail;
    if (v->kind == VOCAB_BPE) {
        if (load_merges(v, f, err, err_len) < 0) goto fail;
        if (pretok_init(v, v->pre_name, err, err_len) < 0) goto fail;
    }

    static const struct {
        const char *key;
        size_t field;
    } ids[] = {
        {"tokenizer.ggml.bos_token_id", offsetof(slm_vocab, bos)},
        {"tokenizer.ggml.eos_token_id", offsetof(slm_vocab, eos)},
        {"tokenizer.ggml.eot_token_id", offsetof(slm_vocab, eot)},
        {"tokenizer.ggml.eom_token_id", offsetof(slm_vocab, eom)},
        {"tokenizer.ggml.unknown_token_id", offsetof(slm_vocab, unk)},
        {"tokenizer.ggml.seperator_token_id", offsetof(slm_vocab, sep)},
        {"tokenizer.ggml.padding_token_id", offsetof(slm_vocab, pad)},
        {"tokenizer.ggml.mask_token_id", offsetof(slm_vocab, mask)},
        {"tokenizer.ggml.fim_pre_token_id", offsetof(slm_vocab, fim_pre)},
        {"tokenizer.ggml.fim_suf_token_id", offsetof(slm_vocab, fim_suf)},
        {"tokenizer.ggml.fim_mid_token_id", offsetof(slm_vocab, fim_mid)},
        {"tokenizer.ggml.fim_pad_token_id", offsetof(slm_vocab, fim_pad)},
        {"tokenizer.ggml.fim_rep_token_id", offsetof(slm_vocab, fim_rep)},
        {"tokenizer.ggml.fim_sep_token_id", offsetof(slm_vocab, fim_sep)},
        {"tokenizer.ggml.prefix_token_id", offsetof(slm_vocab, fim_pre)},
        {"tokenizer.ggml.suffix_token_id", offsetof(slm_vocab, fim_suf)},
        {"tokenizer.ggml.middle_token_id", offsetof(slm_vocab, fim_mid)},
    };
    for (size_t k = 0; k < sizeof ids / sizeof *ids; k++)
        read_special_id(v, f, ids[k].key, (slm_token *)((char *)v + ids[k].field));
    if (v->kind == VOCAB_WPM) read_special_id(v, f, "tokenizer.ggml.cls_token_id", &v->bos);

    if (read_flag(f, "tokenizer.ggml.add_bos_token", &v->add_bos, err, err_len) < 0 ||
        read_flag(f, "tokenizer.ggml.add_eos_token", &v->add_eos, err, err_len) < 0)
        goto fail;
    if (v->add_bos && v->bos < 0) {
        slm_err(err, err_len, "%s: tokenizer.ggml.add_bos_token is true, but there is no valid BOS token id",
                gguf_name(f));
        goto fail;
    }
    if (v->add_eos && v->eos < 0) {
        slm_err(err, err_len, "%s: tokenizer.ggml.add_eos_token is true, but there is no valid EOS token id",
                gguf_name(f));
        goto fail;
    }
    if (v->kind == VOCAB_WPM && (v->bos < 0 || v->sep < 0)) {
        slm_err(err, err_len, "%s: WordPiece vocabulary without valid [CLS]/[SEP] ids", gguf_name(f));
        goto fail;
    }
    if (v->kind == VOCAB_WPM) {
        if (read_flag(f, "tokenizer.ggml.normalizer.lowercase", &v->lowercase, err, err_len) < 0) goto fail;
        v->strip_accents = v->lowercase;
        if (read_flag(f, "tokenizer.ggml.normalizer.strip_accents", &v->strip_accents, err, err_len) < 0) goto fail;
    }

    detect_by_text(v);
    if (build_eog(v) < 0 || build_special_cache(v) < 0) {
        slm_err(err, err_len, "out of memory building the vocabulary tables");
        goto fail;
    }
    if (build_pieces(v, f, err, err_len) < 0) goto fail;
    apply_name_quirks(v, f);
    build_byte_tables(v);
    *out = v;
    return 0;
fail:
    slm_vocab_free(v);
    return -1;
}

void slm_vocab_free(slm_vocab *v) {
    if (!v) return;
    pretok_free(&v->pretok);
    strmap_free(&v->token_to_id);
    strmap_free(&v->merges);
    free(v->text_arena);
    free(v->tok_text);
    free(v->tok_len);
    free(v->tok_score);
    free(v->tok_attr);
    free(v->merge_arena);
    free(v->special_tokens);
    free(v->is_eog);
    free(v->eog_list);
    free(v->piece_arena);
    free(v->piece_off);
    free(v->piece_len);
    free(v);
}

/* ---------- accessors ---------- */

int slm_vocab_n_tokens(const slm_vocab *v) { return v->n_tokens; }
slm_token slm_vocab_bos(const slm_vocab *v) { return v->bos; }
slm_token slm_vocab_eos(const slm_vocab *v) { return v->eos; }
slm_token slm_vocab_eot(const slm_vocab *v) { return v->eot; }
slm_token slm_vocab_eom(const slm_vocab *v) { return v->eom; }
slm_token slm_vocab_unk(const slm_vocab *v) { return v->unk; }
slm_token slm_vocab_sep(const slm_vocab *v) { return v->sep; }
slm_token slm_vocab_pad(const slm_vocab *v) { return v->pad; }
bool slm_vocab_get_add_bos(const slm_vocab *v) { return v->add_bos; }
bool slm_vocab_get_add_eos(const slm_vocab *v) { return v->add_eos; }
const char *slm_vocab_model_name(const slm_vocab *v) { return v->model_name; }
const char *slm_vocab_pre_name(const slm_vocab *v) { return v->pre_name; }

bool slm_vocab_is_eog(const slm_vocab *v, slm_token t) { return t >= 0 && t < v->n_tokens && v->is_eog[t]; }

int slm_vocab_eog_ids(const slm_vocab *v, const slm_token **ids) {
    *ids = v->eog_list;
    return v->n_eog;
}

bool slm_vocab_is_control(const slm_vocab *v, slm_token t) {
    return t >= 0 && t < v->n_tokens && (v->tok_attr[t] & TOK_ATTR_CONTROL);
}

uint32_t slm_vocab_token_attr(const slm_vocab *v, slm_token t) {
    return t >= 0 && t < v->n_tokens ? v->tok_attr[t] : 0;
}

float slm_vocab_token_score(const slm_vocab *v, slm_token t) { return t >= 0 && t < v->n_tokens ? v->tok_score[t] : 0; }

const char *slm_vocab_token_text(const slm_vocab *v, slm_token t, size_t *len) {
    if (t < 0 || t >= v->n_tokens) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = v->tok_len[t];
    return v->tok_text[t];
}

slm_token slm_vocab_find(const slm_vocab *v, const char *text, size_t len) {
    return strmap_get(&v->token_to_id, text, len);
}

/* ---------- rendering ---------- */

/* Copies the cached piece, skipping up to `lstrip` leading spaces. */
static int copy_piece(const slm_vocab *v, slm_token t, bool render_special, int lstrip, char *buf, int cap) {
    if (t < 0 || t >= v->n_tokens) return 0;
    if (!render_special && (v->tok_attr[t] & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL))) return 0;
    const char *p = v->piece_arena + v->piece_off[t];
    size_t n = v->piece_len[t];
    for (int i = 0; i < lstrip && n && *p == ' '; i++) p++, n--;
    if (n > (size_t)INT_MAX / 2) return 0;
    if ((size_t)cap < n) return -(int)n;
    if (n) memcpy(buf, p, n);
    return (int)n;
}

int slm_vocab_token_to_piece(const slm_vocab *v, slm_token t, bool render_special, char *buf, int cap) {
    if (cap < 0) cap = 0;
    return copy_piece(v, t, render_special, 0, buf, cap);
}

/* clean_up_tokenization_spaces as llama.cpp does it, in place; returns the new length. */
static int clean_spaces(char *text, int total) {
    /* " ?", " !", " .", " ," lose the space */
    int n = total ? 1 : 0;
    for (int i = 1; i < total; i++) {
        char x = text[i];
        if (text[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) n--;
        text[n++] = x;
    }
    /* " ' " becomes "'" */
    total = n;
    n = total ? 1 : 0;
    for (int i = 1; i < total; i++) {
        char x = text[i];
        if (x == '\'' && i + 1 < total && text[i - 1] == ' ' && text[i + 1] == ' ') {
            n--;
            text[++i] = '\0';
        }
        text[n++] = x;
    }
    /* " 's", " 'm", " 're", " 've" lose the space */
    total = n;
    n = total ? 1 : 0;
    for (int i = 1; i < total; i++) {
        char x = text[i];
        if (text[i - 1] == ' ' && x == '\'' && i + 1 < total) {
            char x1 = text[i + 1];
            if (x1 == 's' || x1 == 'm') n--;
            else if (i + 2 < total) {
                char x2 = text[i + 2];
                if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) n--;
            }
        }
        text[n++] = x;
    }
    return n;
}

int slm_vocab_detokenize(const slm_vocab *v, const slm_token *tokens, int n, bool remove_special, bool render_special,
                         char *buf, int cap) {
    if (cap < 0) cap = 0;
    if (n < 0) n = 0;
    int avail = cap, total = 0;
    bool remove_space = v->add_space_prefix;
    if (remove_special && v->add_bos && n > 0 && tokens[0] == v->bos) {
        remove_space = false;
        tokens++;
        n--;
    }
    if (remove_special && v->add_eos && n > 0 && tokens[n - 1] == v->eos) n--;
    char *p = buf;
    for (int i = 0; i < n; i++) {
        int k = copy_piece(v, tokens[i], render_special, remove_space ? 1 : 0, p, avail);
        remove_space = false;
        if (k < 0) {
            avail = 0;
            if (total > INT_MAX + k) return INT_MIN;
            total -= k;
        } else if (k > 0) {
            avail -= k;
            p += k;
            total += k;
        }
    }
    if (total > cap) return -total;
    if (v->clean_spaces) total = clean_spaces(buf, total);
    return total;
}
