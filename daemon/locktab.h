/*
 * The lock table and the lock store under it.  Neither json-c nor
 * libevent: the table is pure grant logic, and builds and tests alone.
 */
#ifndef LOCKSD_LOCKTAB_H
#define LOCKSD_LOCKTAB_H

#include <stddef.h>
#include <stdint.h>

#include "mode.h"

/*
 * locktab.c: the lock table.  Grant rules over names, FIFO queues, modes
 * and fencing tokens; what a lock is underneath belongs to its store.
 *
 * A lock_req is one acquire: it waits in its lock's queue, then holds.
 * Grants are reported through the granted callback, also for a request
 * granted at once inside locktab_acquire; a wait the store could not end
 * in a grant is reported through the failed callback.
 */
struct locktab;
struct lock;
struct lock_req;
struct lock_store;

/* locktab_acquire's own errors, outside the errno range. */
#define LOCKTAB_E_MAX_FILES	(-100000)	/* past the lock file bound */
#define LOCKTAB_E_NO_TOKENS	(-100001)	/* past the token limit */
#define LOCKTAB_E_MAX_PATHS	(-100002)	/* past the path lock bound */
#define LOCKTAB_E_DEADLOCK	(-100003)	/* two upgrades would wait */
#define LOCKTAB_E_LOST		(-100004)	/* the store lost the take */
#define LOCKTAB_E_CYCLE		(-100005)	/* a wait closed a cycle */

/*
 * Deadlock detection.  A lock_owner is one node of the wait-for graph
 * (a connection): requests given one (locktab_acquire_as) wait for the
 * owners of what they wait behind.  A request may ask for detection;
 * while any waiting one has, each new wait searches the part of the
 * graph it reaches, and a cycle fails its youngest request that asked
 * with LOCKTAB_E_CYCLE.  locktab_cycle names it, the failed request's
 * owner first, each with the name of the lock it waits for there.
 */
struct lock_owner;
#define LOCKTAB_CYCLE_MAX	16	/* steps of a cycle kept to name */

struct locktab_cycle_step {
	void		*owner;		/* the owner's arg */
	const char	*name;		/* the lock it waits for */
};

typedef void (*locktab_granted_cb)(struct lock_req *, void *);
typedef void (*locktab_failed_cb)(struct lock_req *, int, void *);
typedef void (*locktab_converted_cb)(struct lock_req *, int, void *);
typedef double (*locktab_clock)(void);
typedef void (*locktab_contended_cb)(struct lock_req *, size_t,
    struct lock_req *, void *);

/*
 * Contended reports: a holder that asked (lock_req_notify_contended) is
 * told, through the contended callback (holder, waiters, first waiter,
 * the holder's arg), when a request queues behind it, and again as the
 * queue changes, at most once per LOCKTAB_CONTENDED_EVERY seconds of the
 * clock given to locktab_set_contended; a report held back by that waits
 * for locktab_contended_tick.  An empty queue is never reported.  The
 * callback must not call into the table.
 */
#define LOCKTAB_CONTENDED_EVERY	1.0

struct locktab	*locktab_new(struct lock_store *, locktab_granted_cb,
		    locktab_failed_cb, locktab_clock);
void		 locktab_free(struct locktab *);
void		 locktab_set_contended(struct locktab *,
		    locktab_contended_cb, locktab_clock);
void		 locktab_contended_tick(struct locktab *);
int		 locktab_acquire(struct locktab *, const char *,
		    enum proto_mode, int, void *, struct lock_req **);
int		 locktab_acquire_object(struct locktab *, const char *,
		    void *, enum proto_mode, int, void *, struct lock_req **);
int		 locktab_acquire_as(struct locktab *, const char *,
		    void *, enum proto_mode, int, struct lock_owner *, int,
		    void *, struct lock_req **);
struct lock_owner *locktab_owner_new(void *);
void		 locktab_owner_free(struct lock_owner *);
void		 lock_req_set_owner(struct lock_req *, struct lock_owner *,
		    int);
