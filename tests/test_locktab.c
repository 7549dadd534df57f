/*
 * Unit tests of the lock table (daemon/locktab.c) alone, over a fake store
 * (fake_store.c): grant order, shared batching, cancellation, counters,
 * reentrant callbacks, and takes the store ends later, granted or failed.
 * The file store underneath the daemon has its own suite, test_store_file.
 */

#include <sys/file.h>

#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fake_store.h"
#include "grants.h"
#include "unit.h"

/* One failed callback, as the test saw it. */
struct failure {
	intptr_t	 id;
	int		 error;
};

static struct lock_store *store;
static struct failure	 failures[MAX_GRANTS];
static size_t		 nfailures;
static int		 failed_release_self;	/* the callback releases */

/*
 * Record a failed request; its lock must still be there to look at.  If
 * failed_release_self is set, the callback then releases the request.
 */
static void
record_failed(struct lock_req *req, int error, void *arg)
{
	ck_assert(!lock_req_held(req));
	ck_assert_str_eq(lock_req_name(req), lock_name(lock_req_lock(req)));
	ck_assert_uint_lt(nfailures, MAX_GRANTS);
	failures[nfailures].id = (intptr_t)arg;
	failures[nfailures].error = error;
	nfailures++;
	if (failed_release_self)
		locktab_release(tab, req);
}

/* Make a fresh fake store and a table over it. */
static void
setup(void)
{
	grants_reset();
	nfailures = 0;
	failed_release_self = 0;
	store = fake_store_new(FIRST_TOKEN);
	tab = locktab_new(store, record_grant, record_failed, fake_clock);
	ck_assert_ptr_nonnull(tab);
}

/* Free the table, then its store. */
static void
teardown(void)
{
	locktab_free(tab);
	tab = NULL;
	fake_store_free(store);
	store = NULL;
}

/*
 * Whether someone outside the table could take name with op (LOCK_EX or
 * LOCK_SH) now: 0, or EWOULDBLOCK while the store has it taken against
 * that.
 */
static int
outsider_try(const char *name, int op)
{
	int	 mode = fake_store_mode(store, name);

	if (mode == FAKE_NONE || (mode == PROTO_SHARED && op == LOCK_SH))
		return 0;
	return EWOULDBLOCK;
}

START_TEST(test_exclusive_granted_at_once_with_first_token)
{
	struct lock_req	*a;

	ck_assert_int_eq(locktab_next_token(tab), FIRST_TOKEN);
	a = acq("db", PROTO_EXCLUSIVE, 1);
	ck_assert_uint_eq(ngrants, 1);
	ck_assert_ptr_eq(grants[0].req, a);
	ck_assert(grants[0].held);
	ck_assert_int_eq(grants[0].token, FIRST_TOKEN);
	ck_assert(lock_req_held(a));
	ck_assert_int_eq(lock_req_token(a), FIRST_TOKEN);
	ck_assert_int_eq(lock_req_mode(a), PROTO_EXCLUSIVE);
	ck_assert_double_eq(lock_req_since(a), fake_now);
	ck_assert_int_eq(lock_req_position(a), 0);
	ck_assert_int_eq(locktab_next_token(tab), FIRST_TOKEN + 1);
	locktab_release(tab, a);
	ck_assert_uint_eq(ngrants, 1);
}
END_TEST

START_TEST(test_second_exclusive_queues_until_release)
{
	struct lock_req	*a, *b;
	double		 queued_at;

	a = acq("db", PROTO_EXCLUSIVE, 1);
	fake_now += 5;
	queued_at = fake_now;
	b = acq("db", PROTO_EXCLUSIVE, 2);
	ck_assert_uint_eq(ngrants, 1);
	ck_assert(!lock_req_held(b));
	ck_assert_int_eq(lock_req_token(b), 0);
	ck_assert_int_eq(lock_req_position(b), 1);
	ck_assert_double_eq(lock_req_since(b), queued_at);

	fake_now += 5;
	locktab_release(tab, a);
	ck_assert_uint_eq(ngrants, 2);
	assert_granted(1, 2);
	ck_assert_ptr_eq(grants[1].req, b);
	ck_assert(lock_req_held(b));
	ck_assert_int_gt(lock_req_token(b), FIRST_TOKEN);
	ck_assert_double_eq(lock_req_since(b), fake_now);
	locktab_release(tab, b);
}
END_TEST

/*
 * The store hears of every request that queues, in its mode, and of its
 * leaving, granted, cancelled or failed: where etcd's store holds places.
 */
START_TEST(test_store_told_as_each_waiter_queues_and_leaves)
{
	struct lock_req	*a, *b, *c;

	a = acq("db", PROTO_EXCLUSIVE, 1);
	ck_assert_int_eq(fake_store_places(store, "db"), 0);
	b = acq("db", PROTO_EXCLUSIVE, 2);
	c = acq("db", PROTO_SHARED, 3);
	ck_assert_int_eq(fake_store_places(store, "db"), 2);
	ck_assert_int_eq(fake_store_last_queued(store, "db"), PROTO_SHARED);
	locktab_release(tab, b);		/* cancelled */
	ck_assert_int_eq(fake_store_places(store, "db"), 1);
	locktab_release(tab, a);		/* c granted */
	ck_assert(lock_req_held(c));
	ck_assert_int_eq(fake_store_places(store, "db"), 0);
	locktab_release(tab, c);

	fake_store_set_busy(store, "db", 1);
	acq("db", PROTO_EXCLUSIVE, 4);
	acq("db", PROTO_EXCLUSIVE, 5);
	ck_assert_int_eq(fake_store_places(store, "db"), 2);
	fake_store_end_wait(store, "db", -EIO);	/* 4 fails, 5 waits */
	ck_assert_uint_eq(nfailures, 1);
	ck_assert_int_eq(fake_store_places(store, "db"), 1);
}
END_TEST

START_TEST(test_exclusive_waiters_granted_in_fifo_order)
{
	struct lock_req	*reqs[10];
	int		 i;

	for (i = 0; i < 10; i++)
		reqs[i] = acq("db", PROTO_EXCLUSIVE, i);
	ck_assert_uint_eq(ngrants, 1);
	for (i = 1; i < 10; i++)
		ck_assert_int_eq(lock_req_position(reqs[i]), i);
	for (i = 0; i < 10; i++) {
		ck_assert_uint_eq(ngrants, (size_t)i + 1);
		assert_granted(i, i);
		ck_assert_int_eq(grants[i].token, FIRST_TOKEN + i);
		ck_assert_uint_eq(locktab_nheld(tab), 1);
		locktab_release(tab, reqs[i]);
	}
	ck_assert_uint_eq(ngrants, 10);
	ck_assert_ptr_null(locktab_find(tab, "db"));
}
END_TEST

START_TEST(test_consecutive_shared_waiters_granted_together)
{
	struct lock_req	*x, *s[3], *e, *s5, *h;
	struct lock	*lock;
	int		 i;

	x = acq("db", PROTO_EXCLUSIVE, 10);
	for (i = 0; i < 3; i++)
		s[i] = acq("db", PROTO_SHARED, i);
	e = acq("db", PROTO_EXCLUSIVE, 4);
	s5 = acq("db", PROTO_SHARED, 5);
	ck_assert_uint_eq(ngrants, 1);

	locktab_release(tab, x);
	ck_assert_uint_eq(ngrants, 4);
	for (i = 0; i < 3; i++) {
		assert_granted(i + 1, i);
		ck_assert(lock_req_held(s[i]));
		ck_assert_int_eq(lock_req_token(s[i]), FIRST_TOKEN + 1 + i);
	}
	ck_assert(!lock_req_held(e));
	ck_assert(!lock_req_held(s5));
	ck_assert_int_eq(lock_req_position(e), 1);
	ck_assert_int_eq(lock_req_position(s5), 2);
	ck_assert_uint_eq(locktab_nheld(tab), 3);
	ck_assert_uint_eq(locktab_nwaiting(tab), 2);

	/* Holders come in grant order. */
	lock = locktab_find(tab, "db");
	ck_assert_ptr_nonnull(lock);
	h = lock_first_holder(lock);
	for (i = 0; i < 3; i++) {
		ck_assert_ptr_eq(h, s[i]);
		h = lock_req_next(h);
	}
	ck_assert_ptr_null(h);

	/* The exclusive waiter gets it only when every shared holder left. */
	locktab_release(tab, s[0]);
	locktab_release(tab, s[1]);
	ck_assert(!lock_req_held(e));
	locktab_release(tab, s[2]);
	ck_assert(lock_req_held(e));
	ck_assert(!lock_req_held(s5));
	locktab_release(tab, e);
	ck_assert(lock_req_held(s5));
	ck_assert_uint_eq(ngrants, 6);
	locktab_release(tab, s5);
}
END_TEST

START_TEST(test_shared_granted_at_once_beside_shared_holders)
{
	struct lock_req	*a, *b;

	a = acq("db", PROTO_SHARED, 1);
	b = acq("db", PROTO_SHARED, 2);
	ck_assert_uint_eq(ngrants, 2);
	ck_assert(lock_req_held(a));
	ck_assert(lock_req_held(b));
	ck_assert_int_ne(lock_req_token(a), lock_req_token(b));
	ck_assert_uint_eq(locktab_nheld(tab), 2);
	locktab_release(tab, a);
	locktab_release(tab, b);
}
END_TEST

/* A join the store holds back waits, in order, until locktab_joined. */
START_TEST(test_shared_join_held_back_by_the_store_waits_for_joined)
{
	struct lock_req	*a, *b, *c;

	a = acq("db", PROTO_SHARED, 1);
	fake_store_hold_joins(store, 1);
	b = acq("db", PROTO_SHARED, 2);
	c = acq("db", PROTO_SHARED, 3);
	ck_assert_uint_eq(ngrants, 1);
	ck_assert(!lock_blocked(locktab_find(tab, "db")));
	ck_assert_int_eq(fake_store_waiting(store, "db"), FAKE_NONE);
	ck_assert_int_eq(lock_req_position(b), 1);

	fake_store_end_join(store, "db", FIRST_TOKEN + 10);
	ck_assert_uint_eq(ngrants, 2);
	assert_granted(1, 2);
	ck_assert_int_eq(lock_req_token(b), FIRST_TOKEN + 10);
	ck_assert(!lock_req_held(c));
	fake_store_end_join(store, "db", FIRST_TOKEN + 20);
	assert_granted(2, 3);
	ck_assert_int_eq(lock_req_token(c), FIRST_TOKEN + 20);
	locktab_release(tab, a);
	locktab_release(tab, b);
	locktab_release(tab, c);
	ck_assert_uint_eq(nfailures, 0);
}
END_TEST

