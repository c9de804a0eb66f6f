/* parse.c: part of the benchmark's stand-in library. */
#include "core.h"

int core_parse_init(struct core *c)
{
    c->parse_ready = 1;
    return 0;
}

int core_parse_run(struct core *c, const char *arg)
{
    if (!c->parse_ready)
        return -1;
    return core_log(c, "parse: %s", arg);
}
