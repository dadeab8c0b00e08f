/*
 * test_journal: the journal against a real libuv loop in a temporary directory:
 * group commit order, reopen (seqs, epoch, dedup window), recovery of torn and
 * corrupted segments, rotation and retirement, write failures, replay cursors.
 */
#include "journal.h"
#include "log.h"
#include "runner.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uv_loop_t loop;
static char state[256];

/* commit callbacks record their tag and status here, in the order they ran */
static int done_tag[512], done_status[512], ndone, last_status;
static nw_journal_t *unwind_journal; /* when set, callbacks try to append */
static int unwind_errno;

static void on_commit(void *arg, int status)
{
    if (ndone < 512) {
        done_tag[ndone] = (int) (intptr_t) arg;
        done_status[ndone] = status;
    }
    last_status = status;
    ndone++;
    if (unwind_journal) {
        errno = 0;
        if (nw_journal_append(unwind_journal, "a", nw_journal_last_seq(unwind_journal, "a") + 1,
                              "x", 0, "x", 1) != 0)
            unwind_errno = errno;
    }
}

static bool timed_out;
static void on_guard(uv_timer_t *t)
{
    (void) t;
    timed_out = true;
}

/* Run the loop until done(arg); false after 10 s instead of hanging. */
static bool run_until(bool (*done)(void *arg), void *arg)
{
    uv_timer_t guard;
    uv_timer_init(&loop, &guard);
    timed_out = false;
    uv_timer_start(&guard, on_guard, 10000, 0);
    while (!done(arg) && !timed_out)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *) &guard, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return done(arg);
}

static bool ndone_reached(void *n)
{
    return ndone >= *(int *) n;
}

/* Run the loop until n callbacks in all have run; false after 10 s instead of hanging. */
static bool wait_for(int n)
{
    if (!run_until(ndone_reached, &n))
        fprintf(stderr, "timed out waiting for %d callbacks (have %d)\n", n, ndone);
    return ndone >= n;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st, (void) flag, (void) ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static nw_journal_options_t defaults(void)
{
    return (nw_journal_options_t) {
        .sync = false,
        .commit_delay_ms = 0,
        .segment_size = 1 << 20,
        .max_size = 1 << 30,
        .max_age_ms = 0,
        .dedup_window_ms = 60000,
    };
}

static nw_journal_t *open_j(const nw_journal_options_t *opt)
{
    char err[256] = "";
    nw_journal_t *j = nw_journal_open(&loop, state, *opt, err, sizeof err);
    if (!j)
        fprintf(stderr, "open failed: %s\n", err);
    CHECK(j != NULL);
    return j;
}

static void close_j(nw_journal_t **j)
{
    nw_journal_close(j);
    uv_run(&loop, UV_RUN_NOWAIT); /* lets the timer's close callback free it */
}

/* Append topic's next message, "topic-seq" padded to pad bytes, id "topic-seq". */
static int append(nw_journal_t *j, const char *topic, int64_t time_ms, size_t pad)
{
    uint64_t seq = nw_journal_last_seq(j, topic) + 1;
    char id[64], msg[4096] = "";
    snprintf(id, sizeof id, "%s-%" PRIu64, topic, seq);
    snprintf(msg, sizeof msg, "%s", id);
    size_t len = strlen(msg) > pad ? strlen(msg) : pad;
    return nw_journal_append(j, topic, seq, id, time_ms, msg, len);
}

static bool commit_wait(nw_journal_t *j, int *status)
{
    int want = ndone + 1;
    CHECK(nw_journal_commit(j, on_commit, (void *) (intptr_t) 999) == 0);
    bool ok = wait_for(want);
    /* the arrays keep the first 512: the rest only the last (this one, waited for alone) */
    *status = !ok ? 1 : want <= 512 ? done_status[want - 1] : last_status;
    return ok;
}

/* seqs returned by a cursor over topic from from, as "1,2,3" */
static const char *cursor_seqs(nw_journal_t *j, const char *topic, uint64_t from,
                               uint64_t *oldest, bool check_msg)
{
    static char out[1024];
    out[0] = '\0';
    nw_journal_cursor_t *c = nw_journal_cursor_new(j, topic, from, oldest);
    if (!c)
        return "(null)";
    uint64_t seq;
    const void *msg;
    size_t len;
    int rc;
    while ((rc = nw_journal_cursor_next(c, &seq, &msg, &len)) == 1) {
        char want[64];
        snprintf(want, sizeof want, "%s-%" PRIu64, topic, seq);
        if (check_msg)
            CHECK(len >= strlen(want) && memcmp(msg, want, strlen(want)) == 0);
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%" PRIu64, out[0] ? "," : "",
                 seq);
    }
    CHECK(rc == 0);
    nw_journal_cursor_destroy(&c);
    return out;
}

static void seg_file(uint64_t num, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/journal/%012" PRIu64 ".nwj", state, num);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static void fresh(void)
{
    rm_rf(state);
    mkdir(state, 0700);
}

TEST_IMPL(crc)
{
    CHECK(nw_journal_crc32c(0, "123456789", 9) == 0xE3069283u);
    /* whichever path this CPU takes, against a bit-at-a-time reference, at every
     * alignment and length around the eight-byte steps */
    {
        unsigned char buf[300];
        for (size_t i = 0; i < sizeof buf; i++)
            buf[i] = (unsigned char) (i * 131 + 7);
        int bad = 0;
        for (size_t off = 0; off < 8; off++)
            for (size_t len = 0; len + off <= sizeof buf; len += len < 40 ? 1 : 37) {
                uint32_t ref = ~0u;
                for (size_t i = 0; i < len; i++) {
                    ref ^= buf[off + i];
                    for (int k = 0; k < 8; k++)
                        ref = ref & 1 ? (ref >> 1) ^ 0x82F63B78u : ref >> 1;
                }
                bad += nw_journal_crc32c(0, buf + off, len) != ~ref;
            }
        CHECK(bad == 0);
    }
    CHECK(nw_journal_crc32c(nw_journal_crc32c(0, "1234", 4), "56789", 5) == 0xE3069283u);
    CHECK(nw_journal_crc32c(0, "", 0) == 0);
}

TEST_IMPL(commit_and_reopen)
{
    fresh();
    nw_journal_options_t opt = defaults();
    opt.sync = true;
    nw_journal_t *j = open_j(&opt);
    if (!j)
        return;
    char epoch[33];
    snprintf(epoch, sizeof epoch, "%s", nw_journal_epoch(j));
    CHECK(strlen(epoch) == 32 && strspn(epoch, "0123456789abcdef") == 32);
    CHECK(nw_journal_last_seq(j, "a") == 0);

    int start = ndone;
    CHECK(append(j, "a", 1000, 0) == 0);
    CHECK(append(j, "a", 1000, 0) == 0);
    CHECK(append(j, "b", 1000, 0) == 0);
    CHECK(nw_journal_commit(j, on_commit, (void *) 1) == 0);
    CHECK(append(j, "a", 1000, 0) == 0);
    CHECK(nw_journal_commit(j, on_commit, (void *) 2) == 0);
    CHECK(nw_journal_last_seq(j, "a") == 3);
    CHECK(nw_journal_durable_seq(j, "a") == 0); /* assigned, not yet written */
    CHECK(nw_journal_seen(j, "a-3", 0));        /* in flight counts for dedup */
    CHECK(!nw_journal_seen(j, "a-3", 1001));
    errno = 0;
    CHECK(nw_journal_append(j, "a", 5, "x", 0, "x", 1) == -1 && errno == EINVAL);
    errno = 0;
    CHECK(nw_journal_append(j, "a", 3, "x", 0, "x", 1) == -1 && errno == EINVAL);
    CHECK(nw_journal_append(j, "c", 0, "x", 0, "x", 1) == -1);
    CHECK(wait_for(start + 2));
    CHECK(done_tag[start] == 1 && done_status[start] == 0);
    CHECK(done_tag[start + 1] == 2 && done_status[start + 1] == 0);
    CHECK(nw_journal_durable_seq(j, "a") == 3 && nw_journal_durable_seq(j, "b") == 1);

    /* a burst: the first commit writes at once, the other 49 share the next write */
    nw_journal_stats_t before, after;
    nw_journal_stats(j, &before);
    start = ndone;
    for (int i = 0; i < 50; i++) {
        CHECK(append(j, i % 2 ? "a" : "b", 2000, 0) == 0);
        CHECK(nw_journal_commit(j, on_commit, (void *) (intptr_t) (100 + i)) == 0);
    }
    CHECK(wait_for(start + 50));
    bool ordered = true;
    for (int i = 0; i < 50; i++)
        ordered &= done_tag[start + i] == 100 + i && done_status[start + i] == 0;
    CHECK(ordered);
    nw_journal_stats(j, &after);
    CHECK(after.commits - before.commits == 2);
    CHECK(after.fsyncs - before.fsyncs == 2);
    CHECK(after.records == 54);
    CHECK(after.topics == 2);
    CHECK(after.segments == 1);
    CHECK(nw_journal_last_seq(j, "a") == 28);
    CHECK(nw_journal_last_seq(j, "b") == 26);
    close_j(&j);

    j = open_j(&opt);
    if (!j)
        return;
    CHECK_STR(nw_journal_epoch(j), epoch);
    CHECK(nw_journal_last_seq(j, "a") == 28);
    CHECK(nw_journal_last_seq(j, "b") == 26);
    CHECK(append(j, "a", 3000, 0) == 0);
    nw_journal_stats(j, &after);
    CHECK(after.records == 54 && after.discarded == 0);
    close_j(&j); /* writes the pending append */

    j = open_j(&opt);
    if (!j)
        return;
    CHECK(nw_journal_last_seq(j, "a") == 29);
    close_j(&j);

    /* the journal lost: a new epoch, seqs from scratch */
    char jdir[300];
    snprintf(jdir, sizeof jdir, "%s/journal", state);
    rm_rf(jdir);
    j = open_j(&opt);
    if (!j)
        return;
    CHECK(strcmp(nw_journal_epoch(j), epoch) != 0);
    CHECK(strlen(nw_journal_epoch(j)) == 32);
    CHECK(nw_journal_last_seq(j, "a") == 0);
    close_j(&j);
}

static bool old_seen(void *j)
{
    return nw_journal_seen(j, "old", 0);
}

TEST_IMPL(dedup_window)
{
    fresh();
    nw_journal_options_t opt = defaults();
    nw_journal_t *j = open_j(&opt);
    if (!j)
        return;
    int64_t now = now_ms();
    CHECK(nw_journal_append(j, "a", 1, "recent", now - 1000, "m", 1) == 0);
    CHECK(nw_journal_append(j, "a", 2, "old", now - 3600 * 1000, "m", 1) == 0);
    int st;
    CHECK(commit_wait(j, &st) && st == 0);
    CHECK(nw_journal_seen(j, "old", 0));
    close_j(&j);

    j = open_j(&opt);
    if (!j)
        return;
    CHECK(nw_journal_seen(j, "recent", now - 60000));
    CHECK(!nw_journal_seen(j, "recent", now));
    CHECK(!nw_journal_seen(j, "old", 0)); /* beyond the window: not rebuilt */
    CHECK(!nw_journal_seen(j, "never", 0));

    /* a reload widening the window reads the older ids back from the segments */
    CHECK(nw_journal_set_dedup_window(j, 2 * 3600 * 1000) == 0);
    run_until(old_seen, j);
    CHECK(nw_journal_seen(j, "old", now - 3600 * 1000));
    CHECK(nw_journal_seen(j, "recent", now - 60000));
    CHECK(!nw_journal_seen(j, "never", 0));
    /* and a narrower one forgets at once */
    CHECK(nw_journal_set_dedup_window(j, 500) == 0);
    CHECK(!nw_journal_seen(j, "old", 0) && !nw_journal_seen(j, "recent", 0));
    close_j(&j);
}

TEST_IMPL(torn_tail)
{
    fresh();
    nw_journal_options_t opt = defaults();
    nw_journal_t *j = open_j(&opt);
    if (!j)
        return;
    for (int i = 0; i < 3; i++)
        CHECK(append(j, "a", 1000, 0) == 0);
    close_j(&j);
    char path[300];
    seg_file(1, path, sizeof path);
    off_t good = file_size(path);
    /* a record cut short by a crash: header says 100 bytes, 10 made it */
    unsigned char torn[22] = {'N', 'W', 'J', '1', 100, 0, 0, 0, 1, 2, 3, 4};
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0 && write(fd, torn, sizeof torn) == (ssize_t) sizeof torn);
    close(fd);

    j = open_j(&opt);
    if (!j)
        return;
    CHECK(file_size(path) == good);
    CHECK(nw_journal_last_seq(j, "a") == 3);
    nw_journal_stats_t s;
    nw_journal_stats(j, &s);
    CHECK(s.discarded == 0 && s.records == 3);
    CHECK(append(j, "a", 1000, 0) == 0);
    int st;
    CHECK(commit_wait(j, &st) && st == 0);
    close_j(&j);

    j = open_j(&opt);
    if (!j)
        return;
    CHECK(nw_journal_last_seq(j, "a") == 4);
    uint64_t oldest;
    CHECK_STR(cursor_seqs(j, "a", 1, &oldest, true), "1,2,3,4");
    CHECK(oldest == 1);
    close_j(&j);
}

