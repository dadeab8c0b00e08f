/*
 * xml: the one door to libxml2 for the markup layouts (parse_newsml.c, parse_nitf.c,
 * parse_html.c). Sanitized UTF-8 text comes in and leaves as a libxml2 tree; the
 * helpers below then read elements by local name (prefixes and namespaces vary
 * between senders) and turn their content into the article's one-line fields and
 * paragraphs.
 *
 * The input is untrusted: the XML parser runs with network access off, no entity
 * substitution, no DTD loading (and an entity loader that refuses everything), at
 * most NW_XML_MAX_BYTES, libxml2's own depth limit (256), and a document whose DTD
 * declares entities is refused outright (billion laughs, external entities). The
 * declared encoding is ignored: text.c has already made the bytes UTF-8. The tree
 * walkers below stop at NW_XML_MAX_DEPTH, so HTML (whose parser does not limit depth)
 * cannot run them off the stack either.
 */
#ifndef NW_XML_H
#define NW_XML_H

#include "text.h"

#include <libxml/tree.h>
#include <stdbool.h>
#include <stddef.h>

#define NW_XML_MAX_BYTES (16u << 20)
#define NW_XML_MAX_DEPTH 256

/* Parse text as XML (html false) or HTML. NULL with a one-line reason in errbuf
 * ("XML: line 3: ...", "XML declares entities ..."). Free with xmlFreeDoc. */
xmlDoc *nw_xml_read(const char *text, size_t len, bool html, char *errbuf, size_t errlen);

/* Whether n is an element with this local name (ASCII case-insensitive when html). */
bool nw_xml_is(const xmlNode *n, const char *local);
/* The first element child of parent named local (any when local is NULL), the next
 * sibling element after `after` named local. NULL when none. */
xmlNode *nw_xml_child(const xmlNode *parent, const char *local);
xmlNode *nw_xml_next(const xmlNode *after, const char *local);
/* The first descendant element named local, depth first, at most NW_XML_MAX_DEPTH down. */
xmlNode *nw_xml_find(const xmlNode *root, const char *local);
/* The attribute's value (by local name, any namespace), or NULL; owned by the tree. */
const char *nw_xml_attr(const xmlNode *n, const char *name);

/* The text under n as one line (white space collapsed), sanitized; NULL when blank or
 * out of memory (*oom tells). Entity references are never expanded. */
char *nw_xml_oneline(const xmlNode *n, bool *oom);
/* The same for a string (an attribute value). */
char *nw_xml_oneline_str(const char *s, bool *oom);

/* The text under n as paragraphs: block elements (p, div, h1-h6, li, blockquote, hl2,
 * ...) start one, br breaks a line, and elements whose local name is in skip (a NULL-
 * terminated list; script and style always) are left out with their content. Appended
 * to buf as raw text; nw_xml_paragraphs_take turns it into the body. */
void nw_xml_put_paragraphs(nw_text_buf_t *buf, const xmlNode *n, const char *const *skip);
/* The same, leaving out the elements for which skip(n, arg) is true (and script, style). */
typedef bool(nw_xml_skip_fn)(const xmlNode *n, void *arg);
void nw_xml_put_paragraphs_if(nw_text_buf_t *buf, const xmlNode *n, nw_xml_skip_fn *skip,
                              void *arg);
/* Sanitized paragraphs (one blank line between them) from what put_paragraphs
 * gathered; NULL when blank or out of memory (*oom tells). Frees buf. */
char *nw_xml_paragraphs_take(nw_text_buf_t *buf, bool *oom);

/* NITF's body.content as paragraphs (parse_nitf.c): for NITF files and for the NITF
 * bodies NewsML-G2 items carry inline (parse_newsml.c). */
void nw_nitf_put_body(nw_text_buf_t *buf, const xmlNode *nitf);

#endif
