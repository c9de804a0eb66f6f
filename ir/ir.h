/*
 * ir: the build graph every kiln module speaks.
 *
 * A graph is a list of vertices in topological order (a vertex's inputs are
 * always earlier vertices), each an op with typed parameters and ordered
 * inputs, plus the graph's outputs (a vertex, an image config, history).
 *
 * Every vertex has a digest: sha256 over a canonical encoding of its op, its
 * parameters and its inputs' digests, so equal work has equal names and
 * ir_graph_add() returns the existing vertex when the same work is added
 * twice. What a user sees but the work does not depend on (the source
 * location, the display name, the stage) lives beside the vertex, outside
 * its digest: moving a line in a Dockerfile does not bust the cache.
 *
 * Ownership: a graph owns everything reachable from it; strings and arrays
 * in vertices are allocated from the graph's arena (ir_graph_strdup() & co.)
 * and freed with the graph. A graph is not thread-safe while it is being
 * built; once built it is read-only and may be read from any thread.
 */
#ifndef KILN_IR_H
#define KILN_IR_H

#include "base/base.h"

#define IR_JSON_VERSION 1

/* Caps ir_graph_from_json enforces on untrusted input. */
#define IR_JSON_MAX_SIZE     (512 << 20) /* bytes of JSON */
#define IR_JSON_MAX_VERTICES 1000000
#define IR_JSON_MAX_ARRAY    1000000    /* entries of any other array */
#define IR_JSON_MAX_STRING   (1 << 20)  /* bytes of one string */
#define IR_JSON_MAX_DATA     (64 << 20) /* bytes of one mkfile's base64 data */

enum ir_op {
    IR_SOURCE_IMAGE,   /* "source.image": a base image by reference */
    IR_SOURCE_LOCAL,   /* "source.local": a named local context (directory) */
    IR_SOURCE_SCRATCH, /* "source.scratch": the empty filesystem */
    IR_SOURCE_HTTP,    /* "source.http": one file downloaded from a URL */
    IR_EXEC,           /* "exec": run a process on inputs[0] (RUN) */
    IR_FILE,           /* "file": copy/mkdir/mkfile/rm/symlink on inputs[0] (COPY, ADD, WORKDIR) */
    IR_MERGE,          /* "merge": layer inputs on top of each other (COPY --link) */
    IR_SOURCE_GIT,     /* "source.git": a ref of a git repository, checked out */
    IR_OP_COUNT
};

/* "source.image", ...; NULL for an out-of-range value. */
const char *ir_op_name(enum ir_op op);
/* -1 if unknown */
int ir_op_from_name(const char *name);

struct ir_platform {
    char *os;      /* "linux" */
    char *arch;    /* "amd64" */
    char *variant; /* "v8" or NULL */
};

struct ir_source_image {
    char *ref; /* as written after expansion, e.g. "alpine:3.19" or "host:5000/x@sha256:..." */
    struct ir_platform platform;
};

struct ir_source_local {
    char *name; /* "context" for the build context, else the --build-context name */
    /* .dockerignore-style patterns; exclude may hold "!"-exceptions, later ones win */
    char **include;
    size_t ninclude;
    char **exclude;
    size_t nexclude;
};

struct ir_source_http {
    char *url;
    char *checksum; /* "sha256:..." the download must match, or NULL */
    char *filename; /* base name of the file created, derived from the URL when NULL */
};

struct ir_source_git {
    char *remote;      /* the repository URL, without its #fragment */
    char *ref;         /* branch, tag or commit id; NULL: the remote's HEAD */
    char *subdir;      /* the directory of the checkout to use; NULL: its root */
    bool keep_git_dir; /* keep .git (ADD --keep-git-dir) */
};

enum ir_network { IR_NET_DEFAULT, IR_NET_HOST, IR_NET_NONE };
enum ir_security { IR_SEC_SANDBOX, IR_SEC_INSECURE };
enum ir_mount_type { IR_MOUNT_BIND, IR_MOUNT_CACHE, IR_MOUNT_TMPFS, IR_MOUNT_SECRET, IR_MOUNT_SSH };
enum ir_sharing { IR_SHARING_SHARED, IR_SHARING_PRIVATE, IR_SHARING_LOCKED };

