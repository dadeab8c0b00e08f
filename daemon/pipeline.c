/*
 * pipeline: moves each reported file through read, parse, the feed and archive (see
 * pipeline.h for the stages).
 *
 * Reports enter through nw_pipeline_submit() as (subdir, name). The `known` table holds
 * every path between its report and its archiving, so a second report of the same
 * path (a scan racing an event, a writer closing twice) is folded into the first: it
 * only marks the entry `again`, and the file is looked at once more after it leaves.
 *
 * Pending entries are small (a path); the heavy job (read buffer, packed article,
 * messages) exists only for the MAX_JOBS files in flight. Past PENDING_HIGH queued
 * entries a scan is told to hold the rest (it keeps them sorted, in less room than
 * entries), so a backlog of 100,000 files costs about 40 bytes each in the watcher and
 * a bounded table here. Jobs leave the read stage in the order they entered it (the
 * `flight` list), so seqs follow arrival order, oldest first.
 *
 * Faults of the machine are not verdicts on a file: a file that cannot be opened or
 * read for want of descriptors or memory (EMFILE, ENFILE, ENOMEM), or moved out because
 * descriptors, memory or the state disk's space ran out, stays in the drop folder (its
 * archive move waits in `archive_wait`) and is retried after a backoff (FAULT_MIN_MS
 * doubling to FAULT_MAX_MS), the pipeline paused meanwhile as for a journal failure.
 * The episode is logged once at warning level, and STATUS= says why (file_errno) until
 * a file read after it, or a move retried, succeeds.
 *
 * A file may hold several stories (a NewsML-G2 message of several items): its job then
 * carries one story_t each, handed to the feed as one submission (one commit, published
 * in file order once durable), and the file is archived once, after all of them.
 *
 * Each file's time in each stage (nw_stage_t) is added up as it goes (stage_move), so
 * the metrics show where files wait. Where they pile up is a stage to look at, not
 * always the bound: with the machine's cores all busy, files wait wherever the CPU
 * happens to be short.
 */
#include "pipeline.h"
#include "archive.h"
#include "article.h"
#include "fsutil.h"
#include "log.h"
#include "nw_codec.h"
#include "text.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define MAX_JOBS 256      /* files read, waiting for commit or being archived */
#define RETRY_MS 1000     /* after a journal failure (disk full) */
#define BATCH_MAX 32      /* files per thread-pool hand-off */
#define READS_MAX 2       /* read hand-offs in flight at once */
#define ARCHIVES_MAX 1    /* archive hand-offs in flight at once */
#define PENDING_HIGH 1024 /* a scan holds the rest of its files beyond this */
#define FAULT_MIN_MS 100  /* first retry after a descriptor, memory or space fault */
#define FAULT_MAX_MS 5000
#define HERE_MAX 4            /* files read on the loop in one turn, at most */
#define HERE_SIZE (64u << 10) /* larger files go to the pool, however few */

_Static_assert(READS_MAX + ARCHIVES_MAX == NW_PIPELINE_POOL_JOBS,
               "main sizes the thread pool from NW_PIPELINE_POOL_JOBS");

typedef struct entry entry_t;
typedef struct job job_t;

/* A reported path, from report to archive. Owned by the `known` table. One allocation
 * with the path inline: a backlog of 100,000 files is 100,000 of these. */
struct entry {
    entry_t *next;             /* pending queue link */
    job_t *job;                /* set while in flight */
    bool again;                /* reported again while in flight */
    unsigned short subdir_len; /* 0: the drop folder itself, else rel's "subdir/" part */
    char rel[];                /* "name" or "subdir/name": the table's key */
};

static const char *entry_name(const entry_t *entry)
{
    return entry->rel + (entry->subdir_len ? entry->subdir_len + 1 : 0);
}

typedef enum {
    OUT_PUBLISH, /* parsed: journal and publish */
    OUT_REJECT,  /* move to rejected/ with reason */
    OUT_SKIP,    /* gone, a directory, or still open for writing: let go */
    OUT_DEFER,   /* the machine's fault (no descriptors, no memory): retry */
    OUT_LARGE,   /* read on the loop, found larger than HERE_SIZE: to the pool */
} outcome_t;

/* One story of the file: its id, packed article (until the feed has copied it) and
 * topics. topics comes last and only its first topic_count are ever read: a job leaves
 * it unzeroed (job_new). */
typedef struct {
    char id[41];
    bool duplicate; /* seen within the dedup window, or earlier in the file */
    msgpack_sbuffer article_mp;
    size_t topic_count;
    char topics[NW_ROUTE_MAX_TOPICS][NW_TOPIC_MAX + 1];
} story_t;

struct job {
    nw_pipeline_t *owner;
    entry_t *entry;
    job_t *next, *prev;    /* flight list, in submission order */
    job_t *archive_next;   /* archive queue, or archive_wait */
    nw_stage_t stage;      /* NW_STAGE_READ onwards: queued files have no job */
    unsigned long serial;  /* job_new's count: tells reads begun after a fault */
    bool archive_deferred; /* its move failed for a fault of the machine: retried */
    char *path;            /* drop_dir/rel */
    nw_rules_t *rules;     /* a snapshot for the worker */
    uint64_t max_size;
    bool here; /* read on the loop thread: HERE_SIZE bounds what it reads */

    /* worker results */
    outcome_t outcome;
    char reason[NW_ARTICLE_ERRLEN]; /* OUT_REJECT's, or OUT_DEFER's fault */
    int fault_errno;                /* OUT_DEFER: the errno */
    dev_t dev;
    ino_t ino;
    char *source_name; /* the file's name made valid UTF-8 for the wire */
    nw_format_t format;
    const char *encoding; /* the article's: a static string, or NULL for UTF-8 */
    unsigned replaced_bytes;
    story_t *stories; /* &one, or story_count of them on the heap */
    size_t story_count;

    /* archive results */
    int archive_rc;
    int archive_errno;
    bool replaced; /* the path now names another file: not moved */
    char archive_err[512];

    story_t one; /* the usual file: one story, no allocation; last, see job_new */
};
_Static_assert(sizeof(job_t) - offsetof(job_t, one.topics) <
                   sizeof(((job_t *) 0)->one.topics) + _Alignof(job_t),
               "job_new leaves only the usual story's topics unzeroed: nothing may follow them");

