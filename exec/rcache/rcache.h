/*
 * exec/rcache: the build cache in a registry (--cache-to / --cache-from
 * type=registry,ref=R, the executor's --cache-repo).
 *
 * One cache entry is one OCI manifest in the cache repository R, tagged
 * "sha256-<hex of the cache key>" (a tag is at most 128 characters, this is
 * 71). Its config blob (media type and artifactType EX_RCACHE_MT) is the
 * entry's value, the same JSON text the store's cache index holds (a rootfs
 * result: the layers bottom first, each with its digest, diffID and media
 * type, and the base image's config); its layers are the blobs of the value
 * that were in the local store when the entry was written (the layers the
 * build made). Layers the value names with a registry origin (a base
 * image's, not pulled yet) are not copied: they stay reachable from there.
 *
 * A build on another machine, with an empty store, reads the entry and gets
 * every layer blob the manifest lists into its store, so the local cache
 * lookup that follows finds a complete entry. An entry that is absent, whose
 * manifest is not a kiln cache manifest, or whose blobs are gone (garbage
 * collected, deleted by hand) is a miss, never a failed build.
 *
 * Thread-safety: an ex_rcache may be used from several threads at once (it
 * holds nothing mutable; the registry client and the store are thread-safe).
 */
#ifndef KILN_EXEC_RCACHE_H
#define KILN_EXEC_RCACHE_H

#include "exec/registry/registry.h"
#include "exec/store/store.h"

/* the config media type and artifactType of a cache manifest */
#define EX_RCACHE_MT "application/vnd.kiln.cache.v1+json"
/* the annotation carrying the full cache key */
#define EX_RCACHE_ANNOT_KEY "dev.kiln.cache.key"
/* caps on what is read back from a registry */
#define EX_RCACHE_VALUE_MAX (4u << 20) /* one entry's value (the config blob) */

struct ex_rcache;

/* Opens the cache repository ref ("host/path", a tag or digest in it is
 * refused: each entry gets its own tag). reg and s are borrowed and must
 * outlive the cache. KN_E_USAGE for a bad reference. Nothing is contacted
 * yet. */
struct ex_rcache *ex_rcache_open(struct ex_registry *reg, const char *ref, struct ex_store *s,
                                 struct kn_error **err);
void ex_rcache_close(struct ex_rcache *rc);
/* The normalized repository ("127.0.0.1:5000/cache/app"). Borrowed. */
const char *ex_rcache_repo(const struct ex_rcache *rc);

/* The tag of key ("sha256:<hex>" -> "sha256-<hex>"); NULL if key is not a
 * valid digest. Caller frees. */
char *ex_rcache_tag(const char *key);

/* Looks key up: 1 and *value (reset first) set to the entry's value with
 * every blob the entry carries fetched into the store; 0 on a miss (no
 * entry, not a kiln cache manifest, a blob gone, a value that names a layer
 * neither stored nor reachable); -1 on a real error (network, auth,
 * malformed responses past their caps). */
int ex_rcache_get(struct ex_rcache *rc, const char *key, struct kn_buf *value,
                  struct kn_error **err);

/* Writes an entry: pushes every layer blob of value that is in the store,
 * then the value as the config blob, then the manifest tagged with key's
 * tag (replacing an older entry under the same key). A layer of value that
 * is not in the store must have a registry origin ("registry" in the
 * value), else KN_E_NOTFOUND: the entry would be useless elsewhere.
 * KN_E_PARSE when value is not a cache entry. */
int ex_rcache_put(struct ex_rcache *rc, const char *key, const char *value, struct kn_error **err);

#endif
