/* classify / extract / summarize on the public API (see tasks.h). */
#include "tasks/tasks.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample/json_validate.h"
#include "util/buf.h"
#include "util/err.h"

void slm_task_result_free(slm_task_result *r) {
    if (!r) return;
    free(r->text);
    memset(r, 0, sizeof *r);
}

/* ---------- prompts ---------- */

/* The prompt text: the chat template with a system and a user message, or, for models without a
 * template, "system\n\nuser\n\n<plain_tail>". */
static char *render_prompt(const slm_model *m, const slm_task_params *p, const char *system, const char *user,
                           const char *plain_tail, bool *chat, char *err, size_t err_len) {
    slm_chat_message msgs[2] = {{"system", system}, {"user", user}};
    char *out = NULL;
    char cerr[256];
    if (slm_chat_render(m, p->template_name, msgs, 2, true, &out, cerr, sizeof cerr) == 0) {
        *chat = true;
        return out;
    }
    if (p->template_name) {
        slm_err(err, err_len, "%s", cerr);
        return NULL;
    }
    *chat = false;
    size_t n = strlen(system) + strlen(user) + strlen(plain_tail) + 8;
    out = malloc(n);
    if (!out) {
        slm_err(err, err_len, "out of memory");
        return NULL;
    }
    snprintf(out, n, "%s\n\n%s\n\n%s", system, user, plain_tail);
    return out;
}

static slm_token *tokenize(const slm_model *m, const char *text, bool special, int *n, char *err, size_t err_len) {
    size_t len = strlen(text);
    int cap = (int)(len < (1u << 26) ? len : (1u << 26)) + 16;
    for (int attempt = 0; attempt < 2; attempt++) {
        slm_token *t = malloc(sizeof *t * (size_t)cap);
        if (!t) {
            slm_err(err, err_len, "out of memory");
            return NULL;
        }
        int k = slm_tokenize(m, text, len, special, special, t, cap, err, err_len);
        if (k >= 0) {
            *n = k;
            return t;
        }
        free(t);
        if (k < -1 && -k > cap) {
            cap = -k;
            continue;
        }
        return NULL;
    }
    slm_err(err, err_len, "tokenizer size mismatch");
    return NULL;
}

/* Decodes the prompt into `seq` reusing any cached prefix; copies the last position's logits. */
static int feed(slm_context *ctx, int seq, const slm_token *toks, int n, float *last, char *err, size_t err_len) {
    int n_ctx = slm_context_n_ctx(ctx);
    if (n < 1) return slm_err(err, err_len, "empty prompt");
    if (n >= n_ctx) return slm_err(err, err_len, "the input needs %d tokens, the context holds %d", n, n_ctx);
    const slm_token *cached = slm_kv_seq_tokens(ctx, seq);
    int n_cached = slm_kv_seq_len(ctx, seq), common = 0;
    while (cached && common < n_cached && common < n - 1 && cached[common] == toks[common]) common++;
    slm_kv_seq_truncate(ctx, seq, common);
    int n_batch = slm_context_n_batch(ctx);
    int32_t *seqs = malloc(sizeof *seqs * (size_t)n_batch);
    if (!seqs) return slm_err(err, err_len, "out of memory");
    for (int i = 0; i < n_batch; i++) seqs[i] = seq;
    for (int i = common; i < n; i += n_batch) {
        int k = n - i < n_batch ? n - i : n_batch;
        slm_batch b = {k, toks + i, NULL, seqs, NULL};
        if (slm_decode(ctx, &b, err, err_len)) {
            free(seqs);
            return -1;
        }
    }
    free(seqs);
    const float *l = slm_logits(ctx, 0);
    if (!l) return slm_err(err, err_len, "no logits after the prompt");
    memcpy(last, l, sizeof *last * (size_t)slm_model_n_vocab(slm_context_model(ctx)));
    return 0;
}

static double log_softmax_at(const float *l, int n, int idx) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (l[i] > mx) mx = l[i];
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)l[i] - mx);
    return (double)l[idx] - mx - log(s);
}

/* ---------- classify ---------- */

static char *join_labels(const char *const *labels, int n) {
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(labels[i]) + 2;
    char *s = malloc(len);
    if (!s) return NULL;
    s[0] = 0;
    for (int i = 0; i < n; i++) {
        if (i) strcat(s, ", ");
        strcat(s, labels[i]);
    }
    return s;
}

