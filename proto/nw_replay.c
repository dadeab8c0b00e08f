/*
 * nw_replay: packs and parses the replay protocol's requests, $end and $error maps
 * (see nw_replay.h; data replies are live messages, nw_topic + nw_codec).
 *
 * Every message of section 8 is a flat map of scalars, so one reader serves them all:
 * walk_map() reads the map header and each pair without allocating (declared lengths
 * are checked against what is left before anything moves), refuses containers and ext
 * values, a key that is not a string, a known key twice or of the wrong type, and bytes
 * after the map, and hands each known key to the message's own field function in the
 * order they come, so the first fault found is the one reported. Packing checks the
 * same rules first, then writes the keys in the order of the spec's tables.
 */
#include "nw_replay.h"

#include <stdio.h>
#include <string.h>

/* ---------------------------------------------------------------- reading */

typedef struct {
    const unsigned char *p, *end;
} rd_t;

typedef enum { V_UINT, V_NEG, V_STR, V_OTHER } vkind_t;
typedef struct {
    vkind_t kind;
    uint64_t u;
    const char *s;
    size_t len;
} value_t;

static int rd_be(rd_t *r, size_t n, uint64_t *v)
{
    if ((size_t) (r->end - r->p) < n)
        return -1;
    *v = 0;
    for (size_t i = 0; i < n; i++)
        *v = (*v << 8) | *r->p++;
    return 0;
}

/* Declared lengths are checked against what is left before anything moves. */
static int rd_skip(rd_t *r, uint64_t n, const char **at)
{
    if ((uint64_t) (r->end - r->p) < n)
        return -1;
    *at = (const char *) r->p;
    r->p += n;
    return 0;
}

/* One scalar; maps, arrays and ext are not allowed anywhere in these messages. */
static int read_value(rd_t *r, value_t *v)
{
    uint64_t b, n;
    const char *at;
    memset(v, 0, sizeof *v);
    v->kind = V_OTHER;
    if (rd_be(r, 1, &b) != 0)
        return -1;
    if (b <= 0x7f) {
        v->kind = V_UINT;
        v->u = b;
        return 0;
    }
    if (b >= 0xe0) {
        v->kind = V_NEG;
        return 0;
    }
    if (b >= 0xa0 && b <= 0xbf) {
        n = b & 0x1f;
        goto str;
    }
    switch (b) {
    case 0xc0:
    case 0xc2:
    case 0xc3: return 0;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf: v->kind = V_UINT; return rd_be(r, (size_t) 1 << (b - 0xcc), &v->u);
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        size_t width = (size_t) 1 << (b - 0xd0);
        if (rd_be(r, width, &v->u) != 0)
            return -1;
        bool negative = (v->u >> (8 * width - 1)) & 1;
        v->kind = negative ? V_NEG : V_UINT;
        return 0;
    }
    case 0xca: return rd_skip(r, 4, &at);
    case 0xcb: return rd_skip(r, 8, &at);
    case 0xc4:
    case 0xc5:
    case 0xc6:
        if (rd_be(r, (size_t) 1 << (b - 0xc4), &n) != 0)
            return -1;
        return rd_skip(r, n, &at);
    case 0xd9:
    case 0xda:
    case 0xdb:
        if (rd_be(r, (size_t) 1 << (b - 0xd9), &n) != 0)
            return -1;
        goto str;
    default: return -1;
    }
str:
    if (rd_skip(r, n, &v->s) != 0)
        return -1;
    v->kind = V_STR;
    v->len = (size_t) n;
    return 0;
}

static bool is_key(const value_t *k, const char *name)
{
    return k->len == strlen(name) && memcmp(k->s, name, k->len) == 0;
}

static bool is_str(const value_t *v, const char *s)
{
    return v->len == strlen(s) && memcmp(v->s, s, v->len) == 0;
}

/* Every message's names start with these two. */
enum { K_V = 1, K_TYPE = 2 };

/* fn(ctx, bit of the key, key, value): 0 to go on, -1 with the reason. */
typedef int(field_fn)(void *ctx, unsigned bit, const value_t *k, const value_t *v, char *errbuf,
                      size_t errlen);

