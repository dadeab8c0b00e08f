"""End to end (issue: security): CurveZMQ on the live and replay endpoints, keys from
newswire-keygen, per-key topic grants, and clear text refused off loopback.

Absence is proven by ordering, not by waiting: a control subscriber granted everything
receives a marker published after the messages under test; one ZeroMQ connection
delivers in order, so by the time another client's marker arrives, anything it was
going to get before the marker has arrived too.
"""
import os, signal, socket, subprocess, tempfile, threading, time

import msgpack
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from nwtest import (BIN, DEADLINE, Daemon, Failure, check, frame0, header_article, raw_prefix,
                    run, wait_for)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def keygen(path, topics=None):
    cmd = [os.path.join(BIN, 'newswire-keygen')] + (['--topics', topics] if topics else []) + [path]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out.stdout.strip()


class Keys:
    """A server key, a --clients folder, and client keys in and out of it."""

    def __init__(self, root):
        self.root = root
        self.clients = os.path.join(root, 'clients')
        self.private = os.path.join(root, 'private')
        os.makedirs(self.clients)
        os.makedirs(self.private)
        keygen(os.path.join(self.private, 'server'))
        self.server_secret = os.path.join(self.private, 'server_secret')
        self.server_public = zmq.auth.load_certificate(os.path.join(self.private, 'server'))[0]

    def client(self, name, topics=None, allowed=True):
        """Generate a pair; with allowed, publish the public half into --clients."""
        keygen(os.path.join(self.private, name), topics)
        if allowed:
            self.allow(name)
        return zmq.auth.load_certificate(os.path.join(self.private, name + '_secret'))

    def allow(self, name):
        src = os.path.join(self.private, name)
        tmp = os.path.join(self.clients, '.' + name + '.tmp')
        with open(src) as f, open(tmp, 'w') as g:
            g.write(f.read())
        os.rename(tmp, os.path.join(self.clients, name))

    def args(self):
        return ['--curve-secret', self.server_secret, '--clients', self.clients]


def secure(sock, keys, pair):
    sock.curve_publickey, sock.curve_secretkey = pair
    sock.curve_serverkey = keys.server_public


class Client:
    """A SUB socket (CURVE when given a key pair) with a monitor for handshake results.
    topics are topic names (subscribed in the terminated raw form); raw are ZeroMQ
    prefixes subscribed as given (bytes)."""

    def __init__(self, endpoint, keys=None, pair=None, topics=('',), raw=()):
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.linger = 0
        if pair:
            secure(self.sock, keys, pair)
        self.monitor = self.sock.get_monitor_socket()
        self.events = []
        self.messages = []
        self.sock.connect(endpoint)
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, raw_prefix(t))
        for r in raw:
            self.sock.setsockopt(zmq.SUBSCRIBE, r)

    def pump_events(self):
        while self.monitor.poll(0):
            ev = recv_monitor_message(self.monitor)
            self.events.append(ev['event'])

    def wait_event(self, events, what):
        def seen():
            self.pump_events()
            return any(e in events for e in self.events)
        wait_for(seen, what)

    def drain(self, until_headline, timeout=DEADLINE):
        end = time.monotonic() + timeout
        while True:
            if any(m['article']['headline'] == until_headline for m in self.messages):
                return self.messages
            left = end - time.monotonic()
            if left <= 0:
                raise Failure('no %r within %ss; got %r' % (until_headline, timeout,
                              [m['topic'] for m in self.messages]))
            if self.sock.poll(int(min(left, 0.2) * 1000) + 1):
                frames = self.sock.recv_multipart()
                body = msgpack.unpackb(frames[1], raw=False)
                check(frames[0] == frame0(body['topic']), 'frame 0 %r on %r' % (frames[0], body['topic']))
                self.messages.append(body)

    def topics(self):
        return [m['topic'] for m in self.messages]

    def close(self):
        self.sock.disable_monitor()
        self.monitor.close(0)
        self.sock.close(0)


def curve_daemon(extra_args=(), config=None, replay=False):
    root = tempfile.mkdtemp(prefix='nw-sec-')
    keys = Keys(root)
    port = free_port()
    args = keys.args() + list(extra_args)
    if replay:
        replay_endpoint = 'tcp://127.0.0.1:%d' % free_port()
        args += ['--replay', replay_endpoint]
    d = Daemon(root=root, args=args, config=config, endpoint='tcp://127.0.0.1:%d' % port)
    d.own_root = True
    d.keys = keys
    if replay:
        d.replay_endpoint = replay_endpoint
    return d


def wait_key_subscribed(d, name, count=1):
    d.wait_log('key %s: subscribe' % name, count=count)


