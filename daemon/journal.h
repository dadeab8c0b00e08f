/*
 * journal: the durable record of every message newswired has published, and the only
 * place sequence numbers live.
 *
 * STATE/journal/ holds segment files (000000000001.nwj, ...) of records, each
 *   [u32 magic "NWJ1"][u32 payload length][u32 CRC-32C of payload][payload]
 * (little endian). The payload is a MessagePack array:
 *   [0, epoch, time_ms, {topic: last seq, ...}]        checkpoint, first in every segment
 *   [1, topic, seq, id, time_ms, message bytes]         one published message
 *   [2, start offset, {topic: last seq, ...}, epoch]    commit, last in every group write
 *   [3, next segment number, epoch]                     seal, last in a full segment
 * A segment starts with a checkpoint so that retiring old segments (by size and age)
 * never forgets where a topic's seq stands. A commit names the seqs its write left its
 * topics at and the offset the write began at; a seal is written once the next segment
 * is durable, before anything in it is published. The epoch is made once, when no
 * journal exists, and changes only when recovery cannot tell that its seqs are above
 * everything ever published (see recovery below). A batch that finds the current segment at
 * segment_size starts the next one; retirement (oldest first, never the current segment) is
 * decided at each group write, so an idle journal retires nothing until it writes again. A
 * segment's age is its newest message's time_ms (its checkpoint's time while it holds
 * none).
 *
 * Appends are made on the loop thread into an in-memory batch; nw_journal_commit()
 * asks to be told when everything appended so far is durable. Group commit: when no
 * write is in flight the batch is written (write + fdatasync, unless sync is off) on
 * libuv's thread pool at once; appends made meanwhile wait for the next write, which
 * starts as soon as the current one ends (or after commit_delay_ms, whichever is
 * later), so one fsync covers many articles under load and adds nothing when idle.
 * With fsync on (and the journal on a disk, not in memory), the current segment keeps
 * written zeros past its last record so that a commit's fdatasync has no new file size
 * to commit as well: the next segment is made beforehand on the thread pool, all zeros
 * to the segment size and fdatasynced, as STATE/journal/segment.prep (its first 4 MiB at
 * once, the rest at the pace of the records, ready about when the current segment is
 * full, rather than a segment's worth ahead of the commits at once), and a rotation
 * renames it (a segment made while none was ready gets its zeros ~1 MiB at a time by
 * the commits that need them, and takes the prepared one as soon as it is ready: the
 * one after it is only the 4 MiB made at once, and each later one twice the last, up to
 * the segment size). A
 * segment's size in rotation, stats and replay is where its last record ends, and a
 * segment is cut to that when the next one starts; retention by size counts the zeros
 * too (the current segment's and the prepared one's, up to two segment sizes): they
 * take the disk's room. A prepared segment is no data: recovery keeps it for the next
 * rotation, and removes one a stop left half made (segment.prep.part).
 *
 * Recovery at open reads every segment, checks each record's CRC, keeps what is valid,
 * logs what it discards and truncates a torn tail (what a write cut short leaves after
 * the last valid record of the last segment: the start of one record, then zeros or the
 * end; all zeros is the tail written ahead, and appends go on over it); it rebuilds each
 * topic's last seq (the highest any checkpoint, message or commit names) and the ids
 * published within the dedup window. Skipped bytes that no later checkpoint or commit
 * bounds, a lost checkpoint whose segment's predecessor is not whole, or a newest
 * segment that is sealed (its successor is gone) mean a published seq may be unknown:
 * a new epoch then starts, in a new segment, with the seqs going on above the highest
 * held (journal_recover.c, recovery_t, says case by case why this is enough). Ids
 * older than the window are forgotten while running (checked at a group write once a
 * minute, or once a window when that is shorter); a reload that widens the window reads
 * the older ids back from the segments.
 *
 * When a write fails (ENOSPC, EIO) the failed batch and everything appended after it
 * are reported failed to their commit callbacks, the segment is truncated back to its
 * last durable length and seqs return to their last durable values: nothing that was
 * not durable keeps a number.
 *
 * Early publish (options.early, --sync=early): commit waiters may also ask to hear when
 * their write(2) returned, before the fdatasync (nw_journal_commit_early). While the
 * current segment has room in its tail of zeros, a batch is then written by the loop
 * thread itself and told at once, and only the fdatasync goes to the pool: a write never
 * waits for the fdatasync before it, which covers what was written when it began (the
 * next covers the rest). When one fails, what was written since the last durable one
 * fails with it: the segment is cut back to its durable end. A power loss
 * can then take records whose seqs subscribers saw; so an early run keeps a marker
 * naming its boot (journal_boot.c) from open to a clean close, and an open that finds
 * one naming another boot (or saying a write failed after its records went out) starts
 * a new epoch. In the default mode nothing goes out before it is durable, so a power
 * loss takes nothing a subscriber saw and no marker is needed.
 *
 * Loop-thread only, except what the thread-pool jobs do inside.
 *
 * The parts (journal_internal.h lists them): journal.c (open, append, commit, the group
 * writer), journal_record.c (the record format above: framing, CRC-32C, each kind
 * packed and decoded, the segment reader; a new record kind starts there),
 * journal_recover.c, journal_dedup.c (the window), journal_cursor.c (replay), seen.c.
 */
