/*
 * nw_epgm: checks and resolves epgm:// endpoints (see nw_epgm.h) with getifaddrs()
 * and inet_pton() only: no name service is ever asked.
 */
#include "nw_epgm.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool nw_epgm_is(const char *endpoint)
{
    return endpoint && (strncmp(endpoint, NW_EPGM_SCHEME, strlen(NW_EPGM_SCHEME)) == 0 ||
                        strncmp(endpoint, "pgm://", 6) == 0);
}

/* The interface iface names (a name, or one of its IPv4 addresses): its address in
 * addr. -1 with the reason otherwise. */
static int find_interface(const char *iface, struct in_addr *addr, char *err, size_t errlen)
{
    struct in_addr literal;
    bool by_addr = inet_pton(AF_INET, iface, &literal) == 1;
    struct ifaddrs *all = NULL;
    if (getifaddrs(&all) != 0) {
        snprintf(err, errlen, "cannot list the network interfaces: %s", strerror(errno));
        return -1;
    }
    const struct ifaddrs *found = NULL;
    bool named = false;
    for (const struct ifaddrs *i = all; i && !found; i = i->ifa_next) {
        bool same = !by_addr && strcmp(i->ifa_name, iface) == 0;
        named |= same;
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
            continue;
        const struct in_addr *a = &((const struct sockaddr_in *) i->ifa_addr)->sin_addr;
        if (same || (by_addr && a->s_addr == literal.s_addr))
            found = i;
    }
    int rc = -1;
    if (!found && by_addr)
        snprintf(err, errlen, "%s is not an address of this host", iface);
    else if (!found && named)
        snprintf(err, errlen, "interface %s has no IPv4 address", iface);
    else if (!found)
        snprintf(err, errlen, "no interface %s", iface);
    else if (found->ifa_flags & IFF_LOOPBACK)
        snprintf(err, errlen, "interface %s is loopback: multicast needs a network interface",
                 found->ifa_name);
    else if (!(found->ifa_flags & IFF_MULTICAST))
        snprintf(err, errlen, "interface %s has multicast off (ip link set %s multicast on)",
                 found->ifa_name, found->ifa_name);
    else {
        *addr = ((const struct sockaddr_in *) found->ifa_addr)->sin_addr;
        rc = 0;
    }
    freeifaddrs(all);
    return rc;
}

int nw_epgm_resolve(const char *endpoint, char *out, size_t outlen, char *err, size_t errlen)
{
    char iface[IF_NAMESIZE + INET_ADDRSTRLEN], group[INET_ADDRSTRLEN];
    if (strncmp(endpoint, "pgm://", 6) == 0) {
        snprintf(err, errlen, "%s: raw pgm:// needs raw sockets; use epgm:// (PGM over UDP)",
                 endpoint);
        return -1;
    }
    const char *rest = endpoint + strlen(NW_EPGM_SCHEME);
    const char *semi = strchr(rest, ';'), *colon = semi ? strrchr(semi, ':') : NULL;
    if (strncmp(endpoint, NW_EPGM_SCHEME, strlen(NW_EPGM_SCHEME)) != 0 || !semi || !colon ||
        semi == rest || (size_t) (semi - rest) >= sizeof iface ||
        (size_t) (colon - semi - 1) >= sizeof group || colon == semi + 1) {
        snprintf(err, errlen, "%s: expected epgm://INTERFACE;GROUP:PORT", endpoint);
        return -1;
    }
    memcpy(iface, rest, (size_t) (semi - rest));
    iface[semi - rest] = '\0';
    memcpy(group, semi + 1, (size_t) (colon - semi - 1));
    group[colon - semi - 1] = '\0';
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || colon[1] == '-' || colon[1] == '+' || port < 1 ||
        port > 65535) {
        snprintf(err, errlen, "%s: the port must be 1 to 65535", endpoint);
        return -1;
    }
    struct in_addr g;
    if (inet_pton(AF_INET, group, &g) != 1 || !IN_MULTICAST(ntohl(g.s_addr))) {
        snprintf(err, errlen,
                 "%s: the group must be an IPv4 multicast address "
                 "(224.0.0.0 to 239.255.255.255), not '%s'",
                 endpoint, group);
        return -1;
    }
    struct in_addr a;
    char reason[200];
    if (find_interface(iface, &a, reason, sizeof reason) != 0) {
        snprintf(err, errlen, "%s: %s", endpoint, reason);
        return -1;
    }
    char shown[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, shown, sizeof shown);
    int n = snprintf(out, outlen, NW_EPGM_SCHEME "%s;%s:%ld", shown, group, port);
    if (n < 0 || (size_t) n >= outlen) {
        snprintf(err, errlen, "%s: too long", endpoint);
        return -1;
    }
    return 0;
}
