/* test_archive: candidate names, collisions never overwrite, the day folder, rejects
 * with a one-line reason beside them. Runs in a fresh temporary state folder. */
#include "check.h"
#include "archive.h"

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

int main(void)
{
    char name[256];
    nw_archive_candidate("story.txt", 0, name, sizeof name);
    CHECK_STR(name, "story.txt");
    nw_archive_candidate("story.txt", 2, name, sizeof name);
    CHECK_STR(name, "story-2.txt");
    nw_archive_candidate("noext", 1, name, sizeof name);
    CHECK_STR(name, "noext-1");
    nw_archive_candidate(".hidden", 3, name, sizeof name);
    CHECK_STR(name, ".hidden-3");
    nw_archive_candidate("a.tar.gz", 1, name, sizeof name);
    CHECK_STR(name, "a.tar-1.gz");

    char root[] = "/tmp/nw-archive-XXXXXX";
    CHECK(mkdtemp(root) != NULL);
    char state[512], drop[512], src[600], dest[4096], err[512];
    snprintf(state, sizeof state, "%s/state", root);
    snprintf(drop, sizeof drop, "%s/drop", root);
    mkdir(drop, 0750);
    CHECK(nw_archive_prepare(state, err, sizeof err) == 0);

    /* 2021-05-25T12:00:00Z: three files of one name land in that day, none overwritten */
    int64_t day_ms = 1621944000000LL;
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
    CHECK(nw_archive_reject(state, src, "no headline\nsecond line\r", dest, sizeof dest,
                            err, sizeof err) == 0);
    char expect[700], reason[4200];
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

    /* a missing source is an error with a reason, not a crash */
    snprintf(src, sizeof src, "%s/gone.txt", drop);
    CHECK(nw_archive_store(state, src, day_ms, dest, sizeof dest, err, sizeof err) == -1);
    CHECK(strstr(err, "cannot move") != NULL);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
    return CHECK_DONE();
}
