/* test_metrics: the endpoint syntax, the --metrics flag and config key, real HTTP
 * against the libmicrohttpd daemon polled from a libuv loop (answers, 404, 405, a
 * journal's series) torn down without leaks (valgrind runs this), and the cap on
 * per-topic series. */
#include "config.h"
#include "journal.h"
#include "metrics.h"
#include "runner.h"

#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

TEST_IMPL(parse)
{
    static const struct {
        const char *endpoint, *host;
        unsigned port;
    } good[] = {
        {"tcp://127.0.0.1:9464", "127.0.0.1", 9464}, {"tcp://[::1]:0", "::1", 0},
        {"tcp://localhost:80", "localhost", 80},     {"tcp://*:65535", "", 65535},
        {"tcp://198.18.0.1:1", "198.18.0.1", 1},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char host[64] = "x", err[200] = "";
        unsigned port = 12345;
        CHECK(nw_metrics_parse_endpoint(good[i].endpoint, host, sizeof host, &port, err,
                                        sizeof err) == 0);
        CHECK_STR(host, good[i].host);
        CHECK(port == good[i].port);
    }
    static const char *bad[] = {
        "127.0.0.1:9464", "ipc:///tmp/x", "tcp://127.0.0.1", "tcp://:80",   "tcp://::1:80",
        "tcp://[::1]80",  "tcp://[::1",   "tcp://h:65536",   "tcp://h:-1",  "tcp://h:+1",
        "tcp://h:",       "tcp://h:12x",  "tcp://a;b:1",     "tcp://a/b:1", "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char host[64], err[200] = "";
        unsigned port;
        CHECK(nw_metrics_parse_endpoint(bad[i], host, sizeof host, &port, err, sizeof err) == -1);
        CHECK(strstr(err, "metrics endpoint") != NULL);
    }
    char small[4], err[200];
    unsigned port;
    CHECK(nw_metrics_parse_endpoint("tcp://localhost:1", small, sizeof small, &port, err,
                                    sizeof err) == -1);
}

TEST_IMPL(config)
{
    char err[300];
    nw_config_t c;
    char *none[] = {"newswired", NULL};
    CHECK(nw_config_load(&c, 1, none, err, sizeof err) == 0);
    CHECK(c.metrics == NULL);
    nw_config_release(&c);
    char *flag[] = {"newswired", "--metrics", "tcp://127.0.0.1:9464", NULL};
    CHECK(nw_config_load(&c, 3, flag, err, sizeof err) == 0);
    CHECK_STR(c.metrics, "tcp://127.0.0.1:9464");
    nw_config_release(&c);

    char path[] = "/tmp/nw-metrics-cfg-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("newswired\n    metrics = \"tcp://[::1]:9464\"\n", f);
    fclose(f);
    char *file[] = {"newswired", "--config", path, NULL};
    CHECK(nw_config_load(&c, 3, file, err, sizeof err) == 0);
    CHECK_STR(c.metrics, "tcp://[::1]:9464");
    nw_config_release(&c);
    char *both[] = {"newswired", "--config", path, "--metrics", "tcp://127.0.0.1:1", NULL};
    CHECK(nw_config_load(&c, 5, both, err, sizeof err) == 0);
    CHECK_STR(c.metrics, "tcp://127.0.0.1:1"); /* the flag wins */
    nw_config_release(&c);
    unlink(path);
}

/* Per-topic counts: the first NW_PUBLISH_TOPICS_MAX topics one by one, the rest in
 * topic="_other", which the metrics show without a seq. */
