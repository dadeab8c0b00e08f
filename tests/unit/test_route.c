/* test_route: keyword rules (built-in and from ZPL), the routing
 * order and the reference count, against hand-written articles and the shared
 * scraped specimen (read at run time, skipped when absent); and the indexed classifier
 * against a slow reference reading of route.h on generated texts full of edge cases
 * (case, separators, clause breaks, UTF-8 punctuation, stray and cut-off bytes). */
#include "config.h"
#include "route.h"
#include "runner.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Rules from a loaded config file, as newswired builds them: config.c reads the "rules"
 * section into route's options (none: the built-in rules). */
static nw_rules_t *rules_zpl(zconfig_t *config, char *err, size_t errlen)
{
    nw_rules_options_t *options;
    if (nw_config_rules(config, &options, err, errlen) != 0)
        return NULL;
    nw_rules_t *rules = nw_rules_new(options, err, errlen);
    nw_config_rules_free(&options);
    return rules;
}

static nw_article_t article(const char *headline, const char *body)
{
    nw_article_t a;
    memset(&a, 0, sizeof a);
    a.headline = (char *) headline;
    a.body = (char *) body;
    return a;
}

static bool has_topic(char topics[][NW_TOPIC_MAX + 1], size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(topics[i], name) == 0)
            return true;
    return false;
}

static const char custom_zpl[] = "rules\n"
                                 "    headline-weight = 3\n"
                                 "    telecoms\n"
                                 "        threshold = 4\n"
                                 "        words = \"5G, operator, spectrum, mobile network\"\n"
                                 "    geopolitics\n"
                                 "        threshold = 4\n"
                                 "        words = \"sanctions, trade war, U.S.\"\n"
                                 "    Space/Industry\n"
                                 "        threshold = 2\n"
                                 "        words = \"rocket\"\n"
                                 "        words = \"launch pad, rocket\"\n";

static size_t classify(nw_rules_t *rules, const char *headline, const char *body,
                       char topics[][NW_TOPIC_MAX + 1])
{
    nw_article_t a = article(headline, body);
    return nw_rules_classify(rules, &a, topics, NW_ROUTE_MAX_TOPICS);
}

TEST_IMPL(custom_rules)
{
    char err[256] = "";
    zconfig_t *config = zconfig_str_load(custom_zpl);
    CHECK(config != NULL);
    nw_rules_t *rules = rules_zpl(config, err, sizeof err);
    zconfig_destroy(&config);
    CHECK(rules != NULL);
    if (!rules) {
        fprintf(stderr, "rules: %s\n", err);
        return;
    }
    CHECK(nw_rules_count(rules) == 3);
    char t[NW_ROUTE_MAX_TOPICS][NW_TOPIC_MAX + 1];

    /* headline weight 3 alone is under the threshold; plus one body word reaches it */
    CHECK(classify(rules, "5G arrives", "Nothing else here.", t) == 0);
    CHECK(classify(rules, "5G arrives", "The operator said so.", t) == 1);
    CHECK_STR(t[0], "telecoms");
    /* a word in both headline and body scores both */
    CHECK(classify(rules, "Operator news", "An operator spoke.", t) == 1);
    /* word boundaries: inside other words nothing matches */
    CHECK(classify(rules, "45G cooperators", "45G, cooperator, spectrums, 5Gs, x5g", t) == 0);
    /* punctuation and case around words is fine */
    CHECK(classify(rules, "", "(5g) OPERATOR; Spectrum... mobile-network", t) == 1);
    /* repeats count once */
    CHECK(classify(rules, "", "5g 5g 5g 5G operator operator", t) == 0);
    /* phrases across white space runs and line breaks, not across a comma or paragraph */
    CHECK(classify(rules, "", "5g operator spectrum mobile \n\t network", t) == 1);
    CHECK(classify(rules, "", "5g operator spectrum mobile, network", t) == 0);
    CHECK(classify(rules, "", "5g operator spectrum mobile\n\nnetwork", t) == 0);
    CHECK(classify(rules, "", "5g operator spectrum mobile", t) == 0);
    /* "U.S." is the phrase u s: it matches "U.S." and "u.s", not "US" or "use" */
    CHECK(classify(rules, "Trade  War and U.S. sanctions", "", t) == 1);
    CHECK_STR(t[0], "geopolitics");
    CHECK(classify(rules, "US trade", "us use sanctions war", t) == 0);
    /* several subjects, strongest first, then config order */
    CHECK(classify(rules, "Operator hit by sanctions", "5G spectrum, U.S. trade war", t) == 2);
    CHECK_STR(t[0], "telecoms");
    CHECK_STR(t[1], "geopolitics");
    CHECK(classify(rules, "Sanctions: trade war", "5g operator spectrum mobile network", t) == 2);
    CHECK_STR(t[0], "geopolitics");
    CHECK_STR(t[1], "telecoms");
    /* repeated words keys add up; the subject name is normalized; duplicates ignored */
    CHECK(classify(rules, "", "A rocket on the launch   pad.", t) == 1);
    CHECK_STR(t[0], "space-industry");
    CHECK(classify(rules, "", "rocket rocket Rocket", t) == 0);
    /* max limits the output */
    nw_article_t a = article("Operator sanctions", "5g, trade war, rocket, launch pad");
    CHECK(nw_rules_classify(rules, &a, t, 1) == 1);
    CHECK(nw_rules_classify(rules, NULL, t, 4) == 0);
    CHECK(nw_rules_classify(NULL, &a, t, 4) == 0);
    nw_rules_unref(&rules);
    CHECK(rules == NULL);

    /* headline-weight 0: only the body counts */
    config = zconfig_str_load("rules\n    headline-weight = 0\n    x\n        threshold = 1\n"
                              "        words = \"alpha\"\n");
    rules = rules_zpl(config, err, sizeof err);
    zconfig_destroy(&config);
    CHECK(rules != NULL);
    CHECK(classify(rules, "Alpha", "beta", t) == 0);
    CHECK(classify(rules, "Beta", "alpha", t) == 1);
    nw_rules_unref(&rules);

    /* an empty rules section turns keyword routing off */
    config = zconfig_str_load("rules\n");
    CHECK(config && zconfig_locate(config, "rules"));
    rules = rules_zpl(config, err, sizeof err);
    zconfig_destroy(&config);
    CHECK(rules != NULL);
    CHECK(nw_rules_count(rules) == 0);
    CHECK(classify(rules, "5G operator sanctions", "telecoms geopolitics", t) == 0);
    a = article("5G operator", "spectrum");
    CHECK(nw_route_topics(rules, NULL, &a, t) == 1);
    CHECK_STR(t[0], "general");
    nw_rules_unref(&rules);
}

