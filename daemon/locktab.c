/*
 * The lock table: named locks, their holders and FIFO queues of waiters,
 * and fencing tokens.  Pure logic: no sockets, no JSON, no event loop, no
 * files; what a lock is underneath belongs to the table's lock store
 * (locktab.h), such as the file store (store_file.c).
 *
 * Grant rules.  A request is granted at once only if its lock's queue is
 * empty and it is compatible with the holders (none, or all shared and the
 * request shared); otherwise it joins the tail of the queue.  Whenever the
 * holders or the queue change, the head of the queue is granted if it can
 * be: a shared head brings along the whole run of shared waiters behind
 * it, an exclusive head goes alone, and a shared request never overtakes
 * a queued exclusive one, so writers do not starve.
 *
 * The store.  Before a grant the store takes the lock in the head's mode;
 * under shared holders it has it shared already.  If the take fails,
 * someone outside the table has the lock, and the lock is "blocked": the
 * store is asked to wait, and its waiters stay queued until the store
 * reports the take (locktab_taken), or locktab_retry (or a change to the
 * queue) finds it free.  A wait the store reports failed fails the
 * requests it was for.  An exclusive-to-exclusive handoff keeps the take,
 * so nobody outside can slip in between two holders.
 *
 * Idle locks.  A lock nobody holds or awaits any more drops its take at
 * once but keeps its store state open for a while, so a name used again
 * soon costs the store no open and close.  Idle locks are invisible to
 * everything but the next acquire, which first asks the store whether the
 * state is still current; locktab_expire closes those idle since before
 * its previous call, and at most LOCK_IDLE_MAX stay open.  A lock left
 * while blocked is closed at once.
 *
 * Reentrancy.  Grants are reported through granted_cb only after every
 * grant of the operation has been applied and the table is consistent;
 * callbacks run from a table-wide pending list, one at a time, in grant
 * order.  A callback may call any locktab_ or lock_ function except
 * locktab_free: it may acquire, retry, or release any request, including
 * the one just granted.  A request released before its callback ran gets
 * no callback.  The callback must not keep lock or lock_req pointers that
 * a release it makes may free: a released request is kept for reuse by
 * the next acquire, so a stale pointer may name another request.  Failed
 * requests are reported the same way, after the grants, through
 * failed_cb; the table frees each when its callback returns.
 *
 * Contended reports.  A lock counts its holders that asked to be told of
 * waiters (ncontend), so that a queue change costs a request that did not
 * ask one test of that count.  A change under such a holder puts the lock
 * on the table's contended_now list (once); locktab_dispatch reports it
 * after the grants, so a holder hears of its grant first.  A holder told
 * less than LOCKTAB_CONTENDED_EVERY seconds ago, or whose grant is not
 * reported yet, is held back: the lock moves to contended_later, which
 * locktab_contended_tick (every second) tries again.
 */

#include <sys/queue.h>

#include <errno.h>
#include <search.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "locktab.h"

/* Spare requests are poisoned under ASan, so a use after release is caught. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LOCKTAB_ASAN
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define LOCKTAB_ASAN
#endif
#ifdef LOCKTAB_ASAN
#include <sanitizer/asan_interface.h>
#else
#define ASAN_POISON_MEMORY_REGION(addr, size)	((void)(addr), (void)(size))
#define ASAN_UNPOISON_MEMORY_REGION(addr, size)	((void)(addr), (void)(size))
#endif

#define LOCK_IDLE_MAX 1024	/* idle locks whose state stays open */
#define REQ_SPARE_MAX 64	/* freed requests kept for reuse */

/* Which contended list a lock is on. */
enum lock_contended {
	CONTENDED_NONE = 0,
	CONTENDED_NOW,		/* for the next locktab_dispatch */
	CONTENDED_LATER		/* held back, for locktab_contended_tick */
};

struct lock_req {
	struct lock		*lock;
	enum proto_mode		 mode;
	int			 held;
	int			 pending;	/* callback not yet run */
	int			 error;		/* failed with -errno */
	int			 converting;	/* an upgrade of it waits */
	int			 converted;	/* pending: an upgrade ended */
	int			 convert_error;	/* its result */
	int			 notify;	/* asked for contended reports */
	double			 told_at;	/* last report; 0: none */
	int64_t			 token;		/* 0 while waiting */
	double			 since;
	void			*arg;
	struct lock_owner	*owner;		/* its connection, or NULL */
	int			 detect;	/* asked for deadlock detection */
	int			 owner_linked;	/* on owner->waits */
	uint64_t		 wait_seq;	/* when it queued: the table's */
	TAILQ_ENTRY(lock_req)	 entry;		/* holders or waiters */
	TAILQ_ENTRY(lock_req)	 pending_entry;	/* pending or failed */
	TAILQ_ENTRY(lock_req)	 owner_entry;	/* owner->waits */
};
TAILQ_HEAD(lock_reqs, lock_req);

/*
 * A node of the wait-for graph: one connection, with its waiting
 * requests and its waiting upgrade.  The rest is the search's, valid
 * while mark is the table's search epoch.
 */
struct lock_owner {
	void			*arg;
	struct lock_reqs	 waits;
	unsigned		 mark;		/* search epoch it was seen */
	unsigned		 scc_mark;	/* in the root's component */
	unsigned		 path_mark;	/* reached by the cycle's walk */
	int			 on_stack;
	size_t			 index, low;
	size_t			 edge_first, edge_end, edge_next;
	struct lock_owner	*path_prev;	/* the walk's, back to start */
	struct lock_req		*path_via;	/* the wait of path_prev */
};

/* One edge of the wait-for graph: via's owner waits for to. */
struct wait_edge {
	struct lock_owner	*to;
	struct lock_req		*via;
};

struct lock {
	const char		*name;		/* first: lock_cmp */
	struct locktab		*tab;
	void			*state;		/* the store's, after lock */
	int			 blocked;	/* the store waits to take it */
	int			 idle;		/* no holders, no waiters */
	unsigned		 idle_epoch;	/* locktab epoch it went idle */
	enum proto_mode		 blocked_mode;	/* what the head waits for */
	struct lock_reqs	 holders;	/* grant order */
	struct lock_reqs	 waiters;	/* FIFO */
	size_t			 nholders;
	size_t			 nwaiters;
	size_t			 nfailed;	/* failed requests not yet freed */
	struct lock_req		*converter;	/* a holder's upgrade waits */
	int			 convert_blocked; /* on the store, not holders */
	size_t			 ncontend;	/* holders with notify */
	enum lock_contended	 contended;	/* on which list */
	TAILQ_ENTRY(lock)	 entry;
	TAILQ_ENTRY(lock)	 blocked_entry;
	TAILQ_ENTRY(lock)	 converting_entry;
	TAILQ_ENTRY(lock)	 contended_entry;
};
TAILQ_HEAD(locks, lock);

/* Where a lock's store state starts in its allocation. */
#define LOCK_STATE_OFFSET \
	((sizeof(struct lock) + alignof(max_align_t) - 1) & \
	~(alignof(max_align_t) - 1))

struct locktab {
	struct lock_store	*store;
	const struct lock_store_ops *ops;	/* the store's */
	int			 token_starved;	/* a waiter held back */
	locktab_granted_cb	 granted_cb;
	locktab_failed_cb	 failed_cb;
	locktab_converted_cb	 converted_cb;
	locktab_clock		 clock;
	locktab_contended_cb	 contended_cb;
	locktab_clock		 contended_clock;	/* monotonic */
	struct locks		 contended_now;
	struct locks		 contended_later;
	size_t			 ncontended_later;
	void			*root;		/* tsearch(3) tree */
	struct locks		 locks;
	struct locks		 blocked;
	struct locks		 converting;	/* upgrades the store holds up */
	struct locks		 idle;		/* oldest first */
	struct lock_reqs	 pending;	/* grants to report */
	struct lock_reqs	 failed;	/* failures to report */
	struct lock_req		*spare[REQ_SPARE_MAX]; /* freed, for reuse */
	size_t			 nspare;
	unsigned		 epoch;		/* locktab_expire calls */
	size_t			 nidle;
	size_t			 nblocked;
	size_t			 nconverting;
	size_t			 nheld;
	size_t			 nwaiting;
	uint64_t		 granted_total;
	size_t			 ndetect;	/* waiters that asked */
	uint64_t		 wait_seq;	/* queued so far */
	unsigned		 search_epoch;
	struct wait_edge	*edges;		/* the search's, reused */
	size_t			 edges_size;
	struct lock_owner	**nodes;	/* its component stack */
	size_t			 nodes_size;
	struct lock_owner	**calls;	/* its visits, then its walk */
	size_t			 calls_size;
	struct locktab_cycle_step cycle[LOCKTAB_CYCLE_MAX];
	size_t			 cycle_len;	/* the last cycle's, whole */
};

