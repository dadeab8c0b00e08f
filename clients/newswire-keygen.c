/*
 * newswire-keygen: writes a CurveZMQ certificate pair in CZMQ's zcert format.
 *
 *     newswire-keygen [--topics "telecoms, sport.football"] PATH
 *
 * writes PATH (the public certificate: give it to the publisher's --clients folder) and
 * PATH_secret (both keys: keep it; a subscriber loads it, the daemon's --curve-secret
 * takes it). The metadata carries the key's name (PATH's last component) and, with
 * --topics, the topic prefixes the daemon grants this key. Existing files are never
 * overwritten: a lost secret is replaced by a new key, not by accident.
 */
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "usage: newswire-keygen [--topics LIST] PATH\n"
    "\n"
    "Writes a CurveZMQ certificate pair: PATH (public; copy it into the daemon's\n"
    "--clients folder) and PATH_secret (keep it private).\n"
    "\n"
    "  -t, --topics LIST   topic prefixes this key may read, comma-separated\n"
    "                      (\"telecoms, sport.football\"; \"*\" for all)\n"
    "  -h, --help          print this help and exit\n";

/* O_EXCL so that an existing certificate is never replaced. */
static int claim(const char *path, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
    if (fd < 0) {
        fprintf(stderr, "newswire-keygen: %s: %s\n", path, strerror(errno));
        return -1;
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"topics", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *topics = NULL;
    int opt;
    while ((opt = getopt_long(argc, argv, "t:h", options, NULL)) != -1) {
        if (opt == 't')
            topics = optarg;
        else if (opt == 'h') {
            fputs(usage, stdout);
            return 0;
        } else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind != argc - 1 || !*argv[optind]) {
        fputs(usage, stderr);
        return 2;
    }
    const char *path = argv[optind];
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (!*name || strlen(path) > 4000) {
        fprintf(stderr, "newswire-keygen: '%s' does not name a file\n", path);
        return 2;
    }
    char secret[4096];
    snprintf(secret, sizeof secret, "%s_secret", path);

    zsys_handler_set(NULL);
    zcert_t *cert = zcert_new();
    if (!cert) {
        fprintf(stderr, "newswire-keygen: cannot make a key pair\n");
        return 1;
    }
    zcert_set_meta(cert, "name", "%s", name);
    if (topics)
        zcert_set_meta(cert, "topics", "%s", topics);
    int rc = 1;
    /* The secret file is created 0600 before zcert writes into it. */
    if (claim(secret, 0600) != 0)
        goto done;
    if (claim(path, 0644) != 0) {
        unlink(secret);
        goto done;
    }
    if (zcert_save_secret(cert, secret) != 0 || zcert_save_public(cert, path) != 0) {
        fprintf(stderr, "newswire-keygen: cannot write %s: %s\n", path, strerror(errno));
        unlink(secret);
        unlink(path);
        goto done;
    }
    printf("%s\n", zcert_public_txt(cert));
    rc = 0;
done:
    zcert_destroy(&cert);
    return rc;
}
