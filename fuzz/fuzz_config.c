/* libFuzzer target for the YAML config parser: any bytes either parse into a config whose every
 * route names defined models/upstreams and whose numbers are in range, or fail with one line
 * naming the place; nothing leaks. */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "slm_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    slm_config *c = NULL;
    char err[512];
    err[0] = 0;
    if (slm_config_parse((const char *)data, size, "fuzz.yaml", &c, err, sizeof err) != 0) {
        assert(c == NULL && err[0] && !strchr(err, '\n'));
        return 0;
    }
    for (int i = 0; i < c->n_routes; i++) {
        const slm_config_route *r = &c->routes[i];
        assert(r->name && r->local && r->frontier_share >= 0 && r->frontier_share <= 1);
        int found = 0;
        for (int j = 0; j < c->n_models; j++) found |= !strcmp(c->models[j].name, r->local);
        assert(found);
    }
    for (int i = 0; i < c->n_models; i++) assert(c->models[i].path && c->models[i].price.input >= 0);
    for (int i = 0; i < c->n_upstreams; i++) assert(c->upstreams[i].url && c->upstreams[i].model);
    slm_config_free(c);
    return 0;
}
