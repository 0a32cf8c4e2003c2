/* The model store verbs: slm list, import, rm, cp, bundle (see include/slm_models.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "slm_models.h"
#include "slm_net.h"
#include "slm_store.h"

/* Takes --data-dir DIR out of argv (anywhere), leaving the rest in order; returns the new argc. */
static int take_data_dir(int argc, char **argv, const char **dir, char *def, size_t cap) {
    int n = 0;
    *dir = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--data-dir") == 0 && i + 1 < argc) {
            *dir = argv[++i];
            continue;
        }
        argv[n++] = argv[i];
    }
    if (!*dir) *dir = slm_data_dir_default(def, cap);
    return n;
}

static void human_size(uint64_t n, char *out, size_t cap) {
    const char *unit[] = {"B", "KB", "MB", "GB", "TB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1000 && u < 4) {
        v /= 1000;
        u++;
    }
    snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

int cmd_list(int argc, char **argv) {
    char def[PATH_MAX], err[512];
    const char *dir;
    argc = take_data_dir(argc, argv, &dir, def, sizeof def);
    bool json = argc > 1 && strcmp(argv[1], "--json") == 0;
    if (argc > 1 && (cli_is_help(argv[1]) || !json)) {
        fputs("usage: slm list [--json] [--data-dir D]\n\nThe models in the store: name:tag, digest, size, architecture, and\n"
              "kind: a model, a LoRA adapter (ARCH is its base's architecture; use it with --lora NAME), or a\n"
              "model made with adapters (Ollama's /api/create \"adapters\"), which applies them when served.\n",
              cli_is_help(argv[1]) ? stdout : stderr);
        return !cli_is_help(argv[1]);
    }
    if (!dir) return cli_fail("list", "cannot work out the data directory: give --data-dir");
    slm_model_entry *v;
    int n = slm_models_list(dir, &v, err, sizeof err);
    if (n < 0) return cli_fail("list", "%s", err);
    if (!json) printf("%-32s %-14s %-10s %-10s %-18s %s\n", "NAME", "ID", "SIZE", "ARCH", "KIND", "MODIFIED");
    for (int i = 0; i < n; i++) {
        char size[32], when[32], ref[160];
        human_size(v[i].size, size, sizeof size);
        time_t t = (time_t)v[i].created;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
        snprintf(ref, sizeof ref, "%s:%s", v[i].name, v[i].tag);
        char kind[40];
        if (v[i].n_adapters > 0)
            snprintf(kind, sizeof kind, "model+%d adapter%s", v[i].n_adapters, v[i].n_adapters == 1 ? "" : "s");
        else
            snprintf(kind, sizeof kind, "%s", v[i].kind[0] ? v[i].kind : "model");
        if (json)
            printf("{\"name\":\"%s\",\"digest\":\"%s\",\"size\":%llu,\"arch\":\"%s\",\"kind\":\"%s\",\"adapters\":%d,"
                   "\"created\":%.0f}\n",
                   ref, v[i].digest, (unsigned long long)v[i].size, v[i].arch, v[i].kind[0] ? v[i].kind : "model",
                   v[i].n_adapters, v[i].created);
        else
            printf("%-32s %-14.12s %-10s %-10s %-18s %s\n", ref, v[i].digest + 7, size, v[i].arch, kind, when);
    }
    free(v);
    return 0;
}

int cmd_import(int argc, char **argv) {
    char def[PATH_MAX], err[512];
    const char *dir, *name = NULL, *file = NULL;
    argc = take_data_dir(argc, argv, &dir, def, sizeof def);
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            puts("usage: slm import FILE.gguf --name NAME[:TAG] [--data-dir D]\n\nCopies a GGUF into the store "
                 "(content-addressed: the same file under two names is stored once).");
            return 0;
        } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else if (!file && argv[i][0] != '-') {
            file = argv[i];
        } else {
            return cli_fail("import", "unexpected argument '%s' (see --help)", argv[i]);
        }
    }
    if (!file || !name) return cli_fail("import", "usage: slm import FILE.gguf --name NAME[:TAG]");
    if (!dir) return cli_fail("import", "cannot work out the data directory: give --data-dir");
    slm_model_entry e;
    if (slm_models_import(dir, file, name, &e, err, sizeof err)) return cli_fail("import", "%s", err);
    fprintf(stderr, "slm import: %s:%s (%s%s, %llu bytes, %s)\n", e.name, e.tag, strcmp(e.kind, "adapter") ? "" : "LoRA adapter for ",
            e.arch, (unsigned long long)e.size, e.digest);
    return 0;
}

