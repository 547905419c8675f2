// gfn.c — GFlowNet objectives, sampler, training loop and the command line.
#include "gfn.h"

#include <stdlib.h>
#include <string.h>

#ifndef GFN_NO_MAIN
static void usage(FILE *out) {
    fprintf(out,
        "usage: gfn COMMAND [options]   (gfn COMMAND --help for each)\n"
        "commands:\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    fprintf(stderr, "gfn: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 1;
}
#endif
