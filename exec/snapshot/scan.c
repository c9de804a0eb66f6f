/*
 * The scan snapshotter: where no overlay can be mounted (chroot isolation),
 * a step's changes are found by comparing two stat-walks of the rootfs, one
 * before the step and one after, and written out in exactly the form of an
 * overlay upper dir (see snapshot.h), so the layer packer needs to know
 * nothing about how a diff was made.
 *
 * Its cost grows with the size of the image, by nature; it is kept small:
 * the walk is fstatat over directory fds (no path resolution from the root),
 * split over two threads by top-level subtree, and entries live in per-thread
 * arenas; the comparison is one hash lookup per entry.
 */
#include "exec/snapshot/internal.h"
#include "exec/store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SCAN_THREADS     2
#define SCAN_MAX_ENTRIES (50u * 1000 * 1000)

struct scan_ent {
    const char *path; /* relative, no leading '/' (arena) */
    const char *link; /* symlink target (arena) or NULL */
    mode_t mode;
    uid_t uid;
    gid_t gid;
    nlink_t nlink;
    off_t size;
    int64_t mtime, ctime;
    ino_t ino;
    int64_t btime; /* directories: birth time (ns), 0 where unknown */
    dev_t dev;
    dev_t rdev;
    bool seen;     /* before-entries: still present after */
    bool replaced; /* before-entries: a dir re-created (opaque) or replaced by a non-dir */
};

struct scan_walk {
    struct kn_arena arena;
    KN_VEC(struct scan_ent) ents;
    struct kn_error *err;
};

struct ex_scan {
    char *rootfs;
    struct scan_walk walks[SCAN_THREADS + 1];
    struct scan_ent **table; /* open addressing, power-of-two size */
    size_t mask;
    size_t entries;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int64_t ts_ns(struct timespec t)
{
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void ent_fill(struct scan_walk *w, struct scan_ent *e, const char *path, int dfd,
                     const char *name, const struct stat *st)
{
    memset(e, 0, sizeof(*e));
    e->path = kn_arena_strdup(&w->arena, path);
    e->mode = st->st_mode;
    e->uid = st->st_uid;
    e->gid = st->st_gid;
    e->nlink = st->st_nlink;
    e->size = st->st_size;
    e->mtime = ts_ns(st->st_mtim);
    e->ctime = ts_ns(st->st_ctim);
    e->ino = st->st_ino;
    e->dev = st->st_dev;
    e->rdev = st->st_rdev;
    /* a directory deleted and re-created may get its inode number back:
     * its birth time tells it from the one it replaced */
    struct statx sx;
    if (S_ISDIR(st->st_mode) && statx(dfd, name, AT_SYMLINK_NOFOLLOW, STATX_BTIME, &sx) == 0 &&
        (sx.stx_mask & STATX_BTIME))
        e->btime = (int64_t)sx.stx_btime.tv_sec * 1000000000 + sx.stx_btime.tv_nsec;
    if (S_ISLNK(st->st_mode)) {
        char buf[4096];
        ssize_t n = readlinkat(dfd, name, buf, sizeof(buf) - 1);
        buf[n < 0 ? 0 : n] = 0;
        e->link = kn_arena_strdup(&w->arena, buf);
    }
}

static int walk_dir(struct scan_walk *w, int dfd, struct kn_buf *path, int depth)
{
    if (depth > 4096) {
        w->err = kn_err_new(KN_E_UNSAFE, "directory tree too deep at '/%s'", path->data);
        return -1;
    }
    int rfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = rfd >= 0 ? fdopendir(rfd) : NULL;
    if (!d) {
        if (rfd >= 0)
            close(rfd);
        w->err = kn_err_new(KN_E_IO, "cannot read directory '/%s'", path->data ? path->data : "");
        return -1;
    }
    size_t base = path->len;
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0)))
            continue;
        struct stat st;
        if (fstatat(dfd, n, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue;
            w->err = kn_err_new(KN_E_IO, "cannot stat '/%s%s%s'", path->data ? path->data : "",
                                base ? "/" : "", n);
            rc = -1;
            break;
        }
        if (base)
            kn_buf_addc(path, '/');
        kn_buf_adds(path, n);
        if (w->ents.n >= SCAN_MAX_ENTRIES) {
            w->err =
                kn_err_new(KN_E_UNSAFE, "too many files to scan (more than %u)", SCAN_MAX_ENTRIES);
            rc = -1;
            break;
        }
        struct scan_ent e;
        ent_fill(w, &e, path->data, dfd, n, &st);
        kn_vec_push(&w->ents, e);
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) {
                w->err = kn_err_new(KN_E_IO, "cannot open directory '/%s'", path->data);
                rc = -1;
            } else {
                rc = walk_dir(w, sub, path, depth + 1);
                close(sub);
            }
        }
        path->len = base;
        path->data[base] = 0;
    }
    closedir(d);
    return rc;
}

