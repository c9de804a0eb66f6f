/*
 * The distribution API on top of the transport in client.c: manifests (with
 * the Accept headers for OCI and docker schema2 manifests and indexes,
 * digest verification, platform selection), blob downloads straight into the
 * store through a blob writer (in parallel for a pull, on a small pthread
 * pool; blobs the store has are skipped), blob uploads (HEAD first, then a
 * cross-repository mount when asked, else a monolithic PUT, or PATCH chunks
 * for blobs over 64 MiB, streamed from the store file), manifest PUTs, and
 * kiln login / logout.
 */
#include "exec/registry/client.h"
#include "ir/base/cleanup.h"

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#define ACCEPT_MANIFESTS                                                                           \
    "Accept: " EX_MT_OCI_MANIFEST ", " EX_MT_OCI_INDEX ", " EX_MT_DOCKER_MANIFEST                  \
    ", " EX_MT_DOCKER_LIST

static char *repo_name(const struct ex_ref *ref)
{
    return kn_asprintf("%s/%s", ref->domain, ref->path);
}

static void req_init(struct ex_req *q)
{
    memset(q, 0, sizeof(*q));
    q->body_fd = -1;
}

/* ---- manifests ---- */

/* GETs manifests/<reference> of ref's repository and verifies its digest
 * against `want` (a digest, or NULL) and Docker-Content-Digest. */
static int get_manifest_at(struct ex_registry *r, const struct ex_ref *ref, const char *reference,
                           const char *want, struct kn_buf *out, char **media_type, bool *is_index,
                           char digest[KN_DIGEST_SIZE], struct kn_error **err)
{
    char *name = ex_ref_string(ref);
    char *what = kn_asprintf("get the manifest of %s", name);
    char *path = kn_asprintf("/v2/%s/manifests/%s", ref->path, reference);
    char *scope = kn_asprintf("repository:%s:pull", ref->path);
    struct ex_req q;
    req_init(&q);
    q.method = "GET";
    q.path = path;
    q.headers[0] = ACCEPT_MANIFESTS;
    q.scope = scope;
    q.resp = out;
    q.resp_max = EX_REG_MANIFEST_MAX;
    q.what = what;
    struct ex_resp resp;
    kn_buf_reset(out);
    int rc = ex_http_do(r, ref->domain, &q, &resp, err);
    if (rc == 0) {
        if (resp.status == 404) {
            rc = kn_err_set(err, KN_E_NOTFOUND, "image '%s' not found: manifest unknown", name);
        } else if (resp.status != 200) {
            char *m = ex_resp_message(&resp);
            rc = kn_err_set(err, resp.status == 403 ? KN_E_AUTH : KN_E_NET, "cannot %s: %s", what,
                            m);
            free(m);
        }
    }
    if (rc == 0) {
        kn_sha256_digest(out->data ? out->data : "", out->len, digest);
        if (want && strcmp(want, digest) != 0) {
            rc = kn_err_set(err, KN_E_DIGEST,
                            "manifest of %s does not match its digest: expected '%s', got '%s'",
                            name, want, digest);
        } else if (resp.docker_digest && kn_str_startswith(resp.docker_digest, "sha256:") &&
                   strcmp(resp.docker_digest, digest) != 0) {
            rc = kn_err_set(err, KN_E_DIGEST,
                            "manifest of %s does not match its Docker-Content-Digest: expected "
                            "'%s', got '%s'",
                            name, resp.docker_digest, digest);
        } else {
            rc = ex_manifest_kind(resp.content_type, out->data ? out->data : "", out->len, name,
                                  media_type, is_index, err);
        }
    }
    ex_resp_release(&resp);
    free(scope);
    free(path);
    free(what);
    free(name);
    return rc;
}

int ex_registry_get_manifest(struct ex_registry *r, const struct ex_ref *ref, struct kn_buf *out,
                             char **media_type, char digest[KN_DIGEST_SIZE], struct kn_error **err)
{
    bool is_index = false;
    char *mt = NULL;
    const char *reference = ref->digest ? ref->digest : ref->tag;
    int rc = get_manifest_at(r, ref, reference, ref->digest, out, &mt, &is_index, digest, err);
    if (rc == 0 && media_type)
        *media_type = mt;
    else
        free(mt);
    return rc;
}

