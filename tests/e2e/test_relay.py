"""End to end for the relay (issue 14): newswired --upstream LIVE --upstream-replay REPLAY,
with real daemons on ipc:// endpoints and real subscribers.

- everything the origin publishes arrives through the relay, in order, with the origin's
  epoch, seq and body byte for byte (raw frames compared with the origin's);
- a late joiner replays from the relay with the origin stopped;
- the relay killed -9 mid-burst and restarted: it fills what it missed from the origin's
  replay, and a gap-filling subscriber (newswire-sub --replay) on the relay loses nothing;
- the origin restarted: the relay reconnects and catches up;
- --upstream-topic carries only the topics named;
- a chain origin -> relay -> relay;
- CURVE on both hops with different keys; the relay's grants are enforced at the relay;
- the same keys in the config file;
- an upstream epoch change going on above is followed (the relay replays what the origin
  does, old epoch then new), also right above the seq a relay holds, the new epoch's
  first message coming live or after the relay was away (the relay checks first that the
  origin still serves its last seq as it holds it); one starting again below stops the
  topic, seen live or after the relay was away (then the new epoch's seqs past the
  relay's would otherwise be spliced onto its old history), and a relay with its journal
  moved aside carries the new history.

Waits are on events (log lines, STATUS, received messages), never on sleeps.
"""
import contextlib, json, os, re, shutil, signal, subprocess, sys

import msgpack
import zmq

from nwtest import BIN, DEADLINE, Daemon, check, frame0, header_article, raw_prefix, run, wait_for


def origin(extra=()):
    d = Daemon(args=list(extra))
    d.replay = 'ipc://' + os.path.join(d.root, 'replay.sock')
    d.args += ['--replay', d.replay]
    return d


def relay(up, extra=(), root=None):
    """A relay of up (a Daemon with .endpoint and .replay)."""
    d = Daemon(root=root, args=['--upstream', up.endpoint, '--upstream-replay', up.replay] + list(extra))
    d.replay = 'ipc://' + os.path.join(d.root, 'replay.sock')
    d.args += ['--replay', d.replay]
    return d


class Raw:
    """A SUB keeping raw frames of every topic, subscribed once the daemon logged it."""

    def __init__(self, d, topics=('',), curve=None):
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.LINGER, 0)
        if curve:
            pub, sec, server = curve
            self.sock.curve_publickey, self.sock.curve_secretkey = pub, sec
            self.sock.curve_serverkey = server
        self.d = d
        before = d.log().count(" subscribe '")
        self.sock.connect(d.endpoint)
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, raw_prefix(t))
        if not curve:
            d.wait_log(" subscribe '", count=before + len(topics))
        self.frames = []

    def wait(self, n, timeout=DEADLINE):
        def got():
            while self.sock.poll(0):
                self.frames.append(self.sock.recv_multipart())
            return len(self.frames) >= n
        wait_for(got, '%d messages (have %d)' % (n, len(self.frames)), timeout)
        return self.frames

    def close(self):
        self.sock.close(0)


@contextlib.contextmanager
def origin_and_relay():
    """An origin and a relay of it, connected and subscribed; both cleaned up after."""
    o = origin().start()
    r = None
    try:
        r = relay(o).start()
        r.wait_log('upstream: connected')
        o.wait_log(" subscribe ''")
        yield o, r
    finally:
        if r:
            r.cleanup()
        o.cleanup()


def publish(d, n, topic='general', start=1, wait=True):
    before = d.log().count('debug   published ')
    for i in range(start, start + n):
        d.drop_text('%s-%05d.txt' % (topic, i),
                    header_article('Story %d on %s' % (i, topic), Subject=topic))
    if wait:
        d.wait_log('debug   published ', count=before + n, timeout=120)


def status(d):
    d.read_notify()
    s = [n for n in d.notes if n.startswith('STATUS=')]
    return s[-1] if s else ''


def forwarded(r):
    m = re.search(r'upstream [A-Z ]*[a-z]*: (\d+) forwarded', status(r))
    return int(m.group(1)) if m else -1


def wait_forwarded(r, n):
    """Until the relay's STATUS says n forwarded; more fails at once."""
    def done():
        f = forwarded(r)
        check(f <= n, 'the relay forwarded %d, more than %d: %r' % (f, n, status(r)))
        return f == n
    wait_for(done, 'relay STATUS with %d forwarded' % n, 60)


