/*
 * Unit tests for exec/layer: pack a tree holding every kind of entry, check
 * the tar with GNU tar and with libarchive, unpack it and compare; digests
 * reproducible under source_date_epoch; gzip, zstd and none; whiteouts in
 * both directions; the streaming writer.
 */
#include "exec/layer/internal.h"
#include "exec/store/store.h"
#include "tap_fmt.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <sched.h>
#include <sys/wait.h>
#include <time.h>

static bool is_root;
static bool have_user_xattr;
static const char *tmp;
static struct ex_store *store;

#define MTIME 1600000000

static void write_file(const char *path, const char *content, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || write(fd, content, strlen(content)) != (ssize_t)strlen(content))
        kn_die("cannot write %s", path);
    fchmod(fd, mode);
    close(fd);
}

static void set_mtime(const char *path, time_t t)
{
    struct timespec ts[2] = {{t, 0}, {t, 0}};
    utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW);
}

static const char *long_a, *long_b; /* a >100 byte name; a >255 byte path */

/* The tree every round trip uses; returns its path. */
static const char *make_tree(const char *name)
{
    const char *src = F("%s/%s", tmp, name);
    mkdir(src, 0755);
    write_file(F("%s/a.txt", src), "hello\n", 0644);
    write_file(F("%s/empty", src), "", 0600);
    write_file(F("%s/caf\xc3\xa9", src), "utf-8 name\n", 0644);
    /* a big file with a hole in the middle */
    int fd = open(F("%s/big", src), O_WRONLY | O_CREAT, 0644);
    char buf[65536];
    memset(buf, 'x', sizeof(buf));
    for (int i = 0; i < 16; i++)
        if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
            kn_die("write");
    if (pwrite(fd, "end", 3, 8 << 20) != 3)
        kn_die("pwrite");
    close(fd);
    mkdir(F("%s/d700", src), 0700);
    mkdir(F("%s/d1777", src), 01777);
    chmod(F("%s/d1777", src), 01777);
    mkdir(F("%s/d2755", src), 02755);
    chmod(F("%s/d2755", src), 02755);
    write_file(F("%s/suid", src), "#!/bin/sh\n", 04755);
    symlink("a.txt", F("%s/rel", src));
    symlink("/etc/passwd", F("%s/abs", src));
    symlink("nowhere", F("%s/dangling", src));
    write_file(F("%s/h1", src), "linked\n", 0640);
    link(F("%s/h1", src), F("%s/d2755/h2", src));
    mkfifo(F("%s/fifo", src), 0620);
    chmod(F("%s/fifo", src), 0620);
    char n150[151];
    memset(n150, 'n', 150);
    n150[150] = '\0';
    long_a = F("d700/%s", n150);
    write_file(F("%s/%s", src, long_a), "long name\n", 0644);
    char n200[201];
    memset(n200, 'm', 200);
    n200[200] = '\0';
    mkdir(F("%s/%s", src, n200), 0755);
    long_b = F("%s/%s", n200, n150);
    write_file(F("%s/%s", src, long_b), "long path\n", 0644);
    /* a long symlink target, and a hard link whose name and target are long */
    symlink(long_b, F("%s/longsym", src));
    link(F("%s/%s", src, long_b), F("%s/hlong", src));
    have_user_xattr = setxattr(F("%s/a.txt", src), "user.foo", "bar", 3, 0) == 0;
    if (is_root) {
        if (chown(F("%s/a.txt", src), 1234, 5678) < 0)
            kn_die("chown");
        mknod(F("%s/gone", src), S_IFCHR | 0, makedev(0, 0));
        mkdir(F("%s/opq", src), 0755);
        setxattr(F("%s/opq", src), "trusted.overlay.opaque", "y", 1, 0);
        write_file(F("%s/opq/keep", src), "kept\n", 0644);
        /* a security.capability-like xattr that is kept, an overlay one that is not */
        setxattr(F("%s/suid", src), "trusted.overlay.origin", "zz", 2, 0);
    }
    /* fixed mtimes everywhere (deepest first so dirs keep theirs) */
    const char *all[] = {"a.txt", "caf\xc3\xa9", "empty",    "big",      "suid",
                         "rel",   "abs",         "dangling", "h1",       "fifo",
                         long_a,  long_b,        "gone",     "opq/keep", "opq",
                         "d700",  "d1777",       "d2755/h2", "d2755",    n200};
    for (size_t i = 0; i < KN_ARRAY_SIZE(all); i++)
        set_mtime(F("%s/%s", src, all[i]), MTIME);
    set_mtime(F("%s/d700", src), MTIME); /* after its long child */
    return src;
}

