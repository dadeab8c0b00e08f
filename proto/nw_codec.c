/*
 * nw_codec: packs and unpacks the newswire v1 message map (proto/newswire-v1.md).
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
    if (!errbuf || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, errlen, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------ field rules */

typedef enum {
    KIND_TEXT,    /* any length the message allows: description_text, body_text */
    KIND_SHORT,   /* at most NW_CODEC_MAX_FIELD bytes */
    KIND_TOPIC,
    KIND_HEX32,
    KIND_HEX40,
    KIND_TIME,
} str_kind_t;

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool
utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        if (len - i >= 8) {   /* eight ASCII bytes at once: most text is ASCII */
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
        }
        else if (c >= 0xc2 && c <= 0xdf)
            n = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            if (c == 0xe0)
                lo = 0xa0;
            else if (c == 0xed)
                hi = 0x9f;
        }
        else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        }
        else
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

static bool
hex_valid(const char *s, size_t len, size_t want)
{
    if (len != want)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

/* Reads exactly n digits at s[*i] into *out, within [min, max]. */
static bool
digits(const char *s, size_t len, size_t *i, size_t n, int min, int max, int *out)
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

static bool
expect(const char *s, size_t len, size_t *i, char c)
{
    if (*i >= len || s[*i] != c)
        return false;
    (*i)++;
    return true;
}

/* RFC 3339 date-time in UTC: YYYY-MM-DDTHH:MM:SS[.fraction]Z (1 to 9 digits of
 * fraction). Producers write exactly 3; readers accept any, as RFC 3339 does. */
static bool
time_valid(const char *s, size_t len)
{
    size_t i = 0;
    if (!digits(s, len, &i, 4, 0, 9999, NULL) || !expect(s, len, &i, '-')
        || !digits(s, len, &i, 2, 1, 12, NULL) || !expect(s, len, &i, '-')
        || !digits(s, len, &i, 2, 1, 31, NULL) || !expect(s, len, &i, 'T')
        || !digits(s, len, &i, 2, 0, 23, NULL) || !expect(s, len, &i, ':')
        || !digits(s, len, &i, 2, 0, 59, NULL) || !expect(s, len, &i, ':')
        || !digits(s, len, &i, 2, 0, 60, NULL))
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

/* The checks every string field gets, on both sides of the wire. name is the key's
 * path for the reason ("article.headline"). */
static int
check_string(const char *name, const char *s, size_t len, str_kind_t kind,
             char *errbuf, size_t errlen)
{
    if (memchr(s, '\0', len)) {
        set_err(errbuf, errlen, "\"%s\" contains NUL", name);
        return -1;
    }
    if (!utf8_valid((const unsigned char *) s, len)) {
        set_err(errbuf, errlen, "\"%s\" is not valid UTF-8", name);
        return -1;
    }
    switch (kind) {
    case KIND_TEXT:
        return 0;
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
    }
    return -1;
}

/* Checks a C string field of the encoder's input; NULL is "missing" when required. */
static int
check_cstr(const char *name, const char *s, bool required, str_kind_t kind,
           char *errbuf, size_t errlen)
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

static bool
scan_uint(scan_t *sc, size_t width, uint64_t *out)
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

static scan_rc_t
scan_skip(scan_t *sc, uint64_t n)
{
    if (sc->len - sc->pos < n)
        return SCAN_TRUNCATED;
    sc->pos += (size_t) n;
    return SCAN_OK;
}

/* Walks one object without allocating: every declared length must fit in what is
 * left of the buffer, containers nest at most NW_CODEC_MAX_DEPTH deep. */
static scan_rc_t
scan_object(scan_t *sc, unsigned depth)
{
    if (sc->pos >= sc->len)
        return SCAN_TRUNCATED;
    if (++sc->objects > NW_CODEC_MAX_OBJECTS)
        return SCAN_TOO_MANY;
    unsigned char b = sc->p[sc->pos++];
    uint64_t n = 0;
    uint64_t elements;      /* objects that follow inside a container */

    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return SCAN_OK;
    if (b >= 0xa0 && b <= 0xbf)
        return scan_skip(sc, b & 0x1f);
    switch (b) {
    case 0xc1:
        return SCAN_MALFORMED;
    case 0xc4: case 0xd9:
        return scan_uint(sc, 1, &n) ? scan_skip(sc, n) : SCAN_TRUNCATED;
    case 0xc5: case 0xda:
        return scan_uint(sc, 2, &n) ? scan_skip(sc, n) : SCAN_TRUNCATED;
    case 0xc6: case 0xdb:
        return scan_uint(sc, 4, &n) ? scan_skip(sc, n) : SCAN_TRUNCATED;
    case 0xc7:
        return scan_uint(sc, 1, &n) ? scan_skip(sc, n + 1) : SCAN_TRUNCATED;
    case 0xc8:
        return scan_uint(sc, 2, &n) ? scan_skip(sc, n + 1) : SCAN_TRUNCATED;
    case 0xc9:
        return scan_uint(sc, 4, &n) ? scan_skip(sc, n + 1) : SCAN_TRUNCATED;
    case 0xca: return scan_skip(sc, 4);
    case 0xcb: return scan_skip(sc, 8);
    case 0xcc: case 0xd0: return scan_skip(sc, 1);
    case 0xcd: case 0xd1: return scan_skip(sc, 2);
    case 0xce: case 0xd2: return scan_skip(sc, 4);
    case 0xcf: case 0xd3: return scan_skip(sc, 8);
    case 0xd4: return scan_skip(sc, 2);
    case 0xd5: return scan_skip(sc, 3);
    case 0xd6: return scan_skip(sc, 5);
    case 0xd7: return scan_skip(sc, 9);
    case 0xd8: return scan_skip(sc, 17);
    default:
        break;
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
    }
    else {   /* 0xdd, 0xdf */
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

/* ------------------------------------------------------------------ encoder */

static int
pack_cstr(msgpack_packer *pk, const char *s)
{
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

static int
pack_kv(msgpack_packer *pk, const char *key, const char *value)
{
    return pack_cstr(pk, key) || pack_cstr(pk, value) ? -1 : 0;
}

int
nw_codec_pack_article(const nw_ninjs_t *a, msgpack_sbuffer *out, char *errbuf, size_t errlen)
{
    if (!a || !out) {
        set_err(errbuf, errlen, "no article or buffer");
        return -1;
    }
    const char *type = a->type ? a->type : "text";
    if (check_cstr("article.uri", a->uri, true, KIND_SHORT, errbuf, errlen)
        || check_cstr("article.type", type, true, KIND_SHORT, errbuf, errlen)
        || check_cstr("article.versioncreated", a->versioncreated, true, KIND_TIME, errbuf, errlen)
        || check_cstr("article.headline", a->headline, true, KIND_SHORT, errbuf, errlen)
        || check_cstr("article.byline", a->byline, false, KIND_SHORT, errbuf, errlen)
        || check_cstr("article.description_text", a->description_text, false, KIND_TEXT,
                      errbuf, errlen)
        || check_cstr("article.body_text", a->body_text, true, KIND_TEXT, errbuf, errlen)
        || check_cstr("article.language", a->language, false, KIND_SHORT, errbuf, errlen)
        || check_cstr("article.version", a->version, false, KIND_SHORT, errbuf, errlen)
        || check_cstr("article.located", a->located, false, KIND_SHORT, errbuf, errlen))
        return -1;
    if (a->subject_count > NW_CODEC_MAX_SUBJECTS) {
        set_err(errbuf, errlen, "\"article.subject\" has more than %u entries",
                NW_CODEC_MAX_SUBJECTS);
        return -1;
    }
    if (a->subject_count > 0 && !a->subjects) {
        set_err(errbuf, errlen, "missing \"article.subject\"");
        return -1;
    }
    for (size_t i = 0; i < a->subject_count; i++)
        if (check_cstr("article.subject.name", a->subjects[i], true, KIND_SHORT,
                       errbuf, errlen)
            || check_cstr("article.subject.code", a->subject_codes ? a->subject_codes[i] : NULL,
                          false, KIND_SHORT, errbuf, errlen)
            || check_cstr("article.subject.scheme",
                          a->subject_schemes ? a->subject_schemes[i] : NULL, false, KIND_SHORT,
                          errbuf, errlen))
            return -1;

    size_t start = out->size;
    size_t entries = 5 + (a->byline != NULL) + (a->description_text != NULL)
                     + (a->language != NULL) + (a->version != NULL) + (a->located != NULL)
                     + (a->subject_count > 0);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    /* Key order is part of the test vectors: proto/vectors/make_vectors.py uses it too. */
    int rc = msgpack_pack_map(&pk, entries)
             || pack_kv(&pk, "uri", a->uri)
             || pack_kv(&pk, "type", type)
             || pack_kv(&pk, "versioncreated", a->versioncreated)
             || pack_kv(&pk, "headline", a->headline)
             || (a->byline && pack_kv(&pk, "byline", a->byline))
             || (a->description_text && pack_kv(&pk, "description_text", a->description_text))
             || pack_kv(&pk, "body_text", a->body_text)
             || (a->language && pack_kv(&pk, "language", a->language))
             || (a->version && pack_kv(&pk, "version", a->version))
             || (a->located && pack_kv(&pk, "located", a->located));
    if (!rc && a->subject_count > 0) {
        rc = pack_cstr(&pk, "subject") || msgpack_pack_array(&pk, a->subject_count);
        for (size_t i = 0; !rc && i < a->subject_count; i++) {
            const char *code = a->subject_codes ? a->subject_codes[i] : NULL;
            const char *scheme = a->subject_schemes ? a->subject_schemes[i] : NULL;
            rc = msgpack_pack_map(&pk, 1 + (code != NULL) + (scheme != NULL))
                 || pack_kv(&pk, "name", a->subjects[i])
                 || (scheme && pack_kv(&pk, "scheme", scheme))
                 || (code && pack_kv(&pk, "code", code));
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

int
nw_codec_pack_message(const nw_envelope_t *env, const void *article_mp, size_t article_len,
                      msgpack_sbuffer *out, char *errbuf, size_t errlen)
{
    if (!env || !out) {
        set_err(errbuf, errlen, "no envelope or buffer");
        return -1;
    }
    if (check_cstr("topic", env->topic, true, KIND_TOPIC, errbuf, errlen)
        || check_cstr("epoch", env->epoch, true, KIND_HEX32, errbuf, errlen)
        || check_cstr("id", env->id, true, KIND_HEX40, errbuf, errlen)
        || check_cstr("sent", env->sent, true, KIND_TIME, errbuf, errlen)
        || check_cstr("source.file", env->source_file, false, KIND_SHORT, errbuf, errlen)
        || check_cstr("source.format", env->source_format, false, KIND_SHORT, errbuf, errlen)
        || check_cstr("source.encoding", env->source_encoding, false, KIND_SHORT, errbuf,
                      errlen))
        return -1;
    if (env->seq == 0) {
        set_err(errbuf, errlen, "\"seq\" is 0 (sequences start at 1)");
        return -1;
    }
    bool has_source = env->source_file || env->source_format;
    if (has_source && !(env->source_file && env->source_format)) {
        set_err(errbuf, errlen, "\"source\" needs both file and format");
        return -1;
    }
    if (env->source_encoding && !has_source) {
        set_err(errbuf, errlen, "\"source.encoding\" needs file and format");
        return -1;
    }
    /* The article must be exactly one map, or the message would not parse. */
    const unsigned char *amp = article_mp;
    scan_t sc = { .p = amp, .len = article_len };
    if (!amp || article_len == 0 || scan_object(&sc, 2) != SCAN_OK || sc.pos != article_len
        || !((amp[0] >= 0x80 && amp[0] <= 0x8f) || amp[0] == 0xde || amp[0] == 0xdf)) {
        set_err(errbuf, errlen, "\"article\" is not one packed map");
        return -1;
    }

    size_t start = out->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    int rc = msgpack_pack_map(&pk, has_source ? 8 : 7)
             || pack_cstr(&pk, "v") || msgpack_pack_uint64(&pk, NW_PROTO_VERSION)
             || pack_kv(&pk, "topic", env->topic)
             || pack_cstr(&pk, "seq") || msgpack_pack_uint64(&pk, env->seq)
             || pack_kv(&pk, "epoch", env->epoch)
             || pack_kv(&pk, "id", env->id)
             || pack_kv(&pk, "sent", env->sent);
    if (!rc && has_source)
        rc = pack_cstr(&pk, "source") || msgpack_pack_map(&pk, env->source_encoding ? 3 : 2)
             || pack_kv(&pk, "file", env->source_file)
             || pack_kv(&pk, "format", env->source_format)
             || (env->source_encoding && pack_kv(&pk, "encoding", env->source_encoding));
    if (!rc)
        rc = pack_cstr(&pk, "article") || msgpack_sbuffer_write(out, article_mp, article_len);
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

/* Where each decoded string lands; views into the input until copied. */
enum {
    S_TOPIC, S_EPOCH, S_ID, S_SENT, S_SRC_FILE, S_SRC_FORMAT, S_SRC_ENCODING,
    S_URI, S_TYPE, S_VERSIONCREATED, S_HEADLINE, S_BYLINE, S_DESCRIPTION, S_BODY,
    S_LANGUAGE, S_VERSION, S_LOCATED, S_COUNT
};

typedef struct {
    const char *p;
    size_t len;
    bool present;
} view_t;

typedef enum { T_STR, T_UINT, T_MAP, T_ARRAY } want_t;

typedef struct {
    const char *key;       /* key in its map */
    const char *path;      /* name in reasons */
    want_t want;
    bool required;
    int slot;              /* S_* for strings, -1 otherwise */
    str_kind_t kind;
} key_spec_t;

static const key_spec_t message_keys[] = {
    { "v",       "v",       T_UINT, true,  -1,           KIND_SHORT },
    { "topic",   "topic",   T_STR,  true,  S_TOPIC,      KIND_TOPIC },
    { "seq",     "seq",     T_UINT, true,  -1,           KIND_SHORT },
    { "epoch",   "epoch",   T_STR,  true,  S_EPOCH,      KIND_HEX32 },
    { "id",      "id",      T_STR,  true,  S_ID,         KIND_HEX40 },
    { "sent",    "sent",    T_STR,  true,  S_SENT,       KIND_TIME },
    { "source",  "source",  T_MAP,  false, -1,           KIND_SHORT },
    { "article", "article", T_MAP,  true,  -1,           KIND_SHORT },
};
enum { K_V, K_TOPIC, K_SEQ, K_EPOCH, K_ID, K_SENT, K_SOURCE, K_ARTICLE, K_MESSAGE_COUNT };

static const key_spec_t source_keys[] = {
    { "file",   "source.file",   T_STR, true, S_SRC_FILE,   KIND_SHORT },
    { "format", "source.format", T_STR, true, S_SRC_FORMAT, KIND_SHORT },
    { "encoding", "source.encoding", T_STR, false, S_SRC_ENCODING, KIND_SHORT },
};

static const key_spec_t article_keys[] = {
    { "uri",              "article.uri",              T_STR,   true,  S_URI,            KIND_SHORT },
    { "type",             "article.type",             T_STR,   false, S_TYPE,           KIND_SHORT },
    { "versioncreated",   "article.versioncreated",   T_STR,   true,  S_VERSIONCREATED, KIND_TIME },
    { "headline",         "article.headline",         T_STR,   true,  S_HEADLINE,       KIND_SHORT },
    { "byline",           "article.byline",           T_STR,   false, S_BYLINE,         KIND_SHORT },
    { "description_text", "article.description_text", T_STR,   false, S_DESCRIPTION,    KIND_TEXT },
    { "body_text",        "article.body_text",        T_STR,   true,  S_BODY,           KIND_TEXT },
    { "language",         "article.language",         T_STR,   false, S_LANGUAGE,       KIND_SHORT },
    { "version",          "article.version",          T_STR,   false, S_VERSION,        KIND_SHORT },
    { "located",          "article.located",          T_STR,   false, S_LOCATED,        KIND_SHORT },
    { "subject",          "article.subject",          T_ARRAY, false, -1,               KIND_SHORT },
};
enum { K_SUBJECT = 10, K_ARTICLE_COUNT };
_Static_assert(sizeof article_keys / sizeof article_keys[0] == K_ARTICLE_COUNT,
               "K_SUBJECT is the index of subject, the last of article_keys");

static const key_spec_t subject_keys[] = {
    { "name",   "article.subject.name",   T_STR, true,  -1, KIND_SHORT },
    { "scheme", "article.subject.scheme", T_STR, false, -1, KIND_SHORT },
    { "code",   "article.subject.code",   T_STR, false, -1, KIND_SHORT },
};

#define MAX_KEYS 11

static const char *
type_name(want_t want)
{
    switch (want) {
    case T_STR:   return "a string";
    case T_UINT:  return "an unsigned integer";
    case T_MAP:   return "a map";
    case T_ARRAY: return "an array";
    }
    return "?";
}

/* Finds the known keys of map (unknown ones are skipped: forward compatibility) and
 * checks their types and string rules; string values go to views[spec.slot]. */
static int
read_map(const msgpack_object *map, const key_spec_t *specs, size_t nspecs,
         const msgpack_object **found, view_t *views, char *errbuf, size_t errlen)
{
    for (size_t i = 0; i < nspecs; i++)
        found[i] = NULL;
    for (uint32_t k = 0; k < map->via.map.size; k++) {
        const msgpack_object *key = &map->via.map.ptr[k].key;
        if (key->type != MSGPACK_OBJECT_STR) {
            set_err(errbuf, errlen, "a map key is not a string");
            return -1;
        }
        for (size_t i = 0; i < nspecs; i++) {
            if (strlen(specs[i].key) != key->via.str.size
                || memcmp(specs[i].key, key->via.str.ptr, key->via.str.size) != 0)
                continue;
            if (found[i]) {
                set_err(errbuf, errlen, "duplicate key \"%s\"", specs[i].path);
                return -1;
            }
            found[i] = &map->via.map.ptr[k].val;
        }
    }
    for (size_t i = 0; i < nspecs; i++) {
        const key_spec_t *spec = &specs[i];
        const msgpack_object *val = found[i];
        if (!val) {
            if (spec->required) {
                set_err(errbuf, errlen, "missing key \"%s\"", spec->path);
                return -1;
            }
            continue;
        }
        msgpack_object_type want = spec->want == T_STR ? MSGPACK_OBJECT_STR
                                 : spec->want == T_UINT ? MSGPACK_OBJECT_POSITIVE_INTEGER
                                 : spec->want == T_MAP ? MSGPACK_OBJECT_MAP
                                 : MSGPACK_OBJECT_ARRAY;
        if (val->type != want) {
            set_err(errbuf, errlen, "\"%s\" is not %s", spec->path, type_name(spec->want));
            return -1;
        }
        if (spec->want == T_STR) {
            if (check_string(spec->path, val->via.str.ptr, val->via.str.size, spec->kind,
                             errbuf, errlen))
                return -1;
            if (spec->slot >= 0)
                views[spec->slot] = (view_t) { val->via.str.ptr, val->via.str.size, true };
        }
    }
    return 0;
}

static const char *
copy_view(char **cursor, const view_t *view)
{
    if (!view->present)
        return NULL;
    char *s = *cursor;
    memcpy(s, view->p, view->len);
    s[view->len] = '\0';
    *cursor += view->len + 1;
    return s;
}

nw_codec_message_t *
nw_codec_message_decode(const void *data, size_t len, char *errbuf, size_t errlen)
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
    scan_t sc = { .p = data, .len = len };
    switch (scan_object(&sc, 1)) {
    case SCAN_OK:
        break;
    case SCAN_TRUNCATED:
        set_err(errbuf, errlen, "truncated message");
        goto fail;
    case SCAN_MALFORMED:
        set_err(errbuf, errlen, "malformed MessagePack");
        goto fail;
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
    if (msgpack_unpack_next(&unpacked, (const char *) data, len, &off) != MSGPACK_UNPACK_SUCCESS
        || off != len) {
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
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == 1
            && kv->key.via.str.ptr[0] == 'v' && kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER
            && kv->val.via.u64 != NW_PROTO_VERSION) {
            set_err(errbuf, errlen, "unsupported version %llu",
                    (unsigned long long) kv->val.via.u64);
            goto fail;
        }
    }

    view_t views[S_COUNT] = { { NULL, 0, false } };
    const msgpack_object *found[MAX_KEYS], *afound[MAX_KEYS], *sfound[MAX_KEYS];
    if (read_map(root, message_keys, K_MESSAGE_COUNT, found, views, errbuf, errlen))
        goto fail;
    uint64_t seq = found[K_SEQ]->via.u64;
    if (seq == 0) {
        set_err(errbuf, errlen, "\"seq\" is 0 (sequences start at 1)");
        goto fail;
    }
    if (found[K_SOURCE] && read_map(found[K_SOURCE], source_keys, 3, sfound, views,
                                    errbuf, errlen))
        goto fail;
    if (read_map(found[K_ARTICLE], article_keys, K_ARTICLE_COUNT, afound, views,
                 errbuf, errlen))
        goto fail;

    view_t subjects[NW_CODEC_MAX_SUBJECTS], codes[NW_CODEC_MAX_SUBJECTS];
    view_t schemes[NW_CODEC_MAX_SUBJECTS];
    size_t subject_count = 0;
    bool any_code = false;
    if (afound[K_SUBJECT]) {
        const msgpack_object_array *arr = &afound[K_SUBJECT]->via.array;
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
            if (read_map(&arr->ptr[i], subject_keys, 3, sfound, views, errbuf, errlen))
                goto fail;
            subjects[i] = (view_t) { sfound[0]->via.str.ptr, sfound[0]->via.str.size, true };
            schemes[i] = sfound[1] ? (view_t) { sfound[1]->via.str.ptr, sfound[1]->via.str.size,
                                                true } : (view_t) { NULL, 0, false };
            codes[i] = sfound[2] ? (view_t) { sfound[2]->via.str.ptr, sfound[2]->via.str.size,
                                              true } : (view_t) { NULL, 0, false };
            any_code = any_code || sfound[1] || sfound[2];
        }
        subject_count = arr->size;
    }

    /* One block: the struct, the subject pointers (names, then codes and schemes when
     * any subject has one), then every string. */
    size_t arrays = any_code ? 3 : 1;
    size_t size = sizeof *self + arrays * subject_count * sizeof(char *);
    for (size_t i = 0; i < S_COUNT; i++)
        size += views[i].present ? views[i].len + 1 : 0;
    for (size_t i = 0; i < subject_count; i++)
        size += subjects[i].len + 1 + (any_code ? codes[i].present + codes[i].len
                                       + schemes[i].present + schemes[i].len : 0);
    self = calloc(1, size);
    if (!self) {
        set_err(errbuf, errlen, "out of memory");
        goto fail;
    }
    const char **names = (const char **) (self + 1);
    const char **code_ptrs = names + subject_count, **scheme_ptrs = code_ptrs + subject_count;
    char *cursor = (char *) (names + arrays * subject_count);
    self->v = NW_PROTO_VERSION;
    self->env.topic = copy_view(&cursor, &views[S_TOPIC]);
    self->env.seq = seq;
    self->env.epoch = copy_view(&cursor, &views[S_EPOCH]);
    self->env.id = copy_view(&cursor, &views[S_ID]);
    self->env.sent = copy_view(&cursor, &views[S_SENT]);
    self->env.source_file = copy_view(&cursor, &views[S_SRC_FILE]);
    self->env.source_format = copy_view(&cursor, &views[S_SRC_FORMAT]);
    self->env.source_encoding = copy_view(&cursor, &views[S_SRC_ENCODING]);
    self->article.uri = copy_view(&cursor, &views[S_URI]);
    self->article.type = copy_view(&cursor, &views[S_TYPE]);
    self->article.versioncreated = copy_view(&cursor, &views[S_VERSIONCREATED]);
    self->article.headline = copy_view(&cursor, &views[S_HEADLINE]);
    self->article.byline = copy_view(&cursor, &views[S_BYLINE]);
    self->article.description_text = copy_view(&cursor, &views[S_DESCRIPTION]);
    self->article.body_text = copy_view(&cursor, &views[S_BODY]);
    self->article.language = copy_view(&cursor, &views[S_LANGUAGE]);
    self->article.version = copy_view(&cursor, &views[S_VERSION]);
    self->article.located = copy_view(&cursor, &views[S_LOCATED]);
    for (size_t i = 0; i < subject_count; i++) {
        names[i] = copy_view(&cursor, &subjects[i]);
        if (any_code) {
            code_ptrs[i] = copy_view(&cursor, &codes[i]);
            scheme_ptrs[i] = copy_view(&cursor, &schemes[i]);
        }
    }
    self->article.subjects = subject_count ? names : NULL;
    self->article.subject_codes = any_code ? code_ptrs : NULL;
    self->article.subject_schemes = any_code ? scheme_ptrs : NULL;
    self->article.subject_count = subject_count;
    msgpack_unpacked_destroy(&unpacked);
    return self;
fail:
    msgpack_unpacked_destroy(&unpacked);
    free(self);
    return NULL;
}

void
nw_codec_message_destroy(nw_codec_message_t **self_p)
{
    if (self_p && *self_p) {
        free(*self_p);
        *self_p = NULL;
    }
}

/* ------------------------------------------------------------------ time */

void
nw_codec_format_time(int64_t unix_ms, char *buf)
{
    /* RFC 3339 has four-digit years: clamp to 0000-01-01 .. 9999-12-31T23:59:59.999. */
    const int64_t min_ms = -62167219200000LL, max_ms = 253402300799999LL;
    if (unix_ms < min_ms)
        unix_ms = min_ms;
    if (unix_ms > max_ms)
        unix_ms = max_ms;
    int64_t secs = unix_ms / 1000, ms = unix_ms % 1000;
    if (ms < 0) {       /* floor, so 1969 times read forwards within their second */
        ms += 1000;
        secs -= 1;
    }
    time_t t = (time_t) secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(buf, NW_CODEC_TIME_LEN, "1970-01-01T00:00:00.000Z");
        return;
    }
    /* The modulos change nothing after the clamp; they show the compiler the widths. */
    snprintf(buf, NW_CODEC_TIME_LEN, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
             (unsigned) (tm.tm_year + 1900) % 10000u, (unsigned) (tm.tm_mon + 1) % 100u,
             (unsigned) tm.tm_mday % 100u, (unsigned) tm.tm_hour % 100u,
             (unsigned) tm.tm_min % 100u, (unsigned) tm.tm_sec % 100u, (unsigned) ms % 1000u);
}
