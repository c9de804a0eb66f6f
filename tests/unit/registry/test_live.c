/*
 * The registry client against the real registries of the test fixture
 * (tests/fixture/start.sh: plain HTTP, TLS with basic auth and a private CA,
 * bearer tokens from token-server.py) and the fault proxy in front of the
 * plain one: resolve, pull, push (monolithic and chunked), cross-repository
 * mount, tags, auth flows (anonymous, basic, bearer, identity token, token
 * reuse and refresh, wrong password), retries, resume and digest checks.
 * Skips (77) when KILN_FIXTURE_STATE is not set.
 */
#include "exec/registry/internal.h"
#include "tap.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static char tmp[4096];
static const char *REG, *TLS, *TOK, *CA, *TLS_USER, *TLS_PASS, *TOK_USER, *TOK_PASS, *BASE_DIGEST;
static int store_n;

static const char *env(const char *k)
{
    const char *v = getenv(k);
    if (!v || !*v) {
        printf("# %s not set by the fixture\n", k);
        exit(1);
    }
    return v;
}

static struct ex_store *new_store(void)
{
    char root[4200];
    snprintf(root, sizeof(root), "%s/store%d", tmp, store_n++);
    struct kn_error *err = NULL;
    struct ex_store *s = ex_store_open(root, &err);
    if (!s) {
        printf("# cannot open a store: %s\n", err ? err->msg : "?");
        exit(1);
    }
    return s;
}

static struct ex_registry *new_reg(const char *ca, const char *insecure, int retries)
{
    struct ex_registry_opts o = {0};
    char *ins[1] = {(char *)insecure};
    if (insecure) {
        o.insecure = ins;
        o.ninsecure = 1;
    }
    o.ca_file = ca;
    o.retries = retries;
    o.max_parallel = 3;
    struct kn_error *err = NULL;
    struct ex_registry *r = ex_registry_new(&o, &err);
    if (!r) {
        printf("# ex_registry_new: %s\n", err ? err->msg : "?");
        exit(1);
    }
    return r;
}

static void ref(struct ex_ref *out, const char *fmt, ...) KN_PRINTF(2, 3);
static void ref(struct ex_ref *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = kn_vasprintf(fmt, ap);
    va_end(ap);
    struct kn_error *err = NULL;
    if (ex_ref_parse(s, out, &err) < 0) {
        printf("# bad reference %s: %s\n", s, err->msg);
        exit(1);
    }
    free(s);
}

/* ---- stderr capture (for the trace) ---- */
static int saved_stderr = -1;
static char capture_path[4200];

