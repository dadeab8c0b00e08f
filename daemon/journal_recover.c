/*
 * journal_recover: reading the journal back at open (see journal.h, "Recovery"). In: the
 * segment files of STATE/journal, untrusted (a crash, a full disk or a bad disk may have
 * left anything in them). Out: the journal's seqs, the ids within the dedup window
 * (seen), each segment's size, records, age, checkpoint and seal, the counts of what was
 * discarded, a torn tail truncated, and the verdict on the epoch: kept when the seqs
 * read bound every seq ever published, else a new one (recovery_t says case by case
 * why this is enough). Also the prepared next segment a previous run left
 * (segment.prep: taken for the next rotation, never for data) and a half-made one
 * (segment.prep.part: removed). Runs once, on the loop thread, before anything is
 * appended.
 */
#include "journal_internal.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

static char *dup_bytes(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static int cmp_segment(const void *a, const void *b)
{
    uint64_t x = ((const segment_t *) a)->num, y = ((const segment_t *) b)->num;
    return x < y ? -1 : x > y;
}

static int list_segments(nw_journal_t *self)
{
    DIR *d = opendir(self->dir);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strlen(e->d_name) != 16 || strcmp(e->d_name + 12, ".nwj") != 0 ||
            strspn(e->d_name, "0123456789") != 12)
            continue;
        if (nw_journal_push_segment(self, strtoull(e->d_name, NULL, 10)) != 0) {
            closedir(d);
            errno = ENOMEM;
            return -1;
        }
    }
    closedir(d);
    if (self->nsegs > 1)
        qsort(self->segs, self->nsegs, sizeof *self->segs, cmp_segment);
    return 0;
}

/* What recovery knows of what may have been published. Every seq handed out must be
 * above every seq ever published on its topic, so bytes recovery skips matter only if
 * nothing read later bounds what they held:
 * - a checkpoint (first in every segment) holds every topic's seq as it stood when its
 *   segment began, so it bounds everything before it, in every older segment too;
 * - a commit (last in every group write) holds the seqs its write left its topics at
 *   and the offset the write began at, so it bounds whatever lies between the two
 *   (offset 0: its write made the segment, checkpoint included, which adds nothing
 *   when the older segments were read whole);
 * - one whole record skipped where a write begins, or as the very last thing in the
 *   journal, was the commit of its write (whose messages were read) or a record of the
 *   one write that never finished, which published nothing;
 * - what a write cut short leaves at the end of the newest segment (a prefix of one
 *   record, then zeros or the end of the file) was never published.
 * Anything else (skipped bytes nothing bounds, a checkpoint lost without its
 * predecessor, a missing newest segment: the one before it was sealed) means the seqs
 * may lag behind what subscribers saw: nw_journal_open() then starts a new epoch. */
typedef struct {
    uint64_t seg, a, b; /* bytes [a, b) of segment number seg were skipped */
    bool whole;         /* as one record whose header was read */
} skipped_t;

typedef struct {
    bool complete;       /* the seqs so far bound every one published up to here,
                            but for what pending holds */
    bool derivable;      /* the current segment's checkpoint adds nothing to them */
    uint64_t prev;       /* number of the segment read before, 0 none */
    uint64_t commit_seg; /* number of the last segment a commit was read in */
    skipped_t *pending;
    size_t npending, cap;
    char why[160]; /* why complete went false */
} recovery_t;

static int skipped_add(recovery_t *rv, uint64_t seg, uint64_t a, uint64_t b, bool whole)
{
    if (rv->npending == rv->cap) {
        size_t cap = rv->cap ? 2 * rv->cap : 8;
        skipped_t *p = realloc(rv->pending, cap * sizeof *p);
        if (!p)
            return -1;
        rv->pending = p;
        rv->cap = cap;
    }
    rv->pending[rv->npending++] = (skipped_t) {seg, a, b, whole};
    return 0;
}

