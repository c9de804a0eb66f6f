/*
 * exec/layer: layer blobs <-> directories, streaming.
 *
 * Packing: a diff directory (an overlay upper dir, or any tree) becomes a
 * layer blob in one pass: sorted tar entries (libarchive) -> sha256 of the
 * tar (diff_id) -> gzip / zstd / none -> sha256 of the blob -> the store.
 * Overlay whiteouts (0/0 char devices, "trusted.overlay.opaque" or
 * "user.overlay.opaque" xattrs, and the rootless ".wh." files kept as-is)
 * become OCI ".wh.NAME" / ".wh..wh..opq" entries. Nothing is held in memory
 * beyond a fixed buffer.
 *
 * Unpacking: a blob (gzip, zstd or plain, detected from the bytes and checked
 * against the media type) into a directory, refusing every entry that would
 * escape it, with bounded total size and entry count.
 *
 * Thread-safety: every function may run on several threads at once with
 * different arguments (no umask/chdir games: paths are resolved with openat2).
 */
#ifndef KILN_EXEC_LAYER_H
#define KILN_EXEC_LAYER_H

#include "exec/store/store.h"

#include <sys/stat.h>

enum ex_compression { EX_COMP_NONE, EX_COMP_GZIP, EX_COMP_ZSTD };

#define EX_MT_OCI_LAYER         "application/vnd.oci.image.layer.v1.tar"
#define EX_MT_OCI_LAYER_GZIP    "application/vnd.oci.image.layer.v1.tar+gzip"
#define EX_MT_OCI_LAYER_ZSTD    "application/vnd.oci.image.layer.v1.tar+zstd"
#define EX_MT_DOCKER_LAYER_GZIP "application/vnd.docker.image.rootfs.diff.tar.gzip"

struct ex_layer_opts {
    enum ex_compression compression;
    int level;                 /* 0 = the codec's default */
    int64_t source_date_epoch; /* clamp mtimes to this; -1 = keep mtimes */
    int threads;               /* CPUs compression may use, 0 = 1 */
};

/* Sets up the codec's once-only process state (the UTF-8 locale libarchive
 * runs under). Called lazily by everything here; call it before fork() in
 * a multithreaded process whose child uses the codec, so no pthread_once
 * can be half-run in the child. Thread-safe. */
void ex_layer_init(void);

struct ex_layer_info {
    char digest[KN_DIGEST_SIZE];  /* of the compressed blob */
    char diff_id[KN_DIGEST_SIZE]; /* of the uncompressed tar */
    uint64_t size;                /* blob size */
    const char *media_type;       /* static string */
};

/* Packs the tree at dir into a layer blob in the store. */
int ex_layer_pack_dir(struct ex_store *s, const char *dir, const struct ex_layer_opts *opts,
                      struct ex_layer_info *out, struct kn_error **err);

/* A streaming layer writer, for producing a layer without a directory on
 * disk (COPY streams its sources straight in). Entries must be added in
 * sorted path order (parents before children); paths are relative, without
 * a leading "/". */
struct ex_layer_writer;
struct ex_layer_writer *ex_layer_writer_new(struct ex_store *s, const struct ex_layer_opts *opts,
                                            struct kn_error **err);
/* Adds an entry described by st (type, mode, uid, gid, mtime, size, rdev).
 * Regular files: content read from fd (st->st_size bytes). Symlinks and hard
 * links: linkname. Whiteouts are added as OCI ".wh." names by the caller. */
int ex_layer_writer_add(struct ex_layer_writer *w, const char *path, const struct stat *st, int fd,
                        const char *linkname, struct kn_error **err);
/* Ends the tar, flushes the compressor and commits the blob to the store;
 * frees w (also on failure). */
int ex_layer_writer_finish(struct ex_layer_writer *w, struct ex_layer_info *out,
                           struct kn_error **err);
void ex_layer_writer_abort(struct ex_layer_writer *w);
/* Optional xattrs for the next entry added (call before ex_layer_writer_add;
 * written as PAX SCHILY.xattr records, sorted by name). */
int ex_layer_writer_add_xattr(struct ex_layer_writer *w, const char *name, const void *value,
                              size_t size, struct kn_error **err);

enum ex_unpack_flags {
    /* Keep whiteouts in overlay form (for a layer dir used as an overlay
     * lower): as 0/0 char devices and opaque xattrs where permitted, else
     * as ".wh." marker files (rootless). Without this flag whiteouts are
     * applied: the named paths are deleted from dest (flattening a chain
     * into one rootfs). */
    EX_UNPACK_OVERLAY = 1 << 0,
    /* Keep ownership from the tar (as root or in a user namespace); else
     * files are owned by the caller. */
    EX_UNPACK_OWNERS = 1 << 1,
    /* Allow device nodes (only where mknod works). */
    EX_UNPACK_DEVICES = 1 << 2,
};

struct ex_unpack_limits {
    uint64_t max_bytes;   /* total uncompressed bytes, 0 = default (64 GiB) */
    uint64_t max_entries; /* 0 = default (10 million) */
};

/* Unpacks the blob `digest` from the store into dest (which exists). The
 * media type may be NULL (detect from the bytes). Escaping entries,
 * unsupported types and limits are KN_E_UNSAFE errors naming the layer and
 * the entry. `digest` may also be a path to a tar file when it starts with
 * "/" (used by ADD of a local archive). */
int ex_layer_unpack(struct ex_store *s, const char *digest, const char *media_type,
                    const char *dest, unsigned flags, const struct ex_unpack_limits *limits,
                    struct kn_error **err);

/* Unpacks from an open fd (the stream may be compressed); `name` is used in
 * messages. */
int ex_layer_unpack_fd(int fd, const char *name, const char *media_type, const char *dest,
                       unsigned flags, const struct ex_unpack_limits *limits,
                       struct kn_error **err);

#endif
