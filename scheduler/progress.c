/*
 * Progress reporters: choosing one by name ("auto", "tty", "plain",
 * "json", "quiet"), the quiet one, and the helpers every reporter shares
 * (vertex labels, JSON string escaping).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *sched_vertex_label(const struct ir_vertex *v, char *buf, size_t size)
{
    if (v->name && v->name[0])
        return v->name;
    const char *op = ir_op_name(v->op);
    const char *hex = kn_digest_valid(v->digest) ? kn_digest_hex(v->digest) : "";
    snprintf(buf, size, "%s %.12s", op ? op : "?", hex);
    return buf;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned cp = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void sched_json_escape(struct kn_buf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c == '"' || c == '\\') {
            kn_buf_addc(b, '\\');
            kn_buf_addc(b, (char)c);
            i++;
        } else if (c == '\n') {
            kn_buf_adds(b, "\\n");
            i++;
        } else if (c == '\t') {
            kn_buf_adds(b, "\\t");
            i++;
        } else if (c == '\r') {
            kn_buf_adds(b, "\\r");
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            kn_buf_addf(b, "\\u%04x", c);
            i++;
        } else {
            size_t len = utf8_seq(p + i, n - i);
            if (len) {
                kn_buf_add(b, p + i, len);
                i += len;
            } else {
                kn_buf_adds(b, "\xef\xbf\xbd"); /* U+FFFD */
                i++;
            }
        }
    }
}

/* ---- quiet ----------------------------------------------------------------- */

static void quiet_event(struct sched_reporter *r, const struct sched_event *ev)
{
    (void)r;
    (void)ev;
}

static void quiet_destroy(struct sched_reporter *r)
{
    free(r);
}

struct sched_reporter *sched_reporter_quiet_new(void)
{
    struct sched_reporter *r = kn_calloc(1, sizeof(*r));
    r->event = quiet_event;
    r->destroy = quiet_destroy;
    return r;
}

/* ---- choosing ------------------------------------------------------------ */

struct sched_reporter *sched_reporter_new(const char *mode, FILE *out, struct kn_error **err)
{
    if (!mode || strcmp(mode, "auto") == 0) {
        if (isatty(fileno(out)))
            return sched_reporter_tty_new(out);
        return sched_reporter_plain_new(out);
    }
    if (strcmp(mode, "tty") == 0)
        return sched_reporter_tty_new(out);
    if (strcmp(mode, "plain") == 0)
        return sched_reporter_plain_new(out);
    if (strcmp(mode, "json") == 0)
        return sched_reporter_json_new(out);
    if (strcmp(mode, "quiet") == 0)
        return sched_reporter_quiet_new();
    kn_err_set(err, KN_E_USAGE, "unknown progress mode '%s' (want auto, tty, plain, json or quiet)",
               mode);
    return NULL;
}

void sched_reporter_free(struct sched_reporter *r)
{
    if (r && r->destroy)
        r->destroy(r);
}