TEST_IMPL(malformed)
{
    static const struct {
        const char *zpl, *want;
    } table[] = {
        {"rules\n    telecoms\n        threshold = lots\n        words = \"5g\"\n", "telecoms"},
        {"rules\n    telecoms\n        threshold = 0\n        words = \"5g\"\n", "threshold"},
        {"rules\n    telecoms\n        threshold = 4x\n        words = \"5g\"\n", "threshold"},
        {"rules\n    telecoms\n        threshold = 4\n", "telecoms' has no words"},
        {"rules\n    telecoms\n        words = \" , ,\"\n", "telecoms' has no words"},
        {"rules\n    telecoms = 5g\n", "telecoms' has no words"},
        {"rules\n    ok\n        words = \"a\"\n    geopolitics\n        wrods = \"b\"\n",
         "geopolitics': unknown key 'wrods'"},
        {"rules\n    headline-weight = heavy\n    x\n        words = \"a\"\n", "headline-weight"},
        {"rules\n    Telecoms\n        words = \"a\"\n    telecoms\n        words = \"b\"\n",
         "listed twice"},
        {"rules\n    ___\n        words = \"a\"\n", "no usable topic name"},
        {"rules\n    long\n        words = \"a b c d e f g h i\"\n", "long"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        char err[256] = "";
        zconfig_t *config = zconfig_str_load(table[i].zpl);
        CHECK(config != NULL);
        nw_rules_t *rules = rules_zpl(config, err, sizeof err);
        zconfig_destroy(&config);
        CHECK(rules == NULL);
        CHECK(strstr(err, table[i].want) != NULL);
        if (!strstr(err, table[i].want))
            fprintf(stderr, "case %zu: reason \"%s\", want \"%s\"\n", i, err, table[i].want);
        nw_rules_unref(&rules);
    }
}

/* My own stories, written for this test in the style of the two beats. */
static const char telecoms_headline[] = "Regional operator picks two vendors for 5G core";
static const char telecoms_body[] =
    "A mid-sized mobile operator has chosen Ericsson and Nokia to supply the radio and "
    "core network for its standalone 5G rollout, after an auction left it with more "
    "spectrum than expected.\n\n"
    "The company says the new software will let it slice the network for enterprise "
    "customers, while cheaper handsets should bring more subscribers onto the service.";
static const char geo_headline[] = "Allies weigh new sanctions as trade talks stall";
static const char geo_body[] =
    "Governments on both sides of the Atlantic are preparing another round of sanctions "
    "after diplomatic efforts failed to ease tensions with Beijing.\n\n"
    "Officials in Washington said export controls on advanced chips would widen, and "
    "the foreign ministry in China promised retaliation against what it called "
    "unilateral restrictions on trade.";

/* Headline and body of the shared scraped specimen, cut by its layout: the headline
 * is the line after "N Min Read", the body runs until "About the Author". */
static bool load_specimen(char **headline, char **body)
{
    const char *shared = getenv("NW_SHARED");
    if (!shared)
        return false;
    char path[4096];
    snprintf(path, sizeof path, "%s/specimens/scraped-telecoms-article.txt", shared);
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    char *text = NULL;
    size_t cap = 0, len = 0;
    char line[65536];
    bool after_read_time = false;
    *headline = NULL;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!*headline) {
            if (strstr(line, " Min Read"))
                after_read_time = true;
            else if (after_read_time && *line)
                *headline = strdup(line);
            continue;
        }
        if (strncmp(line, "About the Author", 16) == 0)
            break;
        size_t n = strlen(line);
        if (len + n + 2 > cap) {
            cap = (len + n + 2) * 2;
            char *grown = realloc(text, cap);
            if (!grown)
                break;
            text = grown;
        }
        memcpy(text + len, line, n);
        len += n;
        text[len++] = '\n';
        text[len] = '\0';
    }
    fclose(f);
    if (!*headline || !text) {
        free(*headline);
        free(text);
        return false;
    }
    *body = text;
    return true;
}

