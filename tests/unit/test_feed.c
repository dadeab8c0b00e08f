/*
 * test_feed: the feed against a fake publisher and a real journal in a temporary
 * folder, on a real libuv loop: the order journal durable -> publish -> done, seqs per
 * topic across submissions and across a reopen, the dedup window (inside, outside,
 * changed by the setter, within one submission, after a reopen), failure unwinding (a
 * failed commit, a refused append, an article that cannot be encoded), drain and
 * destroy with a submission in flight; a relay's forwarded messages (nw_feed_forward).
 */
#include "feed.h"
#include "log.h"
#include "nw_codec.h"
#include "runner.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uv_loop_t loop;
static char state[256];
static nw_journal_t *journal;

/* --- the fake publisher: what was sent, and whether it was durable by then ---------- */

typedef struct {
    char topic[64], id[41], file[64];
    uint64_t seq;
    char epoch[33];
    bool durable; /* the journal said its seq was durable when it was sent */
} sent_t;

static sent_t sent[64];
static int nsent;
static unsigned char last_bytes[4096]; /* the last message sent, as sent */
static size_t last_len;
static int fake_rc; /* what send returns */

static int fake_send(void *self, const char *topic, const void *data, size_t len)
{
    CHECK(self == &sent);
    char err[256];
    nw_codec_message_t *m = nw_codec_message_decode(data, len, err, sizeof err);
    CHECK(m != NULL);
    if (m && nsent < 64) {
        sent_t *s = &sent[nsent];
        snprintf(s->topic, sizeof s->topic, "%s", topic);
        snprintf(s->id, sizeof s->id, "%s", m->env.id);
        snprintf(s->file, sizeof s->file, "%s", m->env.source_file ? m->env.source_file : "");
        snprintf(s->epoch, sizeof s->epoch, "%s", m->env.epoch);
        s->seq = m->env.seq;
        CHECK_STR(m->env.topic, topic);
        s->durable = nw_journal_durable_seq(journal, topic) >= m->env.seq;
    }
    nw_codec_message_destroy(&m);
    last_len = len < sizeof last_bytes ? len : 0;
    if (last_len)
        memcpy(last_bytes, data, len);
    nsent++;
    return fake_rc;
}

static nw_publisher_t fake(void)
{
    return (nw_publisher_t) {.self = &sent, .send = fake_send};
}

/* --- done callbacks: their order, status and how much was sent by then -------------- */

typedef struct {
    int tag, status, sent_before;
} done_t;

static done_t dones[64];
static int ndone;
static bool in_submit;           /* done must never run from inside nw_feed_submit */
static nw_feed_t *resubmit_feed; /* when set, a failed done submits again */
static int resubmit_rc, resubmit_errno;

static int submit(nw_feed_t *feed, nw_feed_article_t *a, size_t n, int tag, char *err,
                  size_t errlen);

static nw_feed_article_t article(const char *id, const char *const *topics, size_t n);

static void on_done(void *arg, int status)
{
    CHECK(!in_submit);
    if (ndone < 64)
        dones[ndone] = (done_t) {(int) (intptr_t) arg, status, nsent};
    ndone++;
    if (resubmit_feed && status != 0) {
        static const char *const t[] = {"retry"};
        nw_feed_article_t a = article("00000000000000000000000000000000000000ee", t, 1);
        char err[256];
        errno = 0;
        resubmit_rc = submit(resubmit_feed, &a, 1, 99, err, sizeof err);
        resubmit_errno = errno;
    }
}

/* --- helpers ------------------------------------------------------------------------ */

static bool timed_out;
static void on_guard(uv_timer_t *t)
{
    (void) t;
    timed_out = true;
}

/* Run the loop until n done callbacks in all have run; false after 10 s. */
static bool wait_done(int n)
{
    uv_timer_t guard;
    uv_timer_init(&loop, &guard);
    timed_out = false;
    uv_timer_start(&guard, on_guard, 10000, 0);
    while (ndone < n && !timed_out)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *) &guard, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    if (ndone < n)
        fprintf(stderr, "timed out waiting for %d done callbacks (have %d)\n", n, ndone);
    return ndone >= n;
}

/* Run the loop until the journal knows id again (a widened window reads ids back on the
 * thread pool); false after 10 s. */
