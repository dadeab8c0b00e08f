/*
 * config: builds an nw_config_t from defaults, a ZPL file and argv (see config.h).
 * The command line is parsed twice: once to find --config, once more after the file
 * so flags win. Reload runs the same two steps into a scratch struct and swaps in
 * only the settings that may change without a restart.
 */
#include "config.h"
#include "log.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_MAX_SIZE = 256, OPT_SEND_HWM, OPT_DEDUP, OPT_COMMIT_DELAY, OPT_NO_SYNC,
    OPT_SEGMENT_SIZE, OPT_JOURNAL_MAX_SIZE, OPT_JOURNAL_MAX_AGE, OPT_REPLAY,
    OPT_CURVE_SECRET, OPT_CLIENTS, OPT_INSECURE, OPT_REPLAY_MAX_BYTES, OPT_REPLAY_MAX_FILES,
    OPT_REPLAY_IDLE, OPT_METRICS,
};

static const struct option long_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"drop", required_argument, NULL, 'd'},
    {"state", required_argument, NULL, 's'},
    {"publish", required_argument, NULL, 'p'},
    {"log-level", required_argument, NULL, 'l'},
    {"max-size", required_argument, NULL, OPT_MAX_SIZE},
    {"send-hwm", required_argument, NULL, OPT_SEND_HWM},
    {"dedup-window", required_argument, NULL, OPT_DEDUP},
    {"commit-delay", required_argument, NULL, OPT_COMMIT_DELAY},
    {"no-sync", no_argument, NULL, OPT_NO_SYNC},
    {"segment-size", required_argument, NULL, OPT_SEGMENT_SIZE},
    {"journal-max-size", required_argument, NULL, OPT_JOURNAL_MAX_SIZE},
    {"journal-max-age", required_argument, NULL, OPT_JOURNAL_MAX_AGE},
    {"curve-secret", required_argument, NULL, OPT_CURVE_SECRET},
    {"clients", required_argument, NULL, OPT_CLIENTS},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"replay", required_argument, NULL, OPT_REPLAY},
    {"replay-max-bytes", required_argument, NULL, OPT_REPLAY_MAX_BYTES},
    {"replay-max-files", required_argument, NULL, OPT_REPLAY_MAX_FILES},
    {"replay-idle", required_argument, NULL, OPT_REPLAY_IDLE},
    {"metrics", required_argument, NULL, OPT_METRICS},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const char usage[] =
    "usage: newswired [--config FILE] [--drop DIR] [--state DIR] [--publish ENDPOINT]...\n"
    "                 [--log-level LEVEL] [--version] [--help]\n"
    "\n"
    "Publishes every article dropped into DIR over ZeroMQ, one topic per subject.\n"
    "\n"
    "  -c, --config FILE        ZPL config file; its keys (section \"newswired\") mirror\n"
    "                           these flags, which override it\n"
    "  -d, --drop DIR           drop folder (default " NW_DEFAULT_DROP ", created)\n"
    "  -s, --state DIR          journal, archive and rejected files (default " NW_DEFAULT_STATE ")\n"
    "  -p, --publish ENDPOINT   XPUB endpoint, tcp:// or ipc://; repeatable\n"
    "                           (default " NW_DEFAULT_PUBLISH ")\n"
    "      --replay ENDPOINT    ROUTER endpoint serving journal replays; repeatable\n"
    "                           (default: none)\n"
    "      --replay-max-bytes BYTES  replies all replay streams together may hold until\n"
    "                           ZeroMQ has written them; a stream past its share pauses,\n"
    "                           new ones are refused as busy (default 33554432)\n"
    "      --replay-max-files N journal segment files replay may hold open (default 32,\n"
    "                           at most an eighth of the descriptor limit)\n"
    "      --replay-idle SECS   drop a replay stream that moves nothing this long, and\n"
    "                           disconnect a replay peer that answers nothing (default 60)\n"
    "  -l, --log-level LEVEL    err, warning, notice, info (default) or debug\n"
    "      --max-size BYTES     reject larger files unread (default 8388608)\n"
    "      --send-hwm N         messages queued per subscriber before drops (default 10000)\n"
    "      --dedup-window SECS  an article id seen this recently is archived, not\n"
    "                           published again (default 86400; 0 re-publishes)\n"
    "      --commit-delay MS    least time between two journal group writes (default 0)\n"
    "      --no-sync            never fsync the journal (survives crashes, not power loss)\n"
    "      --segment-size BYTES journal segment size (default 67108864)\n"
    "      --journal-max-size BYTES  journal retention by size (default 1073741824)\n"
    "      --journal-max-age SECS    journal retention by age (default 604800)\n"
    "      --curve-secret FILE  server certificate (CZMQ zcert, the _secret file): CurveZMQ\n"
    "                           on every endpoint\n"
    "      --clients DIR        allowed client public certificates, with their topic grants\n"
    "      --insecure           allow clear text on endpoints other than loopback and ipc\n"
    "      --metrics ENDPOINT   serve Prometheus metrics over HTTP at /metrics, e.g.\n"
    "                           tcp://127.0.0.1:9464 (default: off; never CURVE, so\n"
    "                           other than loopback only with --insecure)\n"
    "  -V, --version            print the version and exit\n"
    "  -h, --help               print this help and exit\n"
    "\n"
    "Signals: SIGTERM/SIGINT finish in-flight files and exit; SIGHUP reloads the config.\n";

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

