/*
 * fuzz_markup: any bytes, sanitized as article.c does, into one markup parser itself,
 * whatever the root element: built three times (tests/fuzz/CMakeLists.txt) as
 * fuzz_newsml, fuzz_nitf and fuzz_html, with NW_FUZZ_PARSE and NW_FUZZ_FORMAT naming
 * nw_article_from_newsml, _nitf or _html and its format. Beyond "no crash, no leak"
 * every story it returns has no CR inside its fields and a reason comes with a failure.
 * Seed with tests/fixtures/articles (its .xml and .html files).
 */
#include "article.h"
#include "text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_field(const char *s)
{
    if (s && strchr(s, '\r'))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char errbuf[NW_ARTICLE_ERRLEN] = "";
    size_t len;
    unsigned replaced;
    if (size && memchr(data, '\0', size))
        return 0; /* article.c refuses these before any parser */
    char *text = nw_text_sanitize((const char *) data, size, &len, &replaced);
    nw_article_t *a = calloc(1, sizeof *a);
    if (!text || !a) {
        free(text);
        free(a);
        return 0;
    }
    a->versioncreated_ms = INT64_MIN;
    a->format = NW_FUZZ_FORMAT;
    if (NW_FUZZ_PARSE(a, text, len, errbuf, sizeof errbuf) != 0 && !errbuf[0])
        __builtin_trap();
    const nw_article_t *s;
    size_t stories = 0;
    for (s = a; s; s = s->next, stories++) {
        check_field(s->headline);
        check_field(s->body);
        check_field(s->byline);
        check_field(s->description);
        check_field(s->language);
        check_field(s->uri);
        check_field(s->located);
        check_field(s->version);
        if (s->subject_count > NW_ARTICLE_MAX_SUBJECTS)
            __builtin_trap();
    }
    if (stories > NW_ARTICLE_MAX_ITEMS)
        __builtin_trap();
    nw_article_destroy(&a);
    free(text);
    return 0;
}
