/*
 * fuzz_journal: recovery of a segment made of arbitrary bytes. The input becomes
 * journal/000000000001.nwj in a temporary state dir, which is opened (recovered), read
 * back with a cursor, appended to and reopened: nothing may crash, and the second open
 * must agree with the first on the epoch and on the seq just appended.
 *
 * First byte odd: the rest is taken as chunks [u16 length LE][payload], each framed
 * with a valid header and CRC, so the fuzzer reaches the MessagePack decoding that a
 * CRC would otherwise guard. Even: the bytes are the segment as they are.
 */
#include "journal.h"
#include "log.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char state[64], segment[128];
static uv_loop_t loop;

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t) (v >> (8 * i));
}

static void write_segment(const uint8_t *data, size_t size)
{
    int fd = open(segment, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        abort();
    if (size == 0 || !(data[0] & 1)) {
        if (size && write(fd, data, size) != (ssize_t) size)
            abort();
        close(fd);
        return;
    }
    for (size_t off = 1; off + 2 <= size;) {
        size_t len = (size_t) data[off] | (size_t) data[off + 1] << 8;
        off += 2;
        if (len > size - off)
            len = size - off;
        uint8_t h[12];
        put_le32(h, 0x314a574eu);
        put_le32(h + 4, (uint32_t) len);
        put_le32(h + 8, nw_journal_crc32c(0, data + off, len));
        if (write(fd, h, sizeof h) != (ssize_t) sizeof h ||
            (len && write(fd, data + off, len) != (ssize_t) len))
            abort();
        off += len;
    }
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
    clear_journal();
    write_segment(data, size);

    nw_journal_options_t opt = {
        .sync = false, .commit_delay_ms = 0, .segment_size = 1 << 20,
        .max_size = 1 << 30, .max_age_ms = 0, .dedup_window_ms = INT64_MAX / 4,
    };
    char err[256];
    nw_journal_t *j = nw_journal_open(&loop, state, &opt, err, sizeof err);
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
    nw_journal_close(&j);       /* writes the append synchronously */
    uv_run(&loop, UV_RUN_NOWAIT);

    j = nw_journal_open(&loop, state, &opt, err, sizeof err);
    if (!j)
        abort();
    if (strcmp(epoch, nw_journal_epoch(j)) != 0 ||
        (appended && nw_journal_last_seq(j, "a") != next))
        abort();
    nw_journal_close(&j);
    uv_run(&loop, UV_RUN_NOWAIT);
    return 0;
}
