/*
 * Unit tests of the file store (daemon/store_file.c) under the lock table:
 * the real flock(2) on lock files, outside holders, idle descriptors,
 * replaced files, the lock file bound and running out of descriptors.
 */

#include <sys/types.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <linux/magic.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon.h"
#include "grants.h"
#include "unit.h"

static char		 lockdir[PATH_MAX];
static int		 dirfd_;
static struct store_file *store;

/* Make a fresh lock directory, and a table over a file store in it. */
static void
setup(void)
{
	snprintf(lockdir, sizeof lockdir, "%s/locktab.XXXXXX", TEST_TMPDIR);
	ck_assert_ptr_nonnull(mkdtemp(lockdir));
	dirfd_ = open(lockdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(dirfd_, 0);
	grants_reset();
	store = store_file_new(NULL, dirfd_, lockdir, FIRST_TOKEN);
	ck_assert_ptr_nonnull(store);
	tab = locktab_new(store_file_base(store), record_grant, NULL,
	    fake_clock);
	ck_assert_ptr_nonnull(tab);
}

/* Free the table and store, and remove the lock directory. */
static void
teardown(void)
{
	DIR		*dir;
	struct dirent	*de;

	locktab_free(tab);
	tab = NULL;
	store_file_free(store);
	store = NULL;
	if ((dir = fdopendir(dirfd_)) == NULL)
		return;
	while ((de = readdir(dir)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd_, de->d_name, 0) == -1)
			unlinkat(dirfd_, de->d_name, AT_REMOVEDIR);
	}
	closedir(dir);
	rmdir(lockdir);
}


/* Open the lock file as a process outside the broker would. */
static int
outsider_open(const char *name)
{
	int	 fd;

	fd = openat(dirfd_, name, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	return fd;
}

/* Try a non-blocking flock on a separate open file; 0 or errno. */
static int
outsider_try(const char *name, int op)
{
	int	 fd, error = 0;

	fd = outsider_open(name);
	if (flock(fd, op | LOCK_NB) == -1)
		error = errno;
	close(fd);
	return error;
}

START_TEST(test_exclusive_holder_flocks_file_exclusively)
{
	struct lock_req	*a;

	a = acq("db", PROTO_EXCLUSIVE, 1);
	ck_assert_int_ge(lock_fd(locktab_find(tab, "db")), 0);
	ck_assert_int_eq(outsider_try("db", LOCK_EX), EWOULDBLOCK);
	ck_assert_int_eq(outsider_try("db", LOCK_SH), EWOULDBLOCK);
	locktab_release(tab, a);
	ck_assert_int_eq(outsider_try("db", LOCK_EX), 0);
}
END_TEST

START_TEST(test_shared_holders_flock_file_shared)
{
	struct lock_req	*a, *b;

	a = acq("db", PROTO_SHARED, 1);
	b = acq("db", PROTO_SHARED, 2);
	ck_assert_int_eq(outsider_try("db", LOCK_SH), 0);
	ck_assert_int_eq(outsider_try("db", LOCK_EX), EWOULDBLOCK);
	locktab_release(tab, a);
	ck_assert_int_eq(outsider_try("db", LOCK_EX), EWOULDBLOCK);
	locktab_release(tab, b);
	ck_assert_int_eq(outsider_try("db", LOCK_EX), 0);
}
END_TEST

START_TEST(test_exclusive_handoff_keeps_file_locked)
{
	struct lock_req	*a, *b;
	int		 fd;

	a = acq("db", PROTO_EXCLUSIVE, 1);
	b = acq("db", PROTO_EXCLUSIVE, 2);
	fd = lock_fd(locktab_find(tab, "db"));
	locktab_release(tab, a);
	ck_assert(lock_req_held(b));
	ck_assert_int_eq(lock_fd(locktab_find(tab, "db")), fd);
	ck_assert_int_eq(outsider_try("db", LOCK_EX), EWOULDBLOCK);
	ck_assert_uint_eq(locktab_nblocked(tab), 0);
	locktab_release(tab, b);
	ck_assert_int_eq(outsider_try("db", LOCK_EX), 0);
}
END_TEST

START_TEST(test_handoff_from_exclusive_to_shared_converts_flock)
{
	struct lock_req	*a, *b, *c;

	a = acq("db", PROTO_EXCLUSIVE, 1);
	b = acq("db", PROTO_SHARED, 2);
	c = acq("db", PROTO_SHARED, 3);
	locktab_release(tab, a);
	ck_assert(lock_req_held(b));
	ck_assert(lock_req_held(c));
	ck_assert_int_eq(outsider_try("db", LOCK_SH), 0);
	ck_assert_int_eq(outsider_try("db", LOCK_EX), EWOULDBLOCK);
	locktab_release(tab, b);
	locktab_release(tab, c);
}
END_TEST

START_TEST(test_outside_holder_blocks_acquire_until_retry)
{
	struct lock_req	*a, *r = NULL;
	int		 fd;

	fd = outsider_open("db");
	ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);

	a = acq("db", PROTO_EXCLUSIVE, 1);
	ck_assert_uint_eq(ngrants, 0);
	ck_assert(!lock_req_held(a));
	ck_assert_int_eq(lock_req_position(a), 1);
	ck_assert_uint_eq(locktab_nblocked(tab), 1);
	ck_assert_uint_eq(locktab_nwaiting(tab), 1);
	ck_assert_ptr_null(lock_first_holder(locktab_find(tab, "db")));

	ck_assert_int_eq(locktab_acquire(tab, "db", PROTO_EXCLUSIVE, 1,
	    (void *)2, &r), -EWOULDBLOCK);
	ck_assert_ptr_null(r);

	locktab_retry(tab);
	ck_assert_uint_eq(ngrants, 0);
	ck_assert_uint_eq(locktab_nblocked(tab), 1);

	ck_assert_int_eq(flock(fd, LOCK_UN), 0);
	locktab_retry(tab);
	ck_assert_uint_eq(ngrants, 1);
	assert_granted(0, 1);
	ck_assert(lock_req_held(a));
	ck_assert_int_eq(lock_req_token(a), FIRST_TOKEN);
	ck_assert_uint_eq(locktab_nblocked(tab), 0);
	ck_assert_uint_eq(locktab_nwaiting(tab), 0);
	ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), -1);
	ck_assert_int_eq(errno, EWOULDBLOCK);

	locktab_release(tab, a);
	ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
	close(fd);
}
END_TEST

