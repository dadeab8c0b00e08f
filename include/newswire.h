/*
 * newswire.h: the subscriber library of newswire (libnewswire).
 *
 * A client owns one ZeroMQ SUB socket (and its own ZeroMQ context, so it never touches
 * the application's signal handlers or global state). Articles enter as two-frame
 * messages (topic + ".", MessagePack map of wire format v1), are decoded by the project's one
 * codec, filtered by the protocol's topic rule, checked for per-topic sequence gaps and
 * duplicates, and leave as nw_message_t objects the caller owns. With a replay endpoint
 * (nw_client_set_replay) a DEALER fetches what the live feed missed from the daemon's
 * journal, and late joins (nw_client_since/nw_client_last) start from the journal.
 *
 *     nw_client_t *client = nw_client_new();
 *     nw_client_connect(client, "tcp://127.0.0.1:5556");
 *     nw_client_subscribe(client, "telecoms");
 *     nw_message_t *msg;
 *     while (nw_client_recv(client, &msg, -1) >= 0) {
 *         if (msg) { puts(nw_message_headline(msg)); nw_message_destroy(&msg); }
 *     }
 *     nw_client_destroy(&client);
 *
 * Not thread-safe: use one client per thread.
 */
#ifndef NEWSWIRE_H
#define NEWSWIRE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nw_client nw_client_t;
typedef struct nw_message nw_message_t;

/* Return codes of nw_client_recv(). */
#define NW_RECV_MESSAGE 1 /* *msg holds a message */
#define NW_RECV_TIMEOUT 0 /* nothing within timeout_ms */
#define NW_RECV_ERROR -1  /* fatal: socket error or interrupted (errno EINTR) */
#define NW_RECV_BAD \
    2 /* a hostile or undecodable message was discarded; \
         nw_client_error() says why; call again */

/* The receive limit set on the socket: the codec's maximum plus room for the envelope.
 * A peer sending more is disconnected by ZeroMQ itself. */
#define NW_CLIENT_MAXMSGSIZE (16 * 1024 * 1024 + 64 * 1024)

/* Longest topic name. */
#define NW_CLIENT_TOPIC_MAX 255

/* Called once for every gap, before the message that revealed it is returned:
 * seqs first..last (inclusive) of topic in epoch were never received.
 * With a replay endpoint set, gaps are filled from the daemon's journal instead, and
 * this is called only for seqs given up for good (the replay failed, e.g. "retention":
 * nw_client_error() says why; epoch is "" when a late join never learnt it). */
typedef void(nw_client_gap_fn)(nw_client_t *client, const char *topic, const char *epoch,
                               uint64_t first, uint64_t last, void *arg);

/* A new client, not connected. NULL when out of memory or ZeroMQ cannot start. */
nw_client_t *nw_client_new(void);
void nw_client_destroy(nw_client_t **self_p);

/* Queue limit of the socket in messages (ZeroMQ's default 1000 when never set). Takes
 * effect for connections made afterwards, so call it before nw_client_connect(). */
int nw_client_set_rcvhwm(nw_client_t *self, int hwm);

/* Report gaps to fn as well as counting them; NULL removes the handler. */
void nw_client_set_gap_handler(nw_client_t *self, nw_client_gap_fn *fn, void *arg);

/* CurveZMQ (the daemon's --curve-secret): authenticate with the client certificate
 * client_cert_path (the PATH_secret file of newswire-keygen: CZMQ zcert text holding
 * curve/public-key and curve/secret-key) and expect the server key server_public_key
 * (40 Z85 characters, or the path of the daemon's public certificate file). Applies to
 * the live socket and to the replay one, so call it before nw_client_connect() and
 * nw_client_set_replay(): -1 afterwards, or when a file or key is unusable or libzmq
 * lacks CURVE (nw_client_error() says which). A daemon that does not admit the key
 * completes no handshake: nothing arrives, as with an absent daemon. */
int nw_client_set_curve(nw_client_t *self, const char *client_cert_path,
                        const char *server_public_key);

