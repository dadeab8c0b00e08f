"""End to end: --sync=early (issue 15, proto/newswire-v1.md section 6.2).

Early mode publishes a group write's messages once its write(2) returned and archives
their files only once its fdatasync is done. The test build's hooks make both moments
observable without timing: NW_TEST_SYNC_GATE names a FIFO that each early fdatasync waits
on for one byte (the write is then in the page cache, not yet durable), and
NW_TEST_BOOT_ID_FILE stands in for /proc/sys/kernel/random/boot_id, so that a test can
stage "the machine rebooted". A power loss is simulated by killing the daemon and
cutting the journal's newest segment back to before the last records subscribers saw,
with the lost articles' files put back into the drop folder (where a real power loss
leaves them, since they are archived only once durable). A failing disk is simulated
through the same gate: the byte 'E' (EIO) or 'S' (ENOSPC) makes the fdatasync it releases
fail, after its messages went out.
"""
import errno
import os

import msgpack

from nwtest import Daemon, Subscriber, check, header_article, run, wait_for
from test_journal_recovery import read_segment, segments
from test_journal_no_reuse import Seen
from test_replay import Replayer


def boot_file(d, boot):
    path = os.path.join(d.root, 'boot_id')
    with open(path + '.tmp', 'w') as f:
        f.write(boot + '\n')
    os.rename(path + '.tmp', path)
    return path


def early(d, boot, gate=None):
    d.args = ['--sync=early']
    d.env = {'NW_TEST_BOOT_ID_FILE': boot_file(d, boot)}
    if gate:
        d.env['NW_TEST_SYNC_GATE'] = gate


def gated(d, replay=False):
    """d started in early mode on boot-a, its fdatasyncs each waiting for a byte on a FIFO
    (NW_TEST_SYNC_GATE, see release), with a subscriber on every topic: (gate, sub).
    Its journal writes fail while the file d.write_fail exists (NW_TEST_WRITE_FAIL)."""
    os.makedirs(d.root, exist_ok=True)
    gate = os.path.join(d.root, 'sync-gate')
    os.mkfifo(gate)
    early(d, 'boot-a', gate)
    d.write_fail = os.path.join(d.root, 'write-fail')
    d.env['NW_TEST_WRITE_FAIL'] = d.write_fail
    if replay:
        d.replay = 'ipc://' + os.path.join(d.root, 'replay.sock')
        d.args += ['--replay', d.replay]
    d.start()
    return gate, Subscriber(d, [''])


def drop(d, name, topic):
    return d.drop_text(name + '.txt', header_article('Story %s' % name, Subject=topic,
                                                     body='The body of %s.' % name))


def test_published_before_durable_archived_after():
    d = Daemon()
    try:
        gate, sub = gated(d)
        drop(d, 'held', 'politics')
        # the fdatasync waits on the gate: the message arrives all the same
        m = sub.wait(1)[0]
        check(m['id'] and m['topic'] == 'politics', 'the article was published: %r' % m)
        check(d.drop_files() == ['held.txt'] and d.archived() == [],
              'not durable yet: the file stays in the drop folder (drop %r, archive %r)'
              % (d.drop_files(), d.archived()))
        with open(gate, 'wb') as g:       # let the one fdatasync go
            g.write(b'x')
        wait_for(lambda: d.drop_files() == [] and len(d.archived()) == 1,
                 'the file archived once its record is durable')
        check(len(sub.messages) == 1, 'published once')
        # the daemon stops cleanly with nothing held (its last flush is not gated)
        sub.close()
        check(d.stop()[0] == 0, 'clean exit')
        check(not os.path.exists(os.path.join(d.state, 'journal', 'early.run')),
              'a clean stop removes the early run marker')
    finally:
        d.cleanup()


def publish(d, sub, names, topic):
    for n in names:
        drop(d, n, topic)
        sub.wait(len(sub.messages) + 1)     # one group write each
    wait_for(lambda: d.drop_files() == [], 'the drop folder to empty')


