/*
 * route: topic names, keyword rules and the routing order (see route.h).
 *
 * Config enters through nw_rules_new, which splits every listed word or phrase into
 * lowercase tokens once and sorts the phrases by their first token. Articles enter
 * through nw_rules_classify, which walks each field's tokens once and binary-searches
 * each token among those first tokens, so the cost is O(text * log words) with no copy
 * of the text. The sorted array is only read after the build; it is not a zhashx
 * because zhashx_lookup writes the table (cursor, even a rehash), so concurrent readers
 * on worker threads would race.
 */
#include "route.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RULE_MAX_TOKENS 8
#define RULE_DEFAULT_THRESHOLD 4
#define RULE_DEFAULT_HEADLINE_WEIGHT 3
#define RULE_MAX_THRESHOLD 1000000
#define RULE_MAX_HEADLINE_WEIGHT 100

enum { HIT_HEADLINE = 1, HIT_BODY = 2 };

typedef struct {
    char *text;         /* lowercase tokens joined by one space */
    size_t first_len;   /* length of the first token in text */
    size_t subject;     /* index into subjects */
} phrase_t;

typedef struct {
    char name[NW_TOPIC_MAX + 1];
    long threshold;
} subject_t;

struct nw_rules {
    atomic_size_t refs;
    long headline_weight;
    subject_t *subjects;
    size_t subject_count;
    phrase_t *phrases;  /* sorted by first token */
    size_t phrase_count;
    size_t phrase_cap;
};

/* Built-in rules, used when the config has no "rules" section. */
static const struct {
    const char *name;
    const char *words;
} default_rules[] = {
    {"telecoms",
     "telecom, telecoms, telecommunications, telco, telcos, operator, operators, "
     "network operator, mobile operator, mobile operators, carrier, carriers, mobile, "
     "mobile network, mobile networks, network, networks, networking, 5g, 4g, 6g, lte, "
     "spectrum, broadband, fibre, fiber, wireless, wi-fi, handset, handsets, smartphone, "
     "smartphones, phone, phones, huawei, ericsson, nokia, zte, qualcomm, vodafone, "
     "telefonica, deutsche telekom, verizon, t-mobile, vendor, vendors, software, "
     "open ran, radio access network, base station, base stations, core network, "
     "subscriber, subscribers, roaming, satellite, cell tower, cell towers, 3gpp, gsma, "
     "ofcom, connectivity, data centre, data center, data centres, data centers"},
    {"geopolitics",
     "sanction, sanctions, sanctioned, embargo, embargoes, export control, "
     "export controls, entity list, blacklist, blacklisted, trade war, trade restriction, "
     "trade restrictions, restrictions, tariff, tariffs, ban, bans, banned, banning, "
     "government, governments, diplomacy, diplomatic, diplomat, diplomats, ambassador, "
     "geopolitics, geopolitical, national security, foreign policy, foreign minister, "
     "foreign ministry, state department, white house, kremlin, us-china, u.s., "
     "united states, washington, beijing, china, chinese, russia, russian, taiwan, "
     "ukraine, european union, nato, g7, united nations, treaty, summit, bilateral, "
     "unilateral, retaliation, retaliatory, decoupling, sovereignty, territory, "
     "tensions, superpower, cold war, belt and road, president, prime minister, "
     "minister, ministers, parliament, congress, senate, election, elections"},
};

/* ------------------------------------------------------------------------------
 * Tokens: maximal runs of word bytes, with a flag for a clause break before them.
 */

typedef struct {
    const unsigned char *s;
    size_t n;
    size_t pos;
} tokenizer_t;

typedef struct {
    const char *p;
    size_t len;
    bool brk;           /* the gap before this token holds a clause break */
} token_t;

static bool is_alnum_ascii(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static unsigned char lower_ascii(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char) (c + 32) : c;
}

