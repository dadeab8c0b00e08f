/*
 * watch: inotify on the drop folder and its subfolders, polled by libuv (see watch.h).
 *
 * Kernel events enter through on_readable (uv_poll on the inotify descriptor, loop
 * thread only), scans enter through scan_dirs; both leave through the user's callback
 * as (subdir, name). Subfolder watches live in a zhashx keyed by watch descriptor.
 * A scan gathers (mtime, subdir, name) for every entry, sorts once with qsort and
 * reports in that order, so a large backlog costs O(n log n) time and one array plus
 * one block of names (about 40 bytes a file). The consumer paces a scan: when its
 * callback returns nonzero the rest waits in `backlog` until nw_watch_resume, so a
 * backlog of 100,000 files is held here compactly rather than as 100,000 queued jobs.
 *
 * What inotify cannot tell is made good by a tick (TICK_MS, a libuv timer): a drop
 * folder that went away (deleted, moved, replaced at its path) is looked for again and
 * rescanned once back; a folder that cannot be watched (the inotify watch limit,
 * ENOSPC) is polled by a scan each tick and its watch retried; a regular file created
 * without a close seen (an O_TMPFILE linked in, a hard link whose other name went
 * away) is reported once it has stayed unchanged for a tick. While something is not
 * watched, nw_watch_problem says what and a warning is logged at once and every
 * WARN_MS.
 */
#include "watch.h"
#include "log.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WATCH_BUF_SIZE 65536
/* No IN_MOVED_FROM on the drop folder: every archive move out of it would be an event
 * (and a wake-up) for nothing; a subfolder says itself that it moved (IN_MOVE_SELF). */
#define DROP_MASK \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define SUBDIR_MASK \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW)
#define TICK_MS NW_WATCH_TICK_MS
#define WARN_MS 60000  /* a warning a minute while something is not watched */
#define FRESH_MAX 4096 /* created files followed until their close */

/* Why the drop folder is not watched. */
typedef enum {
    DROP_WATCHED,
    DROP_MISSING, /* not there (or not a folder): nothing to see */
    DROP_POLLED,  /* there, readable, but inotify refused: scanned a tick */
} drop_state_t;

/* A regular file created in a watched folder whose close has not been seen yet. */
typedef struct {
    dev_t dev;
    ino_t ino;
    int64_t mtime_ns;
    uint64_t since_ms; /* loop time of the last change seen */
} fresh_t;

struct nw_watch {
    uv_loop_t *loop;
    char *drop_dir;
    nw_watch_fn *fn;
    void *arg;
    int ifd;        /* inotify descriptor, closed by the close callback */
    int drop_wd;    /* -1 until started, or after the drop folder went away */
    dev_t drop_dev; /* what drop_wd watches, to tell when the path names */
    ino_t drop_ino; /* another folder (an ancestor renamed, say) */
    drop_state_t drop_state;
    int drop_errno;    /* why it is missing or polled */
    char drop_why[64]; /* "deleted", "moved away", ... for the log */
    uv_poll_t poll;
    uv_timer_t tick;
    uv_idle_t nudge;  /* one loop turn without blocking after the tick reported */
    int open_handles; /* poll, tick, nudge: freed when all are closed */
    bool polling, started, stopped, closing, nudged;
    zhashx_t *subdirs;    /* wd (as a pointer) -> subfolder name */
    zhashx_t *unwatched;  /* subfolder name -> errno (as a pointer): polled */
    zhashx_t *fresh;      /* rel ("name" or "subdir/name") -> fresh_t */
    uint64_t warned_ms;   /* loop time of the last warning */
    unsigned warned_sig;  /* what it warned of (0: nothing wrong) */
    char problem[256];    /* for nw_watch_problem */
    struct scan *backlog; /* sorted scans not yet fully reported, oldest scan first */
    bool held;            /* the callback asked to wait for nw_watch_resume */
    nw_watch_stats_t stats;
    alignas(struct inotify_event) char buf[WATCH_BUF_SIZE];
};

/* One entry found by a scan; name_off indexes the scan's name block until sorting. */
typedef struct {
    int64_t mtime_ns;
    const char *subdir;
    union {
        size_t off;
        const char *ptr;
    } name;
} entry_t;

typedef struct scan scan_t;
struct scan {
    scan_t *next; /* backlog queue */
    entry_t *entries;
    size_t count, cap;
    size_t reported; /* entries already handed to the callback */
    char *names;     /* NUL-separated names */
    size_t names_len, names_cap;
    char **subdirs; /* owned copies of the subfolder names scanned */
    size_t subdir_count, subdir_cap;
};

