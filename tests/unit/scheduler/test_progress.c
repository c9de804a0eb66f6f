/*
 * Unit tests for the progress reporters: the exact lines of "plain" and
 * "json" for a small real run (times masked as T), plain's header
 * repetition when vertices interleave, JSON escaping of hostile log bytes
 * (checked by parsing with jansson), the tty display's pieces, TERM=dumb,
 * "quiet", and an unknown mode's message.
 */
#include "fake.h"
#include "scheduler/internal.h"
#include "tap.h"

#include <ctype.h>
#include <jansson.h>

/* Replaces every "<digits>.<digits>" with "T". */
static char *mask(const char *s)
{
    struct kn_buf b = KN_BUF_INIT;
    for (size_t i = 0; s[i];) {
        size_t j = i;
        while (isdigit((unsigned char)s[j]))
            j++;
        if (j > i && s[j] == '.' && isdigit((unsigned char)s[j + 1])) {
            j++;
            while (isdigit((unsigned char)s[j]))
                j++;
            kn_buf_addc(&b, 'T');
            i = j;
        } else {
            kn_buf_addc(&b, s[i]);
            i++;
        }
    }
    return kn_buf_detach(&b);
}

struct capture {
    char *data;
    size_t len;
    FILE *f;
};

static void cap_open(struct capture *c)
{
    c->data = NULL;
    c->len = 0;
    c->f = open_memstream(&c->data, &c->len);
}

static char *cap_close_masked(struct capture *c)
{
    fclose(c->f);
    char *m = mask(c->data);
    free(c->data);
    return m;
}

/* a (cached) -> b (logs) -> c, run with jobs=1 through the reporter */
static int small_run(struct sched_reporter *rep, struct ir_graph **gout, bool fail)
{
    struct ir_graph *g = ir_graph_new();
    uint32_t a = gadd(g, "[s 1/3] FROM a", NULL, 0);
    uint32_t b = gadd1(g, "[s 2/3] RUN b", a);
    uint32_t c = gadd1(g, "[s 3/3] RUN c", b);
    struct fake *f = fake_new(g);
    char key[SCHED_KEY_SIZE];
    fake_key(g, a, NULL, key);
    fake_cache_add(f, key, "a");
    f->logtext[b] = "hello\nworld\r\npartial";
    if (fail) {
        f->logtext[c] = "oops\n";
        f->fail[c] = "exit code: 1";
    }
    struct sched_handlers h = fake_handlers(f);
    struct sched_opts o = {.jobs = 1, .reporter = rep};
    void *res = NULL;
    struct kn_error *err = NULL;
    int rc = sched_run(g, &c, 1, &h, &o, &res, NULL, &err);
    if (res)
        fake_release(f, res);
    kn_err_free(err);
    fake_free(f);
    *gout = g;
    return rc;
}

static void test_plain_run(void)
{
    struct capture c;
    cap_open(&c);
    struct kn_error *err = NULL;
    struct sched_reporter *rep = sched_reporter_new("plain", c.f, &err);
    struct ir_graph *g;
    is_int(small_run(rep, &g, false), 0, "plain: run succeeds");
    sched_reporter_free(rep);
    char *out = cap_close_masked(&c);
    is_str(out,
           "#1 [s 1/3] FROM a\n"
           "#1 CACHED\n"
           "\n"
           "#2 [s 2/3] RUN b\n"
           "#2 T hello\n"
           "#2 T world\n"
           "#2 T partial\n"
           "#2 DONE Ts\n"
           "\n"
           "#3 [s 3/3] RUN c\n"
           "#3 DONE Ts\n",
           "plain: the lines of a small run");
    free(out);
    ir_graph_free(g);

    cap_open(&c);
    rep = sched_reporter_new("plain", c.f, &err);
    is_int(small_run(rep, &g, true), -1, "plain: failing run fails");
    sched_reporter_free(rep);
    out = cap_close_masked(&c);
    is_str(out,
           "#1 [s 1/3] FROM a\n"
           "#1 CACHED\n"
           "\n"
           "#2 [s 2/3] RUN b\n"
           "#2 T hello\n"
           "#2 T world\n"
           "#2 T partial\n"
           "#2 DONE Ts\n"
           "\n"
           "#3 [s 3/3] RUN c\n"
           "#3 T oops\n"
           "#3 ERROR: exit code: 1\n",
           "plain: the lines of a failing run");
    free(out);
    ir_graph_free(g);
}