/* The same specimen through the project's parser, as the pipeline sees it. */
static void specimen_parsed(nw_rules_t *rules)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/specimens/scraped-telecoms-article.txt", getenv("NW_SHARED"));
    FILE *f = fopen(path, "rb");
    if (!f)
        return;
    static char data[1 << 20];
    size_t len = fread(data, 1, sizeof data, f);
    fclose(f);
    nw_article_t *a = NULL;
    char err[NW_ARTICLE_ERRLEN] = "";
    CHECK(nw_article_parse(data, len, 0, &a, err, sizeof err) == 0);
    if (!a) {
        fprintf(stderr, "specimen: %s\n", err);
        return;
    }
    char t[NW_ROUTE_MAX_TOPICS][NW_TOPIC_MAX + 1];
    size_t n = nw_route_topics(rules, NULL, a, t);
    CHECK(has_topic(t, n, "telecoms"));
    CHECK(has_topic(t, n, "geopolitics"));
    nw_article_destroy(&a);
}

TEST_IMPL(default_rules)
{
    char err[256] = "";
    nw_rules_t *rules = nw_rules_new(NULL, err, sizeof err);
    CHECK(rules != NULL);
    if (!rules)
        return;
    CHECK(nw_rules_count(rules) == 2);
    /* a config without a rules section gets the defaults too */
    zconfig_t *config = zconfig_str_load("newswired\n    drop = /tmp\n");
    nw_rules_t *rules2 = rules_zpl(config, err, sizeof err);
    zconfig_destroy(&config);
    CHECK(nw_rules_count(rules2) == 2);
    nw_rules_unref(&rules2);

    char t[NW_ROUTE_MAX_TOPICS][NW_TOPIC_MAX + 1];
    size_t n = classify(rules, telecoms_headline, telecoms_body, t);
    CHECK(n == 1);
    CHECK(has_topic(t, n, "telecoms"));
    n = classify(rules, geo_headline, geo_body, t);
    CHECK(n == 1);
    CHECK(has_topic(t, n, "geopolitics"));
    CHECK(classify(rules, "Local bakery wins prize", "The sourdough was excellent.", t) == 0);

    char *headline, *body;
    if (load_specimen(&headline, &body)) {
        n = classify(rules, headline, body, t);
        CHECK(has_topic(t, n, "telecoms"));
        CHECK(has_topic(t, n, "geopolitics"));
        for (size_t i = 0; i < n; i++)
            printf("specimen topic: %s\n", t[i]);
        free(headline);
        free(body);
        specimen_parsed(rules);
    } else
        printf("specimen: skipped (NW_SHARED unset or file absent)\n");
    nw_rules_unref(&rules);
}

