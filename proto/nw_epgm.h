/*
 * nw_epgm: the multicast endpoint "epgm://IFACE;GROUP:PORT" (PGM over UDP, ZeroMQ's
 * epgm transport), checked once for the daemon's --publish and for libnewswire's
 * connect, before ZeroMQ sees it.
 *
 * Why before: OpenPGM resolves IFACE through the name services first (getnetbyname,
 * then getaddrinfo: a DNS query for a name like "eth0"), and libzmq creates the PGM
 * socket later, on its I/O thread, where a failure (no such interface, one without
 * multicast) aborts the whole process. So IFACE is resolved here, with getifaddrs()
 * only: an interface name or one of this host's IPv4 addresses, on an interface that
 * is not loopback and has multicast on; GROUP must be a literal IPv4 multicast address
 * (224.0.0.0/4, never a name); PORT 1..65535. The endpoint handed to ZeroMQ names the
 * interface by its address, so OpenPGM has nothing left to look up.
 * Strings in, the resolved endpoint or the reason in the caller's buffers.
 */
#ifndef NW_EPGM_H
#define NW_EPGM_H

#include <stdbool.h>
#include <stddef.h>

#define NW_EPGM_SCHEME "epgm://"

/* Does endpoint use a PGM transport (epgm://, or raw pgm://, which is refused)? */
bool nw_epgm_is(const char *endpoint);

/* Check endpoint and write it with IFACE as an IPv4 address into out. 0 on success; -1
 * with the reason in err (bad syntax, pgm:// instead of epgm://, no such interface, a
 * loopback or non-multicast one, a group that is not multicast). */
int nw_epgm_resolve(const char *endpoint, char *out, size_t outlen, char *err, size_t errlen);

#endif
