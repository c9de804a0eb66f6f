/*
 * The seccomp filter of a RUN step, in the spirit of Docker's default
 * profile for a process without CAP_SYS_ADMIN: what would reach outside
 * the step's namespaces, or into the kernel's global state, fails with
 * EPERM. That is new namespaces (unshare, setns, clone with a CLONE_NEW*
 * flag; clone3, whose flags a filter cannot read, fails with ENOSYS so
 * that libc falls back to clone), mounts, the kernel keyring, modules,
 * kexec, BPF, perf events, userfaultfd, io_uring, the clock, swap, reboot,
 * accounting, quotas, the kernel log, handles to files by inode, and port
 * I/O. Everything else is allowed: builds run compilers, package managers
 * and test suites, not a fixed program.
 *
 * The filter checks the architecture: on x86_64 the i386 entry points
 * (int 0x80) get the same list with their own numbers, and the x32 ABI
 * (rarely enabled, never needed by a build) is refused whole; any other
 * architecture is refused. RUN --security=insecure (with --allow
 * security.insecure) runs without it.
 *
 * Built from constants only, in the child after fork: no allocation.
 */
#include "internal.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#define NS_FLAGS                                                                                   \
    (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |     \
     CLONE_NEWCGROUP)

#if defined(__x86_64__)
#define NATIVE_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define NATIVE_ARCH AUDIT_ARCH_AARCH64
#else
#error "the seccomp filter knows x86_64 and aarch64"
#endif

/* the native numbers of the syscalls that fail with EPERM */
static const int denied[] = {
    SYS_unshare,
    SYS_setns,
    SYS_mount,
    SYS_umount2,
    SYS_pivot_root,
#ifdef SYS_open_tree
    SYS_open_tree,
    SYS_move_mount,
    SYS_fsopen,
    SYS_fsconfig,
    SYS_fsmount,
    SYS_fspick,
#endif
#ifdef SYS_mount_setattr
    SYS_mount_setattr,
#endif
    SYS_keyctl,
    SYS_add_key,
    SYS_request_key,
    SYS_init_module,
    SYS_finit_module,
    SYS_delete_module,
    SYS_kexec_load,
#ifdef SYS_kexec_file_load
    SYS_kexec_file_load,
#endif
    SYS_bpf,
    SYS_perf_event_open,
    SYS_userfaultfd,
#ifdef SYS_io_uring_setup
    SYS_io_uring_setup,
    SYS_io_uring_enter,
    SYS_io_uring_register,
#endif
    SYS_settimeofday,
    SYS_clock_settime,
    SYS_clock_adjtime,
    SYS_swapon,
    SYS_swapoff,
    SYS_reboot,
    SYS_acct,
    SYS_quotactl,
    SYS_syslog,
    SYS_open_by_handle_at,
    SYS_vhangup,
#ifdef SYS_quotactl_fd
    SYS_quotactl_fd,
#endif
#if defined(__x86_64__)
    SYS_iopl,
    SYS_ioperm,
    SYS_uselib,
#endif
#ifdef SYS_lookup_dcookie
    SYS_lookup_dcookie,
#endif
};

#if defined(__x86_64__)
/* the same calls through the i386 entry points (arch/x86/entry/syscalls/syscall_32.tbl) */
static const int denied_i386[] = {
    310 /* unshare */,
    346 /* setns */,
    21 /* mount */,
    52 /* umount2 */,
    217 /* pivot_root */,
    428 /* open_tree */,
    429 /* move_mount */,
    430 /* fsopen */,
    431 /* fsconfig */,
    432 /* fsmount */,
    433 /* fspick */,
    442 /* mount_setattr */,
    288 /* keyctl */,
    286 /* add_key */,
    287 /* request_key */,
    128 /* init_module */,
    350 /* finit_module */,
    129 /* delete_module */,
    283 /* kexec_load */,
    357 /* bpf */,
    336 /* perf_event_open */,
    374 /* userfaultfd */,
    425 /* io_uring_setup */,
    426 /* io_uring_enter */,
    427 /* io_uring_register */,
    79 /* settimeofday */,
    264 /* clock_settime */,
    343 /* clock_adjtime */,
    87 /* swapon */,
    115 /* swapoff */,
    88 /* reboot */,
    51 /* acct */,
    131 /* quotactl */,
    103 /* syslog */,
    342 /* open_by_handle_at */,
    111 /* vhangup */,
    110 /* iopl */,
    101 /* ioperm */,
    86 /* uselib */,
    253 /* lookup_dcookie */,
    443 /* quotactl_fd */,
    403 /* clock_settime64 */,
    405 /* clock_adjtime64 */,
};
#define I386_CLONE  120
#define I386_CLONE3 435
#endif

