/*
 * journal_record: framing, CRC-32C, each record kind packed and decoded, and the
 * segment reader (see journal_record.h). Bytes enter as what a record says (packed by
 * the writer on the loop thread) or as a segment file read through a nw_jrec_reader_t
 * (recovery, replay cursors and the dedup read-back, on whichever thread runs them);
 * they leave as framed records appended to a buffer, or as nw_jrec_t views into the
 * reader's window. Segment bytes are untrusted here: lengths are checked against what is
 * left, MessagePack counts against the bytes that could hold them, before msgpack-c
 * allocates anything (fuzz_journal calls these directly).
 */
#include "journal_record.h"
#include "journal.h"
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- CRC-32C */

/* Every record is checksummed on the loop thread when appended, so the byte-at-a-time
 * loop showed up in burst profiles. x86-64 has CRC-32C itself (SSE4.2's crc32, eight
 * bytes an instruction); elsewhere slicing-by-8 does eight bytes per step. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(NW_JOURNAL_PORTABLE_CRC) /* test_journal_portable tests the tables */
#include <cpuid.h>
#include <nmmintrin.h>
#define CRC_HW 1
static bool crc_hw;

static uint32_t crc_sse42(uint32_t crc, const uint8_t *p, size_t len)
    __attribute__((target("sse4.2")));
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
    crc_hw = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx >> 20 & 1); /* SSE4.2 */
#endif
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^
                              crc_table[0][crc_table[t - 1][i] & 0xff];
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
              crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
              crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---------------------------------------------------------------- framing */

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t) (v >> (8 * i));
}

bool nw_jrec_header(const uint8_t *h, size_t have, uint32_t *len)
{
    uint8_t magic[4];
    put_le32(magic, NW_JREC_MAGIC);
    if (memcmp(h, magic, have < 4 ? have : 4) != 0)
        return false;
    if (have >= NW_JREC_HEADER)
        *len = get_le32(h + 4);
    return true;
}

void nw_jrec_segment_path(const char *dir, uint64_t num, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/" NW_JSEG_FMT, dir, num);
}

/* ---------------------------------------------------------------- record kinds */

