/*
 * The lock table suites' shared fixture parts: the injected clock and the
 * granted callback that records what the table reported.
 */

#include <check.h>

#include "grants.h"

struct locktab	*tab;
double		 fake_now;
struct grant	 grants[MAX_GRANTS];
size_t		 ngrants;
intptr_t	 cb_release_self_id;
intptr_t	 cb_release_other_id;
struct lock_req	*cb_release_other;

/* Forget every grant and callback action, and set the clock. */
void
grants_reset(void)
{
	fake_now = 1700000000.0;
	ngrants = 0;
	cb_release_self_id = -1;
	cb_release_other_id = -1;
	cb_release_other = NULL;
}

/* The injected clock. */
double
fake_clock(void)
{
	return fake_now;
}

/* Record a grant, then do what the test asked of the callback. */
void
record_grant(struct lock_req *req, void *arg)
{
	intptr_t	 id = (intptr_t)arg;
	struct lock_req	*other;

	ck_assert_uint_lt(ngrants, MAX_GRANTS);
	grants[ngrants].req = req;
	grants[ngrants].id = id;
	grants[ngrants].token = lock_req_token(req);
	grants[ngrants].held = lock_req_held(req);
	ngrants++;

	if (cb_release_other != NULL && id == cb_release_other_id) {
		other = cb_release_other;
		cb_release_other = NULL;
		locktab_release(tab, other);
	}
	if (id == cb_release_self_id)
		locktab_release(tab, req);
}

/* Acquire name, which must succeed, for the caller's id. */
struct lock_req *
acq(const char *name, enum proto_mode mode, intptr_t id)
{
	struct lock_req	*req = NULL;

	ck_assert_int_eq(locktab_acquire(tab, name, mode, 0, (void *)id, &req),
	    0);
	ck_assert_ptr_nonnull(req);
	return req;
}

/* Assert the id of the n-th granted callback. */
void
assert_granted(size_t n, intptr_t id)
{
	ck_assert_uint_gt(ngrants, n);
	ck_assert_int_eq(grants[n].id, id);
}
