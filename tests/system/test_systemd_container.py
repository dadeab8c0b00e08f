"""newswired under a real systemd (issue 12): the project's Debian packages built with
dpkg-buildpackage (tests/system/debs.py) and lintian-clean, installed with dpkg into a
Debian 12 container booted with systemd-nspawn (tests/system/nspawn.py), and the shipped
unit run as operators run it. Each phase waits on what systemd, the journal or a
subscriber reports, never on a sleep:

- dpkg -i installs the five packages, each man page in its package, and the service
  runs at once (enabled and started by the postinst);

- `systemctl start` reaches active only through READY=1 (Type=notify);
- STATUS= (systemctl's StatusText) changes as articles flow;
- a rejected file is in `journalctl -u newswired -p warning`, at priority 4;
- a producer in group newswire-drop drops an article (into a subject folder) that a C
  and a Python subscriber receive, and the file is archived; a user outside the group
  cannot drop;
- the sandbox is applied: `systemd-analyze security newswired` scores it at most 1.5
  inside the container, and a probe run in the service's context (ExecStartPost) cannot
  connect to a non-loopback address that a process outside the service reaches, nor
  open a packet socket, lower its priority, or write under /usr;
- `systemctl reload` re-reads the config (new rules route the next article) without a
  new process;
- `kill -STOP` trips the watchdog (WatchdogSec=4s by a drop-in), systemd restarts the
  daemon, and the articles dropped meanwhile all arrive, in seq order, none twice;
- an upgrade to a second version built with a bumped version keeps the state (the
  epoch and seqs go on) and the edited config, and restarts the daemon;
- `systemctl stop` finishes cleanly (exit 0, no SIGKILL);
- a purge removes the service, config, state and drop folder (the user stays).
Skips (77) only where nspawn cannot run.
"""
import json, os, re, shutil, subprocess, sys, time, traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import debs, nspawn, systest
from nwtest import BIN, check, header_article
from systest import (CFG, DROP, PUB, STATE, Sub, archived, cursor, drop_as_root, journal,
                     show, since, wait, wait_journal)

SOURCE = os.environ.get('NW_SOURCE', os.path.join(os.path.dirname(__file__), '..', '..'))
BUILD = os.path.dirname(os.path.abspath(BIN))
DEADLINE = systest.DEADLINE
MAX_EXPOSURE = 1.5
PROBE_ADDR, PROBE_PORT = '198.18.0.1', 5599   # our own test range, on the container's lo

box = None        # the booted container, shared by the phases in order
# ---- how the project gets into the container: its Debian packages ----
systest.PY_SUB = ['newswire-sub-python']
build = None      # the debs.Build the packages come from
MAN_PAGES = {'newswired': ['man8/newswired.8', 'man5/newswired.cfg.5', 'man7/newswire.7'],
             'newswire-tools': ['man1/newswire-sub.1', 'man1/newswire-drop.1',
                                'man1/newswire-keygen.1'],
             'libnewswire-dev': ['man3/libnewswire.3'],
             'python3-newswire': ['man1/newswire-sub-python.1']}


def binaries():
    return [os.path.join(BIN, b) for b in ('newswired', 'newswire-sub', 'newswire-drop',
                                           'newswire-keygen')]


def dpkg_install(paths):
    os.makedirs(box.path('/srv/debs'), exist_ok=True)
    names = []
    for p in paths:
        shutil.copy(p, box.path('/srv/debs'))
        names.append('/srv/debs/' + os.path.basename(p))
    return box.run(['dpkg', '-i'] + names, timeout=300)


# ---- the phases ----
def test_packages_install_and_start():
    dpkg_install(build.debs())
    for pkg, pages in MAN_PAGES.items():
        for page in pages:
            path = '/usr/share/man/%s.gz' % page
            owner = box.run(['dpkg-query', '-S', path], check=False).stdout.split(':')[0]
            check(owner == pkg, '%s in %s, not %r' % (path, pkg, owner))
    box.run(['/usr/bin/python3', '-c', 'import newswire_sub'])
    s = show('ActiveState', 'UnitFileState', 'FragmentPath')
    check(s == {'ActiveState': 'active', 'UnitFileState': 'enabled',
                'FragmentPath': '/lib/systemd/system/newswired.service'},
          'enabled and started by the postinst: %r' % s)
    check(box.run(['dpkg-query', '-W', '-f', '${Conffiles}', 'newswired']).stdout.strip()
          .startswith(CFG + ' '), 'the config is a conffile')