/* log P(continuation tokens [+ end token] | prompt already in seq at length base). */
static int score_continuation(slm_context *ctx, int seq, int base, const float *prompt_logits, const slm_token *cont,
                              int k, slm_token end, double *out, char *err, size_t err_len) {
    const slm_model *m = slm_context_model(ctx);
    int nv = slm_model_n_vocab(m);
    double lp = log_softmax_at(prompt_logits, nv, cont[0]);
    bool need_tail = k > 1 || end >= 0;
    if (need_tail) {
        if (base + k > slm_context_n_ctx(ctx)) return slm_err(err, err_len, "a label does not fit in the context");
        int8_t *want = malloc((size_t)k);
        int32_t *seqs = malloc(sizeof *seqs * (size_t)k);
        if (!want || !seqs) {
            free(want);
            free(seqs);
            return slm_err(err, err_len, "out of memory");
        }
        for (int j = 0; j < k; j++) want[j] = 1, seqs[j] = seq;
        slm_kv_seq_truncate(ctx, seq, base);
        slm_batch b = {k, cont, NULL, seqs, want};
        int rc = slm_decode(ctx, &b, err, err_len);
        free(want);
        free(seqs);
        if (rc) return -1;
        for (int j = 1; j < k; j++) lp += log_softmax_at(slm_logits(ctx, j - 1), nv, cont[j]);
        if (end >= 0) lp += log_softmax_at(slm_logits(ctx, k - 1), nv, end);
        slm_kv_seq_truncate(ctx, seq, base);
    }
    *out = lp;
    return 0;
}

int slm_task_classify(slm_context *ctx, const slm_task_params *p, const char *input, const char *const *labels,
                      int n_labels, bool multi_label, double *probs, char *err, size_t err_len) {
    slm_task_params dp = {0};
    if (!p) p = &dp;
    if (!ctx || !input || !labels || !probs) return slm_err(err, err_len, "classify: missing argument");
    if (n_labels < 1) return slm_err(err, err_len, "classify: no labels");
    if (!multi_label && n_labels < 2) return slm_err(err, err_len, "classify: need at least two labels (or multi_label)");
    for (int i = 0; i < n_labels; i++) {
        if (!labels[i] || !labels[i][0]) return slm_err(err, err_len, "classify: label %d is empty", i + 1);
        for (int j = 0; j < i; j++)
            if (!strcmp(labels[i], labels[j])) return slm_err(err, err_len, "classify: label '%s' is repeated", labels[i]);
    }
    const slm_model *m = slm_context_model(ctx);
    int nv = slm_model_n_vocab(m);
    slm_token end = slm_token_eos(m);
    float *prompt_logits = malloc(sizeof *prompt_logits * (size_t)nv);
    char *label_list = join_labels(labels, n_labels);
    char *user = NULL, *prompt = NULL;
    slm_token *toks = NULL, *cont = NULL;
    double *scores = calloc((size_t)n_labels * 2, sizeof *scores);
    int rc = -1, n_toks = 0;
    if (!prompt_logits || !label_list || !scores) {
        slm_err(err, err_len, "out of memory");
        goto out;
    }
    size_t ulen = strlen(input) + strlen(label_list) + 256;
    for (int i = 0; i < n_labels; i++) ulen += strlen(labels[i]);
    user = malloc(ulen);
    if (!user) {
        slm_err(err, err_len, "out of memory");
        goto out;
    }
    for (int i = 0; i < (multi_label ? n_labels : 1); i++) {
        bool chat;
        free(prompt);
        free(toks);
        toks = NULL;
        if (multi_label) {
            snprintf(user, ulen, "Text: %s\n\nDoes this text belong to the category \"%s\"? Answer yes or no.", input,
                     labels[i]);
            prompt = render_prompt(m, p, "You answer yes or no.", user, "Answer:", &chat, err, err_len);
        } else {
            snprintf(user, ulen, "Text: %s\n\nCategories: %s\nAnswer with the category only.", input, label_list);
            prompt = render_prompt(m, p, "You classify texts into exactly one of the given categories.", user,
                                   "Category:", &chat, err, err_len);
        }
        if (!prompt || !(toks = tokenize(m, prompt, chat, &n_toks, err, err_len))) goto out;
        if (feed(ctx, p->seq, toks, n_toks, prompt_logits, err, err_len)) goto out;
        /* chat models answer at the start of the assistant turn; plain prompts continue after ": " */
        const char *prefix = chat ? "" : " ";
        const char *const yes_no[2] = {"yes", "no"};
        int n_cand = multi_label ? 2 : n_labels;
        for (int c = 0; c < n_cand; c++) {
            const char *text = multi_label ? yes_no[c] : labels[c];
            char *t = malloc(strlen(prefix) + strlen(text) + 1);
            if (!t) {
                slm_err(err, err_len, "out of memory");
                goto out;
            }
            strcpy(t, prefix);
            strcat(t, text);
            int k = 0;
            free(cont);
            cont = tokenize(m, t, false, &k, err, err_len);
            free(t);
            if (!cont) goto out;
            if (k == 0) {
                slm_err(err, err_len, "classify: label '%s' has no tokens", text);
                goto out;
            }
            /* yes/no: the first token decides; labels: the whole label and the end of the answer */
            double lp = 0;
            if (score_continuation(ctx, p->seq, n_toks, prompt_logits, cont, multi_label ? 1 : k,
                                   multi_label || !chat ? -1 : end, &lp, err, err_len))
                goto out;
            if (multi_label) scores[2 * i + c] = lp;
            else scores[c] = lp;
        }
    }
    if (multi_label) {
        for (int i = 0; i < n_labels; i++) {
            double a = scores[2 * i], b = scores[2 * i + 1], mx = a > b ? a : b;
            probs[i] = exp(a - mx) / (exp(a - mx) + exp(b - mx));
        }
    } else {
        double mx = -INFINITY, s = 0;
        for (int i = 0; i < n_labels; i++)
            if (scores[i] > mx) mx = scores[i];
        for (int i = 0; i < n_labels; i++) s += exp(scores[i] - mx);
        for (int i = 0; i < n_labels; i++) probs[i] = exp(scores[i] - mx) / s;
    }
    rc = 0;
out:
    free(prompt_logits);
    free(label_list);
    free(user);
    free(prompt);
    free(toks);
    free(cont);
    free(scores);
    return rc;
}

