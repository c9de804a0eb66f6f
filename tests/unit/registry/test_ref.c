/*
 * Reference parsing and normalization, table-driven: what docker's
 * ParseNormalizedNamed accepts (and how it normalizes it), what it refuses
 * (with our exact error message), the familiar form.
 */
#include "exec/registry/internal.h"
#include "tap.h"

#define D64 "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct good {
    const char *in;
    const char *domain, *path, *tag, *digest;
    const char *familiar;
};

static const struct good goods[] = {
    {"alpine", "docker.io", "library/alpine", "latest", NULL, "alpine:latest"},
    {"alpine:3.19", "docker.io", "library/alpine", "3.19", NULL, "alpine:3.19"},
    {"library/alpine", "docker.io", "library/alpine", "latest", NULL, "alpine:latest"},
    {"docker.io/alpine", "docker.io", "library/alpine", "latest", NULL, "alpine:latest"},
    {"docker.io/library/alpine:edge", "docker.io", "library/alpine", "edge", NULL, "alpine:edge"},
    {"index.docker.io/alpine", "docker.io", "library/alpine", "latest", NULL, "alpine:latest"},
    {"index.docker.io/user/app:v1", "docker.io", "user/app", "v1", NULL, "user/app:v1"},
    {"user/app", "docker.io", "user/app", "latest", NULL, "user/app:latest"},
    {"docker.io/user/app", "docker.io", "user/app", "latest", NULL, "user/app:latest"},
    {"user/team/app:1.0", "docker.io", "user/team/app", "1.0", NULL, "user/team/app:1.0"},
    {"localhost/x", "localhost", "x", "latest", NULL, "localhost/x:latest"},
    {"localhost:5000/x", "localhost:5000", "x", "latest", NULL, "localhost:5000/x:latest"},
    {"127.0.0.1:5000/a/b:t", "127.0.0.1:5000", "a/b", "t", NULL, "127.0.0.1:5000/a/b:t"},
    {"quay.io/coreos/etcd", "quay.io", "coreos/etcd", "latest", NULL, "quay.io/coreos/etcd:latest"},
    {"ghcr.io/o/r:sha-abc", "ghcr.io", "o/r", "sha-abc", NULL, "ghcr.io/o/r:sha-abc"},
    {"myhost:5000/name@" D64, "myhost:5000", "name", NULL, D64, "myhost:5000/name@" D64},
    {"alpine@" D64, "docker.io", "library/alpine", NULL, D64, "alpine@" D64},
    {"alpine:3@" D64, "docker.io", "library/alpine", "3", D64, "alpine:3@" D64},
    {"host:5000/n:tag@" D64, "host:5000", "n", "tag", D64, "host:5000/n:tag@" D64},
    {"Registry.Example.COM/app", "Registry.Example.COM", "app", "latest", NULL,
     "Registry.Example.COM/app:latest"},
    {"UpperHost/app", "UpperHost", "app", "latest", NULL, "UpperHost/app:latest"},
    {"[::1]:5000/x:y", "[::1]:5000", "x", "y", NULL, "[::1]:5000/x:y"},
    {"a.b-c.d/e__f/g.h-i---j", "a.b-c.d", "e__f/g.h-i---j", "latest", NULL,
     "a.b-c.d/e__f/g.h-i---j:latest"},
    {"x:_tag", "docker.io", "library/x", "_tag", NULL, "x:_tag"},
    {"x:T-a.g_", "docker.io", "library/x", "T-a.g_", NULL, "x:T-a.g_"},
    {"host:5000", "docker.io", "library/host", "5000", NULL, "host:5000"},
    {"kiln/base:latest", "docker.io", "kiln/base", "latest", NULL, "kiln/base:latest"},
    {"reg.io:443/deep/er/path/x", "reg.io:443", "deep/er/path/x", "latest", NULL,
     "reg.io:443/deep/er/path/x:latest"},
};

struct bad {
    const char *in;
    const char *msg;
};

