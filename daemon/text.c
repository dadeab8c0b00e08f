/*
 * text: UTF-8 repair, line endings, white space and the growable buffer the article
 * parsers write their fields into. Bytes come in as (pointer, length) pairs and leave
 * as heap strings owned by the caller; every function is one linear pass. Encodings other
 * than UTF-8 are converted by the C library's iconv (a descriptor opened per conversion:
 * they are rare, and an iconv_t must not be shared between threads).
 */
#include "text.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

void nw_text_buf_append(nw_text_buf_t *self, const char *s, size_t n)
{
    if (self->failed)
        return;
    if (self->cap - self->len <= n) {
        size_t cap = self->cap ? self->cap : 64;
        while (cap - self->len <= n) {
            if (cap > SIZE_MAX / 2) {
                self->failed = true;
                return;
            }
            cap *= 2;
        }
        char *grown = realloc(self->data, cap);
        if (!grown) {
            self->failed = true;
            return;
        }
        self->data = grown;
        self->cap = cap;
    }
    if (n)
        memcpy(self->data + self->len, s, n);
    self->len += n;
    self->data[self->len] = '\0';
}

void nw_text_buf_putc(nw_text_buf_t *self, char c)
{
    nw_text_buf_append(self, &c, 1);
}

char *nw_text_buf_take(nw_text_buf_t *self)
{
    if (self->failed) {
        nw_text_buf_free(self);
        return NULL;
    }
    if (!self->data)
        nw_text_buf_append(self, "", 0);
    if (self->failed) {
        nw_text_buf_free(self);
        return NULL;
    }
    char *out = self->data;
    /* Give back the doubling slack: articles can be held for a while downstream. */
    if (self->cap > self->len + 64) {
        char *tight = realloc(out, self->len + 1);
        if (tight)
            out = tight;
    }
    memset(self, 0, sizeof *self);
    return out;
}

void nw_text_buf_free(nw_text_buf_t *self)
{
    free(self->data);
    memset(self, 0, sizeof *self);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid; *bad gets the
 * length of the maximal invalid subpart to replace by one U+FFFD (Unicode 3.9). */
static size_t utf8_seq(const unsigned char *s, size_t avail, size_t *bad)
{
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        *bad = 1;
        return 0;
    }
    size_t i;
    for (i = 1; i <= need; i++) {
        if (i >= avail || s[i] < lo || s[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

size_t nw_text_utf8_len(const char *s, size_t n)
{
    size_t bad;
    return n ? utf8_seq((const unsigned char *) s, n, &bad) : 0;
}

char *nw_text_sanitize(const char *data, size_t len, size_t *outlen, unsigned *replaced)
{
    const unsigned char *s = (const unsigned char *) data;
    size_t i = 0, o = 0;
    unsigned count = 0;

    if (len >= 3 && s[0] == 0xEF && s[1] == 0xBB && s[2] == 0xBF)
        i = 3;
    /* Worst case every byte becomes a 3-byte U+FFFD. */
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    char *out = malloc(3 * (len - i) + 1);
    if (!out)
        return NULL;
    while (i < len) {
        size_t left = len - i; /* the 8-byte step below only tries what this one did not */
#if defined(__SSE2__)
        /* Plain printable ASCII (the bulk of any article) goes across sixteen bytes at
         * a time, up to the first byte that is not: all sixteen are stored (the output
         * has room: o <= 3 * the bytes read, and 16 <= 3 * (len - i)), only those before
         * it count. */
        if (left >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *) (const void *) (s + i));
            /* signed bytes: those from 0x80 are negative, below 0x20 */
            __m128i printable = _mm_andnot_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(0x7F)),
                                                 _mm_cmpgt_epi8(v, _mm_set1_epi8(0x1F)));
            unsigned plain = (unsigned) _mm_movemask_epi8(printable);
            _mm_storeu_si128((__m128i *) (void *) (out + o), v);
            size_t run = plain == 0xFFFF ? 16 : (size_t) __builtin_ctz(~plain);
            o += run;
            i += run;
            if (run == 16)
                continue;
            left = 0; /* the byte at i is not plain */
        }
#endif
        /* Eight plain printable ASCII bytes go across at once. */
        if (left >= 8) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
            uint64_t del = w ^ (0x7F * ones);
            if (!((w | ((w - 0x20 * ones) & ~w) | ((del - ones) & ~del)) & highs)) {
                memcpy(out + o, s + i, 8);
                o += 8;
                i += 8;
                continue;
            }
        }
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c == '\r') {
                out[o++] = '\n';
                i += (i + 1 < len && s[i + 1] == '\n') ? 2 : 1;
                continue;
            }
            /* Other controls would only confuse line logic and downstream logs. */
            out[o++] = (c < 0x20 && c != '\t' && c != '\n') || c == 0x7F ? ' ' : (char) c;
            i++;
            continue;
        }
        size_t bad = 0;
        size_t n = utf8_seq(s + i, len - i, &bad);
        if (n) {
            memcpy(out + o, s + i, n);
            o += n;
            i += n;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i += bad;
            if (count < UINT32_MAX - bad)
                count += (unsigned) bad;
        }
    }
    out[o] = '\0';
    /* Shrink when replacement did not need the headroom (the common case). */
    char *tight = realloc(out, o + 1);
    if (tight)
        out = tight;
    *outlen = o;
    *replaced = count;
    return out;
}