int		 lock_req_detects(const struct lock_req *);
size_t		 locktab_cycle(const struct locktab *,
		    const struct locktab_cycle_step **);
size_t		 locktab_ndetecting(const struct locktab *);
int		 locktab_resolve(struct locktab *, void *, char *, size_t,
		    char *, size_t);
void		 locktab_release(struct locktab *, struct lock_req *);
int		 locktab_convert(struct locktab *, struct lock_req *,
		    enum proto_mode, int);
void		 locktab_convert_cancel(struct locktab *, struct lock_req *);
void		 locktab_set_converted_cb(struct locktab *,
		    locktab_converted_cb);
size_t		 locktab_nconverting(const struct locktab *);
void		 locktab_taken(struct locktab *, struct lock *, int);
void		 locktab_joined(struct locktab *, struct lock *);
void		 locktab_retry(struct locktab *);
void		 locktab_expire(struct locktab *);
size_t		 locktab_nidle(const struct locktab *);
size_t		 locktab_close_idle(struct locktab *);
size_t		 locktab_nblocked(const struct locktab *);
size_t		 locktab_nheld(const struct locktab *);
size_t		 locktab_nwaiting(const struct locktab *);
uint64_t	 locktab_granted_total(const struct locktab *);
int64_t		 locktab_next_token(const struct locktab *);
int64_t		 locktab_take_token(struct locktab *);
void		 locktab_set_token_limit(struct locktab *, int64_t);
int		 locktab_explain(struct locktab *, const char *, int, char *,
		    size_t);
int		 locktab_restore_lock(struct locktab *, const char *, void *,
		    struct lock **);
int		 locktab_restore_req(struct lock *, enum proto_mode, int,
		    int64_t, double, void *, struct lock_req **);
void		 locktab_restore_done(struct locktab *);

struct lock	*locktab_find(struct locktab *, const char *);
struct lock	*locktab_first(struct locktab *);
struct lock	*locktab_next(struct lock *);
const char	*lock_name(const struct lock *);
int		 lock_blocked(const struct lock *);
void		*lock_store_state(const struct lock *);
struct lock_req	*lock_first_holder(struct lock *);
struct lock_req	*lock_first_waiter(struct lock *);

struct lock_req	*lock_req_next(struct lock_req *);
int		 lock_req_held(const struct lock_req *);
int		 lock_req_converting(const struct lock_req *);
enum proto_mode	 lock_req_mode(const struct lock_req *);
int64_t		 lock_req_token(const struct lock_req *);
double		 lock_req_since(const struct lock_req *);
int		 lock_req_position(const struct lock_req *);
struct lock	*lock_req_lock(struct lock_req *);
const char	*lock_req_name(const struct lock_req *);
void		*lock_req_arg(const struct lock_req *);
void		 lock_req_notify_contended(struct lock_req *, double);
int		 lock_req_notifies(const struct lock_req *, double *);