TEST_IMPL(route_order)
{
    char err[256] = "";
    nw_rules_t *rules = nw_rules_new(NULL, err, sizeof err);
    char t[NW_ROUTE_MAX_TOPICS][NW_TOPIC_MAX + 1];
    char *subjects[20] = {"Markets", " markets ", "Tech.AI", "!!!", "Tech . AI"};
    nw_article_t a = article(telecoms_headline, telecoms_body);
    a.subjects = subjects;
    a.subject_count = 5;

    /* subfolder wins, alone */
    CHECK(nw_route_topics(rules, "Telecoms / 5G", &a, t) == 1);
    CHECK_STR(t[0], "telecoms-5g");
    /* an unusable subfolder falls through to the article's subjects */
    CHECK(nw_route_topics(rules, "___", &a, t) == 2);
    CHECK_STR(t[0], "markets");
    CHECK_STR(t[1], "tech.ai");
    /* at most NW_ROUTE_MAX_TOPICS subjects */
    char names[20][8];
    for (int i = 0; i < 20; i++) {
        snprintf(names[i], sizeof names[i], "s%d", i);
        subjects[i] = names[i];
    }
    a.subject_count = 20;
    CHECK(nw_route_topics(rules, NULL, &a, t) == NW_ROUTE_MAX_TOPICS);
    CHECK_STR(t[NW_ROUTE_MAX_TOPICS - 1], "s15");
    /* subjects that normalize to nothing fall through to the rules */
    subjects[0] = "???";
    a.subject_count = 1;
    CHECK(nw_route_topics(rules, NULL, &a, t) == 1);
    CHECK_STR(t[0], "telecoms");
    /* nothing matches: general */
    nw_article_t plain = article("Local bakery wins prize", "Sourdough.");
    CHECK(nw_route_topics(rules, NULL, &plain, t) == 1);
    CHECK_STR(t[0], "general");
    CHECK(nw_route_topics(NULL, NULL, &a, t) == 1);
    CHECK_STR(t[0], "general");
    CHECK(nw_route_topics(NULL, NULL, NULL, t) == 1);
    CHECK_STR(t[0], "general");
    nw_rules_unref(&rules);
}

static void *classify_thread(void *arg)
{
    nw_rules_t *rules = arg; /* this thread's own reference */
    char t[NW_ROUTE_MAX_TOPICS][NW_TOPIC_MAX + 1];
    size_t ok = 0;
    for (int i = 0; i < 200; i++)
        ok += classify(rules, telecoms_headline, telecoms_body, t) == 1;
    nw_rules_unref(&rules);
    return (void *) ok;
}

TEST_IMPL(refcount)
{
    char err[256] = "";
    nw_rules_t *rules = nw_rules_new(NULL, err, sizeof err);
    nw_rules_t *copy = nw_rules_ref(rules);
    CHECK(copy == rules);
    nw_rules_unref(&rules); /* one owner left: still usable through the copy */
    CHECK(rules == NULL);
    char t[NW_ROUTE_MAX_TOPICS][NW_TOPIC_MAX + 1];
    CHECK(classify(copy, telecoms_headline, telecoms_body, t) == 1);
    nw_rules_unref(&copy);
    CHECK(nw_rules_ref(NULL) == NULL);
    nw_rules_unref(NULL);
    nw_rules_unref(&rules);

    rules = nw_rules_new(NULL, err, sizeof err);
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&threads[i], NULL, classify_thread, nw_rules_ref(rules)) == 0);
    nw_rules_unref(&rules); /* the threads may now hold the last references */
    for (int i = 0; i < 4; i++) {
        void *ok = NULL;
        pthread_join(threads[i], &ok);
        CHECK((size_t) ok == 200);
    }
}

/* A rule set too large for the classifier's stack scratch: the same answers. */
TEST_IMPL(large_rules)
{
    size_t cap = 64 * 1024, n = 0;
    char *zpl = malloc(cap);
    CHECK(zpl != NULL);
    if (!zpl)
        return;
    n += (size_t) snprintf(zpl + n, cap - n,
                           "rules\n    many\n        threshold = 2\n"
                           "        words = \"");
    for (int i = 0; i < 6000; i++)
        n += (size_t) snprintf(zpl + n, cap - n, "%sw%d", i ? ", " : "", i);
    snprintf(zpl + n, cap - n,
             "\"\n    few\n        threshold = 1\n        words = \"w17 w18\"\n");
    char err[256] = "";
    zconfig_t *config = zconfig_str_load(zpl);
    free(zpl);
    nw_rules_t *rules = rules_zpl(config, err, sizeof err);
    zconfig_destroy(&config);
    CHECK(rules != NULL);
    if (!rules) {
        fprintf(stderr, "large rules: %s\n", err);
        return;
    }
    char t[NW_ROUTE_MAX_TOPICS][NW_TOPIC_MAX + 1];
    CHECK(classify(rules, "", "w5999 and W0", t) == 1);
    CHECK_STR(t[0], "many");
    CHECK(classify(rules, "", "w6000 w-1 w0", t) == 0);
    CHECK(classify(rules, "W17", "w18", t) == 1); /* a phrase never spans fields */
    CHECK_STR(t[0], "many");
    CHECK(classify(rules, "", "w17 w18", t) == 2);
    CHECK_STR(t[0], "many");
    CHECK_STR(t[1], "few");
    nw_rules_unref(&rules);
}