def decode(frames):
    return [msgpack.unpackb(f[1], raw=False) for f in frames]


def test_relay_forwards_byte_for_byte():
    o = origin().start()
    r = None
    try:
        r = relay(o).start()
        r.wait_log('upstream: connected')
        o.wait_log(" subscribe ''")                 # the relay's SUB reached the origin
        at_origin = Raw(o)
        at_relay = Raw(r)
        publish(o, 30, 'general')
        publish(o, 20, 'sport.football')
        want = at_origin.wait(50)
        got = at_relay.wait(50)
        check(got == want, 'the relay sends the origin\'s frames byte for byte, in order')
        msgs = decode(got)
        check(len({m['epoch'] for m in msgs}) == 1, 'one epoch')
        for t, n in (('general', 30), ('sport.football', 20)):
            seqs = [m['seq'] for m in msgs if m['topic'] == t]
            check(seqs == list(range(1, n + 1)), '%s: seqs 1..%d: %r' % (t, n, seqs))
        wait_forwarded(r, 50)
        check(status(r).startswith('STATUS=upstream connected: 50 forwarded, lag 0, '),
              'STATUS says what the relay forwarded, connected, no lag: %r' % status(r))
        check(not re.search(r'published|rejected|pending', status(r)),
              'nothing of a drop folder in a relay\'s STATUS: %r' % status(r))
        check(not os.path.exists(r.drop), 'no drop folder made or watched at the relay')
        r.stop()
        check('stopped: 50 forwarded' in r.log(), 'the stop line says what it forwarded')
        at_origin.close()
        at_relay.close()
    finally:
        if r:
            r.cleanup()
        o.cleanup()


def test_late_joiner_replays_from_relay_without_origin():
    with origin_and_relay() as (o, r):
        publish(o, 40, 'general')
        wait_forwarded(r, 40)
        o.stop()
        res = subprocess.run([os.path.join(BIN, 'newswire-sub'), '--connect', r.endpoint,
                              '--replay', r.replay, '--since', '1', '--count', '40',
                              '--timeout', '60', 'general'], capture_output=True, text=True,
                             timeout=90)
        check(res.returncode == 0, 'newswire-sub: %s %s' % (res.returncode, res.stderr[-1000:]))
        lines = [json.loads(l) for l in res.stdout.splitlines()]
        check([l['seq'] for l in lines] == list(range(1, 41)), 'seqs 1..40 from the relay')
        check(lines[-1]['article']['headline'] == 'Story 40 on general', 'the last story')


def test_relay_starts_on_a_running_feed():
    """A relay started after the origin published fills from seq 1 (the origin's replay)
    before it forwards the next live message."""
    o = origin().start()
    r = None
    try:
        publish(o, 25, 'general')
        r = relay(o).start()
        r.wait_log('upstream: connected')
        o.wait_log(" subscribe ''")
        at_relay = Raw(r)
        publish(o, 5, 'general', start=26)
        seqs = [m['seq'] for m in decode(at_relay.wait(30))]
        check(seqs == list(range(1, 31)), 'the relay sends 1..30 in order: %r' % seqs)
        check('gaps repaired' in status(r), status(r))
        at_relay.close()
    finally:
        if r:
            r.cleanup()
        o.cleanup()


def run_sub(d, topic, count, timeout=90):
    return subprocess.Popen([os.path.join(BIN, 'newswire-sub'), '--connect', d.endpoint,
                             '--replay', d.replay, '--since', '1', '--count', str(count),
                             '--timeout', str(timeout), topic],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p, n, who):
    out, err = p.communicate(timeout=150)
    check(p.returncode == 0, '%s exit %s: %s' % (who, p.returncode, err[-2000:]))
    seqs = [json.loads(l)['seq'] for l in out.splitlines()]
    check(seqs == list(range(1, n + 1)), '%s: 1..%d once, in order (%d lines, first wrong at %r)'
          % (who, n, len(seqs), next((i for i, s in enumerate(seqs) if s != i + 1), None)))
    check('missed' not in err, '%s: nothing missed: %r' % (who, err[-500:]))


