/*
 * upstream: the relay's SUB and replay DEALER to another newswired (see upstream.h).
 *
 * Each topic has a state: the epoch of the relay's last record on it (read from the
 * journal once, when the topic is first seen after a start: the journal's topics at
 * start, then those live traffic brings), the highest seq seen from
 * the upstream, and, while a replay is wanted or running, the live messages held behind
 * it (bounded: past HOLD_MAX they are dropped and the stream asked to reach them, the
 * upstream's journal has them). The journal's last seq is the only "where am I": what
 * was appended counts, durable or not, and a failed write puts it back, so the next
 * message finds the gap and fills it.
 * ZMQ_FD is edge-triggered: each wake-up (and each send on the DEALER) reads until the
 * socket has nothing.
 */
#include "upstream.h"
#include "log.h"
#include "nw_codec.h"
#include "nw_replay.h"
#include "nw_topic.h"

#include <czmq.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define HOLD_MAX 4096         /* live messages held per topic behind a replay */
#define CREDIT 256            /* a stream's first credit; half is granted again as used */
#define STREAM_SILENT_MS 5000 /* a stream silent this long is given up, asked again */
#define BUSY_FIRST_MS 100     /* after "busy" or a silent stream, doubling */
#define BUSY_MAX_MS 2000
#define IDLE_PROBE_MS 500 /* quiet after live traffic: ask for anything newer */
#define TICK_MS 100

typedef struct held {
    struct held *next;
    size_t len;
    unsigned char data[];
} held_t;

typedef struct topic {
    char *name;
    char epoch[33]; /* of the relay's last record ("" none or unreadable) */
    uint64_t head;
    held_t *held, *held_tail;
    size_t nheld;
    uint64_t need_to;    /* a stream must reach at least this (0: up to the head) */
    bool queued;         /* in the FIFO or the active stream */
    bool verify;         /* the next stream asks for the relay's last seq alone */
    uint64_t confirmed;  /* a seq the upstream's replay showed it holds in epoch
                            (0: none since the last (re)connection) */
    char next_epoch[33]; /* the new epoch that made verify asked */
    bool stopped;
    char reason[256];
} topic_t;

struct nw_upstream {
    uv_loop_t *loop;
    nw_feed_t *feed;
    nw_journal_t *journal;
    char *live, *replay_ep;
    char **filters;
    size_t nfilters;
    zsock_t *sub, *dealer, *monitor;
    void *sub_h, *dealer_h, *monitor_h;
    uv_poll_t sub_poll, dealer_poll, monitor_poll;
    uv_timer_t tick;
    int open_handles;
    zhashx_t *topics;  /* name -> topic_t */
    zlistx_t *waiting; /* topic_t wanting a stream, FIFO; not owned */
    topic_t *active;
    bool active_verify;  /* the active stream asks for active_from alone */
    bool active_restart; /* take() wants the active stream asked again */
    uint64_t active_from;
    uint64_t prev_seq; /* the active stream's last data reply, and its epoch */
    char prev_epoch[33];
    unsigned active_used;
    int64_t active_deadline;
    int64_t retry_at; /* no new stream before (after busy or silence) */
    int64_t backoff_ms;
    int64_t last_live; /* when live traffic last came; 0: probed since */
    int handshakes;
    char problem[300];
    bool stopping;
    nw_upstream_stats_t stats;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void topic_free(void **item)
{
    topic_t *t = *item;
    if (!t)
        return;
    for (held_t *h = t->held, *next; h; h = next) {
        next = h->next;
        free(h);
    }
    free(t->name);
    free(t);
    *item = NULL;
}

static bool carried(const nw_upstream_t *self, const char *topic)
{
    if (self->nfilters == 0)
        return true;
    for (size_t i = 0; i < self->nfilters; i++)
        if (nw_topic_matches(self->filters[i], topic))
            return true;
    return false;
}

/* The epoch of the relay's newest record on the topic, read once (a start) so that a
 * new upstream history is told from a repeat. Blocking I/O on the loop thread, once
 * per topic per start, reading at most the segment that holds the record. */
static void read_epoch(nw_upstream_t *self, topic_t *t)
{
    uint64_t last = nw_journal_last_seq(self->journal, t->name), oldest = 0, seq;
    if (last == 0)
        return;
    nw_journal_cursor_t *cur = nw_journal_cursor_new(self->journal, t->name, last, &oldest);
    const void *msg;
    size_t len;
    int rc;
    while (cur && (rc = nw_journal_cursor_next(cur, &seq, &msg, &len)) == 1) {
        char err[200];
        nw_codec_message_t *m = seq == last ? nw_codec_message_decode(msg, len, err, sizeof err)
                                            : NULL;
        if (m)
            snprintf(t->epoch, sizeof t->epoch, "%s", m->env.epoch);
        nw_codec_message_destroy(&m);
    }
    nw_journal_cursor_destroy(&cur);
}

static topic_t *topic_get(nw_upstream_t *self, const char *name)
{
    topic_t *t = zhashx_lookup(self->topics, name);
    if (t)
        return t;
    t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(name))) {
        free(t);
        return NULL;
    }
    zhashx_insert(self->topics, name, t);
    self->stats.topics++;
    read_epoch(self, t);
    return t;
}

