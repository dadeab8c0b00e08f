/*
 * nw_codec: packs and unpacks the newswire v1 message map (proto/newswire-v1.md).
 *
 * Which keys each map has, their rules and their order come from the lists of
 * nw_fields.h, as tables (message_fields, source_fields, article_fields,
 * subject_fields) that the encoder and decoder walk; the code names no field but, in
 * reasons, the maps and the subject array.
 *
 * Encoding appends to a caller's msgpack_sbuffer: the article map on its own, then the
 * envelope map that embeds those article bytes verbatim. Every field is checked first
 * with the same rules the decoder applies, so the buffer is untouched on failure.
 *
 * Decoding takes (pointer, length) of one body frame, which may be hostile. A scan of
 * the raw bytes runs before msgpack-c sees them: msgpack-c allocates a container's
 * slots from its declared count, so counts, depth and object total are bounded here
 * first (a 5-byte header claiming 4 billion entries must cost nothing). Then the
 * object tree is checked key by key and every string is copied into one block that
 * also holds the nw_codec_message_t, which nw_codec_message_destroy() frees.
 */
#include "nw_codec.h"
#include "nw_topic.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------ field rules */

/* The kinds of nw_fields.h: first the rules of strings, then what is not a string. */
typedef enum {
    KIND_TEXT,  /* any length the message allows: description_text, body_text */
    KIND_SHORT, /* at most NW_CODEC_MAX_FIELD bytes */
    KIND_TOPIC,
    KIND_HEX32,
    KIND_HEX40,
    KIND_TIME, /* the last string kind */
    KIND_VERSION,
    KIND_SEQ,
    KIND_SOURCE,
    KIND_ARTICLE,
    KIND_SUBJECTS,
} kind_t;

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (len - i >= 8) { /* eight ASCII bytes at once: most text is ASCII */
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080u)) {
                i += 8;
                continue;
            }
        }
        unsigned char c = s[i];
        size_t n;
        unsigned char lo = 0x80, hi = 0xbf;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf)
            n = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else
            return false;
        if (len - i - 1 < n)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= n; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xbf)
                return false;
        i += n + 1;
    }
    return true;
}

static bool hex_valid(const char *s, size_t len, size_t want)
{
    if (len != want)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* Reads exactly n digits at s[*i] into *out, within [min, max]. */
static bool digits(const char *s, size_t len, size_t *i, size_t n, int min, int max, int *out)
{
    int v = 0;
    if (len - *i < n)
        return false;
    for (size_t k = 0; k < n; k++) {
        char c = s[*i + k];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *i += n;
    if (out)
        *out = v;
    return v >= min && v <= max;
}

static bool expect(const char *s, size_t len, size_t *i, char c)
{
    if (*i >= len || s[*i] != c)
        return false;
    (*i)++;
    return true;
}

/* RFC 3339 date-time in UTC: YYYY-MM-DDTHH:MM:SS[.fraction]Z (1 to 9 digits of
 * fraction). Producers write exactly 3; readers accept any, as RFC 3339 does. */
static bool time_valid(const char *s, size_t len)
{
    size_t i = 0;
    if (!digits(s, len, &i, 4, 0, 9999, NULL) || !expect(s, len, &i, '-') ||
        !digits(s, len, &i, 2, 1, 12, NULL) || !expect(s, len, &i, '-') ||
        !digits(s, len, &i, 2, 1, 31, NULL) || !expect(s, len, &i, 'T') ||
        !digits(s, len, &i, 2, 0, 23, NULL) || !expect(s, len, &i, ':') ||
        !digits(s, len, &i, 2, 0, 59, NULL) || !expect(s, len, &i, ':') ||
        !digits(s, len, &i, 2, 0, 60, NULL))
        return false;
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start || i - start > 9)
            return false;
    }
    return expect(s, len, &i, 'Z') && i == len;
}

/* How many of the first bytes of s are ASCII other than NUL (in whole blocks, then
 * byte by byte in a short tail): what follows is where a NUL or a multibyte sequence
 * may start. Text fields are mostly such bytes, so the two checks below need to read
 * only the rest, and most short fields none of it. */
static size_t plain_prefix(const unsigned char *s, size_t len)
{
    size_t i = 0;
#if defined(__SSE2__)
    for (; len - i >= 16; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *) (const void *) (s + i));
        if (_mm_movemask_epi8(_mm_or_si128(v, _mm_cmpeq_epi8(v, _mm_setzero_si128()))))
            break;
    }
#endif
    for (; len - i >= 8; i += 8) {
        const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
        uint64_t w;
        memcpy(&w, s + i, 8);
        if ((w | ((w - ones) & ~w)) & highs) /* a byte from 0x80, or a NUL */
            break;
    }
    if (len - i < 8) /* the tail of a string that is all plain so far */
        while (i < len && s[i] && s[i] < 0x80)
            i++;
    return i;
}

/* The checks every string field gets, on both sides of the wire. name is the key's
 * path for the reason ("article.headline"). */
