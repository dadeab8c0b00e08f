/*
 * parse_scraped: the layout a news-site scraper leaves behind, top to bottom:
 *
 *   standfirst            (one or more lines; becomes the description)
 *   author line(s)        ("A", "By A and B", "A, B & C")
 *   date line             (any form nw_date_parse accepts, weekday allowed)
 *   read time             (optional: "2 Min Read", "5 min read")
 *   headline
 *   body paragraphs       (the first often repeats the standfirst: it stays)
 *   page furniture        ("About the Author(s)" + name, biography, "Follow him @x";
 *                          "You May Also Like" and everything after it)
 *
 * Sanitized text comes in; fields leave in the article. Nothing is found by line
 * number: the date line anchors the top, marker lines anchor the bottom, and blank
 * lines are never significant except as paragraph breaks.
 */
#include "article.h"
#include "date.h"
#include "text.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The date line must be among the first HEAD_DATE_LINES non-blank lines; two more are
 * kept for the read time and the headline. */
#define HEAD_DATE_LINES 12
#define HEAD_LINES (HEAD_DATE_LINES + 2)
/* A name (or a list of them) is short; anything longer is prose. */
#define NAME_MAX_BYTES 100
#define NAME_MAX_WORDS 12

typedef struct {
    const char *s; /* trimmed */
    size_t n;
    size_t next; /* offset of the line after it */
} line_t;

typedef struct {
    const char *s;
    size_t n;
} marker_t;
#define MARKER(lit) \
    { \
        lit, sizeof lit - 1 \
    }

/* Every body line is compared with each marker: lengths known here turn most lines
 * away without a strlen. */
static const marker_t about_markers[] = {
    MARKER("About the Author(s)"),
    MARKER("About the Author"),
    MARKER("About the Authors"),
};
static const marker_t trailer_markers[] = {
    MARKER("You May Also Like"),
    MARKER("You Might Also Like"),
    MARKER("Related Articles"),
    MARKER("Related Stories"),
};

static bool is_marker(const char *s, size_t n, const marker_t *markers, size_t count)
{
    size_t i;
    for (i = 0; i < count; i++)
        if (n == markers[i].n && nw_text_istarts(s, n, markers[i].s))
            return true;
    return false;
}

static bool is_about(const char *s, size_t n)
{
    return is_marker(s, n, about_markers, sizeof about_markers / sizeof about_markers[0]);
}

static bool is_trailer(const char *s, size_t n)
{
    return is_marker(s, n, trailer_markers, sizeof trailer_markers / sizeof trailer_markers[0]);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* "2 Min Read", "5 min read", "3 minutes", "10-minute read" */
static bool is_read_time(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && i < 4 && is_digit(s[i]))
        i++;
    if (i == 0 || i == 4)
        return false;
    while (i < n && (s[i] == ' ' || s[i] == '-'))
        i++;
    static const char *const units[] = {
        "minutes read", "minute read", "mins read", "min read",
        "minutes",      "minute",      "mins",      "min",
    };
    size_t k;
    for (k = 0; k < sizeof units / sizeof units[0]; k++)
        if (nw_text_ieq(s + i, n - i, units[k]))
            return true;
    return false;
}

/* Could this line be a list of people's names? Short, no digits, no link, and not
 * ending like a sentence. */
static bool is_name_like(const char *s, size_t n, size_t max_words)
{
    if (n == 0 || n > NAME_MAX_BYTES)
        return false;
    size_t i, words = 1;
    for (i = 0; i < n; i++) {
        if (is_digit(s[i]) || s[i] == '@' || s[i] == '/')
            return false;
        if (s[i] == ' ' && i + 1 < n && s[i + 1] != ' ')
            words++;
    }
    char last = s[n - 1];
    return words <= max_words && last != '.' && last != '!' && last != '?' && last != ':' &&
           last != ';';
}

/* "Follow him @handle", "Follow her on X @handle" */
static bool is_follow(const char *s, size_t n)
{
    if (!nw_text_istarts(s, n, "follow "))
        return false;
    size_t i;
    for (i = 0; i < n && i < NAME_MAX_BYTES; i++)
        if (s[i] == '@')
            return true;
    return false;
}

/* Up to HEAD_LINES non-blank lines from the top, trimmed, in head[*count ..]: more of
 * them (up to `want` in all) when called again. */
static void read_head(const char *text, size_t len, line_t *head, size_t *count, size_t want)
{
    size_t pos = *count ? head[*count - 1].next : 0, n;
    const char *s;
    while (*count < want && nw_text_next_line(text, len, &pos, &s, &n)) {
        nw_text_trim(&s, &n);
        if (n == 0)
            continue;
        head[*count].s = s;
        head[*count].n = n;
        head[*count].next = pos;
        (*count)++;
    }
}

