/* Placeholder until the verb is implemented; says so instead of pretending. */
#include "cli/cli.h"

int cmd_extract(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_fail("extract", "not implemented yet");
}