int nw_watch_name_skipped(const char *name)
{
    if (!name || !*name || name[0] == '.')
        return 1;
    size_t n = strlen(name);
    static const char *const suffixes[] = {".tmp", ".part", ".swp", "~"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && strcmp(name + n - k, suffixes[i]) == 0)
            return 1;
    }
    return 0;
}

static int report(nw_watch_t *self, const char *subdir, const char *name)
{
    if (self->stopped)
        return 0;
    self->stats.reports++;
    return self->fn(self->arg, subdir, name);
}

/* ------------------------------------------------------------------------------
 * Subfolder table: the key is the watch descriptor itself, never 0 (wds start at 1).
 */

static size_t wd_hash(const void *key)
{
    return (size_t) (uintptr_t) key;
}

static int wd_compare(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) a, y = (uintptr_t) b;
    return x < y ? -1 : x > y;
}

static void name_free(void **item)
{
    free(*item);
    *item = NULL;
}

static void *wd_key(int wd)
{
    return (void *) (uintptr_t) wd;
}

static void *errno_value(int err)
{
    return (void *) (uintptr_t) err;
}

/* Watch drop_dir/name: 0 watched, 1 not watchable now (kept in `unwatched`, to be
 * polled and retried), -1 gone or not a folder. */
static int add_subdir(nw_watch_t *self, const char *name)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", self->drop_dir, name) >= (int) sizeof path)
        return -1;
    int wd = inotify_add_watch(self->ifd, path, SUBDIR_MASK);
    if (wd < 0) {
        int err = errno;
        if (err == ENOENT || err == ENOTDIR) {
            zhashx_delete(self->unwatched, name);
            return -1;
        }
        zhashx_update(self->unwatched, name, errno_value(err));
        return 1;
    }
    char *copy = strdup(name);
    if (!copy) {
        inotify_rm_watch(self->ifd, wd);
        zhashx_update(self->unwatched, name, errno_value(ENOMEM));
        return 1;
    }
    /* the same folder seen again (renamed, or rescanned) keeps its wd: take the name */
    zhashx_update(self->subdirs, wd_key(wd), copy);
    zhashx_delete(self->unwatched, name);
    return 0;
}

/* Subfolder wd (named name) moved: renamed in the drop folder, its IN_MOVED_TO came
 * first and add_subdir gave the watch the new name; moved out of it, the name no longer
 * leads to it, and it is forgotten (its events would mislead). Its name is looked up
 * again to tell: a watch added for the same folder returns the same wd. */
static void subdir_moved(nw_watch_t *self, int wd, const char *name)
{
    char path[PATH_MAX];
    int now = -1;
    if (snprintf(path, sizeof path, "%s/%s", self->drop_dir, name) < (int) sizeof path)
        now = inotify_add_watch(self->ifd, path, SUBDIR_MASK);
    if (now == wd)
        return;
    /* another folder by that name: its own IN_CREATE or IN_MOVED_TO adds it (or did) */
    if (now >= 0 && !zhashx_lookup(self->subdirs, wd_key(now)))
        inotify_rm_watch(self->ifd, now);
    inotify_rm_watch(self->ifd, wd); /* IN_IGNORED follows, for a wd no longer known */
    zhashx_delete(self->subdirs, wd_key(wd));
    self->stats.subdirs = zhashx_size(self->subdirs);
}

/* Every subfolder watch goes (the drop folder itself went away). */
static void forget_subdirs(nw_watch_t *self)
{
    for (void *v = zhashx_first(self->subdirs); v; v = zhashx_next(self->subdirs))
        inotify_rm_watch(self->ifd, (int) (uintptr_t) zhashx_cursor(self->subdirs));
    zhashx_purge(self->subdirs);
    zhashx_purge(self->unwatched);
    self->stats.subdirs = 0;
    self->stats.unwatched = 0;
}

/* ------------------------------------------------------------------------------
 * Scanning
 */

static void scan_free(scan_t *scan)
{
    if (!scan)
        return;
    free(scan->entries);
    free(scan->names);
    for (size_t i = 0; i < scan->subdir_count; i++)
        free(scan->subdirs[i]);
    free(scan->subdirs);
    free(scan);
}

static int scan_add(scan_t *scan, const char *subdir, const char *name, int64_t mtime_ns)
{
    size_t len = strlen(name) + 1;
    if (scan->count == scan->cap) {
        size_t cap = scan->cap ? scan->cap * 2 : 256;
        entry_t *grown = realloc(scan->entries, cap * sizeof *grown);
        if (!grown)
            return -1;
        scan->entries = grown;
        scan->cap = cap;
    }
    if (scan->names_len + len > scan->names_cap) {
        size_t cap = scan->names_cap ? scan->names_cap * 2 : 8192;
        while (cap < scan->names_len + len)
            cap *= 2;
        char *grown = realloc(scan->names, cap);
        if (!grown)
            return -1;
        scan->names = grown;
        scan->names_cap = cap;
    }
    memcpy(scan->names + scan->names_len, name, len);
    scan->entries[scan->count++] = (entry_t) {mtime_ns, subdir, {.off = scan->names_len}};
    scan->names_len += len;
    return 0;
}

