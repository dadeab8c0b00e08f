/*
 * log: one line per event on stderr. Under journald (JOURNAL_STREAM set) each line
 * carries a "<N>" syslog priority prefix so journalctl filters by level; elsewhere it
 * carries a UTC timestamp and the level's name. Safe from any thread (one fprintf per
 * line, stdio locks the stream).
 */
#ifndef NW_LOG_H
#define NW_LOG_H

#include <stdarg.h>
#include <stddef.h>

typedef enum {
    NW_LOG_ERR = 3,
    NW_LOG_WARNING = 4,
    NW_LOG_NOTICE = 5,
    NW_LOG_INFO = 6,
    NW_LOG_DEBUG = 7,
} nw_log_level_t;

void nw_log_init(void); /* reads JOURNAL_STREAM */
void nw_log_set_level(nw_log_level_t level);
nw_log_level_t nw_log_get_level(void);
/* "err", "warning", "notice", "info", "debug"; -1 when unknown */
int nw_log_level_parse(const char *name);
const char *nw_log_level_name(nw_log_level_t level);

void nw_log(nw_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Copy name into out (size outlen) with control characters and invalid UTF-8 escaped
 * as \xNN, so hostile file names cannot forge log lines. Returns out. */
const char *nw_log_escape(const char *name, char *out, size_t outlen);

/* The level is checked before the arguments are evaluated: per-article debug lines
 * escape file names (nw_log_escape) that nobody reads at the default level. */
#define NW_LOG_AT(level, ...) \
    do { \
        if ((int) (level) <= (int) nw_log_get_level()) \
            nw_log((level), __VA_ARGS__); \
    } while (0)
#define nw_err(...) NW_LOG_AT(NW_LOG_ERR, __VA_ARGS__)
#define nw_warn(...) NW_LOG_AT(NW_LOG_WARNING, __VA_ARGS__)
#define nw_notice(...) NW_LOG_AT(NW_LOG_NOTICE, __VA_ARGS__)
#define nw_info(...) NW_LOG_AT(NW_LOG_INFO, __VA_ARGS__)
#define nw_debug(...) NW_LOG_AT(NW_LOG_DEBUG, __VA_ARGS__)

#endif