#ifndef NW_JOURNAL_H
#define NW_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Jobs the journal may have on libuv's thread pool at once: one group write, one
 * read-back of ids for a widened dedup window and the preparation of the next segment
 * (main sizes the pool from it). */
#define NW_JOURNAL_POOL_JOBS 3

typedef struct nw_journal nw_journal_t;

typedef struct {
    bool sync;               /* false: write, never fsync (benchmarks, tmpfs) */
    bool early;              /* with sync: tell written callbacks once the write(2)
                                returned, before its fdatasync (--sync=early) */
    int64_t commit_delay_ms; /* least time between the starts of two group writes */
    uint64_t segment_size;   /* rotate a segment once it is this large; 0: never */
    uint64_t max_size;       /* retire oldest segments beyond this total; 0: no limit */
    int64_t max_age_ms;      /* retire segments whose newest record is older; 0: never */
    int64_t dedup_window_ms; /* how far back the seen-id set reaches */
    bool no_prepare;         /* with sync: no segment prepared ahead, zeros as commits go
                                (tests of that path; a full disk comes to it by itself) */
} nw_journal_options_t;

/* Open (creating STATE/journal if needed) and recover. NULL with the reason. When the
 * current segment would not start with a checkpoint (new journal, new epoch) one is
 * written before returning, so the epoch outlives a restart with nothing published.
 * options are kept as given; a reload changes only the dedup window (its setter below). */
nw_journal_t *nw_journal_open(uv_loop_t *loop, const char *state_dir,
                              nw_journal_options_t options, char *errbuf, size_t errlen);
/* Flush what is appended (blocking: call after the loop has drained), close, free.
 * A write still in flight is waited for by running the loop; callbacks still pending
 * run from here. The loop must run once more afterwards (as uv_loop_close's usual
 * drain does) so that the journal's timer handle is closed and freed. */
void nw_journal_close(nw_journal_t **self_p);

const char *nw_journal_epoch(const nw_journal_t *self); /* 32 hex digits */
/* Last seq assigned on topic (appended, maybe not yet durable); 0 when none. */
uint64_t nw_journal_last_seq(const nw_journal_t *self, const char *topic);
/* Last seq on topic whose record is durable (what replay can serve); 0 when none. */
uint64_t nw_journal_durable_seq(const nw_journal_t *self, const char *topic);
/* Calls fn once for every topic the journal holds a seq for, with its last seq (a relay
 * restarting learns from it what to catch up on). fn must not append. */
void nw_journal_topics(nw_journal_t *self,
                       void (*fn)(void *arg, const char *topic, uint64_t last), void *arg);

/* Change how far back the seen-id set reaches (a reload). Narrower: ids beyond it are
 * forgotten at once. Wider: the ids between the old and the new horizon are read back
 * from the segments on the thread pool and merged when that is done (logged at notice:
 * "dedup window widened to N s: M ids read back"); until then only the old window's are
 * known. 0, or -1 (ENOMEM, logged: the older ids stay unknown). */
int nw_journal_set_dedup_window(nw_journal_t *self, int64_t window_ms);

/* Whether id was appended at or after since_ms (dedup). */
bool nw_journal_seen(const nw_journal_t *self, const char *id, int64_t since_ms);

/* Append one message: seq must be nw_journal_last_seq(topic) + 1. The bytes are
 * copied. 0, or -1 with errno (EINVAL for a wrong seq, EMSGSIZE beyond 32 MiB, EIO
 * while a failure is being unwound, i.e. from inside a failed commit's callback, or
 * once closing, ENOMEM). */
int nw_journal_append(nw_journal_t *self, const char *topic, uint64_t seq, const char *id,
                      int64_t time_ms, const void *msg, size_t len);

