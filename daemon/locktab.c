/*
 * The lock table: named locks, their holders and FIFO queues of waiters,
 * fencing tokens, and the flock(2) on each lock file that makes broker
 * grants visible to programs outside the broker.  Pure logic: no sockets,
 * no JSON, no event loop.
 *
 * Grant rules.  A request is granted at once only if its lock's queue is
 * empty and it is compatible with the holders (none, or all shared and the
 * request shared); otherwise it joins the tail of the queue.  Whenever the
 * holders or the queue change, the head of the queue is granted if it can
 * be: a shared head brings along the whole run of shared waiters behind
 * it, an exclusive head goes alone, and a shared request never overtakes
 * a queued exclusive one, so writers do not starve.
 *
 * Lock files.  Each lock owns one fd on <dir>/<name>, which carries the
 * flock of all broker holders of that name: LOCK_EX under an exclusive
 * holder, LOCK_SH under shared ones.  Before a grant the fd's flock is
 * made to match with LOCK_NB; if that fails, a process outside the broker
 * holds the file, and the lock is "blocked": its waiters stay queued until
 * locktab_retry (or a change to the queue) finds the file free.  An
 * exclusive-to-exclusive handoff keeps the flock, so no outsider can slip
 * in between two broker holders.
 *
 * Idle locks.  A lock nobody holds or awaits any more drops its flock at
 * once but keeps its open fd for a while, so a name used again soon costs
 * no open(2) and close(2).  Idle locks are invisible to everything but
 * the next acquire; locktab_expire closes those idle since before its
 * previous call, and at most LOCK_IDLE_MAX stay open.  A lock left while
 * an outsider blocked it is closed at once.  The broker never unlinks a
 * lock file; if someone else did (or renamed another over it), the kept
 * fd is dropped when its name is used again, and the name opened anew.
 *
 * Reentrancy.  Grants are reported through granted_cb only after every
 * grant of the operation has been applied and the table is consistent;
 * callbacks run from a table-wide pending list, one at a time, in grant
 * order.  A callback may call any locktab_ or lock_ function except
 * locktab_free: it may acquire, retry, or release any request, including
 * the one just granted.  A request released before its callback ran gets
 * no callback.  The callback must not keep lock or lock_req pointers that
 * a release it makes may free: a released request is kept for reuse by
 * the next acquire, so a stale pointer may name another request.
 */

#include <sys/types.h>
#include <sys/file.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <linux/magic.h>

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"

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

/*
 * O_NONBLOCK keeps a FIFO planted in the lock directory from hanging the
 * daemon in open; it changes nothing for regular files.
 */
#define LOCK_OPEN_FLAGS \
	(O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK)
#define LOCK_FILE_MODE 0644
#define LOCK_IDLE_MAX 1024	/* idle locks whose fd stays open */
#define REQ_SPARE_MAX 64	/* freed requests kept for reuse */
#define LOCK_CTIME_SETTLE 0.1	/* s before a file's ctime vouches for it */

/* The flock(2) state of a lock's fd. */
enum lock_flock {
	LOCK_FLOCK_NONE,
	LOCK_FLOCK_SH,
	LOCK_FLOCK_EX
};

struct lock_req {
	struct lock		*lock;
	enum proto_mode		 mode;
	int			 held;
	int			 pending;	/* callback not yet run */
	int64_t			 token;		/* 0 while waiting */
	double			 since;
	void			*arg;
	TAILQ_ENTRY(lock_req)	 entry;		/* holders or waiters */
	TAILQ_ENTRY(lock_req)	 pending_entry;
};
TAILQ_HEAD(lock_reqs, lock_req);

/*
 * Which file a descriptor is, to tell if the name still leads to it; and
 * the file's ctime when it was last seen there, if that can be trusted.
 */
struct lock_file_id {
	dev_t			 dev;
	ino_t			 ino;
	struct timespec		 seen_ctime;	/* valid if seen */
	int			 seen;
};

