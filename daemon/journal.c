/*
 * journal: open, close, append, commit: the group-commit writer (see journal.h). In:
 * messages appended on the loop thread, each framed into the open batch
 * (journal_record.c) with its topic's next seq and its id noted in seen (seen.c, with
 * undo); commit requests. Out: one write (+ fdatasync) of a batch at a time on libuv's
 * thread pool (early mode: the write on the loop and the fdatasync alone on the pool,
 * while the segment's tail of zeros has room: "early writes" below), segments rotated,
 * sealed and retired there, the next segment prepared there beforehand ("prepared
 * segments"), and each commit callback
 * told, on the loop thread, once what it covers is durable or failed (a failure undoes
 * seqs and seen). Recovery at open is journal_recover.c, the dedup window
 * journal_dedup.c, replay's cursors journal_cursor.c; what they share with this file is
 * journal_internal.h.
 */
#include "fsutil.h"
#include "journal_internal.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <unistd.h>

#define ZERO_STEP (1u << 20)    /* zeros written ahead of the data at a time */
#define ZERO_LOW (256u << 10)   /* and written again once less than this is left */
#define PREP_MAX (256ull << 20) /* the most of a segment prepared ahead (see below) */

static const char zeros[64 << 10];

/* ---------------------------------------------------------------- batches and segments */

static batch_t *batch_new(void)
{
    batch_t *b = calloc(1, sizeof *b);
    if (!b || !(b->seqs = map_new())) {
        free(b);
        return NULL;
    }
    msgpack_sbuffer_init(&b->data);
    b->newest_ms = INT64_MIN;
    return b;
}

/* Empty the batch; its waiters must have been taken already. */
static void batch_clear(batch_t *b)
{
    b->data.size = 0;
    b->records = 0;
    b->newest_ms = INT64_MIN;
    zhashx_purge(b->seqs);
    nw_seen_undo_forget(&b->undo);
}

static void batch_destroy(batch_t **b_p)
{
    batch_t *b = *b_p;
    if (!b)
        return;
    batch_clear(b);
    msgpack_sbuffer_destroy(&b->data);
    zhashx_destroy(&b->seqs);
    nw_seen_undo_free(&b->undo);
    free(b->waiters);
    free(b);
    *b_p = NULL;
}

static void segment_release(segment_t *s)
{
    zhashx_destroy(&s->cp);
}

static int pwrite_all(int fd, const char *p, size_t n, uint64_t off)
{
#ifdef NW_TEST_HOOKS
    /* Test builds: while the file NW_TEST_WRITE_FAIL names exists, writes fail (EIO). */
    const char *fail = getenv("NW_TEST_WRITE_FAIL");
    if (fail && *fail && access(fail, F_OK) == 0) {
        errno = EIO;
        return -1;
    }
#endif
    while (n > 0) {
        ssize_t k = pwrite(fd, p, n, (off_t) off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = EIO;
            return -1;
        }
        p += k;
        off += (uint64_t) k;
        n -= (size_t) k;
    }
    return 0;
}

/* The file's size once a write ending at end is done, zeros included (unless they fail),
 * for a segment of alloc bytes whose zeros go up to limit (0: no limit) and stop below
 * zero_from (after a failure). The one rule for when zeros are topped up: the job's
 * write follows it, and an early write on the loop (ew_fits) keeps out of its way. */
static uint64_t zeros_after(bool zero_ahead, uint64_t zero_from, uint64_t limit, uint64_t alloc,
                            uint64_t end)
{
    if (alloc < end)
        alloc = end;
    uint64_t to = alloc + ZERO_STEP;
    if (limit && to > limit)
        to = limit;
    if (!zero_ahead || end < zero_from || alloc - end >= ZERO_LOW || to <= alloc)
        return alloc;
    return to;
}

static uint64_t zero_target(const job_t *job, uint64_t end)
{
    return zeros_after(job->zero_ahead, job->zero_from, job->zero_limit, job->alloc, end);
}

/* An fdatasync after a write that grows the file also commits its new size, which costs
 * about twice one that only overwrites allocated blocks; so the current segment keeps
 * written zeros (not fallocate, whose unwritten extents need a metadata commit of their
 * own when first written) ahead of its data end, and only the commit that tops them up
 * pays for a size change, about once per ZERO_STEP. Recovery takes zeros after the last
 * record for that tail. A full disk (or file size limit) only stops the zeros: what was
 * written of them is cut off again and the commit goes on; -1 on any other error. Since
 * that commit still pays, and about once per ZERO_STEP, the next segment is mostly made
 * beforehand off the commit path ("prepared segments" below), and this is only the path
 * of a segment made while none was ready. */
static int write_zeros(job_t *job, int fd, uint64_t end)
{
    uint64_t to = zero_target(job, end);
    if (job->alloc < end)
        job->alloc = end;
    if (to <= job->alloc)
        return 0;
    for (uint64_t off = job->alloc; off < to;) {
        size_t n = to - off < sizeof zeros ? (size_t) (to - off) : sizeof zeros;
        if (pwrite_all(fd, zeros, n, off) == 0) {
            off += n;
            continue;
        }
        if (errno != ENOSPC && errno != EDQUOT && errno != EFBIG)
            return -1;
        job->zero_failed = true;
        struct stat st;
        if (ftruncate(fd, (off_t) job->alloc) != 0 && fstat(fd, &st) == 0)
            job->alloc = (uint64_t) st.st_size; /* zeros left behind are still a tail */
        return 0;
    }
    job->alloc = to;
    return 0;
}

int nw_journal_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* Test builds: NW_TEST_SYNC_GATE names a FIFO; each early fdatasync waits for one byte
 * from it, so that a test can hold the write between published and durable. The byte
 * 'E' makes that fdatasync fail with EIO and 'S' with ENOSPC (a disk that fails its
 * writeback, a thin volume out of room), after the messages went out. Returns that
 * errno, or 0 (always 0 in other builds). */
static int test_gate(void)
{
#ifdef NW_TEST_HOOKS
    const char *gate = getenv("NW_TEST_SYNC_GATE");
    if (gate && *gate) {
        int g = open(gate, O_RDONLY | O_CLOEXEC);
        char c = 0;
        while (g >= 0 && read(g, &c, 1) < 0 && errno == EINTR)
            ;
        if (g >= 0)
            close(g);
        if (c == 'E' || c == 'S')
            return c == 'E' ? EIO : ENOSPC;
    }
#endif
    return 0;
}

/* Early mode: the write(2) returned, the records are in the page cache; the loop may
 * publish them now (on_async), while this thread goes on to the fdatasync. Returns 0, or
 * (test builds only) an errno the fdatasync is to fail with. */
static int early_written(job_t *job)
{
    if (!job->early)
        return 0;
    atomic_store(&job->written, true);
    uv_async_send(job->async);
    return test_gate();
}

/* The write's fdatasync (none with sync off), early mode's word to the loop before it. */
static int sync_data(job_t *job, int fd)
{
    int fail = early_written(job);
    if (!job->sync)
        return 0;
    if (fail) {
        errno = fail;
        return -1;
    }
    return fdatasync(fd);
}