START_TEST(test_try_only_with_outside_holder_leaves_nothing)
{
	struct lock_req	*r = NULL;
	int		 fd;

	fd = outsider_open("db");
	ck_assert_int_eq(flock(fd, LOCK_SH | LOCK_NB), 0);
	ck_assert_int_eq(locktab_acquire(tab, "db", PROTO_EXCLUSIVE, 1,
	    (void *)1, &r), -EWOULDBLOCK);
	ck_assert_ptr_null(r);
	ck_assert_ptr_null(locktab_find(tab, "db"));
	ck_assert_uint_eq(locktab_nblocked(tab), 0);
	ck_assert_uint_eq(locktab_nwaiting(tab), 0);
	ck_assert_int_eq(locktab_next_token(tab), FIRST_TOKEN);
	close(fd);
}
END_TEST

START_TEST(test_outside_shared_holder_blocks_only_exclusive)
{
	struct lock_req	*s, *e;
	int		 fd;

	fd = outsider_open("db");
	ck_assert_int_eq(flock(fd, LOCK_SH | LOCK_NB), 0);
	s = acq("db", PROTO_SHARED, 1);
	ck_assert(lock_req_held(s));
	e = acq("db", PROTO_EXCLUSIVE, 2);
	ck_assert(!lock_req_held(e));
	ck_assert_uint_eq(locktab_nblocked(tab), 0);

	/* The conversion to LOCK_EX fails while the outsider shares it. */
	locktab_release(tab, s);
	ck_assert(!lock_req_held(e));
	ck_assert_uint_eq(locktab_nblocked(tab), 1);
	ck_assert_uint_eq(ngrants, 1);

	ck_assert_int_eq(flock(fd, LOCK_UN), 0);
	locktab_retry(tab);
	ck_assert(lock_req_held(e));
	ck_assert_uint_eq(locktab_nblocked(tab), 0);
	ck_assert_int_eq(outsider_try("db", LOCK_SH), EWOULDBLOCK);
	locktab_release(tab, e);
	close(fd);
}
END_TEST

