/*
 * publish: owns the XPUB socket (see publish.h). Messages leave as [topic + ".", body]:
 * the terminator makes ZeroMQ's raw prefix filter whole-level ("telecoms." never
 * matches "telecomsx."). Subscriptions arrive as messages whose first byte is 1
 * (subscribe) or 0 (unsubscribe) followed by the raw prefix; with ZMQ_XPUB_VERBOSER
 * every one of them is passed up, so the counts are real.
 */
#include "publish.h"
#include "log.h"
#include "nw_epgm.h"

#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define SWEEP_MS 1000 /* connections looked at again (manual mode) */

/* Manual mode: what was applied for one subscriber connection. A connection is known by
 * its socket descriptor (ZMQ_SRCFD of its subscription messages) together with that
 * socket's inode: descriptors are reused as soon as a connection closes, socket inodes
 * are not, so (fd, inode) is this connection and no later one. */
typedef struct {
    char key[600]; /* its key in conns */
    int fd;        /* -1: a transport without one (keyed by key alone) */
    dev_t dev;
    ino_t ino;
    zhashx_t *prefixes; /* applied raw prefix -> how many of this connection's
                           subscriptions asked for it (size_t) */
} conn_t;

struct nw_publish {
    zsock_t *sock;
    void *handle; /* the libzmq socket under sock */
    uv_poll_t poll;
    nw_publish_stats_t stats;
    uint64_t last_drop_log_ms;
    uv_check_t check; /* end of the loop turn: drain after this turn's sends */
    int open_handles; /* poll, check and sweep, until all are closed */
    nw_auth_t *auth;  /* NULL: no CURVE, automatic subscriptions */
    zhashx_t *conns;  /* "fd:dev:ino" -> conn_t (XPUB_MANUAL only) */
    uv_timer_t sweep; /* manual mode: finds connections that went away */
    bool sweep_due;   /* a pipe went away: sweep at the end of this drain */
    char **bound;     /* the endpoints as bound (ZMQ_LAST_ENDPOINT) */
    size_t bound_count;
    nw_publish_topic_t *topics; /* per-topic counts, in the order first sent on */
    size_t topic_count, topic_cap;
    zhashx_t *topic_index;    /* topic -> its index in topics, plus 1 */
    nw_publish_topic_t other; /* every topic beyond NW_PUBLISH_TOPICS_MAX */
};

static void free_topics(nw_publish_t *self)
{
    for (size_t i = 0; i < self->topic_count; i++)
        free(self->topics[i].topic);
    free(self->topics);
    zhashx_destroy(&self->topic_index);
}

/* The counts of topic: its own until NW_PUBLISH_TOPICS_MAX topics have one, then
 * "other" (also when out of memory: a count is never worth failing a send). */
static nw_publish_topic_t *topic_counts(nw_publish_t *self, const char *topic)
{
    uintptr_t i = (uintptr_t) zhashx_lookup(self->topic_index, topic);
    if (i)
        return &self->topics[i - 1];
    if (self->topic_count == NW_PUBLISH_TOPICS_MAX)
        return &self->other;
    if (self->topic_count == self->topic_cap) {
        size_t cap = self->topic_cap ? self->topic_cap * 2 : 16;
        cap = cap < NW_PUBLISH_TOPICS_MAX ? cap : NW_PUBLISH_TOPICS_MAX;
        nw_publish_topic_t *grown = realloc(self->topics, cap * sizeof *grown);
        if (!grown)
            return &self->other;
        self->topics = grown;
        self->topic_cap = cap;
    }
    nw_publish_topic_t *t = &self->topics[self->topic_count];
    *t = (nw_publish_topic_t) {.topic = strdup(topic)};
    if (!t->topic || zhashx_insert(self->topic_index, topic,
                                   (void *) (uintptr_t) (self->topic_count + 1)) != 0) {
        free(t->topic);
        return &self->other;
    }
    self->topic_count++;
    return t;
}

static void free_bound(nw_publish_t *self)
{
    for (size_t i = 0; i < self->bound_count; i++)
        zstr_free(&self->bound[i]);
    free(self->bound);
}

static void free_count(void **item)
{
    free(*item);
    *item = NULL;
}

static void free_conn(void **item)
{
    conn_t *c = *item;
    if (c) {
        zhashx_destroy(&c->prefixes);
        free(c);
    }
    *item = NULL;
}

/* The connection a subscription message came from; created when create is set. NULL
 * when it is gone already (its descriptor closed or reused): nothing to apply then,
 * libzmq has dropped its pipe or is about to. */
