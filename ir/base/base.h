/*
 * ir/base: the few things every kiln module needs and none of them owns.
 *
 * Errors with source locations, allocation that aborts on out-of-memory,
 * growable buffers and vectors, an arena for the AST and the IR, sha256
 * digests and leveled logging. Nothing here knows about Dockerfiles, graphs
 * or containers. All of it is thread-safe in the sense that no function
 * keeps hidden shared state, except the log level (set once at start-up).
 */
#ifndef KILN_BASE_H
#define KILN_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define KN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define KN_NORETURN     __attribute__((noreturn))
#define KN_UNUSED       __attribute__((unused))
#else
#define KN_PRINTF(a, b)
#define KN_NORETURN
#define KN_UNUSED
#endif

#define KN_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- errors -------------------------------------------------------------
 *
 * A fallible function takes `struct kn_error **err` as its last argument and
 * returns 0 / -1 (or a pointer / NULL). On failure it stores a new error in
 * *err (if err is not NULL and *err is still NULL: the first error wins); on
 * success *err is untouched. The caller owns the error and frees it with
 * kn_err_free(). Context is added on the way up with kn_err_wrap(). Several
 * independent errors (e.g. parse errors of one file) are chained with `next`.
 */
enum kn_errcode {
    KN_E_FAILED = 1, /* generic: the build or the input failed */
    KN_E_USAGE,      /* bad command line */
    KN_E_PARSE,      /* malformed input (Dockerfile, JSON, reference) */
    KN_E_IO,         /* a system call failed */
    KN_E_NOTFOUND,   /* a file, stage, blob or image does not exist */
    KN_E_NET,        /* network / registry protocol */
    KN_E_AUTH,       /* authentication refused */
    KN_E_DIGEST,     /* content does not match its digest */
    KN_E_UNSAFE,     /* input would escape its root or exceed a limit */
    KN_E_EXEC,       /* a process in the sandbox failed */
    KN_E_CANCELED,   /* stopped because something else failed */
    KN_E_INTERNAL,   /* a bug in kiln */
};

struct kn_srcloc {
    char *file; /* owned; NULL when unknown */
    int line;   /* 1-based; 0 when unknown */
    int col;    /* 1-based; 0 when unknown */
};

struct kn_error {
    int code;      /* enum kn_errcode */
    int sys_errno; /* errno captured by kn_err_sys, else 0 */
    struct kn_srcloc loc;
    char *msg;             /* lowercase, no trailing period */
    char *detail;          /* optional: the offending source line, or an output tail */
    struct kn_error *next; /* further independent errors (owned) */
};

/* Sets *err (when err && !*err) and returns -1, so `return kn_err_set(...)`. */
int kn_err_set(struct kn_error **err, int code, const char *fmt, ...) KN_PRINTF(3, 4);
/* Like kn_err_set with KN_E_IO and ": strerror(errno)" appended; call right after the failure. */
int kn_err_sys(struct kn_error **err, const char *fmt, ...) KN_PRINTF(2, 3);
/* Prefixes the message of *err with "context: ". No-op when err or *err is NULL. Returns -1. */
int kn_err_wrap(struct kn_error **err, const char *fmt, ...) KN_PRINTF(2, 3);
/* Creates an error object without storing it anywhere. */
struct kn_error *kn_err_new(int code, const char *fmt, ...) KN_PRINTF(2, 3);
struct kn_error *kn_err_newv(int code, const char *fmt, va_list ap) KN_PRINTF(2, 0);
/* Stamps a source location on e (and on chained errors that have none). */
void kn_err_at(struct kn_error *e, const char *file, int line, int col);
void kn_err_set_detail(struct kn_error *e, const char *detail);
/* Appends e (taking ownership) at the end of the chain *head. */
void kn_err_append(struct kn_error **head, struct kn_error *e);
/* Moves *from into *to if *to is empty, else frees it; *from becomes NULL. */
void kn_err_propagate(struct kn_error **to, struct kn_error **from);
void kn_err_free(struct kn_error *e);
/* "FILE:LINE:COL: msg" (or just msg) for printing; caller frees. */
char *kn_err_format(const struct kn_error *e);

/* ---- allocation: aborts on out-of-memory --------------------------------- */
KN_NORETURN void kn_die(const char *fmt, ...) KN_PRINTF(1, 2);
void *kn_malloc(size_t n);
void *kn_calloc(size_t n, size_t size);
void *kn_realloc(void *p, size_t n);
/* realloc to n*size bytes with overflow check */
void *kn_reallocarray(void *p, size_t n, size_t size);
char *kn_strdup(const char *s);
char *kn_strndup(const char *s, size_t n);
char *kn_asprintf(const char *fmt, ...) KN_PRINTF(1, 2);
char *kn_vasprintf(const char *fmt, va_list ap) KN_PRINTF(1, 0);
/* Grows an array so it holds at least `need` elements of `elem` bytes; returns the new pointer. */
void *kn_grow(void *p, size_t *cap, size_t need, size_t elem);

/* A vector of any type: KN_VEC(int) v = {0}; kn_vec_push(&v, 3); free(v.v); */
#define KN_VEC(T)                                                                                  \
    struct {                                                                                       \
        T *v;                                                                                      \
        size_t n, cap;                                                                             \
    }