static void set_str(char **slot, const char *value)
{
    free(*slot);
    *slot = strdup(value);
}

static bool parse_bool(const char *value)
{
    return strcmp(value, "0") != 0 && strcmp(value, "off") != 0 && strcmp(value, "false") != 0;
}

/* Numeric settings: the range accepted in the unit written, and the scale to the unit
 * kept (seconds written, milliseconds kept). Fields are uint64_t, int64_t or int. */
static const struct {
    const char *key;
    uint64_t min, max;
    unsigned scale;
    size_t offset, size;
} numbers[] = {
    {"max-size", 1, UINT64_MAX, 1, offsetof(nw_config_t, max_size), sizeof(uint64_t)},
    {"send-hwm", 0, INT32_MAX, 1, offsetof(nw_config_t, send_hwm), sizeof(int)},
    {"dedup-window", 0, INT64_MAX / 1000 - 1, 1000, offsetof(nw_config_t, dedup_window_ms),
     sizeof(int64_t)},
    {"commit-delay", 0, 59999, 1, offsetof(nw_config_t, commit_delay_ms), sizeof(int64_t)},
    {"segment-size", 4096, UINT64_MAX, 1, offsetof(nw_config_t, segment_size), sizeof(uint64_t)},
    {"journal-max-size", 1, UINT64_MAX, 1, offsetof(nw_config_t, journal_max_size),
     sizeof(uint64_t)},
    {"journal-max-age", 1, INT64_MAX / 1000 - 1, 1000, offsetof(nw_config_t, journal_max_age_ms),
     sizeof(int64_t)},
    {"replay-max-bytes", 65536, UINT64_MAX, 1, offsetof(nw_config_t, replay_max_bytes),
     sizeof(uint64_t)},
    {"replay-max-files", 1, 65536, 1, offsetof(nw_config_t, replay_max_files), sizeof(unsigned)},
    {"replay-idle", 1, 86400, 1000, offsetof(nw_config_t, replay_idle_ms), sizeof(int64_t)},
};

static int apply_number(nw_config_t *self, size_t i, const char *value, char *errbuf,
                        size_t errlen)
{
    uint64_t n;
    if (parse_u64(value, &n) != 0) {
        snprintf(errbuf, errlen, "%s '%s': expected a non-negative whole number",
                 numbers[i].key, value);
        return -1;
    }
    if (n < numbers[i].min || n > numbers[i].max) {
        snprintf(errbuf, errlen, "%s '%s': out of range", numbers[i].key, value);
        return -1;
    }
    n *= numbers[i].scale;
    char *field = (char *) self + numbers[i].offset;
    if (numbers[i].size == sizeof(int)) {
        int v = (int) n;
        memcpy(field, &v, sizeof v);
    } else
        memcpy(field, &n, sizeof n);   /* within range, int64_t holds the same bits */
    return 0;
}

/* Endpoint lists: the first endpoint a source gives replaces the list it inherited (the
 * defaults, or the file's list when flags give their own). */
static int add_endpoint(char **list, size_t *count, bool *reset, const char *what,
                        const char *value, char *errbuf, size_t errlen)
{
    if (!*reset) {
        for (size_t i = 0; i < *count; i++)
            free(list[i]);
        *count = 0;
        *reset = true;
    }
    if (*count == NW_CONFIG_MAX_ENDPOINTS) {
        snprintf(errbuf, errlen, "more than %d %s endpoints", NW_CONFIG_MAX_ENDPOINTS, what);
        return -1;
    }
    list[(*count)++] = strdup(value);
    return 0;
}

