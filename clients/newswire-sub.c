/*
 * newswire-sub: print the articles of newswire topics, one JSON object per line (for jq)
 * or as readable text. Messages enter through libnewswire; JSON leaves through jansson
 * so escaping is never hand-written, with every field of proto/nw_fields.h under its wire
 * key; warnings (gaps, bad messages) go to stderr.
 */
#include "newswire.h"
#include "nw_fields.h" /* the field lists: which keys the JSON has */

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_ENDPOINT "tcp://127.0.0.1:5556"
#define TEXT_BODY_LINES 6

enum { EXIT_USAGE = 1, EXIT_TIMEOUT = 2, EXIT_BADMSG = 3 };

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void) sig;
    interrupted = 1;
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: newswire-sub [OPTION]... [TOPIC]...\n"
        "Print newswire articles of TOPICs (and the topics below them; none: everything).\n"
        "\n"
        "  -c, --connect ENDPOINT  daemon endpoint (default " DEFAULT_ENDPOINT "),\n"
        "                          or its multicast group epgm://INTERFACE;GROUP:PORT\n"
        "                          (no CURVE there; give --replay to repair its losses);\n"
        "                          repeatable: each is a path of a dual feed (two relays,\n"
        "                          or two origins fed the same files), each article is\n"
        "                          printed once from whichever path delivers it first\n"
        "  -f, --format json|text  one JSON object per line (default), or readable text\n"
        "  -n, --count N           exit after N articles\n"
        "  -t, --timeout SECS      give up after SECS seconds in all\n"
        "      --hwm N             receive queue limit in messages (default 1000)\n"
        "  -r, --replay ENDPOINT   daemon replay endpoint: missed articles are fetched from\n"
        "                          its journal, so each arrives once and in order; once\n"
        "                          for every --connect, or once per --connect in their\n"
        "                          order (each path's gaps filled by its own daemon)\n"
        "      --dedup-window N    with several --connect: remember the last N article\n"
        "                          ids to drop one another path delivered (default 10000;\n"
        "                          0: by (epoch, topic, seq) only)\n"
        "      --since SEQ         with --replay: each TOPIC from seq SEQ on, then live\n"
        "      --last N            with --replay: each TOPIC's newest N, then live\n"
        "      --curve-cert FILE   connect with CurveZMQ as this client (the _secret file\n"
        "                          written by newswire-keygen); needs --server-key\n"
        "      --server-key KEY    the daemon's public key: 40 Z85 characters, or the\n"
        "                          path of its public certificate file\n"
        "  -h, --help              this text\n"
        "\n"
        "Missed articles (sequence gaps; with --replay only those the journal no longer\n"
        "has) and undecodable messages are reported on stderr; receiving goes on after either.\n"
        "--since and --last apply to exactly the TOPICs named (not the topics below them).\n"
        "\n"
        "Exit status: 0 when N articles arrived, or --timeout ran out without --count,\n"
        "or on SIGINT/SIGTERM; 1 on bad usage or an unusable endpoint or key; 2 when\n"
        "--timeout ran out before N articles; 3 when otherwise fine but some message\n"
        "could not be decoded.\n");
}

/* Add key = s when s is present; -1 when s is not valid UTF-8. */
static int set_string(json_t *obj, const char *key, const char *s)
{
    if (!s)
        return 0;
    json_t *value = json_string(s);
    if (!value)
        return -1;
    return json_object_set_new(obj, key, value);
}

