/* list.c: part of the benchmark's stand-in library. */
#include "core.h"

int core_list_init(struct core *c)
{
    c->list_ready = 1;
    return 0;
}

int core_list_run(struct core *c, const char *arg)
{
    if (!c->list_ready)
        return -1;
    return core_log(c, "list: %s", arg);
}
