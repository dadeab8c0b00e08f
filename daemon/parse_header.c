/*
 * parse_header: the layout people type by hand or export from an editor:
 *
 *   Title: Ferry strike called off
 *   Author: Ana Lima, Tom Berg
 *   Date: 2024-09-03T08:00:00+02:00
 *   Subject: transport, labour
 *
 *   Body paragraphs...
 *
 * Sanitized text comes in; fields leave in the article. Keys are case-insensitive and
 * unknown keys are ignored, so exporters can add their own.
 */
#include "article.h"
#include "text.h"

#include <stdio.h>
#include <stdlib.h>

/* Longest key considered: a long word before a colon is prose, not a header. */
#define KEY_MAX 32

typedef enum {
    KEY_UNKNOWN,
    KEY_TITLE,
    KEY_AUTHOR,
    KEY_DATE,
    KEY_SUBJECT,
    KEY_SUMMARY,
    KEY_LANGUAGE,
    KEY_URI,
} header_key_t;

static const struct {
    const char *name;
    header_key_t key;
} known_keys[] = {
    {"title", KEY_TITLE},     {"headline", KEY_TITLE},    {"author", KEY_AUTHOR},
    {"byline", KEY_AUTHOR},   {"date", KEY_DATE},         {"subject", KEY_SUBJECT},
    {"summary", KEY_SUMMARY}, {"language", KEY_LANGUAGE}, {"uri", KEY_URI},
    {"id", KEY_URI},
};

static bool key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

/* Split "Key: value" (the colon right after a one-word key, then a blank or the end of
 * the line). false when the line has another shape. */
static bool split_line(const char *line, size_t n, size_t *keylen, const char **value,
                       size_t *valuelen)
{
    size_t k = 0;
    while (k < n && k <= KEY_MAX && key_char(line[k]))
        k++;
    if (k == 0 || k > KEY_MAX || k >= n || line[k] != ':')
        return false;
    if (k + 1 < n && line[k + 1] != ' ' && line[k + 1] != '\t')
        return false;
    *keylen = k;
    *value = line + k + 1;
    *valuelen = n - k - 1;
    nw_text_trim(value, valuelen);
    return true;
}

static header_key_t lookup(const char *key, size_t n)
{
    size_t i;
    for (i = 0; i < sizeof known_keys / sizeof known_keys[0]; i++)
        if (nw_text_ieq(key, n, known_keys[i].name))
            return known_keys[i].key;
    return KEY_UNKNOWN;
}

/*
 * A header block is: every line up to the first blank one is "Key: value", the first
 * key is a known one, and the block names the title or holds two known keys. The last
 * rule keeps a scraped standfirst that happens to open with "Summary: ..." (a one-line
 * block) out of this layout.
 */
bool nw_article_looks_like_header(const char *text, size_t len)
{
    size_t pos = 0, linelen, keylen, valuelen, lines = 0, known = 0;
    const char *line, *value;
    bool title = false;

    while (nw_text_next_line(text, len, &pos, &line, &linelen)) {
        if (nw_text_is_blank(line, linelen)) {
            if (lines == 0)
                continue;
            break;
        }
        if (!split_line(line, linelen, &keylen, &value, &valuelen))
            return false;
        header_key_t key = lookup(line, keylen);
        if (lines == 0 && key == KEY_UNKNOWN)
            return false;
        lines++;
        if (key != KEY_UNKNOWN)
            known++;
        if (key == KEY_TITLE)
            title = true;
    }
    return title || known >= 2;
}

static int split_subjects(nw_article_t *self, const char *s, size_t n)
{
    size_t start = 0, i;
    for (i = 0; i <= n; i++)
        if (i == n || s[i] == ',') {
            if (nw_article_add_subject(self, s + start, i - start) != 0)
                return -1;
            start = i + 1;
        }
    return 0;
}

/* Replace *field by the value as one line (NULL if blank). */
static int set_field(char **field, const char *s, size_t n)
{
    free(*field);
    *field = nw_text_oneline(s, n);
    return *field || nw_text_is_blank(s, n) ? 0 : -1;
}

int nw_article_from_header(nw_article_t *self, const char *text, size_t len, char *errbuf,
                           size_t errlen)
{
    size_t pos = 0, linelen, keylen, valuelen;
    const char *line, *value;
    nw_text_para_t body = {0};
    bool in_block = false, oom = false;
    int rc = 0;

    while (nw_text_next_line(text, len, &pos, &line, &linelen)) {
        if (nw_text_is_blank(line, linelen)) {
            if (in_block)
                break;
            continue;
        }
        in_block = true;
        if (!split_line(line, linelen, &keylen, &value, &valuelen))
            continue;
        switch (lookup(line, keylen)) {
        case KEY_TITLE: rc = set_field(&self->headline, value, valuelen); break;
        case KEY_AUTHOR: rc = nw_article_add_authors(self, value, valuelen, false); break;
        case KEY_DATE:
            if (nw_article_set_date(self, value, valuelen, errbuf, errlen) != 0)
                goto fail;
            break;
        case KEY_SUBJECT: rc = split_subjects(self, value, valuelen); break;
        case KEY_SUMMARY: rc = set_field(&self->description, value, valuelen); break;
        case KEY_LANGUAGE: rc = set_field(&self->language, value, valuelen); break;
        case KEY_URI: rc = set_field(&self->uri, value, valuelen); break;
        case KEY_UNKNOWN: break;
        }
        if (rc != 0) {
            snprintf(errbuf, errlen, "out of memory");
            goto fail;
        }
    }
    nw_text_para_text(&body, text + pos, len - pos);
    self->body = nw_text_para_take(&body, &oom);
    if (oom) {
        snprintf(errbuf, errlen, "out of memory");
        goto fail;
    }
    return 0;

fail:
    nw_text_buf_free(&body.buf);
    return -1;
}
