"""Benchmark (not a test): what a relay's probes cost its upstream, in replay streams.

A relay asks its upstream's replay, topic by topic and one stream at a time, for anything
past what it holds: at every connection, and after half a second of quiet following live
traffic (so that the end of a burst the upstream's XPUB dropped for it is fetched too).
A probe that finds nothing newer is answered at once with $end, without reading the
journal (proto 8.3), but each is a round trip, and a round asks every topic the relay
has seen, whatever topic the traffic was on. This counts them from the relay's metrics
(newswired_upstream_replays_total):

    NW_BIN=build/bin PYTHONPATH=tests/e2e /usr/bin/python3 tests/bench/relay_probes.py [TOPICS]

An origin and a relay on ipc://; one article on each of TOPICS topics (default 200), then
one article on one topic; after each, the streams asked once the counter is still for
1.5 s.
"""
import os, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'e2e'))

from nwtest import header_article, wait_for             # noqa: E402
from test_relay import origin, relay, scrape, wait_forwarded   # noqa: E402


def replays(r):
    return int(scrape(r)['newswired_upstream_replays_total'])


def still(r):
    v = replays(r)
    time.sleep(1.5)
    return replays(r) == v


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    o = origin().start()
    r = relay(o, ['--metrics', 'tcp://127.0.0.1:0']).start()
    try:
        r.wait_log('metrics on ')
        r.wait_log('upstream: connected')
        o.wait_log(" subscribe ''")
        at_start = replays(r)
        for i in range(n):
            o.drop_text('t%05d.txt' % i, header_article('Story %d' % i, Subject='topic%05d' % i))
        wait_forwarded(r, n)
        wait_for(lambda: still(r), 'the probes over', 120)
        burst = replays(r)
        o.drop_text('again.txt', header_article('Again', Subject='topic00000'))
        wait_forwarded(r, n + 1)
        wait_for(lambda: still(r), 'the probes over', 120)
        one = replays(r)
        print('topics %d: replay streams at the connection %d; after one article on each '
              'topic %d; after one more article on one topic %d more' %
              (n, at_start, burst - at_start, one - burst))
    finally:
        r.cleanup()
        o.cleanup()


if __name__ == '__main__':
    main()
