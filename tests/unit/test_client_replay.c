/*
 * test_client_replay: libnewswire's replay side (gap filling, late joins) against a fake
 * daemon living in this test: an XPUB for the live feed (main thread) and a ROUTER
 * speaking the replay protocol (an actor thread) that serves a made-up journal, honours
 * credit, refuses with errors, and can be told to stay silent until "GO" so that live
 * messages pile up behind a replay deterministically. Messages are packed by nw_codec,
 * replay requests parsed and replies packed by nw_replay, as the daemon does.
 */
#include "newswire.h"
#include "nw_codec.h"
#include "nw_replay.h"
#include "runner.h"

#include <czmq.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#define EPOCH_A "0123456789abcdef0123456789abcdef"
#define EPOCH_B "fedcba9876543210fedcba9876543210"
#define WAIT_MS 5000
#define MAX_TOPICS 4

typedef struct {
    const char *name;
    const char *epoch;
    uint64_t oldest, head; /* the journal holds oldest..head */
    uint64_t first_head;   /* the first open-ended request sees this head (a race) */
    const char *error;     /* answer every request with this $error code */
    int mute;              /* never answer */
    int busy;              /* answer this many requests with "busy" first */
} fake_topic_t;

typedef struct {
    fake_topic_t topics[MAX_TOPICS];
    int wait_go; /* read no request before "GO" */
    char endpoint[128];
} fake_t;

static zsock_t *pub;

/* The actor thread records its own failures; each case's teardown checks the count
 * (runner.h's counters are not for two threads). */
static _Atomic int fake_failures;
#define FAKE_CHECK(cond) \
    do { \
        if (!(cond)) { \
            fake_failures++; \
            fprintf(stderr, "%s:%d: fake daemon check failed: %s\n", __FILE__, __LINE__, #cond); \
        } \
    } while (0)

static int pack(const char *topic, uint64_t seq, const char *epoch, msgpack_sbuffer *msg)
{
    char uri[64], id[41], err[200];
    snprintf(uri, sizeof uri, "urn:newswire:test:%" PRIu64, seq);
    snprintf(id, sizeof id, "%040" PRIx64, seq);
    nw_ninjs_t article = {.uri = uri,
                          .headline = "Replayed",
                          .body_text = "Body.",
                          .versioncreated = "2026-01-02T03:04:05.000Z"};
    nw_envelope_t env = {.topic = topic,
                         .seq = seq,
                         .epoch = epoch,
                         .id = id,
                         .sent = "2026-01-02T03:04:06.789Z",
                         .source_file = "f.txt",
                         .source_format = "header"};
    msgpack_sbuffer art;
    msgpack_sbuffer_init(&art);
    msgpack_sbuffer_init(msg);
    int rc = nw_codec_pack_article(&article, &art, err, sizeof err);
    if (rc == 0)
        rc = nw_codec_pack_message(&env, art.data, art.size, msg, err, sizeof err);
    msgpack_sbuffer_destroy(&art);
    return rc;
}

static void publish(const char *topic, uint64_t seq, const char *epoch)
{
    msgpack_sbuffer msg;
    CHECK(pack(topic, seq, epoch, &msg) == 0);
    void *handle = zsock_resolve(pub);
    char frame0[300];
    snprintf(frame0, sizeof frame0, "%s.", topic); /* topic + "." (proto section 3) */
    zmq_send(handle, frame0, strlen(frame0), ZMQ_SNDMORE);
    zmq_send(handle, msg.data, msg.size, 0);
    msgpack_sbuffer_destroy(&msg);
}

/* ---- the fake daemon's replay side ---- */

typedef struct {
    zframe_t *peer;
    const fake_topic_t *topic;
    uint64_t next, end, from;
    uint64_t credit;
} stream_t;

static void reply(zsock_t *router, zframe_t *peer, const char *f0, const void *body, size_t len)
{
    void *handle = zsock_resolve(router);
    zmq_send(handle, zframe_data(peer), zframe_size(peer), ZMQ_SNDMORE);
    zmq_send(handle, f0, strlen(f0), ZMQ_SNDMORE);
    zmq_send(handle, body, len, 0);
}

/* $end (from a, last b, head c) or $error (code, oldest a), packed by nw_replay as the
 * daemon packs them. */
static void reply_control(zsock_t *router, zframe_t *peer, const char *type, const char *topic,
                          const char *code, uint64_t a, uint64_t b, uint64_t c)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    char why[128];
    int end = strcmp(type, "end") == 0, rc;
    if (end) {
        nw_replay_end_t e = {.from = a, .last = b, .head = c};
        snprintf(e.topic, sizeof e.topic, "%s", topic);
        rc = nw_replay_end_pack(&e, &buf, why, sizeof why);
    } else {
        nw_replay_error_t e = {.has_oldest = true, .oldest = a};
        snprintf(e.topic, sizeof e.topic, "%s", topic);
        snprintf(e.code, sizeof e.code, "%s", code);
        snprintf(e.reason, sizeof e.reason, "refused by the fake");
        rc = nw_replay_error_pack(&e, &buf, why, sizeof why);
    }
    FAKE_CHECK(rc == 0);
    reply(router, peer, end ? NW_REPLAY_FRAME_END : NW_REPLAY_FRAME_ERROR, buf.data, buf.size);
    msgpack_sbuffer_destroy(&buf);
}

