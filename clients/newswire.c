/*
 * newswire.c: libnewswire, the subscriber side of wire format v1 (see include/newswire.h).
 *
 * Frames enter from one SUB socket; each message is checked in the order cheapest first:
 * frame count, topic frame syntax, subscription match (ZeroMQ filters by raw prefix only,
 * so "telecoms" would also let "telecomsx" through), decoding by nw_codec, envelope topic
 * against the topic frame, then per-topic (epoch, seq) tracking. Messages leave as
 * nw_message_t wrapping the decoded nw_codec_message_t.
 */
#include "newswire.h"
#include "nw_codec.h"

#include <czmq.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

typedef struct {
    char *epoch;
    uint64_t last;               /* highest seq seen in epoch */
} topic_state_t;

struct nw_client {
    void *ctx;                   /* private, so the application's ZeroMQ use is untouched */
    void *sock;
    zhashx_t *subs;              /* subscribed topic -> itself; keys owned by the hash */
    zhashx_t *topics;            /* topic -> topic_state_t */
    nw_client_gap_fn *gap_fn;
    void *gap_arg;
    uint64_t received, bad, gaps, duplicates;
    char error[256];
};

struct nw_message {
    nw_codec_message_t *decoded;
    uint64_t gap_before;
    int epoch_changed;
};

/* What reading one message off the socket came to. */
enum { READ_NONE, READ_MESSAGE, READ_SKIP, READ_BAD, READ_ERROR };

static void client_set_error(nw_client_t *self, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void client_set_error(nw_client_t *self, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->error, sizeof self->error, fmt, ap);
    va_end(ap);
}

static void topic_state_destroy(void **item)
{
    topic_state_t *state = *item;
    if (state) {
        free(state->epoch);
        free(state);
        *item = NULL;
    }
}

nw_client_t *nw_client_new(void)
{
    nw_client_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->ctx = zmq_ctx_new();
    if (!self->ctx)
        goto fail;
    self->sock = zmq_socket(self->ctx, ZMQ_SUB);
    if (!self->sock)
        goto fail;
    int linger = 0;
    int64_t maxmsg = NW_CLIENT_MAXMSGSIZE;
    if (zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger) != 0
        || zmq_setsockopt(self->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0)
        goto fail;
    self->subs = zhashx_new();
    self->topics = zhashx_new();
    if (!self->subs || !self->topics)
        goto fail;
    zhashx_set_destructor(self->topics, topic_state_destroy);
    return self;
fail:
    nw_client_destroy(&self);
    return NULL;
}

void nw_client_destroy(nw_client_t **self_p)
{
    nw_client_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    if (self->sock)
        zmq_close(self->sock);
    if (self->ctx)
        zmq_ctx_term(self->ctx);
    zhashx_destroy(&self->subs);
    zhashx_destroy(&self->topics);
    free(self);
    *self_p = NULL;
}

int nw_client_set_rcvhwm(nw_client_t *self, int hwm)
{
    if (hwm < 0 || zmq_setsockopt(self->sock, ZMQ_RCVHWM, &hwm, sizeof hwm) != 0) {
        client_set_error(self, "cannot set receive high-water mark %d", hwm);
        return -1;
    }
    return 0;
}

void nw_client_set_gap_handler(nw_client_t *self, nw_client_gap_fn *fn, void *arg)
{
    self->gap_fn = fn;
    self->gap_arg = arg;
}

