/*
 * The step's USER: "name", "uid", "name:group" or "uid:gid", resolved the
 * way runc does it against the step's own /etc/passwd and /etc/group (read
 * through the snapshot, never the host's files): a numeric uid that is not
 * in passwd runs with gid 0 and HOME=/; a name that is not there is an
 * error; supplementary groups are the groups that list the user as member.
 */
#include "exec/sandbox/internal.h"

#include "ir/base/cleanup.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SB_ETC_MAX    (4u << 20) /* cap on /etc/passwd and /etc/group */
#define SB_MAX_GROUPS 256

static int read_fd(int fd, struct kn_buf *b, const char *what, struct kn_error **err)
{
    char tmp[8192];
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof(tmp));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return kn_err_sys(err, "cannot read '%s'", what);
        if (n == 0)
            return 0;
        if (b->len + (size_t)n > SB_ETC_MAX)
            return kn_err_set(err, KN_E_UNSAFE, "file too large '%s'", what);
        kn_buf_add(b, tmp, (size_t)n);
    }
}

/* Reads path of the root; a missing file is an empty one. */
static int read_etc(const char *path, sb_open_fn open_fn, void *ctx, struct kn_buf *b,
                    struct kn_error **err)
{
    struct kn_error *e = NULL;
    int fd = open_fn(ctx, path, &e);
    if (fd < 0) {
        int code = e ? e->code : KN_E_IO;
        if (code == KN_E_NOTFOUND) {
            kn_err_free(e);
            kn_buf_adds(b, "");
            return 0;
        }
        kn_err_propagate(err, &e);
        return -1;
    }
    int rc = read_fd(fd, b, path, err);
    close(fd);
    return rc;
}

static bool parse_id(const char *s, unsigned long *out)
{
    if (!*s)
        return false;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (*end || errno || v > UINT_MAX - 1 || s[0] == '-' || s[0] == '+')
        return false;
    *out = v;
    return true;
}

/* Splits a colon-separated line into at most max fields (in place). */
static size_t split_fields(char *line, char **f, size_t max)
{
    size_t n = 0;
    f[n++] = line;
    for (char *p = line; *p && n < max; p++) {
        if (*p == ':') {
            *p = 0;
            f[n++] = p + 1;
        }
    }
    return n;
}

static bool member_of(const char *members, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = members; *p;) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        if (l == len && strncmp(p, name, len) == 0)
            return true;
        if (!c)
            break;
        p = c + 1;
    }
    return false;
}

int sb_user_resolve(const char *spec, sb_open_fn open_fn, void *ctx, struct sb_user *out,
                    struct kn_error **err)
{
    memset(out, 0, sizeof(*out));
    _cleanup_free_ char *u = kn_strdup(spec && *spec ? spec : "0");
    char *grp = strchr(u, ':');
    if (grp)
        *grp++ = 0;
    _cleanup_buf_ struct kn_buf passwd = KN_BUF_INIT;
    _cleanup_buf_ struct kn_buf group = KN_BUF_INIT;
    if (read_etc("etc/passwd", open_fn, ctx, &passwd, err) < 0 ||
        read_etc("etc/group", open_fn, ctx, &group, err) < 0)
        return -1;

    unsigned long num = 0;
    bool numeric = parse_id(u, &num);
    bool found = false;
    _cleanup_free_ char *name = NULL;
    out->uid = (uid_t)num;
    out->gid = 0;
    for (char *line = passwd.data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        char *f[7];
        if (split_fields(line, f, 7) < 7)
            continue;
        unsigned long id, gid;
        if (!parse_id(f[2], &id) || !parse_id(f[3], &gid))
            continue;
        if (numeric ? id == num : strcmp(f[0], u) == 0) {
            found = true;
            out->uid = (uid_t)id;
            out->gid = (gid_t)gid;
            out->home = kn_strdup(f[5][0] ? f[5] : "/");
            name = kn_strdup(f[0]);
            break;
        }
    }
    if (!found && !numeric)
        return kn_err_set(err, KN_E_NOTFOUND,
                          "unable to find user %s: no matching entries in passwd file", u);
    if (!out->home)
        out->home = kn_strdup("/");

    unsigned long gnum = 0;
    bool gnumeric = grp && parse_id(grp, &gnum);
    if (grp && !*grp)
        grp = NULL;
    bool gfound = false;
    KN_VEC(gid_t) groups = {0};
    for (char *line = group.data, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        char *f[4];
        if (split_fields(line, f, 4) < 4)
            continue;
        unsigned long gid;
        if (!parse_id(f[2], &gid))
            continue;
        if (grp && !gfound && (gnumeric ? gid == gnum : strcmp(f[0], grp) == 0)) {
            gfound = true;
            out->gid = (gid_t)gid;
        }
        if (name && member_of(f[3], name) && groups.n < SB_MAX_GROUPS)
            kn_vec_push(&groups, (gid_t)gid);
    }
    if (grp && !gfound) {
        if (!gnumeric) {
            free(groups.v);
            sb_user_release(out);
            return kn_err_set(err, KN_E_NOTFOUND,
                              "unable to find group %s: no matching entries in group file", grp);
        }
        out->gid = (gid_t)gnum;
    }
    out->groups = groups.v;
    out->n_groups = groups.n;
    return 0;
}

void sb_user_release(struct sb_user *u)
{
    free(u->groups);
    free(u->home);
    memset(u, 0, sizeof(*u));
}
