"""The Prometheus endpoint of a real newswired (--metrics): scraped over HTTP while
articles flow, parsed with Debian's python3-prometheus-client, each series checked against
what the test itself did and saw (articles dropped, messages and seqs received by a raw
SUB socket, bytes replayed to a DEALER, drops a stalled subscriber suffered); bad and
hostile HTTP requests answered without hurting the daemon; a non-loopback metrics
endpoint refused without --insecure, even with CURVE on.

Waits are on events (log lines, received messages, scraped values), never on sleeps.
"""
import contextlib, json, os, re, shutil, signal, socket, subprocess, tempfile, threading, \
    urllib.error, urllib.request

import msgpack
import zmq
from prometheus_client.parser import text_string_to_metric_families

from nwtest import BIN, DEADLINE, Daemon, Failure, Subscriber, check, header_article, raw_prefix, run, wait_for

SOURCE = os.environ.get('NW_SOURCE', os.path.join(os.path.dirname(__file__), '..', '..'))


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(args=(), port=None, **kw):
    """A daemon with metrics on 127.0.0.1:PORT (a free port; tried again with another
    should something else take it first). Returns the daemon, with .url set."""
    for _ in range(5):
        p = port or free_port()
        d = Daemon(args=['--metrics', 'tcp://127.0.0.1:%d' % p] + list(args), **kw)
        try:
            d.start()
        except Failure:
            if 'Address already in use' in d.log() and port is None:
                d.cleanup()
                continue
            d.cleanup()
            raise
        m = re.search(r'metrics on (http://\S+)', d.log())
        check(m and m.group(1) == 'http://127.0.0.1:%d/metrics' % p,
              'the log says where the metrics are: %r' % (m and m.group(0)))
        d.url = m.group(1)
        return d
    raise Failure('no free port for the metrics')


