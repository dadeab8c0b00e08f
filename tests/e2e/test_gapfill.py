"""End to end for replay on the client side: newswire-sub and the Python sample with
--replay against a real newswired (its --replay endpoint and journal).

(a) late join: 1,000 articles are published before any replaying client exists; --since 1
    gets every one of them, once, in seq order.
(b) overflow: the daemon queues at most 10 messages per subscriber (--send-hwm 10), the
    client's receive queue holds 1 and it does not read while 500 articles are published;
    what the daemon dropped comes back through replay, in order, once.
(c) away: a subscriber stopped (SIGSTOP) while the daemon restarts and publishes 30 more
    reconnects only after they went out, with nothing following them: it still gets
    them (its reconnection arms the replay probe), C and Python.

Waits are on events (subscriptions and publications in the daemon's log, processes
exiting), never on sleeps.
"""
import json, os, select, signal, subprocess, sys, time

from nwtest import BIN, DEADLINE, Daemon, Failure, check, header_article, run

SOURCE = os.environ.get('NW_SOURCE', os.path.join(os.path.dirname(__file__), '..', '..'))
PY_SUB = os.path.join(SOURCE, 'clients', 'python', 'newswire_sub.py')
TOPIC = 'gapfill'


def daemon_has_replay():
    try:
        r = subprocess.run([os.path.join(BIN, 'newswired'), '--help'], capture_output=True,
                           text=True, timeout=10)
    except OSError:
        return False
    return '--replay' in r.stdout + r.stderr


def start_daemon(extra=()):
    d = Daemon(args=list(extra))
    d.replay = 'ipc://' + os.path.join(d.root, 'replay.sock')
    d.args += ['--replay', d.replay]
    return d.start()