TEST_IMPL(flipped_byte)
{
    fresh();
    nw_journal_options_t opt = defaults();
    nw_journal_t *j = open_j(&opt);
    if (!j)
        return;
    for (int i = 0; i < 3; i++)
        CHECK(append(j, "a", 1000, 40) == 0);
    close_j(&j);

    char path[300];
    seg_file(1, path, sizeof path);
    unsigned char buf[4096];
    int fd = open(path, O_RDWR);
    ssize_t n = read(fd, buf, sizeof buf);
    CHECK(n > 0);
    /* frames: checkpoint, commit, a-1, a-2, a-3, commit; damage the middle of a-2's
     * payload (its write's commit tells its seq: the same epoch goes on) */
    size_t off = 0;
    for (int i = 0; i < 3 && off + 12 <= (size_t) n; i++)
        off += 12 + le32(buf + off + 4);
    CHECK(off + 12 <= (size_t) n && le32(buf + off) == 0x314a574eu);
    size_t at = off + 12 + le32(buf + off + 4) / 2;
    buf[at] ^= 0x40;
    CHECK(pwrite(fd, buf + at, 1, (off_t) at) == 1);
    close(fd);

    j = open_j(&opt);
    if (!j)
        return;
    nw_journal_stats_t s;
    nw_journal_stats(j, &s);
    CHECK(s.discarded == 1);
    CHECK(s.records == 2);
    CHECK(nw_journal_last_seq(j, "a") == 3);
    uint64_t oldest;
    CHECK_STR(cursor_seqs(j, "a", 1, &oldest, true), "1,3");
    CHECK(file_size(path) == n); /* kept: not a torn tail */
    CHECK(append(j, "a", 1000, 0) == 0);
    int st;
    CHECK(commit_wait(j, &st) && st == 0);
    close_j(&j);
}

static int count_segments(void)
{
    int count = 0;
    char path[300];
    for (uint64_t i = 1; i < 200; i++) {
        seg_file(i, path, sizeof path);
        count += file_size(path) >= 0;
    }
    return count;
}

static uint64_t disk_bytes(void)
{
    uint64_t total = 0;
    char path[300];
    for (uint64_t i = 1; i < 200; i++) {
        seg_file(i, path, sizeof path);
        off_t s = file_size(path);
        total += s > 0 ? (uint64_t) s : 0;
    }
    return total;
}

/* Every existing segment starts with a checkpoint frame: payload [0, ...]. */
static bool all_start_with_checkpoint(void)
{
    char path[300];
    for (uint64_t i = 1; i < 200; i++) {
        seg_file(i, path, sizeof path);
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        unsigned char h[14];
        ssize_t n = read(fd, h, sizeof h);
        close(fd);
        if (n != 14 || le32(h) != 0x314a574eu || h[12] != 0x94 || h[13] != 0x00)
            return false;
    }
    return true;
}

TEST_IMPL(rotation_retirement)
{
    fresh();
    nw_journal_options_t opt = defaults();
    opt.segment_size = 256;
    nw_journal_t *j = open_j(&opt);
    if (!j)
        return;
    int st;
    bool ok = true;
    for (int i = 0; i < 20; i++) {
        ok &= append(j, "a", now_ms(), 100) == 0;
        ok &= append(j, "b", now_ms(), 10) == 0;
        ok &= commit_wait(j, &st) && st == 0;
    }
    CHECK(ok);
    nw_journal_stats_t s;
    nw_journal_stats(j, &s);
    CHECK(s.segments > 3);
    CHECK((int) s.segments == count_segments());
    CHECK(s.bytes == disk_bytes());
    CHECK(all_start_with_checkpoint());
    uint64_t oldest;
    CHECK_STR(cursor_seqs(j, "a", 18, &oldest, true), "18,19,20");
    CHECK(oldest == 1);
    close_j(&j);

    /* retire by size: the oldest go, seqs survive in the checkpoints */
    opt.max_size = 1024;
    j = open_j(&opt);
    if (!j)
        return;
    for (int i = 0; i < 10; i++) {
        ok &= append(j, "a", now_ms(), 100) == 0;
        ok &= commit_wait(j, &st) && st == 0;
    }
    CHECK(ok);
    nw_journal_stats(j, &s);
    CHECK(s.bytes <= 1024);
    CHECK(s.bytes == disk_bytes());
    CHECK((int) s.segments == count_segments());
    char first[300];
    seg_file(1, first, sizeof first);
    CHECK(file_size(first) < 0);
    CHECK(all_start_with_checkpoint());
    close_j(&j);

    j = open_j(&opt);
    if (!j)
        return;
    CHECK(nw_journal_last_seq(j, "a") == 30);
    CHECK(nw_journal_last_seq(j, "b") == 20); /* b's records are all retired */
    const char *seqs = cursor_seqs(j, "a", 0, &oldest, true);
    CHECK(oldest > 1 && oldest <= 30);
    char want[256] = "";
    for (uint64_t i = oldest; i <= 30; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%" PRIu64,
                 want[0] ? "," : "", i);
    CHECK_STR(seqs, want);
    CHECK_STR(cursor_seqs(j, "b", 0, &oldest, false), "");
    CHECK(oldest == 0);
    CHECK(append(j, "b", now_ms(), 0) == 0);
    CHECK(commit_wait(j, &st) && st == 0);
    close_j(&j);

    /* retire by age: segments whose newest record is older than max_age go */
    fresh();
    opt = defaults();
    opt.segment_size = 150; /* a checkpoint and one 100-byte message each */
    opt.max_age_ms = 3600 * 1000;
    j = open_j(&opt);
    if (!j)
        return;
    for (int i = 0; i < 5; i++) {
        ok &= append(j, "a", now_ms() - 7200 * 1000, 100) == 0;
        ok &= commit_wait(j, &st) && st == 0;
    }
    ok &= append(j, "a", now_ms(), 100) == 0;
    ok &= commit_wait(j, &st) && st == 0;
    CHECK(ok);
    nw_journal_stats(j, &s);
    CHECK(s.segments == 1 && count_segments() == 1);
    close_j(&j);
    j = open_j(&opt);
    if (!j)
        return;
    CHECK(nw_journal_last_seq(j, "a") == 6);
    CHECK_STR(cursor_seqs(j, "a", 1, &oldest, true), "6");
    CHECK(oldest == 6);
    close_j(&j);
}

