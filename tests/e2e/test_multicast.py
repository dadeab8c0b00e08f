"""End to end, across hosts: multicast (--publish epgm://IFACE;GROUP:PORT) between network
namespaces (tests/e2e/netns.py), from a real newswired to newswire-sub (libnewswire) and a
raw python3-zmq SUB in other hosts; loss repaired through the replay endpoint; and the
refusals: no --insecure, CURVE, raw pgm://, a loopback interface, a group that is not
multicast.

A receiver is known to be listening once its host's kernel has joined the group (ip maddr:
the membership its PGM socket asked for), not after a sleep: from then on every packet
sent to the group reaches it. Nothing leaves the namespaces: the interfaces are veths and a
bridge inside them, the addresses in 198.18.0.0/15, the group in 239.0.0.0/8 (scoped to the
organization) with PGM's TTL of 1, and no host has a route anywhere else."""
import json, os, subprocess, sys, textwrap, threading, time

import netns
from nwtest import (BIN, DEADLINE, Daemon, Failure, Skip, check, header_article, run,
                    wait_for)

SOURCE = os.environ.get('NW_SOURCE', os.path.join(os.path.dirname(__file__), '..', '..'))
PY_SUB = os.path.join(SOURCE, 'clients', 'python', 'newswire_sub.py')
GROUP = '239.255.18.1'
PORT = 5555


def epgm(iface='eth0'):
    return 'epgm://%s;%s:%d' % (iface, GROUP, PORT)


def have_pgm():
    import zmq
    if not zmq.has('pgm'):
        raise Skip("this libzmq has no PGM (zmq_has(\"pgm\") is false): Debian's libzmq5 "
                   "is built with it; this one was not")


class Lines:
    """A subscriber process whose stdout lines (JSON, one per article) are read as they
    come, by a thread, so a test can wait for the n-th one."""

    def __init__(self, proc, decode=json.loads):
        self.proc, self.lines, self.decode = proc, [], decode
        self.errs = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        self.te = threading.Thread(target=lambda: self.errs.extend(proc.stderr), daemon=True)
        self.te.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(self.decode(line))

    def wait(self, n, d, timeout=DEADLINE * 2):
        def got():
            if d.proc.poll() is not None:
                raise Failure('newswired exited:\n' + d.log())
            if len(self.lines) < n and self.proc.poll() is not None:
                self.t.join(5)
                if len(self.lines) < n:
                    raise Failure('subscriber exited %s with %d of %d: %s' % (
                        self.proc.returncode, len(self.lines), n, ''.join(self.errs)))
            return len(self.lines) >= n
        try:
            wait_for(got, '%d articles' % n, timeout)
        except Failure as e:
            raise Failure('%s (have %r; stderr %s)' % (e, self.lines, ''.join(self.errs)))
        return self.lines

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def seqs(lines):
    return [(m['topic'], m['seq']) for m in lines]


def sub(host, *args):
    cmd = [os.path.join(BIN, 'newswire-sub'), '--connect', epgm()] + list(args)
    return Lines(host.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))


RAW_SUB = textwrap.dedent('''
    import msgpack, sys, zmq
    s = zmq.Context().socket(zmq.SUB)
    s.setsockopt(zmq.RCVHWM, 0)
    s.connect(sys.argv[1])
    s.setsockopt(zmq.SUBSCRIBE, b'telecoms.')
    while True:
        frames = s.recv_multipart()
        body = msgpack.unpackb(frames[1], raw=False)
        print('%s %s %d %s' % (frames[0].decode(), body['topic'], body['seq'],
                               body['article']['headline']), flush=True)
''')


def scrape(host, port=9464):
    """The daemon's metrics, read from inside its host (they listen on its loopback)."""
    code = ('import urllib.request; print(urllib.request.urlopen('
            '"http://127.0.0.1:%d/metrics", timeout=10).read().decode())' % port)
    out = host.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
    values = {}
    for line in out.stdout.splitlines():
        if line and not line.startswith('#'):
            name, _, value = line.rpartition(' ')
            values[name] = float(value)
    return values


def origin(host, args=(), config=None, flag=True):
    return Daemon(wrap=host.wrap(), endpoint=epgm(), publish_flag=flag, config=config,
                  args=['--replay', 'tcp://%s:5557' % host.addr,
                        '--metrics', 'tcp://127.0.0.1:9464'] + list(args))


