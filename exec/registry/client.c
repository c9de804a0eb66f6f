/*
 * The registry client's transport: libcurl easy handles kept in a per-client
 * pool (curl_easy_reset keeps a handle's live connections, so requests reuse
 * them), the scheme of each host (https; plain http first for loopback
 * hosts, switching to https when the server says it speaks TLS; https then
 * http for hosts marked insecure, whose certificates are not verified), the
 * auth state of each host (none, basic, or bearer with a realm and a cache of
 * scoped tokens), and the retry loop.
 *
 * Auth flow: a request goes out with what the host is known to need. A 401
 * carries a WWW-Authenticate challenge: Basic -> resend with the user's
 * credentials; Bearer -> get a token for the request's scope from the realm
 * (GET with Basic credentials or anonymously, or the OAuth2 refresh-token
 * grant POST when the credentials are an identity token), cache it until it
 * expires, resend. A 401 on a cached token drops it and gets a fresh one,
 * once. Credentials and tokens go only into Authorization headers (never a
 * URL, an error or a log line); the trace redacts them.
 *
 * Retries: connection errors, 429 and 5xx are retried with exponential
 * backoff (250 ms doubling, capped at 8 s, with jitter; Retry-After
 * honoured up to 30 s) until opts->retries attempts are used. A blob GET
 * that drops mid-body resumes with Range from what the blob writer holds.
 */
#include "exec/registry/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_BASE_MS   250
#define BACKOFF_MAX_MS    8000
#define RETRY_AFTER_MAX_S 30
#define MAX_REDIRECTS     10
#define TOKEN_DEFAULT_TTL 60
#define TOKEN_MARGIN      10

enum { SCHEME_HTTPS = 1, SCHEME_HTTP = 2 };
enum { SENT_NONE, SENT_BASIC, SENT_BEARER_CACHED, SENT_BEARER_FRESH };

struct host {
    char *domain;
    int scheme;
    bool insecure; /* listed: TLS not verified, http fallback */
    bool loopback;
    bool fell_back;
    /* auth */
    bool basic;
    char *realm;
    char *service;
    bool creds_loaded;
    int have_creds;
    struct ex_cred cred;
};

struct token {
    char *domain;
    char *scope;
    char *token;
    time_t expires;
};

struct ex_registry {
    struct kn_strv insecure;
    char *ca_blob;
    size_t ca_len;
    char *auth_file;
    int retries;
    int max_parallel;
    char *user_agent;
    pthread_mutex_t lock; /* guards everything below */
    KN_VEC(CURL *) handles;
    KN_VEC(struct host *) hosts;
    KN_VEC(struct token) tokens;
};

/* ---- small helpers ---- */

static bool is_insecure(const struct ex_registry *r, const char *domain)
{
    char *h = ex_host_strip_port(domain);
    bool res = false;
    for (size_t i = 0; i < r->insecure.n && !res; i++)
        res = strcasecmp(r->insecure.v[i], domain) == 0 || strcasecmp(r->insecure.v[i], h) == 0;
    free(h);
    return res;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms, waking early when *cancel is set. */
static void sleep_ms(long ms, atomic_bool *cancel)
{
    long end = now_ms() + ms;
    for (;;) {
        if (cancel && atomic_load(cancel))
            return;
        long left = end - now_ms();
        if (left <= 0)
            return;
        if (left > 50)
            left = 50;
        struct timespec ts = {0, left * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static long backoff_ms(int attempt, long retry_after_s)
{
    long base = BACKOFF_BASE_MS;
    for (int i = 1; i < attempt && base < BACKOFF_MAX_MS; i++)
        base *= 2;
    if (base > BACKOFF_MAX_MS)
        base = BACKOFF_MAX_MS;
    /* jitter: somewhere in [base/2, base] */
    static _Thread_local unsigned seed;
    if (!seed)
        seed = (unsigned)now_ms() ^ (unsigned)(uintptr_t)&seed;
    long ms = base / 2 + (long)(rand_r(&seed) % (unsigned)(base / 2 + 1));
    if (retry_after_s > 0) {
        if (retry_after_s > RETRY_AFTER_MAX_S)
            retry_after_s = RETRY_AFTER_MAX_S;
        if (retry_after_s * 1000 > ms)
            ms = retry_after_s * 1000;
    }
    return ms;
}

char *ex_url_resolve(const char *base, const char *loc)
{
    CURLU *u = curl_url();
    char *out = NULL, *res = NULL;
    if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_URL, loc, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_URL, &out, 0) == CURLUE_OK) {
        res = kn_strdup(out);
        curl_free(out);
    }
    curl_url_cleanup(u);
    return res;
}

/* "host:port" of a URL (port explicit or default), or NULL */
static char *url_authority(const char *url)
{
    CURLU *u = curl_url();
    char *h = NULL, *p = NULL, *res = NULL;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &p, CURLU_DEFAULT_PORT) == CURLUE_OK)
        res = kn_asprintf("%s:%s", h, p);
    curl_free(h);
    curl_free(p);
    curl_url_cleanup(u);
    return res;
}

/* A URL for traces: query values redacted except a few harmless ones
 * (presigned redirect URLs carry signatures in their query). */
