"""check_man: every man page formats without a groff warning, has a whatis line, and says
what the code does, so pages and programs cannot drift apart:

- `man --warnings -l PAGE` prints nothing on stderr (man exits 0 even on warnings, so
  any stderr output is the failure), the first section is NAME and `lexgrog PAGE`
  finds its whatis line there;
- every option a program's --help prints appears in its page, and every option the
  page's OPTIONS section documents is one --help prints;
- every long option of newswired is a key of newswired.cfg(5) (the config file mirrors
  the flags), except those that only make sense on a command line;
- every default newswired --help prints (made, like the rest of --help, from the one
  table of settings in daemon/config.c) is the one newswired(8) and newswired.cfg(5)
  give for that option and key, and the settings --help says a reload changes are
  those newswired.cfg(5) says it applies;
- the README's synopsis (section Configuration) names every option --help prints, and
  no other;
- every function and macro of include/newswire.h appears in libnewswire(3);
- `cmake --install` puts each page in share/man/manN, where man(1) finds it by name.

Usage: check_man.py SOURCE_DIR BIN_DIR [PAGE...] (no PAGE: all of them).
"""
import os, re, shutil, subprocess, sys, tempfile

SRC, BIN = sys.argv[1], sys.argv[2]

PAGES = {
    'daemon/newswired.8': 'newswired',
    'daemon/newswired.cfg.5': None,
    'clients/newswire-sub.1': 'newswire-sub',
    'clients/newswire-drop.1': 'newswire-drop',
    'clients/newswire-keygen.1': 'newswire-keygen',
    'clients/libnewswire.3': None,
    'proto/newswire.7': None,
}
# Flags with no config-file key: they pick the file, or answer and exit.
NOT_IN_CONFIG = {'--config', '--version', '--help'}

failures = []


def fail(what):
    failures.append(what)
    print('FAIL: ' + what)


def roff_text(path):
    """The page's source as plain words: \\- as -, font escapes dropped, comments gone."""
    out = []
    for line in open(path, encoding='utf-8'):
        if line.startswith('.\\"'):
            continue
        line = line.replace('\\-', '-').replace('\\&', '').replace('\\e', '\\')
        line = re.sub(r'\\f[BIRP]|\\f\(..|\\c', '', line)
        out.append(line)
    return ''.join(out)


def options_in(text):
    """-x and --long-name tokens, not parts of longer words."""
    return set(re.findall(r'(?<![\w-])(--[a-z][a-z0-9-]*[a-z0-9]|-[A-Za-z])(?![\w-])', text))


def help_options(program):
    r = subprocess.run([os.path.join(BIN, program), '--help'], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f'{program} --help exits {r.returncode}')
        return set()
    # Only the option table: lines that start (after indentation) with an option.
    lines = [l for l in r.stdout.splitlines() if re.match(r'\s+-', l)]
    found = set()
    for l in lines:
        head = re.split(r'\s{2,}', l.strip())[0]
        found |= options_in(head)
    if not found:
        fail(f'{program} --help lists no options')
    return found


def section(text, name):
    m = re.search(r'^\.SH "?' + name + r'"?\n(.*?)(?=^\.SH |\Z)', text, re.M | re.S)
    return m.group(1) if m else ''


def documented_options(text):
    """Options named on the tag line of each .TP/.TQ entry of OPTIONS."""
    found = set()
    lines = section(text, 'OPTIONS').splitlines()
    for i, l in enumerate(lines[:-1]):
        if l.strip() in ('.TP', '.TQ'):
            found |= options_in(lines[i + 1])
    return found