static const char *blobpath(const char *digest)
{
    char *p = ex_store_blob_path(store, digest);
    const char *r = F("%s", p);
    free(p);
    return r;
}

static const char *pack(const char *src, enum ex_compression c, int64_t epoch,
                        struct ex_layer_info *info)
{
    struct ex_layer_opts o = {.compression = c, .source_date_epoch = epoch, .threads = 2};
    struct kn_error *err = NULL;
    if (ex_layer_pack_dir(store, src, &o, info, &err) < 0) {
        printf("# pack: %s\n", err->msg);
        kn_err_free(err);
        return NULL;
    }
    return blobpath(info->digest);
}

static char *run_cmd(const char *cmd)
{
    FILE *p = popen(cmd, "r");
    struct kn_buf b = KN_BUF_INIT;
    char buf[4096];
    size_t n;
    while (p && (n = fread(buf, 1, sizeof(buf), p)) > 0)
        kn_buf_add(&b, buf, n);
    if (p)
        pclose(p);
    kn_buf_adds(&b, "");
    return kn_buf_detach(&b);
}

/* Entries of a layer blob in order, read with libarchive: "type path[ -> link]" lines. */
static char *list_layer(const char *blob, struct kn_buf *details)
{
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    archive_read_support_filter_all(a);
    struct kn_buf b = KN_BUF_INIT;
    kn_buf_adds(&b, "");
    if (archive_read_open_filename(a, blob, 65536) != ARCHIVE_OK) {
        archive_read_free(a);
        return kn_buf_detach(&b);
    }
    struct archive_entry *e;
    locale_t old = uselocale(ex_layer_utf8_locale()); /* UTF-8 PAX names */
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        const char *hl = archive_entry_hardlink(e), *sl = archive_entry_symlink(e);
        char t = hl                                ? 'h'
                 : S_ISDIR(archive_entry_mode(e))  ? 'd'
                 : S_ISLNK(archive_entry_mode(e))  ? 'l'
                 : S_ISFIFO(archive_entry_mode(e)) ? 'p'
                 : S_ISCHR(archive_entry_mode(e))  ? 'c'
                                                   : '-';
        kn_buf_addf(&b, "%c %s%s%s\n", t, archive_entry_pathname(e), hl || sl ? " -> " : "",
                    hl   ? hl
                    : sl ? sl
                         : "");
        if (details) {
            kn_buf_addf(details, "%s uid=%lld gid=%lld uname=%s gname=%s mode=%o mtime=%lld",
                        archive_entry_pathname(e), (long long)archive_entry_uid(e),
                        (long long)archive_entry_gid(e),
                        archive_entry_uname(e) ? archive_entry_uname(e) : "",
                        archive_entry_gname(e) ? archive_entry_gname(e) : "",
                        (unsigned)archive_entry_perm(e), (long long)archive_entry_mtime(e));
            if (archive_entry_atime_is_set(e) || archive_entry_ctime_is_set(e))
                kn_buf_adds(details, " atime-or-ctime");
            const char *xn;
            const void *xv;
            size_t xs;
            archive_entry_xattr_reset(e);
            while (archive_entry_xattr_next(e, &xn, &xv, &xs) == ARCHIVE_OK)
                kn_buf_addf(details, " xattr:%s=%.*s", xn, (int)xs, (const char *)xv);
            kn_buf_adds(details, "\n");
        }
    }
    uselocale(old);
    archive_read_free(a);
    return kn_buf_detach(&b);
}

static const char *expected_listing(void)
{
    struct kn_buf b = KN_BUF_INIT;
    kn_buf_adds(&b, "- a.txt\nl abs -> /etc/passwd\n- big\n- caf\xc3\xa9\nd d1777/\nd d2755/\n"
                    "- d2755/h2\n");
    kn_buf_addf(&b, "d d700/\n- %s\nl dangling -> nowhere\n- empty\np fifo\n", long_a);
    if (is_root)
        kn_buf_adds(&b, "- .wh.gone\n");
    kn_buf_adds(&b, "h h1 -> d2755/h2\n- hlong\n");
    kn_buf_addf(&b, "l longsym -> %s\n", long_b);
    kn_buf_addf(&b, "d %.200s/\nh %s -> hlong\n", long_b, long_b);
    if (is_root)
        kn_buf_adds(&b, "d opq/\n- opq/.wh..wh..opq\n- opq/keep\n");
    kn_buf_adds(&b, "l rel -> a.txt\n- suid\n");
    char *d = kn_buf_detach(&b);
    kn_strv_take(&tap_fmt_strings, d);
    return d;
}