struct nw_pipeline {
    uv_loop_t *loop;
    nw_pipeline_options_t opt; /* its strings are copies, owned */
    nw_feed_t *feed;
    nw_rules_t *rules;
    zhashx_t *known; /* rel -> entry_t */
    entry_t *pending_head, *pending_tail;
    entry_t *retry_tail;                /* last entry put back while paused, or NULL */
    job_t *flight_head, *flight_tail;   /* every job, oldest first */
    job_t *read_head;                   /* the oldest job not yet dispatched: it and every job
                                           after it are reading or ready (dispatch is in order) */
    unsigned jobs;                      /* allocated jobs (all stages) */
    job_t *archive_head, *archive_tail; /* waiting for an archive hand-off */
    unsigned reads, archives;           /* hand-offs in flight */
    bool local;                         /* the drop folder is on a local file system (else
                                           files are read on the pool only) */
    bool rename_here;                   /* the state folder is local too, and no rename
                                           into it has failed with EXDEV */
    bool paused;         /* the journal failed (RETRY_MS) or a fault (fault_ms): wait */
    bool journal_failed; /* since the last durable commit: log the episode once */
    uv_timer_t retry;
    job_t *archive_wait_head, *archive_wait_tail; /* moves waiting for the retry */
    unsigned fault_ms;       /* the next backoff after a fault of the machine */
    unsigned moves_deferred; /* jobs whose move failed for a fault and is not yet done */
    unsigned long serial, fault_serial; /* jobs made; the last made at the fault */
    uv_check_t check;                   /* once per loop turn: hand off what gathered */
    uv_idle_t more; /* burst_pool off: files wait for the loop's next turn, so its poll
                       must not sleep until an event comes */
    int open_handles;
    bool advancing; /* flight_advance is on the stack */
    bool held;      /* told a scan to hold: call resume below PENDING_HIGH / 2 */
    void (*resume)(void *arg);
    void *resume_arg;
    bool draining;
    void (*drained)(void *arg);
    void *drained_arg;
    nw_pipeline_stats_t stats;              /* stage_ns up to stage_at */
    unsigned long in_stage[NW_STAGE_COUNT]; /* files in each stage now */
    uint64_t stage_at;                      /* uv_hrtime() of the last change of in_stage */
};

/* One thread-pool hand-off for several files: every hand-off costs a wake-up on both
 * sides, which under a burst cost more than reading a file. Hand-offs in flight are
 * capped (READS_MAX, ARCHIVES_MAX), so files that arrive while the pool is busy wait
 * and go together: a lone file still goes at once, a steady stream is batched by its
 * own rate. One archive hand-off at a time also keeps our renames from contending with
 * each other for the kernel's cross-directory rename lock. */
typedef struct {
    nw_pipeline_t *owner;
    uv_work_t work;
    size_t count;
    job_t *jobs[BATCH_MAX];
} batch_t;

static void schedule(nw_pipeline_t *self);
static void pump(nw_pipeline_t *self);

static void on_more(uv_idle_t *idle)
{
    (void) idle; /* only there to keep the poll from blocking: on_check does the work */
}

/* --- time in each stage ------------------------------------------------------- */

static void stage_account(const nw_pipeline_t *self, uint64_t now, uint64_t *ns)
{
    for (int s = 0; s < NW_STAGE_COUNT; s++)
        ns[s] += self->in_stage[s] * (now - self->stage_at);
}

/* A file moves from stage `from` to `to`; -1: it enters from outside, or leaves. */
static void stage_move(nw_pipeline_t *self, int from, int to)
{
    uint64_t now = uv_hrtime();
    stage_account(self, now, self->stats.stage_ns);
    self->stage_at = now;
    if (from >= 0)
        self->in_stage[from]--;
    if (to >= 0)
        self->in_stage[to]++;
}

static void job_stage(nw_pipeline_t *self, job_t *job, nw_stage_t to)
{
    stage_move(self, (int) job->stage, (int) to);
    job->stage = to;
}

/* --- entries ---------------------------------------------------------------- */

/* FNV-1a with a final mix. CZMQ's default hash clusters names that differ only in a
 * few digits (a000001.txt, a000002.txt, ...); zhashx answers long chains by growing its
 * table on lookup, which took 100 MB for a backlog of 100,000 such names. */
static size_t path_hash(const void *key)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (const unsigned char *p = key; *p; p++)
        h = (h ^ *p) * 0x100000001b3u;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    return (size_t) h;
}

static void entry_free(void **item)
{
    free(*item);
    *item = NULL;
}

static void pending_push(nw_pipeline_t *self, entry_t *entry, bool front)
{
    entry->next = NULL;
    if (!self->pending_head)
        self->pending_head = self->pending_tail = entry;
    else if (front && self->retry_tail) {
        entry->next = self->retry_tail->next;
        self->retry_tail->next = entry;
        if (self->pending_tail == self->retry_tail)
            self->pending_tail = entry;
    } else if (front) {
        entry->next = self->pending_head;
        self->pending_head = entry;
    } else {
        self->pending_tail->next = entry;
        self->pending_tail = entry;
    }
    if (front && self->paused)
        self->retry_tail = entry;
    self->stats.pending++;
    stage_move(self, -1, NW_STAGE_QUEUED);
}

static entry_t *pending_pop(nw_pipeline_t *self)
{
    entry_t *entry = self->pending_head;
    if (entry) {
        if (entry == self->retry_tail)
            self->retry_tail = NULL;
        self->pending_head = entry->next;
        if (!self->pending_head)
            self->pending_tail = NULL;
        entry->next = NULL;
        self->stats.pending--;
        stage_move(self, NW_STAGE_QUEUED, -1); /* job_new enters it in NW_STAGE_READ */
    }
    return entry;
}

