/* Chat template detection and fixed-code rendering per family. The output of every family matches
 * llama.cpp's built-in llama_chat_apply_template (commit c392e509) byte for byte; the Jinja text
 * is only inspected for marker strings, never executed. */
#include "chat/chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/err.h"

static const char *const TEMPLATE_NAMES[SLM_CHAT_COUNT] = {
    [SLM_CHAT_CHATML] = "chatml",
    [SLM_CHAT_LLAMA3] = "llama3",
    [SLM_CHAT_LLAMA2] = "llama2",
    [SLM_CHAT_LLAMA2_SYS] = "llama2-sys",
    [SLM_CHAT_LLAMA2_SYS_BOS] = "llama2-sys-bos",
    [SLM_CHAT_LLAMA2_SYS_STRIP] = "llama2-sys-strip",
    [SLM_CHAT_MISTRAL_V1] = "mistral-v1",
    [SLM_CHAT_MISTRAL_V3] = "mistral-v3",
    [SLM_CHAT_MISTRAL_V3_TEKKEN] = "mistral-v3-tekken",
    [SLM_CHAT_MISTRAL_V7] = "mistral-v7",
    [SLM_CHAT_PHI3] = "phi3",
    [SLM_CHAT_PHI4] = "phi4",
    [SLM_CHAT_GEMMA] = "gemma",
    [SLM_CHAT_ZEPHYR] = "zephyr",
    [SLM_CHAT_FALCON3] = "falcon3",
    [SLM_CHAT_MONARCH] = "monarch",
    [SLM_CHAT_ORION] = "orion",
    [SLM_CHAT_OPENCHAT] = "openchat",
    [SLM_CHAT_VICUNA] = "vicuna",
    [SLM_CHAT_VICUNA_ORCA] = "vicuna-orca",
    [SLM_CHAT_DEEPSEEK] = "deepseek",
    [SLM_CHAT_DEEPSEEK2] = "deepseek2",
    [SLM_CHAT_DEEPSEEK3] = "deepseek3",
    [SLM_CHAT_COMMAND_R] = "command-r",
    [SLM_CHAT_CHATGLM3] = "chatglm3",
    [SLM_CHAT_CHATGLM4] = "chatglm4",
    [SLM_CHAT_GLMEDGE] = "glmedge",
    [SLM_CHAT_MINICPM] = "minicpm",
    [SLM_CHAT_EXAONE3] = "exaone3",
    [SLM_CHAT_RWKV_WORLD] = "rwkv-world",
    [SLM_CHAT_GRANITE] = "granite",
    [SLM_CHAT_GIGACHAT] = "gigachat",
    [SLM_CHAT_MEGREZ] = "megrez",
    [SLM_CHAT_TINYLLAMA] = "tinyllama",
};

const char *slm_chat_template_name(enum slm_chat_template t) {
    if ((int)t < 0 || t >= SLM_CHAT_COUNT) return NULL;
    return TEMPLATE_NAMES[t];
}

enum slm_chat_template slm_chat_template_from_name(const char *name) {
    if (!name) return SLM_CHAT_UNKNOWN;
    for (int t = 0; t < SLM_CHAT_COUNT; t++)
        if (strcmp(name, TEMPLATE_NAMES[t]) == 0) return (enum slm_chat_template)t;
    return SLM_CHAT_UNKNOWN;
}

const char *slm_chat_known_names(void) {
    /* Built once; the table is constant so a racing second build writes the same bytes. */
    static char list[1024];
    if (!list[0]) {
        char tmp[sizeof list];
        size_t used = 0;
        for (int t = 0; t < SLM_CHAT_COUNT; t++) {
            int n = snprintf(tmp + used, sizeof tmp - used, "%s%s", t ? ", " : "", TEMPLATE_NAMES[t]);
            if (n < 0 || (size_t)n >= sizeof tmp - used) break;
            used += (size_t)n;
        }
        memcpy(list, tmp, used + 1);
    }
    return list;
}

static bool has(const char *text, const char *marker) { return strstr(text, marker) != NULL; }

enum slm_chat_template slm_chat_template_detect(const char *text) {
    if (!text) return SLM_CHAT_UNKNOWN;
    enum slm_chat_template by_name = slm_chat_template_from_name(text);
    if (by_name != SLM_CHAT_UNKNOWN) return by_name;