def check_page(rel, program):
    before = len(failures)
    path = os.path.join(SRC, rel)
    if not os.path.exists(path):
        fail(f'{rel}: missing')
        return
    r = subprocess.run(['man', '--warnings', '-E', 'UTF-8', '-l', path],
                       capture_output=True, text=True, env=dict(os.environ, MANWIDTH='80',
                                                                 MAN_KEEP_FORMATTING='0'))
    if r.returncode != 0 or r.stderr.strip():
        fail(f'{rel}: man --warnings: exit {r.returncode}: {r.stderr.strip()}')
    if not r.stdout.strip():
        fail(f'{rel}: formats to nothing')
    r = subprocess.run(['lexgrog', path], capture_output=True, text=True)
    if r.returncode != 0 or 'parse failed' in r.stdout:
        fail(f'{rel}: lexgrog finds no whatis line: {r.stdout.strip()} {r.stderr.strip()}')
    name = os.path.basename(rel).rsplit('.', 1)[0]
    if not re.search(r'"' + re.escape(name) + r' - \S', r.stdout):
        fail(f'{rel}: whatis line does not name {name}: {r.stdout.strip()}')

    text = roff_text(path)
    first = re.search(r'^\.SH "?([^"\n]*)', text, re.M)
    if not first or first.group(1) != 'NAME':
        fail(f'{rel}: the first section is not NAME')
    if program:
        helped = help_options(program)
        in_page = options_in(text)
        for opt in sorted(helped - in_page):
            fail(f'{rel}: {program} --help prints {opt}, the page does not mention it')
        for opt in sorted(documented_options(text) - helped):
            fail(f'{rel}: OPTIONS documents {opt}, which {program} --help does not print')
    if len(failures) == before:
        print(f'ok: {rel}')


def check_config_keys():
    text = roff_text(os.path.join(SRC, 'daemon/newswired.cfg.5'))
    keys = set(re.findall(r'^\.BI? "?([a-z][a-z0-9-]*)(?: = |"|$)', section(text, 'SETTINGS'),
                          re.M))
    for opt in sorted(o for o in help_options('newswired') if o.startswith('--')):
        if opt not in NOT_IN_CONFIG and opt[2:] not in keys:
            fail(f'newswired.cfg.5: newswired {opt} has no key "{opt[2:]}" in SETTINGS')


def help_entries(program):
    """{--long-option: its --help text} (the lines of one option joined) and the text
    after the option table."""
    r = subprocess.run([os.path.join(BIN, program), '--help'], capture_output=True, text=True)
    entries, current, tail = {}, None, []
    for l in r.stdout.splitlines():
        m = re.match(r'\s+(?:-\w, )?(--[a-z][a-z0-9-]*)', l)
        if m:
            current = m.group(1)
            entries[current] = re.split(r'\s{2,}', l.strip(), maxsplit=1)[1:]
        elif current and l.startswith(' ' * 20):
            entries[current].append(l.strip())
        elif current and l.strip():
            current = None
            tail.append(l.strip())
        elif tail and l.strip():
            tail.append(l.strip())
    return {k: ' '.join(v) for k, v in entries.items()}, ' '.join(tail)


def page_entries(text, sect):
    """{first option or key on a .TP tag line: the entry's text} of one section."""
    out, lines = {}, section(text, sect).splitlines()
    for i, l in enumerate(lines[:-1]):
        if l.strip() not in ('.TP', '.TQ'):
            continue
        m = re.search(r'(--[a-z][a-z0-9-]*)|^\.BI? "?([a-z][a-z0-9-]*)(?: = |"|$)', lines[i + 1])
        if not m:
            continue
        body = []
        for b in lines[i + 2:]:
            if b.strip() in ('.TP', '.TQ', '.PP') or b.startswith('.SH'):
                break
            body.append(re.sub(r'^\.[A-Z]+ ?', '', b).replace('"', ''))
        out[m.group(1) or m.group(2)] = ' '.join(body)
    return out


