/*
 * metrics: serves GET /metrics in Prometheus' text format (see metrics.h). HTTP is
 * libmicrohttpd's, polled from the libuv loop; the text is written afresh at each
 * scrape from the modules' stats getters, which is cheap (a few thousand lines at most:
 * per-topic series are capped by publish.c) and never stale.
 */
#include "metrics.h"
#include "log.h"

#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define MAX_CONNECTIONS 32u        /* scrapers are few; the rest wait in the backlog */
#define IDLE_TIMEOUT_S 10u         /* a connection that says nothing for this long goes */
#define REQUEST_MEMORY (32u << 10) /* per connection: request line and headers */
#define LOG_EVERY_MS 1000          /* MHD's complaints about clients, at most one a second */
#define OTHER_TOPIC "_other"       /* not a topic name (no '_' in topics): never a clash */

struct nw_metrics {
    struct MHD_Daemon *mhd;
    uv_poll_t poll;   /* MHD's epoll descriptor */
    uv_timer_t timer; /* MHD_get_timeout */
    int open_handles;
    nw_metrics_sources_t sources;
    char url[300];
    char start_error[256]; /* what MHD said while starting */
    bool starting;
    uint64_t last_log_ms;
};

/* ---------------------------------------------------------------- the endpoint */

int nw_metrics_parse_endpoint(const char *endpoint, char *host, size_t hostlen, unsigned *port,
                              char *errbuf, size_t errlen)
{
    if (strncmp(endpoint, "tcp://", 6) != 0) {
        snprintf(errbuf, errlen, "metrics endpoint '%s': expected tcp://HOST:PORT", endpoint);
        return -1;
    }
    const char *h = endpoint + 6, *colon;
    size_t len;
    if (*h == '[') {
        const char *close = strchr(h, ']');
        if (!close || close[1] != ':') {
            snprintf(errbuf, errlen, "metrics endpoint '%s': expected tcp://[ADDRESS]:PORT",
                     endpoint);
            return -1;
        }
        h++;
        len = (size_t) (close - h);
        colon = close + 1;
    } else {
        colon = strrchr(h, ':');
        len = colon ? (size_t) (colon - h) : 0;
        if (colon && memchr(h, ':', len)) {
            snprintf(errbuf, errlen, "metrics endpoint '%s': an IPv6 address goes in brackets",
                     endpoint);
            return -1;
        }
    }
    if (!colon || len == 0 || len >= hostlen || strcspn(h, ";/") < len) {
        snprintf(errbuf, errlen, "metrics endpoint '%s': expected tcp://HOST:PORT", endpoint);
        return -1;
    }
    const char *p = colon + 1;
    char *end;
    errno = 0;
    unsigned long n = strtoul(p, &end, 10);
    if (!*p || *end || errno || n > 65535 || *p == '-' || *p == '+') {
        snprintf(errbuf, errlen, "metrics endpoint '%s': port '%s' is not 0 to 65535", endpoint,
                 p);
        return -1;
    }
    if (len == 1 && *h == '*')
        len = 0;
    memcpy(host, h, len);
    host[len] = '\0';
    *port = (unsigned) n;
    return 0;
}

/* ---------------------------------------------------------------- the text */

typedef struct {
    char *data;
    size_t len, cap;
    bool failed;
} text_t;

static void put(text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text_t *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if ((size_t) n < t->cap - t->len) {
            t->len += (size_t) n;
            return;
        }
        size_t cap = t->cap * 2 > t->len + (size_t) n + 1 ? t->cap * 2 : t->len + (size_t) n + 1;
        char *grown = realloc(t->data, cap);
        if (!grown) {
            t->failed = true;
            return;
        }
        t->data = grown;
        t->cap = cap;
    }
}

static void family(text_t *t, const char *name, const char *type, const char *help)
{
    put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(text_t *t, const char *name, const char *type, const char *help, uint64_t v)
{
    family(t, name, type, help);
    put(t, "%s %" PRIu64 "\n", name, v);
}

/* A label value in the exposition's escaping: backslash, double quote, line feed. */
static const char *label(const char *value, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *c = value; *c && o + 3 < outlen; c++) {
        if (*c == '\\' || *c == '"' || *c == '\n') {
            out[o++] = '\\';
            out[o++] = *c == '\n' ? 'n' : *c;
        } else
            out[o++] = *c;
    }
    out[o] = '\0';
    return out;
}