START_TEST(test_cancel_blocked_waiter_frees_lock)
{
	struct lock_req	*a, *b;
	int		 fd;

	fd = outsider_open("db");
	ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
	a = acq("db", PROTO_EXCLUSIVE, 1);
	b = acq("db", PROTO_SHARED, 2);
	ck_assert_uint_eq(locktab_nblocked(tab), 1);
	ck_assert_int_eq(lock_req_position(b), 2);
	locktab_release(tab, a);
	ck_assert_uint_eq(locktab_nblocked(tab), 1);
	ck_assert_int_eq(lock_req_position(b), 1);
	locktab_release(tab, b);
	ck_assert_uint_eq(locktab_nblocked(tab), 0);
	ck_assert_uint_eq(locktab_nwaiting(tab), 0);
	ck_assert_ptr_null(locktab_find(tab, "db"));
	/* An outsider was in the way: the fd closes at once, not idle. */
	ck_assert_uint_eq(locktab_nidle(tab), 0);
	locktab_retry(tab);
	ck_assert_uint_eq(ngrants, 0);
	close(fd);
}
END_TEST

START_TEST(test_lock_files_are_never_unlinked)
{
	struct lock_req	*a, *b;
	struct stat	 st;

	ck_assert_int_eq(fstatat(dirfd_, "db", &st, AT_SYMLINK_NOFOLLOW), -1);
	a = acq("db", PROTO_EXCLUSIVE, 1);
	ck_assert_int_eq(fstatat(dirfd_, "db", &st, AT_SYMLINK_NOFOLLOW), 0);
	ck_assert(S_ISREG(st.st_mode));
	locktab_release(tab, a);
	ck_assert_int_eq(fstatat(dirfd_, "db", &st, AT_SYMLINK_NOFOLLOW), 0);
	ck_assert(S_ISREG(st.st_mode));

	/* Reusing the existing file works as well. */
	b = acq("db", PROTO_SHARED, 2);
	ck_assert(lock_req_held(b));
	locktab_release(tab, b);
	ck_assert_int_eq(fstatat(dirfd_, "db", &st, AT_SYMLINK_NOFOLLOW), 0);
}
END_TEST

