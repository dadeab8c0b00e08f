/*
 * seen: the dedup window's ids with their times, and the undo log (see seen.h). Keys
 * enter from the journal's appends, its recovery and its read-back of older ids; each
 * lookup answers whether an id is held and since when. Memory only, loop thread only.
 */
#include "seen.h"

#include <czmq.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- the table */

/* One entry per article in the dedup window, so this is the journal's largest
 * structure under a backlog. An open-addressing table of
 * 28-byte slots (the id's 20 binary bytes and the time) holds it in 37-75 bytes per id
 * where a zhashx of strings took ~110: power-of-two capacity, linear probing, growth at
 * load 3/4, deletion by backward shift so that pruning needs no tombstones.
 * The slots live in pages of SEEN_PAGE rather than one block: malloc serves pages from
 * heap memory freed earlier (a backlog's pending entries), where one block of megabytes
 * is a fresh mmap on top of it (bench_newswired --backlog 100000: peak RSS 41 MB with
 * one block, 31 MB in pages, 37 MB with the zhashx).
 *
 * Growing moves the entries a few at a time (SEEN_STEP slots of the old table at each
 * set), not all at once: moving 98,304 of them in one append held the loop for 18-30 ms,
 * and every article arriving meanwhile waited (the p99 of a steady 10k/s). Nor is the
 * new table zeroed at once (another 10-13 ms for its 7 MiB here): a page is made when a
 * slot of it is first written, and a page not yet made reads as empty slots. While they
 * move, the old table (`from`) is only read and emptied: a lookup tries the new one,
 * then the old; a set or delete of a key still in the old one leaves a tombstone there
 * (no backward shift, which would pull entries the move has not reached behind it).
 * The move is done long before the new table could need to grow (SEEN_STEP > 4/3), and
 * a prune, or a growth that finds it unfinished, completes it first. */
#define SEEN_MIN 1024u
#define SEEN_PAGE 512u       /* slots: 14 KiB, well below malloc's mmap threshold */
#define SEEN_STEP 8u         /* old slots moved at each set while the table grows */
#define SEEN_TOMB UINT32_MAX /* lo and hi of a slot of the old table whose key left */

