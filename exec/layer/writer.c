/*
 * The streaming layer writer: tar entries (libarchive, PAX-restricted, i.e.
 * plain ustar headers with PAX records only for long names, large values
 * and xattrs, like Go's archive/tar in BuildKit) flow through a write
 * callback that hashes the tar (diff_id), compresses it (gzip in parallel
 * blocks, pgzip.c, or libzstd's multi-threaded mode) and hands the result
 * to a store blob writer,
 * which hashes and writes it. Nothing but fixed buffers is held in memory.
 *
 * Reproducibility: uname/gname are empty, atime/ctime are never written,
 * mtimes are whole seconds (clamped to source_date_epoch when set), xattrs
 * are sorted, gzip headers carry no time or name.
 *
 * Names are bytes, passed to libarchive as they are. libarchive converts
 * them from the locale's charset to UTF-8 for PAX records; in the C locale
 * that fails for every non-ASCII name (it then writes "hdrcharset=BINARY",
 * which GNU tar warns about), so headers are written under a per-thread
 * C.UTF-8 locale (uselocale: no process-wide state). Invalid UTF-8 still
 * goes out as BINARY, byte for byte. (archive_entry_set_pathname_utf8 is
 * no way out: libarchive 3.6.2's pax writer crashes on it in the C locale.)
 */
#include "internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#define OUTBUF_SIZE  (256u << 10)
#define COPYBUF_SIZE (256u << 10)
/* zstd's smallest job: its input ring holds the 2 MiB window plus two jobs
 * and each worker an output buffer of a job, so 512 KiB jobs take 3 MiB less
 * than 1 MiB ones (and 4 MiB ones 10 MiB more), for a blob 0.6% larger
 * (1.2 GB of /usr: 376.8 MB against 374.6 MB) at the same speed */
#define EX_ZSTD_JOB_SIZE (512u << 10)

struct xattr {
    char *name;
    void *value;
    size_t size;
};

struct ex_layer_writer {
    struct archive *a;
    struct ex_blob_writer *blob;
    struct ex_layer_opts opts;
    struct kn_sha256 tar_hash;
    struct kn_error *cb_err; /* failure inside the write callback */
    struct ex_pgzip *gz;
    ZSTD_CCtx *zc;
    unsigned char *out;  /* compressor output buffer */
    unsigned char *copy; /* file content buffer */
    struct xattr *xattrs;
    size_t nxattrs, xattrs_cap;
    bool failed;
};

static const char *media_type_of(enum ex_compression c)
{
    switch (c) {
    case EX_COMP_GZIP:
        return EX_MT_OCI_LAYER_GZIP;
    case EX_COMP_ZSTD:
        return EX_MT_OCI_LAYER_ZSTD;
    case EX_COMP_NONE:
        break;
    }
    return EX_MT_OCI_LAYER;
}

/* Compresses n bytes (or finishes the stream when end) into the blob. */
static int compress_out(struct ex_layer_writer *w, const void *data, size_t n, bool end,
                        struct kn_error **err)
{
    switch (w->opts.compression) {
    case EX_COMP_NONE:
        return ex_blob_writer_write(w->blob, data, n, err);
    case EX_COMP_GZIP:
        if (n && ex_pgzip_write(w->gz, data, n, err) < 0)
            return -1;
        return end ? ex_pgzip_finish(w->gz, err) : 0;
    case EX_COMP_ZSTD: {
        ZSTD_inBuffer in = {data, n, 0};
        for (;;) {
            ZSTD_outBuffer o = {w->out, OUTBUF_SIZE, 0};
            size_t left = ZSTD_compressStream2(w->zc, &o, &in, end ? ZSTD_e_end : ZSTD_e_continue);
            if (ZSTD_isError(left))
                return kn_err_set(err, KN_E_INTERNAL, "zstd compression failed: %s",
                                  ZSTD_getErrorName(left));
            if (o.pos && ex_blob_writer_write(w->blob, w->out, o.pos, err) < 0)
                return -1;
            if (end ? left == 0 : in.pos == in.size)
                return 0;
        }
    }
    }
    return kn_err_set(err, KN_E_INTERNAL, "unknown compression %d", (int)w->opts.compression);
}

