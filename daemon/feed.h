/*
 * feed: the one path every article takes once it exists, whichever input made it.
 *
 *   nw_feed_submit(articles) -> dedup by id (the journal's seen-id set, within the dedup
 *     window, and within the submission) -> the next seq of each topic -> envelope
 *     (epoch, seq, sent, source) around each packed article -> journal append
 *     -> [journal] group commit -> once durable (early mode: once its write(2)
 *        returned, see journal.h): publish each message, in order
 *     -> done(arg, 0), which lets the input let go of what it holds (the drop folder's
 *        pipeline archives the file then)
 *
 * An input hands over whole units (a file's stories): all of a submission's messages go
 * into one commit, are published in submission order once that commit is durable, and
 * done runs once, after them. Seqs are assigned at submission, so they follow the order
 * inputs submit in. Nothing is published before its journal record is durable (early
 * mode: written, in the page cache), and done never runs before it is durable, so a
 * crash at any instant leaves the input holding what it submitted (the file in the drop
 * folder), to be submitted again and found by id.
 *
 * When the journal cannot take a submission (an append fails) or its commit fails, no
 * message of it is published (early mode: unless its write(2) returned before the
 * fdatasync failed; the journal keeps those seqs spent and the next start makes a new
 * epoch). A failed commit takes its seqs and ids back (the journal
 * returns every topic to its last durable seq: see journal.h), so the same seqs are
 * handed out again on the next submission and no published seq is ever used twice. A
 * failed append (out of memory, a message past the journal's 32 MiB) cannot take back
 * the submission's records appended before it: the journal has no call for that, and
 * they are committed with the next write, never published live (replay serves them).
 *
 * The publisher is an interface (nw_publisher_t, publish.h): publish.c's XPUB in the
 * daemon, a fake in the unit tests. The journal and the publisher are borrowed.
 * Loop thread only.
 *
 * Adding an input: make the articles (id, packed ninjs map, topics), call
 * nw_feed_submit() with a source for the envelope, hold what you must keep until done
 * runs, and on a failure retry later (the pipeline pauses and puts the file back).
 * A forwarding input (a relay of another daemon's feed, issue 14: upstream.c) receives
 * messages an upstream already enveloped and sequenced, and journals them byte for byte
 * through nw_feed_forward(): no seq, no envelope, and no id dedup (one article reaches
 * several topics under one id, each a message of its own: the upstream left repeats
 * out, and a repeat of a seq is the relay's to drop); the rest is shared (journal
 * append, one commit per call, publish once durable, done, failure unwinding, stats,
 * drain). The journal stores the bytes as given (the upstream's epoch and seq inside
 * them) beside the seq it is handed, and takes exactly the topic's last seq + 1: a gap
 * or a new upstream epoch is the relay's to resolve before it calls. Nothing here is
 * specific to the drop folder.
 */
#ifndef NW_FEED_H
#define NW_FEED_H

#include "journal.h"
#include "publish.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct nw_feed nw_feed_t;

typedef struct {
    int64_t dedup_window_ms; /* an id journaled this recently is not sent again; 0:
                                only repeats within one submission are left out */
} nw_feed_options_t;

/* One article offered to the feed. */
typedef struct {
    const char *id;      /* stable article id (dedup key, journaled) */
    const void *article; /* its packed ninjs map (nw_codec_pack_article) */
    size_t article_len;
    const char *const *topics; /* valid topics, distinct; one message each */
    size_t topic_count;        /* at least 1 */
    bool duplicate;            /* out: left out, its id seen within the window
                                  or earlier in the same submission */
} nw_feed_article_t;

/* The envelope's source fields, the same for every article of a submission. */
typedef struct {
    const char *file;     /* source.file: valid UTF-8 */
    const char *format;   /* source.format */
    const char *encoding; /* source.encoding, or NULL for UTF-8 */
} nw_feed_source_t;

/* status: 0 once every message is durable and handed to the publisher; else a negative
 * errno: the journal write failed and nothing of the submission was published (early
 * mode: or it was, and its seqs stay spent; the input submits it again all the same).
 * done may submit again (after a failure that is refused with EIO: the journal is still
 * unwinding, so retry from a timer, as the pipeline does); it must not destroy the feed. */
typedef void(nw_feed_done_fn)(void *arg, int status);

typedef struct {
    unsigned long published;  /* articles published (one or more messages each) */
    unsigned long messages;   /* messages journaled and handed to the publisher */
    unsigned long forwarded;  /* of them, nw_feed_forward's */
    unsigned long duplicates; /* articles left out by dedup */
    unsigned long in_flight;  /* submissions waiting for their commit */
    bool journal_failing;     /* the last append or commit failed: until one succeeds */
    int journal_errno;        /* and why (EIO, ENOSPC, ...), for STATUS */
} nw_feed_stats_t;

/* NULL when out of memory. journal and publisher must outlive the feed. */
nw_feed_t *nw_feed_new(uv_loop_t *loop, nw_feed_options_t options, nw_journal_t *journal,
                       nw_publisher_t publisher);

/* A reload: the window dedup asks with, and the journal's seen-id set is resized to it
 * (nw_journal_set_dedup_window: a wider one is read back on the thread pool). */
int nw_feed_set_dedup_window(nw_feed_t *self, int64_t window_ms);

#define NW_FEED_DUPLICATE 1
/* Dedup, sequence, envelope, journal count articles (marking each one's duplicate).
 *  0: accepted; done(arg, status) runs later on the loop thread, never from inside
 *     this call.
 *  NW_FEED_DUPLICATE: every article was a duplicate; nothing journaled, no done.
 *  -1 with errno: the journal did not take them (ENOMEM, EIO while it unwinds a failure,
 *     i.e. from inside a failed done, ESHUTDOWN once draining); nothing will be
 *     published, no done: submit again later.
 *  -2: an article cannot be encoded (or no memory to sequence them); the reason is in
 *     errbuf; nothing was appended, no done.
 * The articles' bytes and topics are copied: they need not outlive the call. */
int nw_feed_submit(nw_feed_t *self, const nw_feed_source_t *source, nw_feed_article_t *articles,
                   size_t count, nw_feed_done_fn *done, void *arg, char *errbuf, size_t errlen);

/* Journal an upstream's message (topic, its seq and id, the body as the upstream sent
 * it), then publish it once durable, as nw_feed_submit does; id goes into the journal's
 * seen-id set but is not looked up.
 *  0: accepted; done(arg, status) runs later on the loop thread, never from inside.
 *  -1 with errno: EINVAL when seq is not the topic's last seq + 1 (nothing appended);
 *     else as nw_feed_submit's -1 (ENOMEM, EMSGSIZE, EIO while a failure unwinds,
 *     ESHUTDOWN once draining): not journaled, no done.
 * The bytes are copied. */
int nw_feed_forward(nw_feed_t *self, const char *topic, uint64_t seq, const char *id,
                    const void *message, size_t len, nw_feed_done_fn *done, void *arg);

/* Take no more submissions; drained(arg) runs once every accepted one has had its done
 * (at once, from inside this call, when none is in flight). */
void nw_feed_drain(nw_feed_t *self, void (*drained)(void *arg), void *arg);
void nw_feed_stats(const nw_feed_t *self, nw_feed_stats_t *out);
/* Submissions still in flight are abandoned: their done never runs (and nothing of
 * theirs is published); the journal's callbacks free them when it runs or closes. */
void nw_feed_destroy(nw_feed_t **self_p);

#endif