static void stop_topic(nw_upstream_t *self, topic_t *t, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void stop_topic(nw_upstream_t *self, topic_t *t, const char *fmt, ...)
{
    if (t->stopped)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->reason, sizeof t->reason, fmt, ap);
    va_end(ap);
    t->stopped = true;
    self->stats.stopped++;
    for (held_t *h = t->held, *next; h; h = next) {
        next = h->next;
        free(h);
    }
    t->held = t->held_tail = NULL;
    t->nheld = 0;
    if (!*self->problem)
        snprintf(self->problem, sizeof self->problem, "UPSTREAM TOPIC %s STOPPED: %s", t->name,
                 t->reason);
    nw_err("upstream: topic %s stopped, nothing more of it is forwarded: %s", t->name, t->reason);
}

static void on_forwarded(void *arg, int status)
{
    nw_upstream_t *self = arg; /* the feed is drained before the upstream is destroyed */
    if (status == 0)
        self->stats.forwarded++;
    /* the journal put the topic's seq back: the next message shows the gap and fills it */
    else
        nw_warn("upstream: a forwarded message was not journaled (%s); it is fetched again",
                strerror(-status));
}

static void want_stream(nw_upstream_t *self, topic_t *t, uint64_t to);
static void start_stream(nw_upstream_t *self);
static void hold_or_take(nw_upstream_t *self, topic_t *t, const void *data, size_t len);

/* One message (live or replayed) against the topic's last seq. replayed: from the
 * active stream, which is never held behind itself (frames checked by the caller). */
static void take(nw_upstream_t *self, topic_t *t, const void *data, size_t len, bool replayed)
{
    char err[200];
    nw_codec_message_t *m = nw_codec_message_decode(data, len, err, sizeof err);
    if (!m || strcmp(m->env.topic, t->name) != 0) {
        self->stats.bad++;
        nw_warn("upstream: a message on %s dropped: %s", t->name,
                m ? "topic differs from frame 0" : err);
        nw_codec_message_destroy(&m);
        return;
    }
    uint64_t seq = m->env.seq, last = nw_journal_last_seq(self->journal, t->name);
    if (seq > t->head)
        t->head = seq;
    if (t->stopped)
        goto out;
    if (seq <= last) {
        if (*t->epoch && strcmp(m->env.epoch, t->epoch) != 0 && !replayed)
            stop_topic(self, t,
                       "the upstream's new epoch %s starts again at seq %llu, at or "
                       "below the %llu this relay holds of epoch %s: move this relay's "
                       "journal aside and restart it to follow",
                       m->env.epoch, (unsigned long long) seq, (unsigned long long) last,
                       t->epoch);
        else
            self->stats.repeats++;
        goto out;
    }
    if (seq > last + 1) {
        if (replayed) {
            stop_topic(self, t,
                       "the upstream's replay skips seqs %llu..%llu: it no longer "
                       "holds them",
                       (unsigned long long) last + 1, (unsigned long long) seq - 1);
            goto out;
        }
        if (!self->replay_ep) {
            stop_topic(self, t,
                       "seqs %llu..%llu missed and no --upstream-replay to fetch "
                       "them",
                       (unsigned long long) last + 1, (unsigned long long) seq - 1);
            goto out;
        }
        self->stats.gaps++;
        nw_info("upstream: %s seqs %llu..%llu missing: fetching them from %s", t->name,
                (unsigned long long) last + 1, (unsigned long long) seq - 1, self->replay_ep);
        want_stream(self, t, seq - 1);
        hold_or_take(self, t, data, len); /* queued now: held behind the stream */
        goto out;
    }
    if (*t->epoch && last > 0 && strcmp(m->env.epoch, t->epoch) != 0 && t->confirmed != last &&
        !(replayed && self->prev_seq == last && strcmp(self->prev_epoch, t->epoch) == 0)) {
        /* A new epoch at the next seq goes on above the relay's history only if the
         * upstream still holds the relay's last seq as the relay does. One that started
         * again lower, whose seqs up to here passed while the relay was away, holds
         * another record there: taking this one would splice two histories (and the
         * new epoch's lower seqs would never be sent). So that seq is asked for first. */
        nw_info("upstream: %s: epoch %s at seq %llu: asking the upstream for seq %llu, "
                "which this relay holds of epoch %s, before following it",
                t->name, m->env.epoch, (unsigned long long) seq, (unsigned long long) last,
                t->epoch);
        t->verify = true;
        snprintf(t->next_epoch, sizeof t->next_epoch, "%s", m->env.epoch);
        if (replayed)
            self->active_restart = true;
        else {
            want_stream(self, t, seq);
            hold_or_take(self, t, data, len); /* queued now: held behind the stream */
        }
        goto out;
    }
    if (nw_feed_forward(self->feed, t->name, seq, m->env.id, data, len, on_forwarded, self) !=
        0) {
        /* not journaled: the next message finds the gap and fetches this one */
        if (errno != ESHUTDOWN)
            nw_warn("upstream: %s seq %llu not journaled: %s", t->name, (unsigned long long) seq,
                    strerror(errno));
        goto out;
    }
    if (strcmp(t->epoch, m->env.epoch) != 0) {
        if (*t->epoch)
            nw_notice("upstream: %s follows the upstream's epoch %s from seq %llu (was %s)",
                      t->name, m->env.epoch, (unsigned long long) seq, t->epoch);
        snprintf(t->epoch, sizeof t->epoch, "%s", m->env.epoch);
    }
    if (replayed)
        self->stats.repaired++;
out:
    if (replayed) {
        self->prev_seq = seq;
        snprintf(self->prev_epoch, sizeof self->prev_epoch, "%s", m->env.epoch);
    }
    nw_codec_message_destroy(&m);
}

