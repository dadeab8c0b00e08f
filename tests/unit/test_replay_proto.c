/*
 * test_replay_proto: proto/nw_replay against its vectors in $NW_PROTO/vectors/replay
 * (KIND-name.mp with its .json, bad-KIND-name.mp with a substring of the reason in its
 * .txt, canonical.txt naming the ones the packers reproduce byte for byte; KIND is
 * request, end or error), then against itself: every prefix of a valid message is
 * refused, what is packed parses back the same, and the packers refuse what the
 * parsers would (leaving the buffer untouched).
 */
#include "nw_replay.h"
#include "runner.h"

#include <glob.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[2048];

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(1 << 16);
    size_t n = buf ? fread(buf, 1, (1 << 16) - 1, f) : 0;
    fclose(f);
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

typedef enum { K_REQUEST, K_END, K_ERROR } kind_t;

static kind_t kind_of(const char *base)
{
    if (strncmp(base, "bad-", 4) == 0)
        base += 4;
    return strncmp(base, "end", 3) == 0     ? K_END
           : strncmp(base, "error", 5) == 0 ? K_ERROR
                                            : K_REQUEST;
}

typedef union {
    nw_replay_request_t req;
    nw_replay_end_t end;
    nw_replay_error_t error;
} any_t;

static int parse(kind_t k, const void *data, size_t len, any_t *out, char *why, size_t whylen)
{
    why[0] = '\0';
    switch (k) {
    case K_REQUEST: return nw_replay_request_parse(data, len, &out->req, why, whylen);
    case K_END: return nw_replay_end_parse(data, len, &out->end, why, whylen);
    default: return nw_replay_error_parse(data, len, &out->error, why, whylen);
    }
}

static int pack(kind_t k, const any_t *in, msgpack_sbuffer *sb, char *why, size_t whylen)
{
    switch (k) {
    case K_REQUEST: return nw_replay_request_pack(&in->req, sb, why, whylen);
    case K_END: return nw_replay_end_pack(&in->end, sb, why, whylen);
    default: return nw_replay_error_pack(&in->error, sb, why, whylen);
    }
}

static uint64_t juint(json_t *o, const char *key, bool *has)
{
    json_t *v = json_object_get(o, key);
    if (has)
        *has = v != NULL;
    return v ? (uint64_t) json_integer_value(v) : 0;
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static void check_json(kind_t k, const any_t *got, json_t *want)
{
    CHECK(juint(want, "v", NULL) == NW_PROTO_VERSION);
    if (k == K_REQUEST) {
        static const char *const types[] = {"", "replay", "credit", "cancel"};
        const nw_replay_request_t *r = &got->req;
        bool has;
        CHECK_STR(types[r->type], jstr(want, "type"));
        CHECK_STR(r->topic, jstr(want, "topic"));
        CHECK(r->from == juint(want, "from", &has) && r->has_from == has);
        CHECK(r->last == juint(want, "last", &has) && r->has_last == has);
        CHECK(r->to == juint(want, "to", &has) && r->has_to == has);
        CHECK(r->credit == juint(want, "credit", NULL));
    } else if (k == K_END) {
        CHECK_STR(jstr(want, "type"), "end");
        CHECK_STR(got->end.topic, jstr(want, "topic"));
        CHECK(got->end.from == juint(want, "from", NULL));
        CHECK(got->end.last == juint(want, "last", NULL));
        CHECK(got->end.head == juint(want, "head", NULL));
    } else {
        bool has;
        CHECK_STR(jstr(want, "type"), "error");
        CHECK_STR(got->error.topic, jstr(want, "topic"));
        CHECK_STR(got->error.code, jstr(want, "code"));
        CHECK_STR(got->error.reason, jstr(want, "reason"));
        CHECK(got->error.oldest == juint(want, "oldest", &has) && got->error.has_oldest == has);
    }
}

TEST_IMPL(valid_vectors)
{
    char pattern[2100], path[2400];
    size_t clen = 0;
    snprintf(path, sizeof path, "%s/canonical.txt", dir);
    char *canonical = read_all(path, &clen);
    CHECK(canonical != NULL);
    snprintf(pattern, sizeof pattern, "%s/*.json", dir);
    glob_t g;
    CHECK(glob(pattern, 0, NULL, &g) == 0);
    CHECK(g.gl_pathc >= 10);
    size_t canon_seen = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *base = strrchr(g.gl_pathv[i], '/') + 1;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int) (strlen(base) - 5), base);
        fprintf(stderr, "  vector %s\n", name);
        kind_t k = kind_of(name);
        size_t len;
        snprintf(path, sizeof path, "%s/%s.mp", dir, name);
        char *data = read_all(path, &len);
        json_error_t jerr;
        json_t *want = json_load_file(g.gl_pathv[i], 0, &jerr);
        CHECK(data && want);
        any_t got;
        char why[256];
        int rc = data ? parse(k, data, len, &got, why, sizeof why) : -1;
        if (rc != 0)
            fprintf(stderr, "  %s refused: %s\n", name, why);
        CHECK(rc == 0);
        if (rc == 0 && want)
            check_json(k, &got, want);
        /* every cut short is refused, with a reason */
        for (size_t cut = 0; data && cut < len; cut++) {
            any_t junk;
            CHECK(parse(k, data, cut, &junk, why, sizeof why) == -1 && why[0]);
        }
        /* packed again: byte for byte for the canonical ones, the same fields for all */
        char line[300];
        snprintf(line, sizeof line, "%s\n", name);
        bool canon = canonical && strstr(canonical, line) != NULL;
        canon_seen += canon;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        if (rc == 0) {
            CHECK(pack(k, &got, &sb, why, sizeof why) == 0);
            if (canon)
                CHECK(sb.size == len && memcmp(sb.data, data, len) == 0);
            any_t again;
            CHECK(parse(k, sb.data, sb.size, &again, why, sizeof why) == 0);
            if (want)
                check_json(k, &again, want);
        }
        msgpack_sbuffer_destroy(&sb);
        json_decref(want);
        free(data);
    }
    CHECK(canon_seen >= 10);
    globfree(&g);
    free(canonical);
}

