#!/usr/bin/python3
"""test_vectors: a second, independent reading of wire format v1 (proto/newswire-v1.md).

Every valid vector $NW_PROTO/vectors/NN-*.mp must decode with python msgpack to exactly
its NN-*.json and pass the rules below; every bad-*.mp must be refused by them, for the
reason its bad-*.txt names. The rules are written from the spec, not from nw_codec.c, so
a disagreement between the two readings shows up here. The same goes for the replay
messages of section 8 in $NW_PROTO/vectors/replay (KIND-*.mp with .json, bad-KIND-*.mp
with .txt; KIND request, end or error), read here apart from proto/nw_replay.c.
"""
import json
import os
import re
import sys

import msgpack

MAX_MESSAGE = 16 * 1024 * 1024
MAX_TOPIC = 255
MAX_SUBJECTS = 64
MAX_DEPTH = 8
MAX_OBJECTS = 65536
MAX_FIELD = 4096

TOPIC_RE = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)*$")
TIME_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?Z$")


class Invalid(Exception):
    pass


class Pairs(list):
    """A map as read: its (key, value) pairs in order, duplicates kept."""


def count_and_depth(obj, depth=1):
    """(objects, deepest container level) of a decoded value."""
    if isinstance(obj, Pairs):
        n, d = 1, depth
        for k, v in obj:
            for x in (k, v):
                cn, cd = count_and_depth(x, depth + 1)
                n, d = n + cn, max(d, cd)
        return n, d
    if isinstance(obj, list):
        n, d = 1, depth
        for x in obj:
            cn, cd = count_and_depth(x, depth + 1)
            n, d = n + cn, max(d, cd)
        return n, d
    return 1, 0


def check_str(path, value, kind):
    if not isinstance(value, str):
        raise Invalid('"%s" is not a string' % path)
    if "\x00" in value:
        raise Invalid('"%s" contains NUL' % path)
    try:
        raw = value.encode("utf-8")   # lone surrogates = bytes that were not UTF-8
    except UnicodeEncodeError:
        raise Invalid('"%s" is not valid UTF-8' % path)
    if kind == "short" and len(raw) > MAX_FIELD:
        raise Invalid('"%s" longer than %d bytes' % (path, MAX_FIELD))
    if kind == "topic":
        if len(raw) > MAX_TOPIC:
            raise Invalid('"%s" longer than %d bytes' % (path, MAX_TOPIC))
        if not TOPIC_RE.match(value):
            raise Invalid('"%s" is not a valid topic name' % path)
    if kind in ("hex32", "hex40"):
        want = 32 if kind == "hex32" else 40
        if not re.fullmatch("[0-9a-f]{%d}" % want, value):
            raise Invalid('"%s" is not %d lowercase hex digits' % (path, want))
    if kind == "time":
        m = TIME_RE.match(value)
        ok = m is not None
        if ok:
            mo, d, h, mi, s = (int(m.group(i)) for i in range(2, 7))
            ok = 1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and mi <= 59 and s <= 60
        if not ok:
            raise Invalid('"%s" is not an RFC 3339 UTC time' % path)


# key: (path, type, required, string kind)
MESSAGE = {"v": ("v", int, True, None), "topic": ("topic", str, True, "topic"),
           "seq": ("seq", int, True, None), "epoch": ("epoch", str, True, "hex32"),
           "id": ("id", str, True, "hex40"), "sent": ("sent", str, True, "time"),
           "source": ("source", Pairs, False, None), "article": ("article", Pairs, True, None)}
SOURCE = {"file": ("source.file", str, True, "short"), "format": ("source.format", str, True, "short"),
          "encoding": ("source.encoding", str, False, "short")}
ARTICLE = {"uri": ("article.uri", str, True, "short"), "type": ("article.type", str, False, "short"),
           "versioncreated": ("article.versioncreated", str, True, "time"),
           "headline": ("article.headline", str, True, "short"),
           "byline": ("article.byline", str, False, "short"),
           "description_text": ("article.description_text", str, False, "text"),
           "body_text": ("article.body_text", str, True, "text"),
           "language": ("article.language", str, False, "short"),
           "version": ("article.version", str, False, "short"),
           "located": ("article.located", str, False, "short"),
           "subject": ("article.subject", list, False, None)}