struct ir_mount {
    enum ir_mount_type type;
    char *target;  /* absolute path in the container */
    int input;     /* bind / cache from=: index into the vertex's inputs, -1 for none */
    char *source;  /* path inside that input ("/" by default) */
    bool readonly; /* bind: true unless rw; cache: false unless ro */
    char *id;      /* cache id (defaults to target), secret id, ssh id */
    enum ir_sharing sharing;
    int mode;      /* cache/secret/ssh file mode, -1 for the default */
    int uid, gid;  /* -1 for the default */
    bool required; /* secret/ssh: fail when not provided */
    char *env;     /* secret: expose as this environment variable instead of a file */
    uint64_t size; /* tmpfs size in bytes, 0 = unlimited */
};

struct ir_exec {
    char **argv; /* argv[argc] == NULL */
    size_t argc;
    char **env; /* "KEY=VALUE", the whole environment of the process */
    size_t nenv;
    char *cwd;  /* absolute */
    char *user; /* "name", "uid", "name:group" or "uid:gid"; NULL = root */
    enum ir_network network;
    enum ir_security security;
    struct ir_mount *mounts;
    size_t nmounts;
    /* inputs[0] is the root filesystem; mounts refer to further inputs */
};

enum ir_file_kind { IR_FILE_COPY, IR_FILE_MKDIR, IR_FILE_MKFILE, IR_FILE_RM, IR_FILE_SYMLINK };

enum ir_file_flags {
    IR_FF_FOLLOW_SYMLINKS = 1 << 0, /* copy: follow a symlink given as source */
    IR_FF_DIR_CONTENTS = 1 << 1,    /* copy: a directory source copies its contents */
    IR_FF_WILDCARD = 1 << 2,        /* copy: src is a glob pattern */
    IR_FF_ALLOW_EMPTY_WILDCARD = 1 << 3,
    IR_FF_UNPACK = 1 << 4,          /* copy: extract a local tar archive (ADD) */
    IR_FF_CREATE_PARENTS = 1 << 5,  /* copy/mkdir/mkfile: create missing parent dirs */
    IR_FF_ALLOW_NOT_FOUND = 1 << 6, /* rm: a missing path is fine */
    IR_FF_PARENTS = 1 << 7,         /* copy: keep the source's parent dirs (COPY --parents) */
    IR_FF_DEST_IS_DIR = 1 << 8,     /* copy: dest ended in '/' (copy into it) */
};

struct ir_file_action {
    enum ir_file_kind kind;
    int src_input; /* copy: index into the vertex's inputs holding the sources */
    char *src;     /* copy: path in that input (glob when IR_FF_WILDCARD) */
    char *dest;    /* copy: destination; other kinds: the path acted on (absolute) */
    char *target;  /* symlink: link target */
    char *data;    /* mkfile: contents (may hold NULs) */
    size_t datalen;
    char *chown;    /* "user[:group]" resolved in the destination rootfs; NULL keeps 0:0 */
    int mode;       /* chmod bits, -1 keeps the source's mode */
    char *chmod;    /* symbolic chmod ("u+x,g-w") when mode cannot say it; else NULL */
    unsigned flags; /* enum ir_file_flags */
    char **exclude; /* copy: patterns not copied */
    size_t nexclude;
};

struct ir_file {
    struct ir_file_action *actions;
    size_t nactions;
};

struct ir_srcloc {
    char *file; /* "Dockerfile" as the user named it */
    int line;   /* 1-based first line of the instruction, 0 if none */
    int col;
    int end_line; /* last line (continuations, heredocs) */
};

struct ir_vertex {
    enum ir_op op;
    union {
        struct ir_source_image image;
        struct ir_source_local local;
        struct ir_source_http http;
        struct ir_source_git git;
        struct ir_exec exec;
        struct ir_file file;
    } u;
    uint32_t *inputs; /* indices of earlier vertices */
    size_t ninputs;
    char digest[KN_DIGEST_SIZE]; /* set by ir_graph_add */

