/*
 * article: turns the bytes of one dropped file into a normalized story.
 *
 * Three layouts are recognised from content (not from the file name): a header block
 * ("Key: value" lines, blank line, body), an IPTC ninjs JSON object (1.x and 2.x
 * names), and the layout news-site scrapers leave (standfirst, author, date, optional
 * read time, headline, body, page furniture). Whatever the layout, the result is the
 * same: valid UTF-8 without BOM, LF line endings, trimmed fields, dates in UTC.
 * Content that opens with markup (XML, HTML) in no layout known here is rejected with
 * "unknown layout: ...", never read as text.
 *
 * Pure functions of their input: safe on libuv's worker threads, no I/O, no globals.
 */
#ifndef NW_ARTICLE_H
#define NW_ARTICLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NW_ARTICLE_ERRLEN 256
#define NW_ARTICLE_MAX_SUBJECTS 64  /* more is hostile or junk; the rest are dropped */

typedef enum {
    NW_FORMAT_HEADER = 1,   /* "header" */
    NW_FORMAT_SCRAPED,      /* "scraped" */
    NW_FORMAT_NINJS,        /* "ninjs" */
} nw_format_t;

typedef struct {
    nw_format_t format;
    char *uri;              /* from the input, or NULL (the pipeline then uses "urn:newswire:<id>") */
    char *headline;         /* never NULL */
    char *byline;           /* authors joined with ", ", or NULL */
    char *author_bio;       /* scraped "About the Author" text, or NULL; never in body */
    char *description;      /* standfirst / summary, or NULL */
    char *body;             /* paragraphs separated by one blank line; never NULL */
    char *language;         /* or NULL */
    int64_t versioncreated_ms; /* ms since 1970 UTC; the mtime given to parse when absent */
    char **subjects;        /* the article's own subjects, as written (not yet topics):
                               trimmed, duplicates dropped, at most NW_ARTICLE_MAX_SUBJECTS */
    size_t subject_count;
    char id[41];            /* stable id: hex SHA-1 of uri if any, else of normalized content */
    unsigned replaced_bytes;/* input bytes of invalid UTF-8 replaced by U+FFFD (one U+FFFD
                               per maximal invalid subpart) */
} nw_article_t;

/* Parse len bytes. mtime_ms stands in for a missing date. On success *out owns a new
 * article and 0 is returned; on failure -1 and a one-line reason in errbuf (such as
 * "no headline", "contains NUL bytes", "invalid JSON at line 3: ..."). */
int nw_article_parse(const char *data, size_t len, int64_t mtime_ms,
                     nw_article_t **out, char *errbuf, size_t errlen);
void nw_article_destroy(nw_article_t **self_p);

const char *nw_format_name(nw_format_t format);

/* Dates as editors write them: RFC 3339 (offsets converted to UTC), "2021-05-25",
 * "May 25, 2021", "Sep 3, 2024", "25 May 2021", optionally after a weekday
 * ("Tuesday, May 25, 2021"). Dates without a time are midnight UTC.
 * 0 on success with *unix_ms set; -1 when unrecognised. */
int nw_date_parse(const char *text, int64_t *unix_ms);
/* The same for a counted string (need not be NUL-terminated). */
int nw_date_parse_n(const char *text, size_t len, int64_t *unix_ms);

/*
 * Between the article modules only (article.c dispatches to parse_*.c). Each fills a
 * zeroed article from text already sanitized by nw_text_sanitize (valid UTF-8, LF, no
 * BOM, no NUL); versioncreated_ms is INT64_MIN on entry and stays so when the input has
 * no date. article.c then checks headline and body, fills the date and computes the id.
 */
bool nw_article_looks_like_header(const char *text, size_t len);
int nw_article_from_header(nw_article_t *self, const char *text, size_t len,
                           char *errbuf, size_t errlen);
int nw_article_from_scraped(nw_article_t *self, const char *text, size_t len,
                            char *errbuf, size_t errlen);
int nw_article_from_ninjs(nw_article_t *self, const char *text, size_t len,
                          char *errbuf, size_t errlen);
/* Set versioncreated_ms from a date written as nw_date_parse accepts (a blank one
 * leaves it unset); -1 and the reason "unrecognised date '...'" (the text cut short)
 * when it is not one. */
int nw_article_set_date(nw_article_t *self, const char *s, size_t n,
                        char *errbuf, size_t errlen);
/* Add one subject (trimmed, white space collapsed; blanks, duplicates and those past
 * NW_ARTICLE_MAX_SUBJECTS ignored). -1 only when out of memory. */
int nw_article_add_subject(nw_article_t *self, const char *s, size_t n);
/* Set the byline from a list of names: split on commas and semicolons (and on " and "
 * / " & " when split_and: free text; structured lists keep "A and B" whole), each
 * trimmed, a leading "By " dropped, joined with ", ". Appends to an existing byline.
 * -1 only when out of memory. */
int nw_article_add_authors(nw_article_t *self, const char *s, size_t n, bool split_and);

#endif