typedef struct {
    int requests, cancels, credits;
    uint64_t from[16], to[16];
    int first_open_served;
} stats_t;

static void fake_request(fake_t *fake, zsock_t *router, stream_t *st, stats_t *stats,
                         zframe_t *peer, zframe_t *body)
{
    /* What the client sends must be what the daemon accepts. */
    nw_replay_request_t req;
    char why[256];
    int parsed = nw_replay_request_parse(zframe_data(body), zframe_size(body), &req, why,
                                         sizeof why);
    if (parsed != 0)
        fprintf(stderr, "fake daemon: request refused: %s\n", why);
    FAKE_CHECK(parsed == 0);
    if (parsed != 0)
        return;
    if (req.type == NW_REPLAY_REQ_CREDIT) {
        FAKE_CHECK(req.credit >= 1 && req.credit <= 1000);
        st->credit += req.credit;
        stats->credits++;
        return;
    }
    if (req.type == NW_REPLAY_REQ_CANCEL) {
        zframe_destroy(&st->peer);
        stats->cancels++;
        return;
    }
    FAKE_CHECK(req.type == NW_REPLAY_REQ_REPLAY);
    zframe_destroy(&st->peer); /* a new request cancels the previous stream */
    const char *topic = req.topic;
    uint64_t from = req.from, to = req.to, last = req.last;
    uint64_t credit = req.credit;
    FAKE_CHECK(credit >= 1 && credit <= 1000);
    if (stats->requests < 16) {
        stats->from[stats->requests] = from;
        stats->to[stats->requests] = to;
    }
    stats->requests++;
    const fake_topic_t *ft = NULL;
    for (int i = 0; i < MAX_TOPICS; i++)
        if (fake->topics[i].name && strcmp(fake->topics[i].name, topic) == 0)
            ft = &fake->topics[i];
    if (ft && ft->mute)
        return;
    if (!ft) {
        reply_control(router, peer, "error", topic, "unknown-topic", 0, 0, 0);
        return;
    }
    if (ft->error) {
        reply_control(router, peer, "error", topic, ft->error, ft->oldest, 0, 0);
        return;
    }
    if (ft->busy > 0) {
        fake->topics[ft - fake->topics].busy--;
        reply_control(router, peer, "error", topic, "busy", 0, 0, 0);
        return;
    }
    uint64_t head = ft->head;
    if (!to && ft->first_head && !stats->first_open_served) {
        head = ft->first_head;
        stats->first_open_served = 1;
    }
    if (last)
        from = last >= head ? ft->oldest : head - last + 1;
    if (from < ft->oldest) {
        reply_control(router, peer, "error", topic, "retention", ft->oldest, 0, 0);
        return;
    }
    st->peer = zframe_dup(peer);
    st->topic = ft;
    st->from = from;
    st->next = from;
    st->end = to && to < head ? to : head;
    st->credit = credit;
}

