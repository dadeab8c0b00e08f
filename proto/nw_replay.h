/*
 * nw_replay: the replay protocol's messages (proto/newswire-v1.md section 8), packed
 * and parsed in one place for both ends: the daemon (daemon/replay.c) parses requests
 * and packs $end and $error, the client library (clients/newswire.c) packs requests
 * and parses them. A data reply is a live message as it was sent (frame 0 the topic
 * plus '.', see nw_topic; frame 1 the body, see nw_codec): nw_replay_reply_kind() tells
 * it from $end and $error by frame 0 alone.
 *
 * Packing appends one MessagePack map to a caller's msgpack_sbuffer after checking every
 * field against the same rules the parser applies (so a packed message always parses).
 * Parsing takes (pointer, length) of one frame, which may be hostile: it is a scan of
 * the bytes that allocates nothing, reads only flat maps of scalars, never trusts a
 * declared length before checking it against the bytes present, and fills a plain
 * struct or gives the reason. Keys unknown to this revision are ignored (section 7).
 */
#ifndef NW_REPLAY_PROTO_H
#define NW_REPLAY_PROTO_H

#include "nw_codec.h" /* NW_PROTO_VERSION */
#include "nw_topic.h"
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NW_REPLAY_MAX_REQUEST 4096 /* larger request frames are bad requests */
#define NW_REPLAY_MAX_REPLY 4096   /* larger $end/$error bodies are hostile */
#define NW_REPLAY_MAX_CREDIT 1000  /* per request/credit message */
#define NW_REPLAY_MAX_CODE 32      /* bytes of an error code */
#define NW_REPLAY_MAX_REASON 255   /* bytes of an error reason kept (longer: cut) */

#define NW_REPLAY_FRAME_END "$end"     /* frame 0 of an end reply */
#define NW_REPLAY_FRAME_ERROR "$error" /* frame 0 of an error reply */

typedef enum {
    NW_REPLAY_REQ_REPLAY = 1,
    NW_REPLAY_REQ_CREDIT,
    NW_REPLAY_REQ_CANCEL
} nw_replay_type_t;

typedef struct {
    nw_replay_type_t type;
    char topic[NW_TOPIC_MAX + 1];    /* replay: a valid topic */
    bool has_from, has_last, has_to; /* replay: exactly one of from/last */
    uint64_t from, last, to;
    uint64_t credit; /* replay and credit: 1..NW_REPLAY_MAX_CREDIT */
} nw_replay_request_t;

/* {"v":1,"type":"end",...}: the stream's range and the head when it started (8.3). */
typedef struct {
    char topic[NW_TOPIC_MAX + 1];
    uint64_t from, last, head;
} nw_replay_end_t;

/* {"v":1,"type":"error",...} (8.4); topic is "" for a request that had none. */
typedef struct {
    char topic[NW_TOPIC_MAX + 1];
    char code[NW_REPLAY_MAX_CODE + 1];
    char reason[NW_REPLAY_MAX_REASON + 1];
    bool has_oldest; /* "oldest" present (sent with "retention") */
    uint64_t oldest;
} nw_replay_error_t;

typedef enum { NW_REPLAY_DATA, NW_REPLAY_END, NW_REPLAY_ERROR } nw_replay_kind_t;

/* Decode and validate one request frame. 0, or -1 with the reason; out->topic is filled
 * as soon as a valid topic was seen, so that an error reply can name it. */
int nw_replay_request_parse(const void *data, size_t len, nw_replay_request_t *out, char *errbuf,
                            size_t errlen);

/* Append req as a request map (a credit request has no topic, a cancel no credit; a
 * replay sends "to" only with has_to). 0, or -1 with the reason and sb untouched. */
int nw_replay_request_pack(const nw_replay_request_t *req, msgpack_sbuffer *sb, char *errbuf,
                           size_t errlen);

int nw_replay_end_pack(const nw_replay_end_t *end, msgpack_sbuffer *sb, char *errbuf,
                       size_t errlen);
int nw_replay_end_parse(const void *data, size_t len, nw_replay_end_t *out, char *errbuf,
                        size_t errlen);

/* "oldest" is sent when has_oldest. A reason longer than NW_REPLAY_MAX_REASON is cut
 * there (it is for people), and so is one the parser reads. */
int nw_replay_error_pack(const nw_replay_error_t *error, msgpack_sbuffer *sb, char *errbuf,
                         size_t errlen);
int nw_replay_error_parse(const void *data, size_t len, nw_replay_error_t *out, char *errbuf,
                          size_t errlen);

/* What a reply is, by its frame 0: "$end", "$error", or else a data reply (whose frame 0
 * nw_topic_unframe() then checks). */
nw_replay_kind_t nw_replay_reply_kind(const void *frame0, size_t len);

#endif
