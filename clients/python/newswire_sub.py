#!/usr/bin/python3
"""newswire_sub: a small newswire subscriber in Python, written from the wire format alone.

Every newswire message is two ZeroMQ frames: the topic followed by one ".", then a
MessagePack map (v, topic, seq, epoch, id, sent, source{file, format[, encoding]},
article{...}).
ZeroMQ filters subscriptions by raw byte prefix, so subscribing to S means the prefix
S + "." (whole levels: never "telecomsx" for "telecoms"); the protocol's rule is still
applied on receipt as a defence: S matches topic T iff S == "" or T == S or T starts
with S + ".". It tracks (epoch, last seq) per topic to report gaps and drop duplicates.

With a replay endpoint (the daemon's --replay; section 8 of the specification) gaps are filled from
the daemon's journal instead of reported: the topic's live messages are held while the
missing seqs are streamed (one stream at a time, with credit), so each article comes
once and in seq order per topic. --since/--last replay exactly the named topics first.

With CurveZMQ (the daemon's --curve-secret) both sockets authenticate with a client
certificate (newswire-keygen's PATH_secret, CZMQ's zcert text) and the daemon's public
key (Z85, or its public certificate file).

A live endpoint may be the daemon's multicast group, epgm://INTERFACE;GROUP:PORT (no
CURVE there): the interface is resolved here, topics are filtered here, and with a replay
endpoint what PGM lost is fetched like any gap.

As a program it prints one JSON object per article:
    /usr/bin/python3 newswire_sub.py --connect tcp://127.0.0.1:5556 --count 10 telecoms
    /usr/bin/python3 newswire_sub.py --connect ... --replay tcp://127.0.0.1:5557 --since 1 telecoms
    /usr/bin/python3 newswire_sub.py --connect ... --curve-cert alice_secret --server-key server
As a module:
    sub = Subscriber(["tcp://127.0.0.1:5556"], ["telecoms"])
    msg = sub.recv(timeout=5.0)    # a dict, or None on timeout
Needs Debian's python3-zmq and python3-msgpack.
"""
import argparse
import collections
import json
import os
import re
import sys
import time

import msgpack
import zmq
from zmq.utils.monitor import recv_monitor_message

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5556"
MAX_MESSAGE = 16 * 1024 * 1024 + 64 * 1024
TOPIC_RE = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)*$")
TOPIC_MAX = 255


HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX40 = re.compile(r"^[0-9a-f]{40}$")
RFC3339 = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
                     r"T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?Z$")
MAX_DEPTH, MAX_OBJECTS, MAX_SHORT, MAX_SUBJECTS = 8, 65536, 4096, 64
LONG_KEYS = ("description_text", "body_text")   # strings bounded only by the message size


EPGM_RE = re.compile(r"^epgm://([^;]{1,40});(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$")
SIOCGIFFLAGS, SIOCGIFADDR, IFF_LOOPBACK, IFF_MULTICAST = 0x8913, 0x8915, 0x8, 0x1000


def resolve_epgm(endpoint):
    """A multicast endpoint epgm://IFACE;GROUP:PORT with IFACE given as its IPv4 address,
    as the daemon and libnewswire resolve it (proto/nw_epgm.h): OpenPGM would look a name
    up in DNS first, and libzmq aborts when it cannot make the PGM socket. ValueError with
    the reason for what PGM could not use."""
    import fcntl, ipaddress, socket, struct
    m = EPGM_RE.match(endpoint)
    if not m:
        raise ValueError("%s: expected epgm://INTERFACE;GROUP:PORT" % endpoint)
    iface, group, port = m.groups()
    try:
        if not ipaddress.IPv4Address(group).is_multicast:
            raise ValueError
    except ValueError:
        raise ValueError("%s: the group must be an IPv4 multicast address" % endpoint)
    if not 1 <= int(port) <= 65535:
        raise ValueError("%s: the port must be 1 to 65535" % endpoint)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _, name in socket.if_nameindex():
            req = struct.pack("256s", name.encode()[:15])
            try:
                addr = socket.inet_ntoa(fcntl.ioctl(probe, SIOCGIFADDR, req)[20:24])
            except OSError:
                continue      # no IPv4 address
            if iface not in (name, addr):
                continue
            flags = struct.unpack("H", fcntl.ioctl(probe, SIOCGIFFLAGS, req)[16:18])[0]
            if flags & IFF_LOOPBACK:
                raise ValueError("%s: interface %s is loopback" % (endpoint, name))
            if not flags & IFF_MULTICAST:
                raise ValueError("%s: interface %s has multicast off" % (endpoint, name))
            return "epgm://%s;%s:%s" % (addr, group, port)
    finally:
        probe.close()
    raise ValueError("%s: no interface %s with an IPv4 address" % (endpoint, iface))