void nw_seen_key(const char *id, size_t len, uint32_t key[5])
{
    uint8_t raw[20];
    bool hex = len == 40;
    for (size_t i = 0; hex && i < 40; i++) {
        char c = id[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            hex = false;
        else if (i % 2)
            raw[i / 2] = (uint8_t) (raw[i / 2] << 4 | v);
        else
            raw[i / 2] = (uint8_t) v;
    }
    if (!hex) {
        zdigest_t *d = zdigest_new();
        if (d) {
            zdigest_update(d, (const byte *) id, len);
            memcpy(raw, zdigest_data(d), sizeof raw);
            zdigest_destroy(&d);
        } else { /* no memory for a digest: a weaker key still works, just worse */
            memset(raw, 0, sizeof raw);
            for (size_t i = 0; i < len; i++)
                raw[i % 20] = (uint8_t) (raw[i % 20] * 31 + (uint8_t) id[i]);
        }
    }
    memcpy(key, raw, sizeof raw);
}

static const nw_seen_slot_t empty_slot; /* what a slot of a page not yet made reads as */

/* Slot i to read: a table's pages are made as they are first written in. */
static const nw_seen_slot_t *slot_at(nw_seen_slot_t **pages, size_t i)
{
    const nw_seen_slot_t *page = pages[i / SEEN_PAGE];
    return page ? &page[i % SEEN_PAGE] : &empty_slot;
}

/* Slot i to write in, its page made first if need be; NULL: no memory. */
static nw_seen_slot_t *slot_put(nw_seen_slot_t **pages, size_t cap, size_t i)
{
    nw_seen_slot_t **page = &pages[i / SEEN_PAGE];
    if (!*page && !(*page = calloc(cap < SEEN_PAGE ? cap : SEEN_PAGE, sizeof **page)))
        return NULL;
    return &(*page)[i % SEEN_PAGE];
}

/* Slot i to write in that holds a key or did: its page is made. */
static nw_seen_slot_t *slot_held(nw_seen_slot_t **pages, size_t i)
{
    return &pages[i / SEEN_PAGE][i % SEEN_PAGE];
}

static const nw_seen_slot_t *seen_at(const nw_seen_t *s, size_t i)
{
    return slot_at(s->pages, i);
}

static nw_seen_slot_t *seen_held(const nw_seen_t *s, size_t i)
{
    return slot_held(s->pages, i);
}

static bool slot_used(const nw_seen_slot_t *e)
{
    return e->lo || e->hi;
}

static bool slot_tomb(const nw_seen_slot_t *e)
{
    return e->lo == SEEN_TOMB && e->hi == SEEN_TOMB;
}

static int64_t slot_time(const nw_seen_slot_t *e)
{
    return (int64_t) (((uint64_t) e->hi << 32 | e->lo) - 1);
}

static void slot_set_time(nw_seen_slot_t *e, int64_t t)
{
    uint64_t v = (uint64_t) (t < 0 ? 0 : t) + 1; /* at most 2^63: never a tombstone */
    e->lo = (uint32_t) v;
    e->hi = (uint32_t) (v >> 32);
}

/* The index of the slot of pages (cap, a power of two, not 0) holding key, or of the
 * empty slot where it would go. */
static size_t slot_probe(nw_seen_slot_t **pages, size_t cap, const uint32_t key[5])
{
    size_t mask = cap - 1;
    for (size_t i = key[0] & mask;; i = (i + 1) & mask) {
        const nw_seen_slot_t *e = slot_at(pages, i);
        if (!slot_used(e) || memcmp(e->key, key, sizeof e->key) == 0)
            return i;
    }
}

static size_t seen_probe(const nw_seen_t *s, const uint32_t key[5])
{
    return slot_probe(s->pages, s->cap, key);
}

/* The slot of the new table holding key, or NULL. */
static nw_seen_slot_t *seen_find(const nw_seen_t *s, const uint32_t key[5])
{
    if (!s->cap)
        return NULL;
    size_t i = seen_probe(s, key);
    return slot_used(seen_at(s, i)) ? seen_held(s, i) : NULL;
}

/* The slot of the old table still holding key, or NULL. The slots already moved keep
 * their keys (the runs through them stay whole): one found there has moved. */
static nw_seen_slot_t *from_find(const nw_seen_t *s, const uint32_t key[5])
{
    if (!s->from)
        return NULL;
    size_t i = slot_probe(s->from, s->from_cap, key);
    const nw_seen_slot_t *e = slot_at(s->from, i);
    if (i < s->from_next || !slot_used(e) || slot_tomb(e))
        return NULL;
    return slot_held(s->from, i);
}

static void seen_free_pages(nw_seen_slot_t **pages, size_t cap)
{
    for (size_t i = 0; pages && i * SEEN_PAGE < cap; i++)
        free(pages[i]);
    free(pages);
}

/* A table's page array; the pages themselves are made as they are first written in
 * (slot_put), so that growing zeroes no megabytes at once either. */
static nw_seen_slot_t **seen_new_pages(size_t cap)
{
    return calloc((cap + SEEN_PAGE - 1) / SEEN_PAGE, sizeof(nw_seen_slot_t *));
}

/* Move up to n slots of the old table into the new one (all of them: SIZE_MAX); the old
 * table is freed once the last has moved. False when no memory stopped it short. */
static bool seen_move(nw_seen_t *s, size_t n)
{
    for (; s->from && n; n--) {
        const nw_seen_slot_t *e = slot_at(s->from, s->from_next);
        if (slot_used(e) && !slot_tomb(e)) {
            /* the key is in one table only */
            nw_seen_slot_t *to = slot_put(s->pages, s->cap, seen_probe(s, e->key));
            if (!to)
                return false; /* this slot again next time */
            *to = *e;
            s->moved++;
        }
        if (++s->from_next == s->from_cap) {
            seen_free_pages(s->from, s->from_cap);
            s->from = NULL;
            s->from_cap = s->from_next = 0;
        }
    }
    return true;
}

/* Rebuild the table at cap at once (a shrink after pruning; no move under way). */
static int seen_resize(nw_seen_t *s, size_t cap)
{
    nw_seen_slot_t **pages = seen_new_pages(cap);
    if (!pages)
        return -1;
    uint64_t moved = 0;
    for (size_t i = 0; i < s->cap; i++) {
        const nw_seen_slot_t *e = seen_at(s, i);
        if (!slot_used(e))
            continue;
        nw_seen_slot_t *to = slot_put(pages, cap, slot_probe(pages, cap, e->key));
        if (!to) {
            seen_free_pages(pages, cap);
            return -1;
        }
        *to = *e;
        moved++;
    }
    seen_free_pages(s->pages, s->cap);
    s->pages = pages;
    s->cap = cap;
    s->moved += moved;
    return 0;
}

/* Begin growing: a table twice the size, the entries to move into it as sets go on. */
static int seen_grow(nw_seen_t *s)
{
    if (!seen_move(s, SIZE_MAX)) /* never at the loads SEEN_STEP allows: just in case */
        return -1;
    size_t cap = s->cap ? 2 * s->cap : SEEN_MIN;
    nw_seen_slot_t **pages = seen_new_pages(cap);
    if (!pages)
        return -1;
    if (s->cap) {
        s->from = s->pages;
        s->from_cap = s->cap;
        s->from_next = 0;
    }
    s->pages = pages;
    s->cap = cap;
    return 0;
}

bool nw_seen_get(const nw_seen_t *s, const uint32_t key[5], int64_t *t)
{
    const nw_seen_slot_t *e = seen_find(s, key);
    if (!e)
        e = from_find(s, key);
    if (e)
        *t = slot_time(e);
    return e != NULL;
}

int nw_seen_set(nw_seen_t *s, const uint32_t key[5], int64_t t)
{
    nw_seen_slot_t *e = seen_find(s, key);
    if (!e) {
        nw_seen_slot_t *old = from_find(s, key);
        if (!old && (s->count + 1) * 4 > s->cap * 3 && seen_grow(s) != 0)
            return -1;
        if (!(e = slot_put(s->pages, s->cap, seen_probe(s, key))))
            return -1;
        memcpy(e->key, key, sizeof e->key);
        if (old) { /* it moves now; its slot there stays a tombstone */
            old->lo = old->hi = SEEN_TOMB;
        } else {
            s->count++;
        }
    }
    slot_set_time(e, t);
    seen_move(s, SEEN_STEP);
    return 0;
}

/* Empty slot i of the new table, pulling back each later entry of its run that a hole
 * at i would cut off from its home slot. */
static void seen_remove_at(nw_seen_t *s, size_t i)
{
    size_t mask = s->cap - 1;
    for (size_t j = (i + 1) & mask; slot_used(seen_at(s, j)); j = (j + 1) & mask) {
        size_t home = seen_at(s, j)->key[0] & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            *seen_held(s, i) = *seen_at(s, j);
            i = j;
        }
    }
    memset(seen_held(s, i), 0, sizeof(nw_seen_slot_t));
    s->count--;
}

