/*
 * metrics: the Prometheus endpoint (--metrics tcp://HOST:PORT): GET /metrics answers
 * the text exposition format 0.0.4 with the counters of every module.
 *
 * HTTP is libmicrohttpd's, run in its external polling mode on the loop thread: its
 * epoll descriptor joins the libuv loop through uv_poll, a libuv timer follows
 * MHD_get_timeout (idle connections, work MHD has pending), and each wake-up calls
 * MHD_run, which never blocks (MHD's sockets are non-blocking). So a scrape reads the
 * modules' stats getters on the thread that changes them: no lock, no copy, nothing
 * stale. A slow, stalled or hostile client costs a connection slot, which MHD bounds in
 * number, memory and idle time; it never holds the loop.
 * Other paths answer 404, other methods than GET and HEAD 405; what MHD itself finds
 * malformed or too large it answers (400, 414, 431) and closes.
 * Data enters through the borrowed modules of nw_metrics_sources_t (any may be NULL:
 * its series are left out) and leaves as HTTP responses; nothing is kept between two
 * scrapes.
 * Loop-thread only.
 */
#ifndef NW_METRICS_H
#define NW_METRICS_H

#include "feed.h"
#include "journal.h"
#include "pipeline.h"
#include "publish.h"
#include "replay.h"
#include "upstream.h"
#include "watch.h"

#include <stddef.h>
#include <uv.h>

typedef struct nw_metrics nw_metrics_t;

/* The modules read at each scrape; they must outlive the metrics (or be NULL). */
typedef struct {
    nw_journal_t *journal;
    nw_feed_t *feed;
    nw_pipeline_t *pipeline;
    nw_publish_t *publish;
    nw_replay_t *replay;
    nw_watch_t *watch;
    nw_upstream_t *upstream; /* a relay's input */
} nw_metrics_sources_t;

/* "tcp://HOST:PORT" with HOST an IPv4 address, a bracketed IPv6 one ("[::1]"), a name
 * ("localhost") or "*" (every address), PORT 0 to 65535 (0: the kernel picks one).
 * Writes HOST without brackets ("" for "*"); 0, or -1 with the reason. */
int nw_metrics_parse_endpoint(const char *endpoint, char *host, size_t hostlen, unsigned *port,
                              char *errbuf, size_t errlen);

/* Bind endpoint and serve. Whether the endpoint may be bound in clear text at all is the
 * caller's decision (main.c: loopback, or --insecure). NULL with the reason. */
nw_metrics_t *nw_metrics_new(uv_loop_t *loop, const char *endpoint,
                             const nw_metrics_sources_t *sources, char *errbuf, size_t errlen);

/* Where it listens, as "http://127.0.0.1:9464/metrics" (a port 0 resolved). */
const char *nw_metrics_url(const nw_metrics_t *self);

/* The exposition text of one scrape (malloc'd, *len bytes, NUL-terminated), or NULL
 * when out of memory. */
char *nw_metrics_render(const nw_metrics_sources_t *sources, size_t *len);

/* Closes the connections and the listening socket at once; the libuv handles finish
 * closing when the loop runs next, which frees the rest. */
void nw_metrics_destroy(nw_metrics_t **self_p);

#endif