    /* outside the digest */
    struct ir_srcloc loc;
    char *name;    /* for progress: "[build 2/5] RUN make" */
    char *stage;   /* stage name or index, for grouping in DOT output */
    bool no_cache; /* --no-cache-filter: always run */
};

struct ir_history {
    char *created_by; /* "RUN /bin/sh -c make # buildkit" */
    char *comment;
    bool empty_layer;
};

struct ir_output {
    char *name;      /* target stage name (or "default") */
    uint32_t vertex; /* the root filesystem */
    /* OCI image config JSON (the whole document: architecture, os, config{...},
     * no rootfs/history: exec fills those from the base image and the layers) */
    char *config;
    struct ir_history *history; /* one per instruction of the build, after the base's */
    size_t nhistory;
    char *base_ref; /* the base image of the final stage, NULL for scratch; informational */
};

struct ir_graph {
    struct kn_arena arena;
    struct ir_vertex *v;
    size_t nv, cap;
    struct ir_output *outputs;
    size_t noutputs, outcap;
    char **notes; /* lines the frontend wants shown with the graph (e.g. "not resolved") */
    size_t nnotes, notecap;
    size_t nviolations; /* how many notes are build-check violations (not in the JSON form) */
    void *index;        /* private: digest -> vertex */
};

struct ir_graph *ir_graph_new(void);
void ir_graph_free(struct ir_graph *g);

/* Allocation from the graph's arena, freed with the graph. */
char *ir_graph_strdup(struct ir_graph *g, const char *s);
char *ir_graph_strndup(struct ir_graph *g, const char *s, size_t n);
void *ir_graph_alloc(struct ir_graph *g, size_t n);
char **ir_graph_strv(struct ir_graph *g, char *const *v, size_t n); /* deep copy */

/* Adds a vertex. `tmpl` is copied shallowly: its strings and arrays must
 * already be allocated from g's arena (or be static/literal and live as long
 * as g). Every input must be < g->nv. Computes the digest; if a vertex with
 * the same digest exists, returns its index instead (the first one's
 * location and name are kept). Returns the vertex index, or -1 with *err on
 * invalid parameters (missing input, bad mount input index, ...). */
int64_t ir_graph_add(struct ir_graph *g, const struct ir_vertex *tmpl, struct kn_error **err);
/* Index of the vertex with this digest, or -1. */
int64_t ir_graph_find(const struct ir_graph *g, const char *digest);
/* Adds an output; config and history strings are copied into the arena. */
void ir_graph_add_output(struct ir_graph *g, const struct ir_output *out);
void ir_graph_add_note(struct ir_graph *g, const char *fmt, ...) KN_PRINTF(2, 3);

/* The canonical encoding the digest is computed over (for tests and debugging). */
char *ir_vertex_canonical(const struct ir_graph *g, const struct ir_vertex *v);
/* Recomputes a vertex's digest into out. */
void ir_vertex_compute_digest(const struct ir_graph *g, const struct ir_vertex *v,
                              char out[KN_DIGEST_SIZE]);

/* The vertices an output needs, as a bitmap (caller frees). */
bool *ir_graph_reachable(const struct ir_graph *g, const uint32_t *roots, size_t nroots);

/* JSON form: {"version":1,"vertices":[...],"outputs":[...]}; deterministic,
 * byte-identical across dump -> load -> dump. */
int ir_graph_to_json(const struct ir_graph *g, struct kn_buf *out, struct kn_error **err);
/* Loads and validates: unknown op, missing input, cycle, digest mismatch,
 * bad version are KN_E_PARSE errors. `name` is used in messages. */
struct ir_graph *ir_graph_from_json(const char *data, size_t len, const char *name,
                                    struct kn_error **err);
/* Graphviz DOT: stages as clusters, vertices labelled with instruction and line. */
void ir_graph_to_dot(const struct ir_graph *g, struct kn_buf *out);
/* Compact human-readable listing, one vertex a line. */
void ir_graph_to_text(const struct ir_graph *g, struct kn_buf *out);

#endif
