/*
 * journal: segment files, group commit, recovery and replay cursors (see journal.h).
 *
 * State lives on the loop thread: each topic's last assigned seq (seqs) and last durable
 * seq (durable), the ids seen with their times (seen), the list of segments on disk and
 * two batches: the open one that appends go into and the one being written ("flight").
 * A write is one job on libuv's thread pool; while it runs the worker alone touches the
 * current segment's fd and may read the (then frozen) segment list to unlink retired
 * files. Everything the job changes in memory is applied when it comes back.
 */
#include "journal.h"
#include "fsutil.h"
#include "log.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/magic.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x314a574eu          /* "NWJ1" read as a little-endian u32 */
#define HEADER 12u
#define MAX_RECORD (32u << 20)     /* larger lengths can only be garbage */
#define READ_CHUNK (256u << 10)
#define ZERO_STEP (1u << 20)       /* zeros written ahead of the data at a time */
#define ZERO_LOW (256u << 10)      /* and written again once less than this is left */
#define SEG_FMT "%012" PRIu64 ".nwj"

/* ---------------------------------------------------------------- small helpers */

/* Every record is checksummed on the loop thread when appended, so the byte-at-a-time
 * loop showed up in burst profiles. x86-64 has CRC-32C itself (SSE4.2's crc32, eight
 * bytes an instruction); elsewhere slicing-by-8 does eight bytes per step. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(NW_JOURNAL_PORTABLE_CRC)   /* test_journal_portable tests the tables */
#include <cpuid.h>
#include <nmmintrin.h>
#define CRC_HW 1
static bool crc_hw;

__attribute__((target("sse4.2")))
static uint32_t crc_sse42(uint32_t crc, const uint8_t *p, size_t len)
{
    uint64_t c = crc;
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
    }
    crc = (uint32_t) c;
    while (len--)
        crc = _mm_crc32_u8(crc, *p++);
    return crc;
}
#endif

static void crc_init(void)
{
#ifdef CRC_HW
    unsigned eax, ebx, ecx, edx;
    crc_hw = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx >> 20 & 1);   /* SSE4.2 */
#endif
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
}

uint32_t nw_journal_crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&crc_once, crc_init);
    const uint8_t *p = data;
#ifdef CRC_HW
    if (crc_hw)
        return ~crc_sse42(~crc, p, len);
#endif
    crc = ~crc;
    while (len >= 8) {
        uint32_t lo = crc ^ ((uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
                             (uint32_t) p[3] << 24);
        crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
              crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t) (v >> (8 * i));
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void seg_path(const char *dir, uint64_t num, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/" SEG_FMT, dir, num);
}

static void free_item(void **item)
{
    free(*item);
    *item = NULL;
}

/* zhashx of string -> malloc'd 64-bit value (seqs as uint64_t, times as int64_t) */
static zhashx_t *map_new(void)
{
    zhashx_t *h = zhashx_new();
    if (h)
        zhashx_set_destructor(h, free_item);
    return h;
}

static int map_set(zhashx_t *h, const char *key, uint64_t v)
{
    uint64_t *p = zhashx_lookup(h, key);
    if (!p) {
        if (!(p = malloc(sizeof *p)))
            return -1;
        zhashx_insert(h, key, p);
    }
    *p = v;
    return 0;
}

static uint64_t map_get(zhashx_t *h, const char *key)
{
    const uint64_t *p = zhashx_lookup(h, key);
    return p ? *p : 0;
}

static int map_copy(zhashx_t *dst, zhashx_t *src)
{
    zhashx_purge(dst);
    for (uint64_t *v = zhashx_first(src); v; v = zhashx_next(src))
        if (map_set(dst, zhashx_cursor(src), *v) != 0)
            return -1;
    return 0;
}

static char *dup_bytes(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

/* ---------------------------------------------------------------- record encoding */

enum { REC_CHECKPOINT, REC_MESSAGE, REC_COMMIT, REC_SEAL };   /* a payload's first item */

static int pack_str(msgpack_packer *pk, const char *s)
{
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Reserve a header; the payload is packed after it and frame_end() fills it in. */
static int frame_begin(msgpack_sbuffer *sb, size_t *payload)
{
    static const char zero[HEADER];
    if (msgpack_sbuffer_write(sb, zero, HEADER) != 0)
        return -1;
    *payload = sb->size;
    return 0;
}

static int frame_end(msgpack_sbuffer *sb, size_t payload)
{
    size_t len = sb->size - payload;
    if (len > MAX_RECORD)
        return -1;
    uint8_t *h = (uint8_t *) sb->data + payload - HEADER;
    put_le32(h, MAGIC);
    put_le32(h + 4, (uint32_t) len);
    put_le32(h + 8, nw_journal_crc32c(0, sb->data + payload, len));
    return 0;
}

static int pack_checkpoint(msgpack_sbuffer *sb, const char *epoch, int64_t time_ms,
                           zhashx_t *seqs)
{
    size_t old = sb->size, payload;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int rc = frame_begin(sb, &payload) || msgpack_pack_array(&pk, 4) ||
             msgpack_pack_uint8(&pk, 0) || pack_str(&pk, epoch) ||
             msgpack_pack_int64(&pk, time_ms) ||
             msgpack_pack_map(&pk, zhashx_size(seqs));
    for (uint64_t *v = zhashx_first(seqs); v && !rc; v = zhashx_next(seqs))
        rc = pack_str(&pk, zhashx_cursor(seqs)) || msgpack_pack_uint64(&pk, *v);
    if (rc || frame_end(sb, payload) != 0) {
        sb->size = old;
        return -1;
    }
    return 0;
}

/* The last record of every group write: the seqs it leaves its topics at and where it
 * began, so that recovery knows what a damaged record inside it can have held. It ends
 * with the epoch, so its last byte is never zero: a record of ours that ends in zeros
 * was cut short, not damaged (see tail_shape). */
static int pack_commit(msgpack_sbuffer *sb, uint64_t start, zhashx_t *seqs /* or NULL */,
                       const char *epoch)
{
    size_t old = sb->size, payload;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int rc = frame_begin(sb, &payload) || msgpack_pack_array(&pk, 4) ||
             msgpack_pack_uint8(&pk, REC_COMMIT) || msgpack_pack_uint64(&pk, start) ||
             msgpack_pack_map(&pk, seqs ? zhashx_size(seqs) : 0);
    for (uint64_t *v = seqs ? zhashx_first(seqs) : NULL; v && !rc; v = zhashx_next(seqs))
        rc = pack_str(&pk, zhashx_cursor(seqs)) || msgpack_pack_uint64(&pk, *v);
    if (rc || pack_str(&pk, epoch) || frame_end(sb, payload) != 0) {
        sb->size = old;
        return -1;
    }
    return 0;
}

/* Written at the end of a segment once the next one is durable, before anything in
 * the next one is published: a journal whose newest segment is sealed lost a segment. */
static int pack_seal(msgpack_sbuffer *sb, uint64_t next, const char *epoch)
{
    size_t old = sb->size, payload;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (frame_begin(sb, &payload) || msgpack_pack_array(&pk, 3) ||
        msgpack_pack_uint8(&pk, REC_SEAL) || msgpack_pack_uint64(&pk, next) ||
        pack_str(&pk, epoch) || frame_end(sb, payload) != 0) {
        sb->size = old;
        return -1;
    }
    return 0;
}

/* msgpack-c allocates a container's elements before reading them, so a 5-byte header
 * claiming 2^32 elements would ask for ~100 GiB: refuse counts that the bytes left
 * could not hold (every element takes at least one byte). */
static bool msgpack_plausible(const uint8_t *p, size_t len)
{
    size_t pos = 0;
    uint64_t pending = 1;
    while (pending > 0) {
        if (pos >= len)
            return false;
        uint8_t b = p[pos++];
        pending--;
        uint64_t skip = 0, n = 0;
        int lenbytes = 0, kind = 0;     /* kind: 0 fixed, 1 bytes, 2 ext, 3 array, 4 map */
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
            ;
        else if ((b & 0xf0) == 0x80)
            pending += 2u * (b & 0x0f);
        else if ((b & 0xf0) == 0x90)
            pending += b & 0x0f;
        else if ((b & 0xe0) == 0xa0)
            skip = b & 0x1f;
        else switch (b) {
            case 0xc4: case 0xd9: lenbytes = 1; kind = 1; break;
            case 0xc5: case 0xda: lenbytes = 2; kind = 1; break;
            case 0xc6: case 0xdb: lenbytes = 4; kind = 1; break;
            case 0xc7: lenbytes = 1; kind = 2; break;
            case 0xc8: lenbytes = 2; kind = 2; break;
            case 0xc9: lenbytes = 4; kind = 2; break;
            case 0xcc: case 0xd0: skip = 1; break;
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xca: case 0xce: case 0xd2: skip = 4; break;
            case 0xcb: case 0xcf: case 0xd3: skip = 8; break;
            case 0xd4: skip = 2; break;
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xdc: lenbytes = 2; kind = 3; break;
            case 0xdd: lenbytes = 4; kind = 3; break;
            case 0xde: lenbytes = 2; kind = 4; break;
            case 0xdf: lenbytes = 4; kind = 4; break;
            default: return false;      /* 0xc1 is never used */
        }
        if ((size_t) lenbytes > len - pos)
            return false;
        for (int i = 0; i < lenbytes; i++)
            n = n << 8 | p[pos++];
        if (kind == 1)
            skip = n;
        else if (kind == 2)
            skip = n + 1;
        else if (kind == 3)
            pending += n;
        else if (kind == 4)
            pending += 2 * n;
        if (skip > len - pos)
            return false;
        pos += skip;
        if (pending > len - pos)
            return false;
    }
    return true;
}

typedef struct {
    int type;                              /* REC_* */
    const char *epoch;                     /* checkpoint, commit, seal: 32 hex digits,
                                              not terminated */
    const msgpack_object_map *seqs;        /* checkpoint, commit: topic -> seq */
    const char *topic, *id, *msg;          /* message: not terminated */
    size_t topic_len, id_len, msg_len;
    uint64_t seq;
    uint64_t start;                        /* commit: where its group write began */
    uint64_t next;                         /* seal: the segment that follows */
    int64_t time_ms;
} record_t;

static bool is_name(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_STR && !memchr(o->via.str.ptr, '\0', o->via.str.size);
}

static bool get_time(const msgpack_object *o, int64_t *out)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        *out = (int64_t) o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = o->via.i64;
    else
        return false;
    return true;
}

static bool is_epoch(const msgpack_object *o, const char **out)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size != 32)
        return false;
    for (size_t i = 0; i < 32; i++)
        if (!o->via.str.ptr[i] || !strchr("0123456789abcdef", o->via.str.ptr[i]))
            return false;
    *out = o->via.str.ptr;
    return true;
}

