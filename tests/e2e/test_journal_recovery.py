"""End to end: journal recovery after damage made while newswired is stopped (issue: faults).

Each test publishes through a real daemon, stops it, damages STATE/journal the way a
crash or a bad disk would (a torn tail, a flipped byte, a lost journal), starts it again
and checks what it says and what it publishes. The segment reader below is written from
the format in daemon/journal.h alone, so the tests also check the files themselves;
test_faults.py reuses it.
"""
import glob, os, shutil, struct, time

import msgpack

from nwtest import Daemon, Subscriber, check, header_article, run, wait_for

MAGIC = 0x314a574e        # "NWJ1" read as a little-endian u32
HEADER = 12

_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82f63b78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data):
    crc = 0xffffffff
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xff] ^ (crc >> 8)
    return crc ^ 0xffffffff


def segments(state):
    return sorted(glob.glob(os.path.join(state, 'journal', '[0-9]' * 12 + '.nwj')))


def read_segment(path, verify_crc=True):
    """Records of one segment: dicts with off, len, ok (CRC), and the decoded fields.
    Stops at anything that is not a whole record (returned as the 'tail' offset). The
    size returned leaves out a run of zeros after the last record: the current segment
    keeps written zeros ahead of its data while the daemon runs (journal.c), and a kill
    leaves them, which is not damage."""
    with open(path, 'rb') as f:
        data = f.read()
    out, off = [], 0
    while off + HEADER <= len(data):
        magic, length, crc = struct.unpack_from('<III', data, off)
        if magic != MAGIC or off + HEADER + length > len(data):
            break
        payload = data[off + HEADER:off + HEADER + length]
        rec = {'off': off, 'len': length, 'ok': not verify_crc or crc32c(payload) == crc}
        if rec['ok']:
            a = msgpack.unpackb(payload, raw=False)
            if a[0] == 0:
                rec.update(type=0, epoch=a[1], time_ms=a[2], seqs=a[3])
            elif a[0] == 1:
                rec.update(type=1, topic=a[1], seq=a[2], id=a[3], time_ms=a[4], msg=a[5])
            elif a[0] == 2:     # commit: last in every group write
                rec.update(type=2, start=a[1], seqs=a[2], epoch=a[3])
            else:               # seal: a segment's successor is durable
                rec.update(type=3, next=a[1], epoch=a[2])
        out.append(rec)
        off += HEADER + length
    size = len(data)
    if off < size and not data[off:].strip(b'\0'):
        size = off
    return out, off, size


def read_journal(state, verify_crc=True):
    """Every record of every segment, in order, each with its segment's path; checks
    that each segment is made of whole records and starts with a checkpoint."""
    recs = []
    for path in segments(state):
        rs, end, size = read_segment(path, verify_crc)
        check(end == size, '%s: %d bytes after the last whole record' % (path, size - end))
        check(rs and rs[0].get('type') == 0, '%s starts with a checkpoint' % path)
        for r in rs:
            r['segment'] = path
        recs += rs
    return recs


def messages(recs):
    """The message records, checked against the message bytes they hold."""
    out = []
    for r in recs:
        if r.get('type') != 1:
            continue
        body = msgpack.unpackb(r['msg'], raw=False)
        check(body['topic'] == r['topic'] and body['seq'] == r['seq'] and body['id'] == r['id'],
              'record (%s, %s, %s) holds its own message: %r'
              % (r['topic'], r['seq'], r['id'], (body['topic'], body['seq'], body['id'])))
        r['body'] = body
        out.append(r)
    return out


def publish_n(d, sub, n, topic='wire', prefix='Story'):
    for i in range(n):
        d.drop_text('%s-%03d.txt' % (prefix.lower(), i),
                    header_article('%s %d about %s' % (prefix, i, topic), Subject=topic,
                                   body='Paragraph %d of a %s report.' % (i, prefix)))
        # one at a time: each article gets its own group write, so its own record
        sub.wait(len(sub.messages) + 1)
    wait_for(lambda: d.drop_files() == [], 'the drop folder to empty')


def drop_backlog(d, names_titles, topic='wire'):
    """Drop files while the daemon is stopped, oldest first in the list order."""
    now = time.time()
    for i, (name, title) in enumerate(names_titles):
        p = d.drop_text(name, header_article(title, Subject=topic,
                                             body='The body of %s.' % title))
        os.utime(p, (now - 100 + i, now - 100 + i))


def after_restart(d, expect_seq, topic='wire'):
    """The backlog is out (archived); a live marker then gets expect_seq."""
    wait_for(lambda: d.drop_files() == [], 'the backlog to leave the drop folder')
    sub = Subscriber(d, [topic])
    d.drop_text('marker.txt', header_article('Marker after recovery', Subject=topic,
                                             body='Marker body.'))
    m = sub.wait(1, what='the marker')[0]
    check(m['seq'] == expect_seq, 'marker seq %r, expected %r' % (m['seq'], expect_seq))
    sub.close()
    return m


