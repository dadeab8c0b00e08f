/*
 * test_date: nw_date_parse against values computed independently (date -u +%s), the
 * forms editors write, offsets, calendar edges and the inputs it must refuse.
 */
#include "date.h"
#include "runner.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *text;
    long long ms;
} good[] = {
    {"2021-05-25", 1621900800000LL},
    {"2021-05-25T00:00:00Z", 1621900800000LL},
    {"2021-05-25t00:00:00z", 1621900800000LL},
    {"2021-05-25 00:00:00Z", 1621900800000LL},
    {"2021-05-25T14:05:00-04:00", 1621965900000LL},
    {"2021-05-25T14:05:00+0530", 1621931700000LL},
    {"2021-05-25T14:05:00", 1621951500000LL},
    {"2021-05-25T14:05Z", 1621951500000LL},
    {"2024-09-03T08:00:00.250Z", 1725350400250LL},
    {"2024-09-03T08:00:00.2Z", 1725350400200LL},
    {"2024-09-03T08:00:00.123456789+00:00", 1725350400123LL},
    {"2016-12-31T23:59:60Z", 1483228799000LL},      /* leap second kept in its minute */
    {"2023-01-31T23:30:00-01:00", 1675211400000LL}, /* crosses into February */
    {"1970-01-01T00:00:00Z", 0},
    {"1969-12-31T23:59:59Z", -1000LL},
    {"2000-02-29", 951782400000LL},
    {"2400-02-29", 13574563200000LL},
    {"9999-12-31", 253402214400000LL},
    {"May 25, 2021", 1621900800000LL},
    {"May 25 2021", 1621900800000LL},
    {"may 25, 2021", 1621900800000LL},
    {"Sep 3, 2024", 1725321600000LL},
    {"Sept 3, 2024", 1725321600000LL},
    {"Sep. 3, 2024", 1725321600000LL},
    {"September 3, 2024", 1725321600000LL},
    {"25 May 2021", 1621900800000LL},
    {"3 Sep 2024", 1725321600000LL},
    {"03 September 2024", 1725321600000LL},
    {"Tuesday, May 25, 2021", 1621900800000LL},
    {"Tue, 25 May 2021", 1621900800000LL},
    {"Tue 25 May 2021", 1621900800000LL},
    {"  May 25, 2021 \t", 1621900800000LL},
};

static const char *const bad[] = {
    "",
    " ",
    "yesterday",
    "sometime last week",
    "2021-5-25",
    "2021-05-5",
    "21-05-25",
    "2021-13-01",
    "2021-00-10",
    "2021-02-29",
    "2021-02-30",
    "2100-02-29",
    "0000-01-01",
    "2021-04-31",
    "2021-05-25T24:00:00Z",
    "2021-05-25T23:60:00Z",
    "2021-05-25T23:59:61Z",
    "2021-05-25T12:00:00+24:00",
    "2021-05-25T12:00:00+05:60",
    "2021-05-25T12:00:00+5",
    "2021-05-25T12:00:00.Z",
    "2021-05-25T12Z",
    "2021-05-25T12:00:00Zjunk",
    "2021-05-25x",
    "May 32, 2021",
    "Feb 30, 2021",
    "May 25, 21",
    "May 25, 20211",
    "Mayo 25, 2021",
    "Ma 25, 2021",
    "25 May",
    "May 2021",
    "25 2021",
    "Tuesday",
    "Tuesday,",
    "Monkey, May 25, 2021",
    "May 25, 2021 extra",
    "May 125, 2021",
    "2021-05-25T12:00:00Z 2021-05-25T12:00:00Z",
};

TEST_IMPL(good)
{
    int64_t ms;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ms = 42;
        int rc = nw_date_parse(good[i].text, &ms);
        CHECK(rc == 0 && ms == good[i].ms);
        if (rc != 0 || ms != good[i].ms)
            fprintf(stderr, "  \"%s\": rc %d ms %lld, want %lld\n", good[i].text, rc,
                    (long long) ms, good[i].ms);
    }
}

TEST_IMPL(bad)
{
    int64_t ms;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ms = 42;
        int rc = nw_date_parse(bad[i], &ms);
        CHECK(rc == -1 && ms == 42);
        if (rc != -1)
            fprintf(stderr, "  \"%s\" accepted as %lld\n", bad[i], (long long) ms);
    }
    CHECK(nw_date_parse(NULL, &ms) == -1);
}

/* Counted strings need no terminator and stop where told. */
TEST_IMPL(counted)
{
    int64_t ms;
    CHECK(nw_date_parse_n("2021-05-25garbage", 10, &ms) == 0 && ms == 1621900800000LL);
    CHECK(nw_date_parse_n("May 25, 2021", 6, &ms) == -1);
}

/* A huge line is refused without being scanned as a date. */
TEST_IMPL(huge_line)
{
    int64_t ms;
    size_t big = 1u << 20;
    char *s = malloc(big);
    CHECK(s != NULL);
    if (s) {
        memset(s, '1', big);
        CHECK(nw_date_parse_n(s, big, &ms) == -1);
        free(s);
    }
}
