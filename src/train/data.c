/* Training data: a plain text cut into context windows, or chat JSONL ({"messages": [...]} per line)
 * rendered with the model's chat template, where only the assistant turns carry loss. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/train_data.h"
#include "util/err.h"

#define MAX_DATA_BYTES ((size_t)256 << 20)

void train_data_free(train_data *d) {
    free(d->tokens);
    free(d->weight);
    free(d->start);
    free(d->len);
    memset(d, 0, sizeof *d);
}

static int push_tokens(train_data *d, const slm_token *t, const uint8_t *w, int n) {
    if (d->n_tokens + (size_t)n > d->cap_tokens) {
        size_t cap = d->cap_tokens ? d->cap_tokens : 4096;
        while (cap < d->n_tokens + (size_t)n) cap *= 2;
        slm_token *nt = realloc(d->tokens, sizeof *nt * cap);
        if (!nt) return -1;
        d->tokens = nt;
        uint8_t *nw = realloc(d->weight, cap);
        if (!nw) return -1;
        d->weight = nw;
        d->cap_tokens = cap;
    }
    memcpy(d->tokens + d->n_tokens, t, sizeof *t * (size_t)n);
    if (w) memcpy(d->weight + d->n_tokens, w, (size_t)n);
    else memset(d->weight + d->n_tokens, 1, (size_t)n);
    d->n_tokens += (size_t)n;
    return 0;
}

static int push_window(train_data *d, size_t start, int len) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        size_t *ns = realloc(d->start, sizeof *ns * cap);
        if (!ns) return -1;
        d->start = ns;
        int *nl = realloc(d->len, sizeof *nl * cap);
        if (!nl) return -1;
        d->len = nl;
        d->cap = cap;
    }
    d->start[d->n] = start;
    d->len[d->n] = len;
    d->n++;
    size_t counted = 0;
    for (int i = 1; i < len; i++) counted += d->weight[start + (size_t)i] != 0;
    d->n_targets += counted;
    return 0;
}

static char *read_all(const char *path, size_t *len, char *err, size_t err_len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        slm_err(err, err_len, "%s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        slm_err(err, err_len, "%s: not a regular file", path);
        return NULL;
    }
    if ((size_t)st.st_size > MAX_DATA_BYTES) {
        fclose(fp);
        slm_err(err, err_len, "%s: %lld bytes, more than the 256 MiB limit for training data", path, (long long)st.st_size);
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(fp);
        slm_err(err, err_len, "%s: out of memory", path);
        return NULL;
    }
    size_t n = fread(buf, 1, (size_t)st.st_size, fp);
    bool bad = ferror(fp) || n != (size_t)st.st_size;
    fclose(fp);
    if (bad) {
        free(buf);
        slm_err(err, err_len, "%s: read error", path);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* Windows of ctx tokens that overlap by one, so every token after the first is predicted once. */
static int load_text(const slm_model *m, const char *path, const char *text, size_t len, int ctx, train_data *d,
                     char *err, size_t err_len) {
    if (memchr(text, 0, len)) return slm_err(err, err_len, "%s: holds a NUL byte (not a text file)", path);
    if (len > (size_t)INT32_MAX / 2) return slm_err(err, err_len, "%s: too large to tokenize", path);
    int cap = (int)len + 16;
    slm_token *toks = malloc(sizeof *toks * (size_t)cap);
    if (!toks) return slm_err(err, err_len, "%s: out of memory", path);
    int n = slm_tokenize(m, text, len, true, false, toks, cap, err, err_len);
    if (n < 0) {
        free(toks);
        if (n == SLM_TOKENIZE_ERROR) return -1;
        return slm_err(err, err_len, "%s: tokenizer needs more room than expected", path);
    }
    if (n < 2) {
        free(toks);
        return slm_err(err, err_len, "%s: %d token%s, too little text to train on", path, n, n == 1 ? "" : "s");
    }
    if (push_tokens(d, toks, NULL, n)) {
        free(toks);
        return slm_err(err, err_len, "%s: out of memory", path);
    }
    free(toks);
    for (int s = 0; s + 1 < n; s += ctx - 1) {
        int wl = n - s < ctx ? n - s : ctx;
        if (push_window(d, (size_t)s, wl)) return slm_err(err, err_len, "%s: out of memory", path);
    }
    return 0;
}

static int tokenize_msgs(const slm_model *m, const char *tmpl, const slm_chat_message *msgs, size_t n, bool add_gen,
                         slm_token **out, int *n_out, char *err, size_t err_len) {
    return slm_chat_tokenize(m, tmpl, msgs, n, add_gen, true, out, n_out, NULL, err, err_len);
}

/* One conversation: its full rendering, with loss on the tokens each assistant turn adds after the
 * prompt that asks for it (its content and end-of-turn marker). */
