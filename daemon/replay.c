/*
 * replay: serves journaled messages on a ROUTER (see replay.h).
 *
 * A client (keyed by its ROUTER identity) exists while it has a stream, or while ZeroMQ
 * still holds replies of its last one ("draining"), so state is bounded by
 * NW_REPLAY_MAX_STREAMS. A stream moves through: waiting for credit -> queued for a read
 * -> read in flight on the pool -> its batch being sent -> (more credit and room: queued
 * again | past its share: paused until a release wakes it | done: $end sent, client
 * freed or draining). A batch holds at most min(credit, 256) + 1 messages and the
 * stream's allowance of the byte budget (always at least one message), copied out of the
 * cursor on the pool into buffers ZeroMQ sends without a copy and gives back through
 * on_released() (see "accounting"). Only MAX_READS reads run at once; main sizes libuv's
 * pool to what every module may queue at once (replay's reads included), so the
 * journal's group writes (and so the live feed) always find a thread however many
 * streams are reading; a read that must open a segment waits while max_files are open. A request
 * that replaces or cancels a stream whose read is in flight is applied when that read
 * returns: the thread owns the cursor until then.
 * The ROUTER reports vanished peers (ROUTER_MANDATORY) instead of silently dropping, and
 * a full peer pipe as EAGAIN: the rest of the batch waits for a retry timer. A paused
 * stream whose peer left is woken by ZeroMQ dropping its replies, and freed at its next
 * send; streams that move nothing for idle_ms are dropped by a sweep each second.
 */
#include "replay.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_MAX 256
#define BATCH_BYTES (4u << 20)
#define MAX_READS NW_REPLAY_POOL_JOBS /* counted in the pool's size (main.c) */
#define RETRY_MS 10
#define SWEEP_MS 1000
#define CREDIT_CAP 1000000 /* accumulated credit; beyond it is ignored */
#define HELD_OVERHEAD \
    128 /* counted per held reply beyond its bytes: our \
           header, ZeroMQ's content and pipe slot */
#define BUSY_LOG_MS 60000
#define SHARE_MIN_STREAMS 16
#define TRIM_AFTER (1u << 20) /* held at least this since the last trim */

typedef struct budget budget_t;
typedef struct account account_t;

typedef struct {
    uint64_t seq;
    zmq_msg_t msg; /* over a held_t, see hold() */
} item_t;

typedef struct client client_t;
struct client {
    nw_replay_t *owner;
    char key[2 * 256 + 1]; /* identity, hex: the clients table key */
    unsigned char id[256];
    size_t id_len;
    account_t *account; /* bytes its replies hold */
    bool streaming;     /* has a stream (else draining, see free_stream) */
    bool draining, paused;
    size_t seen_bytes; /* account bytes at the last sweep: progress */
    /* the stream */
    char topic[NW_TOPIC_MAX + 1];
    char frame0[NW_TOPIC_FRAME_MAX + 1]; /* topic + ".": data replies match the live feed */
    size_t frame0_len;
    uint64_t from, to, head, last_sent;
    uint64_t credit;
    nw_journal_cursor_t *cursor;
    bool file; /* counted in owner->files */
    uint64_t idle_since;
    /* reads */
    uv_work_t work;
    bool in_flight, queued, blocked;
    client_t *next_queued;
    size_t want, allow;
    item_t *batch; /* want of them: + 1 is a look-ahead, see work_read */
    size_t batch_n, batch_pos;
    bool done, io_error, end_pending;
    int io_errno;
    /* set while a read is in flight: applied when it returns */
    bool cancelled, has_pending;
    nw_replay_request_t pending;
    char pending_user[256];
    bool pending_has_user;
};

struct nw_replay {
    uv_loop_t *loop;
    nw_journal_t *journal;
    nw_replay_options_t opt;
    zsock_t *sock;
    void *handle;
    uv_poll_t poll;
    uv_timer_t retry, sweep;
    uv_async_t released; /* ZeroMQ let go of held replies */
    budget_t *budget;
    zhashx_t *clients;                 /* key -> client_t */
    client_t *queue_head, *queue_tail; /* waiting for a read slot */
    int reads;
    unsigned files; /* segment files open (or about to be) for reads */
    unsigned paused, draining;
    bool starting, restart; /* start_reads is running / must run again */
    uint64_t busy_logged;
    size_t held_peak; /* most held at a sweep since the last trim */
    nw_replay_allowed_fn *allowed;
    void *allowed_arg;
    nw_replay_stats_t stats;
    bool closing;
    int closes_pending;
};

/* ---------------------------------------------------------------- replies */

/* [identity, frame0, frame1] without waiting: 0, or -1 with errno (EAGAIN: the peer's
 * pipe is full and nothing was sent; EHOSTUNREACH: the peer is gone). */