static char *url_for_log(const char *url)
{
    const char *q = strchr(url, '?');
    if (!q)
        return kn_strdup(url);
    static const char *keep[] = {"digest", "mount", "from", "service", "scope", "n", "last"};
    struct kn_buf b = KN_BUF_INIT;
    kn_buf_add(&b, url, (size_t)(q - url) + 1);
    const char *p = q + 1;
    while (*p) {
        size_t n = strcspn(p, "&");
        size_t kn = strcspn(p, "=&");
        bool ok = false;
        for (size_t i = 0; i < KN_ARRAY_SIZE(keep); i++)
            ok = ok || (strlen(keep[i]) == kn && strncmp(p, keep[i], kn) == 0);
        if (ok || kn == n)
            kn_buf_add(&b, p, n);
        else
            kn_buf_addf(&b, "%.*s=<redacted>", (int)kn, p);
        p += n;
        if (*p == '&') {
            kn_buf_addc(&b, '&');
            p++;
        }
    }
    return kn_buf_detach(&b);
}

/* ---- client ---- */

static int load_ca(struct ex_registry *r, const char *file, struct kn_error **err)
{
    struct kn_buf b = KN_BUF_INIT;
    /* the default bundle first, so the file adds to it rather than replacing it */
    CURL *h = curl_easy_init();
    char *def = NULL;
    if (h && curl_easy_getinfo(h, CURLINFO_CAINFO, &def) == CURLE_OK && def &&
        access(def, R_OK) == 0) {
        struct kn_error *ignored = NULL;
        if (kn_buf_read_file(&b, def, 64u << 20, &ignored) < 0)
            kn_buf_reset(&b);
        kn_err_free(ignored);
        kn_buf_addc(&b, '\n');
    }
    if (h)
        curl_easy_cleanup(h);
    struct kn_buf extra = KN_BUF_INIT;
    if (kn_buf_read_file(&extra, file, 64u << 20, err) < 0) {
        kn_buf_release(&b);
        kn_buf_release(&extra);
        return kn_err_wrap(err, "cannot load CA bundle");
    }
    kn_buf_add(&b, extra.data ? extra.data : "", extra.len);
    kn_buf_release(&extra);
    r->ca_len = b.len;
    r->ca_blob = kn_buf_detach(&b);
    return 0;
}

struct ex_registry *ex_registry_new(const struct ex_registry_opts *opts, struct kn_error **err)
{
    struct ex_registry *r = kn_calloc(1, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    r->retries = 5;
    r->max_parallel = 4;
    const char *ca = NULL;
    if (opts) {
        for (size_t i = 0; i < opts->ninsecure; i++)
            kn_strv_push(&r->insecure, opts->insecure[i]);
        if (opts->retries > 0)
            r->retries = opts->retries;
        if (opts->max_parallel > 0)
            r->max_parallel = opts->max_parallel;
        if (opts->auth_file)
            r->auth_file = kn_strdup(opts->auth_file);
        if (opts->user_agent)
            r->user_agent = kn_strdup(opts->user_agent);
        ca = opts->ca_file;
    }
    if (r->max_parallel > 64)
        r->max_parallel = 64;
    if (!r->user_agent)
        r->user_agent = kn_strdup("kiln");
    if (!ca || !*ca)
        ca = getenv("SSL_CERT_FILE");
    if (ca && *ca && load_ca(r, ca, err) < 0) {
        ex_registry_free(r);
        return NULL;
    }
    return r;
}

static void host_free(struct host *h)
{
    free(h->domain);
    free(h->realm);
    free(h->service);
    ex_cred_release(&h->cred);
    free(h);
}

static void token_release(struct token *t)
{
    free(t->domain);
    free(t->scope);
    if (t->token)
        memset(t->token, 0, strlen(t->token));
    free(t->token);
}

void ex_registry_free(struct ex_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->handles.n; i++)
        curl_easy_cleanup(r->handles.v[i]);
    free(r->handles.v);
    for (size_t i = 0; i < r->hosts.n; i++)
        host_free(r->hosts.v[i]);
    free(r->hosts.v);
    for (size_t i = 0; i < r->tokens.n; i++)
        token_release(&r->tokens.v[i]);
    free(r->tokens.v);
    kn_strv_release(&r->insecure);
    free(r->ca_blob);
    free(r->auth_file);
    free(r->user_agent);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

int ex_registry_max_parallel(const struct ex_registry *r)
{
    return r->max_parallel;
}

const char *ex_registry_auth_file(const struct ex_registry *r)
{
    return r->auth_file;
}

/* the host record (created on first use); call with the lock held */
static struct host *host_get_locked(struct ex_registry *r, const char *domain)
{
    for (size_t i = 0; i < r->hosts.n; i++)
        if (strcmp(r->hosts.v[i]->domain, domain) == 0)
            return r->hosts.v[i];
    struct host *h = kn_calloc(1, sizeof(*h));
    h->domain = kn_strdup(domain);
    h->insecure = is_insecure(r, domain);
    h->loopback = ex_host_is_loopback(domain);
    h->scheme = h->loopback ? SCHEME_HTTP : SCHEME_HTTPS;
    kn_vec_push(&r->hosts, h);
    return h;
}

void ex_registry_set_creds(struct ex_registry *r, const char *domain, const char *user,
                           const char *password)
{
    pthread_mutex_lock(&r->lock);
    struct host *h = host_get_locked(r, domain);
    ex_cred_release(&h->cred);
    h->cred.user = kn_strdup(user);
    h->cred.password = kn_strdup(password);
    h->creds_loaded = true;
    h->have_creds = 1;
    /* tokens fetched with other credentials must not be reused */
    for (size_t i = 0; i < r->tokens.n; i++) {
        if (strcmp(r->tokens.v[i].domain, domain) == 0) {
            token_release(&r->tokens.v[i]);
            r->tokens.v[i] = r->tokens.v[--r->tokens.n];
            i--;
        }
    }
    pthread_mutex_unlock(&r->lock);
}

char *ex_registry_base_url(struct ex_registry *r, const char *domain)
{
    pthread_mutex_lock(&r->lock);
    struct host *h = host_get_locked(r, domain);
    char *u = kn_asprintf("%s://%s", h->scheme == SCHEME_HTTP ? "http" : "https",
                          ex_domain_api_host(domain));
    pthread_mutex_unlock(&r->lock);
    return u;
}

static CURL *handle_get(struct ex_registry *r)
{
    CURL *h = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->handles.n)
        h = r->handles.v[--r->handles.n];
    pthread_mutex_unlock(&r->lock);
    if (!h)
        h = curl_easy_init();
    if (!h)
        kn_die("cannot create a curl handle");
    return h;
}