static bool wait_seen(const char *id)
{
    uv_timer_t guard;
    uv_timer_init(&loop, &guard);
    timed_out = false;
    uv_timer_start(&guard, on_guard, 10000, 0);
    while (!nw_journal_seen(journal, id, 0) && !timed_out)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *) &guard, NULL);
    uv_run(&loop, UV_RUN_NOWAIT);
    return nw_journal_seen(journal, id, 0);
}

static msgpack_sbuffer packed[16];
static int npacked;

/* A packed ninjs article (kept until the end of the case). */
static nw_feed_article_t article(const char *id, const char *const *topics, size_t n)
{
    msgpack_sbuffer *b = &packed[npacked++ % 16];
    msgpack_sbuffer_destroy(b);
    msgpack_sbuffer_init(b);
    nw_ninjs_t ninjs = {
        .uri = "urn:newswire:test",
        .headline = "A headline",
        .body_text = "A body.",
        .versioncreated = "2026-12-02T00:00:00.000Z",
        .subjects = topics,
        .subject_count = n,
    };
    char err[256];
    int rc = nw_codec_pack_article(&ninjs, b, err, sizeof err);
    if (rc)
        fprintf(stderr, "pack: %s\n", err);
    CHECK(rc == 0);
    return (nw_feed_article_t) {
        .id = id, .article = b->data, .article_len = b->size, .topics = topics, .topic_count = n};
}

static int submit(nw_feed_t *feed, nw_feed_article_t *a, size_t n, int tag, char *err,
                  size_t errlen)
{
    nw_feed_source_t source = {.file = "story.txt", .format = "header"};
    in_submit = true;
    int rc = nw_feed_submit(feed, &source, a, n, on_done, (void *) (intptr_t) tag, err, errlen);
    in_submit = false;
    return rc;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st, (void) flag, (void) ftw;
    return remove(path);
}

static nw_journal_options_t jopt(void)
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

static void open_journal(void)
{
    char err[256] = "";
    nw_journal_options_t o = jopt();
    journal = nw_journal_open(&loop, state, o, err, sizeof err);
    if (!journal)
        fprintf(stderr, "journal open failed: %s\n", err);
    CHECK(journal != NULL);
}

static void close_journal(void)
{
    nw_journal_close(&journal);
    uv_run(&loop, UV_RUN_NOWAIT);
}

static nw_feed_t *new_feed(int64_t window_ms)
{
    nw_feed_t *feed = nw_feed_new(&loop, (nw_feed_options_t) {.dedup_window_ms = window_ms},
                                  journal, fake());
    CHECK(feed != NULL);
    return feed;
}

