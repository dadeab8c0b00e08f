/*
 * bench_newswired: newswired measured end to end, and each of its stages on its own.
 *
 * End to end: starts the real daemon on a temporary drop/state folder with an ipc
 * endpoint, subscribes with libnewswire, drops ~3 KB scraped articles (written as a
 * hidden temp file, then renamed, as a scraper does) and matches every delivery to its
 * drop by the token "bench-NNNNNNN" in the headline. Three cases, each on a fresh daemon:
 *   burst    N files renamed at once: delivered, lost, rate
 *   steady   R files a second for S seconds: latency rename -> delivery p50/p99/max
 *   backlog  B files already in the folder when the daemon starts: how many were
 *            published (archived), how fast, peak RSS (a subscriber only hears what is
 *            sent after its subscription reached the daemon, so "delivered" may be short)
 * with the daemon's peak RSS (VmHWM) and CPU time (utime+stime per article).
 *
 * Stages: the daemon's own modules timed in-process on the same articles, microseconds
 * per article: read (open, fstat, read), parse, route, pack article, pack message,
 * journal append+commit (group of 64 like the pipeline's MAX_JOBS, and one at a time;
 * fdatasync and --no-sync), archive (nw_archive_store) against a bare rename.
 *
 * Namesakes: --namesakes N files of one name archived one after another into one day
 * folder (a scraper that always writes index.html), against N distinct names; total
 * seconds for each, file creation included in both.
 *
 *   bench_newswired [--n 20000] [--rate 1000 --seconds 5] [--backlog 0] [--size 3000]
 *                   [--namesakes 4000] [--daemon PATH] [--no-stages] [-- DAEMON-ARGS...]
 * A count of 0 skips that case. DAEMON-ARGS go to newswired (e.g. --no-sync).
 * The daemon defaults to the newswired next to this program.
 */
#include "archive.h"
#include "article.h"
#include "journal.h"
#include "log.h"
#include "newswire.h"
#include "nw_codec.h"
#include "route.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROBE_BASE 9999999u /* probe tokens count down from here */
#define MAX_DAEMON_ARGS 32
#define STAGE_ARTICLES 2000
#define GROUP 64 /* the pipeline's MAX_JOBS: articles per group commit */

/* Named, since clang-format lays out char (*p)[41] as if it were a call. */
typedef char hex_id_t[41];
typedef char topic_list_t[NW_ROUTE_MAX_TOPICS][NW_TOPIC_MAX + 1];

typedef struct {
    unsigned n, backlog, size, namesakes;
    double rate, seconds;
    const char *daemon;
    char *daemon_args[MAX_DAEMON_ARGS];
    int daemon_argc;
    int stages;
} options_t;