def topic_valid(topic):
    """A topic name: lowercase [a-z0-9-] levels joined by '.', at most 255 bytes."""
    return len(topic) <= TOPIC_MAX and TOPIC_RE.match(topic) is not None


def raw_prefix(subscription):
    """The ZeroMQ prefix of a subscription: frame 0 is the topic plus "."."""
    return (subscription + ".").encode() if subscription else b""


def frame_topic(frame, what="topic frame"):
    """The topic in frame 0 (the topic followed by one "."), or BadMessage."""
    if not frame.endswith(b"."):
        raise BadMessage("%s lacks its terminating '.'" % what)
    try:
        topic = frame[:-1].decode("ascii")
    except UnicodeDecodeError:
        raise BadMessage("%s is not a topic name" % what) from None
    if not topic_valid(topic):
        raise BadMessage("%s is not a topic name: %r" % (what, topic[:60]))
    return topic


def topic_matches(subscription, topic):
    return (subscription == "" or topic == subscription
            or topic.startswith(subscription + "."))


def read_zpl(path):
    """The values of a ZPL file (CZMQ's zconfig text, as in zcert files) by path:
    {"curve/public-key": "...", "metadata/name": "..."}. Four spaces per level;
    values may be quoted; '#' starts a comment outside quotes."""
    values, stack = {}, []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            body = line.lstrip(" ")
            if not body or body.startswith("#"):
                continue
            level = (len(line) - len(body)) // 4
            name, _, value = body.partition("=")
            name, value = name.strip(), value.strip()
            if value[:1] in ("'", '"'):
                end = value.find(value[0], 1)
                value = value[1:end if end > 0 else None]
            else:
                value = value.split("#", 1)[0].strip()
            del stack[level:]
            stack.append(name)
            values["/".join(stack)] = value
    return values


def load_curve_keys(cert_path, server_key):
    """(public, secret, server) Z85 keys as bytes: the client's from its zcert secret
    file, the server's given as Z85 or as the path of its public certificate."""
    try:
        cert = read_zpl(cert_path)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError("cannot read certificate %r: %s" % (cert_path, e)) from None
    public, secret = cert.get("curve/public-key", ""), cert.get("curve/secret-key", "")
    if len(public) != 40 or len(secret) != 40:
        raise ValueError("certificate %r lacks curve/public-key or curve/secret-key (use "
                         "the _secret file)" % cert_path)
    if os.path.exists(server_key):      # a file wins: Z85 may contain '/' and '.'
        try:
            server = read_zpl(server_key).get("curve/public-key", "")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError("cannot read certificate %r: %s" % (server_key, e)) from None
    else:
        server = server_key
    if len(server) != 40:
        raise ValueError("server key %r is neither a 40-character Z85 key nor a "
                         "certificate file" % server_key)
    return public.encode(), secret.encode(), server.encode()


class BadMessage(Exception):
    """A message that breaks the wire format; receiving goes on after it."""


def _walk(value, depth, counter, path):
    """Section 4.3 for every value: depth, object count, str keys, no duplicate keys,
    no NUL, no bin. Maps arrive as lists of pairs so duplicates are still visible.
    Returns the value with maps turned into dicts."""
    counter[0] += 1
    if counter[0] > MAX_OBJECTS:
        raise BadMessage("more than %d objects" % MAX_OBJECTS)
    if isinstance(value, _Pairs):
        if depth > MAX_DEPTH:
            raise BadMessage("nested deeper than %d levels" % MAX_DEPTH)
        out = {}
        for k, v in value:
            if not isinstance(k, str):
                raise BadMessage("a map key is not a string")
            if k in out:
                raise BadMessage("duplicate key %r" % ((path + "." if path else "") + k))
            counter[0] += 1
            out[k] = _walk(v, depth + 1, counter, (path + "." if path else "") + k)
        return out
    if isinstance(value, list):
        if depth > MAX_DEPTH:
            raise BadMessage("nested deeper than %d levels" % MAX_DEPTH)
        return [_walk(v, depth + 1, counter, path) for v in value]
    if isinstance(value, bytes):
        raise BadMessage("%r is not a string (bin)" % path)
    if isinstance(value, str):
        if "\0" in value:
            raise BadMessage("%r contains NUL" % path)
        if path.rsplit(".", 1)[-1] not in LONG_KEYS and len(value.encode()) > MAX_SHORT:
            raise BadMessage("%r longer than %d bytes" % (path, MAX_SHORT))
    return value


