/*
 * watch: reports files that have finished arriving in the drop folder.
 *
 * Linux inotify (IN_CLOSE_WRITE, IN_MOVED_TO) on the drop folder and one level of
 * subfolders, including subfolders created while running; the descriptor is polled by
 * libuv (uv_poll) on the loop thread, because uv_fs_event does not report close-write.
 * Files already present when watching starts, and every file on IN_Q_OVERFLOW, are
 * reported by a scan, oldest first. Names that are still being written by convention
 * (leading '.', or ending in .tmp, .part, .swp or ~) are not reported until renamed.
 *
 * A report is a hint, not a promise: the same file may be reported twice (a scan and an
 * event racing), so the consumer deduplicates by path and re-checks the file itself.
 *
 * The drop folder going away (deleted, moved, replaced) is noticed, and it is watched
 * and rescanned once it is back; a folder inotify cannot watch (its watch limit) is
 * scanned every NW_WATCH_TICK_MS instead and its watch retried; nw_watch_problem says
 * meanwhile what is not watched, and a warning is logged at once and every minute.
 * Entries created in place without a write (IN_CREATE only: a FIFO, a symlink, a hard
 * link, an O_TMPFILE linked in) are reported too; a regular file being written waits
 * for its close (or, with no close seen, for a tick without change).
 *
 * The consumer paces scans: a callback returning nonzero holds the rest of the scan
 * (kept here, sorted, about 40 bytes a file) until nw_watch_resume(). Event reports are
 * never held; the kernel's inotify queue bounds them, and its overflow means a rescan.
 */
#ifndef NW_WATCH_H
#define NW_WATCH_H

#include <stdbool.h>
#include <uv.h>

/* How often a missing folder is looked for, an unwatched one scanned, a watch retried. */
#define NW_WATCH_TICK_MS 1000

typedef struct nw_watch nw_watch_t;

/* subdir is "" for the drop folder itself, else the subfolder's name; name is the
 * file's name inside it. Both are only valid during the call. Return 0 to go on,
 * nonzero to hold the rest of a scan until nw_watch_resume(). */
typedef int(nw_watch_fn)(void *arg, const char *subdir, const char *name);

/* Watch drop_dir (which must exist). Nothing is reported before nw_watch_start(). */
nw_watch_t *nw_watch_new(uv_loop_t *loop, const char *drop_dir, nw_watch_fn *fn, void *arg,
                         char *errbuf, size_t errlen);
/* Add the watches, then report the files already there, oldest first. 0 or -1 (the
 * drop folder cannot be read); one that can be read but not watched is scanned each
 * tick instead, and nw_watch_problem says so. */
int nw_watch_start(nw_watch_t *self, char *errbuf, size_t errlen);
/* Stop reporting (the files stay); final. Safe to call more than once, and from the
 * callback. */
void nw_watch_stop(nw_watch_t *self);
/* Closes the libuv handle: the loop must run once more for the close to finish; the
 * memory and the inotify descriptor are freed by the close callback. Safe from the
 * callback: nothing more is reported once it returns. */
void nw_watch_destroy(nw_watch_t **self_p);

/* Report every file again, oldest first, as after an inotify queue overflow (which
 * calls it). Adds watches for subfolders not yet watched. 0, or -1 when the drop folder
 * cannot be read or the watch is not running. */
int nw_watch_rescan(nw_watch_t *self, char *errbuf, size_t errlen);

/* Retry now what the tick retries (a missing drop folder, watches refused): SIGHUP. */
void nw_watch_retry(nw_watch_t *self);

/* What is not watched now, one line for STATUS= ("" when everything is watched).
 * Valid until the next call into the watcher. */
const char *nw_watch_problem(const nw_watch_t *self);

/* Report the held rest of a scan (until the callback asks to wait again). Safe from
 * the callback. */
void nw_watch_resume(nw_watch_t *self);

/* Whether a name is one the watcher skips (hidden or temporary). */
int nw_watch_name_skipped(const char *name);

/* Counters for STATUS= and tests: inotify events read, callbacks made, queue overflows,
 * full rescans (not counting the one in nw_watch_start), subfolders watched now, files
 * scanned but not yet reported (held, or left unreported by nw_watch_stop), subfolders
 * that cannot be watched (scanned each tick); whether the drop folder is missing (its
 * files, if any, are not seen) or there but not watchable (scanned each tick). */
typedef struct {
    unsigned long events, reports, overflows, rescans, subdirs, backlog, unwatched;
    bool drop_missing, drop_polled;
} nw_watch_stats_t;
void nw_watch_stats(const nw_watch_t *self, nw_watch_stats_t *out);

#endif
