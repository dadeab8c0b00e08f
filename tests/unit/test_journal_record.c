/*
 * test_journal_record: the journal's record format and id set on their own, without a
 * journal: each kind packed and decoded back, the header and its CRC, the shapes the
 * decoder refuses (every prefix of a record, wrong types, unknown kinds, counts the
 * bytes could not hold), the segment reader over a real file with damage in it, and
 * seen's undo log and pruning.
 */
#include "journal.h"
#include "journal_record.h"
#include "runner.h"
#include "seen.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *EPOCH = "0123456789abcdef0123456789abcdef";

static void free_seq(void **p)
{
    free(*p);
    *p = NULL;
}

static zhashx_t *seqs_new(void)
{
    zhashx_t *h = zhashx_new();
    zhashx_set_destructor(h, free_seq);
    return h;
}

static void seqs_put(zhashx_t *h, const char *topic, uint64_t v)
{
    uint64_t *p = malloc(sizeof *p);
    *p = v;
    zhashx_insert(h, topic, p);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

/* The one record in sb, header checked, decoded into r (pointing into up). */
static bool unframe(const msgpack_sbuffer *sb, msgpack_unpacked *up, nw_jrec_t *r)
{
    const uint8_t *h = (const uint8_t *) sb->data;
    uint32_t len = 0;
    return sb->size > NW_JREC_HEADER && memcmp(h, "NWJ1", 4) == 0 &&
           nw_jrec_header(h, NW_JREC_HEADER, &len) && len == sb->size - NW_JREC_HEADER &&
           le32(h + 8) == nw_journal_crc32c(0, h + NW_JREC_HEADER, len) &&
           nw_jrec_decode(up, h + NW_JREC_HEADER, len, r);
}

static uint64_t seq_of(const msgpack_object_map *m, const char *topic)
{
    for (size_t i = 0; i < m->size; i++)
        if (m->ptr[i].key.via.str.size == strlen(topic) &&
            memcmp(m->ptr[i].key.via.str.ptr, topic, strlen(topic)) == 0)
            return m->ptr[i].val.via.u64;
    return 0;
}

TEST_IMPL(kinds)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    nw_jrec_t r;
    zhashx_t *seqs = seqs_new();
    seqs_put(seqs, "telecoms", 41);
    seqs_put(seqs, "a", 1);

    CHECK(nw_jrec_pack_checkpoint(&sb, EPOCH, -5, seqs) == 0);
    CHECK(unframe(&sb, &up, &r));
    CHECK(r.type == NW_JREC_CHECKPOINT && r.time_ms == -5 && memcmp(r.epoch, EPOCH, 32) == 0);
    CHECK(r.seqs && r.seqs->size == 2 && seq_of(r.seqs, "telecoms") == 41 &&
          seq_of(r.seqs, "a") == 1);

    sb.size = 0;
    static const char body[] = "bytes\0with a NUL";
    CHECK(nw_jrec_pack_message(&sb, "telecoms", 42, "5eed", 1764633600000, body, sizeof body) ==
          0);
    CHECK(unframe(&sb, &up, &r));
    CHECK(r.type == NW_JREC_MESSAGE && r.seq == 42 && r.time_ms == 1764633600000);
    CHECK(r.topic_len == 8 && memcmp(r.topic, "telecoms", 8) == 0);
    CHECK(r.id_len == 4 && memcmp(r.id, "5eed", 4) == 0);
    CHECK(r.msg_len == sizeof body && memcmp(r.msg, body, sizeof body) == 0);

    sb.size = 0;
    CHECK(nw_jrec_pack_commit(&sb, 1234, seqs, EPOCH) == 0);
    CHECK(unframe(&sb, &up, &r));
    CHECK(r.type == NW_JREC_COMMIT && r.start == 1234 && r.seqs->size == 2 &&
          memcmp(r.epoch, EPOCH, 32) == 0);
    /* a commit never ends in a zero byte (recovery tells a torn write by that) */
    CHECK(sb.data[sb.size - 1] != 0);
    sb.size = 0;
    CHECK(nw_jrec_pack_commit(&sb, 0, NULL, EPOCH) == 0);
    CHECK(unframe(&sb, &up, &r));
    CHECK(r.type == NW_JREC_COMMIT && r.start == 0 && r.seqs->size == 0);

    sb.size = 0;
    CHECK(nw_jrec_pack_seal(&sb, 7, EPOCH) == 0);
    CHECK(unframe(&sb, &up, &r));
    CHECK(r.type == NW_JREC_SEAL && r.next == 7 && memcmp(r.epoch, EPOCH, 32) == 0);

    /* appending goes after what is there; too large a message leaves sb as it was */
    size_t before = sb.size;
    char *big = calloc(1, NW_JREC_MAX);
    errno = 0;
    CHECK(big && nw_jrec_pack_message(&sb, "a", 1, "x", 0, big, NW_JREC_MAX) == -1 &&
          errno == EMSGSIZE && sb.size == before);
    free(big);

    zhashx_destroy(&seqs);
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&up);
}

