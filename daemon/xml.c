/*
 * xml: reads untrusted XML and HTML with libxml2 under the limits xml.h lists, and
 * walks the trees it builds. Text enters as a sanitized counted string, leaves as a
 * libxml2 document; the walkers' output leaves as heap strings made by text.c.
 */
#include "xml.h"

#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

/* Nothing we parse may make libxml2 open a file or a URL, whatever the options. The
 * loader is process-wide; nothing else in newswired uses libxml2. */
static xmlParserInputPtr refuse_loader(const char *url, const char *id, xmlParserCtxtPtr ctxt)
{
    (void) url;
    (void) id;
    (void) ctxt;
    return NULL;
}

static void init(void)
{
    xmlInitParser(); /* once, before any thread parses: libxml2's own rule */
    xmlSetExternalEntityLoader(refuse_loader);
}

/* libxml2's last error as "XML: line N: message" without the trailing newline. */
static void report(xmlParserCtxt *ctxt, const char *what, char *errbuf, size_t errlen)
{
    const xmlError *e = ctxt ? xmlCtxtGetLastError(ctxt) : NULL;
    if (!e || !e->message) {
        snprintf(errbuf, errlen, "%s: not well-formed", what);
        return;
    }
    int n = (int) strcspn(e->message, "\n");
    snprintf(errbuf, errlen, "%s: line %d: %.*s", what, e->line, n, e->message);
}

static bool declares_entities(const xmlDoc *doc)
{
    const xmlDtd *dtd = doc->intSubset;
    return dtd && ((dtd->entities && xmlHashSize(dtd->entities) > 0) ||
                   (dtd->pentities && xmlHashSize(dtd->pentities) > 0));
}

xmlDoc *nw_xml_read(const char *text, size_t len, bool html, char *errbuf, size_t errlen)
{
    const char *what = html ? "HTML" : "XML";
    xmlDoc *doc = NULL;
    xmlParserCtxt *ctxt = NULL;

    pthread_once(&init_once, init);
    if (len > NW_XML_MAX_BYTES) {
        snprintf(errbuf, errlen, "%s: %zu bytes, more than the %u MiB markup limit", what, len,
                 NW_XML_MAX_BYTES >> 20);
        return NULL;
    }
    if (html) {
        ctxt = htmlNewParserCtxt();
        if (ctxt)
            doc = htmlCtxtReadMemory(ctxt, text, (int) len, NULL, "UTF-8",
                                     HTML_PARSE_NONET | HTML_PARSE_NOERROR |
                                         HTML_PARSE_NOWARNING);
    } else {
        ctxt = xmlNewParserCtxt();
        /* No XML_PARSE_NOENT, DTDLOAD, DTDATTR, XINCLUDE or HUGE: entities stay
         * references, nothing outside the bytes is read, libxml2 keeps its limits. */
        if (ctxt)
            doc = xmlCtxtReadMemory(ctxt, text, (int) len, NULL, "UTF-8",
                                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                        XML_PARSE_NOCDATA | XML_PARSE_IGNORE_ENC);
    }
    if (!ctxt) {
        snprintf(errbuf, errlen, "out of memory");
        goto fail;
    }
    if (!doc) {
        report(ctxt, what, errbuf, errlen);
        goto fail;
    }
    if (!html && declares_entities(doc)) {
        snprintf(errbuf, errlen,
                 "XML declares entities in its DTD (refused: entity "
                 "expansion and external entities are off)");
        goto fail;
    }
    if (!xmlDocGetRootElement(doc)) {
        snprintf(errbuf, errlen, "%s: no root element", what);
        goto fail;
    }
    if (html)
        htmlFreeParserCtxt(ctxt);
    else
        xmlFreeParserCtxt(ctxt);
    return doc;

fail:
    xmlFreeDoc(doc);
    if (ctxt && html)
        htmlFreeParserCtxt(ctxt);
    else if (ctxt)
        xmlFreeParserCtxt(ctxt);
    return NULL;
}