/* The rest of a shared batch joins the take one by one, as the store lets. */
START_TEST(test_shared_batch_past_its_take_joins_as_the_store_lets)
{
	struct lock_req	*x, *b, *c;

	x = acq("db", PROTO_EXCLUSIVE, 1);
	b = acq("db", PROTO_SHARED, 2);
	c = acq("db", PROTO_SHARED, 3);
	fake_store_hold_joins(store, 1);
	locktab_release(tab, x);
	ck_assert_uint_eq(ngrants, 2);
	assert_granted(1, 2);
	ck_assert(!lock_req_held(c));
	fake_store_end_join(store, "db", FIRST_TOKEN + 10);
	assert_granted(2, 3);
	ck_assert_int_eq(lock_req_token(c), FIRST_TOKEN + 10);
	locktab_release(tab, b);
	locktab_release(tab, c);
}
END_TEST

START_TEST(test_shared_waits_behind_queued_exclusive)
{
	struct lock_req	*s1, *e2, *s3, *r = NULL;

	s1 = acq("db", PROTO_SHARED, 1);
	e2 = acq("db", PROTO_EXCLUSIVE, 2);
	s3 = acq("db", PROTO_SHARED, 3);
	ck_assert_uint_eq(ngrants, 1);
	ck_assert(!lock_req_held(s3));
	ck_assert_int_eq(lock_req_position(s3), 2);
	ck_assert_int_eq(locktab_acquire(tab, "db", PROTO_SHARED, 1,
	    (void *)4, &r), -EWOULDBLOCK);
	ck_assert_ptr_null(r);

	locktab_release(tab, s1);
	ck_assert_uint_eq(ngrants, 2);
	assert_granted(1, 2);
	locktab_release(tab, e2);
	ck_assert_uint_eq(ngrants, 3);
	assert_granted(2, 3);
	locktab_release(tab, s3);
}
END_TEST

START_TEST(test_try_only_on_held_lock_would_block)
{
	struct lock_req	*a, *r = NULL;
	struct lock	*lock;

	a = acq("db", PROTO_EXCLUSIVE, 1);
	ck_assert_int_eq(locktab_acquire(tab, "db", PROTO_EXCLUSIVE, 1,
	    (void *)2, &r), -EWOULDBLOCK);
	ck_assert_int_eq(locktab_acquire(tab, "db", PROTO_SHARED, 1,
	    (void *)3, &r), -EWOULDBLOCK);
	ck_assert_ptr_null(r);
	ck_assert_uint_eq(locktab_nwaiting(tab), 0);
	lock = locktab_find(tab, "db");
	ck_assert_ptr_nonnull(lock);
	ck_assert_ptr_null(lock_first_waiter(lock));
	ck_assert_uint_eq(ngrants, 1);
	ck_assert_int_eq(locktab_next_token(tab), FIRST_TOKEN + 1);
	locktab_release(tab, a);
	ck_assert_ptr_null(locktab_find(tab, "db"));
}
END_TEST

START_TEST(test_try_only_on_free_lock_is_granted)
{
	struct lock_req	*r = NULL;

	ck_assert_int_eq(locktab_acquire(tab, "db", PROTO_EXCLUSIVE, 1,
	    (void *)1, &r), 0);
	ck_assert_ptr_nonnull(r);
	ck_assert(lock_req_held(r));
	ck_assert_uint_eq(ngrants, 1);
	locktab_release(tab, r);
}
END_TEST

START_TEST(test_cancel_waiter_removes_it_from_queue)
{
	struct lock_req	*a, *b, *c, *d;

	a = acq("db", PROTO_EXCLUSIVE, 1);
	b = acq("db", PROTO_EXCLUSIVE, 2);
	c = acq("db", PROTO_EXCLUSIVE, 3);
	d = acq("db", PROTO_EXCLUSIVE, 4);
	ck_assert_uint_eq(locktab_nwaiting(tab), 3);

	locktab_release(tab, c);
	ck_assert_uint_eq(locktab_nwaiting(tab), 2);
	ck_assert_ptr_eq(lock_first_waiter(locktab_find(tab, "db")), b);
	ck_assert_ptr_eq(lock_req_next(b), d);
	ck_assert_ptr_null(lock_req_next(d));
	ck_assert_int_eq(lock_req_position(d), 2);
	ck_assert_uint_eq(ngrants, 1);

	locktab_release(tab, a);
	locktab_release(tab, b);
	ck_assert_uint_eq(ngrants, 3);
	assert_granted(1, 2);
	assert_granted(2, 4);
	locktab_release(tab, d);
}
END_TEST

START_TEST(test_cancel_exclusive_head_lets_shared_run_join_holders)
{
	struct lock_req	*s1, *e2, *s3, *s4, *e5, *s6;

	s1 = acq("db", PROTO_SHARED, 1);
	e2 = acq("db", PROTO_EXCLUSIVE, 2);
	s3 = acq("db", PROTO_SHARED, 3);
	s4 = acq("db", PROTO_SHARED, 4);
	e5 = acq("db", PROTO_EXCLUSIVE, 5);
	s6 = acq("db", PROTO_SHARED, 6);
	ck_assert_uint_eq(ngrants, 1);

	locktab_release(tab, e2);
	ck_assert_uint_eq(ngrants, 3);
	assert_granted(1, 3);
	assert_granted(2, 4);
	ck_assert(lock_req_held(s3));
	ck_assert(lock_req_held(s4));
	ck_assert(!lock_req_held(e5));
	ck_assert(!lock_req_held(s6));
	ck_assert_int_eq(lock_req_position(e5), 1);
	ck_assert_uint_eq(locktab_nheld(tab), 3);
	ck_assert_uint_eq(locktab_nwaiting(tab), 2);
	/* The file is still shared among the broker's holders. */
	ck_assert_int_eq(outsider_try("db", LOCK_EX), EWOULDBLOCK);

	locktab_release(tab, s1);
	locktab_release(tab, s3);
	locktab_release(tab, s4);
	ck_assert(lock_req_held(e5));
	locktab_release(tab, e5);
	ck_assert(lock_req_held(s6));
	locktab_release(tab, s6);
}
END_TEST

START_TEST(test_lock_entry_disappears_when_empty)
{
	struct lock_req	*a, *b;

	ck_assert_ptr_null(locktab_find(tab, "db"));
	a = acq("db", PROTO_EXCLUSIVE, 1);
	b = acq("db", PROTO_EXCLUSIVE, 2);
	ck_assert_ptr_nonnull(locktab_find(tab, "db"));
	locktab_release(tab, b);
	ck_assert_ptr_nonnull(locktab_find(tab, "db"));
	locktab_release(tab, a);
	ck_assert_ptr_null(locktab_find(tab, "db"));
	ck_assert_ptr_null(locktab_first(tab));
}
END_TEST

START_TEST(test_counters_track_holders_waiters_and_grants)
{
	struct lock_req	*a, *b, *c, *d;

	ck_assert_uint_eq(locktab_nheld(tab), 0);
	ck_assert_uint_eq(locktab_nwaiting(tab), 0);
	ck_assert_uint_eq(locktab_granted_total(tab), 0);

	a = acq("one", PROTO_SHARED, 1);
	b = acq("one", PROTO_SHARED, 2);
	c = acq("one", PROTO_EXCLUSIVE, 3);
	d = acq("two", PROTO_EXCLUSIVE, 4);
	ck_assert_uint_eq(locktab_nheld(tab), 3);
	ck_assert_uint_eq(locktab_nwaiting(tab), 1);
	ck_assert_uint_eq(locktab_granted_total(tab), 3);
	ck_assert_int_eq(locktab_next_token(tab), FIRST_TOKEN + 3);

	locktab_release(tab, a);
	locktab_release(tab, b);
	ck_assert_uint_eq(locktab_nheld(tab), 2);
	ck_assert_uint_eq(locktab_nwaiting(tab), 0);
	ck_assert_uint_eq(locktab_granted_total(tab), 4);
	ck_assert_int_eq(locktab_next_token(tab), FIRST_TOKEN + 4);

	locktab_release(tab, c);
	locktab_release(tab, d);
	ck_assert_uint_eq(locktab_nheld(tab), 0);
	ck_assert_uint_eq(locktab_granted_total(tab), 4);
}
END_TEST

START_TEST(test_tokens_strictly_increase_across_names)
{
	struct lock_req	*r;
	int64_t		 last = 0;
	size_t		 i;

	for (i = 0; i < 20; i++) {
		r = acq(i % 2 ? "odd" : "even",
		    i % 3 ? PROTO_SHARED : PROTO_EXCLUSIVE, (intptr_t)i);
		ck_assert(lock_req_held(r));
		ck_assert_int_gt(lock_req_token(r), last);
		last = lock_req_token(r);
		locktab_release(tab, r);
	}
	ck_assert_uint_eq(ngrants, 20);
	ck_assert_uint_eq(locktab_granted_total(tab), 20);
}
END_TEST

START_TEST(test_granted_cb_may_release_just_granted_req)
{
	struct lock_req	*a, *b, *c;

	/* At once, inside locktab_acquire. */
	cb_release_self_id = 1;
	a = acq("db", PROTO_EXCLUSIVE, 1);
	(void)a;
	ck_assert_uint_eq(ngrants, 1);
	ck_assert_uint_eq(locktab_nheld(tab), 0);
	ck_assert_ptr_null(locktab_find(tab, "db"));
	ck_assert_int_eq(outsider_try("db", LOCK_EX), 0);

	/* On handoff, inside locktab_release: the next waiter follows. */
	cb_release_self_id = 3;
	b = acq("db", PROTO_EXCLUSIVE, 2);
	acq("db", PROTO_EXCLUSIVE, 3);
	c = acq("db", PROTO_EXCLUSIVE, 4);
	ck_assert_uint_eq(ngrants, 2);
	locktab_release(tab, b);
	ck_assert_uint_eq(ngrants, 4);
	assert_granted(2, 3);
	assert_granted(3, 4);
	ck_assert(lock_req_held(c));
	ck_assert_uint_eq(locktab_nheld(tab), 1);
	ck_assert_uint_eq(locktab_nwaiting(tab), 0);
	locktab_release(tab, c);
	ck_assert_ptr_null(locktab_find(tab, "db"));
}
END_TEST

