/* slm — small language models, run privately.
 *
 * The public API used by the CLI, the server and the tests. Everything returns a status
 * (0 = success, negative = failure) and, on failure, fills the caller's `err` buffer with one
 * readable line. Nothing here prints.
 *
 * Typical use:
 *   slm_model *m; slm_model_load("m.gguf", NULL, &m, err, sizeof err);
 *   slm_context *c; slm_context_new(m, &cparams, &c, err, sizeof err);
 *   slm_tokenize(...); slm_decode(c, &batch, err, sizeof err); slm_logits(c, i); slm_sampler_sample(...)
 */
#ifndef SLM_H
#define SLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLM_VERSION "0.1.0"

typedef int32_t slm_token;
typedef struct slm_model slm_model;
typedef struct slm_context slm_context;
typedef struct slm_sampler slm_sampler;

/* ---------- model ---------- */

typedef struct slm_model_params {
    bool vocab_only; /* load only metadata and tokenizer (works on 0-tensor vocab GGUFs) */
} slm_model_params;

/* Maps and validates a GGUF file; NULL params = defaults. */
int slm_model_load(const char *path, const slm_model_params *params, slm_model **out, char *err, size_t err_len);
/* Unmaps the file and frees everything the model owns. */
void slm_model_free(slm_model *model);

int slm_model_n_vocab(const slm_model *model);
/* Context length the model was trained with. */
int slm_model_n_ctx_train(const slm_model *model);
/* Width of the hidden state (and of embeddings). */
int slm_model_n_embd(const slm_model *model);
/* Architecture name from general.architecture, e.g. "llama". */
const char *slm_model_arch(const slm_model *model);
/* Short description like "llama 135M Q8_0". */
const char *slm_model_desc(const slm_model *model);
/* Total bytes of tensor data. */
uint64_t slm_model_size_bytes(const slm_model *model);
/* Metadata value rendered as text (arrays abbreviated); NULL if the key is absent. Valid while the model lives. */
const char *slm_model_meta(const slm_model *model, const char *key);
/* Prints metadata and the tensor table, human readable, to `fp` (a FILE*). */
void slm_model_print_info(const slm_model *model, void *fp);
/* True for encoder-only embedding models (bert, nomic-bert): no logits; decode whole inputs and call slm_embedding. */
bool slm_model_is_embedding(const slm_model *model);

/* ---------- vocabulary ---------- */

slm_token slm_token_bos(const slm_model *model); /* -1 if none */
slm_token slm_token_eos(const slm_model *model); /* -1 if none */
/* True for every end-of-generation token (eos, eot, <|im_end|>, ...). */
bool slm_token_is_eog(const slm_model *model, slm_token token);
bool slm_token_is_control(const slm_model *model, slm_token token);
/* Whether tokenizing with add_special adds BOS / EOS. */
bool slm_vocab_add_bos(const slm_model *model);

/* What slm_tokenize returns on invalid input (err filled); any other negative value is the
 * negated number of tokens needed. */
#define SLM_TOKENIZE_ERROR INT32_MIN

/* Tokenizes `len` bytes of `text`. Returns the number of tokens written to `out` (at most `cap`),
 * or, if `cap` is too small, the negated number needed; SLM_TOKENIZE_ERROR with `err` filled on
 * invalid input. add_special: BOS/EOS (or CLS/SEP) as the vocab asks; parse_special:
 * control-token texts like "<|im_start|>" become their ids. */
int slm_tokenize(const slm_model *model, const char *text, size_t len, bool add_special, bool parse_special,
                 slm_token *out, int cap, char *err, size_t err_len);

/* Writes the bytes of one token to `buf` (no NUL). Returns the length, or the negated length needed
 * if `cap` is too small. render_special: control tokens are rendered as their text, else as "". */
int slm_token_to_piece(const slm_model *model, slm_token token, bool render_special, char *buf, int cap);

/* Detokenizes a whole sequence the way llama.cpp's llama_detokenize does (incl. SPM leading-space
 * handling). Returns length or negated needed length. */
