"""End to end: a dedup-window change by SIGHUP takes effect both ways (issue 11, item 11).

The journal's seen-id set used to keep the window it was opened with: widening the
window in the config and reloading left the ids between the old and the new horizon
forgotten, so an article re-dropped inside the new window was published again. Now a
widening reads those ids back from the journal (logged once done) and a narrowing
forgets at once; the pipeline asks with the reloaded window.
"""
import os, signal, time

from nwtest import Daemon, Subscriber, check, header_article, run, wait_for


def config(window):
    return 'newswired\n    dedup-window = %d\n' % window


def reload(d, window):
    with open(os.path.join(d.root, 'newswired.cfg'), 'w') as f:
        f.write(config(window))
    before = d.log().count('reloaded ')
    d.send_signal(signal.SIGHUP)
    d.wait_log('reloaded ', count=before + 1)


ALPHA = header_article('Alpha story that is dropped again', Subject='wire',
                       body='The one body of the alpha story.')


def publish(d, sub, name, text):
    d.drop_text(name, text)
    return sub.wait(len(sub.messages) + 1, what=name)[-1]


def duplicate(d, sub, name, text, marker):
    """Drop text again: it must be archived as a duplicate; the marker after it is then
    the next message (so nothing was published in between)."""
    n = len(sub.messages)
    d.drop_text(name, text)
    d.wait_log('duplicate %s: article ' % name)
    m = publish(d, sub, marker, header_article('Marker ' + marker, Subject='wire',
                                              body='Marker body ' + marker + '.'))
    check(len(sub.messages) == n + 1 and m['article']['headline'] == 'Marker ' + marker,
          're-dropped %s was not published again: %r'
          % (name, [x['article']['headline'] for x in sub.messages[n:]]))
    return m


def test_widen_then_narrow():
    d = Daemon(config=config(1)).start()
    try:
        sub = Subscriber(d, ['wire'])
        a = publish(d, sub, 'alpha.txt', ALPHA)
        t_alpha = time.time()
        # Past the 1 s window; the next group write prunes alpha from the seen set.
        wait_for(lambda: time.time() > t_alpha + 1.5, 'the 1 s window to pass')
        publish(d, sub, 'beta.txt', header_article('Beta story', Subject='wire',
                                                   body='The beta body.'))

        reload(d, 3600)
        d.wait_log('dedup window widened to 3600 s: ')
        check(' ids read back from ' in d.log(), 'the read-back is logged: %s' % d.log())
        m = duplicate(d, sub, 'alpha-again.txt', ALPHA, 'one.txt')
        check(m['seq'] == 3, 'the marker takes seq 3: %r' % m['seq'])

        # and back: a narrower window forgets at once, so alpha goes out again
        reload(d, 1)
        again = publish(d, sub, 'alpha-third.txt', ALPHA)
        check(again['id'] == a['id'] and again['seq'] == 4,
              'outside the narrowed window alpha is published again: %r'
              % ((again['id'], again['seq']),))
        check(d.stop()[0] == 0, 'clean exit')
        check(d.drop_files() == [] and len(d.archived()) == 5, 'every file archived: %r'
              % d.archived())
    finally:
        d.cleanup()


if __name__ == '__main__':
    run([test_widen_then_narrow])
