/*
 * fuzz_codec: libFuzzer target for nw_codec_message_decode(). Seeds: proto/vectors, read
 * only (libFuzzer writes into its FIRST directory):
 *   ./bin/fuzz_codec -max_total_time=30 /tmp/codec-corpus ../proto/vectors
 * Besides "never crash", whatever decodes must encode again and decode to the same
 * fields (every one of proto/nw_fields.h): the encoder and decoder apply one set of rules.
 */
#include "nw_codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const char *a, const char *b)
{
    if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
        abort();
}

static void same_REQUIRED(const char *a, const char *b)
{
    same(a, b);
}
static void same_OPTIONAL(const char *a, const char *b)
{
    same(a, b);
}
static void same_TEXT_DEFAULT(const char *a, const char *b)
{
    same(a, b ? b : "text");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    nw_codec_message_t *m = nw_codec_message_decode(data, size, err, sizeof err);
    if (!m)
        return 0;
    msgpack_sbuffer art, msg;
    msgpack_sbuffer_init(&art);
    msgpack_sbuffer_init(&msg);
    if (nw_codec_pack_article(&m->article, &art, err, sizeof err) != 0 ||
        nw_codec_pack_message(&m->env, art.data, art.size, &msg, err, sizeof err) != 0)
        abort(); /* decoded but cannot be encoded: the two sides disagree */
    nw_codec_message_t *again = nw_codec_message_decode(msg.data, msg.size, err, sizeof err);
    if (!again || again->env.seq != m->env.seq ||
        again->article.subject_count != m->article.subject_count)
        abort();
        /* Every string field of proto/nw_fields.h; article.type packs "text" when absent. */
#define SAME_TEXT(part, member, presence) same_##presence(again->part.member, m->part.member);
#define SAME_SHORT(part, member, presence) SAME_TEXT(part, member, presence)
#define SAME_TOPIC(part, member, presence) SAME_TEXT(part, member, presence)
#define SAME_HEX32(part, member, presence) SAME_TEXT(part, member, presence)
#define SAME_HEX40(part, member, presence) SAME_TEXT(part, member, presence)
#define SAME_TIME(part, member, presence) SAME_TEXT(part, member, presence)
#define SAME_SEQ(part, member, presence) \
    if (again->part.member != m->part.member) \
        abort();
#define SAME_VERSION(part, member, presence)
#define SAME_SOURCE(part, member, presence)
#define SAME_ARTICLE(part, member, presence)
#define SAME_SUBJECTS(part, member, presence)
#define SAME_ENV(member, key, kind, presence, accessor) SAME_##kind(env, member, presence)
#define SAME_ARTICLE_FIELD(member, key, kind, presence, accessor) \
    SAME_##kind(article, member, presence)
#define SAME_SUBJECT(member, key, kind, presence, accessor) \
    same_##presence(again->article.member ? again->article.member[i] : NULL, \
                    m->article.member ? m->article.member[i] : NULL);
    NW_FIELDS_MESSAGE(SAME_ENV)
    NW_FIELDS_SOURCE(SAME_ENV)
    NW_FIELDS_ARTICLE(SAME_ARTICLE_FIELD)
    for (size_t i = 0; i < m->article.subject_count; i++) {
        NW_FIELDS_SUBJECT(SAME_SUBJECT)
    }
    nw_codec_message_destroy(&again);
    nw_codec_message_destroy(&m);
    msgpack_sbuffer_destroy(&art);
    msgpack_sbuffer_destroy(&msg);
    return 0;
}
