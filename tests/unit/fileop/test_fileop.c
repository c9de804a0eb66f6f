/*
 * Unit tests for exec/fileop: a table of COPY / ADD / mkdir / mkfile / rm /
 * symlink cases, each run through both back-ends (the stream, recorded
 * entry by entry and also written as a layer, and the materialized upper
 * dir, listed and packed with ex_layer_pack_dir): both must give the
 * expected tree and the same diff_id. Then every error message, chown name
 * resolution, path escapes, and checksum stability.
 */
#include "exec/fileop/fileop.h"
#include "exec/layer/layer.h"
#include "exec/store/store.h"
#include "tap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>

static char root[4096];
static char ctxdir[4200], basedir[4200], stagedir[4200];
static struct ex_store *store;
static struct ex_view *ctx, *dest, *stage;

/* ---- fixture helpers ---------------------------------------------------- */

static void mkdirs(const char *path, mode_t mode)
{
    char buf[4608];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *s = buf + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            mkdir(buf, 0755);
            *s = '/';
        }
    }
    mkdir(buf, mode);
    chmod(buf, mode);
}

static void put(const char *dir, const char *rel, const char *content, mode_t mode)
{
    char p[4400];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    char *s = strrchr(p, '/');
    *s = '\0';
    mkdirs(p, 0755);
    *s = '/';
    FILE *f = fopen(p, "w");
    if (!f) {
        perror(p);
        exit(1);
    }
    fputs(content, f);
    fclose(f);
    chmod(p, mode);
}

static void lnk(const char *dir, const char *rel, const char *target)
{
    char p[4400];
    snprintf(p, sizeof(p), "%s/%s", dir, rel);
    unlink(p);
    if (symlink(target, p) < 0) {
        perror(p);
        exit(1);
    }
}

static void sh(const char *fmt, ...) KN_PRINTF(1, 2);
static void sh(const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) {
        fprintf(stderr, "command failed: %s\n", cmd);
        exit(1);
    }
}

/* ---- listing a result -------------------------------------------------------- */

struct line {
    char *path;
    char *text;
};
KN_VEC(struct line) rec;

static int cmp_comp(const char *a, const char *b)
{
    for (;; a++, b++) {
        unsigned char x = (unsigned char)*a, y = (unsigned char)*b;
        if (x == y) {
            if (!x)
                return 0;
            continue;
        }
        if (x == '/')
            x = 1;
        if (y == '/')
            y = 1;
        return x < y ? -1 : 1;
    }
}

static int cmp_line(const void *a, const void *b)
{
    return cmp_comp(((const struct line *)a)->path, ((const struct line *)b)->path);
}

static void rec_add(const char *path, const char *text)
{
    struct line l = {kn_strdup(path), kn_strdup(text)};
    kn_vec_push(&rec, l);
}

static char *rec_take(void)
{
    qsort(rec.v, rec.n, sizeof(*rec.v), cmp_line);
    struct kn_buf b = KN_BUF_INIT;
    for (size_t i = 0; i < rec.n; i++) {
        kn_buf_addf(&b, "%s\n", rec.v[i].text);
        free(rec.v[i].path);
        free(rec.v[i].text);
    }
    rec.n = 0;
    return kn_buf_detach(&b);
}

static char *read_fd(int fd)
{
    struct kn_buf b = KN_BUF_INIT;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        kn_buf_add(&b, buf, (size_t)n);
    return kn_buf_detach(&b);
}

/* xattrs of the next described entry: " x:name=value" each, sorted */
static struct kn_strv pending_x;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void describe(const char *path, const struct stat *st, const char *payload, bool hard)
{
    char t[8192];
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char type = S_ISDIR(st->st_mode)            ? 'd'
                : S_ISLNK(st->st_mode)          ? 'l'
                : hard                          ? 'h'
                : strncmp(base, ".wh.", 4) == 0 ? 'w'
                : S_ISREG(st->st_mode)          ? 'f'
                                                : 'c';
    if (type == 'l')
        snprintf(t, sizeof(t), "%s l %s", path, payload);
    else if (type == 'w')
        snprintf(t, sizeof(t), "%s w", path);
    else
        snprintf(t, sizeof(t), "%s %c %o %u:%u%s%s", path, type, (unsigned)(st->st_mode & 07777),
                 (unsigned)st->st_uid, (unsigned)st->st_gid, payload ? " " : "",
                 payload ? payload : "");
    if (pending_x.n) {
        qsort(pending_x.v, pending_x.n, sizeof(char *), cmp_str);
        struct kn_buf b = KN_BUF_INIT;
        kn_buf_adds(&b, t);
        for (size_t i = 0; i < pending_x.n; i++)
            kn_buf_addf(&b, " x:%s", pending_x.v[i]);
        rec_add(path, b.data);
        kn_buf_release(&b);
        kn_strv_release(&pending_x);
        return;
    }
    rec_add(path, t);
}

static int rec_xattr(void *c, const char *name, const void *value, size_t size,
                     struct kn_error **err)
{
    (void)c;
    (void)err;
    kn_strv_take(&pending_x, kn_asprintf("%s=%.*s", name, (int)size, (const char *)value));
    return 0;
}

/* Queues the xattrs of fd for the next describe(). */
static void fd_xattrs(int fd)
{
    char names[4096];
    ssize_t n = flistxattr(fd, names, sizeof(names));
    for (char *nm = names; n > 0 && nm < names + n; nm += strlen(nm) + 1) {
        if (kn_str_startswith(nm, "trusted.overlay.") || kn_str_startswith(nm, "user.overlay."))
            continue;
        char v[1024];
        ssize_t vn = fgetxattr(fd, nm, v, sizeof(v));
        if (vn >= 0)
            rec_xattr(NULL, nm, v, (size_t)vn, NULL);
    }
}

static int rec_sink(void *c, const char *path, const struct stat *st, int fd, const char *linkname,
                    struct kn_error **err)
{
    (void)c;
    (void)err;
    char *content = NULL;
    if (fd >= 0)
        content = read_fd(fd);
    bool hard = S_ISREG(st->st_mode) && linkname;
    describe(path, st, S_ISLNK(st->st_mode) || hard ? linkname : content, hard);
    free(content);
    return 0;
}

/* Lists a directory tree the way the stream is described: whiteouts (0/0
 * char devices) as ".wh.NAME", opaque dirs with a ".wh..wh..opq" line. */