int slm_detokenize(const slm_model *model, const slm_token *tokens, int n, bool remove_special,
                   bool render_special, char *buf, int cap);

/* ---------- chat templates ---------- */

typedef struct slm_chat_message {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} slm_chat_message;

/* Renders messages with the model's template (or `template_name` if not NULL, e.g. "chatml").
 * *out is malloc'd and NUL-terminated. An unknown name or unrecognised template is an error
 * listing the known names. */
int slm_chat_render(const slm_model *model, const char *template_name, const slm_chat_message *msgs, size_t n_msgs,
                    bool add_generation_prompt, char **out, char *err, size_t err_len);
/* Comma-separated list of template names `slm_chat_render` accepts. */
const char *slm_chat_template_names(void);

/* ---------- context: KV cache and forward pass ---------- */

typedef struct slm_context_params {
    int n_ctx;        /* positions per sequence; 0 = min(model's n_ctx_train, 4096) */
    int n_seq;        /* independent sequences (server slots) sharing each forward pass; 0 = 1 */
    int n_batch;      /* max tokens in one slm_decode call; 0 = 512 */
    int n_threads;    /* 0 = number of online CPUs */
    bool exact;       /* the f32 reference path: scalar dequantize, f32 activations, f32 KV cache */
    bool embeddings;  /* keep the final hidden states so slm_embedding works */
} slm_context_params;

/* Default parameters (all zeros means defaults, too). */
slm_context_params slm_context_default_params(void);
/* Allocates the KV cache and all work buffers. Decoding allocates nothing, except that the logits
 * buffer grows once when a batch first asks for more than min(n_seq, n_batch) rows of logits. */
int slm_context_new(slm_model *model, const slm_context_params *params, slm_context **out, char *err, size_t err_len);
void slm_context_free(slm_context *ctx);
/* The model the context runs. */
const slm_model *slm_context_model(const slm_context *ctx);
/* Positions available per sequence. */
int slm_context_n_ctx(const slm_context *ctx);
int slm_context_n_seq(const slm_context *ctx);
int slm_context_n_batch(const slm_context *ctx);
/* Bytes of the KV cache (keys and values, all layers and sequences); sliding-window layers hold only their window. */
size_t slm_context_kv_bytes(const slm_context *ctx);

/* One forward pass over a batch of tokens, each with its position and sequence. Positions of a
 * sequence must continue what its KV cache holds (pos == slm_kv_seq_len). Past the context is an error. */
typedef struct slm_batch {
    int n_tokens;
    const slm_token *tokens;
    const int32_t *pos;      /* NULL = each token continues its own sequence (its KV length + earlier batch tokens) */
    const int32_t *seq_id;   /* NULL = all sequence 0 */
    const int8_t *logits;    /* which tokens produce logits; NULL = only the last */
} slm_batch;

int slm_decode(slm_context *ctx, const slm_batch *batch, char *err, size_t err_len);
/* Logits (n_vocab floats) of the i-th batch token that asked for logits, in batch order
 * (i counts only tokens with logits set). NULL if out of range. Valid until the next decode. */
const float *slm_logits(const slm_context *ctx, int i);
/* Pooled (mean over the batch tokens of `seq`), L2-normalised hidden state of the last decode;
 * requires params.embeddings. Writes n_embd floats. */
int slm_embedding(const slm_context *ctx, int seq, float *out, char *err, size_t err_len);

/* Number of positions held in the KV cache of sequence `seq`. */
int slm_kv_seq_len(const slm_context *ctx, int seq);
/* Drops positions [p0, end) of sequence `seq` (p0 = 0 clears it). */
void slm_kv_seq_truncate(slm_context *ctx, int seq, int p0);
/* The tokens behind the positions of sequence `seq` (slm_kv_seq_len of them). */
const slm_token *slm_kv_seq_tokens(const slm_context *ctx, int seq);
/* Copies the first n positions of sequence src into dst (prefix reuse); dst is truncated first. */
void slm_kv_seq_copy(slm_context *ctx, int dst, int src, int n);