int cmd_rm(int argc, char **argv) {
    char def[PATH_MAX], err[512];
    const char *dir;
    argc = take_data_dir(argc, argv, &dir, def, sizeof def);
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs("usage: slm rm NAME[:TAG]... [--data-dir D]\n", argc < 2 ? stderr : stdout);
        return argc < 2;
    }
    if (!dir) return cli_fail("rm", "cannot work out the data directory: give --data-dir");
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        int r = slm_models_rm(dir, argv[i], err, sizeof err);
        if (r < 0) rc = cli_fail("rm", "%s", err);
        else if (r == 0) rc = cli_fail("rm", "no model named '%s' in the store", argv[i]);
        else fprintf(stderr, "slm rm: deleted '%s'\n", argv[i]);
    }
    return rc;
}

int cmd_cp(int argc, char **argv) {
    char def[PATH_MAX], err[512];
    const char *dir;
    argc = take_data_dir(argc, argv, &dir, def, sizeof def);
    if (argc != 3 || cli_is_help(argv[1])) {
        fputs("usage: slm cp SRC DST [--data-dir D]\n", argc == 2 && cli_is_help(argv[1]) ? stdout : stderr);
        return !(argc == 2 && cli_is_help(argv[1]));
    }
    if (!dir) return cli_fail("cp", "cannot work out the data directory: give --data-dir");
    if (slm_models_cp(dir, argv[1], argv[2], err, sizeof err)) return cli_fail("cp", "%s", err);
    return 0;
}

int cmd_bundle(int argc, char **argv) {
    char def[PATH_MAX], err[512];
    const char *dir;
    argc = take_data_dir(argc, argv, &dir, def, sizeof def);
    static const char *help = "usage: slm bundle export NAME... -o FILE.tar [--data-dir D]\n"
                              "       slm bundle import FILE.tar [--data-dir D]\n\n"
                              "Carries models into an air-gapped site: every blob is checked against its sha256, and\n"
                              "nothing from a damaged bundle becomes visible.\n";
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(help, argc < 2 ? stderr : stdout);
        return argc < 2;
    }
    if (!dir) return cli_fail("bundle", "cannot work out the data directory: give --data-dir");
    if (strcmp(argv[1], "export") == 0) {
        const char *out = NULL;
        const char **refs = calloc((size_t)argc, sizeof *refs);
        if (!refs) return cli_fail("bundle", "out of memory");
        int n = 0;
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) out = argv[++i];
            else refs[n++] = argv[i];
        }
        int rc = 0;
        if (!out || n == 0) rc = cli_fail("bundle", "usage: slm bundle export NAME... -o FILE.tar");
        else if (slm_models_bundle_export(dir, refs, n, out, err, sizeof err)) rc = cli_fail("bundle", "%s", err);
        else fprintf(stderr, "slm bundle: %d model%s written to %s\n", n, n == 1 ? "" : "s", out);
        free(refs);
        return rc;
    }
    if (strcmp(argv[1], "import") == 0 && argc == 3) {
        int n = slm_models_bundle_import(dir, argv[2], err, sizeof err);
        if (n < 0) return cli_fail("bundle", "%s", err);
        fprintf(stderr, "slm bundle: %d model%s imported from %s\n", n, n == 1 ? "" : "s", argv[2]);
        return 0;
    }
    return cli_fail("bundle", "unknown command '%s' (export, import; see --help)", argv[1]);
}

/* A progress line on a terminal: the blob, bytes so far of the total, speed and time left. */
static void pull_event(void *user, const slm_models_event *ev) {
    const char *verb = user;
    if (!ev->digest) {
        if (strcmp(ev->status, "success") != 0) fprintf(stderr, "\rslm %s: %-60s\n", verb, ev->status);
        return;
    }
    char done[32], total[32], rate[32], eta[32] = "";
    human_size(ev->completed, done, sizeof done);
    human_size(ev->total, total, sizeof total);
    human_size((uint64_t)ev->bytes_per_s, rate, sizeof rate);
    if (ev->bytes_per_s > 0 && ev->total > ev->completed)
        snprintf(eta, sizeof eta, "  ETA %.0f s", (double)(ev->total - ev->completed) / ev->bytes_per_s);
    int pct = ev->total ? (int)(100.0 * (double)ev->completed / (double)ev->total) : 0;
    fprintf(stderr, "\rslm %s: %s %3d%%  %s / %s  %s/s%s   ", verb, ev->status, pct, done, total, rate, eta);
    if (ev->total && ev->completed == ev->total) fputc('\n', stderr);
}

static bool env_air_gapped(void) {
    const char *v = getenv("SLM_AIR_GAPPED");
    return v && strcmp(v, "1") == 0;
}

