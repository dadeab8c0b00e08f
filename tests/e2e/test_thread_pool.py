"""End to end: libuv's thread pool is sized to what the modules may queue at once (issue 13).

The pipeline keeps up to 2 read hand-offs and 1 archive hand-off on the pool, the journal
a group write, an id read-back and the next segment's preparation, replay 2 cursor
reads: 8 jobs, on libuv's default of 4 threads, so a group write (and so the live feed)
could wait behind replay and file reads. newswired now sets UV_THREADPOOL_SIZE before the pool starts, keeping a larger
one from the environment. The pool's threads are counted in /proc: libuv starts them
all with the first job, so the difference between two daemons' thread counts, one given
a known large pool, is the other's pool size.
"""
import os

from nwtest import Daemon, check, header_article, run, wait_for

os.environ.pop('UV_THREADPOOL_SIZE', None)

MODULES = {'files': 3, 'journal': 3, 'replay': 2}   # pipeline.h, journal.h, replay.h
LARGE = 24


def threads_after_a_file(env, replay=True):
    """Start a daemon, let one file go through the pool (read, journal write,
    archive), and return (its thread count, its 'thread pool:' log line)."""
    d = Daemon(env=env)
    if replay:
        d.args += ['--replay', 'ipc://' + os.path.join(d.root, 'replay.sock')]
    d.start()
    try:
        d.drop_text('one.txt', header_article('Pool story', Subject='wire'))
        wait_for(lambda: len(d.archived()) == 1, 'the file archived')
        tasks = len(os.listdir('/proc/%d/task' % d.proc.pid))
        line = [l for l in d.log().splitlines() if 'thread pool: ' in l]
        rc, _ = d.stop()
        check(rc == 0, 'newswired exited with %s' % rc)
        return tasks, line[0] if len(line) == 1 else 'no single thread pool line'

    finally:
        d.cleanup()


def test_pool_holds_every_module_s_jobs():
    want = sum(MODULES.values())
    base, line = threads_after_a_file({})
    large, large_line = threads_after_a_file({'UV_THREADPOOL_SIZE': str(LARGE)})
    pool = LARGE - (large - base)
    check(pool == want, 'the pool has %d threads, not the %d jobs the modules may queue '
          '(%d threads by default, %d with a pool of %d)' % (pool, want, base, large, LARGE))
    check('thread pool: %d threads (files 3, journal 3, replay 2)' % want in line, line)
    check('thread pool: %d threads' % LARGE in large_line, large_line)


def test_smaller_pool_from_the_environment_is_raised():
    base, _ = threads_after_a_file({})
    small, line = threads_after_a_file({'UV_THREADPOOL_SIZE': '1'})
    check(small == base, '%d threads with UV_THREADPOOL_SIZE=1, %d without' % (small, base))
    check('thread pool: 8 threads' in line, line)


def test_without_replay_no_threads_for_it():
    base, line = threads_after_a_file({}, replay=False)
    large, _ = threads_after_a_file({'UV_THREADPOOL_SIZE': str(LARGE)}, replay=False)
    check(LARGE - (large - base) == 6, '%d threads, %d with a pool of %d' % (base, large, LARGE))
    check('thread pool: 6 threads (files 3, journal 3, replay 0)' in line, line)


if __name__ == '__main__':
    run([test_pool_holds_every_module_s_jobs, test_smaller_pool_from_the_environment_is_raised,
         test_without_replay_no_threads_for_it])
