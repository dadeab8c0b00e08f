"""End to end for the downstream side (issue: clients): newswire-sub and the Python
Subscriber against a fake publisher in this test that sends good, hostile and out of
order messages (packed here from the wire format, so the C decoder is checked against an
independent encoder), and newswire-drop's atomic delivery. The same tools against a
real daemon: test_clients.py.

Waits are on events (the publisher sees the subscription; a process exits), never sleeps.
"""
import glob, json, os, shutil, stat, subprocess, sys, tempfile, threading, time, traceback

try:
    import msgpack
    import zmq
except ImportError:
    print('skip: needs python3-zmq and python3-msgpack')
    sys.exit(77)

import newswire_sub
from nwtest import BIN, DEADLINE, check, run   # no daemon here: only the runner and paths

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.environ.get('NW_PROTO', os.path.join(HERE, '..', '..', 'proto'))


EPOCH_A = '0123456789abcdef0123456789abcdef'
EPOCH_B = 'fedcba9876543210fedcba9876543210'
BODY = 'Line one\twith a tab.\nLine two with caf\u00e9, \u65e5\u672c and a \x01 control char "quoted" \\.'


def message(topic, seq, epoch=EPOCH_A, headline='Fibre reaches the valley', **article):
    a = {'uri': 'urn:newswire:test:%d' % seq, 'type': 'text',
         'versioncreated': '2026-01-02T03:04:05.000Z', 'headline': headline,
         'byline': 'Ann Writer', 'description_text': 'A short standfirst.',
         'body_text': BODY, 'language': 'en', 'subject': [{'name': 'Telecoms'}]}
    a.update(article)
    return {'v': 1, 'topic': topic, 'seq': seq, 'epoch': epoch,
            'id': '%040x' % seq, 'sent': '2026-01-02T03:04:06.789Z',
            'source': {'file': 'valley.txt', 'format': 'scraped'}, 'article': a}


