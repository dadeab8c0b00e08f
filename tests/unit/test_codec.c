/*
 * test_codec: the wire format v1 codec against itself and against the vectors in
 * $NW_PROTO/vectors (valid NN-*.mp with their .json, invalid bad-*.mp with the reason
 * in bad-*.txt, canonical.txt naming the vectors the encoder must reproduce exactly).
 */
#include "nw_codec.h"
#include "runner.h"

#include <dirent.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char vectors_dir[4096];

static void *read_file(const char *dir, const char *name, size_t *len)
{
    char path[8192];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *grown = realloc(buf, cap * 2 + 1);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Sorted names in the vectors folder that start with prefix and end with suffix. */
static size_t list_vectors(const char *prefix, const char *suffix, char ***out)
{
    DIR *dir = opendir(vectors_dir);
    size_t n = 0, cap = 0;
    char **names = NULL;
    struct dirent *ent;
    while (dir && (ent = readdir(dir))) {
        size_t len = strlen(ent->d_name), sl = strlen(suffix);
        if (strncmp(ent->d_name, prefix, strlen(prefix)) != 0 || len < sl ||
            strcmp(ent->d_name + len - sl, suffix) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown)
                break;
            names = grown;
        }
        names[n++] = strdup(ent->d_name);
    }
    if (dir)
        closedir(dir);
    if (n)
        qsort(names, n, sizeof *names, compare_names);
    *out = names;
    return n;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Whether name is one of the lines of list. */
static bool in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, name, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

static const char *jstr(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* Like CHECK_STR, but both NULL is equal (an absent optional field). */
#define CHECK_OPT(a, b) \
    do { \
        const char *x_ = (a), *y_ = (b); \
        if (!x_ || !y_) \
            CHECK(x_ == y_); \
        else \
            CHECK_STR(x_, y_); \
    } while (0)

static void check_against_json(const char *name, const nw_codec_message_t *m, json_t *root)
{
    fprintf(stderr, "  vector %s\n", name);
    json_t *art = json_object_get(root, "article");
    json_t *src = json_object_get(root, "source");
    CHECK(m->v == (uint64_t) json_integer_value(json_object_get(root, "v")));
    CHECK_STR(m->env.topic, jstr(root, "topic"));
    CHECK(m->env.seq == (uint64_t) json_integer_value(json_object_get(root, "seq")));
    CHECK_STR(m->env.epoch, jstr(root, "epoch"));
    CHECK_STR(m->env.id, jstr(root, "id"));
    CHECK_STR(m->env.sent, jstr(root, "sent"));
    CHECK_OPT(m->env.source_file, jstr(src, "file"));
    CHECK_OPT(m->env.source_format, jstr(src, "format"));
    CHECK_OPT(m->env.source_encoding, jstr(src, "encoding"));
    CHECK_STR(m->article.uri, jstr(art, "uri"));
    CHECK_OPT(m->article.type, jstr(art, "type"));
    CHECK_STR(m->article.versioncreated, jstr(art, "versioncreated"));
    CHECK_STR(m->article.headline, jstr(art, "headline"));
    CHECK_OPT(m->article.byline, jstr(art, "byline"));
    CHECK_OPT(m->article.description_text, jstr(art, "description_text"));
    CHECK_STR(m->article.body_text, jstr(art, "body_text"));
    CHECK_OPT(m->article.language, jstr(art, "language"));
    CHECK_OPT(m->article.version, jstr(art, "version"));
    CHECK_OPT(m->article.located, jstr(art, "located"));
    /* And every string field of proto/nw_fields.h by its list, so a field added there is
     * read back from the vectors without a line here. */
#define JSON_STR(obj, part, member, key) CHECK_OPT(m->part.member, jstr(obj, key));
#define JSON_TEXT(obj, part, member, key) JSON_STR(obj, part, member, key)
#define JSON_SHORT(obj, part, member, key) JSON_STR(obj, part, member, key)
#define JSON_TOPIC(obj, part, member, key) JSON_STR(obj, part, member, key)
#define JSON_HEX32(obj, part, member, key) JSON_STR(obj, part, member, key)
#define JSON_HEX40(obj, part, member, key) JSON_STR(obj, part, member, key)
#define JSON_TIME(obj, part, member, key) JSON_STR(obj, part, member, key)
#define JSON_SEQ(obj, part, member, key) \
    CHECK(m->part.member == (uint64_t) json_integer_value(json_object_get(obj, key)));
#define JSON_VERSION(obj, part, member, key)
#define JSON_SOURCE(obj, part, member, key)
#define JSON_ARTICLE(obj, part, member, key)
#define JSON_SUBJECTS(obj, part, member, key)
#define JSON_ROOT(member, key, kind, presence, accessor) JSON_##kind(root, env, member, key)
#define JSON_SRC(member, key, kind, presence, accessor) JSON_##kind(src, env, member, key)
#define JSON_ART(member, key, kind, presence, accessor) JSON_##kind(art, article, member, key)
    NW_FIELDS_MESSAGE(JSON_ROOT)
    NW_FIELDS_SOURCE(JSON_SRC)
    NW_FIELDS_ARTICLE(JSON_ART)
    json_t *subjects = json_object_get(art, "subject");
    CHECK(m->article.subject_count == json_array_size(subjects));
    for (size_t i = 0; i < m->article.subject_count && i < json_array_size(subjects); i++) {
        json_t *subject = json_array_get(subjects, i);
#define JSON_SUBJECT(member, key, kind, presence, accessor) \
    CHECK_OPT(m->article.member ? m->article.member[i] : NULL, jstr(subject, key));
        NW_FIELDS_SUBJECT(JSON_SUBJECT)
    }
    bool coded = false;
    for (size_t i = 0; i < m->article.subject_count && i < json_array_size(subjects); i++) {
        json_t *subject = json_array_get(subjects, i);
        CHECK_STR(m->article.subjects[i], jstr(subject, "name"));
        coded = coded || jstr(subject, "code") || jstr(subject, "scheme");
        if (m->article.subject_codes) {
            CHECK_OPT(m->article.subject_codes[i], jstr(subject, "code"));
            CHECK_OPT(m->article.subject_schemes[i], jstr(subject, "scheme"));
        }
    }
    CHECK(coded == (m->article.subject_codes != NULL));
}

/* Encodes the decoded message again; canonical vectors must come out identical. */
static void check_reencode(const char *name, const nw_codec_message_t *m, const void *data,
                           size_t len)
{
    char err[256] = "";
    msgpack_sbuffer art, msg;
    msgpack_sbuffer_init(&art);
    msgpack_sbuffer_init(&msg);
    CHECK(nw_codec_pack_article(&m->article, &art, err, sizeof err) == 0);
    CHECK(nw_codec_pack_message(&m->env, art.data, art.size, &msg, err, sizeof err) == 0);
    if (msg.size != len || memcmp(msg.data, data, len) != 0) {
        fprintf(stderr, "  %s: encoder output (%zu bytes) differs from the vector (%zu)\n", name,
                msg.size, len);
        CHECK(!"canonical vector re-encodes byte for byte");
    }
    msgpack_sbuffer_destroy(&art);
    msgpack_sbuffer_destroy(&msg);
}

TEST_IMPL(valid_vectors)
{
    size_t clen = 0;
    char *canonical = read_file(vectors_dir, "canonical.txt", &clen);
    CHECK(canonical != NULL);
    char **names;
    size_t n = list_vectors("", ".json", &names);
    CHECK(n >= 6);
    size_t reencoded = 0;
    for (size_t i = 0; i < n; i++) {
        char base[256], mpname[300];
        snprintf(base, sizeof base, "%.*s", (int) (strlen(names[i]) - 5), names[i]);
        snprintf(mpname, sizeof mpname, "%s.mp", base);
        size_t len = 0;
        void *data = read_file(vectors_dir, mpname, &len);
        char jpath[8192];
        snprintf(jpath, sizeof jpath, "%s/%s", vectors_dir, names[i]);
        json_error_t jerr;
        json_t *root = json_load_file(jpath, 0, &jerr);
        CHECK(data != NULL && root != NULL);
        char err[256] = "";
        nw_codec_message_t *m = data ? nw_codec_message_decode(data, len, err, sizeof err) : NULL;
        if (!m)
            fprintf(stderr, "  %s: rejected: %s\n", base, err);
        CHECK(m != NULL);
        if (m && root)
            check_against_json(base, m, root);

        if (m && in_list(canonical, base)) {
            check_reencode(base, m, data, len);
            reencoded++;
        }
        /* Every strict prefix is an incomplete message. */
        for (size_t cut = 0; data && cut < len; cut++) {
            nw_codec_message_t *t = nw_codec_message_decode(data, cut, err, sizeof err);
            CHECK(t == NULL);
            nw_codec_message_destroy(&t);
        }
        nw_codec_message_destroy(&m);
        CHECK(m == NULL);
        json_decref(root);
        free(data);
    }
    CHECK(reencoded >= 3);
    free_names(names, n);
    free(canonical);
}

TEST_IMPL(bad_vectors)
{
    char **names;
    size_t n = list_vectors("bad-", ".mp", &names);
    CHECK(n >= 6);
    for (size_t i = 0; i < n; i++) {
        char txt[300];
        snprintf(txt, sizeof txt, "%.*s.txt", (int) (strlen(names[i]) - 3), names[i]);
        size_t len = 0, tlen = 0;
        void *data = read_file(vectors_dir, names[i], &len);
        char *want = read_file(vectors_dir, txt, &tlen);
        CHECK(data != NULL && want != NULL);
        if (!data || !want) {
            free(data);
            free(want);
            continue;
        }
        want[strcspn(want, "\n")] = '\0';
        char err[256] = "";
        nw_codec_message_t *m = nw_codec_message_decode(data, len, err, sizeof err);
        fprintf(stderr, "  %s: %s\n", names[i], err);
        CHECK(m == NULL);
        CHECK(strstr(err, want) != NULL);
        if (!strstr(err, want))
            fprintf(stderr, "  %s: reason \"%s\" lacks \"%s\"\n", names[i], err, want);
        nw_codec_message_destroy(&m);
        free(data);
        free(want);
    }
    free_names(names, n);
}

static const char *const sample_subjects[] = {"Telecoms", "Economy"};

static nw_ninjs_t sample_article(void)
{
    return (nw_ninjs_t) {
        .uri = "urn:newswire:test:1",
        .type = NULL,
        .headline = "Cable laid",
        .byline = NULL,
        .description_text = "Short",
        .body_text = "Long enough.\nTwo lines.",
        .language = "en",
        .versioncreated = "2026-11-24T10:00:00.000Z",
        .subjects = sample_subjects,
        .subject_count = 2,
    };
}

static nw_envelope_t sample_envelope(void)
{
    return (nw_envelope_t) {
        .topic = "telecoms.cables",
        .seq = 18446744073709551615ull,
        .epoch = "0123456789abcdef0123456789abcdef",
        .id = "0123456789abcdef0123456789abcdef01234567",
        .sent = "2026-11-24T10:00:00.123Z",
        .source_file = "a.txt",
        .source_format = "header",
    };
}

TEST_IMPL(round_trip)
{
    char err[256] = "";
    nw_ninjs_t a = sample_article();
    nw_envelope_t e = sample_envelope();
    msgpack_sbuffer art, msg;
    msgpack_sbuffer_init(&art);
    msgpack_sbuffer_init(&msg);
    CHECK(nw_codec_pack_article(&a, &art, err, sizeof err) == 0);
    CHECK(nw_codec_pack_message(&e, art.data, art.size, &msg, err, sizeof err) == 0);
    nw_codec_message_t *m = nw_codec_message_decode(msg.data, msg.size, err, sizeof err);
    CHECK(m != NULL);
    if (m) {
        CHECK(m->v == 1);
        CHECK_STR(m->env.topic, e.topic);
        CHECK(m->env.seq == e.seq);
        CHECK_STR(m->env.epoch, e.epoch);
        CHECK_STR(m->env.id, e.id);
        CHECK_STR(m->env.sent, e.sent);
        CHECK_STR(m->env.source_file, "a.txt");
        CHECK_STR(m->env.source_format, "header");
        CHECK(m->env.source_encoding == NULL);
        CHECK_STR(m->article.uri, a.uri);
        CHECK_STR(m->article.type, "text");
        CHECK_STR(m->article.headline, a.headline);
        CHECK(m->article.byline == NULL);
        CHECK_STR(m->article.description_text, "Short");
        CHECK_STR(m->article.body_text, a.body_text);
        CHECK_STR(m->article.language, "en");
        CHECK_STR(m->article.versioncreated, a.versioncreated);
        CHECK(m->article.subject_count == 2);
        if (m->article.subject_count == 2) {
            CHECK_STR(m->article.subjects[0], "Telecoms");
            CHECK_STR(m->article.subjects[1], "Economy");
        }
    }
    nw_codec_message_destroy(&m);
    nw_codec_message_destroy(&m); /* harmless twice */

    /* source.encoding goes with the source; without one it is refused */
    e.source_encoding = "UTF-16LE";
    art.size = msg.size = 0;
    CHECK(nw_codec_pack_article(&a, &art, err, sizeof err) == 0);
    CHECK(nw_codec_pack_message(&e, art.data, art.size, &msg, err, sizeof err) == 0);
    m = nw_codec_message_decode(msg.data, msg.size, err, sizeof err);
    CHECK(m && m->env.source_encoding && strcmp(m->env.source_encoding, "UTF-16LE") == 0);
    nw_codec_message_destroy(&m);
    e.source_file = e.source_format = NULL;
    msg.size = 0;
    CHECK(nw_codec_pack_message(&e, art.data, art.size, &msg, err, sizeof err) == -1);
    CHECK(strstr(err, "source.encoding") != NULL && msg.size == 0);
    e.source_encoding = NULL;

    /* No source, no subjects: both keys are left out and come back absent. */
    a.subject_count = 0;
    a.subjects = NULL;
    e.source_file = e.source_format = NULL;
    e.seq = 1;
    art.size = msg.size = 0;
    CHECK(nw_codec_pack_article(&a, &art, err, sizeof err) == 0);
    CHECK(nw_codec_pack_message(&e, art.data, art.size, &msg, err, sizeof err) == 0);
    m = nw_codec_message_decode(msg.data, msg.size, err, sizeof err);
    CHECK(m && m->env.source_file == NULL && m->article.subject_count == 0 &&
          m->article.subjects == NULL);
    nw_codec_message_destroy(&m);
    msgpack_sbuffer_destroy(&art);
    msgpack_sbuffer_destroy(&msg);
}

/* The encoder refuses what the decoder would refuse, and leaves the buffer alone. */
TEST_IMPL(encoder_rejects)
{
    char err[256];
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_sbuffer_write(&buf, "xyz", 3);

    nw_ninjs_t a = sample_article();
    a.headline = NULL;
    CHECK(nw_codec_pack_article(&a, &buf, err, sizeof err) == -1);
    CHECK(strstr(err, "article.headline") != NULL);
    a = sample_article();
    a.versioncreated = "yesterday";
    CHECK(nw_codec_pack_article(&a, &buf, err, sizeof err) == -1);
    a = sample_article();
    a.subject_count = NW_CODEC_MAX_SUBJECTS + 1;
    CHECK(nw_codec_pack_article(&a, &buf, err, sizeof err) == -1);
    a = sample_article();
    a.body_text = "bad \xff byte";
    CHECK(nw_codec_pack_article(&a, &buf, err, sizeof err) == -1);
    CHECK(strstr(err, "UTF-8") != NULL);
    CHECK(buf.size == 3);

    a = sample_article();
    msgpack_sbuffer art;
    msgpack_sbuffer_init(&art);
    CHECK(nw_codec_pack_article(&a, &art, err, sizeof err) == 0);
    nw_envelope_t e = sample_envelope();
    e.seq = 0;
    CHECK(nw_codec_pack_message(&e, art.data, art.size, &buf, err, sizeof err) == -1);
    e = sample_envelope();
    e.topic = "Telecoms";
    CHECK(nw_codec_pack_message(&e, art.data, art.size, &buf, err, sizeof err) == -1);
    e.topic = "telecoms..x";
    CHECK(nw_codec_pack_message(&e, art.data, art.size, &buf, err, sizeof err) == -1);
    e = sample_envelope();
    e.epoch = "abc";
    CHECK(nw_codec_pack_message(&e, art.data, art.size, &buf, err, sizeof err) == -1);
    e = sample_envelope();
    e.source_format = NULL;
    CHECK(nw_codec_pack_message(&e, art.data, art.size, &buf, err, sizeof err) == -1);
    e = sample_envelope();
    CHECK(nw_codec_pack_message(&e, art.data, art.size - 1, &buf, err, sizeof err) == -1);
    CHECK(nw_codec_pack_message(&e, "\x91\x01", 2, &buf, err, sizeof err) == -1);
    CHECK(nw_codec_pack_message(&e, NULL, 0, &buf, err, sizeof err) == -1);
    CHECK(buf.size == 3);

    /* An article over the message limit packs to nothing. */
    size_t big = NW_CODEC_MAX_MESSAGE + 1;
    char *body = malloc(big + 1);
    if (body) {
        memset(body, 'a', big);
        body[big] = '\0';
        a.body_text = body;
        CHECK(nw_codec_pack_article(&a, &buf, err, sizeof err) == -1);
        CHECK(buf.size == 3);
        /* and the decoder refuses such a size before looking at it */
        CHECK(nw_codec_message_decode(body, big, err, sizeof err) == NULL);
        CHECK(strstr(err, "larger than") != NULL);
        free(body);
    }
    msgpack_sbuffer_destroy(&art);
    msgpack_sbuffer_destroy(&buf);
}

/* Limits the raw scan enforces before msgpack-c allocates anything. */
TEST_IMPL(decoder_limits)
{
    char err[256] = "";
    /* array32 of 70000 nils under an unknown key: too many objects */
    size_t n = 70000;
    unsigned char *buf = malloc(n + 64);
    size_t len = 0;
    buf[len++] = 0x81;
    buf[len++] = 0xa1;
    buf[len++] = 'x';
    buf[len++] = 0xdd;
    buf[len++] = (unsigned char) (n >> 24);
    buf[len++] = (unsigned char) (n >> 16);
    buf[len++] = (unsigned char) (n >> 8);
    buf[len++] = (unsigned char) n;
    memset(buf + len, 0xc0, n);
    len += n;
    CHECK(nw_codec_message_decode(buf, len, err, sizeof err) == NULL);
    CHECK(strstr(err, "more than") != NULL);

    /* array32 claiming 4 billion entries with none present */
    static const unsigned char huge[] = {0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0};
    CHECK(nw_codec_message_decode(huge, sizeof huge, err, sizeof err) == NULL);
    CHECK(strstr(err, "truncated") != NULL);

    /* str32 claiming 4 GiB */
    static const unsigned char hstr[] = {0x81, 0xa1, 'x', 0xdb, 0xff, 0xff, 0xff, 0xff, 'a'};
    CHECK(nw_codec_message_decode(hstr, sizeof hstr, err, sizeof err) == NULL);

    /* exactly NW_CODEC_MAX_DEPTH nested containers pass the scan (and then fail on
     * missing keys), one more does not */
    len = 0;
    buf[len++] = 0x81;
    buf[len++] = 0xa1;
    buf[len++] = 'x';
    for (unsigned d = 2; d <= NW_CODEC_MAX_DEPTH; d++)
        buf[len++] = 0x91;
    buf[len++] = 0xc0;
    CHECK(nw_codec_message_decode(buf, len, err, sizeof err) == NULL);
    CHECK(strstr(err, "missing key") != NULL);
    buf[len - 1] = 0x91;
    buf[len++] = 0xc0;
    CHECK(nw_codec_message_decode(buf, len, err, sizeof err) == NULL);
    CHECK(strstr(err, "nested deeper") != NULL);
    free(buf);
}

TEST_IMPL(format_time)
{
    char buf[NW_CODEC_TIME_LEN];
    nw_codec_format_time(0, buf);
    CHECK_STR(buf, "1970-01-01T00:00:00.000Z");
    nw_codec_format_time(1795514400123LL, buf);
    CHECK_STR(buf, "2026-11-24T10:00:00.123Z");
    nw_codec_format_time(1709164800999LL, buf);
    CHECK_STR(buf, "2024-02-29T00:00:00.999Z");
    nw_codec_format_time(-1, buf);
    CHECK_STR(buf, "1969-12-31T23:59:59.999Z");
    nw_codec_format_time(-1000, buf);
    CHECK_STR(buf, "1969-12-31T23:59:59.000Z");
    nw_codec_format_time(INT64_MAX, buf);
    CHECK_STR(buf, "9999-12-31T23:59:59.999Z");
    nw_codec_format_time(INT64_MIN, buf);
    CHECK_STR(buf, "0000-01-01T00:00:00.000Z");
}

/* The digits written in place give what the printf format did, across the whole range
 * (a step that is prime to days, hours and milliseconds lands on every field value). */
TEST_IMPL(format_time_sweep)
{
    char buf[NW_CODEC_TIME_LEN], want[64];
    const int64_t min_ms = -62167219200000LL, max_ms = 253402300799999LL;
    const int64_t step = 3155692597LL; /* about 36 days 12 h, and a ms over 597 */
    unsigned mismatched = 0;
    for (int64_t t = min_ms; t <= max_ms; t += step) {
        time_t secs = (time_t) (t >= 0 ? t / 1000 : (t - 999) / 1000);
        unsigned ms = (unsigned) (t - (int64_t) secs * 1000);
        struct tm tm;
        CHECK(gmtime_r(&secs, &tm) != NULL);
        snprintf(want, sizeof want, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
        nw_codec_format_time(t, buf);
        if (strcmp(buf, want) != 0 && mismatched++ == 0)
            CHECK_STR(buf, want);
    }
    CHECK(mismatched == 0);
}

static int setup(void)
{
    const char *proto = getenv("NW_PROTO");
    snprintf(vectors_dir, sizeof vectors_dir, "%s/vectors", proto ? proto : "proto");
    return 0;
}
TEST_SETUP(setup)