/* Blocking: the write, its fsync, and the retirements. */
static void run_job(job_t *job)
{
    job->end_len = job->start_len;
    if (job->err || (job->len == 0 && job->head.size == 0))
        return;
    char path[PATH_MAX];
    nw_jrec_segment_path(job->dir, job->num, path, sizeof path);
    int fd = job->fd;
    if (job->create && job->prep_fd >= 0) {
        /* named, durably, before anything is written in it: the prepared name never
         * holds a record, so an open can take whatever has that name for zeros */
        char prep[PATH_MAX];
        snprintf(prep, sizeof prep, "%s/" NW_JPREP_NAME, job->dir);
        job->prep_used = true;
        if (rename(prep, path) != 0) {
            nw_warn("journal: cannot rename %s to %s: %s (a new file instead)", prep, path,
                    strerror(errno));
            close(job->prep_fd);
            unlink(prep);
            job->prep_fd = -1;
        } else if (job->sync && nw_journal_sync_dir(job->dir) != 0) {
            job->err = errno ? errno : EIO;
            close(job->prep_fd);
            unlink(path);
            return;
        } else {
            fd = job->prep_fd;
        }
    }
    if (job->create && job->prep_fd < 0 &&
        (fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640)) < 0) {
        job->err = errno;
        return;
    }
    uint64_t end = job->start_len + job->head.size + job->len;
    if (pwrite_all(fd, job->head.data, job->head.size, job->start_len) != 0 ||
        pwrite_all(fd, job->data, job->len, job->start_len + job->head.size) != 0 ||
        write_zeros(job, fd, end) != 0 || sync_data(job, fd) != 0 ||
        (job->create && job->prep_fd < 0 && job->sync && nw_journal_sync_dir(job->dir) != 0)) {
        job->err = errno ? errno : EIO;
        if (job->create) {
            close(fd);
            unlink(path);
        } else if (ftruncate(fd, (off_t) job->start_len) != 0) {
            /* the tail stays as garbage that readers skip; know where the file ends */
            struct stat st;
            if (fstat(fd, &st) == 0)
                job->end_len = job->alloc = (uint64_t) st.st_size;
            nw_warn("journal: cannot truncate %s back to %" PRIu64 ": %s", path, job->start_len,
                    strerror(errno));
        } else {
            job->alloc = job->start_len;
        }
        return;
    }
    /* The old segment is sealed (and keeps no tail of zeros) before anything in the new
     * one is published, so that losing the new one later cannot go unnoticed. */
    if (job->create && job->old_fd >= 0 &&
        (pwrite_all(job->old_fd, job->seal.data, job->seal.size, job->old_len) != 0 ||
         ftruncate(job->old_fd, (off_t) (job->old_len + job->seal.size)) != 0 ||
         (job->sync && fdatasync(job->old_fd) != 0))) {
        job->err = errno ? errno : EIO;
        close(fd);
        unlink(path);
        /* the old segment stays current: no seal (a crash would read it as sealed) */
        job->old_cut = ftruncate(job->old_fd, (off_t) job->old_len) == 0;
        return;
    }
    job->fsynced = job->sync;
    job->end_len = end;
    if (job->create) {
        job->fd = fd;
        if (job->old_fd >= 0)
            close(job->old_fd);
        job->old_fd = -1;
    }
    for (size_t i = 0; i < job->nretire; i++) {
        nw_jrec_segment_path(job->dir, job->retire[i].num, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT)
            nw_warn("journal: cannot remove %s: %s", path, strerror(errno));
    }
}

static void work_cb(uv_work_t *req)
{
    run_job(&((nw_journal_t *) req->data)->job);
}

static int reserve_segment(nw_journal_t *self)
{
    if (self->nsegs < self->segs_cap)
        return 0;
    size_t cap = self->segs_cap ? 2 * self->segs_cap : 16;
    segment_t *s = realloc(self->segs, cap * sizeof *s);
    if (!s)
        return -1;
    self->segs = s;
    self->segs_cap = cap;
    return 0;
}

int nw_journal_push_segment(nw_journal_t *self, uint64_t num)
{
    if (reserve_segment(self) != 0)
        return -1;
    self->segs[self->nsegs++] = (segment_t) {
        .num = num, .newest_ms = INT64_MIN, .cp_ms = INT64_MIN};
    return 0;
}

/* ---------------------------------------------------------------- prepared segments
 *
 * Zeros written ahead on the commit path cost the commit that writes them (and syncs a
 * new file size) about once per ZERO_STEP, and each rotation creates a file there. So,
 * when the zeros are worth it (zero_ahead) and segments rotate, jobs on the pool make
 * the next segment while commits go on and none needs it: NW_JPREP_PART written with
 * zeros to the segment size (up to PREP_MAX) a step at a time, each step written back
 * before the next is dirtied (a commit's fdatasync then never waits behind a segment's
 * worth of writeback), fdatasynced, then renamed NW_JPREP_NAME. A rotation renames that
 * to the new segment's name and syncs the folder before writing into it (run_job), so
 * the commits into it overwrite allocated blocks and change no size until it is full.
 * A segment still on the zero-step path (a new journal's first, the current one after
 * a restart, one made while none was ready) rotates early into a ready prepared one
 * instead of topping its zeros up (seal()). A clean stop keeps a ready one for the next
 * start and removes a half-made one; recovery removes one a crash left half made
 * (journal_recover.c).
 *
 * The steps are paced by the records (prep_allowed): PREP_LEAD at once, the rest as the
 * records grow, at the rate that has it ready about when the current segment is full.
 * Made all at once, a new journal or a restart wrote a segment of zeros (two, with the
 * early rotation) into the disk's queue in the first seconds, ahead of every commit's
 * fdatasync; paced, the disk writes zeros no faster than records, which it has to
 * anyway, and a segment no larger than the lead is still made at once. The sizes ramp
 * up (prep_maybe): after a segment on the zero-step path the next is the lead alone,
 * made at once, so that segment takes it at its next step instead of paying a step a
 * MiB until a full one is paced in; after that each is twice the last, up to the full
 * size, paced at most twice as fast as the records.
 *
 * Preparing must never take the room commits need: it starts only while twice its size
 * is free, a full disk (or any failure) while it runs removes the file, and a journal
 * write that finds the disk full takes the room back (prep_give_back: the ready or
 * half-made file removed, or its making given up); it is said once, commits go on with
 * the zero-step path, and it is tried again at the next segment. Retention counts the
 * prepared segment from when it is begun (seal()). */

#define PREP_LEAD (4u << 20) /* of the next segment made before any record is written */

/* How much of the next segment to prepare, 0: none. */
static uint64_t prep_want(const nw_journal_t *self)
{
    if (!self->prep_on)
        return 0;
    return self->opt.segment_size < PREP_MAX ? self->opt.segment_size : PREP_MAX;
}

/* How far the one being made may be made now: the lead, then its size over prep_room's
 * worth of records (the room left in the segment it was begun in, but never less than a
 * quarter segment: zeros at most 4 times as fast as records). */
static uint64_t prep_allowed(const nw_journal_t *self)
{
    uint64_t grown = self->grown - self->prep_base, room = self->prep_room;
    if (self->prep_size <= PREP_LEAD || grown >= room)
        return self->prep_size;
    while (room >> 32) { /* segments of 4 GiB and more: grown * prep_size fits 64 bits */
        grown >>= 1;
        room >>= 1;
    }
    uint64_t paced = PREP_LEAD + grown * self->prep_size / room; /* < 2^32 * 2^28 */
    return paced < self->prep_size ? paced : self->prep_size;
}

/* What retention counts for the prepared segment: its size from when it is begun, and
 * where none is, the one the end of this write begins unless preparing is failing (taken:
 * this write takes the ready one, which the new segment's tail counts then). */
static uint64_t prep_held(const nw_journal_t *self, bool taken)
{
    if (!taken && self->prep_size)
        return self->prep_size;
    return self->prep_failing ? 0 : prep_want(self);
}

/* Pool thread: the next step of NW_JPREP_PART, its zeros from prep_made to prep_step_end
 * (the file made at the first, renamed NW_JPREP_NAME at the last: see above). */
