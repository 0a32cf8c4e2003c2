/* slm serve: flags to srv_config, then the server (src/server). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "common.h"
#include "../server/server.h"
#include "../server/api_lora.h"
#include "slm_config.h"
#include "slm_govern.h"

static const char *serve_help =
    "usage: slm serve --model PATH [options]\n"
    "\n"
    "OpenAI- and Ollama-compatible HTTP server with continuous batching (docs/server.md).\n"
    "\n"
    "  -m, --model PATH        GGUF model; repeat to serve several (requests choose by \"model\"; default: $SLM_MODEL)\n"
    "      --alias NAME        model id shown to clients (default: file name without .gguf)\n"
    "      --lora FILE[:SCALE] LoRA adapter for the first model, id 0, 1, ... (repeatable); requests pick with\n"
    "                          \"lora\": [{\"id\": N, \"scale\": S}] or \"model\": \"MODEL:ADAPTER\"; SCALE (default 1) applies\n"
    "                          to requests that choose none (POST /lora-adapters changes it)\n"
    "      --host ADDR         address to bind (default 127.0.0.1; non-loopback needs an API key)\n"
    "      --port N            port (default 8080; 0 = any free port)\n"
    "  -np, --parallel N       slots: sequences decoded together (default 4)\n"
    "  -c, --ctx-size N        context positions per slot (default: min(trained, 4096))\n"
    "  -b, --batch-size N      tokens per forward pass (default 512)\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "      --chat-template NAME  override the model's chat template (one of slm's names)\n"
    "      --api-key KEY       require 'Authorization: Bearer KEY' (repeatable; also $SLM_API_KEYS, comma list)\n"
    "      --insecure-no-auth  allow a non-loopback bind without any API key\n"
    "      --cors-origin ORIGIN  send CORS headers for this origin ('*' = any); default: no CORS\n"
    "      --max-body-bytes N  largest request body (default 4194304)\n"
    "      --max-header-bytes N  memory for request headers per connection (default 32768)\n"
    "      --max-body-total N  request bodies held in memory, all connections together; 503 over it (default 67108864)\n"
    "      --header-timeout S  a request's headers must arrive within S seconds, however slowly they trickle (default 10)\n"
    "      --body-timeout S    its body within S seconds after the headers (default 30)\n"
    "      --stream-buffer-bytes N  output a streaming client may leave unread before it is dropped (default 262144)\n"
    "      --reserve-connections N  slots kept free of slow clients, oldest shed first (default max-connections/8, at least 4)\n"
    "      --timeout S         longest a request may take, queueing included (default 600)\n"
    "      --idle-timeout S    close idle connections after S seconds (default 60)\n"
    "      --queue N           requests that may wait for a slot before 503 (default 128)\n"
    "      --max-connections N simultaneous connections (default 512)\n"
    "      --drain-timeout S   on SIGTERM, time allowed for running requests (default 30)\n"
    "      --port-file PATH    write the bound port to PATH once listening\n"
    "      --max-memory SIZE   bound on the models resident together (e.g. 8G, 512M); the least recently used idle\n"
    "                          model is unloaded to make room (default: no bound)\n"
    "      --keep-alive DUR    how long a model loaded on demand from the store stays after its last request\n"
    "                          (default 5m; -1 = for ever; requests may say \"keep_alive\" as in Ollama)\n"
    "      --data-dir DIR      state (keys, ledger, audit log); default $SLM_HOME, else ~/.local/share/slm\n"
    "                          (/var/lib/slm for root)\n"
    "      --no-data-dir       run stateless: no stored keys, no ledger, no audit log\n"
    "      --audit-content M   what the audit log keeps of texts: none|hash|redacted|full (default redacted)\n"
    "      --audit-sign        sign audit records (ed25519; the key pair is kept in the data directory)\n"
    "      --no-audit          no audit log even with a data directory\n"
    "      --pii MODE          personal-data policy for keys without their own: off|detect|mask|block (default detect)\n"
    "      --pii-output        also mask personal data found in generated text\n"
    "      --air-gapped        make no outbound connection at all (no upstream, no pull)\n"
    "      --config FILE       YAML config: server settings, models, upstreams, routes (docs/config.md)\n"
    "      --price NAME=IN,OUT a served model's price in USD per 1M input / output tokens (ledger, budgets)\n"
    "      --quiet             no per-request log lines\n";

/* "8G", "512M", "1.5GiB", "100000": bytes (K/M/G/T are powers of 1024, as for memory). */
static bool parse_size(const char *v, unsigned long long *out) {
    char *end;
    double n = strtod(v, &end);
    if (end == v || !(n > 0) || n > 1e18) return false;
    double unit = 1;
    switch (*end) {
    case 'k': case 'K': unit = 1024.0, end++; break;
    case 'm': case 'M': unit = 1048576.0, end++; break;
    case 'g': case 'G': unit = 1073741824.0, end++; break;
    case 't': case 'T': unit = 1099511627776.0, end++; break;
    default: break;
    }
    if (unit > 1 && (*end == 'i' || *end == 'I')) end++;
    if (unit > 1 && (*end == 'b' || *end == 'B')) end++;
    if (*end || n * unit > 1e18) return false;
    *out = (unsigned long long)(n * unit);
    return true;
}

