/*
 * Parallel gzip, as pigz does it: the input is cut into fixed 128 KiB
 * blocks, each compressed as raw deflate by a worker thread with the 32 KiB
 * of input before it as its dictionary and ended by a sync flush (an empty
 * stored block, so that the pieces are byte-aligned and concatenate into one
 * deflate stream), the last one by a final block. The caller's thread keeps
 * the CRC-32 and the length, writes the gzip header and trailer, and hands
 * the workers' output on in block order. The bytes depend on the level and
 * the block size only, not on the number of workers: the same layer gives
 * the same digest on any machine.
 *
 * Memory: each worker has one deflate state (~270 KiB at level 6); at most
 * 2 x workers + 1 blocks are in flight, each with its input (128 KiB), its
 * dictionary (32 KiB) and its output (up to ~130 KiB).
 */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define PGZ_BLOCK (128u << 10)
#define PGZ_DICT  (32u << 10)

enum job_state { JOB_FREE, JOB_QUEUED, JOB_RUNNING, JOB_DONE };

struct pgz_job {
    enum job_state state;
    bool last;
    bool failed;
    unsigned char *in;
    size_t inlen;
    unsigned char dict[PGZ_DICT];
    size_t dictlen;
    unsigned char *out;
    size_t outlen, outcap;
};

struct ex_pgzip {
    int level;
    ex_pgzip_out_fn out_fn;
    void *out_ctx;
    pthread_mutex_t mu;
    pthread_cond_t work; /* a job was queued, or stop */
    pthread_cond_t done; /* a job finished */
    pthread_t *threads;
    size_t nthreads;
    bool stop;
    struct pgz_job *jobs; /* a ring of njobs, in block order from head */
    size_t njobs, head, count;
    size_t next_run; /* the oldest queued job a worker has not taken */
    /* the block being filled, and the 32 KiB before it */
    unsigned char *cur;
    size_t curlen;
    unsigned char tail[PGZ_DICT];
    size_t taillen;
    uLong crc;
    uint64_t total;
    bool header_written;
};

static void compress_job(z_stream *z, struct pgz_job *j)
{
    deflateReset(z);
    if (j->dictlen && deflateSetDictionary(z, j->dict, (uInt)j->dictlen) != Z_OK) {
        j->failed = true;
        return;
    }
    z->next_in = j->in;
    z->avail_in = (uInt)j->inlen;
    j->outlen = 0;
    for (;;) {
        if (j->outcap - j->outlen < 64) {
            j->outcap = j->outcap ? j->outcap * 2 : deflateBound(z, PGZ_BLOCK) + 64;
            j->out = kn_realloc(j->out, j->outcap);
        }
        z->next_out = j->out + j->outlen;
        z->avail_out = (uInt)(j->outcap - j->outlen);
        int zr = deflate(z, j->last ? Z_FINISH : Z_SYNC_FLUSH);
        j->outlen = j->outcap - z->avail_out;
        if (zr == Z_STREAM_ERROR) {
            j->failed = true;
            return;
        }
        if (j->last ? zr == Z_STREAM_END : (z->avail_in == 0 && z->avail_out != 0))
            return;
    }
}