static void submit_one(nw_pipeline_t *self, const char *subdir, const char *name)
{
    char rel[1024];
    int n = *subdir ? snprintf(rel, sizeof rel, "%s/%s", subdir, name)
                    : snprintf(rel, sizeof rel, "%s", name);
    if (n < 0 || (size_t) n >= sizeof rel)
        return; /* NAME_MAX bounds real names; nothing longer can exist */
    entry_t *entry = zhashx_lookup(self->known, rel);
    if (entry) {
        if (entry->job)
            entry->again = true;
        return;
    }
    entry = calloc(1, sizeof *entry + (size_t) n + 1);
    if (!entry) {
        nw_err("out of memory queueing %s", rel);
        return;
    }
    memcpy(entry->rel, rel, (size_t) n + 1);
    entry->subdir_len = (unsigned short) strlen(subdir);
    zhashx_insert(self->known, entry->rel, entry);
    pending_push(self, entry, false);
    schedule(self);
}

int nw_pipeline_submit(void *arg, const char *subdir, const char *name)
{
    nw_pipeline_t *self = arg;
    submit_one(self, subdir, name);
    /* a scan holds the rest of its files while the queue has enough to work on */
    if (self->stats.pending < PENDING_HIGH || !self->resume)
        return 0;
    self->held = true;
    return 1;
}

void nw_pipeline_set_resume(nw_pipeline_t *self, void (*resume)(void *arg), void *arg)
{
    self->resume = resume;
    self->resume_arg = arg;
}

/* --- worker: read, parse, route, pack --------------------------------------- */

/* Whether another process has the file open for writing. A read lease is refused
 * (EAGAIN) exactly then; without the right to take leases we cannot tell and go on.
 * The lease is kept while we read and ends with our close(): a writer opening the file
 * meanwhile waits those microseconds (its lease-break signal, SIGIO, is ignored), and
 * we spare a second fcntl per file. */
static bool open_for_writing(int fd)
{
    return fcntl(fd, F_SETLEASE, F_RDLCK) != 0 && errno == EAGAIN;
}

static int read_all(int fd, size_t size, uint64_t max, char **out, size_t *outlen)
{
    size_t cap = size + 1, len = 0;
    char *buf = malloc(cap);
    if (!buf)
        return -1;
    for (;;) {
        if (len == cap) { /* grew since fstat: keep reading up to the cap */
            if (cap > max) {
                free(buf);
                errno = EFBIG;
                return -1;
            }
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                return -1;
            }
            buf = grown;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t) n;
        if (len < cap)
            break; /* a regular file reads short only at its end: spare the read of 0 */
    }
    *out = buf;
    *outlen = len;
    return 0;
}

/* msgpack's sbuffer grows by doubling from 8 KiB; a job keeps its buffers while it
 * waits for the commit, so up to MAX_JOBS of them: give back what packing left unused. */
static void sbuffer_fit(msgpack_sbuffer *b)
{
    char *fit = b->size ? realloc(b->data, b->size) : NULL;
    if (fit) {
        b->data = fit;
        b->alloc = b->size;
    }
}

static void job_reject(job_t *job, const char *fmt, const char *detail)
{
    job->outcome = OUT_REJECT;
    snprintf(job->reason, sizeof job->reason, fmt, detail);
}

/* Out of descriptors (the process's or the system's) or of memory: the machine's fault,
 * not the file's. */
static bool read_fault(int err)
{
    return err == EMFILE || err == ENFILE || err == ENOMEM;
}

/* The same for a move out of the drop folder, which also needs room on the state disk
 * (a reason file, a day folder, a copy across file systems). */
static bool move_fault(int err)
{
    return read_fault(err) || err == ENOSPC || err == EDQUOT;
}

/* The file's fault rejects it (fmt with the errno's text); the machine's defers it. */
static void job_fail(job_t *job, const char *fmt, int err)
{
    if (read_fault(err)) {
        job->outcome = OUT_DEFER;
        job->fault_errno = err;
        snprintf(job->reason, sizeof job->reason, fmt, strerror(err));
    } else
        job_reject(job, fmt, strerror(err));
}

/* The story's identifier as a URI (RFC 3986), as ninjs requires: the source's own when
 * it is one; bytes a URI cannot hold (blanks, controls, non-ASCII, <>"{}|\^`) are
 * percent-encoded, and an identifier without a scheme ("PA-2024-0905", "ferry 2") is
 * carried as urn:newswire:id:<its bytes percent-encoded>. NULL when out of memory. */
static char *wire_uri(const char *id)
{
    static const char pchar[] = "-._~:@!$&'()*+,;=/";
    static const char bad[] = "<>\"{}|\\^`";
    size_t k = 0;
    bool scheme = false;
    if ((id[0] >= 'a' && id[0] <= 'z') || (id[0] >= 'A' && id[0] <= 'Z')) {
        k = strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
        scheme = id[k] == ':';
    }
    const char *prefix = scheme ? "" : "urn:newswire:id:";
    char *out = malloc(strlen(prefix) + 3 * strlen(id) + 1), *o = out;
    if (!out)
        return NULL;
    o += sprintf(o, "%s", prefix);
    for (const unsigned char *p = (const unsigned char *) id; *p; p++) {
        bool keep = scheme ? *p > 0x20 && *p < 0x7f && !strchr(bad, *p)
                           : (*p < 0x80 && (isalnum(*p) || strchr(pchar, *p)));
        if (keep)
            *o++ = (char) *p;
        else
            o += sprintf(o, "%%%02X", *p);
    }
    *o = '\0';
    return out;
}

static void pack_article(job_t *job, story_t *story, const nw_article_t *article)
{
    const char *subjects[NW_ROUTE_MAX_TOPICS], *codes[NW_ROUTE_MAX_TOPICS];
    const char *schemes[NW_ROUTE_MAX_TOPICS];
    for (size_t i = 0; i < story->topic_count; i++) {
        subjects[i] = story->topics[i];
        codes[i] = nw_route_code(job->rules, article, story->topics[i], &schemes[i]);
    }
    char uri[64], created[NW_CODEC_TIME_LEN], *own = NULL;
    if (!article->uri)
        snprintf(uri, sizeof uri, "urn:newswire:%s", article->id);
    else if (!(own = wire_uri(article->uri))) {
        job_fail(job, "cannot encode: %s", ENOMEM);
        return;
    }
    nw_codec_format_time(article->versioncreated_ms, created);
    nw_ninjs_t ninjs = {
        .uri = own ? own : uri,
        .type = "text",
        .headline = article->headline,
        .byline = article->byline,
        .description_text = article->description,
        .body_text = article->body,
        .language = article->language,
        .version = article->version,
        .located = article->located,
        .versioncreated = created,
        .subjects = subjects,
        .subject_codes = codes,
        .subject_schemes = schemes,
        .subject_count = story->topic_count,
    };
    char err[200]; /* leaves room for the prefix in job->reason */
    if (nw_codec_pack_article(&ninjs, &story->article_mp, err, sizeof err) != 0)
        job_reject(job, "cannot encode: %s", err);
    free(own);
    sbuffer_fit(&story->article_mp);
}