class _Pairs(list):
    """A MessagePack map as decoded: its (key, value) pairs in order."""


def _field(m, key, path, kind, required=True):
    value = m.get(key)
    if value is None and key not in m:
        if required:
            raise BadMessage("missing key %r" % path)
        return None
    if kind == "uint":
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise BadMessage("%r is not an unsigned integer" % path)
    elif kind in ("map", "array"):
        if not isinstance(value, dict if kind == "map" else list):
            raise BadMessage("%r is not a%s %s" % (path, "n" if kind == "array" else "", kind))
    elif not isinstance(value, str):
        raise BadMessage("%r is not a string" % path)
    elif kind is not str and not kind.match(value):
        raise BadMessage("%r is malformed: %r" % (path, value[:60]))
    return value


def decode_body(data):
    """Decode and check one body (frame 1) per sections 4 and 7 of the specification.
    Returns the message as a dict; raises BadMessage with the reason otherwise."""
    if not data:
        raise BadMessage("empty message")
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True,
                              object_pairs_hook=_Pairs, max_bin_len=len(data),
                              max_str_len=len(data), max_array_len=len(data),
                              max_map_len=len(data), max_ext_len=len(data))
    except msgpack.ExtraData:
        raise BadMessage("trailing bytes after the message map") from None
    except UnicodeDecodeError:
        raise BadMessage("a string is not valid UTF-8") from None
    except Exception as e:  # truncated or malformed, whatever msgpack calls it
        raise BadMessage("malformed MessagePack: %s" % (str(e) or type(e).__name__)) from None
    if not isinstance(raw, _Pairs):
        raise BadMessage("message is not a map")
    m = _walk(raw, 1, [0], "")
    v = _field(m, "v", "v", "uint")
    if v != 1:
        raise BadMessage("unsupported version %d" % v)
    topic = _field(m, "topic", "topic", str)
    if not topic_valid(topic):
        raise BadMessage("'topic' is not a topic name")
    seq = _field(m, "seq", "seq", "uint")
    if seq == 0 or seq >= 1 << 64:
        raise BadMessage("'seq' is out of range")
    _field(m, "epoch", "epoch", HEX32)
    _field(m, "id", "id", HEX40)
    _field(m, "sent", "sent", RFC3339)
    source = _field(m, "source", "source", "map", required=False)
    if source is not None:
        _field(source, "file", "source.file", str)
        _field(source, "format", "source.format", str)
        _field(source, "encoding", "source.encoding", str, required=False)
    a = _field(m, "article", "article", "map")
    _field(a, "uri", "article.uri", str)
    _field(a, "versioncreated", "article.versioncreated", RFC3339)
    _field(a, "headline", "article.headline", str)
    _field(a, "body_text", "article.body_text", str)
    for key in ("type", "byline", "description_text", "language", "version", "located"):
        _field(a, key, "article." + key, str, required=False)
    subjects = _field(a, "subject", "article.subject", "array", required=False) or []
    if len(subjects) > MAX_SUBJECTS:
        raise BadMessage("'article.subject' has more than %d entries" % MAX_SUBJECTS)
    for entry in subjects:
        if not isinstance(entry, dict):
            raise BadMessage("'article.subject' entry is not a map")
        _field(entry, "name", "article.subject.name", str)
    return m


REPLAY_CREDIT = 256       # initial credit of a stream; half of it is granted again as used
HOLD_MAX = 1024           # live messages held per topic while its replay runs
REPLAY_TIMEOUT = 5.0      # a stream silent this long is given up (daemon gone)
BUSY_FIRST, BUSY_MAX, BUSY_TRIES = 0.1, 2.0, 6   # "busy": ask again after 0.1 s, doubling