    /* Order matters: several families share markers, and the first match wins as in llama.cpp. */
    if (has(text, "<|im_start|>")) return has(text, "<|im_sep|>") ? SLM_CHAT_PHI4 : SLM_CHAT_CHATML;
    if (strncmp(text, "mistral", 7) == 0 || has(text, "[INST]")) {
        if (has(text, "[SYSTEM_PROMPT]")) return SLM_CHAT_MISTRAL_V7;
        /* Mistral's official v1 / v3 / v3-tekken templates. */
        if (has(text, "' [INST] ' + system_message") || has(text, "[AVAILABLE_TOOLS]")) {
            if (has(text, " [INST]")) return SLM_CHAT_MISTRAL_V1;
            if (has(text, "\"[INST]\"")) return SLM_CHAT_MISTRAL_V3_TEKKEN;
            return SLM_CHAT_MISTRAL_V3;
        }
        if (has(text, "content.strip()")) return SLM_CHAT_LLAMA2_SYS_STRIP;
        if (has(text, "bos_token + '[INST]")) return SLM_CHAT_LLAMA2_SYS_BOS;
        if (has(text, "<<SYS>>")) return SLM_CHAT_LLAMA2_SYS;
        return SLM_CHAT_LLAMA2;
    }
    if (has(text, "<|assistant|>") && has(text, "<|end|>")) return SLM_CHAT_PHI3;
    /* TinyLlama-Chat and zephyr-7b end every turn with eos_token ("</s>"); llama.cpp c392e509 takes
     * them for glmedge and drops the terminator, which changes the prompt these models were tuned on. */
    if (has(text, "'<|user|>\\n' + message['content'] + eos_token")) return SLM_CHAT_TINYLLAMA;
    if (has(text, "<|assistant|>") && has(text, "<|user|>"))
        return has(text, "</s>") ? SLM_CHAT_FALCON3 : SLM_CHAT_GLMEDGE;
    if (has(text, "<|user|>") && has(text, "<|endoftext|>")) return SLM_CHAT_ZEPHYR;
    if (has(text, "bos_token + message['role']")) return SLM_CHAT_MONARCH;
    if (has(text, "<start_of_turn>")) return SLM_CHAT_GEMMA;
    if (has(text, "'\\n\\nAssistant: ' + eos_token")) return SLM_CHAT_ORION;
    if (has(text, "GPT4 Correct ")) return SLM_CHAT_OPENCHAT;
    if (has(text, "USER: ") && has(text, "ASSISTANT: "))
        return has(text, "SYSTEM: ") ? SLM_CHAT_VICUNA_ORCA : SLM_CHAT_VICUNA;
    if (has(text, "### Instruction:") && has(text, "<|EOT|>")) return SLM_CHAT_DEEPSEEK;
    if (has(text, "<|START_OF_TURN_TOKEN|>") && has(text, "<|USER_TOKEN|>")) return SLM_CHAT_COMMAND_R;
    if (has(text, "<|start_header_id|>") && has(text, "<|end_header_id|>")) return SLM_CHAT_LLAMA3;
    if (has(text, "[gMASK]sop")) return SLM_CHAT_CHATGLM3;
    if (has(text, "[gMASK]<sop>")) return SLM_CHAT_CHATGLM4;
    if (has(text, "<\xe7\x94\xa8\xe6\x88\xb7>")) return SLM_CHAT_MINICPM; /* "<用户>" */
    if (has(text, "'Assistant: ' + message['content'] + eos_token")) return SLM_CHAT_DEEPSEEK2;
    if (has(text, "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>") && has(text, "<\xef\xbd\x9c" "User\xef\xbd\x9c>") &&
        has(text, "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"))
        return SLM_CHAT_DEEPSEEK3;
    if (has(text, "[|system|]") && has(text, "[|assistant|]") && has(text, "[|endofturn|]")) return SLM_CHAT_EXAONE3;
    if (has(text, "rwkv-world")) return SLM_CHAT_RWKV_WORLD;
    if (has(text, "<|start_of_role|>")) return SLM_CHAT_GRANITE;
    if (has(text, "message['role'] + additional_special_tokens[0] + message['content'] + additional_special_tokens[1]"))
        return SLM_CHAT_GIGACHAT;
    if (has(text, "<|role_start|>")) return SLM_CHAT_MEGREZ;
    return SLM_CHAT_UNKNOWN;
}

/* ---------- output helpers ---------- */

