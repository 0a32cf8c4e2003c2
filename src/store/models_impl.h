/* Shared by the model store's files. */
#ifndef SLM_STORE_MODELS_IMPL_H
#define SLM_STORE_MODELS_IMPL_H

#include <stddef.h>

/* mkdir -p with mode 0700 for the folders it creates; 0 or -1 with err. */
int models_mkdirs(const char *path, char *err, size_t err_len);

#endif
