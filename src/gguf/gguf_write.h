/* GGUF v3 writer: key/values (new, or copied from a gguf_file) and tensors, written in one pass
 * to a temporary file that is renamed over the target only when everything was written and
 * synced, so a failed or interrupted write leaves nothing behind. Used by quantize, LoRA merge
 * and fine-tuning (adapters). */
#ifndef SLM_GGUF_WRITE_H
#define SLM_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);

/* Key/values keep the order they are first set in; setting an existing key replaces its value in place. */
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *value);
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t value);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t value);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float value);
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool value);
/* Any scalar type (u8 .. f64, bool): value points at one packed element of `type`. */
int gguf_writer_set_scalar(gguf_writer *w, const char *key, uint32_t type, const void *value);
/* A numeric array (elem_type a scalar gguf_value_type; data holds n packed elements). */
int gguf_writer_set_arr(gguf_writer *w, const char *key, uint32_t elem_type, const void *data, uint64_t n);
int gguf_writer_set_str_arr(gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens, uint64_t n);
/* Copies one key/value of a reader exactly (type, array type, bytes). */
int gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv);
/* Copies every key/value of f (in its order). */
int gguf_writer_copy_all_kv(gguf_writer *w, const gguf_file *f);
int gguf_writer_remove_kv(gguf_writer *w, const char *key);

/* Declares a tensor (name, enum slm_type, dims as in gguf_tensor: ne[0] contiguous). Its bytes are
 * either given now (data != NULL, kept by pointer until write: the caller keeps them alive) or
 * produced at write time by the callback, which must fill exactly n_bytes (returns 0, or -1 with err). */
typedef int (*gguf_tensor_fill_fn)(void *user, int64_t index, void *dst, size_t n_bytes, char *err, size_t err_len);
int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, int n_dims, const int64_t *ne,
                           const void *data, gguf_tensor_fill_fn fill, void *user);
/* Alignment of the data section (general.alignment, default 32). */
void gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment);

/* Writes the file (path.tmp, fsync, rename). 0 or -1 with one error line naming the file. */
int gguf_writer_write(gguf_writer *w, const char *path, char *err, size_t err_len);

#endif