static int cmp_tree(const char *a, const char *b, const char *rel, bool owners);

static int cmp_entry(const char *a, const char *b, const char *rel, bool owners)
{
    const char *pa = F("%s/%s", a, rel), *pb = F("%s/%s", b, rel);
    struct stat sa, sb;
    if (lstat(pa, &sa) < 0 || lstat(pb, &sb) < 0) {
        printf("# %s: missing\n", rel);
        return 1;
    }
    int bad = 0;
    if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT) ||
        (!S_ISLNK(sa.st_mode) && sa.st_mode != sb.st_mode)) {
        printf("# %s: mode %o != %o\n", rel, sa.st_mode, sb.st_mode);
        bad++;
    }
    if (owners && (sa.st_uid != sb.st_uid || sa.st_gid != sb.st_gid)) {
        printf("# %s: owner %d:%d != %d:%d\n", rel, sa.st_uid, sa.st_gid, sb.st_uid, sb.st_gid);
        bad++;
    }
    if (sa.st_mtime != sb.st_mtime) {
        printf("# %s: mtime %ld != %ld\n", rel, (long)sa.st_mtime, (long)sb.st_mtime);
        bad++;
    }
    if (S_ISLNK(sa.st_mode)) {
        char ta[4096] = {0}, tb[4096] = {0};
        if (readlink(pa, ta, sizeof(ta) - 1) < 0 || readlink(pb, tb, sizeof(tb) - 1) < 0 ||
            strcmp(ta, tb) != 0) {
            printf("# %s: link %s != %s\n", rel, ta, tb);
            bad++;
        }
    } else if (S_ISREG(sa.st_mode)) {
        const char *cmd = F("cmp -s '%s' '%s' && echo same", pa, pb);
        char *out = run_cmd(cmd);
        if (strcmp(out, "same\n") != 0) {
            printf("# %s: content differs\n", rel);
            bad++;
        }
        free(out);
    } else if (S_ISDIR(sa.st_mode)) {
        bad += cmp_tree(a, b, rel, owners);
    }
    return bad;
}

static int cmp_tree(const char *a, const char *b, const char *rel, bool owners)
{
    const char *cmd = F("cd '%s/%s' && ls -A | LC_ALL=C sort", a, rel);
    const char *cmd2 = F("cd '%s/%s' && ls -A | LC_ALL=C sort", b, rel);
    char *la = run_cmd(cmd), *lb = run_cmd(cmd2);
    int bad = 0;
    if (strcmp(la, lb) != 0) {
        printf("# %s: entries differ:\n# %s\n# vs\n# %s\n", rel, la, lb);
        bad++;
    }
    for (char *save = NULL, *n = strtok_r(la, "\n", &save); n; n = strtok_r(NULL, "\n", &save))
        bad += cmp_entry(a, b, *rel ? F("%s/%s", rel, n) : n, owners);
    free(la);
    free(lb);
    return bad;
}

static int unpack(const char *digest, const char *mt, const char *dest, unsigned flags,
                  struct kn_error **err)
{
    mkdir(dest, 0755);
    return ex_layer_unpack(store, digest, mt, dest, flags, NULL, err);
}

