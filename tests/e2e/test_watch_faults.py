"""End to end (issue 11, items 6, 7, 9): what the drop-folder watcher cannot see.

- the drop folder deleted, or moved away and replaced, while running: the daemon says so
  at once (a warning, and STATUS= never "0 pending" over a folder it cannot see), and
  takes files again once a folder is back at its path, those already in it included; a
  subfolder renamed is watched under its new name, one moved out is forgotten;
- subfolders beyond the inotify watch limit (a user namespace of its own with
  user.max_inotify_watches lowered, so the system's limit is untouched): their files are
  still published, at start and while running, STATUS= and a warning say which are not
  watched, and once the limit allows, a SIGHUP watches them again;
- entries that appear without a write (a hard link, a symlink, a FIFO, an O_TMPFILE
  linked in: IN_CREATE only) are published or rejected at once, while a file written in
  place still waits for its writer's close.
"""
import os, shutil, signal, subprocess

from nwtest import (Daemon, Failure, Skip, Subscriber, check, header_article, run,
                    wait_for)


def last_status(d):
    d.read_notify()
    st = [n for n in d.notes if n.startswith('STATUS=')]
    return st[-1] if st else ''


def wait_status(d, pred, what):
    return wait_for(lambda: pred(last_status(d)) and last_status(d), what)


def headlines(sub):
    return sorted(m['article']['headline'] for m in sub.messages)


# ------------------------------------------------------------------ item 6

def test_drop_folder_deleted_then_recreated():
    d = Daemon()
    try:
        d.start()
        sub = Subscriber(d)
        d.drop_text('before.txt', header_article('Before the fault', Subject='watch'))
        sub.wait(1)
        wait_for(lambda: d.drop_files() == [], 'before.txt archived')
        shutil.rmtree(d.drop)
        d.wait_log('warning watch: drop folder %s was deleted' % d.drop)
        st = wait_status(d, lambda s: 'DROP FOLDER MISSING' in s, 'STATUS= saying so')
        check('0 pending' not in st and 'pending unknown' in st, 'no "0 pending": %r' % st)
        # a reload does not end it while the folder is not there
        d.send_signal(signal.SIGHUP)
        d.wait_log('reloaded')
        check('DROP FOLDER MISSING' in last_status(d), 'still missing: %r' % last_status(d))
        # re-created, with a file in it at once: the rescan takes it, the watch the next
        os.mkdir(d.drop)
        d.drop_text('first.txt', header_article('In the new folder', Subject='watch'))
        d.wait_log('drop folder %s is there again' % d.drop)
        d.drop_text('second.txt', header_article('Watched again', Subject='watch'))
        sub.wait(3)
        check(headlines(sub) == ['Before the fault', 'In the new folder', 'Watched again'],
              'all three out: %r' % headlines(sub))
        wait_status(d, lambda s: s.startswith('STATUS=3 published'), 'STATUS= healthy again')
        wait_for(lambda: d.drop_files() == [], 'all archived')
    finally:
        d.cleanup()


def test_drop_folder_moved_away_and_replaced():
    d = Daemon()
    try:
        os.makedirs(os.path.join(d.drop, 'sport'))
        d.start()
        sub = Subscriber(d)
        d.drop_text('a.txt', header_article('Sport before', Subject='x'), subdir='sport')
        sub.wait(1)
        wait_for(lambda: d.drop_files() == [], 'a.txt archived')
        old = d.drop + '.old'
        os.rename(d.drop, old)
        d.wait_log('warning watch: drop folder %s was moved away' % d.drop)
        wait_status(d, lambda s: 'DROP FOLDER MISSING' in s and '0 pending' not in s,
                    'STATUS= saying so')
        # the moved folder is not the drop folder any more: nothing in it is taken
        with open(os.path.join(old, 'sport', 'stale.txt'), 'w') as f:
            f.write(header_article('In the moved folder', Subject='x'))
        # a new folder with a subfolder already holding a file
        os.makedirs(os.path.join(d.drop, 'sport'))
        d.drop_text('b.txt', header_article('Sport in the new folder', Subject='x'),
                    subdir='sport')
        d.wait_log('drop folder %s is there again' % d.drop)
        d.drop_text('c.txt', header_article('Sport watched again', Subject='x'), subdir='sport')
        sub.wait(3)
        check(headlines(sub) == ['Sport before', 'Sport in the new folder',
                                 'Sport watched again'], 'out: %r' % headlines(sub))
        check(all(m['topic'] == 'sport' for m in sub.messages), 'subfolder topic kept')
        wait_for(lambda: d.drop_files() == [], 'the new folder emptied')
        check(os.path.exists(os.path.join(old, 'sport', 'stale.txt')), 'the moved one untouched')
        check(len(sub.messages) == 3, 'nothing from the moved folder: %r' % headlines(sub))
    finally:
        d.cleanup()


