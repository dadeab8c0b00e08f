/*
 * article: the entry point of parsing. Raw file bytes come in; they are decoded to
 * UTF-8 (text.c: UTF-16, Windows-1252), refused if they hold NUL, sanitized, handed to
 * the parser of the layout the content shows (parse_header.c, parse_scraped.c,
 * parse_ninjs.c; markup by its root element: parse_newsml.c, parse_nitf.c,
 * parse_html.c), each story checked for the fields every story needs, given a date and
 * a stable id, and leave as a chain of heap nw_article_t.
 * Also the field setters the parsers share (subjects, authors).
 */
#include "article.h"
#include "date.h"
#include "sha1.h"
#include "text.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *nw_format_name(nw_format_t format)
{
    switch (format) {
    case NW_FORMAT_HEADER: return "header";
    case NW_FORMAT_SCRAPED: return "scraped";
    case NW_FORMAT_NINJS: return "ninjs";
    case NW_FORMAT_NEWSML_G2: return "newsml-g2";
    case NW_FORMAT_NITF: return "nitf";
    case NW_FORMAT_HTML: return "html";
    }
    return "unknown";
}

static void destroy_one(nw_article_t *self)
{
    free(self->uri);
    free(self->headline);
    free(self->byline);
    free(self->author_bio);
    free(self->description);
    free(self->body);
    free(self->language);
    free(self->version);
    free(self->located);
    size_t i;
    for (i = 0; i < self->subject_count; i++) {
        free(self->subjects[i]);
        if (self->subject_codes)
            free(self->subject_codes[i]);
    }
    free(self->subjects);
    free(self->subject_codes);
    free(self);
}

void nw_article_destroy(nw_article_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nw_article_t *self = *self_p, *next;
    *self_p = NULL;
    for (; self; self = next) {
        next = self->next;
        destroy_one(self);
    }
}

nw_article_t *nw_article_append(nw_article_t *self)
{
    nw_article_t *last = self;
    while (last->next)
        last = last->next;
    nw_article_t *more = calloc(1, sizeof *more);
    if (!more)
        return NULL;
    more->format = self->format;
    more->replaced_bytes = self->replaced_bytes;
    more->encoding = self->encoding;
    more->versioncreated_ms = INT64_MIN;
    last->next = more;
    return more;
}

int nw_article_add_subject(nw_article_t *self, const char *s, size_t n)
{
    return nw_article_add_coded_subject(self, s, n, NULL);
}

int nw_article_add_coded_subject(nw_article_t *self, const char *s, size_t n, const char *code)
{
    if (self->subject_count >= NW_ARTICLE_MAX_SUBJECTS)
        return 0;
    char *subject = nw_text_oneline(s, n);
    char *coded = code ? nw_text_oneline(code, strlen(code)) : NULL;
    if (!subject && coded && !(subject = strdup(coded)))
        goto oom;
    if (!subject) {
        free(coded);
        return nw_text_is_blank(s, n) && (!code || nw_text_is_blank(code, strlen(code))) ? 0 : -1;
    }
    size_t i;
    for (i = 0; i < self->subject_count; i++) {
        const char *other = self->subject_codes ? self->subject_codes[i] : NULL;
        if (coded ? other && strcmp(other, coded) == 0
                  : !other && strcmp(self->subjects[i], subject) == 0) {
            free(subject);
            free(coded);
            return 0;
        }
    }
    if (!self->subjects &&
        !(self->subjects = calloc(NW_ARTICLE_MAX_SUBJECTS, sizeof *self->subjects)))
        goto oom;
    if (coded && !self->subject_codes &&
        !(self->subject_codes = calloc(NW_ARTICLE_MAX_SUBJECTS, sizeof *self->subject_codes)))
        goto oom;
    if (self->subject_codes)
        self->subject_codes[self->subject_count] = coded;
    self->subjects[self->subject_count++] = subject;
    return 0;

oom:
    free(subject);
    free(coded);
    return -1;
}

/* Length of the author separator at s[i], or 0. */
static size_t author_separator(const char *s, size_t n, size_t i, bool split_and)
{
    if (s[i] == ',' || s[i] == ';')
        return 1;
    if (!split_and || s[i] != ' ')
        return 0;
    if (nw_text_istarts(s + i, n - i, " and "))
        return 5;
    if (nw_text_istarts(s + i, n - i, " & "))
        return 3;
    return 0;
}

