/*
 * pipeline: the drop folder's input. Carries each reported file to the feed and, once
 * the feed is done with it, out of the drop folder.
 *
 *   watch report -> pending queue (known paths: a second report of a path in hand is
 *     folded into the first) -> [thread pool, or the loop while few small files wait
 *     in a local folder] open, read, parse, route, pack article
 *     -> [loop] in arrival order: the feed (feed.h: dedup, seq, journal, publish once
 *        durable) -> its done
 *     -> [thread pool, or the loop for a few renames between local folders] archive (or
 *        reject with a reason)
 *
 * A file leaves the drop folder only after the feed says its messages are durable, so a
 * crash at any instant leaves it there to be processed again (and deduplicated by id).
 * A journal failure, or a fault of the machine (no descriptors, no memory, no room for a
 * move), pauses the pipeline and puts files back in the queue to be retried. The feed
 * is touched only on the loop thread; workers get immutable inputs (path, limits, a
 * reference to the rules) and return their results in the job.
 */
#ifndef NW_PIPELINE_H
#define NW_PIPELINE_H

#include "feed.h"
#include "route.h"
#include <stdint.h>
#include <uv.h>

/* Jobs the pipeline may have on libuv's thread pool at once: its read hand-offs and its
 * archive hand-off (main sizes the pool from it). */
#define NW_PIPELINE_POOL_JOBS 3

typedef struct nw_pipeline nw_pipeline_t;

/* Where a file is between its report and its archiving. */
typedef enum {
    NW_STAGE_QUEUED,  /* reported, waiting to be read */
    NW_STAGE_READ,    /* being read, parsed and routed (on the pool or the loop) */
    NW_STAGE_ORDER,   /* read, waiting for an older file still being read: seqs follow
                         arrival order */
    NW_STAGE_COMMIT,  /* with the feed: journal write, fdatasync, publish */
    NW_STAGE_ARCHIVE, /* waiting for its move out of the drop folder, or being moved */
    NW_STAGE_COUNT
} nw_stage_t;

/* What was published, and left out as duplicates, the feed counts (nw_feed_stats). */
typedef struct {
    unsigned long rejected;   /* files moved to rejected/ */
    unsigned long pending;    /* reported, waiting to be read */
    unsigned long in_flight;  /* being read, published or archived */
    unsigned long read_here;  /* files read on the loop thread (few waiting, small, local) */
    unsigned long read_pool;  /* files read on the thread pool */
    unsigned long moved_here; /* archive moves made on the loop thread (renames) */
    unsigned long moved_pool; /* archive moves and rejects made on the thread pool */
    int file_errno;           /* files cannot be opened or moved for a fault of the
                                 machine (EMFILE, ENFILE, ENOMEM, ENOSPC, EDQUOT): they
                                 wait and are retried; 0 when none */
    /* The time files spent in each stage, added up over files, up to the call: over an
     * interval, its increase divided by the interval's length is the mean number of
     * files in the stage: where files wait. */
    uint64_t stage_ns[NW_STAGE_COUNT];
} nw_pipeline_stats_t;

/* Nothing here changes on a reload: the rules have their setter below. */
typedef struct {
    const char *drop_dir;  /* copied */
    const char *state_dir; /* copied: archive/ and rejected/ are in it */
    uint64_t max_size;     /* larger files are rejected unread */
    bool burst_pool;       /* a burst's files are read and moved on the pool beside the
                              loop; false: on the loop, a batch a turn (large files,
                              rejects and moves across file systems still go to the pool) */
} nw_pipeline_options_t;

/* The pipeline borrows feed (it outlives it) and takes its own reference to rules. */
nw_pipeline_t *nw_pipeline_new(uv_loop_t *loop, nw_pipeline_options_t options, nw_feed_t *feed,
                               nw_rules_t *rules);
/* A watch callback: nw_watch_fn-compatible. Returns nonzero once the pending queue is
 * full enough that a scan should hold the rest of its files; resume(arg), set below,
 * is called once it has drained to half that. */
int nw_pipeline_submit(void *self, const char *subdir, const char *name);
void nw_pipeline_set_resume(nw_pipeline_t *self, void (*resume)(void *arg), void *arg);
/* Articles read from now on are routed with these rules (a new reference is taken). */
void nw_pipeline_set_rules(nw_pipeline_t *self, nw_rules_t *rules);
/* Stop reading new files; done(arg) runs once nothing is in flight (files still pending
 * stay in the drop folder for the next start). */
void nw_pipeline_drain(nw_pipeline_t *self, void (*done)(void *arg), void *arg);
void nw_pipeline_stats(const nw_pipeline_t *self, nw_pipeline_stats_t *out);
void nw_pipeline_destroy(nw_pipeline_t **self_p);

#endif
