/*
 * Unit tests for OCI layouts and the archive exporters: a layout made here
 * (a gzip layer built with libarchive + zlib, its config and manifest) is
 * read, loaded into a store, exported again as a layout (added to an
 * existing one too), an OCI archive and a docker archive, whose members
 * are read back and compared byte for byte; plus the error cases (unknown
 * tag, missing and corrupt blobs, destinations left untouched on failure),
 * the local rootfs exporter, and the iidfile / metadata files.
 */
#include "tap.h"

#include "exec/image/internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <sys/stat.h>
#include <pthread.h>
#include <zlib.h>

static char root[4096];

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static char *read_all(const char *path, size_t *len)
{
    struct kn_buf b = KN_BUF_INIT;
    struct kn_error *e = NULL;
    if (kn_buf_read_file(&b, path, 1 << 26, &e) < 0) {
        kn_err_free(e);
        return NULL;
    }
    if (len)
        *len = b.len;
    return kn_buf_detach(&b);
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* A tar with two files, in memory. */
static void make_tar(struct kn_buf *out)
{
    struct archive *a = archive_write_new();
    archive_write_set_format_pax_restricted(a);
    size_t cap = 1 << 16, used = 0;
    char *buf = kn_malloc(cap);
    archive_write_open_memory(a, buf, cap, &used);
    const char *names[] = {"etc/", "etc/hello", "bin/"};
    const char *data[] = {NULL, "hello world\n", NULL};
    for (int i = 0; i < 3; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, names[i]);
        archive_entry_set_filetype(e, data[i] ? AE_IFREG : AE_IFDIR);
        archive_entry_set_perm(e, data[i] ? 0644 : 0755);
        archive_entry_set_size(e, data[i] ? (la_int64_t)strlen(data[i]) : 0);
        archive_entry_set_mtime(e, 1704067200, 0);
        archive_write_header(a, e);
        if (data[i])
            archive_write_data(a, data[i], strlen(data[i]));
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
    kn_buf_add(out, buf, used);
    free(buf);
}

static void gzip_buf(const struct kn_buf *in, struct kn_buf *out)
{
    z_stream zs = {0};
    deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
    size_t cap = deflateBound(&zs, in->len) + 64;
    unsigned char *buf = kn_malloc(cap);
    zs.next_in = (unsigned char *)in->data;
    zs.avail_in = (uInt)in->len;
    zs.next_out = buf;
    zs.avail_out = (uInt)cap;
    deflate(&zs, Z_FINISH);
    kn_buf_add(out, buf, cap - zs.avail_out);
    deflateEnd(&zs);
    free(buf);
}

struct fixture {
    struct kn_buf tar, gz;
    char diff_id[KN_DIGEST_SIZE], layer[KN_DIGEST_SIZE], config[KN_DIGEST_SIZE],
        manifest[KN_DIGEST_SIZE];
    char *config_json;
    struct kn_buf manifest_json;
};

static void put_blob(const char *dir, const char *digest, const void *data, size_t len)
{
    char *p = kn_asprintf("%s/blobs/sha256/%s", dir, kn_digest_hex(digest));
    write_file(p, data, len);
    free(p);
}

/* Writes an OCI layout at dir with the image tagged `tag`. */
static void make_layout(const char *dir, const char *tag, struct fixture *f)
{
    memset(f, 0, sizeof(*f));
    make_tar(&f->tar);
    gzip_buf(&f->tar, &f->gz);
    kn_sha256_digest(f->tar.data, f->tar.len, f->diff_id);
    kn_sha256_digest(f->gz.data, f->gz.len, f->layer);
    f->config_json = kn_asprintf("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{},"
                                 "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]}}",
                                 f->diff_id);
    kn_sha256_digest(f->config_json, strlen(f->config_json), f->config);
    struct ex_descriptor c = {EX_MT_OCI_CONFIG, "", strlen(f->config_json)};
    struct ex_descriptor l = {EX_MT_OCI_LAYER_GZIP, "", f->gz.len};
    memcpy(c.digest, f->config, KN_DIGEST_SIZE);
    memcpy(l.digest, f->layer, KN_DIGEST_SIZE);
    ex_manifest_build(&c, &l, 1, &f->manifest_json);
    kn_sha256_digest(f->manifest_json.data, f->manifest_json.len, f->manifest);
    char *p = kn_asprintf("%s/blobs/sha256", dir);
    char *cmd = kn_asprintf("mkdir -p '%s'", p);
    if (system(cmd) != 0)
        exit(1);
    free(cmd);
    free(p);
    p = kn_asprintf("%s/oci-layout", dir);
    write_file(p, "{\"imageLayoutVersion\":\"1.0.0\"}", 30);
    free(p);
    put_blob(dir, f->layer, f->gz.data, f->gz.len);
    put_blob(dir, f->config, f->config_json, strlen(f->config_json));
    put_blob(dir, f->manifest, f->manifest_json.data, f->manifest_json.len);
    char *idx =
        kn_asprintf("{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\","
                    "\"digest\":\"%s\",\"size\":%zu,\"annotations\":{\"%s\":\"%s\"}}]}",
                    EX_MT_OCI_MANIFEST, f->manifest, f->manifest_json.len, EX_ANNOT_REF_NAME, tag);
    p = kn_asprintf("%s/index.json", dir);
    write_file(p, idx, strlen(idx));
    free(p);
    free(idx);
}

static void fixture_release(struct fixture *f)
{
    kn_buf_release(&f->tar);
    kn_buf_release(&f->gz);
    kn_buf_release(&f->manifest_json);
    free(f->config_json);
}

/* Reads every member of a tar file: names joined with '\n' into names and
 * the content of `want` into content. */
static int read_tar(const char *file, const char *want, struct kn_buf *names,
                    struct kn_buf *content)
{
    struct archive *a = archive_read_new();
    archive_read_support_format_tar(a);
    if (archive_read_open_filename(a, file, 1 << 16) != ARCHIVE_OK) {
        archive_read_free(a);
        return -1;
    }
    struct archive_entry *e;
    while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
        kn_buf_addf(names, "%s\n", archive_entry_pathname(e));
        if (want && strcmp(archive_entry_pathname(e), want) == 0) {
            char buf[4096];
            la_ssize_t n;
            while ((n = archive_read_data(a, buf, sizeof(buf))) > 0)
                kn_buf_add(content, buf, (size_t)n);
        }
    }
    archive_read_free(a);
    return 0;
}

