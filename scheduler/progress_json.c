/*
 * The "json" progress reporter: one JSON object a line, for programs.
 *
 *   {"time":0.412,"id":3,"vertex":"sha256:...","name":"[build 2/5] RUN make","event":"start"}
 *   {"time":0.530,"id":3,...,"event":"log","stream":"stdout","data":"cc -c a.c"}
 *   {"time":1.612,"id":3,...,"event":"done","duration":1.200}
 *
 * "time" is seconds since the run started; "duration" comes with done,
 * cached, error and canceled; "error" carries the message of an error.
 * Strings are escaped by hand (the scheduler does not link jansson), and
 * bytes that are not UTF-8 become U+FFFD, so every line parses.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct json {
    struct sched_reporter base;
    FILE *out;
    struct kn_buf line;
};

static const char *const event_names[] = {
    [SCHED_EV_START] = "start", [SCHED_EV_CACHED] = "cached", [SCHED_EV_LOG] = "log",
    [SCHED_EV_DONE] = "done",   [SCHED_EV_ERROR] = "error",   [SCHED_EV_CANCELED] = "canceled",
};

static void add_str(struct kn_buf *b, const char *key, const char *s, size_t n)
{
    kn_buf_addf(b, ",\"%s\":\"", key);
    sched_json_escape(b, s, n);
    kn_buf_addc(b, '"');
}

static void json_event(struct sched_reporter *r, const struct sched_event *ev)
{
    struct json *j = (struct json *)r;
    struct kn_buf *b = &j->line;
    char buf[128];
    const char *name = sched_vertex_label(ev->v, buf, sizeof(buf));
    kn_buf_reset(b);
    kn_buf_addf(b, "{\"time\":%.3f,\"id\":%u", ev->time, ev->num);
    add_str(b, "vertex", ev->v->digest, strlen(ev->v->digest));
    add_str(b, "name", name, strlen(name));
    kn_buf_addf(b, ",\"event\":\"%s\"", event_names[ev->kind]);
    switch (ev->kind) {
    case SCHED_EV_START:
        break;
    case SCHED_EV_LOG:
        kn_buf_addf(b, ",\"stream\":\"%s\"", ev->stream == SCHED_STDERR ? "stderr" : "stdout");
        add_str(b, "data", ev->data, ev->len);
        break;
    case SCHED_EV_ERROR: {
        const char *msg = ev->err && ev->err->msg ? ev->err->msg : "failed";
        kn_buf_addf(b, ",\"duration\":%.3f", ev->duration);
        add_str(b, "error", msg, strlen(msg));
        break;
    }
    case SCHED_EV_CACHED:
    case SCHED_EV_DONE:
    case SCHED_EV_CANCELED:
        kn_buf_addf(b, ",\"duration\":%.3f", ev->duration);
        break;
    }
    kn_buf_adds(b, "}\n");
    fwrite(b->data, 1, b->len, j->out);
    fflush(j->out);
}

static void json_destroy(struct sched_reporter *r)
{
    struct json *j = (struct json *)r;
    kn_buf_release(&j->line);
    free(j);
}

struct sched_reporter *sched_reporter_json_new(FILE *out)
{
    struct json *j = kn_calloc(1, sizeof(*j));
    j->base.event = json_event;
    j->base.destroy = json_destroy;
    j->out = out;
    return &j->base;
}
