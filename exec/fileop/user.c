/*
 * --chown and --chmod: owner names resolved through the destination
 * rootfs's /etc/passwd and /etc/group (read through its view, never the
 * host's), and chmod(1)-style symbolic modes.
 */
#include "exec/fileop/internal.h"
#include "ir/base/cleanup.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FO_DB_MAX (16u << 20) /* /etc/passwd or /etc/group we read */

static bool parse_id(const char *s, unsigned long *out)
{
    if (!*s || !isdigit((unsigned char)*s))
        return false;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v > 0xfffffffeul)
        return false;
    *out = v;
    return true;
}

static int read_db(const struct ex_view *v, const char *path, struct kn_buf *out,
                   struct kn_error **err)
{
    struct kn_error *e = NULL;
    int fd = ex_view_open(v, path, &e);
    if (fd < 0) {
        bool missing = e->code == KN_E_NOTFOUND;
        kn_err_free(e);
        return missing ? 0 : kn_err_set(err, KN_E_IO, "cannot read '/%s' of the destination", path);
    }
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int rc = kn_err_sys(err, "cannot read '/%s' of the destination", path);
            close(fd);
            return rc;
        }
        if (n == 0)
            break;
        if (out->len + (size_t)n > FO_DB_MAX) {
            close(fd);
            return kn_err_set(err, KN_E_UNSAFE, "'/%s' of the destination is too large", path);
        }
        kn_buf_add(out, buf, (size_t)n);
    }
    close(fd);
    return 1;
}

/* Finds `name` in a passwd/group style file: fields[2] (id) and, for
 * passwd, fields[3] (primary gid). */
static bool db_lookup(const char *data, const char *name, unsigned long *id, unsigned long *gid)
{
    const char *line = data;
    size_t nlen = strlen(name);
    while (line && *line) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len > nlen && strncmp(line, name, nlen) == 0 && line[nlen] == ':') {
            char *l = kn_strndup(line, len);
            char *f[4] = {0};
            char *s = l;
            size_t k = 0;
            /* strsep keeps empty fields (the password is often empty) */
            while (k < 4 && (f[k] = strsep(&s, ":")))
                k++;
            bool ok = k >= 3 && parse_id(f[2], id);
            if (ok && gid)
                ok = k >= 4 && parse_id(f[3], gid);
            free(l);
            if (ok)
                return true;
        }
        line = eol ? eol + 1 : NULL;
    }
    return false;
}

int ex_fileop_resolve_chown(const struct ex_view *v, const char *spec, uid_t *uid, gid_t *gid,
                            struct kn_error **err)
{
    char *user = kn_strdup(spec);
    char *group = strchr(user, ':');
    if (group)
        *group++ = '\0';
    int rc = 0;
    if (!*user || (group && !*group)) {
        rc = kn_err_set(err, KN_E_PARSE, "invalid --chown value '%s'", spec);
        free(user);
        return rc;
    }
    unsigned long u = 0, g = 0;
    struct kn_buf pw = KN_BUF_INIT, gr = KN_BUF_INIT;
    if (parse_id(user, &u)) {
        g = u; /* a numeric user alone: gid = uid, as BuildKit */
    } else {
        rc = read_db(v, "etc/passwd", &pw, err);
        if (rc >= 0 && !(pw.data && db_lookup(pw.data, user, &u, &g)))
            rc = kn_err_set(err, KN_E_NOTFOUND,
                            "cannot resolve user '%s': no matching entry in /etc/passwd of the "
                            "destination",
                            user);
    }
    if (rc >= 0 && group) {
        if (!parse_id(group, &g)) {
            rc = read_db(v, "etc/group", &gr, err);
            if (rc >= 0 && !(gr.data && db_lookup(gr.data, group, &g, NULL)))
                rc = kn_err_set(err, KN_E_NOTFOUND,
                                "cannot resolve group '%s': no matching entry in /etc/group of "
                                "the destination",
                                group);
        }
    }
    kn_buf_release(&pw);
    kn_buf_release(&gr);
    free(user);
    if (rc < 0)
        return -1;
    *uid = (uid_t)u;
    *gid = (gid_t)g;
    return 0;
}

int ex_fileop_chmod_apply(const char *spec, mode_t mode, bool is_dir, mode_t *out,
                          struct kn_error **err)
{
    mode_t m = mode & 07777;
    const char *s = spec;
    if (!*s)
        return kn_err_set(err, KN_E_PARSE, "invalid chmod mode '%s'", spec);
    /* an octal mode */
    if (*s >= '0' && *s <= '7') {
        char *end;
        unsigned long v = strtoul(s, &end, 8);
        if (*end || v > 07777)
            return kn_err_set(err, KN_E_PARSE, "invalid chmod mode '%s'", spec);
        *out = (mode_t)v;
        return 0;
    }
    for (;;) {
        mode_t who = 0;
        for (; *s && strchr("ugoa", *s); s++)
            who |= *s == 'u' ? 04700 : *s == 'g' ? 02070 : *s == 'o' ? 01007 : 07777;
        if (!who)
            who = 07777; /* chmod(1) masks with the umask here; the build has none */
        if (!*s || !strchr("+-=", *s))
            return kn_err_set(err, KN_E_PARSE, "invalid chmod mode '%s'", spec);
        while (*s && strchr("+-=", *s)) {
            char op = *s++;
            mode_t bits = 0;
            if (*s && strchr("ugo", *s)) {
                /* copy another class's bits */
                mode_t src = *s == 'u' ? (m >> 6) & 7 : *s == 'g' ? (m >> 3) & 7 : m & 7;
                bits = (src << 6) | (src << 3) | src;
                s++;
            } else {
                for (; *s && strchr("rwxXst", *s); s++) {
                    switch (*s) {
                    case 'r':
                        bits |= 0444;
                        break;
                    case 'w':
                        bits |= 0222;
                        break;
                    case 'x':
                        bits |= 0111;
                        break;
                    case 'X':
                        if (is_dir || (m & 0111))
                            bits |= 0111;
                        break;
                    case 's':
                        bits |= 06000;
                        break;
                    default:
                        bits |= 01000;
                        break;
                    }
                }
            }
            bits &= who;
            if (op == '+')
                m |= bits;
            else if (op == '-')
                m &= ~bits;
            else
                m = (m & ~(who & 07777 & ~(mode_t)(is_dir ? 06000 : 0))) | bits;
        }
        if (!*s)
            break;
        if (*s != ',')
            return kn_err_set(err, KN_E_PARSE, "invalid chmod mode '%s'", spec);
        s++;
    }
    *out = m;
    return 0;
}
