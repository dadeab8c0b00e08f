/*
 * fuzz_replay: libFuzzer target for proto/nw_replay's parsers, every message kind of
 * the replay protocol on the same bytes: requests (what hostile peers send the daemon's
 * replay endpoint), $end and $error (what a hostile publisher sends libnewswire), and
 * the reply kind by frame 0. Seeded from proto/vectors/replay (tests/run-all does):
 *   ./bin/fuzz_replay -max_total_time=30 /tmp/replay-corpus ../proto/vectors/replay
 * Besides "never crash" and "every refusal says why": whatever a parser accepts is
 * unpacked again by msgpack-c (safe then: at most 16 scalar entries in 4096 bytes) and
 * must say the same thing, and packed again by nw_replay it must parse to the same.
 */
#include "nw_replay.h"

#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const msgpack_object *lookup(const msgpack_object *map, const char *key)
{
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0)
            return &kv->val;
    }
    return NULL;
}

static void same_uint(const msgpack_object *map, const char *key, bool present, uint64_t v)
{
    const msgpack_object *o = lookup(map, key);
    if ((o != NULL) != present)
        abort();
    if (o && (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 != v))
        abort();
}

static void same_str(const msgpack_object *map, const char *key, const char *want)
{
    const msgpack_object *t = lookup(map, key);
    if (!t || t->type != MSGPACK_OBJECT_STR || t->via.str.size != strlen(want) ||
        memcmp(t->via.str.ptr, want, t->via.str.size) != 0)
        abort();
}

/* The accepted bytes as msgpack-c reads them: one map, nothing after it. */
static void unpack_whole(const uint8_t *data, size_t size, msgpack_unpacked *up)
{
    size_t off = 0;
    msgpack_unpacked_init(up);
    if (msgpack_unpack_next(up, (const char *) data, size, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != size || up->data.type != MSGPACK_OBJECT_MAP)
        abort();
    same_uint(&up->data, "v", true, NW_PROTO_VERSION);
}

static void fuzz_request(const uint8_t *data, size_t size)
{
    nw_replay_request_t req, again;
    char err[256];
    if (nw_replay_request_parse(data, size, &req, err, sizeof err) != 0) {
        if (!err[0])
            abort();
        return;
    }
    msgpack_unpacked up;
    unpack_whole(data, size, &up);
    const msgpack_object *map = &up.data;
    if (req.type == NW_REPLAY_REQ_REPLAY) {
        same_str(map, "topic", req.topic);
        same_uint(map, "from", req.has_from, req.from);
        same_uint(map, "last", req.has_last, req.last);
        same_uint(map, "to", req.has_to, req.to);
        if (req.has_from == req.has_last)
            abort();
    }
    if (req.type != NW_REPLAY_REQ_CANCEL) {
        same_uint(map, "credit", true, req.credit);
        if (req.credit < 1 || req.credit > NW_REPLAY_MAX_CREDIT)
            abort();
    }
    msgpack_unpacked_destroy(&up);
    /* What a cancel or credit carries beyond its own keys is not packed again. */
    if (req.type != NW_REPLAY_REQ_REPLAY) {
        memset(req.topic, 0, sizeof req.topic);
        req.has_from = req.has_last = req.has_to = false;
        req.from = req.last = req.to = 0;
        if (req.type == NW_REPLAY_REQ_CANCEL)
            req.credit = 0;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (nw_replay_request_pack(&req, &sb, err, sizeof err) != 0 ||
        nw_replay_request_parse(sb.data, sb.size, &again, err, sizeof err) != 0)
        abort();
    if (again.type != req.type || strcmp(again.topic, req.topic) != 0 ||
        again.has_from != req.has_from || again.from != req.from ||
        again.has_last != req.has_last || again.last != req.last || again.has_to != req.has_to ||
        again.to != req.to || again.credit != req.credit)
        abort();
    msgpack_sbuffer_destroy(&sb);
}

static void fuzz_end(const uint8_t *data, size_t size)
{
    nw_replay_end_t end, again;
    char err[256];
    if (nw_replay_end_parse(data, size, &end, err, sizeof err) != 0) {
        if (!err[0])
            abort();
        return;
    }
    msgpack_unpacked up;
    unpack_whole(data, size, &up);
    same_str(&up.data, "type", "end");
    same_str(&up.data, "topic", end.topic);
    same_uint(&up.data, "from", true, end.from);
    same_uint(&up.data, "last", true, end.last);
    same_uint(&up.data, "head", true, end.head);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (nw_replay_end_pack(&end, &sb, err, sizeof err) != 0 ||
        nw_replay_end_parse(sb.data, sb.size, &again, err, sizeof err) != 0 ||
        memcmp(&end, &again, sizeof end) != 0)
        abort();
    msgpack_sbuffer_destroy(&sb);
}

static void fuzz_error(const uint8_t *data, size_t size)
{
    nw_replay_error_t error, again;
    char err[256];
    if (nw_replay_error_parse(data, size, &error, err, sizeof err) != 0) {
        if (!err[0])
            abort();
        return;
    }
    msgpack_unpacked up;
    unpack_whole(data, size, &up);
    same_str(&up.data, "type", "error");
    same_str(&up.data, "topic", error.topic);
    same_str(&up.data, "code", error.code);
    same_uint(&up.data, "oldest", error.has_oldest, error.oldest);
    const msgpack_object *r = lookup(&up.data, "reason");
    size_t rlen = strlen(error.reason);
    if (!r || r->type != MSGPACK_OBJECT_STR || rlen > r->via.str.size ||
        memcmp(r->via.str.ptr, error.reason, rlen) != 0 ||
        (r->via.str.size <= NW_REPLAY_MAX_REASON && rlen != r->via.str.size))
        abort();
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (nw_replay_error_pack(&error, &sb, err, sizeof err) != 0 ||
        nw_replay_error_parse(sb.data, sb.size, &again, err, sizeof err) != 0 ||
        memcmp(&error, &again, sizeof error) != 0)
        abort();
    msgpack_sbuffer_destroy(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_request(data, size);
    fuzz_end(data, size);
    fuzz_error(data, size);
    nw_replay_kind_t kind = nw_replay_reply_kind(data, size);
    if (kind != NW_REPLAY_DATA && size != 4 && size != 6)
        abort();
    return 0;
}
