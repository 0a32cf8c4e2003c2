/* Hugging Face: hf.co/ORG/REPO[:QUANT] resolved as its download URLs work. The repo's listing
 * ({endpoint}/api/models/ORG/REPO?blobs=true) names the GGUF files with their LFS sha256; the one
 * whose name carries QUANT (default Q4_K_M) is fetched from {endpoint}/ORG/REPO/resolve/main/FILE
 * (which redirects to a CDN) and checked against that sha256 and the X-Linked-ETag header. */
#include <ctype.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "slm_models.h"
#include "slm_net.h"
#include "store/models_impl.h"
#include "util/err.h"

#define DEFAULT_QUANT "Q4_K_M"

static bool repo_part_ok(const char *s, size_t n) {
    if (n == 0 || n > 96 || s[0] == '.' || s[0] == '-') return false;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '_' || s[i] == '-')) return false;
    return !(n >= 2 && strstr(s, "..") && (size_t)(strstr(s, "..") - s) < n);
}

/* Does file name carry quant as a whole word ("x-Q4_K_M.gguf" has Q4_K_M, not Q4_K)? */
static bool has_quant(const char *file, const char *quant) {
    size_t q = strlen(quant);
    for (const char *p = file; *p; p++) {
        if (strncasecmp(p, quant, q) != 0) continue;
        bool before = p == file || !isalnum((unsigned char)p[-1]);
        char after = p[q];
        if (before && (after == '.' || after == '-')) return true;
    }
    return false;
}

static bool is_gguf(const char *name) {
    size_t n = strlen(name);
    return n > 5 && strcasecmp(name + n - 5, ".gguf") == 0;
}

/* hf.co/ORG/REPO[:QUANT] into its parts (quant: the default when none is given) and the store name
 * a pull without --name uses (REPO, tagged QUANT when one is given). */
static int parse_hf(const char *source, char org[100], char repo[100], char quant[64], bool *quant_given, char *ref,
                    size_t ref_cap, char *err, size_t err_len) {
    const char *s = source + (strncmp(source, "hf.co/", 6) == 0 ? 6 : 15);
    const char *slash = strchr(s, '/');
    const char *colon = slash ? strchr(slash, ':') : NULL;
    size_t org_len = slash ? (size_t)(slash - s) : 0;
    size_t repo_len = slash ? (colon ? (size_t)(colon - slash - 1) : strlen(slash + 1)) : 0;
    if (!slash || !repo_part_ok(s, org_len) || !repo_part_ok(slash + 1, repo_len))
        return slm_err(err, err_len, "Hugging Face reference '%.200s': expected hf.co/ORG/REPO[:QUANT]", source);
    snprintf(org, 100, "%.*s", (int)org_len, s);
    snprintf(repo, 100, "%.*s", (int)repo_len, slash + 1);
    const char *q = colon ? colon + 1 : DEFAULT_QUANT;
    size_t ql = strlen(q);
    bool quant_ok = ql >= 1 && ql < 64;
    for (size_t i = 0; i < ql; i++) quant_ok &= isalnum((unsigned char)q[i]) || q[i] == '_' || q[i] == '-' || q[i] == '.';
    if (!quant_ok) return slm_err(err, err_len, "Hugging Face reference '%.200s': '%.70s' is not a quantization name", source, q);
    snprintf(quant, 64, "%s", q);
    *quant_given = colon != NULL;
    char base[72];
    if (!models_name_from(repo, strlen(repo), base, sizeof base))
        return slm_err(err, err_len, "cannot make a model name from '%s': give --name", repo);
    snprintf(ref, ref_cap, "%s:%s", base, colon ? quant : "latest");
    return 0;
}

int models_hf_default_name(const char *source, char *out, size_t cap, char *err, size_t err_len) {
    char org[100], repo[100], quant[64];
    bool quant_given;
    return parse_hf(source, org, repo, quant, &quant_given, out, cap, err, err_len);
}

