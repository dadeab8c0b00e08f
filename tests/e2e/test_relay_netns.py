"""The relay across hosts (issue 14): an origin, two relays and subscribers, each in a
network namespace of its own (tests/e2e/netns.py), joined by veth links with addresses in
198.18.0.0/15 and speaking tcp:// only between neighbours:

    origin --link-- regional relay --link-- edge relay --link-- subscriber host

- everything arrives at the edge in order, with the origin's epoch, seq and bytes;
- the link between the relays is cut (`ip link set down`) for 10 s while the origin
  publishes, then restored: a gap-filling subscriber at the edge catches up on all of it;
- a late joiner at the edge replays from the edge relay with the origin stopped.
Skips (77) where namespaces are refused. Waits are on events, but the cut lasts 10 s by
design (the outage is the scenario, not a wait).
"""
import contextlib, json, os, subprocess, sys, time

import msgpack

import netns
from nwtest import BIN, Daemon, check, header_article, run, wait_for

LIVE, REPLAY = 5556, 5557


def daemon(host, addr, extra=()):
    d = Daemon(wrap=host.wrap(), endpoint='tcp://%s:%d' % (addr, LIVE),
               args=['--insecure', '--replay', 'tcp://%s:%d' % (addr, REPLAY)] + list(extra))
    d.replay = 'tcp://%s:%d' % (addr, REPLAY)
    return d


def relay_of(host, addr, up, extra=()):
    return daemon(host, addr, ['--upstream', up.endpoint, '--upstream-replay', up.replay]
                  + list(extra))


def publish(d, n, start=1, topic='general'):
    before = d.log().count('debug   published ')
    for i in range(start, start + n):
        d.drop_text('%s-%05d.txt' % (topic, i), header_article('Story %d' % i, Subject=topic))
    d.wait_log('debug   published ', count=before + n, timeout=120)


def sub_at(host, d, count, timeout=120, topic='general'):
    return host.popen([os.path.join(BIN, 'newswire-sub'), '--connect', d.endpoint,
                       '--replay', d.replay, '--since', '1', '--count', str(count),
                       '--timeout', str(timeout), topic],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p, n, who, epoch=None):
    out, err = p.communicate(timeout=180)
    check(p.returncode == 0, '%s exit %s: %s' % (who, p.returncode, err[-2000:]))
    lines = [json.loads(l) for l in out.splitlines()]
    check([l['seq'] for l in lines] == list(range(1, n + 1)), '%s: 1..%d once, in order' % (who, n))
    check(lines[-1]['article']['headline'] == 'Story %d' % n, '%s: the last story' % who)
    if epoch:
        check({l['epoch'] for l in lines} == {epoch}, '%s: the origin\'s epoch' % who)
    return lines


def chain(net):
    o_h, r1_h, r2_h, s_h = (net.host(r) for r in ('origin', 'regional', 'edge', 'subs'))
    net.link(o_h, r1_h)
    net.link(r1_h, r2_h)
    net.link(r2_h, s_h)
    o = daemon(o_h, o_h.addrs[0]).start()
    r1 = relay_of(r1_h, r1_h.addrs[1], o).start()     # serves the edge on its second link
    r1.wait_log('upstream: connected')
    r2 = relay_of(r2_h, r2_h.addrs[1], r1).start()
    r2.wait_log('upstream: connected')
    return (o_h, r1_h, r2_h, s_h), (o, r1, r2)


@contextlib.contextmanager
def subscribed_chain():
    """The chain, each relay's subscription in place upstream; all removed after."""
    net = netns.Net()
    ds = ()
    try:
        hosts, ds = chain(net)
        ds[0].wait_log(" subscribe ''")
        ds[1].wait_log(" subscribe ''")
        yield hosts, ds
    finally:
        for d in reversed(ds):
            d.cleanup()
        net.close()


def test_chain_across_hosts_with_link_cut():
    with subscribed_chain() as (hosts, ds):
        o_h, r1_h, r2_h, s_h = hosts
        o, r1, r2 = ds
        sub = sub_at(s_h, r2, 90)
        r2.wait_log(" subscribe '")
        publish(o, 30)
        epoch = o.log().split('epoch ')[-1].split()[0]
        r2.wait_log('upstream: connected')
        # the link between the two relays goes down for 10 s while the origin publishes
        r1_h.cut(r1_h.ifaces[1])
        t0 = time.monotonic()
        publish(o, 30, start=31)
        wait_for(lambda: any('upstream connected: 60 forwarded' in n for n in r1.notes),
                 'the regional relay has all 60 while the edge is cut off')
        time.sleep(max(0.0, 10 - (time.monotonic() - t0)))
        r1_h.restore(r1_h.ifaces[1])
        publish(o, 30, start=61)
        finish(sub, 90, 'newswire-sub at the edge across a 10 s link cut', epoch)


def test_late_joiner_at_edge_without_origin():
    with subscribed_chain() as (hosts, ds):
        o_h, r1_h, r2_h, s_h = hosts
        o, r1, r2 = ds
        publish(o, 40)
        epoch = o.log().split('epoch ')[-1].split()[0]
        wait_for(lambda: any('upstream connected: 40 forwarded' in n for n in r2.notes),
                 'the edge relay has all 40')
        o.stop()
        r1.stop()                                   # nothing upstream of the edge is left
        finish(sub_at(s_h, r2, 40), 40, 'a late joiner at the edge', epoch)


if __name__ == '__main__':
    run([test_chain_across_hosts_with_link_cut, test_late_joiner_at_edge_without_origin])