def test_subfolder_renamed_or_moved_out():
    """A subfolder renamed within the drop folder stays watched under its new name (its
    files take that name's subject); one moved out of it is forgotten, told by its own
    IN_MOVE_SELF (the drop folder is watched without IN_MOVED_FROM), and a file written
    in it then is not taken."""
    from test_metrics import Scrape, start
    d = start()
    try:
        sub = Subscriber(d)
        watched = lambda: Scrape(d.url).value('newswired_watch_subfolders')
        os.makedirs(os.path.join(d.drop, 'geopolitics'))
        wait_for(lambda: watched() == 1, 'the new subfolder watched')
        d.drop_text('a.txt', header_article('Before the rename', Subject='x'),
                    subdir='geopolitics')
        sub.wait(1)
        os.rename(os.path.join(d.drop, 'geopolitics'), os.path.join(d.drop, 'sport'))
        d.drop_text('b.txt', header_article('After the rename', Subject='x'), subdir='sport')
        sub.wait(2)
        topics = [(m['article']['headline'], m['topic']) for m in sub.messages]
        check(topics == [('Before the rename', 'geopolitics'), ('After the rename', 'sport')],
              'subjects from the names: %r' % topics)
        check(watched() == 1, 'one subfolder watched after the rename')
        wait_for(lambda: d.drop_files() == [], 'both archived')
        away = os.path.join(os.path.dirname(d.drop), 'away')
        os.rename(os.path.join(d.drop, 'sport'), away)
        wait_for(lambda: watched() == 0, 'the subfolder moved out forgotten')
        with open(os.path.join(away, 'stale.txt'), 'w') as f:
            f.write(header_article('In the folder moved out', Subject='x'))
        d.drop_text('c.txt', header_article('In the drop folder', Subject='x'))
        sub.wait(3)
        check(headlines(sub) == ['After the rename', 'Before the rename', 'In the drop folder'],
              'nothing from the folder moved out: %r' % headlines(sub))
        check(os.path.exists(os.path.join(away, 'stale.txt')), 'the moved one untouched')
        check('stale.txt' not in d.log(), 'nothing said of it: %s' % d.log())
        shutil.rmtree(away)
    finally:
        d.cleanup()


# ------------------------------------------------------------------ item 7

LIMIT = 3     # watches in the daemon's own user namespace: the drop folder and 2 subfolders


def limited_daemon(limit=LIMIT):
    """A daemon in a user namespace of its own whose inotify watch limit is limit."""
    probe = subprocess.run(['unshare', '--user', '--map-root-user', 'sh', '-c',
                            'echo %d > /proc/sys/user/max_inotify_watches' % limit],
                           capture_output=True)
    if probe.returncode != 0:
        raise Skip('no user namespace with its own inotify limit here: %s'
                   % probe.stderr.decode().strip())
    return Daemon(wrap=['unshare', '--user', '--map-root-user', 'sh', '-c',
                        'echo %d > /proc/sys/user/max_inotify_watches && exec "$0" "$@"'
                        % limit])


def set_limit(d, n):
    subprocess.run(['nsenter', '-t', str(d.proc.pid), '-U', 'sh', '-c',
                    'echo %d > /proc/sys/user/max_inotify_watches' % n], check=True)