static void prep_work(uv_work_t *req)
{
    nw_journal_t *self = req->data;
    char part[PATH_MAX], name[PATH_MAX];
    snprintf(part, sizeof part, "%s/" NW_JPREP_PART, self->dir);
    snprintf(name, sizeof name, "%s/" NW_JPREP_NAME, self->dir);
    uint64_t want = self->prep_size, off = self->prep_made, end = self->prep_step_end;
    self->prep_err = 0;
    self->prep_free = UINT64_MAX;
    int fd = self->prep_part_fd;
    if (fd < 0) {
        struct statvfs vfs;
        if (statvfs(self->dir, &vfs) == 0 && (uint64_t) vfs.f_bavail * vfs.f_frsize < 2 * want) {
            self->prep_free = (uint64_t) vfs.f_bavail * vfs.f_frsize;
            self->prep_err = ENOSPC;
            return;
        }
        unlink(part); /* one a failed write left behind, if any */
        if ((fd = open(part, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640)) < 0) {
            self->prep_err = errno;
            return;
        }
        self->prep_part_fd = fd;
    }
    errno = 0;
    if (atomic_load(&self->prep_stop)) {
        errno = ECANCELED;
        goto fail;
    }
    for (uint64_t o = off; o < end;) {
        size_t n = end - o < sizeof zeros ? (size_t) (end - o) : sizeof zeros;
        if (pwrite_all(fd, zeros, n, o) != 0)
            goto fail;
        o += n;
    }
    if (sync_file_range(fd, (off_t) off, (off_t) (end - off),
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                            SYNC_FILE_RANGE_WAIT_AFTER) != 0)
        goto fail;
    if (end == want && (fdatasync(fd) != 0 || rename(part, name) != 0))
        goto fail;
    return;
fail:
    self->prep_err = errno ? errno : EIO;
    close(fd);
    self->prep_part_fd = -1;
    unlink(part);
}

/* Preparing failed (how: what became of it, or NULL): said once, tried again later. */
static void prep_failed(nw_journal_t *self, const char *how)
{
    self->prep_failures++;
    const segment_t *cur = self->nsegs ? &self->segs[self->nsegs - 1] : NULL;
    self->prep_retry = (cur ? cur->num : 0) + 1;
    char why[160];
    if (how)
        snprintf(why, sizeof why, "%s, %s", strerror(self->prep_err), how);
    else if (self->prep_free != UINT64_MAX)
        snprintf(why, sizeof why, "%" PRIu64 " MiB free, twice its size needed",
                 self->prep_free >> 20);
    else
        snprintf(why, sizeof why, "%s", strerror(self->prep_err));
    nw_log(self->prep_failing ? NW_LOG_DEBUG : NW_LOG_WARNING,
           "journal: cannot prepare the next segment (%s): commits write its zeros as they "
           "go; tried again at the next segment",
           why);
    self->prep_failing = true;
}

static void prep_maybe(nw_journal_t *self);

static void prep_done(uv_work_t *req, int status)
{
    (void) status; /* only uv_cancel() makes it nonzero, and nothing cancels */
    nw_journal_t *self = req->data;
    self->preparing = false;
    if (self->prep_err == 0) {
        self->prep_made = self->prep_step_end;
        if (self->prep_made < self->prep_size) {
            prep_maybe(self); /* the next step, if the records have come this far */
            return;
        }
        self->prep_fd = self->prep_part_fd;
        self->prep_part_fd = -1;
        if (self->prep_failing)
            nw_notice("journal: the next segment is prepared again");
        self->prep_failing = false;
        return;
    }
    self->prep_size = self->prep_made = 0;
    if (self->closing)
        return;
    if (self->prep_err == ECANCELED) {
        self->prep_err = ENOSPC;
        prep_failed(self, "given up to leave its room to the commits");
    } else {
        prep_failed(self, NULL);
    }
}

/* Close and remove the next segment's file, half made (fd: &prep_part_fd, name
 * NW_JPREP_PART) or ready (&prep_fd, NW_JPREP_NAME); no step of it on the pool. */
static void prep_remove(nw_journal_t *self, int *fd, const char *name)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", self->dir, name);
    close(*fd);
    *fd = -1;
    self->prep_size = self->prep_made = 0;
    if (unlink(path) != 0 && errno != ENOENT)
        nw_warn("journal: cannot remove %s: %s", path, strerror(errno));
}

/* A write found the disk full: the room the prepared segment takes (or the one being
 * made would take) goes back to the commits; preparing is tried again at the next
 * segment. */
static void prep_give_back(nw_journal_t *self, int err)
{
    if (err != ENOSPC && err != EDQUOT)
        return;
    if (self->preparing) {
        atomic_store(&self->prep_stop, true); /* prep_done says so */
        return;
    }
    if (self->prep_part_fd >= 0)
        prep_remove(self, &self->prep_part_fd, NW_JPREP_PART);
    else if (self->prep_fd >= 0)
        prep_remove(self, &self->prep_fd, NW_JPREP_NAME);
    else
        return;
    self->prep_err = err;
    prep_failed(self, "removed to give its room to the commits");
}

/* Begin preparing the next segment, or take its next step, unless one is ready, a step
 * is under way, the records have not come far enough, or none is wanted. */
static void prep_maybe(nw_journal_t *self)
{
    const segment_t *cur = self->nsegs ? &self->segs[self->nsegs - 1] : NULL;
    uint64_t want = prep_want(self);
    if (!want || self->preparing || self->prep_fd >= 0 || self->closing)
        return;
    if (!self->prep_size) {
        if (self->prep_failing && (cur ? cur->num : 0) < self->prep_retry)
            return;
        /* the ramp: the lead after a segment on the zero-step path, else twice the
         * current one's size, up to the full size; paced over the current one's room */
        uint64_t size = !self->cur_prep             ? (want < PREP_LEAD ? want : PREP_LEAD)
                        : self->cur_prep < want / 2 ? 2 * self->cur_prep
                                                    : want;
        uint64_t end = self->cur_prep && self->cur_prep < want ? self->cur_prep
                                                               : self->opt.segment_size;
        uint64_t fill = cur ? cur->size : 0, room = fill < end ? end - fill : 0;
        self->prep_size = size;
        self->prep_made = 0;
        self->prep_base = self->grown;
        self->prep_room = room > size / 4 ? room : size / 4 ? size / 4 : 1;
        atomic_store(&self->prep_stop, false);
    }
    uint64_t end = self->prep_size - self->prep_made < ZERO_STEP ? self->prep_size
                                                                 : self->prep_made + ZERO_STEP;
    if (prep_allowed(self) < end)
        return;
    self->prep_step_end = end;
    self->preparing = true;
    self->prep_req.data = self;
    if (uv_queue_work(self->loop, &self->prep_req, prep_work, prep_done) != 0)
        self->preparing = false; /* cannot happen with both callbacks given */
}