static const char *scan_subdir_name(scan_t *scan, const char *name)
{
    if (scan->subdir_count == scan->subdir_cap) {
        size_t cap = scan->subdir_cap ? scan->subdir_cap * 2 : 16;
        char **grown = realloc(scan->subdirs, cap * sizeof *grown);
        if (!grown)
            return NULL;
        scan->subdirs = grown;
        scan->subdir_cap = cap;
    }
    char *copy = strdup(name);
    if (copy)
        scan->subdirs[scan->subdir_count++] = copy;
    return copy;
}

static int entry_order(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    if (x->mtime_ns != y->mtime_ns)
        return x->mtime_ns < y->mtime_ns ? -1 : 1;
    int c = strcmp(x->name.ptr, y->name.ptr);
    return c ? c : strcmp(x->subdir, y->subdir);
}

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Collect the entries of one folder. subdir NULL: the drop folder itself, whose
 * subfolders are watched (before they are read) and collected too; those that cannot
 * be watched are collected all the same. A polled scan sees no close: it leaves files
 * changed within the last tick for the next one, as a writer may still be at work. */
static int scan_dir(nw_watch_t *self, scan_t *scan, const char *subdir, bool polled, char *errbuf,
                    size_t errlen)
{
    int64_t now = polled ? realtime_ns() : 0;
    char path[PATH_MAX];
    if (subdir)
        snprintf(path, sizeof path, "%s/%s", self->drop_dir, subdir);
    else
        snprintf(path, sizeof path, "%s", self->drop_dir);
    DIR *dir = opendir(path);
    if (!dir) {
        if (subdir) /* gone since the event, or not a folder any more */
            return 0;
        snprintf(errbuf, errlen, "cannot read drop folder %s: %s", path, strerror(errno));
        return -1;
    }
    const char *subname = subdir ? scan_subdir_name(scan, subdir) : "";
    if (!subname)
        goto oom;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (nw_watch_name_skipped(de->d_name))
            continue; /* also ".", ".." */
        struct stat st;
        if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue; /* gone meanwhile */
        if (S_ISDIR(st.st_mode)) {
            /* one level only; the watch comes first so nothing lands unseen */
            if (!subdir && add_subdir(self, de->d_name) >= 0 &&
                scan_dir(self, scan, de->d_name, polled, errbuf, errlen) != 0)
                goto fail;
            continue;
        }
        /* anything else is a hint: the pipeline opens with O_NOFOLLOW and decides */
        int64_t mtime = (int64_t) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        if (polled && mtime <= now && mtime > now - (int64_t) TICK_MS * 1000000)
            continue;
        if (scan_add(scan, subname, de->d_name, mtime) != 0)
            goto oom;
    }
    closedir(dir);
    return 0;
oom:
    snprintf(errbuf, errlen, "scanning %s: out of memory", path);
fail:
    closedir(dir);
    return -1;
}

static void backlog_clear(nw_watch_t *self)
{
    while (self->backlog) {
        scan_t *next = self->backlog->next;
        scan_free(self->backlog);
        self->backlog = next;
    }
    self->stats.backlog = 0;
}

/* Report backlog entries, oldest first, until the callback asks to wait. */
static void backlog_feed(nw_watch_t *self)
{
    while (self->backlog && !self->held && !self->stopped) {
        scan_t *scan = self->backlog;
        if (scan->reported == scan->count) {
            self->backlog = scan->next;
            scan_free(scan);
            continue;
        }
        const entry_t *e = &scan->entries[scan->reported++];
        self->stats.backlog--;
        if (report(self, e->subdir, e->name.ptr) != 0)
            self->held = true;
    }
}

/* Scan one subfolder (subdir) or everything (NULL), then report oldest first. A full
 * scan finds every file still there, so it replaces whatever backlog was left; a
 * subfolder's scan queues behind it. */
