/*
 * replay: the ROUTER endpoint where a subscriber asks for a topic's journaled messages
 * (protocol: proto/newswire-v1.md section 8).
 *
 * Requests enter as one MessagePack frame behind the ROUTER identity; each client has at
 * most one stream: a journal cursor read in batches on libuv's thread pool (at most one
 * read in flight per client, and NW_REPLAY_POOL_JOBS in all, which main counts in the
 * pool's size so the journal's own group writes never queue behind replays), then sent from the
 * loop thread without blocking, never beyond the credit the client granted. Whatever clients do,
 * replay holds bounded memory and descriptors: every reply read out of the journal is counted
 * from that read until ZeroMQ has written it to the connection or dropped it with the connection;
 * all streams together hold at most max_bytes (plus one record per read in flight), each at most
 * its share (max_bytes split between the streams), and a stream past it is paused, reading
 * nothing more until ZeroMQ takes what it holds; a new stream that finds the budget spent is
 * refused as "busy". A cursor holds at most one segment file, only while its stream is moving,
 * and all cursors together at most max_files. A stream that moves nothing for idle_ms is dropped,
 * and ZMTP heartbeats disconnect a peer that answers nothing for as long. Replies leave as [topic
 * + ".", body] data (byte for byte as on the live endpoint),
 * ["$end", map] or ["$error", map]; proto/nw_replay parses the requests and packs the
 * maps, as the client library does the other way round.
 * Loop-thread only, except the cursor reads inside the thread-pool jobs and the release
 * of sent replies (a ZeroMQ I/O thread, counted with atomics, see replay.c).
 */
#ifndef NW_REPLAY_H
#define NW_REPLAY_H

#include "journal.h"
#include "nw_replay.h" /* the messages: requests, $end, $error (proto/) */

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define NW_REPLAY_MAX_STREAMS 256 /* more concurrent streams: "busy" */
/* Cursor reads on libuv's thread pool at once, whatever the number of streams (main
 * sizes the pool from it). */
#define NW_REPLAY_POOL_JOBS 2

typedef struct {
    uint64_t max_bytes; /* replies held (read, not yet written) in all */
    unsigned max_files; /* segment files open for replay in all */
    int64_t idle_ms;    /* a stream that moves nothing this long is dropped */
} nw_replay_options_t;

typedef struct nw_replay nw_replay_t;

/* A ROUTER with the options replay relies on (request size cap, no linger, unreachable
 * peers reported instead of blocking); the caller may add security, then binds it. */
zsock_t *nw_replay_socket_new(int send_hwm, int64_t idle_ms, char *errbuf, size_t errlen);

/* Takes ownership of the bound router (also on failure). NULL with the reason. options
 * are kept as given (a reload changes none of them). */
nw_replay_t *nw_replay_new(uv_loop_t *loop, nw_journal_t *journal, zsock_t *router,
                           nw_replay_options_t options, char *errbuf, size_t errlen);

/* allowed(arg, user_id, topic) is asked for every replay request; user_id is the request
 * frame's ZAP "User-Id" (NULL without one). false: a "denied" error. */
typedef bool(nw_replay_allowed_fn)(void *arg, const char *user_id, const char *topic);
void nw_replay_set_authorizer(nw_replay_t *self, nw_replay_allowed_fn *allowed, void *arg);

typedef struct {
    unsigned long streams_active; /* now */
    unsigned long streams;        /* started since start */
    unsigned long messages;       /* data messages sent */
    unsigned long bytes;          /* their bodies' bytes */
    unsigned long errors;         /* error replies sent */
    unsigned long refused;        /* new streams refused as busy */
    unsigned long pauses;         /* times a stream was paused past its share */
    unsigned long idle_dropped;   /* streams dropped for idling */
    size_t bytes_held;            /* now: replies read and not yet written */
    unsigned files_open;          /* now: segment files open for replay */
    unsigned paused;              /* now: streams paused */
} nw_replay_stats_t;
void nw_replay_stats(const nw_replay_t *self, nw_replay_stats_t *out);

/* Stops serving at once; memory (and the socket) is freed once the loop has run the
 * handle closes and the reads still in flight have finished. */
void nw_replay_destroy(nw_replay_t **self_p);

#endif
