/* floor_protocol: ../shared/bench/floor_durable.c plus the protocol's own compute on
 * each file, done with newswired's own modules on the one thread: nw_article_parse (layout
 * detection, text, SHA-1 id), nw_route_topics (built-in rules), nw_codec_pack_article and
 * nw_codec_pack_message per topic; the packed messages are what is journaled and sent.
 * Everything else is floor_durable's: one write + one fdatasync per inotify batch, no
 * lease, no lstat, no seen-set, no replay index, no metrics, no logging.
 * What newswired spends beyond it is what its other promises and its design cost; what it
 * spends beyond floor_durable includes work the protocol demands of any implementation.
 * Usage: floor_protocol DROP STATE ENDPOINT [--no-sync] (drive.py's --cmd) */
#include "article.h"
#include "nw_codec.h"
#include "route.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define MAX_BATCH 1024
#define MAX_FILE (1 << 20)

static char ev[1 << 16];
static char *rbuf;
static msgpack_sbuffer jbuf;
/* One batch's messages, grown as needed: a file may hold many stories of several topics
 * each, and a floor that dropped some would send less than newswired does. */
static struct message {
    size_t off, len;
    char topic[NW_TOPIC_MAX + 2];
} * msg;
static size_t msg_cap;
static char names[MAX_BATCH][256];
static uint64_t seq;

static int commit(int jfd, int sync, void *pub, int dir, int archive, int nmsg, int nfiles)
{
    if (write(jfd, jbuf.data, jbuf.size) != (ssize_t) jbuf.size) {
        perror("journal");
        return -1;
    }
    if (sync && fdatasync(jfd)) {
        perror("fdatasync");
        return -1;
    }
    for (int i = 0; i < nmsg; i++) {
        zmq_send(pub, msg[i].topic, strlen(msg[i].topic), ZMQ_SNDMORE);
        zmq_send(pub, jbuf.data + msg[i].off, msg[i].len, 0);
    }
    for (int i = 0; i < nfiles; i++)
        renameat(dir, names[i], archive, names[i]);
    jbuf.size = 0;
    return 0;
}

static int msg_reserve(size_t need)
{
    if (need <= msg_cap)
        return 0;
    size_t cap = msg_cap ? msg_cap : MAX_BATCH * 4;
    while (cap < need)
        cap *= 2;
    struct message *grown = realloc(msg, cap * sizeof *msg);
    if (!grown) {
        perror("messages");
        return -1;
    }
    msg = grown, msg_cap = cap;
    return 0;
}