TEST_IMPL(write_failure)
{
    fresh();
    nw_journal_options_t opt = defaults();
    nw_journal_t *j = open_j(&opt);
    if (!j)
        return;
    int st;
    CHECK(append(j, "a", now_ms(), 0) == 0);
    CHECK(commit_wait(j, &st) && st == 0);
    char path[300];
    seg_file(1, path, sizeof path);
    off_t good = file_size(path);

    /* files may not grow past good + 64 bytes: the write fails with EFBIG */
    struct rlimit saved, tight;
    CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    tight = saved;
    tight.rlim_cur = (rlim_t) good + 64;
    signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &tight) == 0);

    int start = ndone;
    CHECK(append(j, "a", now_ms(), 1000) == 0); /* seq 2: does not fit */
    CHECK(nw_journal_commit(j, on_commit, (void *) 1) == 0);
    CHECK(append(j, "a", now_ms(), 0) == 0); /* seq 3: appended behind it */
    CHECK(append(j, "b", now_ms(), 0) == 0);
    CHECK(nw_journal_commit(j, on_commit, (void *) 2) == 0);
    CHECK(nw_journal_last_seq(j, "a") == 3);
    unwind_journal = j;
    unwind_errno = 0;
    CHECK(wait_for(start + 2));
    unwind_journal = NULL;
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    CHECK(done_tag[start] == 1 && done_status[start] == -EFBIG);
    CHECK(done_tag[start + 1] == 2 && done_status[start + 1] == -EFBIG);
    CHECK(unwind_errno == EIO);
    CHECK(nw_journal_last_seq(j, "a") == 1);
    CHECK(nw_journal_last_seq(j, "b") == 0);
    CHECK(!nw_journal_seen(j, "a-2", 0) && !nw_journal_seen(j, "a-3", 0));
    CHECK(nw_journal_seen(j, "a-1", 0));
    CHECK(file_size(path) == good);
    nw_journal_stats_t s;
    nw_journal_stats(j, &s);
    CHECK(s.failures == 1 && s.records == 1);

    /* the caller retries: the same seqs are handed out again and stick */
    CHECK(append(j, "a", now_ms(), 0) == 0);
    CHECK(append(j, "a", now_ms(), 0) == 0);
    CHECK(commit_wait(j, &st) && st == 0);
    close_j(&j);
    j = open_j(&opt);
    if (!j)
        return;
    CHECK(nw_journal_last_seq(j, "a") == 3);
    uint64_t oldest;
    CHECK_STR(cursor_seqs(j, "a", 1, &oldest, true), "1,2,3");
    nw_journal_stats(j, &s);
    CHECK(s.discarded == 0);
    close_j(&j);
}

/* id i: 40 lowercase hex digits for most, a plain string for every third */
static void seen_id(int i, char *out, size_t outlen)
{
    if (i % 3 == 0) {
        snprintf(out, outlen, "plain-%d", i);
        return;
    }
    uint32_t x = (uint32_t) i * 2654435761u;
    out[0] = '\0';
    for (int k = 0; k < 5; k++) {
        x = x * 1103515245u + 12345u;
        snprintf(out + strlen(out), outlen - strlen(out), "%08" PRIx32, x);
    }
}

/* How many of ids [from, to) are seen since since_ms. */
static int count_seen(nw_journal_t *j, int from, int to, int step, int64_t since_ms)
{
    int n = 0;
    char id[64];
    for (int i = from; i < to; i += step) {
        seen_id(i, id, sizeof id);
        n += nw_journal_seen(j, id, since_ms);
    }
    return n;
}

/* The seen-id table through growth, undo of a failed batch and pruning: thousands of
 * ids, so that probes run through clusters and removals have entries to shift back. */
TEST_IMPL(seen_table)
{
    enum { N = 3000 };
    fresh();
    nw_journal_options_t opt = defaults();
    opt.dedup_window_ms = 100;
    nw_journal_t *j = open_j(&opt);
    if (!j)
        return;
    int64_t now = now_ms(), old = now - 3600000, future = now + 3600000;
    char id[64];
    int ok = 0;
    for (int i = 0; i < N; i++) { /* even: old, odd: in the window */
        seen_id(i, id, sizeof id);
        ok += nw_journal_append(j, "a", (uint64_t) i + 1, id, i % 2 ? future : old, "m", 1) == 0;
    }
    CHECK(ok == N);
    CHECK(count_seen(j, 0, N, 1, 0) == N);
    CHECK(count_seen(j, 1, N, 2, future) == N / 2);
    CHECK(count_seen(j, 0, N, 2, old + 1) == 0);
    CHECK(count_seen(j, N, 2 * N, 1, 0) == 0);
    seen_id(1, id, sizeof id);
    for (char *p = id; *p; p++)
        *p = (char) toupper((unsigned char) *p);
    CHECK(!nw_journal_seen(j, id, 0)); /* another string, so another id */
    int st;
    CHECK(commit_wait(j, &st) && st == 0);
    CHECK(count_seen(j, 1, N, 2, 0) == N / 2);

    /* a batch of new ids that fails to write is taken back out; the rest stay */
    nw_journal_stats_t s;
    nw_journal_stats(j, &s);
    struct rlimit saved, tight;
    CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    tight = saved;
    tight.rlim_cur = (rlim_t) s.bytes + 64; /* one segment: its data end */
    signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &tight) == 0);
    for (int i = N; i < 2 * N; i++) {
        seen_id(i, id, sizeof id);
        CHECK(nw_journal_append(j, "a", (uint64_t) i + 1, id, future, "m", 1) == 0);
    }
    CHECK(count_seen(j, N, 2 * N, 1, 0) == N);
    CHECK(commit_wait(j, &st) && st == -EFBIG);
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    CHECK(count_seen(j, N, 2 * N, 1, 0) == 0);
    CHECK(count_seen(j, 1, N, 2, 0) == N / 2);

    /* once a window has passed, the next write forgets the old ids (and only those) */
    struct timespec pause = {0, 200 * 1000000};
    nanosleep(&pause, NULL);
    CHECK(nw_journal_append(j, "a", N + 1, "last", future, "m", 1) == 0);
    CHECK(commit_wait(j, &st) && st == 0);
    CHECK(count_seen(j, 0, N, 2, 0) == 0);
    CHECK(count_seen(j, 1, N, 2, future) == N / 2);
    close_j(&j);

    /* recovery rebuilds the ids within the window */
    j = open_j(&opt);
    if (!j)
        return;
    CHECK(count_seen(j, 1, N, 2, future) == N / 2);
    CHECK(count_seen(j, 0, N, 2, 0) == 0);
    CHECK(count_seen(j, N, 2 * N, 1, 0) == 0);
    CHECK(nw_journal_seen(j, "last", future));
    close_j(&j);
}

/* Open with warnings going to a file instead of stderr; their text is left in warnings. */
static nw_journal_t *open_logged(const nw_journal_options_t *opt, char *warnings, size_t len)
{
    char path[300];
    snprintf(path, sizeof path, "%s/log", state);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600), saved = dup(2);
    CHECK(fd >= 0 && saved >= 0);
    fflush(stderr);
    dup2(fd, 2);
    nw_log_level_t level = nw_log_get_level();
    nw_log_set_level(NW_LOG_WARNING);
    nw_journal_t *j = open_j(opt);
    nw_log_set_level(level);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, warnings, len - 1, 0);
    warnings[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return j;
}

/* Where the chain of frame headers starting at 0 stops: at the first that is not one
 * or would run past the file's end. */
static off_t frames_end(const char *path)
{
    int fd = open(path, O_RDONLY);
    off_t off = 0, size = file_size(path);
    unsigned char h[12];
    while (fd >= 0 && pread(fd, h, 12, off) == 12 && le32(h) == 0x314a574eu &&
           off + 12 + (off_t) le32(h + 4) <= size)
        off += 12 + (off_t) le32(h + 4);
    if (fd >= 0)
        close(fd);
    return off;
}

/* With fsync on, the current segment keeps written zeros ahead of its data so that
 * most commits do not grow the file; they are not damage to recovery, closed segments
 * do not keep them, and a file size limit (as a full disk would) only stops them. */