def test_truncated_tail():
    d = Daemon().start()
    try:
        sub = Subscriber(d, ['wire'])
        publish_n(d, sub, 5)
        epoch = sub.messages[0]['epoch']
        rc, _ = d.stop()
        check(rc == 0, 'clean exit')
        sub.close()

        segs = segments(d.state)
        recs, end, size = read_segment(segs[-1])
        last = [r for r in recs if r.get('type') == 1][-1]
        check(last['seq'] == 5 and end == size, 'journal as written: %r' % [
            (r.get('seq'), r['off']) for r in recs])
        # A crash tore the write of seq 5: its file was never archived, so it is back in
        # the drop folder; two more files arrived while the daemon was down.
        cut = last['off'] + HEADER + last['len'] // 2
        os.truncate(segs[-1], cut)
        archived5 = [p for p in d.archived() if p.endswith('story-004.txt')]
        check(len(archived5) == 1, 'story 4 archived: %r' % d.archived())
        os.rename(archived5[0], os.path.join(d.drop, 'story-004.txt'))
        os.utime(os.path.join(d.drop, 'story-004.txt'), (time.time() - 200,) * 2)
        drop_backlog(d, [('late-1.txt', 'Late one'), ('late-2.txt', 'Late two')])

        d.start()
        d.wait_log('torn tail of %d bytes at offset %d truncated'
                   % (cut - last['off'], last['off']))
        marker = after_restart(d, 8)
        check(marker['epoch'] == epoch, 'same epoch after a torn tail')
        check(d.stop()[0] == 0, 'clean exit')

        msgs = messages(read_journal(d.state))
        got = [(m['seq'], m['body']['article']['headline']) for m in msgs]
        check(got == [(1, 'Story 0 about wire'), (2, 'Story 1 about wire'),
                      (3, 'Story 2 about wire'), (4, 'Story 3 about wire'),
                      (5, 'Story 4 about wire'), (6, 'Late one'), (7, 'Late two'),
                      (8, 'Marker after recovery')], 'journal after recovery: %r' % got)
        check(len(d.archived()) == 8 and d.drop_files() == [], 'all archived, drop empty')
    finally:
        d.cleanup()


def test_flipped_byte_mid_segment():
    d = Daemon().start()
    try:
        sub = Subscriber(d, ['wire'])
        publish_n(d, sub, 5)
        epoch = sub.messages[0]['epoch']
        ids = {m['seq']: m['id'] for m in sub.messages}
        check(d.stop()[0] == 0, 'clean exit')
        sub.close()

        segs = segments(d.state)
        check(len(segs) == 1, 'one segment: %r' % segs)
        recs, _, _ = read_segment(segs[0])
        third = [r for r in recs if r.get('seq') == 3][0]
        with open(segs[0], 'r+b') as f:
            pos = third['off'] + HEADER + third['len'] // 2
            f.seek(pos)
            b = f.read(1)
            f.seek(pos)
            f.write(bytes([b[0] ^ 0x20]))
        drop_backlog(d, [('after-flip.txt', 'Dropped while stopped')])

        d.start()
        d.wait_log('000000000001.nwj offset %d: record of %d bytes fails its CRC, skipped'
                   % (third['off'], third['len']))
        d.wait_log('some records discarded')
        marker = after_restart(d, 7)
        check(marker['epoch'] == epoch, 'same epoch')
        check(d.stop()[0] == 0, 'clean exit')

        recs = read_journal(d.state)
        bad = [r for r in recs if not r['ok']]
        check(len(bad) == 1 and bad[0]['off'] == third['off'], 'only the flipped record is bad')
        got = [(m['seq'], m['id'] if m['seq'] <= 5 else m['body']['article']['headline'])
               for m in messages(recs)]
        check(got == [(1, ids[1]), (2, ids[2]), (4, ids[4]), (5, ids[5]),
                      (6, 'Dropped while stopped'), (7, 'Marker after recovery')],
              'valid records kept, seqs continue: %r' % got)
        check(d.drop_files() == [] and len(d.archived()) == 7, 'the dropped file was not lost')
    finally:
        d.cleanup()


def test_journal_deleted_new_epoch():
    d = Daemon().start()
    try:
        sub = Subscriber(d, ['wire'])
        publish_n(d, sub, 3)
        epoch = sub.messages[0]['epoch']
        check(d.stop()[0] == 0, 'clean exit')
        sub.close()
        shutil.rmtree(os.path.join(d.state, 'journal'))
        d.start()
        d.wait_log('journal: new journal in')
        m = after_restart(d, 1)
        check(m['epoch'] != epoch, 'a new epoch: %r vs %r' % (m['epoch'], epoch))
        check('epoch ' + m['epoch'] in d.log(), 'the log names the new epoch')
        check(d.stop()[0] == 0, 'clean exit')
        recs = read_journal(d.state)
        check(recs[0]['epoch'] == m['epoch'], 'the new checkpoint holds the new epoch')
        check([r['seq'] for r in messages(recs)] == [1], 'seq restarted at 1')
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_truncated_tail, test_flipped_byte_mid_segment, test_journal_deleted_new_epoch])
