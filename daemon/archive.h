/*
 * archive: takes finished files out of the drop folder.
 *
 * Published (or deduplicated) files go to STATE/archive/YYYY/MM/DD/ (the UTC day they
 * were archived); files that cannot be published go to STATE/rejected/ with
 * NAME.reason beside them, one line saying why. Names are never overwritten: a taken
 * name becomes stem-1.ext, stem-2.ext, ... (the next number found without probing every
 * one before it), cut to fit NAME_MAX where needed, so no file is ever refused for its
 * name. Blocking file-system work: call these from libuv's thread pool, never from the
 * loop thread (nw_archive_rename alone may run there, when both folders are on local file
 * systems); they may run on several threads at once.
 */
#ifndef NW_ARCHIVE_H
#define NW_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

/* Move src (an absolute or cwd-relative path) to the archive under its base name.
 * dest receives the path it got. 0, or -1 with the reason (and errno: the caller tells
 * a full disk or a lack of descriptors, worth a retry, from the rest). */
int nw_archive_store(const char *state_dir, const char *src, int64_t now_ms, char *dest,
                     size_t destlen, char *errbuf, size_t errlen);

/* The same move by rename alone: across file systems (a bind mount included) it fails
 * with EXDEV, and the caller hands the file to nw_archive_store on the pool, since a
 * copy of a large file and its fsync would block the loop. */
int nw_archive_rename(const char *state_dir, const char *src, int64_t now_ms, char *dest,
                      size_t destlen, char *errbuf, size_t errlen);

/* Move src to STATE/rejected/ and write the reason (one line) beside it. */
int nw_archive_reject(const char *state_dir, const char *src, const char *reason, char *dest,
                      size_t destlen, char *errbuf, size_t errlen);

/* Candidate name number n for base, at most limit bytes (and NAME_MAX): n == 0 is base
 * itself, else "stem-n.ext"; a stem too long is cut (not inside a UTF-8 sequence), an
 * extension longer than 16 bytes counts as stem. */
void nw_archive_candidate(const char *base, unsigned long long n, size_t limit, char *out,
                          size_t outlen);

/* Create STATE/archive and STATE/rejected. 0 or -1 with the reason. */
int nw_archive_prepare(const char *state_dir, char *errbuf, size_t errlen);

#endif
