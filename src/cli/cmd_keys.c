/* slm keys — being built (issue 13). */
#include "cli.h"

int cmd_keys(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_fail("keys", "not built yet");
}