static void handle_put(struct ex_registry *r, CURL *h)
{
    pthread_mutex_lock(&r->lock);
    kn_vec_push(&r->handles, h);
    pthread_mutex_unlock(&r->lock);
}

/* ---- one HTTP exchange ---- */

struct xfer {
    struct ex_req *q; /* NULL for token requests */
    long status;
    struct kn_strv www; /* WWW-Authenticate values */
    char *location;
    char *content_type;
    char *docker_digest;
    char *range;
    char *content_range;
    char *retry_after;
    struct kn_buf *body; /* 2xx body sink (resp or token) */
    size_t body_max;
    struct kn_buf errbody;
    char errbuf[CURL_ERROR_SIZE];
    bool started;
    struct kn_error *werr;
    /* upload */
    const char *mem;
    size_t mem_len;
    int fd;
    uint64_t off, len, pos;
};

static void xfer_reset_headers(struct xfer *x)
{
    kn_strv_release(&x->www);
    free(x->location);
    free(x->content_type);
    free(x->docker_digest);
    free(x->range);
    free(x->content_range);
    free(x->retry_after);
    x->location = x->content_type = x->docker_digest = x->range = x->content_range =
        x->retry_after = NULL;
}

static void xfer_release(struct xfer *x)
{
    xfer_reset_headers(x);
    kn_buf_release(&x->errbody);
    kn_err_free(x->werr);
    x->werr = NULL;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    size_t len = size * n;
    char *line = kn_strndup(data, len);
    size_t l = strlen(line);
    while (l && (line[l - 1] == '\r' || line[l - 1] == '\n'))
        line[--l] = '\0';
    if (strncmp(line, "HTTP/", 5) == 0) {
        const char *sp = strchr(line, ' ');
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        xfer_reset_headers(x);
        kn_log(KN_LOG_TRACE, "< %s", line);
        free(line);
        return len;
    }
    if (l) {
        if (kn_log_level >= KN_LOG_TRACE) {
            char *red;
            if (strncasecmp(line, "location:", 9) == 0) {
                /* a presigned redirect carries its signature in the query */
                char *u = url_for_log(line + 9 + strspn(line + 9, " \t"));
                red = kn_asprintf("%.9s %s", line, u);
                free(u);
            } else {
                red = ex_header_redact(line);
            }
            kn_log(KN_LOG_TRACE, "< %s", red);
            free(red);
        }
        char *colon = strchr(line, ':');
        if (colon) {
            *colon = '\0';
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            char **slot = NULL;
            if (strcasecmp(line, "www-authenticate") == 0)
                kn_strv_push(&x->www, v);
            else if (strcasecmp(line, "location") == 0)
                slot = &x->location;
            else if (strcasecmp(line, "content-type") == 0)
                slot = &x->content_type;
            else if (strcasecmp(line, "docker-content-digest") == 0)
                slot = &x->docker_digest;
            else if (strcasecmp(line, "range") == 0)
                slot = &x->range;
            else if (strcasecmp(line, "content-range") == 0)
                slot = &x->content_range;
            else if (strcasecmp(line, "retry-after") == 0)
                slot = &x->retry_after;
            if (slot) {
                free(*slot);
                *slot = kn_strdup(v);
            }
        }
    }
    free(line);
    return len;
}

/* start offset of "bytes START-END/TOTAL", or -1 */
static int64_t content_range_start(const char *cr)
{
    if (!cr || strncmp(cr, "bytes ", 6) != 0)
        return -1;
    char *end;
    long long v = strtoll(cr + 6, &end, 10);
    return end == cr + 6 || *end != '-' ? -1 : (int64_t)v;
}