static void stories_free(job_t *job)
{
    for (size_t i = 0; i < job->story_count; i++)
        msgpack_sbuffer_destroy(&job->stories[i].article_mp);
    if (job->stories != &job->one)
        free(job->stories);
    job->stories = &job->one;
    job->story_count = 0;
}

static void read_one(job_t *job)
{
    char *data = NULL;
    size_t len = 0;
    nw_article_t *article = NULL;
    job->outcome = OUT_SKIP;

    int fd = open(job->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        /* What is rejected unopened is moved as it is, once the archive stage has seen
         * it is still the same entry. */
        struct stat link;
        int saved = errno;
        if (lstat(job->path, &link) == 0) {
            job->dev = link.st_dev;
            job->ino = link.st_ino;
        }
        errno = saved;
        if (errno == ELOOP)
            job_reject(job, "%s", "a symbolic link (not followed)");
        else if (errno == ENXIO)
            job_reject(job, "%s", "not a regular file (a socket)");
        else if (errno != ENOENT)
            job_fail(job, "cannot open: %s", errno);
        return;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        job_fail(job, "cannot stat: %s", errno);
        goto done;
    }
    job->dev = st.st_dev;
    job->ino = st.st_ino;
    if (S_ISDIR(st.st_mode))
        goto done; /* a subfolder: the watcher's business, not an article */
    if (!S_ISREG(st.st_mode)) {
        job_reject(job, "%s",
                   S_ISFIFO(st.st_mode) ? "not a regular file (a FIFO)"
                                        : "not a regular file (a device or socket)");
        goto done;
    }
    if ((uint64_t) st.st_size > job->max_size) {
        char size[64];
        snprintf(size, sizeof size, "%lld bytes, more than max-size %llu", (long long) st.st_size,
                 (unsigned long long) job->max_size);
        job_reject(job, "too large: %s", size);
        goto done;
    }
    if (job->here && (uint64_t) st.st_size > HERE_SIZE) {
        job->outcome = OUT_LARGE; /* its read and parse would hold up the loop */
        goto done;
    }
    if (open_for_writing(fd))
        goto done; /* its IN_CLOSE_WRITE will report it again */
    if (read_all(fd, (size_t) st.st_size, job->max_size, &data, &len) != 0) {
        if (errno == EFBIG)
            job_reject(job, "%s", "too large: grew past max-size while being read");
        else
            job_fail(job, "cannot read: %s", errno);
        goto done;
    }
    close(fd); /* ends the lease before the parsing */
    fd = -1;
    int64_t mtime_ms = (int64_t) st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    char err[NW_ARTICLE_ERRLEN];
    if (nw_article_parse(data, len, mtime_ms, &article, err, sizeof err) != 0) {
        job_reject(job, "%s", err);
        goto done;
    }
    /* Names are bytes, the wire wants UTF-8: invalid sequences and control characters
     * are replaced as in article text (the log shows the name escaped instead). */
    size_t namelen;
    unsigned replaced;
    const char *name = entry_name(job->entry);
    job->source_name = nw_text_sanitize(name, strlen(name), &namelen, &replaced);
    if (!job->source_name) {
        job_reject(job, "%s", "out of memory");
        goto done;
    }
    for (char *c = job->source_name; *c; c++)
        if (*c == '\n' || *c == '\t')
            *c = ' '; /* the only controls sanitize keeps: a name is one line */
    job->format = article->format;
    job->replaced_bytes = article->replaced_bytes;
    size_t count = 0;
    for (const nw_article_t *a = article; a; a = a->next)
        count++;
    if (count > 1 && !(job->stories = calloc(count, sizeof *job->stories))) {
        job->stories = &job->one;
        job_fail(job, "cannot hold the file's stories: %s", ENOMEM);
        goto done;
    }
    job->story_count = count;
    job->encoding = article->encoding;
    char subdir[NAME_MAX + 1];
    snprintf(subdir, sizeof subdir, "%.*s", (int) job->entry->subdir_len, job->entry->rel);
    job->outcome = OUT_PUBLISH;
    story_t *story = job->stories;
    for (const nw_article_t *a = article; a && job->outcome == OUT_PUBLISH;
         a = a->next, story++) {
        msgpack_sbuffer_init(&story->article_mp);
        memcpy(story->id, a->id, sizeof story->id);
        story->topic_count = nw_route_topics(job->rules, job->entry->subdir_len ? subdir : NULL,
                                             a, story->topics);
        pack_article(job, story, a);
    }
    if (job->outcome != OUT_PUBLISH)
        stories_free(job);
done:
    nw_article_destroy(&article);
    free(data);
    if (fd >= 0)
        close(fd);
}

/* --- worker: archive ---------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void archive_one(job_t *job, bool here)
{
    const char *state = job->owner->opt.state_dir;
    /* A writer may have renamed a new file over the path since we read it: that one
     * has not been published, so it stays for its own turn. */
    struct stat st;
    if (lstat(job->path, &st) != 0 || st.st_dev != job->dev || st.st_ino != job->ino) {
        job->replaced = true;
        job->archive_rc = 0;
        return;
    }
    char dest[PATH_MAX];
    if (job->outcome == OUT_REJECT)
        job->archive_rc = nw_archive_reject(state, job->path, job->reason, dest, sizeof dest,
                                            job->archive_err, sizeof job->archive_err);
    else if (here)
        job->archive_rc = nw_archive_rename(state, job->path, now_ms(), dest, sizeof dest,
                                            job->archive_err, sizeof job->archive_err);
    else
        job->archive_rc = nw_archive_store(state, job->path, now_ms(), dest, sizeof dest,
                                           job->archive_err, sizeof job->archive_err);
    job->archive_errno = job->archive_rc ? errno : 0;
}

