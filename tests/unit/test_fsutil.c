/* test_fsutil: mkdir -p creates what is missing, accepts what exists, and refuses a
 * file standing where a folder should be; the file systems known to be local (read on
 * the loop thread) are the disk and memory ones, never a network's or FUSE's. */
#include "fsutil.h"
#include "runner.h"

#include <errno.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/vfs.h>

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

TEST_IMPL(local_types)
{
    CHECK(nw_fs_local(EXT4_SUPER_MAGIC));
    CHECK(nw_fs_local(XFS_SUPER_MAGIC));
    CHECK(nw_fs_local(BTRFS_SUPER_MAGIC));
    CHECK(nw_fs_local(TMPFS_MAGIC));
    CHECK(nw_fs_local(OVERLAYFS_SUPER_MAGIC));
    /* statfs's f_type is a signed long: a magic with its top bit set must still match */
    CHECK(nw_fs_local((long) (int) XFS_SUPER_MAGIC));
    CHECK(!nw_fs_local(NFS_SUPER_MAGIC));
    CHECK(!nw_fs_local(SMB2_SUPER_MAGIC));
    CHECK(!nw_fs_local((long) (int) CIFS_SUPER_MAGIC));
    CHECK(!nw_fs_local(FUSE_SUPER_MAGIC));
    CHECK(!nw_fs_local(0));
    struct statfs fs; /* where the tests run: this machine's own disk or memory */
    CHECK(statfs("/tmp", &fs) == 0 && nw_fs_local((long) fs.f_type));
}