/* Bytes of the separator starting at s[i], or 0 when s[i] belongs to a word. Non-ASCII
 * bytes are word bytes (letters of other scripts), except the punctuation and spaces
 * that editors paste: U+00A0, « » ·, U+2000..U+206F (dashes, curly quotes, ellipsis),
 * U+3000..U+3002 and U+FFFD. *brk is set for characters that end a phrase. */
static size_t sep_len(const unsigned char *s, size_t n, size_t i, bool *brk)
{
    unsigned char c = s[i];
    if (c < 0x80) {
        if (is_alnum_ascii(c))
            return 0;
        switch (c) {   /* a jump table: this runs once per byte of every article */
        case ',': case ';': case ':': case '!': case '?': case '(': case ')': case '[':
        case ']': case '{': case '}': case '<': case '>': case '"':
            *brk = true;
            break;
        default:
            break;
        }
        return 1;
    }
    if (c == 0xC2 && i + 1 < n) {
        unsigned char d = s[i + 1];
        if (d == 0xA0 || d == 0xB7)
            return 2;
        if (d == 0xAB || d == 0xBB) {
            *brk = true;
            return 2;
        }
    }
    if (c == 0xE2 && i + 2 < n && (s[i + 1] == 0x80 || s[i + 1] == 0x81)) {
        if (s[i + 1] == 0x80 && (s[i + 2] == 0x9C || s[i + 2] == 0x9D))
            *brk = true;
        return 3;
    }
    if (c == 0xE3 && i + 2 < n && s[i + 1] == 0x80 && s[i + 2] <= 0x82) {
        if (s[i + 2] != 0x80)
            *brk = true;
        return 3;
    }
    if (c == 0xEF && i + 2 < n && s[i + 1] == 0xBF && s[i + 2] == 0xBD)
        return 3;
    return 0;
}

static bool next_token(tokenizer_t *tz, token_t *tok)
{
    bool brk = false;
    int newlines = 0;
    size_t k;
    while (tz->pos < tz->n && (k = sep_len(tz->s, tz->n, tz->pos, &brk)) > 0) {
        if (tz->s[tz->pos] == '\n' && ++newlines >= 2)
            brk = true;
        tz->pos += k;
    }
    if (tz->pos >= tz->n)
        return false;
    size_t start = tz->pos;
    bool ignored = false;
    while (tz->pos < tz->n && sep_len(tz->s, tz->n, tz->pos, &ignored) == 0)
        tz->pos++;
    tok->p = (const char *) tz->s + start;
    tok->len = tz->pos - start;
    tok->brk = brk;
    return true;
}

/* Order of a text token (any case) against a lowercase rule token. */
static int token_cmp(const char *a, size_t alen, const char *lower, size_t llen)
{
    size_t n = alen < llen ? alen : llen;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = lower_ascii((unsigned char) a[i]);
        unsigned char y = (unsigned char) lower[i];
        if (x != y)
            return x < y ? -1 : 1;
    }
    return alen < llen ? -1 : alen > llen ? 1 : 0;
}

/* ------------------------------------------------------------------------------
 * Topic names
 */

int nw_topic_normalize(const char *subject, char *out, size_t outlen)
{
    if (!subject || !out || outlen == 0)
        return -1;
    size_t o = 0;
    bool level_has = false;     /* the current level has a character already */
    bool need_dash = false;     /* a run of other characters since the last one */
    for (const unsigned char *p = (const unsigned char *) subject; *p; p++) {
        if (*p == '.') {
            level_has = false;
            need_dash = false;
        }
        else if (is_alnum_ascii(*p)) {
            char sep = 0;
            if (!level_has && o > 0)
                sep = '.';
            else if (need_dash)
                sep = '-';
            size_t need = o + (sep ? 2 : 1);
            if (need > NW_TOPIC_MAX || need >= outlen)
                return -1;
            if (sep)
                out[o++] = sep;
            out[o++] = (char) lower_ascii(*p);
            level_has = true;
            need_dash = false;
        }
        else
            need_dash = level_has;
    }
    if (o == 0)
        return -1;
    out[o] = '\0';
    return 0;
}

/* ------------------------------------------------------------------------------
 * Building rules
 */

