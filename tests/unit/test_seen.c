/*
 * test_seen: the dedup window's id table against a plain model (an array indexed by
 * id): sets, deletes, undos and prunes interleaved while the table grows, so that each
 * happens with keys on both sides of a move; and the bound on what one set moves.
 */
#include "runner.h"
#include "seen.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEYS 60000

static int64_t model[KEYS]; /* the time held, -1: absent */

static void key_of(int i, uint32_t k[5])
{
    char id[41];
    snprintf(id, sizeof id, "%08x%032x", (unsigned) i * 2654435761u, (unsigned) i);
    nw_seen_key(id, 40, k);
}

static uint64_t rnd_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

/* Every key as the model has it, and the count. */
static bool agrees(const nw_seen_t *s)
{
    size_t held = 0, wrong = 0;
    for (int i = 0; i < KEYS; i++) {
        uint32_t k[5];
        int64_t t = -1;
        key_of(i, k);
        bool has = nw_seen_get(s, k, &t);
        held += model[i] >= 0;
        if (has != (model[i] >= 0) || (has && t != model[i]))
            wrong++;
    }
    if (wrong || held != s->count)
        fprintf(stderr, "%zu keys wrong, %zu held, the table counts %zu\n", wrong, held,
                s->count);
    return wrong == 0 && held == s->count;
}

/* Random sets (most), deletes, undone batches and prunes while the table grows through
 * several sizes: checked against the model while a move is under way and after. */
TEST_IMPL(against_a_model)
{
    nw_seen_t s = {0};
    nw_seen_undo_t u = {0};
    for (int i = 0; i < KEYS; i++)
        model[i] = -1;
    int64_t now = 1000;
    int checked_moving = 0, grown = 0;
    size_t cap = 0;
    for (int op = 0; op < 200000; op++) {
        int i = (int) (rnd() % KEYS);
        uint32_t k[5];
        key_of(i, k);
        uint64_t r = rnd() % 1000;
        now += (int64_t) (rnd() % 3);
        if (r < 850) {
            CHECK(nw_seen_set(&s, k, now) == 0);
            model[i] = now;
        } else if (r < 950) {
            nw_seen_delete(&s, k);
            model[i] = -1;
        } else if (r < 998) {
            /* a batch of sets taken back: the model does not change */
            int n = (int) (rnd() % 20);
            for (int b = 0; b < n; b++) {
                uint32_t kb[5];
                key_of((int) (rnd() % KEYS), kb);
                CHECK(nw_seen_undo_reserve(&u) == 0 &&
                      nw_seen_set_undoable(&s, &u, kb, now + 7) == 0);
            }
            nw_seen_undo(&s, &u);
        } else {
            int64_t since = now - (int64_t) (rnd() % 2000);
            nw_seen_prune(&s, since);
            for (int m = 0; m < KEYS; m++)
                if (model[m] >= 0 && model[m] < since)
                    model[m] = -1;
            CHECK(s.from == NULL); /* a prune finishes a move first */
        }
        grown += s.cap > cap;
        cap = s.cap;
        if (s.from && op % 97 == 0) {
            CHECK(agrees(&s));
            checked_moving++;
        }
    }
    CHECK(checked_moving >= 20 && grown >= 5);
    CHECK(agrees(&s));
    nw_seen_undo_free(&u);
    nw_seen_clear(&s);
    CHECK(s.cap == 0 && s.count == 0 && s.from == NULL);
}

/* Growing never moves the whole table in one set: at most SEEN_STEP (8) keys at a time,
 * the move finished well before the next growth; nor does it allocate (and zero) the
 * whole new table at once (malloc's own count, where malloc is glibc's); 200,000 keys. */
TEST_IMPL(growth_is_spread)
{
    nw_seen_t s = {0};
    uint64_t most = 0;
    size_t growths = 0, cap = 0, most_bytes = 0;
    bool moved_out = true;
    for (int i = 0; i < 200000; i++) {
        uint32_t k[5];
        key_of(i, k);
        uint64_t before = s.moved;
        bool grows = (s.count + 1) * 4 > s.cap * 3;
        size_t held = grows ? mallinfo2().uordblks : 0;
        CHECK(nw_seen_set(&s, k, i) == 0);
        if (grows && mallinfo2().uordblks > held && mallinfo2().uordblks - held > most_bytes)
            most_bytes = mallinfo2().uordblks - held;
        most = s.moved - before > most ? s.moved - before : most;
        if (s.cap > cap) {
            growths++;
            cap = s.cap;
        } else if (s.from && s.count * 4 > s.cap * 3 - 64) {
            moved_out = false; /* still moving near the next growth */
        }
    }
    if (most > 8 || most_bytes > 256 << 10)
        fprintf(stderr, "one set moved %" PRIu64 " keys, and allocated %zu bytes\n", most,
                most_bytes);
    CHECK(most <= 8 && growths >= 8 && moved_out);
    CHECK(most_bytes <= 256 << 10); /* the last growth's whole table: 14 MiB */
    CHECK(s.moved >= 150000);       /* they did move: 768 + 1,536 + ... + 98,304, and more */
    nw_seen_clear(&s);
}