/* Connect to a daemon's endpoint ("tcp://host:port", "ipc:///path", or its multicast
 * group "epgm://interface;group:port"); may be called several times. Connecting is
 * asynchronous: -1 means the endpoint itself is unusable (bad syntax, unknown
 * transport; for epgm, an interface that is loopback, missing or without multicast, a
 * group that is not multicast, or CURVE set: PGM carries none), an absent daemon is not
 * an error here. The epgm interface (a name or one of its IPv4 addresses) is resolved
 * here, never through DNS. Multicast carries every topic: subscriptions filter here.
 * Several endpoints are assumed to be the same daemon's (e.g. its tcp and ipc ones):
 * a message arriving on both is delivered once. Another daemon or relay, with its own
 * replay endpoint, is a feed: nw_client_add_feed(). */
int nw_client_connect(nw_client_t *self, const char *endpoint);

/* Replay (the daemon's --replay ENDPOINT; one per client, set before receiving).
 * From then on a live message revealing a gap on its topic (seq > last + 1 in the same
 * epoch) makes the client fetch the missing seqs from the journal; the topic's live
 * messages are held meanwhile, so every article is returned once and in seq order per
 * topic. An epoch change drops what was pending for the topic and starts over. A replay
 * refused ($error), or silent for 5 s having sent nothing, gives its seqs up (gap
 * handler, nw_client_error()); "busy" is not retried.
 * -1 when the endpoint is unusable or one is set already. */
int nw_client_set_replay(nw_client_t *self, const char *endpoint);

/* A gap at the end of a burst has no later message to reveal it; so after live traffic
 * followed by idle_ms of quiet (default NW_CLIENT_REPLAY_IDLE_MS) the client asks the
 * journal once for anything newer on its topics. So it does idle_ms after each
 * handshake of the live socket: what went out while it was away (the publisher
 * restarted, a link was cut) is fetched even when nothing follows. 0 turns both off. */
#define NW_CLIENT_REPLAY_IDLE_MS 500
void nw_client_set_replay_idle(nw_client_t *self, int idle_ms);

/* Dual feeds, no single point of failure: another path to the same articles, e.g. a
 * second relay of the same origin, or a second origin fed the same files. Each feed has
 * its own live socket on endpoint and, unless replay_endpoint is NULL, its own replay
 * endpoint that fills that feed's gaps (so replay is asked of a path that is up); the
 * client itself (nw_client_connect, nw_client_set_replay) is the first path. A message
 * is returned once per (epoch, topic, seq), from whichever path delivers it first, and,
 * since two origins have different epochs and seqs, once per article id within the
 * dedup window; what was dropped counts in nw_client_duplicates(). A gap on one path
 * is reported (gap handler, nw_client_gaps()) only for seqs no path delivered; across
 * two origins seqs cannot be matched, so a gap one origin gave up is reported even when
 * the other delivered those articles. Keys, queue limit, subscriptions and the replay
 * idle time apply to every feed; call after nw_client_set_curve() and before
 * nw_client_since()/nw_client_last() (which then join on every path with a replay
 * endpoint). -1 when an endpoint is unusable (as for nw_client_connect) or there are
 * NW_CLIENT_FEEDS_MAX feeds already. */
#define NW_CLIENT_FEEDS_MAX 7
int nw_client_add_feed(nw_client_t *self, const char *endpoint, const char *replay_endpoint);

/* With feeds: how many recent article ids are remembered to drop the same article from
 * another path (default NW_CLIENT_DEDUP_WINDOW; 0: none, then only (epoch, topic, seq)
 * is arbitrated, e.g. for two relays of one origin that may legitimately publish one
 * article twice under two seqs). (epoch, topic, seq) is remembered for at least
 * NW_CLIENT_DEDUP_WINDOW messages. -1 above NW_CLIENT_DEDUP_WINDOW_MAX. */
#define NW_CLIENT_DEDUP_WINDOW 10000
#define NW_CLIENT_DEDUP_WINDOW_MAX 10000000
int nw_client_set_dedup_window(nw_client_t *self, size_t articles);

/* Late join (needs nw_client_set_replay): return topic's journaled articles from seq
 * from_seq (since) or its newest n (last) ahead of its live ones. Exactly that topic,
 * not the ones below it; it is also subscribed (with the usual prefix rule). Call after
 * nw_client_connect() and before receiving anything on topic: -1 otherwise. */
int nw_client_since(nw_client_t *self, const char *topic, uint64_t from_seq);
int nw_client_last(nw_client_t *self, const char *topic, uint64_t n);

/* Subscribe to a topic and every topic below it ("telecoms" gets "telecoms" and
 * "telecoms.5g", never "telecomsx": the ZeroMQ prefix is "telecoms."); "" subscribes to
 * everything. -1 when the name is
 * not a topic name (lowercase [a-z0-9-] levels joined by '.'). */