int nw_client_connect(nw_client_t *self, const char *endpoint)
{
    if (!endpoint || zmq_connect(self->sock, endpoint) != 0) {
        client_set_error(self, "cannot connect to '%s': %s", endpoint ? endpoint : "(null)",
                         zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

int nw_client_topic_valid(const char *topic)
{
    size_t len = topic ? strlen(topic) : 0;
    if (len == 0 || len > NW_CLIENT_TOPIC_MAX)
        return 0;
    char prev = '.';             /* a level may not be empty: no leading, trailing or double '.' */
    for (size_t i = 0; i < len; i++) {
        char c = topic[i];
        if (c == '.') {
            if (prev == '.')
                return 0;
        } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return 0;
        prev = c;
    }
    return prev != '.';
}

int nw_client_topic_normalize(const char *subject, char *out, size_t outlen)
{
    size_t n = 0;
    int pending_dash = 0;        /* a '-' is written only once a level goes on after it */
    if (!subject || outlen == 0)
        return -1;
    for (const unsigned char *p = (const unsigned char *) subject; ; p++) {
        unsigned char c = *p;
        if (c == '.' || c == '\0') {
            pending_dash = 0;
            if (c == '\0')
                break;
            if (n > 0 && out[n - 1] != '.') {
                if (n + 1 >= outlen)
                    return -1;
                out[n++] = '.';
            }
            continue;
        }
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char) (c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
            if (n > 0 && out[n - 1] != '.')
                pending_dash = 1;
            continue;
        }
        if (n + 1 + (size_t) pending_dash >= outlen)
            return -1;
        if (pending_dash)
            out[n++] = '-';
        pending_dash = 0;
        out[n++] = (char) c;
    }
    if (n > 0 && out[n - 1] == '.')
        n--;
    out[n] = '\0';
    return n > 0 && n <= NW_CLIENT_TOPIC_MAX ? 0 : -1;
}

int nw_client_subscribe(nw_client_t *self, const char *topic)
{
    if (!topic || (*topic && !nw_client_topic_valid(topic))) {
        client_set_error(self, "not a topic name: '%s'", topic ? topic : "(null)");
        return -1;
    }
    if (zhashx_lookup(self->subs, topic))
        return 0;                /* ZeroMQ counts subscriptions; keep one per topic */
    if (zmq_setsockopt(self->sock, ZMQ_SUBSCRIBE, topic, strlen(topic)) != 0) {
        client_set_error(self, "cannot subscribe to '%s': %s", topic, zmq_strerror(zmq_errno()));
        return -1;
    }
    zhashx_insert(self->subs, topic, (void *) "");
    return 0;
}

int nw_client_unsubscribe(nw_client_t *self, const char *topic)
{
    if (!topic || !zhashx_lookup(self->subs, topic)) {
        client_set_error(self, "not subscribed to '%s'", topic ? topic : "(null)");
        return -1;
    }
    zmq_setsockopt(self->sock, ZMQ_UNSUBSCRIBE, topic, strlen(topic));
    zhashx_delete(self->subs, topic);
    return 0;
}

/* The protocol's rule: S matches T iff S is "", T == S, or T starts with S + ".". */
static int client_matches(nw_client_t *self, const char *topic)
{
    for (void *item = zhashx_first(self->subs); item; item = zhashx_next(self->subs)) {
        const char *sub = zhashx_cursor(self->subs);
        size_t len = strlen(sub);
        if (strncmp(topic, sub, len) == 0 && (len == 0 || topic[len] == '\0' || topic[len] == '.'))
            return 1;
    }
    return 0;
}

/* Sequence bookkeeping; READ_SKIP for a duplicate. */
static int client_track(nw_client_t *self, nw_message_t *msg)
{
    const nw_envelope_t *env = &msg->decoded->env;
    topic_state_t *state = zhashx_lookup(self->topics, env->topic);
    if (!state) {
        /* First message on a topic: whatever came before we were not subscribed for. */
        state = calloc(1, sizeof *state);
        if (!state || !(state->epoch = strdup(env->epoch))) {
            free(state);
            client_set_error(self, "out of memory");
            return READ_ERROR;
        }
        state->last = env->seq;
        zhashx_insert(self->topics, env->topic, state);
        return READ_MESSAGE;
    }
    if (strcmp(state->epoch, env->epoch) != 0) {
        char *epoch = strdup(env->epoch);
        if (!epoch) {
            client_set_error(self, "out of memory");
            return READ_ERROR;
        }
        free(state->epoch);
        state->epoch = epoch;
        state->last = env->seq;
        msg->epoch_changed = 1;
        return READ_MESSAGE;
    }
    if (env->seq <= state->last) {
        self->duplicates++;
        return READ_SKIP;
    }
    if (env->seq > state->last + 1) {
        msg->gap_before = env->seq - state->last - 1;
        self->gaps += msg->gap_before;
        if (self->gap_fn)
            self->gap_fn(self, env->topic, env->epoch, state->last + 1, env->seq - 1, self->gap_arg);
    }
    state->last = env->seq;
    return READ_MESSAGE;
}

/* Check and decode the two frames of one message. */
static int client_accept(nw_client_t *self, zmq_msg_t *frames, nw_message_t **out)
{
    char topic[NW_CLIENT_TOPIC_MAX + 1];
    size_t tlen = zmq_msg_size(&frames[0]);
    if (tlen > NW_CLIENT_TOPIC_MAX) {
        client_set_error(self, "topic frame of %zu bytes", tlen);
        return READ_BAD;
    }
    memcpy(topic, zmq_msg_data(&frames[0]), tlen);
    topic[tlen] = '\0';
    if (strlen(topic) != tlen || !nw_client_topic_valid(topic)) {
        client_set_error(self, "topic frame is not a topic name");
        return READ_BAD;
    }
    if (!client_matches(self, topic))
        return READ_SKIP;

    char reason[200] = "";
    nw_message_t *msg = calloc(1, sizeof *msg);
    if (!msg) {
        client_set_error(self, "out of memory");
        return READ_ERROR;
    }
    msg->decoded = nw_codec_message_decode(zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]),
                                           reason, sizeof reason);
    if (!msg->decoded) {
        client_set_error(self, "undecodable message on '%s': %s", topic, reason);
        goto bad;
    }
    const nw_envelope_t *env = &msg->decoded->env;
    if (msg->decoded->v != NW_PROTO_VERSION) {
        client_set_error(self, "message on '%s' has version %llu, want %d", topic,
                         (unsigned long long) msg->decoded->v, NW_PROTO_VERSION);
        goto bad;
    }
    if (!env->topic || strcmp(env->topic, topic) != 0) {
        client_set_error(self, "topic frame '%s' differs from topic key", topic);
        goto bad;
    }
    if (env->seq == 0 || !env->epoch) {
        client_set_error(self, "message on '%s' lacks seq or epoch", topic);
        goto bad;
    }
    int rc = client_track(self, msg);
    if (rc != READ_MESSAGE) {
        nw_message_destroy(&msg);
        return rc;
    }
    *out = msg;
    return READ_MESSAGE;
bad:
    nw_message_destroy(&msg);
    return READ_BAD;
}

