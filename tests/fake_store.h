/*
 * A lock store for the lock table's unit tests: locks are names in memory,
 * a name can be made busy (held by someone outside the table), and the
 * test ends the store's waits itself, as granted or failed, whenever it
 * likes: the asynchronous takes of stores to come.
 */
#ifndef LOCKS_TESTS_FAKE_STORE_H
#define LOCKS_TESTS_FAKE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "locktab.h"

#define FAKE_NONE	(-1)	/* no mode: not taken, not waited for */

struct lock_store *fake_store_new(int64_t);
void		 fake_store_free(struct lock_store *);
void		 fake_store_set_busy(struct lock_store *, const char *, int);
int		 fake_store_mode(struct lock_store *, const char *);
int		 fake_store_waiting(struct lock_store *, const char *);
void		 fake_store_end_wait(struct lock_store *, const char *, int);
void		 fake_store_hold_joins(struct lock_store *, int);
void		 fake_store_end_join(struct lock_store *, const char *,
		    int64_t);
size_t		 fake_store_nopen(const struct lock_store *);
int		 fake_store_places(struct lock_store *, const char *);
int		 fake_store_last_queued(struct lock_store *, const char *);
void		 fake_store_lose_converts(struct lock_store *, int);
size_t		 fake_store_nconverts(const struct lock_store *);
size_t		 fake_store_nwaits(const struct lock_store *);

#endif
