/* Quantization of GGUF models: llama-quantize's file types and per-tensor type choices, written
 * through the GGUF writer (a failed run leaves no file), and importance matrices in llama.cpp's
 * formats. */
#ifndef SLM_QUANT_H
#define SLM_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* File types, numbered as llama.cpp's llama_ftype (stored in general.file_type). */
enum slm_ftype {
    SLM_FTYPE_ALL_F32 = 0,
    SLM_FTYPE_F16 = 1,
    SLM_FTYPE_Q4_0 = 2,
    SLM_FTYPE_Q4_1 = 3,
    SLM_FTYPE_Q8_0 = 7,
    SLM_FTYPE_Q5_0 = 8,
    SLM_FTYPE_Q5_1 = 9,
    SLM_FTYPE_Q2_K = 10,
    SLM_FTYPE_Q3_K_S = 11,
    SLM_FTYPE_Q3_K_M = 12,
    SLM_FTYPE_Q3_K_L = 13,
    SLM_FTYPE_Q4_K_S = 14,
    SLM_FTYPE_Q4_K_M = 15,
    SLM_FTYPE_Q5_K_S = 16,
    SLM_FTYPE_Q5_K_M = 17,
    SLM_FTYPE_Q6_K = 18,
    SLM_FTYPE_IQ4_NL = 25,
    SLM_FTYPE_BF16 = 32,
};

/* The file type of a name as llama-quantize spells it (case-insensitive; Q3_K, Q4_K, Q5_K are the
 * _M mixes), or -1. */
int slm_ftype_from_name(const char *name);
/* Canonical name ("Q4_K_M"), or NULL for an unsupported value. */
const char *slm_ftype_name(int ftype);
/* The supported names, space-separated, for messages. */
const char *slm_ftype_names(void);

typedef struct slm_quantize_params {
    int ftype;                /* enum slm_ftype */
    int n_threads;            /* <= 0: every online CPU */
    const char *imatrix_path; /* NULL, or an importance matrix (llama.cpp's GGUF or legacy .dat format) */
    bool progress;            /* a progress bar on stderr */
    bool dry_run;             /* print the per-tensor plan to stdout, write nothing */
    /* NULL, or called on the quantizing thread about 10 times a second and at the end with the
     * elements written so far and in all; returning false stops the run ("cancelled", no file). */
    bool (*on_progress)(void *user, uint64_t done, uint64_t total);
    void *progress_user;
} slm_quantize_params;

typedef struct slm_quantize_stats {
    int n_tensors, n_quantized, n_fallback;
    uint64_t bytes_in, bytes_out;
    uint64_t n_elements;
} slm_quantize_stats;

/* Quantizes in_path into out_path (written as out_path.tmp, renamed when complete). 0, or -1 with
 * one error line; on error no output file exists. stats may be NULL. */
int slm_quantize_file(const char *in_path, const char *out_path, const slm_quantize_params *params,
                      slm_quantize_stats *stats, char *err, size_t err_len);

/* Checks, reading only the header, that in_path can be quantized as params asks: its weights are
 * F32, F16 or BF16 (not already quantized), the type is known and each tensor's new type fits its
 * rows (fallbacks as in slm_quantize_file). The importance matrix is not read. 0, or -1 with the
 * reason. *src_ftype (may be NULL) gets general.file_type, or without one the file type of its
 * largest tensor's type (F32, F16 or BF16). */
int slm_quantize_check(const char *in_path, const slm_quantize_params *params, int *src_ftype, char *err, size_t err_len);

/* ---- importance matrices ---- */

/* Per tensor: the mean squared activation of each input column (what quantize weighs errors by). */
typedef struct slm_imatrix_entry {
    char *name;      /* the weight's tensor name, e.g. "blk.0.attn_q.weight" */
    float *values;   /* n values: sum of squared activations / count */
    int64_t n;
    int64_t n_calls; /* how many chunks contributed (llama.cpp's count) */
} slm_imatrix_entry;

