/*
 * journal_internal: what the journal's parts share (private to daemon/journal*.c).
 *
 *   journal.c          open, close, append, commit: the group-commit writer
 *   journal_record.c   the bytes: framing, CRC-32C, each record kind, the segment reader
 *   journal_recover.c  reading the segments back at open, deciding whether the epoch holds,
 *                      taking or removing a prepared next segment
 *   journal_dedup.c    the dedup window over seen: lookups, pruning, reading ids back
 *   journal_cursor.c   replay cursors over the durable records of one topic
 *   seen.c             the id set itself, with the undo log a failed write uses
 *
 * State lives on the loop thread: each topic's last assigned seq (seqs) and last durable
 * seq (durable), the ids seen with their times (seen), the list of segments on disk and
 * two batches: the open one that appends go into and the one being written ("flight").
 * A write is one job on libuv's thread pool; while it runs the worker alone touches the
 * current segment's fd and may read the (then frozen) segment list to unlink retired
 * files. Everything the job changes in memory is applied when it comes back. Another
 * job, at most one at a time, prepares the next segment (journal.c, "prepared
 * segments"): it touches only its own file and the prep_* fields it reports in. The small
 * helpers below are inline: appends call them on the hot path.
 */
#ifndef NW_JOURNAL_INTERNAL_H
#define NW_JOURNAL_INTERNAL_H

#include "journal.h"
#include "journal_record.h"
#include "seen.h"

#include <czmq.h>
#include <msgpack.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
    nw_journal_commit_fn *fn;
    nw_journal_commit_fn *written; /* or NULL: see nw_journal_commit_early */
    void *arg;
} waiter_t;

typedef struct {
    msgpack_sbuffer data; /* framed records */
    uint64_t records;
    int64_t newest_ms;
    zhashx_t *seqs;      /* topic -> last seq appended in this batch */
    nw_seen_undo_t undo; /* what its appends did to seen */
    waiter_t *waiters;
    size_t nwaiters, waiters_cap;
    uint64_t end_len; /* early, written by the loop: where its commit ends */
} batch_t;

typedef struct {
    uint64_t num, size, records; /* size: where its last valid record ends */
    uint64_t alloc;              /* the file's size: size plus its tail of zeros */
    int64_t newest_ms;           /* of its messages */
    int64_t cp_ms;               /* of its checkpoint: its age while it holds no message */
    zhashx_t *cp;                /* its checkpoint's seqs; NULL when it has none readable */
    bool sealed;                 /* ends with a seal: a later segment was made */
} segment_t;

/* One group write: filled on the loop thread, run on a worker (or inline at open and
 * close), results applied on the loop thread by finish(). */
typedef struct {
    uv_work_t req;
    const char *dir;
    int fd, old_fd; /* old_fd is closed once a new segment is durable */
    bool create, sync;
    bool zero_ahead;  /* keep zeros ahead of the data (only worth it with fsync) */
    bool zero_failed; /* out: no room for them: plain appends for a while */
    uint64_t num, start_len, end_len;
    uint64_t alloc;       /* in: the file's size; out: its size after the write */
    uint64_t zero_from;   /* write no zeros while the data ends before this */
    uint64_t zero_limit;  /* nor beyond this (the segment size), 0: no limit */
    uint64_t old_len;     /* when rotating: the old segment's data end, to cut it to */
    int prep_fd;          /* when rotating: the prepared segment to take (its fd), or -1 */
    bool prep_used;       /* out: it was renamed to the new segment (gone if that failed) */
    msgpack_sbuffer seal; /* when rotating: the seal written there first */
    bool old_cut;         /* out: a failed rotation cut the old segment's zeros */
    msgpack_sbuffer head; /* the checkpoint starting a segment, or empty */
    zhashx_t *cp;         /* and its seqs */
    int64_t cp_ms;        /* and its time */
    const char *data;
    size_t len;
    const segment_t *retire; /* unlink the first nretire of these after the write */
    size_t nretire;
    int err; /* errno */
    bool fsynced;
    bool early;          /* tell the loop (async) once the write(2) returned */
    atomic_bool written; /* out, early: it did, the fdatasync is next */
    uv_async_t *async;   /* how it tells */
} job_t;

