/* OpenAI wire format: /v1/chat/completions, /v1/completions (JSON or SSE), /v1/embeddings, /v1/models. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_lora.h"
#include "calls.h"
#include "slm_models.h"
#include "handlers.h"
#include "messages.h"
#include "params.h"
#include "rag_chat.h"
#include "replies.h"
#include "slm_route.h"
#include "tools.h"

typedef struct oai_state {
    bool chat;
    bool include_usage;
    char id[48];
    long long created;
    char model[256];
    srv_server *srv;
    const srv_model *model_ref;
    size_t text_offset; /* completions logprobs: where the next token's text starts */
    /* "data: " + chunk_base without its closing brace, dumped once; "" if it did not fit */
    char chunk_head[2048];
    size_t chunk_head_len;
    slm_tool_stream *calls; /* chat with tools: the output parsed for calls (memory after this struct) */
    void *rag;              /* chat with "rag": the sources' citations (memory after the calls) */
} oai_state;

/* ---------- logprobs ---------- */

/* The token's bytes as JSON text (invalid UTF-8 replaced) and as a byte array. */
static json_t *token_text(const srv_model *M, slm_token t, json_t **bytes_out) {
    char piece[256], clean[768];
    int n = slm_token_to_piece(M->model, t, false, piece, (int)sizeof piece);
    if (n < 0) n = 0; /* a piece over 256 bytes: shown empty rather than cut */
    if (bytes_out) {
        *bytes_out = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(*bytes_out, json_integer((unsigned char)piece[i]));
    }
    size_t m = slm_utf8_sanitize(piece, (size_t)n, clean);
    return json_stringn(clean, m);
}

static json_t *chat_logprob_entry(const srv_model *s, const slm_token_info *info) {
    json_t *bytes;
    json_t *tok = token_text(s, info->token, &bytes);
    json_t *top = json_array();
    for (int k = 0; k < info->n_top; k++) {
        json_t *tb;
        json_t *tt = token_text(s, info->top_tokens[k], &tb);
        json_array_append_new(top, json_pack("{s:o, s:f, s:o}", "token", tt, "logprob", (double)info->top_logprobs[k], "bytes", tb));
    }
    return json_pack("{s:o, s:f, s:o, s:o}", "token", tok, "logprob", (double)info->logprob, "bytes", bytes, "top_logprobs", top);
}

static json_t *chat_logprobs(const srv_model *s, const slm_token_info *infos, int n) {
    json_t *content = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(content, chat_logprob_entry(s, &infos[i]));
    return json_pack("{s:o}", "content", content);
}

static json_t *completion_logprobs(const srv_model *s, const slm_token_info *infos, int n, size_t *offset) {
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    for (int i = 0; i < n; i++) {
        json_t *t = token_text(s, infos[i].token, NULL);
        size_t len = json_string_length(t);
        json_array_append_new(tokens, t);
        json_array_append_new(lps, json_real(infos[i].logprob));
        json_t *top = json_object();
        for (int k = 0; k < infos[i].n_top; k++) {
            json_t *tt = token_text(s, infos[i].top_tokens[k], NULL);
            json_object_set_new(top, json_string_value(tt), json_real(infos[i].top_logprobs[k]));
            json_decref(tt);
        }
        json_array_append_new(tops, top);
        json_array_append_new(offs, json_integer((json_int_t)*offset));
        *offset += len;
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops, "text_offset", offs);
}

static json_t *usage_json(const srv_server *s, const slm_request *r) {
    int prompt, completion;
    srv_usage(s, r, &prompt, &completion);
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", prompt, "completion_tokens", completion, "total_tokens",
                     prompt + completion, "prompt_tokens_details", "cached_tokens", r->n_prompt_cached);
}

/* llama.cpp-style timings; the chat page shows tok/s from these. */
static json_t *timings_json(const slm_request *r) {
    double prompt_ms = r->t_first > 0 ? (r->t_first - r->t_start) * 1e3 : 0;
    double gen_ms = r->t_first > 0 && r->t_end > r->t_first ? (r->t_end - r->t_first) * 1e3 : 0;
    int n_after_first = r->n_tokens > 1 ? r->n_tokens - 1 : 0;
    return json_pack("{s:i, s:i, s:f, s:i, s:f, s:f, s:f}", "prompt_n", r->n_prompt - r->n_prompt_cached, "cache_n",
                     r->n_prompt_cached, "prompt_ms", prompt_ms, "predicted_n", r->n_tokens, "predicted_ms", gen_ms,
                     "predicted_per_second", gen_ms > 0 ? n_after_first * 1e3 / gen_ms : 0.0, "queue_ms",
                     (r->t_start - r->t_submit) * 1e3);
}

/* ---------- request parsing ---------- */

/* Text prompt (string, [string], [int] or [[int]]) to tokens. */
static bool completion_prompt(const srv_model *M, json_t *prompt, int limit, slm_token **toks, int *n, srv_fail *f) {
    if (json_is_array(prompt) && json_array_size(prompt) == 1 &&
        (json_is_string(json_array_get(prompt, 0)) || json_is_array(json_array_get(prompt, 0))))
        prompt = json_array_get(prompt, 0);
    if (json_is_string(prompt))
        return srv_tokenize(M, json_string_value(prompt), true, false, "prompt", limit, toks, n, f);
    if (json_is_array(prompt)) {
        size_t len = json_array_size(prompt);
        if (len == 0) return srv_failf(f, 400, NULL, "prompt", "'prompt' is empty");
        if (len > (size_t)limit)
            return srv_failf(f, 400, "context_length_exceeded", "prompt",
                             "'prompt' has %zu tokens but this server allows at most %d (context per slot is %d)", len,
                             limit, M->n_ctx);
        slm_token *t = malloc(len * sizeof *t);
        if (!t) return srv_failf(f, 500, NULL, "prompt", "out of memory");
        if (!srv_json_token_ids(prompt, M->n_vocab, t)) {
            free(t);
            return srv_failf(f, 400, NULL, "prompt",
                             "'prompt' must be a string, an array with one string, or token ids in [0, %d)", M->n_vocab);
        }
        *toks = t;
        *n = (int)len;
        return true;
    }
    return srv_failf(f, 400, NULL, "prompt", "'prompt' must be a string or an array of token ids (one prompt per request)");
}

