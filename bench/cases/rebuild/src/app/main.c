/* main.c: part of the benchmark's stand-in application. */
#include "core.h"

int app_main(struct core *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (core_parse_run(c, argv[i]) != 0)
            return 1;
    return 0;
}
