/*
 * nw_fields: every field of wire format v1 (proto/newswire-v1.md section 4), declared
 * once. Nothing else in the tree lists them: the codec's structs (nw_envelope_t,
 * nw_ninjs_t), its key tables, its checks, packer and decoder (nw_codec.c), libnewswire's
 * nw_message_*() accessors (clients/newswire.c), newswire-sub's JSON and fuzz_codec's
 * round trip are expanded from these lists, and the vector generator
 * (proto/vectors/make_vectors.py) reads them from this file for its key order.
 * Pure preprocessor: no types, no includes, so any C file of the tree may expand it.
 *
 * Each list is X(member, key, kind, presence, accessor), in the order the reference
 * encoder writes the keys (the canonical vectors depend on it):
 *   member    the field's member in nw_envelope_t (message and source lists) or
 *             nw_ninjs_t (article list; for the subject list, the array beside each
 *             subject); `_` for keys that hold no member of their own
 *   key       the key in its map; reasons name it by path ("article.headline")
 *   kind      a string's rule: TEXT (any length the message allows), SHORT (at most
 *             NW_CODEC_MAX_FIELD bytes), TOPIC (section 5), HEX32, HEX40, TIME (RFC 3339
 *             UTC); or what is not a string: VERSION (uint, the constant
 *             NW_PROTO_VERSION), SEQ (uint from 1), SOURCE (the source map below),
 *             ARTICLE (the article map), SUBJECTS (the array of subject maps)
 *   presence  REQUIRED or OPTIONAL (an optional field is omitted when NULL); TEXT_DEFAULT
 *             is optional to readers and packed as "text" when NULL (article.type)
 *   accessor  libnewswire's nw_message_ACCESSOR(), declared in include/newswire.h; `_`
 *             for keys without one
 *
 * To add a wire field (say an optional article string "slugline"):
 *   1. add one line to the list of its map here:
 *          X(slugline, "slugline", SHORT, OPTIONAL, slugline)
 *      the codec packs, checks and decodes it, libnewswire defines
 *      nw_message_slugline(), newswire-sub prints it;
 *   2. declare nw_message_slugline() in include/newswire.h and list it in
 *      debian/libnewswire0.symbols and clients/libnewswire.3 (the build fails without
 *      the declaration: clients/newswire.c checks each accessor against it);
 *   3. give it a row in proto/newswire-v1.md and a rule in the independent reading
 *      tests/e2e/test_vectors.py, and in clients/python/newswire_sub.py;
 *   4. use it in a vector of proto/vectors/make_vectors.py and regenerate
 *      (`cmake --build build --target nw_vectors`);
 *   5. have the daemon fill it (daemon/article.h, a parser, the nw_ninjs_t the pipeline
 *      packs, or the nw_envelope_t daemon/feed.c packs).
 * ctest proto.fields_in_step (proto/check_fields.py) fails while a place of 2, 3 or 5
 * lacks it (for 5: no `.slugline =` in any daemon/ .c file), proto.vectors_fresh while no
 * canonical vector carries it or the vectors are not what the generator makes.
 */
#ifndef NW_FIELDS_H
#define NW_FIELDS_H

/* The lists are tables laid out by hand, in columns: clang-format leaves them alone. */
/* clang-format off */

/* The message map (section 4.1). */
#define NW_FIELDS_MESSAGE(X) \
    X(_,       "v",       VERSION, REQUIRED, _)     /* the protocol version */ \
    X(topic,   "topic",   TOPIC,   REQUIRED, topic) /* frame 0 without its terminator */ \
    X(seq,     "seq",     SEQ,     REQUIRED, seq)   /* per topic, from 1 */ \
    X(epoch,   "epoch",   HEX32,   REQUIRED, epoch) /* changes only when history is lost */ \
    X(id,      "id",      HEX40,   REQUIRED, id)    /* stable article id */ \
    X(sent,    "sent",    TIME,    REQUIRED, sent)  /* with milliseconds */ \
    X(_,       "source",  SOURCE,  OPTIONAL, _) \
    X(_,       "article", ARTICLE, REQUIRED, _)

/* The source map: packed when any of its members is set, and then every REQUIRED one
 * must be. */
#define NW_FIELDS_SOURCE(X) \
    X(source_file,     "file",     SHORT, REQUIRED, source_file)   /* the dropped file's name */ \
    X(source_format,   "format",   SHORT, REQUIRED, source_format) /* "header", "ninjs", ... */ \
    /* what the file was converted from to UTF-8 ("UTF-16LE", "UTF-16BE", \
       "windows-1252"); NULL for a file in UTF-8 */ \
    X(source_encoding, "encoding", SHORT, OPTIONAL, source_encoding)

/* The article map (section 4.2, an IPTC ninjs subset). */
#define NW_FIELDS_ARTICLE(X) \
    X(uri,              "uri",              SHORT, REQUIRED,     uri) \
    X(type,             "type",             SHORT, TEXT_DEFAULT, type) \
    X(versioncreated,   "versioncreated",   TIME,  REQUIRED,     versioncreated) \
    X(headline,         "headline",         SHORT, REQUIRED,     headline) \
    X(byline,           "byline",           SHORT, OPTIONAL,     byline) \
    X(description_text, "description_text", TEXT,  OPTIONAL,     description) /* standfirst */ \
    X(body_text,        "body_text",        TEXT,  REQUIRED,     body) \
    X(language,         "language",         SHORT, OPTIONAL,     language)    /* "en" */ \
    X(version,          "version",          SHORT, OPTIONAL,     version)     /* the source's ("3") */ \
    X(located,          "located",          SHORT, OPTIONAL,     located)     /* "LISBON" */ \
    X(_,                "subject",          SUBJECTS, OPTIONAL,  _)

/* One entry of article.subject. The members are arrays of subject_count strings in
 * nw_ninjs_t; the first (REQUIRED) one is set whenever there are subjects, an OPTIONAL
 * one may be NULL, or NULL in places. Accessors take the subject's index. */
#define NW_FIELDS_SUBJECT(X) \
    X(subjects,        "name",   SHORT, REQUIRED, subject)        /* the topic name */ \
    X(subject_schemes, "scheme", SHORT, OPTIONAL, subject_scheme) /* a vocabulary's URI */ \
    X(subject_codes,   "code",   SHORT, OPTIONAL, subject_code)   /* "medtop:04000000" */

/* clang-format on */

#endif
