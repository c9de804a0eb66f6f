/*
 * Credential lookup: docker's config.json (base64 "auth", username/password,
 * identitytoken, the Docker Hub key https://index.docker.io/v1/), podman's
 * auth.json ($REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json),
 * credential helpers (a fake docker-credential-test script on PATH that
 * records its stdin), and writing / erasing entries for kiln login/logout.
 */
#include "exec/registry/internal.h"
#include "tap.h"

#include <sys/stat.h>

static char dir[4096];

static void write_file(const char *path, const char *text, int mode)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    chmod(path, (mode_t)mode);
}

static char *read_all(const char *path)
{
    struct kn_buf b = KN_BUF_INIT;
    struct kn_error *err = NULL;
    if (kn_buf_read_file(&b, path, 1 << 20, &err) < 0) {
        kn_err_free(err);
        kn_buf_release(&b);
        return NULL;
    }
    return kn_buf_detach(&b);
}

static char *p(const char *name)
{
    return kn_asprintf("%s/%s", dir, name);
}

/* looks up domain and checks user / password / identity token */
static void expect(const char *auth_file, const char *domain, int want_rc, const char *user,
                   const char *pass, const char *itok, const char *what)
{
    struct ex_cred c;
    struct kn_error *err = NULL;
    int rc = ex_cred_lookup(auth_file, domain, &c, &err);
    is_int(rc, want_rc, "%s%s%s", what, err ? ": " : "", err ? err->msg : "");
    if (rc == 1) {
        is_str(c.user, user, "  user");
        is_str(c.password, pass, "  password");
        is_str(c.identity_token, itok, "  identity token");
    }
    ex_cred_release(&c);
    kn_err_free(err);
}

