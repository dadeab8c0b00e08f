"""End to end for dual feeds (issue 14): two origins fed the same files (two newswired with
separate state folders, each article dropped into both) and a subscriber on both paths,
newswire-sub --connect A --replay RA --connect B --replay RB.

(a) every article exactly once, for newswire-sub and the Python sample alike (by id; the two origins have different epochs and seqs),
    while origin A is killed -9 mid-burst, B carries on, A is restarted on its state and
    then B is killed -9 mid-burst: nothing lost, nothing doubled;
(b) the same run with the dedup by id turned off (--dedup-window 0): duplicates appear,
    so (a) would fail without arbitration;
(c) two relays of one origin, across hosts: the origin, relay A, relay B and the
    subscribers each in a network namespace of their own (tests/e2e/netns.py, addresses in
    198.18.0.0/15; skipped where namespaces are refused), the origin and both relays on
    one segment, both relays and the subscribers on another. newswire-sub (by id, and
    with --dedup-window 0: by (epoch, topic, seq) alone) and the Python sample on
    --connect A --connect B; relay A killed -9 mid-burst, restarted on its state, then
    relay B killed -9 mid-burst: every article exactly once, per topic in seq order, with
    the origin's epoch and seq (read back from the origin's own replay).

Waits are on events: the daemons' log lines (subscriptions, publications, readiness) and
the lines the subscriber prints, never on sleeps.
"""
import json, os, subprocess, sys, threading

import msgpack
import zmq

import netns
from nwtest import BIN, DEADLINE, Daemon, check, header_article, run, wait_for

TOPIC = 'dualfeed'
SOURCE = os.environ.get('NW_SOURCE', os.path.join(os.path.dirname(__file__), '..', '..'))
PY_SUB = os.path.join(SOURCE, 'clients', 'python', 'newswire_sub.py')
BURST = 30


def start_origin(d=None):
    if d is None:
        d = Daemon()
        d.replay = 'ipc://' + os.path.join(d.root, 'replay.sock')
        d.args += ['--replay', d.replay]
    return d.start()


def drop_burst(origins, first, n):
    """The same files into every origin named: same names, same bytes, so the same ids."""
    for i in range(first, first + n):
        text = header_article('Dual feed story %d' % i,
                              body='First paragraph of dual feed story %d.\n\nMore.' % i,
                              Subject=TOPIC)
        for d in origins:
            d.drop_text('d%04d.txt' % i, text)