/* ---------- streaming ---------- */

static json_t *chunk_base(const oai_state *u) {
    return json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", u->id, "object", u->chat ? "chat.completion.chunk" : "text_completion",
                     "created", (json_int_t)u->created, "model", u->model, "system_fingerprint", "slm-" SLM_VERSION);
}

static void make_chunk_head(oai_state *u) {
    json_t *obj = chunk_base(u);
    char *base = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    size_t n = base ? strlen(base) : 0;
    if (n >= 2 && n - 1 + 6 < sizeof u->chunk_head) {
        memcpy(u->chunk_head, "data: ", 6);
        memcpy(u->chunk_head + 6, base, n - 1);
        u->chunk_head_len = n - 1 + 6;
    }
    free(base);
}

/* A plain text delta written straight into the stream: the per-token path allocates nothing. Bytes
 * are the same as the jansson-built chunk. */
static bool emit_text_chunk(srv_stream *st, const oai_state *u, const srv_delta *d) {
    static const char chat_mid[] = ",\"choices\":[{\"index\":0,\"delta\":{\"content\":";
    static const char chat_end[] = "},\"logprobs\":null,\"finish_reason\":null}]}\n\n";
    static const char text_mid[] = ",\"choices\":[{\"index\":0,\"text\":";
    static const char text_end[] = ",\"logprobs\":null,\"finish_reason\":null}]}\n\n";
    return srv_stream_write(st, u->chunk_head, u->chunk_head_len) &&
           (u->chat ? srv_stream_write(st, chat_mid, sizeof chat_mid - 1) : srv_stream_write(st, text_mid, sizeof text_mid - 1)) &&
           srv_stream_write_json_string(st, d->text, d->text_len) &&
           (u->chat ? srv_stream_write(st, chat_end, sizeof chat_end - 1) : srv_stream_write(st, text_end, sizeof text_end - 1));
}

static bool emit_error_event(srv_stream *st, slm_request *r) {
    int status = srv_finish_status(r);
    bool client = status == 400;
    json_t *e = json_pack("{s:{s:s, s:s, s:n, s:s, s:i}}", "error", "message", slm_finish_message(r), "type",
                          client ? "invalid_request_error" : "server_error", "param", "code",
                          client ? "no_token_possible" : slm_finish_name(r->finish), "status", status);
    return srv_stream_write_json(st, "data: ", e, "\n\n") && srv_stream_write(st, "data: [DONE]\n\n", 14);
}

static bool emit_end(srv_stream *st, slm_request *r, oai_state *u, const char *fr);

static bool emit_openai(srv_stream *st, slm_request *r, const srv_delta *d) {
    oai_state *u = st->user;
    const srv_model *s = u->model_ref;
    bool ok = true;
    bool failed = d->done && r->finish != SLM_FINISH_STOP && r->finish != SLM_FINISH_LENGTH;
    if (u->chat && !st->sent_first && !failed) {
        json_t *c = chunk_base(u);
        json_object_set_new(c, "choices",
                            json_pack("[{s:i, s:{s:s, s:s}, s:n, s:n}]", "index", 0, "delta", "role", "assistant", "content",
                                      "", "logprobs", "finish_reason"));
        ok = srv_stream_write_json(st, "data: ", c, "\n\n");
    }
    if (ok && d->text_len > 0 && !r->gen.logprobs && u->chunk_head_len) {
        ok = emit_text_chunk(st, u, d);
    } else if (ok && (d->text_len > 0 || d->n_infos > 0)) {
        json_t *c = chunk_base(u);
        json_t *lp = r->gen.logprobs ? (u->chat ? chat_logprobs(s, d->infos, d->n_infos)
                                                : completion_logprobs(s, d->infos, d->n_infos, &u->text_offset))
                                     : json_null();
        json_t *choice = u->chat ? json_pack("{s:i, s:{s:s%}, s:o, s:n}", "index", 0, "delta", "content", d->text,
                                             d->text_len, "logprobs", lp, "finish_reason")
                                 : json_pack("{s:i, s:s%, s:o, s:n}", "index", 0, "text", d->text, d->text_len, "logprobs",
                                             lp, "finish_reason");
        json_object_set_new(c, "choices", json_pack("[o]", choice));
        ok = srv_stream_write_json(st, "data: ", c, "\n\n");
    }
    if (ok && d->done) {
        if (failed) return emit_error_event(st, r);
        ok = emit_end(st, r, u, slm_finish_name(r->finish));
    }
    return ok;
}

