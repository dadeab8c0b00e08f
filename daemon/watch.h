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
 * The consumer paces scans: a callback returning nonzero holds the rest of the scan
 * (kept here, sorted, about 40 bytes a file) until nw_watch_resume(). Event reports are
 * never held; the kernel's inotify queue bounds them, and its overflow means a rescan.
 */
#ifndef NW_WATCH_H
#define NW_WATCH_H

#include <uv.h>

typedef struct nw_watch nw_watch_t;

/* subdir is "" for the drop folder itself, else the subfolder's name; name is the
 * file's name inside it. Both are only valid during the call. Return 0 to go on,
 * nonzero to hold the rest of a scan until nw_watch_resume(). */
typedef int (nw_watch_fn)(void *arg, const char *subdir, const char *name);

/* Watch drop_dir (which must exist). Nothing is reported before nw_watch_start(). */
nw_watch_t *nw_watch_new(uv_loop_t *loop, const char *drop_dir, nw_watch_fn *fn, void *arg,
                         char *errbuf, size_t errlen);
/* Add the watches, then report the files already there, oldest first. 0 or -1. */
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

/* Report the held rest of a scan (until the callback asks to wait again). Safe from
 * the callback. */
void nw_watch_resume(nw_watch_t *self);

/* Whether a name is one the watcher skips (hidden or temporary). */
int nw_watch_name_skipped(const char *name);

/* Counters for STATUS= and tests: inotify events read, callbacks made, queue overflows,
 * full rescans (not counting the one in nw_watch_start), subfolders watched now, files
 * scanned but not yet reported (held, or left unreported by nw_watch_stop). */
typedef struct {
    unsigned long events, reports, overflows, rescans, subdirs, backlog;
} nw_watch_stats_t;
void nw_watch_stats(const nw_watch_t *self, nw_watch_stats_t *out);

#endif
