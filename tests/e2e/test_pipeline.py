"""End to end: a real newswired, a real drop folder, real SUB sockets (issue: pipeline)."""
import os, re, signal, time

from nwtest import Daemon, Subscriber, check, header_article, run, wait_for

RFC3339_MS = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$')


def started(args=(), config=None, root=None):
    d = Daemon(root=root, args=args, config=config)
    d.start()
    return d


def test_rename_drop_decoded_fields():
    d = started()
    try:
        sub = Subscriber(d)
        d.drop_text('story.txt', header_article(
            'Operators sign a spectrum pact', Author='Ana Lima, Bo Chen', Date='May 25, 2021',
            Subject='Telecoms', Summary='A short summary.', Language='en',
            body='First paragraph.\n\nSecond paragraph.'))
        m = sub.wait(1)[0]
        check(m['v'] == 1 and m['topic'] == 'telecoms' and m['seq'] == 1, 'envelope: %r' % m)
        check(re.fullmatch(r'[0-9a-f]{40}', m['id']), 'id is 40 hex digits')
        check(re.fullmatch(r'[0-9a-f]{32}', m['epoch']), 'epoch is 32 hex digits')
        check(RFC3339_MS.match(m['sent']), 'sent is RFC 3339 with ms: %r' % m['sent'])
        check(m['source'] == {'file': 'story.txt', 'format': 'header'}, 'source %r' % m['source'])
        a = m['article']
        check(a['headline'] == 'Operators sign a spectrum pact', 'headline')
        check(a['byline'] == 'Ana Lima, Bo Chen', 'byline %r' % a.get('byline'))
        check(a['versioncreated'] == '2021-05-25T00:00:00.000Z', 'date %r' % a['versioncreated'])
        check(a['description_text'] == 'A short summary.', 'summary')
        check(a['body_text'] == 'First paragraph.\n\nSecond paragraph.', 'body %r' % a['body_text'])
        check(a['language'] == 'en' and a['type'] == 'text', 'language/type')
        check(a['uri'] == 'urn:newswire:' + m['id'], 'uri %r' % a['uri'])
        check(a['subject'] == [{'name': 'telecoms', 'scheme': 'http://cv.iptc.org/newscodes/mediatopic/',
                                'code': 'medtop:13000000'}], 'subject %r' % a['subject'])
        # the file leaves the drop folder for archive/YYYY/MM/DD/
        wait_for(lambda: d.archived(), 'the file to be archived')
        day = time.strftime('%Y/%m/%d', time.gmtime())
        check(d.archived()[0].endswith('/archive/%s/story.txt' % day), 'archived %r' % d.archived())
        check(d.drop_files() == [], 'drop folder empty')
    finally:
        d.cleanup()


def test_slow_in_place_write_published_once_whole():
    d = started()
    try:
        sub = Subscriber(d)
        path = os.path.join(d.drop, 'slow.txt')
        f = open(path, 'w')
        f.write('Title: Written slowly\nSubject: slow\n\nThe first half of the body')
        f.flush()
        os.fsync(f.fileno())
        # Proof that the daemon has looked at the folder since: a marker dropped after
        # the first write comes out, and the half-written file must not.
        d.drop_text('marker.txt', header_article('Marker', Subject='marker'))
        sub.wait(1, what='marker')
        f.write(' and the second half.\n')
        f.close()
        msgs = sub.wait(2)
        slow = [m for m in msgs if m['topic'] == 'slow']
        check(len(slow) == 1, 'published once: %r' % [m['topic'] for m in msgs])
        check(slow[0]['article']['body_text'] ==
              'The first half of the body and the second half.', 'published whole')
        # and no second copy arrives after the archive move
        d.drop_text('marker2.txt', header_article('Marker two', Subject='marker'))
        msgs = sub.wait(3)
        check([m['topic'] for m in msgs].count('slow') == 1, 'still once')
    finally:
        d.cleanup()


