/*
 * test_article: every fixture in $NW_FIXTURES/articles parsed and compared field by
 * field with the .expected.json beside it (bad-* fixtures: the reason), the shared
 * scraped specimen when $NW_SHARED has it, id stability, line ending and BOM
 * equivalence, UTF-8 repair counts, and inputs built to be pathological in size.
 */
#include "article.h"
#include "date.h"
#include "runner.h"

#include <dirent.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MTIME 1600000000000LL

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *data = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (cap - n < 4096) {
            cap = cap ? cap * 2 : 8192;
            data = realloc(data, cap);
            if (!data)
                break;
        }
        got = fread(data + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    *len = n;
    return data;
}

static void check_opt_str(const char *fixture, const char *field, const char *got, json_t *want)
{
    if (!want || json_is_null(want)) {
        CHECK(got == NULL);
        if (got)
            fprintf(stderr, "  %s: %s = \"%s\", want null\n", fixture, field, got);
        return;
    }
    CHECK_STR(got, json_string_value(want));
    if (!got || !json_string_value(want) || strcmp(got, json_string_value(want)) != 0)
        fprintf(stderr, "  (%s: %s)\n", fixture, field);
}

static int64_t expected_ms(json_t *v)
{
    int64_t ms = -1;
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v))
        CHECK(nw_date_parse(json_string_value(v), &ms) == 0);
    return ms;
}

/* One story against its expected fields. */
static void check_story(const char *name, const nw_article_t *a, json_t *want)
{
    CHECK_STR(nw_format_name(a->format), json_string_value(json_object_get(want, "format")));
    check_opt_str(name, "headline", a->headline, json_object_get(want, "headline"));
    check_opt_str(name, "byline", a->byline, json_object_get(want, "byline"));
    check_opt_str(name, "description", a->description, json_object_get(want, "description"));
    check_opt_str(name, "body", a->body, json_object_get(want, "body"));
    check_opt_str(name, "author_bio", a->author_bio, json_object_get(want, "author_bio"));
    check_opt_str(name, "language", a->language, json_object_get(want, "language"));
    check_opt_str(name, "uri", a->uri, json_object_get(want, "uri"));
    check_opt_str(name, "version", a->version, json_object_get(want, "version"));
    check_opt_str(name, "located", a->located, json_object_get(want, "located"));
    int64_t ms = expected_ms(json_object_get(want, "versioncreated"));
    CHECK(a->versioncreated_ms == ms);
    if (a->versioncreated_ms != ms)
        fprintf(stderr, "  %s: versioncreated %lld, want %lld\n", name,
                (long long) a->versioncreated_ms, (long long) ms);
    json_t *subjects = json_object_get(want, "subjects");
    json_t *codes = json_object_get(want, "subject_codes");
    CHECK(a->subject_count == json_array_size(subjects));
    if (a->subject_count != json_array_size(subjects))
        fprintf(stderr, "  %s: %zu subjects, want %zu\n", name, a->subject_count,
                json_array_size(subjects));
    CHECK(codes ? a->subject_codes != NULL : a->subject_codes == NULL);
    size_t i;
    for (i = 0; i < a->subject_count && i < json_array_size(subjects); i++) {
        CHECK_STR(a->subjects[i], json_string_value(json_array_get(subjects, i)));
        if (codes && a->subject_codes)
            check_opt_str(name, "subject_codes", a->subject_codes[i], json_array_get(codes, i));
    }
    json_t *replaced = json_object_get(want, "replaced_bytes");
    CHECK(a->replaced_bytes == (replaced ? (unsigned) json_integer_value(replaced) : 0));
    CHECK(strlen(a->id) == 40 && strspn(a->id, "0123456789abcdef") == 40);
}

static void check_fixture(const char *dir, const char *name)
{
    char path[1024], expected_path[1024], errbuf[NW_ARTICLE_ERRLEN] = "";
    size_t len = 0, base = (size_t) (strrchr(name, '.') - name); /* without ".txt" */
    char *data = NULL;
    json_t *want = NULL;
    json_error_t jerr = {.text = "path too long"};
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int) sizeof path ||
        snprintf(expected_path, sizeof expected_path, "%s/%.*s.expected.json", dir, (int) base,
                 name) >= (int) sizeof expected_path)
        goto loaded;
    data = read_file(path, &len);
    want = json_load_file(expected_path, 0, &jerr);