/* The last chunks: finish_reason and timings, usage when asked, [DONE]. */
static bool emit_end(srv_stream *st, slm_request *r, oai_state *u, const char *fr) {
    bool ok = true;
    {
        json_t *c = chunk_base(u);
        json_t *choice = u->chat ? json_pack("{s:i, s:{}, s:n, s:s}", "index", 0, "delta", "logprobs", "finish_reason", fr)
                                 : json_pack("{s:i, s:s, s:n, s:s}", "index", 0, "text", "", "logprobs", "finish_reason", fr);
        json_object_set_new(c, "choices", json_pack("[o]", choice));
        json_object_set_new(c, "timings", timings_json(r));
        if (u->rag) srv_rag_reply_citations(u->rag, c, r->text, r->text_len);
        ok = srv_stream_write_json(st, "data: ", c, "\n\n");
        if (ok && u->include_usage) {
            c = chunk_base(u);
            json_object_set_new(c, "choices", json_array());
            json_object_set_new(c, "usage", usage_json(u->srv, r));
            if (st->origin && st->origin->route) json_object_set_new(c, "route", json_string(st->origin->route));
            ok = srv_stream_write_json(st, "data: ", c, "\n\n");
        }
        if (ok) ok = srv_stream_write(st, "data: [DONE]\n\n", 14);
    }
    return ok;
}

/* ---------- streamed tool calls: content deltas, then per call its id and name, then its
 * arguments in pieces (as OpenAI streams them) ---------- */

typedef struct tool_emit {
    srv_stream *st;
    oai_state *u;
    int choice; /* the choice's index (n > 1) */
} tool_emit;

static bool on_tool_event(void *user, slm_tool_event_kind kind, int index, const char *text, size_t len) {
    tool_emit *te = user;
    json_t *delta;
    if (kind == SLM_TOOL_EV_CONTENT) {
        delta = json_pack("{s:s%}", "content", text, len);
    } else if (kind == SLM_TOOL_EV_CALL) {
        char id[48];
        srv_tool_call_id(te->u->srv, id, sizeof id);
        delta = json_pack("{s:[{s:i, s:s, s:s, s:{s:s%, s:s}}]}", "tool_calls", "index", index, "id", id, "type", "function",
                          "function", "name", text, len, "arguments", "");
    } else {
        delta = json_pack("{s:[{s:i, s:{s:s%}}]}", "tool_calls", "index", index, "function", "arguments", text, len);
    }
    json_t *c = chunk_base(te->u);
    json_object_set_new(c, "choices", json_pack("[{s:i, s:o, s:n, s:n}]", "index", te->choice, "delta", delta, "logprobs", "finish_reason"));
    return srv_stream_write_json(te->st, "data: ", c, "\n\n");
}

static bool emit_openai_tools(srv_stream *st, slm_request *r, const srv_delta *d) {
    oai_state *u = st->user;
    bool ok = true;
    bool failed = d->done && r->finish != SLM_FINISH_STOP && r->finish != SLM_FINISH_LENGTH;
    if (!st->sent_first && !failed) {
        json_t *c = chunk_base(u);
        json_object_set_new(c, "choices",
                            json_pack("[{s:i, s:{s:s, s:s}, s:n, s:n}]", "index", 0, "delta", "role", "assistant", "content",
                                      "", "logprobs", "finish_reason"));
        ok = srv_stream_write_json(st, "data: ", c, "\n\n");
    }
    tool_emit te = {st, u, 0};
    if (ok && (d->text_len > 0 || (d->done && !failed))) ok = slm_tool_stream_feed(u->calls, d->text, d->text_len, d->done, on_tool_event, &te);
    if (ok && d->done) {
        if (failed) return emit_error_event(st, r);
        bool complete;
        int n = slm_tool_stream_calls(u->calls, &complete);
        ok = emit_end(st, r, u, n > 0 && complete && r->finish == SLM_FINISH_STOP ? "tool_calls" : slm_finish_name(r->finish));
    }
    return ok;
}

/* ---------- generation endpoints ---------- */

/* A finished reply with tools: its calls as message.tool_calls (content null when there is no
 * other text) and finish_reason "tool_calls". Text that does not parse as calls (a stop string cut
 * one) stays the content, whole. */
/* `text` is the output after the gate's output filter; when that masked something, the arguments
 * no longer need to match their schema (the generated ones did), so they are parsed as any object. */
static void add_tool_calls(srv_server *s, const srv_tools *t, json_t *choice, const char *text, size_t len, bool filtered) {
    char *content = NULL, err[256];
    slm_tool_call *calls = NULL;
    size_t n = 0;
    slm_tool *any = filtered ? calloc(t->n ? t->n : 1, sizeof *any) : NULL;
    if (filtered && !any) return;
    for (size_t i = 0; any && i < t->n; i++) any[i] = (slm_tool){t->tools[i].name, t->tools[i].description, NULL};
    int rc = slm_tool_parse(t->format, filtered ? any : t->tools, t->n, text, len, &content, &calls, &n, err, sizeof err);
    free(any);
    if (rc != 0 || n == 0) {
        free(content);
        return;
    }
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        char id[48];
        srv_tool_call_id(s, id, sizeof id);
        json_array_append_new(list, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", id, "type", "function", "function", "name",
                                              calls[i].name, "arguments", calls[i].arguments));
    }
    json_t *msg = json_object_get(choice, "message");
    json_object_set_new(msg, "content", *content ? json_string(content) : json_null());
    json_object_set_new(msg, "tool_calls", list);
    json_object_set_new(choice, "finish_reason", json_string("tool_calls"));
    free(content);
    slm_tool_calls_free(calls, n);
}

/* ---------- n > 1: choices generated together (srv_submit_choices) ---------- */

typedef struct choice_stream {
    size_t text_seen;
    int infos_seen;
    size_t text_offset; /* completions logprobs */
    bool started, finished;
    slm_tool_stream *calls; /* with tools */
} choice_stream;