def test_subject_subfolder_wins():
    d = started()
    try:
        sub = Subscriber(d)
        os.makedirs(os.path.join(d.drop, 'geopolitics'))
        # a subfolder created while running is watched at once
        d.drop_text('treaty.txt', header_article('A treaty is signed', Subject='Telecoms'),
                    subdir='geopolitics')
        m = sub.wait(1)[0]
        check(m['topic'] == 'geopolitics', 'topic from the subfolder: %r' % m['topic'])
        check(m['source']['file'] == 'treaty.txt', 'source file name')
        wait_for(lambda: d.drop_files() == [], 'the file to leave the subfolder')
    finally:
        d.cleanup()


def test_backlog_oldest_first():
    d = Daemon()
    try:
        os.makedirs(d.drop)
        now = time.time()
        # names sort the other way round from their ages
        for i, name in enumerate(['c.txt', 'b.txt', 'a.txt']):
            p = d.drop_text(name, header_article('Backlog %d' % i, Subject='backlog'))
            os.utime(p, (now - 300 + i * 10, now - 300 + i * 10))
        d.start()
        sub = Subscriber(d)
        # the backlog may already be out before we subscribed; what counts is the order
        # the journal gave them, which a late subscriber sees through one more article
        d.drop_text('z.txt', header_article('Backlog last', Subject='backlog'))
        # backlog messages may still arrive ahead of it: wait for the marker itself
        while not any(x['article']['headline'] == 'Backlog last' for x in sub.messages):
            sub.wait(len(sub.messages) + 1)
        last = [x for x in sub.messages if x['article']['headline'] == 'Backlog last'][0]
        check(last['seq'] == 4, 'three backlog files came first: seq %r' % last['seq'])
        wait_for(lambda: len(d.archived()) == 4, 'all archived')
        order = re.findall(r"published (\w)\.txt", d.log())
        check(order == ['c', 'b', 'a', 'z'], 'oldest first: %r' % order)
    finally:
        d.cleanup()


def test_large_backlog_paced_oldest_first():
    # More files than the pipeline queues at once (1024): the watcher holds the rest of
    # its sorted scan and hands it over in slices, still oldest first, losing none.
    n = 2600
    d = Daemon()
    try:
        os.makedirs(d.drop)
        base = time.time() - 10000
        for i in range(n):
            p = d.drop_text('n%04d.txt' % i, header_article('Paced %d' % i, Subject='paced'))
            age = (i * 7919) % n   # shuffled: name order is not age order
            os.utime(p, (base + age, base + age))
        d.start()
        wait_for(lambda: len(d.archived()) == n, 'all %d archived' % n, timeout=60)
        order = [int(x) for x in re.findall(r"published n(\d{4})\.txt", d.log())]
        check(len(order) == n, 'each published once: %d' % len(order))
        ages = [(i * 7919) % n for i in order]
        check(ages == sorted(ages), 'oldest first across the slices')
        check(d.drop_files() == [], 'drop folder empty')
    finally:
        d.cleanup()


def test_stop_counts_files_a_scan_still_held():
    # Stopped while most of a large backlog is still held by the watcher: the stop line
    # counts those files too, and exactly those files are left in the drop folder.
    n = 2600
    d = Daemon()
    try:
        os.makedirs(d.drop)
        for i in range(n):
            d.drop_text('s%04d.txt' % i, header_article('Held %d' % i, Subject='held'))
        d.start()
        rc, _ = d.stop()
        check(rc == 0, 'clean exit: %r' % rc)
        m = re.search(r'stopped: (\d+) published, (\d+) rejected, \d+ duplicates; (\d+) files left',
                      d.log())
        check(m, 'stop line: %r' % d.log()[-400:])
        published, rejected, left = (int(x) for x in m.groups())
        check(left == len(d.drop_files()), 'left %d, in the folder %d' % (left, len(d.drop_files())))
        check(published + rejected + left == n, 'every file accounted for: %r' % (m.groups(),))
    finally:
        d.cleanup()