static void render_build(text_t *t)
{
    int major, minor, patch;
    zmq_version(&major, &minor, &patch);
    char mhd[64];
    family(t, "newswired_build_info", "gauge",
           "Always 1; the labels say which newswired and libraries are running.");
    put(t, "newswired_build_info{version=\"%s\",libzmq=\"%d.%d.%d\",libmicrohttpd=\"%s\"} 1\n",
        NW_VERSION, major, minor, patch, label(MHD_get_version(), mhd, sizeof mhd));
}

static void render_feed(text_t *t, const nw_feed_t *feed)
{
    nw_feed_stats_t fs;
    nw_feed_stats(feed, &fs);
    one(t, "newswired_articles_published_total", "counter",
        "Articles published (each as one message per topic).", fs.published);
    one(t, "newswired_articles_duplicate_total", "counter",
        "Articles archived unpublished: their id went out within the dedup window.",
        fs.duplicates);
    one(t, "newswired_journal_write_failing", "gauge",
        "1 while journal writes fail (disk full or failing): no file is taken until one "
        "succeeds.",
        fs.journal_failing);
}

static void render_pipeline(text_t *t, const nw_pipeline_t *pipeline, const nw_watch_t *watch)
{
    nw_pipeline_stats_t ps;
    nw_pipeline_stats(pipeline, &ps);
    nw_watch_stats_t ws = {0};
    if (watch)
        nw_watch_stats(watch, &ws);
    one(t, "newswired_articles_rejected_total", "counter",
        "Files moved to STATE/rejected with their reason.", ps.rejected);
    family(t, "newswired_files_waiting", "gauge",
           "Files in the drop folder not finished yet: found by a scan and held until "
           "the pipeline has room, queued to be read, or being read, published or "
           "archived.");
    put(t, "newswired_files_waiting{stage=\"scanned\"} %lu\n", ws.backlog);
    put(t, "newswired_files_waiting{stage=\"queued\"} %lu\n", ps.pending);
    put(t, "newswired_files_waiting{stage=\"in_flight\"} %lu\n", ps.in_flight);
    family(t, "newswired_files_read_total", "counter",
           "Files opened and read: on the loop thread (few waiting, small, in a local "
           "folder) or on the thread pool.");
    put(t, "newswired_files_read_total{thread=\"loop\"} %lu\n", ps.read_here);
    put(t, "newswired_files_read_total{thread=\"pool\"} %lu\n", ps.read_pool);
    family(t, "newswired_files_moved_total", "counter",
           "Moves out of the drop folder (archive or rejected/, retries included): renames "
           "on the loop thread (few waiting, both folders local) or on the thread pool.");
    put(t, "newswired_files_moved_total{thread=\"loop\"} %lu\n", ps.moved_here);
    put(t, "newswired_files_moved_total{thread=\"pool\"} %lu\n", ps.moved_pool);
    static const char *const stages[NW_STAGE_COUNT] = {[NW_STAGE_QUEUED] = "queued",
                                                       [NW_STAGE_READ] = "read",
                                                       [NW_STAGE_ORDER] = "order",
                                                       [NW_STAGE_COMMIT] = "commit",
                                                       [NW_STAGE_ARCHIVE] = "archive"};
    family(t, "newswired_files_stage_seconds_total", "counter",
           "Seconds files spent in each stage, added up over files: its rate is the mean "
           "number of files in the stage. queued to be read; read (and parsed); order "
           "(waiting for an older file still being read); commit (journal write, "
           "fdatasync, publish); archive (waiting for the move, and moving).");
    for (int s = 0; s < NW_STAGE_COUNT; s++)
        put(t, "newswired_files_stage_seconds_total{stage=\"%s\"} %.6f\n", stages[s],
            (double) ps.stage_ns[s] / 1e9);
    one(t, "newswired_files_retrying", "gauge",
        "1 while files wait for a fault of the machine (no descriptors, no memory, a full "
        "state disk) and are retried; STATUS says which.",
        ps.file_errno != 0);
    if (!watch)
        return;
    one(t, "newswired_watch_events_total", "counter",
        "inotify events read: a file renamed in is one, one written in place two (its "
        "creation and its close); moving files out makes none.",
        ws.events);
    one(t, "newswired_watch_overflows_total", "counter",
        "inotify queue overflows; each made the drop folder be scanned again.", ws.overflows);
    one(t, "newswired_watch_rescans_total", "counter",
        "Scans of the whole drop folder after the first one.", ws.rescans);
    one(t, "newswired_watch_subfolders", "gauge", "Drop subfolders watched.", ws.subdirs);
    one(t, "newswired_watch_unwatched_subfolders", "gauge",
        "Drop subfolders that cannot be watched (inotify's limit?): scanned each tick.",
        ws.unwatched);
    one(t, "newswired_watch_drop_missing", "gauge",
        "1 while the drop folder is missing: files put where it was are not seen.",
        ws.drop_missing);
    one(t, "newswired_watch_drop_polled", "gauge",
        "1 while the drop folder is there but cannot be watched: scanned each tick.",
        ws.drop_polled);
}

