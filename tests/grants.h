/*
 * What the lock table suites (test_locktab, test_store_file) share: the
 * table under test, an injected clock, and a record of granted callbacks.
 */
#ifndef LOCKS_TESTS_GRANTS_H
#define LOCKS_TESTS_GRANTS_H

#include <stddef.h>
#include <stdint.h>

#include "locktab.h"

#define FIRST_TOKEN 1000
#define MAX_GRANTS 256

/* One granted callback, as the test saw it. */
struct grant {
	struct lock_req	*req;
	intptr_t	 id;
	int64_t		 token;
	int		 held;
};

extern struct locktab	*tab;
extern double		 fake_now;
extern struct grant	 grants[MAX_GRANTS];
extern size_t		 ngrants;

/*
 * What the granted callback does besides recording: release the request
 * of id cb_release_self_id, and on the grant of id cb_release_other_id
 * release cb_release_other.
 */
extern intptr_t		 cb_release_self_id;
extern intptr_t		 cb_release_other_id;
extern struct lock_req	*cb_release_other;

void		 grants_reset(void);
double		 fake_clock(void);
void		 record_grant(struct lock_req *, void *);
struct lock_req	*acq(const char *, enum proto_mode, intptr_t);
void		 assert_granted(size_t, intptr_t);

#endif
