/*
 * article: turns the bytes of one dropped file into a normalized story.
 *
 * Three layouts are recognised from content (not from the file name): a header block
 * ("Key: value" lines, blank line, body), an IPTC ninjs JSON object (1.x and 2.x
 * names), and the layout news-site scrapers leave (standfirst, author, date, optional
 * read time, headline, body, page furniture). Whatever the layout, the result is the
 * same: valid UTF-8 without BOM, LF line endings, trimmed fields, dates in UTC.
 *
 * Pure functions of their input: safe on libuv's worker threads, no I/O, no globals.
 */
#ifndef NW_ARTICLE_H
#define NW_ARTICLE_H

#include <stddef.h>
#include <stdint.h>

#define NW_ARTICLE_ERRLEN 256

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
    char **subjects;        /* the article's own subjects, as written (not yet topics) */
    size_t subject_count;
    char id[41];            /* stable id: hex SHA-1 of uri if any, else of normalized content */
    unsigned replaced_bytes;/* invalid UTF-8 sequences replaced while normalizing */
} nw_article_t;

/* Parse len bytes. mtime_ms stands in for a missing date. On success *out owns a new
 * article and 0 is returned; on failure -1 and a one-line reason in errbuf (such as
 * "no headline", "contains NUL bytes", "invalid JSON at line 3: ..."). */
int nw_article_parse(const char *data, size_t len, int64_t mtime_ms,
                     nw_article_t **out, char *errbuf, size_t errlen);
void nw_article_destroy(nw_article_t **self_p);

const char *nw_format_name(nw_format_t format);

/* Dates as editors write them: RFC 3339, "2021-05-25", "May 25, 2021", "25 May 2021".
 * 0 on success with *unix_ms set; -1 when unrecognised. */
int nw_date_parse(const char *text, int64_t *unix_ms);

#endif
