/* test_text: nw_text_sanitize, whose bulk path copies eight plain ASCII bytes at a time.
 * Each kind of byte it must change is placed at every offset of a printable run, so
 * both the eight-byte path and the byte path meet it at every alignment. */
#include "check.h"
#include "text.h"

#include <stdlib.h>

typedef struct {
    const char *in;     /* the special sequence */
    const char *out;    /* what it becomes */
    unsigned replaced;
} case_t;

static const case_t cases[] = {
    {"\t", "\t", 0},                  /* kept */
    {"\n", "\n", 0},                  /* kept */
    {"\r", "\n", 0},                  /* CR alone ends a line */
    {"\r\n", "\n", 0},                /* CRLF is one newline */
    {"\x01", " ", 0},                 /* other controls become spaces */
    {"\x1f", " ", 0},
    {"\x7f", " ", 0},                 /* DEL too */
    {" ", " ", 0},
    {"~", "~", 0},
    {"\xc3\xa9", "\xc3\xa9", 0},      /* valid UTF-8 is kept */
    {"\xe2\x82\xac", "\xe2\x82\xac", 0},
    {"\xf0\x9f\x93\xb0", "\xf0\x9f\x93\xb0", 0},
    {"\xff", "\xef\xbf\xbd", 1},      /* invalid bytes become U+FFFD */
    {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd", 2},   /* overlong */
    {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 3},   /* a surrogate */
};

/* out = the first at bytes of fill, then mid, then the next tail bytes of fill. */
static size_t around(char *out, const char *fill, size_t at, const char *mid, size_t midlen,
                     size_t tail)
{
    memcpy(out, fill, at);
    memcpy(out + at, mid, midlen);
    memcpy(out + at + midlen, fill + at, tail);
    return at + midlen + tail;
}

int main(void)
{
    char in[128], want[160];
    const char *fill = "The quick brown fox jumps over 13 lazy dogs, again and again!";
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t slen = strlen(cases[c].in), olen = strlen(cases[c].out);
        for (size_t at = 0; at < 24; at++) {
            for (size_t tail = 0; tail < 10; tail++) {
                size_t n = around(in, fill, at, cases[c].in, slen, tail);
                size_t w = around(want, fill, at, cases[c].out, olen, tail);
                want[w] = '\0';
                size_t outlen = 0;
                unsigned replaced = 99;
                char *out = nw_text_sanitize(in, n, &outlen, &replaced);
                CHECK(out != NULL);
                if (!out)
                    continue;
                if (strcmp(out, want) != 0 || outlen != w || replaced != cases[c].replaced) {
                    fprintf(stderr, "case %zu at %zu tail %zu\n", c, at, tail);
                    CHECK_STR(out, want);
                    CHECK(outlen == w);
                    CHECK(replaced == cases[c].replaced);
                }
                free(out);
            }
        }
    }
    /* A BOM goes; a NUL inside the text becomes a space. */
    size_t outlen;
    unsigned replaced;
    char *out = nw_text_sanitize("\xef\xbb\xbfHeadline over eight bytes", 28, &outlen, &replaced);
    CHECK_STR(out, "Headline over eight bytes");
    free(out);
    out = nw_text_sanitize("abcdefgh\0ijklmnop", 17, &outlen, &replaced);
    CHECK_STR(out, "abcdefgh ijklmnop");
    CHECK(outlen == 17);
    free(out);
    return CHECK_DONE();
}