static void render_topics(text_t *t, const nw_publish_t *publish, const nw_journal_t *journal)
{
    const nw_publish_topic_t *topics;
    nw_publish_topic_t other;
    size_t n = nw_publish_topics(publish, &topics, &other);
    family(t, "newswired_messages_total", "counter",
           "Messages handed to ZeroMQ, per topic (the first 1000 topics published since "
           "start; the later ones add up in topic=\"" OTHER_TOPIC "\").");
    for (size_t i = 0; i < n; i++)
        put(t, "newswired_messages_total{topic=\"%s\"} %lu\n", topics[i].topic,
            topics[i].messages);
    if (other.messages)
        put(t, "newswired_messages_total{topic=\"" OTHER_TOPIC "\"} %lu\n", other.messages);
    family(t, "newswired_message_bytes_total", "counter",
           "Body bytes of those messages, per topic.");
    for (size_t i = 0; i < n; i++)
        put(t, "newswired_message_bytes_total{topic=\"%s\"} %lu\n", topics[i].topic,
            topics[i].bytes);
    if (other.messages)
        put(t, "newswired_message_bytes_total{topic=\"" OTHER_TOPIC "\"} %lu\n", other.bytes);
    if (!journal)
        return;
    family(t, "newswired_topic_seq", "gauge",
           "The newest seq journaled durably, and so published, on each topic of "
           "newswired_messages_total (none for topic=\"" OTHER_TOPIC "\").");
    for (size_t i = 0; i < n; i++)
        put(t, "newswired_topic_seq{topic=\"%s\"} %" PRIu64 "\n", topics[i].topic,
            nw_journal_durable_seq(journal, topics[i].topic));
}

static void render_publish(text_t *t, const nw_publish_t *publish)
{
    nw_publish_stats_t pub;
    nw_publish_stats(publish, &pub);
    one(t, "newswired_subscriptions", "gauge",
        "Subscriptions in force on the live endpoint, all subscribers together.",
        pub.subscriptions > 0 ? (uint64_t) pub.subscriptions : 0);
    one(t, "newswired_subscriber_queue_full_total", "counter",
        "Times a subscriber's queue was found full (--send-hwm): it misses messages from "
        "then until it has read its queue down, and sees the gap in seqs.",
        pub.dropped);
    one(t, "newswired_subscriptions_denied_total", "counter",
        "Subscriptions refused or narrowed by the CURVE grants.", pub.denied);
}