/* Move the open batch to flight and describe its write in self->job. */
static void seal(nw_journal_t *self, bool sync)
{
    batch_t *b = self->open;
    self->open = self->flight;
    self->flight = b;
    job_t *job = &self->job;
    job->dir = self->dir;
    job->sync = sync;
    job->data = b->data.data;
    job->len = b->data.size;
    job->err = 0;
    job->fsynced = false;
    job->create = false;
    job->fd = self->fd;
    job->old_fd = -1;
    job->head.size = 0;
    job->nretire = 0;
    segment_t *cur = self->nsegs ? &self->segs[self->nsegs - 1] : NULL;
    job->num = cur ? cur->num : 0;
    job->start_len = cur ? cur->size : 0;
    job->alloc = cur ? cur->alloc : 0;
    job->zero_ahead = self->zero_ahead;
    job->zero_failed = false;
    job->zero_from = self->zero_from;
    job->zero_limit = self->opt.segment_size;
    job->seal.size = 0;
    job->old_cut = false;
    job->prep_fd = -1;
    job->prep_used = false;
    job->early = self->opt.early && sync && self->async;
    job->async = self->async;
    atomic_store(&job->written, false);
    self->told_written = false;
    if (job->len == 0)
        return;
    /* a batch starting a segment follows a checkpoint of the seqs as they stand before
     * it, which (no other write being in flight) are the durable ones */
    bool rotate = !cur || (self->opt.segment_size && cur->size >= self->opt.segment_size);
    /* a segment on the zero-step path takes a ready prepared one rather than more zeros
     * (the commit record is not packed yet: 4096 stands for it) */
    if (!rotate && self->prep_fd >= 0 && !self->closing && cur->alloc < prep_want(self) &&
        cur->size + job->len + 4096 + ZERO_LOW > cur->alloc)
        rotate = true;
    if (rotate && reserve_segment(self) != 0) {
        job->err = ENOMEM;
        return;
    }
    cur = self->nsegs ? &self->segs[self->nsegs - 1] : NULL; /* segs may have moved */
    if (rotate) {
        job->create = true;
        job->num = cur ? cur->num + 1 : 1;
        job->fd = -1;
        job->old_fd = self->fd;
        job->old_len = cur ? cur->size : 0;
        job->start_len = job->alloc = job->zero_from = 0;
        if (self->prep_fd >= 0) {
            job->prep_fd = self->prep_fd;
            job->alloc = self->prep_size;
        }
        if (cur && nw_jrec_pack_seal(&job->seal, job->num, self->epoch) != 0) {
            job->err = ENOMEM;
            return;
        }
    }
    /* the batch is frozen now: its commit record closes it */
    if (nw_jrec_pack_commit(&b->data, job->start_len, b->seqs, self->epoch) != 0) {
        job->err = ENOMEM;
        return;
    }
    job->data = b->data.data;
    job->len = b->data.size;
    if (job->start_len == 0) {
        if (!(job->cp = map_new()) || map_copy(job->cp, self->durable) != 0 ||
            nw_jrec_pack_checkpoint(&job->head, self->epoch, job->cp_ms = wall_ms(),
                                    self->durable) != 0) {
            job->err = ENOMEM;
            return;
        }
    }
    /* retire what the write will leave beyond the limits; never the current segment.
     * What the journal holds on disk counts: its records, the zeros ahead of them in the
     * current segment, and the prepared segment (from when it is begun). */
    uint64_t end = job->start_len + job->head.size + job->len;
    uint64_t total = self->bytes + job->seal.size + job->head.size + job->len +
                     (zero_target(job, end) - end) + prep_held(self, job->prep_fd >= 0);
    int64_t now = wall_ms();
    size_t limit = rotate ? self->nsegs : self->nsegs - 1;
    while (job->nretire < limit) {
        const segment_t *s = &self->segs[job->nretire];
        int64_t newest = s->records ? s->newest_ms : s->cp_ms;
        if (!(self->opt.max_size && total > self->opt.max_size) &&
            !(self->opt.max_age_ms && newest < now - self->opt.max_age_ms))
            break;
        total -= s->size;
        job->nretire++;
    }
    job->retire = self->segs;
}

static void maybe_start(nw_journal_t *self);
static void start_job(nw_journal_t *self);
static uint64_t ew_records(const nw_journal_t *self);

/* The duration of a group write, for the latency histogram (nw_journal_stats). */
static void record_latency(nw_journal_t *self, uint64_t ns)
{
    static const uint64_t bounds_us[] = NW_JOURNAL_LATENCY_BOUNDS_US;
    _Static_assert(sizeof bounds_us / sizeof bounds_us[0] + 1 == NW_JOURNAL_LATENCY_BUCKETS,
                   "one bucket per bound, and one for the slower writes");
    size_t i = 0;
    while (i < NW_JOURNAL_LATENCY_BUCKETS - 1 && ns > bounds_us[i] * 1000)
        i++;
    self->write_buckets[i]++;
    self->writes++;
    self->write_ns += ns;
}

/* Each waiter's written callback, once per write: in early mode when the worker says
 * the write(2) returned, otherwise (and when that word comes late) just before the
 * waiters hear it is durable. */
/* Early: the seqs of b went out and are lost; they stay spent for the rest of the run. */
static void keep_spent(nw_journal_t *self, zhashx_t *seqs)
{
    for (uint64_t *v = zhashx_first(seqs); v; v = zhashx_next(seqs))
        if (*v > map_get(self->spent, zhashx_cursor(seqs)))
            map_set(self->spent, zhashx_cursor(seqs), *v);
}

/* A write failed: each topic's next seq follows what is durable, or what went out and
 * was lost if that is higher (a later failed write, whose records never went out, must
 * not hand those seqs out again: two articles under one (epoch, topic, seq)). */
static void seqs_back(nw_journal_t *self)
{
    map_copy(self->seqs, self->durable);
    for (uint64_t *v = zhashx_first(self->spent); v; v = zhashx_next(self->spent))
        if (*v > map_get(self->seqs, zhashx_cursor(self->spent)))
            map_set(self->seqs, zhashx_cursor(self->spent), *v);
}

static void tell_written(nw_journal_t *self, waiter_t *w, size_t n)
{
    if (self->told_written)
        return;
    self->told_written = true;
    for (size_t i = 0; i < n; i++)
        if (w[i].written)
            w[i].written(w[i].arg, 0);
}

static void ew_try(nw_journal_t *self);

static void on_async(uv_async_t *async)
{
    nw_journal_t *self = async->data;
    if (self->writing && atomic_load(&self->job.written))
        tell_written(self, self->flight->waiters, self->flight->nwaiters);
}

/* An idle handle, not the async: the loop's own word to itself needs no eventfd write
 * and wake-up (two syscalls and a turn through epoll a commit), and an active idle
 * handle still makes the next turn come at once. */
static void on_kick(uv_idle_t *kick)
{
    nw_journal_t *self = kick->data;
    uv_idle_stop(kick);
    if (self->ew_kick) {
        self->ew_kick = false;
        ew_try(self);
    }
}

