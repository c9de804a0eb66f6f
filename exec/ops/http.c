/*
 * exec/ops: source.http (ADD https://...). Downloads the file with libcurl
 * straight into the store through a blob writer, verifying --checksum when
 * given; the file's name is the vertex's filename or the URL's last path
 * component, as Docker does.
 */
#include "internal.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

/* Downloads are bounded: ADD is not a way to fill the disk by accident. */
#define HTTP_MAX_BYTES (16ull << 30)

struct dl {
    struct ex_blob_writer *w;
    uint64_t n;
    struct kn_error *err;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *ctx)
{
    struct dl *d = ctx;
    size_t len = size * nmemb;
    d->n += len;
    if (d->n > HTTP_MAX_BYTES) {
        kn_err_set(&d->err, KN_E_UNSAFE, "download is larger than %llu bytes",
                   (unsigned long long)HTTP_MAX_BYTES);
        return 0;
    }
    if (ex_blob_writer_write(d->w, p, len, &d->err) < 0)
        return 0;
    return len;
}

/* The last path component of the URL, without query or fragment. */
static char *url_filename(const char *url)
{
    const char *start = strstr(url, "://");
    start = start ? start + 3 : url;
    size_t end = strcspn(start, "?#");
    const char *slash = NULL;
    for (size_t i = 0; i < end; i++)
        if (start[i] == '/')
            slash = start + i;
    if (!slash || (size_t)(slash - start) + 1 >= end)
        return kn_strdup("download");
    char *name = kn_strndup(slash + 1, end - (size_t)(slash - start) - 1);
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        free(name);
        return kn_strdup("download");
    }
    return name;
}

int ex_ops_run_http(struct ex_ops *ops, const struct ir_source_http *src, struct ex_result **out,
                    struct kn_error **err)
{
    if (!kn_str_startswith(src->url, "http://") && !kn_str_startswith(src->url, "https://"))
        return kn_err_set(err, KN_E_USAGE, "unsupported URL '%s'", src->url);
    struct dl d = {0};
    d.w = ex_blob_writer_new(ops->o.store, err);
    if (!d.w)
        return -1;
    CURL *c = curl_easy_init();
    if (!c) {
        ex_blob_writer_abort(d.w);
        return kn_err_set(err, KN_E_INTERNAL, "cannot create a curl handle");
    }
    char curlerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, src->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curlerr);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "kiln");
    CURLcode rc = curl_easy_perform(c);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK) {
        ex_blob_writer_abort(d.w);
        if (d.err) {
            kn_err_propagate(err, &d.err);
            return kn_err_wrap(err, "cannot download '%s'", src->url);
        }
        return kn_err_set(err, KN_E_NET, "cannot download '%s': %s", src->url,
                          curlerr[0] ? curlerr : curl_easy_strerror(rc));
    }
    char digest[KN_DIGEST_SIZE];
    if (ex_blob_writer_commit(d.w, src->checksum, digest, NULL, err) < 0)
        return kn_err_wrap(err, "download '%s'", src->url);
    struct ex_result *r = ex_result_new(EX_RESULT_FILE);
    memcpy(r->blob, digest, KN_DIGEST_SIZE);
    r->filename = src->filename ? kn_strdup(src->filename) : url_filename(src->url);
    struct kn_sha256 h;
    kn_sha256_init(&h);
    kn_sha256_update(&h, "kiln.http/1", 11);
    kn_sha256_update(&h, digest, KN_DIGEST_LEN);
    kn_sha256_update(&h, r->filename, strlen(r->filename));
    kn_sha256_final(&h, r->id);
    *out = r;
    return 0;
}