static int add_subject(nw_rules_t *self, const char *name, char *errbuf, size_t errlen)
{
    char topic[NW_TOPIC_MAX + 1];
    if (nw_topic_normalize(name, topic, sizeof topic) != 0) {
        snprintf(errbuf, errlen, "rules: subject '%s' has no usable topic name", name);
        return -1;
    }
    for (size_t i = 0; i < self->subject_count; i++)
        if (strcmp(self->subjects[i].name, topic) == 0) {
            snprintf(errbuf, errlen, "rules: subject '%s' is listed twice", name);
            return -1;
        }
    subject_t *grown = realloc(self->subjects, (self->subject_count + 1) * sizeof *grown);
    if (!grown) {
        snprintf(errbuf, errlen, "rules: out of memory");
        return -1;
    }
    self->subjects = grown;
    subject_t *subject = &self->subjects[self->subject_count];
    memcpy(subject->name, topic, strlen(topic) + 1);
    subject->threshold = RULE_DEFAULT_THRESHOLD;
    return (int) self->subject_count++;
}

static int add_phrase(nw_rules_t *self, size_t subject, const char *item, size_t len,
                      char *errbuf, size_t errlen)
{
    tokenizer_t tz = {(const unsigned char *) item, len, 0};
    token_t tok;
    size_t ntok = 0, first_len = 0;
    char *text = malloc(len + 1);
    if (!text)
        goto oom;
    size_t o = 0;
    while (next_token(&tz, &tok)) {
        if (++ntok > RULE_MAX_TOKENS) {
            snprintf(errbuf, errlen, "rules: subject '%s': '%.*s' has more than %d words",
                     self->subjects[subject].name, (int) len, item, RULE_MAX_TOKENS);
            free(text);
            return -1;
        }
        if (o > 0)
            text[o++] = ' ';
        for (size_t i = 0; i < tok.len; i++)
            text[o++] = (char) lower_ascii((unsigned char) tok.p[i]);
        if (ntok == 1)
            first_len = o;
    }
    if (ntok == 0) {            /* "a,,b" or a stray comma: nothing to match */
        free(text);
        return 0;
    }
    text[o] = '\0';
    if (self->phrase_count == self->phrase_cap) {
        size_t cap = self->phrase_cap ? self->phrase_cap * 2 : 64;
        phrase_t *grown = realloc(self->phrases, cap * sizeof *grown);
        if (!grown)
            goto oom;
        self->phrases = grown;
        self->phrase_cap = cap;
    }
    self->phrases[self->phrase_count++] = (phrase_t) {text, first_len, subject};
    return 0;
oom:
    free(text);
    snprintf(errbuf, errlen, "rules: out of memory");
    return -1;
}

static int add_words(nw_rules_t *self, size_t subject, const char *list,
                     char *errbuf, size_t errlen)
{
    while (*list) {
        size_t len = strcspn(list, ",");
        if (add_phrase(self, subject, list, len, errbuf, errlen) != 0)
            return -1;
        list += len;
        if (*list == ',')
            list++;
    }
    return 0;
}

static size_t subject_phrases(const nw_rules_t *self, size_t subject)
{
    size_t n = 0;
    for (size_t i = 0; i < self->phrase_count; i++)
        n += self->phrases[i].subject == subject;
    return n;
}

