/* classify / extract / summarize as requests to the engine (see slm_engine.h). */
#include "slm_engine.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/err.h"

void slm_task_result_free(slm_task_result *r) {
    if (!r) return;
    free(r->text);
    memset(r, 0, sizeof *r);
}

/* ---------- prompts ---------- */

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

/* The prompt's tokens: the chat template with a system and a user message (whose contents stay
 * text: control-token texts inside them are never control tokens), or, for models without a
 * template, "system\n\nuser\n\n<plain_tail>" tokenized as plain text. */
static slm_token *render_tokens(const slm_model *m, const slm_task_params *p, const char *system, const char *user,
                                const char *plain_tail, bool *chat, int *n, char *err, size_t err_len) {
    slm_chat_message msgs[2] = {{"system", system}, {"user", user}};
    slm_token *ids = NULL;
    char cerr[256], *probe = NULL;
    if (slm_chat_tokenize(m, p->template_name, msgs, 2, true, true, &ids, n, NULL, cerr, sizeof cerr) == 0) {
        *chat = true;
        return ids;
    }
    /* Only a model without a template falls back to a plain prompt; a template that renders but
     * does not tokenize (rare: the text itself) is an error. Rendered again only on this path. */
    if (p->template_name || slm_chat_render(m, NULL, msgs, 2, true, &probe, (char[8]){0}, 8) == 0) {
        free(probe);
        slm_err(err, err_len, "%s", cerr);
        return NULL;
    }
    *chat = false;
    slm_buf text = {0};
    slm_buf_printf(&text, "%s\n\n%s\n\n%s", system, user, plain_tail);
    if (text.oom) {
        slm_buf_free(&text);
        slm_err(err, err_len, "out of memory");
        return NULL;
    }
    ids = tokenize(m, text.s, false, n, err, err_len);
    slm_buf_free(&text);
    return ids;
}

/* ---------- requests on the engine ---------- */

/* The task's model: its index, the model and the positions one sequence holds. */
typedef struct task_model {
    int index;
    const slm_model *m;
    int n_ctx, n_batch, n_seq;
} task_model;

static int find_model(slm_engine *e, const slm_task_params *p, task_model *tm, char *err, size_t err_len) {
    if (!e) return slm_err(err, err_len, "no engine");
    tm->index = slm_engine_find(e, p->model);
    if (tm->index < 0) return slm_err(err, err_len, "model '%s' is not loaded", p->model ? p->model : "");
    tm->m = slm_engine_model_at(e, tm->index);
    tm->n_ctx = slm_context_n_ctx(slm_engine_context_at(e, tm->index));
    tm->n_batch = slm_context_n_batch(slm_engine_context_at(e, tm->index));
    tm->n_seq = slm_context_n_seq(slm_engine_context_at(e, tm->index));
    return 0;
}

static slm_request *new_request(slm_engine *e, const task_model *tm, const slm_task_params *p, slm_request_kind kind,
                                slm_token *prompt, int n_prompt) {
    slm_request *r = slm_request_new(kind);
    if (!r) return NULL;
    snprintf(r->model, sizeof r->model, "%s", slm_engine_model_name(e, tm->index));
    r->prompt = prompt;
    r->n_prompt = n_prompt;
    r->deadline = p->deadline;
    return r;
}

static int refused(slm_task_result *res, slm_finish why, char *err, size_t err_len) {
    if (res) res->refused_why = why;
    if (why == SLM_FINISH_CANCELLED) slm_err(err, err_len, "task cancelled");
    else if (why == SLM_FINISH_TIMEOUT) slm_err(err, err_len, "task exceeded its time limit");
    else slm_err(err, err_len, "the engine is at capacity or shutting down; retry shortly");
    return SLM_TASK_REFUSED;
}

/* Submits reqs[0..n) and waits for all of them, with at most `window` in flight (a task with many
 * parts must not fill the shared queue); when the queue is full, waits for an earlier one to finish
 * before submitting more. 0, SLM_TASK_REFUSED, or -1 with err on a request's error. */
