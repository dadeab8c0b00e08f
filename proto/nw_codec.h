/*
 * nw_codec: the one MessagePack codec of newswire wire format v1 (proto/newswire-v1.md).
 * The daemon encodes with it, every client decodes with it; nothing else in the tree
 * packs or unpacks a newswire message.
 *
 * Encoding is split in two because the two halves are made on different threads: the
 * article map (ninjs) is packed on a worker thread right after parsing, the envelope
 * (topic, seq, sent, ...) on the loop thread once a seq is assigned; the envelope embeds
 * the already packed article bytes verbatim.
 *
 * Which fields there are, their keys, rules and order are declared once in nw_fields.h;
 * the structs below and every table of nw_codec.c are expanded from it.
 *
 * Decoding treats its input as hostile: sizes, depth and types are checked, and a bad
 * message yields NULL with a reason, never a crash. A decoded message owns all of its
 * strings (one allocation); free it with nw_codec_message_destroy().
 */
#ifndef NW_CODEC_H
#define NW_CODEC_H

#include "nw_fields.h"
#include "nw_topic.h"
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define NW_PROTO_VERSION 1

/* Bounds the decoder enforces (a message beyond them is rejected, not truncated); a
 * topic's is NW_TOPIC_MAX (nw_topic.h). */
#define NW_CODEC_MAX_MESSAGE (16u * 1024u * 1024u)
#define NW_CODEC_MAX_SUBJECTS 64u
#define NW_CODEC_MAX_DEPTH 8u       /* nested maps/arrays, the message map is 1 */
#define NW_CODEC_MAX_OBJECTS 65536u /* MessagePack objects in one message */
#define NW_CODEC_MAX_FIELD 4096u    /* bytes of every string but description/body */

/* The structs are expanded from the field lists of nw_fields.h (their comments say what
 * each field holds): one member per field, in wire order. Strings are UTF-8,
 * NUL-terminated, never containing NUL; optional ones are NULL when absent. */
#define NW_CODEC_MEMBER(member, key, kind, presence, accessor) NW_CODEC_MEMBER_##kind(member)
#define NW_CODEC_MEMBER_TEXT(m) const char *m;
#define NW_CODEC_MEMBER_SHORT(m) const char *m;
#define NW_CODEC_MEMBER_TOPIC(m) const char *m;
#define NW_CODEC_MEMBER_HEX32(m) const char *m;
#define NW_CODEC_MEMBER_HEX40(m) const char *m;
#define NW_CODEC_MEMBER_TIME(m) const char *m;
#define NW_CODEC_MEMBER_SEQ(m) uint64_t m;
#define NW_CODEC_MEMBER_VERSION(m)  /* nw_codec_message_t.v */
#define NW_CODEC_MEMBER_SOURCE(m)   /* NW_FIELDS_SOURCE, flattened into the envelope */
#define NW_CODEC_MEMBER_ARTICLE(m)  /* nw_codec_message_t.article */
#define NW_CODEC_MEMBER_SUBJECTS(m) /* NW_FIELDS_SUBJECT, arrays beside subject_count */
#define NW_CODEC_SUBJECT_MEMBER(member, key, kind, presence, accessor) const char *const *member;

/* An IPTC ninjs story as it travels: NW_FIELDS_ARTICLE, then one array of subject_count
 * strings per NW_FIELDS_SUBJECT field ("subjects" the names, "subject_codes" beside
 * each its code or NULL, "subject_schemes" beside each code its vocabulary URI or NULL;
 * an optional array may itself be NULL). */
typedef struct {
    NW_FIELDS_ARTICLE(NW_CODEC_MEMBER)
    NW_FIELDS_SUBJECT(NW_CODEC_SUBJECT_MEMBER)
    size_t subject_count;
} nw_ninjs_t;

/* Everything around the article: NW_FIELDS_MESSAGE's topic, seq, epoch, id, sent,
 * then NW_FIELDS_SOURCE's source_file, source_format, source_encoding. */
typedef struct {
    NW_FIELDS_MESSAGE(NW_CODEC_MEMBER)
    NW_FIELDS_SOURCE(NW_CODEC_MEMBER)
} nw_envelope_t;

/* A decoded message. */
typedef struct {
    uint64_t v;
    nw_envelope_t env;
    nw_ninjs_t article;
} nw_codec_message_t;

/* Pack the ninjs article map into out (appended). type NULL packs "text"; optional
 * fields that are NULL (and subject when subject_count is 0) are omitted. 0 on
 * success, -1 on a missing or invalid field (errbuf says which); out is left as it was
 * on failure. Fields are checked by the rules the decoder applies, so what packs decodes. */
int nw_codec_pack_article(const nw_ninjs_t *article, msgpack_sbuffer *out, char *errbuf,
                          size_t errlen);

/* Pack the whole message map: envelope keys plus "article" = the bytes of a map
 * packed by nw_codec_pack_article(). Appended to out. "source" is packed when
 * source_file and source_format are set (both or neither), with "encoding" when
 * source_encoding is set too (only with them). 0 on success, -1 on error
 * with out left as it was. */
int nw_codec_pack_message(const nw_envelope_t *env, const void *article_mp, size_t article_len,
                          msgpack_sbuffer *out, char *errbuf, size_t errlen);

/* Decode one message frame. NULL on error, with the reason in errbuf; a message of
 * another version fails with "unsupported version N". Unknown keys are ignored. */
nw_codec_message_t *nw_codec_message_decode(const void *data, size_t len, char *errbuf,
                                            size_t errlen);
void nw_codec_message_destroy(nw_codec_message_t **self_p);

/* RFC 3339 UTC with milliseconds ("2026-11-24T10:00:00.123Z") from ms since the
 * epoch; buf must hold NW_CODEC_TIME_LEN bytes. */
#define NW_CODEC_TIME_LEN 32
void nw_codec_format_time(int64_t unix_ms, char *buf);

#endif
