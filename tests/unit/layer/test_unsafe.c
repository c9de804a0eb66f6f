/*
 * Unit tests for exec/layer: a corpus of hostile layers, generated here with
 * libarchive, each unpacked into a fresh directory next to a canary file.
 * Every one must be refused with an error naming the layer and the entry
 * (or, for the cases Docker also accepts, land inside the root), and the
 * canary and its directory must be untouched. The corpus runs twice: with
 * openat2 and with the hand-made fallback for kernels without it.
 */
#include "exec/layer/internal.h"
#include "exec/store/store.h"
#include "tap_fmt.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

static const char *tmp;
static int serial;

/* ---- building tars ---- */

struct tarb {
    struct archive *a;
    const char *path;
};

static struct tarb tar_new(const char *name, int filter)
{
    struct tarb t = {archive_write_new(), F("%s/%s.tar", tmp, name)};
    archive_write_set_format_pax_restricted(t.a);
    if (filter == 1)
        archive_write_add_filter_gzip(t.a);
    else if (filter == 2)
        archive_write_add_filter_zstd(t.a);
    archive_write_open_filename(t.a, t.path);
    return t;
}

static void tar_add(struct tarb *t, const char *path, mode_t type, const char *data, size_t n,
                    const char *link)
{
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, type & S_IFMT);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_mtime(e, 1000, 0);
    if (type == S_IFLNK)
        archive_entry_set_symlink(e, link);
    else if (link)
        archive_entry_set_hardlink(e, link);
    if (type == S_IFCHR)
        archive_entry_set_rdev(e, makedev(1, 3));
    archive_entry_set_size(e, type == S_IFREG && !link ? (la_int64_t)n : 0);
    archive_write_header(t->a, e);
    if (n && type == S_IFREG && !link)
        archive_write_data(t->a, data, n);
    archive_entry_free(e);
}

static const char *tar_done(struct tarb *t)
{
    archive_write_close(t->a);
    archive_write_free(t->a);
    return t->path;
}

/* ---- running one case ---- */

struct result {
    int rc;
    int code;
    const char *msg;
    const char *root;
    bool canary_ok;
};

static struct result run_case(const char *tarpath, const char *name, const char *mt, unsigned flags,
                              const struct ex_unpack_limits *lim)
{
    const char *box = F("%s/box%d", tmp, ++serial);
    mkdir(box, 0755);
    const char *root = F("%s/root", box);
    mkdir(root, 0755);
    const char *canary = F("%s/canary", box);
    FILE *f = fopen(canary, "w");
    fputs("canary\n", f);
    fclose(f);
    struct result r = {.root = root};
    struct kn_error *err = NULL;
    int fd = open(tarpath, O_RDONLY | O_CLOEXEC);
    r.rc = ex_layer_unpack_fd(fd, name, mt, root, flags, lim, &err);
    close(fd);
    if (err) {
        r.code = err->code;
        r.msg = F("%s", err->msg);
        kn_err_free(err);
    }
    struct kn_buf b = KN_BUF_INIT;
    r.canary_ok = kn_buf_read_file(&b, canary, 100, NULL) == 0 && strcmp(b.data, "canary\n") == 0;
    kn_buf_release(&b);
    /* nothing new next to the canary */
    FILE *p = popen(F("ls -A '%s'", box), "r");
    char line[256] = "";
    size_t n = fread(line, 1, sizeof(line) - 1, p);
    line[n] = '\0';
    pclose(p);
    r.canary_ok = r.canary_ok && strcmp(line, "canary\nroot\n") == 0;
    /* nothing in tmp's parent either: the escapes aim at ../../x */
    r.canary_ok = r.canary_ok && access(F("%s/x", tmp), F_OK) < 0 &&
                  access(F("%s/x", box), F_OK) < 0 && access(F("%s/outside", box), F_OK) < 0;
    return r;
}

static void refused(struct result r, const char *want, const char *what)
{
    check(r.rc == -1 && r.code == KN_E_UNSAFE, "%s: refused as unsafe", what);
    is_str(r.msg, want, "%s: message", what);
    check(r.canary_ok, "%s: canary untouched, nothing new beside it", what);
}

