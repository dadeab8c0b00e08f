/*
 * upstream: the relay's input (newswired --upstream LIVE [--upstream-replay REPLAY]):
 * another newswired's feed, carried on through the feed core byte for byte.
 *
 *   upstream XPUB --SUB--> check frames, topic filter (--upstream-topic), decode
 *     -> per topic, against this relay's journal (its last seq L):
 *          seq == L + 1: nw_feed_forward (journaled as given, published once durable)
 *          seq <= L:     already held (a repeat, or replayed meanwhile): dropped
 *          seq >  L + 1: held; L + 1 .. seq - 1 fetched first from the upstream's
 *                        replay endpoint (DEALER, proto/nw_replay), then the held ones
 *   upstream ROUTER --DEALER--> data replies forwarded the same way, in seq order
 *
 * So the relay's journal holds, per topic, exactly the upstream's messages 1..L with the
 * upstream's epoch, seq and bytes, and its own replay (replay.c) serves them as the
 * upstream would. A topic first seen after a start is filled from the seq after the
 * relay's last (from 1 on a new relay); after quiet, or when the SUB (re)connects, every
 * topic seen is asked for anything newer, so the end of a burst or what passed while
 * disconnected is not left missing. One replay stream at a time, topics in a FIFO.
 *
 * Epochs (proto/newswire-v1.md section 10): a message of another epoch whose seq goes
 * on above L is journaled like any other, so an upstream's new history that goes on
 * above the old one (what the reference publisher does while it holds anything) is
 * followed and served exactly as the upstream serves it. Seq L + 1 of another epoch
 * alone does not show that: a new epoch that started again lower, whose seqs up to
 * L + 1 passed while the relay was away, looks the same. So unless the record before it
 * in the same replay stream was L as the relay holds it, the upstream is first asked
 * for seq L alone: the relay's epoch there, followed; another (or none), stopped. A
 * message of a new epoch at or below L cannot be held beside what the relay already
 * holds under those seqs: the topic is stopped (nothing more of it forwarded) and
 * STATUS and the log say so; the operator moves the relay's journal aside and restarts
 * it, and it fills the topic again from the upstream (the journal keeps one seq line
 * per topic: holding the new epoch's seqs beside the old would take a per-topic restart
 * record in its format, its recovery, cursor and retention). The same stops a topic whose missing
 * seqs the upstream no longer holds (retention, or no --upstream-replay to ask): the journal
 * takes only the next seq, so a relay never carries on past a hole it could not fill.
 *
 * CURVE as a client: the relay's own certificate (--upstream-cert, the _secret file)
 * and the upstream's public key (--upstream-key). Connection state comes from the SUB's
 * socket monitor (handshakes done, disconnections).
 * Loop thread only.
 */
#ifndef NW_UPSTREAM_H
#define NW_UPSTREAM_H

#include "feed.h"
#include "journal.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct nw_upstream nw_upstream_t;

typedef struct {
    const char *live;    /* the upstream's XPUB endpoint */
    const char *replay;  /* its ROUTER endpoint, or NULL: gaps cannot be filled */
    char *const *topics; /* topics carried (with those below them); none: all */
    size_t topic_count;
    const char *cert;       /* the relay's client certificate (_secret), or NULL */
    const char *server_key; /* the upstream's public key (Z85 or a certificate
                               file), with cert */
    int rcvhwm;             /* messages the SUB queues */
} nw_upstream_options_t;

/* Per topic: how far the relay is behind what it has seen of the upstream. */
typedef struct {
    const char *topic;
    uint64_t head; /* highest seq seen from the upstream (live or $end) */
    uint64_t last; /* the relay's journal's last seq */
    bool stopped;  /* stopped for good (see above): reason says why */
    const char *reason;
} nw_upstream_topic_t;

typedef struct {
    bool connected; /* the SUB has a live, handshaken connection */
    unsigned long connects, disconnects;
    unsigned long received;        /* live messages taken off the SUB */
    unsigned long forwarded;       /* messages journaled and sent (live and replayed) */
    unsigned long repeats;         /* dropped: at or below what the relay holds */
    unsigned long filtered;        /* dropped: outside --upstream-topic */
    unsigned long bad;             /* dropped: malformed */
    unsigned long gaps;            /* gaps found (live seq beyond L + 1) */
    unsigned long repaired;        /* seqs fetched by replay and forwarded */
    unsigned long replays;         /* replay streams asked for */
    unsigned long replay_errors;   /* $error replies and silent streams */
    uint64_t lag;                  /* sum over topics of head - last */
    unsigned long topics, stopped; /* topics seen; of them stopped */
} nw_upstream_stats_t;

/* Connects (asynchronously: an absent upstream is not an error). NULL with the reason
 * (a bad endpoint, an unusable certificate or key). feed and journal are borrowed; what
 * options point to is copied or read during the call (a reload changes none of it). */
nw_upstream_t *nw_upstream_new(uv_loop_t *loop, nw_upstream_options_t options, nw_feed_t *feed,
                               nw_journal_t *journal, char *errbuf, size_t errlen);
void nw_upstream_stats(const nw_upstream_t *self, nw_upstream_stats_t *out);
/* The topics seen, in no order (valid until the loop runs again). */
size_t nw_upstream_topics(nw_upstream_t *self, nw_upstream_topic_t *out, size_t max);
/* The first stopped topic's reason ("" when none), for STATUS. */
const char *nw_upstream_problem(const nw_upstream_t *self);
/* Take nothing more (shutdown: the feed is drained next). */
void nw_upstream_stop(nw_upstream_t *self);
void nw_upstream_destroy(nw_upstream_t **self_p);

#endif
