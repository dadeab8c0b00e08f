/*
 * route: topic names, keyword rules and the routing order (see route.h).
 *
 * Rules enter through nw_rules_new as plain options (config.c reads them from the ZPL
 * file; no options: the built-in rules), which splits every listed word or phrase into
 * lowercase tokens once, sorts the phrases by their first token and indexes each
 * distinct first token in an open-addressing hash table, with a byte filter in front.
 * Articles enter through nw_rules_classify, which walks each field once, 64 bytes at a
 * time: a bit mask of the bytes that can be in a word gives the runs between ASCII
 * separators, a run of ASCII letters and digits is hashed from 8-byte loads, the
 * filter turns most words away without a probe, a phrase's later words are compared in
 * place when plain spaces lead to them, and only runs with bytes from 0x80 (and later
 * words behind any other gap) go through the byte-at-a-time tokenizer. Scratch space
 * lives on the stack for any usual rule set, so a call does not allocate. Index and
 * filter are only read after the build; not a zhashx because zhashx_lookup writes the
 * table (cursor, even a rehash), so concurrent readers on worker threads would race.
 */
#include "route.h"
#include "medtop.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__SSE2__) && !defined(NW_ROUTE_NO_SIMD)
#include <emmintrin.h>
#endif

#define RULE_MAX_TOKENS 8
#define RULE_DEFAULT_THRESHOLD NW_RULES_DEFAULT_THRESHOLD
#define RULE_MAX_THRESHOLD NW_RULES_MAX_THRESHOLD
#define RULE_MAX_HEADLINE_WEIGHT NW_RULES_MAX_HEADLINE_WEIGHT
#define SCAN_BLOCK 64  /* bytes of text per bit mask */
#define FILTER_BITS 12 /* 4096 hash classes: 1 in 20 misses probes (default rules) */

enum { HIT_HEADLINE = 1, HIT_BODY = 2 };

typedef struct {
    char *text;       /* lowercase tokens joined by one space */
    size_t first_len; /* length of the first token in text */
    size_t subject;   /* index into subjects */
    bool plain;       /* its later tokens are ASCII letters and digits only */
    uint32_t rest_len[RULE_MAX_TOKENS - 1]; /* the lengths of the tokens after the first */
} phrase_t;

#define RULE_CODE_MAX 64

typedef struct {
    char name[NW_TOPIC_MAX + 1];
    long threshold;
    char code[RULE_CODE_MAX]; /* its IPTC Media Topic ("medtop:13000000"), or "" */
} subject_t;

/* The phrases that start with one token: phrases[first .. first + count). */
typedef struct {
    uint64_t head; /* the first 8 bytes of the first token, as in token_t */
    uint32_t len;  /* its length; 0: an empty slot */
    uint32_t first;
    uint32_t count;
} slot_t;

struct nw_rules {
    atomic_size_t refs;
    nw_medtop_t *medtop; /* the Media Topics table, or NULL */
    long headline_weight;
    subject_t *subjects;
    size_t subject_count;
    phrase_t *phrases; /* sorted by first token */
    size_t phrase_count;
    size_t phrase_cap;
    slot_t *index;        /* open addressing, linear probing, at most half full */
    size_t index_mask;    /* slots - 1; slots is a power of two */
    unsigned index_shift; /* 64 - log2(slots) */
    unsigned char filter[1 << FILTER_BITS]; /* 1 for each first token's filter_of */
};

