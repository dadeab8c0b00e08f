/*
 * journal_cursor: replay's reading of one topic's durable records (see journal.h,
 * "Replay"). In: a topic and a first seq, on the loop thread, where the segment list and
 * the durable seqs are snapshotted; then reads on a pool thread, which open segments by
 * name and go through journal_record.c's reader and decoder. Out: each message's seq
 * and bytes, in seq order, up to what was durable at opening; damaged records are
 * skipped as recovery skips them, a retired segment is ENOENT.
 */
#include "journal_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A cursor holds at most one segment file open, the one it is reading, and only until
 * released: segments are opened by name as the cursor reaches them, so a retired one
 * shows as ENOENT (its records are gone) and never as another file (numbers only grow). */
struct nw_journal_cursor {
    char *topic;
    size_t topic_len;
    uint64_t from;
    char *dir;
    uint64_t *nums; /* the segments to read, oldest first */
    uint64_t *ends; /* how much of each was durable at opening */
    size_t n, i;
    int fd; /* segment i, or -1 */
    nw_jrec_reader_t r;
    uint64_t off; /* in segment i */
    msgpack_unpacked up;
};

/* The smallest seq still held for topic, given its last durable seq; 0 when none. */
static uint64_t oldest_held(const nw_journal_t *self, const char *topic, uint64_t last)
{
    if (self->nsegs == 0)
        return 0;
    uint64_t first = self->segs[0].cp ? map_get(self->segs[0].cp, topic) + 1 : 1;
    return first <= last ? first : 0;
}

uint64_t nw_journal_oldest_seq(const nw_journal_t *self, const char *topic)
{
    if (!zhashx_lookup(self->durable, topic))
        return 0;
    return oldest_held(self, topic, map_get(self->durable, topic));
}

nw_journal_cursor_t *nw_journal_cursor_new(nw_journal_t *self, const char *topic,
                                           uint64_t from_seq, uint64_t *oldest)
{
    *oldest = 0;
    uint64_t last = map_get(self->durable, topic);
    if (!zhashx_lookup(self->durable, topic) || self->nsegs == 0)
        return NULL;
    if (from_seq == 0)
        from_seq = 1;
    /* every record before a segment whose checkpoint has topic below from_seq has a
     * seq below it too: start at the last such segment */
    size_t start = 0;
    for (size_t i = self->nsegs; i-- > 0;)
        if (self->segs[i].cp && map_get(self->segs[i].cp, topic) < from_seq) {
            start = i;
            break;
        }
    *oldest = oldest_held(self, topic, last);

    nw_journal_cursor_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    msgpack_unpacked_init(&c->up);
    c->fd = -1;
    c->from = from_seq;
    c->topic_len = strlen(topic);
    c->n = self->nsegs - start;
    if (!(c->topic = strdup(topic)) || !(c->dir = strdup(self->dir)) ||
        !(c->nums = malloc(c->n * sizeof *c->nums)) ||
        !(c->ends = malloc(c->n * sizeof *c->ends))) {
        nw_journal_cursor_destroy(&c);
        return NULL;
    }
    for (size_t i = 0; i < c->n; i++) {
        c->nums[i] = self->segs[start + i].num;
        c->ends[i] = self->segs[start + i].size;
    }
    return c;
}

int nw_journal_cursor_next(nw_journal_cursor_t *self, uint64_t *seq, const void **msg,
                           size_t *len)
{
    /* scans whole segments from the start one: cost is the segment's size, not the
     * number of records wanted */
    while (self->i < self->n) {
        if (self->fd < 0) {
            char path[PATH_MAX];
            nw_jrec_segment_path(self->dir, self->nums[self->i], path, sizeof path);
            if ((self->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
                return -1; /* errno: ENOENT when retention retired it meanwhile */
            nw_jrec_reader_reset(&self->r, self->fd, self->ends[self->i]);
        }
        nw_jrec_frame_t f;
        uint64_t bad = 0, garbage;
        int rc = nw_jrec_next_frame(&self->r, NULL, &self->off, &f, &bad, &garbage);
        if (rc == NW_JREC_FRAME_ERR)
            return -1;
        if (rc == NW_JREC_FRAME_END) {
            close(self->fd);
            self->fd = -1;
            self->i++;
            self->off = 0;
            continue;
        }
        nw_jrec_t rec;
        if (!nw_jrec_decode(&self->up, f.payload, f.len, &rec) || rec.type != NW_JREC_MESSAGE ||
            rec.topic_len != self->topic_len || memcmp(rec.topic, self->topic, rec.topic_len) ||
            rec.seq < self->from)
            continue;
        *seq = rec.seq;
        *msg = rec.msg;
        *len = rec.msg_len;
        return 1;
    }
    return 0;
}

void nw_journal_cursor_release(nw_journal_cursor_t *self, bool close_file)
{
    if (close_file && self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
    }
    free(self->r.buf);
    self->r.buf = NULL;
    self->r.cap = self->r.len = 0;
    self->r.base = 0;
    msgpack_unpacked_destroy(&self->up);
    msgpack_unpacked_init(&self->up);
}

bool nw_journal_cursor_holds_file(const nw_journal_cursor_t *self)
{
    return self->fd >= 0;
}

void nw_journal_cursor_destroy(nw_journal_cursor_t **self_p)
{
    nw_journal_cursor_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    if (self->fd >= 0)
        close(self->fd);
    msgpack_unpacked_destroy(&self->up);
    free(self->r.buf);
    free(self->nums);
    free(self->ends);
    free(self->dir);
    free(self->topic);
    free(self);
}
