/*
 * medtop: reads the Media Topics table (medtop.h) with jansson into two small arrays
 * and answers lookups by linear search: the table holds tens of entries, and a story
 * asks a few times.
 */
#include "medtop.h"
#include "route.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CODE_MAX 64

typedef struct {
    char code[CODE_MAX];
    char topic[NW_TOPIC_MAX + 1];
} entry_t;

typedef struct {
    char prefix[CODE_MAX];
    char *uri;
} scheme_t;

struct nw_medtop {
    entry_t *entries;
    size_t count;
    scheme_t *schemes;
    size_t scheme_count;
};

void nw_medtop_destroy(nw_medtop_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nw_medtop_t *self = *self_p;
    for (size_t i = 0; i < self->scheme_count; i++)
        free(self->schemes[i].uri);
    free(self->schemes);
    free(self->entries);
    free(self);
    *self_p = NULL;
}

nw_medtop_t *nw_medtop_load(const char *path, char *errbuf, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    nw_medtop_t *self = NULL;
    if (!root) {
        snprintf(errbuf, errlen, "media topics %s: %s (line %d)", path, jerr.text, jerr.line);
        return NULL;
    }
    json_t *topics = json_object_get(root, "topics"), *schemes = json_object_get(root, "schemes");
    if (!json_is_array(topics) || (schemes && !json_is_object(schemes))) {
        snprintf(errbuf, errlen,
                 "media topics %s: wants a \"topics\" array and a \"schemes\" "
                 "object",
                 path);
        goto fail;
    }
    self = calloc(1, sizeof *self);
    size_t n = json_array_size(topics), ns = json_object_size(schemes);
    if (!self || !(self->entries = calloc(n ? n : 1, sizeof *self->entries)) ||
        !(self->schemes = calloc(ns ? ns : 1, sizeof *self->schemes))) {
        snprintf(errbuf, errlen, "media topics: out of memory");
        goto fail;
    }
    size_t i;
    json_t *el;
    json_array_foreach(topics, i, el)
    {
        const char *code = json_string_value(json_object_get(el, "code"));
        const char *topic = json_string_value(json_object_get(el, "topic"));
        entry_t *e = &self->entries[self->count];
        if (!code || !topic || strlen(code) >= CODE_MAX || !strchr(code, ':') ||
            nw_topic_normalize(topic, e->topic, sizeof e->topic) != 0) {
            snprintf(errbuf, errlen,
                     "media topics %s: entry %zu needs a \"code\" (prefix:id) "
                     "and a \"topic\" that is a topic name",
                     path, i + 1);
            goto fail;
        }
        if (nw_medtop_topic(self, code)) {
            snprintf(errbuf, errlen, "media topics %s: %s is listed twice", path, code);
            goto fail;
        }
        memcpy(e->code, code, strlen(code) + 1);
        self->count++;
    }
    const char *key;
    json_t *value;
    json_object_foreach(schemes, key, value)
    {
        scheme_t *s = &self->schemes[self->scheme_count];
        if (!json_is_string(value) || strlen(key) >= CODE_MAX) {
            snprintf(errbuf, errlen, "media topics %s: scheme '%s' is not a URI string", path,
                     key);
            goto fail;
        }
        memcpy(s->prefix, key, strlen(key) + 1);
        if (!(s->uri = strdup(json_string_value(value)))) {
            snprintf(errbuf, errlen, "media topics: out of memory");
            goto fail;
        }
        self->scheme_count++;
    }
    json_decref(root);
    return self;

fail:
    json_decref(root);
    nw_medtop_destroy(&self);
    return NULL;
}

size_t nw_medtop_count(const nw_medtop_t *self)
{
    return self ? self->count : 0;
}

const char *nw_medtop_topic(const nw_medtop_t *self, const char *code)
{
    for (size_t i = 0; self && code && i < self->count; i++)
        if (strcmp(self->entries[i].code, code) == 0)
            return self->entries[i].topic;
    return NULL;
}

const char *nw_medtop_code(const nw_medtop_t *self, const char *topic)
{
    for (size_t i = 0; self && topic && i < self->count; i++)
        if (strcmp(self->entries[i].topic, topic) == 0)
            return self->entries[i].code;
    return NULL;
}

const char *nw_medtop_scheme(const nw_medtop_t *self, const char *code)
{
    const char *colon = code ? strchr(code, ':') : NULL;
    for (size_t i = 0; self && colon && i < self->scheme_count; i++)
        if (strlen(self->schemes[i].prefix) == (size_t) (colon - code) &&
            strncmp(self->schemes[i].prefix, code, (size_t) (colon - code)) == 0)
            return self->schemes[i].uri;
    return NULL;
}