TEST_IMPL(zero_tail)
{
    fresh();
    struct statfs fs;
    if (statfs(state, &fs) == 0 && fs.f_type == TMPFS_MAGIC) {
        nw_test_skip("%s is a tmpfs, where the journal writes no zeros", state);
        return;
    }
    nw_journal_options_t opt = defaults();
    opt.sync = true;
    opt.segment_size = 4 << 20;
    opt.no_prepare = true; /* the zero-step path (prepared_segment tests the other) */
    nw_journal_t *j = open_j(&opt);
    if (!j)
        return;
    char path[300];
    seg_file(1, path, sizeof path);
    nw_journal_stats_t s;
    int st = 0, sizes = 0;
    off_t last_size = -1;
    bool ahead = true;
    for (int i = 0; i < 100 && st == 0; i++) { /* 800 records, 2.4 MB */
        for (int k = 0; k < 8; k++)
            CHECK(append(j, "a", now_ms(), 3000) == 0);
        CHECK(commit_wait(j, &st) && st == 0);
        nw_journal_stats(j, &s);
        off_t size = file_size(path);
        ahead &= size > (off_t) s.bytes && frames_end(path) == (off_t) s.bytes;
        sizes += size != last_size;
        last_size = size;
    }
    CHECK(ahead);
    CHECK(sizes <= 4); /* the file grew a step at a time, not at every commit */
    CHECK(s.records == 800 && s.segments == 1);
    close_j(&j);

    /* a clean close leaves no zeros; a crash leaves records then zeros */
    char warnings[4096];
    CHECK(file_size(path) == frames_end(path));
    static const char zeros[300 << 10];
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, zeros, sizeof zeros, frames_end(path)) == (ssize_t) sizeof zeros);
    close(fd);
    j = open_logged(&opt, warnings, sizeof warnings);
    if (!j)
        return;
    CHECK_STR(warnings, "");
    nw_journal_stats(j, &s);
    CHECK(s.records == 800 && s.discarded == 0 && s.bytes == (uint64_t) frames_end(path));
    CHECK(nw_journal_last_seq(j, "a") == 800);
    CHECK(append(j, "a", now_ms(), 0) == 0);
    CHECK(commit_wait(j, &st) && st == 0);
    uint64_t oldest;
    const char *seqs = cursor_seqs(j, "a", 795, &oldest, true);
    CHECK_STR(seqs, "795,796,797,798,799,800,801");
    CHECK(file_size(path) > frames_end(path));

    /* a record cut short, then zeros: cut, with a warning */
    close_j(&j);
    off_t end = frames_end(path);
    fd = open(path, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, "NWJ1\x64", 5, end) == 5 &&
          pwrite(fd, zeros, 100, end + 5) == 100);
    close(fd);
    j = open_logged(&opt, warnings, sizeof warnings);
    if (!j)
        return;
    CHECK(strstr(warnings, "torn tail") != NULL);
    CHECK(file_size(path) == end && nw_journal_last_seq(j, "a") == 801);

    /* rotation cuts the old segment's zeros off (they only reach past the segment size
     * when that was lowered since they were written) */
    CHECK(append(j, "a", now_ms(), 0) == 0);
    CHECK(commit_wait(j, &st) && st == 0);
    CHECK(file_size(path) > frames_end(path));
    close_j(&j);
    opt.segment_size = 64 << 10;
    j = open_j(&opt);
    if (!j)
        return;
    CHECK(append(j, "a", now_ms(), 0) == 0);
    CHECK(commit_wait(j, &st) && st == 0);
    nw_journal_stats(j, &s);
    CHECK(s.segments == 2);
    CHECK(file_size(path) == frames_end(path));
    char path2[300];
    seg_file(2, path2, sizeof path2);
    CHECK(file_size(path2) == 64 << 10 && frames_end(path2) < 64 << 10);
    CHECK(s.bytes == (uint64_t) (file_size(path) + frames_end(path2)));
    close_j(&j);
    opt.segment_size = 4 << 20;

    /* a file size limit below the next zeros: they are left out, commits go on */
    fresh();
    j = open_j(&opt);
    if (!j)
        return;
    off_t alloc = file_size(path);
    CHECK(alloc > 0);
    struct rlimit saved, tight;
    CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    tight = saved;
    tight.rlim_cur = (rlim_t) alloc + (100 << 10);
    signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &tight) == 0);
    int commits = 0;
    st = 0;
    for (int i = 0; i < 200 && st == 0; i++) {
        for (int k = 0; k < 4; k++)
            CHECK(append(j, "a", now_ms(), 3000) == 0);
        if (commit_wait(j, &st) && st == 0)
            commits++;
        nw_journal_stats(j, &s);
        if (s.bytes < (uint64_t) alloc)
            CHECK(file_size(path) == alloc); /* the zeros past it were cut again */
    }
    CHECK(st == -EFBIG); /* the records themselves reached the limit */
    CHECK(s.bytes > (uint64_t) alloc && s.bytes <= (uint64_t) tight.rlim_cur);
    CHECK(commits == (int) (nw_journal_last_seq(j, "a") / 4));
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    uint64_t durable = nw_journal_last_seq(j, "a");
    CHECK(append(j, "a", now_ms(), 0) == 0);
    CHECK(commit_wait(j, &st) && st == 0);
    close_j(&j);
    j = open_logged(&opt, warnings, sizeof warnings);
    if (!j)
        return;
    CHECK_STR(warnings, "");
    nw_journal_stats(j, &s);
    CHECK(s.discarded == 0 && nw_journal_last_seq(j, "a") == durable + 1);
    close_j(&j);
}

/* ---------------------------------------------------------------- prepared segments */

static void journal_file(const char *name, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/journal/%s", state, name);
}

static ino_t inode_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_ino : 0;
}

/* Every byte the journal folder's files take (segments, prepared or half-made ones). */
static uint64_t folder_bytes(void)
{
    char dir[300], path[600];
    snprintf(dir, sizeof dir, "%s/journal", state);
    DIR *d = opendir(dir);
    uint64_t total = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            total += (uint64_t) st.st_size;
    }
    if (d)
        closedir(d);
    return total;
}

/* Run the loop until the journal has a prepared segment ready (failures 0) or until that
 * many preparations failed; false after 10 s instead of hanging. */
typedef struct {
    nw_journal_t *j;
    uint64_t failures;
} prepared_wait_t;

static bool prepared_or_failed(void *arg)
{
    const prepared_wait_t *w = arg;
    nw_journal_stats_t s;
    nw_journal_stats(w->j, &s);
    return w->failures ? s.prepare_failures >= w->failures : s.prepared > 0;
}

static bool wait_prepared(nw_journal_t *j, uint64_t failures)
{
    prepared_wait_t w = {j, failures};
    if (run_until(prepared_or_failed, &w))
        return true;
    fprintf(stderr, "timed out waiting for a prepared segment\n");
    return false;
}

static bool wait_idle(void);

/* Commits of per x 3 KB until the journal holds segs segments or its bytes reach bytes;
 * with check, the loop runs until idle after each and check(j) must hold. */
static bool fill_with(nw_journal_t *j, uint64_t segs, uint64_t bytes, int per,
                      bool (*check)(nw_journal_t *))
{
    nw_journal_stats_t s;
    int st = 0;
    for (int i = 0; i < 1000; i++) {
        nw_journal_stats(j, &s);
        if (s.segments >= segs || s.bytes >= bytes)
            return true;
        for (int k = 0; k < per; k++)
            if (append(j, "a", now_ms(), 3000) != 0)
                return false;
        if (!commit_wait(j, &st) || st != 0 || (check && (!wait_idle() || !check(j))))
            return false;
    }
    return false;
}

static bool fill(nw_journal_t *j, uint64_t segs, uint64_t bytes)
{
    return fill_with(j, segs, bytes, 8, NULL);
}

static bool on_tmpfs(void)
{
    struct statfs fs;
    if (statfs(state, &fs) == 0 && fs.f_type == TMPFS_MAGIC) {
        nw_test_skip("%s is a tmpfs, where the journal writes no zeros", state);
        return true;
    }
    return false;
}

/* The files the prepared-segment tests look at: segments 1 to 5, the prepared next one,
 * a half-made one. */
typedef struct {
    char seg[6][300], prep[300], part[300];
} prep_files_t;

/* Their start: a fresh journal on a disk (a tmpfs writes no zeros: skipped, NULL) with
 * fsync on and segments of size; *opt the options it was opened with. */
static nw_journal_t *open_on_disk(nw_journal_options_t *opt, uint64_t size, prep_files_t *f)
{
    fresh();
    if (on_tmpfs())
        return NULL;
    *opt = defaults();
    opt->sync = true;
    opt->segment_size = size;
    for (int i = 1; i < 6; i++)
        seg_file((uint64_t) i, f->seg[i], sizeof f->seg[i]);
    journal_file("segment.prep", f->prep, sizeof f->prep);
    journal_file("segment.prep.part", f->part, sizeof f->part);
    return open_j(opt);
}

/* With fsync on, the next segment is made (zeros, fdatasync) on the pool beforehand: a
 * rotation renames it, commits into it never change its size, a segment still on the
 * zero-step path takes it rather than more zeros, it is not data to stats or replay,
 * and it outlives a stop. */
