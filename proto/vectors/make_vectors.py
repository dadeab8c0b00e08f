#!/usr/bin/python3
"""Writes the newswire v1 test vectors into this folder (run with Debian's python3 and
python3-msgpack: /usr/bin/python3 proto/vectors/make_vectors.py).

NN-name.mp    one valid body frame (frame 1); NN-name.json  its content as JSON
bad-name.mp   one invalid body frame;         bad-name.txt  a substring of the reason
                                                            nw_codec_message_decode() gives
canonical.txt the valid vectors nw_codec_pack_message() must reproduce byte for byte
              (their keys are in the encoder's order, which both take from the field
              lists of proto/nw_fields.h)

replay/       the replay protocol's messages (section 8), for proto/nw_replay.c:
  KIND-name.mp / .json        a valid request, end or error map (KIND: request, end, error)
  bad-KIND-name.mp / .txt     an invalid one and a substring of the reason the parser gives
  canonical.txt               the valid ones nw_replay_*_pack() reproduces byte for byte

With --check it writes nothing and fails when the committed files differ, or when a field of
proto/nw_fields.h is in no canonical vector (ctest proto.vectors_fresh runs that).

Output is deterministic: running this again must leave `git status` clean.
"""
import hashlib
import json
import os
import sys

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import nw_fields  # noqa: E402  (proto/nw_fields.py: the field lists of proto/nw_fields.h)

FIELDS = nw_fields.read()
EPOCH = "5b0e2c7d9a4f41e6b3c8d2a1f0e97c64"


def sha1(text):
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def article(uri, headline, body, versioncreated="2026-11-24T09:58:12.000Z", type_="text",
            description=None, subjects=None, **more):
    """The article map in nw_codec_pack_article()'s key order (proto/nw_fields.h),
    optional keys omitted. more: other article fields by their wire key (byline=...)."""
    values = dict(more, uri=uri, headline=headline, body_text=body, versioncreated=versioncreated,
                  type=type_, description_text=description)
    unknown = set(values) - set(nw_fields.keys("ARTICLE", FIELDS))
    if unknown:
        raise TypeError("not article fields of proto/nw_fields.h: %s" % sorted(unknown))
    a = {}
    for key in nw_fields.keys("ARTICLE", FIELDS):
        if key == "subject":
            if subjects:
                # a name, or (name, scheme, code): an IPTC Media Topic beside its topic name
                a[key] = [subject(*s) if isinstance(s, tuple) else subject(s) for s in subjects]
        elif values.get(key) is not None:
            a[key] = values[key]
    return a


def subject(name, scheme=None, code=None):
    """One article.subject map, keys in proto/nw_fields.h's order."""
    values = {"name": name, "scheme": scheme, "code": code}
    return {k: values[k] for k in nw_fields.keys("SUBJECT", FIELDS) if values[k] is not None}


def message(topic, seq, art, ident, sent="2026-11-24T10:00:00.123Z", source=None):
    """The message map in nw_codec_pack_message()'s key order (proto/nw_fields.h);
    source is (file, format) or (file, format, encoding), in that list's order."""
    values = {"v": 1, "topic": topic, "seq": seq, "epoch": EPOCH, "id": ident, "sent": sent,
              "article": art}
    if source is not None:
        values["source"] = dict(zip(nw_fields.keys("SOURCE", FIELDS), source))
    return {k: values[k] for k in nw_fields.keys("MESSAGE", FIELDS) if k in values}


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def pack_pairs(pairs):
    """A map from (key, packed value) pairs, for what a dict cannot hold (duplicates)."""
    p = msgpack.Packer(use_bin_type=True)
    out = p.pack_map_header(len(pairs))
    for k, packed in pairs:
        out += p.pack(k) + packed
    return out