static void put_author(nw_text_buf_t *buf, const char *s, size_t n, bool split_and)
{
    nw_text_trim(&s, &n);
    /* "By A and B", "A, and B": the words that introduce a name are not part of it. */
    if (nw_text_istarts(s, n, "by ") || (split_and && nw_text_istarts(s, n, "and "))) {
        s += 3;
        n -= 3;
    } else if (split_and && nw_text_istarts(s, n, "& ")) {
        s += 2;
        n -= 2;
    }
    nw_text_trim(&s, &n);
    if (n == 0)
        return;
    if (buf->len)
        nw_text_buf_append(buf, ", ", 2);
    nw_text_put_oneline(buf, s, n);
}

int nw_article_add_authors(nw_article_t *self, const char *s, size_t n, bool split_and)
{
    nw_text_buf_t buf = {0};
    if (self->byline)
        nw_text_buf_append(&buf, self->byline, strlen(self->byline));
    size_t i = 0, start = 0;
    while (i < n) {
        size_t k = author_separator(s, n, i, split_and);
        if (k) {
            put_author(&buf, s + start, i - start, split_and);
            i += k;
            start = i;
        } else
            i++;
    }
    put_author(&buf, s + start, n - start, split_and);
    if (buf.failed) {
        nw_text_buf_free(&buf);
        return -1;
    }
    if (buf.len == 0)
        return 0;
    free(self->byline);
    self->byline = nw_text_buf_take(&buf);
    return self->byline ? 0 : -1;
}

/* Lower-case hex SHA-1 of the story: of its uri when it has one (the publisher's own
 * identity), else of what a reader sees, so the same story dropped twice, whatever its
 * line endings or BOM, gets the same id. */
static int compute_id(nw_article_t *self)
{
    if (self->uri) {
        const void *parts[] = {self->uri};
        size_t lens[] = {strlen(self->uri)};
        return nw_sha1_hex(parts, lens, 1, self->id);
    }
    const void *parts[] = {self->headline, "\n", self->body};
    size_t lens[] = {strlen(self->headline), 1, strlen(self->body)};
    return nw_sha1_hex(parts, lens, 3, self->id);
}

static bool first_nonblank_is(const char *text, size_t len, char c)
{
    size_t i;
    for (i = 0; i < len; i++) {
        if (text[i] == ' ' || text[i] == '\t' || text[i] == '\n')
            continue;
        return text[i] == c;
    }
    return false;
}

/* Past white space, the XML declaration, processing instructions, comments and a
 * DOCTYPE (internal subset included), the root element's name without its prefix.
 * false when the text does not open with markup. *doctype_html is set when a DOCTYPE
 * names html. Only the prolog is scanned, never the whole text. */