SUBJECT = {"name": ("article.subject.name", str, True, "short"),
           "scheme": ("article.subject.scheme", str, False, "short"),
           "code": ("article.subject.code", str, False, "short")}
TYPE_NAMES = {int: "an unsigned integer", str: "a string", Pairs: "a map", list: "an array"}


def read_map(pairs, spec):
    found = {}
    for k, v in pairs:
        if not isinstance(k, str):
            raise Invalid("a map key is not a string")
        if k in spec:
            if k in found:
                raise Invalid('duplicate key "%s"' % spec[k][0])
            found[k] = v
    for key, (path, typ, required, kind) in spec.items():
        if key not in found:
            if required:
                raise Invalid('missing key "%s"' % path)
            continue
        v = found[key]
        ok = isinstance(v, typ) and not isinstance(v, bool)
        if typ is int:
            ok = ok and v >= 0
        if typ is list:
            ok = ok and not isinstance(v, Pairs)
        if not ok:
            raise Invalid('"%s" is not %s' % (path, TYPE_NAMES[typ]))
        if typ is str:
            check_str(path, v, kind)
    return found


def validate(data):
    """Raises Invalid with the reason, as nw_codec_message_decode() words it."""
    if len(data) == 0:
        raise Invalid("empty message")
    if len(data) > MAX_MESSAGE:
        raise Invalid("message larger than %d bytes" % MAX_MESSAGE)
    unpacker = msgpack.Unpacker(raw=False, unicode_errors="surrogateescape", strict_map_key=False,
                                object_pairs_hook=Pairs, max_buffer_size=MAX_MESSAGE)
    unpacker.feed(data)
    try:
        root = unpacker.unpack()
    except msgpack.OutOfData:
        raise Invalid("truncated message")
    except ValueError as e:
        # A declared length beyond what the buffer holds trips msgpack's max_*_len.
        if "exceeds max" in str(e):
            raise Invalid("truncated message")
        raise Invalid("malformed MessagePack")
    except Exception:
        raise Invalid("malformed MessagePack")
    objects, depth = count_and_depth(root)
    if depth > MAX_DEPTH:
        raise Invalid("nested deeper than %d levels" % MAX_DEPTH)
    if objects > MAX_OBJECTS:
        raise Invalid("more than %d objects" % MAX_OBJECTS)
    if unpacker.tell() != len(data):
        raise Invalid("trailing bytes after the message map")
    if not isinstance(root, Pairs):
        raise Invalid("message is not a map")
    for k, v in root:
        if k == "v" and isinstance(v, int) and not isinstance(v, bool) and v >= 0 and v != 1:
            raise Invalid("unsupported version %d" % v)
    msg = read_map(root, MESSAGE)
    if msg["seq"] == 0:
        raise Invalid('"seq" is 0 (sequences start at 1)')
    if "source" in msg:
        read_map(msg["source"], SOURCE)
    art = read_map(msg["article"], ARTICLE)
    subjects = art.get("subject", [])
    if len(subjects) > MAX_SUBJECTS:
        raise Invalid('"article.subject" has more than %d entries' % MAX_SUBJECTS)
    for s in subjects:
        if not isinstance(s, Pairs):
            raise Invalid('"article.subject" entry is not a map')
        read_map(s, SUBJECT)


MAX_REQUEST = 4096
MAX_REPLY = 4096
MAX_CREDIT = 1000
MAX_CODE = 32
MAX_KEYS = 16
# key: (wire type, nw_replay's name for the type); str keys, then uint keys, per kind
REPLAY_KEYS = {
    "request": {"v": int, "type": str, "topic": str, "from": int, "last": int, "to": int,
                "credit": int},
    "end": {"v": int, "type": str, "topic": str, "from": int, "last": int, "head": int},
    "error": {"v": int, "type": str, "topic": str, "code": str, "reason": str, "oldest": int},
}


