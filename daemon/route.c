/*
 * route: topic names, keyword rules and the routing order (see route.h).
 *
 * Config enters through nw_rules_new, which splits every listed word or phrase into
 * lowercase tokens once, sorts the phrases by their first token and indexes each
 * distinct first token in an open-addressing hash table. Articles enter through
 * nw_rules_classify, which walks each field once: the tokenizer classifies bytes by a
 * table and hashes each token's lowercase bytes as it goes, so a token costs one probe
 * sequence, and bytes are compared only on a hash match. Scratch space lives on the
 * stack for any usual rule set, so a call does not allocate. The table is only read
 * after the build; it is not a zhashx because zhashx_lookup writes the table (cursor,
 * even a rehash), so concurrent readers on worker threads would race.
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

/* The phrases that start with one token: phrases[first .. first + count). */
typedef struct {
    uint32_t hash;      /* token_hash of the first token; 0: an empty slot */
    uint32_t len;       /* its length */
    uint32_t first;
    uint32_t count;
} slot_t;

struct nw_rules {
    atomic_size_t refs;
    long headline_weight;
    subject_t *subjects;
    size_t subject_count;
    phrase_t *phrases;  /* sorted by first token */
    size_t phrase_count;
    size_t phrase_cap;
    slot_t *index;      /* open addressing, linear probing, at most half full */
    size_t index_mask;  /* slots - 1; slots is a power of two */
    unsigned index_shift;       /* 32 - log2(slots) */
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
 * Tokens: maximal runs of word bytes, with a flag for a clause break before them and
 * a hash of their lowercase bytes, computed on the way so a lookup costs one probe.
 */

typedef struct {
    const unsigned char *s;     /* NUL-terminated: the NUL stops every loop below */
    size_t pos;
} tokenizer_t;

typedef struct {
    const char *p;
    size_t len;
    uint32_t hash;      /* token_hash of the lowercase bytes */
    bool brk;           /* the gap before this token holds a clause break */
} token_t;

/* What each byte is to the tokenizer: W an ASCII letter or digit, w a byte of another
 * script, S a separator, B a separator that ends a phrase, N a line break (two in one
 * gap end a phrase), U the lead byte of a multibyte character that may be punctuation
 * (see sep_len_utf8), E the end. A table: this runs once per byte of every article. */
static const char byte_class[] =
    "ESSSSSSSSSNSSSSS"      /* 0x00: NUL, controls, \n */
    "SSSSSSSSSSSSSSSS"      /* 0x10: controls */
    "SBBSSSSSBBSSBSSS"      /* 0x20:   ! " # $ % & ' ( ) * + , - . / */
    "WWWWWWWWWWBBBSBB"      /* 0x30: 0-9 : ; < = > ? */
    "SWWWWWWWWWWWWWWW"      /* 0x40: @ A-O */
    "WWWWWWWWWWWBSBSS"      /* 0x50: P-Z [ \ ] ^ _ */
    "SWWWWWWWWWWWWWWW"      /* 0x60: ` a-o */
    "WWWWWWWWWWWBSBSS"      /* 0x70: p-z { | } ~ DEL */
    "wwwwwwwwwwwwwwww"      /* 0x80: continuation bytes */
    "wwwwwwwwwwwwwwww"
    "wwwwwwwwwwwwwwww"
    "wwwwwwwwwwwwwwww"
    "wwUwwwwwwwwwwwww"      /* 0xC0: C2 starts U+0080..U+00BF */
    "wwwwwwwwwwwwwwww"
    "wwUUwwwwwwwwwwwU"      /* 0xE0: E2 U+2000.., E3 U+3000.., EF U+F000.. */
    "wwwwwwwwwwwwwwww";
_Static_assert(sizeof byte_class == 257, "one class per byte");

static bool is_alnum_ascii(unsigned char c)
{
    return byte_class[c] == 'W';
}

static unsigned char lower_ascii(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char) (c + 32) : c;
}

/* FNV-1a over lowercase bytes; never 0, which marks an empty slot of the index. */
#define TOKEN_HASH_SEED 2166136261u

static uint32_t token_hash_step(uint32_t h, unsigned char lower)
{
    return (h ^ lower) * 16777619u;
}

static uint32_t token_hash_end(uint32_t h)
{
    return h ? h : 1;
}

/* Bytes of the separator starting at s[0] (a U byte), or 0 when it belongs to a word.
 * Bytes from 0x80 are word bytes (letters of other scripts), except the punctuation
 * and spaces that editors paste: U+00A0, « » ·, U+2000..U+206F (dashes, curly quotes,
 * ellipsis), U+3000..U+3002 and U+FFFD. *brk is set for characters that end a phrase.
 * A character cut short by the NUL is a word byte. */
