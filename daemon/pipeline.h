/*
 * pipeline: carries each reported file from the drop folder to its subscribers.
 *
 *   watch report -> pending queue -> [thread pool] open, read, parse, route, pack article
 *     -> [loop] dedup check, seq per topic, journal append, publish
 *     -> [loop] group commit: fsync on the thread pool, bounded delay
 *     -> [thread pool] archive (or reject with a reason)
 *
 * A file leaves the drop folder only after its journal records are durable, so a crash
 * at any instant leaves it there to be processed again (and deduplicated by id). ZeroMQ
 * and the journal are touched only on the loop thread; workers get immutable inputs
 * (path, limits, a reference to the rules) and return their results in the job.
 */
#ifndef NW_PIPELINE_H
#define NW_PIPELINE_H

#include <uv.h>
#include "config.h"
#include "journal.h"
#include "publish.h"
#include "route.h"

/* Jobs the pipeline may have on libuv's thread pool at once: its read hand-offs and its
 * archive hand-off (main sizes the pool from it). */
#define NW_PIPELINE_POOL_JOBS 3

typedef struct nw_pipeline nw_pipeline_t;

typedef struct {
    unsigned long published;   /* articles published (one or more messages each) */
    unsigned long messages;    /* messages journaled and handed to ZeroMQ */
    unsigned long rejected;
    unsigned long duplicates;
    unsigned long pending;     /* reported, waiting to be read */
    unsigned long in_flight;   /* being read, published or archived */
    bool disk_full;            /* journal appends failing: not taking files */
    int file_errno;            /* files cannot be opened or moved for a fault of the
                                  machine (EMFILE, ENFILE, ENOMEM, ENOSPC, EDQUOT): they
                                  wait and are retried; 0 when none */
} nw_pipeline_stats_t;

/* The pipeline borrows config, journal and publisher (they outlive it) and takes its
 * own reference to rules. */
nw_pipeline_t *nw_pipeline_new(uv_loop_t *loop, const nw_config_t *config,
                               nw_journal_t *journal, nw_publish_t *publish,
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