START_TEST(test_granted_cb_may_release_another_of_its_batch)
{
	struct lock_req	*x, *s1, *s2, *s3;

	x = acq("db", PROTO_EXCLUSIVE, 10);
	s1 = acq("db", PROTO_SHARED, 1);
	s2 = acq("db", PROTO_SHARED, 2);
	s3 = acq("db", PROTO_SHARED, 3);
	cb_release_other_id = 1;
	cb_release_other = s2;
	locktab_release(tab, x);
	/* s2 was released before its callback ran, so it gets none. */
	ck_assert_uint_eq(ngrants, 3);
	assert_granted(1, 1);
	assert_granted(2, 3);
	ck_assert_uint_eq(locktab_nheld(tab), 2);
	ck_assert_ptr_eq(lock_first_holder(locktab_find(tab, "db")), s1);
	ck_assert_ptr_eq(lock_req_next(s1), s3);
	locktab_release(tab, s1);
	locktab_release(tab, s3);
}
END_TEST

START_TEST(test_granted_cb_may_release_a_holder_of_another_lock)
{
	struct lock_req	*a, *b, *c, *d;

	a = acq("one", PROTO_EXCLUSIVE, 1);
	b = acq("one", PROTO_EXCLUSIVE, 2);
	c = acq("two", PROTO_EXCLUSIVE, 3);
	d = acq("two", PROTO_EXCLUSIVE, 4);
	/* d's callback releases a, whose handoff grants b, nested. */
	cb_release_other_id = 4;
	cb_release_other = a;
	locktab_release(tab, c);
	ck_assert_uint_eq(ngrants, 4);
	assert_granted(2, 4);
	assert_granted(3, 2);
	ck_assert(lock_req_held(b));
	ck_assert(lock_req_held(d));
	ck_assert_int_gt(lock_req_token(b), lock_req_token(d));
	ck_assert_uint_eq(locktab_nheld(tab), 2);
	ck_assert_uint_eq(locktab_nwaiting(tab), 0);
	locktab_release(tab, b);
	locktab_release(tab, d);
	ck_assert_ptr_null(locktab_first(tab));
}
END_TEST

START_TEST(test_iteration_visits_every_lock_and_request)
{
	static const char	*names[] = { "alpha", "beta", "gamma" };
	struct lock_req		*h, *w;
	struct lock		*lock;
	int			 seen[3] = { 0 }, i, nlocks = 0;

	for (i = 0; i < 3; i++) {
		acq(names[i], PROTO_EXCLUSIVE, i);
		acq(names[i], PROTO_SHARED, 10 + i);
	}
	for (lock = locktab_first(tab); lock != NULL;
	    lock = locktab_next(lock)) {
		nlocks++;
		for (i = 0; i < 3; i++) {
			if (strcmp(lock_name(lock), names[i]) == 0)
				seen[i]++;
		}
		ck_assert_ptr_eq(locktab_find(tab, lock_name(lock)), lock);
		h = lock_first_holder(lock);
		w = lock_first_waiter(lock);
		ck_assert_ptr_nonnull(h);
		ck_assert_ptr_nonnull(w);
		ck_assert_ptr_null(lock_req_next(h));
		ck_assert_ptr_null(lock_req_next(w));
		ck_assert_ptr_eq(lock_req_lock(h), lock);
		ck_assert_ptr_eq(lock_req_lock(w), lock);
		ck_assert_str_eq(lock_req_name(w), lock_name(lock));
		ck_assert_int_eq((intptr_t)lock_req_arg(w),
		    (intptr_t)lock_req_arg(h) + 10);
		ck_assert_int_eq(lock_req_mode(w), PROTO_SHARED);
	}
	ck_assert_int_eq(nlocks, 3);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(seen[i], 1);
	/* locktab_free in teardown frees held and queued requests alike. */
}
END_TEST

START_TEST(test_default_clock_is_realtime)
{
	struct locktab		*rt;
	struct lock_store	*rt_store;
	struct lock_req		*r;
	struct timespec		 ts;
	double			 before, after;

	locktab_free(tab);
	tab = NULL;
	rt_store = fake_store_new(1);
	rt = locktab_new(rt_store, NULL, NULL, NULL);
	ck_assert_ptr_nonnull(rt);
	clock_gettime(CLOCK_REALTIME, &ts);
	before = ts.tv_sec + ts.tv_nsec / 1e9;
	ck_assert_int_eq(locktab_acquire(rt, "db", PROTO_SHARED, 0, NULL, &r),
	    0);
	clock_gettime(CLOCK_REALTIME, &ts);
	after = ts.tv_sec + ts.tv_nsec / 1e9;
	ck_assert(lock_req_held(r));
	ck_assert_int_eq(lock_req_token(r), 1);
	ck_assert_double_ge(lock_req_since(r), before - 0.001);
	ck_assert_double_le(lock_req_since(r), after + 0.001);
	locktab_release(rt, r);
	locktab_free(rt);
	fake_store_free(rt_store);
}
END_TEST

/* A take the store ends later goes to the head, and FIFO order holds. */
START_TEST(test_take_granted_later_goes_to_the_head_in_fifo_order)
{
	struct lock_req	*a, *b, *c;

	fake_store_set_busy(store, "db", 1);
	a = acq("db", PROTO_EXCLUSIVE, 1);
	b = acq("db", PROTO_EXCLUSIVE, 2);
	ck_assert_uint_eq(ngrants, 0);
	ck_assert(lock_blocked(locktab_find(tab, "db")));
	ck_assert_int_eq(fake_store_waiting(store, "db"), PROTO_EXCLUSIVE);
	c = acq("db", PROTO_EXCLUSIVE, 3);
	ck_assert_int_eq(lock_req_position(c), 3);

	fake_now += 5;
	fake_store_end_wait(store, "db", 0);
	ck_assert_uint_eq(ngrants, 1);
	assert_granted(0, 1);
	ck_assert(lock_req_held(a));
	ck_assert_int_eq(lock_req_token(a), FIRST_TOKEN);
	ck_assert_double_eq(lock_req_since(a), fake_now);
	ck_assert_uint_eq(locktab_nblocked(tab), 0);
	ck_assert_int_eq(fake_store_waiting(store, "db"), FAKE_NONE);
	ck_assert_int_eq(lock_req_position(b), 1);
	ck_assert_int_eq(lock_req_position(c), 2);

	/* The exclusive handoff keeps the store's take. */
	locktab_release(tab, a);
	assert_granted(1, 2);
	ck_assert_int_eq(outsider_try("db", LOCK_SH), EWOULDBLOCK);
	locktab_release(tab, b);
	assert_granted(2, 3);
	locktab_release(tab, c);
	ck_assert_ptr_null(locktab_find(tab, "db"));
	ck_assert_int_eq(outsider_try("db", LOCK_EX), 0);
	ck_assert_uint_eq(fake_store_nwaits(store), 1);
	ck_assert_uint_eq(nfailures, 0);
}
END_TEST

/* A shared take ended later grants the shared run, never past an exclusive. */
START_TEST(test_take_granted_later_brings_the_shared_run_along)
{
	struct lock_req	*s1, *s2, *e3, *s4;

	fake_store_set_busy(store, "db", 1);
	s1 = acq("db", PROTO_SHARED, 1);
	s2 = acq("db", PROTO_SHARED, 2);
	e3 = acq("db", PROTO_EXCLUSIVE, 3);
	s4 = acq("db", PROTO_SHARED, 4);
	ck_assert_int_eq(fake_store_waiting(store, "db"), PROTO_SHARED);

	fake_store_end_wait(store, "db", 0);
	ck_assert_uint_eq(ngrants, 2);
	assert_granted(0, 1);
	assert_granted(1, 2);
	ck_assert_int_eq(lock_req_token(s1), FIRST_TOKEN);
	ck_assert_int_eq(lock_req_token(s2), FIRST_TOKEN + 1);
	ck_assert(!lock_req_held(e3));
	ck_assert(!lock_req_held(s4));
	ck_assert_int_eq(lock_req_position(e3), 1);
	ck_assert_int_eq(lock_req_position(s4), 2);
	ck_assert_int_eq(outsider_try("db", LOCK_SH), 0);
	ck_assert_int_eq(outsider_try("db", LOCK_EX), EWOULDBLOCK);

	locktab_release(tab, s1);
	locktab_release(tab, s2);
	ck_assert(lock_req_held(e3));
	ck_assert_int_eq(outsider_try("db", LOCK_SH), EWOULDBLOCK);
	locktab_release(tab, e3);
	ck_assert(lock_req_held(s4));
	ck_assert_uint_eq(ngrants, 4);
	locktab_release(tab, s4);
}
END_TEST

/*
 * A take the store fails later fails the exclusive head it was for; the
 * next head, a shared run, waits anew and is granted together.
 */
START_TEST(test_take_failed_later_fails_only_the_head_it_was_for)
{
	struct lock_req	*s2, *s3;

	fake_store_set_busy(store, "db", 1);
	acq("db", PROTO_EXCLUSIVE, 1);
	s2 = acq("db", PROTO_SHARED, 2);
	s3 = acq("db", PROTO_SHARED, 3);
	ck_assert_int_eq(fake_store_waiting(store, "db"), PROTO_EXCLUSIVE);

	fake_store_end_wait(store, "db", -EIO);
	ck_assert_uint_eq(nfailures, 1);
	ck_assert_int_eq(failures[0].id, 1);
	ck_assert_int_eq(failures[0].error, -EIO);
	ck_assert_uint_eq(ngrants, 0);
	ck_assert(lock_blocked(locktab_find(tab, "db")));
	ck_assert_int_eq(fake_store_waiting(store, "db"), PROTO_SHARED);
	ck_assert_uint_eq(fake_store_nwaits(store), 2);
	ck_assert_int_eq(lock_req_position(s2), 1);
	ck_assert_uint_eq(locktab_nwaiting(tab), 2);

	fake_store_end_wait(store, "db", 0);
	ck_assert_uint_eq(ngrants, 2);
	assert_granted(0, 2);
	assert_granted(1, 3);
	ck_assert_int_eq(lock_req_token(s2), FIRST_TOKEN);
	ck_assert_uint_eq(nfailures, 1);
	locktab_release(tab, s2);
	locktab_release(tab, s3);
	ck_assert_ptr_null(locktab_find(tab, "db"));
}
END_TEST