class _Topic:
    """Replay bookkeeping of one topic (with a replay endpoint only)."""

    def __init__(self, name, epoch=None, last=0):
        self.name, self.epoch, self.last = name, epoch, last  # last: last seq returned
        self.held = []          # live messages waiting behind the replay
        self.need_to = 0        # the replay must reach this seq (0: the journal's head)
        self.queued = False     # waiting for a stream, or streaming
        self.join = None        # ("from", S) or ("last", N) for a late join's stream
        self.lost = 0           # given up right before the next one: its gap_before
        self.from_known = False # a since join: last is meaningful before the epoch is known


class Subscriber:
    """One SUB socket (and a DEALER for replay). recv() returns decoded message dicts,
    each with an extra "gap_before" (articles of that topic missed just before it) and
    "epoch_changed"."""

    def __init__(self, endpoints=(DEFAULT_ENDPOINT,), topics=("",), hwm=None,
                 on_gap=None, on_bad=None, context=None, replay=None, since=None, last=None,
                 replay_idle=0.5, curve_cert=None, server_key=None):
        for topic in topics:
            if topic != "" and not topic_valid(topic):
                raise ValueError("not a topic name: %r" % topic)
        if (since or last) and (replay is None or "" in topics):
            raise ValueError("since/last need a replay endpoint and topics")
        if (curve_cert is None) != (server_key is None):
            raise ValueError("curve_cert and server_key go together")
        curve = load_curve_keys(curve_cert, server_key) if curve_cert else None
        self.topics = list(dict.fromkeys(topics)) or [""]
        self.on_gap = on_gap          # called as on_gap(topic, epoch, first, last)
        self.on_bad = on_bad          # called as on_bad(reason)
        self.state = {}               # topic -> [epoch, last seq] (or _Topic with replay)
        self.received = self.gaps = self.duplicates = self.bad = 0
        self.replayed = self.replay_errors = 0
        self.last_error = ""
        self._context = context or zmq.Context.instance()
        self.socket = self._context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        self._curve = curve
        self._secure(self.socket)
        if hwm is not None:
            self.socket.setsockopt(zmq.RCVHWM, hwm)
        for topic in self.topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, raw_prefix(topic))
        for endpoint in endpoints:
            if endpoint.startswith(("epgm://", "pgm://")):
                if curve or endpoint.startswith("pgm://"):
                    raise ValueError("%s: multicast is epgm:// and has no CURVE" % endpoint)
                endpoint = resolve_epgm(endpoint)
            self.socket.connect(endpoint)   # raises zmq.ZMQError on a bad endpoint
        self.replay = None
        self.ready = collections.deque()    # messages to return before reading sockets
        self.waiting = collections.deque()  # _Topic wanting a stream, FIFO
        self.active = None                  # the streaming _Topic
        self.busy_until, self.busy_tries = None, 0   # after "busy": wait, then ask again
        # The end of a burst may be dropped with nothing after it to reveal the gap: after
        # live traffic and replay_idle seconds of quiet, ask the journal for anything newer.
        self.replay_idle = replay_idle
        self.probe_due = None
        self.monitor = None
        if replay is not None:
            # What went out while the live socket was away (a restart, a link cut) has
            # no later message to reveal it when nothing follows: each handshake arms the
            # probe too, as live traffic does.
            self.monitor = self.socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
            self.replay = self._context.socket(zmq.DEALER)
            self.replay.setsockopt(zmq.LINGER, 0)
            self.replay.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
            self._secure(self.replay)
            self.replay.connect(replay)
            # Subscribed first: live ones arriving during the join's replay are held.
            for topic in self.topics if (since or last) else ():
                t = self.state[topic] = _Topic(topic, last=(since - 1) if since else 0)
                t.join = ("from", since) if since else ("last", last)
                t.from_known = bool(since)
                self._enqueue(t)

    def _secure(self, sock):
        """CURVE client keys, before the socket connects."""
        if self._curve:
            sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = self._curve

    def close(self):
        if self.monitor is not None:
            self.socket.disable_monitor()
            self.monitor.close(0)
        self.socket.close()
        if self.replay is not None:
            self.replay.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def recv(self, timeout=None):
        """The next message (dict), or None when timeout seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        if self.replay is not None:
            poller.register(self.replay, zmq.POLLIN)
            poller.register(self.monitor, zmq.POLLIN)
        while True:
            if self.replay is not None:
                self._handshakes()
                self._pump()
                if self.ready:
                    self.received += 1
                    return self.ready.popleft()
            wait = None
            if deadline is not None:
                wait = max(0, int((deadline - time.monotonic()) * 1000))
            if self.active is not None:
                until = int((self.active_deadline - time.monotonic()) * 1000)
                if until <= 0:      # daemon gone, or stream dropped: never stall the topic
                    t, self.active = self.active, None
                    self._request(type="cancel")
                    progress = t.last > self.active_base      # then it is worth asking again
                    if not progress:
                        self.replay_errors += 1
                        self.last_error = "replay of %r timed out" % t.name
                    self._settle(t, progress)
                    continue
                wait = until if wait is None else min(wait, until)
            if self.busy_until is not None and self.active is None:
                until = int((self.busy_until - time.monotonic()) * 1000)
                if until <= 0:
                    continue        # _pump asks again
                wait = until if wait is None else min(wait, until)
            if self.probe_due is not None and self.active is None and not self.waiting:
                until = int((self.probe_due - time.monotonic()) * 1000)
                if until <= 0:
                    self._probe()
                    continue
                wait = until if wait is None else min(wait, until)
            events = dict(poller.poll(wait))
            if not events:
                if deadline is None or time.monotonic() >= deadline:
                    return None
                continue
            if self.monitor in events and len(events) == 1:
                continue
            from_replay = self.replay in events
            frames = (self.replay if from_replay else self.socket).recv_multipart()
            try:
                msg = self._replay_reply(frames) if from_replay else self._accept(frames)
            except BadMessage as e:
                self.bad += 1
                self.last_error = str(e)
                if self.on_bad:
                    self.on_bad(str(e))
                continue
            if msg is not None:
                self.received += 1
                return msg

    def _accept(self, frames):
        if len(frames) != 2:
            raise BadMessage("message of %d frame(s), want 2" % len(frames))
        topic = frame_topic(frames[0])
        if not any(topic_matches(s, topic) for s in self.topics):
            return None
        m = decode_body(frames[1])
        if m["topic"] != topic:
            raise BadMessage("topic frame %r differs from topic key" % topic)
        seq, epoch = m["seq"], m["epoch"]
        m["gap_before"], m["epoch_changed"] = 0, False
        if self.replay is not None:
            if self.replay_idle:
                self.probe_due = time.monotonic() + self.replay_idle
            return self._track_replay(m)
        state = self.state.get(topic)
        if state is None:
            self.state[topic] = [epoch, seq]     # joined late: not a gap
        elif state[0] != epoch:
            self.state[topic] = [epoch, seq]     # publisher lost its history
            m["epoch_changed"] = True
        elif seq <= state[1]:
            self.duplicates += 1
            return None
        else:
            if seq > state[1] + 1:
                m["gap_before"] = seq - state[1] - 1
                self.gaps += m["gap_before"]
                if self.on_gap:
                    self.on_gap(topic, epoch, state[1] + 1, seq - 1)
            state[1] = seq
        return m


    # --- replay: gap filling and late joins ---------------------------------------

    def _request(self, **keys):
        self.replay.send(msgpack.packb(dict({"v": 1}, **keys)))

    def _enqueue(self, t):
        if not t.queued:
            t.queued = True
            self.waiting.append(t)

    def _lost(self, t, first, last):
        """Seqs first..last of t are given up for good."""
        if last < first:
            return
        self.gaps += last - first + 1
        t.lost += last - first + 1
        if self.on_gap:
            self.on_gap(t.name, t.epoch or "", first, last)
        t.last = last

    def _handshakes(self):
        """Each handshake of the live socket arms the probe: the subscription it carries
        takes effect at the publisher only after it."""
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED and self.replay_idle:
                self.probe_due = time.monotonic() + self.replay_idle

    def _probe(self):
        self.probe_due = None
        for t in self.state.values():
            if t.epoch is not None and not t.queued:
                t.need_to = 0
                self._enqueue(t)

    def _pump(self):
        """Start the next stream when none is active."""
        if self.active is not None or not self.waiting:
            return
        if self.busy_until is not None and time.monotonic() < self.busy_until:
            return
        self.busy_until = None
        t = self.waiting.popleft()
        req = {"type": "replay", "topic": t.name, "credit": REPLAY_CREDIT}
        if t.join:
            req[t.join[0]] = t.join[1]
        else:
            req["from"] = t.last + 1
            if t.need_to:
                req["to"] = t.need_to
        self.active, self.active_from = t, req.get("from", 0)
        self.active_base, self.active_join, self.active_used = t.last, bool(t.join), 0
        self.active_deadline = time.monotonic() + REPLAY_TIMEOUT
        self.active_joined, t.join = t.join, None
        self._request(**req)

    def _track_replay(self, m):
        """A live message, replay mode: return it, hold it, or start a replay."""
        topic, seq, epoch = m["topic"], m["seq"], m["epoch"]
        t = self.state.get(topic)
        if t is None or (t.epoch is None and not t.queued):
            self.state[topic] = _Topic(topic, epoch, seq)  # joined late: not a gap
            return m
        if t.epoch is not None and t.epoch != epoch:     # publisher lost its history
            self._forget(t)
            t.epoch, t.last, m["epoch_changed"] = epoch, seq, True
            return m
        if t.epoch is not None and seq <= t.last:
            self.duplicates += 1
            return None
        if not t.queued:
            if seq == t.last + 1:
                t.last = seq
                return m
            t.need_to = seq - 1
            self._enqueue(t)
        if len(t.held) >= HOLD_MAX:      # the journal has them: ask it rather than hold
            t.held = []
            t.need_to = max(t.need_to, seq)
        else:
            t.held.append(m)
        return None

    def _forget(self, t):
        """Drop what was pending for t (its epoch changed)."""
        t.held, t.need_to, t.join = [], 0, None
        if self.active is t:
            self._request(type="cancel")
            self.active = None
        elif t in self.waiting:
            self.waiting.remove(t)
        t.queued = False

    def _settle(self, t, progress):
        """After t's stream: return held ones in order until one is missing, then ask
        again (the stream progressed, so another may too) or give the missing up."""
        while True:
            head = t.held[0] if t.held else None
            if head and t.epoch is not None and head["epoch"] != t.epoch:
                t.epoch, t.last, head["epoch_changed"] = head["epoch"], head["seq"] - 1, True
            if head and t.epoch is None:     # a join that replayed nothing
                t.epoch = head["epoch"]
                if not t.from_known:
                    t.last = head["seq"] - 1
            if head and head["seq"] <= t.last:
                self.duplicates += 1
                t.held.pop(0)
                continue
            want = head["seq"] - 1 if head else t.need_to
            if want > t.last:
                if progress:
                    t.need_to, t.queued = want, False
                    self._enqueue(t)
                    return
                self._lost(t, t.last + 1, want)
            if not head:
                break
            t.held.pop(0)
            head["gap_before"], t.lost, t.last = t.lost, 0, head["seq"]
            self.ready.append(head)
        t.need_to, t.queued = 0, False

    def _replay_reply(self, frames):
        """One reply on the DEALER: data of the active stream, or its $end or $error."""
        if len(frames) != 2:
            raise BadMessage("replay reply of %d frame(s), want 2" % len(frames))
        if frames[0] in (b"$end", b"$error"):
            return self._replay_control(frames[0] == b"$error", frames[1])
        topic = frame_topic(frames[0], "replay topic frame")
        m = decode_body(frames[1])
        if m["topic"] != topic:
            raise BadMessage("replay topic frame %r differs from topic key" % topic)
        self.active_deadline = time.monotonic() + REPLAY_TIMEOUT
        t = self.active
        if t is not None:
            self.active_used += 1
            if self.active_used >= REPLAY_CREDIT // 2:
                self._request(type="credit", credit=REPLAY_CREDIT // 2)
                self.active_used = 0
        if (t is None or t.name != topic or (t.epoch is not None and m["epoch"] != t.epoch)
                or (t.epoch is not None and m["seq"] <= t.last)):
            return None     # a cancelled stream's, an old epoch's, or a duplicate
        if t.epoch is None:
            t.epoch = m["epoch"]
            if not self.active_from:        # "last N": the first one starts the topic
                t.last = m["seq"] - 1
        if m["seq"] > t.last + 1:           # the journal itself lacks these
            self._lost(t, t.last + 1, m["seq"] - 1)
        m["gap_before"], m["epoch_changed"] = t.lost, False
        t.lost, t.last = 0, m["seq"]
        self.replayed += 1
        return m

    def _replay_control(self, is_error, body):
        if len(body) > 4096:
            raise BadMessage("replay reply of %d bytes" % len(body))
        try:
            c = msgpack.unpackb(body, raw=False)
        except Exception:
            raise BadMessage("undecodable replay %s" % ("error" if is_error else "end")) from None
        if not isinstance(c, dict):
            raise BadMessage("replay reply is not a map")
        t = self.active
        if t is None or c.get("topic") != t.name or (
                not is_error and self.active_from and c.get("from") != self.active_from):
            return None     # a cancelled stream's last words
        self.active = None
        progress = t.last > self.active_base or self.active_join
        if is_error and c.get("code") == "busy" and self.busy_tries < BUSY_TRIES:
            # the daemon's replay is full for now: ask again later, first in line
            self.busy_until = time.monotonic() + min(BUSY_FIRST * 2 ** self.busy_tries, BUSY_MAX)
            self.busy_tries += 1
            t.join = self.active_joined
            self.waiting.appendleft(t)
            return None
        self.busy_tries = 0
        if is_error:
            self.replay_errors += 1
            self.last_error = "replay of %r failed: %s: %s" % (t.name, c.get("code"),
                                                                c.get("reason"))
            progress = False
            oldest = c.get("oldest")
            if c.get("code") == "retention" and isinstance(oldest, int) and oldest > t.last + 1:
                self._lost(t, t.last + 1, oldest - 1)   # older ones are gone for good
                progress = True
        self._settle(t, progress)
        return None


class DualFeed:
    """Several paths to the same articles (two relays of one origin, or two origins fed
    the same files), each a Subscriber of its own with its own replay endpoint; recv()
    returns each message once per (epoch, topic, seq), from whichever path delivers it
    first, and once per article id among the last dedup_window (two origins have
    different epochs and seqs; 0: by seq only). Gaps are each path's own, reported by its
    on_gap (not matched against what the other path delivered)."""

    def __init__(self, paths, dedup_window=10000):
        self.paths = list(paths)
        self.dedup_window = dedup_window
        self.seen_seq = collections.OrderedDict()
        self.seen_id = collections.OrderedDict()
        self.next_path = 0
        self.duplicates = 0

    @property
    def bad(self):
        return sum(p.bad for p in self.paths)

    @property
    def last_error(self):
        return " ".join(p.last_error for p in self.paths if p.last_error)

    def close(self):
        for p in self.paths:
            p.close()

    def _take(self, msg):
        key = (msg["epoch"], msg["topic"], msg["seq"])
        if key in self.seen_seq:
            return False
        self.seen_seq[key] = True
        while len(self.seen_seq) > max(self.dedup_window, 10000):
            self.seen_seq.popitem(last=False)
        if self.dedup_window and msg["id"] in self.seen_id:
            return False
        if self.dedup_window:
            self.seen_id[msg["id"]] = True
            while len(self.seen_id) > self.dedup_window:
                self.seen_id.popitem(last=False)
        return True

    def recv(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            busy = False
            for k in range(len(self.paths)):
                i = (self.next_path + k) % len(self.paths)
                msg = self.paths[i].recv(0)     # what each path can do without waiting
                if msg is None:
                    continue
                busy = True
                if not self._take(msg):
                    self.duplicates += 1
                    continue
                self.next_path = (i + 1) % len(self.paths)
                return msg
            if busy:
                continue
            now = time.monotonic()
            wait = None if deadline is None else max(0.0, deadline - now)
            if wait == 0.0:
                return None
            poller = zmq.Poller()
            for p in self.paths:
                poller.register(p.socket, zmq.POLLIN)
                if p.replay is not None:
                    poller.register(p.replay, zmq.POLLIN)
                    poller.register(p.monitor, zmq.POLLIN)
                for due in (p.active_deadline if p.active is not None else None,
                            p.busy_until if p.active is None else None,
                            p.probe_due if p.active is None and not p.waiting else None):
                    if due is not None:
                        wait = max(0.0, due - now) if wait is None else min(wait, max(0.0, due - now))
            poller.poll(None if wait is None else int(wait * 1000) + 1)


def to_json(msg):
    """The JSON line of a message: the wire map without v and the bookkeeping keys."""
    keys = ("topic", "seq", "epoch", "id", "sent", "source", "article")
    return json.dumps({k: msg[k] for k in keys if k in msg}, ensure_ascii=False,
                      separators=(",", ":"))


def attach_values(argv, options):
    """Join each of options with the word after it, as getopt does in newswire-sub: a Z85
    key may begin with '-', which argparse would otherwise take for an option."""
    out, words = [], iter(argv)
    for w in words:
        if w == "--":
            out.append(w)
            out.extend(words)
            break
        if w in options:
            value = next(words, None)
            out.append(w if value is None else w + "=" + value)
        else:
            out.append(w)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Print newswire articles of TOPICs as JSON lines (no topic: all).",
        epilog="Exit status: 0 done (or --timeout without --count), 1 usage, "
               "2 --timeout before --count articles, 3 some message was undecodable.")
    p.add_argument("--connect", action="append", metavar="ENDPOINT")
    p.add_argument("--count", type=int, metavar="N")
    p.add_argument("--timeout", type=float, metavar="SECS")
    p.add_argument("--hwm", type=int, metavar="N", help="receive queue limit in messages")
    p.add_argument("--replay", metavar="ENDPOINT", action="append",
                   help="daemon replay endpoint: missed articles come from its journal; "
                        "once for every --connect, or once per --connect in their order")
    p.add_argument("--dedup-window", type=int, metavar="N", default=10000,
                   help="with several --connect (a dual feed, each a path): remember the "
                        "last N article ids to drop one another path delivered (0: by "
                        "epoch, topic and seq only)")
    join = p.add_mutually_exclusive_group()
    join.add_argument("--since", type=int, metavar="SEQ",
                      help="with --replay: each TOPIC from seq SEQ on, then live")
    join.add_argument("--last", type=int, metavar="N",
                      help="with --replay: each TOPIC's newest N, then live")
    p.add_argument("--curve-cert", metavar="FILE",
                   help="connect with CurveZMQ as this client (newswire-keygen's _secret file)")
    p.add_argument("--server-key", metavar="KEY",
                   help="the daemon's public key: 40 Z85 characters or its certificate file")
    p.add_argument("topics", nargs="*", metavar="TOPIC")
    args = p.parse_args(attach_values(sys.argv[1:] if argv is None else argv, ("--server-key",)))

    def gap(topic, epoch, first, last):
        why = ": " + sub.last_error if args.replay else ""
        print("newswire_sub: warning: %s missed seq %d..%d (epoch %s)%s"
              % (topic, first, last, epoch, why), file=sys.stderr)

    def bad(reason):
        print("newswire_sub: warning: %s" % reason, file=sys.stderr)

    try:
        if (args.since is not None and args.since < 1) or (args.last is not None and args.last < 1):
            raise ValueError("--since and --last want a number from 1")
        connects = args.connect or [DEFAULT_ENDPOINT]
        replays = args.replay or []
        if len(replays) > 1 and len(replays) != len(connects):
            raise ValueError("give --replay once, or once per --connect (%d), not %d times"
                             % (len(connects), len(replays)))
        if args.dedup_window < 0:
            raise ValueError("--dedup-window wants a number of articles")
        paths = [Subscriber([c], args.topics or [""], hwm=args.hwm, on_gap=gap, on_bad=bad,
                            replay=(replays[0] if len(replays) == 1 else replays[i])
                            if replays else None,
                            since=args.since, last=args.last, curve_cert=args.curve_cert,
                            server_key=args.server_key)
                 for i, c in enumerate(connects)]
        sub = paths[0] if len(paths) == 1 else DualFeed(paths, args.dedup_window)
    except (ValueError, zmq.ZMQError) as e:
        print("newswire_sub: %s" % e, file=sys.stderr)
        return 1
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    got = 0
    try:
        while args.count is None or got < args.count:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            msg = sub.recv(left)
            if msg is None:
                break
            got += 1
            try:
                print(to_json(msg), flush=True)
            except (TypeError, ValueError) as e:   # e.g. a bin value: valid MessagePack, no JSON
                sub.bad += 1
                bad("message on %r is not printable as JSON: %s" % (msg["topic"], e))
    except KeyboardInterrupt:
        return 0
    finally:
        sub.close()
    if args.count is not None and got < args.count:
        print("newswire_sub: timed out with %d of %d articles" % (got, args.count),
              file=sys.stderr)
        return 2
    return 3 if sub.bad else 0


if __name__ == "__main__":
    sys.exit(main())