def drop(d, name, title, subject='telecoms', body=None):
    if body is None:
        d.drop_text(name + '.txt', header_article(title, Subject=subject))
    else:
        d.drop_text(name + '.txt', header_article(title, body, Subject=subject))


def test_multicast_reaches_every_host_on_the_segment():
    """One segment (a bridge), the daemon and three receivers: newswire-sub, a raw SUB
    and the Python sample.
    The daemon's multicast endpoint and rate come from its config file."""
    have_pgm()
    net = netns.Net()
    d, subs = None, []
    try:
        # one receiver per host: a host's group membership says that one of its sockets
        # joined, not which
        a, b, c, e = net.host('origin'), net.host('suba'), net.host('subb'), net.host('subc')
        net.segment(a, b, c, e)
        cfg = ('newswired\n    publish = "%s"\n    insecure = 1\n    multicast-rate = 20000\n'
               '    multicast-recovery = 5000\n' % epgm())
        d = origin(a, config=cfg, flag=False).start()
        check('publishing on ' + epgm() in d.log(), 'the file\'s endpoint: %s' % d.log())
        subs.append(sub(b, '--count', '4', '--timeout', '60', 'telecoms'))
        # by address: OpenPGM would look a name up in DNS first (nw_epgm.h), which
        # libnewswire avoids by resolving it itself, but a raw socket does not
        raw = c.popen([sys.executable, '-c', RAW_SUB, epgm(c.addr)], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
        subs.append(Lines(raw, decode=lambda l: l.split(' ', 3)))
        # and the Python sample beside it, by the interface's name
        subs.append(Lines(e.popen([sys.executable, PY_SUB, '--connect', epgm(), '--count', '4',
                                   '--timeout', '60', 'telecoms'], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)))
        wait_for(lambda: b.joined(GROUP) and c.joined(GROUP) and e.joined(GROUP),
                 'the three receivers joined ' + GROUP)
        # over PGM nothing tells the daemon who listens: no subscription came back
        check(" subscribe '" not in d.log(), 'no subscription message over PGM')
        for i in range(4):
            drop(d, 't%d' % i, 'Multicast %d' % i)
            drop(d, 's%d' % i, 'Sport %d' % i, 'sport')
        got = subs[0].wait(4, d)
        check(seqs(got) == [('telecoms', i) for i in range(1, 5)], 'in order: %r' % seqs(got))
        check(got[2]['article']['headline'] == 'Multicast 2', 'body %r' % got[2])
        raw_got = subs[1].wait(4, d)
        # every topic reached host c (PGM does not filter); its SUB kept telecoms only
        check([r[:3] for r in raw_got] == [['telecoms.', 'telecoms', str(i)] for i in range(1, 5)],
              'the raw SUB filtered at the receiver: %r' % raw_got)
        check([r[3].strip() for r in raw_got] == ['Multicast %d' % i for i in range(4)],
              'headlines %r' % raw_got)
        py_got = subs[2].wait(4, d)
        check(seqs(py_got) == [('telecoms', i) for i in range(1, 5)], 'the Python sample: %r'
              % seqs(py_got))
        m = scrape(a)
        check(m.get('newswired_replay_messages_total') == 0,
              'all of it came live over multicast, none by replay: %r' %
              m.get('newswired_replay_messages_total'))
    finally:
        for s in subs:
            s.close()
        if d:
            d.cleanup()
        net.close()


def test_late_joiner_fetches_what_multicast_sent_before_it():
    have_pgm()
    net = netns.Net()
    d, s = None, None
    try:
        a, b = net.host('origin'), net.host('sub')
        net.link(a, b)
        d = origin(a, ['--insecure']).start()
        for i in range(5):
            drop(d, 'early%d' % i, 'Before the join %d' % i)
        for i in range(5):
            d.wait_log('published early%d.txt ' % i)
        s = sub(b, '--replay', 'tcp://%s:5557' % a.addr, '--since', '1', '--count', '10',
                '--timeout', '60', 'telecoms')
        wait_for(lambda: b.joined(GROUP), 'the receiver joined ' + GROUP)
        for i in range(5):
            drop(d, 'late%d' % i, 'After the join %d' % i)
        got = s.wait(10, d)
        check(seqs(got) == [('telecoms', i) for i in range(1, 11)], 'all ten in order: %r' % seqs(got))
        m = scrape(a)
        check(m.get('newswired_replay_messages_total', 0) >= 5,
              'the five sent before the join came by replay: %r' % m)
    finally:
        if s:
            s.close()
        if d:
            d.cleanup()
        net.close()


def test_loss_on_the_link_is_repaired_by_replay():
    """The receiver's link goes down while five articles go out; PGM's own repair window
    is made too short to hold them (--multicast-recovery 1: one packet), so they can only
    come back through the replay endpoint, in order, before what follows."""
    have_pgm()
    net = netns.Net()
    d, s = None, None
    try:
        a, b = net.host('origin'), net.host('sub')
        net.link(a, b)
        d = origin(a, ['--insecure', '--multicast-recovery', '1']).start()
        s = sub(b, '--replay', 'tcp://%s:5557' % a.addr, '--count', '9', '--timeout', '60',
                'telecoms')
        wait_for(lambda: b.joined(GROUP), 'the receiver joined ' + GROUP)
        for i in range(3):
            drop(d, 'before%d' % i, 'Before the cut %d' % i)
        s.wait(3, d)
        b.cut()
        for i in range(5):
            drop(d, 'cut%d' % i, 'During the cut %d' % i)
        for i in range(5):
            d.wait_log('published cut%d.txt ' % i)
        b.restore()
        drop(d, 'after', 'After the cut')
        got = s.wait(9, d)
        check(seqs(got) == [('telecoms', i) for i in range(1, 10)], 'all nine in order: %r' % seqs(got))
        check([m['article']['headline'] for m in got[3:8]] == ['During the cut %d' % i for i in range(5)],
              'the lost ones themselves: %r' % got[3:8])
        m = scrape(a)
        check(m.get('newswired_replay_messages_total', 0) >= 1,
              'what the cut lost came by replay: %r' % m.get('newswired_replay_messages_total'))
    finally:
        if s:
            s.close()
        if d:
            d.cleanup()
        net.close()


def test_a_burst_beyond_the_rate_is_repaired_by_replay():
    """PGM at 100 kbit/s (the least allowed: 12.5 KB/s, a third of a second for each
    of these 4 KB articles) behind a queue of one message: a backlog published faster
    than that (group writes at least 200 ms apart, so most go in one) overflows it, the
    group misses what did not fit (counted and logged like a full subscriber queue, never
    blocking the daemon), and the receiver fetches it by replay: all of it, in order."""
    have_pgm()
    net = netns.Net()
    d, s = None, None
    try:
        a, b = net.host('origin'), net.host('sub')
        net.link(a, b)
        d = origin(a, ['--insecure', '--multicast-rate', '100', '--send-hwm', '1',
                       '--commit-delay', '200'])
        body = '\n\n'.join('Paragraph %d of a long story, told at length. ' % p * 8
                             for p in range(10))
        for i in range(10):
            drop(d, 'burst%d' % i, 'In the burst %d' % i, body=body)
        # the receiver joins before the daemon starts: the backlog goes out in one burst
        s = sub(b, '--replay', 'tcp://%s:5557' % a.addr, '--count', '10', '--timeout', '90',
                'telecoms')
        wait_for(lambda: b.joined(GROUP), 'the receiver joined ' + GROUP)
        d.start()
        got = s.wait(10, d, timeout=90)
        check(seqs(got) == [('telecoms', i) for i in range(1, 11)], 'all ten in order: %r' % seqs(got))
        check("a subscriber's queue is full" in d.log(), 'the overflow was logged: %s' % d.log())
        m = scrape(a)
        check(m.get('newswired_replay_messages_total', 0) >= 1,
              'what the group missed came by replay: %r' % m.get('newswired_replay_messages_total'))
    finally:
        if s:
            s.close()
        if d:
            d.cleanup()
        net.close()


def refusal(host, args, config=None, code=1):
    """Start a daemon in host that must refuse (exit 1; 2 for a bad setting); returns
    its log."""
    d = Daemon(wrap=host.wrap(), endpoint=epgm(), args=list(args), config=config,
               publish_flag=config is None)
    try:
        d.start(wait_ready=False)
        rc = d.proc.wait(DEADLINE)
        check(rc == code, 'refused with exit %d, got %s:\n%s' % (code, rc, d.log()))
        return d.log()
    finally:
        d.cleanup()


def test_refusals():
    """In a namespace too, so even a check that failed to refuse would send nothing out."""
    net = netns.Net()
    try:
        a, b = net.host('origin'), net.host('sub')
        net.link(a, b)
        log = refusal(a, [])
        check('%s is multicast: PGM has no CURVE' % epgm() in log and 'give --insecure' in log,
              'no --insecure: %s' % log)
        log = refusal(a, [], config='newswired\n    publish = "%s"\n' % epgm())
        check('give --insecure' in log, 'from the config file too: %s' % log)
        keys = os.path.join(d_root(), 'server')
        subprocess.run([os.path.join(BIN, 'newswire-keygen'), keys], check=True,
                       capture_output=True)
        log = refusal(a, ['--insecure', '--curve-secret', keys + '_secret'])
        check('cannot be used with --curve-secret' in log, 'CURVE: %s' % log)
        cases = [
            ('pgm://eth0;%s:%d' % (GROUP, PORT), 'raw pgm:// needs raw sockets; use epgm://'),
            (epgm('lo'), 'interface lo is loopback'),
            (epgm('eth9'), 'no interface eth9'),
            (epgm('198.18.1.2'), '198.18.1.2 is not an address of this host'),
            ('epgm://eth0;198.18.1.9:%d' % PORT, 'the group must be an IPv4 multicast address'),
            ('epgm://eth0;%s:0' % GROUP, 'the port must be 1 to 65535'),
            ('epgm://eth0:%d' % PORT, 'expected epgm://INTERFACE;GROUP:PORT'),
        ]
        for endpoint, reason in cases:
            d = Daemon(wrap=a.wrap(), endpoint=endpoint, args=['--insecure'])
            try:
                d.start(wait_ready=False)
                rc = d.proc.wait(DEADLINE)
                check(rc == 1 and reason in d.log(), '%s: %r, got %s:\n%s' % (endpoint, reason, rc, d.log()))
            finally:
                d.cleanup()
        # what PGM cannot work with: libzmq would abort on it
        log = refusal(a, ['--insecure', '--multicast-rate', '11'], code=2)
        check("multicast-rate '11': out of range" in log, 'a rate below one packet a second: %s' % log)
        log = refusal(a, ['--insecure', '--multicast-rate', '1000000', '--multicast-recovery', '60000'])
        check('keeps 7152 MiB for repairs: at most 256 MiB' in log, 'a window too large: %s' % log)
        a.ip('link', 'set', 'eth0', 'multicast', 'off')
        d = Daemon(wrap=a.wrap(), endpoint=epgm(), args=['--insecure'])
        try:
            d.start(wait_ready=False)
            check(d.proc.wait(DEADLINE) == 1 and 'interface eth0 has multicast off' in d.log(),
                  'multicast off: %s' % d.log())
        finally:
            d.cleanup()
        # the client: bad endpoints, and CURVE keys with a multicast endpoint
        bad = b.run([os.path.join(BIN, 'newswire-sub'), '--connect', epgm('lo'), '--timeout', '1'],
                    capture_output=True, text=True)
        check(bad.returncode == 1 and 'interface lo is loopback' in bad.stderr,
              'newswire-sub refuses lo: %r' % bad)
        client = os.path.join(d_root(), 'client')
        subprocess.run([os.path.join(BIN, 'newswire-keygen'), client], check=True, capture_output=True)
        curve = b.run([os.path.join(BIN, 'newswire-sub'), '--connect', epgm(), '--curve-cert',
                       client + '_secret', '--server-key', keys, '--timeout', '1'],
                      capture_output=True, text=True)
        check(curve.returncode == 1 and 'multicast has no CURVE' in curve.stderr,
              'newswire-sub with keys refuses multicast: %r' % curve)
        for args, reason in [(['--connect', epgm('lo')], 'interface lo is loopback'),
                             (['--connect', epgm('eth9')], 'no interface eth9'),
                             (['--connect', epgm(), '--curve-cert', client + '_secret',
                               '--server-key', keys], 'has no CURVE')]:
            r = b.run([sys.executable, PY_SUB] + args + ['--timeout', '1'], capture_output=True,
                      text=True)
            check(r.returncode == 1 and reason in r.stderr, 'the Python sample: %r' % r)
    finally:
        net.close()


_root = []


def d_root():
    if not _root:
        import atexit, shutil, tempfile
        _root.append(tempfile.mkdtemp(prefix='nw-mcast-'))
        atexit.register(shutil.rmtree, _root[0], True)
    return _root[0]


if __name__ == '__main__':
    run([test_multicast_reaches_every_host_on_the_segment,
         test_late_joiner_fetches_what_multicast_sent_before_it,
         test_loss_on_the_link_is_repaired_by_replay,
         test_a_burst_beyond_the_rate_is_repaired_by_replay, test_refusals])
