#!/usr/bin/python3
"""newswire_sub: a small newswire subscriber in Python, written from the wire format alone.

Every newswire message is two ZeroMQ frames: the topic, then a MessagePack map
(v, topic, seq, epoch, id, sent, source{file, format}, article{...ninjs...}).
ZeroMQ filters subscriptions by raw byte prefix, so this module applies the protocol's
rule on receipt: subscription S matches topic T iff S == "" or T == S or T starts
with S + ".". It tracks (epoch, last seq) per topic to report gaps and drop duplicates.

As a program it prints one JSON object per article:
    /usr/bin/python3 newswire_sub.py --connect tcp://127.0.0.1:5556 --count 10 telecoms
As a module:
    sub = Subscriber(["tcp://127.0.0.1:5556"], ["telecoms"])
    msg = sub.recv(timeout=5.0)    # a dict, or None on timeout
Needs Debian's python3-zmq and python3-msgpack.
"""
import argparse
import json
import re
import sys
import time

import msgpack
import zmq

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


def topic_valid(topic):
    """A topic name: lowercase [a-z0-9-] levels joined by '.', at most 255 bytes."""
    return len(topic) <= TOPIC_MAX and TOPIC_RE.match(topic) is not None


def topic_matches(subscription, topic):
    return (subscription == "" or topic == subscription
            or topic.startswith(subscription + "."))


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
    a = _field(m, "article", "article", "map")
    _field(a, "uri", "article.uri", str)
    _field(a, "versioncreated", "article.versioncreated", RFC3339)
    _field(a, "headline", "article.headline", str)
    _field(a, "body_text", "article.body_text", str)
    for key in ("type", "byline", "description_text", "language"):
        _field(a, key, "article." + key, str, required=False)
    subjects = _field(a, "subject", "article.subject", "array", required=False) or []
    if len(subjects) > MAX_SUBJECTS:
        raise BadMessage("'article.subject' has more than %d entries" % MAX_SUBJECTS)
    for entry in subjects:
        if not isinstance(entry, dict):
            raise BadMessage("'article.subject' entry is not a map")
        _field(entry, "name", "article.subject.name", str)
    return m


class Subscriber:
    """One SUB socket. recv() returns decoded message dicts, each with an extra
    "gap_before" (articles of that topic missed just before it) and "epoch_changed"."""

    def __init__(self, endpoints=(DEFAULT_ENDPOINT,), topics=("",), hwm=None,
                 on_gap=None, on_bad=None, context=None):
        for topic in topics:
            if topic != "" and not topic_valid(topic):
                raise ValueError("not a topic name: %r" % topic)
        self.topics = list(dict.fromkeys(topics)) or [""]
        self.on_gap = on_gap          # called as on_gap(topic, epoch, first, last)
        self.on_bad = on_bad          # called as on_bad(reason)
        self.state = {}               # topic -> [epoch, last seq]
        self.received = self.gaps = self.duplicates = self.bad = 0
        self.last_error = ""
        self._context = context or zmq.Context.instance()
        self.socket = self._context.socket(zmq.SUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
        if hwm is not None:
            self.socket.setsockopt(zmq.RCVHWM, hwm)
        for topic in self.topics:
            self.socket.setsockopt(zmq.SUBSCRIBE, topic.encode())
        for endpoint in endpoints:
            self.socket.connect(endpoint)   # raises zmq.ZMQError on a bad endpoint

    def close(self):
        self.socket.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def recv(self, timeout=None):
        """The next message (dict), or None when timeout seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = None
            if deadline is not None:
                wait = max(0, int((deadline - time.monotonic()) * 1000))
            if not self.socket.poll(wait):
                if deadline is None or time.monotonic() >= deadline:
                    return None
                continue
            frames = self.socket.recv_multipart()
            try:
                msg = self._accept(frames)
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
        try:
            topic = frames[0].decode("ascii")
        except UnicodeDecodeError:
            raise BadMessage("topic frame is not a topic name") from None
        if not topic_valid(topic):
            raise BadMessage("topic frame is not a topic name: %r" % topic[:60])
        if not any(topic_matches(s, topic) for s in self.topics):
            return None
        m = decode_body(frames[1])
        if m["topic"] != topic:
            raise BadMessage("topic frame %r differs from topic key" % topic)
        seq, epoch = m["seq"], m["epoch"]
        m["gap_before"], m["epoch_changed"] = 0, False
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


def to_json(msg):
    """The JSON line of a message: the wire map without v and the bookkeeping keys."""
    keys = ("topic", "seq", "epoch", "id", "sent", "source", "article")
    return json.dumps({k: msg[k] for k in keys if k in msg}, ensure_ascii=False,
                      separators=(",", ":"))


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Print newswire articles of TOPICs as JSON lines (no topic: all).",
        epilog="Exit status: 0 done (or --timeout without --count), 1 usage, "
               "2 --timeout before --count articles, 3 some message was undecodable.")
    p.add_argument("--connect", action="append", metavar="ENDPOINT")
    p.add_argument("--count", type=int, metavar="N")
    p.add_argument("--timeout", type=float, metavar="SECS")
    p.add_argument("topics", nargs="*", metavar="TOPIC")
    args = p.parse_args(argv)

    def gap(topic, epoch, first, last):
        print("newswire_sub: warning: %s missed seq %d..%d (epoch %s)"
              % (topic, first, last, epoch), file=sys.stderr)

    def bad(reason):
        print("newswire_sub: warning: %s" % reason, file=sys.stderr)

    try:
        sub = Subscriber(args.connect or [DEFAULT_ENDPOINT], args.topics or [""],
                         on_gap=gap, on_bad=bad)
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
