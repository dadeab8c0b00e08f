"""The hardened unit (issue: security): the configured systemd/newswired.service scores
1.5 or lower in `systemd-analyze security --offline=true` and passes
`systemd-analyze verify`. Skipped (77) where systemd-analyze is missing.
"""
import os, re, shutil, subprocess, sys, tempfile

from nwtest import BIN, check, run

BUILD = os.path.dirname(os.path.abspath(BIN))
UNIT = os.path.join(BUILD, 'systemd', 'newswired.service')
MAX_EXPOSURE = 1.5


def analyze(*args):
    return subprocess.run(['systemd-analyze'] + list(args), capture_output=True, text=True,
                          env=dict(os.environ, SYSTEMD_COLORS='0', SYSTEMD_PAGER=''))


def unit_with_built_binary(tmp):
    """verify checks that ExecStart's program exists and is executable; the unit names
    the installed path, so check a copy that names the binary just built."""
    with open(UNIT) as f:
        text = f.read()
    text, n = re.subn(r'^ExecStart=\S*/newswired', 'ExecStart=' + os.path.join(BIN, 'newswired'),
                      text, flags=re.M)
    check(n == 1, 'one ExecStart running newswired')
    path = os.path.join(tmp, 'newswired.service')
    with open(path, 'w') as f:
        f.write(text)
    return path


def test_security_score():
    r = analyze('security', '--offline=true', UNIT)
    m = re.search(r'Overall exposure level for newswired\.service: (\d+\.\d+)', r.stdout)
    check(m, 'an overall exposure level in:\n' + r.stdout + r.stderr)
    score = float(m.group(1))
    print('exposure %.1f (at most %.1f)' % (score, MAX_EXPOSURE), flush=True)
    check(score <= MAX_EXPOSURE, 'exposure %.1f > %.1f:\n%s' % (score, MAX_EXPOSURE, r.stdout))


def test_verify():
    # --man=no: Documentation= names the man pages, which are installed only with the
    # packages (tests/system/ checks the unit where they are).
    tmp = tempfile.mkdtemp(prefix='nw-unit-')
    try:
        r = analyze('verify', '--man=no', unit_with_built_binary(tmp))
        check(r.returncode == 0 and not r.stderr.strip(),
              'systemd-analyze verify: rc %d\n%s%s' % (r.returncode, r.stdout, r.stderr))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_verify_catches_a_broken_unit():
    """The verify check can fail: a misspelt directive is reported."""
    tmp = tempfile.mkdtemp(prefix='nw-unit-')
    try:
        path = unit_with_built_binary(tmp)
        with open(path) as f:
            text = f.read()
        with open(path, 'w') as f:
            f.write(text.replace('NoNewPrivileges=yes', 'NoNewPrivilegs=yes'))
        r = analyze('verify', path)
        check('NoNewPrivilegs' in r.stderr, 'a misspelt directive reported:\n' + r.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    if not shutil.which('systemd-analyze'):
        print('skipped: no systemd-analyze')
        sys.exit(77)
    if not os.path.exists(UNIT):
        print('FAIL: %s was not configured' % UNIT)
        sys.exit(1)
    run([test_security_score, test_verify, test_verify_catches_a_broken_unit])
