/*
 * The fake lock store: see fake_store.h.  It keeps what a real store
 * would promise the table: a take in the mode held succeeds at once, a
 * take of a busy name fails with -EWOULDBLOCK (dropping what was held),
 * and a wait is ended, once, only by the test.
 */

#include <sys/queue.h>

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fake_store.h"

#define FAKE_BUSY_MAX	8	/* busy names at once */
#define FAKE_NAME_MAX	64

/* One open lock's state. */
struct fake_lock {
	struct fake_store	*store;
	struct lock		*lock;
	const char		*name;		/* the lock's */
	int			 mode;		/* taken in, or FAKE_NONE */
	int			 waiting;	/* a take in, or FAKE_NONE */
	int64_t			 join_token;	/* a join let through, or 0 */
	int			 places;	/* queued, not yet left */
	int			 last_queued;	/* the mode, or FAKE_NONE */
	LIST_ENTRY(fake_lock)	 entry;
};

struct fake_store {
	struct lock_store	 base;		/* first: the table's view */
	LIST_HEAD(, fake_lock)	 open;
	size_t			 nopen;
	size_t			 nwaits;	/* waits ever asked for */
	char			 busy[FAKE_BUSY_MAX][FAKE_NAME_MAX];
	int			 hold_joins;	/* joins wait for the test */
	int			 lose_converts;	/* upgrades lose the take */
	size_t			 nconverts;	/* converts asked for */
};

/* The busy slot of name, or NULL. */
static char *
fake_busy_slot(struct fake_store *fs, const char *name)
{
	size_t	 i;

	for (i = 0; i < FAKE_BUSY_MAX; i++) {
		if (strcmp(fs->busy[i], name) == 0)
			return fs->busy[i];
	}
	return NULL;
}

/* The open lock of name, or NULL. */
static struct fake_lock *
fake_find(struct lock_store *store, const char *name)
{
	struct fake_store	*fs = (struct fake_store *)store;
	struct fake_lock	*fl;

	LIST_FOREACH(fl, &fs->open, entry) {
		if (strcmp(fl->name, name) == 0)
			return fl;
	}
	return NULL;
}

static int
fake_open(struct lock_store *store, struct lock *lock, const char *name,
    void *object, void *state)
{
	struct fake_store	*fs = (struct fake_store *)store;
	struct fake_lock	*fl = state;

	(void)object;
	fl->store = fs;
	fl->lock = lock;
	fl->name = name;
	fl->mode = FAKE_NONE;
	fl->waiting = FAKE_NONE;
	fl->places = 0;
	fl->last_queued = FAKE_NONE;
	LIST_INSERT_HEAD(&fs->open, fl, entry);
	fs->nopen++;
	return 0;
}

static void
fake_close(void *state)
{
	struct fake_lock	*fl = state;

	LIST_REMOVE(fl, entry);
	fl->store->nopen--;
}

static int
fake_take(void *state, enum proto_mode mode)
{
	struct fake_lock	*fl = state;

	if (fl->mode == (int)mode)
		return 0;
	if (fake_busy_slot(fl->store, fl->name) != NULL) {
		fl->mode = FAKE_NONE;
		return -EWOULDBLOCK;
	}
	fl->mode = mode;
	return 0;
}

/* A join waits while the test holds joins back, unless it let one through. */
static int
fake_join(void *state, enum proto_mode mode)
{
	struct fake_lock	*fl = state;

	(void)mode;
	if (fl->join_token > 0) {
		fl->store->base.next_token = fl->join_token;
		fl->join_token = 0;
		return 0;
	}
	return fl->store->hold_joins ? -EWOULDBLOCK : 0;
}

static void
fake_drop(void *state)
{
	struct fake_lock	*fl = state;

	fl->mode = FAKE_NONE;
}

static void
fake_wait(void *state, enum proto_mode mode)
{
	struct fake_lock	*fl = state;

	fl->waiting = mode;
	fl->store->nwaits++;
}

static void
fake_cancel(void *state)
{
	struct fake_lock	*fl = state;

	fl->waiting = FAKE_NONE;
}

/* Memory never goes stale. */
static int
fake_current(void *state)
{
	(void)state;
	return 1;
}

static int
fake_refresh(void *state)
{
	(void)state;
	return 0;
}

/* Count the places a store like etcd's would hold for waiters. */
static void
fake_queued(void *state, struct lock_req *req, enum proto_mode mode)
{
	struct fake_lock	*fl = state;

	ck_assert(!lock_req_held(req));
	fl->places++;
	fl->last_queued = mode;
}

static void
fake_left(void *state, struct lock_req *req)
{
	struct fake_lock	*fl = state;

	(void)req;
	ck_assert_int_gt(fl->places, 0);
	fl->places--;
}

/*
 * A conversion: an upgrade waits while the name is busy (someone outside
 * holds it shared), and loses the take when the test says so.
 */