static void fake_actor(zsock_t *pipe, void *arg)
{
    fake_t *fake = arg;
    zsock_t *router = zsock_new(ZMQ_ROUTER);
    int port = router ? zsock_bind(router, "tcp://127.0.0.1:*") : -1;
    snprintf(fake->endpoint, sizeof fake->endpoint, "tcp://127.0.0.1:%d", port);
    zsock_signal(pipe, 0);
    stream_t st = {0};
    stats_t stats = {0};
    int go = !fake->wait_go;
    int64_t stats_due = -1; /* STATS-AFTER-CANCEL: answer at the first cancel, or then */
    for (;;) {
        if (stats_due >= 0 && (stats.cancels > 0 || zclock_mono() >= stats_due)) {
            zsock_send(pipe, "iiii8888", stats.requests, stats.cancels, stats.credits, 0,
                       stats.from[0], stats.to[0], stats.from[1], stats.to[1]);
            stats_due = -1;
        }
        int sending = go && st.peer && st.credit > 0;
        long timeout = sending ? 0 : stats_due >= 0 ? (long) (stats_due - zclock_mono()) : -1;
        zmq_pollitem_t items[2] = {
            {.socket = zsock_resolve(pipe), .events = ZMQ_POLLIN},
            {.socket = zsock_resolve(router), .events = ZMQ_POLLIN},
        };
        if (zmq_poll(items, go ? 2 : 1, timeout < -1 ? 0 : timeout) < 0)
            break;
        if (items[0].revents & ZMQ_POLLIN) {
            char *cmd = zstr_recv(pipe);
            int term = !cmd || strcmp(cmd, "$TERM") == 0;
            if (cmd && strcmp(cmd, "GO") == 0)
                go = 1;
            if (cmd && strcmp(cmd, "STATS") == 0)
                zsock_send(pipe, "iiii8888", stats.requests, stats.cancels, stats.credits, 0,
                           stats.from[0], stats.to[0], stats.from[1], stats.to[1]);
            if (cmd && strcmp(cmd, "STATS-AFTER-CANCEL") == 0)
                stats_due = zclock_mono() + WAIT_MS;
            zstr_free(&cmd);
            if (term)
                break;
            continue;
        }
        if (go && (items[1].revents & ZMQ_POLLIN)) {
            zmsg_t *req = zmsg_recv(router);
            zframe_t *peer = req ? zmsg_pop(req) : NULL;
            zframe_t *body = req ? zmsg_pop(req) : NULL;
            FAKE_CHECK(req && zmsg_size(req) == 0);
            if (peer && body)
                fake_request(fake, router, &st, &stats, peer, body);
            zframe_destroy(&peer);
            zframe_destroy(&body);
            zmsg_destroy(&req);
            continue;
        }
        if (sending) {
            if (st.next <= st.end) {
                msgpack_sbuffer msg;
                FAKE_CHECK(pack(st.topic->name, st.next, st.topic->epoch, &msg) == 0);
                char frame0[300];
                snprintf(frame0, sizeof frame0, "%s.", st.topic->name);
                reply(router, st.peer, frame0, msg.data, msg.size);
                msgpack_sbuffer_destroy(&msg);
                st.next++;
                st.credit--;
            }
        }
        if (st.peer && st.next > st.end && go) {
            reply_control(router, st.peer, "end", st.topic->name, NULL, st.from,
                          st.end >= st.from ? st.end : 0, st.topic->head);
            zframe_destroy(&st.peer);
        }
    }
    zframe_destroy(&st.peer);
    zsock_destroy(&router);
}