/*
 * A failed shared take fails the whole shared run it was for; when the
 * last waiter fails too, the lock is closed at once.
 */
START_TEST(test_take_failed_later_fails_a_shared_head_with_its_run)
{
	struct lock_req	*e3;

	fake_store_set_busy(store, "db", 1);
	acq("db", PROTO_SHARED, 1);
	acq("db", PROTO_SHARED, 2);
	e3 = acq("db", PROTO_EXCLUSIVE, 3);

	fake_store_end_wait(store, "db", -EACCES);
	ck_assert_uint_eq(nfailures, 2);
	ck_assert_int_eq(failures[0].id, 1);
	ck_assert_int_eq(failures[1].id, 2);
	ck_assert_int_eq(lock_req_position(e3), 1);
	ck_assert_int_eq(fake_store_waiting(store, "db"), PROTO_EXCLUSIVE);

	fake_store_end_wait(store, "db", -EACCES);
	ck_assert_uint_eq(nfailures, 3);
	ck_assert_int_eq(failures[2].id, 3);
	ck_assert_int_eq(failures[2].error, -EACCES);
	ck_assert_uint_eq(ngrants, 0);
	ck_assert_ptr_null(locktab_find(tab, "db"));
	ck_assert_uint_eq(locktab_nblocked(tab), 0);
	ck_assert_uint_eq(locktab_nwaiting(tab), 0);
	ck_assert_uint_eq(locktab_nidle(tab), 0);
	ck_assert_uint_eq(fake_store_nopen(store), 0);
	ck_assert_int_eq(locktab_next_token(tab), FIRST_TOKEN);
}
END_TEST

/*
 * The failed callback of the last waiter still sees its lock's name (the
 * lock closes after the callback), and may release its own request.
 */
START_TEST(test_a_failed_callback_may_look_at_its_lock_and_release_it)
{
	struct lock_req	*a, *b;

	failed_release_self = 1;
	fake_store_set_busy(store, "db", 1);
	acq("db", PROTO_EXCLUSIVE, 1);
	fake_store_end_wait(store, "db", -EIO);
	ck_assert_uint_eq(nfailures, 1);
	ck_assert_ptr_null(locktab_find(tab, "db"));
	ck_assert_uint_eq(fake_store_nopen(store), 0);
	/* Freed once: two new requests are two, not one reused twice. */
	a = acq("a", PROTO_EXCLUSIVE, 2);
	b = acq("b", PROTO_EXCLUSIVE, 3);
	ck_assert_ptr_ne(a, b);
	locktab_release(tab, a);
	locktab_release(tab, b);
}
END_TEST

/*
 * A failed request released before its failure is reported (here from
 * the granted callback of the next head) is freed and never reported.
 */
START_TEST(test_a_failed_request_released_before_its_report_is_dropped)
{
	struct lock_req	*e1, *e2;

	fake_store_set_busy(store, "db", 1);
	e1 = acq("db", PROTO_EXCLUSIVE, 1);
	e2 = acq("db", PROTO_EXCLUSIVE, 2);
	cb_release_other_id = 2;
	cb_release_other = e1;
	/* The outsider left, but the take for e1 failed anyway. */
	fake_store_set_busy(store, "db", 0);
	fake_store_end_wait(store, "db", -EIO);
	ck_assert_uint_eq(nfailures, 0);
	ck_assert_uint_eq(ngrants, 1);
	assert_granted(0, 2);
	ck_assert(lock_req_held(e2));
	ck_assert_uint_eq(locktab_nwaiting(tab), 0);
	locktab_release(tab, e2);
	ck_assert_uint_eq(locktab_nheld(tab), 0);
}
END_TEST

/* The last waiter leaving a blocked lock cancels the wait and closes it. */
START_TEST(test_cancelled_wait_closes_the_lock_at_once)
{
	struct lock_req	*a;

	fake_store_set_busy(store, "db", 1);
	a = acq("db", PROTO_EXCLUSIVE, 1);
	ck_assert_int_eq(fake_store_waiting(store, "db"), PROTO_EXCLUSIVE);
	locktab_release(tab, a);
	ck_assert_ptr_null(locktab_find(tab, "db"));
	ck_assert_uint_eq(locktab_nblocked(tab), 0);
	ck_assert_uint_eq(locktab_nidle(tab), 0);
	ck_assert_uint_eq(fake_store_nopen(store), 0);
	ck_assert_uint_eq(ngrants, 0);
	ck_assert_uint_eq(nfailures, 0);
}
END_TEST

/* A try-only acquire never asks the store to wait, and leaves nothing. */
START_TEST(test_try_only_never_asks_the_store_to_wait)
{
	struct lock_req	*r = NULL;

	fake_store_set_busy(store, "db", 1);
	ck_assert_int_eq(locktab_acquire(tab, "db", PROTO_EXCLUSIVE, 1,
	    (void *)1, &r), -EWOULDBLOCK);
	ck_assert_ptr_null(r);
	ck_assert_uint_eq(fake_store_nwaits(store), 0);
	ck_assert_ptr_null(locktab_find(tab, "db"));
	ck_assert_uint_eq(fake_store_nopen(store), 0);
	ck_assert_int_eq(locktab_next_token(tab), FIRST_TOKEN);
}
END_TEST

/* An idle lock keeps its store state, without a take, until it expires. */
START_TEST(test_idle_lock_keeps_its_state_until_the_second_expiry)
{
	locktab_release(tab, acq("db", PROTO_EXCLUSIVE, 1));
	ck_assert_uint_eq(locktab_nidle(tab), 1);
	ck_assert_uint_eq(fake_store_nopen(store), 1);
	ck_assert_int_eq(outsider_try("db", LOCK_EX), 0);
	locktab_release(tab, acq("db", PROTO_SHARED, 2));
	ck_assert_uint_eq(fake_store_nopen(store), 1);
	locktab_expire(tab);
	ck_assert_uint_eq(fake_store_nopen(store), 1);
	locktab_expire(tab);
	ck_assert_uint_eq(locktab_nidle(tab), 0);
	ck_assert_uint_eq(fake_store_nopen(store), 0);
}
END_TEST


/* One contended report, as the test saw it. */
struct contended {
	struct lock_req	*holder;
	intptr_t	 id;
	size_t		 nwaiters;
	struct lock_req	*first;
	size_t		 ngrants;	/* grants reported before it */
};

#define MAX_CONTENDED 32

static struct contended	 reports[MAX_CONTENDED];
static size_t		 nreports;
static double		 fake_mono;	/* the contended reports' clock */

/* The injected monotonic clock of the contended reports. */
static double
fake_mono_clock(void)
{
	return fake_mono;
}

/* Record a contended report; the holder must hold, first must wait. */
static void
record_contended(struct lock_req *holder, size_t nwaiters,
    struct lock_req *first, void *arg)
{
	ck_assert(lock_req_held(holder));
	ck_assert(!lock_req_held(first));
	ck_assert_ptr_eq(lock_req_lock(holder), lock_req_lock(first));
	ck_assert_uint_lt(nreports, MAX_CONTENDED);
	reports[nreports].holder = holder;
	reports[nreports].id = (intptr_t)arg;
	reports[nreports].nwaiters = nwaiters;
	reports[nreports].first = first;
	reports[nreports].ngrants = ngrants;
	nreports++;
}

/* The core fixture, with contended reports on the injected clock. */
static void
setup_contended(void)
{
	setup();
	nreports = 0;
	fake_mono = 100.0;
	locktab_set_contended(tab, record_contended, fake_mono_clock);
}

/* Acquire name and ask for contended reports while it holds. */
static struct lock_req *
acq_notify(const char *name, enum proto_mode mode, intptr_t id)
{
	struct lock_req	*req = acq(name, mode, id);

	lock_req_notify_contended(req, 0);
	return req;
}

START_TEST(test_contended_told_once_when_the_first_waiter_queues)
{
	struct lock_req	*a, *b;
	double		 told_at;

	a = acq_notify("db", PROTO_EXCLUSIVE, 1);
	ck_assert_uint_eq(nreports, 0);
	b = acq("db", PROTO_EXCLUSIVE, 2);
	ck_assert_uint_eq(nreports, 1);
	ck_assert_ptr_eq(reports[0].holder, a);
	ck_assert_int_eq(reports[0].id, 1);
	ck_assert_uint_eq(reports[0].nwaiters, 1);
	ck_assert_ptr_eq(reports[0].first, b);
	ck_assert_int_eq(lock_req_notifies(a, &told_at), 1);
	ck_assert_double_eq(told_at, 100.0);
	ck_assert_int_eq(lock_req_notifies(b, NULL), 0);
	/* Nothing changed: ticks long after tell nobody again. */
	fake_mono += 10;
	locktab_contended_tick(tab);
	locktab_contended_tick(tab);
	ck_assert_uint_eq(nreports, 1);
	locktab_release(tab, b);
	locktab_release(tab, a);
}
END_TEST

START_TEST(test_contended_not_told_to_holders_that_did_not_ask)
{
	struct lock_req	*a, *b, *c;

	a = acq("db", PROTO_EXCLUSIVE, 1);
	b = acq("db", PROTO_EXCLUSIVE, 2);
	c = acq("db", PROTO_EXCLUSIVE, 3);
	fake_mono += 5;
	locktab_contended_tick(tab);
	locktab_release(tab, b);
	locktab_contended_tick(tab);
	ck_assert_uint_eq(nreports, 0);
	/* c asked while waiting: it is told only once it holds. */
	lock_req_notify_contended(c, 0);
	ck_assert_uint_eq(nreports, 0);
	locktab_release(tab, a);
	ck_assert_uint_eq(nreports, 0);
	locktab_release(tab, c);
}
END_TEST

