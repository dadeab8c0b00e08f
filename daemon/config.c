/*
 * config: builds an nw_config_t from defaults, a ZPL file and argv (see config.h).
 * Each setting is one row of `settings` below: its name (flag and key), parsing, field,
 * default, whether a reload changes it and its help; the defaults, the file's keys,
 * getopt's tables, --help and the reload are all made from it.
 * The command line is parsed twice: once to find --config, once more after the file
 * so flags win. Reload runs the same two steps into a scratch struct and copies over
 * only the settings the table marks reloadable.
 */
#include "config.h"
#include "log.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How a setting's text becomes its field. */
typedef enum {
    K_STR,    /* char *: replaced */
    K_LIST,   /* an endpoint list: repeatable, see add_endpoint */
    K_NUM,    /* a whole number in [min, max] of the unit written, times scale */
    K_BOOL,   /* "0", "off", "false": false; anything else: true */
    K_OFF,    /* present with any value: the field is 0 / false (--no-sync) */
    K_SYNC,   /* nw_sync_mode_t: "early", or a K_BOOL word for on or off */
    K_AUTO,   /* int: "auto" -1, else on 1 or off 0 in K_SYNC's words */
    K_LEVEL,  /* a log level name */
    K_CONFIG, /* the file to read: found before anything else */
    K_HELP,
    K_VERSION,
} kind_t;

enum { CLI = 1, FILE_KEY = 2 }; /* where a setting may be given */

/* Every setting, once: its flag and config key (one name for both), where it may be
 * given, how it is parsed and into which field, its default as an operator would write
 * it (parsed like one; NULL: none), whether a reload (SIGHUP) changes it, and its help.
 * --help, the defaults, the file's keys, the flags and the reload are all made from this
 * table; tests/man/check_man.py holds the man pages and the README to what --help prints. */
typedef struct {
    const char *name;
    char short_name; /* 0: none */
    const char *arg; /* what the value is, for --help; NULL: takes none */
    unsigned where;
    kind_t kind;
    size_t offset, size; /* the field; K_LIST: the array */
    size_t count_offset; /* K_LIST: its count */
    uint64_t min, max;   /* K_NUM: in the unit written */
    unsigned scale;      /* K_NUM: to the unit kept (seconds written, ms kept) */
    const char *def;
    bool reload;
    const char *help;
} setting_t;

#define FIELD(f) offsetof(nw_config_t, f), sizeof(((nw_config_t *) 0)->f)
#define NUM(f, lo, hi, scale) K_NUM, FIELD(f), 0, lo, hi, scale
#define PLAIN(kind, f) kind, FIELD(f), 0, 0, 0, 0
#define LIST(f, n) K_LIST, FIELD(f), offsetof(nw_config_t, n), 0, 0, 0
#define NONE(kind) kind, 0, 0, 0, 0, 0, 0