/* Apply a finished write (loop thread) and tell its waiters. */
static void finish(nw_journal_t *self)
{
    job_t *job = &self->job;
    batch_t *b = self->flight;
    self->writing = false;
    record_latency(self, uv_hrtime() - self->write_start_ns);
    waiter_t *first = b->waiters, *then = NULL;
    size_t nfirst = b->nwaiters, nthen = 0;
    b->waiters = NULL;
    b->nwaiters = b->waiters_cap = 0;
    int err = job->err;
    /* what the new segment, if one is made, was prepared to (0: a new file) */
    uint64_t took = job->create && job->prep_used && job->prep_fd >= 0 ? self->prep_size : 0;
    if (job->prep_used) {
        /* renamed to the new segment (or dropped): gone either way */
        self->prep_fd = -1;
        self->prep_size = 0;
        job->prep_fd = -1;
        job->prep_used = false;
    }
    if (err == 0 && job->end_len > job->start_len) {
        if (job->create) {
            nw_journal_push_segment(self, job->num); /* reserved by seal(): cannot fail */
            self->fd = job->fd;
            self->cur_prep = took;
        }
        segment_t *cur = &self->segs[self->nsegs - 1];
        uint64_t added = job->end_len - job->start_len;
        if (job->create && self->nsegs > 1) {
            segment_t *prev = &self->segs[self->nsegs - 2];
            prev->size += job->seal.size;
            prev->alloc = prev->size;
            prev->sealed = job->seal.size > 0;
            self->bytes += job->seal.size;
        }
        cur->size = job->end_len;
        cur->alloc = job->alloc;
        /* out of room for zeros: try again a step further on */
        self->zero_from = job->zero_failed ? job->end_len + ZERO_STEP : job->zero_from;
        cur->records += b->records;
        if (b->newest_ms > cur->newest_ms)
            cur->newest_ms = b->newest_ms;
        if (job->cp && !cur->cp) {
            cur->cp = job->cp;
            job->cp = NULL;
            cur->cp_ms = job->cp_ms;
        }
        self->bytes += added;
        self->grown += added;
        self->records += b->records;
        self->commits++;
        self->fsyncs += job->fsynced;
        for (size_t i = 0; i < job->nretire; i++) {
            self->bytes -= self->segs[i].size;
            self->records -= self->segs[i].records;
            segment_release(&self->segs[i]);
        }
        self->nsegs -= job->nretire;
        memmove(self->segs, self->segs + job->nretire, self->nsegs * sizeof *self->segs);
        for (uint64_t *v = zhashx_first(b->seqs); v; v = zhashx_next(b->seqs))
            map_set(self->durable, zhashx_cursor(b->seqs), *v);
        batch_clear(b);
        nw_journal_prune_seen(self, false);
        self->failing = false;
    } else if (err) {
        self->failures++;
        prep_give_back(self, err);
        if (!job->create && self->nsegs) {
            self->segs[self->nsegs - 1].size = job->end_len;
            self->segs[self->nsegs - 1].alloc = job->alloc;
        } else if (job->old_cut && self->nsegs) {
            self->segs[self->nsegs - 1].alloc = self->segs[self->nsegs - 1].size;
        }
        /* A full disk fails every retry: say it once, then only at debug level. */
        nw_log(self->failing ? NW_LOG_DEBUG : NW_LOG_WARNING,
               "journal: writing " NW_JSEG_FMT " failed (%s): %" PRIu64 " records dropped",
               job->num, strerror(err), b->records + self->open->records);
        self->failing = true;
        /* everything appended after the failed batch took seqs that follow its own */
        batch_t *o = self->open;
        then = o->waiters;
        nthen = o->nwaiters;
        o->waiters = NULL;
        o->nwaiters = o->waiters_cap = 0;
        /* newest first: what the open batch did was done over the failed one's */
        nw_seen_undo(&self->seen, &o->undo);
        nw_seen_undo(&self->seen, &b->undo);
        batch_clear(o);
        if (self->told_written)
            keep_spent(self, b->seqs);
        seqs_back(self);
        if (self->told_written) {
            /* early: its messages went out, so their seqs stay spent (this run hands
             * out none of them again) and the marker makes the next start begin a new
             * epoch, since the journal no longer holds what subscribers saw */
            if (!self->early_lost && nw_journal_boot_mark(self, "lost") != 0)
                nw_err("journal: cannot mark the journal as having lost published "
                       "records: %s",
                       strerror(errno));
            self->early_lost = true;
        }
        batch_clear(b);
    } else {
        batch_clear(b);
    }
    zhashx_destroy(&job->cp);
    job->head.size = 0;

    /* a success tells written first, if the worker's async has not yet */
    if (err == 0)
        tell_written(self, first, nfirst);
    self->unwinding = err != 0;
    for (size_t i = 0; i < nfirst; i++)
        first[i].fn(first[i].arg, -err);
    for (size_t i = 0; i < nthen; i++)
        then[i].fn(then[i].arg, -err);
    self->unwinding = false;
    free(first);
    free(then);
    prep_maybe(self);
    maybe_start(self);
}

static void on_written(uv_work_t *req, int status)
{
    (void) status; /* only uv_cancel() makes it nonzero, and nothing cancels */
    finish(req->data);
}

static void on_timer(uv_timer_t *timer)
{
    maybe_start(timer->data);
}

static void maybe_start(nw_journal_t *self)
{
    batch_t *b = self->open;
    if (self->writing || self->closing || (b->data.size == 0 && b->nwaiters == 0))
        return;
    uint64_t now = uv_now(self->loop), delay = (uint64_t) self->opt.commit_delay_ms;
    if (self->wrote && self->opt.commit_delay_ms > 0 && now < self->last_start + delay) {
        if (!uv_is_active((uv_handle_t *) self->timer))
            uv_timer_start(self->timer, on_timer, self->last_start + delay - now, 0);
        return;
    }
    if (self->kick) {
        /* early: decided on the loop's next turn (ew_try), never inside an append's or
         * a commit's call, whose callbacks must not run from there */
        if (!self->ew_kick) {
            self->ew_kick = true;
            uv_idle_start(self->kick, on_kick);
        }
        return;
    }
    start_job(self);
}

/* The group write of the open batch as one job on the pool (write, fdatasync). */
static void start_job(nw_journal_t *self)
{
    self->wrote = true;
    self->last_start = uv_now(self->loop);
    self->write_start_ns = uv_hrtime();
    seal(self, self->opt.sync);
    self->writing = true;
    self->job.req.data = self;
    if (uv_queue_work(self->loop, &self->job.req, work_cb, on_written) != 0) {
        self->job.err = EAGAIN; /* cannot happen with both callbacks given */
        finish(self);
    }
}

/* ---------------------------------------------------------------- early writes
 *
 * Early mode would otherwise write a batch only once the fdatasync before it is done,
 * so its messages would wait for that one to go out. Instead, while the current segment
 * has room in its tail of zeros, the loop itself writes the open batch there (a write(2)
 * into the page cache), publishes it at once and leaves only the fdatasync to the pool;
 * batches written while one runs wait for the next, which covers them all. Every change
 * to the file is made on the loop (writes here, the cut after a failure in ew_fail), so
 * the fdatasync on the pool never races one. A batch that needs what only a job does
 * (a new segment, more zeros, segments retired) waits for these to be durable and goes
 * as a job (start_job). */

/* Whether the open batch, len bytes with its commit record, can be written by the loop. */
static bool ew_fits(nw_journal_t *self, uint64_t len)
{
    segment_t *cur = self->nsegs ? &self->segs[self->nsegs - 1] : NULL;
    if (!cur || self->fd < 0 || !self->zero_ahead || self->writing || self->closing ||
        self->unwinding || self->ew_write_err)
        return false;
    if (!self->ew_n)
        self->ew_end = cur->size;
    /* within the zeros, and not where a job would top them up (near their end, unless the
     * segment has all of them, as a prepared one does: that is written here to its end) */
    if ((self->opt.segment_size && self->ew_end >= self->opt.segment_size) ||
        zeros_after(self->zero_ahead, self->zero_from, self->opt.segment_size, cur->alloc,
                    self->ew_end + len) > cur->alloc)
        return false;
    /* the oldest segment due for retirement (as seal() decides it) */
    if (self->nsegs > 1) {
        const segment_t *s = &self->segs[0];
        int64_t newest = s->records ? s->newest_ms : s->cp_ms;
        /* a write into the zeros turns them into records: what is held stays the same */
        if ((self->opt.max_size &&
             self->bytes + (cur->alloc - cur->size) + prep_held(self, false) >
                 self->opt.max_size) ||
            (self->opt.max_age_ms && newest < wall_ms() - self->opt.max_age_ms))
            return false;
    }
    return true;
}