class Publisher:
    """A fake daemon: one XPUB on an ipc endpoint in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='nw-client-')
        self.endpoint = 'ipc://' + os.path.join(self.dir, 'pub.sock')
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.XPUB_VERBOSE, 1)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.bind(self.endpoint)

    def wait_subscribed(self, topics, timeout=DEADLINE):
        want = set(newswire_sub.raw_prefix(t) for t in topics)
        end = time.monotonic() + timeout
        while want:
            left = end - time.monotonic()
            check(left > 0 and self.sock.poll(int(left * 1000)), 'subscriptions %r' % want)
            frame = self.sock.recv()
            if frame[:1] == b'\x01':
                want.discard(frame[1:])

    def send(self, *frames):
        self.sock.send_multipart(list(frames))

    def publish(self, topic, seq, epoch=EPOCH_A, **article):
        self.send(topic.encode() + b'.',
                  msgpack.packb(message(topic, seq, epoch, **article), use_bin_type=True))

    def hostile(self, topic='telecoms'):
        """One of each kind of broken message; every one must be reported and skipped."""
        good = msgpack.packb(message(topic, 99), use_bin_type=True)
        t = topic.encode() + b'.'
        self.send(t, good[:len(good) // 2])                                  # truncated
        self.send(t, b'\xdb\xff\xff\xff\xf0abc')                             # huge str32
        self.send(t, msgpack.packb(dict(message(topic, 98), seq='12')))      # wrong type
        self.send(t)                                                          # one frame
        self.send(t, b'a', b'b', b'c', b'd')                                  # five frames
        self.send(t, msgpack.packb(message(topic + '.other', 97)))           # topic differs
        child = topic + '.5g'           # passes ZeroMQ's "telecoms." filter, no terminator
        self.send(child.encode(), msgpack.packb(message(child, 96), use_bin_type=True))
        return 7

    def close(self):
        self.sock.close()
        self.ctx.term()
        shutil.rmtree(self.dir, ignore_errors=True)


def sub_cmd(*args):
    return [os.path.join(BIN, 'newswire-sub')] + list(args)


def finish(proc, timeout=DEADLINE):
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError('process did not finish: %s' % err)
    return proc.returncode, out, err


def test_sub_json_matching_gaps_hostile():
    pub = Publisher()
    try:
        proc = subprocess.Popen(sub_cmd('--connect', pub.endpoint, '--count', '4',
                                        '--timeout', str(int(DEADLINE)), 'telecoms'),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pub.wait_subscribed(['telecoms'])
        pub.publish('telecomsx', 1)                 # "telecomsx." is outside "telecoms."
        pub.publish('telecoms', 1)
        pub.hostile()
        pub.publish('telecoms', 1)                  # duplicate
        pub.publish('telecoms.5g', 1)
        pub.publish('telecoms', 4)                  # seq 2 and 3 missed
        pub.publish('telecoms', 1, EPOCH_B)         # new epoch: no gap
        rc, out, err = finish(proc)
        check(rc == 3, 'exit 3 after bad messages, got %d: %s' % (rc, err))
        lines = out.splitlines()
        check(len(lines) == 4, 'four JSON lines: %r' % out)
        msgs = [json.loads(line) for line in lines]
        check([(m['topic'], m['seq'], m['epoch']) for m in msgs] ==
              [('telecoms', 1, EPOCH_A), ('telecoms.5g', 1, EPOCH_A),
               ('telecoms', 4, EPOCH_A), ('telecoms', 1, EPOCH_B)], 'order %r' % msgs)
        m = msgs[0]
        check(list(m) == ['topic', 'seq', 'epoch', 'id', 'sent', 'source', 'article'],
              'keys %r' % list(m))
        check(m['source'] == {'file': 'valley.txt', 'format': 'scraped'}, 'source')
        want = message('telecoms', 1)['article']
        check(m['article'] == want, 'article round trip: %r' % m['article'])
        check('caf\u00e9' in lines[0] and '\\u0001' in lines[0], 'UTF-8 kept, control escaped')
        check(err.count('warning') >= 7, 'a warning per bad message and the gap: %s' % err)
        check('missed 2 articles' in err and 'seq 2..3' in err, 'gap warning: %s' % err)
        check('frame' in err, 'frame count reported: %s' % err)
    finally:
        pub.close()


def test_sub_text_and_everything():
    pub = Publisher()
    try:
        proc = subprocess.Popen(sub_cmd('--connect', pub.endpoint, '--format', 'text',
                                        '--count', '2', '--timeout', str(int(DEADLINE))),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        pub.wait_subscribed([''])
        pub.publish('general', 1, headline='Quiet day at the exchange')
        pub.publish('telecoms.5g', 7, headline='Masts go up')
        rc, out, err = finish(proc)
        check(rc == 0, 'exit 0: %d %s' % (rc, err))
        check('== general #1' in out and 'Quiet day at the exchange' in out, out)
        check('Masts go up' in out and 'By Ann Writer' in out and 'Line one' in out, out)
    finally:
        pub.close()


def test_sub_errors():
    rc, _, err = finish(subprocess.Popen(sub_cmd('--connect', 'nonsense', '--count', '1'),
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True))
    check(rc == 1 and 'nonsense' in err, 'bad endpoint: %d %s' % (rc, err))
    rc, _, err = finish(subprocess.Popen(sub_cmd('Bad Topic'), stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True))
    check(rc == 1 and 'Bad Topic' in err, 'bad topic: %d %s' % (rc, err))
    rc, _, err = finish(subprocess.Popen(sub_cmd('--format', 'xml'), stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True))
    check(rc == 1 and 'xml' in err, 'bad format: %d %s' % (rc, err))
    pub = Publisher()   # nobody publishes: --timeout must end it
    try:
        rc, _, err = finish(subprocess.Popen(sub_cmd('--connect', pub.endpoint, '--count', '1',
                                                     '--timeout', '1'),
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             text=True))
        check(rc == 2 and 'timed out' in err, 'timeout: %d %s' % (rc, err))
    finally:
        pub.close()


def test_python_subscriber():
    pub = Publisher()
    gaps, bad = [], []
    try:
        with newswire_sub.Subscriber([pub.endpoint], ['telecoms'],
                                     on_gap=lambda *g: gaps.append(g),
                                     on_bad=bad.append) as sub:
            pub.wait_subscribed(['telecoms'])
            pub.publish('telecomsx', 1)
            pub.publish('telecoms', 1)
            n_bad = pub.hostile()
            pub.publish('telecoms', 1)
            pub.publish('telecoms', 3)
            pub.publish('telecoms', 1, EPOCH_B)
            got = [sub.recv(DEADLINE) for _ in range(3)]
            check(all(got), 'three messages: %r' % got)
            check([(m['topic'], m['seq'], m['gap_before'], m['epoch_changed']) for m in got]
                  == [('telecoms', 1, 0, False), ('telecoms', 3, 1, False),
                      ('telecoms', 1, 0, True)], 'got %r' % got)
            check(gaps == [('telecoms', EPOCH_A, 2, 2)], 'gaps %r' % gaps)
            check(len(bad) == n_bad and sub.bad == n_bad, 'bad %r' % bad)
            check(sub.duplicates == 1, 'duplicates %d' % sub.duplicates)
            line = json.loads(newswire_sub.to_json(got[0]))
            check(line['article']['body_text'] == BODY, 'JSON round trip')
            check(sub.recv(0) is None, 'nothing else')
        check(newswire_sub.topic_matches('telecoms', 'telecoms.5g'), 'child matches')
        check(not newswire_sub.topic_matches('telecoms', 'telecomsx'), 'sibling does not')
        check(newswire_sub.topic_matches('', 'anything'), '"" matches all')
        check(newswire_sub.raw_prefix('telecoms') == b'telecoms.', 'raw form terminated')
        check(newswire_sub.raw_prefix('') == b'', 'raw form of everything')
    finally:
        pub.close()


def test_python_decoder_vectors():
    """The spec-only Python decoder agrees with the test vectors of proto/vectors."""
    vectors = sorted(glob.glob(os.path.join(PROTO, 'vectors', '*.mp')))
    check(len(vectors) > 10, 'vectors found in %s' % PROTO)
    for path in vectors:
        data = open(path, 'rb').read()
        if os.path.basename(path).startswith('bad-'):
            try:
                newswire_sub.decode_body(data)
                raise AssertionError('%s accepted' % path)
            except newswire_sub.BadMessage:
                pass
        else:
            with open(path[:-3] + '.json') as f:
                want = json.load(f)
            check(newswire_sub.decode_body(data) == want, 'decoded %s' % path)


def drop(*args, stdin=None):
    p = subprocess.run([os.path.join(BIN, 'newswire-drop')] + list(args), input=stdin,
                       capture_output=True, text=True, timeout=DEADLINE)
    return p.returncode, p.stdout, p.stderr


def test_drop():
    root = tempfile.mkdtemp(prefix='nw-drop-')
    try:
        d = os.path.join(root, 'drop')
        os.mkdir(d)
        src = os.path.join(root, 'story.txt')
        with open(src, 'w') as f:
            f.write('Title: A story\n\nBody.\n')
        old = os.umask(0o022)
        try:
            rc, out, err = drop('--drop', d, src)
            check(rc == 0 and out.strip() == os.path.join(d, 'story.txt'), '%d %r %s' % (rc, out, err))
            rc, out, _ = drop('--drop', d, src, src)
            check(rc == 0 and out.split() == [os.path.join(d, 'story-1.txt'),
                                              os.path.join(d, 'story-2.txt')], out)
        finally:
            os.umask(old)
        check(sorted(os.listdir(d)) == ['story-1.txt', 'story-2.txt', 'story.txt'],
              'no temporary left, nothing replaced: %r' % os.listdir(d))
        check(open(os.path.join(d, 'story-2.txt')).read() == 'Title: A story\n\nBody.\n', 'content')
        check(stat.S_IMODE(os.stat(os.path.join(d, 'story.txt')).st_mode) == 0o644, 'mode 0644')

        rc, out, err = drop('--drop', d, '--subject', 'Telecoms & 5G', src)
        check(rc == 0 and os.path.exists(os.path.join(d, 'telecoms-5g', 'story.txt')),
              'subject folder: %d %s %s' % (rc, out, err))
        rc, out, err = drop('--drop', d, '-', stdin='Title: From a pipe\n\nBody.\n')
        name = os.path.basename(out.strip())
        check(rc == 0 and name.startswith('stdin-') and name.endswith('.txt'), out + err)
        check(open(out.strip()).read() == 'Title: From a pipe\n\nBody.\n', 'stdin content')

        rc, _, err = drop('--drop', os.path.join(root, 'missing'), src)
        check(rc == 1 and 'missing' in err, 'missing drop folder: %d %s' % (rc, err))
        rc, _, err = drop('--drop', d, os.path.join(root, 'nope.txt'), src)
        check(rc == 1 and 'nope.txt' in err, 'missing file: %d %s' % (rc, err))
        check(os.path.exists(os.path.join(d, 'story-3.txt')), 'the good file still delivered')
        rc, _, err = drop('--drop', d, '--subject', '&&&', src)
        check(rc == 1 and 'subject' in err, 'unusable subject: %d %s' % (rc, err))
        check(not [n for n in os.listdir(d) if n.startswith('.')], 'no hidden leftovers')
    finally:
        shutil.rmtree(root, ignore_errors=True)


class FakeReplay(threading.Thread):
    """A fake daemon's replay side (ROUTER, specification section 8) serving journal[topic] =
    (oldest, head), honouring credit; "$TERM" on its pipe ends it."""

    def __init__(self, ctx, journal, busy=None):
        super().__init__(daemon=True)
        self.journal, self.requests, self.credits = journal, [], 0
        self.busy = dict(busy or {})       # topic -> how many requests to answer "busy"
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.port = self.sock.bind_to_random_port('tcp://127.0.0.1')
        self.endpoint = 'tcp://127.0.0.1:%d' % self.port
        self.stop = False
        self.start()

    def control(self, peer, kind, **keys):
        self.sock.send_multipart([peer, b'$' + kind.encode(), msgpack.packb(
            dict({'v': 1, 'type': kind}, **keys))])

    def run(self):
        stream = None              # [peer, topic, next, end, credit, from]
        while not self.stop:
            if stream and stream[4] > 0 and stream[2] <= stream[3]:
                peer, topic = stream[0], stream[1]
                self.sock.send_multipart([peer, topic.encode() + b'.', msgpack.packb(
                    message(topic, stream[2]), use_bin_type=True)])
                stream[2] += 1
                stream[4] -= 1
            elif stream and stream[2] > stream[3]:
                self.control(stream[0], 'end', topic=stream[1], **{
                    'from': stream[5], 'last': stream[3], 'head': self.journal[stream[1]][1]})
                stream = None
            if not self.sock.poll(0 if stream and stream[4] > 0 else 50):
                continue
            peer, body = self.sock.recv_multipart()
            req = msgpack.unpackb(body, raw=False)
            if req['type'] == 'credit':
                self.credits += 1
                if stream:       # credit may cross the $end of the stream it was for
                    stream[4] += req['credit']
                continue
            self.requests.append(req)
            if self.busy.get(req['topic'], 0) > 0:
                self.busy[req['topic']] -= 1
                self.control(peer, 'error', topic=req['topic'], code='busy', reason='full')
                stream = None
                continue
            oldest, head = self.journal[req['topic']]
            if req['from'] < oldest:
                self.control(peer, 'error', topic=req['topic'], code='retention',
                             reason='older than the journal', oldest=oldest)
                stream = None
                continue
            stream = [peer, req['topic'], req['from'], min(req.get('to', head), head),
                      req['credit'], req['from']]


def test_python_replay_busy():
    """"busy" is not a loss for the Python Subscriber: it asks again, backing off, and the
    gap fills; a daemon busy every time gets the gap reported after the last try."""
    pub = Publisher()
    fake = FakeReplay(pub.ctx, {'full': (1, 10), 'never': (1, 10)}, busy={'full': 3, 'never': 99})
    gaps = []
    try:
        sub = newswire_sub.Subscriber([pub.endpoint], ['full', 'never'], replay=fake.endpoint,
                                      on_gap=lambda *g: gaps.append(g), replay_idle=0)
        pub.wait_subscribed(['full', 'never'])
        pub.publish('full', 1)
        pub.publish('full', 10)
        got = [sub.recv(DEADLINE) for _ in range(10)]
        check([m and m['seq'] for m in got] == list(range(1, 11)), 'full 1..10 in order')
        check(sub.gaps == 0 and not gaps and sub.replay_errors == 0, 'nothing lost')
        check([(r['topic'], r['from']) for r in fake.requests] == [('full', 2)] * 4,
              'asked 4 times: %r' % fake.requests)
        pub.publish('never', 1)
        pub.publish('never', 10)
        got = [sub.recv(DEADLINE) for _ in range(2)]
        check([m and m['seq'] for m in got] == [1, 10] and got[1]['gap_before'] == 8,
              'never: 1, then 10 after giving 2..9 up: %r' % [m and m['seq'] for m in got])
        check(gaps == [('never', EPOCH_A, 2, 9)] and 'busy' in sub.last_error,
              'reported %r %r' % (gaps, sub.last_error))
        check(len([r for r in fake.requests if r['topic'] == 'never']) == 7, 'asked 7 times')
        sub.close()
    finally:
        fake.stop = True


def test_python_replay_fake():
    """The Python Subscriber's gap filling: a live gap is replayed with credit top-ups
    (more than one credit's worth); one older than the journal is partly reported lost."""
    pub = Publisher()
    fake = FakeReplay(pub.ctx, {'fill': (1, 400), 'old': (5, 8)})
    gaps = []
    try:
        sub = newswire_sub.Subscriber([pub.endpoint], ['fill', 'old'], replay=fake.endpoint,
                                      on_gap=lambda *g: gaps.append(g), replay_idle=0)
        pub.wait_subscribed(['fill', 'old'])
        pub.publish('fill', 1)
        pub.publish('fill', 400)
        pub.publish('fill', 399)      # a duplicate of a replayed one, arriving live
        got = [sub.recv(DEADLINE) for _ in range(400)]
        check([m and m['seq'] for m in got] == list(range(1, 401)), 'fill 1..400 in order')
        check(sub.replayed == 398 and sub.gaps == 0 and not gaps, 'all replayed')
        check(fake.credits >= 2, 'credit was topped up: %d' % fake.credits)
        pub.publish('old', 1)
        pub.publish('old', 8)
        got = [sub.recv(DEADLINE) for _ in range(4)]
        check([m and m['seq'] for m in got] == [1, 5, 6, 7] and got[1]['gap_before'] == 3,
              'old: 1 then 5..7: %r' % [m and m['seq'] for m in got])
        m = sub.recv(DEADLINE)
        check(m and m['seq'] == 8 and sub.recv(0.1) is None, 'then the held 8, nothing more')
        check(gaps == [('old', EPOCH_A, 2, 4)] and 'retention' in sub.last_error,
              'lost 2..4 reported: %r %r' % (gaps, sub.last_error))
        check([(r['topic'], r['from'], r.get('to')) for r in fake.requests]
              == [('fill', 2, 399), ('old', 2, 7), ('old', 5, 7)], 'requests %r' % fake.requests)
        sub.close()
    finally:
        fake.stop = True
        fake.join()
        fake.sock.close()
        pub.close()


if __name__ == '__main__':
    run([test_sub_json_matching_gaps_hostile, test_sub_text_and_everything, test_sub_errors,
         test_python_subscriber, test_python_decoder_vectors, test_drop, test_python_replay_fake,
         test_python_replay_busy])