static void put(slm_buf *b, const char *s) { slm_buf_puts(b, s); }

/* One turn of most families: fixed text, the message, fixed text. */
static void put_between(slm_buf *b, const char *before, const char *content, const char *after) {
    put(b, before);
    put(b, content);
    put(b, after);
}

/* The C locale's isspace set, as llama.cpp's trim uses; bytes >= 0x80 are never space. */
static bool is_trim_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

static void put_trimmed(slm_buf *b, const char *s) {
    size_t start = 0, end = strlen(s);
    while (start < end && is_trim_space(s[start])) start++;
    while (end > start && is_trim_space(s[end - 1])) end--;
    slm_buf_append(b, s + start, end - start);
}

/* Where the renderers write: the text and the byte ranges that message contents landed in. The
 * renderers only see &out->b (the first member); put_content* record the ranges through it. */
typedef struct chat_out {
    slm_buf b;
    slm_text_span *spans;
    size_t n_spans, cap_spans;
    bool oom;
} chat_out;

static void record_content(slm_buf *b, size_t start) {
    chat_out *o = (chat_out *)b;
    if (b->oom || b->len == start) return;
    if (!slm_grow((void **)&o->spans, &o->cap_spans, o->n_spans + 1, sizeof *o->spans, 16)) {
        o->oom = true;
        return;
    }
    o->spans[o->n_spans++] = (slm_text_span){start, b->len - start};
}

/* Message content: text of the conversation, never the template's own markers. */
static void put_content(slm_buf *b, const char *s) {
    size_t start = b->len;
    put(b, s);
    record_content(b, start);
}

static void put_content_trimmed(slm_buf *b, const char *s) {
    size_t start = b->len;
    put_trimmed(b, s);
    record_content(b, start);
}

static void put_turn(slm_buf *b, const char *before, const char *content, const char *after) {
    put(b, before);
    put_content(b, content);
    put(b, after);
}

static bool is_trimmed_empty(const char *s) {
    for (; *s; s++)
        if (!is_trim_space(*s)) return false;
    return true;
}

/* ---------- renderers ---------- */

enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };

typedef struct {
    enum role role;
    const char *role_name;
    const char *content;
} chat_msg;

static void render_llama2(slm_buf *b, enum slm_chat_template t, const chat_msg *m, size_t n) {
    bool system_block = t != SLM_CHAT_LLAMA2;
    bool bos_inside_history = t == SLM_CHAT_LLAMA2_SYS_BOS;
    bool strip = t == SLM_CHAT_LLAMA2_SYS_STRIP;
    bool inside_turn = true; /* the opening [INST] is written up front, without BOS */
    put(b, "[INST] ");
    for (size_t i = 0; i < n; i++) {
        if (!inside_turn) {
            inside_turn = true;
            put(b, bos_inside_history ? "<s>[INST] " : "[INST] ");
        }
        void (*content)(slm_buf *, const char *) = strip ? put_content_trimmed : put_content;
        if (m[i].role == ROLE_SYSTEM) {
            if (system_block) {
                put(b, "<<SYS>>\n");
                content(b, m[i].content);
                put(b, "\n<</SYS>>\n\n");
            } else {
                content(b, m[i].content);
                put(b, "\n");
            }
        } else if (m[i].role == ROLE_USER) {
            content(b, m[i].content);
            put(b, " [/INST]");
        } else {
            content(b, m[i].content);
            put(b, "</s>");
            inside_turn = false;
        }
    }
}