static conn_t *conn_of(nw_publish_t *self, const zmq_msg_t *msg, const char *user_id, bool create)
{
    char key[600];
    struct stat st = {0};
    int fd = zmq_msg_get(msg, ZMQ_SRCFD);
    if (fd >= 0) {
        if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
            return NULL;
        snprintf(key, sizeof key, "%d:%ju:%ju", fd, (uintmax_t) st.st_dev, (uintmax_t) st.st_ino);
    } else
        snprintf(key, sizeof key, "key:%s", user_id);
    conn_t *c = zhashx_lookup(self->conns, key);
    if (c || !create)
        return c;
    if (!(c = calloc(1, sizeof *c)) || !(c->prefixes = zhashx_new())) {
        free(c);
        return NULL;
    }
    zhashx_set_destructor(c->prefixes, free_count);
    memcpy(c->key, key, sizeof key);
    c->fd = fd;
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    if (zhashx_insert(self->conns, key, c) != 0) {
        free_conn((void **) &c);
        return NULL;
    }
    return c;
}

/* Forget the connections whose socket is closed: libzmq removed their subscriptions
 * from its filter itself, so only our entries and the count go. */
static void conns_sweep(nw_publish_t *self)
{
    if (!self->conns || zhashx_size(self->conns) == 0)
        return;
    zlistx_t *gone = zlistx_new();
    for (conn_t *c = zhashx_first(self->conns); c && gone; c = zhashx_next(self->conns)) {
        struct stat st;
        if (c->fd < 0 || (fstat(c->fd, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino))
            continue;
        self->stats.subscriptions -= (long) zhashx_size(c->prefixes);
        zlistx_add_end(gone, (void *) zhashx_cursor(self->conns));
    }
    for (const char *k = gone ? zlistx_first(gone) : NULL; k; k = zlistx_next(gone))
        zhashx_delete(self->conns, k);
    zlistx_destroy(&gone);
}

static void on_sweep(uv_timer_t *timer)
{
    conns_sweep(timer->data);
}

/* Manual mode: a subscription is read as whole levels (nw_topic_terminate: raw "telecoms"
 * counts as "telecoms.", so a peer that forgot the terminator cannot reach "telecomsx")
 * and only its intersection with the key's grants is applied. libzmq's trie holds a pipe
 * once per prefix, whatever number of the connection's subscriptions led to it, so a
 * prefix is unsubscribed only when no subscription of the same connection still wants
 * it (subscribing to everything and to "telecoms" both give "telecoms." to a key granted
 * it). The entries follow the connection: when it goes, libzmq hands its subscriptions
 * back as unsubscriptions without a User-Id, which is our cue to look for connections
 * whose socket is closed (and a timer looks too, in case the socket outlives that), and
 * theirs are forgotten. */
static void apply_manual(nw_publish_t *self, const zmq_msg_t *msg, bool subscribe,
                         const char *sub, size_t sublen, const char *shown)
{
    const char *user_id = zmq_msg_gets(msg, "User-Id");
    if (!user_id) {
        /* A pipe that went away: libzmq already dropped its subscriptions. Once per
         * drain, after the rest of them (they come together, one per prefix). */
        if (!subscribe)
            self->sweep_due = true;
        return;
    }
    const char *name = nw_auth_key_name(self->auth, user_id);
    char subbuf[520]; /* a subscription is < 512 bytes (ZMQ_MAXMSGSIZE) */
    const char *allowed[NW_AUTH_MAX_GRANTS];
    size_t n = nw_auth_grant(self->auth, user_id, sub, sublen, subbuf, allowed,
                             NW_AUTH_MAX_GRANTS);
    if (n == 0) {
        if (subscribe) {
            self->stats.denied++;
            nw_warn("denied subscription '%s' from key %s: outside its grants", shown,
                    name ? name : user_id);
        }
        return;
    }
    conn_t *conn = conn_of(self, msg, user_id, subscribe);
    if (!conn) {
        nw_debug("key %s: %s '%s' from a connection already closed", name ? name : user_id,
                 subscribe ? "subscription" : "unsubscription", shown);
        return;
    }
    char list[1024] = "";
    for (size_t i = 0; i < n; i++) {
        size_t *count = zhashx_lookup(conn->prefixes, allowed[i]);
        if (subscribe) {
            zmq_setsockopt(self->handle, ZMQ_SUBSCRIBE, allowed[i], strlen(allowed[i]));
            if (!count && (count = calloc(1, sizeof *count))) {
                if (zhashx_insert(conn->prefixes, allowed[i], count) == 0)
                    self->stats.subscriptions++;
                else {
                    free(count);
                    count = NULL;
                }
            }
            if (count)
                ++*count;
        } else if (count && --*count == 0) {
            zmq_setsockopt(self->handle, ZMQ_UNSUBSCRIBE, allowed[i], strlen(allowed[i]));
            zhashx_delete(conn->prefixes, allowed[i]);
            self->stats.subscriptions--;
        }
        char one[300];
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s'%s'", i ? ", " : "",
                 nw_log_escape(allowed[i], one, sizeof one));
    }
    if (zhashx_size(conn->prefixes) == 0)
        zhashx_delete(self->conns, conn->key); /* frees conn */
    if (subscribe && (n != 1 || strcmp(allowed[0], subbuf) != 0)) {
        self->stats.denied++;
        nw_info("subscription '%s' from key %s narrowed to its grants: %s", shown,
                name ? name : user_id, list);
    }
    nw_debug("key %s: %s %s", name ? name : user_id, subscribe ? "subscribe" : "unsubscribe",
             list);
}

