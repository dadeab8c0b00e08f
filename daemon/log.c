/*
 * log: formats and writes log lines to stderr (see log.h). The level is an atomic so
 * SIGHUP can change it on the loop thread while workers log.
 */
#include "log.h"
#include "text.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static atomic_int log_level = NW_LOG_INFO;
static bool log_journal;

static const char *const level_names[] = {
    [NW_LOG_ERR] = "err",   [NW_LOG_WARNING] = "warning", [NW_LOG_NOTICE] = "notice",
    [NW_LOG_INFO] = "info", [NW_LOG_DEBUG] = "debug",
};

void nw_log_init(void)
{
    /* journald sets JOURNAL_STREAM for services whose stderr it reads */
    const char *stream = getenv("JOURNAL_STREAM");
    log_journal = stream && *stream;
}

void nw_log_set_level(nw_log_level_t level)
{
    atomic_store(&log_level, (int) level);
}
nw_log_level_t nw_log_get_level(void)
{
    return (nw_log_level_t) atomic_load(&log_level);
}

int nw_log_level_parse(const char *name)
{
    for (int i = NW_LOG_ERR; i <= NW_LOG_DEBUG; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    if (strcmp(name, "error") == 0)
        return NW_LOG_ERR;
    if (strcmp(name, "warn") == 0)
        return NW_LOG_WARNING;
    return -1;
}

const char *nw_log_level_name(nw_log_level_t level)
{
    return level >= NW_LOG_ERR && level <= NW_LOG_DEBUG ? level_names[level] : "?";
}

void nw_log(nw_log_level_t level, const char *fmt, ...)
{
    if ((int) level > atomic_load(&log_level))
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (log_journal) {
        fprintf(stderr, "<%d>%s\n", (int) level, line);
        return;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-7s %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
            (long) (tv.tv_usec / 1000), nw_log_level_name(level), line);
}

const char *nw_log_escape(const char *name, char *out, size_t outlen)
{
    const unsigned char *s = (const unsigned char *) name;
    size_t n = strlen(name), o = 0;
    if (outlen == 0)
        return out;
    for (size_t i = 0; i < n && o + 5 < outlen;) {
        size_t len = nw_text_utf8_len(name + i, n - i);
        if (len == 0 || s[i] < 0x20 || s[i] == 0x7F || s[i] == '\\') {
            o += (size_t) snprintf(out + o, outlen - o, "\\x%02x", s[i]);
            i++;
        } else {
            if (o + len >= outlen)
                break;
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        }
    }
    out[o] = '\0';
    return out;
}