/* One case: a daemon, a subscriber thread and the arrival time of every token. */
typedef struct {
    char root[256], drop[PATH_MAX], state[PATH_MAX], endpoint[PATH_MAX];
    unsigned count;
    double *sent, *got; /* by token; 0 = not yet */
    atomic_uint delivered, duplicates, probes;
    atomic_int stop;
    nw_client_t *client;
    pthread_t thread;
    pid_t pid;
} run_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
    struct timespec ts = {(time_t) t, (long) ((t - (double) (time_t) t) * 1e9)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* A scraped article of about size bytes whose headline carries token. */
static size_t make_article(char *buf, size_t cap, unsigned token, unsigned size)
{
    static const char para[] =
        "Carriers are pushing rural 5G coverage and fibre to the home while the regulator "
        "reviews spectrum licences and tower sharing between the mobile operators.";
    int n = snprintf(buf, cap,
                     "A one-line standfirst for benchmark story %u.\n\n"
                     "Sam Bench\n\nNovember 24, 2026\n\n2 Min Read\n"
                     "bench-%07u operators agree spectrum sharing deal\n\n",
                     token, token);
    while ((size_t) n + sizeof para + 2 < cap && (unsigned) n < size)
        n += snprintf(buf + n, cap - (size_t) n, "%s\n\n", para);
    n += snprintf(buf + n, cap - (size_t) n,
                  "About the Author(s)\n\nSam Bench\n\n"
                  "Measures things.\nFollow him @sambench\n\nYou May Also Like\n");
    return (size_t) n < cap ? (size_t) n : cap - 1;
}

/* Write the article as DIR/.NAME.tmp; the caller renames it to DIR/NAME. */
static int write_hidden(const char *dir, const char *name, unsigned token, unsigned size)
{
    char path[PATH_MAX + 300], buf[65536];
    size_t len = make_article(buf, sizeof buf, token, size);
    snprintf(path, sizeof path, "%s/.%s.tmp", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    ssize_t w = write(fd, buf, len);
    close(fd);
    return w == (ssize_t) len ? 0 : -1;
}

static int reveal(const char *dir, const char *name)
{
    char from[PATH_MAX + 300], to[PATH_MAX + 300];
    snprintf(from, sizeof from, "%s/.%s.tmp", dir, name);
    snprintf(to, sizeof to, "%s/%s", dir, name);
    return rename(from, to);
}

static void *receiver(void *arg)
{
    run_t *r = arg;
    while (!atomic_load(&r->stop)) {
        nw_message_t *msg = NULL;
        int rc = nw_client_recv(r->client, &msg, 100);
        if (rc != NW_RECV_MESSAGE)
            continue;
        double t = now_s();
        const char *h = nw_message_headline(msg);
        const char *p = h ? strstr(h, "bench-") : NULL;
        if (p) {
            unsigned token = (unsigned) strtoul(p + 6, NULL, 10);
            if (token > PROBE_BASE - 100 && token <= PROBE_BASE)
                atomic_fetch_add(&r->probes, 1);
            else if (token < r->count) {
                if (r->got[token] != 0)
                    atomic_fetch_add(&r->duplicates, 1);
                else {
                    r->got[token] = t;
                    atomic_fetch_add(&r->delivered, 1);
                }
            }
        }
        nw_message_destroy(&msg);
    }
    return NULL;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) flag;
    (void) ftw;
    remove(path);
    return 0;
}

static long archived_files;
static int count_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) path;
    (void) st;
    (void) ftw;
    if (flag == FTW_F)
        archived_files++;
    return 0;
}

static long count_files(const char *dir)
{
    archived_files = 0;
    nftw(dir, count_entry, 16, FTW_PHYS);
    return archived_files;
}

static long proc_status_kb(pid_t pid, const char *key)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0)
            kb = strtol(line + strlen(key), NULL, 10);
    fclose(f);
    return kb;
}

/* utime + stime of pid, in seconds. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double) (ut + st) / (double) sysconf(_SC_CLK_TCK);
}

static int run_open(run_t *r, const options_t *o, unsigned count)
{
    memset(r, 0, sizeof *r);
    snprintf(r->root, sizeof r->root, "%s/bench-newswired-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(r->root))
        return -1;
    snprintf(r->drop, sizeof r->drop, "%s/drop", r->root);
    snprintf(r->state, sizeof r->state, "%s/state", r->root);
    snprintf(r->endpoint, sizeof r->endpoint, "ipc://%s/pub.sock", r->root);
    if (mkdir(r->drop, 0755) != 0 || mkdir(r->state, 0755) != 0)
        return -1;
    r->count = count;
    r->sent = calloc(count + 1, sizeof *r->sent);
    r->got = calloc(count + 1, sizeof *r->got);
    r->client = nw_client_new();
    if (!r->sent || !r->got || !r->client || nw_client_set_rcvhwm(r->client, 0) != 0 ||
        nw_client_connect(r->client, r->endpoint) != 0 || nw_client_subscribe(r->client, "") != 0)
        return -1;
    (void) o;
    return 0;
}

static int run_start_daemon(run_t *r, const options_t *o)
{
    char *argv[MAX_DAEMON_ARGS + 10], log[PATH_MAX + 16];
    int argc = 0;
    argv[argc++] = (char *) o->daemon;
    argv[argc++] = "--drop";
    argv[argc++] = r->drop;
    argv[argc++] = "--state";
    argv[argc++] = r->state;
    argv[argc++] = "--publish";
    argv[argc++] = r->endpoint;
    for (int i = 0; i < o->daemon_argc; i++)
        argv[argc++] = o->daemon_args[i];
    argv[argc] = NULL;
    snprintf(log, sizeof log, "%s/daemon.log", r->root);
    r->pid = fork();
    if (r->pid < 0)
        return -1;
    if (r->pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(o->daemon, argv);
        _exit(127);
    }
    return pthread_create(&r->thread, NULL, receiver, r) == 0 ? 0 : -1;
}

/* One probe article at a time until one comes back: the daemon is up and our
 * subscription has reached its XPUB. */
