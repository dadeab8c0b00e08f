/*
 * text: the byte-level normalization every article layout shares.
 *
 * Raw file bytes enter through nw_text_decode (UTF-16 with a BOM, and bytes of invalid
 * UTF-8 that are Windows-1252, converted by iconv; then nw_text_sanitize: BOM dropped,
 * invalid UTF-8 replaced by U+FFFD, CR LF and lone CR turned into LF, other C0 controls
 * into spaces); the
 * parsers then walk the result line by line with nw_text_next_line and emit fields
 * through a growable nw_text_buf_t, either as one trimmed line (nw_text_put_oneline)
 * or as paragraphs (nw_text_para_*: trailing blanks cut, blank runs collapsed).
 * Everything is linear in the input and runs on any thread; the only global state is
 * what nw_text_init keeps loaded at start.
 */
#ifndef NW_TEXT_H
#define NW_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* A growable, always NUL-terminated string. failed latches on allocation failure so
 * callers check once at the end instead of after every append. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
} nw_text_buf_t;

void nw_text_buf_append(nw_text_buf_t *self, const char *s, size_t n);
void nw_text_buf_putc(nw_text_buf_t *self, char c);
/* Hand over the string (never NULL unless failed: "" for an empty buffer) and reset. */
char *nw_text_buf_take(nw_text_buf_t *self);
void nw_text_buf_free(nw_text_buf_t *self);

/* New heap copy of len bytes made safe to parse: see the file comment. *outlen gets
 * the length, *replaced the count of invalid bytes replaced. NULL when out of memory.
 * The input must not contain NUL (check with memchr first). */
char *nw_text_sanitize(const char *data, size_t len, size_t *outlen, unsigned *replaced);

/* The whole decode step for a file's bytes: UTF-16LE/BE after their BOM are converted
 * to UTF-8; NUL is refused; the text is sanitized as nw_text_sanitize does; when that
 * found invalid UTF-8 and iconv reads each invalid byte as Windows-1252, those bytes
 * are taken in that reading, and valid UTF-8 around them stays (a mistake pasted into
 * UTF-8 is mended, the rest not reread). *encoding gets the IANA name of what was
 * converted ("UTF-16LE", "UTF-16BE", "windows-1252"; a static string), or NULL for
 * UTF-8; *replaced the input bytes that decoded to nothing and became U+FFFD. NULL with
 * a reason in errbuf ("contains NUL bytes", "out of memory") when refused. */
char *nw_text_decode(const char *data, size_t len, size_t *outlen, unsigned *replaced,
                     const char **encoding, char *errbuf, size_t errlen);

/* Load the iconv conversions nw_text_decode uses and keep them loaded for the life of
 * the process. Without it the first conversion loads them, and under a shortage of
 * descriptors that load fails (glibc then keeps the failure for good): UTF-16 files
 * would be refused as holding NUL. Call once at start, before any thread decodes.
 * 0, or -1 with the reason when the C library lacks one (decoding then goes on without
 * that conversion). */
int nw_text_init(char *errbuf, size_t errlen);

/* Length (1..4) of the valid UTF-8 sequence at s (n bytes available), 0 when invalid:
 * strict (no overlongs, surrogates or code points above U+10FFFF). */
size_t nw_text_utf8_len(const char *s, size_t n);

/* Iterate the lines of s[0..len): *pos is the cursor (start at 0). Sets *line and
 * *linelen (without the LF); false at the end. */
bool nw_text_next_line(const char *s, size_t len, size_t *pos, const char **line,
                       size_t *linelen);

/* Narrow s/n to its content without leading and trailing white space (ASCII blanks
 * and U+00A0). */
void nw_text_trim(const char **s, size_t *n);
bool nw_text_is_blank(const char *s, size_t n);

/* Append s/n with every run of white space (newlines included) as one space, and no
 * leading or trailing space. */
void nw_text_put_oneline(nw_text_buf_t *self, const char *s, size_t n);
/* The same into a new string; NULL when out of memory or nothing is left. */
char *nw_text_oneline(const char *s, size_t n);

/* Case-insensitive (ASCII) comparisons of a counted string. */
bool nw_text_ieq(const char *s, size_t n, const char *lit);
bool nw_text_istarts(const char *s, size_t n, const char *lit);

/* Paragraph writer: feed lines one at a time; lines lose trailing white space, blank
 * lines at either end are dropped and runs of them become a single blank line. */
typedef struct {
    nw_text_buf_t buf;
    bool pending_blank;
} nw_text_para_t;

void nw_text_para_line(nw_text_para_t *self, const char *line, size_t n);
/* Force a paragraph break before the next non-blank line. */
void nw_text_para_break(nw_text_para_t *self);
/* Feed every line of s/n. */
void nw_text_para_text(nw_text_para_t *self, const char *s, size_t n);
/* The text, or NULL when empty or out of memory (*oom says which). */
char *nw_text_para_take(nw_text_para_t *self, bool *oom);

#endif