/* A whole decimal number in [lo, hi]; false for anything else. */
static bool parse_long(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static int load_section(nw_rules_t *self, zconfig_t *section, char *errbuf, size_t errlen)
{
    for (zconfig_t *child = zconfig_child(section); child; child = zconfig_next(child)) {
        const char *name = zconfig_name(child);
        const char *value = zconfig_value(child);
        if (streq(name, "headline-weight")) {
            if (!parse_long(value, 0, RULE_MAX_HEADLINE_WEIGHT, &self->headline_weight)) {
                snprintf(errbuf, errlen, "rules: headline-weight '%s' is not a number "
                         "from 0 to %d", value ? value : "", RULE_MAX_HEADLINE_WEIGHT);
                return -1;
            }
            continue;
        }
        int subject = add_subject(self, name, errbuf, errlen);
        if (subject < 0)
            return -1;
        for (zconfig_t *key = zconfig_child(child); key; key = zconfig_next(key)) {
            const char *kname = zconfig_name(key);
            const char *kvalue = zconfig_value(key);
            if (streq(kname, "threshold")) {
                if (!parse_long(kvalue, 1, RULE_MAX_THRESHOLD,
                                &self->subjects[subject].threshold)) {
                    snprintf(errbuf, errlen, "rules: subject '%s': threshold '%s' is not a "
                             "number from 1 to %d", name, kvalue ? kvalue : "",
                             RULE_MAX_THRESHOLD);
                    return -1;
                }
            }
            else if (streq(kname, "words")) {
                if (kvalue && add_words(self, (size_t) subject, kvalue, errbuf, errlen) != 0)
                    return -1;
            }
            else {
                snprintf(errbuf, errlen, "rules: subject '%s': unknown key '%s'", name, kname);
                return -1;
            }
        }
        if (subject_phrases(self, (size_t) subject) == 0) {
            snprintf(errbuf, errlen, "rules: subject '%s' has no words", name);
            return -1;
        }
    }
    return 0;
}

static int phrase_order(const void *a, const void *b)
{
    const phrase_t *x = a, *y = b;
    int c = token_cmp(x->text, x->first_len, y->text, y->first_len);
    if (c == 0)
        c = strcmp(x->text, y->text);
    if (c == 0)
        c = x->subject < y->subject ? -1 : x->subject > y->subject;
    return c;
}

nw_rules_t *nw_rules_new(zconfig_t *config, char *errbuf, size_t errlen)
{
    nw_rules_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(errbuf, errlen, "rules: out of memory");
        return NULL;
    }
    atomic_init(&self->refs, 1);
    self->headline_weight = RULE_DEFAULT_HEADLINE_WEIGHT;
    zconfig_t *section = config ? zconfig_locate(config, "rules") : NULL;
    if (section) {
        if (load_section(self, section, errbuf, errlen) != 0)
            goto fail;
    }
    else {
        for (size_t i = 0; i < sizeof default_rules / sizeof default_rules[0]; i++) {
            int subject = add_subject(self, default_rules[i].name, errbuf, errlen);
            if (subject < 0 ||
                add_words(self, (size_t) subject, default_rules[i].words, errbuf, errlen) != 0)
                goto fail;
        }
    }
    if (self->phrase_count)
        qsort(self->phrases, self->phrase_count, sizeof *self->phrases, phrase_order);
    /* A word listed twice for one subject would score twice. */
    size_t kept = 0;
    for (size_t i = 0; i < self->phrase_count; i++) {
        phrase_t *p = &self->phrases[i];
        if (kept > 0 && self->phrases[kept - 1].subject == p->subject &&
            strcmp(self->phrases[kept - 1].text, p->text) == 0) {
            free(p->text);
            continue;
        }
        self->phrases[kept++] = *p;
    }
    self->phrase_count = kept;
    return self;
fail:
    nw_rules_unref(&self);
    return NULL;
}

nw_rules_t *nw_rules_ref(nw_rules_t *self)
{
    if (self)
        atomic_fetch_add_explicit(&self->refs, 1, memory_order_relaxed);
    return self;
}

