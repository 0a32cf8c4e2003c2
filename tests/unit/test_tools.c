/* Mistral's v3 tool format, bytes in and out: the prompt as the v3 template renders it (tools block
 * before the last user turn's [INST], [TOOL_CALLS] lists with 9-alphanumeric ids, [TOOL_RESULTS]
 * carrying the answered call's id), the grammar (a started call always completes, ids included),
 * and the parser (whole text and byte-by-byte streaming agree). */
#include <ctype.h>

#include "chat/chat.h"
#include "sample/grammar.h"
#include "test.h"

static const slm_tool WEATHER = {"get_weather", "Weather now",
                                 "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":20}},"
                                 "\"required\":[\"city\"]}"};

static enum slm_chat_template render_template = SLM_CHAT_MISTRAL_V3;

static char *render(slm_tool_format f, const slm_tool *tools, size_t n_tools, const slm_tool_message *msgs, size_t n) {
    slm_tool_prompt p;
    char err[256];
    if (slm_tool_prompt_build(f, tools, n_tools, msgs, n, &p, err, sizeof err) != 0) {
        fprintf(stderr, "prompt: %s\n", err);
        return NULL;
    }
    char *out = NULL;
    int rc = slm_chat_apply(render_template, p.msgs, p.n, true, &out, err, sizeof err);
    slm_tool_prompt_free(&p);
    if (rc != 0) fprintf(stderr, "render: %s\n", err);
    return rc == 0 ? out : NULL;
}

static const char TOOLS_BLOCK[] =
    "[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather now\", "
    "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", \"maxLength\": 20}}, "
    "\"required\": [\"city\"]}}}][/AVAILABLE_TOOLS]";

static void test_detect(void) {
    CHECK(!strcmp(slm_tool_format_name(slm_tool_format_for(NULL, "mistral-v3")), "mistral"));
    CHECK(!strcmp(slm_tool_format_name(slm_tool_format_for(NULL, "mistral-v3-tekken")), "mistral"));
    CHECK(!strcmp(slm_tool_format_name(slm_tool_format_for(NULL, "mistral-v1")), "generic"));
    CHECK(!strcmp(slm_tool_format_name(slm_tool_format_for(NULL, "llama3")), "llama3"));
}

static void test_prompt(void) {
    slm_tool_format f = slm_tool_format_for(NULL, "mistral-v3");
    slm_tool_message first[] = {{"user", "What is the weather in Paris?", NULL, 0, NULL}};
    char *out = render(f, &WEATHER, 1, first, 1);
    char want[4096];
    snprintf(want, sizeof want, "%s[INST] What is the weather in Paris?[/INST]", TOOLS_BLOCK);
    CHECKF(out && !strcmp(out, want), "got  %s\nwant %s", out ? out : "(null)", want);
    free(out);

    /* a system message goes inside the tools' user turn */
    slm_tool_message with_sys[] = {{"system", "Be brief.", NULL, 0, NULL}, {"user", "Paris?", NULL, 0, NULL}};
    out = render(f, &WEATHER, 1, with_sys, 2);
    snprintf(want, sizeof want, "%s[INST] Be brief.\n\nParis?[/INST]", TOOLS_BLOCK);
    CHECKF(out && !strcmp(out, want), "got  %s\nwant %s", out ? out : "(null)", want);
    free(out);

    /* v7 (Mistral Small): the same layout with its [SYSTEM_PROMPT] */
    render_template = SLM_CHAT_MISTRAL_V7;
    out = render(f, &WEATHER, 1, with_sys, 2);
    snprintf(want, sizeof want, "[SYSTEM_PROMPT] Be brief.[/SYSTEM_PROMPT]%s[INST] Paris?[/INST]", TOOLS_BLOCK);
    CHECKF(out && !strcmp(out, want), "got  %s\nwant %s", out ? out : "(null)", want);
    free(out);
    render_template = SLM_CHAT_MISTRAL_V3;

    /* the round trip: call (an OpenAI id mapped to 9 alphanumerics), result, answer */
    slm_tool_call calls[] = {{"call_abc123def456", "get_weather", "{\"city\":\"Paris\"}"},
                             {"call_x", "get_weather", "{\"city\":\"Rome\"}"}};
    slm_tool_message conv[] = {{"user", "Weather in Paris and Rome?", NULL, 0, NULL},
                               {"assistant", "", calls, 2, NULL},
                               {"tool", "{\"temp\": 21}", NULL, 0, "get_weather"},
                               {"tool", "\"rain\"", NULL, 0, "get_weather"},
                               {"assistant", "Paris is warm, Rome is wet.", NULL, 0, NULL},
                               {"user", "Thanks!", NULL, 0, NULL}};
    out = render(f, &WEATHER, 1, conv, 6);
    char id_x[16];
    snprintf(want, sizeof want,
             "[INST] Weather in Paris and Rome?[/INST][TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": "
             "\"Paris\"}, \"id\": \"123def456\"}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}, \"id\": \"");
    CHECKF(out && !strncmp(out, want, strlen(want)), "got  %s\nwant %s...", out ? out : "(null)", want);
    /* "call_x" has 5 alphanumerics: the rest comes from a hash, the same for the call and its result */
    const char *idp = out ? out + strlen(want) : NULL;
    CHECK(idp && strlen(idp) > 9 && idp[9] == '"');
    if (idp) snprintf(id_x, sizeof id_x, "%.9s", idp);
    CHECK(!strncmp(id_x, "callx", 5));
    for (int i = 0; i < 9; i++) CHECK(isalnum((unsigned char)id_x[i]));
    char tail[2048];
    snprintf(tail, sizeof tail,
             "\"}]</s>[TOOL_RESULTS] {\"content\": {\"temp\": 21}, \"call_id\": \"123def456\"}[/TOOL_RESULTS]"
             "[TOOL_RESULTS] {\"content\": \"rain\", \"call_id\": \"%s\"}[/TOOL_RESULTS] Paris is warm, Rome is wet.</s>"
             "%s[INST] Thanks![/INST]",
             id_x, TOOLS_BLOCK);
    CHECKF(idp && !strcmp(idp + 9, tail), "got  %s\nwant %s", idp ? idp + 9 : "(null)", tail);
    free(out);
}

