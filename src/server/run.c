/* Server lifetime: checks the safety rules, listens, loads the model (health says "loading"
 * meanwhile), starts the scheduler, then waits for SIGTERM/SIGINT and drains. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api_lora.h"
#include "ondemand.h"
#include "setup.h"
#include "slm_models.h"
#include "slm_govern.h"
#include "state.h"
#include "transport.h"

void srv_config_defaults(srv_config *c) {
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->port = 8080;
    c->parallel = 4;
    c->ctx_size = 0;
    c->batch_size = 512;
    c->threads = 0;
    c->max_body_bytes = 4u << 20;
    c->max_header_bytes = 32u << 10;
    c->max_body_total = 64u << 20;
    c->header_timeout_s = 10;
    c->body_timeout_s = 30;
    c->stream_buffer_bytes = 256u << 10;
    c->reserve_connections = 0; /* 0 = max_connections / 8, at least 4 */
    c->request_timeout_s = 600;
    c->idle_timeout_s = 60;
    c->queue_size = 128;
    c->max_connections = 512;
    c->drain_timeout_s = 30;
    c->keep_alive_s = 300; /* Ollama's default */
    c->load_wait_s = 30;
    c->log_requests = true;
    c->audit_content = SLM_AUDIT_CONTENT_REDACTED;
    c->pii_policy = SLM_PII_POLICY_DETECT;
}


static bool is_loopback(const struct sockaddr *a) {
    if (a->sa_family == AF_INET) return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    if (a->sa_family == AF_INET6) return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)a)->sin6_addr);
    return false;
}

static void model_id_from_path(const char *path, char *out, size_t cap) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".gguf") == 0) n -= 5;
    if (n >= cap) n = cap - 1;
    memcpy(out, base, n);
    out[n] = 0;
}

static void show_pull(void *user, const slm_models_event *ev) {
    double *last = user;
    double now = slm_now();
    bool done = ev->total && ev->completed == ev->total;
    if (ev->digest && !done && now - *last < 1.0) return; /* a line a second is enough for a log */
    *last = now;
    if (ev->digest && ev->total)
        fprintf(stderr, "slm serve: %s: %.0f%% of %.1f MB, %.1f MB/s\n", ev->status, 100.0 * (double)ev->completed / (double)ev->total,
                (double)ev->total / 1e6, ev->bytes_per_s / 1e6);
    else
        fprintf(stderr, "slm serve: %s\n", ev->status);
}

/* SLM_MODEL / --model naming a URL, hf.co/ORG/REPO[:QUANT] or HOST/NS/REPO[:TAG]: the store's copy
 * when it has one (no network), else pulled into the store now (refused when air-gapped). */
static bool pull_on_first_use(srv_server *s, const char *dir, const char *source, char *name, size_t name_cap,
                              char *path, size_t path_cap) {
    char err[512];
    if (slm_models_source_name(source, name, name_cap, err, sizeof err) != 0) {
        fprintf(stderr, "slm serve: %s\n", err);
        return false;
    }
    if (slm_models_find(dir, name, NULL, path, err, sizeof err) == 1 && strlen(path) < path_cap) {
        fprintf(stderr, "slm serve: %s is in the store as %s\n", source, name);
        return true;
    }
    if (s->cfg.air_gapped) {
        fprintf(stderr, "slm serve: %s is not in the store (%s) and --air-gapped forbids pulling it; bring it with "
                        "'slm bundle import'\n", source, dir);
        return false;
    }
    double last = 0;
    slm_models_pull_opts o = {.on_event = show_pull, .user = &last};
    slm_model_entry e;
    fprintf(stderr, "slm serve: pulling %s into the store (%s)\n", source, dir);
    if (slm_models_pull_source(dir, source, &o, &e, err, sizeof err) != 0 ||
        slm_models_find(dir, name, NULL, path, err, sizeof err) != 1) {
        fprintf(stderr, "slm serve: %s\n", err);
        return false;
    }
    return true;
}

