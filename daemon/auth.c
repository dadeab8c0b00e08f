/*
 * auth: the server certificate, zauth, and the store of client keys with their grants
 * (see auth.h). The store is rebuilt whole on every load and swapped in, so a failed
 * reload leaves the running one untouched; it is also rebuilt when the folder's mtime
 * moves, to stay in step with zauth, which re-reads the folder on change by itself.
 */
#include "auth.h"
#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    char *name;
    char *grants[NW_AUTH_MAX_GRANTS];
    size_t count;
} client_t;

struct nw_auth {
    zcert_t *cert;
    zactor_t *zauth;
    char *clients_dir;
    zhashx_t *clients;       /* Z85 public key -> client_t */
    zhashx_t *config_grants; /* key name -> list, from the grants given */
    struct timespec dir_mtime;
};

/* Is p a byte prefix of t? Both are terminated forms, so this is whole-level matching. */
static bool raw_prefix(const char *p, size_t plen, const char *t, size_t tlen)
{
    return plen <= tlen && memcmp(p, t, plen) == 0;
}

const char *nw_grant_intersect(const char *g, const char *s, size_t slen)
{
    size_t glen = strlen(g);
    if (raw_prefix(s, slen, g, glen))
        return g;
    if (raw_prefix(g, glen, s, slen))
        return s;
    return NULL;
}

static void client_destroy(void **item)
{
    client_t *c = *item;
    if (!c)
        return;
    free(c->name);
    for (size_t i = 0; i < c->count; i++)
        free(c->grants[i]);
    free(c);
    *item = NULL;
}

/* A grant must be a topic (proto section 5) or "*"; anything else would widen or
 * confuse the raw prefix it turns into. */
static bool valid_grant(const char *g)
{
    return strcmp(g, "*") == 0 || nw_topic_valid(g, strlen(g));
}

static void add_grants(client_t *c, const char *list)
{
    char *copy = strdup(list ? list : "");
    char *save = NULL;
    for (char *tok = copy ? strtok_r(copy, ",", &save) : NULL; tok;
         tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t')
            tok++;
        size_t len = strlen(tok);
        while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
            tok[--len] = '\0';
        if (!*tok)
            continue;
        if (!valid_grant(tok)) {
            char shown[1100];
            nw_warn("key %s: grant '%s' is not a topic, ignored", c->name,
                    nw_log_escape(tok, shown, sizeof shown));
            continue;
        }
        /* The raw form: what ZeroMQ matches frame 0 against. */
        char g[NW_TOPIC_FRAME_MAX + 1] = "";
        size_t glen = strcmp(tok, "*") == 0 ? 0 : nw_topic_terminate(tok, strlen(tok), g);
        /* Keep the list minimal: a grant covered by another adds nothing, and with no
         * overlap a subscription maps to each grant at most once. */
        bool covered = false;
        for (size_t i = 0; i < c->count && !covered; i++)
            covered = raw_prefix(c->grants[i], strlen(c->grants[i]), g, glen);
        if (covered)
            continue;
        size_t keep = 0;
        for (size_t i = 0; i < c->count; i++) {
            if (raw_prefix(g, glen, c->grants[i], strlen(c->grants[i])))
                free(c->grants[i]);
            else
                c->grants[keep++] = c->grants[i];
        }
        c->count = keep;
        if (c->count == NW_AUTH_MAX_GRANTS) {
            nw_warn("key %s: more than %d grants, the rest ignored", c->name, NW_AUTH_MAX_GRANTS);
            break;
        }
        c->grants[c->count++] = strdup(g);
    }
    free(copy);
}

static zhashx_t *load_clients(const char *dir, zhashx_t *config_grants, struct timespec *mtime,
                              char *errbuf, size_t errlen)
{
    struct stat st;
    DIR *d = NULL;
    zhashx_t *clients = zhashx_new();
    if (!clients) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    zhashx_set_destructor(clients, client_destroy);
    errno = 0;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || !(d = opendir(dir))) {
        snprintf(errbuf, errlen, "client certificates %s: %s", dir,
                 errno ? strerror(errno) : "not a directory");
        goto fail;
    }
    *mtime = st.st_mtim;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.' || (n > 7 && strcmp(e->d_name + n - 7, "_secret") == 0))
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        /* zcert_load would prefer a NAME_secret file; we only want the public part. */
        zconfig_t *root = zconfig_load(path);
        const char *key = root ? zconfig_get(root, "curve/public-key", NULL) : NULL;
        if (!key || strlen(key) != 40) {
            char shown[1100];
            nw_warn("client certificate %s: no public key, ignored",
                    nw_log_escape(path, shown, sizeof shown));
            zconfig_destroy(&root);
            continue;
        }
        client_t *c = calloc(1, sizeof *c);
        if (!c) {
            zconfig_destroy(&root);
            snprintf(errbuf, errlen, "out of memory");
            goto fail;
        }
        const char *name = zconfig_get(root, "metadata/name", NULL);
        c->name = strdup(name && *name ? name : e->d_name);
        add_grants(c, zconfig_get(root, "metadata/topics", NULL));
        add_grants(c, zhashx_lookup(config_grants, c->name));
        if (zhashx_insert(clients, key, c) != 0) {
            nw_warn("client certificate %s: same key as another certificate, ignored", e->d_name);
            void *item = c;
            client_destroy(&item);
        }
        zconfig_destroy(&root);
    }
    closedir(d);
    return clients;