/* A payload packed by hand: the caller fills pk. */
static msgpack_sbuffer hand;
static msgpack_packer pk;
static void hand_begin(void)
{
    hand.size = 0;
    msgpack_packer_init(&pk, &hand, msgpack_sbuffer_write);
}

static bool hand_decodes(void)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    nw_jrec_t r;
    bool ok = nw_jrec_decode(&up, (const uint8_t *) hand.data, hand.size, &r);
    msgpack_unpacked_destroy(&up);
    return ok;
}

static void pack_s(const char *s, size_t n)
{
    msgpack_pack_str_with_body(&pk, s, n);
}

/* [1, topic, seq, id, time, bin] with one part replaced as `bad` says. */
static bool message_decodes(int bad)
{
    hand_begin();
    msgpack_pack_array(&pk, bad == 1 ? 5 : 6);
    msgpack_pack_uint8(&pk, NW_JREC_MESSAGE);
    pack_s(bad == 2 ? "a\0b" : "a", bad == 2 ? 3 : 1);
    msgpack_pack_uint64(&pk, bad == 3 ? 0 : 1);
    if (bad == 4)
        msgpack_pack_uint64(&pk, 9);
    else
        pack_s("id", 2);
    if (bad == 5)
        msgpack_pack_double(&pk, 1.5);
    else
        msgpack_pack_int64(&pk, 0);
    if (bad == 6)
        pack_s("m", 1);
    else if (bad != 1)
        msgpack_pack_bin_with_body(&pk, "m", 1);
    return hand_decodes();
}

TEST_IMPL(refusals)
{
    msgpack_sbuffer_init(&hand);
    CHECK(message_decodes(0));
    for (int bad = 1; bad <= 6; bad++) {
        CHECK(!message_decodes(bad));
        if (message_decodes(bad))
            fprintf(stderr, "  message variant %d decoded\n", bad);
    }

    /* a kind not defined */
    hand_begin();
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, NW_JREC_KINDS);
    msgpack_pack_uint64(&pk, 1);
    pack_s(EPOCH, 32);
    CHECK(!hand_decodes());
    /* the same shape as a seal is one */
    hand.data[1] = NW_JREC_SEAL;
    CHECK(hand_decodes());
    /* an epoch must be 32 lowercase hex digits */
    hand_begin();
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, NW_JREC_SEAL);
    msgpack_pack_uint64(&pk, 1);
    pack_s("0123456789ABCDEF0123456789abcdef", 32);
    CHECK(!hand_decodes());
    /* trailing bytes after the record */
    hand_begin();
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, NW_JREC_SEAL);
    msgpack_pack_uint64(&pk, 1);
    pack_s(EPOCH, 32);
    msgpack_pack_nil(&pk);
    CHECK(!hand_decodes());
    /* a seqs map whose value is not a seq */
    hand_begin();
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint8(&pk, NW_JREC_COMMIT);
    msgpack_pack_uint64(&pk, 0);
    msgpack_pack_map(&pk, 1);
    pack_s("a", 1);
    msgpack_pack_int64(&pk, -1);
    pack_s(EPOCH, 32);
    CHECK(!hand_decodes());

    /* counts the bytes could not hold are refused before msgpack-c allocates for them */
    static const uint8_t huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01};
    static const uint8_t huge_map[] = {0x94, 0x00, 0xa0, 0x00, 0xdf, 0x7f, 0xff, 0xff, 0xff};
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    nw_jrec_t r;
    CHECK(!nw_jrec_decode(&up, huge_array, sizeof huge_array, &r));
    CHECK(!nw_jrec_decode(&up, huge_map, sizeof huge_map, &r));
    CHECK(!nw_jrec_decode(&up, huge_map, 0, &r));

    /* no prefix of a record is one */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    CHECK(nw_jrec_pack_message(&sb, "telecoms", 3, "abc", 12, "message", 7) == 0);
    const uint8_t *p = (const uint8_t *) sb.data + NW_JREC_HEADER;
    size_t len = sb.size - NW_JREC_HEADER, prefixes = 0;
    CHECK(nw_jrec_decode(&up, p, len, &r));
    for (size_t n = 0; n < len; n++)
        prefixes += nw_jrec_decode(&up, p, n, &r);
    CHECK(prefixes == 0);
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&hand);

    /* a header is recognised by its magic as far as the bytes reach */
    uint32_t hl = 0;
    CHECK(nw_jrec_header((const uint8_t *) "NW", 2, &hl));
    CHECK(!nw_jrec_header((const uint8_t *) "NX", 2, &hl));
    CHECK(nw_jrec_header((const uint8_t *) "NWJ1\x05\x00\x00\x00\x00\x00\x00\x00", 12, &hl) &&
          hl == 5);
}

