"""End to end: replay holds bounded memory and descriptors however its clients behave
(issue 11, items 3 and 4), with the live feed checked alongside.

Clients are raw DEALERs speaking proto/newswire-v1.md section 8. A client "that does
not read" has a receive HWM of 1 and a 4 KiB socket buffer, so what the daemon sends it
stays in the daemon (ZeroMQ's queue) instead of in the client. The daemon's RSS comes
from /proc/PID/status, its descriptors from /proc/PID/fd; what replay holds, how many
streams are paused and how many segment files are open from its STATUS= line. Waits are
on STATUS=, log lines and received messages, never on sleeps.

Under the sanitizers (NW_SANITIZE=ON) RSS says nothing about the daemon (ASan keeps
freed memory in quarantine): the RSS limits are checked only in the normal build; the
STATUS= byte counts and the descriptor limits are checked in both.
"""
import os, re, resource, subprocess, time

import msgpack
import zmq

from nwtest import BIN, DEADLINE, Daemon, RawSub, check, frame0, header_article, run, wait_for

TOPIC = 'telecoms'
SANITIZED = os.environ.get('NW_SANITIZE') == 'ON'
MIB = 1 << 20
BUDGET = 32 * MIB          # --replay-max-bytes default


def rss(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    raise AssertionError('no VmRSS')


def fds(pid):
    return len(os.listdir('/proc/%d/fd' % pid))


REPLAY_STATUS = re.compile(r'(\d+) replay streams \((\d+) KiB held, (\d+) paused, (\d+) files\)')


def replay_status(d):
    """The newest STATUS= replay part: (streams, bytes held, paused, files), or None."""
    d.read_notify()
    for n in reversed(d.notes):
        if n.startswith('STATUS='):
            m = REPLAY_STATUS.search(n)
            return tuple(int(x) for x in m.groups()) if m else None
    return None


class Watch:
    """Samples the daemon's RSS and descriptors at every probe; keeps the peaks."""

    def __init__(self, d):
        self.d = d
        self.rss0, self.fds0 = rss(d.proc.pid), fds(d.proc.pid)
        self.rss_peak, self.fds_peak = self.rss0, self.fds0

    def sample(self):
        r, f = rss(self.d.proc.pid), fds(self.d.proc.pid)
        self.rss_peak, self.fds_peak = max(self.rss_peak, r), max(self.fds_peak, f)
        return r, f

    def report(self, what):
        print('%s: RSS %.1f MiB -> peak %.1f MiB, fds %d -> peak %d' % (
            what, self.rss0 / MIB, self.rss_peak / MIB, self.fds0, self.fds_peak), flush=True)


def LiveSub(d):
    return RawSub(d, TOPIC, timeout=DEADLINE * 3)


def body(i, size):
    para = ('Paragraph %d of a long report on rural spectrum auctions, masts shared between '
            'operators, fibre backhaul and the regulator\'s coverage targets. ' % i)
    text, k = [], 0
    while sum(len(p) for p in text) < size:
        text.append(para + 'Part %d.' % k)
        k += 1
    return '\n\n'.join(text)


def publish(d, live, n, size, tag, also=None):
    have = len(live.frames)
    for i in range(n):
        d.drop_text('%s%04d.txt' % (tag, i), header_article(
            'Report %s %d on spectrum' % (tag, i), Subject='Telecoms', body=body(i, size)))
    return live.wait(have + n, also)


class Dealer:
    def __init__(self, d, reads=True):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if not reads:
            # what it is sent stays with the daemon, not in this process or the kernel
            self.sock.setsockopt(zmq.RCVHWM, 1)
            self.sock.setsockopt(zmq.RCVBUF, 4096)
        else:
            self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.connect(d.replay)

    def send(self, **req):
        self.sock.send(msgpack.packb(dict({'v': 1}, **req)))

    def recv(self, timeout=DEADLINE):
        check(self.sock.poll(int(timeout * 1000)), 'a reply within %ss' % timeout)
        return self.sock.recv_multipart()

    def close(self):
        self.sock.close(0)


def idle_flag(secs):
    """--replay-idle SECS; left out for a daemon that has no such flag (so that these
    tests can be run against a build from before it, and fail there for what they test)."""
    out = subprocess.run([os.path.join(BIN, 'newswired'), '--help'], capture_output=True)
    return ['--replay-idle', str(secs)] if b'--replay-idle' in out.stdout else []


def started(args=()):
    d = Daemon(args=['--no-sync'] + list(args))
    d.replay = 'ipc://' + os.path.join(d.root, 'replay.sock')
    d.args += ['--replay', d.replay]
    return d


def wait_replay_idle(d, since, watch=None, timeout=DEADLINE * 3):
    """Wait for a STATUS= sent after notes[since] that shows replay idle."""
    def idle():
        if watch:
            watch.sample()
        d.read_notify()
        return any(REPLAY_STATUS.search(n) and REPLAY_STATUS.search(n).groups() == ('0',) * 4
                   for n in d.notes[since:] if n.startswith('STATUS='))
    wait_for(idle, 'STATUS= with no replay stream, nothing held, no file (have %r)'
             % (replay_status(d),), timeout)


def test_never_reading_clients_hold_bounded_memory():
    """Item 3: 32 clients ask for a 5 MB journal with full credit and never read. Before,
    every stream was sent all of it into ZeroMQ's queues (over 150 MiB here, and it stayed
    after they left); now replay holds its budget at most, the streams past their share
    are paused, the rest refused as busy, and everything goes when the clients do."""
    d = started().start()
    try:
        live = LiveSub(d)
        publish(d, live, 160, 32 * 1024, 'a')
        watch = Watch(d)
        clients = [Dealer(d, reads=False) for _ in range(32)]
        for c in clients:
            c.send(type='replay', topic=TOPIC, **{'from': 1}, credit=1000)
        limit = watch.rss0 + 56 * MIB

        def settled():
            r, _ = watch.sample()
            check(SANITIZED or r <= limit, 'RSS %.1f MiB stays under %.1f MiB'
                  % (r / MIB, limit / MIB))
            st = replay_status(d)
            refused = d.log().count("replay: busy on '%s': the replay memory budget" % TOPIC)
            return st and st[0] + refused == len(clients) and st[2] == st[0] and st[0] > 0
        wait_for(settled, 'every stream paused or refused (STATUS %r)' % (replay_status(d),),
                 timeout=DEADLINE * 3)
        st = replay_status(d)
        check(st[1] * 1024 <= BUDGET + 2 * 64 * 1024, 'held %d KiB within the budget' % st[1])
        # the live feed goes on meanwhile, every article delivered
        publish(d, live, 10, 2048, 'b', also=watch.sample)
        watch.sample()
        since = len(d.notes)
        for c in clients:
            c.close()
        wait_replay_idle(d, since, watch)
        after = rss(d.proc.pid)
        watch.report('32 never-reading replay clients')
        if not SANITIZED:
            check(after <= watch.rss0 + 8 * MIB, 'RSS back near baseline: %.1f MiB (baseline '
                  '%.1f MiB)' % (after / MIB, watch.rss0 / MIB))
        check(fds(d.proc.pid) <= watch.fds0 + 2, 'descriptors back to baseline')
        rc, _ = d.stop()
        check(rc == 0, 'clean exit')
    finally:
        d.cleanup()


FD_LIMIT = 128


def low_fd_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def test_slow_cursors_do_not_exhaust_descriptors():
    """Item 4: with a 128-descriptor limit and a journal of many segments, 40 streams
    that were granted one message and never grant more. Before, each cursor opened every
    segment up front and held them (up to 60 s), so new files failed with "Too many open
    files" and were rejected; now a cursor opens a segment only when it reaches it, a
    waiting stream holds none, and all replay cursors together hold at most an eighth of
    the limit: new files are published and archived, never rejected."""
    d = started(['--segment-size', '65536'] + idle_flag(10))
    d.preexec_fn = low_fd_limit
    d.start()
    try:
        live = LiveSub(d)
        # Opened up front, these cursors would need far more descriptors than the limit.
        # How many articles that takes depends on how the group commit batched them (a
        # segment rolls between writes), so publish until the journal is that long.
        def segments():
            return [f for f in os.listdir(os.path.join(d.state, 'journal'))
                    if f.endswith('.nwj')]
        dropped = 0
        while len(segments()) * 40 < 2 * FD_LIMIT:
            check(dropped < 400, 'a journal of many segments: %d after %d articles'
                  % (len(segments()), dropped))
            publish(d, live, 10, 8 * 1024, 'a%02d' % (dropped // 10))
            dropped += 10
        watch = Watch(d)
        clients = [Dealer(d) for _ in range(40)]
        for c in clients:
            c.send(type='replay', topic=TOPIC, **{'from': 1}, credit=1)
        for c in clients:
            f = c.recv()
            check(f[0] == frame0(TOPIC), 'each stream starts: %r' % f[0])
            check(msgpack.unpackb(f[1], raw=False)['seq'] == 1, 'with seq 1')
            watch.sample()
        # every stream now waits for credit: none holds a segment file
        wait_for(lambda: watch.sample() and (replay_status(d) or (0,))[0] == 40
                 and replay_status(d)[3] == 0,
                 'STATUS= with 40 streams and no file open (%r)' % (replay_status(d),))
        check(watch.fds_peak <= watch.fds0 + 40 + 16 + 4,
              'descriptors: %d at most (baseline %d, 40 connections)' % (watch.fds_peak, watch.fds0))
        t0 = time.monotonic()
        publish(d, live, 5, 1024, 'b', also=watch.sample)
        wait_for(lambda: len(d.archived()) == dropped + 5, 'all %d files archived' % (dropped + 5))
        print('new files published and archived in %.1fs' % (time.monotonic() - t0))
        # every stream waits for credit: none holds a segment file
        wait_for(lambda: watch.sample() and (replay_status(d) or (0,))[0] == 40
                 and replay_status(d)[3] == 0,
                 'STATUS= with 40 streams and no file open (%r)' % (replay_status(d),))
        check(watch.fds_peak <= watch.fds0 + 40 + 16 + 4,
              'descriptors: %d at most (baseline %d, 40 connections)' % (watch.fds_peak, watch.fds0))
        check(d.rejected() == [], 'nothing rejected: %r' % d.rejected())
        check('Too many open files' not in d.log(), 'no descriptor exhaustion')
        check('replay: at most 16 segment files open' in d.log(), 'the file budget follows the limit')
        # a stream that reads on crosses every segment holding one file at a time
        clients[0].send(type='credit', credit=1000)
        # (the stream covers what was durable when it was asked for: 1..dropped)
        got = [clients[0].recv() for _ in range(dropped - 1)]
        check([msgpack.unpackb(f[1], raw=False)['seq'] for f in got]
              == list(range(2, dropped + 1)), 'the rest in order')
        check(clients[0].recv()[0] == b'$end', 'then the end')
        since = len(d.notes)
        for c in clients:
            c.close()
        # streams waiting for credit from clients that left go after --replay-idle (10 s)
        wait_replay_idle(d, since, watch)
        watch.report('40 slow replay cursors, 128-descriptor limit')
        check(fds(d.proc.pid) <= watch.fds0 + 2, 'descriptors back to baseline: %d (was %d)'
              % (fds(d.proc.pid), watch.fds0))
        rc, _ = d.stop()
        check(rc == 0, 'clean exit')
    finally:
        d.cleanup()


def test_abusive_clients_with_live_feed():
    """Stalled, never-reading, huge-credit and churning replay clients at once, the live
    feed checked alongside: every article is still delivered live, RSS and descriptors
    stay bounded, and both come back near baseline once the clients are gone."""
    d = started(idle_flag(3)).start()
    try:
        live = LiveSub(d)
        publish(d, live, 120, 24 * 1024, 'a')
        watch = Watch(d)
        rss_limit = watch.rss0 + 56 * MIB
        fd_limit = watch.fds0 + 64 + 32 + 8

        def probe():
            r, f = watch.sample()
            check(SANITIZED or r <= rss_limit, 'RSS %.1f MiB <= %.1f MiB' % (r / MIB, rss_limit / MIB))
            check(f <= fd_limit, 'fds %d <= %d' % (f, fd_limit))
            st = replay_status(d)
            if st:
                check(st[1] * 1024 <= BUDGET + 2 * 64 * 1024, 'held %d KiB within the budget' % st[1])
                check(st[3] <= 32, 'segment files %d within the budget' % st[3])

        # stalled: read a few, then never again
        stalled = [Dealer(d, reads=False) for _ in range(12)]
        for c in stalled:
            c.send(type='replay', topic=TOPIC, **{'from': 1}, credit=1000)
        for c in stalled:
            c.recv()
        # never reading at all
        silent = [Dealer(d, reads=False) for _ in range(12)]
        for c in silent:
            c.send(type='replay', topic=TOPIC, **{'from': 1}, credit=1000)
        # huge credit, read slowly: credit far beyond what they take
        greedy = [Dealer(d, reads=False) for _ in range(8)]
        for c in greedy:
            c.send(type='replay', topic=TOPIC, **{'from': 1}, credit=1000)
            for _ in range(50):
                c.send(type='credit', credit=1000)
        # churning: connect, ask, take one reply, go; again and again, the live feed on
        for round_ in range(6):
            churn = [Dealer(d) for _ in range(16)]
            for c in churn:
                c.send(type='replay', topic=TOPIC, **{'from': 1}, credit=1000)
            for c in churn:
                c.recv()
                c.close()
            for c in greedy:
                if c.sock.poll(0):
                    c.sock.recv_multipart()
            publish(d, live, 3, 2048, 'l%d' % round_, also=probe)
            probe()
        live_frames = live.frames[:]
        seqs = [msgpack.unpackb(f[1], raw=False)['seq'] for f in live_frames]
        check(seqs == list(range(1, len(seqs) + 1)), 'the live feed lost nothing: %r' % seqs[-20:])
        since = len(d.notes)
        for c in stalled + silent + greedy:
            c.close()
        wait_replay_idle(d, since, watch)
        after_rss, after_fds = rss(d.proc.pid), fds(d.proc.pid)
        watch.report('stalled, never-reading, huge-credit and churning replay clients')
        if not SANITIZED:
            check(after_rss <= watch.rss0 + 8 * MIB, 'RSS back near baseline: %.1f MiB (was %.1f)'
                  % (after_rss / MIB, watch.rss0 / MIB))
        check(after_fds <= watch.fds0 + 2, 'descriptors back: %d (was %d)' % (after_fds, watch.fds0))
        # and replay still serves a client that reads, byte for byte
        r = Dealer(d)
        r.send(type='replay', topic=TOPIC, **{'from': 1, 'to': 120}, credit=1000)
        got = [r.recv() for _ in range(120)]
        check(got == live_frames[:120], 'a well-behaved replay afterwards is byte-identical')
        check(r.recv()[0] == b'$end', 'and ends')
        r.close()
        rc, _ = d.stop()
        check(rc == 0, 'clean exit')
        check('AddressSanitizer' not in d.log(), d.log()[-2000:])
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_never_reading_clients_hold_bounded_memory,
         test_slow_cursors_do_not_exhaust_descriptors,
         test_abusive_clients_with_live_feed])
