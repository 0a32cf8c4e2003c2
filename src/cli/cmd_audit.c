/* slm audit — being built (issue 13). */
#include "cli.h"

int cmd_audit(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_fail("audit", "not built yet");
}
