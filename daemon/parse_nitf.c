/*
 * parse_nitf: IPTC NITF 3.x, what PA and EFE deliver:
 *
 *   <nitf xml:lang="en">
 *     <head><title/><tobject><tobject.subject tobject.subject.refnum="04000000" .../>
 *           <docdata><doc-id id-string="..."/><date.issue norm="20240903T080000Z"/>
 *                    <key-list><keyword key="ferries"/></key-list></docdata></head>
 *     <body><body.head><hedline><hl1/></hedline><byline/><dateline/><abstract/>
 *           <body.content><p/>...</body.content></body></nitf>
 *
 * Sanitized text comes in, is parsed by xml.c, and the fields leave in the article.
 * IPTC subject codes (tobject.subject) are kept as "subj:NNNNNNNN" beside their name;
 * key-list keywords are subjects without a code. The dateline becomes `located`.
 * nw_nitf_put_body also reads the NITF bodies that NewsML-G2 items carry inline.
 */
#include "article.h"
#include "xml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* In body.content: media objects (their captions are not the story's text). */
static const char *const body_skip[] = {"media", "byline", "dateline", NULL};

void nw_nitf_put_body(nw_text_buf_t *buf, const xmlNode *nitf)
{
    const xmlNode *content = nw_xml_child(nw_xml_child(nitf, "body"), "body.content");
    nw_xml_put_paragraphs(buf, content, body_skip);
}

/* ISO 8601 basic ("20240903T080000+0200", "20240903T0800Z", "20240903") as RFC 3339,
 * for nw_date_parse; false when s has another shape. */
static bool basic_to_rfc3339(const char *s, char *out, size_t outlen)
{
    size_t n = strspn(s, "0123456789");
    if (n != 8)
        return false;
    if (s[8] == '\0') {
        snprintf(out, outlen, "%.4s-%.2s-%.2s", s, s + 4, s + 6);
        return true;
    }
    if (s[8] != 'T')
        return false;
    const char *t = s + 9;
    size_t tn = strspn(t, "0123456789");
    if (tn != 4 && tn != 6)
        return false;
    const char *zone = t + tn;
    char z[8];
    if (strcmp(zone, "Z") == 0 || *zone == '\0')
        snprintf(z, sizeof z, "Z");
    else if ((zone[0] == '+' || zone[0] == '-') && strspn(zone + 1, "0123456789") == 4 &&
             zone[5] == '\0')
        snprintf(z, sizeof z, "%c%.2s:%.2s", zone[0], zone + 1, zone + 3);
    else
        return false;
    snprintf(out, outlen, "%.4s-%.2s-%.2sT%.2s:%.2s:%.2s%s", s, s + 4, s + 6, t, t + 2,
             tn == 6 ? t + 4 : "00", z);
    return true;
}

static int read_date(nw_article_t *self, const xmlNode *docdata, char *errbuf, size_t errlen)
{
    static const char *const names[] = {"date.issue", "date.release"};
    size_t i;
    for (i = 0; i < 2; i++) {
        const char *norm = nw_xml_attr(nw_xml_child(docdata, names[i]), "norm");
        if (!norm)
            continue;
        char rfc[64];
        if (strlen(norm) < 32 && basic_to_rfc3339(norm, rfc, sizeof rfc))
            norm = rfc;
        return nw_article_set_date(self, norm, strlen(norm), errbuf, errlen);
    }
    return 0;
}

static int read_subjects(nw_article_t *self, const xmlNode *head)
{
    const xmlNode *n, *tobject = nw_xml_child(head, "tobject");
    bool failed = false;
    for (n = nw_xml_child(tobject, "tobject.subject"); n && !failed;
         n = nw_xml_next(n, "tobject.subject")) {
        const char *ref = nw_xml_attr(n, "tobject.subject.refnum");
        const char *name = nw_xml_attr(n, "tobject.subject.detail");
        if (!name)
            name = nw_xml_attr(n, "tobject.subject.matter");
        if (!name)
            name = nw_xml_attr(n, "tobject.subject.type");
        char code[64];
        if (ref && strlen(ref) == 8 && strspn(ref, "0123456789") == 8)
            snprintf(code, sizeof code, "subj:%s", ref);
        else
            code[0] = '\0';
        char *clean = nw_xml_oneline_str(name, &failed);
        if (!failed && (clean || code[0]) &&
            nw_article_add_coded_subject(self, clean ? clean : "", clean ? strlen(clean) : 0,
                                         code[0] ? code : NULL) != 0)
            failed = true;
        free(clean);
    }
    const xmlNode *keys = nw_xml_child(nw_xml_child(head, "docdata"), "key-list");
    for (n = nw_xml_child(keys, "keyword"); n && !failed; n = nw_xml_next(n, "keyword")) {
        char *clean = nw_xml_oneline_str(nw_xml_attr(n, "key"), &failed);
        if (clean && nw_article_add_subject(self, clean, strlen(clean)) != 0)
            failed = true;
        free(clean);
    }
    return failed ? -1 : 0;
}