typedef struct oai_choices {
    oai_state base; /* ids, model, the API's shape */
    int n;
    slm_request *rs[SRV_MAX_CHOICES];
    choice_stream ch[SRV_MAX_CHOICES];
} oai_choices;

static void oai_choices_cleanup(void *p) {
    oai_choices *u = p;
    for (int i = 0; i < u->n; i++) {
        slm_request_release(u->rs[i]);
        slm_tool_stream_free(u->ch[i].calls);
    }
}

/* New output of choice i: text (and its tokens' facts) as chunks with "index": i. */
static bool emit_choice_delta(srv_stream *st, oai_choices *u, int i, const char *text, size_t len, const slm_token_info *infos,
                              int n_infos, bool end) {
    oai_state *b = &u->base;
    choice_stream *ch = &u->ch[i];
    if (ch->calls) {
        tool_emit te = {st, b, i};
        return (len == 0 && !end) || slm_tool_stream_feed(ch->calls, text, len, end, on_tool_event, &te);
    }
    if (len == 0 && n_infos == 0) return true;
    slm_request *r = u->rs[i];
    json_t *lp = r->gen.logprobs ? (b->chat ? chat_logprobs(b->model_ref, infos, n_infos)
                                            : completion_logprobs(b->model_ref, infos, n_infos, &ch->text_offset))
                                 : json_null();
    json_t *c = chunk_base(b);
    json_t *choice = b->chat ? json_pack("{s:i, s:{s:s%}, s:o, s:n}", "index", i, "delta", "content", text, len, "logprobs", lp, "finish_reason")
                             : json_pack("{s:i, s:s%, s:o, s:n}", "index", i, "text", text, len, "logprobs", lp, "finish_reason");
    json_object_set_new(c, "choices", json_pack("[o]", choice));
    return srv_stream_write_json(st, "data: ", c, "\n\n");
}

/* Called with J's lock held; takes each choice's own lock in turn (nothing takes them the other
 * way round). With an output filter, a choice's text goes out whole once it is done: the filter
 * reads one text at a time. */
static bool emit_choices(srv_stream *st, slm_request *J, const srv_delta *d) {
    oai_choices *u = st->user;
    oai_state *b = &u->base;
    bool hold = st->origin && st->origin->filter.feed;
    bool ok = true;
    /* with a filter, d->text at the end is every choice's text through it, separated */
    const char *pieces[SRV_MAX_CHOICES];
    size_t piece_lens[SRV_MAX_CHOICES];
    int n_pieces = hold && d->done ? srv_split_choices(d->text, d->text_len, u->n, pieces, piece_lens) : 0;
    for (int i = 0; ok && i < u->n; i++) {
        slm_request *r = u->rs[i];
        choice_stream *ch = &u->ch[i];
        if (ch->finished) continue;
        pthread_mutex_lock(&r->mu);
        bool fine = r->finish == SLM_FINISH_STOP || r->finish == SLM_FINISH_LENGTH;
        if (r->done && !fine) { /* the whole response fails with it (J carries its finish) */
            ch->finished = true;
            pthread_mutex_unlock(&r->mu);
            continue;
        }
        if (b->chat && !ch->started) {
            json_t *c = chunk_base(b);
            json_object_set_new(c, "choices", json_pack("[{s:i, s:{s:s, s:s}, s:n, s:n}]", "index", i, "delta", "role", "assistant",
                                                        "content", "", "logprobs", "finish_reason"));
            ok = srv_stream_write_json(st, "data: ", c, "\n\n");
        }
        ch->started = true;
        if (ok && hold) {
            if (!d->done) { /* the filtered texts come all at once, with J's end */
                pthread_mutex_unlock(&r->mu);
                continue;
            }
            ok = i < n_pieces && emit_choice_delta(st, u, i, pieces[i], piece_lens[i], r->infos, r->n_infos, true);
        } else if (ok) {
            ok = emit_choice_delta(st, u, i, r->text ? r->text + ch->text_seen : "", r->text_len - ch->text_seen,
                                   r->infos ? r->infos + ch->infos_seen : NULL, r->n_infos - ch->infos_seen, r->done);
            ch->text_seen = r->text_len;
            ch->infos_seen = r->n_infos;
        }
        if (ok && r->done) {
            bool complete = false;
            int calls = ch->calls ? slm_tool_stream_calls(ch->calls, &complete) : 0;
            const char *fr = calls > 0 && complete && r->finish == SLM_FINISH_STOP ? "tool_calls" : slm_finish_name(r->finish);
            json_t *c = chunk_base(b);
            json_t *choice = b->chat ? json_pack("{s:i, s:{}, s:n, s:s}", "index", i, "delta", "logprobs", "finish_reason", fr)
                                     : json_pack("{s:i, s:s, s:n, s:s}", "index", i, "text", "", "logprobs", "finish_reason", fr);
            json_object_set_new(c, "choices", json_pack("[o]", choice));
            ok = srv_stream_write_json(st, "data: ", c, "\n\n");
            ch->finished = true;
        }
        pthread_mutex_unlock(&r->mu);
    }
    if (!ok || !d->done) return ok;
    if (J->finish != SLM_FINISH_STOP && J->finish != SLM_FINISH_LENGTH) return emit_error_event(st, J);
    if (b->include_usage) {
        json_t *c = chunk_base(b);
        json_object_set_new(c, "choices", json_array());
        json_object_set_new(c, "usage", usage_json(b->srv, J));
        json_object_set_new(c, "timings", timings_json(J));
        if (st->origin && st->origin->route) json_object_set_new(c, "route", json_string(st->origin->route));
        ok = srv_stream_write_json(st, "data: ", c, "\n\n");
    }
    return ok && srv_stream_write(st, "data: [DONE]\n\n", 14);
}