static bool is_seqs(const msgpack_object *o, const msgpack_object_map **out)
{
    if (o->type != MSGPACK_OBJECT_MAP)
        return false;
    for (size_t i = 0; i < o->via.map.size; i++)
        if (!is_name(&o->via.map.ptr[i].key) ||
            o->via.map.ptr[i].val.type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return false;
    *out = &o->via.map;
    return true;
}

/* Decode and check the shape of a payload; r points into p and up. */
static bool decode(msgpack_unpacked *up, const uint8_t *p, size_t len, record_t *r)
{
    size_t off = 0;
    if (!msgpack_plausible(p, len) ||
        msgpack_unpack_next(up, (const char *) p, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != len || up->data.type != MSGPACK_OBJECT_ARRAY || up->data.via.array.size < 1)
        return false;
    const msgpack_object *a = up->data.via.array.ptr;
    size_t n = up->data.via.array.size;
    if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 > REC_SEAL)
        return false;
    memset(r, 0, sizeof *r);
    r->type = (int) a[0].via.u64;
    if (r->type == REC_CHECKPOINT)
        return n == 4 && is_epoch(&a[1], &r->epoch) && get_time(&a[2], &r->time_ms) &&
               is_seqs(&a[3], &r->seqs);
    if (r->type == REC_COMMIT) {
        if (n != 4 || a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return false;
        r->start = a[1].via.u64;
        return is_seqs(&a[2], &r->seqs) && is_epoch(&a[3], &r->epoch);
    }
    if (r->type == REC_SEAL) {
        if (n != 3 || a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return false;
        r->next = a[1].via.u64;
        return is_epoch(&a[2], &r->epoch);
    }
    if (n != 6 || !is_name(&a[1]) || a[2].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
        a[2].via.u64 == 0 || !is_name(&a[3]) || !get_time(&a[4], &r->time_ms) ||
        a[5].type != MSGPACK_OBJECT_BIN)
        return false;
    r->topic = a[1].via.str.ptr;
    r->topic_len = a[1].via.str.size;
    r->seq = a[2].via.u64;
    r->id = a[3].via.str.ptr;
    r->id_len = a[3].via.str.size;
    r->msg = a[5].via.bin.ptr;
    r->msg_len = a[5].via.bin.size;
    return true;
}

/* ---------------------------------------------------------------- reading segments */

/* A window over the first `size` bytes of a file, read in chunks with pread. */
typedef struct {
    int fd;
    uint64_t size;
    uint8_t *buf;
    size_t cap;
    uint64_t base;      /* buf holds file bytes [base, base + len) */
    size_t len;
} reader_t;

static void reader_reset(reader_t *r, int fd, uint64_t size)
{
    r->fd = fd;
    r->size = size;
    r->base = 0;
    r->len = 0;
}

/* n bytes at off, valid until the next call; NULL with errno 0 past the end, or with
 * errno set when a read fails. */
static const uint8_t *reader_at(reader_t *r, uint64_t off, size_t n)
{
    if (off > r->size || n > r->size - off) {
        errno = 0;
        return NULL;
    }
    if (off >= r->base && off + n <= r->base + r->len)
        return r->buf + (off - r->base);
    size_t want = n > READ_CHUNK ? n : READ_CHUNK;
    if (want > r->size - off)
        want = (size_t) (r->size - off);
    if (want > r->cap) {
        uint8_t *b = realloc(r->buf, want);
        if (!b)
            return NULL;
        r->buf = b;
        r->cap = want;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t k = pread(r->fd, r->buf + got, want - got, (off_t) (off + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            r->len = 0;
            return NULL;
        }
        if (k == 0)
            break;
        got += (size_t) k;
    }
    r->base = off;
    r->len = got;
    if (got < n) {
        errno = 0;      /* the file shrank under us: treat as its end */
        return NULL;
    }
    return r->buf;
}

typedef struct {
    uint64_t off;       /* of the header */
    uint32_t len;
    const uint8_t *payload;
} frame_t;

enum { FRAME_OK, FRAME_END, FRAME_ERR };

/* The next record whose CRC checks, at or after *off, which moves past it. Records of
 * plausible length that fail their CRC are counted in *bad (and logged when name is
 * set); *garbage gets the offset where skipped garbage began, UINT64_MAX if none. */
static int next_frame(reader_t *r, const char *name, uint64_t *off, frame_t *f,
                      uint64_t *bad, uint64_t *garbage)
{
    *garbage = UINT64_MAX;
    for (;;) {
        const uint8_t *h = reader_at(r, *off, HEADER);
        if (!h)
            return errno ? FRAME_ERR : FRAME_END;
        uint32_t len = get_le32(h + 4), crc = get_le32(h + 8);
        const uint8_t *p = NULL;
        if (get_le32(h) == MAGIC && len <= MAX_RECORD &&
            !(p = reader_at(r, *off + HEADER, len)) && errno)
            return FRAME_ERR;
        if (!p) {       /* no magic, absurd length, or runs past the end */
            if (*garbage == UINT64_MAX)
                *garbage = *off;
            (*off)++;
            continue;
        }
        if (nw_journal_crc32c(0, p, len) != crc) {
            (*bad)++;
            if (name)
                nw_warn("journal: %s offset %" PRIu64 ": record of %" PRIu32
                        " bytes fails its CRC, skipped", name, *off, len);
            /* skip it whole if a record (or the end) follows, else hunt for the next */
            uint64_t end = *off + HEADER + len;
            const uint8_t *next = reader_at(r, end, 4);
            if (!next && errno)
                return FRAME_ERR;
            *off = end == r->size || (next && get_le32(next) == MAGIC) ? end : *off + 1;
            continue;
        }
        f->off = *off;
        f->len = len;
        f->payload = p;
        *off += HEADER + len;
        return FRAME_OK;
    }
}

/* ---------------------------------------------------------------- the seen-id set */

/* seen: id -> time of its last append, one entry per article in the dedup window, so
 * it is the journal's largest structure under a backlog. An open-addressing table of
 * 28-byte slots (the id's 20 binary bytes and the time) holds it in 37-75 bytes per id
 * where a zhashx of strings took ~110: power-of-two capacity, linear probing, growth at
 * load 3/4, deletion by backward shift so that pruning needs no tombstones.
 * The slots live in pages of SEEN_PAGE rather than one block: malloc serves pages from
 * heap memory freed earlier (a backlog's pending entries), where one block of megabytes
 * is a fresh mmap on top of it (bench_newswired --backlog 100000: peak RSS 41 MB with
 * one block, 31 MB in pages, 37 MB with the zhashx). */
typedef struct {
    uint32_t key[5];            /* SHA-1 bytes: uniform, so key[0] is the hash */
    uint32_t lo, hi;            /* max(time, 0) + 1; 0: the slot is empty */
} seen_slot_t;

typedef struct {
    seen_slot_t **pages;
    size_t cap, count;          /* cap: 0 or a power of two */
} seen_t;

#define SEEN_MIN 1024u
#define SEEN_PAGE 512u          /* slots: 14 KiB, well below malloc's mmap threshold */

/* Ids are lowercase hex SHA-1s (article.c); anything else is keyed by its own SHA-1. */
static void seen_key(const char *id, size_t len, uint32_t key[5])
{
    uint8_t raw[20];
    bool hex = len == 40;
    for (size_t i = 0; hex && i < 40; i++) {
        char c = id[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            hex = false;
        else if (i % 2)
            raw[i / 2] = (uint8_t) (raw[i / 2] << 4 | v);
        else
            raw[i / 2] = (uint8_t) v;
    }
    if (!hex) {
        zdigest_t *d = zdigest_new();
        if (d) {
            zdigest_update(d, (const byte *) id, len);
            memcpy(raw, zdigest_data(d), sizeof raw);
            zdigest_destroy(&d);
        } else {        /* no memory for a digest: a weaker key still works, just worse */
            memset(raw, 0, sizeof raw);
            for (size_t i = 0; i < len; i++)
                raw[i % 20] = (uint8_t) (raw[i % 20] * 31 + (uint8_t) id[i]);
        }
    }
    memcpy(key, raw, sizeof raw);
}

static seen_slot_t *seen_at(const seen_t *s, size_t i)
{
    return &s->pages[i / SEEN_PAGE][i % SEEN_PAGE];
}

static bool slot_used(const seen_slot_t *e)
{
    return e->lo || e->hi;
}

static int64_t slot_time(const seen_slot_t *e)
{
    return (int64_t) (((uint64_t) e->hi << 32 | e->lo) - 1);
}

static void slot_set_time(seen_slot_t *e, int64_t t)
{
    uint64_t v = (uint64_t) (t < 0 ? 0 : t) + 1;
    e->lo = (uint32_t) v;
    e->hi = (uint32_t) (v >> 32);
}

/* The index of the slot holding key, or of the empty slot where it would go; cap must
 * not be 0. */
static size_t seen_probe(const seen_t *s, const uint32_t key[5])
{
    size_t mask = s->cap - 1;
    for (size_t i = key[0] & mask;; i = (i + 1) & mask) {
        const seen_slot_t *e = seen_at(s, i);
        if (!slot_used(e) || memcmp(e->key, key, sizeof e->key) == 0)
            return i;
    }
}

/* The slot holding key, or NULL. */
static seen_slot_t *seen_find(const seen_t *s, const uint32_t key[5])
{
    seen_slot_t *e = s->cap ? seen_at(s, seen_probe(s, key)) : NULL;
    return e && slot_used(e) ? e : NULL;
}

static void seen_free_pages(seen_slot_t **pages, size_t cap)
{
    for (size_t i = 0; pages && i * SEEN_PAGE < cap; i++)
        free(pages[i]);
    free(pages);
}

static int seen_resize(seen_t *s, size_t cap)
{
    size_t npages = (cap + SEEN_PAGE - 1) / SEEN_PAGE;
    seen_t n = {calloc(npages, sizeof *n.pages), cap, s->count};
    for (size_t i = 0; n.pages && i < npages; i++)
        if (!(n.pages[i] = calloc(cap < SEEN_PAGE ? cap : SEEN_PAGE, sizeof **n.pages))) {
            seen_free_pages(n.pages, cap);
            n.pages = NULL;
        }
    if (!n.pages)
        return -1;
    for (size_t i = 0; i < s->cap; i++)
        if (slot_used(seen_at(s, i)))
            *seen_at(&n, seen_probe(&n, seen_at(s, i)->key)) = *seen_at(s, i);
    seen_free_pages(s->pages, s->cap);
    *s = n;
    return 0;
}

static bool seen_get(const seen_t *s, const uint32_t key[5], int64_t *t)
{
    const seen_slot_t *e = seen_find(s, key);
    if (e)
        *t = slot_time(e);
    return e != NULL;
}

static int seen_set(seen_t *s, const uint32_t key[5], int64_t t)
{
    seen_slot_t *e = seen_find(s, key);
    if (!e) {
        if ((s->count + 1) * 4 > s->cap * 3 &&
            seen_resize(s, s->cap ? 2 * s->cap : SEEN_MIN) != 0)
            return -1;
        e = seen_at(s, seen_probe(s, key));
        memcpy(e->key, key, sizeof e->key);
        s->count++;
    }
    slot_set_time(e, t);
    return 0;
}

/* Empty slot i, pulling back each later entry of its run that a hole at i would cut
 * off from its home slot. */
static void seen_remove_at(seen_t *s, size_t i)
{
    size_t mask = s->cap - 1;
    for (size_t j = (i + 1) & mask; slot_used(seen_at(s, j)); j = (j + 1) & mask) {
        size_t home = seen_at(s, j)->key[0] & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            *seen_at(s, i) = *seen_at(s, j);
            i = j;
        }
    }
    memset(seen_at(s, i), 0, sizeof (seen_slot_t));
    s->count--;
}

static void seen_delete(seen_t *s, const uint32_t key[5])
{
    if (seen_find(s, key))
        seen_remove_at(s, seen_probe(s, key));
}

static void seen_clear(seen_t *s)
{
    seen_free_pages(s->pages, s->cap);
    *s = (seen_t) {0};
}

/* ---------------------------------------------------------------- the journal */

typedef struct {
    uint32_t key[5];    /* of the id (seen_key) */
    int64_t prev;       /* its time before this append */
    bool had;           /* whether it was there at all */
} undo_t;

typedef struct {
    nw_journal_commit_fn *fn;
    void *arg;
} waiter_t;

typedef struct {
    msgpack_sbuffer data;       /* framed records */
    uint64_t records;
    int64_t newest_ms;
    zhashx_t *seqs;             /* topic -> last seq appended in this batch */
    undo_t *undo;
    size_t nundo, undo_cap;
    waiter_t *waiters;
    size_t nwaiters, waiters_cap;
} batch_t;

typedef struct {
    uint64_t num, size, records;    /* size: where its last valid record ends */
    uint64_t alloc;             /* the file's size: size plus its tail of zeros */
    int64_t newest_ms;          /* of its messages */
    int64_t cp_ms;              /* of its checkpoint: its age while it holds no message */
    zhashx_t *cp;               /* its checkpoint's seqs; NULL when it has none readable */
    bool sealed;                /* ends with a seal: a later segment was made */
} segment_t;

/* One group write: filled on the loop thread, run on a worker (or inline at open and
 * close), results applied on the loop thread by finish(). */
typedef struct {
    uv_work_t req;
    const char *dir;
    int fd, old_fd;             /* old_fd is closed once a new segment is durable */
    bool create, sync;
    bool zero_ahead;            /* keep zeros ahead of the data (only worth it with fsync) */
    bool zero_failed;           /* out: no room for them: plain appends for a while */
    uint64_t num, start_len, end_len;
    uint64_t alloc;             /* in: the file's size; out: its size after the write */
    uint64_t zero_from;         /* write no zeros while the data ends before this */
    uint64_t zero_limit;        /* nor beyond this (the segment size), 0: no limit */
    uint64_t old_len;           /* when rotating: the old segment's data end, to cut it to */
    msgpack_sbuffer seal;       /* when rotating: the seal written there first */
    bool old_cut;               /* out: a failed rotation cut the old segment's zeros */
    msgpack_sbuffer head;       /* the checkpoint starting a segment, or empty */
    zhashx_t *cp;               /* and its seqs */
    int64_t cp_ms;              /* and its time */
    const char *data;
    size_t len;
    const segment_t *retire;    /* unlink the first nretire of these after the write */
    size_t nretire;
    int err;                    /* errno */
    bool fsynced;
} job_t;

struct nw_journal {
    uv_loop_t *loop;
    nw_journal_options_t opt;
    char *dir;
    char epoch[33];
    zhashx_t *seqs, *durable;
    seen_t seen;
    segment_t *segs;
    size_t nsegs, segs_cap;
    int fd;                     /* the last segment, append only */
    batch_t *open, *flight;
    job_t job;
    bool writing, unwinding, closing, wrote;
    uint64_t last_start;        /* uv_now() when the last write began */
    uint64_t write_start_ns;    /* uv_hrtime() then: the write's latency */
    uint64_t writes, write_ns, write_buckets[NW_JOURNAL_LATENCY_BUCKETS];
    uv_timer_t *timer;
    uint64_t bytes, records, commits, fsyncs, failures, discarded;
    uint64_t zero_from;         /* after zeros failed to fit: job_t.zero_from */
    bool zero_ahead;            /* job_t.zero_ahead */
    bool failing;              /* the last group write failed: log the next ones quietly */
    int64_t pruned_ms;          /* wall time seen was last pruned */
    bool reloading;             /* a read-back of ids for a wider window is running */
};

static batch_t *batch_new(void)
{
    batch_t *b = calloc(1, sizeof *b);
    if (!b || !(b->seqs = map_new())) {
        free(b);
        return NULL;
    }
    msgpack_sbuffer_init(&b->data);
    b->newest_ms = INT64_MIN;
    return b;
}

/* Empty the batch; its waiters must have been taken already. */
static void batch_clear(batch_t *b)
{
    b->data.size = 0;
    b->records = 0;
    b->newest_ms = INT64_MIN;
    zhashx_purge(b->seqs);
    b->nundo = 0;
}

static void batch_destroy(batch_t **b_p)
{
    batch_t *b = *b_p;
    if (!b)
        return;
    batch_clear(b);
    msgpack_sbuffer_destroy(&b->data);
    zhashx_destroy(&b->seqs);
    free(b->undo);
    free(b->waiters);
    free(b);
    *b_p = NULL;
}

/* Put seen back as it was before the batch's appends, newest first. */
static void batch_undo(batch_t *b, seen_t *seen)
{
    for (size_t i = b->nundo; i-- > 0;) {
        if (b->undo[i].had)
            seen_set(seen, b->undo[i].key, b->undo[i].prev);   /* no memory: stays newer */
        else
            seen_delete(seen, b->undo[i].key);
    }
}

static void segment_release(segment_t *s)
{
    zhashx_destroy(&s->cp);
}

static int pwrite_all(int fd, const char *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t k = pwrite(fd, p, n, (off_t) off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            if (k == 0)
                errno = EIO;
            return -1;
        }
        p += k;
        off += (uint64_t) k;
        n -= (size_t) k;
    }
    return 0;
}

/* An fdatasync after a write that grows the file also commits its new size, which costs
 * about twice one that only overwrites allocated blocks; so the current segment keeps
 * written zeros (not fallocate, whose unwritten extents need a metadata commit of their
 * own when first written) ahead of its data end, and only the commit that tops them up
 * pays for a size change, about once per ZERO_STEP. Recovery takes zeros after the last
 * record for that tail. A full disk (or file size limit) only stops the zeros: what was
 * written of them is cut off again and the commit goes on; -1 on any other error. */
static int write_zeros(job_t *job, int fd, uint64_t end)
{
    static const char zeros[64 << 10];
    if (job->alloc < end)
        job->alloc = end;
    uint64_t to = job->alloc + ZERO_STEP;
    if (job->zero_limit && to > job->zero_limit)
        to = job->zero_limit;
    if (!job->zero_ahead || end < job->zero_from || job->alloc - end >= ZERO_LOW ||
        to <= job->alloc)
        return 0;
    for (uint64_t off = job->alloc; off < to;) {
        size_t n = to - off < sizeof zeros ? (size_t) (to - off) : sizeof zeros;
        if (pwrite_all(fd, zeros, n, off) == 0) {
            off += n;
            continue;
        }
        if (errno != ENOSPC && errno != EDQUOT && errno != EFBIG)
            return -1;
        job->zero_failed = true;
        struct stat st;
        if (ftruncate(fd, (off_t) job->alloc) != 0 && fstat(fd, &st) == 0)
            job->alloc = (uint64_t) st.st_size;     /* zeros left behind are still a tail */
        return 0;
    }
    job->alloc = to;
    return 0;
}

static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* Blocking: the write, its fsync, and the retirements. */
static void run_job(job_t *job)
{
    job->end_len = job->start_len;
    if (job->err || (job->len == 0 && job->head.size == 0))
        return;
    char path[PATH_MAX];
    seg_path(job->dir, job->num, path, sizeof path);
    int fd = job->fd;
    if (job->create && (fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640)) < 0) {
        job->err = errno;
        return;
    }
    uint64_t end = job->start_len + job->head.size + job->len;
    if (pwrite_all(fd, job->head.data, job->head.size, job->start_len) != 0 ||
        pwrite_all(fd, job->data, job->len, job->start_len + job->head.size) != 0 ||
        write_zeros(job, fd, end) != 0 ||
        (job->sync && fdatasync(fd) != 0) ||
        (job->create && job->sync && sync_dir(job->dir) != 0)) {
        job->err = errno ? errno : EIO;
        if (job->create) {
            close(fd);
            unlink(path);
        } else if (ftruncate(fd, (off_t) job->start_len) != 0) {
            /* the tail stays as garbage that readers skip; know where the file ends */
            struct stat st;
            if (fstat(fd, &st) == 0)
                job->end_len = job->alloc = (uint64_t) st.st_size;
            nw_warn("journal: cannot truncate %s back to %" PRIu64 ": %s", path,
                    job->start_len, strerror(errno));
        } else {
            job->alloc = job->start_len;
        }
        return;
    }
    /* The old segment is sealed (and keeps no tail of zeros) before anything in the new
     * one is published, so that losing the new one later cannot go unnoticed. */
    if (job->create && job->old_fd >= 0 &&
        (pwrite_all(job->old_fd, job->seal.data, job->seal.size, job->old_len) != 0 ||
         ftruncate(job->old_fd, (off_t) (job->old_len + job->seal.size)) != 0 ||
         (job->sync && fdatasync(job->old_fd) != 0))) {
        job->err = errno ? errno : EIO;
        close(fd);
        unlink(path);
        /* the old segment stays current: no seal (a crash would read it as sealed) */
        job->old_cut = ftruncate(job->old_fd, (off_t) job->old_len) == 0;
        return;
    }
    job->fsynced = job->sync;
    job->end_len = end;
    if (job->create) {
        job->fd = fd;
        if (job->old_fd >= 0)
            close(job->old_fd);
        job->old_fd = -1;
    }
    for (size_t i = 0; i < job->nretire; i++) {
        seg_path(job->dir, job->retire[i].num, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT)
            nw_warn("journal: cannot remove %s: %s", path, strerror(errno));
    }
}

static void work_cb(uv_work_t *req)
{
    run_job(&((nw_journal_t *) req->data)->job);
}

static int reserve_segment(nw_journal_t *self)
{
    if (self->nsegs < self->segs_cap)
        return 0;
    size_t cap = self->segs_cap ? 2 * self->segs_cap : 16;
    segment_t *s = realloc(self->segs, cap * sizeof *s);
    if (!s)
        return -1;
    self->segs = s;
    self->segs_cap = cap;
    return 0;
}

static int push_segment(nw_journal_t *self, uint64_t num)
{
    if (reserve_segment(self) != 0)
        return -1;
    self->segs[self->nsegs++] = (segment_t) {.num = num, .newest_ms = INT64_MIN,
                                             .cp_ms = INT64_MIN};
    return 0;
}

/* Move the open batch to flight and describe its write in self->job. */
static void seal(nw_journal_t *self, bool sync)
{
    batch_t *b = self->open;
    self->open = self->flight;
    self->flight = b;
    job_t *job = &self->job;
    job->dir = self->dir;
    job->sync = sync;
    job->data = b->data.data;
    job->len = b->data.size;
    job->err = 0;
    job->fsynced = false;
    job->create = false;
    job->fd = self->fd;
    job->old_fd = -1;
    job->head.size = 0;
    job->nretire = 0;
    segment_t *cur = self->nsegs ? &self->segs[self->nsegs - 1] : NULL;
    job->num = cur ? cur->num : 0;
    job->start_len = cur ? cur->size : 0;
    job->alloc = cur ? cur->alloc : 0;
    job->zero_ahead = self->zero_ahead;
    job->zero_failed = false;
    job->zero_from = self->zero_from;
    job->zero_limit = self->opt.segment_size;
    job->seal.size = 0;
    job->old_cut = false;
    if (job->len == 0)
        return;
    /* a batch starting a segment follows a checkpoint of the seqs as they stand before
     * it, which (no other write being in flight) are the durable ones */
    bool rotate = !cur || (self->opt.segment_size && cur->size >= self->opt.segment_size);
    if (rotate && reserve_segment(self) != 0) {
        job->err = ENOMEM;
        return;
    }
    cur = self->nsegs ? &self->segs[self->nsegs - 1] : NULL;    /* segs may have moved */
    if (rotate) {
        job->create = true;
        job->num = cur ? cur->num + 1 : 1;
        job->fd = -1;
        job->old_fd = self->fd;
        job->old_len = cur ? cur->size : 0;
        job->start_len = job->alloc = job->zero_from = 0;
        if (cur && pack_seal(&job->seal, job->num, self->epoch) != 0) {
            job->err = ENOMEM;
            return;
        }
    }
    /* the batch is frozen now: its commit record closes it */
    if (pack_commit(&b->data, job->start_len, b->seqs, self->epoch) != 0) {
        job->err = ENOMEM;
        return;
    }
    job->data = b->data.data;
    job->len = b->data.size;
    if (job->start_len == 0) {
        if (!(job->cp = map_new()) || map_copy(job->cp, self->durable) != 0 ||
            pack_checkpoint(&job->head, self->epoch, job->cp_ms = wall_ms(),
                            self->durable) != 0) {
            job->err = ENOMEM;
            return;
        }
    }
    /* retire what the write will leave beyond the limits; never the current segment */
    uint64_t total = self->bytes + job->head.size + job->len;
    int64_t now = wall_ms();
    size_t limit = rotate ? self->nsegs : self->nsegs - 1;
    while (job->nretire < limit) {
        const segment_t *s = &self->segs[job->nretire];
        int64_t newest = s->records ? s->newest_ms : s->cp_ms;
        if (!(self->opt.max_size && total > self->opt.max_size) &&
            !(self->opt.max_age_ms && newest < now - self->opt.max_age_ms))
            break;
        total -= s->size;
        job->nretire++;
    }
    job->retire = self->segs;
}


static void maybe_start(nw_journal_t *self);

/* Forget ids older than the dedup window, at most once a minute (or once a window,
 * when that is shorter): the table would otherwise hold every id published since the
 * daemon started. */
static void prune_seen(nw_journal_t *self, bool now_anyway)
{
    int64_t now = wall_ms(), since = now - self->opt.dedup_window_ms;
    int64_t every = self->opt.dedup_window_ms < 60000 ? self->opt.dedup_window_ms : 60000;
    if (!now_anyway && now - self->pruned_ms < every)
        return;
    self->pruned_ms = now;
    seen_t *s = &self->seen;
    /* a removal pulls later entries back into slot i: look at it again */
    for (size_t i = 0; i < s->cap; i++)
        while (slot_used(seen_at(s, i)) && slot_time(seen_at(s, i)) < since)
            seen_remove_at(s, i);
    /* give back what a burst grew, keeping room to grow again */
    size_t cap = s->cap;
    while (cap > SEEN_MIN && s->count * 8 < cap)
        cap /= 2;
    if (cap < s->cap && s->count * 4 <= cap * 3)
        seen_resize(s, cap);        /* no memory: keep the larger table */
}

/* Widening the dedup window (SIGHUP): the ids between the old and the new horizon were
 * never loaded (recovery takes only the window's) or were pruned since, but the journal
 * still holds them. One job on the thread pool reads them back from the segments that
 * can hold them (a snapshot of their names and durable sizes: a segment retired
 * meanwhile is skipped, its ids are past retention anyway); the loop thread merges them
 * into seen when it comes back. Until then those older ids are not yet known. */
typedef struct {
    uint32_t key[5];
    int64_t time_ms;
} found_id_t;

typedef struct {
    uv_work_t req;
    nw_journal_t *journal;
    const char *dir;
    uint64_t *nums, *sizes;
    size_t n;
    int64_t window_ms, since;
    found_id_t *found;
    size_t nfound, cap;
    int err;
} reload_t;

static void reload_work(uv_work_t *req)
{
    reload_t *rl = req->data;
    reader_t r = {.fd = -1};
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    for (size_t i = 0; i < rl->n && !rl->err; i++) {
        char path[PATH_MAX];
        seg_path(rl->dir, rl->nums[i], path, sizeof path);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno != ENOENT)
                rl->err = errno;
            continue;
        }
        reader_reset(&r, fd, rl->sizes[i]);
        uint64_t off = 0, bad = 0, garbage;
        frame_t f;
        int rc;
        while ((rc = next_frame(&r, NULL, &off, &f, &bad, &garbage)) == FRAME_OK) {
            record_t rec;
            if (!decode(&up, f.payload, f.len, &rec) || rec.type != 1 || rec.time_ms < rl->since)
                continue;
            if (rl->nfound == rl->cap) {
                size_t cap = rl->cap ? 2 * rl->cap : 1024;
                found_id_t *p = realloc(rl->found, cap * sizeof *p);
                if (!p) {
                    rl->err = ENOMEM;
                    break;
                }
                rl->found = p;
                rl->cap = cap;
            }
            seen_key(rec.id, rec.id_len, rl->found[rl->nfound].key);
            rl->found[rl->nfound++].time_ms = rec.time_ms;
        }
        if (rc == FRAME_ERR && !rl->err)
            rl->err = errno ? errno : EIO;
        close(fd);
    }
    free(r.buf);
    msgpack_unpacked_destroy(&up);
}

