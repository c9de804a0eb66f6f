/* util.c: part of the benchmark's stand-in library. */
#include "core.h"

int core_util_init(struct core *c)
{
    c->util_ready = 1;
    return 0;
}

int core_util_run(struct core *c, const char *arg)
{
    if (!c->util_ready)
        return -1;
    return core_log(c, "util: %s", arg);
}
