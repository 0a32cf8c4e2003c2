/* slm ledger — being built (issue 14). */
#include "cli.h"

int cmd_ledger(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_fail("ledger", "not built yet");
}