typedef struct {
    int requests, cancels, credits;
    uint64_t from0, to0, from1, to1;
} fake_stats_t;

/* The fake's counts; after_cancel: once it has read a cancel (at most WAIT_MS later),
 * which the client sends on its own connection, so it can arrive after what the test
 * has received since. */
static fake_stats_t fake_stats_when(zactor_t *actor, bool after_cancel)
{
    fake_stats_t s = {0};
    int zero;
    zstr_send(actor, after_cancel ? "STATS-AFTER-CANCEL" : "STATS");
    zsock_recv(actor, "iiii8888", &s.requests, &s.cancels, &s.credits, &zero, &s.from0, &s.to0,
               &s.from1, &s.to1);
    return s;
}

static fake_stats_t fake_stats(zactor_t *actor)
{
    return fake_stats_when(actor, false);
}

/* ---- the client side ---- */

static void wait_subscription(const char *topic)
{
    zframe_t *frame = zframe_recv(pub);
    while (frame && zframe_size(frame) >= 1 && zframe_data(frame)[0] == 0) {
        zframe_destroy(&frame);
        frame = zframe_recv(pub);
    }
    size_t len = strlen(topic); /* subscribed in the raw form "topic." */
    CHECK(frame && zframe_size(frame) == len + 2 && zframe_data(frame)[0] == 1 &&
          memcmp(zframe_data(frame) + 1, topic, len) == 0 && zframe_data(frame)[len + 1] == '.');
    zframe_destroy(&frame);
}

static nw_client_t *client_new(const fake_t *fake)
{
    nw_client_t *client = nw_client_new();
    CHECK(client != NULL);
    CHECK(nw_client_set_rcvhwm(client, 0) == 0); /* the tests' live feed is never dropped */
    CHECK(nw_client_connect(client, zsock_endpoint(pub)) == 0);
    CHECK(nw_client_set_replay(client, fake->endpoint) == 0);
    nw_client_set_replay_idle(client, 0); /* probes only where a test wants them */
    return client;
}

/* Receive the next message of any topic; returns its seq (0 when none) and topic. */
static uint64_t next(nw_client_t *client, char *topic, uint64_t *gap, int *epoch_changed)
{
    nw_message_t *msg = NULL;
    int rc = nw_client_recv(client, &msg, WAIT_MS);
    if (rc != NW_RECV_MESSAGE) {
        fprintf(stderr, "recv returned %d: %s\n", rc, nw_client_error(client));
        return 0;
    }
    uint64_t seq = nw_message_seq(msg);
    if (topic)
        snprintf(topic, NW_CLIENT_TOPIC_MAX + 1, "%s", nw_message_topic(msg));
    if (gap)
        *gap = nw_message_gap_before(msg);
    if (epoch_changed)
        *epoch_changed = nw_message_epoch_changed(msg);
    nw_message_destroy(&msg);
    return seq;
}

/* Expect seqs first..last of topic, each once, in order; returns how many matched. */
static uint64_t expect_run(nw_client_t *client, const char *topic, uint64_t first, uint64_t last)
{
    char got[NW_CLIENT_TOPIC_MAX + 1];
    uint64_t ok = 0;
    for (uint64_t seq = first; seq <= last; seq++) {
        uint64_t s = next(client, got, NULL, NULL);
        if (s != seq || strcmp(got, topic) != 0) {
            fprintf(stderr, "want %s #%" PRIu64 ", got %s #%" PRIu64 "\n", topic, seq, got, s);
            break;
        }
        ok++;
    }
    CHECK(ok == last - first + 1);
    return ok;
}

typedef struct {
    int calls;
    uint64_t first, last;
    char error[256];
} gap_seen_t;

