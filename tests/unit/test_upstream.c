/* The upstream backend and the network client against a mock OpenAI-compatible server
 * (tests/cli/upstream_mock.py, started here on loopback): exact text and usage, the exact request
 * sent (body and Authorization), retries (500, 429 + Retry-After), timeouts, broken and malformed
 * streams, cancellation, the circuit breaker, the local fallback (stories260K), and the air gap
 * (a listener of our own must see no connection). The SSE framing is also tested byte by byte. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/request_impl.h"
#include "slm_gate.h"
#include "slm_net.h"
#include "slm_upstream.h"
#include "test.h"
#include "upstream/sse.h"

#define KEY "sk-test-SECRET-0123456789abcdef"

static pid_t mock_pid = -1;
static int mock_port;
static char mock_url[128];   /* http://127.0.0.1:PORT/v1 */
static int route_to = 1;     /* the backend the route stage picks */

/* ---------- the mock ---------- */

/* Starts the mock (https with cert/key when given); returns its pid and sets *port, or -1. */
static pid_t spawn_mock(const char *cert, const char *key, int *port) {
    int fds[2];
    *port = 0;
    if (pipe(fds) != 0) return -1;
    char script[4200];
    snprintf(script, sizeof script, "%.4000s/tests/cli/upstream_mock.py", SLM_SOURCE_DIR);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        if (cert)
            execlp("python3", "python3", script, "--port", "0", "--tls-cert", cert, "--tls-key", key, (char *)NULL);
        else
            execlp("python3", "python3", script, "--port", "0", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[32] = "";
    size_t n = 0;
    while (n < sizeof line - 1) { /* the port, one line */
        ssize_t k = read(fds[0], line + n, 1);
        if (k <= 0 || line[n] == '\n') break;
        n++;
    }
    line[n] = 0;
    close(fds[0]);
    *port = atoi(line);
    return pid;
}

static bool start_mock(void) {
    mock_pid = spawn_mock(NULL, NULL, &mock_port);
    snprintf(mock_url, sizeof mock_url, "http://127.0.0.1:%d/v1", mock_port);
    return mock_pid > 0 && mock_port > 0;
}

static void stop_mock(void) {
    if (mock_pid > 0) {
        kill(mock_pid, SIGTERM);
        waitpid(mock_pid, NULL, 0);
    }
}

/* POST (body != NULL) or GET a control endpoint; returns the parsed JSON answer (or NULL). */
static json_t *mock_control(const char *path, const char *body) {
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", mock_port, path);
    slm_net_request rq = {.url = url, .body = body, .body_len = body ? strlen(body) : 0, .total_timeout_s = 5};
    slm_net_response rs;
    slm_net_result r = slm_net_perform(&rq, &rs);
    json_t *j = r == SLM_NET_OK && rs.status == 200 && rs.body ? json_loads(rs.body, 0, NULL) : NULL;
    CHECKF(j, "mock control %s: %s (status %d)", path, rs.error, rs.status);
    slm_net_response_free(&rs);
    return j;
}

static void mock_reset(void) { json_decref(mock_control("/control/reset", "{}")); }

static void mock_faults(const char *json_list) {
    char body[512];
    snprintf(body, sizeof body, "{\"faults\": %s}", json_list);
    json_decref(mock_control("/control/faults", body));
}

/* The requests the mock received (a new reference), as an array. */
static json_t *mock_log(void) {
    json_t *j = mock_control("/control/log", NULL);
    json_t *reqs = json_incref(json_object_get(j, "requests"));
    json_decref(j);
    return reqs ? reqs : json_array();
}

static size_t mock_log_count(void) {
    json_t *l = mock_log();
    size_t n = json_array_size(l);
    json_decref(l);
    return n;
}

/* ---------- calls through a gate ---------- */

static bool no_key(const char *s) { return !strstr(s, KEY) && !strstr(s, "SECRET-0123"); }

static bool route_stage(void *state, slm_gate_call *call) {
    (void)state;
    call->backend = route_to;
    return true;
}

static slm_gate *gate_with(slm_engine *e, slm_upstream *u) {
    slm_gate *g = NULL;
    char err[256];
    if (slm_gate_new(e, &g, err, sizeof err) != 0) return NULL;
    slm_gate_backend b = slm_upstream_backend(u);
    route_to = slm_gate_add_backend(g, &b, err, sizeof err);
    slm_gate_stage st = {.name = "test-route", .phase = SLM_PHASE_ROUTE, .run = route_stage};
    slm_gate_add_stage(g, &st, err, sizeof err);
    return g;
}

static slm_upstream *upstream_with(const char *url, const char *model, double first_byte_s, int max_retries) {
    slm_upstream_config c = {.name = "frontier", .url = url, .model = model, .api_key = KEY,
                             .first_byte_timeout_s = first_byte_s, .timeout_s = 10, .max_retries = max_retries,
                             .retry_base_s = 0.05, .retry_after_max_s = 5, .breaker_threshold = 50};
    slm_upstream *u = NULL;
    char err[256];
    CHECKF(slm_upstream_new(&c, &u, err, sizeof err) == 0, "%s", err);
    return u;
}

typedef struct spec {
    bool chat;
    bool stream;               /* the client reads the text as it comes (call->stream) */
    const char *text;
    int max_tokens;
    float temperature;
    const char *stop;
    double deadline_in;        /* seconds from now; 0 = none */
    bool cancel_on_text;       /* slm_gate_cancel as soon as text arrives */
    const slm_token *prompt;   /* for a fallback to the local engine */
    int n_prompt;
} spec;

typedef struct outcome {
    bool submitted;
    int status;                /* when submit refused */
    char code[64];
    char call_error[256];
    const char *route;
    slm_finish finish;
    char text[4096];         /* the start of it */
    size_t text_len;
    char error[256];
    bool client_fault;
    int prompt_tokens, completion_tokens;
    double seconds;            /* submit to done */
    double cancel_to_done;     /* with cancel_on_text */
} outcome;

static void run_call(slm_gate *g, const spec *s, outcome *o) {
    memset(o, 0, sizeof *o);
    slm_request *r = slm_request_new(SLM_REQ_GENERATE);
    r->gen.max_tokens = s->max_tokens;
    r->gen.sampling.temperature = s->temperature;
    r->gen.ignore_eos = s->prompt != NULL;
    if (s->stop) {
        r->gen.stop[0] = strdup(s->stop);
        r->gen.n_stop = 1;
    }
    if (s->prompt) {
        r->prompt = malloc(sizeof *r->prompt * (size_t)s->n_prompt);
        memcpy(r->prompt, s->prompt, sizeof *r->prompt * (size_t)s->n_prompt);
        r->n_prompt = s->n_prompt;
        r->gen.sampling.temperature = 0;
    }
    if (s->deadline_in > 0) r->deadline = slm_now() + s->deadline_in;
    slm_chat_message msgs[2] = {{"system", "You are terse."}, {"user", s->text}};
    slm_gate_call call;
    slm_gate_call_init(&call, SLM_CALL_GENERATE, "test", s->chat ? "/v1/chat/completions" : "/v1/completions");
    call.request = r;
    call.stream = s->stream;
    if (s->chat) {
        call.messages = msgs;
        call.n_messages = 2;
    } else {
        call.prompt = s->text;
    }
    double t0 = slm_now();
    o->submitted = slm_gate_submit(g, &call);
    if (!o->submitted) {
        o->status = call.status;
        snprintf(o->code, sizeof o->code, "%s", call.error_code ? call.error_code : "");
        snprintf(o->call_error, sizeof o->call_error, "%s", call.error);
        o->route = call.route;
        slm_gate_finish(g, &call);
        slm_request_release(r);
        CHECKF(no_key(o->call_error), "the key leaked into an error: %s", o->call_error);
        return;
    }
    double t_cancel = 0;
    pthread_mutex_lock(&r->mu);
    while (!r->done && slm_now() - t0 < 20) {
        slm_request_wait(r, 20);
        if (s->cancel_on_text && r->text_len > 0 && t_cancel == 0) {
            pthread_mutex_unlock(&r->mu);
            t_cancel = slm_now();
            slm_gate_cancel(g, &call);
            pthread_mutex_lock(&r->mu);
        }
    }
    CHECKF(r->done, "request not done after 20 s");
    o->seconds = slm_now() - t0;
    if (t_cancel > 0) o->cancel_to_done = slm_now() - t_cancel;
    o->finish = r->finish;
    o->text_len = r->text_len;
    snprintf(o->text, sizeof o->text, "%.*s", (int)r->text_len, r->text ? r->text : "");
    snprintf(o->error, sizeof o->error, "%s", r->error);
    o->client_fault = r->error_is_client;
    o->prompt_tokens = r->remote_prompt_tokens;
    o->completion_tokens = r->remote_completion_tokens;
    pthread_mutex_unlock(&r->mu);
    o->route = call.route;
    slm_gate_finish(g, &call);
    slm_request_release(r);
    CHECKF(no_key(o->error) && no_key(o->call_error), "the key leaked into an error: %s / %s", o->error, o->call_error);
}

/* What the mock answers for `text`, cut like it cuts (pieces of 4 characters). */
static const char *mock_reply(const char *text, char *out, size_t out_len) {
    snprintf(out, out_len, "Mock reply to: %.200s \xE2\x80\x94 \xC3\xBCn\xC3\xAF" "c\xC3\xB8" "d\xC3\xA9 \xE2\x9C\x93", text);
    return out;
}

/* Number of 4-character pieces (characters, not bytes) of a UTF-8 text. */
static int n_pieces(const char *s) {
    int chars = 0;
    for (; *s; s++) chars += ((unsigned char)*s & 0xC0) != 0x80;
    return (chars + 3) / 4;
}

/* ---------- SSE framing ---------- */

typedef struct sse_log {
    char all[2048];
    int n;
} sse_log;

static int sse_collect(void *user, const char *event, const char *data, size_t len) {
    sse_log *l = user;
    size_t at = strlen(l->all);
    snprintf(l->all + at, sizeof l->all - at, "[%s|%.*s]", event, (int)len, data);
    l->n++;
    return 0;
}

static void test_sse(void) {
    const char *stream = ": hello\r\n\r\nevent: delta\r\ndata: {\"a\":1}\r\n\r\ndata: line1\ndata: line2\n\n"
                         "data:nospace\r\rid: 7\nretry: 5\ndata: [DONE]\n\n";
    const char *want = "[delta|{\"a\":1}][message|line1\nline2][message|nospace][message|[DONE]]";
    /* whole, then byte by byte (every split point, CR and LF apart included) */
    for (int mode = 0; mode < 2; mode++) {
        up_sse p = {0};
        sse_log l = {0};
        size_t n = strlen(stream);
        int rc = 0;
        if (mode == 0)
            rc = up_sse_feed(&p, stream, n, sse_collect, &l);
        else
            for (size_t i = 0; i < n && rc == 0; i++) rc = up_sse_feed(&p, stream + i, 1, sse_collect, &l);
        CHECKF(rc == 0 && strcmp(l.all, want) == 0, "mode %d: %s", mode, l.all);
        up_sse_free(&p);
    }
    /* an unterminated event at the end is not dispatched; an over-long line is an error */
    {
        up_sse p = {0};
        sse_log l = {0};
        CHECK(up_sse_feed(&p, "data: partial", 13, sse_collect, &l) == 0 && l.n == 0);
        up_sse_free(&p);
        char *big = malloc(UP_SSE_MAX_LINE + 16);
        memset(big, 'a', UP_SSE_MAX_LINE + 16);
        memcpy(big, "data: ", 6);
        CHECK(up_sse_feed(&p, big, UP_SSE_MAX_LINE + 16, sse_collect, &l) == -1 && strstr(p.error, "longer than"));
        up_sse_free(&p);
        free(big);
    }
    /* chunk interpretation */
    up_chunk c;
    up_chunk_parse("message", "[DONE]", 6, &c);
    CHECK(c.kind == UP_CHUNK_DONE);
    const char *d = "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\\u00e9\"},\"finish_reason\":null}]}";
    up_chunk_parse("message", d, strlen(d), &c);
    CHECK(c.kind == UP_CHUNK_OK && c.text_len == 3 && memcmp(c.text, "h\xC3\xA9", 3) == 0 && !c.finish_reason[0]);
    up_chunk_free(&c);
    d = "{\"choices\":[{\"index\":0,\"text\":\"abc\",\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":7,"
        "\"completion_tokens\":3}}";
    up_chunk_parse("message", d, strlen(d), &c);
    CHECK(c.kind == UP_CHUNK_OK && c.text_len == 3 && strcmp(c.finish_reason, "length") == 0 && c.has_usage &&
          c.prompt_tokens == 7 && c.completion_tokens == 3);
    up_chunk_free(&c);
    up_chunk_parse("message", "{\"choices\": [oops", 17, &c);
    CHECK(c.kind == UP_CHUNK_ERROR && strstr(c.error, "malformed"));
    d = "{\"error\":{\"message\":\"overloaded\\n  now\"}}";
    up_chunk_parse("message", d, strlen(d), &c);
    CHECKF(c.kind == UP_CHUNK_ERROR && strcmp(c.error, "overloaded now") == 0, "%s", c.error);
    up_chunk_parse("error", "plain words", 11, &c);
    CHECK(c.kind == UP_CHUNK_ERROR && strcmp(c.error, "plain words") == 0);
    char msg[64];
    up_error_message("<html>\n<b>Bad gateway</b>\n</html>", 33, msg, sizeof msg);
    CHECKF(strcmp(msg, "<html> <b>Bad gateway</b> </html>") == 0, "%s", msg);
    up_error_message("{\"error\":\"nope\"}", 16, msg, sizeof msg);
    CHECK(strcmp(msg, "nope") == 0);
}

/* Hostile streams: random splits never change what is parsed, and random mutations (bytes flipped,
 * CR/LF/':' inserted, truncation) never crash the framing or the chunk parser (run under ASan). */
static uint64_t xorshift(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void test_sse_random(void) {
    const char *base = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\\u00e9llo\"},\"finish_reason\":null}]}\r\n\r\n"
                       ": ping\n\nevent: error\ndata: {\"error\":{\"message\":\"x\"}}\n\n"
                       "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\r\rdata: [DONE]\n\n";
    size_t n = strlen(base);
    sse_log whole = {0};
    up_sse p = {0};
    CHECK(up_sse_feed(&p, base, n, sse_collect, &whole) == 0 && whole.n == 4);
    up_sse_free(&p);
    uint64_t x = 0x1234567887654321ull;
#define NEXT() xorshift(&x)
    int split_mismatch = 0;
    for (int it = 0; it < 300; it++) {
        sse_log l = {0};
        up_sse q = {0};
        for (size_t i = 0; i < n;) {
            size_t k = 1 + NEXT() % 9;
            if (k > n - i) k = n - i;
            up_sse_feed(&q, base + i, k, sse_collect, &l);
            i += k;
        }
        split_mismatch += strcmp(l.all, whole.all) != 0;
        up_sse_free(&q);
    }
    CHECK(split_mismatch == 0);
    char buf[512];
    for (int it = 0; it < 2000; it++) {
        size_t len = n < sizeof buf ? n : sizeof buf;
        memcpy(buf, base, len);
        for (int k = 0; k < 1 + (int)(NEXT() % 6); k++) {
            static const char ins[] = "\r\n:{}\"\\\x00\xff\xc3";
            size_t at = NEXT() % len;
            char c = (char)NEXT();
            if (NEXT() & 1) c = ins[NEXT() % (sizeof ins - 1)];
            buf[at] = c;
        }
        len = 1 + NEXT() % len;
        up_sse q = {0};
        sse_log l = {0};
        up_sse_feed(&q, buf, len, sse_collect, &l);
        up_sse_free(&q);
        up_chunk c;
        up_chunk_parse((NEXT() & 1) ? "error" : "message", buf, len, &c);
        CHECK(c.kind != UP_CHUNK_OK || c.text_len == 0 || (c.text && strlen(c.text) <= c.text_len));
        up_chunk_free(&c);
    }
#undef NEXT
}

/* ---------- the network client on its own ---------- */

static void test_net_basics(void) {
    char text[128] = "bad key sk-test-SECRET-0123456789abcdef and its tail 0123456789abcdef, short sk-t";
    slm_net_scrub(text, KEY);
    CHECKF(no_key(text) && !strstr(text, "0123456789abcdef") && strstr(text, "short sk-t"), "%s", text);
    char host[64];
    CHECK(strcmp(slm_net_url_host("https://api.example.com:8443/v1", host, sizeof host), "api.example.com") == 0);
    CHECK(strcmp(slm_net_url_host("not a url", host, sizeof host), "") == 0);
    slm_net_response rs;
    slm_net_request rq = {.url = "ftp://127.0.0.1/x"};
    CHECK(slm_net_perform(&rq, &rs) == SLM_NET_INVALID && strstr(rs.error, "scheme"));
    slm_net_response_free(&rs);
    const char *bad_header[] = {"X-A: 1\r\nX-Injected: 2"};
    rq = (slm_net_request){.url = mock_url, .headers = bad_header, .n_headers = 1};
    CHECK(slm_net_perform(&rq, &rs) == SLM_NET_INVALID);
    slm_net_response_free(&rs);
    /* a streamed 2xx body, a buffered error body with its message */
    char url[200];
    snprintf(url, sizeof url, "%s/completions", mock_url);
    const char *body = "{\"model\":\"fault:400\",\"prompt\":\"x\"}";
    rq = (slm_net_request){.url = url, .body = body, .body_len = strlen(body), .bearer_token = KEY, .total_timeout_s = 5};
    CHECK(slm_net_perform(&rq, &rs) == SLM_NET_OK && rs.status == 400 && rs.body && strstr(rs.body, "maximum context"));
    slm_net_response_free(&rs);
    /* Retry-After in seconds and as an HTTP date (in the past: 0; ahead: about that far) */
    const char *const retry_faults[] = {"{\"model\":\"fault:429:7\"}", "{\"model\":\"fault:429date:-30\"}",
                                        "{\"model\":\"fault:429date:100\"}"};
    const double retry_want[][2] = {{7, 7}, {0, 0}, {98, 101}};
    for (int i = 0; i < 3; i++) {
        rq = (slm_net_request){.url = url, .body = retry_faults[i], .body_len = strlen(retry_faults[i]), .total_timeout_s = 5};
        CHECK(slm_net_perform(&rq, &rs) == SLM_NET_OK && rs.status == 429);
        CHECKF(rs.retry_after_s >= retry_want[i][0] && rs.retry_after_s <= retry_want[i][1], "%d: %.1f", i,
               rs.retry_after_s);
        slm_net_response_free(&rs);
    }
    /* refused: a port nobody listens on */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    bind(s, (struct sockaddr *)&a, sizeof a);
    getsockname(s, (struct sockaddr *)&a, &al);
    close(s);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/completions", ntohs(a.sin_port));
    rq = (slm_net_request){.url = url, .bearer_token = KEY};
    CHECKF(slm_net_perform(&rq, &rs) == SLM_NET_CONNECT && no_key(rs.error), "%s", rs.error);
    slm_net_response_free(&rs);
}

/* ---------- the backend ---------- */

static void test_stream_exact(slm_engine *e) {
    slm_upstream *u = upstream_with(mock_url, "gpt-test", 5, 2);
    slm_gate *g = gate_with(e, u);
    char want[256];
    outcome o;

    mock_reset();
    run_call(g, &(spec){.chat = true, .text = "Hello there", .max_tokens = 100, .temperature = 0.7f, .stop = "zzz"}, &o);
    mock_reply("Hello there", want, sizeof want);
    CHECKF(o.submitted && o.finish == SLM_FINISH_STOP && strcmp(o.text, want) == 0, "finish %d text '%s' err %s",
           o.finish, o.text, o.error);
    CHECK(o.route && strcmp(o.route, "upstream") == 0);
    CHECKF(o.prompt_tokens == 5 && o.completion_tokens == n_pieces(want), "usage %d %d", o.prompt_tokens,
           o.completion_tokens);
    /* exactly what went upstream */
    json_t *log = mock_log();
    CHECK(json_array_size(log) == 1);
    json_t *req = json_array_get(log, 0);
    json_t *b = json_object_get(req, "body");
    CHECK(strcmp(json_string_value(json_object_get(req, "path")), "/v1/chat/completions") == 0);
    CHECK(strcmp(json_string_value(json_object_get(json_object_get(req, "headers"), "authorization")),
                 "Bearer " KEY) == 0);
    CHECK(strcmp(json_string_value(json_object_get(b, "model")), "gpt-test") == 0);
    json_t *msgs = json_object_get(b, "messages");
    CHECK(json_array_size(msgs) == 2 &&
          strcmp(json_string_value(json_object_get(json_array_get(msgs, 0), "role")), "system") == 0 &&
          strcmp(json_string_value(json_object_get(json_array_get(msgs, 0), "content")), "You are terse.") == 0 &&
          strcmp(json_string_value(json_object_get(json_array_get(msgs, 1), "role")), "user") == 0 &&
          strcmp(json_string_value(json_object_get(json_array_get(msgs, 1), "content")), "Hello there") == 0);
    CHECK(json_integer_value(json_object_get(b, "max_tokens")) == 100);
    CHECKF(json_real_value(json_object_get(b, "temperature")) == 0.7, "%.17g",
           json_real_value(json_object_get(b, "temperature")));
    CHECK(json_is_true(json_object_get(b, "stream")) &&
          json_is_true(json_object_get(json_object_get(b, "stream_options"), "include_usage")));
    json_t *stop = json_object_get(b, "stop");
    CHECK(json_array_size(stop) == 1 && strcmp(json_string_value(json_array_get(stop, 0)), "zzz") == 0);
    json_decref(log);

    /* a completion cut by max_tokens; then one cut by a stop string */
    mock_reset();
    run_call(g, &(spec){.text = "Once upon a time", .max_tokens = 3}, &o);
    CHECKF(o.finish == SLM_FINISH_LENGTH && strcmp(o.text, "Mock reply t") == 0, "%d '%s'", o.finish, o.text);
    CHECK(o.prompt_tokens == 4 && o.completion_tokens == 3);
    log = mock_log();
    b = json_object_get(json_array_get(log, 0), "body");
    CHECK(strcmp(json_string_value(json_object_get(json_array_get(log, 0), "path")), "/v1/completions") == 0 &&
          strcmp(json_string_value(json_object_get(b, "prompt")), "Once upon a time") == 0 &&
          !json_object_get(b, "messages"));
    json_decref(log);
    run_call(g, &(spec){.text = "abc", .stop = " \xE2\x80\x94"}, &o);
    CHECKF(o.finish == SLM_FINISH_STOP && strcmp(o.text, "Mock reply to: abc") == 0, "'%s'", o.text);

    /* CRLF lines, comments and events split across writes; a non-streamed JSON answer */
    mock_faults("[\"crlf\", \"json\"]");
    run_call(g, &(spec){.chat = true, .text = "split me"}, &o);
    mock_reply("split me", want, sizeof want);
    CHECKF(o.finish == SLM_FINISH_STOP && strcmp(o.text, want) == 0, "crlf: '%s' %s", o.text, o.error);
    run_call(g, &(spec){.chat = true, .text = "whole"}, &o);
    mock_reply("whole", want, sizeof want);
    CHECKF(o.finish == SLM_FINISH_STOP && strcmp(o.text, want) == 0 && o.prompt_tokens == 4, "json: '%s' %s", o.text,
           o.error);
    slm_gate_free(g);
    slm_upstream_free(u);

    /* a stricter API: stream_options and max_tokens refused with a 400 naming them. The body is
     * adapted and resent (no retry counted), then the upstream sends the adapted body at once */
    u = upstream_with(mock_url, "fault:strict", 5, -1);
    g = gate_with(e, u);
    mock_reset();
    run_call(g, &(spec){.chat = true, .text = "strict", .max_tokens = 2}, &o);
    CHECKF(o.finish == SLM_FINISH_LENGTH && strcmp(o.text, "Mock rep") == 0 && o.prompt_tokens == 0, "%d '%s' %s",
           o.finish, o.text, o.error);
    log = mock_log();
    CHECK(json_array_size(log) == 3);
    b = json_object_get(json_array_get(log, 2), "body");
    CHECK(!json_object_get(b, "stream_options") && !json_object_get(b, "max_tokens") &&
          json_integer_value(json_object_get(b, "max_completion_tokens")) == 2);
    json_decref(log);
    mock_reset();
    run_call(g, &(spec){.chat = true, .text = "strict", .max_tokens = 2}, &o);
    CHECK(o.finish == SLM_FINISH_LENGTH && mock_log_count() == 1);
    slm_gate_free(g);
    slm_upstream_free(u);
}

static void test_retries(slm_engine *e) {
    slm_upstream *u = upstream_with(mock_url, "gpt-test", 5, 2);
    slm_gate *g = gate_with(e, u);
    char want[256];
    outcome o;
    slm_upstream_stats st0, st1;

    /* 500, then fine: retried, the client never knows */
    mock_reset();
    mock_faults("[\"500\", \"ok\"]");
    slm_upstream_get_stats(u, &st0);
    run_call(g, &(spec){.chat = true, .text = "retry"}, &o);
    slm_upstream_get_stats(u, &st1);
    mock_reply("retry", want, sizeof want);
    CHECKF(o.finish == SLM_FINISH_STOP && strcmp(o.text, want) == 0, "%s", o.error);
    CHECK(mock_log_count() == 2 && st1.retries - st0.retries == 1 && st1.attempts - st0.attempts == 2);

    /* 429 with Retry-After: 1 is waited for */
    mock_reset();
    mock_faults("[\"429:1\", \"ok\"]");
    run_call(g, &(spec){.chat = true, .text = "limited"}, &o);
    CHECKF(o.finish == SLM_FINISH_STOP && o.seconds >= 1.0 && o.seconds < 3.0, "%d after %.2f s", o.finish, o.seconds);
    CHECK(mock_log_count() == 2);
    /* a Retry-After beyond the cap (5 s here) is not waited for */
    mock_reset();
    mock_faults("[\"429:100\"]");
    run_call(g, &(spec){.chat = true, .text = "limited"}, &o);
    CHECKF(o.finish == SLM_FINISH_ERROR && o.seconds < 1.0 && strstr(o.error, "HTTP 429") && strstr(o.error, "retry after 100"),
           "%s (%.2f s)", o.error, o.seconds);

    /* 500 every time: max_retries + 1 attempts, then an error naming the upstream */
    mock_reset();
    mock_faults("[\"500\", \"500\", \"500\", \"500\"]");
    run_call(g, &(spec){.chat = true, .text = "down"}, &o);
    CHECKF(o.finish == SLM_FINISH_ERROR && strstr(o.error, "upstream 'frontier' failed") && strstr(o.error, "HTTP 500") &&
           strstr(o.error, "mock upstream failure"), "%s", o.error);
    CHECK(mock_log_count() == 3);

    /* what only the local engine can do is refused, not silently dropped: nothing is sent */
    mock_reset();
    {
        slm_request *r = slm_request_new(SLM_REQ_GENERATE);
        r->gen.logprobs = true;
        slm_gate_call call;
        slm_gate_call_init(&call, SLM_CALL_GENERATE, "test", "/v1/completions");
        call.request = r;
        call.prompt = "x";
        CHECK(!slm_gate_submit(g, &call) && call.status == 400 && strcmp(call.error_code, "unsupported_parameter") == 0 &&
              strstr(call.error, "logprobs"));
        slm_gate_call_init(&call, SLM_CALL_EMBED, "test", "/v1/embeddings");
        call.request = r;
        CHECK(!slm_gate_submit(g, &call) && call.status == 400 && strcmp(call.error_code, "unsupported_call") == 0);
        slm_request_release(r);
        CHECK(mock_log_count() == 0);
    }

    /* a client error is not retried and is blamed on the request; the message is passed on */
    mock_reset();
    mock_faults("[\"400\"]");
    run_call(g, &(spec){.chat = true, .text = "too long"}, &o);
    CHECKF(o.finish == SLM_FINISH_ERROR && o.client_fault && strstr(o.error, "maximum context length is 10"), "%s",
           o.error);
    CHECK(mock_log_count() == 1);
    /* an error body echoing the key: scrubbed */
    mock_reset();
    mock_faults("[\"401echo\"]");
    run_call(g, &(spec){.chat = true, .text = "who am i"}, &o);
    CHECKF(o.finish == SLM_FINISH_ERROR && strstr(o.error, "HTTP 401") && strstr(o.error, "Incorrect API key") &&
           no_key(o.error) && !o.client_fault, "%s", o.error);

    /* a stream that breaks before any text is retried; one that breaks after text is not */
    mock_reset();
    mock_faults("[\"break:0\", \"ok\"]");
    run_call(g, &(spec){.chat = true, .text = "again"}, &o);
    mock_reply("again", want, sizeof want);
    CHECKF(o.finish == SLM_FINISH_STOP && strcmp(o.text, want) == 0, "%s", o.error);
    mock_reset();
    mock_faults("[\"break:3\", \"ok\"]");
    run_call(g, &(spec){.chat = true, .stream = true, .text = "broken"}, &o);
    CHECKF(o.finish == SLM_FINISH_ERROR && strcmp(o.text, "Mock reply t") == 0 && o.seconds < 2 &&
           strncmp(o.error, "upstream stream broke after 12 bytes: ", 38) == 0, "'%s' %s", o.text, o.error);
    CHECK(mock_log_count() == 1);
    /* ... unless the client does not stream: it has seen nothing yet, so the partial text is
     * discarded and the call retried */
    mock_reset();
    mock_faults("[\"break:3\", \"ok\"]");
    run_call(g, &(spec){.chat = true, .text = "broken"}, &o);
    mock_reply("broken", want, sizeof want);
    CHECKF(o.finish == SLM_FINISH_STOP && strcmp(o.text, want) == 0, "'%s' %s", o.text, o.error);
    CHECK(mock_log_count() == 2);
    /* an error event mid-stream, a clean end without [DONE], malformed JSON, an endless line */
    mock_reset();
    mock_faults("[\"sse_error\", \"nodone\", \"malformed\", \"malformed\", \"malformed\", \"longline\"]");
    run_call(g, &(spec){.chat = true, .stream = true, .text = "x"}, &o);
    CHECKF(o.finish == SLM_FINISH_ERROR && strcmp(o.text, "Mock") == 0 &&
           strcmp(o.error, "upstream stream broke after 4 bytes: mock overloaded mid-stream") == 0, "%s", o.error);
    run_call(g, &(spec){.chat = true, .stream = true, .text = "x"}, &o);
    mock_reply("x", want, sizeof want);
    CHECKF(o.finish == SLM_FINISH_ERROR && strcmp(o.text, want) == 0 && strstr(o.error, "without [DONE]"), "%s", o.error);
    run_call(g, &(spec){.chat = true, .text = "x"}, &o);
    CHECKF(o.finish == SLM_FINISH_ERROR && o.text_len == 0 && strstr(o.error, "malformed stream chunk"), "%s", o.error);
    mock_faults("[\"longline\", \"longline\"]");
    run_call(g, &(spec){.chat = true, .text = "x"}, &o);
    CHECKF(o.finish == SLM_FINISH_ERROR && strstr(o.error, "longer than"), "%s", o.error);
    slm_gate_free(g);
    slm_upstream_free(u);
    /* text without end: cut at the cap (300000 bytes here), what arrived kept */
    slm_upstream_config c = {.name = "frontier", .url = mock_url, .model = "fault:flood", .max_text_bytes = 300000};
    char err[256];
    CHECK(slm_upstream_new(&c, &u, err, sizeof err) == 0);
    g = gate_with(e, u);
    run_call(g, &(spec){.chat = true, .stream = true, .text = "x"}, &o);
    CHECKF(o.finish == SLM_FINISH_ERROR && strstr(o.error, "more than 300000 bytes of text") && o.text_len == 4 * 65536,
           "%s (%zu bytes)", o.error, o.text_len);
    slm_gate_free(g);
    slm_upstream_free(u);
}

static void test_timeouts_and_cancel(slm_engine *e) {
    /* an upstream that never answers: the first-byte limit (0.4 s), no retries */
    slm_upstream *u = upstream_with(mock_url, "fault:hang", 0.4, -1);
    slm_gate *g = gate_with(e, u);
    outcome o;
    run_call(g, &(spec){.chat = true, .text = "hello?"}, &o);
    CHECKF(o.finish == SLM_FINISH_ERROR && o.seconds >= 0.4 && o.seconds < 1.2 && strstr(o.error, "no response from"),
           "%s after %.2f s", o.error, o.seconds);
    /* the request's own deadline comes first: TIMEOUT */
    run_call(g, &(spec){.chat = true, .text = "hello?", .deadline_in = 0.2}, &o);
    CHECKF(o.finish == SLM_FINISH_TIMEOUT && o.seconds < 0.8, "%d after %.2f s", o.finish, o.seconds);
    slm_gate_free(g);
    slm_upstream_free(u);

    /* cancellation mid-stream (chunks every 150 ms): stops at once, text so far kept */
    u = upstream_with(mock_url, "fault:slow:150", 5, 2);
    g = gate_with(e, u);
    run_call(g, &(spec){.chat = true, .stream = true, .text = "a long answer please", .cancel_on_text = true}, &o);
    CHECKF(o.finish == SLM_FINISH_CANCELLED && o.cancel_to_done < 0.25 && o.text_len > 0 && o.text_len < 20,
           "%d, %.3f s after cancel, %zu bytes", o.finish, o.cancel_to_done, o.text_len);
    /* slow but alive: the idle limit (first_byte 0.4 s here) is between bytes, not the whole stream */
    slm_gate_free(g);
    slm_upstream_free(u);
    u = upstream_with(mock_url, "fault:slow:60", 0.4, -1);
    g = gate_with(e, u);
    char want[256];
    run_call(g, &(spec){.chat = true, .text = "slow"}, &o);
    mock_reply("slow", want, sizeof want);
    CHECKF(o.finish == SLM_FINISH_STOP && strcmp(o.text, want) == 0 && o.seconds > 0.5, "%s (%.2f s)", o.error, o.seconds);
    /* freeing the upstream cancels what is in flight and waits for it */
    slm_gate_free(g);
    slm_upstream_free(u);

    /* headers at once, then silence longer than the idle limit: cut, reported as such */
    slm_upstream_config c = {.name = "frontier", .url = mock_url, .model = "fault:slow:700", .first_byte_timeout_s = 5,
                             .idle_timeout_s = 0.25, .max_retries = -1};
    char err[256];
    CHECK(slm_upstream_new(&c, &u, err, sizeof err) == 0);
    g = gate_with(e, u);
    run_call(g, &(spec){.chat = true, .text = "idle"}, &o);
    CHECKF(o.finish == SLM_FINISH_ERROR && strstr(o.error, "sent nothing for 0.2") && o.seconds < 1.0, "%s (%.2f s)",
           o.error, o.seconds);
    slm_gate_free(g);
    slm_upstream_free(u);

    /* free while a call is in flight: the worker is cancelled and joined. With max_in_flight 1 a
     * second call meanwhile is refused */
    c = (slm_upstream_config){.name = "frontier", .url = mock_url, .model = "fault:hang", .max_in_flight = 1};
    CHECK(slm_upstream_new(&c, &u, err, sizeof err) == 0);
    g = gate_with(e, u);
    slm_request *r = slm_request_new(SLM_REQ_GENERATE);
    slm_gate_call call;
    slm_gate_call_init(&call, SLM_CALL_GENERATE, "test", "/v1/completions");
    call.request = r;
    call.prompt = "never answered";
    CHECK(slm_gate_submit(g, &call));
    run_call(g, &(spec){.text = "me too"}, &o);
    CHECKF(!o.submitted && o.status == 503 && strcmp(o.code, "upstream_busy") == 0, "%d %s", o.status, o.code);
    slm_upstream_stats st;
    slm_upstream_get_stats(u, &st);
    CHECK(st.in_flight == 1 && st.refused_busy == 1);
    usleep(100 * 1000);
    double t0 = slm_now();
    slm_upstream_free(u);
    CHECK(slm_now() - t0 < 0.5);
    pthread_mutex_lock(&r->mu);
    CHECK(r->done && r->finish == SLM_FINISH_CANCELLED);
    pthread_mutex_unlock(&r->mu);
    slm_request_release(r);
    slm_gate_free(g);
}

/* https: the certificate is always verified; only the CA file can be chosen. */
static void test_tls(slm_engine *e) {
    char dir[] = "/tmp/slm-up-tls-XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0);
        return;
    }
    char cmd[1024], cert[128], key[128];
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1 -keyout %s -out %s >/dev/null 2>&1", key, cert);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_upstream: openssl cannot make a test certificate: TLS checks skipped\n");
        rmdir(dir);
        return;
    }
    int port;
    pid_t pid = spawn_mock(cert, key, &port);
    CHECK(pid > 0 && port > 0);
    char url[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%d/v1", port);
    /* not signed by a CA we trust: refused, not retried */
    slm_upstream *u = upstream_with(url, "gpt-test", 5, 2);
    slm_gate *g = gate_with(e, u);
    outcome o;
    run_call(g, &(spec){.chat = true, .text = "secure?"}, &o);
    CHECKF(o.finish == SLM_FINISH_ERROR && strstr(o.error, "127.0.0.1") && no_key(o.error) &&
           (strstr(o.error, "certificate") || strstr(o.error, "SSL")), "%s", o.error);
    slm_upstream_stats st;
    slm_upstream_get_stats(u, &st);
    CHECK(st.attempts == 1);
    slm_gate_free(g);
    slm_upstream_free(u);
    /* trusted through ca_file: the exact reply */
    slm_upstream_config c = {.name = "frontier", .url = url, .model = "gpt-test", .api_key = KEY, .ca_file = cert};
    char err[256];
    CHECK(slm_upstream_new(&c, &u, err, sizeof err) == 0);
    g = gate_with(e, u);
    run_call(g, &(spec){.chat = true, .text = "secure?"}, &o);
    char want[256];
    mock_reply("secure?", want, sizeof want);
    CHECKF(o.finish == SLM_FINISH_STOP && strcmp(o.text, want) == 0, "%s", o.error);
    slm_gate_free(g);
    slm_upstream_free(u);
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

/* Many calls at once, streamed in small slow chunks so they overlap: each gets its own text. */
static void test_concurrent(slm_engine *e) {
    enum { N = 12 };
    slm_upstream *u = upstream_with(mock_url, "fault:slow:5", 5, 2);
    slm_gate *g = gate_with(e, u);
    slm_request *r[N];
    slm_gate_call *calls = calloc(N, sizeof *calls);
    char prompts[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(prompts[i], sizeof prompts[i], "call number %d", i);
        r[i] = slm_request_new(SLM_REQ_GENERATE);
        slm_gate_call_init(&calls[i], SLM_CALL_GENERATE, "test", "/v1/completions");
        calls[i].request = r[i];
        calls[i].prompt = prompts[i];
        calls[i].stream = true;
        CHECK(slm_gate_submit(g, &calls[i]));
    }
    slm_upstream_stats st;
    slm_upstream_get_stats(u, &st);
    CHECK(st.in_flight > 1);
    int right = 0;
    for (int i = 0; i < N; i++) {
        pthread_mutex_lock(&r[i]->mu);
        double t0 = slm_now();
        while (!r[i]->done && slm_now() - t0 < 10) slm_request_wait(r[i], 20);
        char want[256];
        mock_reply(prompts[i], want, sizeof want);
        right += r[i]->done && r[i]->finish == SLM_FINISH_STOP && r[i]->text && strcmp(r[i]->text, want) == 0 &&
                 r[i]->remote_prompt_tokens == 3;
        pthread_mutex_unlock(&r[i]->mu);
        slm_gate_finish(g, &calls[i]);
        slm_request_release(r[i]);
    }
    CHECKF(right == N, "%d of %d calls got their own text", right, N);
    free(calls);
    slm_gate_free(g);
    slm_upstream_free(u);
}

static void test_breaker(slm_engine *e) {
    slm_upstream_config c = {.name = "frontier", .url = mock_url, .model = "gpt-test", .api_key = KEY,
                             .first_byte_timeout_s = 2, .max_retries = -1, .breaker_threshold = 3,
                             .breaker_cooldown_s = 0.5};
    slm_upstream *u = NULL;
    char err[256];
    CHECK(slm_upstream_new(&c, &u, err, sizeof err) == 0);
    slm_gate *g = gate_with(e, u);
    outcome o;
    mock_reset();
    mock_faults("[\"500\", \"500\", \"500\", \"503\", \"ok\", \"ok\"]");
    for (int i = 0; i < 3; i++) {
        CHECK(!slm_upstream_is_open(u));
        run_call(g, &(spec){.chat = true, .text = "x"}, &o);
        CHECK(o.finish == SLM_FINISH_ERROR);
    }
    CHECK(slm_upstream_is_open(u));
    run_call(g, &(spec){.chat = true, .text = "x"}, &o); /* refused at once, nothing sent */
    CHECKF(!o.submitted && o.status == 503 && strcmp(o.code, "upstream_unavailable") == 0 &&
           strstr(o.call_error, "frontier"), "%d %s %s", o.status, o.code, o.call_error);
    CHECK(mock_log_count() == 3);
    usleep(550 * 1000);
    CHECK(!slm_upstream_is_open(u));
    run_call(g, &(spec){.chat = true, .text = "x"}, &o); /* the trial fails (503): open again */
    CHECK(o.finish == SLM_FINISH_ERROR && slm_upstream_is_open(u));
    usleep(550 * 1000);
    run_call(g, &(spec){.chat = true, .text = "x"}, &o); /* the trial succeeds: closed */
    CHECK(o.finish == SLM_FINISH_STOP && !slm_upstream_is_open(u));
    run_call(g, &(spec){.chat = true, .text = "x"}, &o);
    CHECK(o.finish == SLM_FINISH_STOP);
    slm_upstream_stats st;
    slm_upstream_get_stats(u, &st);
    CHECKF(st.breaker_opens == 2 && st.refused_open == 1 && st.failures == 4, "opens %ld refused %ld failures %ld",
           st.breaker_opens, st.refused_open, st.failures);
    slm_gate_free(g);
    slm_upstream_free(u);
}

/* A port nothing listens on. */
static int dead_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    bind(s, (struct sockaddr *)&a, sizeof a);
    getsockname(s, (struct sockaddr *)&a, &al);
    close(s);
    return ntohs(a.sin_port);
}