struct lock {
	const char		*name;		/* first: lock_cmp */
	struct locktab		*tab;
	int			 fd;
	struct lock_file_id	 file;		/* what fd is */
	enum lock_flock		 flock;
	int			 blocked;	/* by an outsider */
	int			 idle;		/* no holders, no waiters */
	unsigned		 idle_epoch;	/* locktab epoch it went idle */
	enum proto_mode		 blocked_mode;	/* what the head waits for */
	struct lock_reqs	 holders;	/* grant order */
	struct lock_reqs	 waiters;	/* FIFO */
	size_t			 nholders;
	size_t			 nwaiters;
	TAILQ_ENTRY(lock)	 entry;
	TAILQ_ENTRY(lock)	 blocked_entry;
	char			 namebuf[];
};
TAILQ_HEAD(locks, lock);

struct locktab {
	int			 dirfd;
	int64_t			 next_token;
	int64_t			 token_limit;	/* no grant gets a token above */
	int			 token_starved;	/* the limit held a waiter back */
	locktab_granted_cb	 granted_cb;
	locktab_clock		 clock;
	locktab_blocked_cb	 blocked_cb;
	void			*blocked_arg;
	void			*root;		/* tsearch(3) tree */
	struct locks		 locks;
	struct locks		 blocked;
	struct locks		 idle;		/* oldest first */
	struct lock_reqs	 pending;	/* to report */
	struct lock_req		*spare[REQ_SPARE_MAX]; /* freed, for reuse */
	size_t			 nspare;
	unsigned		 epoch;		/* locktab_expire calls */
	size_t			 nidle;
	int			 ctime_fs;	/* ctimes vouch for names */
	size_t			 nfiles;	/* lock files, for max_files */
	size_t			 max_files;
	size_t			 nblocked;
	size_t			 nheld;
	size_t			 nwaiting;
	uint64_t		 granted_total;
};

/* Return the realtime clock in seconds, the default clock. */
static double
locktab_realtime(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_REALTIME, &ts);
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
 * Note which file fd is; a directory is no lock file, so refuse it as
 * open(2) with O_CREAT would.  Returns fd, or -errno with fd closed.
 */
static int
lock_file_id(int fd, struct lock_file_id *ret_id)
{
	struct stat	 sb;
	int		 error;

	if (fstat(fd, &sb) == -1 || S_ISDIR(sb.st_mode)) {
		error = S_ISDIR(sb.st_mode) ? -EISDIR : -errno;
		close(fd);
		return error;
	}
	ret_id->dev = sb.st_dev;
	ret_id->ino = sb.st_ino;
	ret_id->seen = 0;
	return fd;
}

/*
 * Open an existing lock file, or create it while under the file bound:
 * a file created here is counted, one created by someone else is not.
 */
static int
lock_open_file(struct locktab *tab, const char *name,
    struct lock_file_id *ret_id)
{
	int	 fd;

	fd = openat(tab->dirfd, name, LOCK_OPEN_FLAGS, 0);
	if (fd >= 0)
		return lock_file_id(fd, ret_id);
	if (errno != ENOENT)
		return -errno;
	if (tab->nfiles >= tab->max_files)
		return LOCKTAB_E_MAX_FILES;
	fd = openat(tab->dirfd, name, LOCK_OPEN_FLAGS | O_CREAT | O_EXCL,
	    LOCK_FILE_MODE);
	if (fd >= 0) {
		tab->nfiles++;
		return lock_file_id(fd, ret_id);
	}
	/* Someone else created it in between: it is theirs, just open it. */
	if (errno == EEXIST &&
	    (fd = openat(tab->dirfd, name, LOCK_OPEN_FLAGS, 0)) >= 0)
		return lock_file_id(fd, ret_id);
	return -errno;
}

/*
 * Open name's lock file, creating it if missing and the file bound
 * allows; out of descriptors, give back the idle ones and try once more.
 * Returns the fd, LOCKTAB_E_MAX_FILES past the file bound, or -errno.
 */