/* ------------------------------------------------------------------------------
 * A reference classifier: the plain reading of route.h, every phrase tried at every
 * token, slow on purpose. nw_rules_classify must agree with it on every input.
 */

typedef struct {
    const char *p;
    size_t len;
    bool brk; /* a clause break in the gap before this token */
} ref_token_t;

#define REF_MAX_TOKENS 4096

/* Bytes of the separator at s[i], 0 for a word byte (route.h's list of separators). */
static size_t ref_sep_len(const unsigned char *s, size_t n, size_t i, bool *brk)
{
    unsigned char c = s[i];
    if (c < 0x80) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
            return 0;
        if (c && strchr(",;:!?()[]{}<>\"", c))
            *brk = true;
        return 1;
    }
    if (c == 0xC2 && i + 1 < n && (s[i + 1] == 0xA0 || s[i + 1] == 0xB7))
        return 2; /* nbsp, middle dot */
    if (c == 0xC2 && i + 1 < n && (s[i + 1] == 0xAB || s[i + 1] == 0xBB)) {
        *brk = true; /* guillemets */
        return 2;
    }
    if (c == 0xE2 && i + 2 < n && (s[i + 1] == 0x80 || s[i + 1] == 0x81)) {
        if (s[i + 1] == 0x80 && (s[i + 2] == 0x9C || s[i + 2] == 0x9D))
            *brk = true; /* curly double quotes */
        return 3;        /* U+2000..U+207F */
    }
    if (c == 0xE3 && i + 2 < n && s[i + 1] == 0x80 && s[i + 2] <= 0x82) {
        *brk = s[i + 2] != 0x80 || *brk; /* ideographic comma, stop */
        return 3;
    }
    if (c == 0xEF && i + 2 < n && s[i + 1] == 0xBF && s[i + 2] == 0xBD)
        return 3; /* U+FFFD */
    return 0;
}

static size_t ref_tokenize(const char *text, size_t n, ref_token_t *out)
{
    const unsigned char *s = (const unsigned char *) text;
    size_t i = 0, count = 0;
    while (count < REF_MAX_TOKENS) {
        bool brk = false, ignored = false;
        int newlines = 0;
        size_t k;
        while (i < n && (k = ref_sep_len(s, n, i, &brk)) > 0) {
            if (s[i] == '\n' && ++newlines >= 2)
                brk = true;
            i += k;
        }
        if (i >= n)
            break;
        size_t start = i;
        while (i < n && ref_sep_len(s, n, i, &ignored) == 0)
            i++;
        out[count++] = (ref_token_t) {text + start, i - start, brk};
    }
    return count;
}

static bool ref_token_eq(const ref_token_t *a, const ref_token_t *b)
{
    if (a->len != b->len)
        return false;
    for (size_t i = 0; i < a->len; i++) {
        unsigned char x = (unsigned char) a->p[i], y = (unsigned char) b->p[i];
        if (x >= 'A' && x <= 'Z')
            x += 32;
        if (y >= 'A' && y <= 'Z')
            y += 32;
        if (x != y)
            return false;
    }
    return true;
}

static bool ref_phrase_in(const ref_token_t *phrase, size_t k, const ref_token_t *text, size_t n)
{
    for (size_t j = 0; j + k <= n; j++) {
        size_t m = 0;
        while (m < k && ref_token_eq(&phrase[m], &text[j + m]) && (m == 0 || !text[j + m].brk))
            m++;
        if (m == k)
            return true;
    }
    return false;
}

typedef struct {
    const char *name; /* already a topic name */
    long threshold;
    const char *words;
} ref_subject_t;

static ref_token_t ref_field_tokens[3][REF_MAX_TOKENS];

