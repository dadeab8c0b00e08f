/*
 * fuzz_replay_request: libFuzzer target for nw_replay_request_parse(), the decoder of
 * what hostile peers send to the replay endpoint. A few valid requests make good seeds
 * (python3 -c 'import msgpack; ...'); an empty corpus works too, only slower:
 *   ./bin/fuzz_replay_request -max_total_time=30 /tmp/replay-corpus
 * Besides "never crash", whatever the parser accepts is unpacked again by msgpack-c
 * (safe then: at most 16 scalar entries in 4096 bytes) and must say the same thing.
 */
#include "replay.h"

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nw_replay_request_t req;
    char err[256];
    if (nw_replay_request_parse(data, size, &req, err, sizeof err) != 0) {
        if (!err[0])
            abort();   /* every refusal says why */
        return 0;
    }
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    if (msgpack_unpack_next(&up, (const char *) data, size, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != size || up.data.type != MSGPACK_OBJECT_MAP)
        abort();
    const msgpack_object *map = &up.data;
    same_uint(map, "v", true, 1);
    if (req.type == NW_REPLAY_REQ_REPLAY) {
        const msgpack_object *t = lookup(map, "topic");
        if (!t || t->type != MSGPACK_OBJECT_STR || t->via.str.size != strlen(req.topic) ||
            memcmp(t->via.str.ptr, req.topic, t->via.str.size) != 0)
            abort();
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
    return 0;
}
