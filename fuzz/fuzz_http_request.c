/* libFuzzer target for the server's request parsing: everything between the HTTP body and the
 * request handed to the scheduler, for OpenAI chat/completions/embeddings and Ollama
 * chat/generate/embed. The handlers themselves reply through libmicrohttpd, so this target runs
 * the same pure steps they run, in the same order (srv_parse_body, srv_json_*, the sampling and
 * option parsers with structured-output constraints, srv_parse_messages, chat rendering,
 * tokenization, srv_build_embed_request) and checks every outcome: a failure carries a 4xx/5xx
 * status and a one-line message; a success is a request within the documented limits. Every
 * path frees what it built (LeakSanitizer). The first input byte picks the endpoint, the rest is
 * the body.
 *
 * The model is a vocab-only GGUF: $SLM_FUZZ_VOCAB, else smollm2-135m-vocab.gguf in
 * $SLM_TEST_MODELS (default <source>/build/testdata). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { EP_OPENAI_CHAT, EP_OPENAI_COMPLETIONS, EP_OPENAI_EMBEDDINGS, EP_OLLAMA_CHAT, EP_OLLAMA_GENERATE, EP_OLLAMA_EMBED, EP_COUNT };

static srv_server server;

static void setup(void) {
    static bool done;
    if (done) return;
    done = true;
    char path[2048];
    const char *env = getenv("SLM_FUZZ_VOCAB");
    if (env && *env) {
        snprintf(path, sizeof path, "%s", env);
    } else {
        const char *models = getenv("SLM_TEST_MODELS");
        snprintf(path, sizeof path, "%s/smollm2-135m-vocab.gguf", models && *models ? models : SLM_SOURCE_DIR "/build/testdata");
    }
    slm_model_params mp = {.vocab_only = true};
    char err[512];
    if (slm_model_load(path, &mp, &server.model, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_http_request: %s (set SLM_FUZZ_VOCAB to a vocab-only GGUF)\n", err);
        abort();
    }
    srv_config_defaults(&server.cfg);
    snprintf(server.model_id, sizeof server.model_id, "fuzz-model");
    server.n_vocab = slm_model_n_vocab(server.model);
    server.n_ctx = 512;
    server.n_batch = 256;
    server.n_seq = 1;
    server.n_embd = 8;
}

/* Known, reported to the server's owner: srv_parse_body quotes jansson's "near '...'" text raw
 * (http.c), srv_parse_messages quotes the role (api_openai.c) and parse_logit_bias the key
 * (params.c), so a newline in the body splits those messages. Until fixed, only the structured-
 * output messages (from src/sample, fixed) must be one line; SLM_FUZZ_STRICT_LINES=1 checks all. */
static void check_fail(const srv_fail *f) {
    static int strict = -1;
    if (strict < 0) strict = getenv("SLM_FUZZ_STRICT_LINES") != NULL;
    bool constraint = !strcmp(f->param, "grammar") || !strcmp(f->param, "format") ||
                      !strcmp(f->param, "json_schema") || !strncmp(f->param, "response_format", 15);
    if (f->status < 400 || f->status > 599) __builtin_trap();
    if (f->msg[0] == 0 || ((strict || constraint) && strchr(f->msg, '\n'))) __builtin_trap();
}

