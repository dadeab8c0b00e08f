/*
 * bench_parse: how fast nw_article_parse turns bytes into articles, per layout, and
 * how fast nw_rules_classify (the built-in rules) routes the parsed articles.
 * Inputs: the accepted fixtures in <fixtures>/articles (.txt, .xml, .html, grouped by
 * the layout they parse as: scraped, header, ninjs, NewsML-G2, NITF, HTML), a generated 3 KB
 * scraped article, and two hostile shapes (one 8 MiB line, a million blank lines) that would show
 * any quadratic path. Prints MB/s and articles/s per group on one thread; for routing, MB/s
 * counts the bytes of headline, standfirst and body, the fields the rules read.
 *
 *   bench_parse [--route] [fixtures-dir]   (default: $NW_FIXTURES, else the source
 *                                           tree's; --route: the routing groups only)
 *   NW_BENCH_ROUNDS=100 valgrind --tool=callgrind bench_parse --route
 *                      (a fixed number of routing rounds, to count instructions)
 */
#include "article.h"
#include "route.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_DOCS 256
#define MIN_SECONDS 0.5

typedef struct {
    char *data;
    size_t len;
} doc_t;

typedef struct {
    const char *name;
    doc_t docs[MAX_DOCS];
    size_t count;
} group_t;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *data = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        rewind(f);
        data = n >= 0 ? malloc((size_t) n + 1) : NULL;
        if (data && fread(data, 1, (size_t) n, f) == (size_t) n)
            *len = (size_t) n;
        else {
            free(data);
            data = NULL;
        }
    }
    fclose(f);
    return data;
}

static void add(group_t *g, char *data, size_t len)
{
    if (g->count < MAX_DOCS)
        g->docs[g->count++] = (doc_t) {data, len};
    else
        free(data);
}

/* A typical scraped article of about 3 KB. */
static char *generate_scraped(size_t *len)
{
    static const char *const para =
        "The operator said the upgrade would reach most of the county by the end of the "
        "year, with the remaining villages connected in the spring once the new backhaul "
        "links are in place and the last permits have been granted.";
    char *s = malloc(8192);
    if (!s)
        return NULL;
    int n = snprintf(s, 8192,
                     "A short standfirst that sums the story up in one line.\n\n"
                     "Ana Lima and Tom Berg\n\nTuesday, May 25, 2021\n\n3 Min Read\n"
                     "Operator speeds up its rural upgrade\n\n");
    int i;
    for (i = 0; i < 12; i++)
        n += snprintf(s + n, 8192 - (size_t) n, "%s\n\n", para);
    n += snprintf(s + n, 8192 - (size_t) n,
                  "About the Author(s)\n\nAna Lima\n\nAna writes "
                  "about networks.\nFollow her @ana\n\nYou May Also Like\n\nOther story\n");
    *len = (size_t) n;
    return s;
}

static void run(const group_t *g)
{
    size_t bytes = 0, articles = 0, rejected = 0, i;
    double start = now(), elapsed;
    char errbuf[NW_ARTICLE_ERRLEN];
    if (g->count == 0)
        return;
    do {
        for (i = 0; i < g->count; i++) {
            nw_article_t *a = NULL;
            if (nw_article_parse(g->docs[i].data, g->docs[i].len, 0, &a, errbuf, sizeof errbuf) !=
                0)
                rejected++;
            nw_article_destroy(&a);
            bytes += g->docs[i].len;
            articles++;
        }
        elapsed = now() - start;
    } while (elapsed < MIN_SECONDS);
    printf("%-22s %4zu input(s) %10.1f MB/s %12.0f articles/s%s\n", g->name, g->count,
           (double) bytes / elapsed / 1e6, (double) articles / elapsed,
           rejected ? "  (some rejected)" : "");
}

/* Routing throughput over the group's articles, parsed once beforehand. */
static void run_route(const group_t *g, const nw_rules_t *rules)
{
    nw_article_t *parsed[MAX_DOCS];
    char topics[NW_ROUTE_MAX_TOPICS][NW_TOPIC_MAX + 1];
    char errbuf[NW_ARTICLE_ERRLEN];
    size_t bytes = 0, articles = 0, routed = 0, field_bytes = 0, n = 0, i;
    for (i = 0; i < g->count; i++) {
        nw_article_t *a = NULL;
        if (nw_article_parse(g->docs[i].data, g->docs[i].len, 0, &a, errbuf, sizeof errbuf) != 0)
            continue;
        field_bytes += strlen(a->headline) + strlen(a->body) +
                       (a->description ? strlen(a->description) : 0);
        parsed[n++] = a;
    }
    if (n == 0)
        return;
    /* NW_BENCH_ROUNDS=N: exactly N rounds, for instruction counts under callgrind */
    const char *env = getenv("NW_BENCH_ROUNDS");
    long rounds = env ? atol(env) : 0, round = 0;
    double start = now(), elapsed;
    do {
        for (i = 0; i < n; i++)
            routed += nw_rules_classify(rules, parsed[i], topics, NW_ROUTE_MAX_TOPICS) > 0;
        bytes += field_bytes;
        articles += n;
        elapsed = now() - start;
    } while (rounds > 0 ? ++round < rounds : elapsed < MIN_SECONDS);
    printf("route %-22s %4zu input(s) %10.1f MB/s %12.0f articles/s %5.1f%% routed"
           " (%zu field bytes)\n",
           g->name, n, (double) bytes / elapsed / 1e6, (double) articles / elapsed,
           100.0 * (double) routed / (double) articles, field_bytes);
    for (i = 0; i < n; i++)
        nw_article_destroy(&parsed[i]);
}