loaded:
    CHECK(data != NULL);
    CHECK(want != NULL);
    if (!data || !want) {
        fprintf(stderr, "  %s: cannot load (%s)\n", name, want ? path : jerr.text);
        goto done;
    }
    nw_article_t *a = NULL;
    int rc = nw_article_parse(data, len, MTIME, &a, errbuf, sizeof errbuf);
    json_t *reason = json_object_get(want, "reason");
    if (reason) {
        const char *r = json_string_value(reason);
        CHECK(rc == -1 && a == NULL);
        CHECK(r && strncmp(errbuf, r, strlen(r)) == 0);
        if (rc != -1 || !r || strncmp(errbuf, r, strlen(r)) != 0)
            fprintf(stderr, "  %s: rc %d reason \"%s\", want \"%s\"\n", name, rc, errbuf, r);
        nw_article_destroy(&a);
        goto done;
    }
    CHECK(rc == 0 && a != NULL);
    if (rc != 0 || !a) {
        fprintf(stderr, "  %s: rejected: %s\n", name, errbuf);
        goto done;
    }
    /* A file of several stories lists them under "articles", in order. */
    json_t *stories = json_object_get(want, "articles");
    const nw_article_t *story = a;
    if (stories) {
        size_t k;
        for (k = 0; k < json_array_size(stories) && story; k++, story = story->next)
            check_story(name, story, json_array_get(stories, k));
        CHECK(k == json_array_size(stories) && story == NULL);
    } else {
        check_story(name, a, want);
        CHECK(a->next == NULL);
    }
    /* the encoding is the file's: on the first story */
    check_opt_str(name, "encoding", a->encoding, json_object_get(want, "encoding"));

    /* Parsing is a pure function: the same bytes give the same article id. */
    nw_article_t *again = NULL;
    CHECK(nw_article_parse(data, len, MTIME + 1, &again, errbuf, sizeof errbuf) == 0);
    CHECK(again && strcmp(again->id, a->id) == 0);
    nw_article_destroy(&again);
    nw_article_destroy(&a);
    CHECK(a == NULL);
done:
    json_decref(want);
    free(data);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

TEST_IMPL(fixtures)
{
    const char *root = getenv("NW_FIXTURES");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/articles", root ? root : "tests/fixtures");
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) {
        fprintf(stderr, "cannot open %s (set NW_FIXTURES)\n", dir);
        return;
    }
    char *names[512];
    size_t count = 0, i;
    struct dirent *e;
    while ((e = readdir(d)) && count < 512) {
        size_t n = strlen(e->d_name);
        if (n > 4 &&
            (strcmp(e->d_name + n - 4, ".txt") == 0 || strcmp(e->d_name + n - 4, ".xml") == 0 ||
             strcmp(e->d_name + n - 5, ".html") == 0))
            names[count++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, count, sizeof names[0], cmp_names);
    size_t scraped = 0, header = 0, ninjs = 0, bad = 0, newsml = 0, nitf = 0, html = 0;
    for (i = 0; i < count; i++) {
        newsml += strncmp(names[i], "newsml-", 7) == 0;
        nitf += strncmp(names[i], "nitf-", 5) == 0;
        html += strncmp(names[i], "html-", 5) == 0;
        scraped += strncmp(names[i], "scraped-", 8) == 0;
        header += strncmp(names[i], "header-", 7) == 0;
        ninjs += strncmp(names[i], "ninjs-", 6) == 0;
        bad += strncmp(names[i], "bad-", 4) == 0;
        check_fixture(dir, names[i]);
        free(names[i]);
    }
    CHECK(scraped >= 12 && header >= 1 && ninjs >= 2 && bad >= 5 && newsml >= 2 && nitf >= 1 &&
          html >= 4);
}

static nw_article_t *parse_ok(const char *data, size_t len)
{
    char errbuf[NW_ARTICLE_ERRLEN] = "";
    nw_article_t *a = NULL;
    if (nw_article_parse(data, len, MTIME, &a, errbuf, sizeof errbuf) != 0)
        fprintf(stderr, "unexpected rejection: %s\n", errbuf);
    return a;
}