/* r0's generation fields for another choice: stop strings and logit bias copied, the constraint
 * compiled again (a grammar holds its parse state, so each sequence needs its own). */
static bool copy_gen(srv_conn *c, const srv_model *M, json_t *req, const srv_tools *tools, const slm_gen_params *src,
                     slm_gen_params *dst, srv_fail *f) {
    *dst = *src;
    dst->grammar = NULL;
    dst->logit_bias = NULL;
    dst->sampling.logit_bias = NULL;
    dst->sampling.n_logit_bias = 0;
    dst->n_stop = 0;
    for (int k = 0; k < src->n_stop; k++) {
        if (!(dst->stop[k] = strdup(src->stop[k]))) return srv_failf(f, 500, NULL, NULL, "out of memory");
        dst->n_stop = k + 1;
    }
    if (src->sampling.n_logit_bias > 0) {
        size_t bytes = (size_t)src->sampling.n_logit_bias * sizeof *dst->logit_bias;
        if (!(dst->logit_bias = malloc(bytes))) return srv_failf(f, 500, NULL, NULL, "out of memory");
        memcpy(dst->logit_bias, src->sampling.logit_bias, bytes);
        dst->sampling.logit_bias = dst->logit_bias;
        dst->sampling.n_logit_bias = src->sampling.n_logit_bias;
    }
    if (!src->grammar) return true;
    return tools ? srv_tools_constrain(c, M, tools, dst, f) : srv_parse_constraint(c, M, req, SRV_API_OPENAI, dst, f);
}

/* n choices of one prompt: r0 is parsed and tokenized; the others get the same prompt, their own
 * sampling state (a grammar cannot be shared) and seed + i; all are submitted at once. */
static enum MHD_Result openai_choices(srv_conn *c, json_t *req, const srv_model *M, bool chat, slm_request *r0, const srv_tools *tools,
                                      int n, bool stream, bool include_usage) {
    srv_server *s = c->srv;
    srv_fail f = {0};
    slm_request *rs[SRV_MAX_CHOICES] = {r0};
    int built = 1;
    slm_request *J = NULL;
    oai_choices *u = NULL;
    enum MHD_Result ret;
    bool with_tools = chat && srv_tools_active(tools);
    for (int i = 1; i < n; i++) {
        slm_request *r = rs[i] = slm_request_new(SLM_REQ_GENERATE);
        built = i + 1;
        if (!r || !(r->prompt = malloc((size_t)r0->n_prompt * sizeof *r->prompt))) {
            srv_failf(&f, 500, NULL, NULL, "out of memory");
            goto fail;
        }
        memcpy(r->prompt, r0->prompt, (size_t)r0->n_prompt * sizeof *r->prompt);
        r->n_prompt = r0->n_prompt;
        if (!copy_gen(c, M, req, with_tools ? tools : NULL, &r0->gen, &r->gen, &f)) goto fail;
        r->gen.sampling.seed = r0->gen.sampling.seed + (uint64_t)i;
    }
    u = calloc(1, sizeof *u);
    if (!u) {
        srv_failf(&f, 500, NULL, NULL, "out of memory");
        goto fail;
    }
    oai_state *b = &u->base;
    b->chat = chat;
    b->include_usage = include_usage;
    b->created = (long long)time(NULL);
    b->srv = s;
    b->model_ref = M;
    snprintf(b->model, sizeof b->model, "%s", M->id);
    srv_new_id(s, chat ? "chatcmpl" : "cmpl", b->id, sizeof b->id);
    u->n = n;
    for (int i = 0; i < n; i++) {
        if (with_tools && !(u->ch[i].calls = slm_tool_stream_new(tools->format))) {
            srv_failf(&f, 500, NULL, NULL, "out of memory");
            goto fail;
        }
    }
    J = srv_submit_choices(c, rs, n);
    if (!J) {
        ret = MHD_YES;
        goto out;
    }
    if (stream) {
        for (int i = 0; i < n; i++) {
            slm_request_retain(rs[i]);
            u->rs[i] = rs[i];
        }
        oai_choices *owned = u;
        u = NULL;
        ret = srv_reply_stream_owning(c, J, "text/event-stream", emit_choices, owned, oai_choices_cleanup);
        goto out;
    }
    if (!srv_wait_done(c, J)) {
        ret = MHD_NO; /* client is gone: close without an answer */
        goto out;
    }
    if (J->finish != SLM_FINISH_STOP && J->finish != SLM_FINISH_LENGTH) {
        ret = srv_reply_finish_error(c, J);
        goto out;
    }
    /* the output filter reads one text once: every choice together (J's text), cut apart after */
    size_t all_len = 0;
    char *all = c->call.filter.feed ? srv_final_text(c, J, &all_len) : NULL;
    const char *pieces[SRV_MAX_CHOICES];
    size_t piece_lens[SRV_MAX_CHOICES];
    if (c->call.filter.feed && (!all || srv_split_choices(all, all_len, n, pieces, piece_lens) != n)) {
        free(all);
        ret = srv_reply_error(c, 500, NULL, NULL, all ? "the output filter changed the separation of the choices" : "out of memory");
        goto out;
    }
    json_t *choices = json_array();
    for (int i = 0; i < n; i++) {
        slm_request *r = rs[i];
        size_t text_len = all ? piece_lens[i] : 0;
        char *text = all ? strndup(pieces[i], piece_lens[i]) : srv_final_text(c, r, &text_len);
        if (!text) {
            free(all);
            json_decref(choices);
            ret = srv_reply_error(c, 500, NULL, NULL, "out of memory");
            goto out;
        }
        size_t offset = 0;
        json_t *lp = r->gen.logprobs ? (chat ? chat_logprobs(M, r->infos, r->n_infos) : completion_logprobs(M, r->infos, r->n_infos, &offset))
                                     : json_null();
        json_t *choice = chat ? json_pack("{s:i, s:{s:s, s:s%}, s:o, s:s}", "index", i, "message", "role", "assistant", "content", text,
                                          text_len, "logprobs", lp, "finish_reason", slm_finish_name(r->finish))
                              : json_pack("{s:i, s:s%, s:o, s:s}", "index", i, "text", text, text_len, "logprobs", lp, "finish_reason",
                                          slm_finish_name(r->finish));
        if (with_tools && r->finish == SLM_FINISH_STOP)
            add_tool_calls(s, tools, choice, text, text_len,
                           text_len != r->text_len || (text_len > 0 && memcmp(text, r->text, text_len) != 0));
        free(text);
        json_array_append_new(choices, choice);
    }
    free(all);
    json_t *resp = chunk_base(&u->base);
    json_object_set_new(resp, "object", json_string(chat ? "chat.completion" : "text_completion"));
    json_object_set_new(resp, "choices", choices);
    pthread_mutex_lock(&J->mu);
    json_object_set_new(resp, "usage", usage_json(s, J));
    json_object_set_new(resp, "timings", timings_json(J));
    pthread_mutex_unlock(&J->mu);
    if (c->call.route) json_object_set_new(resp, "route", json_string(c->call.route));
    ret = srv_reply_json(c, 200, resp);
    goto out;
fail:
    ret = srv_reply_fail(c, &f);
out:
    if (u) {
        oai_choices_cleanup(u);
        free(u);
    }
    for (int i = 1; i < built; i++) slm_request_release(rs[i]);
    slm_request_release(J);
    return ret;
}