/* status: 0 when durable, else a negative errno (the records were dropped). */
typedef void(nw_journal_commit_fn)(void *arg, int status);
/* fn(arg, status) runs on the loop thread once all appended so far is durable or
 * failed; callbacks run in the order they were registered, never from inside this
 * call. 0 or -1 (out of memory). */
int nw_journal_commit(nw_journal_t *self, nw_journal_commit_fn *fn, void *arg);
/* The same, and written(arg, 0) runs first, once: in early mode (options.early) as soon
 * as the group write's write(2) returned (in the page cache: a crash of the process
 * cannot lose it, a power loss can), otherwise just before fn(arg, 0). When the write
 * fails, written may have run (early) or not: fn(arg, -errno) runs either way. After a
 * failure following written, the seqs stay spent and the next open starts a new epoch. */
int nw_journal_commit_early(nw_journal_t *self, nw_journal_commit_fn *written,
                            nw_journal_commit_fn *fn, void *arg);

/* Group writes by duration, from the start on the loop to the end back on it (waiting
 * for a pool thread, write, fdatasync): the upper bounds in microseconds of all but the
 * last bucket, which counts the slower ones. */
#define NW_JOURNAL_LATENCY_BOUNDS_US \
    { \
        100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000 \
    }
#define NW_JOURNAL_LATENCY_BUCKETS 13

typedef struct {
    uint64_t segments, bytes, records;  /* on disk now */
    uint64_t commits, fsyncs, failures; /* group writes, fsyncs, failed writes */
    uint64_t discarded;                 /* records dropped by recovery (bad CRC) */
    uint64_t topics;
    uint64_t zeros;            /* written zeros held beyond the records: the current segment's
                                  tail and the prepared next segment (what is made of it so far) */
    uint64_t prepared;         /* the prepared next segment's size once it is ready, else 0 */
    uint64_t prepare_failures; /* preparations that failed (a full disk, say) */
    uint64_t writes;           /* group writes ended, failed or not */
    uint64_t write_ns;         /* their durations added up */
    uint64_t write_buckets[NW_JOURNAL_LATENCY_BUCKETS]; /* not cumulative */
} nw_journal_stats_t;
void nw_journal_stats(const nw_journal_t *self, nw_journal_stats_t *out);

/*
 * Replay (thread pool side): a cursor over the durable records of one topic, in seq
 * order. Opening (loop thread) snapshots which segments to read and how much of each is
 * durable, and opens nothing: each segment is opened by name as the cursor reaches it
 * and closed when it is done with it (or released), so a cursor holds at most one file.
 * A segment that retention retired before the cursor reached it is gone: the cursor
 * says so (ENOENT) rather than skipping it. Reading is blocking I/O. It starts at the
 * last segment whose checkpoint puts the topic below from_seq and reads on from there:
 * the cost is that of reading those segments whole.
 */
typedef struct nw_journal_cursor nw_journal_cursor_t;
/* The smallest seq still held for topic (0 when none) is written to *oldest so callers
 * can report "older than retention". NULL when topic has nothing durable (*oldest 0),
 * or out of memory. */
nw_journal_cursor_t *nw_journal_cursor_new(nw_journal_t *self, const char *topic,
                                           uint64_t from_seq, uint64_t *oldest);
/* Next record: *msg (owned by the cursor, valid until the next call) and its seq.
 * 1 when one was read, 0 at the end of what was durable at opening, -1 with errno on
 * an I/O error (ENOENT: the next segment was retired before the cursor reached it; its
 * records are no longer held). Damaged records are skipped, as recovery does. */
int nw_journal_cursor_next(nw_journal_cursor_t *self, uint64_t *seq, const void **msg,
                           size_t *len);
/* Give back the read buffer and, with close_file, the open segment file; the next
 * nw_journal_cursor_next() opens the segment again by name and goes on where it was
 * (so a released cursor can meet ENOENT). The last *msg is invalid afterwards. */
void nw_journal_cursor_release(nw_journal_cursor_t *self, bool close_file);
bool nw_journal_cursor_holds_file(const nw_journal_cursor_t *self);
void nw_journal_cursor_destroy(nw_journal_cursor_t **self_p);
/* The smallest seq still held for topic; 0 when none (loop thread). */
uint64_t nw_journal_oldest_seq(const nw_journal_t *self, const char *topic);

/* CRC-32C (Castagnoli), exposed for the tests. */
uint32_t nw_journal_crc32c(uint32_t crc, const void *data, size_t len);

#endif