static void test_refused_no_fallback(slm_engine *e) {
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", dead_port());
    slm_upstream *u = upstream_with(url, "gpt-test", 2, 1);
    slm_gate *g = gate_with(e, u);
    outcome o;
    run_call(g, &(spec){.chat = true, .text = "anyone?"}, &o);
    CHECKF(o.finish == SLM_FINISH_ERROR && strstr(o.error, "upstream 'frontier' failed on every attempt") &&
           strstr(o.error, "127.0.0.1") && no_key(o.error) && o.seconds < 1.5, "%s", o.error);
    slm_gate_free(g);
    slm_upstream_free(u);
}

/* The upstream is down: the local engine answers, exactly as it does on its own. */
static void test_fallback(slm_model *m) {
    slm_engine *e = NULL;
    char err[256];
    slm_context_params cp = slm_context_default_params();
    cp.n_seq = 2;
    cp.n_ctx = 128;
    CHECK(slm_engine_new(&(slm_engine_params){.n_threads = 1}, &e, err, sizeof err) == 0);
    CHECK(slm_engine_add_model(e, "stories", m, &cp, false, err, sizeof err) == 0);
    CHECK(slm_engine_start(e, err, sizeof err) == 0);
    const char *text = "Once upon a time";
    slm_token toks[64];
    int n = slm_tokenize(m, text, strlen(text), true, false, toks, 64, err, sizeof err);
    CHECK(n > 0);
    /* the reference: the same request straight to the engine */
    slm_request *ref = slm_request_new(SLM_REQ_GENERATE);
    ref->prompt = malloc(sizeof *ref->prompt * (size_t)n);
    memcpy(ref->prompt, toks, sizeof *toks * (size_t)n);
    ref->n_prompt = n;
    ref->gen.max_tokens = 20;
    ref->gen.ignore_eos = true;
    ref->gen.sampling.temperature = 0;
    CHECK(slm_engine_submit(e, ref) == SLM_SUBMIT_OK);
    CHECK(slm_engine_wait(e, ref, NULL, NULL, NULL) == SLM_FINISH_LENGTH);
    CHECK(ref->text_len > 0);

    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", dead_port());
    slm_upstream *u = upstream_with(url, "gpt-test", 2, 1);
    slm_upstream_set_fallback(u, e);
    slm_gate *g = gate_with(e, u);
    outcome o;
    run_call(g, &(spec){.text = text, .max_tokens = 20, .prompt = toks, .n_prompt = n}, &o);
    CHECKF(o.submitted && o.finish == SLM_FINISH_LENGTH && strcmp(o.text, ref->text) == 0, "%d '%s' vs '%s' %s",
           o.finish, o.text, ref->text, o.error);
    CHECK(o.route && strcmp(o.route, "local") == 0 && o.prompt_tokens == 0);
    /* a hung upstream (SIGSTOP): one first-byte limit (0.3 s), no retries, then local */
    slm_upstream_free(u);
    slm_gate_free(g);
    u = upstream_with(mock_url, "fault:hang", 0.3, 2);
    slm_upstream_set_fallback(u, e);
    g = gate_with(e, u);
    run_call(g, &(spec){.text = text, .max_tokens = 20, .prompt = toks, .n_prompt = n}, &o);
    CHECKF(o.finish == SLM_FINISH_LENGTH && strcmp(o.text, ref->text) == 0 && o.seconds < 0.9 && o.route &&
           strcmp(o.route, "local") == 0, "%d %.2f s %s", o.finish, o.seconds, o.error);
    /* with the circuit open the fallback takes the call at once */
    slm_upstream_free(u);
    slm_gate_free(g);
    slm_upstream_config c = {.name = "frontier", .url = url, .model = "gpt-test", .max_retries = -1,
                             .breaker_threshold = 1, .breaker_cooldown_s = 60};
    CHECK(slm_upstream_new(&c, &u, err, sizeof err) == 0);
    slm_upstream_set_fallback(u, e);
    g = gate_with(e, u);
    run_call(g, &(spec){.text = text, .max_tokens = 20, .prompt = toks, .n_prompt = n}, &o);
    CHECK(o.finish == SLM_FINISH_LENGTH && slm_upstream_is_open(u));
    run_call(g, &(spec){.text = text, .max_tokens = 20, .prompt = toks, .n_prompt = n}, &o);
    CHECKF(o.submitted && o.finish == SLM_FINISH_LENGTH && strcmp(o.text, ref->text) == 0 && o.seconds < 1 &&
           o.route && strcmp(o.route, "local") == 0, "%d %s", o.finish, o.error);
    slm_upstream_stats st;
    slm_upstream_get_stats(u, &st);
    CHECK(st.fallbacks == 2 && st.refused_open == 1);
    slm_gate_free(g);
    slm_upstream_free(u);
    slm_request_release(ref);
    slm_engine_free(e);
}