/* The one data reply of a stream asking for the relay's last seq alone (t->verify). */
static void verify_reply(nw_upstream_t *self, topic_t *t, const void *data, size_t len)
{
    char err[200];
    nw_codec_message_t *m = nw_codec_message_decode(data, len, err, sizeof err);
    uint64_t last = nw_journal_last_seq(self->journal, t->name);
    if (!m || strcmp(m->env.topic, t->name) != 0 || m->env.seq != self->active_from ||
        self->active_from != last)
        goto out; /* a late reply of the stream this one replaced */
    if (strcmp(m->env.epoch, t->epoch) != 0)
        read_epoch(self, t); /* the record t->epoch came from may have been put back */
    if (strcmp(m->env.epoch, t->epoch) == 0) {
        t->confirmed = last;
        nw_info("upstream: %s: the upstream holds seq %llu of epoch %s as this relay does",
                t->name, (unsigned long long) last, t->epoch);
    } else
        stop_topic(self, t,
                   "the upstream's seq %llu is of epoch %s, this relay's of epoch "
                   "%s: the upstream's new epoch started again at or below what this relay "
                   "holds (while the relay was away); move this relay's journal aside and "
                   "restart it to follow",
                   (unsigned long long) last, m->env.epoch, t->epoch);
out:
    nw_codec_message_destroy(&m);
}

/* A live message on a topic with a stream wanted or running waits behind it. */
static void hold_or_take(nw_upstream_t *self, topic_t *t, const void *data, size_t len)
{
    if (!t->queued) {
        take(self, t, data, len, false);
        return;
    }
    if (t->nheld >= HOLD_MAX) {
        /* the journal upstream has it: the stream is asked to reach it instead */
        char err[200];
        nw_codec_message_t *m = nw_codec_message_decode(data, len, err, sizeof err);
        if (m && m->env.seq > t->need_to)
            t->need_to = m->env.seq;
        nw_codec_message_destroy(&m);
        return;
    }
    held_t *h = malloc(sizeof *h + len);
    if (!h)
        return;
    h->next = NULL;
    h->len = len;
    memcpy(h->data, data, len);
    if (t->held_tail)
        t->held_tail->next = h;
    else
        t->held = h;
    t->held_tail = h;
    t->nheld++;
}

static void want_stream(nw_upstream_t *self, topic_t *t, uint64_t to)
{
    if (to > t->need_to)
        t->need_to = to;
    if (t->queued || !self->dealer)
        return;
    t->queued = true;
    zlistx_add_end(self->waiting, t);
    start_stream(self);
}