static void test_json_run(void)
{
    struct capture c;
    cap_open(&c);
    struct kn_error *err = NULL;
    struct sched_reporter *rep = sched_reporter_new("json", c.f, &err);
    struct ir_graph *g;
    is_int(small_run(rep, &g, false), 0, "json: run succeeds");
    sched_reporter_free(rep);
    fclose(c.f);

    /* every line is a JSON object with the fields */
    int lines = 0, bad = 0;
    for (char *line = strtok(c.data, "\n"); line; line = strtok(NULL, "\n")) {
        lines++;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o || !json_is_number(json_object_get(o, "time")) ||
            !json_is_string(json_object_get(o, "vertex")) ||
            !json_is_string(json_object_get(o, "event")) ||
            !json_is_string(json_object_get(o, "name")))
            bad++;
        json_decref(o);
    }
    is_int(lines, 8, "json: one line per event");
    is_int(bad, 0, "json: every line parses and has time, vertex, name, event");
    free(c.data);

    /* and the exact text */
    cap_open(&c);
    rep = sched_reporter_new("json", c.f, &err);
    ir_graph_free(g);
    small_run(rep, &g, false);
    sched_reporter_free(rep);
    char *out = cap_close_masked(&c);
    const char *da = g->v[0].digest, *db = g->v[1].digest, *dc = g->v[2].digest;
    char *want = kn_asprintf(
        "{\"time\":T,\"id\":1,\"vertex\":\"%s\",\"name\":\"[s 1/3] FROM a\",\"event\":\"cached\","
        "\"duration\":T}\n"
        "{\"time\":T,\"id\":2,\"vertex\":\"%s\",\"name\":\"[s 2/3] RUN b\",\"event\":\"start\"}\n"
        "{\"time\":T,\"id\":2,\"vertex\":\"%s\",\"name\":\"[s 2/3] RUN b\",\"event\":\"log\","
        "\"stream\":\"stdout\",\"data\":\"hello\"}\n"
        "{\"time\":T,\"id\":2,\"vertex\":\"%s\",\"name\":\"[s 2/3] RUN b\",\"event\":\"log\","
        "\"stream\":\"stdout\",\"data\":\"world\\r\"}\n"
        "{\"time\":T,\"id\":2,\"vertex\":\"%s\",\"name\":\"[s 2/3] RUN b\",\"event\":\"log\","
        "\"stream\":\"stdout\",\"data\":\"partial\"}\n"
        "{\"time\":T,\"id\":2,\"vertex\":\"%s\",\"name\":\"[s 2/3] RUN b\",\"event\":\"done\","
        "\"duration\":T}\n"
        "{\"time\":T,\"id\":3,\"vertex\":\"%s\",\"name\":\"[s 3/3] RUN c\",\"event\":\"start\"}\n"
        "{\"time\":T,\"id\":3,\"vertex\":\"%s\",\"name\":\"[s 3/3] RUN c\",\"event\":\"done\","
        "\"duration\":T}\n",
        da, db, db, db, db, db, dc, dc);
    is_str(out, want, "json: the lines of a small run");
    free(want);
    free(out);
    ir_graph_free(g);
}

static struct sched_event ev_of(const struct ir_graph *g, uint32_t vi, enum sched_event_kind k,
                                double t)
{
    struct sched_event ev = {
        .kind = k, .g = g, .vertex = vi, .v = &g->v[vi], .num = vi + 1, .time = t, .slot = 1};
    return ev;
}