static void render_mistral(slm_buf *b, enum slm_chat_template t, const chat_msg *m, size_t n) {
    if (t == SLM_CHAT_MISTRAL_V7) {
        for (size_t i = 0; i < n; i++) {
            /* chat/tools.c's Mistral tool turns (see below) */
            const char *c = m[i].content, *tools_end = strstr(c, "[/AVAILABLE_TOOLS]");
            if (m[i].role == ROLE_USER && !strncmp(c, "[AVAILABLE_TOOLS]", 17) && tools_end) {
                size_t start = b->len, block = (size_t)(tools_end - c) + 18;
                slm_buf_append(b, c, block);
                record_content(b, start);
                put_turn(b, "[INST] ", c + block, "[/INST]");
            } else if ((m[i].role == ROLE_USER && !strncmp(c, "[TOOL_RESULTS]", 14)) ||
                       (m[i].role == ROLE_ASSISTANT && !strncmp(c, "[TOOL_CALLS]", 12))) {
                put_content(b, c);
                if (m[i].role == ROLE_ASSISTANT) put(b, "</s>");
            } else if (m[i].role == ROLE_SYSTEM) {
                put_turn(b, "[SYSTEM_PROMPT] ", m[i].content, "[/SYSTEM_PROMPT]");
            } else if (m[i].role == ROLE_USER) {
                put_turn(b, "[INST] ", m[i].content, "[/INST]");
            } else {
                put_turn(b, " ", m[i].content, "</s>");
            }
        }
        return;
    }
    const char *lead = t == SLM_CHAT_MISTRAL_V1 ? " " : "";
    const char *trail = t == SLM_CHAT_MISTRAL_V3_TEKKEN ? "" : " ";
    bool trim_assistant = t == SLM_CHAT_MISTRAL_V3;
    bool inside_turn = false;
    for (size_t i = 0; i < n; i++) {
        /* The tool messages of chat/tools.c's Mistral format, laid out as the v3 template does: the
         * tools block before its user turn's [INST], results outside [INST], calls without the
         * leading space. They stay message content (their markers are text, never control tokens). */
        const char *c = m[i].content;
        /* a system message right before the tools' user turn goes inside that turn's [INST] */
        bool sys_first = m[i].role == ROLE_SYSTEM && i + 1 < n && m[i + 1].role == ROLE_USER &&
                         !strncmp(m[i + 1].content, "[AVAILABLE_TOOLS]", 17);
        const char *u = sys_first ? m[i + 1].content : c;
        const char *tools_end = strstr(u, "[/AVAILABLE_TOOLS]");
        if (t != SLM_CHAT_MISTRAL_V1 && !inside_turn && (m[i].role == ROLE_USER || sys_first) &&
            !strncmp(u, "[AVAILABLE_TOOLS]", 17) && tools_end) {
            size_t start = b->len, block = (size_t)(tools_end - u) + 18;
            slm_buf_append(b, u, block);
            record_content(b, start);
            put(b, "[INST]");
            put(b, trail);
            if (sys_first) {
                put_content(b, c);
                put(b, "\n\n");
                i++;
            }
            put_content(b, u + block);
            put(b, "[/INST]");
            continue;
        }
        if (t != SLM_CHAT_MISTRAL_V1 && m[i].role == ROLE_USER && !strncmp(c, "[TOOL_RESULTS]", 14)) {
            put_content(b, c);
            inside_turn = true; /* the answer follows directly, as after [/INST] */
            continue;
        }
        if (t != SLM_CHAT_MISTRAL_V1 && m[i].role == ROLE_ASSISTANT && !strncmp(c, "[TOOL_CALLS]", 12)) {
            put_content(b, c);
            put(b, "</s>");
            inside_turn = false;
            continue;
        }
        if (!inside_turn) {
            put(b, lead);
            put(b, "[INST]");
            put(b, trail);
            inside_turn = true;
        }
        if (m[i].role == ROLE_SYSTEM) {
            put_content(b, m[i].content);
            put(b, "\n\n");
        } else if (m[i].role == ROLE_USER) {
            put_content(b, m[i].content);
            put(b, lead);
            put(b, "[/INST]");
        } else {
            put(b, trail);
            (trim_assistant ? put_content_trimmed : put_content)(b, m[i].content);
            put(b, "</s>");
            inside_turn = false;
        }
    }
}

/* Families whose every turn is prefix + role + infix + content + suffix, with a fixed generation prompt. */
typedef struct {
    const char *prefix, *infix, *suffix, *generation_prompt;
    bool trim;
} uniform_format;

static void render_uniform(slm_buf *b, const uniform_format *f, const chat_msg *m, size_t n, bool add_gen) {
    for (size_t i = 0; i < n; i++) {
        put(b, f->prefix);
        put(b, m[i].role_name);
        put(b, f->infix);
        (f->trim ? put_content_trimmed : put_content)(b, m[i].content);
        put(b, f->suffix);
    }
    if (add_gen) put(b, f->generation_prompt);
}

/* Families with one fixed prefix/suffix per role. */
typedef struct {
    const char *prefix[3], *suffix[3], *generation_prompt;
    bool trim;
} per_role_format;

