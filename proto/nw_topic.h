/*
 * nw_topic: the topic grammar of proto/newswire-v1.md section 5, written once. The
 * daemon (route, publish, auth, replay), the codec and the client library all call it;
 * nothing else in the tree spells out what a topic is.
 *
 * A topic is one or more levels of [a-z0-9-] joined by '.', at most NW_TOPIC_MAX bytes.
 * On the wire, frame 0 is the topic plus one terminating '.' (section 3), and a
 * subscription S is the raw prefix S + "." (or "" for everything), so byte-prefix
 * matching covers whole levels: "telecoms" covers "telecoms" and "telecoms.5g", never
 * "telecomsx". Every function here is pure (no allocation, no state): strings in,
 * results in the caller's buffers.
 */
#ifndef NW_TOPIC_H
#define NW_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

#define NW_TOPIC_MAX 255                      /* bytes of a topic, without terminator */
#define NW_TOPIC_FRAME_MAX (NW_TOPIC_MAX + 1) /* frame 0: the topic plus '.' */

/* Is s[0..len) a topic? (No NUL: a NUL byte is not in the grammar.) */
bool nw_topic_valid(const char *s, size_t len);

/* Normalize a free-form subject to a topic: lowercase, [a-z0-9-] levels joined by '.',
 * each run of other characters inside a level folded to one '-', no empty level (so
 * leading, trailing and doubled '.' vanish). Writes a NUL-terminated topic into out.
 * 0 on success; -1 when nothing usable remains or the result would be longer than
 * NW_TOPIC_MAX or not fit in outlen. */
int nw_topic_normalize(const char *subject, char *out, size_t outlen);

/* The terminated (raw) form of a topic or subscription: "" stays "" (everything), one
 * without the final '.' gets it ("telecoms" -> "telecoms."; one that has it is kept).
 * Writes out, which must hold len + 2 bytes, NUL-terminated; returns the new length. */
size_t nw_topic_terminate(const char *s, size_t len, char *out);

/* Frame 0 back to its topic: it must end with the terminator and what is before it must
 * be a topic. Writes the NUL-terminated topic into out (NW_TOPIC_MAX + 1 bytes).
 * 0 on success; -1 with the reason in errbuf. */
int nw_topic_unframe(const void *frame, size_t len, char *out, char *errbuf, size_t errlen);

/* Does subscription sub cover topic? sub is bare ("telecoms") or terminated
 * ("telecoms."), "" for everything: topic == sub or topic starts with sub + ".". */
bool nw_topic_matches(const char *sub, const char *topic);

#endif