START_TEST(test_symlink_name_is_refused_with_eloop)
{
	struct lock_req	*r = NULL;
	struct stat	 st;

	ck_assert_int_eq(symlinkat("target", dirfd_, "link"), 0);
	ck_assert_int_eq(locktab_acquire(tab, "link", PROTO_EXCLUSIVE, 0,
	    (void *)1, &r), -ELOOP);
	ck_assert_ptr_null(r);
	ck_assert_ptr_null(locktab_find(tab, "link"));
	ck_assert_int_eq(fstatat(dirfd_, "target", &st, 0), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_uint_eq(ngrants, 0);
	ck_assert_uint_eq(locktab_nwaiting(tab), 0);
}
END_TEST

START_TEST(test_directory_name_is_refused_with_eisdir)
{
	struct lock_req	*r = NULL;

	ck_assert_int_eq(mkdirat(dirfd_, "dir", 0755), 0);
	ck_assert_int_eq(locktab_acquire(tab, "dir", PROTO_SHARED, 0,
	    (void *)1, &r), -EISDIR);
	ck_assert_ptr_null(r);
	ck_assert_ptr_null(locktab_find(tab, "dir"));
}
END_TEST

/* How many descriptors this process has open. */
static int
open_fds(void)
{
	DIR		*dir;
	struct dirent	*de;
	int		 n = 0;

	dir = opendir("/proc/self/fd");
	ck_assert_ptr_nonnull(dir);
	while ((de = readdir(dir)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(dir);
	return n - 1;	/* the directory's own */
}

/* Cycle name once: acquire, then release. */
static void
cycle(const char *name)
{
	locktab_release(tab, acq(name, PROTO_EXCLUSIVE, 1));
}

START_TEST(test_released_lock_drops_flock_but_keeps_fd_for_reuse)
{
	struct lock_req	*r;
	int		 fds0, fd;

	fds0 = open_fds();
	r = acq("db", PROTO_EXCLUSIVE, 1);
	fd = lock_fd(locktab_find(tab, "db"));
	locktab_release(tab, r);
	ck_assert_int_eq(outsider_try("db", LOCK_EX), 0);
	ck_assert_ptr_null(locktab_find(tab, "db"));
	ck_assert_ptr_null(locktab_first(tab));
	ck_assert_uint_eq(locktab_nidle(tab), 1);
	ck_assert_int_eq(open_fds(), fds0 + 1);

	r = acq("db", PROTO_EXCLUSIVE, 2);
	ck_assert_int_eq(lock_fd(locktab_find(tab, "db")), fd);
	ck_assert_uint_eq(locktab_nidle(tab), 0);
	ck_assert_int_eq(outsider_try("db", LOCK_EX), EWOULDBLOCK);
	ck_assert_int_eq(outsider_try("db", LOCK_SH), EWOULDBLOCK);
	assert_granted(1, 2);
	locktab_release(tab, r);
	ck_assert_int_eq(open_fds(), fds0 + 1);
}
END_TEST

START_TEST(test_idle_fd_closes_on_the_second_expiry)
{
	int	 fds0;

	fds0 = open_fds();
	locktab_expire(tab);
	cycle("db");
	locktab_expire(tab);
	ck_assert_uint_eq(locktab_nidle(tab), 1);
	ck_assert_int_eq(open_fds(), fds0 + 1);
	locktab_expire(tab);
	ck_assert_uint_eq(locktab_nidle(tab), 0);
	ck_assert_int_eq(open_fds(), fds0);
	/* A lock in use is never expired. */
	acq("db", PROTO_EXCLUSIVE, 2);
	locktab_expire(tab);
	locktab_expire(tab);
	ck_assert_ptr_nonnull(locktab_find(tab, "db"));
	ck_assert_int_eq(outsider_try("db", LOCK_EX), EWOULDBLOCK);
}
END_TEST

START_TEST(test_idle_fds_are_capped)
{
	char	 name[32];
	int	 fds0, i;

	fds0 = open_fds();
	for (i = 0; i < 1100; i++) {
		snprintf(name, sizeof name, "n%d", i);
		cycle(name);
		ngrants = 0;	/* the recorder holds MAX_GRANTS */
	}
	ck_assert_uint_eq(locktab_nidle(tab), 1024);
	ck_assert_int_eq(open_fds(), fds0 + 1024);
	/* The oldest went first: the newest is still idle. */
	cycle("n1099");
	ck_assert_int_eq(open_fds(), fds0 + 1024);
	locktab_free(tab);
	tab = NULL;
	ck_assert_int_eq(open_fds(), fds0);
}
END_TEST

START_TEST(test_idle_lock_taken_by_outsider_is_closed)
{
	struct lock_req	*r = NULL;
	int		 fds0, fd;

	fds0 = open_fds();
	cycle("db");
	fd = outsider_open("db");
	ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
	ck_assert_int_eq(locktab_acquire(tab, "db", PROTO_EXCLUSIVE, 1,
	    (void *)2, &r), -EWOULDBLOCK);
	ck_assert_ptr_null(r);
	ck_assert_uint_eq(locktab_nidle(tab), 0);
	ck_assert_ptr_null(locktab_find(tab, "db"));
	ck_assert_int_eq(open_fds(), fds0 + 1);
	close(fd);
}
END_TEST

/* The highest descriptor this process has open. */
static int
highest_fd(void)
{
	DIR		*dir;
	struct dirent	*de;
	int		 fd, highest = -1;

	dir = opendir("/proc/self/fd");
	ck_assert_ptr_nonnull(dir);
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] != '.' && (fd = atoi(de->d_name)) > highest &&
		    fd != dirfd(dir))
			highest = fd;
	}
	closedir(dir);
	return highest;
}

/*
 * A lock file unlinked, or replaced by a rename, while its fd was idle:
 * the next acquire must see the new file and whoever flocks it.
 */
START_TEST(test_idle_fd_of_a_replaced_file_is_not_reused)
{
	struct lock_req	*r = NULL;
	int		 fd;

	cycle("db");
	ck_assert_int_eq(unlinkat(dirfd_, "db", 0), 0);
	fd = outsider_open("db");
	ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
	ck_assert_int_eq(locktab_acquire(tab, "db", PROTO_EXCLUSIVE, 1,
	    (void *)2, &r), -EWOULDBLOCK);
	ck_assert_uint_eq(locktab_nidle(tab), 0);
	close(fd);

	cycle("db");
	fd = outsider_open("db.new");
	ck_assert_int_eq(renameat(dirfd_, "db.new", dirfd_, "db"), 0);
	ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
	ck_assert_int_eq(locktab_acquire(tab, "db", PROTO_EXCLUSIVE, 1,
	    (void *)3, &r), -EWOULDBLOCK);
	close(fd);
	r = acq("db", PROTO_EXCLUSIVE, 4);
	ck_assert(lock_req_held(r));
	ck_assert_int_eq(outsider_try("db", LOCK_EX), EWOULDBLOCK);
}
END_TEST