class Scrape:
    """One scrape, parsed: value(name, **labels) of one sample."""

    def __init__(self, url):
        with urllib.request.urlopen(url, timeout=DEADLINE) as r:
            check(r.status == 200, 'scrape: HTTP %d' % r.status)
            ctype = r.headers.get('Content-Type', '')
            check(ctype.startswith('text/plain; version=0.0.4'), 'content type %r' % ctype)
            self.text = r.read().decode('utf-8')
        self.families = {f.name: f for f in text_string_to_metric_families(self.text)}
        self.samples = {}
        for f in self.families.values():
            for s in f.samples:
                self.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def value(self, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        check(key in self.samples, 'series %s%r in the scrape:\n%s' % (name, labels, self.text))
        return self.samples[key]

    def has(self, name, **labels):
        return (name, tuple(sorted(labels.items()))) in self.samples

    def labelled(self, name, label):
        return {dict(k[1])[label]: v for k, v in self.samples.items()
                if k[0] == name and label in dict(k[1])}


class RawSub:
    """A SUB socket keeping every message's topic, seq and body size."""

    def __init__(self, d, hwm=0):
        self.sock = zmq.Context.instance().socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        before = d.log().count(" subscribe '")
        self.sock.connect(d.endpoint)
        self.sock.setsockopt(zmq.SUBSCRIBE, raw_prefix(''))
        d.wait_log(" subscribe '", count=before + 1)
        self.got = []               # (topic, seq, body bytes)

    def wait(self, n, timeout=DEADLINE):
        def enough():
            while self.sock.poll(10):
                frames = self.sock.recv_multipart()
                body = msgpack.unpackb(frames[1], raw=False)
                self.got.append((body['topic'], body['seq'], len(frames[1])))
            return len(self.got) >= n
        wait_for(enough, '%d messages (have %d)' % (n, len(self.got)), timeout)
        return self.got

    def close(self):
        self.sock.close(0)


def drop_articles(d, topic, n, first=1, body=''):
    for i in range(first, first + n):
        d.drop_text('%s-%04d.txt' % (topic, i), header_article(
            'Story %d on %s' % (i, topic), body='Paragraph one of %d.\n\n%s' % (i, body)),
            subdir=topic)


def test_series_follow_the_run():
    d = start(args=['--replay', 'ipc://' + tempfile.mktemp(prefix='nw-metrics-replay-')])
    try:
        version = subprocess.run([os.path.join(BIN, 'newswired'), '--version'],
                                 capture_output=True, text=True).stdout.split()[1]
        s = Scrape(d.url)
        check(s.value('newswired_build_info', version=version,
                      libzmq='%d.%d.%d' % zmq.zmq_version_info(),
                      libmicrohttpd=s.families['newswired_build_info'].samples[0]
                      .labels['libmicrohttpd']) == 1, 'build info')
        check(s.value('newswired_articles_published_total') == 0, 'nothing published yet')
        check(s.families['newswired_articles_published'].type == 'counter', 'a counter')
        check(s.families['newswired_journal_commit_seconds'].type == 'histogram', 'a histogram')
        check(s.labelled('newswired_messages_total', 'topic') == {}, 'no topic yet')

        sub = RawSub(d)
        check(Scrape(d.url).value('newswired_subscriptions') == 1, 'one subscription')
        # A burst, scraped while it goes through: every scrape parses, and the counters
        # only ever grow, up to what was dropped.
        drop_articles(d, 'telecoms', 30)
        drop_articles(d, 'sport', 20)
        last = 0
        while len(sub.got) < 50:
            v = Scrape(d.url).value('newswired_articles_published_total')
            check(last <= v <= 50, 'published_total moves up to 50: %s after %s' % (v, last))
            last = v
            sub.wait(len(sub.got) + 1)
        got = sub.wait(50)
        wait_for(lambda: len(d.archived()) == 50, '50 files archived')
        wait_for(lambda: sum(Scrape(d.url).labelled('newswired_files_waiting', 'stage')
                             .values()) == 0, 'no file waiting once all are archived')
        s = Scrape(d.url)
        check(s.value('newswired_articles_published_total') == 50, 'published_total 50')
        check(set(s.labelled('newswired_files_waiting', 'stage')) ==
              {'scanned', 'queued', 'in_flight'}, 'the three stages of files waiting')
        for topic, n in (('telecoms', 30), ('sport', 20)):
            mine = [g for g in got if g[0] == topic]
            check(s.value('newswired_messages_total', topic=topic) == n == len(mine),
                  '%d messages on %s' % (n, topic))
            check(s.value('newswired_message_bytes_total', topic=topic) ==
                  sum(g[2] for g in mine), 'bytes on %s are the bodies received' % topic)
            check(s.value('newswired_topic_seq', topic=topic) == max(g[1] for g in mine) == n,
                  'seq of %s is the last one received' % topic)
        buckets = sorted(((float(dict(k[1])['le']), v) for k, v in s.samples.items()
                          if k[0] == 'newswired_journal_commit_seconds_bucket'))
        count = s.value('newswired_journal_commit_seconds_count')
        check(count >= 1 and buckets[-1] == (float('inf'), count),
              'the commit histogram counts group writes: %r' % buckets)
        check(all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), 'buckets cumulate')
        check(s.value('newswired_journal_commit_seconds_sum') > 0, 'commit time adds up')
        check(s.value('newswired_journal_bytes') > 50 * 200, 'journal bytes: %s'
              % s.value('newswired_journal_bytes'))
        check(s.value('newswired_journal_segments') >= 1, 'segments')
        check(s.value('newswired_journal_records') >= 50, 'records')
        check(s.value('newswired_journal_write_failing') == 0, 'journal healthy')
        check(s.value('newswired_files_retrying') == 0, 'no fault of the machine')
        check(s.value('newswired_journal_epoch_info', epoch=re.search(
            r'epoch ([0-9a-f]{32})', d.log()).group(1)) == 1, 'the epoch')
        check(s.value('newswired_watch_subfolders') == 2, 'two subfolders watched')
        check(s.value('newswired_watch_overflows_total') == 0, 'no overflow')
        check((s.value('newswired_watch_drop_missing'), s.value('newswired_watch_drop_polled'),
               s.value('newswired_watch_unwatched_subfolders')) == (0, 0, 0), 'all watched')

        # A rejected file and a duplicate are counted as such.
        d.drop_text('empty.txt', '')
        d.wait_log('rejected empty.txt')
        d.drop_text('again.txt', open(sorted(d.archived())[0], 'rb').read())
        d.wait_log('duplicate again.txt')
        s = Scrape(d.url)
        check(s.value('newswired_articles_rejected_total') == 1, 'one rejected')
        check(s.value('newswired_articles_duplicate_total') == 1, 'one duplicate')
        check(s.value('newswired_articles_published_total') == 50, 'still 50 published')

        # Replay: a DEALER reads telecoms 1..30; streams and bytes are counted.
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(d.args[d.args.index('--replay') + 1])
        dealer.send(msgpack.packb({'v': 1, 'type': 'replay', 'topic': 'telecoms', 'from': 1,
                                   'credit': 100}))
        replayed = []
        while True:
            check(dealer.poll(DEADLINE * 1000), 'replay answers')
            f = dealer.recv_multipart()
            if f[0] == b'$end':
                break
            check(f[0] == b'telecoms.', 'replay data: %r' % f[0][:40])
            replayed.append(len(f[1]))
        dealer.close(0)
        check(len(replayed) == 30, '30 replayed')
        def over():
            s = Scrape(d.url)
            return (s.value('newswired_replay_streams_active'),
                    s.value('newswired_replay_held_bytes'),
                    s.value('newswired_replay_open_files')) == (0, 0, 0)
        wait_for(over, 'the stream is over: nothing held, no segment open')
        s = Scrape(d.url)
        check(s.value('newswired_replay_streams_total') == 1, 'one stream')
        check(s.value('newswired_replay_messages_total') == 30, '30 replay messages')
        check(s.value('newswired_replay_bytes_total') == sum(replayed) ==
              s.value('newswired_message_bytes_total', topic='telecoms'),
              'replay bytes are the bodies sent live')
        check(s.value('newswired_replay_errors_total') == 0, 'no replay error')
        check(s.value('newswired_replay_refused_total') == 0, 'none refused')
        # A watch problem: the drop folder moved away, and back.
        os.rename(d.drop, d.drop + '.away')
        wait_for(lambda: Scrape(d.url).value('newswired_watch_drop_missing') == 1,
                 'the missing drop folder is seen')
        os.rename(d.drop + '.away', d.drop)
        wait_for(lambda: Scrape(d.url).value('newswired_watch_drop_missing') == 0,
                 'the drop folder is back')

        # The README's alerting rules name only series that exist.
        readme = open(os.path.join(SOURCE, 'README.md'), encoding='utf-8').read()
        rules = readme[readme.index('    groups:\n'):readme.index('## Tests and benchmarks')]
        names = set(re.findall(r'newswired_[a-z_]+', rules))
        check(len(names) >= 4, 'the README has alerting rules: %r' % names)
        exported = {k[0] for k in s.samples}
        check(names <= exported, 'README alerts use unknown series: %r' % (names - exported))
        sub.close()
    finally:
        d.cleanup()


