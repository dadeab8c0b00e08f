"""Where a real newswired reads and moves its files (issue 15): a file dropped alone into
a local drop folder is read, parsed and routed on the loop thread, and archived there by
a rename, with no hand-off to the thread pool; a large file, or a burst (a backlog found
by the start-up scan), is read on the pool with --burst-pool on, and on the loop a batch
a turn with --burst-pool off (auto: off with 2 CPUs or fewer); a reject, and every move
once one has crossed file systems (a state folder on another one: copied, never on the
loop), is made on the pool. Told by the metrics (newswired_files_{read,moved}_total{thread=...}) and checked
against what a subscriber received, in order, and what the archive holds. Waits are on
events (messages, scraped values).
"""
import os, shutil, tempfile, time

from nwtest import Daemon, Skip, Subscriber, check, header_article, run, wait_for
from test_metrics import Scrape, start

HERE_MAX = 4             # pipeline.c: files read on the loop in one turn, at most
BATCH_MAX = 32           # pipeline.c: without --burst-pool, files read and moved a turn
HERE_SIZE = 64 * 1024    # pipeline.c: larger files go to the pool


def reads(d):
    s = Scrape(d.url)
    return (s.value('newswired_files_read_total', thread='loop'),
            s.value('newswired_files_read_total', thread='pool'))


def moves(d):
    s = Scrape(d.url)
    return (s.value('newswired_files_moved_total', thread='loop'),
            s.value('newswired_files_moved_total', thread='pool'))


