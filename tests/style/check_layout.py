#!/usr/bin/python3
"""The one code layout (ctest style.layout): every tracked .c and .h under daemon/,
clients/, proto/, include/ and tests/ is exactly what clang-format makes of it with the
project's .clang-format.

    check_layout.py SOURCE_DIR CLANG_FORMAT

The layout is defined for clang-format 14 (Debian 12's; .ci/deps installs it): another
version lays some constructs out differently, so it is refused rather than trusted. To
lay a file out: clang-format -i FILE (from the source tree, which finds .clang-format).
"""
import os
import re
import subprocess
import sys

FOLDERS = ("daemon", "clients", "proto", "include", "tests")
WANT_MAJOR = 14
# Lines whose layout .clang-format settles: if clang-format passes this, it is not
# checking at all (a config it cannot read, a --Werror it ignores).
MISLAID = "int  main( void ){return 0;}\n"


def fail(msg):
    print("style.layout: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 3:
        fail("usage: check_layout.py SOURCE_DIR CLANG_FORMAT")
    src, tool = sys.argv[1], sys.argv[2]
    config = os.path.join(src, ".clang-format")
    if not os.path.isfile(config):
        fail("%s is missing" % config)
    if not tool or tool.endswith("NOTFOUND") or not os.access(tool, os.X_OK):
        fail("clang-format %d not found (install clang-format: .ci/deps)" % WANT_MAJOR)
    version = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"clang-format version (\d+)\.", version)
    if not m or int(m.group(1)) != WANT_MAJOR:
        fail("%s is %r; the layout is defined for clang-format %d"
             % (tool, version.strip(), WANT_MAJOR))
    style = "--style=file:" + config

    probe = subprocess.run([tool, style, "--dry-run", "--Werror", "--assume-filename=probe.c"],
                           input=MISLAID, capture_output=True, text=True)
    if probe.returncode == 0:
        fail("clang-format accepted a mislaid line: it is not checking (%s)" % probe.stderr)

    listed = subprocess.run(["git", "-C", src, "ls-files", "-z", "--"] + list(FOLDERS),
                            capture_output=True)
    if listed.returncode != 0:
        fail("cannot list the tracked files (git ls-files in %s): %s"
             % (src, listed.stderr.decode(errors="replace").strip()))
    files = sorted(f for f in listed.stdout.decode().split("\0")
                   if f.endswith((".c", ".h")) and os.path.isfile(os.path.join(src, f)))
    if not files:
        fail("no tracked .c or .h files under %s" % ", ".join(FOLDERS))

    bad, shown = [], []
    for i in range(0, len(files), 50):
        chunk = files[i:i + 50]
        run = subprocess.run([tool, style, "--dry-run", "--Werror"] + chunk, cwd=src,
                             capture_output=True, text=True)
        if run.returncode != 0:
            found = sorted(set(re.findall(r"^(\S+?):\d+:\d+: error:", run.stderr, re.M)))
            if not found:
                fail("clang-format failed (exit %d): %s" % (run.returncode, run.stderr))
            bad += found
            shown += run.stderr.splitlines()
    if bad:
        # the first places, as clang-format shows them (all of them can run to thousands)
        sys.stderr.write("\n".join(shown[:60]) + "\n")
        fail("%d of %d files are not laid out as .clang-format says: %s\n"
             "lay them out with: clang-format -i %s"
             % (len(bad), len(files), ", ".join(bad), " ".join(bad)))
    print("style.layout: %d files laid out as .clang-format says" % len(files))


if __name__ == "__main__":
    main()
