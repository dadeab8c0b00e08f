"""End to end (issue 11, item 5): with CURVE grants (ZMQ_XPUB_MANUAL) the daemon's record of
what it applied follows the subscriber connections, not only their unsubscriptions.

A key granted two topics connects, subscribes to everything (narrowed to its two grants)
and to thousands of distinct prefixes under one grant, then disconnects without
unsubscribing; again and again. Before, every round left its entries behind (memory grew
by the round) and STATUS= counted subscriptions that no longer existed; now the count in
STATUS= comes back to what is live (one steady subscriber's one subscription) after every
round, and the daemon's RSS stops growing. Waits are on STATUS= and received messages.
RSS is checked only in the normal build (ASan keeps freed memory in quarantine).
"""
import os, re, time

import msgpack
import zmq

from nwtest import DEADLINE, Daemon, check, frame0, header_article, raw_prefix, run, wait_for
from test_security import Keys, secure

SANITIZED = os.environ.get('NW_SANITIZE') == 'ON'
SUBS = re.compile(r'(\d+) published, .* (-?\d+) subscriptions')
PREFIXES = 6000
ROUNDS = 4


def subscriptions(d, since=0):
    """The subscription counts of the STATUS= lines after notes[since], oldest first."""
    d.read_notify()
    out = []
    for n in d.notes[since:]:
        m = SUBS.search(n) if n.startswith('STATUS=') else None
        if m:
            out.append(int(m.group(2)))
    return out


def wait_subscriptions(d, want, since, what):
    def seen():
        if d.proc.poll() is not None:
            raise AssertionError('newswired exited:\n' + d.log()[-3000:])
        return want in subscriptions(d, since)
    try:
        wait_for(seen, what, timeout=DEADLINE * 2)
    except AssertionError:
        raise AssertionError('%s: STATUS= showed %r' % (what, subscriptions(d, since)[-5:]))


def rss(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    return 0


def curve_sub(d, keys, pair):
    s = zmq.Context.instance().socket(zmq.SUB)
    s.linger = 0
    s.setsockopt(zmq.RCVHWM, 0)
    s.setsockopt(zmq.SNDHWM, 0)      # a SUB drops subscriptions beyond its send HWM
    secure(s, keys, pair)
    s.connect(d.endpoint)
    return s


def test_entries_follow_connections():
    root = None
    keys_root = __import__('tempfile').mkdtemp(prefix='nw-e2e-keys-')
    keys = Keys(keys_root)
    alice = keys.client('alice', topics='telecoms, sport')
    d = Daemon(args=['--no-sync'] + keys.args())
    d.endpoint = 'tcp://127.0.0.1:%d' % __import__('test_security').free_port()
    d.start()
    try:
        # the steady subscriber: one live subscription all along
        steady = curve_sub(d, keys, alice)
        steady.setsockopt(zmq.SUBSCRIBE, raw_prefix('telecoms'))
        wait_subscriptions(d, 1, 0, 'the steady subscription counted')
        peaks = []
        for r in range(ROUNDS):
            since = len(d.notes)
            churn = curve_sub(d, keys, alice)
            churn.setsockopt(zmq.SUBSCRIBE, b'')                     # -> telecoms., sport.
            for i in range(PREFIXES):
                churn.setsockopt(zmq.SUBSCRIBE, raw_prefix('telecoms.r%d-p%d' % (r, i)))
            # live: the steady one, the two grants and every prefix
            wait_subscriptions(d, 1 + 2 + PREFIXES, since,
                               'round %d: all %d subscriptions applied' % (r, 3 + PREFIXES))
            since = len(d.notes)
            churn.close(0)       # gone without unsubscribing
            wait_subscriptions(d, 1, since, 'round %d: back to the 1 live subscription' % r)
            peaks.append(rss(d.proc.pid))
        # the steady subscriber still gets its topic, and only it
        d.drop_text('x.txt', header_article('Masts shared in the valley', Subject='Telecoms'))
        check(steady.poll(int(DEADLINE * 1000)), 'the steady subscriber receives')
        f = steady.recv_multipart()
        check(f[0] == frame0('telecoms'), 'on its topic: %r' % f[0])
        print('RSS after each round: %s MiB' % ', '.join('%.1f' % (p / 2**20) for p in peaks),
              flush=True)
        if not SANITIZED:
            grown = peaks[-1] - peaks[0]
            check(grown < 2 * 2**20, 'RSS grows %.1f MiB over %d rounds of %d prefixes'
                  % (grown / 2**20, ROUNDS - 1, PREFIXES))
        steady.close(0)
        rc, _ = d.stop()
        check(rc == 0, 'clean exit')
    finally:
        d.cleanup()
        __import__('shutil').rmtree(keys_root, ignore_errors=True)


if __name__ == '__main__':
    run([test_entries_follow_connections])