def cut_after(d, topic, seq):
    """Cut the newest segment back to where the record (topic, seq) begins: what a
    power loss does to writes that were published but never fsynced."""
    path = segments(d.state)[-1]
    recs, _, _ = read_segment(path)
    off = [r['off'] for r in recs if r.get('topic') == topic and r.get('seq') == seq][0]
    os.truncate(path, off)


def lost_tail_run(boot_after):
    """First run in boot-a: publish 5 on one topic, kill -9, lose the tail from seq 4
    on, restart in boot_after, publish one more, then put the lost ones' files back.
    Returns (first messages, second messages, daemon log)."""
    d = Daemon()
    seen = Seen()
    try:
        early(d, 'boot-a')
        d.start()
        sub = Subscriber(d, [''])
        names = ['art-%d' % i for i in range(1, 6)]
        publish(d, sub, names, 'economy')
        first = list(sub.messages)
        seen.add(first)
        sub.close()
        d.kill()
        check(os.path.exists(os.path.join(d.state, 'journal', 'early.run')),
              'a killed early run leaves its marker')
        cut_after(d, 'economy', 4)
        early(d, boot_after)
        d.start()
        sub = Subscriber(d, [''])
        # a new article first: in a kept epoch it would take seq 4, which art-4 had
        drop(d, 'art-6', 'economy')
        sub.wait(1)
        for name in names[3:]:              # their files, back where a power loss leaves them
            src = [p for p in d.archived() if name in os.path.basename(p)]
            check(len(src) == 1, 'the archived file of %s: %r' % (name, d.archived()))
            os.rename(src[0], os.path.join(d.drop, name + '.txt'))
        sub.wait(3)
        wait_for(lambda: d.drop_files() == [], 'the drop folder to empty')
        second = list(sub.messages)
        seen.add(second)                    # no (epoch, topic, seq) names two articles
        sub.close()
        check(d.stop()[0] == 0, 'clean exit')
        return first, second, d.log()
    finally:
        d.cleanup()


def test_lost_tail_on_another_boot_starts_a_new_epoch():
    first, second, log = lost_tail_run('boot-b')
    check('new epoch' in log and 'boot-a' in log, 'the new epoch is logged with its reason')
    old = {m['epoch'] for m in first}
    check(len(old) == 1 and all(m['epoch'] not in old for m in second),
          'every message after the restart is in a new epoch: %r then %r'
          % (old, {m['epoch'] for m in second}))
    check(len(second) == 3 and sorted(m['id'] for m in second[1:]) ==
          sorted(m['id'] for m in first[3:]),
          'the lost articles are published again, not dropped as duplicates')


def test_kill_on_the_same_boot_keeps_the_epoch():
    # a crash of the process alone: the page cache kept every write, nothing was cut
    d = Daemon()
    try:
        early(d, 'boot-a')
        d.start()
        sub = Subscriber(d, [''])
        publish(d, sub, ['same-1', 'same-2'], 'sport')
        epoch = sub.messages[0]['epoch']
        sub.close()
        d.kill()
        d.start()
        sub = Subscriber(d, [''])
        publish(d, sub, ['same-3'], 'sport')
        m = sub.messages[-1]
        check(m['epoch'] == epoch and m['seq'] == 3, 'same epoch, seqs go on: %r' % m)
        sub.close()
        # a clean stop, then another boot: nothing was published early that is not durable
        check(d.stop()[0] == 0, 'clean exit')
        early(d, 'boot-b')
        d.start()
        sub = Subscriber(d, [''])
        publish(d, sub, ['same-4'], 'sport')
        m = sub.messages[-1]
        check(m['epoch'] == epoch and m['seq'] == 4,
              'a clean stop keeps the epoch across a boot change: %r' % m)
        sub.close()
        check(d.stop()[0] == 0, 'clean exit')
        check('new epoch' not in d.log(), 'no new epoch was made')
    finally:
        d.cleanup()


