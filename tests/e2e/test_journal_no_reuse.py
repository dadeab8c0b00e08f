"""End to end: recovery never hands out a seq that may have been published (issue 11, 2).

Each test publishes through a real daemon, stops it, damages STATE/journal on disk the
way a disk fault or an operator would (a flipped byte in a topic's newest record, a
whole group write overwritten, the newest segment deleted, a middle one deleted, the
tail overwritten), starts it again and publishes more. Every message any subscriber
received is kept by (epoch, topic, seq): no such triple may ever name two articles.
Where the journal can tell how far each topic got, the epoch stays and the seqs go on
above it; where it cannot, a new epoch starts (proto/newswire-v1.md, section 6.1).
"""
import os

from nwtest import Daemon, Subscriber, check, header_article, run, wait_for
from test_journal_recovery import HEADER, read_segment, segments


class Seen:
    """Every (epoch, topic, seq) received, with the article id it named."""

    def __init__(self):
        self.ids = {}

    def add(self, msgs):
        for m in msgs:
            key = (m['epoch'], m['topic'], m['seq'])
            check(self.ids.setdefault(key, m['id']) == m['id'],
                  '(epoch, topic, seq) %r named two articles: %s and %s'
                  % (key, self.ids[key], m['id']))


def publish(d, sub, topic, n, tag):
    for i in range(n):
        d.drop_text('%s-%s-%02d.txt' % (tag, topic, i),
                    header_article('%s story %d on %s' % (tag.title(), i, topic), Subject=topic,
                                   body='Paragraph %d of the %s %s report.' % (i, tag, topic)))
        sub.wait(len(sub.messages) + 1)     # one at a time: a group write each
    wait_for(lambda: d.drop_files() == [], 'the drop folder to empty')


def restart_and_mark(d, seen, topics):
    """Start again, then publish one marker per topic; returns {topic: marker}."""
    d.start()
    sub = Subscriber(d, [''])
    out = {}
    for t in topics:
        d.drop_text('marker-%s-%d.txt' % (t, len(seen.ids)),
                    header_article('Marker on %s after restart %d' % (t, len(seen.ids)),
                                   Subject=t, body='Marker body for %s.' % t))
        out[t] = sub.wait(len(sub.messages) + 1)[-1]
    seen.add(sub.messages)
    sub.close()
    check(d.stop()[0] == 0, 'clean exit')
    return out


def first_run(d, seen, plan):
    """Publish plan [(topic, n), ...] through a fresh daemon and stop it."""
    d.start()
    sub = Subscriber(d, [''])
    for topic, n in plan:
        publish(d, sub, topic, n, 'first')
    seen.add(sub.messages)
    sub.close()
    check(d.stop()[0] == 0, 'clean exit')
    return sub.messages


def records(path):
    recs, _, _ = read_segment(path)
    return recs


def write_of(recs, topic, seq):
    """The message record (topic, seq) and the commit that closes its group write (a
    journal written before commits existed has none: then the record itself)."""
    i = [k for k, r in enumerate(recs) if r.get('topic') == topic and r.get('seq') == seq][0]
    j = next((k for k in range(i, len(recs)) if recs[k].get('type') == 2), None)
    if j is None or any(r.get('type') == 1 for r in recs[i + 1:j]):
        return recs[i], recs[i]
    check(recs[j]['start'] <= recs[i]['off'] and recs[j]['seqs'] == {topic: seq},
          'the commit after (%s, %d) closes its write: %r' % (topic, seq, recs[j]))
    return recs[i], recs[j]


def overwrite(path, off, n):
    """n bytes of garbage (never zero, never a record header) from off."""
    with open(path, 'r+b') as f:
        f.seek(off)
        f.write(bytes((i * 7 + 1) % 251 + 1 for i in range(n)))


def test_flipped_newest_record_of_a_topic():
    """The issue's case: the damaged record was wire's newest. Its write's commit still
    says wire reached 3, so the epoch stays and the next wire article is 4."""
    d, seen = Daemon(), Seen()
    try:
        first = first_run(d, seen, [('wire', 3), ('sport', 1)])
        epoch = first[0]['epoch']
        seg = segments(d.state)[-1]
        rec, _ = write_of(records(seg), 'wire', 3)
        with open(seg, 'r+b') as f:
            pos = rec['off'] + HEADER + rec['len'] // 2
            f.seek(pos)
            b = f.read(1)
            f.seek(pos)
            f.write(bytes([b[0] ^ 0x10]))
        d.log_offset = os.path.getsize(os.path.join(d.root, 'newswired.log'))
        marks = restart_and_mark(d, seen, ['wire', 'sport'])
        check('record of %d bytes fails its CRC, skipped' % rec['len'] in d.log(),
              'the damage is logged: %s' % d.log())
        check('new epoch' not in d.log(), 'no new epoch: %s' % d.log())
        check(marks['wire']['epoch'] == epoch and marks['wire']['seq'] == 4,
              'wire goes on at 4 in the same epoch: %r'
              % ((marks['wire']['epoch'], marks['wire']['seq']),))
        check(marks['sport']['seq'] == 2, 'sport goes on at 2: %r' % marks['sport']['seq'])
    finally:
        d.cleanup()


