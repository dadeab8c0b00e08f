"""Benchmark (not a test): with CURVE grants, a key granted two topics subscribes to
everything and to 6000 distinct prefixes, leaves without unsubscribing, and again, for 6
rounds beside one steady subscriber. Prints the daemon's RSS and the STATUS= subscription
count after each round (the count should be 1, the steady one):

    NW_BIN=build/bin PYTHONPATH=tests/e2e /usr/bin/python3 tests/bench/subscription_churn.py

A round ends when STATUS= has shown every subscription of the round, then the connection
closes and the count is read once it has stopped changing for 2 s.
"""
import os, shutil, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'e2e'))

import zmq   # noqa: E402

import test_security                                   # noqa: E402
import test_subscription_accounting as T               # noqa: E402
from nwtest import Daemon, raw_prefix                  # noqa: E402

PREFIXES, ROUNDS = 6000, 6


def main():
    root = tempfile.mkdtemp(prefix='nw-bench-keys-')
    keys = test_security.Keys(root)
    alice = keys.client('alice', topics='telecoms, sport')
    d = Daemon(args=['--no-sync'] + keys.args())
    d.endpoint = 'tcp://127.0.0.1:%d' % test_security.free_port()
    d.start()
    try:
        steady = T.curve_sub(d, keys, alice)
        steady.setsockopt(zmq.SUBSCRIBE, raw_prefix('telecoms'))
        T.wait_subscriptions(d, 1, 0, 'the steady subscription')
        base = T.rss(d.proc.pid)
        for r in range(ROUNDS):
            since = len(d.notes)
            churn = T.curve_sub(d, keys, alice)
            churn.setsockopt(zmq.SUBSCRIBE, b'')
            for i in range(PREFIXES):
                churn.setsockopt(zmq.SUBSCRIBE, raw_prefix('telecoms.r%d-p%d' % (r, i)))
            end = time.monotonic() + 60
            while time.monotonic() < end and max(T.subscriptions(d, since) or [0]) < PREFIXES + 1:
                time.sleep(0.05)
            churn.close(0)
            last, stable = None, time.monotonic()
            while time.monotonic() - stable < 2:
                now = (T.subscriptions(d) or [None])[-1]
                if now != last:
                    last, stable = now, time.monotonic()
                time.sleep(0.05)
            print('round %d: RSS %.1f MiB (baseline %.1f), STATUS= subscriptions %s'
                  % (r + 1, T.rss(d.proc.pid) / 2**20, base / 2**20, last), flush=True)
        steady.close(0)
        d.stop()
    finally:
        d.cleanup()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    main()