static void ew_sync_work(uv_work_t *req)
{
    nw_journal_t *self = req->data;
    int fail = test_gate();
    self->ew_err = fail ? fail : fdatasync(self->fd) != 0 ? (errno ? errno : EIO) : 0;
}

static void ew_sync_done(uv_work_t *req, int status);

static void ew_sync_start(nw_journal_t *self)
{
    self->ew_covered = self->ew_n;
    self->ew_syncing = true;
    self->ew_start_ns = uv_hrtime();
    self->ew_req.data = self;
    if (uv_queue_work(self->loop, &self->ew_req, ew_sync_work, ew_sync_done) != 0) {
        self->ew_err = EAGAIN; /* cannot happen with both callbacks given */
        ew_sync_done(&self->ew_req, 0);
    }
}

static batch_t *ew_batch(nw_journal_t *self)
{
    return self->ew_nspare ? self->ew_spare[--self->ew_nspare] : batch_new();
}

static void ew_recycle(nw_journal_t *self, batch_t *b)
{
    batch_clear(b);
    free(b->waiters);
    b->waiters = NULL;
    b->nwaiters = b->waiters_cap = 0;
    if (self->ew_nspare < self->ew_cap)
        self->ew_spare[self->ew_nspare++] = b;
    else
        batch_destroy(&b);
}

/* Everything written since the last fdatasync that succeeded went out and is lost: cut
 * the segment back to its durable end, keep those seqs spent, fail them and the open
 * batch (nothing of which went out), as finish() does for a job. */
static void ew_fail(nw_journal_t *self, int err)
{
    segment_t *cur = &self->segs[self->nsegs - 1];
    self->failures++;
    prep_give_back(self, err);
    nw_log(self->failing ? NW_LOG_DEBUG : NW_LOG_WARNING,
           "journal: writing " NW_JSEG_FMT " failed (%s): %" PRIu64 " records dropped", cur->num,
           strerror(err), self->open->records + ew_records(self));
    self->failing = true;
    if (ftruncate(self->fd, (off_t) cur->size) != 0) {
        struct stat st;
        if (fstat(self->fd, &st) == 0)
            cur->alloc = (uint64_t) st.st_size;
        nw_warn("journal: cannot truncate segment " NW_JSEG_FMT " back to %" PRIu64 ": %s",
                cur->num, cur->size, strerror(errno));
    } else {
        cur->alloc = cur->size;
    }
    self->ew_end = cur->size;
    self->ew_write_err = 0;
    batch_t *o = self->open;
    nw_seen_undo(&self->seen, &o->undo);
    for (size_t i = self->ew_n; i-- > 0;)
        nw_seen_undo(&self->seen, &self->ew[i]->undo);
    for (size_t i = 0; i < self->ew_n; i++)
        keep_spent(self, self->ew[i]->seqs);
    seqs_back(self);
    if (self->ew_n && !self->early_lost && nw_journal_boot_mark(self, "lost") != 0)
        nw_err("journal: cannot mark the journal as having lost published records: %s",
               strerror(errno));
    self->early_lost = self->early_lost || self->ew_n;
    size_t n = self->ew_n;
    batch_t **failed = self->ew;
    self->ew = NULL;
    self->ew_n = self->ew_covered = 0;
    waiter_t *then = o->waiters;
    size_t nthen = o->nwaiters;
    o->waiters = NULL;
    o->nwaiters = o->waiters_cap = 0;
    batch_clear(o);
    self->unwinding = true;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < failed[i]->nwaiters; k++)
            failed[i]->waiters[k].fn(failed[i]->waiters[k].arg, -err);
    for (size_t k = 0; k < nthen; k++)
        then[k].fn(then[k].arg, -err);
    self->unwinding = false;
    free(then);
    for (size_t i = 0; i < n; i++)
        ew_recycle(self, failed[i]);
    self->ew = failed; /* the array itself is kept */
    maybe_start(self);
}

static uint64_t ew_records(const nw_journal_t *self)
{
    uint64_t n = 0;
    for (size_t i = 0; i < self->ew_n; i++)
        n += self->ew[i]->records;
    return n;
}

/* The fdatasync is done: what it covered is durable (or, failed, lost). */
static void ew_sync_done(uv_work_t *req, int status)
{
    (void) status; /* only uv_cancel() makes it nonzero, and nothing cancels */
    nw_journal_t *self = req->data;
    self->ew_syncing = false;
    record_latency(self, uv_hrtime() - self->ew_start_ns);
    if (self->ew_err) {
        ew_fail(self, self->ew_err);
        return;
    }
    segment_t *cur = &self->segs[self->nsegs - 1];
    size_t n = self->ew_covered;
    for (size_t i = 0; i < n; i++) {
        batch_t *b = self->ew[i];
        self->bytes += b->end_len - cur->size;
        self->grown += b->end_len - cur->size;
        cur->size = b->end_len;
        cur->records += b->records;
        if (b->newest_ms > cur->newest_ms)
            cur->newest_ms = b->newest_ms;
        self->records += b->records;
        self->commits++;
        for (uint64_t *v = zhashx_first(b->seqs); v; v = zhashx_next(b->seqs))
            map_set(self->durable, zhashx_cursor(b->seqs), *v);
    }
    self->fsyncs++;
    self->failing = false;
    nw_journal_prune_seen(self, false);
    /* the callbacks cannot reach self->ew: appends and commits go to the open batch, and
     * what they start waits for on_kick */
    for (size_t i = 0; i < n; i++)
        for (size_t w = 0; w < self->ew[i]->nwaiters; w++)
            self->ew[i]->waiters[w].fn(self->ew[i]->waiters[w].arg, 0);
    for (size_t i = 0; i < n; i++)
        ew_recycle(self, self->ew[i]);
    self->ew_n -= n;
    memmove(self->ew, self->ew + n, self->ew_n * sizeof *self->ew);
    self->ew_covered = 0;
    if (self->ew_write_err) {
        /* a write failed while this fdatasync ran: what it covered is durable (above),
         * what was written after it began and the failed batch are lost, and only
         * those are cut back */
        ew_fail(self, self->ew_write_err);
        return;
    }
    prep_maybe(self);
    if (self->ew_n)
        ew_sync_start(self);
    else
        maybe_start(self);
}

/* The loop writes the open batch into the tail, publishes it, and has it synced. 0, or
 * -1 when it must go as a job instead (nothing was changed then). */
static int ew_write(nw_journal_t *self)
{
    batch_t *b = self->open;
    self->ew_commit.size = 0;
    if (!self->ew_n)
        self->ew_end = self->segs[self->nsegs - 1].size;
    if (nw_jrec_pack_commit(&self->ew_commit, self->ew_end, b->seqs, self->epoch) != 0 ||
        !ew_fits(self, b->data.size + self->ew_commit.size))
        return -1;
    if (self->ew_n == self->ew_cap) {
        size_t cap = self->ew_cap ? 2 * self->ew_cap : 16;
        batch_t **a = realloc(self->ew, cap * sizeof *a), **sp;
        if (!a)
            return -1;
        self->ew = a;
        if (!(sp = realloc(self->ew_spare, cap * sizeof *sp)))
            return -1;
        self->ew_spare = sp;
        self->ew_cap = cap;
    }
    batch_t *next = ew_batch(self);
    if (!next)
        return -1;
    self->wrote = true;
    self->last_start = uv_now(self->loop);
    self->open = next;
    self->ew[self->ew_n++] = b;
    b->end_len = self->ew_end + b->data.size + self->ew_commit.size;
    if (pwrite_all(self->fd, b->data.data, b->data.size, self->ew_end) != 0 ||
        pwrite_all(self->fd, self->ew_commit.data, self->ew_commit.size,
                   self->ew_end + b->data.size) != 0) {
        /* nothing of this batch went out; those before it did */
        int err = errno ? errno : EIO;
        self->ew_n--;
        self->open = b;
        ew_recycle(self, next);
        if (self->ew_syncing) {
            /* what the running fdatasync covers stays durable; the rest fails once it
             * ends */
            self->ew_write_err = err;
            nw_debug("journal: an early write failed (%s) while an fdatasync runs",
                     strerror(err));
            return 0;
        }
        ew_fail(self, err);
        return 0;
    }
    self->ew_end = b->end_len;
    for (size_t i = 0; i < b->nwaiters; i++)
        if (b->waiters[i].written)
            b->waiters[i].written(b->waiters[i].arg, 0);
    if (!self->ew_syncing)
        ew_sync_start(self);
    return 0;
}