def test_relay_restart_catches_up_without_new_traffic():
    """What the origin published while the relay was down reaches the relay's subscribers
    even when nothing new follows the restart: the relay knows its topics from its
    journal, not only from live traffic (run-all at load 15 failed the test below when
    the burst after the restart went out before the relay's subscription was in place)."""
    with origin_and_relay() as (o, r):
        sub = run_sub(r, 'general', 61)
        r.wait_log(" subscribe '")
        publish(o, 30, 'general')
        wait_for(lambda: forwarded(r) == 30, 'the relay forwarded 30')
        r.proc.send_signal(signal.SIGKILL)
        r.proc.wait()
        r.close_notify()
        publish(o, 30, 'general', start=31)        # while the relay is down; nothing after
        r.start()
        # The relay catches up with no live message to show it the gap (its count starts
        # again at 0 with the process) ...
        wait_for(lambda: forwarded(r) == 30, 'the relay forwarding 31..60 (%r)' % status(r),
                 timeout=60)
        # ... and one more article shows the subscriber, which may have reconnected only
        # after those went out, its own gap: the relay's replay fills it.
        publish(o, 1, 'general', start=61)
        finish(sub, 61, 'newswire-sub on the relay')


def test_relay_kill9_mid_burst_loses_nothing():
    with origin_and_relay() as (o, r):
        sub = run_sub(r, 'general', 300)
        r.wait_log(" subscribe '")
        publish(o, 100, 'general', wait=False)
        wait_for(lambda: ' forwarded' in status(r) and ' 0 forwarded' not in status(r),
                 'the relay forwarding')
        r.proc.send_signal(signal.SIGKILL)          # mid-burst
        r.proc.wait()
        r.close_notify()
        publish(o, 100, 'general', start=101)       # while the relay is down
        r.start()
        r.wait_log('upstream: connected')
        publish(o, 100, 'general', start=201)       # after: reveals the gap
        finish(sub, 300, 'newswire-sub on the relay')


def test_origin_restart_relay_catches_up():
    """Files dropped while the origin is down go out as it starts, before or after the
    relay's SUB is back: the relay asks the origin's replay for what passed while it was
    away as soon as it reconnects, with nothing published after them to reveal a gap."""
    with origin_and_relay() as (o, r):
        sub = run_sub(r, 'general', 60)
        r.wait_log(" subscribe '")
        publish(o, 30, 'general')
        o.stop()
        r.wait_log('upstream: disconnected')
        publish(o, 30, 'general', start=31, wait=False)   # waits in the drop folder
        o.start()
        finish(sub, 60, 'newswire-sub on the relay across an origin restart')
        r.wait_log('upstream: connected', count=2)


def test_topic_filter():
    o = origin().start()
    r = None
    try:
        r = relay(o, ['--upstream-topic', 'sport']).start()
        r.wait_log('upstream: connected')
        o.wait_log(" subscribe 'sport.'")
        at_relay = Raw(r)
        publish(o, 5, 'general')
        publish(o, 5, 'sport.football')
        publish(o, 5, 'sportx')
        publish(o, 5, 'sport')
        publish(o, 1, 'sport', start=6)
        msgs = decode(at_relay.wait(11))
        wait_forwarded(r, 11)
        check(sorted({m['topic'] for m in msgs}) == ['sport', 'sport.football'],
              'only sport and below: %r' % sorted({m['topic'] for m in msgs}))
        check(len(msgs) == 11 and not at_relay.sock.poll(200), 'nothing else')
        at_relay.close()
    finally:
        if r:
            r.cleanup()
        o.cleanup()


def test_chain_of_two_relays():
    o = origin().start()
    r1 = r2 = None
    try:
        r1 = relay(o).start()
        r1.wait_log('upstream: connected')
        r2 = relay(r1).start()
        r2.wait_log('upstream: connected')
        o.wait_log(" subscribe ''")
        r1.wait_log(" subscribe ''")
        at_origin = Raw(o)
        at_edge = Raw(r2)
        publish(o, 40, 'general')
        check(at_edge.wait(40) == at_origin.wait(40), 'the edge sends the origin\'s bytes')
        r1.stop()                                     # the regional relay restarts
        publish(o, 10, 'general', start=41)
        r1.start()
        publish(o, 10, 'general', start=51)
        seqs = [m['seq'] for m in decode(at_edge.wait(60))]
        check(seqs == list(range(1, 61)), 'the edge: 1..60 in order: %r' % seqs)
        at_origin.close()
        at_edge.close()
    finally:
        for d in (r2, r1, o):
            if d:
                d.cleanup()