/* ---------- generation helper ---------- */

static bool on_text(void *user, const char *text, size_t len) {
    return slm_buf_append(user, text, len);
}

/* Generates from `prompt` (text) with an optional grammar; text in *out (malloc'd). */
static int generate_text(slm_context *ctx, const slm_task_params *p, const char *prompt, bool special,
                         slm_grammar *grammar, int max_tokens, char **out, const char **finish, slm_task_result *acc,
                         char *err, size_t err_len) {
    const slm_model *m = slm_context_model(ctx);
    int n = 0;
    slm_token *toks = tokenize(m, prompt, special, &n, err, err_len);
    if (!toks) return -1;
    int n_ctx = slm_context_n_ctx(ctx);
    if (n >= n_ctx) {
        free(toks);
        return slm_err(err, err_len, "the input needs %d tokens, the context holds %d", n, n_ctx);
    }
    if (max_tokens > n_ctx - n) max_tokens = n_ctx - n;
    slm_sampler_params sp = slm_sampler_default_params();
    sp.temperature = p->temperature;
    sp.seed = p->seed;
    if (p->temperature <= 0) sp.repeat_penalty = 1.1f; /* greedy small models loop otherwise */
    slm_sampler *s = NULL;
    if (slm_sampler_new(m, &sp, &s, err, err_len)) {
        free(toks);
        return -1;
    }
    if (grammar) slm_sampler_set_grammar(s, grammar);
    slm_generate_params gp = {.max_tokens = max_tokens, .seq = p->seq};
    slm_generate_result res = {0};
    slm_buf b = {0};
    int rc = slm_generate(ctx, s, toks, n, &gp, on_text, &b, &res, err, err_len);
    free(toks);
    slm_sampler_free(s);
    if (rc) {
        slm_buf_free(&b);
        return -1;
    }
    if (!(*out = slm_buf_take(&b))) return slm_err(err, err_len, "out of memory");
    *finish = res.finish_reason;
    acc->n_prompt += res.n_prompt;
    acc->n_generated += res.n_generated;
    acc->n_rounds++;
    return 0;
}

/* ---------- extract ---------- */

