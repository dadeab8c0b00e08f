"""nwtest: the end-to-end harness. Starts a real newswired on a temporary drop folder,
subscribes with real ZeroMQ sockets, and waits on events, never on sleeps:

- readiness comes from sd_notify: the test owns the NOTIFY_SOCKET and reads READY=1;
- a subscription is known to have reached the daemon when its debug log says so;
- an article is known to be published when a subscriber receives it.

Every article map a Subscriber receives is also validated, once the test is over, against
IPTC's ninjs 1.6 JSON Schema ($NW_SHARED/ninjs/ninjs-schema_1.6.json, with Debian's
python3-jsonschema): a test whose published articles do not validate fails.

Every wait has a deadline and fails the test with what was seen so far.
"""
import json, os, select, shutil, signal, socket, subprocess, sys, tempfile, threading, time, traceback

import msgpack
import zmq

BIN = os.environ.get('NW_BIN', os.path.join(os.path.dirname(__file__), '..', '..', 'build', 'bin'))
FIXTURES = os.environ.get('NW_FIXTURES', os.path.join(os.path.dirname(__file__), '..', 'fixtures'))
SHARED = os.environ.get('NW_SHARED', '')
DEADLINE = float(os.environ.get('NW_TEST_DEADLINE', '20'))
NINJS_SCHEMA = os.path.join(SHARED, 'ninjs', 'ninjs-schema_1.6.json') if SHARED else ''

# Every article map received by any Subscriber since the last check_ninjs().
RECEIVED = []


class Failure(AssertionError):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def wait_for(pred, what, timeout=DEADLINE):
    """Poll pred() until true; each probe is cheap and the loop yields briefly."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise Failure('timed out waiting for ' + what)
        time.sleep(0.01)


class Daemon:
    """One newswired process. Its log is kept in memory and in state/../newswired.log."""

    def __init__(self, root=None, args=(), config=None, endpoint=None, env=None, wrap=(),
                 publish_flag=True):
        """wrap: a command prefix that ends by exec'ing the daemon's command line (so
        proc is still newswired), e.g. to start it in a namespace of its own.
        publish_flag False: no --publish on the command line (the config file's
        endpoints apply; endpoint is then only what the test connects to)."""
        self.own_root = root is None
        self.root = root or tempfile.mkdtemp(prefix='nw-e2e-')
        self.drop = os.path.join(self.root, 'drop')
        self.state = os.path.join(self.root, 'state')
        self.endpoint = endpoint or 'ipc://' + os.path.join(self.root, 'pub.sock')
        self.args = list(args)
        self.config = config
        self.env = env or {}
        self.wrap = list(wrap)
        self.publish_flag = publish_flag
        self.proc = None
        self.log_lines = []
        self.notify = None
        self.preexec_fn = None             # run in the child before exec (e.g. setrlimit)

    def start(self, wait_ready=True):
        os.makedirs(self.root, exist_ok=True)
        cmd = [os.path.join(BIN, 'newswired'), '--drop', self.drop, '--state', self.state,
               '--log-level', 'debug'] + self.args
        if self.publish_flag:
            cmd[1:1] = ['--publish', self.endpoint]
        if self.config is not None:
            path = os.path.join(self.root, 'newswired.cfg')
            with open(path, 'w') as f:
                f.write(self.config)
            cmd += ['--config', path]
        sock_path = os.path.join(self.root, 'notify.sock')
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        self.close_notify()
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(sock_path)
        self.notify.setblocking(False)
        self.notes = []
        # sd_notify blocks the daemon's loop once the socket's queue is full (ten
        # datagrams here), so the socket is drained all the time, as systemd does, not
        # only while a test waits on it.
        self.notify_lock = threading.Lock()
        self.notify_stop = threading.Event()
        self.notify_thread = threading.Thread(target=self.drain_notify, args=(self.notify,),
                                              daemon=True)
        self.notify_thread.start()
        env = dict(os.environ, NOTIFY_SOCKET=sock_path, **self.env)
        env.pop('JOURNAL_STREAM', None)
        self.logfile = open(os.path.join(self.root, 'newswired.log'), 'ab+')
        self.log_offset = self.logfile.tell()
        self.proc = subprocess.Popen(self.wrap + cmd, stdout=subprocess.DEVNULL,
                                     stderr=self.logfile, env=env, preexec_fn=self.preexec_fn)
        if wait_ready:
            self.wait_notify('READY=1')
        return self

    def drain_notify(self, sock):
        while not self.notify_stop.is_set():
            select.select([sock], [], [], 0.05)
            self.read_notify()

    def read_notify(self):
        """Everything the daemon has sent so far is in self.notes once this returns."""
        if self.notify is None:
            return
        with self.notify_lock:
            while True:
                try:
                    data = self.notify.recv(4096)
                except (BlockingIOError, OSError):
                    return
                self.notes.extend(data.decode('utf-8', 'replace').split('\n'))

    def close_notify(self):
        if self.notify is None:
            return
        self.notify_stop.set()
        self.notify_thread.join()
        self.read_notify()
        self.notify.close()
        self.notify = None

    def wait_notify(self, what, timeout=DEADLINE):
        def seen():
            self.read_notify()
            if self.proc.poll() is not None:
                raise Failure('newswired exited with %s before %s:\n%s'
                              % (self.proc.returncode, what, self.log()))
            return any(n.startswith(what) for n in self.notes)
        wait_for(seen, 'sd_notify ' + what + ' from newswired', timeout)

    def log(self):
        with open(os.path.join(self.root, 'newswired.log'), 'rb') as f:
            f.seek(self.log_offset)
            return f.read().decode('utf-8', 'replace')

    def wait_log(self, text, timeout=DEADLINE, count=1):
        def seen():
            if self.proc.poll() is not None:
                raise Failure('newswired exited with %s while waiting for %r:\n%s'
                              % (self.proc.returncode, text, self.log()))
            return self.log().count(text) >= count
        try:
            wait_for(seen, 'log line %r' % text, timeout)
        except Failure:
            raise Failure('no log line %r within %ss; log:\n%s' % (text, timeout, self.log()))

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        """Stop the daemon; returns (exit code, seconds it took)."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None, 0.0
        t0 = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure('newswired did not exit within %ss of %s' % (timeout, sig))
        self.logfile.close()
        self.close_notify()
        return rc, time.monotonic() - t0

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.close_notify()

    def cleanup(self):
        self.kill()
        if self.own_root and not os.environ.get('NW_KEEP'):
            shutil.rmtree(self.root, ignore_errors=True)

    # --- dropping files --------------------------------------------------------

    def drop_text(self, name, text, subdir=None):
        """Deliver a file atomically: write a hidden name, then rename into place."""
        folder = os.path.join(self.drop, subdir) if subdir else self.drop
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, '.' + name + '.tmp')
        with open(tmp, 'wb') as f:
            f.write(text.encode('utf-8') if isinstance(text, str) else text)
        os.rename(tmp, os.path.join(folder, name))
        return os.path.join(folder, name)

    def archived(self):
        out = []
        for dirpath, _, files in os.walk(os.path.join(self.state, 'archive')):
            out += [os.path.join(dirpath, f) for f in files]
        return sorted(out)

    def rejected(self):
        d = os.path.join(self.state, 'rejected')
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def drop_files(self):
        out = []
        for dirpath, _, files in os.walk(self.drop):
            out += [os.path.relpath(os.path.join(dirpath, f), self.drop) for f in files]
        return sorted(out)