def keygen(folder, name, topics=None):
    os.makedirs(folder, exist_ok=True)
    cmd = [os.path.join(BIN, 'newswire-keygen')] + (['--topics', topics] if topics else []) + \
          [os.path.join(folder, name)]
    subprocess.run(cmd, check=True, capture_output=True)
    cert = {}
    for line in open(os.path.join(folder, name + '_secret')):
        line = line.strip()
        for k in ('public-key', 'secret-key'):
            if line.startswith(k):
                cert[k] = line.split('=', 1)[1].strip().strip('"')
    return os.path.join(folder, name), os.path.join(folder, name + '_secret'), cert


def test_curve_both_hops():
    o = origin()
    keys = os.path.join(o.root, 'keys')
    o_pub, o_sec, o_cert = keygen(os.path.join(keys, 'origin'), 'origin')
    r_pub, r_sec, r_cert = keygen(os.path.join(keys, 'relay'), 'relay')
    # the origin admits the relay's key; the relay admits one reader granted sport only
    relay_as_client_pub, relay_as_client_sec, _ = keygen(os.path.join(keys, 'relay-client'), 'up', '*')
    o_clients = os.path.join(keys, 'origin-clients')
    os.makedirs(o_clients)
    os.link(relay_as_client_pub, os.path.join(o_clients, 'relay'))
    r_clients = os.path.join(keys, 'relay-clients')
    os.makedirs(r_clients)
    reader_pub, reader_sec, reader = keygen(os.path.join(keys, 'reader'), 'reader', 'sport')
    os.link(reader_pub, os.path.join(r_clients, 'reader'))
    o.args += ['--curve-secret', o_sec, '--clients', o_clients]
    o.start()
    r = None
    try:
        r = relay(o, ['--upstream-cert', relay_as_client_sec, '--upstream-key', o_pub,
                      '--curve-secret', r_sec, '--clients', r_clients]).start()
        r.wait_log('upstream: connected')
        o.wait_log(" subscribe ''")               # the relay's SUB, granted everything
        wait_for(lambda: 'upstream connected' in status(r), 'STATUS connected')
        before = r.log().count(' subscribe ')
        sub = Raw(r, curve=(reader['public-key'].encode(), reader['secret-key'].encode(),
                            r_cert['public-key'].encode()))
        r.wait_log(' subscribe ', count=before + 1)
        publish(o, 5, 'general')
        publish(o, 5, 'sport')
        wait_forwarded(r, 10)
        msgs = decode(sub.wait(5))
        check([m['topic'] for m in msgs] == ['sport'] * 5 and not sub.sock.poll(300),
              'the reader gets its grant only, through the relay: %r' % [m['topic'] for m in msgs])
        sub.close()
        # and at the relay's replay endpoint: its own journal, its own grants
        for topic, want in (('sport', b'sport.'), ('general', b'$error')):
            dealer = zmq.Context.instance().socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.curve_publickey = reader['public-key'].encode()
            dealer.curve_secretkey = reader['secret-key'].encode()
            dealer.curve_serverkey = r_cert['public-key'].encode()
            dealer.connect(r.replay)
            dealer.send(msgpack.packb({'v': 1, 'type': 'replay', 'topic': topic, 'from': 1,
                                       'credit': 10}))
            check(dealer.poll(int(DEADLINE * 1000)), 'a replay reply for %s' % topic)
            f = dealer.recv_multipart()
            check(f[0] == want, 'replay of %s at the relay: %r' % (topic, f[:1]))
            if want == b'$error':
                check(msgpack.unpackb(f[1])['code'] == 'denied', 'denied: %r' % f)
            dealer.close(0)
        # a relay with a key the origin does not admit gets nothing and says so
        bad = relay(o, ['--upstream-cert', r_sec, '--upstream-key', o_pub],
                    root=os.path.join(o.root, 'bad-relay'))
        bad.start()
        try:
            # the good relay getting it shows it went out while the refused one was there
            publish(o, 1, 'general', start=6)
            wait_forwarded(r, 11)
            wait_for(lambda: forwarded(bad) == 0 and 'upstream NOT CONNECTED' in status(bad),
                     'the refused relay reports NOT CONNECTED')
            check('upstream: connected' not in bad.log(), 'no handshake: %s' % bad.log()[-1000:])
        finally:
            bad.cleanup()
    finally:
        if r:
            r.cleanup()
        o.cleanup()


