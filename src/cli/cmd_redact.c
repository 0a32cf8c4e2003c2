/* slm redact — being built (issue 13). */
#include "cli.h"

int cmd_redact(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_fail("redact", "not built yet");
}