static size_t on_write(char *data, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    size_t len = size * n;
    bool ok2xx = x->status >= 200 && x->status < 300;
    if (!ok2xx) {
        if (x->errbody.len + len <= EX_REG_ERRBODY_MAX)
            kn_buf_add(&x->errbody, data, len);
        return len;
    }
    struct ex_req *q = x->q;
    if (q && q->writer) {
        if (!x->started) {
            x->started = true;
            uint64_t have = ex_blob_writer_size(*q->writer);
            if (have > 0) {
                int64_t start = x->status == 206 ? content_range_start(x->content_range) : 0;
                if (start != (int64_t)have) {
                    /* the server ignored or misread the Range: start over */
                    kn_debug("%s: range not honoured, restarting the download", q->what);
                    ex_blob_writer_abort(*q->writer);
                    *q->writer = ex_blob_writer_new(q->store, &x->werr);
                    if (!*q->writer)
                        return 0;
                }
            } else if (x->status == 206 && content_range_start(x->content_range) != 0) {
                x->werr = kn_err_new(KN_E_NET, "unexpected partial content for %s", q->what);
                return 0;
            }
        }
        if (q->max_size && ex_blob_writer_size(*q->writer) + len > q->max_size) {
            x->werr = kn_err_new(KN_E_UNSAFE, "cannot %s: more bytes than its size (%llu)", q->what,
                                 (unsigned long long)q->max_size);
            return 0;
        }
        if (ex_blob_writer_write(*q->writer, data, len, &x->werr) < 0)
            return 0;
        return len;
    }
    if (x->body) {
        if (x->body->len + len > x->body_max) {
            x->werr = kn_err_new(KN_E_UNSAFE, "cannot %s: response is larger than %zu bytes",
                                 q ? q->what : "get a token", x->body_max);
            return 0;
        }
        kn_buf_add(x->body, data, len);
    }
    return len;
}

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
    struct xfer *x = ud;
    size_t want = size * n;
    uint64_t left = x->len - x->pos;
    if (want > left)
        want = (size_t)left;
    if (want == 0)
        return 0;
    if (x->mem) {
        memcpy(buf, x->mem + x->pos, want);
        x->pos += want;
        return want;
    }
    ssize_t r;
    do
        r = pread(x->fd, buf, want, (off_t)(x->off + x->pos));
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        if (!x->werr)
            x->werr = kn_err_new(KN_E_IO, "cannot read the blob to upload: %s",
                                 r < 0 ? strerror(errno) : "unexpected end of file");
        return CURL_READFUNC_ABORT;
    }
    x->pos += (uint64_t)r;
    return (size_t)r;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    struct xfer *x = ud;
    return x->q && x->q->cancel && atomic_load(x->q->cancel) ? 1 : 0;
}

/* Runs one exchange on h; returns the curl code. */
static CURLcode perform(struct ex_registry *r, CURL *h, const char *method, const char *url,
                        struct curl_slist *hdrs, bool verify, struct xfer *x)
{
    curl_easy_reset(h);
    x->status = 0;
    x->started = false;
    x->pos = 0;
    xfer_reset_headers(x);
    kn_buf_reset(&x->errbody);
    x->errbuf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, r->user_agent);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 1024L * 1024);
    if (!verify) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (r->ca_blob) {
        struct curl_blob blob = {r->ca_blob, r->ca_len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
    }
    bool body = x->mem || x->fd >= 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                strcmp(method, "PATCH") == 0;
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->len);
    } else if (body) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->len);
        if (strcmp(method, "PUT") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (body) {
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, x);
    }
    if (kn_log_level >= KN_LOG_TRACE) {
        char *lu = url_for_log(url);
        kn_log(KN_LOG_TRACE, "> %s %s", method, lu);
        free(lu);
        for (struct curl_slist *s = hdrs; s; s = s->next) {
            if (kn_str_endswith(s->data, ":"))
                continue; /* "Expect:" removes a header, it sends nothing */
            char *red = ex_header_redact(s->data);
            kn_log(KN_LOG_TRACE, "> %s", red);
            free(red);
        }
    }
    return curl_easy_perform(h);
}

/* curl's detailed message when it has one ("SSL certificate problem: ...") */
static const char *curl_msg(const struct xfer *x, CURLcode cc)
{
    return x->errbuf[0] ? x->errbuf : curl_easy_strerror(cc);
}

static bool retryable_curl(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_READ_ERROR:
        return true;
    default:
        return false;
    }
}

static bool retryable_status(long st)
{
    return st == 429 || st == 500 || st == 502 || st == 503 || st == 504;
}

static long parse_retry_after(const char *v)
{
    if (!v || !*v)
        return 0;
    char *end;
    long s = strtol(v, &end, 10);
    if (end != v && *end == '\0')
        return s > 0 ? s : 0;
    time_t t = curl_getdate(v, NULL);
    if (t < 0)
        return 0;
    long d = (long)(t - time(NULL));
    return d > 0 ? d : 0;
}

/* the message of a registry error body: errors[0].code + message */
static char *body_message(const struct kn_buf *b, long status)
{
    char *res = NULL;
    if (b->len) {
        json_error_t je;
        json_t *j = json_loadb(b->data, b->len, 0, &je);
        json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
        const char *code = json_string_value(json_object_get(e0, "code"));
        const char *msg = json_string_value(json_object_get(e0, "message"));
        if (!msg)
            msg = json_string_value(json_object_get(j, "details"));
        if (code || msg)
            res = kn_asprintf("%s%s%s", code ? code : "", code && msg ? ": " : "", msg ? msg : "");
        json_decref(j);
        if (res && strlen(res) > 300)
            res[300] = '\0';
    }
    if (!res)
        res = kn_asprintf("HTTP status %ld", status);
    return res;
}

char *ex_resp_message(const struct ex_resp *resp)
{
    return body_message(&resp->errbody, resp->status);
}

void ex_resp_release(struct ex_resp *r)
{
    free(r->location);
    free(r->content_type);
    free(r->docker_digest);
    free(r->range);
    kn_buf_release(&r->errbody);
    memset(r, 0, sizeof(*r));
}

/* ---- auth ---- */

/* loads h's credentials once (the lock is not held: helpers may take a while) */
static int ensure_creds(struct ex_registry *r, struct host *h, struct kn_error **err)
{
    pthread_mutex_lock(&r->lock);
    bool loaded = h->creds_loaded;
    pthread_mutex_unlock(&r->lock);
    if (loaded)
        return 0;
    struct ex_cred c = {0};
    int rc = ex_cred_lookup(r->auth_file, h->domain, &c, err);
    if (rc < 0)
        return -1;
    pthread_mutex_lock(&r->lock);
    if (!h->creds_loaded) {
        h->cred = c;
        h->have_creds = rc;
        h->creds_loaded = true;
        memset(&c, 0, sizeof(c));
    }
    pthread_mutex_unlock(&r->lock);
    ex_cred_release(&c);
    if (rc == 1)
        kn_debug("using stored credentials for %s", h->domain);
    return 0;
}

