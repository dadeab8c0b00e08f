/*
 * config: newswired's settings, from built-in defaults, then the config file (CZMQ ZPL
 * via zconfig, keys under "newswired" mirroring the long flags), then the command line,
 * each overriding the one before. A reload (SIGHUP) re-reads the file but keeps what the
 * command line said, so the flags an operator typed stay in force. Every setting is
 * one row of the table in config.c (flag, key, default, reloadable, help); a field here
 * is where the modules read it.
 */
#ifndef NW_CONFIG_H
#define NW_CONFIG_H

#include "auth.h"
#include "route.h"
#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NW_CONFIG_MAX_ENDPOINTS 16

#define NW_DEFAULT_DROP "./drop"
#define NW_DEFAULT_STATE "./state"
#define NW_DEFAULT_PUBLISH "tcp://127.0.0.1:5556"

/* How the journal is synced (--sync): see journal.h, early publish. */
typedef enum { NW_SYNC_OFF = 0, NW_SYNC_ON = 1, NW_SYNC_EARLY = 2 } nw_sync_mode_t;

typedef struct {
    char *config_file; /* NULL: none */
    char *drop_dir;
    char *state_dir;
    char *publish[NW_CONFIG_MAX_ENDPOINTS];
    size_t publish_count;
    char *replay[NW_CONFIG_MAX_ENDPOINTS]; /* ROUTER endpoints for replay; none by default */
    size_t replay_count;
    int log_level;              /* nw_log_level_t */
    uint64_t max_size;          /* bytes; larger files are rejected unread */
    int send_hwm;               /* messages queued per subscriber */
    int multicast_rate;         /* epgm endpoints: kbit/s (ZMQ_RATE) */
    int multicast_recovery_ms;  /* epgm endpoints: repair window (ZMQ_RECOVERY_IVL) */
    int64_t dedup_window_ms;    /* 0: re-publish re-dropped articles */
    int64_t commit_delay_ms;    /* group commit: least time between two writes */
    int sync;                   /* nw_sync_mode_t: off (no fsync at all:
                                   benchmarks, tmpfs), on, early */
    int burst_pool;             /* a burst's files on the thread pool: 1, 0, -1 auto */
    uint64_t segment_size;      /* journal segment rotation size */
    uint64_t journal_max_size;  /* journal retention by size */
    int64_t journal_max_age_ms; /* journal retention by age */
    uint64_t replay_max_bytes;  /* replies replay may hold in all */
    unsigned replay_max_files;  /* segment files replay may hold open in all */
    int64_t replay_idle_ms;     /* a replay stream that moves nothing this long goes */
    char *curve_secret;         /* server certificate: CURVE on every endpoint; NULL: off */
    char *clients_dir;          /* allowed client public certificates */
    bool insecure;              /* allow clear text on non-loopback endpoints */
    char *metrics;              /* HTTP endpoint of the Prometheus metrics; NULL: off */
    char *upstream;             /* relay: the upstream's live endpoint; NULL: the drop
                                   folder is the input */
    char *upstream_replay;      /* relay: the upstream's replay endpoint, or NULL */
    char *upstream_topic[NW_CONFIG_MAX_ENDPOINTS]; /* relay: topics carried; none: all */
    size_t upstream_topic_count;
    char *upstream_cert; /* relay: its client certificate (_secret) for CURVE */
    char *upstream_key;  /* relay: the upstream's public key or certificate */
    zconfig_t *file;     /* the loaded file (rules live there), or NULL */
} nw_config_t;

/* Parse argv over the defaults and the config file named by --config.
 * Returns 0 to run, 1 when --help/--version was answered (exit 0), -1 on a usage or
 * config error (reason in errbuf, exit 2). */
int nw_config_load(nw_config_t *self, int argc, char **argv, char *errbuf, size_t errlen);

/* Re-read the config file for SIGHUP; on success replaces the settings config.c's table
 * marks reloadable (log level, dedup window; --help lists them) and self->file (the
 * caller rebuilds rules and grants from it). Command-line values keep priority. The
 * other settings keep their running values; those the file changed are named in a
 * warning.
 * -1 with the reason when the file is unreadable or invalid; self is then unchanged. */
int nw_config_reload(nw_config_t *self, int argc, char **argv, char *errbuf, size_t errlen);

void nw_config_release(nw_config_t *self);

/* The file's "rules" section as route's options (file may be NULL); *out is NULL when
 * there is no section: the built-in rules. Its strings are the file's, valid while it
 * is. -1 with the reason when a key is unknown or a number is not one in its range. */
int nw_config_rules(zconfig_t *file, nw_rules_options_t **out, char *errbuf, size_t errlen);
void nw_config_rules_free(nw_rules_options_t **options_p);

/* The file's "grants" section as auth's list (*out NULL and *count 0 when there is
 * none); strings as above. -1 only when out of memory. */
int nw_config_grants(zconfig_t *file, nw_auth_grant_t **out, size_t *count);

#endif