static enum MHD_Result openai_generate(srv_conn *c, bool chat) {
    srv_server *s = c->srv;
    srv_fail f = {0};
    json_t *req = srv_parse_body(c, &f);
    slm_request *r = NULL;
    srv_chat_msgs msgs = {0};
    srv_tools tools = {0};
    srv_rag_chat *rag = NULL;
    enum MHD_Result ret;
    if (!req) return srv_reply_fail(c, &f);
    const char *model = NULL;
    bool stream = false, include_usage = false;
    if (!srv_json_string(req, "model", &model, &f) || !srv_json_bool(req, "stream", &stream, &f)) goto fail;
    const srv_model *M = srv_pick_generative(c, model);
    if (!M) {
        ret = MHD_YES;
        goto out;
    }
    json_t *so = json_object_get(req, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) {
            srv_failf(&f, 400, NULL, "stream_options", "'stream_options' must be an object");
            goto fail;
        }
        if (!stream) {
            srv_failf(&f, 400, NULL, "stream_options", "'stream_options' is only allowed with 'stream': true");
            goto fail;
        }
        if (!srv_json_bool(so, "include_usage", &include_usage, &f)) goto fail;
    }
    r = slm_request_new(SLM_REQ_GENERATE);
    if (!r) {
        srv_failf(&f, 500, NULL, NULL, "out of memory");
        goto fail;
    }
    int n_choices = 1;
    if (!srv_parse_openai_sampling(c, M, req, chat, &r->gen, &f) || !srv_parse_choices(M, req, &n_choices, &f)) goto fail;
    int limit = srv_prompt_limit(c, M); /* room for at least one generated token */
    if (chat) {
        if (!srv_parse_tools(M, req, &tools, &f) || !srv_tools_constrain(c, M, &tools, &r->gen, &f)) goto fail;
        if (!srv_parse_messages(req, SRV_API_OPENAI, &tools, &msgs, &f)) goto fail;
        if (msgs.n == 0) {
            srv_failf(&f, 400, NULL, "messages", "'messages' must not be empty");
            goto fail;
        }
        if (!srv_rag_chat_begin(c, M, req, &msgs, &tools, &r->gen, &rag, &f)) goto fail;
        if (!srv_inspect(c, msgs.msgs, msgs.n, NULL, stream)) {
            ret = MHD_YES;
            goto out;
        }
        if (!srv_chat_tokenize(M, msgs.msgs, msgs.n, true, "messages", limit, &r->prompt, &r->n_prompt, &f)) goto fail;
    } else {
        json_t *tl = json_object_get(req, "tools");
        if (tl && !json_is_null(tl) && !(json_is_array(tl) && json_array_size(tl) == 0)) {
            srv_failf(&f, 400, "unsupported", "tools", "'tools' is only served on /v1/chat/completions");
            goto fail;
        }
        json_t *rg = json_object_get(req, "rag");
        if (rg && !json_is_null(rg)) {
            srv_failf(&f, 400, "unsupported", "rag", "'rag' is only served on /v1/chat/completions");
            goto fail;
        }
        json_t *prompt = json_object_get(req, "prompt");
        if (!prompt) {
            srv_failf(&f, 400, NULL, "prompt", "'prompt' is required");
            goto fail;
        }
        if (!srv_inspect(c, NULL, 0, json_is_string(prompt) ? json_string_value(prompt) : NULL, stream)) {
            ret = MHD_YES;
            goto out;
        }
        json_t *policed = NULL; /* the prompt as input policy left it (masked), when it changed it */
        if (json_is_string(prompt) && c->call.prompt != json_string_value(prompt)) {
            policed = json_string(c->call.prompt);
            if (!policed) {
                srv_failf(&f, 500, NULL, NULL, "out of memory");
                goto fail;
            }
        }
        bool prompt_ok = completion_prompt(M, policed ? policed : prompt, limit, &r->prompt, &r->n_prompt, &f);
        json_decref(policed);
        if (!prompt_ok) goto fail;
    }
    if (r->n_prompt == 0) {
        srv_failf(&f, 400, NULL, chat ? "messages" : "prompt", "the prompt has no tokens");
        goto fail;
    }
    srv_mark_prompt(c, M, r->n_prompt);
    /* (a route with an upstream may still send it there: the local model then stops at its context) */
    if (limit == M->n_ctx - 1 && r->gen.max_tokens > 0 && r->n_prompt + r->gen.max_tokens > M->n_ctx) {
        srv_failf(&f, 400, "context_length_exceeded", chat ? "max_completion_tokens" : "max_tokens",
                  "the context per slot is %d tokens, but %d were requested (%d in the prompt, %d to generate)", M->n_ctx,
                  r->n_prompt + r->gen.max_tokens, r->n_prompt, r->gen.max_tokens);
        goto fail;
    }
    if (n_choices > 1) {
        if (rag) {
            srv_failf(&f, 400, "unsupported", "n", "'n' > 1 cannot be combined with 'rag'");
            goto fail;
        }
        ret = openai_choices(c, req, M, chat, r, &tools, n_choices, stream, include_usage);
        goto out;
    }
    if (!srv_submit(c, r)) {
        ret = MHD_YES;
        goto out;
    }
    bool with_tools = chat && srv_tools_active(&tools);
    size_t tools_size = with_tools ? slm_tool_stream_size() : 0;
    oai_state *u = calloc(1, sizeof *u + tools_size + srv_rag_reply_size(rag));
    if (!u) {
        atomic_store(&r->cancelled, true);
        srv_failf(&f, 500, NULL, NULL, "out of memory");
        goto fail;
    }
    u->chat = chat;
    u->include_usage = include_usage;
    u->created = (long long)time(NULL);
    u->srv = s;
    u->model_ref = M;
    snprintf(u->model, sizeof u->model, "%s", M->id);
    srv_new_id(s, chat ? "chatcmpl" : "cmpl", u->id, sizeof u->id);
    if (with_tools) u->calls = slm_tool_stream_init(u + 1, tools.format);
    u->rag = srv_rag_reply_init((char *)(u + 1) + tools_size, rag);
    if (stream) {
        make_chunk_head(u);
        ret = srv_reply_stream(c, r, "text/event-stream", with_tools ? emit_openai_tools : emit_openai, u);
        goto out;
    }
    if (!srv_wait_done(c, r)) {
        free(u);
        ret = MHD_NO; /* client is gone: close without an answer */
        goto out;
    }
    if (r->finish != SLM_FINISH_STOP && r->finish != SLM_FINISH_LENGTH) {
        free(u);
        ret = srv_reply_finish_error(c, r);
        goto out;
    }
    json_t *resp = chunk_base(u);
    json_object_set_new(resp, "object", json_string(chat ? "chat.completion" : "text_completion"));
    json_t *lp = r->gen.logprobs ? (chat ? chat_logprobs(M, r->infos, r->n_infos) : completion_logprobs(M, r->infos, r->n_infos, &u->text_offset))
                                 : json_null();
    size_t text_len;
    char *text = srv_final_text(c, r, &text_len);
    if (!text) {
        json_decref(lp);
        json_decref(resp);
        free(u);
        ret = srv_reply_error(c, 500, NULL, NULL, "out of memory");
        goto out;
    }
    json_t *choice = chat ? json_pack("{s:i, s:{s:s, s:s%}, s:o, s:s}", "index", 0, "message", "role", "assistant", "content",
                                      text, text_len, "logprobs", lp, "finish_reason", slm_finish_name(r->finish))
                          : json_pack("{s:i, s:s%, s:o, s:s}", "index", 0, "text", text, text_len, "logprobs", lp,
                                      "finish_reason", slm_finish_name(r->finish));
    if (with_tools && r->finish == SLM_FINISH_STOP)
        add_tool_calls(s, &tools, choice, text, text_len, text_len != r->text_len || (text_len > 0 && memcmp(text, r->text, text_len) != 0));
    if (u->rag) srv_rag_reply_citations(u->rag, resp, text, text_len);
    free(text);
    json_object_set_new(resp, "choices", json_pack("[o]", choice));
    json_object_set_new(resp, "usage", usage_json(s, r));
    if (c->call.route) json_object_set_new(resp, "route", json_string(c->call.route));
    json_object_set_new(resp, "timings", timings_json(r));
    free(u);
    ret = srv_reply_json(c, 200, resp);
    goto out;