def publish_and_mark(d, control, articles, marker='Marker telecoms'):
    """Drop the articles one by one (each seen by control, so their order is fixed), then
    a telecoms marker."""
    for i, (subject, title) in enumerate(articles):
        d.drop_text('a%02d.txt' % i, header_article(title, Subject=subject))
        control.drain(title)
    d.drop_text('marker.txt', header_article(marker, Subject='telecoms'))
    control.drain(marker)


def test_grant_narrows_subscribe_all():
    d = curve_daemon()
    clients = []
    try:
        admin = d.keys.client('admin', topics='*')
        alice = d.keys.client('alice', topics='telecoms')
        d.start()
        control = Client(d.endpoint, d.keys, admin)
        clients.append(control)
        wait_key_subscribed(d, 'admin')
        a = Client(d.endpoint, d.keys, alice)      # subscribes to everything
        clients.append(a)
        wait_key_subscribed(d, 'alice')
        d.wait_log("subscription '' from key alice narrowed to its grants: 'telecoms.'")
        publish_and_mark(d, control, [('sport.football', 'Cup final tonight'),
                                      ('telecoms.5g', 'Masts go up'),
                                      ('geopolitics', 'Summit opens'),
                                      ('telecoms', 'Operators merge')])
        got = a.drain('Marker telecoms')
        check(a.topics() == ['telecoms.5g', 'telecoms', 'telecoms'],
              'alice gets telecoms and below only: %r' % a.topics())
        check(len(control.messages) == 5, 'control saw all: %r' % control.topics())
        check(all(m['topic'].startswith('telecoms') for m in got), 'only telecoms')
    finally:
        for c in clients:
            c.close()
        d.cleanup()


def test_denied_subscription_logged_with_key_name():
    d = curve_daemon()
    clients = []
    try:
        admin = d.keys.client('admin', topics='*')
        carol = d.keys.client('carol', topics='telecoms')
        d.start()
        control = Client(d.endpoint, d.keys, admin)
        clients.append(control)
        wait_key_subscribed(d, 'admin')
        c = Client(d.endpoint, d.keys, carol, topics=('geopolitics', 'telecoms'))
        clients.append(c)
        d.wait_log("denied subscription 'geopolitics.' from key carol")
        wait_key_subscribed(d, 'carol')
        publish_and_mark(d, control, [('geopolitics', 'Summit opens')])
        c.drain('Marker telecoms')
        check(c.topics() == ['telecoms'], 'carol: %r' % c.topics())
    finally:
        for c in clients:
            c.close()
        d.cleanup()


def test_config_grants_section():
    d = curve_daemon(config='grants\n    dave = "geopolitics"\n')
    clients = []
    try:
        admin = d.keys.client('admin', topics='*')
        dave = d.keys.client('dave')                      # no topics in the certificate
        d.start()
        control = Client(d.endpoint, d.keys, admin)
        clients.append(control)
        wait_key_subscribed(d, 'admin')
        c = Client(d.endpoint, d.keys, dave)
        clients.append(c)
        wait_key_subscribed(d, 'dave')
        publish_and_mark(d, control, [('geopolitics', 'Summit opens'), ('sport', 'Match')],
                         marker='Marker')
        d.drop_text('m2.txt', header_article('Geo marker', Subject='geopolitics'))
        c.drain('Geo marker')
        check(c.topics() == ['geopolitics', 'geopolitics'], 'dave: %r' % c.topics())
    finally:
        for c in clients:
            c.close()
        d.cleanup()


def test_unknown_key_and_clear_text_get_nothing():
    d = curve_daemon()
    clients = []
    try:
        admin = d.keys.client('admin', topics='*')
        mallory = d.keys.client('mallory', topics='*', allowed=False)
        d.start()
        control = Client(d.endpoint, d.keys, admin)
        clients.append(control)
        wait_key_subscribed(d, 'admin')
        unknown = Client(d.endpoint, d.keys, mallory)
        plain = Client(d.endpoint)
        clients += [unknown, plain]
        unknown.wait_event({zmq.EVENT_HANDSHAKE_FAILED_AUTH}, 'the unknown key to be refused')
        plain.wait_event({zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                          zmq.EVENT_DISCONNECTED}, 'the clear-text client to be refused')
        publish_and_mark(d, control, [('telecoms', 'Operators merge')])
        # Both kept retrying all along; anything they could get has had its chance.
        for c in (unknown, plain):
            check(not c.sock.poll(200), 'a refused client received something')
            c.pump_events()
            check(zmq.EVENT_HANDSHAKE_SUCCEEDED not in c.events, 'a refused client got in')
    finally:
        for c in clients:
            c.close()
        d.cleanup()