def test_subfolders_beyond_the_watch_limit():
    d = limited_daemon()
    subs = ['s%d' % i for i in range(6)]
    try:
        for s in subs:
            d.drop_text('early.txt', header_article('Early in ' + s, Subject='x'), subdir=s)
        d.start()
        # every file there at start is published, watched subfolder or not
        try:
            wait_for(lambda: len(d.archived()) == len(subs), 'the files present at start')
        except Failure:
            raise Failure('of %d files present at start, %d archived; left: %r'
                          % (len(subs), len(d.archived()), d.drop_files()))
        d.wait_log('subfolders of %s cannot be watched (the inotify watch limit' % d.drop)
        st = wait_status(d, lambda s: 'SUBFOLDERS NOT WATCHED' in s, 'STATUS= saying so')
        check('%d SUBFOLDERS' % (len(subs) - (LIMIT - 1)) in st, 'how many: %r' % st)
        # files dropped while running, in every subfolder, and in a new one
        sub = Subscriber(d)
        for s in subs + ['late']:
            d.drop_text('live.txt', header_article('Live in ' + s, Subject='x'), subdir=s)
        sub.wait(len(subs) + 1)
        check(sorted(m['topic'] for m in sub.messages) == sorted(subs + ['late']),
              'one from each subfolder: %r' % sorted(m['topic'] for m in sub.messages))
        # room for every watch: a SIGHUP watches them all again
        set_limit(d, 100)
        d.send_signal(signal.SIGHUP)
        d.wait_log('and every subfolder are watched again')
        wait_status(d, lambda s: 'NOT WATCHED' not in s and 'published' in s,
                    'STATUS= healthy again')
        for s in subs:
            d.drop_text('watched.txt', header_article('Watched in ' + s, Subject='x'), subdir=s)
        sub.wait(2 * len(subs) + 1)
        wait_for(lambda: d.drop_files() == [], 'every file archived (left %r)' % d.drop_files())
    finally:
        d.cleanup()


def test_drop_folder_itself_beyond_the_watch_limit():
    """Not one watch left: the daemon starts all the same and scans the folder."""
    d = limited_daemon(0)
    try:
        os.makedirs(os.path.join(d.drop, 'sub'))
        d.drop_text('early.txt', header_article('There at start', Subject='x'))
        d.start()
        d.wait_log('warning watch: cannot watch drop folder %s: the inotify watch limit'
                   % d.drop)
        wait_status(d, lambda s: 'DROP FOLDER NOT WATCHED' in s, 'STATUS= saying so')
        wait_for(lambda: len(d.archived()) == 1, 'the file there at start archived')
        sub = Subscriber(d)
        d.drop_text('polled.txt', header_article('Found by a scan', Subject='x'))
        d.drop_text('deeper.txt', header_article('Found in a subfolder', Subject='x'),
                    subdir='sub')
        sub.wait(2, what='files found by the scans')
        check(headlines(sub) == ['Found by a scan', 'Found in a subfolder'],
              'out: %r' % headlines(sub))
        wait_for(lambda: len(d.archived()) == 3, 'both archived')
        set_limit(d, 100)
        d.send_signal(signal.SIGHUP)
        d.wait_log('and every subfolder are watched again')
        d.drop_text('watched.txt', header_article('Watched at last', Subject='x'))
        sub.wait(3)
        wait_status(d, lambda s: s.startswith('STATUS=4 published'), 'STATUS= healthy again')
    finally:
        d.cleanup()


# ------------------------------------------------------------------ item 9

