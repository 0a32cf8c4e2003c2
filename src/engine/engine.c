/* The engine: continuous batching over every loaded model. One scheduling pass admits queued
 * requests into free sequences ("slots"), then runs one forward pass per model that has work, mixing
 * whole embedding inputs, one decode token of every generating slot, whole score continuations and
 * prompt chunks shared fairly between the slots still reading their prompts. A new request reuses the
 * longest cached prompt prefix found in any slot's KV. All forward passes happen on the thread that
 * steps the engine (its own scheduler thread, or the caller of slm_engine_wait), so the one kernel
 * pool is never used by two passes at once. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/engine_impl.h"
#include "engine/request_impl.h"
#include "engine/textstream.h"
#include "slm.h"
#include "slm_engine.h"
#include "util/buf.h"
#include "util/err.h"

static int common_prefix(const slm_token *a, int na, const slm_token *b, int nb) {
    int n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

void engine_notify(slm_engine *e) {
    pthread_mutex_lock(&e->mu);
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* ---------- releasing text ---------- */

/* Moves pending[0..n) to the request's text; caller holds req->mu. */
static bool release_pending(slm_engine *e, slot *sl, size_t n) {
    if (n == 0) return true;
    slm_request *r = sl->req;
    bool ok;
    if (r->gen.raw_bytes) {
        ok = slm_request_append_text(r, sl->pending.s, n);
    } else {
        /* sanitizing writes at most 3 bytes per input byte */
        if (!slm_grow((void **)&e->sanitized, &e->sanitized_cap, n, 3, 1024)) return false;
        size_t out = slm_utf8_sanitize(sl->pending.s, n, e->sanitized);
        ok = slm_request_append_text(r, e->sanitized, out);
    }
    memmove(sl->pending.s, sl->pending.s + n, sl->pending.len - n);
    sl->pending.len -= n;
    return ok;
}

/* ---------- slot lifecycle ---------- */

static void finish_slot(slm_engine *e, emodel *m, slot *sl, slm_finish why, const char *error, bool client_error) {
    slm_request *r = sl->req;
    if (why != SLM_FINISH_ERROR && sl->pending.len) {
        pthread_mutex_lock(&r->mu);
        release_pending(e, sl, sl->pending.len);
        pthread_mutex_unlock(&r->mu);
    }
    sl->pending.len = 0;
    if (r->sampler) slm_sampler_set_banned(r->sampler, NULL, 0); /* a borrowed sampler goes back as it came */
    if (sl->own_sampler) slm_sampler_free(sl->sampler);
    sl->sampler = NULL;
    sl->own_sampler = false;
    sl->req = NULL;
    sl->decoding = false;
    sl->last_used = ++e->use_clock;
    pthread_mutex_lock(&r->mu);
    r->error_is_client = client_error;
    pthread_mutex_unlock(&r->mu);
    slm_request_finish(r, why, error);
    pthread_mutex_lock(&e->mu);
    m->busy--;
    pthread_cond_broadcast(&e->idle_cv);
    pthread_mutex_unlock(&e->mu);
    slm_request_release(r);
}

static const char *invalid_request(const emodel *m, const slm_request *r) {
    switch (r->kind) {
    case SLM_REQ_GENERATE:
        if (slm_model_is_embedding(m->model)) return "an embedding model has no logits to generate from";
        if (r->n_prompt < 1) return "empty prompt";
        if (r->n_prompt > m->n_ctx) return "prompt length does not fit the slot's context";
        break;
    case SLM_REQ_EMBED:
        for (int i = 0; i < r->n_embed; i++)
            if (r->embed_lens[i] < 1 || r->embed_lens[i] > m->n_batch || r->embed_lens[i] > m->n_ctx)
                return "embedding input longer than one batch or the slot's context";
        break;
    case SLM_REQ_SCORE:
        if (slm_model_is_embedding(m->model)) return "an embedding model has no logits to score with";
        if (r->n_prompt < 1) return "empty prompt";
        for (int i = 0; i < r->n_score; i++)
            if (r->score_lens[i] < 1 || r->score_lens[i] > m->n_batch || r->n_prompt - 1 + r->score_lens[i] > m->n_ctx)
                return "a continuation to score does not fit the batch or the slot's context";
        break;
    }
    return NULL;
}