/*
 * A lock file renamed away, or unlinked while a hard link keeps it alive,
 * while its fd was idle: the old inode still has a link, yet the next
 * acquire must flock the file now at the name.
 */
START_TEST(test_idle_fd_of_a_file_moved_away_is_not_reused)
{
	struct lock_req	*r = NULL;
	int		 fd;

	cycle("ren");
	ck_assert_int_eq(renameat(dirfd_, "ren", dirfd_, "ren.elsewhere"), 0);
	fd = outsider_open("ren");
	ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
	ck_assert_int_eq(locktab_acquire(tab, "ren", PROTO_EXCLUSIVE, 1,
	    (void *)2, &r), -EWOULDBLOCK);
	close(fd);

	cycle("lnk");
	ck_assert_int_eq(linkat(dirfd_, "lnk", dirfd_, "lnk.other", 0), 0);
	ck_assert_int_eq(unlinkat(dirfd_, "lnk", 0), 0);
	fd = outsider_open("lnk");
	ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
	ck_assert_int_eq(locktab_acquire(tab, "lnk", PROTO_EXCLUSIVE, 1,
	    (void *)3, &r), -EWOULDBLOCK);
	close(fd);
	r = acq("lnk", PROTO_EXCLUSIVE, 4);
	ck_assert_int_eq(outsider_try("lnk", LOCK_EX), EWOULDBLOCK);
}
END_TEST

/* Sleep past the time after which a file's ctime vouches for its name. */
static void
let_ctime_settle(void)
{
	struct timespec	 ts = { 0, 200 * 1000 * 1000 };

	nanosleep(&ts, NULL);
}

/*
 * Once a lock file is old enough for its ctime to vouch for it, an idle
 * fd is reused after one fstat; a rename away, a hard link and unlink, or
 * an unlink and re-create must still be seen.
 */
START_TEST(test_replaced_file_is_seen_after_its_ctime_vouched)
{
	static const char *const names[] = { "vren", "vlnk", "vunl" };
	struct lock_req		*r = NULL;
	size_t			 i;
	int			 fd;

	for (i = 0; i < 3; i++)
		close(outsider_open(names[i]));
	let_ctime_settle();
	for (i = 0; i < 3; i++) {
		cycle(names[i]);	/* opens the file */
		cycle(names[i]);	/* looks it up: the ctime vouches now */
		cycle(names[i]);	/* one fstat */
	}
	ck_assert_int_eq(renameat(dirfd_, "vren", dirfd_, "vren.away"), 0);
	ck_assert_int_eq(linkat(dirfd_, "vlnk", dirfd_, "vlnk.other", 0), 0);
	ck_assert_int_eq(unlinkat(dirfd_, "vlnk", 0), 0);
	ck_assert_int_eq(unlinkat(dirfd_, "vunl", 0), 0);
	for (i = 0; i < 3; i++) {
		fd = outsider_open(names[i]);
		ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
		ck_assert_msg(locktab_acquire(tab, names[i], PROTO_EXCLUSIVE, 1,
		    (void *)2, &r) == -EWOULDBLOCK, "%s granted on the old "
		    "file", names[i]);
		close(fd);
	}
}
END_TEST

/*
 * The file is replaced while held and an outsider flocks the new one: the
 * waiter must not be handed the dead inode, but wait for the outsider and
 * then hold a flock on the file now at the name.
 */
START_TEST(test_handoff_moves_to_a_file_replaced_while_held)
{
	struct lock_req	*a, *b;
	int		 fd;

	a = acq("unl", PROTO_EXCLUSIVE, 1);
	ck_assert_int_eq(unlinkat(dirfd_, "unl", 0), 0);
	fd = outsider_open("unl");
	ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
	b = acq("unl", PROTO_EXCLUSIVE, 2);
	ck_assert(!lock_req_held(b));
	locktab_release(tab, a);
	ck_assert_uint_eq(ngrants, 1);
	ck_assert(!lock_req_held(b));
	ck_assert(lock_blocked(locktab_find(tab, "unl")));

	close(fd);
	locktab_retry(tab);
	ck_assert_uint_eq(ngrants, 2);
	assert_granted(1, 2);
	ck_assert_int_eq(outsider_try("unl", LOCK_EX), EWOULDBLOCK);
	locktab_release(tab, b);
}
END_TEST