/* The top-level work list shared by the walker threads. */
struct scan_job {
    int rootfd;
    struct scan_walk *top; /* top-level entries (walked by the caller) */
    _Atomic size_t next;
    struct scan_walk *walks;
};

struct scan_worker {
    struct scan_job *job;
    struct scan_walk *w;
};

static void *walk_worker(void *arg)
{
    struct scan_worker *wk = arg;
    struct scan_job *job = wk->job;
    struct kn_buf path = KN_BUF_INIT;
    for (;;) {
        size_t i = atomic_fetch_add(&job->next, 1);
        if (i >= job->top->ents.n || wk->w->err)
            break;
        struct scan_ent *e = &job->top->ents.v[i];
        if (!S_ISDIR(e->mode))
            continue;
        int sub = openat(job->rootfd, e->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            wk->w->err = kn_err_new(KN_E_IO, "cannot open directory '/%s'", e->path);
            break;
        }
        kn_buf_reset(&path);
        kn_buf_adds(&path, e->path);
        walk_dir(wk->w, sub, &path, 1);
        close(sub);
    }
    kn_buf_release(&path);
    return NULL;
}

/* Walks rootfs into walks[0] (top level) and walks[1..SCAN_THREADS]. */
static int walk_tree(const char *rootfs, struct scan_walk *walks, struct kn_error **err)
{
    for (int i = 0; i <= SCAN_THREADS; i++)
        kn_arena_init(&walks[i].arena);
    int rootfd = open(rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return kn_err_sys(err, "cannot open rootfs '%s'", rootfs);
    /* top level: the entries only, no recursion */
    struct scan_walk *top = &walks[0];
    int dup_fd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
    if (!d) {
        close(rootfd);
        return kn_err_sys(err, "cannot read rootfs '%s'", rootfs);
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == 0 || (n[1] == '.' && n[2] == 0)))
            continue;
        struct stat st;
        if (fstatat(rootfd, n, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        struct scan_ent e;
        ent_fill(top, &e, n, rootfd, n, &st);
        kn_vec_push(&top->ents, e);
    }
    closedir(d);
    struct scan_job job = {.rootfd = rootfd, .top = top, .walks = walks};
    atomic_init(&job.next, 0);
    struct scan_worker wk[SCAN_THREADS];
    pthread_t th[SCAN_THREADS];
    bool started[SCAN_THREADS] = {false};
    for (int i = 0; i < SCAN_THREADS; i++) {
        wk[i].job = &job;
        wk[i].w = &walks[i + 1];
        started[i] = i > 0 && pthread_create(&th[i], NULL, walk_worker, &wk[i]) == 0;
    }
    walk_worker(&wk[0]); /* the calling thread is worker 0 */
    for (int i = 1; i < SCAN_THREADS; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            walk_worker(&wk[i]);
    }
    close(rootfd);
    for (int i = 1; i <= SCAN_THREADS; i++) {
        if (walks[i].err) {
            kn_err_propagate(err, &walks[i].err);
            return -1;
        }
    }
    return 0;
}

static void walks_release(struct scan_walk *walks)
{
    for (int i = 0; i <= SCAN_THREADS; i++) {
        kn_arena_release(&walks[i].arena);
        free(walks[i].ents.v);
        kn_err_free(walks[i].err);
        memset(&walks[i], 0, sizeof(walks[i]));
    }
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static struct scan_ent *table_find(struct ex_scan *sc, const char *path)
{
    for (size_t i = hash_str(path) & sc->mask;; i = (i + 1) & sc->mask) {
        struct scan_ent *e = sc->table[i];
        if (!e || strcmp(e->path, path) == 0)
            return e;
    }
}

static void build_table(struct ex_scan *sc)
{
    size_t n = 0;
    for (int i = 0; i <= SCAN_THREADS; i++)
        n += sc->walks[i].ents.n;
    size_t size = 16;
    while (size < n * 2)
        size *= 2;
    free(sc->table);
    sc->table = kn_calloc(size, sizeof(*sc->table));
    sc->mask = size - 1;
    sc->entries = n;
    for (int i = 0; i <= SCAN_THREADS; i++) {
        for (size_t j = 0; j < sc->walks[i].ents.n; j++) {
            struct scan_ent *e = &sc->walks[i].ents.v[j];
            size_t k = hash_str(e->path) & sc->mask;
            while (sc->table[k])
                k = (k + 1) & sc->mask;
            sc->table[k] = e;
        }
    }
}

struct ex_scan *ex_scan_record(const char *rootfs, struct kn_error **err)
{
    struct ex_scan *sc = kn_calloc(1, sizeof(*sc));
    sc->rootfs = kn_strdup(rootfs);
    if (walk_tree(rootfs, sc->walks, err) < 0) {
        ex_scan_free(sc);
        return NULL;
    }
    build_table(sc);
    return sc;
}

void ex_scan_free(struct ex_scan *sc)
{
    if (!sc)
        return;
    walks_release(sc->walks);
    free(sc->table);
    free(sc->rootfs);
    free(sc);
}

/* ---- writing the diff ---- */

struct diff {
    int rootfd, difffd;
    bool can_chown;
    KN_VEC(const char *) dirs; /* dirs created in the diff, for their times at the end */
    /* hard links: inode -> first diff path */
    struct {
        ino_t ino;
        const char *path;
    } * links;
    size_t n_links, cap_links;
};

static void meta(struct diff *df, const char *path, mode_t mode, uid_t uid, gid_t gid)
{
    /* as non-root this fails for foreign owners: the diff then has the caller's */
    if (df->can_chown || uid == geteuid())
        fchownat(df->difffd, path, uid, gid, AT_SYMLINK_NOFOLLOW);
    if (!S_ISLNK(mode))
        fchmodat(df->difffd, path, mode & 07777, 0);
}

static void remember_dir(struct diff *df, const char *path)
{
    kn_vec_push(&df->dirs, path);
}

/* Creates the missing ancestors of path in the diff, with the rootfs's metadata. */
static int ensure_parents(struct diff *df, struct kn_arena *a, const char *path,
                          struct kn_error **err)
{
    char buf[4096];
    size_t len = strlen(path);
    if (len >= sizeof(buf))
        return kn_err_set(err, KN_E_UNSAFE, "path too long '/%s'", path);
    for (size_t i = 0; i < len; i++) {
        if (path[i] != '/')
            continue;
        memcpy(buf, path, i);
        buf[i] = 0;
        struct stat st;
        if (fstatat(df->difffd, buf, &st, AT_SYMLINK_NOFOLLOW) == 0)
            continue;
        if (fstatat(df->rootfd, buf, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
            return kn_err_sys(err, "cannot stat '/%s' in the rootfs", buf);
        if (mkdirat(df->difffd, buf, 0700) < 0)
            return kn_err_sys(err, "cannot create '/%s' in the diff", buf);
        meta(df, buf, st.st_mode, st.st_uid, st.st_gid);
        remember_dir(df, kn_arena_strdup(a, buf));
    }
    return 0;
}

static const char *link_find(struct diff *df, ino_t ino)
{
    for (size_t i = 0; i < df->n_links; i++)
        if (df->links[i].ino == ino)
            return df->links[i].path;
    return NULL;
}

static int add_entry(struct diff *df, struct kn_arena *a, const struct scan_ent *e, bool opaque,
                     struct kn_error **err)
{
    if (ensure_parents(df, a, e->path, err) < 0)
        return -1;
    struct stat st;
    bool exists = fstatat(df->difffd, e->path, &st, AT_SYMLINK_NOFOLLOW) == 0;
    if (S_ISDIR(e->mode)) {
        if (!exists && mkdirat(df->difffd, e->path, 0700) < 0)
            return kn_err_sys(err, "cannot create '/%s' in the diff", e->path);
        if (!exists)
            remember_dir(df, e->path);
        meta(df, e->path, e->mode, e->uid, e->gid);
        if (opaque) {
            int dfd = df->difffd;
            return ex_make_opaque(dfd, e->path, err);
        }
        return 0;
    }
    if (S_ISREG(e->mode)) {
        const char *first = e->nlink > 1 ? link_find(df, e->ino) : NULL;
        if (first) {
            if (linkat(df->difffd, first, df->difffd, e->path, 0) < 0)
                return kn_err_sys(err, "cannot link '/%s' in the diff", e->path);
            return 0;
        }
        int in = ex_openat_in_root(df->rootfd, e->path, O_RDONLY | O_NOFOLLOW, RESOLVE_NO_SYMLINKS);
        if (in < 0)
            return kn_err_sys(err, "cannot open '/%s' in the rootfs", e->path);
        int out = openat(df->difffd, e->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (out < 0 || ex_store_copy_fd(in, out, "", NULL) < 0) {
            int rc = kn_err_sys(err, "cannot copy '/%s' into the diff", e->path);
            close(in);
            if (out >= 0)
                close(out);
            return rc;
        }
        close(in);
        close(out);
        if (e->nlink > 1) {
            if (df->n_links == df->cap_links)
                df->links = kn_grow(df->links, &df->cap_links, df->n_links + 1, sizeof(*df->links));
            df->links[df->n_links].ino = e->ino;
            df->links[df->n_links++].path = e->path;
        }
    } else if (S_ISLNK(e->mode)) {
        if (symlinkat(e->link, df->difffd, e->path) < 0)
            return kn_err_sys(err, "cannot create link '/%s' in the diff", e->path);
    } else if (S_ISSOCK(e->mode)) {
        return 0; /* sockets do not go into layers */
    } else if (mknodat(df->difffd, e->path, e->mode & (S_IFMT | 07777), e->rdev) < 0) {
        return kn_err_sys(err, "cannot create node '/%s' in the diff", e->path);
    }
    meta(df, e->path, e->mode, e->uid, e->gid);
    struct timespec ts[2] = {{0, UTIME_OMIT},
                             {(time_t)(e->mtime / 1000000000), (long)(e->mtime % 1000000000)}};
    utimensat(df->difffd, e->path, ts, AT_SYMLINK_NOFOLLOW);
    return 0;
}

static bool ent_changed(const struct scan_ent *a, const struct scan_ent *b)
{
    if ((a->mode & S_IFMT) != (b->mode & S_IFMT) || a->mode != b->mode || a->uid != b->uid ||
        a->gid != b->gid || a->ino != b->ino || a->dev != b->dev)
        return true;
    if (S_ISDIR(a->mode))
        return a->mtime != b->mtime; /* an entry added or removed below */
    if (a->size != b->size || a->mtime != b->mtime || a->ctime != b->ctime || a->rdev != b->rdev)
        return true;
    return S_ISLNK(a->mode) && strcmp(a->link, b->link) != 0;
}

static const char *parent_of(struct kn_arena *a, const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? kn_arena_strndup(a, path, (size_t)(slash - path)) : NULL;
}

int ex_scan_diff(struct ex_scan *sc, const char *diffdir, struct ex_scan_stats *stats,
                 struct kn_error **err)
{
    double t0 = now_s();
    struct scan_walk after[SCAN_THREADS + 1];
    memset(after, 0, sizeof(after));
    if (walk_tree(sc->rootfs, after, err) < 0) {
        walks_release(after);
        return -1;
    }
    double t1 = now_s();
    struct ex_scan_stats st = {.walk_seconds = t1 - t0};
    struct diff df = {.can_chown = geteuid() == 0};
    struct kn_arena a;
    kn_arena_init(&a);
    df.rootfd = open(sc->rootfs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    df.difffd = open(diffdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (df.rootfd < 0 || df.difffd < 0)
        rc = kn_err_sys(err, "cannot open '%s'", df.rootfd < 0 ? sc->rootfs : diffdir);
    /* adds, in walk order: a directory comes before what is below it */
    for (int i = 0; i <= SCAN_THREADS && rc == 0; i++) {
        for (size_t j = 0; j < after[i].ents.n && rc == 0; j++) {
            struct scan_ent *e = &after[i].ents.v[j];
            st.entries++;
            struct scan_ent *b = table_find(sc, e->path);
            bool opaque = false;
            if (b) {
                b->seen = true;
                /* a directory deleted and re-created, or replaced by a non-dir: its
                 * old entries are hidden by the new entry, not by whiteouts */
                if (S_ISDIR(b->mode) && (!S_ISDIR(e->mode) || b->ino != e->ino ||
                                         (b->btime && e->btime && b->btime != e->btime))) {
                    b->replaced = true;
                    opaque = S_ISDIR(e->mode);
                }
                if (!ent_changed(e, b))
                    continue;
            }
            rc = add_entry(&df, &a, e, opaque, err);
            st.added++;
        }
    }
    /* deletions: a whiteout for the topmost deleted path only */
    for (size_t k = 0; k <= sc->mask && rc == 0; k++) {
        struct scan_ent *b = sc->table[k];
        if (!b || b->seen)
            continue;
        const char *parent = parent_of(&a, b->path);
        if (parent) {
            struct scan_ent *pb = table_find(sc, parent);
            if (pb && (!pb->seen || pb->replaced))
                continue;
        }
        rc = ensure_parents(&df, &a, b->path, err);
        if (rc == 0) {
            struct stat dst;
            if (fstatat(df.difffd, b->path, &dst, AT_SYMLINK_NOFOLLOW) == 0)
                continue; /* replaced by a new entry of another type */
            char *slash = strrchr(b->path, '/');
            int pfd = df.difffd;
            if (slash) {
                char *p = kn_arena_strndup(&a, b->path, (size_t)(slash - b->path));
                pfd = openat(df.difffd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            }
            if (pfd < 0) {
                rc = kn_err_sys(err, "cannot open the parent of '/%s' in the diff", b->path);
            } else {
                rc = ex_make_whiteout(pfd, slash ? slash + 1 : b->path, err);
                if (pfd != df.difffd)
                    close(pfd);
            }
            st.deleted++;
        }
    }
    /* directory times last, deepest first */
    for (size_t i = df.dirs.n; i-- > 0 && rc == 0;) {
        struct stat rst;
        if (fstatat(df.rootfd, df.dirs.v[i], &rst, AT_SYMLINK_NOFOLLOW) == 0) {
            struct timespec ts[2] = {{0, UTIME_OMIT}, rst.st_mtim};
            utimensat(df.difffd, df.dirs.v[i], ts, AT_SYMLINK_NOFOLLOW);
        }
    }
    if (df.rootfd >= 0)
        close(df.rootfd);
    if (df.difffd >= 0)
        close(df.difffd);
    free(df.dirs.v);
    free(df.links);
    kn_arena_release(&a);
    /* the after-walk becomes the new "before", so one ex_scan can follow a
     * rootfs through several steps */
    if (rc == 0) {
        walks_release(sc->walks);
        memcpy(sc->walks, after, sizeof(after));
        build_table(sc);
    } else {
        walks_release(after);
    }
    st.walk_seconds = now_s() - t0;
    if (stats)
        *stats = st;
    return rc;
}