static int run_probe(run_t *r, const options_t *o)
{
    for (unsigned attempt = 0; attempt < 40; attempt++) {
        char name[64];
        snprintf(name, sizeof name, "probe%u.txt", attempt);
        if (write_hidden(r->drop, name, PROBE_BASE - attempt, 500) != 0 ||
            reveal(r->drop, name) != 0)
            return -1;
        for (double end = now_s() + 1.0; now_s() < end;) {
            if (atomic_load(&r->probes))
                return 0;
            if (waitpid(r->pid, NULL, WNOHANG) == r->pid) {
                r->pid = 0;
                return -1;
            }
            usleep(2000);
        }
    }
    (void) o;
    return -1;
}

/* Wait until every token arrived, or nothing new arrived for idle seconds. */
static void run_wait(run_t *r, double idle)
{
    unsigned last = atomic_load(&r->delivered);
    double since = now_s();
    while (atomic_load(&r->delivered) < r->count && now_s() - since < idle) {
        usleep(5000);
        unsigned d = atomic_load(&r->delivered);
        if (d != last) {
            last = d;
            since = now_s();
        }
    }
}

static void run_close(run_t *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        for (int i = 0; i < 500 && waitpid(r->pid, NULL, WNOHANG) == 0; i++)
            usleep(10000);
        if (waitpid(r->pid, NULL, WNOHANG) == 0) {
            kill(r->pid, SIGKILL);
            waitpid(r->pid, NULL, 0);
        }
    }
    atomic_store(&r->stop, 1);
    if (r->thread)
        pthread_join(r->thread, NULL);
    nw_client_destroy(&r->client);
    free(r->sent);
    free(r->got);
    if (*r->root)
        nftw(r->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

/* Delivered, lost, rate since t0, and latency percentiles when sent times are known. */
static void report(const char *label, run_t *r, double t0, bool latency, double cpu_s,
                   long hwm_kb)
{
    unsigned delivered = atomic_load(&r->delivered);
    double last = t0, *lat = malloc((r->count + 1) * sizeof *lat);
    size_t nl = 0;
    for (unsigned i = 0; i < r->count; i++) {
        if (r->got[i] == 0)
            continue;
        if (r->got[i] > last)
            last = r->got[i];
        if (lat && r->sent[i] != 0)
            lat[nl++] = (r->got[i] - r->sent[i]) * 1e3;
    }
    printf("%-8s n=%u delivered=%u lost=%u dup=%u rate=%.0f/s elapsed=%.3fs", label, r->count,
           delivered, r->count - delivered, atomic_load(&r->duplicates),
           last > t0 ? delivered / (last - t0) : 0.0, last - t0);
    if (latency && nl) {
        qsort(lat, nl, sizeof *lat, cmp_double);
        printf(" p50=%.3fms p99=%.3fms max=%.3fms", lat[nl / 2],
               lat[nl * 99 / 100 < nl ? nl * 99 / 100 : nl - 1], lat[nl - 1]);
    }
    printf(" peak_rss=%ldKiB cpu=%.1fus/article\n", hwm_kb,
           delivered ? cpu_s * 1e6 / delivered : 0.0);
    free(lat);
}

static void names(char *buf, size_t len, unsigned i)
{
    snprintf(buf, len, "a%07u.txt", i);
}

/* burst (rate 0) or steady */
static int case_live(const options_t *o, const char *label, unsigned count, double rate)
{
    run_t r;
    char name[64];
    int rc = -1;
    if (run_open(&r, o, count) != 0 || run_start_daemon(&r, o) != 0 || run_probe(&r, o) != 0) {
        fprintf(stderr,
                "bench_newswired: %s: the daemon did not start or deliver a probe "
                "(log: %s/daemon.log)\n",
                label, r.root);
        r.root[0] = '\0'; /* keep the log */
        goto done;
    }
    for (unsigned i = 0; i < count; i++) {
        names(name, sizeof name, i);
        if (write_hidden(r.drop, name, i, o->size) != 0)
            goto done;
    }
    usleep(300000); /* let the daemon see the hidden files' events before the clock starts */
    double cpu0 = proc_cpu_s(r.pid), t0 = now_s();
    for (unsigned i = 0; i < count; i++) {
        if (rate > 0)
            sleep_until(t0 + i / rate);
        names(name, sizeof name, i);
        if (reveal(r.drop, name) != 0)
            goto done;
        r.sent[i] = now_s();
    }
    run_wait(&r, 10.0);
    report(label, &r, t0, rate > 0, proc_cpu_s(r.pid) - cpu0, proc_status_kb(r.pid, "VmHWM:"));
    rc = 0;
done:
    run_close(&r);
    return rc;
}

static int case_backlog(const options_t *o, unsigned count)
{
    run_t r;
    char name[64], archive[PATH_MAX + 16];
    int rc = -1;
    if (run_open(&r, o, count) != 0)
        goto done;
    for (unsigned i = 0; i < count; i++) {
        names(name, sizeof name, i);
        if (write_hidden(r.drop, name, i, o->size) != 0 || reveal(r.drop, name) != 0)
            goto done;
    }
    double t0 = now_s();
    if (run_start_daemon(&r, o) != 0)
        goto done;
    /* The first files may go out before our subscription reaches the daemon: PUB/SUB
     * loses them for us, not for the journal, so published is counted in the archive. */
    run_wait(&r, 10.0);
    /* A file is archived just after it is published: wait for the last moves (the
     * folder empties) before counting, at most 10 s more. */
    snprintf(archive, sizeof archive, "%s/archive", r.state);
    long published = count_files(archive);
    for (double until = now_s() + 10.0; published < (long) count && now_s() < until;
         published = count_files(archive))
        nanosleep(&(struct timespec) {0, 20 * 1000 * 1000}, NULL);
    double cpu = proc_cpu_s(r.pid);
    long hwm = proc_status_kb(r.pid, "VmHWM:");
    report("backlog", &r, t0, false, cpu, hwm);
    printf("backlog  published(archived)=%ld of %u\n", published, count);
    rc = 0;
done:
    run_close(&r);
    return rc;
}

/* --- stages ------------------------------------------------------------------ */

typedef struct {
    unsigned count, done;
    int failed;
} commit_wait_t;

static void on_commit(void *arg, int status)
{
    commit_wait_t *w = arg;
    w->done++;
    if (status != 0)
        w->failed = 1;
}

static void stage(const char *what, double seconds, unsigned n)
{
    printf("  %-34s %8.2f us/article\n", what, seconds * 1e6 / n);
}

/* Journal append+commit of msgs in groups of group, fdatasync or not. */
static double time_journal(const char *dir, bool sync, unsigned group, unsigned n,
                           const msgpack_sbuffer *msgs, hex_id_t *ids)
{
    uv_loop_t loop;
    char err[256];
    uv_loop_init(&loop);
    nw_journal_options_t jo = {
        .sync = sync, .segment_size = 64u << 20, .dedup_window_ms = 86400000};
    nw_journal_t *j = nw_journal_open(&loop, dir, jo, err, sizeof err);
    double elapsed = -1;
    if (!j) {
        fprintf(stderr, "bench_newswired: journal: %s\n", err);
        goto done;
    }
    double t0 = now_s();
    for (unsigned i = 0; i < n; i += group) {
        commit_wait_t w = {0, 0, 0};
        for (unsigned k = i; k < i + group && k < n; k++) {
            uint64_t seq = nw_journal_last_seq(j, "telecoms") + 1;
            if (nw_journal_append(j, "telecoms", seq, ids[k], 0, msgs[k].data, msgs[k].size) !=
                    0 ||
                nw_journal_commit(j, on_commit, &w) != 0)
                goto done;
            w.count++;
        }
        while (w.done < w.count)
            uv_run(&loop, UV_RUN_ONCE);
        if (w.failed)
            goto done;
    }
    elapsed = now_s() - t0;
done:
    nw_journal_close(&j);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    return elapsed;
}

static int run_stages(const options_t *o)
{
    const unsigned n = STAGE_ARTICLES;
    char root[256], dir[512], path[PATH_MAX], err[256];
    hex_id_t *ids = calloc(n, sizeof *ids);
    char **data = calloc(n, sizeof *data);
    size_t *lens = calloc(n, sizeof *lens);
    nw_article_t **arts = calloc(n, sizeof *arts);
    msgpack_sbuffer *amp = calloc(n, sizeof *amp), *msgs = calloc(n, sizeof *msgs);
    topic_list_t *topics = calloc(n, sizeof *topics);
    size_t *ntopics = calloc(n, sizeof *ntopics);
    nw_rules_t *rules = nw_rules_new(NULL, err, sizeof err);
    int rc = -1;
    snprintf(root, sizeof root, "%s/bench-stages-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!ids || !data || !lens || !arts || !amp || !msgs || !topics || !ntopics || !rules ||
        !mkdtemp(root))
        goto done;
    snprintf(dir, sizeof dir, "%s/drop", root);
    mkdir(dir, 0755);
    for (unsigned i = 0; i < n; i++) {
        char name[64];
        names(name, sizeof name, i);
        if (write_hidden(dir, name, i, o->size) != 0 || reveal(dir, name) != 0)
            goto done;
    }
    printf("stages (%u articles of ~%u bytes, one thread):\n", n, o->size);

    double t0 = now_s();
    for (unsigned i = 0; i < n; i++) {
        char name[64];
        struct stat st;
        names(name, sizeof name, i);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) != 0 || !(data[i] = malloc((size_t) st.st_size + 1)) ||
            read(fd, data[i], (size_t) st.st_size) != st.st_size) {
            if (fd >= 0)
                close(fd);
            goto done;
        }
        lens[i] = (size_t) st.st_size;
        close(fd);
    }
    stage("read (open, fstat, read, close)", now_s() - t0, n);
    nw_log_set_level(NW_LOG_WARNING); /* the journal's notices are not results */

    /* Timed passes free what they make, as a job does, so malloc hands memory back
     * warm; the results the next stage needs are then made untimed. */
    t0 = now_s();
    for (unsigned i = 0; i < n; i++) {
        if (nw_article_parse(data[i], lens[i], 0, &arts[i], err, sizeof err) != 0) {
            fprintf(stderr, "bench_newswired: parse: %s\n", err);
            goto done;
        }
        nw_article_destroy(&arts[i]);
    }
    stage("parse (nw_article_parse)", now_s() - t0, n);
    for (unsigned i = 0; i < n; i++)
        if (nw_article_parse(data[i], lens[i], 0, &arts[i], err, sizeof err) != 0)
            goto done;

    t0 = now_s();
    for (unsigned i = 0; i < n; i++)
        ntopics[i] = nw_route_topics(rules, NULL, arts[i], topics[i]);
    stage("route (nw_route_topics)", now_s() - t0, n);

    for (int keep = 0; keep < 2; keep++) {
        t0 = now_s();
        for (unsigned i = 0; i < n; i++) {
            const char *subjects[NW_ROUTE_MAX_TOPICS];
            char uri[64], created[NW_CODEC_TIME_LEN];
            for (size_t k = 0; k < ntopics[i]; k++)
                subjects[k] = topics[i][k];
            snprintf(uri, sizeof uri, "urn:newswire:%s", arts[i]->id);
            nw_codec_format_time(arts[i]->versioncreated_ms, created);
            nw_ninjs_t ninjs = {
                .uri = uri,
                .type = "text",
                .headline = arts[i]->headline,
                .byline = arts[i]->byline,
                .description_text = arts[i]->description,
                .body_text = arts[i]->body,
                .language = arts[i]->language,
                .versioncreated = created,
                .subjects = subjects,
                .subject_count = ntopics[i],
            };
            msgpack_sbuffer_init(&amp[i]);
            if (nw_codec_pack_article(&ninjs, &amp[i], err, sizeof err) != 0)
                goto done;
            if (!keep)
                msgpack_sbuffer_destroy(&amp[i]);
        }
        if (!keep)
            stage("pack article (nw_codec_pack_article)", now_s() - t0, n);
    }

    for (int keep = 0; keep < 2; keep++) {
        t0 = now_s();
        for (unsigned i = 0; i < n; i++) {
            char sent[NW_CODEC_TIME_LEN];
            nw_codec_format_time(1700000000000 + i, sent);
            memcpy(ids[i], arts[i]->id, sizeof ids[i]);
            nw_envelope_t env = {.topic = topics[i][0],
                                 .seq = i + 1,
                                 .epoch = "0123456789abcdef0123456789abcdef",
                                 .id = ids[i],
                                 .sent = sent,
                                 .source_file = "a0000000.txt",
                                 .source_format = "scraped"};
            msgpack_sbuffer_init(&msgs[i]);
            if (nw_codec_pack_message(&env, amp[i].data, amp[i].size, &msgs[i], err,
                                      sizeof err) != 0)
                goto done;
            if (!keep)
                msgpack_sbuffer_destroy(&msgs[i]);
        }
        if (!keep)
            stage("pack message (nw_codec_pack_message)", now_s() - t0, n);
    }

    static const struct {
        bool sync;
        unsigned group;
        const char *label;
    } journals[] = {
        {true, GROUP, "journal, groups of 64, fdatasync"},
        {true, 1, "journal, one at a time, fdatasync"},
        {false, GROUP, "journal, groups of 64, no sync"},
        {false, 1, "journal, one at a time, no sync"},
    };
    for (size_t k = 0; k < sizeof journals / sizeof journals[0]; k++) {
        char state[512];
        unsigned jn = journals[k].group == 1 && journals[k].sync ? n / 10 : n;
        snprintf(state, sizeof state, "%s/state%zu", root, k);
        mkdir(state, 0755);
        double s = time_journal(state, journals[k].sync, journals[k].group, jn, msgs, ids);
        if (s < 0)
            goto done;
        stage(journals[k].label, s, jn);
    }

    snprintf(path, sizeof path, "%s/state", root);
    mkdir(path, 0755);
    if (nw_archive_prepare(path, err, sizeof err) != 0)
        goto done;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    int64_t ms = (int64_t) wall.tv_sec * 1000;
    t0 = now_s();
    for (unsigned i = 0; i < n / 2; i++) {
        char name[64], dest[PATH_MAX];
        names(name, sizeof name, i);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        char state[512];
        snprintf(state, sizeof state, "%s/state", root);
        if (nw_archive_store(state, path, ms, dest, sizeof dest, err, sizeof err) != 0) {
            fprintf(stderr, "bench_newswired: archive: %s\n", err);
            goto done;
        }
    }
    stage("archive (nw_archive_store)", now_s() - t0, n / 2);
    snprintf(path, sizeof path, "%s/plain", root);
    mkdir(path, 0755);
    t0 = now_s();
    for (unsigned i = n / 2; i < n; i++) {
        char name[64], from[1024], to[1024];
        names(name, sizeof name, i);
        snprintf(from, sizeof from, "%s/%s", dir, name);
        snprintf(to, sizeof to, "%s/plain/%s", root, name);
        if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) != 0)
            goto done;
    }
    stage("bare renameat2 (for comparison)", now_s() - t0, n - n / 2);
    rc = 0;
