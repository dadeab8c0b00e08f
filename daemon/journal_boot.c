/*
 * journal_boot: the early-publish run marker (see journal.h, "early publish").
 *
 * In early mode (nw_journal_options_t.early) messages go out once their group write's
 * write(2) returned, before its fdatasync: a power loss can then take the journal's
 * tail while subscribers hold its seqs. So while an early run lasts, STATE/journal/
 * early.run names the boot it runs in (/proc/sys/kernel/random/boot_id), written and
 * fsynced before anything is published, and removed at a clean close once everything
 * is durable. At open, a marker naming another boot (or "lost": an fdatasync failed
 * after its records went out) means the stop was unclean across a power loss or
 * reboot, and recovery starts a new epoch. A marker naming this boot is a crash of the
 * process alone (kill -9, abort): the page cache kept every write, the epoch holds.
 * In: the state folder's journal dir. Out: the verdict for recovery, the marker on disk.
 *
 * Test builds (NW_TEST_HOOKS) read the boot id from the file NW_TEST_BOOT_ID_FILE
 * names when it is set, so that the e2e tests can stage "another boot".
 */
#include "fsutil.h"
#include "journal_internal.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MARKER "early.run"

static int read_line(const char *path, char *out, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, out, len - 1);
    int e = errno;
    close(fd);
    if (n < 0) {
        errno = e;
        return -1;
    }
    out[n] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

void nw_journal_boot_id(char *out, size_t len)
{
    const char *path = "/proc/sys/kernel/random/boot_id";
#ifdef NW_TEST_HOOKS
    const char *test = getenv("NW_TEST_BOOT_ID_FILE");
    if (test && *test)
        path = test;
#endif
    if (read_line(path, out, len) != 0 || !out[0]) {
        nw_warn("journal: cannot read the boot id from %s (%s): any unclean stop of an "
                "early run will start a new epoch",
                path, strerror(errno));
        snprintf(out, len, "unknown");
    }
}

static void marker_path(const nw_journal_t *self, char *path, size_t len)
{
    snprintf(path, len, "%s/" MARKER, self->dir);
}

int nw_journal_boot_check(nw_journal_t *self, char *why, size_t len)
{
    char path[PATH_MAX], was[128];
    why[0] = '\0';
    marker_path(self, path, sizeof path);
    if (read_line(path, was, sizeof was) != 0)
        return errno == ENOENT ? 0 : -1;
    if (strcmp(was, "lost") == 0)
        snprintf(why, len, "an fdatasync failed after its messages were published early");
    else if (strcmp(was, self->boot_id) != 0 || strcmp(was, "unknown") == 0)
        snprintf(why, len,
                 "an early-publish run stopped uncleanly in boot %.40s (this is "
                 "boot %.40s)",
                 was, self->boot_id);
    return 0;
}

int nw_journal_boot_mark(nw_journal_t *self, const char *what)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    marker_path(self, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s/" MARKER ".tmp", self->dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0)
        return -1;
    char line[160];
    int n = snprintf(line, sizeof line, "%s\n", what);
    if (write(fd, line, (size_t) n) != n || fsync(fd) != 0) {
        int e = errno ? errno : EIO;
        close(fd);
        unlink(tmp);
        errno = e;
        return -1;
    }
    close(fd);
    if (rename(tmp, path) != 0)
        return -1;
    return nw_journal_sync_dir(self->dir);
}

int nw_journal_boot_clear(nw_journal_t *self)
{
    char path[PATH_MAX];
    marker_path(self, path, sizeof path);
    if (unlink(path) != 0)
        return errno == ENOENT ? 0 : -1;
    return nw_journal_sync_dir(self->dir);
}