static int
lock_open(struct locktab *tab, const char *name, struct lock_file_id *ret_id)
{
	int	 fd, tries;

	for (tries = 0; tries < 2; tries++) {
		if ((fd = lock_open_file(tab, name, ret_id)) >= 0)
			return fd;
		if ((fd != -EMFILE && fd != -ENFILE) ||
		    locktab_close_idle(tab) == 0)
			break;
	}
	return fd;
}

/* Create a lock entry for name and open its lock file. */
static int
lock_new(struct locktab *tab, const char *name, struct lock **ret_lock)
{
	struct lock_file_id	 file;
	struct lock		*lock;
	size_t			 len;
	int			 fd;

	if ((fd = lock_open(tab, name, &file)) < 0)
		return fd;
	len = strlen(name);
	if ((lock = calloc(1, sizeof *lock + len + 1)) == NULL) {
		close(fd);
		return -ENOMEM;
	}
	memcpy(lock->namebuf, name, len + 1);
	lock->name = lock->namebuf;
	lock->tab = tab;
	lock->fd = fd;
	lock->file = file;
	lock->flock = LOCK_FLOCK_NONE;
	TAILQ_INIT(&lock->holders);
	TAILQ_INIT(&lock->waiters);
	if (tsearch(lock, &tab->root, lock_cmp) == NULL) {
		close(lock->fd);
		free(lock);
		return -ENOMEM;
	}
	TAILQ_INSERT_TAIL(&tab->locks, lock, entry);
	*ret_lock = lock;
	return 0;
}

/*
 * Mark a lock blocked by an outside holder (with the mode its head waits
 * for), or no longer blocked, and tell the blocked callback of a change.
 */
static void
lock_set_blocked(struct lock *lock, int blocked, enum proto_mode mode)
{
	struct locktab	*tab = lock->tab;

	if (lock->blocked == blocked && (!blocked || lock->blocked_mode == mode))
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
	if (tab->blocked_cb != NULL)
		tab->blocked_cb(lock, blocked, mode, tab->blocked_arg);
}

/* Drop the flock the lock's fd holds, if any. */
static void
lock_unflock(struct lock *lock)
{
	if (lock->flock == LOCK_FLOCK_NONE)
		return;
	flock(lock->fd, LOCK_UN);
	lock->flock = LOCK_FLOCK_NONE;
}

/* Remove an empty lock from the table, unlock and close its file. */
static void
lock_free(struct lock *lock)
{
	struct locktab	*tab = lock->tab;

	lock_set_blocked(lock, 0, PROTO_EXCLUSIVE);
	tdelete(lock, &tab->root, lock_cmp);
	if (lock->idle) {
		TAILQ_REMOVE(&tab->idle, lock, entry);
		tab->nidle--;
	} else
		TAILQ_REMOVE(&tab->locks, lock, entry);
	lock_unflock(lock);
	close(lock->fd);
	free(lock);
}

/*
 * A lock nobody holds or awaits any more: drop its flock, and keep its fd
 * for the next acquire unless an outsider was in the way.
 */
static void
lock_retire(struct lock *lock)
{
	struct locktab	*tab = lock->tab;

	if (lock->blocked) {
		lock_free(lock);
		return;
	}
	lock_unflock(lock);
	TAILQ_REMOVE(&tab->locks, lock, entry);
	TAILQ_INSERT_TAIL(&tab->idle, lock, entry);
	lock->idle = 1;
	lock->idle_epoch = tab->epoch;
	if (++tab->nidle > LOCK_IDLE_MAX)
		lock_free(TAILQ_FIRST(&tab->idle));
}

/*
 * Whether a ctime may vouch for the file later: unlink, link and rename
 * all update the ctime of the file they touch on these file systems, and
 * a ctime at least LOCK_CTIME_SETTLE old is one no later change can
 * repeat, however coarse the file system's clock.
 */