def test_several_subjects_several_topics_with_seq():
    d = started()
    try:
        sub = Subscriber(d, ['telecoms', 'geopolitics'])
        d.drop_text('one.txt', header_article('One', Subject='telecoms'))
        sub.wait(1)
        d.drop_text('two.txt', header_article('Two', Subject='Telecoms, Geopolitics'))
        msgs = sub.wait(3)
        got = sorted((m['topic'], m['seq'], m['article']['headline']) for m in msgs)
        check(got == [('geopolitics', 1, 'Two'), ('telecoms', 1, 'One'), ('telecoms', 2, 'Two')],
              'topics and seqs: %r' % got)
        two = [m for m in msgs if m['article']['headline'] == 'Two']
        check(two[0]['id'] == two[1]['id'], 'one article, one id on both topics')
    finally:
        d.cleanup()


def test_seq_continues_after_restart():
    d = started()
    try:
        sub = Subscriber(d)
        d.drop_text('a.txt', header_article('First', Subject='wire'))
        d.drop_text('b.txt', header_article('Second', Subject='wire'))
        first = sub.wait(2)
        epoch = first[0]['epoch']
        rc, _ = d.stop()
        check(rc == 0, 'clean exit')
        sub.close()
        d.start()
        sub = Subscriber(d)
        d.drop_text('c.txt', header_article('Third', Subject='wire'))
        m = sub.wait(1)[0]
        check(m['seq'] == 3, 'seq continues: %r' % m['seq'])
        check(m['epoch'] == epoch, 'same epoch after a restart')
    finally:
        d.cleanup()


def test_sigterm_exits_cleanly():
    d = started()
    try:
        for i in range(20):
            d.drop_text('n%02d.txt' % i, header_article('Story %d' % i, Subject='busy'))
        rc, took = d.stop(signal.SIGTERM)
        check(rc == 0, 'exit code 0, got %r' % rc)
        check(took < 5.0, 'exited within 5 s (%.2f)' % took)
        check('stopped:' in d.log(), 'logged its stop')
        # every file is either archived or still in the drop folder, never lost
        check(len(d.archived()) + len(d.drop_files()) == 20, 'nothing lost')
        d2 = Daemon(root=d.root).start()
        wait_for(lambda: len(d2.archived()) == 20, 'the rest published after a restart')
        d2.stop()
    finally:
        d.cleanup()


def test_sigint_exits_cleanly():
    d = started()
    try:
        rc, took = d.stop(signal.SIGINT)
        check(rc == 0 and took < 5.0, 'SIGINT: exit 0 within 5 s (%r, %.2f)' % (rc, took))
    finally:
        d.cleanup()


def test_sighup_reloads_rules_and_keeps_subscribers():
    cfg = 'newswired\n    log-level = "debug"\n'
    d = started(config=cfg)
    try:
        sub = Subscriber(d)
        d.drop_text('before.txt', header_article(
            'Rocket launch puts a satellite in orbit', body='The rocket reached orbit.'))
        before = sub.wait(1)[0]
        check(before['topic'] != 'space', 'no space rule yet: %r' % before['topic'])
        with open(os.path.join(d.root, 'newswired.cfg'), 'w') as f:
            f.write(cfg + 'rules\n    space\n        threshold = 2\n'
                    '        words = "rocket, satellite, orbit"\n')
        d.send_signal(signal.SIGHUP)
        d.wait_log('reloaded')
        d.drop_text('after.txt', header_article(
            'Another rocket launch for a satellite', body='A second satellite reached orbit.'))
        after = sub.wait(2)[1]
        check(after['topic'] == 'space', 'routed by the reloaded rule: %r' % after['topic'])
    finally:
        d.cleanup()