static void on_gap(nw_client_t *client, const char *topic, const char *epoch, uint64_t first,
                   uint64_t last, void *arg)
{
    gap_seen_t *seen = arg;
    (void) topic;
    (void) epoch;
    seen->calls++;
    seen->first = first;
    seen->last = last;
    snprintf(seen->error, sizeof seen->error, "%s", nw_client_error(client));
}

static void assert_idle(nw_client_t *client)
{
    nw_message_t *msg = NULL;
    CHECK(nw_client_recv(client, &msg, 50) == NW_RECV_TIMEOUT);
    nw_message_destroy(&msg);
}

/* Live skips 3..599 (more than one credit's worth); the journal fills them; 600..602
 * arrive live meanwhile and follow in order. */
TEST_IMPL(gap_fill)
{
    fake_t fake = {.topics = {{.name = "fill", .epoch = EPOCH_A, .oldest = 1, .head = 602}}};
    zactor_t *actor = zactor_new(fake_actor, &fake);
    nw_client_t *client = client_new(&fake);
    gap_seen_t seen = {0};
    nw_client_set_gap_handler(client, on_gap, &seen);
    CHECK(nw_client_subscribe(client, "fill") == 0);
    wait_subscription("fill");

    publish("fill", 1, EPOCH_A);
    publish("fill", 2, EPOCH_A);
    publish("fill", 600, EPOCH_A);
    publish("fill", 601, EPOCH_A);
    publish("fill", 601, EPOCH_A); /* a duplicate on the live feed */
    publish("fill", 602, EPOCH_A);
    expect_run(client, "fill", 1, 602);
    assert_idle(client);
    CHECK(nw_client_gaps(client) == 0);
    CHECK(seen.calls == 0);
    CHECK(nw_client_replayed(client) == 597);
    CHECK(nw_client_received(client) == 602);
    fake_stats_t s = fake_stats(actor);
    CHECK(s.requests == 1 && s.from0 == 3 && s.to0 == 599);
    CHECK(s.credits >= 2); /* 597 > 256: the stream went on by top-ups */
    nw_client_destroy(&client);
    zactor_destroy(&actor);
}

/* More live messages pile up during a replay than may be held: they are dropped and the
 * journal serves them instead. The fake answers nothing until every live one was read. */
TEST_IMPL(held_overflow)
{
    fake_t fake = {.topics = {{.name = "flood", .epoch = EPOCH_A, .oldest = 1, .head = 1500}},
                   .wait_go = 1};
    zactor_t *actor = zactor_new(fake_actor, &fake);
    nw_client_t *client = client_new(&fake);
    CHECK(nw_client_subscribe(client, "flood") == 0);
    wait_subscription("flood");
    CHECK(nw_client_subscribe(client, "sentinel") == 0);
    wait_subscription("sentinel");

    publish("flood", 1, EPOCH_A);
    for (uint64_t seq = 3; seq <= 1500; seq++)
        publish("flood", seq, EPOCH_A);
    publish("sentinel", 1, EPOCH_A);
    char topic[NW_CLIENT_TOPIC_MAX + 1];
    CHECK(next(client, topic, NULL, NULL) == 1);
    CHECK_STR(topic, "flood");
    /* The sentinel comes after every flood message on the same connection: all read. */
    CHECK(next(client, topic, NULL, NULL) == 1);
    CHECK_STR(topic, "sentinel");
    zstr_send(actor, "GO");
    expect_run(client, "flood", 2, 1500);
    assert_idle(client);
    CHECK(nw_client_gaps(client) == 0);
    fake_stats_t s = fake_stats(actor);
    CHECK(s.requests == 2);
    CHECK(s.from0 == 2 && s.to0 == 2);
    CHECK(s.from1 == 3 && s.to1 == 1027); /* 3..1026 held, 1027 overflowed: asked for */
    nw_client_destroy(&client);
    zactor_destroy(&actor);
}

/* The journal no longer holds the start of the gap: what it lacks is reported lost, the
 * rest is still replayed; a refusal ("denied") gives the whole gap up. */
