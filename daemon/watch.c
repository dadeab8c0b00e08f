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
#include <unistd.h>

#define WATCH_BUF_SIZE 65536
#define DROP_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | \
                   IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define SUBDIR_MASK (IN_CLOSE_WRITE | IN_MOVED_TO | IN_ONLYDIR | IN_DONT_FOLLOW)

struct nw_watch {
    uv_loop_t *loop;
    char *drop_dir;
    nw_watch_fn *fn;
    void *arg;
    int ifd;                /* inotify descriptor, closed by the close callback */
    int drop_wd;            /* -1 until started, or after the drop folder went away */
    uv_poll_t poll;
    bool polling, stopped, closing;
    zhashx_t *subdirs;      /* wd (as a pointer) -> subfolder name */
    struct scan *backlog;   /* sorted scans not yet fully reported, oldest scan first */
    bool held;              /* the callback asked to wait for nw_watch_resume */
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
    scan_t *next;           /* backlog queue */
    entry_t *entries;
    size_t count, cap;
    size_t reported;        /* entries already handed to the callback */
    char *names;            /* NUL-separated names */
    size_t names_len, names_cap;
    char **subdirs;         /* owned copies of the subfolder names scanned */
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

/* Watch drop_dir/name; -1 only when the folder cannot be watched (it may be gone). */
static int add_subdir(nw_watch_t *self, const char *name)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", self->drop_dir, name) >= (int) sizeof path)
        return -1;
    int wd = inotify_add_watch(self->ifd, path, SUBDIR_MASK);
    if (wd < 0) {
        if (errno != ENOENT && errno != ENOTDIR) {
            char esc[256];
            nw_warn("watch: cannot watch subfolder %s: %s",
                    nw_log_escape(name, esc, sizeof esc), strerror(errno));
        }
        return -1;
    }
    char *copy = strdup(name);
    if (!copy)
        return -1;
    /* the same folder seen again (renamed, or rescanned) keeps its wd: take the name */
    zhashx_update(self->subdirs, wd_key(wd), copy);
    return 0;
}