#define FILTER_MAX 256

struct filter {
    struct sock_filter f[FILTER_MAX];
    unsigned short n;
};

static void put(struct filter *b, struct sock_filter s)
{
    if (b->n < FILTER_MAX)
        b->f[b->n++] = s;
}

#define LD_NR      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr))
#define LD_ARCH    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch))
#define LD_ARG0_LO BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]))
#define RET(v)     BPF_STMT(BPF_RET | BPF_K, (v))
#define EPERM_     (SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))
#define ENOSYS_    (SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA))

/* With nr loaded: the denied list, clone with a namespace flag, clone3;
 * then allow. */
static void rules(struct filter *b, const int *nrs, size_t n, unsigned clone_nr, unsigned clone3_nr)
{
    for (size_t i = 0; i < n; i++) {
        put(b, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nrs[i], 0, 1));
        put(b, (struct sock_filter)RET(EPERM_));
    }
    put(b, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, clone3_nr, 0, 1));
    put(b, (struct sock_filter)RET(ENOSYS_));
    put(b, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, clone_nr, 0, 3));
    put(b, (struct sock_filter)LD_ARG0_LO); /* clone's flags (little-endian low word) */
    put(b, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, NS_FLAGS, 0, 1));
    put(b, (struct sock_filter)RET(EPERM_));
    put(b, (struct sock_filter)RET(SECCOMP_RET_ALLOW));
}

int sb_seccomp_install(void)
{
    static struct filter b; /* the child's own copy after fork: no allocation */
    b.n = 0;
    put(&b, (struct sock_filter)LD_ARCH);
#if defined(__x86_64__)
    /* arch == x86_64 → native rules; arch == i386 → i386 rules; else refuse */
    put(&b, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_I386, 0, 1));
    put(&b, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JA, 0, 0, 0)); /* patched below */
    unsigned short to_i386 = (unsigned short)(b.n - 1);
    put(&b, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0));
    put(&b, (struct sock_filter)RET(SECCOMP_RET_KILL_PROCESS));
    put(&b, (struct sock_filter)LD_NR);
    /* the x32 ABI: numbers with bit 30 set */
    put(&b, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1));
    put(&b, (struct sock_filter)RET(ENOSYS_));
    rules(&b, denied, sizeof(denied) / sizeof(denied[0]), SYS_clone, SYS_clone3);
    b.f[to_i386].k = (unsigned)(b.n - to_i386 - 1);
    put(&b, (struct sock_filter)LD_NR);
    rules(&b, denied_i386, sizeof(denied_i386) / sizeof(denied_i386[0]), I386_CLONE, I386_CLONE3);
#else
    put(&b, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_ARCH, 1, 0));
    put(&b, (struct sock_filter)RET(SECCOMP_RET_KILL_PROCESS));
    put(&b, (struct sock_filter)LD_NR);
    rules(&b, denied, sizeof(denied) / sizeof(denied[0]), SYS_clone, SYS_clone3);
#endif
    if (b.n >= FILTER_MAX) {
        errno = E2BIG;
        return -1;
    }
    struct sock_fprog prog = {.len = b.n, .filter = b.f};
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}