def test_full_queue_of_a_stalled_subscriber():
    """newswire-sub (receive queue unbounded, so it never drops anything itself) is
    stopped while 150 large articles go out with --send-hwm 4: its queue fills, and
    newswired_subscriber_queue_full_total counts it. libzmq refuses (ZMQ_XPUB_NODROP)
    the first message a full queue cannot take, then leaves the queue out until its
    reader has caught up: every message is either received or lost in such a stretch,
    so the count is at least 1 and at most the messages missed, and is what STATUS says."""
    d = start(args=['--send-hwm', '4'])
    p = None
    try:
        before = d.log().count(" subscribe '")
        p = subprocess.Popen([os.path.join(BIN, 'newswire-sub'), '--connect', d.endpoint,
                              '--hwm', '0', 'flood'], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        d.wait_log(" subscribe '", count=before + 1)
        p.send_signal(signal.SIGSTOP)
        seqs = []
        reader = threading.Thread(target=lambda: seqs.extend(
            json.loads(line)['seq'] for line in p.stdout), daemon=True)
        before = d.log().count(' published ')
        drop_articles(d, 'flood', 150, body='Filler to fill the socket buffers. ' * 300)
        d.wait_log(' published ', count=before + 150, timeout=120)
        full = Scrape(d.url).value('newswired_subscriber_queue_full_total')
        check(full >= 1, 'the stopped subscriber\'s queue was found full')
        d.wait_notify('STATUS=150 published')
        status = [n for n in d.notes if n.startswith('STATUS=150 published')]
        check(all(n.endswith(' %d drops' % full) for n in status),
              'STATUS says the same as the scrape (%d): %r' % (full, status))
        p.send_signal(signal.SIGCONT)
        reader.start()
        # Markers until one arrives: once one does, every message before it was either
        # received or lost. A marker that is not refused may still be lost: libzmq
        # leaves a queue that was full out of the send until its reader has caught up,
        # silently, and on a loaded machine the resumed reader takes a while (waiting
        # for the first marker that was not refused timed out twice at load 15-18).
        # So each marker is waited for a moment and the next one sent if it has not
        # come; only the number of markers depends on the machine's speed.
        n = 150
        while True:
            n += 1
            drop_articles(d, 'flood', 1, first=n)
            d.wait_log(' published ', count=before + n)
            try:
                wait_for(lambda: seqs and seqs[-1] >= 151, 'a marker', timeout=0.5)
                break
            except Failure:
                if n >= 150 + 400:
                    raise Failure('no marker arrived (have %d, last %r)' % (len(seqs), seqs[-3:]))
        wait_for(lambda: seqs and seqs[-1] == n, 'the marker %d (have %d, last %r)'
                 % (n, len(seqs), seqs[-3:]))
        s = Scrape(d.url)
        check(s.value('newswired_messages_total', topic='flood') == n,
              'messages_total counts every message sent, received or not')
        check(s.value('newswired_topic_seq', topic='flood') == n == seqs[-1], 'seq')
        missed = n - len(seqs)
        check(1 <= full <= missed, 'queue full %s times, %d missed' % (full, missed))
        p.terminate()
        _, errs = p.communicate(timeout=DEADLINE)
        reported = sum(int(m) for m in re.findall(r'missed (\d+) article', errs))
        check(reported == missed, 'newswire-sub reports %d missed, %d are' % (reported, missed))
    finally:
        if p and p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.kill()
            p.communicate()
        d.cleanup()


def http(port, data, read=True):
    """Send raw bytes; the status code answered (0 when the daemon just closed), or
    with read=False the socket, still open."""
    c = socket.create_connection(('127.0.0.1', port), timeout=DEADLINE)
    with c if read else contextlib.nullcontext():
        try:
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)      # nothing more comes: no idle timeout to wait for
        except OSError:                     # the daemon closed first: it had enough
            pass
        if not read:
            return c
        reply = b''
        try:
            while b'\r\n' not in reply:
                chunk = c.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except ConnectionResetError:
            pass
        m = re.match(rb'HTTP/1\.[01] (\d{3}) ', reply)
        return int(m.group(1)) if m else 0