/* the manifest for platform, stored in s; config and layers not fetched */
static int resolve_manifest(struct ex_registry *r, const struct ex_ref *ref,
                            const struct ir_platform *platform, struct ex_store *s,
                            struct ex_image_manifest *out, struct kn_error **err)
{
    memset(out, 0, sizeof(*out));
    struct kn_buf b = KN_BUF_INIT;
    char *mt = NULL;
    bool is_index = false;
    char dg[KN_DIGEST_SIZE];
    const char *reference = ref->digest ? ref->digest : ref->tag;
    char *name = ex_ref_string(ref);
    int rc = get_manifest_at(r, ref, reference, ref->digest, &b, &mt, &is_index, dg, err);
    if (rc == 0 && s)
        rc = ex_store_blob_put(s, b.data ? b.data : "", b.len, dg, NULL, err);
    if (rc == 0 && is_index) {
        memcpy(out->index_digest, dg, KN_DIGEST_SIZE);
        struct ex_descriptor d = {0};
        rc = ex_platform_select(b.data, b.len, platform, name, &d, err);
        if (rc == 0 && d.size > EX_REG_MANIFEST_MAX)
            rc = kn_err_set(err, KN_E_UNSAFE, "manifest %s of %s is too big (%llu bytes)", d.digest,
                            name, (unsigned long long)d.size);
        free(mt);
        mt = NULL;
        if (rc == 0) {
            bool again = false;
            rc = get_manifest_at(r, ref, d.digest, d.digest, &b, &mt, &again, dg, err);
            if (rc == 0 && again)
                rc = kn_err_set(err, KN_E_PARSE,
                                "index of %s points at another index for its platform", name);
            if (rc == 0 && s)
                rc = ex_store_blob_put(s, b.data ? b.data : "", b.len, dg, NULL, err);
        }
        free(d.media_type);
    }
    if (rc == 0)
        rc = ex_manifest_parse(b.data, b.len, name, out, err);
    if (rc == 0) {
        memcpy(out->digest, dg, KN_DIGEST_SIZE);
        out->media_type = kn_steal(&mt);
        out->manifest_len = b.len;
        out->manifest = kn_buf_detach(&b);
    } else {
        ex_image_manifest_release(out);
    }
    free(mt);
    free(name);
    kn_buf_release(&b);
    return rc;
}

/* ---- blobs ---- */

static int fetch_blob(struct ex_registry *r, const struct ex_ref *ref, const char *digest,
                      uint64_t size, struct ex_store *s, atomic_bool *cancel, struct kn_error **err)
{
    if (!kn_digest_valid(digest))
        return kn_err_set(err, KN_E_PARSE, "invalid blob digest '%s'", digest);
    if (ex_store_has_blob(s, digest))
        return 0;
    struct ex_blob_writer *w = ex_blob_writer_new(s, err);
    if (!w)
        return -1;
    char *repo = repo_name(ref);
    char *what = kn_asprintf("fetch blob %s from %s", digest, repo);
    char *path = kn_asprintf("/v2/%s/blobs/%s", ref->path, digest);
    char *scope = kn_asprintf("repository:%s:pull", ref->path);
    struct ex_req q;
    req_init(&q);
    q.method = "GET";
    q.path = path;
    q.scope = scope;
    q.writer = &w;
    q.store = s;
    q.max_size = size;
    q.follow = true;
    q.cancel = cancel;
    q.what = what;
    struct ex_resp resp;
    int rc = ex_http_do(r, ref->domain, &q, &resp, err);
    if (rc == 0) {
        if (resp.status == 200 || resp.status == 206) {
            uint64_t got = 0;
            rc = ex_blob_writer_commit(w, digest, NULL, &got, err);
            w = NULL;
            if (rc < 0)
                kn_err_wrap(err, "cannot %s", what);
            else
                kn_debug("fetched %s (%llu bytes)", digest, (unsigned long long)got);
        } else if (resp.status == 404) {
            rc = kn_err_set(err, KN_E_NOTFOUND, "cannot %s: blob unknown to the registry", what);
        } else {
            char *m = ex_resp_message(&resp);
            rc = kn_err_set(err, resp.status == 403 ? KN_E_AUTH : KN_E_NET, "cannot %s: %s", what,
                            m);
            free(m);
        }
    }
    if (w)
        ex_blob_writer_abort(w);
    ex_resp_release(&resp);
    free(scope);
    free(path);
    free(what);
    free(repo);
    return rc;
}