START_TEST(test_contended_queue_changes_told_at_most_once_a_second)
{
	struct lock_req	*a, *b, *c, *d;

	a = acq_notify("db", PROTO_EXCLUSIVE, 1);
	b = acq("db", PROTO_EXCLUSIVE, 2);
	ck_assert_uint_eq(nreports, 1);
	fake_mono += 0.3;
	c = acq("db", PROTO_SHARED, 3);
	fake_mono += 0.3;
	d = acq("db", PROTO_SHARED, 4);
	ck_assert_uint_eq(nreports, 1);
	fake_mono += 0.3;		/* 0.9 s since the report */
	locktab_contended_tick(tab);
	ck_assert_uint_eq(nreports, 1);
	fake_mono += 0.2;
	locktab_contended_tick(tab);
	ck_assert_uint_eq(nreports, 2);
	ck_assert_ptr_eq(reports[1].holder, a);
	ck_assert_uint_eq(reports[1].nwaiters, 3);
	ck_assert_ptr_eq(reports[1].first, b);
	/* The head leaves: told of the new head a second later. */
	locktab_release(tab, b);
	ck_assert_uint_eq(nreports, 2);
	fake_mono += 1.0;
	locktab_contended_tick(tab);
	ck_assert_uint_eq(nreports, 3);
	ck_assert_uint_eq(reports[2].nwaiters, 2);
	ck_assert_ptr_eq(reports[2].first, c);
	locktab_contended_tick(tab);
	ck_assert_uint_eq(nreports, 3);
	locktab_release(tab, a);
	locktab_release(tab, c);
	locktab_release(tab, d);
}
END_TEST

START_TEST(test_contended_shared_holders_that_asked_are_each_told)
{
	struct lock_req	*s1, *s2, *s3, *x;
	int		 told1 = 0, told2 = 0;
	size_t		 i;

	s1 = acq_notify("db", PROTO_SHARED, 1);
	s2 = acq_notify("db", PROTO_SHARED, 2);
	s3 = acq("db", PROTO_SHARED, 3);
	ck_assert_uint_eq(ngrants, 3);
	x = acq("db", PROTO_EXCLUSIVE, 4);
	ck_assert_uint_eq(nreports, 2);
	for (i = 0; i < nreports; i++) {
		ck_assert_uint_eq(reports[i].nwaiters, 1);
		ck_assert_ptr_eq(reports[i].first, x);
		told1 += reports[i].holder == s1;
		told2 += reports[i].holder == s2;
	}
	ck_assert_int_eq(told1, 1);
	ck_assert_int_eq(told2, 1);
	locktab_release(tab, s1);
	locktab_release(tab, s2);
	locktab_release(tab, s3);
	locktab_release(tab, x);
}
END_TEST

START_TEST(test_contended_a_grant_with_a_queue_behind_is_told_after_it)
{
	struct lock_req	*a, *b, *c;

	a = acq("db", PROTO_EXCLUSIVE, 1);
	b = acq("db", PROTO_EXCLUSIVE, 2);
	lock_req_notify_contended(b, 0);
	c = acq("db", PROTO_EXCLUSIVE, 3);
	ck_assert_uint_eq(nreports, 0);
	locktab_release(tab, a);
	assert_granted(1, 2);
	ck_assert_uint_eq(nreports, 1);
	ck_assert_ptr_eq(reports[0].holder, b);
	ck_assert_uint_eq(reports[0].nwaiters, 1);
	ck_assert_ptr_eq(reports[0].first, c);
	ck_assert_uint_eq(reports[0].ngrants, 2);	/* after b's grant */
	locktab_release(tab, b);
	ck_assert_uint_eq(nreports, 1);
	locktab_release(tab, c);
}
END_TEST

START_TEST(test_contended_an_emptied_queue_tells_nobody)
{
	struct lock_req	*a, *b, *c;

	a = acq_notify("db", PROTO_EXCLUSIVE, 1);
	b = acq("db", PROTO_EXCLUSIVE, 2);
	ck_assert_uint_eq(nreports, 1);
	fake_mono += 0.5;
	locktab_release(tab, b);
	fake_mono += 1.0;
	locktab_contended_tick(tab);
	ck_assert_uint_eq(nreports, 1);
	/* The next request to queue is the first again. */
	c = acq("db", PROTO_EXCLUSIVE, 3);
	ck_assert_uint_eq(nreports, 2);
	ck_assert_uint_eq(reports[1].nwaiters, 1);
	ck_assert_ptr_eq(reports[1].first, c);
	locktab_release(tab, a);
	locktab_release(tab, c);
}
END_TEST

START_TEST(test_contended_held_back_report_dies_with_its_holder)
{
	struct lock_req	*a, *b, *c;

	a = acq_notify("db", PROTO_EXCLUSIVE, 1);
	b = acq("db", PROTO_EXCLUSIVE, 2);
	c = acq("db", PROTO_EXCLUSIVE, 3);
	ck_assert_uint_eq(nreports, 1);
	/* Held back, then the lock empties and goes idle before the tick. */
	locktab_release(tab, a);
	locktab_release(tab, b);
	locktab_release(tab, c);
	ck_assert_uint_eq(locktab_nidle(tab), 1);
	fake_mono += 2;
	locktab_contended_tick(tab);
	locktab_expire(tab);
	locktab_expire(tab);
	ck_assert_uint_eq(locktab_nidle(tab), 0);
	ck_assert_uint_eq(nreports, 1);
	/* A new holder of the name starts with nobody to tell. */
	a = acq("db", PROTO_EXCLUSIVE, 4);
	b = acq("db", PROTO_EXCLUSIVE, 5);
	locktab_contended_tick(tab);
	ck_assert_uint_eq(nreports, 1);
	locktab_release(tab, a);
	locktab_release(tab, b);
}
END_TEST

START_TEST(test_contended_restored_holder_keeps_its_rate)
{
	struct lock_req	*a, *b;
	double		 told_at;

	/* As a reload puts it back: told 0.5 s ago, a waiter behind. */
	a = acq("db", PROTO_EXCLUSIVE, 1);
	b = acq("db", PROTO_EXCLUSIVE, 2);
	lock_req_notify_contended(a, fake_mono - 0.5);
	ck_assert_int_eq(lock_req_notifies(a, &told_at), 1);
	ck_assert_double_eq(told_at, 99.5);
	locktab_contended_tick(tab);
	ck_assert_uint_eq(nreports, 0);
	locktab_release(tab, b);
	b = acq("db", PROTO_EXCLUSIVE, 3);
	ck_assert_uint_eq(nreports, 0);		/* within the second */
	fake_mono += 0.6;
	locktab_contended_tick(tab);
	ck_assert_uint_eq(nreports, 1);
	ck_assert_ptr_eq(reports[0].first, b);
	locktab_release(tab, a);
	locktab_release(tab, b);
}
END_TEST

START_TEST(test_contended_without_a_callback_tells_nobody)
{
	struct lock_req	*a, *b;

	locktab_set_contended(tab, NULL, fake_mono_clock);
	a = acq_notify("db", PROTO_EXCLUSIVE, 1);
	b = acq("db", PROTO_EXCLUSIVE, 2);
	locktab_contended_tick(tab);
	ck_assert_uint_eq(nreports, 0);
	locktab_release(tab, a);
	locktab_release(tab, b);
}
END_TEST

/* Collect the lock table tests into one suite. */
/* One converted callback, as the test saw it. */
static struct lock_req	*converted_req;
static int		 converted_error;
static size_t		 nconverted;

static void
record_converted(struct lock_req *req, int error, void *arg)
{
	(void)arg;
	converted_req = req;
	converted_error = error;
	nconverted++;
}

static void
convert_setup(void)
{
	setup();
	converted_req = NULL;
	converted_error = 0;
	nconverted = 0;
	locktab_set_converted_cb(tab, record_converted);
}

/* A downgrade keeps the token and lets the shared head of the queue in. */
START_TEST(test_downgrade_keeps_token_and_grants_shared_head_waiters)
{
	struct lock_req	*a, *s2, *s3, *e4;
	int64_t		 token;

	a = acq("db", PROTO_EXCLUSIVE, 1);
	token = lock_req_token(a);
	s2 = acq("db", PROTO_SHARED, 2);
	s3 = acq("db", PROTO_SHARED, 3);
	e4 = acq("db", PROTO_EXCLUSIVE, 4);
	ck_assert_int_eq(locktab_convert(tab, a, PROTO_SHARED, 0), 0);
	ck_assert_int_eq(lock_req_mode(a), PROTO_SHARED);
	ck_assert_int_eq(lock_req_token(a), token);
	ck_assert_int_eq(fake_store_mode(store, "db"), PROTO_SHARED);
	ck_assert(lock_req_held(s2));
	ck_assert(lock_req_held(s3));
	ck_assert(!lock_req_held(e4));
	ck_assert_int_eq(outsider_try("db", LOCK_SH), 0);
	ck_assert_int_eq(outsider_try("db", LOCK_EX), EWOULDBLOCK);
}
END_TEST

/* A lone shared holder upgrades at once, with a new, higher token. */
START_TEST(test_lone_upgrade_is_at_once_with_a_higher_token)
{
	struct lock_req	*a, *b;
	int64_t		 token;

	a = acq("db", PROTO_SHARED, 1);
	b = acq("other", PROTO_EXCLUSIVE, 2);
	token = lock_req_token(b);
	ck_assert_int_eq(locktab_convert(tab, a, PROTO_EXCLUSIVE, 0), 0);
	ck_assert_int_eq(lock_req_mode(a), PROTO_EXCLUSIVE);
	ck_assert_int_gt(lock_req_token(a), token);
	ck_assert_int_eq(fake_store_mode(store, "db"), PROTO_EXCLUSIVE);
	/* The same mode again is nothing to do. */
	ck_assert_int_eq(locktab_convert(tab, a, PROTO_EXCLUSIVE, 0), 0);
	ck_assert_uint_eq(nconverted, 0);
}
END_TEST

/*
 * An upgrade under other shared holders waits, shared all along, ahead of
 * requests that came before it; it holds once the others let go.
 */