static void work_read(uv_work_t *work)
{
    batch_t *batch = work->data;
    for (size_t i = 0; i < batch->count; i++)
        read_one(batch->jobs[i]);
}

static void work_archive(uv_work_t *work)
{
    batch_t *batch = work->data;
    for (size_t i = 0; i < batch->count; i++)
        archive_one(batch->jobs[i], false);
}

/* --- loop side ---------------------------------------------------------------- */

static void job_free(job_t *job)
{
    nw_rules_unref(&job->rules);
    stories_free(job);
    free(job->source_name);
    free(job->path);
    free(job);
}

static void flight_remove(nw_pipeline_t *self, job_t *job)
{
    if (self->read_head == job)
        self->read_head = job->next;
    if (job->prev)
        job->prev->next = job->next;
    else
        self->flight_head = job->next;
    if (job->next)
        job->next->prev = job->prev;
    else
        self->flight_tail = job->prev;
    job->next = job->prev = NULL;
}

/* The job is over: its entry leaves the table, or goes round again. */
static void job_finish(nw_pipeline_t *self, job_t *job, bool retry)
{
    entry_t *entry = job->entry;
    flight_remove(self, job);
    stage_move(self, (int) job->stage, -1);
    job_free(job);
    self->jobs--;
    self->stats.in_flight--;
    entry->job = NULL;
    if (retry || entry->again) {
        entry->again = false;
        pending_push(self, entry, retry);
    } else
        zhashx_delete(self->known, entry->rel);
    schedule(self);
}

static const char *shown(const job_t *job, char *buf, size_t len)
{
    return nw_log_escape(job->entry->rel, buf, len);
}

static void on_retry(uv_timer_t *timer);

/* A fault of the machine: pause, retry after the backoff. Said once an episode. */
static void fault_begin(nw_pipeline_t *self, int err, const char *name, const char *why)
{
    if (!self->stats.file_errno)
        nw_warn("%s: %s; files wait in the drop folder and are retried until this passes", name,
                why);
    else
        nw_debug("%s: %s; retried later", name, why);
    self->stats.file_errno = err;
    self->fault_serial = self->serial;
    if (!self->paused) {
        unsigned ms = self->fault_ms ? self->fault_ms : FAULT_MIN_MS;
        self->paused = true;
        uv_timer_start(&self->retry, on_retry, ms, 0);
        self->fault_ms = ms * 2 < FAULT_MAX_MS ? ms * 2 : FAULT_MAX_MS;
    }
}

/* A file read since the fault, or a move retried, went through. */
static void fault_end(nw_pipeline_t *self)
{
    if (!self->stats.file_errno || self->moves_deferred)
        return;
    self->stats.file_errno = 0;
    self->fault_ms = 0;
    nw_notice("files can be opened and moved again: taking files");
}

static void archive_wait_push(nw_pipeline_t *self, job_t *job)
{
    job->archive_next = NULL;
    if (self->archive_wait_tail)
        self->archive_wait_tail->archive_next = job;
    else
        self->archive_wait_head = job;
    self->archive_wait_tail = job;
}

/* A move was made (or failed), on the pool or here. */
static void archive_done(nw_pipeline_t *self, job_t *job)
{
    char name[1100];
    if (job->replaced)
        nw_info("%s was replaced while being handled; the new file is read next",
                shown(job, name, sizeof name));
    else if (job->archive_rc != 0 && move_fault(job->archive_errno) && !self->draining) {
        if (!job->archive_deferred)
            self->moves_deferred++;
        job->archive_deferred = true;
        fault_begin(self, job->archive_errno, shown(job, name, sizeof name), job->archive_err);
        archive_wait_push(self, job);
        return; /* still in flight: moved when the retry comes */
    } else if (job->archive_rc != 0)
        nw_err("%s stays in the drop folder: %s", shown(job, name, sizeof name),
               job->archive_err);
    if (job->archive_deferred) {
        self->moves_deferred--;
        if (job->archive_rc == 0)
            fault_end(self);
    }
    job_finish(self, job, false);
}

static void after_archive(uv_work_t *work, int status)
{
    (void) status;
    batch_t *batch = work->data;
    nw_pipeline_t *self = batch->owner;
    self->archives--;
    schedule(self);
    self->stats.moved_pool += batch->count;
    for (size_t i = 0; i < batch->count; i++)
        archive_done(self, batch->jobs[i]);
    free(batch);
}

/* Queued here; handed to the pool in batches once the loop turn's callbacks are done
 * (a group commit completes many jobs in one turn). */
static void start_archive(nw_pipeline_t *self, job_t *job)
{
    job_stage(self, job, NW_STAGE_ARCHIVE);
    job->archive_next = NULL;
    if (self->archive_tail)
        self->archive_tail->archive_next = job;
    else
        self->archive_head = job;
    self->archive_tail = job;
    schedule(self);
}

static batch_t *batch_new(nw_pipeline_t *self)
{
    batch_t *batch = calloc(1, sizeof *batch);
    if (batch) {
        batch->owner = self;
        batch->work.data = batch;
    }
    return batch;
}

/* Whether the moves waiting are the loop's: the first not a reject, and with burst_pool
 * at most HERE_MAX of them (more is a burst, for the pool). */
static bool archive_few(const nw_pipeline_t *self)
{
    const job_t *job = self->archive_head;
    if (!job || job->outcome == OUT_REJECT)
        return false;
    if (!self->opt.burst_pool)
        return true;
    for (unsigned n = 0; job; job = job->archive_next)
        if (++n > HERE_MAX)
            return false;
    return true;
}

static bool moves_here(const nw_pipeline_t *self)
{
    return self->rename_here && self->local && self->archives == 0 && archive_few(self);
}

/* Files wait that the loop takes itself, but not in this turn: go round again without
 * sleeping (the idle handle), and let the poll serve what came meanwhile. */
static void another_turn(nw_pipeline_t *self)
{
    uv_idle_start(&self->more, on_more);
    schedule(self);
}

/* The same reasoning as read_here: a few published files, both folders local, no move on
 * the pool. A rename within one local file system is page-cache work; a reject (it
 * writes a reason file) and a move across file systems (a copy and an fsync: EXDEV from
 * nw_archive_rename, a bind mount included) go to the pool, and after an EXDEV every move
 * does. Without burst_pool a burst's moves are made here too, BATCH_MAX a turn. */