/* scope: repeated "scope=" query parameters for the GET flow; one
 * space-separated "scope=" form field for the OAuth2 POST */
static void add_scope_params(struct kn_buf *b, CURL *esc, const char *scope, bool form)
{
    if (!scope || !*scope)
        return;
    if (form) {
        char *e = curl_easy_escape(esc, scope, 0);
        kn_buf_addf(b, "&scope=%s", e);
        curl_free(e);
        return;
    }
    const char *p = scope;
    while (*p) {
        size_t n = strcspn(p, " ");
        if (n) {
            char *part = kn_strndup(p, n);
            char *e = curl_easy_escape(esc, part, 0);
            kn_buf_addf(b, "%sscope=%s", b->len ? "&" : "", e);
            curl_free(e);
            free(part);
        }
        p += n;
        while (*p == ' ')
            p++;
    }
}

/* Gets a token from h's realm for scope. The token (caller frees) and its lifetime. */
static int fetch_token(struct ex_registry *r, struct host *h, const char *scope, char **token,
                       time_t *expires, struct kn_error **err)
{
    if (ensure_creds(r, h, err) < 0)
        return -1;
    pthread_mutex_lock(&r->lock);
    char *realm = kn_strdup(h->realm);
    char *service = h->service ? kn_strdup(h->service) : NULL;
    struct ex_cred cred = {0};
    if (h->have_creds) {
        cred.user = h->cred.user ? kn_strdup(h->cred.user) : NULL;
        cred.password = h->cred.password ? kn_strdup(h->cred.password) : NULL;
        cred.identity_token = h->cred.identity_token ? kn_strdup(h->cred.identity_token) : NULL;
    }
    pthread_mutex_unlock(&r->lock);

    CURL *ch = handle_get(r);
    struct kn_buf query = KN_BUF_INIT, form = KN_BUF_INIT, out = KN_BUF_INIT;
    struct curl_slist *hdrs = NULL;
    const char *method = "GET";
    if (service) {
        char *e = curl_easy_escape(ch, service, 0);
        kn_buf_addf(&query, "service=%s", e);
        curl_free(e);
    }
    if (cred.identity_token) {
        /* OAuth2 refresh-token grant: the secret goes in the POST body */
        method = "POST";
        char *e = curl_easy_escape(ch, cred.identity_token, 0);
        kn_buf_addf(&form, "grant_type=refresh_token&client_id=kiln&refresh_token=%s", e);
        memset(e, 0, strlen(e));
        curl_free(e);
        if (service) {
            char *s = curl_easy_escape(ch, service, 0);
            kn_buf_addf(&form, "&service=%s", s);
            curl_free(s);
        }
        add_scope_params(&form, ch, scope, true);
        hdrs = curl_slist_append(hdrs, "Content-Type: application/x-www-form-urlencoded");
    } else {
        add_scope_params(&query, ch, scope, false);
        if (cred.user) {
            char *e = curl_easy_escape(ch, cred.user, 0);
            kn_buf_addf(&query, "%saccount=%s", query.len ? "&" : "", e);
            curl_free(e);
            char *plain = kn_asprintf("%s:%s", cred.user, cred.password ? cred.password : "");
            char *b64 = ex_base64_encode(plain, strlen(plain));
            char *hv = kn_asprintf("Authorization: Basic %s", b64);
            hdrs = curl_slist_append(hdrs, hv);
            memset(plain, 0, strlen(plain));
            memset(b64, 0, strlen(b64));
            memset(hv, 0, strlen(hv));
            free(plain);
            free(b64);
            free(hv);
        }
    }
    hdrs = curl_slist_append(hdrs, "Expect:");
    char *url = query.len ? kn_asprintf("%s%c%s", realm, strchr(realm, '?') ? '&' : '?', query.data)
                          : kn_strdup(realm);
    char *auth = url_authority(url);
    char *auth_host = auth ? kn_strndup(auth, strcspn(auth, ":")) : kn_strdup("");
    bool verify = !(is_insecure(r, auth_host) || (auth && is_insecure(r, auth)));
    struct xfer x = {0};
    x.fd = -1;
    x.body = &out;
    x.body_max = EX_REG_TOKEN_MAX;
    if (form.len) {
        x.mem = form.data;
        x.len = form.len;
    }
    int rc = -1;
    for (int attempt = 1;; attempt++) {
        kn_buf_reset(&out);
        CURLcode cc = perform(r, ch, method, url, hdrs, verify, &x);
        if (cc == CURLE_OK && x.status == 200) {
            json_error_t je;
            json_t *j = json_loadb(out.data ? out.data : "", out.len, 0, &je);
            const char *t = json_string_value(json_object_get(j, "token"));
            if (!t || !*t)
                t = json_string_value(json_object_get(j, "access_token"));
            json_int_t ttl = json_integer_value(json_object_get(j, "expires_in"));
            if (!t || !*t) {
                kn_err_set(err, KN_E_AUTH, "token server of %s returned no token", h->domain);
            } else {
                *token = kn_strdup(t);
                *expires = time(NULL) + (ttl > 0 && ttl < 86400 * 365 ? ttl : TOKEN_DEFAULT_TTL);
                rc = 0;
            }
            json_decref(j);
            break;
        }
        if (cc == CURLE_OK && (x.status == 401 || x.status == 403)) {
            if (cred.user || cred.identity_token)
                kn_err_set(err, KN_E_AUTH,
                           "authentication to %s failed: invalid username or password", h->domain);
            else
                kn_err_set(err, KN_E_AUTH, "authentication to %s failed: access denied", h->domain);
            break;
        }
        bool retry = cc == CURLE_OK ? retryable_status(x.status) : retryable_curl(cc);
        if (!retry || attempt >= r->retries) {
            if (cc != CURLE_OK) {
                if (x.werr)
                    kn_err_propagate(err, &x.werr);
                else
                    kn_err_set(err, KN_E_NET, "cannot get a token for %s from %s: %s%s", h->domain,
                               auth ? auth : "its realm", curl_msg(&x, cc),
                               retry ? " (retries exhausted)" : "");
            } else {
                char *m = body_message(&x.errbody, x.status);
                kn_err_set(err, KN_E_AUTH, "cannot get a token for %s: %s", h->domain, m);
                free(m);
            }
            break;
        }
        sleep_ms(backoff_ms(attempt, cc == CURLE_OK ? parse_retry_after(x.retry_after) : 0), NULL);
    }
    handle_put(r, ch);
    xfer_release(&x);
    curl_slist_free_all(hdrs);
    if (form.data)
        memset(form.data, 0, form.len);
    if (out.data)
        memset(out.data, 0, out.len);
    kn_buf_release(&form);
    kn_buf_release(&query);
    kn_buf_release(&out);
    ex_cred_release(&cred);
    free(url);
    free(auth);
    free(auth_host);
    free(realm);
    free(service);
    return rc;
}