static void render_replay(text_t *t, const nw_replay_t *replay)
{
    nw_replay_stats_t rs;
    nw_replay_stats(replay, &rs);
    one(t, "newswired_replay_streams_active", "gauge", "Replay streams being served.",
        rs.streams_active);
    one(t, "newswired_replay_streams_total", "counter", "Replay streams started.", rs.streams);
    one(t, "newswired_replay_messages_total", "counter", "Messages sent by replay.", rs.messages);
    one(t, "newswired_replay_bytes_total", "counter",
        "Body bytes of the messages sent by replay.", rs.bytes);
    one(t, "newswired_replay_errors_total", "counter", "Replay requests answered with an error.",
        rs.errors);
    one(t, "newswired_replay_refused_total", "counter",
        "New replay streams refused as busy (the replay budget was spent).", rs.refused);
    one(t, "newswired_replay_pauses_total", "counter",
        "Times a replay stream was paused for holding more than its share.", rs.pauses);
    one(t, "newswired_replay_idle_dropped_total", "counter", "Replay streams dropped for idling.",
        rs.idle_dropped);
    one(t, "newswired_replay_streams_paused", "gauge", "Replay streams paused now.", rs.paused);
    one(t, "newswired_replay_held_bytes", "gauge",
        "Replies read from the journal and not yet sent (bounded by --replay-max-bytes).",
        rs.bytes_held);
    one(t, "newswired_replay_open_files", "gauge",
        "Journal segments open for replay (bounded by --replay-max-files).", rs.files_open);
}

/* A relay's upstream: state, counts, and lag per topic (the first 1000 topics seen). */
static void render_upstream(text_t *t, nw_upstream_t *upstream)
{
    nw_upstream_stats_t us;
    nw_upstream_stats(upstream, &us);
    one(t, "newswired_upstream_connected", "gauge",
        "1 while the relay's SUB has a live, handshaken connection to its upstream.",
        us.connected);
    one(t, "newswired_upstream_connects_total", "counter",
        "Connections to the upstream made (handshakes done).", us.connects);
    one(t, "newswired_upstream_forwarded_total", "counter",
        "Upstream messages journaled and published by the relay, live or replayed.",
        us.forwarded);
    one(t, "newswired_upstream_gaps_total", "counter",
        "Gaps in the upstream's live seqs, each filled from its replay before going on.",
        us.gaps);
    one(t, "newswired_upstream_repaired_total", "counter",
        "Messages fetched from the upstream's replay (gaps, catch-up after a restart).",
        us.repaired);
    one(t, "newswired_upstream_replays_total", "counter",
        "Replay streams asked of the upstream, one at a time: gap fills, and a probe per "
        "topic seen at each connection and after half a second of quiet following live "
        "traffic (answered at once when nothing is newer).",
        us.replays);
    one(t, "newswired_upstream_replay_errors_total", "counter",
        "Upstream replays refused ($error) or silent, asked again or given up.",
        us.replay_errors);
    one(t, "newswired_upstream_dropped_total", "counter",
        "Upstream messages dropped as malformed.", us.bad);
    one(t, "newswired_upstream_lag", "gauge",
        "Seqs seen from the upstream and not yet journaled here, all topics together.", us.lag);
    one(t, "newswired_upstream_topics_stopped", "gauge",
        "Topics no longer forwarded: a hole the upstream cannot fill, or a new upstream "
        "history below what the relay holds (STATUS and the log say which).",
        us.stopped);
    nw_upstream_topic_t *topics = malloc(NW_PUBLISH_TOPICS_MAX * sizeof *topics);
    if (!topics) {
        t->failed = true;
        return;
    }
    size_t n = nw_upstream_topics(upstream, topics, NW_PUBLISH_TOPICS_MAX);
    family(t, "newswired_upstream_topic_lag", "gauge",
           "Per topic: the upstream's newest seq seen minus the relay's newest journaled.");
    for (size_t i = 0; i < n; i++)
        put(t, "newswired_upstream_topic_lag{topic=\"%s\"} %" PRIu64 "\n", topics[i].topic,
            topics[i].head - topics[i].last);
    free(topics);
}