static int send_request(nw_upstream_t *self, const nw_replay_request_t *req)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[200];
    int rc = nw_replay_request_pack(req, &sb, err, sizeof err);
    if (rc == 0)
        rc = zmq_send(self->dealer_h, sb.data, sb.size, ZMQ_DONTWAIT) < 0 ? -1 : 0;
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void start_stream(nw_upstream_t *self)
{
    if (self->active || self->stopping || mono_ms() < self->retry_at)
        return;
    topic_t *t = zlistx_first(self->waiting);
    if (!t)
        return;
    zlistx_detach_cur(self->waiting);
    if (t->stopped) {
        t->queued = false;
        start_stream(self);
        return;
    }
    uint64_t last = nw_journal_last_seq(self->journal, t->name);
    if (last == 0)
        t->verify = false;
    nw_replay_request_t req = {.type = NW_REPLAY_REQ_REPLAY,
                               .has_from = true,
                               .from = t->verify ? last : last + 1,
                               .has_to = t->verify,
                               .to = last,
                               .credit = t->verify ? 1 : CREDIT};
    snprintf(req.topic, sizeof req.topic, "%s", t->name);
    if (send_request(self, &req) != 0) {
        /* the DEALER's queue is full (upstream away): asked again at a tick */
        zlistx_add_start(self->waiting, t);
        self->retry_at = mono_ms() + BUSY_FIRST_MS;
        return;
    }
    self->active = t;
    self->active_verify = t->verify;
    self->active_restart = false;
    self->active_from = req.from;
    self->prev_seq = 0;
    *self->prev_epoch = 0;
    self->active_used = 0;
    self->active_deadline = mono_ms() + STREAM_SILENT_MS;
    self->stats.replays++;
}

static void backoff(nw_upstream_t *self)
{
    self->backoff_ms = self->backoff_ms ? self->backoff_ms * 2 : BUSY_FIRST_MS;
    if (self->backoff_ms > BUSY_MAX_MS)
        self->backoff_ms = BUSY_MAX_MS;
    self->retry_at = mono_ms() + self->backoff_ms;
}

/* The stream is over: the held messages go through take() in arrival order; one that
 * shows a new gap queues the topic again (and the rest wait behind it again). */
static void end_stream(nw_upstream_t *self, bool again)
{
    topic_t *t = self->active;
    self->active = NULL;
    self->active_verify = self->active_restart = false;
    t->queued = false;
    uint64_t need = t->need_to;
    t->need_to = 0;
    /* asked again (busy, silent, or first the relay's last seq): the caller backs off */
    bool short_end = !again && need && nw_journal_last_seq(self->journal, t->name) < need &&
                     !t->stopped;
    if (short_end)
        backoff(self);
    if (again || short_end) {
        t->queued = true;
        t->need_to = need;
        zlistx_add_end(self->waiting, t);
    } else {
        held_t *h = t->held;
        t->held = t->held_tail = NULL;
        t->nheld = 0;
        while (h) {
            held_t *next = h->next;
            hold_or_take(self, t, h->data, h->len);
            free(h);
            h = next;
        }
    }
    start_stream(self);
}