/* Puts r in a free slot (its own if it names one), reusing the longest cached prefix. The caller
 * has counted the slot as busy; returns false only if no slot is free. */
static bool admit(slm_engine *e, emodel *m, slm_request *r) {
    slot *lru = NULL, *best_free = NULL, *best_any = NULL;
    int best_free_n = -1, best_any_n = 0;
    bool reuses = r->kind != SLM_REQ_EMBED;
    /* slm_generate on a caller's context: the sequence applies what the caller set on it */
    bool callers_lora = !m->own_ctx && r->seq >= 0 && r->n_lora == 0;
    for (int i = 0; i < m->n_seq; i++) {
        slot *sl = &m->slots[i];
        if (r->seq >= 0 && i != r->seq) continue;
        /* cached positions count only when they were computed with the same adapters */
        bool same = reuses && (callers_lora || slm_context_lora_matches(m->ctx, i, r->lora, r->n_lora));
        int n = same ? common_prefix(slm_kv_seq_tokens(m->ctx, i), slm_kv_seq_len(m->ctx, i), r->prompt, r->n_prompt) : 0;
        if (!sl->req) {
            if (!lru || sl->last_used < lru->last_used) lru = sl;
            if (n > best_free_n) {
                best_free_n = n;
                best_free = sl;
            }
        }
        if (n > best_any_n) {
            best_any_n = n;
            best_any = sl;
        }
    }
    if (!lru) return false;
    const char *invalid = invalid_request(m, r);
    if (invalid) {
        lru->req = r;
        finish_slot(e, m, lru, SLM_FINISH_ERROR, invalid, true);
        return true;
    }
    slot *sl = best_free_n > 0 ? best_free : lru;
    int keep = best_free_n > 0 ? best_free_n : 0;
    if (reuses && r->seq < 0 && best_any && best_any->req && best_any_n > keep) {
        /* A running request holds a longer prefix (a shared system prompt, say): copy its KV into the
         * least recently used free slot rather than recomputing it. */
        sl = lru;
        slm_kv_seq_copy(m->ctx, sl->id, best_any->id, best_any_n);
        keep = best_any_n;
    } else if (sl != best_free) {
        keep = 0;
    }
    /* The last prompt token is fed again to get logits (generate) or ahead of each continuation (score). */
    if (keep >= r->n_prompt) keep = r->n_prompt - 1;
    if (keep < 0) keep = 0;
    slm_kv_seq_truncate(m->ctx, sl->id, keep);
    char lora_err[256];
    if (!callers_lora && slm_context_set_lora(m->ctx, sl->id, r->lora, r->n_lora, lora_err, sizeof lora_err) != 0) {
        slm_kv_seq_truncate(m->ctx, sl->id, 0);
        sl->req = r;
        finish_slot(e, m, sl, SLM_FINISH_ERROR, lora_err, true);
        return true;
    }

    sl->req = r;
    sl->n_fed = keep;
    sl->decoding = false;
    sl->n_generated = 0;
    sl->pending.len = 0;
    sl->embed_index = 0;
    sl->score_index = 0;
    sl->sampler = NULL;
    sl->own_sampler = false;
    if (r->kind == SLM_REQ_GENERATE) {
        char err[256];
        if (r->sampler) {
            sl->sampler = r->sampler;
            slm_sampler_reset(sl->sampler);
        } else if (slm_sampler_new(m->model, &r->gen.sampling, &sl->sampler, err, sizeof err) != 0) {
            sl->sampler = NULL;
            finish_slot(e, m, sl, SLM_FINISH_ERROR, err, true);
            return true;
        } else {
            sl->own_sampler = true;
        }
        for (int i = 0; i < r->n_prompt; i++) slm_sampler_accept_prompt(sl->sampler, r->prompt[i]);
        if (r->gen.grammar) slm_sampler_set_grammar(sl->sampler, r->gen.grammar); /* after the prompt: parse starts here */
    }
    pthread_mutex_lock(&r->mu);
    r->started = true;
    r->t_start = slm_now();
    r->n_prompt_cached = keep;
    pthread_mutex_unlock(&r->mu);
    if (e->params.observer.prompt_cached && r->kind == SLM_REQ_GENERATE)
        e->params.observer.prompt_cached(e->params.observer.user, keep);
    return true;
}

/* ---------- sampling one slot ---------- */