TEST_IMPL(prepared_segment)
{
    nw_journal_options_t opt;
    prep_files_t f;
    nw_journal_t *j = open_on_disk(&opt, 2 << 20, &f);
    if (!j)
        return;
    char(*seg)[300] = f.seg, *prep = f.prep, *part = f.part;
    nw_journal_stats_t s;
    CHECK(wait_prepared(j, 0));
    nw_journal_stats(j, &s);
    CHECK(s.prepared == 2 << 20 && file_size(prep) == 2 << 20 && file_size(part) < 0);
    CHECK(s.segments == 1 && s.bytes == (uint64_t) frames_end(seg[1]));
    CHECK(s.zeros == (uint64_t) (file_size(seg[1]) - frames_end(seg[1])) + s.prepared);
    ino_t ino = inode_of(prep);

    /* the first segment's step of zeros runs low: it takes the prepared one instead */
    CHECK(fill(j, 2, UINT64_MAX));
    nw_journal_stats(j, &s);
    CHECK(s.segments == 2 && inode_of(seg[2]) == ino);
    CHECK(file_size(seg[1]) == frames_end(seg[1]) && frames_end(seg[1]) < 1 << 20);
    CHECK(s.bytes == (uint64_t) (frames_end(seg[1]) + frames_end(seg[2])));
    /* commits into it overwrite zeros: its size stays */
    bool same = true;
    int st = 0;
    for (int i = 0; i < 60; i++) {
        for (int k = 0; k < 8; k++)
            CHECK(append(j, "a", now_ms(), 3000) == 0);
        CHECK(commit_wait(j, &st) && st == 0);
        same &= file_size(seg[2]) == 2 << 20;
    }
    CHECK(same);
    CHECK(wait_prepared(j, 0));
    ino = inode_of(prep);
    CHECK(ino != 0 && ino != inode_of(seg[2]));
    CHECK(fill(j, 3, UINT64_MAX)); /* a full segment rotates into the next one ready */
    CHECK(inode_of(seg[3]) == ino && file_size(seg[2]) == frames_end(seg[2]));
    uint64_t oldest;
    const char *seqs = cursor_seqs(j, "a", 1, &oldest, true);
    CHECK(strncmp(seqs, "1,2,3,", 6) == 0);
    CHECK(wait_prepared(j, 0));
    nw_journal_stats(j, &s);
    uint64_t records = s.records, bytes = s.bytes, last = nw_journal_last_seq(j, "a");
    ino = inode_of(prep);
    close_j(&j);

    /* a clean stop keeps the ready one; the next start takes it at its first commit */
    char warnings[4096];
    CHECK(inode_of(prep) == ino && file_size(seg[3]) == frames_end(seg[3]));
    j = open_logged(&opt, warnings, sizeof warnings);
    if (!j)
        return;
    CHECK_STR(warnings, "");
    nw_journal_stats(j, &s);
    CHECK(s.prepared == 2 << 20 && s.records == records && s.bytes == bytes && s.segments == 3);
    CHECK(append(j, "a", now_ms(), 0) == 0);
    CHECK(commit_wait(j, &st) && st == 0);
    nw_journal_stats(j, &s);
    CHECK(s.segments == 4 && inode_of(seg[4]) == ino);
    CHECK(wait_prepared(j, 0));
    ino = inode_of(prep);
    close_j(&j);

    /* a crash with a prepared segment unused and another half made: the half-made one
     * is removed, the prepared one kept, neither is data */
    static const char zeros[300 << 10];
    int fd = open(seg[4], O_WRONLY);
    CHECK(fd >= 0 &&
          pwrite(fd, zeros, sizeof zeros, frames_end(seg[4])) == (ssize_t) sizeof zeros);
    close(fd);
    fd = open(part, O_WRONLY | O_CREAT | O_EXCL, 0640);
    CHECK(fd >= 0 && pwrite(fd, zeros, sizeof zeros, 0) == (ssize_t) sizeof zeros);
    close(fd);
    j = open_logged(&opt, warnings, sizeof warnings);
    if (!j)
        return;
    CHECK_STR(warnings, "");
    CHECK(file_size(part) < 0);
    nw_journal_stats(j, &s);
    CHECK(s.segments == 4 && s.records == records + 1 && s.prepared == 2 << 20);
    CHECK(s.bytes == (uint64_t) (frames_end(seg[1]) + frames_end(seg[2]) + frames_end(seg[3]) +
                                 frames_end(seg[4])));
    CHECK(nw_journal_last_seq(j, "a") == last + 1);
    char want[64];
    snprintf(want, sizeof want, "%" PRIu64 ",%" PRIu64, last, last + 1);
    CHECK_STR(cursor_seqs(j, "a", last, &oldest, true), want);
    close_j(&j);

    /* something else under the prepared name is not appended over: removed */
    fd = open(prep, O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, "x", 1, 100) == 1);
    close(fd);
    j = open_logged(&opt, warnings, sizeof warnings);
    if (!j)
        return;
    CHECK(strstr(warnings, "not a prepared segment") != NULL);
    CHECK(file_size(prep) < 0);
    CHECK(wait_prepared(j, 0));
    CHECK(file_size(prep) == 2 << 20);
    close_j(&j);

    /* a crash after a rotation named it, before anything was written in it: a newest
     * segment of zeros, which takes a checkpoint and keeps its zeros; the epoch holds */
    j = open_j(&opt);
    if (!j)
        return;
    char epoch[33];
    snprintf(epoch, sizeof epoch, "%s", nw_journal_epoch(j));
    close_j(&j);
    CHECK(rename(prep, seg[5]) == 0);
    j = open_logged(&opt, warnings, sizeof warnings);
    if (!j)
        return;
    CHECK_STR(warnings, "");
    CHECK_STR(nw_journal_epoch(j), epoch);
    CHECK(all_start_with_checkpoint() && file_size(seg[5]) == 2 << 20);
    CHECK(append(j, "a", now_ms(), 0) == 0);
    CHECK(commit_wait(j, &st) && st == 0);
    nw_journal_stats(j, &s);
    CHECK(s.segments == 5 && file_size(seg[5]) == 2 << 20);
    CHECK(nw_journal_last_seq(j, "a") == last + 2);
    close_j(&j);
}

/* Run the loop until nothing of the journal's is in flight (a preparation's steps
 * included); false after 10 s instead of hanging. */
