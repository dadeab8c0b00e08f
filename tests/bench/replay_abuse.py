"""Benchmark (not a test): the daemon's peak RSS and descriptor count while abusive replay
clients run (the scenario of tests/e2e/test_replay_abuse.py, without its limits), so the
figures can be compared between builds, e.g. before and after a change:

    NW_BIN=build/bin PYTHONPATH=tests/e2e /usr/bin/python3 tests/bench/replay_abuse.py

Journal: 120 articles of ~24 KiB on one topic. Clients (raw DEALERs; "not reading": a
receive HWM of 1 and a 4 KiB socket buffer): 12 stalled (take one reply, then never
again), 12 never reading, 8 granting 51,000 credit and reading one reply a round, and
6 rounds of 16 churning ones (ask, take one reply, leave), the live feed published to
alongside; then 32 never-reading ones asking for everything. RSS from /proc/PID/status,
descriptors from /proc/PID/fd, sampled at every probe (about every 10 ms).
With --cursors: 40 streams granted one message, waiting for more, over a journal of
64 KiB segments: the descriptors they hold.
"""
import os, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'e2e'))

import test_replay_abuse as T   # noqa: E402

MIB = 1 << 20


def settle(watch, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        watch.sample()
        time.sleep(0.01)


def cursors():
    """40 streams granted one message over a journal of 64 KiB segments, never more."""
    d = T.started(['--segment-size', '65536']).start()
    try:
        live = T.LiveSub(d)
        T.publish(d, live, 80, 8 * 1024, 'a')
        segs = len([f for f in os.listdir(os.path.join(d.state, 'journal')) if f.endswith('.nwj')])
        watch = T.Watch(d)
        clients = [T.Dealer(d) for _ in range(40)]
        for c in clients:
            c.send(type='replay', topic=T.TOPIC, **{'from': 1}, credit=1)
        for c in clients:
            c.recv()
        settle(watch, 2)
        print('%d segments, 40 waiting streams: baseline %d fds, peak %d fds'
              % (segs, watch.fds0, watch.fds_peak))
        for c in clients:
            c.close()
        d.stop()
    finally:
        d.cleanup()


def main():
    if '--cursors' in sys.argv:
        return cursors()
    d = T.started().start()
    try:
        live = T.LiveSub(d)
        T.publish(d, live, 120, 24 * 1024, 'a')
        watch = T.Watch(d)
        stalled = [T.Dealer(d, reads=False) for _ in range(12)]
        for c in stalled:
            c.send(type='replay', topic=T.TOPIC, **{'from': 1}, credit=1000)
        for c in stalled:
            c.recv()
        silent = [T.Dealer(d, reads=False) for _ in range(12)]
        for c in silent:
            c.send(type='replay', topic=T.TOPIC, **{'from': 1}, credit=1000)
        greedy = [T.Dealer(d, reads=False) for _ in range(8)]
        for c in greedy:
            c.send(type='replay', topic=T.TOPIC, **{'from': 1}, credit=1000)
            for _ in range(50):
                c.send(type='credit', credit=1000)
        for r in range(6):
            churn = [T.Dealer(d) for _ in range(16)]
            for c in churn:
                c.send(type='replay', topic=T.TOPIC, **{'from': 1}, credit=1000)
            for c in churn:
                c.recv()
                c.close()
            for c in greedy:
                if c.sock.poll(0):
                    c.sock.recv_multipart()
            T.publish(d, live, 3, 2048, 'l%d' % r, also=watch.sample)
        more = [T.Dealer(d, reads=False) for _ in range(32)]
        for c in more:
            c.send(type='replay', topic=T.TOPIC, **{'from': 1}, credit=1000)
        settle(watch, 3)
        for c in stalled + silent + greedy + more:
            c.close()
        settle(watch, 5)
        r, f = T.rss(d.proc.pid), T.fds(d.proc.pid)
        print('baseline RSS %.1f MiB, %d fds; peak under abuse RSS %.1f MiB, %d fds; '
              '5 s after the clients left RSS %.1f MiB, %d fds'
              % (watch.rss0 / MIB, watch.fds0, watch.rss_peak / MIB, watch.fds_peak,
                 r / MIB, f))
        d.stop()
    finally:
        d.cleanup()


if __name__ == '__main__':
    main()