static void capture_start(const char *name)
{
    snprintf(capture_path, sizeof(capture_path), "%s/%s", tmp, name);
    fflush(stderr);
    saved_stderr = dup(2);
    int fd = open(capture_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    dup2(fd, 2);
    close(fd);
}

static char *capture_end(void)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    struct kn_buf b = KN_BUF_INIT;
    struct kn_error *err = NULL;
    kn_buf_read_file(&b, capture_path, 64 << 20, &err);
    kn_err_free(err);
    return kn_buf_detach(&b);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* ---- the fault proxy ---- */
static pid_t proxy_pid = -1;

static char *proxy_start(const char *mode, const char *count_s, const char *match,
                         const char *logname)
{
    char portfile[4200], logfile[4200], script[4200];
    snprintf(portfile, sizeof(portfile), "%s/proxy-%s.port", tmp, logname);
    snprintf(logfile, sizeof(logfile), "%s/%s", tmp, logname);
    snprintf(script, sizeof(script), "%s/faultproxy.py", env("KILN_TEST_FIXTURE"));
    unlink(portfile);
    proxy_pid = fork();
    if (proxy_pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        const char *argv[16];
        int i = 0;
        argv[i++] = "python3";
        argv[i++] = script;
        argv[i++] = "--upstream";
        argv[i++] = REG;
        argv[i++] = "--port-file";
        argv[i++] = portfile;
        argv[i++] = "--mode";
        argv[i++] = mode;
        argv[i++] = "--log";
        argv[i++] = logfile;
        if (count_s) {
            argv[i++] = "--count";
            argv[i++] = count_s;
        }
        if (match) {
            argv[i++] = "--match";
            argv[i++] = match;
        }
        argv[i] = NULL;
        execvp("python3", (char **)argv);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        struct kn_buf b = KN_BUF_INIT;
        struct kn_error *err = NULL;
        if (kn_buf_read_file(&b, portfile, 64, &err) == 0 && b.len > 0 &&
            b.data[b.len - 1] == '\n') {
            b.data[strcspn(b.data, "\n")] = '\0';
            char *hp = kn_asprintf("127.0.0.1:%s", b.data);
            kn_buf_release(&b);
            return hp;
        }
        kn_err_free(err);
        kn_buf_release(&b);
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    printf("# the fault proxy did not start\n");
    exit(1);
}

static char *proxy_stop(const char *logname)
{
    if (proxy_pid > 0) {
        /* the proxy logs a request after answering it: let it finish */
        struct timespec ts = {0, 300000000};
        nanosleep(&ts, NULL);
        kill(proxy_pid, SIGTERM);
        waitpid(proxy_pid, NULL, 0);
        proxy_pid = -1;
    }
    char logfile[4200];
    snprintf(logfile, sizeof(logfile), "%s/%s", tmp, logname);
    struct kn_buf b = KN_BUF_INIT;
    struct kn_error *err = NULL;
    kn_buf_read_file(&b, logfile, 1 << 20, &err);
    kn_err_free(err);
    return kn_buf_detach(&b);
}

static long ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- tests ---- */

static void test_plain_pull(void)
{
    struct ex_registry *r = new_reg(NULL, NULL, 0);
    struct ex_store *s = new_store();
    struct ex_ref rf;
    struct ex_image_manifest m;
    struct kn_error *err = NULL;
    ref(&rf, "%s/kiln/base:latest", REG);
    int rc = ex_registry_resolve(r, &rf, NULL, s, &m, &err);
    ok(rc == 0, "resolve kiln/base over plain http%s%s", err ? ": " : "", err ? err->msg : "");
    if (rc == 0) {
        is_str(m.digest, BASE_DIGEST, "  manifest digest is the fixture's");
        ok(m.config_json && strstr(m.config_json, "\"rootfs\""), "  config JSON loaded");
        ok(ex_store_has_blob(s, m.digest), "  manifest stored");
        ok(ex_store_has_blob(s, m.config.digest), "  config stored");
        ok(m.nlayers >= 1 && !ex_store_has_blob(s, m.layers[0].digest),
           "  layers not fetched by resolve");
        ex_image_manifest_release(&m);
    }
    ex_ref_release(&rf);

    /* pull the layered image: every layer lands in the store */
    ref(&rf, "%s/kiln/layered:latest", REG);
    rc = ex_registry_pull(r, &rf, NULL, s, &m, &err);
    ok(rc == 0, "pull kiln/layered%s%s", err ? ": " : "", err ? err->msg : "");
    if (rc == 0) {
        size_t have = 0;
        for (size_t i = 0; i < m.nlayers; i++)
            have += ex_store_has_blob(s, m.layers[i].digest);
        is_int(have, m.nlayers, "  all %zu layers in the store", m.nlayers);
        ok(m.nlayers >= 2, "  layered has several layers");
        ex_image_manifest_release(&m);
    }
    ex_ref_release(&rf);

    /* by digest */
    ref(&rf, "%s/kiln/base@%s", REG, BASE_DIGEST);
    rc = ex_registry_pull(r, &rf, NULL, s, &m, &err);
    ok(rc == 0, "pull by digest%s%s", err ? ": " : "", err ? err->msg : "");
    if (rc == 0) {
        is_str(m.digest, BASE_DIGEST, "  same digest");
        ex_image_manifest_release(&m);
    }
    ex_ref_release(&rf);

    /* raw manifest */
    struct kn_buf raw = KN_BUF_INIT;
    char *mt = NULL;
    char dg[KN_DIGEST_SIZE];
    ref(&rf, "%s/kiln/base", REG);
    rc = ex_registry_get_manifest(r, &rf, &raw, &mt, dg, &err);
    ok(rc == 0 && strcmp(dg, BASE_DIGEST) == 0, "get_manifest returns the raw manifest");
    char dg2[KN_DIGEST_SIZE];
    kn_sha256_digest(raw.data ? raw.data : "", raw.len, dg2);
    is_str(dg2, BASE_DIGEST, "  its bytes hash to its digest");
    free(mt);
    kn_buf_release(&raw);
    ex_ref_release(&rf);

    /* errors */
    ref(&rf, "%s/kiln/nope:latest", REG);
    rc = ex_registry_resolve(r, &rf, NULL, s, &m, &err);
    char *want = kn_asprintf("image '%s/kiln/nope:latest' not found: manifest unknown", REG);
    ok(rc < 0 && err && err->code == KN_E_NOTFOUND, "a missing image");
    is_str(err ? err->msg : NULL, want, "  message");
    free(want);
    kn_err_free(err);
    err = NULL;
    ex_ref_release(&rf);
    ref(&rf, "%s/kiln/base@sha256:%064d", REG, 0);
    rc = ex_registry_resolve(r, &rf, NULL, s, &m, &err);
    ok(rc < 0 && err && err->code == KN_E_NOTFOUND, "a missing digest: %s", err ? err->msg : "");
    kn_err_free(err);
    err = NULL;
    ex_ref_release(&rf);
    ex_store_close(s);
    ex_registry_free(r);
}

static uint64_t rng = 88172645463325252ull;
static void fill_random(char *buf, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        memcpy(buf + i, &rng, n - i < 8 ? n - i : 8);
    }
}

static void test_push(void)
{
    struct ex_registry *r = new_reg(NULL, NULL, 0);
    struct ex_store *s = new_store();
    struct kn_error *err = NULL;
    struct ex_ref src, dst;
    struct ex_image_manifest m;
    ref(&src, "%s/kiln/base:latest", REG);
    int rc = ex_registry_pull(r, &src, NULL, s, &m, &err);
    ok(rc == 0, "pull kiln/base to push it%s%s", err ? ": " : "", err ? err->msg : "");
    if (rc < 0)
        return;
    /* push to a new repository under two tags, blobs uploaded */
    ref(&dst, "%s/kiln/pushed-%ld:v1", REG, (long)getpid());
    rc = 0;
    for (size_t i = 0; i <= m.nlayers && rc == 0; i++)
        rc = ex_registry_push_blob(r, &dst, i == 0 ? m.config.digest : m.layers[i - 1].digest, s,
                                   NULL, &err);
    ok(rc == 0, "push the blobs%s%s", err ? ": " : "", err ? err->msg : "");
    char dg[KN_DIGEST_SIZE] = "";
    rc = ex_registry_push_manifest(r, &dst, m.media_type, m.manifest, m.manifest_len, dg, &err);
    ok(rc == 0, "push the manifest as v1%s%s", err ? ": " : "", err ? err->msg : "");
    is_str(dg, BASE_DIGEST, "  its digest");
    free(dst.tag);
    dst.tag = kn_strdup("v2");
    rc = ex_registry_push_manifest(r, &dst, m.media_type, m.manifest, m.manifest_len, dg, &err);
    ok(rc == 0, "push the manifest as v2");
    /* a second push finds every blob there already (HEAD) */
    rc = ex_registry_push_blob(r, &dst, m.config.digest, s, NULL, &err);
    ok(rc == 0, "pushing an existing blob is a no-op");
    /* pull both tags back into a fresh store */
    struct ex_store *s2 = new_store();
    for (int t = 1; t <= 2; t++) {
        free(dst.tag);
        dst.tag = kn_asprintf("v%d", t);
        struct ex_image_manifest m2;
        rc = ex_registry_pull(r, &dst, NULL, s2, &m2, &err);
        ok(rc == 0 && strcmp(m2.digest, BASE_DIGEST) == 0, "pull back tag v%d", t);
        if (rc == 0)
            ex_image_manifest_release(&m2);
    }
    ex_store_close(s2);

    /* a second pull into the same store fetches no blob */
    char *again = proxy_start("pass", NULL, NULL, "again.log");
    struct ex_ref viaa;
    ref(&viaa, "%s/kiln/base:latest", again);
    struct ex_image_manifest m3;
    rc = ex_registry_pull(r, &viaa, NULL, s, &m3, &err);
    char *alog = proxy_stop("again.log");
    ok(rc == 0, "pull again into the same store");
    if (rc == 0)
        ex_image_manifest_release(&m3);
    ok(count(alog, "/manifests/latest 200") == 1 && count(alog, "/blobs/") == 0,
       "  only the manifest is fetched, no blob");
    free(alog);
    free(again);
    ex_ref_release(&viaa);

    /* a big blob goes up in PATCH chunks, streamed from the store */
    size_t big = (size_t)EX_REG_CHUNK_THRESHOLD + 3 * 1024 * 1024 + 17;
    char *data = kn_malloc(big);
    fill_random(data, big);
    char bigdg[KN_DIGEST_SIZE];
    rc = ex_store_blob_put(s, data, big, NULL, bigdg, &err);
    free(data);
    ok(rc == 0, "a %zu-byte blob in the store", big);
    char *plog_name = "push-big.log";
    char *proxy = proxy_start("pass", NULL, NULL, plog_name);
    struct ex_ref viap;
    ref(&viap, "%s/kiln/big-%ld:latest", proxy, (long)getpid());
    rc = ex_registry_push_blob(r, &viap, bigdg, s, NULL, &err);
    ok(rc == 0, "push the big blob%s%s", err ? ": " : "", err ? err->msg : "");
    char *plog = proxy_stop(plog_name);
    ok(count(plog, "PATCH /v2/kiln/big-") >= 2, "  in several PATCH requests");
    ok(count(plog, "PUT /v2/kiln/big-") == 1, "  closed by one PUT");
    free(plog);
    struct ex_store *s3 = new_store();
    struct ex_ref direct;
    ref(&direct, "%s/kiln/big-%ld:latest", REG, (long)getpid());
    rc = ex_registry_fetch_blob(r, &direct, bigdg, s3, &err);
    ex_ref_release(&direct);
    ok(rc == 0 && ex_store_has_blob(s3, bigdg), "the big blob fetched back matches");
    ex_store_close(s3);
    free(proxy);

    /* cross-repository mount: no upload */
    proxy = proxy_start("pass", NULL, NULL, "mount.log");
    struct ex_ref mdst;
    ref(&mdst, "%s/kiln/mounted-%ld:latest", proxy, (long)getpid());
    rc = ex_registry_push_blob(r, &mdst, m.layers[0].digest, s, "kiln/base", &err);
    ok(rc == 0, "push with mount_from%s%s", err ? ": " : "", err ? err->msg : "");
    char *mlog = proxy_stop("mount.log");
    ok(strstr(mlog, "?mount=sha256:") && strstr(mlog, "&from=kiln/base 201"),
       "  mounted from kiln/base (201)");
    is_int(count(mlog, "PUT "), 0, "  nothing uploaded");
    free(mlog);
    free(proxy);
    ex_ref_release(&mdst);
    /* mount from a repository without the blob: 202, then a normal upload */
    char small[4096];
    fill_random(small, sizeof(small));
    char smalldg[KN_DIGEST_SIZE];
    ex_store_blob_put(s, small, sizeof(small), NULL, smalldg, &err);
    proxy = proxy_start("pass", NULL, NULL, "mount2.log");
    ref(&mdst, "%s/kiln/mounted2-%ld:latest", proxy, (long)getpid());
    rc = ex_registry_push_blob(r, &mdst, smalldg, s, "kiln/base", &err);
    ok(rc == 0, "mount of an unknown blob falls back to an upload");
    mlog = proxy_stop("mount2.log");
    ok(strstr(mlog, "&from=kiln/base 202") && count(mlog, "PUT ") == 1,
       "  202 on the mount, then one PUT");
    free(mlog);
    free(proxy);
    ex_ref_release(&mdst);

    ex_ref_release(&viap);
    ex_ref_release(&dst);
    ex_ref_release(&src);
    ex_image_manifest_release(&m);
    ex_store_close(s);
    ex_registry_free(r);
}

/* an OCI index pushed to the plain registry: platform selection end to end */
static void test_index(void)
{
    struct ex_registry *r = new_reg(NULL, NULL, 0);
    struct ex_store *s = new_store();
    struct kn_error *err = NULL;
    struct ex_image_manifest mb, ml;
    struct ex_ref rb, rl;
    ref(&rb, "%s/kiln/base:latest", REG);
    ref(&rl, "%s/kiln/layered:latest", REG);
    int rc = ex_registry_pull(r, &rb, NULL, s, &mb, &err);
    if (rc == 0)
        rc = ex_registry_pull(r, &rl, NULL, s, &ml, &err);
    ok(rc == 0, "pull base and layered for an index%s%s", err ? ": " : "", err ? err->msg : "");
    if (rc < 0)
        return;
    const struct ex_image_manifest *ms[2] = {&mb, &ml};
    for (int k = 0; k < 2 && rc == 0; k++) {
        struct ex_ref d;
        ref(&d, "%s/kiln/multi-%ld@%s", REG, (long)getpid(), ms[k]->digest);
        for (size_t i = 0; i <= ms[k]->nlayers && rc == 0; i++)
            rc = ex_registry_push_blob(r, &d,
                                       i == 0 ? ms[k]->config.digest : ms[k]->layers[i - 1].digest,
                                       s, k == 0 ? "kiln/base" : "kiln/layered", &err);
        if (rc == 0)
            rc = ex_registry_push_manifest(r, &d, ms[k]->media_type, ms[k]->manifest,
                                           ms[k]->manifest_len, NULL, &err);
        ex_ref_release(&d);
    }
    ok(rc == 0, "push both manifests by digest%s%s", err ? ": " : "", err ? err->msg : "");
    char *index = kn_asprintf(
        "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":["
        "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
        "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu,"
        "\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}}]}",
        EX_MT_OCI_INDEX, mb.media_type, mb.digest, mb.manifest_len, ml.media_type, ml.digest,
        ml.manifest_len);
    struct ex_ref ri;
    ref(&ri, "%s/kiln/multi-%ld:latest", REG, (long)getpid());
    char idg[KN_DIGEST_SIZE] = "";
    rc = ex_registry_push_manifest(r, &ri, EX_MT_OCI_INDEX, index, strlen(index), idg, &err);
    ok(rc == 0, "push the index%s%s", err ? ": " : "", err ? err->msg : "");
    struct ir_platform amd = {"linux", "amd64", NULL}, arm = {"linux", "arm64", NULL},
                       s390 = {"linux", "s390x", NULL};
    struct ex_image_manifest m;
    rc = ex_registry_resolve(r, &ri, &amd, s, &m, &err);
    ok(rc == 0 && strcmp(m.digest, mb.digest) == 0 && strcmp(m.index_digest, idg) == 0,
       "linux/amd64 from the index is base, index digest kept");
    if (rc == 0)
        ex_image_manifest_release(&m);
    rc = ex_registry_pull(r, &ri, &arm, s, &m, &err);
    ok(rc == 0 && strcmp(m.digest, ml.digest) == 0, "linux/arm64 (= v8) is layered");
    if (rc == 0)
        ex_image_manifest_release(&m);
    rc = ex_registry_resolve(r, &ri, &s390, s, &m, &err);
    char *want = kn_asprintf("no image for platform linux/s390x in %s/kiln/multi-%ld:latest "
                             "(available: linux/amd64, linux/arm64/v8)",
                             REG, (long)getpid());
    is_str(err ? err->msg : NULL, want, "no linux/s390x: the error lists the platforms");
    free(want);
    kn_err_free(err);
    /* get_manifest returns the index itself */
    err = NULL;
    struct kn_buf raw = KN_BUF_INIT;
    char *mt = NULL;
    char dg[KN_DIGEST_SIZE];
    rc = ex_registry_get_manifest(r, &ri, &raw, &mt, dg, &err);
    ok(rc == 0 && mt && strcmp(mt, EX_MT_OCI_INDEX) == 0 && strcmp(dg, idg) == 0,
       "get_manifest returns the index");
    free(mt);
    kn_buf_release(&raw);
    ex_ref_release(&ri);
    free(index);
    ex_image_manifest_release(&mb);
    ex_image_manifest_release(&ml);
    ex_ref_release(&rb);
    ex_ref_release(&rl);
    ex_store_close(s);
    ex_registry_free(r);
}

static void write_config(const char *text)
{
    char d[4200], f[4300];
    snprintf(d, sizeof(d), "%s/home/.docker", tmp);
    mkdir(d, 0700);
    snprintf(f, sizeof(f), "%s/config.json", d);
    FILE *fp = fopen(f, "w");
    fputs(text, fp);
    fclose(fp);
}

static void test_tls(void)
{
    struct kn_error *err = NULL;
    struct ex_store *s = new_store();
    struct ex_ref rf;
    struct ex_image_manifest m;
    ref(&rf, "%s/kiln/base:latest", TLS);
    write_config("{}");

    /* without the CA: verification fails, plainly */
    struct ex_registry *r = new_reg(NULL, NULL, 2);
    int rc = ex_registry_resolve(r, &rf, NULL, s, &m, &err);
    ok(rc < 0 && err && err->code == KN_E_NET && strstr(err->msg, "certificate"),
       "TLS without the CA fails verification: %s", err ? err->msg : "");
    kn_err_free(err);
    err = NULL;
    ex_registry_free(r);

    /* with the CA but no credentials */
    r = new_reg(CA, NULL, 0);
    rc = ex_registry_resolve(r, &rf, NULL, s, &m, &err);
    char *want = kn_asprintf("cannot get the manifest of %s/kiln/base:latest: authentication "
                             "required (no credentials for %s; run 'kiln login %s')",
                             TLS, TLS, TLS);
    ok(rc < 0 && err && err->code == KN_E_AUTH, "basic auth without credentials");
    is_str(err ? err->msg : NULL, want, "  message");
    free(want);
    kn_err_free(err);
    err = NULL;
    ex_registry_free(r);

    /* credentials from config.json */
    char *plain = kn_asprintf("%s:%s", TLS_USER, TLS_PASS);
    char *b64 = ex_base64_encode(plain, strlen(plain));
    char *cfg = kn_asprintf("{\"auths\":{\"%s\":{\"auth\":\"%s\"}}}", TLS, b64);
    write_config(cfg);
    r = new_reg(CA, NULL, 0);
    rc = ex_registry_pull(r, &rf, NULL, s, &m, &err);
    ok(rc == 0, "pull over TLS with basic auth from config.json%s%s", err ? ": " : "",
       err ? err->msg : "");
    if (rc == 0) {
        is_str(m.digest, BASE_DIGEST, "  digest");
        ex_image_manifest_release(&m);
    }
    ex_registry_free(r);
    /* SSL_CERT_FILE instead of ca_file */
    setenv("SSL_CERT_FILE", CA, 1);
    r = new_reg(NULL, NULL, 0);
    rc = ex_registry_resolve(r, &rf, NULL, s, &m, &err);
    ok(rc == 0, "SSL_CERT_FILE is honoured%s%s", err ? ": " : "", err ? err->msg : "");
    if (rc == 0)
        ex_image_manifest_release(&m);
    unsetenv("SSL_CERT_FILE");
    ex_registry_free(r);
    /* insecure: no verification */
    r = new_reg(NULL, TLS, 0);
    rc = ex_registry_resolve(r, &rf, NULL, s, &m, &err);
    ok(rc == 0, "an insecure host skips verification%s%s", err ? ": " : "", err ? err->msg : "");
    if (rc == 0)
        ex_image_manifest_release(&m);
    ex_registry_free(r);

    /* wrong password */
    char *badplain = kn_asprintf("%s:wrong", TLS_USER);
    char *badb64 = ex_base64_encode(badplain, strlen(badplain));
    char *badcfg = kn_asprintf("{\"auths\":{\"%s\":{\"auth\":\"%s\"}}}", TLS, badb64);
    write_config(badcfg);
    r = new_reg(CA, NULL, 0);
    rc = ex_registry_resolve(r, &rf, NULL, s, &m, &err);
    want = kn_asprintf("authentication to %s failed: invalid username or password", TLS);
    is_str(err ? err->msg : NULL, want, "a wrong password is refused");
    free(want);
    kn_err_free(err);
    err = NULL;

    /* login: verify then write; wrong password writes nothing */
    write_config("{\"credsStore\":\"\",\"other\":1}");
    rc = ex_registry_login(r, TLS, TLS_USER, "wrong", &err);
    ok(rc < 0 && err && err->code == KN_E_AUTH, "login with a wrong password fails: %s",
       err ? err->msg : "");
    kn_err_free(err);
    err = NULL;
    rc = ex_registry_login(r, TLS, TLS_USER, TLS_PASS, &err);
    ok(rc == 0, "login%s%s", err ? ": " : "", err ? err->msg : "");
    struct ex_cred c;
    rc = ex_cred_lookup(NULL, TLS, &c, &err);
    ok(rc == 1 && c.user && strcmp(c.user, TLS_USER) == 0 && c.password &&
           strcmp(c.password, TLS_PASS) == 0,
       "  the credentials are stored");
    ex_cred_release(&c);
    ex_registry_free(r);
    rc = ex_registry_logout(NULL, TLS, &err);
    ok(rc == 0, "logout");
    rc = ex_cred_lookup(NULL, TLS, &c, &err);
    is_int(rc, 0, "  the credentials are gone");
    rc = ex_registry_logout(NULL, TLS, &err);
    want = kn_asprintf("not logged in to %s", TLS);
    is_str(err ? err->msg : NULL, want, "logout again: not logged in");
    free(want);
    kn_err_free(err);

    free(badplain);
    free(badb64);
    free(badcfg);
    free(plain);
    free(b64);
    free(cfg);
    ex_ref_release(&rf);
    ex_store_close(s);
}

/* 0.0.0.0 reaches this machine but is not a loopback name: a host that
 * needs --insecure-registry to be spoken to over http or unverified TLS */
static void test_insecure(void)
{
    struct kn_error *err = NULL;
    struct ex_store *s = new_store();
    struct ex_image_manifest m;
    struct ex_ref rf;
    const char *port = strrchr(REG, ':') + 1;
    char *host = kn_asprintf("0.0.0.0:%s", port);
    ref(&rf, "%s/kiln/base:latest", host);
    struct ex_registry *r = new_reg(NULL, NULL, 2);
    int rc = ex_registry_resolve(r, &rf, NULL, s, &m, &err);
    ok(rc < 0 && err && err->code == KN_E_NET &&
           kn_str_startswith(err->msg, "cannot get the "
                                       "manifest of 0.0.0.0:"),
       "a plain-http registry not marked insecure is refused: %s", err ? err->msg : "");
    kn_err_free(err);
    err = NULL;
    ex_registry_free(r);
    r = new_reg(NULL, host, 2);
    rc = ex_registry_resolve(r, &rf, NULL, s, &m, &err);
    ok(rc == 0, "an insecure registry falls back from https to http%s%s", err ? ": " : "",
       err ? err->msg : "");
    if (rc == 0)
        ex_image_manifest_release(&m);
    ex_registry_free(r);
    ex_ref_release(&rf);
    free(host);
    ex_store_close(s);
}

static char *get_refresh_token(void)
{
    char cmd[8192];
    snprintf(cmd, sizeof(cmd),
             "curl -sf -X POST --data-urlencode grant_type=password --data-urlencode "
             "'username=%s' --data-urlencode 'password=%s' --data-urlencode 'service=%s' "
             "--data-urlencode client_id=test --data-urlencode access_type=offline '%s' | "
             "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"refresh_token\"])'",
             TOK_USER, TOK_PASS, env("KILN_TEST_TOKEN_SERVICE"), env("KILN_TEST_TOKEN_REALM"));
    FILE *p = popen(cmd, "r");
    char buf[8192] = "";
    if (!p || !fgets(buf, sizeof(buf), p))
        buf[0] = '\0';
    if (p)
        pclose(p);
    buf[strcspn(buf, "\n")] = '\0';
    return buf[0] ? kn_strdup(buf) : NULL;
}

static void test_token(void)
{
    struct kn_error *err = NULL;
    struct ex_store *s = new_store();
    struct ex_ref rf;
    struct ex_image_manifest m;
    ref(&rf, "%s/kiln/base:latest", TOK);
    write_config("{}");
    const char *realm = env("KILN_TEST_TOKEN_REALM");

    /* anonymous pull: one token for the repository, reused */
    struct ex_registry *r = new_reg(NULL, NULL, 0);
    int saved = kn_log_level;
    kn_log_level = KN_LOG_TRACE;
    capture_start("token-anon.trace");
    int rc1 = ex_registry_pull(r, &rf, NULL, s, &m, &err);
    if (rc1 == 0)
        ex_image_manifest_release(&m);
    struct ex_store *s2 = new_store();
    int rc2 = ex_registry_pull(r, &rf, NULL, s2, &m, &err);
    if (rc2 == 0)
        ex_image_manifest_release(&m);
    char *trace = capture_end();
    kn_log_level = saved;
    ok(rc1 == 0 && rc2 == 0, "anonymous pull with a bearer token, twice%s%s", err ? ": " : "",
       err ? err->msg : "");
    char *tokget = kn_asprintf("> GET %s?", realm);
    is_int(count(trace, tokget), 1, "  one token request for both pulls");
    ok(strstr(trace, "scope=repository%3Akiln%2Fbase%3Apull"), "  scoped to kiln/base:pull");
    ok(count(trace, "Authorization: Bearer <redacted>") >= 4,
       "  bearer sent, redacted in the trace");
    ok(!strstr(trace, "Bearer ey"), "  no token in the trace");
    free(trace);
    ex_store_close(s2);

    /* a 401 on a cached token: refreshed once */
    ex_registry_debug_spoil_tokens(r);
    kn_log_level = KN_LOG_TRACE;
    capture_start("token-refresh.trace");
    struct kn_buf raw = KN_BUF_INIT;
    char dg[KN_DIGEST_SIZE];
    int rc = ex_registry_get_manifest(r, &rf, &raw, NULL, dg, &err);
    trace = capture_end();
    kn_log_level = saved;
    ok(rc == 0, "a revoked token is refreshed once%s%s", err ? ": " : "", err ? err->msg : "");
    is_int(count(trace, tokget), 1, "  with one new token request");
    is_int(count(trace, "< HTTP/1.1 401"), 1, "  after one 401");
    free(trace);
    kn_buf_release(&raw);

    /* anonymous push is refused */
    struct ex_ref dst;
    ref(&dst, "%s/kiln/tokpush-%ld:latest", TOK, (long)getpid());
    ex_registry_pull(r, &rf, NULL, s, &m, &err);
    rc = ex_registry_push_blob(r, &dst, m.config.digest, s, NULL, &err);
    ok(rc < 0 && err && err->code == KN_E_AUTH, "anonymous push is refused: %s",
       err ? err->msg : "");
    kn_err_free(err);
    err = NULL;
    ex_registry_free(r);

    /* with credentials (trace must not show the password, its base64 or a token) */
    char *plain = kn_asprintf("%s:%s", TOK_USER, TOK_PASS);
    char *b64 = ex_base64_encode(plain, strlen(plain));
    char *cfg = kn_asprintf("{\"auths\":{\"%s\":{\"auth\":\"%s\"}}}", TOK, b64);
    write_config(cfg);
    r = new_reg(NULL, NULL, 0);
    kn_log_level = KN_LOG_TRACE;
    capture_start("token-push.trace");
    rc = 0;
    for (size_t i = 0; i <= m.nlayers && rc == 0; i++)
        rc = ex_registry_push_blob(r, &dst, i == 0 ? m.config.digest : m.layers[i - 1].digest, s,
                                   "kiln/base", &err);
    if (rc == 0)
        rc = ex_registry_push_manifest(r, &dst, m.media_type, m.manifest, m.manifest_len, dg, &err);
    trace = capture_end();
    kn_log_level = saved;
    ok(rc == 0, "push with a token for pull,push + mount scope%s%s", err ? ": " : "",
       err ? err->msg : "");
    ok(strstr(trace, "scope=repository%3Akiln%2Fbase%3Apull") && strstr(trace, "%3Apull%2Cpush"),
       "  token asked for both scopes");
    ok(!strstr(trace, TOK_PASS), "  the password is not in the trace");
    ok(!strstr(trace, b64), "  nor its base64");
    ok(!strstr(trace, "Bearer ey") && !strstr(trace, "\"token\""), "  nor a token");
    free(trace);
    ex_registry_free(r);

    /* identity token (OAuth2 refresh-token grant) */
    char *refresh = get_refresh_token();
    ok(refresh != NULL, "the token server issued a refresh token");
    if (refresh) {
        char *icfg = kn_asprintf("{\"auths\":{\"%s\":{\"identitytoken\":\"%s\"}}}", TOK, refresh);
        write_config(icfg);
        r = new_reg(NULL, NULL, 0);
        kn_log_level = KN_LOG_TRACE;
        capture_start("token-identity.trace");
        struct ex_ref d2;
        ref(&d2, "%s/kiln/identity-%ld:latest", TOK, (long)getpid());
        rc = ex_registry_push_blob(r, &d2, m.config.digest, s, NULL, &err);
        trace = capture_end();
        kn_log_level = saved;
        ok(rc == 0, "push with an identity token%s%s", err ? ": " : "", err ? err->msg : "");
        char *post = kn_asprintf("> POST %s", realm);
        ok(strstr(trace, post) != NULL, "  via the refresh-token grant POST");
        ok(!strstr(trace, refresh), "  the refresh token is not in the trace");
        free(post);
        free(trace);
        ex_ref_release(&d2);
        ex_registry_free(r);
        free(icfg);
        free(refresh);
    }

    /* a wrong password */
    char *badplain = kn_asprintf("%s:nope", TOK_USER);
    char *badb64 = ex_base64_encode(badplain, strlen(badplain));
    char *badcfg = kn_asprintf("{\"auths\":{\"%s\":{\"auth\":\"%s\"}}}", TOK, badb64);
    write_config(badcfg);
    r = new_reg(NULL, NULL, 0);
    struct ex_image_manifest m3;
    rc = ex_registry_resolve(r, &rf, NULL, s, &m3, &err);
    char *want = kn_asprintf("authentication to %s failed: invalid username or password", TOK);
    is_str(err ? err->msg : NULL, want, "a wrong password for the token server");
    free(want);
    kn_err_free(err);
    err = NULL;
    ex_registry_free(r);

    free(badplain);
    free(badb64);
    free(badcfg);
    free(tokget);
    free(plain);
    free(b64);
    free(cfg);
    ex_image_manifest_release(&m);
    ex_ref_release(&dst);
    ex_ref_release(&rf);
    ex_store_close(s);
    write_config("{}");
}

/* ---- a fake registry that redirects blob GETs to another port ---- */
static const char fake_py[] =
    "import http.server, socketserver, sys, threading\n"
    "LOG, PORTS = sys.argv[1], sys.argv[2]\n"
    "DATA = b'hello redirected blob\\n'\n"
    "class S(socketserver.ThreadingMixIn, http.server.HTTPServer):\n"
    "    daemon_threads = True\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    protocol_version = 'HTTP/1.1'\n"
    "    def log_message(self, *a):\n"
    "        pass\n"
    "    def reply(self, code, body=b'', headers=()):\n"
    "        self.send_response(code)\n"
    "        for k, v in headers:\n"
    "            self.send_header(k, v)\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def do_GET(self):\n"
    "        auth = self.headers.get('Authorization') or '-'\n"
    "        port = self.server.server_address[1]\n"
    "        with open(LOG, 'a') as f:\n"
    "            f.write('%d %s %s\\n' % (port, self.path, auth.split(' ')[0]))\n"
    "        if self.server is storage:\n"
    "            return self.reply(200, DATA)\n"
    "        if auth == '-':\n"
    "            return self.reply(401, b'{}', [('WWW-Authenticate', 'Basic realm=\"fake\"')])\n"
    "        if '/blobs/' in self.path:\n"
    "            loc = 'http://127.0.0.1:%d/data?X-Amz-Signature=topsecret' % "
    "storage.server_address[1]\n"
    "            return self.reply(307, b'', [('Location', loc)])\n"
    "        if self.path.endswith('/manifests/big'):\n"
    "            body = b'{\"schemaVersion\":2,\"x\":\"' + b'a' * (5 << 20) + b'\"}'\n"
    "            return self.reply(200, body, [('Content-Type', "
    "'application/vnd.oci.image.manifest.v1+json')])\n"
    "        return self.reply(404, b'{}')\n"
    "    do_HEAD = do_GET\n"
    "api = S(('127.0.0.1', 0), H)\n"
    "storage = S(('127.0.0.1', 0), H)\n"
    "threading.Thread(target=storage.serve_forever, daemon=True).start()\n"
    "with open(PORTS + '.tmp', 'w') as f:\n"
    "    f.write('%d\\n' % api.server_address[1])\n"
    "import os; os.rename(PORTS + '.tmp', PORTS)\n"
    "api.serve_forever()\n";

static void test_redirect(void)
{
    char script[4200], portfile[4200], logfile[4200];
    snprintf(script, sizeof(script), "%s/fake.py", tmp);
    snprintf(portfile, sizeof(portfile), "%s/fake.port", tmp);
    snprintf(logfile, sizeof(logfile), "%s/fake.log", tmp);
    FILE *f = fopen(script, "w");
    fputs(fake_py, f);
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 2);
        execlp("python3", "python3", script, logfile, portfile, (char *)NULL);
        _exit(127);
    }
    char *port = NULL;
    for (int i = 0; i < 200 && !port; i++) {
        struct kn_buf b = KN_BUF_INIT;
        struct kn_error *e = NULL;
        if (kn_buf_read_file(&b, portfile, 64, &e) == 0 && b.len) {
            b.data[strcspn(b.data, "\n")] = '\0';
            port = kn_buf_detach(&b);
        }
        kn_err_free(e);
        kn_buf_release(&b);
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    ok(port != NULL, "the fake registry started");
    if (!port) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        return;
    }
    char *host = kn_asprintf("127.0.0.1:%s", port);
    char *b64 = ex_base64_encode("fakeuser:fakepass", 17);
    char *cfg = kn_asprintf("{\"auths\":{\"%s\":{\"auth\":\"%s\"}}}", host, b64);
    write_config(cfg);

    struct ex_registry *r = new_reg(NULL, NULL, 2);
    struct ex_store *s = new_store();
    struct kn_error *err = NULL;
    char dg[KN_DIGEST_SIZE];
    kn_sha256_digest("hello redirected blob\n", 22, dg);
    struct ex_ref rf;
    ref(&rf, "%s/x/y:latest", host);
    int saved = kn_log_level;
    kn_log_level = KN_LOG_TRACE;
    capture_start("redirect.trace");
    int rc = ex_registry_fetch_blob(r, &rf, dg, s, &err);
    char *trace = capture_end();
    kn_log_level = saved;
    ok(rc == 0 && ex_store_has_blob(s, dg), "a redirected blob GET is followed%s%s",
       err ? ": " : "", err ? err->msg : "");
    struct kn_buf lb = KN_BUF_INIT;
    kn_buf_read_file(&lb, logfile, 1 << 20, NULL);
    char *api_line = kn_asprintf("%s /v2/x/y/blobs/%s Basic\n", port, dg);
    ok(lb.data && strstr(lb.data, api_line), "  the registry got Basic credentials");
    ok(lb.data && strstr(lb.data, "/data?X-Amz-Signature=topsecret -\n"),
       "  the storage host got no Authorization header");
    ok(strstr(trace, "X-Amz-Signature=<redacted>") && !strstr(trace, "topsecret"),
       "  the presigned URL's signature is redacted in the trace");
    free(api_line);
    free(trace);
    kn_buf_release(&lb);
    ex_ref_release(&rf);

    /* a manifest over the 4 MiB cap */
    ref(&rf, "%s/x/y:big", host);
    struct kn_buf raw = KN_BUF_INIT;
    rc = ex_registry_get_manifest(r, &rf, &raw, NULL, dg, &err);
    char *want = kn_asprintf("cannot get the manifest of %s/x/y:big: response is larger than "
                             "4194304 bytes",
                             host);
    ok(rc < 0 && err && err->code == KN_E_UNSAFE, "a manifest over 4 MiB is refused");
    is_str(err ? err->msg : NULL, want, "  message");
    free(want);
    kn_err_free(err);
    kn_buf_release(&raw);
    ex_ref_release(&rf);

    ex_store_close(s);
    ex_registry_free(r);
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    write_config("{}");
    free(cfg);
    free(b64);
    free(host);
    free(port);
}

