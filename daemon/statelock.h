/*
 * statelock: one newswired per state folder.
 *
 * Two daemons on one STATE would assign the same seqs in one journal. The first takes
 * an exclusive flock(2) on STATE/lock and holds it for the life of the process (the
 * kernel drops it when the process ends, however it ends, so a kill -9 leaves nothing
 * stale); it writes its pid into the file so that the next one can say who holds it.
 * The file is never removed: unlinking a lock file lets a third process lock a fresh
 * inode while the second still holds the old one. Blocking; start-up only.
 */
#ifndef NW_STATELOCK_H
#define NW_STATELOCK_H

#include <stddef.h>

typedef struct nw_statelock nw_statelock_t;

/* Lock STATE/lock (creating it). NULL with the reason: held by another process (its
 * pid named when the file tells it), or the file cannot be opened. */
nw_statelock_t *nw_statelock_new(const char *state_dir, char *errbuf, size_t errlen);
/* Release the lock (the file stays). */
void nw_statelock_destroy(nw_statelock_t **self_p);

#endif