static int scan_and_report(nw_watch_t *self, const char *subdir, bool polled, char *errbuf,
                           size_t errlen)
{
    scan_t *scan = calloc(1, sizeof *scan);
    if (!scan) {
        snprintf(errbuf, errlen, "scanning: out of memory");
        return -1;
    }
    if (!subdir)
        zhashx_purge(self->unwatched); /* the scan finds them again */
    int rc = scan_dir(self, scan, subdir, polled, errbuf, errlen);
    self->stats.subdirs = zhashx_size(self->subdirs);
    self->stats.unwatched = zhashx_size(self->unwatched);
    if (rc != 0) {
        scan_free(scan);
        return rc;
    }
    /* It may be held for a long while: give back the growth headroom first. */
    entry_t *entries = scan->count ? realloc(scan->entries, scan->count * sizeof *entries) : NULL;
    if (entries) {
        scan->entries = entries;
        scan->cap = scan->count;
    }
    char *names = scan->names_len ? realloc(scan->names, scan->names_len) : NULL;
    if (names) {
        scan->names = names;
        scan->names_cap = scan->names_len;
    }
    for (size_t i = 0; i < scan->count; i++)
        scan->entries[i].name.ptr = scan->names + scan->entries[i].name.off;
    if (scan->count > 1)
        qsort(scan->entries, scan->count, sizeof *scan->entries, entry_order);
    if (!subdir)
        backlog_clear(self);
    scan_t **tail = &self->backlog;
    while (*tail)
        tail = &(*tail)->next;
    *tail = scan;
    self->stats.backlog += scan->count;
    backlog_feed(self);
    return 0;
}

void nw_watch_resume(nw_watch_t *self)
{
    if (!self || !self->held)
        return;
    self->held = false;
    backlog_feed(self);
}

int nw_watch_rescan(nw_watch_t *self, char *errbuf, size_t errlen)
{
    if (!self || !self->started || self->stopped) {
        snprintf(errbuf, errlen, "watch: not running");
        return -1;
    }
    self->stats.rescans++;
    return scan_and_report(self, NULL, self->drop_state == DROP_POLLED, errbuf, errlen);
}

/* ------------------------------------------------------------------------------
 * What is not watched: said in nw_watch_problem, warned of at once and every WARN_MS
 */

static const char *watch_error(int err)
{
    /* ENOSPC from inotify_add_watch is not about disk space */
    return err == ENOSPC ? "the inotify watch limit (fs.inotify.max_user_watches) is reached"
                         : strerror(err);
}

static void update_problem(nw_watch_t *self)
{
    size_t unwatched = zhashx_size(self->unwatched);
    self->stats.unwatched = unwatched;
    self->stats.drop_missing = self->drop_state == DROP_MISSING;
    self->stats.drop_polled = self->drop_state == DROP_POLLED;
    char *out = self->problem;
    size_t len = sizeof self->problem;
    out[0] = '\0';
    if (self->drop_state == DROP_MISSING)
        snprintf(out, len,
                 "DROP FOLDER MISSING (%s): its files are not seen; looked for every "
                 "%d s",
                 self->drop_why, TICK_MS / 1000);
    else if (self->drop_state == DROP_POLLED)
        snprintf(out, len, "DROP FOLDER NOT WATCHED (%s): scanned every %d s",
                 watch_error(self->drop_errno), TICK_MS / 1000);
    else if (unwatched) {
        int err = (int) (uintptr_t) zhashx_first(self->unwatched);
        snprintf(out, len, "%zu SUBFOLDER%s NOT WATCHED (%s): scanned every %d s", unwatched,
                 unwatched == 1 ? "" : "S", watch_error(err), TICK_MS / 1000);
    }
}

/* Called after every change of what is watched, and each tick: a new kind of trouble
 * is logged at once, trouble that lasts every WARN_MS, its end once. */
static void health_check(nw_watch_t *self)
{
    if (self->stopped)
        return;
    update_problem(self);
    size_t unwatched = zhashx_size(self->unwatched);
    unsigned sig = self->drop_state != DROP_WATCHED ? 1u + (unsigned) self->drop_state
                   : unwatched                      ? 8u
                                                    : 0u;
    uint64_t now = uv_now(self->loop);
    if (!sig) {
        if (self->warned_sig)
            nw_notice("watch: %s and every subfolder are watched again", self->drop_dir);
        self->warned_sig = 0;
        return;
    }
    if (sig == self->warned_sig && now - self->warned_ms < WARN_MS)
        return;
    self->warned_sig = sig;
    self->warned_ms = now;
    if (self->drop_state == DROP_MISSING)
        nw_warn("watch: drop folder %s %s: no file is taken until it is there again "
                "(looked for every %d s, or on SIGHUP)",
                self->drop_dir, self->drop_why, TICK_MS / 1000);
    else if (self->drop_state == DROP_POLLED)
        nw_warn("watch: cannot watch drop folder %s: %s; it is scanned every %d s instead "
                "(retried then, and on SIGHUP)",
                self->drop_dir, watch_error(self->drop_errno), TICK_MS / 1000);
    else {
        char names[200] = "", esc[64];
        size_t shown = 0;
        for (void *v = zhashx_first(self->unwatched); v && shown < 3;
             v = zhashx_next(self->unwatched), shown++) {
            size_t at = strlen(names);
            snprintf(names + at, sizeof names - at, "%s%s", shown ? ", " : "",
                     nw_log_escape(zhashx_cursor(self->unwatched), esc, sizeof esc));
        }
        int err = (int) (uintptr_t) zhashx_first(self->unwatched);
        nw_warn("watch: %zu subfolder%s of %s cannot be watched (%s): %s%s; scanned every %d s "
                "instead (retried then, and on SIGHUP)",
                unwatched, unwatched == 1 ? "" : "s", self->drop_dir, watch_error(err), names,
                unwatched > shown ? ", ..." : "", TICK_MS / 1000);
    }
}

