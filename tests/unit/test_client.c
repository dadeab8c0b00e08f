/*
 * test_client: libnewswire against a fake publisher living in this test: an XPUB bound
 * to a free loopback port, fed with messages packed by nw_codec and with hostile frames.
 * Every wait is for an event that must come (a subscription message, a published
 * message); the only timeouts are safety nets that fail the test.
 */
#include "newswire.h"
#include "nw_codec.h"
#include "runner.h"

#include <czmq.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EPOCH_A "0123456789abcdef0123456789abcdef"
#define EPOCH_B "fedcba9876543210fedcba9876543210"
#define ID_1 "da39a3ee5e6b4b0d3255bfef95601890afd80709"
#define WAIT_MS 5000

static zsock_t *pub;

static void send_frames(const void *const *data, const size_t *lens, size_t n)
{
    void *handle = zsock_resolve(pub);
    for (size_t i = 0; i < n; i++)
        zmq_send(handle, data[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0);
}

/* [frame0, payload] with frame0 exactly as given. */
static void send_frame0(const char *frame0, const void *payload, size_t len)
{
    const void *data[2] = {frame0, payload};
    size_t lens[2] = {strlen(frame0), len};
    send_frames(data, lens, 2);
}

/* [topic + ".", payload]: frame 0 as the wire has it (proto section 3). */
static void send_raw(const char *topic, const void *payload, size_t len)
{
    char frame0[512];
    snprintf(frame0, sizeof frame0, "%s.", topic);
    send_frame0(frame0, payload, len);
}

/* Pack and publish one article; frame0 (sent exactly) NULL means topic + ".". */
static void publish_full(const char *frame0, const char *topic, uint64_t seq, const char *epoch,
                         const char *byline)
{
    const char *subjects[] = {"Telecoms", "5G networks"};
    const char *codes[] = {"medtop:13000000", NULL};
    const char *schemes[] = {"http://cv.iptc.org/newscodes/mediatopic/", NULL};
    nw_ninjs_t article = {
        .uri = "urn:newswire:test:1",
        .type = "text",
        .headline = "Fibre reaches the valley",
        .byline = byline,
        .description_text = "A short standfirst.",
        .body_text = "First line of the body.\nSecond line, with \"quotes\" and caf\xc3\xa9.",
        .language = "en",
        .versioncreated = "2026-01-02T03:04:05.000Z",
        .version = byline ? "4" : NULL,
        .located = byline ? "TAMPERE" : NULL,
        .subjects = subjects,
        .subject_codes = codes,
        .subject_schemes = schemes,
        .subject_count = byline ? 2 : 0,
    };
    nw_envelope_t env = {
        .topic = topic,
        .seq = seq,
        .epoch = epoch,
        .id = ID_1,
        .sent = "2026-01-02T03:04:06.789Z",
        .source_file = "valley.txt",
        .source_format = "scraped",
    };
    char err[200] = "";
    msgpack_sbuffer art, msg;
    msgpack_sbuffer_init(&art);
    msgpack_sbuffer_init(&msg);
    int rc = nw_codec_pack_article(&article, &art, err, sizeof err);
    if (rc == 0)
        rc = nw_codec_pack_message(&env, art.data, art.size, &msg, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "pack failed: %s\n", err);
    CHECK(rc == 0);
    if (frame0)
        send_frame0(frame0, msg.data, msg.size);
    else
        send_raw(topic, msg.data, msg.size);
    msgpack_sbuffer_destroy(&art);
    msgpack_sbuffer_destroy(&msg);
}

static void publish(const char *topic, uint64_t seq, const char *epoch)
{
    publish_full(NULL, topic, seq, epoch, "Ann Writer");
}

/* Subscribe and wait until the publisher has seen it, so nothing sent after is lost. */
static void subscribe_synced(nw_client_t *client, const char *topic)
{
    CHECK(nw_client_subscribe(client, topic) == 0);
    zframe_t *frame = zframe_recv(pub);
    /* Unsubscriptions of clients closed earlier arrive whenever ZeroMQ gets to them. */
    while (frame && zframe_size(frame) >= 1 && zframe_data(frame)[0] == 0) {
        zframe_destroy(&frame);
        frame = zframe_recv(pub);
    }
    /* The raw form: "telecoms." for "telecoms", nothing for everything. */
    size_t len = strlen(topic);
    CHECK(frame && zframe_size(frame) == (len ? len + 2 : 1) && zframe_data(frame)[0] == 1 &&
          memcmp(zframe_data(frame) + 1, topic, len) == 0 &&
          (!len || zframe_data(frame)[len + 1] == '.'));
    zframe_destroy(&frame);
}

static nw_client_t *client_for(const char *topic)
{
    nw_client_t *client = nw_client_new();
    CHECK(client != NULL);
    CHECK(nw_client_connect(client, zsock_endpoint(pub)) == 0);
    subscribe_synced(client, topic);
    return client;
}

/* Receive the next message and return its topic and seq ("" / 0 when none). */
static const char *next(nw_client_t *client, uint64_t *seq, uint64_t *gap)
{
    static char topic[NW_CLIENT_TOPIC_MAX + 1];
    nw_message_t *msg = NULL;
    int rc = nw_client_recv(client, &msg, WAIT_MS);
    topic[0] = '\0';
    *seq = 0;
    if (gap)
        *gap = 0;
    if (rc != NW_RECV_MESSAGE) {
        fprintf(stderr, "recv returned %d: %s\n", rc, nw_client_error(client));
        return topic;
    }
    snprintf(topic, sizeof topic, "%s", nw_message_topic(msg));
    *seq = nw_message_seq(msg);
    if (gap)
        *gap = nw_message_gap_before(msg);
    nw_message_destroy(&msg);
    return topic;
}

TEST_IMPL(names)
{
    CHECK(nw_client_topic_valid("telecoms"));
    CHECK(nw_client_topic_valid("telecoms.5g"));
    CHECK(nw_client_topic_valid("geo-politics.eu"));
    CHECK(!nw_client_topic_valid(""));
    CHECK(!nw_client_topic_valid("Telecoms"));
    CHECK(!nw_client_topic_valid(".telecoms"));
    CHECK(!nw_client_topic_valid("telecoms."));
    CHECK(!nw_client_topic_valid("a..b"));
    CHECK(!nw_client_topic_valid("a b"));
    CHECK(!nw_client_topic_valid("caf\xc3\xa9"));
    char long_name[300];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    CHECK(!nw_client_topic_valid(long_name));
    long_name[NW_CLIENT_TOPIC_MAX] = '\0';
    CHECK(nw_client_topic_valid(long_name));

    char out[NW_CLIENT_TOPIC_MAX + 1];
    CHECK(nw_client_topic_normalize("Telecoms & 5G", out, sizeof out) == 0);
    CHECK_STR(out, "telecoms-5g");
    CHECK(nw_client_topic_normalize("  Geo.Politics ", out, sizeof out) == 0);
    CHECK_STR(out, "geo.politics");
    CHECK(nw_client_topic_normalize("--a--..b.", out, sizeof out) == 0);
    CHECK_STR(out, "a.b");
    CHECK(nw_client_topic_normalize("...&&", out, sizeof out) == -1);
    CHECK(nw_client_topic_normalize("abcdef", out, 4) == -1);

    nw_client_t *client = nw_client_new();
    CHECK(nw_client_subscribe(client, "Telecoms") == -1);
    CHECK(strstr(nw_client_error(client), "Telecoms") != NULL);
    CHECK(nw_client_subscribe(client, "a..b") == -1);
    CHECK(nw_client_subscribe(client, "") == 0);
    CHECK(nw_client_unsubscribe(client, "") == 0);
    CHECK(nw_client_unsubscribe(client, "never") == -1);
    CHECK(nw_client_connect(client, "no-such-transport://x") == -1);
    CHECK(strstr(nw_client_error(client), "no-such-transport") != NULL);
    CHECK(nw_client_set_rcvhwm(client, -1) == -1);
    CHECK(nw_client_set_rcvhwm(client, 5000) == 0);
    nw_message_t *msg = (nw_message_t *) &msg;
    CHECK(nw_client_recv(client, &msg, 0) == NW_RECV_TIMEOUT);
    CHECK(msg == NULL);
    nw_client_destroy(&client);
    CHECK(client == NULL);
    nw_client_destroy(&client); /* NULL is fine */
}

TEST_IMPL(matching)
{
    nw_client_t *tele = client_for("telecoms");
    nw_client_t *all = client_for("");
    uint64_t seq;

    publish("telecomsx", 1, EPOCH_A);
    publish("general", 1, EPOCH_A);
    publish("telecoms", 1, EPOCH_A);
    publish("telecoms.5g", 1, EPOCH_A);
    publish("telecoms-x", 1, EPOCH_A);

    CHECK_STR(next(tele, &seq, NULL), "telecoms");
    CHECK_STR(next(tele, &seq, NULL), "telecoms.5g");
    CHECK_STR(next(all, &seq, NULL), "telecomsx");
    CHECK_STR(next(all, &seq, NULL), "general");
    CHECK_STR(next(all, &seq, NULL), "telecoms");
    CHECK_STR(next(all, &seq, NULL), "telecoms.5g");
    CHECK_STR(next(all, &seq, NULL), "telecoms-x");
    /* Everything published has arrived at both; telecomsx and telecoms-x were filtered. */
    nw_message_t *msg = NULL;
    CHECK(nw_client_recv(tele, &msg, 0) == NW_RECV_TIMEOUT);
    CHECK(nw_client_received(tele) == 2);
    CHECK(nw_client_received(all) == 5);

    /* A second, deeper subscription changes nothing for telecoms.5g; a new one adds. */
    CHECK(nw_client_subscribe(tele, "telecoms.5g") == 0);
    zframe_t *frame = zframe_recv(pub);
    zframe_destroy(&frame);
    subscribe_synced(tele, "general");
    publish("general.sport", 1, EPOCH_A);
    CHECK_STR(next(tele, &seq, NULL), "general.sport");
    CHECK_STR(next(all, &seq, NULL), "general.sport");
    nw_client_destroy(&tele);
    nw_client_destroy(&all);
}

TEST_IMPL(accessors)
{
    nw_client_t *client = client_for("markets");
    publish("markets", 7, EPOCH_A);
    publish_full(NULL, "markets", 8, EPOCH_A, NULL);

    nw_message_t *msg = NULL;
    CHECK(nw_client_recv(client, &msg, WAIT_MS) == NW_RECV_MESSAGE);
    if (msg) {
        CHECK_STR(nw_message_topic(msg), "markets");
        CHECK(nw_message_seq(msg) == 7);
        CHECK_STR(nw_message_epoch(msg), EPOCH_A);
        CHECK_STR(nw_message_id(msg), ID_1);
        CHECK_STR(nw_message_sent(msg), "2026-01-02T03:04:06.789Z");
        CHECK_STR(nw_message_source_file(msg), "valley.txt");
        CHECK_STR(nw_message_source_format(msg), "scraped");
        CHECK_STR(nw_message_uri(msg), "urn:newswire:test:1");
        CHECK_STR(nw_message_type(msg), "text");
        CHECK_STR(nw_message_headline(msg), "Fibre reaches the valley");
        CHECK_STR(nw_message_byline(msg), "Ann Writer");
        CHECK_STR(nw_message_description(msg), "A short standfirst.");
        CHECK_STR(nw_message_body(msg),
                  "First line of the body.\nSecond line, with \"quotes\" and caf\xc3\xa9.");
        CHECK_STR(nw_message_language(msg), "en");
        CHECK_STR(nw_message_version(msg), "4");
        CHECK_STR(nw_message_located(msg), "TAMPERE");
        CHECK_STR(nw_message_versioncreated(msg), "2026-01-02T03:04:05.000Z");
        CHECK(nw_message_subject_count(msg) == 2);
        CHECK_STR(nw_message_subject(msg, 0), "Telecoms");
        CHECK_STR(nw_message_subject_code(msg, 0), "medtop:13000000");
        CHECK_STR(nw_message_subject_scheme(msg, 0), "http://cv.iptc.org/newscodes/mediatopic/");
        CHECK(nw_message_subject_code(msg, 1) == NULL &&
              nw_message_subject_scheme(msg, 1) == NULL);
        CHECK(nw_message_subject_code(msg, 2) == NULL);
        CHECK_STR(nw_message_subject(msg, 1), "5G networks");
        CHECK(nw_message_subject(msg, 2) == NULL);
        CHECK(nw_message_gap_before(msg) == 0); /* joining late is not a gap */
        CHECK(nw_message_epoch_changed(msg) == 0);
        nw_message_destroy(&msg);
        CHECK(msg == NULL);
    }
    CHECK(nw_client_recv(client, &msg, WAIT_MS) == NW_RECV_MESSAGE);
    if (msg) {
        CHECK(nw_message_byline(msg) == NULL);
        CHECK(nw_message_version(msg) == NULL && nw_message_located(msg) == NULL);
        CHECK(nw_message_subject_count(msg) == 0);
        CHECK(nw_message_subject(msg, 0) == NULL);
        nw_message_destroy(&msg);
    }
    nw_message_destroy(&msg); /* NULL is fine */
    nw_client_destroy(&client);
}

typedef struct {
    int calls;
    char topic[64];
    uint64_t first, last;
} gap_seen_t;

static void on_gap(nw_client_t *client, const char *topic, const char *epoch, uint64_t first,
                   uint64_t last, void *arg)
{
    gap_seen_t *seen = arg;
    (void) client;
    CHECK_STR(epoch, EPOCH_A);
    seen->calls++;
    snprintf(seen->topic, sizeof seen->topic, "%s", topic);
    seen->first = first;
    seen->last = last;
}

TEST_IMPL(sequence)
{
    nw_client_t *client = client_for("seq");
    gap_seen_t seen = {0};
    nw_client_set_gap_handler(client, on_gap, &seen);
    uint64_t seq, gap;

    publish("seq", 1, EPOCH_A);
    publish("seq", 2, EPOCH_A);
    publish("seq", 2, EPOCH_A);      /* duplicate */
    publish("seq.sub", 10, EPOCH_A); /* topics are tracked apart */
    publish("seq", 1, EPOCH_A);      /* old */
    publish("seq", 5, EPOCH_A);      /* 3 and 4 missed */
    publish("seq.sub", 11, EPOCH_A);
    publish("seq", 1, EPOCH_B); /* the publisher lost its history */
    publish("seq", 1, EPOCH_B); /* duplicate in the new epoch */
    publish("seq", 2, EPOCH_B);

    CHECK_STR(next(client, &seq, &gap), "seq");
    CHECK(seq == 1 && gap == 0);
    CHECK_STR(next(client, &seq, &gap), "seq");
    CHECK(seq == 2 && gap == 0);
    CHECK_STR(next(client, &seq, &gap), "seq.sub");
    CHECK(seq == 10 && gap == 0);
    CHECK(seen.calls == 0);
    CHECK_STR(next(client, &seq, &gap), "seq");
    CHECK(seq == 5 && gap == 2);
    CHECK(seen.calls == 1 && seen.first == 3 && seen.last == 4);
    CHECK_STR(seen.topic, "seq");
    CHECK(nw_client_gaps(client) == 2);
    CHECK_STR(next(client, &seq, &gap), "seq.sub");
    CHECK(seq == 11 && gap == 0);

    nw_message_t *msg = NULL;
    CHECK(nw_client_recv(client, &msg, WAIT_MS) == NW_RECV_MESSAGE);
    if (msg) {
        CHECK(nw_message_seq(msg) == 1);
        CHECK_STR(nw_message_epoch(msg), EPOCH_B);
        CHECK(nw_message_epoch_changed(msg) == 1);
        CHECK(nw_message_gap_before(msg) == 0);
        nw_message_destroy(&msg);
    }
    CHECK(nw_client_recv(client, &msg, WAIT_MS) == NW_RECV_MESSAGE);
    if (msg) {
        CHECK(nw_message_seq(msg) == 2);
        CHECK(nw_message_epoch_changed(msg) == 0);
        nw_message_destroy(&msg);
    }
    CHECK(nw_client_duplicates(client) == 3);
    CHECK(nw_client_gaps(client) == 2);
    CHECK(seen.calls == 1);
    CHECK(nw_client_recv(client, &msg, 0) == NW_RECV_TIMEOUT);
    nw_client_destroy(&client);
}

/* One hostile message, then a good one that must still arrive. */
static void expect_bad_then_good(nw_client_t *client, const char *what, uint64_t good_seq)
{
    nw_message_t *msg = NULL;
    int rc = nw_client_recv(client, &msg, WAIT_MS);
    if (rc != NW_RECV_BAD)
        fprintf(stderr, "%s: recv returned %d, want NW_RECV_BAD\n", what, rc);
    CHECK(rc == NW_RECV_BAD);
    CHECK(msg == NULL);
    CHECK(nw_client_error(client)[0] != '\0');
    nw_message_destroy(&msg);
    uint64_t seq;
    CHECK_STR(next(client, &seq, NULL), "hostile");
    CHECK(seq == good_seq);
}

TEST_IMPL(hostile)
{
    nw_client_t *client = client_for("");
    uint64_t seq = 1;

    /* Truncated MessagePack: a real message cut in half. */
    {
        nw_ninjs_t article = {.uri = "u",
                              .headline = "h",
                              .body_text = "b",
                              .versioncreated = "2026-01-02T03:04:05.000Z"};
        nw_envelope_t env = {.topic = "hostile",
                             .seq = 99,
                             .epoch = EPOCH_A,
                             .id = ID_1,
                             .sent = "2026-01-02T03:04:06.789Z",
                             .source_file = "f",
                             .source_format = "header"};
        char err[200];
        msgpack_sbuffer art, msg;
        msgpack_sbuffer_init(&art);
        msgpack_sbuffer_init(&msg);
        CHECK(nw_codec_pack_article(&article, &art, err, sizeof err) == 0);
        CHECK(nw_codec_pack_message(&env, art.data, art.size, &msg, err, sizeof err) == 0);
        send_raw("hostile", msg.data, msg.size / 2);
        msgpack_sbuffer_destroy(&art);
        msgpack_sbuffer_destroy(&msg);
    }
    publish("hostile", seq, EPOCH_A);
    expect_bad_then_good(client, "truncated", seq++);

    /* Wrong types: seq is a string, v is a map. */
    {
        msgpack_sbuffer buf;
        msgpack_packer pk;
        msgpack_sbuffer_init(&buf);
        msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        msgpack_pack_str_with_body(&pk, "v", 1);
        msgpack_pack_map(&pk, 0);
        msgpack_pack_str_with_body(&pk, "topic", 5);
        msgpack_pack_str_with_body(&pk, "hostile", 7);
        msgpack_pack_str_with_body(&pk, "seq", 3);
        msgpack_pack_str_with_body(&pk, "12", 2);
        send_raw("hostile", buf.data, buf.size);
        msgpack_sbuffer_destroy(&buf);
    }
    publish("hostile", seq, EPOCH_A);
    expect_bad_then_good(client, "wrong types", seq++);

    /* Huge declared lengths with 3 bytes of data: a bare str32 and a map key. */
    static const unsigned char huge_str[] = {0xdb, 0xff, 0xff, 0xff, 0xf0, 'a', 'b', 'c'};
    send_raw("hostile", huge_str, sizeof huge_str);
    publish("hostile", seq, EPOCH_A);
    expect_bad_then_good(client, "huge str32", seq++);
    static const unsigned char huge_key[] = {0x81, 0xdb, 0xff, 0xff, 0xff, 0xf0, 'a', 'b', 'c'};
    send_raw("hostile", huge_key, sizeof huge_key);
    publish("hostile", seq, EPOCH_A);
    expect_bad_then_good(client, "huge key", seq++);
    static const unsigned char huge_map[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    send_raw("hostile", huge_map, sizeof huge_map);
    publish("hostile", seq, EPOCH_A);
    expect_bad_then_good(client, "huge map", seq++);

    /* Empty payload. */
    send_raw("hostile", "", 0);
    publish("hostile", seq, EPOCH_A);
    expect_bad_then_good(client, "empty", seq++);

    /* One frame only. */
    {
        const void *data[1] = {"hostile."};
        size_t lens[1] = {8};
        send_frames(data, lens, 1);
    }
    publish("hostile", seq, EPOCH_A);
    expect_bad_then_good(client, "one frame", seq++);
    CHECK(strstr(nw_client_error(client), "1 frame") != NULL);

    /* Five frames. */
    {
        const void *data[5] = {"hostile.", "a", "b", "c", "d"};
        size_t lens[5] = {8, 1, 1, 1, 1};
        send_frames(data, lens, 5);
    }
    publish("hostile", seq, EPOCH_A);
    expect_bad_then_good(client, "five frames", seq++);
    CHECK(strstr(nw_client_error(client), "5 frames") != NULL);

    /* Topic frame differing from the topic key (both valid, both subscribed). */
    publish_full("hostile.", "hostile.other", seq + 100, EPOCH_A, "X");
    publish("hostile", seq, EPOCH_A);
    expect_bad_then_good(client, "topic mismatch", seq++);

    /* Frame 0 without its terminator, and with two: a good body is not enough. */
    publish_full("hostile", "hostile", seq + 100, EPOCH_A, "X");
    publish("hostile", seq, EPOCH_A);
    expect_bad_then_good(client, "no terminator", seq++);
    CHECK(strstr(nw_client_error(client), "terminating") != NULL);
    publish_full("hostile..", "hostile", seq + 100, EPOCH_A, "X");
    publish("hostile", seq, EPOCH_A);
    expect_bad_then_good(client, "two terminators", seq++);

    /* Topic frames that are no topic names: uppercase, embedded NUL, too long. */
    send_raw("Hostile", "\x80", 1);
    publish("hostile", seq, EPOCH_A);
    expect_bad_then_good(client, "uppercase topic", seq++);
    {
        const void *data[2] = {"hostile\0x.", "\x80"};
        size_t lens[2] = {10, 1};
        send_frames(data, lens, 2);
    }
    publish("hostile", seq, EPOCH_A);
    expect_bad_then_good(client, "NUL in topic", seq++);
    {
        char long_topic[400];
        memset(long_topic, 'a', sizeof long_topic - 1);
        long_topic[sizeof long_topic - 1] = '\0';
        send_raw(long_topic, "\x80", 1);
    }
    publish("hostile", seq, EPOCH_A);
    expect_bad_then_good(client, "long topic", seq++);

    CHECK(nw_client_bad(client) == seq - 1); /* one bad message per good one */
    CHECK(nw_client_received(client) == seq - 1);
    CHECK(nw_client_gaps(client) == 0);
    nw_client_destroy(&client);
}

/* nw_client_set_curve: refusals, then a CURVE server (this test's XPUB with a server
 * key; no ZAP handler, so any client key is admitted) reached by a client whose keys
 * come from zcert files; a client without the keys would complete no handshake. */
TEST_IMPL(curve)
{
    char dir[] = "/tmp/nw-test-client-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char cert_path[64], secret_path[80], server_path[64], missing[64];
    snprintf(cert_path, sizeof cert_path, "%s/alice", dir);
    snprintf(secret_path, sizeof secret_path, "%s/alice_secret", dir);
    snprintf(server_path, sizeof server_path, "%s/server", dir);
    snprintf(missing, sizeof missing, "%s/none", dir);
    zcert_t *client_cert = zcert_new(), *server_cert = zcert_new();
    CHECK(zcert_save(client_cert, cert_path) == 0);
    CHECK(zcert_save_public(server_cert, server_path) == 0);
    const char *server_key = zcert_public_txt(server_cert);

    nw_client_t *client = nw_client_new();
    CHECK(nw_client_set_curve(client, NULL, server_key) == -1);
    CHECK(nw_client_set_curve(client, missing, server_key) == -1);
    CHECK(strstr(nw_client_error(client), "cannot read") != NULL);
    CHECK(nw_client_set_curve(client, cert_path, server_key) == -1); /* public half only */
    CHECK(strstr(nw_client_error(client), "secret") != NULL);
    CHECK(nw_client_set_curve(client, secret_path, "short") == -1);
    CHECK(strstr(nw_client_error(client), "Z85") != NULL);
    CHECK(nw_client_set_curve(client, secret_path, server_key) == 0);
    CHECK(nw_client_set_curve(client, secret_path, server_path) == 0); /* key from a file */
    CHECK(nw_client_connect(client, "tcp://127.0.0.1:1") == 0);
    CHECK(nw_client_set_curve(client, secret_path, server_key) == -1); /* too late */
    CHECK(strstr(nw_client_error(client), "before connecting") != NULL);
    nw_client_destroy(&client);
    client = nw_client_new();
    CHECK(nw_client_set_replay(client, "tcp://127.0.0.1:1") == 0);
    CHECK(nw_client_set_curve(client, secret_path, server_key) == -1);
    nw_client_destroy(&client);

    zsock_t *plain = pub;
    pub = zsock_new(ZMQ_XPUB);
    zcert_apply(server_cert, pub);
    zsock_set_curve_server(pub, 1);
    zsock_set_xpub_verbose(pub, 1);
    zsock_set_rcvtimeo(pub, WAIT_MS);
    CHECK(zsock_bind(pub, "tcp://127.0.0.1:*") > 0);
    client = nw_client_new();
    CHECK(nw_client_set_curve(client, secret_path, server_path) == 0);
    CHECK(nw_client_connect(client, zsock_endpoint(pub)) == 0);
    subscribe_synced(client, "curve"); /* arrives only through a CURVE handshake */
    publish("curve", 1, EPOCH_A);
    uint64_t seq;
    CHECK_STR(next(client, &seq, NULL), "curve");
    CHECK(seq == 1);
    nw_client_destroy(&client);
    zsock_destroy(&pub);
    pub = plain;

    zcert_destroy(&client_cert);
    zcert_destroy(&server_cert);
    unlink(cert_path);
    unlink(secret_path);
    unlink(server_path);
    rmdir(dir);
}

/* Each case: a verbose XPUB bound to a loopback port of its own. */
static int setup(void)
{
    pub = zsock_new(ZMQ_XPUB);
    CHECK(pub != NULL);
    if (!pub)
        return -1;
    zsock_set_xpub_verbose(pub, 1);   /* pass on every subscription, even repeated ones */
    zsock_set_rcvtimeo(pub, WAIT_MS); /* safety net only: subscriptions must arrive */
    int port = zsock_bind(pub, "tcp://127.0.0.1:*");
    CHECK(port > 0);
    return port > 0 ? 0 : -1;
}
TEST_SETUP(setup)

static void teardown(void)
{
    zsock_destroy(&pub);
}
TEST_TEARDOWN(teardown)