TEST_IMPL(specimen)
{
    const char *shared = getenv("NW_SHARED");
    char path[1024];
    size_t len;
    snprintf(path, sizeof path, "%s/specimens/scraped-telecoms-article.txt",
             shared ? shared : "");
    char *data = shared ? read_file(path, &len) : NULL;
    if (!data) {
        nw_test_skip("specimen not found (NW_SHARED: %s)", shared ? shared : "unset");
        return;
    }
    nw_article_t *a = parse_ok(data, len);
    CHECK(a != NULL);
    if (a) {
        int64_t ms;
        CHECK(nw_date_parse("2021-05-25T00:00:00Z", &ms) == 0);
        CHECK(a->format == NW_FORMAT_SCRAPED);
        CHECK_STR(a->headline, "Leaked Huawei memo reveals plan for global software domination");
        CHECK_STR(a->byline, "Scott Bicheno");
        CHECK(a->versioncreated_ms == ms);
        /* The description is the file's first line; the body opens with it again. */
        size_t first = strcspn(data, "\r\n");
        CHECK(a->description && strlen(a->description) == first &&
              strncmp(a->description, data, first) == 0);
        CHECK(a->body && strncmp(a->body, data, first) == 0);
        CHECK(a->body && !strstr(a->body, "About the Author"));
        CHECK(a->body && !strstr(a->body, "Follow him"));
        CHECK(a->body && !strstr(a->body, "You May Also Like"));
        CHECK(a->body && a->body[strlen(a->body) - 1] == '.');
        CHECK(a->author_bio && strlen(a->author_bio) > 100);
        CHECK(a->author_bio && !strstr(a->author_bio, "Follow") && !strstr(a->author_bio, "@"));
        CHECK(a->author_bio && strncmp(a->author_bio, "Scott Bicheno", 13) != 0);
        CHECK(a->uri == NULL && a->subject_count == 0 && a->replaced_bytes == 0);
    }
    nw_article_destroy(&a);
    free(data);
}

TEST_IMPL(ids)
{
    const char *lf = "Standfirst line for a test story.\n\nAna Lima\n\nMay 25, 2021\n\n"
                     "Test headline\n\nFirst paragraph.\n\nSecond paragraph.\n";
    const char *crlf = "\xEF\xBB\xBFStandfirst line for a test story.\r\n\r\nAna Lima\r\n\r\n"
                       "May 25, 2021\r\n\r\nTest headline\r\n\r\nFirst paragraph.  \r\n\r\n\r\n"
                       "Second paragraph.\r\n";
    const char *other = "Standfirst line for a test story.\n\nAna Lima\n\nMay 25, 2021\n\n"
                        "Test headline\n\nFirst paragraph.\n\nA different second paragraph.\n";
    nw_article_t *a = parse_ok(lf, strlen(lf));
    nw_article_t *b = parse_ok(crlf, strlen(crlf));
    nw_article_t *c = parse_ok(other, strlen(other));
    CHECK(a && b && c);
    if (a && b && c) {
        CHECK_STR(a->id, b->id);
        CHECK(strcmp(a->id, c->id) != 0);
        CHECK_STR(a->body, b->body);
    }
    nw_article_destroy(&a);
    nw_article_destroy(&b);
    nw_article_destroy(&c);

    /* With a uri the id is the SHA-1 of the uri alone. */
    const char *h1 = "Title: One\nURI: urn:example:ferry-2024-09-03\n\nBody one.\n";
    const char *h2 = "Title: Two (corrected)\nURI: urn:example:ferry-2024-09-03\n\nBody two.\n";
    a = parse_ok(h1, strlen(h1));
    b = parse_ok(h2, strlen(h2));
    CHECK(a && b);
    if (a && b) {
        CHECK_STR(a->id, "8b218d8464d05e19347a735b73e73ef2083f9aad");
        CHECK_STR(a->id, b->id);
    }
    nw_article_destroy(&a);
    nw_article_destroy(&b);
}

TEST_IMPL(replaced)
{
    /* 0xFF is one invalid byte, E2 82 a truncated sequence: two bytes, one U+FFFD. 0x81,
     * undefined in Windows-1252, keeps the text from being read as that. */
    const char *s = "Title: A\xFF\x81\n\nB\xE2\x82\n";
    nw_article_t *a = parse_ok(s, strlen(s));
    CHECK(a != NULL);
    if (a) {
        CHECK(a->replaced_bytes == 4 && a->encoding == NULL);
        CHECK_STR(a->headline, "A\xEF\xBF\xBD\xEF\xBF\xBD");
        CHECK_STR(a->body, "B\xEF\xBF\xBD");
    }
    nw_article_destroy(&a);
}

