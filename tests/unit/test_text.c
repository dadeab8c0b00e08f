/* test_text: nw_text_decode (UTF-16, Windows-1252, NUL), and nw_text_sanitize, whose
 * bulk path copies eight plain ASCII bytes at a time. Each kind of byte it must change
 * is placed at every offset of a printable run, so both the eight-byte path and the
 * byte path meet it at every alignment. */
#include "runner.h"
#include "text.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct {
    const char *in;  /* the special sequence */
    const char *out; /* what it becomes */
    unsigned replaced;
} case_t;

static const case_t cases[] = {
    {"\t", "\t", 0},   /* kept */
    {"\n", "\n", 0},   /* kept */
    {"\r", "\n", 0},   /* CR alone ends a line */
    {"\r\n", "\n", 0}, /* CRLF is one newline */
    {"\x01", " ", 0},  /* other controls become spaces */
    {"\x1f", " ", 0},
    {"\x7f", " ", 0}, /* DEL too */
    {" ", " ", 0},
    {"~", "~", 0},
    {"\xc3\xa9", "\xc3\xa9", 0}, /* valid UTF-8 is kept */
    {"\xe2\x82\xac", "\xe2\x82\xac", 0},
    {"\xf0\x9f\x93\xb0", "\xf0\x9f\x93\xb0", 0},
    {"\xff", "\xef\xbf\xbd", 1},                                 /* invalid bytes become U+FFFD */
    {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd", 2},                 /* overlong */
    {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 3}, /* a surrogate */
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

/* One nw_text_decode: the text it gives (NULL: refused, with the reason in want), the
 * encoding it names and the bytes it replaced. */
static void decode_case(const char *in, size_t n, const char *want, const char *want_enc,
                        unsigned want_replaced)
{
    size_t outlen = 0;
    unsigned replaced = 99;
    const char *enc = "unset";
    char err[64] = "";
    char *out = nw_text_decode(in, n, &outlen, &replaced, &enc, err, sizeof err);
    if (!out) {
        CHECK_STR(err, want);
        return;
    }
    CHECK_STR(out, want);
    CHECK(outlen == strlen(want));
    CHECK(want_enc ? enc && strcmp(enc, want_enc) == 0 : enc == NULL);
    CHECK(replaced == want_replaced);
    if (replaced != want_replaced || (want_enc ? !enc || strcmp(enc, want_enc) : enc != NULL))
        fprintf(stderr, "  decode \"%s\": encoding %s, %u replaced\n", want, enc ? enc : "(none)",
                replaced);
    free(out);
}

#define DECODE(lit, want, enc, replaced) decode_case(lit, sizeof lit - 1, want, enc, replaced)

TEST_IMPL(decode)
{
    /* UTF-8 stays as it is, its BOM dropped; NUL refuses the text */
    DECODE("Caf\xc3\xa9 \xe2\x82\xac", "Caf\xc3\xa9 \xe2\x82\xac", NULL, 0);
    DECODE("\xef\xbb\xbf"
           "BOM first",
           "BOM first", NULL, 0);
    DECODE("a\0b", "contains NUL bytes", NULL, 0);
    /* UTF-16 with a BOM, both byte orders: accents, the euro sign, a surrogate pair
     * (U+1F4F0), CR LF */
    DECODE("\xff\xfe"
           "C\0a\0f\0\xe9\0 \0\xac\x20\r\0\n\0=\xd8\xf0\xdc",
           "Caf\xc3\xa9 \xe2\x82\xac\n\xf0\x9f\x93\xb0", "UTF-16LE", 0);
    DECODE("\xfe\xff"
           "\0C\0a\0f\0\xe9\0 \x20\xac\xd8=\xdc\xf0",
           "Caf\xc3\xa9 \xe2\x82\xac\xf0\x9f\x93\xb0", "UTF-16BE", 0);
    /* a lone surrogate and an odd last byte: one U+FFFD each, the rest kept */
    DECODE("\xff\xfe"
           "a\0\x00\xdc"
           "b\0c",
           "a\xef\xbf\xbd"
           "b\xef\xbf\xbd",
           "UTF-16LE", 3);
    /* a UTF-16 NUL character is still a NUL */
    DECODE("\xff\xfe"
           "a\0\0\0b\0",
           "contains NUL bytes", NULL, 0);
    /* Windows-1252: accents, typographic quotes and dashes, the euro sign (0x80..0x9F
     * hold the typographic characters Latin-1 lacks) */
    DECODE("Caf\xe9 \x93quoted\x94 \x96 \x80"
           "5 na\xefve",
           "Caf\xc3\xa9 \xe2\x80\x9cquoted\xe2\x80\x9d \xe2\x80\x93 \xe2\x82\xac"
           "5 na\xc3\xafve",
           "windows-1252", 0);
    /* each of the five bytes Windows-1252 leaves undefined keeps the U+FFFD reading */
    const char undefined[] = {(char) 0x81, (char) 0x8d, (char) 0x8f, (char) 0x90, (char) 0x9d};
    for (size_t i = 0; i < sizeof undefined; i++) {
        char in[16];
        int n = snprintf(in, sizeof in, "caf\xe9 %c", undefined[i]);
        decode_case(in, (size_t) n, "caf\xef\xbf\xbd \xef\xbf\xbd", NULL, 2);
    }
    /* Windows-1252 pasted into UTF-8 (a BOM too): the invalid bytes are read as
     * Windows-1252, the valid UTF-8 stays as it is */
    DECODE("\xef\xbb\xbf"
           "caf\xe9",
           "caf\xc3\xa9", "windows-1252", 0);
    DECODE("Z\xc3\xbcrich \x93"
           "caf\xe9\x94 \xe2\x82\xac"
           "5",
           "Z\xc3\xbcrich \xe2\x80\x9c"
           "caf\xc3\xa9\xe2\x80\x9d \xe2\x82\xac"
           "5",
           "windows-1252", 0);
    /* a cut UTF-8 sequence is bytes of Windows-1252 too: E2 82 reads as U+00E2 U+201A */
    DECODE("x\xe2\x82", "x\xc3\xa2\xe2\x80\x9a", "windows-1252", 0);
}

/* With nw_text_init done at start, converting needs no descriptor: a UTF-16 or
 * Windows-1252 file read while every descriptor is taken is still converted (glibc
 * would otherwise fail the first conversion, and every one after it, for good). Its own
 * process, as every case has: no conversion ran before it to load iconv. */
TEST_IMPL(decode_without_descriptors)
{
    char err[128];
    CHECK(nw_text_init(err, sizeof err) == 0);
    int lowest = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(lowest >= 0);
    close(lowest);
    struct rlimit saved, none;
    CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    none = (struct rlimit) {(rlim_t) lowest, saved.rlim_max};
    CHECK(setrlimit(RLIMIT_NOFILE, &none) == 0);
    int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(probe < 0 && errno == EMFILE);
    if (probe >= 0)
        close(probe);
    DECODE("\xff\xfe"
           "a\0\xe9\0",
           "a\xc3\xa9", "UTF-16LE", 0);
    DECODE("\xfe\xff"
           "\0a\0\xe9",
           "a\xc3\xa9", "UTF-16BE", 0);
    DECODE("caf\xe9", "caf\xc3\xa9", "windows-1252", 0);
    CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
}

/* Every special sequence at every offset of a printable run, with every tail after it. */
TEST_IMPL(sanitize_at_every_offset)
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
}

/* A BOM goes; a NUL inside the text becomes a space. */
TEST_IMPL(sanitize_bom_and_nul)
{
    size_t outlen;
    unsigned replaced;
    char *out = nw_text_sanitize("\xef\xbb\xbfHeadline over eight bytes", 28, &outlen, &replaced);
    CHECK_STR(out, "Headline over eight bytes");
    free(out);
    out = nw_text_sanitize("abcdefgh\0ijklmnop", 17, &outlen, &replaced);
    CHECK_STR(out, "abcdefgh ijklmnop");
    CHECK(outlen == 17);
    free(out);
}