int ex_registry_fetch_blob(struct ex_registry *r, const struct ex_ref *ref, const char *digest,
                           struct ex_store *s, struct kn_error **err)
{
    return fetch_blob(r, ref, digest, 0, s, NULL, err);
}

static int load_config(struct ex_registry *r, const struct ex_ref *ref, struct ex_store *s,
                       struct ex_image_manifest *m, struct kn_error **err)
{
    if (fetch_blob(r, ref, m->config.digest, m->config.size, s, NULL, err) < 0)
        return -1;
    struct kn_buf b = KN_BUF_INIT;
    if (ex_store_blob_read(s, m->config.digest, &b, EX_REG_CONFIG_MAX, err) < 0) {
        kn_buf_release(&b);
        return -1;
    }
    m->config_json = kn_buf_detach(&b);
    return 0;
}

int ex_registry_resolve(struct ex_registry *r, const struct ex_ref *ref,
                        const struct ir_platform *platform, struct ex_store *s,
                        struct ex_image_manifest *out, struct kn_error **err)
{
    if (resolve_manifest(r, ref, platform, s, out, err) < 0)
        return -1;
    if (load_config(r, ref, s, out, err) < 0) {
        ex_image_manifest_release(out);
        return -1;
    }
    return 0;
}

/* a parallel pull: workers take the next blob until none is left or one fails */
struct pull_job {
    struct ex_registry *r;
    const struct ex_ref *ref;
    struct ex_store *s;
    const struct ex_descriptor **blobs;
    size_t n;
    atomic_size_t next;
    atomic_bool cancel;
    pthread_mutex_t lock;
    struct kn_error *err;
};

static void *pull_worker(void *arg)
{
    struct pull_job *j = arg;
    for (;;) {
        if (atomic_load(&j->cancel))
            break;
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n)
            break;
        struct kn_error *e = NULL;
        if (fetch_blob(j->r, j->ref, j->blobs[i]->digest, j->blobs[i]->size, j->s, &j->cancel, &e) <
            0) {
            pthread_mutex_lock(&j->lock);
            /* the first real error wins over the cancellations it caused */
            if (!j->err || (j->err->code == KN_E_CANCELED && e->code != KN_E_CANCELED)) {
                kn_err_free(j->err);
                j->err = e;
                e = NULL;
            }
            pthread_mutex_unlock(&j->lock);
            kn_err_free(e);
            atomic_store(&j->cancel, true);
            break;
        }
    }
    return NULL;
}

int ex_registry_pull(struct ex_registry *r, const struct ex_ref *ref,
                     const struct ir_platform *platform, struct ex_store *s,
                     struct ex_image_manifest *out, struct kn_error **err)
{
    if (resolve_manifest(r, ref, platform, s, out, err) < 0)
        return -1;
    /* the config and every layer the store lacks, each digest once */
    const struct ex_descriptor **blobs = kn_calloc(out->nlayers + 1, sizeof(*blobs));
    size_t n = 0;
    for (size_t i = 0; i <= out->nlayers; i++) {
        const struct ex_descriptor *d = i == 0 ? &out->config : &out->layers[i - 1];
        bool dup = false;
        for (size_t k = 0; k < n && !dup; k++)
            dup = strcmp(blobs[k]->digest, d->digest) == 0;
        if (!dup && !ex_store_has_blob(s, d->digest))
            blobs[n++] = d;
    }
    struct pull_job j = {.r = r, .ref = ref, .s = s, .blobs = blobs, .n = n};
    atomic_init(&j.next, 0);
    atomic_init(&j.cancel, false);
    pthread_mutex_init(&j.lock, NULL);
    size_t nthreads = (size_t)ex_registry_max_parallel(r);
    if (nthreads > n)
        nthreads = n;
    if (nthreads <= 1) {
        pull_worker(&j);
    } else {
        pthread_t *th = kn_calloc(nthreads, sizeof(*th));
        size_t started = 0;
        for (; started < nthreads; started++)
            if (pthread_create(&th[started], NULL, pull_worker, &j) != 0)
                break;
        if (started == 0)
            pull_worker(&j);
        for (size_t i = 0; i < started; i++)
            pthread_join(th[i], NULL);
        free(th);
    }
    pthread_mutex_destroy(&j.lock);
    free(blobs);
    int rc = 0;
    if (j.err) {
        kn_err_propagate(err, &j.err);
        rc = -1;
    } else {
        struct kn_buf b = KN_BUF_INIT;
        rc = ex_store_blob_read(s, out->config.digest, &b, EX_REG_CONFIG_MAX, err);
        if (rc == 0)
            out->config_json = kn_buf_detach(&b);
        kn_buf_release(&b);
    }
    if (rc < 0)
        ex_image_manifest_release(out);
    return rc;
}

