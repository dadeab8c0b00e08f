/* test_watch: the drop-folder watcher against real inotify, real temporary folders and
 * a real libuv loop. Waiting is bounded: every wait runs the loop until the expected
 * report arrives or a guard timer fires, and a timeout is a failed check. To know that
 * an event did NOT produce a report, a sentinel file is renamed in afterwards: inotify
 * queues in order, so once the sentinel is reported the earlier events were handled. */
#include "runner.h"
#include "watch.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static uv_loop_t test_loop; /* the cases' own; watch_limit's child makes another */

#define WAIT_MS 5000
/* for what the watcher's tick does (once a second): a few ticks, with room for load */
#define TICK_WAIT_MS (10 * NW_WATCH_TICK_MS)

typedef struct {
    char **items;
    size_t count, cap;
    nw_watch_t **destroy_on_report; /* for the destroy-from-callback test */
    size_t hold_every;              /* ask to hold after every this many reports */
} reports_t;

static int on_report(void *arg, const char *subdir, const char *name)
{
    reports_t *r = arg;
    if (r->count == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 64;
        r->items = realloc(r->items, r->cap * sizeof *r->items);
        if (!r->items)
            abort();
    }
    char buf[1024];
    snprintf(buf, sizeof buf, "%s%s%s", subdir, *subdir ? "/" : "", name);
    r->items[r->count++] = strdup(buf);
    if (r->destroy_on_report)
        nw_watch_destroy(r->destroy_on_report);
    return r->hold_every && r->count % r->hold_every == 0;
}