fail:
    if (d)
        closedir(d);
    zhashx_destroy(&clients);
    return NULL;
}

static zhashx_t *load_config_grants(const nw_auth_grant_t *list, size_t count)
{
    zhashx_t *grants = zhashx_new();
    if (!grants)
        return NULL;
    zhashx_set_destructor(grants, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_duplicator(grants, (zhashx_duplicator_fn *) strdup);
    for (size_t i = 0; i < count; i++) {
        const char *name = list[i].name ? list[i].name : "";
        const char *value = list[i].topics;
        const char *old = zhashx_lookup(grants, name);
        /* A name listed twice gets both lists. */
        char *joined = zsys_sprintf("%s%s%s", old ? old : "", old ? "," : "", value ? value : "");
        if (joined) {
            zhashx_update(grants, name, joined);
            zstr_free(&joined);
        }
    }
    return grants;
}

/* Does next take away anything prev allowed? */
static bool revokes(zhashx_t *prev, zhashx_t *next)
{
    for (client_t *c = zhashx_first(prev); c; c = zhashx_next(prev)) {
        client_t *n = zhashx_lookup(next, zhashx_cursor(prev));
        if (!n)
            return true;
        for (size_t i = 0; i < c->count; i++) {
            bool kept = false;
            for (size_t j = 0; j < n->count && !kept; j++)
                kept = raw_prefix(n->grants[j], strlen(n->grants[j]), c->grants[i],
                                  strlen(c->grants[i]));
            if (!kept)
                return true;
        }
    }
    return false;
}

int nw_auth_reload(nw_auth_t *self, const nw_auth_grant_t *grants_list, size_t count,
                   char *errbuf, size_t errlen)
{
    zhashx_t *grants = load_config_grants(grants_list, count);
    if (!grants) {
        snprintf(errbuf, errlen, "out of memory");
        return -1;
    }
    struct timespec mtime;
    zhashx_t *clients = load_clients(self->clients_dir, grants, &mtime, errbuf, errlen);
    if (!clients) {
        zhashx_destroy(&grants);
        return -1;
    }
    bool revoked = self->clients && revokes(self->clients, clients);
    zhashx_destroy(&self->clients);
    zhashx_destroy(&self->config_grants);
    self->clients = clients;
    self->config_grants = grants;
    self->dir_mtime = mtime;
    nw_info("CURVE: %zu client keys allowed from %s%s", zhashx_size(clients), self->clients_dir,
            revoked ? "; a key or grant was withdrawn" : "");
    return revoked ? 1 : 0;
}

/* zauth sees a changed folder on its next handshake; follow it before answering. */
static void refresh(nw_auth_t *self)
{
    struct stat st;
    if (stat(self->clients_dir, &st) != 0 || (st.st_mtim.tv_sec == self->dir_mtime.tv_sec &&
                                              st.st_mtim.tv_nsec == self->dir_mtime.tv_nsec))
        return;
    struct timespec mtime;
    char err[512];
    zhashx_t *clients = load_clients(self->clients_dir, self->config_grants, &mtime, err,
                                     sizeof err);
    if (!clients) {
        nw_warn("client certificates changed but cannot be read, keeping the old set: %s", err);
        self->dir_mtime = st.st_mtim;
        return;
    }
    zhashx_destroy(&self->clients);
    self->clients = clients;
    self->dir_mtime = mtime;
    nw_info("CURVE: client folder changed, %zu keys allowed", zhashx_size(clients));
}

static client_t *lookup(nw_auth_t *self, const char *user_id)
{
    if (!user_id)
        return NULL;
    refresh(self);
    return zhashx_lookup(self->clients, user_id);
}

nw_auth_t *nw_auth_new(nw_auth_options_t options, char *errbuf, size_t errlen)
{
    const char *secret_cert = options.secret_cert, *clients_dir = options.clients_dir;
    nw_auth_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(errbuf, errlen, "out of memory");
        return NULL;
    }
    if (!clients_dir) {
        snprintf(errbuf, errlen, "--curve-secret needs --clients (the allowed client keys)");
        goto fail;
    }
    struct stat st;
    if (stat(secret_cert, &st) != 0) {
        snprintf(errbuf, errlen, "server certificate %s: %s", secret_cert, strerror(errno));
        goto fail;
    }
    if (st.st_mode & 077)
        nw_warn("server certificate %s is readable by others than its owner", secret_cert);
    /* zconfig directly: zcert_load would read FILE_secret first and a public-only FILE
     * next, either of which could silently give a certificate without a secret key. */
    zconfig_t *root = zconfig_load(secret_cert);
    const char *pub = root ? zconfig_get(root, "curve/public-key", NULL) : NULL;
    const char *sec = root ? zconfig_get(root, "curve/secret-key", NULL) : NULL;
    byte pub_bin[32], sec_bin[32];
    if (!pub || !sec || strlen(pub) != 40 || strlen(sec) != 40 || !zmq_z85_decode(pub_bin, pub) ||
        !zmq_z85_decode(sec_bin, sec)) {
        zconfig_destroy(&root);
        snprintf(errbuf, errlen,
                 "server certificate %s: no public and secret key (use the "
                 "_secret file)",
                 secret_cert);
        goto fail;
    }
    zconfig_destroy(&root);
    self->cert = zcert_new_from(pub_bin, sec_bin);
    self->clients_dir = strdup(clients_dir);
    if (!self->cert || !self->clients_dir ||
        nw_auth_reload(self, options.grants, options.grant_count, errbuf, errlen) < 0)
        goto fail;
    self->zauth = zactor_new(zauth, NULL);
    if (!self->zauth) {
        snprintf(errbuf, errlen, "cannot start zauth");
        goto fail;
    }
    zstr_sendx(self->zauth, "CURVE", clients_dir, NULL);
    zsock_wait(self->zauth);
    return self;
fail:
    nw_auth_destroy(&self);
    return NULL;
}

