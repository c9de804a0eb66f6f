/*
 * exec/registry transport: one HTTP request to a registry with everything
 * around it (scheme choice, TLS, auth, retries with backoff, resume,
 * redirects). Private to exec/registry; ops.c builds the distribution API on
 * top of it.
 */
#ifndef KILN_EXEC_REGISTRY_CLIENT_H
#define KILN_EXEC_REGISTRY_CLIENT_H

#include "exec/registry/internal.h"

#include <stdatomic.h>

struct ex_req {
    const char *method;     /* "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE" */
    const char *path;       /* "/v2/NAME/..." on the registry, or NULL when url is set */
    const char *url;        /* absolute URL (an upload Location) */
    const char *headers[6]; /* extra request headers ("Accept: ..."), NULL-terminated */
    const char *scope;      /* token scope(s), space-separated ("repository:x:pull"); NULL none */
    /* request body: memory, or a byte range of a file (read with pread, so replayable) */
    const void *body;
    size_t body_len;
    int body_fd; /* -1 when unused */
    uint64_t body_off, body_fd_len;
    bool has_body; /* send a (possibly empty) body with PUT/POST/PATCH */
    /* response body: into resp (at most resp_max), or into *writer (resumed with Range) */
    struct kn_buf *resp;
    size_t resp_max;
    struct ex_blob_writer **writer;
    struct ex_store *store; /* for a new writer when a resume is refused */
    uint64_t max_size;      /* refuse bodies larger than this (0: no limit) */
    bool follow;            /* follow redirects; Authorization never goes to another host */
    bool no_retry;          /* one attempt */
    atomic_bool *cancel;    /* stops the transfer when set */
    const char *what;       /* "fetch blob sha256:... from HOST/NAME" for errors */
};

struct ex_resp {
    long status;
    char *location; /* absolute */
    char *content_type;
    char *docker_digest;   /* Docker-Content-Digest */
    char *range;           /* Range (upload progress) */
    struct kn_buf errbody; /* the body of a non-2xx answer (capped) */
};
void ex_resp_release(struct ex_resp *r);

/* Performs q against domain's registry. Returns 0 with resp filled for any
 * HTTP answer the caller must judge (2xx, 3xx not followed, 4xx except 401);
 * -1 when the retries ran out (connection errors, 429, 5xx), on a refused
 * authentication (KN_E_AUTH), a cancel, or a body sink error. */
int ex_http_do(struct ex_registry *r, const char *domain, struct ex_req *q, struct ex_resp *resp,
               struct kn_error **err);
/* The registry's error message from an error body ("UNKNOWN: ..."), or the
 * HTTP status; caller frees. */
char *ex_resp_message(const struct ex_resp *resp);

/* Overrides the credentials of domain (kiln login verifies these). */
void ex_registry_set_creds(struct ex_registry *r, const char *domain, const char *user,
                           const char *password);
int ex_registry_max_parallel(const struct ex_registry *r);
const char *ex_registry_auth_file(const struct ex_registry *r);
/* Resolves loc (absolute or relative) against base. Caller frees; NULL if invalid. */
char *ex_url_resolve(const char *base, const char *loc);
/* base URL "https://host" for domain (after scheme probing); caller frees */
char *ex_registry_base_url(struct ex_registry *r, const char *domain);

#endif