static void test_faults(void)
{
    struct kn_error *err = NULL;
    struct ex_image_manifest m;
    struct ex_ref rf;

    /* drop mid-blob: resumed with Range */
    char *proxy = proxy_start("drop-mid-blob", "1", NULL, "drop.log");
    struct ex_registry *r = new_reg(NULL, NULL, 0);
    struct ex_store *s = new_store();
    ref(&rf, "%s/kiln/base:latest", proxy);
    int rc = ex_registry_pull(r, &rf, NULL, s, &m, &err);
    char *log = proxy_stop("drop.log");
    ok(rc == 0, "a dropped blob download is resumed%s%s", err ? ": " : "", err ? err->msg : "");
    ok(strstr(log, " 206 bytes=") != NULL, "  with a Range request answered 206");
    if (rc == 0)
        ex_image_manifest_release(&m);
    free(log);
    free(proxy);
    ex_ref_release(&rf);
    ex_store_close(s);

    /* 500 once, 429 once (Retry-After: 1) */
    proxy = proxy_start("500-once", "2", NULL, "500.log");
    s = new_store();
    ref(&rf, "%s/kiln/base:latest", proxy);
    rc = ex_registry_pull(r, &rf, NULL, s, &m, &err);
    log = proxy_stop("500.log");
    ok(rc == 0, "two 500s are retried%s%s", err ? ": " : "", err ? err->msg : "");
    is_int(count(log, " 500 "), 2, "  the proxy answered 500 twice");
    if (rc == 0)
        ex_image_manifest_release(&m);
    free(log);
    free(proxy);
    ex_ref_release(&rf);
    ex_store_close(s);

    proxy = proxy_start("429-once", "1", NULL, "429.log");
    s = new_store();
    ref(&rf, "%s/kiln/base:latest", proxy);
    long t0 = ms_now();
    rc = ex_registry_resolve(r, &rf, NULL, s, &m, &err);
    long dt = ms_now() - t0;
    log = proxy_stop("429.log");
    ok(rc == 0, "a 429 is retried%s%s", err ? ": " : "", err ? err->msg : "");
    ok(dt >= 1000, "  after its Retry-After (%ld ms)", dt);
    if (rc == 0)
        ex_image_manifest_release(&m);
    free(log);
    free(proxy);
    ex_ref_release(&rf);
    ex_store_close(s);

    /* wrong bytes: never stored, error names both digests */
    proxy = proxy_start("wrong-bytes", NULL, NULL, "wrong.log");
    s = new_store();
    ref(&rf, "%s/kiln/base:latest", proxy);
    rc = ex_registry_pull(r, &rf, NULL, s, &m, &err);
    log = proxy_stop("wrong.log");
    ok(rc < 0 && err && err->code == KN_E_DIGEST, "a corrupted blob fails the pull");
    ok(err && strstr(err->msg, "cannot fetch blob sha256:") &&
           strstr(err->msg, "digest mismatch: expected 'sha256:") &&
           strstr(err->msg, "', got 'sha256:"),
       "  the error names the blob and both digests: %s", err ? err->msg : "");
    struct ex_registry *rr = new_reg(NULL, NULL, 0);
    struct ex_ref direct;
    ref(&direct, "%s/kiln/base:latest", REG);
    struct ex_image_manifest md;
    if (ex_registry_resolve(rr, &direct, NULL, s, &md, NULL) == 0) {
        ok(!ex_store_has_blob(s, md.layers[0].digest), "  the corrupted layer is not stored");
        ex_image_manifest_release(&md);
    }
    ex_ref_release(&direct);
    ex_registry_free(rr);
    kn_err_free(err);
    err = NULL;
    free(log);
    free(proxy);
    ex_ref_release(&rf);
    ex_store_close(s);

    /* every blob request refused: retries run out */
    proxy = proxy_start("refuse", "0", "blobs", "refuse.log");
    s = new_store();
    ref(&rf, "%s/kiln/base:latest", proxy);
    t0 = ms_now();
    rc = ex_registry_pull(r, &rf, NULL, s, &m, &err);
    dt = ms_now() - t0;
    log = proxy_stop("refuse.log");
    char *prefix = kn_asprintf("cannot fetch blob sha256:");
    char *from = kn_asprintf(" from %s/kiln/base: ", proxy);
    ok(rc < 0 && err && err->code == KN_E_NET, "refused connections fail the pull");
    ok(err && kn_str_startswith(err->msg, prefix) && strstr(err->msg, from) &&
           kn_str_endswith(err->msg, "after 5 attempts"),
       "  after 5 attempts: %s", err ? err->msg : "");
    ok(dt >= 1000 && dt < 20000, "  with backoff between them (%ld ms)", dt);
    kn_err_free(err);
    err = NULL;
    free(prefix);
    free(from);
    free(log);
    free(proxy);
    ex_ref_release(&rf);
    ex_store_close(s);
    ex_registry_free(r);
}