void nw_seen_delete(nw_seen_t *s, const uint32_t key[5])
{
    nw_seen_slot_t *old;
    if (seen_find(s, key)) {
        seen_remove_at(s, seen_probe(s, key));
    } else if ((old = from_find(s, key))) {
        old->lo = old->hi = SEEN_TOMB;
        s->count--;
    }
}

void nw_seen_clear(nw_seen_t *s)
{
    seen_free_pages(s->pages, s->cap);
    seen_free_pages(s->from, s->from_cap);
    *s = (nw_seen_t) {0};
}

void nw_seen_prune(nw_seen_t *s, int64_t since)
{
    if (!seen_move(s, SIZE_MAX))
        return; /* no memory: pruned at the next, the table meanwhile no smaller */
    /* a removal pulls later entries back into slot i: look at it again */
    for (size_t i = 0; i < s->cap; i++)
        while (slot_used(seen_at(s, i)) && slot_time(seen_at(s, i)) < since)
            seen_remove_at(s, i);
    /* keep room to grow again */
    size_t cap = s->cap;
    while (cap > SEEN_MIN && s->count * 8 < cap)
        cap /= 2;
    if (cap < s->cap && s->count * 4 <= cap * 3)
        seen_resize(s, cap); /* no memory: keep the larger table */
}

/* ---------------------------------------------------------------- the undo log */

int nw_seen_undo_reserve(nw_seen_undo_t *u)
{
    if (u->n < u->cap)
        return 0;
    size_t cap = u->cap ? 2 * u->cap : 64;
    struct nw_seen_undo_entry *e = realloc(u->entries, cap * sizeof *e);
    if (!e)
        return -1;
    u->entries = e;
    u->cap = cap;
    return 0;
}

int nw_seen_set_undoable(nw_seen_t *s, nw_seen_undo_t *u, const uint32_t key[5], int64_t t)
{
    struct nw_seen_undo_entry *e = &u->entries[u->n];
    int64_t prev = 0;
    bool had = nw_seen_get(s, key, &prev);
    if (nw_seen_set(s, key, t) != 0)
        return -1;
    memcpy(e->key, key, sizeof e->key);
    e->prev = prev;
    e->had = had;
    u->n++;
    return 0;
}

void nw_seen_undo(nw_seen_t *s, nw_seen_undo_t *u)
{
    for (size_t i = u->n; i-- > 0;) {
        if (u->entries[i].had)
            nw_seen_set(s, u->entries[i].key, u->entries[i].prev); /* no memory: newer */
        else
            nw_seen_delete(s, u->entries[i].key);
    }
    u->n = 0;
}

void nw_seen_undo_forget(nw_seen_undo_t *u)
{
    u->n = 0;
}

void nw_seen_undo_free(nw_seen_undo_t *u)
{
    free(u->entries);
    *u = (nw_seen_undo_t) {0};
}
