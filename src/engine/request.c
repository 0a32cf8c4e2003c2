/* Requests: the job a front end hands the engine and the channel its results come back through. */
#include "engine/request_impl.h"
#include "util/buf.h"
#include "util/err.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double slm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void slm_gen_params_init(slm_gen_params *p) {
    memset(p, 0, sizeof *p);
    p->sampling = slm_sampler_default_params();
}

void slm_gen_params_free(slm_gen_params *p) {
    free(p->logit_bias);
    for (int i = 0; i < p->n_stop; i++) free(p->stop[i]);
    if (p->grammar) slm_grammar_free(p->grammar);
    memset(p, 0, sizeof *p);
}

slm_request *slm_request_new(slm_request_kind kind) {
    slm_request *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    atomic_init(&r->refs, 1);
    atomic_init(&r->cancelled, false);
    r->kind = kind;
    r->seq = -1;
    slm_gen_params_init(&r->gen);
    pthread_mutex_init(&r->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    return r;
}

void slm_request_retain(slm_request *r) { atomic_fetch_add(&r->refs, 1); }

void slm_request_release(slm_request *r) {
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) return;
    free(r->prompt);
    for (int i = 0; i < r->n_embed; i++) free(r->embed_inputs ? r->embed_inputs[i] : NULL);
    free(r->embed_inputs);
    free(r->embed_lens);
    for (int i = 0; i < r->n_score; i++) free(r->score_conts[i]);
    slm_gen_params_free(&r->gen);
    for (int i = 0; i < r->n_lora; i++) slm_lora_free(r->lora[i].lora);
    free(r->text);
    free(r->tokens);
    free(r->infos);
    free(r->embeddings);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

int slm_request_add_lora(slm_request *r, slm_lora *lora, float scale, char *err, size_t err_len) {
    if (!lora) return slm_err(err, err_len, "no adapter");
    if (!isfinite(scale)) return slm_err(err, err_len, "adapter \"%s\": the scale is not a finite number", slm_lora_name(lora));
    if (r->n_lora >= SLM_LORA_MAX)
        return slm_err(err, err_len, "more than %d LoRA adapters on one request", SLM_LORA_MAX);
    slm_lora_retain(lora);
    r->lora[r->n_lora++] = (slm_lora_use){lora, scale};
    return 0;
}

bool slm_request_append_text(slm_request *r, const char *s, size_t n) {
    if (n > SIZE_MAX - r->text_len - 1 || !slm_grow((void **)&r->text, &r->text_cap, r->text_len + n + 1, 1, 64))
        return false;
    memcpy(r->text + r->text_len, s, n);
    r->text_len += n;
    r->text[r->text_len] = 0;
    return true;
}

bool slm_request_append_token(slm_request *r, slm_token t, const slm_token_info *info) {
    if (!slm_grow((void **)&r->tokens, &r->tokens_cap, (size_t)r->n_tokens + 1, sizeof *r->tokens, 64)) return false;
    r->tokens[r->n_tokens++] = t;
    if (info) {
        if (!slm_grow((void **)&r->infos, &r->infos_cap, (size_t)r->n_infos + 1, sizeof *r->infos, 64)) return false;
        r->infos[r->n_infos++] = *info;
    }
    return true;
}

void slm_request_finish(slm_request *r, slm_finish why, const char *error) {
    pthread_mutex_lock(&r->mu);
    if (!r->done) {
        r->done = true;
        r->finish = why;
        r->t_end = slm_now();
        if (error) snprintf(r->error, sizeof r->error, "%s", error);
    }
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void slm_request_wait(slm_request *r, int ms) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long)ms * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&r->cv, &r->mu, &until);
}

const char *slm_finish_name(slm_finish f) {
    switch (f) {
    case SLM_FINISH_STOP: return "stop";
    case SLM_FINISH_LENGTH: return "length";
    case SLM_FINISH_CANCELLED: return "cancelled";
    case SLM_FINISH_TIMEOUT: return "timeout";
    case SLM_FINISH_ERROR: return "error";
    default: return "none";
    }
}

const char *slm_finish_message(const slm_request *r) {
    if (r->finish == SLM_FINISH_TIMEOUT) return "request exceeded the server's time limit";
    if (r->finish == SLM_FINISH_CANCELLED) return "server is shutting down";
    return r->error[0] ? r->error : "generation failed";
}

/* Expected length of a sequence from its lead byte; 0 for a byte that cannot start one. */
static int utf8_seq_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

size_t slm_utf8_complete_prefix(const char *s, size_t n) {
    /* Only the last 3 bytes can belong to an unfinished character. */
    size_t start = n > 3 ? n - 3 : 0;
    for (size_t i = n; i > start; i--) {
        unsigned char c = (unsigned char)s[i - 1];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte: keep looking for the lead */
        int len = utf8_seq_len(c);
        if (len > 1 && (size_t)len > n - (i - 1)) return i - 1;
        return n;
    }
    return n;
}

size_t slm_utf8_sanitize(const char *s, size_t n, char *out) {
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int len = utf8_seq_len(u[i]);
        bool ok = len > 0 && i + (size_t)len <= n;
        for (int k = 1; ok && k < len; k++) ok = (u[i + k] & 0xC0) == 0x80;
        if (ok && len >= 3) {
            /* reject overlongs and surrogates */
            if (u[i] == 0xE0 && u[i + 1] < 0xA0) ok = false;
            if (u[i] == 0xED && u[i + 1] >= 0xA0) ok = false;
            if (u[i] == 0xF0 && u[i + 1] < 0x90) ok = false;
            if (u[i] == 0xF4 && u[i + 1] >= 0x90) ok = false;
        }
        if (ok) {
            memcpy(out + o, s + i, (size_t)len);
            o += (size_t)len;
            i += (size_t)len;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    return o;
}