static void fresh(void)
{
    nftw(state, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    mkdir(state, 0700);
    nsent = ndone = 0;
    fake_rc = 0;
    open_journal();
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define ID(n) "00000000000000000000000000000000000000" #n

/* --- the tests ---------------------------------------------------------------------- */

/* Nothing is sent before its record is durable, and done comes after the sends. Seqs
 * go on per topic across the articles of one submission and across submissions. */
TEST_IMPL(order_and_seqs)
{
    fresh();
    nw_feed_t *feed = new_feed(60000);
    static const char *const ab[] = {"alpha", "beta"}, *const a[] = {"alpha"};
    nw_feed_article_t one[2] = {article(ID(01), ab, 2), article(ID(02), a, 1)};
    char err[256];
    CHECK(submit(feed, one, 2, 1, err, sizeof err) == 0);
    CHECK(!one[0].duplicate && !one[1].duplicate);
    CHECK(nsent == 0 && ndone == 0); /* nothing before the commit */
    CHECK(nw_journal_last_seq(journal, "alpha") == 2);
    CHECK(nw_journal_durable_seq(journal, "alpha") == 0);
    nw_feed_article_t two = article(ID(03), a, 1);
    CHECK(submit(feed, &two, 1, 2, err, sizeof err) == 0);
    nw_feed_stats_t fs;
    nw_feed_stats(feed, &fs);
    CHECK(fs.in_flight == 2 && fs.published == 0);
    CHECK(wait_done(2));
    CHECK(nsent == 4);
    CHECK_STR(sent[0].topic, "alpha");
    CHECK(sent[0].seq == 1);
    CHECK_STR(sent[0].id, ID(01));
    CHECK_STR(sent[1].topic, "beta");
    CHECK(sent[1].seq == 1);
    CHECK_STR(sent[2].topic, "alpha");
    CHECK(sent[2].seq == 2);
    CHECK_STR(sent[2].id, ID(02));
    CHECK_STR(sent[3].topic, "alpha");
    CHECK(sent[3].seq == 3);
    CHECK_STR(sent[3].id, ID(03));
    for (int i = 0; i < nsent; i++) {
        CHECK(sent[i].durable);
        CHECK_STR(sent[i].epoch, nw_journal_epoch(journal));
        CHECK_STR(sent[i].file, "story.txt");
    }
    /* each done after its own submission's sends, in submission order */
    CHECK(dones[0].tag == 1 && dones[0].status == 0 && dones[0].sent_before == 3);
    CHECK(dones[1].tag == 2 && dones[1].status == 0 && dones[1].sent_before == 4);
    nw_feed_stats(feed, &fs);
    CHECK(fs.published == 3 && fs.messages == 4 && fs.in_flight == 0 && fs.duplicates == 0);
    CHECK(!fs.journal_failing);
    nw_feed_destroy(&feed);
    CHECK(feed == NULL);

    /* a publisher that fails does not undo what is durable: still counted published */
    feed = new_feed(60000);
    fake_rc = -1;
    nw_feed_article_t three = article(ID(04), a, 1);
    CHECK(submit(feed, &three, 1, 3, err, sizeof err) == 0);
    CHECK(wait_done(3));
    CHECK(dones[2].status == 0 && nsent == 5 && sent[4].seq == 4);
    nw_feed_stats(feed, &fs);
    CHECK(fs.published == 1);
    fake_rc = 0;
    nw_feed_destroy(&feed);

    /* across a reopen: seqs go on, and the ids are still known within the window */
    close_journal();
    open_journal();
    feed = new_feed(60000);
    nw_feed_article_t again = article(ID(03), a, 1);
    CHECK(submit(feed, &again, 1, 4, err, sizeof err) == NW_FEED_DUPLICATE);
    CHECK(again.duplicate);
    nw_feed_article_t next = article(ID(05), ab, 2);
    CHECK(submit(feed, &next, 1, 5, err, sizeof err) == 0);
    CHECK(wait_done(4));
    CHECK(dones[3].tag == 5 && dones[3].status == 0);
    CHECK(nsent == 7);
    CHECK_STR(sent[5].topic, "alpha");
    CHECK(sent[5].seq == 5);
    CHECK_STR(sent[6].topic, "beta");
    CHECK(sent[6].seq == 2);
    CHECK(sent[5].durable && sent[6].durable);
    nw_feed_destroy(&feed);
    close_journal();
}

/* The window: inside it an id is left out, outside it goes again (with the next seq);
 * the setter moves it; a repeat within one submission is left out whatever the window. */
TEST_IMPL(dedup_window)
{
    fresh();
    nw_feed_t *feed = new_feed(60000);
    static const char *const t[] = {"news"};
    char err[256];
    nw_feed_article_t a = article(ID(11), t, 1);
    CHECK(submit(feed, &a, 1, 1, err, sizeof err) == 0);
    CHECK(wait_done(1));
    /* inside the window: nothing journaled, no done */
    nw_feed_article_t b = article(ID(11), t, 1);
    CHECK(submit(feed, &b, 1, 2, err, sizeof err) == NW_FEED_DUPLICATE);
    CHECK(b.duplicate);
    CHECK(nw_journal_last_seq(journal, "news") == 1);
    nw_feed_stats_t fs;
    nw_feed_stats(feed, &fs);
    CHECK(fs.duplicates == 1 && fs.in_flight == 0);

    /* within one submission: the second of two equal ids, and one seen before */
    nw_feed_article_t three[3] = {article(ID(12), t, 1), article(ID(12), t, 1),
                                  article(ID(11), t, 1)};
    CHECK(submit(feed, three, 3, 3, err, sizeof err) == 0);
    CHECK(!three[0].duplicate && three[1].duplicate && three[2].duplicate);
    CHECK(wait_done(2));
    CHECK(nsent == 2 && sent[1].seq == 2);
    CHECK_STR(sent[1].id, ID(12));
    nw_feed_stats(feed, &fs);
    CHECK(fs.duplicates == 3 && fs.published == 2);

    /* narrowed by the setter (a reload): once the id is older than the window it goes */
    CHECK(nw_feed_set_dedup_window(feed, 1) == 0);
    int64_t t0 = now_ms();
    while (now_ms() < t0 + 3)
        ; /* the clock itself is what is waited for */
    nw_feed_article_t c = article(ID(11), t, 1);
    CHECK(submit(feed, &c, 1, 4, err, sizeof err) == 0);
    CHECK(!c.duplicate);
    CHECK(wait_done(3));
    CHECK(nsent == 3 && sent[2].seq == 3);
    CHECK_STR(sent[2].id, ID(11));
    /* widened again: what was sent is inside it once the journal has read the ids the
     * narrow window let go back from its segments */
    CHECK(nw_feed_set_dedup_window(feed, 60000) == 0);
    CHECK(wait_seen(ID(11)) && wait_seen(ID(12)));
    nw_feed_article_t d = article(ID(11), t, 1);
    CHECK(submit(feed, &d, 1, 5, err, sizeof err) == NW_FEED_DUPLICATE);
    nw_feed_destroy(&feed);

    /* no window: only repeats within the submission are left out */
    feed = new_feed(0);
    nw_feed_article_t e[2] = {article(ID(11), t, 1), article(ID(11), t, 1)};
    CHECK(submit(feed, e, 2, 6, err, sizeof err) == 0);
    CHECK(!e[0].duplicate && e[1].duplicate);
    CHECK(wait_done(4));
    CHECK(nsent == 4 && sent[3].seq == 4);
    nw_feed_destroy(&feed);
    close_journal();
}

/* A failed commit: nothing of it (nor of what was appended behind it) is published,
 * done says why, the seqs and ids are taken back and handed out again; a submission
 * from inside the failed done is refused (the journal is unwinding) and leaves nothing. */
TEST_IMPL(commit_failure)
{
    fresh();
    nw_feed_t *feed = new_feed(60000);
    static const char *const t[] = {"news"}, *const u[] = {"other"};
    char err[256];
    nw_feed_article_t a = article(ID(21), t, 1);
    CHECK(submit(feed, &a, 1, 1, err, sizeof err) == 0);
    CHECK(wait_done(1));
    CHECK(nsent == 1);

    /* the segment may grow by only a few bytes: the next write fails with EFBIG */
    char seg[512];
    snprintf(seg, sizeof seg, "%s/journal/000000000001.nwj", state);
    struct stat st;
    CHECK(stat(seg, &st) == 0);
    struct rlimit saved, tight;
    CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    tight = saved;
    tight.rlim_cur = (rlim_t) st.st_size + 16;
    signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &tight) == 0);
    nw_feed_article_t b = article(ID(22), t, 1);
    CHECK(submit(feed, &b, 1, 2, err, sizeof err) == 0);
    nw_feed_article_t c = article(ID(23), u, 1);
    CHECK(submit(feed, &c, 1, 3, err, sizeof err) == 0);
    CHECK(nw_journal_last_seq(journal, "news") == 2);
    resubmit_feed = feed;
    resubmit_rc = 0;
    CHECK(wait_done(3));
    resubmit_feed = NULL;
    CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    CHECK(dones[1].tag == 2 && dones[1].status == -EFBIG);
    CHECK(dones[2].tag == 3 && dones[2].status == -EFBIG);
    CHECK(nsent == 1); /* nothing of either was published */
    CHECK(resubmit_rc == -1 && resubmit_errno == EIO);
    CHECK(nw_journal_last_seq(journal, "retry") == 0);
    CHECK(nw_journal_last_seq(journal, "news") == 1); /* seq 2 not burnt */
    CHECK(nw_journal_last_seq(journal, "other") == 0);
    nw_feed_stats_t fs;
    nw_feed_stats(feed, &fs);
    CHECK(fs.journal_failing && fs.published == 1 && fs.in_flight == 0);
    CHECK(fs.journal_errno == EFBIG); /* why, for STATUS */

    /* retried: not duplicates (their ids were taken back), the same seqs, published */
    nw_feed_article_t b2 = article(ID(22), t, 1);
    CHECK(submit(feed, &b2, 1, 4, err, sizeof err) == 0);
    CHECK(!b2.duplicate);
    CHECK(wait_done(4));
    CHECK(dones[3].status == 0 && nsent == 2);
    CHECK(sent[1].seq == 2 && sent[1].durable);
    CHECK_STR(sent[1].id, ID(22));
    nw_feed_stats(feed, &fs);
    CHECK(!fs.journal_failing && fs.published == 2);
    nw_feed_destroy(&feed);
    close_journal();
}