static bool wait_idle(void)
{
    uv_timer_t guard;
    uv_timer_init(&loop, &guard);
    timed_out = false;
    uv_timer_start(&guard, on_guard, 10000, 0);
    uv_unref((uv_handle_t *) &guard); /* only the journal's work keeps the loop running */
    while (!timed_out && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    uv_close((uv_handle_t *) &guard, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (timed_out)
        fprintf(stderr, "timed out waiting for the journal to be idle\n");
    return !timed_out;
}

/* For fill_with: the loop runs until idle, whatever it leaves. */
static bool anything(nw_journal_t *j)
{
    (void) j;
    return true;
}

/* A segment as a crash leaves it (a clean stop cuts its zeros off): its records, then
 * written zeros up to size. */
static bool as_crashed(const char *path, off_t size)
{
    static const char zeros[64 << 10];
    int fd = open(path, O_WRONLY);
    bool ok = fd >= 0;
    for (off_t off = frames_end(path); ok && off < size;) {
        size_t n = size - off < (off_t) sizeof zeros ? (size_t) (size - off) : sizeof zeros;
        ok = pwrite(fd, zeros, n, off) == (ssize_t) n;
        off += (off_t) n;
    }
    if (fd >= 0)
        ok &= fsync(fd) == 0 && close(fd) == 0;
    return ok;
}

/* What prepare_paced expects of the next segment, paced_size bytes, while the journal has
 * paced_segs: made as far as the lead plus the records since it was begun allow (in the
 * room its segment had left), to a step. */
static uint64_t paced_base, paced_room, paced_segs, paced_size;
static bool paced_as_expected(nw_journal_t *j)
{
    char part[300];
    journal_file("segment.prep.part", part, sizeof part);
    nw_journal_stats_t s;
    nw_journal_stats(j, &s);
    if (s.segments != paced_segs)
        return true; /* rotated: the caller looks */
    uint64_t size = paced_size, lead = 4 << 20, step = 1 << 20;
    uint64_t grown = s.bytes - paced_base;
    uint64_t allowed = grown >= paced_room ? size : lead + grown * size / paced_room;
    allowed = allowed < size ? allowed : size;
    off_t made = s.prepared ? (off_t) s.prepared : file_size(part);
    bool ok = made >= 0 && (uint64_t) made <= allowed && (uint64_t) made + step > allowed;
    if (!ok)
        fprintf(stderr,
                "%" PRIu64 " bytes of records: %lld made of the next segment, %" PRIu64
                " allowed\n",
                grown, (long long) made, allowed);
    return ok;
}

/* Fill segment n, prepared to size, paced as expected for the next (next bytes), until
 * the journal rotates into that one; whether it did, with the segment's records near its
 * end. */
static bool paced_ramp(nw_journal_t *j, prep_files_t *f, uint64_t n, uint64_t size, uint64_t next)
{
    nw_journal_stats_t s;
    nw_journal_stats(j, &s);
    paced_base = s.bytes;
    paced_room = size - (uint64_t) frames_end(f->seg[n]);
    paced_room = paced_room > next / 4 ? paced_room : next / 4;
    paced_segs = n;
    paced_size = next;
    if (!wait_idle())
        return false;
    ino_t ino = inode_of(f->prep) ? inode_of(f->prep) : inode_of(f->part);
    bool ok = fill_with(j, n + 1, UINT64_MAX, 64, paced_as_expected);
    nw_journal_stats(j, &s);
    ok &= s.segments == n + 1 && inode_of(f->seg[n + 1]) == ino &&
          file_size(f->seg[n + 1]) == (off_t) next;
    /* rotated once the next batch no longer fits ahead of the last ZERO_LOW */
    ok &= frames_end(f->seg[n]) > (off_t) (size - (512 << 10)) &&
          frames_end(f->seg[n]) < (off_t) (size + (256 << 10));
    return ok;
}

/* The next segment's zeros follow the records: after a segment on the zero-step path,
 * the lead alone (made at once, which that segment takes at its next step), then twice
 * the current one's size each time up to the full size, paced by the records (the lead
 * at once, the rest ready before the current segment is full), rather than a whole
 * segment of zeros in the disk's queue at the start; a clean stop removes a half-made
 * one. (A segment no larger than the lead is made at once: prepared_segment.) */
TEST_IMPL(prepare_paced)
{
    nw_journal_options_t opt;
    prep_files_t f;
    nw_journal_t *j = open_on_disk(&opt, 16 << 20, &f);
    if (!j)
        return;
    char(*seg)[300] = f.seg, *prep = f.prep, *part = f.part;
    nw_journal_stats_t s;
    /* the first segment is on the zero-step path: the lead, ready, and no more while no
     * record comes */
    CHECK(wait_idle());
    nw_journal_stats(j, &s);
    CHECK(s.prepared == 4 << 20 && file_size(prep) == 4 << 20 && file_size(part) < 0);
    CHECK(s.zeros == (uint64_t) (file_size(seg[1]) - frames_end(seg[1])) + (4 << 20));
    ino_t ino = inode_of(prep);
    /* which it takes before its first step of zeros */
    CHECK(fill_with(j, 2, UINT64_MAX, 64, NULL));
    CHECK(inode_of(seg[2]) == ino && file_size(seg[2]) == 4 << 20);
    CHECK(frames_end(seg[1]) < 1 << 20 && file_size(seg[1]) == frames_end(seg[1]));
    /* then 8 MiB, 16 MiB and 16 MiB, each ready in time for the last */
    CHECK(paced_ramp(j, &f, 2, 4 << 20, 8 << 20));
    CHECK(paced_ramp(j, &f, 3, 8 << 20, 16 << 20));
    CHECK(paced_ramp(j, &f, 4, 16 << 20, 16 << 20));
    CHECK(file_size(part) >= 4 << 20 && file_size(part) < 5 << 20 && file_size(prep) < 0);

    /* a crash while it was half made, the current segment all but full: the next start
     * begins again, and with less than a quarter segment left the zeros go at most 4
     * times as fast as the records, not all at once */
    nw_journal_stats(j, &s);
    CHECK(fill_with(j, 6, s.bytes - (uint64_t) frames_end(seg[5]) + (25 << 19), 64, anything));
    close_j(&j);
    CHECK(as_crashed(seg[5], 16 << 20));
    CHECK(rename(file_size(prep) > 0 ? prep : part, part) == 0);
    j = open_j(&opt);
    if (!j)
        return;
    CHECK(wait_idle());
    nw_journal_stats(j, &s);
    CHECK(s.segments == 5 && (16 << 20) - frames_end(seg[5]) < 4 << 20);
    CHECK(file_size(part) == 4 << 20 && file_size(prep) < 0);
    paced_base = s.bytes;
    paced_room = 4 << 20;
    paced_size = 16 << 20;
    CHECK(fill_with(j, 6, s.bytes + (2 << 20), 64, paced_as_expected));
    CHECK(file_size(part) >= 11 << 20 && file_size(part) < 16 << 20);
    /* a clean stop removes a half-made one */
    close_j(&j);
    CHECK(file_size(part) < 0 && file_size(prep) < 0);
}

/* Early mode: which commits were told written, and which durable, in order. */
static char early_events[64];
static void early_event(char what, void *arg, int status)
{
    size_t n = strlen(early_events);
    if (status == 0 && n + 2 < sizeof early_events)
        snprintf(early_events + n, sizeof early_events - n, "%c%c", what, (char) (intptr_t) arg);
}

static void on_early_written(void *arg, int status)
{
    early_event('w', arg, status);
}

static void on_early_done(void *arg, int status)
{
    early_event('d', arg, status);
    on_commit(arg, status);
}

static bool events_are(void *want)
{
    return strcmp(early_events, want) == 0;
}

/* Runs the loop until early_events is want; false after 10 s. */
static bool wait_events(const char *want)
{
    if (run_until(events_are, (void *) want))
        return true;
    fprintf(stderr, "timed out waiting for %s (have %s)\n", want, early_events);
    return false;
}

/* Early mode writes into a prepared segment up to its end: there no job can add zeros,
 * so the last ZERO_LOW of it is written by the loop like the rest, and a commit there is
 * told written while the fdatasync before it runs (it used to wait for that fdatasync
 * and go as a job of its own, each one, to the segment's end). */
TEST_IMPL(early_to_the_end)
{
    nw_journal_options_t opt;
    prep_files_t f;
    fresh();
    if (on_tmpfs())
        return;
    opt = defaults();
    opt.sync = opt.early = true;
    opt.segment_size = 2 << 20; /* no larger than the lead: each is prepared whole */
    nw_journal_t *j = open_j(&opt);
    if (!j)
        return;
    for (int i = 1; i < 6; i++)
        seg_file((uint64_t) i, f.seg[i], sizeof f.seg[i]);
    /* into the second segment, a prepared one, to less than ZERO_LOW (256 KiB) of its end */
    CHECK(fill(j, 2, UINT64_MAX));
    nw_journal_stats_t s;
    int st = 0;
    for (int i = 0; i < 200; i++) {
        CHECK(wait_idle());
        nw_journal_stats(j, &s);
        CHECK(s.segments == 2 && s.prepared == 2 << 20 && file_size(f.seg[2]) == 2 << 20);
        if (s.zeros - s.prepared < 200 << 10)
            break;
        for (int k = 0; k < 8; k++)
            CHECK(append(j, "a", now_ms(), 3000) == 0);
        CHECK(commit_wait(j, &st) && st == 0);
    }
    CHECK(s.zeros - s.prepared < 200 << 10 && s.zeros - s.prepared > 150 << 10);
    uint64_t records = s.records;

    /* each early fdatasync now waits for a byte on the gate */
    char gate[300];
    journal_file("../sync-gate", gate, sizeof gate);
    CHECK(mkfifo(gate, 0600) == 0);
    int g = open(gate, O_RDWR | O_CLOEXEC);
    CHECK(g >= 0);
    CHECK(setenv("NW_TEST_SYNC_GATE", gate, 1) == 0);
    early_events[0] = '\0';
    CHECK(append(j, "a", now_ms(), 1000) == 0);
    CHECK(nw_journal_commit_early(j, on_early_written, on_early_done, (void *) (intptr_t) 'A') ==
          0);
    CHECK(wait_events("wA"));
    CHECK(append(j, "a", now_ms(), 1000) == 0);
    CHECK(nw_journal_commit_early(j, on_early_written, on_early_done, (void *) (intptr_t) 'B') ==
          0);
    CHECK(wait_events("wAwB"));
    CHECK(write(g, "..", 2) == 2);
    CHECK(wait_events("wAwBdAdB"));
    CHECK(wait_idle());
    nw_journal_stats(j, &s);
    CHECK(s.records == records + 2 && s.segments == 2);
    CHECK(unsetenv("NW_TEST_SYNC_GATE") == 0);
    close(g);
    unlink(gate);
    close_j(&j);
    j = open_j(&opt);
    if (!j)
        return;
    nw_journal_stats(j, &s);
    CHECK(s.records == records + 2);
    close_j(&j);
}

/* Preparing fails (here a file size limit below it, as a full disk would): the file is
 * removed, it is said once, commits go on, and the next segment tries again. */
TEST_IMPL(prepare_fails)
{
    fresh();
    if (on_tmpfs())
        return;
    nw_journal_options_t opt = defaults();
    opt.sync = true;
    opt.segment_size = 1 << 20;
    char seg[4][300], prep[300], part[300], log[300];
    for (int i = 1; i < 4; i++)
        seg_file((uint64_t) i, seg[i], sizeof seg[i]);
    journal_file("segment.prep", prep, sizeof prep);
    journal_file("segment.prep.part", part, sizeof part);
    struct rlimit saved, tight;
    CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    tight = saved;
    tight.rlim_cur = 200 << 10;
    signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &tight) == 0);
    /* its warning goes to a file */
    snprintf(log, sizeof log, "%s/log", state);
    int lfd = open(log, O_RDWR | O_CREAT | O_TRUNC, 0600), saved_err = dup(2);
    fflush(stderr);
    dup2(lfd, 2);
    nw_log_level_t level = nw_log_get_level();
    nw_log_set_level(NW_LOG_WARNING);
    nw_journal_t *j = open_j(&opt);
    bool failed = j && wait_prepared(j, 1);
    nw_log_set_level(level);
    fflush(stderr);
    dup2(saved_err, 2);
    close(saved_err);
    char warnings[4096];
    ssize_t n = pread(lfd, warnings, sizeof warnings - 1, 0);
    warnings[n > 0 ? n : 0] = '\0';
    close(lfd);
    unlink(log);
    if (!j) {
        setrlimit(RLIMIT_FSIZE, &saved);
        return;
    }
    CHECK(failed);
    CHECK(strstr(warnings, "cannot prepare the next segment (File too large)") != NULL);
    nw_journal_stats_t s;
    nw_journal_stats(j, &s);
    CHECK(s.prepared == 0 && s.prepare_failures == 1);
    CHECK(file_size(prep) < 0 && file_size(part) < 0);
    int st = 0;
    bool ok = true;
    for (int i = 0; i < 10; i++) { /* 240 KB: commits go on below the limit */
        for (int k = 0; k < 2; k++)
            ok &= append(j, "a", now_ms(), 3000) == 0;
        ok &= commit_wait(j, &st) && st == 0;
    }
    CHECK(ok);
    nw_journal_stats(j, &s);
    CHECK(s.prepare_failures == 1 && s.prepared == 0 && s.records == 20);
    CHECK(file_size(prep) < 0 && file_size(part) < 0);

    /* room again: tried at the next segment, which the one after takes */
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    CHECK(fill(j, 2, UINT64_MAX));
    CHECK(wait_prepared(j, 0));
    ino_t ino = inode_of(prep);
    CHECK(ino != 0 && inode_of(seg[2]) != ino);
    CHECK(fill(j, 3, UINT64_MAX));
    CHECK(inode_of(seg[3]) == ino);
    nw_journal_stats(j, &s);
    CHECK(s.prepare_failures == 1 && s.failures == 0);
    close_j(&j);
}

/* Retention by size counts what the journal holds on disk: the zeros ahead of the
 * records and the prepared segment as well as the records. */
TEST_IMPL(prepared_retention)
{
    fresh();
    if (on_tmpfs())
        return;
    nw_journal_options_t opt = defaults();
    opt.sync = true;
    opt.segment_size = 64 << 10;
    opt.max_size = 320 << 10;
    nw_journal_t *j = open_j(&opt);
    if (!j)
        return;
    bool within = true, ok = true;
    int st = 0;
    uint64_t most = 0;
    for (int i = 0; i < 150; i++) {
        for (int k = 0; k < 2; k++)
            ok &= append(j, "a", now_ms(), 3000) == 0;
        ok &= commit_wait(j, &st) && st == 0;
        uint64_t held = folder_bytes();
        within &= held <= opt.max_size;
        most = held > most ? held : most;
    }
    CHECK(ok);
    if (!within)
        fprintf(stderr, "the journal's files reached %" PRIu64 " bytes\n", most);
    CHECK(within);
    nw_journal_stats_t s;
    nw_journal_stats(j, &s);
    CHECK(s.segments >= 3 && (int) s.segments == count_segments());
    uint64_t data = 0;
    for (uint64_t i = 1; i < 200; i++) {
        char path[300];
        seg_file(i, path, sizeof path);
        data += file_size(path) > 0 ? (uint64_t) frames_end(path) : 0;
    }
    CHECK(s.bytes == data);
    uint64_t oldest;
    cursor_seqs(j, "a", 0, &oldest, true);
    CHECK(oldest > 1);
    close_j(&j);
}

/* A real ext4 of its own (a loop device), when this sandbox lets us make one: the path
 * it is mounted at is state; 0, or -1 (skipped, said why). */