static int start_reload(nw_journal_t *self);

static void reload_done(uv_work_t *req, int status)
{
    (void) status;
    reload_t *rl = req->data;
    nw_journal_t *self = rl->journal;
    self->reloading = false;
    int err = rl->err;
    size_t added = 0;
    int64_t since = wall_ms() - self->opt.dedup_window_ms;
    for (size_t i = 0; i < rl->nfound && !err; i++) {
        int64_t t;
        bool had = seen_get(&self->seen, rl->found[i].key, &t);
        if (rl->found[i].time_ms < since || (had && t >= rl->found[i].time_ms))
            continue;
        if (seen_set(&self->seen, rl->found[i].key, rl->found[i].time_ms) != 0)
            err = ENOMEM;
        else
            added += !had;
    }
    if (err)
        nw_warn("journal: dedup window %" PRId64 " s: the ids older than the previous window "
                "could not all be read back (%s): such articles may be published again",
                rl->window_ms / 1000, strerror(err));
    else
        nw_notice("journal: dedup window widened to %" PRId64 " s: %zu ids read back from "
                  "%zu segments", rl->window_ms / 1000, added, rl->n);
    int64_t done_for = rl->window_ms;
    free(rl->nums);
    free(rl->sizes);
    free(rl->found);
    free(rl);
    /* widened again while this one ran */
    if (!self->closing && self->opt.dedup_window_ms > done_for)
        start_reload(self);
}

