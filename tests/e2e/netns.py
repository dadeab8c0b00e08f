"""netns: hosts for end-to-end tests across machines, made of Linux network namespaces.

A test builds a small network of its own: each host is a namespace (`ip netns add`),
joined to the others by veth pairs, either directly (link) or through a bridge that
lives in a namespace of its own (segment: one broadcast domain, as a LAN switch). Every
interface is created inside a namespace (`ip -n NS link add ... netns OTHER`), never in
the machine's own one, and every address is in 198.18.0.0/15 (RFC 2544's range for such
tests): nothing a test sends can reach anything but these namespaces.

Names are unique per run, so several test runs share the machine: every namespace is
named PREFIX-PID-START-N-ROLE, PID and START (the kernel's start time of the creating
process, /proc/PID/stat field 22) naming the run. Everything is removed at exit (atexit,
and SIGTERM/SIGINT/SIGHUP turned into an exit), with the processes still inside; a run
killed with -9 leaves its namespaces behind, and the next run's sweep() removes every
namespace of the prefix whose creator is no longer alive (same PID and same start time),
so a reused PID does not protect a dead run's leftovers, and a live run's are never
touched.

    net = netns.Net()                      # raises nwtest.Skip where namespaces are refused
    a, b = net.host('origin'), net.host('sub')
    net.link(a, b)                         # a.addr / b.addr: 198.18.1.1 and 198.18.1.2
    d = Daemon(wrap=a.wrap(), endpoint='tcp://%s:5556' % a.addr, args=['--insecure'])
    a.cut(); a.restore()                   # the host's interface down, then up again

Processes run inside a host with host.wrap() (a command prefix: `ip netns exec NAME`,
which execs the command, so the process started is the command itself) or host.popen().
"""
import atexit, os, re, shutil, signal, subprocess, sys, threading

import nwtest

PREFIX = 'nwt'
NAME_RE = re.compile(r'^%s-(\d+)-(\d+)-' % PREFIX)
IP = shutil.which('ip') or '/usr/sbin/ip'
SUBNET = '198.18'          # 198.18.0.0/15: segment k is 198.18.k.0/24


