/* test_epgm: the multicast endpoint check of proto/nw_epgm: the syntax, the port and group
 * ranges at their edges, raw pgm:// refused, and interfaces PGM could not use (loopback,
 * none of that name, an address not this host's) refused with the reason, never handed
 * to ZeroMQ. Interfaces that work are the e2e test's (test_multicast, in namespaces). */
#include "nw_epgm.h"
#include "runner.h"

#include <string.h>

/* Refused, with want in the reason. */
static void refused(const char *endpoint, const char *want)
{
    char out[256] = "", err[400] = "";
    int rc = nw_epgm_resolve(endpoint, out, sizeof out, err, sizeof err);
    CHECK(rc == -1);
    if (rc != -1 || !strstr(err, want))
        fprintf(stderr, "  %s: want '%s', got rc %d '%s' ('%s')\n", endpoint, want, rc, err, out);
    CHECK(strstr(err, want) != NULL);
}

TEST_IMPL(is_epgm)
{
    CHECK(nw_epgm_is("epgm://eth0;239.1.2.3:5555"));
    CHECK(nw_epgm_is("pgm://eth0;239.1.2.3:5555"));
    CHECK(!nw_epgm_is("tcp://127.0.0.1:5556"));
    CHECK(!nw_epgm_is("ipc:///run/x"));
    CHECK(!nw_epgm_is("epgm:/"));
    CHECK(!nw_epgm_is(NULL));
}

TEST_IMPL(syntax)
{
    const char *syntax = "expected epgm://INTERFACE;GROUP:PORT";
    refused("epgm://", syntax);
    refused("epgm://eth0", syntax);
    refused("epgm://eth0:5555", syntax);
    refused("epgm://;239.1.2.3:5555", syntax); /* OpenPGM's "any": refused */
    refused("epgm://eth0;:5555", syntax);
    refused("epgm://eth0;239.1.2.3", syntax);
    refused("epgm://an-interface-name-far-too-long-for-ifnamsiz;239.1.2.3:5555", syntax);
    refused("pgm://eth0;239.1.2.3:5555", "raw pgm:// needs raw sockets; use epgm://");
}

TEST_IMPL(port)
{
    const char *port = "the port must be 1 to 65535";
    refused("epgm://eth0;239.1.2.3:", port);
    refused("epgm://eth0;239.1.2.3:0", port);
    refused("epgm://eth0;239.1.2.3:65536", port);
    refused("epgm://eth0;239.1.2.3:-1", port);
    refused("epgm://eth0;239.1.2.3:+80", port);
    refused("epgm://eth0;239.1.2.3:80x", port);
    refused("epgm://eth0;239.1.2.3:99999999999999999999", port);
}

TEST_IMPL(group)
{
    const char *group = "the group must be an IPv4 multicast address";
    refused("epgm://eth0;223.255.255.255:5555", group); /* just below 224.0.0.0/4 */
    refused("epgm://eth0;240.0.0.0:5555", group);       /* just above */
    refused("epgm://eth0;198.18.0.1:5555", group);
    refused("epgm://eth0;news.example:5555", group); /* never a name: no DNS */
    refused("epgm://eth0;ff08::1:5555", group);
}

/* The group and port are checked before the interface: with lo's name and address
 * (every namespace has lo), the interface is what is refused. */
TEST_IMPL(interface)
{
    refused("epgm://lo;224.0.0.0:1", "interface lo is loopback");
    refused("epgm://lo;239.255.255.255:65535", "interface lo is loopback");
    refused("epgm://127.0.0.1;239.1.2.3:5555", "interface lo is loopback");
    refused("epgm://no-such-if0;239.1.2.3:5555", "no interface no-such-if0");
    refused("epgm://192.0.2.254;239.1.2.3:5555", "192.0.2.254 is not an address of this host");
}

/* a reason that does not fit is cut, not overrun */
TEST_IMPL(reason_cut)
{
    char out[8], err[16];
    CHECK(nw_epgm_resolve("epgm://lo;239.1.2.3:5555", out, sizeof out, err, sizeof err) == -1);
    CHECK(strlen(err) == sizeof err - 1);
}
