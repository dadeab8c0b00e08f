/*
 * date: the date forms editors and feeds write, turned into ms since 1970 UTC.
 *
 * A counted string comes in, an int64 leaves. Calendar arithmetic is done here
 * (days from civil, proleptic Gregorian) rather than with timegm/strptime, so the
 * result depends on neither the locale nor the TZ variable and any thread may call it.
 */
#include "date.h"

#include <stdbool.h>
#include <string.h>

/* Longer than any accepted form: lets a multi-megabyte line be refused at once. */
#define DATE_MAX_LEN 64

typedef struct {
    const char *s;
    size_t n;
    size_t i;
} cursor_t;

static const char *const month_names[12] = {
    "january", "february", "march",     "april",   "may",      "june",
    "july",    "august",   "september", "october", "november", "december",
};
static const char *const weekday_names[7] = {
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
};

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char) (c - 'A' + 'a') : c;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(char c)
{
    c = lower(c);
    return c >= 'a' && c <= 'z';
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned) (y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t) doe - 719468;
}

static unsigned days_in_month(int y, unsigned m)
{
    static const unsigned days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : days[m - 1];
}

/* width_min..width_max digits, not followed by another digit, into *out. */
static bool take_number(cursor_t *c, size_t width_min, size_t width_max, int *out)
{
    size_t k = 0;
    int v = 0;
    while (k < width_max && c->i + k < c->n && is_digit(c->s[c->i + k])) {
        v = v * 10 + (c->s[c->i + k] - '0');
        k++;
    }
    if (k < width_min || (c->i + k < c->n && is_digit(c->s[c->i + k])))
        return false;
    c->i += k;
    *out = v;
    return true;
}

static bool take_char(cursor_t *c, char ch)
{
    if (c->i < c->n && lower(c->s[c->i]) == ch) {
        c->i++;
        return true;
    }
    return false;
}

static void skip_spaces(cursor_t *c)
{
    while (c->i < c->n && (c->s[c->i] == ' ' || c->s[c->i] == '\t'))
        c->i++;
}

/* A word of letters; matches a name in full or its first three letters ("Sep" also as
 * "Sept"). Returns the index in names, or -1. */
static int take_name(cursor_t *c, const char *const *names, int count)
{
    size_t k = 0;
    while (c->i + k < c->n && is_alpha(c->s[c->i + k]))
        k++;
    if (k < 3)
        return -1;
    int i;
    for (i = 0; i < count; i++) {
        size_t full = strlen(names[i]);
        if (k > full)
            continue;
        size_t j;
        for (j = 0; j < k && lower(c->s[c->i + j]) == names[i][j]; j++)
            ;
        if (j == k && (k == 3 || k == full || (k == 4 && i == 8))) {
            c->i += k;
            take_char(c, '.'); /* "Sep. 3" */
            return i;
        }
    }
    return -1;
}

static bool valid_date(int y, int m, int d)
{
    return y >= 1 && y <= 9999 && m >= 1 && m <= 12 && d >= 1 &&
           (unsigned) d <= days_in_month(y, (unsigned) m);
}

/* "T12:34:56(.frac)?(Z|+hh:mm|-hh:mm)" after an ISO date; *secs gets the time of day
 * minus the offset. */
static bool take_time(cursor_t *c, int64_t *secs, int *ms)
{
    int hh, mm, ss = 0, oh = 0, om = 0;
    if (!take_number(c, 2, 2, &hh) || !take_char(c, ':') || !take_number(c, 2, 2, &mm))
        return false;
    if (take_char(c, ':')) {
        if (!take_number(c, 2, 2, &ss))
            return false;
        if (take_char(c, '.') || take_char(c, ',')) {
            int digits = 0;
            *ms = 0;
            while (c->i < c->n && is_digit(c->s[c->i])) {
                if (digits < 3)
                    *ms = *ms * 10 + (c->s[c->i] - '0');
                digits++;
                c->i++;
            }
            if (digits == 0)
                return false;
            for (; digits < 3; digits++)
                *ms *= 10;
        }
    }
    /* 60 is a leap second: kept as the last second of the minute. */
    if (hh > 23 || mm > 59 || ss > 60)
        return false;
    if (ss == 60)
        ss = 59;
    skip_spaces(c);
    int sign = 0;
    if (take_char(c, 'z'))
        sign = 0;
    else if (take_char(c, '+'))
        sign = 1;
    else if (take_char(c, '-'))
        sign = -1;
    else if (c->i == c->n)
        sign = 0; /* no zone: taken as UTC, which is what feeds without one mean */
    else
        return false;
    if (sign) {
        int hhmm;
        if (take_number(c, 4, 4, &hhmm)) { /* +0530, as some feeds write it */
            oh = hhmm / 100;
            om = hhmm % 100;
        } else if (!take_number(c, 2, 2, &oh) || !take_char(c, ':') || !take_number(c, 2, 2, &om))
            return false;
        if (oh > 23 || om > 59)
            return false;
    }
    *secs = (int64_t) hh * 3600 + mm * 60 + ss - sign * ((int64_t) oh * 3600 + om * 60);
    return true;
}

int nw_date_parse_n(const char *text, size_t len, int64_t *unix_ms)
{
    while (len && (*text == ' ' || *text == '\t')) {
        text++;
        len--;
    }
    while (len && (text[len - 1] == ' ' || text[len - 1] == '\t'))
        len--;
    if (len == 0 || len > DATE_MAX_LEN)
        return -1;

    cursor_t c = {text, len, 0};
    int y = 0, m = 0, d = 0, ms = 0;
    int64_t secs = 0;

    if (is_digit(text[0]) && len >= 10 && text[4] == '-') {
        /* ISO: 2021-05-25 or RFC 3339 */
        if (!take_number(&c, 4, 4, &y) || !take_char(&c, '-') || !take_number(&c, 2, 2, &m) ||
            !take_char(&c, '-') || !take_number(&c, 2, 2, &d))
            return -1;
        if (c.i < c.n && !(take_char(&c, 't') || take_char(&c, ' ')))
            return -1;
        if (c.i < c.n && !take_time(&c, &secs, &ms))
            return -1;
    } else {
        cursor_t save = c;
        if (take_name(&c, weekday_names, 7) >= 0) {
            take_char(&c, ',');
            skip_spaces(&c);
        } else
            c = save;
        int month = take_name(&c, month_names, 12);
        if (month >= 0) {
            /* May 25, 2021 */
            skip_spaces(&c);
            if (!take_number(&c, 1, 2, &d))
                return -1;
            take_char(&c, ',');
        } else {
            /* 25 May 2021 */
            if (!take_number(&c, 1, 2, &d))
                return -1;
            skip_spaces(&c);
            month = take_name(&c, month_names, 12);
            if (month < 0)
                return -1;
        }
        skip_spaces(&c);
        if (!take_number(&c, 4, 4, &y))
            return -1;
        m = month + 1;
    }
    if (c.i != c.n || !valid_date(y, m, d))
        return -1;
    *unix_ms = (days_from_civil(y, (unsigned) m, (unsigned) d) * 86400 + secs) * 1000 + ms;
    return 0;
}

int nw_date_parse(const char *text, int64_t *unix_ms)
{
    if (!text)
        return -1;
    return nw_date_parse_n(text, strlen(text), unix_ms);
}