/* ---- push ---- */

static char *upload_url(const char *location, const char *digest)
{
    return kn_asprintf("%s%cdigest=sha256%%3A%s", location, strchr(location, '?') ? '&' : '?',
                       kn_digest_hex(digest));
}

/* 1: the registry has it; 0: it does not; -1 error */
static int blob_exists(struct ex_registry *r, const struct ex_ref *ref, const char *digest,
                       const char *scope, const char *what, struct kn_error **err)
{
    char *path = kn_asprintf("/v2/%s/blobs/%s", ref->path, digest);
    struct ex_req q;
    req_init(&q);
    q.method = "HEAD";
    q.path = path;
    q.scope = scope;
    q.what = what;
    struct ex_resp resp;
    int rc = ex_http_do(r, ref->domain, &q, &resp, err);
    free(path);
    if (rc < 0)
        return -1;
    rc = resp.status == 200 ? 1 : 0;
    if (resp.status != 200 && resp.status != 404) {
        rc = kn_err_set(err, resp.status == 403 ? KN_E_AUTH : KN_E_NET,
                        "cannot %s: HTTP status %ld on HEAD", what, resp.status);
    }
    ex_resp_release(&resp);
    return rc;
}

/* POST an upload (or a mount); *location gets the session URL, *done 1 when mounted */
static int start_upload(struct ex_registry *r, const struct ex_ref *ref, const char *digest,
                        const char *mount_from, const char *scope, const char *what,
                        char **location, bool *done, struct kn_error **err)
{
    *location = NULL;
    *done = false;
    char *path;
    if (mount_from)
        path = kn_asprintf("/v2/%s/blobs/uploads/?mount=%s&from=%s", ref->path, digest, mount_from);
    else
        path = kn_asprintf("/v2/%s/blobs/uploads/", ref->path);
    struct ex_req q;
    req_init(&q);
    q.method = "POST";
    q.path = path;
    q.scope = scope;
    q.has_body = true;
    q.what = what;
    struct ex_resp resp;
    int rc = ex_http_do(r, ref->domain, &q, &resp, err);
    free(path);
    if (rc < 0)
        return -1;
    if (resp.status == 201 && mount_from) {
        kn_debug("mounted %s from %s", digest, mount_from);
        *done = true;
    } else if (resp.status == 202 && resp.location) {
        *location = kn_steal(&resp.location);
    } else {
        char *m = ex_resp_message(&resp);
        rc = kn_err_set(err, resp.status == 403 ? KN_E_AUTH : KN_E_NET,
                        "cannot %s: upload not started: %s", what, m);
        free(m);
    }
    ex_resp_release(&resp);
    return rc;
}

static int send_part(struct ex_registry *r, const struct ex_ref *ref, const char *method,
                     const char *url, int fd, uint64_t off, uint64_t len, const char *scope,
                     const char *what, long want, char **next_location, struct kn_error **err)
{
    char *crange = NULL;
    struct ex_req q;
    req_init(&q);
    q.method = method;
    q.url = url;
    q.scope = scope;
    q.has_body = true;
    q.what = what;
    q.headers[0] = "Content-Type: application/octet-stream";
    if (fd >= 0 && len > 0) {
        q.body_fd = fd;
        q.body_off = off;
        q.body_fd_len = len;
        if (strcmp(method, "PATCH") == 0) {
            crange = kn_asprintf("Content-Range: %llu-%llu", (unsigned long long)off,
                                 (unsigned long long)(off + len - 1));
            q.headers[1] = crange;
        }
    }
    struct ex_resp resp;
    int rc = ex_http_do(r, ref->domain, &q, &resp, err);
    free(crange);
    if (rc < 0)
        return -1;
    if (resp.status != want) {
        char *m = ex_resp_message(&resp);
        rc = kn_err_set(err, resp.status == 403 ? KN_E_AUTH : KN_E_NET, "cannot %s: %s %s", what,
                        method, m);
        free(m);
    } else if (next_location) {
        *next_location = resp.location ? kn_steal(&resp.location) : NULL;
        if (!*next_location)
            rc = kn_err_set(err, KN_E_NET, "cannot %s: the registry sent no upload location", what);
    }
    ex_resp_release(&resp);
    return rc;
}