def test_malformed_files_rejected_with_reason_others_go_out():
    d = started(args=['--max-size', '4096'])
    try:
        sub = Subscriber(d)
        d.drop_text('no-headline.txt', 'Author: Nobody\nSubject: x\n\nA body without a title.\n')
        d.drop_text('nul.txt', b'Title: Has a NUL\n\nbody\x00more\n')
        d.drop_text('huge.txt', header_article('Too big', body='x' * 10000))
        d.drop_text('empty.txt', '')
        d.drop_text('good.txt', header_article('Still goes out', Subject='good'))
        m = sub.wait(1)[0]
        check(m['article']['headline'] == 'Still goes out', 'the good one is published')
        bad = ['empty.txt', 'huge.txt', 'no-headline.txt', 'nul.txt']
        # the exact listing, not a count: a reason being written is a temporary file there
        # first (seen counted as the eighth entry with one file still to be moved)
        want = sorted(bad + [b + '.reason' for b in bad])
        wait_for(lambda: d.rejected() == want,
                 'four files and four reasons in rejected/, nothing else')
        reasons = {}
        for b in bad:
            with open(os.path.join(d.state, 'rejected', b + '.reason')) as f:
                text = f.read()
            check(text.endswith('\n') and text.count('\n') == 1, 'one line: %r' % text)
            reasons[b] = text
        check('headline' in reasons['no-headline.txt'], reasons['no-headline.txt'])
        check('NUL' in reasons['nul.txt'], reasons['nul.txt'])
        check('too large' in reasons['huge.txt'], reasons['huge.txt'])
        check('rejected' in d.log() and d.proc.poll() is None, 'logged, still running')
    finally:
        d.cleanup()


def test_symlink_not_followed():
    d = started()
    try:
        sub = Subscriber(d)
        secret = os.path.join(d.root, 'outside.txt')
        with open(secret, 'w') as f:
            f.write(header_article('Outside the drop folder', Subject='secret'))
        tmp = os.path.join(d.drop, '.link.tmp')
        os.symlink(secret, tmp)
        os.rename(tmp, os.path.join(d.drop, 'link.txt'))
        d.drop_text('after.txt', header_article('After the link', Subject='fine'))
        m = sub.wait(1)[0]
        check(m['topic'] == 'fine', 'the symlink target was not published: %r' % m['topic'])
        # the reason is claimed before the file moves: wait for both
        wait_for(lambda: {'link.txt', 'link.txt.reason'} <= set(d.rejected()),
                 'the link to be rejected')
        with open(os.path.join(d.state, 'rejected', 'link.txt.reason')) as f:
            check('symbolic link' in f.read(), 'reason names the symlink')
        check(os.path.islink(os.path.join(d.state, 'rejected', 'link.txt')), 'moved, as a link')
        check(os.path.exists(secret), 'the target is untouched')
    finally:
        d.cleanup()


def test_same_article_twice_is_not_published_twice():
    d = started()
    try:
        sub = Subscriber(d)
        text = header_article('Only once', Subject='dedup')
        d.drop_text('first.txt', text)
        sub.wait(1)
        d.drop_text('again.txt', text)
        d.wait_log('duplicate again.txt')
        d.drop_text('other.txt', header_article('Something else', Subject='dedup'))
        msgs = sub.wait(2)
        check([m['article']['headline'] for m in msgs] == ['Only once', 'Something else'],
              'the duplicate was not published')
        check(msgs[1]['seq'] == 2, 'and took no seq')
        wait_for(lambda: len(d.archived()) == 3, 'the duplicate archived too')
    finally:
        d.cleanup()


def test_archive_collisions_renamed():
    d = started()
    try:
        sub = Subscriber(d)
        for i in range(3):
            d.drop_text('same.txt', header_article('Same name %d' % i, Subject='names'))
            sub.wait(i + 1)
            wait_for(lambda: len(d.archived()) == i + 1, 'archived %d' % (i + 1))
        names = sorted(os.path.basename(p) for p in d.archived())
        check(names == ['same-1.txt', 'same-2.txt', 'same.txt'], 'renamed: %r' % names)
    finally:
        d.cleanup()