def large_body():
    """A body that makes a file larger than HERE_SIZE."""
    para = 'A long paragraph about masts, spectrum and rural coverage. ' * 40 + '\n\n'
    return para * (HERE_SIZE // len(para) + 2)


def titles(sub):
    return [m['article']['headline'] for m in sub.messages]


def test_single_files_are_read_on_the_loop():
    d = start()
    try:
        check('is on a local file system' in d.log(), 'the log says the folder is local:\n'
              + d.log())
        sub = Subscriber(d)
        check(reads(d) == (0, 0), 'nothing read yet: %r' % (reads(d),))
        for i in range(1, 6):
            d.drop_text('alone-%d.txt' % i, header_article('Alone %d' % i))
            sub.wait(i)
            wait_for(lambda: sum(reads(d)) == i, '%d reads counted' % i)
        check(reads(d) == (5, 0), 'five files dropped one at a time, all read on the loop: %r'
              % (reads(d),))
        check(titles(sub) == ['Alone %d' % i for i in range(1, 6)], 'in order: %r'
              % titles(sub))

        # a large file goes to the pool, however alone (its read and parse would hold up
        # every subscriber); it is published all the same
        big = header_article('Large one', body=large_body())
        check(len(big) > HERE_SIZE, 'the large file is over %d bytes' % HERE_SIZE)
        d.drop_text('large.txt', big)
        sub.wait(6)
        wait_for(lambda: reads(d) == (5, 1), 'the large file read on the pool (%r)'
                 % (reads(d),))
        check(titles(sub)[-1] == 'Large one', 'the large file published: %r' % titles(sub))
        check(sorted(os.path.basename(p) for p in d.archived())
              == sorted(['alone-%d.txt' % i for i in range(1, 6)] + ['large.txt']),
              'all six archived: %r' % d.archived())
        wait_for(lambda: moves(d) == (6, 0), 'six moves on the loop (%r)' % (moves(d),))

        # a reject writes its reason beside it: on the pool
        d.drop_text('empty.txt', '')
        wait_for(lambda: d.rejected() == ['empty.txt', 'empty.txt.reason'],
                 'the empty file rejected (%r)' % d.rejected())
        wait_for(lambda: moves(d) == (6, 1), 'the reject moved on the pool (%r)'
                 % (moves(d),))
        rc, _ = d.stop()
        check(rc == 0, 'clean exit')
    finally:
        d.cleanup()


def test_a_backlog_is_read_on_the_pool():
    """Files already there at start are found by one scan: a burst, batched to the pool
    beside the loop with --burst-pool on; at most a turn's few may be read on the loop at
    its tail."""
    n = 60
    root = tempfile.mkdtemp(prefix='nw-e2e-')
    for i in range(n):
        Daemon(root=root).drop_text('backlog-%03d.txt' % i, header_article('Backlog %03d' % i))
    d2 = start(['--burst-pool', 'on'], root=root)
    try:
        wait_for(lambda: sum(reads(d2)) == n, '%d reads counted (%r)' % (n, reads(d2)))
        here, pool = reads(d2)
        check(pool >= n - HERE_MAX and here <= HERE_MAX,
              'a backlog of %d read on the pool: %d on the loop, %d on the pool'
              % (n, here, pool))
        wait_for(lambda: len(d2.archived()) == n, 'all %d archived' % n)
        rc, _ = d2.stop()
        check(rc == 0, 'clean exit')
    finally:
        d2.cleanup()
        shutil.rmtree(root, ignore_errors=True)


def test_a_burst_on_the_loop():
    """--burst-pool off: a folder of files moved in at once (a burst the watcher finds by
    one scan, several turns' worth) is read and moved on the loop thread alone; a large
    file among them still goes to the pool. Each is published once, in the order of the
    scan, and archived. (That the loop goes round without waiting for an event is not
    seen from here, since every scrape wakes it: the yardstick measures it.)"""
    n = 3 * BATCH_MAX + 5
    d = start(['--burst-pool', 'off'])
    stage = tempfile.mkdtemp(prefix='nw-e2e-stage-')
    try:
        check("a burst's on the loop thread too" in d.log(), 'the log says where a burst '
              'is read:\n' + d.log())
        sub = Subscriber(d)
        batch = os.path.join(stage, 'batch')
        os.mkdir(batch)
        for i in range(n):
            text = (header_article('Burst %03d' % i, body=large_body()) if i == 10
                    else header_article('Burst %03d' % i))
            with open(os.path.join(batch, 'b%03d.txt' % i), 'w') as f:
                f.write(text)
        os.rename(batch, os.path.join(d.drop, 'batch'))
        sub.wait(n)
        got = titles(sub)
        check(got == ['Burst %03d' % i for i in range(n)],
              'each of the %d published once, in order: %r' % (n, got))
        wait_for(lambda: sum(reads(d)) == n, '%d reads counted (%r)' % (n, reads(d)))
        check(reads(d) == (n - 1, 1), 'all but the large file read on the loop: %r'
              % (reads(d),))
        wait_for(lambda: sum(moves(d)) == n, '%d moves counted (%r)' % (n, moves(d)))
        check(moves(d) == (n, 0), 'every move made on the loop: %r' % (moves(d),))
        check(len(d.archived()) == n, 'all %d archived: %r' % (n, d.archived()))
        rc, _ = d.stop()
        check(rc == 0, 'clean exit')
    finally:
        d.cleanup()
        shutil.rmtree(stage, ignore_errors=True)


def test_burst_pool_auto():
    """By default (auto) a burst goes to the pool only where the process may use more than
    2 CPUs: the log says which, and with how many. Run on one CPU (taskset), it is off."""
    cpus = len(os.sched_getaffinity(0))
    d = start()
    try:
        want = 'burst-pool auto: %s (CPUs this process may use: %d)' % (
            'on' if cpus > 2 else 'off', cpus)
        check(want in d.log(), 'said: %r\n%s' % (want, d.log()))
        d.stop()
    finally:
        d.cleanup()
    if not shutil.which('taskset'):
        raise Skip('no taskset')
    d = start(wrap=['taskset', '-c', str(min(os.sched_getaffinity(0)))])
    try:
        check('burst-pool auto: off (CPUs this process may use: 1)' in d.log(),
              'on one CPU it is off:\n' + d.log())
        rc, _ = d.stop()
        check(rc == 0, 'clean exit')
    finally:
        d.cleanup()


def test_moves_across_file_systems_go_to_the_pool():
    """The state folder on /dev/shm (a tmpfs), the drop folder on /tmp's disk: the first
    rename on the loop fails with EXDEV, is said once, and that file and every later one
    is copied on the pool; each is archived whole and leaves the drop folder."""
    root = tempfile.mkdtemp(prefix='nw-e2e-')
    if os.stat('/dev/shm').st_dev == os.stat(root).st_dev:
        shutil.rmtree(root)
        raise Skip('no /dev/shm on another file system than /tmp')
    d = start(root=root)
    d.stop()
    d.state = tempfile.mkdtemp(prefix='nw-e2e-state-', dir='/dev/shm')
    try:
        d.start()
        sub = Subscriber(d)
        for i in range(1, 4):
            d.drop_text('far-%d.txt' % i, header_article('Far %d' % i))
            sub.wait(i)
            wait_for(lambda: sum(moves(d)) == i, '%d moves (%r)' % (i, moves(d)))
        check(moves(d) == (0, 3), 'all three moved on the pool: %r' % (moves(d),))
        check(d.log().count('are on different file systems: files are moved on the thread '
                            'pool') == 1, 'said once:\n' + d.log())
        got = sorted(d.archived())
        check([os.path.basename(p) for p in got] == ['far-1.txt', 'far-2.txt', 'far-3.txt'],
              'all three archived in %s: %r' % (d.state, got))
        for i, p in enumerate(got, 1):
            with open(p) as f:
                check(f.read() == header_article('Far %d' % i), '%s copied whole' % p)
        check(d.drop_files() == [], 'the drop folder is empty: %r' % d.drop_files())
        rc, _ = d.stop()
        check(rc == 0, 'clean exit')
    finally:
        d.cleanup()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(d.state, ignore_errors=True)


STAGES = ('queued', 'read', 'order', 'commit', 'archive')   # nw_stage_t


def stage_seconds(d):
    s = Scrape(d.url)
    return {st: s.value('newswired_files_stage_seconds_total', stage=st) for st in STAGES}


def test_time_in_each_stage():
    """newswired_files_stage_seconds_total{stage}: each file's time in each stage, added
    up. With --commit-delay 3000, a file dropped once the one before it is published
    waits for its journal write until 3 s after the first began: the commit stage holds
    it at least 3 s less our reaction (a publish and a rename, far below 1.5 s), and the
    stages together hold the two files no longer than they were in the daemon."""
    d = start(['--commit-delay', '3000'])
    try:
        sub = Subscriber(d)
        check(stage_seconds(d) == {st: 0 for st in STAGES}, 'nothing yet: %r'
              % stage_seconds(d))
        t0 = time.monotonic()
        d.drop_text('first.txt', header_article('First'))
        sub.wait(1)
        t1 = time.monotonic()
        d.drop_text('second.txt', header_article('Second'))
        sub.wait(2)
        wait_for(lambda: len(d.archived()) == 2, 'both archived (%r)' % d.archived())
        wait_for(lambda: Scrape(d.url).value('newswired_files_waiting', stage='in_flight') == 0,
                 'nothing in flight')
        t2 = time.monotonic()
        st = stage_seconds(d)
        check(st['commit'] >= 1.5, 'the second file waited in the commit stage: %r' % st)
        check(all(st[k] > 0 for k in ('read', 'commit', 'archive')),
              'each file was read, committed and moved: %r' % st)
        check(sum(st.values()) <= (t2 - t0) + (t2 - t1),
              'no more than the two files spent in the daemon (%.3f s): %r'
              % ((t2 - t0) + (t2 - t1), st))
        check(stage_seconds(d) == st, 'nothing in a stage: the sums stay (%r, then %r)'
              % (st, stage_seconds(d)))
        rc, _ = d.stop()
        check(rc == 0, 'clean exit')
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_single_files_are_read_on_the_loop, test_a_backlog_is_read_on_the_pool,
         test_a_burst_on_the_loop, test_burst_pool_auto,
         test_moves_across_file_systems_go_to_the_pool, test_time_in_each_stage])