def base(**over):
    """A valid full message to break in one place."""
    m = message("telecoms", 42,
                article("urn:newswire:drop:harbour-cable", "Harbour cable repaired ahead of schedule",
                        "Engineers finished splicing the damaged subsea cable on Sunday.\n\n"
                        "Traffic returned to the link within the hour.",
                        byline="Staff reporter", language="en", subjects=["Telecoms"]),
                sha1("harbour-cable"), source=("harbour-cable.txt", "header"))
    m.update(over)
    return m


def valid_vectors():
    v = {}
    v["01-minimal"] = (message(
        "general", 1,
        article("urn:newswire:drop:quiet-day", "A quiet day at the exchange",
                "Nothing moved much.", type_=None),
        sha1("quiet-day")), False)

    v["02-full"] = (message(
        "geopolitics.europe", 17,
        article("urn:newswire:drop:summit-talks", "Ministers agree on a second round of talks",
                "Delegations met for six hours and agreed to meet again next month.\n\n"
                "No joint statement was issued.",
                versioncreated="2026-11-24T08:30:00.000Z", byline="By A. Writer and B. Editor",
                description="Talks will resume in December.", language="en",
                subjects=["Geopolitics", "Europe"]),
        sha1("summit-talks"), sent="2026-11-24T08:30:01.250Z",
        source=("europe/summit-talks.txt", "header")), True)

    v["03-utf8"] = (message(
        "general", 3,
        article("urn:newswire:drop:z\u00fcrich-tokyo",
                "Z\u00fcrich \u2192 \u6771\u4eac: new fibre route opens \U0001F4E1",
                "\u00c7a marche. \u0645\u0631\u062d\u0628\u0627. \u3053\u3093\u306b\u3061\u306f. "
                "Emoji with joiner: \U0001F469\u200D\U0001F4BB; combining: e\u0301.",
                byline="R\u00e9dactrice \u00c9lo\u00efse", description="\u201cFaster\u201d, they said.",
                language="fr", subjects=["T\u00e9l\u00e9coms", "\u65e5\u672c"]),
        sha1("zurich-tokyo"), source=("caf\u00e9-\u6771\u4eac.txt", "scraped")), True)

    v["04-subjects"] = (message(
        "telecoms.5g", 9,
        article("urn:newswire:drop:spectrum-auction", "Spectrum auction raises record sum",
                "Four operators bid for the 3.5 GHz band.",
                subjects=["Telecoms", "5G", "Economy", "Regulation", "Markets/Auctions"]),
        sha1("spectrum-auction"), source=("spectrum-auction.json", "ninjs")), True)

    unknown = message(
        "telecoms", 5,
        article("urn:newswire:drop:future", "Extra keys are ignored", "Readers skip what they do not know."),
        sha1("future"), source=("future.txt", "header"))
    unknown["priority"] = 3
    unknown["trace"] = {"hops": ["a", "b"], "ok": True, "ratio": 0.5, "none": None}
    unknown["source"]["mtime"] = -12
    unknown["article"]["ednote"] = "not for publication"
    unknown["article"]["subject"] = [{"name": "Telecoms", "code": "medtop:20000304", "rel": ["about"]}]
    unknown["article"]["altids"] = {"drop": "future.txt"}
    v["05-unknown-keys"] = (unknown, False)

    v["06-large-seq"] = (message(
        "economy", 2 ** 53 + 1,
        article("urn:newswire:drop:long-running", "A topic with a long history",
                "Sequence numbers are 64-bit unsigned integers.", language="en"),
        sha1("long-running"), source=("long-running.txt", "header")), True)

    ordered = message(
        "economy.markets", 2 ** 32,
        article("urn:newswire:drop:reordered", "Keys may come in any order", "Maps are unordered.",
                byline="Desk", subjects=["Markets"]),
        sha1("reordered"), source=("reordered.txt", "header"))
    ordered["article"] = dict(reversed(list(ordered["article"].items())))
    v["07-key-order"] = (dict(reversed(list(ordered.items()))), False)

    long_topic = ".".join(["level%03d" % i for i in range(28)])   # 28*9-1 = 251 bytes
    long_topic += ".abc"
    assert len(long_topic) == 255
    v["08-limits"] = (message(
        long_topic, 1,
        article("urn:newswire:drop:limits", "At the limits", "Topic of 255 bytes, 64 subjects.",
                subjects=["Subject %02d" % i for i in range(64)]),
        sha1("limits"), source=("limits.txt", "header")), True)

    v["09-source-encoding"] = (message(
        "general", 4,
        article("urn:newswire:drop:harbour-caf\u00e9", "Harbour caf\u00e9 wins a \u201cbest view\u201d award",
                "The owner said the \u20ac500 prize goes to the staff."),
        sha1("harbour-cafe"), source=("harbour-cafe.txt", "header", "windows-1252")), True)

    medtop = "http://cv.iptc.org/newscodes/mediatopic/"
    v["10-markup-media-topics"] = (message(
        "economy-business-finance", 12,
        article("urn:newsml:wire.example.org:20240903:harbour-cranes", "Harbour cranes go electric",
                "The port authority said all twelve diesel cranes will be replaced.",
                byline="Ana Lima, Bo Chen", language="en-GB",
                subjects=[("economy-business-finance", medtop, "medtop:04000000"),
                          ("labour", medtop, "medtop:09000000"), "harbours"]),
        sha1("harbour-cranes"), source=("wire.xml", "newsml-g2")), True)

    v["11-version-located"] = (message(
        "telecoms", 3,
        article("urn:newsml:wire.example.org:20240905:mast-sharing", "Operators agree to share masts",
                "The agreement covers four hundred rural sites.", language="en",
                version="3", located="LISBON", subjects=["telecoms"]),
        sha1("mast-sharing"), source=("mast.xml", "nitf")), True)
    return v


