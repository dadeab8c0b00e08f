/* test_archive: candidate names, collisions never overwrite, the day folder, rejects
 * with a one-line reason beside them. Each case runs in a fresh temporary state folder. */
#include "archive.h"
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static char *read_file(const char *path)
{
    static char buf[4096];
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static char root[64], state[512], drop[512];
static const int64_t day_ms = 1621944000000LL; /* 2021-05-25T12:00:00Z */

static int setup(void)
{
    char err[512];
    snprintf(root, sizeof root, "/tmp/nw-archive-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    snprintf(state, sizeof state, "%s/state", root);
    snprintf(drop, sizeof drop, "%s/drop", root);
    mkdir(drop, 0750);
    CHECK(nw_archive_prepare(state, err, sizeof err) == 0);
    return 0;
}
TEST_SETUP(setup)

static void teardown(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
}
TEST_TEARDOWN(teardown)

/* NAME_MAX - 4 'n's and ".txt" */
static void longest_name(char *longest)
{
    memset(longest, 'n', NAME_MAX - 4);
    memcpy(longest + NAME_MAX - 4, ".txt", 5);
}

TEST_IMPL(candidate_names)
{
    char name[NAME_MAX + 1];
    nw_archive_candidate("story.txt", 0, NAME_MAX, name, sizeof name);
    CHECK_STR(name, "story.txt");
    nw_archive_candidate("story.txt", 2, NAME_MAX, name, sizeof name);
    CHECK_STR(name, "story-2.txt");
    nw_archive_candidate("noext", 1, NAME_MAX, name, sizeof name);
    CHECK_STR(name, "noext-1");
    nw_archive_candidate(".hidden", 3, NAME_MAX, name, sizeof name);
    CHECK_STR(name, ".hidden-3");
    nw_archive_candidate("a.tar.gz", 1, NAME_MAX, name, sizeof name);
    CHECK_STR(name, "a.tar-1.gz");

    /* names at NAME_MAX: the stem is cut so the number and the extension still fit */
    char longest[NAME_MAX + 1], expect_name[NAME_MAX + 1];
    longest_name(longest);
    nw_archive_candidate(longest, 0, NAME_MAX, name, sizeof name);
    CHECK_STR(name, longest);
    nw_archive_candidate(longest, 12345, NAME_MAX, name, sizeof name);
    CHECK(strlen(name) == NAME_MAX);
    snprintf(expect_name, sizeof expect_name, "%.*s-12345.txt", NAME_MAX - 10, longest);
    CHECK_STR(name, expect_name);
    /* a reject's limit leaves room for ".reason"; number 0 is then the cut name */
    nw_archive_candidate(longest, 0, NAME_MAX - 7, name, sizeof name);
    snprintf(expect_name, sizeof expect_name, "%.*s.txt", NAME_MAX - 11, longest);
    CHECK_STR(name, expect_name);
    /* never cut inside a UTF-8 sequence: 126 two-byte characters, then ".txt" */
    char accents[NAME_MAX + 1] = "";
    for (int i = 0; i < 125; i++)
        strcat(accents, "\xc3\xa9");
    strcat(accents, "e.txt");
    nw_archive_candidate(accents, 7, NAME_MAX, name, sizeof name);
    CHECK(strlen(name) <= NAME_MAX);
    CHECK(strcmp(name + strlen(name) - 6, "-7.txt") == 0);
    CHECK(((unsigned char) name[strlen(name) - 7] & 0xC0) != 0xC0); /* no lead byte left alone */
    CHECK(((unsigned char) name[strlen(name) - 7] == 0xA9) || name[strlen(name) - 7] == 'e');
    /* an "extension" longer than 16 bytes is stem */
    nw_archive_candidate("report.averyveryverylongsuffix", 1, NAME_MAX, name, sizeof name);
    CHECK_STR(name, "report.averyveryverylongsuffix-1");
}

/* One sequence, each step on what the one before left: stores of one name, rejects of
 * one name, what a crash leaves cleared at the next start, then 12,000 namesakes. */
TEST_IMPL(store_and_reject)
{
    char src[600], dest[4096], err[512];
    /* three files of one name land in that day, none overwritten */
    const char *want[] = {"story.txt", "story-1.txt", "story-2.txt"};
    for (int i = 0; i < 3; i++) {
        snprintf(src, sizeof src, "%s/story.txt", drop);
        char text[32];
        snprintf(text, sizeof text, "copy %d", i);
        write_file(src, text);
        CHECK(nw_archive_store(state, src, day_ms, dest, sizeof dest, err, sizeof err) == 0);
        char expect[700];
        snprintf(expect, sizeof expect, "%s/archive/2021/05/25/%s", state, want[i]);
        CHECK_STR(dest, expect);
        CHECK_STR(read_file(dest), text);
        CHECK(access(src, F_OK) != 0);
    }

    /* a reject keeps the file and writes the reason as exactly one line */
    snprintf(src, sizeof src, "%s/bad.txt", drop);
    write_file(src, "junk");
    CHECK(nw_archive_reject(state, src, "no headline\nsecond line\r", dest, sizeof dest, err,
                            sizeof err) == 0);
    char expect[1200], reason[4200];
    snprintf(expect, sizeof expect, "%s/rejected/bad.txt", state);
    CHECK_STR(dest, expect);
    CHECK_STR(read_file(dest), "junk");
    snprintf(reason, sizeof reason, "%s.reason", dest);
    CHECK_STR(read_file(reason), "no headline second line \n");

    /* a second reject of the same name gets its own name and its own reason */
    snprintf(src, sizeof src, "%s/bad.txt", drop);
    write_file(src, "junk again");
    CHECK(nw_archive_reject(state, src, "no body", dest, sizeof dest, err, sizeof err) == 0);
    snprintf(expect, sizeof expect, "%s/rejected/bad-1.txt", state);
    CHECK_STR(dest, expect);
    snprintf(reason, sizeof reason, "%s.reason", dest);
    CHECK_STR(read_file(reason), "no body\n");
    snprintf(reason, sizeof reason, "%s/rejected/bad.txt.reason", state);
    CHECK_STR(read_file(reason), "no headline second line \n");

    /* what a crash inside a reject leaves is cleared at the next start: a half-written
     * reason, and a reason whose file never arrived; real pairs stay */
    char stale[700];
    snprintf(stale, sizeof stale, "%s/rejected/.x.txt.reason.tmp", state);
    write_file(stale, "half");
    snprintf(stale, sizeof stale, "%s/rejected/orphan.txt.reason", state);
    write_file(stale, "orphan\n");
    CHECK(nw_archive_prepare(state, err, sizeof err) == 0);
    CHECK(access(stale, F_OK) != 0);
    snprintf(stale, sizeof stale, "%s/rejected/.x.txt.reason.tmp", state);
    CHECK(access(stale, F_OK) != 0);
    CHECK(access(reason, F_OK) == 0);
    snprintf(stale, sizeof stale, "%s/rejected/bad-1.txt.reason", state);
    CHECK(access(stale, F_OK) == 0);

    /* 12,000 namesakes already in the day folder (more than the old one-by-one probe
     * ever tried): one more still gets a name, the one after the last, and the next
     * goes straight to the number after it */
    char day[700], taken[1000];
    snprintf(day, sizeof day, "%s/archive/2021/05/25", state);
    for (int i = 3; i <= 12000; i++) {
        snprintf(taken, sizeof taken, "%s/story-%d.txt", day, i);
        int fd = open(taken, O_WRONLY | O_CREAT | O_EXCL, 0640);
        CHECK(fd >= 0);
        close(fd);
    }
    for (int i = 12001; i <= 12002; i++) {
        snprintf(src, sizeof src, "%s/story.txt", drop);
        write_file(src, "one more");
        CHECK(nw_archive_store(state, src, day_ms, dest, sizeof dest, err, sizeof err) == 0);
        snprintf(expect, sizeof expect, "%s/story-%d.txt", day, i);
        CHECK_STR(dest, expect);
        CHECK(access(src, F_OK) != 0);
    }
}

TEST_IMPL(long_names)
{
    char dest[4096], err[512], reason[4200];
    char longest[NAME_MAX + 1];
    longest_name(longest);
    /* a 255-byte name archives twice: the second copy's name is cut to fit */
    char longsrc[1024];
    snprintf(longsrc, sizeof longsrc, "%s/%s", drop, longest);
    for (int i = 0; i < 2; i++) {
        write_file(longsrc, "long");
        CHECK(nw_archive_store(state, longsrc, day_ms, dest, sizeof dest, err, sizeof err) == 0);
        const char *got = strrchr(dest, '/') + 1;
        CHECK(strlen(got) <= NAME_MAX);
        CHECK(i == 0 ? strcmp(got, longest) == 0 : strcmp(got + strlen(got) - 6, "-1.txt") == 0);
        CHECK(access(longsrc, F_OK) != 0);
    }

    /* a 250-byte name is rejected twice, each copy with its reason beside it */
    char name250[251];
    memset(name250, 'r', 246);
    memcpy(name250 + 246, ".txt", 5);
    snprintf(longsrc, sizeof longsrc, "%s/%s", drop, name250);
    for (int i = 0; i < 2; i++) {
        write_file(longsrc, "junk");
        CHECK(nw_archive_reject(state, longsrc, "no headline", dest, sizeof dest, err,
                                sizeof err) == 0);
        CHECK(strlen(strrchr(dest, '/') + 1) <= NAME_MAX - 7);
        CHECK_STR(read_file(dest), "junk");
        snprintf(reason, sizeof reason, "%s.reason", dest);
        CHECK_STR(read_file(reason), "no headline\n");
        CHECK(access(longsrc, F_OK) != 0);
    }
}

/* a missing source is an error with a reason, not a crash */
TEST_IMPL(missing_source)
{
    char src[600], dest[4096], err[512];
    snprintf(src, sizeof src, "%s/gone.txt", drop);
    CHECK(nw_archive_store(state, src, day_ms, dest, sizeof dest, err, sizeof err) == -1);
    CHECK(strstr(err, "cannot move") != NULL);
}

/* Across file systems (the drop folder in /dev/shm, a tmpfs, the state on /tmp's disk):
 * nw_archive_store copies, then removes the source; nw_archive_rename, which the loop
 * thread may call, refuses with EXDEV and leaves the source where it is, uncopied. */
TEST_IMPL(across_file_systems)
{
    struct stat shm, tmp;
    if (stat("/dev/shm", &shm) != 0 || stat(state, &tmp) != 0 || shm.st_dev == tmp.st_dev) {
        nw_test_skip("no /dev/shm on a file system other than /tmp's");
        return;
    }
    char other[64] = "/dev/shm/nw-archive-XXXXXX";
    CHECK(mkdtemp(other) != NULL);
    char src[600], dest[4096], err[512], path[4200];
    snprintf(src, sizeof src, "%s/far.txt", other);
    write_file(src, "from afar");

    CHECK(nw_archive_rename(state, src, day_ms, dest, sizeof dest, err, sizeof err) == -1);
    CHECK(errno == EXDEV);
    CHECK(strstr(err, "cannot move") != NULL);
    CHECK_STR(read_file(src), "from afar");
    snprintf(path, sizeof path, "%s/archive/2021/05/25/far.txt", state);
    CHECK(access(path, F_OK) != 0); /* no copy, not even a partial one */

    CHECK(nw_archive_store(state, src, day_ms, dest, sizeof dest, err, sizeof err) == 0);
    CHECK_STR(dest, path);
    CHECK_STR(read_file(dest), "from afar");
    CHECK(access(src, F_OK) != 0);

    /* within one file system it is the same move as nw_archive_store's */
    snprintf(src, sizeof src, "%s/near.txt", drop);
    write_file(src, "close by");
    CHECK(nw_archive_rename(state, src, day_ms, dest, sizeof dest, err, sizeof err) == 0);
    snprintf(path, sizeof path, "%s/archive/2021/05/25/near.txt", state);
    CHECK_STR(dest, path);
    CHECK_STR(read_file(dest), "close by");
    CHECK(access(src, F_OK) != 0);
    rmdir(other);
}