/*
 * The text from `from` on: body paragraphs, then furniture. The "About the Author"
 * block gives author_bio (names and "Follow" lines dropped, and a name taken as the
 * byline when the top had none); a trailer marker ends everything.
 */
static int read_body(nw_article_t *self, const char *text, size_t len, size_t from)
{
    nw_text_para_t body = {0}, bio = {0};
    size_t pos = from, n;
    const char *s;
    bool in_about = false, expect_name = false, oom = false;

    while (nw_text_next_line(text, len, &pos, &s, &n)) {
        nw_text_trim(&s, &n);
        if (is_trailer(s, n))
            break;
        if (!in_about) {
            if (is_about(s, n))
                in_about = expect_name = true;
            else
                nw_text_para_line(&body, s, n);
            continue;
        }
        /* In the about block a name heads each author's part: at its start, after a
         * blank line or after the previous author's "Follow" line. */
        if (n == 0 || is_follow(s, n)) {
            nw_text_para_break(&bio);
            expect_name = true;
            continue;
        }
        if (expect_name && is_name_like(s, n, 6)) {
            if (!self->byline && nw_article_add_authors(self, s, n, true) != 0)
                goto fail;
            nw_text_para_break(&bio);
            continue;
        }
        expect_name = false;
        nw_text_para_line(&bio, s, n);
    }
    self->body = nw_text_para_take(&body, &oom);
    if (oom)
        goto fail;
    self->author_bio = nw_text_para_take(&bio, &oom);
    if (oom)
        goto fail;
    return 0;

fail:
    nw_text_buf_free(&body.buf);
    nw_text_buf_free(&bio.buf);
    return -1;
}

int nw_article_from_scraped(nw_article_t *self, const char *text, size_t len, char *errbuf,
                            size_t errlen)
{
    line_t head[HEAD_LINES];
    size_t count = 0, i, date = SIZE_MAX, headline;

    /* The lines are read as the search for the date goes: past the date only the two
     * it may need (read time, headline), so the body is not scanned for line ends
     * here and again below. */
    for (i = 0; i < HEAD_DATE_LINES; i++) {
        read_head(text, len, head, &count, i + 1);
        if (i >= count)
            break;
        if (nw_date_parse_n(head[i].s, head[i].n, &self->versioncreated_ms) == 0) {
            date = i;
            break;
        }
    }
    read_head(text, len, head, &count, date != SIZE_MAX ? date + 3 : HEAD_LINES);
    if (date == SIZE_MAX)
        date = count;
    if (count == 0)
        return 0; /* article.c reports "no headline" */

    if (date < count) {
        /* Above the date: the standfirst, then the author lines (names, read from the
         * date upwards). A lone line is whichever it looks like. */
        size_t first_author = date;
        while (first_author > 1 &&
               is_name_like(head[first_author - 1].s, head[first_author - 1].n, NAME_MAX_WORDS))
            first_author--;
        if (date == 1 && is_name_like(head[0].s, head[0].n, NAME_MAX_WORDS))
            first_author = 0;
        if (first_author > 0) {
            nw_text_buf_t buf = {0};
            for (i = 0; i < first_author; i++) {
                if (i)
                    nw_text_buf_putc(&buf, ' ');
                nw_text_put_oneline(&buf, head[i].s, head[i].n);
            }
            self->description = nw_text_buf_take(&buf);
            if (!self->description)
                goto fail;
        }
        for (i = first_author; i < date; i++)
            if (nw_article_add_authors(self, head[i].s, head[i].n, true) != 0)
                goto fail;
        headline = date + 1;
        if (headline < count && is_read_time(head[headline].s, head[headline].n))
            headline++;
    } else {
        /* No date line: plain text, or a scrape that lost its top. Take the first line
         * after a read time (if any) as the headline, else the first line. */
        headline = 0;
        for (i = 0; i + 1 < count && i < HEAD_DATE_LINES; i++)
            if (is_read_time(head[i].s, head[i].n)) {
                headline = i + 1;
                break;
            }
    }
    if (headline >= count)
        return 0; /* article.c reports "no headline" */
    self->headline = nw_text_oneline(head[headline].s, head[headline].n);
    if (!self->headline || read_body(self, text, len, head[headline].next) != 0)
        goto fail;
    return 0;

fail:
    snprintf(errbuf, errlen, "out of memory");
    return -1;
}
