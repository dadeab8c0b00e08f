/*
 * fsutil: file-system helpers more than one module needs. Blocking calls: the thread
 * pool's, or start-up's before the loop runs.
 */
#ifndef NW_FSUTIL_H
#define NW_FSUTIL_H

/* mkdir -p with mode 0750 for what it creates. 0, or -1 with errno; a path that
 * exists but is not a directory is ENOTDIR. */
int nw_fs_mkdir_p(const char *path);

#endif
