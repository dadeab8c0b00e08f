/*
 * parse_html: a news page as a scraper saved it. Sanitized text comes in, is parsed by
 * libxml2's HTML parser (xml.c), and the story's fields leave in the article, each
 * from the first source that has it:
 *
 *   uri          <link rel="canonical">, og:url, JSON-LD url / mainEntityOfPage
 *   headline     JSON-LD headline, og:title, <title>, the first <h1>
 *   byline       JSON-LD author(s) (objects, strings, @id references into @graph),
 *                article:author, <meta name="author">
 *   description  JSON-LD description, og:description, <meta name="description">
 *   date         JSON-LD dateModified / datePublished, article:modified_time /
 *                article:published_time
 *   language     JSON-LD inLanguage, <html lang>, og:locale
 *   subjects     JSON-LD articleSection, article:section
 *   body         JSON-LD articleBody, else the page's main text: the articleBody
 *                element, <article>, <main> or <body>, without navigation, asides,
 *                forms, figures, ads, comments, sharing, newsletter and related-story
 *                furniture (by element, ARIA role, and class or id words)
 *
 * JSON-LD is read from every <script type="application/ld+json"> by jansson: an
 * object, an array of them, or an @graph; the first NewsArticle, ReportageNewsArticle
 * (or another *NewsArticle, Article, BlogPosting) is the story.
 */
#include "article.h"
#include "xml.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
    char *errbuf;
    size_t errlen;
    bool failed;
    json_t *graph; /* the @graph (or array) the story came from, for @id lookups */
} ctx_t;

static void oom(ctx_t *ctx)
{
    if (!ctx->failed)
        snprintf(ctx->errbuf, ctx->errlen, "out of memory");
    ctx->failed = true;
}

static void set_str(ctx_t *ctx, char **field, const char *s)
{
    bool failed;
    if (*field || !s)
        return;
    *field = nw_xml_oneline_str(s, &failed);
    if (failed)
        oom(ctx);
}

/* --- JSON-LD ---------------------------------------------------------------------- */

static bool type_is_article(json_t *type)
{
    static const char *const types[] = {
        "NewsArticle",          "ReportageNewsArticle",
        "AnalysisNewsArticle",  "OpinionNewsArticle",
        "ReviewNewsArticle",    "BackgroundNewsArticle",
        "AskPublicNewsArticle", "Article",
        "BlogPosting",          "LiveBlogPosting",
    };
    size_t i, k;
    if (json_is_array(type)) {
        json_t *t;
        json_array_foreach(type, k, t) if (type_is_article(t)) return true;
        return false;
    }
    const char *s = json_string_value(type);
    if (!s)
        return false;
    const char *tail = strrchr(s, '/'); /* "https://schema.org/NewsArticle" */
    if (tail)
        s = tail + 1;
    for (i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcmp(s, types[i]) == 0)
            return true;
    return false;
}

/* The first article object in a JSON-LD value (object, array, @graph), NewsArticle
 * kinds before plain Article ones. *graph gets the list it was found in. */
static json_t *find_story(json_t *v, json_t **graph, int depth)
{
    size_t i;
    json_t *el, *hit;
    if (depth > 4)
        return NULL;
    if (json_is_array(v)) {
        json_array_foreach(v, i, el) if ((hit = find_story(el, graph, depth + 1)))
        {
            if (!*graph)
                *graph = v;
            return hit;
        }
        return NULL;
    }
    if (!json_is_object(v))
        return NULL;
    if (type_is_article(json_object_get(v, "@type")))
        return v;
    json_t *g = json_object_get(v, "@graph");
    if (g && (hit = find_story(g, graph, depth + 1))) {
        *graph = g;
        return hit;
    }
    return NULL;
}

