"""End to end: the journal's next segment, prepared off the commit path (issue 15).

With fsync on, newswired makes the next journal segment beforehand on its thread pool
(STATE/journal/segment.prep: all zeros, synced) and a rotation renames it. These tests
kill the daemon while one is prepared and another is half made (segment.prep.part, as
a kill during its making leaves it), start it again and check that the half-made one is
removed, that neither is taken for data, and that the epoch, the seqs and the journal's
records go on as if nothing had been there.
"""
import os

from nwtest import Daemon, Subscriber, check, header_article, run, wait_for
from test_journal_recovery import after_restart, messages, read_journal, segments

SEGMENT = 65536


def prepared(d, part=False):
    return os.path.join(d.state, 'journal', 'segment.prep' + ('.part' if part else ''))


def ready(d):
    p = prepared(d)
    return os.path.exists(p) and os.path.getsize(p) == SEGMENT


def test_kill_with_prepared_and_half_made():
    d = Daemon(args=['--segment-size', str(SEGMENT)]).start()
    try:
        sub = Subscriber(d, ['wire'])
        # made at start, before anything needs it
        wait_for(lambda: ready(d), 'a prepared segment after the start')
        # about 190 KB of articles, one commit each (a batch that starts below the
        # segment size may end far above it, and under the sanitizers batches grow): the
        # journal rotates at least twice, into prepared segments
        for i in range(60):
            d.drop_text('big-%03d.txt' % i,
                        header_article('Big %d' % i, Subject='wire',
                                       body='Paragraph %d. ' % i + 'x' * 3000))
            sub.wait(i + 1, what='article %d' % i)
        wait_for(lambda: d.drop_files() == [], 'the drop folder to empty')
        check(len(segments(d.state)) >= 3, 'rotated: %r' % segments(d.state))
        wait_for(lambda: ready(d), 'the next segment prepared')
        epoch = sub.messages[0]['epoch']
        check(sorted(m['seq'] for m in sub.messages) == list(range(1, 61)), 'seqs 1 to 60')
        sub.close()

        # a crash: the current segment keeps its zeros, a prepared segment is there and
        # another was being made
        d.kill()
        with open(prepared(d, part=True), 'wb') as f:
            f.write(b'\0' * 10000)
        d.start()
        d.wait_log('segment.prep.part removed')
        check(not os.path.exists(prepared(d, part=True)), 'the half-made segment is gone')
        marker = after_restart(d, 61)
        check(marker['epoch'] == epoch, 'same epoch after the crash')
        wait_for(lambda: ready(d), 'a prepared segment after the restart')
        check(d.stop()[0] == 0, 'clean exit')
        check(ready(d), 'a clean stop keeps the prepared segment')

        msgs = messages(read_journal(d.state))
        check([m['seq'] for m in msgs] == list(range(1, 62)),
              'the journal holds seqs 1 to 61 once each: %r' % [m['seq'] for m in msgs])
        check(msgs[-1]['body']['article']['headline'] == 'Marker after recovery',
              'the marker last')
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_kill_with_prepared_and_half_made])
