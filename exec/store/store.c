/*
 * The store object: opening ROOT (creating its layout), the shared store
 * lock, this process's temporary directory and the cleanup of temporary
 * directories left by dead processes, access-time tracking, unpacked layers
 * and the cache index. Blobs are in blob.c, prune in prune.c; the design is
 * described in docs/store.md.
 *
 * Temporary directories: each open store owns ROOT/tmp/pPID-XXXXXX and holds
 * an exclusive flock on its ".lock" file until it is closed (or the process
 * dies, which drops the lock). The next open removes every temp dir whose
 * lock it can take, so a live process's temporaries are never touched.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

char *ex_store_default_root(void)
{
    const char *r = getenv("KILN_ROOT");
    if (r && *r)
        return kn_strdup(r);
    if (geteuid() == 0)
        return kn_strdup("/var/lib/kiln");
    const char *x = getenv("XDG_DATA_HOME");
    if (x && *x)
        return kn_asprintf("%s/kiln", x);
    const char *h = getenv("HOME");
    return kn_asprintf("%s/.local/share/kiln", h && *h ? h : "/tmp");
}

static int mkdir_p(const char *path, struct kn_error **err)
{
    char *p = kn_strdup(path);
    int rc = 0;
    for (char *q = p + 1; rc == 0; q++) {
        if (*q != '/' && *q != '\0')
            continue;
        char c = *q;
        *q = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            rc = kn_err_sys(err, "cannot create directory '%s'", p);
        *q = c;
        if (c == '\0')
            break;
    }
    free(p);
    return rc;
}

/* Removes temp dirs of dead owners (their ".lock" is not held). */
static void clean_stale_tmp(struct ex_store *s)
{
    int tfd = openat(s->rootfd, EX_STORE_TMP, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (tfd < 0)
        return;
    DIR *d = fdopendir(tfd);
    if (!d) {
        close(tfd);
        return;
    }
    struct kn_strv stale = {0};
    struct dirent *de;
    time_t now = time(NULL);
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        struct stat st;
        if (fstatat(tfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (!S_ISDIR(st.st_mode)) {
            if (now - st.st_mtime > EX_STORE_STALE_SECS)
                kn_strv_push(&stale, de->d_name);
            continue;
        }
        char *lp = kn_asprintf("%s/.lock", de->d_name);
        int lfd = openat(tfd, lp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        free(lp);
        if (lfd < 0) {
            /* created but not yet locked, or its owner died right then */
            if (errno == ENOENT && now - st.st_mtime > EX_STORE_STALE_SECS)
                kn_strv_push(&stale, de->d_name);
            continue;
        }
        if (flock(lfd, LOCK_EX | LOCK_NB) == 0) {
            struct kn_error *e = NULL;
            kn_debug("store: removing stale temporary directory '%s'", de->d_name);
            if (ex_rm_rf_at(tfd, de->d_name, &e) < 0) {
                kn_warn("store: %s", e->msg);
                kn_err_free(e);
            }
        }
        close(lfd);
    }
    for (size_t i = 0; i < stale.n; i++) {
        struct kn_error *e = NULL;
        if (ex_rm_rf_at(tfd, stale.v[i], &e) < 0)
            kn_err_free(e);
    }
    kn_strv_release(&stale);
    closedir(d);
}

static int make_own_tmp(struct ex_store *s, struct kn_error **err)
{
    char *t = kn_asprintf("%s/" EX_STORE_TMP "/p%ld-XXXXXX", s->root, (long)getpid());
    if (!mkdtemp(t)) {
        kn_err_sys(err, "cannot create temporary directory '%s'", t);
        free(t);
        return -1;
    }
    char *lp = kn_asprintf("%s/.lock", t);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
        kn_err_sys(err, "cannot lock '%s'", lp);
        if (fd >= 0)
            close(fd);
        free(lp);
        (void)ex_rm_rf_at(AT_FDCWD, t, NULL);
        free(t);
        return -1;
    }
    free(lp);
    s->tmpdir = t;
    s->tmplockfd = fd;
    return 0;
}

struct ex_store *ex_store_open(const char *root, struct kn_error **err)
{
    static const char *const subdirs[] = {EX_STORE_BLOBS, EX_STORE_LAYERS, EX_STORE_CACHE,
                                          EX_STORE_TMP};
    if (!root || !*root) {
        kn_err_set(err, KN_E_USAGE, "empty store root");
        return NULL;
    }
    for (size_t i = 0; i < KN_ARRAY_SIZE(subdirs); i++) {
        char *p = kn_asprintf("%s/%s", root, subdirs[i]);
        int rc = mkdir_p(p, err);
        free(p);
        if (rc < 0) {
            kn_err_wrap(err, "cannot open store '%s'", root);
            return NULL;
        }
    }
    struct ex_store *s = kn_calloc(1, sizeof(*s));
    s->root = kn_strdup(root);
    s->lockfd = s->tmplockfd = -1;
    pthread_mutex_init(&s->lock_mu, NULL);
    s->rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->rootfd < 0) {
        kn_err_sys(err, "cannot open store '%s'", root);
        ex_store_close(s);
        return NULL;
    }
    s->lockfd = openat(s->rootfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (s->lockfd < 0) {
        kn_err_sys(err, "cannot open store lock '%s/lock'", root);
        ex_store_close(s);
        return NULL;
    }
    /* shared: only prune excludes the others */
    while (flock(s->lockfd, LOCK_SH) < 0) {
        if (errno != EINTR) {
            kn_err_sys(err, "cannot lock store '%s'", root);
            ex_store_close(s);
            return NULL;
        }
    }
    clean_stale_tmp(s);
    if (make_own_tmp(s, err) < 0) {
        kn_err_wrap(err, "cannot open store '%s'", root);
        ex_store_close(s);
        return NULL;
    }
    return s;
}

void ex_store_close(struct ex_store *s)
{
    if (!s)
        return;
    if (s->tmpdir) {
        struct kn_error *e = NULL;
        if (ex_rm_rf_at(AT_FDCWD, s->tmpdir, &e) < 0) {
            kn_warn("store: %s", e->msg);
            kn_err_free(e);
        }
    }
    if (s->tmplockfd >= 0)
        close(s->tmplockfd);
    if (s->lockfd >= 0)
        close(s->lockfd);
    if (s->rootfd >= 0)
        close(s->rootfd);
    pthread_mutex_destroy(&s->lock_mu);
    free(s->tmpdir);
    free(s->root);
    free(s);
}

const char *ex_store_root(const struct ex_store *s)
{
    return s->root;
}

char *ex_store_mkdtemp(struct ex_store *s, const char *prefix, struct kn_error **err)
{
    char *t = kn_asprintf("%s/%sXXXXXX", s->tmpdir, prefix ? prefix : "");
    if (!mkdtemp(t)) {
        kn_err_sys(err, "cannot create temporary directory '%s'", t);
        free(t);
        return NULL;
    }
    return t;
}

void ex_store_touch(struct ex_store *s, const char *relpath)
{
    /* atime only: an unpacked layer's mtimes are its content */
    struct timespec ts[2] = {{.tv_nsec = UTIME_NOW}, {.tv_nsec = UTIME_OMIT}};
    (void)utimensat(s->rootfd, relpath, ts, AT_SYMLINK_NOFOLLOW);
}

int ex_store_put_file(struct ex_store *s, const char *relpath, const void *data, size_t len,
                      struct kn_error **err)
{
    char *t = kn_asprintf("%s/put-XXXXXX", s->tmpdir);
    int fd = mkostemp(t, O_CLOEXEC);
    if (fd < 0) {
        kn_err_sys(err, "cannot create temporary file '%s'", t);
        free(t);
        return -1;
    }
    const char *p = data;
    size_t left = len;
    int rc = 0;
    while (left > 0 && rc == 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = kn_err_sys(err, "cannot write '%s'", t);
        else {
            p += n;
            left -= (size_t)n;
        }
    }
    if (rc == 0 && (fchmod(fd, 0444) < 0 || fsync(fd) < 0))
        rc = kn_err_sys(err, "cannot write '%s'", t);
    close(fd);
    if (rc == 0 && renameat2(AT_FDCWD, t, s->rootfd, relpath, RENAME_NOREPLACE) < 0) {
        if (errno == EEXIST)
            ; /* another writer won; same key, keep theirs */
        else if (errno == EINVAL && renameat(AT_FDCWD, t, s->rootfd, relpath) == 0)
            ;
        else
            rc = kn_err_sys(err, "cannot store '%s/%s'", s->root, relpath);
    }
    if (rc < 0)
        unlink(t);
    free(t);
    return rc;
}

/* ---- unpacked layers ---- */

char *ex_store_layer_path(const struct ex_store *s, const char *diff_id)
{
    const char *hex = kn_digest_valid(diff_id) ? kn_digest_hex(diff_id) : "invalid";
    return kn_asprintf("%s/" EX_STORE_LAYERS "/%s", s->root, hex);
}

bool ex_store_has_layer(struct ex_store *s, const char *diff_id)
{
    if (!kn_digest_valid(diff_id))
        return false;
    char *rel = kn_asprintf(EX_STORE_LAYERS "/%s", kn_digest_hex(diff_id));
    struct stat st;
    bool has = fstatat(s->rootfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    if (has)
        ex_store_touch(s, rel);
    free(rel);
    return has;
}

int ex_store_layer_commit(struct ex_store *s, const char *diff_id, const char *tmpdir,
                          struct kn_error **err)
{
    if (!kn_digest_valid(diff_id))
        return kn_err_set(err, KN_E_INTERNAL, "invalid layer digest '%s'", diff_id);
    int dfd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return kn_err_sys(err, "cannot open '%s'", tmpdir);
    /* One syncfs for the whole tree instead of an fsync per file: the
     * layer must be on disk before its name says it is complete. */
    if (syncfs(dfd) < 0) {
        kn_err_sys(err, "cannot sync '%s'", tmpdir);
        close(dfd);
        return -1;
    }
    close(dfd);
    char *rel = kn_asprintf(EX_STORE_LAYERS "/%s", kn_digest_hex(diff_id));
    int rc = 0;
    if (renameat2(AT_FDCWD, tmpdir, s->rootfd, rel, RENAME_NOREPLACE) < 0) {
        if (errno == EEXIST || errno == ENOTEMPTY)
            rc = ex_rm_rf_at(AT_FDCWD, tmpdir, err); /* lost the race: keep theirs */
        else
            rc = kn_err_sys(err, "cannot move layer '%s' into the store", diff_id);
    } else {
        int lfd = openat(s->rootfd, EX_STORE_LAYERS, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (lfd >= 0) {
            (void)fsync(lfd);
            close(lfd);
        }
    }
    free(rel);
    return rc;
}

/* ---- cache index ---- */

int ex_store_cache_get(struct ex_store *s, const char *key, struct kn_buf *value,
                       struct kn_error **err)
{
    if (!kn_digest_valid(key))
        return kn_err_set(err, KN_E_INTERNAL, "invalid cache key '%s'", key);
    char *rel = kn_asprintf(EX_STORE_CACHE "/%s", kn_digest_hex(key));
    int fd = openat(s->rootfd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        int rc = errno == ENOENT ? 0 : kn_err_sys(err, "cannot read cache entry '%s'", key);
        free(rel);
        return rc;
    }
    ex_store_touch(s, rel);
    free(rel);
    kn_buf_reset(value);
    char buf[8192];
    int rc = 1;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = kn_err_sys(err, "cannot read cache entry '%s'", key);
            break;
        }
        if (n == 0)
            break;
        if (value->len + (size_t)n > (16u << 20)) {
            rc = kn_err_set(err, KN_E_UNSAFE, "cache entry '%s' is larger than 16 MiB", key);
            break;
        }
        kn_buf_add(value, buf, (size_t)n);
    }
    if (rc == 1 && !value->data)
        kn_buf_adds(value, "");
    close(fd);
    return rc;
}

int ex_store_cache_put(struct ex_store *s, const char *key, const char *value,
                       struct kn_error **err)
{
    if (!kn_digest_valid(key))
        return kn_err_set(err, KN_E_INTERNAL, "invalid cache key '%s'", key);
    char *rel = kn_asprintf(EX_STORE_CACHE "/%s", kn_digest_hex(key));
    /* a cache entry is replaced (a newer result for the same key wins) */
    char *t = kn_asprintf("%s/cache-XXXXXX", s->tmpdir);
    int fd = mkostemp(t, O_CLOEXEC);
    int rc = 0;
    if (fd < 0) {
        rc = kn_err_sys(err, "cannot create temporary file '%s'", t);
    } else {
        size_t len = strlen(value), off = 0;
        while (off < len && rc == 0) {
            ssize_t n = write(fd, value + off, len - off);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                rc = kn_err_sys(err, "cannot write '%s'", t);
            else
                off += (size_t)n;
        }
        if (rc == 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0))
            rc = kn_err_sys(err, "cannot write '%s'", t);
        close(fd);
        if (rc == 0 && renameat(AT_FDCWD, t, s->rootfd, rel) < 0)
            rc = kn_err_sys(err, "cannot store cache entry '%s'", key);
        if (rc < 0)
            unlink(t);
    }
    free(t);
    free(rel);
    return rc;
}