static int start_reload(nw_journal_t *self)
{
    reload_t *rl = calloc(1, sizeof *rl);
    if (!rl || !(rl->nums = malloc((self->nsegs + 1) * sizeof *rl->nums)) ||
        !(rl->sizes = malloc((self->nsegs + 1) * sizeof *rl->sizes)))
        goto nomem;
    rl->journal = self;
    rl->dir = self->dir;
    rl->window_ms = self->opt.dedup_window_ms;
    rl->since = wall_ms() - rl->window_ms;
    for (size_t i = 0; i < self->nsegs; i++) {
        const segment_t *seg = &self->segs[i];
        int64_t newest = seg->records ? seg->newest_ms : seg->cp_ms;
        if (seg->records == 0 || newest < rl->since)
            continue;
        rl->nums[rl->n] = seg->num;
        rl->sizes[rl->n++] = seg->size;
    }
    rl->req.data = rl;
    self->reloading = true;
    if (uv_queue_work(self->loop, &rl->req, reload_work, reload_done) != 0) {
        self->reloading = false;
        goto nomem;
    }
    return 0;
nomem:
    if (rl) {
        free(rl->nums);
        free(rl->sizes);
    }
    free(rl);
    nw_warn("journal: dedup window %" PRId64 " s: out of memory reading the older ids back: "
            "articles older than the previous window may be published again",
            self->opt.dedup_window_ms / 1000);
    errno = ENOMEM;
    return -1;
}

