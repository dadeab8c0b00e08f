"""End to end, across hosts: the network-namespace harness (tests/e2e/netns.py) itself.
Two hosts on a veth pair: a newswired in one, newswire-sub in the other over tcp on
198.18.1.1; the link cut and restored; nothing routes off the test network; and the
harness removes its namespaces on a normal exit, on SIGTERM, and (through the next run's
sweep) after a kill -9."""
import json, os, signal, subprocess, sys, textwrap, time

import netns
from nwtest import BIN, Daemon, check, header_article, run, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))


def sub_cmd(endpoint, *args):
    return [os.path.join(BIN, 'newswire-sub'), '--connect', endpoint] + list(args)


def start_sub(d, host, cmd, subscriptions=1):
    """newswire-sub in host, known to be subscribed once the daemon logged it."""
    before = d.log().count(" subscribe '")
    p = host.popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        d.wait_log(" subscribe '", count=before + subscriptions)
    except Exception:
        p.kill()
        out, errs = p.communicate()
        raise AssertionError('subscriber never subscribed: %s %s' % (out, errs))
    return p


def finish(p, timeout=30):
    try:
        out, errs = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, errs = p.communicate()
        raise AssertionError('subscriber did not finish: %s / %s' % (out, errs))
    return p.returncode, [json.loads(l) for l in out.splitlines()], errs


def origin(net_host, replay=False):
    args = ['--insecure']
    if replay:
        args += ['--replay', 'tcp://%s:5557' % net_host.addr]
    return Daemon(wrap=net_host.wrap(), endpoint='tcp://%s:5556' % net_host.addr, args=args)


def test_daemon_to_subscriber_across_a_veth():
    net = netns.Net()
    d = None
    try:
        a, b = net.host('origin'), net.host('sub')
        net.link(a, b)
        check(a.addr == '198.18.1.1' and b.addr == '198.18.1.2', 'addresses %s %s' % (a.addr, b.addr))
        d = origin(a).start()
        # the daemon really is in a: its process's network namespace is a's, not ours
        check(os.readlink('/proc/%d/ns/net' % d.proc.pid) != os.readlink('/proc/self/ns/net'),
              'newswired runs in a namespace of its own')
        p = start_sub(d, b, sub_cmd(d.endpoint, '--count', '3', '--timeout', '30'))
        for i in range(3):
            d.drop_text('a%d.txt' % i, header_article('Across hosts %d' % i, Subject='telecoms'))
        rc, lines, errs = finish(p)
        check(rc == 0, 'newswire-sub exit 0: %r %s' % (rc, errs))
        check([(m['topic'], m['seq']) for m in lines] == [('telecoms', 1), ('telecoms', 2),
                                                          ('telecoms', 3)],
              'three in order: %r' % [(m['topic'], m['seq']) for m in lines])
        check(lines[0]['article']['headline'] == 'Across hosts 0', 'body %r' % lines[0])
    finally:
        if d:
            d.cleanup()
        net.close()


def test_nothing_routes_off_the_test_network():
    net = netns.Net()
    try:
        a, b = net.host('origin'), net.host('sub')
        net.link(a, b)
        # no default route: the kernel refuses any other destination before sending
        for dest in ('1.1.1.1', '10.0.0.1', '192.168.1.1', '127.0.0.1'):
            r = a.ip('route', 'get', dest, check=False)
            if dest == '127.0.0.1':
                check(r.returncode == 0 and 'dev lo' in r.stdout, 'loopback stays: %r' % r.stdout)
            else:
                check(r.returncode != 0 and 'unreachable' in r.stderr,
                      '%s unreachable from the namespace: %r %r' % (dest, r.stdout, r.stderr))
        check(a.ip('route', 'get', b.addr).returncode == 0, 'the peer is reachable')
        links = a.ip('-o', 'link', 'show').stdout
        check(sorted(l.split(':')[1].strip().split('@')[0] for l in links.splitlines())
              == ['eth0', 'lo'], 'only lo and the veth: %r' % links)
    finally:
        net.close()