int slm_task_extract(slm_context *ctx, const slm_task_params *p, const char *input, const char *schema_json,
                     slm_task_result *out, char *err, size_t err_len) {
    slm_task_params dp = {0};
    if (!p) p = &dp;
    memset(out, 0, sizeof *out);
    if (!ctx || !input || !schema_json) return slm_err(err, err_len, "extract: missing argument");
    const slm_model *m = slm_context_model(ctx);
    slm_grammar *g = NULL;
    if (slm_grammar_from_json_schema(m, schema_json, &g, err, err_len)) return -1;
    size_t slen = strlen(schema_json) + 256;
    char *system = malloc(slen);
    if (!system) {
        slm_grammar_free(g);
        return slm_err(err, err_len, "out of memory");
    }
    snprintf(system, slen,
             "Extract the requested information from the user's text. Reply with one JSON value only, "
             "matching this JSON Schema:\n%s",
             schema_json);
    bool chat;
    char *prompt = render_prompt(m, p, system, input, "JSON:", &chat, err, err_len);
    free(system);
    int rc = -1;
    if (prompt) {
        const char *finish = "stop";
        rc = generate_text(ctx, p, prompt, chat, g, p->max_tokens > 0 ? p->max_tokens : 512, &out->text, &finish, out,
                           err, err_len);
        out->finish_reason = finish;
        out->n_chunks = 1;
        if (rc == 0 && strcmp(finish, "stop") != 0) {
            slm_err(err, err_len, "extract: output cut at %d tokens before the JSON was complete (finish_reason %s)",
                    out->n_generated, finish);
            rc = SLM_TASK_INCOMPLETE;
        } else if (rc == 0) {
            char verr[512];
            if (slm_json_validate(schema_json, out->text, strlen(out->text), verr, sizeof verr) != 0) {
                rc = slm_err(err, err_len, "extract: output failed validation: %s", verr);
            }
        }
    }
    free(prompt);
    slm_grammar_free(g);
    return rc;
}

/* ---------- summarize ---------- */

static char *summary_prompt(const slm_model *m, const slm_task_params *p, const char *text, int max_words,
                            const char *style, bool partial, bool *chat, char *err, size_t err_len) {
    /* the style is caller text of any length: never cut into a fixed buffer */
    slm_buf system = {0}, user = {0};
    slm_buf_printf(&system, "You summarise %s in at most %d words",
                   partial ? "one part of a longer text" : "texts", max_words);
    if (style) slm_buf_printf(&system, ", style: %s", style);
    slm_buf_puts(&system, ".");
    slm_buf_puts(&user, "Text:\n");
    slm_buf_puts(&user, text);
    char *prompt = NULL;
    if (system.oom || user.oom) slm_err(err, err_len, "out of memory");
    else prompt = render_prompt(m, p, system.s, user.s, "Summary:", chat, err, err_len);
    slm_buf_free(&system);
    slm_buf_free(&user);
    return prompt;
}

/* Detokenizes into *buf, growing it as needed; the length, or -1. */
static int detokenize_into(const slm_model *m, const slm_token *t, int n, char **buf, size_t *cap) {
    for (int attempt = 0; attempt < 2; attempt++) {
        int len = slm_detokenize(m, t, n, true, false, *buf, *cap > INT_MAX ? INT_MAX : (int)*cap);
        if (len >= 0) return len;
        if (len == INT_MIN || !slm_grow((void **)buf, cap, (size_t)-len, 1, 256)) return -1;
    }
    return -1;
}

/* Splits `text` into parts of at most `budget` tokens, preferring to cut after a sentence or line. */
static int split_text(const slm_model *m, const char *text, int budget, char ***parts, int *n_parts, char *err,
                      size_t err_len) {
    int n = 0;
    slm_token *t = tokenize(m, text, false, &n, err, err_len);
    if (!t) return -1;
    int cap = n / (budget > 1 ? budget / 2 : 1) + 2, k = 0;
    char **out = calloc((size_t)cap, sizeof *out);
    char *buf = NULL;
    size_t buf_cap = 0;
    if (!out || !slm_grow((void **)&buf, &buf_cap, (size_t)budget * 8 + 64, 1, 256)) {
        free(t);
        free(out);
        free(buf);
        return slm_err(err, err_len, "out of memory");
    }
    int i = 0;
    while (i < n) {
        int end = i + budget < n ? i + budget : n;
        if (end < n) {
            /* back up to a token ending a sentence/line within the last quarter */
            for (int j = end - 1; j > i + budget * 3 / 4; j--) {
                char piece[64];
                int pl = slm_token_to_piece(m, t[j], false, piece, sizeof piece);
                if (pl > 0 && (memchr(piece, '.', (size_t)pl) || memchr(piece, '\n', (size_t)pl) ||
                               memchr(piece, '!', (size_t)pl) || memchr(piece, '?', (size_t)pl))) {
                    end = j + 1;
                    break;
                }
            }
        }
        int len = detokenize_into(m, t + i, end - i, &buf, &buf_cap);
        char *part = len < 0 || k >= cap ? NULL : strndup(buf, (size_t)len);
        if (!part) {
            for (int q = 0; q < k; q++) free(out[q]);
            free(out);
            free(buf);
            free(t);
            return slm_err(err, err_len, "summarize: cannot split the input%s", len < 0 || k >= cap ? "" : ": out of memory");
        }
        out[k++] = part;
        i = end;
    }
    free(buf);
    free(t);
    *parts = out;
    *n_parts = k;
    return 0;
}

