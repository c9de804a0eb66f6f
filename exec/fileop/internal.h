/*
 * exec/fileop private declarations shared by view.c, plan.c, emit.c,
 * checksum.c, user.c and unpack.c (and the module's unit tests).
 */
#ifndef KILN_EXEC_FILEOP_INTERNAL_H
#define KILN_EXEC_FILEOP_INTERNAL_H

#include "exec/fileop/fileop.h"
#include "ir/base/pattern.h"

#include <sys/stat.h>

#define FO_MAX_LINKS   40   /* symlink hops in one lookup, as the kernel */
#define FO_MAX_DEPTH   4096 /* directory nesting we walk */
#define FO_MAX_ENTRIES 10000000
#define FO_WH_PREFIX   ".wh."
#define FO_WH_OPAQUE   ".wh..wh..opq"
/* openat2 resolve flags for paths already canonical in a layer */
#define FO_RESOLVE (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

struct ex_view {
    char *name;
    char *root; /* first layer's path, for messages */
    int *fds;   /* O_PATH | O_DIRECTORY root fds, lowest first */
    size_t n;
    bool chain;       /* overlay whiteouts / opaque dirs are honoured */
    bool keep_owners; /* source owners are kept (else 0:0) */
    struct kn_patterns *include, *exclude;
    char **include_raw; /* cleaned include patterns, for ancestor checks */
    size_t ninclude;
};

/* A resolved entry of a view. */
struct vnode {
    struct stat st;
    int layer;      /* index into fds of the layer holding it (top-most) */
    char *path;     /* canonical relative path, "" for the root (owned) */
    int *dirlayers; /* directories: contributing layers, top first (owned) */
    size_t ndirlayers;
};
void vnode_release(struct vnode *n);
void vnode_copy(struct vnode *dst, const struct vnode *src);

/* The root directory node. */
void view_root(const struct ex_view *v, struct vnode *out);
/* Looks up `name` (one component) in directory node dir. 1 found, 0 not
 * found (or hidden by a whiteout / the view's patterns), -1 error. */
int view_child(const struct ex_view *v, const struct vnode *dir, const char *name,
               struct vnode *out, struct kn_error **err);
/* Full lookup of a relative or absolute path with chroot semantics. 1 found,
 * 0 not found, -1 error (ELOOP, I/O). follow: resolve a final symlink. */
int view_lookup(const struct ex_view *v, const char *path, bool follow, struct vnode *out,
                struct kn_error **err);

struct ventry {
    char *name;
    struct stat st;
    int layer;
};
/* The merged, visible children of dir, sorted by name (caller frees with
 * ventries_free). */
int view_list(const struct ex_view *v, const struct vnode *dir, struct ventry **out, size_t *n,
              struct kn_error **err);
void ventries_free(struct ventry *e, size_t n);
/* The node of a listed entry (a dir view needs no second lookup). */
int view_child_entry(const struct ex_view *v, const struct vnode *dir, const struct ventry *e,
                     struct vnode *out, struct kn_error **err);
/* Opens a regular file node for reading. */
int view_open_node(const struct ex_view *v, const struct vnode *node, struct kn_error **err);
/* Opens (layer, path) for reading, no symlinks followed anywhere. */
int view_open_at(const struct ex_view *v, int layer, const char *path, struct kn_error **err);
/* Reads a symlink node's target (caller frees). */
char *view_readlink(const struct ex_view *v, int layer, const char *path, struct kn_error **err);

/* "a" + "b" -> "a/b"; "" + "b" -> "b". Caller frees. */
char *fo_join(const char *a, const char *b);
/* Compares paths component-wise (a directory's entries right after it). */
int fo_path_cmp(const char *a, const char *b);

/* openat2(dirfd, path, flags, resolve) with an openat(O_NOFOLLOW) fallback. */
int fo_openat2(int dirfd, const char *path, int flags, unsigned long long resolve);

/* A small string -> size_t hash map (keys borrowed). */
struct fo_map {
    const char **keys;
    size_t *vals;
    size_t cap, n; /* n: live keys */
    size_t used;   /* live keys + tombstones */
};
void fo_map_put(struct fo_map *m, const char *key, size_t val);
bool fo_map_get(const struct fo_map *m, const char *key, size_t *val);
void fo_map_del(struct fo_map *m, const char *key);
void fo_map_release(struct fo_map *m);

/* sha256 of a regular file's content through the process-wide cache. */
int fo_hash_file(int fd, const struct stat *st, char out[KN_DIGEST_SIZE], struct kn_error **err);

/* An ADD archive: is the file at fd a tar (plain or gzip/bzip2/xz/zstd)? */
bool fo_is_archive(int fd);
/* Extracts fd into dir (exists, empty), keeping owners. */
int fo_extract_archive(int fd, const char *name, const char *dir, struct kn_error **err);

#endif