static void on_reply(nw_upstream_t *self, zmq_msg_t *f0, zmq_msg_t *f1)
{
    topic_t *t = self->active;
    const void *d0 = zmq_msg_data(f0), *d1 = zmq_msg_data(f1);
    size_t l0 = zmq_msg_size(f0), l1 = zmq_msg_size(f1);
    char err[200];
    switch (nw_replay_reply_kind(d0, l0)) {
    case NW_REPLAY_DATA: {
        char topic[NW_TOPIC_MAX + 1];
        if (!t || nw_topic_unframe(d0, l0, topic, err, sizeof err) != 0 ||
            strcmp(topic, t->name) != 0)
            return; /* a cancelled stream's late reply */
        self->active_deadline = mono_ms() + STREAM_SILENT_MS;
        if (self->active_verify) {
            verify_reply(self, t, d1, l1);
            return; /* its $end follows */
        }
        take(self, t, d1, l1, true);
        if (self->active_restart) { /* asked again, for the relay's last seq first */
            nw_replay_request_t cancel = {.type = NW_REPLAY_REQ_CANCEL};
            send_request(self, &cancel);
            end_stream(self, true);
            return;
        }
        if (++self->active_used >= CREDIT / 2) {
            nw_replay_request_t credit = {.type = NW_REPLAY_REQ_CREDIT,
                                          .credit = self->active_used};
            self->active_used = 0;
            send_request(self, &credit);
        }
        if (t->stopped) {
            nw_replay_request_t cancel = {.type = NW_REPLAY_REQ_CANCEL};
            send_request(self, &cancel);
            end_stream(self, false);
        }
        return;
    }
    case NW_REPLAY_END: {
        nw_replay_end_t end;
        if (!t || nw_replay_end_parse(d1, l1, &end, err, sizeof err) != 0 ||
            strcmp(end.topic, t->name) != 0 ||
            (self->active_verify && end.from != self->active_from))
            return;
        if (end.head > t->head)
            t->head = end.head;
        uint64_t last = nw_journal_last_seq(self->journal, t->name);
        if (end.head < last) /* what it published is durable there: it lost history */
            stop_topic(self, t,
                       "the upstream's newest seq is %llu, below the %llu this relay "
                       "holds: it lost its history (a new epoch starting again below); move "
                       "this relay's journal aside and restart it to follow",
                       (unsigned long long) end.head, (unsigned long long) last);
        self->backoff_ms = 0;
        if (self->active_verify) {
            t->verify = false;
            if (t->confirmed != last)
                stop_topic(self, t,
                           "the upstream sends epoch %s after seq %llu but no longer "
                           "holds seq %llu of epoch %s that this relay holds: its new epoch "
                           "may have started again below; move this relay's journal aside "
                           "and restart it to follow",
                           t->next_epoch, (unsigned long long) last, (unsigned long long) last,
                           t->epoch);
            end_stream(self, !t->stopped); /* then from the next seq */
            return;
        }
        end_stream(self, false);
        return;
    }
    case NW_REPLAY_ERROR: {
        nw_replay_error_t e;
        if (!t || nw_replay_error_parse(d1, l1, &e, err, sizeof err) != 0 ||
            (*e.topic && strcmp(e.topic, t->name) != 0))
            return;
        self->stats.replay_errors++;
        if (strcmp(e.code, "busy") == 0) {
            nw_info("upstream: replay of %s busy, asking again", t->name);
            backoff(self);
            end_stream(self, true);
            return;
        }
        if (strcmp(e.code, "retention") == 0)
            stop_topic(self, t,
                       "the upstream no longer holds seqs %llu..%llu (retention: "
                       "its oldest is %llu)",
                       (unsigned long long) nw_journal_last_seq(self->journal, t->name) + 1,
                       (unsigned long long) e.oldest - 1, (unsigned long long) e.oldest);
        else if (strcmp(e.code, "unknown-topic") == 0 && t->head == 0)
            ; /* a probe of a topic the upstream never had: nothing to fetch */
        else
            stop_topic(self, t, "the upstream's replay refused it: %s: %s", e.code, e.reason);
        end_stream(self, false);
        return;
    }
    }
}

static void drain_dealer(nw_upstream_t *self)
{
    while (self->dealer_h) {
        zmq_msg_t f0, f1;
        zmq_msg_init(&f0);
        if (zmq_msg_recv(&f0, self->dealer_h, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f0);
            return;
        }
        zmq_msg_init(&f1);
        bool two = zmq_msg_more(&f0) && zmq_msg_recv(&f1, self->dealer_h, 0) >= 0;
        bool more = two && zmq_msg_more(&f1);
        while (more) { /* a reply of more frames: not this protocol's */
            zmq_msg_t rest;
            zmq_msg_init(&rest);
            more = zmq_msg_recv(&rest, self->dealer_h, 0) >= 0 && zmq_msg_more(&rest);
            zmq_msg_close(&rest);
            two = false;
        }
        if (two)
            on_reply(self, &f0, &f1);
        zmq_msg_close(&f0);
        zmq_msg_close(&f1);
    }
}

static void drain_sub(nw_upstream_t *self)
{
    while (self->sub_h && !self->stopping) {
        zmq_msg_t f0, f1;
        zmq_msg_init(&f0);
        if (zmq_msg_recv(&f0, self->sub_h, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f0);
            break;
        }
        zmq_msg_init(&f1);
        bool two = zmq_msg_more(&f0) && zmq_msg_recv(&f1, self->sub_h, 0) >= 0 &&
                   !zmq_msg_more(&f1);
        char topic[NW_TOPIC_MAX + 1], err[200];
        self->stats.received++;
        if (!two ||
            nw_topic_unframe(zmq_msg_data(&f0), zmq_msg_size(&f0), topic, err, sizeof err) != 0) {
            self->stats.bad++;
            /* the rest of a message of more frames */
            while (zmq_msg_more(&f1)) {
                zmq_msg_close(&f1);
                zmq_msg_init(&f1);
                if (zmq_msg_recv(&f1, self->sub_h, 0) < 0)
                    break;
            }
        } else if (!carried(self, topic))
            self->stats.filtered++;
        else {
            topic_t *t = topic_get(self, topic);
            if (t)
                hold_or_take(self, t, zmq_msg_data(&f1), zmq_msg_size(&f1));
            self->last_live = mono_ms();
        }
        zmq_msg_close(&f0);
        zmq_msg_close(&f1);
    }
    drain_dealer(self); /* the sends above may have consumed the DEALER's edge */
}