/* A loopback listener of our own: counts connection attempts without ever blocking. */
static int listener(int *port) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    CHECK(bind(s, (struct sockaddr *)&a, sizeof a) == 0 && listen(s, 16) == 0);
    getsockname(s, (struct sockaddr *)&a, &al);
    *port = ntohs(a.sin_port);
    return s;
}

/* Connections accepted within ms milliseconds (each is closed at once). */
static int connections_within(int s, int ms) {
    int n = 0;
    double until = slm_now() + ms / 1000.0;
    while (slm_now() < until) {
        struct pollfd p = {.fd = s, .events = POLLIN};
        if (poll(&p, 1, 10) > 0) {
            int c = accept(s, NULL, NULL);
            if (c >= 0) {
                n++;
                close(c);
            }
        }
    }
    return n;
}

/* A real `slm serve` as the upstream (issue 14's stand-in for the frontier API): slm's own SSE must
 * parse, and greedy text and usage must equal the engine's own run of the same prompt. */
static void test_real_server(slm_engine *e, slm_model *m, const char *model_path) {
    const char *bin = getenv("SLM_BIN");
    if (!bin || access(bin, X_OK) != 0) {
        fprintf(stderr, "test_upstream: SLM_BIN unset or not executable: the real-server check is skipped\n");
        return;
    }
    char dir[] = "/tmp/slm-up-srv-XXXXXX";
    if (!mkdtemp(dir)) return;
    char port_file[128];
    snprintf(port_file, sizeof port_file, "%s/port", dir);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl(bin, bin, "serve", "--model", model_path, "--port", "0", "--port-file", port_file, "--no-data-dir", "-np",
              "2", "-t", "1", "-c", "256", (char *)NULL);
        _exit(127);
    }
    int port = 0;
    for (int i = 0; i < 200 && port == 0; i++) {
        FILE *f = fopen(port_file, "r");
        if (f) {
            if (fscanf(f, "%d", &port) != 1) port = 0;
            fclose(f);
        }
        if (port == 0) usleep(50 * 1000);
    }
    CHECKF(port > 0, "slm serve did not start");
    char url[128], health[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", port);
    snprintf(health, sizeof health, "http://127.0.0.1:%d/health", port);
    for (int i = 0; port > 0 && i < 200; i++) {
        slm_net_request rq = {.url = health, .total_timeout_s = 2};
        slm_net_response rs;
        bool ok = slm_net_perform(&rq, &rs) == SLM_NET_OK && rs.status == 200;
        slm_net_response_free(&rs);
        if (ok) break;
        usleep(50 * 1000);
    }
    /* the reference: greedy on the engine */
    const char *text = "Once upon a time";
    slm_token toks[64];
    char err[256];
    int n = slm_tokenize(m, text, strlen(text), true, false, toks, 64, err, sizeof err);
    slm_engine *le = NULL;
    slm_context_params cp = slm_context_default_params();
    cp.n_ctx = 256;
    CHECK(slm_engine_new(&(slm_engine_params){.n_threads = 1}, &le, err, sizeof err) == 0 &&
          slm_engine_add_model(le, "stories", m, &cp, false, err, sizeof err) == 0);
    slm_request *ref = slm_request_new(SLM_REQ_GENERATE);
    ref->prompt = malloc(sizeof *ref->prompt * (size_t)n);
    memcpy(ref->prompt, toks, sizeof *toks * (size_t)n);
    ref->n_prompt = n;
    ref->gen.max_tokens = 24;
    ref->gen.sampling.temperature = 0;
    CHECK(slm_engine_submit(le, ref) == SLM_SUBMIT_OK);
    slm_finish ref_finish = slm_engine_wait(le, ref, NULL, NULL, NULL);

    slm_upstream *u = upstream_with(url, "stories260K", 10, 0);
    slm_gate *g = gate_with(e, u);
    outcome o;
    run_call(g, &(spec){.text = text, .max_tokens = 24}, &o);
    CHECKF(o.finish == ref_finish && strcmp(o.text, ref->text ? ref->text : "") == 0, "%d/%d '%s' vs '%s' %s", o.finish,
           ref_finish, o.text, ref->text, o.error);
    CHECKF(o.prompt_tokens == n && o.completion_tokens == ref->n_tokens, "usage %d %d vs %d %d", o.prompt_tokens,
           o.completion_tokens, n, ref->n_tokens);
    /* a chat through slm's chat endpoint streams too */
    run_call(g, &(spec){.chat = true, .text = "Tell me a story.", .max_tokens = 8}, &o);
    CHECKF((o.finish == SLM_FINISH_LENGTH || o.finish == SLM_FINISH_STOP) && o.completion_tokens > 0 &&
           o.prompt_tokens > 0, "%d %s", o.finish, o.error);
    slm_gate_free(g);
    slm_upstream_free(u);
    slm_request_release(ref);
    slm_engine_free(le);
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
    unlink(port_file);
    rmdir(dir);
}