static int send3(nw_replay_t *self, const void *id, size_t id_len, const void *f0, size_t l0,
                 const void *f1, size_t l1)
{
    if (zmq_send(self->handle, id, id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    /* once the identity frame is accepted the rest of the message is too */
    if (zmq_send(self->handle, f0, l0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(self->handle, f1, l1, ZMQ_DONTWAIT) < 0)
        return -1;
    return 0;
}

static int send_map(nw_replay_t *self, const void *id, size_t id_len, const char *frame0,
                    msgpack_sbuffer *sb)
{
    int rc = sb->data ? send3(self, id, id_len, frame0, strlen(frame0), sb->data, sb->size) : -1;
    msgpack_sbuffer_destroy(sb);
    return rc;
}

/* Errors are best effort: a peer that does not read its replies loses them. */
static void send_error(nw_replay_t *self, const void *id, size_t id_len, const char *topic,
                       const char *code, const char *reason, uint64_t oldest)
{
    nw_replay_error_t error = {.has_oldest = oldest != 0, .oldest = oldest};
    snprintf(error.topic, sizeof error.topic, "%s", topic);
    snprintf(error.code, sizeof error.code, "%s", code);
    snprintf(error.reason, sizeof error.reason, "%s", reason);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char why[64];
    if (nw_replay_error_pack(&error, &sb, why, sizeof why) != 0)
        nw_warn("replay: cannot pack an error reply: %s", why);
    self->stats.errors++;
    char shown[600];
    nw_debug("replay: %s on '%s': %s", code, topic, nw_log_escape(reason, shown, sizeof shown));
    send_map(self, id, id_len, NW_REPLAY_FRAME_ERROR, &sb);
}

static int send_end(client_t *c)
{
    nw_replay_end_t end = {.from = c->from,
                           .last = c->last_sent,
                           .head = c->head > c->last_sent ? c->head : c->last_sent};
    memcpy(end.topic, c->topic, sizeof end.topic);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char why[64];
    if (nw_replay_end_pack(&end, &sb, why, sizeof why) != 0)
        nw_warn("replay: cannot pack an end reply: %s", why);
    return send_map(c->owner, c->id, c->id_len, NW_REPLAY_FRAME_END, &sb);
}

/* ---------------------------------------------------------------- accounting */

/* Every data reply is a zmq_msg_t over a held_t: ZeroMQ sends it without a copy and
 * calls on_released() once it has written it to the connection, or dropped it with
 * the connection. That runs on a ZeroMQ I/O thread, so the counts are atomic, and
 * they outlive the client and the replay itself (messages may still be queued when
 * either goes): both are reference counted, freed by whoever lets go last. */
struct budget {
    atomic_size_t bytes;  /* held by every client */
    atomic_int refs;      /* the replay + every account */
    atomic_bool wake;     /* the loop wants to hear of releases */
    pthread_mutex_t lock; /* guards async */
    uv_async_t *async;    /* NULL once the replay is closing */
};

struct account {
    atomic_size_t bytes; /* held by this client */
    atomic_int refs;     /* its client + its held messages */
    budget_t *budget;
};

typedef struct {
    account_t *account;
    size_t len;
    unsigned char data[];
} held_t;

static void budget_unref(budget_t *b)
{
    if (atomic_fetch_sub(&b->refs, 1) == 1) {
        pthread_mutex_destroy(&b->lock);
        free(b);
    }
}

static account_t *account_new(budget_t *b)
{
    account_t *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    atomic_init(&a->bytes, 0);
    atomic_init(&a->refs, 1);
    a->budget = b;
    atomic_fetch_add(&b->refs, 1);
    return a;
}

static void account_unref(account_t *a)
{
    if (a && atomic_fetch_sub(&a->refs, 1) == 1) {
        budget_unref(a->budget);
        free(a);
    }
}

static size_t account_bytes(const account_t *a)
{
    return atomic_load(&((account_t *) a)->bytes);
}

static void on_released(void *data, void *hint)
{
    (void) data;
    held_t *h = hint;
    account_t *a = h->account;
    budget_t *b = a->budget;
    size_t n = h->len + HELD_OVERHEAD;
    free(h);
    atomic_fetch_sub(&a->bytes, n);
    atomic_fetch_sub(&b->bytes, n);
    if (atomic_load(&b->wake)) {
        pthread_mutex_lock(&b->lock);
        if (b->async)
            uv_async_send(b->async);
        pthread_mutex_unlock(&b->lock);
    }
    account_unref(a);
}

/* A copy of msg, counted against a's client and the budget until ZeroMQ lets go. */
static int hold(account_t *a, zmq_msg_t *out, const void *msg, size_t len)
{
    held_t *h = malloc(sizeof *h + (len ? len : 1));
    if (!h)
        return -1;
    memcpy(h->data, msg, len);
    h->account = a;
    h->len = len;
    if (zmq_msg_init_data(out, h->data, len, on_released, h) != 0) {
        free(h);
        return -1;
    }
    atomic_fetch_add(&a->refs, 1);
    atomic_fetch_add(&a->bytes, len + HELD_OVERHEAD);
    atomic_fetch_add(&a->budget->bytes, len + HELD_OVERHEAD);
    return 0;
}

/* ---------------------------------------------------------------- streams */

static void start_reads(nw_replay_t *self);
static void start_some(nw_replay_t *self);
static void drain(nw_replay_t *self);
static void free_stream(client_t *c);

static void free_batch(client_t *c)
{
    for (size_t i = c->batch_pos; i < c->batch_n; i++)
        zmq_msg_close(&c->batch[i].msg); /* on_released gives the bytes back */
    c->batch_n = c->batch_pos = 0;
    free(c->batch);
    c->batch = NULL;
}

/* Keep self->files equal to the cursors holding a segment file (or reserved one). */
static void sync_file(client_t *c)
{
    nw_replay_t *self = c->owner;
    bool holds = c->cursor && nw_journal_cursor_holds_file(c->cursor);
    if (holds == c->file)
        return;
    c->file = holds;
    if (holds)
        self->files++;
    else if (--self->files < self->opt.max_files && self->queue_head)
        start_reads(self);
}

static void drop_cursor(client_t *c)
{
    nw_journal_cursor_destroy(&c->cursor);
    sync_file(c);
}

/* A stream that waits (for credit, or for ZeroMQ to take its bytes) gives its file and
 * read buffer back; the next read opens the segment again by name. */
static void release_cursor(client_t *c)
{
    if (c->cursor) {
        nw_journal_cursor_release(c->cursor, true);
        sync_file(c);
    }
}

static void unqueue(client_t *c)
{
    nw_replay_t *self = c->owner;
    if (!c->queued)
        return;
    client_t **pp = &self->queue_head;
    while (*pp != c)
        pp = &(*pp)->next_queued;
    *pp = c->next_queued;
    if (self->queue_tail == c) {
        self->queue_tail = NULL;
        for (client_t *q = self->queue_head; q; q = q->next_queued)
            self->queue_tail = q;
    }
    c->next_queued = NULL;
    c->queued = false;
}

/* Each stream's share of the byte budget: the budget split evenly between the streams
 * there are (and never more than a sixteenth of it), so one client that does not read
 * cannot take what the others need. */
static size_t share(const nw_replay_t *self)
{
    unsigned long n = self->stats.streams_active ? self->stats.streams_active : 1;
    if (n < SHARE_MIN_STREAMS)
        n = SHARE_MIN_STREAMS; /* the first streams to come do not take it all */
    return self->opt.max_bytes / n;
}

static size_t budget_bytes(const nw_replay_t *self)
{
    return atomic_load(&self->budget->bytes);
}

/* How much the next read of c may copy out of the journal; 0: c waits for ZeroMQ to
 * write (or drop) what c or the others hold. Every stream may hold a floor (half the
 * budget split between as many streams as there may be) while the budget is not spent,
 * so a stream that comes late is never starved by earlier ones that do not read;
 * beyond its floor, up to its share, only while the others' floors stay free. A read
 * always takes its first record, so the budget is exceeded by at most one record per
 * read in flight. */
static size_t allowance(const client_t *c)
{
    const nw_replay_t *self = c->owner;
    size_t max = self->opt.max_bytes, floor_ = max / (2 * NW_REPLAY_MAX_STREAMS);
    size_t mine = account_bytes(c->account), all = budget_bytes(self), fair = share(self);
    size_t n = self->stats.streams_active, reserve = floor_ * n;
    size_t cap = max > reserve ? max - reserve : 0, room = 0;
    if (all < cap && mine < fair)
        room = fair - mine < cap - all ? fair - mine : cap - all;
    else if (mine < floor_ && all < max)
        room = floor_ - mine < max - all ? floor_ - mine : max - all;
    return room < BATCH_BYTES ? room : BATCH_BYTES;
}

static void set_wake(nw_replay_t *self)
{
    atomic_store(&self->budget->wake, self->paused + self->draining > 0);
}

static void pause_stream(client_t *c)
{
    nw_replay_t *self = c->owner;
    if (c->paused)
        return;
    c->paused = true;
    self->paused++;
    self->stats.pauses++;
    set_wake(self);
    release_cursor(c);
}

static void unpause(client_t *c)
{
    nw_replay_t *self = c->owner;
    if (!c->paused)
        return;
    c->paused = false;
    self->paused--;
    set_wake(self);
}

/* c has no room: pause it, unless a release came between the check and the wake flag.
 * true when it was paused. */
static bool wait_for_room(client_t *c)
{
    pause_stream(c);
    if (allowance(c) == 0)
        return true;
    unpause(c);
    return false;
}

static void enqueue(client_t *c)
{
    nw_replay_t *self = c->owner;
    if (c->queued || c->in_flight || c->paused)
        return;
    if (allowance(c) == 0 && wait_for_room(c))
        return;
    c->queued = true;
    c->next_queued = NULL;
    if (self->queue_tail)
        self->queue_tail->next_queued = c;
    else
        self->queue_head = c;
    self->queue_tail = c;
    start_reads(self);
}

/* Drop the stream's state (the caller made sure no read is in flight). A client whose
 * replies ZeroMQ still holds stays in the table without a stream ("draining") until
 * they are written or dropped, so a new stream of the same peer starts with what it
 * already holds; any other leaves the table. */
static void free_stream(client_t *c)
{
    nw_replay_t *self = c->owner;
    unqueue(c);
    unpause(c);
    free_batch(c);
    drop_cursor(c);
    if (c->streaming) {
        c->streaming = false;
        self->stats.streams_active--;
    }
    if (account_bytes(c->account) > 0 && !self->closing) {
        if (!c->draining) {
            c->draining = true;
            self->draining++;
            set_wake(self);
        }
        c->idle_since = uv_now(self->loop);
        return;
    }
    if (c->draining) {
        c->draining = false;
        self->draining--;
        set_wake(self);
    }
    zhashx_delete(self->clients, c->key); /* the destructor frees c */
}

static void client_free(void **item)
{
    client_t *c = *item;
    if (!c)
        return;
    *item = NULL;
    account_unref(c->account);
    free(c);
}

static void on_retry(uv_timer_t *timer);

static void arm_retry(nw_replay_t *self)
{
    if (!self->closing && !uv_is_active((uv_handle_t *) &self->retry))
        uv_timer_start(&self->retry, on_retry, RETRY_MS, 0);
}

/* [identity, frame0, the held reply], handing the reply to ZeroMQ without a copy. */
static int send_held(nw_replay_t *self, client_t *c, zmq_msg_t *msg)
{
    if (zmq_send(self->handle, c->id, c->id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    /* once the identity frame is accepted the rest of the message is too */
    if (zmq_send(self->handle, c->frame0, c->frame0_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_send(msg, self->handle, ZMQ_DONTWAIT) < 0)
        return -1;
    return 0;
}

/* Send what the batch holds, then the end or the next read. */
static void pump(client_t *c)
{
    nw_replay_t *self = c->owner;
    c->blocked = false;
    while (c->batch_pos < c->batch_n && c->credit > 0) {
        item_t *it = &c->batch[c->batch_pos];
        size_t len = zmq_msg_size(&it->msg); /* the send empties the message */
        if (send_held(self, c, &it->msg) != 0)
            goto unsent;
        c->batch_pos++;
        c->credit--;
        c->last_sent = it->seq;
        self->stats.messages++;
        self->stats.bytes += len;
    }
    c->idle_since = uv_now(self->loop);
    if (c->batch_pos < c->batch_n) {
        release_cursor(c);
        return; /* the look-ahead waits for credit */
    }
    free_batch(c);
    if (c->io_error) {
        if (c->io_errno == ENOENT) {
            uint64_t oldest = nw_journal_oldest_seq(self->journal, c->topic);
            send_error(self, c->id, c->id_len, c->topic, "retention",
                       "retired from the journal while the stream was reading",
                       oldest ? oldest : c->head + 1);
        } else {
            char why[128];
            snprintf(why, sizeof why, "the journal could not be read: %s", strerror(c->io_errno));
            send_error(self, c->id, c->id_len, c->topic, "busy", why, 0);
        }
        free_stream(c);
        return;
    }
    if (c->done || c->end_pending) {
        c->end_pending = true;
        if (send_end(c) != 0)
            goto unsent;
        free_stream(c);
        return;
    }
    if (c->credit > 0)
        enqueue(c);
    else
        release_cursor(c);
    return;
unsent:
    if (errno == EAGAIN) {
        c->blocked = true;
        arm_retry(self);
        return;
    }
    nw_debug("replay: a client vanished mid-stream on '%s' (%s)", c->topic, zmq_strerror(errno));
    free_stream(c);
}

/* Reads one message more than the credit allows when it can: that look-ahead tells
 * whether the range is over, so $end follows the last message even when the client
 * granted exactly the credit the range needed. Stops once the allowance is used (the
 * first record is always taken), and gives the cursor's read buffer back at the end. */
static void work_read(uv_work_t *req)
{
    client_t *c = req->data;
    size_t bytes = 0;
    while (c->batch_n < c->want && (c->batch_n == 0 || bytes < c->allow)) {
        uint64_t seq;
        const void *msg;
        size_t len;
        int rc = nw_journal_cursor_next(c->cursor, &seq, &msg, &len);
        if (rc < 0) {
            c->io_error = true;
            c->io_errno = errno;
            break;
        }
        if (rc == 0 || seq > c->to) {
            c->done = true;
            break;
        }
        item_t *it = &c->batch[c->batch_n];
        if (hold(c->account, &it->msg, msg, len) != 0) {
            c->io_error = true;
            c->io_errno = ENOMEM;
            break;
        }
        it->seq = seq;
        c->batch_n++;
        bytes += len + HELD_OVERHEAD;
        if (seq == c->to) {
            c->done = true;
            break;
        }
    }
    nw_journal_cursor_release(c->cursor, c->done || c->io_error);
}

static void start_stream(client_t *c, const nw_replay_request_t *req, const char *user_id);

static void after_read(uv_work_t *req, int status)
{
    (void) status;
    client_t *c = req->data;
    nw_replay_t *self = c->owner;
    c->in_flight = false;
    self->reads--;
    sync_file(c);
    if (self->closing || c->cancelled) {
        bool restart = !self->closing && c->has_pending;
        nw_replay_request_t pending = c->pending;
        char user[256];
        bool has_user = c->pending_has_user;
        memcpy(user, c->pending_user, sizeof user);
        free_batch(c);
        drop_cursor(c);
        c->cancelled = c->has_pending = false;
        if (restart)
            start_stream(c, &pending, has_user ? user : NULL);
        else if (self->closing) {
            account_unref(c->account);
            free(c); /* already out of the table */
        } else
            free_stream(c);
        if (self->closing && self->reads == 0 && self->closes_pending == 0)
            free(self);
        else if (!self->closing)
            start_reads(self);
        return;
    }
    size_t held = budget_bytes(self);
    if (held > self->held_peak)
        self->held_peak = held;
    pump(c);
    start_reads(self);
    drain(self); /* the sends may have consumed ZMQ_FD's edge */
}

/* Start reads for queued streams while slots are free. Frees of streams on the way can
 * ask for this again: they only mark it, and the walk starts over. */
static void start_reads(nw_replay_t *self)
{
    if (self->starting) {
        self->restart = true;
        return;
    }
    self->starting = true;
    do {
        self->restart = false;
        start_some(self);
    } while (self->restart && !self->closing);
    self->starting = false;
}

static void start_some(nw_replay_t *self)
{
    client_t **pp = &self->queue_head;
    while (!self->closing && self->reads < MAX_READS && *pp) {
        client_t *c = *pp;
        /* a stream that must open a segment waits while the file budget is spent */
        if (!c->file && self->files >= self->opt.max_files) {
            pp = &c->next_queued;
            continue;
        }
        unqueue(c);
        c->allow = allowance(c);
        if (c->allow == 0 && wait_for_room(c)) /* others took the room meanwhile */
            continue;
        c->allow = c->allow ? c->allow : allowance(c);
        c->want = (c->credit < BATCH_MAX ? (size_t) c->credit : BATCH_MAX) + 1;
        c->batch_n = c->batch_pos = 0;
        if (!(c->batch = malloc(c->want * sizeof *c->batch))) {
            send_error(self, c->id, c->id_len, c->topic, "busy", "out of memory", 0);
            free_stream(c);
            continue;
        }
        c->work.data = c;
        if (!c->file) { /* the read may open one */
            c->file = true;
            self->files++;
        }
        if (uv_queue_work(self->loop, &c->work, work_read, after_read) != 0) {
            send_error(self, c->id, c->id_len, c->topic, "busy", "cannot schedule a read", 0);
            free_stream(c);
            continue;
        }
        c->in_flight = true;
        self->reads++;
    }
}

/* Validate a replay against the journal and start reading; c is in the table and holds no
 * read, cursor or batch. Every outcome that does not stream frees c. */
static void start_stream(client_t *c, const nw_replay_request_t *req, const char *user_id)
{
    nw_replay_t *self = c->owner;
    memset(c->topic, 0, sizeof c->topic);
    memcpy(c->topic, req->topic, sizeof c->topic);
    c->frame0_len = nw_topic_terminate(c->topic, strlen(c->topic), c->frame0);
    c->done = c->io_error = c->end_pending = c->blocked = false;
    c->io_errno = 0;
    c->last_sent = 0;
    c->credit = req->credit;
    c->to = req->has_to ? req->to : UINT64_MAX;
    c->idle_since = uv_now(self->loop);
    if (c->draining) {
        c->draining = false;
        self->draining--;
        set_wake(self);
    }
    if (!c->streaming) {
        c->streaming = true;
        self->stats.streams_active++;
    }
    self->stats.streams++;
    /* Appended, perhaps not yet durable: the cursor below stops at what is durable. */
    c->head = nw_journal_durable_seq(self->journal, req->topic);
    if (self->allowed && !self->allowed(self->allowed_arg, user_id, req->topic)) {
        send_error(self, c->id, c->id_len, req->topic, "denied", "not granted", 0);
        goto fail;
    }
    if (c->head == 0) {
        send_error(self, c->id, c->id_len, req->topic, "unknown-topic", "nothing published", 0);
        goto fail;
    }
    uint64_t from = req->has_from          ? req->from
                    : c->head >= req->last ? c->head - req->last + 1
                                           : 1;
    c->from = from;
    if (from > c->head || from > c->to) {
        c->done = true;
        pump(c);
        return;
    }
    uint64_t oldest;
    c->cursor = nw_journal_cursor_new(self->journal, req->topic, from, &oldest);
    if (!c->cursor && oldest) {
        send_error(self, c->id, c->id_len, req->topic, "busy", "out of memory", 0);
        goto fail;
    }
    if (!c->cursor) { /* nothing durable yet */
        c->done = true;
        pump(c);
        return;
    }
    if (oldest == 0 || from < oldest) {
        if (req->has_last && !oldest) { /* none of the newest N is held */
            drop_cursor(c);
            c->done = true;
            pump(c);
            return;
        }
        if (req->has_last) {
            c->from = oldest; /* "the newest N" is whatever is held of them */
        } else {
            /* nothing held at all: the next message to come is the oldest */
            send_error(self, c->id, c->id_len, req->topic, "retention",
                       "older than the journal holds", oldest ? oldest : c->head + 1);
            goto fail;
        }
    }
    enqueue(c);
    return;
fail:
    free_stream(c);
}

/* ---------------------------------------------------------------- requests */

static void hex(const unsigned char *id, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[id[i] >> 4];
        out[2 * i + 1] = digits[id[i] & 15];
    }
    out[2 * len] = '\0';
}

/* A new stream that would find no room: "busy", logged now and then at warning level
 * (a client retries; many refusals mean the budget is too small for the load). */
static void refuse(nw_replay_t *self, const void *id, size_t id_len, const char *topic,
                   const char *why)
{
    self->stats.refused++;
    uint64_t now = uv_now(self->loop);
    if (!self->busy_logged || now - self->busy_logged >= BUSY_LOG_MS) {
        self->busy_logged = now;
        nw_warn("replay: refusing new streams as busy: %s (%lu streams, %zu bytes held; "
                "--replay-max-bytes %" PRIu64 ")",
                why, self->stats.streams_active, budget_bytes(self), self->opt.max_bytes);
    }
    send_error(self, id, id_len, topic, "busy", why, 0);
}

/* parts: how many frames followed the identity */
static void handle_request(nw_replay_t *self, zmq_msg_t *id, zmq_msg_t *body, size_t parts)
{
    size_t id_len = zmq_msg_size(id);
    if (id_len == 0 || id_len > 255)
        return;
    nw_replay_request_t req;
    char err[256];
    if (parts != 1) {
        send_error(self, zmq_msg_data(id), id_len, "", "bad-request",
                   "a request is exactly one frame", 0);
        return;
    }
    if (nw_replay_request_parse(zmq_msg_data(body), zmq_msg_size(body), &req, err, sizeof err) !=
        0) {
        send_error(self, zmq_msg_data(id), id_len, req.topic, "bad-request", err, 0);
        return;
    }
    char key[2 * 256 + 1];
    hex(zmq_msg_data(id), id_len, key);
    client_t *c = zhashx_lookup(self->clients, key);
    if (req.type == NW_REPLAY_REQ_CREDIT) {
        /* credit for a stream that already ended is a race, not an error */
        uint64_t *credit = !c || !c->streaming ? NULL
                           : c->has_pending    ? &c->pending.credit
                           : c->cancelled      ? NULL
                                               : &c->credit;
        if (!credit)
            return;
        *credit = *credit + req.credit > CREDIT_CAP ? CREDIT_CAP : *credit + req.credit;
        c->idle_since = uv_now(self->loop);
        if (c->in_flight || c->queued || c->blocked || c->paused)
            return;
        if (c->batch_pos < c->batch_n)
            pump(c);
        else
            enqueue(c);
        return;
    }
    if (req.type == NW_REPLAY_REQ_CANCEL) {
        if (c && c->in_flight) {
            c->cancelled = true;
            c->has_pending = false;
        } else if (c)
            free_stream(c);
        return;
    }
    const char *user = zmq_msg_gets(body, "User-Id");
    if (c && c->in_flight) {
        /* the new stream starts once the thread gives the cursor back */
        c->cancelled = c->has_pending = true;
        c->pending = req;
        c->pending_has_user = user != NULL;
        if (user)
            snprintf(c->pending_user, sizeof c->pending_user, "%s", user);
        return;
    }
    if (c) {
        unqueue(c);
        unpause(c);
        free_batch(c);
        drop_cursor(c);
    } else {
        const char *why = zhashx_size(self->clients) >= NW_REPLAY_MAX_STREAMS ? "too many streams"
                          : budget_bytes(self) >= self->opt.max_bytes
                              ? "the replay memory budget is in use"
                              : NULL;
        if (why) {
            refuse(self, zmq_msg_data(id), id_len, req.topic, why);
            return;
        }
        if (!(c = calloc(1, sizeof *c)) || !(c->account = account_new(self->budget))) {
            free(c);
            send_error(self, zmq_msg_data(id), id_len, req.topic, "busy", "out of memory", 0);
            return;
        }
        c->owner = self;
        memcpy(c->key, key, sizeof key);
        memcpy(c->id, zmq_msg_data(id), id_len);
        c->id_len = id_len;
        if (zhashx_insert(self->clients, c->key, c) != 0) {
            account_unref(c->account);
            free(c);
            return;
        }
    }
    start_stream(c, &req, user);
}

/* Read every pending request: ZMQ_FD only signals the edge. */
static void drain(nw_replay_t *self)
{
    while (!self->closing) {
        int events = 0;
        size_t size = sizeof events;
        if (zmq_getsockopt(self->handle, ZMQ_EVENTS, &events, &size) != 0 ||
            !(events & ZMQ_POLLIN))
            return;
        zmq_msg_t parts[2], extra;
        size_t frames = 0;
        int more = 1;
        zmq_msg_init(&parts[0]);
        zmq_msg_init(&parts[1]);
        zmq_msg_init(&extra);
        while (more) {
            zmq_msg_t *m = frames < 2 ? &parts[frames] : &extra;
            if (zmq_msg_recv(m, self->handle, ZMQ_DONTWAIT) < 0)
                break;
            frames++;
            more = zmq_msg_more(m);
        }
        if (!more)
            handle_request(self, &parts[0], &parts[1], frames - 1);
        zmq_msg_close(&parts[0]);
        zmq_msg_close(&parts[1]);
        zmq_msg_close(&extra);
        if (more)
            return;
    }
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    (void) status;
    (void) events;
    drain(handle->data);
}

/* pump and free_stream delete from the table: walk a copy of its keys */
static void each_client(nw_replay_t *self, void (*fn)(client_t *c))
{
    zlistx_t *keys = zhashx_keys(self->clients);
    for (const char *k = keys ? zlistx_first(keys) : NULL; k; k = zlistx_next(keys)) {
        client_t *c = zhashx_lookup(self->clients, k);
        if (c)
            fn(c);
    }
    zlistx_destroy(&keys);
}

static void retry_one(client_t *c)
{
    if (c->blocked)
        pump(c);
}

static void on_retry(uv_timer_t *timer)
{
    nw_replay_t *self = timer->data;
    each_client(self, retry_one);
    drain(self);
}

/* Idle: a stream that neither sent, nor was granted credit, nor had ZeroMQ write any of
 * its replies for idle_ms is dropped (its cursor, batch and slot); a client left
 * draining goes once ZeroMQ holds nothing of it. */
static void sweep_one(client_t *c)
{
    nw_replay_t *self = c->owner;
    uint64_t now = uv_now(self->loop);
    size_t held = account_bytes(c->account);
    if (held != c->seen_bytes) {
        c->seen_bytes = held;
        c->idle_since = now;
    }
    if (c->draining && held == 0) {
        free_stream(c);
        return;
    }
    if (c->streaming && !c->in_flight && !c->queued &&
        now - c->idle_since >= (uint64_t) self->opt.idle_ms) {
        nw_debug("replay: dropping a stream on '%s' idle for %" PRId64 " ms", c->topic,
                 self->opt.idle_ms);
        self->stats.idle_dropped++;
        /* paused with nothing of its own held: others' replies filled the budget, not
         * this client's; it may ask again later */
        if (c->paused && held == 0)
            send_error(self, c->id, c->id_len, c->topic, "busy",
                       "the replay memory budget is in use", 0);
        free_stream(c);
    }
}

static void on_sweep(uv_timer_t *timer)
{
    nw_replay_t *self = timer->data;
    each_client(self, sweep_one);
    /* Held replies are allocated on pool threads and freed on ZeroMQ's: once replay is
     * idle after holding much, give the arenas' free pages back to the kernel, so a
     * burst of abusive clients does not leave the daemon large after they left. */
    size_t held = budget_bytes(self);
    if (held > self->held_peak)
        self->held_peak = held;
    if (zhashx_size(self->clients) == 0 && held == 0 && self->held_peak >= TRIM_AFTER) {
        self->held_peak = 0;
        malloc_trim(0);
    }
}

/* ZeroMQ wrote or dropped held replies: paused streams may have room again, and
 * draining clients may be done. */
static void wake_one(client_t *c)
{
    if (c->paused && allowance(c) > 0) {
        unpause(c);
        enqueue(c);
    } else if (c->draining && account_bytes(c->account) == 0)
        free_stream(c);
}

static void on_released_async(uv_async_t *async)
{
    nw_replay_t *self = async->data;
    if (self->paused + self->draining > 0)
        each_client(self, wake_one);
}

/* ---------------------------------------------------------------- lifecycle */

zsock_t *nw_replay_socket_new(int send_hwm, int64_t idle_ms, char *errbuf, size_t errlen)
{
    zsock_t *sock = zsock_new(ZMQ_ROUTER);
    if (!sock) {
        snprintf(errbuf, errlen, "cannot create ROUTER socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    /* room for a request a little too large, so it gets a bad-request reply; far larger
     * frames cost the peer its connection */
    zsock_set_maxmsgsize(sock, NW_REPLAY_MAX_REQUEST + 1024);
    zsock_set_sndhwm(sock, send_hwm);
    zsock_set_linger(sock, 0);
    /* ZMTP heartbeats: a peer that answers nothing for idle_ms (stopped, gone without a
     * FIN, or not reading so that our PING waits behind its replies) is disconnected,
     * and ZeroMQ drops what it held for it */
    int ivl = (int) (idle_ms / 4 < 100 ? 100 : idle_ms / 4 > 10000 ? 10000 : idle_ms / 4);
    zsock_set_heartbeat_ivl(sock, ivl);
    zsock_set_heartbeat_timeout(sock, (int) (idle_ms < INT32_MAX ? idle_ms : INT32_MAX));
    return sock;
}

nw_replay_t *nw_replay_new(uv_loop_t *loop, nw_journal_t *journal, zsock_t *router,
                           nw_replay_options_t options, char *errbuf, size_t errlen)
{
    nw_replay_t *self = calloc(1, sizeof *self);
    if (!self || !(self->clients = zhashx_new()) ||
        !(self->budget = calloc(1, sizeof *self->budget))) {
        snprintf(errbuf, errlen, "out of memory");
        goto fail;
    }
    self->opt = options;
    if (self->opt.max_files < 1)
        self->opt.max_files = 1;
    if (self->opt.idle_ms < 1)
        self->opt.idle_ms = 1;
    atomic_init(&self->budget->bytes, 0);
    atomic_init(&self->budget->refs, 1);
    atomic_init(&self->budget->wake, false);
    pthread_mutex_init(&self->budget->lock, NULL);
    zhashx_set_destructor(self->clients, client_free);
    self->loop = loop;
    self->journal = journal;
    self->sock = router;
    self->handle = zsock_resolve(router);
    zsock_set_router_mandatory(router, 1);
    if (uv_poll_init(loop, &self->poll, zsock_fd(router)) != 0 ||
        uv_async_init(loop, &self->released, on_released_async) != 0) {
        snprintf(errbuf, errlen, "cannot poll the replay socket");
        goto fail;
    }
    self->budget->async = &self->released;
    self->poll.data = self->released.data = self;
    uv_unref((uv_handle_t *) &self->released);
    uv_timer_init(loop, &self->retry);
    uv_timer_init(loop, &self->sweep);
    self->retry.data = self->sweep.data = self;
    uv_poll_start(&self->poll, UV_READABLE, on_poll);
    uv_timer_start(&self->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_unref((uv_handle_t *) &self->sweep);
    drain(self);
    return self;
fail:
    zsock_destroy(&router);
    if (self) {
        zhashx_destroy(&self->clients);
        if (self->budget)
            pthread_mutex_destroy(&self->budget->lock);
        free(self->budget);
    }
    free(self);
    return NULL;
}

void nw_replay_set_authorizer(nw_replay_t *self, nw_replay_allowed_fn *allowed, void *arg)
{
    self->allowed = allowed;
    self->allowed_arg = arg;
}

void nw_replay_stats(const nw_replay_t *self, nw_replay_stats_t *out)
{
    *out = self->stats;
    out->bytes_held = budget_bytes(self);
    out->files_open = self->files;
    out->paused = self->paused;
}

static void on_close(uv_handle_t *handle)
{
    nw_replay_t *self = handle->data;
    if (--self->closes_pending == 0) {
        zsock_destroy(&self->sock);
        if (self->reads == 0)
            free(self);
    }
}

void nw_replay_destroy(nw_replay_t **self_p)
{
    nw_replay_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    self->closing = true;
    self->queue_head = self->queue_tail = NULL;
    /* clients with a read in flight are freed by after_read, which sees closing */
    zhashx_set_destructor(self->clients, NULL);
    for (client_t *c = zhashx_first(self->clients); c; c = zhashx_next(self->clients)) {
        if (c->in_flight)
            continue;
        free_batch(c);
        drop_cursor(c);
        account_unref(c->account);
        free(c);
    }
    zhashx_destroy(&self->clients);
    /* replies still queued in ZeroMQ are released later, from its threads */
    pthread_mutex_lock(&self->budget->lock);
    self->budget->async = NULL;
    pthread_mutex_unlock(&self->budget->lock);
    budget_unref(self->budget);
    self->budget = NULL;
    self->closes_pending = 4;
    uv_poll_stop(&self->poll);
    uv_close((uv_handle_t *) &self->poll, on_close);
    uv_close((uv_handle_t *) &self->retry, on_close);
    uv_close((uv_handle_t *) &self->sweep, on_close);
    uv_close((uv_handle_t *) &self->released, on_close);
}