TEST_IMPL(errors)
{
    fake_t fake = {
        .topics = {
            {.name = "old", .epoch = EPOCH_A, .oldest = 50, .head = 60},
            {.name = "deny", .epoch = EPOCH_A, .oldest = 1, .head = 5, .error = "denied"},
        }};
    zactor_t *actor = zactor_new(fake_actor, &fake);
    nw_client_t *client = client_new(&fake);
    gap_seen_t seen = {0};
    nw_client_set_gap_handler(client, on_gap, &seen);
    CHECK(nw_client_subscribe(client, "old") == 0);
    wait_subscription("old");
    CHECK(nw_client_subscribe(client, "deny") == 0);
    wait_subscription("deny");

    publish("old", 1, EPOCH_A);
    publish("old", 60, EPOCH_A);
    uint64_t gap = 99;
    CHECK(next(client, NULL, &gap, NULL) == 1);
    CHECK(next(client, NULL, &gap, NULL) == 50);
    CHECK(gap == 48);
    CHECK(seen.calls == 1 && seen.first == 2 && seen.last == 49);
    CHECK(strstr(seen.error, "retention") != NULL);
    expect_run(client, "old", 51, 60);
    CHECK(nw_client_replay_errors(client) == 1);

    publish("deny", 1, EPOCH_A);
    publish("deny", 5, EPOCH_A);
    CHECK(next(client, NULL, &gap, NULL) == 1);
    CHECK(next(client, NULL, &gap, NULL) == 5);
    CHECK(gap == 3);
    CHECK(seen.calls == 2 && seen.first == 2 && seen.last == 4);
    CHECK(strstr(nw_client_error(client), "denied") != NULL);
    CHECK(nw_client_gaps(client) == 48 + 3);
    CHECK(nw_client_replay_errors(client) == 2);
    assert_idle(client);
    nw_client_destroy(&client);
    zactor_destroy(&actor);
}

/* A new epoch while a replay is pending: the replay is cancelled, what was held is
 * dropped, the new epoch starts afresh; the cancelled stream's data is never returned. */
TEST_IMPL(epoch_change)
{
    fake_t fake = {.topics = {{.name = "ep", .epoch = EPOCH_A, .oldest = 1, .head = 10}},
                   .wait_go = 1};
    zactor_t *actor = zactor_new(fake_actor, &fake);
    nw_client_t *client = client_new(&fake);
    CHECK(nw_client_subscribe(client, "ep") == 0);
    wait_subscription("ep");

    publish("ep", 1, EPOCH_A);
    publish("ep", 2, EPOCH_A);
    publish("ep", 10, EPOCH_A); /* 3..9 asked for, 10 held */
    publish("ep", 1, EPOCH_B);  /* history lost: forget all that */
    publish("ep", 2, EPOCH_B);
    int changed = -1;
    CHECK(next(client, NULL, NULL, &changed) == 1 && changed == 0);
    CHECK(next(client, NULL, NULL, &changed) == 2 && changed == 0);
    CHECK(next(client, NULL, NULL, &changed) == 1 && changed == 1);
    CHECK(next(client, NULL, NULL, &changed) == 2 && changed == 0);
    /* Now the fake serves the request and then reads the cancel: whatever it sends
     * of epoch A must be dropped; the next live one comes next. */
    zstr_send(actor, "GO");
    publish("ep", 3, EPOCH_B);
    nw_message_t *msg = NULL;
    CHECK(nw_client_recv(client, &msg, WAIT_MS) == NW_RECV_MESSAGE);
    if (msg) {
        CHECK(nw_message_seq(msg) == 3);
        CHECK_STR(nw_message_epoch(msg), EPOCH_B);
        nw_message_destroy(&msg);
    }
    assert_idle(client);
    fake_stats_t s = fake_stats_when(actor, true);
    CHECK(s.requests == 1 && s.cancels == 1);
    CHECK(nw_client_gaps(client) == 0);
    nw_client_destroy(&client);
    zactor_destroy(&actor);
}