def check_defaults_and_reload():
    helped, tail = help_entries('newswired')
    man8 = page_entries(roff_text(os.path.join(SRC, 'daemon/newswired.8')), 'OPTIONS')
    cfg_text = roff_text(os.path.join(SRC, 'daemon/newswired.cfg.5'))
    cfg5 = page_entries(cfg_text, 'SETTINGS')
    for opt, text in sorted(helped.items()):
        m = re.search(r'\(default ([^):;]+)\)', text)
        if not m:
            continue
        default = m.group(1)
        if default not in man8.get(opt, ''):
            fail(f'newswired.8: OPTIONS {opt} does not give the default {default} of --help')
        if opt[2:] not in cfg5 or default not in cfg5[opt[2:]]:
            fail(f'newswired.cfg.5: SETTINGS {opt[2:]} does not give the default {default} '
                 f'of --help')
    keys = {o[2:] for o in helped}
    m = re.search(r'SIGHUP reloads the config file:(.*?)change;', tail)
    said = set(re.findall(r'[a-z][a-z0-9-]*', m.group(1))) & keys if m else set()
    if not said:
        fail('newswired --help names no setting a reload changes: ' + tail)
    m = re.search(r'A reload\s.*?applies(.*?)restart', cfg_text, re.S)
    # the keys it names in bold (the prose around them may use their words too)
    marked = ' '.join(l for l in m.group(1).splitlines() if l.startswith('.B')) if m else ''
    page = set(re.findall(r'[a-z][a-z0-9-]*', marked)) & keys
    if said != page:
        fail(f'newswired.cfg.5 says a reload applies {sorted(page)}; --help says '
             f'{sorted(said)}')


def check_readme():
    text = open(os.path.join(SRC, 'README.md'), encoding='utf-8').read()
    m = re.search(r'^## Configuration\n(.*?)(?=^## )', text, re.M | re.S)
    block = re.search(r'\n\n((?:    .*\n)+)', m.group(1)) if m else None
    if not block:
        fail('README.md: no synopsis in section Configuration')
        return
    in_readme = set(re.findall(r'--[a-z][a-z0-9-]*', block.group(1)))
    helped = {o for o in help_options('newswired') if o.startswith('--')}
    for opt in sorted(helped - in_readme):
        fail(f'README.md: the Configuration synopsis lacks {opt} (newswired --help prints it)')
    for opt in sorted(in_readme - helped):
        fail(f'README.md: the Configuration synopsis names {opt}, which --help does not print')


def check_library():
    header = open(os.path.join(SRC, 'include/newswire.h'), encoding='utf-8').read()
    names = set(re.findall(r'\b(nw_(?:client|message)_[a-z_]+)\s*\(', header))
    names |= set(re.findall(r'^#define\s+(NW_[A-Z_]+)\s', header, re.M))
    names.discard('NEWSWIRE_H')
    text = roff_text(os.path.join(SRC, 'clients/libnewswire.3'))
    for n in sorted(names):
        if not re.search(r'\b' + re.escape(n) + r'\b', text):
            fail(f'libnewswire.3: {n} of include/newswire.h is not documented')


def check_installed():
    prefix = tempfile.mkdtemp(prefix='nw-man-')
    try:
        # The pages alone (component "man"): a whole install here would only race the
        # install tests running beside it.
        r = subprocess.run(['cmake', '--install', os.path.dirname(os.path.abspath(BIN)),
                            '--prefix', prefix, '--component', 'man'],
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail('cmake --install: ' + r.stderr.strip())
            return
        mandir = os.path.join(prefix, 'share', 'man')
        for rel in PAGES:
            base = os.path.basename(rel)
            name, sect = base.rsplit('.', 1)
            where = os.path.join(mandir, 'man' + sect, base)
            if not os.path.isfile(where):
                fail(f'{base} not installed as {where}')
                continue
            r = subprocess.run(['man', '-M', mandir, '-w', sect, name], capture_output=True,
                               text=True)
            if r.returncode != 0 or r.stdout.strip() != where:
                fail(f'man -w {sect} {name} finds {r.stdout.strip()!r}, not {where}: '
                     f'{r.stderr.strip()}')
        spec = os.path.join(prefix, 'share', 'doc', 'newswire', 'newswire-v1.md')
        if not os.path.isfile(spec):
            fail('the spec newswire(7) points at is not installed as ' + spec)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


pages = sys.argv[3:] or list(PAGES)
for rel in pages:
    check_page(rel, PAGES.get(rel))
if not sys.argv[3:]:
    check_config_keys()
    check_defaults_and_reload()
    check_readme()
    check_library()
    check_installed()
if failures:
    print(f'{len(failures)} failure(s)')
    sys.exit(1)
print('all man pages ok')