bool nw_xml_is(const xmlNode *n, const char *local)
{
    return n && n->type == XML_ELEMENT_NODE &&
           (!local || strcmp((const char *) n->name, local) == 0);
}

xmlNode *nw_xml_next(const xmlNode *after, const char *local)
{
    xmlNode *n;
    for (n = after ? after->next : NULL; n; n = n->next)
        if (nw_xml_is(n, local))
            return n;
    return NULL;
}

xmlNode *nw_xml_child(const xmlNode *parent, const char *local)
{
    xmlNode *n;
    for (n = parent ? parent->children : NULL; n; n = n->next)
        if (nw_xml_is(n, local))
            return n;
    return NULL;
}

static xmlNode *find(const xmlNode *n, const char *local, int depth)
{
    xmlNode *c, *hit;
    if (depth > NW_XML_MAX_DEPTH)
        return NULL;
    for (c = n->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (nw_xml_is(c, local))
            return c;
        if ((hit = find(c, local, depth + 1)))
            return hit;
    }
    return NULL;
}

xmlNode *nw_xml_find(const xmlNode *root, const char *local)
{
    return root ? find(root, local, 0) : NULL;
}

const char *nw_xml_attr(const xmlNode *n, const char *name)
{
    const xmlAttr *a;
    if (!n || n->type != XML_ELEMENT_NODE)
        return NULL;
    for (a = n->properties; a; a = a->next)
        if (strcmp((const char *) a->name, name) == 0 && a->children &&
            a->children->type == XML_TEXT_NODE)
            return (const char *) a->children->content;
    return NULL;
}

static const char *const block_names[] = {
    "p",       "div",     "h1",     "h2",     "h3",     "h4",         "h5",      "h6",    "li",
    "ul",      "ol",      "dl",     "dt",     "dd",     "blockquote", "pre",     "table", "tr",
    "section", "article", "header", "footer", "figure", "figcaption", "address", "main",  "hl1",
    "hl2",     "block",   "note",   "bq",     "body",   "html",
};

static bool is_block(const xmlNode *n)
{
    size_t i;
    for (i = 0; i < sizeof block_names / sizeof block_names[0]; i++)
        if (strcmp((const char *) n->name, block_names[i]) == 0)
            return true;
    return false;
}

static void put_text(nw_text_buf_t *buf, const xmlNode *n, int depth)
{
    const xmlNode *c;
    if (depth > NW_XML_MAX_DEPTH)
        return;
    for (c = n->children; c; c = c->next) {
        if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
            if (c->content)
                nw_text_buf_append(buf, (const char *) c->content,
                                   strlen((const char *) c->content));
        } else if (c->type == XML_ELEMENT_NODE && !nw_xml_is(c, "script") &&
                   !nw_xml_is(c, "style")) {
            /* Inline elements join their text as written; blocks and br separate. */
            bool apart = nw_xml_is(c, "br") || is_block(c);
            if (apart)
                nw_text_buf_putc(buf, ' ');
            put_text(buf, c, depth + 1);
            if (apart)
                nw_text_buf_putc(buf, ' ');
        }
        /* entity references, comments, processing instructions: not text */
    }
}

/* Sanitize what a walker gathered (character references can carry controls or CR)
 * and free it. */
static char *sanitized(nw_text_buf_t *buf, size_t *len, bool *oom)
{
    unsigned replaced;
    char *clean = NULL;
    if (!buf->failed && buf->len && !memchr(buf->data, '\0', buf->len))
        clean = nw_text_sanitize(buf->data, buf->len, len, &replaced);
    *oom = buf->failed || (buf->len && !clean && !memchr(buf->data, '\0', buf->len));
    nw_text_buf_free(buf);
    return clean;
}

static char *oneline_of(nw_text_buf_t *buf, bool *oom)
{
    size_t len = 0;
    char *clean = sanitized(buf, &len, oom);
    if (!clean)
        return NULL;
    char *out = nw_text_oneline(clean, len);
    if (!out && !nw_text_is_blank(clean, len))
        *oom = true;
    free(clean);
    return out;
}

