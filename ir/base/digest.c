/*
 * sha256 digests in the "sha256:<hex>" form OCI uses, on OpenSSL's EVP
 * interface (the one OpenSSL 3 does not deprecate).
 */
#include "base.h"

#include <openssl/evp.h>
#include <string.h>

void kn_sha256_init(struct kn_sha256 *h)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        kn_die("cannot initialize sha256");
    h->ctx = ctx;
}

void kn_sha256_update(struct kn_sha256 *h, const void *data, size_t n)
{
    if (n && EVP_DigestUpdate(h->ctx, data, n) != 1)
        kn_die("sha256 update failed");
}

void kn_digest_from_raw(const unsigned char raw[32], char out[KN_DIGEST_SIZE])
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "sha256:", 7);
    for (int i = 0; i < 32; i++) {
        out[7 + 2 * i] = hex[raw[i] >> 4];
        out[8 + 2 * i] = hex[raw[i] & 15];
    }
    out[KN_DIGEST_LEN] = '\0';
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 0;
}

void kn_digest_to_raw(const char *digest, unsigned char raw[32])
{
    const char *h = kn_digest_hex(digest);
    for (int i = 0; i < 32; i++)
        raw[i] = (unsigned char)(hexval(h[2 * i]) << 4 | hexval(h[2 * i + 1]));
}

void kn_sha256_final(struct kn_sha256 *h, char out[KN_DIGEST_SIZE])
{
    unsigned char md[32];
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(h->ctx, md, &len) != 1 || len != 32)
        kn_die("sha256 final failed");
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
    kn_digest_from_raw(md, out);
}

void kn_sha256_release(struct kn_sha256 *h)
{
    EVP_MD_CTX_free(h->ctx);
    h->ctx = NULL;
}

void kn_sha256_digest(const void *data, size_t n, char out[KN_DIGEST_SIZE])
{
    struct kn_sha256 h;
    kn_sha256_init(&h);
    kn_sha256_update(&h, data, n);
    kn_sha256_final(&h, out);
}

bool kn_digest_valid(const char *s)
{
    if (!s || strncmp(s, "sha256:", 7) != 0 || strlen(s) != KN_DIGEST_LEN)
        return false;
    for (const char *p = s + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

const char *kn_digest_hex(const char *s)
{
    return s + 7;
}