START_TEST(test_upgrade_waits_ahead_of_the_queue_keeping_its_shared_hold)
{
	struct lock_req	*a, *b, *e3, *s4;
	int64_t		 b_token;

	a = acq("db", PROTO_SHARED, 1);
	b = acq("db", PROTO_SHARED, 2);
	b_token = lock_req_token(b);
	e3 = acq("db", PROTO_EXCLUSIVE, 3);
	ck_assert_int_eq(locktab_convert(tab, a, PROTO_EXCLUSIVE, 0), 1);
	ck_assert(lock_req_converting(a));
	ck_assert_int_eq(lock_req_mode(a), PROTO_SHARED);
	ck_assert_int_eq(fake_store_mode(store, "db"), PROTO_SHARED);
	/* A shared request no longer joins past the waiting upgrade. */
	s4 = acq("db", PROTO_SHARED, 4);
	ck_assert(!lock_req_held(s4));
	locktab_release(tab, b);
	ck_assert_uint_eq(nconverted, 1);
	ck_assert_ptr_eq(converted_req, a);
	ck_assert_int_eq(converted_error, 0);
	ck_assert(!lock_req_converting(a));
	ck_assert_int_eq(lock_req_mode(a), PROTO_EXCLUSIVE);
	ck_assert_int_gt(lock_req_token(a), b_token);
	ck_assert(!lock_req_held(e3));
	locktab_release(tab, a);
	ck_assert(lock_req_held(e3));
	ck_assert(!lock_req_held(s4));
}
END_TEST

/* The second of two shared holders to upgrade gets a deadlock, at once. */
START_TEST(test_second_upgrade_is_a_deadlock_and_keeps_its_shared_hold)
{
	struct lock_req	*a, *b;

	a = acq("db", PROTO_SHARED, 1);
	b = acq("db", PROTO_SHARED, 2);
	ck_assert_int_eq(locktab_convert(tab, a, PROTO_EXCLUSIVE, 0), 1);
	ck_assert_int_eq(locktab_convert(tab, b, PROTO_EXCLUSIVE, 0),
	    LOCKTAB_E_DEADLOCK);
	ck_assert(lock_req_held(b));
	ck_assert_int_eq(lock_req_mode(b), PROTO_SHARED);
	ck_assert(!lock_req_converting(b));
	/* Its own upgrade pending, a holder cannot ask again. */
	ck_assert_int_eq(locktab_convert(tab, a, PROTO_EXCLUSIVE, 0),
	    -EALREADY);
	locktab_release(tab, b);
	ck_assert_uint_eq(nconverted, 1);
	ck_assert_int_eq(lock_req_mode(a), PROTO_EXCLUSIVE);
}
END_TEST

/*
 * A cancelled upgrade (its timeout) leaves the shared hold as it was, and
 * lets in the shared requests it held back; try-only never waits.
 */
START_TEST(test_cancelled_upgrade_keeps_shared_and_lets_shared_waiters_in)
{
	struct lock_req	*a, *b, *s3;
	int64_t		 token;

	a = acq("db", PROTO_SHARED, 1);
	b = acq("db", PROTO_SHARED, 2);
	token = lock_req_token(a);
	ck_assert_int_eq(locktab_convert(tab, a, PROTO_EXCLUSIVE, 1),
	    -EWOULDBLOCK);
	ck_assert(!lock_req_converting(a));
	ck_assert_int_eq(locktab_convert(tab, a, PROTO_EXCLUSIVE, 0), 1);
	s3 = acq("db", PROTO_SHARED, 3);
	ck_assert(!lock_req_held(s3));
	locktab_convert_cancel(tab, a);
	ck_assert(!lock_req_converting(a));
	ck_assert_int_eq(lock_req_mode(a), PROTO_SHARED);
	ck_assert_int_eq(lock_req_token(a), token);
	ck_assert(lock_req_held(s3));
	ck_assert_uint_eq(nconverted, 0);
	locktab_release(tab, b);
	ck_assert_uint_eq(nconverted, 0);
}
END_TEST

/* A converter that lets go ends its upgrade; the queue goes on. */
START_TEST(test_released_converter_ends_its_upgrade)
{
	struct lock_req	*a, *b, *s3;

	a = acq("db", PROTO_SHARED, 1);
	b = acq("db", PROTO_SHARED, 2);
	ck_assert_int_eq(locktab_convert(tab, a, PROTO_EXCLUSIVE, 0), 1);
	s3 = acq("db", PROTO_SHARED, 3);
	locktab_release(tab, a);
	ck_assert(lock_req_held(s3));
	ck_assert_uint_eq(nconverted, 0);
	ck_assert_int_eq(locktab_convert(tab, b, PROTO_EXCLUSIVE, 0), 1);
}
END_TEST

/*
 * An upgrade an outsider holds up waits for the retry, shared all along;
 * one whose take the store loses fails as lost, and the waiters then
 * wait for a take of their own.
 */
START_TEST(test_upgrade_held_up_outside_waits_for_retry_or_is_lost)
{
	struct lock_req	*a, *e2;

	a = acq("db", PROTO_SHARED, 1);
	fake_store_set_busy(store, "db", 1);
	ck_assert_int_eq(locktab_convert(tab, a, PROTO_EXCLUSIVE, 0), 1);
	ck_assert_uint_eq(locktab_nconverting(tab), 1);
	locktab_retry(tab);
	ck_assert(lock_req_converting(a));
	ck_assert_int_eq(fake_store_mode(store, "db"), PROTO_SHARED);
	fake_store_set_busy(store, "db", 0);
	locktab_retry(tab);
	ck_assert_uint_eq(nconverted, 1);
	ck_assert_int_eq(lock_req_mode(a), PROTO_EXCLUSIVE);
	ck_assert_uint_eq(locktab_nconverting(tab), 0);
	ck_assert_int_eq(locktab_convert(tab, a, PROTO_SHARED, 0), 0);

	/* Lost: out of the holders at once, failed, and the queue waits. */
	e2 = acq("db", PROTO_EXCLUSIVE, 2);
	fake_store_set_busy(store, "db", 1);
	ck_assert_int_eq(locktab_convert(tab, a, PROTO_EXCLUSIVE, 0), 1);
	fake_store_lose_converts(store, 1);
	locktab_retry(tab);
	ck_assert_uint_eq(nfailures, 1);
	ck_assert_int_eq(failures[0].id, 1);
	ck_assert_int_eq(failures[0].error, LOCKTAB_E_LOST);
	ck_assert_uint_eq(locktab_nheld(tab), 0);
	ck_assert(!lock_req_held(e2));
	ck_assert(lock_blocked(locktab_find(tab, "db")));
	fake_store_lose_converts(store, 0);
	fake_store_set_busy(store, "db", 0);
	fake_store_end_wait(store, "db", 0);
	ck_assert(lock_req_held(e2));
}
END_TEST

/* An immediate upgrade whose take is lost says so; the caller releases. */
START_TEST(test_lone_upgrade_that_loses_the_take_says_lost)
{
	struct lock_req	*a;

	a = acq("db", PROTO_SHARED, 1);
	fake_store_lose_converts(store, 1);
	ck_assert_int_eq(locktab_convert(tab, a, PROTO_EXCLUSIVE, 0),
	    LOCKTAB_E_LOST);
	locktab_release(tab, a);
	ck_assert_ptr_null(locktab_find(tab, "db"));
}
END_TEST

/*
 * Deadlock detection: owners stand for connections; owner[i]'s arg is
 * i, so a cycle's steps name owners by number.
 */
#define NOWNERS 4
static struct lock_owner	*owner[NOWNERS];

static void
deadlock_setup(void)
{
	intptr_t	 i;

	convert_setup();
	for (i = 0; i < NOWNERS; i++)
		ck_assert_ptr_nonnull(owner[i] = locktab_owner_new((void *)i));
}

static void
deadlock_teardown(void)
{
	size_t	 i;

	teardown();
	for (i = 0; i < NOWNERS; i++) {
		locktab_owner_free(owner[i]);
		owner[i] = NULL;
	}
}

/* An acquire of owner o that must be granted or queue. */
static struct lock_req *
dacq(const char *name, enum proto_mode mode, intptr_t id, int o, int detect)
{
	struct lock_req	*req = NULL;

	ck_assert_int_eq(locktab_acquire_as(tab, name, NULL, mode, 0,
	    owner[o], detect, (void *)id, &req), 0);
	ck_assert_ptr_nonnull(req);
	return req;
}

/* Assert the i-th step of the last cycle: owner o waits for name. */
static void
assert_step(size_t i, intptr_t o, const char *name)
{
	const struct locktab_cycle_step	*steps;

	ck_assert_uint_gt(locktab_cycle(tab, &steps), i);
	ck_assert_int_eq((intptr_t)steps[i].owner, o);
	ck_assert_str_eq(steps[i].name, name);
}

/* A holds x, waits for y; B holds y, waits for x: B's wait fails. */
START_TEST(test_deadlock_of_two_fails_the_wait_that_closes_it)
{
	const struct locktab_cycle_step	*steps;
	struct lock_req	*ax, *ay, *by, *bx = NULL;

	ax = dacq("x", PROTO_EXCLUSIVE, 1, 0, 1);
	by = dacq("y", PROTO_EXCLUSIVE, 2, 1, 1);
	ay = dacq("y", PROTO_EXCLUSIVE, 3, 0, 1);
	ck_assert_uint_eq(locktab_ndetecting(tab), 1);
	ck_assert_int_eq(locktab_acquire_as(tab, "x", NULL, PROTO_EXCLUSIVE, 0,
	    owner[1], 1, (void *)4, &bx), LOCKTAB_E_CYCLE);
	ck_assert_ptr_null(bx);
	ck_assert_uint_eq(locktab_cycle(tab, &steps), 2);
	assert_step(0, 1, "x");
	assert_step(1, 0, "y");
	/* Nothing else moved: no callback, A still waits, B still holds. */
	ck_assert_uint_eq(nfailures, 0);
	ck_assert_uint_eq(ngrants, 2);
	ck_assert(!lock_req_held(ay));
	ck_assert_int_eq(lock_req_position(ay), 1);
	ck_assert_uint_eq(locktab_nwaiting(tab), 1);
	ck_assert_uint_eq(locktab_ndetecting(tab), 1);
	locktab_release(tab, by);
	assert_granted(2, 3);
	ck_assert_uint_eq(locktab_ndetecting(tab), 0);
	locktab_release(tab, ay);
	locktab_release(tab, ax);
}
END_TEST

