/*
 * newswired: wires the modules together on one libuv loop and talks to systemd.
 *
 * Start-up order matters: the state folder is locked before anything in it is touched
 * (a second daemon on it exits 1), the journal is recovered before anything is
 * published (seqs come from it), the sockets are bound before READY=1, and the watcher starts
 * last so the backlog scan feeds a pipeline that can already publish. Signals are libuv's: CZMQ's
 * own SIGINT/SIGTERM handler is switched off before CZMQ initialises.
 */
#include "archive.h"
#include "auth.h"
#include "config.h"
#include "feed.h"
#include "fsutil.h"
#include "journal.h"
#include "log.h"
#include "metrics.h"
#include "nw_epgm.h"
#include "pipeline.h"
#include "publish.h"
#include "replay.h"
#include "route.h"
#include "statelock.h"
#include "text.h"
#include "upstream.h"
#include "watch.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define STATUS_MS 1000
#define SUMMARY_MS 60000
#define STOP_DEADLINE_MS 4500               /* systemd and scripts expect an exit within 5 s */
#define NW_MULTICAST_WINDOW_MAX (256 << 20) /* bytes PGM may keep to repair losses */

typedef struct {
    uv_loop_t *loop;
    int argc;
    char **argv;
    nw_config_t config;
    nw_statelock_t *lock; /* STATE/lock, held until exit */
    nw_journal_t *journal;
    nw_rules_t *rules;
    nw_auth_t *auth; /* NULL without --curve-secret: clear text */
    nw_publish_t *publish;
    nw_replay_t *replay; /* NULL without --replay */
    nw_feed_t *feed;
    nw_pipeline_t *pipeline;
    nw_watch_t *watch;       /* NULL with --upstream: no drop folder */
    nw_upstream_t *upstream; /* NULL without --upstream */
    nw_metrics_t *metrics;   /* NULL without --metrics */
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t status_timer, watchdog_timer, deadline;
    char last_status[768];
    int reserve_fd; /* lent to sd_notify when descriptors run out */
    unsigned long status_ticks;
    nw_pipeline_stats_t summary; /* counters at the last summary line */
    nw_feed_stats_t feed_summary;
    nw_upstream_stats_t upstream_summary;
    bool handles_ready; /* the signal and timer handles were initialised */
    bool stopping;
    int exit_code;
} daemon_t;

/* Files seen but not finished: queued or in flight in the pipeline, or found by a scan
 * and held by the watcher until the pipeline has room. */
static unsigned long files_waiting(const daemon_t *d, const nw_pipeline_stats_t *ps)
{
    nw_watch_stats_t ws = {0};
    if (d->watch)
        nw_watch_stats(d->watch, &ws);
    return ps->pending + ps->in_flight + ws.backlog;
}

/* libuv's thread pool serves every module and starts, with UV_THREADPOOL_SIZE threads
 * (4 when unset), at the first job queued. It is sized here, before any, to the jobs the
 * modules may have queued at once (file reads and the archive, the journal's group
 * write, id read-back and next segment's preparation, replay's cursor reads), so that
 * no job waits for a thread: above all a group write (and so the live feed) never
 * queues behind replay or file reads, as it did on libuv's 4 threads with 2 + 1 + 2 + 1
 * of them busy. A larger size from the environment is kept. Returns the size. */
static unsigned long size_thread_pool(const nw_config_t *c)
{
    unsigned long want = NW_PIPELINE_POOL_JOBS + NW_JOURNAL_POOL_JOBS +
                         (c->replay_count ? NW_REPLAY_POOL_JOBS : 0);
    const char *given = getenv("UV_THREADPOOL_SIZE");
    unsigned long n = given ? strtoul(given, NULL, 10) : 0; /* what libuv would take */
    if (n >= want)
        return n < 1024 ? n : 1024; /* libuv's own cap (MAX_THREADPOOL_SIZE) */
    char text[24];
    snprintf(text, sizeof text, "%lu", want);
    if (setenv("UV_THREADPOOL_SIZE", text, 1) != 0)
        return n ? n : 4;
    return want;
}

/* The rules of the config's file (built-in without a "rules" section). */
static nw_rules_t *rules_from(const nw_config_t *c, char *err, size_t errlen)
{
    nw_rules_options_t *options;
    if (nw_config_rules(c->file, &options, err, errlen) != 0)
        return NULL;
    nw_rules_t *rules = nw_rules_new(options, err, errlen);
    nw_config_rules_free(&options);
    return rules;
}

