/*
 * The file store: the lock store under the lock table that backs each
 * lock with a file in the lock directory, so that broker grants are
 * visible to programs outside the broker.
 *
 * Lock files.  Each lock owns one fd on <dir>/<name>, which carries the
 * flock of all broker holders of that name: LOCK_EX under an exclusive
 * holder, LOCK_SH under shared ones.  A take makes the fd's flock match
 * with LOCK_NB; if that fails, a process outside the broker holds the
 * file, and the table waits: a watch thread (watch.c) sits in a blocking
 * flock and hands its descriptor over (store_file_adopt), and locks
 * blocked beyond the watch threads are polled every RETRY_USEC instead.
 * An exclusive-to-exclusive handoff keeps the flock, so no outsider can
 * slip in between two broker holders.
 *
 * Conversions.  Linux converts a flock in one step when it can, but a
 * LOCK_EX | LOCK_NB that fails has already dropped the LOCK_SH it was to
 * replace, so an outsider's flock -x could get in, and an outsider's
 * flock -s would see the broker holding nothing.  An upgrade is therefore
 * tried only when /proc/locks shows no flock on the file but the broker's
 * own; while an outsider holds it, the table waits, shared, and polls.  If
 * one comes in between the look and the try (a window of two system
 * calls), LOCK_SH is taken back at once; only if an outsider got LOCK_EX
 * in that window too is the take lost (file_lock_convert).
 *
 * Idle locks keep their fd, without a flock, so a name used again soon
 * costs no open(2) and close(2).  The broker never unlinks a lock file;
 * if someone else did (or renamed another over it), the kept fd no longer
 * excludes anyone who opens the name, so it is dropped when the name is
 * used again, and the name opened anew.
 *
 * Path locks.  A client may also lock any file it can open itself: it
 * passes the descriptor, and the lock is kept under the file's identity,
 * "/DEV:INO" in hex (no name holds a '/'), on that descriptor.  A path to
 * a lock file that is open under its name, or that sits in the lock dir
 * under a valid name, resolves to the name instead: one file, one queue.
 * The daemon never opens a client's path, and refuses file systems whose
 * flock(2) is emulated per process, where all its clients would be one
 * owner.  Path locks are not watched by a thread (that would need a second
 * open of the client's file); the retry poll serves them.
 *
 * Files are counted for --max-lock-files, and the fencing tokens come
 * from a counter seeded by the caller (from the lock dir's token file).
 */

#include <sys/types.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <linux/magic.h>

#include <dirent.h>
#include <search.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "daemon.h"

/*
 * O_NONBLOCK keeps a FIFO planted in the lock directory from hanging the
 * daemon in open; it changes nothing for regular files.
 */
#define LOCK_OPEN_FLAGS \
	(O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK)
#define LOCK_FILE_MODE 0644
#define LOCK_CTIME_SETTLE 0.1	/* s before a file's ctime vouches for it */
#define RETRY_USEC	50000	/* poll unwatched outside holders */

/* The flock(2) state of a lock's fd. */
enum lock_flock {
	LOCK_FLOCK_NONE,
	LOCK_FLOCK_SH,
	LOCK_FLOCK_EX
};

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

/* One lock's file: the state the lock table keeps for the store. */
struct file_lock {
	struct store_file	*store;
	struct lock		*lock;
	const char		*name;		/* the lock's */
	int			 fd;
	struct lock_file_id	 file;		/* what fd is */
	enum lock_flock		 flock;
	int			 by_fd;		/* a client's file, no name */
};

struct store_file {
	struct lock_store	 base;		/* first: the table's view */
	int			 dirfd;
	const char		*dir;		/* its path, for messages */
	int			 ctime_fs;	/* ctimes vouch for names */
	size_t			 nfiles;	/* lock files, for max_files */
	size_t			 max_files;
	store_file_blocked_cb	 blocked_cb;
	void			*blocked_arg;
	struct watcher		*watcher;	/* NULL without an event loop */
	struct event		*retry_ev;
	int			 retry_armed;	/* retry_ev is pending */
	void			*by_file;	/* tsearch(3): locks by file
						   identity */
	dev_t			 local_dev;	/* a device known local */
	int			 local_dev_known;
	size_t			 npaths;	/* clients' files kept open */
	size_t			 max_paths;
};

static const struct lock_store_ops store_file_ops;