static bool take(const char *verb, int argc, char **argv, int *i, const char **out) {
    if (*i + 1 >= argc) {
        cli_fail(verb, "%s needs a value", argv[*i]);
        return false;
    }
    *out = argv[++*i];
    return true;
}

static bool take_int(const char *verb, int argc, char **argv, int *i, long lo, long hi, long *out) {
    const char *flag = argv[*i];
    const char *v;
    if (!take(verb, argc, argv, i, &v)) return false;
    return cli_parse_int(verb, flag, v, lo, hi, out);
}

/* What a --config file sets: server settings, the named models, and (for the server) its
 * upstreams, routes and prices. */
static bool apply_config(const char *verb, const slm_config *f, srv_config *c, char **keys_copy) {
    c->file = f;
    if (f->host) c->host = f->host;
    if (f->port >= 0) c->port = f->port;
    if (f->data_dir) c->data_dir = f->data_dir;
    if (f->air_gapped >= 0) c->air_gapped = f->air_gapped;
    if (f->audit_sign >= 0) c->audit_sign = f->audit_sign;
    if (f->pii_output >= 0) c->pii_output = f->pii_output;
    if (f->audit_content) c->audit_content = slm_audit_content_parse(f->audit_content);
    if (f->pii) c->pii_policy = slm_pii_policy_parse(f->pii);
    for (int i = 0; i < f->n_models; i++) {
        if (c->n_models == SRV_MAX_MODELS) return cli_fail(verb, "at most %d models", SRV_MAX_MODELS), false;
        c->model_names[c->n_models] = f->models[i].name;
        c->model_paths[c->n_models++] = f->models[i].path;
    }
    if (f->api_keys_env) {
        const char *list = getenv(f->api_keys_env);
        if (!list || !*list)
            return cli_fail(verb, "the environment variable %s (server.api_keys_env) is not set", f->api_keys_env), false;
        if (!(*keys_copy = strdup(list))) return cli_fail(verb, "out of memory"), false;
        for (char *k = strtok(*keys_copy, ","); k; k = strtok(NULL, ",")) {
            while (*k == ' ') k++;
            if (!*k) continue;
            if (c->n_api_keys == SRV_MAX_API_KEYS) return cli_fail(verb, "at most %d API keys", SRV_MAX_API_KEYS), false;
            c->api_keys[c->n_api_keys++] = k;
        }
    }
    return true;
}