# ---- the phases ----
def test_start_reaches_active_through_ready():
    systest.add_replay_to_config()
    cur = cursor()
    box.run(['systemctl', 'restart', 'newswired'], timeout=DEADLINE)
    s = show('Type', 'ActiveState', 'SubState', 'MainPID', 'StatusText', 'NRestarts')
    check(s['Type'] == 'notify' and s['ActiveState'] == 'active' and s['SubState'] == 'running',
          'active through READY=1: %r\n%s' % (s, journal(*since(cur))))
    lines = journal(*since(cur))
    ready = re.search(r'^newswired \S+: watching %s, publishing on %s' % (DROP, PUB), lines, re.M)
    started = lines.find('Started newswired.service')
    check(ready and started > ready.start(), 'the daemon was ready before systemd called it '
          'started:\n' + lines)
    check(s['StatusText'].startswith('0 published'), 'first STATUS: %r' % s['StatusText'])


def test_status_changes_as_articles_flow():
    before = show('StatusText')['StatusText']
    sub = Sub('telecoms', 1)
    drop_as_root('masts.txt', header_article('Operators share masts', Subject='Telecoms'))
    msgs = sub.result()
    check(msgs[0]['article']['headline'] == 'Operators share masts', 'received: %r' % msgs)
    after = wait(lambda: re.match(r'1 published', show('StatusText')['StatusText'])
                 and show('StatusText')['StatusText'], 'STATUS to count the article')
    check(before != after, 'STATUS changed: %r -> %r' % (before, after))


def test_rejected_file_in_journal_at_warning():
    cur = cursor()
    drop_as_root('no-headline.txt', 'Author: Nobody\nSubject: x\n\nA body without a title.\n')
    wait(lambda: os.path.exists(box.path(STATE + '/rejected/no-headline.txt.reason')),
         'the file and its reason in rejected/')
    wait_journal('rejected no-headline.txt', cur)
    # The whole unit's journal: journalctl 252 with both -p and --after-cursor finds
    # nothing when the cursor's entry (systemd's own) is below the priority asked for.
    warn = box.run(['journalctl', '-u', 'newswired', '-p', 'warning', '-o', 'json',
                    '--no-pager']).stdout
    entries = [json.loads(line) for line in warn.splitlines() if line.strip()]
    hits = [e for e in entries if 'rejected no-headline.txt' in e.get('MESSAGE', '')]
    check(hits and hits[0]['PRIORITY'] == '4', 'at warning priority: %r' % hits)
    wait(lambda: re.match(r'1 published, 1 rejected', show('StatusText')['StatusText']),
         'STATUS to count the rejection')


def test_producer_in_group_drops_article():
    box.sh('useradd --no-create-home --groups newswire-drop editor; '
           'useradd --no-create-home outsider')
    with open(box.path('/srv/story.txt'), 'w') as f:
        f.write(header_article('Dropped by an editor', body='Filed from the desk.'))
    os.chmod(box.path('/srv/story.txt'), 0o644)
    refused = box.run(['runuser', '-u', 'outsider', '--', 'newswire-drop', '--drop', DROP,
                       '/srv/story.txt'], check=False)
    check(refused.returncode == 1 and 'Permission denied' in refused.stderr,
          'a user outside newswire-drop cannot drop: %r' % (refused,))
    c_sub, py_sub = Sub('desk', 1), Sub('desk', 1, python=True)
    cur = cursor()
    r = box.run(['runuser', '-u', 'editor', '--', 'newswire-drop', '--drop', DROP,
                 '--subject', 'Desk', '/srv/story.txt'])
    check(r.stdout.strip() == DROP + '/desk/story.txt', 'delivered: %r' % r.stdout)
    for sub in (c_sub, py_sub):
        msgs = sub.result()
        check(len(msgs) == 1 and msgs[0]['topic'] == 'desk'
              and msgs[0]['article']['headline'] == 'Dropped by an editor', 'got %r' % msgs)
    wait(lambda: 'story.txt' in archived(), 'the editor\'s file archived; journal:\n'
         + journal(*since(cur)))
    check(not os.listdir(box.path(DROP + '/desk')), 'nothing left in the subject folder')
    check('stays in the drop folder' not in journal(*since(cur)), journal(*since(cur)))
    st = os.stat(box.path(DROP + '/desk'))
    check(st.st_mode & 0o7777 == 0o2770, 'the subject folder has the drop folder\'s mode: %o'
          % st.st_mode)

    # A folder a producer made by hand, writable only by them: the article still goes
    # out, and the warning says why the file stays (not the EXDEV of the first attempt).
    box.run(['runuser', '-u', 'editor', '--', 'mkdir', '-m', '0755', DROP + '/mine'])
    sub = Sub('mine', 1)
    cur = cursor()
    with open(box.path('/srv/story.txt'), 'w') as f:
        f.write(header_article('Filed into a folder of their own'))
    box.run(['runuser', '-u', 'editor', '--', 'newswire-drop', '--drop', DROP + '/mine',
             '/srv/story.txt'])
    check(sub.result()[0]['topic'] == 'mine', 'published from the producer\'s own folder')
    wait_journal('mine/story.txt stays in the drop folder: cannot move to %s/archive/' % STATE,
                 cur)
    line = [l for l in journal(*since(cur)).splitlines() if 'mine/story.txt stays' in l][0]
    check(line.endswith(': Permission denied'), 'the cause: %r' % line)
    shutil.rmtree(box.path(DROP + '/mine'))