TEST_IMPL(encodings_same_story)
{
    /* One story saved three ways is one article: the same fields and the same id. */
    const char *utf8 = "Title: Caf\xC3\xA9 \xE2\x80\x9Cnews\xE2\x80\x9D\n\n\xE2\x82\xAC"
                       "5 a cup.\n";
    const char cp1252[] = "Title: Caf\xE9 \x93news\x94\n\n\x80"
                          "5 a cup.\n";
    const char utf16[] = "\xFF\xFET\0i\0t\0l\0e\0:\0 \0C\0a\0f\0\xE9\0 \0\x1C\x20n\0e\0w\0s\0"
                         "\x1D\x20\n\0\n\0\xAC\x20"
                         "5\0 \0a\0 \0c\0u\0p\0.\0\n\0";
    nw_article_t *a = parse_ok(utf8, strlen(utf8));
    nw_article_t *b = parse_ok(cp1252, sizeof cp1252 - 1);
    nw_article_t *c = parse_ok(utf16, sizeof utf16 - 1);
    CHECK(a && b && c);
    if (a && b && c) {
        CHECK(a->encoding == NULL);
        CHECK_STR(b->encoding, "windows-1252");
        CHECK_STR(c->encoding, "UTF-16LE");
        CHECK_STR(b->headline, a->headline);
        CHECK_STR(c->headline, a->headline);
        CHECK_STR(b->body, "\xE2\x82\xAC"
                           "5 a cup.");
        CHECK_STR(c->body, a->body);
        CHECK_STR(b->id, a->id);
        CHECK_STR(c->id, a->id);
        CHECK(a->replaced_bytes == 0 && b->replaced_bytes == 0 && c->replaced_bytes == 0);
    }
    nw_article_destroy(&a);
    nw_article_destroy(&b);
    nw_article_destroy(&c);
}

TEST_IMPL(layout_detection)
{
    /* A standfirst that opens like a header key stays scraped. */
    const char *s = "Summary: the regulator has had enough of slow roll-outs.\n\nAna Lima\n\n"
                    "2021-05-25\n\nRegulator fines slow builders\n\nFines start next year.\n";
    nw_article_t *a = parse_ok(s, strlen(s));
    CHECK(a && a->format == NW_FORMAT_SCRAPED);
    if (a) {
        CHECK_STR(a->headline, "Regulator fines slow builders");
        CHECK_STR(a->description, "Summary: the regulator has had enough of slow roll-outs.");
    }
    nw_article_destroy(&a);
    CHECK(nw_article_looks_like_header("\n\nTitle: x\n\nbody", 16));
    CHECK(nw_article_looks_like_header("Author: a\nDate: 2021-05-25\n\nbody", 33));
    CHECK(!nw_article_looks_like_header("Summary: x\n\nbody", 16));
    CHECK(!nw_article_looks_like_header("Title: x\nnot a header line\n\nbody", 33));
    CHECK(!nw_article_looks_like_header("Note: x\nTitle: y\n\nbody", 22));
    CHECK(!nw_article_looks_like_header("Title:x\n\nbody", 13));
    CHECK(!nw_article_looks_like_header("", 0));

    /* An empty Date: is no date, not a bad one. */
    s = "Title: Undated\nDate:\n\nBody.\n";
    a = parse_ok(s, strlen(s));
    CHECK(a && a->versioncreated_ms == MTIME);
    nw_article_destroy(&a);

    /* With no date line at all, the first line is the headline. */
    s = "Plain headline\n\nPlain body.\n";
    a = parse_ok(s, strlen(s));
    CHECK(a && a->format == NW_FORMAT_SCRAPED);
    if (a) {
        CHECK_STR(a->headline, "Plain headline");
        CHECK_STR(a->body, "Plain body.");
        CHECK(a->versioncreated_ms == MTIME && a->byline == NULL && a->description == NULL);
    }
    nw_article_destroy(&a);
}