static void	lock_contended_unlink(struct lock *);

/* Return the realtime clock in seconds, the default clock. */
static double
locktab_realtime(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Return the monotonic clock in seconds, the contended reports' default. */
static double
locktab_monotonic(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * Order locks by name.  A lock's first member is its name pointer, so a
 * pointer to a lock and a pointer to a name pointer are both valid keys.
 */
static int
lock_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Create a lock entry for name and have the store open it.  The store's
 * state and the name share the lock's allocation.
 */
static int
lock_new_with(struct locktab *tab, const char *name, void *object, int kept,
    struct lock **ret_lock)
{
	struct lock	*lock;
	size_t		 len = strlen(name), state_size = tab->ops->lock_size;
	char		*name_copy;
	int		 error;

	lock = calloc(1, LOCK_STATE_OFFSET + state_size + len + 1);
	if (lock == NULL)
		return -ENOMEM;
	lock->state = (char *)lock + LOCK_STATE_OFFSET;
	name_copy = (char *)lock->state + state_size;
	memcpy(name_copy, name, len + 1);
	lock->name = name_copy;
	lock->tab = tab;
	TAILQ_INIT(&lock->holders);
	TAILQ_INIT(&lock->waiters);
	if ((error = (kept ? tab->ops->restore : tab->ops->open)(tab->store,
	    lock, lock->name, object, lock->state)) != 0) {
		free(lock);
		return error;
	}
	if (tsearch(lock, &tab->root, lock_cmp) == NULL) {
		tab->ops->close(lock->state);
		free(lock);
		return -ENOMEM;
	}
	TAILQ_INSERT_TAIL(&tab->locks, lock, entry);
	*ret_lock = lock;
	return 0;
}

static int
lock_new(struct locktab *tab, const char *name, void *object,
    struct lock **ret_lock)
{
	return lock_new_with(tab, name, object, 0, ret_lock);
}

/*
 * Mark a lock blocked (with the mode its head waits for), or no longer
 * blocked, and have the store start, change or end its wait to match.
 */
static void
lock_set_blocked(struct lock *lock, int blocked, enum proto_mode mode)
{
	struct locktab	*tab = lock->tab;

	if (lock->blocked == blocked &&
	    (!blocked || lock->blocked_mode == mode))
		return;
	if (lock->blocked != blocked) {
		if (blocked) {
			TAILQ_INSERT_TAIL(&tab->blocked, lock, blocked_entry);
			tab->nblocked++;
		} else {
			TAILQ_REMOVE(&tab->blocked, lock, blocked_entry);
			tab->nblocked--;
		}
	}
	lock->blocked = blocked;
	lock->blocked_mode = mode;
	if (blocked)
		tab->ops->wait(lock->state, mode);
	else
		tab->ops->cancel(lock->state);
}

/* Remove an empty lock from the table and have the store close it. */
static void
lock_free(struct lock *lock)
{
	struct locktab	*tab = lock->tab;

	lock_set_blocked(lock, 0, PROTO_EXCLUSIVE);
	tdelete(lock, &tab->root, lock_cmp);
	lock_contended_unlink(lock);
	if (lock->idle) {
		TAILQ_REMOVE(&tab->idle, lock, entry);
		tab->nidle--;
	} else
		TAILQ_REMOVE(&tab->locks, lock, entry);
	tab->ops->close(lock->state);
	free(lock);
}

/*
 * A lock nobody holds or awaits any more: drop its take, and keep its
 * state for the next acquire unless someone outside was in the way.
 */
static void
lock_retire(struct lock *lock)
{
	struct locktab	*tab = lock->tab;

	if (lock->blocked) {
		lock_free(lock);
		return;
	}
	lock_contended_unlink(lock);
	tab->ops->drop(lock->state);
	TAILQ_REMOVE(&tab->locks, lock, entry);
	TAILQ_INSERT_TAIL(&tab->idle, lock, entry);
	lock->idle = 1;
	lock->idle_epoch = tab->epoch;
	if (++tab->nidle > LOCK_IDLE_MAX)
		lock_free(TAILQ_FIRST(&tab->idle));
}

/*
 * Before a lock nobody holds is granted anew: have the store make sure
 * its state still stands for the name.  Returns 0 if it does, or -1 if
 * the store cannot make it so; the lock then waits, blocked, for the
 * store or the retry.
 */
static int
lock_refresh(struct lock *lock)
{
	struct lock_req	*head;
	int		 rc;

	if ((rc = lock->tab->ops->refresh(lock->state)) == 0)
		return 0;
	/* A wait on what the state was would hand back a take of that. */
	lock_set_blocked(lock, 0, PROTO_EXCLUSIVE);
	if (rc == LOCK_STORE_MOVED)
		return 0;
	/* Anew, so that a wait starts on the name even if one just ended. */
	head = TAILQ_FIRST(&lock->waiters);
	lock_set_blocked(lock, 1, head != NULL ? head->mode : PROTO_EXCLUSIVE);
	return -1;
}

/*
 * Put an idle lock back in use, or free it if the store says its state
 * is no longer current; returns the lock, or NULL when it was freed.
 */
static struct lock *
lock_revive(struct lock *lock)
{
	struct locktab	*tab = lock->tab;

	if (!tab->ops->current(lock->state)) {
		lock_free(lock);
		return NULL;
	}
	TAILQ_REMOVE(&tab->idle, lock, entry);
	tab->nidle--;
	TAILQ_INSERT_TAIL(&tab->locks, lock, entry);
	lock->idle = 0;
	return lock;
}

/* Return the lock of that name, idle or not, or NULL. */
static struct lock *
lock_lookup(struct locktab *tab, const char *name)
{
	void	*node;

	if ((node = tfind(&name, &tab->root, lock_cmp)) == NULL)
		return NULL;
	return *(struct lock **)node;
}

/*
 * Return nonzero if a request of mode may join the holders right now: a
 * holder's waiting upgrade comes first, so nobody joins past it.
 */
static int
lock_compatible(struct lock *lock, enum proto_mode mode)
{
	struct lock_req	*holder;

	if ((holder = TAILQ_FIRST(&lock->holders)) == NULL)
		return 1;
	if (lock->converter != NULL)
		return 0;
	return holder->mode == PROTO_SHARED && mode == PROTO_SHARED;
}

/* Take a lock off the contended list it is on, if any. */
static void
lock_contended_unlink(struct lock *lock)
{
	struct locktab	*tab = lock->tab;

	if (lock->contended == CONTENDED_NOW)
		TAILQ_REMOVE(&tab->contended_now, lock, contended_entry);
	else if (lock->contended == CONTENDED_LATER) {
		TAILQ_REMOVE(&tab->contended_later, lock, contended_entry);
		tab->ncontended_later--;
	}
	lock->contended = CONTENDED_NONE;
}

/* The lock's queue changed under a holder that asked: report it soon. */
static void
lock_contended_mark(struct lock *lock)
{
	if (lock->contended != CONTENDED_NONE)
		return;
	lock->contended = CONTENDED_NOW;
	TAILQ_INSERT_TAIL(&lock->tab->contended_now, lock, contended_entry);
}

/*
 * Tell each holder of the lock that asked how its queue stands now, but
 * those told too recently or not yet told of their grant: for them the
 * lock waits on contended_later.  An empty queue tells nobody.
 */
static void
lock_contended_report(struct lock *lock, double now)
{
	struct locktab	*tab = lock->tab;
	struct lock_req	*req, *first = TAILQ_FIRST(&lock->waiters);
	int		 later = 0;

	lock_contended_unlink(lock);
	if (first == NULL || lock->ncontend == 0 || tab->contended_cb == NULL)
		return;
	TAILQ_FOREACH(req, &lock->holders, entry) {
		if (!req->notify)
			continue;
		if (req->pending || (req->told_at != 0 &&
		    now - req->told_at < LOCKTAB_CONTENDED_EVERY)) {
			later = 1;
			continue;
		}
		req->told_at = now;
		tab->contended_cb(req, lock->nwaiters, first, req->arg);
	}
	if (later) {
		lock->contended = CONTENDED_LATER;
		TAILQ_INSERT_TAIL(&tab->contended_later, lock,
		    contended_entry);
		tab->ncontended_later++;
	}
}

/*
 * Put a request that starts to wait (queued, or an upgrade) on its
 * owner's list of waits, counting it if it asked for detection.
 */
static void
owner_link(struct locktab *tab, struct lock_req *req)
{
	if (req->owner == NULL || req->owner_linked)
		return;
	TAILQ_INSERT_TAIL(&req->owner->waits, req, owner_entry);
	req->owner_linked = 1;
	if (req->detect && !req->held)
		tab->ndetect++;
}

/* Take a request that no longer waits off its owner's list of waits. */
static void
owner_unlink(struct locktab *tab, struct lock_req *req)
{
	if (!req->owner_linked)
		return;
	TAILQ_REMOVE(&req->owner->waits, req, owner_entry);
	req->owner_linked = 0;
	if (req->detect && !req->held)
		tab->ndetect--;
}

/* Append a request to the lock's queue. */
static void
lock_enqueue(struct lock *lock, struct lock_req *req)
{
	req->held = 0;
	req->token = 0;
	req->since = lock->tab->clock();
	TAILQ_INSERT_TAIL(&lock->waiters, req, entry);
	lock->nwaiters++;
	lock->tab->nwaiting++;
	req->wait_seq = ++lock->tab->wait_seq;
	owner_link(lock->tab, req);
	if (lock->tab->ops->queued != NULL)
		lock->tab->ops->queued(lock->state, req, req->mode);
}

/* Take a request out of the lock's queue. */
static void
lock_dequeue(struct lock *lock, struct lock_req *req)
{
	TAILQ_REMOVE(&lock->waiters, req, entry);
	lock->nwaiters--;
	lock->tab->nwaiting--;
	owner_unlink(lock->tab, req);
	if (lock->tab->ops->left != NULL)
		lock->tab->ops->left(lock->state, req);
	if (lock->ncontend > 0)
		lock_contended_mark(lock);
}

/*
 * The waiter that joins the batch of a head of mode next, or NULL: a
 * shared head brings the shared run behind it, an exclusive one nobody.
 */
static struct lock_req *
lock_batch_next(struct lock *lock, enum proto_mode mode)
{
	struct lock_req	*req;

	if (mode != PROTO_SHARED || (req = TAILQ_FIRST(&lock->waiters)) ==
	    NULL || req->mode != PROTO_SHARED)
		return NULL;
	return req;
}

/* Whether the store lets a request in mode join the holders now. */
static int
lock_join(struct lock *lock, enum proto_mode mode)
{
	if (lock->tab->ops->join == NULL)
		return 0;
	return lock->tab->ops->join(lock->state, mode);
}

/* Make a request a holder and queue its granted callback. */
static void
lock_hold(struct lock *lock, struct lock_req *req)
{
	struct locktab	*tab = lock->tab;

	req->held = 1;
	req->token = tab->store->next_token++;
	req->since = tab->clock();
	TAILQ_INSERT_TAIL(&lock->holders, req, entry);
	lock->nholders++;
	tab->nheld++;
	tab->granted_total++;
	if (req->notify) {
		lock->ncontend++;
		if (lock->nwaiters > 0)
			lock_contended_mark(lock);
	}
	req->pending = 1;
	TAILQ_INSERT_TAIL(&tab->pending, req, pending_entry);
}

/*
 * Grant what the head of the queue allows.  One batch is all there can
 * be: after an exclusive grant nothing else fits, and a shared grant takes
 * every shared waiter up to the next exclusive one, which must then wait.
 * Only the callbacks are left for locktab_dispatch.
 */
static void
lock_grant(struct lock *lock)
{
	struct lock_store	*store = lock->tab->store;
	struct lock_req		*req;
	enum proto_mode		 mode;

	if ((req = TAILQ_FIRST(&lock->waiters)) == NULL)
		return;
	if (!lock_compatible(lock, req->mode))
		return;
	mode = req->mode;
	/* Under shared holders the store has it shared: it may let join. */
	if (lock->nholders == 0 && lock->tab->ops->take(lock->state,
	    mode) != 0) {
		lock_set_blocked(lock, 1, mode);
		return;
	}
	if (lock->nholders > 0 && lock_join(lock, mode) != 0)
		return;
	lock_set_blocked(lock, 0, mode);
	do {
		/* Out of tokens: keep the take, grant on a higher limit. */
		if (store->next_token > store->token_limit) {
			lock->tab->token_starved = 1;
			return;
		}
		lock_dequeue(lock, req);
		lock_hold(lock, req);
	} while ((req = lock_batch_next(lock, mode)) != NULL &&
	    lock_join(lock, mode) == 0);
}

/*
 * The store cannot take a blocked lock for the head of its queue: fail
 * the requests its wait was for, the batch the head would have brought
 * along, then let the next head try; an emptied lock is closed.
 */
static void
lock_fail(struct lock *lock, int error)
{
	struct locktab	*tab = lock->tab;
	struct lock_req	*req = TAILQ_FIRST(&lock->waiters);
	enum proto_mode	 mode = req->mode;

	lock_set_blocked(lock, 0, mode);
	do {
		lock_dequeue(lock, req);
		req->error = error;
		req->pending = 1;
		lock->nfailed++;
		TAILQ_INSERT_TAIL(&tab->failed, req, pending_entry);
	} while ((req = lock_batch_next(lock, mode)) != NULL);
	/* An emptied lock is closed once its failed requests are freed. */
	if (lock->nwaiters > 0)
		lock_grant(lock);
}

/*
 * Run the granted callbacks of every pending grant, in grant order, then
 * the contended reports the operation made.
 */
static void
locktab_dispatch(struct locktab *tab)
{
	struct lock_req	*req;
	struct lock	*lock;
	double		 now;

	/* Reread the head each time: a callback may change the list. */
	while ((req = TAILQ_FIRST(&tab->pending)) != NULL) {
		TAILQ_REMOVE(&tab->pending, req, pending_entry);
		req->pending = 0;
		if (req->converted) {
			req->converted = 0;
			if (tab->converted_cb != NULL)
				tab->converted_cb(req, req->convert_error,
				    req->arg);
		} else if (tab->granted_cb != NULL)
			tab->granted_cb(req, req->arg);
	}
	if (TAILQ_EMPTY(&tab->contended_now))
		return;
	now = tab->contended_clock();
	while ((lock = TAILQ_FIRST(&tab->contended_now)) != NULL)
		lock_contended_report(lock, now);
}

/* A zeroed request, reused if one is spare: a cycle then needs no malloc. */
static struct lock_req *
req_new(struct locktab *tab)
{
	struct lock_req	*req;

	if (tab->nspare == 0)
		return calloc(1, sizeof *req);
	req = tab->spare[--tab->nspare];
	ASAN_UNPOISON_MEMORY_REGION(req, sizeof *req);
	memset(req, 0, sizeof *req);
	return req;
}

/* Free a request, or keep it for the next acquire. */
static void
req_free(struct locktab *tab, struct lock_req *req)
{
	if (tab->nspare == REQ_SPARE_MAX) {
		free(req);
		return;
	}
	ASAN_POISON_MEMORY_REGION(req, sizeof *req);
	tab->spare[tab->nspare++] = req;
}

/*
 * Free a failed request; the last one of an emptied lock closes the
 * lock, which until then stays for the failed callbacks to look at.
 */
static void
lock_failed_free(struct locktab *tab, struct lock_req *req)
{
	struct lock	*lock = req->lock;

	req_free(tab, req);
	if (--lock->nfailed == 0 && lock->nholders == 0 &&
	    lock->nwaiters == 0)
		lock_free(lock);
}

/*
 * Run the failed callbacks of every failed request, then free each.  A
 * request in its callback is failed but no longer pending, so that a
 * locktab_release of it from there leaves the freeing to this loop.
 */
static void
locktab_report_failed(struct locktab *tab)
{
	struct lock_req	*req;

	while ((req = TAILQ_FIRST(&tab->failed)) != NULL) {
		TAILQ_REMOVE(&tab->failed, req, pending_entry);
		req->pending = 0;
		if (tab->failed_cb != NULL)
			tab->failed_cb(req, req->error, req->arg);
		lock_failed_free(tab, req);
	}
}

/*
 * Create an empty lock table over a store, which it then uses alone.
 * Grants get the store's tokens from its next_token on; a NULL clock is
 * the realtime clock.
 */
struct locktab *
locktab_new(struct lock_store *store, locktab_granted_cb granted_cb,
    locktab_failed_cb failed_cb, locktab_clock clock)
{
	struct locktab	*tab;

	if ((tab = calloc(1, sizeof *tab)) == NULL)
		return NULL;
	tab->store = store;
	tab->ops = store->ops;
	tab->granted_cb = granted_cb;
	tab->failed_cb = failed_cb;
	tab->clock = clock != NULL ? clock : locktab_realtime;
	tab->root = NULL;
	TAILQ_INIT(&tab->locks);
	TAILQ_INIT(&tab->blocked);
	TAILQ_INIT(&tab->converting);
	TAILQ_INIT(&tab->idle);
	TAILQ_INIT(&tab->pending);
	TAILQ_INIT(&tab->failed);
	TAILQ_INIT(&tab->contended_now);
	TAILQ_INIT(&tab->contended_later);
	tab->contended_clock = locktab_monotonic;
	store->tab = tab;
	return tab;
}

/*
 * Report contended locks through cb, timed by clock (NULL: the monotonic
 * clock).  Without a callback no holder is told.
 */
void
locktab_set_contended(struct locktab *tab, locktab_contended_cb cb,
    locktab_clock clock)
{
	tab->contended_cb = cb;
	tab->contended_clock = clock != NULL ? clock : locktab_monotonic;
}

/*
 * Try again the contended reports held back, called every second (and
 * make any not made yet); each lock held back now is tried once.
 */
void
locktab_contended_tick(struct locktab *tab)
{
	struct lock	*lock;
	size_t		 n = tab->ncontended_later;
	double		 now;

	if (n == 0 && TAILQ_EMPTY(&tab->contended_now))
		return;
	now = tab->contended_clock();
	while ((lock = TAILQ_FIRST(&tab->contended_now)) != NULL)
		lock_contended_report(lock, now);
	while (n-- > 0 && (lock = TAILQ_FIRST(&tab->contended_later)) != NULL)
		lock_contended_report(lock, now);
}

/* Free a lock table, its locks and requests, without any callback. */
void
locktab_free(struct locktab *tab)
{
	struct lock	*lock;
	struct lock_req	*req;

	if (tab == NULL)
		return;
	while ((lock = TAILQ_FIRST(&tab->locks)) != NULL) {
		while ((req = TAILQ_FIRST(&lock->holders)) != NULL) {
			TAILQ_REMOVE(&lock->holders, req, entry);
			free(req);
		}
		while ((req = TAILQ_FIRST(&lock->waiters)) != NULL) {
			TAILQ_REMOVE(&lock->waiters, req, entry);
			free(req);
		}
		lock_free(lock);
	}
	while ((req = TAILQ_FIRST(&tab->failed)) != NULL) {
		TAILQ_REMOVE(&tab->failed, req, pending_entry);
		free(req);
	}
	locktab_close_idle(tab);
	while (tab->nspare > 0) {
		req = tab->spare[--tab->nspare];
		ASAN_UNPOISON_MEMORY_REGION(req, sizeof *req);
		free(req);
	}
	free(tab->edges);
	free(tab->nodes);
	free(tab->calls);
	tab->store->tab = NULL;
	free(tab);
}

/*
 * Deadlock detection.  The wait-for graph's nodes are owners (one per
 * connection); an owner waits for the owners of:
 *  - for each of its waiting requests W on lock L: L's holders that W
 *    is incompatible with (all, if either is exclusive), L's waiting
 *    upgrade (which goes first), and the waiters ahead of W that W is
 *    incompatible with (FIFO: they are granted first);
 *  - for its waiting upgrade on L: L's other holders.
 * Only a new wait adds edges (grants and releases only take them away),
 * so a new cycle goes through the owner whose wait just started: the
 * search runs from it, and only while some waiter asked (ndetect).  It
 * is Tarjan's, iterative, over the part of the graph that owner reaches:
 * edges are gathered per owner as it is first seen, into an array the
 * table keeps, so it allocates nothing per search but growth.  Any edge
 * inside the start's strongly connected component lies on a cycle; of
 * the waiting requests that asked and whose edge does, the youngest
 * (latest queued) fails, and a walk inside the component from its
 * blocker back to it gives the cycle to name.
 */

/* Make room for n more entries in a search array; -1 if out of memory. */
static int
search_reserve(void **array, size_t *size, size_t used, size_t n,
    size_t elem)
{
	size_t	 want = *size > 0 ? *size : 16;
	void	*p;

	if (used + n <= *size)
		return 0;
	while (want < used + n)
		want *= 2;
	if ((p = realloc(*array, want * elem)) == NULL)
		return -1;
	*array = p;
	*size = want;
	return 0;
}

/* Add the edge from via's owner to to's, unless to is nobody or itself. */
static int
edge_add(struct locktab *tab, size_t *n, struct lock_req *via,
    struct lock_req *to)
{
	if (to->owner == NULL || to->owner == via->owner)
		return 0;
	if (search_reserve((void **)&tab->edges, &tab->edges_size, *n, 1,
	    sizeof *tab->edges) == -1)
		return -1;
	tab->edges[*n].to = to->owner;
	tab->edges[*n].via = via;
	(*n)++;
	return 0;
}

/* Add the edges of one wait of an owner: a queued request or an upgrade. */
static int
edges_of_wait(struct locktab *tab, size_t *n, struct lock_req *w)
{
	struct lock	*lock = w->lock;
	struct lock_req	*r;

	TAILQ_FOREACH(r, &lock->holders, entry) {
		if (r == w)
			continue;
		if ((w->held || w->mode == PROTO_EXCLUSIVE ||
		    r->mode == PROTO_EXCLUSIVE || r == lock->converter) &&
		    edge_add(tab, n, w, r) == -1)
			return -1;
	}
	if (w->held)
		return 0;
	TAILQ_FOREACH(r, &lock->waiters, entry) {
		if (r == w)
			break;
		if ((w->mode == PROTO_EXCLUSIVE || r->mode ==
		    PROTO_EXCLUSIVE) && edge_add(tab, n, w, r) == -1)
			return -1;
	}
	return 0;
}

/*
 * Tarjan's visit of an owner first seen: number it, stack it, and gather
 * its edges at the end of the edge array.
 */
static int
search_visit(struct locktab *tab, struct lock_owner *o, size_t *index,
    size_t *nedges, size_t *nstack)
{
	struct lock_req	*w;

	o->mark = tab->search_epoch;
	o->scc_mark = o->path_mark = 0;
	o->index = o->low = (*index)++;
	o->on_stack = 1;
	o->edge_first = o->edge_next = *nedges;
	TAILQ_FOREACH(w, &o->waits, owner_entry)
		if (edges_of_wait(tab, nedges, w) == -1)
			return -1;
	o->edge_end = *nedges;
	if (search_reserve((void **)&tab->nodes, &tab->nodes_size, *nstack, 1,
	    sizeof *tab->nodes) == -1)
		return -1;
	tab->nodes[(*nstack)++] = o;
	return 0;
}

/*
 * Mark start's strongly connected component (scc_mark): Tarjan's from
 * start, its component stack in tab->nodes and its call stack in
 * tab->calls.  Returns how many owners the component has (its members
 * are tab->nodes[0..n-1]), or 0 if out of memory: then nothing is found.
 */
static size_t
search_component(struct locktab *tab, struct lock_owner *start)
{
	struct lock_owner	*o, *to;
	size_t			 index = 0, nedges = 0, nstack = 0, ncalls = 0;
	size_t			 i;

	if (++tab->search_epoch == 0)
		tab->search_epoch = 1;
	if (search_visit(tab, start, &index, &nedges, &nstack) == -1 ||
	    search_reserve((void **)&tab->calls, &tab->calls_size, 0, 1,
	    sizeof *tab->calls) == -1)
		goto fail;
	tab->calls[ncalls++] = start;
	while (ncalls > 0) {
		o = tab->calls[ncalls - 1];
		if (o->edge_next < o->edge_end) {
			to = tab->edges[o->edge_next++].to;
			if (to->mark != tab->search_epoch) {
				if (search_visit(tab, to, &index, &nedges,
				    &nstack) == -1 || search_reserve(
				    (void **)&tab->calls, &tab->calls_size,
				    ncalls, 1, sizeof *tab->calls) == -1)
					goto fail;
				tab->calls[ncalls++] = to;
			} else if (to->on_stack && to->index < o->low)
				o->low = to->index;
			continue;
		}
		ncalls--;
		if (ncalls > 0 && o->low < tab->calls[ncalls - 1]->low)
			tab->calls[ncalls - 1]->low = o->low;
		if (o->low != o->index || o == start)
			continue;
		/* A component that is not start's: off the stack. */
		do {
			to = tab->nodes[--nstack];
			to->on_stack = 0;
		} while (to != o);
	}
	/* What is left on the stack is start's component. */
	for (i = 0; i < nstack; i++) {
		tab->nodes[i]->scc_mark = tab->search_epoch;
		tab->nodes[i]->on_stack = 0;
	}
	return nstack;
fail:
	for (i = 0; i < nstack; i++)
		tab->nodes[i]->on_stack = 0;
	return 0;
}

/*
 * The youngest waiting request that asked, among those whose edge lies
 * inside the component (so on a cycle), or NULL; *ret_to is its blocker.
 */
static struct lock_req *
search_victim(struct locktab *tab, size_t n, struct lock_owner **ret_to)
{
	struct lock_owner	*o;
	struct wait_edge	*e;
	struct lock_req		*best = NULL;
	size_t			 i, j;

	for (i = 0; i < n; i++) {
		o = tab->nodes[i];
		for (j = o->edge_first; j < o->edge_end; j++) {
			e = &tab->edges[j];
			if (e->to->scc_mark != tab->search_epoch ||
			    !e->via->detect || e->via->held)
				continue;
			if (best == NULL || e->via->wait_seq > best->wait_seq) {
				best = e->via;
				*ret_to = e->to;
			}
		}
	}
	return best;
}

/* Note one step of the cycle, at place i, if it fits. */
static void
cycle_note(struct locktab *tab, size_t i, struct lock_owner *o,
    struct lock_req *via)
{
	if (i >= LOCKTAB_CYCLE_MAX)
		return;
	tab->cycle[i].owner = o->arg;
	tab->cycle[i].name = via->lock->name;
}

/*
 * Note the cycle through victim's edge to from: a breadth-first walk
 * inside the component (n owners) from from back to victim's owner,
 * which the component holds, so the walk gets there.
 */
static void
search_cycle(struct locktab *tab, size_t n, struct lock_req *victim,
    struct lock_owner *from)
{
	struct lock_owner	*o, *target = victim->owner;
	struct wait_edge	*e;
	size_t			 head = 0, tail = 0, len, j;

	tab->cycle_len = 0;
	/* The calls stack is free again, and was reserved to n already. */
	if (search_reserve((void **)&tab->calls, &tab->calls_size, 0, n,
	    sizeof *tab->calls) == -1)
		return;
	from->path_mark = tab->search_epoch;
	from->path_prev = NULL;
	tab->calls[tail++] = from;
	while (head < tail && (o = tab->calls[head++]) != target) {
		for (j = o->edge_first; j < o->edge_end; j++) {
			e = &tab->edges[j];
			if (e->to->scc_mark != tab->search_epoch ||
			    e->to->path_mark == tab->search_epoch)
				continue;
			e->to->path_mark = tab->search_epoch;
			e->to->path_prev = o;
			e->to->path_via = e->via;
			tab->calls[tail++] = e->to;
		}
	}
	if (target->path_mark != tab->search_epoch)
		return;		/* cannot be: the component is connected */
	/* victim's owner first, then from and on, back to it. */
	for (len = 1, o = target; o != from; o = o->path_prev)
		len++;
	cycle_note(tab, 0, target, victim);
	for (j = len - 1, o = target; o != from; o = o->path_prev, j--)
		cycle_note(tab, j, o->path_prev, o->path_via);
	tab->cycle_len = len;
}

/*
 * A waiting request failed as a deadlock's youngest: out of its queue,
 * reported through failed_cb with LOCKTAB_E_CYCLE; its queue moves on.
 */
static void
lock_deadlock_fail(struct lock_req *req)
{
	struct lock	*lock = req->lock;
	struct locktab	*tab = lock->tab;

	lock_dequeue(lock, req);
	req->error = LOCKTAB_E_CYCLE;
	req->pending = 1;
	lock->nfailed++;
	TAILQ_INSERT_TAIL(&tab->failed, req, pending_entry);
	if (lock->nwaiters > 0 && (lock->nholders > 0 ||
	    lock_refresh(lock) == 0))
		lock_grant(lock);
}

/*
 * req's wait (queued, or an upgrade) just started: if some waiter asked
 * for detection and the wait closes a cycle, fail the cycle's youngest
 * request that asked, unless that is req itself, and return it (NULL if
 * none); locktab_cycle then names the cycle.  The caller dispatches.
 */
static struct lock_req *
lock_deadlock_check(struct locktab *tab, struct lock_req *req)
{
	struct lock_req		*victim;
	struct lock_owner	*to = NULL;
	size_t			 n;

	if (tab->ndetect == 0 || req->owner == NULL ||
	    (n = search_component(tab, req->owner)) < 2 ||
	    (victim = search_victim(tab, n, &to)) == NULL)
		return NULL;
	search_cycle(tab, n, victim, to);
	if (victim != req)
		lock_deadlock_fail(victim);
	return victim;
}

/*
 * The new request req closed a cycle as its youngest that asked: it
 * leaves the queue and is freed, as if never made.
 */
static void
lock_cycle_self(struct lock *lock, struct lock_req *req)
{
	struct locktab	*tab = lock->tab;

	lock_dequeue(lock, req);
	req_free(tab, req);
	if (lock->nholders == 0 && lock->nwaiters == 0 && lock->nfailed == 0)
		lock_retire(lock);
	locktab_dispatch(tab);
}

/* A node of the wait-for graph, for one connection; arg is the caller's. */
struct lock_owner *
locktab_owner_new(void *arg)
{
	struct lock_owner	*o;

	if ((o = calloc(1, sizeof *o)) == NULL)
		return NULL;
	o->arg = arg;
	TAILQ_INIT(&o->waits);
	return o;
}

/* Free an owner; any request still waiting has no owner afterwards. */
void
locktab_owner_free(struct lock_owner *o)
{
	struct lock_req	*req;

	if (o == NULL)
		return;
	while ((req = TAILQ_FIRST(&o->waits)) != NULL) {
		owner_unlink(req->lock->tab, req);
		req->owner = NULL;
		req->detect = 0;
	}
	free(o);
}

/*
 * Set a request's owner and whether it asked for detection, for a
 * restored one (locktab_restore_req); nothing is searched for.
 */
void
lock_req_set_owner(struct lock_req *req, struct lock_owner *owner,
    int detect)
{
	struct locktab	*tab = req->lock->tab;

	owner_unlink(tab, req);
	req->owner = owner;
	req->detect = detect && owner != NULL;
	if (req->error == 0 && (!req->held || req->converting))
		owner_link(tab, req);
}

/*
 * The cycle the last deadlock found, its owners' args and the names of
 * the locks they wait for, the failed request's first: up to
 * LOCKTAB_CYCLE_MAX steps in *ret_steps; returns its whole length.
 * Valid until the next call into the table.
 */
size_t
locktab_cycle(const struct locktab *tab,
    const struct locktab_cycle_step **ret_steps)
{
	*ret_steps = tab->cycle;
	return tab->cycle_len;
}

/* Whether the request asked for deadlock detection. */
int
lock_req_detects(const struct lock_req *req)
{
	return req->detect;
}

/* How many waiting requests asked for deadlock detection. */
size_t
locktab_ndetecting(const struct locktab *tab)
{
	return tab->ndetect;
}

/*
 * Ask for name in mode.  Returns 0 and sets *ret_req, granted or queued;
 * an immediate grant's callback has run by then (with *ret_req already
 * set, so a callback that releases the request leaves it dangling).
 * With try_only, -EWOULDBLOCK if it cannot be granted at once;
 * LOCKTAB_E_NO_TOKENS if it could be but the token limit is reached;
 * LOCKTAB_E_MAX_FILES or -errno if the store cannot open or take the
 * lock.  Nothing is left behind on failure.
 */
int
locktab_acquire(struct locktab *tab, const char *name, enum proto_mode mode,
    int try_only, void *arg, struct lock_req **ret_req)
{
	return locktab_acquire_object(tab, name, NULL, mode, try_only, arg,
	    ret_req);
}

/*
 * Ask for the lock locktab_resolve named for an object a client passed,
 * which the store's open may take if the lock is new; else as
 * locktab_acquire.
 */
int
locktab_acquire_object(struct locktab *tab, const char *name, void *object,
    enum proto_mode mode, int try_only, void *arg, struct lock_req **ret_req)
{
	return locktab_acquire_as(tab, name, object, mode, try_only, NULL, 0,
	    arg, ret_req);
}

/*
 * As locktab_acquire_object, for a request of owner (a connection, NULL
 * for none), which may ask to detect deadlocks: when its wait, or any
 * owner's wait while some waiter asked, closes a cycle in the wait-for
 * graph, the youngest waiting request of the cycle that asked fails
 * (see lock_deadlock_check).  If that is this request, it returns
 * LOCKTAB_E_CYCLE, with nothing left behind and the cycle in
 * locktab_cycle; any other is reported through failed_cb.
 */
int
locktab_acquire_as(struct locktab *tab, const char *name, void *object,
    enum proto_mode mode, int try_only, struct lock_owner *owner, int detect,
    void *arg, struct lock_req **ret_req)
{
	struct lock	*lock;
	struct lock_req	*req, *victim = NULL;
	int		 error;

	if ((req = req_new(tab)) == NULL)
		return -ENOMEM;
	if ((lock = lock_lookup(tab, name)) != NULL && lock->idle)
		lock = lock_revive(lock);
	if (lock == NULL && (error = lock_new(tab, name, object,
	    &lock)) != 0) {
		req_free(tab, req);
		return error;
	}
	req->lock = lock;
	req->mode = mode;
	req->arg = arg;
	req->owner = owner;
	req->detect = detect && owner != NULL;

	if (TAILQ_EMPTY(&lock->waiters) && lock_compatible(lock, mode)) {
		/* Under shared holders the store has it shared: a join. */
		if (tab->store->next_token > tab->store->token_limit)
			error = LOCKTAB_E_NO_TOKENS;
		else if (lock->nholders > 0 ?
		    (error = lock_join(lock, mode)) == 0 :
		    (error = tab->ops->take(lock->state, mode)) == 0) {
			lock_hold(lock, req);
			*ret_req = req;
			locktab_dispatch(tab);
			return 0;
		}
		if (try_only || error != -EWOULDBLOCK) {
			req_free(tab, req);
			if (lock->nholders == 0 && lock->nwaiters == 0 &&
			    lock->nfailed == 0)
				lock_free(lock);
			return error;
		}
		lock_enqueue(lock, req);
		/* A join the store holds back needs no take of its own. */
		if (lock->nholders == 0)
			lock_set_blocked(lock, 1, mode);
	} else if (try_only) {
		/* The lock has holders or waiters, so it stays. */
		req_free(tab, req);
		return -EWOULDBLOCK;
	} else
		lock_enqueue(lock, req);
	/* Only when some waiter asked: else one test. */
	if (tab->ndetect > 0 && (victim = lock_deadlock_check(tab, req)) ==
	    req) {
		lock_cycle_self(lock, req);
		return LOCKTAB_E_CYCLE;
	}
	*ret_req = req;
	/* A holder that asked hears of its new waiter: one test if none. */
	if (lock->ncontend > 0)
		lock_contended_mark(lock);
	if (lock->ncontend > 0 || victim != NULL) {
		locktab_dispatch(tab);
		locktab_report_failed(tab);
	}
	return 0;
}

/*
 * The name the table keeps the lock of a client's object under (see the
 * store's resolve op): 0, or -errno with a sentence in msg.
 */
int
locktab_resolve(struct locktab *tab, void *object, char *key,
    size_t key_size, char *msg, size_t msg_size)
{
	if (tab->ops->resolve == NULL) {
		snprintf(msg, msg_size, "this lock store takes names only");
		return -EOPNOTSUPP;
	}
	return tab->ops->resolve(tab->store, object, key, key_size, msg,
	    msg_size);
}

/*
 * Mark the lock's waiting upgrade held up by the store (someone outside
 * the table), to be tried again by locktab_retry, or no longer.
 */
static void
lock_convert_blocked(struct lock *lock, int blocked)
{
	struct locktab	*tab = lock->tab;

	if (lock->convert_blocked == blocked)
		return;
	if (blocked) {
		TAILQ_INSERT_TAIL(&tab->converting, lock, converting_entry);
		tab->nconverting++;
	} else {
		TAILQ_REMOVE(&tab->converting, lock, converting_entry);
		tab->nconverting--;
	}
	lock->convert_blocked = blocked;
}

/* The lock's waiting upgrade is over, done or not: nobody converts. */
static void
lock_convert_end(struct lock *lock)
{
	lock_convert_blocked(lock, 0);
	owner_unlink(lock->tab, lock->converter);
	lock->converter->converting = 0;
	lock->converter = NULL;
}

/*
 * Have the store take the lock of its only holder, req, exclusive: 0,
 * with a new token, as for a new grant; -EWOULDBLOCK while someone
 * outside the table has it, the shared take kept; LOCKTAB_E_NO_TOKENS;
 * or LOCKTAB_E_LOST if the store lost the take on the way.
 */
static int
lock_upgrade(struct lock *lock, struct lock_req *req)
{
	struct locktab	*tab = lock->tab;
	int		 error;

	if (tab->store->next_token > tab->store->token_limit)
		return LOCKTAB_E_NO_TOKENS;
	if ((error = tab->ops->convert(lock->state, PROTO_EXCLUSIVE)) != 0)
		return error == -EWOULDBLOCK ? error : LOCKTAB_E_LOST;
	req->mode = PROTO_EXCLUSIVE;
	req->token = tab->store->next_token++;
	req->since = tab->clock();
	return 0;
}

/*
 * The store lost the take of req, the only holder, on an upgrade: it
 * holds nothing now, so it goes out of the holders at once (nobody may
 * join it) and is reported failed with LOCKTAB_E_LOST; the waiters wait
 * for a take anew.
 */
static void
lock_lose(struct lock *lock, struct lock_req *req)
{
	struct locktab	*tab = lock->tab;

	TAILQ_REMOVE(&lock->holders, req, entry);
	lock->nholders--;
	tab->nheld--;
	req->held = 0;
	req->error = LOCKTAB_E_LOST;
	req->pending = 1;
	lock->nfailed++;
	TAILQ_INSERT_TAIL(&tab->failed, req, pending_entry);
}

/*
 * Try the lock's waiting upgrade, if its converter holds alone now; when
 * it ends, done or failed, queue its converted callback.
 */
static void
lock_convert_try(struct lock *lock)
{
	struct lock_req	*req = lock->converter;
	int		 error;

	if (lock->nholders != 1)
		return;
	if ((error = lock_upgrade(lock, req)) == -EWOULDBLOCK) {
		lock_convert_blocked(lock, 1);
		return;
	}
	lock_convert_end(lock);
	if (error == LOCKTAB_E_LOST) {
		lock_lose(lock, req);
		return;
	}
	req->converted = 1;
	req->convert_error = error;
	req->pending = 1;
	TAILQ_INSERT_TAIL(&lock->tab->pending, req, pending_entry);
}

/* A downgrade: the shared waiters at the head of the queue join at once. */
static int
lock_downgrade(struct lock *lock, struct lock_req *req)
{
	struct locktab	*tab = lock->tab;

	if (tab->ops->convert(lock->state, PROTO_SHARED) != 0)
		return LOCKTAB_E_LOST;
	req->mode = PROTO_SHARED;
	lock_grant(lock);
	locktab_dispatch(tab);
	return 0;
}

/*
 * Convert a held request to mode.  A downgrade (exclusive to shared) is
 * at once, keeps the token, and grants the shared waiters at the head of
 * the queue.  An upgrade is at once if req holds alone and nobody
 * outside the table has the lock; else it waits, keeping its shared
 * take, ahead of every waiter, until the converted callback reports it.
 * Returns 0 when done (an upgrade with a new, higher token), 1 when it
 * waits; -EWOULDBLOCK instead of waiting with try_only;
 * LOCKTAB_E_DEADLOCK when another holder's upgrade waits already (each
 * would wait for the other: req keeps its shared take); -EALREADY if
 * req's own upgrade waits; -EOPNOTSUPP if the store cannot convert;
 * LOCKTAB_E_NO_TOKENS; LOCKTAB_E_LOST if the store lost the take, which
 * req then no longer has underneath: release it.
 */
int
locktab_convert(struct locktab *tab, struct lock_req *req,
    enum proto_mode mode, int try_only)
{
	struct lock	*lock = req->lock;
	int		 error;

	if (!req->held || req->error != 0)
		return -EINVAL;
	if (tab->ops->convert == NULL)
		return -EOPNOTSUPP;
	if (req->converting)
		return -EALREADY;
	if (req->mode == mode)
		return 0;
	if (mode == PROTO_SHARED)
		return lock_downgrade(lock, req);
	if (lock->converter != NULL)
		return LOCKTAB_E_DEADLOCK;
	if (lock->nholders == 1 &&
	    (error = lock_upgrade(lock, req)) != -EWOULDBLOCK)
		return error;
	if (try_only)
		return -EWOULDBLOCK;
	req->converting = 1;
	lock->converter = req;
	lock_convert_blocked(lock, lock->nholders == 1);
	/* A waiting upgrade adds edges: it may close a cycle. */
	owner_link(tab, req);
	lock_deadlock_check(tab, req);
	locktab_dispatch(tab);
	locktab_report_failed(tab);
	return 1;
}

/*
 * Give up req's waiting upgrade (its timeout): it holds shared as
 * before, and the shared waiters the upgrade held back join now.
 */
void
locktab_convert_cancel(struct locktab *tab, struct lock_req *req)
{
	struct lock	*lock = req->lock;

	if (!req->converting)
		return;
	lock_convert_end(lock);
	lock_grant(lock);
	locktab_dispatch(tab);
}

/* Whether req's upgrade waits. */
int
lock_req_converting(const struct lock_req *req)
{
	return req->converting;
}

/* How many upgrades wait for someone outside the table. */
size_t
locktab_nconverting(const struct locktab *tab)
{
	return tab->nconverting;
}

/* Set the callback that reports the end of a waiting upgrade. */
void
locktab_set_converted_cb(struct locktab *tab, locktab_converted_cb cb)
{
	tab->converted_cb = cb;
}

/*
 * Release a held request or cancel a waiting one, grant whatever that
 * lets through, and free the request.  A failed request not reported yet
 * is only freed.
 */
void
locktab_release(struct locktab *tab, struct lock_req *req)
{
	struct lock	*lock;

	if (req == NULL)
		return;
	lock = req->lock;
	/* A failed one is in no queue; in its callback, it is freed after. */
	if (req->error != 0) {
		if (req->pending) {
			TAILQ_REMOVE(&tab->failed, req, pending_entry);
			lock_failed_free(tab, req);
		}
		return;
	}
	if (req->pending) {
		TAILQ_REMOVE(&tab->pending, req, pending_entry);
		req->pending = 0;
	}
	if (req->converting)
		lock_convert_end(lock);
	if (req->held) {
		TAILQ_REMOVE(&lock->holders, req, entry);
		lock->nholders--;
		tab->nheld--;
		if (req->notify)
			lock->ncontend--;
	} else
		lock_dequeue(lock, req);
	req_free(tab, req);
	/* The holder an upgrade waited for went: it may hold alone now. */
	if (lock->converter != NULL)
		lock_convert_try(lock);

	/*
	 * With waiters left, keep the take and hand it straight over, so
	 * nobody outside can slip in on an exclusive handoff; but if the
	 * store's state no longer stands for the name, the next holder must
	 * wait for a take of what does.
	 */
	if (lock->nholders == 0 && lock->nwaiters == 0) {
		/* With failed requests left, the last of them closes it. */
		if (lock->nfailed == 0)
			lock_retire(lock);
	} else if (lock->nholders > 0 || lock_refresh(lock) == 0)
		lock_grant(lock);
	locktab_dispatch(tab);
	locktab_report_failed(tab);
}

/*
 * The store ended the wait of a blocked lock: with 0, a take in the mode
 * waited for now succeeds at once, so the head of the queue is granted;
 * with -errno, the requests the wait was for fail.  Ignored if the table
 * no longer waits.
 */
void
locktab_taken(struct locktab *tab, struct lock *lock, int error)
{
	if (!lock->blocked || lock->nholders != 0 || lock->nwaiters == 0)
		return;
	if (error != 0)
		lock_fail(lock, error);
	/* The wait began long ago: the name may stand for another now. */
	else if (lock_refresh(lock) == 0)
		lock_grant(lock);
	locktab_dispatch(tab);
	locktab_report_failed(tab);
}

/*
 * The store would now let a request join the lock's holders (its join
 * op): grant what the head of the queue allows.
 */
void
locktab_joined(struct locktab *tab, struct lock *lock)
{
	if (lock == NULL || lock->nholders == 0 || lock->nwaiters == 0)
		return;
	lock_grant(lock);
	locktab_dispatch(tab);
}

/*
 * Close the idle locks that were idle already at the previous call, so
 * that, called every second, an unused lock stays open 1 to 2 s.
 */
void
locktab_expire(struct locktab *tab)
{
	struct lock	*lock;

	while ((lock = TAILQ_FIRST(&tab->idle)) != NULL &&
	    lock->idle_epoch != tab->epoch)
		lock_free(lock);
	tab->epoch++;
}

/* Close every idle lock now; return how many were closed. */
size_t
locktab_close_idle(struct locktab *tab)
{
	size_t	 n = tab->nidle;

	while (!TAILQ_EMPTY(&tab->idle))
		lock_free(TAILQ_FIRST(&tab->idle));
	return n;
}

/* Return how many idle locks keep their store state open. */
size_t
locktab_nidle(const struct locktab *tab)
{
	return tab->nidle;
}

/* Whether the store waits to take the lock for its queue. */
int
lock_blocked(const struct lock *lock)
{
	return lock->blocked;
}

/* Try again to grant every blocked lock. */
void
locktab_retry(struct locktab *tab)
{
	struct lock	*lock, *next, *last;

	/*
	 * lock_grant and lock_refresh may unlink lock from the blocked
	 * list, or move it to the tail, never free it: each lock blocked now
	 * is tried once.
	 */
	last = TAILQ_LAST(&tab->blocked, locks);
	for (lock = TAILQ_FIRST(&tab->blocked); lock != NULL; lock = next) {
		next = lock == last ? NULL : TAILQ_NEXT(lock, blocked_entry);
		if (lock->nholders > 0 || lock_refresh(lock) == 0)
			lock_grant(lock);
	}
	/* Each upgrade an outsider held up is tried once, as above. */
	last = TAILQ_LAST(&tab->converting, locks);
	for (lock = TAILQ_FIRST(&tab->converting); lock != NULL; lock = next) {
		next = lock == last ? NULL : TAILQ_NEXT(lock, converting_entry);
		lock_convert_try(lock);
		/* A lost take: the waiters need a take of their own. */
		if (lock->nholders == 0 && lock->nwaiters > 0 &&
		    lock_refresh(lock) == 0)
			lock_grant(lock);
	}
	locktab_dispatch(tab);
	locktab_report_failed(tab);
}

/* Return how many locks are blocked. */
size_t
locktab_nblocked(const struct locktab *tab)
{
	return tab->nblocked;
}

/* Return how many grants are held, each shared holder counting one. */
size_t
locktab_nheld(const struct locktab *tab)
{
	return tab->nheld;
}

/* Return how many requests are queued. */
size_t
locktab_nwaiting(const struct locktab *tab)
{
	return tab->nwaiting;
}

/* Return how many grants the table has ever made. */
uint64_t
locktab_granted_total(const struct locktab *tab)
{
	return tab->granted_total;
}

/*
 * Grant no token above limit from now on.  Waiters a lower limit held back
 * are granted once it allows: every lock with waiters is tried again.
 */
void
locktab_set_token_limit(struct locktab *tab, int64_t limit)
{
	struct lock	*lock;

	tab->store->token_limit = limit;
	if (!tab->token_starved || tab->store->next_token > limit)
		return;
	tab->token_starved = 0;
	/* lock_grant never frees a lock nor moves it off this list. */
	TAILQ_FOREACH(lock, &tab->locks, entry) {
		if (lock->nwaiters > 0 &&
		    (lock->nholders > 0 || lock_refresh(lock) == 0))
			lock_grant(lock);
	}
	locktab_dispatch(tab);
}

/*
 * Have the store say why name's object failed with -errno, for a reply
 * that names what to fix; 0 if the store has nothing to add.
 */
int
locktab_explain(struct locktab *tab, const char *name, int error, char *buf,
    size_t size)
{
	if (tab->ops->explain == NULL)
		return 0;
	return tab->ops->explain(tab->store, name, error, buf, size);
}

/*
 * A fencing token for a grant made outside the queues (a holder taking
 * its own lock again), or 0 past the token limit.
 */
int64_t
locktab_take_token(struct locktab *tab)
{
	if (tab->store->next_token > tab->store->token_limit)
		return 0;
	return tab->store->next_token++;
}

/* Return the token the next grant will get. */
int64_t
locktab_next_token(const struct locktab *tab)
{
	return tab->store->next_token;
}

/* Return the lock of that name, or NULL if nobody holds or waits for it. */
struct lock *
locktab_find(struct locktab *tab, const char *name)
{
	struct lock	*lock;

	if ((lock = lock_lookup(tab, name)) == NULL || lock->idle)
		return NULL;
	return lock;
}

/* Return the first lock of the table, in no particular order. */
struct lock *
locktab_first(struct locktab *tab)
{
	return TAILQ_FIRST(&tab->locks);
}

/* Return the lock after this one, or NULL. */
struct lock *
locktab_next(struct lock *lock)
{
	return TAILQ_NEXT(lock, entry);
}

/* Return a lock's name. */
const char *
lock_name(const struct lock *lock)
{
	return lock->name;
}

/* Return the store's state of a lock. */
void *
lock_store_state(const struct lock *lock)
{
	return lock->state;
}

/* Return the first holder of a lock, in grant order. */
struct lock_req *
lock_first_holder(struct lock *lock)
{
	return TAILQ_FIRST(&lock->holders);
}

/* Return the first waiter of a lock, in queue order. */
struct lock_req *
lock_first_waiter(struct lock *lock)
{
	return TAILQ_FIRST(&lock->waiters);
}

/* Return the next request in the same list, holders or waiters. */
struct lock_req *
lock_req_next(struct lock_req *req)
{
	return TAILQ_NEXT(req, entry);
}

/* Return nonzero if the request holds its lock. */
int
lock_req_held(const struct lock_req *req)
{
	return req->held;
}

/* Return the mode asked for. */
enum proto_mode
lock_req_mode(const struct lock_req *req)
{
	return req->mode;
}

/* Return the fencing token of a grant, 0 while waiting. */
int64_t
lock_req_token(const struct lock_req *req)
{
	return req->token;
}

/* Return when the request was granted, or queued if it waits. */
double
lock_req_since(const struct lock_req *req)
{
	return req->since;
}

/* Return the 1-based place of a waiter in its queue, 0 if held. */
int
lock_req_position(const struct lock_req *req)
{
	const struct lock_req	*w;
	int			 position = 1;

	if (req->held)
		return 0;
	TAILQ_FOREACH(w, &req->lock->waiters, entry) {
		if (w == req)
			break;
		position++;
	}
	return position;
}

/* Return the lock a request is for. */
struct lock *
lock_req_lock(struct lock_req *req)
{
	return req->lock;
}

/* Return the name of the lock a request is for. */
const char *
lock_req_name(const struct lock_req *req)
{
	return req->lock->name;
}

/* Return the caller's argument given to locktab_acquire. */
void *
lock_req_arg(const struct lock_req *req)
{
	return req->arg;
}

/*
 * Ask for contended reports while the request holds its lock; told_at is
 * when it was last told (clock of locktab_set_contended), 0 if never.  A
 * holder that was never told, with a queue behind it already, is told at
 * the next dispatch.
 */
void
lock_req_notify_contended(struct lock_req *req, double told_at)
{
	struct lock	*lock = req->lock;

	if (req->notify)
		return;
	req->notify = 1;
	req->told_at = told_at;
	if (!req->held)
		return;		/* lock_hold counts it */
	lock->ncontend++;
	if (lock->nwaiters > 0 && told_at == 0)
		lock_contended_mark(lock);
}

/*
 * Whether the request asked for contended reports, and (told_at) when it
 * was last told, for a reload to carry.
 */
int
lock_req_notifies(const struct lock_req *req, double *ret_told_at)
{
	if (ret_told_at != NULL)
		*ret_told_at = req->told_at;
	return req->notify;
}

/*
 * Restoring a reload's state: a lock of that name over what the store
 * kept of it (struct lock_store_kept), with no holders or waiters yet.
 * 0, -EEXIST if the table has one already, or the store's -errno.
 */
int
locktab_restore_lock(struct locktab *tab, const char *name, void *kept,
    struct lock **ret_lock)
{
	if (tab->ops->restore == NULL)
		return -EOPNOTSUPP;
	if (lock_lookup(tab, name) != NULL)
		return -EEXIST;
	return lock_new_with(tab, name, kept, 1, ret_lock);
}

/*
 * Restoring: append a holder (with its token, granted at since) or a
 * waiter (queued at since) to a restored lock, as it was, with no
 * callback and no grant; locktab_restore_done settles the table after.
 */
int
locktab_restore_req(struct lock *lock, enum proto_mode mode, int held,
    int64_t token, double since, void *arg, struct lock_req **ret_req)
{
	struct locktab	*tab = lock->tab;
	struct lock_req	*req;

	if ((req = req_new(tab)) == NULL)
		return -ENOMEM;
	req->lock = lock;
	req->mode = mode;
	req->arg = arg;
	if (held) {
		req->held = 1;
		req->token = token;
		TAILQ_INSERT_TAIL(&lock->holders, req, entry);
		lock->nholders++;
		tab->nheld++;
	} else
		lock_enqueue(lock, req);
	req->since = since;
	*ret_req = req;
	return 0;
}

/*
 * Restoring is done: a lock left with nobody is retired, one whose
 * holders are gone grants its queue (or waits for an outsider), and the
 * grants are reported as any others.
 */
void
locktab_restore_done(struct locktab *tab)
{
	struct lock	*lock, *next;

	for (lock = TAILQ_FIRST(&tab->locks); lock != NULL; lock = next) {
		next = TAILQ_NEXT(lock, entry);
		if (lock->nholders == 0 && lock->nwaiters == 0)
			lock_retire(lock);
		else if (lock->nwaiters > 0)
			lock_grant(lock);
	}
	locktab_dispatch(tab);
	locktab_report_failed(tab);
}