static void render_journal(text_t *t, const nw_journal_t *journal)
{
    nw_journal_stats_t js;
    nw_journal_stats(journal, &js);
    char epoch[64];
    family(t, "newswired_journal_epoch_info", "gauge",
           "Always 1; the label is the journal's epoch, which changes only when its "
           "history was lost.");
    put(t, "newswired_journal_epoch_info{epoch=\"%s\"} 1\n",
        label(nw_journal_epoch(journal), epoch, sizeof epoch));
    one(t, "newswired_journal_bytes", "gauge", "Bytes of journal records on disk.", js.bytes);
    one(t, "newswired_journal_segments", "gauge", "Journal segment files.", js.segments);
    one(t, "newswired_journal_records", "gauge", "Records in the journal.", js.records);
    one(t, "newswired_journal_topics", "gauge", "Topics with a seq in the journal.", js.topics);
    one(t, "newswired_journal_fsyncs_total", "counter", "fdatasync calls of group writes.",
        js.fsyncs);
    one(t, "newswired_journal_write_failures_total", "counter",
        "Journal group writes that failed (their articles were retried).", js.failures);
    one(t, "newswired_journal_zero_bytes", "gauge",
        "Zeros written ahead of the records, so that a commit's fdatasync writes no new "
        "file size: the current segment's tail and the prepared next segment. Retention "
        "by size counts them.",
        js.zeros);
    one(t, "newswired_journal_prepared_bytes", "gauge",
        "The next segment, made ready on the thread pool: its size, or 0 while none is "
        "ready.",
        js.prepared);
    one(t, "newswired_journal_prepare_failures_total", "counter",
        "Next segments that could not be made ready (a full disk, say); tried again at the "
        "next segment.",
        js.prepare_failures);
    static const uint64_t bounds_us[] = NW_JOURNAL_LATENCY_BOUNDS_US;
    family(t, "newswired_journal_commit_seconds", "histogram",
           "Duration of each journal group write, which articles wait for before they "
           "are published: waiting for a pool thread, write and fdatasync.");
    uint64_t below = 0;
    for (size_t i = 0; i + 1 < NW_JOURNAL_LATENCY_BUCKETS; i++) {
        below += js.write_buckets[i];
        put(t, "newswired_journal_commit_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
            (double) bounds_us[i] / 1e6, below);
    }
    put(t, "newswired_journal_commit_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", js.writes);
    put(t, "newswired_journal_commit_seconds_sum %.9f\n", (double) js.write_ns / 1e9);
    put(t, "newswired_journal_commit_seconds_count %" PRIu64 "\n", js.writes);
}

char *nw_metrics_render(const nw_metrics_sources_t *s, size_t *len)
{
    text_t t = {.cap = 16384};
    t.data = malloc(t.cap);
    if (!t.data)
        return NULL;
    t.data[0] = '\0';
    render_build(&t);
    if (s->feed)
        render_feed(&t, s->feed);
    if (s->pipeline)
        render_pipeline(&t, s->pipeline, s->watch);
    if (s->publish) {
        render_publish(&t, s->publish);
        render_topics(&t, s->publish, s->journal);
    }
    if (s->replay)
        render_replay(&t, s->replay);
    if (s->upstream)
        render_upstream(&t, s->upstream);
    if (s->journal)
        render_journal(&t, s->journal);
    if (t.failed) {
        free(t.data);
        return NULL;
    }
    *len = t.len;
    return t.data;
}

/* ---------------------------------------------------------------- HTTP */

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, char *body,
                               size_t len, bool owned)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        if (owned)
            free(body);
        return MHD_NO; /* MHD closes the connection */
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            status == MHD_HTTP_OK ? CONTENT_TYPE : "text/plain; charset=utf-8");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    nw_metrics_t *self = cls;
    (void) version;
    (void) upload_data;
    (void) req_cls;
    /* Answered at once, before any body: a body is never read (MHD discards it and
     * closes the connection after the answer). */
    *upload_data_size = 0;
    static char not_found[] = "not found: the metrics are at /metrics\n";
    static char not_allowed[] = "only GET and HEAD\n";
    static char no_memory[] = "out of memory\n";
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed, strlen(not_allowed),
                       false);
    if (strcmp(url, "/metrics") != 0)
        return respond(conn, MHD_HTTP_NOT_FOUND, not_found, strlen(not_found), false);
    size_t len;
    char *text = nw_metrics_render(&self->sources, &len);
    if (!text)
        return respond(conn, MHD_HTTP_SERVICE_UNAVAILABLE, no_memory, strlen(no_memory), false);
    return respond(conn, MHD_HTTP_OK, text, len, true);
}