def test_bad_requests_do_not_hurt():
    d = start()
    try:
        port = int(d.url.split(':')[2].split('/')[0])
        base = d.url[:-len('/metrics')]
        for path, code in (('/', 404), ('/metric', 404), ('/metrics/x', 404)):
            try:
                urllib.request.urlopen(base + path, timeout=DEADLINE)
                raise Failure('%s answered 200' % path)
            except urllib.error.HTTPError as e:
                check(e.code == code, '%s: %d, want %d' % (path, e.code, code))
        try:
            urllib.request.urlopen(urllib.request.Request(d.url, data=b'x=1'), timeout=DEADLINE)
            raise Failure('POST answered 200')
        except urllib.error.HTTPError as e:
            check(e.code == 405 and e.headers.get('Allow') == 'GET, HEAD', 'POST: %d' % e.code)
        head = urllib.request.urlopen(urllib.request.Request(d.url, method='HEAD'),
                                      timeout=DEADLINE)
        check(head.status == 200 and head.read() == b'', 'HEAD: headers only')

        code = http(port, b'GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ' + b'a' * (1 << 20)
                    + b'\r\n\r\n')
        check(code in (0, 400, 413, 431), 'a 1 MiB header is refused: %r' % code)
        code = http(port, b'GET /' + b'm' * (1 << 20) + b' HTTP/1.1\r\nHost: x\r\n\r\n')
        check(code in (0, 400, 414, 431), 'a 1 MiB URL is refused: %r' % code)
        for junk in (b'GET\r\n\r\n', b'GET /metrics HTTP/9.9\r\n\r\n'):
            code = http(port, junk)
            check(code in (0, 400, 505), 'junk %r: %r' % (junk[:20], code))
        # Junk MHD neither answers nor closes until its idle timeout (binary bytes, blank
        # lines): meanwhile the endpoint serves others.
        stuck = []
        for junk in (b'\x00\x01\x02 garbage\r\n\r\n', b'\r\n' * 1000):
            stuck.append(http(port, junk, read=False))
            check(Scrape(d.url).value('newswired_articles_published_total') == 0,
                  'serving beside %r' % junk[:10])
        code = http(port, b'POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000'
                    b'\r\n\r\n' + b'z' * 65536)
        check(code == 405, 'a huge POST body: %r' % code)

        # Idle and half-sent connections beyond the connection limit: the loop goes on,
        # an article is published to a subscriber meanwhile, and once they are gone a
        # scrape works.
        sub = RawSub(d)
        idle = [socket.create_connection(('127.0.0.1', port)) for _ in range(40)]
        for c in idle[:5]:
            c.sendall(b'GET /metrics HTTP/1.1\r\nHost: x\r\n')
        d.drop_text('during.txt', header_article('Published while HTTP clients stall'))
        sub.wait(1)
        for c in idle:
            c.close()
        s = Scrape(d.url)
        check(s.value('newswired_articles_published_total') == 1, 'published during the abuse')
        check(d.proc.poll() is None, 'the daemon runs')
        # The idle timeout (10 s) closes what never became a request.
        for c in stuck:
            c.settimeout(30)
            try:
                check(c.recv(100) == b'', 'closed by the daemon without an answer')
            except ConnectionResetError:
                pass
            c.close()
        sub.close()
        rc, _ = d.stop()
        check(rc == 0, 'clean exit after all that: %s' % rc)
    finally:
        d.cleanup()


