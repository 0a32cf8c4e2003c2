/* slm keys: create, list and revoke API keys in the state store. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "slm_govern.h"
#include "slm_store.h"

static const char *keys_help =
    "usage: slm keys create --name NAME [--models a,b] [--local-only] [--rpm N] [--tpm N]\n"
    "                       [--budget USD/PERIOD] [--pii off|detect|mask|block] [--collections a,b]\n"
    "                       [--admin] [--json]\n"
    "       slm keys list [--json]\n"
    "       slm keys revoke NAME\n"
    "\n"
    "Keys live in the state store of the data directory (--data-dir, else $SLM_HOME, else\n"
    "~/.local/share/slm; /var/lib/slm for root). Only a hash of each secret is stored: `create`\n"
    "prints the secret once. Once a key exists, the server asks every request for one.\n"
    "\n"
    "      --data-dir DIR      the data directory\n"
    "      --models LIST       models (and upstreams) the key may use, comma-separated (default: all)\n"
    "      --local-only        the key's requests never go to an upstream API\n"
    "      --rpm N, --tpm N    requests / tokens per minute (default: unlimited)\n"
    "      --budget USD/PERIOD spend limit, PERIOD = day|week|month|total (e.g. 5/day)\n"
    "      --pii MODE          personal-data policy for this key (default: the server's)\n"
    "      --collections LIST  retrieval collections the key may use, comma-separated (default: all)\n"
    "      --admin             may manage keys and read the ledger over HTTP\n"
    "      --json              machine-readable output\n";

static int open_store(const char *dir, slm_store **store) {
    char def[PATH_MAX], err[512];
    if (!dir && !(dir = slm_data_dir_default(def, sizeof def))) return cli_fail("keys", "cannot work out the data directory");
    if (slm_store_open(dir, store, err, sizeof err)) return cli_fail("keys", "%s", err);
    return 0;
}

static int create(int argc, char **argv, const char *dir, bool json) {
    slm_key_info key;
    memset(&key, 0, sizeof key);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        char err[256];
        if (strcmp(a, "--name") == 0 && v) {
            if (strlen(v) >= sizeof key.name) return cli_fail("keys", "--name: at most %zu characters", sizeof key.name - 1);
            strcpy(key.name, v);
            i++;
        } else if (strcmp(a, "--models") == 0 && v) {
            if (strlen(v) >= sizeof key.models) return cli_fail("keys", "--models: the list is too long");
            strcpy(key.models, v);
            i++;
        } else if (strcmp(a, "--collections") == 0 && v) {
            if (strlen(v) >= sizeof key.collections) return cli_fail("keys", "--collections: the list is too long");
            strcpy(key.collections, v);
            i++;
        } else if (strcmp(a, "--local-only") == 0) {
            key.local_only = true;
        } else if (strcmp(a, "--admin") == 0) {
            key.admin = true;
        } else if (strcmp(a, "--rpm") == 0 || strcmp(a, "--tpm") == 0) {
            if (!cli_parse_int("keys", a, v, 0, 1000000000, &n)) return 1;
            *(a[2] == 'r' ? &key.rpm : &key.tpm) = (int)n;
            i++;
        } else if (strcmp(a, "--budget") == 0 && v) {
            if (slm_budget_parse(v, &key.budget_usd, &key.budget_period, err, sizeof err)) return cli_fail("keys", "%s", err);
            i++;
        } else if (strcmp(a, "--pii") == 0 && v) {
            if (slm_pii_policy_parse(v) < 0) return cli_fail("keys", "--pii: '%s' is not off, detect, mask or block", v);
            snprintf(key.pii, sizeof key.pii, "%s", v);
            i++;
        } else {
            return cli_fail("keys", "create: unknown or incomplete option '%s' (see slm keys --help)", a);
        }
    }
    if (!key.name[0]) return cli_fail("keys", "create needs --name NAME");
    slm_store *store;
    if (open_store(dir, &store)) return 1;
    char secret[SLM_KEY_SECRET_LEN + 1], err[512];
    int rc = 0;
    if (slm_key_create(store, &key, secret, err, sizeof err)) {
        rc = cli_fail("keys", "%s", err);
    } else if (json) {
        printf("{\"name\":\"%s\",\"key\":\"%s\"}\n", key.name, secret);
    } else {
        printf("%s\n", secret);
        fprintf(stderr, "slm keys: created key '%s' in %s; the secret above is shown only now\n", key.name,
                slm_store_dir(store));
    }
    slm_store_close(store);
    return rc;
}

static void print_table(const slm_key_info *keys, int n) {
    printf("%-20s %-12s %-8s %-6s %-7s %-8s %-14s %-7s %s\n", "NAME", "PREFIX", "STATUS", "ADMIN", "RPM", "TPM", "BUDGET",
           "PII", "MODELS");
    for (int i = 0; i < n; i++) {
        const slm_key_info *k = &keys[i];
        char budget[40] = "-", rpm[16] = "-", tpm[16] = "-";
        if (k->budget_period != SLM_BUDGET_NONE)
            snprintf(budget, sizeof budget, "$%g/%s", k->budget_usd, slm_budget_period_name(k->budget_period));
        if (k->rpm) snprintf(rpm, sizeof rpm, "%d", k->rpm);
        if (k->tpm) snprintf(tpm, sizeof tpm, "%d", k->tpm);
        printf("%-20s %-12s %-8s %-6s %-7s %-8s %-14s %-7s %s%s%s%s%s\n", k->name, k->prefix,
               k->revoked > 0 ? "revoked" : "active", k->admin ? "yes" : "no", rpm, tpm, budget, k->pii[0] ? k->pii : "-",
               k->models[0] ? k->models : "*", k->local_only ? " (local only)" : "",
               k->collections[0] ? " (collections: " : "", k->collections, k->collections[0] ? ")" : "");
    }
}

int cmd_keys(int argc, char **argv) {
    const char *dir = NULL;
    bool json = false;
    /* the common options may stand anywhere; the rest belongs to the sub-verb */
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest) return cli_fail("keys", "out of memory");
    int n_rest = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            fputs(keys_help, stdout);
            free(rest);
            return 0;
        } else if (strcmp(argv[i], "--data-dir") == 0) {
            if (i + 1 >= argc) {
                free(rest);
                return cli_fail("keys", "--data-dir needs a directory");
            }
            dir = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else {
            rest[n_rest++] = argv[i];
        }
    }
    int rc;
    if (n_rest == 0) {
        fputs(keys_help, stderr);
        rc = 1;
    } else if (strcmp(rest[0], "create") == 0) {
        rc = create(n_rest - 1, rest + 1, dir, json);
    } else if (strcmp(rest[0], "list") == 0 && n_rest == 1) {
        slm_store *store;
        rc = open_store(dir, &store);
        if (!rc) {
            char err[512];
            if (json) {
                char *text = slm_key_list_json(store, err, sizeof err);
                if (text) printf("%s\n", text);
                else rc = cli_fail("keys", "%s", err);
                free(text);
            } else {
                slm_key_info *keys;
                int n = slm_store_key_list(store, &keys, err, sizeof err);
                if (n < 0) rc = cli_fail("keys", "%s", err);
                else print_table(keys, n);
                free(keys);
            }
            slm_store_close(store);
        }
    } else if (strcmp(rest[0], "revoke") == 0 && n_rest == 2) {
        slm_store *store;
        rc = open_store(dir, &store);
        if (!rc) {
            char err[512];
            int r = slm_store_key_revoke(store, rest[1], err, sizeof err);
            if (r < 0) rc = cli_fail("keys", "%s", err);
            else if (r == 0) rc = cli_fail("keys", "no active key named '%s'", rest[1]);
            else fprintf(stderr, "slm keys: revoked '%s'\n", rest[1]);
            slm_store_close(store);
        }
    } else {
        rc = cli_fail("keys", "unknown or incomplete command '%s' (create, list, revoke NAME; see --help)", rest[0]);
    }
    free(rest);
    return rc;
}
