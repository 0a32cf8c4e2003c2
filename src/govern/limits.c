/* Sliding-window rate limits per key (see limits.h). Each key keeps the events of its last
 * minute in a small growable ring; keys are few, so a linear table is enough. */
#include "limits.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "slm_store.h"

#define WINDOW_S 60.0

typedef struct event {
    double t;
    int tokens; /* 0 for a request event */
} event;

typedef struct window {
    event *ev;
    int head, n, cap;
} window;

typedef struct key_state {
    char name[SLM_KEY_NAME_MAX];
    window requests, tokens;
} key_state;

struct rate_limits {
    pthread_mutex_t mu;
    key_state *keys;
    int n, cap;
};

rate_limits *rate_limits_new(void) {
    rate_limits *rl = calloc(1, sizeof *rl);
    if (rl) pthread_mutex_init(&rl->mu, NULL);
    return rl;
}

void rate_limits_free(rate_limits *rl) {
    if (!rl) return;
    for (int i = 0; i < rl->n; i++) {
        free(rl->keys[i].requests.ev);
        free(rl->keys[i].tokens.ev);
    }
    free(rl->keys);
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

static void expire(window *w, double now) {
    while (w->n > 0 && w->ev[w->head].t <= now - WINDOW_S) {
        w->head = (w->head + 1) % w->cap;
        w->n--;
    }
}

static bool push(window *w, double t, int tokens) {
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 16;
        event *ev = malloc(sizeof *ev * (size_t)cap);
        if (!ev) return false;
        for (int i = 0; i < w->n; i++) ev[i] = w->ev[(w->head + i) % w->cap];
        free(w->ev);
        w->ev = ev;
        w->head = 0;
        w->cap = cap;
    }
    w->ev[(w->head + w->n) % w->cap] = (event){t, tokens};
    w->n++;
    return true;
}

static key_state *find(rate_limits *rl, const char *key, bool create) {
    for (int i = 0; i < rl->n; i++)
        if (strcmp(rl->keys[i].name, key) == 0) return &rl->keys[i];
    if (!create) return NULL;
    if (rl->n == rl->cap) {
        int cap = rl->cap ? 2 * rl->cap : 16;
        key_state *grown = realloc(rl->keys, sizeof *grown * (size_t)cap);
        if (!grown) return NULL;
        rl->keys = grown;
        rl->cap = cap;
    }
    key_state *k = &rl->keys[rl->n++];
    memset(k, 0, sizeof *k);
    strncpy(k->name, key, sizeof k->name - 1);
    return k;
}

static int seconds_until(double t, double now) {
    double s = ceil(t + WINDOW_S - now);
    return s < 1 ? 1 : (int)s;
}

bool rate_limits_admit(rate_limits *rl, const char *key, int rpm, int tpm, double now, int *retry_after,
                       const char **which) {
    if (rpm <= 0 && tpm <= 0) return true;
    pthread_mutex_lock(&rl->mu);
    bool ok = true;
    key_state *k = find(rl, key, true);
    if (k) {
        expire(&k->requests, now);
        expire(&k->tokens, now);
        if (rpm > 0 && k->requests.n >= rpm) {
            /* admitted again when enough of the oldest requests have left the window */
            *retry_after = seconds_until(k->requests.ev[(k->requests.head + k->requests.n - rpm) % k->requests.cap].t, now);
            *which = "rpm";
            ok = false;
        } else if (tpm > 0) {
            long used = 0;
            for (int i = 0; i < k->tokens.n; i++) used += k->tokens.ev[(k->tokens.head + i) % k->tokens.cap].tokens;
            if (used >= tpm) {
                /* find the moment enough tokens expire to go below the limit */
                long left = used;
                int i = 0;
                for (; i < k->tokens.n && left >= tpm; i++) left -= k->tokens.ev[(k->tokens.head + i) % k->tokens.cap].tokens;
                *retry_after = seconds_until(k->tokens.ev[(k->tokens.head + i - 1) % k->tokens.cap].t, now);
                *which = "tpm";
                ok = false;
            }
        }
        if (ok) push(&k->requests, now, 0);
    }
    pthread_mutex_unlock(&rl->mu);
    return ok;
}

void rate_limits_charge(rate_limits *rl, const char *key, int tokens, double now) {
    if (tokens <= 0) return;
    pthread_mutex_lock(&rl->mu);
    key_state *k = find(rl, key, true);
    if (k) {
        expire(&k->tokens, now);
        push(&k->tokens, now, tokens);
    }
    pthread_mutex_unlock(&rl->mu);
}
