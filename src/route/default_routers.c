/* The routers shipped in routers/ (trained by scripts/train-routers.sh, routers/README.md),
 * embedded in the binary at build time so `router: default` needs no file on the machine. */
#include <stddef.h>

#include "slm_route.h"
#include "slm_router.h"

/* .incbin keeps the bytes exactly as trained (no hex dump in the source); the section is
 * read-only data, 16-byte aligned for the loader. */
__asm__(".section .rodata\n"
        ".balign 16\n"
        "slm_prompt_router_start:\n"
        ".incbin \"" SLM_SOURCE_DIR "/routers/prompt.router\"\n"
        "slm_prompt_router_end:\n"
        ".balign 16\n"
        "slm_cascade_router_start:\n"
        ".incbin \"" SLM_SOURCE_DIR "/routers/cascade.router\"\n"
        "slm_cascade_router_end:\n"
        ".previous\n");

extern const unsigned char slm_prompt_router_start[], slm_prompt_router_end[];
extern const unsigned char slm_cascade_router_start[], slm_cascade_router_end[];

struct slm_router *slm_route_default_router(bool cascade, char *err, size_t err_len) {
    const unsigned char *start = cascade ? slm_cascade_router_start : slm_prompt_router_start;
    const unsigned char *end = cascade ? slm_cascade_router_end : slm_prompt_router_end;
    return slm_router_load_memory(start, (size_t)(end - start), err, err_len);
}