static void know_topic(void *arg, const char *topic, uint64_t last)
{
    nw_upstream_t *self = arg;
    (void) last;
    if (carried(self, topic))
        topic_get(self, topic);
}

/* Every topic seen is asked for anything past the relay's last seq. */
static void probe_all(nw_upstream_t *self)
{
    if (!self->dealer)
        return;
    for (topic_t *t = zhashx_first(self->topics); t; t = zhashx_next(self->topics))
        if (!t->stopped && !t->queued)
            want_stream(self, t, 0);
}

static void drain_monitor(nw_upstream_t *self)
{
    for (;;) {
        zmq_msg_t ev, addr;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, self->monitor_h, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        uint16_t event = 0;
        if (zmq_msg_size(&ev) >= 2)
            memcpy(&event, zmq_msg_data(&ev), 2);
        zmq_msg_init(&addr);
        if (zmq_msg_more(&ev))
            zmq_msg_recv(&addr, self->monitor_h, 0);
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            self->handshakes++;
            self->stats.connects++;
            nw_notice("upstream: connected to %s", self->live);
            probe_all(self); /* what passed while away */
        } else if (event == ZMQ_EVENT_DISCONNECTED && self->handshakes > 0) {
            self->handshakes--;
            self->stats.disconnects++;
            /* what the upstream showed it holds may not hold after it restarts */
            for (topic_t *t = zhashx_first(self->topics); t; t = zhashx_next(self->topics))
                t->confirmed = 0;
            nw_warn("upstream: disconnected from %s, reconnecting", self->live);
        }
        self->stats.connected = self->handshakes > 0;
        zmq_msg_close(&ev);
        zmq_msg_close(&addr);
    }
}

static void on_sub(uv_poll_t *h, int status, int events)
{
    (void) status, (void) events;
    drain_sub(h->data);
}

static void on_dealer(uv_poll_t *h, int status, int events)
{
    (void) status, (void) events;
    nw_upstream_t *self = h->data;
    drain_dealer(self);
}

static void on_monitor(uv_poll_t *h, int status, int events)
{
    (void) status, (void) events;
    drain_monitor(h->data);
}

static void on_tick(uv_timer_t *timer)
{
    nw_upstream_t *self = timer->data;
    int64_t now = mono_ms();
    drain_sub(self);
    drain_monitor(self);
    if (self->active && now > self->active_deadline) {
        nw_warn("upstream: replay of %s silent for %d ms: asking again", self->active->name,
                STREAM_SILENT_MS);
        self->stats.replay_errors++;
        nw_replay_request_t cancel = {.type = NW_REPLAY_REQ_CANCEL};
        send_request(self, &cancel);
        backoff(self);
        end_stream(self, true);
    }
    if (self->last_live && now - self->last_live >= IDLE_PROBE_MS) {
        self->last_live = 0;
        probe_all(self);
    }
    start_stream(self);
}

/* The Z85 keys of a zcert file; secret NULL for a public certificate. */
static int load_keys(const char *path, char *pub, char *sec, char *errbuf, size_t errlen)
{
    zconfig_t *root = zconfig_load(path);
    const char *p = root ? zconfig_get(root, "curve/public-key", NULL) : NULL;
    const char *s = root ? zconfig_get(root, "curve/secret-key", NULL) : NULL;
    int rc = -1;
    if (!p || strlen(p) != 40)
        snprintf(errbuf, errlen, "certificate %s: no curve/public-key", path);
    else if (sec && (!s || strlen(s) != 40))
        snprintf(errbuf, errlen, "certificate %s: no curve/secret-key (use the _secret file)",
                 path);
    else {
        memcpy(pub, p, 41);
        if (sec)
            memcpy(sec, s, 41);
        rc = 0;
    }
    zconfig_destroy(&root);
    return rc;
}

static int set_curve(zsock_t *sock, const char *pub, const char *sec, const char *server)
{
    zsock_set_curve_serverkey(sock, server);
    zsock_set_curve_publickey(sock, pub);
    zsock_set_curve_secretkey(sock, sec);
    return zsock_mechanism(sock) == ZMQ_CURVE ? 0 : -1;
}