/* Read every pending subscription message; needed after any socket operation because
 * ZMQ_FD only signals the edge. Receiving until EAGAIN (which itself processes the
 * socket's commands and tries again) replaces asking ZMQ_EVENTS first: every ZMQ_EVENTS
 * also processes commands, and libzmq 4.3.4 in manual mode keeps a queued subscription's
 * pipe pointer even after that pipe was destroyed by such a command (fixed in 4.3.5), so
 * nothing may process commands while subscriptions are still queued. */
static void publish_drain(nw_publish_t *self)
{
    for (;;) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        int n = zmq_msg_recv(&msg, self->handle, ZMQ_DONTWAIT);
        if (n < 0) {
            zmq_msg_close(&msg);
            if (self->sweep_due) {
                self->sweep_due = false;
                conns_sweep(self);
            }
            return;
        }
        const unsigned char *data = zmq_msg_data(&msg);
        if (n >= 1 && (data[0] == 0 || data[0] == 1)) {
            char topic[300];
            size_t len = (size_t) n - 1 < sizeof topic - 1 ? (size_t) n - 1 : sizeof topic - 1;
            memcpy(topic, data + 1, len);
            topic[len] = '\0';
            char shown[1100];
            nw_log_escape(topic, shown, sizeof shown);
            if (data[0] == 1)
                self->stats.subscribes++;
            else
                self->stats.unsubscribes++;
            if (self->auth) /* before any other receive: it applies to the last pipe */
                apply_manual(self, &msg, data[0] == 1, (const char *) data + 1, (size_t) n - 1,
                             shown);
            else
                self->stats.subscriptions += data[0] == 1 ? 1 : -1;
            nw_debug("%s '%s' (%ld active)", data[0] ? "subscribe" : "unsubscribe", shown,
                     self->stats.subscriptions);
        }
        zmq_msg_close(&msg);
    }
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    (void) status;
    (void) events;
    publish_drain(handle->data);
}

static void on_check(uv_check_t *check)
{
    uv_check_stop(check);
    publish_drain(check->data);
}

/* After sends. Manual mode drains at once, for the reason above publish_drain. In
 * automatic mode nothing is applied by hand, so one drain when the loop turn's
 * callbacks are done serves every send of the turn: each drain ends in a receive that
 * finds nothing, which costs libzmq a poll() and a getpid() (three per article before:
 * a third of the loop thread's profile under a burst). */
static void publish_settle(nw_publish_t *self)
{
    if (self->auth)
        publish_drain(self);
    else
        uv_check_start(&self->check, on_check);
}