/* One row a setting, each help text on its own lines: laid out by hand. */
/* clang-format off */
static const setting_t settings[] = {
    {"config", 'c', "FILE", CLI, PLAIN(K_CONFIG, config_file), NULL, false,
     "ZPL config file; its keys (section \"newswired\") mirror these flags, which "
     "override it"},
    {"drop", 'd', "DIR", CLI | FILE_KEY, PLAIN(K_STR, drop_dir), NW_DEFAULT_DROP, false,
     "drop folder, created when missing"},
    {"state", 's', "DIR", CLI | FILE_KEY, PLAIN(K_STR, state_dir), NW_DEFAULT_STATE, false,
     "journal, archive and rejected files"},
    {"publish", 'p', "ENDPOINT", CLI | FILE_KEY, LIST(publish, publish_count),
     NW_DEFAULT_PUBLISH, false, "XPUB endpoint, tcp:// or ipc://, or a multicast group "
     "epgm://INTERFACE;GROUP:PORT (needs --insecure); repeatable"},
    /* below 12 kbit/s PGM cannot send one 1500-byte packet a second and libzmq aborts;
     * its own default is the floor */
    {"multicast-rate", 0, "KBITS", CLI | FILE_KEY, NUM(multicast_rate, 100, 10000000, 1),
     "10000", false, "epgm: the most PGM sends, in kbit/s (100 to 10000000)"},
    {"multicast-recovery", 0, "MS", CLI | FILE_KEY,
     NUM(multicast_recovery_ms, 1, 3600000, 1), "10000", false,
     "epgm: how long PGM keeps what it sent to repair a receiver's loss; older losses are "
     "fetched by replay"},
    {"replay", 0, "ENDPOINT", CLI | FILE_KEY, LIST(replay, replay_count), NULL, false,
     "ROUTER endpoint serving journal replays; repeatable (default: none)"},
    {"replay-max-bytes", 0, "BYTES", CLI | FILE_KEY,
     NUM(replay_max_bytes, 65536, UINT64_MAX, 1), "33554432", false,
     "replies all replay streams together may hold until ZeroMQ has written them; a "
     "stream past its share pauses, new ones are refused as busy"},
    {"replay-max-files", 0, "N", CLI | FILE_KEY, NUM(replay_max_files, 1, 65536, 1), "32",
     false, "journal segment files replay may hold open, at most an eighth of the "
     "descriptor limit"},
    {"replay-idle", 0, "SECS", CLI | FILE_KEY, NUM(replay_idle_ms, 1, 86400, 1000), "60",
     false, "drop a replay stream that moves nothing this long, and disconnect a replay "
     "peer that answers nothing"},
    {"log-level", 'l', "LEVEL", CLI | FILE_KEY, PLAIN(K_LEVEL, log_level), "info", true,
     "err, warning, notice, info or debug"},
    {"max-size", 0, "BYTES", CLI | FILE_KEY, NUM(max_size, 1, UINT64_MAX, 1), "8388608",
     false, "reject larger files unread"},
    {"send-hwm", 0, "N", CLI | FILE_KEY, NUM(send_hwm, 0, INT32_MAX, 1), "10000", false,
     "messages queued per subscriber before drops"},
    {"dedup-window", 0, "SECS", CLI | FILE_KEY,
     NUM(dedup_window_ms, 0, INT64_MAX / 1000 - 1, 1000), "86400", true,
     "an article id seen this recently is archived, not published again; 0 re-publishes"},
    {"commit-delay", 0, "MS", CLI | FILE_KEY, NUM(commit_delay_ms, 0, 59999, 1), "0", false,
     "least time between two journal group writes"},
    {"sync", 0, "MODE", CLI | FILE_KEY, PLAIN(K_SYNC, sync), "on", false,
     "--sync=on: publish once the journal is fsynced; --sync=early: publish once it "
     "is written, archive once fsynced (after a power loss, a new epoch); --sync=off: "
     "never fsync"},
    {"no-sync", 0, NULL, CLI | FILE_KEY, PLAIN(K_OFF, sync), NULL, false,
     "never fsync the journal (survives crashes, not power loss): --sync=off"},
    {"burst-pool", 0, "WHEN", CLI | FILE_KEY, PLAIN(K_AUTO, burst_pool), "auto", false,
     "on: a burst's files are read and moved on the thread pool beside the loop thread; "
     "off: on the loop thread, a batch a turn; auto: on where the process may use more "
     "than 2 CPUs"},
    {"segment-size", 0, "BYTES", CLI | FILE_KEY, NUM(segment_size, 4096, UINT64_MAX, 1),
     "67108864", false, "journal segment size"},
    {"journal-max-size", 0, "BYTES", CLI | FILE_KEY, NUM(journal_max_size, 1, UINT64_MAX, 1),
     "1073741824", false, "journal retention by size"},
    {"journal-max-age", 0, "SECS", CLI | FILE_KEY,
     NUM(journal_max_age_ms, 1, INT64_MAX / 1000 - 1, 1000), "604800", false,
     "journal retention by age"},
    {"curve-secret", 0, "FILE", CLI | FILE_KEY, PLAIN(K_STR, curve_secret), NULL, false,
     "server certificate (CZMQ zcert, the _secret file): CurveZMQ on every endpoint"},
    {"clients", 0, "DIR", CLI | FILE_KEY, PLAIN(K_STR, clients_dir), NULL, false,
     "allowed client public certificates, with their topic grants"},
    {"insecure", 0, NULL, CLI | FILE_KEY, PLAIN(K_BOOL, insecure), NULL, false,
     "allow clear text on endpoints other than loopback and ipc; epgm:// needs it (PGM "
     "has no CURVE: every host on the segment can read it) and is refused with "
     "--curve-secret"},
    {"metrics", 0, "ENDPOINT", CLI | FILE_KEY, PLAIN(K_STR, metrics), NULL, false,
     "serve Prometheus metrics over HTTP at /metrics, e.g. tcp://127.0.0.1:9464 (default: "
     "off; never CURVE, so other than loopback only with --insecure)"},
    {"upstream", 0, "ENDPOINT", CLI | FILE_KEY, PLAIN(K_STR, upstream), NULL, false,
     "relay: subscribe to this newswired (or relay) live endpoint instead of watching a "
     "drop folder"},
    {"upstream-replay", 0, "ENDPOINT", CLI | FILE_KEY, PLAIN(K_STR, upstream_replay), NULL,
     false, "relay: the upstream's replay endpoint, to fill gaps and start on a running "
     "feed (without it a gap stops the topic)"},
    {"upstream-topic", 0, "TOPIC", CLI | FILE_KEY, LIST(upstream_topic, upstream_topic_count),
     NULL, false, "relay: carry only TOPIC and the topics below it; repeatable (default: "
     "every topic)"},
    {"upstream-cert", 0, "FILE", CLI | FILE_KEY, PLAIN(K_STR, upstream_cert), NULL, false,
     "relay: CurveZMQ to the upstream as this client (the _secret file written by "
     "newswire-keygen)"},
    {"upstream-key", 0, "KEY", CLI | FILE_KEY, PLAIN(K_STR, upstream_key), NULL, false,
     "relay: the upstream's public key: 40 Z85 characters, or the path of its public "
     "certificate"},
    {"version", 'V', NULL, CLI, NONE(K_VERSION), NULL, false, "print the version and exit"},
    {"help", 'h', NULL, CLI, NONE(K_HELP), NULL, false, "print this help and exit"},
};
/* clang-format on */
#define NSETTINGS (sizeof settings / sizeof settings[0])

