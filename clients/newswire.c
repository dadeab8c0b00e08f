/*
 * newswire.c: libnewswire, the subscriber side of wire format v1 (see include/newswire.h).
 *
 * Frames enter from one SUB socket; each message is checked in the order cheapest first:
 * frame count, topic frame syntax (the topic plus a terminating '.'), subscription match
 * (ZeroMQ's raw prefix "telecoms." is already whole-level; matching again guards against
 * a publisher that ignores it), decoding by nw_codec, envelope topic against the topic
 * frame, then per-topic (epoch, seq) tracking. Messages leave as
 * nw_message_t wrapping the decoded nw_codec_message_t.
 *
 * With a replay endpoint (a DEALER speaking proto/newswire-v1.md section 8) gaps
 * are filled instead of reported: a topic whose live feed skips seqs is put in a FIFO of
 * topics wanting a stream; its live messages are held meanwhile (bounded: on overflow
 * they are dropped and the range grows, the journal has them). One stream is active at a
 * time; its data replies, byte-identical live messages decoded by the same path, are
 * returned as they come (credit is topped up as they are consumed); at its $end the held
 * messages are settled: duplicates go, a new gap queues the topic again, the rest move to
 * the ready queue that nw_client_recv() empties first. Late joins (since/last) are the
 * same machinery with an open-ended first stream.
 */
#include "newswire.h"
#include "nw_codec.h"
#include "nw_epgm.h"
#include "nw_replay.h"
#include "nw_topic.h"

#include <czmq.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zmq.h>

#define REPLAY_CREDIT 256        /* initial credit; half of it is granted again as used */
#define REPLAY_HOLD_MAX 1024     /* live messages held per topic during a replay */
#define REPLAY_TIMEOUT_MS 5000   /* a stream silent this long is given up (daemon gone) */
#define REPLAY_BUSY_FIRST_MS 100 /* "busy": asked again after this, doubling each time */
#define REPLAY_BUSY_MAX_MS 2000
#define REPLAY_BUSY_TRIES 6 /* then the gap is given up (about 5 s in all) */

enum { JOIN_NONE, JOIN_SINCE, JOIN_LAST };

/* What the arbiter has taken already: keys in a set, oldest first in a FIFO that bounds it. */
typedef struct {
    zhashx_t *set;   /* key -> "" ; keys owned by the hash */
    zlistx_t *order; /* the same keys, oldest first; not owned */
    size_t max;      /* 0: nothing kept */
} dedup_t;

typedef struct {
    char *name;
    char *epoch;   /* NULL while a late join has not learnt it */
    uint64_t last; /* highest seq seen (replay mode: delivered) in epoch */
    /* Replay mode only. */
    zlistx_t *held;    /* live nw_message_t waiting behind a replay, arrival order */
    uint64_t need_to;  /* the replay must reach this seq; 0: up to the head */
    int queued;        /* waiting in the FIFO or the active stream */
    int join;          /* JOIN_: the next stream is a late join */
    uint64_t join_arg; /* since: first seq; last: how many */
    int from_known;    /* last is meaningful before the epoch is known (since) */
    uint64_t lost;     /* given up just before the next one returned: its gap_before */
} topic_state_t;

struct nw_client {
    void *ctx; /* private, so the application's ZeroMQ use is untouched */
    void *sock;
    zhashx_t *subs;   /* subscribed topic -> itself; keys owned by the hash */
    zhashx_t *topics; /* topic -> topic_state_t */
    nw_client_gap_fn *gap_fn;
    void *gap_arg;
    uint64_t received, bad, gaps, duplicates;
    int connected; /* the SUB has an endpoint: too late for CURVE */
    /* CURVE (nw_client_set_curve): applied to each socket before it connects. */
    int curve;
    uint8_t curve_public[32], curve_secret[32], curve_server[32];
    /* Replay mode (replay != NULL). */
    void *replay;          /* DEALER */
    void *monitor;         /* PAIR: the SUB's handshakes (replay mode only) */
    zlistx_t *waiting;     /* topic_state_t wanting a stream, FIFO; not owned */
    zlistx_t *ready;       /* nw_message_t to return before reading sockets */
    topic_state_t *active; /* the topic of the active stream, NULL when none */
    uint64_t active_from;  /* its request's first seq (0 for "last": unknown) */
    uint64_t active_base;  /* active->last when it started: did it progress? */
    int active_join;       /* it is a late join */
    int active_join_kind;  /* its JOIN_ and argument, to ask again after "busy" */
    uint64_t active_join_arg;
    unsigned active_used;    /* data received since credit was last granted */
    int idle_ms;             /* quiet time after live traffic that triggers a probe */
    int64_t probe_due;       /* when the probe is due (0: none armed) */
    int64_t active_deadline; /* the active stream is given up if silent until then */
    int64_t busy_until;      /* after "busy": no new stream before then (0: none) */
    int busy_tries;          /* "busy" answers in a row */
    uint64_t replayed, replay_errors;
    int hwm;      /* nw_client_set_rcvhwm's, for feeds added later; -1: none */
    int idle_set; /* nw_client_set_replay_idle was called: feeds take idle_ms */
    /* Dual feeds (nw_client_add_feed): this client is path 0 and the arbiter; each feed
     * is a whole client of its own (SUB, replay DEALER, per-topic tracking and gap
     * filling) whose messages this one takes once by (epoch, topic, seq) and by id. */
    nw_client_t *arbiter; /* set in a feed: whose gaps it reports; NULL in path 0 */
    nw_client_t **feeds;
    size_t nfeeds;
    size_t next_path; /* where the next round of reading starts (fairness) */
    dedup_t seen_seq, seen_id;
    char error[256];
};

struct nw_message {
    nw_codec_message_t *decoded;
    uint64_t gap_before;
    int epoch_changed;
};

/* What reading one message off the socket came to. */
enum { READ_NONE, READ_MESSAGE, READ_SKIP, READ_BAD, READ_ERROR, READ_HELD };

static int64_t mono_ms(void);

static void message_free(void **item)
{
    nw_message_destroy((nw_message_t **) item);
}

static void client_set_error(nw_client_t *self, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void client_set_error(nw_client_t *self, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->error, sizeof self->error, fmt, ap);
    va_end(ap);
}

static void topic_state_destroy(void **item)
{
    topic_state_t *state = *item;
    if (state) {
        free(state->name);
        free(state->epoch);
        zlistx_destroy(&state->held);
        free(state);
        *item = NULL;
    }
}

static void string_free(void **item)
{
    free(*item);
    *item = NULL;
}

static void dedup_clear(dedup_t *d)
{
    zlistx_destroy(&d->order);
    zhashx_destroy(&d->set);
}

static int dedup_has(const dedup_t *d, const char *key)
{
    return d->set && zhashx_lookup(d->set, key) != NULL;
}