TEST_IMPL(bad_vectors)
{
    char pattern[2100], path[2400];
    snprintf(pattern, sizeof pattern, "%s/bad-*.mp", dir);
    glob_t g;
    CHECK(glob(pattern, 0, NULL, &g) == 0);
    CHECK(g.gl_pathc >= 20);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *base = strrchr(g.gl_pathv[i], '/') + 1;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int) (strlen(base) - 3), base);
        size_t len, tlen;
        char *data = read_all(g.gl_pathv[i], &len);
        snprintf(path, sizeof path, "%s/%s.txt", dir, name);
        char *want = read_all(path, &tlen);
        CHECK(data && want);
        if (!data || !want) {
            free(data);
            free(want);
            continue;
        }
        want[strcspn(want, "\n")] = '\0';
        any_t got;
        char why[256];
        int rc = parse(kind_of(name), data, len, &got, why, sizeof why);
        if (rc == 0 || !strstr(why, want))
            fprintf(stderr, "  %s: %s, want \"%s\"\n", name, rc == 0 ? "accepted" : why, want);
        CHECK(rc == -1 && strstr(why, want));
        free(data);
        free(want);
    }
    globfree(&g);
}

/* The packers refuse what the parsers would, and leave the buffer as it was. */
TEST_IMPL(pack_refusals)
{
    /* one request a row */
    /* clang-format off */
    nw_replay_request_t bad_reqs[] = {
        { .type = 0 },
        { .type = NW_REPLAY_REQ_CREDIT, .credit = 0 },
        { .type = NW_REPLAY_REQ_CREDIT, .credit = NW_REPLAY_MAX_CREDIT + 1 },
        { .type = NW_REPLAY_REQ_REPLAY, .topic = "Telecoms", .has_from = true, .from = 1,
          .credit = 1 },
        { .type = NW_REPLAY_REQ_REPLAY, .topic = "", .has_from = true, .from = 1, .credit = 1 },
        { .type = NW_REPLAY_REQ_REPLAY, .topic = "t", .credit = 1 },
        { .type = NW_REPLAY_REQ_REPLAY, .topic = "t", .has_from = true, .has_last = true,
          .from = 1, .last = 1, .credit = 1 },
        { .type = NW_REPLAY_REQ_REPLAY, .topic = "t", .has_from = true, .from = 0, .credit = 1 },
        { .type = NW_REPLAY_REQ_REPLAY, .topic = "t", .has_from = true, .from = 5,
          .has_to = true, .to = 4, .credit = 1 },
    };
    /* clang-format on */
    char why[128];
    for (size_t i = 0; i < sizeof bad_reqs / sizeof bad_reqs[0]; i++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        why[0] = '\0';
        CHECK(nw_replay_request_pack(&bad_reqs[i], &sb, why, sizeof why) == -1 && why[0]);
        CHECK(sb.size == 0);
        msgpack_sbuffer_destroy(&sb);
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    nw_replay_end_t end = {.topic = "a..b"};
    CHECK(nw_replay_end_pack(&end, &sb, why, sizeof why) == -1 && sb.size == 0);
    nw_replay_error_t error = {.topic = "a.", .code = "busy"};
    CHECK(nw_replay_error_pack(&error, &sb, why, sizeof why) == -1 && sb.size == 0);
    nw_replay_error_t nocode = {.topic = "a"};
    CHECK(nw_replay_error_pack(&nocode, &sb, why, sizeof why) == -1 && sb.size == 0);
    msgpack_sbuffer_destroy(&sb);
}

/* Round trips at the edges the vectors cannot hold (JSON numbers stop at 2^63). */
TEST_IMPL(round_trips)
{
    char why[128];
    nw_replay_request_t req = {.type = NW_REPLAY_REQ_REPLAY,
                               .has_from = true,
                               .from = UINT64_MAX - 1,
                               .has_to = true,
                               .to = UINT64_MAX,
                               .credit = NW_REPLAY_MAX_CREDIT};
    memset(req.topic, 'z', NW_TOPIC_MAX);
    req.topic[NW_TOPIC_MAX] = '\0';
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    CHECK(nw_replay_request_pack(&req, &sb, why, sizeof why) == 0);
    nw_replay_request_t back;
    CHECK(nw_replay_request_parse(sb.data, sb.size, &back, why, sizeof why) == 0);
    CHECK(memcmp(&req, &back, sizeof req) == 0);
    msgpack_sbuffer_destroy(&sb);

    nw_replay_end_t end = {
        .topic = "telecoms.5g", .from = UINT64_MAX, .last = 0, .head = UINT64_MAX};
    msgpack_sbuffer_init(&sb);
    CHECK(nw_replay_end_pack(&end, &sb, why, sizeof why) == 0);
    nw_replay_end_t eback;
    CHECK(nw_replay_end_parse(sb.data, sb.size, &eback, why, sizeof why) == 0);
    CHECK(memcmp(&end, &eback, sizeof end) == 0);
    msgpack_sbuffer_destroy(&sb);

    /* a reason longer than the limit is cut there, on both sides */
    nw_replay_error_t error = {.code = "bad-request", .has_oldest = false};
    memset(error.reason, 'r', NW_REPLAY_MAX_REASON);
    msgpack_sbuffer_init(&sb);
    CHECK(nw_replay_error_pack(&error, &sb, why, sizeof why) == 0);
    nw_replay_error_t xback;
    CHECK(nw_replay_error_parse(sb.data, sb.size, &xback, why, sizeof why) == 0);
    CHECK(strlen(xback.reason) == NW_REPLAY_MAX_REASON && xback.topic[0] == '\0' &&
          !xback.has_oldest);
    CHECK_STR(xback.code, "bad-request");
    msgpack_sbuffer_destroy(&sb);

    CHECK(nw_replay_reply_kind("$end", 4) == NW_REPLAY_END);
    CHECK(nw_replay_reply_kind("$error", 6) == NW_REPLAY_ERROR);
    CHECK(nw_replay_reply_kind("$en", 3) == NW_REPLAY_DATA);
    CHECK(nw_replay_reply_kind("$errors", 7) == NW_REPLAY_DATA);
    CHECK(nw_replay_reply_kind("telecoms.", 9) == NW_REPLAY_DATA);
}

static int setup(void)
{
    const char *proto = getenv("NW_PROTO");
    snprintf(dir, sizeof dir, "%s/vectors/replay", proto ? proto : "proto");
    return 0;
}
TEST_SETUP(setup)
