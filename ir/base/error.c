/*
 * The error object every fallible kiln function fills in: a code, the errno
 * that caused it, an optional source location and a message, wrapped with
 * context on the way up. Only tools/ prints errors.
 */
#include "base.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kn_error *kn_err_newv(int code, const char *fmt, va_list ap)
{
    struct kn_error *e = kn_calloc(1, sizeof(*e));
    e->code = code;
    e->msg = kn_vasprintf(fmt, ap);
    return e;
}

struct kn_error *kn_err_new(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct kn_error *e = kn_err_newv(code, fmt, ap);
    va_end(ap);
    return e;
}

int kn_err_set(struct kn_error **err, int code, const char *fmt, ...)
{
    if (!err || *err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    *err = kn_err_newv(code, fmt, ap);
    va_end(ap);
    return -1;
}

int kn_err_sys(struct kn_error **err, const char *fmt, ...)
{
    int saved = errno;
    if (!err || *err) {
        errno = saved;
        return -1;
    }
    va_list ap;
    va_start(ap, fmt);
    char *m = kn_vasprintf(fmt, ap);
    va_end(ap);
    struct kn_error *e = kn_err_new(KN_E_IO, "%s: %s", m, strerror(saved));
    free(m);
    e->sys_errno = saved;
    *err = e;
    errno = saved;
    return -1;
}

int kn_err_wrap(struct kn_error **err, const char *fmt, ...)
{
    if (!err || !*err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    char *ctx = kn_vasprintf(fmt, ap);
    va_end(ap);
    char *m = kn_asprintf("%s: %s", ctx, (*err)->msg);
    free(ctx);
    free((*err)->msg);
    (*err)->msg = m;
    return -1;
}

void kn_err_at(struct kn_error *e, const char *file, int line, int col)
{
    for (; e; e = e->next) {
        if (e->loc.line)
            continue;
        free(e->loc.file);
        e->loc.file = file ? kn_strdup(file) : NULL;
        e->loc.line = line;
        e->loc.col = col;
    }
}

void kn_err_set_detail(struct kn_error *e, const char *detail)
{
    free(e->detail);
    e->detail = detail ? kn_strdup(detail) : NULL;
}

void kn_err_append(struct kn_error **head, struct kn_error *e)
{
    while (*head)
        head = &(*head)->next;
    *head = e;
}

void kn_err_propagate(struct kn_error **to, struct kn_error **from)
{
    if (!*from)
        return;
    if (to && !*to)
        *to = *from;
    else
        kn_err_free(*from);
    *from = NULL;
}

void kn_err_free(struct kn_error *e)
{
    while (e) {
        struct kn_error *next = e->next;
        free(e->loc.file);
        free(e->msg);
        free(e->detail);
        free(e);
        e = next;
    }
}

char *kn_err_format(const struct kn_error *e)
{
    if (e->loc.file && e->loc.line && e->loc.col)
        return kn_asprintf("%s:%d:%d: %s", e->loc.file, e->loc.line, e->loc.col, e->msg);
    if (e->loc.file && e->loc.line)
        return kn_asprintf("%s:%d: %s", e->loc.file, e->loc.line, e->msg);
    if (e->loc.file)
        return kn_asprintf("%s: %s", e->loc.file, e->msg);
    return kn_strdup(e->msg);
}