/* Late join: since 1 on a topic whose journal head, when the replay starts, is behind
 * the first live message: the hole between them is asked for again. Then last N. */
TEST_IMPL(late_join)
{
    fake_t fake = {
        .topics = {
            {.name = "join", .epoch = EPOCH_A, .oldest = 1, .head = 305, .first_head = 300},
            {.name = "tail", .epoch = EPOCH_A, .oldest = 1, .head = 50},
        }};
    zactor_t *actor = zactor_new(fake_actor, &fake);
    nw_client_t *client = client_new(&fake);
    CHECK(nw_client_since(client, "join", 0) == -1);
    CHECK(nw_client_since(client, "Join", 1) == -1);
    CHECK(nw_client_since(client, "join", 1) == 0);
    wait_subscription("join");
    publish("join", 303, EPOCH_A);
    publish("join", 304, EPOCH_A);
    publish("join", 305, EPOCH_A);
    expect_run(client, "join", 1, 305);
    fake_stats_t s = fake_stats(actor);
    CHECK(s.requests == 2 && s.from0 == 1 && s.to0 == 0 && s.from1 == 301 && s.to1 == 302);
    CHECK(nw_client_since(client, "join", 1) == -1); /* already being received */

    CHECK(nw_client_last(client, "tail", 5) == 0);
    wait_subscription("tail");
    publish("tail", 51, EPOCH_A);
    expect_run(client, "tail", 46, 51);
    assert_idle(client);
    CHECK(nw_client_gaps(client) == 0);
    nw_client_destroy(&client);
    zactor_destroy(&actor);

    nw_client_t *plain = nw_client_new();
    CHECK(nw_client_since(plain, "join", 1) == -1); /* no replay endpoint */
    CHECK(strstr(nw_client_error(plain), "replay") != NULL);
    CHECK(nw_client_set_replay(plain, "no-such-transport://x") == -1);
    CHECK(nw_client_set_replay(plain, "tcp://127.0.0.1:1") == 0);
    CHECK(nw_client_set_replay(plain, "tcp://127.0.0.1:1") == -1);
    nw_client_destroy(&plain);
}

/* The end of a burst was dropped: no later live message reveals it, the idle probe does. */
TEST_IMPL(tail_probe)
{
    fake_t fake = {.topics = {{.name = "burst", .epoch = EPOCH_A, .oldest = 1, .head = 20}}};
    zactor_t *actor = zactor_new(fake_actor, &fake);
    nw_client_t *client = client_new(&fake);
    nw_client_set_replay_idle(client, 20);
    CHECK(nw_client_subscribe(client, "burst") == 0);
    wait_subscription("burst");
    for (uint64_t seq = 1; seq <= 5; seq++)
        publish("burst", seq, EPOCH_A);
    expect_run(client, "burst", 1, 20);
    fake_stats_t s = fake_stats(actor);
    CHECK(s.requests >= 1 && s.from0 >= 2 && s.from0 <= 6 && s.to0 == 0);
    CHECK(nw_client_gaps(client) == 0);
    nw_client_destroy(&client);
    zactor_destroy(&actor);
}

/* A replay endpoint that never answers must not stall the topic: after 5 s the gap is
 * given up and the held message follows. */