def test_link_cut_and_restored():
    net = netns.Net()
    d = None
    try:
        a, b = net.host('origin'), net.host('sub')
        net.link(a, b)
        d = origin(a, replay=True).start()
        p = start_sub(d, b, sub_cmd(d.endpoint, '--replay', 'tcp://%s:5557' % a.addr,
                                    '--count', '6', '--timeout', '60', 'telecoms'))
        d.drop_text('before.txt', header_article('Before the cut', Subject='telecoms'))
        d.wait_log('published before.txt ')
        b.cut()
        check(not b.link_up(), 'b is down')
        # down means down: nothing from b reaches a while it is cut
        probe = b.run([sys.executable, '-c', textwrap.dedent('''
            import socket, sys
            s = socket.socket()
            try:
                s.connect(('%s', 5556))
            except OSError as e:
                sys.exit(0 if e.errno == 101 else 1)   # ENETUNREACH
            sys.exit(2)''' % a.addr)], capture_output=True)
        check(probe.returncode == 0, 'connecting from a cut host fails at once: %r' % probe)
        for i in range(5):
            d.drop_text('cut%d.txt' % i, header_article('During the cut %d' % i, Subject='telecoms'))
        for i in range(5):
            d.wait_log('published cut%d.txt ' % i)
        b.restore()
        check(b.link_up(), 'b is up again')
        rc, lines, errs = finish(p, timeout=60)
        check(rc == 0, 'newswire-sub got all six after the restore: %r %s %r' % (rc, errs, lines))
        check([m['seq'] for m in lines] == [1, 2, 3, 4, 5, 6], 'in order: %r' % [m['seq'] for m in lines])
    finally:
        if d:
            d.cleanup()
        net.close()


CHILD = '''
import os, signal, sys, time
sys.path.insert(0, %r)
import netns
net = netns.Net()
h = net.host('child')
print(h.name, flush=True)
if sys.argv[1] == 'exit':
    sys.exit(0)
time.sleep(120)
'''


def child_net(how):
    p = subprocess.Popen([sys.executable, '-c', CHILD % HERE, how], stdout=subprocess.PIPE,
                         text=True, env=dict(os.environ))
    name = p.stdout.readline().strip()
    check(name.startswith(netns.PREFIX + '-%d-' % p.pid), 'named for its run: %r' % name)
    return p, name


def test_namespaces_go_on_exit_signal_and_kill():
    if netns.refused():
        raise netns.nwtest.Skip(netns.refused())
    p, name = child_net('exit')
    p.wait(20)
    check(name not in netns.namespaces(), 'removed at exit: %s' % name)

    p, name = child_net('wait')
    check(name in netns.namespaces(), '%s exists while its run lives' % name)
    check(name not in netns.sweep(), 'a live run is never swept')
    p.send_signal(signal.SIGTERM)
    p.wait(20)
    check(name not in netns.namespaces(), 'removed on SIGTERM: %s' % name)

    p, name = child_net('wait')
    sleeper = subprocess.Popen(netns.IP.split() + ['netns', 'exec', name, 'sleep', '300'])
    wait_for(lambda: str(sleeper.pid) in netns.ip('netns', 'pids', name).stdout.split(),
             'a process inside ' + name)
    p.kill()
    p.wait(20)
    check(name in netns.namespaces(), 'kill -9 leaves %s behind' % name)
    check(name in netns.sweep(), 'the sweep finds it: its run is gone')
    check(name not in netns.namespaces(), 'and removes it')
    check(sleeper.wait(20) == -signal.SIGKILL, 'with what still ran inside')


if __name__ == '__main__':
    run([test_daemon_to_subscriber_across_a_veth, test_nothing_routes_off_the_test_network,
         test_link_cut_and_restored, test_namespaces_go_on_exit_signal_and_kill])
