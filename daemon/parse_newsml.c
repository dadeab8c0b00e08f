/*
 * parse_newsml: IPTC NewsML-G2, what Reuters, AFP, AP, STT and Scoop deliver:
 *
 *   <newsMessage><itemSet>
 *     <newsItem guid="urn:..." version="3" xml:lang="en">
 *       <itemMeta><itemClass qcode="ninat:text"/><versionCreated>...</versionCreated>
 *       <contentMeta><headline/><by/><creator><name/></creator><description/>
 *                    <language tag="en"/><subject qcode="medtop:04000000"><name/>
 *       <contentSet><inlineXML contenttype="application/xhtml+xml"><html>...
 *                   (or an inline <nitf>, or <inlineData> plain text)
 *
 * Sanitized text comes in, is parsed by xml.c, and each text item leaves as one story
 * of the chain (items of another class, pictures say, are left out). Elements are
 * found by local name, whatever prefix a sender gives the G2 namespace. Subjects keep
 * their qcode beside their name.
 */
#include "article.h"
#include "xml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *errbuf;
    size_t errlen;
    bool failed;
} ctx_t;

static void oom(ctx_t *ctx)
{
    if (!ctx->failed)
        snprintf(ctx->errbuf, ctx->errlen, "out of memory");
    ctx->failed = true;
}

static void set_oneline(ctx_t *ctx, char **field, const xmlNode *n)
{
    bool failed;
    if (*field || !n)
        return;
    *field = nw_xml_oneline(n, &failed);
    if (failed)
        oom(ctx);
}

static void set_attr(ctx_t *ctx, char **field, const char *value)
{
    bool failed;
    if (*field || !value)
        return;
    *field = nw_xml_oneline_str(value, &failed);
    if (failed)
        oom(ctx);
}

/* Whether a role or class qcode/uri names `want` ("ninat:text", ".../ninature/text"). */
static bool code_is(const char *code, const char *want)
{
    if (!code)
        return false;
    const char *tail = strrchr(code, '/');
    if (!tail)
        tail = strrchr(code, ':');
    return tail && strcmp(tail + 1, want) == 0;
}

static bool is_text_item(const xmlNode *item)
{
    const xmlNode *cls = nw_xml_child(nw_xml_child(item, "itemMeta"), "itemClass");
    if (!cls)
        return true;
    const char *code = nw_xml_attr(cls, "qcode");
    if (!code)
        code = nw_xml_attr(cls, "uri");
    return !code || code_is(code, "text");
}

/* Of the repeatable elements (headline, description), the one whose role is `role`
 * or that has none; else the first. */
static const xmlNode *pick(const xmlNode *meta, const char *local, const char *role)
{
    const xmlNode *n, *first = nw_xml_child(meta, local);
    for (n = first; n; n = nw_xml_next(n, local)) {
        const char *r = nw_xml_attr(n, "role");
        if (!r || code_is(r, role))
            return n;
    }
    return first;
}

static void read_date(ctx_t *ctx, nw_article_t *story, const xmlNode *item)
{
    const xmlNode *meta = nw_xml_child(item, "itemMeta");
    const xmlNode *n = nw_xml_child(meta, "versionCreated");
    if (!n)
        n = nw_xml_child(meta, "firstCreated");
    if (!n)
        n = nw_xml_child(nw_xml_child(item, "contentMeta"), "contentCreated");
    bool failed;
    char *s = nw_xml_oneline(n, &failed);
    if (failed)
        oom(ctx);
    if (s && nw_article_set_date(story, s, strlen(s), ctx->errbuf, ctx->errlen) != 0)
        ctx->failed = true;
    free(s);
}

static void read_authors(ctx_t *ctx, nw_article_t *story, const xmlNode *meta)
{
    bool failed;
    char *s = nw_xml_oneline(nw_xml_child(meta, "by"), &failed);
    if (s) {
        if (nw_article_add_authors(story, s, strlen(s), true) != 0)
            oom(ctx);
        free(s);
        return;
    }
    const xmlNode *c;
    for (c = nw_xml_child(meta, "creator"); c && !ctx->failed; c = nw_xml_next(c, "creator")) {
        s = nw_xml_oneline(nw_xml_child(c, "name"), &failed);
        if (!s && !failed)
            s = nw_xml_oneline_str(nw_xml_attr(c, "literal"), &failed);
        if (failed || (s && nw_article_add_authors(story, s, strlen(s), false) != 0))
            oom(ctx);
        free(s);
    }
}

