#!/usr/bin/python3
"""check_fields: every place that must name a wire field by hand names each field of
proto/nw_fields.h, and names no field it lacks (ctest proto.fields_in_step).

The codec, libnewswire's accessors, newswire-sub's JSON and fuzz_codec are expanded from
the lists and need no check; what cannot be expanded is checked here:
  include/newswire.h           a declaration of each nw_message_ACCESSOR()
                               (and no field accessor beyond the list)
  debian/libnewswire0.symbols  each accessor exported
  clients/libnewswire.3        each accessor documented
  proto/newswire-v1.md         a row per message and article key (type and Req. as the
                               list says, rows in the list's order, which the spec calls
                               the reference publisher's), source and subject keys in
                               their row
  tests/e2e/test_vectors.py    the independent reading has a rule per key, of the same
                               type, kind and presence (its rules stay its own)
  clients/python/newswire_sub.py  the Python sample reads each message, source and
                               article key
  daemon/*.c                   the publisher sets each member of nw_envelope_t and
                               nw_ninjs_t (a designated initializer `.member =`)
(The vectors carrying every field is proto.vectors_fresh's: make_vectors.py --check.)
"""
import importlib.util
import os
import re
import sys

PROTO = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(PROTO)
sys.path.insert(0, PROTO)
import nw_fields  # noqa: E402

# nw_message_*() that are not a field's: the message's own state and the subject count.
NOT_FIELDS = {"subject_count", "gap_before", "epoch_changed", "destroy"}
SPEC_TYPE = {"VERSION": "uint", "SEQ": "uint", "SOURCE": "map", "ARTICLE": "map",
             "SUBJECTS": "array"}
INDEPENDENT_KIND = {"TEXT": "text", "SHORT": "short", "TOPIC": "topic", "HEX32": "hex32",
                    "HEX40": "hex40", "TIME": "time"}

passed = failed = 0