static int walk_map(const void *data, size_t len, const char *const *names, unsigned count,
                    unsigned str_keys, unsigned *seen, field_fn *fn, void *ctx, char *errbuf,
                    size_t errlen)
{
    rd_t r = {data, (const unsigned char *) data + len};
    uint64_t b, n;
    *seen = 0;
    if (rd_be(&r, 1, &b) != 0)
        goto truncated;
    if (b >= 0x80 && b <= 0x8f)
        n = b & 0x0f;
    else if (b == 0xde || b == 0xdf) {
        if (rd_be(&r, b == 0xde ? 2 : 4, &n) != 0)
            goto truncated;
    } else {
        snprintf(errbuf, errlen, "not a MessagePack map");
        return -1;
    }
    if (n > 16) {
        snprintf(errbuf, errlen, "more than 16 keys");
        return -1;
    }
    for (uint64_t i = 0; i < n; i++) {
        value_t k, v;
        if (read_value(&r, &k) != 0 || read_value(&r, &v) != 0) {
            snprintf(errbuf, errlen, "truncated, or a map, array or ext value");
            return -1;
        }
        if (k.kind != V_STR) {
            snprintf(errbuf, errlen, "a key is not a string");
            return -1;
        }
        unsigned bit = 0, j;
        for (j = 0; j < count && !bit; j++)
            if (is_key(&k, names[j]))
                bit = 1u << j;
        if (!bit)
            continue; /* later revisions may add keys */
        if (*seen & bit) {
            snprintf(errbuf, errlen, "duplicate key '%.*s'", (int) k.len, k.s);
            return -1;
        }
        *seen |= bit;
        if (str_keys & bit) {
            if (v.kind != V_STR) {
                snprintf(errbuf, errlen, "'%s' is not a string", names[j - 1]);
                return -1;
            }
        } else if (v.kind != V_UINT) {
            snprintf(errbuf, errlen, "'%.*s' is not a non-negative integer", (int) k.len, k.s);
            return -1;
        }
        if (bit == K_V && v.u != NW_PROTO_VERSION) {
            snprintf(errbuf, errlen, "unsupported version %llu", (unsigned long long) v.u);
            return -1;
        }
        if (fn(ctx, bit, &k, &v, errbuf, errlen) != 0)
            return -1;
    }
    if (r.p != r.end) {
        snprintf(errbuf, errlen, "bytes after the map");
        return -1;
    }
    return 0;
truncated:
    snprintf(errbuf, errlen, "truncated");
    return -1;
}

static int copy_topic(char *out, const value_t *v, bool empty_ok, char *errbuf, size_t errlen)
{
    if (!(empty_ok && v->len == 0) && !nw_topic_valid(v->s, v->len)) {
        snprintf(errbuf, errlen, "invalid topic");
        return -1;
    }
    memcpy(out, v->s, v->len);
    out[v->len] = '\0';
    return 0;
}

/* ---------------------------------------------------------------- requests */

enum { KQ_TOPIC = 4, KQ_FROM = 8, KQ_LAST = 16, KQ_TO = 32, KQ_CREDIT = 64 };
static const char *const request_names[] = {"v", "type", "topic", "from", "last", "to", "credit"};

static int request_field(void *ctx, unsigned bit, const value_t *k, const value_t *v,
                         char *errbuf, size_t errlen)
{
    nw_replay_request_t *out = ctx;
    switch (bit) {
    case K_TYPE:
        if (is_str(v, "replay"))
            out->type = NW_REPLAY_REQ_REPLAY;
        else if (is_str(v, "credit"))
            out->type = NW_REPLAY_REQ_CREDIT;
        else if (is_str(v, "cancel"))
            out->type = NW_REPLAY_REQ_CANCEL;
        else {
            snprintf(errbuf, errlen, "unknown request type");
            return -1;
        }
        break;
    case KQ_TOPIC: return copy_topic(out->topic, v, false, errbuf, errlen);
    case KQ_FROM:
    case KQ_LAST:
    case KQ_TO:
        if (v->u == 0) {
            snprintf(errbuf, errlen, "'%.*s' must be at least 1", (int) k->len, k->s);
            return -1;
        }
        *(bit == KQ_FROM ? &out->from : bit == KQ_LAST ? &out->last : &out->to) = v->u;
        break;
    case KQ_CREDIT:
        if (v->u < 1 || v->u > NW_REPLAY_MAX_CREDIT) {
            snprintf(errbuf, errlen, "'credit' must be 1..%d", NW_REPLAY_MAX_CREDIT);
            return -1;
        }
        out->credit = v->u;
        break;
    }
    return 0;
}

