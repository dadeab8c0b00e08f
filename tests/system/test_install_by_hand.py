"""`cmake --install` by hand, as the README tells it (issue 12), into a fresh Debian 12
container under systemd, with the default prefix /usr/local:
- the unit installed names /usr/local/bin/newswired and its config
  /usr/local/etc/newswire/newswired.cfg (GNUInstallDirs; prefix /usr gives /etc, which
  test_systemd_container.py runs);
- the programs do not find libnewswire until `ldconfig` has run, and do after;
- after systemd-sysusers, systemd-tmpfiles --create and daemon-reload the service starts
  and an article dropped reaches newswire-sub.
Skips (77) only where nspawn cannot run.
"""
import os, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nspawn, systest
from nwtest import BIN, check, header_article
from systest import Sub, drop_as_root, show

BUILD = os.path.dirname(os.path.abspath(BIN))
PREFIX = '/usr/local'


def main():
    reason = nspawn.unavailable_reason()
    if reason:
        print('skipped: ' + reason)
        sys.exit(77)
    t0 = time.monotonic()
    binaries = [os.path.join(BIN, b) for b in ('newswired', 'newswire-sub', 'newswire-drop',
                                               'newswire-keygen')]
    root = nspawn.ensure_root(nspawn.root_packages(binaries, BUILD))
    try:
        with nspawn.Container(root) as box:
            systest.box = box
            systest.install_by_cmake(BUILD, PREFIX)

            r = box.run([PREFIX + '/bin/newswire-sub', '--help'], check=False)
            check(r.returncode == 127 and 'libnewswire.so.0' in r.stderr,
                  'before ldconfig the library is not found: %r' % (r,))
            box.run(['ldconfig'])
            box.run([PREFIX + '/bin/newswire-sub', '--help'])

            box.sh('systemd-sysusers; systemd-tmpfiles --create newswired.conf; '
                   'systemctl daemon-reload')
            s = show('FragmentPath', 'ExecStart')
            check(s['FragmentPath'] == PREFIX + '/lib/systemd/system/newswired.service'
                  and 'path=%s/bin/newswired ;' % PREFIX in s['ExecStart']
                  and '--config %s/etc/newswire/newswired.cfg' % PREFIX in s['ExecStart'],
                  'the unit names the prefix\'s files: %r' % s)
            systest.add_replay_to_config(PREFIX + '/etc/newswire/newswired.cfg')
            box.run(['systemctl', 'enable', '--now', 'newswired'], timeout=systest.DEADLINE)
            s = show('ActiveState', 'SubState')
            check(s == {'ActiveState': 'active', 'SubState': 'running'}, 'started: %r\n%s'
                  % (s, systest.journal()))

            sub = Sub('by-hand', 1)
            drop_as_root('hand.txt', header_article('Installed by hand', Subject='By hand'))
            msgs = sub.result()
            check(msgs[0]['article']['headline'] == 'Installed by hand', 'received %r' % msgs)
            print('1 passed, 0 failed, 0 skipped')
            nspawn.log('done in %.0f s' % (time.monotonic() - t0))
    except nspawn.Unavailable as e:
        print('skipped: %s' % e)
        sys.exit(77)


if __name__ == '__main__':
    main()
