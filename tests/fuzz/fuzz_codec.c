/*
 * fuzz_codec: libFuzzer target for nw_codec_message_decode(). Seeds: proto/vectors, read
 * only (libFuzzer writes into its FIRST directory):
 *   ./bin/fuzz_codec -max_total_time=30 /tmp/codec-corpus ../proto/vectors
 * Besides "never crash", whatever decodes must encode again and decode to the same
 * fields: the encoder and decoder apply one set of rules.
 */
#include "nw_codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
same(const char *a, const char *b)
{
    if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0))
        abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    nw_codec_message_t *m = nw_codec_message_decode(data, size, err, sizeof err);
    if (!m)
        return 0;
    msgpack_sbuffer art, msg;
    msgpack_sbuffer_init(&art);
    msgpack_sbuffer_init(&msg);
    if (nw_codec_pack_article(&m->article, &art, err, sizeof err) != 0
        || nw_codec_pack_message(&m->env, art.data, art.size, &msg, err, sizeof err) != 0)
        abort();   /* decoded but cannot be encoded: the two sides disagree */
    nw_codec_message_t *again = nw_codec_message_decode(msg.data, msg.size, err, sizeof err);
    if (!again || again->env.seq != m->env.seq
        || again->article.subject_count != m->article.subject_count)
        abort();
    same(again->env.topic, m->env.topic);
    same(again->env.epoch, m->env.epoch);
    same(again->env.id, m->env.id);
    same(again->env.sent, m->env.sent);
    same(again->env.source_file, m->env.source_file);
    same(again->env.source_format, m->env.source_format);
    same(again->article.uri, m->article.uri);
    same(again->article.headline, m->article.headline);
    same(again->article.byline, m->article.byline);
    same(again->article.description_text, m->article.description_text);
    same(again->article.body_text, m->article.body_text);
    same(again->article.language, m->article.language);
    same(again->article.versioncreated, m->article.versioncreated);
    for (size_t i = 0; i < m->article.subject_count; i++)
        same(again->article.subjects[i], m->article.subjects[i]);
    nw_codec_message_destroy(&again);
    nw_codec_message_destroy(&m);
    msgpack_sbuffer_destroy(&art);
    msgpack_sbuffer_destroy(&msg);
    return 0;
}