done:
    if (rc != 0)
        fprintf(stderr, "bench_newswired: stage timing failed\n");
    for (unsigned i = 0; data && i < n; i++) {
        free(data[i]);
        nw_article_destroy(&arts[i]);
        msgpack_sbuffer_destroy(&amp[i]);
        msgpack_sbuffer_destroy(&msgs[i]);
    }
    nw_rules_unref(&rules);
    free(ids);
    free(data);
    free(lens);
    free(arts);
    free(amp);
    free(msgs);
    free(topics);
    free(ntopics);
    if (*root && root[strlen(root) - 1] != 'X')
        nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}

/* count files archived one by one, all named story.txt (same) or each its own name. */
static double time_namesakes(const char *root, unsigned count, bool same)
{
    char drop[512], state[512], path[1024], dest[PATH_MAX], err[256];
    snprintf(drop, sizeof drop, "%s/%s-drop", root, same ? "same" : "distinct");
    snprintf(state, sizeof state, "%s/%s-state", root, same ? "same" : "distinct");
    mkdir(drop, 0755);
    mkdir(state, 0755);
    if (nw_archive_prepare(state, err, sizeof err) != 0)
        return -1;
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    int64_t ms = (int64_t) wall.tv_sec * 1000;
    double t0 = now_s();
    for (unsigned i = 0; i < count; i++) {
        if (same)
            snprintf(path, sizeof path, "%s/story.txt", drop);
        else
            snprintf(path, sizeof path, "%s/story%07u.txt", drop, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, "x\n", 2) != 2 || close(fd) != 0)
            return -1;
        if (nw_archive_store(state, path, ms, dest, sizeof dest, err, sizeof err) != 0) {
            fprintf(stderr, "bench_newswired: namesakes: file %u: %s\n", i, err);
            return -1;
        }
    }
    return now_s() - t0;
}