/* Parse, route, pack: what newswired must do per file whatever its design. */
static int encode(const char *name, const char *data, size_t len, int64_t mtime_ms, int *nmsg,
                  const nw_rules_t *rules)
{
    int rc = 0;
    char err[NW_ARTICLE_ERRLEN];
    nw_article_t *article = NULL;
    if (nw_article_parse(data, len, mtime_ms, &article, err, sizeof err) != 0)
        return 0; /* floor_durable publishes it anyway; here it is only archived */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char sent[NW_CODEC_TIME_LEN], created[NW_CODEC_TIME_LEN];
    nw_codec_format_time((int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000, sent);
    for (const nw_article_t *a = article; a; a = a->next) {
        char topics[NW_ROUTE_MAX_TOPICS][NW_TOPIC_MAX + 1];
        size_t n = nw_route_topics(rules, NULL, a, topics);
        const char *subjects[NW_ROUTE_MAX_TOPICS], *codes[NW_ROUTE_MAX_TOPICS],
            *schemes[NW_ROUTE_MAX_TOPICS];
        for (size_t i = 0; i < n; i++) {
            subjects[i] = topics[i];
            codes[i] = nw_route_code(rules, a, topics[i], &schemes[i]);
        }
        char uri[64];
        snprintf(uri, sizeof uri, "urn:newswire:%s", a->id);
        nw_codec_format_time(a->versioncreated_ms, created);
        nw_ninjs_t ninjs = {
            .uri = a->uri ? a->uri : uri,
            .type = "text",
            .headline = a->headline,
            .byline = a->byline,
            .description_text = a->description,
            .body_text = a->body,
            .language = a->language,
            .version = a->version,
            .located = a->located,
            .versioncreated = created,
            .subjects = subjects,
            .subject_codes = codes,
            .subject_schemes = schemes,
            .subject_count = n,
        };
        msgpack_sbuffer mp;
        msgpack_sbuffer_init(&mp);
        if (nw_codec_pack_article(&ninjs, &mp, err, sizeof err) != 0) {
            msgpack_sbuffer_destroy(&mp);
            continue;
        }
        nw_envelope_t env = {.epoch = "0123456789abcdef0123456789abcdef",
                             .sent = sent,
                             .source_file = name,
                             .source_format = "scraped",
                             .id = a->id};
        if (msg_reserve((size_t) *nmsg + n) != 0) {
            msgpack_sbuffer_destroy(&mp);
            rc = -1;
            break;
        }
        for (size_t i = 0; i < n; i++) {
            env.topic = topics[i];
            env.seq = ++seq;
            size_t off = jbuf.size;
            if (nw_codec_pack_message(&env, mp.data, mp.size, &jbuf, err, sizeof err) != 0)
                continue;
            msg[*nmsg].off = off;
            msg[*nmsg].len = jbuf.size - off;
            snprintf(msg[*nmsg].topic, sizeof msg[*nmsg].topic, "%s.", topics[i]);
            (*nmsg)++;
        }
        msgpack_sbuffer_destroy(&mp);
    }
    nw_article_destroy(&article);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: floor_protocol DROP STATE ENDPOINT [--no-sync]\n");
        return 2;
    }
    int sync = !(argc > 4 && strcmp(argv[4], "--no-sync") == 0);
    char path[4096], err[256];
    nw_rules_t *rules = nw_rules_new(NULL, err, sizeof err);
    if (!rules) {
        fprintf(stderr, "rules: %s\n", err);
        return 1;
    }
    mkdir(argv[2], 0755);
    snprintf(path, sizeof path, "%s/archive", argv[2]);
    mkdir(path, 0755);
    int archive = open(path, O_RDONLY | O_DIRECTORY);
    snprintf(path, sizeof path, "%s/journal", argv[2]);
    int jfd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int dir = open(argv[1], O_RDONLY | O_DIRECTORY);
    if (archive < 0 || jfd < 0 || dir < 0) {
        perror("open");
        return 1;
    }
    rbuf = malloc(MAX_FILE + 1);
    msgpack_sbuffer_init(&jbuf);
    void *ctx = zmq_ctx_new(), *pub = zmq_socket(ctx, ZMQ_PUB);
    int hwm = 0;
    zmq_setsockopt(pub, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (zmq_bind(pub, argv[3])) {
        perror("bind");
        return 1;
    }
    int in = inotify_init1(0);
    inotify_add_watch(in, argv[1], IN_CLOSE_WRITE | IN_MOVED_TO);
    for (;;) {
        ssize_t n = read(in, ev, sizeof ev);
        if (n <= 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        int nfiles = 0, nmsg = 0;
        for (char *p = ev; p < ev + n;) {
            struct inotify_event *e = (struct inotify_event *) p;
            p += sizeof *e + e->len;
            if (!e->len || e->name[0] == '.')
                continue;
            int fd = openat(dir, e->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
            if (fd < 0)
                continue;
            struct stat st;
            if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE) {
                close(fd);
                continue;
            }
            if (nfiles == MAX_BATCH) {
                if (commit(jfd, sync, pub, dir, archive, nmsg, nfiles))
                    return 1;
                nfiles = 0, nmsg = 0;
            }
            ssize_t r = read(fd, rbuf, (size_t) st.st_size + 1);
            close(fd);
            if (r <= 0)
                continue;
            int64_t mtime = (int64_t) st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
            if (encode(e->name, rbuf, (size_t) r, mtime, &nmsg, rules) != 0)
                return 1;
            snprintf(names[nfiles], sizeof names[nfiles], "%s", e->name);
            nfiles++;
        }
        if (nfiles && commit(jfd, sync, pub, dir, archive, nmsg, nfiles))
            return 1;
    }
}