/* zstd workers: the thread that tars and hashes keeps a CPU of its own (on
 * 2 CPUs one worker is as fast as two, and 3 MiB smaller), and beyond three
 * the 512 KiB jobs gain little for ~2.5 MiB each. gzip is ten times slower
 * than zstd: its workers get every CPU (up to four, ~1 MiB each) while the
 * tar thread mostly waits for them. Neither count changes the blob. */
static int zstd_workers(int cpus)
{
    return cpus <= 2 ? 1 : cpus - 1 > 3 ? 3 : cpus - 1;
}

static int gzip_workers(int cpus)
{
    return cpus < 1 ? 1 : cpus > 4 ? 4 : cpus;
}

static int gz_out(void *ctx, const void *data, size_t n, struct kn_error **err)
{
    return ex_blob_writer_write(ctx, data, n, err);
}

static la_ssize_t tar_write_cb(struct archive *a, void *ctx, const void *buf, size_t n)
{
    (void)a;
    struct ex_layer_writer *w = ctx;
    kn_sha256_update(&w->tar_hash, buf, n);
    if (compress_out(w, buf, n, false, &w->cb_err) < 0)
        return -1;
    return (la_ssize_t)n;
}

static int archive_fail(struct ex_layer_writer *w, const char *what, struct kn_error **err)
{
    w->failed = true;
    if (w->cb_err) {
        kn_err_propagate(err, &w->cb_err);
        return kn_err_wrap(err, "%s", what);
    }
    return kn_err_set(err, KN_E_IO, "%s: %s", what, archive_error_string(w->a));
}

struct ex_layer_writer *ex_layer_writer_new(struct ex_store *s, const struct ex_layer_opts *opts,
                                            struct kn_error **err)
{
    struct ex_layer_writer *w = kn_calloc(1, sizeof(*w));
    w->opts = *opts;
    w->blob = ex_blob_writer_new(s, err);
    if (!w->blob) {
        free(w);
        return NULL;
    }
    kn_sha256_init(&w->tar_hash);
    if (opts->compression == EX_COMP_ZSTD)
        w->out = kn_malloc(OUTBUF_SIZE); /* zstd's output; gzip's workers have their own */
    w->copy = kn_malloc(COPYBUF_SIZE);
    if (opts->compression == EX_COMP_GZIP) {
        w->gz = ex_pgzip_new(opts->level ? opts->level : Z_DEFAULT_COMPRESSION,
                             gzip_workers(opts->threads), gz_out, w->blob, err);
        if (!w->gz) {
            ex_layer_writer_abort(w);
            return NULL;
        }
    } else if (opts->compression == EX_COMP_ZSTD) {
        w->zc = ZSTD_createCCtx();
        if (!w->zc)
            kn_die("out of memory");
        size_t r = ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel,
                                          opts->level ? opts->level : ZSTD_CLEVEL_DEFAULT);
        /* Always the multi-threaded mode (at least one worker): its output
         * depends on the level and the job size but not on the number of
         * workers, so the digest is the same whatever --jobs is. Jobs
         * smaller than zstd's default keep the peak RSS low. */
        if (!ZSTD_isError(r))
            r = ZSTD_CCtx_setParameter(w->zc, ZSTD_c_nbWorkers, zstd_workers(opts->threads));
        if (!ZSTD_isError(r))
            r = ZSTD_CCtx_setParameter(w->zc, ZSTD_c_jobSize, EX_ZSTD_JOB_SIZE);
        if (ZSTD_isError(r)) {
            kn_err_set(err, KN_E_USAGE, "invalid zstd parameters: %s", ZSTD_getErrorName(r));
            ex_layer_writer_abort(w);
            return NULL;
        }
    } else if (opts->compression != EX_COMP_NONE) {
        kn_err_set(err, KN_E_USAGE, "unknown compression %d", (int)opts->compression);
        ex_layer_writer_abort(w);
        return NULL;
    }
    w->a = archive_write_new();
    if (!w->a)
        kn_die("out of memory");
    /* no blocking (bytes per block 0): libarchive hands headers and file
     * data straight to tar_write_cb instead of copying them into 64 KiB
     * blocks first; the tar bytes, and so the diff_id, are the same */
    if (archive_write_set_format_pax_restricted(w->a) != ARCHIVE_OK ||
        archive_write_set_format_option(w->a, "pax", "xattrheader", "SCHILY") < ARCHIVE_WARN ||
        archive_write_set_bytes_per_block(w->a, 0) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(w->a, 1) != ARCHIVE_OK ||
        archive_write_open(w->a, w, NULL, tar_write_cb, NULL) != ARCHIVE_OK) {
        archive_fail(w, "cannot start the layer tar", err);
        ex_layer_writer_abort(w);
        return NULL;
    }
    return w;
}