typedef struct slm_imatrix {
    slm_imatrix_entry *entries;
    int64_t n_entries;
    int64_t n_chunks;
    char *dataset; /* the text file it was computed on, or NULL */
} slm_imatrix;

/* Reads either format (GGUF "imatrix" files of current llama-imatrix, or the legacy .dat). */
int slm_imatrix_load(const char *path, slm_imatrix **out, char *err, size_t err_len);
int slm_imatrix_parse(const void *data, size_t size, const char *name, slm_imatrix **out, char *err, size_t err_len);
void slm_imatrix_free(slm_imatrix *im);
const slm_imatrix_entry *slm_imatrix_find(const slm_imatrix *im, const char *name);

/* ---- computing one (slm imatrix): llama-imatrix's collector ---- */

/* Per weight matrix and input column the sum of squared activations, and the rows summed. Feed it
 * each weight's input rows (slm_context_set_matmul_observer hands them over). */
typedef struct slm_imatrix_collector slm_imatrix_collector;
enum slm_imatrix_format { SLM_IMATRIX_GGUF, SLM_IMATRIX_DAT };

/* chunk_size: tokens per chunk (the context); process_output: collect output.weight too (as
 * llama-imatrix --process-output). NULL when out of memory or chunk_size < 1. */
slm_imatrix_collector *slm_imatrix_collector_new(int chunk_size, bool process_output);
void slm_imatrix_collector_free(slm_imatrix_collector *c);
/* True for the weights llama-imatrix collects: "blk.*", and "output.weight" with process_output. */
bool slm_imatrix_collects(const slm_imatrix_collector *c, const char *name);
/* Adds n_tokens rows of n_cols activations entering weight `name` (other weights are ignored).
 * A failure (out of memory, a row length that changed, a sum that overflowed) is kept: see _error. */
void slm_imatrix_collector_add(slm_imatrix_collector *c, const char *name, const float *x, int n_tokens, int n_cols);
/* The first failure, or NULL. */
const char *slm_imatrix_collector_error(const slm_imatrix_collector *c);
int64_t slm_imatrix_collector_n_entries(const slm_imatrix_collector *c);
/* Whole chunks seen: the most rows any weight summed / chunk_size (llama-imatrix's chunk count). */
int64_t slm_imatrix_collector_n_chunks(const slm_imatrix_collector *c);
/* Writes the matrix (entries sorted by name) in llama-imatrix's GGUF or legacy .dat format, through
 * path.tmp and a rename. dataset: the text's file name as given, or NULL. 0, or -1 with err. */
int slm_imatrix_collector_save(const slm_imatrix_collector *c, const char *path, enum slm_imatrix_format format,
                               const char *dataset, char *err, size_t err_len);

/* ---- what a quantization costs: KL divergence against the base model (llama-perplexity's statistics) ---- */

typedef struct slm_kld_stats slm_kld_stats;

slm_kld_stats *slm_kld_new(void);
void slm_kld_free(slm_kld_stats *s);
/* One scored position: the quantized and the base model's logits over n_vocab, and the true next
 * token. Returns 0, or -1 when out of memory. */
int slm_kld_add(slm_kld_stats *s, const float *logits, const float *base_logits, int n_vocab, int token);
/* The running line llama-perplexity prints per chunk: PPL, ln(PPL(Q)/PPL(base)), KLD, RMS dp, same top. */
void slm_kld_print_chunk(const slm_kld_stats *s, int chunk, FILE *fp);
/* The final "Perplexity / KL divergence / Token probability statistics" blocks. */
void slm_kld_print_summary(const slm_kld_stats *s, FILE *fp);
/* Mean KLD and its uncertainty, the fraction with the same top token and its uncertainty. */
void slm_kld_summary(const slm_kld_stats *s, double *mean_kld, double *kld_unc, double *same_top, double *same_top_unc);

#endif