static void list_dir(int dfd, const char *prefix)
{
    DIR *d = fdopendir(dup(dfd));
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "/" : "", de->d_name);
        struct stat st;
        fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW);
        if (S_ISCHR(st.st_mode) && st.st_rdev == 0) {
            char wh[4200];
            snprintf(wh, sizeof(wh), "%s%s.wh.%s", prefix, *prefix ? "/" : "", de->d_name);
            describe(wh, &st, NULL, false);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            int c = openat(dfd, de->d_name, O_RDONLY | O_DIRECTORY);
            fd_xattrs(c);
            describe(path, &st, NULL, false);
            char v[4];
            if (fgetxattr(c, "user.overlay.opaque", v, sizeof(v)) == 1 ||
                fgetxattr(c, "trusted.overlay.opaque", v, sizeof(v)) == 1) {
                char opq[4200];
                snprintf(opq, sizeof(opq), "%s/.wh..wh..opq", path);
                struct stat ost = {.st_mode = S_IFREG};
                describe(opq, &ost, NULL, false);
            }
            list_dir(c, path);
            close(c);
        } else if (S_ISLNK(st.st_mode)) {
            char t[4096];
            ssize_t n = readlinkat(dfd, de->d_name, t, sizeof(t) - 1);
            t[n > 0 ? n : 0] = '\0';
            describe(path, &st, t, false);
        } else if (S_ISREG(st.st_mode)) {
            int f = openat(dfd, de->d_name, O_RDONLY);
            char *c = read_fd(f);
            fd_xattrs(f);
            close(f);
            describe(path, &st, c, false);
            free(c);
        } else {
            describe(path, &st, NULL, false);
        }
    }
    closedir(d);
}

/* Hard links in a materialized dir are separate lines with the same
 * content; the stream names the first path. Map "h" lines back for the
 * comparison by content of the upper listing: we compare the stream with
 * the expectation and the upper with the stream with 'h' lines turned into
 * 'f' lines carrying the content. */
static char *list_upper(const char *dir)
{
    int d = open(dir, O_RDONLY | O_DIRECTORY);
    list_dir(d, "");
    close(d);
    return rec_take();
}

/* ---- running an op -------------------------------------------------------------- */

static struct ir_file_action A(enum ir_file_kind kind, const char *src, const char *dst,
                               unsigned flags) {
    struct ir_file_action a = {.kind = kind, .src_input = 1, .mode = -1, .flags = flags};
    a.src = (char *)src;
    a.dest = (char *)dst;
    return a;
}

static int64_t fixed_mtime = 1700000000;

static struct ex_fileop_req mkreq(struct ir_file *op, const struct ex_view *src)
{
    static const struct ex_view *inputs[3];
    inputs[0] = dest;
    inputs[1] = src ? src : ctx;
    inputs[2] = stage;
    struct ex_fileop_req r = {.op = op,
                              .dest = dest,
                              .inputs = inputs,
                              .ninputs = 3,
                              .mtime = fixed_mtime,
                              .tmpdir = root};
    return r;
}

/* Runs both back-ends; returns the stream's listing (NULL + *errmsg on
 * failure) and checks the materialized listing and the diff_ids match. */
static char *run(const char *name, struct ir_file_action *acts, size_t n, const struct ex_view *src,
                 char **errmsg)
{
    struct ir_file op = {.actions = acts, .nactions = n};
    struct ex_fileop_req req = mkreq(&op, src);
    struct kn_error *e = NULL;
    struct ex_fileop_sink sink = {.add = rec_sink, .add_xattr = rec_xattr};
    if (ex_fileop_stream(&req, &sink, &e) < 0) {
        *errmsg = kn_strdup(e->msg);
        kn_err_free(e);
        free(rec_take());
        /* the materializer must fail the same way */
        char up[4300];
        snprintf(up, sizeof(up), "%s/up-err-XXXXXX", root);
        mkdtemp(up);
        struct kn_error *e2 = NULL;
        int rc = ex_fileop_materialize(&req, up, &e2);
        ok(rc < 0 && e2 && strcmp(e2->msg, *errmsg) == 0, "%s: materialize fails the same way",
           name);
        kn_err_free(e2);
        return NULL;
    }
    char *stream = rec_take();

    /* the stream as a layer */
    struct ex_layer_opts lo = {.compression = EX_COMP_ZSTD, .source_date_epoch = -1};
    struct ex_layer_writer *w = ex_layer_writer_new(store, &lo, &e);
    struct ex_layer_info si = {0}, mi = {0};
    int rc = w ? ex_fileop_stream_layer(&req, w, &e) : -1;
    if (rc == 0)
        rc = ex_layer_writer_finish(w, &si, &e);
    else if (w)
        ex_layer_writer_abort(w);
    ok(rc == 0, "%s: stream into a layer%s%s", name, e ? ": " : "", e ? e->msg : "");
    kn_err_free(e);
    e = NULL;

    /* materialized */
    char up[4300];
    snprintf(up, sizeof(up), "%s/up-XXXXXX", root);
    mkdtemp(up);
    rc = ex_fileop_materialize(&req, up, &e);
    ok(rc == 0, "%s: materialize%s%s", name, e ? ": " : "", e ? e->msg : "");
    kn_err_free(e);
    e = NULL;
    char *mat = list_upper(up);
    /* the upper has no 'h' lines: rewrite the stream's for the comparison */
    struct kn_buf sb = KN_BUF_INIT;
    for (char *l = stream; *l;) {
        char *eol = strchr(l, '\n');
        char *h = strstr(l, " h ");
        if (h && h < eol) {
            /* "path h MODE U:G first" -> "path f MODE U:G <content of first>" */
            char *first = strrchr(l, ' ');
            first = kn_strndup(first + 1, (size_t)(eol - first - 1));
            char p[4400];
            snprintf(p, sizeof(p), "%s/%s", up, first);
            int f = open(p, O_RDONLY);
            char *c = f >= 0 ? read_fd(f) : kn_strdup("?");
            if (f >= 0)
                close(f);
            char *lastsp = strrchr(l, ' ');
            kn_buf_add(&sb, l, (size_t)(h - l));
            kn_buf_adds(&sb, " f ");
            kn_buf_add(&sb, h + 3, (size_t)(lastsp - h - 3));
            kn_buf_addf(&sb, " %s\n", c);
            free(c);
            free(first);
        } else {
            kn_buf_add(&sb, l, (size_t)(eol - l + 1));
        }
        l = eol + 1;
    }
    char *sflat = kn_buf_detach(&sb);
    is_str(mat, sflat, "%s: materialized tree equals the stream", name);
    free(sflat);
    free(mat);
    rc = ex_layer_pack_dir(store, up, &lo, &mi, &e);
    ok(rc == 0, "%s: pack the upper%s%s", name, e ? ": " : "", e ? e->msg : "");
    kn_err_free(e);
    e = NULL;
    is_str(mi.diff_id, si.diff_id, "%s: stream and materialize give the same diff_id", name);

    /* the stream's blob unpacked gives the tree again */
    char un[4300];
    snprintf(un, sizeof(un), "%s/un-XXXXXX", root);
    mkdtemp(un);
    rc = ex_layer_unpack(store, si.digest, si.media_type, un, EX_UNPACK_OVERLAY | EX_UNPACK_OWNERS,
                         NULL, &e);
    ok(rc == 0, "%s: unpack the stream's blob%s%s", name, e ? ": " : "", e ? e->msg : "");
    kn_err_free(e);
    e = NULL;
    char *unl = list_upper(un);
    char *upl = list_upper(up);
    is_str(unl, upl, "%s: unpacked blob equals the materialized tree", name);
    free(unl);
    free(upl);
    return stream;
}