static int
fake_convert(void *state, enum proto_mode mode)
{
	struct fake_lock	*fl = state;

	fl->store->nconverts++;
	ck_assert_int_ne(fl->mode, FAKE_NONE);
	if (mode == PROTO_EXCLUSIVE && fl->store->lose_converts) {
		fl->mode = FAKE_NONE;
		return -EIO;
	}
	if (mode == PROTO_EXCLUSIVE &&
	    fake_busy_slot(fl->store, fl->name) != NULL)
		return -EWOULDBLOCK;
	fl->mode = mode;
	return 0;
}

static const struct lock_store_ops fake_store_ops = {
	.lock_size = sizeof(struct fake_lock),
	.open = fake_open,
	.close = fake_close,
	.take = fake_take,
	.join = fake_join,
	.drop = fake_drop,
	.wait = fake_wait,
	.cancel = fake_cancel,
	.current = fake_current,
	.refresh = fake_refresh,
	.queued = fake_queued,
	.left = fake_left,
	.convert = fake_convert,
};

/* A fake store whose tokens start at first_token. */
struct lock_store *
fake_store_new(int64_t first_token)
{
	struct fake_store	*fs;

	fs = calloc(1, sizeof *fs);
	ck_assert_ptr_nonnull(fs);
	fs->base.ops = &fake_store_ops;
	fs->base.next_token = first_token;
	fs->base.token_limit = INT64_MAX;
	LIST_INIT(&fs->open);
	return &fs->base;
}

/* Free the store, after the table over it. */
void
fake_store_free(struct lock_store *store)
{
	free(store);
}

/* Make takes of name fail, as if someone outside had it, or stop that. */
void
fake_store_set_busy(struct lock_store *store, const char *name, int busy)
{
	struct fake_store	*fs = (struct fake_store *)store;
	char			*slot = fake_busy_slot(fs, name);

	ck_assert_uint_lt(strlen(name), FAKE_NAME_MAX);
	if (busy && slot == NULL) {
		slot = fake_busy_slot(fs, "");
		ck_assert_ptr_nonnull(slot);
		strcpy(slot, name);
	} else if (!busy && slot != NULL)
		slot[0] = '\0';
}

/* The mode the store has name taken in, or FAKE_NONE. */
int
fake_store_mode(struct lock_store *store, const char *name)
{
	struct fake_lock	*fl = fake_find(store, name);

	return fl != NULL ? fl->mode : FAKE_NONE;
}

/* The mode of the take the table waits for on name, or FAKE_NONE. */
int
fake_store_waiting(struct lock_store *store, const char *name)
{
	struct fake_lock	*fl = fake_find(store, name);

	return fl != NULL ? fl->waiting : FAKE_NONE;
}

/*
 * End the wait on name: with 0 the outsider let go and the store took the
 * lock in the mode waited for; with -errno the take failed, and name
 * stays busy.
 */
void
fake_store_end_wait(struct lock_store *store, const char *name, int error)
{
	struct fake_lock	*fl = fake_find(store, name);

	ck_assert_ptr_nonnull(fl);
	ck_assert_int_ne(fl->waiting, FAKE_NONE);
	if (error == 0) {
		fake_store_set_busy(store, name, 0);
		fl->mode = fl->waiting;
	}
	fl->waiting = FAKE_NONE;
	locktab_taken(store->tab, fl->lock, error);
}

/* Make joins of shared holders wait for fake_store_end_join, or stop that. */
void
fake_store_hold_joins(struct lock_store *store, int hold)
{
	((struct fake_store *)store)->hold_joins = hold;
}

/* Let one join of name through, with token, as a store ending it later. */
void
fake_store_end_join(struct lock_store *store, const char *name,
    int64_t token)
{
	struct fake_lock	*fl = fake_find(store, name);

	ck_assert_ptr_nonnull(fl);
	fl->join_token = token;
	locktab_joined(store->tab, fl->lock);
	fl->join_token = 0;
}

/* How many locks the store has open. */
size_t
fake_store_nopen(const struct lock_store *store)
{
	return ((const struct fake_store *)store)->nopen;
}

/* How many waits the table ever asked for. */
size_t
fake_store_nwaits(const struct lock_store *store)
{
	return ((const struct fake_store *)store)->nwaits;
}

/* How many of name's requests queued and have not left; -1 if not open. */
int
fake_store_places(struct lock_store *store, const char *name)
{
	struct fake_lock	*fl = fake_find(store, name);

	return fl != NULL ? fl->places : -1;
}

/* The mode the last request that queued on name asked for. */
int
fake_store_last_queued(struct lock_store *store, const char *name)
{
	struct fake_lock	*fl = fake_find(store, name);

	return fl != NULL ? fl->last_queued : FAKE_NONE;
}

/* Make upgrades lose the take, as a raced flock(2) conversion could. */
void
fake_store_lose_converts(struct lock_store *store, int lose)
{
	((struct fake_store *)store)->lose_converts = lose;
}

/* How many conversions the table asked of the store. */
size_t
fake_store_nconverts(const struct lock_store *store)
{
	return ((const struct fake_store *)store)->nconverts;
}