static void render_per_role(slm_buf *b, const per_role_format *f, const chat_msg *m, size_t n, bool add_gen) {
    for (size_t i = 0; i < n; i++) {
        put(b, f->prefix[m[i].role]);
        (f->trim ? put_content_trimmed : put_content)(b, m[i].content);
        put(b, f->suffix[m[i].role]);
    }
    if (add_gen) put(b, f->generation_prompt);
}

static void render_gemma(slm_buf *b, const chat_msg *m, size_t n, bool add_gen) {
    /* Gemma has no system role: the (last) system text opens the next user turn. */
    const char *system_text = NULL;
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == ROLE_SYSTEM) {
            system_text = m[i].content;
            continue;
        }
        bool model_turn = m[i].role == ROLE_ASSISTANT;
        put_between(b, "<start_of_turn>", model_turn ? "model" : m[i].role_name, "\n");
        if (system_text && !is_trimmed_empty(system_text) && !model_turn) {
            put_content_trimmed(b, system_text);
            put(b, "\n\n");
            system_text = NULL;
        }
        put_content_trimmed(b, m[i].content);
        put(b, "<end_of_turn>\n");
    }
    if (add_gen) put(b, "<start_of_turn>model\n");
}

static void render_orion(slm_buf *b, const chat_msg *m, size_t n) {
    const char *system_text = NULL;
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == ROLE_SYSTEM) {
            system_text = m[i].content;
        } else if (m[i].role == ROLE_USER) {
            put(b, "Human: ");
            if (system_text && *system_text) {
                put_content(b, system_text);
                put(b, "\n\n");
                system_text = NULL;
            }
            put_content(b, m[i].content);
            put(b, "\n\nAssistant: </s>");
        } else {
            put_content(b, m[i].content);
            put(b, "</s>");
        }
    }
}

static void render_openchat(slm_buf *b, const chat_msg *m, size_t n, bool add_gen) {
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == ROLE_SYSTEM) {
            put_content(b, m[i].content);
        } else {
            put_between(b, "GPT4 Correct ", m[i].role == ROLE_USER ? "User" : "Assistant", ": ");
            put_content(b, m[i].content);
        }
        put(b, "<|end_of_turn|>");
    }
    if (add_gen) put(b, "GPT4 Correct Assistant:");
}

static void render_monarch(slm_buf *b, const chat_msg *m, size_t n, bool add_gen) {
    for (size_t i = 0; i < n; i++) {
        if (i > 0) put(b, "<s>"); /* the tokenizer adds the first BOS */
        put(b, m[i].role_name);
        put_turn(b, "\n", m[i].content, "</s>\n");
    }
    if (add_gen) put(b, "<s>assistant\n");
}

static void render_minicpm(slm_buf *b, const chat_msg *m, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == ROLE_USER) put(b, "<\xe7\x94\xa8\xe6\x88\xb7>"); /* "<用户>" */
        put_content_trimmed(b, m[i].content);
        if (m[i].role == ROLE_USER) put(b, "<AI>");
    }
}

static void render_rwkv(slm_buf *b, const chat_msg *m, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (m[i].role == ROLE_USER) {
            put_turn(b, "User: ", m[i].content, "\n\nAssistant:");
        } else {
            put_content(b, m[i].content);
            put(b, "\n\n");
        }
    }
}

static void render_gigachat(slm_buf *b, const chat_msg *m, size_t n, bool add_gen) {
    size_t first = 0;
    put(b, "<s>");
    if (n > 0 && m[0].role == ROLE_SYSTEM) {
        put_content(b, m[0].content);
        put(b, "<|message_sep|>");
        first = 1;
    }
    for (size_t i = first; i < n; i++) {
        if (m[i].role == ROLE_USER) {
            put_turn(b, "user<|role_sep|>", m[i].content,
                        "<|message_sep|>available functions<|role_sep|>[]<|message_sep|>");
        } else if (m[i].role == ROLE_ASSISTANT) {
            put_turn(b, "assistant<|role_sep|>", m[i].content, "<|message_sep|>");
        }
    }
    if (add_gen) put(b, "assistant<|role_sep|>");
}

#define DS_END "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define DS_USER "<\xef\xbd\x9c" "User\xef\xbd\x9c>"
#define DS_ASSISTANT "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"

