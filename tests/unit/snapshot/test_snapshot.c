/*
 * Snapshot tests: chains (errors, digest, the merged-view lookup through
 * whiteouts and opaque dirs), flattening, and the scan snapshotter's diff
 * in exact overlay upper form (adds, changes, deletions, replaced dirs,
 * type changes, symlinks, hard links, metadata-only changes).
 */
#include "tap.h"
#include "exec/store/store.h"

#include "exec/snapshot/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>

static void must(int cond, const char *what)
{
    if (!cond) {
        printf("Bail out! %s: %s\n", what, strerror(errno));
        exit(1);
    }
}

static char *path(const char *a, const char *b)
{
    return kn_asprintf("%s/%s", a, b);
}

static void put(const char *dir, const char *rel, const char *data)
{
    char *p = path(dir, rel);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    must(fd >= 0, p);
    must(write(fd, data, strlen(data)) == (ssize_t)strlen(data), p);
    close(fd);
    free(p);
}

static void mk(const char *dir, const char *rel)
{
    char *p = path(dir, rel);
    must(mkdir(p, 0755) == 0, p);
    free(p);
}

static char *list_tree(const char *dir)
{
    char cmd[4400];
    snprintf(cmd, sizeof(cmd),
             "cd '%s' && find . -mindepth 1 -printf '%%P %%y' -exec sh -c "
             "'test -c \"$1\" && stat -c \" %%t:%%T\" \"$1\" || echo' _ {} \\; | sort",
             dir);
    FILE *f = popen(cmd, "r");
    struct kn_buf b = KN_BUF_INIT;
    char line[4096];
    while (f && fgets(line, sizeof(line), f))
        kn_buf_adds(&b, line);
    if (f)
        pclose(f);
    return kn_buf_detach(&b);
}

static char *slurp_fd(int fd)
{
    struct kn_buf b = KN_BUF_INIT;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        kn_buf_add(&b, buf, (size_t)n);
    close(fd);
    return kn_buf_detach(&b);
}

static void test_chain_errors(const char *tmp)
{
    struct kn_error *e = NULL;
    const char *rel[] = {"relative/dir"};
    ok(ex_snapshot_new(rel, 1, &e) == NULL, "a relative layer path is refused");
    is_str(e ? e->msg : NULL, "layer path is not absolute 'relative/dir'", "message");
    kn_err_free(e);
    e = NULL;
    char *missing = path(tmp, "nope");
    const char *m[] = {missing};
    ok(ex_snapshot_new(m, 1, &e) == NULL, "a missing layer is refused");
    char *want = kn_asprintf("layer directory not found '%s'", missing);
    is_str(e ? e->msg : NULL, want, "message");
    is_int(e ? e->code : 0, KN_E_NOTFOUND, "KN_E_NOTFOUND");
    kn_err_free(e);
    free(want);
    free(missing);
}