/* Three connections in a ring: the last wait fails, naming all three. */
START_TEST(test_deadlock_of_three_names_the_ring)
{
	struct lock_req	*ax, *by, *cz, *ay, *bz, *cx = NULL;

	ax = dacq("x", PROTO_EXCLUSIVE, 1, 0, 1);
	by = dacq("y", PROTO_EXCLUSIVE, 2, 1, 1);
	cz = dacq("z", PROTO_EXCLUSIVE, 3, 2, 1);
	ay = dacq("y", PROTO_EXCLUSIVE, 4, 0, 1);
	bz = dacq("z", PROTO_EXCLUSIVE, 5, 1, 1);
	ck_assert_int_eq(locktab_acquire_as(tab, "x", NULL, PROTO_EXCLUSIVE, 0,
	    owner[2], 1, (void *)6, &cx), LOCKTAB_E_CYCLE);
	{
		const struct locktab_cycle_step	*steps;

		ck_assert_uint_eq(locktab_cycle(tab, &steps), 3);
	}
	assert_step(0, 2, "x");
	assert_step(1, 0, "y");
	assert_step(2, 1, "z");
	ck_assert_uint_eq(nfailures, 0);
	ck_assert_uint_eq(locktab_nwaiting(tab), 2);
	locktab_release(tab, cz);
	assert_granted(3, 5);
	locktab_release(tab, bz);
	locktab_release(tab, by);
	assert_granted(4, 4);
	locktab_release(tab, ay);
	locktab_release(tab, ax);
}
END_TEST

/*
 * Of the requests in the cycle that asked, the youngest fails, through
 * the failed callback, even when the wait that closes it did not ask.
 */
START_TEST(test_deadlock_fails_the_youngest_that_asked)
{
	struct lock_req	*ax, *by, *cz, *ay, *bz, *cx;

	ax = dacq("x", PROTO_EXCLUSIVE, 1, 0, 1);
	by = dacq("y", PROTO_EXCLUSIVE, 2, 1, 1);
	cz = dacq("z", PROTO_EXCLUSIVE, 3, 2, 1);
	ay = dacq("y", PROTO_EXCLUSIVE, 4, 0, 1);	/* asked, older */
	bz = dacq("z", PROTO_EXCLUSIVE, 5, 1, 1);	/* asked, younger */
	cx = dacq("x", PROTO_EXCLUSIVE, 6, 2, 0);	/* did not ask */
	ck_assert_uint_eq(nfailures, 1);
	ck_assert_int_eq(failures[0].id, 5);
	ck_assert_int_eq(failures[0].error, LOCKTAB_E_CYCLE);
	assert_step(0, 1, "z");
	assert_step(1, 2, "x");
	assert_step(2, 0, "y");
	/* The older one and the one that closed it still wait. */
	ck_assert(!lock_req_held(ay));
	ck_assert(!lock_req_held(cx));
	ck_assert_uint_eq(locktab_nwaiting(tab), 2);
	ck_assert_uint_eq(locktab_ndetecting(tab), 1);
	(void)bz;
	locktab_release(tab, by);
	assert_granted(3, 4);
	locktab_release(tab, ay);
	locktab_release(tab, ax);
	assert_granted(4, 6);
	locktab_release(tab, cx);
	locktab_release(tab, cz);
}
END_TEST

/* A(asks) holds x, waits for y; B holds y, then waits for x: A fails. */
START_TEST(test_deadlock_closed_by_a_wait_that_did_not_ask)
{
	struct lock_req	*ax, *by, *ay, *bx;

	ax = dacq("x", PROTO_EXCLUSIVE, 1, 0, 0);
	by = dacq("y", PROTO_EXCLUSIVE, 2, 1, 0);
	ay = dacq("y", PROTO_EXCLUSIVE, 3, 0, 1);
	bx = dacq("x", PROTO_EXCLUSIVE, 4, 1, 0);
	ck_assert_uint_eq(nfailures, 1);
	ck_assert_int_eq(failures[0].id, 3);
	ck_assert_int_eq(failures[0].error, LOCKTAB_E_CYCLE);
	assert_step(0, 0, "y");
	assert_step(1, 1, "x");
	(void)ay;
	ck_assert_uint_eq(locktab_ndetecting(tab), 0);
	ck_assert(!lock_req_held(bx));
	locktab_release(tab, ax);
	assert_granted(2, 4);
	locktab_release(tab, bx);
	locktab_release(tab, by);
}
END_TEST

/*
 * Nobody asked: nothing is counted, and a cycle is left alone; one that
 * asks later but is on no cycle itself does not break it either.
 */
START_TEST(test_deadlock_left_alone_when_nobody_in_it_asked)
{
	struct lock_req	*ax, *by, *ay, *bx, *cx;

	ax = dacq("x", PROTO_EXCLUSIVE, 1, 0, 0);
	by = dacq("y", PROTO_EXCLUSIVE, 2, 1, 0);
	ay = dacq("y", PROTO_EXCLUSIVE, 3, 0, 0);
	bx = dacq("x", PROTO_EXCLUSIVE, 4, 1, 0);
	ck_assert_uint_eq(locktab_ndetecting(tab), 0);
	ck_assert_uint_eq(nfailures, 0);
	ck_assert_uint_eq(locktab_nwaiting(tab), 2);
	/* C waits behind the cycle, but is on none. */
	cx = dacq("x", PROTO_EXCLUSIVE, 5, 2, 1);
	ck_assert_uint_eq(locktab_ndetecting(tab), 1);
	ck_assert_uint_eq(nfailures, 0);
	ck_assert_uint_eq(locktab_nwaiting(tab), 3);
	locktab_release(tab, cx);
	locktab_release(tab, bx);
	locktab_release(tab, ay);
	locktab_release(tab, by);
	locktab_release(tab, ax);
	ck_assert_uint_eq(locktab_ndetecting(tab), 0);
}
END_TEST

/* Requests without an owner are no part of the graph. */
START_TEST(test_deadlock_ignores_requests_without_owner)
{
	struct lock_req	*ax, *by, *ay, *bx;

	ax = acq("x", PROTO_EXCLUSIVE, 1);
	by = acq("y", PROTO_EXCLUSIVE, 2);
	ay = dacq("y", PROTO_EXCLUSIVE, 3, 0, 1);
	bx = acq("x", PROTO_EXCLUSIVE, 4);
	ck_assert_uint_eq(nfailures, 0);
	ck_assert_uint_eq(locktab_ndetecting(tab), 1);
	locktab_release(tab, bx);
	locktab_release(tab, ay);
	locktab_release(tab, by);
	locktab_release(tab, ax);
}
END_TEST

/*
 * Shared holders and a queued exclusive between them: A holds x shared,
 * B waits for x exclusive behind it, C (holding y) waits for x shared
 * behind B, so for B; A then waits for y: A -> C -> B -> A.
 */
START_TEST(test_deadlock_through_a_queued_exclusive_between_shared)
{
	const struct locktab_cycle_step	*steps;
	struct lock_req	*ax, *cy, *bx, *cx, *ay = NULL;

	ax = dacq("x", PROTO_SHARED, 1, 0, 1);
	cy = dacq("y", PROTO_EXCLUSIVE, 2, 2, 1);
	bx = dacq("x", PROTO_EXCLUSIVE, 3, 1, 1);
	cx = dacq("x", PROTO_SHARED, 4, 2, 1);
	ck_assert(!lock_req_held(cx));
	ck_assert_uint_eq(nfailures, 0);
	ck_assert_int_eq(locktab_acquire_as(tab, "y", NULL, PROTO_EXCLUSIVE, 0,
	    owner[0], 1, (void *)5, &ay), LOCKTAB_E_CYCLE);
	ck_assert_uint_eq(locktab_cycle(tab, &steps), 3);
	assert_step(0, 0, "y");
	assert_step(1, 2, "x");
	assert_step(2, 1, "x");
	ck_assert_uint_eq(nfailures, 0);
	locktab_release(tab, ax);
	assert_granted(2, 3);
	locktab_release(tab, bx);
	assert_granted(3, 4);
	locktab_release(tab, cx);
	locktab_release(tab, cy);
}
END_TEST

/*
 * Two shared holders with no exclusive between them wait for nobody:
 * A holds x shared and waits for y, C holds y and asks x shared, and is
 * granted, not failed.
 */
START_TEST(test_deadlock_shared_with_shared_is_no_edge)
{
	struct lock_req	*ax, *cy, *ay, *cx;

	ax = dacq("x", PROTO_SHARED, 1, 0, 1);
	cy = dacq("y", PROTO_EXCLUSIVE, 2, 2, 1);
	ay = dacq("y", PROTO_EXCLUSIVE, 3, 0, 1);
	cx = dacq("x", PROTO_SHARED, 4, 2, 1);
	ck_assert(lock_req_held(cx));
	ck_assert_uint_eq(nfailures, 0);
	locktab_release(tab, cx);
	locktab_release(tab, cy);
	assert_granted(3, 3);
	locktab_release(tab, ay);
	locktab_release(tab, ax);
}
END_TEST

/*
 * An upgrade that starts to wait closes a cycle: A and B hold x shared,
 * B holds y, A waits for y (asked); B's upgrade of x waits for A.  A's
 * wait fails, and B's upgrade goes through once A lets x go.
 */
START_TEST(test_deadlock_closed_by_a_waiting_upgrade)
{
	struct lock_req	*ax, *bx, *by, *ay;

	ax = dacq("x", PROTO_SHARED, 1, 0, 0);
	bx = dacq("x", PROTO_SHARED, 2, 1, 0);
	by = dacq("y", PROTO_EXCLUSIVE, 3, 1, 0);
	ay = dacq("y", PROTO_EXCLUSIVE, 4, 0, 1);
	ck_assert_int_eq(locktab_convert(tab, bx, PROTO_EXCLUSIVE, 0), 1);
	ck_assert_uint_eq(nfailures, 1);
	ck_assert_int_eq(failures[0].id, 4);
	ck_assert_int_eq(failures[0].error, LOCKTAB_E_CYCLE);
	assert_step(0, 0, "y");
	assert_step(1, 1, "x");
	(void)ay;
	ck_assert(lock_req_converting(bx));
	locktab_release(tab, ax);
	ck_assert_uint_eq(nconverted, 1);
	ck_assert_int_eq(lock_req_mode(bx), PROTO_EXCLUSIVE);
	locktab_release(tab, bx);
	locktab_release(tab, by);
}
END_TEST

/*
 * The conversion queue goes first: A and B hold x shared and A's upgrade
 * waits for B; B waits for y, held by C; C's shared request for x waits
 * for the upgrade, so for A: C -> A -> B -> C, and C's wait fails.
 */