static int case_namesakes(unsigned count)
{
    char root[256];
    snprintf(root, sizeof root, "%s/bench-namesakes-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(root))
        return -1;
    double same = time_namesakes(root, count, true);
    double distinct = same < 0 ? -1 : time_namesakes(root, count, false);
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (same < 0 || distinct < 0) {
        fprintf(stderr, "bench_newswired: namesakes failed\n");
        return -1;
    }
    printf("namesakes (%u files archived one by one into one day folder):\n", count);
    printf("  %-34s %8.3f s (%.1f us/file)\n", "one name", same, same * 1e6 / count);
    printf("  %-34s %8.3f s (%.1f us/file)\n", "distinct names", distinct,
           distinct * 1e6 / count);
    return 0;
}

static int parse_args(options_t *o, int argc, char **argv, char *self_dir)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--") == 0) {
            for (i++; i < argc && o->daemon_argc < MAX_DAEMON_ARGS; i++)
                o->daemon_args[o->daemon_argc++] = argv[i];
            break;
        } else if (strcmp(a, "--no-stages") == 0)
            o->stages = 0;
        else if (!v)
            return -1;
        else if (strcmp(a, "--n") == 0)
            o->n = (unsigned) strtoul(v, NULL, 10), i++;
        else if (strcmp(a, "--rate") == 0)
            o->rate = strtod(v, NULL), i++;
        else if (strcmp(a, "--seconds") == 0)
            o->seconds = strtod(v, NULL), i++;
        else if (strcmp(a, "--backlog") == 0)
            o->backlog = (unsigned) strtoul(v, NULL, 10), i++;
        else if (strcmp(a, "--size") == 0)
            o->size = (unsigned) strtoul(v, NULL, 10), i++;
        else if (strcmp(a, "--namesakes") == 0)
            o->namesakes = (unsigned) strtoul(v, NULL, 10), i++;
        else if (strcmp(a, "--daemon") == 0)
            o->daemon = v, i++;
        else
            return -1;
    }
    if (!o->daemon) {
        ssize_t n = readlink("/proc/self/exe", self_dir, PATH_MAX - 16);
        if (n <= 0)
            return -1;
        self_dir[n] = '\0';
        char *slash = strrchr(self_dir, '/');
        strcpy(slash ? slash + 1 : self_dir, "newswired");
        o->daemon = self_dir;
    }
    return o->size > 60000 ? -1 : 0;
}

