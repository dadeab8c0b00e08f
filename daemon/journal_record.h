/*
 * journal_record: the journal's bytes on disk, and nothing else (private to journal*.c
 * and the tests; the format itself is described in journal.h).
 *
 * In: what one record says (nw_jrec_pack_*: into a msgpack_sbuffer, framed with its
 * header and CRC-32C) or a segment file's descriptor and size (nw_jrec_reader_t,
 * nw_jrec_next_frame: the records whose CRC checks, damage skipped and counted).
 * Out: records decoded and checked for shape (nw_jrec_decode: every field of a kind
 * present and of its type, nothing allocated but msgpack-c's zone in the caller's
 * msgpack_unpacked). The segment bytes are untrusted: this is what fuzz_journal feeds.
 *
 * A new record kind: a NW_JREC_* below (before NW_JREC_KINDS, which older readers
 * refuse beyond), its fields in nw_jrec_t, a nw_jrec_pack_*() and its case in
 * nw_jrec_decode(); then what recovery (journal_recover.c, apply) makes of it.
 *
 * No state: safe on any thread, each reader used by one at a time.
 */
#ifndef NW_JOURNAL_RECORD_H
#define NW_JOURNAL_RECORD_H

#include <czmq.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NW_JREC_MAGIC 0x314a574eu        /* "NWJ1" read as a little-endian u32 */
#define NW_JREC_HEADER 12u               /* magic, payload length, CRC-32C of payload */
#define NW_JREC_MAX (32u << 20)          /* larger lengths can only be garbage */
#define NW_JREC_READ_CHUNK (256u << 10)  /* a reader's pread size */
#define NW_JSEG_FMT "%012" PRIu64 ".nwj" /* a segment file's name from its number */

/* A payload's first item. */
enum {
    NW_JREC_CHECKPOINT, /* [0, epoch, time_ms, {topic: seq}]: first in every segment */
    NW_JREC_MESSAGE,    /* [1, topic, seq, id, time_ms, message bytes] */
    NW_JREC_COMMIT,     /* [2, start offset, {topic: seq}, epoch]: ends a group write */
    NW_JREC_SEAL,       /* [3, next segment, epoch]: ends a full segment */
    NW_JREC_KINDS
};

typedef struct {
    int type;                       /* NW_JREC_* */
    const char *epoch;              /* checkpoint, commit, seal: 32 hex digits,
                                       not terminated */
    const msgpack_object_map *seqs; /* checkpoint, commit: topic -> seq (names
                                       without NUL, values unsigned) */
    const char *topic, *id, *msg;   /* message: not terminated; topic and id hold
                                       no NUL */
    size_t topic_len, id_len, msg_len;
    uint64_t seq;    /* message: above 0 */
    uint64_t start;  /* commit: where its group write began */
    uint64_t next;   /* seal: the segment that follows */
    int64_t time_ms; /* checkpoint, message */
} nw_jrec_t;

/* CRC-32C (Castagnoli) is nw_journal_crc32c() in journal.h: the tests use it too. */

/* Framing: reserve a header in sb (*payload: where the payload will start), pack the
 * payload after it, then fill the header in. begin: 0 or -1 (ENOMEM); end: 0, or -1
 * when the payload is beyond NW_JREC_MAX (sb is left as it is: cut it back). */
int nw_jrec_frame_begin(msgpack_sbuffer *sb, size_t *payload);
int nw_jrec_frame_end(msgpack_sbuffer *sb, size_t payload);

/* Each appends one framed record to sb: 0, or -1 with sb as it was (ENOMEM; EMSGSIZE
 * for a message beyond NW_JREC_MAX). seqs: topic -> malloc'd uint64_t (journal_internal.h);
 * a commit's may be NULL (no topic). A commit ends with the epoch, so its last byte is
 * never zero: a record of ours that ends in zeros was cut short, not damaged. */
int nw_jrec_pack_checkpoint(msgpack_sbuffer *sb, const char *epoch, int64_t time_ms,
                            zhashx_t *seqs);
int nw_jrec_pack_message(msgpack_sbuffer *sb, const char *topic, uint64_t seq, const char *id,
                         int64_t time_ms, const void *msg, size_t len);
int nw_jrec_pack_commit(msgpack_sbuffer *sb, uint64_t start, zhashx_t *seqs, const char *epoch);
int nw_jrec_pack_seal(msgpack_sbuffer *sb, uint64_t next, const char *epoch);

/* Decode a payload (the bytes after a header) and check its shape: true with *r
 * pointing into p and up, false for anything that is not one whole record of a known
 * kind. Never allocates beyond what the bytes could hold. */
bool nw_jrec_decode(msgpack_unpacked *up, const uint8_t *p, size_t len, nw_jrec_t *r);

/* A window over the first `size` bytes of a file, read in chunks with pread. Zero it
 * (fd -1) before the first reset; buf is the caller's to free. */
typedef struct {
    int fd;
    uint64_t size;
    uint8_t *buf;
    size_t cap;
    uint64_t base; /* buf holds file bytes [base, base + len) */
    size_t len;
} nw_jrec_reader_t;

void nw_jrec_reader_reset(nw_jrec_reader_t *r, int fd, uint64_t size);
/* n bytes at off, valid until the next call; NULL with errno 0 past the end, or with
 * errno set when a read fails. */
const uint8_t *nw_jrec_reader_at(nw_jrec_reader_t *r, uint64_t off, size_t n);

typedef struct {
    uint64_t off; /* of the header */
    uint32_t len;
    const uint8_t *payload; /* valid until the reader is used again */
} nw_jrec_frame_t;

enum { NW_JREC_FRAME_OK, NW_JREC_FRAME_END, NW_JREC_FRAME_ERR };

/* The next record whose CRC checks, at or after *off, which moves past it. Records of
 * plausible length that fail their CRC are counted in *bad (and logged when name is
 * set); *garbage gets the offset where skipped garbage began, UINT64_MAX if none.
 * NW_JREC_FRAME_ERR with errno when a read fails. */
int nw_jrec_next_frame(nw_jrec_reader_t *r, const char *name, uint64_t *off, nw_jrec_frame_t *f,
                       uint64_t *bad, uint64_t *garbage);

/* Whether the first `have` bytes at h could start a record header (the magic, as far as
 * they reach); when they are a whole header (have >= NW_JREC_HEADER), the payload
 * length it claims in *len, unchecked. */
bool nw_jrec_header(const uint8_t *h, size_t have, uint32_t *len);

void nw_jrec_segment_path(const char *dir, uint64_t num, char *out, size_t outlen);

#endif