static int check_string(const char *name, const char *s, size_t len, kind_t kind, char *errbuf,
                        size_t errlen)
{
    size_t plain = plain_prefix((const unsigned char *) s, len);
    if (plain < len && memchr(s + plain, '\0', len - plain)) {
        set_err(errbuf, errlen, "\"%s\" contains NUL", name);
        return -1;
    }
    if (plain < len && !utf8_valid((const unsigned char *) s + plain, len - plain)) {
        set_err(errbuf, errlen, "\"%s\" is not valid UTF-8", name);
        return -1;
    }
    switch (kind) {
    case KIND_TEXT: return 0;
    case KIND_SHORT:
        if (len > NW_CODEC_MAX_FIELD) {
            set_err(errbuf, errlen, "\"%s\" longer than %u bytes", name, NW_CODEC_MAX_FIELD);
            return -1;
        }
        return 0;
    case KIND_TOPIC:
        if (len > NW_TOPIC_MAX) {
            set_err(errbuf, errlen, "\"%s\" longer than %d bytes", name, NW_TOPIC_MAX);
            return -1;
        }
        if (!nw_topic_valid(s, len)) {
            set_err(errbuf, errlen, "\"%s\" is not a valid topic name", name);
            return -1;
        }
        return 0;
    case KIND_HEX32:
    case KIND_HEX40:
        if (!hex_valid(s, len, kind == KIND_HEX32 ? 32 : 40)) {
            set_err(errbuf, errlen, "\"%s\" is not %d lowercase hex digits", name,
                    kind == KIND_HEX32 ? 32 : 40);
            return -1;
        }
        return 0;
    case KIND_TIME:
        if (!time_valid(s, len)) {
            set_err(errbuf, errlen, "\"%s\" is not an RFC 3339 UTC time", name);
            return -1;
        }
        return 0;
    default: /* not a string kind: no string is one */ break;
    }
    set_err(errbuf, errlen, "\"%s\" is not a string field", name);
    return -1;
}

/* Checks a C string field of the encoder's input; NULL is "missing" when required. */
static int check_cstr(const char *name, const char *s, bool required, kind_t kind, char *errbuf,
                      size_t errlen)
{
    if (!s) {
        if (required)
            set_err(errbuf, errlen, "missing \"%s\"", name);
        return required ? -1 : 0;
    }
    return check_string(name, s, strlen(s), kind, errbuf, errlen);
}

/* ------------------------------------------------------------------ raw scan */

typedef enum { SCAN_OK, SCAN_TRUNCATED, SCAN_MALFORMED, SCAN_TOO_DEEP, SCAN_TOO_MANY } scan_rc_t;

typedef struct {
    const unsigned char *p;
    size_t len, pos;
    size_t objects;
} scan_t;

static bool scan_uint(scan_t *sc, size_t width, uint64_t *out)
{
    if (sc->len - sc->pos < width)
        return false;
    uint64_t v = 0;
    for (size_t k = 0; k < width; k++)
        v = (v << 8) | sc->p[sc->pos + k];
    sc->pos += width;
    *out = v;
    return true;
}

static scan_rc_t scan_skip(scan_t *sc, uint64_t n)
{
    if (sc->len - sc->pos < n)
        return SCAN_TRUNCATED;
    sc->pos += (size_t) n;
    return SCAN_OK;
}

/* Walks one object without allocating: every declared length must fit in what is
 * left of the buffer, containers nest at most NW_CODEC_MAX_DEPTH deep. */