static void render(slm_buf *b, enum slm_chat_template t, const chat_msg *m, size_t n, bool add_gen) {
    static const uniform_format chatml = {"<|im_start|>", "\n", "<|im_end|>\n", "<|im_start|>assistant\n", false};
    static const uniform_format llama3 = {"<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>",
                                          "<|start_header_id|>assistant<|end_header_id|>\n\n", true};
    static const uniform_format phi3 = {"<|", "|>\n", "<|end|>\n", "<|assistant|>\n", false};
    static const uniform_format phi4 = {"<|im_start|>", "<|im_sep|>", "<|im_end|>", "<|im_start|>assistant<|im_sep|>",
                                        false};
    static const uniform_format falcon3 = {"<|", "|>\n", "\n", "<|assistant|>\n", false};
    static const uniform_format zephyr = {"<|", "|>\n", "<|endoftext|>\n", "<|assistant|>\n", false};
    static const uniform_format glm = {"<|", "|>\n", "", "<|assistant|>", false};
    static const uniform_format tinyllama = {"<|", "|>\n", "</s>\n", "<|assistant|>\n", false};
    static const uniform_format chatglm3 = {"<|", "|>\n ", "", "<|assistant|>", false};
    static const uniform_format granite = {"<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>\n",
                                           "<|start_of_role|>assistant<|end_of_role|>\n", false};
    static const uniform_format megrez = {"<|role_start|>", "<|role_end|>", "<|turn_end|>",
                                          "<|role_start|>assistant<|role_end|>", false};
    static const per_role_format vicuna = {
        {"", "USER: ", "ASSISTANT: "}, {"\n\n", "\n", "</s>\n"}, "ASSISTANT:", false};
    static const per_role_format vicuna_orca = {
        {"SYSTEM: ", "USER: ", "ASSISTANT: "}, {"\n", "\n", "</s>\n"}, "ASSISTANT:", false};
    static const per_role_format deepseek = {
        {"", "### Instruction:\n", "### Response:\n"}, {"", "\n", "\n<|EOT|>\n"}, "### Response:\n", false};
    static const per_role_format deepseek2 = {
        {"", "User: ", "Assistant: "}, {"\n\n", "\n\n", DS_END}, "Assistant:", false};
    static const per_role_format deepseek3 = {
        {"", DS_USER, DS_ASSISTANT}, {"\n\n", "", DS_END}, DS_ASSISTANT, false};
    static const per_role_format command_r = {{"<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>",
                                               "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>",
                                               "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"},
                                              {"<|END_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>"},
                                              "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
                                              true};
    static const per_role_format exaone3 = {{"[|system|]", "[|user|]", "[|assistant|]"},
                                            {"[|endofturn|]\n", "\n", "[|endofturn|]\n"},
                                            "[|assistant|]",
                                            true};
    switch (t) {
    case SLM_CHAT_CHATML: render_uniform(b, &chatml, m, n, add_gen); break;
    case SLM_CHAT_LLAMA3: render_uniform(b, &llama3, m, n, add_gen); break;
    case SLM_CHAT_LLAMA2:
    case SLM_CHAT_LLAMA2_SYS:
    case SLM_CHAT_LLAMA2_SYS_BOS:
    case SLM_CHAT_LLAMA2_SYS_STRIP: render_llama2(b, t, m, n); break;
    case SLM_CHAT_MISTRAL_V1:
    case SLM_CHAT_MISTRAL_V3:
    case SLM_CHAT_MISTRAL_V3_TEKKEN:
    case SLM_CHAT_MISTRAL_V7: render_mistral(b, t, m, n); break;
    case SLM_CHAT_PHI3: render_uniform(b, &phi3, m, n, add_gen); break;
    case SLM_CHAT_PHI4: render_uniform(b, &phi4, m, n, add_gen); break;
    case SLM_CHAT_GEMMA: render_gemma(b, m, n, add_gen); break;
    case SLM_CHAT_ZEPHYR: render_uniform(b, &zephyr, m, n, add_gen); break;
    case SLM_CHAT_FALCON3: render_uniform(b, &falcon3, m, n, add_gen); break;
    case SLM_CHAT_MONARCH: render_monarch(b, m, n, add_gen); break;
    case SLM_CHAT_ORION: render_orion(b, m, n); break;
    case SLM_CHAT_OPENCHAT: render_openchat(b, m, n, add_gen); break;
    case SLM_CHAT_VICUNA: render_per_role(b, &vicuna, m, n, add_gen); break;
    case SLM_CHAT_VICUNA_ORCA: render_per_role(b, &vicuna_orca, m, n, add_gen); break;
    case SLM_CHAT_DEEPSEEK: render_per_role(b, &deepseek, m, n, add_gen); break;
    case SLM_CHAT_DEEPSEEK2: render_per_role(b, &deepseek2, m, n, add_gen); break;
    case SLM_CHAT_DEEPSEEK3: render_per_role(b, &deepseek3, m, n, add_gen); break;
    case SLM_CHAT_COMMAND_R: render_per_role(b, &command_r, m, n, add_gen); break;
    case SLM_CHAT_CHATGLM3:
        put(b, "[gMASK]sop");
        render_uniform(b, &chatglm3, m, n, add_gen);
        break;
    case SLM_CHAT_CHATGLM4:
        put(b, "[gMASK]<sop>");
        render_uniform(b, &glm, m, n, add_gen);
        break;
    case SLM_CHAT_GLMEDGE: render_uniform(b, &glm, m, n, add_gen); break;
    case SLM_CHAT_TINYLLAMA: render_uniform(b, &tinyllama, m, n, add_gen); break;
    case SLM_CHAT_MINICPM: render_minicpm(b, m, n); break;
    case SLM_CHAT_EXAONE3: render_per_role(b, &exaone3, m, n, add_gen); break;
    case SLM_CHAT_RWKV_WORLD: render_rwkv(b, m, n); break;
    case SLM_CHAT_GRANITE: render_uniform(b, &granite, m, n, add_gen); break;
    case SLM_CHAT_GIGACHAT: render_gigachat(b, m, n, add_gen); break;
    case SLM_CHAT_MEGREZ: render_uniform(b, &megrez, m, n, add_gen); break;
    default: break;
    }
}

