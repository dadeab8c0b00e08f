"""nw_fields: the field lists of proto/nw_fields.h, read for the Python tools of the tree
(proto/vectors/make_vectors.py, proto/check_fields.py), so they follow the one
declaration instead of keeping a copy. The header is the source; this only parses it.

    lists = nw_fields.read()          # {"MESSAGE": [Field, ...], "SOURCE": ..., ...}
    [f.key for f in lists["ARTICLE"]] # wire order
"""
import collections
import os
import re

HEADER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nw_fields.h")
LISTS = ("MESSAGE", "SOURCE", "ARTICLE", "SUBJECT")
STRING_KINDS = ("TEXT", "SHORT", "TOPIC", "HEX32", "HEX40", "TIME")
KINDS = STRING_KINDS + ("VERSION", "SEQ", "SOURCE", "ARTICLE", "SUBJECTS")
PRESENCES = ("REQUIRED", "OPTIONAL", "TEXT_DEFAULT")
PREFIX = {"MESSAGE": "", "SOURCE": "source.", "ARTICLE": "article.",
          "SUBJECT": "article.subject."}

Field = collections.namedtuple("Field", "member key kind presence accessor path")

_DEFINE = re.compile(r"^#define NW_FIELDS_(\w+)\(X\)")
_ENTRY = re.compile(r'\bX\(\s*(\w+)\s*,\s*"([^"]+)"\s*,\s*(\w+)\s*,\s*(\w+)\s*,\s*(\w+)\s*\)')


def _strip_comments(text):
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


def read(path=HEADER):
    """{list name: [Field]} in declaration (wire) order; ValueError on a malformed line."""
    with open(path, encoding="utf-8") as f:
        lines = _strip_comments(f.read().replace("\\\n", "\\\x00")).split("\n")
    lists = {}
    for line in lines:
        m = _DEFINE.match(line)
        if not m:
            continue
        name = m.group(1)
        body = line[m.end():].replace("\\\x00", " ")
        fields = []
        for e in _ENTRY.finditer(body):
            member, key, kind, presence, accessor = e.groups()
            if kind not in KINDS or presence not in PRESENCES:
                raise ValueError("%s: %s: unknown kind or presence" % (name, key))
            fields.append(Field(member, key, kind, presence, accessor, PREFIX[name] + key))
        leftover = _ENTRY.sub("", body).strip()
        if leftover:
            raise ValueError("NW_FIELDS_%s: cannot read %r" % (name, leftover[:60]))
        lists[name] = fields
    if tuple(sorted(lists)) != tuple(sorted(LISTS)):
        raise ValueError("%s: want lists %s, found %s" % (path, LISTS, sorted(lists)))
    return lists


def keys(name, lists=None):
    return [f.key for f in (lists or read())[name]]