static void feed_log(struct sched_reporter *r, const struct ir_graph *g, uint32_t vi,
                     const char *line, double t)
{
    struct sched_event ev = ev_of(g, vi, SCHED_EV_LOG, t);
    ev.stream = SCHED_STDOUT;
    ev.data = line;
    ev.len = strlen(line);
    r->event(r, &ev);
}

/* plain repeats the header when another vertex's lines came in between */
static void test_plain_interleave(void)
{
    struct ir_graph *g = ir_graph_new();
    gadd(g, "A", NULL, 0);
    gadd(g, "B", NULL, 0);
    struct capture c;
    cap_open(&c);
    struct sched_reporter *r = sched_reporter_plain_new(c.f);
    struct sched_event ev = ev_of(g, 0, SCHED_EV_START, 0.1);
    r->event(r, &ev);
    ev = ev_of(g, 1, SCHED_EV_START, 0.2);
    r->event(r, &ev);
    feed_log(r, g, 0, "x", 0.35);
    feed_log(r, g, 0, "x2", 0.4);
    feed_log(r, g, 1, "y", 1.2);
    ev = ev_of(g, 1, SCHED_EV_DONE, 1.3);
    ev.duration = 1.1;
    r->event(r, &ev);
    ev = ev_of(g, 0, SCHED_EV_CANCELED, 1.4);
    r->event(r, &ev);
    sched_reporter_free(r);
    fclose(c.f);
    is_str(c.data,
           "#1 A\n\n#2 B\n\n#1 A\n#1 0.250 x\n#1 0.300 x2\n\n#2 B\n#2 1.000 y\n#2 DONE 1.1s\n"
           "\n#1 A\n#1 CANCELED\n",
           "plain: headers repeated on interleaving, log times relative to the start");
    free(c.data);
    ir_graph_free(g);
}

static void test_json_escape(void)
{
    struct ir_graph *g = ir_graph_new();
    gadd(g, "name \"quoted\"\ttab", NULL, 0);
    struct capture c;
    cap_open(&c);
    struct sched_reporter *r = sched_reporter_json_new(c.f);
    const char hostile[] = "say \"hi\"\x01\\ \xff\xc3\xa9 \xe2\x82 \xed\xa0\x80!";
    feed_log(r, g, 0, hostile, 0.5);
    struct sched_event ev = ev_of(g, 0, SCHED_EV_ERROR, 0.6);
    struct kn_error *e = kn_err_new(KN_E_EXEC, "bad \"thing\"\n");
    ev.err = e;
    r->event(r, &ev);
    sched_reporter_free(r);
    fclose(c.f);
    char *nl = strchr(c.data, '\n');
    ok(nl != NULL, "json escape: a line");
    if (nl) {
        *nl = '\0';
        json_error_t je;
        json_t *o = json_loads(c.data, 0, &je);
        ok(o != NULL, "json escape: parses (%s)", o ? "ok" : je.text);
        is_str(json_string_value(json_object_get(o, "data")),
               "say \"hi\"\x01\\ \xef\xbf\xbd\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd "
               "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!",
               "json escape: quotes, control bytes kept, invalid UTF-8 replaced");
        is_str(json_string_value(json_object_get(o, "name")), "name \"quoted\"\ttab",
               "json escape: the name");
        is_str(json_string_value(json_object_get(o, "stream")), "stdout", "json escape: stream");
        json_decref(o);
        json_t *o2 = json_loads(nl + 1, 0, &je);
        is_str(json_string_value(json_object_get(o2, "error")), "bad \"thing\"\n",
               "json escape: the error message");
        is_str(json_string_value(json_object_get(o2, "event")), "error", "json escape: event");
        json_decref(o2);
    }
    kn_err_free(e);
    free(c.data);
    ir_graph_free(g);
}