def test_relay_from_config_file():
    """The same keys in the config file: upstream, upstream-replay, upstream-topic
    (repeatable)."""
    o = origin().start()
    r = None
    try:
        r = Daemon(config='newswired\n    upstream = "%s"\n    upstream-replay = "%s"\n'
                          '    upstream-topic = "sport"\n    upstream-topic = "telecoms"\n'
                   % (o.endpoint, o.replay))
        r.replay = 'ipc://' + os.path.join(r.root, 'replay.sock')
        r.args += ['--replay', r.replay]
        r.start()
        r.wait_log('upstream: connected')
        o.wait_log(" subscribe 'telecoms.'")
        publish(o, 3, 'general')
        publish(o, 3, 'sport')
        publish(o, 3, 'telecoms')
        at_relay = run_sub(r, 'telecoms', 3)
        finish(at_relay, 3, 'newswire-sub --since 1 on the relay')
        wait_forwarded(r, 6)
        check('4 topic filters' not in r.log() and '2 topic filters' in r.log(), r.log()[-2000:])
    finally:
        if r:
            r.cleanup()
        o.cleanup()


def replay_frames(endpoint, topic, first=1):
    """Every data reply of a replay of topic from first, up to $end (raw frames)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    sock.send(msgpack.packb({'v': 1, 'type': 'replay', 'topic': topic, 'from': first,
                             'credit': 1000}))
    out = []
    try:
        while True:
            check(sock.poll(int(DEADLINE * 1000)), 'a replay reply from %s' % endpoint)
            f = sock.recv_multipart()
            check(f[0] != b'$error', 'replay error: %r' % f)
            if f[0] == b'$end':
                return out
            out.append(f)
    finally:
        sock.close(0)


def segments(d):
    folder = os.path.join(d.state, 'journal')
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith('.nwj'))


def test_epoch_change_followed():
    """The origin loses its newest segment (the one before is sealed to it): a new epoch
    going on above the seqs it still holds (proto 6.1). A relay started then carries
    both histories as the origin serves them: replay from the relay is the origin's
    replay byte for byte, old epoch then new; and the next live one goes on in it."""
    o = origin(['--segment-size', '4096']).start()
    r = None
    try:
        sub = Raw(o)
        for i in range(1, 21):                        # one group write, so one record, each
            publish(o, 1, 'general', start=i)
            sub.wait(i)
        sub.close()
        check(len(segments(o)) >= 3, 'several segments: %r' % segments(o))
        o.stop()
        os.remove(segments(o)[-1])
        o.start()
        o.wait_log('new epoch')
        publish(o, 2, 'general', start=21)
        r = relay(o).start()
        r.wait_log('upstream: connected')
        o.wait_log(" subscribe ''")
        at_relay = Raw(r)
        publish(o, 1, 'general', start=23)
        want = replay_frames(o.replay, 'general')
        msgs = decode(want)
        epochs = [m['epoch'] for m in msgs]
        check(len(set(epochs)) == 2, 'the origin serves two epochs: %r' % sorted(set(epochs)))
        got = at_relay.wait(len(want))
        check(got == want, 'the relay sent the origin\'s history, old epoch then new, in order')
        check(replay_frames(r.replay, 'general') == want, 'the relay replays what the origin does')
        r.wait_log('follows the upstream\'s epoch %s' % epochs[-1])
        publish(o, 1, 'general', start=24)
        last = decode(at_relay.wait(len(want) + 1))[-1]
        check((last['epoch'], last['seq']) == (epochs[-1], msgs[-1]['seq'] + 1),
              'live goes on in the new epoch: %r' % ((last['epoch'], last['seq']),))
        at_relay.close()
    finally:
        if r:
            r.cleanup()
        o.cleanup()


def test_epoch_restart_below_stops_topic():
    """The origin loses its whole journal: its new epoch starts again at seq 1, below the
    seqs the relay holds. The relay forwards nothing of it (no (epoch, topic, seq) out of
    order, no history mixed under one seq), says so in STATUS and the log; with its
    journal moved aside and restarted it carries the new history from seq 1."""
    with origin_and_relay() as (o, r):
        publish(o, 10, 'general')
        wait_forwarded(r, 10)
        o.stop()
        shutil.rmtree(os.path.join(o.state, 'journal'))
        o.start()
        r.wait_log('upstream: connected', count=2)
        at_relay = Raw(r)
        publish(o, 3, 'general', start=11)
        r.wait_log('upstream: topic general stopped')
        wait_for(lambda: 'UPSTREAM TOPIC general STOPPED' in status(r), 'STATUS says so')
        check(forwarded(r) == 10 and not at_relay.sock.poll(300), 'nothing of it forwarded')
        at_relay.close()
        check(r.stop()[0] == 0, 'the relay stops cleanly')
        shutil.move(os.path.join(r.state, 'journal'), os.path.join(r.state, 'journal.old'))
        r.start()
        r.wait_log('upstream: connected')
        at_relay = Raw(r)
        publish(o, 1, 'general', start=14)
        msgs = decode(at_relay.wait(4))
        check([m['seq'] for m in msgs] == [1, 2, 3, 4] and len({m['epoch'] for m in msgs}) == 1,
              'the new history from seq 1: %r' % [(m['epoch'], m['seq']) for m in msgs])
        at_relay.close()


def test_epoch_restart_below_while_relay_away_stops_topic():
    """As above, but the relay is down while the origin starts again and publishes past
    the seq the relay holds: at its return the next seq (11) is there to fetch, in the
    new epoch. Taken as the next record, it would splice two histories (the relay's 1..10
    of the old epoch, then 11 of the new one: a replay from the relay no longer what the
    origin serves, and 1..10 of the new epoch never sent). The relay first asks the
    origin for seq 10 as it holds it; the origin's 10 is of the new epoch, so the topic
    stops and nothing of the new epoch goes out."""
    with origin_and_relay() as (o, r):
        publish(o, 10, 'general')
        wait_forwarded(r, 10)
        old = replay_frames(r.replay, 'general')
        check(r.stop()[0] == 0, 'the relay stops cleanly')
        o.stop()
        shutil.rmtree(os.path.join(o.state, 'journal'))
        o.start()
        publish(o, 12, 'general', start=11)         # the new epoch's 1..12
        r.start()
        at_relay = Raw(r)
        r.wait_log('upstream: topic general stopped')
        wait_for(lambda: 'UPSTREAM TOPIC general STOPPED' in status(r), 'STATUS says so')
        check(forwarded(r) == 0 and not at_relay.sock.poll(300), 'nothing of it forwarded')
        check(replay_frames(r.replay, 'general') == old, 'the relay still serves 1..10 as before')
        at_relay.close()


def epoch_change_right_above(away):
    """The origin's new epoch goes on right above the seq the relay holds: the relay
    holds 1..k, the whole of the origin's first segment; k + 1, published while the
    relay was down, opened the second segment, which the origin then lost. The new
    epoch's first message (k + 1) goes out while the relay is up (away False: it comes
    live, or by the probe of the relay's new connection if that runs later) or before
    it returns (away True: by its replay); either way the relay first checks that the
    origin still serves seq k as the relay holds it, then follows: a replay from the
    relay is the origin's byte for byte."""
    o = origin(['--segment-size', '4096']).start()
    r = None
    try:
        r = relay(o).start()
        r.wait_log('upstream: connected')
        o.wait_log(" subscribe ''")
        at_relay = Raw(r)
        k = 0
        # one record per group write until the segment is past its size (its file is
        # allocated to 4096 bytes, then grows): the next write opens another
        while os.path.getsize(segments(o)[-1]) <= 4096:
            k += 1
            publish(o, 1, 'general', start=k)
            at_relay.wait(k)                         # journaled at the relay, then sent
        at_relay.close()
        check(len(segments(o)) == 1, 'one segment holds 1..%d' % k)
        check(r.stop()[0] == 0, 'the relay stops cleanly')
        publish(o, 1, 'general', start=k + 1)
        check(len(segments(o)) == 2, 'seq %d opened the second segment' % (k + 1))
        o.stop()
        os.remove(segments(o)[-1])
        o.start()
        o.wait_log('new epoch')
        if not away:
            r.start()
            r.wait_log('upstream: connected')
            o.wait_log(" subscribe ''")
        publish(o, 3, 'general', start=k + 2)        # the new epoch's k+1, k+2, k+3
        want = replay_frames(o.replay, 'general')
        msgs = decode(want)
        epochs = [m['epoch'] for m in msgs]
        check(len(set(epochs)) == 2 and [m['seq'] for m in msgs] == list(range(1, k + 4)) and
              next(m['seq'] for m in msgs if m['epoch'] == epochs[-1]) == k + 1,
              'the origin serves 1..%d, its new epoch from %d: %r'
              % (k + 3, k + 1, [(m['epoch'][:6], m['seq']) for m in msgs]))
        if away:
            r.start()
        r.wait_log('follows the upstream\'s epoch %s from seq %d' % (epochs[-1], k + 1))
        wait_forwarded(r, 3)
        check(replay_frames(r.replay, 'general') == want, 'the relay replays what the origin does')
        check('STOPPED' not in status(r), status(r))
    finally:
        if r:
            r.cleanup()
        o.cleanup()