nw_publish_t *nw_publish_new(uv_loop_t *loop, char *const *endpoints, size_t count,
                             nw_publish_options_t opt, nw_auth_t *auth, char *errbuf,
                             size_t errlen)
{
    nw_publish_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    self->sock = zsock_new(ZMQ_XPUB);
    if (!self->sock) {
        snprintf(errbuf, errlen, "cannot create XPUB socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    self->handle = zsock_resolve(self->sock);
    self->topic_index = zhashx_new();
    if (!self->topic_index) {
        snprintf(errbuf, errlen, "out of memory");
        goto fail;
    }
    int one = 1, linger = 1000;
    zsock_set_sndhwm(self->sock, opt.send_hwm);
    /* PGM's rate and window are fixed when its sender is made: before any bind (and
     * only with a multicast endpoint: nothing else reads them). */
    bool multicast = false;
    for (size_t i = 0; i < count; i++)
        multicast |= nw_epgm_is(endpoints[i]);
    if (multicast && opt.multicast_rate > 0)
        zmq_setsockopt(self->handle, ZMQ_RATE, &opt.multicast_rate, sizeof opt.multicast_rate);
    if (multicast && opt.multicast_recovery_ms > 0)
        zmq_setsockopt(self->handle, ZMQ_RECOVERY_IVL, &opt.multicast_recovery_ms,
                       sizeof opt.multicast_recovery_ms);
    zsock_set_maxmsgsize(self->sock, 512); /* subscriptions only: a topic is < 256 bytes */
    zmq_setsockopt(self->handle, ZMQ_XPUB_NODROP, &one, sizeof one);
    zmq_setsockopt(self->handle, ZMQ_XPUB_VERBOSER, &one, sizeof one);
    zmq_setsockopt(self->handle, ZMQ_LINGER, &linger, sizeof linger);
    if (auth) {
        self->auth = auth;
        self->conns = zhashx_new();
        if (!self->conns) {
            snprintf(errbuf, errlen, "out of memory");
            goto fail;
        }
        zhashx_set_destructor(self->conns, free_conn);
        zmq_setsockopt(self->handle, ZMQ_XPUB_MANUAL, &one, sizeof one);
        if (nw_auth_server(auth, self->sock, errbuf, errlen) != 0)
            goto fail;
    }
    self->bound = calloc(count ? count : 1, sizeof *self->bound);
    if (!self->bound) {
        snprintf(errbuf, errlen, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < count; i++) {
        char resolved[256], reason[300];
        const char *endpoint = endpoints[i];
        if (nw_epgm_is(endpoint)) {
            if (auth) {
                snprintf(errbuf, errlen,
                         "%s: multicast cannot have CURVE (ZeroMQ would send "
                         "it in clear text to the whole segment, whatever the grants)",
                         endpoint);
                goto fail;
            }
            if (nw_epgm_resolve(endpoint, resolved, sizeof resolved, reason, sizeof reason) !=
                0) {
                snprintf(errbuf, errlen, "cannot bind %s", reason);
                goto fail;
            }
            endpoint = resolved;
        }
        if (zmq_bind(self->handle, endpoint) != 0) {
            snprintf(errbuf, errlen, "cannot bind %s: %s", endpoints[i],
                     zmq_strerror(zmq_errno()));
            goto fail;
        }
        /* A wildcard port is resolved now, so a rebind gets the same one. */
        self->bound[self->bound_count++] = nw_epgm_is(endpoint) ? strdup(endpoint)
                                                                : zsock_last_endpoint(self->sock);
    }
    int fd = zsock_fd(self->sock);
    if (uv_poll_init(loop, &self->poll, fd) != 0) {
        snprintf(errbuf, errlen, "cannot poll the XPUB socket");
        goto fail;
    }
    self->poll.data = self;
    uv_poll_start(&self->poll, UV_READABLE, on_poll);
    uv_check_init(loop, &self->check);
    self->check.data = self;
    uv_timer_init(loop, &self->sweep);
    self->sweep.data = self;
    if (self->auth) {
        uv_timer_start(&self->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
        uv_unref((uv_handle_t *) &self->sweep);
    }
    self->open_handles = 3;
    publish_drain(self);
    return self;
fail:
    zsock_destroy(&self->sock);
    zhashx_destroy(&self->conns);
    free_topics(self);
    free_bound(self);
    free(self);
    return NULL;
}

/* Both frames, without waiting. EAGAIN on the first frame means a matching
 * subscriber's queue is full (ZMQ_XPUB_NODROP); nothing has been sent then. */
static int send_frames(nw_publish_t *self, const char *topic, const void *data, size_t len)
{
    char frame0[NW_TOPIC_FRAME_MAX + 1];
    size_t tlen = strlen(topic);
    if (tlen == 0 || tlen > NW_TOPIC_MAX) {
        errno = EINVAL;
        return -1;
    }
    tlen = nw_topic_terminate(topic, tlen, frame0);
    /* Each send may process commands: settle after each, for the reason above. */
    int rc = zmq_send(self->handle, frame0, tlen, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    int saved = errno;
    if (self->auth)
        publish_drain(self);
    if (rc < 0) {
        errno = saved;
        return -1;
    }
    /* The first frame passed the HWM check for the whole message. */
    rc = zmq_send(self->handle, data, len, ZMQ_DONTWAIT);
    saved = errno;
    if (self->auth)
        publish_drain(self);
    errno = saved;
    return rc < 0 ? -1 : 0;
}

static void set_nodrop(nw_publish_t *self, int on)
{
    zmq_setsockopt(self->handle, ZMQ_XPUB_NODROP, &on, sizeof on);
}

int nw_publish_send(nw_publish_t *self, const char *topic, const void *data, size_t len)
{
    int rc = send_frames(self, topic, data, len);
    if (rc < 0 && errno == EAGAIN) {
        /* With NODROP a full queue refuses the message for every subscriber. Send it
         * again in lossy mode so the healthy ones still get it and only the slow one
         * misses it (it sees the seq gap and recovers it from the journal); the refusal
         * is what lets us count and log the drop. */
        set_nodrop(self, 0);
        rc = send_frames(self, topic, data, len);
        set_nodrop(self, 1);
        if (rc == 0) {
            rc = 1;
            self->stats.dropped++;
            uint64_t now = uv_now(self->poll.loop);
            if (now - self->last_drop_log_ms >= 1000) {
                nw_warn("a subscriber's queue is full: it missed a message on '%s' (%lu "
                        "missed since start; subscribers recover them by seq)",
                        topic, self->stats.dropped);
                self->last_drop_log_ms = now;
            }
        }
    }
    if (rc >= 0) {
        self->stats.sent++;
        nw_publish_topic_t *t = topic_counts(self, topic);
        t->messages++;
        t->bytes += len;
    }
    publish_settle(self);
    return rc;
}

static int publisher_send(void *self, const char *topic, const void *data, size_t len)
{
    int rc = nw_publish_send(self, topic, data, len);
    if (rc < 0)
        nw_err("cannot publish on '%s': %s", topic, zmq_strerror(errno));
    return rc;
}

nw_publisher_t nw_publish_publisher(nw_publish_t *self)
{
    return (nw_publisher_t) {.self = self, .send = publisher_send};
}

void nw_publish_stats(const nw_publish_t *self, nw_publish_stats_t *out)
{
    *out = self->stats;
}

size_t nw_publish_topics(const nw_publish_t *self, const nw_publish_topic_t **topics,
                         nw_publish_topic_t *other)
{
    *topics = self->topics;
    *other = self->other;
    return self->topic_count;
}

int nw_publish_rebind(nw_publish_t *self, char *errbuf, size_t errlen)
{
    int rc = 0;
    /* Unbinding a listener also closes the connections it accepted. The listener is
     * closed by an I/O thread a moment later, so the address may still be taken for a
     * few milliseconds: retry briefly (this runs only when a key was withdrawn). */
    for (size_t i = 0; i < self->bound_count; i++) {
        if (nw_epgm_is(self->bound[i]))
            continue;
        int bound = zmq_unbind(self->handle, self->bound[i]) == 0 ? -1 : 0;
        for (int tries = 0; bound == -1 && tries < 200; tries++) {
            if (zmq_bind(self->handle, self->bound[i]) == 0)
                bound = 1;
            else if (zmq_errno() == EADDRINUSE)
                nanosleep(&(struct timespec) {0, 5 * 1000 * 1000}, NULL);
            else
                break;
        }
        if (bound != 1) {
            snprintf(errbuf, errlen, "cannot rebind %s: %s", self->bound[i],
                     zmq_strerror(zmq_errno()));
            rc = -1;
        }
    }
    /* The old pipes are gone and their counts with them. */
    if (self->conns) {
        zhashx_purge(self->conns);
        self->stats.subscriptions = 0;
    }
    publish_drain(self);
    return rc;
}

static void on_close(uv_handle_t *handle)
{
    nw_publish_t *self = handle->data;
    if (--self->open_handles > 0)
        return;
    zsock_destroy(&self->sock);
    zhashx_destroy(&self->conns);
    free_topics(self);
    free_bound(self);
    free(self);
}

void nw_publish_destroy(nw_publish_t **self_p)
{
    nw_publish_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    uv_poll_stop(&self->poll);
    uv_close((uv_handle_t *) &self->poll, on_close);
    uv_close((uv_handle_t *) &self->check, on_close);
    uv_close((uv_handle_t *) &self->sweep, on_close);
}