static const char *jstr(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* A node of the graph by its @id (authors are often references). */
static json_t *resolve(ctx_t *ctx, json_t *v)
{
    const char *id = jstr(v, "@id");
    size_t i;
    json_t *el;
    if (!id || jstr(v, "name") || !json_is_array(ctx->graph))
        return v;
    json_array_foreach(ctx->graph, i, el) if (el != v && json_is_object(el) && jstr(el, "@id") &&
                                              strcmp(jstr(el, "@id"), id) == 0) return el;
    return v;
}

static void add_ld_author(ctx_t *ctx, nw_article_t *self, json_t *v)
{
    const char *name = json_is_string(v) ? json_string_value(v) : jstr(resolve(ctx, v), "name");
    bool failed;
    char *clean = nw_xml_oneline_str(name, &failed);
    if (failed || (clean && nw_article_add_authors(self, clean, strlen(clean), false) != 0))
        oom(ctx);
    free(clean);
}

static void add_subject(ctx_t *ctx, nw_article_t *self, const char *s)
{
    bool failed;
    char *clean = nw_xml_oneline_str(s, &failed);
    if (failed || (clean && nw_article_add_subject(self, clean, strlen(clean)) != 0))
        oom(ctx);
    free(clean);
}

static void set_date(ctx_t *ctx, nw_article_t *self, const char *s)
{
    if (!s || self->versioncreated_ms != INT64_MIN || ctx->failed)
        return;
    if (nw_article_set_date(self, s, strlen(s), ctx->errbuf, ctx->errlen) != 0)
        ctx->failed = true;
}

static void read_story(ctx_t *ctx, nw_article_t *self, json_t *story)
{
    size_t i;
    json_t *el;
    const char *s = jstr(story, "url");
    json_t *main = json_object_get(story, "mainEntityOfPage");
    if (!s)
        s = json_is_string(main) ? json_string_value(main) : jstr(main, "@id");
    set_str(ctx, &self->uri, s);
    set_str(ctx, &self->headline, jstr(story, "headline"));
    set_str(ctx, &self->headline, jstr(story, "name"));
    json_t *author = json_object_get(story, "author");
    if (json_is_array(author)) {
        json_array_foreach(author, i, el) add_ld_author(ctx, self, el);
    } else if (author)
        add_ld_author(ctx, self, author);
    if (!self->description && jstr(story, "description")) {
        nw_text_buf_t buf = {0};
        bool failed;
        nw_text_buf_append(&buf, jstr(story, "description"), strlen(jstr(story, "description")));
        self->description = nw_xml_paragraphs_take(&buf, &failed);
        if (failed)
            oom(ctx);
    }
    json_t *lang = json_object_get(story, "inLanguage");
    set_str(ctx, &self->language,
            json_is_string(lang) ? json_string_value(lang) : jstr(lang, "alternateName"));
    json_t *section = json_object_get(story, "articleSection");
    if (json_is_array(section)) {
        json_array_foreach(section, i, el) add_subject(ctx, self, json_string_value(el));
    } else
        add_subject(ctx, self, json_string_value(section));
    set_date(ctx, self, jstr(story, "dateModified"));
    set_date(ctx, self, jstr(story, "datePublished"));
    s = jstr(story, "articleBody");
    if (s && !self->body) {
        nw_text_buf_t buf = {0};
        bool failed;
        nw_text_buf_append(&buf, s, strlen(s));
        self->body = nw_xml_paragraphs_take(&buf, &failed);
        if (failed)
            oom(ctx);
    }
}

/* The text of a script element (JSON-LD is not markup: libxml2 keeps it as text). */
static char *script_text(const xmlNode *n)
{
    nw_text_buf_t buf = {0};
    const xmlNode *c;
    for (c = n->children; c; c = c->next)
        if ((c->type == XML_TEXT_NODE || c->type == XML_CDATA_SECTION_NODE) && c->content)
            nw_text_buf_append(&buf, (const char *) c->content,
                               strlen((const char *) c->content));
    if (buf.failed || !buf.len) {
        nw_text_buf_free(&buf);
        return NULL;
    }
    return nw_text_buf_take(&buf);
}

/* Every ld+json script under n, in document order, until one holds the story. */
static json_t *find_ld(const xmlNode *n, json_t **root, json_t **graph, int depth)
{
    const xmlNode *c;
    if (depth > NW_XML_MAX_DEPTH)
        return NULL;
    for (c = n->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        const char *type = nw_xml_attr(c, "type");
        if (nw_xml_is(c, "script") && type && strncasecmp(type, "application/ld+json", 19) == 0) {
            char *text = script_text(c);
            json_t *v = text ? json_loads(text, 0, NULL) : NULL;
            free(text);
            *graph = NULL;
            json_t *story = v ? find_story(v, graph, 0) : NULL;
            if (story) {
                *root = v;
                return story;
            }
            json_decref(v); /* not valid JSON, or no article in it: the page decides */
            continue;
        }
        json_t *story = find_ld(c, root, graph, depth + 1);
        if (story)
            return story;
    }
    return NULL;
}

/* --- the page's own markup ----------------------------------------------------------- */

typedef struct {
    const char *canonical;
    const char *og_title, *og_description, *og_url, *og_locale;
    const char *meta_description, *meta_author, *published, *modified;
    const xmlNode *h1_node, *title_node;
    const char *authors[8];
    size_t author_count;
    const char *sections[8];
    size_t section_count;
} meta_t;

static bool starts_with_url(const char *s)
{
    return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

static void read_meta_element(meta_t *m, const xmlNode *n)
{
    const char *prop = nw_xml_attr(n, "property"), *name = nw_xml_attr(n, "name");
    const char *content = nw_xml_attr(n, "content");
    const char *key = prop ? prop : name;
    if (!key || !content)
        return;
    if (strcasecmp(key, "og:title") == 0)
        m->og_title = m->og_title ? m->og_title : content;
    else if (strcasecmp(key, "og:description") == 0)
        m->og_description = m->og_description ? m->og_description : content;
    else if (strcasecmp(key, "og:url") == 0)
        m->og_url = m->og_url ? m->og_url : content;
    else if (strcasecmp(key, "og:locale") == 0)
        m->og_locale = m->og_locale ? m->og_locale : content;
    else if (strcasecmp(key, "article:published_time") == 0)
        m->published = m->published ? m->published : content;
    else if (strcasecmp(key, "article:modified_time") == 0)
        m->modified = m->modified ? m->modified : content;
    else if (strcasecmp(key, "article:author") == 0) {
        /* Often a profile URL rather than a name: only names make a byline. */
        if (!starts_with_url(content) && m->author_count < 8)
            m->authors[m->author_count++] = content;
    } else if (strcasecmp(key, "article:section") == 0) {
        if (m->section_count < 8)
            m->sections[m->section_count++] = content;
    } else if (name && strcasecmp(name, "description") == 0)
        m->meta_description = m->meta_description ? m->meta_description : content;
    else if (name && strcasecmp(name, "author") == 0)
        m->meta_author = m->meta_author ? m->meta_author : content;
}

static void read_meta(meta_t *m, const xmlNode *n, int depth)
{
    const xmlNode *c;
    if (depth > NW_XML_MAX_DEPTH)
        return;
    for (c = n->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        if (nw_xml_is(c, "meta"))
            read_meta_element(m, c);
        else if (nw_xml_is(c, "link")) {
            const char *rel = nw_xml_attr(c, "rel");
            if (rel && strcasecmp(rel, "canonical") == 0 && !m->canonical)
                m->canonical = nw_xml_attr(c, "href");
        } else if (nw_xml_is(c, "title") && !m->title_node)
            m->title_node = c;
        else if (nw_xml_is(c, "h1") && !m->h1_node)
            m->h1_node = c;
        if (!nw_xml_is(c, "script") && !nw_xml_is(c, "style"))
            read_meta(m, c, depth + 1);
    }
}

/* --- main text ------------------------------------------------------------------------ */

/* Class and id words that mark page furniture ("related-stories", "ad-slot",
 * "comments"): whole words, or words starting with the longer stems. */
static const char *const furniture_words[] = {
    "ad",      "ads",     "nav",        "menu",     "share",      "social",      "promo",
    "sidebar", "footer",  "header",     "masthead", "breadcrumb", "breadcrumbs", "cookie",
    "banner",  "tags",    "widget",     "popup",    "modal",      "paywall",     "byline",
    "meta",    "toolbar", "pagination", "outbrain", "taboola",
};
static const char *const furniture_stems[] = {
    "advert",    "sponsor",  "related", "comment",   "newsletter", "subscri",
    "recommend", "trending", "popular", "most-read", "mostread",   "more-stories",
    "read-more", "readmore", "signup",  "sign-up",   "disqus",     "teaser",
};

static bool word_is_furniture(const char *w, size_t n)
{
    size_t i;
    for (i = 0; i < sizeof furniture_words / sizeof furniture_words[0]; i++)
        if (strlen(furniture_words[i]) == n && strncasecmp(w, furniture_words[i], n) == 0)
            return true;
    for (i = 0; i < sizeof furniture_stems / sizeof furniture_stems[0]; i++) {
        size_t k = strlen(furniture_stems[i]);
        if (n >= k && strncasecmp(w, furniture_stems[i], k) == 0)
            return true;
    }
    return false;
}

/* Words of a class or id: split on blanks, '-' and '_' (but stems may span a hyphen:
 * "more-stories" is tried on the whole class name too). */
static bool names_furniture(const char *s)
{
    if (!s)
        return false;
    const char *p = s;
    while (*p) {
        size_t n = strcspn(p, " \t\n");
        if (n && word_is_furniture(p, n))
            return true;
        size_t k = 0;
        while (k < n) {
            size_t w = strcspn(p + k, " \t\n-_");
            if (w > n - k)
                w = n - k;
            if (w && word_is_furniture(p + k, w))
                return true;
            k += w + 1;
        }
        p += n;
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
    }
    return false;
}

static bool is_furniture(const xmlNode *n, void *arg)
{
    static const char *const elements[] = {
        "nav",    "aside",  "form",   "button", "select", "input", "textarea",
        "figure", "iframe", "svg",    "canvas", "video",  "audio", "object",
        "embed",  "header", "footer", "menu",   "h1",     "time",  "address",
    };
    static const char *const roles[] = {
        "navigation", "complementary", "banner", "contentinfo", "search", "menu", "dialog",
    };
    static const char *const lone_lines[] = {
        "Advertisement", "ADVERTISEMENT", "Sponsored", "Share this article", "Share",
    };
    size_t i;
    (void) arg;
    for (i = 0; i < sizeof elements / sizeof elements[0]; i++)
        if (nw_xml_is(n, elements[i]))
            return true;
    const char *role = nw_xml_attr(n, "role");
    for (i = 0; role && i < sizeof roles / sizeof roles[0]; i++)
        if (strcasecmp(role, roles[i]) == 0)
            return true;
    const char *hidden = nw_xml_attr(n, "aria-hidden");
    if ((hidden && strcmp(hidden, "true") == 0) || nw_xml_attr(n, "hidden"))
        return true;
    if (names_furniture(nw_xml_attr(n, "class")) || names_furniture(nw_xml_attr(n, "id")))
        return true;
    /* A block that says only "Advertisement" is a slot, whatever its class. */
    if (n->children && !n->children->next && n->children->type == XML_TEXT_NODE &&
        n->children->content) {
        const char *t = (const char *) n->children->content;
        size_t len = strlen(t);
        nw_text_trim(&t, &len);
        for (i = 0; i < sizeof lone_lines / sizeof lone_lines[0]; i++)
            if (nw_text_ieq(t, len, lone_lines[i]))
                return true;
    }
    return false;
}

/* The element that holds the story: itemprop=articleBody, the <article> with the most
 * paragraph text, <main>, role=main, else <body>. */
static size_t paragraph_bytes(const xmlNode *n, int depth)
{
    size_t total = 0;
    const xmlNode *c;
    if (depth > NW_XML_MAX_DEPTH)
        return 0;
    for (c = n->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || is_furniture(c, NULL))
            continue;
        if (nw_xml_is(c, "p")) {
            bool failed;
            char *s = nw_xml_oneline(c, &failed);
            total += s ? strlen(s) : 0;
            free(s);
        } else
            total += paragraph_bytes(c, depth + 1);
    }
    return total;
}

typedef struct {
    const xmlNode *itemprop, *article, *main;
    size_t article_bytes;
} candidates_t;

static void find_candidates(candidates_t *k, const xmlNode *n, int depth)
{
    const xmlNode *c;
    if (depth > NW_XML_MAX_DEPTH)
        return;
    for (c = n->children; c; c = c->next) {
        if (c->type != XML_ELEMENT_NODE || nw_xml_is(c, "script") || nw_xml_is(c, "style"))
            continue;
        const char *prop = nw_xml_attr(c, "itemprop");
        if (prop && strcmp(prop, "articleBody") == 0 && !k->itemprop)
            k->itemprop = c;
        if (nw_xml_is(c, "article")) {
            size_t bytes = paragraph_bytes(c, 0);
            if (!k->article || bytes > k->article_bytes) {
                k->article = c;
                k->article_bytes = bytes;
            }
        }
        const char *role = nw_xml_attr(c, "role");
        if ((nw_xml_is(c, "main") || (role && strcasecmp(role, "main") == 0)) && !k->main)
            k->main = c;
        find_candidates(k, c, depth + 1);
    }
}

static char *main_text(const xmlNode *root, bool *failed)
{
    candidates_t k = {0};
    find_candidates(&k, root, 0);
    const xmlNode *from = k.itemprop  ? k.itemprop
                          : k.article ? k.article
                          : k.main    ? k.main
                                      : nw_xml_child(root, "body");
    if (!from)
        from = root;
    nw_text_buf_t buf = {0};
    nw_xml_put_paragraphs_if(&buf, from, is_furniture, NULL);
    return nw_xml_paragraphs_take(&buf, failed);
}

/* og:locale "en_GB" as a BCP 47 tag "en-GB". */
static void set_locale(ctx_t *ctx, nw_article_t *self, const char *locale)
{
    if (!locale || self->language || strlen(locale) > 32)
        return;
    char tag[40];
    size_t i;
    for (i = 0; locale[i]; i++)
        tag[i] = locale[i] == '_' ? '-' : locale[i];
    tag[i] = '\0';
    set_str(ctx, &self->language, tag);
}

int nw_article_from_html(nw_article_t *self, const char *text, size_t len, char *errbuf,
                         size_t errlen)
{
    ctx_t ctx = {errbuf, errlen, false, NULL};
    json_t *ld = NULL;
    bool failed;
    size_t i;
    xmlDoc *doc = nw_xml_read(text, len, true, errbuf, errlen);
    if (!doc)
        return -1;
    const xmlNode *root = xmlDocGetRootElement(doc);
    meta_t m = {0};
    read_meta(&m, root, 0);

    /* The canonical link is the page's own word on its address. */
    set_str(&ctx, &self->uri, m.canonical);
    json_t *story = find_ld(root, &ld, &ctx.graph, 0);
    if (story)
        read_story(&ctx, self, story);
    set_str(&ctx, &self->uri, m.og_url);
    set_str(&ctx, &self->headline, m.og_title);
    if (!self->headline && m.title_node &&
        !(self->headline = nw_xml_oneline(m.title_node, &failed)) && failed)
        oom(&ctx);
    if (!self->headline && m.h1_node && !(self->headline = nw_xml_oneline(m.h1_node, &failed)) &&
        failed)
        oom(&ctx);
    if (!self->byline) {
        for (i = 0; i < m.author_count; i++) {
            char *clean = nw_xml_oneline_str(m.authors[i], &failed);
            if (failed || (clean && nw_article_add_authors(self, clean, strlen(clean), false)))
                oom(&ctx);
            free(clean);
        }
        if (!self->byline && m.meta_author && !starts_with_url(m.meta_author)) {
            char *clean = nw_xml_oneline_str(m.meta_author, &failed);
            if (failed || (clean && nw_article_add_authors(self, clean, strlen(clean), true)))
                oom(&ctx);
            free(clean);
        }
    }
    if (!self->description) {
        const char *d = m.og_description ? m.og_description : m.meta_description;
        if (d) {
            nw_text_buf_t buf = {0};
            nw_text_buf_append(&buf, d, strlen(d));
            self->description = nw_xml_paragraphs_take(&buf, &failed);
            if (failed)
                oom(&ctx);
        }
    }
    set_str(&ctx, &self->language, nw_xml_attr(root, "lang"));
    set_locale(&ctx, self, m.og_locale);
    if (self->subject_count == 0)
        for (i = 0; i < m.section_count; i++)
            add_subject(&ctx, self, m.sections[i]);
    set_date(&ctx, self, m.modified);
    set_date(&ctx, self, m.published);
    if (!self->body && !ctx.failed) {
        self->body = main_text(root, &failed);
        if (failed)
            oom(&ctx);
    }
    json_decref(ld);
    xmlFreeDoc(doc);
    return ctx.failed ? -1 : 0;
}