def test_whole_write_overwritten():
    """Wire's newest record and its commit are both garbage: nothing left says wire got
    to 3, so the seqs cannot be trusted and a new epoch starts; it then holds."""
    d, seen = Daemon(), Seen()
    try:
        first = first_run(d, seen, [('wire', 3), ('sport', 1)])
        epoch = first[0]['epoch']
        seg = segments(d.state)[-1]
        rec, commit = write_of(records(seg), 'wire', 3)
        overwrite(seg, rec['off'], commit['off'] + HEADER + commit['len'] - rec['off'])
        d.log_offset = os.path.getsize(os.path.join(d.root, 'newswired.log'))
        marks = restart_and_mark(d, seen, ['wire', 'sport'])
        check('journal: cannot tell the last seqs published: bytes %d to ' % rec['off']
              in d.log(), 'the log says why: %s' % d.log())
        e2 = marks['wire']['epoch']
        check(e2 != epoch and 'new epoch %s' % e2 in d.log(), 'a new epoch: %s' % d.log())
        check(marks['wire']['seq'] == 3 and marks['sport']['seq'] == 2,
              'the seqs go on above the highest held: %r'
              % ((marks['wire']['seq'], marks['sport']['seq']),))
        # the new epoch's checkpoint bounds the old damage: the next start keeps it
        d.log_offset = os.path.getsize(os.path.join(d.root, 'newswired.log'))
        again = restart_and_mark(d, seen, ['wire'])
        check(again['wire']['epoch'] == e2 and again['wire']['seq'] == 4,
              'the new epoch holds across a restart: %r'
              % ((again['wire']['epoch'], again['wire']['seq']),))
    finally:
        d.cleanup()


def test_tail_overwritten():
    """The last write (wire 3 and its commit) overwritten in place, the file keeping its
    size: not what a cut write leaves, so it may have been published: new epoch."""
    d, seen = Daemon(), Seen()
    try:
        first = first_run(d, seen, [('sport', 1), ('wire', 3)])
        epoch = first[0]['epoch']
        seg = segments(d.state)[-1]
        rec, commit = write_of(records(seg), 'wire', 3)
        end = commit['off'] + HEADER + commit['len']
        check(end == os.path.getsize(seg), 'wire 3 is the last write')
        overwrite(seg, rec['off'], end - rec['off'])
        d.log_offset = os.path.getsize(os.path.join(d.root, 'newswired.log'))
        marks = restart_and_mark(d, seen, ['wire'])
        check('bytes of garbage at the end' in d.log() and
              'cannot tell the last seqs published' in d.log(), 'logged: %s' % d.log())
        check(marks['wire']['epoch'] != epoch and marks['wire']['seq'] == 3,
              'a new epoch, wire at 3 in it: %r'
              % ((marks['wire']['epoch'], marks['wire']['seq']),))
    finally:
        d.cleanup()


def test_newest_segment_deleted():
    """The newest segment is gone: the one before it was sealed to it, so the loss is
    known and a new epoch starts above what is left; deleting again is caught again."""
    d, seen = Daemon(args=['--segment-size', '4096']), Seen()
    try:
        first = first_run(d, seen, [('wire', 20)])
        epoch = first[0]['epoch']
        segs = segments(d.state)
        check(len(segs) >= 3, 'several segments: %r' % segs)
        before = records(segs[-2])
        held = max(r['seq'] for r in before if r.get('type') == 1)
        os.remove(segs[-1])
        d.log_offset = os.path.getsize(os.path.join(d.root, 'newswired.log'))
        marks = restart_and_mark(d, seen, ['wire'])
        name = os.path.basename(segs[-1])
        e2 = marks['wire']['epoch']
        check(e2 != epoch and marks['wire']['seq'] == held + 1,
              'a new epoch going on above seq %d: %r' % (held, (e2, marks['wire']['seq'])))
        check('cannot tell the last seqs published: segment %s is missing' % name
              in d.log(), 'the log names the lost segment: %s' % d.log())
        check(before[-1].get('type') == 3 and before[-1]['next'] == len(segs),
              '%s ends sealed to the newest: %r' % (segs[-2], before[-1]))
        check(os.path.basename(segments(d.state)[-1]) == name,
              'the new epoch starts in a segment of the lost one\'s number')
        os.remove(segments(d.state)[-1])
        d.log_offset = os.path.getsize(os.path.join(d.root, 'newswired.log'))
        third = restart_and_mark(d, seen, ['wire'])
        check(third['wire']['epoch'] not in (epoch, e2), 'lost again: another epoch')
    finally:
        d.cleanup()


def test_middle_segment_deleted():
    """A segment between others is gone: the next one's checkpoint still bounds every
    topic, so the epoch stays and the seqs go on; the log says what cannot be replayed."""
    d, seen = Daemon(args=['--segment-size', '4096']), Seen()
    try:
        first = first_run(d, seen, [('wire', 20)])
        epoch = first[0]['epoch']
        segs = segments(d.state)
        check(len(segs) >= 3, 'several segments: %r' % segs)
        os.remove(segs[1])
        d.log_offset = os.path.getsize(os.path.join(d.root, 'newswired.log'))
        marks = restart_and_mark(d, seen, ['wire'])
        n = os.path.basename(segs[1])
        check('journal: segment %s is missing: its messages cannot be replayed' % n
              in d.log(),
              'the log names the missing segment: %s' % d.log())
        check(marks['wire']['epoch'] == epoch and marks['wire']['seq'] == 21,
              'same epoch, wire at 21: %r' % ((marks['wire']['epoch'], marks['wire']['seq']),))
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_flipped_newest_record_of_a_topic, test_whole_write_overwritten,
         test_tail_overwritten, test_newest_segment_deleted, test_middle_segment_deleted])