fail:
    ret = srv_reply_fail(c, &f);
out:
    srv_forget_texts(c);
    srv_rag_chat_end(rag, &msgs);
    srv_chat_msgs_free(&msgs);
    srv_tools_free(&tools);
    slm_request_release(r);
    json_decref(req);
    return ret;
}

enum MHD_Result srv_openai_chat(srv_conn *c) { return openai_generate(c, true); }
enum MHD_Result srv_openai_completions(srv_conn *c) { return openai_generate(c, false); }

/* ---------- embeddings ---------- */

static char *base64_floats(const float *v, int n) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t len = (size_t)n * 4;
    const unsigned char *b = (const unsigned char *)v; /* x86-64 and every target we build for are little-endian */
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned x = (unsigned)b[i] << 16 | (i + 1 < len ? (unsigned)b[i + 1] << 8 : 0) | (i + 2 < len ? b[i + 2] : 0);
        out[o++] = tbl[x >> 18 & 63];
        out[o++] = tbl[x >> 12 & 63];
        out[o++] = i + 1 < len ? tbl[x >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? tbl[x & 63] : '=';
    }
    out[o] = 0;
    return out;
}

enum MHD_Result srv_openai_embeddings(srv_conn *c) {
    srv_fail f = {0};
    json_t *req = srv_parse_body(c, &f);
    slm_request *r = NULL;
    enum MHD_Result ret;
    if (!req) return srv_reply_fail(c, &f);
    const char *model = NULL, *enc = "float";
    long long dims;
    bool have_dims;
    if (!srv_json_string(req, "model", &model, &f) || !srv_json_string(req, "encoding_format", &enc, &f) ||
        !srv_json_int(req, "dimensions", 1, 1 << 20, &dims, &have_dims, &f))
        goto fail;
    const srv_model *M = srv_pick_model(c, model);
    if (!M) {
        ret = MHD_YES;
        goto out;
    }
    if (strcmp(enc, "float") != 0 && strcmp(enc, "base64") != 0) {
        srv_failf(&f, 400, NULL, "encoding_format", "'encoding_format' must be float or base64");
        goto fail;
    }
    if (have_dims && dims != M->n_embd) {
        srv_failf(&f, 400, NULL, "dimensions", "'dimensions' must be %d for this model (no truncation)", M->n_embd);
        goto fail;
    }
    json_t *input = json_object_get(req, "input");
    if (!input) {
        srv_failf(&f, 400, NULL, "input", "'input' is required");
        goto fail;
    }
    if (!srv_embed_run(c, M, input, "input", true, &r, &f, &ret)) {
        if (f.status) goto fail;
        goto out;
    }
    json_t *data = json_array();
    bool b64 = strcmp(enc, "base64") == 0;
    for (int i = 0; i < r->n_embed; i++) {
        const float *v = r->embeddings + (size_t)i * (size_t)M->n_embd;
        json_t *emb;
        if (b64) {
            char *t = base64_floats(v, M->n_embd);
            emb = t ? json_string(t) : NULL;
            free(t);
        } else {
            emb = json_array();
            for (int k = 0; k < M->n_embd; k++) json_array_append_new(emb, json_real(v[k]));
        }
        json_array_append_new(data, json_pack("{s:s, s:i, s:o}", "object", "embedding", "index", i, "embedding", emb));
    }
    ret = srv_reply_json(c, 200,
                         json_pack("{s:s, s:o, s:s, s:{s:i, s:i}}", "object", "list", "data", data, "model", M->id, "usage",
                                   "prompt_tokens", r->n_embed_tokens, "total_tokens", r->n_embed_tokens));
    goto out;
fail:
    ret = srv_reply_fail(c, &f);
out:
    slm_request_release(r);
    json_decref(req);
    return ret;
}