/* Built-in rules, used without options (the config has no "rules" section). */
static const struct {
    const char *name;
    const char *medtop; /* the Media Topic its articles carry as subject code */
    const char *words;
} default_rules[] = {
    {"telecoms", "medtop:13000000",
     "telecom, telecoms, telecommunications, telco, telcos, operator, operators, "
     "network operator, mobile operator, mobile operators, carrier, carriers, mobile, "
     "mobile network, mobile networks, network, networks, networking, 5g, 4g, 6g, lte, "
     "spectrum, broadband, fibre, fiber, wireless, wi-fi, handset, handsets, smartphone, "
     "smartphones, phone, phones, huawei, ericsson, nokia, zte, qualcomm, vodafone, "
     "telefonica, deutsche telekom, verizon, t-mobile, vendor, vendors, software, "
     "open ran, radio access network, base station, base stations, core network, "
     "subscriber, subscribers, roaming, satellite, cell tower, cell towers, 3gpp, gsma, "
     "ofcom, connectivity, data centre, data center, data centres, data centers"},
    {"geopolitics", "medtop:11000000",
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
 * next_token is the definition, a byte at a time; scan_field finds the same tokens
 * faster (see there). A token is looked up by its key: a hash of its lowercase bytes
 * and their first 8.
 */

typedef struct {
    const unsigned char *p;   /* the next byte to read */
    const unsigned char *end; /* the NUL, which stops every byte loop below */
} tokenizer_t;

typedef struct {
    const char *p;
    size_t len;
    bool brk; /* the gap before this token holds a clause break */
} token_t;

/* What each byte is to the tokenizer: W an ASCII letter or digit, w a byte of another
 * script, S a separator, B a separator that ends a phrase, N a line break (two in one
 * gap end a phrase), U the lead byte of a multibyte character that may be punctuation
 * (see sep_len_utf8), E the end. */
static const char byte_class[] =
    "ESSSSSSSSSNSSSSS" /* 0x00: NUL, controls, \n */
    "SSSSSSSSSSSSSSSS" /* 0x10: controls */
    "SBBSSSSSBBSSBSSS" /* 0x20:   ! " # $ % & ' ( ) * + , - . / */
    "WWWWWWWWWWBBBSBB" /* 0x30: 0-9 : ; < = > ? */
    "SWWWWWWWWWWWWWWW" /* 0x40: @ A-O */
    "WWWWWWWWWWWBSBSS" /* 0x50: P-Z [ \ ] ^ _ */
    "SWWWWWWWWWWWWWWW" /* 0x60: ` a-o */
    "WWWWWWWWWWWBSBSS" /* 0x70: p-z { | } ~ DEL */
    "wwwwwwwwwwwwwwww" /* 0x80: continuation bytes */
    "wwwwwwwwwwwwwwww"
    "wwwwwwwwwwwwwwww"
    "wwwwwwwwwwwwwwww"
    "wwUwwwwwwwwwwwww" /* 0xC0: C2 starts U+0080..U+00BF */
    "wwwwwwwwwwwwwwww"
    "wwUUwwwwwwwwwwwU" /* 0xE0: E2 U+2000.., E3 U+3000.., EF U+F000.. */
    "wwwwwwwwwwwwwwww";
_Static_assert(sizeof byte_class == 257, "one class per byte");

static unsigned char lower_ascii(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char) (c + 32) : c;
}

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS (0x80 * ONES)

/* The token hash folds the lowercase bytes in 8-byte chunks, little-endian (the last
 * one zero-padded; a token holds no NUL, so the chunks tell tokens apart). Multiplying
 * mixes every bit into the top ones, which the index and the filter use. */
static uint64_t token_hash_step(uint64_t h, uint64_t chunk)
{
    return (h ^ chunk) * UINT64_C(0x9E3779B97F4A7C15);
}

/* The key of a token: its hash, and (head) its first chunk. Only ASCII letters are
 * lowercased. */
static uint64_t token_key(const char *p, size_t len, uint64_t *head)
{
    uint64_t h = 0;
    for (size_t at = 0; at < len; at += 8) {
        uint64_t chunk = 0;
        for (size_t i = 0; i < 8 && at + i < len; i++)
            chunk |= (uint64_t) lower_ascii((unsigned char) p[at + i]) << (8 * i);
        if (at == 0)
            *head = chunk;
        h = token_hash_step(h, chunk);
    }
    return h;
}

/* The filter's entry for a hash: its top bits, so a byte per entry (a bit would
 * cost a shift and a mask more per token) and one shift. */
static size_t filter_of(uint64_t hash)
{
    return (size_t) (hash >> (64 - FILTER_BITS));
}

static uint64_t load_le64(const unsigned char *s)
{
    uint64_t v;
    memcpy(&v, s, sizeof v);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
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

/* Any token, a byte at a time (scan_field has a faster path for the usual words). */
static bool next_token(tokenizer_t *tz, token_t *tok)
{
    const unsigned char *s = tz->p, *start;
    bool brk = false, ignored = false;
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
        } else if (k != 'N')
            break;
    }
    if (!*s) {
        tz->p = s;
        return false;
    }
    for (start = s;; s++) {
        char k = byte_class[*s];
        if (k != 'W' && k != 'w' && (k != 'U' || sep_len_utf8(s, &ignored) != 0))
            break;
    }
    tz->p = s;
    tok->p = (const char *) start;
    tok->len = (size_t) (s - start);
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
    memset(subject, 0, sizeof *subject); /* no code until the rule names one */
    memcpy(subject->name, topic, strlen(topic) + 1);
    subject->threshold = RULE_DEFAULT_THRESHOLD;
    return (int) self->subject_count++;
}

