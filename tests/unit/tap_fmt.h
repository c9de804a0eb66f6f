/*
 * Helpers for the unit tests that link ir/base, on top of tap.h: check()
 * (ok() with a condition evaluated once: tap.h's ok() evaluates it twice)
 * and F() (a formatted string, freed by F_release()).
 */
#ifndef KILN_TAP_FMT_H
#define KILN_TAP_FMT_H

#include "ir/base/base.h"
#include "tap.h"

#include <stdarg.h>

#define check(expr, ...)                                                                           \
    do {                                                                                           \
        bool check_v_ = (expr);                                                                    \
        ok(check_v_, __VA_ARGS__);                                                                 \
    } while (0)

static struct kn_strv tap_fmt_strings;

static const char *F(const char *fmt, ...) KN_PRINTF(1, 2);
static const char *F(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *m = kn_vasprintf(fmt, ap);
    va_end(ap);
    kn_strv_take(&tap_fmt_strings, m);
    return m;
}

static inline void F_release(void)
{
    kn_strv_release(&tap_fmt_strings);
}

#endif
