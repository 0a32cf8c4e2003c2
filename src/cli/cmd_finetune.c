/* slm finetune: trains a LoRA adapter on the CPU and writes it in llama.cpp's adapter format. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "common.h"
#include "slm.h"
#include "slm_train.h"

static const char *finetune_help =
    "usage: slm finetune BASE.gguf --data FILE -o ADAPTER.gguf [options]\n"
    "\n"
    "Trains a LoRA adapter over the frozen weights of BASE (any weight type: the base stays quantized,\n"
    "the adapter is f32) and writes it as a llama.cpp adapter GGUF (load it with --lora).\n"
    "FILE is plain text, cut into windows of --ctx tokens, or chat JSONL if its name ends in .jsonl:\n"
    "one {\"messages\": [{\"role\": ..., \"content\": ...}, ...]} per line, rendered with the model's chat\n"
    "template, with loss on the assistant turns only. Data files up to 256 MiB.\n"
    "\n"
    "  --rank N               adapter rank (default 8)\n"
    "  --alpha X              scale numerator: the update is (alpha/rank) B A x (default 16)\n"
    "  --targets LIST         adapted matrices, from q,k,v,o,gate,up,down (default all)\n"
    "  --epochs N             passes over the data (default 1)\n"
    "  --max-steps N          stop after N optimizer steps\n"
    "  --lr X                 peak learning rate (default 2e-4)\n"
    "  --schedule S           cosine | linear | constant after warmup (default cosine)\n"
    "  --warmup N             warmup steps (default 10%% of the steps, at most 100)\n"
    "  --weight-decay X       AdamW decoupled weight decay (default 0)\n"
    "  --grad-clip X          clip the gradient's global L2 norm (default 1; 0 = off)\n"
    "  --batch N              sequences per step (default 4)\n"
    "  -c, --ctx N            tokens per sequence (default 256, at most the model's context)\n"
    "  --val FILE             validation data (default: the last 10%% of the training windows)\n"
    "  --val-fraction X       the held-out share without --val (default 0.1; 0 = no validation)\n"
    "  --chat-template NAME   for JSONL: a template name instead of the model's own\n"
    "  --seed N               initialisation and shuffling (default 42)\n"
    "  -t, --threads N        threads (default: all cores); a seed and thread count reproduce a run exactly\n"
    "  --exact                forward matmuls on the f32 reference path (slower)\n"
    "  --checkpoint-every N   save adapter + optimizer state every N steps (to ADAPTER.gguf.ckpt)\n"
    "  --checkpoint FILE      where to save checkpoints\n"
    "  --resume FILE          continue from a checkpoint (same base, data and settings)\n"
    "  -q, --quiet            no progress output\n";

typedef struct progress_state {
    bool tty, quiet, line_open;
} progress_state;

static void fmt_duration(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e8) {
        snprintf(buf, cap, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, cap, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, cap, "%lds", t);
}

static void on_progress(void *user, const slm_finetune_progress *p) {
    progress_state *st = user;
    if (st->quiet) return;
    if (p->epoch_end) {
        if (st->line_open) fputc('\n', stderr);
        st->line_open = false;
        if (isnan(p->val_loss))
            fprintf(stderr, "epoch %d/%d: step %lld, train loss %.4f\n", p->epoch, p->epochs, (long long)p->step, p->loss);
        else
            fprintf(stderr, "epoch %d/%d: step %lld, train loss %.4f, validation loss %.4f (perplexity %.3f)\n", p->epoch,
                    p->epochs, (long long)p->step, p->loss, p->val_loss, exp(p->val_loss));
        return;
    }
    if (!st->tty) return;
    char eta[32];
    fmt_duration(p->eta_s, eta, sizeof eta);
    fprintf(stderr, "\r\033[Kstep %lld/%lld  epoch %d/%d  loss %.4f  lr %.2e  %.0f tok/s  ETA %s", (long long)p->step,
            (long long)p->total_steps, p->epoch, p->epochs, p->loss, p->lr, p->tokens_per_s, eta);
    st->line_open = true;
}

int cmd_finetune(int argc, char **argv) {
    const char *verb = "finetune";
    int status;
    if (cli_usage(argc, argv, finetune_help, &status)) return status;
    slm_finetune_params p = slm_finetune_default_params();
    const char *model_path = NULL;
    progress_state ps = {.tty = isatty(2)};
    char err[512];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        double x;
        if (cli_is_help(a)) {
            fputs(finetune_help, stdout);
            return 0;
        }
#define NEED_VALUE \
    if (!v) return cli_fail(verb, "%s needs a value", a); \
    i++
        if (strcmp(a, "--data") == 0) {
            NEED_VALUE;
            p.data_path = v;
        } else if (strcmp(a, "--val") == 0) {
            NEED_VALUE;
            p.val_path = v;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            NEED_VALUE;
            p.out_path = v;
        } else if (strcmp(a, "--resume") == 0) {
            NEED_VALUE;
            p.resume_path = v;
        } else if (strcmp(a, "--checkpoint") == 0) {
            NEED_VALUE;
            p.checkpoint_path = v;
        } else if (strcmp(a, "--chat-template") == 0) {
            NEED_VALUE;
            if (!cli_check_chat_template(verb, v)) return 1;
            p.chat_template = v;
        } else if (strcmp(a, "--targets") == 0) {
            NEED_VALUE;
            if (slm_lora_targets_parse(v, &p.targets, err, sizeof err)) return cli_fail(verb, "--targets: %s", err);
        } else if (strcmp(a, "--schedule") == 0) {
            NEED_VALUE;
            if (strcmp(v, "cosine") == 0) p.schedule = SLM_LR_COSINE;
            else if (strcmp(v, "linear") == 0) p.schedule = SLM_LR_LINEAR;
            else if (strcmp(v, "constant") == 0) p.schedule = SLM_LR_CONSTANT;
            else return cli_fail(verb, "--schedule: '%s' is not cosine, linear or constant", v);
        } else if (strcmp(a, "--rank") == 0) {
            if (!cli_parse_int(verb, a, v, 1, 1024, &n)) return 1;
            i++, p.rank = (int)n;
        } else if (strcmp(a, "--epochs") == 0) {
            if (!cli_parse_int(verb, a, v, 1, 100000, &n)) return 1;
            i++, p.epochs = (int)n;
        } else if (strcmp(a, "--max-steps") == 0) {
            if (!cli_parse_int(verb, a, v, 1, 1000000000L, &n)) return 1;
            i++, p.max_steps = n;
        } else if (strcmp(a, "--warmup") == 0) {
            if (!cli_parse_int(verb, a, v, 0, 1000000000L, &n)) return 1;
            i++, p.warmup_steps = n;
        } else if (strcmp(a, "--batch") == 0) {
            if (!cli_parse_int(verb, a, v, 1, 65536, &n)) return 1;
            i++, p.batch = (int)n;
        } else if (strcmp(a, "--ctx") == 0 || strcmp(a, "-c") == 0) {
            if (!cli_parse_int(verb, a, v, 2, 65536, &n)) return 1;
            i++, p.ctx = (int)n;
        } else if (strcmp(a, "--threads") == 0 || strcmp(a, "-t") == 0) {
            if (!cli_parse_int(verb, a, v, 1, 256, &n)) return 1;
            i++, p.n_threads = (int)n;
        } else if (strcmp(a, "--checkpoint-every") == 0) {
            if (!cli_parse_int(verb, a, v, 1, 1000000000L, &n)) return 1;
            i++, p.checkpoint_every = n;
        } else if (strcmp(a, "--seed") == 0) {
            if (!cli_parse_int(verb, a, v, 0, 0x7FFFFFFFFFFFFFFFL, &n)) return 1;
            i++, p.seed = (uint64_t)n;
        } else if (strcmp(a, "--alpha") == 0 || strcmp(a, "--lr") == 0 || strcmp(a, "--weight-decay") == 0 ||
                   strcmp(a, "--grad-clip") == 0 || strcmp(a, "--val-fraction") == 0) {
            if (!cli_parse_float(verb, a, v, &x)) return 1;
            i++;
            if (!isfinite(x)) return cli_fail(verb, "%s: '%s' is not a finite number", a, v);
            if (strcmp(a, "--alpha") == 0) p.alpha = (float)x;
            else if (strcmp(a, "--lr") == 0) p.lr = (float)x;
            else if (strcmp(a, "--weight-decay") == 0) p.weight_decay = (float)x;
            else if (strcmp(a, "--grad-clip") == 0) p.grad_clip = (float)x;
            else p.val_fraction = (float)x;
        } else if (strcmp(a, "--exact") == 0) p.exact = true;
        else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) ps.quiet = true;
        else if (a[0] == '-' && a[1]) return cli_fail(verb, "unknown option %s (see slm finetune --help)", a);
        else if (!model_path) model_path = a;
        else return cli_fail(verb, "unexpected argument '%s' (one base model)", a);
#undef NEED_VALUE
    }
    if (!model_path) return cli_fail(verb, "no base model given (slm finetune BASE.gguf --data FILE -o ADAPTER.gguf)");
    if (!p.data_path) return cli_fail(verb, "no training data (--data FILE)");
    if (!p.out_path) return cli_fail(verb, "no output path (-o ADAPTER.gguf)");
    if (!(p.alpha > 0)) return cli_fail(verb, "--alpha must be above 0");
    if (!(p.lr > 0) || p.lr > 10) return cli_fail(verb, "--lr must be above 0 and at most 10");
    if (!(p.val_fraction >= 0 && p.val_fraction < 1)) return cli_fail(verb, "--val-fraction must be in [0, 1)");
    if (!(p.weight_decay >= 0)) return cli_fail(verb, "--weight-decay must be 0 or more");
    if (!(p.grad_clip >= 0)) return cli_fail(verb, "--grad-clip must be 0 or more");

    slm_model *model = NULL;
    if (cli_model_load(verb, model_path, NULL, &model)) return 1;
    p.progress = on_progress;
    p.progress_user = &ps;
    slm_finetune_result r;
    int rc = slm_finetune(model, &p, &r, err, sizeof err);
    if (ps.line_open) fputc('\n', stderr);
    slm_model_free(model);
    if (rc) return cli_fail(verb, "%s", err);
    printf("wrote %s: rank %d, alpha %g, %zu parameters; %lld steps over %lld windows (%lld tokens/epoch), %.0f "
           "tokens/s\n",
           p.out_path, p.rank, (double)p.alpha, r.n_params, (long long)r.steps, (long long)r.train_windows,
           (long long)r.train_tokens, r.tokens_per_s);
    if (!isnan(r.val_loss_before))
        printf("validation loss %.6f -> %.6f (perplexity %.4f -> %.4f) over %lld windows\n", r.val_loss_before,
               r.val_loss_after, exp(r.val_loss_before), exp(r.val_loss_after), (long long)r.val_windows);
    else printf("no validation data\n");
    return 0;
}