static int add_phrase(nw_rules_t *self, size_t subject, const char *item, size_t len,
                      char *errbuf, size_t errlen)
{
    token_t tok;
    size_t ntok = 0, first_len = 0, o = 0;
    bool plain = true;
    uint32_t rest_len[RULE_MAX_TOKENS - 1] = {0};
    char *item_z = strndup(item, len); /* the tokenizer stops at a NUL */
    char *text = malloc(len + 1);
    if (!text || !item_z) {
        snprintf(errbuf, errlen, "rules: out of memory");
        goto fail;
    }
    tokenizer_t tz = {(const unsigned char *) item_z,
                      (const unsigned char *) item_z + strlen(item_z)};
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
        for (size_t i = 0; ntok > 1 && i < tok.len; i++)
            plain = plain && byte_class[(unsigned char) tok.p[i]] == 'W';
        if (ntok > 1)
            rest_len[ntok - 2] = (uint32_t) tok.len; /* len < UINT32_MAX: build_index */
    }
    free(item_z);
    if (ntok == 0) { /* "a,,b" or a stray comma: nothing to match */
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
    phrase_t *phrase = &self->phrases[self->phrase_count++];
    *phrase = (phrase_t) {text, first_len, subject, plain, {0}};
    memcpy(phrase->rest_len, rest_len, sizeof rest_len);
    return 0;
fail:
    free(item_z);
    free(text);
    return -1;
}

static int add_words(nw_rules_t *self, size_t subject, const char *list, char *errbuf,
                     size_t errlen)
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

/* One subject's rule; the subject must end with words. */
static int add_rule(nw_rules_t *self, const nw_rule_t *rule, char *errbuf, size_t errlen)
{
    const char *name = rule->subject ? rule->subject : "";
    int subject = add_subject(self, name, errbuf, errlen);
    if (subject < 0)
        return -1;
    if (rule->threshold < 1 || rule->threshold > RULE_MAX_THRESHOLD) {
        snprintf(errbuf, errlen,
                 "rules: subject '%s': threshold %ld is not a number from 1 "
                 "to %d",
                 name, rule->threshold, RULE_MAX_THRESHOLD);
        return -1;
    }
    self->subjects[subject].threshold = rule->threshold;
    const char *code = rule->medtop;
    if (code && (!strchr(code, ':') || strlen(code) >= RULE_CODE_MAX || strchr(code, ' '))) {
        snprintf(errbuf, errlen,
                 "rules: subject '%s': medtop '%s' is not a code like "
                 "medtop:20000763",
                 name, code);
        return -1;
    }
    if (code)
        memcpy(self->subjects[subject].code, code, strlen(code) + 1);
    for (size_t i = 0; i < rule->word_lists; i++)
        if (rule->words[i] &&
            add_words(self, (size_t) subject, rule->words[i], errbuf, errlen) != 0)
            return -1;
    if (subject_phrases(self, (size_t) subject) == 0) {
        snprintf(errbuf, errlen, "rules: subject '%s' has no words", name);
        return -1;
    }
    return 0;
}

/* The top bits of the hash: the last multiplication mixed every bit of the token
 * into them. */
static size_t slot_of(const nw_rules_t *self, uint64_t hash)
{
    return (size_t) (hash >> self->index_shift);
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
    self->index_shift = 60;
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
        uint64_t head = 0, h = token_key(p->text, p->first_len, &head);
        size_t at = slot_of(self, h);
        while (self->index[at].len)
            at = (at + 1) & self->index_mask;
        self->filter[filter_of(h)] = 1;
        self->index[at] = (slot_t) {head, (uint32_t) p->first_len, (uint32_t) i,
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

/* The installed Media Topics table: share/newswire/medtop.json beside the program's
 * bin folder (so an installed daemon and a build tree, where CMake puts a copy, each
 * find their own), else where the install put it. false when neither is there. */
static bool default_table(char *out, size_t len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            if (snprintf(out, len, "%s/../share/newswire/medtop.json", exe) < (int) len &&
                access(out, R_OK) == 0)
                return true;
        }
    }
    snprintf(out, len, "%s", NW_MEDTOP_DEFAULT);
    return access(out, R_OK) == 0;
}

