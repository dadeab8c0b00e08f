/*
 * sha1: the SHA-1 behind article ids (article.c), fast where the CPU has it.
 *
 * An id is the hex SHA-1 of an article's uri or of its normalized text, so every
 * article is hashed whole on a pool thread. CZMQ's zdigest does it in portable C at
 * about 40 instructions a byte, which made it a fifth of newswired's user time under
 * a burst. On x86-64 CPUs with the SHA extensions the block function runs on them
 * instead (a few a byte); anywhere else the digest comes from zdigest. Both give the
 * same bytes (test_sha1 compares them).
 * Data enters as one or more parts; 40 lowercase hex digits and a NUL leave.
 */
#ifndef NW_SHA1_H
#define NW_SHA1_H

#include <stdbool.h>
#include <stddef.h>

#define NW_SHA1_HEX_LEN 41

/* The SHA-1 of the parts' bytes, in order, as if they were one buffer. -1 only when
 * the portable path cannot allocate. */
int nw_sha1_hex(const void *const *parts, const size_t *lens, size_t count,
                char out[NW_SHA1_HEX_LEN]);
/* Whether nw_sha1_hex uses the CPU's SHA instructions (decided once). */
bool nw_sha1_accelerated(void);

#endif