def result(ok, what, why=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL %s%s" % (what, ": " + why if why else ""))


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def accessors(lists):
    return [(name, f) for name, fields in lists.items() for f in fields if f.accessor != "_"]


def check_library(lists):
    header, symbols, man = read("include/newswire.h"), read("debian/libnewswire0.symbols"), \
        read("clients/libnewswire.3")
    for _, f in accessors(lists):
        fn = "nw_message_" + f.accessor
        result(re.search(r"\b%s\(const nw_message_t \*self" % fn, header), f.path,
               "include/newswire.h does not declare %s()" % fn)
        result(re.search(r"^ %s@Base " % fn, symbols, re.M), f.path,
               "debian/libnewswire0.symbols does not list %s" % fn)
        result(re.search(r"\b%s\b(?!_)" % fn, man), f.path,
               "clients/libnewswire.3 does not document %s()" % fn)
    listed = {f.accessor for _, f in accessors(lists)} | NOT_FIELDS
    for fn in re.findall(r"\bnw_message_(\w+)\(\s*(?:const\s+)?nw_message_t\b", header):
        result(fn in listed, "nw_message_%s()" % fn,
               "include/newswire.h declares it, but no field of proto/nw_fields.h has it "
               "as accessor (or add it to NOT_FIELDS in %s)" % os.path.basename(__file__))


def spec_rows(spec, section):
    """{key: (type, req, row)} of the table in the section titled section."""
    start = spec.index(section)
    end = spec.find("\n### ", start + 1)
    rows = {}
    for line in spec[start:end].splitlines():
        m = re.match(r"^\| `([^`]+)` \| (\w+) \| (\w+) \| (.*)\|$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3), m.group(4))
    return rows


def check_spec(lists):
    spec = read("proto/newswire-v1.md")
    tables = {"MESSAGE": spec_rows(spec, "### 4.1 Envelope"),
              "ARTICLE": spec_rows(spec, "### 4.2 Article")}
    for name, rows in tables.items():
        for f in lists[name]:
            row = rows.get(f.key)
            result(row is not None, f.path, "proto/newswire-v1.md has no row for `%s`" % f.key)
            if row is None:
                continue
            want_type = SPEC_TYPE.get(f.kind, "str")
            want_req = "yes" if f.presence == "REQUIRED" else "no"
            result(row[:2] == (want_type, want_req), f.path,
                   "proto/newswire-v1.md says %s, %s; proto/nw_fields.h %s, %s"
                   % (row[0], row[1], want_type, want_req))
        known = {f.key for f in lists[name]}
        for key in rows:
            result(key in known, "spec `%s`" % key,
                   "proto/newswire-v1.md has a row for a key proto/nw_fields.h lacks")
        # The spec says the reference publisher writes keys in its tables' order.
        order = [k for k in rows if k in known]
        listed = [f.key for f in lists[name] if f.key in rows]
        result(order == listed, "spec %s order" % name.lower(),
               "proto/newswire-v1.md's rows go %s, proto/nw_fields.h %s" % (order, listed))
    for name, holder, rows in (("SOURCE", "source", tables["MESSAGE"]),
                               ("SUBJECT", "subject", tables["ARTICLE"])):
        row = rows.get(holder, ("", "", ""))[2]
        for f in lists[name]:
            result("`%s`" % f.key in row, f.path,
                   "proto/newswire-v1.md's `%s` row does not name `%s`" % (holder, f.key))


def check_independent(lists):
    path = os.path.join(ROOT, "tests", "e2e", "test_vectors.py")
    spec = importlib.util.spec_from_file_location("test_vectors", path)
    tv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tv)
    want_type = {"VERSION": int, "SEQ": int, "SOURCE": tv.Pairs, "ARTICLE": tv.Pairs,
                 "SUBJECTS": list}
    for name in nw_fields.LISTS:
        rules = getattr(tv, name)
        for f in lists[name]:
            rule = rules.get(f.key)
            result(rule is not None, f.path,
                   "tests/e2e/test_vectors.py's %s has no rule for it" % name)
            if rule is None:
                continue
            got = (rule[0], rule[1], rule[2], rule[3])
            want = (f.path, want_type.get(f.kind, str), f.presence == "REQUIRED",
                    INDEPENDENT_KIND.get(f.kind))
            result(got == want, f.path, "tests/e2e/test_vectors.py reads it as %r, "
                   "proto/nw_fields.h says %r" % (got, want))
        known = {f.key for f in lists[name]}
        for key in rules:
            result(key in known, "test_vectors.py %s %r" % (name, key),
                   "a rule for a key proto/nw_fields.h lacks")


def check_python_sample(lists):
    sample = read("clients/python/newswire_sub.py")
    for name in ("MESSAGE", "SOURCE", "ARTICLE"):
        for f in lists[name]:
            result('"%s"' % f.key in sample, f.path,
                   "clients/python/newswire_sub.py never reads \"%s\"" % f.key)


def check_daemon(lists):
    """The publisher sets each member where it fills nw_envelope_t and nw_ninjs_t
    (designated initializers in daemon/*.c): a field it never sets is never sent."""
    daemon = os.path.join(ROOT, "daemon")
    text = ""
    for name in sorted(os.listdir(daemon)):
        if name.endswith(".c"):
            text += read(os.path.join("daemon", name))
    for name in nw_fields.LISTS:
        for f in lists[name]:
            if f.member == "_":
                continue
            struct = "nw_ninjs_t" if name in ("ARTICLE", "SUBJECT") else "nw_envelope_t"
            result(re.search(r"\.%s\s*=[^=]" % f.member, text), f.path,
                   "no daemon/*.c sets %s .%s: the daemon would never send it"
                   % (struct, f.member))


def main():
    lists = nw_fields.read()
    check_library(lists)
    check_spec(lists)
    check_independent(lists)
    check_python_sample(lists)
    check_daemon(lists)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
