/*
 * archive: file moves out of the drop folder (see archive.h). A move is renameat2 with
 * RENAME_NOREPLACE, so two racing moves to the same name cannot overwrite each other;
 * across file systems it falls back to copy, fsync, unlink. A reject claims NAME.reason
 * (a hard link of the finished reason) before it moves the file to NAME, so a rejected
 * file never lacks its reason. The moves need no fsync of their own: the journal
 * already holds the article durably, and a move lost in a crash only brings the file
 * back to the drop folder, where deduplication archives it again.
 */
#include "archive.h"
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_COLLISIONS 10000

void nw_archive_candidate(const char *base, unsigned n, char *out, size_t outlen)
{
    if (n == 0) {
        snprintf(out, outlen, "%s", base);
        return;
    }
    /* keep the extension so tools still recognise the file: story.txt -> story-1.txt */
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base)
        snprintf(out, outlen, "%s-%u", base, n);
    else
        snprintf(out, outlen, "%.*s-%u%s", (int) (dot - base), base, n, dot);
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
        bool tmp = e->d_name[0] == '.' && len > 11 && strcmp(e->d_name + len - 11, ".reason.tmp") == 0;
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

/* Copy then unlink, for a destination on another file system. dest must not exist. */
static int move_by_copy(const char *src, const char *dest)
{
    int in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (in < 0)
        return -1;
    int out = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (out < 0) {
        close(in);
        return -1;
    }
    char buf[65536];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (write(out, buf, (size_t) n) != n) {
            rc = -1;
            break;
        }
    if (n < 0 || fsync(out) != 0)
        rc = -1;
    int saved = errno;
    close(in);
    if (close(out) != 0)
        rc = -1;
    if (rc == 0 && unlink(src) != 0)
        rc = -1;
    if (rc != 0) {
        unlink(dest);
        errno = saved ? saved : EIO;
    }
    return rc;
}

/* One attempt at dest: never replaces; across file systems, copy then unlink. */
static int move_file(const char *src, const char *dest)
{
    if (renameat2(AT_FDCWD, src, AT_FDCWD, dest, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EXDEV || errno == EINVAL)   /* EINVAL: fs without RENAME_NOREPLACE */
        return move_by_copy(src, dest);
    return -1;
}

/* Move src into dir under base's first free candidate name. With reason_tmp (a
 * finished reason file), NAME.reason is claimed first by a hard link, which fails
 * rather than replace: a crash between the two steps leaves the reason and the file
 * still in the drop folder, never a rejected file without its reason. */
static int move_into(const char *src, const char *dir, const char *base,
                     const char *reason_tmp, char *dest, size_t destlen,
                     char *errbuf, size_t errlen)
{
    for (unsigned n = 0; n < MAX_COLLISIONS; n++) {
        char name[512], reason[4200];
        nw_archive_candidate(base, n, name, sizeof name);
        snprintf(dest, destlen, "%s/%s", dir, name);
        snprintf(reason, sizeof reason, "%s.reason", dest);
        if (reason_tmp && link(reason_tmp, reason) != 0) {
            if (errno == EEXIST)
                continue;
            goto fail;
        }
        if (move_file(src, dest) == 0)
            return 0;
        int saved = errno;
        if (reason_tmp)
            unlink(reason);
        errno = saved;
        if (errno == EEXIST)
            continue;
        goto fail;
    }
    snprintf(errbuf, errlen, "no free name for %s in %s", base, dir);
    return -1;
fail:;
    int saved = errno;
    snprintf(errbuf, errlen, "cannot move to %s: %s", dest, strerror(saved));
    errno = saved;   /* the caller tells a missing folder (ENOENT) from the rest */
    return -1;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

int nw_archive_store(const char *state_dir, const char *src, int64_t now_ms,
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
    if (move_into(src, dir, base_name(src), NULL, dest, destlen, errbuf, errlen) == 0)
        return 0;
    if (errno != ENOENT || access(src, F_OK) != 0)
        return -1;
    if (nw_fs_mkdir_p(dir) != 0) {
        snprintf(errbuf, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    return move_into(src, dir, base_name(src), NULL, dest, destlen, errbuf, errlen);
}

int nw_archive_reject(const char *state_dir, const char *src, const char *reason,
                      char *dest, size_t destlen, char *errbuf, size_t errlen)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/rejected", state_dir);
    if (nw_fs_mkdir_p(dir) != 0) {
        snprintf(errbuf, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    /* The reason is one line, whatever the parser said. */
    char line[1024];
    size_t n = 0;
    for (const char *r = reason; *r && n < sizeof line - 2; r++)
        line[n++] = (*r == '\n' || *r == '\r') ? ' ' : *r;
    line[n++] = '\n';
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s/.%s.reason.tmp", dir, base_name(src));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    bool ok = fd >= 0 && write(fd, line, n) == (ssize_t) n;
    if (fd >= 0 && close(fd) != 0)
        ok = false;
    if (!ok) {
        snprintf(errbuf, errlen, "cannot write %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    int rc = move_into(src, dir, base_name(src), tmp, dest, destlen, errbuf, errlen);
    unlink(tmp);
    return rc;
}