static int run_all(slm_engine *e, const slm_task_params *p, slm_request **reqs, int n, int window,
                   slm_task_result *res, char *err, size_t err_len) {
    int submitted = 0, waited = 0, rc = 0;
    slm_finish bad = SLM_FINISH_NONE;
    while (waited < n) {
        while (rc == 0 && submitted < n && submitted - waited < (window > 0 ? window : 1)) {
            slm_submit_status st = slm_engine_submit(e, reqs[submitted]);
            if (st == SLM_SUBMIT_OK) {
                submitted++;
                continue;
            }
            if (st != SLM_SUBMIT_FULL || submitted == waited) rc = SLM_TASK_REFUSED;
            break;
        }
        if (waited == submitted) break;
        slm_request *r = reqs[waited++];
        slm_finish f = slm_engine_wait(e, r, NULL, p->should_cancel, p->cancel_user);
        if (f == SLM_FINISH_CANCELLED || f == SLM_FINISH_TIMEOUT) {
            if (rc == 0) rc = SLM_TASK_REFUSED, bad = f;
            for (int i = waited; i < submitted; i++) slm_engine_cancel(e, reqs[i]);
        } else if (f == SLM_FINISH_ERROR && rc == 0) {
            rc = slm_err(err, err_len, "%s", r->error);
            for (int i = waited; i < submitted; i++) slm_engine_cancel(e, reqs[i]);
        }
    }
    if (rc == SLM_TASK_REFUSED) return refused(res, bad, err, err_len);
    return rc;
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

int slm_task_classify(slm_engine *e, const slm_task_params *p, const char *input, const char *const *labels,
                      int n_labels, bool multi_label, double *probs, slm_task_result *usage, char *err, size_t err_len) {
    slm_task_params dp = {0};
    if (!p) p = &dp;
    if (usage) memset(usage, 0, sizeof *usage);
    if (!input || !labels || !probs) return slm_err(err, err_len, "classify: missing argument");
    if (n_labels < 1) return slm_err(err, err_len, "classify: no labels");
    if (!multi_label && n_labels < 2) return slm_err(err, err_len, "classify: need at least two labels (or multi_label)");
    if (n_labels > SLM_MAX_SCORE) return slm_err(err, err_len, "classify: at most %d labels", SLM_MAX_SCORE);
    for (int i = 0; i < n_labels; i++) {
        if (!labels[i] || !labels[i][0]) return slm_err(err, err_len, "classify: label %d is empty", i + 1);
        for (int j = 0; j < i; j++)
            if (!strcmp(labels[i], labels[j])) return slm_err(err, err_len, "classify: label '%s' is repeated", labels[i]);
    }
    task_model tm;
    if (find_model(e, p, &tm, err, err_len)) return -1;
    const slm_model *m = tm.m;
    slm_token end = slm_token_eos(m);
    char *label_list = join_labels(labels, n_labels);
    char *user = NULL;
    int n_req = multi_label ? n_labels : 1;
    slm_request **reqs = calloc((size_t)n_req, sizeof *reqs);
    int rc = -1;
    if (!label_list || !reqs) {
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
    for (int i = 0; i < n_req; i++) {
        bool chat = false;
        int n_toks = 0;
        slm_token *toks;
        if (multi_label) {
            snprintf(user, ulen, "Text: %s\n\nDoes this text belong to the category \"%s\"? Answer yes or no.", input,
                     labels[i]);
            toks = render_tokens(m, p, "You answer yes or no.", user, "Answer:", &chat, &n_toks, err, err_len);
        } else {
            snprintf(user, ulen, "Text: %s\n\nCategories: %s\nAnswer with the category only.", input, label_list);
            toks = render_tokens(m, p, "You classify texts into exactly one of the given categories.", user, "Category:",
                                 &chat, &n_toks, err, err_len);
        }
        if (!toks) goto out;
        if (n_toks < 1 || n_toks >= tm.n_ctx) {
            free(toks);
            slm_err(err, err_len, "the input needs %d tokens, the context holds %d", n_toks, tm.n_ctx);
            goto out;
        }
        if (!(reqs[i] = new_request(e, &tm, p, SLM_REQ_SCORE, toks, n_toks))) {
            free(toks);
            slm_err(err, err_len, "out of memory");
            goto out;
        }
        /* chat models answer at the start of the assistant turn; plain prompts continue after ": " */
        const char *prefix = chat ? "" : " ";
        const char *const yes_no[2] = {"yes", "no"};
        int n_cand = multi_label ? 2 : n_labels;
        for (int c = 0; c < n_cand; c++) {
            const char *text = multi_label ? yes_no[c] : labels[c];
            slm_buf t = {0};
            slm_buf_puts(&t, prefix);
            slm_buf_puts(&t, text);
            int k = 0;
            slm_token *cont = t.oom ? NULL : tokenize(m, t.s, false, &k, err, err_len);
            slm_buf_free(&t);
            if (!cont) goto out;
            if (k == 0) {
                free(cont);
                slm_err(err, err_len, "classify: label '%s' has no tokens", text);
                goto out;
            }
            /* yes/no: the first token decides; labels: the whole label and the end of the answer */
            if (multi_label) k = 1;
            else if (chat && end >= 0) {
                slm_token *grown = realloc(cont, sizeof *cont * (size_t)(k + 1));
                if (!grown) {
                    free(cont);
                    slm_err(err, err_len, "out of memory");
                    goto out;
                }
                cont = grown;
                cont[k++] = end;
            }
            if (k > tm.n_batch || n_toks - 1 + k > tm.n_ctx) {
                free(cont);
                slm_err(err, err_len, "classify: label '%s' does not fit in the context", text);
                goto out;
            }
            reqs[i]->score_conts[c] = cont;
            reqs[i]->score_lens[c] = k;
            reqs[i]->n_score = c + 1;
        }
    }
    rc = run_all(e, p, reqs, n_req, tm.n_seq, usage, err, err_len);
    if (rc) goto out;
    if (multi_label) {
        for (int i = 0; i < n_labels; i++) {
            double a = reqs[i]->scores[0], b = reqs[i]->scores[1], mx = a > b ? a : b;
            probs[i] = exp(a - mx) / (exp(a - mx) + exp(b - mx));
        }
    } else {
        const double *scores = reqs[0]->scores;
        double mx = -INFINITY, s = 0;
        for (int i = 0; i < n_labels; i++)
            if (scores[i] > mx) mx = scores[i];
        for (int i = 0; i < n_labels; i++) s += exp(scores[i] - mx);
        for (int i = 0; i < n_labels; i++) probs[i] = exp(scores[i] - mx) / s;
    }
    if (usage)
        for (int i = 0; i < n_req; i++) usage->n_prompt += reqs[i]->n_prompt;
out:
    for (int i = 0; reqs && i < n_req; i++) slm_request_release(reqs[i]);
    free(reqs);
    free(label_list);
    free(user);
    return rc;
}

/* ---------- generation helper ---------- */

/* A GENERATE request for the prompt tokens (taken, NULL after a failure upstream) with an optional
 * grammar (taken too). */
static slm_request *generate_request(slm_engine *e, const task_model *tm, const slm_task_params *p, slm_token *toks,
                                     int n, slm_grammar *grammar, int max_tokens, char *err, size_t err_len) {
    if (!toks) {
        slm_grammar_free(grammar);
        return NULL;
    }
    if (n < 1 || n >= tm->n_ctx) {
        free(toks);
        slm_grammar_free(grammar);
        slm_err(err, err_len, "the input needs %d tokens, the context holds %d", n, tm->n_ctx);
        return NULL;
    }
    slm_request *r = new_request(e, tm, p, SLM_REQ_GENERATE, toks, n);
    if (!r) {
        free(toks);
        slm_grammar_free(grammar);
        slm_err(err, err_len, "out of memory");
        return NULL;
    }
    r->gen.max_tokens = max_tokens < tm->n_ctx - n ? max_tokens : tm->n_ctx - n;
    r->gen.sampling.temperature = p->temperature;
    r->gen.sampling.seed = p->seed;
    if (p->temperature <= 0) r->gen.sampling.repeat_penalty = 1.1f; /* greedy small models loop otherwise */
    r->gen.grammar = grammar;
    r->gen.raw_bytes = true;
    return r;
}

/* The finished request's text into *out (malloc'd); usage into acc. */
static int take_text(slm_request *r, char **out, const char **finish, slm_task_result *acc, char *err, size_t err_len) {
    *out = strndup(r->text ? r->text : "", r->text_len);
    if (!*out) return slm_err(err, err_len, "out of memory");
    *finish = r->finish == SLM_FINISH_LENGTH ? "length" : "stop";
    acc->n_prompt += r->n_prompt;
    acc->n_generated += r->n_tokens;
    acc->n_rounds++;
    return 0;
}

/* ---------- extract ---------- */

int slm_task_extract(slm_engine *e, const slm_task_params *p, const char *input, const char *schema_json,
                     slm_task_result *out, char *err, size_t err_len) {
    slm_task_params dp = {0};
    if (!p) p = &dp;
    memset(out, 0, sizeof *out);
    if (!input || !schema_json) return slm_err(err, err_len, "extract: missing argument");
    task_model tm;
    if (find_model(e, p, &tm, err, err_len)) return -1;
    const slm_model *m = tm.m;
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
    int n_toks = 0;
    slm_token *toks = render_tokens(m, p, system, input, "JSON:", &chat, &n_toks, err, err_len);
    free(system);
    int rc = -1;
    slm_request *r = generate_request(e, &tm, p, toks, n_toks, g, p->max_tokens > 0 ? p->max_tokens : 512, err, err_len);
    if (r) {
        const char *finish = "stop";
        rc = run_all(e, p, &r, 1, 1, out, err, err_len);
        if (rc == 0) rc = take_text(r, &out->text, &finish, out, err, err_len);
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
    slm_request_release(r);
    return rc;
}

/* ---------- summarize ---------- */

static slm_token *summary_tokens(const slm_model *m, const slm_task_params *p, const char *text, int max_words,
                                 const char *style, bool partial, int *n, char *err, size_t err_len) {
    /* the style is caller text of any length: never cut into a fixed buffer */
    slm_buf system = {0}, user = {0};
    slm_buf_printf(&system, "You summarise %s in at most %d words",
                   partial ? "one part of a longer text" : "texts", max_words);
    if (style) slm_buf_printf(&system, ", style: %s", style);
    slm_buf_puts(&system, ".");
    slm_buf_puts(&user, "Text:\n");
    slm_buf_puts(&user, text);
    slm_token *ids = NULL;
    bool chat;
    if (system.oom || user.oom) slm_err(err, err_len, "out of memory");
    else ids = render_tokens(m, p, system.s, user.s, "Summary:", &chat, n, err, err_len);
    slm_buf_free(&system);
    slm_buf_free(&user);
    return ids;
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

int slm_task_summarize(slm_engine *e, const slm_task_params *p, const char *input, int max_words, const char *style,
                       slm_task_result *out, char *err, size_t err_len) {
    slm_task_params dp = {0};
    if (!p) p = &dp;
    memset(out, 0, sizeof *out);
    if (!input) return slm_err(err, err_len, "summarize: missing argument");
    if (max_words <= 0) max_words = 100;
    if (max_words > 2000) return slm_err(err, err_len, "summarize: max_words above 2000");
    task_model tm;
    if (find_model(e, p, &tm, err, err_len)) return -1;
    const slm_model *m = tm.m;
    int n_ctx = tm.n_ctx;
    int max_new = p->max_tokens > 0 ? p->max_tokens : max_words * 2 + 32;
    /* prompt overhead without the text */
    int overhead = 0;
    slm_token *et = summary_tokens(m, p, "", max_words, style, true, &overhead, err, err_len);
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
            int n_prompt = 0;
            slm_token *prompt = summary_tokens(m, p, text, max_words, style, false, &n_prompt, err, err_len);
            const char *finish = "stop";
            char *summary = NULL;
            slm_request *r = generate_request(e, &tm, p, prompt, n_prompt, NULL, max_new, err, err_len);
            if (!r) goto out;
            rc = run_all(e, p, &r, 1, 1, out, err, err_len);
            if (rc == 0) rc = take_text(r, &summary, &finish, out, err, err_len);
            slm_request_release(r);
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
        /* every part in one batch: the engine decodes them side by side */
        slm_buf joined = {0};
        int prc = 0;
        slm_request **reqs = calloc((size_t)n_parts, sizeof *reqs);
        if (!reqs) prc = slm_err(err, err_len, "out of memory");
        for (int i = 0; !prc && i < n_parts; i++) {
            int n_prompt = 0;
            slm_token *prompt = summary_tokens(m, p, parts[i], max_words, style, true, &n_prompt, err, err_len);
            if (!(reqs[i] = generate_request(e, &tm, p, prompt, n_prompt, NULL, max_new, err, err_len))) prc = -1;
        }
        if (!prc) prc = run_all(e, p, reqs, n_parts, tm.n_seq, out, err, err_len);
        for (int i = 0; i < n_parts; i++) {
            char *summary = NULL;
            const char *finish = "stop";
            if (!prc) prc = take_text(reqs[i], &summary, &finish, out, err, err_len);
            if (!prc) {
                slm_buf_puts(&joined, summary);
                slm_buf_puts(&joined, "\n");
            }
            free(summary);
            if (reqs) slm_request_release(reqs[i]);
            free(parts[i]);
        }
        free(reqs);
        free(parts);
        if (prc || joined.oom) {
            slm_buf_free(&joined);
            if (!prc) slm_err(err, err_len, "out of memory");
            if (prc == SLM_TASK_REFUSED) rc = prc;
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
