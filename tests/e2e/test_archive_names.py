"""End to end (issue 11, item 8): no file stays in the drop folder because of its name.

- 12,000 namesakes already in today's archive folder (more than the old one-by-one probe
  ever tried): one more file of that name is still published and archived, under the
  number after the last, found without probing every name before it;
- a 255-byte name archives twice (the second copy's name is cut to fit NAME_MAX), and a
  malformed file with a 250-byte or a 255-byte name is rejected with its reason beside
  it, twice over for the 250-byte one.

Nothing here is timed: the bound is shown by the names (bench_newswired --namesakes
measures the time).
"""
import os, time

from nwtest import Daemon, Subscriber, check, header_article, run, wait_for

NAME_MAX = 255


def place(d, name, text):
    """Deliver under a short hidden name, then rename: '.NAME.tmp' would not fit."""
    tmp = os.path.join(d.drop, '.n.tmp')
    with open(tmp, 'w') as f:
        f.write(text)
    os.rename(tmp, os.path.join(d.drop, name))


def day_folders(d):
    """Today's archive folder, and tomorrow's when the day may turn during the test."""
    now = time.time()
    days = {time.strftime('%Y/%m/%d', time.gmtime(now))}
    days.add(time.strftime('%Y/%m/%d', time.gmtime(now + 600)))
    return [os.path.join(d.state, 'archive', day) for day in sorted(days)]


def test_namesakes_beyond_ten_thousand():
    d = Daemon()
    try:
        for folder in day_folders(d):
            os.makedirs(folder)
            for i in range(12001):
                name = 'story.txt' if i == 0 else 'story-%d.txt' % i
                open(os.path.join(folder, name), 'w').close()
        d.start()
        sub = Subscriber(d)
        place(d, 'story.txt', header_article('The namesake after twelve thousand', Subject='names'))
        m = sub.wait(1)[0]
        check(m['article']['headline'] == 'The namesake after twelve thousand', 'published: %r' % m)
        wait_for(lambda: d.drop_files() == [],
                 'story.txt archived (still in the drop folder: %r); log:\n%s'
                 % (d.drop_files(), d.log()))
        got = [p for p in d.archived() if os.path.getsize(p) > 0]
        check(len(got) == 1 and os.path.basename(got[0]) == 'story-12001.txt',
              'archived as story-12001.txt: %r' % got)
        # the next namesake goes straight to the number after it
        place(d, 'story.txt', header_article('And one more namesake', Subject='names'))
        sub.wait(2)
        wait_for(lambda: d.drop_files() == [], 'the second story.txt archived')
        got = sorted(os.path.basename(p) for p in d.archived() if os.path.getsize(p) > 0)
        check(got == ['story-12001.txt', 'story-12002.txt'], 'archived names: %r' % got)
        check(d.rejected() == [], 'nothing rejected: %r' % d.rejected())
    finally:
        d.cleanup()


def test_longest_names_archive_and_reject():
    d = Daemon()
    try:
        d.start()
        sub = Subscriber(d)
        longest = 'L' * (NAME_MAX - 4) + '.txt'
        for i in range(2):
            place(d, longest, header_article('Longest name, copy %d' % i, Subject='names'))
            sub.wait(i + 1)
            wait_for(lambda: d.drop_files() == [],
                     'copy %d of the 255-byte name archived; log:\n%s' % (i, d.log()))
        names = sorted(os.path.basename(p) for p in d.archived())
        check(len(names) == 2 and longest in names, 'both copies archived: %r' % names)
        cut = [n for n in names if n != longest][0]
        check(len(cut) <= NAME_MAX and cut.endswith('-1.txt') and cut.startswith('LLLL'),
              'the second copy cut to fit: %r (%d bytes)' % (cut, len(cut)))
        check(sub.messages[0]['source']['file'] == longest, 'source.file is the name as dropped')

        name250 = 'R' * 246 + '.txt'
        name255 = 'S' * 251 + '.txt'
        for name in (name250, name255, name250):
            place(d, name, 'Title: a headline\n\n')   # no body: malformed
            # the file leaves the drop folder before its reason's temporary name is
            # removed (nw_archive_reject): wait for both
            wait_for(lambda: d.drop_files() == [] and
                     not any(n.endswith('.reason.tmp') for n in d.rejected()),
                     'malformed %d-byte name rejected (drop folder: %r, rejected: %r); log:\n%s'
                     % (len(name), d.drop_files(), d.rejected(), d.log()))
        rejected = d.rejected()
        files = [n for n in rejected if not n.endswith('.reason')]
        check(len(files) == 3, 'three rejected files: %r' % rejected)
        for n in files:
            check(len(n + '.reason') <= NAME_MAX, '%r leaves room for its reason' % n)
            with open(os.path.join(d.state, 'rejected', n + '.reason')) as f:
                why = f.read()
            check(why == 'no body\n', '%s.reason says why: %r' % (n[:12], why))
        check(len(rejected) == 6, 'a reason beside each, nothing else: %r' % rejected)
        check(len(sub.messages) == 2, 'only the two good copies published')
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_namesakes_beyond_ten_thousand, test_longest_names_archive_and_reject])
