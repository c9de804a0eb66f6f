/*
 * exec/sandbox private declarations: the precomputed plan the child runs
 * (every string and buffer allocated before clone, so the child makes only
 * system calls), user resolution, and the child's entry points.
 */
#ifndef KILN_EXEC_SANDBOX_INTERNAL_H
#define KILN_EXEC_SANDBOX_INTERNAL_H

#include "exec/sandbox/sandbox.h"

#include <sys/types.h>

/* ---- user resolution (user.c) ---- */

struct sb_user {
    uid_t uid;
    gid_t gid;
    gid_t *groups; /* supplementary groups, owned */
    size_t n_groups;
    char *home; /* owned */
};

/* Opens a file of the step's root for reading (fd or -1 with KN_E_NOTFOUND). */
typedef int (*sb_open_fn)(void *ctx, const char *path, struct kn_error **err);

/* Resolves spec ("name", "uid", "name:group", "uid:gid", NULL = root) against
 * the root's /etc/passwd and /etc/group, as runc does. */
int sb_user_resolve(const char *spec, sb_open_fn open_fn, void *ctx, struct sb_user *out,
                    struct kn_error **err);
void sb_user_release(struct sb_user *u);

/* ---- the mount plan ---- */

enum sb_op_kind {
    SB_OP_FS,       /* a new filesystem: fstype, options (key=value,...) */
    SB_OP_BIND,     /* a recursive bind of a host path (or of a path inside the root) */
    SB_OP_SYMLINK,  /* symlink src -> target (inside the root) */
    SB_OP_SECRET,   /* copy src into the private stage tmpfs, then bind it read-only */
    SB_OP_OVERLAY,  /* overlay of host src with a throwaway upper (discard writes) */
    SB_OP_MASK,     /* bind /dev/null over a file or an empty ro tmpfs over a dir */
    SB_OP_READONLY, /* rebind a path of the root onto itself read-only */
};

struct sb_op {
    enum sb_op_kind kind;
    const char *src;    /* host path / fstype / symlink target */
    const char *target; /* relative to the root, no leading '/' */
    const char *opts;   /* SB_OP_FS: "k=v,k2,..." (mutable copy, split in the child) */
    unsigned attr;      /* MOUNT_ATTR_* applied to the new mount */
    bool file;          /* the mountpoint is a file, not a directory */
    bool optional;      /* a missing target or refused mount is not an error */
    bool track;         /* record a created mountpoint (it is in the step's layer) */
    bool in_host;       /* src is resolved in the host, else inside the root */
    unsigned mode;      /* SECRET: file mode */
    uid_t uid;          /* SECRET owner */
    gid_t gid;
    const char *upper, *work; /* OVERLAY: host scratch dirs */
    const char *stage;        /* SECRET: host path of the stage dir */
    /* written by the child, read by the parent through the report pipe */
};

/* What the child reports for each tracked op: how many leading path
 * components existed; the rest it created. */
struct sb_created {
    int op;
    int existing; /* components of target that existed before */
};

#define SB_ERRMSG 512
struct sb_child_error {
    int errnum;
    int exec_failed; /* the command could not be executed */
    char msg[SB_ERRMSG];
};

struct sb_plan {
    /* namespaces */
    unsigned long clone_flags;
    bool userns;
    bool pivot; /* mount ns + pivot_root (else plain chroot) */
    const struct ex_snapshot_rw *rw;
    const char *root; /* host path the root is mounted on (or the chroot dir) */
    struct sb_op *ops;
    size_t n_ops;
    const char *hostname;
    bool loopback_up;
    /* process */
    char *const *argv;
    char *const *envp;
    const char *path_env; /* the PATH to search argv[0] in */
    const char *workdir;  /* relative to the root, no leading '/'; "" for / */
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    size_t n_groups;
    bool set_groups;
    int cap_last;
    bool insecure; /* RUN --security=insecure: all capabilities, no seccomp filter */
    /* fds, all O_CLOEXEC in the parent */
    int sync_rd; /* the parent writes one byte when the id maps are in place */
    int err_wr;  /* struct sb_child_error on failure */
    int rep_wr;  /* struct sb_created records */
    int stdout_wr, stderr_wr, stdin_rd;
};

/* Installs the step's seccomp filter (seccomp.c); no_new_privs must be
 * set. Async-signal-safe. 0, or -1 with errno. */
int sb_seccomp_install(void);

/* The child: runs as pid 1 of the new pid namespace (or as the chroot
 * parent), never returns. Async-signal-safe only. */
KN_NORETURN void sb_child_main(const struct sb_plan *p);

/* The pid of the step's init while it runs, else 0 (for tests). */
pid_t sb_sandbox_pid(struct ex_sandbox *sb);

#endif
