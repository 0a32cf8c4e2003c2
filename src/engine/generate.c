/* The single-sequence generation loop: prompt (reusing a cached prefix), then sample token by token,
 * streaming text that is final: whole UTF-8 characters, never part of a possible stop string. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/model.h"
#include "slm.h"
#include "tokenizer/vocab.h"
#include "util/buf.h"
#include "util/err.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Length of the longest prefix of buf[0..len) that ends on a UTF-8 character boundary. */
static size_t utf8_complete_prefix(const char *buf, size_t len) {
    size_t i = len;
    int back = 0;
    while (i > 0 && back < 4) {
        unsigned char ch = (unsigned char)buf[i - 1];
        if ((ch & 0xC0) != 0x80) { /* lead byte or ASCII */
            int need = ch < 0x80 ? 1 : (ch >> 5) == 6 ? 2 : (ch >> 4) == 14 ? 3 : (ch >> 3) == 30 ? 4 : 1;
            return (back + 1 >= need) ? len : i - 1;
        }
        i--;
        back++;
    }
    return len; /* not valid UTF-8 at the end anyway: do not hold it back forever */
}

/* Longest suffix of text that is a proper prefix of some stop string. */
static size_t stop_prefix_hold(const char *text, size_t len, const char *const *stop, int n_stop) {
    size_t hold = 0;
    for (int s = 0; s < n_stop; s++) {
        size_t sl = strlen(stop[s]);
        /* only suffixes of the pending text can match: a long stop string costs nothing per token */
        size_t k = sl > 1 ? sl - 1 : 0;
        if (k > len) k = len;
        for (; k > hold; k--)
            if (memcmp(text + len - k, stop[s], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

/* Emits what is final in p; returns false if the caller asked to stop. *stopped set if a stop string matched. */
static bool flush_final(slm_buf *p, const slm_generate_params *gp, bool at_end, slm_text_fn on_text, void *user,
                        bool *stopped) {
    size_t emit = p->len;
    for (int s = 0; s < gp->n_stop; s++) {
        if (!gp->stop[s][0]) continue;
        /* memmem, not strstr: byte tokens can put a NUL in the text before the stop string */
        const char *hit = p->s ? memmem(p->s, p->len, gp->stop[s], strlen(gp->stop[s])) : NULL;
        if (hit && (size_t)(hit - p->s) < emit) {
            emit = (size_t)(hit - p->s);
            *stopped = true;
        }
    }
    if (!*stopped && !at_end) {
        emit -= stop_prefix_hold(p->s, p->len, gp->stop, gp->n_stop);
        emit = utf8_complete_prefix(p->s, emit);
    }
    bool go_on = true;
    if (emit > 0 && on_text) go_on = on_text(user, p->s, emit);
    /* p->s is still NULL when nothing was generated: no pointer arithmetic on it */
    if (p->len > emit) memmove(p->s, p->s + emit, p->len - emit);
    p->len -= emit;
    if (p->s) p->s[p->len] = 0;
    return go_on;
}

int slm_generate(slm_context *ctx, slm_sampler *sampler, const slm_token *prompt, int n_prompt,
                 const slm_generate_params *params, slm_text_fn on_text, void *user, slm_generate_result *res, char *err,
                 size_t err_len) {
    slm_generate_params gp = {0};
    if (params) gp = *params;
    slm_generate_result r = {0};
    r.finish_reason = "stop";
    int n_ctx = slm_context_n_ctx(ctx), seq = gp.seq;
    if (seq < 0 || seq >= slm_context_n_seq(ctx)) return slm_err(err, err_len, "sequence %d is outside the context", seq);
    if (n_prompt < 1) return slm_err(err, err_len, "empty prompt");
    if (n_prompt > n_ctx)
        return slm_err(err, err_len, "prompt has %d tokens, more than the context size %d", n_prompt, n_ctx);
    if (gp.max_tokens > 0 && n_prompt + gp.max_tokens > n_ctx)
        return slm_err(err, err_len, "prompt (%d tokens) + max tokens (%d) exceeds the context size %d", n_prompt,
                       gp.max_tokens, n_ctx);
    if (gp.n_stop < 0 || (gp.n_stop > 0 && !gp.stop)) return slm_err(err, err_len, "invalid stop list");

    /* Reuse the longest cached prefix; at least the last prompt token is decoded to get logits. */
    const slm_token *cached = slm_kv_seq_tokens(ctx, seq);
    int n_cached = slm_kv_seq_len(ctx, seq), common = 0;
    while (common < n_cached && common < n_prompt - 1 && cached[common] == prompt[common]) common++;
    slm_kv_seq_truncate(ctx, seq, common);
    r.n_prompt = n_prompt;
    r.n_prompt_cached = common;

    double t0 = now_ms();
    int n_batch = slm_context_n_batch(ctx);
    int32_t *seq_ids = malloc(sizeof(int32_t) * (size_t)n_batch);
    slm_buf pend = {0}; /* text produced but not yet final */
    const bool ban_eog = gp.min_tokens > 0 || gp.ignore_eos;
    int rc = -1;
    if (!seq_ids) {
        slm_err(err, err_len, "out of memory");
        goto done;
    }
    for (int i = 0; i < n_batch; i++) seq_ids[i] = seq;
    slm_sampler_reset(sampler);
    for (int i = 0; i < n_prompt; i++) slm_sampler_accept_prompt(sampler, prompt[i]);
    for (int i = common; i < n_prompt; i += n_batch) {
        int n = n_prompt - i < n_batch ? n_prompt - i : n_batch;
        slm_batch b = {n, prompt + i, NULL, seq_ids, NULL};
        if (slm_decode(ctx, &b, err, err_len)) goto done;
    }
    r.prompt_ms = now_ms() - t0;

    double t1 = now_ms();
    const slm_model *m = slm_context_model(ctx);
    const slm_token *eog = NULL;
    int n_eog = slm_vocab_eog_ids(slm_model_vocab(m), &eog);
    char piece[256];
    bool stopped = false, cancelled = false;
    for (;;) {
        if (gp.max_tokens > 0 && r.n_generated >= gp.max_tokens) {
            r.finish_reason = "length";
            break;
        }
        if (slm_kv_seq_len(ctx, seq) >= n_ctx) {
            r.finish_reason = "length";
            break;
        }
        const float *logits = slm_logits(ctx, 0);
        if (ban_eog) slm_sampler_set_banned(sampler, eog, gp.ignore_eos || r.n_generated < gp.min_tokens ? n_eog : 0);
        slm_token tok = slm_sampler_sample(sampler, logits);
        if (tok < 0) {
            /* Every token is masked: a grammar that only allows end-of-generation while EOG is banned
             * (min_tokens / ignore_eos) is complete, anything else is a dead end worth an error. */
            if (slm_sampler_grammar_done(sampler)) break;
            slm_err(err, err_len, "no token can continue the output (all candidates are banned or masked)");
            goto done;
        }
        slm_sampler_accept(sampler, tok);
        if (slm_token_is_eog(m, tok)) break;
        r.n_generated++;
        int n = slm_token_to_piece(m, tok, false, piece, (int)sizeof piece);
        if (n < 0) {
            char *big = malloc((size_t)-n);
            if (!big) {
                slm_err(err, err_len, "out of memory");
                goto done;
            }
            int n2 = slm_token_to_piece(m, tok, false, big, -n);
            bool ok = n2 >= 0 && slm_buf_append(&pend, big, (size_t)n2);
            free(big);
            if (!ok) {
                slm_err(err, err_len, "out of memory");
                goto done;
            }
        } else if (!slm_buf_append(&pend, piece, (size_t)n)) {
            slm_err(err, err_len, "out of memory");
            goto done;
        }
        if (!flush_final(&pend, &gp, false, on_text, user, &stopped)) {
            cancelled = true;
            break;
        }
        if (stopped) break;
        slm_batch b = {1, &tok, NULL, &seq, NULL};
        if (slm_decode(ctx, &b, err, err_len)) goto done;
    }
    if (cancelled) r.finish_reason = "cancelled";
    else if (!stopped && !flush_final(&pend, &gp, true, on_text, user, &stopped)) r.finish_reason = "cancelled";
    r.gen_ms = now_ms() - t1;
    rc = 0;
done:
    if (ban_eog) slm_sampler_set_banned(sampler, NULL, 0); /* the caller's sampler, as it was */
    free(seq_ids);
    slm_buf_free(&pend);
    if (res) *res = r;
    return rc;
}