static void test_air_gap(slm_engine *e, slm_model *m) {
    int port;
    int s = listener(&port);
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", port);
    slm_upstream *u = upstream_with(url, "gpt-test", 0.3, -1);
    slm_gate *g = gate_with(e, u);
    outcome o;
    /* the control: before the air gap, a call does reach the listener */
    run_call(g, &(spec){.chat = true, .text = "ping"}, &o);
    CHECK(o.finish == SLM_FINISH_ERROR); /* the listener never answers */
    CHECK(connections_within(s, 100) == 1);

    slm_net_set_air_gapped(true);
    slm_net_set_air_gapped(false); /* a latch: stays on */
    CHECK(slm_net_air_gapped());
    run_call(g, &(spec){.chat = true, .text = "ping"}, &o);
    CHECKF(!o.submitted && o.status == 403 && strcmp(o.code, "air_gapped") == 0 &&
           strcmp(o.call_error, "air-gapped mode: outbound connection to 127.0.0.1 refused") == 0, "%d %s %s", o.status,
           o.code, o.call_error);
    slm_net_request rq = {.url = url, .bearer_token = KEY};
    slm_net_response rs;
    CHECK(slm_net_perform(&rq, &rs) == SLM_NET_AIR_GAPPED &&
          strcmp(rs.error, "air-gapped mode: outbound connection to 127.0.0.1 refused") == 0);
    slm_net_response_free(&rs);
    rq.url = "https://api.openai.com/v1/chat/completions";
    CHECK(slm_net_perform(&rq, &rs) == SLM_NET_AIR_GAPPED && strstr(rs.error, "api.openai.com refused"));
    slm_net_response_free(&rs);
    CHECK(connections_within(s, 300) == 0);
    slm_gate_free(g);
    slm_upstream_free(u);

    /* with a local fallback the call is answered locally instead */
    if (m) {
        slm_engine *le = NULL;
        char err[256];
        slm_context_params cp = slm_context_default_params();
        cp.n_ctx = 64;
        CHECK(slm_engine_new(&(slm_engine_params){.n_threads = 1}, &le, err, sizeof err) == 0 &&
              slm_engine_add_model(le, "stories", m, &cp, false, err, sizeof err) == 0 &&
              slm_engine_start(le, err, sizeof err) == 0);
        u = upstream_with(url, "gpt-test", 0.3, -1);
        slm_upstream_set_fallback(u, le);
        g = gate_with(le, u);
        slm_token toks[16];
        int n = slm_tokenize(m, "Once", 4, true, false, toks, 16, err, sizeof err);
        run_call(g, &(spec){.text = "Once", .max_tokens = 5, .prompt = toks, .n_prompt = n}, &o);
        CHECK(o.submitted && o.finish == SLM_FINISH_LENGTH && o.text_len > 0 && o.route && strcmp(o.route, "local") == 0);
        CHECK(connections_within(s, 100) == 0);
        slm_gate_free(g);
        slm_upstream_free(u);
        slm_engine_free(le);
    }
    close(s);
}

