/*
 * exec/image: OCI image config, manifest and index; OCI layout reading; the
 * exporters (OCI layout directory, OCI archive, docker archive, local
 * rootfs); --iidfile and --metadata-file.
 *
 * An image in memory (struct ex_image) is its manifest (descriptor + the
 * exact bytes), its config (descriptor + the exact bytes) and its layer
 * descriptors, with the diff_ids and platform taken from the config. Every
 * blob it names is in the store. JSON documents are serialized once, and the
 * bytes that are hashed are the bytes that are stored and written.
 *
 * Docker schema 2 manifests and manifest lists are read as well; exporting
 * to an OCI layout or archive converts them to OCI (media types mapped as
 * skopeo does: the config and layer blobs keep their bytes, the manifest
 * is rewritten and so gets a new digest).
 *
 * Exporters write to a temporary name next to dest and rename into place:
 * a failure leaves nothing half-written at dest. Adding an image to an
 * existing OCI layout directory keeps the images already there (an entry
 * with the same ref name is replaced).
 *
 * Image ID (--iidfile): the config digest, as docker and podman define an
 * image ID; the metadata file carries the manifest digest as well.
 *
 * Documents from outside (registries, layouts) are checked against the caps
 * below before they are parsed. Thread-safety: every function may run on
 * several threads at once with different arguments.
 */
#ifndef KILN_EXEC_IMAGE_H
#define KILN_EXEC_IMAGE_H

#include "exec/layer/layer.h"
#include "exec/registry/registry.h"
#include "ir/ir.h"

/* ---- media types ---- */
#define EX_MT_OCI_MANIFEST         "application/vnd.oci.image.manifest.v1+json"
#define EX_MT_OCI_INDEX            "application/vnd.oci.image.index.v1+json"
#define EX_MT_OCI_CONFIG           "application/vnd.oci.image.config.v1+json"
#define EX_MT_DOCKER_MANIFEST      "application/vnd.docker.distribution.manifest.v2+json"
#define EX_MT_DOCKER_LIST          "application/vnd.docker.distribution.manifest.list.v2+json"
#define EX_MT_DOCKER_CONFIG        "application/vnd.docker.container.image.v1+json"
#define EX_MT_DOCKER_LAYER         "application/vnd.docker.image.rootfs.diff.tar"
#define EX_MT_DOCKER_FOREIGN_LAYER "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

/* ---- caps on documents read from outside ---- */
#define EX_MANIFEST_MAX      (4u << 20) /* a manifest or index (containerd's limit) */
#define EX_CONFIG_MAX        (8u << 20) /* an image config */
#define EX_INDEX_JSON_MAX    (8u << 20) /* an OCI layout's index.json */
#define EX_LAYERS_MAX        1000u      /* layers in one manifest */
#define EX_INDEX_ENTRIES_MAX 10000u     /* manifests in one index */

/* The OCI annotation naming an image in a layout's index.json, and
 * containerd's full-name annotation (written beside it). */
#define EX_ANNOT_REF_NAME   "org.opencontainers.image.ref.name"
#define EX_ANNOT_IMAGE_NAME "io.containerd.image.name"

/* ---- platforms ---- */
/* Parses "os/arch[/variant]" ("linux/arm64/v8"); KN_E_PARSE when malformed. */
int ex_platform_parse(const char *s, struct ir_platform *out, struct kn_error **err);
/* The platform kiln builds for by default: linux and the host's arch. */
void ex_platform_default(struct ir_platform *out);
void ex_platform_clear(struct ir_platform *p);
/* "os/arch[/variant]"; caller frees. */
char *ex_platform_format(const struct ir_platform *p);
/* True if `have` satisfies `want` (os and arch equal; want's variant, when
 * set, equal too, with arm64's "v8" as the default variant). */
bool ex_platform_match(const struct ir_platform *want, const struct ir_platform *have);

/* ---- manifests and indexes ---- */
struct ex_manifest {
    char *media_type; /* EX_MT_OCI_MANIFEST or EX_MT_DOCKER_MANIFEST */
    struct ex_descriptor config;
    struct ex_descriptor *layers;
    size_t nlayers;
};
/* Parses and validates a manifest (schemaVersion 2, known media types,
 * digests "sha256:<64 hex>", sizes >= 0, at most EX_LAYERS_MAX layers).
 * media_type: the Content-Type it came with or the descriptor's, may be NULL
 * (then the document's mediaType, else OCI). KN_E_PARSE errors name the
 * field: "invalid manifest: layers[2].digest: bad digest 'sha256:xyz'". */