static int upload_blob(struct ex_registry *r, const struct ex_ref *ref, const char *digest, int fd,
                       uint64_t size, char *location, const char *scope, const char *what,
                       struct kn_error **err)
{
    int rc = 0;
    if (size <= EX_REG_CHUNK_THRESHOLD) {
        char *u = upload_url(location, digest);
        rc = send_part(r, ref, "PUT", u, fd, 0, size, scope, what, 201, NULL, err);
        free(u);
        free(location);
        return rc;
    }
    uint64_t off = 0;
    while (rc == 0 && off < size) {
        uint64_t n = size - off < EX_REG_CHUNK_SIZE ? size - off : EX_REG_CHUNK_SIZE;
        char *next = NULL;
        rc = send_part(r, ref, "PATCH", location, fd, off, n, scope, what, 202, &next, err);
        if (rc == 0) {
            free(location);
            location = next;
            off += n;
        }
    }
    if (rc == 0) {
        char *u = upload_url(location, digest);
        rc = send_part(r, ref, "PUT", u, -1, 0, 0, scope, what, 201, NULL, err);
        free(u);
    }
    free(location);
    return rc;
}

/* uploads a blob the registry lacks, starting a broken upload session over once */
static int push_missing_blob(struct ex_registry *r, const struct ex_ref *ref, const char *digest,
                             struct ex_store *s, const char *mount_from, const char *scope,
                             const char *what, struct kn_error **err)
{
    int64_t size = ex_store_blob_size(s, digest, err);
    int fd = size < 0 ? -1 : ex_store_blob_open(s, digest, err);
    if (fd < 0)
        return kn_err_wrap(err, "cannot %s", what);
    int rc = -1;
    for (int round = 0; round < 2; round++) {
        char *location = NULL;
        bool done = false;
        struct kn_error *e = NULL;
        rc = start_upload(r, ref, digest, mount_from, scope, what, &location, &done, &e);
        if (rc == 0 && !done)
            rc = upload_blob(r, ref, digest, fd, (uint64_t)size, location, scope, what, &e);
        if (rc == 0 || round == 1 || e->code != KN_E_NET) {
            kn_err_propagate(err, &e);
            break;
        }
        kn_debug("%s: %s; starting the upload over", what, e->msg);
        kn_err_free(e);
    }
    close(fd);
    return rc;
}

int ex_registry_push_blob(struct ex_registry *r, const struct ex_ref *ref, const char *digest,
                          struct ex_store *s, const char *mount_from, struct kn_error **err)
{
    if (!kn_digest_valid(digest))
        return kn_err_set(err, KN_E_PARSE, "invalid blob digest '%s'", digest);
    if (mount_from && strcmp(mount_from, ref->path) == 0)
        mount_from = NULL;
    char *repo = repo_name(ref);
    char *what = kn_asprintf("push blob %s to %s", digest, repo);
    char *scope = mount_from ? kn_asprintf("repository:%s:pull,push repository:%s:pull", ref->path,
                                           mount_from)
                             : kn_asprintf("repository:%s:pull,push", ref->path);
    int rc = blob_exists(r, ref, digest, scope, what, err);
    if (rc == 1) {
        kn_debug("%s: already there", what);
        rc = 0;
    } else if (rc == 0) {
        rc = push_missing_blob(r, ref, digest, s, mount_from, scope, what, err);
    }
    free(scope);
    free(what);
    free(repo);
    return rc;
}

