/*
 * Allocation that never returns NULL (kiln aborts on out-of-memory, as crun
 * and git do), string vectors, growable buffers and a bump arena.
 */
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void kn_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("kiln: fatal: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

void *kn_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        kn_die("out of memory allocating %zu bytes", n);
    return p;
}

void *kn_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        kn_die("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *kn_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        kn_die("out of memory allocating %zu bytes", n);
    return q;
}

void *kn_reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total))
        kn_die("allocation size overflow (%zu x %zu)", n, size);
    return kn_realloc(p, total);
}

char *kn_strdup(const char *s)
{
    return kn_strndup(s, strlen(s));
}

char *kn_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = kn_malloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *kn_vasprintf(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        kn_die("out of memory formatting a string");
    return s;
}

char *kn_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = kn_vasprintf(fmt, ap);
    va_end(ap);
    return s;
}

void *kn_grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t ncap = *cap ? *cap : 8;
    while (ncap < need) {
        if (__builtin_mul_overflow(ncap, 2, &ncap))
            kn_die("vector size overflow");
    }
    p = kn_reallocarray(p, ncap, elem);
    *cap = ncap;
    return p;
}

/* ---- string vectors ---- */

void kn_strv_take(struct kn_strv *sv, char *s)
{
    sv->v = kn_grow(sv->v, &sv->cap, sv->n + 2, sizeof(char *));
    sv->v[sv->n++] = s;
    sv->v[sv->n] = NULL;
}

void kn_strv_push(struct kn_strv *sv, const char *s)
{
    kn_strv_take(sv, kn_strdup(s));
}

void kn_strv_release(struct kn_strv *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    free(sv->v);
    sv->v = NULL;
    sv->n = sv->cap = 0;
}

/* ---- buffers ---- */

static void buf_reserve(struct kn_buf *b, size_t extra)
{
    size_t need;
    if (__builtin_add_overflow(b->len, extra + 1, &need))
        kn_die("buffer size overflow");
    b->data = kn_grow(b->data, &b->cap, need, 1);
}

void kn_buf_add(struct kn_buf *b, const void *data, size_t n)
{
    buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void kn_buf_adds(struct kn_buf *b, const char *s)
{
    kn_buf_add(b, s, strlen(s));
}

void kn_buf_addc(struct kn_buf *b, char c)
{
    kn_buf_add(b, &c, 1);
}

void kn_buf_vaddf(struct kn_buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0)
        kn_die("bad format string");
    buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void kn_buf_addf(struct kn_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kn_buf_vaddf(b, fmt, ap);
    va_end(ap);
}

void kn_buf_reset(struct kn_buf *b)
{
    kn_buf_truncate(b, 0);
}

void kn_buf_truncate(struct kn_buf *b, size_t len)
{
    if (len >= b->len)
        return;
    b->len = len;
    if (b->data)
        b->data[len] = '\0';
}

void kn_buf_release(struct kn_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *kn_buf_detach(struct kn_buf *b)
{
    char *s = b->data ? b->data : kn_strdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

int kn_buf_read_file(struct kn_buf *b, const char *path, size_t max, struct kn_error **err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kn_err_sys(err, "cannot open '%s'", path);
    char chunk[65536];
    size_t total = 0;
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof(chunk));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            kn_err_sys(err, "cannot read '%s'", path);
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        total += (size_t)r;
        if (total > max) {
            close(fd);
            return kn_err_set(err, KN_E_UNSAFE, "'%s' is larger than %zu bytes", path, max);
        }
        kn_buf_add(b, chunk, (size_t)r);
    }
    close(fd);
    if (!b->data)
        kn_buf_add(b, "", 0);
    return 0;
}

/* ---- arena ---- */

struct kn_arena_block {
    struct kn_arena_block *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

#define ARENA_BLOCK 65536

void kn_arena_init(struct kn_arena *a)
{
    a->head = NULL;
    a->used = 0;
}

void *kn_arena_alloc(struct kn_arena *a, size_t n)
{
    size_t need = (n + 15) & ~(size_t)15;
    if (need < n)
        kn_die("arena allocation overflow");
    struct kn_arena_block *b = a->head;
    if (!b || b->size - b->used < need) {
        size_t size = need > ARENA_BLOCK / 4 ? need : ARENA_BLOCK;
        b = kn_malloc(sizeof(*b) + size);
        b->size = size;
        b->used = 0;
        if (need > ARENA_BLOCK / 4 && a->head) {
            /* big allocation: keep the current block as the head */
            b->next = a->head->next;
            a->head->next = b;
        } else {
            b->next = a->head;
            a->head = b;
        }
    }
    void *p = b->data + b->used;
    b->used += need;
    a->used += need;
    memset(p, 0, n);
    return p;
}

void *kn_arena_memdup(struct kn_arena *a, const void *p, size_t n)
{
    void *q = kn_arena_alloc(a, n);
    if (n)
        memcpy(q, p, n);
    return q;
}

char *kn_arena_strndup(struct kn_arena *a, const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = kn_arena_alloc(a, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *kn_arena_strdup(struct kn_arena *a, const char *s)
{
    return s ? kn_arena_strndup(a, s, strlen(s)) : NULL;
}

char *kn_arena_printf(struct kn_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *tmp = kn_vasprintf(fmt, ap);
    va_end(ap);
    char *s = kn_arena_strdup(a, tmp);
    free(tmp);
    return s;
}

void kn_arena_release(struct kn_arena *a)
{
    struct kn_arena_block *b = a->head;
    while (b) {
        struct kn_arena_block *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
    a->used = 0;
}