def release(gate, byte=b'x'):
    """Let the fdatasync held at the gate go ('x'), or make it fail ('E': EIO, 'S':
    ENOSPC). Opening blocks until the daemon's worker waits on the gate."""
    with open(gate, 'wb') as g:
        g.write(byte)


def last_status(d):
    d.read_notify()
    status = [n for n in d.notes if n.startswith('STATUS=')]
    return status[-1] if status else ''


def test_fdatasync_failing_after_early_publish():
    """An article went out, then its fdatasync failed (EIO, then ENOSPC on the retry):
    its file stays in the drop folder and is published again once a write succeeds,
    each time under a new seq of the same epoch (the spent ones are never used again),
    the failure is in the log and in STATUS with its reason, and the next start makes
    a new epoch (proto/newswire-v1.md 6.2)."""
    d = Daemon()
    seen = Seen()
    try:
        gate, sub = gated(d, replay=True)
        drop(d, 'doomed', 'politics')
        first = sub.wait(1)[0]
        check(first['seq'] == 1, 'published before its fdatasync: %r' % first)
        release(gate, b'E')
        d.wait_log('journal write failed (Input/output error)')
        wait_for(lambda: 'JOURNAL WRITES FAILING (Input/output error)' in last_status(d),
                 'STATUS saying why the journal fails: %r' % last_status(d))
        check(d.drop_files() == ['doomed.txt'] and d.archived() == [],
              'the file of the article that was not made durable stays in the drop folder '
              '(drop %r, archive %r)' % (d.drop_files(), d.archived()))
        # the pipeline retries the file: published again at once, under the next seq
        again = sub.wait(2)[1]
        check(again['id'] == first['id'] and again['epoch'] == first['epoch'] and
              again['seq'] == 2, 'the retry goes out under a new seq of the same epoch: '
              '%r then %r' % ((first['epoch'], first['seq']), (again['epoch'], again['seq'])))
        check('FAILING' in last_status(d) and d.archived() == [],
              'still failing, nothing archived, until a write is durable: %r' % last_status(d))
        release(gate, b'S')
        wait_for(lambda: 'JOURNAL WRITES FAILING (No space left on device)' in last_status(d),
                 'STATUS with the new reason: %r' % last_status(d))
        third = sub.wait(3)[2]
        check(third['id'] == first['id'] and third['seq'] == 3, 'the second retry: %r' % third)
        drop(d, 'behind', 'politics')       # waits behind the held write
        release(gate)
        wait_for(lambda: d.archived() != [] and 'doomed.txt' not in d.drop_files(),
                 'the file archived once its record is durable')
        fourth = sub.wait(4)[3]
        check(fourth['id'] != first['id'] and fourth['seq'] == 4,
              'the next article takes the next seq, none of the spent ones: %r' % fourth)
        release(gate)
        wait_for(lambda: d.drop_files() == [] and len(d.archived()) == 2, 'both archived')
        d.wait_log('journal writes succeed again')
        wait_for(lambda: 'FAILING' not in last_status(d), 'STATUS without the failure')
        seen.add(sub.messages)
        check(len(sub.messages) == 4, 'nothing else was sent: %r' % sub.messages[4:])
        # replay serves what the journal holds: the spent seqs are skipped, as a damaged
        # record is (6.1), and what it serves is what went out live
        r = Replayer(d)
        r.send(type='replay', topic='politics', **{'from': 1}, credit=100)
        data, end = r.collect()
        got = [msgpack.unpackb(f[1], raw=False) for f in data]
        check([m['seq'] for m in got] == [3, 4] and got == sub.messages[2:] and
              end['head'] == 4, 'replay from 1: seqs %r, end %r' % ([m['seq'] for m in got], end))
        r.send(type='replay', topic='politics', **{'from': 1, 'to': 2}, credit=100)
        data, end = r.collect()
        check(data == [] and end['last'] == 0, 'only spent seqs: nothing, end %r' % end)
        r.close()
        sub.close()
        check(d.stop()[0] == 0, 'clean exit')
        check(open(os.path.join(d.state, 'journal', 'early.run')).read().strip() == 'lost',
              'the marker says records went out that a write then lost')
        # the next start cannot tell which spent seqs subscribers hold: a new epoch
        early(d, 'boot-a')
        d.start()
        d.wait_log('fdatasync failed after its messages were published early')
        sub = Subscriber(d, [''])
        drop(d, 'after', 'politics')
        m = sub.wait(1)[0]
        check(m['epoch'] != first['epoch'] and m['seq'] == 5,
              'a new epoch, seqs above the highest held: %r' % ((m['epoch'], m['seq']),))
        seen.add(sub.messages)
        sub.close()
        check(d.stop()[0] == 0, 'clean exit')
        check(not os.path.exists(os.path.join(d.state, 'journal', 'early.run')),
              'a clean stop with nothing lost removes the marker')
    finally:
        d.cleanup()