TEST_IMPL(silent_daemon)
{
    fake_t fake = {
        .topics = {{.name = "mute", .epoch = EPOCH_A, .oldest = 1, .head = 3, .mute = 1}}};
    zactor_t *actor = zactor_new(fake_actor, &fake);
    nw_client_t *client = client_new(&fake);
    gap_seen_t seen = {0};
    nw_client_set_gap_handler(client, on_gap, &seen);
    CHECK(nw_client_subscribe(client, "mute") == 0);
    wait_subscription("mute");
    publish("mute", 1, EPOCH_A);
    publish("mute", 3, EPOCH_A);
    CHECK(next(client, NULL, NULL, NULL) == 1);
    nw_message_t *msg = NULL;
    CHECK(nw_client_recv(client, &msg, 2 * WAIT_MS) == NW_RECV_MESSAGE);
    if (msg) {
        CHECK(nw_message_seq(msg) == 3);
        CHECK(nw_message_gap_before(msg) == 1);
        nw_message_destroy(&msg);
    }
    CHECK(seen.calls == 1 && seen.first == 2 && seen.last == 2);
    CHECK(strstr(seen.error, "timed out") != NULL);
    CHECK(nw_client_replay_errors(client) == 1);
    nw_client_destroy(&client);
    zactor_destroy(&actor);
}

/* "busy" is not a loss: the client asks again later, backing off, and the gap fills. */
TEST_IMPL(busy)
{
    fake_t fake = {
        .topics = {{.name = "full", .epoch = EPOCH_A, .oldest = 1, .head = 10, .busy = 3}}};
    zactor_t *actor = zactor_new(fake_actor, &fake);
    nw_client_t *client = client_new(&fake);
    gap_seen_t seen = {0};
    nw_client_set_gap_handler(client, on_gap, &seen);
    CHECK(nw_client_subscribe(client, "full") == 0);
    wait_subscription("full");
    publish("full", 1, EPOCH_A);
    publish("full", 10, EPOCH_A);
    expect_run(client, "full", 1, 10);
    assert_idle(client);
    CHECK(nw_client_gaps(client) == 0 && seen.calls == 0);
    CHECK(nw_client_replay_errors(client) == 0);
    CHECK(nw_client_replayed(client) == 8);
    fake_stats_t s = fake_stats(actor);
    CHECK(s.requests == 4 && s.from0 == 2 && s.to0 == 9);
    nw_client_destroy(&client);
    zactor_destroy(&actor);

    /* a daemon that stays busy: the gap is given up after the last try, and reported */
    fake_t always = {
        .topics = {{.name = "full", .epoch = EPOCH_A, .oldest = 1, .head = 10, .busy = 1000}}};
    actor = zactor_new(fake_actor, &always);
    client = client_new(&always);
    memset(&seen, 0, sizeof seen);
    nw_client_set_gap_handler(client, on_gap, &seen);
    CHECK(nw_client_subscribe(client, "full") == 0);
    wait_subscription("full");
    publish("full", 1, EPOCH_A);
    publish("full", 10, EPOCH_A);
    char topic[256];
    uint64_t gap;
    int changed;
    CHECK(next(client, topic, &gap, &changed) == 1);
    nw_message_t *msg = NULL;
    CHECK(nw_client_recv(client, &msg, 30000) == NW_RECV_MESSAGE);
    CHECK(msg && nw_message_seq(msg) == 10 && nw_message_gap_before(msg) == 8);
    nw_message_destroy(&msg);
    CHECK(seen.calls == 1 && strstr(seen.error, "busy") != NULL);
    s = fake_stats(actor);
    CHECK(s.requests == 7); /* the first ask and 6 more */
    nw_client_destroy(&client);
    zactor_destroy(&actor);
}

/* Each case: an XPUB on a loopback port of its own, and no failure in the fake daemon. */
static int setup(void)
{
    pub = zsock_new(ZMQ_XPUB);
    CHECK(pub != NULL);
    if (!pub)
        return -1;
    zsock_set_xpub_verbose(pub, 1);
    zsock_set_sndhwm(pub, 0);
    zsock_set_rcvtimeo(pub, WAIT_MS); /* safety net only: subscriptions must arrive */
    CHECK(zsock_bind(pub, "tcp://127.0.0.1:*") > 0);
    return 0;
}
TEST_SETUP(setup)

static void teardown(void)
{
    zsock_destroy(&pub);
    CHECK(fake_failures == 0);
}
TEST_TEARDOWN(teardown)