/* ------------------------------------------------------------------------------
 * The drop folder going away and coming back
 */

/* Watch the drop folder at its path again: 0 watched, -1 not (drop_state says why). */
static int drop_watch(nw_watch_t *self)
{
    int wd = inotify_add_watch(self->ifd, self->drop_dir, DROP_MASK);
    struct stat st;
    if (wd < 0) {
        self->drop_errno = errno;
        bool there = stat(self->drop_dir, &st) == 0 && S_ISDIR(st.st_mode);
        if (!there && self->drop_state != DROP_MISSING) {
            self->drop_state = DROP_MISSING;
            snprintf(self->drop_why, sizeof self->drop_why, "is not there (%s)",
                     strerror(self->drop_errno));
        } else if (there)
            self->drop_state = DROP_POLLED;
        return -1;
    }
    if (stat(self->drop_dir, &st) != 0) { /* gone again already: the tick retries */
        inotify_rm_watch(self->ifd, wd);
        return -1;
    }
    self->drop_wd = wd;
    self->drop_dev = st.st_dev;
    self->drop_ino = st.st_ino;
    self->drop_state = DROP_WATCHED;
    self->drop_errno = 0;
    return 0;
}

static void fresh_clear(nw_watch_t *self)
{
    zhashx_purge(self->fresh);
}

/* The path no longer names the folder watched (why: "was deleted", ...): drop every
 * watch, what a scan held and what was followed, and look for the folder again. */
static void drop_lost(nw_watch_t *self, const char *why)
{
    if (self->drop_wd >= 0)
        inotify_rm_watch(self->ifd, self->drop_wd); /* fails harmlessly once deleted */
    self->drop_wd = -1;
    self->drop_state = DROP_MISSING;
    snprintf(self->drop_why, sizeof self->drop_why, "%s", why);
    forget_subdirs(self);
    backlog_clear(self); /* a rescan finds them again; a hold stays until resumed */
    fresh_clear(self);
}

/* Retry what is not watched; poll what still cannot be. */
static void retry_watches(nw_watch_t *self)
{
    char err[256];
    if (self->stopped || !self->started)
        return;
    if (self->drop_wd < 0) {
        bool was_polled = self->drop_state == DROP_POLLED;
        if (drop_watch(self) == 0) {
            nw_notice("watch: drop folder %s %s: watching it, rescanning", self->drop_dir,
                      was_polled ? "can be watched now" : "is there again");
            if (nw_watch_rescan(self, err, sizeof err) != 0)
                nw_err("watch: %s", err);
        } else if (self->drop_state == DROP_POLLED && !self->backlog &&
                   scan_and_report(self, NULL, true, err, sizeof err) != 0)
            nw_err("watch: %s", err);
    } else if (zhashx_size(self->unwatched)) {
        zlistx_t *names = zhashx_keys(self->unwatched);
        for (char *name = names ? zlistx_first(names) : NULL; name && !self->stopped;
             name = zlistx_next(names)) {
            int rc = add_subdir(self, name);
            /* newly watched: what landed before the watch; still not: a poll */
            if ((rc == 0 || (rc == 1 && !self->backlog)) &&
                scan_and_report(self, name, rc == 1, err, sizeof err) != 0)
                nw_err("watch: %s", err);
        }
        zlistx_destroy(&names);
        self->stats.subdirs = zhashx_size(self->subdirs);
    }
    health_check(self);
}

/* ------------------------------------------------------------------------------
 * Files created without a close seen
 */

static int rel_of(char *out, size_t len, const char *subdir, const char *name)
{
    int n = snprintf(out, len, "%s%s%s", subdir, *subdir ? "/" : "", name);
    return n < 0 || (size_t) n >= len ? -1 : 0;
}

