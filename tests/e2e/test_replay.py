"""End to end: replay over the daemon's ROUTER endpoint (proto/newswire-v1.md section 8),
with raw DEALER sockets and msgpack, independent of the project's C code.

Every wait has a deadline; credit is proven by reply order on one pipe (ZeroMQ keeps a
pipe's order), a short negative poll is only an extra check."""
import os, time

import msgpack
import zmq

from nwtest import DEADLINE, Daemon, RawSub, check, frame0, header_article, run

TOPIC = 'telecoms'


class Replayer:
    def __init__(self, d, ident=None):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        if ident:
            self.sock.setsockopt(zmq.IDENTITY, ident)
        self.sock.connect(d.replay)

    def send(self, **req):
        self.sock.send(msgpack.packb(dict({'v': 1}, **req)))

    def send_raw(self, *frames):
        self.sock.send_multipart(list(frames))

    def recv(self, timeout=DEADLINE):
        check(self.sock.poll(int(timeout * 1000)), 'a reply within %ss' % timeout)
        f = self.sock.recv_multipart()
        check(len(f) == 2, 'replies have 2 frames, got %d' % len(f))
        return f

    def nothing(self, ms=200):
        return not self.sock.poll(ms)

    def control(self, what):
        f = self.recv()
        check(f[0] == what.encode(), 'expected %s, got %r' % (what, f[0][:40]))
        body = msgpack.unpackb(f[1], raw=False)
        check(body['v'] == 1 and body['type'] == what[1:], 'reply body %r' % body)
        return body

    def error(self, code):
        body = self.control('$error')
        check(body['code'] == code, 'error %s expected, got %r' % (code, body))
        return body

    def collect(self, credit_step=None):
        """Data until $end (granting credit_step more after each credit_step received)."""
        data = []
        while True:
            f = self.recv()
            if f[0] == b'$end':
                return data, msgpack.unpackb(f[1], raw=False)
            check(f[0] != b'$error', 'error %r' % msgpack.unpackb(f[1], raw=False))
            data.append(f)
            if credit_step and len(data) % credit_step == 0:
                self.send(type='credit', credit=credit_step)

    def close(self):
        self.sock.close(0)


def seq_of(frame):
    return msgpack.unpackb(frame[1], raw=False)['seq']


def started(n=0, args=()):
    d = Daemon(args=list(args))
    d.replay = 'ipc://' + os.path.join(d.root, 'replay.sock')
    d.args += ['--replay', d.replay]
    d.start()
    live = RawSub(d, TOPIC)
    publish(d, live, n)
    return d, live


def publish(d, live, n, tag='a'):
    have = len(live.frames)
    for i in range(n):
        d.drop_text('%s%04d.txt' % (tag, i), header_article(
            'Story %s number %d about spectrum' % (tag, i), Subject='Telecoms',
            body='Paragraph %s %d of the body, with words.\n\nAnother paragraph.' % (tag, i)))
    frames = live.wait(have + n)
    check([seq_of(f) for f in frames] == list(range(1, len(frames) + 1)),
          'live seqs 1..N: %r' % [seq_of(f) for f in frames])
    return frames


def test_replay_from_1_is_byte_identical():
    d, live = started(12)
    try:
        r = Replayer(d)
        r.send(type='replay', topic=TOPIC, **{'from': 1}, credit=1000)
        data, end = r.collect()
        check(data == live.frames, 'replayed frames equal the live ones byte for byte')
        check(end == {'v': 1, 'type': 'end', 'topic': TOPIC, 'from': 1, 'last': 12, 'head': 12},
              'end %r' % end)
        # from beyond the head: an immediate end with nothing sent
        r.send(type='replay', topic=TOPIC, **{'from': 13}, credit=5)
        end = r.control('$end')
        check(end['last'] == 0 and end['head'] == 12 and end['from'] == 13, 'end %r' % end)
        r.close()
        check(d.stop()[0] == 0, 'clean exit')
    finally:
        d.cleanup()


def test_last_and_to():
    d, live = started(10)
    try:
        r = Replayer(d)
        r.send(type='replay', topic=TOPIC, last=3, credit=10)
        data, end = r.collect()
        check(data == live.frames[7:], 'the newest 3: %r' % [seq_of(f) for f in data])
        check(end['from'] == 8 and end['last'] == 10, 'end %r' % end)
        r.send(type='replay', topic=TOPIC, last=50, credit=100)
        data, end = r.collect()
        check(data == live.frames and end['from'] == 1, 'last beyond the head: everything')
        r.send(type='replay', topic=TOPIC, **{'from': 4, 'to': 6}, credit=10)
        data, end = r.collect()
        check([seq_of(f) for f in data] == [4, 5, 6], 'from 4 to 6: %r' % [seq_of(f) for f in data])
        check(end['last'] == 6 and end['head'] == 10, 'end %r' % end)
        # credit exactly what the range needs: the end still comes
        r.send(type='replay', topic=TOPIC, **{'from': 1, 'to': 5}, credit=5)
        data, end = r.collect()
        check(len(data) == 5 and end['last'] == 5, 'exact credit: %d, %r' % (len(data), end))
        r.send(type='replay', topic=TOPIC, **{'from': 9}, credit=2)
        data, end = r.collect()
        check(len(data) == 2 and end['last'] == 10, 'exact credit to the head: %r' % end)
    finally:
        d.cleanup()


