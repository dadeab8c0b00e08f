/* test_log: names are escaped for the log: control characters, backslashes and invalid
 * UTF-8 as \xNN, valid UTF-8 kept, output bounded; level names parse both ways. */
#include "log.h"
#include "runner.h"

TEST_IMPL(escape)
{
    char out[64];
    CHECK_STR(nw_log_escape("plain.txt", out, sizeof out), "plain.txt");
    CHECK_STR(nw_log_escape("red\x1b[31m\x07.txt", out, sizeof out), "red\\x1b[31m\\x07.txt");
    CHECK_STR(nw_log_escape("two\nlines", out, sizeof out), "two\\x0alines");
    CHECK_STR(nw_log_escape("back\\slash", out, sizeof out), "back\\x5cslash");
    CHECK_STR(nw_log_escape("bad\xff\xfe.txt", out, sizeof out), "bad\\xff\\xfe.txt");
    CHECK_STR(nw_log_escape("Zo\xc3\xab M\xc3\xbcller", out, sizeof out),
              "Zo\xc3\xab M\xc3\xbcller");
    CHECK_STR(nw_log_escape("\xc0\xaf", out, sizeof out), "\\xc0\\xaf");          /* overlong */
    CHECK_STR(nw_log_escape("\xed\xa0\x80", out, sizeof out), "\\xed\\xa0\\x80"); /* surrogate */
    CHECK_STR(nw_log_escape("\xe2\x82", out, sizeof out), "\\xe2\\x82");          /* truncated */
    char small[8];
    nw_log_escape("\x01\x02\x03\x04", small, sizeof small);
    CHECK(strlen(small) < sizeof small);
}

TEST_IMPL(levels)
{
    CHECK(nw_log_level_parse("debug") == NW_LOG_DEBUG);
    CHECK(nw_log_level_parse("warn") == NW_LOG_WARNING);
    CHECK(nw_log_level_parse("error") == NW_LOG_ERR);
    CHECK(nw_log_level_parse("loud") == -1);
    CHECK_STR(nw_log_level_name(NW_LOG_NOTICE), "notice");
}
