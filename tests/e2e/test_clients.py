"""End to end: the sample clients (C newswire-sub and newswire-drop, the Python sample)
against a real newswired."""
import json, os, subprocess, sys

from nwtest import BIN, Daemon, check, header_article, run, wait_for

SOURCE = os.environ.get('NW_SOURCE', os.path.join(os.path.dirname(__file__), '..', '..'))
PY_SUB = os.path.join(SOURCE, 'clients', 'python', 'newswire_sub.py')


def start_sub(d, cmd, topics):
    """Start a subscriber process and wait until the daemon has its subscriptions."""
    before = d.log().count(" subscribe '")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        d.wait_log(" subscribe '", count=before + max(1, len(topics)))
    except Exception:
        p.kill()
        out, errs = p.communicate()
        raise AssertionError('subscriber never subscribed: %s %s' % (out, errs))
    return p


def finish(p, timeout=20):
    try:
        out, errs = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, errs = p.communicate()
        raise AssertionError('subscriber did not exit: %s / %s' % (out, errs))
    return p.returncode, out, errs


def drop_matching_set(d):
    d.drop_text('x.txt', header_article('Not for telecoms', Subject='telecomsx'))
    d.drop_text('g.txt', header_article('Fifth generation', Subject='telecoms.5g'))
    d.drop_text('t.txt', header_article('Plain telecoms', Subject='telecoms'))


def test_c_sub_json_lines_and_matching():
    d = Daemon().start()
    try:
        p = start_sub(d, [os.path.join(BIN, 'newswire-sub'), '--connect', d.endpoint,
                          '--count', '2', '--timeout', '20', 'telecoms'], ['telecoms'])
        drop_matching_set(d)
        rc, out, errs = finish(p)
        check(rc == 0, 'exit 0 after --count: %r %s' % (rc, errs))
        lines = [json.loads(l) for l in out.splitlines()]
        topics = sorted(l['topic'] for l in lines)
        check(topics == ['telecoms', 'telecoms.5g'], 'never telecomsx: %r' % topics)
        t = [l for l in lines if l['topic'] == 'telecoms'][0]
        check(t['article']['headline'] == 'Plain telecoms' and t['seq'] == 1, 'fields %r' % t)
        check(t['source']['format'] == 'header', 'source %r' % t['source'])
        # the default rules file telecoms under its IPTC Media Topic, and the JSON says so
        check(t['article']['subject'] == [{'name': 'telecoms', 'code': 'medtop:13000000',
                                           'scheme': 'http://cv.iptc.org/newscodes/mediatopic/'}],
              'subject with its code: %r' % t['article'].get('subject'))
    finally:
        d.cleanup()


def test_c_sub_text_format():
    d = Daemon().start()
    try:
        p = start_sub(d, [os.path.join(BIN, 'newswire-sub'), '--connect', d.endpoint,
                          '--format', 'text', '--count', '1', '--timeout', '20'], [''])
        d.drop_text('t.txt', header_article('Readable headline', Author='Ana Lima', Subject='text'))
        rc, out, errs = finish(p)
        check(rc == 0 and 'Readable headline' in out and 'Ana Lima' in out, 'text: %r' % out)
    finally:
        d.cleanup()


def test_c_sub_bad_endpoint():
    r = subprocess.run([os.path.join(BIN, 'newswire-sub'), '--connect', 'nonsense://x',
                        '--count', '1'], capture_output=True, text=True, timeout=20)
    check(r.returncode == 1 and r.stderr.strip(), 'clear error: %r %r' % (r.returncode, r.stderr))


def test_newswire_drop_delivers_atomically_to_subject():
    d = Daemon().start()
    try:
        p = start_sub(d, [os.path.join(BIN, 'newswire-sub'), '--connect', d.endpoint,
                          '--count', '1', '--timeout', '20', 'geopolitics'], ['geopolitics'])
        src = os.path.join(d.root, 'mine.txt')
        with open(src, 'w') as f:
            f.write(header_article('Delivered by the tool', Subject='telecoms'))
        r = subprocess.run([os.path.join(BIN, 'newswire-drop'), '--subject', 'Geopolitics',
                            '--drop', d.drop, src], capture_output=True, text=True, timeout=20)
        check(r.returncode == 0, 'newswire-drop: %r' % r.stderr)
        rc, out, errs = finish(p)
        m = json.loads(out.splitlines()[0])
        check(m['topic'] == 'geopolitics' and m['article']['headline'] == 'Delivered by the tool',
              'delivered into the subject folder: %r' % m['topic'])
        wait_for(lambda: d.drop_files() == [], 'no temporary file left behind')
        check(os.path.exists(src), 'the source stays')
        r = subprocess.run([os.path.join(BIN, 'newswire-drop'), '--drop', '/nonexistent', src],
                           capture_output=True, text=True, timeout=20)
        check(r.returncode != 0 and r.stderr.strip(), 'missing folder: clear error')
    finally:
        d.cleanup()


def test_python_sample_matching():
    d = Daemon().start()
    try:
        p = start_sub(d, ['/usr/bin/python3', PY_SUB, '--connect', d.endpoint, '--count', '2',
                          '--timeout', '20', 'telecoms'], ['telecoms'])
        drop_matching_set(d)
        rc, out, errs = finish(p)
        check(rc == 0, 'python sample exit: %r %s' % (rc, errs))
        lines = [json.loads(l) for l in out.splitlines()]
        topics = sorted(l['topic'] for l in lines)
        check(topics == ['telecoms', 'telecoms.5g'], 'python sample matching: %r' % topics)
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_c_sub_json_lines_and_matching, test_c_sub_text_format, test_c_sub_bad_endpoint,
         test_newswire_drop_delivers_atomically_to_subject, test_python_sample_matching])