class Sub:
    """newswire-sub on both paths; its JSON lines are collected as they come."""

    def __init__(self, a, b, extra=(), python=False, wrap=(), topics=(TOPIC,)):
        self.lines = []
        self.lock = threading.Lock()
        prog = [sys.executable, PY_SUB] if python else [os.path.join(BIN, 'newswire-sub')]
        self.proc = subprocess.Popen(
            list(wrap) + prog + ['--connect', a.endpoint, '--replay', a.replay,
             '--connect', b.endpoint, '--replay', b.replay, '--timeout', '300'] + list(extra)
            + list(topics), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()
        self.errs = []
        self.err_reader = threading.Thread(target=self.read_err, daemon=True)
        self.err_reader.start()

    def read(self):
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(json.loads(line))

    def read_err(self):
        for line in self.proc.stderr:
            self.errs.append(line)

    def got(self):
        with self.lock:
            return list(self.lines)

    def wait(self, n, what):
        wait_for(lambda: len(self.got()) >= n or self.proc.poll() is not None,
                 '%s: %d lines' % (what, n), timeout=180)
        check(len(self.got()) >= n, '%s: %d lines, want %d; stderr: %s' % (
            what, len(self.got()), n, ''.join(self.errs)[-2000:]))

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(30)
        self.reader.join(30)


def subscribed(d, before):
    d.wait_log(" subscribe '", count=before + 1)


def check_once(lines, n, who):
    ids = [l['id'] for l in lines]
    heads = sorted(int(l['article']['headline'].rsplit(' ', 1)[1]) for l in lines)
    check(len(ids) == len(set(ids)), '%s: %d lines for %d ids' % (who, len(ids), len(set(ids))))
    check(heads == list(range(1, n + 1)), '%s: stories 1..%d once each, got %d: missing %r' % (
        who, n, len(heads), sorted(set(range(1, n + 1)) - set(heads))[:10]))


def test_two_origins_either_killed():
    a, b = start_origin(), start_origin()
    sub = py = None
    try:
        sa, sb = a.log().count(" subscribe '"), b.log().count(" subscribe '")
        sub = Sub(a, b)
        subscribed(a, sa)
        subscribed(b, sb)
        py = Sub(a, b, python=True)
        subscribed(a, sa + 1)
        subscribed(b, sb + 1)
        # Both up.
        drop_burst([a, b], 1, BURST)
        sub.wait(BURST, 'both origins up')
        py.wait(BURST, 'python: both origins up')
        # A killed -9 mid-burst: what it had not sent, B sends.
        pa = a.log().count(' published d')
        drop_burst([a, b], BURST + 1, BURST)
        a.wait_log(' published d', count=pa + 5, timeout=120)
        a.kill()
        sub.wait(2 * BURST, 'origin A killed')
        py.wait(2 * BURST, 'python: origin A killed')
        # A back on its state folder (its unpublished files wait in its drop folder),
        # then B killed -9 mid-burst: A carries it.
        start_origin(a)
        subscribed(a, 1)                 # both subscribers back
        pb = b.log().count(' published d')
        drop_burst([a, b], 2 * BURST + 1, BURST)
        b.wait_log(' published d', count=pb + 5, timeout=120)
        b.kill()
        sub.wait(3 * BURST, 'origin B killed')
        py.wait(3 * BURST, 'python: origin B killed')
        # A sentinel after everything: once it is there, any duplicate would be too.
        drop_burst([a], 3 * BURST + 1, 1)
        sub.wait(3 * BURST + 1, 'the sentinel')
        py.wait(3 * BURST + 1, 'python: the sentinel')
        sub.close()
        py.close()
        check_once(sub.got(), 3 * BURST + 1, 'dual-feed newswire-sub')
        check_once(py.got(), 3 * BURST + 1, 'dual-feed newswire_sub.py')
        epochs = {l['epoch'] for l in sub.got()}
        check(len(epochs) >= 2, 'articles came over both origins: epochs %r' % epochs)
    finally:
        for s in (sub, py):
            if s:
                s.close()
        a.cleanup()
        b.cleanup()


def test_without_dedup_by_id_duplicates_appear():
    """The check of (a) fails without arbitration by id: two origins' epochs differ, so
    (epoch, topic, seq) alone lets each article through once per origin."""
    a, b = start_origin(), start_origin()
    sub = None
    try:
        sa, sb = a.log().count(" subscribe '"), b.log().count(" subscribe '")
        sub = Sub(a, b, ['--dedup-window', '0'])
        subscribed(a, sa)
        subscribed(b, sb)
        drop_burst([a, b], 1, BURST)
        # Only BURST distinct articles exist: one line more is a duplicate.
        sub.wait(BURST + 1, 'without dedup by id')
        sub.close()
        lines = sub.got()
        ids = [l['id'] for l in lines]
        check(len(ids) > len(set(ids)), 'duplicates without --dedup-window: %d lines, %d ids'
              % (len(ids), len(set(ids))))
    finally:
        if sub:
            sub.close()
        a.cleanup()
        b.cleanup()


RELAY_TOPICS = ('dualfeed', 'dualfeed.second')
LIVE, REPLAY = 5556, 5557


def tcp_daemon(host, addr, extra=()):
    d = Daemon(wrap=host.wrap(), endpoint='tcp://%s:%d' % (addr, LIVE),
               args=['--insecure', '--replay', 'tcp://%s:%d' % (addr, REPLAY)] + list(extra))
    d.replay = 'tcp://%s:%d' % (addr, REPLAY)
    return d


def drop_topics(o, first, n):
    """n articles into the origin, alternating between the two topics."""
    for i in range(first, first + n):
        o.drop_text('r%04d.txt' % i, header_article(
            'Relay story %d' % i, body='First paragraph of relay story %d.\n\nMore.' % i,
            Subject=RELAY_TOPICS[i % 2]))


def origin_history(endpoint, topic):
    """(epoch, seq) of every article id on topic, from the origin's own replay."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    sock.send(msgpack.packb({'v': 1, 'type': 'replay', 'topic': topic, 'from': 1,
                             'credit': 1000}))
    out = {}
    try:
        while True:
            check(sock.poll(int(DEADLINE * 1000)), 'a replay reply from the origin')
            f = sock.recv_multipart()
            check(f[0] != b'$error', 'origin replay error: %r' % f)
            if f[0] == b'$end':
                return out
            m = msgpack.unpackb(f[1], raw=False)
            out[m['id']] = (m['epoch'], m['seq'])
    finally:
        sock.close(0)


def check_relayed(lines, n, truth, who):
    """Exactly once, per topic in seq order, epoch and seq as the origin's."""
    ids = [l['id'] for l in lines]
    check(len(ids) == len(set(ids)), '%s: %d lines for %d ids' % (who, len(ids), len(set(ids))))
    check(len(ids) == n and set(ids) == set(truth), '%s: %d articles, the origin has %d; '
          'missing %r' % (who, len(ids), len(truth), sorted(set(truth) - set(ids))[:5]))
    for l in lines:
        check((l['epoch'], l['seq']) == truth[l['id']], '%s: %s came as (%s, %d), the origin '
              'sent (%s, %d)' % ((who, l['id'], l['epoch'], l['seq']) + truth[l['id']]))
    for topic in RELAY_TOPICS:
        keys = [(l['epoch'], l['seq']) for l in lines if l['topic'] == topic]
        check(keys == sorted(keys), '%s: %s out of (epoch, seq) order: %r' % (who, topic, keys))


def test_two_relays_either_killed_across_hosts():
    """Dual feeds over two relays of one origin, each on a host of its own."""
    net = netns.Net()
    o = ra = rb = None
    subs = []
    try:
        o_h, ra_h, rb_h, s_h = (net.host(r) for r in ('origin', 'relaya', 'relayb', 'subs'))
        net.segment(o_h, ra_h, rb_h)             # the backbone: 198.18.K.1, .2, .3
        net.segment(ra_h, rb_h, s_h)             # the site: relays .1, .2, subscribers .3
        # The origin also serves replay on ipc://, read from here at the end for the truth.
        o = tcp_daemon(o_h, o_h.addrs[0])
        o_ipc = 'ipc://' + os.path.join(o.root, 'replay.sock')
        o.args += ['--replay', o_ipc]
        o.start()
        up = ['--upstream', o.endpoint, '--upstream-replay', o.replay]
        ra = tcp_daemon(ra_h, ra_h.addrs[1], up).start()
        rb = tcp_daemon(rb_h, rb_h.addrs[1], up).start()
        for r in (ra, rb):
            r.wait_log('upstream: connected')
        o.wait_log(" subscribe ''", count=2)
        subs = [Sub(ra, rb, wrap=s_h.wrap(), topics=('dualfeed',)),
                Sub(ra, rb, ['--dedup-window', '0'], wrap=s_h.wrap(), topics=('dualfeed',)),
                Sub(ra, rb, python=True, wrap=s_h.wrap(), topics=('dualfeed',))]
        # each subscriber's one subscription, dualfeed (with dualfeed.second below it)
        for r in (ra, rb):
            r.wait_log(" subscribe 'dualfeed.'", count=len(subs))
        names = ('newswire-sub', 'newswire-sub --dedup-window 0', 'newswire_sub.py')

        def wait_all(n, what):
            for s, name in zip(subs, names):
                s.wait(n, '%s: %s' % (name, what))

        def upto(n):
            return len(min((s.got() for s in subs), key=len)) >= n

        drop_topics(o, 1, 40)
        wait_all(40, 'both relays up')
        # Relay A killed -9 in the middle of a burst (80 dropped, killed once 10 of them
        # reached every subscriber, 40 more dropped after): the burst goes on through B.
        drop_topics(o, 41, 80)
        wait_for(lambda: upto(50), 'the burst under way', timeout=120)
        ra.kill()
        drop_topics(o, 121, 40)
        wait_all(160, 'relay A killed')
        # A back on its state, the subscribers' SUBs reconnected to it; then B killed -9
        # in the middle of a burst, before A need have caught up: A fetches what it
        # missed from the origin's replay, the subscribers' path A from A's.
        ra.start()
        ra.wait_log('upstream: connected')
        ra.wait_log(" subscribe 'dualfeed.'", count=len(subs))
        drop_topics(o, 161, 80)
        wait_for(lambda: upto(170), 'the burst under way', timeout=120)
        rb.kill()
        drop_topics(o, 241, 40)
        wait_all(280, 'relay B killed')
        # Sentinels after everything: once they are there, any duplicate would be too.
        drop_topics(o, 281, 2)
        wait_all(282, 'the sentinels')
        truth = {}
        for topic in RELAY_TOPICS:
            truth.update(origin_history(o_ipc, topic))
        check(len(truth) == 282, 'the origin published 282: %d' % len(truth))
        for s in subs:
            s.close()
        for s, name in zip(subs, names):
            check_relayed(s.got(), 282, truth, name)
    finally:
        for s in subs:
            s.close()
        for d in (rb, ra, o):
            if d:
                d.cleanup()
        net.close()


if __name__ == '__main__':
    run([test_two_origins_either_killed, test_without_dedup_by_id_duplicates_appear,
         test_two_relays_either_killed_across_hosts])