def bad_vectors():
    b = {}
    full = pack(base())
    b["bad-seq-type"] = (pack(base(seq="42")), '"seq" is not an unsigned integer')
    m = base()
    del m["article"]["headline"]
    b["bad-missing-headline"] = (pack(m), 'missing key "article.headline"')
    b["bad-version-2"] = (pack(base(v=2)), "unsupported version 2")
    b["bad-truncated"] = (full[: len(full) // 2], "truncated message")
    b["bad-trailing-bytes"] = (full + b"\xc0", "trailing bytes after the message map")
    m = base()
    m["article"]["headline"] = "Before\x00after"
    b["bad-nul-in-string"] = (pack(m), '"article.headline" contains NUL')
    b["bad-topic-too-long"] = (pack(base(topic="t" * 256)), '"topic" longer than 255 bytes')
    nested = "deep"
    for _ in range(20):
        nested = [nested]
    b["bad-deep-nesting"] = (pack(base(extension=nested)), "nested deeper than 8 levels")
    b["bad-seq-zero"] = (pack(base(seq=0)), '"seq" is 0')
    b["bad-epoch-not-hex"] = (pack(base(epoch="5B0E2C7D9A4F41E6B3C8D2A1F0E97C64")),
                              '"epoch" is not 32 lowercase hex digits')
    m = base()
    m["article"]["subject"] = [{"name": "s%d" % i} for i in range(65)]
    b["bad-too-many-subjects"] = (pack(m), '"article.subject" has more than 64 entries')
    m = base()
    m["article"]["body_text"] = "bad byte: @@"
    b["bad-invalid-utf8"] = (pack(m).replace(b"bad byte: @@", b"bad byte: \xc3\x28"),
                             '"article.body_text" is not valid UTF-8')
    b["bad-not-a-map"] = (pack([1, "telecoms", 42]), "message is not a map")
    # A map32 header claiming 4 billion entries: must be refused without allocating.
    b["bad-huge-count"] = (b"\xdf\xff\xff\xff\xff" + pack("v") + pack(1), "truncated message")
    pairs = [(k, pack(v)) for k, v in base().items()]
    pairs.insert(3, ("seq", pack(43)))
    b["bad-duplicate-key"] = (pack_pairs(pairs), 'duplicate key "seq"')
    b["bad-sent-format"] = (pack(base(sent="2026-11-24 10:00:00")), '"sent" is not an RFC 3339 UTC time')
    m = base()
    m["article"]["subject"] = ["Telecoms"]
    b["bad-subject-not-map"] = (pack(m), '"article.subject" entry is not a map')
    pairs = [(k, pack(v)) for k, v in base().items()] + [(7, pack("x"))]
    b["bad-key-not-string"] = (pack_pairs(pairs), "a map key is not a string")
    b["bad-reserved-byte"] = (b"\xc1", "malformed MessagePack")
    b["bad-empty"] = (b"", "empty message")
    m = base()
    del m["article"]
    b["bad-missing-article"] = (pack(m), 'missing key "article"')
    m = base()
    m["article"]["headline"] = b"binary, not str"
    b["bad-bin-not-str"] = (pack(m), '"article.headline" is not a string')
    m = base()
    m["source"] = {"file": "a.txt", "format": "header", "encoding": 1252}
    b["bad-source-encoding-type"] = (pack(m), '"source.encoding" is not a string')
    m = base()
    m["article"]["version"] = 3
    b["bad-version-not-str"] = (pack(m), '"article.version" is not a string')
    m = base()
    m["article"]["located"] = "x" * 4097
    b["bad-located-too-long"] = (pack(m), '"article.located" longer than 4096 bytes')
    return b


def replay_vectors():
    """{name: (map, canonical)} of valid replay messages, keys in nw_replay's order."""
    def req(type_, **keys):
        m = {"v": 1, "type": type_}
        for k in ("topic", "from", "last", "to", "credit"):
            if k in keys:
                m[k] = keys.pop(k)
        m.update(keys)
        return m
    v = {}
    v["request-replay-from"] = (req("replay", topic="telecoms.5g", **{"from": 5}, to=9, credit=256), True)
    v["request-replay-last"] = (req("replay", topic="general", last=10, credit=1000), True)
    v["request-replay-open"] = (req("replay", topic="geopolitics.europe", **{"from": 1}, credit=1), True)
    v["request-replay-large-seq"] = (req("replay", topic="t", **{"from": 2 ** 63 - 2}, to=2 ** 63 - 1,
                                         credit=128), True)
    v["request-credit"] = (req("credit", credit=128), True)
    v["request-cancel"] = (req("cancel"), True)
    # later revisions may add keys with scalar values: ignored
    v["request-unknown-key"] = (req("replay", topic="telecoms", **{"from": 3}, credit=10,
                                    priority="low", weight=2.5, hint=None), False)
    v["end-range"] = ({"v": 1, "type": "end", "topic": "telecoms", "from": 3, "last": 7, "head": 9}, True)
    v["end-beyond-head"] = ({"v": 1, "type": "end", "topic": "telecoms.5g", "from": 12, "last": 0,
                             "head": 9}, True)
    v["error-retention"] = ({"v": 1, "type": "error", "topic": "telecoms", "code": "retention",
                             "reason": "older than the oldest held", "oldest": 40}, True)
    v["error-busy"] = ({"v": 1, "type": "error", "topic": "general", "code": "busy",
                        "reason": "too many streams"}, True)
    v["error-no-topic"] = ({"v": 1, "type": "error", "topic": "", "code": "bad-request",
                            "reason": "not a MessagePack map"}, True)
    v["error-unknown-code"] = ({"v": 1, "type": "error", "topic": "sport", "code": "maintenance",
                                "reason": "receivers accept codes they do not know", "since": 12}, False)
    return v


def bad_replay_vectors():
    """{name: (bytes, reason)} of invalid replay messages."""
    ok = {"v": 1, "type": "replay", "topic": "telecoms", "from": 1, "credit": 10}
    end = {"v": 1, "type": "end", "topic": "telecoms", "from": 3, "last": 7, "head": 9}
    err = {"v": 1, "type": "error", "topic": "telecoms", "code": "busy", "reason": "later"}

    def but(m, **over):
        m = dict(m)
        for k, val in over.items():
            k = k.rstrip("_")
            if val is None:
                del m[k]
            else:
                m[k] = val
        return pack(m)
    b = {}
    b["bad-request-version-2"] = (but(ok, v=2), "unsupported version 2")
    b["bad-request-unknown-type"] = (but(ok, type="rewind"), "unknown request type")
    b["bad-request-credit-zero"] = (but(ok, credit=0), "'credit' must be 1..1000")
    b["bad-request-credit-1001"] = (but(ok, credit=1001), "'credit' must be 1..1000")
    b["bad-request-from-and-last"] = (but(ok, last=5),
                                      "replay needs 'topic', 'credit' and one of 'from' or 'last'")
    b["bad-request-no-topic"] = (but(ok, topic=None),
                                 "replay needs 'topic', 'credit' and one of 'from' or 'last'")
    b["bad-request-to-below-from"] = (but(ok, from_=8, to=7), "'to' is below 'from'")
    b["bad-request-from-zero"] = (but(ok, from_=0), "'from' must be at least 1")
    b["bad-request-from-negative"] = (but(ok, from_=-1), "'from' is not a non-negative integer")
    b["bad-request-topic-uppercase"] = (but(ok, topic="Telecoms"), "invalid topic")
    b["bad-request-topic-terminated"] = (but(ok, topic="telecoms."), "invalid topic")
    b["bad-request-topic-256"] = (but(ok, topic="t" * 256), "invalid topic")
    b["bad-request-topic-bin"] = (but(ok, topic=b"telecoms"), "'topic' is not a string")
    b["bad-request-missing-v"] = (but(ok, v=None), "'v' and 'type' are required")
    b["bad-request-credit-missing"] = (pack({"v": 1, "type": "credit"}), "credit needs 'credit'")
    pairs = [(k, pack(x)) for k, x in ok.items()] + [("credit", pack(11))]
    b["bad-request-duplicate-key"] = (pack_pairs(pairs), "duplicate key 'credit'")
    b["bad-request-nested"] = (but(ok, extra={"a": 1}), "truncated, or a map, array or ext value")
    b["bad-request-key-not-string"] = (pack_pairs([(k, pack(x)) for k, x in ok.items()] + [(7, pack(1))]),
                                       "a key is not a string")
    b["bad-request-not-a-map"] = (pack(["replay", "telecoms"]), "not a MessagePack map")
    full = pack(ok)
    b["bad-request-trailing-bytes"] = (full + b"\xc0", "bytes after the map")
    b["bad-request-truncated"] = (full[:-3], "truncated, or a map, array or ext value")
    b["bad-request-empty"] = (b"", "truncated")
    # A map32 header claiming 4 billion entries: refused before anything is read.
    b["bad-request-huge-count"] = (b"\xdf\xff\xff\xff\xff" + pack("v") + pack(1), "more than 16 keys")
    b["bad-request-oversized"] = (but(ok, padding="p" * 4096), "request larger than 4096 bytes")
    b["bad-end-missing-head"] = (but(end, head=None), "end needs 'v', 'type', 'topic', 'from', 'last' and 'head'")
    b["bad-end-type-error"] = (but(end, type="error"), "an end's 'type' is not \"end\"")
    b["bad-end-topic-empty"] = (but(end, topic=""), "invalid topic")
    b["bad-end-version-2"] = (but(end, v=2), "unsupported version 2")
    b["bad-end-last-string"] = (but(end, last="7"), "'last' is not a non-negative integer")
    b["bad-end-oversized"] = (but(end, padding="p" * 4096), "reply larger than 4096 bytes")
    b["bad-error-missing-code"] = (but(err, code=None), "error needs 'v', 'type', 'topic', 'code' and 'reason'")
    b["bad-error-code-too-long"] = (but(err, code="c" * 33), "'code' is not 1..32 bytes without NUL")
    b["bad-error-code-empty"] = (but(err, code=""), "'code' is not 1..32 bytes without NUL")
    b["bad-error-oldest-string"] = (but(err, oldest="40"), "'oldest' is not a non-negative integer")
    b["bad-error-type-end"] = (but(err, type="end"), "an error's 'type' is not \"error\"")
    b["bad-error-reason-nul"] = (but(err, reason="a\x00b"), "'reason' contains NUL")
    b["bad-error-topic-invalid"] = (but(err, topic="a..b"), "invalid topic")
    return b


def all_files():
    """{file name: bytes} of every vector, in a fixed order."""
    files = {}
    canonical = []
    for name, (obj, is_canonical) in valid_vectors().items():
        files[name + ".mp"] = pack(obj)
        files[name + ".json"] = (json.dumps(obj, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        if is_canonical:
            canonical.append(name)
    for name, (data, reason) in bad_vectors().items():
        files[name + ".mp"] = data
        files[name + ".txt"] = (reason + "\n").encode("utf-8")
    files["canonical.txt"] = "".join(n + "\n" for n in canonical).encode("ascii")
    canonical = []
    for name, (obj, is_canonical) in replay_vectors().items():
        files["replay/" + name + ".mp"] = pack(obj)
        files["replay/" + name + ".json"] = (json.dumps(obj, indent=2) + "\n").encode("utf-8")
        if is_canonical:
            canonical.append(name)
    for name, (data, reason) in bad_replay_vectors().items():
        files["replay/" + name + ".mp"] = data
        files["replay/" + name + ".txt"] = (reason + "\n").encode("utf-8")
    files["replay/canonical.txt"] = "".join(n + "\n" for n in canonical).encode("ascii")
    return files


def on_disk():
    """Vector files now in this folder and replay/, as all_files() names them."""
    names = set()
    for sub in ("", "replay/"):
        folder = os.path.join(HERE, sub)
        if os.path.isdir(folder):
            names |= {sub + n for n in os.listdir(folder) if n.endswith((".mp", ".json", ".txt"))}
    return names


def uncovered():
    """Fields of proto/nw_fields.h that no canonical valid vector carries: the encoder's
    byte-for-byte check (test_codec) would never see them packed."""
    seen = set()

    def walk(m, prefix):
        for k, v in m.items():
            seen.add(prefix + k)
            if isinstance(v, dict) and prefix + k in ("source", "article"):
                walk(v, prefix + k + ".")
            if prefix + k == "article.subject":
                for entry in v:
                    walk(entry, "article.subject.")
    for obj, is_canonical in valid_vectors().values():
        if is_canonical:
            walk(obj, "")
    return [f.path for fields in FIELDS.values() for f in fields if f.path not in seen]


def check():
    """--check: the committed vectors are what this script makes (and nothing else), and
    every field of proto/nw_fields.h is in a canonical vector."""
    files = all_files()
    present = on_disk()
    stale = sorted(present.symmetric_difference(files))
    for name, data in files.items():
        if name in present:
            with open(os.path.join(HERE, name), "rb") as f:
                if f.read() != data:
                    stale.append(name)
    for name in stale:
        print("stale: %s" % name)
    missing = uncovered()
    for path in missing:
        print("uncovered: %s is in proto/nw_fields.h but in no canonical vector" % path)
    fields = sum(len(f) for f in FIELDS.values())
    print("%d passed, %d failed" % (len(files) - len(stale) + fields - len(missing),
                                    len(stale) + len(missing)))
    return 1 if stale or missing else 0


def main():
    if sys.argv[1:] == ["--check"]:
        return check()
    for old in on_disk():
        os.remove(os.path.join(HERE, old))
    os.makedirs(os.path.join(HERE, "replay"), exist_ok=True)
    for name, data in all_files().items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
    print("wrote %d valid and %d bad vectors, %d valid and %d bad replay vectors, to %s"
          % (len(valid_vectors()), len(bad_vectors()), len(replay_vectors()), len(bad_replay_vectors()), HERE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