static double log_sum_exp(const float *logits, int n_vocab, float *max_out) {
    float max = -INFINITY;
    for (int i = 0; i < n_vocab; i++)
        if (logits[i] > max) max = logits[i];
    double sum = 0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)(logits[i] - max));
    if (max_out) *max_out = max;
    return (double)max + log(sum);
}

static void compute_logprobs(const float *logits, int n_vocab, slm_token tok, int top_n, slm_token_info *info) {
    double log_z = log_sum_exp(logits, n_vocab, NULL);
    info->token = tok;
    info->logprob = (float)((double)logits[tok] - log_z);
    info->n_top = 0;
    for (int i = 0; i < n_vocab; i++) {
        float v = logits[i];
        if (info->n_top == top_n && (top_n == 0 || v <= info->top_logprobs[top_n - 1])) continue;
        int k = info->n_top < top_n ? info->n_top++ : top_n - 1;
        while (k > 0 && info->top_logprobs[k - 1] < v) {
            info->top_logprobs[k] = info->top_logprobs[k - 1];
            info->top_tokens[k] = info->top_tokens[k - 1];
            k--;
        }
        info->top_logprobs[k] = v;
        info->top_tokens[k] = i;
    }
    for (int k = 0; k < info->n_top; k++) info->top_logprobs[k] = (float)((double)info->top_logprobs[k] - log_z);
}

static bool append_piece(slm_engine *e, emodel *m, slot *sl, slm_token tok) {
    int n = slm_token_to_piece(m->model, tok, false, e->piece, (int)e->piece_cap);
    if (n < 0) {
        if (!slm_grow((void **)&e->piece, &e->piece_cap, (size_t)-(long long)n, 1, 256)) return false;
        n = slm_token_to_piece(m->model, tok, false, e->piece, (int)e->piece_cap);
        if (n < 0) return false;
    }
    return slm_buf_append(&sl->pending, e->piece, (size_t)n);
}

/* Samples the slot's next token from this pass's logits and hands text to the request.
 * Returns the number of tokens generated (0 or 1). */
static int sample_slot(slm_engine *e, emodel *m, slot *sl) {
    slm_request *r = sl->req;
    const slm_gen_params *g = &r->gen;
    const float *logits = slm_logits(m->ctx, sl->logit_index);
    if (!logits) {
        finish_slot(e, m, sl, SLM_FINISH_ERROR, "engine returned no logits", false);
        return 0;
    }
    bool ban_eog = g->ignore_eos || sl->n_generated < g->min_tokens;
    if (g->ignore_eos || g->min_tokens > 0) slm_sampler_set_banned(sl->sampler, m->eog_tokens, ban_eog ? m->n_eog : 0);
    slm_token tok = slm_sampler_sample(sl->sampler, logits);
    double now = slm_now();
    if (sl->n_generated == 0 && e->params.observer.first_token)
        e->params.observer.first_token(e->params.observer.user, now - r->t_submit);
    if (tok < 0 || tok >= m->n_vocab) {
        /* Every token is masked: a grammar that only allows end-of-generation while EOG is banned is
         * complete; anything else is a request that leaves no possible token. */
        if (tok < 0 && slm_sampler_grammar_done(sl->sampler))
            finish_slot(e, m, sl, SLM_FINISH_STOP, NULL, false);
        else
            finish_slot(e, m, sl, SLM_FINISH_ERROR,
                        "no token is possible: logit_bias, the grammar or the EOG ban forbid every token", true);
        return 0;
    }
    sl->n_generated++;
    slm_sampler_accept(sl->sampler, tok);
    bool eog = slm_token_is_eog(m->model, tok);
    slm_token_info info;
    if (g->logprobs && !eog) compute_logprobs(logits, m->n_vocab, tok, g->top_logprobs, &info);

    pthread_mutex_lock(&r->mu);
    if (r->t_first == 0) r->t_first = now;
    bool ok = true, stopped = false;
    if (!eog) {
        ok = slm_request_append_token(r, tok, g->logprobs ? &info : NULL) && append_piece(e, m, sl, tok);
        if (ok) {
            size_t n = slm_text_final_len(sl->pending.s, sl->pending.len, (const char *const *)g->stop, g->n_stop, false,
                                          &stopped);
            ok = release_pending(e, sl, n);
            if (stopped) sl->pending.len = 0; /* the stop string itself is not emitted */
        }
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);

    int kv = slm_kv_seq_len(m->ctx, sl->id);
    if (!ok)
        finish_slot(e, m, sl, SLM_FINISH_ERROR, "out of memory", false);
    else if (eog || stopped)
        finish_slot(e, m, sl, SLM_FINISH_STOP, NULL, false);
    else if (g->grammar && slm_sampler_grammar_done(sl->sampler))
        finish_slot(e, m, sl, SLM_FINISH_STOP, NULL, false);
    else if ((g->max_tokens > 0 && sl->n_generated >= g->max_tokens) || kv + 1 >= m->n_ctx) /* no room to feed it */
        finish_slot(e, m, sl, SLM_FINISH_LENGTH, NULL, false);
    else {
        sl->decoding = true;
        sl->next_token = tok;
    }
    return eog ? 0 : 1;
}