static void	file_lock_index(struct file_lock *);
static void	file_lock_unindex(struct file_lock *);

/*
 * Note which file fd is; a directory is no lock file, so refuse it as
 * open(2) with O_CREAT would.  Returns fd, or -errno with fd closed.
 */
static int
file_id(int fd, struct lock_file_id *ret_id)
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
store_file_open_file(struct store_file *sf, const char *name,
    struct lock_file_id *ret_id)
{
	int	 fd;

	fd = openat(sf->dirfd, name, LOCK_OPEN_FLAGS, 0);
	if (fd >= 0)
		return file_id(fd, ret_id);
	if (errno != ENOENT)
		return -errno;
	if (sf->nfiles >= sf->max_files)
		return LOCKTAB_E_MAX_FILES;
	fd = openat(sf->dirfd, name, LOCK_OPEN_FLAGS | O_CREAT | O_EXCL,
	    LOCK_FILE_MODE);
	if (fd >= 0) {
		sf->nfiles++;
		return file_id(fd, ret_id);
	}
	/* Someone else created it in between: it is theirs, just open it. */
	if (errno == EEXIST &&
	    (fd = openat(sf->dirfd, name, LOCK_OPEN_FLAGS, 0)) >= 0)
		return file_id(fd, ret_id);
	return -errno;
}

/*
 * Open name's lock file, creating it if missing and the file bound
 * allows; out of descriptors, give back the idle ones and try once more.
 * Returns the fd, LOCKTAB_E_MAX_FILES past the file bound, or -errno.
 */
static int
store_file_open(struct store_file *sf, const char *name,
    struct lock_file_id *ret_id)
{
	int	 fd, tries;

	for (tries = 0; tries < 2; tries++) {
		if ((fd = store_file_open_file(sf, name, ret_id)) >= 0)
			return fd;
		if ((fd != -EMFILE && fd != -ENFILE) ||
		    locktab_close_idle(sf->base.tab) == 0)
			break;
	}
	return fd;
}

/* Drop the flock the lock's fd holds, if any. */
static void
file_lock_drop(void *state)
{
	struct file_lock	*fl = state;

	if (fl->flock == LOCK_FLOCK_NONE)
		return;
	flock(fl->fd, LOCK_UN);
	fl->flock = LOCK_FLOCK_NONE;
}

/* Make the lock file's flock match mode; -errno if an outsider has it. */
static int
file_lock_take(void *state, enum proto_mode mode)
{
	struct file_lock	*fl = state;
	enum lock_flock		 want;
	int			 op, error;

	if (mode == PROTO_SHARED) {
		want = LOCK_FLOCK_SH;
		op = LOCK_SH;
	} else {
		want = LOCK_FLOCK_EX;
		op = LOCK_EX;
	}
	if (fl->flock == want)
		return 0;
	if (flock(fl->fd, op | LOCK_NB) == -1) {
		/* A failed conversion may have dropped the lock we had. */
		error = errno;
		fl->flock = LOCK_FLOCK_NONE;
		return -error;
	}
	fl->flock = want;
	return 0;
}

/* Arm the retry poll now, for an upgrade an outsider holds up. */
static void
store_file_poll_now(struct store_file *sf)
{
	struct timeval	 tv = { 0, RETRY_USEC };

	if (sf->retry_ev != NULL && !sf->retry_armed) {
		evtimer_add(sf->retry_ev, &tv);
		sf->retry_armed = 1;
	}
}

/*
 * The store's convert, for the table's only holder: a downgrade cannot
 * fail (nobody else holds the file while the broker has it exclusive)
 * and the kernel makes it in one step; an upgrade, see "Conversions".
 */
static int
file_lock_convert(void *state, enum proto_mode mode)
{
	struct file_lock	*fl = state;

	if (mode == PROTO_SHARED)
		return file_lock_take(fl, mode);
	if (fl->flock == LOCK_FLOCK_EX)
		return 0;
	if (outside_flocks_on(fl->file.dev, fl->file.ino) != 1) {
		store_file_poll_now(fl->store);
		return -EWOULDBLOCK;
	}
	if (flock(fl->fd, LOCK_EX | LOCK_NB) == 0) {
		fl->flock = LOCK_FLOCK_EX;
		return 0;
	}
	if (errno == EWOULDBLOCK && flock(fl->fd, LOCK_SH | LOCK_NB) == 0) {
		log_warnx("upgrade of %s: an outside flock came in between, "
		    "shared lock taken back", fl->name);
		store_file_poll_now(fl->store);
		return -EWOULDBLOCK;
	}
	log_warnx("upgrade of %s: lost to an outside flock", fl->name);
	fl->flock = LOCK_FLOCK_NONE;
	return -ENOLCK;
}