/* The byline's people when it names them, else its text ("By Ana Lima"); the title
 * (byttl, "Staff Writer") is not a name. */
static int read_byline(nw_article_t *self, const xmlNode *bodyhead)
{
    const xmlNode *by, *p;
    bool failed = false;
    for (by = nw_xml_child(bodyhead, "byline"); by && !failed; by = nw_xml_next(by, "byline")) {
        bool people = false;
        for (p = nw_xml_child(by, "person"); p && !failed; p = nw_xml_next(p, "person")) {
            char *s = nw_xml_oneline(p, &failed);
            if (s && nw_article_add_authors(self, s, strlen(s), false) != 0)
                failed = true;
            people = people || s;
            free(s);
        }
        if (people || failed)
            continue;
        nw_text_buf_t buf = {0};
        const xmlNode *c;
        for (c = by->children; c; c = c->next) {
            if (c->type == XML_TEXT_NODE && c->content)
                nw_text_buf_append(&buf, (const char *) c->content,
                                   strlen((const char *) c->content));
            else if (c->type == XML_ELEMENT_NODE && !nw_xml_is(c, "byttl")) {
                char *s = nw_xml_oneline(c, &failed);
                if (s) {
                    nw_text_buf_putc(&buf, ' ');
                    nw_text_buf_append(&buf, s, strlen(s));
                }
                free(s);
            }
        }
        char *all = buf.failed ? NULL : nw_xml_oneline_str(buf.data ? buf.data : "", &failed);
        failed = failed || buf.failed;
        nw_text_buf_free(&buf);
        if (all && nw_article_add_authors(self, all, strlen(all), true) != 0)
            failed = true;
        free(all);
    }
    return failed ? -1 : 0;
}

int nw_article_from_nitf(nw_article_t *self, const char *text, size_t len, char *errbuf,
                         size_t errlen)
{
    bool failed = false, f;
    xmlDoc *doc = nw_xml_read(text, len, false, errbuf, errlen);
    if (!doc)
        return -1;
    const xmlNode *root = xmlDocGetRootElement(doc);
    const xmlNode *head = nw_xml_child(root, "head"), *body = nw_xml_child(root, "body");
    const xmlNode *bodyhead = nw_xml_child(body, "body.head");
    const xmlNode *docdata = nw_xml_child(head, "docdata");

    self->uri = nw_xml_oneline_str(nw_xml_attr(nw_xml_child(docdata, "doc-id"), "id-string"), &f);
    failed |= f;
    const xmlNode *hedline = nw_xml_child(bodyhead, "hedline");
    self->headline = nw_xml_oneline(nw_xml_child(hedline, "hl1"), &f);
    failed |= f;
    if (!self->headline) {
        self->headline = nw_xml_oneline(nw_xml_child(head, "title"), &f);
        failed |= f;
    }
    if (read_byline(self, bodyhead) != 0)
        failed = true;
    nw_text_buf_t buf = {0};
    nw_xml_put_paragraphs(&buf, nw_xml_child(bodyhead, "abstract"), NULL);
    self->description = nw_xml_paragraphs_take(&buf, &f);
    failed |= f;
    self->located = nw_xml_oneline(nw_xml_child(bodyhead, "dateline"), &f);
    failed |= f;
    const xmlNode *content = nw_xml_child(body, "body.content");
    const char *lang = nw_xml_attr(content, "lang");
    if (!lang)
        lang = nw_xml_attr(root, "lang");
    self->language = nw_xml_oneline_str(lang, &f);
    failed |= f;
    if (read_subjects(self, head) != 0)
        failed = true;
    nw_nitf_put_body(&buf, root);
    self->body = nw_xml_paragraphs_take(&buf, &f);
    failed |= f;
    if (failed) {
        snprintf(errbuf, errlen, "out of memory");
        goto fail;
    }
    if (read_date(self, docdata, errbuf, errlen) != 0)
        goto fail;
    xmlFreeDoc(doc);
    return 0;

fail:
    xmlFreeDoc(doc);
    return -1;
}
