/* Shared by the files of the store (state.db, retrieval tables, model blobs). */
#ifndef SLM_STORE_IMPL_H
#define SLM_STORE_IMPL_H

#include <stddef.h>

/* mkdir -p with mode 0700 for the folders it creates; fails unless path ends up a directory.
 * 0, or -1 with err. */
int store_mkdirs(const char *path, char *err, size_t err_len);

#endif