static void corpus(bool fallback)
{
    ex_layer_no_openat2 = fallback;
    const char *mode = fallback ? "fallback" : "openat2";
    struct tarb t;

    t = tar_new("trav1", 0);
    tar_add(&t, "../../x", S_IFREG, "evil", 4, NULL);
    refused(run_case(tar_done(&t), "trav1", NULL, 0, NULL),
            "layer 'trav1': entry '../../x' escapes the layer root", F("%s: ../../x", mode));

    t = tar_new("trav2", 0);
    tar_add(&t, "a/", S_IFDIR, NULL, 0, NULL);
    tar_add(&t, "a/../../x", S_IFREG, "evil", 4, NULL);
    refused(run_case(tar_done(&t), "trav2", NULL, 0, NULL),
            "layer 'trav2': entry 'a/../../x' escapes the layer root", F("%s: a/../../x", mode));

    t = tar_new("abs", 0);
    tar_add(&t, "/etc/x", S_IFREG, "inside", 6, NULL);
    struct result r = run_case(tar_done(&t), "abs", NULL, 0, NULL);
    check(r.rc == 0 && access(F("%s/etc/x", r.root), F_OK) == 0 && r.canary_ok,
          "%s: /etc/x lands inside the root", mode);

    /* a symlink to / or to ../../.. and a write below it */
    static const char *const targets[] = {"/", "../../.."};
    for (int i = 0; i < 2; i++) {
        t = tar_new(F("sym%d", i), 0);
        tar_add(&t, "l", S_IFLNK, NULL, 0, targets[i]);
        tar_add(&t, "l/x", S_IFREG, "evil", 4, NULL);
        r = run_case(tar_done(&t), "sym", NULL, 0, NULL);
        if (fallback) {
            refused(r, "layer 'sym': entry 'l/x' is behind a symlink or a non-directory",
                    F("%s: l -> %s, l/x", mode, targets[i]));
        } else {
            check(r.rc == 0 && access(F("%s/x", r.root), F_OK) == 0 && r.canary_ok,
                  "%s: l -> %s, then l/x lands inside the root", mode, targets[i]);
            if (r.msg)
                printf("# %s\n", r.msg);
        }
    }

    t = tar_new("hl1", 0);
    tar_add(&t, "h", S_IFREG, NULL, 0, "../outside");
    refused(run_case(tar_done(&t), "hl1", NULL, 0, NULL),
            "layer 'hl1': entry 'h' is a hard link to '../outside', outside the layer",
            F("%s: hard link to ../outside", mode));

    t = tar_new("hl2", 0);
    tar_add(&t, "d/", S_IFDIR, NULL, 0, NULL);
    tar_add(&t, "d/f", S_IFREG, "data", 4, NULL);
    tar_add(&t, "s", S_IFLNK, NULL, 0, "d");
    tar_add(&t, "h", S_IFREG, NULL, 0, "s/f");
    refused(run_case(tar_done(&t), "hl2", NULL, 0, NULL),
            "layer 'hl2': entry 'h' is a hard link to 's/f', behind a symlink",
            F("%s: hard link through a symlinked dir", mode));

    t = tar_new("hl3", 0);
    tar_add(&t, "up", S_IFLNK, NULL, 0, "..");
    tar_add(&t, "h", S_IFREG, NULL, 0, "up/canary");
    refused(run_case(tar_done(&t), "hl3", NULL, 0, NULL),
            "layer 'hl3': entry 'h' is a hard link to 'up/canary', behind a symlink",
            F("%s: hard link through a symlink to ..", mode));

    t = tar_new("dev", 0);
    tar_add(&t, "null", S_IFCHR, NULL, 0, NULL);
    refused(run_case(tar_done(&t), "dev", NULL, 0, NULL),
            "layer 'dev': entry 'null' is a device node, which is not allowed here",
            F("%s: device node without EX_UNPACK_DEVICES", mode));

    struct ex_unpack_limits lim = {.max_bytes = 65536, .max_entries = 10};
    t = tar_new("count", 0);
    for (int i = 0; i < 20; i++)
        tar_add(&t, F("f%02d", i), S_IFREG, "x", 1, NULL);
    refused(run_case(tar_done(&t), "count", NULL, 0, &lim),
            "layer 'count': entry 'f10' exceeds the limit of 10 entries",
            F("%s: entry count bomb", mode));

    static char zeros[1 << 20];
    t = tar_new("size", 1);
    tar_add(&t, "small", S_IFREG, zeros, 1000, NULL);
    tar_add(&t, "big", S_IFREG, zeros, sizeof(zeros), NULL);
    refused(run_case(tar_done(&t), "size", EX_MT_OCI_LAYER_GZIP, 0, &lim),
            "layer 'size': entry 'big' exceeds the limit of 65536 bytes uncompressed",
            F("%s: size bomb", mode));

    /* overlay xattrs in a tar are dropped */
    t = tar_new("ovx", 0);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "dir");
    archive_entry_set_filetype(e, AE_IFDIR);
    archive_entry_set_perm(e, 0755);
    archive_entry_xattr_add_entry(e, "trusted.overlay.redirect", "/etc", 4);
    archive_write_header(t.a, e);
    archive_entry_free(e);
    r = run_case(tar_done(&t), "ovx", NULL, 0, NULL);
    char v[16];
    check(r.rc == 0 && getxattr(F("%s/dir", r.root), "trusted.overlay.redirect", v, 16) < 0,
          "%s: overlay xattrs from the tar are dropped", mode);
}

