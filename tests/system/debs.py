"""debs: the project's Debian packages, built as an operator or a distribution builds
them, with `dpkg-buildpackage -b -us -uc` from debian/, out of the source tree: the
tracked and untracked-but-not-ignored files are copied into a temporary folder first,
so the build writes nothing into the work tree (its ../*.deb land in that folder).

build() gives the .deb paths of one version; bump() adds a changelog entry with a new
version to the same tree and builds again without cleaning (no recompilation), which
is what an upgrade needs to install; lintian() runs lintian on a build's .changes.
"""
import glob, os, shutil, subprocess, tempfile, time

from nwtest import check

PACKAGES = ['newswired', 'newswire-tools', 'libnewswire0', 'libnewswire-dev',
            'python3-newswire']


def log(msg):
    print('[%s] %s' % (time.strftime('%H:%M:%S'), msg), flush=True)


def export(source, dest):
    """SOURCE's files as git sees them (the work tree's state, not a commit), or the
    whole tree without build folders where SOURCE is not a git checkout."""
    r = subprocess.run(['git', '-C', source, 'ls-files', '-z', '--cached', '--others',
                        '--exclude-standard'], capture_output=True)
    if r.returncode == 0:
        for rel in r.stdout.decode().split('\0'):
            if rel and os.path.lexists(os.path.join(source, rel)):
                os.makedirs(os.path.join(dest, os.path.dirname(rel)), exist_ok=True)
                shutil.copy2(os.path.join(source, rel), os.path.join(dest, rel),
                             follow_symlinks=False)
    else:
        shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns('build*', '.git'))


class Build:
    def __init__(self, source):
        self.top = tempfile.mkdtemp(prefix='nw-debs-')
        self.tree = os.path.join(self.top, 'newswire')
        os.makedirs(self.tree)
        export(source, self.tree)

    def _buildpackage(self, *extra):
        env = dict(os.environ, DEB_BUILD_OPTIONS='nocheck parallel=%d' % (os.cpu_count() or 1))
        for k in ('MAKEFLAGS', 'MFLAGS', 'CFLAGS', 'LDFLAGS', 'PYTHONPATH'):
            env.pop(k, None)
        t0 = time.monotonic()
        r = subprocess.run(['dpkg-buildpackage', '-b', '-us', '-uc'] + list(extra),
                           cwd=self.tree, capture_output=True, text=True, env=env)
        check(r.returncode == 0, 'dpkg-buildpackage %s: exit %d\n%s\n%s'
              % (' '.join(extra), r.returncode, r.stdout[-6000:], r.stderr[-3000:]))
        log('dpkg-buildpackage -b %s in %.0f s' % (' '.join(extra), time.monotonic() - t0))

    def version(self):
        return subprocess.run(['dpkg-parsechangelog', '-S', 'Version'], cwd=self.tree,
                              capture_output=True, text=True, check=True).stdout.strip()

    def debs(self):
        v = self.version()
        out = []
        for p in PACKAGES:
            found = glob.glob(os.path.join(self.top, '%s_%s_*.deb' % (p, v)))
            check(len(found) == 1, 'one %s %s package: %r' % (p, v, found))
            out += found
        return out

    def build(self):
        self._buildpackage()
        return self.debs()

    def bump(self, suffix='+upgrade1'):
        v = self.version() + suffix
        path = os.path.join(self.tree, 'debian', 'changelog')
        with open(path) as f:
            old = f.read()
        with open(path, 'w') as f:
            f.write('newswire (%s) unstable; urgency=medium\n\n  * An upgrade to test.\n\n'
                    ' -- newswire tests <tests@newswire.invalid>  %s\n\n%s'
                    % (v, time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime()), old))
        self._buildpackage('-nc')
        return self.debs()

    def depends(self):
        """What this version's packages depend on from Debian (first of alternatives)."""
        names = set()
        for deb in self.debs():
            field = subprocess.run(['dpkg-deb', '-f', deb, 'Pre-Depends', 'Depends'],
                                   capture_output=True, text=True, check=True).stdout
            for line in field.splitlines():
                for dep in line.split(':', 1)[1].split(','):
                    name = dep.split('|')[0].split('(')[0].strip().split(':')[0]
                    if name and name not in PACKAGES:
                        names.add(name)
        return names

    def lintian(self):
        """Errors and warnings fail; every info tag is overridden in debian/ with why."""
        changes = glob.glob(os.path.join(self.top, 'newswire_%s_*.changes' % self.version()))
        t0 = time.monotonic()
        r = subprocess.run(['lintian', '--fail-on', 'error,warning,info', '--info',
                            '--no-tag-display-limit'] + changes,
                           capture_output=True, text=True)
        log('lintian in %.0f s' % (time.monotonic() - t0))
        tags = [l for l in r.stdout.splitlines() if l[:2] in ('E:', 'W:', 'I:')]
        check(r.returncode == 0 and not tags, 'lintian: exit %d\n%s%s'
              % (r.returncode, r.stdout, r.stderr))

    def cleanup(self):
        shutil.rmtree(self.top, ignore_errors=True)