/* An article that cannot be encoded leaves no record of the submission's others
 * (everything is packed before anything is appended). (An append the journal refuses
 * is test_commit_failure's submission from inside a failed done.) */
TEST_IMPL(refused)
{
    fresh();
    nw_feed_t *feed = new_feed(60000);
    static const char *const t[] = {"news"};
    char err[256] = "";
    nw_feed_article_t two[2] = {article(ID(31), t, 1), article(ID(32), t, 1)};
    two[1].article = "x"; /* not a packed map */
    two[1].article_len = 1;
    CHECK(submit(feed, two, 2, 1, err, sizeof err) == -2);
    CHECK(strncmp(err, "cannot encode: ", 15) == 0);
    CHECK(nw_journal_last_seq(journal, "news") == 0);
    CHECK(!nw_journal_seen(journal, ID(31), 0));
    nw_feed_article_t bad_id = article("not-hex", t, 1);
    CHECK(submit(feed, &bad_id, 1, 2, err, sizeof err) == -2);
    CHECK(nw_journal_last_seq(journal, "news") == 0);

    /* the first article alone goes, with seq 1 */
    nw_feed_article_t one = article(ID(31), t, 1);
    CHECK(submit(feed, &one, 1, 3, err, sizeof err) == 0);
    CHECK(wait_done(1));
    CHECK(dones[0].tag == 3 && nsent == 1 && sent[0].seq == 1);
    nw_feed_destroy(&feed);
    close_journal();
}