/* A segment with damage in it, read through the reader as recovery and cursors do. */
TEST_IMPL(reader)
{
    char path[] = "/tmp/test_journal_record-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    size_t off[6];
    off[0] = sb.size;
    nw_jrec_pack_message(&sb, "a", 1, "first", 1, "one", 3);
    off[1] = sb.size;
    nw_jrec_pack_message(&sb, "a", 2, "second", 2, "two", 3);
    sb.data[sb.size - 1] ^= 1; /* its CRC fails; a record follows it */
    off[2] = sb.size;
    nw_jrec_pack_seal(&sb, 2, EPOCH);
    size_t junk = sb.size;
    msgpack_sbuffer_write(&sb, "junk!", 5);
    off[3] = sb.size;
    nw_jrec_pack_commit(&sb, 0, NULL, EPOCH);
    off[4] = sb.size;
    nw_jrec_pack_commit(&sb, 0, NULL, EPOCH);
    sb.size -= 3; /* torn */
    off[5] = sb.size;
    CHECK(write(fd, sb.data, sb.size) == (ssize_t) sb.size);

    nw_jrec_reader_t r = {.fd = -1};
    nw_jrec_reader_reset(&r, fd, sb.size);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    uint64_t at = 0, bad = 0, skipped;
    nw_jrec_frame_t f;
    nw_jrec_t rec;
    CHECK(nw_jrec_next_frame(&r, NULL, &at, &f, &bad, &skipped) == NW_JREC_FRAME_OK);
    CHECK(f.off == off[0] && at == off[1] && skipped == UINT64_MAX && bad == 0);
    CHECK(nw_jrec_decode(&up, f.payload, f.len, &rec) && rec.seq == 1);
    /* the damaged record is skipped whole: it is counted, not taken for garbage */
    CHECK(nw_jrec_next_frame(&r, NULL, &at, &f, &bad, &skipped) == NW_JREC_FRAME_OK);
    CHECK(f.off == off[2] && at == junk && bad == 1 && skipped == UINT64_MAX);
    CHECK(nw_jrec_decode(&up, f.payload, f.len, &rec) && rec.type == NW_JREC_SEAL);
    /* garbage is stepped over byte by byte to the next record, and where it began said */
    CHECK(nw_jrec_next_frame(&r, NULL, &at, &f, &bad, &skipped) == NW_JREC_FRAME_OK);
    CHECK(f.off == off[3] && at == off[4] && bad == 1 && skipped == junk);
    CHECK(nw_jrec_decode(&up, f.payload, f.len, &rec) && rec.type == NW_JREC_COMMIT);
    /* a record running past the end is no record */
    CHECK(nw_jrec_next_frame(&r, NULL, &at, &f, &bad, &skipped) == NW_JREC_FRAME_END);
    CHECK(skipped == off[4] && bad == 1 && at == off[5] - NW_JREC_HEADER + 1);

    /* a window smaller than the file: only what it covers is read */
    nw_jrec_reader_reset(&r, fd, off[1]);
    at = 0;
    CHECK(nw_jrec_next_frame(&r, NULL, &at, &f, &bad, &skipped) == NW_JREC_FRAME_OK);
    CHECK(nw_jrec_next_frame(&r, NULL, &at, &f, &bad, &skipped) == NW_JREC_FRAME_END);
    errno = 0;
    CHECK(!nw_jrec_reader_at(&r, off[1] - 1, 2) && errno == 0);

    char name[64];
    nw_jrec_segment_path("/s/journal", 12, name, sizeof name);
    CHECK_STR(name, "/s/journal/000000000012.nwj");

    msgpack_unpacked_destroy(&up);
    free(r.buf);
    msgpack_sbuffer_destroy(&sb);
    close(fd);
    unlink(path);
}