/*
 * Whether a ctime may vouch for the file later: unlink, link and rename
 * all update the ctime of the file they touch on these file systems, and
 * a ctime at least LOCK_CTIME_SETTLE old is one no later change can
 * repeat, however coarse the file system's clock.
 */
static int
file_ctime_trusted(const struct store_file *sf, const struct timespec *ctime)
{
	struct timespec	 now;
	double		 age;

	if (!sf->ctime_fs || clock_gettime(CLOCK_REALTIME_COARSE, &now) == -1)
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
file_lock_stale(struct file_lock *fl)
{
	struct lock_file_id	*file = &fl->file;
	struct stat		 fd_sb, path_sb;

	if (fstat(fl->fd, &fd_sb) == -1 || fd_sb.st_nlink == 0)
		return 1;
	if (file->seen && fd_sb.st_ctim.tv_sec == file->seen_ctime.tv_sec &&
	    fd_sb.st_ctim.tv_nsec == file->seen_ctime.tv_nsec)
		return 0;
	/* The fstat comes first: a change after it moves the ctime. */
	if (fstatat(fl->store->dirfd, fl->name, &path_sb,
	    AT_SYMLINK_NOFOLLOW) == -1 || path_sb.st_dev != file->dev ||
	    path_sb.st_ino != file->ino)
		return 1;
	file->seen = file_ctime_trusted(fl->store, &fd_sb.st_ctim);
	file->seen_ctime = fd_sb.st_ctim;
	return 0;
}

/*
 * Move a lock nobody holds onto the file now at its name, dropping the
 * old file and its flock; -errno if the name cannot be opened, with
 * nothing changed.
 */
static int
file_lock_reopen(struct file_lock *fl)
{
	struct lock_file_id	 file;
	int			 fd;

	if ((fd = store_file_open(fl->store, fl->name, &file)) < 0)
		return fd;
	file_lock_drop(fl);
	file_lock_unindex(fl);
	close(fl->fd);
	fl->fd = fd;
	fl->file = file;
	file_lock_index(fl);
	return 0;
}

/*
 * Before a lock nobody holds is granted anew: make sure it is on the file
 * now at its name.  If that file cannot be opened, the lock keeps nothing
 * on the old file and waits for a watch or the retry to find the name
 * openable.
 */
static int
file_lock_refresh(void *state)
{
	struct file_lock	*fl = state;
	int			 error;

	/* A path lock is its file, whatever names lead to it now. */
	if (fl->by_fd || !file_lock_stale(fl))
		return 0;
	if ((error = file_lock_reopen(fl)) == 0)
		return LOCK_STORE_MOVED;
	file_lock_drop(fl);
	return error;
}

/* An idle lock's fd may be taken again if its file is still at the name. */
static int
file_lock_current(void *state)
{
	struct file_lock	*fl = state;

	return fl->by_fd || !file_lock_stale(fl);
}

/* Order two file identities: by device, then inode. */
int
file_id_cmp(uint64_t dev_a, uint64_t ino_a, uint64_t dev_b, uint64_t ino_b)
{
	if (dev_a != dev_b)
		return dev_a < dev_b ? -1 : 1;
	if (ino_a != ino_b)
		return ino_a < ino_b ? -1 : 1;
	return 0;
}

/* Order name locks by the identity of their file. */
static int
file_lock_id_cmp(const void *a, const void *b)
{
	const struct lock_file_id	*x = &((const struct file_lock *)a)->file;
	const struct lock_file_id	*y = &((const struct file_lock *)b)->file;

	return file_id_cmp(x->dev, x->ino, y->dev, y->ino);
}

/*
 * Index a lock by its file, so that a path to that file finds it (a
 * name lock, or a path lock at once, idle too); of two locks on one file
 * (a hard link), the first keeps the entry.
 */
static void
file_lock_index(struct file_lock *fl)
{
	void	*node;

	if ((node = tsearch(fl, &fl->store->by_file,
	    file_lock_id_cmp)) == NULL)
		log_warnx("out of memory indexing lock files");
}

/* Take a name lock out of the index, if the entry is its own. */
static void
file_lock_unindex(struct file_lock *fl)
{
	void	*node;

	if ((node = tfind(fl, &fl->store->by_file,
	    file_lock_id_cmp)) == NULL || *(struct file_lock **)node != fl)
		return;
	tdelete(fl, &fl->store->by_file, file_lock_id_cmp);
}

/*
 * A path lock keeps the descriptor its client passed: *object, which
 * becomes the store's (-1 left behind).
 */
static int
file_lock_adopt_fd(struct file_lock *fl, int *object)
{
	struct store_file	*sf = fl->store;
	struct stat		 sb;

	if (object == NULL || *object < 0 || fstat(*object, &sb) == -1)
		return -EBADF;
	/* Idle locks give theirs back first. */
	if (sf->npaths >= sf->max_paths && (locktab_close_idle(sf->base.tab)
	    == 0 || sf->npaths >= sf->max_paths))
		return LOCKTAB_E_MAX_PATHS;
	sf->npaths++;
	fl->fd = *object;
	*object = -1;
	fl->file.dev = sb.st_dev;
	fl->file.ino = sb.st_ino;
	fl->file.seen = 0;
	fl->by_fd = 1;
	file_lock_index(fl);
	return 0;
}

/* Open the file of a new lock: the name's, or the one a client passed. */
static int
file_lock_open(struct lock_store *store, struct lock *lock, const char *name,
    void *object, void *state)
{
	struct store_file	*sf = (struct store_file *)store;
	struct file_lock	*fl = state;
	int			 fd;

	fl->store = sf;
	fl->lock = lock;
	fl->name = name;
	fl->flock = LOCK_FLOCK_NONE;
	if (name[0] == '/')
		return file_lock_adopt_fd(fl, object);
	if ((fd = store_file_open(sf, name, &fl->file)) < 0)
		return fd;
	fl->fd = fd;
	fl->by_fd = 0;
	file_lock_index(fl);
	return 0;
}

/* Unlock and close a lock's file. */
static void
file_lock_close(void *state)
{
	struct file_lock	*fl = state;

	file_lock_unindex(fl);
	file_lock_drop(fl);
	close(fl->fd);
	if (fl->by_fd)
		fl->store->npaths--;
}

/*
 * Poll for outside holders only while some blocked lock has no watch
 * thread (more blocked locks than watch threads).
 */
static void
store_file_poll(struct store_file *sf)
{
	struct timeval	 tv = { 0, RETRY_USEC };

	if (sf->retry_ev == NULL || sf->base.tab == NULL)
		return;
	/* A flag, not libevent, says if it is armed: this runs often. */
	if (locktab_nblocked(sf->base.tab) <= watcher_nwatching(sf->watcher) &&
	    locktab_nconverting(sf->base.tab) == 0) {
		if (sf->retry_armed)
			evtimer_del(sf->retry_ev);
		sf->retry_armed = 0;
	} else if (!sf->retry_armed) {
		evtimer_add(sf->retry_ev, &tv);
		sf->retry_armed = 1;
	}
}

/* Retry locks that a process outside the broker holds. */
static void
store_file_retry_cb(evutil_socket_t fd, short events, void *arg)
{
	struct store_file	*sf = arg;

	(void)fd;
	(void)events;
	sf->retry_armed = 0;
	locktab_retry(sf->base.tab);
	store_file_poll(sf);
}

/* Tell the watch helper a lock waits for an outsider, or no longer does. */
static void
file_lock_blocked(struct file_lock *fl, int blocked, enum proto_mode mode)
{
	struct store_file	*sf = fl->store;

	/* A watch opens the name; a path lock has none, so it is polled. */
	if (sf->blocked_cb != NULL && !fl->by_fd)
		sf->blocked_cb(fl->lock, blocked, mode, sf->blocked_arg);
	store_file_poll(sf);
}

/* The table waits for an outsider to let go of the file: watch it. */
static void
file_lock_wait(void *state, enum proto_mode mode)
{
	file_lock_blocked(state, 1, mode);
}

/* The table no longer waits: stop watching. */
static void
file_lock_cancel(void *state)
{
	file_lock_blocked(state, 0, PROTO_EXCLUSIVE);
}

/* Write uid's user name, or its number if it has none, into buf. */
static void
store_file_user(uid_t uid, char *buf, size_t size)
{
	struct passwd	*pw;

	/* Only on a failed open, so a slow name service costs little. */
	if ((pw = getpwuid(uid)) != NULL)
		snprintf(buf, size, "%s", pw->pw_name);
	else
		snprintf(buf, size, "uid %ld", (long)uid);
}

/*
 * Why the broker may not open or create name's lock file: a file it may
 * not read (a root job's umask 077 makes one), or a directory it may not
 * write.  Only permission errors; the errno text says enough otherwise.
 */
static int
file_lock_explain(struct lock_store *store, const char *name, int error,
    char *buf, size_t size)
{
	struct store_file	*sf = (struct store_file *)store;
	struct stat		 sb;
	char			 owner[64], me[64];
	uid_t			 uid = geteuid();

	size_t			 dirlen = strlen(sf->dir);

	/* A path into the lock dir is that name's lock, and its file. */
	if (strncmp(name, sf->dir, dirlen) == 0 && name[dirlen] == '/' &&
	    strchr(name + dirlen + 1, '/') == NULL)
		name += dirlen + 1;
	if ((error != -EACCES && error != -EPERM) || name[0] == '/' ||
	    name[0] == '\0')
		return 0;
	store_file_user(uid, me, sizeof me);
	if (fstatat(sf->dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == -1) {
		if (errno != ENOENT)
			return 0;
		return snprintf(buf, size, "cannot create the lock file %s/%s: "
		    "%s; the broker runs as uid %ld (%s) and needs write "
		    "access to %s", sf->dir, name, strerror(-error),
		    (long)uid, me, sf->dir);
	}
	store_file_user(sb.st_uid, owner, sizeof owner);
	return snprintf(buf, size, "cannot open the lock file %s/%s (owner "
	    "%s, mode %04o): %s; the broker runs as uid %ld (%s) and needs "
	    "read access: chmod a+r it or remove it", sf->dir, name, owner,
	    (unsigned)(sb.st_mode & 07777), strerror(-error), (long)uid, me);
}

/*
 * File systems whose flock(2) is not the kernel's own: emulated with
 * byte-range locks owned per process (NFS, SMB, 9p), or kept by a server
 * that sees one client per machine.  Every broker client would be one
 * owner there.  FUSE and Ceph keep flock's per-description owners.
 */
static const struct {
	unsigned long	 magic;
	const char	*name;
} remote_fs[] = {
	{ NFS_SUPER_MAGIC, "nfs" },
	{ SMB_SUPER_MAGIC, "smb" },
	{ CIFS_SUPER_MAGIC, "cifs" },
	{ SMB2_SUPER_MAGIC, "smb2" },
	{ V9FS_MAGIC, "9p" },
	{ AFS_SUPER_MAGIC, "afs" },
	{ AFS_FS_MAGIC, "afs" },
	{ CODA_SUPER_MAGIC, "coda" },
};

/* The name of f_type's file system if flock(2) there is not local. */
const char *
store_file_remote_fs(unsigned long f_type)
{
	size_t	 i;

	for (i = 0; i < sizeof remote_fs / sizeof remote_fs[0]; i++) {
		if (remote_fs[i].magic == f_type)
			return remote_fs[i].name;
	}
	return NULL;
}

/* Whether a client's file can be locked here; -errno and msg if not. */
static int
file_check_lockable(struct store_file *sf, int fd, const struct stat *sb,
    char *msg, size_t msg_size)
{
	struct statfs	 sfs;
	const char	*fs;

	if (!S_ISREG(sb->st_mode) && !S_ISDIR(sb->st_mode)) {
		snprintf(msg, msg_size, "only a regular file or a directory "
		    "can be locked, and this is a %s", S_ISFIFO(sb->st_mode) ?
		    "FIFO" : S_ISSOCK(sb->st_mode) ? "socket" :
		    S_ISCHR(sb->st_mode) || S_ISBLK(sb->st_mode) ? "device" :
		    "special file");
		return -EINVAL;
	}
	/* Clients tend to lock on one file system: ask it once. */
	if (sf->local_dev_known && sf->local_dev == sb->st_dev)
		return 0;
	if (fstatfs(fd, &sfs) == -1) {
		snprintf(msg, msg_size, "cannot tell the file's file system: "
		    "%s", strerror(errno));
		return -errno;
	}
	if ((fs = store_file_remote_fs((unsigned long)sfs.f_type)) != NULL) {
		snprintf(msg, msg_size, "the file is on %s, where flock(2) "
		    "is not the kernel's own and cannot tell the broker's "
		    "clients apart; lock a file on a local file system", fs);
		return -EOPNOTSUPP;
	}
	sf->local_dev = sb->st_dev;
	sf->local_dev_known = 1;
	return 0;
}

/*
 * The name of the lock file in the lock dir that fd is, found by the name
 * the kernel gives the descriptor; 0 if it is none.
 */
static int
file_lock_dir_name(struct store_file *sf, int fd, const struct stat *sb,
    char *name, size_t size)
{
	char		 path[PATH_MAX];
	const char	*base;
	struct stat	 at_sb;

	if (fd_path(fd, path, sizeof path) <= 0)
		return 0;
	base = strrchr(path, '/') != NULL ? strrchr(path, '/') + 1 : path;
	if (!proto_name_valid(base, strlen(base)) ||
	    fstatat(sf->dirfd, base, &at_sb, AT_SYMLINK_NOFOLLOW) == -1 ||
	    at_sb.st_dev != sb->st_dev || at_sb.st_ino != sb->st_ino)
		return 0;
	return snprintf(name, size, "%s", base) > 0;
}

/*
 * A client's descriptor resolves to the lock open on its file (a name
 * lock, or a path lock), or to the lock dir's file of that name, or else
 * to the file's identity.
 */
static int
file_lock_resolve(struct lock_store *store, void *object, char *key,
    size_t key_size, char *msg, size_t msg_size)
{
	struct store_file	*sf = (struct store_file *)store;
	struct file_lock	 probe;
	struct stat		 sb;
	void			*node;
	int			 fd = *(int *)object, error;

	if (fstat(fd, &sb) == -1) {
		snprintf(msg, msg_size, "cannot stat the descriptor: %s",
		    strerror(errno));
		return -errno;
	}
	if ((error = file_check_lockable(sf, fd, &sb, msg, msg_size)) != 0)
		return error;
	probe.file.dev = sb.st_dev;
	probe.file.ino = sb.st_ino;
	/* A name lock whose name now leads elsewhere is not this file's. */
	if ((node = tfind(&probe, &sf->by_file, file_lock_id_cmp)) != NULL &&
	    ((*(struct file_lock **)node)->by_fd ||
	    !file_lock_stale(*(struct file_lock **)node))) {
		snprintf(key, key_size, "%s",
		    (*(struct file_lock **)node)->name);
		return 0;
	}
	if (file_lock_dir_name(sf, fd, &sb, key, key_size))
		return 0;
	snprintf(key, key_size, "/%jx:%jx", (uintmax_t)sb.st_dev,
	    (uintmax_t)sb.st_ino);
	return 0;
}

/*
 * A lock's file kept across a reload: the same open file description,
 * so the flock it held is still held, and nothing is taken anew.
 */
static int
file_lock_restore(struct lock_store *store, struct lock *lock,
    const char *name, void *object, void *state)
{
	struct store_file	*sf = (struct store_file *)store;
	struct lock_store_kept	*kept = object;
	struct file_lock	*fl = state;
	struct stat		 sb;

	if (kept->fd < 0 || fstat(kept->fd, &sb) == -1)
		return -EBADF;
	if (name[0] == '/') {
		if (sf->npaths >= sf->max_paths)
			return LOCKTAB_E_MAX_PATHS;
		sf->npaths++;
	}
	fl->store = sf;
	fl->lock = lock;
	fl->name = name;
	fl->fd = kept->fd;
	fl->file.dev = sb.st_dev;
	fl->file.ino = sb.st_ino;
	fl->file.seen = 0;
	fl->by_fd = name[0] == '/';
	fl->flock = kept->taken == 0 ? LOCK_FLOCK_NONE :
	    kept->taken - 1 == PROTO_SHARED ? LOCK_FLOCK_SH : LOCK_FLOCK_EX;
	file_lock_index(fl);
	return 0;
}

static const struct lock_store_ops store_file_ops = {
	.restore = file_lock_restore,
	.lock_size = sizeof(struct file_lock),
	.open = file_lock_open,
	.close = file_lock_close,
	.take = file_lock_take,
	.convert = file_lock_convert,
	.drop = file_lock_drop,
	.wait = file_lock_wait,
	.cancel = file_lock_cancel,
	.current = file_lock_current,
	.refresh = file_lock_refresh,
	.explain = file_lock_explain,
	.resolve = file_lock_resolve,
};

/*
 * Whether the lock directory's file system is one known to update a
 * file's ctime on unlink, link and rename (POSIX leaves rename open).
 */
static int
store_file_keeps_ctimes(int dirfd)
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

/*
 * Path locks keep a client's file open each: at most half the daemon's
 * descriptors, so that they can never starve accept(2) or the lock dir.
 */
static size_t
store_file_paths_bound(void)
{
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur == RLIM_INFINITY)
		return 32768;
	return rl.rlim_cur / 2 > 16 ? (size_t)(rl.rlim_cur / 2) : 16;
}

/* The bound on path locks. */
size_t
store_file_max_paths(const struct store_file *sf)
{
	return sf->max_paths;
}

/* How many watch threads wait in flock(2) on outside holders now. */
size_t
store_file_nwatching(const struct store_file *sf)
{
	return sf->watcher != NULL ? watcher_nwatching(sf->watcher) : 0;
}

/*
 * A file store over an open lock directory (dir is its path, borrowed
 * for messages), its tokens from first_token on.  With an event loop,
 * outside holders are watched and polled; with base NULL (unit tests)
 * only locktab_retry finds them gone.
 */
struct store_file *
store_file_new(struct event_base *base, int dirfd, const char *dir,
    int64_t first_token)
{
	struct store_file	*sf;

	if ((sf = calloc(1, sizeof *sf)) == NULL)
		return NULL;
	sf->base.ops = &store_file_ops;
	sf->base.next_token = first_token;
	sf->base.token_limit = INT64_MAX;
	sf->dirfd = dirfd;
	sf->dir = dir;
	sf->max_files = SIZE_MAX;
	sf->max_paths = store_file_paths_bound();
	sf->ctime_fs = store_file_keeps_ctimes(dirfd);
	if (base == NULL)
		return sf;
	sf->retry_ev = evtimer_new(base, store_file_retry_cb, sf);
	if (sf->retry_ev == NULL)
		fatalx("cannot set up the retry timer");
	sf->watcher = watcher_new(base, sf, dirfd);
	return sf;
}

/* Stop watching and polling; after the lock table over it is freed. */
void
store_file_free(struct store_file *sf)
{
	if (sf == NULL)
		return;
	if (sf->retry_ev != NULL)
		event_free(sf->retry_ev);
	sf->retry_ev = NULL;
	watcher_free(sf->watcher);
	free(sf);
}

/* The store as the lock table sees it. */
struct lock_store *
store_file_base(struct store_file *sf)
{
	return &sf->base;
}

/*
 * Bound the lock files the store may create to max, counting those the
 * directory holds already (dot-files are no lock's); -errno if it cannot
 * be read.
 */
int
store_file_set_max_files(struct store_file *sf, size_t max)
{
	struct dirent	*de;
	DIR		*dir;
	size_t		 n = 0;
	int		 fd;

	if ((fd = openat(sf->dirfd, ".", O_RDONLY | O_DIRECTORY |
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
	sf->nfiles = n;
	sf->max_files = max;
	return 0;
}

/* Return how many lock files the store counts against its bound. */
size_t
store_file_nfiles(const struct store_file *sf)
{
	return sf->nfiles;
}

/*
 * Be told whenever a lock becomes blocked by an outside holder (with the
 * mode its head waits for), changes that mode, or stops being blocked
 * (also when it is freed).  The callback runs inside table operations and
 * must not call back into the table.
 */
void
store_file_set_blocked_cb(struct store_file *sf, store_file_blocked_cb cb,
    void *arg)
{
	sf->blocked_cb = cb;
	sf->blocked_arg = arg;
}

/*
 * Hand a blocked lock a descriptor of its file that already holds the
 * flock in mode (taken by a blocking flock elsewhere), so the grant needs
 * no second try that an outsider could race.  The store owns fd after.
 */
void
store_file_adopt(struct store_file *sf, struct lock *lock, int fd,
    enum proto_mode mode)
{
	struct file_lock	*fl = lock_store_state(lock);
	struct lock_file_id	 file;

	if (!lock_blocked(lock) || lock_first_holder(lock) != NULL) {
		close(fd);
		return;
	}
	if (file_id(fd, &file) < 0)
		return;
	file_lock_unindex(fl);
	close(fl->fd);
	fl->fd = fd;
	fl->file = file;
	file_lock_index(fl);
	fl->flock = mode == PROTO_SHARED ? LOCK_FLOCK_SH : LOCK_FLOCK_EX;
	locktab_taken(sf->base.tab, lock, 0);
}

/* A watch ended: poll if its lock is still blocked without one. */
void
store_file_watch_ended(struct store_file *sf)
{
	store_file_poll(sf);
}

/* Return the fd of a lock's file. */
int
lock_fd(const struct lock *lock)
{
	const struct file_lock	*fl = lock_store_state(lock);

	return fl->fd;
}

/* The device and inode of a lock's file. */
void
lock_file_id(const struct lock *lock, dev_t *ret_dev, ino_t *ret_ino)
{
	const struct file_lock	*fl = lock_store_state(lock);

	*ret_dev = fl->file.dev;
	*ret_ino = fl->file.ino;
}

/* What the store's descriptor of a lock holds: 0, or 1 + the mode. */
int
lock_file_taken(const struct lock *lock)
{
	const struct file_lock	*fl = lock_store_state(lock);

	if (fl->flock == LOCK_FLOCK_NONE)
		return 0;
	return 1 + (fl->flock == LOCK_FLOCK_SH ? PROTO_SHARED :
	    PROTO_EXCLUSIVE);
}

/* Whether the store's descriptor of a lock holds a flock now. */
int
lock_file_flocked(const struct lock *lock)
{
	const struct file_lock	*fl = lock_store_state(lock);

	return fl->flock != LOCK_FLOCK_NONE;
}

/*
 * The path the kernel gives a path lock's descriptor, as list shows it
 * (with " (deleted)" for a file since unlinked, and bytes that are not
 * UTF-8 as '?'); the lock's name if it is a name lock, or the kernel
 * gives none.
 */
void
lock_file_path(const struct lock *lock, char *buf, size_t size)
{
	const struct file_lock	*fl = lock_store_state(lock);

	if (fl->by_fd && fd_path(fl->fd, buf, size) > 0 && buf[0] == '/')
		utf8_clean(buf);	/* what the daemon sends is UTF-8 */
	else
		snprintf(buf, size, "%s", lock_name(lock));
}

/*
 * Move a granted lock's flock onto fd, a client's own open file
 * description of the same file, for the descriptor form: afterwards the
 * flock lives as long as that description, and the store's fd holds
 * nothing.  Shared goes over with no gap; exclusive cannot, as no two
 * descriptions hold LOCK_EX at once, so an outsider's flock may get in
 * between: then -EWOULDBLOCK, and the lock is the outsider's.
 */
int
store_file_handoff(struct lock *lock, int fd, enum proto_mode mode)
{
	struct file_lock	*fl = lock_store_state(lock);

	if (mode == PROTO_SHARED)
		return flock(fd, LOCK_SH | LOCK_NB) == 0 ? 0 : -errno;
	file_lock_drop(fl);
	return flock(fd, LOCK_EX | LOCK_NB) == 0 ? 0 : -errno;
}

/*
 * Whether fd's open file description holds a flock already, and in
 * which mode: the kernel lists a description's locks in
 * /proc/self/fdinfo.  Such a caller asks again for its own lock.
 */
int
store_file_fd_flocked(int fd, enum proto_mode *ret_mode)
{
	char	 path[64], buf[4096], *lock;

	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	if (proc_read(path, buf, sizeof buf) <= 0 ||
	    (lock = strstr(buf, "\nlock:\t")) == NULL ||
	    (lock = strstr(lock, "FLOCK")) == NULL)
		return 0;
	/* "lock:\t1: FLOCK  ADVISORY  WRITE ...": WRITE is LOCK_EX. */
	*ret_mode = strncmp(lock + strcspn(lock, "RW"), "READ", 4) == 0 ?
	    PROTO_SHARED : PROTO_EXCLUSIVE;
	return 1;
}