PROBE = r'''
import errno, os, socket, sys
def attempt(what, f):
    try:
        f()
        print("probe: %s: allowed" % what)
    except OSError as e:
        print("probe: %s: %s" % (what, errno.errorcode.get(e.errno, e.errno)))
def connect(addr, port):
    try:
        socket.create_connection((addr, port), timeout=3).close()
    except socket.timeout:
        raise OSError(errno.ETIMEDOUT, "timed out")
def send(addr, port):
    socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"probe", (addr, port))
attempt("connect %s" % sys.argv[1], lambda: connect(sys.argv[1], int(sys.argv[2])))
attempt("sendto %s" % sys.argv[1], lambda: send(sys.argv[1], int(sys.argv[2])))
attempt("connect 127.0.0.1", lambda: connect("127.0.0.1", 5556))
attempt("packet socket", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
attempt("setpriority", lambda: os.setpriority(os.PRIO_PROCESS, 0, 5))
attempt("write /usr", lambda: open("/usr/newswire-probe", "w"))
sys.stdout.flush()
'''
LISTENER = r'''
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.close()
'''


def test_sandbox_applied():
    r = box.run(['systemd-analyze', 'security', 'newswired', '--no-pager'])
    m = re.search(r'Overall exposure level for newswired\.service: (\d+\.\d+)', r.stdout)
    check(m, 'an exposure level:\n' + r.stdout)
    print('exposure inside the container: %s (at most %.1f)' % (m.group(1), MAX_EXPOSURE),
          flush=True)
    check(float(m.group(1)) <= MAX_EXPOSURE, r.stdout)

    box.net(['ip', 'addr', 'add', PROBE_ADDR + '/32', 'dev', 'lo'])
    box.write('/usr/local/lib/newswire-test/probe.py', PROBE)
    box.write('/usr/local/lib/newswire-test/listener.py', LISTENER)
    listener = box.popen(['/usr/bin/python3', '/usr/local/lib/newswire-test/listener.py',
                          PROBE_ADDR, str(PROBE_PORT)], stdout=subprocess.PIPE, text=True)
    try:
        check(listener.stdout.readline().strip() == 'listening', 'listener started')
        control = box.run(['/usr/bin/python3', '-c', 'import socket; socket.create_connection('
                           '("%s", %d), timeout=5).close(); socket.socket(socket.AF_INET, '
                           'socket.SOCK_DGRAM).sendto(b"x", ("%s", %d)); print("ok")'
                           % (PROBE_ADDR, PROBE_PORT, PROBE_ADDR, PROBE_PORT)])
        check(control.stdout.strip() == 'ok', 'outside the service %s is reachable' % PROBE_ADDR)
        dropin = '/etc/systemd/system/newswired.service.d/50-probe.conf'
        box.write(dropin, '[Service]\nExecStartPost=/usr/bin/python3 '
                  '/usr/local/lib/newswire-test/probe.py %s %d\n' % (PROBE_ADDR, PROBE_PORT))
        cur = cursor()
        box.sh('systemctl daemon-reload; systemctl restart newswired')
        lines = wait_journal('probe: write /usr:', cur)
        lines = journal(*since(cur))
        # IPAddressDeny= drops the packets in the cgroup's BPF filter: a datagram is
        # refused with EPERM, a TCP connect never sees its SYN answered.
        for want in ('probe: connect %s: ETIMEDOUT' % PROBE_ADDR,
                     'probe: sendto %s: EPERM' % PROBE_ADDR, 'probe: connect 127.0.0.1: allowed',
                     'probe: packet socket: EAFNOSUPPORT', 'probe: setpriority: EPERM',
                     'probe: write /usr: EROFS'):
            check(want in lines, '%r in the service\'s probe output:\n%s' % (want, lines))
        os.unlink(box.path(dropin))
        box.sh('systemctl daemon-reload; systemctl restart newswired')
    finally:
        listener.kill()
        listener.wait()