static void formats(void)
{
    ex_layer_no_openat2 = false;
    struct tarb t = tar_new("zst", 2);
    tar_add(&t, "f", S_IFREG, "data", 4, NULL);
    const char *zst = tar_done(&t);
    struct result r = run_case(zst, "zst", EX_MT_OCI_LAYER_GZIP, 0, NULL);
    check(r.rc == -1 && r.code == KN_E_PARSE, "zstd stream with a +gzip media type refused");
    is_str(r.msg,
           "layer 'zst' is zstd-compressed but its media type is "
           "'application/vnd.oci.image.layer.v1.tar+gzip'",
           "media type mismatch message");
    r = run_case(zst, "zst", NULL, 0, NULL);
    check(r.rc == 0 && access(F("%s/f", r.root), F_OK) == 0, "zstd detected without media type");
    r = run_case(zst, "zst", "application/x-foo", 0, NULL);
    is_str(r.msg, "layer 'zst' has an unsupported media type 'application/x-foo'",
           "unknown media type");

    /* a truncated gzip stream: the error names the entry being read */
    static char data[1 << 20];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (char)(i * 7 + i / 13);
    t = tar_new("trunc", 1);
    tar_add(&t, "first", S_IFREG, "ok", 2, NULL);
    tar_add(&t, "big", S_IFREG, data, sizeof(data), NULL);
    const char *tp = tar_done(&t);
    struct stat st;
    stat(tp, &st);
    if (truncate(tp, st.st_size / 2) < 0)
        return;
    r = run_case(tp, "trunc", EX_MT_OCI_LAYER_GZIP, 0, NULL);
    check(r.rc == -1 && r.code == KN_E_PARSE, "truncated gzip refused");
    check(r.msg && kn_str_startswith(r.msg, "layer 'trunc': cannot read entry 'big': "),
          "truncated gzip: message names the entry");
    printf("# %s\n", r.msg ? r.msg : "(none)");
    check(r.canary_ok, "truncated gzip: canary untouched");

    /* garbage */
    const char *g = F("%s/garbage", tmp);
    FILE *f = fopen(g, "w");
    fputs("this is not a tar archive, not at all, no\n", f);
    fclose(f);
    r = run_case(g, "garbage", NULL, 0, NULL);
    check(r.rc == -1 && r.code == KN_E_PARSE, "garbage refused");
    printf("# %s\n", r.msg ? r.msg : "(none)");
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    tmp = tap_tmpdir();
    corpus(false);
    corpus(true);
    formats();
    F_release();
    return tap_done();
}
