/* slm classify: JSONL in, JSONL out, label probabilities from the model's log-probabilities. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "common.h"
#include "slm.h"

static const char *classify_help =
    "usage: slm classify MODEL --labels A,B,C [options] < inputs.jsonl > out.jsonl\n"
    "\n"
    "Reads one input per line: a JSON object with \"input\" (or \"text\") and an optional \"id\", or a JSON\n"
    "string. Writes one JSON object per line: {\"id\",\"label\",\"probs\":{label:p}} (multi-label: \"labels\"\n"
    "lists those with p >= 0.5). A bad line gives {\"line\":N,\"error\":...} and the exit status 1.\n"
    "Progress goes to stderr. A line longer than 4 MiB ends the run with an error.\n"
    "\n"
    "      --labels LIST       comma-separated labels (required)\n"
    "      --multi-label       score each label independently (yes/no)\n"
    "  -t, --threads N         threads (default: all cores)\n"
    "  -c, --ctx-size N        context size (default: min(trained, 4096))\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void emit(json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        fflush(stdout);
        free(s);
    }
    json_decref(o);
}

static void emit_error(long line, const json_t *id, const char *msg) {
    json_t *o = json_object();
    if (id) json_object_set(o, "id", (json_t *)id);
    json_object_set_new(o, "line", json_integer(line));
    json_object_set_new(o, "error", json_string(msg));
    emit(o);
}

typedef struct classify_job {
    const slm_task_params *tp;
    const char *input;
    const char *const *labels;
    int n_labels;
    bool multi;
    double *probs;
    char *err;
    size_t err_len;
} classify_job;

static int run_classify(slm_engine *e, slm_gate_call *call, void *user) {
    (void)call;
    classify_job *j = user;
    return slm_task_classify(e, j->tp, j->input, j->labels, j->n_labels, j->multi, j->probs, NULL, j->err, j->err_len);
}

int cmd_classify(int argc, char **argv) {
    const char *verb = "classify";
    int status;
    if (cli_usage(argc, argv, classify_help, &status)) return status;
    cli_engine_opts eo = {.model_path = argv[1]};
    const char *label_arg = NULL;
    bool multi = false;
    for (int i = 2; i < argc; i++) {
        int r = cli_engine_opt(verb, argc, argv, &i, &eo);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(argv[i], "--labels") && i + 1 < argc) label_arg = argv[++i];
        else if (!strcmp(argv[i], "--multi-label")) multi = true;
        else return cli_fail(verb, "unknown option '%s' (see 'slm classify --help')", argv[i]);
    }
    if (!label_arg) return cli_fail(verb, "--labels is required");
    char *label_buf = strdup(label_arg);
    const char **labels = calloc(strlen(label_arg) + 1, sizeof *labels);
    int n_labels = 0;
    if (!label_buf || !labels) {
        free(label_buf);
        free(labels);
        return cli_fail(verb, "out of memory");
    }
    for (char *save = NULL, *tok = strtok_r(label_buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ') tok++;
        size_t l = strlen(tok);
        while (l && tok[l - 1] == ' ') tok[--l] = 0;
        if (l) labels[n_labels++] = tok;
    }
    status = 1;
    const slm_model *m = NULL;
    slm_engine *engine = NULL;
    slm_gate *gate = NULL;
    double *probs = calloc((size_t)n_labels + 1, sizeof *probs);
    char *line = NULL;
    size_t cap = 0;
    if (n_labels < (multi ? 1 : 2)) {
        cli_fail(verb, "--labels needs %s", multi ? "at least one label" : "at least two labels");
        goto out;
    }
    /* the same check the task makes per line, once up front: not one error line per input */
    for (int i = 0; i < n_labels; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(labels[i], labels[j])) {
                cli_fail(verb, "--labels: '%s' is given twice", labels[i]);
                goto out;
            }
    if (!probs) {
        cli_fail(verb, "out of memory");
        goto out;
    }
    if (cli_engine_start(verb, &eo, &engine, &gate, &m)) goto out;
    status = 0;
    long lineno = 0, done = 0, failed = 0;
    double t0 = now_s(), last = t0;
    long len;
    while ((len = cli_read_line(verb, stdin, CLI_MAX_LINE_BYTES, &line, &cap)) >= 0) {
        lineno++;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        json_error_t je;
        json_t *in = json_loadb(line, (size_t)len, JSON_DECODE_ANY, &je);
        const json_t *id = NULL;
        const char *input = NULL;
        if (!in) {
            char msg[256];
            snprintf(msg, sizeof msg, "invalid JSON: %s", je.text);
            emit_error(lineno, NULL, msg);
            failed++;
            continue;
        }
        if (json_is_string(in)) {
            input = json_string_value(in);
        } else if (json_is_object(in)) {
            id = json_object_get(in, "id");
            const json_t *t = json_object_get(in, "input");
            if (!t) t = json_object_get(in, "text");
            input = json_string_value(t);
        }
        if (!input) {
            emit_error(lineno, id, "expected a JSON string or an object with a string \"input\"");
            json_decref(in);
            failed++;
            continue;
        }
        char err[512];
        slm_task_params tp = {0};
        classify_job job = {&tp, input, labels, n_labels, multi, probs, err, sizeof err};
        if (slm_gate_run_task(gate, "cli", "classify", run_classify, &job, err, sizeof err)) {
            emit_error(lineno, id, err);
            failed++;
        } else {
            json_t *o = json_object(), *pj = json_object(), *sel = json_array();
            if (id) json_object_set(o, "id", (json_t *)id);
            int best = 0;
            for (int i = 0; i < n_labels; i++) {
                json_object_set_new(pj, labels[i], json_real(probs[i]));
                if (probs[i] > probs[best]) best = i;
                if (probs[i] >= 0.5) json_array_append_new(sel, json_string(labels[i]));
            }
            json_object_set_new(o, "label", json_string(labels[best]));
            if (multi) json_object_set_new(o, "labels", sel);
            else json_decref(sel);
            json_object_set_new(o, "probs", pj);
            emit(o);
            done++;
        }
        json_decref(in);
        double t = now_s();
        if (t - last > 0.5) {
            fprintf(stderr, "\rclassify: %ld lines, %ld errors, %.1f lines/s", done + failed, failed,
                    (double)(done + failed) / (t - t0));
            last = t;
        }
    }
    double t = now_s();
    fprintf(stderr, "\rclassify: %ld lines, %ld errors, %.1f lines/s\n", done + failed, failed,
            t > t0 ? (double)(done + failed) / (t - t0) : 0.0);
    if (failed || len == -2) status = 1;
out:
    free(line);
    free(probs);
    free(labels);
    free(label_buf);
    slm_gate_free(gate);
    slm_engine_free(engine);
    return status;
}
