"""End to end: the sample clients over CurveZMQ. newswire-sub (libnewswire's
nw_client_set_curve) and the Python sample connect with a key the daemon admits and a
grant of "telecoms": live they receive telecoms and below only, and through the replay
endpoint (--replay --since 1) the journaled history of telecoms. A key the daemon does not
admit, or a wrong server key, completes no handshake: nothing arrives and --timeout ends
the run with exit status 2.

Absence on the live feed is proven by ordering (see test_security): the subscribers wait
for a marker published after the messages under test.
"""
import json, os, subprocess, sys

from nwtest import BIN, DEADLINE, check, run
from test_security import Client, curve_daemon, publish_and_mark, wait_key_subscribed

SOURCE = os.environ.get('NW_SOURCE', os.path.join(os.path.dirname(__file__), '..', '..'))
PY_SUB = os.path.join(SOURCE, 'clients', 'python', 'newswire_sub.py')


def c_sub(*args):
    return [os.path.join(BIN, 'newswire-sub')] + list(args)


def py_sub(*args):
    return [sys.executable, PY_SUB] + list(args)


def start(cmd):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p, timeout=DEADLINE + 10):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError('subscriber did not exit: %s / %s' % (out, err))
    return p.returncode, [json.loads(line) for line in out.splitlines()], err


def seen(lines):
    return [(m['topic'], m['article']['headline']) for m in lines]


def test_curve_clients_live_replay_and_refusal():
    d = curve_daemon(replay=True)
    procs = []
    control = None
    try:
        admin = d.keys.client('admin', topics='*')
        d.keys.client('alice', topics='telecoms')
        d.keys.client('mallory', topics='telecoms', allowed=False)
        d.start()
        priv = d.keys.private
        alice = os.path.join(priv, 'alice_secret')
        mallory = os.path.join(priv, 'mallory_secret')
        server_file = os.path.join(priv, 'server')
        server_z85 = d.keys.server_public.decode()
        control = Client(d.endpoint, d.keys, admin)
        wait_key_subscribed(d, 'admin')
        # history: telecoms seq 1 and 2 (the marker; each marker differs, as the daemon
        # publishes an article only once); other topics the key must not see
        publish_and_mark(d, control, [('telecoms', 'Early telecoms'), ('sport', 'Early sport'),
                                      ('telecomsx', 'Early neighbour')], marker='Marker one')

        # Usage: half a key pair, or a public certificate in place of the secret one.
        for cmd in (c_sub, py_sub):
            rc, _, err = finish(start(cmd('--connect', d.endpoint, '--curve-cert', alice)))
            check(rc == 1 and 'server-key' in err.replace('server_key', 'server-key'),
                  'half the options: %d %s' % (rc, err))
            rc, _, err = finish(start(cmd('--connect', d.endpoint, '--curve-cert',
                                          os.path.join(priv, 'alice'), '--server-key',
                                          server_z85)))
            check(rc == 1 and 'secret' in err, 'public certificate as client: %d %s' % (rc, err))
            # Z85 has '-' in its alphabet: a key that begins with it is a key, not an option
            # (one server key in 85 does).
            dash_key = '-' + server_z85[1:]
            rc, _, err = finish(start(cmd('--connect', d.endpoint, '--curve-cert',
                                          os.path.join(priv, 'alice'), '--server-key',
                                          dash_key)))
            check(rc == 1 and 'secret' in err, 'a key beginning with -: %d %s' % (rc, err))

        # Live, subscribed to everything: the grant narrows it to telecoms and below.
        live = [start(c_sub('--connect', d.endpoint, '--curve-cert', alice, '--server-key',
                            server_file, '--count', '3', '--timeout', str(int(DEADLINE)))),
                start(py_sub('--connect', d.endpoint, '--curve-cert', alice, '--server-key',
                             server_z85, '--count', '3', '--timeout', str(int(DEADLINE))))]
        procs += live
        wait_key_subscribed(d, 'alice', count=2)
        publish_and_mark(d, control, [('sport', 'Cup final'), ('telecomsx', 'Neighbour news'),
                                      ('telecoms.5g', 'Masts go up'),
                                      ('geopolitics', 'Summit opens'),
                                      ('telecoms', 'Operators merge')], marker='Marker two')
        want = [('telecoms.5g', 'Masts go up'), ('telecoms', 'Operators merge'),
                ('telecoms', 'Marker two')]
        for name, p in zip(('newswire-sub', 'newswire_sub.py'), live):
            rc, lines, err = finish(p)
            check(rc == 0, "%s live: exit %d: %s %r" % (name, rc, err, seen(lines)))
            check(seen(lines) == want, '%s live: %r' % (name, seen(lines)))

        # Replay through CURVE: the whole history of telecoms from seq 1.
        history = [('telecoms', 'Early telecoms'), ('telecoms', 'Marker one'),
                   ('telecoms', 'Operators merge'), ('telecoms', 'Marker two')]
        for name, cmd, key in (('newswire-sub', c_sub, server_z85),
                               ('newswire_sub.py', py_sub, server_file)):
            rc, lines, err = finish(start(cmd(
                '--connect', d.endpoint, '--replay', d.replay_endpoint, '--since', '1',
                '--curve-cert', alice, '--server-key', key, '--count', '4',
                '--timeout', str(int(DEADLINE)), 'telecoms')))
            check(rc == 0, '%s replay: exit %d: %s' % (name, rc, err))
            check(seen(lines) == history and [m['seq'] for m in lines] == [1, 2, 3, 4],
                  '%s replay: %r' % (name, [(m['seq'], m['article']['headline'])
                                            for m in lines]))

        # Refused: a key not in --clients, and a server key that is not the daemon's.
        # Articles are published while they wait; none may arrive.
        wrong_server = d.keys.client('other-server', allowed=False)[0].decode()
        refused = [start(c_sub('--connect', d.endpoint, '--curve-cert', mallory,
                               '--server-key', server_file, '--count', '1', '--timeout', '3')),
                   start(c_sub('--connect', d.endpoint, '--replay', d.replay_endpoint,
                               '--since', '1', '--curve-cert', mallory, '--server-key',
                               server_z85, '--count', '1', '--timeout', '3', 'telecoms')),
                   start(c_sub('--connect', d.endpoint, '--curve-cert', alice,
                               '--server-key', wrong_server, '--count', '1', '--timeout', '3')),
                   start(py_sub('--connect', d.endpoint, '--replay', d.replay_endpoint,
                                '--since', '1', '--curve-cert', mallory, '--server-key',
                                server_file, '--count', '1', '--timeout', '3', 'telecoms'))]
        procs += refused
        admitted = d.log().count('key alice: subscribe')
        publish_and_mark(d, control, [('telecoms', 'While refused')], marker='Marker three')
        for i, p in enumerate(refused):
            rc, lines, err = finish(p)
            check(rc == 2 and not lines, 'refused client %d: exit %d, %r %s' % (i, rc, lines, err))
        check(d.log().count('key alice: subscribe') == admitted,
              'the wrong server key never got alice a subscription')
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
        if control:
            control.close()
        d.cleanup()


if __name__ == '__main__':
    run([test_curve_clients_live_replay_and_refusal])
