/*
 * fanout_subs: many subscribers in one process, for run-fanout.
 *
 *   fanout_subs --n N --out FILE [--timeout S] [--idle S] ENDPOINT*COUNT...
 *
 * Opens COUNT SUB sockets on each ENDPOINT (one TCP connection each, subscribed to
 * everything, RCVHWM 0 as ../shared/bench/drive.py's receiver), and reads them all with
 * one epoll. A message counts for token i when any of its frames holds drive.py's
 * 'bench-NNNNNNN'; the first arrival of each token on each socket is stamped with
 * CLOCK_MONOTONIC, the clock Python's time.monotonic() reads, so run-fanout subtracts
 * the time it renamed the file into the drop folder on the same host and clock.
 *
 * Talks to run-fanout on stdout, one line each: "connected" once every socket is
 * connected and subscribed (asked: the XPUB may not have it yet), "probed" once every
 * socket has received a probe (a token >= 9000000, which drive.py's probes use), which
 * is when every path is known to carry the feed; at the end one JSON line with the
 * totals (and the first 20 articles missing anywhere, each with the number of sockets
 * that missed it). FILE gets the stamps: sockets x N doubles (seconds; 0 where never received),
 * socket by socket in the order of the arguments.
 *
 * Ends when every socket has every token below N, after --timeout seconds in all
 * (default 300), or after --idle seconds (default 20) without a message once the first
 * token below N arrived.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define PROBE_BASE 9000000L

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* The token in a frame, or -1. */
static long token_of(const void *data, size_t len)
{
    const char *p = data, *end = p + len;
    while ((p = memmem(p, (size_t) (end - p), "bench-", 6)) != NULL) {
        p += 6;
        if (end - p < 7)
            return -1;
        long v = 0;
        int i;
        for (i = 0; i < 7 && p[i] >= '0' && p[i] <= '9'; i++)
            v = v * 10 + (p[i] - '0');
        if (i == 7)
            return v;
    }
    return -1;
}

typedef struct {
    void **sock;
    size_t subs;
    long n;
    double *stamp; /* subs x n first arrivals */
    long *count;   /* tokens below n seen, per socket */
    char *probed;
    size_t nprobed, complete; /* sockets probed, sockets with every token */
    long long received, dups, others;
    double last; /* the latest arrival of a token below n */
    zmq_msg_t msg;
} receiver_t;

/* Everything socket s holds now, each message stamped as it is taken. */
static void drain(receiver_t *r, size_t s)
{
    for (;;) {
        long tok = -1;
        int more = 1, got = 0;
        while (more) { /* a multipart message is all there once its first frame is */
            if (zmq_msg_recv(&r->msg, r->sock[s], ZMQ_DONTWAIT) < 0)
                break;
            got = 1;
            if (tok < 0)
                tok = token_of(zmq_msg_data(&r->msg), zmq_msg_size(&r->msg));
            more = zmq_msg_more(&r->msg);
        }
        if (!got)
            return;
        double at = now_s();
        r->received++;
        if (tok >= PROBE_BASE) {
            if (!r->probed[s]) {
                r->probed[s] = 1;
                if (++r->nprobed == r->subs) {
                    printf("probed\n");
                    fflush(stdout);
                }
            }
        } else if (tok >= 0 && tok < r->n) {
            r->last = at;
            double *slot = &r->stamp[s * (size_t) r->n + (size_t) tok];
            if (*slot != 0) {
                r->dups++;
            } else {
                *slot = at;
                if (++r->count[s] == r->n)
                    r->complete++;
            }
        } else {
            r->others++;
        }
    }
}