static void reports_clear(reports_t *r)
{
    for (size_t i = 0; i < r->count; i++)
        free(r->items[i]);
    r->count = 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

static size_t count_of(const reports_t *r, const char *item)
{
    size_t n = 0;
    for (size_t i = 0; i < r->count; i++)
        n += strcmp(r->items[i], item) == 0;
    return n;
}

static void on_guard(uv_timer_t *timer)
{
    *(bool *) timer->data = true;
}

/* Run the loop until item has been reported (or, with item NULL, until done() says so),
 * at most ms. */
static bool wait_until_ms(uv_loop_t *loop, reports_t *r, const char *item, bool (*done)(void *),
                          void *arg, uint64_t ms)
{
    bool expired = false;
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    guard.data = &expired;
    /* The loop's clock stands still between turns: without this the guard counts from
     * the last turn, and work done since (creating thousands of files under valgrind)
     * could spend the whole wait before a single event is read. */
    uv_update_time(loop);
    uv_timer_start(&guard, on_guard, ms, 0);
    bool ok;
    while (!(ok = item ? count_of(r, item) > 0 : done(arg)) && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *) &guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    if (!ok)
        fprintf(stderr, "timed out waiting for %s\n", item ? item : "a condition");
    return ok;
}

/* Run loop turns that do not block until done(arg), at most max_turns: for events the
 * kernel has already queued, which need loop turns to be read, not time. */
static bool drain_until(uv_loop_t *loop, bool (*done)(void *), void *arg, long max_turns)
{
    for (long turn = 0; turn < max_turns; turn++) {
        if (done(arg))
            return true;
        uv_run(loop, UV_RUN_NOWAIT);
    }
    if (!done(arg)) {
        fprintf(stderr, "not done after %ld loop turns\n", max_turns);
        return false;
    }
    return true;
}

static bool wait_until(uv_loop_t *loop, reports_t *r, const char *item, bool (*done)(void *),
                       void *arg)
{
    return wait_until_ms(loop, r, item, done, arg, WAIT_MS);
}

static char root[64];

static void path_of(char *out, size_t len, const char *rel)
{
    snprintf(out, len, "%s/%s", root, rel);
}

/* Create (or overwrite) root/rel with some content, closed; optionally set its mtime. */
static void put(const char *rel, long mtime)
{
    char path[512];
    path_of(path, sizeof path, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    CHECK(write(fd, "x\n", 2) == 2);
    close(fd);
    if (mtime) {
        struct timespec times[2] = {{mtime, 0}, {mtime, 0}};
        CHECK(utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW) == 0);
    }
}

static void move(const char *from, const char *to)
{
    char a[512], b[512];
    path_of(a, sizeof a, from);
    path_of(b, sizeof b, to);
    CHECK(rename(a, b) == 0);
}

static void make_dir(const char *rel)
{
    char path[512];
    path_of(path, sizeof path, rel);
    CHECK(mkdir(path, 0755) == 0);
}

/* Rename a new file into the drop folder and wait for it: every event queued before
 * it has been handled once it is reported. */
static bool sync_with_sentinel_in(uv_loop_t *loop, reports_t *r, const char *dir)
{
    static int n;
    char name[64], rel[160];
    snprintf(name, sizeof name, "sentinel-%d", ++n);
    snprintf(rel, sizeof rel, "%s/%s", dir, name);
    put("sentinel", 0);
    move("sentinel", rel);
    return wait_until(loop, r, name, NULL, NULL);
}

static bool sync_with_sentinel(uv_loop_t *loop, reports_t *r)
{
    return sync_with_sentinel_in(loop, r, "drop");
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st, (void) flag, (void) ftw;
    return remove(path);
}

TEST_IMPL(names)
{
    static const struct {
        const char *name;
        int skipped;
    } table[] = {
        {"story.txt", 0}, {"story", 0},      {"a.tmp.txt", 0},  {"tmp", 0},
        {"x.part1", 0},   {".hidden", 1},    {".", 1},          {"..", 1},
        {"story.tmp", 1}, {"story.part", 1}, {".story.swp", 1}, {"story.swp", 1},
        {"story~", 1},    {"", 1},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        CHECK(nw_watch_name_skipped(table[i].name) == table[i].skipped);
}

TEST_IMPL(new_errors)
{
    uv_loop_t *loop = &test_loop;
    char err[256] = "";
    char path[512];
    path_of(path, sizeof path, "missing");
    CHECK(nw_watch_new(loop, path, on_report, NULL, err, sizeof err) == NULL);
    CHECK(strstr(err, "missing") != NULL);
    put("plain", 0);
    path_of(path, sizeof path, "plain");
    CHECK(nw_watch_new(loop, path, on_report, NULL, err, sizeof err) == NULL);
    CHECK(strstr(err, "not a directory") != NULL);
}

static bool overflowed_and_rescanned(void *arg)
{
    nw_watch_stats_t st;
    nw_watch_stats(arg, &st);
    return st.overflows > 0 && st.rescans > 0;
}

TEST_IMPL(watch)
{
    uv_loop_t *loop = &test_loop;
    char err[256] = "";
    reports_t r = {0};
    make_dir("drop");
    make_dir("drop/sub");
    make_dir("drop/sub/nested");
    put("drop/c", 1000);
    put("drop/a", 3000);
    put("drop/b", 2000);
    put("drop/e", 4000);
    put("drop/d", 4000);
    put("drop/sub/x", 2500);
    put("drop/sub/nested/deep", 1500);
    put("drop/.hidden", 500);
    put("drop/y.tmp", 500);
    char target[512], link_path[512];
    path_of(target, sizeof target, "drop/a");
    path_of(link_path, sizeof link_path, "drop/link");
    CHECK(symlink(target, link_path) == 0);
    struct timespec times[2] = {{5000, 0}, {5000, 0}};
    CHECK(utimensat(AT_FDCWD, link_path, times, AT_SYMLINK_NOFOLLOW) == 0);

    char drop[512];
    path_of(drop, sizeof drop, "drop");
    nw_watch_t *w = nw_watch_new(loop, drop, on_report, &r, err, sizeof err);
    CHECK(w != NULL);
    if (!w) {
        fprintf(stderr, "nw_watch_new: %s\n", err);
        return;
    }
    CHECK(r.count == 0);

    /* backlog: oldest first, then by name; skipped names, folders and depth 2 left out */
    CHECK(nw_watch_start(w, err, sizeof err) == 0);
    static const char *const backlog[] = {"c", "b", "sub/x", "a", "d", "e", "link"};
    CHECK(r.count == sizeof backlog / sizeof backlog[0]);
    for (size_t i = 0; i < r.count && i < sizeof backlog / sizeof backlog[0]; i++)
        CHECK_STR(r.items[i], backlog[i]);
    nw_watch_stats_t st;
    nw_watch_stats(w, &st);
    CHECK(st.subdirs == 1);
    CHECK(st.rescans == 0);
    CHECK(nw_watch_start(w, err, sizeof err) == -1);
    reports_clear(&r);

    /* a file renamed in */
    put("outside-file", 0);
    move("outside-file", "drop/moved");
    CHECK(wait_until(loop, &r, "moved", NULL, NULL));

    /* written: reported once, after close, not on open or write */
    char slow[512];
    path_of(slow, sizeof slow, "drop/slow");
    int fd = open(slow, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, "partial", 7) == 7);
    CHECK(sync_with_sentinel(loop, &r));
    CHECK(count_of(&r, "slow") == 0);
    /* A file created with no close seen is reported after a tick without change: move
     * its mtime so that a tick running before the close is read (a stalled machine)
     * sees a change, and only the close reports it. */
    struct timespec old_times[2] = {{1000, 0}, {1000, 0}};
    CHECK(futimens(fd, old_times) == 0);
    close(fd);
    CHECK(wait_until(loop, &r, "slow", NULL, NULL));
    CHECK(sync_with_sentinel(loop, &r));
    CHECK(count_of(&r, "slow") == 1);

    /* hidden and temporary names wait for their rename */
    put("drop/.incoming", 0);
    put("drop/z.part", 0);
    put("drop/q~", 0);
    CHECK(sync_with_sentinel(loop, &r));
    CHECK(count_of(&r, ".incoming") == 0);
    CHECK(count_of(&r, "z.part") == 0);
    CHECK(count_of(&r, "q~") == 0);
    move("drop/.incoming", "drop/incoming");
    move("drop/z.part", "drop/z");
    CHECK(wait_until(loop, &r, "incoming", NULL, NULL));
    CHECK(wait_until(loop, &r, "z", NULL, NULL));

    /* a file in a subfolder carries the subfolder's name */
    put("drop/sub/live", 0);
    CHECK(wait_until(loop, &r, "sub/live", NULL, NULL));
    put("drop/sub/nested/deeper", 0);
    CHECK(sync_with_sentinel(loop, &r));
    CHECK(count_of(&r, "sub/nested/deeper") == 0 && count_of(&r, "nested/deeper") == 0);

    /* a subfolder made while running, with a file written before the loop sees it */
    make_dir("drop/fresh");
    put("drop/fresh/early", 0);
    CHECK(wait_until(loop, &r, "fresh/early", NULL, NULL));
    put("drop/fresh/late", 0);
    CHECK(wait_until(loop, &r, "fresh/late", NULL, NULL));
    nw_watch_stats(w, &st);
    CHECK(st.subdirs == 2);

    /* a hidden subfolder is ignored until renamed to a normal name */
    make_dir("drop/.staging");
    put("drop/.staging/f", 0);
    CHECK(sync_with_sentinel(loop, &r));
    CHECK(count_of(&r, ".staging/f") == 0);
    move("drop/.staging", "drop/staged");
    CHECK(wait_until(loop, &r, "staged/f", NULL, NULL));
    nw_watch_stats(w, &st);
    CHECK(st.subdirs == 3);

    /* a subfolder moved out is forgotten */
    move("drop/staged", "gone");
    put("gone/g", 0);
    CHECK(sync_with_sentinel(loop, &r));
    CHECK(count_of(&r, "staged/g") == 0);
    nw_watch_stats(w, &st);
    CHECK(st.subdirs == 2);

    /* rescan reports everything there now */
    reports_clear(&r);
    CHECK(nw_watch_rescan(w, err, sizeof err) == 0);
    static const char *const all[] = {
        "a",        "b", "c",     "d",        "e",           "link",       "moved",      "slow",
        "incoming", "z", "sub/x", "sub/live", "fresh/early", "fresh/late", "sentinel-1",
    };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        CHECK(count_of(&r, all[i]) == 1);
    CHECK(count_of(&r, "z.part") == 0 && count_of(&r, "q~") == 0);
    nw_watch_stats(w, &st);
    CHECK(st.rescans == 1);
    CHECK(st.overflows == 0);

    /* a real queue overflow: more events than the kernel queues, while the loop sleeps */
    long max_events = 0;
    FILE *f = fopen("/proc/sys/fs/inotify/max_queued_events", "r");
    if (f) {
        if (fscanf(f, "%ld", &max_events) != 1)
            max_events = 0;
        fclose(f);
    }
    if (max_events > 0 && max_events <= 65536) {
        reports_clear(&r);
        long files = max_events / 2 + 64; /* two events each: create, close-write */
        char rel[64];
        for (long i = 0; i < files; i++) {
            snprintf(rel, sizeof rel, "drop/flood-%ld", i);
            put(rel, 0);
        }
        /* Every event, the overflow marker last, is queued before the loop runs again,
         * and each turn reads at least one of them: a number of turns bounds this wait,
         * not the clock (a 5 s guard failed once under valgrind on a loaded machine). */
        CHECK(drain_until(loop, overflowed_and_rescanned, w, max_events + 2));
        /* Looked up in a sorted copy: a linear count_of per file made this check
         * quadratic (about 10^8 comparisons), over two minutes under valgrind on a
         * loaded machine, past the test's timeout. */
        char **seen = malloc(r.count * sizeof *seen);
        CHECK(seen != NULL);
        size_t missing = 0;
        if (seen) {
            memcpy(seen, r.items, r.count * sizeof *seen);
            qsort(seen, r.count, sizeof *seen, cmp_names);
            for (long i = 0; i < files; i++) {
                snprintf(rel, sizeof rel, "flood-%ld", i);
                const char *key = rel;
                missing += bsearch(&key, seen, r.count, sizeof *seen, cmp_names) == NULL;
            }
            free(seen);
        }
        CHECK(missing == 0);
    } else
        printf("overflow: skipped (max_queued_events %ld)\n", max_events);

    /* stopped: no more reports */
    nw_watch_stop(w);
    nw_watch_stop(w);
    reports_clear(&r);
    put("drop/after-stop", 0);
    for (int i = 0; i < 10; i++)
        uv_run(loop, UV_RUN_NOWAIT);
    CHECK(r.count == 0);
    CHECK(nw_watch_rescan(w, err, sizeof err) == -1);
    nw_watch_destroy(&w);
    CHECK(w == NULL);
    nw_watch_destroy(&w);
    uv_run(loop, UV_RUN_NOWAIT);
    reports_clear(&r);
    free(r.items);
}

/* Many files: sorted by mtime, without trouble. */
TEST_IMPL(large_backlog)
{
    uv_loop_t *loop = &test_loop;
    enum { N = 3000 };
    char err[256] = "";
    reports_t r = {0};
    make_dir("big");
    char rel[64];
    for (int i = 0; i < N; i++) {
        snprintf(rel, sizeof rel, "big/n%d", i);
        put(rel, 1000000 + (long) ((i * 7919) % N)); /* distinct, shuffled */
    }
    char dir[512];
    path_of(dir, sizeof dir, "big");
    nw_watch_t *w = nw_watch_new(loop, dir, on_report, &r, err, sizeof err);
    CHECK(w && nw_watch_start(w, err, sizeof err) == 0);
    CHECK(r.count == N);
    long prev = -1;
    bool sorted = true;
    for (size_t i = 0; i < r.count; i++) {
        long k = atol(r.items[i] + 1);
        long m = (k * 7919) % N;
        sorted = sorted && m > prev;
        prev = m;
    }
    CHECK(sorted);
    nw_watch_destroy(&w);
    uv_run(loop, UV_RUN_NOWAIT);
    reports_clear(&r);
    free(r.items);
}

/* A consumer that asks to hold gets a scan in slices, still oldest first, while events
 * keep coming; a rescan while held replaces the held rest with what is there now. */
TEST_IMPL(paced_backlog)
{
    uv_loop_t *loop = &test_loop;
    enum { N = 2000, SLICE = 300 };
    char err[256] = "";
    reports_t r = {.hold_every = SLICE};
    make_dir("paced");
    char rel[64];
    for (int i = 0; i < N; i++) {
        snprintf(rel, sizeof rel, "paced/n%d", i);
        put(rel, 1000000 + (long) ((i * 7919) % N));
    }
    char dir[512];
    path_of(dir, sizeof dir, "paced");
    nw_watch_t *w = nw_watch_new(loop, dir, on_report, &r, err, sizeof err);
    CHECK(w && nw_watch_start(w, err, sizeof err) == 0);
    nw_watch_stats_t st;
    nw_watch_stats(w, &st);
    CHECK(r.count == SLICE);
    CHECK(st.backlog == N - SLICE);

    /* an event is reported while the scan is held */
    put("late", 0);
    move("late", "paced/late");
    CHECK(wait_until(loop, &r, "late", NULL, NULL));
    CHECK(r.count == SLICE + 1);

    /* a rescan while held: the held rest is replaced by the whole folder, oldest first */
    CHECK(nw_watch_rescan(w, err, sizeof err) == 0);
    nw_watch_stats(w, &st);
    CHECK(st.backlog == N + 1);
    size_t rescan_start = SLICE + 1;

    for (int rounds = 0; rounds < 2 * N / SLICE + 4 && st.backlog; rounds++) {
        size_t before = r.count;
        nw_watch_resume(w);
        nw_watch_stats(w, &st);
        CHECK(r.count > before);
    }
    CHECK(st.backlog == 0);
    CHECK(r.count == rescan_start + N + 1);
    /* the rescan's reports are all N files and late, oldest first (late is newest) */
    long prev = -1;
    bool sorted = true;
    for (size_t i = rescan_start; i < rescan_start + N; i++) {
        long k = atol(r.items[i] + 1);
        long m = (k * 7919) % N;
        sorted = sorted && r.items[i][0] == 'n' && m > prev;
        prev = m;
    }
    CHECK(sorted);
    CHECK_STR(r.items[rescan_start + N], "late");
    nw_watch_resume(w); /* nothing held: nothing happens */
    CHECK(r.count == rescan_start + N + 1);
    nw_watch_destroy(&w);
    uv_run(loop, UV_RUN_NOWAIT);
    reports_clear(&r);
    free(r.items);
}

static bool drop_missing(void *arg)
{
    nw_watch_stats_t st;
    nw_watch_stats(arg, &st);
    return st.drop_missing;
}

static bool drop_watched(void *arg)
{
    nw_watch_stats_t st;
    nw_watch_stats(arg, &st);
    return !st.drop_missing && !st.drop_polled && !*nw_watch_problem(arg);
}

/* Entries that appear without a write (IN_CREATE only) are reported: at once when they
 * are not regular files or are hard links, after a tick without change otherwise (no
 * close will come), and an O_TMPFILE when its writer closes it. */
TEST_IMPL(created_in_place)
{
    uv_loop_t *loop = &test_loop;
    char err[256] = "", dir[512], path[512], target[512];
    reports_t r = {0};
    make_dir("inplace");
    path_of(dir, sizeof dir, "inplace");
    nw_watch_t *w = nw_watch_new(loop, dir, on_report, &r, err, sizeof err);
    CHECK(w && nw_watch_start(w, err, sizeof err) == 0);
    put("outside-a", 0);
    put("outside-b", 0);
    path_of(target, sizeof target, "outside-a");

    path_of(path, sizeof path, "inplace/fifo");
    CHECK(mkfifo(path, 0600) == 0);
    CHECK(wait_until(loop, &r, "fifo", NULL, NULL));
    path_of(path, sizeof path, "inplace/symlink");
    CHECK(symlink(target, path) == 0);
    CHECK(wait_until(loop, &r, "symlink", NULL, NULL));
    path_of(path, sizeof path, "inplace/hard");
    CHECK(link(target, path) == 0);
    CHECK(wait_until(loop, &r, "hard", NULL, NULL));

    /* linked in from an O_TMPFILE: reported at its close, under its name */
    int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0) {
        CHECK(write(fd, "x\n", 2) == 2);
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        path_of(path, sizeof path, "inplace/tmpfile");
        CHECK(linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0);
        close(fd);
        CHECK(wait_until(loop, &r, "tmpfile", NULL, NULL));
        CHECK(r.count > 0 && r.items[r.count - 1][0] != '#'); /* not the kernel's name */
        char kernel_name[32];
        struct stat st;
        CHECK(stat(path, &st) == 0);
        snprintf(kernel_name, sizeof kernel_name, "#%llu", (unsigned long long) st.st_ino);
        CHECK(sync_with_sentinel_in(loop, &r, "inplace"));
        CHECK(count_of(&r, kernel_name) == 0);
    } else
        printf("O_TMPFILE: skipped (%s)\n", strerror(errno));

    /* a hard link whose other name is gone before the event is read: one name, no
     * close, reported after a tick without change */
    char b[512];
    path_of(b, sizeof b, "outside-b");
    path_of(path, sizeof path, "inplace/lone");
    CHECK(link(b, path) == 0);
    CHECK(unlink(b) == 0);
    CHECK(wait_until_ms(loop, &r, "lone", NULL, NULL, TICK_WAIT_MS));
    CHECK(count_of(&r, "lone") == 1);
    nw_watch_destroy(&w);
    uv_run(loop, UV_RUN_NOWAIT);
    reports_clear(&r);
    free(r.items);
}