static void check(const char *name, struct ir_file_action *acts, size_t n, const char *want)
{
    char *errmsg = NULL;
    char *got = run(name, acts, n, NULL, &errmsg);
    if (!got) {
        ok(0, "%s: failed: %s", name, errmsg);
        free(errmsg);
        return;
    }
    is_str(got, want, "%s: tree", name);
    free(got);
}

static void check_err(const char *name, struct ir_file_action *acts, size_t n, const char *want)
{
    char *errmsg = NULL;
    char *got = run(name, acts, n, NULL, &errmsg);
    ok(!got, "%s: fails", name);
    is_str(errmsg, want, "%s: error message", name);
    free(got);
    free(errmsg);
}

/* ---- the fixture ------------------------------------------------------------------ */

static void fixture(void)
{
    snprintf(root, sizeof(root), "%s", tap_tmpdir());
    snprintf(ctxdir, sizeof(ctxdir), "%s/ctx", root);
    snprintf(basedir, sizeof(basedir), "%s/base", root);
    snprintf(stagedir, sizeof(stagedir), "%s/stage", root);
    put(ctxdir, "a.txt", "A", 0644);
    put(ctxdir, "b.sh", "B", 0755);
    put(ctxdir, "dir/x.txt", "X", 0644);
    put(ctxdir, "dir/sub/y.txt", "Y", 0600);
    put(ctxdir, "dir/.hidden", "H", 0644);
    put(ctxdir, "dir2/keep", "K", 0644);
    put(ctxdir, "docs/readme.md", "R", 0644);
    put(ctxdir, "docs/notes.txt", "N", 0644);
    put(ctxdir, "etc/passwd", "ctx-passwd", 0644);
    put(ctxdir, "ignored.log", "I", 0644);
    put(ctxdir, "hl1", "L", 0644);
    char p1[4400], p2[4400];
    snprintf(p1, sizeof(p1), "%s/hl1", ctxdir);
    snprintf(p2, sizeof(p2), "%s/hl2", ctxdir);
    link(p1, p2);
    put(ctxdir, "attr/f.txt", "F", 0644);
    snprintf(p1, sizeof(p1), "%s/attr/f.txt", ctxdir);
    snprintf(p2, sizeof(p2), "%s/attr", ctxdir);
    if (setxattr(p1, "user.kiln.b", "2", 1, 0) < 0 || setxattr(p1, "user.kiln.a", "1", 1, 0) < 0 ||
        setxattr(p2, "user.kiln.dir", "d", 1, 0) < 0)
        perror("setxattr");
    lnk(ctxdir, "link", "a.txt");
    lnk(ctxdir, "evil", "/etc/passwd");
    lnk(ctxdir, "escape", "../../../../../etc");
    snprintf(p1, sizeof(p1), "%s/dir/sub", ctxdir);
    chmod(p1, 0700);
    /* a tar.gz and a .gz that is no tar */
    put(root, "arch/top.txt", "T", 0644);
    put(root, "arch/in/deep.txt", "D", 0640);
    sh("tar -C '%s/arch' --owner=11 --group=12 --numeric-owner --mtime=@1600000000 -czf "
       "'%s/pkg.tar.gz' top.txt in",
       root, ctxdir);
    sh("printf plain | gzip -n > '%s/note.gz'", ctxdir);

    if (system("command -v xz >/dev/null && command -v bzip2 >/dev/null") == 0) {
        sh("tar -C '%s/arch' --owner=0 --group=0 --numeric-owner -cJf '%s/pkg.tar.xz' top.txt",
           root, ctxdir);
        sh("tar -C '%s/arch' --owner=0 --group=0 --numeric-owner -cjf '%s/pkg.tar.bz2' top.txt",
           root, ctxdir);
    }
    /* an archive with an entry climbing out of the destination */
    sh("python3 -c \"import tarfile,io; t=tarfile.open('%s/bad.tar','w'); "
       "i=tarfile.TarInfo('../../evil'); i.size=1; t.addfile(i, io.BytesIO(b'E')); t.close()\"",
       ctxdir);

    /* the destination: two layers, the top one removing /gone */
    char l1[4300], l2[4300];
    snprintf(l1, sizeof(l1), "%s/l1", basedir);
    snprintf(l2, sizeof(l2), "%s/l2", basedir);
    put(l1, "etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        0644);
    put(l1, "etc/group", "root:x:0:\nstaff:x:50:app\n", 0644);
    put(l1, "srv/old.txt", "O", 0644);
    put(l1, "data", "D", 0644);
    put(l1, "opt/keep/k.txt", "k", 0644);
    put(l1, "gone/g.txt", "g", 0644);
    char s[4600];
    snprintf(s, sizeof(s), "%s/srv", l1);
    chmod(s, 0750);
    if (chown(s, 5, 0) < 0)
        perror("chown");
    lnk(l1, "lnk", "srv");
    lnk(l1, "abs", "/srv");
    mkdirs(l2, 0755);
    snprintf(s, sizeof(s), "%s/gone", l2);
    mknod(s, S_IFCHR, makedev(0, 0));
    const char *layers[] = {l1, l2};
    struct kn_error *e = NULL;
    dest = ex_view_new_chain(layers, 2, "stage 'base'", &e);
    char *ign[] = {"*.log"};
    ctx = ex_view_new_dir(ctxdir, "build context", NULL, 0, ign, 1, &e);
    /* another stage: owners kept */
    put(stagedir, "app/bin/tool", "TOOL", 0755);
    snprintf(s, sizeof(s), "%s/app/bin/tool", stagedir);
    if (chown(s, 33, 34) < 0)
        perror("chown");
    /* a second layer of the stage: a whiteout and an opaque dir */
    char s2[4300];
    snprintf(s2, sizeof(s2), "%.4200s2", stagedir);
    put(stagedir, "app/old.txt", "OLD", 0644);
    put(stagedir, "app/cfg/a.conf", "a", 0644);
    put(stagedir, "app/cfg/b.conf", "b", 0644);
    put(s2, "app/cfg/c.conf", "c", 0644);
    put(s2, "app/.wh.old.txt", "", 0644);
    snprintf(s, sizeof(s), "%s/app/cfg", s2);
    setxattr(s, "user.overlay.opaque", "y", 1, 0);
    const char *sl[] = {stagedir, s2};
    stage = ex_view_new_chain(sl, 2, "stage 'build'", &e);
    char sroot[4300];
    snprintf(sroot, sizeof(sroot), "%s/store", root);
    store = ex_store_open(sroot, &e);
    if (!dest || !ctx || !stage || !store) {
        fprintf(stderr, "fixture: %s\n", e ? e->msg : "?");
        exit(1);
    }
}

/* ---- the cases ------------------------------------------------------------------------ */

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void test_copy_cases(void)
{
    {
        struct ir_file_action a[] = {A(IR_FILE_COPY, "a.txt", "/dst/a.txt", IR_FF_CREATE_PARENTS)};
        check("file to a new path", a, N(a), "dst d 755 0:0\ndst/a.txt f 644 0:0 A\n");
    }
    {
        struct ir_file_action a[] = {
            A(IR_FILE_COPY, "a.txt", "/srv/", IR_FF_CREATE_PARENTS | IR_FF_DEST_IS_DIR)};
        check("file into an existing dir (slash)", a, N(a),
              "srv d 750 5:0\nsrv/a.txt f 644 0:0 A\n");
    }
    {
        struct ir_file_action a[] = {A(IR_FILE_COPY, "a.txt", "/srv", IR_FF_CREATE_PARENTS)};
        check("file into an existing dir (no slash)", a, N(a),
              "srv d 750 5:0\nsrv/a.txt f 644 0:0 A\n");
    }
    {
        struct ir_file_action a[] = {
            A(IR_FILE_COPY, "a.txt", "/new/", IR_FF_CREATE_PARENTS | IR_FF_DEST_IS_DIR)};
        check("file into a new dir (slash)", a, N(a), "new d 755 0:0\nnew/a.txt f 644 0:0 A\n");
    }
    {
        struct ir_file_action a[] = {A(IR_FILE_COPY, "a.txt", "/data", IR_FF_CREATE_PARENTS)};
        check("file over an existing file", a, N(a), "data f 644 0:0 A\n");
    }
    {
        struct ir_file_action a[] = {
            A(IR_FILE_COPY, "a.txt", "/lnk/", IR_FF_CREATE_PARENTS | IR_FF_DEST_IS_DIR)};
        check("dest through a relative symlink", a, N(a), "srv d 750 5:0\nsrv/a.txt f 644 0:0 A\n");
    }
    {
        struct ir_file_action a[] = {A(IR_FILE_COPY, "a.txt", "/abs/x", IR_FF_CREATE_PARENTS)};
        check("dest through an absolute symlink", a, N(a), "srv d 750 5:0\nsrv/x f 644 0:0 A\n");
    }
    {
        struct ir_file_action a[] = {
            A(IR_FILE_COPY, "dir", "/out", IR_FF_CREATE_PARENTS | IR_FF_DIR_CONTENTS)};
        check("dir contents to a new dir", a, N(a),
              "out d 755 0:0\nout/.hidden f 644 0:0 H\nout/sub d 700 0:0\n"
              "out/sub/y.txt f 600 0:0 Y\nout/x.txt f 644 0:0 X\n");
    }
    {
        struct ir_file_action a[] = {
            A(IR_FILE_COPY, "dir", "/srv", IR_FF_CREATE_PARENTS | IR_FF_DIR_CONTENTS)};
        check("dir contents merged into an existing dir", a, N(a),
              "srv d 750 5:0\nsrv/.hidden f 644 0:0 H\nsrv/sub d 700 0:0\n"
              "srv/sub/y.txt f 600 0:0 Y\nsrv/x.txt f 644 0:0 X\n");
    }
    {
        struct ir_file_action a[] = {
            A(IR_FILE_COPY, "dir", "/", IR_FF_CREATE_PARENTS | IR_FF_DIR_CONTENTS)};
        check("dir contents to the root", a, N(a),
              ".hidden f 644 0:0 H\nsub d 700 0:0\nsub/y.txt f 600 0:0 Y\nx.txt f 644 0:0 X\n");
    }
    {
        struct ir_file_action a[] = {
            A(IR_FILE_COPY, "dir", "/out", IR_FF_CREATE_PARENTS | IR_FF_DIR_CONTENTS)};
        a[0].chown = "app";
        check("--chown user applies to created parents too", a, N(a),
              "out d 755 1000:1001\nout/.hidden f 644 1000:1001 H\nout/sub d 700 1000:1001\n"
              "out/sub/y.txt f 600 1000:1001 Y\nout/x.txt f 644 1000:1001 X\n");
    }
    {
        struct ir_file_action a[] = {A(IR_FILE_COPY, "a.txt", "/p/q/a", IR_FF_CREATE_PARENTS)};
        a[0].chown = "app:staff";
        check("--chown user:group names", a, N(a),
              "p d 755 1000:50\np/q d 755 1000:50\np/q/a f 644 1000:50 A\n");
    }
    {
        struct ir_file_action a[] = {A(IR_FILE_COPY, "a.txt", "/a", IR_FF_CREATE_PARENTS)};
        a[0].chown = "7";
        check("--chown numeric uid gives gid = uid", a, N(a), "a f 644 7:7 A\n");
        a[0].chown = "7:8";
        check("--chown numeric uid:gid", a, N(a), "a f 644 7:8 A\n");
        a[0].chown = "app:9";
        check("--chown name:numeric", a, N(a), "a f 644 1000:9 A\n");
    }
    {
        struct ir_file_action a[] = {
            A(IR_FILE_COPY, "dir", "/o", IR_FF_CREATE_PARENTS | IR_FF_DIR_CONTENTS)};
        a[0].mode = 0640;
        check("--chmod octal applies to files and copied dirs", a, N(a),
              "o d 755 0:0\no/.hidden f 640 0:0 H\no/sub d 640 0:0\no/sub/y.txt f 640 0:0 Y\n"
              "o/x.txt f 640 0:0 X\n");
        a[0].mode = -1;
        a[0].chmod = "u+x,go-r,a+X";
        check("--chmod symbolic", a, N(a),
              "o d 755 0:0\no/.hidden f 711 0:0 H\no/sub d 711 0:0\no/sub/y.txt f 711 0:0 Y\n"
              "o/x.txt f 711 0:0 X\n");
    }
    {
        struct ir_file_action a[] = {
            A(IR_FILE_COPY, "*.txt", "/w/",
              IR_FF_WILDCARD | IR_FF_CREATE_PARENTS | IR_FF_DEST_IS_DIR | IR_FF_DIR_CONTENTS)};
        check("wildcard", a, N(a), "w d 755 0:0\nw/a.txt f 644 0:0 A\n");
        a[0].src = "d*/*.txt";
        check("wildcard in two components", a, N(a),
              "w d 755 0:0\nw/notes.txt f 644 0:0 N\nw/x.txt f 644 0:0 X\n");
        a[0].src = "do?s";
        check("wildcard matching a dir copies its contents", a, N(a),
              "w d 755 0:0\nw/notes.txt f 644 0:0 N\nw/readme.md f 644 0:0 R\n");
        a[0].src = "[ab].*";
        check("wildcard with a class", a, N(a),
              "w d 755 0:0\nw/a.txt f 644 0:0 A\nw/b.sh f 755 0:0 B\n");
        a[0].src = "*.log";
        a[0].flags |= IR_FF_ALLOW_EMPTY_WILDCARD;
        check("empty wildcard allowed (dockerignored file)", a, N(a), "");
        a[0].src = "hl*";
        a[0].flags &= ~(unsigned)IR_FF_ALLOW_EMPTY_WILDCARD;
        check("hard links within one copy", a, N(a),
              "w d 755 0:0\nw/hl1 f 644 0:0 L\nw/hl2 h 644 0:0 w/hl1\n");
    }
    {
        struct ir_file_action a[] = {A(IR_FILE_COPY, "attr", "/attr", IR_FF_CREATE_PARENTS)};
        check("xattrs of copied files and dirs are kept", a, N(a),
              "attr d 755 0:0 x:user.kiln.dir=d\nattr/f.txt f 644 0:0 F x:user.kiln.a=1 "
              "x:user.kiln.b=2\n");
        a[0].flags |= IR_FF_DIR_CONTENTS;
        check("a created dest dir has no xattrs", a, N(a),
              "attr d 755 0:0\nattr/f.txt f 644 0:0 F x:user.kiln.a=1 x:user.kiln.b=2\n");
    }
    {
        struct ir_file_action a[] = {A(IR_FILE_COPY, "link", "/l", IR_FF_CREATE_PARENTS)};
        check("a symlink source is copied as a link", a, N(a), "l l a.txt\n");
        a[0].flags |= IR_FF_FOLLOW_SYMLINKS;
        check("a symlink source followed", a, N(a), "l f 644 0:0 A\n");
        a[0].src = "evil";
        check("an absolute link followed stays in the context", a, N(a),
              "l f 644 0:0 ctx-passwd\n");
        a[0].src = "escape/passwd";
        check("a climbing link stays in the context", a, N(a), "l f 644 0:0 ctx-passwd\n");
    }
    {
        struct ir_file_action a[] = {
            A(IR_FILE_COPY, "dir", "/e", IR_FF_CREATE_PARENTS | IR_FF_DIR_CONTENTS)};
        char *ex[] = {"*.txt", "sub/*.txt"};
        a[0].exclude = ex;
        a[0].nexclude = 2;
        check("--exclude", a, N(a), "e d 755 0:0\ne/.hidden f 644 0:0 H\ne/sub d 700 0:0\n");
    }
    {
        struct ir_file_action a[] = {A(IR_FILE_COPY, "dir/sub/y.txt", "/p/",
                                       IR_FF_CREATE_PARENTS | IR_FF_DEST_IS_DIR | IR_FF_PARENTS)};
        check("--parents", a, N(a),
              "p d 755 0:0\np/dir d 755 0:0\np/dir/sub d 700 0:0\np/dir/sub/y.txt f 600 0:0 Y\n");
        a[0].src = "dir/./sub/y.txt";
        check("--parents with a ./ pivot", a, N(a),
              "p d 755 0:0\np/sub d 700 0:0\np/sub/y.txt f 600 0:0 Y\n");
    }
    {
        struct ir_file_action a[] = {
            A(IR_FILE_COPY, "app", "/usr/local", IR_FF_CREATE_PARENTS | IR_FF_DIR_CONTENTS)};
        a[0].src_input = 2;
        check("from another stage: owners kept, whiteouts and opaque dirs honoured", a, N(a),
              "usr d 755 0:0\nusr/local d 755 0:0\nusr/local/bin d 755 0:0\n"
              "usr/local/bin/tool f 755 33:34 TOOL\nusr/local/cfg d 755 0:0\n"
              "usr/local/cfg/c.conf f 644 0:0 c\n");
    }
    {
        struct ir_file_action a[] = {A(IR_FILE_COPY, "pkg.tar.gz", "/x/",
                                       IR_FF_CREATE_PARENTS | IR_FF_DEST_IS_DIR | IR_FF_UNPACK)};
        check("ADD extracts a tar.gz", a, N(a),
              "x d 755 0:0\nx/in d 755 11:12\nx/in/deep.txt f 640 11:12 D\nx/top.txt f 644 11:12 "
              "T\n");
        a[0].src = "note.gz";
        char *errmsg = NULL;
        char *got = run("ADD of a .gz that is no tar", a, N(a), NULL, &errmsg);
        ok(got && kn_str_startswith(got, "x d 755 0:0\nx/note.gz f 644 0:0 \x1f\x8b"),
           "ADD of a .gz that is no tar copies the file");
        free(got);
        free(errmsg);
        a[0].src = "a.txt";
        check("ADD of a non-archive copies the file", a, N(a),
              "x d 755 0:0\nx/a.txt f 644 0:0 A\n");
        char xz[4400];
        snprintf(xz, sizeof(xz), "%s/pkg.tar.xz", ctxdir);
        if (access(xz, F_OK) == 0) {
            a[0].src = "pkg.tar.xz";
            check("ADD extracts a tar.xz", a, N(a), "x d 755 0:0\nx/top.txt f 644 0:0 T\n");
            a[0].src = "pkg.tar.bz2";
            check("ADD extracts a tar.bz2", a, N(a), "x d 755 0:0\nx/top.txt f 644 0:0 T\n");
        } else {
            printf("# skipped xz/bzip2: the tools are missing\n");
        }
        a[0].src = "bad.tar";
        char *msg = NULL;
        char *res = run("ADD of an escaping archive", a, N(a), NULL, &msg);
        ok(!res && msg && strstr(msg, "bad.tar") && strstr(msg, "evil"),
           "ADD of an archive with a climbing entry is refused: %s", msg ? msg : "(none)");
        free(res);
        free(msg);
    }
}

static void test_other_actions(void)
{
    {
        struct ir_file_action a[] = {A(IR_FILE_MKFILE, NULL, "/etc/motd", 0)};
        a[0].data = "hello\n";
        a[0].datalen = 6;
        check("mkfile (heredoc)", a, N(a), "etc d 755 0:0\netc/motd f 644 0:0 hello\n\n");
        a[0].mode = 0600;
        a[0].chown = "app";
        check("mkfile with mode and owner", a, N(a),
              "etc d 755 0:0\netc/motd f 600 1000:1001 hello\n\n");
    }
    {
        struct ir_file_action a[] = {A(IR_FILE_MKDIR, NULL, "/srv", IR_FF_CREATE_PARENTS)};
        check("mkdir of an existing dir (WORKDIR) changes nothing", a, N(a), "");
        a[0].dest = "/new/deep";
        check("mkdir with parents", a, N(a), "new d 755 0:0\nnew/deep d 755 0:0\n");
        a[0].dest = "/srv/sub";
        a[0].mode = 0700;
        a[0].chown = "app";
        check("mkdir with mode and owner", a, N(a), "srv d 750 5:0\nsrv/sub d 700 1000:1001\n");
    }
    {
        struct ir_file_action a[] = {A(IR_FILE_RM, NULL, "/data", 0)};
        check("rm makes a whiteout", a, N(a), ".wh.data w\n");
        a[0].dest = "/srv/old.txt";
        check("rm in a dir", a, N(a), "srv d 750 5:0\nsrv/.wh.old.txt w\n");
        a[0].dest = "/nothere";
        a[0].flags = IR_FF_ALLOW_NOT_FOUND;
        check("rm of a missing path allowed", a, N(a), "");
        a[0].dest = "/gone";
        check("rm of a path already whited out", a, N(a), "");
    }
    {
        struct ir_file_action a[] = {A(IR_FILE_RM, NULL, "/opt/keep", 0),
                                     A(IR_FILE_MKDIR, NULL, "/opt/keep", 0)};
        check("rm then mkdir: an opaque dir", a, N(a),
              "opt d 755 0:0\nopt/keep d 755 0:0\nopt/keep/.wh..wh..opq w\n");
    }
    {
        struct ir_file_action a[] = {A(IR_FILE_COPY, "a.txt", "/t/a", IR_FF_CREATE_PARENTS),
                                     A(IR_FILE_RM, NULL, "/t/a", 0)};
        check("copy then rm of a new file leaves no whiteout", a, N(a), "t d 755 0:0\n");
    }
    {
        struct ir_file_action a[] = {A(IR_FILE_SYMLINK, NULL, "/bin", 0)};
        a[0].target = "usr/bin";
        check("symlink", a, N(a), "bin l usr/bin\n");
    }
    {
        struct ir_file_action a[] = {A(IR_FILE_MKDIR, NULL, "/m", 0),
                                     A(IR_FILE_COPY, "a.txt", "/m", 0)};
        check("a later action sees an earlier one's dir", a, N(a),
              "m d 755 0:0\nm/a.txt f 644 0:0 A\n");
    }
}

static void test_errors(void)
{
    struct ir_file_action a[] = {A(IR_FILE_COPY, "missing.txt", "/x", IR_FF_CREATE_PARENTS)};
    check_err("missing source", a, N(a), "COPY source 'missing.txt' not found in build context");
    a[0].src = "ignored.log";
    check_err("a dockerignored source", a, N(a),
              "COPY source 'ignored.log' not found in build context");
    a[0].src = "../x";
    check_err("a source outside the context", a, N(a),
              "COPY source '../x' is outside of the build context");
    a[0].src = "dir/../../x";
    check_err("a source climbing out of the context", a, N(a),
              "COPY source 'dir/../../x' is outside of the build context");
    a[0].src = "*.nothing";
    a[0].flags |= IR_FF_WILDCARD;
    check_err("wildcard without a match", a, N(a),
              "no source files were specified: COPY source '*.nothing' matches nothing in build "
              "context");
    a[0].src = "d*";
    a[0].dest = "/m";
    check_err("several sources to a non-directory", a, N(a),
              "when using COPY with more than one source file, the destination '/m' must be a "
              "directory and end with a /");
    a[0].src = "a.txt";
    a[0].dest = "/x";
    a[0].flags = IR_FF_CREATE_PARENTS;
    a[0].chown = "nobody";
    check_err("unknown --chown user", a, N(a),
              "cannot resolve user 'nobody': no matching entry in /etc/passwd of the destination");
    a[0].chown = "app:nogroup";
    check_err("unknown --chown group", a, N(a),
              "cannot resolve group 'nogroup': no matching entry in /etc/group of the destination");
    a[0].chown = "app:";
    check_err("empty --chown group", a, N(a), "invalid --chown value 'app:'");
    a[0].chown = NULL;
    a[0].chmod = "u+q";
    check_err("bad --chmod", a, N(a), "invalid chmod mode 'u+q'");
    a[0].chmod = NULL;
    a[0].src = "dir";
    a[0].dest = "/data";
    a[0].flags = IR_FF_CREATE_PARENTS | IR_FF_DIR_CONTENTS;
    check_err("a directory over a file", a, N(a), "cannot copy to non-directory: '/data'");
    a[0].src = "dir2";
    a[0].dest = "/opt";
    check_err("a file over a directory", a, N(a),
              "cannot replace directory '/opt/keep' with file 'dir2/keep'");
    a[0].src = "a.txt";
    a[0].dest = "/data/x";
    a[0].flags = IR_FF_CREATE_PARENTS;
    check_err("a dest below a file", a, N(a),
              "cannot copy to '/data/x': '/data' is not a directory");
    a[0].dest = "/nodir/x";
    a[0].flags = 0;
    check_err("a missing parent without CREATE_PARENTS", a, N(a),
              "cannot copy to '/nodir/x': parent directory '/nodir' does not exist");
    struct ir_file_action r[] = {A(IR_FILE_RM, NULL, "/nothere", 0)};
    check_err("rm of a missing path", r, N(r), "cannot remove '/nothere': not found");
    struct ir_file_action m[] = {A(IR_FILE_MKDIR, NULL, "/data", 0)};
    check_err("mkdir over a file", m, N(m), "cannot create directory '/data': a file exists there");
    struct ir_file_action f[] = {A(IR_FILE_MKFILE, NULL, "/srv", 0)};
    check_err("mkfile over a dir", f, N(f), "cannot create file '/srv': a directory exists there");
    struct ir_file_action s[] = {A(IR_FILE_SYMLINK, NULL, "/data", 0)};
    s[0].target = "x";
    check_err("symlink over a file", s, N(s), "cannot create symlink '/data': a file exists there");

    /* ADD --checksum of a downloaded file */
    struct ir_file_action h[] = {A(IR_FILE_COPY, "a.txt", "/dl", IR_FF_CREATE_PARENTS)};
    struct ir_file op = {.actions = h, .nactions = 1};
    struct ex_fileop_req req = mkreq(&op, NULL);
    const char *sums[3] = {
        NULL, "sha256:0000000000000000000000000000000000000000000000000000000000000000", NULL};
    req.checksums = sums;
    struct kn_error *e = NULL;
    struct ex_fileop_sink sink = {.add = rec_sink};
    ok(ex_fileop_stream(&req, &sink, &e) < 0, "checksum mismatch fails");
    char want[KN_DIGEST_SIZE];
    kn_sha256_digest("A", 1, want);
    char *msg = kn_asprintf("checksum mismatch for 'a.txt': expected %s, got %s", sums[1], want);
    is_str(e ? e->msg : NULL, msg, "checksum mismatch message");
    free(msg);
    kn_err_free(e);
    e = NULL;
    sums[1] = want;
    ok(ex_fileop_stream(&req, &sink, &e) == 0, "matching checksum passes");
    free(rec_take());
    kn_err_free(e);
}

static void test_views(void)
{
    struct kn_error *e = NULL;
    struct stat st;
    ok(ex_view_stat(dest, "/gone/g.txt", false, &st, &e) < 0, "whiteout hides a lower dir");
    is_str(e ? e->msg : NULL, "'/gone/g.txt' not found in stage 'base'", "not-found message");
    kn_err_free(e);
    e = NULL;
    ok(ex_view_stat(dest, "/lnk/old.txt", false, &st, &e) == 0 && S_ISREG(st.st_mode),
       "a symlinked parent is followed");
    ok(ex_view_stat(ctx, "escape/../../../passwd", true, &st, &e) < 0,
       "'..' through a link clamps at the root");
    kn_err_free(e);
    e = NULL;
    int fd = ex_view_open(ctx, "evil", &e);
    char *c = fd >= 0 ? read_fd(fd) : NULL;
    is_str(c, "ctx-passwd", "an absolute link opens inside the root, not the host's /etc/passwd");
    free(c);
    if (fd >= 0)
        close(fd);
    kn_err_free(e);
    e = NULL;
    ok(ex_view_new_dir("/nonexistent-kiln", "x", NULL, 0, NULL, 0, &e) == NULL, "missing dir");
    is_str(e ? e->msg : NULL, "directory not found '/nonexistent-kiln'", "missing dir message");
    kn_err_free(e);
    e = NULL;

    /* include patterns (a named context transferring only some paths) */
    char *inc[] = {"dir/sub", "a.txt"};
    struct ex_view *iv = ex_view_new_dir(ctxdir, "context 'web'", inc, 2, NULL, 0, &e);
    ok(iv != NULL, "a view with include patterns");
    ok(iv && ex_view_stat(iv, "dir/sub/y.txt", false, &st, &e) == 0, "an included file is seen");
    ok(iv && ex_view_stat(iv, "a.txt", false, &st, &e) == 0, "an included top file is seen");
    ok(iv && ex_view_stat(iv, "dir", false, &st, &e) == 0 && S_ISDIR(st.st_mode),
       "a parent of an included path is seen");
    ok(iv && ex_view_stat(iv, "dir/x.txt", false, &st, &e) < 0, "a sibling not included is not");
    is_str(e ? e->msg : NULL, "'dir/x.txt' not found in context 'web'", "include message");
    kn_err_free(e);
    e = NULL;
    if (iv) {
        struct ir_file_action a = {.kind = IR_FILE_COPY,
                                   .src_input = 1,
                                   .src = ".",
                                   .dest = "/",
                                   .mode = -1,
                                   .flags = IR_FF_DIR_CONTENTS};
        char *errmsg = NULL;
        char *got = run("copy through include patterns", &a, 1, iv, &errmsg);
        is_str(got,
               "a.txt f 644 0:0 A\ndir d 755 0:0\ndir/sub d 700 0:0\ndir/sub/y.txt f 600 0:0 Y\n",
               "copy through include patterns: tree");
        free(got);
        free(errmsg);
    }
    ex_view_free(iv);
    char *bad[] = {"[z-a"};
    ok(ex_view_new_dir(ctxdir, "x", NULL, 0, bad, 1, &e) == NULL, "a malformed pattern is refused");
    ok(e && e->code == KN_E_PARSE, "with a parse error: %s", e ? e->msg : "(none)");
    kn_err_free(e);

    mode_t m;
    e = NULL;
    ok(ex_fileop_chmod_apply("g=u,o=", 0750, false, &m, &e) == 0 && m == 0770, "chmod g=u,o=");
    ok(ex_fileop_chmod_apply("a-x,u+s", 0755, false, &m, &e) == 0 && m == 04644, "chmod a-x,u+s");
    ok(ex_fileop_chmod_apply("755", 0, false, &m, &e) == 0 && m == 0755, "chmod octal");
    ok(ex_fileop_chmod_apply("+X", 0644, true, &m, &e) == 0 && m == 0755, "chmod +X on a dir");
    ok(ex_fileop_chmod_apply("+X", 0644, false, &m, &e) == 0 && m == 0644, "chmod +X on a file");
    ok(ex_fileop_chmod_apply("u+w,", 0, false, &m, &e) < 0, "trailing comma refused");
    kn_err_free(e);
}

static void touch_file(const char *rel, const char *content, bool keep_times)
{
    char p[4400];
    snprintf(p, sizeof(p), "%s/%s", ctxdir, rel);
    struct stat st;
    stat(p, &st);
    FILE *f = fopen(p, "w");
    fputs(content, f);
    fclose(f);
    if (keep_times) {
        struct timespec ts[2] = {st.st_atim, st.st_mtim};
        utimensat(AT_FDCWD, p, ts, 0);
    }
}

static void test_checksums(void)
{
    struct ir_file_action a = A(IR_FILE_COPY, "dir", "/x", IR_FF_DIR_CONTENTS);
    char c1[KN_DIGEST_SIZE], c2[KN_DIGEST_SIZE];
    struct kn_error *e = NULL;
    ok(ex_fileop_checksum(ctx, &a, c1, &e) == 0, "checksum of a dir");
    touch_file("docs/readme.md", "changed", false);
    ok(ex_fileop_checksum(ctx, &a, c2, &e) == 0 && strcmp(c1, c2) == 0,
       "editing an unrelated file keeps it");
    char p[4400];
    snprintf(p, sizeof(p), "%s/dir/x.txt", ctxdir);
    struct timespec ts[2] = {{1, 0}, {1, 0}};
    utimensat(AT_FDCWD, p, ts, 0);
    ok(ex_fileop_checksum(ctx, &a, c2, &e) == 0 && strcmp(c1, c2) == 0,
       "an mtime-only change keeps it");
    touch_file("dir/x.txt", "Z", true);
    ok(ex_fileop_checksum(ctx, &a, c2, &e) == 0 && strcmp(c1, c2) != 0,
       "a same-size content change (mtime kept) changes it");
    touch_file("dir/x.txt", "X", true);
    ok(ex_fileop_checksum(ctx, &a, c2, &e) == 0 && strcmp(c1, c2) == 0, "and back");
    chmod(p, 0600);
    ok(ex_fileop_checksum(ctx, &a, c2, &e) == 0 && strcmp(c1, c2) != 0, "a mode change changes it");
    chmod(p, 0644);
    char *ex[] = {"x.txt"};
    a.exclude = ex;
    a.nexclude = 1;
    ok(ex_fileop_checksum(ctx, &a, c2, &e) == 0 && strcmp(c1, c2) != 0, "--exclude changes it");
    touch_file("dir/x.txt", "excluded edit", false);
    char c3[KN_DIGEST_SIZE];
    ok(ex_fileop_checksum(ctx, &a, c3, &e) == 0 && strcmp(c3, c2) == 0,
       "editing an excluded file keeps it");
    touch_file("dir/x.txt", "X", false);
    a.exclude = NULL;
    a.nexclude = 0;
    a.src = "*.txt";
    a.flags |= IR_FF_WILDCARD;
    ok(ex_fileop_checksum(ctx, &a, c1, &e) == 0, "wildcard checksum");
    touch_file("b.sh", "B2", false);
    ok(ex_fileop_checksum(ctx, &a, c2, &e) == 0 && strcmp(c1, c2) == 0,
       "a file the wildcard does not match is not covered");
    touch_file("a.txt", "A2", false);
    ok(ex_fileop_checksum(ctx, &a, c2, &e) == 0 && strcmp(c1, c2) != 0,
       "a matched file is covered");
    touch_file("a.txt", "A", false);
    touch_file("b.sh", "B", false);
    a.src = "nothing*";
    ok(ex_fileop_checksum(ctx, &a, c1, &e) < 0, "no match is an error");
    is_str(e ? e->msg : NULL,
           "no source files were specified: COPY source 'nothing*' matches nothing in build "
           "context",
           "checksum error message");
    kn_err_free(e);
    e = NULL;
    struct ir_file_action s = A(IR_FILE_COPY, "app", "/", IR_FF_DIR_CONTENTS);
    ok(ex_fileop_checksum(stage, &s, c1, &e) == 0, "checksum of a stage");
    char tool[4400];
    snprintf(tool, sizeof(tool), "%s/app/bin/tool", stagedir);
    if (chown(tool, 0, 0) < 0)
        perror("chown");
    ok(ex_fileop_checksum(stage, &s, c2, &e) == 0 && strcmp(c1, c2) != 0,
       "an owner change in a stage changes it");
    if (chown(tool, 33, 34) < 0)
        perror("chown");
    struct ex_fileop_hash_stats hs;
    ex_fileop_hash_stats(&hs);
    ok(hs.hits > 0 && hs.misses > 0, "the content-hash cache is used (%ju hits, %ju misses)",
       (uintmax_t)hs.hits, (uintmax_t)hs.misses);
    kn_err_free(e);
}

/* ---- a copy larger than a plan batch ------------------------------------------------ */

/* A single-source COPY streams its plan in batches (exec/fileop/plan.c,
 * PLAN_BATCH entries): a tree of several batches, merged into an existing
 * directory and copied to a new one, with a hard link whose first path is
 * in an earlier batch than its second, must give what the materializer
 * (which plans everything at once) gives, entry for entry. */
static void test_big_copy(void)
{
    char bigdir[4300];
    snprintf(bigdir, sizeof(bigdir), "%s/big", root);
    for (int d = 0; d < 30; d++)
        for (int f = 0; f < 200; f++) {
            char rel[64], content[32];
            snprintf(rel, sizeof(rel), "tree/d%02d/f%03d", d, f);
            snprintf(content, sizeof(content), "%d.%d", d, f);
            put(bigdir, rel, content, f % 7 ? 0644 : 0755);
        }
    char first[4400], second[4400];
    snprintf(first, sizeof(first), "%s/tree/d00/f000", bigdir);
    snprintf(second, sizeof(second), "%s/tree/d29/zlink", bigdir);
    if (link(first, second) < 0)
        perror("link");
    struct kn_error *e = NULL;
    struct ex_view *big = ex_view_new_dir(bigdir, "big context", NULL, 0, NULL, 0, &e);
    if (!big) {
        ok(0, "big context: %s", e ? e->msg : "?");
        kn_err_free(e);
        return;
    }
    struct {
        const char *name, *dest, *top;
    } cases[] = {
        {"big tree merged into an existing dir", "/srv", "srv d 750 5:0\n"},
        {"big tree into a new dir", "/fresh/big", "fresh d 755 0:0\nfresh/big d 755 0:0\n"},
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct ir_file_action a[] = {
            A(IR_FILE_COPY, "tree", cases[i].dest, IR_FF_CREATE_PARENTS | IR_FF_DIR_CONTENTS)};
        char *errmsg = NULL;
        char *got = run(cases[i].name, a, N(a), big, &errmsg);
        if (!got) {
            ok(0, "%s: failed: %s", cases[i].name, errmsg);
            free(errmsg);
            continue;
        }
        size_t lines = 0;
        for (const char *c = got; *c; c++)
            lines += *c == '\n';
        is_int((long long)lines, 30 * 201 + 2 + (i == 1), "%s: every entry once", cases[i].name);
        ok(strncmp(got, cases[i].top, strlen(cases[i].top)) == 0, "%s: its parents first",
           cases[i].name);
        const char *pre = i == 0 ? "srv" : "fresh/big";
        char want[256];
        snprintf(want, sizeof(want), "\n%s/d29/zlink h 755 0:0 %s/d00/f000\n", pre, pre);
        ok(strstr(got, want) != NULL, "%s: the hard link names its first path", cases[i].name);
        free(got);
    }

    /* its checksum: the walk and the read-ahead (which hashes from the end)
     * read each file once between them, and the result does not depend on
     * who hashed what: the same with the cache cleared, and with it warm */
    uint64_t bytes = 0;
    for (int d = 0; d < 30; d++)
        for (int f = 0; f < 200; f++) {
            char content[32];
            bytes += (uint64_t)snprintf(content, sizeof(content), "%d.%d", d, f);
        }
    struct ir_file_action a = A(IR_FILE_COPY, "tree", "/x", IR_FF_DIR_CONTENTS);
    char c1[KN_DIGEST_SIZE], c2[KN_DIGEST_SIZE], c3[KN_DIGEST_SIZE];
    for (int round = 0; round < 3; round++) {
        ex_fileop_hash_cache_clear();
        ok(ex_fileop_checksum(big, &a, c1, &e) == 0, "big checksum, cold cache");
        struct ex_fileop_hash_stats hs;
        ex_fileop_hash_stats(&hs);
        is_int((long long)hs.bytes_hashed, (long long)bytes, "each file read once (round %d)",
               round);
        is_int((long long)hs.misses, 6000, "each inode hashed once (round %d)", round);
        ok(ex_fileop_checksum(big, &a, c2, &e) == 0 && strcmp(c1, c2) == 0,
           "the same checksum with a warm cache");
        if (round == 0)
            memcpy(c3, c1, sizeof(c3));
        is_str(c1, c3, "the same checksum every round");
    }
    ex_view_free(big);
}

int main(void)
{
    if (geteuid() != 0)
        tap_skip_all("the fixture needs root (chown, whiteout devices)");
    fixture();
    test_views();
    test_copy_cases();
    test_other_actions();
    test_errors();
    test_checksums();
    test_big_copy();
    ex_view_free(ctx);
    ex_view_free(dest);
    ex_view_free(stage);
    ex_store_close(store);
    return tap_done();
}