def test_reload_rereads_config():
    pid = show('MainPID')['MainPID']
    with open(box.path(CFG)) as f:
        cfg = f.read()
    cfg += ('rules\n    space\n        threshold = 2\n'
            '        words = "satellite, orbit, launch"\n')
    with open(box.path(CFG), 'w') as f:
        f.write(cfg)
    cur = cursor()
    box.run(['systemctl', 'reload', 'newswired'], timeout=DEADLINE)
    wait_journal('reloaded %s' % CFG, cur)
    s = show('MainPID', 'ActiveState')
    check(s == {'MainPID': pid, 'ActiveState': 'active'}, 'same process, active: %r' % s)
    sub = Sub('space', 1)
    drop_as_root('orbit.txt', header_article('A satellite reaches orbit',
                                             body='The launch put the satellite in orbit.'))
    msgs = sub.result()
    check(msgs[0]['topic'] == 'space', 'the reloaded rules routed it: %r' % msgs)


def test_watchdog_restarts_with_nothing_lost():
    box.write('/etc/systemd/system/newswired.service.d/50-watchdog.conf',
              '[Service]\nWatchdogSec=4s\n')
    box.sh('systemctl daemon-reload; systemctl restart newswired')
    s = show('MainPID', 'NRestarts', 'WatchdogUSec')
    check(s['WatchdogUSec'] == '4s', 'the drop-in applies: %r' % s)
    cur = cursor()
    box.sh('kill -STOP %d' % int(s['MainPID']))     # the shell's kill: no procps here
    for i in range(5):
        drop_as_root('w%d.txt' % i, header_article('Held while stopped %d' % i, Subject='watch'))
    wait_journal('Watchdog timeout', cur, timeout=DEADLINE)
    after = wait(lambda: (lambda t: t['ActiveState'] == 'active' and t['MainPID'] not in
                          ('0', s['MainPID']) and t)(show('MainPID', 'ActiveState', 'NRestarts')),
                 'systemd to restart the daemon')
    check(int(after['NRestarts']) == int(s['NRestarts']) + 1, 'one restart: %r -> %r' % (s, after))
    # Subscribed once the new process runs: a replay request sent to the stopped one
    # dies with it, and live messages published before a subscription reconnects are
    # not a subscriber's to see. What the journal holds is.
    msgs = Sub('watch', 5).result()
    heads = sorted(m['article']['headline'] for m in msgs)
    check(heads == ['Held while stopped %d' % i for i in range(5)], 'all five, once: %r' % heads)
    seqs = [m['seq'] for m in msgs]
    check(seqs == list(range(1, 6)), 'in seq order, no gap: %r' % seqs)
    wait(lambda: all('w%d.txt' % i in archived() for i in range(5)), 'all five archived')
    os.unlink(box.path('/etc/systemd/system/newswired.service.d/50-watchdog.conf'))
    box.sh('systemctl daemon-reload; systemctl restart newswired')