int nw_journal_set_dedup_window(nw_journal_t *self, int64_t window_ms)
{
    int64_t old = self->opt.dedup_window_ms;
    if (window_ms == old)
        return 0;
    self->opt.dedup_window_ms = window_ms;
    if (window_ms < old) {      /* forget at once what the narrower window no longer wants */
        prune_seen(self, true);
        return 0;
    }
    if (self->reloading)        /* reload_done() starts another for the wider window */
        return 0;
    nw_notice("journal: dedup window widened from %" PRId64 " to %" PRId64 " s: reading "
              "older ids back from the journal", old / 1000, window_ms / 1000);
    return start_reload(self);
}

/* The duration of a group write, for the latency histogram (nw_journal_stats). */
static void record_latency(nw_journal_t *self, uint64_t ns)
{
    static const uint64_t bounds_us[] = NW_JOURNAL_LATENCY_BOUNDS_US;
    _Static_assert(sizeof bounds_us / sizeof bounds_us[0] + 1 == NW_JOURNAL_LATENCY_BUCKETS,
                   "one bucket per bound, and one for the slower writes");
    size_t i = 0;
    while (i < NW_JOURNAL_LATENCY_BUCKETS - 1 && ns > bounds_us[i] * 1000)
        i++;
    self->write_buckets[i]++;
    self->writes++;
    self->write_ns += ns;
}

/* Apply a finished write (loop thread) and tell its waiters. */
static void finish(nw_journal_t *self)
{
    job_t *job = &self->job;
    batch_t *b = self->flight;
    self->writing = false;
    record_latency(self, uv_hrtime() - self->write_start_ns);
    waiter_t *first = b->waiters, *then = NULL;
    size_t nfirst = b->nwaiters, nthen = 0;
    b->waiters = NULL;
    b->nwaiters = b->waiters_cap = 0;
    int err = job->err;
    if (err == 0 && job->end_len > job->start_len) {
        if (job->create) {
            push_segment(self, job->num);       /* reserved by seal(): cannot fail */
            self->fd = job->fd;
        }
        segment_t *cur = &self->segs[self->nsegs - 1];
        uint64_t added = job->end_len - job->start_len;
        if (job->create && self->nsegs > 1) {
            segment_t *prev = &self->segs[self->nsegs - 2];
            prev->size += job->seal.size;
            prev->alloc = prev->size;
            prev->sealed = job->seal.size > 0;
            self->bytes += job->seal.size;
        }
        cur->size = job->end_len;
        cur->alloc = job->alloc;
        /* out of room for zeros: try again a step further on */
        self->zero_from = job->zero_failed ? job->end_len + ZERO_STEP : job->zero_from;
        cur->records += b->records;
        if (b->newest_ms > cur->newest_ms)
            cur->newest_ms = b->newest_ms;
        if (job->cp && !cur->cp) {
            cur->cp = job->cp;
            job->cp = NULL;
            cur->cp_ms = job->cp_ms;
        }
        self->bytes += added;
        self->records += b->records;
        self->commits++;
        self->fsyncs += job->fsynced;
        for (size_t i = 0; i < job->nretire; i++) {
            self->bytes -= self->segs[i].size;
            self->records -= self->segs[i].records;
            segment_release(&self->segs[i]);
        }
        self->nsegs -= job->nretire;
        memmove(self->segs, self->segs + job->nretire, self->nsegs * sizeof *self->segs);
        for (uint64_t *v = zhashx_first(b->seqs); v; v = zhashx_next(b->seqs))
            map_set(self->durable, zhashx_cursor(b->seqs), *v);
        batch_clear(b);
        prune_seen(self, false);
        self->failing = false;
    } else if (err) {
        self->failures++;
        if (!job->create && self->nsegs) {
            self->segs[self->nsegs - 1].size = job->end_len;
            self->segs[self->nsegs - 1].alloc = job->alloc;
        } else if (job->old_cut && self->nsegs) {
            self->segs[self->nsegs - 1].alloc = self->segs[self->nsegs - 1].size;
        }
        /* A full disk fails every retry: say it once, then only at debug level. */
        nw_log(self->failing ? NW_LOG_DEBUG : NW_LOG_WARNING,
               "journal: writing " SEG_FMT " failed (%s): %" PRIu64 " records dropped",
               job->num, strerror(err), b->records + self->open->records);
        self->failing = true;
        /* everything appended after the failed batch took seqs that follow its own */
        batch_t *o = self->open;
        then = o->waiters;
        nthen = o->nwaiters;
        o->waiters = NULL;
        o->nwaiters = o->waiters_cap = 0;
        batch_undo(o, &self->seen);
        batch_undo(b, &self->seen);
        batch_clear(o);
        batch_clear(b);
        map_copy(self->seqs, self->durable);
    } else {
        batch_clear(b);
    }
    zhashx_destroy(&job->cp);
    job->head.size = 0;

    self->unwinding = err != 0;
    for (size_t i = 0; i < nfirst; i++)
        first[i].fn(first[i].arg, -err);
    for (size_t i = 0; i < nthen; i++)
        then[i].fn(then[i].arg, -err);
    self->unwinding = false;
    free(first);
    free(then);
    maybe_start(self);
}

static void on_written(uv_work_t *req, int status)
{
    (void) status;      /* only uv_cancel() makes it nonzero, and nothing cancels */
    finish(req->data);
}

static void on_timer(uv_timer_t *timer)
{
    maybe_start(timer->data);
}

static void maybe_start(nw_journal_t *self)
{
    batch_t *b = self->open;
    if (self->writing || self->closing || (b->data.size == 0 && b->nwaiters == 0))
        return;
    uint64_t now = uv_now(self->loop), delay = (uint64_t) self->opt.commit_delay_ms;
    if (self->wrote && self->opt.commit_delay_ms > 0 && now < self->last_start + delay) {
        if (!uv_is_active((uv_handle_t *) self->timer))
            uv_timer_start(self->timer, on_timer, self->last_start + delay - now, 0);
        return;
    }
    self->wrote = true;
    self->last_start = now;
    self->write_start_ns = uv_hrtime();
    seal(self, self->opt.sync);
    self->writing = true;
    self->job.req.data = self;
    if (uv_queue_work(self->loop, &self->job.req, work_cb, on_written) != 0) {
        self->job.err = EAGAIN;     /* cannot happen with both callbacks given */
        finish(self);
    }
}

/* ---------------------------------------------------------------- open and recovery */

static int cmp_segment(const void *a, const void *b)
{
    uint64_t x = ((const segment_t *) a)->num, y = ((const segment_t *) b)->num;
    return x < y ? -1 : x > y;
}

static int list_segments(nw_journal_t *self)
{
    DIR *d = opendir(self->dir);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strlen(e->d_name) != 16 || strcmp(e->d_name + 12, ".nwj") != 0 ||
            strspn(e->d_name, "0123456789") != 12)
            continue;
        if (push_segment(self, strtoull(e->d_name, NULL, 10)) != 0) {
            closedir(d);
            errno = ENOMEM;
            return -1;
        }
    }
    closedir(d);
    if (self->nsegs > 1)
        qsort(self->segs, self->nsegs, sizeof *self->segs, cmp_segment);
    return 0;
}