/* Sees the input of every weight matmul of a decoder model's forward pass (what `slm imatrix`
 * collects): the weight's GGUF tensor name ("blk.0.attn_q.weight"; a fused matrix under its own
 * name, e.g. attn_qkv; the output matrix as "output.weight", or "token_embd.weight" when tied) and
 * its n_tokens input rows of n_cols floats (row-major), before the product. q, k and v see the same
 * rows. Called on the decoding thread; x is valid only during the call. Encoder-only models are
 * not observed. */
typedef void (*slm_matmul_observer)(void *user, const char *weight_name, const float *x, int n_tokens, int n_cols);
/* Installs (fn != NULL) or removes (NULL, the default: no cost) the observer. */
void slm_context_set_matmul_observer(slm_context *ctx, slm_matmul_observer fn, void *user);

/* ---------- sampling ---------- */

typedef struct slm_logit_bias {
    slm_token token;
    float bias; /* -INFINITY bans the token */
} slm_logit_bias;

typedef struct slm_sampler_params {
    float temperature;       /* <= 0 → greedy (argmax, lowest id on ties) */
    int top_k;               /* <= 0 → off */
    float top_p;             /* >= 1 → off */
    float min_p;             /* <= 0 → off */
    float repeat_penalty;    /* 1 → off; llama.cpp semantics */
    float frequency_penalty; /* 0 → off; OpenAI semantics */
    float presence_penalty;  /* 0 → off */
    int penalty_last_n;      /* window of recent tokens for penalties; 0 = 64, -1 = whole history */
    uint64_t seed;           /* same seed → same tokens */
    const slm_logit_bias *logit_bias;
    int n_logit_bias;
} slm_sampler_params;

slm_sampler_params slm_sampler_default_params(void);
/* Creates a sampler; an invalid parameter, or a logit_bias banning every token ("no token is possible"), is an error. */
int slm_sampler_new(const slm_model *model, const slm_sampler_params *params, slm_sampler **out, char *err, size_t err_len);
void slm_sampler_free(slm_sampler *s);
/* Picks the next token from `logits` (n_vocab floats, not modified). */
slm_token slm_sampler_sample(slm_sampler *s, const float *logits);
/* Returned by slm_sampler_sample when no token is possible (logit_bias, the banned list and the
 * grammar forbid every token, or every logit is -inf/NaN; also for NULL arguments): a client error. */
#define SLM_NO_TOKEN (-1)
/* Records a generated token: penalty history and grammar state advance. */
void slm_sampler_accept(slm_sampler *s, slm_token token);
/* Records a prompt token: penalty history only (the grammar constrains the output, not the prompt). */
void slm_sampler_accept_prompt(slm_sampler *s, slm_token token);
void slm_sampler_reset(slm_sampler *s);
/* Tokens that may not be sampled until changed again (e.g. end-of-generation during min_tokens /
 * ignore_eos); ids is borrowed and must outlive its use. NULL/0 lifts the ban. A list holding an id
 * outside the vocabulary is ignored as a whole. */
void slm_sampler_set_banned(slm_sampler *s, const slm_token *ids, int n);

/* ---------- grammar constraint ---------- */

typedef struct slm_grammar slm_grammar;

/* Compiles a GBNF-style grammar (docs/grammar.md) for this model's vocabulary; a syntax error
 * gives "line L, column C: ..." in err. */
int slm_grammar_compile(const slm_model *model, const char *gbnf, slm_grammar **out, char *err, size_t err_len);
/* Compiles a JSON Schema (text) to a grammar; an unsupported keyword is an error naming it. */
int slm_grammar_from_json_schema(const slm_model *model, const char *schema_json, slm_grammar **out, char *err,
                                 size_t err_len);