TEST_IMPL(topic_cap)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char dir[] = "/tmp/nw-metrics-XXXXXX", err[300], endpoint[100];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(endpoint, sizeof endpoint, "ipc://%s/pub", dir);
    char *endpoints[] = {endpoint};
    nw_publish_options_t popt = {.send_hwm = 10};
    nw_publish_t *pub = nw_publish_new(&loop, endpoints, 1, popt, NULL, err, sizeof err);
    CHECK(pub != NULL);
    if (!pub)
        return;
    char topic[32];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < NW_PUBLISH_TOPICS_MAX + 3; i++) {
            snprintf(topic, sizeof topic, "t%d", i);
            CHECK(nw_publish_send(pub, topic, "body", 4 + (size_t) round) == 0);
        }
    const nw_publish_topic_t *topics;
    nw_publish_topic_t other;
    CHECK(nw_publish_topics(pub, &topics, &other) == NW_PUBLISH_TOPICS_MAX);
    CHECK_STR(topics[0].topic, "t0");
    CHECK_STR(topics[NW_PUBLISH_TOPICS_MAX - 1].topic, "t999");
    CHECK(topics[5].messages == 2 && topics[5].bytes == 9);
    CHECK(other.messages == 6 && other.bytes == 27);
    nw_metrics_sources_t sources = {.publish = pub};
    size_t len;
    char *text = nw_metrics_render(&sources, &len);
    CHECK(text && strlen(text) == len);
    CHECK(text && strstr(text, "\nnewswired_messages_total{topic=\"t999\"} 2\n"));
    CHECK(text && !strstr(text, "{topic=\"t1000\"}"));
    CHECK(text && strstr(text, "\nnewswired_messages_total{topic=\"_other\"} 6\n"));
    CHECK(text && strstr(text, "\nnewswired_message_bytes_total{topic=\"_other\"} 27\n"));
    CHECK(text && !strstr(text, "newswired_topic_seq")); /* no journal given */
    free(text);
    nw_publish_destroy(&pub);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
    char cmd[100];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static void on_commit(void *arg, int status)
{
    *(int *) arg = status == 0 ? 1 : 2;
}

/* One request over a real socket while the loop runs; the whole answer. */
static char *request(uv_loop_t *loop, unsigned port, const char *req)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t) port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(connect(fd, (struct sockaddr *) &a, sizeof a) == 0);
    CHECK(write(fd, req, strlen(req)) == (ssize_t) strlen(req));
    size_t len = 0, cap = 1 << 16;
    char *out = malloc(cap);
    /* The loop serves while the client waits for bytes; ends at EOF (Connection: close),
     * or after 20 s of nothing. */
    for (int idle = 0; idle < 2000;) {
        uv_run(loop, UV_RUN_NOWAIT);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10) <= 0) {
            idle++;
            continue;
        }
        if (len + 4096 > cap)
            out = realloc(out, cap *= 2);
        ssize_t n = read(fd, out + len, cap - len - 1);
        if (n <= 0)
            break;
        len += (size_t) n;
        idle = 0;
    }
    out[len] = '\0';
    close(fd);
    return out;
}

/* A journal of 1 MiB segments in a folder of its own, on a loop of its own: what the
 * served cases scrape. */
typedef struct {
    uv_loop_t loop;
    char dir[32];
    nw_journal_t *journal;
    nw_metrics_sources_t sources;
} served_t;

static bool served_open(served_t *s, bool sync)
{
    char err[300];
    uv_loop_init(&s->loop);
    snprintf(s->dir, sizeof s->dir, "/tmp/nw-metrics-XXXXXX");
    CHECK(mkdtemp(s->dir) != NULL);
    nw_journal_options_t jopt = {.sync = sync, .segment_size = 1 << 20};
    s->journal = nw_journal_open(&s->loop, s->dir, jopt, err, sizeof err);
    CHECK(s->journal != NULL);
    s->sources = (nw_metrics_sources_t) {.journal = s->journal};
    return s->journal != NULL;
}

/* Served on 127.0.0.1, a port the kernel picks; NULL (said) when it cannot be. */
static nw_metrics_t *served_metrics(served_t *s, unsigned *port)
{
    char err[300];
    nw_metrics_t *m = nw_metrics_new(&s->loop, "tcp://127.0.0.1:0", &s->sources, err, sizeof err);
    CHECK(m != NULL);
    *port = 0;
    if (m)
        CHECK(sscanf(nw_metrics_url(m), "http://127.0.0.1:%u/metrics", port) == 1 && *port > 0);
    return m;
}

static void served_close(served_t *s)
{
    nw_journal_close(&s->journal);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&s->loop) == 0);
    char cmd[100];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
    CHECK(system(cmd) == 0);
}

