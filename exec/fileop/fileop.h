/*
 * exec/fileop: the effects of the IR's "file" op (COPY, ADD, WORKDIR,
 * heredoc files): copy / mkdir / mkfile / rm / symlink actions applied on
 * inputs[0], with sources read from other inputs, with Docker's semantics.
 *
 * Views. A source or a destination is read through a read-only view:
 *  - a host directory (the build context, a named context) filtered by
 *    .dockerignore-style include / exclude patterns; files read from it are
 *    owned by 0:0 in the result, as Docker does;
 *  - a chain of layer directories in overlay upper-dir form (a stage's
 *    result, an image), lowest first, resolved top-down without mounting:
 *    whiteouts (0/0 char devices, ".wh.NAME" files) hide lower entries,
 *    opaque directories (trusted./user.overlay.opaque xattrs, ".wh..wh..opq")
 *    hide lower contents; owners are kept.
 * Symlinks are resolved inside the view's root as in a chroot (".." and
 * absolute targets clamp at the root); every layer is read relative to its
 * directory fd with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) on paths
 * already resolved through the merged view.
 *
 * Apply. The result of a file op is a diff (the op's layer). Two back-ends
 * with one semantics (one plan, two emitters):
 *  - stream: the diff goes straight into a layer writer (no file is written
 *    to disk; contents are read from the source fds in sorted order);
 *  - materialize: the diff is written into an upper directory on disk in
 *    overlay form (whiteouts as 0/0 char devices or ".wh." files, opaque
 *    directories as user.overlay.opaque or ".wh..wh..opq"), for when a later
 *    RUN needs a filesystem. Contents are reflinked or copy_file_range'd.
 * Packing the materialized dir with ex_layer_pack_dir gives the same diff_id
 * as the stream back-end (the unit tests check it).
 *
 * Checksums. ex_fileop_checksum() is the content part of a COPY's cache key:
 * sha256 over exactly the source entries the action copies (after wildcard
 * matching, exclude patterns and the view's patterns), never over mtimes or
 * unrelated files. Per-file content hashes are cached in the process keyed
 * by (dev, ino, size, mtime ns, ctime ns).
 *
 * Thread-safety: a view is immutable after creation and may be shared by
 * threads. Applying and checksumming may run on several threads at once; the
 * content-hash cache is the only shared state (mutex-protected).
 */
#ifndef KILN_EXEC_FILEOP_H
#define KILN_EXEC_FILEOP_H

#include "ir/ir.h"

#include <sys/stat.h>

struct ex_layer_writer;
struct ex_snapshot;

/* ---- views --------------------------------------------------------------- */

struct ex_view;

/* A host directory as a source. `name` is used in messages ("build
 * context", "context 'web'"); include / exclude are .dockerignore-style
 * patterns (exclude may hold "!" exceptions; NULL/0 for none). A malformed
 * pattern is a KN_E_PARSE error; a missing dir KN_E_NOTFOUND. */
struct ex_view *ex_view_new_dir(const char *dir, const char *name, char *const *include,
                                size_t ninclude, char *const *exclude, size_t nexclude,
                                struct kn_error **err);
/* A chain of layer directories, layers[0] the lowest; n may be 0 (scratch). */
struct ex_view *ex_view_new_chain(const char *const *layers, size_t n, const char *name,
                                  struct kn_error **err);
/* The same over a snapshot chain (the layers are borrowed by path: the
 * snapshot must outlive the view). */
struct ex_view *ex_view_new_snapshot(const struct ex_snapshot *s, const char *name,
                                     struct kn_error **err);
void ex_view_free(struct ex_view *v); /* NULL is a no-op */
const char *ex_view_name(const struct ex_view *v);

/* lstat of path (leading '/' optional) in the merged view; symlinks in the
 * parent components are resolved inside the root, the last one too when
 * follow. -1 with KN_E_NOTFOUND naming the path when it does not exist. */
int ex_view_stat(const struct ex_view *v, const char *path, bool follow, struct stat *st,
                 struct kn_error **err);
/* Opens a regular file for reading (symlinks followed inside the root);
 * O_RDONLY | O_CLOEXEC. */
int ex_view_open(const struct ex_view *v, const char *path, struct kn_error **err);

/* ---- applying a file op --------------------------------------------------- */