def release_all(d, gate, until):
    """Let every fdatasync reaching the gate go until until() holds (how many there will
    be depends on how the files are batched). A FIFO opened for writing without a
    reader fails with ENXIO: the daemon is not waiting on it yet."""
    def step():
        if until():
            return True
        try:
            fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno != errno.ENXIO:
                raise
            return False
        try:
            os.write(fd, b'x')
        finally:
            os.close(fd)
        return until()
    wait_for(step, 'the held fdatasyncs done')


def durable_then_held(d, gate, sub, name):
    """'first' published and archived (its fdatasync let go), then name published with
    its fdatasync held at the gate."""
    drop(d, 'first', 'economy')
    sub.wait(1)
    release(gate)
    wait_for(lambda: d.drop_files() == [], 'the first file archived')
    drop(d, name, 'economy')
    sub.wait(2)


def test_written_while_an_fdatasync_runs():
    """A write does not wait for the fdatasync before it: with one held, the next
    articles go out all the same, each file archived once its own is durable; when the
    held one then fails, everything written since the last durable one is lost and its
    seqs spent (6.2), and those files go out again under new seqs."""
    d = Daemon()
    seen = Seen()
    try:
        gate, sub = gated(d, replay=True)
        durable_then_held(d, gate, sub, 'held')
        drop(d, 'next', 'economy')
        m = sub.wait(3, what='an article written while the fdatasync before it is held')[2]
        check(m['seq'] == 3 and sorted(d.drop_files()) == ['held.txt', 'next.txt'],
              'both went out, neither is archived yet: seq %r, drop %r'
              % (m['seq'], d.drop_files()))
        release(gate)
        wait_for(lambda: d.drop_files() == ['next.txt'], 'the held one archived, alone')
        release(gate)
        wait_for(lambda: d.drop_files() == [], 'the next one archived once its own is durable')
        # the held fdatasync fails: the write after it is lost with it
        drop(d, 'lost-1', 'economy')
        sub.wait(4)
        drop(d, 'lost-2', 'economy')
        sub.wait(5)
        release(gate, b'E')
        d.wait_log('journal write failed (Input/output error)')
        release_all(d, gate, lambda: d.drop_files() == [])
        msgs = sub.wait(7, what='the two lost articles sent again')
        seen.add(msgs)
        ids = [m['id'] for m in msgs]
        check(sorted(ids[5:]) == sorted(ids[3:5]) and [m['seq'] for m in msgs] == list(range(1, 8)),
              'sent again under seqs 6 and 7: %r' % [(m['seq'], m['id'][:8]) for m in msgs])
        check(len(d.archived()) == 5, 'every file archived once: %r' % d.archived())
        r = Replayer(d)
        r.send(type='replay', topic='economy', **{'from': 1}, credit=100)
        data, end = r.collect()
        r.close()
        got = [msgpack.unpackb(f[1], raw=False) for f in data]
        check([m['seq'] for m in got] == [1, 2, 3, 6, 7] and got == msgs[:3] + msgs[5:],
              'the journal holds what went out but the lost write: %r'
              % [m['seq'] for m in got])
        sub.close()
        check(d.stop()[0] == 0, 'clean exit')
    finally:
        d.cleanup()