/* Read one whole multipart message without waiting. */
static int client_read(nw_client_t *self, nw_message_t **out)
{
    zmq_msg_t frames[2];
    size_t parts = 0;
    int more = 1, rc = READ_NONE;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, self->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            if (zmq_errno() == EAGAIN && parts == 0)
                return READ_NONE;
            client_set_error(self, "receive failed: %s", zmq_strerror(zmq_errno()));
            rc = READ_ERROR;
            goto done;
        }
        more = zmq_msg_more(&part);
        if (parts < 2)
            frames[parts] = part;   /* moved: closed below */
        else
            zmq_msg_close(&part);
        parts++;
    }
    if (parts != 2) {
        client_set_error(self, "message of %zu frame%s, want 2", parts, parts == 1 ? "" : "s");
        rc = READ_BAD;
    } else
        rc = client_accept(self, frames, out);
done:
    for (size_t i = 0; i < parts && i < 2; i++)
        zmq_msg_close(&frames[i]);
    return rc;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int nw_client_recv(nw_client_t *self, nw_message_t **msg, int timeout_ms)
{
    int64_t deadline = timeout_ms >= 0 ? mono_ms() + timeout_ms : -1;
    *msg = NULL;
    for (;;) {
        int rc = client_read(self, msg);
        if (rc == READ_MESSAGE) {
            self->received++;
            return NW_RECV_MESSAGE;
        }
        if (rc == READ_BAD) {
            self->bad++;
            return NW_RECV_BAD;
        }
        if (rc == READ_ERROR)
            return NW_RECV_ERROR;
        if (rc == READ_SKIP)
            continue;
        long wait = -1;
        if (deadline >= 0) {
            wait = (long) (deadline - mono_ms());
            if (wait <= 0)
                return NW_RECV_TIMEOUT;
        }
        zmq_pollitem_t item = { .socket = self->sock, .events = ZMQ_POLLIN };
        int n = zmq_poll(&item, 1, wait);
        if (n < 0) {
            client_set_error(self, "%s", zmq_errno() == EINTR ? "interrupted"
                                                              : zmq_strerror(zmq_errno()));
            return NW_RECV_ERROR;
        }
        if (n == 0 && deadline >= 0 && mono_ms() >= deadline)
            return NW_RECV_TIMEOUT;
    }
}

const char *nw_client_error(const nw_client_t *self)
{
    return self->error;
}

uint64_t nw_client_received(const nw_client_t *self) { return self->received; }
uint64_t nw_client_bad(const nw_client_t *self) { return self->bad; }
uint64_t nw_client_gaps(const nw_client_t *self) { return self->gaps; }
uint64_t nw_client_duplicates(const nw_client_t *self) { return self->duplicates; }

const char *nw_message_topic(const nw_message_t *self) { return self->decoded->env.topic; }
uint64_t nw_message_seq(const nw_message_t *self) { return self->decoded->env.seq; }
const char *nw_message_epoch(const nw_message_t *self) { return self->decoded->env.epoch; }
const char *nw_message_id(const nw_message_t *self) { return self->decoded->env.id; }
const char *nw_message_sent(const nw_message_t *self) { return self->decoded->env.sent; }
const char *nw_message_source_file(const nw_message_t *self) { return self->decoded->env.source_file; }
const char *nw_message_source_format(const nw_message_t *self) { return self->decoded->env.source_format; }
const char *nw_message_uri(const nw_message_t *self) { return self->decoded->article.uri; }
const char *nw_message_type(const nw_message_t *self) { return self->decoded->article.type; }
const char *nw_message_headline(const nw_message_t *self) { return self->decoded->article.headline; }
const char *nw_message_byline(const nw_message_t *self) { return self->decoded->article.byline; }
const char *nw_message_description(const nw_message_t *self) { return self->decoded->article.description_text; }
const char *nw_message_body(const nw_message_t *self) { return self->decoded->article.body_text; }
const char *nw_message_language(const nw_message_t *self) { return self->decoded->article.language; }
const char *nw_message_versioncreated(const nw_message_t *self) { return self->decoded->article.versioncreated; }
size_t nw_message_subject_count(const nw_message_t *self) { return self->decoded->article.subject_count; }

const char *nw_message_subject(const nw_message_t *self, size_t index)
{
    if (index >= self->decoded->article.subject_count)
        return NULL;
    return self->decoded->article.subjects[index];
}

uint64_t nw_message_gap_before(const nw_message_t *self) { return self->gap_before; }
int nw_message_epoch_changed(const nw_message_t *self) { return self->epoch_changed; }

void nw_message_destroy(nw_message_t **self_p)
{
    nw_message_t *self = self_p ? *self_p : NULL;
    if (!self)
        return;
    nw_codec_message_destroy(&self->decoded);
    free(self);
    *self_p = NULL;
}
