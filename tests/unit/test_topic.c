/* test_topic: the topic grammar of proto section 5 as nw_topic pins it: what is and is
 * not a topic, normalization of free-form subjects, the frame-0 terminator both ways,
 * whole-level matching across level boundaries, and NW_TOPIC_MAX at its edge (the
 * longest topic, one byte more) for each of them. */
#include "nw_topic.h"
#include "runner.h"

#include <stdlib.h>
#include <string.h>

static bool valid(const char *s)
{
    return nw_topic_valid(s, strlen(s));
}

TEST_IMPL(valid)
{
    static const char *const good[] = {
        "general",         "telecoms", "telecoms.5g", "geopolitics.europe",
        "geo-politics.eu", "a",        "0",           "-",
        "a.b.c.d",         "x--y",     "-a-.-b-",     "5g",
    };
    static const char *const bad[] = {
        "",    ".",   "..",  ".telecoms",   "telecoms.",  "a..b", "Telecoms",
        "a b", "a_b", "a/b", "caf\xc3\xa9", "tele\tcoms", "a.",   "*",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK(valid(good[i]));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(!valid(bad[i]));
    CHECK(!nw_topic_valid("ab\0c", 4));      /* a NUL is not in the grammar */
    CHECK(nw_topic_valid("telecoms.5g", 8)); /* the length decides, not the NUL */
    CHECK(!nw_topic_valid(NULL, 0));

    char longest[NW_TOPIC_MAX + 2];
    memset(longest, 'a', sizeof longest);
    CHECK(nw_topic_valid(longest, NW_TOPIC_MAX));
    CHECK(!nw_topic_valid(longest, NW_TOPIC_MAX + 1));
    longest[NW_TOPIC_MAX - 2] = '.'; /* a one-byte last level still counts */
    CHECK(nw_topic_valid(longest, NW_TOPIC_MAX));
    longest[NW_TOPIC_MAX - 1] = '.';
    CHECK(!nw_topic_valid(longest, NW_TOPIC_MAX));
}

TEST_IMPL(normalize)
{
    static const struct {
        const char *in, *want;
    } table[] = {
        {"Telecoms / 5G", "telecoms-5g"},
        {"Telecoms.5G", "telecoms.5g"},
        {"telecoms", "telecoms"},
        {"  Trade__War  ", "trade-war"},
        {"x--y", "x-y"},
        {"-a-.-b-", "a.b"},
        {"..a..b..", "a.b"},
        {"a.///.b", "a.b"},
        {"Caf\xc3\xa9 Society", "caf-society"},
        {"\xc3\x89"
         "conomie",
         "conomie"},
        {"Tech / AI.Chips & Fabs", "tech-ai.chips-fabs"},
        {"", NULL},
        {"///", NULL},
        {"...", NULL},
        {"\xe2\x80\x94", NULL},
    };
    char out[NW_TOPIC_MAX + 1];
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        int rc = nw_topic_normalize(table[i].in, out, sizeof out);
        if (table[i].want) {
            CHECK(rc == 0);
            if (rc == 0)
                CHECK_STR(out, table[i].want);
        } else
            CHECK(rc == -1);
    }
    char longest[NW_TOPIC_MAX + 2];
    memset(longest, 'a', NW_TOPIC_MAX);
    longest[NW_TOPIC_MAX] = '\0';
    CHECK(nw_topic_normalize(longest, out, sizeof out) == 0);
    CHECK(strlen(out) == NW_TOPIC_MAX);
    longest[NW_TOPIC_MAX] = 'a';
    longest[NW_TOPIC_MAX + 1] = '\0';
    CHECK(nw_topic_normalize(longest, out, sizeof out) == -1);
    /* folding can shorten a long input below the limit */
    char padded[600];
    memset(padded, ' ', sizeof padded - 1);
    padded[sizeof padded - 1] = '\0';
    memcpy(padded + 300, "News", 4);
    CHECK(nw_topic_normalize(padded, out, sizeof out) == 0);
    CHECK_STR(out, "news");
    char small[4];
    CHECK(nw_topic_normalize("abcd", small, sizeof small) == -1);
    CHECK(nw_topic_normalize("abc", small, sizeof small) == 0);
    CHECK(nw_topic_normalize(NULL, out, sizeof out) == -1);
}

/* The edges the old copies disagreed on: a subject that reaches the limit and then
 * ends with separators or '.' (written then taken back by the client library's copy,
 * which needed room for them), and one that crosses it only by a '.' of its own. */
TEST_IMPL(normalize_edges)
{
    char in[NW_TOPIC_MAX + 8], out[NW_TOPIC_MAX + 1];
    memset(in, 'a', NW_TOPIC_MAX);
    strcpy(in + NW_TOPIC_MAX, ".");
    CHECK(nw_topic_normalize(in, out, sizeof out) == 0 && strlen(out) == NW_TOPIC_MAX);
    strcpy(in + NW_TOPIC_MAX, " &.");
    CHECK(nw_topic_normalize(in, out, sizeof out) == 0 && strlen(out) == NW_TOPIC_MAX);
    strcpy(in + NW_TOPIC_MAX - 1, ".b"); /* 254 + ".b" = 256 */
    CHECK(nw_topic_normalize(in, out, sizeof out) == -1);
    strcpy(in + NW_TOPIC_MAX - 2, ".b"); /* 253 + ".b" = 255 */
    CHECK(nw_topic_normalize(in, out, sizeof out) == 0 && strlen(out) == NW_TOPIC_MAX);
    CHECK(valid(out));
    /* whatever it makes is a topic */
    static const char *const odd[] = {"A.B", " x . y ", "1-2-3", "__a__", "a\xff.b", "-.-.z"};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
        CHECK(nw_topic_normalize(odd[i], out, sizeof out) == 0 && valid(out));
}