/* One setting by its long name, from the file or a flag. */
static int apply(nw_config_t *self, const char *key, const char *value, bool reset[2],
                 char *errbuf, size_t errlen)
{
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        if (strcmp(key, numbers[i].key) == 0)
            return apply_number(self, i, value, errbuf, errlen);
    if (strcmp(key, "drop") == 0)
        set_str(&self->drop_dir, value);
    else if (strcmp(key, "state") == 0)
        set_str(&self->state_dir, value);
    else if (strcmp(key, "curve-secret") == 0)
        set_str(&self->curve_secret, value);
    else if (strcmp(key, "clients") == 0)
        set_str(&self->clients_dir, value);
    else if (strcmp(key, "metrics") == 0)
        set_str(&self->metrics, value);
    else if (strcmp(key, "insecure") == 0)
        self->insecure = parse_bool(value);
    else if (strcmp(key, "publish") == 0)
        return add_endpoint(self->publish, &self->publish_count, &reset[0], "publish", value,
                            errbuf, errlen);
    else if (strcmp(key, "replay") == 0)
        return add_endpoint(self->replay, &self->replay_count, &reset[1], "replay", value,
                            errbuf, errlen);
    else if (strcmp(key, "log-level") == 0) {
        int level = nw_log_level_parse(value);
        if (level < 0) {
            snprintf(errbuf, errlen, "log-level '%s': expected err, warning, notice, info or debug", value);
            return -1;
        }
        self->log_level = level;
    } else if (strcmp(key, "no-sync") == 0)
        self->sync = false;
    else if (strcmp(key, "sync") == 0)
        self->sync = parse_bool(value);
    else {
        snprintf(errbuf, errlen, "unknown setting '%s'", key);
        return -1;
    }
    return 0;
}

static void set_defaults(nw_config_t *self)
{
    memset(self, 0, sizeof *self);
    self->drop_dir = strdup(NW_DEFAULT_DROP);
    self->state_dir = strdup(NW_DEFAULT_STATE);
    self->publish[0] = strdup(NW_DEFAULT_PUBLISH);
    self->publish_count = 1;
    self->log_level = NW_LOG_INFO;
    self->max_size = 8u << 20;
    self->send_hwm = 10000;
    self->dedup_window_ms = 86400 * 1000LL;
    self->commit_delay_ms = 0;
    self->sync = true;
    self->segment_size = 64u << 20;
    self->journal_max_size = 1u << 30;
    self->journal_max_age_ms = 7 * 86400 * 1000LL;
    self->replay_max_bytes = 32u << 20;
    self->replay_max_files = 32;
    self->replay_idle_ms = 60 * 1000LL;
}

/* Apply the "newswired" section of a loaded file. */
static int apply_file(nw_config_t *self, zconfig_t *file, char *errbuf, size_t errlen)
{
    zconfig_t *section = zconfig_locate(file, "newswired");
    bool publish_reset[2] = {false, false};   /* publish, replay */
    for (zconfig_t *item = section ? zconfig_child(section) : NULL; item; item = zconfig_next(item)) {
        char reason[256];
        const char *value = zconfig_value(item);
        if (apply(self, zconfig_name(item), value ? value : "", publish_reset, reason, sizeof reason) != 0) {
            snprintf(errbuf, errlen, "%s: newswired/%s", reason, zconfig_name(item));
            return -1;
        }
    }
    return 0;
}

/* Walk argv; with config_only, just find --config, else apply every flag. */
static int apply_argv(nw_config_t *self, int argc, char **argv, bool config_only,
                      char *errbuf, size_t errlen)
{
    bool publish_reset[2] = {false, false};   /* publish, replay */
    optind = 1;
    opterr = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, ":c:d:s:p:l:Vh", long_options, NULL)) != -1) {
        const char *key = NULL;
        switch (opt) {
        case 'c': if (config_only) set_str(&self->config_file, optarg); continue;
        case 'h': if (!config_only) { fputs(usage, stdout); return 1; } continue;
        case 'V': if (!config_only) { printf("newswired %s\n", NW_VERSION); return 1; } continue;
        case ':':
            snprintf(errbuf, errlen, "option '%s' needs a value", argv[optind - 1]);
            return -1;
        case '?':
            snprintf(errbuf, errlen, "unknown option '%s' (see --help)", argv[optind - 1]);
            return -1;
        default:
            for (const struct option *o = long_options; o->name; o++)
                if (o->val == opt)
                    key = o->name;
        }
        if (config_only || !key)
            continue;
        if (apply(self, key, optarg ? optarg : "", publish_reset, errbuf, errlen) != 0)
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

int nw_config_reload(nw_config_t *self, int argc, char **argv, char *errbuf, size_t errlen)
{
    nw_config_t fresh;
    set_defaults(&fresh);
    if (load_into(&fresh, argc, argv, errbuf, errlen) != 0) {
        nw_config_release(&fresh);
        return -1;
    }
    self->log_level = fresh.log_level;
    self->dedup_window_ms = fresh.dedup_window_ms;
    zconfig_destroy(&self->file);
    self->file = fresh.file;
    fresh.file = NULL;
    nw_config_release(&fresh);
    return 0;
}

void nw_config_release(nw_config_t *self)
{
    free(self->config_file);
    free(self->drop_dir);
    free(self->state_dir);
    free(self->curve_secret);
    free(self->clients_dir);
    free(self->metrics);
    for (size_t i = 0; i < self->publish_count; i++)
        free(self->publish[i]);
    for (size_t i = 0; i < self->replay_count; i++)
        free(self->replay[i]);
    zconfig_destroy(&self->file);
    memset(self, 0, sizeof *self);
}