static char loop_dev[64];
static int mount_small_ext4(const char *image, off_t size)
{
    int img = open(image, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (img < 0 || ftruncate(img, size) != 0) {
        nw_test_skip("cannot make %s: %s", image, strerror(errno));
        if (img >= 0)
            close(img);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execl("/usr/sbin/mkfs.ext4", "mkfs.ext4", "-q", "-F", "-m", "0", image, (char *) NULL);
        _exit(127);
    }
    int status = -1;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        nw_test_skip("cannot run mkfs.ext4 on %s", image);
        close(img);
        return -1;
    }
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    int n = ctl >= 0 ? ioctl(ctl, LOOP_CTL_GET_FREE) : -1;
    if (ctl >= 0)
        close(ctl);
    snprintf(loop_dev, sizeof loop_dev, "/dev/loop%d", n);
    int dev = n >= 0 ? open(loop_dev, O_RDWR | O_CLOEXEC) : -1;
    if (dev < 0 || ioctl(dev, LOOP_SET_FD, img) != 0) {
        nw_test_skip("no loop device (%s)", strerror(errno));
        if (dev >= 0)
            close(dev);
        close(img);
        return -1;
    }
    close(img);
    if (mount(loop_dev, state, "ext4", 0, NULL) != 0) {
        nw_test_skip("cannot mount an ext4 (%s)", strerror(errno));
        ioctl(dev, LOOP_CLR_FD, 0);
        close(dev);
        return -1;
    }
    close(dev);
    return 0;
}

static void unmount_small_ext4(void)
{
    CHECK(umount2(state, 0) == 0);
    int dev = open(loop_dev, O_RDWR | O_CLOEXEC);
    if (dev >= 0) {
        ioctl(dev, LOOP_CLR_FD, 0);
        close(dev);
    }
}

/* Restart the journal with its third segment (full-sized) all but full and nothing of
 * the next one made, as a crash while it was half made leaves it. */
static nw_journal_t *restart_near_end(nw_journal_t *j, nw_journal_options_t *opt)
{
    char seg[300], prep[300], part[300];
    seg_file(3, seg, sizeof seg);
    journal_file("segment.prep", prep, sizeof prep);
    journal_file("segment.prep.part", part, sizeof part);
    nw_journal_stats_t s;
    CHECK(fill(j, 3, UINT64_MAX));
    nw_journal_stats(j, &s);
    CHECK(fill(j, 4, s.bytes - (uint64_t) frames_end(seg) + opt->segment_size - (160 << 10)));
    nw_journal_stats(j, &s);
    CHECK(s.segments == 3);
    close_j(&j);
    CHECK(as_crashed(seg, (off_t) opt->segment_size));
    unlink(prep);
    unlink(part);
    return open_j(opt);
}

/* The disk fills while the next segment waits (in the journal's file name, size bytes
 * of it made), on a fresh journal or one restarted near the end of a segment: the
 * commits into the current segment's zeros need no room, and the first past them (after
 * more than min of them) finds none; it removes that file, which is said once as a
 * preparation failure, and the commits go on in its room. */
static void disk_full_while_waiting(off_t image_size, uint64_t segment_size, bool near_end,
                                    const char *name, off_t size, int min)
{
    fresh();
    char image[300];
    snprintf(image, sizeof image, "%s.img", state);
    if (mount_small_ext4(image, image_size) != 0) {
        unlink(image);
        return;
    }
    nw_journal_options_t opt = defaults();
    opt.sync = true;
    opt.segment_size = segment_size;
    nw_journal_t *j = open_j(&opt);
    if (j && near_end)
        j = restart_near_end(j, &opt);
    char file[300], filler[300];
    journal_file(name, file, sizeof file);
    snprintf(filler, sizeof filler, "%s/filler", state);
    if (j) {
        CHECK(wait_idle());
        CHECK(file_size(file) == size);
        uint64_t base = nw_journal_last_seq(j, "a");
        /* fill the disk */
        int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        static const char block[64 << 10];
        while (fd >= 0 && write(fd, block, sizeof block) > 0)
            ;
        while (fd >= 0 && write(fd, block, 512) > 0)
            ;
        CHECK(errno == ENOSPC);
        if (fd >= 0) {
            fsync(fd);
            close(fd);
        }
        int st = 0, before = 0;
        for (int i = 0; i < 100 && st == 0; i++) {
            for (int k = 0; k < 8; k++)
                CHECK(append(j, "a", now_ms(), 3000) == 0);
            CHECK(commit_wait(j, &st));
            before += st == 0;
        }
        CHECK(st == -ENOSPC && before > min);
        CHECK(wait_idle());
        nw_journal_stats_t s;
        nw_journal_stats(j, &s);
        CHECK(s.prepared == 0 && s.prepare_failures == 1 && file_size(file) < 0);
        int after = 0;
        for (int i = 0; i < 10; i++) {
            for (int k = 0; k < 8; k++)
                CHECK(append(j, "a", now_ms(), 3000) == 0);
            CHECK(commit_wait(j, &st));
            after += st == 0;
        }
        CHECK(after == 10);
        close_j(&j);
        j = open_j(&opt);
        CHECK(j && nw_journal_last_seq(j, "a") == base + (uint64_t) (before + after) * 8);
        close_j(&j);
    }
    unmount_small_ext4();
    unlink(image);
}

/* A prepared segment ready. */
TEST_IMPL(prepared_disk_full)
{
    disk_full_while_waiting(16 << 20, 1 << 20, false, "segment.prep", 1 << 20, 20);
}

/* A half-made one: its lead, waiting for records (too few come before the disk is full
 * for its next step), begun after a restart near the end of a segment. */
TEST_IMPL(half_made_disk_full)
{
    disk_full_while_waiting(64 << 20, 8 << 20, true, "segment.prep.part", 4 << 20, 3);
}

/* ENOSPC from a real full file system, when this sandbox lets us mount one. */
TEST_IMPL(disk_full)
{
    fresh();
    if (mount("tmpfs", state, "tmpfs", 0, "size=64k") != 0) {
        nw_test_skip("cannot mount a tmpfs (%s)", strerror(errno));
        return;
    }
    nw_journal_options_t opt = defaults();
    nw_journal_t *j = open_j(&opt);
    if (j) {
        int st = 0;
        uint64_t durable = 0;
        for (int i = 0; i < 100 && st == 0; i++) {
            /* 3000 bytes: each write (message and commit) leaves part of a page free */
            CHECK(append(j, "a", now_ms(), 3000) == 0);
            if (!commit_wait(j, &st))
                break;
            if (st == 0)
                durable = nw_journal_last_seq(j, "a");
        }
        CHECK(st == -ENOSPC);
        CHECK(durable > 0 && nw_journal_last_seq(j, "a") == durable);
        CHECK(append(j, "a", now_ms(), 0) == 0); /* small enough to fit after all */
        CHECK(commit_wait(j, &st) && st == 0);
        close_j(&j);
        j = open_j(&opt);
        CHECK(j && nw_journal_last_seq(j, "a") == durable + 1);
        close_j(&j);
    }
    CHECK(umount2(state, MNT_DETACH) == 0);
}

/* Segments with no readable checkpoint: the epoch is lost, a new one starts in a new
 * segment and holds across the next open; the seqs found are kept. */
TEST_IMPL(no_checkpoint)
{
    fresh();
    nw_journal_options_t opt = defaults();
    nw_journal_t *j = open_j(&opt);
    if (!j)
        return;
    CHECK(append(j, "a", 1000, 0) == 0);
    CHECK(append(j, "a", 1000, 0) == 0);
    char old[33];
    snprintf(old, sizeof old, "%s", nw_journal_epoch(j));
    close_j(&j);
    /* wreck the checkpoint's payload (its first frame) */
    char path[300];
    seg_file(1, path, sizeof path);
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pwrite(fd, "\xff\xff", 2, 14) == 2);
    close(fd);

    j = open_j(&opt);
    if (!j)
        return;
    char epoch[33];
    snprintf(epoch, sizeof epoch, "%s", nw_journal_epoch(j));
    CHECK(strlen(epoch) == 32 && strcmp(epoch, old) != 0);
    CHECK(nw_journal_last_seq(j, "a") == 2);
    nw_journal_stats_t s;
    nw_journal_stats(j, &s);
    CHECK(s.discarded == 1 && s.segments == 2);
    close_j(&j);
    j = open_j(&opt);
    if (!j)
        return;
    CHECK_STR(nw_journal_epoch(j), epoch);
    close_j(&j);
}

/* Offsets of the records of a segment, in order (at most max). */
static int frame_offsets(const char *path, off_t *out, int max)
{
    int fd = open(path, O_RDONLY), n = 0;
    unsigned char h[12];
    off_t off = 0, size = file_size(path);
    while (fd >= 0 && n < max && pread(fd, h, 12, off) == 12 && le32(h) == 0x314a574eu &&
           off + 12 + (off_t) le32(h + 4) <= size) {
        out[n++] = off;
        off += 12 + (off_t) le32(h + 4);
    }
    if (fd >= 0)
        close(fd);
    return n;
}

/* What recovery may and may not conclude from what it reads (journal_recover.c, recovery_t):
 * damage a commit accounts for keeps the epoch; a whole write lost, a damaged last
 * write that is not a cut one, or a lost newest segment start a new epoch whose seqs go
 * on above the highest held, and which lasts. */