#define kn_vec_push(vec, x)                                                                        \
    do {                                                                                           \
        (vec)->v = kn_grow((vec)->v, &(vec)->cap, (vec)->n + 1, sizeof(*(vec)->v));                \
        (vec)->v[(vec)->n++] = (x);                                                                \
    } while (0)

/* ---- string vectors (NULL-terminated, owned strings) --------------------- */
struct kn_strv {
    char **v; /* v[n] == NULL when n > 0 */
    size_t n, cap;
};
void kn_strv_push(struct kn_strv *sv, const char *s);
void kn_strv_take(struct kn_strv *sv, char *s); /* takes ownership of s */
void kn_strv_release(struct kn_strv *sv);

/* ---- buffers ------------------------------------------------------------- */
struct kn_buf {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len, cap;
};
#define KN_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }
void kn_buf_add(struct kn_buf *b, const void *data, size_t n);
void kn_buf_adds(struct kn_buf *b, const char *s);
void kn_buf_addc(struct kn_buf *b, char c);
void kn_buf_addf(struct kn_buf *b, const char *fmt, ...) KN_PRINTF(2, 3);
void kn_buf_vaddf(struct kn_buf *b, const char *fmt, va_list ap) KN_PRINTF(2, 0);
void kn_buf_reset(struct kn_buf *b);                /* len = 0, keeps memory */
void kn_buf_truncate(struct kn_buf *b, size_t len); /* shortens to len, keeps memory */
void kn_buf_release(struct kn_buf *b);
char *
kn_buf_detach(struct kn_buf *b); /* returns the string ("" if empty), buffer is reset to empty */
/* Reads a whole file (up to max bytes, else KN_E_UNSAFE) into b. */
int kn_buf_read_file(struct kn_buf *b, const char *path, size_t max, struct kn_error **err);

/* ---- arena: many small allocations freed together -----------------------
 * Not thread-safe; one owner at a time. */
struct kn_arena_block;
struct kn_arena {
    struct kn_arena_block *head;
    size_t used; /* bytes handed out, for statistics */
};
void kn_arena_init(struct kn_arena *a);
void *kn_arena_alloc(struct kn_arena *a, size_t n);       /* zeroed, 16-byte aligned */
char *kn_arena_strdup(struct kn_arena *a, const char *s); /* NULL stays NULL */
char *kn_arena_strndup(struct kn_arena *a, const char *s, size_t n);
void *kn_arena_memdup(struct kn_arena *a, const void *p, size_t n);
char *kn_arena_printf(struct kn_arena *a, const char *fmt, ...) KN_PRINTF(2, 3);
void kn_arena_release(struct kn_arena *a);

/* ---- sha256 digests ------------------------------------------------------
 * A digest string is "sha256:" followed by 64 lowercase hex digits. */
#define KN_DIGEST_LEN  71 /* strlen("sha256:") + 64 */
#define KN_DIGEST_SIZE 72
struct kn_sha256 {
    void *ctx; /* private */
};
void kn_sha256_init(struct kn_sha256 *h);
void kn_sha256_update(struct kn_sha256 *h, const void *data, size_t n);
/* Writes "sha256:<hex>" to out and releases the context. */
void kn_sha256_final(struct kn_sha256 *h, char out[KN_DIGEST_SIZE]);
void kn_sha256_release(struct kn_sha256 *h); /* abandon without a result */
void kn_sha256_digest(const void *data, size_t n, char out[KN_DIGEST_SIZE]);
/* True if s is "sha256:" + 64 lowercase hex. */
bool kn_digest_valid(const char *s);
/* The 64 hex digits of a valid digest (pointer into s). */
const char *kn_digest_hex(const char *s);
/* A valid digest as its 32 bytes, and back. */
void kn_digest_to_raw(const char *digest, unsigned char raw[32]);
void kn_digest_from_raw(const unsigned char raw[32], char out[KN_DIGEST_SIZE]);

/* ---- logging --------------------------------------------------------------
 * Logs go to stderr. kn_log checks the level before formatting anything. */
enum kn_log_level { KN_LOG_ERROR, KN_LOG_WARN, KN_LOG_INFO, KN_LOG_DEBUG, KN_LOG_TRACE };
extern int kn_log_level;
void kn_log_emit(int level, const char *fmt, ...) KN_PRINTF(2, 3);
#define kn_log(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) <= kn_log_level)                                                               \
            kn_log_emit((level), __VA_ARGS__);                                                     \
    } while (0)
#define kn_warn(...)  kn_log(KN_LOG_WARN, __VA_ARGS__)
#define kn_debug(...) kn_log(KN_LOG_DEBUG, __VA_ARGS__)

/* ---- small string helpers ----------------------------------------------- */
bool kn_str_startswith(const char *s, const char *prefix);
bool kn_str_endswith(const char *s, const char *suffix);
/* Parses a size like "10GB", "512m", "1.5GiB", "1024" into bytes. */
int kn_parse_size(const char *s, uint64_t *out, struct kn_error **err);

#endif