static bool markup_root(const char *t, size_t len, char *root, size_t rootlen, bool *doctype_html)
{
    size_t i = 0;
    *doctype_html = false;
    root[0] = '\0';
    for (;;) {
        while (i < len && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n'))
            i++;
        if (i >= len || t[i] != '<')
            return true; /* markup, then text: not a document we know */
        if (nw_text_istarts(t + i, len - i, "<?")) {
            const char *end = memmem(t + i, len - i, "?>", 2);
            if (!end)
                return true;
            i = (size_t) (end - t) + 2;
        } else if (nw_text_istarts(t + i, len - i, "<!--")) {
            const char *end = memmem(t + i, len - i, "-->", 3);
            if (!end)
                return true;
            i = (size_t) (end - t) + 3;
        } else if (nw_text_istarts(t + i, len - i, "<!doctype")) {
            size_t j = i + 9;
            while (j < len && (t[j] == ' ' || t[j] == '\t' || t[j] == '\n'))
                j++;
            *doctype_html = nw_text_istarts(t + j, len - j, "html") &&
                            (j + 4 == len || !((t[j + 4] >= 'a' && t[j + 4] <= 'z') ||
                                               (t[j + 4] >= 'A' && t[j + 4] <= 'Z')));
            int brackets = 0;
            while (j < len && (t[j] != '>' || brackets > 0)) {
                brackets += t[j] == '[';
                brackets -= t[j] == ']' && brackets > 0;
                j++;
            }
            i = j + 1;
        } else {
            size_t j = i + 1, n = 0, start = j;
            char c = j < len ? t[j] : ' ';
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'))
                return false; /* "< 5 ms", "<3": prose, not a tag */
            while (j < len && !strchr(" \t\n/>", t[j])) {
                if (t[j] == ':')
                    start = j + 1;
                j++;
            }
            n = j - start;
            if (n >= rootlen)
                n = rootlen - 1;
            memcpy(root, t + start, n);
            root[n] = '\0';
            return true;
        }
    }
}

int nw_article_parse(const char *data, size_t len, int64_t mtime_ms, nw_article_t **out,
                     char *errbuf, size_t errlen)
{
    char *text = NULL;
    nw_article_t *self = NULL;
    size_t textlen = 0;
    unsigned replaced = 0;

    const char *encoding;
    *out = NULL;
    text = nw_text_decode(data, len, &textlen, &replaced, &encoding, errbuf, errlen);
    if (!text)
        goto fail;
    self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(errbuf, errlen, "out of memory");
        goto fail;
    }
    self->replaced_bytes = replaced;
    self->encoding = encoding;
    self->versioncreated_ms = INT64_MIN;

    int rc;
    char root[64];
    bool doctype_html;
    if (first_nonblank_is(text, textlen, '<') &&
        markup_root(text, textlen, root, sizeof root, &doctype_html)) {
        /* Markup taken for text would go out with a tag for a headline. */
        if (!doctype_html &&
            (strcmp(root, "newsMessage") == 0 || strcmp(root, "newsItem") == 0)) {
            self->format = NW_FORMAT_NEWSML_G2;
            rc = nw_article_from_newsml(self, text, textlen, errbuf, errlen);
        } else if (!doctype_html && strcmp(root, "nitf") == 0) {
            self->format = NW_FORMAT_NITF;
            rc = nw_article_from_nitf(self, text, textlen, errbuf, errlen);
        } else if (doctype_html || nw_text_ieq(root, strlen(root), "html")) {
            self->format = NW_FORMAT_HTML;
            rc = nw_article_from_html(self, text, textlen, errbuf, errlen);
        } else {
            if (root[0])
                snprintf(errbuf, errlen, "unknown layout: XML with root element <%s>", root);
            else
                snprintf(errbuf, errlen, "unknown layout: markup without a root element");
            goto fail;
        }
    } else if (first_nonblank_is(text, textlen, '{')) {
        self->format = NW_FORMAT_NINJS;
        rc = nw_article_from_ninjs(self, text, textlen, errbuf, errlen);
    } else if (nw_article_looks_like_header(text, textlen)) {
        self->format = NW_FORMAT_HEADER;
        rc = nw_article_from_header(self, text, textlen, errbuf, errlen);
    } else {
        self->format = NW_FORMAT_SCRAPED;
        rc = nw_article_from_scraped(self, text, textlen, errbuf, errlen);
    }
    if (rc != 0)
        goto fail;
    nw_article_t *story;
    unsigned item = 1;
    for (story = self; story; story = story->next, item++) {
        /* In a file of several stories the reason names the one at fault. */
        char where[32] = "";
        if (self->next)
            snprintf(where, sizeof where, "item %u: ", item);
        if (!story->headline || !*story->headline) {
            snprintf(errbuf, errlen, "%sno headline", where);
            goto fail;
        }
        if (!story->body || !*story->body) {
            snprintf(errbuf, errlen, "%sno body", where);
            goto fail;
        }
        if (story->versioncreated_ms == INT64_MIN)
            story->versioncreated_ms = mtime_ms;
        if (compute_id(story) != 0) {
            snprintf(errbuf, errlen, "out of memory");
            goto fail;
        }
    }
    free(text);
    *out = self;
    return 0;

fail:
    free(text);
    nw_article_destroy(&self);
    return -1;
}

int nw_article_set_date(nw_article_t *self, const char *s, size_t n, char *errbuf, size_t errlen)
{
    nw_text_trim(&s, &n);
    /* An empty "Date:" says as little as a missing one: the mtime will stand in. */
    if (n == 0 || nw_date_parse_n(s, n, &self->versioncreated_ms) == 0)
        return 0;
    /* Quote at most 60 bytes, cut on a UTF-8 character boundary. */
    size_t shown = n;
    if (shown > 60) {
        shown = 60;
        while (shown > 0 && ((unsigned char) s[shown] & 0xC0) == 0x80)
            shown--;
    }
    snprintf(errbuf, errlen, "unrecognised date '%.*s%s'", (int) shown, s,
             shown < n ? "..." : "");
    return -1;
}
