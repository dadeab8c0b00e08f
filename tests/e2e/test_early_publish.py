"""End to end: --sync=early (issue 15, proto/newswire-v1.md section 6.2).

Early mode publishes a group write's messages once its write(2) returned and archives
their files only once its fdatasync is done. The test build's hooks make both moments
observable without timing: NW_TEST_SYNC_GATE names a FIFO that each early fdatasync waits
on for one byte (the write is then in the page cache, not yet durable), and
NW_TEST_BOOT_ID_FILE stands in for /proc/sys/kernel/random/boot_id, so that a test can
stage "the machine rebooted". A power loss is simulated by killing the daemon and
cutting the journal's newest segment back to before the last records subscribers saw,
with the lost articles' files put back into the drop folder (where a real power loss
leaves them, since they are archived only once durable).
"""
import os

from nwtest import Daemon, Subscriber, check, header_article, run, wait_for
from test_journal_recovery import read_segment, segments
from test_journal_no_reuse import Seen


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


def drop(d, name, topic):
    return d.drop_text(name + '.txt', header_article('Story %s' % name, Subject=topic,
                                                     body='The body of %s.' % name))


def test_published_before_durable_archived_after():
    d = Daemon()
    try:
        os.makedirs(d.root, exist_ok=True)
        gate = os.path.join(d.root, 'sync-gate')
        os.mkfifo(gate)
        early(d, 'boot-a', gate)
        d.start()
        sub = Subscriber(d, [''])
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


if __name__ == '__main__':
    run([test_published_before_durable_archived_after,
         test_lost_tail_on_another_boot_starts_a_new_epoch,
         test_kill_on_the_same_boot_keeps_the_epoch])