def publish(d, n, body_bytes=0, first=1):
    """Drop n distinct articles on TOPIC and wait until the daemon logged them published
    (a watching subscriber would itself lose messages to a small --send-hwm)."""
    filler = ('Padding so that the socket buffers fill up. ' * (body_bytes // 45 + 1))[:body_bytes]
    before = d.log().count(' published a')
    for i in range(first, first + n):
        d.drop_text('a%04d.txt' % i, header_article(
            'Story number %d of the run' % i,
            body='Paragraph one of story %d.\n\n%s' % (i, filler), Subject=TOPIC))
    d.wait_log(' published a', count=before + n, timeout=120)


def check_lines(out, n, who):
    lines = [json.loads(l) for l in out.splitlines()]
    seqs = [l['seq'] for l in lines]
    check(len(seqs) == n, '%s: %d articles, want %d' % (who, len(seqs), n))
    check(seqs == list(range(1, n + 1)),
          '%s: seqs 1..%d once in order, first wrong at %r' % (
              who, n, next((i for i, s in enumerate(seqs) if s != i + 1), None)))
    check(all(l['topic'] == TOPIC for l in lines), '%s: only %s' % (who, TOPIC))
    check(lines[-1]['article']['headline'] == 'Story number %d of the run' % n,
          '%s: the last one is story %d: %r' % (who, n, lines[-1]['article']['headline']))


def run_client(cmd, timeout=120):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    check(r.returncode == 0, '%s exit %s: %s' % (cmd[0], r.returncode, r.stderr[-2000:]))
    return r


def test_late_join_since_1():
    d = start_daemon()
    try:
        publish(d, 1000)
        r = run_client([os.path.join(BIN, 'newswire-sub'), '--connect', d.endpoint,
                        '--replay', d.replay, '--since', '1', '--count', '1000',
                        '--timeout', '100', TOPIC])
        check_lines(r.stdout, 1000, 'newswire-sub')
        check('missed' not in r.stderr, 'nothing reported missed: %r' % r.stderr[-500:])
        r = run_client([sys.executable, PY_SUB, '--connect', d.endpoint, '--replay', d.replay,
                        '--since', '1', '--count', '1000', '--timeout', '100', TOPIC])
        check_lines(r.stdout, 1000, 'newswire_sub.py')
        # --last: the newest 10 only.
        r = run_client([os.path.join(BIN, 'newswire-sub'), '--connect', d.endpoint,
                        '--replay', d.replay, '--last', '10', '--count', '10',
                        '--timeout', '60', TOPIC])
        seqs = [json.loads(l)['seq'] for l in r.stdout.splitlines()]
        check(seqs == list(range(991, 1001)), '--last 10: %r' % seqs)
    finally:
        d.cleanup()


def test_paused_subscriber_recovers_c():
    d = start_daemon(['--send-hwm', '10'])
    try:
        before = d.log().count(" subscribe '")
        p = subprocess.Popen([os.path.join(BIN, 'newswire-sub'), '--connect', d.endpoint,
                              '--replay', d.replay, '--hwm', '1', '--count', '500',
                              '--timeout', '120', TOPIC],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            d.wait_log(" subscribe '", count=before + 1)
            p.send_signal(signal.SIGSTOP)     # not reading: every queue on the way fills
            publish(d, 500, body_bytes=8192)
            p.send_signal(signal.SIGCONT)
            out, errs = p.communicate(timeout=120)
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        check(p.returncode == 0, 'newswire-sub exit %s: %s' % (p.returncode, errs[-2000:]))
        check_lines(out, 500, 'paused newswire-sub')
    finally:
        d.cleanup()


def test_paused_subscriber_recovers_python():
    import newswire_sub
    d = start_daemon(['--send-hwm', '10'])
    try:
        before = d.log().count(" subscribe '")
        sub = newswire_sub.Subscriber([d.endpoint], [TOPIC], hwm=1, replay=d.replay)
        try:
            d.wait_log(" subscribe '", count=before + 1)
            publish(d, 500, body_bytes=8192)  # sub reads nothing meanwhile
            seqs = []
            while len(seqs) < 500:
                m = sub.recv(timeout=60)
                check(m is not None, 'timed out after %d articles' % len(seqs))
                seqs.append(m['seq'])
            check(seqs == list(range(1, 501)), 'seqs 1..500 once in order')
            check(sub.replayed > 0, 'the daemon dropped some and replay brought them back')
            check(sub.gaps == 0, 'nothing given up: %d' % sub.gaps)
            check(sub.recv(timeout=0.2) is None, 'nothing more')
        finally:
            sub.close()
    finally:
        d.cleanup()


def read_lines(p, n, timeout=DEADLINE):
    """The first n lines a subscriber printed (it flushes each), or Failure."""
    lines, buf, end = [], b'', time.monotonic() + timeout
    while len(lines) < n:
        left = end - time.monotonic()
        if left <= 0 or not select.select([p.stdout], [], [], left)[0]:
            raise Failure('%d of %d lines within %ss' % (len(lines), n, timeout))
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            raise Failure('the subscriber exited after %d of %d lines: %s'
                          % (len(lines), n, p.stderr.read()[-2000:]))
        buf += chunk
        *done, buf = buf.split(b'\n')
        lines += done
    return lines, buf


def away_while_restarted(cmd, who):
    d = start_daemon()
    p = None
    try:
        publish(d, 30)
        # Late join of 1..30 by replay only: no live message has armed the idle probe.
        p = subprocess.Popen(cmd + ['--connect', d.endpoint, '--replay', d.replay, '--since', '1',
                                    '--count', '60', '--timeout', '120', TOPIC],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines, rest = read_lines(p, 30)
        p.send_signal(signal.SIGSTOP)     # away: it cannot reconnect until continued
        d.stop()
        d.start()
        publish(d, 30, first=31)          # out before it is back, and nothing after
        p.send_signal(signal.SIGCONT)
        out, errs = p.communicate(timeout=150)
        check(p.returncode == 0, '%s exit %s: %s' % (who, p.returncode, errs.decode()[-2000:]))
        check_lines(b'\n'.join(lines + [rest + out]).decode(), 60, who)
    finally:
        if p and p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.communicate()
        d.cleanup()


def test_away_while_restarted_c():
    away_while_restarted([os.path.join(BIN, 'newswire-sub')], 'newswire-sub')


def test_away_while_restarted_python():
    away_while_restarted([sys.executable, PY_SUB], 'newswire_sub.py')


if __name__ == '__main__':
    if not daemon_has_replay():
        print('skip: newswired --help has no --replay (the daemon side of replay is not built yet)')
        sys.exit(77)
    run([test_late_join_since_1, test_paused_subscriber_recovers_c,
         test_paused_subscriber_recovers_python, test_away_while_restarted_c,
         test_away_while_restarted_python])