/* IN_CREATE: anything but a regular file (a FIFO, a symlink, a socket, a device) is
 * complete as it appears and is reported now, for the pipeline to reject; so is a hard
 * link (more than one name). A regular file is followed until its close (the common
 * case: an open and writes), or reported once it stays unchanged for a tick. */
static void on_created(nw_watch_t *self, const char *subdir, const char *name)
{
    char rel[PATH_MAX], path[PATH_MAX + 64];
    if (rel_of(rel, sizeof rel, subdir, name) != 0 ||
        snprintf(path, sizeof path, "%s/%s", self->drop_dir, rel) >= (int) sizeof path)
        return;
    struct stat st;
    if (lstat(path, &st) != 0 || S_ISDIR(st.st_mode))
        return;
    if (!S_ISREG(st.st_mode) || st.st_nlink > 1)
        report(self, subdir, name);
    if (!S_ISREG(st.st_mode) || zhashx_size(self->fresh) >= FRESH_MAX)
        return;
    fresh_t *f = malloc(sizeof *f);
    if (!f)
        return;
    *f = (fresh_t) {st.st_dev, st.st_ino,
                    (int64_t) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec,
                    uv_now(self->loop)};
    zhashx_update(self->fresh, rel, f);
}

/* A close or a rename in: the file is reported by its event, no longer followed. An
 * O_TMPFILE's close comes under the kernel's name for it, "#" and its inode number,
 * after linkat gave it its real name: that name is reported then, and true returned
 * (the kernel's name names nothing in the folder). */
static bool on_closed(nw_watch_t *self, const char *subdir, const char *name)
{
    char rel[PATH_MAX];
    if (zhashx_size(self->fresh) == 0 || rel_of(rel, sizeof rel, subdir, name) != 0)
        return false;
    zhashx_delete(self->fresh, rel);
    if (name[0] != '#' || !name[1] || strspn(name + 1, "0123456789") != strlen(name + 1))
        return false;
    unsigned long long ino = strtoull(name + 1, NULL, 10);
    for (fresh_t *f = zhashx_first(self->fresh); f; f = zhashx_next(self->fresh)) {
        if ((unsigned long long) f->ino == ino) {
            char linked[PATH_MAX];
            snprintf(linked, sizeof linked, "%s", (const char *) zhashx_cursor(self->fresh));
            zhashx_delete(self->fresh, linked);
            char *slash = strchr(linked, '/');
            if (slash)
                *slash = '\0';
            report(self, slash ? linked : "", slash ? slash + 1 : linked);
            return true;
        }
    }
    return false;
}

/* Each tick: a followed file unchanged for a tick is reported (the pipeline's read
 * lease still leaves one that a writer holds open); a gone one is forgotten. */
static void fresh_age(nw_watch_t *self)
{
    if (zhashx_size(self->fresh) == 0)
        return;
    uint64_t now = uv_now(self->loop);
    zlistx_t *rels = zhashx_keys(self->fresh);
    for (char *rel = rels ? zlistx_first(rels) : NULL; rel && !self->stopped;
         rel = zlistx_next(rels)) {
        fresh_t *f = zhashx_lookup(self->fresh, rel);
        if (!f || now - f->since_ms < TICK_MS)
            continue;
        char path[PATH_MAX + 64];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", self->drop_dir, rel);
        if (lstat(path, &st) != 0 || st.st_dev != f->dev || st.st_ino != f->ino) {
            zhashx_delete(self->fresh, rel);
            continue;
        }
        int64_t mtime = (int64_t) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
        if (mtime != f->mtime_ns) {
            f->mtime_ns = mtime;
            f->since_ms = now;
            continue;
        }
        char esc[PATH_MAX];
        nw_debug("watch: %s was created with no close seen and has not changed for a tick: "
                 "reported",
                 nw_log_escape(rel, esc, sizeof esc));
        zhashx_delete(self->fresh, rel);
        char *slash = strchr(rel, '/'); /* rel is the list's copy */
        if (slash)
            *slash = '\0';
        report(self, slash ? rel : "", slash ? slash + 1 : rel);
    }
    zlistx_destroy(&rels);
}

/* Idle callbacks run after the timers and before the poll: the first call leaves the
 * handle active so that this turn's poll does not block, the second ends it. */
static void on_nudge(uv_idle_t *idle)
{
    nw_watch_t *self = idle->data;
    if (self->nudged)
        uv_idle_stop(idle);
    self->nudged = true;
}

/* Reports made outside an I/O callback (a timer, before the loop runs) start work
 * that the loop would otherwise only see after its next wake-up. */
static void nudge(nw_watch_t *self)
{
    if (self->stopped)
        return;
    self->nudged = false;
    uv_idle_start(&self->nudge, on_nudge);
}

