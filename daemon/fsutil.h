/*
 * fsutil: file-system helpers more than one module needs. Blocking calls: the thread
 * pool's, or start-up's before the loop runs.
 */
#ifndef NW_FSUTIL_H
#define NW_FSUTIL_H

#include <stdbool.h>

/* mkdir -p with mode 0750 for what it creates. 0, or -1 with errno; a path that
 * exists but is not a directory is ENOTDIR. */
int nw_fs_mkdir_p(const char *path);

/* Whether a file system of this type (statfs's f_type) answers from the local machine
 * alone: a disk, memory, or an overlay of them. Only such a folder is read on the loop
 * thread, where a call that waits for a server (NFS, SMB, a FUSE daemon) would stall
 * every subscriber; types not known to be local count as remote. */
bool nw_fs_local(long f_type);

#endif