struct nw_journal {
    uv_loop_t *loop;
    nw_journal_options_t opt;
    char *dir;
    char epoch[33];
    zhashx_t *seqs, *durable;
    zhashx_t *spent; /* early: per topic, the highest seq that went out and was lost */
    nw_seen_t seen;
    segment_t *segs;
    size_t nsegs, segs_cap;
    int fd; /* the last segment, append only */
    batch_t *open, *flight;
    job_t job;
    bool writing, unwinding, closing, wrote;
    uint64_t last_start;     /* uv_now() when the last write began */
    uint64_t write_start_ns; /* uv_hrtime() then: the write's latency */
    uint64_t writes, write_ns, write_buckets[NW_JOURNAL_LATENCY_BUCKETS];
    uv_timer_t *timer;
    uint64_t bytes, records, commits, fsyncs, failures, discarded;
    uint64_t zero_from; /* after zeros failed to fit: job_t.zero_from */
    bool zero_ahead;    /* job_t.zero_ahead */
    bool failing;       /* the last group write failed: log the next ones quietly */
    int64_t pruned_ms;  /* wall time seen was last pruned */
    bool reloading;     /* a read-back of ids for a wider window is running */
    uv_async_t *async;  /* early: the worker's "written" reaches the loop */
    uv_idle_t *kick;    /* early: the loop's next turn decides the open batch (ew_kick) */
    bool told_written;  /* early: the flight batch's written callbacks ran */
    bool early_lost;    /* early: a write failed after its records went out */
    /* early, pipelined (journal.c, "early writes"): batches the loop wrote into the
     * current segment's tail of zeros and published, oldest first, not yet durable; the
     * fdatasync in flight covers the first ew_covered of them */
    batch_t **ew, **ew_spare;
    size_t ew_n, ew_cap, ew_nspare, ew_covered;
    bool ew_syncing, ew_kick; /* an fdatasync of them in flight; on_kick to decide */
    int ew_err;               /* that fdatasync's errno (set by the worker) */
    int ew_write_err;         /* a write of the loop's failed meanwhile: fail them all */
    uint64_t ew_end;          /* where the data written ends (the segment's size if none) */
    uint64_t ew_start_ns;
    uv_work_t ew_req;
    msgpack_sbuffer ew_commit; /* the commit record of the batch being written */
    /* the next segment prepared off the commit path (journal.c, "prepared segments"):
     * PREP_NAME, all written zeros, fdatasynced; taken by the next rotation */
    int prep_fd;            /* open on it once ready, else -1 */
    uint64_t prep_size;     /* its size, from when it is begun (retention counts it) */
    bool prep_on;           /* preparing at all: fsync on, not in memory, segments rotate */
    bool preparing;         /* a step of its making is on the pool */
    int prep_part_fd;       /* open on PREP_PART between steps, else -1 */
    uint64_t prep_made;     /* its zeros written back so far */
    uint64_t prep_step_end; /* where the step on the pool ends */
    uint64_t prep_base;     /* grown when it was begun */
    uint64_t prep_room;     /* the records' bytes over which it is paced (prep_allowed) */
    uint64_t grown;         /* the records' bytes made durable since open */
    uint64_t cur_prep;      /* the size the current segment was prepared to; 0: it was
                             * not (the zero-step path), or not to a step of the ramp */
    bool prep_failing;      /* the last one failed (said once): retried at the next segment */
    uint64_t prep_retry;    /* the segment number from which to try again */
    atomic_bool prep_stop;  /* closing: the job stops and removes its file */
    int prep_err;           /* the job's errno, 0 done */
    uint64_t prep_free;     /* ENOSPC found beforehand: the bytes that were free */
    uint64_t prep_failures; /* nw_journal_stats_t.prepare_failures */
    uv_work_t prep_req;
    char boot_id[64];   /* early: this boot's id (journal_boot.c) */
    char boot_why[200]; /* recovery: why the marker asks for a new epoch, or "" */
};

/* journal.c: fsync a folder (a file made or removed in it). */
int nw_journal_sync_dir(const char *dir);
/* journal_boot.c: the early run's marker (STATE/journal/early.run). boot_id: this
 * boot's, or "unknown". check: why the last run's marker asks for a new epoch in why
 * ("" when it does not, or there is none); -1 with errno when it cannot be read. mark:
 * write what (a boot id, or "lost") durably; clear: remove it durably. */
void nw_journal_boot_id(char *out, size_t len);
int nw_journal_boot_check(nw_journal_t *self, char *why, size_t len);
int nw_journal_boot_mark(nw_journal_t *self, const char *what);
int nw_journal_boot_clear(nw_journal_t *self);

/* The prepared next segment while it is being made (a stop then leaves it half made,
 * and an open removes it) and once made (an open keeps it for the next rotation). Their
 * names are not segment names, nor end in .nwj: an older newswired, and whatever lists
 * segments by that ending, ignores them. */
#define NW_JPREP_NAME "segment.prep"
#define NW_JPREP_PART "segment.prep.part"

/* journal_recover.c: take the prepared segment a previous run left (self->prep_fd) or
 * remove it (not all zeros, or preparation off), and remove a half-made one. 0, or -1
 * with the reason in errbuf. */
int nw_journal_recover_prepared(nw_journal_t *self, char *errbuf, size_t errlen);

/* journal.c: add segment num at the end of the list (0, or -1 out of memory). */
int nw_journal_push_segment(nw_journal_t *self, uint64_t num);

/* journal_recover.c: list and read every segment (self->dir exists, self->segs is
 * empty), rebuilding seqs, seen, the epoch and each segment's bookkeeping. *fresh:
 * a new epoch was made (none was readable, or the seqs cannot be trusted), which starts
 * in a segment of its own. 0, or -1 with the reason in errbuf. */
int nw_journal_recover(nw_journal_t *self, bool *fresh, char *errbuf, size_t errlen);

/* journal_dedup.c: forget ids older than the dedup window; unless now_anyway, at most
 * once a minute (or once a window, when that is shorter). */
void nw_journal_prune_seen(nw_journal_t *self, bool now_anyway);

static inline int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void free_item(void **item)
{
    free(*item);
    *item = NULL;
}

/* zhashx of string -> malloc'd 64-bit value (seqs as uint64_t, times as int64_t) */
static inline zhashx_t *map_new(void)
{
    zhashx_t *h = zhashx_new();
    if (h)
        zhashx_set_destructor(h, free_item);
    return h;
}

static inline int map_set(zhashx_t *h, const char *key, uint64_t v)
{
    uint64_t *p = zhashx_lookup(h, key);
    if (!p) {
        if (!(p = malloc(sizeof *p)))
            return -1;
        zhashx_insert(h, key, p);
    }
    *p = v;
    return 0;
}

static inline uint64_t map_get(zhashx_t *h, const char *key)
{
    const uint64_t *p = zhashx_lookup(h, key);
    return p ? *p : 0;
}

static inline int map_copy(zhashx_t *dst, zhashx_t *src)
{
    zhashx_purge(dst);
    for (uint64_t *v = zhashx_first(src); v; v = zhashx_next(src))
        if (map_set(dst, zhashx_cursor(src), *v) != 0)
            return -1;
    return 0;
}

#endif