/* What the blocked callback saw: the last state, and how many calls. */
static int	blocked_last = -1;
static int	blocked_calls;

static void
record_blocked(struct lock *lock, int blocked, enum proto_mode mode,
    void *arg)
{
	(void)lock;
	(void)mode;
	(void)arg;
	blocked_last = blocked;
	blocked_calls++;
}

/* Replace the file at name by a new one, flocked by an outsider; its fd. */
static int
replace_and_flock(const char *name)
{
	char	 moved[64];
	int	 fd;

	snprintf(moved, sizeof moved, "%s.moved", name);
	ck_assert_int_eq(renameat(dirfd_, name, dirfd_, moved), 0);
	fd = outsider_open(name);
	ck_assert_int_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
	return fd;
}

/*
 * A watch opened the name before the file was replaced; the flock it
 * hands over is on the old file, so the waiter must go on waiting for
 * the outsider on the new one.
 */
START_TEST(test_adopted_flock_on_a_replaced_file_is_not_granted)
{
	struct lock_req	*b;
	int		 o1, o2, watch_fd;

	o1 = outsider_open("adp");
	ck_assert_int_eq(flock(o1, LOCK_EX | LOCK_NB), 0);
	b = acq("adp", PROTO_EXCLUSIVE, 2);
	ck_assert(!lock_req_held(b));
	watch_fd = outsider_open("adp");
	o2 = replace_and_flock("adp");
	close(o1);
	ck_assert_int_eq(flock(watch_fd, LOCK_EX | LOCK_NB), 0);
	store_file_adopt(store, locktab_find(tab, "adp"), watch_fd,
	    PROTO_EXCLUSIVE);
	ck_assert_uint_eq(ngrants, 0);
	ck_assert(lock_blocked(locktab_find(tab, "adp")));

	close(o2);
	locktab_retry(tab);
	assert_granted(0, 2);
	ck_assert_int_eq(outsider_try("adp", LOCK_EX), EWOULDBLOCK);
	locktab_release(tab, b);
}
END_TEST

/*
 * A waiter leaves a blocked lock whose file was replaced: the lock moves
 * to the new file and is blocked anew (so a watch starts on it), and the
 * old file's release grants nobody.
 */
START_TEST(test_cancel_on_a_blocked_replaced_file_moves_the_watch)
{
	struct lock_req	*b, *c;
	int		 o1, o2, calls;

	store_file_set_blocked_cb(store, record_blocked, NULL);
	o1 = outsider_open("cnl");
	ck_assert_int_eq(flock(o1, LOCK_EX | LOCK_NB), 0);
	b = acq("cnl", PROTO_EXCLUSIVE, 2);
	c = acq("cnl", PROTO_EXCLUSIVE, 3);
	ck_assert_int_eq(blocked_last, 1);
	o2 = replace_and_flock("cnl");
	calls = blocked_calls;
	locktab_release(tab, c);
	ck_assert_int_ge(blocked_calls, calls + 2);
	ck_assert_int_eq(blocked_last, 1);
	close(o1);
	locktab_retry(tab);
	ck_assert_uint_eq(ngrants, 0);
	close(o2);
	locktab_retry(tab);
	assert_granted(0, 2);
	ck_assert_int_eq(outsider_try("cnl", LOCK_EX), EWOULDBLOCK);
	locktab_release(tab, b);
}
END_TEST

/*
 * The file was replaced while held by something that cannot be opened
 * (here a symlink): the waiter is not granted on the old file, and gets
 * the lock once the name can be opened again.
 */
START_TEST(test_handoff_waits_while_the_new_file_cannot_be_opened)
{
	struct lock_req	*a, *b;

	a = acq("sym", PROTO_EXCLUSIVE, 1);
	b = acq("sym", PROTO_EXCLUSIVE, 2);
	ck_assert_int_eq(unlinkat(dirfd_, "sym", 0), 0);
	ck_assert_int_eq(symlinkat("elsewhere", dirfd_, "sym"), 0);
	locktab_release(tab, a);
	ck_assert_uint_eq(ngrants, 1);
	ck_assert(!lock_req_held(b));
	ck_assert(lock_blocked(locktab_find(tab, "sym")));
	locktab_retry(tab);
	ck_assert_uint_eq(ngrants, 1);

	ck_assert_int_eq(unlinkat(dirfd_, "sym", 0), 0);
	locktab_retry(tab);
	assert_granted(1, 2);
	ck_assert_int_eq(outsider_try("sym", LOCK_EX), EWOULDBLOCK);
	locktab_release(tab, b);
}
END_TEST