static json_t *message_json(const nw_message_t *msg)
{
    json_t *root = json_object(), *source = json_object(), *article = json_object(),
           *subjects = json_array();
    if (!root || !source || !article || !subjects)
        goto fail;
    /* Every field of proto/nw_fields.h by its wire key, in wire order (insertion order is
     * the key order of the output); source and subject are there even when empty. */
    int bad = 0;
#define JSON_STRING(obj, key, accessor) bad |= set_string(obj, key, nw_message_##accessor(msg));
#define ROOT_TEXT(key, accessor) JSON_STRING(root, key, accessor)
#define ROOT_SHORT(key, accessor) JSON_STRING(root, key, accessor)
#define ROOT_TOPIC(key, accessor) JSON_STRING(root, key, accessor)
#define ROOT_HEX32(key, accessor) JSON_STRING(root, key, accessor)
#define ROOT_HEX40(key, accessor) JSON_STRING(root, key, accessor)
#define ROOT_TIME(key, accessor) JSON_STRING(root, key, accessor)
#define ROOT_SEQ(key, accessor) \
    bad |= json_object_set_new(root, key, json_integer((json_int_t) nw_message_##accessor(msg)));
#define ROOT_VERSION(key, accessor)
#define ROOT_SOURCE(key, accessor) \
    NW_FIELDS_SOURCE(SOURCE_FIELD) \
    bad |= json_object_set_new(root, key, source); \
    source = NULL;
#define ROOT_ARTICLE(key, accessor) \
    NW_FIELDS_ARTICLE(ARTICLE_FIELD) \
    bad |= json_object_set_new(root, key, article); \
    article = NULL;
#define ROOT_FIELD(member, key, kind, presence, accessor) ROOT_##kind(key, accessor)
#define SOURCE_FIELD(member, key, kind, presence, accessor) JSON_STRING(source, key, accessor)
#define ARTICLE_TEXT(key, accessor) JSON_STRING(article, key, accessor)
#define ARTICLE_SHORT(key, accessor) JSON_STRING(article, key, accessor)
#define ARTICLE_TOPIC(key, accessor) JSON_STRING(article, key, accessor)
#define ARTICLE_HEX32(key, accessor) JSON_STRING(article, key, accessor)
#define ARTICLE_HEX40(key, accessor) JSON_STRING(article, key, accessor)
#define ARTICLE_TIME(key, accessor) JSON_STRING(article, key, accessor)
#define ARTICLE_SUBJECTS(key, accessor) \
    for (size_t i = 0; i < nw_message_subject_count(msg); i++) { \
        json_t *subject = json_object(); \
        if (!subject || (0 NW_FIELDS_SUBJECT(SUBJECT_FIELD))) { \
            json_decref(subject); \
            goto fail; \
        } \
        json_array_append_new(subjects, subject); \
    } \
    bad |= json_object_set_new(article, key, subjects); \
    subjects = NULL;
#define ARTICLE_FIELD(member, key, kind, presence, accessor) ARTICLE_##kind(key, accessor)
#define SUBJECT_FIELD(member, key, kind, presence, accessor) \
    || set_string(subject, key, nw_message_##accessor(msg, i))
    NW_FIELDS_MESSAGE(ROOT_FIELD)
    if (bad)
        goto fail;
    return root;
fail:
    json_decref(subjects);
    json_decref(source);
    json_decref(article);
    json_decref(root);
    return NULL;
}

static int print_json(const nw_message_t *msg)
{
    json_t *obj = message_json(msg);
    if (!obj)
        return -1;
    char *line = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!line)
        return -1;
    puts(line);
    free(line);
    return 0;
}

static void print_text(const nw_message_t *msg)
{
    printf("== %s #%" PRIu64 "  %s\n", nw_message_topic(msg), nw_message_seq(msg),
           nw_message_sent(msg) ? nw_message_sent(msg) : "");
    printf("%s\n", nw_message_headline(msg) ? nw_message_headline(msg) : "(no headline)");
    if (nw_message_byline(msg))
        printf("By %s\n", nw_message_byline(msg));
    if (nw_message_versioncreated(msg))
        printf("Date: %s\n", nw_message_versioncreated(msg));
    if (nw_message_description(msg))
        printf("\n%s\n", nw_message_description(msg));
    const char *body = nw_message_body(msg) ? nw_message_body(msg) : "";
    putchar('\n');
    for (int line = 0; *body && line < TEXT_BODY_LINES; line++) {
        size_t len = strcspn(body, "\n");
        printf("  %.*s\n", (int) len, body);
        body += len + (body[len] == '\n');
    }
    if (*body)
        printf("  [...]\n");
    putchar('\n');
}

static int parse_count(const char *s, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || *s == '-')
        return -1;
    *out = v;
    return 0;
}

static void on_gap(nw_client_t *client, const char *topic, const char *epoch, uint64_t first,
                   uint64_t last, void *arg)
{
    const int *replaying = arg;
    fprintf(stderr,
            "newswire-sub: warning: %s missed %" PRIu64 " article%s (seq %" PRIu64 "..%" PRIu64
            ", epoch %s)%s%s\n",
            topic, last - first + 1, last == first ? "" : "s", first, last, epoch,
            *replaying ? ": " : "", *replaying ? nw_client_error(client) : "");
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"connect", required_argument, NULL, 'c'},
        {"format", required_argument, NULL, 'f'},
        {"count", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 't'},
        {"hwm", required_argument, NULL, 'H'},
        {"replay", required_argument, NULL, 'r'},
        {"dedup-window", required_argument, NULL, 'D'},
        {"since", required_argument, NULL, 'S'},
        {"last", required_argument, NULL, 'L'},
        {"curve-cert", required_argument, NULL, 'C'},
        {"server-key", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char **endpoints = calloc((size_t) argc + 1, sizeof *endpoints);
    size_t nendpoints = 0;
    int text = 0, status = EXIT_USAGE, opt;
    unsigned long count = 0, timeout = 0, hwm = 0, received = 0;
    int have_count = 0, have_timeout = 0, have_hwm = 0;
    const char *replay = NULL, *curve_cert = NULL, *server_key = NULL;
    const char **replays = calloc((size_t) argc + 1, sizeof *replays);
    size_t nreplays = 0;
    unsigned long dedup_window = 0;
    int have_dedup_window = 0;
    unsigned long since = 0, last = 0;
    int replaying = 0;
    nw_client_t *client = NULL;
    if (!endpoints || !replays) {
        free(endpoints);
        free(replays);
        return EXIT_USAGE;
    }
    while ((opt = getopt_long(argc, argv, "c:f:n:t:r:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c': endpoints[nendpoints++] = optarg; break;
        case 'f':
            if (strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0) {
                fprintf(stderr, "newswire-sub: --format must be json or text, not '%s'\n",
                        optarg);
                goto fail;
            }
            text = strcmp(optarg, "text") == 0;
            break;
        case 'n':
            have_count = 1;
            if (parse_count(optarg, &count) || count == 0) {
                fprintf(stderr, "newswire-sub: --count wants a positive number, not '%s'\n",
                        optarg);
                goto fail;
            }
            break;
        case 't':
            have_timeout = 1;
            if (parse_count(optarg, &timeout) || timeout > 86400UL * 365) {
                fprintf(stderr, "newswire-sub: --timeout wants seconds, not '%s'\n", optarg);
                goto fail;
            }
            break;
        case 'H':
            have_hwm = 1;
            if (parse_count(optarg, &hwm) || hwm > 10000000UL) {
                fprintf(stderr, "newswire-sub: --hwm wants a number, not '%s'\n", optarg);
                goto fail;
            }
            break;
        case 'r': replays[nreplays++] = replay = optarg; break;
        case 'D':
            have_dedup_window = 1;
            if (parse_count(optarg, &dedup_window) || dedup_window > 10000000UL) {
                fprintf(stderr,
                        "newswire-sub: --dedup-window wants a number of articles, not '%s'\n",
                        optarg);
                goto fail;
            }
            break;
        case 'C': curve_cert = optarg; break;
        case 'K': server_key = optarg; break;
        case 'S':
            if (parse_count(optarg, &since) || since == 0) {
                fprintf(stderr, "newswire-sub: --since wants a seq from 1, not '%s'\n", optarg);
                goto fail;
            }
            break;
        case 'L':
            if (parse_count(optarg, &last) || last == 0) {
                fprintf(stderr, "newswire-sub: --last wants a positive number, not '%s'\n",
                        optarg);
                goto fail;
            }
            break;
        case 'h':
            usage(stdout);
            status = 0;
            goto fail;
        default: usage(stderr); goto fail;
        }
    }
    if (nendpoints == 0)
        endpoints[nendpoints++] = DEFAULT_ENDPOINT;
    if (nreplays > 1 && nreplays != nendpoints) {
        fprintf(stderr,
                "newswire-sub: give --replay once, or once per --connect (%zu), not %zu "
                "times\n",
                nendpoints, nreplays);
        goto fail;
    }
    if (!curve_cert != !server_key) {
        fprintf(stderr, "newswire-sub: --curve-cert and --server-key go together\n");
        goto fail;
    }
    if ((since || last) && (!replay || optind == argc || (since && last))) {
        fprintf(stderr, "newswire-sub: --since or --last needs --replay and TOPICs, not both\n");
        goto fail;
    }

    client = nw_client_new();
    if (!client) {
        fprintf(stderr, "newswire-sub: cannot create a ZeroMQ socket\n");
        goto fail;
    }
    /* Before any connect: CURVE applies to the live and the replay socket. */
    if (curve_cert && nw_client_set_curve(client, curve_cert, server_key) != 0) {
        fprintf(stderr, "newswire-sub: %s\n", nw_client_error(client));
        goto fail;
    }
    replaying = replay != NULL;
    nw_client_set_gap_handler(client, on_gap, &replaying);
    if (have_hwm && nw_client_set_rcvhwm(client, (int) hwm) != 0) {
        fprintf(stderr, "newswire-sub: %s\n", nw_client_error(client));
        goto fail;
    }
    for (int i = optind; i < argc; i++) {
        if (nw_client_subscribe(client, argv[i]) != 0) {
            fprintf(stderr, "newswire-sub: %s\n", nw_client_error(client));
            goto fail;
        }
    }
    if (optind == argc)
        nw_client_subscribe(client, "");
    /* The first --connect is the client's own path, every other one a feed of its own
     * (with the one --replay, or its own). */
    if (nw_client_connect(client, endpoints[0]) != 0 ||
        (nreplays > 0 && nw_client_set_replay(client, replays[0]) != 0) ||
        (have_dedup_window && nw_client_set_dedup_window(client, dedup_window) != 0)) {
        fprintf(stderr, "newswire-sub: %s\n", nw_client_error(client));
        goto fail;
    }
    for (size_t i = 1; i < nendpoints; i++) {
        const char *feed_replay = nreplays == 0 ? NULL : replays[nreplays == 1 ? 0 : i];
        if (nw_client_add_feed(client, endpoints[i], feed_replay) != 0) {
            fprintf(stderr, "newswire-sub: %s\n", nw_client_error(client));
            goto fail;
        }
    }
    /* Subscribed and connected first: live articles arriving during the replay are held. */
    for (int i = optind; (since || last) && i < argc; i++) {
        if ((since ? nw_client_since(client, argv[i], since)
                   : nw_client_last(client, argv[i], last)) != 0) {
            fprintf(stderr, "newswire-sub: %s\n", nw_client_error(client));
            goto fail;
        }
    }

    /* No SA_RESTART: the signal must interrupt the wait inside ZeroMQ. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int64_t deadline = have_timeout ? now_ms() + (int64_t) timeout * 1000 : -1;
    status = 0;
    while (!interrupted && (!have_count || received < count)) {
        int wait = -1;
        if (deadline >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                break;
            wait = left > 3600000 ? 3600000 : (int) left;
        }
        nw_message_t *msg = NULL;
        int rc = nw_client_recv(client, &msg, wait);
        if (rc == NW_RECV_MESSAGE) {
            if (nw_message_epoch_changed(msg))
                fprintf(stderr,
                        "newswire-sub: warning: %s restarted with epoch %s at seq %" PRIu64
                        "; articles before it may be lost\n",
                        nw_message_topic(msg), nw_message_epoch(msg), nw_message_seq(msg));
            if (text)
                print_text(msg);
            else if (print_json(msg) != 0) {
                fprintf(stderr,
                        "newswire-sub: warning: %s #%" PRIu64 " is not valid UTF-8, skipped\n",
                        nw_message_topic(msg), nw_message_seq(msg));
                status = EXIT_BADMSG;
            }
            fflush(stdout);
            received++;
            nw_message_destroy(&msg);
        } else if (rc == NW_RECV_BAD) {
            fprintf(stderr, "newswire-sub: warning: %s\n", nw_client_error(client));
            status = EXIT_BADMSG;
        } else if (rc == NW_RECV_ERROR) {
            if (interrupted)
                break;
            fprintf(stderr, "newswire-sub: %s\n", nw_client_error(client));
            status = EXIT_USAGE;
            goto fail;
        }
    }
    if (!interrupted && have_count && received < count) {
        fprintf(stderr, "newswire-sub: timed out after %lu s with %lu of %lu articles\n", timeout,
                received, count);
        status = EXIT_TIMEOUT;
    }
fail:
    nw_client_destroy(&client);
    free(endpoints);
    free(replays);
    return status;
}
