/* What the model store's pull sources share: the resumable, verified blob download
 * (models_pull.c), used by plain URLs, Hugging Face (models_hf.c) and registries (models_oci.c). */
#ifndef SLM_STORE_MODELS_IMPL_H
#define SLM_STORE_MODELS_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "slm_models.h"

typedef struct models_fetch {
    const char *url;
    const char *bearer;        /* sent to url's host only (dropped when a redirect leaves it); may be NULL */
    const char *partial;       /* the partial file: kept across interruptions, resumed with Range */
    const char *want_hex;      /* the sha256 the bytes must have (64 hex); NULL = none known */
    const char *label;         /* the event's digest ("sha256:…"); NULL = none */
    uint64_t expect_size;      /* 0 = unknown; more bytes than this is an error */
    const slm_models_pull_opts *o;
    /* out */
    char linked_etag[128];     /* X-Linked-ETag of the first response (Hugging Face's LFS sha256), "" = none */
} models_fetch;

/* Downloads f->url into f->partial (appending to what it holds), follows up to 5 redirects, then
 * hashes the whole file into hex_out. A hash other than want_hex deletes the partial file. */
int models_fetch_file(models_fetch *f, char *hex_out, char *err, size_t err_len);
/* Renames a verified partial file to blobs/sha256-<hex> (an existing blob wins: same bytes). */
int models_adopt_blob(const char *data_dir, const char *partial, const char *hex, char *err, size_t err_len);
/* The blobs folder (created) and a partial file name in it for key ("<64 hex>" or any text, hashed). */
int models_partial_path(const char *data_dir, const char *key, char *out, size_t cap, char *err, size_t err_len);
/* sha256 of a file / of bytes as 64 hex digits. */
int models_hash_file(const char *path, char *hex, char *err, size_t err_len);
void models_hash_bytes(const void *data, size_t n, char *hex);
/* Replaces control characters (a hostile server's text may hold line breaks) so err stays one line. */
void models_one_line(char *err);
/* One event to o's callback (when there is one). */
void models_emit(const slm_models_pull_opts *o, const char *status, const char *digest, uint64_t total,
                 uint64_t completed, double rate);
/* Percent-encodes s (RFC 3986 unreserved kept; '/' kept when keep_slash) into out; false if it does not fit. */
bool models_url_escape(const char *s, bool keep_slash, char *out, size_t cap);
/* A store name made from text (a repo or file name): invalid characters become '-', at most 64;
 * false when nothing usable remains. */
bool models_name_from(const char *text, size_t n, char *out, size_t cap);

int models_pull_hf(const char *data_dir, const char *source, const slm_models_pull_opts *o, slm_model_entry *entry,
                   char *err, size_t err_len);
/* The store name a pull of source without --name gives (REPO:QUANT or REPO:latest; REPO:TAG). */
int models_hf_default_name(const char *source, char *out, size_t cap, char *err, size_t err_len);
int models_oci_default_name(const char *source, char *out, size_t cap, char *err, size_t err_len);
int models_pull_oci(const char *data_dir, const char *source, const slm_models_pull_opts *o, slm_model_entry *entry,
                    char *err, size_t err_len);

#endif