static scan_rc_t scan_object(scan_t *sc, unsigned depth)
{
    if (sc->pos >= sc->len)
        return SCAN_TRUNCATED;
    if (++sc->objects > NW_CODEC_MAX_OBJECTS)
        return SCAN_TOO_MANY;
    unsigned char b = sc->p[sc->pos++];
    uint64_t n = 0;
    uint64_t elements; /* objects that follow inside a container */

    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return SCAN_OK;
    if (b >= 0xa0 && b <= 0xbf)
        return scan_skip(sc, b & 0x1f);
    switch (b) {
    case 0xc1: return SCAN_MALFORMED;
    case 0xc4:
    case 0xd9: return scan_uint(sc, 1, &n) ? scan_skip(sc, n) : SCAN_TRUNCATED;
    case 0xc5:
    case 0xda: return scan_uint(sc, 2, &n) ? scan_skip(sc, n) : SCAN_TRUNCATED;
    case 0xc6:
    case 0xdb: return scan_uint(sc, 4, &n) ? scan_skip(sc, n) : SCAN_TRUNCATED;
    case 0xc7: return scan_uint(sc, 1, &n) ? scan_skip(sc, n + 1) : SCAN_TRUNCATED;
    case 0xc8: return scan_uint(sc, 2, &n) ? scan_skip(sc, n + 1) : SCAN_TRUNCATED;
    case 0xc9: return scan_uint(sc, 4, &n) ? scan_skip(sc, n + 1) : SCAN_TRUNCATED;
    case 0xca: return scan_skip(sc, 4);
    case 0xcb: return scan_skip(sc, 8);
    case 0xcc:
    case 0xd0: return scan_skip(sc, 1);
    case 0xcd:
    case 0xd1: return scan_skip(sc, 2);
    case 0xce:
    case 0xd2: return scan_skip(sc, 4);
    case 0xcf:
    case 0xd3: return scan_skip(sc, 8);
    case 0xd4: return scan_skip(sc, 2);
    case 0xd5: return scan_skip(sc, 3);
    case 0xd6: return scan_skip(sc, 5);
    case 0xd7: return scan_skip(sc, 9);
    case 0xd8: return scan_skip(sc, 17);
    default: break;
    }
    /* What is left are the containers. */
    if (b >= 0x80 && b <= 0x8f)
        elements = 2u * (b & 0x0f);
    else if (b >= 0x90 && b <= 0x9f)
        elements = b & 0x0f;
    else if (b == 0xdc || b == 0xde) {
        if (!scan_uint(sc, 2, &n))
            return SCAN_TRUNCATED;
        elements = b == 0xde ? 2 * n : n;
    } else { /* 0xdd, 0xdf */
        if (!scan_uint(sc, 4, &n))
            return SCAN_TRUNCATED;
        elements = b == 0xdf ? 2 * n : n;
    }
    if (depth > NW_CODEC_MAX_DEPTH)
        return SCAN_TOO_DEEP;
    /* Each element takes at least one byte: a count beyond that is a lie. */
    if (elements > sc->len - sc->pos)
        return SCAN_TRUNCATED;
    for (uint64_t k = 0; k < elements; k++) {
        scan_rc_t rc = scan_object(sc, depth + 1);
        if (rc != SCAN_OK)
            return rc;
    }
    return SCAN_OK;
}

/* ------------------------------------------------------------------ field tables */

/* The lists of nw_fields.h as tables the encoder and decoder walk. */

typedef enum { P_REQUIRED, P_OPTIONAL, P_TEXT_DEFAULT } presence_t;

#define DEFAULT_TEXT "text" /* what a P_TEXT_DEFAULT field packs when NULL */

typedef struct {
    const char *key;  /* key in its map */
    const char *path; /* name in reasons */
    kind_t kind;
    presence_t presence;
    size_t offset; /* of its member in nw_envelope_t or nw_ninjs_t (strings, SEQ) */
} field_t;

#define OFFSET_TEXT(type, m) offsetof(type, m)
#define OFFSET_SHORT(type, m) offsetof(type, m)
#define OFFSET_TOPIC(type, m) offsetof(type, m)
#define OFFSET_HEX32(type, m) offsetof(type, m)
#define OFFSET_HEX40(type, m) offsetof(type, m)
#define OFFSET_TIME(type, m) offsetof(type, m)
#define OFFSET_SEQ(type, m) offsetof(type, m)
#define OFFSET_VERSION(type, m) 0
#define OFFSET_SOURCE(type, m) 0
#define OFFSET_ARTICLE(type, m) 0
#define OFFSET_SUBJECTS(type, m) 0

