/*
 * scheduler/internal.h: what the scheduler's own files (the run loop, the
 * reporters, the trace writer) and its unit tests share, and nobody else.
 */
#ifndef KILN_SCHED_INTERNAL_H
#define KILN_SCHED_INTERNAL_H

#include "scheduler.h"

/* Appends s[0..n) as the body of a JSON string (no quotes): escapes '"',
 * '\\' and control characters, and replaces bytes that are not valid UTF-8
 * with U+FFFD so the output is always valid JSON. */
void sched_json_escape(struct kn_buf *b, const char *s, size_t n);

/* The name shown for a vertex: its name, else "<op> <short digest>". Writes
 * into buf when it has to build one. */
const char *sched_vertex_label(const struct ir_vertex *v, char *buf, size_t size);

/* The built-in reporters (progress_*.c). */
struct sched_reporter *sched_reporter_plain_new(FILE *out);
struct sched_reporter *sched_reporter_tty_new(FILE *out);
struct sched_reporter *sched_reporter_json_new(FILE *out);
struct sched_reporter *sched_reporter_quiet_new(void);

/* One finished work item, for the trace (trace.c). */
struct sched_trace_item {
    uint32_t vertex;
    int slot;
    uint64_t start_us, end_us; /* since the run started */
    bool cached;
};
/* Writes a Chrome trace (a JSON array of "X" events plus track names) to
 * f. CPU slots are 1..ncpu, I/O slots jobs+1..jobs+nio. */
int sched_trace_write(FILE *f, const char *path, const struct ir_graph *g,
                      const struct sched_trace_item *items, size_t n, int jobs, int ncpu, int nio,
                      struct kn_error **err);

#endif