/* Reloading copies fields as they are: only plain values may be reloadable. */
static bool reloadable_kind(kind_t kind)
{
    return kind == K_NUM || kind == K_BOOL || kind == K_OFF || kind == K_LEVEL;
}

#define HELP_COLUMN 27
#define HELP_WIDTH 88

/* text's words from column col on, wrapped at HELP_WIDTH, continued at column indent. */
static void print_wrapped(FILE *out, const char *text, size_t col, size_t indent)
{
    bool first = true;
    while (*text) {
        size_t word = strcspn(text, " ");
        if (!first && col + 1 + word > HELP_WIDTH) {
            fprintf(out, "\n%*s", (int) indent, "");
            col = indent;
        } else if (!first) {
            fputc(' ', out);
            col++;
        }
        fwrite(text, 1, word, out);
        col += word;
        text += word;
        text += strspn(text, " ");
        first = false;
    }
    fputc('\n', out);
}

static void print_usage(FILE *out)
{
    fputs("usage: newswired [--config FILE] [--drop DIR] [--state DIR] [--publish ENDPOINT]...\n"
          "                 [--log-level LEVEL] [--version] [--help]\n"
          "       newswired --upstream LIVE [--upstream-replay REPLAY] [--state DIR]\n"
          "                 [--publish ENDPOINT]... [--replay ENDPOINT]...\n"
          "\n"
          "Publishes every article dropped into DIR over ZeroMQ, one topic per subject; or,\n"
          "with --upstream, relays another newswired's feed (journaled, with its epoch, seq\n"
          "and bytes).\n"
          "\n",
          out);
    char text[512];
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting_t *s = &settings[i];
        if (!(s->where & CLI))
            continue;
        int col = fprintf(out, "  %c%c%s--%s%s%s", s->short_name ? '-' : ' ',
                          s->short_name ? s->short_name : ' ', s->short_name ? ", " : "  ",
                          s->name, s->arg ? " " : "", s->arg ? s->arg : "");
        /* the text at its column, or two spaces after a longer flag */
        int pad = col < HELP_COLUMN - 1 ? HELP_COLUMN - col : 2;
        fprintf(out, "%*s", pad, "");
        if (s->def)
            snprintf(text, sizeof text, "%s (default %s)", s->help, s->def);
        else
            snprintf(text, sizeof text, "%s", s->help);
        print_wrapped(out, text, (size_t) (col + pad), HELP_COLUMN);
    }
    int len = snprintf(text, sizeof text,
                       "Signals: SIGTERM/SIGINT finish in-flight files and "
                       "exit; SIGHUP reloads the config file:");
    for (size_t i = 0; i < NSETTINGS && len > 0 && (size_t) len < sizeof text; i++)
        if (settings[i].reload)
            len += snprintf(text + len, sizeof text - (size_t) len, " %s,", settings[i].name);
    if (len > 0 && (size_t) len < sizeof text)
        snprintf(text + len, sizeof text - (size_t) len,
                 " the rules and the grants change; "
                 "the other settings need a restart.");
    fputc('\n', out);
    print_wrapped(out, text, 0, 0);
}