static void clear_xattrs(struct ex_layer_writer *w)
{
    for (size_t i = 0; i < w->nxattrs; i++) {
        free(w->xattrs[i].name);
        free(w->xattrs[i].value);
    }
    w->nxattrs = 0;
}

void ex_layer_writer_abort(struct ex_layer_writer *w)
{
    if (!w)
        return;
    if (w->a)
        archive_write_free(w->a); /* may flush through the callback: harmless */
    ex_pgzip_free(w->gz);
    ZSTD_freeCCtx(w->zc);
    if (w->tar_hash.ctx)
        kn_sha256_release(&w->tar_hash);
    ex_blob_writer_abort(w->blob);
    clear_xattrs(w);
    free(w->xattrs);
    kn_err_free(w->cb_err);
    free(w->out);
    free(w->copy);
    free(w);
}

int ex_layer_writer_add_xattr(struct ex_layer_writer *w, const char *name, const void *value,
                              size_t size, struct kn_error **err)
{
    if (!*name || size > EX_XATTR_MAX)
        return kn_err_set(err, KN_E_UNSAFE, "xattr '%s' is too large", name);
    w->xattrs = kn_grow(w->xattrs, &w->xattrs_cap, w->nxattrs + 1, sizeof(*w->xattrs));
    struct xattr *x = &w->xattrs[w->nxattrs++];
    x->name = kn_strdup(name);
    x->value = kn_malloc(size ? size : 1);
    memcpy(x->value, value, size);
    x->size = size;
    return 0;
}