static void test_roundtrip(void)
{
    const char *src = make_tree("src");
    static const enum ex_compression comps[] = {EX_COMP_NONE, EX_COMP_GZIP, EX_COMP_ZSTD};
    static const char *const cname[] = {"none", "gzip", "zstd"};
    static const char *const mts[] = {EX_MT_OCI_LAYER, EX_MT_OCI_LAYER_GZIP, EX_MT_OCI_LAYER_ZSTD};
    char diff_id[KN_DIGEST_SIZE] = "";
    for (int i = 0; i < 3; i++) {
        struct ex_layer_info info;
        const char *blob = pack(src, comps[i], -1, &info);
        check(blob != NULL, "%s: pack", cname[i]);
        if (!blob)
            continue;
        is_str(info.media_type, mts[i], "%s: media type", cname[i]);
        if (i == 0) {
            memcpy(diff_id, info.diff_id, KN_DIGEST_SIZE);
            is_str(info.digest, info.diff_id, "none: digest is the diff_id");
        } else {
            is_str(info.diff_id, diff_id, "%s: same diff_id as uncompressed", cname[i]);
        }
        struct stat st;
        check(stat(blob, &st) == 0 && (uint64_t)st.st_size == info.size, "%s: size", cname[i]);

        struct kn_buf details = KN_BUF_INIT;
        kn_buf_adds(&details, "");
        char *listing = list_layer(blob, &details);
        is_str(listing, expected_listing(), "%s: entries in order (libarchive)", cname[i]);
        free(listing);
        if (i == 0) {
            check(strstr(details.data,
                         "a.txt uid=1234 gid=5678 uname= gname= mode=644 mtime=1600000000") ||
                      !is_root,
                  "uid/gid kept, uname/gname empty, mtime");
            check(!strstr(details.data, "atime-or-ctime"), "no atime/ctime");
            check(strstr(details.data, "suid uid=") && strstr(details.data, "mode=4755"),
                  "setuid mode in the tar");
            check(strstr(details.data, "d1777/ uid") && strstr(details.data, "mode=1777"),
                  "sticky dir mode in the tar");
            if (have_user_xattr)
                check(strstr(details.data, "xattr:user.foo=bar"), "user.foo xattr packed");
            check(!strstr(details.data, "overlay"), "overlay xattrs not packed");
            /* GNU tar agrees */
            char *tv = run_cmd(F("tar -tvf '%s' 2>&1", blob));
            check(strstr(tv, "hrw-r-----") && strstr(tv, "h1 link to d2755/h2"),
                  "tar -tvf: hard link");
            check(strstr(tv, "-rwsr-xr-x") != NULL, "tar -tvf: setuid");
            check(strstr(tv, "drwxr-sr-x") && strstr(tv, "drwxrwxrwt"), "tar -tvf: dir modes");
            check(strstr(tv, "prw--w----") != NULL, "tar -tvf: fifo");
            check(strstr(tv, "lrwxrwxrwx") && strstr(tv, "abs -> /etc/passwd"),
                  "tar -tvf: symlink");
            check(strstr(tv, long_b) != NULL, "tar -tvf: long path");
            check(strstr(tv, "Error") == NULL && strstr(tv, "error") == NULL &&
                      strstr(tv, "Ignoring") == NULL,
                  "tar -tvf: clean (no hdrcharset for a UTF-8 name)");
            check(strstr(tv, "caf\xc3\xa9") != NULL, "tar -tvf: UTF-8 name");
            if (is_root)
                check(strstr(tv, "opq/.wh..wh..opq") != NULL, "tar -tvf: opaque marker");
            free(tv);
        }
        kn_buf_release(&details);

        struct kn_error *err = NULL;
        const char *dest = F("%s/out-%s", tmp, cname[i]);
        unsigned flags = EX_UNPACK_OVERLAY | (is_root ? EX_UNPACK_OWNERS : 0);
        int rc = unpack(info.digest, info.media_type, dest, flags, &err);
        check(rc == 0, "%s: unpack", cname[i]);
        if (err)
            printf("# %s\n", err->msg);
        kn_err_free(err);
        check(cmp_tree(src, dest, "", is_root) == 0, "%s: unpacked tree equals the source",
              cname[i]);
        struct stat h1, h2;
        check(stat(F("%s/h1", dest), &h1) == 0 && stat(F("%s/d2755/h2", dest), &h2) == 0 &&
                  h1.st_ino == h2.st_ino && h1.st_nlink == 2,
              "%s: hard links share an inode", cname[i]);
        if (have_user_xattr) {
            char v[16] = {0};
            check(getxattr(F("%s/a.txt", dest), "user.foo", v, sizeof(v)) == 3 &&
                      strcmp(v, "bar") == 0,
                  "%s: xattr restored", cname[i]);
        }
        if (is_root) {
            struct stat g;
            check(lstat(F("%s/gone", dest), &g) == 0 && S_ISCHR(g.st_mode) && g.st_rdev == 0,
                  "%s: whiteout back to a 0/0 char device", cname[i]);
            char v[4] = {0};
            check(getxattr(F("%s/opq", dest), "user.overlay.opaque", v, sizeof(v)) == 1 &&
                      v[0] == 'y',
                  "%s: opaque back to user.overlay.opaque", cname[i]);
            check(access(F("%s/opq/.wh..wh..opq", dest), F_OK) < 0, "%s: no opaque marker file",
                  cname[i]);
        }
    }
}