static int parse_u64(const char *text, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!text || !*text || *text == '-')
        return -1;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static bool parse_bool(const char *value)
{
    return strcmp(value, "0") != 0 && strcmp(value, "off") != 0 && strcmp(value, "false") != 0;
}

/* A word for on (1) or off (0), strictly: a setting with a third word (early, auto)
 * refuses a typo rather than read it as on. */
static int parse_word(const char *value, int *out)
{
    static const char *const words[] = {"off", "0", "false", "no", "on", "1", "true", "yes"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcmp(value, words[i]) == 0) {
            *out = i >= 4;
            return 0;
        }
    return -1;
}

static void *field_of(nw_config_t *self, const setting_t *s)
{
    return (char *) self + s->offset;
}

static int set_number(nw_config_t *self, const setting_t *s, const char *value, char *errbuf,
                      size_t errlen)
{
    uint64_t n;
    if (parse_u64(value, &n) != 0) {
        snprintf(errbuf, errlen, "%s '%s': expected a non-negative whole number", s->name, value);
        return -1;
    }
    if (n < s->min || n > s->max) {
        snprintf(errbuf, errlen, "%s '%s': out of range", s->name, value);
        return -1;
    }
    n *= s->scale;
    if (s->size == sizeof(int)) { /* int or unsigned: within range, the same bits */
        int v = (int) n;
        memcpy(field_of(self, s), &v, sizeof v);
    } else
        memcpy(field_of(self, s), &n, sizeof n); /* uint64_t or int64_t */
    return 0;
}

/* Endpoint lists: the first endpoint a source gives replaces the list it inherited (the
 * defaults, or the file's list when flags give their own). */