TEST_IMPL(lost_seqs)
{
    fresh();
    nw_journal_options_t opt = defaults();
    nw_journal_t *j = open_j(&opt);
    if (!j)
        return;
    int st;
    const char *topics[] = {"a", "a", "b", "a"};
    for (int i = 0; i < 4; i++) { /* one write each: a-1, a-2, b-1, a-3 */
        CHECK(append(j, topics[i], 1000, 40) == 0);
        CHECK(commit_wait(j, &st) && st == 0);
    }
    char epoch[33];
    snprintf(epoch, sizeof epoch, "%s", nw_journal_epoch(j));
    close_j(&j);
    char path[300];
    seg_file(1, path, sizeof path);
    off_t f[16];
    /* checkpoint, commit, a-1, commit, a-2, commit, b-1, commit, a-3, commit */
    CHECK(frame_offsets(path, f, 16) == 10);
    unsigned char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char) (i * 7 % 251 + 1);

    /* a-2's payload damaged, its commit intact: same epoch, a goes on at 4 */
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pwrite(fd, junk, 4, f[4] + 20) == 4);
    close(fd);
    j = open_j(&opt);
    if (!j)
        return;
    CHECK_STR(nw_journal_epoch(j), epoch);
    CHECK(nw_journal_last_seq(j, "a") == 3 && nw_journal_last_seq(j, "b") == 1);
    close_j(&j);

    /* the last commit damaged (a-3 read whole before it): cut as a torn tail, same epoch */
    fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pwrite(fd, junk, 4, f[9] + 14) == 4);
    close(fd);
    char warnings[4096];
    j = open_logged(&opt, warnings, sizeof warnings);
    if (!j)
        return;
    CHECK(strstr(warnings, "torn tail") != NULL && strstr(warnings, "new epoch") == NULL);
    CHECK_STR(nw_journal_epoch(j), epoch);
    CHECK(nw_journal_last_seq(j, "a") == 3 && file_size(path) == f[9]);
    CHECK(append(j, "a", 1000, 40) == 0); /* a-4 and a commit again at the end */
    CHECK(commit_wait(j, &st) && st == 0);
    close_j(&j);

    /* b-1 and its commit overwritten: nothing says b got to 1: new epoch, b from 1 */
    fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pwrite(fd, junk, (size_t) (f[8] - f[6]), f[6]) == f[8] - f[6]);
    close(fd);
    j = open_logged(&opt, warnings, sizeof warnings);
    if (!j)
        return;
    CHECK(strstr(warnings, "cannot tell the last seqs published") != NULL);
    char e2[33];
    snprintf(e2, sizeof e2, "%s", nw_journal_epoch(j));
    CHECK(strcmp(e2, epoch) != 0);
    CHECK(nw_journal_last_seq(j, "a") == 4 && nw_journal_last_seq(j, "b") == 0);
    nw_journal_stats_t s;
    nw_journal_stats(j, &s);
    CHECK(s.segments == 2);
    CHECK(append(j, "b", 1000, 0) == 0);
    CHECK(commit_wait(j, &st) && st == 0);
    close_j(&j);
    /* the new epoch's checkpoint accounts for the old damage: it lasts */
    j = open_logged(&opt, warnings, sizeof warnings);
    if (!j)
        return;
    CHECK_STR(nw_journal_epoch(j), e2);
    CHECK(strstr(warnings, "new epoch") == NULL);
    CHECK(nw_journal_last_seq(j, "b") == 1);
    close_j(&j);

    /* the last write overwritten in place (not what a cut write leaves): new epoch */
    seg_file(2, path, sizeof path);
    CHECK(frame_offsets(path, f, 16) == 4); /* checkpoint, commit, b-1, commit */
    off_t size = file_size(path);
    fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pwrite(fd, junk, (size_t) (size - f[2]), f[2]) == size - f[2]);
    close(fd);
    j = open_logged(&opt, warnings, sizeof warnings);
    if (!j)
        return;
    CHECK(strstr(warnings, "garbage at the end") != NULL);
    CHECK(strcmp(nw_journal_epoch(j), e2) != 0 && strcmp(nw_journal_epoch(j), epoch) != 0);
    CHECK(nw_journal_last_seq(j, "b") == 0 && nw_journal_last_seq(j, "a") == 4);
    close_j(&j);

    /* rotation seals the old segment; losing the newest is then caught */
    fresh();
    opt.segment_size = 4096;
    j = open_j(&opt);
    if (!j)
        return;
    for (int i = 0; i < 12; i++) {
        CHECK(append(j, "a", 1000, 1000) == 0);
        CHECK(commit_wait(j, &st) && st == 0);
    }
    snprintf(epoch, sizeof epoch, "%s", nw_journal_epoch(j));
    nw_journal_stats(j, &s);
    uint64_t nsegs = s.segments;
    CHECK(nsegs >= 3);
    close_j(&j);
    seg_file(nsegs, path, sizeof path);
    CHECK(unlink(path) == 0);
    j = open_logged(&opt, warnings, sizeof warnings);
    if (!j)
        return;
    CHECK(strstr(warnings, "is missing") != NULL && strstr(warnings, "was sealed") != NULL);
    CHECK(strcmp(nw_journal_epoch(j), epoch) != 0);
    CHECK(nw_journal_last_seq(j, "a") < 12 && nw_journal_last_seq(j, "a") > 0);
    nw_journal_stats(j, &s);
    CHECK(s.segments == nsegs); /* the new epoch took the lost number */
    snprintf(e2, sizeof e2, "%s", nw_journal_epoch(j));
    close_j(&j);
    /* a middle segment lost: the next checkpoint holds every seq, the epoch stays */
    seg_file(2, path, sizeof path);
    CHECK(unlink(path) == 0);
    j = open_logged(&opt, warnings, sizeof warnings);
    if (!j)
        return;
    CHECK(strstr(warnings, "000000000002.nwj is missing: its messages cannot be replayed"));
    CHECK_STR(nw_journal_epoch(j), e2);
    close_j(&j);
}

TEST_IMPL(cursor)
{
    fresh();
    nw_journal_options_t opt = defaults();
    nw_journal_t *j = open_j(&opt);
    if (!j)
        return;
    for (int i = 0; i < 5; i++) {
        CHECK(append(j, "a", 1000, 0) == 0);
        CHECK(append(j, "b", 1000, 0) == 0);
    }
    int st;
    CHECK(commit_wait(j, &st) && st == 0);
    uint64_t oldest = 99;
    CHECK_STR(cursor_seqs(j, "a", 3, &oldest, true), "3,4,5");
    CHECK(oldest == 1);
    CHECK_STR(cursor_seqs(j, "b", 0, &oldest, true), "1,2,3,4,5");
    CHECK_STR(cursor_seqs(j, "zz", 1, &oldest, true), "(null)");
    CHECK(oldest == 0);
    CHECK_STR(cursor_seqs(j, "a", 6, &oldest, true), "");
    /* only what is durable: a-6 is appended, not yet written */
    CHECK(append(j, "a", 1000, 0) == 0);
    CHECK_STR(cursor_seqs(j, "a", 4, &oldest, true), "4,5");
    CHECK(commit_wait(j, &st) && st == 0);
    CHECK_STR(cursor_seqs(j, "a", 4, &oldest, true), "4,5,6");
    close_j(&j);
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own fd */
}

/* A cursor opens segments as it reaches them, one at a time, gives its file and buffer
 * back when released, and reports a segment retired before it got there as ENOENT. */
TEST_IMPL(cursor_lazy)
{
    fresh();
    nw_journal_options_t opt = defaults();
    opt.segment_size = 256;
    nw_journal_t *j = open_j(&opt);
    if (!j)
        return;
    int st;
    bool ok = true;
    for (int i = 0; i < 12; i++) {
        ok &= append(j, "a", now_ms(), 200) == 0;
        ok &= commit_wait(j, &st) && st == 0;
    }
    CHECK(ok);
    nw_journal_stats_t s;
    nw_journal_stats(j, &s);
    CHECK(s.segments >= 10);
    int base = open_fds();
    uint64_t oldest, seq, want = 1;
    const void *msg;
    size_t len;
    nw_journal_cursor_t *c = nw_journal_cursor_new(j, "a", 1, &oldest);
    CHECK(c != NULL && oldest == 1);
    if (!c)
        return;
    CHECK(open_fds() == base); /* nothing opened up front */
    CHECK(!nw_journal_cursor_holds_file(c));
    int rc, most = 0;
    while ((rc = nw_journal_cursor_next(c, &seq, &msg, &len)) == 1) {
        CHECK(seq == want);
        want++;
        int now = open_fds() - base;
        most = now > most ? now : most;
        if (seq == 5) { /* released mid-stream: goes on where it was */
            nw_journal_cursor_release(c, true);
            CHECK(!nw_journal_cursor_holds_file(c));
            CHECK(open_fds() == base);
        }
    }
    CHECK(rc == 0 && want == 13);
    CHECK(most == 1);
    CHECK(open_fds() == base); /* closed once read to the end */
    nw_journal_cursor_destroy(&c);

    /* retirement before the cursor gets there: ENOENT, not a silent skip */
    c = nw_journal_cursor_new(j, "a", 1, &oldest);
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK(nw_journal_cursor_next(c, &seq, &msg, &len) == 1 && seq == 1);
    nw_journal_cursor_release(c, true);
    close_j(&j);
    opt.max_size = 1024; /* retires the oldest segments at the next write */
    j = open_j(&opt);
    if (!j)
        return;
    CHECK(append(j, "a", now_ms(), 200) == 0);
    CHECK(commit_wait(j, &st) && st == 0);
    CHECK(nw_journal_oldest_seq(j, "a") > 2);
    errno = 0;
    while ((rc = nw_journal_cursor_next(c, &seq, &msg, &len)) == 1)
        ;
    CHECK(rc == -1 && errno == ENOENT);
    nw_journal_cursor_destroy(&c);
    CHECK(open_fds() == base);
    CHECK(nw_journal_oldest_seq(j, "zz") == 0);
    close_j(&j);
}

/* Each case: its own temporary state folder and loop, both left clean. */
static int setup(void)
{
    nw_log_set_level(getenv("NWJ_DEBUG") ? NW_LOG_DEBUG
                                         : NW_LOG_ERR); /* recovery warnings are expected here */
    snprintf(state, sizeof state, "/tmp/nwj-test-XXXXXX");
    if (!mkdtemp(state)) {
        perror("mkdtemp");
        return -1;
    }
    uv_loop_init(&loop);
    return 0;
}
TEST_SETUP(setup)

static void teardown(void)
{
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
    rm_rf(state);
}
TEST_TEARDOWN(teardown)
