"""systest: what the system tests ask of newswired running under the container's systemd
(tests/system/nspawn.py): unit properties from `systemctl show`, the unit's journal with
cursors, files dropped and archived, and subscribers run inside the container. Every
wait polls what systemd, the journal or a subscriber reports, with a deadline.

Set `box` to the booted nspawn.Container (and PY_SUB to the Python subscriber's command)
before calling anything here.
"""
import json, os, re, shutil, subprocess, tempfile, time

from nwtest import Failure, check

DEADLINE = float(os.environ.get('NW_SYSTEM_DEADLINE', '60'))
CFG = '/etc/newswire/newswired.cfg'
DROP = '/var/spool/newswire/drop'
STATE = '/var/lib/newswire'
PUB, REPLAY = 'tcp://127.0.0.1:5556', 'tcp://127.0.0.1:5557'

box = None
PY_SUB = ['newswire-sub-python']


def wait(pred, what, timeout=DEADLINE, every=0.1):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise Failure('timed out waiting for ' + what)
        time.sleep(every)


def show(*props):
    out = box.run(['systemctl', 'show', 'newswired'] + ['-p' + p for p in props]).stdout
    return dict(line.split('=', 1) for line in out.splitlines() if '=' in line)


def journal(*args):
    return box.run(['journalctl', '-u', 'newswired', '--no-pager', '-o', 'cat'] + list(args),
                   check=False).stdout


def cursor():
    out = box.run(['journalctl', '-u', 'newswired', '-n', '0', '--show-cursor', '--no-pager'],
                  check=False).stdout
    m = re.search(r'-- cursor: (\S+)', out)
    return m.group(1) if m else None


def since(cur):
    return ['--after-cursor', cur] if cur else []


def wait_journal(text, cur, timeout=DEADLINE):
    return wait(lambda: text in journal(*since(cur)), 'journal line %r; have:\n%s'
                % (text, journal(*since(cur))[-3000:]), timeout)


def drop_as_root(name, text):
    """Written aside and renamed in, as a producer must, so the daemon sees whole files."""
    tmp = box.path(DROP + '/.' + name + '.tmp')
    with open(tmp, 'w') as f:
        f.write(text)
    os.rename(tmp, box.path(DROP + '/' + name))


def install_by_cmake(build, prefix):
    """`cmake --install` of BUILD with PREFIX, staged in DESTDIR, copied into the root."""
    stage = tempfile.mkdtemp(prefix='nw-stage-')
    os.chmod(stage, 0o755)       # cp -a gives the container's / the mode of stage/.
    try:
        r = subprocess.run(['cmake', '--install', build, '--prefix', prefix],
                           env=dict(os.environ, DESTDIR=stage), capture_output=True, text=True)
        check(r.returncode == 0, 'cmake --install: ' + r.stderr)
        subprocess.run(['cp', '-a', stage + '/.', box.merged], check=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def archived():
    out = []
    for d, _, files in os.walk(box.path(STATE + '/archive')):
        out += files
    return sorted(out)


class Sub:
    """newswire-sub (C) or the Python sample inside the container, with replay, so the
    articles published before its subscription reached the daemon arrive too."""

    def __init__(self, topic, count, since_seq=1, python=False):
        prog = PY_SUB if python else ['newswire-sub']
        self.proc = box.popen(prog + ['--connect', PUB, '--replay', REPLAY,
                                      '--since', str(since_seq), '--count', str(count),
                                      '--timeout', str(int(DEADLINE)), topic],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self):
        out, err = self.proc.communicate(timeout=DEADLINE + 30)
        check(self.proc.returncode == 0, 'subscriber exit %d: %s' % (self.proc.returncode, err))
        return [json.loads(line) for line in out.splitlines()]


def add_replay_to_config(cfg_path=CFG):
    """The config as an operator edits it: a replay endpoint for gap-filling subscribers."""
    with open(box.path(cfg_path)) as f:
        cfg = f.read()
    cfg = cfg.replace('    publish = "tcp://127.0.0.1:5556"\n',
                      '    publish = "%s"\n    replay = "%s"\n' % (PUB, REPLAY))
    check(REPLAY in cfg, 'replay endpoint added to the config')
    with open(box.path(cfg_path), 'w') as f:
        f.write(cfg)