static void test_chain_lookup(const char *tmp)
{
    char *l1 = path(tmp, "l1"), *l2 = path(tmp, "l2"), *l3 = path(tmp, "l3");
    mk(tmp, "l1");
    mk(tmp, "l2");
    mk(tmp, "l3");
    mk(l1, "etc");
    put(l1, "etc/passwd", "one\n");
    put(l1, "etc/group", "g1\n");
    mk(l1, "opt");
    put(l1, "opt/old", "old\n");
    put(l1, "gone", "gone\n");
    put(l1, "marked", "marked\n");
    mk(l2, "etc");
    put(l2, "etc/passwd", "two\n");
    char *wh = path(l2, "gone");
    must(mknod(wh, S_IFCHR, makedev(0, 0)) == 0, "whiteout");
    free(wh);
    put(l2, ".wh.marked", "");
    mk(l3, "opt");
    char *opt = path(l3, "opt");
    must(setxattr(opt, "user.overlay.opaque", "y", 1, 0) == 0, "opaque xattr");
    free(opt);
    /* l2's symlink must resolve inside the layer, never on the host */
    char *ln = path(l2, "escape");
    must(symlink("/etc/hostname", ln) == 0, "symlink");
    free(ln);
    const char *layers[] = {l1, l2, l3};
    struct kn_error *e = NULL;
    struct ex_snapshot *s = ex_snapshot_new(layers, 3, &e);
    ok(s && ex_snapshot_len(s) == 3, "a chain of 3");
    is_str(ex_snapshot_layer(s, 2), l3, "layer 2 is the top");
    ok(kn_digest_valid(ex_snapshot_digest(s)), "the chain has a digest");
    int fd = ex_snapshot_open(s, "/etc/passwd", &e);
    char *c = fd >= 0 ? slurp_fd(fd) : NULL;
    is_str(c, "two\n", "the top-most copy wins");
    free(c);
    fd = ex_snapshot_open(s, "etc/group", &e);
    c = fd >= 0 ? slurp_fd(fd) : NULL;
    is_str(c, "g1\n", "a file only in the bottom layer is found");
    free(c);
    ok(ex_snapshot_open(s, "gone", &e) < 0, "a 0/0 whiteout hides a lower file");
    is_str(e ? e->msg : NULL, "file not found in the image '/gone'", "message");
    kn_err_free(e);
    e = NULL;
    ok(ex_snapshot_open(s, "marked", &e) < 0, "a .wh. marker hides a lower file");
    kn_err_free(e);
    e = NULL;
    ok(ex_snapshot_open(s, "opt/old", &e) < 0, "an opaque dir hides what is below it");
    kn_err_free(e);
    e = NULL;
    ok(ex_snapshot_open(s, "escape", &e) < 0, "an absolute symlink resolves inside the layer");
    kn_err_free(e);
    e = NULL;

    /* flatten the same chain */
    char *flat = path(tmp, "flat");
    mk(tmp, "flat");
    is_int(ex_snapshot_flatten(s, flat, &e), 0, "flatten");
    char *t = list_tree(flat);
    is_str(t, "escape l\netc d\netc/group f\netc/passwd f\nopt d\n",
           "the flattened tree has whiteouts and opaque dirs applied");
    free(t);
    char *pw = path(flat, "etc/passwd");
    struct stat a, b;
    char *l2pw = path(l2, "etc/passwd");
    /* a flattened tree is the caller's to change: never linked to a layer */
    ok(stat(pw, &a) == 0 && stat(l2pw, &b) == 0 && a.st_ino != b.st_ino,
       "flatten copies files: writing them cannot change the layer");
    free(pw);
    /* the shared form (overlay lowers nobody writes) links them */
    char *shared = path(tmp, "shared");
    mk(tmp, "shared");
    is_int(ex_snapshot_flatten_shared(s, shared, &e), 0, "flatten_shared");
    pw = path(shared, "etc/passwd");
    ok(stat(pw, &a) == 0 && a.st_ino == b.st_ino, "flatten_shared hard-links files from the layer");
    free(pw);
    free(shared);
    free(l2pw);
    free(flat);

    struct ex_snapshot *s2 = ex_snapshot_push(s, l1, &e);
    ok(s2 && ex_snapshot_len(s2) == 4 && strcmp(ex_snapshot_digest(s2), ex_snapshot_digest(s)),
       "push makes a longer chain with another digest");
    ex_snapshot_unref(s2);
    ex_snapshot_unref(s);
    free(l1);
    free(l2);
    free(l3);
}

