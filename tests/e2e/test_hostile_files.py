"""End to end (issue: security): hostile entries in the drop folder. A FIFO, a socket, a
device, a symlink, an oversized file, names with control characters or invalid UTF-8:
each lands in rejected/ with a reason (or, for a name, is logged escaped), the daemon
never blocks, follows or crashes, and a normal article dropped after them still goes out.
"""
import os, socket, stat

from nwtest import Daemon, Subscriber, check, header_article, run, wait_for

MAX_SIZE = 4096


def place(d, name, make):
    """Create an entry under a hidden name with make(path), then rename it into place:
    the watcher sees every kind of entry arrive the same way."""
    tmp = os.path.join(os.fsencode(d.drop), b'.' + name + b'.tmp')
    make(tmp)
    os.rename(tmp, os.path.join(os.fsencode(d.drop), name))


def reason(d, name):
    with open(os.path.join(d.state, 'rejected', name + '.reason')) as f:
        return f.read()


def test_hostile_entries_rejected_then_normal_article_out():
    d = Daemon(args=['--max-size', str(MAX_SIZE)])
    held = []
    try:
        d.start()
        sub = Subscriber(d)
        outside = os.path.join(d.root, 'outside.txt')
        with open(outside, 'w') as f:
            f.write(header_article('Outside the drop folder', Subject='secret'))

        place(d, b'fifo.txt', os.mkfifo)

        def make_socket(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            held.append(s)          # a live listener: opening it must still not hang
        place(d, b'sock.txt', make_socket)
        place(d, b'link.txt', lambda p: os.symlink(outside, p))
        place(d, b'big.txt', lambda p: open(p, 'wb').write(
            header_article('Too big', Subject='big', body='x' * (MAX_SIZE * 2)).encode()))
        expected = {'fifo.txt': 'FIFO', 'sock.txt': 'socket', 'link.txt': 'symbolic link',
                    'big.txt': 'too large'}
        try:
            place(d, b'dev.txt', lambda p: os.mknod(p, stat.S_IFCHR | 0o600, os.makedev(1, 3)))
            expected['dev.txt'] = 'device'
        except PermissionError:
            print('note: no CAP_MKNOD here, the device case is not exercised', flush=True)

        d.drop_text('normal.txt', header_article('A normal article after them', Subject='fine'))
        m = sub.wait(1)[0]
        check(m['article']['headline'] == 'A normal article after them', 'normal one out: %r' % m)
        names = set(expected) | {n + '.reason' for n in expected}
        wait_for(lambda: names <= set(d.rejected()), 'every hostile entry in rejected/: %r'
                 % sorted(names))
        for name, why in expected.items():
            check(why in reason(d, name), '%s rejected for %r: %r' % (name, why, reason(d, name)))
        check(os.path.islink(os.path.join(d.state, 'rejected', 'link.txt')), 'the link moved as is')
        check(open(outside).read().startswith('Title: Outside'), 'the link target untouched')
        check(stat.S_ISFIFO(os.lstat(os.path.join(d.state, 'rejected', 'fifo.txt')).st_mode),
              'the FIFO moved as is')
        check(len(sub.messages) == 1, 'nothing else published: %r' % [x['topic'] for x in sub.messages])
        # the archive move follows the publish: wait for it, do not race it
        wait_for(lambda: d.drop_files() == [], 'drop folder empty (left: %r)' % d.drop_files())
        check(d.proc.poll() is None, 'still running')
    finally:
        for s in held:
            s.close()
        d.cleanup()


def test_hostile_names_logged_escaped():
    d = Daemon()
    try:
        d.start()
        sub = Subscriber(d)
        esc = b'red\x1b[31mtitle\x07.txt'
        bad = b'bad\xff\xfeutf8.txt'
        with_newline = b'two\nlines.txt'
        for name in (esc, bad, with_newline):
            place(d, name, lambda p: open(p, 'wb').write(
                header_article('Odd name', Subject='odd', body='Body of ' + repr(p)).encode()))
        d.drop_text('normal.txt', header_article('After the odd names', Subject='fine'))

        def normal_seen():
            sub.poll(50)
            return any(m['article']['headline'] == 'After the odd names' for m in sub.messages)
        wait_for(normal_seen, 'the normal article after the odd names')
        # An odd name does not make an article bad: all three go out. The wire wants
        # UTF-8 without surprises, so source.file carries the name made safe (invalid
        # bytes as U+FFFD, control characters as spaces), the log the name escaped.
        def all_out():
            sub.poll(50)
            return len(sub.messages) == 4
        wait_for(all_out, 'the three odd names published too (got %d)' % len(sub.messages))
        wait_for(lambda: d.drop_files() == [],
                 'every odd name to leave the drop folder (left: %r)' % d.drop_files())
        raw = open(os.path.join(d.root, 'newswired.log'), 'rb').read()
        for b in (b'\x1b', b'\x07', b'\xff', b'two\nlines'):
            check(b not in raw, 'raw byte %r written to the log' % b)
        check(b'red\\x1b[31mtitle\\x07.txt' in raw, 'the control characters shown escaped')
        published = {m['source']['file'] for m in sub.messages} - {'normal.txt'}
        check(published == {'red [31mtitle .txt', 'bad\ufffd\ufffdutf8.txt', 'two lines.txt'},
              'source.file made safe: %r' % published)
        check(d.rejected() == [], 'nothing rejected for its name: %r' % d.rejected())
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_hostile_entries_rejected_then_normal_article_out, test_hostile_names_logged_escaped])
