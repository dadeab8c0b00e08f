/*
 * seen: the set of article ids published within the dedup window, each with the time
 * of its last append, and an undo log to take a failed batch's appends back out.
 *
 * In: ids (nw_seen_key turns one into its 20-byte key), times, a horizon to prune to.
 * Out: whether a key is held and since when. An open-addressing table of 28-byte slots
 * in pages (seen.c says why that shape); no I/O, no locks: the journal's loop thread
 * owns it (journal.c appends and undoes, journal_recover.c fills it from the segments,
 * journal_dedup.c prunes it and merges ids read back for a wider window).
 */
#ifndef NW_SEEN_H
#define NW_SEEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t key[5]; /* SHA-1 bytes: uniform, so key[0] is the hash */
    uint32_t lo, hi; /* max(time, 0) + 1; 0: the slot is empty */
} nw_seen_slot_t;

/* Zeroed is empty; nw_seen_clear() gives its memory back. */
typedef struct {
    nw_seen_slot_t **pages;
    size_t cap, count; /* cap: 0 or a power of two; count: the keys held, in all */
    /* while growing, the table the keys are moving out of (seen.c says why) */
    nw_seen_slot_t **from;
    size_t from_cap, from_next; /* its size, the next slot to move */
    uint64_t moved;             /* keys moved between tables so far (growing, shrinking) */
} nw_seen_t;

/* Ids are lowercase hex SHA-1s (article.c): their bytes are the key; anything else is
 * keyed by its own SHA-1. */
void nw_seen_key(const char *id, size_t len, uint32_t key[5]);

/* Whether key is held; its time in *t when it is. */
bool nw_seen_get(const nw_seen_t *s, const uint32_t key[5], int64_t *t);
/* Hold key with time t (times below 0 are kept as 0). 0, or -1 out of memory. */
int nw_seen_set(nw_seen_t *s, const uint32_t key[5], int64_t t);
void nw_seen_delete(nw_seen_t *s, const uint32_t key[5]);
/* Forget every key older than since, and give back what a burst grew. */
void nw_seen_prune(nw_seen_t *s, int64_t since);
void nw_seen_clear(nw_seen_t *s);

/* What a run of nw_seen_set_undoable() changed, newest last. Zeroed is empty. */
typedef struct {
    struct nw_seen_undo_entry {
        uint32_t key[5];
        int64_t prev; /* its time before */
        bool had;     /* whether it was there at all */
    } * entries;
    size_t n, cap;
} nw_seen_undo_t;

/* Room for one more entry, so that the set after it cannot fail for want of one:
 * 0, or -1 out of memory. */
int nw_seen_undo_reserve(nw_seen_undo_t *u);
/* nw_seen_set() noting in u what it replaced (nw_seen_undo_reserve() first). On -1
 * (out of memory) neither s nor u changed. */
int nw_seen_set_undoable(nw_seen_t *s, nw_seen_undo_t *u, const uint32_t key[5], int64_t t);
/* Put s back as it was before u's entries, newest first, and empty u. */
void nw_seen_undo(nw_seen_t *s, nw_seen_undo_t *u);
/* Empty u, keeping what s holds now. */
void nw_seen_undo_forget(nw_seen_undo_t *u);
void nw_seen_undo_free(nw_seen_undo_t *u);

#endif