/* The Authorization header for a request of scope to h (*hdr NULL for none). */
static int auth_header(struct ex_registry *r, struct host *h, const char *scope, char **hdr,
                       int *sent, struct kn_error **err)
{
    *hdr = NULL;
    *sent = SENT_NONE;
    const char *key = scope ? scope : "";
    pthread_mutex_lock(&r->lock);
    bool basic = h->basic;
    bool bearer = h->realm != NULL;
    if (bearer) {
        time_t now = time(NULL);
        for (size_t i = 0; i < r->tokens.n; i++) {
            struct token *t = &r->tokens.v[i];
            if (strcmp(t->domain, h->domain) == 0 && strcmp(t->scope, key) == 0) {
                if (t->expires - TOKEN_MARGIN > now) {
                    *hdr = kn_asprintf("Authorization: Bearer %s", t->token);
                    *sent = SENT_BEARER_CACHED;
                } else {
                    token_release(t);
                    r->tokens.v[i] = r->tokens.v[--r->tokens.n];
                }
                break;
            }
        }
    }
    pthread_mutex_unlock(&r->lock);
    if (*hdr)
        return 0;
    if (basic) {
        if (ensure_creds(r, h, err) < 0)
            return -1;
        pthread_mutex_lock(&r->lock);
        if (h->have_creds && h->cred.user) {
            char *plain =
                kn_asprintf("%s:%s", h->cred.user, h->cred.password ? h->cred.password : "");
            char *b64 = ex_base64_encode(plain, strlen(plain));
            *hdr = kn_asprintf("Authorization: Basic %s", b64);
            memset(plain, 0, strlen(plain));
            memset(b64, 0, strlen(b64));
            free(plain);
            free(b64);
            *sent = SENT_BASIC;
        }
        pthread_mutex_unlock(&r->lock);
        return 0;
    }
    if (bearer) {
        char *tok = NULL;
        time_t exp = 0;
        if (fetch_token(r, h, scope, &tok, &exp, err) < 0)
            return -1;
        *hdr = kn_asprintf("Authorization: Bearer %s", tok);
        *sent = SENT_BEARER_FRESH;
        pthread_mutex_lock(&r->lock);
        struct token t = {kn_strdup(h->domain), kn_strdup(key), tok, exp};
        kn_vec_push(&r->tokens, t);
        pthread_mutex_unlock(&r->lock);
    }
    return 0;
}

void ex_registry_debug_spoil_tokens(struct ex_registry *r)
{
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->tokens.n; i++) {
        free(r->tokens.v[i].token);
        r->tokens.v[i].token = kn_strdup("spoiled");
    }
    pthread_mutex_unlock(&r->lock);
}

static void drop_token(struct ex_registry *r, struct host *h, const char *scope)
{
    const char *key = scope ? scope : "";
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->tokens.n; i++) {
        struct token *t = &r->tokens.v[i];
        if (strcmp(t->domain, h->domain) == 0 && strcmp(t->scope, key) == 0) {
            token_release(t);
            r->tokens.v[i] = r->tokens.v[--r->tokens.n];
            break;
        }
    }
    pthread_mutex_unlock(&r->lock);
}