def raw_prefix(topic):
    """The ZeroMQ subscription for a topic: frame 0 is the topic plus "." (proto
    section 3), so "telecoms" is the prefix "telecoms." and "" stays everything."""
    return (topic + '.').encode() if topic else b''


def frame0(topic):
    """Frame 0 of a message on topic (live, or replay data)."""
    return topic.encode() + b'.'


class RawSub:
    """A SUB socket on one topic that keeps the raw frames (to compare replayed bytes
    with), known to be subscribed once the daemon's debug log says so."""

    def __init__(self, d, topic, timeout=DEADLINE):
        self.d, self.topic, self.timeout = d, topic, timeout
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.LINGER, 0)
        before = d.log().count(" subscribe '")
        self.sock.connect(d.endpoint)
        self.sock.setsockopt(zmq.SUBSCRIBE, raw_prefix(topic))
        d.wait_log(" subscribe '", count=before + 1)
        self.frames = []

    def take(self):
        while self.sock.poll(0):
            f = self.sock.recv_multipart()
            if f[0] == frame0(self.topic):
                self.frames.append(f)
        return len(self.frames)

    def wait(self, n, also=None):
        """Until n frames are in hand; also() runs at every probe (a sampler, say)."""
        def got():
            if self.d.proc.poll() is not None:
                raise AssertionError('newswired exited:\n' + self.d.log())
            if also:
                also()
            return self.take() >= n
        wait_for(got, '%d live messages (have %d)' % (n, len(self.frames)), self.timeout)
        return self.frames