static void *worker_main(void *arg)
{
    struct ex_pgzip *p = arg;
    z_stream z;
    memset(&z, 0, sizeof(z));
    bool ok = deflateInit2(&z, p->level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->next_run == p->count)
            pthread_cond_wait(&p->work, &p->mu);
        if (p->stop)
            break;
        struct pgz_job *j = &p->jobs[(p->head + p->next_run) % p->njobs];
        p->next_run++;
        j->state = JOB_RUNNING;
        pthread_mutex_unlock(&p->mu);
        if (ok)
            compress_job(&z, j);
        else
            j->failed = true;
        pthread_mutex_lock(&p->mu);
        j->state = JOB_DONE;
        pthread_cond_broadcast(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    if (ok)
        deflateEnd(&z);
    return NULL;
}

struct ex_pgzip *ex_pgzip_new(int level, int threads, ex_pgzip_out_fn out, void *ctx,
                              struct kn_error **err)
{
    if (level == Z_DEFAULT_COMPRESSION)
        level = 6;
    if (level < 0 || level > 9) {
        kn_err_set(err, KN_E_USAGE, "invalid gzip level %d", level);
        return NULL;
    }
    struct ex_pgzip *p = kn_calloc(1, sizeof(*p));
    p->level = level;
    p->out_fn = out;
    p->out_ctx = ctx;
    p->nthreads = threads > 1 ? (size_t)threads : 1;
    p->njobs = 2 * p->nthreads + 1;
    p->jobs = kn_calloc(p->njobs, sizeof(*p->jobs));
    p->cur = kn_malloc(PGZ_BLOCK);
    p->crc = crc32(0, Z_NULL, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = kn_calloc(p->nthreads, sizeof(*p->threads));
    for (size_t i = 0; i < p->nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
            p->nthreads = i;
            ex_pgzip_free(p);
            kn_err_set(err, KN_E_IO, "cannot start the gzip threads");
            return NULL;
        }
    }
    return p;
}

/* Hands the finished jobs at the head of the ring on, in order; with wait,
 * waits until the ring has a free slot (or, with all, is empty). Called
 * with mu held. */
static int drain(struct ex_pgzip *p, bool wait, bool all, struct kn_error **err)
{
    while (p->count > 0) {
        struct pgz_job *j = &p->jobs[p->head];
        if (j->state != JOB_DONE) {
            if (!wait || (!all && p->count < p->njobs))
                return 0;
            pthread_cond_wait(&p->done, &p->mu);
            continue;
        }
        if (j->failed)
            return kn_err_set(err, KN_E_INTERNAL, "gzip compression failed");
        pthread_mutex_unlock(&p->mu);
        int rc = p->out_fn(p->out_ctx, j->out, j->outlen, err);
        pthread_mutex_lock(&p->mu);
        if (rc < 0)
            return -1;
        j->state = JOB_FREE;
        p->head = (p->head + 1) % p->njobs;
        p->count--;
        p->next_run--;
    }
    return 0;
}

/* Queues the block being filled (the last one when last). */
static int submit(struct ex_pgzip *p, bool last, struct kn_error **err)
{
    if (!p->header_written) {
        /* no name, no time, XFL as zlib sets it, OS 3 (Unix) */
        unsigned char h[10] = {
            0x1f, 0x8b, 8, 0, 0, 0, 0, 0, (unsigned char)(p->level == 9 ? 2 : p->level < 2 ? 4 : 0),
            3};
        if (p->out_fn(p->out_ctx, h, sizeof(h), err) < 0)
            return -1;
        p->header_written = true;
    }
    pthread_mutex_lock(&p->mu);
    if (drain(p, true, false, err) < 0) {
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    struct pgz_job *j = &p->jobs[(p->head + p->count) % p->njobs];
    pthread_mutex_unlock(&p->mu);
    /* the slot is free: no worker looks at it until it is queued */
    memcpy(j->dict, p->tail, p->taillen);
    j->dictlen = p->taillen;
    unsigned char *in = j->in ? j->in : kn_malloc(PGZ_BLOCK);
    j->in = p->cur;
    j->inlen = p->curlen;
    j->last = last;
    j->failed = false;
    /* the next block's dictionary: the last 32 KiB of input so far */
    if (p->curlen >= PGZ_DICT) {
        memcpy(p->tail, p->cur + p->curlen - PGZ_DICT, PGZ_DICT);
        p->taillen = PGZ_DICT;
    } else {
        size_t keep = p->taillen + p->curlen > PGZ_DICT ? PGZ_DICT - p->curlen : p->taillen;
        memmove(p->tail, p->tail + p->taillen - keep, keep);
        memcpy(p->tail + keep, p->cur, p->curlen);
        p->taillen = keep + p->curlen;
    }
    p->cur = in;
    p->curlen = 0;
    pthread_mutex_lock(&p->mu);
    j->state = JOB_QUEUED;
    p->count++;
    pthread_cond_signal(&p->work);
    int rc = drain(p, false, false, err);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int ex_pgzip_write(struct ex_pgzip *p, const void *data, size_t n, struct kn_error **err)
{
    const unsigned char *d = data;
    p->crc = crc32_z(p->crc, d, n);
    p->total += n;
    while (n > 0) {
        size_t room = PGZ_BLOCK - p->curlen;
        size_t take = n < room ? n : room;
        memcpy(p->cur + p->curlen, d, take);
        p->curlen += take;
        d += take;
        n -= take;
        if (p->curlen == PGZ_BLOCK && submit(p, false, err) < 0)
            return -1;
    }
    return 0;
}

int ex_pgzip_finish(struct ex_pgzip *p, struct kn_error **err)
{
    if (submit(p, true, err) < 0)
        return -1;
    pthread_mutex_lock(&p->mu);
    int rc = drain(p, true, true, err);
    pthread_mutex_unlock(&p->mu);
    if (rc < 0)
        return -1;
    unsigned char t[8];
    uint32_t size = (uint32_t)p->total;
    for (int i = 0; i < 4; i++) {
        t[i] = (unsigned char)(p->crc >> (8 * i));
        t[4 + i] = (unsigned char)(size >> (8 * i));
    }
    return p->out_fn(p->out_ctx, t, sizeof(t), err);
}

void ex_pgzip_free(struct ex_pgzip *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    for (size_t i = 0; i < p->njobs; i++) {
        free(p->jobs[i].in);
        free(p->jobs[i].out);
    }
    free(p->jobs);
    free(p->threads);
    free(p->cur);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->done);
    free(p);
}
