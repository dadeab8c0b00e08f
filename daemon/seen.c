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
 * one block, 31 MB in pages, 37 MB with the zhashx). */
#define SEEN_MIN 1024u
#define SEEN_PAGE 512u /* slots: 14 KiB, well below malloc's mmap threshold */

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

static nw_seen_slot_t *seen_at(const nw_seen_t *s, size_t i)
{
    return &s->pages[i / SEEN_PAGE][i % SEEN_PAGE];
}

static bool slot_used(const nw_seen_slot_t *e)
{
    return e->lo || e->hi;
}

static int64_t slot_time(const nw_seen_slot_t *e)
{
    return (int64_t) (((uint64_t) e->hi << 32 | e->lo) - 1);
}

static void slot_set_time(nw_seen_slot_t *e, int64_t t)
{
    uint64_t v = (uint64_t) (t < 0 ? 0 : t) + 1;
    e->lo = (uint32_t) v;
    e->hi = (uint32_t) (v >> 32);
}

/* The index of the slot holding key, or of the empty slot where it would go; cap must
 * not be 0. */
static size_t seen_probe(const nw_seen_t *s, const uint32_t key[5])
{
    size_t mask = s->cap - 1;
    for (size_t i = key[0] & mask;; i = (i + 1) & mask) {
        const nw_seen_slot_t *e = seen_at(s, i);
        if (!slot_used(e) || memcmp(e->key, key, sizeof e->key) == 0)
            return i;
    }
}

/* The slot holding key, or NULL. */
static nw_seen_slot_t *seen_find(const nw_seen_t *s, const uint32_t key[5])
{
    nw_seen_slot_t *e = s->cap ? seen_at(s, seen_probe(s, key)) : NULL;
    return e && slot_used(e) ? e : NULL;
}

static void seen_free_pages(nw_seen_slot_t **pages, size_t cap)
{
    for (size_t i = 0; pages && i * SEEN_PAGE < cap; i++)
        free(pages[i]);
    free(pages);
}

static int seen_resize(nw_seen_t *s, size_t cap)
{
    size_t npages = (cap + SEEN_PAGE - 1) / SEEN_PAGE;
    nw_seen_t n = {calloc(npages, sizeof *n.pages), cap, s->count};
    for (size_t i = 0; n.pages && i < npages; i++)
        if (!(n.pages[i] = calloc(cap < SEEN_PAGE ? cap : SEEN_PAGE, sizeof **n.pages))) {
            seen_free_pages(n.pages, cap);
            n.pages = NULL;
        }
    if (!n.pages)
        return -1;
    for (size_t i = 0; i < s->cap; i++)
        if (slot_used(seen_at(s, i)))
            *seen_at(&n, seen_probe(&n, seen_at(s, i)->key)) = *seen_at(s, i);
    seen_free_pages(s->pages, s->cap);
    *s = n;
    return 0;
}

bool nw_seen_get(const nw_seen_t *s, const uint32_t key[5], int64_t *t)
{
    const nw_seen_slot_t *e = seen_find(s, key);
    if (e)
        *t = slot_time(e);
    return e != NULL;
}

int nw_seen_set(nw_seen_t *s, const uint32_t key[5], int64_t t)
{
    nw_seen_slot_t *e = seen_find(s, key);
    if (!e) {
        if ((s->count + 1) * 4 > s->cap * 3 &&
            seen_resize(s, s->cap ? 2 * s->cap : SEEN_MIN) != 0)
            return -1;
        e = seen_at(s, seen_probe(s, key));
        memcpy(e->key, key, sizeof e->key);
        s->count++;
    }
    slot_set_time(e, t);
    return 0;
}

/* Empty slot i, pulling back each later entry of its run that a hole at i would cut
 * off from its home slot. */
static void seen_remove_at(nw_seen_t *s, size_t i)
{
    size_t mask = s->cap - 1;
    for (size_t j = (i + 1) & mask; slot_used(seen_at(s, j)); j = (j + 1) & mask) {
        size_t home = seen_at(s, j)->key[0] & mask;
        if (((j - home) & mask) >= ((j - i) & mask)) {
            *seen_at(s, i) = *seen_at(s, j);
            i = j;
        }
    }
    memset(seen_at(s, i), 0, sizeof(nw_seen_slot_t));
    s->count--;
}

void nw_seen_delete(nw_seen_t *s, const uint32_t key[5])
{
    if (seen_find(s, key))
        seen_remove_at(s, seen_probe(s, key));
}

void nw_seen_clear(nw_seen_t *s)
{
    seen_free_pages(s->pages, s->cap);
    *s = (nw_seen_t) {0};
}

void nw_seen_prune(nw_seen_t *s, int64_t since)
{
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