int models_pull_hf(const char *data_dir, const char *source, const slm_models_pull_opts *o, slm_model_entry *entry,
                   char *err, size_t err_len) {
    char org[100], repo[100], quant[64];
    char ref[256], name[72], tag[72];
    bool quant_given;
    if (parse_hf(source, org, repo, quant, &quant_given, ref, sizeof ref, err, err_len)) return -1;
    if (o && o->name) snprintf(ref, sizeof ref, "%s", o->name);
    if (slm_models_parse_name(ref, name, sizeof name, tag, sizeof tag, err, err_len)) return -1;

    const char *ep = getenv("SLM_HF_ENDPOINT");
    char endpoint[512];
    snprintf(endpoint, sizeof endpoint, "%s", ep && *ep ? ep : "https://huggingface.co");
    size_t el = strlen(endpoint);
    while (el > 0 && endpoint[el - 1] == '/') endpoint[--el] = 0;
    const char *token = getenv("HF_TOKEN");
    if (token && !*token) token = NULL;

    models_emit(o, "pulling manifest", NULL, 0, 0, 0);
    char url[1400];
    snprintf(url, sizeof url, "%s/api/models/%s/%s?blobs=true", endpoint, org, repo);
    slm_net_request req = {.method = "GET", .url = url, .bearer_token = token, .first_byte_timeout_s = 60,
                           .idle_timeout_s = 60, .max_body_bytes = 8u << 20};
    slm_net_response resp;
    slm_net_result r = slm_net_perform(&req, &resp);
    int rc = 0;
    json_t *listing = NULL;
    if (r != SLM_NET_OK) rc = slm_err(err, err_len, "Hugging Face listing of %s/%s: %s", org, repo, resp.error);
    else if (resp.status == 404 || resp.status == 401)
        rc = slm_err(err, err_len, "Hugging Face has no repository %s/%s (HTTP %d%s)", org, repo, resp.status,
                     token ? "" : "; a private one needs HF_TOKEN");
    else if (resp.status != 200) rc = slm_err(err, err_len, "Hugging Face listing of %s/%s: HTTP %d", org, repo, resp.status);
    else if (!(listing = json_loadb(resp.body ? resp.body : "", resp.body_len, 0, NULL)) || /* json_is_* are macros */
             !json_is_object(listing) || !json_is_array(json_object_get(listing, "siblings")))
        rc = slm_err(err, err_len, "Hugging Face listing of %s/%s is not the expected JSON (no siblings)", org, repo);
    slm_net_response_free(&resp);

    /* the file: the GGUF carrying the quant; without an explicit quant and no Q4_K_M, the only GGUF */
    json_t *siblings = rc ? NULL : json_object_get(listing, "siblings");
    json_t *chosen = NULL, *lone = NULL;
    int n_gguf = 0, n_match = 0;
    char available[400] = "";
    for (size_t i = 0; i < json_array_size(siblings); i++) {
        json_t *sib = json_array_get(siblings, i);
        const char *fname = json_string_value(json_object_get(sib, "rfilename"));
        if (!fname || !is_gguf(fname)) continue;
        n_gguf++;
        lone = sib;
        size_t al = strlen(available);
        if (al + strlen(fname) + 3 < sizeof available) snprintf(available + al, sizeof available - al, "%s%s", al ? ", " : "", fname);
        if (has_quant(fname, quant) && n_match++ == 0) chosen = sib;
    }
    if (!rc && n_match == 0 && !quant_given && n_gguf == 1) chosen = lone;
    /* what is needed of the listing, copied out of it */
    char file[512] = "", sha[80] = "";
    const char *fn = json_string_value(json_object_get(chosen, "rfilename"));
    json_t *lfs = json_object_get(chosen, "lfs");
    const char *sh = json_string_value(json_object_get(lfs, "sha256"));
    if (!sh) sh = json_string_value(json_object_get(lfs, "oid"));
    json_t *sz = json_object_get(lfs, "size");
    if (!sz) sz = json_object_get(chosen, "size");
    json_int_t size = json_is_integer(sz) ? json_integer_value(sz) : 0;
    bool names_ok = (!fn || strlen(fn) < sizeof file) && (!sh || strlen(sh) < sizeof sha);
    if (fn && names_ok) snprintf(file, sizeof file, "%s", fn);
    if (sh && names_ok) snprintf(sha, sizeof sha, "%s", sh);
    json_decref(listing);
    listing = NULL;
    if (!rc && !names_ok) rc = slm_err(err, err_len, "Hugging Face listing of %s/%s names a file too long to use", org, repo);
    else if (!rc && n_gguf == 0) rc = slm_err(err, err_len, "Hugging Face repository %s/%s has no GGUF file", org, repo);
    else if (!rc && n_match > 1)
        rc = slm_err(err, err_len, "Hugging Face repository %s/%s has several GGUFs for %s (%s): split files are not supported",
                     org, repo, quant, available);
    else if (!rc && !file[0])
        rc = slm_err(err, err_len, "Hugging Face repository %s/%s has no GGUF for %s (it has: %s)", org, repo, quant, available);
    else if (!rc && (strlen(sha) != 64 || strspn(sha, "0123456789abcdef") != 64))
        rc = slm_err(err, err_len, "Hugging Face listing of %s/%s gives no LFS sha256 for %s: cannot verify it", org, repo, file);
    else if (!rc && size < 0)
        rc = slm_err(err, err_len, "Hugging Face listing of %s/%s gives an impossible size for %s", org, repo, file);
    char hexwant[65] = "", fname_esc[900];
    if (!rc) snprintf(hexwant, sizeof hexwant, "%s", sha);
    if (!rc && (strstr(file, "..") || file[0] == '/' || !models_url_escape(file, true, fname_esc, sizeof fname_esc)))
        rc = slm_err(err, err_len, "Hugging Face listing of %s/%s names an unusable file", org, repo);
    char digest[72];
    snprintf(digest, sizeof digest, "sha256:%s", hexwant);
    char blob[PATH_MAX + 96];
    bool existed = !rc && slm_models_blob_path(data_dir, digest, blob, sizeof blob);
    char status[64];
    snprintf(status, sizeof status, "pulling %.12s", hexwant);
    if (!rc && existed) models_emit(o, status, digest, (uint64_t)size, (uint64_t)size, 0);
    else if (!rc) {
        char partial[PATH_MAX + 96], hex[65], e2[900];
        snprintf(url, sizeof url, "%s/%s/%s/resolve/main/%s", endpoint, org, repo, fname_esc);
        rc = models_partial_path(data_dir, hexwant, partial, sizeof partial, err, err_len);
        models_fetch f = {.url = url, .bearer = token, .partial = partial, .want_hex = hexwant, .label = digest,
                          .expect_size = (uint64_t)size, .o = o};
        models_emit(o, status, digest, (uint64_t)size, 0, 0);
        if (!rc && models_fetch_file(&f, hex, e2, sizeof e2))
            rc = slm_err(err, err_len, "Hugging Face %s/%s %s: %s", org, repo, file, e2);
        else if (!rc && f.linked_etag[0] && strlen(f.linked_etag) == 64 && strcmp(f.linked_etag, hexwant) != 0) {
            unlink(partial);
            rc = slm_err(err, err_len, "Hugging Face %s/%s %s: the listing's sha256 and the download's X-Linked-ETag disagree; nothing was kept",
                         org, repo, file);
        }
        if (!rc) models_emit(o, status, digest, (uint64_t)size, (uint64_t)size, 0);
        if (!rc) rc = models_adopt_blob(data_dir, partial, hex, err, err_len);
    }
    if (rc) return -1;
    models_emit(o, "verifying sha256 digest", NULL, 0, 0, 0);
    models_emit(o, "writing manifest", NULL, 0, 0, 0);
    if (slm_models_tag_blob(data_dir, digest, ref, entry, err, err_len)) {
        if (!existed) unlink(blob);
        return -1;
    }
    models_emit(o, "success", NULL, 0, 0, 0);
    return 0;
}