/* Loads every --model into the engine and starts it; false with one line printed. */
static bool load_models(srv_server *s) {
    char err[512];
    for (int i = 0; i < s->cfg.n_models; i++) {
        const char *path = s->cfg.model_paths[i];
        srv_model *m = &s->models[i];
        if (s->cfg.model_names[i])
            snprintf(m->id, sizeof m->id, "%s", s->cfg.model_names[i]);
        else if (i == 0 && s->cfg.alias)
            snprintf(m->id, sizeof m->id, "%s", s->cfg.alias);
        else
            model_id_from_path(path, m->id, sizeof m->id);
        slm_model *model = NULL;
        /* a file, or a model in the data directory's store */
        char resolved[PATH_MAX];
        char def[PATH_MAX];
        const char *dir = s->store ? slm_store_dir(s->store) : s->cfg.data_dir ? s->cfg.data_dir : slm_data_dir_default(def, sizeof def);
        if (slm_models_resolve(dir, path, resolved, sizeof resolved, err, sizeof err) == 0)
            path = resolved;
        else if (slm_models_source_kind_of(path) != SLM_SOURCE_INVALID) { /* a source: pulled on first use */
            char name[160];
            if (!pull_on_first_use(s, dir, path, name, sizeof name, resolved, sizeof resolved)) return false;
            size_t n = strlen(name);
            if (n > 7 && strcmp(name + n - 7, ":latest") == 0) name[n - 7] = 0; /* the id requests use */
            if (!s->cfg.model_names[i] && !(i == 0 && s->cfg.alias)) snprintf(m->id, sizeof m->id, "%s", name);
            path = resolved;
        }
        if (slm_model_load(path, NULL, &model, err, sizeof err) != 0) {
            fprintf(stderr, "slm serve: %s\n", err);
            return false;
        }
        slm_context_params cp = slm_context_default_params();
        cp.n_seq = s->cfg.parallel;
        cp.n_ctx = s->cfg.ctx_size;
        cp.n_batch = s->cfg.batch_size;
        cp.embeddings = true;
        if (slm_engine_add_model(s->engine, m->id, model, &cp, true, err, sizeof err) != 0) {
            slm_model_free(model);
            fprintf(stderr, "slm serve: %s: %s\n", m->id, err);
            return false;
        }
        srv_model_fill(s, m, i, path);
        s->n_models = i + 1;
        fprintf(stderr,
                "slm serve: model '%s' (%s, %s kernels); %d slots x %d tokens of context each (trained %d), batch %d, "
                "queue %d; template %s\n",
                m->id, slm_model_desc(model), slm_isa_name(), m->n_seq, m->n_ctx, slm_model_n_ctx_train(model),
                m->n_batch, s->cfg.queue_size, m->template_name[0] ? m->template_name : "from the model");
    }
    srv_ondemand_install(s);
    if (s->cfg.max_memory || s->store) {
        uint64_t resident, max;
        slm_engine_residency(s->engine, &resident, &max, NULL, NULL);
        if (max && resident > max)
            fprintf(stderr, "slm serve: note: the --model models hold %.1f MiB, more than --max-memory (%.1f MiB); "
                            "models from the store will not load\n", resident / 1048576.0, max / 1048576.0);
    }
    if (slm_engine_start(s->engine, err, sizeof err) != 0) {
        fprintf(stderr, "slm serve: %s\n", err);
        return false;
    }
    return true;
}

static int write_port_file(const char *path, int port) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (!fp) return -1;
    fprintf(fp, "%d\n", port);
    if (fclose(fp) != 0) return -1;
    return rename(tmp, path);
}

