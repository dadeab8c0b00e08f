/*
 * parse_ninjs: IPTC ninjs, the JSON news agencies exchange. Sanitized text comes in,
 * is parsed by jansson, and the fields leave in the article; both the 1.x names
 * (headline, byline, body_text, subject[]) and the 2.x ones (headlines[], bylines[],
 * bodies[], subjects[]) are read, the 1.x name winning when both are present, with
 * version, located, and each subject's code beside its name.
 * Unknown members are ignored; a known member of the wrong type rejects the file.
 *
 * JSON escapes can smuggle in what sanitizing the raw bytes removed (\r, \u0001), so
 * every string is sanitized again before it is normalized.
 */
#include "article.h"
#include "text.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *errbuf;
    size_t errlen;
    bool failed; /* a reason is in errbuf */
} ctx_t;

static void type_error(ctx_t *ctx, const char *name, const char *want)
{
    if (!ctx->failed)
        snprintf(ctx->errbuf, ctx->errlen, "ninjs: '%s' is not %s", name, want);
    ctx->failed = true;
}

static void oom_error(ctx_t *ctx)
{
    if (!ctx->failed)
        snprintf(ctx->errbuf, ctx->errlen, "out of memory");
    ctx->failed = true;
}

/* The string member `name` of obj, NULL when absent or null; a type error otherwise. */
static const char *get_string(ctx_t *ctx, json_t *obj, const char *name, size_t *n)
{
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_string(v)) {
        type_error(ctx, name, "a string");
        return NULL;
    }
    *n = json_string_length(v);
    return json_string_value(v);
}

/* The array member `name` of obj, NULL when absent or null; a type error otherwise. */
static json_t *get_array(ctx_t *ctx, json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v))
        return NULL;
    if (!json_is_array(v)) {
        type_error(ctx, name, "an array");
        return NULL;
    }
    return v;
}

/* The string `member` of element i of an array of objects (such as headlines[i].value). */
static const char *get_element_string(ctx_t *ctx, json_t *array, size_t i, const char *array_name,
                                      const char *member, size_t *n)
{
    json_t *el = json_array_get(array, i);
    if (!json_is_object(el)) {
        type_error(ctx, array_name, "an array of objects");
        return NULL;
    }
    return get_string(ctx, el, member, n);
}

/* Sanitized copy of a JSON string, as one line or as paragraphs; NULL when blank. */
static char *normalize(ctx_t *ctx, const char *s, size_t n, bool paragraphs)
{
    size_t clean_len;
    unsigned replaced;
    if (!s)
        return NULL;
    char *clean = nw_text_sanitize(s, n, &clean_len, &replaced);
    if (!clean) {
        oom_error(ctx);
        return NULL;
    }
    char *out;
    bool oom = false;
    if (paragraphs) {
        nw_text_para_t para = {0};
        nw_text_para_text(&para, clean, clean_len);
        out = nw_text_para_take(&para, &oom);
    } else {
        out = nw_text_oneline(clean, clean_len);
        oom = !out && !nw_text_is_blank(clean, clean_len);
    }
    free(clean);
    if (oom)
        oom_error(ctx);
    return out;
}

static void set_field(ctx_t *ctx, char **field, const char *s, size_t n, bool paragraphs)
{
    if (!s || *field)
        return;
    *field = normalize(ctx, s, n, paragraphs);
}

/* The element of a 2.x array whose `key` is `want` ("role": "main", "contenttype":
 * "text/plain"), or whose key is absent; else the first. SIZE_MAX when empty. */
static size_t pick(ctx_t *ctx, json_t *array, const char *array_name, const char *key,
                   const char *want)
{
    size_t i, n, first = SIZE_MAX;
    for (i = 0; i < json_array_size(array); i++) {
        json_t *el = json_array_get(array, i);
        if (!json_is_object(el)) {
            type_error(ctx, array_name, "an array of objects");
            return SIZE_MAX;
        }
        const char *v = get_string(ctx, el, key, &n);
        if (ctx->failed)
            return SIZE_MAX;
        if (!v || strcmp(v, want) == 0)
            return i;
        if (first == SIZE_MAX)
            first = i;
    }
    return first;
}

/* An ns field from a 2.x array (headlines, descriptions, bodies). */
static void set_from_array(ctx_t *ctx, json_t *root, const char *array_name, const char *key,
                           const char *want, char **field, bool paragraphs)
{
    json_t *array = get_array(ctx, root, array_name);
    if (!array || *field)
        return;
    size_t i = pick(ctx, array, array_name, key, want), n = 0;
    if (i == SIZE_MAX)
        return;
    const char *s = get_element_string(ctx, array, i, array_name, "value", &n);
    if (s && !ctx->failed)
        *field = normalize(ctx, s, n, paragraphs);
}