int ex_manifest_decode(const char *data, size_t len, const char *media_type,
                       struct ex_manifest *out, struct kn_error **err);
void ex_manifest_release(struct ex_manifest *m);
/* Serializes an OCI manifest (compact, fixed key order) into out. */
void ex_manifest_build(const struct ex_descriptor *config, const struct ex_descriptor *layers,
                       size_t nlayers, struct kn_buf *out);

struct ex_index_entry {
    struct ex_descriptor desc;
    struct ir_platform platform; /* os/arch NULL when the entry has none */
    char *ref_name;              /* org.opencontainers.image.ref.name, or NULL */
    char *image_name;            /* io.containerd.image.name, or NULL */
};
struct ex_index {
    char *media_type; /* EX_MT_OCI_INDEX or EX_MT_DOCKER_LIST */
    struct ex_index_entry *manifests;
    size_t nmanifests;
};
/* Parses and validates an OCI index or a docker manifest list (also an OCI
 * layout's index.json). */
int ex_index_decode(const char *data, size_t len, const char *media_type, struct ex_index *out,
                    struct kn_error **err);
void ex_index_release(struct ex_index *ix);
/* The entry for `platform` (NULL: ex_platform_default), skipping attestation
 * manifests (platform unknown/unknown); -1 with KN_E_NOTFOUND listing the
 * platforms the index has. */
int ex_index_select(const struct ex_index *ix, const struct ir_platform *platform,
                    struct kn_error **err);
/* True for an index / manifest list media type. */
bool ex_media_type_is_index(const char *media_type);
/* True for a single-image manifest media type. */
bool ex_media_type_is_manifest(const char *media_type);
/* Sniffs the media type of a manifest document: its "mediaType", else
 * "manifests" -> OCI index, "layers" -> OCI manifest. NULL if neither.
 * Returns a static string. */
const char *ex_media_type_sniff(const char *data, size_t len);
/* The OCI media type for a docker one (manifest, list, config, layers);
 * others are returned as-is. Static string or mt itself. */
const char *ex_media_type_to_oci(const char *mt);
/* Rewrites a docker schema 2 manifest as an OCI manifest (media types
 * mapped; config and layer digests unchanged). An OCI manifest is copied
 * byte for byte. */
int ex_manifest_to_oci(const char *data, size_t len, struct kn_buf *out, struct kn_error **err);

/* ---- image config ---- */
/* Validates a config document: a JSON object with "architecture" and "os"
 * strings, "rootfs" {"type":"layers","diff_ids":[digests]} (when
 * require_rootfs), history entries well-formed. */
int ex_config_validate(const char *data, size_t len, bool require_rootfs, struct kn_error **err);

/* A config being assembled (for kiln build). Not thread-safe. */
struct ex_config;
/* From a document (e.g. the frontend's output config, which has no rootfs
 * and no history yet: both are created empty). */
struct ex_config *ex_config_parse(const char *data, size_t len, struct kn_error **err);
void ex_config_free(struct ex_config *c);
/* Copies rootfs.diff_ids and history from a base image's config (replacing
 * whatever c has). base_json NULL means scratch: both become empty. */
int ex_config_set_base(struct ex_config *c, const char *base_json, size_t len,
                       struct kn_error **err);
/* Appends one history entry and, when diff_id is not NULL, its layer's
 * diff_id to rootfs.diff_ids (when NULL the entry gets "empty_layer":true).
 * created: seconds since the epoch (see ex_image_created). comment may be NULL. */
void ex_config_add_history(struct ex_config *c, const char *diff_id, const char *created_by,
                           const char *comment, int64_t created);
/* Sets the top-level "created". */
void ex_config_set_created(struct ex_config *c, int64_t created);
size_t ex_config_ndiff_ids(const struct ex_config *c);
/* Serializes (compact, key order as read, new keys appended) into out. */
void ex_config_serialize(const struct ex_config *c, struct kn_buf *out);
/* The time to stamp an image with: sde when >= 0, else $SOURCE_DATE_EPOCH
 * when set and valid, else now. */
