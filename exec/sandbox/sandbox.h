/*
 * exec/sandbox: runs one RUN step, rootless.
 *
 * userns isolation: the step's process tree lives in new user, mount, pid,
 * ipc and uts namespaces (and a new net namespace for network "none"). The
 * caller's uid is root inside (plus its /etc/subuid range through
 * newuidmap, or, for real root, the whole uid space mapped 1:1). The root is
 * the snapshot's writable layer (overlayfs: the chain's lower dirs + a fresh
 * upper) mounted inside the step's mount namespace, so no mount of the step
 * is ever visible in the host's mount table. A tiny init (pid 1) sets up
 * /dev, /proc, /sys, /etc/{hosts,resolv.conf,hostname} and the extra mounts,
 * pivots into the root, detaches the old root, forks the command and
 * forwards its exit status. See docs/sandbox.md for the lifecycle.
 *
 * chroot isolation: for containers that cannot create user namespaces (a
 * default Kubernetes pod). The step runs chrooted in the scan snapshot's
 * materialized rootfs; if the caller may create a mount namespace (root with
 * CAP_SYS_ADMIN) /dev and /proc are set up there too, else the step sees the
 * directory as it is. Much weaker isolation: see docs/sandbox.md.
 *
 * Choosing: call ex_sandbox_resolve() once, then prepare the writable
 * root with ex_snapshot_rw_overlay() for userns or ex_snapshot_rw_scan()
 * (on a flattened rootfs, see ex_snapshot_flatten()) for chroot.
 *
 * Thread-safety: ex_sandbox_run() may run on several threads at once, each
 * with its own struct ex_sandbox. ex_sandbox_cancel() may be called from any
 * thread (and from a signal handler) while run is in progress.
 */
#ifndef KILN_EXEC_SANDBOX_H
#define KILN_EXEC_SANDBOX_H

#include "exec/snapshot/snapshot.h"

#include <stdint.h>
#include <sys/types.h>

enum ex_isolation {
    EX_ISOLATION_AUTO,   /* userns where the probe works, else chroot */
    EX_ISOLATION_USERNS, /* needs an EX_SNAPSHOT_OVERLAY or EX_SNAPSHOT_SCAN rw */
    EX_ISOLATION_CHROOT, /* needs an EX_SNAPSHOT_SCAN rw */
};

enum ex_network {
    EX_NETWORK_HOST, /* the host's network namespace, /etc/hosts and resolv.conf */
    EX_NETWORK_NONE, /* a new network namespace with only lo (down) */
};

enum ex_mount_type {
    EX_MOUNT_BIND,   /* host path -> target; readonly, or writable (discard_writes: overlay
                        with a throwaway upper, the host path is never changed) */
    EX_MOUNT_CACHE,  /* host dir bind-mounted read-write (RUN --mount=type=cache) */
    EX_MOUNT_TMPFS,  /* a tmpfs of `size` bytes (0: the kernel default) */
    EX_MOUNT_SECRET, /* host file copied into a private tmpfs with mode/uid/gid, bound ro */
    EX_MOUNT_SSH,    /* an ssh agent socket bound at target */
};

struct ex_mount {
    enum ex_mount_type type;
    const char *source; /* host path (all but tmpfs) */
    const char *target; /* absolute path in the step's root */
    bool readonly;
    bool discard_writes; /* EX_MOUNT_BIND only */
    uint64_t size;       /* EX_MOUNT_TMPFS */
    unsigned mode;       /* EX_MOUNT_SECRET (0 = 0400); an ssh socket is bound as it is */
    uid_t uid;           /* EX_MOUNT_SECRET owner, ids inside the step (must be mapped) */
    gid_t gid;
};

/* stream: 1 stdout, 2 stderr. Called on the thread that called run, one
 * complete line at a time (with its '\n'; the last piece may lack it). */
typedef void (*ex_output_fn)(void *ctx, int stream, const char *data, size_t len);

struct ex_sandbox_spec {
    enum ex_isolation isolation;
    struct ex_snapshot_rw *root; /* borrowed: the step's writable root */
    const char *const *argv;     /* NULL-terminated; argv[0] found in the step's PATH */
    const char *const *env;      /* NULL-terminated KEY=VALUE; PATH and HOME defaulted */
    const char *user;            /* "name", "uid", "name:group", "uid:gid"; NULL = root */
    const char *workdir;         /* absolute; created if missing (as Docker does); NULL = / */
    const char *hostname;        /* NULL = "kiln" */
    enum ex_network network;
    const struct ex_mount *mounts;
    size_t n_mounts;
    ex_output_fn output; /* NULL: output is only kept for the error tail */
    void *output_ctx;
    bool insecure; /* RUN --security=insecure: keep every capability of the
                    * namespace, no seccomp filter (the caller checks that
                    * the build allows it) */
};

struct ex_sandbox;

struct ex_sandbox *ex_sandbox_new(void);
void ex_sandbox_free(struct ex_sandbox *sb);

/* Runs the step to completion (blocking). Returns 0 when the command exited
 * 0. Otherwise -1 with:
 *  KN_E_EXEC  'process "/bin/sh -c exit 3" did not complete successfully:
 *             exit code: 3', err->detail = the last 10 lines of output;
 *             a command killed by signal S has exit code 128+S;
 *  KN_E_CANCELED  'canceled' after ex_sandbox_cancel();
 *  KN_E_NOTFOUND  unknown user / group, missing mount source;
 *  KN_E_IO / KN_E_UNSAFE  the sandbox could not be set up (names the step).
 * *exit_code (may be NULL) receives the command's exit code, or -1 when it
 * never ran. The writable root's upper dir holds the step's changes after
 * ex_snapshot_rw_finish(); mountpoints the sandbox had to create there are
 * removed again before run returns. No process, fd or mount survives run. */
int ex_sandbox_run(struct ex_sandbox *sb, const struct ex_sandbox_spec *spec, int *exit_code,
                   struct kn_error **err);

/* SIGKILLs the step's pid-namespace init (which takes the whole namespace
 * with it); run then returns KN_E_CANCELED. Async-signal-safe; may be
 * called before run starts (run then fails at once) or after it ended. */
void ex_sandbox_cancel(struct ex_sandbox *sb);

/* Which isolation works here: forks a child that creates a user namespace
 * and mounts an overlay in a temporary dir under workdir. Cached for the
 * process after the first call (thread-safe). Returns EX_ISOLATION_USERNS
 * or EX_ISOLATION_CHROOT. */
enum ex_isolation ex_sandbox_probe(const char *workdir);

/* Writes the id maps a step's user namespace gets (the caller as 0, its
 * /etc/subuid and /etc/subgid ranges as 1.. through newuidmap/newgidmap
 * when it has both; as real root, the whole range) for process pid, which
 * has just unshared its user namespace: so that other work in a namespace
 * (exec/ops' unpacking and packing) sees the ids a step saw. */
int ex_sandbox_write_idmap(pid_t pid, struct kn_error **err);

/* The isolation `want` resolves to (AUTO -> the probe). */
enum ex_isolation ex_sandbox_resolve(enum ex_isolation want, const char *workdir);

#endif