static const struct bad bads[] = {
    {"", "invalid reference '': empty reference"},
    {"Alpine", "invalid reference 'Alpine': repository name must be lowercase"},
    {"user/App", "invalid reference 'user/App': repository name must be lowercase"},
    {"docker.io/Library/alpine",
     "invalid reference 'docker.io/Library/alpine': repository name must be lowercase"},
    {"alpine:", "invalid reference 'alpine:': invalid tag '' (want at most 128 of "
                "[A-Za-z0-9_.-], not starting with '.' or '-')"},
    {"alpine:-x", "invalid reference 'alpine:-x': invalid tag '-x' (want at most 128 of "
                  "[A-Za-z0-9_.-], not starting with '.' or '-')"},
    {"alpine:.x", "invalid reference 'alpine:.x': invalid tag '.x' (want at most 128 of "
                  "[A-Za-z0-9_.-], not starting with '.' or '-')"},
    {"alpine:a+b", "invalid reference 'alpine:a+b': invalid tag 'a+b' (want at most 128 of "
                   "[A-Za-z0-9_.-], not starting with '.' or '-')"},
    {"alpine@sha256:abc",
     "invalid reference 'alpine@sha256:abc': invalid sha256 digest (want 64 lowercase hex "
     "digits)"},
    {"alpine@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
     "invalid reference "
     "'alpine@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef': invalid "
     "sha256 digest (want 64 lowercase hex digits)"},
    {"alpine@md5:0123456789abcdef0123456789abcdef",
     "invalid reference 'alpine@md5:0123456789abcdef0123456789abcdef': unsupported digest "
     "algorithm 'md5'"},
    {"alpine@0123", "invalid reference 'alpine@0123': invalid digest format"},
    {"alpine@", "invalid reference 'alpine@': invalid digest format"},
    {"a@" D64 "@" D64, "invalid reference 'a@" D64 "@" D64 "': more than one '@'"},
    {"/alpine", "invalid reference '/alpine': invalid repository name component ''"},
    {"alpine/", "invalid reference 'alpine/': invalid repository name component ''"},
    {"a//b", "invalid reference 'a//b': invalid repository name component ''"},
    {"-a", "invalid reference '-a': invalid repository name component '-a'"},
    {"a-", "invalid reference 'a-': invalid repository name component 'a-'"},
    {"a..b", "invalid reference 'a..b': invalid repository name component 'a..b'"},
    {"a___b", "invalid reference 'a___b': invalid repository name component 'a___b'"},
    {"a b", "invalid reference 'a b': contains whitespace or a control character"},
    {"host:port/x", "invalid reference 'host:port/x': invalid registry host 'host:port'"},
    {"-host.io/x", "invalid reference '-host.io/x': invalid registry host '-host.io'"},
    {"host.io:/x", "invalid reference 'host.io:/x': invalid registry host 'host.io:'"},
    {"localhost:5000/", "invalid reference 'localhost:5000/': missing repository name"},
    {":tag", "invalid reference ':tag': missing repository name"},
    {"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
     "invalid reference '0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef': "
     "cannot be a 64-character hexadecimal string (an image id)"},
    {"a$b", "invalid reference 'a$b': invalid repository name component 'a$b'"},
};

static void test_lengths(void)
{
    struct kn_error *err = NULL;
    struct ex_ref r;
    /* a 255-character name is fine, 256 is not */
    char name[300];
    memset(name, 'a', sizeof(name));
    name[255] = '\0';
    int rc = ex_ref_parse(name, &r, &err);
    ok(rc == 0, "255-character name accepted");
    ex_ref_release(&r);
    name[255] = 'a';
    name[256] = '\0';
    rc = ex_ref_parse(name, &r, &err);
    ok(rc < 0, "256-character name refused");
    char want[400];
    snprintf(want, sizeof(want),
             "invalid reference '%s': repository name is longer than 255 characters", name);
    is_str(err ? err->msg : NULL, want, "too-long name message");
    kn_err_free(err);
    err = NULL;
    /* a 128-character tag is fine, 129 is not */
    char ref[300] = "x:";
    memset(ref + 2, 't', 128);
    ref[130] = '\0';
    rc = ex_ref_parse(ref, &r, &err);
    ok(rc == 0, "128-character tag accepted");
    ex_ref_release(&r);
    ref[130] = 't';
    ref[131] = '\0';
    rc = ex_ref_parse(ref, &r, &err);
    ok(rc < 0 && err && err->code == KN_E_PARSE, "129-character tag refused");
    kn_err_free(err);
}

int main(void)
{
    for (size_t i = 0; i < KN_ARRAY_SIZE(goods); i++) {
        const struct good *g = &goods[i];
        struct kn_error *err = NULL;
        struct ex_ref r;
        int rc = ex_ref_parse(g->in, &r, &err);
        ok(rc == 0, "parse '%s'%s%s", g->in, err ? ": " : "", err ? err->msg : "");
        if (rc < 0) {
            kn_err_free(err);
            continue;
        }
        is_str(r.domain, g->domain, "  domain of '%s'", g->in);
        is_str(r.path, g->path, "  path of '%s'", g->in);
        is_str(r.tag, g->tag, "  tag of '%s'", g->in);
        is_str(r.digest, g->digest, "  digest of '%s'", g->in);
        char *fam = ex_ref_familiar(&r);
        is_str(fam, g->familiar, "  familiar form of '%s'", g->in);
        /* the full string parses back to the same reference */
        char *full = ex_ref_string(&r);
        struct ex_ref r2;
        int rc2 = ex_ref_parse(full, &r2, &err);
        ok(rc2 == 0 && strcmp(r2.path, r.path) == 0 && strcmp(r2.domain, r.domain) == 0,
           "  '%s' round-trips", full);
        ex_ref_release(&r2);
        free(full);
        free(fam);
        ex_ref_release(&r);
    }
    for (size_t i = 0; i < KN_ARRAY_SIZE(bads); i++) {
        struct kn_error *err = NULL;
        struct ex_ref r;
        int rc = ex_ref_parse(bads[i].in, &r, &err);
        ok(rc < 0 && err && err->code == KN_E_PARSE, "refuse '%s'", bads[i].in);
        is_str(err ? err->msg : NULL, bads[i].msg, "  message for '%s'", bads[i].in);
        ok(r.domain == NULL && r.path == NULL, "  nothing left allocated");
        kn_err_free(err);
    }
    /* the canonical string */
    struct ex_ref r;
    struct kn_error *err = NULL;
    ex_ref_parse("alpine", &r, &err);
    char *s = ex_ref_string(&r);
    is_str(s, "docker.io/library/alpine:latest", "alpine -> docker.io/library/alpine:latest");
    free(s);
    ex_ref_release(&r);
    test_lengths();
    return tap_done();
}