/* The drop folder deleted, moved away, or its parent renamed: noticed (by its events,
 * or by the tick for the parent), said by nw_watch_problem, and once a folder is back
 * at the path it is watched and rescanned: on the tick, or at once by nw_watch_retry. */
TEST_IMPL(drop_folder_lost)
{
    uv_loop_t *loop = &test_loop;
    char err[256] = "", dir[512], path[512];
    reports_t r = {0};
    make_dir("anc");
    make_dir("anc/gone");
    make_dir("anc/gone/sub");
    path_of(dir, sizeof dir, "anc/gone");
    nw_watch_t *w = nw_watch_new(loop, dir, on_report, &r, err, sizeof err);
    CHECK(w && nw_watch_start(w, err, sizeof err) == 0);
    CHECK(*nw_watch_problem(w) == '\0');

    /* deleted: known from its events */
    path_of(path, sizeof path, "anc/gone");
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    CHECK(wait_until(loop, &r, NULL, drop_missing, w));
    CHECK(strstr(nw_watch_problem(w), "DROP FOLDER MISSING") != NULL);
    CHECK(nw_watch_rescan(w, err, sizeof err) == -1);
    /* back, with a file and a subfolder: a retry (SIGHUP) watches and rescans at once */
    make_dir("anc/gone");
    make_dir("anc/gone/sub");
    put("anc/gone/back", 0);
    put("anc/gone/sub/deep", 0);
    nw_watch_retry(w);
    CHECK(count_of(&r, "back") == 1 && count_of(&r, "sub/deep") == 1);
    CHECK(drop_watched(w));
    put("anc/gone/sub/live", 0);
    CHECK(wait_until(loop, &r, "sub/live", NULL, NULL));

    /* moved away: the moved folder is not watched any more; a new one is, on the tick */
    move("anc/gone", "anc/moved");
    CHECK(wait_until(loop, &r, NULL, drop_missing, w));
    put("anc/moved/stale", 0);
    make_dir("anc/gone");
    put("anc/gone/new", 0);
    CHECK(wait_until_ms(loop, &r, "new", NULL, NULL, TICK_WAIT_MS));
    CHECK(drop_watched(w));
    CHECK(count_of(&r, "stale") == 0);

    /* its parent renamed: no event reaches the folder; the tick sees the path changed */
    move("anc", "anc2");
    CHECK(wait_until_ms(loop, &r, NULL, drop_missing, w, TICK_WAIT_MS));
    make_dir("anc");
    make_dir("anc/gone");
    put("anc/gone/again", 0);
    CHECK(wait_until_ms(loop, &r, "again", NULL, NULL, TICK_WAIT_MS));
    CHECK(drop_watched(w));
    CHECK(count_of(&r, "new") == 1); /* the rescan of the new folder only */
    nw_watch_destroy(&w);
    uv_run(loop, UV_RUN_NOWAIT);
    reports_clear(&r);
    free(r.items);
}