def replay_scalars(data):
    """The (key, value) pairs of a flat map of scalars, or Invalid as nw_replay words it."""
    if len(data) == 0:
        raise Invalid("truncated")
    head = data[0]
    if 0x80 <= head <= 0x8F:
        count = head & 0x0F
    elif head in (0xDE, 0xDF):
        width = 2 if head == 0xDE else 4
        if len(data) < 1 + width:
            raise Invalid("truncated")
        count = int.from_bytes(data[1:1 + width], "big")
    else:
        raise Invalid("not a MessagePack map")
    if count > MAX_KEYS:
        raise Invalid("more than 16 keys")
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, object_pairs_hook=Pairs,
                                unicode_errors="surrogateescape")
    unpacker.feed(data)
    try:
        root = unpacker.unpack()
    except Exception:
        root = None
    consumed = unpacker.tell() if root is not None else 0
    if root is None or not isinstance(root, Pairs) or len(root) != count or any(
            isinstance(x, (Pairs, list, msgpack.ExtType)) for kv in root for x in kv):
        raise Invalid("truncated, or a map, array or ext value")
    return root, consumed


def validate_replay(kind, data):
    """Raises Invalid with the reason for one replay message of kind (section 8)."""
    limit = MAX_REQUEST if kind == "request" else MAX_REPLY
    if len(data) > limit:
        raise Invalid("%s larger than %d bytes" % ("request" if kind == "request" else "reply", limit))
    pairs, consumed = replay_scalars(data)
    spec = REPLAY_KEYS[kind]
    found = {}
    for k, v in pairs:
        if not isinstance(k, str):
            raise Invalid("a key is not a string")
        if k not in spec:
            continue                       # section 7: unknown keys are ignored
        if k in found:
            raise Invalid("duplicate key '%s'" % k)
        found[k] = v
        if spec[k] is str:
            if not isinstance(v, str):
                raise Invalid("'%s' is not a string" % k)
        elif not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise Invalid("'%s' is not a non-negative integer" % k)
        if k == "v" and v != 1:
            raise Invalid("unsupported version %d" % v)
        if k == "type" and kind == "request" and v not in ("replay", "credit", "cancel"):
            raise Invalid("unknown request type")
        if k == "type" and kind != "request" and v != kind:
            raise Invalid("an %s's 'type' is not \"%s\"" % (kind, kind))
        if k == "topic" and not (kind == "error" and v == "") and not (
                len(v.encode("utf-8", "surrogateescape")) <= MAX_TOPIC and TOPIC_RE.match(v)):
            raise Invalid("invalid topic")
        if kind == "request" and k in ("from", "last", "to") and v == 0:
            raise Invalid("'%s' must be at least 1" % k)
        if k == "credit" and not 1 <= v <= MAX_CREDIT:
            raise Invalid("'credit' must be 1..%d" % MAX_CREDIT)
        if k == "code" and not (1 <= len(v.encode("utf-8", "surrogateescape")) <= MAX_CODE and "\x00" not in v):
            raise Invalid("'code' is not 1..%d bytes without NUL" % MAX_CODE)
        if k == "reason" and "\x00" in v:
            raise Invalid("'reason' contains NUL")
    if consumed != len(data):
        raise Invalid("bytes after the map")
    if kind == "request":
        if "v" not in found or "type" not in found:
            raise Invalid("'v' and 'type' are required")
        if found["type"] == "replay":
            if "topic" not in found or "credit" not in found or ("from" in found) == ("last" in found):
                raise Invalid("replay needs 'topic', 'credit' and one of 'from' or 'last'")
            if "from" in found and "to" in found and found["to"] < found["from"]:
                raise Invalid("'to' is below 'from'")
        if found["type"] == "credit" and "credit" not in found:
            raise Invalid("credit needs 'credit'")
    elif kind == "end" and len(found) != len(spec):
        raise Invalid("end needs 'v', 'type', 'topic', 'from', 'last' and 'head'")
    elif kind == "error" and not all(k in found for k in ("v", "type", "topic", "code", "reason")):
        raise Invalid("error needs 'v', 'type', 'topic', 'code' and 'reason'")