static const char *msg(struct kn_error **e)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf), "%s", *e ? (*e)->msg : "(none)");
    kn_err_free(*e);
    *e = NULL;
    return buf;
}

struct conc {
    struct ex_store *s;
    const struct ex_image *img;
    const char *dir;
    char tag[16];
    int rc;
};

static void *conc_export(void *arg)
{
    struct conc *c = arg;
    struct kn_error *e = NULL;
    c->rc = ex_export_oci_layout(c->s, c->img, c->dir, c->tag, NULL, &e);
    kn_err_free(e);
    return NULL;
}

int main(void)
{
    snprintf(root, sizeof(root), "%s", tap_tmpdir());
    struct kn_error *e = NULL;
    char *src = kn_asprintf("%s/src", root);
    struct fixture f;
    make_layout(src, "base", &f);

    /* listing and reading */
    struct ex_layout_tag *tags;
    size_t ntags;
    is_int(ex_oci_layout_list(src, &tags, &ntags, &e), 0, "list tags");
    is_int(ntags, 1, "one entry");
    is_str(tags[0].name, "base", "tag name");
    is_str(tags[0].desc.digest, f.manifest, "tag digest");
    ex_layout_tags_free(tags, ntags);

    char *cfg = NULL;
    char dg[KN_DIGEST_SIZE];
    is_int(ex_oci_layout_resolve(src, NULL, NULL, &cfg, dg, &e), 0,
           "resolve without a tag takes the only image");
    is_str(cfg, f.config_json, "resolver returns the config bytes");
    is_str(dg, f.manifest, "resolver returns the manifest digest");
    free(cfg);

    struct ex_image img;
    is_int(ex_oci_layout_load(src, "nope", NULL, NULL, 0, &img, &e), -1, "unknown tag");
    char *want = kn_asprintf("tag 'nope' not found in OCI layout '%s' (tags: base)", src);
    is_str(msg(&e), want, "unknown tag message lists the tags");
    free(want);
    char *nolayout = kn_asprintf("%s/none", root);
    is_int(ex_oci_layout_load(nolayout, NULL, NULL, NULL, 0, &img, &e), -1, "not a layout");
    want = kn_asprintf("'%s' is not an OCI layout (no oci-layout file)", nolayout);
    is_str(msg(&e), want, "not a layout message");
    free(want);

    /* into a store */
    char *sroot = kn_asprintf("%s/store", root);
    struct ex_store *s = ex_store_open(sroot, &e);
    ok(s != NULL, "store opens");
    if (!s) {
        printf("# %s\n", msg(&e));
        return tap_done();
    }
    is_int(ex_oci_layout_load(src, "base", NULL, s, EX_LAYOUT_LAYERS, &img, &e), 0,
           "load into the store");
    is_str(img.manifest.digest, f.manifest, "manifest digest");
    is_str(img.config.digest, f.config, "config digest");
    is_int(img.nlayers, 1, "one layer");
    is_str(img.diff_ids[0], f.diff_id, "diff_id");
    ok(ex_store_has_blob(s, f.layer), "layer blob in the store");
    ok(ex_store_has_blob(s, f.config), "config blob in the store");
    ok(ex_store_has_blob(s, f.manifest), "manifest blob in the store");
    is_int(ex_image_check_blobs(s, &img, &e), 0, "all blobs present");

    /* missing and corrupt blobs */
    char *broken = kn_asprintf("%s/broken", root);
    struct fixture f2;
    make_layout(broken, "latest", &f2);
    char *lp = kn_asprintf("%s/blobs/sha256/%s", broken, kn_digest_hex(f2.config));
    unlink(lp);
    struct ex_image tmp;
    is_int(ex_oci_layout_load(broken, NULL, NULL, NULL, 0, &tmp, &e), -1, "missing config blob");
    want = kn_asprintf("blob %s missing from OCI layout '%s'", f2.config, broken);
    is_str(msg(&e), want, "missing blob named");
    free(want);
    write_file(lp, "{}", 2);
    is_int(ex_oci_layout_load(broken, NULL, NULL, NULL, 0, &tmp, &e), -1, "corrupt config blob");
    ok(e && e->code == KN_E_DIGEST, "digest error");
    want = kn_asprintf("blob %s in OCI layout '%s' does not match its digest", f2.config, broken);
    is_str(msg(&e), want, "corrupt blob named");
    free(want);
    free(lp);
    fixture_release(&f2);

    /* export: a new layout */
    char *out = kn_asprintf("%s/out", root);
    is_int(ex_export_oci_layout(s, &img, out, "v1", "example.com/x:v1", &e), 0, "export layout");
    char *p = kn_asprintf("%s/index.json", out);
    char *idx = read_all(p, NULL);
    want = kn_asprintf("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":"
                       "\"%s\",\"digest\":\"%s\",\"size\":%zu,\"annotations\":{\"%s\":\"example."
                       "com/x:v1\",\"%s\":\"v1\"}}]}",
                       EX_MT_OCI_INDEX, EX_MT_OCI_MANIFEST, f.manifest, f.manifest_json.len,
                       EX_ANNOT_IMAGE_NAME, EX_ANNOT_REF_NAME);
    is_str(idx, want, "index.json");
    free(want);
    free(idx);
    free(p);
    p = kn_asprintf("%s/oci-layout", out);
    idx = read_all(p, NULL);
    is_str(idx, "{\"imageLayoutVersion\":\"1.0.0\"}", "oci-layout file");
    free(idx);
    free(p);
    p = kn_asprintf("%s/blobs/sha256/%s", out, kn_digest_hex(f.layer));
    size_t len;
    char *blob = read_all(p, &len);
    ok(blob && len == f.gz.len && memcmp(blob, f.gz.data, len) == 0, "layer blob copied exactly");
    free(blob);
    struct stat st1, st2;
    char *sp = ex_store_blob_path(s, f.layer);
    ok(stat(p, &st1) == 0 && stat(sp, &st2) == 0 && st1.st_ino != st2.st_ino,
       "layer blob copied, not hard-linked: editing the layout cannot change the store");
    free(sp);
    free(p);

    /* add a second tag, then replace it */
    is_int(ex_export_oci_layout(s, &img, out, "v2", NULL, &e), 0, "add to the layout");
    is_int(ex_oci_layout_list(out, &tags, &ntags, &e), 0, "list");
    is_int(ntags, 2, "two entries");
    is_str(tags[1].name, "v2", "second tag");
    ex_layout_tags_free(tags, ntags);
    is_int(ex_export_oci_layout(s, &img, out, "v2", NULL, &e), 0, "same tag again");
    is_int(ex_oci_layout_list(out, &tags, &ntags, &e), 0, "list");
    is_int(ntags, 2, "the entry is replaced, not added");
    ex_layout_tags_free(tags, ntags);

    /* concurrent additions lose nothing */
    struct conc cs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        cs[i] = (struct conc){.s = s, .img = &img, .dir = out};
        snprintf(cs[i].tag, sizeof(cs[i].tag), "c%d", i);
        pthread_create(&th[i], NULL, conc_export, &cs[i]);
    }
    int crc = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        crc |= cs[i].rc;
    }
    is_int(crc, 0, "four concurrent exports succeed");
    is_int(ex_oci_layout_list(out, &tags, &ntags, &e), 0, "list");
    is_int(ntags, 6, "all four entries are there");
    ex_layout_tags_free(tags, ntags);

    /* not a layout */
    char *plain = kn_asprintf("%s/plain", root);
    mkdir(plain, 0755);
    p = kn_asprintf("%s/file", plain);
    write_file(p, "x", 1);
    free(p);
    is_int(ex_export_oci_layout(s, &img, plain, "v1", NULL, &e), -1, "non-empty non-layout dir");
    want = kn_asprintf("'%s' exists and is not an OCI layout", plain);
    is_str(msg(&e), want, "refused");
    free(want);

    /* OCI archive */
    char *tarf = kn_asprintf("%s/img.tar", root);
    is_int(ex_export_oci_archive(s, &img, tarf, "latest", NULL, &e), 0, "oci archive");
    struct kn_buf names = KN_BUF_INIT, content = KN_BUF_INIT;
    char *mname = kn_asprintf("blobs/sha256/%s", kn_digest_hex(f.manifest));
    is_int(read_tar(tarf, mname, &names, &content), 0, "archive readable");
    want = kn_asprintf("oci-layout\nindex.json\nblobs/\nblobs/sha256/\nblobs/sha256/%s\n"
                       "blobs/sha256/%s\nblobs/sha256/%s\n",
                       kn_digest_hex(f.layer), kn_digest_hex(f.config), kn_digest_hex(f.manifest));
    is_str(names.data, want, "archive members");
    free(want);
    is_str(content.data, f.manifest_json.data, "manifest member bytes");
    kn_buf_release(&names);
    kn_buf_release(&content);
    free(mname);
    char *xdir = NULL;
    is_int(ex_oci_archive_extract(s, tarf, &xdir, &e), 0, "archive extracts");
    is_int(ex_oci_layout_load(xdir, "latest", NULL, NULL, 0, &tmp, &e), 0, "and loads");
    is_str(tmp.manifest.digest, f.manifest, "same manifest");
    ex_image_release(&tmp);
    ex_store_remove_tree(xdir, NULL);
    free(xdir);
    p = kn_asprintf("%s/notar", root);
    write_file(p, "hello", 5);
    is_int(ex_oci_archive_extract(s, p, &xdir, &e), -1, "not an archive");
    want = kn_asprintf("cannot read OCI archive '%s': Unrecognized archive format", p);
    is_str(msg(&e), want, "not an archive message");
    free(want);
    free(p);
    p = kn_asprintf("%s/nonexistent.tar", root);
    is_int(ex_oci_archive_extract(s, p, &xdir, &e), -1, "missing archive");
    want = kn_asprintf("OCI archive '%s' not found", p);
    is_str(msg(&e), want, "missing archive message");
    free(want);
    free(p);

    /* docker archive */
    char *dock = kn_asprintf("%s/docker.tar", root);
    char *rt[] = {"example.com/x:v1", "busybox"};
    is_int(ex_export_docker_archive(s, &img, dock, rt, 2, &e), 0, "docker archive");
    if (e)
        printf("# %s\n", msg(&e));
    char *lname = kn_asprintf("%s.tar", kn_digest_hex(f.diff_id));
    is_int(read_tar(dock, lname, &names, &content), 0, "docker archive readable");
    want =
        kn_asprintf("%s\n%s.json\nmanifest.json\nrepositories\n", lname, kn_digest_hex(f.config));
    is_str(names.data, want, "docker archive members");
    free(want);
    ok(content.len == f.tar.len && memcmp(content.data, f.tar.data, f.tar.len) == 0,
       "layer stored uncompressed, byte for byte");
    kn_buf_reset(&names);
    kn_buf_reset(&content);
    read_tar(dock, "manifest.json", &names, &content);
    want = kn_asprintf("[{\"Config\":\"%s.json\",\"RepoTags\":[\"example.com/x:v1\","
                       "\"busybox:latest\"],\"Layers\":[\"%s\"]}]",
                       kn_digest_hex(f.config), lname);
    is_str(content.data, want, "manifest.json");
    free(want);
    kn_buf_reset(&names);
    kn_buf_reset(&content);
    read_tar(dock, "repositories", &names, &content);
    want = kn_asprintf("{\"example.com/x\":{\"v1\":\"%s\"},\"busybox\":{\"latest\":\"%s\"}}",
                       kn_digest_hex(f.diff_id), kn_digest_hex(f.diff_id));
    is_str(content.data, want, "repositories");
    free(want);
    kn_buf_release(&names);
    kn_buf_release(&content);
    free(lname);

    /* failures leave nothing at dest */
    struct ex_image bad;
    memset(&bad, 0, sizeof(bad));
    is_int(ex_oci_layout_load(src, "base", NULL, NULL, 0, &bad, &e), 0, "load again");
    snprintf(bad.layers[0].digest, KN_DIGEST_SIZE, "sha256:%064d", 0);
    char *d2 = kn_asprintf("%s/fail.tar", root);
    is_int(ex_export_docker_archive(s, &bad, d2, NULL, 0, &e), -1, "missing layer in the store");
    want = kn_asprintf("blob sha256:%064d (layer 1) missing from the store", 0);
    is_str(msg(&e), want, "names the blob");
    free(want);
    ok(!exists(d2), "no docker archive left behind");
    char *d3 = kn_asprintf("%s/fail-layout", root);
    is_int(ex_export_oci_layout(s, &bad, d3, "x", NULL, &e), -1, "layout export fails too");
    kn_err_free(e);
    e = NULL;
    ok(!exists(d3), "no layout left behind");
    char *cmd = kn_asprintf("ls -A '%s' | grep -c kiln-", root);
    FILE *pf = popen(cmd, "r");
    char line[32] = "";
    if (!fgets(line, sizeof(line), pf))
        line[0] = 0;
    pclose(pf);
    is_str(line, "0\n", "no temporary files left");
    free(cmd);
    ex_image_release(&bad);
    free(d2);
    free(d3);

    /* local rootfs, and the dispatch from an output spec */
    char *rootfs = kn_asprintf("%s/rootfs", root);
    struct ex_output o = {.type = EX_OUTPUT_LOCAL, .dest = rootfs};
    is_int(ex_image_export(s, &img, &o, NULL, &e), 0, "local export");
    if (e)
        printf("# %s\n", msg(&e));
    p = kn_asprintf("%s/etc/hello", rootfs);
    idx = read_all(p, NULL);
    is_str(idx, "hello world\n", "file content in the rootfs");
    struct stat lst;
    ok(stat(p, &lst) == 0 && (lst.st_mode & 07777) == 0644, "file mode kept");
    free(idx);
    free(p);
    p = kn_asprintf("%s/bin", rootfs);
    ok(stat(p, &lst) == 0 && S_ISDIR(lst.st_mode), "directory unpacked");
    free(p);
    is_int(ex_image_export(s, &img, &o, NULL, &e), -1, "a non-empty dest is refused");
    want = kn_asprintf("'%s' exists and is not empty", rootfs);
    is_str(msg(&e), want, "message");
    free(want);
    char *rootfs2 = kn_asprintf("%s/rootfs2", root);
    struct ex_image bad2;
    is_int(ex_oci_layout_load(src, "base", NULL, NULL, 0, &bad2, &e), 0, "load again");
    snprintf(bad2.layers[0].digest, KN_DIGEST_SIZE, "sha256:%064d", 1);
    o.dest = rootfs2;
    is_int(ex_image_export(s, &bad2, &o, NULL, &e), -1, "missing layer");
    kn_err_free(e);
    e = NULL;
    ok(!exists(rootfs2), "no rootfs left behind");
    ex_image_release(&bad2);
    char *named = kn_asprintf("%s/named", root);
    struct ex_output on = {.type = EX_OUTPUT_OCI, .dest = named};
    kn_strv_push(&on.names, "example.com/x:v9");
    is_int(ex_image_export(s, &img, &on, "ignored:tag", &e), 0, "oci export by spec");
    is_int(ex_oci_layout_list(named, &tags, &ntags, &e), 0, "list");
    is_str(ntags ? tags[0].name : NULL, "v9", "the tag of the first name is the ref name");
    ex_layout_tags_free(tags, ntags);
    kn_strv_release(&on.names);
    struct ex_output oreg = {.type = EX_OUTPUT_REGISTRY};
    is_int(ex_image_export(s, &img, &oreg, NULL, &e), -1, "registry is not an exporter here");
    ok(e && e->code == KN_E_INTERNAL, "internal error");
    kn_err_free(e);
    e = NULL;
    free(named);
    free(rootfs);
    free(rootfs2);

    /* iidfile and metadata */
    p = kn_asprintf("%s/iid", root);
    is_int(ex_write_iidfile(p, &img, &e), 0, "iidfile");
    idx = read_all(p, NULL);
    is_str(idx, f.config, "iidfile holds the config digest");
    free(idx);
    free(p);
    p = kn_asprintf("%s/meta.json", root);
    char *nm[] = {"a/b:1", "c/d:2"};
    is_int(ex_write_metadata(p, &img, nm, 2, &e), 0, "metadata file");
    idx = read_all(p, NULL);
    json_t *j = json_loads(idx, 0, NULL);
    is_str(json_string_value(json_object_get(j, "containerimage.digest")), f.manifest,
           "containerimage.digest");
    is_str(json_string_value(json_object_get(j, "containerimage.config.digest")), f.config,
           "containerimage.config.digest");
    is_str(json_string_value(json_object_get(j, "image.name")), "a/b:1,c/d:2", "image.name");
    json_t *dsc = json_object_get(j, "containerimage.descriptor");
    is_str(json_string_value(json_object_get(dsc, "mediaType")), EX_MT_OCI_MANIFEST,
           "descriptor media type");
    is_int(json_integer_value(json_object_get(dsc, "size")), f.manifest_json.len,
           "descriptor size");
    json_decref(j);
    free(idx);
    free(p);

    ex_image_release(&img);
    ex_store_close(s);
    fixture_release(&f);
    free(src);
    free(sroot);
    free(out);
    free(plain);
    free(tarf);
    free(dock);
    free(broken);
    free(nolayout);
    return tap_done();
}