int slm_task_summarize(slm_context *ctx, const slm_task_params *p, const char *input, int max_words, const char *style,
                       slm_task_result *out, char *err, size_t err_len) {
    slm_task_params dp = {0};
    if (!p) p = &dp;
    memset(out, 0, sizeof *out);
    if (!ctx || !input) return slm_err(err, err_len, "summarize: missing argument");
    if (max_words <= 0) max_words = 100;
    if (max_words > 2000) return slm_err(err, err_len, "summarize: max_words above 2000");
    const slm_model *m = slm_context_model(ctx);
    int n_ctx = slm_context_n_ctx(ctx);
    int max_new = p->max_tokens > 0 ? p->max_tokens : max_words * 2 + 32;
    /* prompt overhead without the text */
    bool chat;
    char *empty = summary_prompt(m, p, "", max_words, style, true, &chat, err, err_len);
    if (!empty) return -1;
    int overhead = 0;
    slm_token *et = tokenize(m, empty, chat, &overhead, err, err_len);
    free(empty);
    if (!et) return -1;
    free(et);
    int budget = n_ctx - overhead - max_new - 16;
    if (budget < 64)
        return slm_err(err, err_len, "summarize: the context (%d tokens) is too small for %d-word summaries", n_ctx,
                       max_words);
    char *text = strdup(input);
    if (!text) return slm_err(err, err_len, "out of memory");
    int rc = -1;
    for (int level = 0; level < 8; level++) {
        int n_tok = 0;
        slm_token *tt = tokenize(m, text, false, &n_tok, err, err_len);
        if (!tt) goto out;
        free(tt);
        if (n_tok <= budget) {
            char *prompt = summary_prompt(m, p, text, max_words, style, false, &chat, err, err_len);
            const char *finish = "stop";
            char *summary = NULL;
            if (!prompt) goto out;
            rc = generate_text(ctx, p, prompt, chat, NULL, max_new, &summary, &finish, out, err, err_len);
            free(prompt);
            if (rc) goto out;
            out->text = summary;
            out->finish_reason = finish;
            if (out->n_chunks == 0) out->n_chunks = 1;
            /* a summary cut by the token cap is still usable text: returned with finish_reason "length" */
            goto out;
        }
        /* map: summarise each part; reduce: summarise the joined summaries on the next level */
        char **parts = NULL;
        int n_parts = 0;
        if (split_text(m, text, budget, &parts, &n_parts, err, err_len)) goto out;
        if (level == 0) out->n_chunks = n_parts;
        slm_buf joined = {0};
        int prc = 0;
        for (int i = 0; i < n_parts; i++) {
            char *prompt = prc ? NULL : summary_prompt(m, p, parts[i], max_words, style, true, &chat, err, err_len);
            char *summary = NULL;
            const char *finish = "stop";
            if (!prc && !prompt) prc = -1;
            if (!prc) prc = generate_text(ctx, p, prompt, chat, NULL, max_new, &summary, &finish, out, err, err_len);
            free(prompt);
            if (!prc) {
                slm_buf_puts(&joined, summary);
                slm_buf_puts(&joined, "\n");
            }
            free(summary);
            free(parts[i]);
        }
        free(parts);
        if (prc || joined.oom) {
            slm_buf_free(&joined);
            if (!prc) slm_err(err, err_len, "out of memory");
            goto out;
        }
        if (joined.len >= strlen(text)) {
            slm_buf_free(&joined);
            slm_err(err, err_len, "summarize: part summaries are not shorter than the input; giving up");
            goto out;
        }
        free(text);
        if (!(text = slm_buf_take(&joined))) {
            slm_err(err, err_len, "out of memory");
            goto out;
        }
    }
    slm_err(err, err_len, "summarize: input too long (more than 8 map-reduce levels)");
out:
    free(text);
    return rc;
}
