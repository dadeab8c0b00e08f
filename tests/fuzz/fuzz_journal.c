/*
 * fuzz_journal: the journal's readers of untrusted bytes (journal_record.c), called
 * directly, then recovery over them. Each input is taken three ways:
 *   1. as one record's payload: nw_jrec_decode(); a record it accepts is packed again
 *      with its kind's nw_jrec_pack_*() and must frame and decode to the same record;
 *   2. as a segment file: nw_jrec_next_frame() over it, each frame decoded (and packed
 *      again) as in 1;
 *   3. as segment 000000000001.nwj of a journal, which is opened (recovered), read back
 *      with a cursor, appended to and reopened: nothing may crash, and the second open
 *      must agree with the first on the epoch and on the seq just appended. First byte
 *      odd: the rest is chunks [u16 length LE][payload], each framed by
 *      nw_jrec_frame_begin/end, so that recovery meets payloads a CRC would otherwise
 *      have kept from it. Even: the bytes are the segment as they are.
 * Seeds: tests/fuzz/seeds/journal/, segments and records the journal itself wrote
 * (made by tests/fuzz/make_journal_seeds.c, which also checks them: test
 * unit.journal_seeds).
 */
#include "journal.h"
#include "journal_record.h"
#include "log.h"

#include <czmq.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char state[64], segment[128];
static uv_loop_t loop;

#define REQUIRE(c) \
    do { \
        if (!(c)) { \
            fprintf(stderr, "fuzz_journal: %s\n", #c); \
            abort(); \
        } \
    } while (0)

static void free_seq(void **p)
{
    free(*p);
    *p = NULL;
}

/* topic -> seq as recovery reads a seqs map: the highest of a name's duplicates. */
static zhashx_t *seqs_of(const msgpack_object_map *m)
{
    zhashx_t *h = zhashx_new();
    REQUIRE(h);
    zhashx_set_destructor(h, free_seq);
    for (size_t i = 0; i < m->size; i++) {
        char *k = strndup(m->ptr[i].key.via.str.ptr, m->ptr[i].key.via.str.size);
        REQUIRE(k);
        uint64_t *v = zhashx_lookup(h, k);
        if (!v) {
            REQUIRE(v = calloc(1, sizeof *v));
            zhashx_insert(h, k, v);
        }
        if (m->ptr[i].val.via.u64 > *v)
            *v = m->ptr[i].val.via.u64;
        free(k);
    }
    return h;
}

static bool same_seqs(const msgpack_object_map *m, zhashx_t *want)
{
    if (m->size != zhashx_size(want))
        return false;
    for (size_t i = 0; i < m->size; i++) {
        char *k = strndup(m->ptr[i].key.via.str.ptr, m->ptr[i].key.via.str.size);
        REQUIRE(k);
        const uint64_t *v = zhashx_lookup(want, k);
        free(k);
        if (!v || *v != m->ptr[i].val.via.u64)
            return false;
    }
    return true;
}

/* What r says, packed by the writer's own code, reads back as r. */
static void round_trip(const nw_jrec_t *r)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char epoch[33] = "", *topic = NULL, *id = NULL;
    zhashx_t *seqs = r->seqs ? seqs_of(r->seqs) : NULL;
    if (r->epoch)
        memcpy(epoch, r->epoch, 32);
    int rc = -1;
    switch (r->type) {
    case NW_JREC_CHECKPOINT: rc = nw_jrec_pack_checkpoint(&sb, epoch, r->time_ms, seqs); break;
    case NW_JREC_MESSAGE:
        REQUIRE((topic = strndup(r->topic, r->topic_len)) && (id = strndup(r->id, r->id_len)));
        rc = nw_jrec_pack_message(&sb, topic, r->seq, id, r->time_ms, r->msg, r->msg_len);
        break;
    case NW_JREC_COMMIT: rc = nw_jrec_pack_commit(&sb, r->start, seqs, epoch); break;
    case NW_JREC_SEAL: rc = nw_jrec_pack_seal(&sb, r->next, epoch); break;
    }
    REQUIRE(rc == 0);
    const uint8_t *h = (const uint8_t *) sb.data, *p = h + NW_JREC_HEADER;
    uint32_t len = 0;
    REQUIRE(sb.size >= NW_JREC_HEADER && nw_jrec_header(h, NW_JREC_HEADER, &len) &&
            len == sb.size - NW_JREC_HEADER);
    uint32_t crc = (uint32_t) h[8] | (uint32_t) h[9] << 8 | (uint32_t) h[10] << 16 |
                   (uint32_t) h[11] << 24;
    REQUIRE(crc == nw_journal_crc32c(0, p, len));
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    nw_jrec_t b;
    REQUIRE(nw_jrec_decode(&up, p, len, &b));
    REQUIRE(b.type == r->type && b.time_ms == r->time_ms && b.seq == r->seq &&
            b.start == r->start && b.next == r->next && !b.epoch == !r->epoch &&
            (!b.epoch || memcmp(b.epoch, r->epoch, 32) == 0) && !b.seqs == !r->seqs &&
            (!b.seqs || same_seqs(b.seqs, seqs)));
    REQUIRE(b.topic_len == r->topic_len && b.id_len == r->id_len && b.msg_len == r->msg_len &&
            (!r->topic_len || memcmp(b.topic, r->topic, r->topic_len) == 0) &&
            (!r->id_len || memcmp(b.id, r->id, r->id_len) == 0) &&
            (!r->msg_len || memcmp(b.msg, r->msg, r->msg_len) == 0));
    msgpack_unpacked_destroy(&up);
    zhashx_destroy(&seqs);
    free(topic);
    free(id);
    msgpack_sbuffer_destroy(&sb);
}