static void test_reproducible(void)
{
    const char *src = make_tree("repro");
    struct ex_layer_info a, b, c, d, e;
    pack(src, EX_COMP_GZIP, 1000, &a);
    pack(src, EX_COMP_GZIP, 1000, &b);
    is_str(a.digest, b.digest, "same digest twice with a fixed epoch");
    pack(src, EX_COMP_GZIP, -1, &c);
    check(strcmp(a.diff_id, c.diff_id) != 0, "the epoch changes the tar");
    set_mtime(F("%s/a.txt", src), MTIME + 100);
    pack(src, EX_COMP_GZIP, 1000, &d);
    is_str(d.digest, a.digest, "touching a file does not change the clamped digest");
    pack(src, EX_COMP_GZIP, -1, &e);
    check(strcmp(e.digest, c.digest) != 0, "touching a file changes the unclamped digest");
    struct ex_layer_info z1, z2;
    pack(src, EX_COMP_ZSTD, 1000, &z1);
    pack(src, EX_COMP_ZSTD, 1000, &z2);
    is_str(z1.digest, z2.digest, "zstd: same digest twice");
    for (int th = 0; th <= 4; th += 4) {
        struct ex_layer_opts o = {
            .compression = EX_COMP_ZSTD, .source_date_epoch = 1000, .threads = th};
        struct ex_layer_info z3;
        struct kn_error *e3 = NULL;
        if (ex_layer_pack_dir(store, src, &o, &z3, &e3) < 0)
            kn_err_free(e3);
        is_str(z3.digest, z1.digest, "zstd: same digest with %d threads as with 2", th);
    }
    char *det2 = NULL;
    struct kn_buf d2 = KN_BUF_INIT;
    kn_buf_adds(&d2, "");
    free(list_layer(blobpath(z1.digest), &d2));
    det2 = d2.data;
    check(strstr(det2, "mtime=1000") && !strstr(det2, "mtime=1600000000"),
          "mtimes clamped to the epoch");
    kn_buf_release(&d2);
}

static void test_apply_whiteouts(void)
{
    /* a lower layer, then a layer with whiteouts, flattened into one dir */
    const char *lower = F("%s/lower", tmp), *upper = F("%s/upper", tmp);
    mkdir(lower, 0755);
    write_file(F("%s/gone", lower), "old\n", 0644);
    mkdir(F("%s/opq", lower), 0755);
    write_file(F("%s/opq/old", lower), "old\n", 0644);
    mkdir(F("%s/opq/olddir", lower), 0755);
    write_file(F("%s/opq/olddir/f", lower), "old\n", 0644);
    write_file(F("%s/stay", lower), "stay\n", 0644);
    write_file(F("%s/raw\xff\xfe", lower), "not utf-8\n", 0644);
    mkdir(upper, 0755);
    /* rootless form of whiteouts in the upper dir: ".wh." files kept as they are */
    write_file(F("%s/.wh.gone", upper), "", 0);
    mkdir(F("%s/opq", upper), 0755);
    write_file(F("%s/opq/.wh..wh..opq", upper), "", 0);
    write_file(F("%s/opq/new", upper), "new\n", 0644);
    struct ex_layer_info li, ui;
    pack(lower, EX_COMP_GZIP, 0, &li);
    pack(upper, EX_COMP_GZIP, 0, &ui);
    char *l = list_layer(blobpath(ui.digest), NULL);
    is_str(l, "- .wh.gone\nd opq/\n- opq/.wh..wh..opq\n- opq/new\n",
           "rootless .wh. files packed as OCI whiteouts");
    free(l);
    const char *flat = F("%s/flat", tmp);
    struct kn_error *err = NULL;
    int rc = unpack(li.digest, li.media_type, flat, 0, &err);
    if (rc == 0)
        rc = unpack(ui.digest, ui.media_type, flat, 0, &err);
    check(rc == 0, "flatten two layers");
    if (err)
        printf("# %s\n", err->msg);
    kn_err_free(err);
    char *ls = run_cmd(F("cd '%s' && find . | LC_ALL=C sort", flat));
    is_str(ls, ".\n./opq\n./opq/new\n./raw\xff\xfe\n./stay\n",
           "whiteouts applied: gone and opaque contents; a non-UTF-8 name survives");
    free(ls);

    /* overlay form, unprivileged: markers kept (run in a user namespace) */
    const char *ov = F("%s/ov-rootless", tmp);
    mkdir(ov, 0777);
    pid_t pid = fork();
    if (pid == 0) {
        const char *map = F("0 %d 1", (int)geteuid()); /* before: then we are nobody */
        if (unshare(CLONE_NEWUSER) < 0)
            _exit(77);
        int fd = open("/proc/self/setgroups", O_WRONLY);
        if (fd >= 0 && write(fd, "deny", 4) < 0)
            _exit(77);
        if (fd >= 0)
            close(fd);
        fd = open("/proc/self/uid_map", O_WRONLY);
        if (fd < 0 || write(fd, map, strlen(map)) < 0)
            _exit(77);
        close(fd);
        struct kn_error *e2 = NULL;
        _exit(ex_layer_unpack(store, ui.digest, NULL, ov, EX_UNPACK_OVERLAY, NULL, &e2) == 0 ? 0
                                                                                             : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
        ok(1, "# SKIP no user namespaces");
    } else {
        check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "unpack as overlay in a user namespace");
        struct stat s1;
        /* Linux >= 5.8 lets a user namespace mknod a 0/0 whiteout; older
         * kernels refuse and the .wh. marker stays */
        check(lstat(F("%s/gone", ov), &s1) == 0
                  ? S_ISCHR(s1.st_mode) && s1.st_rdev == 0
                  : lstat(F("%s/.wh.gone", ov), &s1) == 0 && S_ISREG(s1.st_mode),
              "userns: whiteout as a 0/0 char device, else a .wh. marker");
        printf("# userns whiteout form: %s\n",
               lstat(F("%s/gone", ov), &s1) == 0 ? "0/0 char device" : ".wh. marker");
        char v[4] = {0};
        check(getxattr(F("%s/opq", ov), "user.overlay.opaque", v, sizeof(v)) == 1 ||
                  access(F("%s/opq/.wh..wh..opq", ov), F_OK) == 0,
              "userns: opaque as user.overlay.opaque or a marker");
    }
}