nw_rules_t *nw_rules_new(const nw_rules_options_t *options, char *errbuf, size_t errlen)
{
    nw_rules_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(errbuf, errlen, "rules: out of memory");
        return NULL;
    }
    atomic_init(&self->refs, 1);
    self->headline_weight = options ? options->headline_weight : NW_RULES_DEFAULT_HEADLINE_WEIGHT;
    if (self->headline_weight < 0 || self->headline_weight > RULE_MAX_HEADLINE_WEIGHT) {
        snprintf(errbuf, errlen, "rules: headline-weight %ld is not a number from 0 to %d",
                 self->headline_weight, RULE_MAX_HEADLINE_WEIGHT);
        goto fail;
    }
    /* The Media Topics table: the path the rules name must load; the installed one is
     * used when it is there. */
    const char *path = options ? options->media_topics : NULL;
    char installed[PATH_MAX];
    if (!path && default_table(installed, sizeof installed))
        path = installed;
    if (path) {
        char reason[200];
        self->medtop = nw_medtop_load(path, reason, sizeof reason);
        if (!self->medtop) {
            snprintf(errbuf, errlen, "rules: %s", reason);
            goto fail;
        }
    }
    if (options) {
        for (size_t i = 0; i < options->count; i++)
            if (add_rule(self, &options->rules[i], errbuf, errlen) != 0)
                goto fail;
    } else {
        for (size_t i = 0; i < sizeof default_rules / sizeof default_rules[0]; i++) {
            nw_rule_t rule = {.subject = default_rules[i].name,
                              .threshold = RULE_DEFAULT_THRESHOLD,
                              .words = &default_rules[i].words,
                              .word_lists = 1,
                              .medtop = default_rules[i].medtop};
            if (add_rule(self, &rule, errbuf, errlen) != 0)
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
    nw_medtop_destroy(&self->medtop);
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

/* Written among the specifiers (static ALWAYS_INLINE void f): clang-format would join an
 * attribute on a line of its own to the first line of the definition. */
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* Whether the next token in tz is word (len lowercase ASCII letters and digits), in the
 * usual case of a gap of plain spaces before it: 1 it is (tz moves past it), 0 it is
 * not, -1 when the gap holds anything else (a break may be in it) or the token does not
 * start with an ASCII letter or digit, which next_token must decide. It answers as
 * next_token would: a byte that differs ends the comparison whether it is a word byte
 * (another token) or not (a shorter one), and past the len bytes the token must end. */
static ALWAYS_INLINE int plain_next(tokenizer_t *tz, const char *word, size_t len)
{
    const unsigned char *s = tz->p;
    while (*s == ' ')
        s++;
    if (byte_class[*s] != 'W')
        return -1;
    for (size_t i = 0; i < len; i++)
        if (lower_ascii(s[i]) != (unsigned char) word[i])
            return 0; /* a NUL differs too: no read past the end */
    const unsigned char *after = s + len;
    char k = byte_class[*after];
    bool ignored = false;
    if (k == 'W' || k == 'w' || (k == 'U' && sep_len_utf8(after, &ignored) == 0))
        return 0;
    tz->p = after;
    return 1;
}

/* Whether the rest of phrase (after its first token) follows in tz without a break.
 * Most calls fail at the second token, behind a single space: plain_next answers
 * those without the byte-class loop of next_token. */
static ALWAYS_INLINE bool phrase_continues(const phrase_t *phrase, tokenizer_t tz)
{
    const char *rest = phrase->text + phrase->first_len;
    token_t tok;
    for (size_t t = 0; *rest == ' '; t++) {
        rest++;
        size_t len = phrase->rest_len[t];
        int plain = phrase->plain ? plain_next(&tz, rest, len) : -1;
        if (plain == 0)
            return false;
        if (plain < 0 &&
            (!next_token(&tz, &tok) || tok.brk || tok.len != len || !token_eq(tok.p, rest, len)))
            return false;
        rest += len;
    }
    return true;
}

/* The index entry for a token: its run of phrases, or an empty slot (count 0). */
static ALWAYS_INLINE const slot_t *lookup(const nw_rules_t *self, const unsigned char *p,
                                          size_t len, uint64_t head, uint64_t hash)
{
    for (size_t at = slot_of(self, hash);; at = (at + 1) & self->index_mask) {
        const slot_t *slot = &self->index[at];
        if (slot->head == head && slot->len == len &&
            (len <= 8 ||
             token_eq((const char *) p + 8, self->phrases[slot->first].text + 8, len - 8)))
            return slot;
        if (!slot->len)
            return slot;
    }
}

/* Scores the phrases that start with the token at start (len bytes, key head and
 * hash) and go on from there, unless hits holds them for this field (bit) already.
 * The filter turns most tokens away before the index is probed. */
static ALWAYS_INLINE void match_token(const nw_rules_t *self, const unsigned char *start,
                                      size_t len, uint64_t head, uint64_t hash,
                                      const unsigned char *end, unsigned char *hits,
                                      unsigned char bit, long points, long *score)
{
    if (!self->filter[filter_of(hash)])
        return;
    const slot_t *slot = lookup(self, start, len, head, hash);
    tokenizer_t tz = {start + len, end};
    /* in locals: the stores to hits and score could alias the slot for the compiler */
    size_t first = slot->first, last = first + slot->count;
    for (size_t i = first; i < last; i++) {
        const phrase_t *p = &self->phrases[i];
        if (!(hits[i] & bit) && phrase_continues(p, tz)) {
            hits[i] |= bit;
            score[p->subject] += points;
        }
    }
}

/* Bit i set when byte i of the SCAN_BLOCK at p may be part of a token (an ASCII letter
 * or digit, or a byte from 0x80); *high: bit i set for the bytes from 0x80. SSE2 (any
 * x86-64) classifies 16 bytes in a few instructions; elsewhere 8 at a time in a word. */
#if defined(__SSE2__) && !defined(NW_ROUTE_NO_SIMD)
static uint64_t block_bits(const unsigned char *p, uint64_t *high)
{
    uint64_t sep = 0, top = 0;
    for (unsigned i = 0; i < SCAN_BLOCK; i += 16) {
        /* signed bytes: those from 0x80 are negative, below every bound here */
        __m128i v = _mm_loadu_si128((const __m128i *) (const void *) (p + i));
        __m128i l = _mm_or_si128(v, _mm_set1_epi8(0x20));
        __m128i alpha = _mm_and_si128(_mm_cmpgt_epi8(l, _mm_set1_epi8(0x60)),
                                      _mm_cmplt_epi8(l, _mm_set1_epi8(0x7b)));
        __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8(0x2f)),
                                      _mm_cmplt_epi8(v, _mm_set1_epi8(0x3a)));
        __m128i word = _mm_or_si128(_mm_or_si128(alpha, digit),
                                    _mm_cmplt_epi8(v, _mm_setzero_si128()));
        sep |= (uint64_t) (uint16_t) ~_mm_movemask_epi8(word) << i;
        top |= (uint64_t) (uint16_t) _mm_movemask_epi8(v) << i;
    }
    *high = top;
    return ~sep;
}
#else
/* 0x80 in each byte of w that is not an ASCII letter or digit (bytes from 0x80
 * included). Each sum stays below 0x100 per byte, so no carry crosses bytes. */