/* Learns from a 401's challenges. 0: try again; -1: give up with *err. */
static int on_unauthorized(struct ex_registry *r, struct host *h, struct xfer *x, int sent,
                           bool *refreshed, struct ex_req *q, struct kn_error **err)
{
    struct ex_challenges ch = {0};
    for (size_t i = 0; i < x->www.n; i++) {
        struct kn_error *perr = NULL;
        if (ex_challenges_parse(x->www.v[i], &ch, &perr) < 0) {
            kn_debug("%s", perr->msg);
            kn_err_free(perr);
        }
    }
    const struct ex_challenge *bearer = ex_challenges_find(&ch, "bearer");
    const struct ex_challenge *basic = ex_challenges_find(&ch, "basic");
    int rc = -1;
    if (ensure_creds(r, h, err) < 0) {
        ex_challenges_release(&ch);
        return -1;
    }
    pthread_mutex_lock(&r->lock);
    bool have = h->have_creds;
    pthread_mutex_unlock(&r->lock);
    if (bearer && ex_challenge_param(bearer, "realm")) {
        const char *realm = ex_challenge_param(bearer, "realm");
        const char *service = ex_challenge_param(bearer, "service");
        pthread_mutex_lock(&r->lock);
        if (!h->realm || strcmp(h->realm, realm) != 0) {
            free(h->realm);
            h->realm = kn_strdup(realm);
        }
        free(h->service);
        h->service = service ? kn_strdup(service) : NULL;
        h->basic = false;
        pthread_mutex_unlock(&r->lock);
        if (sent == SENT_NONE || sent == SENT_BASIC) {
            rc = 0;
        } else if (sent == SENT_BEARER_CACHED && !*refreshed) {
            *refreshed = true;
            drop_token(r, h, q->scope);
            rc = 0;
        } else {
            drop_token(r, h, q->scope);
            if (have)
                kn_err_set(err, KN_E_AUTH,
                           "cannot %s: access denied (not authorized, or it does not exist)",
                           q->what);
            else
                kn_err_set(err, KN_E_AUTH,
                           "cannot %s: authentication required (no credentials for %s; run "
                           "'kiln login %s')",
                           q->what, h->domain, h->domain);
        }
    } else if (basic) {
        if (sent == SENT_BASIC) {
            kn_err_set(err, KN_E_AUTH, "authentication to %s failed: invalid username or password",
                       h->domain);
        } else if (!have) {
            kn_err_set(err, KN_E_AUTH,
                       "cannot %s: authentication required (no credentials for %s; run 'kiln "
                       "login %s')",
                       q->what, h->domain, h->domain);
        } else {
            pthread_mutex_lock(&r->lock);
            h->basic = true;
            pthread_mutex_unlock(&r->lock);
            rc = 0;
        }
    } else {
        kn_err_set(err, KN_E_AUTH, "cannot %s: unauthorized, and %s sent no usable challenge",
                   q->what, h->domain);
    }
    ex_challenges_release(&ch);
    return rc;
}

/* ---- the request loop ---- */

int ex_http_do(struct ex_registry *r, const char *domain, struct ex_req *q, struct ex_resp *resp,
               struct kn_error **err)
{
    memset(resp, 0, sizeof(*resp));
    pthread_mutex_lock(&r->lock);
    struct host *h = host_get_locked(r, domain);
    pthread_mutex_unlock(&r->lock);