static locale_t utf8_loc;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void utf8_init(void)
{
    utf8_loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

locale_t ex_layer_utf8_locale(void)
{
    pthread_once(&utf8_once, utf8_init);
    return utf8_loc;
}

void ex_layer_init(void)
{
    (void)ex_layer_utf8_locale();
}

static int write_header(struct archive *a, struct archive_entry *e)
{
    ex_layer_utf8_locale();
    locale_t old = utf8_loc ? uselocale(utf8_loc) : (locale_t)0;
    int r = archive_write_header(a, e);
    if (utf8_loc)
        uselocale(old);
    return r;
}

static int cmp_xattr(const void *a, const void *b)
{
    return strcmp(((const struct xattr *)a)->name, ((const struct xattr *)b)->name);
}

static int copy_content(struct ex_layer_writer *w, const char *path, int fd, int64_t size,
                        struct kn_error **err)
{
    int64_t left = size;
    while (left > 0) {
        size_t want = left > COPYBUF_SIZE ? COPYBUF_SIZE : (size_t)left;
        ssize_t n = read(fd, w->copy, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return kn_err_sys(err, "cannot read '%s'", path);
        if (n == 0)
            return kn_err_set(err, KN_E_IO, "file '%s' shrank while it was being packed", path);
        if (archive_write_data(w->a, w->copy, (size_t)n) != n)
            return archive_fail(w, "cannot write the layer tar", err);
        left -= n;
    }
    return 0;
}

int ex_layer_writer_add(struct ex_layer_writer *w, const char *path, const struct stat *st, int fd,
                        const char *linkname, struct kn_error **err)
{
    if (w->failed)
        return kn_err_set(err, KN_E_INTERNAL, "layer writer used after a failure");
    if (!*path || path[0] == '/' || strcmp(path, "..") == 0 || kn_str_startswith(path, "../") ||
        strstr(path, "/../") || kn_str_endswith(path, "/.."))
        return kn_err_set(err, KN_E_UNSAFE, "invalid layer entry path '%s'", path);
    struct archive_entry *e = archive_entry_new();
    if (!e)
        kn_die("out of memory");
    archive_entry_set_pathname(e, path);
    archive_entry_set_uid(e, st->st_uid);
    archive_entry_set_gid(e, st->st_gid);
    int64_t mtime = st->st_mtim.tv_sec;
    if (w->opts.source_date_epoch >= 0 && mtime > w->opts.source_date_epoch)
        mtime = w->opts.source_date_epoch;
    archive_entry_set_mtime(e, mtime, 0);
    mode_t type = st->st_mode & S_IFMT;
    archive_entry_set_perm(e, st->st_mode & 07777);
    bool content = false;
    if (type == S_IFREG && linkname) {
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_hardlink(e, linkname);
        archive_entry_set_size(e, 0);
    } else if (type == S_IFREG) {
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, st->st_size);
        content = st->st_size > 0;
    } else if (type == S_IFDIR) {
        archive_entry_set_filetype(e, AE_IFDIR);
    } else if (type == S_IFLNK) {
        if (!linkname) {
            archive_entry_free(e);
            return kn_err_set(err, KN_E_INTERNAL, "symlink '%s' without a target", path);
        }
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_symlink(e, linkname);
    } else if (type == S_IFIFO) {
        archive_entry_set_filetype(e, AE_IFIFO);
    } else if (type == S_IFCHR || type == S_IFBLK) {
        archive_entry_set_filetype(e, type == S_IFCHR ? AE_IFCHR : AE_IFBLK);
        archive_entry_set_rdevmajor(e, major(st->st_rdev));
        archive_entry_set_rdevminor(e, minor(st->st_rdev));
    } else {
        archive_entry_free(e);
        return kn_err_set(err, KN_E_UNSAFE, "cannot put '%s' in a layer: unsupported file type",
                          path);
    }
    if (w->nxattrs > 1)
        qsort(w->xattrs, w->nxattrs, sizeof(*w->xattrs), cmp_xattr);
    for (size_t i = 0; i < w->nxattrs; i++)
        archive_entry_xattr_add_entry(e, w->xattrs[i].name, w->xattrs[i].value, w->xattrs[i].size);
    clear_xattrs(w);
    int r = write_header(w->a, e);
    archive_entry_free(e);
    if (r < ARCHIVE_WARN) {
        archive_fail(w, "cannot write the layer tar", err);
        return kn_err_wrap(err, "cannot add '%s'", path);
    }
    if (content && copy_content(w, path, fd, st->st_size, err) < 0) {
        w->failed = true;
        return -1;
    }
    return 0;
}

int ex_layer_writer_finish(struct ex_layer_writer *w, struct ex_layer_info *out,
                           struct kn_error **err)
{
    if (w->failed) {
        ex_layer_writer_abort(w);
        return kn_err_set(err, KN_E_INTERNAL, "layer writer used after a failure");
    }
    if (archive_write_close(w->a) != ARCHIVE_OK) {
        archive_fail(w, "cannot finish the layer tar", err);
        ex_layer_writer_abort(w);
        return -1;
    }
    archive_write_free(w->a);
    w->a = NULL;
    if (compress_out(w, NULL, 0, true, err) < 0) {
        ex_layer_writer_abort(w);
        return -1;
    }
    struct ex_layer_info info = {.media_type = media_type_of(w->opts.compression)};
    kn_sha256_final(&w->tar_hash, info.diff_id);
    struct ex_blob_writer *b = w->blob;
    w->blob = NULL;
    ex_layer_writer_abort(w);
    if (ex_blob_writer_commit(b, NULL, info.digest, &info.size, err) < 0)
        return -1;
    if (out)
        *out = info;
    return 0;
}
