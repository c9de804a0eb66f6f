/*
 * Chrome trace output (--trace FILE): the run as a JSON array of complete
 * ("X") events, one per work item that ran, on one track per worker slot,
 * so chrome://tracing or https://ui.perfetto.dev shows the parallelism.
 * Metadata ("M") events name the tracks "cpu N" and "io N".
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

int sched_trace_write(FILE *f, const char *path, const struct ir_graph *g,
                      const struct sched_trace_item *items, size_t n, int jobs, int ncpu, int nio,
                      struct kn_error **err)
{
    struct kn_buf b = KN_BUF_INIT;
    char buf[128];
    kn_buf_adds(&b, "[\n{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"tid\":0,"
                    "\"args\":{\"name\":\"kiln build\"}}");
    for (int i = 1; i <= ncpu; i++)
        kn_buf_addf(&b,
                    ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%d,"
                    "\"args\":{\"name\":\"cpu %d\"}}",
                    i, i);
    for (int i = 1; i <= nio; i++)
        kn_buf_addf(&b,
                    ",\n{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":1,\"tid\":%d,"
                    "\"args\":{\"name\":\"io %d\"}}",
                    jobs + i, i);
    for (size_t i = 0; i < n; i++) {
        const struct sched_trace_item *it = &items[i];
        const struct ir_vertex *v = &g->v[it->vertex];
        const char *name = sched_vertex_label(v, buf, sizeof(buf));
        kn_buf_adds(&b, ",\n{\"name\":\"");
        sched_json_escape(&b, name, strlen(name));
        kn_buf_addf(&b,
                    "\",\"cat\":\"%s\",\"ph\":\"X\",\"ts\":%llu,\"dur\":%llu,\"pid\":1,\"tid\":%d,"
                    "\"args\":{\"digest\":\"%s\",\"vertex\":%u,\"cached\":%s}}",
                    ir_op_name(v->op) ? ir_op_name(v->op) : "?", (unsigned long long)it->start_us,
                    (unsigned long long)(it->end_us - it->start_us), it->slot, v->digest,
                    it->vertex, it->cached ? "true" : "false");
    }
    kn_buf_adds(&b, "\n]\n");
    size_t len = b.len;
    size_t w = fwrite(b.data, 1, len, f);
    kn_buf_release(&b);
    if (w != len || fflush(f) != 0)
        return kn_err_set(err, KN_E_IO, "cannot write trace file '%s': %s", path,
                          strerror(errno ? errno : EIO));
    return 0;
}
