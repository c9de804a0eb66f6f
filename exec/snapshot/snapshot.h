/*
 * exec/snapshot: filesystem snapshots for RUN and COPY steps.
 *
 * A snapshot is an immutable chain of layer directories, bottom first: the
 * unpacked layers of the base image (in the store, overlay form) and the
 * diff directories of earlier steps. A step does not copy the chain: it gets
 * a fresh, empty writable layer (struct ex_snapshot_rw) over it.
 *
 *  - overlay: the chain is the lower dirs of an overlayfs mounted inside the
 *    step's own mount namespace (by the sandbox, with the async-signal-safe
 *    ex_snapshot_rw_mount()); writes land in the upper dir, and the upper dir
 *    IS the diff. Cost grows with what the step changed, not with the image.
 *  - scan: for where overlayfs is not available (chroot isolation). The step
 *    runs in a fully materialized rootfs directory; a stat-walk is recorded
 *    before the step and compared after it, and the changes are written to a
 *    diff directory in exactly the overlay upper-dir form.
 *
 * Diff form (what exec/layer packs): new and changed entries as themselves
 * (with their parent directories); a deleted path as a 0/0 character device
 * (or, where mknod of a whiteout is refused, an empty ".wh.NAME" file); a
 * directory whose old content is hidden is marked opaque with the
 * "user.overlay.opaque"="y" xattr (or, where user xattrs are not supported,
 * a ".wh..wh..opq" file inside it). After ex_snapshot_rw_finish() the upper
 * holds no other overlay-private xattrs (user.overlay.uuid/impure/origin are
 * removed) and every whiteout is a separate inode (overlayfs hard-links all
 * whiteouts of a mount to one inode in its work dir).
 *
 * Lower dirs are read with the "userxattr" semantics (the mount happens in a
 * user namespace): an opaque lower dir must carry user.overlay.opaque, not
 * trusted.overlay.opaque.
 *
 * Thread-safety: a chain is immutable and refcounted (_Atomic); it may be
 * shared by any number of threads. An ex_snapshot_rw and an ex_scan belong
 * to one thread at a time. Functions keep no hidden global state except the
 * flatten cache on disk, which is safe against concurrent writers (rename).
 */
#ifndef KILN_EXEC_SNAPSHOT_H
#define KILN_EXEC_SNAPSHOT_H

#include "ir/base/base.h"

#include <sys/types.h>

/* The kernel stacks at most 500 lower layers; kiln flattens the bottom of a
 * longer chain into one merged directory so that at most this many remain. */
#define EX_SNAPSHOT_MAX_LOWERS 400

/* ---- chains -------------------------------------------------------------- */

struct ex_snapshot;

/* A chain of n layer directories, layers[0] the bottom. Paths are copied;
 * they must be absolute existing directories (else KN_E_NOTFOUND naming the
 * path). n may be 0 (an empty rootfs, FROM scratch). The caller owns the
 * returned reference. */
struct ex_snapshot *ex_snapshot_new(const char *const *layers, size_t n, struct kn_error **err);
/* A new chain: base's layers plus `layer` on top (base may be NULL). */
struct ex_snapshot *ex_snapshot_push(const struct ex_snapshot *base, const char *layer,
                                     struct kn_error **err);
struct ex_snapshot *ex_snapshot_ref(struct ex_snapshot *s);
void ex_snapshot_unref(struct ex_snapshot *s); /* NULL is a no-op */
size_t ex_snapshot_len(const struct ex_snapshot *s);
const char *ex_snapshot_layer(const struct ex_snapshot *s, size_t i); /* 0 = bottom */
/* sha256 over the layer paths: names a chain (for the flatten cache). */
const char *ex_snapshot_digest(const struct ex_snapshot *s);

/* Opens path (relative, no leading '/') in the merged view of the chain, the
 * top layer first, each layer resolved with RESOLVE_IN_ROOT; a whiteout in a
 * higher layer hides lower ones. Returns an O_RDONLY|O_CLOEXEC fd, or -1
 * with KN_E_NOTFOUND. Used to read /etc/passwd of an image. */
int ex_snapshot_open(const struct ex_snapshot *s, const char *path, struct kn_error **err);

/* Materializes the chain into dest (an existing empty directory):
 * whiteouts and opaque dirs applied, files copied (reflinked where the file
 * system can), so dest may be changed freely; ownership kept where the
 * caller may chown (root), else the caller's. */