def ip(*args, check=True):
    """Run `ip ARGS`; the reason on failure is ip's own message."""
    p = subprocess.run([IP] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    if check and p.returncode != 0:
        raise nwtest.Failure('ip %s: %s' % (' '.join(args), p.stderr.strip() or p.returncode))
    return p


def start_time(pid):
    """The kernel's start time of pid (clock ticks since boot), or None if it is gone."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    return stat[stat.rindex(')') + 2:].split()[19]


def namespaces():
    out = ip('netns', 'list', check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def kill_inside(name):
    """SIGKILL every process inside namespace name (ours: only tests put any there)."""
    out = ip('netns', 'pids', name, check=False).stdout
    for pid in out.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def remove(name):
    kill_inside(name)
    ip('netns', 'del', name, check=False)


def sweep():
    """Remove the namespaces of runs that are gone; returns their names."""
    gone = []
    for name in namespaces():
        m = NAME_RE.match(name)
        if m and start_time(int(m.group(1))) != m.group(2):
            remove(name)
            gone.append(name)
    return gone


def refused():
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return 'network namespaces need root (running as uid %d)' % os.geteuid()
    if not os.path.exists(IP):
        return "no 'ip' command (Debian's iproute2)"
    probe = '%s-%d-%s-probe' % (PREFIX, os.getpid(), start_time(os.getpid()))
    p = ip('netns', 'add', probe, check=False)
    if p.returncode != 0:
        return 'ip netns add refused: ' + p.stderr.strip()
    ip('netns', 'del', probe, check=False)
    return None


class Host:
    """One network namespace: a host of the test network."""

    def __init__(self, net, name, role):
        self.net, self.name, self.role = net, name, role
        self.ifaces = []           # interfaces of this host, in the order made
        self.addrs = []            # their addresses, same order
        ip('netns', 'add', name)
        ip('-n', name, 'link', 'set', 'lo', 'up')

    @property
    def addr(self):
        """The host's first address (on its first link or segment)."""
        return self.addrs[0]

    @property
    def iface(self):
        return self.ifaces[0]

    def wrap(self):
        """Command prefix running a command in this host (ip execs it: same process)."""
        return [IP, 'netns', 'exec', self.name]

    def popen(self, cmd, **kw):
        return subprocess.Popen(self.wrap() + list(cmd), **kw)

    def run(self, cmd, **kw):
        return subprocess.run(self.wrap() + list(cmd), **kw)

    def ip(self, *args, check=True):
        return ip('-n', self.name, *args, check=check)

    def cut(self, iface=None):
        """Take the host's interface down: nothing passes until restore()."""
        self.ip('link', 'set', iface or self.iface, 'down')

    def restore(self, iface=None):
        iface = iface or self.iface
        self.ip('link', 'set', iface, 'up')
        # a link going down takes its routes along; the kernel gives back the subnet's,
        # the multicast one is ours to put back
        if iface == self.iface:
            self.ip('route', 'replace', '224.0.0.0/4', 'dev', iface)

    def joined(self, group, iface=None):
        """Has the kernel of this host joined multicast group on iface (IGMP membership,
        as a receiver's socket asked)? From then on the group's packets reach it."""
        out = self.ip('maddr', 'show', 'dev', iface or self.iface).stdout
        return any(line.split()[1:2] == [group] for line in out.splitlines()
                   if line.strip().startswith('inet '))

    def link_up(self, iface=None):
        out = self.ip('-o', 'link', 'show', iface or self.iface).stdout
        return ',UP' in out or '<UP' in out

    def __repr__(self):
        return 'Host(%s)' % self.name


class Net:
    """A test network; everything in it is removed by close() and at exit."""

    _live = []
    _hooked = False

    def __init__(self):
        why = refused()
        if why:
            raise nwtest.Skip(why)
        sweep()
        self.run_tag = '%s-%d-%s' % (PREFIX, os.getpid(), start_time(os.getpid()))
        self.hosts = []
        self.segments = 0
        self.lock = threading.Lock()
        Net._live.append(self)
        Net._hook()

    @classmethod
    def _hook(cls):
        if cls._hooked:
            return
        cls._hooked = True
        atexit.register(cls._close_all)
        # ctest and a user's ^C stop a test with a signal: turn it into an exit so atexit
        # runs (SIGKILL cannot be caught: the next run's sweep removes what it leaves).
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
                signal.signal(sig, lambda s, f: sys.exit(128 + s))

    @classmethod
    def _close_all(cls):
        for net in list(cls._live):
            net.close()

    def _name(self, role):
        with self.lock:
            n = len(self.hosts)
        return '%s-%d-%s' % (self.run_tag, n, role)

    def host(self, role):
        """A new host named for its role ([a-z0-9], for reading `ip netns list`)."""
        h = Host(self, self._name(role), role)
        self.hosts.append(h)
        return h

    def _veth(self, a, a_if, b, b_if):
        # made inside a, its peer straight into b: never an interface in the root namespace
        ip('-n', a.name, 'link', 'add', a_if, 'type', 'veth', 'peer', 'name', b_if,
           'netns', b.name)

    def _address(self, h, iface, segment, hostnum):
        addr = '%s.%d.%d' % (SUBNET, segment, hostnum)
        h.ip('addr', 'add', addr + '/24', 'dev', iface)
        h.ip('link', 'set', iface, 'multicast', 'on', 'up')
        # multicast leaves through this interface, the host's only one to the test net
        if not h.ifaces:
            h.ip('route', 'replace', '224.0.0.0/4', 'dev', iface)
        h.ifaces.append(iface)
        h.addrs.append(addr)
        return addr

    def link(self, a, b):
        """A veth pair between hosts a and b: a segment of two, 198.18.K.1 and .2."""
        self.segments += 1
        k = self.segments
        a_if, b_if = 'eth%d' % len(a.ifaces), 'eth%d' % len(b.ifaces)
        self._veth(a, a_if, b, b_if)
        self._address(a, a_if, k, 1)
        self._address(b, b_if, k, 2)
        return k

    def segment(self, *hosts):
        """One bridge (in a namespace of its own) joining hosts: 198.18.K.1, .2, ..."""
        self.segments += 1
        k = self.segments
        hub = self.host('hub%d' % k)
        # a plain switch: it floods multicast to every port instead of learning members
        # from IGMP (with no querier on the segment, what snooping learns is a guess)
        hub.ip('link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0')
        hub.ip('link', 'set', 'br0', 'up')
        for i, h in enumerate(hosts):
            port, h_if = 'p%d' % i, 'eth%d' % len(h.ifaces)
            self._veth(hub, port, h, h_if)
            hub.ip('link', 'set', port, 'master', 'br0')
            hub.ip('link', 'set', port, 'up')
            self._address(h, h_if, k, i + 1)
        return k

    def close(self):
        """Remove every namespace of this network (and what still runs in it)."""
        for h in reversed(self.hosts):
            remove(h.name)
        self.hosts = []
        if self in Net._live:
            Net._live.remove(self)

    def names(self):
        return [h.name for h in self.hosts]
