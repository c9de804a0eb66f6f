/*
 * Scope-exit cleanup for syscall-heavy code, as crun does it.
 *
 * The only place kiln uses __attribute__((cleanup)). Never use these in a
 * function that also uses `goto`: gcc runs the cleanup on an uninitialized
 * variable when a goto jumps over its declaration. Always initialize the
 * variable at its declaration. kn_steal() hands a value out of a scope.
 */
#ifndef KILN_CLEANUP_H
#define KILN_CLEANUP_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <errno.h>

#include "base.h"

static inline void kn_cleanup_free(void *p)
{
    free(*(void **)p);
}

static inline void kn_cleanup_close(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}

static inline void kn_cleanup_fclose(FILE **f)
{
    if (*f)
        fclose(*f);
}

static inline void kn_cleanup_err(struct kn_error **e)
{
    kn_err_free(*e);
}

static inline void kn_cleanup_buf(struct kn_buf *b)
{
    kn_buf_release(b);
}

#define _cleanup_free_   __attribute__((cleanup(kn_cleanup_free)))
#define _cleanup_close_  __attribute__((cleanup(kn_cleanup_close)))
#define _cleanup_fclose_ __attribute__((cleanup(kn_cleanup_fclose)))
#define _cleanup_err_    __attribute__((cleanup(kn_cleanup_err)))
#define _cleanup_buf_    __attribute__((cleanup(kn_cleanup_buf)))

/* Returns *pp and sets it to NULL (or -1 for fds), so the cleanup does nothing. */
#define kn_steal(pp)                                                                               \
    __extension__({                                                                                \
        __typeof__(*(pp)) kn_steal_tmp_ = *(pp);                                                   \
        *(pp) = NULL;                                                                              \
        kn_steal_tmp_;                                                                             \
    })
#define kn_steal_fd(pfd)                                                                           \
    __extension__({                                                                                \
        int kn_steal_fd_ = *(pfd);                                                                 \
        *(pfd) = -1;                                                                               \
        kn_steal_fd_;                                                                              \
    })

#endif