/*
 * A lock store: what a lock is underneath the grant rules (a file in the
 * lock dir, a descriptor a client passed, a key elsewhere), chosen when
 * the table is made, as OpenSMTPD chooses a stat_backend.  A store embeds
 * struct lock_store first.  Each lock carries lock_size bytes of the
 * store's own, its state, which every op but open gets.
 *
 * open	    fills a new lock's state for name, from the object a client
 *	    passed for it (NULL for a plain name), which it may take; 0,
 *	    -errno, LOCKTAB_E_MAX_FILES or LOCKTAB_E_MAX_PATHS.  It may call
 *	    locktab_close_idle to give back resources idle locks keep, and
 *	    try again.
 * close    drops whatever the state takes or holds and frees it.
 * take	    takes the lock in mode at once, or converts a take to mode:
 *	    0, or -errno (-EWOULDBLOCK while someone outside the table has
 *	    it).  A failed conversion may leave nothing taken.
 * join	    optional: before a request joins holders already there (a
 *	    shared request under shared holders, or the rest of a shared
 *	    batch): 0 with next_token set for it, or -EWOULDBLOCK to keep
 *	    it waiting.  The store may then call locktab_joined(tab, lock)
 *	    when join would now succeed; if it never does, the request
 *	    waits until the holders are gone and takes the lock anew.
 *	    Without it, requests join at once with the tokens after the
 *	    take's.
 * drop	    gives up the take; the state stays open for later use.
 * wait	    asks for a take in mode that the store ends in its own time,
 *	    from outside any table call: locktab_taken(tab, lock, 0) when
 *	    take(mode) would now succeed at once, or with -errno when it
 *	    cannot.  A new wait replaces the previous one.
 * cancel   ends a wait the table no longer wants; the store reports
 *	    nothing for it afterwards.  It may come after the report.
 * current  whether an idle lock's state may still be used: nonzero, or
 *	    0 to have it closed and opened anew.
 * refresh  before a lock nobody holds is granted anew: 0 if its state is
 *	    fit for it, LOCK_STORE_MOVED if the state was moved to a new
 *	    object (an old wait is void), or -errno if it cannot be, with
 *	    nothing left taken: the lock then waits.
 * resolve  optional: the name under which the table keeps the lock of
 *	    an object a client passed (a descriptor of a file, for the
 *	    file store), written into key as snprintf does: 0, or -errno
 *	    with a sentence for the client in msg.  Two objects that are
 *	    one lock underneath resolve to one name.
 * restore  optional: fills a new lock's state, as open does, from what
 *	    a reload kept of it (a struct lock_store_kept), taking its
 *	    descriptor: 0 or -errno, with the descriptor left to the caller.
 * queued   optional: req starts to wait in the lock's queue, behind its
 *	    take or holders unless it is the first waiter; the store may
 *	    hold a place for it (a key in etcd's queue), to use when req's
 *	    wait or join comes.  req is only a name for the request.
 * left     optional: req left the queue, granted, failed or cancelled;
 *	    the store lets any place it held for req go.
 * convert  optional: changes the take of the lock's holders, all of
 *	    the one request, to mode, never leaving it untaken on the way
 *	    (an outsider must never get in between): 0; -EWOULDBLOCK while
 *	    someone outside the table stands in the way, the take as it
 *	    was; any other -errno if the take was lost, nothing taken.
 *	    Without it, holders cannot convert.
 * explain  optional: why name's object cannot be opened or taken with
 *	    -errno, as one sentence for the client naming the object and
 *	    the fix, written into buf as snprintf does; 0 when the store
 *	    has nothing to add to the errno text.
 *
 * wait, cancel, join, queued and left must not call into the table.
 * The token source is the store's too: the table gives each grant
 * next_token, and counts it up, but never past token_limit.
 */
#define LOCK_STORE_MOVED	1

struct lock_store_ops {
	size_t	 lock_size;
	int	(*open)(struct lock_store *, struct lock *, const char *,
		    void *, void *);
	void	(*close)(void *);
	int	(*take)(void *, enum proto_mode);
	int	(*join)(void *, enum proto_mode);
	void	(*drop)(void *);
	void	(*wait)(void *, enum proto_mode);
	void	(*cancel)(void *);
	int	(*current)(void *);
	int	(*refresh)(void *);
	void	(*queued)(void *, struct lock_req *, enum proto_mode);
	void	(*left)(void *, struct lock_req *);
	int	(*convert)(void *, enum proto_mode);
	int	(*explain)(struct lock_store *, const char *, int, char *,
		    size_t);
	int	(*restore)(struct lock_store *, struct lock *, const char *,
		    void *, void *);
	int	(*resolve)(struct lock_store *, void *, char *, size_t,
		    char *, size_t);
};

/* What a reload kept of a lock underneath: its descriptor and take. */
struct lock_store_kept {
	int			 fd;
	int			 taken;		/* 0, or 1 + enum proto_mode */
};

struct lock_store {
	const struct lock_store_ops	*ops;
	struct locktab			*tab;		/* set by locktab_new */
	int64_t				 next_token;	/* the next grant's */
	int64_t				 token_limit;	/* none above */
};

#endif /* LOCKSD_LOCKTAB_H */