int ex_registry_push_manifest(struct ex_registry *r, const struct ex_ref *ref,
                              const char *media_type, const char *data, size_t len,
                              char out[KN_DIGEST_SIZE], struct kn_error **err)
{
    if (len > EX_REG_MANIFEST_MAX)
        return kn_err_set(err, KN_E_UNSAFE, "manifest for %s/%s is too big (%zu bytes)",
                          ref->domain, ref->path, len);
    char dg[KN_DIGEST_SIZE];
    kn_sha256_digest(data, len, dg);
    if (ref->digest && strcmp(ref->digest, dg) != 0)
        return kn_err_set(err, KN_E_DIGEST,
                          "cannot push the manifest to %s/%s@%s: its digest is %s", ref->domain,
                          ref->path, ref->digest, dg);
    char *name = ex_ref_string(ref);
    char *what = kn_asprintf("push the manifest %s", name);
    char *path = kn_asprintf("/v2/%s/manifests/%s", ref->path, ref->tag ? ref->tag : ref->digest);
    char *scope = kn_asprintf("repository:%s:pull,push", ref->path);
    char *ct = kn_asprintf("Content-Type: %s", media_type);
    struct ex_req q;
    req_init(&q);
    q.method = "PUT";
    q.path = path;
    q.scope = scope;
    q.has_body = true;
    q.body = data;
    q.body_len = len;
    q.headers[0] = ct;
    q.what = what;
    struct ex_resp resp;
    int rc = ex_http_do(r, ref->domain, &q, &resp, err);
    if (rc == 0) {
        if (resp.status != 201 && resp.status != 200) {
            char *m = ex_resp_message(&resp);
            rc = kn_err_set(err, resp.status == 403 ? KN_E_AUTH : KN_E_NET, "cannot %s: %s", what,
                            m);
            free(m);
        } else if (resp.docker_digest && kn_str_startswith(resp.docker_digest, "sha256:") &&
                   strcmp(resp.docker_digest, dg) != 0) {
            rc = kn_err_set(err, KN_E_DIGEST,
                            "cannot %s: the registry computed digest '%s', expected '%s'", what,
                            resp.docker_digest, dg);
        } else if (out) {
            memcpy(out, dg, KN_DIGEST_SIZE);
        }
    }
    ex_resp_release(&resp);
    free(ct);
    free(scope);
    free(path);
    free(what);
    free(name);
    return rc;
}

/* ---- login / logout ---- */

int ex_registry_login(struct ex_registry *r, const char *host, const char *user,
                      const char *password, struct kn_error **err)
{
    if (!user || !*user)
        return kn_err_set(err, KN_E_USAGE, "login to '%s' needs a username", host);
    if (!password || !*password)
        return kn_err_set(err, KN_E_USAGE, "login to '%s' needs a password", host);
    char *domain = ex_cred_normalize_host(host);
    if (!*domain) {
        free(domain);
        return kn_err_set(err, KN_E_USAGE, "invalid registry '%s'", host);
    }
    ex_registry_set_creds(r, domain, user, password);
    char *what = kn_asprintf("log in to %s", domain);
    struct ex_req q;
    req_init(&q);
    q.method = "GET";
    q.path = "/v2/";
    q.what = what;
    struct ex_resp resp;
    int rc = ex_http_do(r, domain, &q, &resp, err);
    if (rc == 0 && resp.status != 200) {
        char *m = ex_resp_message(&resp);
        rc = kn_err_set(err, resp.status == 403 ? KN_E_AUTH : KN_E_NET, "cannot %s: %s", what, m);
        free(m);
    }
    if (rc == 0) {
        char *file = ex_cred_default_file(ex_registry_auth_file(r));
        rc = ex_cred_store(file, domain, user, password, err);
        free(file);
    }
    ex_resp_release(&resp);
    free(what);
    free(domain);
    return rc;
}

int ex_registry_logout(const struct ex_registry_opts *opts, const char *host, struct kn_error **err)
{
    char *domain = ex_cred_normalize_host(host);
    char *file = ex_cred_default_file(opts ? opts->auth_file : NULL);
    int removed = 0;
    int rc = ex_cred_erase(file, domain, &removed, err);
    if (rc == 0 && !removed)
        rc = kn_err_set(err, KN_E_NOTFOUND, "not logged in to %s", domain);
    free(file);
    free(domain);
    return rc;
}