static void test_config(void) {
    slm_upstream *u = NULL;
    char err[256];
    CHECK(slm_upstream_new(&(slm_upstream_config){.name = "x", .url = "ftp://h/v1", .model = "m"}, &u, err, sizeof err) != 0 &&
          strstr(err, "http://"));
    CHECK(slm_upstream_new(&(slm_upstream_config){.name = "x", .url = "http://h/v1"}, &u, err, sizeof err) != 0 &&
          strstr(err, "no model"));
    CHECK(slm_upstream_new(&(slm_upstream_config){.name = "x", .url = "http://h/v1", .model = "m", .api_key = "a\nb"}, &u,
                           err, sizeof err) != 0 && no_key(err) && !strstr(err, "a\nb"));
    CHECK(slm_upstream_new(&(slm_upstream_config){.name = "x", .url = "http://h/v1", .model = "m", .timeout_s = -1}, &u,
                           err, sizeof err) != 0);
    CHECK(slm_upstream_new(&(slm_upstream_config){.name = "x", .url = "http://h/v1/", .model = "m"}, &u, err, sizeof err) == 0);
    slm_upstream_free(u);
}

/* Runs a test section; says how long it took when SLM_TEST_VERBOSE is set (to keep the suite fast). */
#define SECTION(call)                                                                         \
    do {                                                                                      \
        double t0_ = slm_now();                                                               \
        call;                                                                                 \
        if (getenv("SLM_TEST_VERBOSE")) fprintf(stderr, "  %-40s %.2f s\n", #call, slm_now() - t0_); \
    } while (0)

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    SECTION(test_sse());
    SECTION(test_sse_random());
    SECTION(test_config());
    if (!start_mock()) {
        fprintf(stderr, "test_upstream: cannot start the mock upstream (python3 %s/tests/cli/upstream_mock.py)\n",
                SLM_SOURCE_DIR);
        stop_mock();
        return 1;
    }
    slm_engine *e = NULL;
    char err[256];
    CHECKF(slm_engine_new(&(slm_engine_params){.n_threads = 1}, &e, err, sizeof err) == 0, "%s", err);
    SECTION(test_net_basics());
    SECTION(test_stream_exact(e));
    SECTION(test_retries(e));
    SECTION(test_timeouts_and_cancel(e));
    SECTION(test_tls(e));
    SECTION(test_concurrent(e));
    SECTION(test_breaker(e));
    SECTION(test_refused_no_fallback(e));

    const char *shared = getenv("SLM_TEST_DATA") && *getenv("SLM_TEST_DATA") ? test_shared_dir() : NULL;
    slm_model *m = NULL;
    if (shared) {
        char path[4200];
        snprintf(path, sizeof path, "%.4000s/models/stories260K.gguf", shared);
        CHECKF(slm_model_load(path, NULL, &m, err, sizeof err) == 0, "%s", err);
        if (m) SECTION(test_fallback(m));
        if (m) SECTION(test_real_server(e, m, path));
    }
    SECTION(test_air_gap(e, m)); /* last: the air gap cannot be lifted */
    slm_model_free(m);
    slm_engine_free(e);
    stop_mock();
    int rc = test_report("test_upstream");
    if (rc == 0 && !shared) {
        fprintf(stderr, "test_upstream: SLM_TEST_DATA unset: the local-fallback tests (stories260K) were skipped\n");
        return TEST_SKIP_CODE;
    }
    return rc;
}
