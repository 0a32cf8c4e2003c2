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

#define SLM_MODELS_MAX_ADAPTERS 8

typedef struct slm_model_entry {
    char name[72];   /* without the tag */
    char tag[72];
    char kind[16];   /* "model", or "adapter" for a LoRA adapter GGUF (general.type = "adapter") */
    int n_adapters;  /* adapters a model made with slm_models_create applies (slm_models_get_adapters) */
    char digest[72]; /* "sha256:<hex>" */
    uint64_t size;
    double created;  /* unix seconds */
    char arch[32];   /* general.architecture (an adapter's: the base architecture it is for) */
} slm_model_entry;

/* A model made of a base and adapters (slm_models_create, Ollama's /api/create "adapters"): the
 * adapter blobs (slm_models_blob_path) applied at these scales whenever it is served. */
typedef struct slm_model_adapters {
    int n;
    char digest[SLM_MODELS_MAX_ADAPTERS][72];
    float scale[SLM_MODELS_MAX_ADAPTERS];
} slm_model_adapters;

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

/* Stores bytes as a blob once they hash to digest ("sha256:<64 hex>"); a blob already there is kept.
 * 0, or -1 with err (a mismatch names both digests). */
int slm_models_put_blob(const char *data_dir, const char *digest, const void *data, size_t len, char *err,
                        size_t err_len);

/* Called while a pull runs: bytes on disk so far, and the current speed (bytes/s). */
typedef void (*slm_models_progress_fn)(void *user, uint64_t bytes, double bytes_per_s);
/* Downloads a GGUF from an http(s) URL into the store under ref. Resumable: an interrupted pull
 * (even kill -9) keeps its bytes in a partial file named after the URL, and the next pull asks for
 * the rest (HTTP Range). The sha256 is checked against want_sha256 (64 hex digits, may be NULL)
 * before the model becomes visible; a mismatch deletes the download. Goes through slm_net: refused
 * in air-gapped mode. */
int slm_models_pull(const char *data_dir, const char *url, const char *ref, const char *want_sha256,
                    slm_models_progress_fn progress, void *user, slm_model_entry *entry, char *err, size_t err_len);

/* ---------- pull from any source, push to a registry ---------- */

/* What an Ollama-style model carries besides its GGUF (each NULL when absent; malloc'd). params is
 * a JSON object text ({"temperature":0.7,"stop":[...]}), as in Ollama's params layer. */
typedef struct slm_model_extras {
    char *template_text;
    char *system;
    char *params;
} slm_model_extras;

/* Like slm_models_tag_blob, with the extras written into the manifest (x may be NULL). Each extra
 * is at most SLM_MODELS_MAX_EXTRA bytes; params must be a JSON object. */
#define SLM_MODELS_MAX_EXTRA (1u << 20)
int slm_models_tag_blob_extras(const char *data_dir, const char *digest, const char *ref, const slm_model_extras *x,
                               slm_model_entry *entry, char *err, size_t err_len);
/* Names base_digest's blob (a model) as ref, applying the adapter blobs adapter_digests[i] (each an
 * adapter for the base's architecture) at scales[i] (NULL: 1.0) whenever ref is served; n_adapters
 * 0..SLM_MODELS_MAX_ADAPTERS. x (may be NULL): the extras. */
int slm_models_create(const char *data_dir, const char *ref, const char *base_digest, const char *const *adapter_digests,
                      const float *scales, int n_adapters, const slm_model_extras *x, slm_model_entry *entry, char *err,
                      size_t err_len);
/* The adapters ref applies (out->n = 0 for most models): 1 found, 0 no such model, -1 error. */
int slm_models_get_adapters(const char *data_dir, const char *ref, slm_model_adapters *out, char *err, size_t err_len);
/* The extras of ref (fields NULL when absent): 1 found, 0 no such model, -1 error. */
int slm_models_get_extras(const char *data_dir, const char *ref, slm_model_extras *x, char *err, size_t err_len);
void slm_models_extras_free(slm_model_extras *x);