typedef struct events {
    char content[1024];
    char names[8][64];
    char args[8][512];
    int n;
} events;

static bool on_event(void *user, slm_tool_event_kind kind, int index, const char *text, size_t len) {
    events *e = user;
    if (kind == SLM_TOOL_EV_CONTENT) strncat(e->content, text, len);
    else if (kind == SLM_TOOL_EV_CALL) snprintf(e->names[e->n++], 64, "%.*s", (int)len, text);
    else if (index >= 0 && index < 8) strncat(e->args[index], text, len);
    return true;
}

static const char TWO_CALLS[] = "Sure. [TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": "
                                "\"a1b2c3d4e\"}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Ro]m}e\"}, \"id\": "
                                "\"ZZZZZZZZ9\"}]";

static void test_parse(void) {
    slm_tool_format f = slm_tool_format_for(NULL, "mistral-v3");
    char *content = NULL, err[256];
    slm_tool_call *calls = NULL;
    size_t n = 0;
    int rc = slm_tool_parse(f, &WEATHER, 1, TWO_CALLS, strlen(TWO_CALLS), &content, &calls, &n, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    CHECKF(n == 2 && content && !strcmp(content, "Sure. "), "n %zu content '%s'", n, content ? content : "(null)");
    if (n == 2) {
        CHECK(!strcmp(calls[0].name, "get_weather") && !strcmp(calls[0].arguments, "{\"city\":\"Paris\"}"));
        CHECK(calls[0].id && !strcmp(calls[0].id, "a1b2c3d4e"));
        CHECK(!strcmp(calls[1].arguments, "{\"city\":\"Ro]m}e\"}") && calls[1].id && !strcmp(calls[1].id, "ZZZZZZZZ9"));
    }
    slm_tool_calls_free(calls, n);
    free(content);

    /* byte by byte: the same events */
    slm_tool_stream *st = slm_tool_stream_new(f);
    events e = {0};
    for (size_t i = 0; i < strlen(TWO_CALLS); i++) CHECK(slm_tool_stream_feed(st, TWO_CALLS + i, 1, false, on_event, &e));
    CHECK(slm_tool_stream_feed(st, "", 0, true, on_event, &e));
    bool complete = false;
    CHECK(slm_tool_stream_calls(st, &complete) == 2 && complete);
    CHECKF(!strcmp(e.content, "Sure. ") && e.n == 2 && !strcmp(e.names[1], "get_weather"), "content '%s' n %d", e.content,
           e.n);
    CHECKF(!strcmp(e.args[0], "{\"city\": \"Paris\"}") && !strcmp(e.args[1], "{\"city\": \"Ro]m}e\"}"), "args '%s' '%s'",
           e.args[0], e.args[1]);
    slm_tool_stream_free(st);

    /* cut inside a call: an error naming it; no trigger: all text */
    const char *cut = "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Pa";
    CHECK(slm_tool_parse(f, &WEATHER, 1, cut, strlen(cut), &content, &calls, &n, err, sizeof err) != 0 &&
          strstr(err, "ends inside tool call 0"));
    const char *plain = "No tools [TOOL_CALL] needed.";
    CHECK(slm_tool_parse(f, &WEATHER, 1, plain, strlen(plain), &content, &calls, &n, err, sizeof err) == 0 && n == 0 &&
          !strcmp(content, plain));
    free(content);
    slm_tool_calls_free(calls, n);
    /* arguments that break the schema are refused */
    const char *bad = "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"town\": 1}, \"id\": \"a1b2c3d4e\"}]";
    CHECK(slm_tool_parse(f, &WEATHER, 1, bad, strlen(bad), &content, &calls, &n, err, sizeof err) != 0 &&
          strstr(err, "arguments invalid"));
}

static void test_grammar(void) {
    slm_tool_format f = slm_tool_format_for(NULL, "mistral-v3");
    char *gbnf = NULL, err[512];
    int bad = -1;
    int rc = slm_tool_gbnf(f, &WEATHER, 1, SLM_TOOL_MODE_REQUIRED, -1, true, NULL, &gbnf, &bad, err, sizeof err);
    CHECKF(rc == 0, "%s", err);
    slm_grammar *g = NULL;
    if (gbnf) rc = slm_grammar_compile_vocab(gbnf, strlen(gbnf), 0, NULL, NULL, NULL, &g, err, sizeof err);
    CHECKF(rc == 0 && g, "%s\n%s", err, gbnf ? gbnf : "");
    if (g) {
        const char *two = TWO_CALLS + 6; /* without "Sure. " */
        const char *c1 = "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}, \"id\": \"a1b2c3d4e\"}]";
        CHECKF(slm_grammar_matches(g, c1, strlen(c1)), "one call");
        const char *c2 = "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}, \"id\": \"a1b2c3d4e\"}, "
                         "{\"name\": \"get_weather\", \"arguments\": {\"city\":\"x\"}, \"id\": \"000000000\"}]";
        CHECKF(slm_grammar_matches(g, c2, strlen(c2)), "two calls");
        (void)two;
        const char *short_id = "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\":\"P\"}, \"id\": \"a1b2\"}]";
        CHECK(!slm_grammar_matches(g, short_id, strlen(short_id)));
        const char *no_id = "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\":\"P\"}}]";
        CHECK(!slm_grammar_matches(g, no_id, strlen(no_id)));
        const char *text = "Sure. [TOOL_CALLS] [";
        CHECK(!slm_grammar_bytes_allowed(g, text, 1)); /* required: the reply starts with the call */
        slm_grammar_free(g);
    }
    free(gbnf);
    gbnf = NULL;
    rc = slm_tool_gbnf(f, &WEATHER, 1, SLM_TOOL_MODE_AUTO, -1, false, NULL, &gbnf, &bad, err, sizeof err);
    g = NULL;
    if (rc == 0) rc = slm_grammar_compile_vocab(gbnf, strlen(gbnf), 0, NULL, NULL, NULL, &g, err, sizeof err);
    CHECKF(rc == 0 && g, "auto: %s", err);
    if (g) {
        const char *t = "It is sunny. [TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\":\"P\"}, \"id\": "
                        "\"abcdefghi\"}]";
        CHECK(slm_grammar_matches(g, t, strlen(t)));
        CHECK(slm_grammar_matches(g, "Just text.", 10));
        /* once the trigger is written, only a call can follow */
        slm_grammar_reset(g);
        CHECK(slm_grammar_accept_bytes(g, "Hi [TOOL_CALLS] [", 17));
        CHECK(!slm_grammar_bytes_allowed(g, "x", 1));
        CHECK(slm_grammar_bytes_allowed(g, "{\"name\": \"get_weather\"", 22));
        slm_grammar_free(g);
    }
    free(gbnf);
}

int main(void) {
    test_detect();
    test_prompt();
    test_parse();
    test_grammar();
    return test_report("test_tools");
}
