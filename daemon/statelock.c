/*
 * statelock: see statelock.h. The state folder's path comes in; an open, locked
 * descriptor is kept until destroy.
 */
#include "statelock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

struct nw_statelock {
    int fd;
};

/* The pid the holder wrote, or 0 when the file does not (yet) hold one. */
static long holder_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end;
    long pid = strtol(buf, &end, 10);
    return pid > 0 && end != buf && (*end == '\n' || *end == '\0') ? pid : 0;
}

nw_statelock_t *nw_statelock_new(const char *state_dir, char *errbuf, size_t errlen)
{
    char path[PATH_MAX];
    if ((size_t) snprintf(path, sizeof path, "%s/lock", state_dir) >= sizeof path) {
        snprintf(errbuf, errlen, "state folder name too long: %s", state_dir);
        return NULL;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        snprintf(errbuf, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK) {
            long pid = holder_pid(fd);
            if (pid)
                snprintf(errbuf, errlen,
                         "state folder %s is in use by another newswired "
                         "(pid %ld holds %s)",
                         state_dir, pid, path);
            else
                snprintf(errbuf, errlen,
                         "state folder %s is in use by another newswired "
                         "(%s is locked; its pid is not written yet)",
                         state_dir, path);
        } else {
            snprintf(errbuf, errlen, "cannot lock %s: %s", path, strerror(errno));
        }
        close(fd);
        return NULL;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long) getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t) n, 0) != n) {
        snprintf(errbuf, errlen, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    nw_statelock_t *self = malloc(sizeof *self);
    if (!self) {
        snprintf(errbuf, errlen, "out of memory");
        close(fd);
        return NULL;
    }
    self->fd = fd;
    return self;
}

void nw_statelock_destroy(nw_statelock_t **self_p)
{
    nw_statelock_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    close(self->fd); /* releases the flock */
    free(self);
}