static void test_writer(void)
{
    struct ex_layer_opts o = {.compression = EX_COMP_ZSTD, .source_date_epoch = -1};
    struct kn_error *err = NULL;
    struct ex_layer_writer *w = ex_layer_writer_new(store, &o, &err);
    struct stat dst = {.st_mode = S_IFDIR | 0755, .st_mtim = {5, 0}};
    struct stat fst = {.st_mode = S_IFREG | 0644, .st_size = 5, .st_mtim = {6, 0}};
    int p[2];
    if (pipe(p) < 0 || write(p[1], "12345", 5) != 5)
        return;
    close(p[1]);
    int rc = ex_layer_writer_add(w, "dir", &dst, -1, NULL, &err);
    if (rc == 0)
        rc = ex_layer_writer_add_xattr(w, "security.capability", "\x01\x02", 2, &err);
    if (rc == 0)
        rc = ex_layer_writer_add(w, "dir/f", &fst, p[0], NULL, &err);
    close(p[0]);
    check(rc == 0, "writer: add entries");
    check(ex_layer_writer_add(w, "../x", &fst, -1, NULL, &err) == -1, "writer: refuses '../x'");
    if (err)
        is_str(err->msg, "invalid layer entry path '../x'", "writer: path message");
    kn_err_free(err);
    err = NULL;
    struct ex_layer_info info;
    check(ex_layer_writer_finish(w, &info, &err) == 0, "writer: finish");
    is_str(info.media_type, EX_MT_OCI_LAYER_ZSTD, "writer: media type");
    struct kn_buf det = KN_BUF_INIT;
    kn_buf_adds(&det, "");
    char *l = list_layer(blobpath(info.digest), &det);
    is_str(l, "d dir/\n- dir/f\n", "writer: entries");
    check(strstr(det.data, "dir/f uid=0 gid=0 uname= gname= mode=644 mtime=6 "
                           "xattr:security.capability=\x01\x02") != NULL,
          "writer: xattr and metadata");
    free(l);
    kn_buf_release(&det);
    /* abort leaves nothing behind */
    w = ex_layer_writer_new(store, &o, &err);
    ex_layer_writer_abort(w);
    check(1, "writer: abort");
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    is_root = geteuid() == 0;
    tmp = tap_tmpdir();
    struct kn_error *err = NULL;
    store = ex_store_open(F("%s/store", tmp), &err);
    if (!store)
        tap_skip_all("cannot open a store");
    test_roundtrip();
    test_reproducible();
    test_apply_whiteouts();
    test_writer();
    ex_store_close(store);
    F_release();
    return tap_done();
}