/* What recovery knows of what may have been published. Every seq handed out must be
 * above every seq ever published on its topic, so bytes recovery skips matter only if
 * nothing read later bounds what they held:
 * - a checkpoint (first in every segment) holds every topic's seq as it stood when its
 *   segment began, so it bounds everything before it, in every older segment too;
 * - a commit (last in every group write) holds the seqs its write left its topics at
 *   and the offset the write began at, so it bounds whatever lies between the two
 *   (offset 0: its write made the segment, checkpoint included, which adds nothing
 *   when the older segments were read whole);
 * - one whole record skipped where a write begins, or as the very last thing in the
 *   journal, was the commit of its write (whose messages were read) or a record of the
 *   one write that never finished, which published nothing;
 * - what a write cut short leaves at the end of the newest segment (a prefix of one
 *   record, then zeros or the end of the file) was never published.
 * Anything else (skipped bytes nothing bounds, a checkpoint lost without its
 * predecessor, a missing newest segment: the one before it was sealed) means the seqs
 * may lag behind what subscribers saw: nw_journal_open() then starts a new epoch. */
typedef struct {
    uint64_t seg, a, b;         /* bytes [a, b) of segment number seg were skipped */
    bool whole;                 /* as one record whose header was read */
} skipped_t;

typedef struct {
    bool complete;              /* the seqs so far bound every one published up to here,
                                   but for what pending holds */
    bool derivable;             /* the current segment's checkpoint adds nothing to them */
    uint64_t prev;              /* number of the segment read before, 0 none */
    uint64_t commit_seg;        /* number of the last segment a commit was read in */
    skipped_t *pending;
    size_t npending, cap;
    char why[160];              /* why complete went false */
} recovery_t;

static int skipped_add(recovery_t *rv, uint64_t seg, uint64_t a, uint64_t b, bool whole)
{
    if (rv->npending == rv->cap) {
        size_t cap = rv->cap ? 2 * rv->cap : 8;
        skipped_t *p = realloc(rv->pending, cap * sizeof *p);
        if (!p)
            return -1;
        rv->pending = p;
        rv->cap = cap;
    }
    rv->pending[rv->npending++] = (skipped_t) {seg, a, b, whole};
    return 0;
}

/* A commit of segment seg whose write began at start was read. */
static void skipped_cover(recovery_t *rv, uint64_t seg, uint64_t start)
{
    size_t keep = 0;
    for (size_t i = 0; i < rv->npending; i++) {
        const skipped_t *p = &rv->pending[i];
        bool inside = p->a >= start && (p->a > 0 || rv->derivable);
        bool its_commit = p->whole && p->a > 0 && p->b == start;
        if (p->seg != seg || !(inside || its_commit))
            rv->pending[keep++] = *p;
    }
    rv->npending = keep;
}

static int max_seq(zhashx_t *h, const char *topic, size_t len, uint64_t seq)
{
    char *t = dup_bytes(topic, len);
    int rc = !t || (seq > map_get(h, t) && map_set(h, t, seq) != 0) ? -1 : 0;
    free(t);
    return rc;
}

/* Take what a valid record says into the journal's state and the segment's. */
static int apply(nw_journal_t *self, segment_t *seg, const record_t *r, bool first,
                 int64_t since, recovery_t *rv)
{
    seg->sealed = r->type == REC_SEAL;
    if (r->type == REC_COMMIT || r->type == REC_SEAL) {
        if (r->type == REC_COMMIT) {
            skipped_cover(rv, seg->num, r->start);
            rv->commit_seg = seg->num;
        }
        for (size_t i = 0; r->type == REC_COMMIT && i < r->seqs->size; i++) {
            const msgpack_object_kv *kv = &r->seqs->ptr[i];
            if (max_seq(self->seqs, kv->key.via.str.ptr, kv->key.via.str.size,
                        kv->val.via.u64) != 0)
                return -1;
        }
        return 0;
    }
    if (r->type == REC_CHECKPOINT) {
        /* the newest checkpoint names the epoch; it bounds everything before it */
        memcpy(self->epoch, r->epoch, 32);
        rv->complete = true;
        rv->npending = 0;
        if (first && !seg->cp && !(seg->cp = map_new()))
            return -1;
        if (first)
            seg->cp_ms = r->time_ms;
        for (size_t i = 0; i < r->seqs->size; i++) {
            const msgpack_object_kv *kv = &r->seqs->ptr[i];
            if (max_seq(self->seqs, kv->key.via.str.ptr, kv->key.via.str.size,
                        kv->val.via.u64) != 0 ||
                (first && max_seq(seg->cp, kv->key.via.str.ptr, kv->key.via.str.size,
                                  kv->val.via.u64) != 0))
                return -1;
        }
        return 0;
    }
    seg->records++;
    if (r->time_ms > seg->newest_ms)
        seg->newest_ms = r->time_ms;
    if (max_seq(self->seqs, r->topic, r->topic_len, r->seq) != 0)
        return -1;
    if (r->time_ms < since)
        return 0;
    uint32_t key[5];
    int64_t t = 0;
    seen_key(r->id, r->id_len, key);
    return (!seen_get(&self->seen, key, &t) || t < r->time_ms) &&
           seen_set(&self->seen, key, r->time_ms) != 0 ? -1 : 0;
}

/* 1 when bytes [from, r->size) are all zero (a preallocated tail), 0 when not, -1 when
 * they cannot be read. */
static int zero_tail(reader_t *r, uint64_t from)
{
    while (from < r->size) {
        size_t n = r->size - from < READ_CHUNK ? (size_t) (r->size - from) : READ_CHUNK;
        const uint8_t *p = reader_at(r, from, n);
        if (!p)
            return errno ? -1 : 0;
        for (size_t i = 0; i < n; i++)
            if (p[i])
                return 0;
        from += n;
    }
    return 1;
}

enum { TAIL_TORN, TAIL_RECORD, TAIL_DAMAGE };

/* What follows the last good record of the newest segment, [from, r->size), when it is
 * not all zeros: TAIL_TORN for what a write cut short leaves (the start of one record,
 * its header, its end or both missing, then zeros or the end of the file), TAIL_RECORD
 * for one whole record that fails its CRC followed by nothing but zeros (our records
 * never end in a zero byte, so its end was written), TAIL_DAMAGE for anything else;
 * -1 when it cannot be read. *nonzero gets the end of the last nonzero byte. */
static int tail_shape(reader_t *r, uint64_t from, uint64_t *nonzero)
{
    *nonzero = from;
    for (uint64_t off = from; off < r->size;) {
        size_t n = r->size - off < READ_CHUNK ? (size_t) (r->size - off) : READ_CHUNK;
        const uint8_t *p = reader_at(r, off, n);
        if (!p)
            return errno ? -1 : TAIL_DAMAGE;
        for (size_t i = n; i-- > 0;)
            if (p[i]) {
                *nonzero = off + i + 1;
                break;
            }
        off += n;
    }
    uint8_t h[HEADER] = {0}, magic[4];
    size_t have = *nonzero - from < HEADER ? (size_t) (*nonzero - from) : HEADER;
    const uint8_t *p = reader_at(r, from, have);
    if (!p)
        return errno ? -1 : TAIL_DAMAGE;
    memcpy(h, p, have);
    put_le32(magic, MAGIC);
    if (memcmp(h, magic, have < 4 ? have : 4) != 0)
        return TAIL_DAMAGE;
    if (have < HEADER)
        return TAIL_TORN;
    uint32_t len = get_le32(h + 4);
    if (len > MAX_RECORD)
        return TAIL_DAMAGE;
    uint64_t end = from + HEADER + len;
    return end > *nonzero ? TAIL_TORN : end == *nonzero ? TAIL_RECORD : TAIL_DAMAGE;
}

/* Whether bytes [a, b) are one record by its header. */
static bool one_record(reader_t *r, uint64_t a, uint64_t b)
{
    const uint8_t *h = reader_at(r, a, HEADER);
    return h && get_le32(h) == MAGIC && a + HEADER + get_le32(h + 4) == b;
}

