/*
 * exec/registry: an OCI distribution client (libcurl).
 *
 * References are normalized the way docker does ("alpine" ->
 * "docker.io/library/alpine:latest"). Auth: anonymous, basic and bearer
 * tokens from the WWW-Authenticate challenge (scoped, reused until they
 * expire), with credentials from $DOCKER_CONFIG/config.json (or
 * ~/.docker/config.json), podman's auth.json ($REGISTRY_AUTH_FILE,
 * $XDG_RUNTIME_DIR/containers/auth.json) and credential helpers
 * (credHelpers / credsStore -> docker-credential-NAME get). Credentials and
 * tokens never appear in logs, errors or progress.
 *
 * Blobs go straight into the store through a blob writer (verified against
 * their digest, never stored when they do not match); transfers retry with
 * backoff on connection errors, 429 and 5xx (Retry-After honoured) and
 * resume with Range after a dropped connection.
 *
 * Thread-safety: one ex_registry may be used from several threads at once
 * (each call uses its own curl easy handle; the token cache is locked).
 */
#ifndef KILN_EXEC_REGISTRY_H
#define KILN_EXEC_REGISTRY_H

#include "exec/store/store.h"
#include "ir/ir.h"

/* A parsed, normalized reference. */
struct ex_ref {
    char *domain; /* "docker.io", "127.0.0.1:5000" */
    char *path;   /* "library/alpine" */
    char *tag;    /* "latest" when neither tag nor digest was given; NULL if digest only */
    char *digest; /* "sha256:..." or NULL */
};
/* Parses and normalizes; KN_E_PARSE with a message naming the reference when malformed. */
int ex_ref_parse(const char *s, struct ex_ref *out, struct kn_error **err);
void ex_ref_release(struct ex_ref *r);
/* "domain/path:tag", "domain/path@digest" or "domain/path:tag@digest"; caller frees. */
char *ex_ref_string(const struct ex_ref *r);
/* The familiar short form ("alpine:latest", "myhost:5000/x:1"); caller frees. */
char *ex_ref_familiar(const struct ex_ref *r);

struct ex_registry_opts {
    char *const *insecure; /* hosts (host or host:port) allowed over plain HTTP / bad TLS */
    size_t ninsecure;
    const char *ca_file;   /* extra CA bundle (--registry-ca), else $SSL_CERT_FILE or system */
    const char *auth_file; /* explicit auth file (--authfile), else the defaults above */
    int retries;           /* attempts per request, 0 = default (5) */
    int max_parallel;      /* parallel blob transfers, 0 = default (4) */
    const char *user_agent;
};

struct ex_registry;
struct ex_registry *ex_registry_new(const struct ex_registry_opts *opts, struct kn_error **err);
void ex_registry_free(struct ex_registry *r);

struct ex_descriptor {
    char *media_type;
    char digest[KN_DIGEST_SIZE];
    uint64_t size;
};

/* A resolved image: the manifest for one platform and its config. */
struct ex_image_manifest {
    char digest[KN_DIGEST_SIZE];       /* of the platform manifest */
    char index_digest[KN_DIGEST_SIZE]; /* of the index/list it was selected from, "" if none */
    char *media_type;
    char *manifest; /* raw JSON as served (its sha256 is digest) */
    size_t manifest_len;
    struct ex_descriptor config;
    char *config_json; /* the config blob's bytes */
    struct ex_descriptor *layers;
    size_t nlayers;
};
void ex_image_manifest_release(struct ex_image_manifest *m);

/* Fetches the manifest (selecting `platform` from an index or manifest list;
 * NULL = linux/amd64 or the host's) and the config blob, storing both in the
 * store. Layers are not fetched. */
int ex_registry_resolve(struct ex_registry *r, const struct ex_ref *ref,
                        const struct ir_platform *platform, struct ex_store *s,
                        struct ex_image_manifest *out, struct kn_error **err);
/* ex_registry_resolve plus every layer blob not yet in the store, in parallel. */
int ex_registry_pull(struct ex_registry *r, const struct ex_ref *ref,
                     const struct ir_platform *platform, struct ex_store *s,
                     struct ex_image_manifest *out, struct kn_error **err);
/* Fetches one blob of repository ref into the store (no-op if present). */
int ex_registry_fetch_blob(struct ex_registry *r, const struct ex_ref *ref, const char *digest,
                           struct ex_store *s, struct kn_error **err);
/* Uploads one blob from the store unless the registry has it (HEAD first);
 * mount_from: another repository path on the same registry to try a
 * cross-repository mount from, or NULL. */
int ex_registry_push_blob(struct ex_registry *r, const struct ex_ref *ref, const char *digest,
                          struct ex_store *s, const char *mount_from, struct kn_error **err);
/* PUTs a manifest under ref's tag (or digest); out gets its digest. */
int ex_registry_push_manifest(struct ex_registry *r, const struct ex_ref *ref,
                              const char *media_type, const char *data, size_t len,
                              char out[KN_DIGEST_SIZE], struct kn_error **err);
/* The raw manifest (or index) at ref without platform selection. */
int ex_registry_get_manifest(struct ex_registry *r, const struct ex_ref *ref, struct kn_buf *out,
                             char **media_type, char digest[KN_DIGEST_SIZE], struct kn_error **err);

/* ---- credentials (kiln login / logout) ---- */
/* Verifies user/password against the registry, then stores them in the auth
 * file (config.json "auths", base64 "auth"). */
int ex_registry_login(struct ex_registry *r, const char *host, const char *user,
                      const char *password, struct kn_error **err);
int ex_registry_logout(const struct ex_registry_opts *opts, const char *host,
                       struct kn_error **err);

#endif