def test_unknown_topic():
    d, live = started(1)
    try:
        r = Replayer(d)
        r.send(type='replay', topic='no-such.topic', **{'from': 1}, credit=10)
        body = r.error('unknown-topic')
        check(body['topic'] == 'no-such.topic' and isinstance(body['reason'], str), 'body %r' % body)
        check('oldest' not in body, 'no oldest on unknown-topic')
        # the prefix of a topic is not a topic
        r.send(type='replay', topic='telecom', **{'from': 1}, credit=10)
        r.error('unknown-topic')
    finally:
        d.cleanup()


def test_credit_bounds_what_is_sent():
    d, live = started(10)
    try:
        r = Replayer(d)
        r.send(type='replay', topic=TOPIC, **{'from': 1}, credit=2)
        first = [r.recv(), r.recv()]
        check([seq_of(f) for f in first] == [1, 2], 'seqs 1, 2')
        check(r.nothing(200), 'nothing beyond the credit (short poll)')
        # the proof: a third message, had it been sent, would sit in the pipe ahead of
        # the reply to the request below
        r.send(type='cancel')
        r.send(type='replay', topic=TOPIC, last=1, credit=1)
        f = r.recv()
        check(f[0] == frame0(TOPIC) and seq_of(f) == 10,
              'after cancel the next reply belongs to the new stream: seq %s' % seq_of(f))
        check(r.control('$end')['last'] == 10, 'end of the new stream')

        # granting more credit releases exactly that many
        r2 = Replayer(d)
        r2.send(type='replay', topic=TOPIC, **{'from': 1}, credit=2)
        check([seq_of(r2.recv()) for _ in range(2)] == [1, 2], 'seqs 1, 2')
        r2.send(type='credit', credit=3)
        check([seq_of(r2.recv()) for _ in range(3)] == [3, 4, 5], 'seqs 3..5')
        # a new replay cancels: the rest of the old stream never comes
        r2.send(type='replay', topic=TOPIC, **{'from': 9}, credit=10)
        data, end = r2.collect()
        check([seq_of(f) for f in data] == [9, 10] and end['from'] == 9, 'replaced stream')
        # credit with no stream is ignored, the next request is answered
        r2.send(type='credit', credit=5)
        r2.send(type='replay', topic=TOPIC, last=1, credit=1)
        check(seq_of(r2.recv()) == 10, 'the stream after stray credit')
        r2.control('$end')
        # credit granted step by step through a long stream
        r2.send(type='replay', topic=TOPIC, **{'from': 1}, credit=3)
        data, end = r2.collect(credit_step=3)
        check([seq_of(f) for f in data] == list(range(1, 11)) and end['last'] == 10, 'stepwise')
    finally:
        d.cleanup()


def test_retention():
    d, live = started(0, args=['--segment-size', '4096', '--journal-max-size', '8192'])
    try:
        # seq 1 lives in the first segment; retirement happens at group writes, and how
        # many articles one write holds depends on timing: publish until it is gone
        for rnd in range(30):
            publish(d, live, 10, tag='r%d-' % rnd)
            if '000000000001.nwj' not in os.listdir(os.path.join(d.state, 'journal')):
                break
        check(rnd < 29, 'the first segment was retired')
        n = len(live.frames)
        r = Replayer(d)
        r.send(type='replay', topic=TOPIC, **{'from': 1}, credit=100)
        body = r.error('retention')
        oldest = body['oldest']
        check(1 < oldest <= n and body['topic'] == TOPIC, 'oldest %r' % body)
        r.send(type='replay', topic=TOPIC, **{'from': oldest}, credit=100)
        data, end = r.collect()
        check(data == live.frames[oldest - 1:], 'from oldest: %r' % [seq_of(f) for f in data])
        check(end['last'] == n, 'end %r' % end)
        r.send(type='replay', topic=TOPIC, last=1000, credit=1000)
        data, end = r.collect()
        check(end['from'] == oldest and len(data) == n + 1 - oldest, '"last" clamps to the oldest')
    finally:
        d.cleanup()