static int load_conversation(const slm_model *m, const char *tmpl, json_t *root, int ctx, train_data *d, char *err,
                             size_t err_len) {
    json_t *arr = json_is_object(root) ? json_object_get(root, "messages") : NULL;
    if (!json_is_array(arr) || json_array_size(arr) == 0)
        return slm_err(err, err_len, "expected an object with a non-empty \"messages\" array");
    size_t n = json_array_size(arr);
    slm_chat_message *msgs = calloc(n, sizeof *msgs);
    if (!msgs) return slm_err(err, err_len, "out of memory");
    int rc = -1;
    bool any_assistant = false;
    for (size_t i = 0; i < n; i++) {
        json_t *msg = json_array_get(arr, i);
        json_t *role = json_object_get(msg, "role"), *content = json_object_get(msg, "content");
        if (!json_is_string(role) || !json_is_string(content)) {
            slm_err(err, err_len, "message %zu needs string \"role\" and \"content\"", i + 1);
            goto out;
        }
        const char *r = json_string_value(role);
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")) {
            slm_err(err, err_len, "message %zu: role '%.40s' (must be system, user or assistant)", i + 1, r);
            goto out;
        }
        if (strlen(json_string_value(content)) != json_string_length(content)) {
            slm_err(err, err_len, "message %zu: content holds a NUL character", i + 1);
            goto out;
        }
        msgs[i].role = r;
        msgs[i].content = json_string_value(content);
        if (strcmp(r, "assistant") == 0) any_assistant = true;
    }
    if (!any_assistant) {
        slm_err(err, err_len, "no assistant message (nothing to learn)");
        goto out;
    }
    slm_token *full = NULL;
    int n_full = 0;
    if (tokenize_msgs(m, tmpl, msgs, n, false, &full, &n_full, err, err_len)) goto out;
    if (n_full > ctx) {
        free(full);
        slm_err(err, err_len, "the conversation is %d tokens, more than the context of %d (raise --ctx or shorten it)",
                n_full, ctx);
        goto out;
    }
    uint8_t *w = calloc((size_t)n_full + 1, 1);
    if (!w) {
        free(full);
        slm_err(err, err_len, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(msgs[i].role, "assistant") != 0) continue;
        slm_token *pre = NULL, *upto = NULL;
        int n_pre = 0, n_upto = 0;
        if (tokenize_msgs(m, tmpl, msgs, i, true, &pre, &n_pre, err, err_len) ||
            tokenize_msgs(m, tmpl, msgs, i + 1, false, &upto, &n_upto, err, err_len)) {
            free(pre);
            free(upto);
            free(full);
            free(w);
            goto out;
        }
        /* tokenizations agree on the common text; where they would not, count from where they part */
        int a = 0;
        while (a < n_pre && a < n_full && pre[a] == full[a]) a++;
        int b = n_upto < n_full ? n_upto : n_full;
        for (int t = a; t < b; t++) w[t] = 1;
        free(pre);
        free(upto);
    }
    size_t start = d->n_tokens;
    if (push_tokens(d, full, w, n_full) || (n_full >= 2 && push_window(d, start, n_full))) {
        free(full);
        free(w);
        slm_err(err, err_len, "out of memory");
        goto out;
    }
    free(full);
    free(w);
    rc = 0;
out:
    free(msgs);
    return rc;
}

static int load_jsonl(const slm_model *m, const char *path, char *text, size_t len, int ctx, const char *tmpl,
                      train_data *d, char *err, size_t err_len) {
    size_t line_no = 0;
    char *p = text, *end = text + len;
    char why[384];
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        line_no++;
        size_t ll = (size_t)(le - p);
        while (ll && (p[ll - 1] == '\r' || p[ll - 1] == ' ' || p[ll - 1] == '\t')) ll--;
        size_t lead = 0;
        while (lead < ll && (p[lead] == ' ' || p[lead] == '\t')) lead++;
        if (ll > lead) {
            json_error_t je;
            json_t *root = json_loadb(p + lead, ll - lead, JSON_REJECT_DUPLICATES, &je);
            if (!root) return slm_err(err, err_len, "%s line %zu: not JSON: %s", path, line_no, je.text);
            int rc = load_conversation(m, tmpl, root, ctx, d, why, sizeof why);
            json_decref(root);
            if (rc) return slm_err(err, err_len, "%s line %zu: %s", path, line_no, why);
        }
        p = nl ? nl + 1 : end;
    }
    if (d->n == 0) return slm_err(err, err_len, "%s: no conversations", path);
    return 0;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

int train_data_load(const slm_model *m, const char *path, int ctx, const char *chat_template, train_data *d, char *err,
                    size_t err_len) {
    memset(d, 0, sizeof *d);
    size_t len = 0;
    char *text = read_all(path, &len, err, err_len);
    if (!text) return -1;
    d->chat = ends_with(path, ".jsonl");
    int rc = d->chat ? load_jsonl(m, path, text, len, ctx, chat_template, d, err, err_len)
                     : load_text(m, path, text, len, ctx, d, err, err_len);
    free(text);
    if (rc == 0 && d->n_targets == 0) rc = slm_err(err, err_len, "%s: no tokens to learn from", path);
    if (rc) train_data_free(d);
    return rc;
}

/* Moves the last `n` windows of src into dst (a held-out split). */
int train_data_split(train_data *src, int64_t n, train_data *dst) {
    memset(dst, 0, sizeof *dst);
    if (n <= 0 || (size_t)n >= src->n) return 0;
    dst->chat = src->chat;
    for (size_t i = src->n - (size_t)n; i < src->n; i++) {
        size_t s = dst->n_tokens;
        if (push_tokens(dst, src->tokens + src->start[i], src->weight + src->start[i], src->len[i]) ||
            push_window(dst, s, src->len[i]))
            return -1;
    }
    src->n -= (size_t)n;
    src->n_targets = 0;
    for (size_t i = 0; i < src->n; i++)
        for (int t = 1; t < src->len[i]; t++) src->n_targets += src->weight[src->start[i] + (size_t)t] != 0;
    return 0;
}

uint64_t train_data_hash(const train_data *d, uint64_t h) {
    for (size_t i = 0; i < d->n; i++) {
        const unsigned char *p = (const unsigned char *)(d->tokens + d->start[i]);
        for (size_t j = 0; j < sizeof(slm_token) * (size_t)d->len[i]; j++) h = (h ^ p[j]) * 0x100000001B3ull;
        const unsigned char *w = d->weight + d->start[i];
        for (int j = 0; j < d->len[i]; j++) h = (h ^ w[j]) * 0x100000001B3ull;
        h = (h ^ 0xFF) * 0x100000001B3ull;
    }
    return h;
}
