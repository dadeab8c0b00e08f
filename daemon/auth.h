/*
 * auth: who may connect and which topics each client may read.
 *
 * The server certificate (CZMQ zcert file, --curve-secret) makes a socket a CurveZMQ
 * server; CZMQ's zauth actor checks every handshake against the folder of allowed
 * client public certificates (--clients), which zauth re-reads whenever it changes.
 * This module reads the same folder itself to know, per public key, the key's name
 * (the certificate's "name" metadata, else its file name) and its grants: the topic
 * prefixes listed in the certificate's "topics" metadata ("telecoms, sport.football";
 * "*" grants everything) plus those given as nw_auth_grant_t, which config.c takes from
 * the config's top-level "grants" section, mapping key names to the same lists:
 *
 *     grants
 *         alice = "telecoms, sport.football"
 *
 * A grant is a whole-level prefix (proto/newswire-v1.md section 5): "telecoms" covers
 * "telecoms" and "telecoms.5g", never "telecomsx". Frame 0 on the wire is the topic plus
 * a terminating '.', so a grant is held in its raw form "telecoms." ("*": ""), which is
 * exactly the ZeroMQ prefix that delivers it and nothing else.
 * Keys arrive as ZAP User-Ids: the Z85 text of the client's public key.
 * Used on the loop thread only.
 */
#ifndef NW_AUTH_H
#define NW_AUTH_H

#include "nw_topic.h"
#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>

#define NW_AUTH_MAX_GRANTS 64

typedef struct nw_auth nw_auth_t;

/* Topics a key name may read beyond its certificate's: a comma-separated list. A name
 * given twice gets both lists. */
typedef struct {
    const char *name;
    const char *topics;
} nw_auth_grant_t;

typedef struct {
    const char *secret_cert;       /* the server's _secret certificate file */
    const char *clients_dir;       /* the allowed client public certificates */
    const nw_auth_grant_t *grants; /* grant_count of them; may be none */
    size_t grant_count;
} nw_auth_options_t;

/* Load the server certificate and the client store, start zauth on CZMQ's context.
 * What options point to is read during the call only. NULL on error, reason in errbuf. */
nw_auth_t *nw_auth_new(nw_auth_options_t options, char *errbuf, size_t errlen);
void nw_auth_destroy(nw_auth_t **self_p);

/* Re-read the client folder and take these grants instead of the ones given before
 * (SIGHUP). On error (-1) the old store stays.
 * 1 when the new store takes something away (a key gone, a grant narrowed): connections
 * already admitted keep what they were given until they reconnect, so the caller drops
 * them (nw_publish_rebind). 0 otherwise. */
int nw_auth_reload(nw_auth_t *self, const nw_auth_grant_t *grants, size_t count, char *errbuf,
                   size_t errlen);

/* Make sock a CURVE server with our certificate; call before bind. */
int nw_auth_server(nw_auth_t *self, zsock_t *sock, char *errbuf, size_t errlen);

/* The name of a key, or NULL for a key the store does not hold. */
const char *nw_auth_key_name(nw_auth_t *self, const char *user_id);

/* The raw prefixes to apply for a raw subscription of user_id to sub (length sublen,
 * may hold any bytes): the parts of it the key's grants allow. sub is first written to
 * subbuf (which must hold sublen + 2 bytes) in its terminated form (nw_topic_terminate).
 * Writes up to max pointers into out (strings owned by self, or subbuf); returns how
 * many. 0 means denied. The subscription was applied as asked iff the result is one
 * string equal to subbuf. */
size_t nw_auth_grant(nw_auth_t *self, const char *user_id, const char *sub, size_t sublen,
                     char *subbuf, const char **out, size_t max);

/* Replay's authorizer: may user_id read topic? (arg is the nw_auth_t.) */
bool nw_auth_allowed(void *arg, const char *user_id, const char *topic);

/* Does endpoint stay on this machine (ipc://, inproc://, tcp:// on 127.0.0.0/8, ::1 or
 * localhost)? Clear text is allowed there without --insecure. */
bool nw_auth_endpoint_is_local(const char *endpoint);

/* The grant logic itself, for the store and for tests.
 * nw_grant_intersect: the part of raw subscription S that raw grant G allows, both
 * terminated: G when S is a prefix of G, S when G is a prefix of S, else NULL. */
const char *nw_grant_intersect(const char *g, const char *s, size_t slen);

#endif