int64_t ex_image_created(int64_t sde);
/* True, with *t set, when sde >= 0 or $SOURCE_DATE_EPOCH fixes the time. */
bool ex_image_epoch(int64_t sde, int64_t *t);
/* RFC 3339 UTC: "2024-01-01T00:00:00Z". */
void ex_time_format(int64_t t, char out[32]);

/* ---- images ---- */
struct ex_image {
    struct ex_descriptor manifest; /* of the manifest: its media type, digest, size */
    char *manifest_json;           /* exact bytes, NUL-terminated */
    size_t manifest_len;
    struct ex_descriptor config;
    char *config_json; /* exact bytes, NUL-terminated */
    size_t config_len;
    struct ex_descriptor *layers;
    size_t nlayers;
    char (*diff_ids)[KN_DIGEST_SIZE];  /* nlayers entries, from the config's rootfs */
    struct ir_platform platform;       /* from the config */
    char index_digest[KN_DIGEST_SIZE]; /* the index it was selected from, "" if none */
    char *name; /* where it came from, when known: the layout entry's io.containerd.image.name
                 * (a full reference); NULL otherwise. kiln push mounts blobs from it. */
};
void ex_image_release(struct ex_image *img);

/* Builds an image from a manifest whose config blob is in the store
 * (validates the manifest and config, checks the layer count equals the
 * number of diff_ids). Copies everything it keeps. */
int ex_image_from_manifest(struct ex_store *s, const char *manifest, size_t len,
                           const char *media_type, struct ex_image *out, struct kn_error **err);
/* The same from what the registry client returns. */
int ex_image_from_registry(struct ex_store *s, const struct ex_image_manifest *m,
                           struct ex_image *out, struct kn_error **err);
/* kiln build's last step: stores the config bytes, builds an OCI manifest
 * over them and the layers, stores it, and fills out. */
int ex_image_commit(struct ex_store *s, const char *config_json, size_t config_len,
                    const struct ex_descriptor *layers, size_t nlayers, struct ex_image *out,
                    struct kn_error **err);
/* Converts a docker schema 2 image to OCI in place (new manifest stored in
 * the store); no-op for an OCI image. */
int ex_image_to_oci(struct ex_store *s, struct ex_image *img, struct kn_error **err);
/* Checks every blob of img is in the store; KN_E_NOTFOUND naming the first
 * missing one. */
int ex_image_check_blobs(struct ex_store *s, const struct ex_image *img, struct kn_error **err);

/* ---- OCI layouts (reading) ---- */
struct ex_layout_tag {
    char *name; /* ref name ("latest"), NULL for an untagged entry */
    struct ex_descriptor desc;
};
/* Lists the entries of DIR/index.json (checks oci-layout's version). */
int ex_oci_layout_list(const char *dir, struct ex_layout_tag **tags, size_t *ntags,
                       struct kn_error **err);
void ex_layout_tags_free(struct ex_layout_tag *tags, size_t ntags);
/* Splits "oci-layout://PATH[:TAG]" (the prefix optional) into path and tag
 * (NULL when absent). A ':' counts as a tag separator only after the last
 * '/'; "@sha256:..." selects by digest (tag gets "@sha256:..."). */
int ex_oci_ref_split(const char *ref, char **path, char **tag, struct kn_error **err);

enum ex_layout_load_flags {
    EX_LAYOUT_LAYERS = 1 << 0, /* also copy the layer blobs into the store */
};
/* Resolves TAG in the layout at dir (NULL: "latest", else the only image;
 * "@sha256:..." a manifest digest), follows an index to the manifest for
 * platform, copies manifest, config (and layers with EX_LAYOUT_LAYERS) into
 * the store verifying their digests, and fills out. Errors: "tag 'x' not
 * found in OCI layout 'dir' (tags: a, b)", "blob sha256:... missing from
 * OCI layout 'dir'". s may be NULL when flags is 0: nothing is stored (the
 * config is read from the layout). */
int ex_oci_layout_load(const char *dir, const char *tag, const struct ir_platform *platform,
                       struct ex_store *s, unsigned flags, struct ex_image *out,
                       struct kn_error **err);
/* The raw document (manifest or index) that TAG of the layout at dir names,
 * verified against its digest; *media_type (caller frees) from the index
 * entry or the document. */
int ex_oci_layout_get_manifest(const char *dir, const char *tag, struct kn_buf *out,
                               char **media_type, char digest[KN_DIGEST_SIZE],
                               struct kn_error **err);