static void ew_try(nw_journal_t *self)
{
    batch_t *b = self->open;
    if (self->writing || self->closing || (b->data.size == 0 && b->nwaiters == 0))
        return;
    if (ew_write(self) == 0)
        return;
    if (self->ew_n || self->ew_syncing)
        return; /* ew_sync_done comes back here once they are durable */
    start_job(self);
}

/* ---------------------------------------------------------------- open and recovery */

nw_journal_t *nw_journal_open(uv_loop_t *loop, const char *state_dir,
                              nw_journal_options_t options, char *errbuf, size_t errlen)
{
    nw_journal_t *self = calloc(1, sizeof *self);
    if (!self)
        goto nomem;
    self->fd = -1;
    self->prep_fd = self->prep_part_fd = self->job.prep_fd = -1;
    self->loop = loop;
    self->opt = options;
    self->pruned_ms = wall_ms();
    msgpack_sbuffer_init(&self->job.head);
    msgpack_sbuffer_init(&self->job.seal);
    msgpack_sbuffer_init(&self->ew_commit);
    size_t dirlen = strlen(state_dir) + sizeof "/journal";
    if (!(self->dir = malloc(dirlen)) || !(self->seqs = map_new()) ||
        !(self->durable = map_new()) || !(self->spent = map_new()) ||
        !(self->open = batch_new()) || !(self->flight = batch_new()) ||
        !(self->timer = malloc(sizeof *self->timer)))
        goto nomem;
    snprintf(self->dir, dirlen, "%s/journal", state_dir);
    uv_timer_init(loop, self->timer);
    self->timer->data = self;
    struct statfs fs;
    if (nw_fs_mkdir_p(self->dir) != 0 || statfs(self->dir, &fs) != 0) {
        snprintf(errbuf, errlen, "cannot use %s: %s", self->dir, strerror(errno));
        goto fail;
    }
    /* in memory an fdatasync commits nothing, and the zeros would only take up room */
    self->zero_ahead = self->opt.sync && fs.f_type != TMPFS_MAGIC && fs.f_type != RAMFS_MAGIC;
    self->prep_on = self->zero_ahead && self->opt.segment_size > 0 && !self->opt.no_prepare;
    /* every start reads the marker, whatever the mode: an early run followed by a
     * default one must still start a new epoch after a power loss */
    nw_journal_boot_id(self->boot_id, sizeof self->boot_id);
    if (nw_journal_boot_check(self, self->boot_why, sizeof self->boot_why) != 0) {
        snprintf(errbuf, errlen, "cannot read %s/early.run: %s", self->dir, strerror(errno));
        goto fail;
    }
    bool fresh; /* a new epoch: it starts in a segment of its own */
    if (nw_journal_recover(self, &fresh, errbuf, errlen) != 0 ||
        nw_journal_recover_prepared(self, errbuf, errlen) != 0)
        goto fail;
    segment_t *last = self->nsegs ? &self->segs[self->nsegs - 1] : NULL;
    if (map_copy(self->durable, self->seqs) != 0)
        goto nomem;
    /* a segment kept from before counts as prepared only if it has all its zeros */
    if (last && last->alloc >= prep_want(self))
        self->cur_prep = prep_want(self);
    if (last && !fresh) {
        char path[PATH_MAX];
        nw_jrec_segment_path(self->dir, last->num, path, sizeof path);
        if ((self->fd = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
            snprintf(errbuf, errlen, "cannot open %s: %s", path, strerror(errno));
            goto fail;
        }
    }
    /* the epoch only lasts if a checkpoint holds it: write one now if the current
     * segment would not start with one */
    if (!last || fresh || last->size == 0) {
        bool rotate = !last || fresh;
        job_t *job = &self->job;
        job->dir = self->dir;
        job->sync = self->opt.sync;
        job->create = rotate;
        job->num = !last ? 1 : rotate ? last->num + 1 : last->num;
        job->fd = self->fd;
        job->old_fd = -1;
        job->start_len = 0;
        job->alloc = rotate ? 0 : last->alloc;
        job->prep_fd = -1;
        job->prep_used = false;
        if (rotate && self->prep_fd >= 0) {
            job->prep_fd = self->prep_fd;
            job->alloc = self->prep_size;
        }
        job->zero_ahead = self->zero_ahead;
        job->zero_limit = self->opt.segment_size;
        if (!(job->cp = map_new()) || map_copy(job->cp, self->durable) != 0 ||
            nw_jrec_pack_checkpoint(&job->head, self->epoch, job->cp_ms = wall_ms(),
                                    self->durable) != 0 ||
            nw_jrec_pack_commit(&job->head, 0, NULL, self->epoch) != 0)
            goto nomem;
        run_job(job);
        if (rotate)
            self->cur_prep = job->prep_used && job->prep_fd >= 0 ? self->prep_size : 0;
        if (job->prep_used) {
            self->prep_fd = job->prep_fd = -1;
            self->prep_size = 0;
            job->prep_used = false;
        }
        if (job->err) {
            snprintf(errbuf, errlen, "cannot write " NW_JSEG_FMT " in %s: %s", job->num,
                     self->dir, strerror(job->err));
            goto fail;
        }
        if (rotate && nw_journal_push_segment(self, job->num) != 0) {
            close(job->fd);
            goto nomem;
        }
        if (rotate)
            self->fd = job->fd;
        last = &self->segs[self->nsegs - 1];
        last->size = job->end_len;
        last->alloc = job->alloc;
        last->cp_ms = job->cp_ms;
        zhashx_destroy(&last->cp);
        last->cp = job->cp;
        job->cp = NULL;
        job->head.size = 0;
        self->bytes += job->end_len;
    }
    /* The new epoch (if any) is durable now: the old marker has done its work. An early
     * run marks this boot before anything can be published. */
    if (self->opt.early && self->opt.sync) {
        if (!(self->async = malloc(sizeof *self->async)) ||
            uv_async_init(loop, self->async, on_async) != 0) {
            free(self->async);
            self->async = NULL;
            goto nomem;
        }
        self->async->data = self;
        uv_unref((uv_handle_t *) self->async); /* a write in flight keeps the loop */
        if (!(self->kick = malloc(sizeof *self->kick)) || uv_idle_init(loop, self->kick) != 0) {
            free(self->kick);
            self->kick = NULL;
            goto nomem;
        }
        self->kick->data = self;
        if (nw_journal_boot_mark(self, self->boot_id) != 0) {
            snprintf(errbuf, errlen, "cannot write %s/early.run: %s", self->dir, strerror(errno));
            goto fail;
        }
    } else if (nw_journal_boot_clear(self) != 0) {
        snprintf(errbuf, errlen, "cannot remove %s/early.run: %s", self->dir, strerror(errno));
        goto fail;
    }
    prep_maybe(self);
    nw_info("journal: %zu segments, %" PRIu64 " records, %zu topics, epoch %s%s", self->nsegs,
            self->records, zhashx_size(self->seqs), self->epoch,
            self->discarded ? " (some records discarded, see above)" : "");
    return self;
nomem:
    snprintf(errbuf, errlen, "out of memory");
fail:
    nw_journal_close(&self);
    return NULL;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

void nw_journal_close(nw_journal_t **self_p)
{
    nw_journal_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    self->closing = true;
    /* normally nothing is in flight: the caller waited for its commits; a segment being
     * prepared is given up (its file removed), a ready one kept for the next start */
    atomic_store(&self->prep_stop, true);
    while (self->writing || self->reloading || self->ew_syncing || self->preparing)
        uv_run(self->loop, UV_RUN_ONCE);
    if (self->prep_part_fd >= 0)
        prep_remove(self, &self->prep_part_fd, NW_JPREP_PART);
    if (self->open && (self->open->data.size || self->open->nwaiters)) {
        self->write_start_ns = uv_hrtime();
        seal(self, true);
        self->job.early = false; /* nothing is published from here */
        run_job(&self->job);
        self->writing = true;
        finish(self);
    }
    /* a stopped journal leaves no zeros behind: they are made again after a restart */
    segment_t *cur = self->nsegs ? &self->segs[self->nsegs - 1] : NULL;
    if (self->fd >= 0 && cur && cur->alloc > cur->size &&
        ftruncate(self->fd, (off_t) cur->size) != 0)
        nw_warn("journal: cannot cut the zeros off segment " NW_JSEG_FMT ": %s", cur->num,
                strerror(errno));
    /* a clean stop of an early run: everything published is durable now (the last
     * write was waited for and the rest flushed with fsync above), unless a write
     * failed after its records went out (early_lost: the marker says "lost") */
    if (self->async && !self->early_lost && nw_journal_boot_clear(self) != 0)
        nw_warn("journal: cannot remove %s/early.run: %s (the next start on another boot "
                "makes a new epoch)",
                self->dir, strerror(errno));
    if (self->async)
        uv_close((uv_handle_t *) self->async, free_handle);
    if (self->kick)
        uv_close((uv_handle_t *) self->kick, free_handle);
    if (self->timer) {
        uv_timer_stop(self->timer);
        uv_close((uv_handle_t *) self->timer, free_handle);
    }
    if (self->fd >= 0)
        close(self->fd);
    if (self->prep_fd >= 0)
        close(self->prep_fd);
    for (size_t i = 0; i < self->nsegs; i++)
        segment_release(&self->segs[i]);
    free(self->segs);
    batch_destroy(&self->open);
    batch_destroy(&self->flight);
    for (size_t i = 0; i < self->ew_n; i++) /* none: they were waited for */
        batch_destroy(&self->ew[i]);
    for (size_t i = 0; i < self->ew_nspare; i++)
        batch_destroy(&self->ew_spare[i]);
    free(self->ew);
    free(self->ew_spare);
    msgpack_sbuffer_destroy(&self->ew_commit);
    msgpack_sbuffer_destroy(&self->job.head);
    msgpack_sbuffer_destroy(&self->job.seal);
    zhashx_destroy(&self->job.cp);
    zhashx_destroy(&self->seqs);
    zhashx_destroy(&self->durable);
    zhashx_destroy(&self->spent);
    nw_seen_clear(&self->seen);
    free(self->dir);
    free(self);
}

/* ---------------------------------------------------------------- appends and commits */

const char *nw_journal_epoch(const nw_journal_t *self)
{
    return self->epoch;
}

uint64_t nw_journal_last_seq(const nw_journal_t *self, const char *topic)
{
    return map_get(self->seqs, topic);
}

void nw_journal_topics(nw_journal_t *self,
                       void (*fn)(void *arg, const char *topic, uint64_t last), void *arg)
{
    for (uint64_t *v = zhashx_first(self->seqs); v; v = zhashx_next(self->seqs))
        fn(arg, zhashx_cursor(self->seqs), *v);
}

uint64_t nw_journal_durable_seq(const nw_journal_t *self, const char *topic)
{
    return map_get(self->durable, topic);
}

int nw_journal_append(nw_journal_t *self, const char *topic, uint64_t seq, const char *id,
                      int64_t time_ms, const void *msg, size_t len)
{
    if (self->unwinding || self->closing) {
        errno = EIO;
        return -1;
    }
    if (!topic || !id || (!msg && len) || seq != map_get(self->seqs, topic) + 1) {
        errno = EINVAL;
        return -1;
    }
    batch_t *b = self->open;
    uint32_t key[5];
    if (nw_seen_undo_reserve(&b->undo) != 0)
        goto nomem;
    nw_seen_key(id, strlen(id), key);
    size_t old = b->data.size;
    if (nw_jrec_pack_message(&b->data, topic, seq, id, time_ms, msg, len) != 0)
        return -1; /* errno: ENOMEM or EMSGSIZE */
    /* seq - 1 is always a right value to go back to: it is where the topic stood */
    if (map_set(self->seqs, topic, seq) != 0 || map_set(b->seqs, topic, seq) != 0 ||
        nw_seen_set_undoable(&self->seen, &b->undo, key, time_ms) != 0) {
        map_set(self->seqs, topic, seq - 1);
        if (zhashx_lookup(b->seqs, topic))
            map_set(b->seqs, topic, seq - 1);
        b->data.size = old;
        goto nomem;
    }
    b->records++;
    if (time_ms > b->newest_ms)
        b->newest_ms = time_ms;
    return 0;
nomem:
    errno = ENOMEM;
    return -1;
}

int nw_journal_commit(nw_journal_t *self, nw_journal_commit_fn *fn, void *arg)
{
    return nw_journal_commit_early(self, NULL, fn, arg);
}

int nw_journal_commit_early(nw_journal_t *self, nw_journal_commit_fn *written,
                            nw_journal_commit_fn *fn, void *arg)
{
    /* nothing appended since the write in flight was sealed: that write covers it all */
    batch_t *o = self->open;
    batch_t *b = self->writing && o->data.size == 0 && o->nwaiters == 0 ? self->flight : o;
    if (b->nwaiters == b->waiters_cap) {
        size_t cap = b->waiters_cap ? 2 * b->waiters_cap : 16;
        waiter_t *w = realloc(b->waiters, cap * sizeof *w);
        if (!w) {
            errno = ENOMEM;
            return -1;
        }
        b->waiters = w;
        b->waiters_cap = cap;
    }
    b->waiters[b->nwaiters++] = (waiter_t) {fn, written, arg};
    if (b == o)
        maybe_start(self);
    return 0;
}

void nw_journal_stats(const nw_journal_t *self, nw_journal_stats_t *out)
{
    const segment_t *cur = self->nsegs ? &self->segs[self->nsegs - 1] : NULL;
    *out = (nw_journal_stats_t) {
        .segments = self->nsegs,
        .bytes = self->bytes,
        .records = self->records,
        .commits = self->commits,
        .fsyncs = self->fsyncs,
        .failures = self->failures,
        .discarded = self->discarded,
        .topics = zhashx_size(self->seqs),
        .zeros = (cur && cur->alloc > cur->size ? cur->alloc - cur->size : 0) +
                 (self->prep_fd >= 0 ? self->prep_size : self->prep_made),
        .prepared = self->prep_fd >= 0 ? self->prep_size : 0,
        .prepare_failures = self->prep_failures,
        .writes = self->writes,
        .write_ns = self->write_ns,
    };
    memcpy(out->write_buckets, self->write_buckets, sizeof out->write_buckets);
}