void nw_rules_unref(nw_rules_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    nw_rules_t *self = *self_p;
    *self_p = NULL;
    /* acq_rel: the last owner must see every other owner's reads finished. */
    if (atomic_fetch_sub_explicit(&self->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < self->phrase_count; i++)
        free(self->phrases[i].text);
    free(self->phrases);
    free(self->subjects);
    free(self);
}

size_t nw_rules_count(const nw_rules_t *self)
{
    return self ? self->subject_count : 0;
}

/* ------------------------------------------------------------------------------
 * Classifying
 */

/* Whether the rest of phrase (after its first token) follows in tz without a break. */
static bool phrase_continues(const phrase_t *phrase, tokenizer_t tz)
{
    const char *rest = phrase->text + phrase->first_len;
    token_t tok;
    while (*rest == ' ') {
        rest++;
        size_t len = strcspn(rest, " ");
        if (!next_token(&tz, &tok) || tok.brk || token_cmp(tok.p, tok.len, rest, len) != 0)
            return false;
        rest += len;
    }
    return true;
}

static void scan_field(const nw_rules_t *self, const char *text, unsigned char *hits,
                       unsigned char bit)
{
    if (!text)
        return;
    tokenizer_t tz = {(const unsigned char *) text, strlen(text), 0};
    token_t tok;
    while (next_token(&tz, &tok)) {
        /* lower bound of the phrases whose first token is tok */
        size_t lo = 0, hi = self->phrase_count;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            const phrase_t *p = &self->phrases[mid];
            if (token_cmp(tok.p, tok.len, p->text, p->first_len) > 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (size_t i = lo; i < self->phrase_count; i++) {
            const phrase_t *p = &self->phrases[i];
            if (token_cmp(tok.p, tok.len, p->text, p->first_len) != 0)
                break;
            if (!(hits[i] & bit) && phrase_continues(p, tz))
                hits[i] |= bit;
        }
    }
}

size_t nw_rules_classify(const nw_rules_t *rules, const nw_article_t *article,
                         char topics[][NW_TOPIC_MAX + 1], size_t max)
{
    if (!rules || !article || !topics || max == 0 || rules->phrase_count == 0)
        return 0;
    size_t n = 0;
    unsigned char *hits = calloc(rules->phrase_count, 1);
    long *score = calloc(rules->subject_count, sizeof *score);
    size_t *order = calloc(rules->subject_count, sizeof *order);
    if (!hits || !score || !order)
        goto done;              /* no memory: the caller falls back to "general" */
    scan_field(rules, article->headline, hits, HIT_HEADLINE);
    scan_field(rules, article->description, hits, HIT_BODY);
    scan_field(rules, article->body, hits, HIT_BODY);
    for (size_t i = 0; i < rules->phrase_count; i++) {
        size_t s = rules->phrases[i].subject;
        if (hits[i] & HIT_HEADLINE)
            score[s] += rules->headline_weight;
        if (hits[i] & HIT_BODY)
            score[s] += 1;
    }
    /* strongest first, config order among equals (insertion sort: few subjects) */
    size_t chosen = 0;
    for (size_t s = 0; s < rules->subject_count; s++) {
        if (score[s] < rules->subjects[s].threshold)
            continue;
        size_t j = chosen++;
        while (j > 0 && score[order[j - 1]] < score[s]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = s;
    }
    for (; n < chosen && n < max; n++)
        memcpy(topics[n], rules->subjects[order[n]].name,
               strlen(rules->subjects[order[n]].name) + 1);
done:
    free(hits);
    free(score);
    free(order);
    return n;
}

/* ------------------------------------------------------------------------------
 * Routing
 */

size_t nw_route_topics(const nw_rules_t *rules, const char *subfolder,
                       const nw_article_t *article,
                       char topics[][NW_TOPIC_MAX + 1])
{
    if (subfolder && nw_topic_normalize(subfolder, topics[0], NW_TOPIC_MAX + 1) == 0)
        return 1;
    size_t n = 0;
    for (size_t i = 0; article && i < article->subject_count && n < NW_ROUTE_MAX_TOPICS; i++) {
        if (nw_topic_normalize(article->subjects[i], topics[n], NW_TOPIC_MAX + 1) != 0)
            continue;
        bool seen = false;
        for (size_t j = 0; j < n && !seen; j++)
            seen = strcmp(topics[j], topics[n]) == 0;
        if (!seen)
            n++;
    }
    if (n == 0)
        n = nw_rules_classify(rules, article, topics, NW_ROUTE_MAX_TOPICS);
    if (n == 0) {
        memcpy(topics[0], "general", sizeof "general");
        n = 1;
    }
    return n;
}