/* log P(continuation) from the logits rows of this pass; KV goes back to the prompt. */
static void score_slot(slm_engine *e, emodel *m, slot *sl) {
    slm_request *r = sl->req;
    const slm_token *cont = r->score_conts[sl->score_index];
    double lp = 0;
    for (int j = 0; j < sl->batch_n; j++) {
        const float *l = slm_logits(m->ctx, sl->logit_index + j);
        if (!l) {
            finish_slot(e, m, sl, SLM_FINISH_ERROR, "engine returned no logits", false);
            return;
        }
        lp += (double)l[cont[j]] - log_sum_exp(l, m->n_vocab, NULL);
    }
    slm_kv_seq_truncate(m->ctx, sl->id, r->n_prompt - 1);
    pthread_mutex_lock(&r->mu);
    r->scores[sl->score_index] = lp;
    r->n_scored = ++sl->score_index;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (sl->score_index == r->n_score) finish_slot(e, m, sl, SLM_FINISH_STOP, NULL, false);
}

/* The pooled embeddings of this pass's inputs into their requests; a request whose inputs are all
 * done finishes. */
static void embed_results(slm_engine *e, emodel *m) {
    char err[256];
    for (int k = 0; k < m->n_emb; k++) {
        slot *sl = &m->slots[m->emb_owner[k]];
        slm_request *r = sl->req;
        if (!r) continue; /* an earlier input of the same request failed */
        float *dst = r->embeddings + (size_t)m->emb_input[k] * (size_t)m->n_embd;
        if (slm_embedding(m->ctx, m->emb_seq[k], dst, err, sizeof err) != 0) {
            finish_slot(e, m, sl, SLM_FINISH_ERROR, err, false);
            continue;
        }
        pthread_mutex_lock(&r->mu);
        r->n_embed_done++;
        r->n_embed_tokens += r->embed_lens[m->emb_input[k]];
        bool all = r->n_embed_done == r->n_embed;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        if (all) finish_slot(e, m, sl, SLM_FINISH_STOP, NULL, false);
    }
}

/* ---------- one pass ---------- */

static void queue_remove_at(emodel *m, int k) {
    for (int j = k; j < m->queue_len - 1; j++)
        m->queue[(m->queue_head + j) % m->queue_cap] = m->queue[(m->queue_head + j + 1) % m->queue_cap];
    m->queue_len--;
}

/* Under e->mu: drops cancelled or expired queued requests, then fills free slots in FIFO order. */
static void admit_queued(slm_engine *e, emodel *m, double now) {
    for (int k = 0; k < m->queue_len;) {
        slm_request *r = m->queue[(m->queue_head + k) % m->queue_cap];
        bool cancelled = atomic_load(&r->cancelled) || e->cancel_all;
        if (cancelled || (r->deadline > 0 && now > r->deadline)) {
            queue_remove_at(m, k);
            pthread_mutex_unlock(&e->mu);
            slm_request_finish(r, cancelled ? SLM_FINISH_CANCELLED : SLM_FINISH_TIMEOUT, NULL);
            slm_request_release(r);
            pthread_mutex_lock(&e->mu);
            continue;
        }
        k++;
    }
    /* A request naming its sequence waits while that one is busy; others keep FIFO order. */
    for (int k = 0; k < m->queue_len && m->busy < m->n_seq;) {
        slm_request *r = m->queue[(m->queue_head + k) % m->queue_cap];
        if (r->seq >= 0 && m->slots[r->seq].req) {
            k++;
            continue;
        }
        queue_remove_at(m, k);
        m->busy++;
        pthread_mutex_unlock(&e->mu); /* admit() takes request locks */
        bool placed = admit(e, m, r);
        pthread_mutex_lock(&e->mu);
        if (!placed) { /* cannot happen while busy < n_seq; never leave a request hanging regardless */
            m->busy--;
            pthread_mutex_unlock(&e->mu);
            slm_request_finish(r, SLM_FINISH_ERROR, "no free slot");
            slm_request_release(r);
            pthread_mutex_lock(&e->mu);
            break;
        }
    }
    pthread_cond_broadcast(&e->idle_cv);
}