int nw_replay_request_parse(const void *data, size_t len, nw_replay_request_t *out, char *errbuf,
                            size_t errlen)
{
    memset(out, 0, sizeof *out);
    unsigned seen;
    if (len > NW_REPLAY_MAX_REQUEST) {
        snprintf(errbuf, errlen, "request larger than %d bytes", NW_REPLAY_MAX_REQUEST);
        return -1;
    }
    if (walk_map(data, len, request_names, 7, K_TYPE | KQ_TOPIC, &seen, request_field, out,
                 errbuf, errlen) != 0)
        return -1;
    if ((seen & (K_V | K_TYPE)) != (K_V | K_TYPE)) {
        snprintf(errbuf, errlen, "'v' and 'type' are required");
        return -1;
    }
    out->has_from = seen & KQ_FROM;
    out->has_last = seen & KQ_LAST;
    out->has_to = seen & KQ_TO;
    if (out->type == NW_REPLAY_REQ_REPLAY) {
        if (!(seen & KQ_TOPIC) || !(seen & KQ_CREDIT) || out->has_from == out->has_last) {
            snprintf(errbuf, errlen,
                     "replay needs 'topic', 'credit' and one of 'from' or 'last'");
            return -1;
        }
        if (out->has_from && out->has_to && out->to < out->from) {
            snprintf(errbuf, errlen, "'to' is below 'from'");
            return -1;
        }
    } else if (out->type == NW_REPLAY_REQ_CREDIT && !(seen & KQ_CREDIT)) {
        snprintf(errbuf, errlen, "credit needs 'credit'");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- $end */

enum { KE_TOPIC = 4, KE_FROM = 8, KE_LAST = 16, KE_HEAD = 32, KE_ALL = 63 };
static const char *const end_names[] = {"v", "type", "topic", "from", "last", "head"};

static int end_field(void *ctx, unsigned bit, const value_t *k, const value_t *v, char *errbuf,
                     size_t errlen)
{
    (void) k;
    nw_replay_end_t *out = ctx;
    switch (bit) {
    case K_TYPE:
        if (!is_str(v, "end")) {
            snprintf(errbuf, errlen, "an end's 'type' is not \"end\"");
            return -1;
        }
        break;
    case KE_TOPIC: return copy_topic(out->topic, v, false, errbuf, errlen);
    case KE_FROM: out->from = v->u; break;
    case KE_LAST: out->last = v->u; break;
    case KE_HEAD: out->head = v->u; break;
    }
    return 0;
}

int nw_replay_end_parse(const void *data, size_t len, nw_replay_end_t *out, char *errbuf,
                        size_t errlen)
{
    memset(out, 0, sizeof *out);
    unsigned seen;
    if (len > NW_REPLAY_MAX_REPLY) {
        snprintf(errbuf, errlen, "reply larger than %d bytes", NW_REPLAY_MAX_REPLY);
        return -1;
    }
    if (walk_map(data, len, end_names, 6, K_TYPE | KE_TOPIC, &seen, end_field, out, errbuf,
                 errlen) != 0)
        return -1;
    if (seen != KE_ALL) {
        snprintf(errbuf, errlen, "end needs 'v', 'type', 'topic', 'from', 'last' and 'head'");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- $error */

enum { KX_TOPIC = 4, KX_CODE = 8, KX_REASON = 16, KX_OLDEST = 32, KX_REQUIRED = 31 };
static const char *const error_names[] = {"v", "type", "topic", "code", "reason", "oldest"};

static int error_field(void *ctx, unsigned bit, const value_t *k, const value_t *v, char *errbuf,
                       size_t errlen)
{
    (void) k;
    nw_replay_error_t *out = ctx;
    switch (bit) {
    case K_TYPE:
        if (!is_str(v, "error")) {
            snprintf(errbuf, errlen, "an error's 'type' is not \"error\"");
            return -1;
        }
        break;
    case KX_TOPIC: return copy_topic(out->topic, v, true, errbuf, errlen);
    case KX_CODE:
        if (v->len == 0 || v->len > NW_REPLAY_MAX_CODE || memchr(v->s, '\0', v->len)) {
            snprintf(errbuf, errlen, "'code' is not 1..%d bytes without NUL", NW_REPLAY_MAX_CODE);
            return -1;
        }
        memcpy(out->code, v->s, v->len);
        out->code[v->len] = '\0';
        break;
    case KX_REASON: {
        if (memchr(v->s, '\0', v->len)) {
            snprintf(errbuf, errlen, "'reason' contains NUL");
            return -1;
        }
        size_t n = v->len < NW_REPLAY_MAX_REASON ? v->len : NW_REPLAY_MAX_REASON;
        memcpy(out->reason, v->s, n);
        out->reason[n] = '\0';
        break;
    }
    case KX_OLDEST:
        out->has_oldest = true;
        out->oldest = v->u;
        break;
    }
    return 0;
}

int nw_replay_error_parse(const void *data, size_t len, nw_replay_error_t *out, char *errbuf,
                          size_t errlen)
{
    memset(out, 0, sizeof *out);
    unsigned seen;
    if (len > NW_REPLAY_MAX_REPLY) {
        snprintf(errbuf, errlen, "reply larger than %d bytes", NW_REPLAY_MAX_REPLY);
        return -1;
    }
    if (walk_map(data, len, error_names, 6, K_TYPE | KX_TOPIC | KX_CODE | KX_REASON, &seen,
                 error_field, out, errbuf, errlen) != 0)
        return -1;
    if ((seen & KX_REQUIRED) != KX_REQUIRED) {
        snprintf(errbuf, errlen, "error needs 'v', 'type', 'topic', 'code' and 'reason'");
        return -1;
    }
    return 0;
}

nw_replay_kind_t nw_replay_reply_kind(const void *frame0, size_t len)
{
    if (len == strlen(NW_REPLAY_FRAME_END) && memcmp(frame0, NW_REPLAY_FRAME_END, len) == 0)
        return NW_REPLAY_END;
    if (len == strlen(NW_REPLAY_FRAME_ERROR) && memcmp(frame0, NW_REPLAY_FRAME_ERROR, len) == 0)
        return NW_REPLAY_ERROR;
    return NW_REPLAY_DATA;
}

/* ---------------------------------------------------------------- packing */

typedef struct {
    msgpack_packer pk;
    int rc; /* any write failed (out of memory) */
} wr_t;

static void put_str(wr_t *w, const char *s, size_t len)
{
    w->rc |= msgpack_pack_str(&w->pk, len);
    w->rc |= msgpack_pack_str_body(&w->pk, s, len);
}

static void put_key_str(wr_t *w, const char *key, const char *s)
{
    put_str(w, key, strlen(key));
    put_str(w, s, strlen(s));
}

static void put_key_uint(wr_t *w, const char *key, uint64_t u)
{
    put_str(w, key, strlen(key));
    w->rc |= msgpack_pack_uint64(&w->pk, u);
}

/* The map header, then "v" and "type", common to every message. */
static void put_head(wr_t *w, msgpack_sbuffer *sb, size_t keys, const char *type)
{
    msgpack_packer_init(&w->pk, sb, msgpack_sbuffer_write);
    w->rc = msgpack_pack_map(&w->pk, keys);
    put_key_uint(w, "v", NW_PROTO_VERSION);
    put_key_str(w, "type", type);
}

static int put_done(wr_t *w, char *errbuf, size_t errlen)
{
    if (w->rc != 0) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    return 0;
}

int nw_replay_request_pack(const nw_replay_request_t *req, msgpack_sbuffer *sb, char *errbuf,
                           size_t errlen)
{
    static const char *const types[] = {NULL, "replay", "credit", "cancel"};
    bool replay = req->type == NW_REPLAY_REQ_REPLAY;
    bool has_credit = replay || req->type == NW_REPLAY_REQ_CREDIT;
    if (req->type < NW_REPLAY_REQ_REPLAY || req->type > NW_REPLAY_REQ_CANCEL) {
        snprintf(errbuf, errlen, "unknown request type");
        return -1;
    }
    if (has_credit && (req->credit < 1 || req->credit > NW_REPLAY_MAX_CREDIT)) {
        snprintf(errbuf, errlen, "'credit' must be 1..%d", NW_REPLAY_MAX_CREDIT);
        return -1;
    }
    if (replay) {
        if (!nw_topic_valid(req->topic, strnlen(req->topic, sizeof req->topic))) {
            snprintf(errbuf, errlen, "invalid topic");
            return -1;
        }
        if (req->has_from == req->has_last) {
            snprintf(errbuf, errlen, "replay needs one of 'from' or 'last'");
            return -1;
        }
        if ((req->has_from ? req->from : req->last) == 0 || (req->has_to && req->to == 0)) {
            snprintf(errbuf, errlen, "'from', 'last' and 'to' must be at least 1");
            return -1;
        }
        if (req->has_from && req->has_to && req->to < req->from) {
            snprintf(errbuf, errlen, "'to' is below 'from'");
            return -1;
        }
    }
    wr_t w;
    put_head(&w, sb, 2 + has_credit + (replay ? 2 + req->has_to : 0), types[req->type]);
    if (replay) {
        put_key_str(&w, "topic", req->topic);
        put_key_uint(&w, req->has_last ? "last" : "from", req->has_last ? req->last : req->from);
        if (req->has_to)
            put_key_uint(&w, "to", req->to);
    }
    if (has_credit)
        put_key_uint(&w, "credit", req->credit);
    return put_done(&w, errbuf, errlen);
}

int nw_replay_end_pack(const nw_replay_end_t *end, msgpack_sbuffer *sb, char *errbuf,
                       size_t errlen)
{
    if (!nw_topic_valid(end->topic, strnlen(end->topic, sizeof end->topic))) {
        snprintf(errbuf, errlen, "invalid topic");
        return -1;
    }
    wr_t w;
    put_head(&w, sb, 6, "end");
    put_key_str(&w, "topic", end->topic);
    put_key_uint(&w, "from", end->from);
    put_key_uint(&w, "last", end->last);
    put_key_uint(&w, "head", end->head);
    return put_done(&w, errbuf, errlen);
}

int nw_replay_error_pack(const nw_replay_error_t *error, msgpack_sbuffer *sb, char *errbuf,
                         size_t errlen)
{
    size_t tlen = strnlen(error->topic, sizeof error->topic);
    size_t clen = strnlen(error->code, sizeof error->code);
    if (tlen != 0 && !nw_topic_valid(error->topic, tlen)) {
        snprintf(errbuf, errlen, "invalid topic");
        return -1;
    }
    if (clen == 0 || clen > NW_REPLAY_MAX_CODE) {
        snprintf(errbuf, errlen, "'code' is not 1..%d bytes without NUL", NW_REPLAY_MAX_CODE);
        return -1;
    }
    wr_t w;
    put_head(&w, sb, 5 + error->has_oldest, "error");
    put_key_str(&w, "topic", error->topic);
    put_key_str(&w, "code", error->code);
    put_str(&w, "reason", 6);
    put_str(&w, error->reason, strnlen(error->reason, NW_REPLAY_MAX_REASON));
    if (error->has_oldest)
        put_key_uint(&w, "oldest", error->oldest);
    return put_done(&w, errbuf, errlen);
}
