/*
 * exec/store: the content-addressed store under $KILN_ROOT.
 *
 * Layout (version 1):
 *   ROOT/blobs/sha256/HEX        blobs (layers, configs, manifests) by digest
 *   ROOT/layers/sha256/HEX/      unpacked layers by diff_id (overlay form:
 *                                whiteouts as 0/0 char devices or, rootless,
 *                                as ".wh." files; see exec/layer)
 *   ROOT/cache/HEX               cache index: cache key -> result (JSON text)
 *   ROOT/tmp/                    temporary names, renamed into place
 *   ROOT/lock                    the store lock (flock)
 * Every write goes to a temporary name under ROOT/tmp, is verified against
 * its digest and renamed into place, so a crash at any point leaves no
 * corrupt entry. Several kiln processes may share one store at once: entries
 * are immutable once renamed in, and prune takes the lock exclusively while
 * builds hold it shared. Access times are kept for least-recently-used prune.
 *
 * Thread-safety: an ex_store may be used from any number of threads at once;
 * a blob writer belongs to one thread.
 */
#ifndef KILN_EXEC_STORE_H
#define KILN_EXEC_STORE_H

#include "ir/base/base.h"

struct ex_store;

/* The default root: $KILN_ROOT, else $XDG_DATA_HOME/kiln (~/.local/share/kiln),
 * or /var/lib/kiln for uid 0. Caller frees. */
char *ex_store_default_root(void);
/* Opens (creating if needed) the store and takes the shared lock. */
struct ex_store *ex_store_open(const char *root, struct kn_error **err);
void ex_store_close(struct ex_store *s);
const char *ex_store_root(const struct ex_store *s);
/* A new empty temporary directory under ROOT/tmp (caller frees the string
 * and removes the directory). */
char *ex_store_mkdtemp(struct ex_store *s, const char *prefix, struct kn_error **err);

/* ---- blobs ---- */
bool ex_store_has_blob(struct ex_store *s, const char *digest);
/* ROOT/blobs/sha256/HEX (whether or not it exists); caller frees. */
char *ex_store_blob_path(const struct ex_store *s, const char *digest);
/* Opens a blob for reading (O_CLOEXEC); -1 with KN_E_NOTFOUND if absent. */
int ex_store_blob_open(struct ex_store *s, const char *digest, struct kn_error **err);
/* Reads a small blob (manifest, config) of at most max bytes. */
int ex_store_blob_read(struct ex_store *s, const char *digest, struct kn_buf *out, size_t max,
                       struct kn_error **err);
/* Stores a small blob from memory; out gets its digest. If expected is not
 * NULL the content must match it (KN_E_DIGEST otherwise, nothing stored). */
int ex_store_blob_put(struct ex_store *s, const void *data, size_t len, const char *expected,
                      char out[KN_DIGEST_SIZE], struct kn_error **err);
/* Size of a stored blob, or -1 with *err. */
int64_t ex_store_blob_size(struct ex_store *s, const char *digest, struct kn_error **err);

/* Streaming blob writer: data -> temp file + sha256; commit verifies and
 * renames into place. Used by the layer packer and the registry client. */
struct ex_blob_writer;
struct ex_blob_writer *ex_blob_writer_new(struct ex_store *s, struct kn_error **err);
int ex_blob_writer_write(struct ex_blob_writer *w, const void *data, size_t n,
                         struct kn_error **err);
/* Bytes written so far (for resuming a download with Range). */
uint64_t ex_blob_writer_size(const struct ex_blob_writer *w);
/* Verifies (expected may be NULL: accept what was computed), renames into
 * place, frees w. out/size may be NULL. On failure (digest mismatch,
 * I/O error) nothing is stored and w is freed too. */
int ex_blob_writer_commit(struct ex_blob_writer *w, const char *expected, char out[KN_DIGEST_SIZE],
                          uint64_t *size, struct kn_error **err);
void ex_blob_writer_abort(struct ex_blob_writer *w);

/* ---- unpacked layers (by diff_id) ---- */
/* ROOT/layers/sha256/HEX; caller frees. */
char *ex_store_layer_path(const struct ex_store *s, const char *diff_id);
bool ex_store_has_layer(struct ex_store *s, const char *diff_id);
/* Moves a fully unpacked temporary directory (from ex_store_mkdtemp) into
 * place as the layer diff_id. If another process won the race, tmpdir is
 * removed and the existing layer is kept. */
int ex_store_layer_commit(struct ex_store *s, const char *diff_id, const char *tmpdir,
                          struct kn_error **err);

/* ---- cache index (key: a digest string) ---- */
/* 1 and *value set when found, 0 when missing, -1 on error. */
int ex_store_cache_get(struct ex_store *s, const char *key, struct kn_buf *value,
                       struct kn_error **err);
int ex_store_cache_put(struct ex_store *s, const char *key, const char *value,
                       struct kn_error **err);

/* ---- maintenance ---- */
/* Removes least-recently-used entries (cache entries, unpacked layers, then
 * blobs no cache entry or image refers to) until the store holds at most
 * keep bytes; takes the exclusive lock. freed may be NULL. */
int ex_store_prune(struct ex_store *s, uint64_t keep, uint64_t *freed, struct kn_error **err);
/* Bytes used by the store. */
int ex_store_usage(struct ex_store *s, uint64_t *bytes, struct kn_error **err);

/* ---- helpers (added by the store's implementation) ---- */
/* Removes a file or a whole tree (never following symlinks, making
 * read-only directories writable first); a missing path is not an error.
 * For temporary directories from ex_store_mkdtemp and failed unpacks. */
int ex_store_remove_tree(const char *path, struct kn_error **err);
/* The same for name relative to dirfd (name itself is not followed). */
int ex_store_remove_tree_at(int dirfd, const char *name, struct kn_error **err);
/* Removes every tree of dirs (a failure is a warning: cleaning up must not
 * fail what succeeded) and releases dirs. */
void ex_store_remove_trees(struct kn_strv *dirs);
/* Copies in to out from their current offsets to the end of in: a reflink
 * where the file system shares extents, else copy_file_range, else reads
 * and writes. name is used in messages. On failure errno is kept. */
int ex_store_copy_fd(int in, int out, const char *name, struct kn_error **err);

#endif
