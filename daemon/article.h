/*
 * article: turns the bytes of one dropped file into a normalized story.
 *
 * The layouts are recognised from content (not from the file name): a header block
 * ("Key: value" lines, blank line, body), an IPTC ninjs JSON object (1.x and 2.x
 * names), the layout news-site scrapers leave (standfirst, author, date, optional
 * read time, headline, body, page furniture), by their root element IPTC NewsML-G2
 * (newsMessage, newsItem) and NITF documents, and HTML pages (their JSON-LD, OpenGraph
 * and main text). Whatever the layout, the result is the same: valid UTF-8 without
 * BOM (UTF-16 with a BOM and Windows-1252 are converted, and the article says so in
 * `encoding`), LF line endings, trimmed fields, dates in UTC. One file may hold several
 * stories (a G2 message with several items): they come out as a chain (next), and one
 * bad story rejects the whole file.
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
#define NW_ARTICLE_MAX_SUBJECTS 64 /* more is hostile or junk; the rest are dropped */
#define NW_ARTICLE_MAX_ITEMS 64    /* stories in one file; more rejects the file */

typedef enum {
    NW_FORMAT_HEADER = 1, /* "header" */
    NW_FORMAT_SCRAPED,    /* "scraped" */
    NW_FORMAT_NINJS,      /* "ninjs" */
    NW_FORMAT_NEWSML_G2,  /* "newsml-g2" */
    NW_FORMAT_NITF,       /* "nitf" */
    NW_FORMAT_HTML,       /* "html" */
} nw_format_t;

typedef struct nw_article nw_article_t;
struct nw_article {
    nw_format_t format;
    char *uri;         /* from the input, or NULL (the pipeline then uses "urn:newswire:<id>") */
    char *headline;    /* never NULL */
    char *byline;      /* authors joined with ", ", or NULL */
    char *author_bio;  /* scraped "About the Author" text, or NULL; never in body */
    char *description; /* standfirst / summary, or NULL */
    char *body;        /* paragraphs separated by one blank line; never NULL */
    char *language;    /* or NULL */
    char *version;     /* the source's version of the story ("3"), or NULL */
    char *located;     /* where the story was filed from (NITF dateline), or NULL */
    int64_t versioncreated_ms; /* ms since 1970 UTC; the mtime given to parse when absent */
    char **subjects;           /* the article's own subjects, as written (not yet topics):
                                  trimmed, duplicates dropped, at most NW_ARTICLE_MAX_SUBJECTS */
    char **subject_codes;      /* beside each subject its code in a vocabulary, such as
                                  "medtop:04000000" (IPTC Media Topics), or NULL; the array
                                  itself is NULL when no subject has one */
    size_t subject_count;
    char id[41];             /* stable id: hex SHA-1 of uri if any, else of normalized content */
    unsigned replaced_bytes; /* input bytes that decoded to nothing, replaced by U+FFFD (one
                                per maximal invalid UTF-8 subpart, or per UTF-16 unit) */
    const char *encoding;    /* what the file was converted from: "UTF-16LE", "UTF-16BE",
                                "windows-1252" (static strings), NULL when it was UTF-8;
                                set on the chain's first story only */
    nw_article_t *next;      /* the file's next story, or NULL; owned by this one */
};

/* Parse len bytes. mtime_ms stands in for a missing date. On success *out owns a new
 * article (the first of its chain) and 0 is returned; on failure -1 and a one-line reason in
 * errbuf (such as "no headline", "contains NUL bytes", "invalid JSON at line 3: ..."). */
int nw_article_parse(const char *data, size_t len, int64_t mtime_ms, nw_article_t **out,
                     char *errbuf, size_t errlen);
void nw_article_destroy(nw_article_t **self_p); /* and the rest of its chain */

const char *nw_format_name(nw_format_t format);

/*
 * Between the article modules only (article.c dispatches to parse_*.c). Each fills a
 * zeroed article from text already sanitized by nw_text_sanitize (valid UTF-8, LF, no
 * BOM, no NUL); versioncreated_ms is INT64_MIN on entry and stays so when the input has
 * no date. article.c then checks headline and body, fills the date and computes the id.
 */
bool nw_article_looks_like_header(const char *text, size_t len);
int nw_article_from_header(nw_article_t *self, const char *text, size_t len, char *errbuf,
                           size_t errlen);
int nw_article_from_scraped(nw_article_t *self, const char *text, size_t len, char *errbuf,
                            size_t errlen);
int nw_article_from_ninjs(nw_article_t *self, const char *text, size_t len, char *errbuf,
                          size_t errlen);
int nw_article_from_newsml(nw_article_t *self, const char *text, size_t len, char *errbuf,
                           size_t errlen);
int nw_article_from_nitf(nw_article_t *self, const char *text, size_t len, char *errbuf,
                         size_t errlen);
int nw_article_from_html(nw_article_t *self, const char *text, size_t len, char *errbuf,
                         size_t errlen);
/* A further story of the same file, zeroed like the first, linked after the last one;
 * NULL when out of memory. */
nw_article_t *nw_article_append(nw_article_t *self);
/* Set versioncreated_ms from a date written as nw_date_parse (date.h) accepts (a blank one
 * leaves it unset); -1 and the reason "unrecognised date '...'" (the text cut short)
 * when it is not one. */
int nw_article_set_date(nw_article_t *self, const char *s, size_t n, char *errbuf, size_t errlen);
/* Add one subject (trimmed, white space collapsed; blanks, duplicates and those past
 * NW_ARTICLE_MAX_SUBJECTS ignored). -1 only when out of memory. */
int nw_article_add_subject(nw_article_t *self, const char *s, size_t n);
/* The same with the subject's code (NULL: none); a subject with a code is a duplicate
 * when its code is, and is named by its code when it has no name. */
int nw_article_add_coded_subject(nw_article_t *self, const char *s, size_t n, const char *code);
/* Set the byline from a list of names: split on commas and semicolons (and on " and "
 * / " & " when split_and: free text; structured lists keep "A and B" whole), each
 * trimmed, a leading "By " dropped, joined with ", ". Appends to an existing byline.
 * -1 only when out of memory. */
int nw_article_add_authors(nw_article_t *self, const char *s, size_t n, bool split_and);

#endif
