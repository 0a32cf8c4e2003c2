/* AdamW with decoupled weight decay (Loshchilov & Hutter), bias-corrected, over one flat vector. */
#include <math.h>
#include <stdlib.h>

#include "train/train_impl.h"

int adamw_init(adamw *o, size_t n) {
    o->n = n;
    o->t = 0;
    o->m = calloc(n ? n : 1, sizeof(float));
    o->v = calloc(n ? n : 1, sizeof(float));
    if (!o->m || !o->v) {
        adamw_free(o);
        return -1;
    }
    return 0;
}

void adamw_free(adamw *o) {
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
}

void adamw_step(adamw *o, float *w, const float *g, float lr, float beta1, float beta2, float eps, float wd) {
    o->t++;
    /* the bias corrections in double: 1 - beta^t loses every digit in f32 for beta2 near 1 */
    float c1 = (float)(1.0 / (1.0 - pow(beta1, (double)o->t)));
    float c2 = (float)(1.0 / (1.0 - pow(beta2, (double)o->t)));
    for (size_t i = 0; i < o->n; i++) {
        float gi = g[i];
        o->m[i] = beta1 * o->m[i] + (1.0f - beta1) * gi;
        o->v[i] = beta2 * o->v[i] + (1.0f - beta2) * gi * gi;
        float mh = o->m[i] * c1, vh = o->v[i] * c2;
        w[i] -= lr * (mh / (sqrtf(vh) + eps) + wd * w[i]);
    }
}

double grad_norm(const float *g, size_t n) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    return sqrt(ss);
}