int main(void)
{
    tap_fixture_env();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    REG = env("KILN_TEST_REGISTRY");
    TLS = env("KILN_TEST_REGISTRY_TLS");
    TOK = env("KILN_TEST_REGISTRY_TOKEN");
    CA = env("KILN_TEST_TLS_CA");
    TLS_USER = env("KILN_TEST_TLS_USER");
    TLS_PASS = env("KILN_TEST_TLS_PASS");
    TOK_USER = env("KILN_TEST_TOKEN_USER");
    TOK_PASS = env("KILN_TEST_TOKEN_PASS");
    BASE_DIGEST = env("KILN_TEST_BASE_DIGEST");
    snprintf(tmp, sizeof(tmp), "%s", tap_tmpdir());
    char home[4200];
    snprintf(home, sizeof(home), "%s/home", tmp);
    mkdir(home, 0700);
    setenv("HOME", home, 1);
    unsetenv("DOCKER_CONFIG");
    unsetenv("REGISTRY_AUTH_FILE");
    unsetenv("XDG_RUNTIME_DIR");
    unsetenv("SSL_CERT_FILE");

    test_plain_pull();
    test_push();
    test_index();
    test_tls();
    test_insecure();
    test_token();
    test_faults();
    test_redirect();
    curl_global_cleanup();
    return tap_done();
}