static void read_subjects(ctx_t *ctx, nw_article_t *story, const xmlNode *meta)
{
    const xmlNode *n;
    for (n = nw_xml_child(meta, "subject"); n && !ctx->failed; n = nw_xml_next(n, "subject")) {
        bool failed, failed2;
        char *name = nw_xml_oneline(nw_xml_child(n, "name"), &failed);
        char *code = nw_xml_oneline_str(nw_xml_attr(n, "qcode"), &failed2);
        if (failed || failed2 ||
            nw_article_add_coded_subject(story, name ? name : "", name ? strlen(name) : 0,
                                         code) != 0)
            oom(ctx);
        free(name);
        free(code);
    }
}

/* The body: the first inline XHTML, NITF or plain text content. */
static void read_body(ctx_t *ctx, nw_article_t *story, const xmlNode *item)
{
    const xmlNode *set = nw_xml_child(item, "contentSet"), *n;
    nw_text_buf_t buf = {0};
    bool failed;
    for (n = nw_xml_child(set, NULL); n && !buf.len; n = nw_xml_next(n, NULL)) {
        if (nw_xml_is(n, "inlineXML")) {
            const xmlNode *doc = nw_xml_child(n, NULL);
            if (nw_xml_is(doc, "nitf"))
                nw_nitf_put_body(&buf, doc);
            else if (nw_xml_is(doc, "html"))
                nw_xml_put_paragraphs(&buf, nw_xml_child(doc, "body"), NULL);
            else
                nw_xml_put_paragraphs(&buf, n, NULL);
        } else if (nw_xml_is(n, "inlineData")) {
            /* Plain text: its own line breaks are the paragraphs. */
            const xmlNode *t;
            for (t = n->children; t; t = t->next)
                if ((t->type == XML_TEXT_NODE || t->type == XML_CDATA_SECTION_NODE) && t->content)
                    nw_text_buf_append(&buf, (const char *) t->content,
                                       strlen((const char *) t->content));
        }
    }
    story->body = nw_xml_paragraphs_take(&buf, &failed);
    if (failed)
        oom(ctx);
}

static void read_item(ctx_t *ctx, nw_article_t *story, const xmlNode *item)
{
    const xmlNode *meta = nw_xml_child(item, "contentMeta");
    set_attr(ctx, &story->uri, nw_xml_attr(item, "guid"));
    set_attr(ctx, &story->version, nw_xml_attr(item, "version"));
    set_oneline(ctx, &story->headline, pick(meta, "headline", "main"));
    set_oneline(ctx, &story->headline, nw_xml_child(nw_xml_child(item, "itemMeta"), "title"));
    read_authors(ctx, story, meta);
    if (!story->description) {
        nw_text_buf_t buf = {0};
        bool failed;
        nw_xml_put_paragraphs(&buf, pick(meta, "description", "summary"), NULL);
        story->description = nw_xml_paragraphs_take(&buf, &failed);
        if (failed)
            oom(ctx);
    }
    set_attr(ctx, &story->language, nw_xml_attr(nw_xml_child(meta, "language"), "tag"));
    set_attr(ctx, &story->language, nw_xml_attr(item, "lang"));
    read_subjects(ctx, story, meta);
    read_date(ctx, story, item);
    if (!ctx->failed)
        read_body(ctx, story, item);
}

int nw_article_from_newsml(nw_article_t *self, const char *text, size_t len, char *errbuf,
                           size_t errlen)
{
    ctx_t ctx = {errbuf, errlen, false};
    xmlDoc *doc = nw_xml_read(text, len, false, errbuf, errlen);
    if (!doc)
        return -1;
    xmlNode *root = xmlDocGetRootElement(doc), *item;
    /* A lone newsItem, or the items of a message's itemSet(s). */
    xmlNode *set = nw_xml_is(root, "newsItem") ? NULL : nw_xml_child(root, "itemSet");
    item = set ? nw_xml_child(set, "newsItem") : root;
    unsigned count = 0;
    nw_article_t *story = self;
    while (item && !ctx.failed) {
        if (nw_xml_is(item, "newsItem") && is_text_item(item)) {
            if (count == NW_ARTICLE_MAX_ITEMS) {
                snprintf(errbuf, errlen, "NewsML-G2: more than %d text items",
                         NW_ARTICLE_MAX_ITEMS);
                goto fail;
            }
            if (count > 0 && !(story = nw_article_append(self))) {
                oom(&ctx);
                break;
            }
            read_item(&ctx, story, item);
            count++;
        }
        if (!set)
            break;
        item = nw_xml_next(item, "newsItem");
        if (!item && (set = nw_xml_next(set, "itemSet")))
            item = nw_xml_child(set, "newsItem");
    }
    if (ctx.failed)
        goto fail;
    if (count == 0) {
        snprintf(errbuf, errlen, "NewsML-G2: no text item (nothing to publish)");
        goto fail;
    }
    xmlFreeDoc(doc);
    return 0;

fail:
    xmlFreeDoc(doc);
    return -1;
}
