/* map.c: part of the benchmark's stand-in library. */
#include "core.h"

int core_map_init(struct core *c)
{
    c->map_ready = 1;
    return 0;
}

int core_map_run(struct core *c, const char *arg)
{
    if (!c->map_ready)
        return -1;
    return core_log(c, "map: %s", arg);
}