static int add_endpoint(nw_config_t *self, const setting_t *s, bool *reset, const char *value,
                        char *errbuf, size_t errlen)
{
    char **list = field_of(self, s);
    size_t *count = (size_t *) ((char *) self + s->count_offset);
    if (!*reset) {
        for (size_t i = 0; i < *count; i++)
            free(list[i]);
        *count = 0;
        *reset = true;
    }
    if (*count == NW_CONFIG_MAX_ENDPOINTS) {
        snprintf(errbuf, errlen, "more than %d %s endpoints", NW_CONFIG_MAX_ENDPOINTS, s->name);
        return -1;
    }
    list[(*count)++] = strdup(value);
    return 0;
}

_Static_assert(NW_SYNC_OFF == 0 && NW_SYNC_ON == 1,
               "K_SYNC takes parse_word's 0 and 1 as they are");

/* One setting's value, from the defaults, the file or a flag. reset: one flag per
 * setting, for the endpoint lists (see add_endpoint). */
static int apply(nw_config_t *self, const setting_t *s, const char *value, bool *reset,
                 char *errbuf, size_t errlen)
{
    void *field = field_of(self, s);
    switch (s->kind) {
    case K_STR:
        free(*(char **) field);
        *(char **) field = strdup(value);
        return 0;
    case K_LIST: return add_endpoint(self, s, &reset[s - settings], value, errbuf, errlen);
    case K_NUM: return set_number(self, s, value, errbuf, errlen);
    case K_BOOL: *(bool *) field = parse_bool(value); return 0;
    case K_OFF: memset(field, 0, s->size); return 0;
    case K_SYNC:
        if (strcmp(value, "early") == 0) {
            *(int *) field = NW_SYNC_EARLY;
            return 0;
        }
        if (parse_word(value, (int *) field) == 0)
            return 0;
        snprintf(errbuf, errlen, "sync '%s': expected on, off or early", value);
        return -1;
    case K_AUTO:
        if (strcmp(value, "auto") == 0) {
            *(int *) field = -1;
            return 0;
        }
        if (parse_word(value, (int *) field) == 0)
            return 0;
        snprintf(errbuf, errlen, "%s '%s': expected on, off or auto", s->name, value);
        return -1;
    case K_LEVEL: {
        int level = nw_log_level_parse(value);
        if (level < 0) {
            snprintf(errbuf, errlen,
                     "log-level '%s': expected err, warning, notice, info or "
                     "debug",
                     value);
            return -1;
        }
        *(int *) field = level;
        return 0;
    }
    default: return 0; /* K_CONFIG, K_HELP, K_VERSION: answered by apply_argv */
    }
}

static const setting_t *find_key(const char *key, unsigned where)
{
    for (size_t i = 0; i < NSETTINGS; i++)
        if ((settings[i].where & where) && strcmp(settings[i].name, key) == 0)
            return &settings[i];
    return NULL;
}

/* The defaults, parsed as if written in a file read before any. */
static void set_defaults(nw_config_t *self)
{
    memset(self, 0, sizeof *self);
    bool reset[NSETTINGS] = {false};
    char reason[128];
    for (size_t i = 0; i < NSETTINGS; i++)
        if (settings[i].def &&
            apply(self, &settings[i], settings[i].def, reset, reason, sizeof reason) != 0)
            nw_err("config: the default of %s: %s", settings[i].name, reason); /* a bug */
}

/* Apply the "newswired" section of a loaded file. */
static int apply_file(nw_config_t *self, zconfig_t *file, char *errbuf, size_t errlen)
{
    zconfig_t *section = zconfig_locate(file, "newswired");
    bool reset[NSETTINGS] = {false};
    for (zconfig_t *item = section ? zconfig_child(section) : NULL; item;
         item = zconfig_next(item)) {
        char reason[256];
        const char *value = zconfig_value(item);
        const setting_t *s = find_key(zconfig_name(item), FILE_KEY);
        if (!s)
            snprintf(reason, sizeof reason, "unknown setting '%s'", zconfig_name(item));
        if (!s || apply(self, s, value ? value : "", reset, reason, sizeof reason) != 0) {
            snprintf(errbuf, errlen, "%s: newswired/%s", reason, zconfig_name(item));
            return -1;
        }
    }
    return 0;
}

