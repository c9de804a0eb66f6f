/*
 * The "tty" progress reporter: a live display like docker buildx's.
 *
 *   => [build 1/3] FROM alpine                              0.0s   (finished: scrolled up)
 *   => CACHED [build 2/3] COPY . /src                       0.0s
 *  [+] Building 3.4s (2 finished, 1 running)                        (live area)
 *   => [build 3/3] RUN make                                 1.2s
 *      > cc -c a.c
 *
 * Events only change the state; the screen is redrawn on the scheduler's
 * ticks (every 100 ms) and at the end: the cursor goes up over the live
 * area, the lines of vertices that finished since the last redraw are
 * printed (they scroll away with the terminal), then the live area: a
 * header and one line per running vertex with its elapsed time and its
 * last output line. A failed vertex leaves its error and its last output
 * lines above. Lines are cut to the terminal's width, so each takes one
 * row and the cursor arithmetic holds. With TERM=dumb this is "plain".
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define TAIL_LINES 10

struct running {
    unsigned num;
    char *label;
    double start;
    char *tail[TAIL_LINES]; /* last output lines, a ring */
    size_t ntail;           /* lines seen in all */
};

struct tty {
    struct sched_reporter base;
    FILE *out;
    KN_VEC(struct running) run;
    struct kn_buf above; /* finished lines not yet printed */
    int drawn;           /* rows of the live area on screen */
    unsigned finished;
    double now;
};

static int term_width(FILE *out)
{
    struct winsize ws;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 10)
        return ws.ws_col;
    return 80;
}

/* Appends s[0..n) with control characters dropped (tabs as spaces), cut to
 * at most cols columns (a UTF-8 sequence counts as one), never splitting a
 * sequence. Returns the columns used. */
static int add_clipped(struct kn_buf *b, const char *s, size_t n, int cols)
{
    int used = 0;
    for (size_t i = 0; i < n && used < cols;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\t') {
            kn_buf_addc(b, ' ');
            used++;
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            i++;
        } else if (c < 0x80) {
            kn_buf_addc(b, (char)c);
            used++;
            i++;
        } else {
            size_t len = 1;
            while (i + len < n && ((unsigned char)s[i + len] & 0xc0) == 0x80 && len < 4)
                len++;
            if ((c & 0xc0) == 0x80) {
                i++; /* a stray continuation byte */
                continue;
            }
            kn_buf_add(b, s + i, len);
            used++;
            i += len;
        }
    }
    return used;
}

/* " => LABEL ...... 1.2s" cut to width. */
static void add_row(struct kn_buf *b, const char *prefix, const char *label, double secs, int width)
{
    char t[32];
    snprintf(t, sizeof(t), " %.1fs", secs);
    int tlen = (int)strlen(t);
    int avail = width - 1 - tlen;
    int used = add_clipped(b, prefix, strlen(prefix), avail);
    used += add_clipped(b, label, strlen(label), avail - used);
    for (; used < avail; used++)
        kn_buf_addc(b, ' ');
    kn_buf_adds(b, t);
    kn_buf_addc(b, '\n');
}

static struct running *find(struct tty *t, unsigned num, size_t *idx)
{
    for (size_t i = 0; i < t->run.n; i++) {
        if (t->run.v[i].num == num) {
            if (idx)
                *idx = i;
            return &t->run.v[i];
        }
    }
    return NULL;
}

static void running_free(struct running *r)
{
    free(r->label);
    for (size_t i = 0; i < TAIL_LINES; i++)
        free(r->tail[i]);
}

static void remove_running(struct tty *t, size_t idx)
{
    running_free(&t->run.v[idx]);
    memmove(&t->run.v[idx], &t->run.v[idx + 1], (t->run.n - idx - 1) * sizeof(*t->run.v));
    t->run.n--;
}

