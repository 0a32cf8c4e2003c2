/* Placeholder until the verb is implemented; says so instead of pretending. */
#include "cli/cli.h"

int cmd_classify(int argc, char **argv) {
    (void)argc;
    (void)argv;
    return cli_fail("classify", "not implemented yet");
}