static void fail_batch(slm_engine *e, emodel *m, const char *err) {
    for (int i = 0; i < m->n_seq; i++) {
        slot *sl = &m->slots[i];
        if (!sl->req || sl->batch_role == IN_BATCH_NONE) continue;
        /* The KV of this sequence is in an unknown state after a failed pass: forget it. */
        slm_kv_seq_truncate(m->ctx, sl->id, 0);
        finish_slot(e, m, sl, SLM_FINISH_ERROR, err, false);
    }
    for (int k = 0; k < m->n_emb; k++) slm_kv_seq_truncate(m->ctx, m->emb_seq[k], 0); /* lent sequences too */
    m->n_emb = 0;
}

static void add_token(emodel *m, int *n, slm_token t, int pos, int seq, bool logits) {
    m->b_tokens[*n] = t;
    m->b_pos[*n] = pos;
    m->b_seq[*n] = seq;
    m->b_logits[*n] = logits ? 1 : 0;
    (*n)++;
}

static bool in_prefill(const slot *sl) {
    const slm_request *r = sl->req;
    if (!r || sl->decoding) return false;
    if (r->kind == SLM_REQ_GENERATE) return sl->n_fed < r->n_prompt;
    if (r->kind == SLM_REQ_SCORE) return sl->n_fed < r->n_prompt - 1;
    return false;
}

/* Prompt tokens each prefilling slot takes: an equal share of the budget first (so a short prompt
 * admitted beside a long one is not stuck behind it), then what is left in rotating order. */
static int plan_prefill(emodel *m, int budget) {
    int n_pre = 0;
    for (int i = 0; i < m->n_seq; i++) {
        m->plan[i] = 0;
        n_pre += in_prefill(&m->slots[i]);
    }
    if (n_pre == 0 || budget <= 0) return 0;
    int used = 0, share = budget / n_pre > 0 ? budget / n_pre : 1;
    for (int round = 0; round < 2 && used < budget; round++)
        for (int j = 0; j < m->n_seq && used < budget; j++) {
            int i = (m->prefill_rotor + j) % m->n_seq;
            slot *sl = &m->slots[i];
            if (!in_prefill(sl)) continue;
            int end = sl->req->kind == SLM_REQ_GENERATE ? sl->req->n_prompt : sl->req->n_prompt - 1;
            int want = end - sl->n_fed - m->plan[i];
            int cap = round == 0 ? share : budget - used;
            int take = want < cap ? want : cap;
            if (take > budget - used) take = budget - used;
            if (take <= 0) continue;
            m->plan[i] += take;
            used += take;
        }
    m->prefill_rotor = (m->prefill_rotor + 1) % m->n_seq;
    return used;
}

