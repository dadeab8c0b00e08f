"""nspawn: a real systemd as PID 1 for the system tests, on a host whose own PID 1 is not
systemd. A Debian 12 root made by debootstrap is cached outside the repository
(NW_ROOT_CACHE, default /var/cache/newswire-test/) and each container boots a throw-away
overlay of it, so nothing a test does reaches the cache.

The container is started as issue 12 found it must be here:
- from its own sub-cgroup (NAME under /sys/fs/cgroup/unified and /sys/fs/cgroup/systemd
  on a hybrid host, under /sys/fs/cgroup on a unified one), with --keep-unit and
  --register=no: no D-Bus scope is asked for;
- SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1: a pure cgroup2 tree inside, where systemd attaches
  the BPF programs of IPAddressDeny= and DevicePolicy=;
- --system-call-filter=bpf, or those are silently not enforced;
- --private-network (loopback only) and --link-journal=no.
Commands run inside with `nsenter -t <container PID 1> -a`, in a clean environment.

Data enters as file writes into the overlay (Container.write) and commands
(Container.run / Container.popen); it leaves as their output.
"""
import fcntl, hashlib, os, re, shutil, signal, subprocess, tempfile, time

CACHE = os.environ.get('NW_ROOT_CACHE', '/var/cache/newswire-test')
SUITE = 'bookworm'
# What every root has besides what the project's programs link (root_packages adds
# those): systemd as PID 1, Debian's Python with the modules the Python client needs
# (python3-zmq's python3-cffi-backend-api-* are virtual, which debootstrap does not
# resolve: the package that provides them is named).
# libnewswire-dev depends on the -dev packages its newswire.pc names (Requires.private).
BASE_PACKAGES = ['systemd', 'systemd-sysv', 'python3', 'python3-zmq', 'python3-cffi-backend',
                 'python3-msgpack', 'libczmq-dev', 'libmsgpack-dev', 'libzmq3-dev']
# Masked in the root: timers and a getty that only slow the boot and add noise.
MASKED = ['apt-daily.timer', 'apt-daily-upgrade.timer', 'dpkg-db-backup.timer',
          'e2scrub_all.timer', 'fstrim.timer', 'console-getty.service',
          'systemd-tmpfiles-clean.timer']
ROOT_RECIPE = 1          # bump when the way a root is prepared changes
CLEAN_ENV = {'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
             'LANG': 'C.UTF-8', 'SYSTEMD_COLORS': '0', 'SYSTEMD_PAGER': '',
             'SYSTEMD_LESS': '', 'DEBIAN_FRONTEND': 'noninteractive', 'HOME': '/root',
             'TERM': 'dumb'}


class Unavailable(Exception):
    """nspawn cannot run on this host (the reason says why): the test skips."""


def log(msg):
    print('[%s] %s' % (time.strftime('%H:%M:%S'), msg), flush=True)


def cgroup_parents():
    """The cgroup hierarchies the container's sub-cgroups go in."""
    fs = '/sys/fs/cgroup'
    if os.path.exists(os.path.join(fs, 'cgroup.controllers')):
        return [fs]                                   # unified host
    unified = os.path.join(fs, 'unified')
    if os.path.exists(os.path.join(unified, 'cgroup.controllers')):
        named = os.path.join(fs, 'systemd')
        return [unified] + ([named] if os.path.isdir(named) else [])
    return []


def unavailable_reason():
    if os.geteuid() != 0:
        return 'not root: systemd-nspawn needs root'
    for tool in ('systemd-nspawn', 'nsenter', 'debootstrap'):
        if not shutil.which(tool):
            return '%s is not installed (.ci/deps installs it on Debian)' % tool
    if not cgroup_parents():
        return 'no cgroup2 hierarchy on this host for the container\'s systemd'
    return None