int cmd_serve(int argc, char **argv) {
    const char *verb = "serve";
    srv_config c;
    srv_config_defaults(&c);
    const char *env_model = getenv("SLM_MODEL");
    char *env_keys = NULL;
    const char *keys_env = getenv("SLM_API_KEYS");
    int status = 1;
    long v;
    bool total_given = false;
    slm_config *file = NULL;
    char *file_keys = NULL;
    /* the config file first: flags given beside it override what it says */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--config")) {
            char err[600];
            if (i + 1 >= argc) {
                cli_fail(verb, "--config needs a file");
                goto out;
            }
            if (file) {
                cli_fail(verb, "--config is given twice");
                goto out;
            }
            if (slm_config_load(argv[i + 1], &file, err, sizeof err)) {
                cli_fail(verb, "%s", err);
                goto out;
            }
            if (!apply_config(verb, file, &c, &file_keys)) goto out;
        }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(serve_help, stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (c.n_models == SRV_MAX_MODELS) {
                cli_fail(verb, "at most %d --model", SRV_MAX_MODELS);
                goto out;
            }
            if (!take(verb, argc, argv, &i, &c.model_paths[c.n_models])) goto out;
            c.n_models++;
        } else if (!strcmp(a, "--lora")) {
            const char *path;
            float scale;
            char err[200];
            if (i + 1 >= argc) {
                cli_fail(verb, "--lora needs FILE[:SCALE]");
                goto out;
            }
            if (cli_parse_lora(verb, argv[++i], &path, &scale)) goto out;
            if (srv_lora_preload(path, scale, err, sizeof err)) {
                cli_fail(verb, "%s", err);
                goto out;
            }
        } else if (!strcmp(a, "--alias")) {
            if (!take(verb, argc, argv, &i, &c.alias)) goto out;
            if (!*c.alias || strlen(c.alias) > 200) {
                cli_fail(verb, "--alias must be 1 to 200 characters");
                goto out;
            }
        } else if (!strcmp(a, "--host")) {
            if (!take(verb, argc, argv, &i, &c.host)) goto out;
        } else if (!strcmp(a, "--port")) {
            if (!take_int(verb, argc, argv, &i, 0, 65535, &v)) goto out;
            c.port = (int)v;
        } else if (!strcmp(a, "-np") || !strcmp(a, "--parallel")) {
            if (!take_int(verb, argc, argv, &i, 1, 256, &v)) goto out;
            c.parallel = (int)v;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            if (!take_int(verb, argc, argv, &i, 0, 1 << 20, &v)) goto out;
            c.ctx_size = (int)v;
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) {
            if (!take_int(verb, argc, argv, &i, 1, 1 << 16, &v)) goto out;
            c.batch_size = (int)v;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!take_int(verb, argc, argv, &i, 0, 1024, &v)) goto out;
            c.threads = (int)v;
        } else if (!strcmp(a, "--chat-template")) {
            if (!take(verb, argc, argv, &i, &c.chat_template)) goto out;
            /* refused here, not by every chat request later */
            if (!cli_check_chat_template(verb, c.chat_template)) goto out;
        } else if (!strcmp(a, "--config")) {
            i++; /* read above */
        } else if (!strcmp(a, "--data-dir")) {
            if (!take(verb, argc, argv, &i, &c.data_dir)) goto out;
        } else if (!strcmp(a, "--no-data-dir")) {
            c.no_data_dir = true;
        } else if (!strcmp(a, "--no-audit")) {
            c.no_audit = true;
        } else if (!strcmp(a, "--audit-sign")) {
            c.audit_sign = true;
        } else if (!strcmp(a, "--audit-content")) {
            const char *v;
            if (!take(verb, argc, argv, &i, &v)) goto out;
            if ((c.audit_content = slm_audit_content_parse(v)) < 0) {
                cli_fail(verb, "--audit-content: '%s' is not none, hash, redacted or full", v);
                goto out;
            }
        } else if (!strcmp(a, "--pii")) {
            const char *v;
            if (!take(verb, argc, argv, &i, &v)) goto out;
            if ((c.pii_policy = slm_pii_policy_parse(v)) < 0) {
                cli_fail(verb, "--pii: '%s' is not off, detect, mask or block", v);
                goto out;
            }
        } else if (!strcmp(a, "--pii-output")) {
            c.pii_output = true;
        } else if (!strcmp(a, "--price")) {
            const char *v;
            if (!take(verb, argc, argv, &i, &v)) goto out;
            const char *eq = strchr(v, '=');
            char *end1 = NULL, *end2 = NULL;
            double in = eq ? strtod(eq + 1, &end1) : -1;
            double outp = end1 && *end1 == ',' ? strtod(end1 + 1, &end2) : -1;
            if (!eq || eq == v || !end2 || *end2 || !(in >= 0 && in < 1e9) || !(outp >= 0 && outp < 1e9)) {
                cli_fail(verb, "--price '%s': expected NAME=INPUT,OUTPUT (USD per 1M tokens, e.g. local=0.1,0.4)", v);
                goto out;
            }
            if (c.n_prices == SRV_MAX_MODELS) {
                cli_fail(verb, "at most %d --price", SRV_MAX_MODELS);
                goto out;
            }
            *(char *)eq = 0; /* argv is ours to cut */
            c.prices[c.n_prices].model = v;
            c.prices[c.n_prices].input = in;
            c.prices[c.n_prices++].output = outp;
        } else if (!strcmp(a, "--air-gapped")) {
            c.air_gapped = true;
        } else if (!strcmp(a, "--api-key")) {
            const char *k;
            if (!take(verb, argc, argv, &i, &k)) goto out;
            if (!*k) {
                cli_fail(verb, "--api-key must not be empty");
                goto out;
            }
            if (c.n_api_keys == SRV_MAX_API_KEYS) {
                cli_fail(verb, "at most %d API keys", SRV_MAX_API_KEYS);
                goto out;
            }
            c.api_keys[c.n_api_keys++] = k;
        } else if (!strcmp(a, "--insecure-no-auth")) {
            c.insecure_no_auth = true;
        } else if (!strcmp(a, "--cors-origin")) {
            if (!take(verb, argc, argv, &i, &c.cors_origin)) goto out;
            if (!*c.cors_origin) {
                cli_fail(verb, "--cors-origin must not be empty");
                goto out;
            }
        } else if (!strcmp(a, "--max-body-bytes")) {
            if (!take_int(verb, argc, argv, &i, 1024, 1L << 30, &v)) goto out;
            c.max_body_bytes = (size_t)v;
        } else if (!strcmp(a, "--max-header-bytes")) {
            if (!take_int(verb, argc, argv, &i, 4096, 1L << 24, &v)) goto out;
            c.max_header_bytes = (size_t)v;
        } else if (!strcmp(a, "--max-body-total")) {
            if (!take_int(verb, argc, argv, &i, 1024, 1L << 40, &v)) goto out;
            c.max_body_total = (size_t)v;
            total_given = true;
        } else if (!strcmp(a, "--header-timeout")) {
            if (!take_int(verb, argc, argv, &i, 1, 3600, &v)) goto out;
            c.header_timeout_s = (int)v;
        } else if (!strcmp(a, "--body-timeout")) {
            if (!take_int(verb, argc, argv, &i, 1, 86400, &v)) goto out;
            c.body_timeout_s = (int)v;
        } else if (!strcmp(a, "--stream-buffer-bytes")) {
            if (!take_int(verb, argc, argv, &i, 16384, 1L << 30, &v)) goto out;
            c.stream_buffer_bytes = (size_t)v;
        } else if (!strcmp(a, "--reserve-connections")) {
            if (!take_int(verb, argc, argv, &i, 1, 1 << 16, &v)) goto out;
            c.reserve_connections = (int)v;
        } else if (!strcmp(a, "--timeout")) {
            if (!take_int(verb, argc, argv, &i, 1, 86400, &v)) goto out;
            c.request_timeout_s = (int)v;
        } else if (!strcmp(a, "--idle-timeout")) {
            if (!take_int(verb, argc, argv, &i, 1, 86400, &v)) goto out;
            c.idle_timeout_s = (int)v;
        } else if (!strcmp(a, "--queue")) {
            if (!take_int(verb, argc, argv, &i, 0, 1 << 20, &v)) goto out;
            c.queue_size = (int)v;
        } else if (!strcmp(a, "--max-connections")) {
            if (!take_int(verb, argc, argv, &i, 1, 1 << 16, &v)) goto out;
            c.max_connections = (int)v;
        } else if (!strcmp(a, "--max-memory")) {
            const char *v;
            if (!take(verb, argc, argv, &i, &v)) goto out;
            if (!parse_size(v, &c.max_memory)) {
                cli_fail(verb, "--max-memory '%s': expected a size like 8G, 512M or a number of bytes", v);
                goto out;
            }
        } else if (!strcmp(a, "--keep-alive")) {
            const char *v;
            if (!take(verb, argc, argv, &i, &v)) goto out;
            if (!srv_parse_duration(v, &c.keep_alive_s)) {
                cli_fail(verb, "--keep-alive '%s': expected a duration like 5m, 30s, 1h, -1 (for ever) or 0", v);
                goto out;
            }
        } else if (!strcmp(a, "--drain-timeout")) {
            if (!take_int(verb, argc, argv, &i, 0, 86400, &v)) goto out;
            c.drain_timeout_s = (int)v;
        } else if (!strcmp(a, "--port-file")) {
            if (!take(verb, argc, argv, &i, &c.port_file)) goto out;
        } else if (!strcmp(a, "--quiet")) {
            c.log_requests = false;
        } else {
            cli_fail(verb, "unknown option '%s' (see 'slm serve --help')", a);
            goto out;
        }
    }
    if (keys_env && *keys_env) {
        if (!(env_keys = strdup(keys_env))) {
            cli_fail(verb, "out of memory");
            goto out;
        }
        char *save = NULL;
        for (char *k = strtok_r(env_keys, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
            while (*k == ' ') k++;
            size_t n = strlen(k);
            while (n && k[n - 1] == ' ') k[--n] = 0;
            if (!*k) continue;
            if (c.n_api_keys == SRV_MAX_API_KEYS) {
                cli_fail(verb, "at most %d API keys", SRV_MAX_API_KEYS);
                goto out;
            }
            c.api_keys[c.n_api_keys++] = k;
        }
    }
    if (!total_given && c.max_body_total < 2 * c.max_body_bytes) c.max_body_total = 2 * c.max_body_bytes;
    if (c.max_body_total < c.max_body_bytes) {
        cli_fail(verb, "--max-body-total (%zu) must be at least --max-body-bytes (%zu)", c.max_body_total, c.max_body_bytes);
        goto out;
    }
    if (c.n_models == 0 && env_model && *env_model) c.model_paths[c.n_models++] = env_model;
    for (int k = 0; k < c.n_models; k++)
        for (int j = 0; j < k; j++)
            if (!strcmp(c.model_paths[j], c.model_paths[k])) {
                cli_fail(verb, "--model %s is given twice", c.model_paths[k]);
                goto out;
            }
    if (c.n_models == 0 || !*c.model_paths[0]) {
        cli_fail(verb, "no model: give --model PATH or set SLM_MODEL");
        goto out;
    }
    status = srv_run(&c);
out:
    slm_config_free(file);
    free(file_keys);
    free(env_keys);
    return status;
}