def test_entries_created_in_place():
    d = Daemon()
    try:
        os.makedirs(os.path.join(d.drop, 'sub'))
        d.start()
        sub = Subscriber(d)

        def outside(name, title):
            path = os.path.join(d.root, name)
            with open(path, 'w') as f:
                f.write(header_article(title, Subject='inplace'))
            return path

        os.link(outside('h1', 'A hard link'), os.path.join(d.drop, 'hard.txt'))
        sub.wait(1, what='the hard link')
        os.link(outside('h2', 'A hard link in a subfolder'),
                os.path.join(d.drop, 'sub', 'hard.txt'))
        sub.wait(2, what='the hard link in a subfolder')
        # the other name gone before the daemon looks: one name, no close ever seen
        src = outside('h3', 'A link whose source went away')
        os.link(src, os.path.join(d.drop, 'lone.txt'))
        os.unlink(src)
        sub.wait(3, what='the lone link')
        # an O_TMPFILE written, then linked in: complete as it appears
        fd = os.open(d.drop, os.O_TMPFILE | os.O_WRONLY, 0o644)
        os.write(fd, header_article('An O_TMPFILE linked in', Subject='inplace').encode())
        # linkat(AT_SYMLINK_FOLLOW) on /proc/self/fd/N (os.link takes linkat with a dir fd)
        dirfd = os.open(d.drop, os.O_RDONLY | os.O_DIRECTORY)
        os.link('/proc/self/fd/%d' % fd, 'tmpfile.txt', src_dir_fd=dirfd, dst_dir_fd=dirfd,
                follow_symlinks=True)
        os.close(dirfd)
        os.close(fd)
        sub.wait(4, what='the O_TMPFILE')
        check(headlines(sub) == ['A hard link', 'A hard link in a subfolder',
                                 'A link whose source went away', 'An O_TMPFILE linked in'],
              'published: %r' % headlines(sub))
        # made in place, never written: rejected with the existing reasons
        os.symlink(os.path.join(d.root, 'h1'), os.path.join(d.drop, 'link.txt'))
        os.mkfifo(os.path.join(d.drop, 'fifo.txt'))
        os.mkfifo(os.path.join(d.drop, 'sub', 'fifo.txt'))
        want = {'link.txt', 'link.txt.reason', 'fifo.txt', 'fifo.txt.reason'}
        wait_for(lambda: want <= set(d.rejected()) and len(d.rejected()) == 6,
                 'the symlink and both FIFOs rejected (%r)' % d.rejected())
        reasons = {n: open(os.path.join(d.state, 'rejected', n)).read()
                   for n in d.rejected() if n.endswith('.reason')}
        check('symbolic link' in reasons['link.txt.reason'], reasons)
        check(sum('FIFO' in r for r in reasons.values()) == 2, reasons)
        wait_for(lambda: d.drop_files() == [], 'nothing left behind (%r)' % d.drop_files())
        check(len(sub.messages) == 4, 'nothing else published')
        check(os.path.exists(os.path.join(d.root, 'h1')), 'a link target untouched')
    finally:
        d.cleanup()


def test_in_place_writer_still_waits_for_close():
    d = Daemon()
    try:
        d.start()
        sub = Subscriber(d)
        f = open(os.path.join(d.drop, 'slow.txt'), 'w')
        f.write('Title: Written in place\nSubject: slow\n\nThe first half')
        f.flush()
        # the watcher gives up waiting for a close after a quiet tick and reports it:
        # the pipeline must still leave it to its writer
        d.wait_log('slow.txt was created with no close seen')
        d.drop_text('marker.txt', header_article('Marker', Subject='marker'))
        sub.wait(1, what='the marker, behind the report of slow.txt')
        check(sub.messages[0]['topic'] == 'marker', 'slow.txt not taken while open')
        f.write(' and the second half.\n')
        f.close()
        msgs = sub.wait(2)
        check(msgs[1]['article']['body_text'] == 'The first half and the second half.',
              'published whole: %r' % msgs[1]['article']['body_text'])
        wait_for(lambda: d.drop_files() == [], 'both archived')
        check(len(sub.messages) == 2, 'once')
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_drop_folder_deleted_then_recreated, test_drop_folder_moved_away_and_replaced,
         test_subfolder_renamed_or_moved_out,
         test_subfolders_beyond_the_watch_limit, test_drop_folder_itself_beyond_the_watch_limit,
         test_entries_created_in_place,
         test_in_place_writer_still_waits_for_close])