TEST_IMPL(authors_and_subjects)
{
    nw_article_t a;
    memset(&a, 0, sizeof a);
    const char *s = "By Ana Lima, and Tom Berg & Zoë Müller;Kim Lee";
    CHECK(nw_article_add_authors(&a, s, strlen(s), true) == 0);
    CHECK_STR(a.byline, "Ana Lima, Tom Berg, Zoë Müller, Kim Lee");
    s = "Alex Anderson and Brandon";
    CHECK(nw_article_add_authors(&a, s, strlen(s), false) == 0);
    CHECK_STR(a.byline, "Ana Lima, Tom Berg, Zoë Müller, Kim Lee, Alex Anderson and Brandon");
    free(a.byline);

    memset(&a, 0, sizeof a);
    char buf[16];
    int i;
    for (i = 0; i < 100; i++) {
        snprintf(buf, sizeof buf, " s%d ", i % 80);
        CHECK(nw_article_add_subject(&a, buf, strlen(buf)) == 0);
    }
    CHECK(nw_article_add_subject(&a, "  ", 2) == 0);
    CHECK(a.subject_count == NW_ARTICLE_MAX_SUBJECTS);
    CHECK_STR(a.subjects[0], "s0");
    CHECK_STR(a.subjects[63], "s63");
    for (i = 0; i < (int) a.subject_count; i++)
        free(a.subjects[i]);
    free(a.subjects);
}

/* Sizes that would expose quadratic behaviour: the fields must still come out right. */
TEST_IMPL(large_inputs)
{
    const size_t big = 8u << 20;
    const char *top = "Standfirst.\n\nAna Lima\n\nMay 25, 2021\n\nBig headline\n\n";
    size_t toplen = strlen(top);
    char *s = malloc(toplen + big + 1);
    CHECK(s != NULL);
    if (!s)
        return;
    memcpy(s, top, toplen);
    memset(s + toplen, 'x', big);
    nw_article_t *a = parse_ok(s, toplen + big);
    CHECK(a && a->body && strlen(a->body) == big);
    CHECK(a && a->headline && strcmp(a->headline, "Big headline") == 0);
    nw_article_destroy(&a);

    /* One 8 MiB line alone: a headline without a body. */
    char errbuf[NW_ARTICLE_ERRLEN];
    CHECK(nw_article_parse(s + toplen, big, MTIME, &a, errbuf, sizeof errbuf) == -1);
    CHECK_STR(errbuf, "no body");

    /* A million blank lines before and inside the article. */
    size_t blanks = 1000000;
    char *t = malloc(2 * blanks + 256);
    CHECK(t != NULL);
    if (t) {
        size_t n = 0;
        memset(t, '\n', blanks);
        n += blanks;
        n += (size_t) sprintf(t + n, "Title: Spaced out\n\nFirst.");
        memset(t + n, '\n', blanks);
        n += blanks;
        n += (size_t) sprintf(t + n, "Last.\n");
        a = parse_ok(t, n);
        CHECK(a && a->format == NW_FORMAT_HEADER);
        CHECK(a && a->body && strcmp(a->body, "First.\n\nLast.") == 0);
        nw_article_destroy(&a);

        memset(t, '\n', blanks);
        n = blanks;
        n += (size_t) sprintf(t + n,
                              "A standfirst.\n\nAna Lima\n\n2 May 2021\n\nHeadline\n\nBody.");
        memset(t + n, '\n', blanks);
        n += blanks;
        a = parse_ok(t, n);
        CHECK(a && a->format == NW_FORMAT_SCRAPED && a->body && strcmp(a->body, "Body.") == 0);
        nw_article_destroy(&a);
        free(t);
    }
    free(s);
}

static int parse_err(const char *data, size_t len, char *errbuf)
{
    nw_article_t *a = NULL;
    int rc = nw_article_parse(data, len, MTIME, &a, errbuf, NW_ARTICLE_ERRLEN);
    if (rc == 0)
        fprintf(stderr, "unexpectedly accepted: %.60s\n", data);
    CHECK((rc == 0) == (a != NULL));
    nw_article_destroy(&a);
    return rc;
}

#define G2_HEAD \
    "<newsItem guid=\"urn:x:1\"><contentMeta><headline>H</headline></contentMeta>" \
    "<contentSet><inlineXML><html><body>"
#define G2_TAIL "</body></html></inlineXML></contentSet></newsItem>"

/* Hostile XML: each refused with a reason or read within the limits, nothing fetched,
 * nothing expanded. */