    char *url = NULL;
    if (q->url) {
        url = kn_strdup(q->url);
    } else {
        char *base = ex_registry_base_url(r, domain);
        url = kn_asprintf("%s%s", base, q->path);
        free(base);
    }
    char *reg_authority = NULL;
    struct xfer x = {0};
    x.q = q;
    x.fd = -1;
    if (q->body_fd >= 0 && q->has_body && !q->body) {
        x.fd = q->body_fd;
        x.off = q->body_off;
        x.len = q->body_fd_len;
    } else if (q->has_body) {
        x.mem = q->body ? q->body : "";
        x.len = q->body ? q->body_len : 0;
    }
    if (q->resp) {
        x.body = q->resp;
        x.body_max = q->resp_max ? q->resp_max : EX_REG_MANIFEST_MAX;
    }
    int attempt = 1, unauthorized = 0, redirects = 0, rc = -1;
    bool refreshed = false;
    bool same_host = true;
    CURL *ch = handle_get(r);
    for (;;) {
        if (q->cancel && atomic_load(q->cancel)) {
            kn_err_set(err, KN_E_CANCELED, "cannot %s: canceled", q->what);
            break;
        }
        if (!reg_authority)
            reg_authority = url_authority(url);
        /* headers for this attempt */
        struct curl_slist *hdrs = NULL;
        for (int i = 0; i < (int)KN_ARRAY_SIZE(q->headers) && q->headers[i]; i++)
            hdrs = curl_slist_append(hdrs, q->headers[i]);
        hdrs = curl_slist_append(hdrs, "Expect:");
        char *authz = NULL;
        int sent = SENT_NONE;
        if (same_host && auth_header(r, h, q->scope, &authz, &sent, err) < 0) {
            curl_slist_free_all(hdrs);
            break;
        }
        if (authz) {
            hdrs = curl_slist_append(hdrs, authz);
            memset(authz, 0, strlen(authz));
            free(authz);
        }
        if (q->writer && *q->writer && ex_blob_writer_size(*q->writer) > 0) {
            char *rg = kn_asprintf("Range: bytes=%llu-",
                                   (unsigned long long)ex_blob_writer_size(*q->writer));
            hdrs = curl_slist_append(hdrs, rg);
            kn_debug("%s: resuming at byte %llu", q->what,
                     (unsigned long long)ex_blob_writer_size(*q->writer));
            free(rg);
        }
        pthread_mutex_lock(&r->lock);
        bool verify = !h->insecure;
        int scheme = h->scheme;
        bool fell_back = h->fell_back;
        pthread_mutex_unlock(&r->lock);
        if (!same_host)
            verify = true;
        CURLcode cc = perform(r, ch, q->method, url, hdrs, verify, &x);
        /* wipe the header copies that held a credential */
        for (struct curl_slist *s = hdrs; s; s = s->next)
            if (strncasecmp(s->data, "authorization:", 14) == 0)
                memset(s->data, 0, strlen(s->data));
        curl_slist_free_all(hdrs);

        if (cc != CURLE_OK) {
            if (x.werr) {
                kn_err_propagate(err, &x.werr);
                break;
            }
            if (cc == CURLE_ABORTED_BY_CALLBACK) {
                kn_err_set(err, KN_E_CANCELED, "cannot %s: canceled", q->what);
                break;
            }
            /* an insecure host that does not speak TLS: fall back to http, once */
            if (same_host && h->insecure && scheme == SCHEME_HTTPS && !fell_back &&
                (cc == CURLE_SSL_CONNECT_ERROR || cc == CURLE_GOT_NOTHING ||
                 cc == CURLE_RECV_ERROR || cc == CURLE_COULDNT_CONNECT)) {
                pthread_mutex_lock(&r->lock);
                h->fell_back = true;
                h->scheme = SCHEME_HTTP;
                pthread_mutex_unlock(&r->lock);
                kn_debug("%s: https failed (%s), trying http", domain, curl_easy_strerror(cc));
                if (kn_str_startswith(url, "https://")) {
                    char *nu = kn_asprintf("http://%s", url + 8);
                    free(url);
                    url = nu;
                    free(reg_authority);
                    reg_authority = NULL;
                }
                continue;
            }
            bool retry = retryable_curl(cc) && !q->no_retry;
            if (!retry || attempt >= r->retries) {
                char *ra = url_authority(url);
                if (retry)
                    kn_err_set(err, KN_E_NET, "cannot %s: %s (%s) after %d attempts", q->what,
                               curl_msg(&x, cc), ra ? ra : domain, attempt);
                else
                    kn_err_set(err, KN_E_NET, "cannot %s: %s (%s)", q->what, curl_msg(&x, cc),
                               ra ? ra : domain);
                free(ra);
                break;
            }
            kn_debug("%s: %s, retrying (attempt %d of %d)", q->what, curl_msg(&x, cc), attempt + 1,
                     r->retries);
            sleep_ms(backoff_ms(attempt, 0), q->cancel);
            attempt++;
            continue;
        }
        /* a TLS server answering our plain http (loopback hosts start with http) */
        /* (a HEAD gets the same 400 without the body that says why: a
         * registry never answers a HEAD with 400 otherwise) */
        if (x.status == 400 && same_host && scheme == SCHEME_HTTP && h->loopback &&
            ((x.errbody.data && strstr(x.errbody.data, "HTTPS server")) ||
             (strcmp(q->method, "HEAD") == 0 && x.errbody.len == 0)) &&
            kn_str_startswith(url, "http://")) {
            pthread_mutex_lock(&r->lock);
            h->scheme = SCHEME_HTTPS;
            pthread_mutex_unlock(&r->lock);
            kn_debug("%s speaks https", domain);
            char *nu = kn_asprintf("https://%s", url + 7);
            free(url);
            url = nu;
            continue;
        }
        if (x.status == 401 && same_host) {
            if (++unauthorized > 4 || on_unauthorized(r, h, &x, sent, &refreshed, q, err) < 0) {
                if (unauthorized > 4)
                    kn_err_set(err, KN_E_AUTH, "cannot %s: unauthorized", q->what);
                break;
            }
            continue;
        }
        if (retryable_status(x.status) && !q->no_retry) {
            if (attempt >= r->retries) {
                char *m = body_message(&x.errbody, x.status);
                char *ra = url_authority(url);
                kn_err_set(err, KN_E_NET, "cannot %s: %s (%s) after %d attempts", q->what, m,
                           ra ? ra : domain, attempt);
                free(ra);
                free(m);
                break;
            }
            long ra = parse_retry_after(x.retry_after);
            kn_debug("%s: HTTP %ld, retrying (attempt %d of %d)", q->what, x.status, attempt + 1,
                     r->retries);
            sleep_ms(backoff_ms(attempt, ra), q->cancel);
            attempt++;
            continue;
        }
        if (x.status >= 300 && x.status < 400 && x.status != 304 && q->follow && x.location) {
            if (++redirects > MAX_REDIRECTS) {
                kn_err_set(err, KN_E_NET, "cannot %s: too many redirects", q->what);
                break;
            }
            char *nu = ex_url_resolve(url, x.location);
            if (!nu || !(kn_str_startswith(nu, "http://") || kn_str_startswith(nu, "https://"))) {
                kn_err_set(err, KN_E_NET, "cannot %s: invalid redirect", q->what);
                free(nu);
                break;
            }
            char *na = url_authority(nu);
            /* the Authorization header never follows a redirect to another host */
            same_host = same_host && na && reg_authority && strcmp(na, reg_authority) == 0;
            free(na);
            free(url);
            url = nu;
            continue;
        }
        /* an answer for the caller */
        resp->status = x.status;
        if (x.location)
            resp->location = ex_url_resolve(url, x.location);
        resp->content_type = x.content_type ? kn_strdup(x.content_type) : NULL;
        resp->docker_digest = x.docker_digest ? kn_strdup(x.docker_digest) : NULL;
        resp->range = x.range ? kn_strdup(x.range) : NULL;
        if (x.errbody.len)
            kn_buf_add(&resp->errbody, x.errbody.data, x.errbody.len);
        rc = 0;
        break;
    }
    handle_put(r, ch);
    xfer_release(&x);
    free(url);
    free(reg_authority);
    return rc;
}
