/* slm models — the model store: content-addressed blobs and name:tag manifests in the data directory.
 *
 *   <data_dir>/models/blobs/sha256-<hex>               a GGUF file, named by its sha256
 *   <data_dir>/models/manifests/<name>/<tag>.json      {"name","tag","digest","size","created",...}
 *
 * Several names may share one blob; a blob no manifest names is removed by slm_models_rm. A blob
 * becomes visible only once complete and verified (written to a temporary file, hashed, renamed);
 * a manifest is replaced atomically. Names: 1-64 of [A-Za-z0-9._-], an optional ":tag" of the same
 * (default "latest"). */
#ifndef SLM_MODELS_H
#define SLM_MODELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct slm_model_entry {
    char name[72];   /* without the tag */
    char tag[72];
    char digest[72]; /* "sha256:<hex>" */
    uint64_t size;
    double created;  /* unix seconds */
    char arch[32];   /* general.architecture */
} slm_model_entry;

/* Splits "name[:tag]" and checks both; 0 or -1 with err. */
int slm_models_parse_name(const char *ref, char *name, size_t name_cap, char *tag, size_t tag_cap, char *err,
                          size_t err_len);
/* Copies a GGUF file into the store under ref (hashing while copying; an existing blob with the
 * same digest is shared). The file must be a GGUF slm can read. entry (may be NULL) gets the result. */
int slm_models_import(const char *data_dir, const char *gguf_path, const char *ref, slm_model_entry *entry, char *err,
                      size_t err_len);
/* Adds a blob that is already in the store (pull, bundle import) under ref. */
int slm_models_tag_blob(const char *data_dir, const char *digest, const char *ref, slm_model_entry *entry, char *err,
                        size_t err_len);
/* Every manifest, sorted by name then tag (*out malloc'd). Returns the count or -1. */
int slm_models_list(const char *data_dir, slm_model_entry **out, char *err, size_t err_len);
/* The manifest of ref: 1 found, 0 no such model, -1 error. path (may be NULL, PATH_MAX) gets the blob path. */
int slm_models_find(const char *data_dir, const char *ref, slm_model_entry *entry, char *path, char *err,
                    size_t err_len);
/* Removes ref's manifest, then every blob no manifest names. 1 removed, 0 no such model, -1 error. */
int slm_models_rm(const char *data_dir, const char *ref, char *err, size_t err_len);
/* Gives src's blob a second name (dst is replaced if it exists). */
int slm_models_cp(const char *data_dir, const char *src, const char *dst, char *err, size_t err_len);
/* The blob path for a digest ("sha256:<hex>"), and whether it exists. */
bool slm_models_blob_path(const char *data_dir, const char *digest, char *path, size_t cap);
/* A model argument as users give it: an existing file path is itself; otherwise a store name
 * resolved to its blob. Writes the path to out (PATH_MAX); 0 or -1 with err naming both tries. */
int slm_models_resolve(const char *data_dir, const char *arg, char *out, size_t cap, char *err, size_t err_len);

/* Called while a pull runs: bytes on disk so far, and the current speed (bytes/s). */
typedef void (*slm_models_progress_fn)(void *user, uint64_t bytes, double bytes_per_s);
/* Downloads a GGUF from an http(s) URL into the store under ref. Resumable: an interrupted pull
 * (even kill -9) keeps its bytes in a partial file named after the URL, and the next pull asks for
 * the rest (HTTP Range). The sha256 is checked against want_sha256 (64 hex digits, may be NULL)
 * before the model becomes visible; a mismatch deletes the download. Goes through slm_net: refused
 * in air-gapped mode. */
int slm_models_pull(const char *data_dir, const char *url, const char *ref, const char *want_sha256,
                    slm_models_progress_fn progress, void *user, slm_model_entry *entry, char *err, size_t err_len);

/* Bundles: a tar with manifests/<name>/<tag>.json and blobs/sha256-<hex>, for carrying models
 * into an air-gapped site. Import checks every blob against its digest and every manifest against
 * its blob before anything becomes visible. */
int slm_models_bundle_export(const char *data_dir, const char *const *refs, int n_refs, const char *tar_path, char *err,
                             size_t err_len);
/* Returns the number of models imported, or -1 with err (nothing imported). */
int slm_models_bundle_import(const char *data_dir, const char *tar_path, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif
#endif