/* getopt's tables, made from the settings once. */
static struct option long_options[NSETTINGS + 1];
static char short_options[3 * NSETTINGS + 2];
static pthread_once_t options_once = PTHREAD_ONCE_INIT;

static void make_options(void)
{
    size_t n = 0, k = 0;
    short_options[k++] = ':'; /* a missing value is ':', not '?' */
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting_t *s = &settings[i];
        if (!(s->where & CLI))
            continue;
        /* val: the setting's index past any character, so getopt's answers name it */
        long_options[n++] = (struct option) {s->name, s->arg ? required_argument : no_argument,
                                             NULL, 256 + (int) i};
        if (s->short_name) {
            short_options[k++] = s->short_name;
            if (s->arg)
                short_options[k++] = ':';
        }
    }
}

static const setting_t *setting_of_opt(int opt)
{
    if (opt >= 256 && opt < 256 + (int) NSETTINGS)
        return &settings[opt - 256];
    for (size_t i = 0; i < NSETTINGS; i++)
        if (settings[i].short_name && settings[i].short_name == opt)
            return &settings[i];
    return NULL;
}

/* Walk argv; with config_only, just find --config, else apply every flag. */
static int apply_argv(nw_config_t *self, int argc, char **argv, bool config_only, char *errbuf,
                      size_t errlen)
{
    pthread_once(&options_once, make_options);
    bool reset[NSETTINGS] = {false};
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, short_options, long_options, NULL)) != -1) {
        if (opt == ':') {
            snprintf(errbuf, errlen, "option '%s' needs a value", argv[optind - 1]);
            return -1;
        }
        const setting_t *s = setting_of_opt(opt);
        if (!s) {
            snprintf(errbuf, errlen, "unknown option '%s' (see --help)", argv[optind - 1]);
            return -1;
        }
        if (s->kind == K_CONFIG) {
            if (config_only) {
                free(self->config_file);
                self->config_file = strdup(optarg);
            }
            continue;
        }
        if (config_only)
            continue;
        if (s->kind == K_HELP) {
            print_usage(stdout);
            return 1;
        }
        if (s->kind == K_VERSION) {
            printf("newswired %s\n", NW_VERSION);
            return 1;
        }
        if (apply(self, s, optarg ? optarg : "", reset, errbuf, errlen) != 0)
            return -1;
    }
    if (optind < argc) {
        snprintf(errbuf, errlen, "unexpected argument '%s' (see --help)", argv[optind]);
        return -1;
    }
    return 0;
}

static int load_into(nw_config_t *self, int argc, char **argv, char *errbuf, size_t errlen)
{
    int rc = apply_argv(self, argc, argv, true, errbuf, errlen);
    if (rc != 0)
        return rc;
    if (self->config_file) {
        FILE *probe = fopen(self->config_file, "r");
        if (!probe) {
            snprintf(errbuf, errlen, "config %s: %s", self->config_file, strerror(errno));
            return -1;
        }
        fclose(probe);
        self->file = zconfig_load(self->config_file);
        if (!self->file) {
            snprintf(errbuf, errlen, "config %s: not valid ZPL", self->config_file);
            return -1;
        }
        char reason[300];
        if (apply_file(self, self->file, reason, sizeof reason) != 0) {
            snprintf(errbuf, errlen, "config %s: %s", self->config_file, reason);
            return -1;
        }
    }
    return apply_argv(self, argc, argv, false, errbuf, errlen);
}

int nw_config_load(nw_config_t *self, int argc, char **argv, char *errbuf, size_t errlen)
{
    set_defaults(self);
    return load_into(self, argc, argv, errbuf, errlen);
}