class Sniffer:
    """A TCP relay between one client and the daemon that keeps every byte both ways:
    what anyone on the path (or on the loopback interface) would see."""

    def __init__(self, target_port):
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.target = target_port
        self.seen = bytearray()
        self.lock = threading.Lock()
        self.stop = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stop:
            try:
                a, _ = self.listener.accept()
            except OSError:
                return
            b = socket.create_connection(('127.0.0.1', self.target))
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self.pipe, args=(src, dst), daemon=True).start()

    def pipe(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    self.seen += data
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.listener.close()


def sniff_headline(curve):
    headline = 'Secret spectrum auction results'
    d = curve_daemon() if curve else Daemon(endpoint='tcp://127.0.0.1:%d' % free_port())
    c = None
    try:
        pair = d.keys.client('alice', topics='telecoms') if curve else None
        d.start()
        sniffer = Sniffer(int(d.endpoint.rsplit(':', 1)[1]))
        c = Client('tcp://127.0.0.1:%d' % sniffer.port, getattr(d, 'keys', None), pair)
        d.wait_log(" subscribe '")
        d.drop_text('s.txt', header_article(headline, Subject='telecoms'))
        c.drain(headline)
        sniffer.close()
        with sniffer.lock:
            return headline.encode() in sniffer.seen, len(sniffer.seen)
    finally:
        if c:
            c.close()
        d.cleanup()


def test_sniffer_never_sees_a_headline():
    # The control proves the sniffer would see it: clear text on loopback does.
    seen, _ = sniff_headline(curve=False)
    check(seen, 'the sniffer sees the headline in clear text (control)')
    seen, n = sniff_headline(curve=True)
    check(n > 0, 'the sniffer relayed the CURVE traffic')
    check(not seen, 'the headline crossed the wire in clear text under CURVE')


def test_non_loopback_needs_curve_or_insecure():
    port = free_port()
    d = Daemon(endpoint='tcp://0.0.0.0:%d' % port)
    try:
        d.start(wait_ready=False)
        rc = d.proc.wait(DEADLINE)
        check(rc == 1, 'exit 1 without CURVE or --insecure, got %s' % rc)
        check('is not loopback' in d.log(), 'reason logged: %s' % d.log())
    finally:
        d.cleanup()
    d = Daemon(endpoint='tcp://0.0.0.0:%d' % port, args=['--insecure'])
    try:
        d.start()
        check(d.stop()[0] == 0, 'runs and stops with --insecure')
    finally:
        d.cleanup()


def test_new_key_and_grants_without_restart():
    d = curve_daemon(config='# grants come later\n')
    clients = []
    try:
        admin = d.keys.client('admin', topics='*')
        d.start()
        control = Client(d.endpoint, d.keys, admin)
        clients.append(control)
        wait_key_subscribed(d, 'admin')
        erin = d.keys.client('erin', topics='telecoms')   # copied in while running
        c = Client(d.endpoint, d.keys, erin)
        clients.append(c)
        wait_key_subscribed(d, 'erin')
        publish_and_mark(d, control, [('sport', 'Match')])
        c.drain('Marker telecoms')
        check(c.topics() == ['telecoms'], 'erin: %r' % c.topics())
        # SIGHUP re-reads the config's grants: sport is now erin's too.
        with open(os.path.join(d.root, 'newswired.cfg'), 'w') as f:
            f.write('grants\n    erin = "sport"\n')
        d.send_signal(signal.SIGHUP)
        d.wait_log('reloaded')
        c2 = Client(d.endpoint, d.keys, erin, topics=('sport',))
        clients.append(c2)
        wait_key_subscribed(d, 'erin', count=2)
        d.drop_text('late.txt', header_article('Late match', Subject='sport'))
        c2.drain('Late match')
    finally:
        for c in clients:
            c.close()
        d.cleanup()


def test_revoked_key_cut_off_on_sighup():
    """SIGHUP after a key is withdrawn drops every live connection: the others reconnect
    and are admitted again, the withdrawn key is refused and receives nothing more."""
    d = curve_daemon()
    clients = []
    try:
        admin = d.keys.client('admin', topics='*')
        frank = d.keys.client('frank', topics='telecoms')
        d.start()
        control = Client(d.endpoint, d.keys, admin)
        clients.append(control)
        wait_key_subscribed(d, 'admin')
        c = Client(d.endpoint, d.keys, frank)
        clients.append(c)
        wait_key_subscribed(d, 'frank')
        d.drop_text('before.txt', header_article('Before revocation', Subject='telecoms'))
        c.drain('Before revocation')
        control.drain('Before revocation')
        os.unlink(os.path.join(d.keys.clients, 'frank'))
        d.send_signal(signal.SIGHUP)
        d.wait_log('a key or grant was withdrawn: live subscribers were disconnected')
        # A SUB socket resubscribes when its owner next touches it: keep polling both.
        wait_for(lambda: (control.sock.poll(10), c.sock.poll(10), c.pump_events(),
                          d.log().count('key admin: subscribe') >= 2)[-1], 'admin back')
        c.wait_event({zmq.EVENT_HANDSHAKE_FAILED_AUTH}, 'frank to be refused on reconnect')
        d.drop_text('after.txt', header_article('After revocation', Subject='telecoms'))
        control.drain('After revocation')
        check(not c.sock.poll(200), 'the revoked key still receives')
        check(c.topics() == ['telecoms'], 'frank: %r' % c.topics())
    finally:
        for c in clients:
            c.close()
        d.cleanup()


def test_replay_refuses_topic_outside_grant():
    d = curve_daemon(replay=True)
    clients = []
    try:
        admin = d.keys.client('admin', topics='*')
        alice = d.keys.client('alice', topics='telecoms')
        d.start()
        control = Client(d.endpoint, d.keys, admin)
        clients.append(control)
        wait_key_subscribed(d, 'admin')
        publish_and_mark(d, control, [('telecomsx', 'Neighbour news'), ('geopolitics', 'Summit')])
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.linger = 0
        secure(dealer, d.keys, alice)
        dealer.connect(d.replay_endpoint)

        def ask(topic):
            dealer.send(msgpack.packb({'v': 1, 'type': 'replay', 'topic': topic, 'from': 1,
                                       'credit': 10}))
            out = []
            while True:
                check(dealer.poll(DEADLINE * 1000), 'a replay answer for %s' % topic)
                frames = dealer.recv_multipart()
                out.append((frames[0].decode(), msgpack.unpackb(frames[1], raw=False)))
                if frames[0] in (b'$end', b'$error'):
                    return out
        for topic in ('geopolitics', 'telecomsx'):
            out = ask(topic)
            check(len(out) == 1 and out[0][0] == '$error' and out[0][1]['code'] == 'denied',
                  'replay of %s denied: %r' % (topic, out))
        out = ask('telecoms')
        check([t for t, _ in out] == ['telecoms.', '$end'], 'replay of telecoms: %r' % out)
        dealer.close(0)
    finally:
        for c in clients:
            c.close()
        d.cleanup()


def test_grant_never_leaks_sibling_topic():
    """Frame 0 is the topic plus "." and a grant "telecoms" is applied as the raw prefix
    "telecoms.", so topic "telecomsx" (frame 0 "telecomsx.") never reaches the key:
    not when it subscribes to everything, not to "telecomsx" (denied), and not to the
    raw unterminated "telecoms" (read by the daemon as the whole level "telecoms.")."""
    d = curve_daemon()
    clients = []
    try:
        admin = d.keys.client('admin', topics='*')
        alice = d.keys.client('alice', topics='telecoms')
        d.start()
        control = Client(d.endpoint, d.keys, admin)
        clients.append(control)
        wait_key_subscribed(d, 'admin')
        everything = Client(d.endpoint, d.keys, alice)
        clients.append(everything)
        wait_key_subscribed(d, 'alice')
        d.wait_log("subscription '' from key alice narrowed to its grants: 'telecoms.'")
        unterminated = Client(d.endpoint, d.keys, alice, topics=(), raw=(b'telecoms',))
        clients.append(unterminated)
        wait_key_subscribed(d, 'alice', count=2)
        named = Client(d.endpoint, d.keys, alice, topics=('telecomsx', 'telecoms'),
                       raw=(b'telecomsx',))
        clients.append(named)
        d.wait_log("denied subscription 'telecomsx.' from key alice")
        d.wait_log("denied subscription 'telecomsx' from key alice")
        wait_key_subscribed(d, 'alice', count=3)
        check("subscription 'telecoms' from key alice narrowed" not in d.log(),
              'raw "telecoms" is the whole level "telecoms.", applied as asked')
        publish_and_mark(d, control, [('telecomsx', 'Neighbour news'),
                                      ('telecoms.5g', 'Masts go up'),
                                      ('telecoms-eu', 'Roaming rules'),
                                      ('telecoms', 'Operators merge')])
        check(control.topics().count('telecomsx') == 1, 'control: %r' % control.topics())
        for name, c in (('everything', everything), ('raw telecoms', unterminated),
                        ('telecomsx+telecoms', named)):
            c.drain('Marker telecoms')
            check(c.topics() == ['telecoms.5g', 'telecoms', 'telecoms'],
                  'alice (%s) gets telecoms and below only: %r' % (name, c.topics()))
    finally:
        for c in clients:
            c.close()
        d.cleanup()


if __name__ == '__main__':
    run([test_grant_narrows_subscribe_all, test_denied_subscription_logged_with_key_name,
         test_config_grants_section, test_unknown_key_and_clear_text_get_nothing,
         test_sniffer_never_sees_a_headline, test_non_loopback_needs_curve_or_insecure,
         test_new_key_and_grants_without_restart, test_revoked_key_cut_off_on_sighup,
         test_replay_refuses_topic_outside_grant,
         test_grant_never_leaks_sibling_topic])