int main(int argc, char **argv)
{
    static char daemon_path[PATH_MAX];
    options_t o = {
        .n = 20000, .rate = 1000, .seconds = 5, .size = 3000, .stages = 1, .namesakes = 4000};
    if (parse_args(&o, argc, argv, daemon_path) != 0) {
        fprintf(stderr,
                "usage: bench_newswired [--n 20000] [--rate 1000 --seconds 5] "
                "[--backlog 0] [--size 3000] [--namesakes 4000] [--daemon PATH] [--no-stages] "
                "[-- DAEMON-ARGS]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int rc = 0;
    printf("daemon: %s", o.daemon);
    for (int i = 0; i < o.daemon_argc; i++)
        printf(" %s", o.daemon_args[i]);
    printf("\n");
    fflush(stdout);
    if (o.n && case_live(&o, "burst", o.n, 0) != 0)
        rc = 1;
    fflush(stdout);
    unsigned steady = (unsigned) (o.rate * o.seconds);
    if (o.rate > 0 && steady && case_live(&o, "steady", steady, o.rate) != 0)
        rc = 1;
    fflush(stdout);
    if (o.backlog && case_backlog(&o, o.backlog) != 0)
        rc = 1;
    fflush(stdout);
    if (o.stages && run_stages(&o) != 0)
        rc = 1;
    fflush(stdout);
    if (o.namesakes && case_namesakes(o.namesakes) != 0)
        rc = 1;
    return rc;
}