def test_bad_requests_then_serving():
    d, live = started(3)
    try:
        r = Replayer(d)
        good = {'v': 1, 'type': 'replay', 'topic': TOPIC, 'from': 1, 'credit': 5}

        def packed(**change):
            m = dict(good, **change)
            return msgpack.packb({k: v for k, v in m.items() if v is not None})
        bad = [
            b'',
            b'\xc1garbage',                                     # reserved byte
            b'not msgpack at all',
            msgpack.packb([1, 'replay']),                       # not a map
            packed(topic=5),                                    # wrong types
            packed(credit='5'),
            packed(**{'from': -1}),
            packed(**{'from': 0}),
            packed(credit=0),
            packed(credit=1001),
            packed(v=2),
            packed(v=None),
            packed(type='subscribe'),
            packed(topic='Bad Topic'),
            packed(topic='$end'),
            packed(topic='a..b'),
            packed(topic='x' * 256),
            packed(last=3),                                     # both from and last
            packed(**{'from': 5, 'to': 4}),
            packed(credit=None),
            packed(**{'nested': {'a': 1}}),
            b'\x81\xdb\xff\xff\xff\xff' + b'x' * 10,            # huge declared str
            b'\xdf\xff\xff\xff\xff' + b'\xa1v\x01',             # map of 2^32-1 entries
            b'\x85' + b'\xa1v\x01' * 5,                         # duplicate keys
            b'\xde\x00\x11' + b''.join(msgpack.packb('k%d' % i) + b'\x01' for i in range(17)),
            packed() + b'\x00',                                 # bytes after the map
            packed()[:-1],                                      # truncated
            packed(pad='p' * 4200),                             # larger than 4096
        ]
        for i, frame in enumerate(bad):
            r.send_raw(frame)
            body = r.error('bad-request')
            check(isinstance(body['reason'], str) and body['reason'], 'reason for #%d' % i)
        r.send_raw(packed(), packed(), packed(), packed(), packed())   # 5 frames
        r.error('bad-request')
        # a frame far beyond the limit costs that connection, not the daemon
        big = Replayer(d)
        big.send_raw(b'\x00' * 200000)
        check(big.nothing(300), 'no reply to a frame beyond the socket limit')
        # still serving, and unknown keys are ignored (later revisions add keys)
        r.send_raw(packed(future='x'))
        data, end = r.collect()
        check(data == live.frames and end['last'] == 3, 'serves after bad requests')
        r2 = Replayer(d)
        r2.send(type='replay', topic=TOPIC, **{'from': 1}, credit=5)
        check(len(r2.collect()[0]) == 3, 'a new client is served')
        check(d.proc.poll() is None, 'daemon alive')
    finally:
        d.cleanup()


def test_many_clients_while_live_continues():
    d, live = started(200)
    try:
        clients = [Replayer(d) for _ in range(50)]
        for c in clients:
            c.send(type='replay', topic=TOPIC, **{'from': 1, 'to': 200}, credit=64)
        # articles keep arriving while the replays run, and reach the live subscriber
        publish(d, live, 20, tag='b')
        poller = zmq.Poller()
        for c in clients:
            poller.register(c.sock, zmq.POLLIN)
        got = {c.sock: [] for c in clients}
        ends = {}
        by_sock = {c.sock: c for c in clients}
        deadline = DEADLINE * 3
        t_end = time.monotonic() + deadline
        while len(ends) < len(clients):
            check(time.monotonic() < t_end, 'all replays finish: %d ended' % len(ends))
            for sock, _ in poller.poll(200):
                while sock.poll(0):
                    f = sock.recv_multipart()
                    if f[0] == b'$end':
                        ends[sock] = msgpack.unpackb(f[1], raw=False)
                        continue
                    check(f[0] == frame0(TOPIC), 'data or end only: %r' % f[0][:40])
                    got[sock].append(f)
                    if len(got[sock]) % 64 == 0:
                        by_sock[sock].send(type='credit', credit=64)
        for sock, frames in got.items():
            check(frames == live.frames[:200], 'every client got 1..200 byte-identical')
            check(ends[sock]['last'] == 200, 'end %r' % ends[sock])
        rc, took = d.stop()
        check(rc == 0, 'clean exit %r' % rc)
    finally:
        d.cleanup()


def test_stop_with_streams_waiting():
    d, live = started(30)
    try:
        clients = [Replayer(d) for _ in range(10)]
        for c in clients:
            c.send(type='replay', topic=TOPIC, **{'from': 1}, credit=5)
        for c in clients:
            check([seq_of(c.recv()) for _ in range(5)] == [1, 2, 3, 4, 5], 'first 5')
        rc, took = d.stop()
        check(rc == 0 and took < 5, 'exits promptly with streams open: %r %.2f' % (rc, took))
        check('ERROR' not in d.log() and 'AddressSanitizer' not in d.log(), d.log())
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_replay_from_1_is_byte_identical, test_last_and_to,
         test_unknown_topic, test_credit_bounds_what_is_sent,
         test_retention, test_bad_requests_then_serving,
         test_many_clients_while_live_continues, test_stop_with_streams_waiting])