int cmd_pull(int argc, char **argv) {
    char def[PATH_MAX], err[1024];
    const char *dir, *source = NULL;
    slm_models_pull_opts o = {0};
    bool gapped = env_air_gapped();
    argc = take_data_dir(argc, argv, &dir, def, sizeof def);
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            puts("usage: slm pull SOURCE [--name NAME[:TAG]] [--sha256 HEX] [--insecure] [--air-gapped] [--data-dir D]\n\n"
                 "SOURCE is one of\n"
                 "  https://HOST/PATH/FILE.gguf        a GGUF over http(s) (--sha256 pins its digest)\n"
                 "  hf.co/ORG/REPO[:QUANT]             the repo's GGUF for QUANT (default Q4_K_M), checked against its\n"
                 "                                     LFS sha256 (SLM_HF_ENDPOINT replaces https://huggingface.co; HF_TOKEN)\n"
                 "  HOST[:PORT]/NAMESPACE/REPO[:TAG]   a registry (OCI distribution API, Ollama's layers); https, or\n"
                 "                                     http on loopback or with --insecure (SLM_REGISTRY_TOKEN)\n"
                 "The name defaults to the file name, REPO:QUANT or REPO:TAG. An interrupted pull resumes where it\n"
                 "stopped (HTTP Range); a model becomes visible only after its sha256 is checked.\n"
                 "--air-gapped (or SLM_AIR_GAPPED=1) refuses before any connection.");
            return 0;
        } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            o.name = argv[++i];
        } else if (strcmp(argv[i], "--sha256") == 0 && i + 1 < argc) {
            o.want_sha256 = argv[++i];
        } else if (strcmp(argv[i], "--air-gapped") == 0) {
            gapped = true;
        } else if (strcmp(argv[i], "--insecure") == 0) {
            o.insecure = true;
        } else if (!source && argv[i][0] != '-') {
            source = argv[i];
        } else {
            return cli_fail("pull", "unexpected argument '%s' (see --help)", argv[i]);
        }
    }
    if (!source) return cli_fail("pull", "usage: slm pull SOURCE [--name NAME[:TAG]] [--sha256 HEX] (see --help)");
    if (!dir) return cli_fail("pull", "cannot work out the data directory: give --data-dir");
    if (gapped) slm_net_set_air_gapped(true);
    if (isatty(2)) {
        o.on_event = pull_event;
        o.user = "pull";
    }
    slm_model_entry e;
    if (slm_models_pull_source(dir, source, &o, &e, err, sizeof err)) {
        if (isatty(2)) fputc('\n', stderr);
        return cli_fail("pull", "%s", err);
    }
    fprintf(stderr, "slm pull: %s:%s (%s, %llu bytes, %s)\n", e.name, e.tag, e.arch, (unsigned long long)e.size, e.digest);
    return 0;
}

int cmd_push(int argc, char **argv) {
    char def[PATH_MAX], err[1024];
    const char *dir, *name = NULL, *target = NULL;
    slm_models_pull_opts o = {0};
    bool gapped = env_air_gapped();
    argc = take_data_dir(argc, argv, &dir, def, sizeof def);
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            puts("usage: slm push NAME[:TAG] HOST[:PORT]/NAMESPACE/REPO[:TAG] [--insecure] [--air-gapped] [--data-dir D]\n\n"
                 "Uploads a model of the store to a registry (OCI distribution API) as Ollama lays it out: the GGUF,\n"
                 "its template/system/params, a config and the manifest. Blobs the registry has are not sent again.\n"
                 "https, or http on loopback or with --insecure; SLM_REGISTRY_TOKEN is sent when set.");
            return 0;
        } else if (strcmp(argv[i], "--air-gapped") == 0) {
            gapped = true;
        } else if (strcmp(argv[i], "--insecure") == 0) {
            o.insecure = true;
        } else if (argv[i][0] != '-' && !name) {
            name = argv[i];
        } else if (argv[i][0] != '-' && !target) {
            target = argv[i];
        } else {
            return cli_fail("push", "unexpected argument '%s' (see --help)", argv[i]);
        }
    }
    if (!name || !target) return cli_fail("push", "usage: slm push NAME[:TAG] HOST[:PORT]/NAMESPACE/REPO[:TAG] (see --help)");
    if (!dir) return cli_fail("push", "cannot work out the data directory: give --data-dir");
    if (slm_models_source_kind_of(target) != SLM_SOURCE_OCI)
        return cli_fail("push", "'%s' is not a registry reference (HOST[:PORT]/NAMESPACE/REPO[:TAG])", target);
    if (gapped) slm_net_set_air_gapped(true);
    if (isatty(2)) {
        o.on_event = pull_event;
        o.user = "push";
    }
    if (slm_models_push(dir, name, target, &o, err, sizeof err)) return cli_fail("push", "%s", err);
    fprintf(stderr, "slm push: %s -> %s\n", name, target);
    return 0;
}