/* Past the lock file bound only names whose file exists still work. */
START_TEST(test_max_files_bounds_new_lock_files_only)
{
	struct lock_req	*r = NULL;
	int		 fd;

	fd = outsider_open("old");
	close(fd);
	ck_assert_int_eq(store_file_set_max_files(store, 2), 0);
	ck_assert_uint_eq(store_file_nfiles(store), 1);
	cycle("new1");
	ck_assert_uint_eq(store_file_nfiles(store), 2);
	ck_assert_int_eq(locktab_acquire(tab, "new2", PROTO_EXCLUSIVE, 0,
	    (void *)2, &r), LOCKTAB_E_MAX_FILES);
	ck_assert_int_eq(faccessat(dirfd_, "new2", F_OK, 0), -1);
	ck_assert_ptr_null(locktab_find(tab, "new2"));
	locktab_expire(tab);
	locktab_expire(tab);
	cycle("new1");
	cycle("old");
	fd = outsider_open("made-outside");
	close(fd);
	cycle("made-outside");
	ck_assert_uint_eq(store_file_nfiles(store), 2);
}
END_TEST

START_TEST(test_out_of_descriptors_closes_idle_fds_and_retries)
{
	struct rlimit	 rl;
	struct lock_req	*r;
	char		 name[32];
	int		 i, fillers[1024], nfillers = 0;

	for (i = 0; i < 50; i++) {
		snprintf(name, sizeof name, "n%d", i);
		cycle(name);
	}
	ck_assert_uint_eq(locktab_nidle(tab), 50);
	/* No descriptor is left for a new lock file: only idle ones can go. */
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = (rlim_t)highest_fd() + 1;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	while (nfillers < 1024 && (fillers[nfillers] = open("/dev/null",
	    O_RDONLY | O_CLOEXEC)) != -1)
		nfillers++;
	ck_assert_int_eq(errno, EMFILE);
	ck_assert_int_eq(locktab_acquire(tab, "fresh", PROTO_EXCLUSIVE, 0,
	    (void *)1, &r), 0);
	ck_assert(lock_req_held(r));
	ck_assert_uint_eq(locktab_nidle(tab), 0);
	ck_assert_int_eq(outsider_try("n0", LOCK_EX), 0);
	while (nfillers > 0)
		close(fillers[--nfillers]);
}
END_TEST

START_TEST(test_free_drops_flocks_without_callbacks)
{
	acq("db", PROTO_EXCLUSIVE, 1);
	acq("db", PROTO_EXCLUSIVE, 2);
	ck_assert_int_eq(outsider_try("db", LOCK_EX), EWOULDBLOCK);
	locktab_free(tab);
	tab = NULL;
	ck_assert_uint_eq(ngrants, 1);
	ck_assert_int_eq(outsider_try("db", LOCK_EX), 0);
}
END_TEST

/* The file systems whose flock(2) is emulated are named, local ones not. */
START_TEST(test_remote_file_systems_are_refused_by_name)
{
	ck_assert_str_eq(store_file_remote_fs(NFS_SUPER_MAGIC), "nfs");
	ck_assert_str_eq(store_file_remote_fs(CIFS_SUPER_MAGIC), "cifs");
	ck_assert_str_eq(store_file_remote_fs(SMB2_SUPER_MAGIC), "smb2");
	ck_assert_str_eq(store_file_remote_fs(SMB_SUPER_MAGIC), "smb");
	ck_assert_str_eq(store_file_remote_fs(V9FS_MAGIC), "9p");
	ck_assert_ptr_null(store_file_remote_fs(EXT4_SUPER_MAGIC));
	ck_assert_ptr_null(store_file_remote_fs(TMPFS_MAGIC));
	ck_assert_ptr_null(store_file_remote_fs(XFS_SUPER_MAGIC));
	ck_assert_ptr_null(store_file_remote_fs(FUSE_SUPER_MAGIC));
}
END_TEST

