/*
 * archive: takes finished files out of the drop folder.
 *
 * Published (or deduplicated) files go to STATE/archive/YYYY/MM/DD/ (the UTC day they
 * were archived); files that cannot be published go to STATE/rejected/ with
 * NAME.reason beside them, one line saying why. Names are never overwritten: a taken
 * name becomes stem-1.ext, stem-2.ext, ... Blocking file-system work: call these from
 * libuv's thread pool, never from the loop thread.
 */
#ifndef NW_ARCHIVE_H
#define NW_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

/* Move src (an absolute or cwd-relative path) to the archive under its base name.
 * dest receives the path it got. 0, or -1 with the reason. */
int nw_archive_store(const char *state_dir, const char *src, int64_t now_ms,
                     char *dest, size_t destlen, char *errbuf, size_t errlen);

/* Move src to STATE/rejected/ and write the reason (one line) beside it. */
int nw_archive_reject(const char *state_dir, const char *src, const char *reason,
                      char *dest, size_t destlen, char *errbuf, size_t errlen);

/* Candidate name number n for base: n == 0 is base itself, else "stem-n.ext". */
void nw_archive_candidate(const char *base, unsigned n, char *out, size_t outlen);

/* Create STATE/archive and STATE/rejected. 0 or -1 with the reason. */
int nw_archive_prepare(const char *state_dir, char *errbuf, size_t errlen);

#endif