char *nw_xml_oneline(const xmlNode *n, bool *oom)
{
    nw_text_buf_t buf = {0};
    *oom = false;
    if (!n)
        return NULL;
    put_text(&buf, n, 0);
    return oneline_of(&buf, oom);
}

char *nw_xml_oneline_str(const char *s, bool *oom)
{
    nw_text_buf_t buf = {0};
    *oom = false;
    if (!s)
        return NULL;
    nw_text_buf_append(&buf, s, strlen(s));
    return oneline_of(&buf, oom);
}

static bool is_skipped(const xmlNode *n, const char *const *skip)
{
    if (nw_xml_is(n, "script") || nw_xml_is(n, "style") || nw_xml_is(n, "noscript") ||
        nw_xml_is(n, "template"))
        return true;
    for (; skip && *skip; skip++)
        if (nw_xml_is(n, *skip))
            return true;
    return false;
}

typedef struct {
    nw_text_buf_t *buf;
    bool line_start; /* nothing on the current line yet */
    bool space;      /* white space seen since the last character */
    const char *const *skip;
    nw_xml_skip_fn *skip_fn;
    void *skip_arg;
} para_ctx_t;

static void para_break(para_ctx_t *p, const char *sep)
{
    if (p->buf->len && !p->line_start)
        nw_text_buf_append(p->buf, sep, strlen(sep));
    else if (p->buf->len && sep[1])
        nw_text_buf_append(p->buf, "\n", 1); /* a blank line after a br: a paragraph */
    p->line_start = true;
    p->space = false;
}

static void para_text(para_ctx_t *p, const char *s)
{
    for (; *s; s++) {
        char c = *s;
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            p->space = true;
            continue;
        }
        if (p->space && !p->line_start)
            nw_text_buf_putc(p->buf, ' ');
        nw_text_buf_putc(p->buf, c);
        p->space = false;
        p->line_start = false;
    }
}

static void put_paragraphs(para_ctx_t *p, const xmlNode *n, int depth)
{
    const xmlNode *c;
    if (depth > NW_XML_MAX_DEPTH)
        return;
    for (c = n->children; c; c = c->next) {
        if (c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) {
            if (c->content)
                para_text(p, (const char *) c->content);
            continue;
        }
        if (c->type != XML_ELEMENT_NODE || is_skipped(c, p->skip) ||
            (p->skip_fn && p->skip_fn(c, p->skip_arg)))
            continue;
        if (nw_xml_is(c, "br")) {
            para_break(p, "\n");
            continue;
        }
        bool block = is_block(c);
        if (block)
            para_break(p, "\n\n");
        put_paragraphs(p, c, depth + 1);
        if (block)
            para_break(p, "\n\n");
    }
}

static void start(para_ctx_t *p, const xmlNode *n)
{
    if (!n)
        return;
    if (p->buf->len)
        para_break(p, "\n\n");
    put_paragraphs(p, n, 0);
}

void nw_xml_put_paragraphs(nw_text_buf_t *buf, const xmlNode *n, const char *const *skip)
{
    para_ctx_t p = {buf, true, false, skip, NULL, NULL};
    start(&p, n);
}

void nw_xml_put_paragraphs_if(nw_text_buf_t *buf, const xmlNode *n, nw_xml_skip_fn *skip,
                              void *arg)
{
    para_ctx_t p = {buf, true, false, NULL, skip, arg};
    start(&p, n);
}

char *nw_xml_paragraphs_take(nw_text_buf_t *buf, bool *oom)
{
    size_t len = 0;
    char *clean = sanitized(buf, &len, oom);
    if (!clean)
        return NULL;
    nw_text_para_t para = {0};
    nw_text_para_text(&para, clean, len);
    free(clean);
    return nw_text_para_take(&para, oom);
}