def test_backlog_file_still_open_for_writing_waits_for_close():
    d = Daemon()
    try:
        os.makedirs(d.drop)
        path = os.path.join(d.drop, 'open.txt')
        f = open(path, 'w')
        f.write('Title: Still being written\nSubject: open\n\nThe first part')
        f.flush()
        d.drop_text('done.txt', header_article('Already complete', Subject='open'))
        d.start()
        sub = Subscriber(d)
        # the complete one is in the backlog too; once it is out, the scan has passed
        # the open one and must have left it alone (a writer still holds it)
        wait_for(lambda: 'published done.txt' in d.log(), 'the complete backlog file')
        check('published open.txt' not in d.log(), 'an open file is not taken')
        check('open.txt' in d.drop_files(), 'it stays in the drop folder')
        f.write(' and the rest.\n')
        f.close()
        # done.txt may reach the subscriber too, depending on when it connected
        def open_one():
            sub.poll(50)
            return [m for m in sub.messages if m['source']['file'] == 'open.txt']
        m = wait_for(open_one, 'open.txt after its close')
        check(len(m) == 1 and m[0]['article']['body_text'] == 'The first part and the rest.',
              'published once, whole: %r' % [x['article']['body_text'] for x in m])
    finally:
        d.cleanup()


def test_systemd_notifications():
    d = Daemon(env={'WATCHDOG_USEC': '200000'})
    try:
        d.start()
        d.wait_notify('WATCHDOG=1')
        sub = Subscriber(d)
        d.drop_text('a.txt', header_article('Counted', Subject='status'))
        sub.wait(1)
        d.wait_notify('STATUS=1 published')
        d.send_signal(signal.SIGHUP)
        d.wait_notify('RELOADING=1')
        rc, _ = d.stop()
        check(rc == 0 and 'STOPPING=1' in d.notes, 'STOPPING=1 before exit: %r' % d.notes[-5:])
    finally:
        d.cleanup()


def test_notifications_never_stall_the_daemon():
    """sd_notify blocks once the socket's queue is full (net.unix.max_dgram_qlen, ten
    datagrams by default), so whoever owns NOTIFY_SOCKET must keep reading it, as systemd
    does. Each reload sends two datagrams: eight reloads, none of them read by the test
    meanwhile, and the daemon still answers and publishes."""
    d = started()
    try:
        sub = Subscriber(d)
        for i in range(1, 9):
            d.send_signal(signal.SIGHUP)
            d.wait_log('reloaded', count=i)
        d.drop_text('after.txt', header_article('Published after eight reloads'))
        check(sub.wait(1)[0]['article']['headline'] == 'Published after eight reloads',
              'published after the reloads')
    finally:
        d.cleanup()


def test_usage_errors_and_version():
    import subprocess
    from nwtest import BIN
    exe = os.path.join(BIN, 'newswired')
    r = subprocess.run([exe, '--version'], capture_output=True, text=True)
    check(r.returncode == 0 and r.stdout.startswith('newswired '), 'version: %r' % r.stdout)
    r = subprocess.run([exe, '--help'], capture_output=True, text=True)
    check(r.returncode == 0 and '--publish ENDPOINT' in r.stdout, 'help')
    r = subprocess.run([exe, '--bogus'], capture_output=True, text=True)
    check(r.returncode == 2 and 'bogus' in r.stderr, 'unknown flag: %r' % r.stderr)
    r = subprocess.run([exe, '--config', '/nonexistent/newswired.cfg'], capture_output=True, text=True)
    check(r.returncode == 2 and 'nonexistent' in r.stderr, 'missing config: %r' % r.stderr)


if __name__ == '__main__':
    run([test_rename_drop_decoded_fields, test_slow_in_place_write_published_once_whole,
         test_subject_subfolder_wins, test_backlog_oldest_first,
         test_large_backlog_paced_oldest_first, test_stop_counts_files_a_scan_still_held,
         test_several_subjects_several_topics_with_seq, test_seq_continues_after_restart,
         test_sigterm_exits_cleanly, test_sigint_exits_cleanly,
         test_sighup_reloads_rules_and_keeps_subscribers,
         test_malformed_files_rejected_with_reason_others_go_out, test_symlink_not_followed,
         test_same_article_twice_is_not_published_twice, test_archive_collisions_renamed,
         test_backlog_file_still_open_for_writing_waits_for_close, test_systemd_notifications,
         test_notifications_never_stall_the_daemon,
         test_usage_errors_and_version])
