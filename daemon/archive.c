/*
 * archive: file moves out of the drop folder (see archive.h). A move is renameat2 with
 * RENAME_NOREPLACE, so two racing moves to the same name cannot overwrite each other;
 * across file systems it falls back to copy, fsync, unlink. A reject claims NAME.reason
 * (a hard link of the finished reason) before it moves the file to NAME, so a rejected
 * file never lacks its reason. The moves need no fsync of their own: the journal
 * already holds the article durably, and a move lost in a crash only brings the file
 * back to the drop folder, where deduplication archives it again.
 *
 * A taken name is never probed one number at a time (thousands of namesakes a day made
 * that quadratic): the name's last number is kept as a hint, and without one a free
 * number is found in O(log n) looks (move_into). Every candidate fits NAME_MAX, a
 * reject's with room for ".reason": a long name is cut, never refused.
 */
#include "archive.h"
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_TRIES 16 /* names found free and then taken by someone else */
#define MAX_EXT 16   /* a longer "extension" is part of the stem */
#define REASON_SUFFIX ".reason"
#define HINTS 64

/* The next number each recently collided name got, by a hash of its folder and base
 * name: the next namesake of a name (a scraper that always writes index.html) goes
 * straight to its number, without a probe. Only a hint: a wrong one (a hash collision, a
 * file moved in by hand) costs a few probes, never a wrong move, since every move
 * refuses to replace. Shared by the pool's threads. */
static struct {
    uint64_t key;
    unsigned long long next;
} hints[HINTS];
static pthread_mutex_t hints_lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t hint_key(const char *dir, const char *base)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (const unsigned char *p = (const unsigned char *) dir; *p; p++)
        h = (h ^ *p) * 0x100000001b3u;
    h = (h ^ '/') * 0x100000001b3u;
    for (const unsigned char *p = (const unsigned char *) base; *p; p++)
        h = (h ^ *p) * 0x100000001b3u;
    return h | 1; /* 0 marks an empty slot */
}

static unsigned long long hint_get(uint64_t key)
{
    pthread_mutex_lock(&hints_lock);
    unsigned long long next = hints[key % HINTS].key == key ? hints[key % HINTS].next : 0;
    pthread_mutex_unlock(&hints_lock);
    return next;
}

static void hint_set(uint64_t key, unsigned long long next)
{
    pthread_mutex_lock(&hints_lock);
    hints[key % HINTS].key = key;
    hints[key % HINTS].next = next;
    pthread_mutex_unlock(&hints_lock);
}

void nw_archive_candidate(const char *base, unsigned long long n, size_t limit, char *out,
                          size_t outlen)
{
    size_t len = strlen(base);
    if (limit > NAME_MAX)
        limit = NAME_MAX;
    if (n == 0 && len <= limit) {
        snprintf(out, outlen, "%s", base);
        return;
    }
    char suffix[24] = "";
    if (n)
        snprintf(suffix, sizeof suffix, "-%llu", n);
    /* keep the extension so tools still recognise the file: story.txt -> story-1.txt */
    const char *dot = strrchr(base, '.');
    size_t ext = dot && dot != base && strlen(dot) <= MAX_EXT ? strlen(dot) : 0;
    size_t stem = len - ext, room = limit - strlen(suffix) - ext;
    if (stem > room) {
        /* cut the stem to fit NAME_MAX, not inside a UTF-8 sequence */
        stem = room;
        for (int k = 0; k < 3 && stem > 0 && ((unsigned char) base[stem] & 0xC0) == 0x80; k++)
            stem--;
    }
    snprintf(out, outlen, "%.*s%s%s", (int) stem, base, suffix, base + len - ext);
}