TEST_IMPL(serve)
{
    served_t s;
    if (!served_open(&s, false))
        return;
    uv_loop_t *loop = &s.loop;
    nw_journal_t *journal = s.journal;
    char err[300];

    /* A port in use is refused with MHD's reason. */
    int taken = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    CHECK(bind(taken, (struct sockaddr *) &a, sizeof a) == 0 && listen(taken, 1) == 0);
    getsockname(taken, (struct sockaddr *) &a, &alen);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%u", ntohs(a.sin_port));
    CHECK(nw_metrics_new(loop, endpoint, &s.sources, err, sizeof err) == NULL);
    CHECK(strstr(err, "cannot serve metrics on") != NULL);
    close(taken);

    unsigned port;
    nw_metrics_t *m = served_metrics(&s, &port);
    if (!m)
        return;

    /* Something to count: two records, one group write. */
    CHECK(nw_journal_append(journal, "telecoms", 1, "a", 1000, "x", 1) == 0);
    CHECK(nw_journal_append(journal, "telecoms", 2, "b", 1000, "yy", 2) == 0);
    int done = 0;
    CHECK(nw_journal_commit(journal, on_commit, &done) == 0);
    while (!done)
        uv_run(loop, UV_RUN_ONCE);
    CHECK(done == 1);

    char *r = request(loop, port,
                      "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != NULL);
    CHECK(strstr(r, "\r\n\r\n# HELP newswired_build_info ") != NULL);
    CHECK(strstr(r, "newswired_build_info{version=\"" NW_VERSION "\",libzmq=\"") != NULL);
    CHECK(strstr(r, "\nnewswired_journal_records 2\n") != NULL);
    CHECK(strstr(r, "\nnewswired_journal_topics 1\n") != NULL);
    CHECK(strstr(r, "# TYPE newswired_journal_commit_seconds histogram\n") != NULL);
    CHECK(strstr(r, "newswired_journal_commit_seconds_bucket{le=\"+Inf\"} 1\n") != NULL);
    CHECK(strstr(r, "\nnewswired_journal_commit_seconds_count 1\n") != NULL);
    CHECK(strstr(r, "newswired_articles_published_total") == NULL); /* no pipeline */
    free(r);

    r = request(loop, port, "GET /nothing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 404 ", 13) == 0);
    free(r);
    r = request(loop, port, "DELETE /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 405 ", 13) == 0);
    CHECK(strstr(r, "\r\nAllow: GET, HEAD\r\n") != NULL);
    free(r);
    r = request(loop, port, "HEAD /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    CHECK(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(strstr(r, "# HELP") == NULL);
    free(r);

    nw_metrics_destroy(&m);
    CHECK(m == NULL);
    nw_metrics_destroy(&m);
    uv_run(loop, UV_RUN_DEFAULT);
    /* The port is closed with it. */
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_port = htons((uint16_t) port);
    CHECK(connect(probe, (struct sockaddr *) &a, sizeof a) == -1 && errno == ECONNREFUSED);
    close(probe);
    served_close(&s);
}

/* The journal's zeros written ahead, with fdatasync on: once the next segment has been
 * prepared on the pool, its size and the zeros held are exported as the journal says. */
TEST_IMPL(journal_zeros)
{
    served_t s;
    unsigned port;
    nw_metrics_t *m = served_open(&s, true) ? served_metrics(&s, &port) : NULL;
    if (!m)
        return;
    nw_journal_t *journal = s.journal;
    CHECK(nw_journal_append(journal, "telecoms", 1, "a", 1000, "x", 1) == 0);
    int done = 0;
    CHECK(nw_journal_commit(journal, on_commit, &done) == 0);
    nw_journal_stats_t js;
    for (;;) { /* the preparation's end on the pool wakes the loop */
        nw_journal_stats(journal, &js);
        if (done && (js.prepared || js.prepare_failures))
            break;
        uv_run(&s.loop, UV_RUN_ONCE);
    }
    CHECK(done == 1);
    CHECK(js.prepared == 1 << 20 && js.zeros >= js.prepared);
    char *r = request(&s.loop, port,
                      "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    char want[128];
    snprintf(want, sizeof want, "\nnewswired_journal_zero_bytes %" PRIu64 "\n", js.zeros);
    CHECK(strstr(r, want) != NULL);
    snprintf(want, sizeof want, "\nnewswired_journal_prepared_bytes %" PRIu64 "\n", js.prepared);
    CHECK(strstr(r, want) != NULL);
    CHECK(strstr(r, "\nnewswired_journal_prepare_failures_total 0\n") != NULL);
    CHECK(strstr(r, "# TYPE newswired_journal_prepare_failures_total counter\n") != NULL);
    free(r);
    nw_metrics_destroy(&m);
    uv_run(&s.loop, UV_RUN_DEFAULT);
    served_close(&s);
}

static int setup(void)
{
    zsys_init();
    return 0;
}
TEST_SETUP(setup)

static void teardown(void)
{
    zsys_shutdown();
}
TEST_TEARDOWN(teardown)