/* Grants and subscriptions in raw form: the topic plus '.', as frame 0 carries it. */
TEST_IMPL(terminate)
{
    char out[NW_TOPIC_FRAME_MAX + 1];
    CHECK(nw_topic_terminate("", 0, out) == 0 && strcmp(out, "") == 0);
    CHECK(nw_topic_terminate("telecoms", 8, out) == 9 && strcmp(out, "telecoms.") == 0);
    CHECK(nw_topic_terminate("telecoms.", 9, out) == 9 && strcmp(out, "telecoms.") == 0);
    CHECK(nw_topic_terminate("tele", 4, out) == 5 && strcmp(out, "tele.") == 0);
    CHECK(nw_topic_terminate("telecoms.5g", 11, out) == 12 && strcmp(out, "telecoms.5g.") == 0);

    char longest[NW_TOPIC_MAX + 1];
    memset(longest, 'z', NW_TOPIC_MAX);
    longest[NW_TOPIC_MAX] = '\0';
    CHECK(nw_topic_terminate(longest, NW_TOPIC_MAX, out) == NW_TOPIC_FRAME_MAX);
    CHECK(out[NW_TOPIC_MAX] == '.' && out[NW_TOPIC_FRAME_MAX] == '\0');
}

TEST_IMPL(unframe)
{
    char topic[NW_TOPIC_MAX + 1], why[64];
    CHECK(nw_topic_unframe("telecoms.5g.", 12, topic, why, sizeof why) == 0);
    CHECK_STR(topic, "telecoms.5g");
    CHECK(nw_topic_unframe("telecoms", 8, topic, why, sizeof why) == -1);
    CHECK_STR(why, "topic frame lacks its terminating '.'");
    CHECK(nw_topic_unframe("", 0, topic, why, sizeof why) == -1);
    CHECK_STR(why, "topic frame lacks its terminating '.'");
    CHECK(nw_topic_unframe(".", 1, topic, why, sizeof why) == -1);
    CHECK_STR(why, "topic frame is not a topic name");
    CHECK(nw_topic_unframe("tele..", 6, topic, why, sizeof why) == -1);
    CHECK(nw_topic_unframe("Tele.", 5, topic, why, sizeof why) == -1);
    CHECK(nw_topic_unframe("te\0le.", 6, topic, why, sizeof why) == -1);
    CHECK_STR(why, "topic frame is not a topic name");

    char frame[NW_TOPIC_FRAME_MAX + 2];
    memset(frame, 'q', sizeof frame);
    frame[NW_TOPIC_MAX] = '.'; /* 255 + '.' */
    CHECK(nw_topic_unframe(frame, NW_TOPIC_FRAME_MAX, topic, why, sizeof why) == 0);
    CHECK(strlen(topic) == NW_TOPIC_MAX);
    frame[NW_TOPIC_MAX] = 'q';
    frame[NW_TOPIC_FRAME_MAX] = '.'; /* 256 + '.' */
    CHECK(nw_topic_unframe(frame, NW_TOPIC_FRAME_MAX + 1, topic, why, sizeof why) == -1);
    CHECK_STR(why, "topic frame of 257 bytes");
}

TEST_IMPL(matches)
{
    /* the empty subscription is everything */
    CHECK(nw_topic_matches("", "telecoms"));
    CHECK(nw_topic_matches("", "a.b.c"));
    /* terminated (a grant, a raw subscription) and bare (a client's) mean the same */
    static const char *const subs[] = {"telecoms.", "telecoms"};
    for (size_t i = 0; i < 2; i++) {
        const char *s = subs[i];
        CHECK(nw_topic_matches(s, "telecoms"));
        CHECK(nw_topic_matches(s, "telecoms.5g"));
        CHECK(nw_topic_matches(s, "telecoms.5g.eu"));
        CHECK(!nw_topic_matches(s, "telecomsx"));
        CHECK(!nw_topic_matches(s, "telecoms-eu"));
        CHECK(!nw_topic_matches(s, "telecom"));
        CHECK(!nw_topic_matches(s, "tele"));
        CHECK(!nw_topic_matches(s, "sport"));
        CHECK(!nw_topic_matches(s, "x.telecoms"));
    }
    CHECK(!nw_topic_matches("telecoms.5g.", "telecoms"));
    CHECK(!nw_topic_matches("telecoms.5g", "telecoms"));
    CHECK(nw_topic_matches("telecoms.5g", "telecoms.5g.eu"));
    CHECK(!nw_topic_matches("telecoms.5g", "telecoms.5gx"));
    CHECK(!nw_topic_matches("telecoms.5g", "telecoms.5"));
    /* "." alone is no subscription: it must not widen to everything */
    CHECK(!nw_topic_matches(".", "telecoms"));

    char longest[NW_TOPIC_MAX + 1];
    memset(longest, 'm', NW_TOPIC_MAX);
    longest[NW_TOPIC_MAX] = '\0';
    CHECK(nw_topic_matches(longest, longest));
    CHECK(nw_topic_matches("mmm", "mmm"));
    CHECK(!nw_topic_matches("mmm", longest));
}