static size_t ref_classify(const ref_subject_t *subjects, size_t count, long headline_weight,
                           const nw_article_t *a, char topics[][NW_TOPIC_MAX + 1])
{
    const char *fields[3] = {a->headline, a->description, a->body};
    size_t field_n[3] = {0, 0, 0};
    for (int f = 0; f < 3; f++)
        if (fields[f])
            field_n[f] = ref_tokenize(fields[f], strlen(fields[f]), ref_field_tokens[f]);
    long score[64] = {0};
    size_t order[64], chosen = 0;
    for (size_t s = 0; s < count; s++) {
        ref_token_t seen[64][8];
        size_t seen_k[64], nseen = 0;
        for (const char *w = subjects[s].words; *w;) {
            size_t len = strcspn(w, ",");
            ref_token_t phrase[8];
            size_t k = ref_tokenize(w, len, phrase);
            w += len + (w[len] == ',');
            bool dup = k == 0; /* an empty item, or one listed before for this subject */
            for (size_t d = 0; d < nseen && !dup; d++) {
                size_t m = 0;
                while (m < k && seen_k[d] == k && ref_token_eq(&seen[d][m], &phrase[m]))
                    m++;
                dup = seen_k[d] == k && m == k;
            }
            if (dup)
                continue;
            memcpy(seen[nseen], phrase, k * sizeof *phrase);
            seen_k[nseen++] = k;
            if (ref_phrase_in(phrase, k, ref_field_tokens[0], field_n[0]))
                score[s] += headline_weight;
            if (ref_phrase_in(phrase, k, ref_field_tokens[1], field_n[1]) ||
                ref_phrase_in(phrase, k, ref_field_tokens[2], field_n[2]))
                score[s] += 1;
        }
        if (score[s] < subjects[s].threshold)
            continue;
        size_t j = chosen++;
        while (j > 0 && score[order[j - 1]] < score[s]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = s;
    }
    for (size_t i = 0; i < chosen; i++)
        snprintf(topics[i], NW_TOPIC_MAX + 1, "%s", subjects[order[i]].name);
    return chosen;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint32_t rng(uint32_t below)
{
    rng_state ^= rng_state << 13; /* xorshift64: the same texts on every run */
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t) (rng_state >> 32) % below;
}

#define LONG_WORD "qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"

/* A random text of rule words (in any case), near misses and separators of every kind,
 * with now and then a random byte or a UTF-8 separator cut off by the end. */
static void random_text(char *out, size_t cap)
{
    static const char *const words[] = {
        "5g",
        "5G",
        "45g",
        "5gs",
        "operator",
        "OPERATOR",
        "Operators",
        "cooperator",
        "mobile",
        "Mobile",
        "network",
        "networks",
        "NETWORK",
        "u",
        "U",
        "s",
        "us",
        "use",
        "trade",
        "Trade",
        "war",
        "wars",
        "wi",
        "fi",
        "Fi",
        "caf\xc3\xa9",
        "CAF\xc3\xa9",
        "CAF\xc3\x89",
        "\xc3\xa9t\xc3\xa9",
        "\xd0\xbc\xd0\xb8\xd1\x80",
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
        "g",
        "h",
        "x",
        "y",
        "the",
        "launch",
        "pad",
        "rocket",
        "x\xe2\x80y",
        "\xe3\x80y",
        "z\xc2",
        "q\xe2\x80",
        "\xef\xbf",
        "\xe2",
        "\xc2\xa9",
        /* 8-byte boundaries of the word loads, and runs longer than a 64-byte block */
        "abcdefg",
        "abcdefgh",
        "ABCDEFGH",
        "abcdefghi",
        "abcdefgH9",
        "abcdefghijklmnop",
        "AbcdefghijklmnoP",
        "abcdefghijklmnopq",
        "abcdefghijklmnopqr",
        "abcdefgh\xc3\xa9",
        "\xc3\xa9"
        "abcdefgh",
        "abcdefg\xc3\xa9",
        "Telecommunications",
        "telecommunication",
        LONG_WORD,
        LONG_WORD "s",
        "q" LONG_WORD,
    };
    static const char *const seps[] = {
        " ",
        " ",
        " ",
        "  ",
        "\t",
        "\n",
        "\n\n",
        "\n \n",
        "\r\n",
        ",",
        ", ",
        ";",
        ":",
        "!",
        "?",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "<",
        ">",
        "\"",
        "'",
        "-",
        ".",
        ". ",
        "/",
        "&",
        "\xc2\xa0",
        "\xc2\xb7",
        "\xc2\xab",
        "\xc2\xbb",
        "\xe2\x80\x94",
        "\xe2\x80\x9c",
        "\xe2\x80\x9d",
        "\xe2\x80\x99",
        "\xe2\x81\x84",
        "\xe3\x80\x80",
        "\xe3\x80\x81",
        "\xe3\x80\x82",
        "\xe3\x80\x83",
        "\xef\xbf\xbd",
        "\xef\xbf\xbe",
    };
    static const char *const tails[] = {"",         "",         "\xc2",     "\xe2",
                                        "\xe2\x80", "\xe3\x80", "\xef\xbf", "\xe2\x80\x94"};
    size_t n = 0, pieces = rng(60);
    for (size_t i = 0; i < pieces && n + 16 < cap; i++) {
        const char *piece;
        char byte[2] = {(char) (1 + rng(255)), '\0'};
        uint32_t r = rng(20);
        if (r == 0)
            piece = byte;
        else if (r < 10)
            piece = words[rng(sizeof words / sizeof words[0])];
        else
            piece = seps[rng(sizeof seps / sizeof seps[0])];
        n += (size_t) snprintf(out + n, cap - n, "%s", piece);
        if (n >= cap) /* cut short: a long piece near the end */
            n = cap - 1;
    }
    snprintf(out + n, cap - n, "%s", tails[rng(sizeof tails / sizeof tails[0])]);
}

TEST_IMPL(against_reference)
{
    static const ref_subject_t subjects[] = {
        {"telecoms", 4, "5G, operator, operators, mobile network, Mobile Networks, wi-fi"},
        {"geo", 2, "U.S., trade war, us-china, trade"},
        {"words", 1, "a b c d e f g h, a b, b c, a"},
        {"unicode", 1, "caf\xc3\xa9, \xc3\xa9t\xc3\xa9, \xd0\xbc\xd0\xb8\xd1\x80, x\xe2\x80y"},
        {"overlap", 3, "mobile, network, operator, OPERATOR, mobile network, 5g, , u s"},
        {"one", 1, "rocket"},
        {"phrase", 1, "launch pad, launch-pad rocket, pad x"},
        {"long", 2,
         "abcdefgh, abcdefghi, abcdefghijklmnop x, abcdefghijklmnopq, "
         "telecommunications, abcdefgh\xc3\xa9, abcdefg\xc3\xa9, " LONG_WORD},
    };
    const size_t count = sizeof subjects / sizeof subjects[0];
    static const long weights[] = {3, 1, 0};
    size_t mismatches = 0, topics_seen = 0;
    for (size_t w = 0; w < sizeof weights / sizeof weights[0]; w++) {
        char zpl[4096];
        size_t n = (size_t) snprintf(zpl, sizeof zpl, "rules\n    headline-weight = %ld\n",
                                     weights[w]);
        for (size_t s = 0; s < count; s++)
            n += (size_t) snprintf(zpl + n, sizeof zpl - n,
                                   "    %s\n        threshold = %ld\n"
                                   "        words = \"%s\"\n",
                                   subjects[s].name, subjects[s].threshold, subjects[s].words);
        char err[256] = "";
        zconfig_t *config = zconfig_str_load(zpl);
        nw_rules_t *rules = rules_zpl(config, err, sizeof err);
        zconfig_destroy(&config);
        CHECK(rules != NULL);
        if (!rules) {
            fprintf(stderr, "reference rules: %s\n", err);
            return;
        }
        for (int i = 0; i < 4000; i++) {
            char headline[512], description[512], body[1024];
            random_text(headline, sizeof headline);
            random_text(description, sizeof description);
            random_text(body, sizeof body);
            nw_article_t a = article(headline, body);
            a.description = rng(2) ? description : NULL;
            char got[16][NW_TOPIC_MAX + 1], want[16][NW_TOPIC_MAX + 1];
            size_t ngot = nw_rules_classify(rules, &a, got, 16);
            size_t nwant = ref_classify(subjects, count, weights[w], &a, want);
            bool same = ngot == nwant;
            for (size_t t = 0; same && t < ngot; t++)
                same = strcmp(got[t], want[t]) == 0;
            topics_seen += nwant;
            if (!same && mismatches++ < 3)
                fprintf(stderr,
                        "reference: weight %ld, headline \"%s\", body \"%s\": "
                        "%zu topics, want %zu\n",
                        weights[w], headline, body, ngot, nwant);
        }
        nw_rules_unref(&rules);
    }
    CHECK(mismatches == 0);
    CHECK(topics_seen > 10000); /* the texts do match, so the comparison means something */
}

/* IPTC Media Topics: routing from a code (the table first, then a rule naming it), the
 * code and scheme a topic carries, the built-in rules' codes, and a table that does not
 * load. */
TEST_IMPL(media_topics)
{
    const char *proto = getenv("NW_PROTO");
    char path[1024], zpl[2048], err[256] = "";
    snprintf(path, sizeof path, "%s/../daemon/medtop.json", proto ? proto : "proto");
    snprintf(zpl, sizeof zpl,
             "rules\n"
             "    media-topics = \"%s\"\n"
             "    strikes\n"
             "        medtop = \"medtop:20000763\"\n"
             "        words = \"strike, walkout\"\n"
             "    telecoms\n"
             "        medtop = \"medtop:13000000\"\n"
             "        words = \"5g, spectrum, operator\"\n"
             "    harbours\n"
             "        words = \"quay, crane\"\n",
             path);
    zconfig_t *config = zconfig_str_load(zpl);
    nw_rules_t *rules = rules_zpl(config, err, sizeof err);
    zconfig_destroy(&config);
    CHECK(rules != NULL);
    if (!rules) {
        fprintf(stderr, "rules: %s\n", err);
        return;
    }
    static const char medtop[] = "http://cv.iptc.org/newscodes/mediatopic/";
    char *names[] = {"economy, business and finance", "strike", "medtop:13000000", "Harbours",
                     "subj:04015000"};
    char *codes[] = {"medtop:04000000", "medtop:20000763", "medtop:13000000", NULL,
                     "subj:04015000"};
    nw_article_t a = article("Cranes", "Body.");
    a.subjects = names;
    a.subject_codes = codes;
    a.subject_count = 5;
    char t[NW_ROUTE_MAX_TOPICS][NW_TOPIC_MAX + 1];
    size_t n = nw_route_topics(rules, NULL, &a, t);
    CHECK(n == 5);
    /* the table's topic; the rule that names the code; the table again (it wins over
     * the telecoms rule for a top-level code); the name; a code in neither: the name */
    CHECK_STR(t[0], "economy-business-finance");
    CHECK_STR(t[1], "strikes");
    CHECK_STR(t[2], "science-technology");
    CHECK_STR(t[3], "harbours");
    CHECK_STR(t[4], "subj-04015000");
    const char *scheme = NULL;
    CHECK_STR(nw_route_code(rules, &a, "economy-business-finance", &scheme), "medtop:04000000");
    CHECK_STR(scheme, medtop);
    CHECK_STR(nw_route_code(rules, &a, "strikes", &scheme), "medtop:20000763");
    CHECK_STR(scheme, medtop);
    /* a rule without medtop gives its topic no code */
    CHECK(nw_route_code(rules, &a, "harbours", &scheme) == NULL && scheme == NULL);
    CHECK_STR(nw_route_code(rules, &a, "subj-04015000", &scheme), "subj:04015000");
    CHECK_STR(scheme, "http://cv.iptc.org/newscodes/subjectcode/");
    /* a topic from the keyword rules carries its rule's code; one from the table its own */
    nw_article_t plain = article("Operator buys 5G spectrum", "The operator paid.");
    CHECK(nw_route_topics(rules, NULL, &plain, t) == 1);
    CHECK_STR(t[0], "telecoms");
    CHECK_STR(nw_route_code(rules, &plain, "telecoms", &scheme), "medtop:13000000");
    CHECK_STR(nw_route_code(rules, &plain, "weather", &scheme), "medtop:17000000");
    CHECK_STR(nw_route_code(rules, &plain, "politics", &scheme), "medtop:11000000");
    CHECK(nw_route_code(rules, &plain, "general", &scheme) == NULL);
    nw_rules_unref(&rules);

    /* The built-in rules name their Media Topics; the table is found beside bin/. */
    rules = nw_rules_new(NULL, err, sizeof err);
    CHECK(rules != NULL);
    CHECK_STR(nw_route_code(rules, &plain, "telecoms", &scheme), "medtop:13000000");
    CHECK_STR(scheme, medtop);
    CHECK_STR(nw_route_code(rules, &plain, "geopolitics", &scheme), "medtop:11000000");
    nw_rules_unref(&rules);

    /* A table named but missing, one that is not a table, a code that is not one. */
    static const char *const bad[] = {
        "rules\n    media-topics = \"/nonexistent/medtop.json\"\n",
        "rules\n    x\n        words = \"a\"\n        medtop = \"04000000\"\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        config = zconfig_str_load(bad[i]);
        err[0] = '\0';
        rules = rules_zpl(config, err, sizeof err);
        zconfig_destroy(&config);
        CHECK(rules == NULL && strncmp(err, "rules: ", 7) == 0);
        printf("bad media topics %zu: %s\n", i, err);
        nw_rules_unref(&rules);
    }
    char tmp[] = "/tmp/nw-medtop-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd >= 0) {
        const char *doc = "{\"topics\": [{\"code\": \"medtop:1\", \"topic\": \"a\"},"
                          " {\"code\": \"medtop:1\", \"topic\": \"b\"}], \"schemes\": {}}";
        CHECK(write(fd, doc, strlen(doc)) == (ssize_t) strlen(doc));
        close(fd);
        snprintf(zpl, sizeof zpl, "rules\n    media-topics = \"%s\"\n", tmp);
        config = zconfig_str_load(zpl);
        rules = rules_zpl(config, err, sizeof err);
        zconfig_destroy(&config);
        CHECK(rules == NULL && strstr(err, "listed twice"));
        nw_rules_unref(&rules);
        unlink(tmp);
    }
}