def test_epoch_change_right_above_followed_live():
    epoch_change_right_above(False)


def test_epoch_change_right_above_followed_after_restart():
    epoch_change_right_above(True)


def scrape(d):
    import urllib.request
    url = re.search(r'metrics on (http://\S+)', d.log()).group(1)
    text = urllib.request.urlopen(url, timeout=DEADLINE).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith('#'):
            name, value = line.rsplit(' ', 1)
            out[name] = float(value)
    return out


def test_relay_metrics():
    """The metrics endpoint says what STATUS says: connected, forwarded, gaps repaired,
    lag summed and per topic."""
    o = origin().start()
    r = None
    try:
        publish(o, 12, 'general')                   # before the relay: fetched by replay
        r = relay(o, ['--metrics', 'tcp://127.0.0.1:0']).start()
        r.wait_log('metrics on ')
        r.wait_log('upstream: connected')
        o.wait_log(" subscribe ''")
        publish(o, 3, 'general', start=13)
        wait_forwarded(r, 15)
        m = scrape(r)
        check(m.get('newswired_upstream_connected') == 1, 'connected: %r' % m)
        check(m.get('newswired_upstream_forwarded_total') == 15, 'forwarded 15: %r' % m)
        # the stream asks up to the upstream's head, which may take the held ones too
        check(m.get('newswired_upstream_gaps_total') == 1 and
              12 <= m.get('newswired_upstream_repaired_total', 0) <= 15,
              'one gap of 12 repaired: %r' % m)
        # at least the gap fill; then a probe at the connection and after the traffic
        check(m.get('newswired_upstream_replays_total', 0) >= 1, 'replays asked: %r' % m)
        check(m.get('newswired_upstream_lag') == 0 and
              m.get('newswired_upstream_topic_lag{topic="general"}') == 0, 'no lag: %r' % m)
        check(m.get('newswired_topic_seq{topic="general"}') == 15, 'seq 15 journaled here')
        o.stop()
        r.wait_log('upstream: disconnected')
        check(scrape(r).get('newswired_upstream_connected') == 0, 'disconnected')
    finally:
        if r:
            r.cleanup()
        o.cleanup()


