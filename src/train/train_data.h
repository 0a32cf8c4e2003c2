/* Training examples: token windows with a per-token loss weight (1 = predict this token). */
#ifndef SLM_TRAIN_DATA_H
#define SLM_TRAIN_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm.h"

typedef struct train_data {
    slm_token *tokens;
    uint8_t *weight;      /* per token: 1 if it is a prediction target */
    size_t n_tokens, cap_tokens;
    size_t *start;        /* window i: tokens[start[i] .. start[i] + len[i]) */
    int *len;
    size_t n, cap;        /* windows */
    size_t n_targets;     /* tokens that carry loss over all windows */
    bool chat;
} train_data;

/* Plain text (ctx-token windows overlapping by one token), or chat JSONL if the name ends in .jsonl
 * (one window per conversation; loss on assistant turns only). One error line naming the file (and
 * line) otherwise. */
int train_data_load(const slm_model *m, const char *path, int ctx, const char *chat_template, train_data *d, char *err,
                    size_t err_len);
void train_data_free(train_data *d);
/* Moves the last n windows of src into dst (a held-out validation split); nothing if n is 0 or
 * would take every window. -1 on out of memory. */
int train_data_split(train_data *src, int64_t n, train_data *dst);
/* FNV-1a over the windows' tokens and weights, continuing from h. */
uint64_t train_data_hash(const train_data *d, uint64_t h);

#endif