static void on_tick(uv_timer_t *timer)
{
    nw_watch_t *self = timer->data;
    unsigned long reports = self->stats.reports;
    struct stat st;
    /* an ancestor renamed or the folder replaced sends no event to the drop folder */
    if (self->drop_wd >= 0 && (stat(self->drop_dir, &st) != 0 || st.st_dev != self->drop_dev ||
                               st.st_ino != self->drop_ino))
        drop_lost(self, "is no longer the folder watched (moved or replaced)");
    retry_watches(self);
    fresh_age(self);
    /* A timer runs before the loop polls: what the reports started at the end of the
     * turn (the pipeline's check handle) would otherwise wait for the next wake-up. */
    if (self->stats.reports != reports)
        nudge(self);
}

void nw_watch_retry(nw_watch_t *self)
{
    if (self)
        retry_watches(self);
}

const char *nw_watch_problem(const nw_watch_t *self)
{
    return self ? self->problem : "";
}

/* ------------------------------------------------------------------------------
 * Events
 */

static void handle_event(nw_watch_t *self, const struct inotify_event *ev, bool *rescan)
{
    self->stats.events++;
    if (ev->mask & IN_Q_OVERFLOW) {
        self->stats.overflows++;
        *rescan = true;
        return;
    }
    const char *name = ev->len ? ev->name : "";
    if (ev->wd == self->drop_wd) {
        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT)) {
            drop_lost(self, ev->mask & IN_DELETE_SELF ? "was deleted"
                            : ev->mask & IN_MOVE_SELF
                                ? "was moved away"
                                : "is no longer watched (deleted or unmounted)");
            *rescan = false;     /* what was queued before is moot; the folder is gone */
            retry_watches(self); /* it may be back already (mv drop old; mkdir drop) */
            return;
        }
        if (!*name || nw_watch_name_skipped(name))
            return;
        if (ev->mask & IN_ISDIR) {
            char err[256];
            if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
                /* files may have landed before the watch: scan right after adding it
                 * (a folder that cannot be watched is scanned too, then polled) */
                int rc = add_subdir(self, name);
                if (rc >= 0 && scan_and_report(self, name, rc == 1, err, sizeof err))
                    nw_warn("watch: %s", err);
                health_check(self);
            }
            self->stats.subdirs = zhashx_size(self->subdirs);
            return;
        }
        if (ev->mask & IN_CREATE)
            on_created(self, "", name);
        if ((ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) && !on_closed(self, "", name))
            report(self, "", name);
        return;
    }
    const char *subdir = zhashx_lookup(self->subdirs, wd_key(ev->wd));
    if (!subdir)
        return; /* a watch already forgotten */
    if (ev->mask & IN_IGNORED) {
        zhashx_delete(self->subdirs, wd_key(ev->wd));
        self->stats.subdirs = zhashx_size(self->subdirs);
        return;
    }
    if (ev->mask & IN_MOVE_SELF) {
        subdir_moved(self, ev->wd, subdir);
        health_check(self);
        return;
    }
    if (!*name || (ev->mask & IN_ISDIR) || nw_watch_name_skipped(name))
        return;
    if (ev->mask & IN_CREATE)
        on_created(self, subdir, name);
    if ((ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) && !on_closed(self, subdir, name))
        report(self, subdir, name);
}

static void on_readable(uv_poll_t *handle, int status, int events)
{
    nw_watch_t *self = handle->data;
    (void) events;
    if (status < 0) {
        nw_err("watch: polling inotify: %s", uv_strerror(status));
        return;
    }
    bool rescan = false;
    /* One read per wake-up: uv_poll is level-triggered, so what this read leaves wakes
     * the loop again, and under a steady stream the read that would only say EAGAIN
     * was a syscall per file. */
    ssize_t n;
    do
        n = read(self->ifd, self->buf, sizeof self->buf);
    while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN)
        nw_err("watch: reading inotify: %s", strerror(errno));
    for (char *p = self->buf; n > 0 && p < self->buf + n && !self->stopped;) {
        const struct inotify_event *ev = (const struct inotify_event *) (void *) p;
        handle_event(self, ev, &rescan);
        p += sizeof *ev + ev->len;
    }
    if (rescan && !self->stopped && self->drop_state != DROP_MISSING) {
        char err[256];
        nw_warn("watch: inotify queue overflowed; rescanning %s", self->drop_dir);
        if (nw_watch_rescan(self, err, sizeof err) != 0)
            nw_err("watch: %s", err);
    }
}

/* ------------------------------------------------------------------------------
 * Life cycle
 */