/* Drain waits for what is in flight and refuses more; destroy abandons what is in
 * flight (its done never runs, the journal's callback frees it). */
static bool drained;
static void on_drained(void *arg)
{
    CHECK(arg == &drained);
    drained = true;
}

TEST_IMPL(drain_destroy)
{
    fresh();
    nw_feed_t *feed = new_feed(60000);
    static const char *const t[] = {"news"};
    char err[256];
    nw_feed_article_t a = article(ID(41), t, 1);
    CHECK(submit(feed, &a, 1, 1, err, sizeof err) == 0);
    drained = false;
    nw_feed_drain(feed, on_drained, &drained);
    CHECK(!drained);
    nw_feed_article_t b = article(ID(42), t, 1);
    errno = 0;
    CHECK(submit(feed, &b, 1, 2, err, sizeof err) == -1 && errno == ESHUTDOWN);
    CHECK(wait_done(1));
    CHECK(drained && nsent == 1);
    nw_feed_destroy(&feed);

    /* nothing in flight: drained at once */
    feed = new_feed(60000);
    drained = false;
    nw_feed_drain(feed, on_drained, &drained);
    CHECK(drained);
    nw_feed_destroy(&feed);

    feed = new_feed(60000);
    nw_feed_article_t c = article(ID(43), t, 1);
    CHECK(submit(feed, &c, 1, 3, err, sizeof err) == 0);
    nw_feed_destroy(&feed);
    close_journal(); /* runs the commit: nothing sent, no done */
    CHECK(ndone == 1 && nsent == 1);
}

/* A forwarded message (a relay's, issue 14): journaled and sent byte for byte with the
 * upstream's epoch and seq, never after its commit, done after the send; only the
 * topic's last seq + 1 is taken; no id dedup (the same article on two topics); replay's
 * cursor reads the same bytes back; drain refuses more. */
static void upstream_message(msgpack_sbuffer *out, const char *topic, uint64_t seq,
                             const char *id)
{
    static const char *const t[] = {"news"};
    nw_feed_article_t a = article(id, t, 1);
    nw_envelope_t env = {
        .topic = topic,
        .seq = seq,
        .epoch = "0123456789abcdef0123456789abcdef",
        .id = id,
        .sent = "2026-12-02T00:45:00.000Z",
        .source_file = "up.txt",
        .source_format = "header",
    };
    char err[256];
    msgpack_sbuffer_init(out);
    CHECK(nw_codec_pack_message(&env, a.article, a.article_len, out, err, sizeof err) == 0);
}