def replayed(d, topic):
    r = Replayer(d)
    r.send(type='replay', topic=topic, **{'from': 1}, credit=100)
    data, end = r.collect()
    r.close()
    return [(m['seq'], m['id']) for m in (msgpack.unpackb(f[1], raw=False) for f in data)]


def test_write_failing_while_an_fdatasync_runs_keeps_what_it_covers():
    """A write fails on the loop while the fdatasync before it runs, and that fdatasync
    succeeds: what it covered is durable and stays (archived, in replay, not sent
    again); only the failed batch is retried, under the next seq (a review found the
    covered records cut back, sent again under a new seq and the seq left a hole)."""
    d = Daemon()
    try:
        gate, sub = gated(d, replay=True)
        drop(d, 'kept', 'economy')
        first = sub.wait(1)[0]                  # its fdatasync waits on the gate
        open(d.write_fail, 'w').close()
        drop(d, 'doomed', 'economy')
        d.wait_log('an early write failed (Input/output error) while an fdatasync runs')
        os.unlink(d.write_fail)
        release(gate)
        release_all(d, gate, lambda: d.drop_files() == [])
        msgs = sub.wait(2, what='the failed one sent once its write succeeds')
        check([(m['seq'], m['id']) for m in msgs] == [(1, first['id']), (2, msgs[1]['id'])]
              and msgs[1]['id'] != first['id'],
              'kept at seq 1, the failed one at seq 2, nothing sent twice: %r'
              % [(m['seq'], m['id'][:8]) for m in msgs])
        check(replayed(d, 'economy') == [(m['seq'], m['id']) for m in msgs],
              'replay holds both: %r' % replayed(d, 'economy'))
        check(len(d.archived()) == 2, 'both archived: %r' % d.archived())
        check('early write' in d.log() and ' 2 records dropped' not in d.log(),
              'only the failed batch was dropped')
        sub.close()
        check(d.stop()[0] == 0, 'clean exit')
        check(not os.path.exists(os.path.join(d.state, 'journal', 'early.run')),
              'nothing that went out was lost: a clean stop removes the marker')
    finally:
        d.cleanup()


def test_spent_seqs_stay_spent_after_a_second_failure():
    """An article went out, its fdatasync failed (its seq is spent), and the retry's
    write fails too, before anything of it goes out: the seq stays spent all the same
    (a review found the retry's failure put the topic back to its durable seq, so the
    spent one was handed out again)."""
    d = Daemon()
    try:
        gate, sub = gated(d, replay=True)
        durable_then_held(d, gate, sub, 'again')
        open(d.write_fail, 'w').close()         # the retry's write will fail
        release(gate, b'E')
        d.wait_log('records dropped', count=2)  # the early one, then the retry's
        os.unlink(d.write_fail)
        release_all(d, gate, lambda: d.drop_files() == [])
        msgs = sub.wait(3, what='the article sent again once a write succeeds')
        check([m['seq'] for m in msgs] == [1, 2, 3] and msgs[2]['id'] == msgs[1]['id'],
              'sent again under seq 3, seq 2 not reused: %r'
              % [(m['seq'], m['id'][:8]) for m in msgs])
        check(replayed(d, 'economy') == [(1, msgs[0]['id']), (3, msgs[2]['id'])],
              'replay skips the spent seq: %r' % replayed(d, 'economy'))
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_published_before_durable_archived_after,
         test_lost_tail_on_another_boot_starts_a_new_epoch,
         test_kill_on_the_same_boot_keeps_the_epoch,
         test_fdatasync_failing_after_early_publish,
         test_written_while_an_fdatasync_runs,
         test_write_failing_while_an_fdatasync_runs_keeps_what_it_covers,
         test_spent_seqs_stay_spent_after_a_second_failure])