static int recover_segment(nw_journal_t *self, segment_t *seg, bool last, reader_t *r,
                           msgpack_unpacked *up, recovery_t *rv, char *errbuf, size_t errlen)
{
    char path[PATH_MAX], name[32];
    seg_path(self->dir, seg->num, path, sizeof path);
    snprintf(name, sizeof name, SEG_FMT, seg->num);
    int fd = open(path, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(errbuf, errlen, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    reader_reset(r, fd, (uint64_t) st.st_size);
    uint64_t off = 0, good_end = 0, garbage;
    int64_t since = wall_ms() - self->opt.dedup_window_ms;
    bool first = true;
    frame_t f;
    int rc;
    while ((rc = next_frame(r, name, &off, &f, &self->discarded, &garbage)) == FRAME_OK) {
        if (garbage != UINT64_MAX)
            nw_warn("journal: %s offset %" PRIu64 ": %" PRIu64 " bytes of garbage skipped",
                    name, garbage, f.off - garbage);
        if (f.off > good_end) {
            /* looking back may move the reader's window: read the payload again */
            if (skipped_add(rv, seg->num, good_end, f.off, one_record(r, good_end, f.off)) != 0)
                goto nomem;
            if (!(f.payload = reader_at(r, f.off + HEADER, f.len))) {
                snprintf(errbuf, errlen, "cannot read %s: %s", path,
                         strerror(errno ? errno : EIO));
                goto fail;
            }
        }
        record_t rec;
        if (!decode(up, f.payload, f.len, &rec)) {
            self->discarded++;
            nw_warn("journal: %s offset %" PRIu64 ": malformed record skipped", name, f.off);
            if (skipped_add(rv, seg->num, f.off, off, true) != 0)
                goto nomem;
        } else if (apply(self, seg, &rec, first, since, rv) != 0) {
            goto nomem;
        }
        first = false;
        good_end = off;
    }
    if (rc == FRAME_ERR) {
        snprintf(errbuf, errlen, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    int zeros = zero_tail(r, good_end);
    if (zeros < 0) {
        snprintf(errbuf, errlen, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    /* zeros after the last record are the tail written ahead of the data, not damage */
    seg->size = good_end;
    seg->alloc = r->size;
    uint64_t nonzero = r->size;
    int shape = zeros ? TAIL_TORN : last ? tail_shape(r, good_end, &nonzero) : TAIL_DAMAGE;
    if (shape < 0) {
        snprintf(errbuf, errlen, "cannot read %s: %s", path, strerror(errno));
        goto fail;
    }
    /* a segment written before commits existed ends its writes with a message: one
     * whole damaged record there may be a published one */
    if (shape == TAIL_RECORD && seg->records && rv->commit_seg != seg->num)
        shape = TAIL_DAMAGE;
    if (!zeros && shape != TAIL_DAMAGE) {
        /* a write the crash interrupted: cut it so appends follow the last good record */
        nw_warn("journal: %s: torn tail of %" PRIu64 " bytes at offset %" PRIu64 " truncated",
                name, r->size - good_end, good_end);
        if (ftruncate(fd, (off_t) good_end) != 0) {
            snprintf(errbuf, errlen, "cannot truncate %s: %s", path, strerror(errno));
            goto fail;
        }
        seg->alloc = good_end;
    } else if (!zeros) {
        /* kept as it is: it may be all that says a seq was taken (see recovery_t) */
        nw_warn("journal: %s offset %" PRIu64 ": %" PRIu64 " bytes of garbage at the end",
                name, good_end, nonzero - good_end);
        if (skipped_add(rv, seg->num, good_end, nonzero, one_record(r, good_end, nonzero)) != 0)
            goto nomem;
        if (last && nonzero < r->size && ftruncate(fd, (off_t) nonzero) != 0) {
            snprintf(errbuf, errlen, "cannot truncate %s: %s", path, strerror(errno));
            goto fail;
        }
        seg->size = seg->alloc = nonzero;
    }
    self->bytes += seg->size;
    self->records += seg->records;
    close(fd);
    return 0;
nomem:
    snprintf(errbuf, errlen, "out of memory reading %s", path);
fail:
    if (fd >= 0)
        close(fd);
    return -1;
}

static int new_epoch(char *epoch)
{
    uint8_t raw[16];
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t k = getrandom(raw + got, sizeof raw - got, 0);
        if (k < 0 && errno != EINTR)
            return -1;
        if (k > 0)
            got += (size_t) k;
    }
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(epoch + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

nw_journal_t *nw_journal_open(uv_loop_t *loop, const char *state_dir,
                              const nw_journal_options_t *options,
                              char *errbuf, size_t errlen)
{
    reader_t r = {.fd = -1};
    recovery_t rv = {0};
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    nw_journal_t *self = calloc(1, sizeof *self);
    if (!self)
        goto nomem;
    self->fd = -1;
    self->loop = loop;
    self->opt = *options;
    self->pruned_ms = wall_ms();
    msgpack_sbuffer_init(&self->job.head);
    msgpack_sbuffer_init(&self->job.seal);
    size_t dirlen = strlen(state_dir) + sizeof "/journal";
    if (!(self->dir = malloc(dirlen)) || !(self->seqs = map_new()) ||
        !(self->durable = map_new()) ||
        !(self->open = batch_new()) || !(self->flight = batch_new()) ||
        !(self->timer = malloc(sizeof *self->timer)))
        goto nomem;
    snprintf(self->dir, dirlen, "%s/journal", state_dir);
    uv_timer_init(loop, self->timer);
    self->timer->data = self;
    struct statfs fs;
    if (nw_fs_mkdir_p(self->dir) != 0 || list_segments(self) != 0 ||
        statfs(self->dir, &fs) != 0) {
        snprintf(errbuf, errlen, "cannot use %s: %s", self->dir, strerror(errno));
        goto fail;
    }
    /* in memory an fdatasync commits nothing, and the zeros would only take up room */
    self->zero_ahead = self->opt.sync && fs.f_type != TMPFS_MAGIC && fs.f_type != RAMFS_MAGIC;
    for (size_t i = 0; i < self->nsegs; i++) {
        segment_t *seg = &self->segs[i];
        bool contiguous = rv.prev && seg->num == rv.prev + 1;
        if (rv.prev && !contiguous && seg->num == rv.prev + 2)
            nw_warn("journal: segment " SEG_FMT " is missing: its messages cannot be "
                    "replayed", rv.prev + 1);
        else if (rv.prev && !contiguous)
            nw_warn("journal: segments " SEG_FMT " to " SEG_FMT " are missing: their "
                    "messages cannot be replayed", rv.prev + 1, seg->num - 1);
        rv.derivable = rv.complete && rv.npending == 0 && contiguous;
        if (recover_segment(self, seg, i + 1 == self->nsegs, &r, &up, &rv, errbuf, errlen) != 0)
            goto fail;
        if (!seg->cp && !rv.derivable && rv.complete) {
            rv.complete = false;
            snprintf(rv.why, sizeof rv.why, "the checkpoint of " SEG_FMT " is unreadable and "
                     "the segment before it is %s", seg->num, contiguous ? "damaged" : "gone");
        }
        rv.prev = seg->num;
    }

    bool had_epoch = self->epoch[0] != '\0';
    segment_t *last = self->nsegs ? &self->segs[self->nsegs - 1] : NULL;
    /* can the seqs be trusted to be above everything published? (see recovery_t) */
    char lost[200] = "";
    if (had_epoch && last->sealed)
        snprintf(lost, sizeof lost, "segment " SEG_FMT " is missing (" SEG_FMT " was sealed "
                 "to it)", last->num + 1, last->num);
    else if (had_epoch && !rv.complete)
        snprintf(lost, sizeof lost, "%s", rv.why);
    else if (had_epoch && rv.npending)
        snprintf(lost, sizeof lost, "bytes %" PRIu64 " to %" PRIu64 " of " SEG_FMT " are "
                 "damaged and nothing after them tells what they held", rv.pending[0].a,
                 rv.pending[0].b, rv.pending[0].seg);
    free(rv.pending);
    rv.pending = NULL;
    if (!had_epoch || lost[0]) {
        if (new_epoch(self->epoch) != 0) {
            snprintf(errbuf, errlen, "cannot make an epoch: %s", strerror(errno));
            goto fail;
        }
        if (self->nsegs == 0)
            nw_notice("journal: new journal in %s, epoch %s", self->dir, self->epoch);
        else if (!had_epoch)
            nw_warn("journal: no readable checkpoint in %zu segments of %s, new epoch %s",
                    self->nsegs, self->dir, self->epoch);
        else
            nw_warn("journal: cannot tell the last seqs published: %s; new epoch %s, seqs "
                    "go on above the highest still held", lost, self->epoch);
    }
    bool fresh = !had_epoch || lost[0];     /* a new epoch starts in a segment of its own */
    if (map_copy(self->durable, self->seqs) != 0)
        goto nomem;
    if (last && !fresh) {
        char path[PATH_MAX];
        seg_path(self->dir, last->num, path, sizeof path);
        if ((self->fd = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
            snprintf(errbuf, errlen, "cannot open %s: %s", path, strerror(errno));
            goto fail;
        }
    }
    /* the epoch only lasts if a checkpoint holds it: write one now if the current
     * segment would not start with one */
    if (!last || fresh || last->size == 0) {
        bool rotate = !last || fresh;
        job_t *job = &self->job;
        job->dir = self->dir;
        job->sync = self->opt.sync;
        job->create = rotate;
        job->num = !last ? 1 : rotate ? last->num + 1 : last->num;
        job->fd = self->fd;
        job->old_fd = -1;
        job->start_len = 0;
        job->alloc = rotate ? 0 : last->alloc;
        job->zero_ahead = self->zero_ahead;
        job->zero_limit = self->opt.segment_size;
        if (!(job->cp = map_new()) || map_copy(job->cp, self->durable) != 0 ||
            pack_checkpoint(&job->head, self->epoch, job->cp_ms = wall_ms(),
                            self->durable) != 0 ||
            pack_commit(&job->head, 0, NULL, self->epoch) != 0)
            goto nomem;
        run_job(job);
        if (job->err) {
            snprintf(errbuf, errlen, "cannot write " SEG_FMT " in %s: %s", job->num,
                     self->dir, strerror(job->err));
            goto fail;
        }
        if (rotate && push_segment(self, job->num) != 0) {
            close(job->fd);
            goto nomem;
        }
        if (rotate)
            self->fd = job->fd;
        last = &self->segs[self->nsegs - 1];
        last->size = job->end_len;
        last->alloc = job->alloc;
        last->cp_ms = job->cp_ms;
        zhashx_destroy(&last->cp);
        last->cp = job->cp;
        job->cp = NULL;
        job->head.size = 0;
        self->bytes += job->end_len;
    }
    nw_info("journal: %zu segments, %" PRIu64 " records, %zu topics, epoch %s%s",
            self->nsegs, self->records, zhashx_size(self->seqs), self->epoch,
            self->discarded ? " (some records discarded, see above)" : "");
    free(r.buf);
    msgpack_unpacked_destroy(&up);
    return self;
nomem:
    snprintf(errbuf, errlen, "out of memory");
fail:
    free(r.buf);
    free(rv.pending);
    msgpack_unpacked_destroy(&up);
    nw_journal_close(&self);
    return NULL;
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

void nw_journal_close(nw_journal_t **self_p)
{
    nw_journal_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    self->closing = true;
    /* normally nothing is in flight: the caller waited for its commits */
    while (self->writing || self->reloading)
        uv_run(self->loop, UV_RUN_ONCE);
    if (self->open && (self->open->data.size || self->open->nwaiters)) {
        self->write_start_ns = uv_hrtime();
        seal(self, true);
        run_job(&self->job);
        self->writing = true;
        finish(self);
    }
    /* a stopped journal leaves no zeros behind: they are made again after a restart */
    segment_t *cur = self->nsegs ? &self->segs[self->nsegs - 1] : NULL;
    if (self->fd >= 0 && cur && cur->alloc > cur->size &&
        ftruncate(self->fd, (off_t) cur->size) != 0)
        nw_warn("journal: cannot cut the zeros off segment " SEG_FMT ": %s", cur->num,
                strerror(errno));
    if (self->timer) {
        uv_timer_stop(self->timer);
        uv_close((uv_handle_t *) self->timer, free_handle);
    }
    if (self->fd >= 0)
        close(self->fd);
    for (size_t i = 0; i < self->nsegs; i++)
        segment_release(&self->segs[i]);
    free(self->segs);
    batch_destroy(&self->open);
    batch_destroy(&self->flight);
    msgpack_sbuffer_destroy(&self->job.head);
    msgpack_sbuffer_destroy(&self->job.seal);
    zhashx_destroy(&self->job.cp);
    zhashx_destroy(&self->seqs);
    zhashx_destroy(&self->durable);
    seen_clear(&self->seen);
    free(self->dir);
    free(self);
}

/* ---------------------------------------------------------------- appends and commits */

const char *nw_journal_epoch(const nw_journal_t *self)
{
    return self->epoch;
}

uint64_t nw_journal_last_seq(const nw_journal_t *self, const char *topic)
{
    return map_get(self->seqs, topic);
}

uint64_t nw_journal_durable_seq(const nw_journal_t *self, const char *topic)
{
    return map_get(self->durable, topic);
}

bool nw_journal_seen(const nw_journal_t *self, const char *id, int64_t since_ms)
{
    uint32_t key[5];
    int64_t t;
    seen_key(id, strlen(id), key);
    return seen_get(&self->seen, key, &t) && t >= since_ms;
}

int nw_journal_append(nw_journal_t *self, const char *topic, uint64_t seq,
                      const char *id, int64_t time_ms, const void *msg, size_t len)
{
    if (self->unwinding || self->closing) {
        errno = EIO;
        return -1;
    }
    if (!topic || !id || (!msg && len) || seq != map_get(self->seqs, topic) + 1) {
        errno = EINVAL;
        return -1;
    }
    batch_t *b = self->open;
    if (b->nundo == b->undo_cap) {
        size_t cap = b->undo_cap ? 2 * b->undo_cap : 64;
        undo_t *u = realloc(b->undo, cap * sizeof *u);
        if (!u)
            goto nomem;
        b->undo = u;
        b->undo_cap = cap;
    }
    undo_t *u = &b->undo[b->nundo];
    seen_key(id, strlen(id), u->key);
    size_t old = b->data.size, payload;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b->data, msgpack_sbuffer_write);
    if (frame_begin(&b->data, &payload) || msgpack_pack_array(&pk, 6) ||
        msgpack_pack_uint8(&pk, 1) || pack_str(&pk, topic) || msgpack_pack_uint64(&pk, seq) ||
        pack_str(&pk, id) || msgpack_pack_int64(&pk, time_ms) ||
        msgpack_pack_bin_with_body(&pk, msg, len)) {
        b->data.size = old;
        goto nomem;
    }
    if (frame_end(&b->data, payload) != 0) {
        b->data.size = old;
        errno = EMSGSIZE;
        return -1;
    }
    int64_t prev = 0;
    u->had = seen_get(&self->seen, u->key, &prev);
    u->prev = prev;
    /* seq - 1 is always a right value to go back to: it is where the topic stood */
    if (map_set(self->seqs, topic, seq) != 0 || map_set(b->seqs, topic, seq) != 0 ||
        seen_set(&self->seen, u->key, time_ms) != 0) {
        map_set(self->seqs, topic, seq - 1);
        if (zhashx_lookup(b->seqs, topic))
            map_set(b->seqs, topic, seq - 1);
        b->data.size = old;
        goto nomem;
    }
    b->nundo++;
    b->records++;
    if (time_ms > b->newest_ms)
        b->newest_ms = time_ms;
    return 0;
nomem:
    errno = ENOMEM;
    return -1;
}

int nw_journal_commit(nw_journal_t *self, nw_journal_commit_fn *fn, void *arg)
{
    /* nothing appended since the write in flight was sealed: that write covers it all */
    batch_t *o = self->open;
    batch_t *b = self->writing && o->data.size == 0 && o->nwaiters == 0 ? self->flight : o;
    if (b->nwaiters == b->waiters_cap) {
        size_t cap = b->waiters_cap ? 2 * b->waiters_cap : 16;
        waiter_t *w = realloc(b->waiters, cap * sizeof *w);
        if (!w) {
            errno = ENOMEM;
            return -1;
        }
        b->waiters = w;
        b->waiters_cap = cap;
    }
    b->waiters[b->nwaiters++] = (waiter_t) {fn, arg};
    if (b == o)
        maybe_start(self);
    return 0;
}

void nw_journal_stats(const nw_journal_t *self, nw_journal_stats_t *out)
{
    *out = (nw_journal_stats_t) {
        .segments = self->nsegs,
        .bytes = self->bytes,
        .records = self->records,
        .commits = self->commits,
        .fsyncs = self->fsyncs,
        .failures = self->failures,
        .discarded = self->discarded,
        .topics = zhashx_size(self->seqs),
        .writes = self->writes,
        .write_ns = self->write_ns,
    };
    memcpy(out->write_buckets, self->write_buckets, sizeof out->write_buckets);
}

/* ---------------------------------------------------------------- replay cursors */

/* A cursor holds at most one segment file open, the one it is reading, and only until
 * released: segments are opened by name as the cursor reaches them, so a retired one
 * shows as ENOENT (its records are gone) and never as another file (numbers only grow). */
struct nw_journal_cursor {
    char *topic;
    size_t topic_len;
    uint64_t from;
    char *dir;
    uint64_t *nums;         /* the segments to read, oldest first */
    uint64_t *ends;         /* how much of each was durable at opening */
    size_t n, i;
    int fd;                 /* segment i, or -1 */
    reader_t r;
    uint64_t off;           /* in segment i */
    msgpack_unpacked up;
};

/* The smallest seq still held for topic, given its last durable seq; 0 when none. */
static uint64_t oldest_held(const nw_journal_t *self, const char *topic, uint64_t last)
{
    if (self->nsegs == 0)
        return 0;
    uint64_t first = self->segs[0].cp ? map_get(self->segs[0].cp, topic) + 1 : 1;
    return first <= last ? first : 0;
}

uint64_t nw_journal_oldest_seq(const nw_journal_t *self, const char *topic)
{
    if (!zhashx_lookup(self->durable, topic))
        return 0;
    return oldest_held(self, topic, map_get(self->durable, topic));
}

nw_journal_cursor_t *nw_journal_cursor_new(nw_journal_t *self, const char *topic,
                                           uint64_t from_seq, uint64_t *oldest)
{
    *oldest = 0;
    uint64_t last = map_get(self->durable, topic);
    if (!zhashx_lookup(self->durable, topic) || self->nsegs == 0)
        return NULL;
    if (from_seq == 0)
        from_seq = 1;
    /* every record before a segment whose checkpoint has topic below from_seq has a
     * seq below it too: start at the last such segment */
    size_t start = 0;
    for (size_t i = self->nsegs; i-- > 0;)
        if (self->segs[i].cp && map_get(self->segs[i].cp, topic) < from_seq) {
            start = i;
            break;
        }
    *oldest = oldest_held(self, topic, last);

    nw_journal_cursor_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    msgpack_unpacked_init(&c->up);
    c->fd = -1;
    c->from = from_seq;
    c->topic_len = strlen(topic);
    c->n = self->nsegs - start;
    if (!(c->topic = strdup(topic)) || !(c->dir = strdup(self->dir)) ||
        !(c->nums = malloc(c->n * sizeof *c->nums)) ||
        !(c->ends = malloc(c->n * sizeof *c->ends))) {
        nw_journal_cursor_destroy(&c);
        return NULL;
    }
    for (size_t i = 0; i < c->n; i++) {
        c->nums[i] = self->segs[start + i].num;
        c->ends[i] = self->segs[start + i].size;
    }
    return c;
}

int nw_journal_cursor_next(nw_journal_cursor_t *self, uint64_t *seq,
                           const void **msg, size_t *len)
{
    /* scans whole segments from the start one: cost is the segment's size, not the
     * number of records wanted */
    while (self->i < self->n) {
        if (self->fd < 0) {
            char path[PATH_MAX];
            seg_path(self->dir, self->nums[self->i], path, sizeof path);
            if ((self->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
                return -1;   /* errno: ENOENT when retention retired it meanwhile */
            reader_reset(&self->r, self->fd, self->ends[self->i]);
        }
        frame_t f;
        uint64_t bad = 0, garbage;
        int rc = next_frame(&self->r, NULL, &self->off, &f, &bad, &garbage);
        if (rc == FRAME_ERR)
            return -1;
        if (rc == FRAME_END) {
            close(self->fd);
            self->fd = -1;
            self->i++;
            self->off = 0;
            continue;
        }
        record_t rec;
        if (!decode(&self->up, f.payload, f.len, &rec) || rec.type != 1 ||
            rec.topic_len != self->topic_len || memcmp(rec.topic, self->topic, rec.topic_len) ||
            rec.seq < self->from)
            continue;
        *seq = rec.seq;
        *msg = rec.msg;
        *len = rec.msg_len;
        return 1;
    }
    return 0;
}

void nw_journal_cursor_release(nw_journal_cursor_t *self, bool close_file)
{
    if (close_file && self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
    }
    free(self->r.buf);
    self->r.buf = NULL;
    self->r.cap = self->r.len = 0;
    self->r.base = 0;
    msgpack_unpacked_destroy(&self->up);
    msgpack_unpacked_init(&self->up);
}

bool nw_journal_cursor_holds_file(const nw_journal_cursor_t *self)
{
    return self->fd >= 0;
}

void nw_journal_cursor_destroy(nw_journal_cursor_t **self_p)
{
    nw_journal_cursor_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    if (self->fd >= 0)
        close(self->fd);
    msgpack_unpacked_destroy(&self->up);
    free(self->r.buf);
    free(self->nums);
    free(self->ends);
    free(self->dir);
    free(self->topic);
    free(self);
}