TEST_IMPL(hostile_markup)
{
    char errbuf[NW_ARTICLE_ERRLEN];
    /* Billion laughs: ten levels of ten references. */
    const char *laughs =
        "<?xml version=\"1.0\"?>\n<!DOCTYPE newsItem [\n <!ENTITY lol \"lol\">\n"
        " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
        " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
        " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
        " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
        " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
        " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
        " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
        " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
        " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
        "]>\n" G2_HEAD "<p>&lol9;</p>" G2_TAIL;
    CHECK(parse_err(laughs, strlen(laughs), errbuf) == -1);
    CHECK(strncmp(errbuf, "XML", 3) == 0);
    printf("billion laughs: %s\n", errbuf);

    /* External entities, a file and a URL: never read. */
    char secret[] = "/tmp/nw-secret-XXXXXX";
    int fd = mkstemp(secret);
    CHECK(fd >= 0);
    if (fd >= 0) {
        CHECK(write(fd, "SECRET-MARKER", 13) == 13);
        close(fd);
    }
    char xxe[1024];
    snprintf(xxe, sizeof xxe,
             "<?xml version=\"1.0\"?>\n<!DOCTYPE nitf [ <!ENTITY f SYSTEM \"file://%s\">"
             " <!ENTITY u SYSTEM \"http://198.18.0.1/entity\"> ]>\n<nitf><body><body.head>"
             "<hedline><hl1>H &f;</hl1></hedline></body.head><body.content><p>B &u; &f;</p>"
             "</body.content></body></nitf>",
             secret);
    CHECK(parse_err(xxe, strlen(xxe), errbuf) == -1);
    CHECK(strstr(errbuf, "entities") != NULL && !strstr(errbuf, "SECRET"));
    printf("external entities: %s\n", errbuf);
    /* Parameter entities and an external DTD subset: the same. */
    snprintf(
        xxe, sizeof xxe,
        "<?xml version=\"1.0\"?>\n<!DOCTYPE nitf [ <!ENTITY %% p SYSTEM \"file://%s\"> %%p; ]>"
        "<nitf><body><body.head><hedline><hl1>H</hl1></hedline></body.head>"
        "<body.content><p>B</p></body.content></body></nitf>",
        secret);
    CHECK(parse_err(xxe, strlen(xxe), errbuf) == -1);
    printf("parameter entity: %s\n", errbuf);
    unlink(secret);
    /* An external DTD is not loaded; a reference it would declare stays unexpanded. */
    const char *dtd =
        "<?xml version=\"1.0\"?>\n<!DOCTYPE nitf SYSTEM \"http://198.18.0.1/nitf.dtd\">"
        "<nitf><body><body.head><hedline><hl1>Dash&mdash;here</hl1></hedline>"
        "</body.head><body.content><p>Body &amp; more</p></body.content></body></nitf>";
    nw_article_t *a = parse_ok(dtd, strlen(dtd));
    CHECK(a && a->format == NW_FORMAT_NITF);
    if (a) {
        CHECK_STR(a->headline, "Dashhere");
        CHECK_STR(a->body, "Body & more");
    }
    nw_article_destroy(&a);

    /* Nesting deeper than libxml2's 256 levels. */
    size_t depth = 100000, n = 0;
    char *deep = malloc(depth * 11 + 256);
    CHECK(deep != NULL);
    if (deep) {
        n += (size_t) sprintf(deep, G2_HEAD);
        size_t i;
        for (i = 0; i < depth; i++)
            n += (size_t) sprintf(deep + n, "<div>");
        n += (size_t) sprintf(deep + n, "x");
        for (i = 0; i < depth; i++)
            n += (size_t) sprintf(deep + n, "</div>");
        n += (size_t) sprintf(deep + n, G2_TAIL);
        CHECK(parse_err(deep, n, errbuf) == -1);
        CHECK(strstr(errbuf, "depth") != NULL);
        printf("deep nesting: %s\n", errbuf);
        free(deep);
    }

    /* 100 MB: refused by size, never built into a tree. */
    size_t big = 100u << 20;
    char *huge = malloc(big + 256);
    CHECK(huge != NULL);
    if (huge) {
        n = (size_t) sprintf(huge, G2_HEAD "<p>");
        memset(huge + n, 'x', big);
        n += big;
        n += (size_t) sprintf(huge + n, "</p>" G2_TAIL);
        CHECK(parse_err(huge, n, errbuf) == -1);
        CHECK(strstr(errbuf, "markup limit") != NULL);
        printf("100 MB: %s\n", errbuf);
        free(huge);
    }

    /* Encoding declarations are not believed: the bytes are UTF-8 by now. */
    static const char *const decls[] = {"x-no-such-charset", "UTF-16", "ISO-8859-1", ""};
    size_t k;
    for (k = 0; k < sizeof decls / sizeof decls[0]; k++) {
        char doc[512];
        snprintf(doc, sizeof doc,
                 "<?xml version=\"1.0\" encoding=\"%s\"?>\n" G2_HEAD "<p>Zoë — ok</p>" G2_TAIL,
                 decls[k]);
        char e2[NW_ARTICLE_ERRLEN] = "";
        a = NULL;
        int rc = nw_article_parse(doc, strlen(doc), MTIME, &a, e2, sizeof e2);
        /* An empty declaration is not well-formed; the others read as UTF-8. */
        if (decls[k][0]) {
            CHECK(rc == 0 && a && strcmp(a->body, "Zoë — ok") == 0);
            if (rc != 0)
                fprintf(stderr, "encoding %s: %s\n", decls[k], e2);
        } else {
            CHECK(rc == -1 && strncmp(e2, "XML: line", 9) == 0);
            printf("empty encoding: %s\n", e2);
        }
        nw_article_destroy(&a);
    }

    /* HTML nested 100000 deep: read within the walkers' depth, no stack overflow; a
     * broken JSON-LD block is ignored, the page's own markup stands in. */
    deep = malloc(depth * 11 + 512);
    CHECK(deep != NULL);
    if (deep) {
        n = (size_t) sprintf(deep,
                             "<!DOCTYPE html><html><head><title>Deep</title><script "
                             "type=\"application/ld+json\">{\"@type\": \"NewsArticle\",</script>"
                             "</head><body><p>Top paragraph.</p>");
        size_t i;
        for (i = 0; i < depth; i++)
            n += (size_t) sprintf(deep + n, "<div>");
        n += (size_t) sprintf(deep + n, "x");
        for (i = 0; i < depth; i++)
            n += (size_t) sprintf(deep + n, "</div>");
        n += (size_t) sprintf(deep + n, "</body></html>");
        a = NULL;
        int rc = nw_article_parse(deep, n, MTIME, &a, errbuf, sizeof errbuf);
        CHECK(rc == 0 && a && a->format == NW_FORMAT_HTML);
        if (rc == 0 && a) {
            CHECK_STR(a->headline, "Deep");
            CHECK(strncmp(a->body, "Top paragraph.", 14) == 0);
        } else
            fprintf(stderr, "deep HTML: %s\n", errbuf);
        nw_article_destroy(&a);
        free(deep);
    }

    /* Not well-formed: libxml2's reason with its line. */
    const char *broken = "<nitf><body><body.content><p>unclosed</body.content></body></nitf>";
    CHECK(parse_err(broken, strlen(broken), errbuf) == -1);
    CHECK(strncmp(errbuf, "XML: line 1: ", 13) == 0);
    printf("broken: %s\n", errbuf);
    /* A G2 message with no text item. */
    const char *photos =
        "<newsMessage><itemSet><newsItem><itemMeta><itemClass qcode=\"ninat:picture\"/>"
        "</itemMeta></newsItem></itemSet></newsMessage>";
    CHECK(parse_err(photos, strlen(photos), errbuf) == -1);
    CHECK_STR(errbuf, "NewsML-G2: no text item (nothing to publish)");
    /* One bad item rejects the file, naming it. */
    const char *second = "<newsMessage><itemSet>"
                         "<newsItem guid=\"a\"><contentMeta><headline>A"
                         "</headline></contentMeta><contentSet><inlineData>a</inlineData>"
                         "</contentSet></newsItem><newsItem guid=\"b\"><contentSet><inlineData>b"
                         "</inlineData></contentSet></newsItem></itemSet></newsMessage>";
    CHECK(parse_err(second, strlen(second), errbuf) == -1);
    CHECK_STR(errbuf, "item 2: no headline");
}

TEST_IMPL(format_names)
{
    nw_article_destroy(NULL);
    CHECK_STR(nw_format_name(NW_FORMAT_NINJS), "ninjs");
}