/* A commit of segment seg whose write began at start was read. */
static void skipped_cover(recovery_t *rv, uint64_t seg, uint64_t start)
{
    size_t keep = 0;
    for (size_t i = 0; i < rv->npending; i++) {
        const skipped_t *p = &rv->pending[i];
        bool inside = p->a >= start && (p->a > 0 || rv->derivable);
        bool its_commit = p->whole && p->a > 0 && p->b == start;
        if (p->seg != seg || !(inside || its_commit))
            rv->pending[keep++] = *p;
    }
    rv->npending = keep;
}

static int max_seq(zhashx_t *h, const char *topic, size_t len, uint64_t seq)
{
    char *t = dup_bytes(topic, len);
    int rc = !t || (seq > map_get(h, t) && map_set(h, t, seq) != 0) ? -1 : 0;
    free(t);
    return rc;
}

/* Take what a valid record says into the journal's state and the segment's. */
static int apply(nw_journal_t *self, segment_t *seg, const nw_jrec_t *r, bool first,
                 int64_t since, recovery_t *rv)
{
    seg->sealed = r->type == NW_JREC_SEAL;
    if (r->type == NW_JREC_COMMIT || r->type == NW_JREC_SEAL) {
        if (r->type == NW_JREC_COMMIT) {
            skipped_cover(rv, seg->num, r->start);
            rv->commit_seg = seg->num;
        }
        for (size_t i = 0; r->type == NW_JREC_COMMIT && i < r->seqs->size; i++) {
            const msgpack_object_kv *kv = &r->seqs->ptr[i];
            if (max_seq(self->seqs, kv->key.via.str.ptr, kv->key.via.str.size, kv->val.via.u64) !=
                0)
                return -1;
        }
        return 0;
    }
    if (r->type == NW_JREC_CHECKPOINT) {
        /* the newest checkpoint names the epoch; it bounds everything before it */
        memcpy(self->epoch, r->epoch, 32);
        rv->complete = true;
        rv->npending = 0;
        if (first && !seg->cp && !(seg->cp = map_new()))
            return -1;
        if (first)
            seg->cp_ms = r->time_ms;
        for (size_t i = 0; i < r->seqs->size; i++) {
            const msgpack_object_kv *kv = &r->seqs->ptr[i];
            if (max_seq(self->seqs, kv->key.via.str.ptr, kv->key.via.str.size, kv->val.via.u64) !=
                    0 ||
                (first && max_seq(seg->cp, kv->key.via.str.ptr, kv->key.via.str.size,
                                  kv->val.via.u64) != 0))
                return -1;
        }
        return 0;
    }
    seg->records++;
    if (r->time_ms > seg->newest_ms)
        seg->newest_ms = r->time_ms;
    if (max_seq(self->seqs, r->topic, r->topic_len, r->seq) != 0)
        return -1;
    if (r->time_ms < since)
        return 0;
    uint32_t key[5];
    int64_t t = 0;
    nw_seen_key(r->id, r->id_len, key);
    return (!nw_seen_get(&self->seen, key, &t) || t < r->time_ms) &&
                   nw_seen_set(&self->seen, key, r->time_ms) != 0
               ? -1
               : 0;
}

/* 1 when bytes [from, r->size) are all zero (a preallocated tail), 0 when not, -1 when
 * they cannot be read. */
static int zero_tail(nw_jrec_reader_t *r, uint64_t from)
{
    while (from < r->size) {
        size_t n = r->size - from < NW_JREC_READ_CHUNK ? (size_t) (r->size - from)
                                                       : NW_JREC_READ_CHUNK;
        const uint8_t *p = nw_jrec_reader_at(r, from, n);
        if (!p)
            return errno ? -1 : 0;
        for (size_t i = 0; i < n; i++)
            if (p[i])
                return 0;
        from += n;
    }
    return 1;
}

enum { TAIL_TORN, TAIL_RECORD, TAIL_DAMAGE };

/* What follows the last good record of the newest segment, [from, r->size), when it is
 * not all zeros: TAIL_TORN for what a write cut short leaves (the start of one record,
 * its header, its end or both missing, then zeros or the end of the file), TAIL_RECORD
 * for one whole record that fails its CRC followed by nothing but zeros (our records
 * never end in a zero byte, so its end was written), TAIL_DAMAGE for anything else;
 * -1 when it cannot be read. *nonzero gets the end of the last nonzero byte. */
