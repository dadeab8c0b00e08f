/*
 * nw_topic: the topic grammar, normalization, the frame-0 terminator and whole-level
 * matching (see nw_topic.h). Pure functions over caller buffers; the only definition of
 * a topic in the tree.
 */
#include "nw_topic.h"

#include <stdio.h>
#include <string.h>

static bool level_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

bool nw_topic_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > NW_TOPIC_MAX)
        return false;
    bool level_empty = true;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char) s[i];
        if (c == '.') {
            if (level_empty)
                return false;
            level_empty = true;
        } else if (level_char(c))
            level_empty = false;
        else
            return false;
    }
    return !level_empty;
}

int nw_topic_normalize(const char *subject, char *out, size_t outlen)
{
    if (!subject || !out || outlen == 0)
        return -1;
    size_t o = 0;
    bool level_has = false; /* the current level has a character already */
    bool need_dash = false; /* a run of other characters since the last one */
    for (const unsigned char *p = (const unsigned char *) subject; *p; p++) {
        unsigned char c = *p;
        if (c == '.') {
            level_has = false;
            need_dash = false;
            continue;
        }
        if (c >= 'A' && c <= 'Z')
            c = (unsigned char) (c - 'A' + 'a');
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
            char sep = 0;
            if (!level_has && o > 0)
                sep = '.';
            else if (need_dash)
                sep = '-';
            size_t need = o + (sep ? 2 : 1);
            if (need > NW_TOPIC_MAX || need >= outlen)
                return -1;
            if (sep)
                out[o++] = sep;
            out[o++] = (char) c;
            level_has = true;
            need_dash = false;
        } else
            need_dash = level_has;
    }
    if (o == 0)
        return -1;
    out[o] = '\0';
    return 0;
}

size_t nw_topic_terminate(const char *s, size_t len, char *out)
{
    memcpy(out, s, len);
    if (len && s[len - 1] != '.')
        out[len++] = '.';
    out[len] = '\0';
    return len;
}

int nw_topic_unframe(const void *frame, size_t len, char *out, char *errbuf, size_t errlen)
{
    const char *f = frame;
    if (len > NW_TOPIC_FRAME_MAX) {
        snprintf(errbuf, errlen, "topic frame of %zu bytes", len);
        return -1;
    }
    if (len == 0 || f[len - 1] != '.') {
        snprintf(errbuf, errlen, "topic frame lacks its terminating '.'");
        return -1;
    }
    if (!nw_topic_valid(f, len - 1)) {
        snprintf(errbuf, errlen, "topic frame is not a topic name");
        return -1;
    }
    memcpy(out, f, len - 1);
    out[len - 1] = '\0';
    return 0;
}

bool nw_topic_matches(const char *sub, const char *topic)
{
    size_t slen = strlen(sub), tlen = strlen(topic);
    if (slen == 0)
        return true;
    /* "telecoms." and "telecoms" are the same subscription; "." alone covers no topic. */
    if (sub[slen - 1] == '.')
        slen--;
    return tlen >= slen && memcmp(sub, topic, slen) == 0 && (tlen == slen || topic[slen] == '.');
}