def test_upgrade_keeps_state_and_config():
    with open(box.path(CFG)) as f:
        cfg = f.read()
    before = show('MainPID')['MainPID']
    kept = archived()
    new = build.bump()
    r = dpkg_install(new)
    version = box.run(['dpkg-query', '-W', '-f', '${Version}', 'newswired']).stdout
    check(version == build.version(), 'upgraded to %s: %r' % (build.version(), version))
    with open(box.path(CFG)) as f:
        check(f.read() == cfg, 'the edited config is kept:\n' + r.stdout + r.stderr)
    s = show('MainPID', 'ActiveState')
    check(s['ActiveState'] == 'active' and s['MainPID'] not in ('0', before),
          'restarted by the upgrade: %s -> %r' % (before, s))
    check(set(kept) <= set(archived()), 'the archive is kept')
    # The journal too: the topic goes on from its last seq, in the same epoch.
    sub = Sub('watch', 6)
    drop_as_root('after-upgrade.txt', header_article('After the upgrade', Subject='watch'))
    msgs = sub.result()
    check([m['seq'] for m in msgs] == list(range(1, 7)) and len({m['epoch'] for m in msgs}) == 1
          and msgs[-1]['article']['headline'] == 'After the upgrade',
          'seqs and epoch go on: %r' % [(m['seq'], m['epoch']) for m in msgs])


def test_stop_finishes_cleanly():
    cur = cursor()
    box.run(['systemctl', 'stop', 'newswired'], timeout=DEADLINE)
    s = show('ActiveState', 'Result', 'ExecMainStatus', 'ExecMainCode')
    check(s['ActiveState'] == 'inactive' and s['Result'] == 'success'
          and s['ExecMainStatus'] == '0', 'stopped cleanly: %r' % s)
    lines = journal(*since(cur))
    check('finishing files in flight, then exiting' in lines and 'SIGKILL' not in lines, lines)


def test_purge_removes_everything():
    box.run(['dpkg', '--purge'] + debs.PACKAGES, timeout=300)
    s = show('LoadState', 'ActiveState')
    check(s == {'LoadState': 'not-found', 'ActiveState': 'inactive'}, 'no unit left: %r' % s)
    for path in ('/etc/newswire', STATE, '/var/spool/newswire', '/usr/bin/newswired',
                 '/lib/systemd/system/newswired.service', '/usr/lib/sysusers.d/newswired.conf',
                 '/etc/systemd/system/multi-user.target.wants/newswired.service'):
        check(not os.path.lexists(box.path(path)), '%s removed by the purge' % path)
    # Debian keeps system users: files elsewhere may still be theirs.
    box.run(['getent', 'passwd', 'newswire'])


PHASES = [test_packages_install_and_start, test_start_reaches_active_through_ready,
          test_status_changes_as_articles_flow, test_rejected_file_in_journal_at_warning,
          test_producer_in_group_drops_article, test_sandbox_applied, test_reload_rereads_config,
          test_watchdog_restarts_with_nothing_lost, test_upgrade_keeps_state_and_config,
          test_stop_finishes_cleanly, test_purge_removes_everything]


def run_phases(phases):
    """In order; each phase starts from the state the one before left, so the first
    failure ends the run (the rest are counted as skipped)."""
    passed = failed = 0
    for i, phase in enumerate(phases):
        t0 = time.monotonic()
        try:
            phase()
            passed += 1
            print('ok   %s (%.1fs)' % (phase.__name__, time.monotonic() - t0), flush=True)
        except Exception:
            failed = 1
            print('FAIL %s (%.1fs)' % (phase.__name__, time.monotonic() - t0), flush=True)
            traceback.print_exc()
            print('journal of newswired:\n' + journal()[-5000:])
            print('status: %r\narchived: %r' % (show('StatusText'), archived()))
            break
    if os.environ.get('NW_SYSTEM_VERBOSE'):
        print('journal of newswired:\n' + journal())
    print('%d passed, %d failed, %d skipped' % (passed, failed, len(phases) - passed - failed),
          flush=True)
    sys.exit(1 if failed else 0)


def main():
    global box, build
    reason = nspawn.unavailable_reason()
    if reason:
        print('skipped: ' + reason)
        sys.exit(77)
    t0 = time.monotonic()
    build = debs.Build(SOURCE)
    try:
        build.build()
        build.lintian()
        # The root has what the packages depend on: the container has no network.
        root = nspawn.ensure_root(sorted(set(nspawn.root_packages(binaries(), BUILD))
                                         | build.depends()))
        with nspawn.Container(root) as c:
            box = systest.box = c
            nspawn.log('container up after %.0f s' % (time.monotonic() - t0))
            try:
                run_phases(PHASES)
            finally:
                nspawn.log('done in %.0f s' % (time.monotonic() - t0))
    except nspawn.Unavailable as e:
        print('skipped: %s' % e)
        sys.exit(77)
    finally:
        build.cleanup()


if __name__ == '__main__':
    main()