def refused(args, what):
    d = Daemon(args=args)
    try:
        d.start(wait_ready=False)
        rc = d.proc.wait(DEADLINE)
        check(rc == 1, '%s: exit %s, want 1; log:\n%s' % (what, rc, d.log()))
        return d.log()
    finally:
        d.cleanup()


def test_non_loopback_needs_insecure():
    for ep in ('tcp://*:%d' % free_port(), 'tcp://0.0.0.0:%d' % free_port(),
               'tcp://198.18.0.1:9464', 'tcp://[::]:9464'):
        log = refused(['--metrics', ep], ep)
        check('--metrics %s is not loopback' % ep in log and '--insecure' in log,
              '%s refused with the reason: %s' % (ep, log))
    # CURVE encrypts the ZeroMQ endpoints, not HTTP: still refused.
    keys = tempfile.mkdtemp(prefix='nw-metrics-keys-')
    subprocess.run([os.path.join(BIN, 'newswire-keygen'), os.path.join(keys, 'server')],
                   check=True, capture_output=True)
    os.mkdir(os.path.join(keys, 'clients'))
    log = refused(['--curve-secret', os.path.join(keys, 'server_secret'), '--clients',
                   os.path.join(keys, 'clients'), '--metrics', 'tcp://*:9464'], 'with CURVE')
    check('is not loopback' in log, 'refused with CURVE on: %s' % log)
    for ep, reason in (('127.0.0.1:9464', 'expected tcp://HOST:PORT'),
                       ('tcp://127.0.0.1:99999', 'is not 0 to 65535'),
                       ('tcp://127.0.0.1', 'expected tcp://HOST:PORT'),
                       ('ipc:///tmp/x', 'expected tcp://HOST:PORT')):
        log = refused(['--metrics', ep], ep)
        check(reason in log, '%s: %r in %s' % (ep, reason, log))
    # A port taken: the reason, exit 1.
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen(1)
        log = refused(['--metrics', 'tcp://127.0.0.1:%d' % taken.getsockname()[1]], 'taken')
        check('cannot serve metrics' in log, 'port taken: %s' % log)
    # --insecure allows every address (this one: all of them, scraped on loopback).
    port = free_port()
    d = Daemon(args=['--insecure', '--metrics', 'tcp://*:%d' % port]).start()
    try:
        check('metrics on http://*:%d/metrics' % port in d.log(), 'listening on every address')
        s = Scrape('http://127.0.0.1:%d/metrics' % port)
        check(s.value('newswired_articles_published_total') == 0, 'scraped')
    finally:
        d.cleanup()
    # The same key in the config file.
    port = free_port()
    d = Daemon(config='newswired\n    metrics = "tcp://127.0.0.1:%d"\n' % port).start()
    try:
        check(Scrape('http://127.0.0.1:%d/metrics' % port)
              .value('newswired_articles_published_total') == 0, 'metrics from the config file')
    finally:
        d.cleanup()


def test_archiving_makes_no_watch_event():
    """A file renamed into the drop folder is one inotify event (IN_MOVED_TO) and its
    archive move out of it none: the drop folder is watched without IN_MOVED_FROM, which
    would wake the daemon once more for every file it archives."""
    d = start()
    try:
        sub = Subscriber(d)
        stage = tempfile.mkdtemp(dir=os.path.dirname(d.drop))   # same file system
        before = Scrape(d.url).value('newswired_watch_events_total')
        n = 30
        for i in range(n):
            path = os.path.join(stage, 'ev%02d.txt' % i)
            with open(path, 'w') as f:
                f.write(header_article('Event story number %d' % i))
            os.rename(path, os.path.join(d.drop, 'ev%02d.txt' % i))
        sub.wait(n)
        wait_for(lambda: d.drop_files() == [], 'every file archived')
        # one more, published: every event queued before it has been read by then
        path = os.path.join(stage, 'last.txt')
        with open(path, 'w') as f:
            f.write(header_article('The last event story'))
        os.rename(path, os.path.join(d.drop, 'last.txt'))
        sub.wait(n + 1)
        events = Scrape(d.url).value('newswired_watch_events_total') - before
        check(events == n + 1, '%d files renamed in, archived: %d events' % (n + 1, events))
        shutil.rmtree(stage)
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_series_follow_the_run, test_full_queue_of_a_stalled_subscriber,
         test_bad_requests_do_not_hurt, test_non_loopback_needs_insecure,
         test_archiving_makes_no_watch_event])