static int write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    return n == (ssize_t) strlen(text) ? 0 : -1;
}

/* This process in a user namespace of its own (mapped to our uid) whose inotify watch
 * limit is n: the system's limit is left alone. */
static int limit_watches(int n)
{
    char map[64], limit[32];
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned) geteuid());
    snprintf(limit, sizeof limit, "%d\n", n);
    if (unshare(CLONE_NEWUSER) != 0 || write_file("/proc/self/uid_map", map) != 0)
        return -1;
    return write_file("/proc/sys/user/max_inotify_watches", limit);
}

static bool none_unwatched(void *arg)
{
    nw_watch_stats_t st;
    nw_watch_stats(arg, &st);
    return st.unwatched == 0 && !*nw_watch_problem(arg);
}

/* Subfolders beyond the watch limit are scanned at start and every tick, said by
 * nw_watch_problem, and watched once a retry finds room. In a child process, whose
 * user namespace has room for 2 watches: the folder and one of its three subfolders. */
static void watch_limit_child(void)
{
    char err[256] = "", dir[512];
    reports_t r = {0};
    uv_loop_t loop;
    uv_loop_init(&loop);
    make_dir("limited");
    static const char *const subs[] = {"a", "b", "c"};
    char rel[64], name[64];
    for (int i = 0; i < 3; i++) {
        snprintf(rel, sizeof rel, "limited/%s", subs[i]);
        make_dir(rel);
        snprintf(rel, sizeof rel, "limited/%s/early", subs[i]);
        put(rel, 1000);
    }
    path_of(dir, sizeof dir, "limited");
    nw_watch_t *w = nw_watch_new(&loop, dir, on_report, &r, err, sizeof err);
    CHECK(w && nw_watch_start(w, err, sizeof err) == 0);
    nw_watch_stats_t st;
    nw_watch_stats(w, &st);
    CHECK(st.subdirs == 1 && st.unwatched == 2);
    CHECK(strstr(nw_watch_problem(w), "2 SUBFOLDERS NOT WATCHED (the inotify watch limit") !=
          NULL);
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "%s/early", subs[i]);
        CHECK(count_of(&r, name) == 1);
    }
    /* files arriving in every subfolder: watched or polled, each is reported (a polled
     * one once it has not changed for a tick) */
    for (int i = 0; i < 3; i++) {
        snprintf(rel, sizeof rel, "limited/%s/live", subs[i]);
        put(rel, 0);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "%s/live", subs[i]);
        CHECK(wait_until_ms(&loop, &r, name, NULL, NULL, TICK_WAIT_MS));
    }
    /* room again: a retry watches them, and a file is then reported by its event */
    CHECK(write_file("/proc/sys/user/max_inotify_watches", "16\n") == 0);
    nw_watch_retry(w);
    CHECK(none_unwatched(w));
    nw_watch_stats(w, &st);
    CHECK(st.subdirs == 3);
    for (int i = 0; i < 3; i++) {
        snprintf(rel, sizeof rel, "limited/%s/watched", subs[i]);
        put(rel, 0);
        snprintf(name, sizeof name, "%s/watched", subs[i]);
        CHECK(wait_until(&loop, &r, name, NULL, NULL));
    }
    nw_watch_destroy(&w);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(uv_loop_close(&loop) == 0);
    reports_clear(&r);
    free(r.items);
}