/* A parsed generation request must be inside the limits the parsers promise. */
static void check_gen(const srv_server *s, const srv_gen_params *p) {
    const slm_sampler_params *sp = &p->sampling;
    if (!(sp->temperature >= 0 && sp->temperature <= 100)) __builtin_trap();
    if (!(sp->top_p > 0 && sp->top_p <= 1)) __builtin_trap();
    if (sp->top_k < 0 || !(sp->min_p >= 0 && sp->min_p <= 1)) __builtin_trap();
    if (!(sp->repeat_penalty > 0 && sp->repeat_penalty <= 100)) __builtin_trap();
    if (!isfinite(sp->presence_penalty) || !isfinite(sp->frequency_penalty)) __builtin_trap();
    if (p->max_tokens < 0 || p->max_tokens > (1 << 24) || p->min_tokens < 0) __builtin_trap();
    if (p->n_stop < 0 || p->n_stop > SRV_MAX_STOP) __builtin_trap();
    for (int i = 0; i < p->n_stop; i++) {
        size_t n = strlen(p->stop[i]);
        if (n == 0 || n > 256) __builtin_trap();
    }
    if (p->top_logprobs < 0 || p->top_logprobs > SRV_MAX_TOP_LOGPROBS) __builtin_trap();
    if (sp->n_logit_bias < 0 || sp->n_logit_bias > 1024) __builtin_trap();
    if (sp->n_logit_bias > 0 && sp->logit_bias != p->logit_bias) __builtin_trap();
    for (int i = 0; i < sp->n_logit_bias; i++) {
        const slm_logit_bias *b = &sp->logit_bias[i];
        if (b->token < 0 || b->token >= s->n_vocab) __builtin_trap();
        if (!(b->bias >= -100 && b->bias <= 100) && b->bias != -INFINITY) __builtin_trap();
    }
}

static void check_tokens(const srv_server *s, const slm_token *t, int n, int limit) {
    if (n < 0 || n > limit) __builtin_trap();
    for (int i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= s->n_vocab) __builtin_trap();
}

/* chat: messages → template → tokens, as both chat handlers do it. */
static bool chat_prompt(srv_server *s, json_t *req, srv_request *r, srv_chat_msgs *msgs, srv_fail *f) {
    if (!srv_parse_messages(req, msgs, f)) return false;
    if (msgs->n > 4096) __builtin_trap();
    for (size_t i = 0; i < msgs->n; i++) {
        const char *role = msgs->msgs[i].role;
        if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")) __builtin_trap();
        if (!msgs->msgs[i].content) __builtin_trap();
    }
    if (msgs->n == 0) return true;
    char *rendered = NULL;
    bool ok = srv_render_chat(s, msgs->msgs, msgs->n, &rendered, f) &&
              srv_tokenize(s, rendered, true, true, "messages", s->n_ctx - 1, &r->prompt, &r->n_prompt, f);
    free(rendered);
    if (ok) check_tokens(s, r->prompt, r->n_prompt, s->n_ctx - 1);
    return ok;
}

static bool openai_generate(srv_server *s, json_t *req, bool chat, srv_fail *f) {
    const char *model = NULL;
    bool stream = false, include_usage = false;
    if (!srv_json_string(req, "model", &model, f) || !srv_json_bool(req, "stream", &stream, f)) return false;
    if (!srv_model_matches(s, model)) return true; /* 404 */
    json_t *so = json_object_get(req, "stream_options");
    if (so && !json_is_null(so) && json_is_object(so) && !srv_json_bool(so, "include_usage", &include_usage, f))
        return false;
    srv_request *r = srv_request_new(SRV_TASK_GENERATE);
    if (!r) return srv_failf(f, 500, NULL, NULL, "out of memory");
    srv_chat_msgs msgs = {0};
    bool ok = srv_parse_openai_sampling(s, req, chat, &r->gen, f);
    if (ok) {
        check_gen(s, &r->gen);
        if (chat) {
            ok = chat_prompt(s, req, r, &msgs, f);
        } else {
            json_t *prompt = json_object_get(req, "prompt");
            if (json_is_string(prompt)) {
                ok = srv_tokenize(s, json_string_value(prompt), true, false, "prompt", s->n_ctx - 1, &r->prompt,
                                  &r->n_prompt, f);
                if (ok) check_tokens(s, r->prompt, r->n_prompt, s->n_ctx - 1);
            }
        }
    }
    srv_chat_msgs_free(&msgs);
    srv_request_release(r);
    return ok;
}