/* A frontend resolver for oci-layout://PATH[:TAG]: the config document
 * (malloc'd) and the manifest digest, reading the layout directly (no
 * store). Matches fe_resolver's resolve() after the context argument. */
int ex_oci_layout_resolve(const char *path, const char *tag, const struct ir_platform *platform,
                          char **config_json, char digest[KN_DIGEST_SIZE], struct kn_error **err);
/* Extracts an OCI archive (a tar of a layout) into a new temporary
 * directory of the store; *dir gets its path (caller removes it with
 * ex_store_remove_tree and frees). */
int ex_oci_archive_extract(struct ex_store *s, const char *file, char **dir, struct kn_error **err);

/* ---- exporters ---- */
enum ex_output_type {
    EX_OUTPUT_OCI,      /* OCI layout directory, or archive when tar */
    EX_OUTPUT_DOCKER,   /* docker archive (docker load / podman load) */
    EX_OUTPUT_LOCAL,    /* the flattened root filesystem */
    EX_OUTPUT_REGISTRY, /* push (done by the caller with the registry client) */
};
/* One -o/--output SPEC (tools/output.c parses it). */
struct ex_output {
    enum ex_output_type type;
    char *dest;           /* NULL for registry */
    bool tar;             /* oci: write an archive (dest ends in ".tar" or tar=true) */
    struct kn_strv names; /* name=...: image references (comma-separated or repeated) */
};
void ex_output_release(struct ex_output *o);

/* DIR gets (or keeps) oci-layout and blobs/sha256/, and index.json an entry
 * for img annotated with ref name `tag` (NULL: untagged) and, when not NULL,
 * the full `image_name`. Blobs are copied from the store (reflinked where
 * the file system can; never hard-linked: the layout is the user's to
 * change). The image must be OCI (ex_image_to_oci). */
int ex_export_oci_layout(struct ex_store *s, const struct ex_image *img, const char *dir,
                         const char *tag, const char *image_name, struct kn_error **err);
/* The same layout as a tar file (streamed from the store). */
int ex_export_oci_archive(struct ex_store *s, const struct ex_image *img, const char *file,
                          const char *tag, const char *image_name, struct kn_error **err);
/* A docker archive: manifest.json [{Config, RepoTags, Layers}], repositories,
 * the config as HEX.json and each layer as an uncompressed DIFFIDHEX.tar
 * (decompressed on the fly). repo_tags: references ("kiln/x:1"), may be empty. */
int ex_export_docker_archive(struct ex_store *s, const struct ex_image *img, const char *file,
                             char *const *repo_tags, size_t ntags, struct kn_error **err);
/* Unpacks every layer in order into DIR (whiteouts applied; owners kept
 * when running as root). DIR must not exist or be empty. */
int ex_export_local(struct ex_store *s, const struct ex_image *img, const char *dir,
                    struct kn_error **err);
/* Runs the exporter for o (not registry: KN_E_INTERNAL). Names: o->names,
 * else default_name (may be NULL). Converts to OCI for the OCI exporter
 * (img may be updated). */
int ex_image_export(struct ex_store *s, struct ex_image *img, const struct ex_output *o,
                    const char *default_name, struct kn_error **err);

/* --iidfile: writes the image ID (the config digest), no newline. */
int ex_write_iidfile(const char *path, const struct ex_image *img, struct kn_error **err);
/* --metadata-file: {"containerimage.config.digest", "containerimage.digest"
 * (manifest), "containerimage.descriptor" {mediaType,digest,size},
 * "image.name" (names joined with ',', omitted when none)}. */
int ex_write_metadata(const char *path, const struct ex_image *img, char *const *names,
                      size_t nnames, struct kn_error **err);

/* ---- inspect ---- */
/* The JSON kiln inspect prints: {"name", "digest", "mediaType", "manifest",
 * "config", "platforms" (for an index)}. manifest: the raw document at the
 * reference (an index or a manifest); img: the selected platform's image
 * (NULL to omit config). Pretty-printed, with a trailing newline. */
int ex_image_inspect_json(const char *name, const char *digest, const char *media_type,
                          const char *manifest, size_t manifest_len, const struct ex_image *img,
                          struct kn_buf *out, struct kn_error **err);

/* ---- small file helpers ---- */
/* Writes data to path through a temporary name in the same directory. */
int ex_write_file_atomic(const char *path, const void *data, size_t len, struct kn_error **err);

#endif