static size_t sep_len_utf8(const unsigned char *s, bool *brk)
{
    if (s[0] == 0xC2) {
        if (s[1] == 0xA0 || s[1] == 0xB7)
            return 2;
        if (s[1] == 0xAB || s[1] == 0xBB) {
            *brk = true;
            return 2;
        }
    }
    if (s[0] == 0xE2 && (s[1] == 0x80 || s[1] == 0x81) && s[2]) {
        if (s[1] == 0x80 && (s[2] == 0x9C || s[2] == 0x9D))
            *brk = true;
        return 3;
    }
    if (s[0] == 0xE3 && s[1] == 0x80 && s[2] && s[2] <= 0x82) {
        if (s[2] != 0x80)
            *brk = true;
        return 3;
    }
    if (s[0] == 0xEF && s[1] == 0xBF && s[2] == 0xBD)
        return 3;
    return 0;
}

static inline bool next_token(tokenizer_t *tz, token_t *tok)
{
    const unsigned char *s = tz->s + tz->pos, *start;
    bool brk = false;
    int newlines = 0;
    for (;; s++) {
        char k = byte_class[*s];
        if (k == 'S')
            continue;
        if (k == 'B' || (k == 'N' && ++newlines >= 2))
            brk = true;
        else if (k == 'U') {
            size_t len = sep_len_utf8(s, &brk);
            if (len == 0)
                break;
            s += len - 1;
        }
        else if (k != 'N')
            break;
    }
    if (!*s) {
        tz->pos = (size_t) (s - tz->s);
        return false;
    }
    start = s;
    uint32_t h = TOKEN_HASH_SEED;
    bool ignored = false;
    for (;; s++) {
        unsigned char c = *s;
        char k = byte_class[c];
        if (k == 'W')
            c |= 0x20;          /* lowercase for letters, a no-op for digits */
        else if (k != 'w' && (k != 'U' || sep_len_utf8(s, &ignored) != 0))
            break;
        h = token_hash_step(h, c);
    }
    tz->pos = (size_t) (s - tz->s);
    tok->p = (const char *) start;
    tok->len = (size_t) (s - start);
    tok->hash = token_hash_end(h);
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
    token_t tok;
    size_t ntok = 0, first_len = 0, o = 0;
    char *item_z = strndup(item, len);    /* the tokenizer stops at a NUL */
    char *text = malloc(len + 1);
    if (!text || !item_z) {
        snprintf(errbuf, errlen, "rules: out of memory");
        goto fail;
    }
    tokenizer_t tz = {(const unsigned char *) item_z, 0};
    while (next_token(&tz, &tok)) {
        if (++ntok > RULE_MAX_TOKENS) {
            snprintf(errbuf, errlen, "rules: subject '%s': '%.*s' has more than %d words",
                     self->subjects[subject].name, (int) len, item, RULE_MAX_TOKENS);
            goto fail;
        }
        if (o > 0)
            text[o++] = ' ';
        for (size_t i = 0; i < tok.len; i++)
            text[o++] = (char) lower_ascii((unsigned char) tok.p[i]);
        if (ntok == 1)
            first_len = o;
    }
    free(item_z);
    if (ntok == 0) {            /* "a,,b" or a stray comma: nothing to match */
        free(text);
        return 0;
    }
    text[o] = '\0';
    if (self->phrase_count == self->phrase_cap) {
        size_t cap = self->phrase_cap ? self->phrase_cap * 2 : 64;
        phrase_t *grown = realloc(self->phrases, cap * sizeof *grown);
        if (!grown) {
            snprintf(errbuf, errlen, "rules: out of memory");
            free(text);
            return -1;
        }
        self->phrases = grown;
        self->phrase_cap = cap;
    }
    self->phrases[self->phrase_count++] = (phrase_t) {text, first_len, subject};
    return 0;
fail:
    free(item_z);
    free(text);
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

/* Fibonacci hashing: the top bits of the product depend on every bit of the hash. */
static size_t slot_of(const nw_rules_t *self, uint32_t hash)
{
    return (uint32_t) (hash * 2654435769u) >> self->index_shift;
}

/* The index from each distinct first token to its run of phrases (sorted, so a run
 * is contiguous). Written here once, only read afterwards. */
static int build_index(nw_rules_t *self, char *errbuf, size_t errlen)
{
    if (self->phrase_count > UINT32_MAX / 4) {
        snprintf(errbuf, errlen, "rules: more than %u words", UINT32_MAX / 4);
        return -1;
    }
    size_t slots = 16;
    self->index_shift = 28;
    while (slots < 2 * self->phrase_count) {
        slots *= 2;
        self->index_shift--;
    }
    self->index = calloc(slots, sizeof *self->index);
    if (!self->index) {
        snprintf(errbuf, errlen, "rules: out of memory");
        return -1;
    }
    self->index_mask = slots - 1;
    for (size_t i = 0; i < self->phrase_count;) {
        const phrase_t *p = &self->phrases[i];
        if (p->first_len > UINT32_MAX) {
            snprintf(errbuf, errlen, "rules: a word longer than %u bytes", UINT32_MAX);
            return -1;
        }
        size_t j = i + 1;
        while (j < self->phrase_count && self->phrases[j].first_len == p->first_len &&
               memcmp(self->phrases[j].text, p->text, p->first_len) == 0)
            j++;
        uint32_t h = TOKEN_HASH_SEED;
        for (size_t k = 0; k < p->first_len; k++)
            h = token_hash_step(h, (unsigned char) p->text[k]);
        h = token_hash_end(h);
        size_t at = slot_of(self, h);
        while (self->index[at].hash)
            at = (at + 1) & self->index_mask;
        self->index[at] = (slot_t) {h, (uint32_t) p->first_len, (uint32_t) i,
                                    (uint32_t) (j - i)};
        i = j;
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
    if (build_index(self, errbuf, errlen) != 0)
        goto fail;
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
    free(self->index);
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

/* Whether a text token (any case) is the lowercase rule token. */
static bool token_eq(const char *a, const char *lower, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (lower_ascii((unsigned char) a[i]) != (unsigned char) lower[i])
            return false;
    return true;
}

/* Whether the rest of phrase (after its first token) follows in tz without a break. */
static bool phrase_continues(const phrase_t *phrase, tokenizer_t tz)
{
    const char *rest = phrase->text + phrase->first_len;
    token_t tok;
    while (*rest == ' ') {
        rest++;
        size_t len = strcspn(rest, " ");
        if (!next_token(&tz, &tok) || tok.brk || tok.len != len || !token_eq(tok.p, rest, len))
            return false;
        rest += len;
    }
    return true;
}

/* Adds the points of the phrases found in text that hits does not hold yet for this
 * field (bit), and marks them. */
static void scan_field(const nw_rules_t *self, const char *text, unsigned char *hits,
                       unsigned char bit, long points, long *score)
{
    if (!text)
        return;
    tokenizer_t tz = {(const unsigned char *) text, 0};
    token_t tok;
    while (next_token(&tz, &tok)) {
        const slot_t *slot;
        for (size_t at = slot_of(self, tok.hash);; at = (at + 1) & self->index_mask) {
            slot = &self->index[at];
            if (!slot->hash || (slot->hash == tok.hash && slot->len == tok.len &&
                                token_eq(tok.p, self->phrases[slot->first].text, tok.len)))
                break;
        }
        for (size_t i = slot->first; i < (size_t) slot->first + slot->count; i++) {
            const phrase_t *p = &self->phrases[i];
            if (!(hits[i] & bit) && phrase_continues(p, tz)) {
                hits[i] |= bit;
                score[p->subject] += points;
            }
        }
    }
}

size_t nw_rules_classify(const nw_rules_t *rules, const nw_article_t *article,
                         char topics[][NW_TOPIC_MAX + 1], size_t max)
{
    if (!rules || !article || !topics || max == 0 || rules->phrase_count == 0)
        return 0;
    /* Scratch (scores, order, a hit mask per phrase) on the stack for any usual rule
     * set; only a very large one pays for an allocation. */
    union {
        max_align_t align;
        unsigned char bytes[4096];
    } local;
    size_t need = rules->subject_count * (sizeof(long) + sizeof(size_t)) + rules->phrase_count;
    unsigned char *scratch = need <= sizeof local.bytes ? local.bytes : malloc(need);
    if (!scratch)
        return 0;               /* no memory: the caller falls back to "general" */
    memset(scratch, 0, need);
    long *score = (long *) (void *) scratch;
    size_t *order = (size_t *) (void *) (score + rules->subject_count);
    unsigned char *hits = (unsigned char *) (order + rules->subject_count);
    scan_field(rules, article->headline, hits, HIT_HEADLINE, rules->headline_weight, score);
    scan_field(rules, article->description, hits, HIT_BODY, 1, score);
    scan_field(rules, article->body, hits, HIT_BODY, 1, score);
    /* strongest first, config order among equals (insertion sort: few subjects) */
    size_t chosen = 0, n = 0;
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
    if (scratch != local.bytes)
        free(scratch);
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