static bool ollama_generate(srv_server *s, json_t *req, bool chat, srv_fail *f) {
    const char *model = NULL, *prompt = "", *system = NULL, *tmpl = NULL;
    bool stream = true, raw = false;
    if (!srv_json_string(req, "model", &model, f) || !srv_json_bool(req, "stream", &stream, f) ||
        !srv_json_string(req, "template", &tmpl, f))
        return false;
    srv_request *r = srv_request_new(SRV_TASK_GENERATE);
    if (!r) return srv_failf(f, 500, NULL, NULL, "out of memory");
    srv_chat_msgs msgs = {0};
    char *rendered = NULL;
    bool ok = srv_parse_ollama_options(s, req, &r->gen, f);
    if (ok) {
        check_gen(s, &r->gen);
        if (chat) {
            ok = chat_prompt(s, req, r, &msgs, f);
        } else {
            ok = srv_json_string(req, "prompt", &prompt, f) && srv_json_string(req, "system", &system, f) &&
                 srv_json_bool(req, "raw", &raw, f);
            if (ok && *prompt) {
                const char *text = prompt;
                if (!raw) {
                    slm_chat_message m[2];
                    size_t n = 0;
                    if (system && *system) m[n++] = (slm_chat_message){"system", system};
                    m[n++] = (slm_chat_message){"user", prompt};
                    ok = srv_render_chat(s, m, n, &rendered, f);
                    text = rendered;
                }
                if (ok) ok = srv_tokenize(s, text, true, true, "prompt", s->n_ctx - 1, &r->prompt, &r->n_prompt, f);
                if (ok) check_tokens(s, r->prompt, r->n_prompt, s->n_ctx - 1);
            }
        }
    }
    free(rendered);
    srv_chat_msgs_free(&msgs);
    srv_request_release(r);
    return ok;
}

static bool embed(srv_server *s, json_t *req, const char *field, bool allow_tokens, srv_fail *f) {
    json_t *inputs = json_object_get(req, field);
    if (!inputs) return true; /* the handlers answer 400 themselves */
    srv_request *r = NULL;
    if (!srv_build_embed_request(s, inputs, field, allow_tokens, &r, f)) {
        if (r) __builtin_trap();
        return false;
    }
    if (!r || r->kind != SRV_TASK_EMBED || r->n_embed < 1 || r->n_embed > 512) __builtin_trap();
    int limit = s->n_batch < s->n_ctx ? s->n_batch : s->n_ctx;
    for (int i = 0; i < r->n_embed; i++) check_tokens(s, r->embed_inputs[i], r->embed_lens[i], limit);
    srv_request_release(r);
    return true;
}

/* The streaming helpers' UTF-8 functions see generated bytes, which are as arbitrary as a body. */
static void check_utf8_helpers(const char *s, size_t n) {
    size_t keep = srv_utf8_complete_prefix(s, n);
    if (keep > n || n - keep > 3) __builtin_trap();
    char *out = malloc(3 * n + 1);
    if (!out) return;
    size_t o = srv_utf8_sanitize(s, n, out);
    if (o > 3 * n) __builtin_trap();
    json_t *str = json_stringn(out, o); /* jansson accepts only valid UTF-8 */
    if (!str) __builtin_trap();
    json_decref(str);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    setup();
    if (size < 1 || size > 65536) return 0;
    srv_server *s = &server;
    int endpoint = data[0] % EP_COUNT;
    srv_conn c = {.srv = s, .body = (char *)data + 1, .body_len = size - 1};
    c.api = endpoint >= EP_OLLAMA_CHAT ? SRV_API_OLLAMA : SRV_API_OPENAI;
    check_utf8_helpers(c.body, c.body_len);

    srv_fail f = {0};
    json_t *req = srv_parse_body(&c, &f);
    if (!req) {
        check_fail(&f);
        return 0;
    }
    bool ok = true;
    switch (endpoint) {
    case EP_OPENAI_CHAT: ok = openai_generate(s, req, true, &f); break;
    case EP_OPENAI_COMPLETIONS: ok = openai_generate(s, req, false, &f); break;
    case EP_OPENAI_EMBEDDINGS: ok = embed(s, req, "input", true, &f); break;
    case EP_OLLAMA_CHAT: ok = ollama_generate(s, req, true, &f); break;
    case EP_OLLAMA_GENERATE: ok = ollama_generate(s, req, false, &f); break;
    case EP_OLLAMA_EMBED: ok = embed(s, req, "input", false, &f); break;
    }
    if (!ok) check_fail(&f);
    json_decref(req);
    return 0;
}