TEST_IMPL(seen_undo)
{
    nw_seen_t s = {0};
    nw_seen_undo_t u = {0};
    uint32_t a[5], b[5], c[5];
    int64_t t = 0;
    nw_seen_key("da39a3ee5e6b4b0d3255bfef95601890afd80709", 40, a);
    nw_seen_key("not hex: keyed by its digest", 28, b);
    nw_seen_key("not hex: keyed by its digest!", 29, c);
    CHECK(memcmp(a, "\xda\x39\xa3\xee", 4) == 0); /* hex ids are their own bytes */
    CHECK(memcmp(b, c, sizeof b) != 0);

    CHECK(nw_seen_set(&s, b, 5) == 0);
    CHECK(nw_seen_undo_reserve(&u) == 0 && nw_seen_set_undoable(&s, &u, a, 10) == 0);
    CHECK(nw_seen_undo_reserve(&u) == 0 && nw_seen_set_undoable(&s, &u, b, 20) == 0);
    CHECK(nw_seen_undo_reserve(&u) == 0 && nw_seen_set_undoable(&s, &u, a, 30) == 0);
    CHECK(nw_seen_get(&s, a, &t) && t == 30 && nw_seen_get(&s, b, &t) && t == 20);
    nw_seen_undo(&s, &u);
    CHECK(!nw_seen_get(&s, a, &t));          /* new in the batch: gone again */
    CHECK(nw_seen_get(&s, b, &t) && t == 5); /* held before: its old time */
    CHECK(u.n == 0);
    CHECK(nw_seen_undo_reserve(&u) == 0 && nw_seen_set_undoable(&s, &u, c, 7) == 0);
    nw_seen_undo_forget(&u);
    nw_seen_undo(&s, &u);
    CHECK(nw_seen_get(&s, c, &t) && t == 7); /* forgotten: kept */

    /* enough to grow the table several times, then pruned back */
    int held = 0;
    for (int i = 0; i < 20000; i++) {
        char id[41];
        uint32_t k[5];
        snprintf(id, sizeof id, "%08x%032x", (unsigned) i * 2654435761u, (unsigned) i);
        nw_seen_key(id, 40, k);
        CHECK(nw_seen_set(&s, k, 1000 + i) == 0);
    }
    size_t grown = s.cap;
    nw_seen_prune(&s, 1000 + 19990);
    for (int i = 0; i < 20000; i++) {
        char id[41];
        uint32_t k[5];
        snprintf(id, sizeof id, "%08x%032x", (unsigned) i * 2654435761u, (unsigned) i);
        nw_seen_key(id, 40, k);
        held += nw_seen_get(&s, k, &t);
    }
    CHECK(held == 10);
    CHECK(s.cap < grown && s.count == 10);
    CHECK(!nw_seen_get(&s, b, &t) && !nw_seen_get(&s, c, &t)); /* older than the horizon */
    nw_seen_undo_free(&u);
    nw_seen_clear(&s);
    CHECK(s.cap == 0 && s.count == 0);
}