#define FIELD(prefix, type, member, key, kind, presence) \
    {key, prefix key, KIND_##kind, P_##presence, OFFSET_##kind(type, member)},
#define MESSAGE_FIELD(m, key, kind, presence, accessor) \
    FIELD("", nw_envelope_t, m, key, kind, presence)
#define SOURCE_FIELD(m, key, kind, presence, accessor) \
    FIELD("source.", nw_envelope_t, m, key, kind, presence)
#define ARTICLE_FIELD(m, key, kind, presence, accessor) \
    FIELD("article.", nw_ninjs_t, m, key, kind, presence)
#define SUBJECT_FIELD(m, key, kind, presence, accessor) \
    FIELD("article.subject.", nw_ninjs_t, m, key, kind, presence)

static const field_t message_fields[] = {NW_FIELDS_MESSAGE(MESSAGE_FIELD)};
static const field_t source_fields[] = {NW_FIELDS_SOURCE(SOURCE_FIELD)};
static const field_t article_fields[] = {NW_FIELDS_ARTICLE(ARTICLE_FIELD)};
static const field_t subject_fields[] = {NW_FIELDS_SUBJECT(SUBJECT_FIELD)};

#define COUNT(a) (sizeof(a) / sizeof(a)[0])
enum {
    N_MESSAGE = COUNT(message_fields),
    N_SOURCE = COUNT(source_fields),
    N_ARTICLE = COUNT(article_fields),
    N_SUBJECT = COUNT(subject_fields),
};

/* What each list may hold, so a line in the wrong list fails the build, not a message. */
#define IS_STRING(kind) (KIND_##kind <= KIND_TIME)
#define ASSERT_MESSAGE(m, key, kind, presence, accessor) \
    _Static_assert(KIND_##kind != KIND_SUBJECTS, "\"" key "\": subjects belong in the article");
#define ASSERT_STRINGS(m, key, kind, presence, accessor) \
    _Static_assert(IS_STRING(kind), "\"" key "\": the source and subject maps hold strings");
#define ASSERT_ARTICLE(m, key, kind, presence, accessor) \
    _Static_assert(IS_STRING(kind) || KIND_##kind == KIND_SUBJECTS, \
                   "\"article." key "\": the article holds strings and the subject array");
#define ASSERT_DEFAULT(m, key, kind, presence, accessor) \
    _Static_assert(P_##presence != P_TEXT_DEFAULT || IS_STRING(kind), \
                   "\"" key "\": only a string has a default");
NW_FIELDS_MESSAGE(ASSERT_MESSAGE)
NW_FIELDS_MESSAGE(ASSERT_DEFAULT)
NW_FIELDS_SOURCE(ASSERT_STRINGS)
NW_FIELDS_SUBJECT(ASSERT_STRINGS)
NW_FIELDS_ARTICLE(ASSERT_ARTICLE)
NW_FIELDS_ARTICLE(ASSERT_DEFAULT)
#define ONE_REQUIRED_ARTICLE(m, key, kind, presence, accessor) \
    +(KIND_##kind == KIND_ARTICLE && P_##presence == P_REQUIRED)
#define ONE_VERSION(m, key, kind, presence, accessor) \
    +(KIND_##kind == KIND_VERSION && P_##presence == P_REQUIRED)
#define AT_MOST_ONE_SOURCE(m, key, kind, presence, accessor) +(KIND_##kind == KIND_SOURCE)
#define AT_MOST_ONE_SUBJECTS(m, key, kind, presence, accessor) +(KIND_##kind == KIND_SUBJECTS)
_Static_assert(0 NW_FIELDS_MESSAGE(ONE_REQUIRED_ARTICLE) == 1, "one required article map");
_Static_assert(0 NW_FIELDS_MESSAGE(ONE_VERSION) == 1, "one required version");
_Static_assert(0 NW_FIELDS_MESSAGE(AT_MOST_ONE_SOURCE) <= 1, "one source map at most");
_Static_assert(0 NW_FIELDS_ARTICLE(AT_MOST_ONE_SUBJECTS) <= 1, "one subject array at most");

static bool is_string(kind_t kind)
{
    return kind <= KIND_TIME;
}

static const char *str_of(const void *base, const field_t *f)
{
    return *(const char *const *) ((const char *) base + f->offset);
}

/* A string field as the encoder packs it: its default when it has one and is NULL. */
static const char *packed_value(const void *base, const field_t *f)
{
    const char *s = str_of(base, f);
    return !s && f->presence == P_TEXT_DEFAULT ? DEFAULT_TEXT : s;
}

static const char *const *subject_array(const nw_ninjs_t *a, const field_t *f)
{
    return *(const char *const *const *) ((const char *) a + f->offset);
}

/* ------------------------------------------------------------------ encoder */

static int pack_cstr(msgpack_packer *pk, const char *s)
{
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

static int pack_kv(msgpack_packer *pk, const char *key, const char *value)
{
    return pack_cstr(pk, key) || pack_cstr(pk, value) ? -1 : 0;
}

/* Checks the string fields of base by the rules of fields; with all_optional a missing
 * required one is left for the caller to judge (the source map). */
static int check_fields(const void *base, const field_t *fields, size_t n, bool all_optional,
                        char *errbuf, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const field_t *f = &fields[i];
        if (is_string(f->kind) &&
            check_cstr(f->path, packed_value(base, f), !all_optional && f->presence != P_OPTIONAL,
                       f->kind, errbuf, errlen))
            return -1;
    }
    return 0;
}

/* The map of the string fields of base that are set, keys in list order. */
static int pack_strings(msgpack_packer *pk, const void *base, const field_t *fields, size_t n)
{
    size_t entries = 0;
    for (size_t i = 0; i < n; i++)
        entries += packed_value(base, &fields[i]) != NULL;
    int rc = msgpack_pack_map(pk, entries);
    for (size_t i = 0; !rc && i < n; i++) {
        const char *s = packed_value(base, &fields[i]);
        rc = s ? pack_kv(pk, fields[i].key, s) : 0;
    }
    return rc;
}

static int pack_subjects(msgpack_packer *pk, const nw_ninjs_t *a)
{
    int rc = msgpack_pack_array(pk, a->subject_count);
    for (size_t i = 0; !rc && i < a->subject_count; i++) {
        const char *values[N_SUBJECT];
        size_t entries = 0;
        for (size_t j = 0; j < N_SUBJECT; j++) {
            const char *const *array = subject_array(a, &subject_fields[j]);
            values[j] = array ? array[i] : NULL;
            entries += values[j] != NULL;
        }
        rc = msgpack_pack_map(pk, entries);
        for (size_t j = 0; !rc && j < N_SUBJECT; j++)
            rc = values[j] ? pack_kv(pk, subject_fields[j].key, values[j]) : 0;
    }
    return rc;
}

int nw_codec_pack_article(const nw_ninjs_t *a, msgpack_sbuffer *out, char *errbuf, size_t errlen)
{
    if (!a || !out) {
        set_err(errbuf, errlen, "no article or buffer");
        return -1;
    }
    if (check_fields(a, article_fields, N_ARTICLE, false, errbuf, errlen))
        return -1;
    if (a->subject_count > NW_CODEC_MAX_SUBJECTS) {
        set_err(errbuf, errlen, "\"article.subject\" has more than %u entries",
                NW_CODEC_MAX_SUBJECTS);
        return -1;
    }
    for (size_t j = 0; j < N_SUBJECT; j++)
        if (a->subject_count > 0 && subject_fields[j].presence != P_OPTIONAL &&
            !subject_array(a, &subject_fields[j])) {
            set_err(errbuf, errlen, "missing \"article.subject\"");
            return -1;
        }
    for (size_t i = 0; i < a->subject_count; i++)
        for (size_t j = 0; j < N_SUBJECT; j++) {
            const field_t *f = &subject_fields[j];
            const char *const *array = subject_array(a, f);
            if (check_cstr(f->path, array ? array[i] : NULL, f->presence != P_OPTIONAL, f->kind,
                           errbuf, errlen))
                return -1;
        }

    size_t start = out->size;
    size_t entries = 0;
    for (size_t i = 0; i < N_ARTICLE; i++)
        entries += article_fields[i].kind == KIND_SUBJECTS
                       ? a->subject_count > 0
                       : packed_value(a, &article_fields[i]) != NULL;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    /* Key order is part of the test vectors: make_vectors.py reads it from nw_fields.h. */
    int rc = msgpack_pack_map(&pk, entries);
    for (size_t i = 0; !rc && i < N_ARTICLE; i++) {
        const field_t *f = &article_fields[i];
        if (f->kind == KIND_SUBJECTS)
            rc = a->subject_count > 0 ? pack_cstr(&pk, f->key) || pack_subjects(&pk, a) : 0;
        else {
            const char *s = packed_value(a, f);
            rc = s ? pack_kv(&pk, f->key, s) : 0;
        }
    }
    if (rc) {
        set_err(errbuf, errlen, "out of memory packing the article");
        goto fail;
    }
    if (out->size - start > NW_CODEC_MAX_MESSAGE) {
        set_err(errbuf, errlen, "article larger than %u bytes", NW_CODEC_MAX_MESSAGE);
        goto fail;
    }
    return 0;
fail:
    out->size = start;
    return -1;
}

/* "file and format": the required keys of fields, for reasons. */
static void required_keys(const field_t *fields, size_t n, char *buf, size_t len)
{
    size_t total = 0, done = 0, used = 0;
    for (size_t i = 0; i < n; i++)
        total += fields[i].presence == P_REQUIRED;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < len; i++) {
        if (fields[i].presence != P_REQUIRED)
            continue;
        const char *sep = done == 0 ? "" : done + 1 == total ? " and " : ", ";
        int w = snprintf(buf + used, len - used, "%s%s", sep, fields[i].key);
        used += w > 0 ? (size_t) w : 0;
        done++;
    }
}

int nw_codec_pack_message(const nw_envelope_t *env, const void *article_mp, size_t article_len,
                          msgpack_sbuffer *out, char *errbuf, size_t errlen)
{
    if (!env || !out) {
        set_err(errbuf, errlen, "no envelope or buffer");
        return -1;
    }
    if (check_fields(env, message_fields, N_MESSAGE, false, errbuf, errlen) ||
        check_fields(env, source_fields, N_SOURCE, true, errbuf, errlen))
        return -1;
    for (size_t i = 0; i < N_MESSAGE; i++)
        if (message_fields[i].kind == KIND_SEQ &&
            *(const uint64_t *) ((const char *) env + message_fields[i].offset) == 0) {
            set_err(errbuf, errlen, "\"%s\" is 0 (sequences start at 1)", message_fields[i].path);
            return -1;
        }
    /* The source map goes when any of its required keys is set, and then with all. */
    bool any_required = false, all_required = true;
    const field_t *optional = NULL;
    for (size_t i = 0; i < N_SOURCE; i++) {
        const char *s = str_of(env, &source_fields[i]);
        if (source_fields[i].presence == P_REQUIRED) {
            any_required = any_required || s;
            all_required = all_required && s;
        } else if (s && !optional)
            optional = &source_fields[i];
    }
    if ((any_required && !all_required) || (optional && !any_required)) {
        char needs[128];
        required_keys(source_fields, N_SOURCE, needs, sizeof needs);
        if (optional && !any_required)
            set_err(errbuf, errlen, "\"%s\" needs %s", optional->path, needs);
        else
            set_err(errbuf, errlen, "\"source\" needs both %s", needs);
        return -1;
    }
    bool has_source = any_required;
    /* The article must be exactly one map, or the message would not parse. */
    const unsigned char *amp = article_mp;
    scan_t sc = {.p = amp, .len = article_len};
    if (!amp || article_len == 0 || scan_object(&sc, 2) != SCAN_OK || sc.pos != article_len ||
        !((amp[0] >= 0x80 && amp[0] <= 0x8f) || amp[0] == 0xde || amp[0] == 0xdf)) {
        set_err(errbuf, errlen, "\"article\" is not one packed map");
        return -1;
    }

    size_t start = out->size;
    size_t entries = 0;
    for (size_t i = 0; i < N_MESSAGE; i++) {
        const field_t *f = &message_fields[i];
        entries += f->kind == KIND_SOURCE ? has_source
                   : is_string(f->kind)   ? packed_value(env, f) != NULL
                                          : 1;
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    int rc = msgpack_pack_map(&pk, entries);
    for (size_t i = 0; !rc && i < N_MESSAGE; i++) {
        const field_t *f = &message_fields[i];
        switch (f->kind) {
        case KIND_VERSION:
            rc = pack_cstr(&pk, f->key) || msgpack_pack_uint64(&pk, NW_PROTO_VERSION);
            break;
        case KIND_SEQ:
            rc = pack_cstr(&pk, f->key) ||
                 msgpack_pack_uint64(&pk, *(const uint64_t *) ((const char *) env + f->offset));
            break;
        case KIND_SOURCE:
            if (has_source)
                rc = pack_cstr(&pk, f->key) || pack_strings(&pk, env, source_fields, N_SOURCE);
            break;
        case KIND_ARTICLE:
            rc = pack_cstr(&pk, f->key) || msgpack_sbuffer_write(out, article_mp, article_len);
            break;
        case KIND_SUBJECTS: /* not in the message map (asserted above) */ break;
        default: {
            const char *s = packed_value(env, f);
            rc = s ? pack_kv(&pk, f->key, s) : 0;
        }
        }
    }
    if (rc) {
        set_err(errbuf, errlen, "out of memory packing the message");
        goto fail;
    }
    if (out->size - start > NW_CODEC_MAX_MESSAGE) {
        set_err(errbuf, errlen, "message larger than %u bytes", NW_CODEC_MAX_MESSAGE);
        goto fail;
    }
    return 0;
fail:
    out->size = start;
    return -1;
}

/* ------------------------------------------------------------------ decoder */

/* A string as found in the input, until copied. */
typedef struct {
    const char *p;
    size_t len;
    bool present;
} view_t;

typedef enum { T_STR, T_UINT, T_MAP, T_ARRAY } want_t;

static want_t want_of(kind_t kind)
{
    switch (kind) {
    case KIND_VERSION:
    case KIND_SEQ: return T_UINT;
    case KIND_SOURCE:
    case KIND_ARTICLE: return T_MAP;
    case KIND_SUBJECTS: return T_ARRAY;
    default: return T_STR;
    }
}

static const char *type_name(want_t want)
{
    switch (want) {
    case T_STR: return "a string";
    case T_UINT: return "an unsigned integer";
    case T_MAP: return "a map";
    case T_ARRAY: return "an array";
    }
    return "?";
}

/* Finds the known keys of map (unknown ones are skipped: forward compatibility) and
 * checks their types and string rules; found[i] and views[i] are fields[i]'s. */
static int read_map(const msgpack_object *map, const field_t *fields, size_t n,
                    const msgpack_object **found, view_t *views, char *errbuf, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        found[i] = NULL;
        views[i] = (view_t) {NULL, 0, false};
    }
    for (uint32_t k = 0; k < map->via.map.size; k++) {
        const msgpack_object *key = &map->via.map.ptr[k].key;
        if (key->type != MSGPACK_OBJECT_STR) {
            set_err(errbuf, errlen, "a map key is not a string");
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            if (strlen(fields[i].key) != key->via.str.size ||
                memcmp(fields[i].key, key->via.str.ptr, key->via.str.size) != 0)
                continue;
            if (found[i]) {
                set_err(errbuf, errlen, "duplicate key \"%s\"", fields[i].path);
                return -1;
            }
            found[i] = &map->via.map.ptr[k].val;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const field_t *f = &fields[i];
        const msgpack_object *val = found[i];
        if (!val) {
            if (f->presence == P_REQUIRED) {
                set_err(errbuf, errlen, "missing key \"%s\"", f->path);
                return -1;
            }
            continue;
        }
        want_t want = want_of(f->kind);
        msgpack_object_type type = want == T_STR    ? MSGPACK_OBJECT_STR
                                   : want == T_UINT ? MSGPACK_OBJECT_POSITIVE_INTEGER
                                   : want == T_MAP  ? MSGPACK_OBJECT_MAP
                                                    : MSGPACK_OBJECT_ARRAY;
        if (val->type != type) {
            set_err(errbuf, errlen, "\"%s\" is not %s", f->path, type_name(want));
            return -1;
        }
        if (want == T_STR) {
            if (check_string(f->path, val->via.str.ptr, val->via.str.size, f->kind, errbuf,
                             errlen))
                return -1;
            views[i] = (view_t) {val->via.str.ptr, val->via.str.size, true};
        }
    }
    return 0;
}

static size_t views_size(const view_t *views, size_t n)
{
    size_t size = 0;
    for (size_t i = 0; i < n; i++)
        size += views[i].present ? views[i].len + 1 : 0;
    return size;
}

static const char *copy_view(char **cursor, const view_t *view)
{
    if (!view->present)
        return NULL;
    char *s = *cursor;
    memcpy(s, view->p, view->len);
    s[view->len] = '\0';
    *cursor += view->len + 1;
    return s;
}

/* Sets base's string members from their views, copied to *cursor. */
static void copy_fields(char **cursor, void *base, const field_t *fields, size_t n,
                        const view_t *views)
{
    for (size_t i = 0; i < n; i++)
        if (is_string(fields[i].kind))
            *(const char **) ((char *) base + fields[i].offset) = copy_view(cursor, &views[i]);
}

nw_codec_message_t *nw_codec_message_decode(const void *data, size_t len, char *errbuf,
                                            size_t errlen)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init(&unpacked);
    nw_codec_message_t *self = NULL;

    if (!data || len == 0) {
        set_err(errbuf, errlen, "empty message");
        goto fail;
    }
    if (len > NW_CODEC_MAX_MESSAGE) {
        set_err(errbuf, errlen, "message larger than %u bytes", NW_CODEC_MAX_MESSAGE);
        goto fail;
    }
    scan_t sc = {.p = data, .len = len};
    switch (scan_object(&sc, 1)) {
    case SCAN_OK: break;
    case SCAN_TRUNCATED: set_err(errbuf, errlen, "truncated message"); goto fail;
    case SCAN_MALFORMED: set_err(errbuf, errlen, "malformed MessagePack"); goto fail;
    case SCAN_TOO_DEEP:
        set_err(errbuf, errlen, "nested deeper than %u levels", NW_CODEC_MAX_DEPTH);
        goto fail;
    case SCAN_TOO_MANY:
        set_err(errbuf, errlen, "more than %u objects", NW_CODEC_MAX_OBJECTS);
        goto fail;
    }
    if (sc.pos != len) {
        set_err(errbuf, errlen, "trailing bytes after the message map");
        goto fail;
    }
    size_t off = 0;
    if (msgpack_unpack_next(&unpacked, (const char *) data, len, &off) !=
            MSGPACK_UNPACK_SUCCESS ||
        off != len) {
        set_err(errbuf, errlen, "malformed MessagePack");
        goto fail;
    }
    const msgpack_object *root = &unpacked.data;
    if (root->type != MSGPACK_OBJECT_MAP) {
        set_err(errbuf, errlen, "message is not a map");
        goto fail;
    }

    /* Version first: a v2 message may break any other rule and must say why. */
    for (uint32_t k = 0; k < root->via.map.size; k++) {
        const msgpack_object_kv *kv = &root->via.map.ptr[k];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 1 &&
            kv->key.via.str.ptr[0] == 'v' && kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
            kv->val.via.u64 != NW_PROTO_VERSION) {
            set_err(errbuf, errlen, "unsupported version %llu",
                    (unsigned long long) kv->val.via.u64);
            goto fail;
        }
    }

    const msgpack_object *mfound[N_MESSAGE], *sfound[N_SOURCE], *afound[N_ARTICLE];
    const msgpack_object *subfound[N_SUBJECT];
    view_t mviews[N_MESSAGE], sviews[N_SOURCE] = {{NULL, 0, false}}, aviews[N_ARTICLE];
    if (read_map(root, message_fields, N_MESSAGE, mfound, mviews, errbuf, errlen))
        goto fail;
    const msgpack_object *source = NULL, *article = NULL;
    for (size_t i = 0; i < N_MESSAGE; i++) {
        if (message_fields[i].kind == KIND_SEQ && mfound[i] && mfound[i]->via.u64 == 0) {
            set_err(errbuf, errlen, "\"%s\" is 0 (sequences start at 1)", message_fields[i].path);
            goto fail;
        }
        if (message_fields[i].kind == KIND_SOURCE)
            source = mfound[i];
        if (message_fields[i].kind == KIND_ARTICLE)
            article = mfound[i]; /* required: read_map saw it */
    }
    if (source && read_map(source, source_fields, N_SOURCE, sfound, sviews, errbuf, errlen))
        goto fail;
    if (read_map(article, article_fields, N_ARTICLE, afound, aviews, errbuf, errlen))
        goto fail;

    const msgpack_object *subjects = NULL;
    for (size_t i = 0; i < N_ARTICLE; i++)
        if (article_fields[i].kind == KIND_SUBJECTS)
            subjects = afound[i];
    view_t subviews[NW_CODEC_MAX_SUBJECTS][N_SUBJECT];
    size_t subject_count = 0;
    bool any_optional = false; /* then every subject array is there, else only required ones */
    if (subjects) {
        const msgpack_object_array *arr = &subjects->via.array;
        if (arr->size > NW_CODEC_MAX_SUBJECTS) {
            set_err(errbuf, errlen, "\"article.subject\" has more than %u entries",
                    NW_CODEC_MAX_SUBJECTS);
            goto fail;
        }
        for (uint32_t i = 0; i < arr->size; i++) {
            if (arr->ptr[i].type != MSGPACK_OBJECT_MAP) {
                set_err(errbuf, errlen, "\"article.subject\" entry is not a map");
                goto fail;
            }
            if (read_map(&arr->ptr[i], subject_fields, N_SUBJECT, subfound, subviews[i], errbuf,
                         errlen))
                goto fail;
            for (size_t j = 0; j < N_SUBJECT; j++)
                any_optional = any_optional ||
                               (subject_fields[j].presence == P_OPTIONAL && subfound[j]);
        }
        subject_count = arr->size;
    }

    /* One block: the struct, the subject arrays, then every string. */
    size_t arrays = 0;
    for (size_t j = 0; j < N_SUBJECT; j++)
        arrays += subject_fields[j].presence != P_OPTIONAL || any_optional;
    size_t size = sizeof *self + arrays * subject_count * sizeof(char *) +
                  views_size(mviews, N_MESSAGE) + views_size(sviews, N_SOURCE) +
                  views_size(aviews, N_ARTICLE);
    for (size_t i = 0; i < subject_count; i++)
        size += views_size(subviews[i], N_SUBJECT);
    self = calloc(1, size);
    if (!self) {
        set_err(errbuf, errlen, "out of memory");
        goto fail;
    }
    const char **block = (const char **) (self + 1);
    char *cursor = (char *) (block + arrays * subject_count);
    self->v = NW_PROTO_VERSION;
    for (size_t i = 0; i < N_MESSAGE; i++)
        if (message_fields[i].kind == KIND_SEQ)
            *(uint64_t *) ((char *) &self->env + message_fields[i].offset) = mfound[i]->via.u64;
    copy_fields(&cursor, &self->env, message_fields, N_MESSAGE, mviews);
    copy_fields(&cursor, &self->env, source_fields, N_SOURCE, sviews);
    copy_fields(&cursor, &self->article, article_fields, N_ARTICLE, aviews);
    for (size_t j = 0; j < N_SUBJECT && subject_count > 0; j++) {
        if (subject_fields[j].presence == P_OPTIONAL && !any_optional)
            continue; /* stays NULL */
        for (size_t i = 0; i < subject_count; i++)
            block[i] = copy_view(&cursor, &subviews[i][j]);
        *(const char *const **) ((char *) &self->article + subject_fields[j].offset) = block;
        block += subject_count;
    }
    self->article.subject_count = subject_count;
    msgpack_unpacked_destroy(&unpacked);
    return self;
fail:
    msgpack_unpacked_destroy(&unpacked);
    free(self);
    return NULL;
}

void nw_codec_message_destroy(nw_codec_message_t **self_p)
{
    if (self_p && *self_p) {
        free(*self_p);
        *self_p = NULL;
    }
}

/* ------------------------------------------------------------------ time */

void nw_codec_format_time(int64_t unix_ms, char *buf)
{
    /* RFC 3339 has four-digit years: clamp to 0000-01-01 .. 9999-12-31T23:59:59.999. */
    const int64_t min_ms = -62167219200000LL, max_ms = 253402300799999LL;
    if (unix_ms < min_ms)
        unix_ms = min_ms;
    if (unix_ms > max_ms)
        unix_ms = max_ms;
    int64_t secs = unix_ms / 1000, ms = unix_ms % 1000;
    if (ms < 0) { /* floor, so 1969 times read forwards within their second */
        ms += 1000;
        secs -= 1;
    }
    time_t t = (time_t) secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(buf, NW_CODEC_TIME_LEN, "1970-01-01T00:00:00.000Z");
        return;
    }
    /* Digits written in place: snprintf took ten times as long, and every article
     * formats two times (its versioncreated, the envelope's). The modulos change
     * nothing after the clamp. */
    const unsigned fields[7][2] = {
        {(unsigned) (tm.tm_year + 1900) % 10000u, 4},
        {(unsigned) (tm.tm_mon + 1) % 100u, 2},
        {(unsigned) tm.tm_mday % 100u, 2},
        {(unsigned) tm.tm_hour % 100u, 2},
        {(unsigned) tm.tm_min % 100u, 2},
        {(unsigned) tm.tm_sec % 100u, 2},
        {(unsigned) ms % 1000u, 3},
    };
    static const char after[7] = {'-', '-', 'T', ':', ':', '.', 'Z'};
    char *o = buf;
    for (size_t f = 0; f < 7; f++) {
        unsigned v = fields[f][0], width = fields[f][1];
        for (unsigned d = width; d-- > 0; v /= 10)
            o[d] = (char) ('0' + v % 10);
        o += width;
        *o++ = after[f];
    }
    *o = '\0';
}