void nw_auth_destroy(nw_auth_t **self_p)
{
    nw_auth_t *self = *self_p;
    if (!self)
        return;
    zactor_destroy(&self->zauth);
    zcert_destroy(&self->cert);
    zhashx_destroy(&self->clients);
    zhashx_destroy(&self->config_grants);
    free(self->clients_dir);
    free(self);
    *self_p = NULL;
}

int nw_auth_server(nw_auth_t *self, zsock_t *sock, char *errbuf, size_t errlen)
{
    zcert_apply(self->cert, sock);
    zsock_set_curve_server(sock, 1);
    zsock_set_zap_domain(sock, "newswire");
    if (zsock_curve_server(sock) != 1) {
        snprintf(errbuf, errlen, "cannot make the socket a CURVE server: %s",
                 zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

const char *nw_auth_key_name(nw_auth_t *self, const char *user_id)
{
    client_t *c = lookup(self, user_id);
    return c ? c->name : NULL;
}

size_t nw_auth_grant(nw_auth_t *self, const char *user_id, const char *sub, size_t sublen,
                     char *subbuf, const char **out, size_t max)
{
    size_t len = nw_topic_terminate(sub, sublen, subbuf);
    client_t *c = lookup(self, user_id);
    /* A NUL inside would cut the prefix short, i.e. widen it, once it is a C string. */
    if (!c || memchr(sub, '\0', sublen))
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < c->count && n < max; i++) {
        const char *r = nw_grant_intersect(c->grants[i], subbuf, len);
        if (r == subbuf) { /* inside one grant: nothing else can add to it */
            out[0] = subbuf;
            return 1;
        }
        if (r)
            out[n++] = r;
    }
    return n;
}

bool nw_auth_allowed(void *arg, const char *user_id, const char *topic)
{
    client_t *c = lookup(arg, user_id);
    for (size_t i = 0; c && i < c->count; i++)
        if (nw_topic_matches(c->grants[i], topic))
            return true;
    return false;
}

bool nw_auth_endpoint_is_local(const char *endpoint)
{
    if (strncmp(endpoint, "ipc://", 6) == 0 || strncmp(endpoint, "inproc://", 9) == 0)
        return true;
    if (strncmp(endpoint, "tcp://", 6) != 0)
        return false;
    const char *host = endpoint + 6;
    /* tcp://source;host:port binds nothing itself; judge by the host part. */
    const char *semi = strchr(host, ';');
    if (semi)
        host = semi + 1;
    if (strncmp(host, "127.", 4) == 0) {
        size_t n = strspn(host + 4, "0123456789.");
        return n > 0 && host[4 + n] == ':';
    }
    return strncmp(host, "[::1]:", 6) == 0 || strncmp(host, "localhost:", 10) == 0;
}