void slm_grammar_free(slm_grammar *g);
/* Constrains the sampler with `g` (borrowed; NULL removes it). The grammar's parse state restarts. */
void slm_sampler_set_grammar(slm_sampler *s, slm_grammar *g);
/* True when the grammar has reached an accepting state (the output is complete). */
bool slm_sampler_grammar_done(const slm_sampler *s);

/* Return codes of the *_limited grammar compilers (the plain ones return them too): */
#define SLM_GRAMMAR_INVALID (-1)   /* the grammar or schema is wrong or unsupported (err says what and where) */
#define SLM_GRAMMAR_TOO_LARGE (-2) /* a size limit or the deadline was exceeded (err names the limit) */
#define SLM_GRAMMAR_CANCELLED (-3) /* the cancel callback asked to stop */

/* Bounds on one grammar compile, so hostile input costs bounded time and memory. Zero fields take
 * the defaults (those of slm_grammar_compile: 1048576 rules, 2097152 alternatives, 4194304
 * elements, no deadline). Rules and elements count after desugaring: x{0,1000} is 1000 rules. */
typedef struct slm_grammar_limits {
    int max_rules;        /* rules, including those generated for groups and repetitions */
    int max_alternatives; /* alternatives over all rules */
    int max_elements;     /* terminals and rule references after expanding repetitions (at most 4194304) */
    double deadline;      /* give up at this CLOCK_MONOTONIC time in seconds (see slm_grammar_now); 0 = none */
    bool (*cancel)(void *user); /* polled about every millisecond while compiling; true stops it; NULL = never */
    void *cancel_user;          /* passed to cancel */
} slm_grammar_limits;

/* slm_grammar_compile within `limits` (NULL = defaults); returns 0 or one of the SLM_GRAMMAR_* codes. */
int slm_grammar_compile_limited(const slm_model *model, const char *gbnf, const slm_grammar_limits *limits,
                                slm_grammar **out, char *err, size_t err_len);
/* slm_grammar_from_json_schema within `limits` (NULL = defaults); returns 0 or one of the SLM_GRAMMAR_* codes. */
int slm_grammar_from_json_schema_limited(const slm_model *model, const char *schema_json,
                                         const slm_grammar_limits *limits, slm_grammar **out, char *err,
                                         size_t err_len);
/* The clock slm_grammar_limits.deadline is read against: CLOCK_MONOTONIC in seconds. */
double slm_grammar_now(void);

/* ---------- JSON validation ---------- */

/* 0 if `text` (len bytes) is one JSON value valid against `schema_json` (the subset of docs/grammar.md;
 * {"type":"json_object"} accepts any object), else -1 with err naming the first violation and where,
 * e.g. "$.items[2].price: 12.5 is above the maximum 10". */
int slm_json_validate(const char *schema_json, const char *text, size_t len, char *err, size_t err_len);
/* Copies `text` (e.g. a JSON parser's error message, which quotes raw input) into buf with control
 * characters written as \n, \t or \xHH so it stays one line, and returns buf. */
const char *slm_json_error_line(const char *text, char *buf, size_t cap);

/* ---------- generation loop (one sequence) ---------- */

/* Receives generated text as it becomes final: whole UTF-8 characters only, never a prefix of a
 * stop string. Return false to stop generating. */
typedef bool (*slm_text_fn)(void *user, const char *text, size_t len);

typedef struct slm_generate_params {
    int max_tokens;          /* <= 0: until EOG or the context is full (then finish "length") */
    int min_tokens;          /* EOG is suppressed before this many tokens */
    bool ignore_eos;
    const char *const *stop; /* stop strings; the matched stop string is not emitted */
    int n_stop;
    int seq;                 /* sequence of the context to use; its KV is reused if it holds a prefix of the prompt */
} slm_generate_params;

typedef struct slm_generate_result {
    int n_prompt;            /* prompt tokens */
    int n_prompt_cached;     /* of which reused from the KV cache */
    int n_generated;
    const char *finish_reason; /* "stop" (EOG or stop string), "length", "cancelled" */
    double prompt_ms, gen_ms;
} slm_generate_result;