static int
lock_ctime_trusted(const struct locktab *tab, const struct timespec *ctime)
{
	struct timespec	 now;
	double		 age;

	if (!tab->ctime_fs || clock_gettime(CLOCK_REALTIME_COARSE, &now) == -1)
		return 0;
	age = (double)(now.tv_sec - ctime->tv_sec) +
	    (now.tv_nsec - ctime->tv_nsec) / 1e9;
	return age > LOCK_CTIME_SETTLE;
}

/*
 * Whether the lock's fd no longer is the file at its name: unlinked,
 * renamed away, or replaced.  Its flock would then exclude nobody who
 * opens the name anew.  A file whose ctime has not moved since it was
 * last seen at the name is still there: that costs one fstat; else the
 * name is looked up.
 */
static int
lock_stale(struct lock *lock)
{
	struct lock_file_id	*file = &lock->file;
	struct stat		 fd_sb, path_sb;

	if (fstat(lock->fd, &fd_sb) == -1 || fd_sb.st_nlink == 0)
		return 1;
	if (file->seen && fd_sb.st_ctim.tv_sec == file->seen_ctime.tv_sec &&
	    fd_sb.st_ctim.tv_nsec == file->seen_ctime.tv_nsec)
		return 0;
	/* The fstat comes first: a change after it moves the ctime. */
	if (fstatat(lock->tab->dirfd, lock->name, &path_sb,
	    AT_SYMLINK_NOFOLLOW) == -1 || path_sb.st_dev != file->dev ||
	    path_sb.st_ino != file->ino)
		return 1;
	file->seen = lock_ctime_trusted(lock->tab, &fd_sb.st_ctim);
	file->seen_ctime = fd_sb.st_ctim;
	return 0;
}

/*
 * Move a lock nobody holds onto the file now at its name, dropping the
 * old file, its flock and any watch on it; -errno if the name cannot be
 * opened, with nothing changed.
 */
static int
lock_reopen(struct lock *lock)
{
	struct lock_file_id	 file;
	int			 fd;

	if ((fd = lock_open(lock->tab, lock->name, &file)) < 0)
		return fd;
	/* A watch on the old file would hand back a flock on it. */
	lock_set_blocked(lock, 0, PROTO_EXCLUSIVE);
	lock_unflock(lock);
	close(lock->fd);
	lock->fd = fd;
	lock->file = file;
	return 0;
}

/*
 * Before a lock nobody holds is granted anew: make sure it is on the file
 * now at its name.  Returns 0 if it is, or -1 if that file cannot be
 * opened; the lock then keeps nothing on the old file and waits, blocked,
 * for a watch or the retry to find the name openable.
 */
static int
lock_follow_name(struct lock *lock)
{
	struct lock_req	*head = TAILQ_FIRST(&lock->waiters);

	if (!lock_stale(lock) || lock_reopen(lock) == 0)
		return 0;
	lock_unflock(lock);
	/* Anew, so that a watch starts on the name even if one just ended. */
	lock_set_blocked(lock, 0, PROTO_EXCLUSIVE);
	lock_set_blocked(lock, 1, head != NULL ? head->mode : PROTO_EXCLUSIVE);
	return -1;
}

/*
 * Put an idle lock back in use, or free it if its file lost its name;
 * returns the lock, or NULL when it was freed.
 */