static bool same_value(nw_config_t *a, nw_config_t *b, const setting_t *s)
{
    switch (s->kind) {
    case K_STR: {
        const char *x = *(char **) field_of(a, s), *y = *(char **) field_of(b, s);
        return x == y || (x && y && strcmp(x, y) == 0);
    }
    case K_LIST: {
        char **x = field_of(a, s), **y = field_of(b, s);
        size_t n = *(size_t *) ((char *) a + s->count_offset);
        if (n != *(size_t *) ((char *) b + s->count_offset))
            return false;
        for (size_t i = 0; i < n; i++)
            if (strcmp(x[i], y[i]) != 0)
                return false;
        return true;
    }
    case K_NUM:
    case K_BOOL:
    case K_OFF:
    case K_LEVEL:
    case K_SYNC:
    case K_AUTO: return memcmp(field_of(a, s), field_of(b, s), s->size) == 0;
    default: return true;
    }
}

/* The settings a reload found changed but cannot apply: an operator who edited the
 * drop folder or a limit and sent SIGHUP learns it did nothing. A field two settings
 * share (sync, no-sync) is named by the first. */
static void warn_restart(nw_config_t *running, nw_config_t *fresh)
{
    char names[512] = "";
    size_t len = 0, n = 0;
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting_t *s = &settings[i];
        if (s->reload || s->size == 0 || s->kind == K_CONFIG)
            continue; /* applied, or no setting (help, version), or from argv only */
        bool first = true;
        for (size_t k = 0; k < i && first; k++)
            first = settings[k].offset != s->offset || settings[k].size == 0;
        if (!first || same_value(running, fresh, s))
            continue;
        n++;
        if (len < sizeof names)
            len += (size_t) snprintf(names + len, sizeof names - len, "%s%s", len ? ", " : "",
                                     s->name);
    }
    if (n)
        nw_warn("reload: %s changed, but %s only at the next start: the running value%s "
                "stay%s",
                names, n > 1 ? "take effect" : "takes effect", n > 1 ? "s" : "",
                n > 1 ? "" : "s");
}

int nw_config_reload(nw_config_t *self, int argc, char **argv, char *errbuf, size_t errlen)
{
    nw_config_t fresh;
    set_defaults(&fresh);
    if (load_into(&fresh, argc, argv, errbuf, errlen) != 0) {
        nw_config_release(&fresh);
        return -1;
    }
    warn_restart(self, &fresh);
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting_t *s = &settings[i];
        if (s->reload && reloadable_kind(s->kind))
            memcpy(field_of(self, s), field_of(&fresh, s), s->size);
    }
    zconfig_destroy(&self->file);
    self->file = fresh.file;
    fresh.file = NULL;
    nw_config_release(&fresh);
    return 0;
}

void nw_config_release(nw_config_t *self)
{
    for (size_t i = 0; i < NSETTINGS; i++) {
        const setting_t *s = &settings[i];
        if (s->kind == K_STR || s->kind == K_CONFIG)
            free(*(char **) field_of(self, s));
        else if (s->kind == K_LIST) {
            char **list = field_of(self, s);
            size_t count = *(size_t *) ((char *) self + s->count_offset);
            for (size_t k = 0; k < count; k++)
                free(list[k]);
        }
    }
    zconfig_destroy(&self->file);
    memset(self, 0, sizeof *self);
}

