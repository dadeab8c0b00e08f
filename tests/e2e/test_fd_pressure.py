"""End to end (issue 11, item 4's second half): a fault of the machine is not a verdict
on the file.

- out of descriptors: the running daemon's RLIMIT_NOFILE is lowered (prlimit on its pid)
  to its lowest free descriptor, so every open fails with EMFILE; dropped files, a
  malformed one among them, stay in the drop folder, are retried, the warning is logged
  once and STATUS= says why; once the limit is raised every good file is published and
  archived and only the malformed one is rejected, for its own fault;
- out of inodes on the state disk (a tmpfs with nr_inodes): a malformed file's reason
  cannot be written (ENOSPC); it stays in the drop folder, is retried, and once inodes
  are freed it is rejected with its reason; an article after it goes out.
"""
import os, resource, shutil, subprocess, tempfile

from nwtest import Daemon, Failure, Skip, Subscriber, check, header_article, run, wait_for


def open_fds(pid):
    return {int(n) for n in os.listdir('/proc/%d/fd' % pid)}


def statuses(d):
    d.read_notify()
    return [n for n in d.notes if n.startswith('STATUS=')]


def test_out_of_descriptors_files_wait():
    d = Daemon()
    try:
        d.start()
        sub = Subscriber(d, ['fds'])
        # The first article creates the journal segment and the day's archive folder,
        # so what follows needs a descriptor only to open each dropped file.
        d.drop_text('first.txt', header_article('Before the limit', Subject='fds'))
        sub.wait(1)
        wait_for(lambda: d.drop_files() == [], 'first.txt archived')
        # STATUS= is sent when it changes, through a socket opened for the message: once
        # it says the first file is done it stays as it is, and no descriptor comes and
        # goes while the free ones are counted.
        wait_for(lambda: statuses(d) and '1 published' in statuses(d)[-1]
                 and ' 0 pending' in statuses(d)[-1], 'STATUS= with the first file done')

        pid = d.proc.pid
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        # Every descriptor below the limit is taken: the next open is EMFILE. Counted
        # again after the limit is set: a descriptor the daemon closed in between
        # (one it held for a moment while they were counted) would leave a free one
        # below the limit, and the first file would be opened after all.
        for attempt in range(100):
            used = open_fds(pid)
            lowest_free = min(set(range(max(used) + 2)) - used)
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free, hard))
            if set(range(lowest_free)) <= open_fds(pid):
                break
        else:
            raise Failure('the daemon\'s descriptors never stayed put while counted')
        try:
            for i in range(3):
                d.drop_text('story%d.txt' % i, header_article('Waited for descriptors %d' % i,
                                                             Subject='fds'))
            d.drop_text('malformed.txt', 'Title: a headline and no body\n\n')
            d.wait_log('cannot open: Too many open files; files wait in the drop folder')
            d.wait_notify('STATUS=FILES WAITING: cannot open or move files (Too many open files)')
            d.wait_log('cannot open: Too many open files; retried later')   # it retries
            check(d.log().count('files wait in the drop folder') == 1,
                  'the episode is logged once at warning level')
            check(sorted(d.drop_files()) == ['malformed.txt', 'story0.txt', 'story1.txt',
                                             'story2.txt'],
                  'the files stay in the drop folder: %r' % d.drop_files())
            check(d.rejected() == [], 'nothing rejected for a lack of descriptors: %r'
                  % d.rejected())
            check(sub.poll(0) is None, 'nothing published meanwhile')
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))

        got = sub.wait(4)
        check(sorted(m['article']['headline'] for m in got[1:]) ==
              ['Waited for descriptors %d' % i for i in range(3)],
              'every good file published: %r' % [m['article']['headline'] for m in got])
        # the file leaves the drop folder before its reason's temporary name is removed
        # (nw_archive_reject): wait for the listing as it ends
        wait_for(lambda: d.drop_files() == [] and
                 not any(n.endswith('.reason.tmp') for n in d.rejected()),
                 'the drop folder empty (left: %r), the reject done (%r)'
                 % (d.drop_files(), d.rejected()))
        check(d.rejected() == ['malformed.txt', 'malformed.txt.reason'],
              'only the malformed file rejected: %r' % d.rejected())
        with open(os.path.join(d.state, 'rejected', 'malformed.txt.reason')) as f:
            check(f.read() == 'no body\n', 'rejected for its own fault')
        check(len(d.archived()) == 4, 'four archived: %r' % d.archived())
        d.wait_log('files can be opened and moved again')
        wait_for(lambda: statuses(d) and 'FILES WAITING' not in statuses(d)[-1],
                 'STATUS= without FILES WAITING')
        check(d.proc.poll() is None, 'still running')
    finally:
        d.cleanup()


def test_state_out_of_inodes_reject_waits():
    root = tempfile.mkdtemp(prefix='nw-e2e-inodes-')
    state = os.path.join(root, 'state')
    os.makedirs(state)
    mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64m,nr_inodes=64', 'tmpfs',
                              state], capture_output=True)
    if mounted.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise Skip('cannot mount a tmpfs as the state folder: %s'
                   % mounted.stderr.decode().strip())
    d = Daemon(root=root)
    try:
        d.start()
        sub = Subscriber(d, ['inodes'])
        d.drop_text('first.txt', header_article('Before the inodes ran out', Subject='inodes'))
        sub.wait(1)
        wait_for(lambda: d.drop_files() == [], 'first.txt archived')

        filler = os.path.join(state, 'filler')
        os.makedirs(filler)
        made = 0
        while True:
            try:
                open(os.path.join(filler, str(made)), 'w').close()
                made += 1
            except OSError as e:
                check(e.errno == 28, 'filling the inodes: %s' % e)
                break
        d.drop_text('malformed.txt', 'Title: a headline and no body\n\n')
        d.wait_log('No space left on device; files wait in the drop folder')
        d.wait_notify('STATUS=FILES WAITING: cannot open or move files (No space left on device)')
        d.wait_log('No space left on device; retried later')
        check(d.drop_files() == ['malformed.txt'], 'it stays: %r' % d.drop_files())
        check(d.rejected() == [], 'no reason-less reject: %r' % d.rejected())

        shutil.rmtree(filler)
        wait_for(lambda: d.drop_files() == [], 'malformed.txt rejected once inodes are back')
        # the reason's temporary file is unlinked just after the move: wait, do not race it
        wait_for(lambda: d.rejected() == ['malformed.txt', 'malformed.txt.reason'],
                 'rejected/ holding the file and its reason only')
        with open(os.path.join(d.state, 'rejected', 'malformed.txt.reason')) as f:
            check(f.read() == 'no body\n', 'with its reason')
        d.wait_log('files can be opened and moved again')
        d.drop_text('after.txt', header_article('After the inodes came back', Subject='inodes'))
        check(sub.wait(2)[1]['article']['headline'] == 'After the inodes came back', 'published')
        check(d.log().count('files wait in the drop folder') == 1, 'one warning')
    finally:
        d.kill()
        subprocess.run(['umount', '-l', state], capture_output=True)
        d.cleanup()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    run([test_out_of_descriptors_files_wait, test_state_out_of_inodes_reject_waits])