int srv_run(const srv_config *cfg) {
    srv_server *s = calloc(1, sizeof *s);
    if (!s) return fprintf(stderr, "slm serve: out of memory\n"), 1;
    s->cfg = *cfg;
    pthread_mutex_init(&s->socks_mu, NULL);
    srv_metrics_init(&s->metrics);
    int status = 1;

    if (s->cfg.n_models < 1 || !s->cfg.model_paths[0] || !*s->cfg.model_paths[0]) {
        fprintf(stderr, "slm serve: no model: give --model PATH or set SLM_MODEL\n");
        goto out_free;
    }
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", s->cfg.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai = NULL;
    int gai = getaddrinfo(s->cfg.host, portstr, &hints, &ai);
    if (gai != 0 || !ai) {
        fprintf(stderr, "slm serve: --host %s: %s\n", s->cfg.host, gai_strerror(gai));
        goto out_free;
    }
    char err[512];
    if (srv_open_state(s, err, sizeof err) != 0) {
        fprintf(stderr, "slm serve: %s\n", err);
        freeaddrinfo(ai);
        goto out_free;
    }
    int stored_keys = s->store ? slm_store_key_count(s->store) : 0;
    if (!is_loopback(ai->ai_addr) && s->cfg.n_api_keys == 0 && stored_keys <= 0 && !s->cfg.insecure_no_auth) {
        fprintf(stderr,
                "slm serve: refusing to listen on non-loopback address %s without an API key; give --api-key KEY "
                "(or SLM_API_KEYS), or --insecure-no-auth if you really mean it\n",
                s->cfg.host);
        freeaddrinfo(ai);
        goto out_free;
    }
    if (ai->ai_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, s->bound_host, sizeof s->bound_host);
    else
        inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, s->bound_host, sizeof s->bound_host);

    /* Signals are taken synchronously by this thread only; every thread started below inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The engine (empty until the models load) and the gate exist before the first connection. */
    slm_engine_params ep = {.n_threads = s->cfg.threads,
                            .queue_cap = s->cfg.queue_size > 0 ? s->cfg.queue_size : -1,
                            .observer = srv_metrics_observer(&s->metrics)};
    if (slm_engine_new(&ep, &s->engine, err, sizeof err) != 0 || slm_gate_new(s->engine, &s->gate, err, sizeof err) != 0 ||
        srv_setup_gate(s, err, sizeof err) != 0) {
        fprintf(stderr, "slm serve: %s\n", err);
        freeaddrinfo(ai);
        goto out_stop;
    }
    s->daemon = srv_http_start(s, ai->ai_addr, err, sizeof err);
    freeaddrinfo(ai);
    if (!s->daemon) {
        fprintf(stderr, "slm serve: %s\n", err);
        goto out_stop;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_LISTEN_FD);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    s->bound_port = s->cfg.port;
    if (di && getsockname(di->listen_fd, (struct sockaddr *)&ss, &sl) == 0)
        s->bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
    const char *fmt_host = strchr(s->bound_host, ':') ? "[%s]" : "%s";
    char shown_host[160];
    snprintf(shown_host, sizeof shown_host, fmt_host, s->bound_host);
    fprintf(stderr, "slm serve: listening on http://%s:%d (loading the model; /health says \"loading\" until ready)\n",
            shown_host, s->bound_port);
    if (s->cfg.port_file && write_port_file(s->cfg.port_file, s->bound_port) != 0) {
        fprintf(stderr, "slm serve: cannot write %s: %s\n", s->cfg.port_file, strerror(errno));
        goto out_stop;
    }

    if (!load_models(s)) goto out_stop;
    srv_lora_startup(s); /* the --lora adapters, against the models just loaded, before anything is served */
    stored_keys = s->store ? slm_store_key_count(s->store) : 0;
    fprintf(stderr, "slm serve: %d model%s; auth %s; CORS %s\n", s->n_models, s->n_models == 1 ? "" : "s",
            s->cfg.n_api_keys || stored_keys > 0 ? "API key required" : "off (no key exists)",
            s->cfg.cors_origin ? s->cfg.cors_origin : "off");
    static const char *const content_names[] = {"none", "hash", "redacted", "full"};
    fprintf(stderr, "slm serve: data dir %s; audit %s%s%s; PII guard %s%s; network %s\n",
            s->store ? slm_store_dir(s->store) : "none (stateless)", s->audit ? "on, content " : "off",
            s->audit ? content_names[s->cfg.audit_content & 3] : "", s->audit && s->cfg.audit_sign ? ", signed" : "",
            s->pii ? slm_pii_policy_name((slm_pii_policy)s->cfg.pii_policy) : "off",
            s->cfg.pii_output ? " (+ generated text)" : "",
            s->cfg.air_gapped ? "AIR-GAPPED: no outbound connection will be made" : "outbound only to configured upstreams");
    atomic_store(&s->ready, true);
    fprintf(stderr, "slm serve: ready on http://%s:%d\n", shown_host, s->bound_port);

    int sig = sigwaitinfo(&sigs, NULL);
    while (sig < 0 && errno == EINTR) sig = sigwaitinfo(&sigs, NULL);
    int queued, busy;
    slm_engine_counts(s->engine, -1, &queued, &busy);
    fprintf(stderr, "slm serve: %s: draining %d running and %d queued requests (up to %d s; signal again to stop now)\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", busy, queued, s->cfg.drain_timeout_s);
    atomic_store(&s->draining, true);
    /* No new connections (closing the returned listen socket makes them fail fast); requests on
     * connections already open get 503. */
    MHD_socket listen_fd = MHD_quiesce_daemon(s->daemon);
    if (listen_fd != MHD_INVALID_SOCKET) close(listen_fd);
    double t0 = slm_now();
    bool forced = false;
    for (;;) {
        slm_engine_counts(s->engine, -1, &queued, &busy);
        busy += srv_remote_in_flight(s); /* calls an upstream or a cascade still answers */
        if (queued + busy == 0 && atomic_load(&s->live_conns) == 0) break;
        if (queued + busy == 0 && slm_now() - t0 > s->cfg.drain_timeout_s + 5) break; /* responses stuck writing */
        struct timespec tick = {0, 100 * 1000000L};
        int got = sigtimedwait(&sigs, NULL, &tick);
        if ((got > 0 || slm_now() - t0 > s->cfg.drain_timeout_s) && !forced) {
            forced = true;
            int cut = slm_engine_drain(s->engine, 0);
            fprintf(stderr, "slm serve: cancelled %d requests that had not finished\n", cut);
            t0 = slm_now() - s->cfg.drain_timeout_s + 2; /* two more seconds for their responses to go out */
        }
    }
    fprintf(stderr, "slm serve: drained, exiting\n");
    status = 0;
out_stop:
    srv_http_stop(s);
    slm_gate_free(s->gate);
    srv_close_backends(s); /* their workers may hand calls to the engine: gone before it is */
    slm_engine_free(s->engine);
out_free:
    for (int i = 0; i < SLM_ENGINE_MAX_MODELS; i++) {
        free(s->models[i].system);
        json_decref(s->models[i].params);
    }
    srv_close_state(s);
    srv_metrics_destroy(&s->metrics);
    pthread_mutex_destroy(&s->socks_mu);
    free(s);
    return status;
}