static void add_authors(ctx_t *ctx, nw_article_t *self, const char *s, size_t n, bool split_and)
{
    char *clean = normalize(ctx, s, n, false);
    if (clean && nw_article_add_authors(self, clean, strlen(clean), split_and) != 0)
        oom_error(ctx);
    free(clean);
}

static void read_bylines(ctx_t *ctx, nw_article_t *self, json_t *root)
{
    size_t n = 0, i;
    const char *s = get_string(ctx, root, "byline", &n);
    if (s) {
        add_authors(ctx, self, s, n, true);
        return;
    }
    json_t *array = get_array(ctx, root, "bylines");
    for (i = 0; array && i < json_array_size(array) && !ctx->failed; i++) {
        s = get_element_string(ctx, array, i, "bylines", "byline", &n);
        if (s)
            add_authors(ctx, self, s, n, false);
    }
    if (self->byline || ctx->failed)
        return;
    s = get_string(ctx, root, "by", &n);
    if (s)
        add_authors(ctx, self, s, n, true);
}

static void read_subjects(ctx_t *ctx, nw_article_t *self, json_t *root, const char *array_name)
{
    json_t *array = get_array(ctx, root, array_name);
    size_t i, n = 0;
    for (i = 0; array && i < json_array_size(array) && !ctx->failed; i++) {
        if (self->subject_count >= NW_ARTICLE_MAX_SUBJECTS)
            break;
        size_t cn = 0;
        const char *s = get_element_string(ctx, array, i, array_name, "name", &n);
        const char *c = ctx->failed ? NULL
                                    : get_element_string(ctx, array, i, array_name, "code", &cn);
        /* A code (an IPTC Media Topic, say) is kept beside the name; alone it names. */
        char *clean = s ? normalize(ctx, s, n, false) : NULL;
        char *code = c ? normalize(ctx, c, cn, false) : NULL;
        if ((clean || code) && nw_article_add_coded_subject(self, clean ? clean : "",
                                                            clean ? strlen(clean) : 0, code) != 0)
            oom_error(ctx);
        free(clean);
        free(code);
    }
}

static void read_date(ctx_t *ctx, nw_article_t *self, json_t *root)
{
    static const char *const names[] = {"versioncreated", "firstcreated"};
    size_t i, n = 0;
    for (i = 0; i < 2 && !ctx->failed; i++) {
        const char *s = get_string(ctx, root, names[i], &n);
        if (!s)
            continue;
        if (nw_article_set_date(self, s, n, ctx->errbuf, ctx->errlen) != 0)
            ctx->failed = true;
        return;
    }
}

int nw_article_from_ninjs(nw_article_t *self, const char *text, size_t len, char *errbuf,
                          size_t errlen)
{
    ctx_t ctx = {errbuf, errlen, false};
    json_error_t error;
    size_t n = 0;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &error);

    if (!root) {
        snprintf(errbuf, errlen, "invalid JSON at line %d: %s", error.line, error.text);
        goto fail;
    }
    if (!json_is_object(root)) {
        snprintf(errbuf, errlen, "ninjs: not a JSON object");
        goto fail;
    }
    const char *uri = get_string(&ctx, root, "uri", &n);
    set_field(&ctx, &self->uri, uri, n, false);
    const char *s = get_string(&ctx, root, "headline", &n);
    set_field(&ctx, &self->headline, s, n, false);
    set_from_array(&ctx, root, "headlines", "role", "main", &self->headline, false);
    read_bylines(&ctx, self, root);
    s = get_string(&ctx, root, "description_text", &n);
    set_field(&ctx, &self->description, s, n, true);
    set_from_array(&ctx, root, "descriptions", "role", "summary", &self->description, true);
    s = get_string(&ctx, root, "body_text", &n);
    set_field(&ctx, &self->body, s, n, true);
    set_from_array(&ctx, root, "bodies", "contenttype", "text/plain", &self->body, true);
    s = get_string(&ctx, root, "language", &n);
    set_field(&ctx, &self->language, s, n, false);
    s = get_string(&ctx, root, "version", &n);
    set_field(&ctx, &self->version, s, n, false);
    s = get_string(&ctx, root, "located", &n);
    set_field(&ctx, &self->located, s, n, false);
    read_subjects(&ctx, self, root, "subject");
    read_subjects(&ctx, self, root, "subjects");
    read_date(&ctx, self, root);
    if (ctx.failed)
        goto fail;
    json_decref(root);
    return 0;

fail:
    json_decref(root);
    return -1;
}