int nw_text_init(char *errbuf, size_t errlen)
{
    static const char *const from[] = {"UTF-16LE", "UTF-16BE", "WINDOWS-1252"};
    static iconv_t kept[3];
    for (size_t i = 0; i < 3; i++) {
        if (kept[i] && kept[i] != (iconv_t) -1)
            continue;
        kept[i] = iconv_open("UTF-8", from[i]); /* never closed: it keeps the module */
        if (kept[i] == (iconv_t) -1) {
            snprintf(errbuf, errlen, "iconv cannot convert %s to UTF-8: %s", from[i],
                     strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* len bytes in encoding `from` to UTF-8 with iconv, into a new string (*out, *outlen).
 * With unit (the code unit size: 2 for UTF-16) what iconv cannot convert becomes one
 * U+FFFD per unit and is counted in *bad; without, the text is not of that encoding.
 * 0; -1 not of that encoding (or iconv does not know it); -2 out of memory. */
static int iconv_utf8(const char *from, const char *data, size_t len, size_t unit, char **out,
                      size_t *outlen, unsigned *bad)
{
    /* At most 3 UTF-8 bytes for each input byte (U+FFFD for a 2-byte unit, a BMP
     * character for a UTF-16 unit or a Windows-1252 byte). */
    if (len > (SIZE_MAX - 8) / 3)
        return -2;
    iconv_t cd = iconv_open("UTF-8", from);
    if (cd == (iconv_t) -1)
        return errno == ENOMEM ? -2 : -1;
    size_t cap = 3 * len + 8;
    char *buf = malloc(cap);
    if (!buf) {
        iconv_close(cd);
        return -2;
    }
    char *in = (char *) data, *o = buf;
    size_t inleft = len, oleft = cap - 1;
    unsigned count = 0;
    int rc = 0;
    while (inleft > 0) {
        if (iconv(cd, &in, &inleft, &o, &oleft) != (size_t) -1)
            break;
        if (!unit || (errno != EILSEQ && errno != EINVAL) || oleft < 3) {
            rc = -1;
            break;
        }
        size_t skip = inleft < unit ? inleft : unit; /* EINVAL: a unit cut at the end */
        in += skip;
        inleft -= skip;
        memcpy(o, "\xEF\xBF\xBD", 3);
        o += 3;
        oleft -= 3;
        if (count < UINT32_MAX - skip)
            count += (unsigned) skip;
    }
    iconv_close(cd);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *o = '\0';
    *out = buf;
    *outlen = (size_t) (o - buf);
    *bad = count;
    return 0;
}

/* data with every byte of invalid UTF-8 converted from Windows-1252 by iconv, valid
 * UTF-8 copied: a new string in *out. 0; -1 when a byte is undefined in Windows-1252
 * (or iconv lacks it); -2 out of memory. */
static int cp1252_repair(const char *data, size_t len, char **out, size_t *outlen)
{
    if (len > (SIZE_MAX - 1) / 3)
        return -2;
    iconv_t cd = iconv_open("UTF-8", "WINDOWS-1252");
    if (cd == (iconv_t) -1)
        return errno == ENOMEM ? -2 : -1;
    char *buf = malloc(3 * len + 1), *o = buf;
    size_t i = 0;
    int rc = buf ? 0 : -2;
    while (rc == 0 && i < len) {
        size_t n = nw_text_utf8_len(data + i, len - i);
        if (n) {
            memcpy(o, data + i, n);
            o += n;
            i += n;
            continue;
        }
        char *in = (char *) data + i;
        size_t inleft = 1, oleft = 3; /* one byte is at most 3 bytes of UTF-8 */
        if (iconv(cd, &in, &inleft, &o, &oleft) == (size_t) -1)
            rc = -1;
        i++;
    }
    iconv_close(cd);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *o = '\0';
    *out = buf;
    *outlen = (size_t) (o - buf);
    return 0;
}

char *nw_text_decode(const char *data, size_t len, size_t *outlen, unsigned *replaced,
                     const char **encoding, char *errbuf, size_t errlen)
{
    const unsigned char *s = (const unsigned char *) data;
    char *decoded = NULL, *text = NULL;
    unsigned bad = 0, invalid = 0;
    *encoding = NULL;
    if (len >= 2 && ((s[0] == 0xFF && s[1] == 0xFE) || (s[0] == 0xFE && s[1] == 0xFF))) {
        const char *name = s[0] == 0xFF ? "UTF-16LE" : "UTF-16BE";
        size_t dlen;
        int rc = iconv_utf8(name, data + 2, len - 2, 2, &decoded, &dlen, &bad);
        if (rc == -2)
            goto oom;
        if (rc == 0) { /* else iconv lacks UTF-16: the NUL bytes refuse it below */
            *encoding = name;
            data = decoded;
            len = dlen;
        }
    }
    if (len && memchr(data, '\0', len)) {
        snprintf(errbuf, errlen, "contains NUL bytes");
        free(decoded);
        return NULL;
    }
    text = nw_text_sanitize(data, len, outlen, &invalid);
    if (!text)
        goto oom;
    if (invalid && !*encoding) {
        /* Not UTF-8: the most common mistake is Windows-1252 (or Latin-1, which it
         * extends), often pasted into UTF-8. Each byte of invalid UTF-8 is read as
         * Windows-1252 and valid UTF-8 is kept; when a byte is one of the five
         * Windows-1252 leaves undefined, the replacement above stands. */
        char *cp;
        size_t cplen, tlen;
        unsigned left;
        int rc = cp1252_repair(data, len, &cp, &cplen);
        if (rc == -2)
            goto oom;
        if (rc == 0) {
            char *again = nw_text_sanitize(cp, cplen, &tlen, &left);
            free(cp);
            if (!again)
                goto oom;
            free(text);
            text = again;
            *outlen = tlen;
            invalid = left;
            *encoding = "windows-1252";
        }
    }
    free(decoded);
    *replaced = bad + invalid < bad ? UINT32_MAX : bad + invalid;
    return text;
oom:
    free(decoded);
    free(text);
    snprintf(errbuf, errlen, "out of memory");
    return NULL;
}

bool nw_text_next_line(const char *s, size_t len, size_t *pos, const char **line, size_t *linelen)
{
    if (*pos >= len)
        return false;
    const char *start = s + *pos;
    const char *nl = memchr(start, '\n', len - *pos);
    size_t n = nl ? (size_t) (nl - start) : len - *pos;
    *line = start;
    *linelen = n;
    *pos += n + (nl ? 1 : 0);
    return true;
}

/* Bytes of white space at s (0 if none): ASCII blanks or U+00A0. */
static size_t space_at(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (s[0] == ' ' || s[0] == '\t' || s[0] == '\n')
        return 1;
    if (n >= 2 && (unsigned char) s[0] == 0xC2 && (unsigned char) s[1] == 0xA0)
        return 2;
    return 0;
}

/* Bytes of white space ending at s[n-1] (0 if none). */
static size_t space_before(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    char c = s[n - 1];
    if (c == ' ' || c == '\t' || c == '\n')
        return 1;
    if (n >= 2 && (unsigned char) s[n - 2] == 0xC2 && (unsigned char) c == 0xA0)
        return 2;
    return 0;
}

void nw_text_trim(const char **s, size_t *n)
{
    size_t k;
    while ((k = space_at(*s, *n)) > 0) {
        *s += k;
        *n -= k;
    }
    while ((k = space_before(*s, *n)) > 0)
        *n -= k;
}

bool nw_text_is_blank(const char *s, size_t n)
{
    nw_text_trim(&s, &n);
    return n == 0;
}

void nw_text_put_oneline(nw_text_buf_t *self, const char *s, size_t n)
{
    nw_text_trim(&s, &n);
    size_t i = 0, run = 0;
    while (i < n) {
        size_t k = space_at(s + i, n - i);
        /* A lone ASCII space is what white space becomes: it stays in the run, so a
         * usual line goes across in one append, not two a word. */
        if (k && s[i] == ' ' && space_at(s + i + 1, n - i - 1) == 0) {
            i++;
            continue;
        }
        if (k) {
            if (i > run)
                nw_text_buf_append(self, s + run, i - run);
            while ((k = space_at(s + i, n - i)) > 0)
                i += k;
            nw_text_buf_putc(self, ' ');
            run = i;
        } else
            i++;
    }
    if (n > run)
        nw_text_buf_append(self, s + run, n - run);
}

char *nw_text_oneline(const char *s, size_t n)
{
    nw_text_buf_t buf = {0};
    nw_text_put_oneline(&buf, s, n);
    if (buf.failed || buf.len == 0) {
        nw_text_buf_free(&buf);
        return NULL;
    }
    return nw_text_buf_take(&buf);
}

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char) (c - 'A' + 'a') : c;
}

bool nw_text_ieq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && nw_text_istarts(s, n, lit);
}

bool nw_text_istarts(const char *s, size_t n, const char *lit)
{
    size_t i;
    for (i = 0; lit[i]; i++)
        if (i >= n || lower(s[i]) != lower(lit[i]))
            return false;
    return true;
}

void nw_text_para_line(nw_text_para_t *self, const char *line, size_t n)
{
    size_t k;
    while ((k = space_before(line, n)) > 0)
        n -= k;
    if (nw_text_is_blank(line, n)) {
        nw_text_para_break(self);
        return;
    }
    if (self->buf.len > 0)
        nw_text_buf_append(&self->buf, "\n\n", self->pending_blank ? 2 : 1);
    nw_text_buf_append(&self->buf, line, n);
    self->pending_blank = false;
}

void nw_text_para_break(nw_text_para_t *self)
{
    if (self->buf.len > 0)
        self->pending_blank = true;
}

void nw_text_para_text(nw_text_para_t *self, const char *s, size_t n)
{
    size_t pos = 0, linelen;
    const char *line;
    while (nw_text_next_line(s, n, &pos, &line, &linelen))
        nw_text_para_line(self, line, linelen);
}

char *nw_text_para_take(nw_text_para_t *self, bool *oom)
{
    *oom = self->buf.failed;
    if (self->buf.failed || self->buf.len == 0) {
        nw_text_buf_free(&self->buf);
        self->pending_blank = false;
        return NULL;
    }
    self->pending_blank = false;
    return nw_text_buf_take(&self->buf);
}
