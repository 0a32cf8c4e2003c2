/* The slm command line: one binary, many verbs. Each verb lives in its own cmd_*.c. */
#ifndef SLM_CLI_H
#define SLM_CLI_H

#include <stdbool.h>

typedef int (*slm_verb_fn)(int argc, char **argv);

int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_lora(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_imatrix(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_extract(int argc, char **argv);
int cmd_summarize(int argc, char **argv);
int cmd_redact(int argc, char **argv);
int cmd_audit(int argc, char **argv);
int cmd_keys(int argc, char **argv);
int cmd_ledger(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_rm(int argc, char **argv);
int cmd_cp(int argc, char **argv);
int cmd_bundle(int argc, char **argv);
int cmd_pull(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_router(int argc, char **argv);
int cmd_rag(int argc, char **argv);

/* Prints "slm <verb>: <msg>" to stderr and returns the exit status 1. */
int cli_fail(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True if argv[i] is -h or --help. */
bool cli_is_help(const char *arg);
/* Parses a whole decimal integer / float, or fails with a message naming the flag. */
bool cli_parse_int(const char *verb, const char *flag, const char *s, long lo, long hi, long *out);
bool cli_parse_float(const char *verb, const char *flag, const char *s, double *out);

#endif
