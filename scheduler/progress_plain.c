/*
 * The "plain" progress reporter: BuildKit's plain output, one line per
 * event, for logs and CI.
 *
 *   #3 [build 2/5] RUN make
 *   #3 0.412 cc -c a.c
 *   #3 DONE 1.2s
 *
 *   #4 [build 3/5] COPY . /src
 *   #4 CACHED
 *
 * Lines of a vertex are prefixed with its number (#N, in the order vertices
 * first appear) and log lines with the seconds since the vertex started.
 * When another vertex's lines come in between, the header ("#N name") is
 * repeated, as BuildKit does, so interleaved output stays attributable.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct plain {
    struct sched_reporter base;
    FILE *out;
    unsigned last;  /* number of the vertex printed last, 0 for none */
    double *starts; /* start time per vertex number */
    size_t cap;
};

static void header(struct plain *p, const struct sched_event *ev)
{
    if (p->last == ev->num)
        return;
    char buf[128];
    if (p->last)
        fputc('\n', p->out);
    fprintf(p->out, "#%u %s\n", ev->num, sched_vertex_label(ev->v, buf, sizeof(buf)));
    p->last = ev->num;
}

static void plain_event(struct sched_reporter *r, const struct sched_event *ev)
{
    struct plain *p = (struct plain *)r;
    if (ev->num >= p->cap) {
        size_t old = p->cap;
        p->starts = kn_grow(p->starts, &p->cap, (size_t)ev->num + 1, sizeof(*p->starts));
        memset(p->starts + old, 0, (p->cap - old) * sizeof(*p->starts));
    }
    header(p, ev);
    switch (ev->kind) {
    case SCHED_EV_START:
        p->starts[ev->num] = ev->time;
        break;
    case SCHED_EV_CACHED:
        fprintf(p->out, "#%u CACHED\n", ev->num);
        break;
    case SCHED_EV_LOG: {
        size_t len = ev->len;
        if (len && ev->data[len - 1] == '\r')
            len--;
        fprintf(p->out, "#%u %.3f ", ev->num, ev->time - p->starts[ev->num]);
        fwrite(ev->data, 1, len, p->out);
        fputc('\n', p->out);
        break;
    }
    case SCHED_EV_DONE:
        fprintf(p->out, "#%u DONE %.1fs\n", ev->num, ev->duration);
        break;
    case SCHED_EV_ERROR:
        fprintf(p->out, "#%u ERROR: %s\n", ev->num,
                ev->err && ev->err->msg ? ev->err->msg : "failed");
        break;
    case SCHED_EV_CANCELED:
        fprintf(p->out, "#%u CANCELED\n", ev->num);
        break;
    }
    fflush(p->out);
}

static void plain_destroy(struct sched_reporter *r)
{
    struct plain *p = (struct plain *)r;
    free(p->starts);
    free(p);
}

struct sched_reporter *sched_reporter_plain_new(FILE *out)
{
    struct plain *p = kn_calloc(1, sizeof(*p));
    p->base.event = plain_event;
    p->base.destroy = plain_destroy;
    p->out = out;
    return &p->base;
}