def check_replay_vectors(vdir, result):
    rdir = os.path.join(vdir, "replay")
    names = sorted(os.listdir(rdir))
    valid = [n[:-5] for n in names if n.endswith(".json")]
    bad = [n[:-3] for n in names if n.startswith("bad-") and n.endswith(".mp")]
    result(len(valid) >= 10 and len(bad) >= 20, "replay",
           "only %d valid and %d bad replay vectors" % (len(valid), len(bad)))

    def kind(name):
        return name.replace("bad-", "", 1).split("-")[0]
    for name in valid:
        with open(os.path.join(rdir, name + ".mp"), "rb") as f:
            data = f.read()
        with open(os.path.join(rdir, name + ".json"), encoding="utf-8") as f:
            want = json.load(f)
        try:
            got = msgpack.unpackb(data, raw=False)
        except Exception as e:
            result(False, "replay/" + name, "python msgpack cannot read it: %s" % e)
            continue
        if got != want:
            result(False, "replay/" + name, "decoded content differs from the JSON")
            continue
        try:
            validate_replay(kind(name), data)
            result(True, "replay/" + name)
        except Invalid as e:
            result(False, "replay/" + name, "valid vector refused: %s" % e)
        accepted = []
        for cut in range(len(data)):
            try:
                validate_replay(kind(name), data[:cut])
                accepted.append(cut)
            except Invalid:
                pass
        result(not accepted, "replay/" + name + " (every prefix)", "prefixes accepted: %s" % accepted[:5])
    for name in bad:
        with open(os.path.join(rdir, name + ".mp"), "rb") as f:
            data = f.read()
        with open(os.path.join(rdir, name + ".txt"), encoding="utf-8") as f:
            want = f.readline().strip()
        try:
            validate_replay(kind(name), data)
            result(False, "replay/" + name, "accepted, want \"%s\"" % want)
        except Invalid as e:
            result(want in str(e), "replay/" + name, "refused for \"%s\", want \"%s\"" % (e, want))


def main():
    proto = os.environ.get("NW_PROTO") or os.path.join(os.path.dirname(__file__), "../../proto")
    vdir = os.path.join(proto, "vectors")
    names = sorted(os.listdir(vdir))
    passed = failed = 0

    def result(ok, name, why=""):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print("FAIL %s: %s" % (name, why))

    valid = [n[:-5] for n in names if n.endswith(".json")]
    bad = [n[:-3] for n in names if n.startswith("bad-") and n.endswith(".mp")]
    if len(valid) < 6 or len(bad) < 6:
        print("FAIL: only %d valid and %d bad vectors in %s" % (len(valid), len(bad), vdir))
        return 1
    for name in valid:
        with open(os.path.join(vdir, name + ".mp"), "rb") as f:
            data = f.read()
        with open(os.path.join(vdir, name + ".json"), encoding="utf-8") as f:
            want = json.load(f)
        try:
            got = msgpack.unpackb(data, raw=False)
        except Exception as e:
            result(False, name, "python msgpack cannot read it: %s" % e)
            continue
        if got != want:
            result(False, name, "decoded content differs from the JSON")
            continue
        try:
            validate(data)
            result(True, name)
        except Invalid as e:
            result(False, name, "valid vector refused: %s" % e)
        accepted = []
        for cut in range(len(data)):
            try:
                validate(data[:cut])
                accepted.append(cut)
            except Invalid:
                pass
        result(not accepted, name + " (every prefix)", "prefixes accepted: %s" % accepted[:5])
    for name in bad:
        with open(os.path.join(vdir, name + ".mp"), "rb") as f:
            data = f.read()
        with open(os.path.join(vdir, name + ".txt"), encoding="utf-8") as f:
            want = f.readline().strip()
        try:
            validate(data)
            result(False, name, "accepted, want \"%s\"" % want)
        except Invalid as e:
            result(want in str(e), name, "refused for \"%s\", want \"%s\"" % (e, want))
    check_replay_vectors(vdir, result)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