static int pack_str(msgpack_packer *pk, const char *s)
{
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

int nw_jrec_frame_begin(msgpack_sbuffer *sb, size_t *payload)
{
    static const char zero[NW_JREC_HEADER];
    if (msgpack_sbuffer_write(sb, zero, NW_JREC_HEADER) != 0)
        return -1;
    *payload = sb->size;
    return 0;
}

int nw_jrec_frame_end(msgpack_sbuffer *sb, size_t payload)
{
    size_t len = sb->size - payload;
    if (len > NW_JREC_MAX)
        return -1;
    uint8_t *h = (uint8_t *) sb->data + payload - NW_JREC_HEADER;
    put_le32(h, NW_JREC_MAGIC);
    put_le32(h + 4, (uint32_t) len);
    put_le32(h + 8, nw_journal_crc32c(0, sb->data + payload, len));
    return 0;
}

/* A checkpoint of where every topic's seq stands as its segment begins. */
int nw_jrec_pack_checkpoint(msgpack_sbuffer *sb, const char *epoch, int64_t time_ms,
                            zhashx_t *seqs)
{
    size_t old = sb->size, payload;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int rc = nw_jrec_frame_begin(sb, &payload) || msgpack_pack_array(&pk, 4) ||
             msgpack_pack_uint8(&pk, NW_JREC_CHECKPOINT) || pack_str(&pk, epoch) ||
             msgpack_pack_int64(&pk, time_ms) || msgpack_pack_map(&pk, zhashx_size(seqs));
    for (uint64_t *v = zhashx_first(seqs); v && !rc; v = zhashx_next(seqs))
        rc = pack_str(&pk, zhashx_cursor(seqs)) || msgpack_pack_uint64(&pk, *v);
    if (rc || nw_jrec_frame_end(sb, payload) != 0) {
        sb->size = old;
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

/* Every append packs one (on the loop thread, so the CRC's speed matters). */
int nw_jrec_pack_message(msgpack_sbuffer *sb, const char *topic, uint64_t seq, const char *id,
                         int64_t time_ms, const void *msg, size_t len)
{
    size_t old = sb->size, payload;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (nw_jrec_frame_begin(sb, &payload) || msgpack_pack_array(&pk, 6) ||
        msgpack_pack_uint8(&pk, NW_JREC_MESSAGE) || pack_str(&pk, topic) ||
        msgpack_pack_uint64(&pk, seq) || pack_str(&pk, id) || msgpack_pack_int64(&pk, time_ms) ||
        msgpack_pack_bin_with_body(&pk, msg, len)) {
        sb->size = old;
        errno = ENOMEM;
        return -1;
    }
    if (nw_jrec_frame_end(sb, payload) != 0) {
        sb->size = old;
        errno = EMSGSIZE;
        return -1;
    }
    return 0;
}

/* The last record of every group write: the seqs it leaves its topics at and where it
 * began, so that recovery knows what a damaged record inside it can have held. It ends
 * with the epoch, so its last byte is never zero: a record of ours that ends in zeros
 * was cut short, not damaged (see tail_shape in journal_recover.c). */
int nw_jrec_pack_commit(msgpack_sbuffer *sb, uint64_t start, zhashx_t *seqs /* or NULL */,
                        const char *epoch)
{
    size_t old = sb->size, payload;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    int rc = nw_jrec_frame_begin(sb, &payload) || msgpack_pack_array(&pk, 4) ||
             msgpack_pack_uint8(&pk, NW_JREC_COMMIT) || msgpack_pack_uint64(&pk, start) ||
             msgpack_pack_map(&pk, seqs ? zhashx_size(seqs) : 0);
    for (uint64_t *v = seqs ? zhashx_first(seqs) : NULL; v && !rc; v = zhashx_next(seqs))
        rc = pack_str(&pk, zhashx_cursor(seqs)) || msgpack_pack_uint64(&pk, *v);
    if (rc || pack_str(&pk, epoch) || nw_jrec_frame_end(sb, payload) != 0) {
        sb->size = old;
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

/* Written at the end of a segment once the next one is durable, before anything in
 * the next one is published: a journal whose newest segment is sealed lost a segment. */
int nw_jrec_pack_seal(msgpack_sbuffer *sb, uint64_t next, const char *epoch)
{
    size_t old = sb->size, payload;
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (nw_jrec_frame_begin(sb, &payload) || msgpack_pack_array(&pk, 3) ||
        msgpack_pack_uint8(&pk, NW_JREC_SEAL) || msgpack_pack_uint64(&pk, next) ||
        pack_str(&pk, epoch) || nw_jrec_frame_end(sb, payload) != 0) {
        sb->size = old;
        errno = ENOMEM;
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
        int lenbytes = 0, kind = 0; /* kind: 0 fixed, 1 bytes, 2 ext, 3 array, 4 map */
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
            ;
        else if ((b & 0xf0) == 0x80)
            pending += 2u * (b & 0x0f);
        else if ((b & 0xf0) == 0x90)
            pending += b & 0x0f;
        else if ((b & 0xe0) == 0xa0)
            skip = b & 0x1f;
        /* a table of MessagePack's type bytes, one row a kind */
        /* clang-format off */
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
        /* clang-format on */
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

bool nw_jrec_decode(msgpack_unpacked *up, const uint8_t *p, size_t len, nw_jrec_t *r)
{
    size_t off = 0;
    if (!msgpack_plausible(p, len) ||
        msgpack_unpack_next(up, (const char *) p, len, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != len || up->data.type != MSGPACK_OBJECT_ARRAY || up->data.via.array.size < 1)
        return false;
    const msgpack_object *a = up->data.via.array.ptr;
    size_t n = up->data.via.array.size;
    if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 >= NW_JREC_KINDS)
        return false;
    memset(r, 0, sizeof *r);
    r->type = (int) a[0].via.u64;
    switch (r->type) {
    case NW_JREC_CHECKPOINT:
        return n == 4 && is_epoch(&a[1], &r->epoch) && get_time(&a[2], &r->time_ms) &&
               is_seqs(&a[3], &r->seqs);
    case NW_JREC_MESSAGE:
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
    case NW_JREC_COMMIT:
        if (n != 4 || a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return false;
        r->start = a[1].via.u64;
        return is_seqs(&a[2], &r->seqs) && is_epoch(&a[3], &r->epoch);
    case NW_JREC_SEAL:
        if (n != 3 || a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return false;
        r->next = a[1].via.u64;
        return is_epoch(&a[2], &r->epoch);
    }
    return false;
}

/* ---------------------------------------------------------------- the segment reader */

void nw_jrec_reader_reset(nw_jrec_reader_t *r, int fd, uint64_t size)
{
    r->fd = fd;
    r->size = size;
    r->base = 0;
    r->len = 0;
}

const uint8_t *nw_jrec_reader_at(nw_jrec_reader_t *r, uint64_t off, size_t n)
{
    if (off > r->size || n > r->size - off) {
        errno = 0;
        return NULL;
    }
    if (off >= r->base && off + n <= r->base + r->len)
        return r->buf + (off - r->base);
    size_t want = n > NW_JREC_READ_CHUNK ? n : NW_JREC_READ_CHUNK;
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
        errno = 0; /* the file shrank under us: treat as its end */
        return NULL;
    }
    return r->buf;
}

int nw_jrec_next_frame(nw_jrec_reader_t *r, const char *name, uint64_t *off, nw_jrec_frame_t *f,
                       uint64_t *bad, uint64_t *garbage)
{
    *garbage = UINT64_MAX;
    for (;;) {
        const uint8_t *h = nw_jrec_reader_at(r, *off, NW_JREC_HEADER);
        if (!h)
            return errno ? NW_JREC_FRAME_ERR : NW_JREC_FRAME_END;
        uint32_t len = get_le32(h + 4), crc = get_le32(h + 8);
        const uint8_t *p = NULL;
        if (get_le32(h) == NW_JREC_MAGIC && len <= NW_JREC_MAX &&
            !(p = nw_jrec_reader_at(r, *off + NW_JREC_HEADER, len)) && errno)
            return NW_JREC_FRAME_ERR;
        if (!p) { /* no magic, absurd length, or runs past the end */
            if (*garbage == UINT64_MAX)
                *garbage = *off;
            (*off)++;
            continue;
        }
        if (nw_journal_crc32c(0, p, len) != crc) {
            (*bad)++;
            if (name)
                nw_warn("journal: %s offset %" PRIu64 ": record of %" PRIu32
                        " bytes fails its CRC, skipped",
                        name, *off, len);
            /* skip it whole if a record (or the end) follows, else hunt for the next */
            uint64_t end = *off + NW_JREC_HEADER + len;
            const uint8_t *next = nw_jrec_reader_at(r, end, 4);
            if (!next && errno)
                return NW_JREC_FRAME_ERR;
            *off = end == r->size || (next && get_le32(next) == NW_JREC_MAGIC) ? end : *off + 1;
            continue;
        }
        f->off = *off;
        f->len = len;
        f->payload = p;
        *off += NW_JREC_HEADER + len;
        return NW_JREC_FRAME_OK;
    }
}
