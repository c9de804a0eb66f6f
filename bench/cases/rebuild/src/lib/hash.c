/* hash.c: part of the benchmark's stand-in library. */
#include "core.h"

int core_hash_init(struct core *c)
{
    c->hash_ready = 1;
    return 0;
}

int core_hash_run(struct core *c, const char *arg)
{
    if (!c->hash_ready)
        return -1;
    return core_log(c, "hash: %s", arg);
}