class Subscriber:
    """A raw SUB socket decoding with msgpack, independent of the project's C code."""

    def __init__(self, daemon, topics=('',)):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.daemon = daemon
        self.messages = []
        self.connect(daemon, topics)

    def connect(self, daemon, topics):
        self.daemon = daemon
        before = daemon.log().count(" subscribe '")
        self.sock.connect(daemon.endpoint)
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, raw_prefix(t))
        # The XPUB passes every subscription up (XPUB_VERBOSER) and the daemon logs it
        # at debug level: once logged, messages on the topic reach this socket.
        daemon.wait_log(" subscribe '", count=before + len(topics))

    def poll(self, timeout_ms):
        if not self.sock.poll(timeout_ms):
            return None
        frames = self.sock.recv_multipart()
        check(len(frames) == 2, 'a message has 2 frames, got %d' % len(frames))
        body = msgpack.unpackb(frames[1], raw=False)
        check(frames[0] == body['topic'].encode() + b'.',
              'frame 0 is the topic plus ".": %r for %r' % (frames[0], body['topic']))
        self.messages.append(body)
        if isinstance(body, dict) and isinstance(body.get('article'), dict):
            RECEIVED.append(body['article'])
        return body

    def wait(self, n, timeout=DEADLINE, what=None):
        """Wait until n messages in all were received; returns all of them."""
        end = time.monotonic() + timeout
        while len(self.messages) < n:
            if self.daemon.proc.poll() is not None:
                raise Failure('newswired exited (%s); log:\n%s' % (self.daemon.proc.returncode,
                                                                    self.daemon.log()))
            left = end - time.monotonic()
            if left <= 0:
                raise Failure('timed out: %d of %d messages%s; log:\n%s' % (
                    len(self.messages), n, ' (' + what + ')' if what else '', self.daemon.log()))
            self.poll(int(min(left, 0.2) * 1000) + 1)
        return self.messages

    def close(self):
        self.sock.close(0)


def header_article(title, body='A first paragraph of the body.\n\nA second one.', **keys):
    lines = ['Title: ' + title]
    for k, v in keys.items():
        lines.append('%s: %s' % (k.replace('_', '-').title(), v))
    return '\n'.join(lines) + '\n\n' + body + '\n'


_validator = None


def ninjs_validator():
    """A draft-07 validator for the ninjs 1.6 schema, checking the formats it names
    (date-time, uri) too; None when the schema file is not there."""
    global _validator
    if _validator is None and NINJS_SCHEMA and os.path.exists(NINJS_SCHEMA):
        import re
        import jsonschema
        with open(NINJS_SCHEMA) as f:
            schema = json.load(f)
        formats = jsonschema.FormatChecker()
        rfc3339 = re.compile(r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$')
        uri = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*:[^\s<>"{}|\\^`]*$')   # RFC 3986: a scheme, no blanks
        formats.checks('date-time')(lambda v: not isinstance(v, str) or bool(rfc3339.match(v)))
        formats.checks('uri')(lambda v: not isinstance(v, str) or bool(uri.match(v)))
        _validator = jsonschema.Draft7Validator(schema, format_checker=formats)
    return _validator


def check_ninjs(articles=None):
    """Validate articles (default: every one received since the last call) against the
    ninjs schema; returns how many distinct ones were checked (0 without the schema)."""
    if articles is None:
        articles = list(RECEIVED)
        del RECEIVED[:]
    v = ninjs_validator()
    if v is None:
        return 0
    seen, errors = set(), []
    for a in articles:
        key = json.dumps(a, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        for e in v.iter_errors(a):
            errors.append('%s: %s at %s' % (a.get('uri'), e.message, '/'.join(map(str, e.path))))
    check(not errors, 'articles do not validate against ninjs 1.6:\n  ' + '\n  '.join(errors[:20]))
    return len(seen)


class Skip(Exception):
    """Raised by a test that cannot run here (the reason says why)."""


def run(tests):
    """Run test functions in order (or those named on the command line); print a
    ctest-friendly summary. Exit 1 on any failure, 77 (ctest: skipped) only when every
    test that ran was skipped, else 0."""
    passed = failed = skipped = 0
    only = sys.argv[1:]
    for t in tests:
        if only and t.__name__ not in only:
            continue
        t0 = time.monotonic()
        del RECEIVED[:]
        try:
            t()
            check_ninjs()
            passed += 1
            print('ok   %s (%.2fs)' % (t.__name__, time.monotonic() - t0), flush=True)
        except Skip as e:
            skipped += 1
            print('skip %s: %s' % (t.__name__, e), flush=True)
        except Exception:
            failed += 1
            print('FAIL %s (%.2fs)' % (t.__name__, time.monotonic() - t0), flush=True)
            traceback.print_exc()
    print('%d passed, %d failed, %d skipped' % (passed, failed, skipped))
    sys.exit(1 if failed else 77 if skipped and not passed else 0)
