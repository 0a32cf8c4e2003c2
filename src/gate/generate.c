/* slm_generate: one sequence of a caller's context, run like every other generation: a call
 * through a gate to the engine (a private engine over the borrowed context, stepped by this
 * thread). The CLI's run and chat verbs and the library's users come through here. */
#include <stdlib.h>
#include <string.h>

#include "slm.h"
#include "slm_engine.h"
#include "slm_gate.h"
#include "util/err.h"

int slm_generate(slm_context *ctx, slm_sampler *sampler, const slm_token *prompt, int n_prompt,
                 const slm_generate_params *params, slm_text_fn on_text, void *user, slm_generate_result *res, char *err,
                 size_t err_len) {
    slm_generate_params gp = {0};
    if (params) gp = *params;
    if (res) memset(res, 0, sizeof *res);
    int n_ctx = slm_context_n_ctx(ctx);
    if (gp.seq < 0 || gp.seq >= slm_context_n_seq(ctx))
        return slm_err(err, err_len, "sequence %d is outside the context", gp.seq);
    if (n_prompt < 1) return slm_err(err, err_len, "empty prompt");
    if (n_prompt > n_ctx) return slm_err(err, err_len, "prompt has %d tokens, more than the context size %d", n_prompt, n_ctx);
    if (gp.max_tokens > 0 && n_prompt + gp.max_tokens > n_ctx)
        return slm_err(err, err_len, "prompt (%d tokens) + max tokens (%d) exceeds the context size %d", n_prompt,
                       gp.max_tokens, n_ctx);
    if (gp.n_stop < 0 || gp.n_stop > SLM_MAX_STOP || (gp.n_stop > 0 && !gp.stop))
        return slm_err(err, err_len, "invalid stop list (at most %d strings)", SLM_MAX_STOP);

    slm_engine *e = NULL;
    slm_gate *g = NULL;
    slm_request *r = NULL;
    slm_gate_call call;
    int rc = -1;
    if (slm_engine_new(&(slm_engine_params){.queue_cap = -1}, &e, err, err_len) != 0) return -1;
    if (slm_engine_add_context(e, "generate", ctx, err, err_len) != 0 || slm_gate_new(e, &g, err, err_len) != 0) goto done;
    r = slm_request_new(SLM_REQ_GENERATE);
    if (!r || !(r->prompt = malloc(sizeof *r->prompt * (size_t)n_prompt))) {
        slm_err(err, err_len, "out of memory");
        goto done;
    }
    memcpy(r->prompt, prompt, sizeof *r->prompt * (size_t)n_prompt);
    r->n_prompt = n_prompt;
    r->seq = gp.seq;
    r->sampler = sampler;
    r->gen.max_tokens = gp.max_tokens;
    r->gen.min_tokens = gp.min_tokens;
    r->gen.ignore_eos = gp.ignore_eos;
    r->gen.raw_bytes = true;
    for (int i = 0; i < gp.n_stop; i++) {
        if (!(r->gen.stop[i] = strdup(gp.stop[i]))) {
            slm_err(err, err_len, "out of memory");
            goto done;
        }
        r->gen.n_stop = i + 1;
    }
    slm_gate_call_init(&call, SLM_CALL_GENERATE, "library", "generate");
    call.request = r;
    if (!slm_gate_admit(g, &call) || !slm_gate_submit(g, &call)) {
        slm_err(err, err_len, "%s", call.error);
        goto done;
    }
    slm_finish f = slm_engine_wait(e, r, on_text, NULL, user);
    call.prompt_tokens = n_prompt;
    call.completion_tokens = r->n_tokens;
    if (f == SLM_FINISH_ERROR) slm_gate_refuse(&call, r->error_is_client ? 400 : 500, "generation_failed", "%s", r->error);
    slm_gate_finish(g, &call);
    if (f == SLM_FINISH_ERROR) {
        slm_err(err, err_len, "%s", r->error);
        goto done;
    }
    if (res) {
        res->n_prompt = n_prompt;
        res->n_prompt_cached = r->n_prompt_cached;
        res->n_generated = r->n_tokens;
        res->finish_reason = f == SLM_FINISH_LENGTH ? "length" : f == SLM_FINISH_CANCELLED ? "cancelled" : "stop";
        double first = r->t_first > 0 ? r->t_first : r->t_end;
        res->prompt_ms = (first - r->t_start) * 1e3;
        res->gen_ms = (r->t_end - first) * 1e3;
    }
    rc = 0;
done:
    slm_request_release(r);
    slm_gate_free(g);
    slm_engine_free(e);
    return rc;
}
