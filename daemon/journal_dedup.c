/*
 * journal_dedup: the dedup window over the journal's seen-id set (seen.c). In: ids asked
 * about by the feed (nw_journal_seen), the window from a reload
 * (nw_journal_set_dedup_window). Out: whether an id went out within the window; ids
 * past it are pruned, and a wider window reads the older ids back from the segments on
 * the thread pool (through journal_record.c's reader) and merges them on the loop
 * thread. Appends add to seen in journal.c, recovery fills it in journal_recover.c.
 */
#include "journal_internal.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

bool nw_journal_seen(const nw_journal_t *self, const char *id, int64_t since_ms)
{
    uint32_t key[5];
    int64_t t;
    nw_seen_key(id, strlen(id), key);
    return nw_seen_get(&self->seen, key, &t) && t >= since_ms;
}

/* The table would otherwise hold every id published since the daemon started. Called
 * at every group write that succeeded (journal.c, finish). */
void nw_journal_prune_seen(nw_journal_t *self, bool now_anyway)
{
    int64_t now = wall_ms();
    int64_t every = self->opt.dedup_window_ms < 60000 ? self->opt.dedup_window_ms : 60000;
    if (!now_anyway && now - self->pruned_ms < every)
        return;
    self->pruned_ms = now;
    nw_seen_prune(&self->seen, now - self->opt.dedup_window_ms);
}

/* Widening the dedup window (SIGHUP): the ids between the old and the new horizon were
 * never loaded (recovery takes only the window's) or were pruned since, but the journal
 * still holds them. One job on the thread pool reads them back from the segments that
 * can hold them (a snapshot of their names and durable sizes: a segment retired
 * meanwhile is skipped, its ids are past retention anyway); the loop thread merges them
 * into seen when it comes back. Until then those older ids are not yet known. */
typedef struct {
    uint32_t key[5];
    int64_t time_ms;
} found_id_t;

typedef struct {
    uv_work_t req;
    nw_journal_t *journal;
    const char *dir;
    uint64_t *nums, *sizes;
    size_t n;
    int64_t window_ms, since;
    found_id_t *found;
    size_t nfound, cap;
    int err;
} reload_t;

static void reload_work(uv_work_t *req)
{
    reload_t *rl = req->data;
    nw_jrec_reader_t r = {.fd = -1};
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    for (size_t i = 0; i < rl->n && !rl->err; i++) {
        char path[PATH_MAX];
        nw_jrec_segment_path(rl->dir, rl->nums[i], path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno != ENOENT)
                rl->err = errno;
            continue;
        }
        nw_jrec_reader_reset(&r, fd, rl->sizes[i]);
        uint64_t off = 0, bad = 0, garbage;
        nw_jrec_frame_t f;
        int rc;
        while ((rc = nw_jrec_next_frame(&r, NULL, &off, &f, &bad, &garbage)) ==
               NW_JREC_FRAME_OK) {
            nw_jrec_t rec;
            if (!nw_jrec_decode(&up, f.payload, f.len, &rec) || rec.type != NW_JREC_MESSAGE ||
                rec.time_ms < rl->since)
                continue;
            if (rl->nfound == rl->cap) {
                size_t cap = rl->cap ? 2 * rl->cap : 1024;
                found_id_t *p = realloc(rl->found, cap * sizeof *p);
                if (!p) {
                    rl->err = ENOMEM;
                    break;
                }
                rl->found = p;
                rl->cap = cap;
            }
            nw_seen_key(rec.id, rec.id_len, rl->found[rl->nfound].key);
            rl->found[rl->nfound++].time_ms = rec.time_ms;
        }
        if (rc == NW_JREC_FRAME_ERR && !rl->err)
            rl->err = errno ? errno : EIO;
        close(fd);
    }
    free(r.buf);
    msgpack_unpacked_destroy(&up);
}

static int start_reload(nw_journal_t *self);

static void reload_done(uv_work_t *req, int status)
{
    (void) status;
    reload_t *rl = req->data;
    nw_journal_t *self = rl->journal;
    self->reloading = false;
    int err = rl->err;
    size_t added = 0;
    int64_t since = wall_ms() - self->opt.dedup_window_ms;
    for (size_t i = 0; i < rl->nfound && !err; i++) {
        int64_t t;
        bool had = nw_seen_get(&self->seen, rl->found[i].key, &t);
        if (rl->found[i].time_ms < since || (had && t >= rl->found[i].time_ms))
            continue;
        if (nw_seen_set(&self->seen, rl->found[i].key, rl->found[i].time_ms) != 0)
            err = ENOMEM;
        else
            added += !had;
    }
    if (err)
        nw_warn("journal: dedup window %" PRId64 " s: the ids older than the previous window "
                "could not all be read back (%s): such articles may be published again",
                rl->window_ms / 1000, strerror(err));
    else
        nw_notice("journal: dedup window widened to %" PRId64 " s: %zu ids read back from "
                  "%zu segments",
                  rl->window_ms / 1000, added, rl->n);
    int64_t done_for = rl->window_ms;
    free(rl->nums);
    free(rl->sizes);
    free(rl->found);
    free(rl);
    /* widened again while this one ran */
    if (!self->closing && self->opt.dedup_window_ms > done_for)
        start_reload(self);
}

static int start_reload(nw_journal_t *self)
{
    reload_t *rl = calloc(1, sizeof *rl);
    if (!rl || !(rl->nums = malloc((self->nsegs + 1) * sizeof *rl->nums)) ||
        !(rl->sizes = malloc((self->nsegs + 1) * sizeof *rl->sizes)))
        goto nomem;
    rl->journal = self;
    rl->dir = self->dir;
    rl->window_ms = self->opt.dedup_window_ms;
    rl->since = wall_ms() - rl->window_ms;
    for (size_t i = 0; i < self->nsegs; i++) {
        const segment_t *seg = &self->segs[i];
        int64_t newest = seg->records ? seg->newest_ms : seg->cp_ms;
        if (seg->records == 0 || newest < rl->since)
            continue;
        rl->nums[rl->n] = seg->num;
        rl->sizes[rl->n++] = seg->size;
    }
    rl->req.data = rl;
    self->reloading = true;
    if (uv_queue_work(self->loop, &rl->req, reload_work, reload_done) != 0) {
        self->reloading = false;
        goto nomem;
    }
    return 0;
nomem:
    if (rl) {
        free(rl->nums);
        free(rl->sizes);
    }
    free(rl);
    nw_warn("journal: dedup window %" PRId64 " s: out of memory reading the older ids back: "
            "articles older than the previous window may be published again",
            self->opt.dedup_window_ms / 1000);
    errno = ENOMEM;
    return -1;
}

int nw_journal_set_dedup_window(nw_journal_t *self, int64_t window_ms)
{
    int64_t old = self->opt.dedup_window_ms;
    if (window_ms == old)
        return 0;
    self->opt.dedup_window_ms = window_ms;
    if (window_ms < old) { /* forget at once what the narrower window no longer wants */
        nw_journal_prune_seen(self, true);
        return 0;
    }
    if (self->reloading) /* reload_done() starts another for the wider window */
        return 0;
    nw_notice("journal: dedup window widened from %" PRId64 " to %" PRId64 " s: reading "
              "older ids back from the journal",
              old / 1000, window_ms / 1000);
    return start_reload(self);
}
