/*
 * Registry host names: the API host of a registry domain (Docker Hub's
 * "docker.io" lives at registry-1.docker.io), ports, and which hosts are
 * loopback (plain http allowed without being listed as insecure).
 */
#include "exec/registry/internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

const char *ex_domain_api_host(const char *domain)
{
    return strcmp(domain, "docker.io") == 0 ? "registry-1.docker.io" : domain;
}

/* host without port: "[::1]:5000" -> "::1", "h:5000" -> "h" */
char *ex_host_strip_port(const char *domain)
{
    if (domain[0] == '[') {
        const char *e = strchr(domain, ']');
        return e ? kn_strndup(domain + 1, (size_t)(e - domain - 1)) : kn_strdup(domain);
    }
    const char *c = strchr(domain, ':');
    if (c && strchr(c + 1, ':'))
        return kn_strdup(domain); /* a bare IPv6 address */
    return c ? kn_strndup(domain, (size_t)(c - domain)) : kn_strdup(domain);
}

bool ex_host_is_loopback(const char *domain)
{
    char *h = ex_host_strip_port(domain);
    bool r = strcasecmp(h, "localhost") == 0 || strcmp(h, "::1") == 0;
    if (!r && strncmp(h, "127.", 4) == 0) {
        int a, b, c, d;
        char tail;
        r = sscanf(h, "%d.%d.%d.%d%c", &a, &b, &c, &d, &tail) == 4 && b >= 0 && b < 256 && c >= 0 &&
            c < 256 && d >= 0 && d < 256;
    }
    free(h);
    return r;
}