static void test_tty(void)
{
    struct ir_graph *g = ir_graph_new();
    gadd(g, "[s 1/2] FROM a", NULL, 0);
    gadd(g, "[s 2/2] RUN make", NULL, 0);
    setenv("TERM", "xterm", 1);
    struct capture c;
    cap_open(&c);
    struct kn_error *err = NULL;
    struct sched_reporter *r = sched_reporter_new("tty", c.f, &err);
    ok(r && r->tick && r->tick_ms == 100, "tty: ticks every 100 ms");
    struct sched_event ev = ev_of(g, 0, SCHED_EV_CACHED, 0.1);
    r->event(r, &ev);
    ev = ev_of(g, 1, SCHED_EV_START, 0.2);
    r->event(r, &ev);
    feed_log(r, g, 1, "cc -c a.c\x1b[31m", 0.3);
    r->tick(r, 0.5);
    feed_log(r, g, 1, "oops", 0.6);
    r->tick(r, 0.7);
    ev = ev_of(g, 1, SCHED_EV_ERROR, 0.8);
    ev.duration = 0.6;
    struct kn_error *e = kn_err_new(KN_E_EXEC, "exit code: 1");
    ev.err = e;
    r->event(r, &ev);
    struct sched_stats st = {.wall_us = 900000};
    r->finish(r, &st, e);
    sched_reporter_free(r);
    fclose(c.f);
    ok(strstr(c.data, " => CACHED [s 1/2] FROM a") != NULL, "tty: the cached line");
    ok(strstr(c.data, "[+] Building 0.5s (1 finished, 1 running)\n") != NULL,
       "tty: the header with counts");
    ok(strstr(c.data, " => [s 2/2] RUN make") != NULL, "tty: the running line");
    ok(strstr(c.data, "0.3s\n    > cc -c a.c[31m\n") != NULL,
       "tty: elapsed time, last output line without control bytes");
    ok(strstr(c.data, "\x1b[3A\r\x1b[J") != NULL, "tty: moves up over the 3 live rows");
    ok(strstr(c.data, " => ERROR [s 2/2] RUN make") != NULL, "tty: the failed line");
    ok(strstr(c.data, "    > cc -c a.c[31m\n    > oops\n    error: exit code: 1\n") != NULL,
       "tty: the failed vertex's output and error stay");
    ok(strstr(c.data, "[+] Building 0.9s (2 finished, 0 running) FAILED\n") != NULL,
       "tty: the final header");
    kn_err_free(e);
    free(c.data);

    setenv("TERM", "dumb", 1);
    cap_open(&c);
    r = sched_reporter_new("tty", c.f, &err);
    ev = ev_of(g, 0, SCHED_EV_CACHED, 0.1);
    r->event(r, &ev);
    sched_reporter_free(r);
    fclose(c.f);
    is_str(c.data, "#1 [s 1/2] FROM a\n#1 CACHED\n", "tty: TERM=dumb is plain");
    free(c.data);
    ir_graph_free(g);
}

static void test_modes(void)
{
    struct kn_error *err = NULL;
    ok(sched_reporter_new("fancy", stderr, &err) == NULL, "bad mode: refused");
    is_str(err ? err->msg : NULL,
           "unknown progress mode 'fancy' (want auto, tty, plain, json or quiet)",
           "bad mode: message");
    is_int(err ? err->code : 0, KN_E_USAGE, "bad mode: usage error");
    kn_err_free(err);
    err = NULL;

    struct capture c;
    cap_open(&c);
    struct sched_reporter *r = sched_reporter_new("quiet", c.f, &err);
    struct ir_graph *g;
    small_run(r, &g, true);
    sched_reporter_free(r);
    fclose(c.f);
    is_int(c.len, 0, "quiet: writes nothing");
    free(c.data);
    ir_graph_free(g);

    /* auto on a memstream (not a terminal) is plain */
    cap_open(&c);
    r = sched_reporter_new("auto", c.f, &err);
    small_run(r, &g, false);
    sched_reporter_free(r);
    fclose(c.f);
    ok(c.data && strncmp(c.data, "#1 [s 1/3] FROM a\n#1 CACHED\n", 28) == 0,
       "auto: plain when not a terminal");
    free(c.data);
    ir_graph_free(g);
}

int main(void)
{
    test_plain_run();
    test_json_run();
    test_plain_interleave();
    test_json_escape();
    test_tty();
    test_modes();
    return tap_done();
}
