/* test_sha1: article ids must not change with the CPU. The accelerated path is checked
 * against FIPS 180 vectors and against CZMQ's zdigest on every length around the block
 * and padding boundaries, split into parts at every place. */
#include "runner.h"
#include "sha1.h"

#include <czmq.h>
#include <stdlib.h>

static void zdigest_hex(const unsigned char *data, size_t len, char out[NW_SHA1_HEX_LEN])
{
    zdigest_t *z = zdigest_new();
    zdigest_update(z, data, len);
    const byte *d = zdigest_data(z);
    for (int i = 0; i < 20; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    zdigest_destroy(&z);
}

static void hex_of(const void *data, size_t len, char out[NW_SHA1_HEX_LEN])
{
    const void *parts[] = {data};
    size_t lens[] = {len};
    CHECK(nw_sha1_hex(parts, lens, 1, out) == 0);
}

/* FIPS 180's short messages. */
TEST_IMPL(known_digests)
{
    printf("sha1: %s path\n",
           nw_sha1_accelerated() ? "accelerated (SHA extensions)" : "portable (zdigest) only");
    char got[NW_SHA1_HEX_LEN];
    hex_of("abc", 3, got);
    CHECK_STR(got, "a9993e364706816aba3e25717850c26c9cd0d89d");
    hex_of("", 0, got);
    CHECK_STR(got, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(two, strlen(two), got);
    CHECK_STR(got, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
}

/* Every length across three blocks, whole and cut in parts, against CZMQ's zdigest. */
TEST_IMPL(every_length_in_parts)
{
    char got[NW_SHA1_HEX_LEN], want[NW_SHA1_HEX_LEN];
    size_t max = 3 * 64 + 9;
    unsigned char *data = malloc(max);
    srand(7);
    for (size_t i = 0; i < max; i++)
        data[i] = (unsigned char) rand();
    int mismatches = 0;
    for (size_t len = 0; len <= max; len++) {
        zdigest_hex(data, len, want);
        hex_of(data, len, got);
        if (strcmp(got, want) != 0)
            mismatches++;
        for (size_t cut = 0; cut <= len; cut += len > 70 ? 13 : 1) {
            const void *parts[] = {data, data + cut / 2, "", data + cut};
            size_t lens[] = {cut / 2, cut - cut / 2, 0, len - cut};
            CHECK(nw_sha1_hex(parts, lens, 4, got) == 0);
            if (strcmp(got, want) != 0)
                mismatches++;
        }
    }
    CHECK(mismatches == 0);
    free(data);
}

/* A million 'a's (FIPS 180 long message), fed in uneven parts. */
TEST_IMPL(million_a)
{
    char got[NW_SHA1_HEX_LEN];
    size_t million = 1000000;
    unsigned char *as = malloc(million);
    memset(as, 'a', million);
    const void *parts[] = {as, as + 1, as + 1000, as + 999999};
    size_t lens[] = {1, 999, 998999, 1};
    CHECK(nw_sha1_hex(parts, lens, 4, got) == 0);
    CHECK_STR(got, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    free(as);
}