def test_relay_options_refused():
    d = Daemon(args=['--upstream-replay', 'ipc:///nonexistent/x'])
    try:
        d.start(wait_ready=False)
        rc = d.proc.wait(20)
        check(rc == 1 and 'need --upstream' in d.log(), 'refused: %s %s' % (rc, d.log()))
    finally:
        d.cleanup()
    d = Daemon(args=['--upstream', 'tcp://198.18.0.1:5556'])
    try:
        d.start(wait_ready=False)
        rc = d.proc.wait(20)
        check(rc == 1 and 'is not loopback' in d.log(), 'clear text refused: %s %s' % (rc, d.log()))
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_relay_forwards_byte_for_byte, test_late_joiner_replays_from_relay_without_origin,
         test_relay_starts_on_a_running_feed, test_relay_restart_catches_up_without_new_traffic,
         test_relay_kill9_mid_burst_loses_nothing,
         test_origin_restart_relay_catches_up, test_topic_filter, test_chain_of_two_relays,
         test_curve_both_hops, test_relay_from_config_file, test_epoch_change_followed,
         test_epoch_restart_below_stops_topic,
         test_epoch_restart_below_while_relay_away_stops_topic,
         test_epoch_change_right_above_followed_live,
         test_epoch_change_right_above_followed_after_restart, test_relay_metrics, test_relay_options_refused])