/* A step of a pull or push, in Ollama's words: "pulling manifest", "pulling sha256:<hex>" (with
 * total and completed bytes), "verifying sha256 digest", "writing manifest", "pushing sha256:<hex>",
 * "pushing manifest", "success". */
typedef struct slm_models_event {
    const char *status;
    const char *digest; /* "sha256:<hex>" of the blob being moved, NULL for the other steps */
    uint64_t total;     /* 0 = unknown */
    uint64_t completed;
    double bytes_per_s;
} slm_models_event;
typedef void (*slm_models_event_fn)(void *user, const slm_models_event *ev);

typedef struct slm_models_pull_opts {
    const char *name;        /* the store name; NULL = derived from the source (REPO:TAG, REPO:QUANT, file name) */
    const char *want_sha256; /* plain URLs: pins the digest (64 hex); the other sources carry their own */
    bool insecure;           /* OCI: plain http to a registry that is not on loopback (loopback always is) */
    slm_models_event_fn on_event;
    bool (*should_cancel)(void *user);
    void *user;
} slm_models_pull_opts;

typedef enum {
    SLM_SOURCE_INVALID = 0,
    SLM_SOURCE_URL, /* http(s)://… of a GGUF */
    SLM_SOURCE_HF,  /* hf.co/ORG/REPO[:QUANT] (or huggingface.co/…) */
    SLM_SOURCE_OCI, /* HOST[:PORT]/NS/REPO[:TAG]: the host has a '.' or a ':' or is "localhost" */
} slm_models_source_kind;
slm_models_source_kind slm_models_source_kind_of(const char *source);

/* Pulls source into the store. Blobs are downloaded into partial files named after their digest
 * (or the URL's hash) and resume with HTTP Range after any interruption; each is checked against
 * its sha256 before it is renamed into place, and the name appears last. Hugging Face: the file is
 * chosen from the repo's listing ({SLM_HF_ENDPOINT or https://huggingface.co}/api/models/ORG/REPO)
 * by QUANT (default Q4_K_M) and checked against the listing's LFS sha256; HF_TOKEN is sent when
 * set. OCI: the distribution API v2 with Ollama's media types; anonymous bearer tokens are fetched
 * when the registry asks (WWW-Authenticate), SLM_REGISTRY_TOKEN is sent when set. Refused in
 * air-gapped mode. */
int slm_models_pull_source(const char *data_dir, const char *source, const slm_models_pull_opts *o,
                           slm_model_entry *entry, char *err, size_t err_len);
/* The store name a pull of source without a name gives: the file name (URL), REPO:QUANT or
 * REPO:latest (Hugging Face), REPO:TAG (OCI). 0 or -1 with err. */
int slm_models_source_name(const char *source, char *out, size_t cap, char *err, size_t err_len);
/* Uploads ref's blobs (those the registry lacks: HEAD first) and an Ollama-compatible manifest
 * (the GGUF as application/vnd.ollama.image.model, template/system/params layers, a config) to the
 * OCI reference oci_ref, so a pull returns the same bytes. */
int slm_models_push(const char *data_dir, const char *ref, const char *oci_ref, const slm_models_pull_opts *o, char *err,
                    size_t err_len);

/* A registry manifest as slm reads it (hostile input: every field checked). */
#define SLM_OCI_MAX_LAYERS 16
typedef struct slm_oci_layer {
    char media_type[128];
    char digest[72]; /* "sha256:<64 hex>" */
    uint64_t size;
} slm_oci_layer;
typedef struct slm_oci_manifest {
    slm_oci_layer config;
    slm_oci_layer layers[SLM_OCI_MAX_LAYERS];
    int n_layers;
    int model_layer;                         /* index of the GGUF layer */
    int template_layer, system_layer, params_layer; /* -1 when absent */
} slm_oci_manifest;
/* Parses an OCI image manifest or a Docker v2 schema 2 manifest; 0 or -1 with err (an index of
 * several platforms, a schema 1 manifest or no GGUF layer is an error). */
int slm_models_oci_manifest_parse(const char *json, size_t len, slm_oci_manifest *m, char *err, size_t err_len);

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