int slm_chat_apply(enum slm_chat_template t, const slm_chat_message *msgs, size_t n_msgs, bool add_generation_prompt,
                   char **out, char *err, size_t err_len) {
    return slm_chat_apply_spans(t, msgs, n_msgs, add_generation_prompt, out, NULL, NULL, err, err_len);
}

int slm_chat_apply_spans(enum slm_chat_template t, const slm_chat_message *msgs, size_t n_msgs,
                         bool add_generation_prompt, char **out, slm_text_span **spans, size_t *n_spans, char *err,
                         size_t err_len) {
    if (spans) *spans = NULL;
    if (n_spans) *n_spans = 0;
    if (!out) return slm_err(err, err_len, "chat: no output pointer");
    *out = NULL;
    if (!slm_chat_template_name(t))
        return slm_err(err, err_len, "chat: unknown template; known templates: %s", slm_chat_known_names());
    if (n_msgs > 0 && !msgs) return slm_err(err, err_len, "chat: %zu messages but no message array", n_msgs);
    if (n_msgs > SIZE_MAX / sizeof(chat_msg)) return slm_err(err, err_len, "chat: too many messages (%zu)", n_msgs);

    chat_msg *m = malloc((n_msgs ? n_msgs : 1) * sizeof *m);
    if (!m) return slm_err(err, err_len, "chat: out of memory for %zu messages", n_msgs);
    for (size_t i = 0; i < n_msgs; i++) {
        const char *role = msgs[i].role;
        if (!role) {
            free(m);
            return slm_err(err, err_len, "chat: message %zu has no role", i);
        }
        if (strcmp(role, "system") == 0) m[i].role = ROLE_SYSTEM;
        else if (strcmp(role, "user") == 0) m[i].role = ROLE_USER;
        else if (strcmp(role, "assistant") == 0) m[i].role = ROLE_ASSISTANT;
        else {
            free(m);
            return slm_err(err, err_len, "chat: message %zu has role '%.64s'; expected system, user or assistant", i,
                           role);
        }
        if (!msgs[i].content) {
            free(m);
            return slm_err(err, err_len, "chat: message %zu (%s) has no content", i, role);
        }
        m[i].role_name = role;
        m[i].content = msgs[i].content;
    }

    chat_out o = {0};
    render(&o.b, t, m, n_msgs, add_generation_prompt);
    free(m);
    /* an empty conversation still yields a valid empty string */
    *out = slm_buf_take(&o.b);
    if (!*out || o.oom) {
        free(*out);
        *out = NULL;
        free(o.spans);
        return slm_err(err, err_len, "chat: out of memory rendering %zu messages", n_msgs);
    }
    if (spans) *spans = o.spans;
    else free(o.spans);
    if (n_spans) *n_spans = o.n_spans;
    return 0;
}