/* Builds and runs one forward pass for model m; returns the tokens it processed. */
static int run_model_pass(slm_engine *e, emodel *m) {
    double now = slm_now();
    /* cancellations and deadlines first: a slot freed here is reusable in this same pass */
    for (int i = 0; i < m->n_seq; i++) {
        slot *sl = &m->slots[i];
        if (!sl->req) continue;
        if (atomic_load(&sl->req->cancelled) || e->cancel_all)
            finish_slot(e, m, sl, SLM_FINISH_CANCELLED, NULL, false);
        else if (sl->req->deadline > 0 && now > sl->req->deadline)
            finish_slot(e, m, sl, SLM_FINISH_TIMEOUT, NULL, false);
    }
    pthread_mutex_lock(&e->mu);
    admit_queued(e, m, now);
    pthread_mutex_unlock(&e->mu);

    int n = 0, n_logits = 0, budget = m->n_batch;
    int n_prompt_fed = 0, n_embed_fed = 0, n_scored = 0;
    for (int i = 0; i < m->n_seq; i++) m->slots[i].batch_role = IN_BATCH_NONE;
    /* Whole embedding inputs go first: pooling needs every token of an input in one pass. A request
     * with several inputs also borrows the sequences of free slots for this pass (an embedding keeps
     * nothing in the KV), so its inputs are encoded side by side. */
    m->n_emb = 0;
    for (int i = 0; i < m->n_seq; i++) m->seq_used[i] = m->slots[i].req != NULL;
    for (int i = 0; i < m->n_seq; i++) {
        slot *sl = &m->slots[i];
        slm_request *r = sl->req;
        if (!r || r->kind != SLM_REQ_EMBED) continue;
        int seq = sl->id, free_from = 0;
        while (sl->embed_index < r->n_embed && r->embed_lens[sl->embed_index] <= budget) {
            if (seq < 0) { /* the own sequence is taken: a free one */
                while (free_from < m->n_seq && m->seq_used[free_from]) free_from++;
                if (free_from == m->n_seq) break;
                seq = free_from;
            }
            m->seq_used[seq] = true;
            int len = r->embed_lens[sl->embed_index];
            slm_kv_seq_truncate(m->ctx, seq, 0);
            slm_context_set_lora(m->ctx, seq, r->lora, r->n_lora, NULL, 0); /* a lent sequence: this request's adapters */
            const slm_token *in = r->embed_inputs[sl->embed_index];
            for (int k = 0; k < len; k++) add_token(m, &n, in[k], k, seq, false);
            m->emb_seq[m->n_emb] = seq;
            m->emb_owner[m->n_emb] = i;
            m->emb_input[m->n_emb] = sl->embed_index++;
            m->n_emb++;
            budget -= len;
            n_embed_fed += len;
            sl->batch_role = IN_BATCH_EMBED;
            seq = -1;
        }
    }
    /* One token for every generating slot. */
    for (int i = 0; i < m->n_seq && budget > 0; i++) {
        slot *sl = &m->slots[i];
        if (!sl->req || !sl->decoding) continue;
        sl->logit_index = n_logits++;
        add_token(m, &n, sl->next_token, slm_kv_seq_len(m->ctx, sl->id), sl->id, true);
        budget--;
        sl->batch_role = IN_BATCH_DECODE;
        sl->batch_n = 1;
    }
    /* Whole continuations of slots whose prompt is in: the last prompt token, then the continuation. */
    for (int i = 0; i < m->n_seq; i++) {
        slot *sl = &m->slots[i];
        slm_request *r = sl->req;
        if (!r || r->kind != SLM_REQ_SCORE || in_prefill(sl)) continue;
        int k = r->score_lens[sl->score_index];
        if (k > budget) continue;
        const slm_token *cont = r->score_conts[sl->score_index];
        int base = r->n_prompt - 1;
        sl->logit_index = n_logits;
        for (int j = 0; j < k; j++) add_token(m, &n, j == 0 ? r->prompt[base] : cont[j - 1], base + j, sl->id, true);
        n_logits += k;
        budget -= k;
        n_scored += k;
        sl->batch_role = IN_BATCH_SCORE;
        sl->batch_n = k;
    }
    /* Prompt chunks with what is left. */
    plan_prefill(m, budget);
    for (int i = 0; i < m->n_seq; i++) {
        slot *sl = &m->slots[i];
        int take = m->plan[i];
        if (take == 0) continue;
        slm_request *r = sl->req;
        for (int k = 0; k < take; k++) {
            bool last = r->kind == SLM_REQ_GENERATE && sl->n_fed + k == r->n_prompt - 1;
            add_token(m, &n, r->prompt[sl->n_fed + k], sl->n_fed + k, sl->id, last);
        }
        if (r->kind == SLM_REQ_GENERATE && sl->n_fed + take == r->n_prompt) sl->logit_index = n_logits++;
        n_prompt_fed += take;
        sl->batch_role = IN_BATCH_PREFILL;
        sl->batch_n = take;
    }
    if (n == 0) return 0;

    slm_batch batch = {.n_tokens = n, .tokens = m->b_tokens, .pos = m->b_pos, .seq_id = m->b_seq, .logits = m->b_logits};
    char err[256];
    if (slm_decode(m->ctx, &batch, err, sizeof err) != 0) {
        fprintf(stderr, "slm: forward pass failed: %s\n", err);
        fail_batch(e, m, err);
        return n;
    }

    int n_gen = 0;
    for (int i = 0; i < m->n_seq; i++) {
        slot *sl = &m->slots[i];
        if (sl->batch_role == IN_BATCH_PREFILL) sl->n_fed += sl->batch_n;
    }
    for (int i = 0; i < m->n_seq; i++) {
        slot *sl = &m->slots[i];
        if (sl->batch_role == IN_BATCH_DECODE ||
            (sl->batch_role == IN_BATCH_PREFILL && sl->req->kind == SLM_REQ_GENERATE && sl->n_fed == sl->req->n_prompt)) {
            n_gen += sample_slot(e, m, sl);
        } else if (sl->batch_role == IN_BATCH_SCORE) {
            score_slot(e, m, sl);
        }
    }
    embed_results(e, m);
    if (e->params.observer.forward)
        e->params.observer.forward(e->params.observer.user, n_prompt_fed + n_scored, n_gen, n_embed_fed);
    return n;
}