static uint64_t not_alnum(uint64_t w)
{
    uint64_t x = w & ~HIGHS, l = x | 0x20 * ONES;
    uint64_t alpha = (l + 0x1f * ONES) & ~(l + 0x05 * ONES); /* 0x61 <= l <= 0x7a */
    uint64_t digit = (x + 0x50 * ONES) & ~(x + 0x46 * ONES); /* 0x30 <= x <= 0x39 */
    return (~(alpha | digit) | w) & HIGHS;
}

/* The top bit of each byte, bit i from byte i: 8 bits. No two products overlap, so
 * nothing carries. */
static uint64_t gather_tops(uint64_t tops)
{
    return ((tops >> 7) * UINT64_C(0x0102040810204080)) >> 56;
}

static uint64_t block_bits(const unsigned char *p, uint64_t *high)
{
    uint64_t sep = 0, any_high = 0;
    for (unsigned i = 0; i < 8; i++) {
        uint64_t w = load_le64(p + 8 * i);
        sep |= gather_tops(not_alnum(w) & ~w) << (8 * i);
        any_high |= w;
    }
    *high = 0;
    if (any_high & HIGHS)
        for (unsigned i = 0; i < 8; i++)
            *high |= gather_tops(load_le64(p + 8 * i) & HIGHS) << (8 * i);
    return ~sep;
}
#endif

