/*
 * feed: dedup, seq, envelope, journal, publish once durable, or once written in early
 * mode (see feed.h for the path).
 *
 * A submission becomes one record: its messages packed back to back, and beside each
 * its topic and seq; a forwarded message is a record of one, its bytes as given. The record waits
 * in the journal's commit queue (its commit callback holds it) and in the feed's in-flight list,
 * which is only there so that destroy can abandon what is still waiting and drain can tell when
 * nothing is.
 */
#include "feed.h"
#include "log.h"
#include "nw_codec.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct record record_t;

typedef struct {
    const char *topic; /* in the record's own copy */
    uint64_t seq;
    size_t end; /* where the message ends in messages */
} message_t;

struct record {
    nw_feed_t *owner;      /* NULL once the feed is destroyed: abandoned */
    record_t *next, *prev; /* in flight, oldest first */
    nw_feed_done_fn *done;
    void *arg;
    msgpack_sbuffer messages;
    size_t count;    /* messages */
    size_t articles; /* articles not left out as duplicates */
    bool forwarded;  /* nw_feed_forward's: an upstream's message */
    bool published;  /* handed to the publisher (at written, or durable) */
    message_t *msgs; /* count of them, then the topics' bytes */
};

struct nw_feed {
    uv_loop_t *loop;
    nw_feed_options_t options;
    nw_journal_t *journal;
    nw_publisher_t publisher;
    record_t *head, *tail;
    bool draining;
    void (*drained)(void *arg);
    void *drained_arg;
    nw_feed_stats_t stats;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

nw_feed_t *nw_feed_new(uv_loop_t *loop, nw_feed_options_t options, nw_journal_t *journal,
                       nw_publisher_t publisher)
{
    nw_feed_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->loop = loop;
    self->options = options;
    self->journal = journal;
    self->publisher = publisher;
    return self;
}

int nw_feed_set_dedup_window(nw_feed_t *self, int64_t window_ms)
{
    self->options.dedup_window_ms = window_ms;
    /* the journal must hold as many ids as dedup asks about */
    return nw_journal_set_dedup_window(self->journal, window_ms);
}

static void record_free(record_t *rec)
{
    msgpack_sbuffer_destroy(&rec->messages);
    free(rec->msgs);
    free(rec);
}

static void unlink_record(nw_feed_t *self, record_t *rec)
{
    if (rec->prev)
        rec->prev->next = rec->next;
    else
        self->head = rec->next;
    if (rec->next)
        rec->next->prev = rec->prev;
    else
        self->tail = rec->prev;
    rec->next = rec->prev = NULL;
    self->stats.in_flight--;
}

static void maybe_drained(nw_feed_t *self)
{
    if (self->draining && self->stats.in_flight == 0 && self->drained) {
        void (*drained)(void *) = self->drained;
        self->drained = NULL;
        drained(self->drained_arg);
    }
}

/* Publish: by default once the record is durable (the journal calls written just before
 * durable); in early mode once its write(2) returned. A message that went out before its
 * record was written could be lost by a crash of the process while a subscriber already
 * holds its seq; one that went out before its fdatasync can be lost by a power loss,
 * which the journal answers with a new epoch (journal.h, early publish). */
static void publish_record(nw_feed_t *self, record_t *rec)
{
    if (rec->published)
        return;
    rec->published = true;
    size_t start = 0;
    for (size_t i = 0; i < rec->count; i++) {
        /* a send that fails is the publisher's to log: the record is durable (or soon)
         * and replay serves it, so the article counts as published all the same */
        self->publisher.send(self->publisher.self, rec->msgs[i].topic, rec->messages.data + start,
                             rec->msgs[i].end - start);
        start = rec->msgs[i].end;
    }
    self->stats.published += rec->articles;
    self->stats.messages += rec->count;
    if (rec->forwarded)
        self->stats.forwarded += rec->count;
}

static void on_written(void *arg, int status)
{
    record_t *rec = arg;
    if (rec->owner && status == 0)
        publish_record(rec->owner, rec);
}

/* done runs only now, in every mode: the input lets go (the file is archived) once the
 * record is on disk, so a power loss leaves the file to be submitted again. */
static void on_durable(void *arg, int status)
{
    record_t *rec = arg;
    nw_feed_t *self = rec->owner;
    if (!self) {
        record_free(rec);
        return;
    }
    unlink_record(self, rec);
    nw_feed_done_fn *done = rec->done;
    void *done_arg = rec->arg;
    if (status != 0) {
        self->stats.journal_failing = true;
        self->stats.journal_errno = -status;
    } else {
        self->stats.journal_failing = false;
        publish_record(self, rec);
    }
    record_free(rec);
    done(done_arg, status);
    maybe_drained(self);
}

/* Mark duplicates; the number of messages the rest make, and their topics' bytes. */
static size_t dedup(nw_feed_t *self, nw_feed_article_t *articles, size_t count, size_t *messages,
                    size_t *topic_bytes)
{
    int64_t window = self->options.dedup_window_ms;
    size_t fresh = 0;
    *messages = *topic_bytes = 0;
    for (size_t k = 0; k < count; k++) {
        nw_feed_article_t *a = &articles[k];
        a->duplicate = window > 0 && nw_journal_seen(self->journal, a->id, now_ms() - window);
        for (size_t j = 0; j < k && !a->duplicate; j++)
            a->duplicate = strcmp(articles[j].id, a->id) == 0;
        if (a->duplicate) {
            self->stats.duplicates++;
            continue;
        }
        fresh++;
        *messages += a->topic_count;
        for (size_t i = 0; i < a->topic_count; i++)
            *topic_bytes += strlen(a->topics[i]) + 1;
    }
    return fresh;
}

/* Each message's topic and seq. Seqs are counted here before anything is appended,
 * since two articles of a submission may share a topic. */
static void sequence(nw_feed_t *self, record_t *rec, const nw_feed_article_t *articles,
                     size_t count)
{
    char *bytes = (char *) (rec->msgs + rec->count);
    size_t m = 0;
    for (size_t k = 0; k < count; k++) {
        if (articles[k].duplicate)
            continue;
        for (size_t i = 0; i < articles[k].topic_count; i++, m++) {
            message_t *msg = &rec->msgs[m];
            size_t len = strlen(articles[k].topics[i]) + 1;
            msg->topic = memcpy(bytes, articles[k].topics[i], len);
            bytes += len;
            msg->seq = nw_journal_last_seq(self->journal, msg->topic) + 1;
            for (size_t j = 0; j < m; j++)
                if (strcmp(rec->msgs[j].topic, msg->topic) == 0 && rec->msgs[j].seq >= msg->seq)
                    msg->seq = rec->msgs[j].seq + 1;
        }
    }
}

static int fail_record(nw_feed_t *self, record_t *rec)
{
    int saved = errno;
    /* an append refused while a failed commit unwinds (EIO) keeps the commit's reason */
    if (!self->stats.journal_failing)
        self->stats.journal_errno = saved;
    self->stats.journal_failing = true;
    record_free(rec);
    errno = saved;
    return -1;
}

/* The record waits for the commit of everything appended so far, its own included. */
static int commit_record(nw_feed_t *self, record_t *rec)
{
    if (nw_journal_commit_early(self->journal, on_written, on_durable, rec) != 0)
        return fail_record(self, rec);
    rec->prev = self->tail;
    if (self->tail)
        self->tail->next = rec;
    else
        self->head = rec;
    self->tail = rec;
    self->stats.in_flight++;
    return 0;
}

int nw_feed_submit(nw_feed_t *self, const nw_feed_source_t *source, nw_feed_article_t *articles,
                   size_t count, nw_feed_done_fn *done, void *arg, char *errbuf, size_t errlen)
{
    if (self->draining) {
        errno = ESHUTDOWN;
        return -1;
    }
    size_t messages, topic_bytes;
    if (dedup(self, articles, count, &messages, &topic_bytes) == 0)
        return NW_FEED_DUPLICATE;

    record_t *rec = calloc(1, sizeof *rec);
    if (rec)
        rec->msgs = malloc(messages * sizeof *rec->msgs + topic_bytes);
    if (!rec || !rec->msgs) {
        free(rec);
        snprintf(errbuf, errlen, "%s", "out of memory");
        return -2;
    }
    msgpack_sbuffer_init(&rec->messages);
    rec->owner = self;
    rec->done = done;
    rec->arg = arg;
    rec->count = messages;
    sequence(self, rec, articles, count);

    /* Every message is packed before any is appended, so one that cannot be encoded
     * leaves no record behind. */
    int64_t now = now_ms();
    char sent[NW_CODEC_TIME_LEN], err[200];
    nw_codec_format_time(now, sent);
    nw_envelope_t env = {
        .epoch = nw_journal_epoch(self->journal),
        .sent = sent,
        .source_file = source->file,
        .source_format = source->format,
        .source_encoding = source->encoding,
    };
    size_t m = 0;
    for (size_t k = 0; k < count; k++) {
        const nw_feed_article_t *a = &articles[k];
        if (a->duplicate)
            continue;
        rec->articles++;
        env.id = a->id;
        for (size_t i = 0; i < a->topic_count; i++, m++) {
            env.topic = rec->msgs[m].topic;
            env.seq = rec->msgs[m].seq;
            if (nw_codec_pack_message(&env, a->article, a->article_len, &rec->messages, err,
                                      sizeof err) != 0) {
                snprintf(errbuf, errlen, "cannot encode: %s", err);
                record_free(rec);
                return -2;
            }
            rec->msgs[m].end = rec->messages.size;
        }
    }
    /* The buffer grew by doubling; it waits for the commit, so give back the rest. */
    char *fit = rec->messages.size ? realloc(rec->messages.data, rec->messages.size) : NULL;
    if (fit) {
        rec->messages.data = fit;
        rec->messages.alloc = rec->messages.size;
    }

    size_t start = 0;
    m = 0;
    for (size_t k = 0; k < count; k++) {
        const nw_feed_article_t *a = &articles[k];
        for (size_t i = 0; !a->duplicate && i < a->topic_count; i++, m++) {
            if (nw_journal_append(self->journal, rec->msgs[m].topic, rec->msgs[m].seq, a->id, now,
                                  rec->messages.data + start, rec->msgs[m].end - start) != 0)
                return fail_record(self, rec);
            start = rec->msgs[m].end;
        }
    }
    return commit_record(self, rec);
}

int nw_feed_forward(nw_feed_t *self, const char *topic, uint64_t seq, const char *id,
                    const void *message, size_t len, nw_feed_done_fn *done, void *arg)
{
    if (self->draining) {
        errno = ESHUTDOWN;
        return -1;
    }
    /* No id dedup here: the upstream already left repeats out, and the same article
     * reaches several topics under one id, each a message of its own. */
    if (seq != nw_journal_last_seq(self->journal, topic) + 1) {
        errno = EINVAL;
        return -1;
    }
    size_t topic_len = strlen(topic) + 1;
    record_t *rec = calloc(1, sizeof *rec);
    if (rec)
        rec->msgs = malloc(sizeof *rec->msgs + topic_len);
    if (!rec || !rec->msgs) {
        free(rec);
        errno = ENOMEM;
        return -1;
    }
    msgpack_sbuffer_init(&rec->messages);
    rec->owner = self;
    rec->done = done;
    rec->arg = arg;
    rec->count = 1;
    rec->forwarded = true;
    rec->msgs[0].topic = memcpy(rec->msgs + 1, topic, topic_len);
    rec->msgs[0].seq = seq;
    rec->msgs[0].end = len;
    if (msgpack_sbuffer_write(&rec->messages, message, len) != 0) {
        record_free(rec);
        errno = ENOMEM;
        return -1;
    }
    if (nw_journal_append(self->journal, topic, seq, id, now_ms(), message, len) != 0)
        return fail_record(self, rec);
    return commit_record(self, rec);
}

void nw_feed_drain(nw_feed_t *self, void (*drained)(void *arg), void *arg)
{
    self->draining = true;
    self->drained = drained;
    self->drained_arg = arg;
    maybe_drained(self);
}

void nw_feed_stats(const nw_feed_t *self, nw_feed_stats_t *out)
{
    *out = self->stats;
}

void nw_feed_destroy(nw_feed_t **self_p)
{
    nw_feed_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    /* The journal still holds their commit callbacks: it frees them when it calls. */
    for (record_t *rec = self->head; rec; rec = rec->next)
        rec->owner = NULL;
    free(self);
}
