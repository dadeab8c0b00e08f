/*
 * newswire-drop: deliver article files into a newswired drop folder so the daemon only
 * ever sees whole files. Each FILE (or stdin for "-") is copied to a hidden temporary
 * name in the target folder, synced, then renamed into place without ever replacing an
 * existing file, and the folder is synced. The final path is printed on stdout.
 */
#include "newswire.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_RENAME_TRIES 10000

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: newswire-drop [--subject S] [--drop DIR] FILE...\n"
            "Deliver article FILEs atomically into a newswired drop folder (\"-\": stdin,\n"
            "named stdin-TIME.txt). An existing file is never replaced: NAME becomes NAME-1...\n"
            "\n"
            "  -s, --subject S  deliver into DIR/<S as a topic name>/ (created if missing),\n"
            "                   which routes the article to that topic\n"
            "  -d, --drop DIR   the drop folder (default ./drop); it must exist\n"
            "  -h, --help       this text\n"
            "\n"
            "Prints each delivered path. Exit status: 0 all delivered, 1 some failed, 2 bad "
            "usage.\n");
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        buf += n;
        len -= (size_t) n;
    }
    return 0;
}

static int copy_fd(int in, int out)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (write_all(out, buf, (size_t) n) != 0)
            return -1;
    }
}

/* NAME, NAME-1, NAME-2... with the number before the extension so the daemon still
 * recognises the format by it ("story.txt" -> "story-1.txt"). */
static int candidate_name(const char *name, int attempt, char *out, size_t outlen)
{
    if (attempt == 0)
        return snprintf(out, outlen, "%s", name) < (int) outlen ? 0 : -1;
    const char *dot = strrchr(name, '.');
    size_t stem = dot && dot != name ? (size_t) (dot - name) : strlen(name);
    int n = snprintf(out, outlen, "%.*s-%d%s", (int) stem, name, attempt, name + stem);
    return n >= 0 && n < (int) outlen ? 0 : -1;
}

/* Rename tmp to the first free candidate; never replaces. */
static int place(int dirfd, const char *tmp, const char *name, char *final, size_t finallen)
{
    for (int attempt = 0; attempt < MAX_RENAME_TRIES; attempt++) {
        if (candidate_name(name, attempt, final, finallen) != 0) {
            errno = ENAMETOOLONG;
            return -1;
        }
        if (renameat2(dirfd, tmp, dirfd, final, RENAME_NOREPLACE) == 0)
            return 0;
        if (errno == EINVAL || errno == ENOSYS) {
            /* Filesystem without RENAME_NOREPLACE: a hard link refuses to replace too. */
            if (linkat(dirfd, tmp, dirfd, final, 0) == 0)
                return unlinkat(dirfd, tmp, 0) == 0 || errno == ENOENT ? 0 : -1;
        }
        if (errno != EEXIST)
            return -1;
    }
    errno = EEXIST;
    return -1;
}

