"""End to end for dual feeds (issue 14): two origins fed the same files (two newswired with
separate state folders, each article dropped into both) and a subscriber on both paths,
newswire-sub --connect A --replay RA --connect B --replay RB.

(a) every article exactly once, for newswire-sub and the Python sample alike (by id; the two origins have different epochs and seqs),
    while origin A is killed -9 mid-burst, B carries on, A is restarted on its state and
    then B is killed -9 mid-burst: nothing lost, nothing doubled;
(b) the same run with the dedup by id turned off (--dedup-window 0): duplicates appear,
    so (a) would fail without arbitration.

Waits are on events: the daemons' log lines (subscriptions, publications, readiness) and
the lines the subscriber prints, never on sleeps.
"""
import json, os, subprocess, sys, threading

from nwtest import BIN, Daemon, check, header_article, run, wait_for

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

    def __init__(self, a, b, extra=(), python=False):
        self.lines = []
        self.lock = threading.Lock()
        prog = [sys.executable, PY_SUB] if python else [os.path.join(BIN, 'newswire-sub')]
        self.proc = subprocess.Popen(
            prog + ['--connect', a.endpoint, '--replay', a.replay,
             '--connect', b.endpoint, '--replay', b.replay, '--timeout', '300'] + list(extra)
            + [TOPIC], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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


if __name__ == '__main__':
    run([test_two_origins_either_killed, test_without_dedup_by_id_duplicates_appear])
