/*
 * exec/store internals shared by the store's own files and its unit tests:
 * the store object, the per-process temporary directory, and the small
 * directory-fd helpers (recursive removal, disk usage) the store is built on.
 */
#ifndef KILN_EXEC_STORE_INTERNAL_H
#define KILN_EXEC_STORE_INTERNAL_H

#include "store.h"

#include <pthread.h>

struct ex_store {
    char *root;              /* ROOT, absolute or as given */
    int rootfd;              /* O_PATH|O_DIRECTORY of ROOT */
    int lockfd;              /* ROOT/lock, held LOCK_SH (LOCK_EX during prune) */
    char *tmpdir;            /* ROOT/tmp/pPID-XXXXXX: this process's temporary names */
    int tmplockfd;           /* tmpdir/.lock, held LOCK_EX while the store is open */
    pthread_mutex_t lock_mu; /* serializes lock conversions (prune) */
};

/* Subdirectories of ROOT. */
#define EX_STORE_BLOBS  "blobs/sha256"
#define EX_STORE_LAYERS "layers/sha256"
#define EX_STORE_CACHE  "cache"
#define EX_STORE_TMP    "tmp"

/* A temp dir whose owner left no lock file is stale after this many seconds. */
#define EX_STORE_STALE_SECS 60

/* Marks an entry as used now (atime; the content and mtime are untouched). */
void ex_store_touch(struct ex_store *s, const char *relpath);

/* Removes name (file or tree) under dirfd, never following symlinks and
 * making directories writable as needed. ENOENT is not an error. */
int ex_rm_rf_at(int dirfd, const char *name, struct kn_error **err);
/* Disk usage (st_blocks * 512) of name under dirfd, recursively. */
int ex_du_at(int dirfd, const char *name, uint64_t *bytes, struct kn_error **err);

/* Writes a whole file under s's temp dir, fsyncs it and renames it to
 * ROOT/relpath unless that exists already (entries are immutable). */
int ex_store_put_file(struct ex_store *s, const char *relpath, const void *data, size_t len,
                      struct kn_error **err);

#endif