static void write_segment(const uint8_t *data, size_t size)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (size && (data[0] & 1)) {
        for (size_t off = 1; off + 2 <= size;) {
            size_t len = (size_t) data[off] | (size_t) data[off + 1] << 8, payload;
            off += 2;
            if (len > size - off)
                len = size - off;
            REQUIRE(nw_jrec_frame_begin(&sb, &payload) == 0 &&
                    msgpack_sbuffer_write(&sb, (const char *) data + off, len) == 0 &&
                    nw_jrec_frame_end(&sb, payload) == 0);
            off += len;
        }
        data = (const uint8_t *) sb.data;
        size = sb.size;
    }
    int fd = open(segment, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(size == 0 || write(fd, data, size) == (ssize_t) size);
    close(fd);
    msgpack_sbuffer_destroy(&sb);
}

/* Way 2: the segment reader over the bytes as they are. */
static void read_frames(const uint8_t *data, size_t size)
{
    int fd = open(segment, O_RDWR | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(size == 0 || write(fd, data, size) == (ssize_t) size);
    nw_jrec_reader_t r = {.fd = -1};
    nw_jrec_reader_reset(&r, fd, size);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    uint64_t off = 0, bad = 0, garbage, last = 0;
    nw_jrec_frame_t f;
    int rc;
    while ((rc = nw_jrec_next_frame(&r, NULL, &off, &f, &bad, &garbage)) == NW_JREC_FRAME_OK) {
        REQUIRE(f.off >= last && off == f.off + NW_JREC_HEADER + f.len && off <= size &&
                memcmp(f.payload, data + f.off + NW_JREC_HEADER, f.len) == 0);
        last = off;
        nw_jrec_t rec;
        if (nw_jrec_decode(&up, f.payload, f.len, &rec))
            round_trip(&rec);
    }
    REQUIRE(rc == NW_JREC_FRAME_END);
    msgpack_unpacked_destroy(&up);
    free(r.buf);
    close(fd);
}

static void clear_journal(void)
{
    char path[160];
    for (int i = 1; i <= 3; i++) {
        snprintf(path, sizeof path, "%s/journal/%012d.nwj", state, i);
        unlink(path);
    }
}

static void remove_state(void)
{
    char path[160];
    clear_journal();
    snprintf(path, sizeof path, "%s/journal", state);
    rmdir(path);
    rmdir(state);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!state[0]) {
        nw_log_set_level(NW_LOG_ERR);
        snprintf(state, sizeof state, "/tmp/nwj-fuzz-XXXXXX");
        if (!mkdtemp(state))
            abort();
        snprintf(segment, sizeof segment, "%s/journal", state);
        mkdir(segment, 0700);
        snprintf(segment, sizeof segment, "%s/journal/000000000001.nwj", state);
        uv_loop_init(&loop);
        atexit(remove_state);
    }
    /* 1: one payload */
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    nw_jrec_t rec;
    if (nw_jrec_decode(&up, data, size, &rec))
        round_trip(&rec);
    msgpack_unpacked_destroy(&up);

    /* 2: a segment, through the reader */
    clear_journal();
    read_frames(data, size);

    /* 3: recovery */
    clear_journal();
    write_segment(data, size);
    nw_journal_options_t opt = {
        .sync = false,
        .commit_delay_ms = 0,
        .segment_size = 1 << 20,
        .max_size = 1 << 30,
        .max_age_ms = 0,
        .dedup_window_ms = INT64_MAX / 4,
    };
    char err[256];
    nw_journal_t *j = nw_journal_open(&loop, state, opt, err, sizeof err);
    if (!j) {
        uv_run(&loop, UV_RUN_NOWAIT);
        return 0;
    }
    char epoch[33];
    snprintf(epoch, sizeof epoch, "%s", nw_journal_epoch(j));
    uint64_t oldest, seq;
    const void *msg;
    size_t len;
    nw_journal_cursor_t *c = nw_journal_cursor_new(j, "a", 0, &oldest);
    for (int i = 0; c && i < 100000 && nw_journal_cursor_next(c, &seq, &msg, &len) == 1; i++)
        if (seq == 0 || (len && !msg))
            abort();
    nw_journal_cursor_destroy(&c);
    nw_journal_stats_t st;
    nw_journal_stats(j, &st);

    uint64_t next = nw_journal_last_seq(j, "a") + 1;
    bool appended = next != 0 && nw_journal_append(j, "a", next, "fuzz", 0, "m", 1) == 0;
    nw_journal_close(&j); /* writes the append synchronously */
    uv_run(&loop, UV_RUN_NOWAIT);

    j = nw_journal_open(&loop, state, opt, err, sizeof err);
    if (!j)
        abort();
    if (strcmp(epoch, nw_journal_epoch(j)) != 0 ||
        (appended && nw_journal_last_seq(j, "a") != next))
        abort();
    nw_journal_close(&j);
    uv_run(&loop, UV_RUN_NOWAIT);
    return 0;
}
