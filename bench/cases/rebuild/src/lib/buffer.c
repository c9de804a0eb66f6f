/* buffer.c: part of the benchmark's stand-in library. */
#include "core.h"

int core_buffer_init(struct core *c)
{
    c->buffer_ready = 1;
    return 0;
}

int core_buffer_run(struct core *c, const char *arg)
{
    if (!c->buffer_ready)
        return -1;
    return core_log(c, "buffer: %s", arg);
}