static void expect_err(const char *auth_file, const char *domain, const char *msg, const char *what)
{
    struct ex_cred c;
    struct kn_error *err = NULL;
    int rc = ex_cred_lookup(auth_file, domain, &c, &err);
    ok(rc < 0, "%s", what);
    is_str(err ? err->msg : NULL, msg, "  message");
    ex_cred_release(&c);
    kn_err_free(err);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "%s", tap_tmpdir());
    setenv("HOME", dir, 1);
    unsetenv("DOCKER_CONFIG");
    unsetenv("REGISTRY_AUTH_FILE");
    unsetenv("XDG_RUNTIME_DIR");
    char *dockerdir = p(".docker");
    mkdir(dockerdir, 0700);
    char *cfg = kn_asprintf("%s/config.json", dockerdir);

    expect(NULL, "myreg:5000", 0, NULL, NULL, NULL, "no config file: no credentials");

    /* "dXNlcjE6cGE6c3M=" is "user1:pa:ss": only the first colon separates */
    write_file(cfg,
               "{\"auths\":{"
               "\"myreg:5000\":{\"auth\":\"dXNlcjE6cGE6c3M=\"},"
               "\"https://index.docker.io/v1/\":{\"auth\":\"aHViOmh1YnB3\"},"
               "\"http://plain.example\":{\"username\":\"u2\",\"password\":\"p2\"},"
               "\"tok.example/v2/\":{\"identitytoken\":\"refresh-me\"},"
               "\"empty.example\":{}"
               "},\"HttpHeaders\":{\"X-Keep\":\"1\"}}",
               0600);
    expect(NULL, "myreg:5000", 1, "user1", "pa:ss", NULL, "base64 auth");
    expect(NULL, "docker.io", 1, "hub", "hubpw", NULL, "docker.io via https://index.docker.io/v1/");
    expect(NULL, "plain.example", 1, "u2", "p2", NULL, "username/password");
    expect(NULL, "tok.example", 1, NULL, NULL, "refresh-me", "identitytoken");
    expect(NULL, "empty.example", 0, NULL, NULL, NULL, "an empty entry is no credentials");
    expect(NULL, "other:5000", 0, NULL, NULL, NULL, "unknown host");
    expect(NULL, "myreg", 0, NULL, NULL, NULL, "host without the port does not match");

    /* DOCKER_CONFIG */
    char *dc = p("dc");
    mkdir(dc, 0700);
    char *dccfg = kn_asprintf("%s/config.json", dc);
    write_file(dccfg, "{\"auths\":{\"myreg:5000\":{\"username\":\"dcu\",\"password\":\"dcp\"}}}",
               0600);
    setenv("DOCKER_CONFIG", dc, 1);
    expect(NULL, "myreg:5000", 1, "dcu", "dcp", NULL, "$DOCKER_CONFIG/config.json wins");
    char *def = ex_cred_default_file(NULL);
    is_str(def, dccfg, "login writes $DOCKER_CONFIG/config.json");
    free(def);
    unsetenv("DOCKER_CONFIG");

    /* podman's auth.json */
    char *run = p("run");
    char *cont = p("run/containers");
    mkdir(run, 0700);
    mkdir(cont, 0700);
    char *podauth = kn_asprintf("%s/auth.json", cont);
    write_file(podauth, "{\"auths\":{\"pod.example\":{\"auth\":\"cG9kOnBvZHB3\"}}}", 0600);
    setenv("XDG_RUNTIME_DIR", run, 1);
    expect(NULL, "pod.example", 1, "pod", "podpw", NULL, "$XDG_RUNTIME_DIR/containers/auth.json");
    expect(NULL, "myreg:5000", 1, "user1", "pa:ss", NULL, "docker config before auth.json");
    char *raf = p("raf.json");
    write_file(raf, "{\"auths\":{\"myreg:5000\":{\"auth\":\"cmFmOnJhZnB3\"}}}", 0600);
    setenv("REGISTRY_AUTH_FILE", raf, 1);
    expect(NULL, "myreg:5000", 1, "raf", "rafpw", NULL, "$REGISTRY_AUTH_FILE first");
    unsetenv("REGISTRY_AUTH_FILE");
    expect(raf, "pod.example", 0, NULL, NULL, NULL, "an explicit file is the only one read");
    unsetenv("XDG_RUNTIME_DIR");

    /* malformed files */
    char *bad = p("bad.json");
    write_file(bad, "{\"auths\": {", 0600);
    struct ex_cred c;
    struct kn_error *err = NULL;
    int removed = -1;
    int rc = ex_cred_lookup(bad, "x", &c, &err);
    ok(rc < 0 && err && strstr(err->msg, "malformed auth file '") &&
           strstr(err->msg, "bad.json': line 1:"),
       "malformed JSON names the file and line: %s", err ? err->msg : "");
    kn_err_free(err);
    err = NULL;
    char *badauth = p("badauth.json");
    write_file(badauth, "{\"auths\":{\"x\":{\"auth\":\"bm9jb2xvbg==\"}}}", 0600);
    char *msg = kn_asprintf("malformed auth file '%s': invalid \"auth\" for 'x' (want base64 of "
                            "user:password)",
                            badauth);
    expect_err(badauth, "x", msg, "auth without a colon is refused");
    free(msg);

    /* credential helpers: a fake docker-credential-test that records its stdin */
    char *bin = p("bin");
    mkdir(bin, 0700);
    char *helper = kn_asprintf("%s/docker-credential-test", bin);
    char *log = p("helper.log");
    char *stored = p("helper.stored");
    char *script = kn_asprintf(
        "#!/bin/sh\n"
        "if [ \"$1\" = store ]; then cat > '%s'; exit 0; fi\n"
        "read -r url\n"
        "echo \"$1 $url\" >> '%s'\n"
        "if [ \"$1\" = erase ]; then exit 0; fi\n"
        "case \"$url\" in\n"
        "  helped.example) echo '{\"ServerURL\":\"helped.example\",\"Username\":\"hu\","
        "\"Secret\":\"hs\"}' ;;\n"
        "  https://index.docker.io/v1/) echo '{\"Username\":\"<token>\",\"Secret\":\"itok\"}' ;;\n"
        "  broken.example) echo 'keychain is locked' >&2; exit 3 ;;\n"
        "  garbage.example) echo 'not json' ;;\n"
        "  *) echo 'credentials not found in native keychain'; exit 1 ;;\n"
        "esac\n",
        stored, log);
    write_file(helper, script, 0755);
    free(script);
    const char *oldpath = getenv("PATH");
    char *path = kn_asprintf("%s:%s", bin, oldpath ? oldpath : "/usr/bin:/bin");
    setenv("PATH", path, 1);
    char *hcfg = p("helpers.json");
    write_file(hcfg,
               "{\"auths\":{\"helped.example\":{\"auth\":\"bm90OnVzZWQ=\"},"
               "\"stored.example\":{\"auth\":\"c3Q6c3Rwdw==\"}},"
               "\"credHelpers\":{\"helped.example\":\"test\",\"index.docker.io\":\"test\","
               "\"broken.example\":\"test\",\"garbage.example\":\"test\","
               "\"nohelper.example\":\"nonexistent\"},"
               "\"credsStore\":\"test\"}",
               0600);
    expect(hcfg, "helped.example", 1, "hu", "hs", NULL, "credHelpers wins over auths");
    expect(hcfg, "docker.io", 1, NULL, NULL, "itok", "helper <token> user is an identity token");
    expect(hcfg, "stored.example", 1, "st", "stpw", NULL, "auths before credsStore");
    expect(hcfg, "unknown.example", 0, NULL, NULL, NULL, "credsStore miss: no credentials");
    msg = kn_asprintf("in '%s': credential helper 'docker-credential-test' failed for "
                      "'broken.example': keychain is locked",
                      hcfg);
    expect_err(hcfg, "broken.example", msg, "a failing helper is an error");
    free(msg);
    msg = kn_asprintf("in '%s': credential helper 'docker-credential-test' printed no valid JSON "
                      "credentials for 'garbage.example'",
                      hcfg);
    expect_err(hcfg, "garbage.example", msg, "a helper printing garbage is an error");
    free(msg);
    err = NULL;
    rc = ex_cred_lookup(hcfg, "nohelper.example", &c, &err);
    ok(rc < 0 && err &&
           strstr(err->msg, "cannot run credential helper "
                            "'docker-credential-nonexistent'"),
       "a missing helper: %s", err ? err->msg : "");
    kn_err_free(err);
    err = NULL;
    char *hl = read_all(log);
    is_str(hl,
           "get helped.example\nget https://index.docker.io/v1/\nget unknown.example\n"
           "get broken.example\nget garbage.example\n",
           "the helper got 'get' and the server URL on stdin");
    free(hl);
    /* login with a credsStore: the secret goes to the helper, auths keeps {} */
    char *scfg = p("storecfg.json");
    write_file(scfg, "{\"credsStore\":\"test\",\"auths\":{\"store.example\":{\"auth\":\"eDp5\"}}}",
               0600);
    rc = ex_cred_store(scfg, "store.example", "su", "sp", &err);
    ok(rc == 0, "store through credsStore%s%s", err ? ": " : "", err ? err->msg : "");
    char *sin = read_all(stored);
    is_str(sin, "{\"ServerURL\":\"store.example\",\"Username\":\"su\",\"Secret\":\"sp\"}",
           "  the helper got the credentials as JSON on stdin");
    free(sin);
    char *stext = read_all(scfg);
    ok(stext && strstr(stext, "\"store.example\": {}") && !strstr(stext, "\"auth\""),
       "  the file keeps an empty auths entry and no secret");
    free(stext);
    rc = ex_cred_erase(scfg, "store.example", &removed, &err);
    ok(rc == 0 && removed == 1, "erase through credsStore");
    hl = read_all(log);
    ok(hl && kn_str_endswith(hl, "erase store.example\n"), "  the helper got 'erase' and the URL");
    free(hl);
    free(scfg);
    free(stored);
    setenv("PATH", oldpath ? oldpath : "/usr/bin:/bin", 1);

    /* kiln login / logout: store and erase */
    char *lf = p("login/config.json");
    rc = ex_cred_store(lf, "docker.io", "me", "s3cret", &err);
    ok(rc == 0, "store into a new file (and directory)");
    struct stat st;
    ok(stat(lf, &st) == 0 && (st.st_mode & 0777) == 0600, "the file is mode 0600");
    char *dir_login = p("login");
    ok(stat(dir_login, &st) == 0 && (st.st_mode & 0777) == 0700, "its directory is 0700");
    expect(lf, "docker.io", 1, "me", "s3cret", NULL, "stored credentials read back");
    char *text = read_all(lf);
    ok(text && strstr(text, "\"https://index.docker.io/v1/\"") && strstr(text, "\"bWU6czNjcmV0\""),
       "docker.io is stored under https://index.docker.io/v1/ as base64");
    free(text);
    /* preserve other keys, replace an old entry of the same host */
    write_file(lf,
               "{\"auths\":{\"reg:1\":{\"auth\":\"b2xkOm9sZA==\"},\"other:2\":{\"auth\":"
               "\"eDp5\"}},\"credHelpers\":{\"gcr.io\":\"gcloud\"},\"psFormat\":\"x\"}",
               0644);
    rc = ex_cred_store(lf, "reg:1", "new", "pw", &err);
    ok(rc == 0, "store over an existing file");
    ok(stat(lf, &st) == 0 && (st.st_mode & 0777) == 0600, "rewritten with mode 0600");
    text = read_all(lf);
    ok(text && strstr(text, "\"credHelpers\"") && strstr(text, "\"gcloud\"") &&
           strstr(text, "\"psFormat\"") && strstr(text, "\"other:2\"") &&
           !strstr(text, "b2xkOm9sZA=="),
       "other keys kept, the old entry replaced");
    free(text);
    expect(lf, "reg:1", 1, "new", "pw", NULL, "new credentials read back");
    removed = -1;
    rc = ex_cred_erase(lf, "reg:1", &removed, &err);
    ok(rc == 0 && removed == 1, "erase removes one entry");
    expect(lf, "reg:1", 0, NULL, NULL, NULL, "no credentials after erase");
    expect(lf, "other:2", 1, "x", "y", NULL, "the other entry is still there");
    rc = ex_cred_erase(lf, "reg:1", &removed, &err);
    ok(rc == 0 && removed == 0, "erase again removes nothing");
    char *nofile = p("nothere.json");
    rc = ex_cred_erase(nofile, "reg:1", &removed, &err);
    ok(rc == 0 && removed == 0, "erase without a file is fine");
    kn_err_free(err);

    /* host normalization */
    static const char *norm[][2] = {
        {"https://index.docker.io/v1/", "docker.io"},
        {"index.docker.io", "docker.io"},
        {"registry-1.docker.io", "docker.io"},
        {"http://h:5000/v2/", "h:5000"},
        {"quay.io/ns/repo", "quay.io"},
        {"docker.io", "docker.io"},
    };
    for (size_t i = 0; i < KN_ARRAY_SIZE(norm); i++) {
        char *h = ex_cred_normalize_host(norm[i][0]);
        is_str(h, norm[i][1], "normalize '%s'", norm[i][0]);
        free(h);
    }

    free(nofile);
    free(dir_login);
    free(lf);
    free(hcfg);
    free(path);
    free(log);
    free(helper);
    free(bin);
    free(badauth);
    free(bad);
    free(raf);
    free(podauth);
    free(cont);
    free(run);
    free(dccfg);
    free(dc);
    free(cfg);
    free(dockerdir);
    return tap_done();
}