START_TEST(test_deadlock_through_the_conversion_queue)
{
	const struct locktab_cycle_step	*steps;
	struct lock_req	*ax, *bx, *cy, *by, *cx = NULL;

	ax = dacq("x", PROTO_SHARED, 1, 0, 1);
	bx = dacq("x", PROTO_SHARED, 2, 1, 1);
	cy = dacq("y", PROTO_EXCLUSIVE, 3, 2, 1);
	ck_assert_int_eq(locktab_convert(tab, ax, PROTO_EXCLUSIVE, 0), 1);
	by = dacq("y", PROTO_EXCLUSIVE, 4, 1, 1);
	ck_assert_uint_eq(nfailures, 0);
	ck_assert_int_eq(locktab_acquire_as(tab, "x", NULL, PROTO_SHARED, 0,
	    owner[2], 1, (void *)5, &cx), LOCKTAB_E_CYCLE);
	ck_assert_uint_eq(locktab_cycle(tab, &steps), 3);
	assert_step(0, 2, "x");
	assert_step(1, 0, "x");
	assert_step(2, 1, "y");
	ck_assert(lock_req_converting(ax));
	locktab_release(tab, cy);
	assert_granted(3, 4);
	locktab_release(tab, by);
	locktab_release(tab, bx);
	ck_assert_uint_eq(nconverted, 1);
	locktab_release(tab, ax);
}
END_TEST

/* The failed request leaves its queue: those behind it move up. */
START_TEST(test_deadlock_failed_waiter_lets_the_queue_move)
{
	struct lock_req	*ax, *by, *ay, *dy, *bx;

	ax = dacq("x", PROTO_EXCLUSIVE, 1, 0, 1);
	by = dacq("y", PROTO_SHARED, 2, 1, 0);
	ay = dacq("y", PROTO_EXCLUSIVE, 3, 0, 1);	/* ahead of D */
	dy = dacq("y", PROTO_SHARED, 4, 3, 0);		/* behind A */
	ck_assert(!lock_req_held(dy));
	bx = dacq("x", PROTO_EXCLUSIVE, 5, 1, 0);
	ck_assert_uint_eq(nfailures, 1);
	ck_assert_int_eq(failures[0].id, 3);
	(void)ay;
	/* A's exclusive wait is gone: D joins B's shared hold. */
	ck_assert(lock_req_held(dy));
	assert_granted(2, 4);
	locktab_release(tab, ax);
	assert_granted(3, 5);
	locktab_release(tab, bx);
	locktab_release(tab, by);
	locktab_release(tab, dy);
}
END_TEST

/* A cycle of more owners than the steps kept: its whole length counts. */
START_TEST(test_deadlock_longer_than_the_steps_kept)
{
	struct lock_owner		*ring[LOCKTAB_CYCLE_MAX + 4];
	struct lock_req			*held[LOCKTAB_CYCLE_MAX + 4];
	struct lock_req			*waits[LOCKTAB_CYCLE_MAX + 4];
	const struct locktab_cycle_step	*steps;
	char				 names[LOCKTAB_CYCLE_MAX + 4][8];
	size_t				 n = LOCKTAB_CYCLE_MAX + 4, i;
	struct lock_req			*last = NULL;

	for (i = 0; i < n; i++) {
		snprintf(names[i], sizeof names[i], "n%zu", i);
		ck_assert_ptr_nonnull(ring[i] = locktab_owner_new(
		    (void *)(intptr_t)(100 + i)));
		ck_assert_int_eq(locktab_acquire_as(tab, names[i], NULL,
		    PROTO_EXCLUSIVE, 0, ring[i], 1, NULL, &held[i]), 0);
	}
	for (i = 0; i + 1 < n; i++)
		ck_assert_int_eq(locktab_acquire_as(tab, names[i + 1], NULL,
		    PROTO_EXCLUSIVE, 0, ring[i], 1, NULL, &waits[i]), 0);
	ck_assert_int_eq(locktab_acquire_as(tab, names[0], NULL,
	    PROTO_EXCLUSIVE, 0, ring[n - 1], 1, NULL, &last),
	    LOCKTAB_E_CYCLE);
	ck_assert_uint_eq(locktab_cycle(tab, &steps), n);
	assert_step(0, (intptr_t)(100 + n - 1), "n0");
	assert_step(1, 100, "n1");
	for (i = 0; i + 1 < n; i++)
		locktab_release(tab, waits[i]);
	for (i = 0; i < n; i++) {
		locktab_release(tab, held[i]);
		locktab_owner_free(ring[i]);
	}
}
END_TEST

static Suite *
locktab_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("locktab");
	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_exclusive_granted_at_once_with_first_token);
	tcase_add_test(tc, test_second_exclusive_queues_until_release);
	tcase_add_test(tc, test_exclusive_waiters_granted_in_fifo_order);
	tcase_add_test(tc, test_consecutive_shared_waiters_granted_together);
	tcase_add_test(tc, test_shared_granted_at_once_beside_shared_holders);
	tcase_add_test(tc,
	    test_shared_join_held_back_by_the_store_waits_for_joined);
	tcase_add_test(tc,
	    test_shared_batch_past_its_take_joins_as_the_store_lets);
	tcase_add_test(tc, test_shared_waits_behind_queued_exclusive);
	tcase_add_test(tc, test_try_only_on_held_lock_would_block);
	tcase_add_test(tc, test_try_only_on_free_lock_is_granted);
	tcase_add_test(tc, test_cancel_waiter_removes_it_from_queue);
	tcase_add_test(tc, test_store_told_as_each_waiter_queues_and_leaves);
	tcase_add_test(tc,
	    test_cancel_exclusive_head_lets_shared_run_join_holders);
	tcase_add_test(tc, test_lock_entry_disappears_when_empty);
	tcase_add_test(tc, test_counters_track_holders_waiters_and_grants);
	tcase_add_test(tc, test_tokens_strictly_increase_across_names);
	tcase_add_test(tc, test_granted_cb_may_release_just_granted_req);
	tcase_add_test(tc, test_granted_cb_may_release_another_of_its_batch);
	tcase_add_test(tc,
	    test_granted_cb_may_release_a_holder_of_another_lock);
	tcase_add_test(tc, test_iteration_visits_every_lock_and_request);
	tcase_add_test(tc, test_default_clock_is_realtime);
	tcase_add_test(tc,
	    test_take_granted_later_goes_to_the_head_in_fifo_order);
	tcase_add_test(tc, test_take_granted_later_brings_the_shared_run_along);
	tcase_add_test(tc,
	    test_take_failed_later_fails_only_the_head_it_was_for);
	tcase_add_test(tc,
	    test_take_failed_later_fails_a_shared_head_with_its_run);
	tcase_add_test(tc,
	    test_a_failed_callback_may_look_at_its_lock_and_release_it);
	tcase_add_test(tc,
	    test_a_failed_request_released_before_its_report_is_dropped);
	tcase_add_test(tc, test_cancelled_wait_closes_the_lock_at_once);
	tcase_add_test(tc, test_try_only_never_asks_the_store_to_wait);
	tcase_add_test(tc,
	    test_idle_lock_keeps_its_state_until_the_second_expiry);
	suite_add_tcase(s, tc);

	tc = tcase_create("contended");
	tcase_add_checked_fixture(tc, setup_contended, teardown);
	tcase_add_test(tc, test_contended_told_once_when_the_first_waiter_queues);
	tcase_add_test(tc, test_contended_not_told_to_holders_that_did_not_ask);
	tcase_add_test(tc,
	    test_contended_queue_changes_told_at_most_once_a_second);
	tcase_add_test(tc,
	    test_contended_shared_holders_that_asked_are_each_told);
	tcase_add_test(tc,
	    test_contended_a_grant_with_a_queue_behind_is_told_after_it);
	tcase_add_test(tc, test_contended_an_emptied_queue_tells_nobody);
	tcase_add_test(tc,
	    test_contended_held_back_report_dies_with_its_holder);
	tcase_add_test(tc, test_contended_restored_holder_keeps_its_rate);
	tcase_add_test(tc, test_contended_without_a_callback_tells_nobody);
	suite_add_tcase(s, tc);

	tc = tcase_create("convert");
	tcase_add_checked_fixture(tc, convert_setup, teardown);
	tcase_add_test(tc,
	    test_downgrade_keeps_token_and_grants_shared_head_waiters);
	tcase_add_test(tc, test_lone_upgrade_is_at_once_with_a_higher_token);
	tcase_add_test(tc,
	    test_upgrade_waits_ahead_of_the_queue_keeping_its_shared_hold);
	tcase_add_test(tc,
	    test_second_upgrade_is_a_deadlock_and_keeps_its_shared_hold);
	tcase_add_test(tc,
	    test_cancelled_upgrade_keeps_shared_and_lets_shared_waiters_in);
	tcase_add_test(tc, test_released_converter_ends_its_upgrade);
	tcase_add_test(tc,
	    test_upgrade_held_up_outside_waits_for_retry_or_is_lost);
	tcase_add_test(tc, test_lone_upgrade_that_loses_the_take_says_lost);
	suite_add_tcase(s, tc);
	tc = tcase_create("deadlock");
	tcase_add_checked_fixture(tc, deadlock_setup, deadlock_teardown);
	tcase_add_test(tc, test_deadlock_of_two_fails_the_wait_that_closes_it);
	tcase_add_test(tc, test_deadlock_of_three_names_the_ring);
	tcase_add_test(tc, test_deadlock_fails_the_youngest_that_asked);
	tcase_add_test(tc, test_deadlock_closed_by_a_wait_that_did_not_ask);
	tcase_add_test(tc, test_deadlock_left_alone_when_nobody_in_it_asked);
	tcase_add_test(tc, test_deadlock_ignores_requests_without_owner);
	tcase_add_test(tc,
	    test_deadlock_through_a_queued_exclusive_between_shared);
	tcase_add_test(tc, test_deadlock_shared_with_shared_is_no_edge);
	tcase_add_test(tc, test_deadlock_closed_by_a_waiting_upgrade);
	tcase_add_test(tc, test_deadlock_through_the_conversion_queue);
	tcase_add_test(tc, test_deadlock_failed_waiter_lets_the_queue_move);
	tcase_add_test(tc, test_deadlock_longer_than_the_steps_kept);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return unit_run_suite(locktab_suite());
}
