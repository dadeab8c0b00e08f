"""End to end: one newswired per state folder (issue 11, item 1).

A second daemon started on a state folder that a running one holds (another drop folder,
other endpoints: a unit plus a manual start, a restart script racing systemd) must exit
1 at once, naming the folder and the pid holding it, and touch nothing; the first keeps
publishing. Once the holder is gone (even by kill -9) the folder can be taken again and
the journal goes on where it stood.
"""
import os, subprocess

from nwtest import DEADLINE, Daemon, Failure, Subscriber, check, header_article, run


def test_second_daemon_on_one_state_folder():
    first = Daemon().start()
    second = Daemon()
    second.state = first.state          # its own drop folder and endpoint, the same state
    try:
        sub = Subscriber(first, ['wire'])
        first.drop_text('one.txt', header_article('First story', Subject='wire'))
        check(sub.wait(1)[0]['seq'] == 1, 'the first daemon publishes seq 1')

        second.drop_text('other.txt', header_article('Dropped for the second', Subject='wire'))
        second.start(wait_ready=False)
        try:
            rc = second.proc.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            raise Failure('a second newswired on %s is still running; log:\n%s'
                          % (first.state, second.log()))
        log = second.log()
        check(rc == 1, 'the second daemon exits 1, got %r; log:\n%s' % (rc, log))
        want = 'state folder %s is in use by another newswired (pid %d holds %s/lock)' % (
            first.state, first.proc.pid, first.state)
        check(want in log, 'its log says %r; log:\n%s' % (want, log))
        with open(os.path.join(first.state, 'lock')) as f:
            check(f.read().strip() == str(first.proc.pid),
                  'STATE/lock holds the pid of the daemon that owns the folder')
        second.read_notify()
        check(not any(n.startswith('READY=1') for n in second.notes),
              'the second daemon never said READY=1: %r' % second.notes)
        check(second.drop_files() == ['other.txt'], 'it took no file from its drop folder')
        check(len(first.archived()) == 1, 'it archived nothing into the shared state: %r'
              % first.archived())

        # the holder is unharmed and still the only writer
        first.drop_text('two.txt', header_article('Second story', Subject='wire'))
        check(sub.wait(2)[1]['seq'] == 2, 'the first daemon goes on with seq 2')
        sub.close()

        # a kill -9 leaves no stale lock: the folder is taken again and the seqs go on
        first.kill()
        os.remove(os.path.join(second.drop, 'other.txt'))
        second.start()
        sub = Subscriber(second, ['wire'])
        second.drop_text('three.txt', header_article('Third story', Subject='wire'))
        got = sub.wait(1)[0]
        check(got['seq'] == 3, 'after the holder died the journal goes on: seq %r' % got['seq'])
        with open(os.path.join(first.state, 'lock')) as f:
            check(f.read().strip() == str(second.proc.pid), 'the lock file names the new holder')
        sub.close()
        check(second.stop()[0] == 0, 'clean exit')
    finally:
        second.cleanup()
        first.cleanup()


if __name__ == '__main__':
    run([test_second_daemon_on_one_state_folder])