static void archive_here(nw_pipeline_t *self)
{
    for (unsigned n = 0; moves_here(self); n++) {
        if (n == BATCH_MAX) {
            another_turn(self);
            return;
        }
        job_t *job = self->archive_head;
        archive_one(job, true);
        if (job->archive_rc != 0 && job->archive_errno == EXDEV) {
            self->rename_here = false;
            nw_info("%s and %s are on different file systems: files are moved on the "
                    "thread pool",
                    self->opt.drop_dir, self->opt.state_dir);
            return; /* still at the head: the pool moves it */
        }
        self->archive_head = job->archive_next;
        if (!self->archive_head)
            self->archive_tail = NULL;
        self->stats.moved_here++;
        archive_done(self, job);
    }
}

static void archive_pump(nw_pipeline_t *self)
{
    archive_here(self);
    while (self->archive_head && self->archives < ARCHIVES_MAX && !moves_here(self)) {
        batch_t *batch = batch_new(self);
        if (!batch) {
            nw_err("out of memory: archive moves wait for the next loop turn");
            return;
        }
        while (self->archive_head && batch->count < BATCH_MAX) {
            batch->jobs[batch->count++] = self->archive_head;
            self->archive_head = self->archive_head->archive_next;
        }
        if (!self->archive_head)
            self->archive_tail = NULL;
        if (uv_queue_work(self->loop, &batch->work, work_archive, after_archive) != 0) {
            nw_err("cannot queue archive moves");
            for (size_t i = 0; i < batch->count; i++)
                job_finish(self, batch->jobs[i], false);
            free(batch);
        } else
            self->archives++;
    }
}

static void on_retry(uv_timer_t *timer)
{
    nw_pipeline_t *self = timer->data;
    self->paused = false;
    self->retry_tail = NULL;
    /* moves that waited go first, in the order they failed */
    if (self->archive_wait_head) {
        if (self->archive_tail)
            self->archive_tail->archive_next = self->archive_wait_head;
        else
            self->archive_head = self->archive_wait_head;
        self->archive_tail = self->archive_wait_tail;
        self->archive_wait_head = self->archive_wait_tail = NULL;
        schedule(self);
    }
    pump(self);
}

/* The journal could not take the job: back to the front of the queue, and pause. */
static void job_defer(nw_pipeline_t *self, job_t *job)
{
    if (!self->paused) {
        self->paused = true;
        self->journal_failed = true;
        uv_timer_start(&self->retry, on_retry, RETRY_MS, 0);
    }
    job_finish(self, job, true);
}

/* The feed made the file's messages durable and published them (or the journal
 * failed, and none went out). */
static void on_durable(void *arg, int status)
{
    job_t *job = arg;
    nw_pipeline_t *self = job->owner;
    char name[1100];
    if (status != 0) {
        if (!self->journal_failed)
            nw_err("journal write failed (%s): not taking files until it succeeds; "
                   "they stay in the drop folder",
                   strerror(-status));
        job_defer(self, job);
        return;
    }
    if (self->journal_failed) {
        self->journal_failed = false;
        nw_notice("journal writes succeed again: taking files");
    }
    for (size_t k = 0; k < job->story_count; k++) {
        story_t *story = &job->stories[k];
        if (!story->duplicate)
            nw_debug("published %s as %s on %zu topic%s (first '%s')",
                     shown(job, name, sizeof name), story->id, story->topic_count,
                     story->topic_count == 1 ? "" : "s", story->topics[0]);
    }
    start_archive(self, job);
}

/* Hand the file's stories to the feed as one submission; they are copied there, so
 * the packed articles go now. NW_FEED_DUPLICATE, -2 (rejected: job->reason says why),
 * -1 (the journal's failure: retry later) or 0 (on_durable follows). */
static int job_feed(nw_pipeline_t *self, job_t *job)
{
    nw_feed_article_t one, *offers = &one;
    const char *topics[NW_ARTICLE_MAX_ITEMS][NW_ROUTE_MAX_TOPICS];
    if (job->story_count > 1 && !(offers = calloc(job->story_count, sizeof *offers))) {
        job_reject(job, "%s", "out of memory");
        return -2;
    }
    for (size_t k = 0; k < job->story_count; k++) {
        story_t *story = &job->stories[k];
        for (size_t i = 0; i < story->topic_count; i++)
            topics[k][i] = story->topics[i];
        offers[k] = (nw_feed_article_t) {
            .id = story->id,
            .article = story->article_mp.data,
            .article_len = story->article_mp.size,
            .topics = topics[k],
            .topic_count = story->topic_count,
        };
    }
    nw_feed_source_t source = {
        .file = job->source_name,
        .format = nw_format_name(job->format),
        .encoding = job->encoding,
    };
    int rc = nw_feed_submit(self->feed, &source, offers, job->story_count, on_durable, job,
                            job->reason, sizeof job->reason);
    if (rc == -2)
        job->outcome = OUT_REJECT;
    char name[1100];
    for (size_t k = 0; k < job->story_count; k++) {
        story_t *story = &job->stories[k];
        story->duplicate = offers[k].duplicate;
        msgpack_sbuffer_destroy(&story->article_mp);
        msgpack_sbuffer_init(&story->article_mp);
        if (!story->duplicate)
            continue;
        if (job->story_count == 1)
            nw_info("duplicate %s: article %s was published within the dedup window; "
                    "archived, not published again",
                    shown(job, name, sizeof name), story->id);
        else
            nw_info("duplicate %s, item %zu: article %s was published within the dedup "
                    "window or earlier in the file; not published again",
                    shown(job, name, sizeof name), k + 1, story->id);
    }
    if (offers != &one)
        free(offers);
    return rc;
}