/* MHD's own messages: why it could not start, or what it thought of a client. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    nw_metrics_t *self = cls;
    char line[256];
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\r\n")] = '\0';
    if (self->starting) {
        if (!self->start_error[0])
            snprintf(self->start_error, sizeof self->start_error, "%s", line);
        return;
    }
    uint64_t now = uv_now(self->poll.loop);
    if (now - self->last_log_ms >= LOG_EVERY_MS) {
        self->last_log_ms = now;
        nw_info("metrics: %s", line);
    }
}

static void on_timer(uv_timer_t *timer);

static unsigned connections(nw_metrics_t *self)
{
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(self->mhd,
                                                        MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return i ? i->num_connections : 0;
}

/* Let MHD do what is ready, then wake it again when it says it has to be. At its
 * connection limit MHD stops taking connections, and it takes up the listening socket
 * again only at the start of a run: when a run freed slots, run again at once, or the
 * connections waiting in the backlog would wait for a wake-up that never comes (seen:
 * 40 idle connections against a limit of 32 left the endpoint deaf for good). */
static void service(nw_metrics_t *self)
{
    unsigned before = connections(self);
    MHD_run(self->mhd);
    if (connections(self) < before)
        MHD_run(self->mhd);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(self->mhd, &ms) == MHD_YES)
        uv_timer_start(&self->timer, on_timer, ms, 0);
    else
        uv_timer_stop(&self->timer);
}

static void on_timer(uv_timer_t *timer)
{
    service(timer->data);
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    (void) status;
    (void) events;
    service(handle->data);
}

nw_metrics_t *nw_metrics_new(uv_loop_t *loop, const char *endpoint,
                             const nw_metrics_sources_t *sources, char *errbuf, size_t errlen)
{
    char host[256];
    unsigned port;
    if (nw_metrics_parse_endpoint(endpoint, host, sizeof host, &port, errbuf, errlen) != 0)
        return NULL;
    nw_metrics_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    self->sources = *sources;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char service_name[8];
    snprintf(service_name, sizeof service_name, "%u", port);
    int gai = getaddrinfo(*host ? host : NULL, service_name, &hints, &ai);
    if (gai != 0) {
        snprintf(errbuf, errlen, "metrics endpoint %s: %s", endpoint, gai_strerror(gai));
        goto fail;
    }
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    self->starting = true;
    self->mhd = MHD_start_daemon(flags, (uint16_t) port, NULL, NULL, on_request, self,
                                 MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT,
                                 MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT, IDLE_TIMEOUT_S,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) REQUEST_MEMORY,
                                 MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, self, MHD_OPTION_END);
    self->starting = false;
    freeaddrinfo(ai);
    if (!self->mhd) {
        snprintf(errbuf, errlen, "cannot serve metrics on %s: %s", endpoint,
                 self->start_error[0] ? self->start_error : "libmicrohttpd refused to start");
        goto fail;
    }
    const union MHD_DaemonInfo *epoll = MHD_get_daemon_info(self->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *bound = MHD_get_daemon_info(self->mhd, MHD_DAEMON_INFO_BIND_PORT);
    if (!epoll || uv_poll_init(loop, &self->poll, epoll->epoll_fd) != 0) {
        snprintf(errbuf, errlen, "cannot poll the metrics endpoint");
        goto fail;
    }
    uv_timer_init(loop, &self->timer);
    self->poll.data = self->timer.data = self;
    self->open_handles = 2;
    snprintf(self->url, sizeof self->url, "http://%s%s%s:%u/metrics",
             strchr(host, ':') ? "[" : "", *host ? host : "*", strchr(host, ':') ? "]" : "",
             bound ? bound->port : port);
    uv_poll_start(&self->poll, UV_READABLE, on_poll);
    service(self);
    return self;
fail:
    if (self->mhd)
        MHD_stop_daemon(self->mhd);
    free(self);
    return NULL;
}

const char *nw_metrics_url(const nw_metrics_t *self)
{
    return self->url;
}

static void on_close(uv_handle_t *handle)
{
    nw_metrics_t *self = handle->data;
    if (--self->open_handles == 0)
        free(self);
}

void nw_metrics_destroy(nw_metrics_t **self_p)
{
    nw_metrics_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    /* The poll leaves epoll before MHD closes the descriptor under it. */
    uv_poll_stop(&self->poll);
    uv_timer_stop(&self->timer);
    MHD_stop_daemon(self->mhd);
    self->mhd = NULL;
    uv_close((uv_handle_t *) &self->poll, on_close);
    uv_close((uv_handle_t *) &self->timer, on_close);
}