static int forward(nw_feed_t *feed, const char *topic, uint64_t seq, const char *id,
                   const msgpack_sbuffer *m, int tag)
{
    in_submit = true;
    int rc = nw_feed_forward(feed, topic, seq, id, m->data, m->size, on_done,
                             (void *) (intptr_t) tag);
    in_submit = false;
    return rc;
}

TEST_IMPL(forward)
{
    fresh();
    nw_feed_t *feed = new_feed(60000);
    msgpack_sbuffer n1, s1, n2, n4;
    upstream_message(&n1, "news", 1, ID(51));
    upstream_message(&s1, "sport", 1, ID(51)); /* the same article on another topic */
    upstream_message(&n2, "news", 2, ID(52));
    upstream_message(&n4, "news", 4, ID(54));
    CHECK(forward(feed, "news", 1, ID(51), &n1, 1) == 0);
    CHECK(nsent == 0); /* not before the commit */
    CHECK(forward(feed, "sport", 1, ID(51), &s1, 2) == 0);
    errno = 0;
    CHECK(forward(feed, "news", 4, ID(54), &n4, 9) == -1 && errno == EINVAL); /* a gap */
    errno = 0;
    CHECK(forward(feed, "news", 1, ID(51), &n1, 9) == -1 && errno == EINVAL); /* a repeat */
    CHECK(wait_done(2));
    CHECK(nsent == 2 && dones[0].tag == 1 && dones[0].status == 0 && dones[0].sent_before == 1);
    CHECK(dones[1].tag == 2 && dones[1].sent_before == 2);
    CHECK(sent[0].durable && sent[0].seq == 1);
    CHECK_STR(sent[0].topic, "news");
    CHECK_STR(sent[0].epoch, "0123456789abcdef0123456789abcdef"); /* the upstream's */
    CHECK(strcmp(sent[0].epoch, nw_journal_epoch(journal)) != 0);
    CHECK_STR(sent[1].topic, "sport");
    CHECK(last_len == s1.size && memcmp(last_bytes, s1.data, s1.size) == 0);
    CHECK(forward(feed, "news", 2, ID(52), &n2, 3) == 0);
    CHECK(wait_done(3));
    CHECK(nsent == 3 && sent[2].seq == 2 && sent[2].durable);
    CHECK(last_len == n2.size && memcmp(last_bytes, n2.data, n2.size) == 0);
    nw_feed_stats_t fs;
    nw_feed_stats(feed, &fs);
    CHECK(fs.forwarded == 3 && fs.messages == 3 && fs.published == 0 && fs.duplicates == 0);

    /* what replay reads back is the upstream's bytes */
    uint64_t oldest = 0, seq = 0;
    nw_journal_cursor_t *cur = nw_journal_cursor_new(journal, "news", 1, &oldest);
    CHECK(cur != NULL && oldest == 1);
    const void *msg;
    size_t len;
    CHECK(cur && nw_journal_cursor_next(cur, &seq, &msg, &len) == 1);
    CHECK(seq == 1 && len == n1.size && memcmp(msg, n1.data, len) == 0);
    CHECK(cur && nw_journal_cursor_next(cur, &seq, &msg, &len) == 1);
    CHECK(seq == 2 && len == n2.size && memcmp(msg, n2.data, len) == 0);
    CHECK(cur && nw_journal_cursor_next(cur, &seq, &msg, &len) == 0);
    nw_journal_cursor_destroy(&cur);

    drained = false;
    nw_feed_drain(feed, on_drained, &drained);
    CHECK(drained);
    errno = 0;
    CHECK(forward(feed, "news", 3, ID(53), &n2, 9) == -1 && errno == ESHUTDOWN);
    nw_feed_destroy(&feed);
    close_journal();
    msgpack_sbuffer_destroy(&n1);
    msgpack_sbuffer_destroy(&s1);
    msgpack_sbuffer_destroy(&n2);
    msgpack_sbuffer_destroy(&n4);
}

/* Each case: its own temporary state folder and loop, both left clean. */
static int setup(void)
{
    nw_log_set_level(NW_LOG_ERR); /* the journal's failure warning is expected here */
    snprintf(state, sizeof state, "%s/test_feed.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
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
    for (int i = 0; i < 16; i++) {
        msgpack_sbuffer_destroy(&packed[i]);
        msgpack_sbuffer_init(&packed[i]); /* a next case in this process reuses it */
    }
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(uv_loop_close(&loop) == 0);
    nftw(state, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
TEST_TEARDOWN(teardown)