/* A whole decimal number in [lo, hi], blanks after it allowed; false for anything else. */
static bool parse_long(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static size_t count_children(zconfig_t *node, const char *name)
{
    size_t n = 0;
    for (zconfig_t *c = zconfig_child(node); c; c = zconfig_next(c))
        n += !name || strcmp(zconfig_name(c), name) == 0;
    return n;
}

/* One subject of the section: threshold, medtop, words (repeatable). */
static int read_rule(zconfig_t *child, nw_rule_t *rule, char *errbuf, size_t errlen)
{
    const char *name = zconfig_name(child);
    rule->subject = name;
    rule->threshold = NW_RULES_DEFAULT_THRESHOLD;
    size_t lists = count_children(child, "words");
    const char **words = lists ? calloc(lists, sizeof *words) : NULL;
    if (lists && !words) {
        snprintf(errbuf, errlen, "rules: out of memory");
        return -1;
    }
    rule->words = words;
    for (zconfig_t *key = zconfig_child(child); key; key = zconfig_next(key)) {
        const char *kname = zconfig_name(key);
        const char *kvalue = zconfig_value(key);
        if (strcmp(kname, "threshold") == 0) {
            if (!parse_long(kvalue, 1, NW_RULES_MAX_THRESHOLD, &rule->threshold)) {
                snprintf(errbuf, errlen,
                         "rules: subject '%s': threshold '%s' is not a "
                         "number from 1 to %d",
                         name, kvalue ? kvalue : "", NW_RULES_MAX_THRESHOLD);
                return -1;
            }
        } else if (strcmp(kname, "medtop") == 0)
            rule->medtop = kvalue ? kvalue : "";
        else if (strcmp(kname, "words") == 0) {
            if (kvalue)
                words[rule->word_lists++] = kvalue;
        } else {
            snprintf(errbuf, errlen, "rules: subject '%s': unknown key '%s'", name, kname);
            return -1;
        }
    }
    return 0;
}

int nw_config_rules(zconfig_t *file, nw_rules_options_t **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    zconfig_t *section = file ? zconfig_locate(file, "rules") : NULL;
    if (!section)
        return 0;
    nw_rules_options_t *opt = calloc(1, sizeof *opt);
    size_t n = count_children(section, NULL);
    nw_rule_t *rules = n ? calloc(n, sizeof *rules) : NULL;
    if (!opt || (n && !rules)) {
        free(opt);
        snprintf(errbuf, errlen, "rules: out of memory");
        return -1;
    }
    opt->headline_weight = NW_RULES_DEFAULT_HEADLINE_WEIGHT;
    opt->rules = rules;
    bool media_topics_seen = false;
    for (zconfig_t *child = zconfig_child(section); child; child = zconfig_next(child)) {
        const char *name = zconfig_name(child);
        const char *value = zconfig_value(child);
        if (strcmp(name, "media-topics") == 0) {
            if (!media_topics_seen) /* the first one counts */
                opt->media_topics = value;
            media_topics_seen = true;
        } else if (strcmp(name, "headline-weight") == 0) {
            if (!parse_long(value, 0, NW_RULES_MAX_HEADLINE_WEIGHT, &opt->headline_weight)) {
                snprintf(errbuf, errlen,
                         "rules: headline-weight '%s' is not a number "
                         "from 0 to %d",
                         value ? value : "", NW_RULES_MAX_HEADLINE_WEIGHT);
                goto fail;
            }
        } else if (read_rule(child, &rules[opt->count++], errbuf, errlen) != 0)
            goto fail;
    }
    *out = opt;
    return 0;
fail:
    nw_config_rules_free(&opt);
    return -1;
}

void nw_config_rules_free(nw_rules_options_t **options_p)
{
    nw_rules_options_t *opt = *options_p;
    if (!opt)
        return;
    for (size_t i = 0; i < opt->count; i++)
        free((void *) opt->rules[i].words);
    free((void *) opt->rules);
    free(opt);
    *options_p = NULL;
}

int nw_config_grants(zconfig_t *file, nw_auth_grant_t **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    zconfig_t *section = file ? zconfig_locate(file, "grants") : NULL;
    size_t n = section ? count_children(section, NULL) : 0;
    if (n == 0)
        return 0;
    nw_auth_grant_t *grants = calloc(n, sizeof *grants);
    if (!grants)
        return -1;
    for (zconfig_t *item = zconfig_child(section); item; item = zconfig_next(item))
        grants[(*count)++] = (nw_auth_grant_t) {zconfig_name(item), zconfig_value(item)};
    *out = grants;
    return 0;
}