int slm_engine_step(slm_engine *e) {
    /* the model array holds still during a pass; a pending load or unload goes first */
    pthread_mutex_lock(&e->mu);
    while (e->n_changing > 0 || e->stepping) pthread_cond_wait(&e->models_cv, &e->mu);
    e->stepping = true;
    int n = e->n_models;
    pthread_mutex_unlock(&e->mu);
    int total = 0;
    for (int i = 0; i < n; i++)
        if (e->models[i]) total += run_model_pass(e, e->models[i]);
    pthread_mutex_lock(&e->mu);
    e->stepping = false;
    pthread_cond_broadcast(&e->models_cv);
    pthread_mutex_unlock(&e->mu);
    return total;
}

bool engine_has_work(const slm_engine *e) {
    for (int i = 0; i < e->n_models; i++)
        if (e->models[i] && (e->models[i]->busy > 0 || e->models[i]->queue_len > 0)) return true;
    return false;
}

void engine_cancel_everything(slm_engine *e) {
    for (int k = 0; k < e->n_models; k++) {
        emodel *m = e->models[k];
        if (!m) continue;
        for (int i = 0; i < m->n_seq; i++)
            if (m->slots[i].req) finish_slot(e, m, &m->slots[i], SLM_FINISH_CANCELLED, NULL, false);
        pthread_mutex_lock(&e->mu);
        while (m->queue_len > 0) {
            slm_request *r = m->queue[m->queue_head];
            m->queue_head = (m->queue_head + 1) % m->queue_cap;
            m->queue_len--;
            pthread_mutex_unlock(&e->mu);
            slm_request_finish(r, SLM_FINISH_CANCELLED, NULL);
            slm_request_release(r);
            pthread_mutex_lock(&e->mu);
        }
        pthread_cond_broadcast(&e->idle_cv);
        pthread_mutex_unlock(&e->mu);
    }
}

void *engine_main(void *arg) {
    slm_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->quit && !engine_has_work(e)) {
            /* idle: the time to unload models whose keep_alive ran out */
            double next = engine_expire_idle(e);
            if (e->quit || engine_has_work(e)) break;
            if (next <= 0) {
                pthread_cond_wait(&e->cv, &e->mu);
                continue;
            }
            double wait = next - slm_now() + 0.01;
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            double ns = (double)until.tv_nsec + (wait > 0 ? wait : 0) * 1e9;
            until.tv_sec += (time_t)(ns / 1e9);
            until.tv_nsec = (long)(ns - (double)(time_t)(ns / 1e9) * 1e9);
            pthread_cond_timedwait(&e->cv, &e->mu, &until);
        }
        bool quit = e->quit;
        pthread_mutex_unlock(&e->mu);
        if (quit) break;
        slm_engine_step(e);
        if (e->has_loader) { /* busy with other models: an idle one's keep_alive still runs out */
            pthread_mutex_lock(&e->mu);
            engine_expire_idle(e);
            pthread_mutex_unlock(&e->mu);
        }
    }
    engine_cancel_everything(e); /* quitting: nothing may be left hanging */
    return NULL;
}