/* Resolve a descriptor of path; returns the key, or NULL with rc set. */
static const char *
resolve(const char *path, char *key, size_t size, int *ret_rc)
{
	char	 msg[256];
	int	 fd;

	fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	*ret_rc = locktab_resolve(tab, &fd, key, size, msg, sizeof msg);
	close(fd);
	return *ret_rc == 0 ? key : NULL;
}

/*
 * A path to a lock dir file resolves to its name, and so does any path
 * to the file of an open name lock (a hard link); others to the file.
 */
START_TEST(test_paths_resolve_to_one_name_per_file)
{
	char		 path[PATH_MAX + 8], other[PATH_MAX + 8], key[256];
	char		 want[64];
	struct stat	 sb;
	int		 rc;

	snprintf(path, sizeof path, "%s/db", lockdir);
	ck_assert_str_eq(resolve(path, key, sizeof key, &rc), "db");
	/* .hidden is no valid name, so its file keys it. */
	snprintf(path, sizeof path, "%s/.hidden", lockdir);
	ck_assert_ptr_nonnull(resolve(path, key, sizeof key, &rc));
	ck_assert_int_eq(stat(path, &sb), 0);
	snprintf(want, sizeof want, "/%jx:%jx", (uintmax_t)sb.st_dev,
	    (uintmax_t)sb.st_ino);
	ck_assert_str_eq(key, want);

	/* A hard link elsewhere finds the name lock while it is open. */
	acq("db", PROTO_EXCLUSIVE, 1);
	snprintf(path, sizeof path, "%s/db", lockdir);
	snprintf(other, sizeof other, "%s/link-to-db", TEST_TMPDIR);
	unlink(other);
	ck_assert_int_eq(link(path, other), 0);
	ck_assert_str_eq(resolve(other, key, sizeof key, &rc), "db");
	unlink(other);
}
END_TEST

/* Collect the file store tests into one suite. */
static Suite *
store_file_suite(void)
{
	Suite	*s;
	TCase	*tc;

	s = suite_create("store_file");
	tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_exclusive_holder_flocks_file_exclusively);
	tcase_add_test(tc, test_shared_holders_flock_file_shared);
	tcase_add_test(tc, test_exclusive_handoff_keeps_file_locked);
	tcase_add_test(tc,
	    test_handoff_from_exclusive_to_shared_converts_flock);
	tcase_add_test(tc, test_outside_holder_blocks_acquire_until_retry);
	tcase_add_test(tc, test_try_only_with_outside_holder_leaves_nothing);
	tcase_add_test(tc, test_outside_shared_holder_blocks_only_exclusive);
	tcase_add_test(tc, test_cancel_blocked_waiter_frees_lock);
	tcase_add_test(tc, test_lock_files_are_never_unlinked);
	tcase_add_test(tc, test_symlink_name_is_refused_with_eloop);
	tcase_add_test(tc, test_directory_name_is_refused_with_eisdir);
	tcase_add_test(tc,
	    test_released_lock_drops_flock_but_keeps_fd_for_reuse);
	tcase_add_test(tc, test_idle_fd_closes_on_the_second_expiry);
	tcase_add_test(tc, test_idle_fds_are_capped);
	tcase_add_test(tc, test_idle_lock_taken_by_outsider_is_closed);
	tcase_add_test(tc, test_idle_fd_of_a_replaced_file_is_not_reused);
	tcase_add_test(tc, test_idle_fd_of_a_file_moved_away_is_not_reused);
	tcase_add_test(tc, test_replaced_file_is_seen_after_its_ctime_vouched);
	tcase_add_test(tc, test_handoff_moves_to_a_file_replaced_while_held);
	tcase_add_test(tc,
	    test_adopted_flock_on_a_replaced_file_is_not_granted);
	tcase_add_test(tc,
	    test_cancel_on_a_blocked_replaced_file_moves_the_watch);
	tcase_add_test(tc,
	    test_handoff_waits_while_the_new_file_cannot_be_opened);
	tcase_add_test(tc, test_max_files_bounds_new_lock_files_only);
	tcase_add_test(tc, test_out_of_descriptors_closes_idle_fds_and_retries);
	tcase_add_test(tc, test_free_drops_flocks_without_callbacks);
	tcase_add_test(tc, test_remote_file_systems_are_refused_by_name);
	tcase_add_test(tc, test_paths_resolve_to_one_name_per_file);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return unit_run_suite(store_file_suite());
}