int main(int argc, char **argv)
{
    long n = -1;
    double timeout = 300, idle = 20;
    const char *out = NULL;
    int first = 1;
    for (; first < argc && strncmp(argv[first], "--", 2) == 0; first += 2) {
        if (first + 1 >= argc)
            goto usage;
        if (strcmp(argv[first], "--n") == 0)
            n = atol(argv[first + 1]);
        else if (strcmp(argv[first], "--out") == 0)
            out = argv[first + 1];
        else if (strcmp(argv[first], "--timeout") == 0)
            timeout = atof(argv[first + 1]);
        else if (strcmp(argv[first], "--idle") == 0)
            idle = atof(argv[first + 1]);
        else
            goto usage;
    }
    if (n < 0 || n >= PROBE_BASE || !out || first >= argc)
        goto usage;

    size_t subs = 0;
    for (int a = first; a < argc; a++) {
        char *star = strrchr(argv[a], '*');
        if (!star || atol(star + 1) <= 0)
            goto usage;
        subs += (size_t) atol(star + 1);
    }
    void *ctx = zmq_ctx_new();
    void **sock = calloc(subs, sizeof *sock);
    double *stamp = calloc(subs * (size_t) (n ? n : 1), sizeof *stamp);
    long *count = calloc(subs, sizeof *count);
    char *probed = calloc(subs, 1);
    if (!ctx || !sock || !stamp || !count || !probed) {
        fprintf(stderr, "fanout_subs: out of memory\n");
        return 1;
    }
    zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, (int) subs + 64);
    size_t k = 0;
    for (int a = first; a < argc; a++) {
        char *star = strrchr(argv[a], '*');
        long c = atol(star + 1);
        *star = '\0';
        for (long j = 0; j < c; j++, k++) {
            int zero = 0;
            sock[k] = zmq_socket(ctx, ZMQ_SUB);
            if (!sock[k] || zmq_setsockopt(sock[k], ZMQ_RCVHWM, &zero, sizeof zero) ||
                zmq_setsockopt(sock[k], ZMQ_LINGER, &zero, sizeof zero) ||
                zmq_setsockopt(sock[k], ZMQ_SUBSCRIBE, "", 0) || zmq_connect(sock[k], argv[a])) {
                fprintf(stderr, "fanout_subs: socket %zu on %s: %s\n", k, argv[a],
                        zmq_strerror(zmq_errno()));
                return 1;
            }
        }
    }
    printf("connected\n");
    fflush(stdout);

    /* One epoll over the sockets' ZMQ_FDs rather than zmq_poll: zmq_poll walks every
     * socket on every wake, and with 200 of them the receiver would cost more than what
     * it measures. A ZMQ_FD signals a change, not a level: a socket is drained until
     * EAGAIN each time it is reported, and all are swept once a second in case one was
     * left with a message its descriptor did not announce. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        fprintf(stderr, "fanout_subs: epoll_create1: %s\n", strerror(errno));
        return 1;
    }
    for (size_t s = 0; s < subs; s++) {
        int fd;
        size_t fdlen = sizeof fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = s};
        if (zmq_getsockopt(sock[s], ZMQ_FD, &fd, &fdlen) ||
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) {
            fprintf(stderr, "fanout_subs: socket %zu: %s\n", s, strerror(errno));
            return 1;
        }
    }
    receiver_t r = {
        .sock = sock, .subs = subs, .n = n, .stamp = stamp, .count = count, .probed = probed};
    zmq_msg_init(&r.msg);
    double start = now_s(), swept = start;
    struct epoll_event evs[256];
    while (r.complete < subs) {
        double t = now_s();
        if (t - start > timeout || (r.last > 0 && t - r.last > idle))
            break;
        int nev = epoll_wait(ep, evs, 256, 200);
        if (nev < 0 && errno != EINTR) {
            fprintf(stderr, "fanout_subs: epoll_wait: %s\n", strerror(errno));
            return 1;
        }
        for (int e = 0; e < nev; e++)
            drain(&r, (size_t) evs[e].data.u64);
        if (now_s() - swept >= 1.0 || nev == 0) {
            for (size_t s = 0; s < subs; s++)
                drain(&r, s);
            swept = now_s();
        }
    }
    close(ep);
    zmq_msg_close(&r.msg);

    FILE *f = fopen(out, "wb");
    if (!f || fwrite(stamp, sizeof *stamp, subs * (size_t) n, f) != subs * (size_t) n ||
        fclose(f) != 0) {
        fprintf(stderr, "fanout_subs: %s: %s\n", out, strerror(errno));
        return 1;
    }
    long long delivered = 0;
    long least = n;
    for (size_t s = 0; s < subs; s++) {
        delivered += count[s];
        if (count[s] < least)
            least = count[s];
    }
    /* Which articles are missing, and on how many sockets: one article missing
     * everywhere is another fault than one socket missing many. */
    printf(
        "{\"sockets\": %zu, \"n\": %ld, \"delivered\": %lld, \"expected\": %lld, \"least\": %ld, "
        "\"complete\": %zu, \"probed\": %zu, \"duplicates\": %lld, \"other\": %lld, "
        "\"messages\": %lld, "
        "\"missing\": {",
        subs, n, delivered, (long long) subs * n, least, r.complete, r.nprobed, r.dups, r.others,
        r.received);
    int shown = 0;
    for (long i = 0; i < n && shown < 20; i++) {
        size_t on = 0;
        for (size_t s = 0; s < subs; s++)
            on += stamp[s * (size_t) n + (size_t) i] == 0;
        if (on)
            printf("%s\"%ld\": %zu", shown++ ? ", " : "", i, on);
    }
    printf("}}\n");
    fflush(stdout);
    for (size_t s = 0; s < subs; s++)
        zmq_close(sock[s]);
    zmq_ctx_term(ctx);
    free(sock), free(stamp), free(count), free(probed);
    return 0;
usage:
    fprintf(stderr,
            "usage: fanout_subs --n N --out FILE [--timeout S] [--idle S] ENDPOINT*COUNT...\n");
    return 2;
}