/* Feeds the prompt, then samples until EOG, a stop string, max_tokens or the callback says stop.
 * A prompt that does not fit the context is an error, never truncated. */
int slm_generate(slm_context *ctx, slm_sampler *sampler, const slm_token *prompt, int n_prompt,
                 const slm_generate_params *params, slm_text_fn on_text, void *user, slm_generate_result *result,
                 char *err, size_t err_len);

/* ---------- LoRA adapters (src/model/lora.c) ----------
 * llama.cpp's GGUF adapters (general.type "adapter", adapter.type "lora", adapter.lora.alpha,
 * <weight>.lora_a [n_in, rank] / <weight>.lora_b [rank, n_out]). Each sequence of a context applies
 * its own list: W x + s·B·(A·x) per adapter, s = scale × alpha / rank (scale alone when alpha is 0). */

typedef struct slm_lora slm_lora;

/* Loads and validates an adapter against `model` (architecture, every tensor's shape and values);
 * a wrong, truncated or hostile file is one error line. The adapter keeps a pointer to the model:
 * free it before the model. Reference counted (starts at 1). */
int slm_lora_load(const slm_model *model, const char *path, slm_lora **out, char *err, size_t err_len);
/* Prints an adapter's base architecture, alpha, rank and tensor table to fp (a FILE *), read from
 * the file alone; -1 with err when it is not a LoRA adapter GGUF. */
int slm_lora_print_info(const char *path, void *fp, char *err, size_t err_len);
void slm_lora_retain(slm_lora *lora);
/* Drops a reference; the last one frees the adapter. */
void slm_lora_free(slm_lora *lora);
/* The file name without directory and ".gguf". */
const char *slm_lora_name(const slm_lora *lora);
float slm_lora_alpha(const slm_lora *lora);
/* The largest rank of its pairs. */
int slm_lora_rank(const slm_lora *lora);
/* Adapted matrices. */
int slm_lora_n_pairs(const slm_lora *lora);
const slm_model *slm_lora_model(const slm_lora *lora);

#define SLM_LORA_MAX 8 /* adapters one sequence may apply at once */

typedef struct slm_lora_use {
    slm_lora *lora;
    float scale; /* the user scale (llama.cpp's --lora-scaled); 0 = not applied */
} slm_lora_use;

/* The adapters sequence `seq` applies from the next decode on (n = 0: none). Borrowed: they must
 * live as long as the sequence decodes with them. The KV cache is not touched: positions computed
 * under other adapters stay as they were (truncate them when that matters). */
int slm_context_set_lora(slm_context *ctx, int seq, const slm_lora_use *uses, int n, char *err, size_t err_len);
/* True when `seq` applies exactly these adapters with these scales (entries with scale 0 ignored):
 * its cached positions are reusable for a request that asks for them. */
bool slm_context_lora_matches(const slm_context *ctx, int seq, const slm_lora_use *uses, int n);

/* `slm lora merge`: writes base + Σ scale_i × alpha_i / rank_i × B_i·A_i (sums in double) to out_path:
 * every key/value and tensor of the base as it was, each adapted matrix in its own type (quantized
 * ones re-quantized with the reference quantizer; F32 where slm has no quantizer for the type). The
 * write is atomic (temporary file, rename). `note` (may be NULL) gets one line saying what was done. */
int slm_lora_merge(const char *base_path, const char *const *adapter_paths, const float *scales, int n,
                   const char *out_path, char *note, size_t note_len, char *err, size_t err_len);

/* ---------- misc ---------- */

/* Name of the kernel path chosen at start-up: "scalar", "avx2", "avx512", "amx". */
const char *slm_isa_name(void);

/* ---------- untrusted text inside prompts ---------- */

/* A byte range [off, off + len) of a text. */
typedef struct slm_text_span {
    size_t off, len;
} slm_text_span;

/* slm_tokenize, except that inside the `plain` byte ranges (ascending, non-overlapping) control-token
 * texts are plain text even with parse_special, as with parse_special false. */