/* Remember key, forgetting the oldest beyond max. -1 when out of memory. */
static int dedup_add(dedup_t *d, const char *key)
{
    if (d->max == 0)
        return 0;
    if (!d->set) {
        if (!(d->set = zhashx_new()) || !(d->order = zlistx_new())) {
            dedup_clear(d);
            return -1;
        }
        zlistx_set_destructor(d->order, string_free);
    }
    if (zhashx_lookup(d->set, key))
        return 0;
    char *copy = strdup(key);
    if (!copy || !zlistx_add_end(d->order, copy)) {
        free(copy);
        return -1;
    }
    zhashx_insert(d->set, key, (void *) "");
    while (zlistx_size(d->order) > d->max) {
        char *oldest = zlistx_detach(d->order, NULL);
        zhashx_delete(d->set, oldest);
        free(oldest);
    }
    return 0;
}

/* Clear key material; volatile so the store is not optimised away before free(). */
static void wipe(void *p, size_t n)
{
    volatile unsigned char *b = p;
    while (n--)
        *b++ = 0;
}

nw_client_t *nw_client_new(void)
{
    nw_client_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->ctx = zmq_ctx_new();
    if (!self->ctx)
        goto fail;
    self->sock = zmq_socket(self->ctx, ZMQ_SUB);
    if (!self->sock)
        goto fail;
    int linger = 0;
    int64_t maxmsg = NW_CLIENT_MAXMSGSIZE;
    if (zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(self->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0)
        goto fail;
    self->subs = zhashx_new();
    self->topics = zhashx_new();
    if (!self->subs || !self->topics)
        goto fail;
    zhashx_set_destructor(self->topics, topic_state_destroy);
    self->hwm = -1;
    self->seen_id.max = NW_CLIENT_DEDUP_WINDOW;
    self->seen_seq.max = NW_CLIENT_DEDUP_WINDOW;
    return self;
fail:
    nw_client_destroy(&self);
    return NULL;
}

void nw_client_destroy(nw_client_t **self_p)
{
    nw_client_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    if (self->monitor) {
        zmq_socket_monitor(self->sock, NULL, 0);
        zmq_close(self->monitor);
    }
    if (self->sock)
        zmq_close(self->sock);
    if (self->replay)
        zmq_close(self->replay);
    zlistx_destroy(&self->waiting);
    zlistx_destroy(&self->ready);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    zhashx_destroy(&self->subs);
    zhashx_destroy(&self->topics);
    for (size_t i = 0; i < self->nfeeds; i++)
        nw_client_destroy(&self->feeds[i]);
    free(self->feeds);
    dedup_clear(&self->seen_seq);
    dedup_clear(&self->seen_id);
    wipe(self->curve_secret, sizeof self->curve_secret);
    free(self);
    *self_p = NULL;
}

int nw_client_set_rcvhwm(nw_client_t *self, int hwm)
{
    if (hwm < 0 || zmq_setsockopt(self->sock, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0) {
        client_set_error(self, "cannot set receive high-water mark %d", hwm);
        return -1;
    }
    self->hwm = hwm;
    for (size_t i = 0; i < self->nfeeds; i++)
        if (nw_client_set_rcvhwm(self->feeds[i], hwm) != 0)
            return -1;
    return 0;
}

void nw_client_set_gap_handler(nw_client_t *self, nw_client_gap_fn *fn, void *arg)
{
    self->gap_fn = fn;
    self->gap_arg = arg;
}

/* The Z85 keys of a zcert file (CZMQ's ZPL text): the public one, and the secret one
 * when secret is not NULL. zconfig directly: zcert_load would quietly prefer a
 * PATH_secret file next to it. */
static int load_cert(nw_client_t *self, const char *path, uint8_t *public_key, uint8_t *secret)
{
    zconfig_t *root = zconfig_load(path);
    const char *pub = root ? zconfig_get(root, "curve/public-key", NULL) : NULL;
    const char *sec = root ? zconfig_get(root, "curve/secret-key", NULL) : NULL;
    int rc = -1;
    if (!root)
        client_set_error(self, "cannot read certificate '%s'", path);
    else if (!pub || strlen(pub) != 40 || !zmq_z85_decode(public_key, pub))
        client_set_error(self, "certificate '%s' has no valid curve/public-key", path);
    else if (secret && (!sec || strlen(sec) != 40 || !zmq_z85_decode(secret, sec)))
        client_set_error(self,
                         "certificate '%s' has no valid curve/secret-key (use the "
                         "_secret file)",
                         path);
    else
        rc = 0;
    zconfig_destroy(&root);
    return rc;
}

static int apply_curve(nw_client_t *self, void *sock)
{
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, self->curve_server, 32) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, self->curve_public, 32) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, self->curve_secret, 32) != 0) {
        client_set_error(self, "cannot set CURVE keys: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

int nw_client_set_curve(nw_client_t *self, const char *client_cert_path,
                        const char *server_public_key)
{
    if (self->connected || self->replay || self->nfeeds) {
        client_set_error(self, "CURVE must be set before connecting");
        return -1;
    }
    if (!client_cert_path || !server_public_key) {
        client_set_error(self, "CURVE needs a client certificate and the server's key");
        return -1;
    }
    if (!zmq_has("curve")) {
        client_set_error(self, "this libzmq has no CURVE support");
        return -1;
    }
    if (load_cert(self, client_cert_path, self->curve_public, self->curve_secret) != 0)
        goto fail;
    /* A file by that name wins: a Z85 key may itself contain '/' or '.'. */
    struct stat st;
    if (stat(server_public_key, &st) == 0) {
        if (load_cert(self, server_public_key, self->curve_server, NULL) != 0)
            goto fail;
    } else if (strlen(server_public_key) != 40 ||
               !zmq_z85_decode(self->curve_server, server_public_key)) {
        client_set_error(self,
                         "server key '%s' is neither a 40-character Z85 key nor a "
                         "certificate file",
                         server_public_key);
        goto fail;
    }
    if (apply_curve(self, self->sock) != 0)
        goto fail;
    self->curve = 1;
    return 0;
fail:
    wipe(self->curve_secret, sizeof self->curve_secret);
    return -1;
}

int nw_client_connect(nw_client_t *self, const char *endpoint)
{
    /* Multicast: no CURVE on PGM (libzmq would connect in clear text without a word),
     * and the interface resolved here, never by OpenPGM (see nw_epgm.h). */
    char resolved[256], reason[300];
    if (endpoint && nw_epgm_is(endpoint)) {
        if (self->curve) {
            client_set_error(self,
                             "cannot connect to '%s': multicast has no CURVE, and this "
                             "client was given keys",
                             endpoint);
            return -1;
        }
        if (nw_epgm_resolve(endpoint, resolved, sizeof resolved, reason, sizeof reason) != 0) {
            client_set_error(self, "cannot connect to %s", reason);
            return -1;
        }
        endpoint = resolved;
    }
    self->connected = 1; /* even a failed attempt may have left an endpoint */
    if (!endpoint || zmq_connect(self->sock, endpoint) != 0) {
        client_set_error(self, "cannot connect to '%s': %s", endpoint ? endpoint : "(null)",
                         zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

/* The grammar is proto/nw_topic's; the public header spells its limit for callers. */
_Static_assert(NW_CLIENT_TOPIC_MAX == NW_TOPIC_MAX, "one topic limit");

int nw_client_topic_valid(const char *topic)
{
    return topic && nw_topic_valid(topic, strlen(topic));
}

int nw_client_topic_normalize(const char *subject, char *out, size_t outlen)
{
    return nw_topic_normalize(subject, out, outlen);
}

int nw_client_subscribe(nw_client_t *self, const char *topic)
{
    if (!topic || (*topic && !nw_client_topic_valid(topic))) {
        client_set_error(self, "not a topic name: '%s'", topic ? topic : "(null)");
        return -1;
    }
    if (zhashx_lookup(self->subs, topic))
        return 0; /* ZeroMQ counts subscriptions; keep one per topic */
    char raw[NW_TOPIC_FRAME_MAX + 1];
    if (zmq_setsockopt(self->sock, ZMQ_SUBSCRIBE, raw,
                       nw_topic_terminate(topic, strlen(topic), raw)) != 0) {
        client_set_error(self, "cannot subscribe to '%s': %s", topic, zmq_strerror(zmq_errno()));
        return -1;
    }
    zhashx_insert(self->subs, topic, (void *) "");
    for (size_t i = 0; i < self->nfeeds; i++)
        if (nw_client_subscribe(self->feeds[i], topic) != 0) {
            client_set_error(self, "%s", self->feeds[i]->error);
            return -1;
        }
    return 0;
}

int nw_client_unsubscribe(nw_client_t *self, const char *topic)
{
    if (!topic || !zhashx_lookup(self->subs, topic)) {
        client_set_error(self, "not subscribed to '%s'", topic ? topic : "(null)");
        return -1;
    }
    char raw[NW_TOPIC_FRAME_MAX + 1];
    zmq_setsockopt(self->sock, ZMQ_UNSUBSCRIBE, raw,
                   nw_topic_terminate(topic, strlen(topic), raw));
    zhashx_delete(self->subs, topic);
    for (size_t i = 0; i < self->nfeeds; i++)
        nw_client_unsubscribe(self->feeds[i], topic);
    return 0;
}

/* The protocol's matching rule against every subscription (section 5). */
static int client_matches(nw_client_t *self, const char *topic)
{
    for (void *item = zhashx_first(self->subs); item; item = zhashx_next(self->subs))
        if (nw_topic_matches(zhashx_cursor(self->subs), topic))
            return 1;
    return 0;
}

/* A topic's tracking state; epoch may be NULL (a late join learns it later). */
static topic_state_t *topic_state_new(nw_client_t *self, const char *topic, const char *epoch)
{
    topic_state_t *state = calloc(1, sizeof *state);
    if (!state || !(state->name = strdup(topic)) || (epoch && !(state->epoch = strdup(epoch))) ||
        !(state->held = zlistx_new())) {
        topic_state_destroy((void **) &state);
        client_set_error(self, "out of memory");
        return NULL;
    }
    zlistx_set_destructor(state->held, message_free);
    zhashx_insert(self->topics, topic, state);
    return state;
}

static int replay_track(nw_client_t *self, topic_state_t *state, nw_message_t *msg);

/* The arbiter's key of one message: (epoch, topic, seq). */
static void seq_key(char *key, size_t len, const char *epoch, const char *topic, uint64_t seq)
{
    snprintf(key, len, "%s/%s/%llu", epoch, topic, (unsigned long long) seq);
}
#define SEQ_KEY_MAX (NW_TOPIC_MAX + 96)

/* Seqs first..last of topic in epoch never reached path p: counted and reported by the
 * client the application holds. With dual feeds, the seqs another path delivered are
 * no gap; only what no path delivered is (a range longer than the arbiter remembers is
 * reported whole). Another origin's path has another epoch: its deliveries cannot be
 * matched by seq, so a gap on one origin is reported even when the other filled it. */
static void client_gap(nw_client_t *p, const char *topic, const char *epoch, uint64_t first,
                       uint64_t last)
{
    nw_client_t *top = p->arbiter ? p->arbiter : p;
    if (top->nfeeds == 0 || last - first >= top->seen_seq.max) {
        top->gaps += last - first + 1;
        if (top->gap_fn)
            top->gap_fn(top, topic, epoch, first, last, top->gap_arg);
        return;
    }
    uint64_t run = 0; /* start of the current run of missing seqs, 0: none */
    for (uint64_t seq = first;; seq++) {
        char key[SEQ_KEY_MAX];
        int missing = 0;
        if (seq <= last) {
            seq_key(key, sizeof key, epoch, topic, seq);
            missing = !dedup_has(&top->seen_seq, key);
        }
        if (missing && !run)
            run = seq;
        if (!missing && run) {
            top->gaps += seq - run;
            if (top->gap_fn)
                top->gap_fn(top, topic, epoch, run, seq - 1, top->gap_arg);
            run = 0;
        }
        if (seq >= last)
            break;
    }
    if (run) {
        top->gaps += last - run + 1;
        if (top->gap_fn)
            top->gap_fn(top, topic, epoch, run, last, top->gap_arg);
    }
}

/* Sequence bookkeeping; READ_SKIP for a duplicate (or a message held for a replay). */
static int client_track(nw_client_t *self, nw_message_t *msg)
{
    const nw_envelope_t *env = &msg->decoded->env;
    topic_state_t *state = zhashx_lookup(self->topics, env->topic);
    if (!state) {
        /* First message on a topic: whatever came before we were not subscribed for. */
        state = topic_state_new(self, env->topic, env->epoch);
        if (!state)
            return READ_ERROR;
        state->last = env->seq;
        return READ_MESSAGE;
    }
    if (self->replay)
        return replay_track(self, state, msg);
    if (strcmp(state->epoch, env->epoch) != 0) {
        char *epoch = strdup(env->epoch);
        if (!epoch) {
            client_set_error(self, "out of memory");
            return READ_ERROR;
        }
        free(state->epoch);
        state->epoch = epoch;
        state->last = env->seq;
        msg->epoch_changed = 1;
        return READ_MESSAGE;
    }
    if (env->seq <= state->last) {
        self->duplicates++;
        return READ_SKIP;
    }
    if (env->seq > state->last + 1) {
        msg->gap_before = env->seq - state->last - 1;
        client_gap(self, env->topic, env->epoch, state->last + 1, env->seq - 1);
    }
    state->last = env->seq;
    return READ_MESSAGE;
}

/* Check and decode the two frames of one message; live ones must match a subscription. */
static int client_decode(nw_client_t *self, zmq_msg_t *frames, int live, nw_message_t **out)
{
    char topic[NW_TOPIC_MAX + 1], why[64];
    if (nw_topic_unframe(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), topic, why,
                         sizeof why) != 0) {
        client_set_error(self, "%s", why);
        return READ_BAD;
    }
    if (live && !client_matches(self, topic))
        return READ_SKIP;

    char reason[200] = "";
    nw_message_t *msg = calloc(1, sizeof *msg);
    if (!msg) {
        client_set_error(self, "out of memory");
        return READ_ERROR;
    }
    msg->decoded = nw_codec_message_decode(zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]),
                                           reason, sizeof reason);
    if (!msg->decoded) {
        client_set_error(self, "undecodable message on '%s': %s", topic, reason);
        goto bad;
    }
    const nw_envelope_t *env = &msg->decoded->env;
    if (msg->decoded->v != NW_PROTO_VERSION) {
        client_set_error(self, "message on '%s' has version %llu, want %d", topic,
                         (unsigned long long) msg->decoded->v, NW_PROTO_VERSION);
        goto bad;
    }
    if (!env->topic || strcmp(env->topic, topic) != 0) {
        client_set_error(self, "topic frame '%s.' differs from topic key", topic);
        goto bad;
    }
    if (env->seq == 0 || !env->epoch) {
        client_set_error(self, "message on '%s' lacks seq or epoch", topic);
        goto bad;
    }
    *out = msg;
    return READ_MESSAGE;
bad:
    nw_message_destroy(&msg);
    return READ_BAD;
}

/* A live message: decoded, then tracked. */
static int client_accept(nw_client_t *self, zmq_msg_t *frames, nw_message_t **out)
{
    nw_message_t *msg = NULL;
    int rc = client_decode(self, frames, 1, &msg);
    if (rc != READ_MESSAGE)
        return rc;
    if (self->replay && self->idle_ms > 0)
        self->probe_due = mono_ms() + self->idle_ms;
    rc = client_track(self, msg);
    if (rc == READ_HELD)
        return READ_SKIP; /* msg belongs to the topic's held list now */
    if (rc != READ_MESSAGE) {
        nw_message_destroy(&msg);
        return rc;
    }
    *out = msg;
    return READ_MESSAGE;
}

/* ---- replay: gap filling and late joins ---------------------------------------- */

static int replay_send(nw_client_t *self, msgpack_sbuffer *buf)
{
    if (zmq_send(self->replay, buf->data, buf->size, ZMQ_DONTWAIT) < 0) {
        client_set_error(self, "cannot send a replay request: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

/* One request of nw_replay's: a replay (from, or the newest last_n, up to to when > 0)
 * of state's topic, a credit, or a cancel (type and credit 0). */
static int replay_request(nw_client_t *self, nw_replay_type_t type, const topic_state_t *state,
                          uint64_t from, uint64_t to, uint64_t last_n, unsigned credit)
{
    nw_replay_request_t req = {.type = type,
                               .credit = credit,
                               .has_to = to > 0,
                               .to = to,
                               .has_last = last_n > 0,
                               .last = last_n,
                               .has_from = last_n == 0,
                               .from = from};
    if (type == NW_REPLAY_REQ_REPLAY)
        snprintf(req.topic, sizeof req.topic, "%s", state->name);
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    char why[128];
    int rc = nw_replay_request_pack(&req, &buf, why, sizeof why);
    if (rc != 0)
        client_set_error(self, "cannot pack a replay request: %s", why);
    else
        rc = replay_send(self, &buf);
    msgpack_sbuffer_destroy(&buf);
    return rc;
}

static void replay_enqueue(nw_client_t *self, topic_state_t *state)
{
    if (!state->queued) {
        state->queued = 1;
        zlistx_add_end(self->waiting, state);
    }
}

/* Seqs first..last of state are given up: count and report them. */
static void replay_lost(nw_client_t *self, topic_state_t *state, uint64_t first, uint64_t last)
{
    if (last < first)
        return;
    client_gap(self, state->name, state->epoch ? state->epoch : "", first, last);
}

/* The ready queue takes msg as the next of its topic. */
static int replay_ready(nw_client_t *self, topic_state_t *state, nw_message_t *msg)
{
    state->last = msg->decoded->env.seq;
    if (!zlistx_add_end(self->ready, msg)) {
        nw_message_destroy(&msg);
        client_set_error(self, "out of memory");
        return -1;
    }
    return 0;
}

/* After a stream of state ended: move held messages to the ready queue in order until
 * one is missing; then ask again (progress: the stream gave something, so asking again
 * can too) or give the missing ones up. */
static void replay_settle(nw_client_t *self, topic_state_t *state, int progress)
{
    for (;;) {
        nw_message_t *head = zlistx_first(state->held);
        const nw_envelope_t *env = head ? &head->decoded->env : NULL;
        if (env && state->epoch && strcmp(env->epoch, state->epoch) != 0) {
            /* The publisher lost its history while we held: start over from here. */
            char *epoch = strdup(env->epoch);
            if (!epoch)
                break;
            free(state->epoch);
            state->epoch = epoch;
            state->last = env->seq - 1;
            head->epoch_changed = 1;
        }
        if (env && !state->epoch) {
            /* A late join that replayed nothing: the live feed tells the epoch. */
            if (!(state->epoch = strdup(env->epoch)))
                break;
            if (!state->from_known)
                state->last = env->seq - 1;
        }
        if (env && env->seq <= state->last) {
            self->duplicates++;
            zlistx_delete(state->held, zlistx_cursor(state->held));
            continue;
        }
        uint64_t want = env ? env->seq - 1 : state->need_to;
        if (want > state->last) {
            if (progress) {
                state->need_to = want;
                state->queued = 0;
                replay_enqueue(self, state);
                return;
            }
            replay_lost(self, state, state->last + 1, want);
            state->lost += want - state->last;
            state->last = want;
        }
        if (!env)
            break;
        head = zlistx_detach_cur(state->held);
        head->gap_before = state->lost;
        state->lost = 0;
        if (replay_ready(self, state, head) != 0)
            break;
    }
    state->need_to = 0;
    state->queued = 0;
}

/* Start the next stream when none is active. */
static void replay_pump(nw_client_t *self)
{
    if (self->busy_until && mono_ms() < self->busy_until)
        return;
    self->busy_until = 0;
    while (!self->active && zlistx_size(self->waiting) > 0) {
        topic_state_t *state = zlistx_first(self->waiting);
        zlistx_delete(self->waiting, zlistx_cursor(self->waiting));
        uint64_t from = state->last + 1, to = state->need_to, last_n = 0;
        self->active_join = state->join != JOIN_NONE;
        self->active_join_kind = state->join;
        self->active_join_arg = state->join_arg;
        if (state->join == JOIN_SINCE)
            from = state->join_arg, to = 0;
        else if (state->join == JOIN_LAST)
            from = 0, to = 0, last_n = state->join_arg;
        state->join = JOIN_NONE;
        if (replay_request(self, NW_REPLAY_REQ_REPLAY, state, from, to, last_n, REPLAY_CREDIT) !=
            0) {
            replay_settle(self, state, 0);
            continue;
        }
        self->active = state;
        self->active_deadline = mono_ms() + REPLAY_TIMEOUT_MS;
        self->active_from = from;
        self->active_base = state->last;
        self->active_used = 0;
    }
}

/* Forget a topic's replay: its history was lost (epoch change). */
static void replay_reset(nw_client_t *self, topic_state_t *state)
{
    zlistx_purge(state->held);
    state->need_to = 0;
    state->join = JOIN_NONE;
    if (self->active == state) {
        replay_request(self, NW_REPLAY_REQ_CANCEL, NULL, 0, 0, 0, 0);
        self->active = NULL;
    } else if (state->queued) {
        void *handle = zlistx_find(self->waiting, state);
        if (handle)
            zlistx_delete(self->waiting, handle);
    }
    state->queued = 0;
}

/* A live message on a known topic, replay mode: deliver, hold, or start a replay. */
static int replay_track(nw_client_t *self, topic_state_t *state, nw_message_t *msg)
{
    const nw_envelope_t *env = &msg->decoded->env;
    if (state->epoch && strcmp(state->epoch, env->epoch) != 0) {
        char *epoch = strdup(env->epoch);
        if (!epoch) {
            client_set_error(self, "out of memory");
            return READ_ERROR;
        }
        replay_reset(self, state);
        free(state->epoch);
        state->epoch = epoch;
        state->last = env->seq;
        msg->epoch_changed = 1;
        return READ_MESSAGE;
    }
    if (state->epoch && env->seq <= state->last) {
        self->duplicates++;
        return READ_SKIP;
    }
    if (!state->queued && state->epoch && env->seq == state->last + 1) {
        state->last = env->seq;
        return READ_MESSAGE;
    }
    if (!state->queued) {
        if (!state->epoch) {
            /* A late join whose replay gave up without telling anything. */
            state->epoch = strdup(env->epoch);
            state->last = env->seq;
            return state->epoch ? READ_MESSAGE : READ_ERROR;
        }
        state->need_to = env->seq - 1;
        replay_enqueue(self, state);
    }
    if (zlistx_size(state->held) >= REPLAY_HOLD_MAX) {
        /* The journal has them all: ask it for more instead of holding more. */
        zlistx_purge(state->held);
        if (env->seq > state->need_to)
            state->need_to = env->seq;
        return READ_SKIP;
    }
    if (!zlistx_add_end(state->held, msg)) {
        client_set_error(self, "out of memory");
        return READ_ERROR;
    }
    return READ_HELD;
}

/* "$end" or "$error" of the active stream. */
static int replay_control(nw_client_t *self, int is_error, const void *data, size_t len)
{
    if (len > NW_REPLAY_MAX_REPLY) {
        client_set_error(self, "replay reply of %zu bytes", len);
        return READ_BAD;
    }
    nw_replay_end_t end = {.from = 0};
    nw_replay_error_t error = {.oldest = 0};
    char why[128];
    if ((is_error ? nw_replay_error_parse(data, len, &error, why, sizeof why)
                  : nw_replay_end_parse(data, len, &end, why, sizeof why)) != 0) {
        client_set_error(self, "undecodable replay %s: %s", is_error ? "error" : "end", why);
        return READ_BAD;
    }
    const char *topic = is_error ? error.topic : end.topic, *code = error.code;
    const char *reason = error.reason;
    uint64_t from = is_error ? 0 : end.from, oldest = is_error ? error.oldest : 0;

    topic_state_t *state = self->active;
    /* A cancelled stream's last words, or a stranger's: not ours to act on. */
    if (!state || strcmp(topic, state->name) != 0 ||
        (!is_error && self->active_from && from != self->active_from))
        return READ_SKIP;
    self->active = NULL;
    int progress = state->last > self->active_base || self->active_join;
    if (is_error && strcmp(code, "busy") == 0 && self->busy_tries < REPLAY_BUSY_TRIES) {
        /* The daemon's replay is full for now: ask again later, backing off, with the
         * topic first in line; its live messages stay held meanwhile. */
        int64_t wait = REPLAY_BUSY_FIRST_MS << self->busy_tries;
        self->busy_tries++;
        self->busy_until = mono_ms() + (wait < REPLAY_BUSY_MAX_MS ? wait : REPLAY_BUSY_MAX_MS);
        state->queued = 1;
        state->join = self->active_join_kind;
        state->join_arg = self->active_join_arg;
        zlistx_add_start(self->waiting, state);
        return READ_SKIP;
    }
    if (is_error) {
        self->busy_tries = 0;
        self->replay_errors++;
        client_set_error(self, "replay of '%s' failed: %s: %s", topic, code, reason);
        progress = 0;
        if (strcmp(code, "retention") == 0 && oldest > state->last + 1) {
            /* Older ones are gone for good, newer ones can still come. */
            replay_lost(self, state, state->last + 1, oldest - 1);
            state->lost += oldest - 1 - state->last;
            state->last = oldest - 1;
            progress = 1;
        }
    }
    if (!is_error)
        self->busy_tries = 0;
    replay_settle(self, state, progress);
    replay_pump(self);
    return READ_SKIP;
}

/* One reply on the DEALER: data of the active stream, or its end or error. */
static int replay_reply(nw_client_t *self, zmq_msg_t *frames, nw_message_t **out)
{
    const char *f0 = zmq_msg_data(&frames[0]);
    size_t f0len = zmq_msg_size(&frames[0]);
    nw_replay_kind_t kind = nw_replay_reply_kind(f0, f0len);
    if (kind != NW_REPLAY_DATA)
        return replay_control(self, kind == NW_REPLAY_ERROR, zmq_msg_data(&frames[1]),
                              zmq_msg_size(&frames[1]));
    nw_message_t *msg = NULL;
    int rc = client_decode(self, frames, 0, &msg);
    if (rc != READ_MESSAGE)
        return rc;
    self->active_deadline = mono_ms() + REPLAY_TIMEOUT_MS;
    const nw_envelope_t *env = &msg->decoded->env;
    topic_state_t *state = self->active;
    if (state && ++self->active_used >= REPLAY_CREDIT / 2) {
        replay_request(self, NW_REPLAY_REQ_CREDIT, NULL, 0, 0, 0, REPLAY_CREDIT / 2);
        self->active_used = 0;
    }
    if (!state || strcmp(env->topic, state->name) != 0 ||
        (state->epoch && strcmp(env->epoch, state->epoch) != 0) ||
        (state->epoch && env->seq <= state->last)) {
        nw_message_destroy(&msg); /* a cancelled stream's, an old epoch's, or a duplicate */
        return READ_SKIP;
    }
    if (!state->epoch) {
        if (!(state->epoch = strdup(env->epoch))) {
            nw_message_destroy(&msg);
            client_set_error(self, "out of memory");
            return READ_ERROR;
        }
        if (self->active_from == 0) /* "last N": the first one starts the topic */
            state->last = env->seq - 1;
    }
    if (env->seq > state->last + 1) {
        /* The journal itself lacks these. */
        state->lost += env->seq - state->last - 1;
        replay_lost(self, state, state->last + 1, env->seq - 1);
    }
    msg->gap_before = state->lost;
    state->lost = 0;
    state->last = env->seq;
    self->replayed++;
    *out = msg;
    return READ_MESSAGE;
}

/* The active stream said nothing for too long: the daemon is gone, lost the request, or
 * dropped a stream left without credit while the application was away. One that gave
 * something is asked again; one that gave nothing gives its gap up, so the topic never
 * stalls behind a dead endpoint. */
static void replay_timeout(nw_client_t *self)
{
    topic_state_t *state = self->active;
    int progress = state->last > self->active_base;
    replay_request(self, NW_REPLAY_REQ_CANCEL, NULL, 0, 0, 0, 0);
    self->active = NULL;
    if (!progress) {
        self->replay_errors++;
        client_set_error(self, "replay of '%s' timed out", state->name);
    }
    replay_settle(self, state, progress);
}

/* A quiet spell after live traffic: the last messages of a burst may have been dropped
 * with nothing after them to reveal the gap, so ask the journal for anything newer. */
static void replay_probe(nw_client_t *self)
{
    self->probe_due = 0;
    for (topic_state_t *state = zhashx_first(self->topics); state;
         state = zhashx_next(self->topics)) {
        if (state->epoch && !state->queued) {
            state->need_to = 0;
            replay_enqueue(self, state);
        }
    }
}

void nw_client_set_replay_idle(nw_client_t *self, int idle_ms)
{
    self->idle_ms = idle_ms > 0 ? idle_ms : 0;
    self->probe_due = 0;
    self->idle_set = 1;
    for (size_t i = 0; i < self->nfeeds; i++)
        nw_client_set_replay_idle(self->feeds[i], idle_ms);
}

int nw_client_set_replay(nw_client_t *self, const char *endpoint)
{
    if (self->replay) {
        client_set_error(self, "a replay endpoint is set already");
        return -1;
    }
    int linger = 0;
    int64_t maxmsg = NW_CLIENT_MAXMSGSIZE;
    self->replay = zmq_socket(self->ctx, ZMQ_DEALER);
    self->waiting = zlistx_new();
    self->ready = zlistx_new();
    if (!self->replay || !self->waiting || !self->ready ||
        zmq_setsockopt(self->replay, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(self->replay, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0 ||
        (self->curve && apply_curve(self, self->replay) != 0) || !endpoint ||
        zmq_connect(self->replay, endpoint) != 0) {
        client_set_error(self, "cannot connect replay to '%s': %s",
                         endpoint ? endpoint : "(null)", zmq_strerror(zmq_errno()));
        goto fail;
    }
    /* What the publisher sent while the live socket was away (a restart, a link cut)
     * has no later message to reveal it when nothing follows; so each handshake arms
     * the probe, as live traffic does. */
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://nw-client-monitor-%p", (void *) self);
    if (zmq_socket_monitor(self->sock, mon, ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0 ||
        !(self->monitor = zmq_socket(self->ctx, ZMQ_PAIR)) ||
        zmq_setsockopt(self->monitor, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_connect(self->monitor, mon) != 0) {
        client_set_error(self, "cannot monitor the live socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    zlistx_set_destructor(self->ready, message_free);
    self->idle_ms = NW_CLIENT_REPLAY_IDLE_MS;
    return 0;
fail:
    if (self->monitor) {
        zmq_socket_monitor(self->sock, NULL, 0);
        zmq_close(self->monitor);
    }
    self->monitor = NULL;
    if (self->replay)
        zmq_close(self->replay);
    self->replay = NULL;
    zlistx_destroy(&self->waiting);
    zlistx_destroy(&self->ready);
    return -1;
}

static int client_join(nw_client_t *self, const char *topic, int join, uint64_t arg)
{
    if (!self->replay) {
        client_set_error(self, "no replay endpoint set");
        return -1;
    }
    if (!nw_client_topic_valid(topic) || arg == 0) {
        client_set_error(self, "cannot join '%s' at %llu", topic ? topic : "(null)",
                         (unsigned long long) arg);
        return -1;
    }
    if (zhashx_lookup(self->topics, topic)) {
        client_set_error(self, "'%s' is being received already", topic);
        return -1;
    }
    /* Live first: what the replay does not reach yet is held, not missed. */
    if (nw_client_subscribe(self, topic) != 0)
        return -1;
    topic_state_t *state = topic_state_new(self, topic, NULL);
    if (!state)
        return -1;
    state->join = join;
    state->join_arg = arg;
    if (join == JOIN_SINCE) {
        state->last = arg - 1;
        state->from_known = 1;
    }
    replay_enqueue(self, state);
    return 0;
}

/* A late join on this client and on each feed with a replay endpoint of its own. */
static int client_join_all(nw_client_t *self, const char *topic, int join, uint64_t arg)
{
    if (client_join(self, topic, join, arg) != 0)
        return -1;
    for (size_t i = 0; i < self->nfeeds; i++) {
        if (self->feeds[i]->replay && client_join(self->feeds[i], topic, join, arg) != 0) {
            client_set_error(self, "%s", self->feeds[i]->error);
            return -1;
        }
    }
    return 0;
}

int nw_client_since(nw_client_t *self, const char *topic, uint64_t from_seq)
{
    return client_join_all(self, topic, JOIN_SINCE, from_seq);
}

int nw_client_last(nw_client_t *self, const char *topic, uint64_t n)
{
    return client_join_all(self, topic, JOIN_LAST, n);
}

/* Read one whole multipart message without waiting, from the SUB (live) or the DEALER. */
static int client_read(nw_client_t *self, void *sock, nw_message_t **out)
{
    zmq_msg_t frames[2];
    size_t parts = 0;
    int more = 1, rc = READ_NONE;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            if (zmq_errno() == EAGAIN && parts == 0)
                return READ_NONE;
            client_set_error(self, "receive failed: %s", zmq_strerror(zmq_errno()));
            rc = READ_ERROR;
            goto done;
        }
        more = zmq_msg_more(&part);
        if (parts < 2)
            frames[parts] = part; /* moved: closed below */
        else
            zmq_msg_close(&part);
        parts++;
    }
    if (parts != 2) {
        client_set_error(self, "message of %zu frame%s, want 2", parts, parts == 1 ? "" : "s");
        rc = READ_BAD;
    } else if (sock == self->sock)
        rc = client_accept(self, frames, out);
    else
        rc = replay_reply(self, frames, out);
done:
    for (size_t i = 0; i < parts && i < 2; i++)
        zmq_msg_close(&frames[i]);
    return rc;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One path's work that needs no waiting: a message ready or read, or a timer that fell
 * due handled (READ_SKIP); READ_NONE when there is nothing to do until its sockets or
 * next timer (client_due) say so. */
/* Each handshake of the live socket (the first, or one after a reconnection) arms the
 * probe: the subscription it carries takes effect at the publisher only after it. */
static void client_monitor(nw_client_t *self)
{
    for (;;) {
        zmq_msg_t ev;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, self->monitor, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        uint16_t event = 0;
        if (zmq_msg_size(&ev) >= 2)
            memcpy(&event, zmq_msg_data(&ev), 2);
        int more = zmq_msg_more(&ev);
        zmq_msg_close(&ev);
        while (more) { /* the endpoint frame */
            zmq_msg_init(&ev);
            more = zmq_msg_recv(&ev, self->monitor, 0) >= 0 && zmq_msg_more(&ev);
            zmq_msg_close(&ev);
        }
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED && self->idle_ms > 0)
            self->probe_due = mono_ms() + self->idle_ms;
    }
}

static int client_step(nw_client_t *self, nw_message_t **msg)
{
    int rc = READ_NONE;
    if (self->replay) {
        client_monitor(self);
        replay_pump(self);
        if ((*msg = zlistx_detach(self->ready, NULL)) != NULL)
            return READ_MESSAGE;
        rc = client_read(self, self->replay, msg);
    }
    if (rc == READ_NONE)
        rc = client_read(self, self->sock, msg);
    if (rc != READ_NONE)
        return rc;
    int64_t now = mono_ms();
    if (self->active && self->active_deadline <= now) {
        replay_timeout(self);
        return READ_SKIP;
    }
    if (self->busy_until && !self->active && self->busy_until <= now)
        return READ_SKIP; /* replay_pump asks again */
    if (self->probe_due && !self->active && zlistx_size(self->waiting) == 0 &&
        self->probe_due <= now) {
        replay_probe(self);
        return READ_SKIP;
    }
    return READ_NONE;
}

/* When this path's next timer falls due (-1: none). */
static int64_t client_due(const nw_client_t *self)
{
    int64_t due = -1;
    if (self->active)
        due = self->active_deadline;
    if (self->busy_until && !self->active && (due < 0 || self->busy_until < due))
        due = self->busy_until;
    if (self->probe_due && !self->active && zlistx_size(self->waiting) == 0 &&
        (due < 0 || self->probe_due < due))
        due = self->probe_due;
    return due;
}

/* Path i: 0 is this client itself, then its feeds. */
static nw_client_t *client_path(nw_client_t *self, size_t i)
{
    return i == 0 ? self : self->feeds[i - 1];
}

/* Dual feeds: 1 when msg is the first of its (epoch, topic, seq) and, within the window,
 * of its article id; 0 for one another path (or another origin) delivered; -1 when out
 * of memory. */
static int arbiter_take(nw_client_t *self, const nw_message_t *msg)
{
    const nw_envelope_t *env = &msg->decoded->env;
    char key[SEQ_KEY_MAX];
    seq_key(key, sizeof key, env->epoch, env->topic, env->seq);
    if (dedup_has(&self->seen_seq, key))
        return 0;
    int again = env->id && dedup_has(&self->seen_id, env->id);
    if (dedup_add(&self->seen_seq, key) != 0 ||
        (!again && env->id && dedup_add(&self->seen_id, env->id) != 0)) {
        client_set_error(self, "out of memory");
        return -1;
    }
    return !again;
}

int nw_client_recv(nw_client_t *self, nw_message_t **msg, int timeout_ms)
{
    int64_t deadline = timeout_ms >= 0 ? mono_ms() + timeout_ms : -1;
    size_t paths = 1 + self->nfeeds;
    *msg = NULL;
    for (;;) {
        int busy = 0;
        for (size_t k = 0; k < paths; k++) {
            /* Round robin, so that a busy path never starves the other one. */
            size_t i = (self->next_path + k) % paths;
            nw_client_t *path = client_path(self, i);
            int rc = client_step(path, msg);
            if (rc == READ_NONE)
                continue;
            busy = 1;
            if (path != self && (rc == READ_BAD || rc == READ_ERROR))
                client_set_error(self, "%s", path->error);
            if (rc == READ_MESSAGE && self->nfeeds > 0) {
                int take = arbiter_take(self, *msg);
                if (take <= 0) {
                    nw_message_destroy(msg);
                    if (take < 0)
                        return NW_RECV_ERROR;
                    self->duplicates++;
                    continue;
                }
            }
            if (rc == READ_MESSAGE) {
                self->next_path = (i + 1) % paths;
                self->received++;
                return NW_RECV_MESSAGE;
            }
            if (rc == READ_BAD) {
                self->next_path = (i + 1) % paths;
                self->bad++;
                return NW_RECV_BAD;
            }
            if (rc == READ_ERROR)
                return NW_RECV_ERROR;
        }
        if (busy)
            continue;
        long wait = -1;
        int64_t now = mono_ms();
        if (deadline >= 0) {
            wait = (long) (deadline - now);
            if (wait <= 0)
                return NW_RECV_TIMEOUT;
        }
        zmq_pollitem_t items[3 * (1 + NW_CLIENT_FEEDS_MAX)];
        int nitems = 0;
        for (size_t i = 0; i < paths; i++) {
            nw_client_t *path = client_path(self, i);
            int64_t due = client_due(path);
            if (due >= 0) {
                long until = due > now ? (long) (due - now) : 0;
                if (wait < 0 || until < wait)
                    wait = until;
            }
            items[nitems++] = (zmq_pollitem_t) {.socket = path->sock, .events = ZMQ_POLLIN};
            if (path->replay)
                items[nitems++] = (zmq_pollitem_t) {.socket = path->replay, .events = ZMQ_POLLIN};
            if (path->monitor)
                items[nitems++] = (zmq_pollitem_t) {.socket = path->monitor,
                                                    .events = ZMQ_POLLIN};
        }
        int n = zmq_poll(items, nitems, wait);
        if (n < 0) {
            client_set_error(self, "%s",
                             zmq_errno() == EINTR ? "interrupted" : zmq_strerror(zmq_errno()));
            return NW_RECV_ERROR;
        }
        if (n == 0 && deadline >= 0 && mono_ms() >= deadline)
            return NW_RECV_TIMEOUT;
    }
}

/* Another path: a client of its own set up as this one is (keys, queue limit,
 * subscriptions, replay idle time), whose gaps are this one's to report. */
int nw_client_add_feed(nw_client_t *self, const char *endpoint, const char *replay_endpoint)
{
    if (self->arbiter) {
        client_set_error(self, "a feed has no feeds of its own");
        return -1;
    }
    if (self->nfeeds >= NW_CLIENT_FEEDS_MAX) {
        client_set_error(self, "at most %d feeds besides the client's own", NW_CLIENT_FEEDS_MAX);
        return -1;
    }
    nw_client_t **feeds = realloc(self->feeds, (self->nfeeds + 1) * sizeof *feeds);
    if (!feeds) {
        client_set_error(self, "out of memory");
        return -1;
    }
    self->feeds = feeds;
    nw_client_t *feed = nw_client_new();
    if (!feed) {
        client_set_error(self, "cannot create a ZeroMQ socket");
        return -1;
    }
    feed->arbiter = self;
    if (self->curve) {
        memcpy(feed->curve_public, self->curve_public, 32);
        memcpy(feed->curve_secret, self->curve_secret, 32);
        memcpy(feed->curve_server, self->curve_server, 32);
        if (apply_curve(feed, feed->sock) != 0)
            goto fail;
        feed->curve = 1;
    }
    if (self->hwm >= 0 && nw_client_set_rcvhwm(feed, self->hwm) != 0)
        goto fail;
    for (void *item = zhashx_first(self->subs); item; item = zhashx_next(self->subs))
        if (nw_client_subscribe(feed, zhashx_cursor(self->subs)) != 0)
            goto fail;
    if (nw_client_connect(feed, endpoint) != 0)
        goto fail;
    if (replay_endpoint && nw_client_set_replay(feed, replay_endpoint) != 0)
        goto fail;
    if (self->idle_set)
        nw_client_set_replay_idle(feed, self->idle_ms);
    self->connected = 1;
    self->feeds[self->nfeeds++] = feed;
    return 0;
fail:
    client_set_error(self, "%s", feed->error);
    nw_client_destroy(&feed);
    return -1;
}

int nw_client_set_dedup_window(nw_client_t *self, size_t articles)
{
    if (articles > NW_CLIENT_DEDUP_WINDOW_MAX) {
        client_set_error(self, "a dedup window of at most %d articles",
                         NW_CLIENT_DEDUP_WINDOW_MAX);
        return -1;
    }
    self->seen_id.max = articles;
    self->seen_seq.max = articles > NW_CLIENT_DEDUP_WINDOW ? articles : NW_CLIENT_DEDUP_WINDOW;
    dedup_clear(&self->seen_id); /* emptied, so a smaller window holds at once */
    return 0;
}

const char *nw_client_error(const nw_client_t *self)
{
    return self->error;
}

uint64_t nw_client_received(const nw_client_t *self)
{
    return self->received;
}
uint64_t nw_client_bad(const nw_client_t *self)
{
    return self->bad;
}
uint64_t nw_client_gaps(const nw_client_t *self)
{
    return self->gaps;
} /* feeds report here */
uint64_t nw_client_duplicates(const nw_client_t *self)
{
    return self->duplicates;
}
uint64_t nw_client_replayed(const nw_client_t *self)
{
    return self->replayed;
}
uint64_t nw_client_replay_errors(const nw_client_t *self)
{
    return self->replay_errors;
}

/* The field accessors, one per field of proto/nw_fields.h. Each must have been declared
 * by include/newswire.h with the same type: the build fails otherwise, before the
 * definitions below would declare it themselves. */
#define STRING_ACCESSOR_TYPE const char *(*) (const nw_message_t *)
#define DECLARED_(accessor, type) DECLARED_AS(accessor, type) /* type expanded first */
#define DECLARED_AS(accessor, type) \
    _Static_assert(_Generic(&nw_message_##accessor, type : 1, default : 0), \
                   "nw_message_" #accessor "() is declared in include/newswire.h as " #type);
#define DECLARED_TEXT(accessor) DECLARED_(accessor, STRING_ACCESSOR_TYPE)
#define DECLARED_SHORT(accessor) DECLARED_(accessor, STRING_ACCESSOR_TYPE)
#define DECLARED_TOPIC(accessor) DECLARED_(accessor, STRING_ACCESSOR_TYPE)
#define DECLARED_HEX32(accessor) DECLARED_(accessor, STRING_ACCESSOR_TYPE)
#define DECLARED_HEX40(accessor) DECLARED_(accessor, STRING_ACCESSOR_TYPE)
#define DECLARED_TIME(accessor) DECLARED_(accessor, STRING_ACCESSOR_TYPE)
#define DECLARED_SEQ(accessor) DECLARED_(accessor, uint64_t (*)(const nw_message_t *))
#define DECLARED_VERSION(accessor)
#define DECLARED_SOURCE(accessor)
#define DECLARED_ARTICLE(accessor)
#define DECLARED_SUBJECTS(accessor)
#define DECLARED(member, key, kind, presence, accessor) DECLARED_##kind(accessor)
#define DECLARED_SUBJECT(member, key, kind, presence, accessor) \
    DECLARED_(accessor, const char *(*) (const nw_message_t *, size_t))
NW_FIELDS_MESSAGE(DECLARED)
NW_FIELDS_SOURCE(DECLARED)
NW_FIELDS_ARTICLE(DECLARED)
NW_FIELDS_SUBJECT(DECLARED_SUBJECT)

#define STRING_ACCESSOR(part, member, accessor) \
    const char *nw_message_##accessor(const nw_message_t *self) \
    { \
        return self->decoded->part.member; \
    }
#define ENV_TEXT(member, accessor) STRING_ACCESSOR(env, member, accessor)
#define ENV_SHORT(member, accessor) STRING_ACCESSOR(env, member, accessor)
#define ENV_TOPIC(member, accessor) STRING_ACCESSOR(env, member, accessor)
#define ENV_HEX32(member, accessor) STRING_ACCESSOR(env, member, accessor)
#define ENV_HEX40(member, accessor) STRING_ACCESSOR(env, member, accessor)
#define ENV_TIME(member, accessor) STRING_ACCESSOR(env, member, accessor)
#define ENV_SEQ(member, accessor) \
    uint64_t nw_message_##accessor(const nw_message_t *self) \
    { \
        return self->decoded->env.member; \
    }
#define ENV_VERSION(member, accessor)
#define ENV_SOURCE(member, accessor)
#define ENV_ARTICLE(member, accessor)
#define ENV_ACCESSOR(member, key, kind, presence, accessor) ENV_##kind(member, accessor)
#define ARTICLE_TEXT(member, accessor) STRING_ACCESSOR(article, member, accessor)
#define ARTICLE_SHORT(member, accessor) STRING_ACCESSOR(article, member, accessor)
#define ARTICLE_TOPIC(member, accessor) STRING_ACCESSOR(article, member, accessor)
#define ARTICLE_HEX32(member, accessor) STRING_ACCESSOR(article, member, accessor)
#define ARTICLE_HEX40(member, accessor) STRING_ACCESSOR(article, member, accessor)
#define ARTICLE_TIME(member, accessor) STRING_ACCESSOR(article, member, accessor)
#define ARTICLE_SUBJECTS(member, accessor)
#define ARTICLE_ACCESSOR(member, key, kind, presence, accessor) ARTICLE_##kind(member, accessor)
/* NULL when index is out of range or the subject has no such field. */
#define SUBJECT_ACCESSOR(member, key, kind, presence, accessor) \
    const char *nw_message_##accessor(const nw_message_t *self, size_t index) \
    { \
        const nw_ninjs_t *a = &self->decoded->article; \
        return index < a->subject_count && a->member ? a->member[index] : NULL; \
    }

NW_FIELDS_MESSAGE(ENV_ACCESSOR)
NW_FIELDS_SOURCE(ENV_ACCESSOR)
NW_FIELDS_ARTICLE(ARTICLE_ACCESSOR)
NW_FIELDS_SUBJECT(SUBJECT_ACCESSOR)
size_t nw_message_subject_count(const nw_message_t *self)
{
    return self->decoded->article.subject_count;
}

uint64_t nw_message_gap_before(const nw_message_t *self)
{
    return self->gap_before;
}
int nw_message_epoch_changed(const nw_message_t *self)
{
    return self->epoch_changed;
}

void nw_message_destroy(nw_message_t **self_p)
{
    nw_message_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    nw_codec_message_destroy(&self->decoded);
    free(self);
    *self_p = NULL;
}