/* Start auth, or (auth given) reload it, with the grants of the config's file. */
static int auth_from(const nw_config_t *c, nw_auth_t **auth, char *err, size_t errlen)
{
    nw_auth_grant_t *grants;
    size_t count;
    if (nw_config_grants(c->file, &grants, &count) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    if (*auth)
        rc = nw_auth_reload(*auth, grants, count, err, errlen);
    else {
        nw_auth_options_t options = {.secret_cert = c->curve_secret,
                                     .clients_dir = c->clients_dir,
                                     .grants = grants,
                                     .grant_count = count};
        *auth = nw_auth_new(options, err, errlen);
        rc = *auth ? 0 : -1;
    }
    free(grants);
    return rc;
}

static int make_dir(const char *path, char *errbuf, size_t errlen)
{
    if (nw_fs_mkdir_p(path) == 0)
        return 0;
    snprintf(errbuf, errlen, "cannot create %s: %s", path, strerror(errno));
    return -1;
}

/* sd_notify opens a socket for every message: with every descriptor taken (the very
 * fault STATUS= must then report) it could say nothing. One descriptor is kept in
 * reserve and lent to it when it fails for want of one. */
static int notify(daemon_t *d, const char *text)
{
    int rc = sd_notify(0, text);
    if ((rc == -EMFILE || rc == -ENFILE) && d->reserve_fd >= 0) {
        close(d->reserve_fd);
        rc = sd_notify(0, text);
        d->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    return rc;
}

static void update_status(daemon_t *d)
{
    nw_pipeline_stats_t ps;
    nw_feed_stats_t fs;
    nw_publish_stats_t pub;
    nw_watch_stats_t ws = {0};
    nw_pipeline_stats(d->pipeline, &ps);
    nw_feed_stats(d->feed, &fs);
    nw_publish_stats(d->publish, &pub);
    const char *problem = "";
    if (d->watch) {
        nw_watch_stats(d->watch, &ws);
        problem = nw_watch_problem(d->watch);
    }
    char status[768], fault[160] = "", journal[128] = "";
    /* why, since a failing disk (EIO) wants another remedy than a full one (ENOSPC) */
    if (fs.journal_failing)
        snprintf(journal, sizeof journal, "JOURNAL WRITES FAILING (%s): not %s; ",
                 strerror(fs.journal_errno), d->upstream ? "forwarding" : "taking files");
    if (ps.file_errno)
        snprintf(fault, sizeof fault,
                 "FILES WAITING: cannot open or move files (%s), "
                 "retrying; ",
                 strerror(ps.file_errno));
    /* Files in a missing drop folder cannot be counted: never claim "0 pending". */
    char pending[64];
    if (ws.drop_missing)
        snprintf(pending, sizeof pending, "pending unknown (%lu in hand)", files_waiting(d, &ps));
    else
        snprintf(pending, sizeof pending, "%lu pending", files_waiting(d, &ps));
    int n;
    if (d->upstream) {
        /* A relay takes no files: what it carries is what it forwarded (journaled and
         * sent), and its problems are the upstream's. */
        nw_upstream_stats_t us;
        nw_upstream_stats(d->upstream, &us);
        const char *up = nw_upstream_problem(d->upstream);
        n = snprintf(status, sizeof status,
                     "STATUS=%s%s%supstream %s: %lu forwarded, lag %llu, %lu gaps repaired "
                     "(%lu messages), %lu topics; %ld subscriptions, %lu drops",
                     journal, up, *up ? "; " : "", us.connected ? "connected" : "NOT CONNECTED",
                     fs.forwarded, (unsigned long long) us.lag, us.gaps, us.repaired, us.topics,
                     pub.subscriptions, pub.dropped);
    } else
        n = snprintf(status, sizeof status,
                     "STATUS=%s%s%s%s%lu published, %lu rejected, %lu duplicates, %s, "
                     "%ld subscriptions, %lu drops",
                     journal, fault, problem, *problem ? "; " : "", fs.published, ps.rejected,
                     fs.duplicates, pending, pub.subscriptions, pub.dropped);
    if (d->replay && n > 0 && (size_t) n < sizeof status) {
        nw_replay_stats_t rs;
        nw_replay_stats(d->replay, &rs);
        snprintf(status + n, sizeof status - (size_t) n,
                 ", %lu replay streams (%zu KiB held, %u paused, %u files)", rs.streams_active,
                 (rs.bytes_held + 1023) / 1024, rs.paused, rs.files_open);
    }
    /* what could not be sent is tried again at the next tick */
    if (strcmp(status, d->last_status) != 0 && notify(d, status) >= 0)
        memcpy(d->last_status, status, sizeof status);
}

/* Articles are logged one by one at debug level only (a line per article costs a
 * write on the loop thread); info gets a summary a minute while anything happens. */
static void log_summary(daemon_t *d)
{
    nw_pipeline_stats_t ps;
    nw_feed_stats_t fs;
    nw_pipeline_stats(d->pipeline, &ps);
    nw_feed_stats(d->feed, &fs);
    unsigned long published = fs.published - d->feed_summary.published;
    unsigned long rejected = ps.rejected - d->summary.rejected;
    unsigned long duplicates = fs.duplicates - d->feed_summary.duplicates;
    if (d->upstream) {
        nw_upstream_stats_t us;
        nw_upstream_stats(d->upstream, &us);
        unsigned long forwarded = fs.forwarded - d->feed_summary.forwarded;
        if (forwarded)
            nw_info("last minute: %lu forwarded (%lu fetched by replay); lag %llu", forwarded,
                    us.repaired - d->upstream_summary.repaired, (unsigned long long) us.lag);
        d->upstream_summary = us;
    } else if (published || rejected || duplicates)
        nw_info("last minute: %lu published (%lu messages), %lu rejected, %lu duplicates; "
                "%lu waiting",
                published, fs.messages - d->feed_summary.messages, rejected, duplicates,
                files_waiting(d, &ps));
    d->summary = ps;
    d->feed_summary = fs;
}

static void on_status(uv_timer_t *timer)
{
    daemon_t *d = timer->data;
    update_status(d);
    if (++d->status_ticks % (SUMMARY_MS / STATUS_MS) == 0)
        log_summary(d);
}

static void on_watchdog(uv_timer_t *timer)
{
    (void) timer;
    sd_notify(0, "WATCHDOG=1");
}

/* The pipeline has room again for files a scan found. */
static void resume_scan(void *arg)
{
    daemon_t *d = arg;
    nw_watch_resume(d->watch);
}

static void close_handle(uv_handle_t *handle)
{
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

/* Everything the loop owns is closed; uv_run returns once the closes are done. */
static void shutdown_loop(daemon_t *d)
{
    if (d->handles_ready) {
        close_handle((uv_handle_t *) &d->sigterm);
        close_handle((uv_handle_t *) &d->sigint);
        close_handle((uv_handle_t *) &d->sighup);
        close_handle((uv_handle_t *) &d->status_timer);
        close_handle((uv_handle_t *) &d->watchdog_timer);
        close_handle((uv_handle_t *) &d->deadline);
    }
    nw_metrics_destroy(&d->metrics); /* it reads the modules below */
    nw_watch_destroy(&d->watch);
    nw_upstream_destroy(&d->upstream);
    nw_pipeline_destroy(&d->pipeline);
    nw_feed_destroy(&d->feed);
    nw_publish_destroy(&d->publish);
    /* reads still on the thread pool keep the loop running until they return, so the
     * journal (closed after the loop) outlives every replay cursor */
    nw_replay_destroy(&d->replay);
}
/* Every input is drained, then the feed (which they all submit to). */
static void on_feed_drained(void *arg)
{
    daemon_t *d = arg;
    nw_pipeline_stats_t ps;
    nw_feed_stats_t fs;
    nw_pipeline_stats(d->pipeline, &ps);
    nw_feed_stats(d->feed, &fs);
    if (d->upstream)
        nw_notice("stopped: %lu forwarded", fs.forwarded);
    else
        nw_notice("stopped: %lu published, %lu rejected, %lu duplicates; %lu files left for "
                  "the next start",
                  fs.published, ps.rejected, fs.duplicates, files_waiting(d, &ps));
    shutdown_loop(d);
}

static void on_drained(void *arg)
{
    daemon_t *d = arg;
    nw_feed_drain(d->feed, on_feed_drained, d);
}

static void on_deadline(uv_timer_t *timer)
{
    (void) timer;
    /* Work still in the thread pool cannot be cancelled; its files are still in the
     * drop folder and nothing of theirs was published, so leaving now loses nothing. */
    nw_warn("in-flight files did not finish within %d ms; they stay in the drop folder",
            STOP_DEADLINE_MS);
    fflush(stderr);
    _exit(0);
}

static void on_stop(uv_signal_t *handle, int signum)
{
    daemon_t *d = handle->data;
    if (d->stopping)
        return;
    d->stopping = true;
    nw_notice("%s: finishing files in flight, then exiting", strsignal(signum));
    sd_notify(0, "STOPPING=1");
    nw_watch_stop(d->watch);
    nw_upstream_stop(d->upstream);
    uv_timer_start(&d->deadline, on_deadline, STOP_DEADLINE_MS, 0);
    uv_unref((uv_handle_t *) &d->deadline);
    nw_pipeline_drain(d->pipeline, on_drained, d);
}

static void on_reload(uv_signal_t *handle, int signum)
{
    (void) signum;
    daemon_t *d = handle->data;
    char err[512];
    sd_notify(0, "RELOADING=1");
    if (nw_config_reload(&d->config, d->argc, d->argv, err, sizeof err) != 0) {
        nw_err("reload failed, keeping the running configuration: %s", err);
        sd_notify(0, "READY=1");
        return;
    }
    nw_log_set_level((nw_log_level_t) d->config.log_level);
    nw_feed_set_dedup_window(d->feed, d->config.dedup_window_ms);
    nw_rules_t *rules = rules_from(&d->config, err, sizeof err);
    if (!rules)
        nw_err("reload: rules invalid, keeping the old ones: %s", err);
    else {
        nw_pipeline_set_rules(d->pipeline, rules);
        nw_rules_unref(&d->rules);
        d->rules = rules;
    }
    int revoked = d->auth ? auth_from(&d->config, &d->auth, err, sizeof err) : 0;
    if (revoked < 0)
        nw_err("reload: client certificates unreadable, keeping the old ones: %s", err);
    else if (revoked > 0 && nw_publish_rebind(d->publish, err, sizeof err) != 0)
        nw_err("reload: a key or grant was withdrawn but live connections could not be "
               "dropped: %s",
               err);
    else if (revoked > 0)
        nw_notice("reload: a key or grant was withdrawn: live subscribers were disconnected "
                  "and are admitted afresh as they reconnect");
    /* a missing drop folder or a refused watch is tried again now, not at the tick */
    nw_watch_retry(d->watch);
    nw_notice("reloaded %s: log level %s, dedup window %lld s, %zu subject rules",
              d->config.config_file ? d->config.config_file : "(no config file)",
              nw_log_level_name(nw_log_get_level()),
              (long long) (d->config.dedup_window_ms / 1000), nw_rules_count(d->rules));
    update_status(d);
    sd_notify(0, "READY=1");
}

static int start(daemon_t *d, char *err, size_t errlen)
{
    nw_config_t *c = &d->config;
    if ((!c->upstream && make_dir(c->drop_dir, err, errlen) != 0) ||
        make_dir(c->state_dir, err, errlen) != 0 ||
        !(d->lock = nw_statelock_new(c->state_dir, err, errlen)) ||
        nw_archive_prepare(c->state_dir, err, errlen) != 0)
        return -1;
    nw_journal_options_t jopt = {
        .sync = c->sync != NW_SYNC_OFF,
        .early = c->sync == NW_SYNC_EARLY,
        .commit_delay_ms = c->commit_delay_ms,
        .segment_size = c->segment_size,
        .max_size = c->journal_max_size,
        .max_age_ms = c->journal_max_age_ms,
        .dedup_window_ms = c->dedup_window_ms,
    };
    d->journal = nw_journal_open(d->loop, c->state_dir, jopt, err, errlen);
    if (!d->journal)
        return -1;
    d->rules = rules_from(c, err, errlen);
    if (!d->rules)
        return -1;
    /* Multicast is clear text to every host on the segment, whatever CURVE and the
     * grants say (libzmq ignores CURVE on PGM without a word): only when asked for, and
     * never beside CURVE, which would be believed to cover it. */
    for (size_t i = 0; i < c->publish_count; i++)
        if (nw_epgm_is(c->publish[i]) && (!c->insecure || c->curve_secret)) {
            snprintf(err, errlen,
                     "%s is multicast: PGM has no CURVE, so every host on the "
                     "segment reads every topic in clear text; %s",
                     c->publish[i],
                     c->curve_secret ? "it cannot be used with --curve-secret (publish it "
                                       "from a daemon without CURVE)"
                                     : "give --insecure to publish it");
            return -1;
        }
    /* PGM keeps rate x recovery of what it sent for repairs, allocated as it sends; and
     * libzmq aborts when OpenPGM refuses a window it cannot size. */
    uint64_t window = (uint64_t) c->multicast_rate * 1000 / 8 *
                      (uint64_t) c->multicast_recovery_ms / 1000;
    for (size_t i = 0; i < c->publish_count; i++)
        if (nw_epgm_is(c->publish[i]) && window > NW_MULTICAST_WINDOW_MAX) {
            snprintf(err, errlen,
                     "--multicast-rate %d kbit/s for --multicast-recovery %d ms keeps "
                     "%" PRIu64 " MiB for repairs: at most %d MiB",
                     c->multicast_rate, c->multicast_recovery_ms, window >> 20,
                     NW_MULTICAST_WINDOW_MAX >> 20);
            return -1;
        }
    /* Clear text off this machine only when asked for, never by omission. */
    char *const *eps[2] = {c->publish, c->replay};
    size_t neps[2] = {c->publish_count, c->replay_count};
    for (int k = 0; k < 2 && !c->curve_secret && !c->insecure; k++)
        for (size_t i = 0; i < neps[k]; i++)
            if (!nw_auth_endpoint_is_local(eps[k][i])) {
                snprintf(err, errlen,
                         "%s is not loopback: give --curve-secret and --clients, "
                         "or --insecure for clear text",
                         eps[k][i]);
                return -1;
            }
    const char *ups[2] = {c->upstream, c->upstream_replay};
    for (int k = 0; k < 2 && !c->upstream_cert && !c->insecure; k++)
        if (ups[k] && !nw_auth_endpoint_is_local(ups[k])) {
            snprintf(err, errlen,
                     "%s %s is not loopback: give --upstream-cert and "
                     "--upstream-key, or --insecure for clear text",
                     k ? "--upstream-replay" : "--upstream", ups[k]);
            return -1;
        }
    if (!c->upstream &&
        (c->upstream_replay || c->upstream_topic_count || c->upstream_cert || c->upstream_key)) {
        snprintf(err, errlen,
                 "--upstream-replay, --upstream-topic, --upstream-cert and "
                 "--upstream-key need --upstream");
        return -1;
    }
    /* The metrics are plain HTTP whatever CURVE does for the ZeroMQ endpoints. */
    char host[256];
    unsigned port;
    if (c->metrics &&
        nw_metrics_parse_endpoint(c->metrics, host, sizeof host, &port, err, errlen) != 0)
        return -1;
    if (c->metrics && !c->insecure && !nw_auth_endpoint_is_local(c->metrics)) {
        snprintf(err, errlen,
                 "--metrics %s is not loopback: the metrics are clear-text "
                 "HTTP; give --insecure to serve them beyond this machine",
                 c->metrics);
        return -1;
    }
    if (c->clients_dir && !c->curve_secret) {
        snprintf(err, errlen, "--clients needs --curve-secret");
        return -1;
    }
    if (c->curve_secret) {
        if (auth_from(c, &d->auth, err, errlen) != 0)
            return -1;
    }
    nw_publish_options_t popt = {.send_hwm = c->send_hwm,
                                 .multicast_rate = c->multicast_rate,
                                 .multicast_recovery_ms = c->multicast_recovery_ms};
    d->publish = nw_publish_new(d->loop, c->publish, c->publish_count, popt, d->auth, err,
                                errlen);
    if (!d->publish)
        return -1;
    if (c->replay_count > 0) {
        zsock_t *router = nw_replay_socket_new(c->send_hwm, c->replay_idle_ms, err, errlen);
        if (!router)
            return -1;
        if (d->auth && nw_auth_server(d->auth, router, err, errlen) != 0) {
            zsock_destroy(&router);
            return -1;
        }
        for (size_t i = 0; i < c->replay_count; i++)
            if (zsock_bind(router, "%s", c->replay[i]) < 0) {
                snprintf(err, errlen, "cannot bind %s: %s", c->replay[i],
                         zmq_strerror(zmq_errno()));
                zsock_destroy(&router);
                return -1;
            }
        /* replay never takes more than an eighth of the descriptors: the drop folder,
         * the journal and the connections need the rest */
        nw_replay_options_t ropt = {.max_bytes = c->replay_max_bytes,
                                    .max_files = c->replay_max_files,
                                    .idle_ms = c->replay_idle_ms};
        struct rlimit nofile;
        if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY &&
            ropt.max_files > nofile.rlim_cur / 8) {
            ropt.max_files = nofile.rlim_cur / 8 ? (unsigned) (nofile.rlim_cur / 8) : 1;
            nw_info("replay: at most %u segment files open (an eighth of the limit of %llu "
                    "descriptors)",
                    ropt.max_files, (unsigned long long) nofile.rlim_cur);
        }
        d->replay = nw_replay_new(d->loop, d->journal, router, ropt, err, errlen);
        if (!d->replay)
            return -1;
        if (d->auth)
            nw_replay_set_authorizer(d->replay, nw_auth_allowed, d->auth);
    }
    d->feed = nw_feed_new(d->loop, (nw_feed_options_t) {.dedup_window_ms = c->dedup_window_ms},
                          d->journal, nw_publish_publisher(d->publish));
    /* A hand-off pays only with a core to run it on beside the loop and libzmq's I/O
     * thread: on 2 CPUs, shared with the writers, a burst read on the pool cost 40.5 us
     * of CPU an article against 35.5 on the loop, at a lower rate (issue 15). */
    unsigned cpus = uv_available_parallelism();
    nw_pipeline_options_t pipeline_opt = {.drop_dir = c->drop_dir,
                                          .state_dir = c->state_dir,
                                          .max_size = c->max_size,
                                          .burst_pool = c->burst_pool >= 0 ? c->burst_pool != 0
                                                                           : cpus > 2};
    if (c->burst_pool < 0)
        nw_info("burst-pool auto: %s (CPUs this process may use: %u)",
                pipeline_opt.burst_pool ? "on" : "off", cpus);
    if (d->feed)
        d->pipeline = nw_pipeline_new(d->loop, pipeline_opt, d->feed, d->rules);
    if (!d->pipeline) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (c->upstream) {
        /* a relay: the upstream is the input, no drop folder is watched */
        nw_upstream_options_t uo = {
            .live = c->upstream,
            .replay = c->upstream_replay,
            .topics = c->upstream_topic,
            .topic_count = c->upstream_topic_count,
            .cert = c->upstream_cert,
            .server_key = c->upstream_key,
            .rcvhwm = c->send_hwm,
        };
        d->upstream = nw_upstream_new(d->loop, uo, d->feed, d->journal, err, errlen);
        if (!d->upstream)
            return -1;
    } else {
        d->watch = nw_watch_new(d->loop, c->drop_dir, nw_pipeline_submit, d->pipeline, err,
                                errlen);
        nw_pipeline_set_resume(d->pipeline, resume_scan, d);
        if (!d->watch)
            return -1;
    }
    if (c->metrics) {
        nw_metrics_sources_t sources = {
            .journal = d->journal,
            .feed = d->feed,
            .pipeline = d->pipeline,
            .publish = d->publish,
            .replay = d->replay,
            .watch = d->watch,
            .upstream = d->upstream,
        };
        d->metrics = nw_metrics_new(d->loop, c->metrics, &sources, err, errlen);
        if (!d->metrics)
            return -1;
        nw_notice("metrics on %s", nw_metrics_url(d->metrics));
    }
    if (d->watch && nw_watch_start(d->watch, err, errlen) != 0)
        return -1;

    uv_signal_t *sigs[] = {&d->sigterm, &d->sigint, &d->sighup};
    int signums[] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(d->loop, sigs[i]);
        sigs[i]->data = d;
        uv_signal_start(sigs[i], signums[i] == SIGHUP ? on_reload : on_stop, signums[i]);
    }
    uv_timer_init(d->loop, &d->status_timer);
    uv_timer_init(d->loop, &d->watchdog_timer);
    uv_timer_init(d->loop, &d->deadline);
    d->status_timer.data = d->watchdog_timer.data = d->deadline.data = d;
    d->handles_ready = true;
    uv_timer_start(&d->status_timer, on_status, STATUS_MS, STATUS_MS);
    uint64_t watchdog_us = 0;
    if (sd_watchdog_enabled(0, &watchdog_us) > 0 && watchdog_us >= 2000)
        uv_timer_start(&d->watchdog_timer, on_watchdog, 0, watchdog_us / 2000);
    return 0;
}

int main(int argc, char **argv)
{
    daemon_t d = {.argc = argc, .argv = argv};
    d.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    char err[1024];
    /* A burst's file buffers are taken on pool threads and given back on the loop thread.
     * With glibc's default, the arenas hand freed tops back to the kernel (madvise) and
     * fault them in again on the next files: one page fault per article under a burst.
     * Keeping up to 1 MiB of free top per arena avoids that and bounds what it keeps. */
    mallopt(M_TRIM_THRESHOLD, 1 << 20);
    /* malloc_trim() gives back the free pages inside every arena but the top of the main
     * one only: each thread arena keeps its top. Replay's held replies are taken on pool
     * threads; with files read on the loop, those arenas were left holding megabytes each
     * after abusive replay clients left (test_replay_abuse). Two arenas, the loop's and
     * one the other threads share, keep that bounded; most allocations are small enough
     * for the per-thread caches, which take no arena lock. */
    mallopt(M_ARENA_MAX, 2);
    nw_log_init();
    int rc = nw_config_load(&d.config, argc, argv, err, sizeof err);
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "newswired: %s\n", err);
        nw_config_release(&d.config);
        return rc > 0 ? 0 : 2;
    }
    nw_log_set_level((nw_log_level_t) d.config.log_level);
    unsigned long pool = size_thread_pool(&d.config);
    nw_info("thread pool: %lu threads (files %d, journal %d, replay %d)", pool,
            NW_PIPELINE_POOL_JOBS, NW_JOURNAL_POOL_JOBS,
            d.config.replay_count ? NW_REPLAY_POOL_JOBS : 0);
    /* While descriptors are plenty: a conversion loaded later could fail for want of one. */
    if (nw_text_init(err, sizeof err) != 0)
        nw_warn("%s; such files are read as UTF-8", err);

    /* Before any CZMQ call: the loop, not CZMQ, owns SIGINT and SIGTERM. */
    zsys_handler_set(NULL);
    zsys_init();
    signal(SIGPIPE, SIG_IGN);
    /* A lease break (pipeline's open-for-writing check) must never kill us. */
    signal(SIGIO, SIG_IGN);
    /* A file size limit must fail the write (EFBIG, handled like a full disk), not
     * kill the daemon. */
    signal(SIGXFSZ, SIG_IGN);

    d.loop = uv_default_loop();
    if (start(&d, err, sizeof err) != 0) {
        nw_err("cannot start: %s", err);
        sd_notifyf(0, "STATUS=Failed to start: %s", err);
        d.exit_code = 1;
        d.stopping = true;
        shutdown_loop(&d);
        uv_run(d.loop, UV_RUN_DEFAULT);
    } else {
        char endpoints[1024] = "";
        for (size_t i = 0; i < d.config.publish_count; i++)
            snprintf(endpoints + strlen(endpoints), sizeof endpoints - strlen(endpoints), "%s%s",
                     i ? " " : "", d.config.publish[i]);
        if (d.config.upstream)
            nw_notice("newswired %s: relaying %s, publishing on %s, epoch %s", NW_VERSION,
                      d.config.upstream, endpoints, nw_journal_epoch(d.journal));
        else
            nw_notice("newswired %s: watching %s, publishing on %s, epoch %s", NW_VERSION,
                      d.config.drop_dir, endpoints, nw_journal_epoch(d.journal));
        sd_notify(0, "READY=1");
        update_status(&d);
        uv_run(d.loop, UV_RUN_DEFAULT);
    }
    nw_journal_close(&d.journal);
    uv_run(d.loop, UV_RUN_DEFAULT); /* the journal's handles finish closing */
    nw_statelock_destroy(&d.lock);
    nw_rules_unref(&d.rules);
    nw_auth_destroy(&d.auth);
    nw_config_release(&d.config);
    uv_loop_close(d.loop);
    zsys_shutdown();
    if (d.reserve_fd >= 0)
        close(d.reserve_fd);
    return d.exit_code;
}