int ex_snapshot_flatten(const struct ex_snapshot *s, const char *dest, struct kn_error **err);
/* The same with regular files hard-linked from the layers where the kernel
 * allows it: only for a result nobody writes to (an overlay lower dir),
 * since a write through a link would change the store's layers. */
int ex_snapshot_flatten_shared(const struct ex_snapshot *s, const char *dest,
                               struct kn_error **err);

/* ---- a writable layer over a chain ---------------------------------------- */

enum ex_snapshot_kind {
    EX_SNAPSHOT_OVERLAY, /* fresh upper dir over the chain, mounted by the sandbox */
    EX_SNAPSHOT_SCAN,    /* the caller's materialized rootfs, diffed by a stat-walk */
};

struct ex_snapshot_rw;

/* Prepares a writable layer in a new directory under workroot (which must
 * exist, on a filesystem overlayfs accepts as upper: not overlayfs itself):
 * WORKROOT/rw-XXXXXX/{upper,work,merged}. If the chain is longer than
 * EX_SNAPSHOT_MAX_LOWERS its bottom is flattened into
 * WORKROOT/flat/<digest> (cached, reused by later calls). Everything the
 * sandbox child needs for the mount is computed here, so that
 * ex_snapshot_rw_mount() needs no allocation. */
struct ex_snapshot_rw *ex_snapshot_rw_overlay(const struct ex_snapshot *base, const char *workroot,
                                              struct kn_error **err);
/* A scan-mode writable layer: rootfs is a materialized directory the step
 * will change in place (borrowed; must outlive rw). The "before" stat-walk
 * is recorded here; the diff goes to WORKROOT/rw-XXXXXX/upper at finish. */
struct ex_snapshot_rw *ex_snapshot_rw_scan(const char *rootfs, const char *workroot,
                                           struct kn_error **err);
enum ex_snapshot_kind ex_snapshot_rw_kind(const struct ex_snapshot_rw *rw);
/* The directory the step's root is mounted on (overlay: .../merged) or the
 * rootfs (scan). */
const char *ex_snapshot_rw_root(const struct ex_snapshot_rw *rw);
/* The diff directory (valid after ex_snapshot_rw_finish()). */
const char *ex_snapshot_rw_upper(const struct ex_snapshot_rw *rw);
/* The chain the layer sits on (overlay; NULL for scan). Borrowed. */
const struct ex_snapshot *ex_snapshot_rw_base(const struct ex_snapshot_rw *rw);

/* Async-signal-safe: mounts the writable root at `target` in the calling
 * process's mount namespace (overlay: fsopen/fsconfig "lowerdir+" on
 * kernels >= 6.8, else mount(2) with lower dirs as short paths relative to
 * their common parent; scan: a recursive bind of the rootfs). Call it in
 * the sandbox child between clone and exec, after the user namespace is set
 * up. Returns 0, or -errno. */
int ex_snapshot_rw_mount(const struct ex_snapshot_rw *rw, const char *target);

/* Completes the step: overlay: removes the work dir, strips overlay-private
 * xattrs and splits shared whiteouts; scan: walks the rootfs again and
 * writes the diff into the upper dir. Afterwards ex_snapshot_rw_upper() is
 * the diff, ready for ex_layer_pack_dir() or ex_snapshot_push(). */
int ex_snapshot_rw_finish(struct ex_snapshot_rw *rw, struct kn_error **err);
/* Removes the rw directory unless keep_upper, in which case only upper/
 * is kept (the caller now owns that path). Frees rw. NULL is a no-op. */
void ex_snapshot_rw_free(struct ex_snapshot_rw *rw, bool keep_upper);

/* ---- the scan snapshotter on its own ------------------------------------- */

struct ex_scan;
struct ex_scan_stats {
    size_t entries;      /* entries walked */
    size_t added;        /* new or changed entries written to the diff */
    size_t deleted;      /* whiteouts written */
    double walk_seconds; /* wall time of the last walk */
};
/* Records a stat-walk of rootfs (2 threads over the top-level subtrees):
 * path -> type, mode, uid, gid, size, mtime ns, ctime ns, inode, link
 * target. Unreadable directories are KN_E_IO errors. */
struct ex_scan *ex_scan_record(const char *rootfs, struct kn_error **err);
/* Walks rootfs again and writes what changed since the record into diffdir
 * (an existing empty directory) in overlay upper form. File contents are
 * copied (copy_file_range), so the diff stays valid when rootfs changes. */
int ex_scan_diff(struct ex_scan *sc, const char *diffdir, struct ex_scan_stats *stats,
                 struct kn_error **err);
void ex_scan_free(struct ex_scan *sc);

#endif