/* A read job reached the head of the flight list: decide its fate. */
static void job_dispatch(nw_pipeline_t *self, job_t *job)
{
    char name[1100];
    if (job->outcome == OUT_SKIP) {
        job_finish(self, job, false);
        return;
    }
    if (job->outcome == OUT_DEFER) {
        fault_begin(self, job->fault_errno, shown(job, name, sizeof name), job->reason);
        job_finish(self, job, true);
        return;
    }
    if (self->stats.file_errno && job->serial > self->fault_serial)
        fault_end(self);
    if (job->outcome == OUT_REJECT) {
        nw_warn("rejected %s: %s", shown(job, name, sizeof name), job->reason);
        self->stats.rejected++;
        start_archive(self, job);
        return;
    }
    if (job->encoding)
        nw_notice("%s: not UTF-8, read as %s and converted to UTF-8 (source.encoding says so)",
                  shown(job, name, sizeof name), job->encoding);
    if (job->replaced_bytes)
        nw_notice("%s: %u bytes of invalid %s replaced", shown(job, name, sizeof name),
                  job->replaced_bytes, job->encoding ? job->encoding : "UTF-8");
    if (self->paused) {
        job_finish(self, job, true);
        return;
    }
    job_stage(self, job, NW_STAGE_COMMIT);
    int rc = job_feed(self, job);
    if (rc == NW_FEED_DUPLICATE)
        start_archive(self, job);
    else if (rc == -2) {
        nw_warn("rejected %s: %s", shown(job, name, sizeof name), job->reason);
        self->stats.rejected++;
        start_archive(self, job);
    } else if (rc != 0)
        job_defer(self, job);
}

/* Jobs leave the read stage in arrival order: the first job still reading holds back
 * every ready job behind it. read_head moves past a job before it is dispatched, since
 * dispatching may finish it. */
static void flight_advance(nw_pipeline_t *self)
{
    if (self->advancing)
        return;
    self->advancing = true;
    job_t *job;
    while ((job = self->read_head) && job->stage == NW_STAGE_ORDER) {
        self->read_head = job->next;
        job_dispatch(self, job);
    }
    self->advancing = false;
}

static void after_read(uv_work_t *work, int status)
{
    batch_t *batch = work->data;
    nw_pipeline_t *self = batch->owner;
    self->reads--;
    schedule(self);
    for (size_t i = 0; i < batch->count; i++) {
        job_t *job = batch->jobs[i];
        if (status == UV_ECANCELED)
            job->outcome = OUT_SKIP;
        else
            self->stats.read_pool++;
        job_stage(self, job, NW_STAGE_ORDER);
    }
    free(batch);
    flight_advance(self);
}

/* A job for entry, entered in the flight list; NULL (entry put back) without memory. */
static job_t *job_new(nw_pipeline_t *self, entry_t *entry)
{
    /* All but the usual story's topic names (4 KiB of the 5 a job is) is zeroed: zeroing
     * those too took about 5,400 instructions a file (callgrind). */
    job_t *job = malloc(sizeof *job);
    if (job)
        memset(job, 0, offsetof(job_t, one.topics));
    size_t len = strlen(self->opt.drop_dir) + strlen(entry->rel) + 2;
    if (!job || !(job->path = malloc(len))) {
        free(job);
        nw_err("out of memory; %s stays pending", entry->rel);
        pending_push(self, entry, true);
        return NULL;
    }
    snprintf(job->path, len, "%s/%s", self->opt.drop_dir, entry->rel);
    job->owner = self;
    job->entry = entry;
    job->serial = ++self->serial;
    job->rules = nw_rules_ref(self->rules);
    job->max_size = self->opt.max_size;
    job->stories = &job->one;
    entry->job = job;
    job->prev = self->flight_tail;
    if (self->flight_tail)
        self->flight_tail->next = job;
    else
        self->flight_head = job;
    self->flight_tail = job;
    if (!self->read_head)
        self->read_head = job;
    self->jobs++;
    self->stats.in_flight++;
    job->stage = NW_STAGE_READ;
    stage_move(self, -1, NW_STAGE_READ);
    return job;
}

static void read_queue(nw_pipeline_t *self, batch_t *batch)
{
    self->reads++;
    if (uv_queue_work(self->loop, &batch->work, work_read, after_read) != 0) {
        self->reads--;
        for (size_t i = 0; i < batch->count; i++) {
            batch->jobs[i]->outcome = OUT_SKIP;
            job_stage(self, batch->jobs[i], NW_STAGE_ORDER);
        }
        free(batch);
        flight_advance(self);
    }
}

/* A few files waiting and none on the pool: read, parse and route them here. On these
 * machines a hand-off to the pool and its word back cost more (two wake-ups, each a
 * trip through the hypervisor) than reading a small file from the page cache, and a
 * steady stream of single files paid them for every file. Only small files (HERE_SIZE)
 * in a folder known to be local (nw_fs_local) are read here, a few a turn (HERE_MAX);
 * a queue longer than that is a burst, which the pool's threads take in batches beside
 * the loop (burst_pool). Without burst_pool the loop reads the burst too, BATCH_MAX
 * files a turn (about a millisecond), going round without sleeping until none wait;
 * the poll between turns publishes what became durable meanwhile. Order is kept: a job
 * read here enters the flight list like any other. */
static bool reads_here(const nw_pipeline_t *self)
{
    return self->local && !self->draining && !self->paused && self->jobs < MAX_JOBS &&
           self->pending_head &&
           (!self->opt.burst_pool || (self->reads == 0 && self->stats.pending <= HERE_MAX));
}

static void read_here(nw_pipeline_t *self)
{
    for (unsigned n = 0; reads_here(self); n++) {
        if (n == BATCH_MAX) {
            another_turn(self);
            break;
        }
        job_t *job = job_new(self, pending_pop(self));
        if (!job)
            break;
        job->here = true;
        read_one(job);
        if (job->outcome == OUT_LARGE) {
            job->here = false;
            batch_t *batch = batch_new(self);
            if (!batch) {
                job_fail(job, "cannot hand a large file to the pool: %s", ENOMEM);
                job_stage(self, job, NW_STAGE_ORDER); /* deferred: retried after the backoff */
                break;
            }
            batch->jobs[batch->count++] = job;
            read_queue(self, batch);
            continue; /* the small files after it still go here, without burst_pool */
        }
        self->stats.read_here++;
        job_stage(self, job, NW_STAGE_ORDER);
    }
    flight_advance(self);
}

/* Start reading pending files while there is room: a free hand-off slot and jobs. A
 * lone file goes out alone (no wait for company); what gathered while the slots were
 * taken is shared between the free ones. */