/* low_bytes[n]: a mask of the n low bytes. */
static const uint64_t low_bytes[9] = {
    0,          0xff,         0xffff,         0xffffff,
    0xffffffff, 0xffffffffff, 0xffffffffffff, 0xffffffffffffff,
    UINT64_MAX,
};

/* A token of ASCII letters and digits: its key from 8-byte loads (lowercase is |0x20
 * for letters and digits alike), as token_key would give it. p has 8 bytes readable
 * past the token; real is where the token is in the text. */
static ALWAYS_INLINE void ascii_token(const nw_rules_t *self, const unsigned char *p,
                                      const unsigned char *real, size_t len,
                                      const unsigned char *end, unsigned char *hits,
                                      unsigned char bit, long points, long *score)
{
    uint64_t head = load_le64(p) | 0x20 * ONES, h;
    if (len <= 8) {
        head &= low_bytes[len];
        h = token_hash_step(0, head);
    } else {
        size_t off = 8;
        h = token_hash_step(0, head);
        for (; len - off > 8; off += 8)
            h = token_hash_step(h, load_le64(p + off) | 0x20 * ONES);
        h = token_hash_step(h, (load_le64(p + off) | 0x20 * ONES) & low_bytes[len - off]);
    }
    match_token(self, real, len, head, h, end, hits, bit, points, score);
}

/* Tokens the byte path finds from real up to (not into) stop, any at all when stop is
 * NULL (then only the first): the end of the last one, or of the text. */
static const unsigned char *byte_path(const nw_rules_t *self, const unsigned char *real,
                                      const unsigned char *stop, const unsigned char *end,
                                      unsigned char *hits, unsigned char bit, long points,
                                      long *score)
{
    tokenizer_t tz = {real, end};
    token_t tok;
    while (next_token(&tz, &tok)) {
        if (stop && (const unsigned char *) tok.p >= stop)
            break;
        uint64_t head = 0, h = token_key(tok.p, tok.len, &head);
        match_token(self, (const unsigned char *) tok.p, tok.len, head, h, end, hits, bit, points,
                    score);
        real = tz.p;
        if (!stop)
            return real;
    }
    return stop ? real : end;
}

/* The runs in todo, none of them touching the block's last byte; with_high: some
 * of the block's bytes are from 0x80 (high), so a run may need the byte path. Inlined
 * twice, so the pure ASCII case tests nothing for them. */
static ALWAYS_INLINE void scan_runs(const nw_rules_t *self, uint64_t todo, bool with_high,
                                    uint64_t high, const unsigned char *blk,
                                    const unsigned char *real, const unsigned char *end,
                                    unsigned char *hits, unsigned char bit, long points,
                                    long *score)
{
    while (todo) {
        /* adding its lowest bit to the lowest run of ones carries to the bit past it */
        unsigned a = (unsigned) __builtin_ctzll(todo);
        uint64_t past = todo + (todo & -todo);
        unsigned b = (unsigned) __builtin_ctzll(past);
        if (with_high && (high & ((UINT64_C(1) << b) - (UINT64_C(1) << a))))
            byte_path(self, real + a, real + b, end, hits, bit, points, score);
        else
            ascii_token(self, blk + a, real + a, b - a, end, hits, bit, points, score);
        todo &= past;
    }
}

/* The tokens that end within the SCAN_BLOCK at blk (a copy of the text at real, or the
 * text itself, with 8 more bytes readable); returns how far the next block starts. A
 * token is a run of possible token bytes between ASCII separators: a run of ASCII
 * letters and digits is one token, a run with bytes from 0x80 goes to the byte path.
 * A run that reaches the last byte may go on: the next block starts with it. */
