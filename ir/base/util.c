/*
 * Logging and small string helpers shared by every module.
 */
#include "base.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int kn_log_level = KN_LOG_WARN;

void kn_log_emit(int level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warning", "info", "debug", "trace"};
    struct kn_buf b = KN_BUF_INIT;
    kn_buf_addf(&b, "kiln: %s: ", names[level < 0 ? 0 : level > 4 ? 4 : level]);
    va_list ap;
    va_start(ap, fmt);
    kn_buf_vaddf(&b, fmt, ap);
    va_end(ap);
    kn_buf_addc(&b, '\n');
    /* one write so lines from several threads do not interleave */
    fwrite(b.data, 1, b.len, stderr);
    kn_buf_release(&b);
}

bool kn_str_startswith(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool kn_str_endswith(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && memcmp(s + ls - lx, suffix, lx) == 0;
}

int kn_parse_size(const char *s, uint64_t *out, struct kn_error **err)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0 || !isfinite(v))
        return kn_err_set(err, KN_E_USAGE, "invalid size '%s'", s);
    while (*end == ' ')
        end++;
    static const struct {
        const char *suffix;
        double mult;
    } units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1e3},
        {"kb", 1e3},
        {"kib", 1024.0},
        {"m", 1e6},
        {"mb", 1e6},
        {"mib", 1048576.0},
        {"g", 1e9},
        {"gb", 1e9},
        {"gib", 1073741824.0},
        {"t", 1e12},
        {"tb", 1e12},
        {"tib", 1099511627776.0},
    };
    for (size_t i = 0; i < KN_ARRAY_SIZE(units); i++) {
        if (strcasecmp(end, units[i].suffix) == 0) {
            double r = v * units[i].mult;
            if (r >= 18446744073709551615.0)
                return kn_err_set(err, KN_E_USAGE, "size '%s' is too large", s);
            *out = (uint64_t)r;
            return 0;
        }
    }
    return kn_err_set(err, KN_E_USAGE, "invalid size unit in '%s'", s);
}