static int tail_shape(nw_jrec_reader_t *r, uint64_t from, uint64_t *nonzero)
{
    *nonzero = from;
    for (uint64_t off = from; off < r->size;) {
        size_t n = r->size - off < NW_JREC_READ_CHUNK ? (size_t) (r->size - off)
                                                      : NW_JREC_READ_CHUNK;
        const uint8_t *p = nw_jrec_reader_at(r, off, n);
        if (!p)
            return errno ? -1 : TAIL_DAMAGE;
        for (size_t i = n; i-- > 0;)
            if (p[i]) {
                *nonzero = off + i + 1;
                break;
            }
        off += n;
    }
    uint8_t h[NW_JREC_HEADER] = {0};
    size_t have = *nonzero - from < NW_JREC_HEADER ? (size_t) (*nonzero - from) : NW_JREC_HEADER;
    const uint8_t *p = nw_jrec_reader_at(r, from, have);
    if (!p)
        return errno ? -1 : TAIL_DAMAGE;
    memcpy(h, p, have);
    uint32_t len = 0;
    if (!nw_jrec_header(h, have, &len))
        return TAIL_DAMAGE;
    if (have < NW_JREC_HEADER)
        return TAIL_TORN;
    if (len > NW_JREC_MAX)
        return TAIL_DAMAGE;
    uint64_t end = from + NW_JREC_HEADER + len;
    return end > *nonzero ? TAIL_TORN : end == *nonzero ? TAIL_RECORD : TAIL_DAMAGE;
}

/* Whether bytes [a, b) are one record by its header. */
static bool one_record(nw_jrec_reader_t *r, uint64_t a, uint64_t b)
{
    const uint8_t *h = nw_jrec_reader_at(r, a, NW_JREC_HEADER);
    uint32_t len;
    return h && nw_jrec_header(h, NW_JREC_HEADER, &len) && a + NW_JREC_HEADER + len == b;
}

