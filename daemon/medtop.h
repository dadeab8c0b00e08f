/*
 * medtop: the table that joins IPTC Media Topics codes to newswire topics. It is data,
 * not code: a JSON file (daemon/medtop.json, installed as share/newswire/medtop.json)
 * with a "topics" list of {code, name, topic} and a "schemes" map from a code's prefix
 * ("medtop") to its vocabulary URI. Loaded by the rules (route.c), immutable after,
 * read from any thread.
 */
#ifndef NW_MEDTOP_H
#define NW_MEDTOP_H

#include <stddef.h>

typedef struct nw_medtop nw_medtop_t;

/* Load path. NULL with the reason in errbuf (cannot read, invalid JSON, a topic name
 * that does not normalize, a code listed twice). */
nw_medtop_t *nw_medtop_load(const char *path, char *errbuf, size_t errlen);
void nw_medtop_destroy(nw_medtop_t **self_p);
size_t nw_medtop_count(const nw_medtop_t *self);

/* Lookups; self may be NULL (no table: NULL). */
const char *nw_medtop_topic(const nw_medtop_t *self, const char *code); /* code -> topic */
const char *nw_medtop_code(const nw_medtop_t *self, const char *topic); /* topic -> code */
/* The vocabulary URI of the code's prefix ("medtop:04000000" -> its scheme). */
const char *nw_medtop_scheme(const nw_medtop_t *self, const char *code);

#endif
