/*
 * date: the date forms editors and feeds write, turned into ms since 1970 UTC. Text
 * comes in, an int64 leaves; pure functions (no locale, no TZ), so any thread may call
 * them. Used by the layout parsers (article.c, parse_*.c).
 */
#ifndef NW_DATE_H
#define NW_DATE_H

#include <stddef.h>
#include <stdint.h>

/* Dates as editors write them: RFC 3339 (offsets converted to UTC), "2021-05-25",
 * "May 25, 2021", "Sep 3, 2024", "25 May 2021", optionally after a weekday
 * ("Tuesday, May 25, 2021"). Dates without a time are midnight UTC.
 * 0 on success with *unix_ms set; -1 when unrecognised. */
int nw_date_parse(const char *text, int64_t *unix_ms);
/* The same for a counted string (need not be NUL-terminated). */
int nw_date_parse_n(const char *text, size_t len, int64_t *unix_ms);

#endif