static void tty_event(struct sched_reporter *r, const struct sched_event *ev)
{
    struct tty *t = (struct tty *)r;
    char buf[128];
    const char *label = sched_vertex_label(ev->v, buf, sizeof(buf));
    int width = term_width(t->out);
    size_t idx = 0;
    struct running *run = find(t, ev->num, &idx);
    t->now = ev->time;

    switch (ev->kind) {
    case SCHED_EV_START: {
        struct running nr = {.num = ev->num, .label = kn_strdup(label), .start = ev->time};
        kn_vec_push(&t->run, nr);
        break;
    }
    case SCHED_EV_LOG:
        if (run) {
            size_t slot = run->ntail++ % TAIL_LINES;
            free(run->tail[slot]);
            run->tail[slot] = kn_strndup(ev->data, ev->len);
        }
        break;
    case SCHED_EV_CACHED:
        t->finished++;
        add_row(&t->above, " => CACHED ", label, ev->duration, width);
        break;
    case SCHED_EV_DONE:
        t->finished++;
        add_row(&t->above, " => ", label, ev->duration, width);
        break;
    case SCHED_EV_CANCELED:
        t->finished++;
        add_row(&t->above, " => CANCELED ", label, ev->duration, width);
        break;
    case SCHED_EV_ERROR: {
        t->finished++;
        add_row(&t->above, " => ERROR ", label, ev->duration, width);
        if (run) {
            size_t n = run->ntail < TAIL_LINES ? run->ntail : TAIL_LINES;
            for (size_t i = run->ntail - n; i < run->ntail; i++) {
                const char *l = run->tail[i % TAIL_LINES];
                kn_buf_adds(&t->above, "    > ");
                add_clipped(&t->above, l, strlen(l), width - 7);
                kn_buf_addc(&t->above, '\n');
            }
        }
        const char *msg = ev->err && ev->err->msg ? ev->err->msg : "failed";
        kn_buf_adds(&t->above, "    error: ");
        add_clipped(&t->above, msg, strlen(msg), width - 12);
        kn_buf_addc(&t->above, '\n');
        break;
    }
    }
    if (run && ev->kind != SCHED_EV_LOG && ev->kind != SCHED_EV_START)
        remove_running(t, idx);
}

static void draw(struct tty *t, double now, const char *state)
{
    struct kn_buf b = KN_BUF_INIT;
    int width = term_width(t->out);
    if (t->drawn)
        kn_buf_addf(&b, "\x1b[%dA\r\x1b[J", t->drawn);
    if (t->above.len)
        kn_buf_add(&b, t->above.data, t->above.len);
    kn_buf_reset(&t->above);

    char head[128];
    snprintf(head, sizeof(head), "[+] Building %.1fs (%u finished, %zu running)%s", now,
             t->finished, t->run.n, state);
    add_clipped(&b, head, strlen(head), width - 1);
    kn_buf_addc(&b, '\n');
    int rows = 1;
    for (size_t i = 0; i < t->run.n; i++) {
        struct running *r = &t->run.v[i];
        add_row(&b, " => ", r->label, now - r->start, width);
        rows++;
        if (r->ntail) {
            const char *l = r->tail[(r->ntail - 1) % TAIL_LINES];
            kn_buf_adds(&b, "    > ");
            add_clipped(&b, l, strlen(l), width - 7);
            kn_buf_addc(&b, '\n');
            rows++;
        }
    }
    t->drawn = rows;
    fwrite(b.data, 1, b.len, t->out);
    fflush(t->out);
    kn_buf_release(&b);
}

static void tty_tick(struct sched_reporter *r, double now)
{
    struct tty *t = (struct tty *)r;
    t->now = now;
    draw(t, now, "");
}

static void tty_finish(struct sched_reporter *r, const struct sched_stats *st,
                       const struct kn_error *err)
{
    struct tty *t = (struct tty *)r;
    double now = st ? (double)st->wall_us / 1e6 : t->now;
    draw(t, now, err ? " FAILED" : " FINISHED");
    t->drawn = 0;
}

static void tty_destroy(struct sched_reporter *r)
{
    struct tty *t = (struct tty *)r;
    for (size_t i = 0; i < t->run.n; i++)
        running_free(&t->run.v[i]);
    free(t->run.v);
    kn_buf_release(&t->above);
    free(t);
}

struct sched_reporter *sched_reporter_tty_new(FILE *out)
{
    const char *term = getenv("TERM");
    if (term && strcmp(term, "dumb") == 0)
        return sched_reporter_plain_new(out);
    struct tty *t = kn_calloc(1, sizeof(*t));
    t->base.event = tty_event;
    t->base.tick = tty_tick;
    t->base.tick_ms = 100;
    t->base.finish = tty_finish;
    t->base.destroy = tty_destroy;
    t->out = out;
    return &t->base;
}