static size_t scan_block(const nw_rules_t *self, const unsigned char *blk,
                         const unsigned char *real, const unsigned char *end, unsigned char *hits,
                         unsigned char bit, long points, long *score)
{
    uint64_t high, runs = block_bits(blk, &high);
    size_t next = SCAN_BLOCK;
    if (runs >> 63) {
        if (!~runs) /* one run of 64 bytes or more */
            return (size_t) (byte_path(self, real, NULL, end, hits, bit, points, score) - real);
        next = (size_t) (64 - __builtin_clzll(~runs));
        runs &= (UINT64_C(1) << next) - 1;
    }
    if (high)
        scan_runs(self, runs, true, high, blk, real, end, hits, bit, points, score);
    else
        scan_runs(self, runs, false, 0, blk, real, end, hits, bit, points, score);
    return next;
}

/* Adds the points of the phrases found in text that hits does not hold yet for this
 * field (bit), and marks them. A phrase's first token needs no clause flag, so tokens
 * are found by bit masks over 64 bytes at a time; the last bytes are copied with zero
 * padding so that every load stays in bounds. */
static void scan_field(const nw_rules_t *self, const char *text, unsigned char *hits,
                       unsigned char bit, long points, long *score)
{
    if (!text)
        return;
    const unsigned char *t = (const unsigned char *) text;
    size_t n = strlen(text), pos = 0;
    unsigned char tail[SCAN_BLOCK + 8];
    while (pos < n) {
        const unsigned char *blk = t + pos;
        if (n - pos < sizeof tail) {
            memset(tail, 0, sizeof tail);
            memcpy(tail, t + pos, n - pos);
            blk = tail;
        }
        pos += scan_block(self, blk, t + pos, t + n, hits, bit, points, score);
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
        return 0; /* no memory: the caller falls back to "general" */
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

/* The topic a subject code routes to: the table's, else the rule that names the code. */
static const char *code_topic(const nw_rules_t *rules, const char *code)
{
    if (!code || !rules)
        return NULL;
    const char *topic = nw_medtop_topic(rules->medtop, code);
    for (size_t i = 0; !topic && i < rules->subject_count; i++)
        if (strcmp(rules->subjects[i].code, code) == 0)
            topic = rules->subjects[i].name;
    return topic;
}

const char *nw_route_code(const nw_rules_t *rules, const nw_article_t *article, const char *topic,
                          const char **scheme)
{
    const char *code = NULL;
    char norm[NW_TOPIC_MAX + 1];
    /* The source's own code first: it is what the sender meant. */
    for (size_t i = 0; article && article->subject_codes && !code && i < article->subject_count;
         i++) {
        const char *c = article->subject_codes[i];
        const char *t = code_topic(rules, c);
        if (c && ((t && strcmp(t, topic) == 0) ||
                  (!t && nw_topic_normalize(article->subjects[i], norm, sizeof norm) == 0 &&
                   strcmp(norm, topic) == 0)))
            code = c;
    }
    for (size_t i = 0; rules && !code && i < rules->subject_count; i++)
        if (rules->subjects[i].code[0] && strcmp(rules->subjects[i].name, topic) == 0)
            code = rules->subjects[i].code;
    if (!code && rules)
        code = nw_medtop_code(rules->medtop, topic);
    *scheme = code && rules ? nw_medtop_scheme(rules->medtop, code) : NULL;
    return code;
}

size_t nw_route_topics(const nw_rules_t *rules, const char *subfolder,
                       const nw_article_t *article, char topics[][NW_TOPIC_MAX + 1])
{
    if (subfolder && nw_topic_normalize(subfolder, topics[0], NW_TOPIC_MAX + 1) == 0)
        return 1;
    size_t n = 0;
    for (size_t i = 0; article && i < article->subject_count && n < NW_ROUTE_MAX_TOPICS; i++) {
        const char *code = article->subject_codes ? article->subject_codes[i] : NULL;
        const char *coded = code_topic(rules, code);
        if (coded)
            memcpy(topics[n], coded, strlen(coded) + 1);
        else if (nw_topic_normalize(article->subjects[i], topics[n], NW_TOPIC_MAX + 1) != 0)
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