def mirror():
    """The Debian mirror this host's apt sources use for the suite (the one reachable)."""
    texts = []
    for path in ['/etc/apt/sources.list'] + sorted(
            os.path.join('/etc/apt/sources.list.d', f)
            for f in (os.listdir('/etc/apt/sources.list.d')
                      if os.path.isdir('/etc/apt/sources.list.d') else [])):
        try:
            with open(path) as f:
                texts.append(f.read())
        except OSError:
            pass
    for text in texts:
        for stanza in re.split(r'\n\s*\n', text):           # deb822 .sources
            uris = re.search(r'^URIs:\s*(\S+)', stanza, re.M)
            suites = re.search(r'^Suites:\s*(.+)$', stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split() and 'security' not in uris.group(1):
                return uris.group(1)
        for line in text.splitlines():                       # one-line format
            m = re.match(r'^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+' + SUITE + r'\s', line)
            if m:
                return m.group(1)
    return 'http://deb.debian.org/debian'


def host_packages_of(files, ours):
    """The Debian packages on this host that own the shared libraries FILES link,
    but for those in the folder OURS (the project's own build)."""
    libs = set()
    for f in files:
        out = subprocess.run(['ldd', f], capture_output=True, text=True).stdout
        libs |= {l for l in re.findall(r'=>\s*(/\S+)', out)
                 if not os.path.realpath(l).startswith(os.path.realpath(ours) + '/')}
    # Debian 12 is /usr-merged but dpkg knows each file under one of its two names:
    # ask for both, all in one dpkg-query (each call reads the whole file list).
    names = {}
    for lib in libs:
        for n in {lib, os.path.realpath(lib)}:
            for alt in (n, n[4:] if n.startswith('/usr/') else '/usr' + n):
                names[alt] = lib
    r = subprocess.run(['dpkg-query', '-S'] + sorted(names), capture_output=True, text=True)
    pkgs, owned = set(), set()
    for line in r.stdout.splitlines():
        pkg, _, path = line.partition(': ')
        if path in names:
            pkgs.add(pkg.split(':')[0].strip())
            owned.add(names[path])
    for lib in sorted(libs - owned):
        if not re.search(r'/(libasan|libubsan)', lib):
            raise RuntimeError('no Debian package owns %s (linked by %s)' % (lib, files))
    return pkgs


def root_packages(binaries, ours):
    return sorted(set(BASE_PACKAGES) | host_packages_of(binaries, ours))


def ensure_root(packages):
    """The cached root with PACKAGES, debootstrapped once (about a minute or two)."""
    key = hashlib.sha256(('%s %d %s' % (SUITE, ROOT_RECIPE, ' '.join(sorted(packages))))
                         .encode()).hexdigest()[:16]
    os.makedirs(CACHE, exist_ok=True)
    root = os.path.join(CACHE, 'root-' + key)
    if os.path.exists(os.path.join(root, '.newswire-root')):
        return root
    with open(os.path.join(CACHE, '.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)          # one builder; the others wait for it
        if os.path.exists(os.path.join(root, '.newswire-root')):
            return root
        work = tempfile.mkdtemp(prefix='building-', dir=CACHE)
        try:
            log('debootstrap %s into %s (cached for later runs): %s'
                % (SUITE, root, ' '.join(packages)))
            t0 = time.monotonic()
            r = subprocess.run(['debootstrap', '--variant=minbase',
                                '--include=' + ','.join(sorted(packages)),
                                SUITE, work, mirror()],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError('debootstrap failed:\n' + r.stdout[-3000:] + r.stderr[-3000:])
            for unit in MASKED:
                link = os.path.join(work, 'etc/systemd/system', unit)
                if not os.path.lexists(link):
                    os.symlink('/dev/null', link)
            for f in ('etc/hostname', 'etc/machine-id'):
                if os.path.exists(os.path.join(work, f)):
                    os.unlink(os.path.join(work, f))
            with open(os.path.join(work, '.newswire-root'), 'w') as f:
                f.write(' '.join(packages) + '\n')
            if os.path.exists(root):
                shutil.rmtree(root)
            os.rename(work, root)
            log('root ready in %.0f s' % (time.monotonic() - t0))
        finally:
            if os.path.exists(work):
                shutil.rmtree(work, ignore_errors=True)
    return root


class Container:
    """One booted container on an overlay of ROOT; use as a context manager."""

    def __init__(self, root, name=None):
        self.root = root
        self.name = name or 'nwtest%d%s' % (os.getpid(), os.urandom(2).hex())
        self.dir = tempfile.mkdtemp(prefix='nw-nspawn-')
        self.merged = os.path.join(self.dir, 'root')
        self.cgroups = [os.path.join(p, self.name) for p in cgroup_parents()]
        self.proc = None
        self.pid1 = None
        self.mounted = False

    def __enter__(self):
        try:
            self.boot()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc):
        self.shutdown()

    def boot(self, timeout=90):
        for d in ('upper', 'work', 'root'):
            os.makedirs(os.path.join(self.dir, d))
        r = subprocess.run(['mount', '-t', 'overlay', 'overlay', '-o',
                            'lowerdir=%s,upperdir=%s/upper,workdir=%s/work'
                            % (self.root, self.dir, self.dir), self.merged],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Unavailable('cannot mount an overlay for the container: ' + r.stderr.strip())
        self.mounted = True
        for cg in self.cgroups:
            os.makedirs(cg, exist_ok=True)
        cgroups = self.cgroups

        def into_own_cgroup():
            for cg in cgroups:
                with open(os.path.join(cg, 'cgroup.procs'), 'w') as f:
                    f.write(str(os.getpid()))

        self.console = open(os.path.join(self.dir, 'console.log'), 'wb')
        env = dict(CLEAN_ENV, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY='1')
        self.proc = subprocess.Popen(
            ['systemd-nspawn', '--quiet', '--register=no', '--keep-unit',
             '--system-call-filter=bpf', '--private-network', '--link-journal=no',
             '--console=read-only', '--machine=' + self.name, '--directory=' + self.merged,
             '--boot'],
            stdin=subprocess.DEVNULL, stdout=self.console, stderr=subprocess.STDOUT,
            env=env, preexec_fn=into_own_cgroup)
        # systemd moves itself into init.scope of the payload's cgroup2 tree.
        procs = os.path.join(self.cgroups[0], 'payload', 'init.scope', 'cgroup.procs')
        end = time.monotonic() + timeout
        while self.pid1 is None:
            if self.proc.poll() is not None:
                raise RuntimeError('systemd-nspawn exited %d:\n%s' % (self.proc.returncode,
                                                                     self.console_text()))
            try:
                with open(procs) as f:
                    pids = f.read().split()
                if pids:
                    self.pid1 = int(pids[0])
            except OSError:
                pass
            if time.monotonic() > end:
                raise RuntimeError('the container\'s systemd did not start:\n' + self.console_text())
            time.sleep(0.02)
        # Until systemd listens on its private socket, systemctl fails at once: ask again.
        state = ''
        while state not in ('running', 'degraded', 'maintenance', 'stopping', 'offline'):
            if time.monotonic() > end:
                break
            r = self.run(['systemctl', 'is-system-running', '--wait'], check=False,
                         timeout=timeout)
            state = r.stdout.strip()
            if not state:
                time.sleep(0.05)
        if state not in ('running', 'degraded'):
            raise RuntimeError('container state %r:\n%s' % (state, self.console_text()))
        if state == 'degraded':
            failed = self.run(['systemctl', '--failed', '--no-legend'], check=False).stdout
            log('container boots degraded: ' + failed.strip())

    def console_text(self):
        try:
            with open(os.path.join(self.dir, 'console.log'), 'rb') as f:
                return f.read()[-4000:].decode(errors='replace')
        except OSError:
            return ''

    def cmd(self, argv):
        return ['nsenter', '-t', str(self.pid1), '-a', '--'] + list(argv)

    def run(self, argv, check=True, timeout=120, input=None):
        r = subprocess.run(self.cmd(argv), capture_output=True, text=True, env=CLEAN_ENV,
                           timeout=timeout, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and r.returncode != 0:
            raise AssertionError('in the container: %s: exit %d\n%s%s'
                                 % (' '.join(argv), r.returncode, r.stdout, r.stderr))
        return r

    def sh(self, script, **kw):
        return self.run(['/bin/sh', '-ec', script], **kw)

    def popen(self, argv, **kw):
        return subprocess.Popen(self.cmd(argv), env=CLEAN_ENV, stdin=subprocess.DEVNULL, **kw)

    def net(self, argv):
        """A host program (e.g. ip) in the container's network namespace only."""
        return subprocess.run(['nsenter', '-t', str(self.pid1), '-n', '--'] + list(argv),
                              capture_output=True, text=True, check=True, env=CLEAN_ENV)

    def path(self, p):
        return os.path.join(self.merged, p.lstrip('/'))

    def write(self, p, text, mode=0o644):
        full = self.path(p)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, 'w') as f:
            f.write(text)
        os.chmod(full, mode)

    def shutdown(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)        # nspawn powers the container off
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.mounted:
            if subprocess.run(['umount', self.merged]).returncode != 0:
                subprocess.run(['umount', '-l', self.merged])
            self.mounted = False
        for cg in self.cgroups:
            for d, _, _ in os.walk(cg, topdown=False):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        if getattr(self, 'console', None):
            self.console.close()
        shutil.rmtree(self.dir, ignore_errors=True)
