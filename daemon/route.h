/*
 * route: decides the topics an article goes out on.
 *
 * Order (first that yields anything wins): the subfolder the file was dropped in; the
 * article's own subjects (a subject with a code, such as an IPTC Media Topic
 * "medtop:04000000", goes to the topic the Media Topics table gives that code, else to
 * the rule that names it, else by its name); the keyword rules of the config;
 * otherwise "general".
 * Rules are immutable once built and reference-counted, so worker threads classify with
 * a snapshot while SIGHUP swaps in a new set on the loop thread.
 *
 * Rules are given as a plain nw_rules_options_t; config.c fills it from the top-level
 * "rules" section of the config file (CZMQ ZPL):
 *
 *     rules
 *         headline-weight = 3          # optional: points for a word in the headline
 *         telecoms                     # subject, normalized like a topic
 *             threshold = 4            # optional (default 4): points needed, 1..1000000
 *             words = "5g, spectrum, mobile network"
 *             words = "operator, operators"   # repeatable; lists add up
 *         geopolitics
 *             words = "sanctions, trade war"
 *             medtop = "medtop:11000000"   # optional: its IPTC Media Topic code
 *         media-topics = "/path/medtop.json"   # optional: the Media Topics table
 *
 * The Media Topics table (medtop.h) is data: by default share/newswire/medtop.json as
 * installed, used when it is there; named here, it must load. It gives each code its
 * topic (routing from a code) and each topic its code (the subject code on the wire).
 * Words are comma-separated, matched case-insensitively on whole words: "5g" does not
 * match "45G", "operator" does not match "cooperator"; plural forms must be listed.
 * Words are split the same way in rules and text (runs of ASCII letters and digits and
 * non-ASCII letters; punctuation separates), so "U.S." and "us-china" work as phrases.
 * A phrase (at most 8 words, like "trade war") matches its words separated by spaces,
 * line breaks, hyphens, dots or apostrophes, but not across , ; : ! ? brackets, double
 * quotes or a blank line.
 * Each listed word scores once per field, however often it occurs: headline-weight
 * points when in the headline, 1 point when in the standfirst or body. A subject is
 * chosen when its points reach its threshold; an article may get several subjects,
 * strongest first. An empty "rules" section disables keyword routing; no "rules"
 * section (or a NULL config) gives the built-in telecoms and geopolitics rules, whose
 * Media Topics are medtop:13000000 (science and technology) and medtop:11000000
 * (politics).
 */
#ifndef NW_ROUTE_H
#define NW_ROUTE_H

#include "article.h"
#include "nw_topic.h" /* NW_TOPIC_MAX, nw_topic_normalize: the topic grammar */
#include <stdbool.h>
#include <stddef.h>

#define NW_ROUTE_MAX_TOPICS 16
#define NW_RULES_DEFAULT_THRESHOLD 4
#define NW_RULES_MAX_THRESHOLD 1000000
#define NW_RULES_DEFAULT_HEADLINE_WEIGHT 3
#define NW_RULES_MAX_HEADLINE_WEIGHT 100

typedef struct nw_rules nw_rules_t;

/* One subject's rule. Strings are borrowed for the call to nw_rules_new only. */
typedef struct {
    const char *subject;      /* normalized like a topic */
    long threshold;           /* points needed, 1..NW_RULES_MAX_THRESHOLD */
    const char *const *words; /* word_lists comma-separated lists; they add up */
    size_t word_lists;
    const char *medtop; /* its IPTC Media Topic code, or NULL */
} nw_rule_t;

typedef struct {
    long headline_weight;     /* 0..NW_RULES_MAX_HEADLINE_WEIGHT */
    const char *media_topics; /* the table's path (must load), or NULL: the
                                 installed one when it is there */
    const nw_rule_t *rules;   /* count of them; none: keyword routing off */
    size_t count;
} nw_rules_options_t;

/* Build rules from options (NULL: the built-in rules for telecoms and geopolitics).
 * The one constructor taking its options by pointer: NULL is how the built-in rules are
 * asked for (a zeroed struct means keyword routing off). Read during the call only; a
 * reload builds new rules (nw_pipeline_set_rules).
 * NULL on a bad rule (a subject without words or listed twice, a number out of range, a
 * code that is not one, a table that does not load), reason in errbuf. */
nw_rules_t *nw_rules_new(const nw_rules_options_t *options, char *errbuf, size_t errlen);
nw_rules_t *nw_rules_ref(nw_rules_t *self);    /* another owner; thread-safe */
void nw_rules_unref(nw_rules_t **self_p);      /* last owner frees; thread-safe */
size_t nw_rules_count(const nw_rules_t *self); /* subjects with rules */

/* Topics for an article. subfolder is the drop subfolder's name or NULL. Fills topics
 * (each NW_TOPIC_MAX+1 bytes) with up to NW_ROUTE_MAX_TOPICS distinct names, returns
 * how many (always >= 1). */
size_t nw_route_topics(const nw_rules_t *rules, const char *subfolder,
                       const nw_article_t *article, char topics[][NW_TOPIC_MAX + 1]);

/* The code a published topic carries in the article's subject list, or NULL: the
 * article's own code that routed to it, else its rule's medtop, else the table's code
 * for the topic. *scheme gets the code's vocabulary URI from the table, or NULL. */
const char *nw_route_code(const nw_rules_t *rules, const nw_article_t *article, const char *topic,
                          const char **scheme);

/* Keyword score of an article for each subject rule, for tests and logs: the subjects
 * at or above their threshold are written like nw_route_topics. */
size_t nw_rules_classify(const nw_rules_t *rules, const nw_article_t *article,
                         char topics[][NW_TOPIC_MAX + 1], size_t max);

#endif
