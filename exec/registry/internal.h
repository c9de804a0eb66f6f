/*
 * exec/registry internals: the pieces of the distribution client that the
 * module's files share and its unit tests call directly (the auth-param
 * parser, the credential lookup, platform selection, host rules). Not part of
 * the public API.
 */
#ifndef KILN_EXEC_REGISTRY_INTERNAL_H
#define KILN_EXEC_REGISTRY_INTERNAL_H

#include "exec/registry/registry.h"

#include <stdlib.h>

/* ---- limits ---- */
#define EX_REG_MANIFEST_MAX    (4u << 20)           /* 4 MiB */
#define EX_REG_CONFIG_MAX      (8u << 20)           /* 8 MiB */
#define EX_REG_TOKEN_MAX       (1u << 20)           /* a token response */
#define EX_REG_ERRBODY_MAX     (64u << 10)          /* an error body we keep for its message */
#define EX_REG_CHUNK_THRESHOLD ((uint64_t)64 << 20) /* blobs above this are PATCHed in chunks */
#define EX_REG_CHUNK_SIZE      ((uint64_t)32 << 20)

/* Media types. */
#define EX_MT_OCI_MANIFEST     "application/vnd.oci.image.manifest.v1+json"
#define EX_MT_OCI_INDEX        "application/vnd.oci.image.index.v1+json"
#define EX_MT_DOCKER_MANIFEST  "application/vnd.docker.distribution.manifest.v2+json"
#define EX_MT_DOCKER_LIST      "application/vnd.docker.distribution.manifest.list.v2+json"
#define EX_MT_DOCKER_V1        "application/vnd.docker.distribution.manifest.v1+json"
#define EX_MT_DOCKER_V1_SIGNED "application/vnd.docker.distribution.manifest.v1+prettyjws"

/* ---- WWW-Authenticate (RFC 7235 auth-param syntax) ---- */
struct ex_auth_param {
    char *name; /* lowercased */
    char *value;
};
struct ex_challenge {
    char *scheme; /* lowercased: "bearer", "basic" */
    struct ex_auth_param *params;
    size_t nparams;
};
struct ex_challenges {
    struct ex_challenge *v;
    size_t n;
};
/* Parses one header value (which may hold several challenges); appends to
 * out, so several headers can be parsed into one list. KN_E_PARSE on
 * malformed input (out keeps what was parsed before). */
int ex_challenges_parse(const char *header, struct ex_challenges *out, struct kn_error **err);
void ex_challenges_release(struct ex_challenges *c);
/* The challenge with this scheme (case-insensitive), or NULL. */
const struct ex_challenge *ex_challenges_find(const struct ex_challenges *c, const char *scheme);
/* A parameter's value (name case-insensitive), or NULL. */
const char *ex_challenge_param(const struct ex_challenge *c, const char *name);

/* ---- credentials ---- */
struct ex_cred {
    char *user;
    char *password;
    char *identity_token; /* OAuth2 refresh token ("identitytoken", or helper "<token>" user) */
};
void ex_cred_release(struct ex_cred *c);
/* Looks up credentials for a registry domain ("docker.io", "host:5000").
 * auth_file: an explicit file (only that one is read), or NULL for the
 * defaults: $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json (or
 * ~/.docker/config.json), $XDG_RUNTIME_DIR/containers/auth.json, first file
 * with an answer wins. In each: credHelpers[host], then auths, then
 * credsStore. Returns 1 when found, 0 when none, -1 with *err (a malformed
 * file, a failing helper). Never puts a secret in *err. */
int ex_cred_lookup(const char *auth_file, const char *domain, struct ex_cred *out,
                   struct kn_error **err);
/* The file `kiln login` writes: auth_file, else $DOCKER_CONFIG/config.json or
 * ~/.docker/config.json. Caller frees. */
char *ex_cred_default_file(const char *auth_file);
/* Stores / removes the auths entry of domain in file (0600, atomic rename,
 * other keys preserved). remove: 1 if an entry was removed, 0 if none. */
int ex_cred_store(const char *file, const char *domain, const char *user, const char *password,
                  struct kn_error **err);
int ex_cred_erase(const char *file, const char *domain, int *removed, struct kn_error **err);
/* "docker.io" for "index.docker.io", "https://index.docker.io/v1/",
 * "registry-1.docker.io"; else the host part of a URL-ish key. Caller frees. */
char *ex_cred_normalize_host(const char *key);

/* base64 (standard alphabet, padded). decode: -1 on bad input. */
char *ex_base64_encode(const void *data, size_t n);
int ex_base64_decode(const char *s, struct kn_buf *out);

/* ---- hosts ---- */
/* The host the API lives on: "registry-1.docker.io" for "docker.io". */
const char *ex_domain_api_host(const char *domain);
/* "h" for "h:5000", "::1" for "[::1]:5000"; caller frees. */
char *ex_host_strip_port(const char *domain);
/* localhost, 127.0.0.0/8, ::1 (with or without a port). */
bool ex_host_is_loopback(const char *domain);

/* ---- platforms ---- */
/* Normalizes arch/variant the way containerd does (aarch64 -> arm64, arm64
 * "" -> v8, arm "" -> v7, x86_64 -> amd64). Caller frees both. */
void ex_platform_normalize(const char *arch, const char *variant, char **narch, char **nvariant);
/* The host's platform (linux/<uname arch>). Caller releases with ex_platform_release. */
void ex_platform_host(struct ir_platform *p);
void ex_platform_release(struct ir_platform *p);
/* "linux/arm64/v8"; caller frees. */
char *ex_platform_string(const struct ir_platform *p);
/* Picks the manifest for want from an OCI index / docker manifest list.
 * KN_E_NOTFOUND with the available platforms listed when none matches;
 * `what` names the image in errors. */
int ex_platform_select(const char *index_json, size_t len, const struct ir_platform *want,
                       const char *what, struct ex_descriptor *out, struct kn_error **err);

/* ---- manifests ---- */
/* Parses an image manifest (OCI or docker schema2) into out's config and
 * layers (out->manifest etc. untouched). */
int ex_manifest_parse(const char *json, size_t len, const char *what, struct ex_image_manifest *out,
                      struct kn_error **err);
/* Classifies a manifest: its media type from the header or the JSON. Sets
 * *is_index. KN_E_PARSE for schema 1 or anything unknown. */
int ex_manifest_kind(const char *content_type, const char *json, size_t len, const char *what,
                     char **media_type, bool *is_index, struct kn_error **err);

/* For tests: replaces every cached token with an invalid one, as if the
 * registry had revoked them. */
void ex_registry_debug_spoil_tokens(struct ex_registry *r);

/* Redacts the value of credential-bearing headers for traces: returns
 * a copy of line with "Authorization: <redacted>". Caller frees. */
char *ex_header_redact(const char *line);

#endif
