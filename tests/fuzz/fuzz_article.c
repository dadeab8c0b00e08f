/*
 * fuzz_article: any bytes into nw_article_parse. Beyond "no crash, no leak" it checks
 * the promises of article.h on every accepted article: headline and body present,
 * no CR, no NUL inside a field, a 40-digit hex id, the same id on a second parse, and
 * an encoding only when one was converted (UTF-16 after its BOM, or Windows-1252).
 * Every accepted article is then routed with the default rules (the classifier reads
 * the same untrusted text): at least one topic, each a valid topic name, none twice.
 * Seed with tests/fixtures/articles.
 */
#include "article.h"
#include "route.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const char *s, bool required)
{
    if (!s) {
        if (required)
            __builtin_trap();
        return;
    }
    if (required && !*s)
        __builtin_trap();
    if (strchr(s, '\r'))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char errbuf[NW_ARTICLE_ERRLEN];
    nw_article_t *a = NULL;
    if (nw_article_parse((const char *) data, size, 1, &a, errbuf, sizeof errbuf) != 0) {
        if (a || !errbuf[0])
            __builtin_trap();
        return 0;
    }
    /* The decode step names only what it converted (UTF-16 by BOM, Windows-1252). */
    if (a->encoding && strcmp(a->encoding, "UTF-16LE") != 0 &&
        strcmp(a->encoding, "UTF-16BE") != 0 && strcmp(a->encoding, "windows-1252") != 0)
        __builtin_trap();
    bool bom16 = size >= 2 &&
                 ((data[0] == 0xFF && data[1] == 0xFE) || (data[0] == 0xFE && data[1] == 0xFF));
    if (a->encoding && (a->encoding[0] == 'U') != bom16)
        __builtin_trap();
    check_field(a->headline, true);
    check_field(a->body, true);
    check_field(a->byline, false);
    check_field(a->description, false);
    check_field(a->author_bio, false);
    check_field(a->language, false);
    check_field(a->uri, false);
    if (a->subject_count > NW_ARTICLE_MAX_SUBJECTS)
        __builtin_trap();
    size_t i;
    for (i = 0; i < a->subject_count; i++)
        check_field(a->subjects[i], true);
    if (strlen(a->id) != 40 || strspn(a->id, "0123456789abcdef") != 40)
        __builtin_trap();

    static nw_rules_t *rules;
    if (!rules && !(rules = nw_rules_new(NULL, errbuf, sizeof errbuf)))
        __builtin_trap();
    char topics[NW_ROUTE_MAX_TOPICS][NW_TOPIC_MAX + 1];
    size_t n = nw_route_topics(rules, NULL, a, topics);
    if (n == 0 || n > NW_ROUTE_MAX_TOPICS)
        __builtin_trap();
    for (i = 0; i < n; i++) {
        char norm[NW_TOPIC_MAX + 1];
        if (nw_topic_normalize(topics[i], norm, sizeof norm) != 0 || strcmp(norm, topics[i]) != 0)
            __builtin_trap();
        for (size_t j = 0; j < i; j++)
            if (strcmp(topics[i], topics[j]) == 0)
                __builtin_trap();
    }

    nw_article_t *b = NULL;
    if (nw_article_parse((const char *) data, size, 2, &b, errbuf, sizeof errbuf) != 0 ||
        strcmp(a->id, b->id) != 0)
        __builtin_trap();
    nw_article_destroy(&b);
    nw_article_destroy(&a);
    return 0;
}