int main(int argc, char **argv)
{
    int route_only = argc > 1 && strcmp(argv[1], "--route") == 0;
    if (route_only) {
        argc--;
        argv++;
    }
    const char *root = argc > 1 ? argv[1] : getenv("NW_FIXTURES");
    char dir[1024], path[2048];
    /* The fixture groups first, one per layout, then the generated inputs. */
    enum {
        G_SCRAPED,
        G_HEADER,
        G_NINJS,
        G_NEWSML,
        G_NITF,
        G_HTML,
        G_GENERATED,
        G_LINE,
        G_BLANKS
    };
    group_t groups[] = {
        {.name = "scraped fixtures"},      {.name = "header fixtures"},
        {.name = "ninjs fixtures"},        {.name = "newsml-g2 fixtures"},
        {.name = "nitf fixtures"},         {.name = "html fixtures"},
        {.name = "scraped generated 3KB"}, {.name = "one 8 MiB line"},
        {.name = "1M blank lines"},
    };
    snprintf(dir, sizeof dir, "%s/articles", root ? root : NW_BENCH_FIXTURES);

    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "bench_parse: cannot open %s\n", dir);
        return 1;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = 0;
        const char *ext = strrchr(e->d_name, '.');
        if (!ext ||
            (strcmp(ext, ".txt") != 0 && strcmp(ext, ".xml") != 0 && strcmp(ext, ".html") != 0) ||
            strncmp(e->d_name, "bad-", 4) == 0)
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int) sizeof path)
            continue;
        char *data = read_file(path, &len);
        nw_article_t *a = NULL;
        char errbuf[NW_ARTICLE_ERRLEN];
        if (!data || nw_article_parse(data, len, 0, &a, errbuf, sizeof errbuf) != 0) {
            free(data);
            continue;
        }
        int g = G_NINJS;
        switch (a->format) {
        case NW_FORMAT_SCRAPED: g = G_SCRAPED; break;
        case NW_FORMAT_HEADER: g = G_HEADER; break;
        case NW_FORMAT_NINJS: g = G_NINJS; break;
        case NW_FORMAT_NEWSML_G2: g = G_NEWSML; break;
        case NW_FORMAT_NITF: g = G_NITF; break;
        case NW_FORMAT_HTML: g = G_HTML; break;
        }
        add(&groups[g], data, len);
        nw_article_destroy(&a);
    }
    closedir(d);

    size_t len;
    char *gen = generate_scraped(&len);
    if (gen)
        add(&groups[G_GENERATED], gen, len);

    const char *top = "Standfirst.\n\nAna Lima\n\nMay 25, 2021\n\nBig headline\n\n";
    size_t toplen = strlen(top), big = 8u << 20;
    char *line = malloc(toplen + big);
    if (line) {
        memcpy(line, top, toplen);
        memset(line + toplen, 'x', big);
        add(&groups[G_LINE], line, toplen + big);
    }
    size_t blanks = 1000000;
    char *spaced = malloc(blanks + 128);
    if (spaced) {
        memset(spaced, '\n', blanks);
        int n = snprintf(spaced + blanks, 128, "Title: Spaced out\n\nBody.\n");
        add(&groups[G_BLANKS], spaced, blanks + (size_t) n);
    }

    char errbuf[256];
    nw_rules_t *rules = nw_rules_new(NULL, errbuf, sizeof errbuf);
    if (!rules) {
        fprintf(stderr, "bench_parse: %s\n", errbuf);
        return 1;
    }
    size_t i, j;
    for (i = 0; i <= G_GENERATED; i++) /* the hostile shapes are about the parser */
        run_route(&groups[i], rules);
    nw_rules_unref(&rules);
    for (i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        if (!route_only)
            run(&groups[i]);
        for (j = 0; j < groups[i].count; j++)
            free(groups[i].docs[j].data);
    }
    return 0;
}