static void pump(nw_pipeline_t *self)
{
    read_here(self);
    while ((self->opt.burst_pool || !self->local) && !self->draining && !self->paused &&
           self->jobs < MAX_JOBS && self->pending_head && self->reads < READS_MAX) {
        size_t take = self->stats.pending < MAX_JOBS - self->jobs ? self->stats.pending
                                                                  : MAX_JOBS - self->jobs;
        size_t slots = READS_MAX - self->reads;
        size_t want = (take + slots - 1) / slots;
        if (want > BATCH_MAX)
            want = BATCH_MAX;
        batch_t *batch = batch_new(self);
        if (!batch)
            break;
        while (batch->count < want && self->pending_head) {
            job_t *job = job_new(self, pending_pop(self));
            if (!job)
                break;
            batch->jobs[batch->count++] = job;
        }
        if (!batch->count) {
            free(batch);
            break;
        }
        read_queue(self, batch);
    }
    if (self->draining && self->jobs == 0 && self->drained) {
        void (*done)(void *) = self->drained;
        self->drained = NULL;
        done(self->drained_arg);
    }
}

static void on_check(uv_check_t *check)
{
    nw_pipeline_t *self = check->data;
    uv_check_stop(check);
    uv_idle_stop(&self->more); /* started again if this turn leaves files for the next */
    archive_pump(self);
    pump(self);
    if (self->held && self->stats.pending <= PENDING_HIGH / 2 && !self->draining) {
        self->held = false;
        self->resume(self->resume_arg); /* may submit: handed off on the next turn */
    }
}

/* Hand-offs wait for the end of the loop turn, so what one turn gathers (a burst of
 * inotify events, a group commit's jobs) goes to the pool together. */
static void schedule(nw_pipeline_t *self)
{
    uv_check_start(&self->check, on_check);
}

/* --- life cycle ----------------------------------------------------------------- */

nw_pipeline_t *nw_pipeline_new(uv_loop_t *loop, nw_pipeline_options_t options, nw_feed_t *feed,
                               nw_rules_t *rules)
{
    nw_pipeline_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->opt = options;
    self->opt.drop_dir = strdup(options.drop_dir);
    self->opt.state_dir = strdup(options.state_dir);
    self->known = zhashx_new();
    if (!self->known || !self->opt.drop_dir || !self->opt.state_dir) {
        zhashx_destroy(&self->known);
        free((char *) self->opt.drop_dir);
        free((char *) self->opt.state_dir);
        free(self);
        return NULL;
    }
    zhashx_set_destructor(self->known, entry_free);
    /* The key is the entry's own rel: no second copy per pending file. */
    zhashx_set_key_duplicator(self->known, NULL);
    zhashx_set_key_destructor(self->known, NULL);
    zhashx_set_key_hasher(self->known, path_hash);
    self->loop = loop;
    self->stage_at = uv_hrtime();
    self->feed = feed;
    self->rules = nw_rules_ref(rules);
    /* Start-up may block: an unreachable server stalls it, not a running loop. main has
     * made the drop folder by now (a relay has none); one that cannot be looked at counts
     * as remote. */
    struct statfs fs;
    bool typed = statfs(self->opt.drop_dir, &fs) == 0;
    self->local = typed && nw_fs_local((long) fs.f_type);
    if (typed && self->local)
        nw_info("%s is on a local file system: while few files wait, they are read on the "
                "loop thread, and a burst's on the %s",
                self->opt.drop_dir, self->opt.burst_pool ? "thread pool" : "loop thread too");
    else if (typed)
        nw_info("%s is not on a file system known to be local: files are read on the thread "
                "pool only",
                self->opt.drop_dir);
    char archive[PATH_MAX];
    snprintf(archive, sizeof archive, "%s/archive", self->opt.state_dir);
    self->rename_here = statfs(archive, &fs) == 0 && nw_fs_local((long) fs.f_type);
    uv_timer_init(loop, &self->retry);
    self->retry.data = self;
    uv_check_init(loop, &self->check);
    self->check.data = self;
    uv_idle_init(loop, &self->more);
    self->more.data = self;
    self->open_handles = 3;
    return self;
}

void nw_pipeline_set_rules(nw_pipeline_t *self, nw_rules_t *rules)
{
    nw_rules_t *old = self->rules;
    self->rules = nw_rules_ref(rules);
    nw_rules_unref(&old);
}

void nw_pipeline_drain(nw_pipeline_t *self, void (*done)(void *arg), void *arg)
{
    self->draining = true;
    self->drained = done;
    self->drained_arg = arg;
    uv_timer_stop(&self->retry);
    /* A paused pipeline holds no job that can finish on its own but by retrying. */
    self->paused = false;
    self->retry_tail = NULL;
    char name[1100];
    job_t *job;
    while ((job = self->archive_wait_head) != NULL) {
        self->archive_wait_head = job->archive_next;
        nw_info("%s stays in the drop folder for the next start: %s",
                shown(job, name, sizeof name), job->archive_err);
        self->moves_deferred--;
        job_finish(self, job, false);
    }
    self->archive_wait_tail = NULL;
    pump(self);
}

void nw_pipeline_stats(const nw_pipeline_t *self, nw_pipeline_stats_t *out)
{
    *out = self->stats;
    stage_account(self, uv_hrtime(), out->stage_ns);
}

static void on_handle_closed(uv_handle_t *handle)
{
    nw_pipeline_t *self = handle->data;
    if (--self->open_handles > 0)
        return;
    zhashx_destroy(&self->known);
    nw_rules_unref(&self->rules);
    free((char *) self->opt.drop_dir);
    free((char *) self->opt.state_dir);
    free(self);
}

void nw_pipeline_destroy(nw_pipeline_t **self_p)
{
    nw_pipeline_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    /* Jobs still in flight (a forced exit) are freed with their entries; their files
     * are still in the drop folder and will be read again at the next start. */
    while (self->flight_head) {
        job_t *job = self->flight_head;
        self->flight_head = job->next;
        job_free(job);
    }
    uv_close((uv_handle_t *) &self->retry, on_handle_closed);
    uv_close((uv_handle_t *) &self->check, on_handle_closed);
    uv_close((uv_handle_t *) &self->more, on_handle_closed);
}