struct ex_fileop_req {
    const struct ir_file *op;
    const struct ex_view *dest; /* the view over inputs[0] (the destination rootfs) */
    /* views by input index (sources of copy actions); inputs[0] may be dest */
    const struct ex_view *const *inputs;
    size_t ninputs;
    /* mtime of entries the op creates (parent dirs, mkdir, mkfile, symlink,
     * whiteouts): the build's SOURCE_DATE_EPOCH or the current time */
    int64_t mtime;
    /* by input index: the "sha256:..." digest a source.http input's file
     * must match (ADD --checksum), or NULL; the array itself may be NULL */
    const char *const *checksums;
    /* a directory for temporary files (ADD extracts archives here); NULL:
     * $TMPDIR or /tmp */
    const char *tmpdir;
};

/* What the stream back-end writes to: ex_layer_writer_add's shape. Entries
 * arrive sorted (parents first), paths relative without a leading '/'.
 * Regular files: fd holds st_size bytes; hard links: S_IFREG with linkname
 * set (the earlier path) and fd -1; symlinks: linkname; whiteouts come as
 * empty ".wh.NAME" regular files and opaque directories as a
 * ".wh..wh..opq" regular file after the directory. */
struct ex_fileop_sink {
    int (*add)(void *ctx, const char *path, const struct stat *st, int fd, const char *linkname,
               struct kn_error **err);
    /* optional: an xattr of the next entry added (copied files and
     * directories keep their source's xattrs, overlay-private ones
     * excepted); NULL drops them */
    int (*add_xattr)(void *ctx, const char *name, const void *value, size_t size,
                     struct kn_error **err);
    void *ctx;
};

/* Stream back-end: writes the op's diff to sink. Errors (Docker's
 * semantics: missing source, escaping path, unknown --chown user, a
 * directory over a file, ...) are returned before anything is written. */
int ex_fileop_stream(const struct ex_fileop_req *req, const struct ex_fileop_sink *sink,
                     struct kn_error **err);
/* The same into a layer writer (the caller finishes or aborts w). */
int ex_fileop_stream_layer(const struct ex_fileop_req *req, struct ex_layer_writer *w,
                           struct kn_error **err);
/* Materialize back-end: writes the op's diff into upper (an existing empty
 * directory) in overlay upper-dir form, preserving modes, owners (when the
 * caller may chown), xattrs, mtimes and hard links within the op. */
int ex_fileop_materialize(const struct ex_fileop_req *req, const char *upper,
                          struct kn_error **err);

/* ---- cache keys ------------------------------------------------------------ */

/* Content checksum of what copy action `a` reads from view v ("sha256:..."):
 * for each copied entry in sorted order its path, type, mode, owner (chain
 * views only), link target and content sha256. mkdir/mkfile/rm/symlink
 * actions read nothing: their checksum is the digest of the empty string.
 * A missing source is the same error the apply would report. */
int ex_fileop_checksum(const struct ex_view *v, const struct ir_file_action *a,
                       char out[KN_DIGEST_SIZE], struct kn_error **err);

/* Statistics of the content-hash cache (for tests and --debug). */
struct ex_fileop_hash_stats {
    uint64_t hits, misses;
    uint64_t bytes_hashed;
};
void ex_fileop_hash_stats(struct ex_fileop_hash_stats *out);
/* Empties the cache (tests). */
void ex_fileop_hash_cache_clear(void);
/* Adds the entries saved in the file at path to the cache (a missing file is
 * an empty cache; a foreign one is ignored with a warning), and writes the
 * cache there (through a temporary name), leaving out entries too recent to
 * be trusted. kiln build keeps it in the store, so a rebuild re-hashes only
 * the files that changed. */
int ex_fileop_hash_cache_load(const char *path, struct kn_error **err);
int ex_fileop_hash_cache_save(const char *path, struct kn_error **err);

/* ---- helpers exposed for the frontend and tests ---------------------------- */

/* Applies a chmod(1)-style symbolic mode ("u+x,g-w,o=r", "a+X") to mode
 * (permission and set-id/sticky bits); is_dir decides X. KN_E_PARSE for a
 * malformed string. */
int ex_fileop_chmod_apply(const char *spec, mode_t mode, bool is_dir, mode_t *out,
                          struct kn_error **err);
/* Resolves "user[:group]" (names or numbers) through /etc/passwd and
 * /etc/group of view v. A numeric user without a group gets gid = uid; a
 * named user without a group gets its primary group. */
int ex_fileop_resolve_chown(const struct ex_view *v, const char *spec, uid_t *uid, gid_t *gid,
                            struct kn_error **err);

#endif