/* ---------- models ---------- */

static json_t *model_json(const srv_model *M) {
    return json_pack("{s:s, s:s, s:I, s:s, s:{s:i, s:i, s:I, s:s}}", "id", M->id, "object", "model", "created",
                     (json_int_t)M->created, "owned_by", "slm", "meta", "n_ctx_per_slot", M->n_ctx, "n_embd", M->n_embd,
                     "size", (json_int_t)slm_model_size_bytes(M->model), "desc", slm_model_desc(M->model));
}

enum MHD_Result srv_openai_models(srv_conn *c, const char *id) {
    srv_server *s = c->srv;
    if (id) {
        const srv_model *M = srv_pick_model(c, id);
        return M ? srv_reply_json(c, 200, model_json(M)) : MHD_YES;
    }
    json_t *data = json_array();
    for (int i = 0; i < s->n_models; i++) json_array_append_new(data, model_json(&s->models[i]));
    srv_lora_append_models(s, data); /* "base:adapter" names */
    /* the store's models load on first use: clients may name them too */
    slm_model_entry *stored = NULL;
    char err[256];
    int n_stored = s->store ? slm_models_list(slm_store_dir(s->store), &stored, err, sizeof err) : 0;
    for (int i = 0; i < n_stored; i++) {
        char id[160];
        snprintf(id, sizeof id, strcmp(stored[i].tag, "latest") ? "%s:%s" : "%s", stored[i].name, stored[i].tag);
        bool listed = false;
        for (int k = 0; k < s->n_models; k++) listed |= strcmp(s->models[k].id, id) == 0;
        if (!listed && strcmp(stored[i].kind, "adapter") != 0)
            json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:{s:s, s:s, s:I}}", "id", id, "object", "model",
                                                  "created", (json_int_t)stored[i].created, "owned_by", "slm", "meta",
                                                  "kind", "stored", "arch", stored[i].arch, "size",
                                                  (json_int_t)stored[i].size));
    }
    free(stored);
    /* the config's routes and upstreams are names a client may send as well */
    const slm_route_target *t;
    for (int i = 0; (t = slm_route_at(s->routes, i)); i++)
        json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:{s:s, s:s, s:s?}}", "id", t->name, "object", "model", "created",
                                              (json_int_t)s->models[0].created, "owned_by", "slm", "meta", "kind",
                                              t->is_route ? "route" : "upstream", "local",
                                              t->is_route ? t->local_name : "", "upstream", t->upstream_name));
    return srv_reply_json(c, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}
