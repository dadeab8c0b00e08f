/*
 * publish: the XPUB socket every article leaves through.
 *
 * One XPUB bound to every configured endpoint. Frame 0 is the topic plus a terminating
 * '.' (proto/newswire-v1.md section 3), so ZeroMQ's raw prefix "S." is exactly topic S
 * and the topics below it. Its ZMQ_FD joins the libuv loop through
 * uv_poll; ZMQ_FD is edge-triggered, so on every wake-up, and after the sends of each
 * loop turn (after each send in manual mode), subscription messages are drained until
 * a receive finds none.
 * Sends never block: ZMQ_XPUB_NODROP makes a full subscriber queue visible as EAGAIN,
 * and the message is then sent again in lossy mode, so only the full subscriber misses
 * it; the miss is counted and logged instead of vanishing silently (the journal still
 * holds the message, and the subscriber sees the seq gap). libzmq then leaves that
 * subscriber out of the sends, without refusing them, until it has read its queue down:
 * one count ("dropped") stands for a stretch of missed messages, at least one.
 * With an nw_auth_t the socket is a CURVE server in ZMQ_XPUB_MANUAL mode: every
 * subscription message carries the subscriber's ZAP User-Id, and only the part of it the
 * key's grants allow is applied (a subscription to everything becomes one per grant; one
 * without the final '.', e.g. "telecoms", is read as the whole level "telecoms.");
 * libzmq applies a manual subscription to the pipe that spoke last, so the grant is
 * applied right after each receive, before the next one. What was applied is kept per
 * subscriber connection (known by its socket: ZMQ_SRCFD and the socket's inode) and
 * forgotten when the connection goes, so the count of subscriptions is what is live.
 * Without auth, subscriptions apply as sent (raw prefixes; subscribers filter).
 * Multicast (epgm://IFACE;GROUP:PORT, bound as ZeroMQ binds PGM: by connecting a sender
 * to the group): libzmq subscribes that pipe to everything itself and no subscription
 * ever comes back over PGM, so every message goes to the group, receivers filter, and
 * the subscription counts know nothing of multicast receivers. The same NODROP rule
 * holds: when PGM is behind its rate and the pipe is full, the group misses the message
 * (counted as a drop) and its receivers repair it by replay. A rebind leaves multicast
 * endpoints alone: they hold no connection to drop.
 * What leaves is counted per topic as well (nw_publish_topics, read by the metrics).
 * Used only on the loop thread.
 */
#ifndef NW_PUBLISH_H
#define NW_PUBLISH_H

#include "auth.h"
#include <stddef.h>
#include <uv.h>

typedef struct nw_publish nw_publish_t;

typedef struct {
    unsigned long sent;       /* messages handed to ZeroMQ */
    unsigned long dropped;    /* times a full subscriber queue refused a message */
    unsigned long subscribes; /* subscription messages seen */
    unsigned long unsubscribes;
    unsigned long denied; /* subscriptions refused or narrowed by the grants */
    long subscriptions;   /* subscriptions now active (all subscribers; with auth,
                             distinct applied prefixes per live connection) */
} nw_publish_stats_t;

/* Messages and body bytes handed to ZeroMQ on one topic since start. */
typedef struct {
    char *topic;
    unsigned long messages, bytes;
} nw_publish_topic_t;
/* Topics counted one by one: the first ones sent on; later ones add up in "other",
 * so a flood of topic names costs no memory here (and no series in the metrics). */
#define NW_PUBLISH_TOPICS_MAX 1000

typedef struct {
    int send_hwm;              /* messages queued per subscriber (and per multicast group) */
    int multicast_rate;        /* epgm endpoints: kbit/s PGM may send (ZMQ_RATE); 0: libzmq's */
    int multicast_recovery_ms; /* epgm: how long sent data stays repairable (ZMQ_RECOVERY_IVL) */
} nw_publish_options_t;

/* auth NULL: clear text, subscriptions unchecked. auth is borrowed and must outlive
 * the publisher. An epgm endpoint is refused with auth (PGM has no CURVE, and grants
 * cannot narrow a multicast group). */
nw_publish_t *nw_publish_new(uv_loop_t *loop, char *const *endpoints, size_t count,
                             nw_publish_options_t opt, nw_auth_t *auth, char *errbuf,
                             size_t errlen);
/* 0 sent to all, 1 sent but a full subscriber missed it, -1 error (errno). */
int nw_publish_send(nw_publish_t *self, const char *topic, const void *data, size_t len);

/* What the feed (feed.h) needs of a publisher: send one durable message on a topic
 * (returns as nw_publish_send). nw_publish_publisher() gives this socket's, which logs a
 * send that fails; a unit test gives a fake. */
typedef struct {
    void *self;
    int (*send)(void *self, const char *topic, const void *data, size_t len);
} nw_publisher_t;
nw_publisher_t nw_publish_publisher(nw_publish_t *self);

void nw_publish_stats(const nw_publish_t *self, nw_publish_stats_t *out);
/* The per-topic counts, in the order the topics were first sent on (at most
 * NW_PUBLISH_TOPICS_MAX; valid until the next send); *other (topic NULL) gets the sum of
 * every later topic. Returns how many *topics holds. */
size_t nw_publish_topics(const nw_publish_t *self, const nw_publish_topic_t **topics,
                         nw_publish_topic_t *other);
/* Unbind and bind every endpoint again: every subscriber is disconnected, reconnects on
 * its own and is admitted and granted afresh (after a key or grant was withdrawn). */
int nw_publish_rebind(nw_publish_t *self, char *errbuf, size_t errlen);
/* Closes the socket and the poll handle; memory freed once the loop runs the close. */
void nw_publish_destroy(nw_publish_t **self_p);

#endif