int nw_archive_prepare(const char *state_dir, char *errbuf, size_t errlen)
{
    const char *subs[] = {"archive", "rejected"};
    for (size_t i = 0; i < 2; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", state_dir, subs[i]);
        if (nw_fs_mkdir_p(path) != 0) {
            snprintf(errbuf, errlen, "cannot create %s: %s", path, strerror(errno));
            return -1;
        }
    }
    /* A crash inside nw_archive_reject can leave a reason file being written, or a
     * reason whose file never left the drop folder (it is rejected again, under its
     * own reason): neither describes anything in rejected/. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/rejected", state_dir);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        bool tmp = e->d_name[0] == '.' && len > 11 &&
                   strcmp(e->d_name + len - 11, ".reason.tmp") == 0;
        bool reason = !tmp && len > 7 && strcmp(e->d_name + len - 7, ".reason") == 0;
        if (reason) {
            char subject[NAME_MAX + 1];
            snprintf(subject, sizeof subject, "%.*s", (int) (len - 7), e->d_name);
            struct stat st;
            reason = fstatat(dirfd(d), subject, &st, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT;
        }
        if (tmp || reason)
            unlinkat(dirfd(d), e->d_name, 0);
    }
    if (d)
        closedir(d);
    return 0;
}

/* Copy then unlink, for a destination on another file system. dest must not exist.
 * errno is that of the step that failed (the unlink of a file in a folder we may not
 * write is EACCES, not the EXDEV that sent us here). */
static int move_by_copy(const char *src, const char *dest)
{
    int in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return -1;
    int out = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (out < 0) {
        int err = errno;
        close(in);
        errno = err;
        return -1;
    }
    char buf[65536];
    ssize_t n;
    int err = 0;
    while ((n = read(in, buf, sizeof buf)) > 0) {
        errno = 0;
        if (write(out, buf, (size_t) n) != n) {
            err = errno ? errno : ENOSPC; /* a short write: the disk is full */
            break;
        }
    }
    if (!err && n < 0)
        err = errno;
    if (!err && fsync(out) != 0)
        err = errno;
    close(in);
    if (close(out) != 0 && !err)
        err = errno;
    if (!err && unlink(src) != 0)
        err = errno;
    if (err) {
        unlink(dest);
        errno = err;
        return -1;
    }
    return 0;
}

/* One attempt at dest: never replaces; across file systems, copy then unlink, unless
 * rename_only (then EXDEV: the copy is for a thread that may block). */
static int move_file(const char *src, const char *dest, bool rename_only)
{
    if (renameat2(AT_FDCWD, src, AT_FDCWD, dest, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EXDEV || errno == EINVAL) { /* EINVAL: fs without RENAME_NOREPLACE */
        if (rename_only) {
            errno = EXDEV;
            return -1;
        }
        return move_by_copy(src, dest);
    }
    return -1;
}

/* What a move into dir under base's candidate names needs. */
typedef struct {
    const char *src, *dir, *base;
    const char *reason_tmp; /* a reject: the finished reason to link beside the file */
    size_t limit;           /* the longest name: NAME_MAX, less ".reason" for a reject */
    char *dest;
    size_t destlen;
    bool rename_only; /* nw_archive_rename: no copy across file systems */
} move_t;

/* Whether candidate n is in use (as the file or, for a reject, as its reason). What
 * cannot be looked at counts as taken: the move will say why if it matters. */
static bool taken(const move_t *m, unsigned long long n)
{
    char name[NAME_MAX + 1], path[PATH_MAX + 16];
    struct stat st;
    nw_archive_candidate(m->base, n, m->limit, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", m->dir, name);
    if (lstat(path, &st) == 0 || errno != ENOENT)
        return true;
    if (!m->reason_tmp)
        return false;
    snprintf(path, sizeof path, "%s/%s" REASON_SUFFIX, m->dir, name);
    return lstat(path, &st) == 0 || errno != ENOENT;
}

/* A free candidate number above lo, which is taken: steps that double find a free
 * one, then bisection the first free one after the last taken. Not necessarily the
 * lowest free number of all (a gap left by a file deleted by hand is not worth a
 * scan), but found in O(log n) looks however many namesakes the folder holds.
 * 0 when the numbers run out. */
static unsigned long long free_after(const move_t *m, unsigned long long lo)
{
    unsigned long long step = 1, hi;
    for (;;) {
        if (lo > ULLONG_MAX - step)
            return 0;
        hi = lo + step;
        if (!taken(m, hi))
            break;
        lo = hi;
        step = step > ULLONG_MAX / 2 ? step : step * 2;
    }
    while (hi - lo > 1) {
        unsigned long long mid = lo + (hi - lo) / 2;
        if (taken(m, mid))
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}

/* One attempt at candidate n: 0 moved, 1 the name is taken, -1 another failure. With
 * reason_tmp, NAME.reason is claimed first by a hard link, which fails rather than
 * replace: a crash between the two steps leaves the reason and the file still in the
 * drop folder, never a rejected file without its reason. */
static int try_name(const move_t *m, unsigned long long n)
{
    char name[NAME_MAX + 1], reason[PATH_MAX + 16];
    nw_archive_candidate(m->base, n, m->limit, name, sizeof name);
    snprintf(m->dest, m->destlen, "%s/%s", m->dir, name);
    snprintf(reason, sizeof reason, "%s" REASON_SUFFIX, m->dest);
    if (m->reason_tmp && link(m->reason_tmp, reason) != 0)
        return errno == EEXIST ? 1 : -1;
    if (move_file(m->src, m->dest, m->rename_only) == 0)
        return 0;
    int saved = errno;
    if (m->reason_tmp)
        unlink(reason);
    errno = saved;
    return errno == EEXIST ? 1 : -1;
}

/* Move src into dir under base's first free candidate name: the name itself, else the
 * number the name's last namesake left as a hint, else one found by free_after. A move
 * costs a constant number of attempts while names repeat, O(log n) looks the first
 * time a name with n namesakes is seen. */
static int move_into(const char *src, const char *dir, const char *base, const char *reason_tmp,
                     bool rename_only, char *dest, size_t destlen, char *errbuf, size_t errlen)
{
    move_t m = {src,
                dir,
                base,
                reason_tmp,
                reason_tmp ? NAME_MAX - strlen(REASON_SUFFIX) : NAME_MAX,
                dest,
                destlen,
                rename_only};
    uint64_t key = hint_key(dir, base);
    unsigned long long n = 0;
    for (int tries = 0; tries < MAX_TRIES; tries++) {
        int rc = try_name(&m, n);
        if (rc == 0) {
            if (n)
                hint_set(key, n + 1);
            return 0;
        }
        if (rc < 0)
            goto fail;
        unsigned long long hint = tries == 0 ? hint_get(key) : 0;
        n = hint > n ? hint : free_after(&m, n);
        if (n == 0)
            break;
    }
    snprintf(errbuf, errlen, "no free name for %s in %s", base, dir);
    errno = EEXIST;
    return -1;
fail:;
    int saved = errno;
    snprintf(errbuf, errlen, "cannot move to %s: %s", dest, strerror(saved));
    errno = saved; /* the caller tells a missing folder (ENOENT) from the rest */
    return -1;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static int store(const char *state_dir, const char *src, int64_t now_ms, bool rename_only,
                 char *dest, size_t destlen, char *errbuf, size_t errlen)
{
    time_t secs = (time_t) (now_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/archive/%04d/%02d/%02d", state_dir, tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday);
    /* The day's folder exists for all but the first file of the day: try the move
     * first and create the folder only when the move says it is missing. */
    if (move_into(src, dir, base_name(src), NULL, rename_only, dest, destlen, errbuf, errlen) ==
        0)
        return 0;
    if (errno != ENOENT || access(src, F_OK) != 0)
        return -1;
    if (nw_fs_mkdir_p(dir) != 0) {
        int saved = errno;
        snprintf(errbuf, errlen, "cannot create %s: %s", dir, strerror(saved));
        errno = saved;
        return -1;
    }
    return move_into(src, dir, base_name(src), NULL, rename_only, dest, destlen, errbuf, errlen);
}

int nw_archive_store(const char *state_dir, const char *src, int64_t now_ms, char *dest,
                     size_t destlen, char *errbuf, size_t errlen)
{
    return store(state_dir, src, now_ms, false, dest, destlen, errbuf, errlen);
}

int nw_archive_rename(const char *state_dir, const char *src, int64_t now_ms, char *dest,
                      size_t destlen, char *errbuf, size_t errlen)
{
    return store(state_dir, src, now_ms, true, dest, destlen, errbuf, errlen);
}

int nw_archive_reject(const char *state_dir, const char *src, const char *reason, char *dest,
                      size_t destlen, char *errbuf, size_t errlen)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/rejected", state_dir);
    if (nw_fs_mkdir_p(dir) != 0) {
        int saved = errno;
        snprintf(errbuf, errlen, "cannot create %s: %s", dir, strerror(saved));
        errno = saved;
        return -1;
    }
    /* The reason is one line, whatever the parser said. */
    char line[1024];
    size_t n = 0;
    for (const char *r = reason; *r && n < sizeof line - 2; r++)
        line[n++] = (*r == '\n' || *r == '\r') ? ' ' : *r;
    line[n++] = '\n';
    /* Not named after the file: a name near NAME_MAX must still get its reason. */
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s/.nw-XXXXXX" REASON_SUFFIX ".tmp", dir);
    int fd = mkostemps(tmp, (int) strlen(REASON_SUFFIX ".tmp"), O_CLOEXEC);
    bool ok = fd >= 0 && fchmod(fd, 0640) == 0 && write(fd, line, n) == (ssize_t) n;
    if (fd >= 0 && close(fd) != 0)
        ok = false;
    if (!ok) {
        int saved = errno;
        snprintf(errbuf, errlen, "cannot write %s: %s", tmp, strerror(saved));
        unlink(tmp);
        errno = saved;
        return -1;
    }
    int rc = move_into(src, dir, base_name(src), tmp, false, dest, destlen, errbuf, errlen);
    int saved = errno;
    unlink(tmp);
    errno = saved;
    return rc;
}
