/* test_fsutil: mkdir -p creates what is missing, accepts what exists, and refuses a
 * file standing where a folder should be. */
#include "fsutil.h"
#include "runner.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

TEST_IMPL(mkdir_p)
{
    char root[] = "/tmp/nw-fsutil-XXXXXX";
    CHECK(mkdtemp(root) != NULL);
    char path[512];
    struct stat st;

    snprintf(path, sizeof path, "%s/a/b/c", root);
    CHECK(nw_fs_mkdir_p(path) == 0);
    CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0750);
    CHECK(nw_fs_mkdir_p(path) == 0); /* again: nothing to do */

    snprintf(path, sizeof path, "%s/a/file", root);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fclose(f);
    CHECK(nw_fs_mkdir_p(path) == -1 && errno == ENOTDIR);
    snprintf(path, sizeof path, "%s/a/file/below", root);
    CHECK(nw_fs_mkdir_p(path) == -1 && errno == ENOTDIR);
    CHECK(nw_fs_mkdir_p("") == -1);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
}
