/* SPDX-License-Identifier: MIT */
/* The tripool command. The only code that reads argv, prints and exits. */
#include <stdio.h>
#include <string.h>

#include "tripool.h"

static int usage(FILE *f)
{
    fprintf(f, "usage: tripool info\n"
               "  info    print what this machine gives tripool (usable CPUs)\n");
    return f == stderr ? 2 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return usage(stdout);
    if (strcmp(argv[1], "info") == 0) {
        printf("tripool %d.%d.%d: usable CPUs %u\n", TP_VERSION_MAJOR, TP_VERSION_MINOR,
               TP_VERSION_PATCH, tp_usable_cpus());
        return 0;
    }
    fprintf(stderr, "tripool: unknown command '%s'\n", argv[1]);
    return usage(stderr);
}