int slm_tokenize_plain(const slm_model *model, const char *text, size_t len, bool add_special, bool parse_special,
                       const slm_text_span *plain, size_t n_plain, slm_token *out, int cap, char *err, size_t err_len);
/* slm_chat_render that also returns where each message's content landed in *out: *spans (malloc'd,
 * ascending, *n_spans of them; NULL when there are none). */
int slm_chat_render_spans(const slm_model *model, const char *template_name, const slm_chat_message *msgs,
                          size_t n_msgs, bool add_generation_prompt, char **out, slm_text_span **spans, size_t *n_spans,
                          char *err, size_t err_len);
/* Renders the messages and tokenizes the prompt so that only the template's own markers become
 * special tokens: texts like "<|im_end|>" inside message contents stay plain text, so a message
 * cannot forge a turn; benign conversations give the same ids as render + slm_tokenize(parse_special).
 * *out (malloc'd) gets *n_out ids; *rendered_out, if not NULL, the malloc'd rendered text. */
int slm_chat_tokenize(const slm_model *model, const char *template_name, const slm_chat_message *msgs, size_t n_msgs,
                      bool add_generation_prompt, bool add_special, slm_token **out, int *n_out, char **rendered_out,
                      char *err, size_t err_len);
/* Bytes of text above which slm_tokenize certainly yields more than n_tokens tokens, or SIZE_MAX
 * when the vocabulary gives no such guarantee (WordPiece drops whitespace): a caller can refuse an
 * oversize input before reading or tokenizing all of it. */
size_t slm_tokenize_max_bytes(const slm_model *model, bool parse_special, int n_tokens);

/* ========== tool calling (OpenAI "tools"; src/chat/tools.c, docs/server.md "Tools") ==========
 * How a model is told about functions, how its calls look in its output, the grammar that makes
 * every started call a valid one, and the parser that reads calls back (also while streaming). */

/* How calls are written in a model's output. */
typedef enum slm_tool_format {
    SLM_TOOL_FORMAT_GENERIC = 0, /* <tool_call>{"name":..,"arguments":{..}}</tool_call>, tools in the system message */
    SLM_TOOL_FORMAT_HERMES,      /* Qwen2.5 / Hermes: <tool_call>\n{"name": .., "arguments": ..}\n</tool_call> */
    SLM_TOOL_FORMAT_LLAMA3,      /* Llama 3.x: the whole reply is {"name": .., "parameters": {..}} */
    SLM_TOOL_FORMAT_MISTRAL,     /* Mistral v3: [TOOL_CALLS] [{"name": .., "arguments": {..}, "id": "<9 alphanumerics>"}] */
} slm_tool_format;

typedef struct slm_tool {
    const char *name;        /* [A-Za-z0-9_-]{1,64} */
    const char *description; /* NULL = none */
    const char *parameters;  /* JSON Schema text of the arguments object; NULL = any object */
} slm_tool;

/* One call. Strings returned by the parser are malloc'd (slm_tool_calls_free). */
typedef struct slm_tool_call {
    char *id;        /* NULL when the format carries none */
    char *name;
    char *arguments; /* compact JSON object text */
} slm_tool_call;

/* A conversation message as tool calling sees it (roles system/user/assistant/tool). */
typedef struct slm_tool_message {
    const char *role;
    const char *content;          /* never NULL ("" for an assistant turn that only calls) */
    const slm_tool_call *calls;   /* assistant: the calls it made */
    size_t n_calls;
    const char *tool_name;        /* tool: the function whose result this is (NULL if unknown) */
} slm_tool_message;

/* Format of the model's template (or of `template_name`): Hermes for Qwen2 models and templates
 * that mention <tool_call>, Llama 3 for the llama3 family, generic otherwise. */
slm_tool_format slm_tool_format_for(const slm_model *model, const char *template_name);
const char *slm_tool_format_name(slm_tool_format f);
/* Messages for the ordinary chat template: the tools described in the (first) system message,
 * assistant calls written in the format, consecutive tool results merged into one user turn.
 * out->msgs may point at the input contents (keep them alive); free with slm_tool_prompt_free. */
