"""The installed tree: `cmake --install` puts programs, header, library, pkg-config file,
systemd files and the example config in place, and a program outside the source tree
builds against the library with `pkg-config --cflags --libs newswire` and receives an
article from a real newswired."""
import os, shutil, subprocess, tempfile

from nwtest import BIN, Daemon, check, header_article, run, wait_for

BUILD = os.path.dirname(os.path.abspath(BIN))

CONSUMER = r'''
#include <newswire.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    nw_client_t *client = nw_client_new();
    if (!client || nw_client_connect(client, argv[1]) != 0 ||
        nw_client_subscribe(client, "installed") != 0)
        return 2;
    puts("subscribed");
    fflush(stdout);
    nw_message_t *msg = NULL;
    int rc = nw_client_recv(client, &msg, 20000);
    if (rc == 1)
        printf("%s %s\n", nw_message_topic(msg), nw_message_headline(msg));
    nw_message_destroy(&msg);
    nw_client_destroy(&client);
    return rc == 1 ? 0 : 1;
}
'''


def test_install_and_build_outside_the_tree():
    prefix = tempfile.mkdtemp(prefix='nw-install-')
    try:
        r = subprocess.run(['cmake', '--install', BUILD, '--prefix', prefix],
                           capture_output=True, text=True)
        check(r.returncode == 0, 'cmake --install: %s' % r.stderr)
        files = set()
        for d, _, fs in os.walk(prefix):
            files |= {os.path.relpath(os.path.join(d, f), prefix) for f in fs}
        for want in ('bin/newswired', 'bin/newswire-sub', 'bin/newswire-drop',
                     'bin/newswire-keygen', 'include/newswire.h',
                     'lib/systemd/system/newswired.service', 'lib/tmpfiles.d/newswired.conf',
                     'lib/sysusers.d/newswired.conf', 'etc/newswire/newswired.cfg',
                     'etc/newswire/newswired.cfg.example'):
            check(want in files, '%s installed (have %s)' % (want, sorted(files)))
        pcs = [f for f in files if f.endswith('pkgconfig/newswire.pc')]
        check(len(pcs) == 1, 'one newswire.pc: %r' % pcs)
        libdir = os.path.dirname(os.path.dirname(os.path.join(prefix, pcs[0])))
        check(any(f.startswith('libnewswire.so') for f in os.listdir(libdir)), 'shared library')

        env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(os.path.join(prefix, pcs[0])))
        flags = subprocess.run(['pkg-config', '--define-variable=prefix=' + prefix,
                                '--cflags', '--libs', 'newswire'],
                               capture_output=True, text=True, env=env)
        check(flags.returncode == 0, 'pkg-config: %s' % flags.stderr)
        src = os.path.join(prefix, 'consumer.c')
        with open(src, 'w') as f:
            f.write(CONSUMER)
        exe = os.path.join(prefix, 'consumer')
        cc = ['cc', '-std=c11', '-Wall', '-Werror', src, '-o', exe] + flags.stdout.split()
        if os.environ.get('NW_SANITIZE') == 'ON':   # the library was built with them
            cc += ['-fsanitize=address,undefined']
        r = subprocess.run(cc, capture_output=True, text=True)
        check(r.returncode == 0, 'builds outside the tree: %s %s' % (' '.join(cc), r.stderr))

        d = Daemon().start()
        try:
            p = subprocess.Popen([exe, d.endpoint], stdout=subprocess.PIPE, text=True,
                                 env=dict(os.environ, LD_LIBRARY_PATH=libdir))
            check(p.stdout.readline().strip() == 'subscribed', 'consumer started')
            d.wait_log(" subscribe 'installed.'")
            d.drop_text('i.txt', header_article('Through the installed library', Subject='installed'))
            out, _ = p.communicate(timeout=30)
            check(p.returncode == 0 and out.strip() == 'installed Through the installed library',
                  'received: %r (exit %r)' % (out, p.returncode))
        finally:
            d.cleanup()
    finally:
        shutil.rmtree(prefix, ignore_errors=True)


if __name__ == '__main__':
    run([test_install_and_build_outside_the_tree])