static int deliver(const char *file, const char *dir, mode_t mode)
{
    char name[NAME_MAX + 1], tmp[PATH_MAX], final[NAME_MAX + 1];
    int in = -1, out = -1, dirfd = -1, rc = -1;
    const char *step = "open";
    tmp[0] = '\0';

    if (strcmp(file, "-") == 0) {
        time_t now = time(NULL);
        struct tm tm;
        strftime(name, sizeof name, "stdin-%Y%m%dT%H%M%SZ.txt", gmtime_r(&now, &tm));
        in = STDIN_FILENO;
    } else {
        char copy[PATH_MAX];
        snprintf(copy, sizeof copy, "%s", file);
        const char *base = basename(copy);
        while (*base == '.') /* the daemon ignores hidden names */
            base++;
        if (!*base || strlen(base) > NAME_MAX - 24) {
            fprintf(stderr, "newswire-drop: %s: unusable file name\n", file);
            return -1;
        }
        snprintf(name, sizeof name, "%s", base);
        in = open(file, O_RDONLY | O_CLOEXEC);
        if (in < 0)
            goto fail;
        struct stat st;
        step = "stat";
        if (fstat(in, &st) != 0)
            goto fail;
        if (!S_ISREG(st.st_mode)) {
            fprintf(stderr, "newswire-drop: %s: not a regular file\n", file);
            goto out;
        }
    }
    step = "open drop folder";
    dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        goto fail;
    step = "create temporary file";
    if (snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX.tmp", dir, name) >= (int) sizeof tmp) {
        errno = ENAMETOOLONG;
        goto fail;
    }
    out = mkstemps(tmp, 4);
    if (out < 0) {
        tmp[0] = '\0';
        goto fail;
    }
    step = "write";
    if (fchmod(out, mode) != 0 || copy_fd(in, out) != 0)
        goto fail;
    step = "sync";
    if (fsync(out) != 0)
        goto fail;
    step = "close";
    int closed = close(out);
    out = -1;
    if (closed != 0)
        goto fail;
    step = "rename";
    if (place(dirfd, strrchr(tmp, '/') + 1, name, final, sizeof final) != 0)
        goto fail;
    tmp[0] = '\0'; /* renamed: nothing to clean up */
    step = "sync drop folder";
    if (fsync(dirfd) != 0)
        goto fail;
    printf("%s/%s\n", dir, final);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "newswire-drop: %s: %s: %s\n", file, step, strerror(errno));
out:
    if (tmp[0])
        unlink(tmp);
    if (out >= 0)
        close(out);
    if (in > STDIN_FILENO)
        close(in);
    if (dirfd >= 0)
        close(dirfd);
    return rc;
}

/* DIR/<topic>, created and made durable in DIR if new. It gets DIR's permissions, not
 * the umask's: the daemon moves files out of it, and in a drop folder shared by a group
 * (the packaged /var/spool/newswire/drop, 2770 newswire:newswire-drop) a folder that
 * only its creator may write would keep every file dropped there forever. */
static int subject_dir(const char *drop, mode_t drop_mode, const char *subject, char *out,
                       size_t outlen)
{
    char topic[NW_CLIENT_TOPIC_MAX + 1];
    if (nw_client_topic_normalize(subject, topic, sizeof topic) != 0) {
        fprintf(stderr, "newswire-drop: subject '%s' gives no topic name\n", subject);
        return -1;
    }
    if (snprintf(out, outlen, "%s/%s", drop, topic) >= (int) outlen) {
        fprintf(stderr, "newswire-drop: path too long\n");
        return -1;
    }
    mode_t mask = umask(0); /* single-threaded: no one else creates files meanwhile */
    int made = mkdir(out, drop_mode & 0777); /* a setgid DIR passes its bit on itself */
    int saved = errno;
    umask(mask);
    errno = saved;
    if (made == 0) {
        int fd = open(drop, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
    } else if (errno != EEXIST) {
        fprintf(stderr, "newswire-drop: cannot create %s: %s\n", out, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"subject", required_argument, NULL, 's'},
        {"drop", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *drop = "./drop", *subject = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "s:d:h", options, NULL)) != -1) {
        switch (opt) {
        case 's': subject = optarg; break;
        case 'd': drop = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind == argc) {
        usage(stderr);
        return 2;
    }
    struct stat st;
    errno = 0;
    if (stat(drop, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "newswire-drop: drop folder %s: %s\n", drop,
                errno ? strerror(errno) : "not a directory");
        return 1;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", drop);
    if (subject && subject_dir(drop, st.st_mode, subject, dir, sizeof dir) != 0)
        return 1;

    /* mkstemp makes 0600; the daemon may run as another user, so honour the umask. */
    mode_t mask = umask(0);
    umask(mask);
    int status = 0;
    for (int i = optind; i < argc; i++)
        if (deliver(argv[i], dir, 0644 & ~mask) != 0)
            status = 1;
    return status;
}
