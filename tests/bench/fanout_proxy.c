/*
 * fanout_proxy UPSTREAM BIND [HWM]: the least a relay can do, for run-fanout to hold
 * newswired --upstream against. An XSUB connected to UPSTREAM (a newswired's --publish),
 * an XPUB bound on BIND, and zmq_proxy between them: subscriptions go up, messages come
 * down, nothing is journaled, nothing is checked, no gap is filled, no replay is served.
 *
 * Both sockets queue HWM messages (default 10000, newswired's --send-hwm default, which
 * is also what a relay's SUB queues), so the queues are the relay's own. Runs until a
 * signal ends the process (run-fanout stops it with SIGTERM through cpu-of).
 */
#include <stdio.h>
#include <stdlib.h>
#include <zmq.h>

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: fanout_proxy UPSTREAM BIND [HWM]\n");
        return 2;
    }
    int hwm = argc == 4 ? atoi(argv[3]) : 10000;
    void *ctx = zmq_ctx_new();
    void *xsub = zmq_socket(ctx, ZMQ_XSUB), *xpub = zmq_socket(ctx, ZMQ_XPUB);
    if (!ctx || !xsub || !xpub)
        goto fail;
    if (zmq_setsockopt(xsub, ZMQ_RCVHWM, &hwm, sizeof hwm) ||
        zmq_setsockopt(xpub, ZMQ_SNDHWM, &hwm, sizeof hwm))
        goto fail;
    if (zmq_connect(xsub, argv[1]) || zmq_bind(xpub, argv[2]))
        goto fail;
    fprintf(stderr, "fanout_proxy: %s -> %s\n", argv[1], argv[2]);
    zmq_proxy(xsub, xpub, NULL); /* returns only when the context is terminated */
fail:
    fprintf(stderr, "fanout_proxy: %s\n", zmq_strerror(zmq_errno()));
    return 1;
}