/* A subfolder moved out of the drop folder: forget it, its events would mislead. */
static void remove_subdir(nw_watch_t *self, const char *name)
{
    for (char *value = zhashx_first(self->subdirs); value; value = zhashx_next(self->subdirs)) {
        if (strcmp(value, name) == 0) {
            int wd = (int) (uintptr_t) zhashx_cursor(self->subdirs);
            inotify_rm_watch(self->ifd, wd);
            zhashx_delete(self->subdirs, wd_key(wd));
            return;
        }
    }
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

/* Collect the entries of one folder. subdir NULL: the drop folder itself, whose
 * subfolders are watched (before they are read) and collected too. */
static int scan_dir(nw_watch_t *self, scan_t *scan, const char *subdir,
                    char *errbuf, size_t errlen)
{
    char path[PATH_MAX];
    if (subdir)
        snprintf(path, sizeof path, "%s/%s", self->drop_dir, subdir);
    else
        snprintf(path, sizeof path, "%s", self->drop_dir);
    DIR *dir = opendir(path);
    if (!dir) {
        if (subdir)             /* gone since the event, or not a folder any more */
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
            continue;           /* also ".", ".." */
        struct stat st;
        if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;           /* gone meanwhile */
        if (S_ISDIR(st.st_mode)) {
            /* one level only; the watch comes first so nothing lands unseen */
            if (!subdir && add_subdir(self, de->d_name) == 0 &&
                scan_dir(self, scan, de->d_name, errbuf, errlen) != 0)
                goto fail;
            continue;
        }
        /* anything else is a hint: the pipeline opens with O_NOFOLLOW and decides */
        int64_t mtime = (int64_t) st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
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
static int scan_and_report(nw_watch_t *self, const char *subdir, char *errbuf, size_t errlen)
{
    scan_t *scan = calloc(1, sizeof *scan);
    if (!scan) {
        snprintf(errbuf, errlen, "scanning: out of memory");
        return -1;
    }
    int rc = scan_dir(self, scan, subdir, errbuf, errlen);
    self->stats.subdirs = zhashx_size(self->subdirs);
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
    if (!self || self->stopped || self->drop_wd < 0) {
        snprintf(errbuf, errlen, "watch: not running");
        return -1;
    }
    self->stats.rescans++;
    return scan_and_report(self, NULL, errbuf, errlen);
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
        if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
            nw_err("watch: drop folder %s was %s; no new files will be seen", self->drop_dir,
                   ev->mask & IN_DELETE_SELF ? "deleted" : "moved");
            return;
        }
        if (ev->mask & IN_IGNORED) {
            self->drop_wd = -1;
            return;
        }
        if (!*name || nw_watch_name_skipped(name))
            return;
        if (ev->mask & IN_ISDIR) {
            char err[256];
            if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
                /* files may have landed before the watch: scan right after adding it */
                if (add_subdir(self, name) == 0 && scan_and_report(self, name, err, sizeof err))
                    nw_warn("watch: %s", err);
            }
            else if (ev->mask & IN_MOVED_FROM)
                remove_subdir(self, name);
            self->stats.subdirs = zhashx_size(self->subdirs);
            return;
        }
        if (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO))
            report(self, "", name);
        return;
    }
    const char *subdir = zhashx_lookup(self->subdirs, wd_key(ev->wd));
    if (!subdir)
        return;                 /* a watch already forgotten */
    if (ev->mask & IN_IGNORED) {
        zhashx_delete(self->subdirs, wd_key(ev->wd));
        self->stats.subdirs = zhashx_size(self->subdirs);
        return;
    }
    if (*name && !(ev->mask & IN_ISDIR) && (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) &&
        !nw_watch_name_skipped(name))
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
    for (char *p = self->buf; n > 0 && p < self->buf + n && !self->stopped; ) {
        const struct inotify_event *ev = (const struct inotify_event *) (void *) p;
        handle_event(self, ev, &rescan);
        p += sizeof *ev + ev->len;
    }
    if (rescan && !self->stopped) {
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
    free(self->drop_dir);
    free(self);
}

static void on_close(uv_handle_t *handle)
{
    free_watch(handle->data);
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
    if (!self->drop_dir || !self->subdirs) {
        snprintf(errbuf, errlen, "watch: out of memory");
        goto fail;
    }
    zhashx_set_key_hasher(self->subdirs, wd_hash);
    zhashx_set_key_comparator(self->subdirs, wd_compare);
    zhashx_set_key_duplicator(self->subdirs, NULL);
    zhashx_set_key_destructor(self->subdirs, NULL);
    zhashx_set_destructor(self->subdirs, name_free);
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
    return self;
fail:
    free_watch(self);
    return NULL;
}

int nw_watch_start(nw_watch_t *self, char *errbuf, size_t errlen)
{
    if (self->stopped || self->drop_wd >= 0) {
        snprintf(errbuf, errlen, "watch: already started");
        return -1;
    }
    self->drop_wd = inotify_add_watch(self->ifd, self->drop_dir, DROP_MASK);
    if (self->drop_wd < 0) {
        snprintf(errbuf, errlen, "cannot watch drop folder %s: %s", self->drop_dir,
                 strerror(errno));
        return -1;
    }
    int rc = uv_poll_start(&self->poll, UV_READABLE, on_readable);
    if (rc < 0) {
        snprintf(errbuf, errlen, "uv_poll_start: %s", uv_strerror(rc));
        return -1;
    }
    self->polling = true;
    /* events queued meanwhile are read on the next loop turn: duplicates, not losses */
    return scan_and_report(self, NULL, errbuf, errlen);
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
    }
}

void nw_watch_stats(const nw_watch_t *self, nw_watch_stats_t *out)
{
    *out = self->stats;
}