static void test_scan(const char *tmp)
{
    char *root = path(tmp, "scanroot");
    mk(tmp, "scanroot");
    mk(root, "keep");
    put(root, "keep/same", "same\n");
    put(root, "keep/edit", "v1\n");
    put(root, "keep/chmod", "c\n");
    mk(root, "deldir");
    mk(root, "deldir/sub");
    put(root, "deldir/sub/f", "f\n");
    put(root, "delfile", "x\n");
    mk(root, "replace");
    put(root, "replace/old", "old\n");
    put(root, "typechange", "file\n");
    mk(root, "dir2file");
    put(root, "dir2file/child", "c\n");
    char *ln = path(root, "link");
    must(symlink("keep/same", ln) == 0, "symlink");
    for (int i = 0; i < 200; i++) {
        char n[64];
        snprintf(n, sizeof(n), "many%d", i);
        mk(root, n);
        snprintf(n, sizeof(n), "many%d/f", i);
        put(root, n, "m\n");
    }
    struct kn_error *e = NULL;
    struct ex_scan *sc = ex_scan_record(root, &e);
    ok(sc != NULL, "record");
    /* the step */
    nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    put(root, "keep/edit", "v2 longer\n");
    char *p = path(root, "keep/chmod");
    chmod(p, 0600);
    free(p);
    char *rm = kn_asprintf("rm -rf '%s/deldir' '%s/delfile' '%s/replace' '%s/typechange' "
                           "'%s/link' '%s/dir2file'",
                           root, root, root, root, root, root);
    must(system(rm) == 0, "rm");
    free(rm);
    mk(root, "replace");
    put(root, "replace/new", "new\n");
    mk(root, "typechange");
    must(symlink("elsewhere", ln) == 0, "symlink");
    put(root, "added", "added\n");
    put(root, "dir2file", "now a file\n");
    char *a1 = path(root, "added"), *a2 = path(root, "keep/hardlink");
    must(link(a1, a2) == 0, "link");
    char *diff = path(tmp, "diff");
    mk(tmp, "diff");
    struct ex_scan_stats st;
    is_int(ex_scan_diff(sc, diff, &st, &e), 0, "diff");
    if (e)
        printf("# %s\n", e->msg);
    char *t = list_tree(diff);
    is_str(t,
           "added f\n"
           "deldir c 0:0\n"
           "delfile c 0:0\n"
           "dir2file f\n"
           "keep d\n"
           "keep/chmod f\n"
           "keep/edit f\n"
           "keep/hardlink f\n"
           "link l\n"
           "replace d\n"
           "replace/new f\n"
           "typechange d\n",
           "the diff is exactly the change, in overlay upper form");
    free(t);
    is_int(st.entries, 411, "entries walked");
    is_int(st.deleted, 2, "whiteouts written");
    char v[4] = "";
    char *rp = path(diff, "replace");
    ok(lgetxattr(rp, "user.overlay.opaque", v, sizeof(v)) == 1 && v[0] == 'y',
       "a deleted and re-created dir is opaque");
    free(rp);
    struct stat s1, s2;
    char *d1 = path(diff, "added"), *d2 = path(diff, "keep/hardlink");
    ok(stat(d1, &s1) == 0 && stat(d2, &s2) == 0 && s1.st_ino == s2.st_ino,
       "hard links stay hard links in the diff");
    struct stat rs;
    ok(stat(a1, &rs) == 0 && rs.st_ino != s1.st_ino, "file contents are copies, not links");
    char *cp = path(diff, "keep/chmod");
    ok(stat(cp, &s1) == 0 && (s1.st_mode & 07777) == 0600, "a chmod-only change keeps its mode");
    free(cp);
    char tgt[64] = "";
    char *lp = path(diff, "link");
    ssize_t n = readlink(lp, tgt, sizeof(tgt) - 1);
    tgt[n < 0 ? 0 : n] = 0;
    is_str(tgt, "elsewhere", "a changed symlink has its new target");
    free(lp);
    char *ep = path(diff, "keep/edit");
    int fd = open(ep, O_RDONLY);
    free(ep);
    char *c = fd >= 0 ? slurp_fd(fd) : NULL;
    is_str(c, "v2 longer\n", "an edited file has its new content");
    free(c);

    /* a second step on the same scan state: only its own change */
    char *diff2 = path(tmp, "diff2");
    mk(tmp, "diff2");
    put(root, "second", "2\n");
    is_int(ex_scan_diff(sc, diff2, &st, &e), 0, "second diff");
    t = list_tree(diff2);
    is_str(t, "second f\n", "the next diff starts from the previous state");
    free(t);
    ex_scan_free(sc);

    struct kn_error *e2 = NULL;
    ok(ex_scan_record("/nonexistent-kiln", &e2) == NULL, "scanning a missing rootfs fails");
    is_str(e2 ? e2->msg : NULL, "cannot open rootfs '/nonexistent-kiln': No such file or directory",
           "message");
    kn_err_free(e2);
    free(d1);
    free(d2);
    free(a1);
    free(a2);
    free(ln);
    free(diff);
    free(diff2);
    free(root);
}

static void test_rmtree(const char *tmp)
{
    char *d = path(tmp, "rm");
    mk(tmp, "rm");
    mk(d, "locked");
    put(d, "locked/f", "x");
    char *l = path(d, "locked");
    chmod(l, 0);
    struct kn_error *e = NULL;
    is_int(ex_store_remove_tree(d, &e), 0, "rmtree removes mode-000 dirs the caller owns");
    ok(access(d, F_OK) < 0, "gone");
    is_int(ex_store_remove_tree(d, &e), 0, "a missing path is not an error");
    free(l);
    free(d);
}

int main(void)
{
    const char *tmp = tap_tmpdir();
    test_chain_errors(tmp);
    test_chain_lookup(tmp);
    test_scan(tmp);
    test_rmtree(tmp);
    return tap_done();
}