TEST_IMPL(watch_limit)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        if (limit_watches(2) != 0) {
            printf("watch limit: skipped (no user namespace of our own: %s)\n", strerror(errno));
            fflush(stdout);
            _exit(77);
        }
        watch_limit_child();
        fflush(stdout);
        _exit(check_failures ? 1 : 0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 77));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        nw_test_skip("watch limit: no user namespace of our own");
}

/* Destroying from inside the callback stops the reports at once. */
TEST_IMPL(destroy_in_callback)
{
    uv_loop_t *loop = &test_loop;
    char err[256] = "";
    reports_t r = {0};
    make_dir("short");
    put("short/one", 100);
    put("short/two", 200);
    char dir[512];
    path_of(dir, sizeof dir, "short");
    nw_watch_t *w = nw_watch_new(loop, dir, on_report, &r, err, sizeof err);
    r.destroy_on_report = &w;
    CHECK(w && nw_watch_start(w, err, sizeof err) == 0);
    CHECK(r.count == 1);
    CHECK(w == NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    reports_clear(&r);
    free(r.items);
}

/* Each case: its own temporary root and loop; the loop must be left with nothing open. */
static int setup(void)
{
    snprintf(root, sizeof root, "/tmp/nw-test-watch-XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return -1;
    }
    uv_loop_init(&test_loop);
    return 0;
}
TEST_SETUP(setup)

static void teardown(void)
{
    CHECK(uv_loop_close(&test_loop) == 0);
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
TEST_TEARDOWN(teardown)