static void free_watch(nw_watch_t *self)
{
    backlog_clear(self);
    if (self->ifd >= 0)
        close(self->ifd);
    zhashx_destroy(&self->subdirs);
    zhashx_destroy(&self->unwatched);
    zhashx_destroy(&self->fresh);
    free(self->drop_dir);
    free(self);
}

static void on_close(uv_handle_t *handle)
{
    nw_watch_t *self = handle->data;
    if (--self->open_handles == 0)
        free_watch(self);
}

static void fresh_free(void **item)
{
    free(*item);
    *item = NULL;
}

nw_watch_t *nw_watch_new(uv_loop_t *loop, const char *drop_dir, nw_watch_fn *fn, void *arg,
                         char *errbuf, size_t errlen)
{
    struct stat st;
    if (stat(drop_dir, &st) != 0) {
        snprintf(errbuf, errlen, "drop folder %s: %s", drop_dir, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(errbuf, errlen, "drop folder %s: not a directory", drop_dir);
        return NULL;
    }
    nw_watch_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(errbuf, errlen, "watch: out of memory");
        return NULL;
    }
    self->ifd = -1;
    self->drop_wd = -1;
    self->loop = loop;
    self->fn = fn;
    self->arg = arg;
    self->drop_dir = strdup(drop_dir);
    self->subdirs = zhashx_new();
    self->unwatched = zhashx_new();
    self->fresh = zhashx_new();
    if (!self->drop_dir || !self->subdirs || !self->unwatched || !self->fresh) {
        snprintf(errbuf, errlen, "watch: out of memory");
        goto fail;
    }
    zhashx_set_key_hasher(self->subdirs, wd_hash);
    zhashx_set_key_comparator(self->subdirs, wd_compare);
    zhashx_set_key_duplicator(self->subdirs, NULL);
    zhashx_set_key_destructor(self->subdirs, NULL);
    zhashx_set_destructor(self->subdirs, name_free);
    zhashx_set_destructor(self->fresh, fresh_free);
    self->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (self->ifd < 0) {
        snprintf(errbuf, errlen, "inotify_init1: %s", strerror(errno));
        goto fail;
    }
    int rc = uv_poll_init(loop, &self->poll, self->ifd);
    if (rc < 0) {
        snprintf(errbuf, errlen, "uv_poll_init: %s", uv_strerror(rc));
        goto fail;
    }
    self->poll.data = self;
    uv_timer_init(loop, &self->tick);
    uv_idle_init(loop, &self->nudge);
    self->tick.data = self->nudge.data = self;
    self->open_handles = 3;
    return self;
fail:
    free_watch(self);
    return NULL;
}

int nw_watch_start(nw_watch_t *self, char *errbuf, size_t errlen)
{
    if (self->stopped || self->started) {
        snprintf(errbuf, errlen, "watch: already started");
        return -1;
    }
    /* A folder that is there but cannot be watched (the watch limit) is scanned each
     * tick instead; one that cannot even be read fails the scan below. */
    drop_watch(self);
    int rc = uv_poll_start(&self->poll, UV_READABLE, on_readable);
    if (rc < 0) {
        snprintf(errbuf, errlen, "uv_poll_start: %s", uv_strerror(rc));
        return -1;
    }
    self->polling = true;
    self->started = true;
    uv_timer_start(&self->tick, on_tick, TICK_MS, TICK_MS);
    uv_unref((uv_handle_t *) &self->tick);
    /* events queued meanwhile are read on the next loop turn: duplicates, not losses */
    if (scan_and_report(self, NULL, false, errbuf, errlen) != 0)
        return -1;
    if (self->stats.reports)
        nudge(self); /* the loop's first turn hands the backlog on without waiting */
    health_check(self);
    return 0;
}

void nw_watch_stop(nw_watch_t *self)
{
    if (!self || self->stopped)
        return;
    self->stopped = true;
    /* the held files stay in the folder for the next start: keep counting them */
    unsigned long held = self->stats.backlog;
    backlog_clear(self);
    self->stats.backlog = held;
    if (self->polling)
        uv_poll_stop(&self->poll);
    self->polling = false;
    uv_timer_stop(&self->tick);
    uv_idle_stop(&self->nudge);
}

void nw_watch_destroy(nw_watch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nw_watch_t *self = *self_p;
    *self_p = NULL;
    nw_watch_stop(self);
    if (!self->closing) {
        self->closing = true;
        uv_close((uv_handle_t *) &self->poll, on_close);
        uv_close((uv_handle_t *) &self->tick, on_close);
        uv_close((uv_handle_t *) &self->nudge, on_close);
    }
}

void nw_watch_stats(const nw_watch_t *self, nw_watch_stats_t *out)
{
    *out = self->stats;
}