static int start_poll(nw_upstream_t *self, uv_poll_t *poll, zsock_t *sock, uv_poll_cb cb)
{
    if (uv_poll_init(self->loop, poll, zsock_fd(sock)) != 0)
        return -1;
    poll->data = self;
    self->open_handles++;
    return uv_poll_start(poll, UV_READABLE, cb);
}

nw_upstream_t *nw_upstream_new(uv_loop_t *loop, nw_upstream_options_t options, nw_feed_t *feed,
                               nw_journal_t *journal, char *errbuf, size_t errlen)
{
    const nw_upstream_options_t *o = &options;
    nw_upstream_t *self = calloc(1, sizeof *self);
    char pub[41], sec[41], server[41];
    if (!self)
        goto nomem;
    self->loop = loop;
    self->feed = feed;
    self->journal = journal;
    self->live = strdup(o->live);
    self->replay_ep = o->replay ? strdup(o->replay) : NULL;
    self->filters = calloc(o->topic_count + 1, sizeof *self->filters);
    self->topics = zhashx_new();
    self->waiting = zlistx_new();
    if (!self->live || (o->replay && !self->replay_ep) || !self->filters || !self->topics ||
        !self->waiting)
        goto nomem;
    zhashx_set_destructor(self->topics, topic_free);
    for (size_t i = 0; i < o->topic_count; i++) {
        if (!nw_topic_valid(o->topics[i], strlen(o->topics[i]))) {
            snprintf(errbuf, errlen, "--upstream-topic '%s' is not a topic", o->topics[i]);
            goto fail;
        }
        if (!(self->filters[self->nfilters++] = strdup(o->topics[i])))
            goto nomem;
    }
    if (!o->cert != !o->server_key) {
        snprintf(errbuf, errlen, "--upstream-cert and --upstream-key go together");
        goto fail;
    }
    if (o->cert) {
        if (load_keys(o->cert, pub, sec, errbuf, errlen) != 0)
            goto fail;
        struct stat st;
        if (stat(o->server_key, &st) == 0) {
            if (load_keys(o->server_key, server, NULL, errbuf, errlen) != 0)
                goto fail;
        } else if (strlen(o->server_key) == 40) {
            memcpy(server, o->server_key, 41);
        } else {
            snprintf(errbuf, errlen,
                     "--upstream-key '%s' is neither a 40-character Z85 key "
                     "nor a certificate file",
                     o->server_key);
            goto fail;
        }
    }

    self->sub = zsock_new(ZMQ_SUB);
    self->dealer = o->replay ? zsock_new(ZMQ_DEALER) : NULL;
    if (!self->sub || (o->replay && !self->dealer))
        goto nomem;
    self->sub_h = zsock_resolve(self->sub);
    zsock_set_linger(self->sub, 0);
    zsock_set_rcvhwm(self->sub, o->rcvhwm);
    zsock_set_maxmsgsize(self->sub, (int) (NW_CODEC_MAX_MESSAGE + 64 * 1024));
    if (self->dealer) {
        self->dealer_h = zsock_resolve(self->dealer);
        zsock_set_linger(self->dealer, 0);
        zsock_set_rcvhwm(self->dealer, 0);
        zsock_set_maxmsgsize(self->dealer, (int) (NW_CODEC_MAX_MESSAGE + 64 * 1024));
    }
    if (o->cert && (set_curve(self->sub, pub, sec, server) != 0 ||
                    (self->dealer && set_curve(self->dealer, pub, sec, server) != 0))) {
        snprintf(errbuf, errlen, "cannot use CURVE (this libzmq lacks it, or the keys are bad)");
        goto fail;
    }
    /* Connection state: the SUB's handshakes and disconnections. */
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://nw-upstream-monitor-%p", (void *) self);
    if (zmq_socket_monitor(self->sub_h, mon,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED) != 0 ||
        !(self->monitor = zsock_new(ZMQ_PAIR)) || zsock_connect(self->monitor, "%s", mon) != 0) {
        snprintf(errbuf, errlen, "cannot monitor the upstream socket: %s",
                 zmq_strerror(zmq_errno()));
        goto fail;
    }
    self->monitor_h = zsock_resolve(self->monitor);
    if (self->nfilters == 0)
        zsock_set_subscribe(self->sub, "");
    for (size_t i = 0; i < self->nfilters; i++) {
        char raw[NW_TOPIC_MAX + 2];
        nw_topic_terminate(self->filters[i], strlen(self->filters[i]), raw);
        zsock_set_subscribe(self->sub, raw);
    }
    if (zsock_connect(self->sub, "%s", o->live) != 0) {
        snprintf(errbuf, errlen, "--upstream %s: %s", o->live, zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (self->dealer && zsock_connect(self->dealer, "%s", o->replay) != 0) {
        snprintf(errbuf, errlen, "--upstream-replay %s: %s", o->replay,
                 zmq_strerror(zmq_errno()));
        goto fail;
    }
    if (start_poll(self, &self->sub_poll, self->sub, on_sub) != 0 ||
        (self->dealer && start_poll(self, &self->dealer_poll, self->dealer, on_dealer) != 0) ||
        start_poll(self, &self->monitor_poll, self->monitor, on_monitor) != 0) {
        snprintf(errbuf, errlen, "cannot poll the upstream sockets");
        goto fail;
    }
    uv_timer_init(loop, &self->tick);
    self->tick.data = self;
    self->open_handles++;
    uv_timer_start(&self->tick, on_tick, TICK_MS, TICK_MS);
    /* The topics journaled before a restart are known at once, so the first handshake
     * asks the upstream for what passed while the relay was down. Learnt only from
     * live traffic, a burst that ended during the restart was never caught up (a
     * relay killed mid-burst on a loaded machine restarted after the burst's end). */
    nw_journal_topics(journal, know_topic, self);
    memset(sec, 0, sizeof sec);
    nw_info("upstream: %s%s%s, %s, %zu topic filters", o->live, o->replay ? ", replay " : "",
            o->replay ? o->replay : " (no replay)", o->cert ? "CURVE" : "clear text",
            self->nfilters);
    return self;
nomem:
    snprintf(errbuf, errlen, "out of memory");
fail:
    memset(sec, 0, sizeof sec);
    nw_upstream_destroy(&self);
    return NULL;
}

void nw_upstream_stats(const nw_upstream_t *self, nw_upstream_stats_t *out)
{
    *out = self->stats;
    out->lag = 0;
    for (topic_t *t = zhashx_first(self->topics); t; t = zhashx_next(self->topics)) {
        uint64_t last = nw_journal_last_seq(self->journal, t->name);
        if (t->head > last)
            out->lag += t->head - last;
    }
}

size_t nw_upstream_topics(nw_upstream_t *self, nw_upstream_topic_t *out, size_t max)
{
    size_t n = 0;
    for (topic_t *t = zhashx_first(self->topics); t && n < max; t = zhashx_next(self->topics)) {
        uint64_t last = nw_journal_last_seq(self->journal, t->name);
        out[n++] = (nw_upstream_topic_t) {.topic = t->name,
                                          .head = t->head > last ? t->head : last,
                                          .last = last,
                                          .stopped = t->stopped,
                                          .reason = t->reason};
    }
    return n;
}

const char *nw_upstream_problem(const nw_upstream_t *self)
{
    return self->problem;
}

void nw_upstream_stop(nw_upstream_t *self)
{
    if (self)
        self->stopping = true;
}

static void on_close(uv_handle_t *handle)
{
    nw_upstream_t *self = handle->data;
    if (--self->open_handles > 0)
        return;
    zsock_destroy(&self->monitor);
    zsock_destroy(&self->sub);
    zsock_destroy(&self->dealer);
    free(self);
}

void nw_upstream_destroy(nw_upstream_t **self_p)
{
    nw_upstream_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    self->stopping = true;
    zhashx_destroy(&self->topics);
    zlistx_destroy(&self->waiting);
    for (size_t i = 0; i < self->nfilters; i++)
        free(self->filters[i]);
    free(self->filters);
    free(self->live);
    free(self->replay_ep);
    self->sub_h = self->dealer_h = NULL;
    if (self->sub)
        zmq_socket_monitor(zsock_resolve(self->sub), NULL, 0);
    if (self->open_handles == 0) {
        zsock_destroy(&self->monitor);
        zsock_destroy(&self->sub);
        zsock_destroy(&self->dealer);
        free(self);
        return;
    }
    uv_handle_t *handles[] = {(uv_handle_t *) &self->sub_poll, (uv_handle_t *) &self->dealer_poll,
                              (uv_handle_t *) &self->monitor_poll, (uv_handle_t *) &self->tick};
    for (size_t i = 0; i < 4; i++)
        if (handles[i]->loop) { /* initialised */
            handles[i]->data = self;
            uv_close(handles[i], on_close);
        }
}