static struct lock *
lock_revive(struct lock *lock)
{
	struct locktab	*tab = lock->tab;

	if (lock_stale(lock)) {
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

/* Make the lock file's flock match mode; -errno if an outsider has it. */
static int
lock_flock_set(struct lock *lock, enum proto_mode mode)
{
	enum lock_flock	 want;
	int		 op, error;

	if (mode == PROTO_SHARED) {
		want = LOCK_FLOCK_SH;
		op = LOCK_SH;
	} else {
		want = LOCK_FLOCK_EX;
		op = LOCK_EX;
	}
	if (lock->flock == want)
		return 0;
	if (flock(lock->fd, op | LOCK_NB) == -1) {
		/* A failed conversion may have dropped the lock we had. */
		error = errno;
		lock->flock = LOCK_FLOCK_NONE;
		return -error;
	}
	lock->flock = want;
	return 0;
}

/* Return nonzero if a request of mode may join the holders right now. */
static int
lock_compatible(struct lock *lock, enum proto_mode mode)
{
	struct lock_req	*holder;

	if ((holder = TAILQ_FIRST(&lock->holders)) == NULL)
		return 1;
	return holder->mode == PROTO_SHARED && mode == PROTO_SHARED;
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
}

/* Take a request out of the lock's queue. */
static void
lock_dequeue(struct lock *lock, struct lock_req *req)
{
	TAILQ_REMOVE(&lock->waiters, req, entry);
	lock->nwaiters--;
	lock->tab->nwaiting--;
}

/* Make a request a holder and queue its granted callback. */
static void
lock_hold(struct lock *lock, struct lock_req *req)
{
	struct locktab	*tab = lock->tab;

	req->held = 1;
	req->token = tab->next_token++;
	req->since = tab->clock();
	TAILQ_INSERT_TAIL(&lock->holders, req, entry);
	lock->nholders++;
	tab->nheld++;
	tab->granted_total++;
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
	struct lock_req	*req;
	enum proto_mode	 mode;

	if ((req = TAILQ_FIRST(&lock->waiters)) == NULL)
		return;
	if (!lock_compatible(lock, req->mode))
		return;
	mode = req->mode;
	if (lock_flock_set(lock, mode) != 0) {
		lock_set_blocked(lock, 1, mode);
		return;
	}
	lock_set_blocked(lock, 0, mode);
	do {
		/* Out of tokens: keep the flock, grant on a higher limit. */
		if (lock->tab->next_token > lock->tab->token_limit) {
			lock->tab->token_starved = 1;
			return;
		}
		lock_dequeue(lock, req);
		lock_hold(lock, req);
	} while (mode == PROTO_SHARED &&
	    (req = TAILQ_FIRST(&lock->waiters)) != NULL &&
	    req->mode == PROTO_SHARED);
}

/* Run the granted callbacks of every pending grant, in grant order. */
static void
locktab_dispatch(struct locktab *tab)
{
	struct lock_req	*req;

	/* Reread the head each time: a callback may change the list. */
	while ((req = TAILQ_FIRST(&tab->pending)) != NULL) {
		TAILQ_REMOVE(&tab->pending, req, pending_entry);
		req->pending = 0;
		if (tab->granted_cb != NULL)
			tab->granted_cb(req, req->arg);
	}
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
 * Whether the lock directory's file system is one known to update a
 * file's ctime on unlink, link and rename (POSIX leaves rename open).
 */
static int
lock_dir_keeps_ctimes(int dirfd)
{
	struct statfs	 sfs;

	if (fstatfs(dirfd, &sfs) == -1)
		return 0;
	switch ((unsigned long)sfs.f_type) {
	case TMPFS_MAGIC:
	case EXT4_SUPER_MAGIC:
	case XFS_SUPER_MAGIC:
	case BTRFS_SUPER_MAGIC:
		return 1;
	default:
		return 0;
	}
}

/* Create an empty lock table over an open lock directory. */
struct locktab *
locktab_new(int dirfd, int64_t first_token, locktab_granted_cb granted_cb,
    locktab_clock clock)
{
	struct locktab	*tab;

	if ((tab = calloc(1, sizeof *tab)) == NULL)
		return NULL;
	tab->dirfd = dirfd;
	tab->next_token = first_token;
	tab->token_limit = INT64_MAX;
	tab->granted_cb = granted_cb;
	tab->clock = clock != NULL ? clock : locktab_realtime;
	tab->root = NULL;
	tab->max_files = SIZE_MAX;
	tab->ctime_fs = lock_dir_keeps_ctimes(dirfd);
	TAILQ_INIT(&tab->locks);
	TAILQ_INIT(&tab->blocked);
	TAILQ_INIT(&tab->idle);
	TAILQ_INIT(&tab->pending);
	return tab;
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
	locktab_close_idle(tab);
	while (tab->nspare > 0) {
		req = tab->spare[--tab->nspare];
		ASAN_UNPOISON_MEMORY_REGION(req, sizeof *req);
		free(req);
	}
	free(tab);
}

/*
 * Ask for name in mode.  Returns 0 and sets *ret_req, granted or queued;
 * an immediate grant's callback has run by then (with *ret_req already
 * set, so a callback that releases the request leaves it dangling).
 * With try_only, -EWOULDBLOCK if it cannot be granted at once;
 * LOCKTAB_E_NO_TOKENS if it could be but the token limit is reached;
 * LOCKTAB_E_MAX_FILES if its file would be one too many; -errno if the
 * lock file cannot be opened or locked.  Nothing is left behind on
 * failure.
 */
int
locktab_acquire(struct locktab *tab, const char *name, enum proto_mode mode,
    int try_only, void *arg, struct lock_req **ret_req)
{
	struct lock	*lock;
	struct lock_req	*req;
	int		 error;

	if ((req = req_new(tab)) == NULL)
		return -ENOMEM;
	if ((lock = lock_lookup(tab, name)) != NULL && lock->idle)
		lock = lock_revive(lock);
	if (lock == NULL && (error = lock_new(tab, name, &lock)) != 0) {
		req_free(tab, req);
		return error;
	}
	req->lock = lock;
	req->mode = mode;
	req->arg = arg;

	if (TAILQ_EMPTY(&lock->waiters) && lock_compatible(lock, mode)) {
		/* Under shared holders the fd is already LOCK_SH: no call. */
		if (tab->next_token > tab->token_limit)
			error = LOCKTAB_E_NO_TOKENS;
		else if ((error = lock_flock_set(lock, mode)) == 0) {
			lock_hold(lock, req);
			*ret_req = req;
			locktab_dispatch(tab);
			return 0;
		}
		if (try_only || error != -EWOULDBLOCK) {
			req_free(tab, req);
			if (lock->nholders == 0 && lock->nwaiters == 0)
				lock_free(lock);
			return error;
		}
		lock_enqueue(lock, req);
		lock_set_blocked(lock, 1, mode);
	} else if (try_only) {
		/* The lock has holders or waiters, so it stays. */
		req_free(tab, req);
		return -EWOULDBLOCK;
	} else
		lock_enqueue(lock, req);
	*ret_req = req;
	return 0;
}

/*
 * Release a held request or cancel a waiting one, grant whatever that
 * lets through, and free the request.
 */
void
locktab_release(struct locktab *tab, struct lock_req *req)
{
	struct lock	*lock;

	if (req == NULL)
		return;
	lock = req->lock;
	if (req->pending) {
		TAILQ_REMOVE(&tab->pending, req, pending_entry);
		req->pending = 0;
	}
	if (req->held) {
		TAILQ_REMOVE(&lock->holders, req, entry);
		lock->nholders--;
		tab->nheld--;
	} else
		lock_dequeue(lock, req);
	req_free(tab, req);

	/*
	 * With waiters left, keep the flock and hand it straight over, so an
	 * outsider cannot slip in on an exclusive handoff; but if the file at
	 * the name was replaced meanwhile, the next holder must wait for a
	 * flock on the new one.
	 */
	if (lock->nholders == 0 && lock->nwaiters == 0)
		lock_retire(lock);
	else if (lock->nholders > 0 || lock_follow_name(lock) == 0)
		lock_grant(lock);
	locktab_dispatch(tab);
}

/*
 * Close the idle locks that were idle already at the previous call, so
 * that, called every second, an unused lock file stays open 1 to 2 s.
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

/* Close every idle lock's fd now; return how many were closed. */
size_t
locktab_close_idle(struct locktab *tab)
{
	size_t	 n = tab->nidle;

	while (!TAILQ_EMPTY(&tab->idle))
		lock_free(TAILQ_FIRST(&tab->idle));
	return n;
}

/*
 * Bound the lock files the table may create to max, counting those the
 * directory holds already (dot-files are no lock's); -errno if it cannot
 * be read.
 */
int
locktab_set_max_files(struct locktab *tab, size_t max)
{
	struct dirent	*de;
	DIR		*dir;
	size_t		 n = 0;
	int		 fd;

	if ((fd = openat(tab->dirfd, ".", O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) == -1)
		return -errno;
	if ((dir = fdopendir(fd)) == NULL) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] != '.')
			n++;
	}
	closedir(dir);
	tab->nfiles = n;
	tab->max_files = max;
	return 0;
}

/* Return how many lock files the table counts against its bound. */
size_t
locktab_nfiles(const struct locktab *tab)
{
	return tab->nfiles;
}

/* Return how many idle locks keep their fd open. */
size_t
locktab_nidle(const struct locktab *tab)
{
	return tab->nidle;
}

/*
 * Be told whenever a lock becomes blocked by an outside holder (with the
 * mode its head waits for), changes that mode, or stops being blocked
 * (also when it is freed).  The callback runs inside table operations and
 * must not call back into the table.
 */
void
locktab_set_blocked_cb(struct locktab *tab, locktab_blocked_cb cb, void *arg)
{
	tab->blocked_cb = cb;
	tab->blocked_arg = arg;
}

/*
 * Hand a blocked lock a descriptor of its file that already holds the
 * flock in mode (taken by a blocking flock elsewhere), so the grant needs
 * no second try that an outsider could race.  The table owns fd after.
 */
void
locktab_adopt(struct locktab *tab, struct lock *lock, int fd,
    enum proto_mode mode)
{
	struct lock_file_id	 file;

	if (!lock->blocked || lock->nholders != 0) {
		close(fd);
		return;
	}
	if (lock_file_id(fd, &file) < 0)
		return;
	close(lock->fd);
	lock->fd = fd;
	lock->file = file;
	lock->flock = mode == PROTO_SHARED ? LOCK_FLOCK_SH : LOCK_FLOCK_EX;
	/* The watch opened the name long ago: it may name another file now. */
	if (lock_follow_name(lock) == 0)
		lock_grant(lock);
	locktab_dispatch(tab);
}

/* Whether an outside holder keeps the lock's queue waiting. */
int
lock_blocked(const struct lock *lock)
{
	return lock->blocked;
}

/* Try again to grant every lock blocked by an outside holder. */
void
locktab_retry(struct locktab *tab)
{
	struct lock	*lock, *next, *last;

	/*
	 * lock_grant and lock_follow_name may unlink lock from the blocked
	 * list, or move it to the tail, never free it: each lock blocked now
	 * is tried once.
	 */
	last = TAILQ_LAST(&tab->blocked, locks);
	for (lock = TAILQ_FIRST(&tab->blocked); lock != NULL; lock = next) {
		next = lock == last ? NULL : TAILQ_NEXT(lock, blocked_entry);
		if (lock->nholders > 0 || lock_follow_name(lock) == 0)
			lock_grant(lock);
	}
	locktab_dispatch(tab);
}

/* Return how many locks wait for an outside holder. */
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

	tab->token_limit = limit;
	if (!tab->token_starved || tab->next_token > limit)
		return;
	tab->token_starved = 0;
	/* lock_grant never frees a lock nor moves it off this list. */
	TAILQ_FOREACH(lock, &tab->locks, entry) {
		if (lock->nwaiters > 0 &&
		    (lock->nholders > 0 || lock_follow_name(lock) == 0))
			lock_grant(lock);
	}
	locktab_dispatch(tab);
}

/* Return the token the next grant will get. */
int64_t
locktab_next_token(const struct locktab *tab)
{
	return tab->next_token;
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

/* Return the fd of a lock's file. */
int
lock_fd(const struct lock *lock)
{
	return lock->fd;
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