typedef struct slm_tool_prompt {
    slm_chat_message *msgs;
    size_t n;
    char **owned;
    size_t n_owned;
} slm_tool_prompt;
int slm_tool_prompt_build(slm_tool_format f, const slm_tool *tools, size_t n_tools, const slm_tool_message *msgs,
                          size_t n_msgs, slm_tool_prompt *out, char *err, size_t err_len);
void slm_tool_prompt_free(slm_tool_prompt *p);

/* How much of the output is a call. */
typedef enum slm_tool_mode {
    SLM_TOOL_MODE_AUTO = 0, /* free text without the trigger, then optionally calls (text may be empty) */
    SLM_TOOL_MODE_REQUIRED, /* the whole output is calls */
} slm_tool_mode;
#define SLM_TOOL_MAX_PARALLEL 8 /* calls one reply may hold when parallel */

/* GBNF (malloc'd) for the calls: each call's arguments are generated under its tool's JSON Schema
 * (the compiler of slm_grammar_from_json_schema within `limits`). only >= 0 restricts calls to that
 * tool. On failure returns an SLM_GRAMMAR_* code, *bad_tool = the index of the tool whose schema
 * failed (or -1) and err says why. The grammar is open-ended (slm_grammar_set_open_ended) when
 * mode is AUTO or parallel is true. */
int slm_tool_gbnf(slm_tool_format f, const slm_tool *tools, size_t n_tools, slm_tool_mode mode, int only,
                  bool parallel, const slm_grammar_limits *limits, char **gbnf_out, int *bad_tool, char *err,
                  size_t err_len);
/* Marks a grammar open-ended: generation under it stops only when nothing can follow (or at EOG),
 * not as soon as the text is a complete sentence. */
void slm_grammar_set_open_ended(slm_grammar *g, bool on);

/* Incremental parser of generated text: content before the calls, then each call's name and its
 * arguments in pieces as they arrive. */
typedef enum slm_tool_event_kind {
    SLM_TOOL_EV_CONTENT,   /* text: plain reply text */
    SLM_TOOL_EV_CALL,      /* index, text = the function name: a call starts */
    SLM_TOOL_EV_ARGUMENTS, /* index, text = the next piece of that call's arguments JSON */
} slm_tool_event_kind;
typedef bool (*slm_tool_event_fn)(void *user, slm_tool_event_kind kind, int index, const char *text, size_t len);
typedef struct slm_tool_stream slm_tool_stream;
/* The parser needs no allocation: slm_tool_stream_init on slm_tool_stream_size() bytes of
 * malloc'd memory (freed by its owner), or slm_tool_stream_new / slm_tool_stream_free. */
size_t slm_tool_stream_size(void);
slm_tool_stream *slm_tool_stream_init(void *mem, slm_tool_format f);
slm_tool_stream *slm_tool_stream_new(slm_tool_format f);
/* Feeds text; `end` flushes what was held back (a possible start of the trigger). Returns false
 * when a callback did, or memory ran out. */
bool slm_tool_stream_feed(slm_tool_stream *st, const char *text, size_t len, bool end, slm_tool_event_fn fn, void *user);
/* Calls started so far; true when the last one is complete. */
int slm_tool_stream_calls(const slm_tool_stream *st, bool *last_complete);
void slm_tool_stream_free(slm_tool_stream *st);
/* Whole-text parse: *content (malloc'd) and the complete calls (their arguments validated against
 * the tools' schemas). A call that does not parse or validate is an error (-1, err says which). */
int slm_tool_parse(slm_tool_format f, const slm_tool *tools, size_t n_tools, const char *text, size_t len,
                   char **content, slm_tool_call **calls, size_t *n_calls, char *err, size_t err_len);
void slm_tool_calls_free(slm_tool_call *calls, size_t n);

/* ========== end of tool calling ========== */

#ifdef __cplusplus
}
#endif
#endif