int nw_client_subscribe(nw_client_t *self, const char *topic);
int nw_client_unsubscribe(nw_client_t *self, const char *topic);

/* Wait up to timeout_ms (-1: forever, 0: poll) for the next message. Returns one of the
 * NW_RECV_ codes; *msg is set only with NW_RECV_MESSAGE, otherwise NULL. Messages not
 * matching a subscription and duplicates (seq not above the last one seen on that topic
 * in the same epoch) are dropped silently and waiting goes on. */
int nw_client_recv(nw_client_t *self, nw_message_t **msg, int timeout_ms);

/* The reason of the last NW_RECV_ERROR / NW_RECV_BAD / failed call ("" if none). */
const char *nw_client_error(const nw_client_t *self);

/* Counters since nw_client_new(). */
uint64_t nw_client_received(const nw_client_t *self);      /* messages returned */
uint64_t nw_client_bad(const nw_client_t *self);           /* NW_RECV_BAD results */
uint64_t nw_client_gaps(const nw_client_t *self);          /* messages missed in gaps */
uint64_t nw_client_duplicates(const nw_client_t *self);    /* duplicates dropped */
uint64_t nw_client_replayed(const nw_client_t *self);      /* returned from a replay */
uint64_t nw_client_replay_errors(const nw_client_t *self); /* replays refused ($error) */

/* 1 when topic is a valid topic name (not ""), else 0. */
int nw_client_topic_valid(const char *topic);

/* Normalize a subject ("Telecoms & 5G") to a topic name ("telecoms-5g"): lowercase,
 * '.' separates levels, other characters fold to '-', runs collapse, empty levels and
 * '-' at the ends of a level go. 0 on success, -1 if nothing remains or it does not fit
 * in outlen (at most NW_CLIENT_TOPIC_MAX characters). */
int nw_client_topic_normalize(const char *subject, char *out, size_t outlen);

/* Message accessors. Strings belong to the message; optional fields are NULL when the
 * article has none. */
const char *nw_message_topic(const nw_message_t *self);
uint64_t nw_message_seq(const nw_message_t *self);
const char *nw_message_epoch(const nw_message_t *self);
const char *nw_message_id(const nw_message_t *self);
const char *nw_message_sent(const nw_message_t *self);
const char *nw_message_source_file(const nw_message_t *self);
const char *nw_message_source_format(const nw_message_t *self);
/* What the dropped file was converted from to UTF-8 ("UTF-16LE", "UTF-16BE",
 * "windows-1252"), NULL when it was UTF-8. */
const char *nw_message_source_encoding(const nw_message_t *self);
const char *nw_message_uri(const nw_message_t *self);
const char *nw_message_type(const nw_message_t *self);
const char *nw_message_headline(const nw_message_t *self);
const char *nw_message_byline(const nw_message_t *self);
const char *nw_message_description(const nw_message_t *self);
const char *nw_message_body(const nw_message_t *self);
const char *nw_message_language(const nw_message_t *self);
/* The source's version of the story ("3") and where it was filed from ("LISBON"), as
 * NewsML-G2, NITF and ninjs give them; NULL when the source says nothing. */
const char *nw_message_version(const nw_message_t *self);
const char *nw_message_located(const nw_message_t *self);
const char *nw_message_versioncreated(const nw_message_t *self);
size_t nw_message_subject_count(const nw_message_t *self);
const char *nw_message_subject(const nw_message_t *self, size_t index); /* NULL if out of range */
/* The subject's code in a controlled vocabulary ("medtop:13000000", an IPTC Media Topic)
 * and that vocabulary's URI; NULL when the subject has none or index is out of range. */
const char *nw_message_subject_code(const nw_message_t *self, size_t index);
const char *nw_message_subject_scheme(const nw_message_t *self, size_t index);

/* How many messages of this topic were missed right before this one (0: none). */
uint64_t nw_message_gap_before(const nw_message_t *self);
/* 1 when this message's epoch differs from the previous one on its topic: the publisher
 * lost its history and seq started over, so nothing can be said about what was missed. */
int nw_message_epoch_changed(const nw_message_t *self);

void nw_message_destroy(nw_message_t **self_p);

#ifdef __cplusplus
}
#endif
#endif