static int recover_segment(nw_journal_t *self, segment_t *seg, bool last, nw_jrec_reader_t *r,
                           msgpack_unpacked *up, recovery_t *rv, char *errbuf, size_t errlen)
{
    char path[PATH_MAX], name[32];
    nw_jrec_segment_path(self->dir, seg->num, path, sizeof path);
    snprintf(name, sizeof name, NW_JSEG_FMT, seg->num);
    int fd = open(path, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(errbuf, errlen, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    nw_jrec_reader_reset(r, fd, (uint64_t) st.st_size);
    uint64_t off = 0, good_end = 0, garbage;
    int64_t since = wall_ms() - self->opt.dedup_window_ms;
    bool first = true;
    nw_jrec_frame_t f;
    int rc;
    while ((rc = nw_jrec_next_frame(r, name, &off, &f, &self->discarded, &garbage)) ==
           NW_JREC_FRAME_OK) {
        if (garbage != UINT64_MAX)
            nw_warn("journal: %s offset %" PRIu64 ": %" PRIu64 " bytes of garbage skipped", name,
                    garbage, f.off - garbage);
        if (f.off > good_end) {
            /* looking back may move the reader's window: read the payload again */
            if (skipped_add(rv, seg->num, good_end, f.off, one_record(r, good_end, f.off)) != 0)
                goto nomem;
            if (!(f.payload = nw_jrec_reader_at(r, f.off + NW_JREC_HEADER, f.len))) {
                snprintf(errbuf, errlen, "cannot read %s: %s", path,
                         strerror(errno ? errno : EIO));
                goto fail;
            }
        }
        nw_jrec_t rec;
        if (!nw_jrec_decode(up, f.payload, f.len, &rec)) {
            self->discarded++;
            nw_warn("journal: %s offset %" PRIu64 ": malformed record skipped", name, f.off);
            if (skipped_add(rv, seg->num, f.off, off, true) != 0)
                goto nomem;
        } else if (apply(self, seg, &rec, first, since, rv) != 0) {
            goto nomem;
        }
        first = false;
        good_end = off;
    }
    if (rc == NW_JREC_FRAME_ERR) {
        snprintf(errbuf, errlen, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    int zeros = zero_tail(r, good_end);
    if (zeros < 0) {
        snprintf(errbuf, errlen, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    /* zeros after the last record are the tail written ahead of the data, not damage */
    seg->size = good_end;
    seg->alloc = r->size;
    uint64_t nonzero = r->size;
    int shape = zeros ? TAIL_TORN : last ? tail_shape(r, good_end, &nonzero) : TAIL_DAMAGE;
    if (shape < 0) {
        snprintf(errbuf, errlen, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    /* a segment written before commits existed ends its writes with a message: one
     * whole damaged record there may be a published one */
    if (shape == TAIL_RECORD && seg->records && rv->commit_seg != seg->num)
        shape = TAIL_DAMAGE;
    if (!zeros && shape != TAIL_DAMAGE) {
        /* a write the crash interrupted: cut it so appends follow the last good record */
        nw_warn("journal: %s: torn tail of %" PRIu64 " bytes at offset %" PRIu64 " truncated",
                name, r->size - good_end, good_end);
        if (ftruncate(fd, (off_t) good_end) != 0) {
            snprintf(errbuf, errlen, "cannot truncate %s: %s", path, strerror(errno));
            goto fail;
        }
        seg->alloc = good_end;
    } else if (!zeros) {
        /* kept as it is: it may be all that says a seq was taken (see recovery_t) */
        nw_warn("journal: %s offset %" PRIu64 ": %" PRIu64 " bytes of garbage at the end", name,
                good_end, nonzero - good_end);
        if (skipped_add(rv, seg->num, good_end, nonzero, one_record(r, good_end, nonzero)) != 0)
            goto nomem;
        if (last && nonzero < r->size && ftruncate(fd, (off_t) nonzero) != 0) {
            snprintf(errbuf, errlen, "cannot truncate %s: %s", path, strerror(errno));
            goto fail;
        }
        seg->size = seg->alloc = nonzero;
    }
    self->bytes += seg->size;
    self->records += seg->records;
    close(fd);
    return 0;
nomem:
    snprintf(errbuf, errlen, "out of memory reading %s", path);
fail:
    if (fd >= 0)
        close(fd);
    return -1;
}

static int new_epoch(char *epoch)
{
    uint8_t raw[16];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t k = getrandom(raw + got, sizeof raw - got, 0);
        if (k < 0 && errno != EINTR)
            return -1;
        if (k > 0)
            got += (size_t) k;
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(epoch + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

int nw_journal_recover(nw_journal_t *self, bool *fresh, char *errbuf, size_t errlen)
{
    nw_jrec_reader_t r = {.fd = -1};
    recovery_t rv = {0};
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    int rc = -1;
    if (list_segments(self) != 0) {
        snprintf(errbuf, errlen, "cannot use %s: %s", self->dir, strerror(errno));
        goto done;
    }
    for (size_t i = 0; i < self->nsegs; i++) {
        segment_t *seg = &self->segs[i];
        bool contiguous = rv.prev && seg->num == rv.prev + 1;
        if (rv.prev && !contiguous && seg->num == rv.prev + 2)
            nw_warn("journal: segment " NW_JSEG_FMT " is missing: its messages cannot be "
                    "replayed",
                    rv.prev + 1);
        else if (rv.prev && !contiguous)
            nw_warn("journal: segments " NW_JSEG_FMT " to " NW_JSEG_FMT " are missing: their "
                    "messages cannot be replayed",
                    rv.prev + 1, seg->num - 1);
        rv.derivable = rv.complete && rv.npending == 0 && contiguous;
        if (recover_segment(self, seg, i + 1 == self->nsegs, &r, &up, &rv, errbuf, errlen) != 0)
            goto done;
        if (!seg->cp && !rv.derivable && rv.complete) {
            rv.complete = false;
            snprintf(rv.why, sizeof rv.why,
                     "the checkpoint of " NW_JSEG_FMT " is unreadable "
                     "and the segment before it is %s",
                     seg->num, contiguous ? "damaged" : "gone");
        }
        rv.prev = seg->num;
    }

    bool had_epoch = self->epoch[0] != '\0';
    segment_t *last = self->nsegs ? &self->segs[self->nsegs - 1] : NULL;
    /* can the seqs be trusted to be above everything published? (see recovery_t) */
    char lost[200] = "";
    if (had_epoch && last->sealed)
        snprintf(lost, sizeof lost,
                 "segment " NW_JSEG_FMT " is missing (" NW_JSEG_FMT " was sealed to it)",
                 last->num + 1, last->num);
    else if (had_epoch && !rv.complete)
        snprintf(lost, sizeof lost, "%s", rv.why);
    else if (had_epoch && rv.npending)
        snprintf(lost, sizeof lost,
                 "bytes %" PRIu64 " to %" PRIu64 " of " NW_JSEG_FMT " are "
                 "damaged and nothing after them tells what they held",
                 rv.pending[0].a, rv.pending[0].b, rv.pending[0].seg);
    else if (had_epoch && self->boot_why[0])
        snprintf(lost, sizeof lost, "%s", self->boot_why);
    free(rv.pending);
    rv.pending = NULL;
    if (!had_epoch || lost[0]) {
        if (new_epoch(self->epoch) != 0) {
            snprintf(errbuf, errlen, "cannot make an epoch: %s", strerror(errno));
            goto done;
        }
        if (self->nsegs == 0)
            nw_notice("journal: new journal in %s, epoch %s", self->dir, self->epoch);
        else if (!had_epoch)
            nw_warn("journal: no readable checkpoint in %zu segments of %s, new epoch %s",
                    self->nsegs, self->dir, self->epoch);
        else
            nw_warn("journal: cannot tell the last seqs published: %s; new epoch %s, seqs "
                    "go on above the highest still held",
                    lost, self->epoch);
    }
    *fresh = !had_epoch || lost[0];
    rc = 0;
done:
    free(r.buf);
    free(rv.pending);
    msgpack_unpacked_destroy(&up);
    return rc;
}

int nw_journal_recover_prepared(nw_journal_t *self, char *errbuf, size_t errlen)
{
    char part[PATH_MAX], name[PATH_MAX];
    snprintf(part, sizeof part, "%s/" NW_JPREP_PART, self->dir);
    snprintf(name, sizeof name, "%s/" NW_JPREP_NAME, self->dir);
    /* a stop while it was being made: its zeros may not all be on the disk */
    if (unlink(part) == 0)
        nw_notice("journal: %s removed (a segment half prepared when the last run stopped)",
                  part);
    else if (errno != ENOENT) {
        snprintf(errbuf, errlen, "cannot remove %s: %s", part, strerror(errno));
        return -1;
    }
    int fd = open(name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0 && errno == ENOENT)
        return 0;
    /* it was renamed here once all zeros and durable, and a rotation renames it before
     * writing into it: anything else found under the name is not ours to append over */
    static uint8_t head[4096];
    struct stat st;
    bool ok = fd >= 0 && self->prep_on && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
              st.st_size >= (off_t) sizeof head &&
              pread(fd, head, sizeof head, 0) == (ssize_t) sizeof head && head[0] == 0 &&
              memcmp(head, head + 1, sizeof head - 1) == 0;
    if (ok) {
        self->prep_fd = fd;
        self->prep_size = (uint64_t) st.st_size;
        return 0;
    }
    if (fd >= 0)
        close(fd);
    if (self->prep_on)
        nw_warn("journal: %s is not a prepared segment (not all zeros): removed", name);
    if (unlink(name) != 0 && errno != ENOENT) {
        snprintf(errbuf, errlen, "cannot remove %s: %s", name, strerror(errno));
        return -1;
    }
    return 0;
}
